/* A map from C strings to pointers (core/strmap.h) on the core hash table. */
#include <stdlib.h>
#include <string.h>

#include "core/strmap.h"

uint64_t rr_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static rr_smap_node *find(const rr_smap *m, const char *key, uint64_t h)
{
    for (rr_hlink *x = rr_htab_chain(m, h); x; x = x->next) {
        rr_smap_node *nd = (rr_smap_node *)x;
        if (x->hash == h && strcmp(nd->key, key) == 0)
            return nd;
    }
    return NULL;
}

int rr_smap_put(rr_smap *m, const char *key, void *val)
{
    uint64_t h = rr_hash_str(key);
    rr_smap_node *x = find(m, key, h);
    if (x) {
        x->key = key;
        x->val = val;
        return 0;
    }
    x = malloc(sizeof *x);
    if (x == NULL)
        return -1;
    x->key = key;
    x->val = val;
    if (rr_htab_insert(m, &x->link, h, 64) != 0) {
        free(x);
        return -1;
    }
    return 0;
}

void *rr_smap_get(const rr_smap *m, const char *key)
{
    if (m->n == 0)
        return NULL;
    rr_smap_node *x = find(m, key, rr_hash_str(key));
    return x ? x->val : NULL;
}

void *rr_smap_del(rr_smap *m, const char *key)
{
    if (m->n == 0)
        return NULL;
    rr_smap_node *x = find(m, key, rr_hash_str(key));
    if (x == NULL)
        return NULL;
    void *v = x->val;
    rr_htab_remove(m, &x->link);
    free(x);
    return v;
}

void rr_smap_free(rr_smap *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        rr_smap_node *x = rr_smap_chain(m, i);
        while (x) {
            rr_smap_node *nx = rr_smap_next(x);
            free(x);
            x = nx;
        }
    }
    rr_htab_free(m);
}
