/* Reading the RINGRED_* settings of settings_table.c: parsing, ranges, the value in force and
 * what was wrong with an invalid one (returned, never printed: Python warns). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "core/reduce.h"

/* A number, optionally (`suffix`) followed by k/m/g (KiB, MiB, GiB; "kb", "KiB" too), with
 * surrounding blanks; nothing else.  1 if it is one (finite), 0 if not. */
static int parse_number(const char *v, int suffix, double *out)
{
    char *end = NULL;
    double x = strtod(v, &end);
    if (end == v || !isfinite(x))
        return 0;
    if (suffix && *end != '\0' && strchr("kKmMgG", *end)) {
        x *= *end == 'k' || *end == 'K' ? 1024.0 : *end == 'm' || *end == 'M' ? 1048576.0
                                                                            : 1073741824.0;
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
    }
    while (*end == ' ' || *end == '\t' || *end == '\n')
        end++;
    if (*end != '\0')
        return 0;
    *out = x;
    return 1;
}

/* Index of `v` among the '|'-separated words of `choices` (any case), or -1; the word is
 * copied to word[cap]. */
static int choice_index(const char *choices, const char *v, char *word, size_t cap)
{
    int i = 0;
    for (const char *p = choices; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (strlen(v) == n && strncasecmp(p, v, n) == 0) {
            snprintf(word, cap, "%.*s", (int)n, p);
            return i;
        }
        p += n + (bar != NULL);
    }
    return -1;
}

static void put_number(const rr_setting_desc *d, rr_setting_val *o, double x)
{
    o->number = x;
    if (d->kind == RR_SETTING_SIZE || d->kind == RR_SETTING_COUNT)
        snprintf(o->text, sizeof o->text, "%.0f", x);
    else
        snprintf(o->text, sizeof o->text, "%.15g", x);
}

static void put_default(const rr_setting_desc *d, rr_setting_val *o)
{
    double x = 0;
    if (d->kind != RR_SETTING_CHOICE && d->kind != RR_SETTING_TEXT) {
        (void)parse_number(d->dflt, 1, &x); /* the table's defaults are numbers (tested) */
        put_number(d, o, x);
        return;
    }
    snprintf(o->text, sizeof o->text, "%s", d->dflt);
    o->number = d->kind == RR_SETTING_CHOICE
                    ? (double)choice_index(d->choices, d->dflt, o->text, sizeof o->text)
                    : 0;
}

static void eval_choice(const rr_setting_desc *d, const char *name, const char *v,
                        rr_setting_val *o)
{
    char word[RR_SETTING_TEXT_LEN];
    int i = choice_index(d->choices, v, word, sizeof word);
    if (i >= 0 && d == &rr_settings_table[RR_S_KERNEL_PATH] && !rr_kernel_supported(word)) {
        put_default(d, o);
        o->state = RR_SETTING_REJECTED;
        snprintf(o->message, sizeof o->message, "%.64s=%.160s: this CPU has no %.32s kernels: "
                 "the default %.32s is used", name, v, word, o->text);
        return;
    }
    if (i >= 0) {
        o->state = RR_SETTING_SET;
        o->number = i;
        snprintf(o->text, sizeof o->text, "%s", word);
        return;
    }
    put_default(d, o);
    o->state = RR_SETTING_REJECTED;
    char list[RR_SETTING_TEXT_LEN];
    snprintf(list, sizeof list, "%s", d->choices);
    for (char *p = list; *p; p++)
        if (*p == '|')
            *p = '/';
    if (d->flags & RR_SETTING_STRICT)
        snprintf(o->message, sizeof o->message, "%.64s=%.160s is not one of %.96s: ringred "
                 "cannot start with it", name, v, list);
    else
        snprintf(o->message, sizeof o->message, "%.64s=%.160s is not one of %.96s: the "
                 "default %.96s is used", name, v, list, o->text);
}

static void eval_number(const rr_setting_desc *d, const char *name, const char *v,
                        rr_setting_val *o)
{
    double x = 0;
    if (!parse_number(v, d->kind == RR_SETTING_SIZE, &x)) {
        put_default(d, o);
        o->state = RR_SETTING_REJECTED;
        snprintf(o->message, sizeof o->message, "%.64s=%.160s is not a number: the default "
                 "%.64s is used", name, v, o->text);
        return;
    }
    if (d->kind == RR_SETTING_SIZE || d->kind == RR_SETTING_COUNT)
        x = floor(x);
    if (x < d->min && d->kind == RR_SETTING_NUMBER) {
        /* a negative time or count means nothing: the default, as before */
        put_default(d, o);
        o->state = RR_SETTING_REJECTED;
        snprintf(o->message, sizeof o->message, "%.64s=%.160s is below %.15g: the default "
                 "%.64s is used", name, v, d->min, o->text);
        return;
    }
    if (x < d->min || x > d->max) {
        const char *which = x < d->min ? "below the minimum" : "above the maximum";
        put_number(d, o, x < d->min ? d->min : d->max);
        o->state = RR_SETTING_CLAMPED;
        snprintf(o->message, sizeof o->message, "%.64s=%.160s is %s: %.64s is used", name, v,
                 which, o->text);
        return;
    }
    o->state = RR_SETTING_SET;
    put_number(d, o, x);
}

static void eval(const rr_setting_desc *d, rr_setting_val *o)
{
    memset(o, 0, sizeof *o);
    const char *name = d->name, *v = getenv(d->name);
    if ((v == NULL || *v == '\0') && d->alias != NULL) {
        v = getenv(d->alias);
        name = d->alias;
    }
    if (v == NULL || *v == '\0') {
        put_default(d, o);
        o->state = RR_SETTING_DEFAULT;
        return;
    }
    snprintf(o->raw, sizeof o->raw, "%s", v);
    if (d->kind == RR_SETTING_TEXT) {
        o->state = RR_SETTING_SET;
        snprintf(o->text, sizeof o->text, "%s", v);
    } else if (d->kind == RR_SETTING_CHOICE) {
        eval_choice(d, name, v, o);
    } else {
        eval_number(d, name, v, o);
    }
}

size_t rr_set_size(int id)
{
    rr_setting_val v;
    eval(&rr_settings_table[id], &v);
    return v.number >= 18446744073709551615.0 ? SIZE_MAX : (size_t)v.number;
}

double rr_set_number(int id)
{
    rr_setting_val v;
    eval(&rr_settings_table[id], &v);
    return v.number;
}

int rr_set_choice(int id)
{
    rr_setting_val v;
    eval(&rr_settings_table[id], &v);
    return (int)v.number;
}

int rr_setting_count(void)
{
    return RR_S_COUNT;
}

const rr_setting_desc *rr_setting_info(int i)
{
    return i >= 0 && i < RR_S_COUNT ? &rr_settings_table[i] : NULL;
}

rr_status rr_setting_value(const char *name, rr_setting_val *out)
{
    if (name == NULL || out == NULL)
        return RR_ERR_INVALID;
    for (int i = 0; i < RR_S_COUNT; i++) {
        const rr_setting_desc *d = &rr_settings_table[i];
        if (strcmp(d->name, name) == 0 || (d->alias && strcmp(d->alias, name) == 0)) {
            eval(d, out);
            return RR_OK;
        }
    }
    return RR_ERR_INVALID;
}

int rr_test_plant(const char *what)
{
    const char *v = getenv("RINGRED_TEST_PLANT");
    return v != NULL && strcmp(v, what) == 0;
}

void rr_settings_load(rr_settings *s)
{
    s->small_bytes = rr_set_size(RR_S_SMALL_BYTES);
    s->segment_bytes = rr_set_size(RR_S_SEGMENT_BYTES);
    s->window = (int)rr_set_size(RR_S_WINDOW);
    s->spin_count = (int)rr_set_size(RR_S_SPIN_COUNT);
    s->device_segment_bytes = rr_set_size(RR_S_DEVICE_SEGMENT_BYTES);
    s->device_slots = (int)rr_set_size(RR_S_DEVICE_SLOTS);
    static const int aware[] = {-1, 0, 1, 0, 1}; /* auto|0|1|no|yes */
    s->cuda_aware = aware[rr_set_choice(RR_S_CUDA_AWARE)];
    s->device_transport = rr_set_choice(RR_S_DEVICE_TRANSPORT); /* auto|ipc|staged: 0, 1, 2 */
    /* measured on one H200 shared by two ranks (docs/gpu.md): IPC beats staging from about
     * 1 MiB on; 128 MiB chunks halve the time of 256 MiB against 32 MiB ones; one shot wins
     * up to at least 4 MiB */
    s->ipc_min_bytes = rr_set_size(RR_S_IPC_MIN_BYTES);
    s->ipc_chunk_bytes = rr_set_size(RR_S_IPC_CHUNK_BYTES);
    s->ipc_slots = (int)rr_set_size(RR_S_IPC_SLOTS);
    s->ipc_oneshot_bytes = rr_set_size(RR_S_IPC_ONESHOT_BYTES);
    s->shm_small_bytes = rr_set_size(RR_S_SHM_SMALL_BYTES);
    s->shm_slot_bytes = rr_set_size(RR_S_SHM_SLOT_BYTES);
    s->shm_stream_bytes = rr_set_size(RR_S_SHM_STREAM_BYTES);
    /* every wait on a peer, both transports (RINGRED_SHM_TIMEOUT_SECONDS: the older name,
     * read when the new one is not set); 0: never */
    s->timeout_s = rr_set_number(RR_S_TIMEOUT_SECONDS);
    if (s->timeout_s == 0)
        s->timeout_s = 1e300;
    s->shm_spin_us = rr_set_number(RR_S_SHM_SPIN_US);
    /* address space only: pages are taken when buffers are allocated */
    s->shm_arena_bytes = rr_set_size(RR_S_SHM_ARENA_BYTES);
}
