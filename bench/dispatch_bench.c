/* Benchmarks of dispatch: this process is the supervisor (a node with a
 * dispatcher, as `shoal supervise` runs it) and real `shoal node` workers
 * join it, on one machine.
 *
 *   dispatch_bench farm [N] [OPTIONS]
 *   dispatch_bench collatz [N] [OPTIONS]
 *   dispatch_bench flood [N] [OPTIONS]
 *
 * farm: N (default 200,000) tiny tasks (echo of an integer, checked) placed
 * round-robin over WORKERS (2) workers with INFLIGHT (64) calls in flight
 * per worker, submitted in-process with shoal_dispatch_submit and a window
 * of twice what the workers hold. The time runs from the first submit to
 * the last outcome, workers already joined: the same measure as the
 * Node.js peer (forkbench.js farm N 2 64).
 *
 * collatz: the longest Collatz chain below N (default 10,000,000) with the
 * collatz plugin, [1, N) cut into RANGES (400) ranges, first on 1 worker,
 * then on 2; each worker runs with UV_THREADPOOL_SIZE=1 so that a worker
 * is one core. Prints both times and the speed-up, and checks the answer
 * against the known ones below 10^6 and 10^7.
 *
 * flood: a `shoal node --dispatch` child process with 2 echo workers, and
 * this process as a client that keeps WINDOW (20,000) submits in flight,
 * one task a message, N (default 10,000,000) in all: the dispatcher must
 * pause it. Prints the dispatcher's resident memory at each tenth of the
 * job: it stays flat.
 *
 * Options:
 *   --shoal PATH      the shoal command (default: the one built with this)
 *   --plugins DIR     where collatz.so is (default: the build's workers/)
 *   --workers N       farm workers (default 2)
 *   --inflight N      calls in flight per worker (default 64)
 *   --ranges N        collatz ranges (default 400)
 *   --window N        flood: submits in flight (default 20000)
 *
 * Each figure is one line in the form of the performance peers:
 *   peer=shoal_farm_2w tasks=200000 workers=2 inflight_per_worker=64
 *     tasks_per_s=...
 *   peer=shoal_collatz_speedup n=10000000 t1_s=... t2_s=... speedup=...
 *   peer=shoal_flood tasks=... rss_start_kb=... rss_max_kb=... ...
 * Placement (taskset) is the caller's: the workers inherit the affinity.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shoal.h"

#ifndef SHOAL_BENCH_SHOAL_BIN
#define SHOAL_BENCH_SHOAL_BIN "shoal"
#endif
#ifndef SHOAL_BENCH_PLUGIN_DIR
#define SHOAL_BENCH_PLUGIN_DIR "workers"
#endif

#define BENCH_MAX_WORKERS 16
#define BENCH_TIME_LIMIT_S 600
#define BENCH_READY_MAX_BYTES 4096

typedef enum { MODE_FARM, MODE_COLLATZ, MODE_FLOOD } bench_mode_t;

typedef struct {
    bench_mode_t mode;
    long n;
    int workers;
    size_t inflight;
    long ranges;
    long window;
    const char *shoal_bin;
    const char *plugin_dir;

    char dir[64];
    char url[160];
    pid_t pids[BENCH_MAX_WORKERS + 1];
    int n_pids;

    uv_loop_t loop;
    shoal_node_t node;
    shoal_dispatch_t dispatch;
    uv_timer_t poll;
    int want_members;

    /* a job */
    long sent, done, bad;
    int64_t check;
    uint64_t t0_ns, t1_ns;
    /* collatz */
    uint64_t best_n, best_steps;
    char per_node[BENCH_MAX_WORKERS][64];
    long per_node_count[BENCH_MAX_WORKERS];
    /* flood */
    shoal_conn_t *conn;
    pid_t dispatcher_pid;
    long rss_kb[11];
} bench_t;

static void bench_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static bench_t *bench_current;

static void bench_kill_children(void)
{
    if (bench_current == NULL)
        return;
    for (int i = 0; i < bench_current->n_pids; i++)
        if (bench_current->pids[i] > 0)
            kill(bench_current->pids[i], SIGKILL);
}

static void bench_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "dispatch_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    bench_kill_children();
    exit(1);
}

static void bench_alarm(int sig)
{
    (void)sig;
    bench_kill_children();
    _exit(2);
}

/* ---- processes ------------------------------------------------------------
 */

/* Starts `shoal node ARGS` and returns once it has written its ready line
 * (so that it listens or has begun to join). */
static pid_t bench_spawn_node(bench_t *b, const char *const *args,
                              bool one_thread, char *ready, size_t ready_len)
{
    const char *argv[32];
    char fd_text[16];
    int fds[2], n = 0;
    size_t got = 0;
    pid_t pid, parent = getpid();

    if (pipe(fds) != 0)
        bench_fail("pipe: %s", strerror(errno));
    snprintf(fd_text, sizeof(fd_text), "%d", fds[1]);
    argv[n++] = b->shoal_bin;
    argv[n++] = "node";
    for (int i = 0; args[i] && n < 28; i++)
        argv[n++] = args[i];
    argv[n++] = "--ready-fd";
    argv[n++] = fd_text;
    argv[n] = NULL;
    pid = fork();
    if (pid < 0)
        bench_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        close(fds[0]);
        if (one_thread)
            setenv("UV_THREADPOOL_SIZE", "1", 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        ssize_t r = read(fds[0], ready + got, ready_len - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(ready, '\n', got) || got == ready_len - 1)
            break;
    }
    close(fds[0]);
    ready[got] = '\0';
    if (got == 0)
        bench_fail("%s node did not start", b->shoal_bin);
    b->pids[b->n_pids++] = pid;
    return pid;
}

static void bench_start_worker(bench_t *b, int i, const char *app)
{
    char name[32], ready[BENCH_READY_MAX_BYTES];
    const char *args[] = {"--name",  name, "--join",     b->url,
                          "--app",   app,  "--app-path", b->plugin_dir,
                          "--quiet", NULL};

    snprintf(name, sizeof(name), "w%d", i);
    bench_spawn_node(b, args, b->mode == MODE_COLLATZ, ready, sizeof(ready));
}

static void bench_stop_children(bench_t *b)
{
    for (int i = 0; i < b->n_pids; i++) {
        int status;
        kill(b->pids[i], SIGTERM);
        while (waitpid(b->pids[i], &status, 0) < 0 && errno == EINTR)
            ;
        b->pids[i] = 0;
    }
    b->n_pids = 0;
}

/* ---- the in-process supervisor ---------------------------------------------
 */

static void bench_poll_cb(uv_timer_t *timer)
{
    bench_t *b = timer->data;
    shoal_dispatch_stats_t st;

    shoal_dispatch_stats(&b->dispatch, &st);
    if ((int)st.members >= b->want_members)
        uv_stop(&b->loop);
}

/* Runs the loop until the dispatcher has n members (polled every 2 ms,
 * bounded by the alarm). */
static void bench_wait_members(bench_t *b, int n)
{
    b->want_members = n;
    uv_timer_start(&b->poll, bench_poll_cb, 2, 2);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&b->poll);
}

static void bench_supervisor_init(bench_t *b)
{
    shoal_dispatch_opts_t dopts;
    shoal_node_opts_t nopts;
    char url[160];
    int err;

    snprintf(b->dir, sizeof(b->dir), "/tmp/shoal-bench-XXXXXX");
    if (mkdtemp(b->dir) == NULL)
        bench_fail("mkdtemp: %s", strerror(errno));
    snprintf(url, sizeof(url), "unix://%s/sup.sock", b->dir);
    uv_loop_init(&b->loop);
    memset(&nopts, 0, sizeof(nopts));
    nopts.name = "supervisor";
    if ((err = shoal_node_init(&b->loop, &b->node, &nopts)) ||
        (err = shoal_node_listen(&b->node, url)))
        bench_fail("node: %s", shoal_strerror(err));
    snprintf(b->url, sizeof(b->url), "%s", url);
    memset(&dopts, 0, sizeof(dopts));
    dopts.inflight_per_node = b->inflight;
    if ((err = shoal_dispatch_init(&b->dispatch, &b->node, &dopts)))
        bench_fail("dispatch: %s", shoal_strerror(err));
    uv_timer_init(&b->loop, &b->poll);
    b->poll.data = b;
}

static void bench_supervisor_close(bench_t *b)
{
    char path[128];

    shoal_dispatch_close(&b->dispatch, NULL);
    uv_close((uv_handle_t *)&b->poll, NULL);
    shoal_node_close(&b->node, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    bench_stop_children(b);
    snprintf(path, sizeof(path), "%s/sup.sock", b->dir);
    unlink(path);
    rmdir(b->dir);
}

/* ---- farm
 * --------------------------------------------------------------------- */

static void farm_fill(bench_t *b);

static void farm_outcome_cb(const shoal_outcome_t *o, void *data)
{
    bench_t *b = data;
    int64_t id = -1, r = -2;

    if (o->status != SHOAL_OUTCOME_OK || shoal_payload_int(&o->id, &id) != 0 ||
        shoal_payload_int(&o->result, &r) != 0 || r != id)
        b->bad++;
    b->check += r;
    if (++b->done == b->n) {
        b->t1_ns = uv_hrtime();
        uv_stop(&b->loop);
        return;
    }
    farm_fill(b);
}

static void farm_fill(bench_t *b)
{
    long window = 2 * (long)b->inflight * b->workers;

    while (b->sent < b->n && b->sent - b->done < window) {
        unsigned char mp[9];
        shoal_payload_t arg = {(const char *)mp, 0, SHOAL_CODEC_MSGPACK};
        shoal_task_t task;
        long i = b->sent++;
        /* a MessagePack uint32: what a worker's codec speaks */
        mp[0] = 0xce;
        mp[1] = (unsigned char)(i >> 24);
        mp[2] = (unsigned char)(i >> 16);
        mp[3] = (unsigned char)(i >> 8);
        mp[4] = (unsigned char)i;
        arg.len = 5;
        memset(&task, 0, sizeof(task));
        task.app = "echo";
        task.action = "echo";
        task.args = &arg;
        task.id = &arg;
        if (shoal_dispatch_submit(&b->dispatch, &task, farm_outcome_cb, b))
            bench_fail("submit failed");
    }
}

static void bench_farm(bench_t *b)
{
    double s;

    bench_supervisor_init(b);
    for (int i = 0; i < b->workers; i++)
        bench_start_worker(b, i, "echo");
    bench_wait_members(b, b->workers);
    b->t0_ns = uv_hrtime();
    farm_fill(b);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    if (b->bad || b->check != (int64_t)b->n * (b->n - 1) / 2)
        bench_fail("farm: %ld wrong outcomes", b->bad);
    s = (double)(b->t1_ns - b->t0_ns) / 1e9;
    printf("peer=shoal_farm_%dw tasks=%ld workers=%d inflight_per_worker=%zu "
           "tasks_per_s=%.0f\n",
           b->workers, b->n, b->workers, b->inflight, (double)b->n / s);
    fflush(stdout);
    bench_supervisor_close(b);
}

/* ---- collatz
 * ------------------------------------------------------------------ */

static void collatz_outcome_cb(const shoal_outcome_t *o, void *data)
{
    bench_t *b = data;
    shoal_payload_t v;
    int64_t n = 0, steps = 0;

    if (o->status != SHOAL_OUTCOME_OK ||
        shoal_payload_get(&o->result, "n", &v) != 0 ||
        shoal_payload_int(&v, &n) != 0 ||
        shoal_payload_get(&o->result, "steps", &v) != 0 ||
        shoal_payload_int(&v, &steps) != 0)
        bench_fail("collatz: a range failed: %s %s", o->code_name, o->message);
    if ((uint64_t)steps > b->best_steps ||
        ((uint64_t)steps == b->best_steps && (uint64_t)n < b->best_n)) {
        b->best_steps = (uint64_t)steps;
        b->best_n = (uint64_t)n;
    }
    if (++b->done == b->ranges) {
        b->t1_ns = uv_hrtime();
        uv_stop(&b->loop);
    }
}

/* Submits every range at once: the dispatcher keeps INFLIGHT per worker
 * and queues the rest, so a worker that is done early takes more. */
static double collatz_run(bench_t *b, int workers)
{
    char json[64];

    b->workers = workers;
    bench_supervisor_init(b);
    for (int i = 0; i < workers; i++)
        bench_start_worker(b, i, "collatz");
    bench_wait_members(b, workers);
    b->done = 0;
    b->best_n = b->best_steps = 0;
    b->t0_ns = uv_hrtime();
    for (long r = 0; r < b->ranges; r++) {
        uint64_t lo = 1 + (uint64_t)((double)(b->n - 1) * r / b->ranges);
        uint64_t hi = 1 + (uint64_t)((double)(b->n - 1) * (r + 1) / b->ranges);
        int len = snprintf(json, sizeof(json), "[%llu,%llu]",
                           (unsigned long long)lo, (unsigned long long)hi);
        shoal_payload_t args = {json, (size_t)len, SHOAL_CODEC_JSON};
        shoal_task_t task;
        memset(&task, 0, sizeof(task));
        task.app = "collatz";
        task.action = "range";
        task.args = &args;
        if (shoal_dispatch_submit(&b->dispatch, &task, collatz_outcome_cb, b))
            bench_fail("submit failed");
    }
    uv_run(&b->loop, UV_RUN_DEFAULT);
    bench_supervisor_close(b);
    if ((b->n == 1000000 && (b->best_n != 837799 || b->best_steps != 524)) ||
        (b->n == 10000000 && (b->best_n != 8400511 || b->best_steps != 685)))
        bench_fail("collatz: wrong answer %llu (%llu steps)",
                   (unsigned long long)b->best_n,
                   (unsigned long long)b->best_steps);
    return (double)(b->t1_ns - b->t0_ns) / 1e9;
}

static void bench_collatz(bench_t *b)
{
    double t1, t2;

    /* Few calls in flight per worker: ranges differ in cost, and a worker
     * that finishes early should find work left in the queue. */
    if (b->inflight == SHOAL_DISPATCH_DEFAULT_INFLIGHT)
        b->inflight = 2;
    t1 = collatz_run(b, 1);
    t2 = collatz_run(b, 2);
    printf("peer=shoal_collatz_speedup n=%ld ranges=%ld longest=%llu "
           "steps=%llu t1_s=%.3f t2_s=%.3f speedup=%.3f\n",
           b->n, b->ranges, (unsigned long long)b->best_n,
           (unsigned long long)b->best_steps, t1, t2, t1 / t2);
    fflush(stdout);
}

/* ---- flood
 * -------------------------------------------------------------------- */

static long bench_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void flood_fill(bench_t *b);

static void flood_outcome_cb(const shoal_outcome_t *o, void *data)
{
    bench_t *b = data;

    if (o->status != SHOAL_OUTCOME_OK)
        b->bad++;
    b->done++;
    if (b->done % (b->n / 10) == 0)
        b->rss_kb[b->done / (b->n / 10)] = bench_rss_kb(b->dispatcher_pid);
    if (b->done == b->n) {
        b->t1_ns = uv_hrtime();
        shoal_node_close(&b->node, NULL);
        return;
    }
    flood_fill(b);
}

static void flood_fill(bench_t *b)
{
    static const char arg[] = "\x2a"; /* 42 */
    shoal_payload_t args = {arg, 1, SHOAL_CODEC_MSGPACK};
    shoal_task_t task;

    memset(&task, 0, sizeof(task));
    task.app = "echo";
    task.action = "echo";
    task.args = &args;
    while (b->sent < b->n && b->sent - b->done < b->window) {
        if (shoal_submit(b->conn, &task, flood_outcome_cb, b) != 0)
            bench_fail("submit failed");
        b->sent++;
    }
}

static void flood_connected_cb(shoal_conn_t *conn, int status, void *data)
{
    bench_t *b = data;

    if (status)
        bench_fail("connect: %s", shoal_strerror(status));
    b->conn = conn;
    b->t0_ns = uv_hrtime();
    flood_fill(b);
}

static void bench_flood(bench_t *b)
{
    char ready[BENCH_READY_MAX_BYTES], listen[160];
    const char *args[] = {"--name",     "disp",    "--listen", listen,
                          "--dispatch", "--quiet", NULL};
    shoal_node_opts_t nopts;
    char *p, *q;
    long max = 0;
    double s;

    snprintf(b->dir, sizeof(b->dir), "/tmp/shoal-bench-XXXXXX");
    if (mkdtemp(b->dir) == NULL)
        bench_fail("mkdtemp: %s", strerror(errno));
    snprintf(listen, sizeof(listen), "unix://%s/d.sock", b->dir);
    b->dispatcher_pid = bench_spawn_node(b, args, false, ready, sizeof(ready));
    p = strstr(ready, "unix://");
    q = p ? strchr(p, '"') : NULL;
    if (q == NULL)
        bench_fail("no address in %s", ready);
    snprintf(b->url, sizeof(b->url), "%.*s", (int)(q - p), p);
    for (int i = 0; i < 2; i++)
        bench_start_worker(b, i, "echo");
    if (b->n < 10)
        b->n = 10;
    uv_loop_init(&b->loop);
    memset(&nopts, 0, sizeof(nopts));
    shoal_node_init(&b->loop, &b->node, &nopts);
    b->rss_kb[0] = bench_rss_kb(b->dispatcher_pid);
    /* The workers join on their own: the first submits may wait for them
     * in the dispatcher's queue, which is what it is for. */
    if (shoal_node_connect(&b->node, b->url, NULL, flood_connected_cb, b,
                           NULL) != 0)
        bench_fail("connect");
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    s = (double)(b->t1_ns - b->t0_ns) / 1e9;
    for (int i = 1; i <= 10; i++)
        if (b->rss_kb[i] > max)
            max = b->rss_kb[i];
    printf("peer=shoal_flood tasks=%ld window=%ld tasks_per_s=%.0f "
           "rss_start_kb=%ld rss_10pct_kb=%ld rss_50pct_kb=%ld "
           "rss_end_kb=%ld rss_max_kb=%ld failed=%ld\n",
           b->n, b->window, (double)b->n / s, b->rss_kb[0], b->rss_kb[1],
           b->rss_kb[5], b->rss_kb[10], max, b->bad);
    fflush(stdout);
    bench_stop_children(b);
    snprintf(listen, sizeof(listen), "%s/d.sock", b->dir);
    unlink(listen);
    rmdir(b->dir);
}

/* ---- main
 * --------------------------------------------------------------------- */

static const struct option bench_long_opts[] = {
    {"shoal", required_argument, NULL, 's'},
    {"plugins", required_argument, NULL, 'p'},
    {"workers", required_argument, NULL, 'w'},
    {"inflight", required_argument, NULL, 'i'},
    {"ranges", required_argument, NULL, 'r'},
    {"window", required_argument, NULL, 'W'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    bench_t *b = calloc(1, sizeof(*b));
    int c;

    if (b == NULL)
        return 1;
    bench_current = b;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, bench_alarm);
    alarm(BENCH_TIME_LIMIT_S);
    b->shoal_bin = SHOAL_BENCH_SHOAL_BIN;
    b->plugin_dir = SHOAL_BENCH_PLUGIN_DIR;
    b->workers = 2;
    b->inflight = SHOAL_DISPATCH_DEFAULT_INFLIGHT;
    b->ranges = 400;
    b->window = 20000;
    if (argc < 2)
        goto usage;
    if (strcmp(argv[1], "farm") == 0) {
        b->mode = MODE_FARM;
        b->n = 200000;
    } else if (strcmp(argv[1], "collatz") == 0) {
        b->mode = MODE_COLLATZ;
        b->n = 10000000;
    } else if (strcmp(argv[1], "flood") == 0) {
        b->mode = MODE_FLOOD;
        b->n = 10000000;
    } else {
        goto usage;
    }
    optind = 2;
    if (argc > 2 && argv[2][0] != '-') {
        b->n = atol(argv[2]);
        optind = 3;
    }
    while ((c = getopt_long(argc, argv, "", bench_long_opts, NULL)) != -1) {
        switch (c) {
        case 's':
            b->shoal_bin = optarg;
            break;
        case 'p':
            b->plugin_dir = optarg;
            break;
        case 'w':
            b->workers = atoi(optarg);
            break;
        case 'i':
            b->inflight = (size_t)atol(optarg);
            break;
        case 'r':
            b->ranges = atol(optarg);
            break;
        case 'W':
            b->window = atol(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (b->n < 1 || b->workers < 1 || b->workers > BENCH_MAX_WORKERS ||
        b->inflight < 1 || b->ranges < 1 || b->window < 1)
        goto usage;
    if (b->mode == MODE_FARM)
        bench_farm(b);
    else if (b->mode == MODE_COLLATZ)
        bench_collatz(b);
    else
        bench_flood(b);
    free(b);
    return 0;
usage:
    fprintf(stderr, "usage: dispatch_bench farm|collatz|flood [N] "
                    "[--shoal PATH] [--plugins DIR] [--workers N] "
                    "[--inflight N] [--ranges N] [--window N]\n");
    return 2;
}
