/* The one hash table of the core: chained, intrusive (the link lives in the element, so an
 * insertion allocates nothing but a larger bucket array now and then), buckets a power of
 * two that double when the elements would outnumber them.  The caller computes the hash and
 * compares keys; rr_smap (core/strmap.h) is the string-keyed map on top, and the engine finds
 * its entries by id with it directly (engine/handles.c).  Internal header. */
#ifndef RR_HMAP_H
#define RR_HMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct rr_hlink {
    struct rr_hlink *next;
    uint64_t hash;
} rr_hlink;

typedef struct rr_htab {
    rr_hlink **b; /* nb chains; all zero: empty, no buckets yet */
    size_t nb, n;
} rr_htab;

/* The element of type `type` whose member `member` is the link at ptr. */
#define RR_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Link x under hash (the caller has checked that its key is not there yet).  The first
 * insertion makes first_nb buckets (a power of two).  0 ok, -1 out of memory (nothing
 * changed). */
int rr_htab_insert(rr_htab *t, rr_hlink *x, uint64_t hash, size_t first_nb);
/* The chain that holds hash (NULL: none): walk it with ->next, comparing ->hash first. */
static inline rr_hlink *rr_htab_chain(const rr_htab *t, uint64_t hash)
{
    return t->n ? t->b[hash & (t->nb - 1)] : NULL;
}
/* Unlink x if it is in the table; 1 if it was. */
int rr_htab_remove(rr_htab *t, rr_hlink *x);
/* Free the buckets (the elements stay the caller's) and empty the table. */
void rr_htab_free(rr_htab *t);

#endif
