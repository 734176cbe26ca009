/* Stall inspector.  Rank 0 knows, for every tensor negotiated through the slow path, when
 * the first rank submitted it and which ranks have: after RINGRED_STALL_CHECK_SECONDS it
 * queues a warning naming the missing ranks, and with RINGRED_STALL_SHUTDOWN_SECONDS the
 * coordinator turns the tensor into an error on every rank (coordinator.c).
 * A pending cache hit is invisible to rank 0 (only its AND-ed bit travels), so a rank whose
 * hit has waited half the inspection time asks for the entry to be invalidated: every rank
 * then resends its request for it through the slow path, where rank 0 can see who is missing. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

static double hit_age(const rr_engine *e)
{
    double a = 0;
    if (e->stall_check > 0)
        a = e->stall_check / 2;
    if (e->stall_shutdown > 0 && (a == 0 || e->stall_shutdown / 2 < a))
        a = e->stall_shutdown / 2;
    return a;
}

/* "ranks 0, 2" of the ranks that have (have=1) or have not (0) submitted; joined ranks are
 * not counted as missing. */
size_t rr_rank_list(const rr_engine *e, const rr_neg *g, int have, char *buf, size_t cap)
{
    size_t p = 0;
    int cnt = 0;
    buf[0] = '\0';
    for (int r = 0; r < e->size; r++)
        cnt += (g->req[r].name != NULL) == have && (have || !e->joined_prev[r]);
    p += (size_t)snprintf(buf, cap, "rank%s", cnt == 1 ? "" : "s");
    for (int r = 0, m = 0; r < e->size && p < cap; r++) {
        if ((g->req[r].name != NULL) != have || (!have && e->joined_prev[r]))
            continue;
        if (m < 16)
            p += (size_t)snprintf(buf + p, cap - p, "%s%d", m ? ", " : " ", r);
        else if (m == 16)
            p += (size_t)snprintf(buf + p, cap - p, ", ...");
        m++;
    }
    return p;
}

static void warn_stalled(rr_engine *e, double now)
{
    char text[4096];
    size_t p = 0;
    int cnt = 0;
    for (rr_neg *g = e->coord.head; g; g = g->next) {
        double age = now - g->t_first;
        if (age < e->stall_check || now - g->t_warned < e->stall_check)
            continue;
        g->t_warned = now;
        int first = 0;
        while (first < e->size && !g->req[first].name)
            first++;
        if (first == e->size)
            continue;
        if (cnt++ == 0)
            p += (size_t)snprintf(text, sizeof text, "ringred stall inspector: tensors "
                                  "submitted by some ranks have waited more than %g s "
                                  "(RINGRED_STALL_CHECK_SECONDS) for the others:", e->stall_check);
        if (p >= sizeof text - 16)
            continue;
        char miss[400];
        rr_rank_list(e, g, 0, miss, sizeof miss);
        p += (size_t)snprintf(text + p, sizeof text - p, " '%s' (%s, waiting %.1f s) missing "
                              "on %s;", g->name, rr_kind_name(g->req[first].kind), age, miss);
    }
    if (cnt && p < sizeof text)
        snprintf(text + p, sizeof text - p, " every rank must submit the same tensor names "
                 "(unnamed tensors need the same call order on every rank)");
    if (cnt) {
        rr_engine_warn(e, text);
        /* The other ranks wait on these tensors too: the next response list tells them. */
        char *note = strdup(text);
        if (note) {
            free(e->stall_note);
            e->stall_note = note;
            e->stall_action = 1;
        }
    }
}

void rr_stall_tick(rr_engine *e, double now)
{
    if (now < e->next_stall_check || (e->stall_check <= 0 && e->stall_shutdown <= 0))
        return;
    e->next_stall_check = now + 0.02;
    if (e->rank == 0 && e->coord.head) {
        if (e->stall_check > 0)
            warn_stalled(e, now);
        if (e->stall_shutdown > 0)
            for (rr_neg *g = e->coord.head; g; g = g->next)
                if (now - g->t_first >= e->stall_shutdown) {
                    e->stall_action = 1;
                    break;
                }
    }
    double ha = hit_age(e);
    for (int s = 0; s < e->cache.hw && ha > 0; s++) {
        rr_entry *x = e->hit[s];
        if (x && !x->stall_flagged && now - x->t_submit >= ha) {
            e->stall_action = 1;
            break;
        }
    }
}

void rr_stall_scan_hits(rr_engine *e, double now)
{
    double ha = hit_age(e);
    if (ha <= 0)
        return;
    for (int s = 0; s < e->cache.hw; s++) {
        rr_entry *x = e->hit[s];
        if (!x || x->stall_flagged || now - x->t_submit < ha)
            continue;
        if (e->n_evict_req == e->evict_req_cap) {
            int cap = e->evict_req_cap ? 2 * e->evict_req_cap : 16;
            uint32_t *v = realloc(e->evict_req, (size_t)cap * sizeof *v);
            if (v == NULL)
                return;
            e->evict_req = v;
            e->evict_req_cap = cap;
        }
        x->stall_flagged = 1;
        e->evict_req[e->n_evict_req++] = (uint32_t)s;
    }
}
