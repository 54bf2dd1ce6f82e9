/* External applications (src/app_exec.c): real programs served by a node
 * in this process and called from a second node over a unix socket, so
 * that the sanitizers watch app_exec.c; then `shoal node --exec` itself. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "integration/harness.h"
#include "shoal.h"

#define T_TIMEOUT 40

#define ECHO_PY "python3 " SHOAL_SOURCE_DIR "/workers/py/echo.py"
#define SHA256_SH "sh " SHOAL_SOURCE_DIR "/workers/sh/sha256.sh"
#define TESTAPP                                                               \
    "python3 " SHOAL_SOURCE_DIR "/tests/integration/programs/exec_testapp.py"

TestSuite(exec, .init = h_init, .fini = h_fini, .timeout = T_TIMEOUT);

/* ---- a server node hosting programs, a client node calling it --------- */

typedef struct {
    uv_loop_t loop;
    shoal_node_t server;
    shoal_node_t client;
    shoal_conn_t *conn;
    uv_timer_t watchdog;
    bool connected;
    bool timed_out;
    bool server_closing;
    int nodes_closed;
    int answers; /* replies received so far */
    int saved_stderr;
    char dir[64];
    char url[160];
} fx_t;

typedef struct {
    fx_t *f;
    int status;
    int seq;      /* the order it arrived in, from 1 */
    char *result; /* JSON text */
    char code[SHOAL_MAX_NAME_BYTES + 1];
    char message[512];
} reply_t;

static void fx_connect_cb(shoal_conn_t *conn, int status, void *data)
{
    fx_t *f = data;

    (void)conn;
    cr_assert_eq(status, 0, "connect: %s", shoal_strerror(status));
    f->connected = true;
}

static void fx_watchdog_cb(uv_timer_t *timer)
{
    ((fx_t *)timer->data)->timed_out = true;
}

/* Runs the loop until *count reaches want; fails past H_WAIT_MS. */
static void fx_run_until(fx_t *f, const int *count, int want)
{
    f->timed_out = false;
    uv_timer_start(&f->watchdog, fx_watchdog_cb, H_WAIT_MS, 0);
    while (*count < want && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->watchdog);
    cr_assert_geq(*count, want, "timed out: %d of %d", *count, want);
}

/* The node's and the programs' stderr go to DIR/stderr.log. */
static char *fx_stderr(const fx_t *f)
{
    char path[128], *text;
    long len;
    FILE *fp;

    snprintf(path, sizeof(path), "%s/stderr.log", f->dir);
    fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    text = calloc(1, (size_t)len + 1);
    cr_assert_eq(fread(text, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    return text;
}

static void fx_start(fx_t *f, shoal_framing_t framing, size_t max_line_bytes)
{
    shoal_node_opts_t server_opts, client_opts;
    shoal_conn_opts_t conn_opts;
    char path[128];
    int fd;
    bool connected;

    memset(f, 0, sizeof(*f));
    h_tmpdir(f->dir);
    snprintf(path, sizeof(path), "%s/stderr.log", f->dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    f->saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->watchdog);
    f->watchdog.data = f;

    memset(&server_opts, 0, sizeof(server_opts));
    server_opts.name = "server";
    server_opts.limits.max_line_bytes = max_line_bytes;
    cr_assert_eq(shoal_node_init(&f->loop, &f->server, &server_opts), 0);
    f->server.data = f;
    snprintf(f->url, sizeof(f->url), "unix://%s/s.sock", f->dir);
    cr_assert_eq(shoal_node_listen(&f->server, f->url), 0);

    memset(&client_opts, 0, sizeof(client_opts));
    client_opts.name = "client";
    client_opts.framing = framing;
    cr_assert_eq(shoal_node_init(&f->loop, &f->client, &client_opts), 0);
    f->client.data = f;
    memset(&conn_opts, 0, sizeof(conn_opts));
    cr_assert_eq(shoal_node_connect(&f->client, f->url, &conn_opts,
                                    fx_connect_cb, f, &f->conn),
                 0);
    f->timed_out = false;
    uv_timer_start(&f->watchdog, fx_watchdog_cb, H_WAIT_MS, 0);
    while (!f->connected && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->watchdog);
    connected = f->connected;
    cr_assert(connected, "the client did not connect");
}

static void fx_add(fx_t *f, const char *name, const char *command)
{
    char err[512] = "";

    cr_assert_eq(
        shoal_node_add_exec_app(&f->server, name, command, err, sizeof(err)),
        0, "%s", err);
}

static void fx_node_closed_cb(shoal_node_t *node)
{
    ((fx_t *)node->data)->nodes_closed++;
}

static void fx_close_server(fx_t *f)
{
    f->server_closing = true;
    shoal_node_close(&f->server, fx_node_closed_cb);
}

/* Closes both nodes and runs the loop until every program has ended (at
 * worst SIGKILL two grace periods after stdin closed): a handle left open
 * fails the test. */
static void fx_stop(fx_t *f)
{
    shoal_node_close(&f->client, fx_node_closed_cb);
    if (!f->server_closing)
        fx_close_server(f);
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    cr_assert_eq(f->nodes_closed, 2);
    cr_assert_eq(uv_loop_close(&f->loop), 0, "a handle was left open");
    dup2(f->saved_stderr, 2);
    close(f->saved_stderr);
    h_tmpdir_remove(f->dir);
}

static void fx_reply_cb(const shoal_reply_t *r, void *data)
{
    reply_t *out = data;

    out->status = r->status;
    out->seq = ++out->f->answers;
    if (r->status == 0) {
        cJSON *json = shoal_payload_to_cjson(&r->result);
        out->result = json ? cJSON_PrintUnformatted(json) : strdup("?");
        cJSON_Delete(json);
        return;
    }
    snprintf(out->message, sizeof(out->message), "%s", r->message);
    if (r->error.data != NULL) {
        shoal_name_t name;
        shoal_wire_decode_error(&r->error, &name, NULL, 0);
        snprintf(out->code, sizeof(out->code), "%s", name.s);
    } else {
        snprintf(out->code, sizeof(out->code), "%s",
                 shoal_err_name(r->status));
    }
}

/* Sends a call with args as JSON text (NULL: none). */
static void fx_call(fx_t *f, const char *app, const char *action,
                    const char *args, reply_t *r)
{
    shoal_payload_t payload = {args, args ? strlen(args) : 0,
                               SHOAL_CODEC_JSON};

    memset(r, 0, sizeof(*r));
    r->f = f;
    cr_assert_eq(shoal_conn_call(f->conn, app, action, args ? &payload : NULL,
                                 0, fx_reply_cb, r),
                 0);
}

/* Calls and waits for the reply. */
static void fx_call_wait(fx_t *f, const char *app, const char *action,
                         const char *args, reply_t *r)
{
    int want = f->answers + 1;

    fx_call(f, app, action, args, r);
    fx_run_until(f, &f->answers, want);
}

static void reply_free(reply_t *r)
{
    free(r->result);
    r->result = NULL;
}

static void assert_result(reply_t *r, const char *json)
{
    cr_assert_eq(r->status, 0, "error %s: %s", r->code, r->message);
    cr_assert_str_eq(r->result, json);
    reply_free(r);
}

static void assert_error(reply_t *r, int status, const char *message)
{
    cr_assert_eq(r->status, status, "status %d (%s: %s), want %d", r->status,
                 r->code, r->message, status);
    if (message != NULL)
        cr_assert_str_eq(r->message, message);
    reply_free(r);
}

static void fx_tell(fx_t *f, const char *app, const char *msg)
{
    shoal_payload_t payload = {msg, strlen(msg), SHOAL_CODEC_JSON};

    cr_assert_eq(shoal_conn_tell(f->conn, app, &payload), 0);
}

static void describe_cb(const shoal_reply_t *r, void *data)
{
    reply_t *out = data;

    out->status = r->status;
    out->seq = ++out->f->answers;
    if (r->status == 0) {
        cJSON *json = shoal_payload_to_cjson(&r->result);
        out->result = cJSON_PrintUnformatted(json);
        cJSON_Delete(json);
    }
}

/* The description of app from the server's node description. */
static cJSON *fx_describe_app(fx_t *f, const char *app)
{
    int want = f->answers + 1;
    const cJSON *item;
    cJSON *desc, *found = NULL;
    reply_t r;

    memset(&r, 0, sizeof(r));
    r.f = f;
    cr_assert_eq(shoal_conn_describe(f->conn, 0, describe_cb, &r), 0);
    fx_run_until(f, &f->answers, want);
    cr_assert_eq(r.status, 0);
    desc = cJSON_Parse(r.result);
    reply_free(&r);
    cJSON_ArrayForEach(item, cJSON_GetObjectItem(desc, "applications"))
    {
        if (strcmp(h_str(item, "name"), app) == 0)
            found = cJSON_Duplicate(item, 1);
    }
    cJSON_Delete(desc);
    cr_assert_not_null(found, "no application %s", app);
    return found;
}

/* ---- tests ------------------------------------------------------------ */

static void check_echo_py(shoal_framing_t framing)
{
    fx_t f;
    reply_t r;
    cJSON *app;

    fx_start(&f, framing, 0);
    fx_add(&f, "echo", ECHO_PY);
    fx_call_wait(&f, "echo", "echo", "{\"a\":[1,\"\\u00e9\",null],\"b\":true}",
                 &r);
    assert_result(&r, "{\"a\":[1,\"\xc3\xa9\",null],\"b\":true}");
    fx_call_wait(&f, "echo", "echo", NULL, &r);
    assert_result(&r, "null");
    fx_call_wait(&f, "echo", "upper", "\"abc\"", &r);
    assert_result(&r, "\"ABC\"");
    fx_call_wait(&f, "echo", "sum", "[1, 2, 3.5]", &r);
    assert_result(&r, "6.5");
    fx_call_wait(&f, "echo", "fail",
                 "{\"code\":\"EMINE\",\"message\":\"no luck\"}", &r);
    cr_assert_str_eq(r.code, "EMINE");
    assert_error(&r, SHOAL_EREMOTE, "no luck");
    fx_call_wait(&f, "echo", "fail", NULL, &r);
    assert_error(&r, SHOAL_EAPPFAILED, "failed on demand");
    /* The hello line came before the first reply: the node now knows the
     * actions and answers for the others itself. */
    fx_call_wait(&f, "echo", "nope", "1", &r);
    assert_error(&r, SHOAL_ENOACTION,
                 "application 'echo' has no action "
                 "'nope'");
    app = fx_describe_app(&f, "echo");
    cr_assert(h_json_eq(app, "actions",
                        "[\"echo\",\"upper\",\"sum\",\"fail\",\"count\"]"));
    cr_assert_str_eq(h_str(app, "description.language"), "python");
    cr_assert_str_eq(h_str(app, "description.exec"), ECHO_PY);
    cJSON_Delete(app);
    fx_stop(&f);
}

Test(exec, python_program_answers_calls_in_msgpack_and_json,
     .timeout = T_TIMEOUT)
{
    check_echo_py(SHOAL_FRAMING_MSGPACK);
    check_echo_py(SHOAL_FRAMING_NDJSON);
}

Test(exec, tells_reach_the_program_in_order_with_calls, .timeout = T_TIMEOUT)
{
    fx_t f;
    reply_t r;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "echo", ECHO_PY);
    for (int i = 0; i < 5; i++)
        fx_tell(&f, "echo", "{\"word\":\"w\"}");
    fx_call_wait(&f, "echo", "count", NULL, &r);
    assert_result(&r, "5");
    fx_stop(&f);
}

Test(exec, concurrent_calls_are_matched_by_id_in_any_order,
     .timeout = T_TIMEOUT)
{
    enum { HELD = 100, ECHOES = 10 };
    reply_t held[HELD], echoes[ECHOES], release;
    char args[32], want[32];
    fx_t f;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "t", TESTAPP);
    for (int i = 0; i < HELD; i++) {
        snprintf(args, sizeof(args), "%d", i);
        fx_call(&f, "t", "hold", args, &held[i]);
        if (i % 10 == 0) {
            snprintf(args, sizeof(args), "\"e%d\"", i);
            fx_call(&f, "t", "echo", args, &echoes[i / 10]);
        }
    }
    /* Held calls do not stop the program from answering others. */
    fx_run_until(&f, &f.answers, ECHOES);
    for (int i = 0; i < ECHOES; i++) {
        snprintf(want, sizeof(want), "\"e%d\"", i * 10);
        assert_result(&echoes[i], want);
    }
    fx_call(&f, "t", "release", NULL, &release);
    fx_run_until(&f, &f.answers, ECHOES + HELD + 1);
    /* Answered newest first, each to its own caller. */
    cr_assert_lt(held[HELD - 1].seq, held[0].seq);
    for (int i = 0; i < HELD; i++) {
        snprintf(want, sizeof(want), "%d", i);
        assert_result(&held[i], want);
    }
    snprintf(want, sizeof(want), "%d", HELD);
    assert_result(&release, want);
    fx_stop(&f);
}

Test(exec, program_that_exits_fails_its_calls_and_restarts,
     .timeout = T_TIMEOUT)
{
    reply_t pid1, pid2, held[3], exit_call;
    fx_t f;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "t", TESTAPP);
    fx_call_wait(&f, "t", "pid", NULL, &pid1);
    for (int i = 0; i < 3; i++)
        fx_call(&f, "t", "hold", "0", &held[i]);
    fx_call(&f, "t", "exit", "{\"status\":3}", &exit_call);
    fx_run_until(&f, &f.answers, 5);
    for (int i = 0; i < 3; i++)
        assert_error(&held[i], SHOAL_EAPPFAILED,
                     "program exited with status 3");
    assert_error(&exit_call, SHOAL_EAPPFAILED, "program exited with status 3");
    /* The next call starts a new program. */
    fx_call_wait(&f, "t", "pid", NULL, &pid2);
    cr_assert_eq(pid2.status, 0, "%s", pid2.message);
    cr_assert_str_neq(pid1.result, pid2.result);
    reply_free(&pid1);
    reply_free(&pid2);
    fx_stop(&f);
}

Test(exec, program_killed_by_a_signal_is_reported_so_and_restarts,
     .timeout = T_TIMEOUT)
{
    fx_t f;
    reply_t r;

    fx_start(&f, SHOAL_FRAMING_NDJSON, 0);
    /* exec: no shell in between, the program itself is the child. */
    fx_add(&f, "t", "exec " TESTAPP);
    fx_call_wait(&f, "t", "abort", NULL, &r);
    assert_error(&r, SHOAL_EAPPFAILED, "program killed by signal 6");
    fx_call_wait(&f, "t", "echo", "[1]", &r);
    assert_result(&r, "[1]");
    fx_stop(&f);
}

Test(exec, crash_looping_program_fails_each_call_without_hanging,
     .timeout = T_TIMEOUT)
{
    fx_t f;
    reply_t r;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "bad", "echo 'bad: giving up' >&2; exit 7");
    /* Each call starts it again, later each time (bounded backoff). */
    for (int i = 0; i < 3; i++) {
        fx_call_wait(&f, "bad", "anything", NULL, &r);
        assert_error(&r, SHOAL_EAPPFAILED, "program exited with status 7");
    }
    fx_stop(&f);
}

Test(exec, invalid_lines_are_reported_and_dropped, .timeout = T_TIMEOUT)
{
    reply_t pid1, pid2, r;
    char *log;
    fx_t f;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "t", TESTAPP);
    fx_call_wait(&f, "t", "pid", NULL, &pid1);
    fx_call_wait(&f, "t", "garbage", NULL, &r);
    assert_result(&r, "\"ok\"");
    /* The same program still runs. */
    fx_call_wait(&f, "t", "pid", NULL, &pid2);
    cr_assert_str_eq(pid1.result, pid2.result);
    reply_free(&pid1);
    reply_free(&pid2);
    log = fx_stderr(&f);
    cr_assert_not_null(strstr(log, "application 't': the program wrote "
                                   "invalid JSON"),
                       "%s", log);
    cr_assert_not_null(strstr(log, "line dropped: this is not json"), "%s",
                       log);
    cr_assert_not_null(strstr(log, "a reply to unknown id 987654"), "%s", log);
    free(log);
    fx_stop(&f);
}

Test(exec, line_over_the_limit_kills_the_program_and_the_next_call_works,
     .timeout = T_TIMEOUT)
{
    fx_t f;
    reply_t r;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 4096);
    fx_add(&f, "t", TESTAPP);
    fx_call_wait(&f, "t", "big", "{\"bytes\":100000}", &r);
    assert_error(&r, SHOAL_EAPPFAILED,
                 "program wrote a line over 4096 bytes and was killed");
    fx_call_wait(&f, "t", "echo", "\"again\"", &r);
    assert_result(&r, "\"again\"");
    fx_stop(&f);
}

Test(exec, calls_past_the_in_flight_bound_get_eoverloaded,
     .timeout = T_TIMEOUT)
{
    enum { BOUND = 1024, EXTRA = 5 };
    static reply_t held[BOUND], extra[EXTRA];
    char args[32];
    fx_t f;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "t", TESTAPP);
    for (int i = 0; i < BOUND; i++) {
        snprintf(args, sizeof(args), "%d", i);
        fx_call(&f, "t", "hold", args, &held[i]);
    }
    for (int i = 0; i < EXTRA; i++)
        fx_call(&f, "t", "hold", "-1", &extra[i]);
    fx_run_until(&f, &f.answers, EXTRA);
    for (int i = 0; i < EXTRA; i++)
        assert_error(&extra[i], SHOAL_EOVERLOADED,
                     "application 't': 1024 calls already wait for its "
                     "program");
    /* A tell is not a call: it still goes through, and releases them. */
    fx_tell(&f, "t", "\"release\"");
    fx_run_until(&f, &f.answers, EXTRA + BOUND);
    for (int i = 0; i < BOUND; i++) {
        snprintf(args, sizeof(args), "%d", i);
        assert_result(&held[i], args);
    }
    fx_stop(&f);
}

Test(exec, closing_the_node_answers_calls_and_kills_a_stubborn_program,
     .timeout = T_TIMEOUT)
{
    reply_t pid, held;
    uint64_t start;
    int child;
    fx_t f;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "stub", "exec " TESTAPP " --stubborn");
    fx_call_wait(&f, "stub", "pid", NULL, &pid);
    cr_assert_eq(pid.status, 0);
    child = atoi(pid.result);
    reply_free(&pid);
    fx_call(&f, "stub", "hold", "0", &held);
    /* Answered after the hold was written to the program. */
    fx_call_wait(&f, "stub", "echo", "1", &pid);
    assert_result(&pid, "1");
    start = uv_hrtime();
    fx_close_server(&f);
    fx_run_until(&f, &f.answers, 3);
    assert_error(&held, SHOAL_ESTOPPING,
                 "application 'stub' is shutting down");
    /* It ignores the end of its input and SIGTERM: SIGKILL ends it. */
    fx_stop(&f);
    cr_assert_geq((uv_hrtime() - start) / 1000000, 1500,
                  "stopped before SIGKILL was due");
    cr_assert_eq(kill(child, 0), -1, "pid %d still runs", child);
    cr_assert_eq(errno, ESRCH);
}

Test(exec, removing_the_app_answers_its_calls_and_stops_the_program,
     .timeout = T_TIMEOUT)
{
    reply_t held[2], after;
    fx_t f;

    fx_start(&f, SHOAL_FRAMING_MSGPACK, 0);
    fx_add(&f, "t", TESTAPP);
    fx_call(&f, "t", "hold", "0", &held[0]);
    fx_call(&f, "t", "hold", "1", &held[1]);
    fx_call_wait(&f, "t", "echo", "0", &after);
    assert_result(&after, "0");
    /* The calls are answered from inside the app's on_close: the last
     * answer must not free the registry's record under app.c's feet. */
    cr_assert_eq(shoal_node_remove_app(&f.server, "t"), 0);
    fx_run_until(&f, &f.answers, 3);
    assert_error(&held[0], SHOAL_ESTOPPING,
                 "application 't' is shutting down");
    assert_error(&held[1], SHOAL_ESTOPPING, NULL);
    fx_call_wait(&f, "t", "echo", "0", &after);
    assert_error(&after, SHOAL_ENOAPP, NULL);
    /* Added again under the same name: a new program. */
    fx_add(&f, "t", TESTAPP);
    fx_call_wait(&f, "t", "echo", "2", &after);
    assert_result(&after, "2");
    fx_stop(&f);
}

/* ---- through the shoal command ---------------------------------------- */

Test(exec, cli_exec_names_apps_and_serves_them, .timeout = T_TIMEOUT)
{
    static const char *const args[] = {
        "--name",  "ex",     "--listen",    "tcp://127.0.0.1:0",
        "--quiet", "--exec", "py=" ECHO_PY, "--exec",
        ECHO_PY,   "--exec", SHA256_SH,     NULL};
    char file[128], call[256];
    h_node_t node;
    h_conn_t c;
    cJSON *reply;
    FILE *fp;

    memset(&node, 0, sizeof(node));
    cr_assert_eq(h_node_spawn(&node, args), 0, "did not start: %s",
                 h_node_stderr(&node));
    snprintf(file, sizeof(file), "%s/abc.txt", node.dir);
    fp = fopen(file, "w");
    cr_assert_not_null(fp);
    fputs("abc", fp);
    fclose(fp);

    h_conn_open(&c, node.tcp_url, H_NDJSON);
    reply = h_call(&c, "{\"type\":\"call\",\"id\":1,\"app\":\"py\","
                       "\"action\":\"upper\",\"args\":\"x\"}");
    cr_assert(h_json_eq(reply, "result", "\"X\""));
    cJSON_Delete(reply);
    reply = h_call(&c, "{\"type\":\"call\",\"id\":2,\"app\":\"echo\","
                       "\"action\":\"sum\",\"args\":[2,3]}");
    cr_assert(h_json_eq(reply, "result", "5"));
    cJSON_Delete(reply);
    snprintf(call, sizeof(call),
             "{\"type\":\"call\",\"id\":3,\"app\":\"sha256\","
             "\"action\":\"sha256\",\"args\":{\"path\": \"%s\"}}",
             file);
    reply = h_call(&c, call);
    cr_assert(h_json_eq(reply, "result",
                        "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb"
                        "410ff61f20015ad\""));
    cJSON_Delete(reply);
    reply =
        h_call(&c, "{\"type\":\"call\",\"id\":4,\"app\":\"sha256\","
                   "\"action\":\"sha256\",\"args\":{\"path\":\"a\\\"b\"}}");
    cr_assert_str_eq(h_str(reply, "error.code"), "EBADTYPE");
    cJSON_Delete(reply);
    h_conn_close(&c);
    h_node_stop(&node);
}

Test(exec, cli_exec_without_a_name_is_a_usage_error, .timeout = T_TIMEOUT)
{
    h_run_t run;

    h_run_shoal((const char *const[]){"node", "--exec", "  ", NULL}, &run);
    cr_assert_eq(run.exit_code, 2, "exit %d: %s", run.exit_code, run.err);
    cr_assert_not_null(strstr(run.err, "no application name"), "%s", run.err);
    h_run_free(&run);
    h_run_shoal((const char *const[]){"node", "--exec", "py=", NULL}, &run);
    cr_assert_eq(run.exit_code, 2, "exit %d: %s", run.exit_code, run.err);
    cr_assert_not_null(strstr(run.err, "no application name"), "%s", run.err);
    h_run_free(&run);
}
