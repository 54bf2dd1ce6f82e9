/* The dispatcher with real processes: a `shoal node --dispatch` and worker
 * nodes that join it, driven by a client on the shoal library and by
 * `shoal submit`. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "integration/harness.h"
#include "shoal.h"

#define BIG_JOB 100000
#define MAX_WORKERS 8

TestSuite(dispatch, .init = h_init, .fini = h_fini, .timeout = 120);

/* ---- processes ----------------------------------------------------------
 */

/* The dispatcher: a node that hosts nothing itself. */
static void start_dispatcher(h_node_t *d, const char *const *extra)
{
    const char *args[32] = {"--name",     "disp",
                            "--listen",   "tcp://127.0.0.1:0",
                            "--dispatch", "--quiet"};
    size_t n = 6;

    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    cr_assert_eq(h_node_spawn(d, args), 0, "the dispatcher did not start");
}

/* A worker that joins url and hosts echo and sleep and fail. */
static void start_worker(h_node_t *w, const char *name, const char *url)
{
    const char *args[] = {"--name", name,   "--join",  url,
                          "--app",  "echo", "--app",   "sleep",
                          "--app",  "fail", "--quiet", NULL};

    memset(w, 0, sizeof(*w));
    cr_assert_eq(h_node_spawn(w, args), 0, "worker %s did not start", name);
}

static void kill_worker(h_node_t *w)
{
    cr_assert_eq(kill(w->child.pid, SIGKILL), 0);
    h_node_reap(w);
}

/* A call to the dispatch application over NDJSON. */
static cJSON *dispatch_call(const char *url, const char *action,
                            const char *args)
{
    char msg[1024];
    h_conn_t c;
    cJSON *reply;

    snprintf(msg, sizeof(msg),
             "{\"type\":\"call\",\"id\":1,\"app\":\"dispatch\","
             "\"action\":\"%s\",\"args\":%s}",
             action, args ? args : "null");
    h_conn_open(&c, url, H_NDJSON);
    reply = h_call(&c, msg);
    h_conn_close(&c);
    return reply;
}

/* Bounded polling: the dispatcher has n members. */
static void wait_members(const char *url, int n)
{
    for (int tries = 0; tries < 1500; tries++) {
        cJSON *reply = dispatch_call(url, "members", NULL);
        int have = cJSON_GetArraySize(h_at(reply, "result"));
        cJSON_Delete(reply);
        if (have == n)
            return;
        poll(NULL, 0, 10);
    }
    cr_assert_fail("the dispatcher never had %d members", n);
}

/* ---- a client on the library ----------------------------------------------
 */

typedef struct job job_t;
typedef void (*job_step_fn)(job_t *job);

struct job {
    uv_loop_t loop;
    shoal_node_t node;
    shoal_conn_t *conn;
    long n; /* tasks */
    long sent;
    long done;
    long window;
    long batch;
    shoal_strategy_t strategy;
    const char *app, *action;
    const char *args_json; /* NULL: the task's number */
    uint64_t timeout_ms;
    /* what came back */
    unsigned char *seen;
    long dups, ok, not_ok, retried;
    int64_t result_sum;
    char (*node_of)[64]; /* per task */
    int last_code;
    const char *last_code_name;
    /* called after each outcome: tests kill workers from here */
    job_step_fn on_outcome;
    void *user;
    bool failed_submit;
};

static void job_fill(job_t *job);

static void job_outcome_cb(const shoal_outcome_t *o, void *data)
{
    job_t *job = data;
    int64_t id = -1, result = 0;

    cr_assert_eq(shoal_payload_int(&o->id, &id), 0, "an outcome without id");
    cr_assert(id >= 0 && id < job->n, "id %lld out of range", (long long)id);
    if (job->seen[id]++)
        job->dups++;
    if (o->status == SHOAL_OUTCOME_OK) {
        job->ok++;
        if (job->args_json == NULL) {
            cr_assert_eq(shoal_payload_int(&o->result, &result), 0);
            job->result_sum += result;
        }
    } else {
        job->not_ok++;
        job->last_code = o->code;
    }
    if (o->attempts > 1)
        job->retried++;
    if (job->node_of)
        snprintf(job->node_of[id], 64, "%s", o->node);
    job->done++;
    if (job->on_outcome)
        job->on_outcome(job);
    if (job->done == job->n)
        shoal_node_close(&job->node, NULL);
    else if (o->index == 0)
        job_fill(job);
}

static void job_fill(job_t *job)
{
    shoal_task_t tasks[256];
    shoal_payload_t ids[256], args[256];
    char text[256][24];

    while (job->sent < job->n && job->sent - job->done < job->window) {
        long k = 0;
        while (k < job->batch && k < 256 && job->sent < job->n) {
            long i = job->sent++;
            int len = snprintf(text[k], sizeof(text[k]), "%ld", i);
            ids[k].data = text[k];
            ids[k].len = (size_t)len;
            ids[k].codec = SHOAL_CODEC_JSON;
            if (job->args_json) {
                args[k].data = job->args_json;
                args[k].len = strlen(job->args_json);
            } else {
                args[k] = ids[k];
            }
            args[k].codec = SHOAL_CODEC_JSON;
            memset(&tasks[k], 0, sizeof(tasks[k]));
            tasks[k].app = job->app;
            tasks[k].action = job->action;
            tasks[k].args = &args[k];
            tasks[k].id = &ids[k];
            tasks[k].strategy = job->strategy;
            tasks[k].key = text[k];
            tasks[k].key_len = (size_t)len;
            tasks[k].timeout_ms = job->timeout_ms;
            k++;
        }
        /* Batches call back in task order: refill after the first. */
        if (shoal_submit_batch(job->conn, tasks, (size_t)k, job_outcome_cb,
                               job) != 0) {
            job->failed_submit = true;
            return;
        }
    }
}

static void job_connected_cb(shoal_conn_t *conn, int status, void *data)
{
    job_t *job = data;

    cr_assert_eq(status, 0, "cannot connect: %s", shoal_strerror(status));
    job->conn = conn;
    job_fill(job);
}

static void job_init(job_t *job, long n)
{
    memset(job, 0, sizeof(*job));
    job->n = n;
    job->window = 2000;
    job->batch = 100;
    job->app = "echo";
    job->action = "echo";
    job->seen = calloc((size_t)n, 1);
    cr_assert_not_null(job->seen);
}

/* Runs the job to its end against the dispatcher at url. */
static void job_run(job_t *job, const char *url)
{
    shoal_node_opts_t opts;

    uv_loop_init(&job->loop);
    memset(&opts, 0, sizeof(opts));
    opts.framing = SHOAL_FRAMING_MSGPACK;
    cr_assert_eq(shoal_node_init(&job->loop, &job->node, &opts), 0);
    cr_assert_eq(
        shoal_node_connect(&job->node, url, NULL, job_connected_cb, job, NULL),
        0);
    uv_run(&job->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&job->loop), 0, "a handle leaked");
    cr_assert(!job->failed_submit);
    cr_assert_eq(job->done, job->n, "%ld outcomes for %ld tasks", job->done,
                 job->n);
}

static void job_free(job_t *job)
{
    free(job->seen);
    free(job->node_of);
}

/* ---- every task once, while workers die ----------------------------------
 */

typedef struct {
    h_node_t workers[MAX_WORKERS];
    int n_workers;
    int kills;
    const char *url;
} kill_plan_t;

/* At 20 % and 50 % of the job, SIGKILL a worker (tasks in flight on it are
 * lost with it) and start a new one in its place. */
static void kill_step(job_t *job)
{
    kill_plan_t *plan = job->user;
    char name[16];

    if (!((plan->kills == 0 && job->done == job->n / 5) ||
          (plan->kills == 1 && job->done == job->n / 2)))
        return;
    kill_worker(&plan->workers[plan->kills]);
    snprintf(name, sizeof(name), "w%d", plan->n_workers);
    start_worker(&plan->workers[plan->n_workers++], name, plan->url);
    plan->kills++;
}

Test(dispatch, every_task_ends_once_when_workers_are_killed_mid_job)
{
    kill_plan_t plan;
    h_node_t d;
    job_t job;
    cJSON *stats;
    int64_t want = (int64_t)BIG_JOB * (BIG_JOB - 1) / 2;

    memset(&plan, 0, sizeof(plan));
    memset(&d, 0, sizeof(d));
    start_dispatcher(&d, NULL);
    plan.url = d.tcp_url;
    for (plan.n_workers = 0; plan.n_workers < 3; plan.n_workers++) {
        char name[16];
        snprintf(name, sizeof(name), "w%d", plan.n_workers);
        start_worker(&plan.workers[plan.n_workers], name, d.tcp_url);
    }
    wait_members(d.tcp_url, 3);
    job_init(&job, BIG_JOB);
    job.on_outcome = kill_step;
    job.user = &plan;
    job_run(&job, d.tcp_url);

    cr_assert_eq(plan.kills, 2);
    cr_assert_eq(job.dups, 0, "%ld tasks had two outcomes", job.dups);
    cr_assert_eq(job.ok, BIG_JOB, "%ld tasks failed (last %s)", job.not_ok,
                 shoal_err_name(job.last_code));
    for (long i = 0; i < BIG_JOB; i++)
        cr_assert_eq(job.seen[i], 1, "task %ld: %d outcomes", i, job.seen[i]);
    cr_assert_eq(job.result_sum, want, "checksum %lld, want %lld",
                 (long long)job.result_sum, (long long)want);
    /* The killed workers had tasks in flight: they were placed again. */
    stats = dispatch_call(d.tcp_url, "stats", NULL);
    cr_assert_gt(h_num(stats, "result.retried"), 0);
    cr_assert_eq(h_num(stats, "result.in_flight"), 0);
    cr_assert_eq(h_num(stats, "result.queued"), 0);
    cJSON_Delete(stats);
    job_free(&job);
    for (int i = plan.kills; i < plan.n_workers; i++)
        h_node_stop(&plan.workers[i]);
    h_node_stop(&d);
}

/* ---- keys ----------------------------------------------------------------
 */

Test(dispatch, a_key_keeps_its_node_and_a_join_moves_about_one_in_n)
{
    h_node_t d, w[5];
    job_t first, again, after;
    long moved = 0;
    const long n = 3000;

    memset(&d, 0, sizeof(d));
    start_dispatcher(&d, NULL);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "k%d", i);
        start_worker(&w[i], name, d.tcp_url);
    }
    wait_members(d.tcp_url, 4);
    job_init(&first, n);
    job_init(&again, n);
    job_init(&after, n);
    first.strategy = again.strategy = after.strategy = SHOAL_STRATEGY_KEY;
    first.node_of = calloc((size_t)n, 64);
    again.node_of = calloc((size_t)n, 64);
    after.node_of = calloc((size_t)n, 64);
    job_run(&first, d.tcp_url);
    job_run(&again, d.tcp_url);
    for (long i = 0; i < n; i++)
        cr_assert_str_eq(first.node_of[i], again.node_of[i],
                         "key %ld moved while no node came or went", i);
    start_worker(&w[4], "k4", d.tcp_url);
    wait_members(d.tcp_url, 5);
    job_run(&after, d.tcp_url);
    for (long i = 0; i < n; i++) {
        if (strcmp(first.node_of[i], after.node_of[i]) == 0)
            continue;
        moved++;
        cr_assert_str_eq(after.node_of[i], "k4",
                         "key %ld moved between old nodes", i);
    }
    /* 1/5 of 3000 is 600 (sigma about 22). */
    cr_assert(moved > 480 && moved < 720, "%ld of %ld keys moved", moved, n);
    job_free(&first);
    job_free(&again);
    job_free(&after);
    for (int i = 0; i < 5; i++)
        h_node_stop(&w[i]);
    h_node_stop(&d);
}

/* ---- flow control ----------------------------------------------------------
 */

Test(dispatch, a_flooding_submitter_is_paused_and_the_queue_stays_bounded)
{
    const char *extra[] = {"--dispatch-queue", "50", "--dispatch-inflight",
                           "2", NULL};
    h_node_t d, w;
    job_t job;
    cJSON *stats;

    memset(&d, 0, sizeof(d));
    start_dispatcher(&d, extra);
    start_worker(&w, "slow", d.tcp_url);
    wait_members(d.tcp_url, 1);
    /* Everything at once, one task a message: only back-pressure holds
     * it. */
    job_init(&job, 20000);
    job.window = job.n;
    job.batch = 1;
    job_run(&job, d.tcp_url);
    cr_assert_eq(job.ok, job.n);
    cr_assert_eq(job.dups, 0);
    stats = dispatch_call(d.tcp_url, "stats", NULL);
    cr_assert_leq(h_num(stats, "result.queued_max"), 51,
                  "the queue grew to %.0f past its bound of 50",
                  h_num(stats, "result.queued_max"));
    cr_assert_gt(h_num(stats, "result.pauses"), 0);
    cr_assert_eq(h_num(stats, "result.paused"), 0);
    cJSON_Delete(stats);
    job_free(&job);
    h_node_stop(&w);
    h_node_stop(&d);
}

/* ---- outcomes ------------------------------------------------------------
 */

Test(dispatch, outcomes_say_ok_error_and_timeout_with_id_and_node)
{
    h_node_t d, w;
    cJSON *r;

    memset(&d, 0, sizeof(d));
    start_dispatcher(&d, NULL);
    start_worker(&w, "solo", d.tcp_url);
    wait_members(d.tcp_url, 1);

    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"echo\",\"action\":\"echo\",\"args\":[1],"
                      "\"id\":\"a\"}");
    cr_assert(h_json_eq(r, "result",
                        "{\"id\":\"a\",\"status\":\"ok\",\"node\":\"solo\","
                        "\"attempts\":1,\"result\":[1]}"));
    cJSON_Delete(r);

    /* An application's error is the task's outcome, not retried. */
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"fail\",\"action\":\"x\",\"args\":{\"code\":"
                      "\"EBADARGS\",\"message\":\"no\"},\"id\":2}");
    cr_assert_str_eq(h_str(r, "result.status"), "error");
    cr_assert_str_eq(h_str(r, "result.error.code"), "EBADARGS");
    cr_assert_eq(h_num(r, "result.attempts"), 1);
    cr_assert_str_eq(h_str(r, "result.node"), "solo");
    cJSON_Delete(r);

    /* ... unless the task asks for it. */
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"fail\",\"action\":\"x\",\"args\":{},"
                      "\"retries\":2,\"retry_on_error\":true}");
    cr_assert_str_eq(h_str(r, "result.status"), "error");
    cr_assert_eq(h_num(r, "result.attempts"), 3);
    cJSON_Delete(r);

    /* A task past its time limit times out; with retries, it is tried
     * again first. */
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"sleep\",\"action\":\"sleep\",\"args\":3000,"
                      "\"timeout_ms\":100,\"id\":3}");
    cr_assert_str_eq(h_str(r, "result.status"), "timeout");
    cr_assert_str_eq(h_str(r, "result.error.code"), "ETIMEDOUT");
    cr_assert_eq(h_num(r, "result.attempts"), 1);
    cJSON_Delete(r);
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"sleep\",\"action\":\"sleep\",\"args\":3000,"
                      "\"timeout_ms\":50,\"retries\":1,"
                      "\"retry_on_timeout\":true}");
    cr_assert_str_eq(h_str(r, "result.status"), "timeout");
    cr_assert_eq(h_num(r, "result.attempts"), 2);
    cJSON_Delete(r);

    /* A malformed task is refused: an error reply, no outcome. */
    r = dispatch_call(d.tcp_url, "submit", "{\"app\":\"echo\"}");
    cr_assert_str_eq(h_str(r, "error.code"), "EBADMSG");
    cJSON_Delete(r);
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"echo\",\"action\":\"echo\","
                      "\"node\":\"nobody\"}");
    cr_assert_str_eq(h_str(r, "error.code"), "ENOTFOUND");
    cJSON_Delete(r);
    /* Killed, not stopped: the timed-out sleeps still run on it, and a
     * node that closes with calls being served is not what this tests. */
    kill_worker(&w);
    h_node_stop(&d);
}

Test(dispatch, broadcast_collects_every_node_and_direct_picks_one)
{
    h_node_t d, w[3];
    cJSON *r;

    memset(&d, 0, sizeof(d));
    start_dispatcher(&d, NULL);
    start_worker(&w[0], "b", d.tcp_url);
    start_worker(&w[1], "c", d.tcp_url);
    start_worker(&w[2], "a", d.tcp_url);
    wait_members(d.tcp_url, 3);
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"echo\",\"action\":\"echo\",\"args\":7,"
                      "\"strategy\":\"broadcast\"}");
    cr_assert_str_eq(h_str(r, "result.status"), "ok");
    cr_assert_eq(cJSON_GetArraySize(h_at(r, "result.result")), 3);
    /* In the stable order: by name. */
    cr_assert(h_json_eq(r, "result.result",
                        "[{\"node\":\"a\",\"status\":\"ok\",\"result\":7},"
                        "{\"node\":\"b\",\"status\":\"ok\",\"result\":7},"
                        "{\"node\":\"c\",\"status\":\"ok\",\"result\":7}]"));
    cJSON_Delete(r);
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"echo\",\"action\":\"echo\",\"index\":2}");
    cr_assert_str_eq(h_str(r, "result.node"), "c");
    cJSON_Delete(r);
    r = dispatch_call(d.tcp_url, "submit",
                      "{\"app\":\"echo\",\"action\":\"echo\",\"node\":\"b\"}");
    cr_assert_str_eq(h_str(r, "result.node"), "b");
    cJSON_Delete(r);
    r = dispatch_call(d.tcp_url, "members", NULL);
    cr_assert_str_eq(h_str(r, "result.0.name"), "a");
    cr_assert_str_eq(h_str(r, "result.2.name"), "c");
    cJSON_Delete(r);
    for (int i = 0; i < 3; i++)
        h_node_stop(&w[i]);
    h_node_stop(&d);
}

/* ---- shoal submit: interrupted, then resumed ------------------------------
 */

/* Starts `shoal submit ARGS` with stdout to out_path. */
static pid_t spawn_submit(const char *const *args, const char *out_path)
{
    const char *argv[32] = {SHOAL_BIN, "submit"};
    size_t n = 2;
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t parent = getpid(), pid;

    cr_assert_geq(fd, 0);
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(fd, 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd);
    return pid;
}

/* Bounded: the child's exit status within H_WAIT_MS. */
static int wait_exit(pid_t pid)
{
    int status;

    for (int tries = 0; tries < H_WAIT_MS / 10; tries++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        poll(NULL, 0, 10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    cr_assert_fail("shoal submit did not exit");
    return -1;
}

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = 0;
    int c;

    if (f == NULL)
        return 0;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* Adds the ids of an output file to seen. */
static void collect_ids(const char *path, unsigned char *seen, long n)
{
    FILE *f = fopen(path, "r");
    char line[512];

    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f)) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *id = cJSON_GetObjectItem(o, "id");
        cr_assert(cJSON_IsNumber(id), "no id in %s", line);
        cr_assert(id->valueint >= 1 && id->valueint <= n);
        cr_assert_str_eq(h_str(o, "status"), "ok", "%s", line);
        seen[id->valueint]++;
        cJSON_Delete(o);
    }
    fclose(f);
}

Test(dispatch, submit_resumes_after_an_interrupt_with_each_task_once)
{
    char dir[64], in[128], log[128], out1[128], out2[128];
    const long n = 600;
    unsigned char seen[601];
    h_node_t d, w[2];
    FILE *f;
    pid_t pid;
    int status;

    memset(&d, 0, sizeof(d));
    start_dispatcher(&d, NULL);
    start_worker(&w[0], "r0", d.tcp_url);
    start_worker(&w[1], "r1", d.tcp_url);
    wait_members(d.tcp_url, 2);
    h_tmpdir(dir);
    snprintf(in, sizeof(in), "%s/tasks", dir);
    snprintf(log, sizeof(log), "%s/joblog", dir);
    snprintf(out1, sizeof(out1), "%s/out1", dir);
    snprintf(out2, sizeof(out2), "%s/out2", dir);
    f = fopen(in, "w");
    for (long i = 0; i < n; i++)
        fputs("4\n", f); /* sleep 4 ms */
    fclose(f);
    {
        const char *args[] = {
            d.tcp_url,  "--app", "sleep",    "--action", "sleep",   "--in", in,
            "--window", "4",     "--joblog", log,        "--quiet", NULL};
        pid = spawn_submit(args, out1);
    }
    /* Interrupt once a good part is done, well before the end. */
    for (int tries = 0; tries < 1500 && count_lines(log) < 60; tries++)
        poll(NULL, 0, 10);
    cr_assert_geq(count_lines(log), 60);
    kill(pid, SIGINT);
    status = wait_exit(pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 130,
              "status 0x%x after SIGINT", status);
    cr_assert_lt(count_lines(log), n, "the job ended before the interrupt");
    cr_assert_eq(count_lines(log), count_lines(out1));
    {
        const char *args[] = {d.tcp_url, "--app",    "sleep", "--action",
                              "sleep",   "--in",     in,      "--window",
                              "16",      "--joblog", log,     "--resume",
                              "--quiet", NULL};
        pid = spawn_submit(args, out2);
    }
    status = wait_exit(pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "status 0x%x after resuming", status);
    memset(seen, 0, sizeof(seen));
    collect_ids(out1, seen, n);
    collect_ids(out2, seen, n);
    for (long i = 1; i <= n; i++)
        cr_assert_eq(seen[i], 1, "task %ld: %d outcomes", i, seen[i]);
    cr_assert_eq(count_lines(log), n);
    h_tmpdir_remove(dir);
    h_node_stop(&w[0]);
    h_node_stop(&w[1]);
    h_node_stop(&d);
}

/* ---- the library's dispatcher: drain and close -----------------------------
 */

typedef struct {
    shoal_node_t node;
    shoal_dispatch_t d;
    int outcomes;
    int ok;
    int outcomes_at_drain;
    bool drained;
    bool closed;
    int late_submit;
    int want_members;
} host_t;

static void host_outcome_cb(const shoal_outcome_t *o, void *data)
{
    host_t *h = data;

    h->outcomes++;
    h->ok += o->status == SHOAL_OUTCOME_OK;
}

static void host_closed_cb(shoal_dispatch_t *d)
{
    host_t *h = d->data;

    h->closed = true;
}

static void host_drained_cb(shoal_dispatch_t *d, void *data)
{
    host_t *h = data;
    shoal_task_t task;

    h->drained = true;
    h->outcomes_at_drain = h->outcomes;
    memset(&task, 0, sizeof(task));
    task.app = "echo";
    task.action = "echo";
    h->late_submit = shoal_dispatch_submit(d, &task, host_outcome_cb, h);
    shoal_dispatch_close(d, host_closed_cb);
    shoal_node_close(&h->node, NULL);
}

static void host_on_hello(shoal_node_t *node, shoal_conn_t *conn,
                          const shoal_payload_t *desc, void *data)
{
    host_t *h = data;
    shoal_dispatch_stats_t st;
    shoal_task_t task;
    char json[16];
    shoal_payload_t args = {json, 0, SHOAL_CODEC_JSON};

    (void)node;
    (void)conn;
    (void)desc;
    shoal_dispatch_stats(&h->d, &st);
    if ((int)st.members < h->want_members || h->drained)
        return;
    memset(&task, 0, sizeof(task));
    task.app = "echo";
    task.action = "echo";
    task.args = &args;
    for (int i = 0; i < 500; i++) {
        args.len = (size_t)snprintf(json, sizeof(json), "%d", i);
        cr_assert_eq(shoal_dispatch_submit(&h->d, &task, host_outcome_cb, h),
                     0);
    }
    shoal_dispatch_stats(&h->d, &st);
    /* With 2 calls in flight per node, most of them wait. */
    cr_assert_gt(st.queued, 400);
    cr_assert_eq(shoal_dispatch_drain(&h->d, host_drained_cb, h), 0);
    cr_assert_eq(shoal_dispatch_drain(&h->d, host_drained_cb, h),
                 SHOAL_ECLOSING);
}

Test(dispatch, a_drain_finishes_every_queued_task_before_it_calls_back)
{
    shoal_dispatch_opts_t opts;
    shoal_node_hooks_t hooks;
    uv_loop_t loop;
    h_node_t w;
    host_t h;

    memset(&h, 0, sizeof(h));
    h.want_members = 1;
    uv_loop_init(&loop);
    cr_assert_eq(shoal_node_init(&loop, &h.node, NULL), 0);
    cr_assert_eq(shoal_node_listen(&h.node, "tcp://127.0.0.1:0"), 0);
    memset(&opts, 0, sizeof(opts));
    opts.inflight_per_node = 2;
    cr_assert_eq(shoal_dispatch_init(&h.d, &h.node, &opts), 0);
    h.d.data = &h;
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_hello = host_on_hello;
    hooks.data = &h;
    cr_assert_eq(shoal_node_add_hooks(&h.node, &hooks), 0);
    start_worker(&w, "dw", shoal_node_address(&h.node, 0));
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert(h.drained);
    cr_assert(h.closed);
    cr_assert_eq(h.outcomes_at_drain, 500);
    cr_assert_eq(h.ok, 500);
    cr_assert_eq(h.late_submit, SHOAL_ESTOPPING);
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle leaked");
    /* The worker lost its dispatcher and redials: stop it. */
    h_node_stop(&w);
}
