/* Chrome trace timeline (loads in Perfetto / chrome://tracing), written by rank 0 only.
 * One "thread" per tensor (named after it), spans for each phase of its life, an instant
 * event at every cycle start.  Writes go through a large stdio buffer; when the timeline is
 * off the engine pays one relaxed atomic load per event site. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

#define TL_BUFSZ (1u << 20)

void rr_tl_init(rr_timeline *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void sep(rr_timeline *t)
{
    fputs(t->first ? "\n" : ",\n", t->f);
    t->first = 0;
}

rr_status rr_tl_open(rr_timeline *t, const char *path, int rank, char *err, size_t errcap)
{
    pthread_mutex_lock(&t->mu);
    if (t->f) {
        pthread_mutex_unlock(&t->mu);
        snprintf(err, errcap, "a timeline is already being written");
        return RR_ERR_STATE;
    }
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        pthread_mutex_unlock(&t->mu);
        snprintf(err, errcap, "cannot open '%s' for writing", path);
        return RR_ERR_SYSTEM;
    }
    t->fbuf = malloc(TL_BUFSZ);
    if (t->fbuf)
        setvbuf(f, t->fbuf, _IOFBF, TL_BUFSZ);
    t->f = f;
    t->t0 = rr_now();
    t->first = 1;
    t->next_tid = 1;
    fputs("[", f);
    sep(t);
    fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":0,\"args\":{\"name\":"
               "\"ringred rank %d\"}}", rank);
    sep(t);
    fputs("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":0,\"args\":{\"name\":"
          "\"cycles\"}}", f);
    atomic_store(&t->on, 1);
    pthread_mutex_unlock(&t->mu);
    return RR_OK;
}

void rr_tl_close(rr_timeline *t)
{
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->on, 0);
    if (t->f) {
        fputs("\n]\n", t->f);
        fclose(t->f);
        t->f = NULL;
    }
    free(t->fbuf);
    t->fbuf = NULL;
    for (size_t i = 0; i < t->tids.nb; i++)
        for (rr_smap_node *x = rr_smap_chain(&t->tids, i); x; x = rr_smap_next(x))
            free((char *)x->key);
    rr_smap_free(&t->tids);
    pthread_mutex_unlock(&t->mu);
}

static int tid_for(rr_timeline *t, const char *tensor)
{
    void *v = rr_smap_get(&t->tids, tensor);
    if (v)
        return (int)(intptr_t)v;
    char *key = strdup(tensor);
    if (key == NULL)
        return 0;
    int tid = t->next_tid++;
    if (rr_smap_put(&t->tids, key, (void *)(intptr_t)tid) != 0) {
        free(key);
        return 0;
    }
    sep(t);
    fprintf(t->f, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":%d,\"args\":"
                  "{\"name\":", tid);
    json_str(t->f, tensor);
    fputs("}}", t->f);
    return tid;
}

void rr_tl_span(rr_timeline *t, const char *tensor, const char *what, double t_begin,
                double t_end)
{
    pthread_mutex_lock(&t->mu);
    if (t->f) {
        int tid = tid_for(t, tensor);
        double b = (t_begin - t->t0) * 1e6, d = (t_end - t_begin) * 1e6;
        if (d < 0)
            d = 0;
        sep(t);
        fprintf(t->f, "{\"name\":\"%s\",\"ph\":\"X\",\"pid\":0,\"tid\":%d,\"ts\":%.3f,"
                      "\"dur\":%.3f}", what, tid, b, d);
    }
    pthread_mutex_unlock(&t->mu);
}

void rr_tl_instant(rr_timeline *t, const char *what, uint64_t cycle)
{
    pthread_mutex_lock(&t->mu);
    if (t->f) {
        sep(t);
        fprintf(t->f, "{\"name\":\"%s\",\"ph\":\"i\",\"s\":\"t\",\"pid\":0,\"tid\":0,"
                      "\"ts\":%.3f,\"args\":{\"cycle\":%llu}}", what, (rr_now() - t->t0) * 1e6,
                (unsigned long long)cycle);
    }
    pthread_mutex_unlock(&t->mu);
}
