/* shoal supervise with real processes and signals: restarts under the same
 * name, policies, budgets and delays, orderly and abrupt ends of the
 * supervisor, remote controls, configuration files, logs and drains.
 * Every wait is bounded and waits on an fd or polls a condition. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "integration/harness.h"
#include "shoal.h"
#include "supervise_internal.h"

extern char **environ;

/* The longest any condition is waited for; far above what a sanitizer
 * build on a loaded machine needs. */
#define ST_WAIT_MS 20000
/* The pause between two looks at a condition. */
#define ST_POLL_MS 20
/* Timers shortened so that the suite stays fast. */
#define ST_FAST "--sample-interval-ms", "50", "--kill-timeout-ms", "3000"
#define ST_MAX_PIDS 16

/* Processes a failed test may leave, killed by st_fini; and the folders
 * a test made, removed by st_fini whatever the outcome. */
static pid_t st_pids[ST_MAX_PIDS];
static char st_dirs[ST_MAX_PIDS][64];

static void st_track(pid_t pid, bool live)
{
    for (size_t i = 0; i < ST_MAX_PIDS; i++)
        if (live ? st_pids[i] == 0 : st_pids[i] == pid) {
            st_pids[i] = live ? pid : 0;
            return;
        }
}

/* Makes a folder /tmp/shoal-sup<what>-XXXXXX in dir, removed at the end
 * of the test. */
static void st_tmpdir(char *dir, size_t len, const char *what)
{
    snprintf(dir, len, "/tmp/shoal-sup%s-XXXXXX", what);
    cr_assert(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    for (size_t i = 0; i < ST_MAX_PIDS; i++)
        if (st_dirs[i][0] == '\0') {
            snprintf(st_dirs[i], sizeof(st_dirs[i]), "%s", dir);
            return;
        }
}

/* Removes a folder and what is in it (logs, sockets, a runtime folder
 * left by a killed supervisor). */
static void st_rmtree(const char *path, int depth)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char sub[1024];

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            struct stat st;
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode) && depth < 4)
                st_rmtree(sub, depth + 1);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

static void st_init(void)
{
    h_init();
    /* Workers orphaned by a killed supervisor come to this process (not
     * to a pid 1 that may never reap them), so they can be waited for. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* A supervisor killed here takes its workers with it: they read end of
 * file on their parent fd. */
static void st_fini(void)
{
    for (size_t i = 0; i < ST_MAX_PIDS; i++)
        if (st_pids[i] > 0) {
            kill(st_pids[i], SIGKILL);
            waitpid(st_pids[i], NULL, 0);
            st_pids[i] = 0;
        }
    for (size_t i = 0; i < ST_MAX_PIDS; i++)
        if (st_dirs[i][0] != '\0') {
            st_rmtree(st_dirs[i], 0);
            st_dirs[i][0] = '\0';
        }
    h_fini();
}

static uint64_t st_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static int st_pidfd(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* True once pid is gone, reaped by whoever its parent is: bounded by
 * timeout_ms; waits on a pidfd, then polls for the reaping. */
static bool st_pid_gone(pid_t pid, int timeout_ms)
{
    uint64_t deadline = st_now_ms() + (uint64_t)timeout_ms;
    int fd = st_pidfd(pid);

    if (fd >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, timeout_ms);
        close(fd);
    }
    for (;;) {
        waitpid(pid, NULL, WNOHANG); /* ours when orphaned to us */
        if (kill(pid, 0) != 0 && errno == ESRCH)
            return true;
        if (st_now_ms() >= deadline)
            return false;
        poll(NULL, 0, 5);
    }
}

static char *st_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long len;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)len + 1);
    cr_assert(text != NULL);
    if (fread(text, 1, (size_t)len, f) != (size_t)len)
        len = 0;
    fclose(f);
    return text;
}

static void st_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    cr_assert(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* ---- the supervisor process ----------------------------------------------
 */

typedef struct {
    pid_t pid;
    int pidfd;
    char dir[64];
    char url[256];  /* the private socket its workers join */
    char addr[256]; /* its first --listen address, "" if none */
    bool reaped;
    int status;
} st_sup_t;

/* Runs `shoal supervise --ready-fd 3 ARGS` with TMPDIR, stdout and stderr
 * in a new folder, and waits for its ready line. Returns 0, or -1 when it
 * exited without one. */
static int st_sup_spawn(st_sup_t *s, const char *const *args)
{
    const char *argv[64];
    char *envp[512], tmpdir[96], out[128], err[128], line[4096];
    size_t n = 0, e = 0, got = 0;
    int fds[2];
    cJSON *ready;

    memset(s, 0, sizeof(*s));
    s->pidfd = -1;
    st_tmpdir(s->dir, sizeof(s->dir), "test");
    argv[n++] = SHOAL_BIN;
    argv[n++] = "supervise";
    argv[n++] = "--ready-fd";
    argv[n++] = "3";
    for (size_t i = 0; args[i] != NULL && n < 62; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    for (size_t i = 0; environ[i] != NULL && e < 510; i++)
        if (strncmp(environ[i], "TMPDIR=", 7) != 0)
            envp[e++] = environ[i];
    snprintf(tmpdir, sizeof(tmpdir), "TMPDIR=%s", s->dir);
    envp[e++] = tmpdir;
    envp[e] = NULL;
    snprintf(out, sizeof(out), "%s/out.log", s->dir);
    snprintf(err, sizeof(err), "%s/err.log", s->dir);
    cr_assert(pipe(fds) == 0);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    s->pid = fork();
    cr_assert(s->pid >= 0);
    if (s->pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int x = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(in, 0);
        dup2(o, 1);
        dup2(x, 2);
        if (fds[1] == 3)
            fcntl(3, F_SETFD, 0);
        else
            dup2(fds[1], 3);
        execve(SHOAL_BIN, (char *const *)argv, envp);
        _exit(127);
    }
    close(fds[1]);
    st_track(s->pid, true);
    s->pidfd = st_pidfd(s->pid);
    /* The ready line, or end of file if it failed to start. */
    while (got < sizeof(line) - 1) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        ssize_t r;
        cr_assert(poll(&p, 1, ST_WAIT_MS) == 1,
                  "the supervisor did not start within %d ms", ST_WAIT_MS);
        r = read(fds[0], line + got, sizeof(line) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(line, '\n', got) != NULL)
            break;
    }
    close(fds[0]);
    line[got] = '\0';
    if (strchr(line, '\n') == NULL)
        return -1;
    ready = cJSON_Parse(line);
    cr_assert(ready != NULL, "bad ready line: %s", line);
    snprintf(s->url, sizeof(s->url), "%s", h_str(ready, "url"));
    if (h_str(ready, "addresses.0") != NULL &&
        strcmp(h_str(ready, "addresses.0"), s->url) != 0)
        snprintf(s->addr, sizeof(s->addr), "%s", h_str(ready, "addresses.0"));
    cr_assert_eq((pid_t)h_num(ready, "pid"), s->pid);
    cJSON_Delete(ready);
    return 0;
}

static void st_sup_start(st_sup_t *s, const char *const *args)
{
    cr_assert_eq(st_sup_spawn(s, args), 0, "shoal supervise failed to start");
}

/* Waits for the supervisor's exit; returns its waitpid status. */
static int st_sup_wait(st_sup_t *s, int timeout_ms)
{
    struct pollfd p = {.fd = s->pidfd, .events = POLLIN};

    if (s->reaped)
        return s->status;
    cr_assert(s->pidfd >= 0);
    cr_assert_eq(poll(&p, 1, timeout_ms), 1,
                 "the supervisor did not exit within %d ms", timeout_ms);
    cr_assert_eq(waitpid(s->pid, &s->status, 0), s->pid);
    s->reaped = true;
    st_track(s->pid, false);
    close(s->pidfd);
    s->pidfd = -1;
    return s->status;
}

/* The supervisor's stdout or stderr so far (caller frees). */
static char *st_sup_output(const st_sup_t *s, const char *which)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/%s.log", s->dir, which);
    return st_read_file(path);
}

/* SIGTERM, then asserts the exit is 0. */
static void st_sup_stop(st_sup_t *s)
{
    int status;

    kill(s->pid, SIGTERM);
    status = st_sup_wait(s, ST_WAIT_MS);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the supervisor ended with status %#x", status);
}

/* ---- a client of the supervisor, on the library ----------------------------
 */

typedef struct {
    uv_loop_t loop;
    shoal_node_t node;
    shoal_conn_t *conn;
    bool done;
    int status;
    cJSON *result;
    char code[SHOAL_MAX_NAME_BYTES + 1];
    char message[512];
} st_client_t;

static void st_timer_cb(uv_timer_t *timer)
{
    *(bool *)timer->data = true;
}

/* Runs the client's loop until *flag or timeout_ms; returns *flag. */
static bool st_run_until(st_client_t *c, const bool *flag, int timeout_ms)
{
    uv_timer_t timer;
    bool expired = false;

    uv_timer_init(&c->loop, &timer);
    timer.data = &expired;
    uv_timer_start(&timer, st_timer_cb, (uint64_t)timeout_ms, 0);
    while (!*flag && !expired)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    return *flag;
}

/* A short wait between two looks at a condition. */
static void st_pause(st_client_t *c, int ms)
{
    bool never = false;

    st_run_until(c, &never, ms);
}

static void st_connected_cb(shoal_conn_t *conn, int status, void *data)
{
    st_client_t *c = data;

    (void)conn;
    c->status = status;
    c->done = true;
}

static void st_client_open(st_client_t *c, const char *url)
{
    memset(c, 0, sizeof(*c));
    cr_assert_eq(uv_loop_init(&c->loop), 0);
    cr_assert_eq(shoal_node_init(&c->loop, &c->node, NULL), 0);
    cr_assert_eq(
        shoal_node_connect(&c->node, url, NULL, st_connected_cb, c, &c->conn),
        0);
    cr_assert(st_run_until(c, &c->done, ST_WAIT_MS));
    cr_assert_eq(c->status, 0, "cannot connect to %s: %s", url,
                 shoal_strerror(c->status));
}

static void st_client_close(st_client_t *c)
{
    cJSON_Delete(c->result);
    shoal_node_close(&c->node, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&c->loop), 0, "a handle was left open");
}

static void st_reply_cb(const shoal_reply_t *reply, void *data)
{
    st_client_t *c = data;
    shoal_name_t code;

    c->done = true;
    c->status = reply->status;
    cJSON_Delete(c->result);
    c->result = NULL;
    c->code[0] = '\0';
    snprintf(c->message, sizeof(c->message), "%s", reply->message);
    if (reply->status == 0) {
        c->result = reply->result.data ? shoal_payload_to_cjson(&reply->result)
                                       : cJSON_CreateNull();
    } else if (reply->error.data != NULL) {
        shoal_wire_decode_error(&reply->error, &code, c->message,
                                sizeof(c->message));
        snprintf(c->code, sizeof(c->code), "%s", code.s);
    } else {
        snprintf(c->code, sizeof(c->code), "%s",
                 shoal_err_name(reply->status));
    }
}

/* Calls app.action(args_json) and waits; returns the reply status, the
 * result in c->result. */
static int st_call(st_client_t *c, const char *app, const char *action,
                   const char *args_json)
{
    shoal_payload_t args = {args_json, args_json ? strlen(args_json) : 0,
                            SHOAL_CODEC_JSON};

    c->done = false;
    cr_assert_eq(shoal_conn_call(c->conn, app, action,
                                 args_json ? &args : NULL, ST_WAIT_MS,
                                 st_reply_cb, c),
                 0);
    cr_assert(st_run_until(c, &c->done, ST_WAIT_MS + 1000));
    return c->status;
}

/* The supervisor's status (a copy the caller deletes). */
static cJSON *st_status(st_client_t *c)
{
    int status = st_call(c, "supervisor", "status", NULL);

    cr_assert_eq(status, 0, "status failed: %s %s", c->code, c->message);
    return cJSON_Duplicate(c->result, 1);
}

static const cJSON *st_worker(const cJSON *status, const char *name)
{
    const cJSON *w;

    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(status, "workers"))
    {
        if (strcmp(h_str(w, "name"), name) == 0)
            return w;
    }
    return NULL;
}

static const cJSON *st_pool(const cJSON *status, const char *name)
{
    const cJSON *p;

    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(status, "pools"))
    {
        if (strcmp(h_str(p, "name"), name) == 0)
            return p;
    }
    return NULL;
}

/* A condition on the status. */
typedef bool (*st_pred_t)(const cJSON *status, const void *arg);

/* Asks for the status until pred holds (bounded); returns that status. */
static cJSON *st_wait_for(st_client_t *c, st_pred_t pred, const void *arg,
                          const char *what)
{
    uint64_t deadline = st_now_ms() + ST_WAIT_MS;
    cJSON *status;
    char *text;

    for (;;) {
        status = st_status(c);
        if (pred(status, arg))
            return status;
        if (st_now_ms() >= deadline)
            break;
        cJSON_Delete(status);
        st_pause(c, ST_POLL_MS);
    }
    text = cJSON_PrintUnformatted(status);
    cr_assert_fail("waited %d ms for %s; status: %s", ST_WAIT_MS, what, text);
    return NULL;
}

static bool st_all_online(const cJSON *status, const void *arg)
{
    const cJSON *w;
    size_t n = 0;

    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(status, "workers"))
    {
        if (strcmp(h_str(w, "state"), "online") != 0)
            return false;
        n++;
    }
    return n == *(const size_t *)arg;
}

static cJSON *st_wait_online(st_client_t *c, size_t n)
{
    return st_wait_for(c, st_all_online, &n, "every worker online");
}

typedef struct {
    const char *name;
    const char *state;
    double not_pid; /* 0: any */
} st_want_t;

static bool st_worker_is(const cJSON *status, const void *arg)
{
    const st_want_t *want = arg;
    const cJSON *w = st_worker(status, want->name);
    const cJSON *pid;

    if (w == NULL || strcmp(h_str(w, "state"), want->state) != 0)
        return false;
    pid = cJSON_GetObjectItemCaseSensitive(w, "pid");
    return want->not_pid == 0 ||
           (cJSON_IsNumber(pid) && pid->valuedouble != want->not_pid);
}

static bool st_pool_is(const cJSON *status, const void *arg)
{
    const st_want_t *want = arg;
    const cJSON *p = st_pool(status, want->name);

    return p != NULL && strcmp(h_str(p, "state"), want->state) == 0;
}

static pid_t st_pid_of(const cJSON *status, const char *name)
{
    const cJSON *w = st_worker(status, name);

    cr_assert(w != NULL, "no worker %s", name);
    return (pid_t)h_num(w, "pid");
}

/* The value of NAME in /proc/PID/environ, or NULL. */
static char *st_environ(pid_t pid, const char *name, char *out, size_t len)
{
    char path[64], *text;
    size_t name_len = strlen(name);
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    text = calloc(1, 65537);
    n = fread(text, 1, 65536, f);
    fclose(f);
    for (size_t i = 0; i < n; i += strlen(text + i) + 1)
        if (strncmp(text + i, name, name_len) == 0 &&
            text[i + name_len] == '=') {
            snprintf(out, len, "%s", text + i + name_len + 1);
            free(text);
            return out;
        }
    free(text);
    return NULL;
}

/* ---- restarts ------------------------------------------------------------
 */

TestSuite(supervise, .init = st_init, .fini = st_fini, .timeout = 90);

Test(supervise, killed_worker_is_restarted_under_its_name)
{
    const char *args[] = {"--pool", "w",    "--workers", "2",
                          "--app",  "echo", ST_FAST,     NULL};
    st_want_t want = {"w-1", "online", 0};
    char value[256];
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    pid_t pid1, pid2, pid1b;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_online(&c, 2);
    pid1 = st_pid_of(status, "w-1");
    pid2 = st_pid_of(status, "w-2");
    cJSON_Delete(status);

    cr_assert_eq(kill(pid1, SIGKILL), 0);
    want.not_pid = pid1;
    status = st_wait_for(&c, st_worker_is, &want, "w-1 back online");
    pid1b = st_pid_of(status, "w-1");
    cr_assert_eq(h_num(st_worker(status, "w-1"), "index"), 0);
    cr_assert_eq(h_num(st_worker(status, "w-1"), "restarts"), 1);
    cr_assert(h_json_eq(st_worker(status, "w-1"), "history.0.signal", "9"));
    cr_assert(h_json_eq(st_worker(status, "w-1"), "history.0.delay_ms", "0"));
    cr_assert_eq(st_pid_of(status, "w-2"), pid2);
    cr_assert_eq(h_num(st_worker(status, "w-2"), "restarts"), 0);
    cJSON_Delete(status);

    /* The replacement knows who it is. */
    cr_assert_str_eq(
        st_environ(pid1b, "SHOAL_WORKER_NAME", value, sizeof(value)), "w-1");
    cr_assert_str_eq(
        st_environ(pid1b, "SHOAL_WORKER_INDEX", value, sizeof(value)), "0");
    cr_assert_str_eq(st_environ(pid1b, "SHOAL_POOL", value, sizeof(value)),
                     "w");
    cr_assert_str_eq(
        st_environ(pid1b, "SHOAL_SUPERVISOR", value, sizeof(value)), s.url);
    cr_assert_str_eq(
        st_environ(pid2, "SHOAL_WORKER_INDEX", value, sizeof(value)), "1");
    /* ... and answers under its name. */
    cr_assert_eq(st_call(&c, "supervisor", "call",
                         "{\"worker\":\"w-1\",\"app\":\"echo\","
                         "\"action\":\"echo\",\"args\":[1,2]}"),
                 0, "%s %s", c.code, c.message);
    cr_assert(h_json_eq(c.result, "", "[1,2]"));
    cr_assert(st_pid_gone(pid1, ST_WAIT_MS));

    st_client_close(&c);
    st_sup_stop(&s);
    cr_assert(st_pid_gone(pid1b, ST_WAIT_MS));
    cr_assert(st_pid_gone(pid2, ST_WAIT_MS));
}

Test(supervise, worker_crashing_at_start_errors_after_its_budget)
{
    const char *args[] = {"--pool",
                          "w",
                          "--workers",
                          "1",
                          "--app",
                          "nosuch",
                          "--max-restarts",
                          "4",
                          "--restart-window-ms",
                          "60000",
                          "--backoff-initial-ms",
                          "20",
                          "--backoff-factor",
                          "2",
                          "--backoff-reset-ms",
                          "60000",
                          ST_FAST,
                          NULL};
    st_want_t want = {"w", "errored", 0};
    const cJSON *w, *h;
    double last_delay = -1;
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    char *err;
    int k = 0;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_for(&c, st_pool_is, &want, "pool w errored");
    w = st_worker(status, "w-1");
    cr_assert_str_eq(h_str(w, "state"), "errored");
    cr_assert(h_json_eq(w, "pid", "null"));
    cr_assert_eq(h_num(w, "restarts"), 4);
    cr_assert(h_json_eq(w, "last_exit.status", "2"));
    cr_assert(strstr(h_str(w, "last_error"), "nosuch") != NULL);
    /* Each restart was recorded with its delay, the delays grew, and
     * each replacement waited at least its delay. */
    cr_assert_eq(cJSON_GetArraySize(h_at(w, "history")), 4);
    cJSON_ArrayForEach(h, h_at(w, "history"))
    {
        static const double delays[] = {0, 20, 40, 80};
        cr_assert_eq(h_num(h, "delay_ms"), delays[k], "restart %d", k);
        cr_assert_gt(h_num(h, "delay_ms"), last_delay);
        cr_assert_geq(h_num(h, "start_ms") - h_num(h, "exit_ms"),
                      h_num(h, "delay_ms"), "restart %d", k);
        cr_assert(h_json_eq(h, "status", "2"));
        last_delay = h_num(h, "delay_ms");
        k++;
    }
    cJSON_Delete(status);
    err = st_sup_output(&s, "err");
    cr_assert(strstr(err, "[w-1] shoal node: --app nosuch") != NULL, "%s",
              err);
    cr_assert(strstr(err, "errored") != NULL, "%s", err);
    free(err);
    st_client_close(&c);
    st_sup_stop(&s);
}

Test(supervise, temporary_worker_is_never_restarted)
{
    const char *args[] = {"--pool",    "w",         "--workers", "2",
                          "--restart", "temporary", "--app",     "echo",
                          ST_FAST,     NULL};
    st_want_t want = {"w-1", "stopped", 0};
    const cJSON *w;
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    pid_t pid1;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_online(&c, 2);
    pid1 = st_pid_of(status, "w-1");
    cJSON_Delete(status);
    kill(pid1, SIGKILL);
    status = st_wait_for(&c, st_worker_is, &want, "w-1 stopped");
    w = st_worker(status, "w-1");
    cr_assert_eq(h_num(w, "restarts"), 0);
    cr_assert(h_json_eq(w, "pid", "null"));
    cr_assert(h_json_eq(w, "last_exit.signal", "9"));
    cr_assert_eq(cJSON_GetArraySize(h_at(w, "history")), 0);
    cr_assert_str_eq(h_str(st_worker(status, "w-2"), "state"), "online");
    cJSON_Delete(status);
    st_client_close(&c);
    st_sup_stop(&s);
}

Test(supervise, transient_worker_restarts_after_an_abnormal_exit_only)
{
    const char *args[] = {"--pool",    "w",         "--workers", "2",
                          "--restart", "transient", "--app",     "echo",
                          "--app",     "crash",     ST_FAST,     NULL};
    st_want_t back = {"w-1", "online", 0}, down = {"w-2", "stopped", 0};
    const cJSON *w;
    st_client_t c;
    st_sup_t s;
    cJSON *status;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_online(&c, 2);
    back.not_pid = st_pid_of(status, "w-1");
    cJSON_Delete(status);

    /* Crash on demand: exit 3 is abnormal, exit 0 is not. The worker
     * exits before it answers: the call fails. */
    cr_assert_neq(st_call(&c, "supervisor", "call",
                          "{\"worker\":\"w-1\",\"app\":\"crash\","
                          "\"action\":\"exit\",\"args\":3}"),
                  0);
    status = st_wait_for(&c, st_worker_is, &back, "w-1 restarted");
    w = st_worker(status, "w-1");
    cr_assert_eq(h_num(w, "restarts"), 1);
    cr_assert(h_json_eq(w, "history.0.status", "3"));
    cJSON_Delete(status);

    cr_assert_neq(st_call(&c, "supervisor", "call",
                          "{\"worker\":\"w-2\",\"app\":\"crash\","
                          "\"action\":\"exit\",\"args\":0}"),
                  0);
    status = st_wait_for(&c, st_worker_is, &down, "w-2 stopped");
    w = st_worker(status, "w-2");
    cr_assert_eq(h_num(w, "restarts"), 0);
    cr_assert(h_json_eq(w, "last_exit.status", "0"));
    cr_assert_str_eq(h_str(st_worker(status, "w-1"), "state"), "online");
    cJSON_Delete(status);
    st_client_close(&c);
    st_sup_stop(&s);
}

/* ---- the end of a supervisor ---------------------------------------------
 */

static void st_worker_pids(const cJSON *status, pid_t *pids, size_t n)
{
    const cJSON *w;
    size_t i = 0;

    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(status, "workers"))
    {
        cr_assert_lt(i, n);
        pids[i++] = (pid_t)h_num(w, "pid");
    }
    cr_assert_eq(i, n);
}

Test(supervise, sigterm_to_the_supervisor_leaves_no_child)
{
    const char *args[] = {"--workers", "3", "--app", "echo", ST_FAST, NULL};
    char sock[600];
    struct stat st;
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    pid_t pids[3];

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_online(&c, 3);
    st_worker_pids(status, pids, 3);
    cJSON_Delete(status);
    st_client_close(&c);
    snprintf(sock, sizeof(sock), "%s", s.url + strlen("unix://"));
    cr_assert_eq(stat(sock, &st), 0);

    st_sup_stop(&s);
    /* Reaped before the supervisor exited: gone at once. */
    for (size_t i = 0; i < 3; i++)
        cr_assert(kill(pids[i], 0) != 0 && errno == ESRCH,
                  "worker %d is still there", (int)pids[i]);
    /* The private socket and its folder went too. */
    cr_assert_neq(stat(sock, &st), 0);
    *strrchr(sock, '/') = '\0';
    cr_assert_neq(stat(sock, &st), 0, "%s is still there", sock);
}

Test(supervise, sigkill_to_the_supervisor_leaves_no_child_after_a_bounded_wait)
{
    const char *args[] = {"--workers", "3", "--app", "echo", ST_FAST, NULL};
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    pid_t pids[3];
    int wstatus;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_online(&c, 3);
    st_worker_pids(status, pids, 3);
    cJSON_Delete(status);
    st_client_close(&c);

    kill(s.pid, SIGKILL);
    wstatus = st_sup_wait(&s, ST_WAIT_MS);
    cr_assert(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
    /* They notice the end of file on their parent fd and exit; within a
     * few seconds (the node's own stop deadline is 5 s). */
    for (size_t i = 0; i < 3; i++)
        cr_assert(st_pid_gone(pids[i], 10000),
                  "worker %d outlived its "
                  "supervisor",
                  (int)pids[i]);
}

/* ---- the remote controls --------------------------------------------------
 */

Test(supervise, status_restart_and_stop_work_from_the_command_line)
{
    const char *args[] = {"--pool", "w",    "--workers", "2",
                          "--app",  "echo", "--listen",  "tcp://127.0.0.1:0",
                          ST_FAST,  NULL};
    st_want_t want = {"w-2", "online", 0};
    st_client_t c;
    st_sup_t s;
    cJSON *status, *json;
    pid_t pids[2];
    h_run_t run;
    int wstatus;

    st_sup_start(&s, args);
    cr_assert_neq(s.addr[0], '\0');
    {
        const char *cmd[] = {"status", s.addr, "--wait-online", NULL};
        h_run_shoal(cmd, &run);
        cr_assert_eq(run.exit_code, 0, "%s", run.err);
        cr_assert(strstr(run.out, "NAME") != NULL, "%s", run.out);
        cr_assert(strstr(run.out, "w-1") != NULL, "%s", run.out);
        cr_assert(strstr(run.out, "online") != NULL, "%s", run.out);
        cr_assert(strstr(run.out, "MEM") != NULL, "%s", run.out);
        h_run_free(&run);
    }
    {
        const char *cmd[] = {"status", s.addr, "--json", NULL};
        h_run_shoal(cmd, &run);
        cr_assert_eq(run.exit_code, 0, "%s", run.err);
        json = cJSON_Parse(run.out);
        cr_assert(json != NULL, "%s", run.out);
        cr_assert_eq(cJSON_GetArraySize(h_at(json, "workers")), 2);
        cr_assert_str_eq(h_str(json, "workers.1.name"), "w-2");
        st_worker_pids(json, pids, 2);
        cJSON_Delete(json);
        h_run_free(&run);
    }
    {
        const char *cmd[] = {"restart", s.addr, "w-2", NULL};
        h_run_shoal(cmd, &run);
        cr_assert_eq(run.exit_code, 0, "%s", run.err);
        cr_assert(strstr(run.out, "restarted w-2") != NULL, "%s", run.out);
        h_run_free(&run);
    }
    st_client_open(&c, s.url);
    want.not_pid = pids[1];
    status = st_wait_for(&c, st_worker_is, &want, "w-2 restarted");
    cr_assert_eq(h_num(st_worker(status, "w-2"), "restarts"), 1);
    cr_assert(
        h_json_eq(st_worker(status, "w-2"), "history.0.requested", "true"));
    cr_assert_eq(st_pid_of(status, "w-1"), pids[0]);
    pids[1] = st_pid_of(status, "w-2");
    cJSON_Delete(status);
    st_client_close(&c);
    {
        const char *cmd[] = {"restart", s.addr, "nosuch", NULL};
        h_run_shoal(cmd, &run);
        cr_assert_eq(run.exit_code, 1);
        cr_assert(strstr(run.err, "ENOTFOUND") != NULL, "%s", run.err);
        h_run_free(&run);
    }
    {
        const char *cmd[] = {"stop", s.addr, NULL};
        h_run_shoal(cmd, &run);
        cr_assert_eq(run.exit_code, 0, "%s", run.err);
        h_run_free(&run);
    }
    /* `shoal stop` waited for the end: the supervisor has exited 0. */
    wstatus = st_sup_wait(&s, ST_WAIT_MS);
    cr_assert(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    for (size_t i = 0; i < 2; i++)
        cr_assert(kill(pids[i], 0) != 0 && errno == ESRCH);
}

Test(supervise, a_node_started_by_hand_joins_and_is_listed)
{
    char listen[160], sock[128];
    const char *args[] = {"--pool", "w",        "--workers", "1",     "--app",
                          "echo",   "--listen", listen,      ST_FAST, NULL};
    h_node_t hand;
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    const cJSON *w;
    uint64_t deadline;

    /* The public socket goes in a folder of its own, made first. */
    st_tmpdir(sock, sizeof(sock), "join");
    snprintf(listen, sizeof(listen), "unix://%s/pub.sock", sock);
    st_sup_start(&s, args);
    {
        const char *extra[] = {"--join", listen, NULL};
        h_node_start(&hand, "hand", extra);
    }
    st_client_open(&c, s.url);
    deadline = st_now_ms() + ST_WAIT_MS;
    for (;;) {
        status = st_status(&c);
        w = st_worker(status, "hand");
        if (w != NULL)
            break;
        cr_assert_lt(st_now_ms(), deadline, "the node never joined");
        cJSON_Delete(status);
        st_pause(&c, ST_POLL_MS);
    }
    cr_assert(h_json_eq(w, "remote", "true"));
    cr_assert_str_eq(h_str(w, "state"), "online");
    cr_assert_eq((pid_t)h_num(w, "pid"), hand.child.pid);
    cr_assert(h_json_eq(w, "pool", "null"));
    cJSON_Delete(status);
    cr_assert_eq(st_call(&c, "supervisor", "call",
                         "{\"worker\":\"hand\",\"app\":\"sum\","
                         "\"action\":\"sum\",\"args\":[1,2,3]}"),
                 0, "%s %s", c.code, c.message);
    cr_assert(h_json_eq(c.result, "", "6"));
    h_node_stop(&hand);
    /* Gone from the list once its connection closed. */
    deadline = st_now_ms() + ST_WAIT_MS;
    for (;;) {
        status = st_status(&c);
        w = st_worker(status, "hand");
        cJSON_Delete(status);
        if (w == NULL)
            break;
        cr_assert_lt(st_now_ms(), deadline, "the node is still listed");
        st_pause(&c, ST_POLL_MS);
    }
    st_client_close(&c);
    st_sup_stop(&s);
    rmdir(sock);
}

static void st_flag_reply_cb(const shoal_reply_t *reply, void *data)
{
    cr_assert_eq(reply->status, 0, "%s", reply->message);
    *(bool *)data = true;
}

typedef struct {
    const char *name;
    double in_flight;
    double done;
} st_calls_t;

static bool st_calls_are(const cJSON *status, const void *arg)
{
    const st_calls_t *want = arg;
    const cJSON *w = st_worker(status, want->name);

    return w != NULL && h_num(w, "calls_in_flight") == want->in_flight &&
           h_num(w, "calls_done") >= want->done;
}

Test(supervise, status_counts_calls_in_flight_and_done)
{
    static const char sleep_json[] =
        "{\"worker\":\"w-1\",\"app\":\"sleep\",\"action\":\"sleep\","
        "\"args\":1500}";
    const shoal_payload_t sleep_args = {sleep_json, sizeof(sleep_json) - 1,
                                        SHOAL_CODEC_JSON};
    const char *args[] = {"--pool", "w",     "--workers", "1",
                          "--app",  "sleep", ST_FAST,     NULL};
    st_calls_t busy = {"w-1", 1, 0}, idle = {"w-1", 0, 1};
    const cJSON *w;
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    bool answered = false;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    cJSON_Delete(st_wait_online(&c, 1));
    /* One call held by the worker while status is asked. */
    cr_assert_eq(shoal_conn_call(c.conn, "supervisor", "call", &sleep_args,
                                 ST_WAIT_MS, st_flag_reply_cb, &answered),
                 0);
    status = st_wait_for(&c, st_calls_are, &busy, "one call in flight");
    w = st_worker(status, "w-1");
    cr_assert(cJSON_IsNumber(h_at(w, "cpu_percent")));
    cr_assert_gt(h_num(w, "rss_bytes"), 0);
    cr_assert_gt(h_num(w, "uptime_ms"), 0);
    cJSON_Delete(status);
    cr_assert(st_run_until(&c, &answered, ST_WAIT_MS));
    cJSON_Delete(st_wait_for(&c, st_calls_are, &idle, "one call done"));
    st_client_close(&c);
    st_sup_stop(&s);
}

/* ---- applications ---------------------------------------------------------
 */

Test(supervise, an_external_python_application_answers_calls)
{
    char exec[512];
    const char *args[] = {"--pool", "w",  "--workers", "1",
                          "--exec", exec, ST_FAST,     NULL};
    const char *probe[] = {"python3", "-c", "pass", NULL};
    const cJSON *app;
    bool listed = false;
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    h_run_t run;

    h_run(probe, &run);
    if (run.exit_code != 0) {
        h_run_free(&run);
        cr_skip_test("python3 is not installed");
    }
    h_run_free(&run);
    snprintf(exec, sizeof(exec), "python3 %s/workers/py/echo.py",
             SHOAL_SOURCE_DIR);
    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_online(&c, 1);
    cJSON_ArrayForEach(app, h_at(st_worker(status, "w-1"), "applications"))
    {
        listed = listed || strcmp(app->valuestring, "echo") == 0;
    }
    cr_assert(listed, "the exec application is not listed");
    cJSON_Delete(status);
    cr_assert_eq(st_call(&c, "supervisor", "call",
                         "{\"worker\":\"w-1\",\"app\":\"echo\","
                         "\"action\":\"upper\",\"args\":\"shoal\"}"),
                 0, "%s %s", c.code, c.message);
    cr_assert(h_json_eq(c.result, "", "\"SHOAL\""));
    cr_assert_eq(st_call(&c, "supervisor", "call",
                         "{\"worker\":\"w-1\",\"app\":\"echo\","
                         "\"action\":\"echo\",\"args\":{\"n\":[1,2]}}"),
                 0, "%s %s", c.code, c.message);
    cr_assert(h_json_eq(c.result, "", "{\"n\":[1,2]}"));
    st_client_close(&c);
    st_sup_stop(&s);
}

Test(supervise, plugin_that_fails_to_load_names_the_file_and_the_reason)
{
    char dir[64], plugin[128];
    const char *args[] = {"--pool",         "w",   "--workers",  "1",
                          "--app",          "bad", "--app-path", dir,
                          "--max-restarts", "0",   ST_FAST,      NULL};
    st_want_t want = {"w", "errored", 0};
    const char *why;
    st_client_t c;
    st_sup_t s;
    cJSON *status;
    char *err;

    st_tmpdir(dir, sizeof(dir), "plug");
    snprintf(plugin, sizeof(plugin), "%s/bad.so", dir);
    st_write_file(plugin, "this is a text file and not a shared object at "
                          "all, whatever its name says\n");
    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    status = st_wait_for(&c, st_pool_is, &want, "pool w errored");
    why = h_str(st_worker(status, "w-1"), "last_error");
    cr_assert(why != NULL);
    cr_assert(strstr(why, plugin) != NULL, "%s", why);
    cr_assert(strstr(why, "invalid ELF header") != NULL, "%s", why);
    cJSON_Delete(status);
    err = st_sup_output(&s, "err");
    cr_assert(strstr(err, "[w-1] shoal node: --app bad: cannot load") != NULL,
              "%s", err);
    free(err);
    st_client_close(&c);
    st_sup_stop(&s);
    unlink(plugin);
    rmdir(dir);
}

/* ---- configuration files ---------------------------------------------------
 */

Test(supervise, invalid_configuration_is_refused_with_the_field_and_reason)
{
    static const char *const cases[][2] = {
        {"{\"pools\":[{\"name\":\"w\",\"workers\":0}]}",
         "pools[0].workers: must be a positive integer"},
        {"{\"pools\":[{\"name\":\"w\",\"workers\":\"2\"}]}",
         "pools[0].workers: must be a positive integer"},
        {"{\"pools\":[{\"name\":\"w\",\"wrokers\":2}]}",
         "pools[0].wrokers: unknown field"},
        {"{\"pools\":[{\"name\":\"w\",\"restart\":\"sometimes\"}]}",
         "pools[0].restart: must be \"permanent\", \"transient\" or "
         "\"temporary\""},
        {"{\"pools\":[{\"name\":\"w\",\"backoff\":{\"factor\":0.5}}]}",
         "pools[0].backoff.factor: must be a number from 1 to 1000"},
        {"{\"pools\":[{\"name\":\"w\",\"apps\":[\"echo\",3]}]}",
         "pools[0].apps[1]: must be a non-empty string"},
        {"{\"pools\":[{\"name\":\"w\",\"workers\":2,\"names\":[\"a\"]}]}",
         "pools[0].names: has 1 names for 2 workers"},
        {"{\"pools\":[{\"name\":\"w\"},{\"name\":\"w\"}]}",
         "pools[1].name: 'w' is the name of pools[0] too"},
        {"{\"pools\":[{\"name\":\"w\"}],\"kill_timeout_ms\":-1}",
         "kill_timeout_ms: must be an integer from 0 to"},
        {"{\"pools\":[{\"name\":\"w\"}],\"listen\":\"tcp://x:1\"}",
         "listen: must be an array of strings"},
        {"{\"pools\":[]}", "pools: must be a non-empty array"},
        {"{\"pool\":[{\"name\":\"w\"}]}", "pool: unknown field"},
        {"{\"pools\":[{\"name\":\"w\"}],}", "not valid JSON"},
    };
    char dir[64], path[128];
    h_run_t run;

    st_tmpdir(dir, sizeof(dir), "cfg");
    snprintf(path, sizeof(path), "%s/pool.json", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *cmd[] = {"supervise", "--config", path, NULL};
        st_write_file(path, cases[i][0]);
        h_run_shoal(cmd, &run);
        cr_assert_eq(run.exit_code, 2, "%s was taken", cases[i][0]);
        cr_assert(strstr(run.err, cases[i][1]) != NULL,
                  "for %s expected \"%s\" in: %s", cases[i][0], cases[i][1],
                  run.err);
        cr_assert(strstr(run.err, path) != NULL, "%s", run.err);
        h_run_free(&run);
    }
    unlink(path);
    rmdir(dir);
}

Test(supervise, configuration_file_sets_pools_names_and_addresses)
{
    static const char config[] =
        "{\"name\": \"cfgsup\", \"listen\": [\"tcp://127.0.0.1:0\"],\n"
        " \"kill_timeout_ms\": 3000, \"sample_interval_ms\": 50,\n"
        " \"pools\": [\n"
        "  {\"name\": \"a\", \"workers\": 2, \"apps\": [\"echo\"]},\n"
        "  {\"name\": \"b\", \"names\": [\"left\", \"right\"],\n"
        "   \"apps\": [\"sum\"], \"restart\": \"temporary\",\n"
        "   \"backoff\": {\"initial_ms\": 10, \"factor\": 3,\n"
        "                \"max_ms\": 1000, \"reset_after_ms\": 500},\n"
        "   \"max_restarts\": 2, \"restart_window_ms\": 1000}]}\n";
    char dir[64], path[128];
    const char *args[] = {"--config", path, NULL};
    const cJSON *w;
    st_client_t c;
    st_sup_t s;
    cJSON *status;

    st_tmpdir(dir, sizeof(dir), "cfg");
    snprintf(path, sizeof(path), "%s/pool.json", dir);
    st_write_file(path, config);
    st_sup_start(&s, args);
    cr_assert(strncmp(s.addr, "tcp://127.0.0.1:", 16) == 0, "%s", s.addr);
    st_client_open(&c, s.addr);
    status = st_wait_online(&c, 4);
    cr_assert_str_eq(h_str(status, "name"), "cfgsup");
    cr_assert_str_eq(h_str(status, "pools.1.restart"), "temporary");
    cr_assert_eq(h_num(status, "pools.1.backoff.factor"), 3);
    cr_assert_eq(h_num(status, "pools.1.max_restarts"), 2);
    cr_assert(st_worker(status, "a-1") != NULL);
    cr_assert(st_worker(status, "a-2") != NULL);
    w = st_worker(status, "right");
    cr_assert(w != NULL);
    cr_assert_str_eq(h_str(w, "pool"), "b");
    cr_assert_eq(h_num(w, "index"), 1);
    cr_assert(h_json_eq(w, "applications", "[\"sum\"]"));
    cJSON_Delete(status);
    cr_assert_eq(st_call(&c, "supervisor", "call",
                         "{\"worker\":\"left\",\"app\":\"sum\","
                         "\"action\":\"sum\",\"args\":[20,22]}"),
                 0, "%s %s", c.code, c.message);
    cr_assert(h_json_eq(c.result, "", "42"));
    st_client_close(&c);
    st_sup_stop(&s);
    unlink(path);
    rmdir(dir);
}

/* ---- output ----------------------------------------------------------------
 */

Test(supervise, worker_output_goes_to_log_files_capped_in_size)
{
    char logs[128], app_path[700], file[160], old[170];
    const char *args[] = {"--pool",
                          "w",
                          "--workers",
                          "1",
                          "--app",
                          "nosuch",
                          "--app-path",
                          app_path,
                          "--log-dir",
                          logs,
                          "--log-max-bytes",
                          "8192",
                          "--backoff-initial-ms",
                          "0",
                          "--max-restarts",
                          "30",
                          ST_FAST,
                          NULL};
    st_want_t want = {"w", "errored", 0};
    struct stat st;
    st_client_t c;
    st_sup_t s;
    char *text, *line, *save = NULL, *err;
    size_t n = 0;

    /* Each run of the worker writes one line of about 700 bytes (the
     * search path is in its error): 31 lines need two rotations. */
    memset(app_path, 0, sizeof(app_path));
    strcpy(app_path, "/nonexistent/");
    for (size_t i = strlen(app_path); i < sizeof(app_path) - 1; i++)
        app_path[i] = 'p';
    st_tmpdir(logs, sizeof(logs), "log");
    strcat(logs, "/logs");
    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    cJSON_Delete(st_wait_for(&c, st_pool_is, &want, "pool w errored"));
    st_client_close(&c);
    st_sup_stop(&s);

    snprintf(file, sizeof(file), "%s/w-1.log", logs);
    snprintf(old, sizeof(old), "%s.1", file);
    cr_assert_eq(stat(file, &st), 0);
    cr_assert_leq(st.st_size, 8192);
    cr_assert_gt(st.st_size, 0);
    cr_assert_eq(stat(old, &st), 0, "no rotated file");
    cr_assert_leq(st.st_size, 8192);
    cr_assert_gt(st.st_size, 4096);
    text = st_read_file(old);
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), n++)
        cr_assert(strncmp(line, "[w-1] shoal node: --app nosuch", 30) == 0,
                  "%s", line);
    cr_assert_gt(n, 5);
    free(text);
    /* Nothing of the worker's went to the supervisor's own output. */
    err = st_sup_output(&s, "err");
    cr_assert(strstr(err, "[w-1]") == NULL, "%s", err);
    free(err);
    unlink(file);
    unlink(old);
    rmdir(logs);
    *strrchr(logs, '/') = '\0';
    rmdir(logs);
}

/* The line splitter on its own: long lines are cut and marked, a last line
 * without a newline still goes out, "\r\n" loses its "\r". */
Test(supervise_log, long_lines_are_cut_and_marked)
{
    shoal__sup_priv_t *priv = calloc(1, sizeof(*priv));
    sup_worker_t *w = calloc(1, sizeof(*w));
    sup_line_t *line = calloc(1, sizeof(*line));
    char *big = malloc(10000), *out = calloc(1, 65536);
    size_t got = 0;
    ssize_t r;
    int fds[2];

    cr_assert(priv && w && line && big && out);
    cr_assert_eq(pipe(fds), 0);
    shoal_supervisor_opts_default(&priv->opts);
    priv->opts.log_fd_out = fds[1];
    priv->opts.quiet = true;
    snprintf(w->name, sizeof(w->name), "w-9");
    w->log_fd = -1;
    memset(big, 'a', 10000);
    shoal__sup_log_feed(priv, w, line, false, "one\r\ntw", 7);
    shoal__sup_log_feed(priv, w, line, false, "o\n", 2);
    /* 10000 bytes in three pieces, then the newline. */
    shoal__sup_log_feed(priv, w, line, false, big, 3000);
    shoal__sup_log_feed(priv, w, line, false, big, 3000);
    shoal__sup_log_feed(priv, w, line, false, big, 4000);
    shoal__sup_log_feed(priv, w, line, false, "\nlast", 5);
    shoal__sup_log_flush(priv, w, line, false);
    close(fds[1]);
    while ((r = read(fds[0], out + got, 65535 - got)) > 0)
        got += (size_t)r;
    close(fds[0]);
    cr_assert(strncmp(out, "[w-9] one\n[w-9] two\n[w-9] aaa", 29) == 0,
              "%.40s", out);
    cr_assert_eq(got, strlen("[w-9] one\n[w-9] two\n") + 6 +
                          SHOAL_SUP_MAX_LINE_BYTES + strlen(" [line cut]\n") +
                          strlen("[w-9] last\n"));
    cr_assert(strstr(out, "a [line cut]\n[w-9] last\n") != NULL);
    free(big);
    free(out);
    free(line);
    free(w);
    free(priv);
}

/* ---- drains, through the library -----------------------------------------
 */

typedef struct {
    uv_loop_t loop;
    shoal_node_t node;
    shoal_supervisor_t sup;
    uv_timer_t timer;
    size_t online;
    pid_t pids[2];
    bool call_done; /* the drain never calls done by itself */
    shoal_drain_done_fn done;
    void *done_data;
    bool drained;
    bool alive_when_drained;
    bool stopped;
    int stop_status;
    bool closed;
    bool gone_when_stopped;
} st_lib_t;

static void st_lib_closed_cb(shoal_supervisor_t *sup)
{
    st_lib_t *t = sup->data;

    t->closed = true;
    uv_close((uv_handle_t *)&t->timer, NULL);
    shoal_node_close(&t->node, NULL);
}

static void st_lib_stopped_cb(shoal_supervisor_t *sup, int status)
{
    st_lib_t *t = sup->data;

    t->stopped = true;
    t->stop_status = status;
    t->gone_when_stopped = true;
    for (size_t i = 0; i < 2; i++)
        if (kill(t->pids[i], 0) == 0)
            t->gone_when_stopped = false;
    /* A drain that finishes late is harmless. */
    if (!t->call_done && t->done != NULL)
        t->done(t->done_data);
    shoal_supervisor_close(sup, st_lib_closed_cb);
}

static void st_lib_drained_cb(uv_timer_t *timer)
{
    st_lib_t *t = timer->data;

    t->drained = true;
    t->alive_when_drained =
        kill(t->pids[0], 0) == 0 && kill(t->pids[1], 0) == 0;
    t->done(t->done_data);
}

/* Holds the stop for 200 ms, as a dispatcher with calls in flight would. */
static void st_lib_drain(void *data, shoal_drain_done_fn done, void *done_data)
{
    st_lib_t *t = data;

    t->done = done;
    t->done_data = done_data;
    if (t->call_done)
        uv_timer_start(&t->timer, st_lib_drained_cb, 200, 0);
}

static void st_lib_on_hello(shoal_node_t *node, shoal_conn_t *conn,
                            const shoal_payload_t *desc, void *data)
{
    st_lib_t *t = data;
    cJSON *status;

    (void)node;
    (void)conn;
    (void)desc;
    if (++t->online < 2)
        return;
    status = shoal_supervisor_status(&t->sup);
    st_worker_pids(status, t->pids, 2);
    cJSON_Delete(status);
    cr_assert_eq(shoal_supervisor_stop(&t->sup, st_lib_stopped_cb), 0);
    cr_assert_eq(shoal_supervisor_stop(&t->sup, st_lib_stopped_cb),
                 SHOAL_ESTOPPING);
    cr_assert_eq(shoal_supervisor_restart(&t->sup, NULL), SHOAL_ESTOPPING);
}

static void st_lib_run(st_lib_t *t, uint64_t drain_timeout_ms)
{
    static const char *const apps[] = {"echo"};
    shoal_supervisor_opts_t sopts;
    shoal_node_hooks_t hooks;
    shoal_pool_opts_t pool;
    char why[256];

    cr_assert_eq(uv_loop_init(&t->loop), 0);
    cr_assert_eq(shoal_node_init(&t->loop, &t->node, NULL), 0);
    shoal_supervisor_opts_default(&sopts);
    sopts.exe = SHOAL_BIN;
    sopts.quiet = true;
    sopts.drain_timeout_ms = drain_timeout_ms;
    sopts.kill_timeout_ms = 3000;
    cr_assert_eq(shoal_supervisor_init(&t->sup, &t->node, &sopts), 0);
    t->sup.data = t;
    cr_assert_eq(shoal_supervisor_add_drain(&t->sup, st_lib_drain, t), 0);
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_hello = st_lib_on_hello;
    hooks.data = t;
    cr_assert_eq(shoal_node_add_hooks(&t->node, &hooks), 0);
    shoal_pool_opts_default(&pool);
    pool.name = "lib";
    pool.workers = 2;
    pool.apps = apps;
    pool.n_apps = 1;
    cr_assert_eq(shoal_supervisor_add_pool(&t->sup, &pool, why, sizeof(why)),
                 0, "%s", why);
    /* A second pool with a worker name already taken is refused. */
    pool.name = "lib2";
    pool.workers = 1;
    pool.names = (const char *const[]){"lib-1"};
    pool.n_names = 1;
    cr_assert_eq(shoal_supervisor_add_pool(&t->sup, &pool, why, sizeof(why)),
                 SHOAL_EEXIST);
    cr_assert(strstr(why, "lib-1") != NULL, "%s", why);
    uv_timer_init(&t->loop, &t->timer);
    t->timer.data = t;
    cr_assert_eq(shoal_supervisor_start(&t->sup), 0);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    /* Every handle of the supervisor and the node closed. */
    cr_assert_eq(uv_loop_close(&t->loop), 0);
}

Test(supervise, drain_holds_the_stop_until_work_in_flight_is_done)
{
    st_lib_t *t = calloc(1, sizeof(*t));

    t->call_done = true;
    st_lib_run(t, 10000);
    cr_assert(t->drained);
    cr_assert(t->alive_when_drained,
              "workers were signalled before the drain finished");
    cr_assert(t->stopped);
    cr_assert_eq(t->stop_status, 0);
    cr_assert(t->gone_when_stopped);
    cr_assert(t->closed);
    free(t);
}

Test(supervise, drain_timeout_ends_a_drain_that_never_finishes)
{
    st_lib_t *t = calloc(1, sizeof(*t));

    t->call_done = false;
    st_lib_run(t, 100);
    cr_assert(!t->drained);
    cr_assert(t->stopped);
    cr_assert_eq(t->stop_status, 0);
    cr_assert(t->gone_when_stopped);
    cr_assert(t->closed);
    free(t);
}

/* ---- workers that never come up --------------------------------------- */

typedef struct {
    uv_loop_t loop;
    shoal_node_t node;
    shoal_supervisor_t sup;
    uv_timer_t timer;
    cJSON *status; /* once the pool is errored */
    bool closed;
} st_down_t;

static void st_down_closed_cb(shoal_supervisor_t *sup)
{
    st_down_t *t = sup->data;

    t->closed = true;
    uv_close((uv_handle_t *)&t->timer, NULL);
    shoal_node_close(&t->node, NULL);
}

static void st_down_poll_cb(uv_timer_t *timer)
{
    st_down_t *t = timer->data;
    cJSON *status = shoal_supervisor_status(&t->sup);

    if (strcmp(h_str(status, "pools.0.state"), "errored") != 0) {
        cJSON_Delete(status);
        return;
    }
    t->status = status;
    uv_timer_stop(timer);
    /* Closing without a stop: nothing runs any more anyway. */
    shoal_supervisor_close(&t->sup, st_down_closed_cb);
}

/* Runs a pool of one worker spawned from exe until it is errored. */
static cJSON *st_down_run(const char *exe, uint64_t start_timeout_ms)
{
    st_down_t *t = calloc(1, sizeof(*t));
    shoal_supervisor_opts_t sopts;
    shoal_pool_opts_t pool;
    char why[256];
    cJSON *status;

    cr_assert_eq(uv_loop_init(&t->loop), 0);
    cr_assert_eq(shoal_node_init(&t->loop, &t->node, NULL), 0);
    shoal_supervisor_opts_default(&sopts);
    sopts.exe = exe;
    sopts.quiet = true;
    sopts.log_fd_out = sopts.log_fd_err = -1;
    cr_assert_eq(shoal_supervisor_init(&t->sup, &t->node, &sopts), 0);
    t->sup.data = t;
    shoal_pool_opts_default(&pool);
    pool.name = "down";
    pool.workers = 1;
    pool.max_restarts = 2;
    pool.backoff_initial_ms = 0;
    pool.start_timeout_ms = start_timeout_ms;
    cr_assert_eq(shoal_supervisor_add_pool(&t->sup, &pool, why, sizeof(why)),
                 0, "%s", why);
    uv_timer_init(&t->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, st_down_poll_cb, 10, 10);
    cr_assert_eq(shoal_supervisor_start(&t->sup), 0);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&t->loop), 0);
    cr_assert(t->closed);
    status = t->status;
    free(t);
    return status;
}

Test(supervise, worker_that_cannot_be_spawned_is_errored_with_the_reason)
{
    cJSON *status = st_down_run("/nonexistent/shoal", 0);
    const char *why = h_str(status, "workers.0.last_error");

    cr_assert(why != NULL);
    cr_assert(strstr(why, "cannot spawn /nonexistent/shoal") != NULL, "%s",
              why);
    cr_assert(h_json_eq(status, "workers.0.last_exit.status", "127"));
    cr_assert_eq(h_num(status, "workers.0.restarts"), 2);
    cJSON_Delete(status);
}

Test(supervise, worker_that_never_says_hello_is_killed_after_the_start_timeout)
{
    char dir[64], script[128];
    cJSON *status;
    const char *why;

    st_tmpdir(dir, sizeof(dir), "silent");
    snprintf(script, sizeof(script), "%s/silent", dir);
    st_write_file(script, "#!/bin/sh\nexec sleep 60\n");
    cr_assert_eq(chmod(script, 0755), 0);
    status = st_down_run(script, 100);
    why = h_str(status, "workers.0.last_error");
    cr_assert(why != NULL && strstr(why, "no hello within 100 ms") != NULL,
              "%s", why ? why : "(none)");
    cr_assert(h_json_eq(status, "workers.0.last_exit.signal", "9"));
    cJSON_Delete(status);
    unlink(script);
    rmdir(dir);
}

/* ---- tasks through the supervisor's dispatcher ------------------------- */

Test(supervise, tasks_submitted_to_the_supervisor_run_on_its_workers)
{
    const char *args[] = {"--pool", "w",   "--workers", "2",
                          "--app",  "sum", ST_FAST,     NULL};
    st_client_t c;
    st_sup_t s;
    const char *node;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    cJSON_Delete(st_wait_online(&c, 2));
    cr_assert_eq(st_call(&c, "dispatch", "submit",
                         "{\"app\":\"sum\",\"action\":\"sum\","
                         "\"args\":[1,2,3]}"),
                 0, "%s %s", c.code, c.message);
    cr_assert_str_eq(h_str(c.result, "status"), "ok");
    cr_assert(h_json_eq(c.result, "result", "6"));
    node = h_str(c.result, "node");
    cr_assert(node != NULL &&
              (strcmp(node, "w-1") == 0 || strcmp(node, "w-2") == 0));
    st_client_close(&c);
    st_sup_stop(&s);
}

/* A call whose reply is awaited while other calls come and go. */
typedef struct {
    bool done;
    int status;
    cJSON *result;
} st_async_t;

static void st_async_reply_cb(const shoal_reply_t *reply, void *data)
{
    st_async_t *a = data;

    a->done = true;
    a->status = reply->status;
    if (reply->status == 0)
        a->result = shoal_payload_to_cjson(&reply->result);
}

static bool st_task_in_flight(const cJSON *status, const void *arg)
{
    const cJSON *w;

    (void)arg;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(status, "workers"))
    {
        if (h_num(w, "calls_in_flight") == 1)
            return true;
    }
    return false;
}

Test(supervise, sigterm_lets_a_task_in_flight_finish_before_the_workers_stop)
{
    static const char task[] =
        "{\"app\":\"sleep\",\"action\":\"sleep\",\"args\":700}";
    const char *args[] = {"--pool", "w",     "--workers",          "1",
                          "--app",  "sleep", "--drain-timeout-ms", "10000",
                          ST_FAST,  NULL};
    const shoal_payload_t payload = {task, sizeof(task) - 1, SHOAL_CODEC_JSON};
    st_async_t task_reply = {false, 0, NULL};
    st_client_t c;
    st_sup_t s;
    char *err;
    int wstatus;

    st_sup_start(&s, args);
    st_client_open(&c, s.url);
    cJSON_Delete(st_wait_online(&c, 1));
    cr_assert_eq(shoal_conn_call(c.conn, "dispatch", "submit", &payload,
                                 ST_WAIT_MS, st_async_reply_cb, &task_reply),
                 0);
    cJSON_Delete(
        st_wait_for(&c, st_task_in_flight, NULL, "the task on the worker"));
    cr_assert(!task_reply.done);
    kill(s.pid, SIGTERM);
    /* The task ends well: the worker was not signalled before it was
     * done. */
    cr_assert(st_run_until(&c, &task_reply.done, ST_WAIT_MS));
    cr_assert_eq(task_reply.status, 0, "%s",
                 shoal_strerror(task_reply.status));
    cr_assert_str_eq(h_str(task_reply.result, "status"), "ok");
    cr_assert(h_json_eq(task_reply.result, "result", "700"));
    cJSON_Delete(task_reply.result);
    st_client_close(&c);
    wstatus = st_sup_wait(&s, ST_WAIT_MS);
    cr_assert(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    err = st_sup_output(&s, "err");
    cr_assert(strstr(err, "drain timeout") == NULL, "%s", err);
    free(err);
}
