/* A map from C strings to pointers on the core hash table (core/hmap.h); keys are borrowed
 * from the values.  Internal header. */
#ifndef RR_STRMAP_H
#define RR_STRMAP_H

#include <stdint.h>

#include "core/hmap.h"

typedef struct rr_smap_node {
    rr_hlink link; /* first: a chain's links are its nodes */
    const char *key; /* not owned: points into the value */
    void *val;
} rr_smap_node;

typedef rr_htab rr_smap;

uint64_t rr_hash_str(const char *s);
/* Insert key -> val, or replace the value of key (key must stay valid while in the map).
 * 0 ok, -1 out of memory. */
int rr_smap_put(rr_smap *m, const char *key, void *val);
void *rr_smap_get(const rr_smap *m, const char *key);
void *rr_smap_del(rr_smap *m, const char *key); /* returns the removed value or NULL */
/* The nodes of chain i (i < m->nb), walked with rr_smap_next. */
static inline rr_smap_node *rr_smap_chain(const rr_smap *m, size_t i)
{
    return (rr_smap_node *)m->b[i];
}
static inline rr_smap_node *rr_smap_next(const rr_smap_node *x)
{
    return (rr_smap_node *)x->link.next;
}
void rr_smap_free(rr_smap *m); /* the nodes and buckets; not the values */

#endif
