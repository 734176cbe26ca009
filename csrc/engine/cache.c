/* The response cache.  Every rank holds an identical copy: entries are inserted, touched
 * and evicted only while processing the negotiated response list, which is the same on every
 * rank.  A pending request whose name and signature match an entry is represented in the
 * cycle vector by that entry's slot, so steady state needs no names on the wire. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

int rr_cache_init(rr_cache *c, int cap)
{
    memset(c, 0, sizeof *c);
    c->cap = cap;
    if (cap > 0) {
        c->slots = calloc((size_t)cap, sizeof *c->slots);
        if (c->slots == NULL)
            return -1;
    }
    return 0;
}

void rr_cache_free(rr_cache *c)
{
    for (int i = 0; i < c->hw; i++)
        if (c->slots[i].used)
            rr_desc_free(&c->slots[i].d);
    free(c->slots);
    rr_smap_free(&c->byname);
    memset(c, 0, sizeof *c);
}

int rr_cache_find(const rr_cache *c, const char *name)
{
    void *v = rr_smap_get(&c->byname, name);
    return v ? (int)((intptr_t)v - 1) : -1;
}

void rr_cache_touch(rr_cache *c, int slot)
{
    c->slots[slot].stamp = ++c->clock;
}

static uint64_t allreduce_bytes(const rr_desc *d)
{
    return d->kind == RR_REQ_ALLREDUCE ? d->count * rr_dtype_size(d->dtype) : 0;
}

void rr_cache_remove(rr_cache *c, int slot)
{
    rr_cache_slot *s = &c->slots[slot];
    if (!s->used)
        return;
    c->allreduce_bytes -= allreduce_bytes(&s->d);
    rr_smap_del(&c->byname, s->d.name);
    rr_desc_free(&s->d);
    s->used = 0;
}

int rr_cache_insert(rr_cache *c, const rr_desc *d, int *victim)
{
    *victim = -1;
    if (c->cap <= 0)
        return -1;
    int slot = rr_cache_find(c, d->name);
    if (slot >= 0) {
        rr_cache_remove(c, slot);
    } else {
        for (int i = 0; i < c->hw; i++)
            if (!c->slots[i].used) {
                slot = i;
                break;
            }
        if (slot < 0 && c->hw < c->cap)
            slot = c->hw++;
        if (slot < 0) {
            /* Full: evict the least recently used entry. */
            uint64_t best = UINT64_MAX;
            for (int i = 0; i < c->hw; i++)
                if (c->slots[i].stamp < best) {
                    best = c->slots[i].stamp;
                    slot = i;
                }
            rr_cache_remove(c, slot);
            *victim = slot;
        }
    }
    rr_cache_slot *s = &c->slots[slot];
    if (rr_desc_copy(&s->d, d) != 0)
        return -1;
    if (rr_smap_put(&c->byname, s->d.name, (void *)(intptr_t)(slot + 1)) != 0) {
        rr_desc_free(&s->d);
        return -1;
    }
    s->used = 1;
    c->allreduce_bytes += allreduce_bytes(&s->d);
    rr_cache_touch(c, slot);
    return slot;
}
