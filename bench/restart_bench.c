/* Benchmark of the supervisor: how soon a crashed worker's replacement
 * answers a call, and how much memory an idle worker holds.
 *
 *   restart_bench [--shoal PATH] [--restarts N]
 *
 * A supervisor runs in this process (the shoal library) with one pool of
 * one worker (a real `shoal node` process hosting echo), restart policy
 * permanent and no backoff (every run counts as stable: the restart is
 * immediate, as for a worker's first crash after a stable uptime). Each
 * round: SIGKILL the worker (t0), and the moment its replacement says
 * hello, call echo.echo on its join connection; the reply ends the round
 * (t1). t1 - t0 covers the exit notice, the spawn, exec, the node's start,
 * its connection back and hello, and one call. After N rounds (default
 * 50; 3 warm-up rounds first) the idle worker's resident memory is read
 * from /proc/PID/statm.
 *
 * Prints, in the form of the performance peers:
 *   peer=shoal_restart_to_answer restarts=50 p50_ms=... p99_ms=...
 *   peer=shoal_idle_worker rss_kib=...
 * p50 and p99 are nearest-rank percentiles.
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "shoal.h"

#ifndef SHOAL_BENCH_SHOAL_BIN
#define SHOAL_BENCH_SHOAL_BIN "shoal"
#endif

#define BENCH_RESTARTS 50
#define BENCH_WARMUP 3
/* The whole program ends within this. */
#define BENCH_TIME_LIMIT_S 120
/* How long the last worker idles before its memory is read. */
#define BENCH_IDLE_MS 500
#define BENCH_WORKER "bench-1"

typedef struct {
    uv_loop_t loop;
    shoal_node_t node;
    shoal_supervisor_t sup;
    uv_timer_t idle_timer;
    const char *shoal_bin;
    int rounds;   /* measured rounds wanted */
    int done;     /* rounds finished, warm-up included */
    int pid;      /* the live worker */
    bool waiting; /* a crash was caused: the next hello ends it */
    uint64_t t0;
    double *ms;
    long rss_kib;
    int failed;
} bench_t;

static void bench_crash(bench_t *b);

static void bench_fail(bench_t *b, const char *what)
{
    fprintf(stderr, "restart_bench: %s\n", what);
    b->failed = 1;
    shoal_supervisor_close(&b->sup, NULL);
    shoal_node_close(&b->node, NULL);
}

static long bench_rss_kib(int pid)
{
    char path[64];
    unsigned long long size, resident;
    FILE *f;
    int n;

    snprintf(path, sizeof(path), "/proc/%d/statm", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (n != 2)
        return -1;
    return (long)(resident * (unsigned long long)sysconf(_SC_PAGESIZE) / 1024);
}

static void bench_closed_cb(shoal_supervisor_t *sup)
{
    bench_t *b = sup->data;

    uv_close((uv_handle_t *)&b->idle_timer, NULL);
    shoal_node_close(&b->node, NULL);
}

static void bench_stopped_cb(shoal_supervisor_t *sup, int status)
{
    if (status != 0)
        fprintf(stderr, "restart_bench: stop: %s\n", shoal_strerror(status));
    shoal_supervisor_close(sup, bench_closed_cb);
}

static void bench_idle_cb(uv_timer_t *timer)
{
    bench_t *b = timer->data;

    b->rss_kib = bench_rss_kib(b->pid);
    shoal_supervisor_stop(&b->sup, bench_stopped_cb);
}

static void bench_reply_cb(const shoal_reply_t *reply, void *data)
{
    bench_t *b = data;
    uint64_t t1 = uv_hrtime();

    if (reply->status != 0) {
        bench_fail(b, reply->message);
        return;
    }
    if (b->done >= BENCH_WARMUP)
        b->ms[b->done - BENCH_WARMUP] = (double)(t1 - b->t0) / 1e6;
    b->done++;
    if (b->done < BENCH_WARMUP + b->rounds) {
        bench_crash(b);
        return;
    }
    uv_timer_start(&b->idle_timer, bench_idle_cb, BENCH_IDLE_MS, 0);
}

static void bench_crash(bench_t *b)
{
    b->waiting = true;
    b->t0 = uv_hrtime();
    if (kill(b->pid, SIGKILL) != 0)
        bench_fail(b, "cannot kill the worker");
}

/* A worker said hello: the first one starts the rounds; every later one
 * is a replacement, called at once. */
static void bench_on_hello(shoal_node_t *node, shoal_conn_t *conn,
                           const shoal_payload_t *desc, void *data)
{
    static const shoal_payload_t args = {"[1,2,3]", 7, SHOAL_CODEC_JSON};
    bench_t *b = data;
    cJSON *json = shoal_payload_to_cjson(desc);
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(json, "pid");

    (void)node;
    if (strcmp(shoal_conn_peer_name(conn), BENCH_WORKER) != 0 ||
        !cJSON_IsNumber(pid)) {
        cJSON_Delete(json);
        return;
    }
    b->pid = pid->valueint;
    cJSON_Delete(json);
    if (!b->waiting) {
        bench_crash(b); /* the first start: not measured */
        return;
    }
    b->waiting = false;
    if (shoal_conn_call(conn, "echo", "echo", &args, 5000, bench_reply_cb,
                        b) != 0)
        bench_fail(b, "cannot call the replacement");
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double bench_rank(const double *sorted, int n, double p)
{
    int k = (int)ceil(p * n);

    return sorted[k < 1 ? 0 : k - 1];
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"shoal", required_argument, NULL, 's'},
        {"restarts", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    shoal_supervisor_opts_t sopts;
    shoal_node_hooks_t hooks;
    shoal_pool_opts_t pool;
    const char *apps[] = {"echo"};
    char why[512];
    bench_t b;
    int c, err;

    memset(&b, 0, sizeof(b));
    b.shoal_bin = SHOAL_BENCH_SHOAL_BIN;
    b.rounds = BENCH_RESTARTS;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 's') {
            b.shoal_bin = optarg;
        } else if (c == 'n' && atoi(optarg) > 0) {
            b.rounds = atoi(optarg);
        } else {
            fprintf(stderr,
                    "usage: restart_bench [--shoal PATH] [--restarts N]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    alarm(BENCH_TIME_LIMIT_S);
    b.ms = calloc((size_t)b.rounds, sizeof(*b.ms));
    uv_loop_init(&b.loop);
    if (b.ms == NULL || shoal_node_init(&b.loop, &b.node, NULL) != 0)
        return 2;
    shoal_supervisor_opts_default(&sopts);
    sopts.exe = b.shoal_bin;
    sopts.quiet = true;
    sopts.sample_interval_ms = 0;
    err = shoal_supervisor_init(&b.sup, &b.node, &sopts);
    if (err) {
        fprintf(stderr, "restart_bench: %s\n", shoal_strerror(err));
        return 2;
    }
    b.sup.data = &b;
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_hello = bench_on_hello;
    hooks.data = &b;
    shoal_node_add_hooks(&b.node, &hooks);
    shoal_pool_opts_default(&pool);
    pool.name = "bench";
    pool.workers = 1;
    pool.apps = apps;
    pool.n_apps = 1;
    /* Every run is stable: no delay, and no budget to run out. */
    pool.reset_after_ms = 0;
    pool.max_restarts = 1000000;
    if ((err = shoal_supervisor_add_pool(&b.sup, &pool, why, sizeof(why)))) {
        fprintf(stderr, "restart_bench: %s\n", why);
        return 2;
    }
    uv_timer_init(&b.loop, &b.idle_timer);
    b.idle_timer.data = &b;
    shoal_supervisor_start(&b.sup);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    if (b.failed || b.done < BENCH_WARMUP + b.rounds) {
        free(b.ms);
        return 1;
    }
    qsort(b.ms, (size_t)b.rounds, sizeof(*b.ms), bench_cmp);
    printf("peer=shoal_restart_to_answer restarts=%d p50_ms=%.2f "
           "p99_ms=%.2f\n",
           b.rounds, bench_rank(b.ms, b.rounds, 0.50),
           bench_rank(b.ms, b.rounds, 0.99));
    printf("peer=shoal_idle_worker rss_kib=%ld\n", b.rss_kib);
    free(b.ms);
    return 0;
}
