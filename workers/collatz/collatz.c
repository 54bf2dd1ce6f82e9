/* collatz: a C plugin that finds the longest Collatz chain in a range of
 * numbers, on libuv's thread pool so that its node keeps answering. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "shoal.h"

/* Ranges end at most here: a range is one task, and 2^40 keeps every
 * chain's steps and peak far inside what is computed exactly. */
#define COLLATZ_MAX_HI ((uint64_t)1 << 40)
/* "steps" takes any number a JSON double holds exactly. */
#define COLLATZ_MAX_N ((uint64_t)1 << 53)
/* A call's cache of steps for the numbers below it: 2 bytes a number, so
 * at most 8 MiB per call, freed when the call ends. Ranges shorter than
 * 1/COLLATZ_CACHE_SHARE of it go without: filling it would cost more. */
#define COLLATZ_CACHE_MAX ((uint64_t)1 << 22)
#define COLLATZ_CACHE_SHARE 8

int shoal_plugin_register(shoal_node_t *node, const char *name);

typedef unsigned __int128 collatz_u128_t;

typedef struct {
    uint64_t lo, hi;
    uint64_t best_n;
    uint64_t best_steps;
    int err; /* 0, SHOAL_ENOMEM, or SHOAL_EAPPFAILED on overflow */
} collatz_range_t;

/* The chain of a number past 64 bits: the same walk in 128 bits, checked
 * before each 3m + 1. Returns the steps to 1, or -1 on overflow. */
static int64_t collatz_steps_wide(collatz_u128_t m, int64_t steps)
{
    const collatz_u128_t max = ~(collatz_u128_t)0;

    while (m != 1) {
        if (m & 1) {
            if (m > (max - 1) / 3)
                return -1;
            /* 3m + 1 is even: two steps at once. */
            m = (3 * m + 1) / 2;
            steps += 2;
        } else {
            m >>= 1;
            steps++;
        }
    }
    return steps;
}

/* Steps from n (>= 1) down to 1, counting 3n + 1 and n / 2 as one step
 * each (27 takes 111). cache[k] holds the steps of k for k < cache_len, or
 * 0 when unknown. Returns -1 on overflow. */
static int64_t collatz_steps(uint64_t n, const uint16_t *cache,
                             uint64_t cache_len)
{
    int64_t steps = 0;
    uint64_t m = n;

    while (m != 1) {
        if (m < cache_len && cache[m] != 0)
            return steps + cache[m];
        if (m & 1) {
            if (m > (UINT64_MAX - 1) / 3)
                return collatz_steps_wide(m, steps);
            m = (3 * m + 1) / 2;
            steps += 2;
        } else {
            m >>= 1;
            steps++;
        }
    }
    return steps;
}

/* Runs on a thread of the pool: touches nothing but r. */
static void collatz_range_work(shoal_call_t *call, void *data)
{
    collatz_range_t *r = data;
    uint64_t cache_len = r->hi < COLLATZ_CACHE_MAX ? r->hi : COLLATZ_CACHE_MAX;
    uint16_t *cache = NULL;

    (void)call;
    if (r->hi - r->lo < cache_len / COLLATZ_CACHE_SHARE)
        cache_len = 0;
    if (cache_len > 0) {
        cache = calloc(cache_len, sizeof(*cache));
        if (cache == NULL)
            cache_len = 0; /* slower, still right */
    }
    /* Filled upwards, each number's chain soon drops below it into known
     * ground. Steps below 2^22 stay under 600: they fit 16 bits. */
    for (uint64_t k = 2; k < cache_len; k++)
        cache[k] = (uint16_t)collatz_steps(k, cache, k);
    r->best_steps = 0;
    r->best_n = 0;
    for (uint64_t n = r->lo; n < r->hi; n++) {
        int64_t steps;
        if (n == 0)
            continue; /* 0 never reaches 1: it has no chain */
        steps = n < cache_len ? cache[n] : collatz_steps(n, cache, cache_len);
        if (steps < 0) {
            r->err = SHOAL_EAPPFAILED;
            r->best_n = n;
            break;
        }
        /* Strictly longer: ties keep the smallest n. */
        if (r->best_n == 0 || (uint64_t)steps > r->best_steps) {
            r->best_n = n;
            r->best_steps = (uint64_t)steps;
        }
    }
    free(cache);
}

/* Back on the loop: answers. */
static void collatz_range_done(shoal_call_t *call, int status, void *data)
{
    collatz_range_t *r = data;
    char text[128];

    if (status < 0)
        shoal_call_fail(call, status, "range: %s", shoal_strerror(status));
    else if (r->err)
        shoal_call_fail(call, r->err,
                        "range: the chain of %llu outgrew 128 bits",
                        (unsigned long long)r->best_n);
    else if (r->best_n == 0)
        shoal_call_reply_json(call, "{\"n\":null,\"steps\":null,\"count\":1}");
    else {
        snprintf(
            text, sizeof(text), "{\"n\":%llu,\"steps\":%llu,\"count\":%llu}",
            (unsigned long long)r->best_n, (unsigned long long)r->best_steps,
            (unsigned long long)(r->hi - r->lo));
        shoal_call_reply_json(call, text);
    }
    free(r);
}

/* An integer in [0, max], from a JSON number. */
static bool collatz_integer(const cJSON *item, uint64_t max, uint64_t *out)
{
    double d;

    if (!cJSON_IsNumber(item))
        return false;
    d = item->valuedouble;
    if (!(d >= 0) || d > (double)max)
        return false;
    *out = (uint64_t)d;
    return (double)*out == d; /* integral */
}

/* range [lo, hi): args are [lo, hi] or {"lo": lo, "hi": hi}. */
static void collatz_range(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);
    const cJSON *lo_item, *hi_item;
    collatz_range_t *r;
    uint64_t lo, hi;
    int err;

    (void)data;
    if (cJSON_IsArray(args) && cJSON_GetArraySize(args) == 2) {
        lo_item = cJSON_GetArrayItem(args, 0);
        hi_item = cJSON_GetArrayItem(args, 1);
    } else {
        lo_item = cJSON_GetObjectItemCaseSensitive(args, "lo");
        hi_item = cJSON_GetObjectItemCaseSensitive(args, "hi");
    }
    if (!collatz_integer(lo_item, COLLATZ_MAX_HI, &lo) ||
        !collatz_integer(hi_item, COLLATZ_MAX_HI, &hi) || hi <= lo) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "range takes [lo, hi]: two integers with "
                        "0 <= lo < hi <= 2^40 (hi excluded)");
        return;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    r->lo = lo;
    r->hi = hi;
    err =
        shoal_call_queue_work(call, collatz_range_work, collatz_range_done, r);
    if (err) {
        free(r);
        shoal_call_fail(call, err, "range: %s", shoal_strerror(err));
    }
}

/* steps {n}: one number's steps, on the loop: at most a few thousand. */
static void collatz_steps_action(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);
    const cJSON *item = cJSON_IsObject(args)
                            ? cJSON_GetObjectItemCaseSensitive(args, "n")
                            : args;
    char text[32];
    int64_t steps;
    uint64_t n;

    (void)data;
    if (!collatz_integer(item, COLLATZ_MAX_N, &n) || n == 0) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "steps takes {\"n\": N}: an integer with "
                        "1 <= N <= 2^53");
        return;
    }
    steps = collatz_steps(n, NULL, 0);
    if (steps < 0) {
        shoal_call_fail(call, SHOAL_EAPPFAILED,
                        "steps: the chain of %llu outgrew 128 bits",
                        (unsigned long long)n);
        return;
    }
    snprintf(text, sizeof(text), "%lld", (long long)steps);
    shoal_call_reply_json(call, text);
}

static const shoal_action_t collatz_actions[] = {
    {"range", collatz_range},
    {"steps", collatz_steps_action},
};

int shoal_plugin_register(shoal_node_t *node, const char *name)
{
    shoal_app_opts_t opts;

    if (strcmp(name, "collatz") != 0)
        return SHOAL_ENOAPP;
    memset(&opts, 0, sizeof(opts));
    opts.name = "collatz";
    opts.description =
        "{\"summary\":\"range [lo, hi] gives the n in [lo, hi) with the "
        "longest Collatz chain (ties: the smallest) as {n, steps, count}; "
        "steps {n} gives one number's steps\"}";
    opts.actions = collatz_actions;
    opts.n_actions = sizeof(collatz_actions) / sizeof(collatz_actions[0]);
    return shoal_node_add_app(node, &opts);
}
