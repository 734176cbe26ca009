/* A small chained hash map from C strings to pointers (keys are borrowed from the values). */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

uint64_t rr_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int grow(rr_smap *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    rr_smap_node **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < m->nb; i++) {
        rr_smap_node *x = m->b[i];
        while (x) {
            rr_smap_node *nx = x->next;
            size_t j = x->hash & (nb - 1);
            x->next = b[j];
            b[j] = x;
            x = nx;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return 0;
}

int rr_smap_put(rr_smap *m, const char *key, void *val)
{
    if (m->n + 1 > m->nb && grow(m) != 0)
        return -1;
    uint64_t h = rr_hash_str(key);
    size_t j = h & (m->nb - 1);
    for (rr_smap_node *x = m->b[j]; x; x = x->next)
        if (x->hash == h && strcmp(x->key, key) == 0) {
            x->key = key;
            x->val = val;
            return 0;
        }
    rr_smap_node *x = malloc(sizeof *x);
    if (x == NULL)
        return -1;
    x->key = key;
    x->hash = h;
    x->val = val;
    x->next = m->b[j];
    m->b[j] = x;
    m->n++;
    return 0;
}

void *rr_smap_get(const rr_smap *m, const char *key)
{
    if (m->n == 0)
        return NULL;
    uint64_t h = rr_hash_str(key);
    for (rr_smap_node *x = m->b[h & (m->nb - 1)]; x; x = x->next)
        if (x->hash == h && strcmp(x->key, key) == 0)
            return x->val;
    return NULL;
}

void *rr_smap_del(rr_smap *m, const char *key)
{
    if (m->n == 0)
        return NULL;
    uint64_t h = rr_hash_str(key);
    rr_smap_node **pp = &m->b[h & (m->nb - 1)];
    for (rr_smap_node *x = *pp; x; pp = &x->next, x = x->next)
        if (x->hash == h && strcmp(x->key, key) == 0) {
            void *v = x->val;
            *pp = x->next;
            free(x);
            m->n--;
            return v;
        }
    return NULL;
}

void rr_smap_free(rr_smap *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        rr_smap_node *x = m->b[i];
        while (x) {
            rr_smap_node *nx = x->next;
            free(x);
            x = nx;
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}
