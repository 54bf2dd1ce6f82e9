/* Benchmarks of the product: a real `shoal node` process hosting the echo
 * application, and a client built on the shoal library, on one machine.
 *
 *   shoal_bench tell ndjson|msgpack tcp|unix [COUNT] [OPTIONS]
 *   shoal_bench call ndjson|msgpack tcp|unix [COUNT] [OPTIONS]
 *
 * tell: COUNT (default 1,000,000) pipelined tells of MSG_BYTES framed bytes
 * (default 70) to the echo app. The sender queues a batch of tells per loop
 * turn while its write queue is empty, and lets the loop sleep until the
 * write completes when the kernel took less than a batch. A final call
 * echo.count returns the tells the node counted, which must be COUNT. The
 * time runs from the first tell queued to the count reply: the receiver's
 * first-to-last window plus the encoding of the first batch and one round
 * trip (about a millisecond against a third of a second or more), so the
 * rate is slightly conservative.
 *
 * call: 1,000 untimed warm-up calls of echo.echo, then COUNT (default
 * 100,000) timed ones, one at a time, each issued from the previous one's
 * reply callback; p50 and p99 are nearest-rank percentiles. Every reply is
 * checked against the arguments sent.
 *
 * Options:
 *   --shoal PATH        the shoal command (default: the one built with this,
 *                       or $SHOAL_BIN)
 *   --batch N           tells queued per loop turn (default 4096)
 *   --msg-bytes N       framed size of a tell (default 70)
 *   --queue-bytes N     tell: queue the next batch while at most N bytes
 *                       wait to be written (default 0: once all are)
 *
 * Prints one line in the form of the performance peers, plus the CPU time
 * (user + system) each process spent per message or round trip, which a
 * busy machine disturbs much less than the rates:
 *   peer=shoal_tell_msgpack_tcp msg_bytes=70 msgs=1000000 msgs_per_s=...
 *     MB_per_s=... node_cpu_ns_per_msg=... client_cpu_ns_per_msg=...
 *   peer=shoal_call_ndjson_unix msg_bytes=73 round_trips=100000
 *     rtt_per_s=... p50_us=... p99_us=... node_cpu_us_per_rt=...
 *     client_cpu_us_per_rt=...
 * Placement (taskset) is the caller's: the node inherits the affinity.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <msgpack.h>

#include "shoal.h"

#ifndef SHOAL_BENCH_SHOAL_BIN
#define SHOAL_BENCH_SHOAL_BIN "shoal"
#endif

#define BENCH_TELL_COUNT 1000000L
#define BENCH_CALL_COUNT 100000L
#define BENCH_WARMUP 1000L
#define BENCH_BATCH 4096L
#define BENCH_MSG_BYTES 70L
/* The whole program, node included, ends within this. */
#define BENCH_TIME_LIMIT_S 120
/* The node's ready line: {"addresses":[...],"name":"..."}. */
#define BENCH_READY_MAX_BYTES 4096

typedef enum { BENCH_TELL, BENCH_CALL } bench_mode_t;

typedef struct {
    bench_mode_t mode;
    shoal_framing_t framing;
    const char *framing_tag; /* "ndjson", "msgpack" */
    const char *transport;   /* "tcp", "unix" */
    long count;
    long batch;
    long msg_bytes;
    size_t queue_bytes; /* tell: queue more while at most this waits */
    const char *shoal_bin;

    /* the node under test */
    pid_t node_pid;
    char sock_dir[256];
    char url[512];

    /* the client */
    uv_loop_t loop;
    shoal_node_t client;
    shoal_conn_t *conn;
    uv_idle_t idle;   /* tell: a batch per loop turn */
    uv_check_t check; /* tell: back to batches once the write completed */
    shoal_buf_t payload;
    shoal_payload_t msg;
    size_t frame_bytes;

    /* progress */
    long sent;
    long done; /* call: replies received, warm-up included */
    uint64_t t0_ns;
    uint64_t t1_ns;
    uint64_t call_ns;
    uint64_t *rtt_ns;
    bool finished;

    /* CPU time (user + system) each side spent, start to stop */
    double node_cpu_s;
    double client_cpu_s;
} bench_t;

static pid_t bench_node_pid = -1;

static void bench_die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "shoal_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (bench_node_pid > 0)
        kill(bench_node_pid, SIGKILL);
    exit(1);
}

static void bench_check(int err, const char *what)
{
    if (err < 0)
        bench_die("%s: %s", what, shoal_strerror(err));
}

/* ---- the node under test ------------------------------------------------
 */

/* Starts `shoal node --app echo` listening on the transport, and waits for
 * its ready line on a pipe: no polling, no sleeping. */
static void bench_start_node(bench_t *b)
{
    char listen[512], ready[BENCH_READY_MAX_BYTES];
    size_t have = 0;
    int fds[2];

    if (strcmp(b->transport, "tcp") == 0) {
        snprintf(listen, sizeof(listen), "tcp://127.0.0.1:0");
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(b->sock_dir, sizeof(b->sock_dir), "%s/shoal-bench-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(b->sock_dir) == NULL)
            bench_die("mkdtemp: %s", strerror(errno));
        snprintf(listen, sizeof(listen), "unix://%s/s", b->sock_dir);
    }
    if (pipe(fds) != 0)
        bench_die("pipe: %s", strerror(errno));
    b->node_pid = fork();
    if (b->node_pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (b->node_pid == 0) {
        /* The node goes with this process, however it ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(fds[0]);
        if (fds[1] != 3) {
            dup2(fds[1], 3);
            close(fds[1]);
        }
        execl(b->shoal_bin, "shoal", "node", "--quiet", "--name", "bench",
              "--app", "echo", "--listen", listen, "--ready-fd", "3",
              (char *)NULL);
        fprintf(stderr, "shoal_bench: exec %s: %s\n", b->shoal_bin,
                strerror(errno));
        _exit(127);
    }
    bench_node_pid = b->node_pid;
    close(fds[1]);
    for (;;) {
        ssize_t n = read(fds[0], ready + have, sizeof(ready) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        if (memchr(ready, '\n', have) || have == sizeof(ready) - 1)
            break;
    }
    close(fds[0]);
    ready[have] = '\0';

    cJSON *json = cJSON_Parse(ready);
    const char *url = cJSON_GetStringValue(
        cJSON_GetArrayItem(cJSON_GetObjectItem(json, "addresses"), 0));
    if (url == NULL)
        bench_die("the node did not report an address (got '%s')", ready);
    snprintf(b->url, sizeof(b->url), "%s", url);
    cJSON_Delete(json);
}

static double bench_cpu_s(const struct rusage *ru)
{
    return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) +
           (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6;
}

/* SIGTERM is the node's orderly stop: it must exit 0. */
static void bench_stop_node(bench_t *b)
{
    struct rusage ru;
    int status;

    kill(b->node_pid, SIGTERM);
    while (wait4(b->node_pid, &status, 0, &ru) < 0)
        if (errno != EINTR)
            bench_die("wait4: %s", strerror(errno));
    b->node_cpu_s = bench_cpu_s(&ru);
    bench_node_pid = -1;
    if (b->sock_dir[0]) {
        char path[300];
        snprintf(path, sizeof(path), "%s/s", b->sock_dir);
        unlink(path);
        rmdir(b->sock_dir);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bench_die("the node ended badly (status 0x%x)", status);
}

/* ---- messages -----------------------------------------------------------
 */

/* The payload [1,2,3,"x..."] in the codec of the framing, with pad bytes of
 * padding. */
static void bench_make_payload(bench_t *b, size_t pad)
{
    shoal_buf_t *buf = &b->payload;

    buf->len = 0;
    if (b->framing == SHOAL_FRAMING_MSGPACK) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        char *s = malloc(pad + 1);

        if (s == NULL)
            bench_die("out of memory");
        memset(s, 'x', pad);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 4);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_int(&pk, 2);
        msgpack_pack_int(&pk, 3);
        msgpack_pack_str(&pk, pad);
        msgpack_pack_str_body(&pk, s, pad);
        bench_check(shoal_buf_append(buf, sb.data, sb.size), "payload");
        msgpack_sbuffer_destroy(&sb);
        free(s);
    } else {
        bench_check(shoal_buf_append(buf, "[1,2,3,\"", 8), "payload");
        for (size_t i = 0; i < pad; i++)
            bench_check(shoal_buf_append(buf, "x", 1), "payload");
        bench_check(shoal_buf_append(buf, "\"]", 2), "payload");
    }
    b->msg.data = buf->base;
    b->msg.len = buf->len;
    b->msg.codec = shoal_framing_codec(b->framing);
}

/* The bytes one message occupies on the wire, framing included. */
static size_t bench_frame_bytes(const bench_t *b, shoal_msg_type_t type,
                                int64_t id)
{
    shoal_envelope_t env;
    shoal_buf_t out;
    size_t len;

    shoal_envelope_init(&env);
    env.type = type;
    env.app.present = true;
    env.app.len = 4;
    memcpy(env.app.s, "echo", 5);
    if (type == SHOAL_MSG_CALL) {
        env.has_id = true;
        env.id = id;
        env.action.present = true;
        env.action.len = 4;
        memcpy(env.action.s, "echo", 5);
        env.args = b->msg;
    } else {
        env.msg = b->msg;
    }
    shoal_buf_init(&out);
    bench_check(shoal_wire_encode(b->framing, &env, &out), "encode");
    len = out.len;
    shoal_buf_free(&out);
    return len;
}

/* A tell takes msg_bytes on the wire; a call carries [1,2,3,""]. */
static void bench_prepare_messages(bench_t *b)
{
    shoal_buf_init(&b->payload);
    if (b->mode == BENCH_CALL) {
        bench_make_payload(b, 0);
        b->frame_bytes = bench_frame_bytes(b, SHOAL_MSG_CALL, BENCH_WARMUP);
        return;
    }
    for (size_t pad = 0; pad < 4096; pad++) {
        bench_make_payload(b, pad);
        b->frame_bytes = bench_frame_bytes(b, SHOAL_MSG_TELL, 0);
        if (b->frame_bytes >= (size_t)b->msg_bytes)
            return;
    }
    bench_die("cannot make a tell of %ld bytes", b->msg_bytes);
}

/* ---- tell ---------------------------------------------------------------
 */

static void bench_count_cb(const shoal_reply_t *reply, void *data)
{
    bench_t *b = data;
    cJSON *json;
    double counted;

    b->t1_ns = uv_hrtime();
    if (reply->status != 0)
        bench_die("count: %s", reply->message);
    json = shoal_payload_to_cjson(&reply->result);
    if (!cJSON_IsNumber(json))
        bench_die("count: the reply is not a number");
    counted = cJSON_GetNumberValue(json);
    cJSON_Delete(json);
    if (counted != (double)b->count)
        bench_die("the node counted %.0f tells of %ld", counted, b->count);
    b->finished = true;
    shoal_conn_close(b->conn);
}

static void bench_check_cb(uv_check_t *check);

/* Runs once per loop turn, before the loop polls: output queued here is
 * written in one go by the library's flusher, right after. */
static void bench_idle_cb(uv_idle_t *idle)
{
    bench_t *b = idle->data;
    long n;

    if (shoal_conn_write_queue_bytes(b->conn) > b->queue_bytes) {
        /* Bytes still wait here only while a write is pending: the
         * flusher hands the kernel everything it will take. Let the loop
         * sleep until that write completes. */
        uv_idle_stop(&b->idle);
        uv_check_start(&b->check, bench_check_cb);
        return;
    }
    n = b->count - b->sent < b->batch ? b->count - b->sent : b->batch;
    for (long i = 0; i < n; i++)
        bench_check(shoal_conn_tell(b->conn, "echo", &b->msg), "tell");
    b->sent += n;
    if (b->sent == b->count) {
        uv_idle_stop(&b->idle);
        bench_check(shoal_conn_call(b->conn, "echo", "count", NULL, 0,
                                    bench_count_cb, b),
                    "call count");
    }
}

/* Runs after each poll while a write is pending. */
static void bench_check_cb(uv_check_t *check)
{
    bench_t *b = check->data;

    if (shoal_conn_write_queue_bytes(b->conn) > b->queue_bytes)
        return;
    uv_check_stop(&b->check);
    uv_idle_start(&b->idle, bench_idle_cb);
}

static void bench_tell_start(bench_t *b)
{
    uv_idle_init(&b->loop, &b->idle);
    uv_check_init(&b->loop, &b->check);
    b->idle.data = b->check.data = b;
    b->t0_ns = uv_hrtime();
    uv_idle_start(&b->idle, bench_idle_cb);
}

static void bench_tell_report(const bench_t *b)
{
    double secs = (double)(b->t1_ns - b->t0_ns) / 1e9;

    printf("peer=shoal_tell_%s_%s msg_bytes=%zu msgs=%ld msgs_per_s=%.0f "
           "MB_per_s=%.1f node_cpu_ns_per_msg=%.0f client_cpu_ns_per_msg=%.0f"
           "\n",
           b->framing_tag, b->transport, b->frame_bytes, b->count,
           (double)b->count / secs,
           (double)b->count * (double)b->frame_bytes / secs / 1e6,
           b->node_cpu_s * 1e9 / (double)b->count,
           b->client_cpu_s * 1e9 / (double)b->count);
}

/* ---- call ---------------------------------------------------------------
 */

static void bench_echo_cb(const shoal_reply_t *reply, void *data);

static void bench_call_next(bench_t *b)
{
    b->call_ns = uv_hrtime();
    bench_check(
        shoal_conn_call(b->conn, "echo", "echo", &b->msg, 0, bench_echo_cb, b),
        "call");
    b->sent++;
}

static void bench_echo_cb(const shoal_reply_t *reply, void *data)
{
    bench_t *b = data;
    uint64_t t = uv_hrtime();

    if (reply->status != 0)
        bench_die("call %lld: %s", (long long)reply->id, reply->message);
    if (reply->result.len != b->msg.len ||
        memcmp(reply->result.data, b->msg.data, b->msg.len) != 0)
        bench_die("call %lld: the reply differs from the arguments",
                  (long long)reply->id);
    if (b->done >= BENCH_WARMUP)
        b->rtt_ns[b->done - BENCH_WARMUP] = t - b->call_ns;
    b->done++;
    if (b->done == BENCH_WARMUP)
        b->t0_ns = uv_hrtime();
    if (b->done == BENCH_WARMUP + b->count) {
        b->t1_ns = uv_hrtime();
        b->finished = true;
        shoal_conn_close(b->conn);
        return;
    }
    bench_call_next(b);
}

static int bench_cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;

    return (a > c) - (a < c);
}

/* Nearest rank, as the peers compute it. */
static double bench_pct_us(const uint64_t *sorted_ns, size_t n, double p)
{
    size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);

    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted_ns[rank - 1] / 1000.0;
}

static void bench_call_report(const bench_t *b)
{
    double secs = (double)(b->t1_ns - b->t0_ns) / 1e9;
    size_t n = (size_t)b->count;

    qsort(b->rtt_ns, n, sizeof(*b->rtt_ns), bench_cmp_u64);
    printf("peer=shoal_call_%s_%s msg_bytes=%zu round_trips=%ld "
           "rtt_per_s=%.0f p50_us=%.1f p99_us=%.1f node_cpu_us_per_rt=%.2f "
           "client_cpu_us_per_rt=%.2f\n",
           b->framing_tag, b->transport, b->frame_bytes, b->count,
           (double)b->count / secs, bench_pct_us(b->rtt_ns, n, 50),
           bench_pct_us(b->rtt_ns, n, 99),
           b->node_cpu_s * 1e6 / (double)(b->count + BENCH_WARMUP),
           b->client_cpu_s * 1e6 / (double)(b->count + BENCH_WARMUP));
}

/* ---- the client ---------------------------------------------------------
 */

static void bench_connect_cb(shoal_conn_t *conn, int status, void *data)
{
    bench_t *b = data;

    if (status < 0)
        bench_die("connect %s: %s", b->url, shoal_strerror(status));
    b->conn = conn;
    if (b->mode == BENCH_TELL)
        bench_tell_start(b);
    else
        bench_call_next(b);
}

static void bench_conn_close_cb(shoal_conn_t *conn, int status, void *data)
{
    bench_t *b = data;

    (void)conn;
    if (!b->finished)
        bench_die("the connection ended early: %s", shoal_strerror(status));
    if (b->mode == BENCH_TELL) {
        uv_close((uv_handle_t *)&b->idle, NULL);
        uv_close((uv_handle_t *)&b->check, NULL);
    }
    shoal_node_close(&b->client, NULL);
}

static void bench_run_client(bench_t *b)
{
    shoal_node_opts_t nopts;
    shoal_conn_opts_t copts;
    struct rusage ru0, ru1;

    getrusage(RUSAGE_SELF, &ru0);
    bench_check(uv_loop_init(&b->loop), "uv_loop_init");
    memset(&nopts, 0, sizeof(nopts));
    nopts.name = "bench-client";
    nopts.framing = b->framing;
    bench_check(shoal_node_init(&b->loop, &b->client, &nopts), "node init");
    memset(&copts, 0, sizeof(copts));
    copts.framing = b->framing;
    copts.on_close = bench_conn_close_cb;
    copts.close_data = b;
    bench_check(shoal_node_connect(&b->client, b->url, &copts,
                                   bench_connect_cb, b, NULL),
                "connect");
    uv_run(&b->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&b->loop) != 0)
        bench_die("a handle was left open");
    getrusage(RUSAGE_SELF, &ru1);
    b->client_cpu_s = bench_cpu_s(&ru1) - bench_cpu_s(&ru0);
    if (!b->finished)
        bench_die("the loop ended before the benchmark did");
}

/* ---- main ---------------------------------------------------------------
 */

static void bench_usage(void)
{
    fprintf(stderr,
            "usage: shoal_bench tell|call ndjson|msgpack tcp|unix [COUNT]\n"
            "         [--shoal PATH] [--batch N] [--msg-bytes N] "
            "[--queue-bytes N]\n");
    exit(2);
}

static long bench_parse_long(const char *s, long min)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min)
        bench_usage();
    return v;
}

int main(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"shoal", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'},
        {"msg-bytes", required_argument, NULL, 'm'},
        {"queue-bytes", required_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    bench_t *b = calloc(1, sizeof(*b));
    int c;

    if (b == NULL)
        bench_die("out of memory");
    b->batch = BENCH_BATCH;
    b->msg_bytes = BENCH_MSG_BYTES;
    b->shoal_bin = getenv("SHOAL_BIN");
    if (b->shoal_bin == NULL || *b->shoal_bin == '\0')
        b->shoal_bin = SHOAL_BENCH_SHOAL_BIN;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case 's':
            b->shoal_bin = optarg;
            break;
        case 'b':
            b->batch = bench_parse_long(optarg, 1);
            break;
        case 'm':
            b->msg_bytes = bench_parse_long(optarg, 1);
            break;
        case 'q':
            b->queue_bytes = (size_t)bench_parse_long(optarg, 0);
            break;
        default:
            bench_usage();
        }
    }
    if (argc - optind != 3 && argc - optind != 4)
        bench_usage();
    if (strcmp(argv[optind], "tell") == 0)
        b->mode = BENCH_TELL;
    else if (strcmp(argv[optind], "call") == 0)
        b->mode = BENCH_CALL;
    else
        bench_usage();
    b->framing_tag = argv[optind + 1];
    if (strcmp(b->framing_tag, "ndjson") == 0)
        b->framing = SHOAL_FRAMING_NDJSON;
    else if (strcmp(b->framing_tag, "msgpack") == 0)
        b->framing = SHOAL_FRAMING_MSGPACK;
    else
        bench_usage();
    b->transport = argv[optind + 2];
    if (strcmp(b->transport, "tcp") != 0 && strcmp(b->transport, "unix") != 0)
        bench_usage();
    b->count = b->mode == BENCH_TELL ? BENCH_TELL_COUNT : BENCH_CALL_COUNT;
    if (argc - optind == 4)
        b->count = bench_parse_long(argv[optind + 3], 1);

    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    alarm(BENCH_TIME_LIMIT_S);
    if (b->mode == BENCH_CALL) {
        b->rtt_ns = malloc(sizeof(*b->rtt_ns) * (size_t)b->count);
        if (b->rtt_ns == NULL)
            bench_die("out of memory");
    }
    bench_prepare_messages(b);
    bench_start_node(b);
    bench_run_client(b);
    bench_stop_node(b);
    if (b->mode == BENCH_TELL)
        bench_tell_report(b);
    else
        bench_call_report(b);
    shoal_buf_free(&b->payload);
    free(b->rtt_ns);
    free(b);
    return 0;
}
