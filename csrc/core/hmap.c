/* The intrusive chained hash table (core/hmap.h). */
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"

static int grow(rr_htab *t, size_t first_nb)
{
    size_t nb = t->nb ? t->nb * 2 : first_nb;
    rr_hlink **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < t->nb; i++) {
        rr_hlink *x = t->b[i];
        while (x) {
            rr_hlink *nx = x->next;
            size_t j = x->hash & (nb - 1);
            x->next = b[j];
            b[j] = x;
            x = nx;
        }
    }
    free(t->b);
    t->b = b;
    t->nb = nb;
    return 0;
}

int rr_htab_insert(rr_htab *t, rr_hlink *x, uint64_t hash, size_t first_nb)
{
    if (t->n + 1 > t->nb && grow(t, first_nb) != 0)
        return -1;
    rr_hlink **b = &t->b[hash & (t->nb - 1)];
    x->hash = hash;
    x->next = *b;
    *b = x;
    t->n++;
    return 0;
}

int rr_htab_remove(rr_htab *t, rr_hlink *x)
{
    if (t->n == 0)
        return 0;
    for (rr_hlink **pp = &t->b[x->hash & (t->nb - 1)]; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            t->n--;
            return 1;
        }
    return 0;
}

void rr_htab_free(rr_htab *t)
{
    free(t->b);
    memset(t, 0, sizeof *t);
}
