/* Two nodes in one loop, through the public API: calls answered now and
 * later, time-outs, closes with calls in flight, events both ways, framings
 * and back-pressure. Every test closes both nodes and the loop clean. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "internal.h"
#include "shoal.h"

#define T_TIMEOUT 30
/* The longest a single wait may take before the test fails. */
#define WAIT_MS 10000
#define MAX_KEPT 64
/* Back-pressure: a small high-water mark and results far bigger than the
 * socket buffers between the nodes. */
#define BP_HIGH_WATER ((size_t)64 << 10)
#define BP_RESULT_BYTES ((size_t)16 << 10)
#define BP_CALLS 256

/* A peer that closed must cost a write error, not the test process. */
static void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

static void remove_socket_dir(void);

TestSuite(node, .init = ignore_sigpipe, .fini = remove_socket_dir,
          .timeout = T_TIMEOUT);

/* What one call's callback saw. */
typedef struct {
    int n; /* times the callback ran */
    int status;
    int64_t id;
    char result[8192]; /* as JSON text */
    char code[SHOAL_MAX_NAME_BYTES + 1];
    char message[256];
    bool later_had_fired; /* the server's timer ran before the reply */
} rec_t;

typedef struct {
    char name[64];
    char data[256]; /* JSON text, "" when absent */
    shoal_conn_t *conn;
} event_rec_t;

static struct {
    uv_loop_t loop;
    uv_timer_t guard; /* ends a wait that takes too long */
    bool guard_fired;
    shoal_node_t server, client;
    bool server_closing, client_closing;
    bool server_closed, client_closed;
    char dir[64];
    char url[160];

    shoal_conn_t *conn;     /* the client's connection */
    shoal_conn_t *srv_conn; /* the server's side of it */
    bool connected;
    int connect_status;
    int conn_closes;
    int conn_close_status;
    int srv_conn_closes;
    int srv_hellos;

    shoal_call_t *kept[MAX_KEPT]; /* calls the server holds */
    size_t n_kept;
    bool later_fired;
    uv_timer_t later_timer;
    shoal_call_t *later_call;
    int tells;
    char tell_msg[256];

    event_rec_t srv_events[8];
    int n_srv_events;
    event_rec_t cli_events[8];
    int n_cli_events;

    size_t bp_served;
    size_t bp_max_queue;
    size_t bp_done;
    size_t bp_failed;
} fx;

/* ---- loop helpers ----------------------------------------------------- */

static void guard_cb(uv_timer_t *timer)
{
    (void)timer;
    fx.guard_fired = true;
}

/* Runs the loop (mode UV_RUN_ONCE or UV_RUN_NOWAIT) until cond holds, for
 * at most WAIT_MS. */
#define RUN_UNTIL_MODE(cond, mode)                                            \
    do {                                                                      \
        fx.guard_fired = false;                                               \
        uv_timer_start(&fx.guard, guard_cb, WAIT_MS, 0);                      \
        while (!(cond) && !fx.guard_fired)                                    \
            uv_run(&fx.loop, mode);                                           \
        uv_timer_stop(&fx.guard);                                             \
        cr_assert(cond, "waited %d ms for: %s", WAIT_MS, #cond);              \
    } while (0)

#define RUN_UNTIL(cond) RUN_UNTIL_MODE(cond, UV_RUN_ONCE)
/* For a state the loop reaches just before it blocks in poll (the flusher
 * runs in the prepare phase): turns that never block. */
#define SPIN_UNTIL(cond) RUN_UNTIL_MODE(cond, UV_RUN_NOWAIT)

/* JSON text of a payload in either codec (truncated to cap - 1). */
static void payload_text(const shoal_payload_t *p, char *out, size_t cap)
{
    shoal_buf_t buf;

    out[0] = '\0';
    if (p->data == NULL)
        return;
    shoal_buf_init(&buf);
    cr_assert_eq(shoal_wire_transcode(p, SHOAL_CODEC_JSON, &buf), 0);
    snprintf(out, cap, "%.*s", (int)buf.len, buf.base);
    shoal_buf_free(&buf);
}

/* Two JSON texts hold the same value. */
static bool json_eq(const char *a, const char *b)
{
    cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
    bool eq = ja != NULL && jb != NULL && cJSON_Compare(ja, jb, true);

    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return eq;
}

static const shoal_payload_t *json_payload(const char *text)
{
    static shoal_payload_t p;

    p.data = text;
    p.len = strlen(text);
    p.codec = SHOAL_CODEC_JSON;
    return &p;
}

static void rec_cb(const shoal_reply_t *reply, void *data)
{
    rec_t *r = data;

    r->n++;
    r->status = reply->status;
    r->id = reply->id;
    r->later_had_fired = fx.later_fired;
    snprintf(r->message, sizeof(r->message), "%s", reply->message);
    if (reply->status == 0) {
        payload_text(&reply->result, r->result, sizeof(r->result));
    } else if (reply->error.data != NULL) {
        shoal_name_t name;
        char message[256];
        shoal_wire_decode_error(&reply->error, &name, message,
                                sizeof(message));
        snprintf(r->code, sizeof(r->code), "%s", name.s);
    }
}

/* ---- the server's application ---------------------------------------- */

static void math_add(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call), *item;
    double total = 0;
    char text[64];

    (void)data;
    cJSON_ArrayForEach(item, args) total += item->valuedouble;
    snprintf(text, sizeof(text), "%g", total);
    shoal_call_reply_json(call, text);
}

static void math_echo(shoal_call_t *call, void *data)
{
    (void)data;
    shoal_call_reply(call, shoal_call_args(call));
}

static void later_timer_cb(uv_timer_t *timer)
{
    (void)timer;
    fx.later_fired = true;
    shoal_call_reply_json(fx.later_call, "7");
    fx.later_call = NULL;
}

static void math_later(shoal_call_t *call, void *data)
{
    (void)data;
    fx.later_call = call;
    uv_timer_start(&fx.later_timer, later_timer_cb, 20, 0);
}

static void math_keep(shoal_call_t *call, void *data)
{
    (void)data;
    cr_assert_lt(fx.n_kept, MAX_KEPT);
    fx.kept[fx.n_kept++] = call;
}

static void math_big(shoal_call_t *call, void *data)
{
    static char *text;
    shoal_conn_t *conn = shoal_call_conn(call);
    size_t queued;

    (void)data;
    if (text == NULL) {
        text = malloc(BP_RESULT_BYTES + 3);
        cr_assert_not_null(text);
        memset(text, 'b', BP_RESULT_BYTES + 2);
        text[0] = text[BP_RESULT_BYTES + 1] = '"';
        text[BP_RESULT_BYTES + 2] = '\0';
    }
    cr_assert_eq(shoal_call_reply_json(call, text), 0);
    fx.bp_served++;
    queued = shoal_conn_write_queue_bytes(conn);
    if (queued > fx.bp_max_queue)
        fx.bp_max_queue = queued;
    if (fx.bp_served == BP_CALLS) {
        free(text);
        text = NULL;
    }
}

static void math_tell(shoal_node_t *node, shoal_conn_t *from,
                      const shoal_payload_t *msg, void *data)
{
    (void)node;
    (void)data;
    cr_assert_eq(from, fx.srv_conn);
    fx.tells++;
    payload_text(msg, fx.tell_msg, sizeof(fx.tell_msg));
}

static const shoal_action_t math_actions[] = {
    {"add", math_add},   {"echo", math_echo}, {"later", math_later},
    {"keep", math_keep}, {"big", math_big},
};

/* ---- events ----------------------------------------------------------- */

static void event_record(event_rec_t *rec, shoal_conn_t *conn,
                         const char *event, const shoal_payload_t *data)
{
    snprintf(rec->name, sizeof(rec->name), "%s", event);
    payload_text(data, rec->data, sizeof(rec->data));
    rec->conn = conn;
}

/* The server answers a ping with a pong carrying the same data. */
static void srv_event_cb(shoal_node_t *node, shoal_conn_t *conn,
                         const char *event, const shoal_payload_t *data,
                         void *user)
{
    (void)node;
    (void)user;
    cr_assert_lt(fx.n_srv_events, 8);
    event_record(&fx.srv_events[fx.n_srv_events++], conn, event, data);
    /* Answered only once the client has spoken: until then the server
     * does not know the connection's framing. */
    if (strcmp(event, "ping") == 0) {
        cr_assert_eq(shoal_conn_emit(conn, "ignored", NULL), 0);
        cr_assert_eq(shoal_conn_emit(conn, "pong", data->data ? data : NULL),
                     0);
    }
}

static void cli_event_cb(shoal_node_t *node, shoal_conn_t *conn,
                         const char *event, const shoal_payload_t *data,
                         void *user)
{
    (void)node;
    (void)user;
    cr_assert_lt(fx.n_cli_events, 8);
    event_record(&fx.cli_events[fx.n_cli_events++], conn, event, data);
}

/* ---- set-up and tear-down --------------------------------------------- */

static void srv_accept_cb(shoal_node_t *node, shoal_conn_t *conn, void *data)
{
    (void)node;
    (void)data;
    cr_assert_null(fx.srv_conn, "one connection expected");
    fx.srv_conn = conn;
}

static void srv_hello_cb(shoal_node_t *node, shoal_conn_t *conn,
                         const shoal_payload_t *desc, void *data)
{
    char text[8192];

    (void)node;
    (void)data;
    cr_assert_eq(conn, fx.srv_conn);
    payload_text(desc, text, sizeof(text));
    cr_assert_not_null(strstr(text, "\"name\":\"client\""), "%s", text);
    fx.srv_hellos++;
}

static void srv_conn_close_cb(shoal_node_t *node, shoal_conn_t *conn,
                              int status, void *data)
{
    (void)node;
    (void)data;
    (void)status;
    if (conn == fx.srv_conn) {
        fx.srv_conn = NULL;
        fx.srv_conn_closes++;
    }
}

static void connect_cb(shoal_conn_t *conn, int status, void *data)
{
    (void)data;
    fx.connected = true;
    fx.connect_status = status;
    if (status < 0)
        fx.conn = NULL;
    else
        cr_assert_eq(conn, fx.conn);
}

static void conn_close_cb(shoal_conn_t *conn, int status, void *data)
{
    (void)data;
    cr_assert_eq(conn, fx.conn);
    fx.conn_closes++;
    fx.conn_close_status = status;
    fx.conn = NULL;
}

typedef struct {
    shoal_framing_t framing; /* the client's */
    bool over_unix;
    bool hello;
    size_t high_water; /* the server's; 0: default */
} fx_opts_t;

static void fx_start(const fx_opts_t *o)
{
    static const shoal_app_opts_t math = {
        .name = "math",
        .description = "{\"summary\":\"arithmetic for tests\"}",
        .actions = math_actions,
        .n_actions = sizeof(math_actions) / sizeof(math_actions[0]),
        .on_tell = math_tell,
    };
    static const shoal_node_hooks_t hooks = {
        .on_accept = srv_accept_cb,
        .on_hello = srv_hello_cb,
        .on_conn_close = srv_conn_close_cb,
    };
    shoal_node_opts_t sopts, copts;
    shoal_conn_opts_t conn_opts;
    char listen[128];

    memset(&fx, 0, sizeof(fx));
    cr_assert_eq(uv_loop_init(&fx.loop), 0);
    uv_timer_init(&fx.loop, &fx.guard);
    uv_timer_init(&fx.loop, &fx.later_timer);

    memset(&sopts, 0, sizeof(sopts));
    sopts.name = "server";
    sopts.write_high_water_bytes = o->high_water;
    cr_assert_eq(shoal_node_init(&fx.loop, &fx.server, &sopts), 0);
    cr_assert_eq(shoal_node_add_hooks(&fx.server, &hooks), 0);
    cr_assert_eq(shoal_node_add_app(&fx.server, &math), 0);
    cr_assert_eq(shoal_node_add_app(&fx.server, &math), SHOAL_EEXIST);
    if (o->over_unix) {
        snprintf(fx.dir, sizeof(fx.dir), "/tmp/shoal-unit-XXXXXX");
        cr_assert_not_null(mkdtemp(fx.dir));
        snprintf(listen, sizeof(listen), "unix://%s/s.sock", fx.dir);
    } else {
        snprintf(listen, sizeof(listen), "tcp://127.0.0.1:0");
    }
    cr_assert_eq(shoal_node_listen(&fx.server, listen), 0);
    snprintf(fx.url, sizeof(fx.url), "%s", shoal_node_address(&fx.server, 0));
    if (!o->over_unix)
        cr_assert_str_neq(fx.url, "tcp://127.0.0.1:0");

    memset(&copts, 0, sizeof(copts));
    copts.name = "client";
    copts.framing = o->framing;
    cr_assert_eq(shoal_node_init(&fx.loop, &fx.client, &copts), 0);
    memset(&conn_opts, 0, sizeof(conn_opts));
    conn_opts.hello = o->hello;
    conn_opts.on_close = conn_close_cb;
    cr_assert_eq(shoal_node_connect(&fx.client, fx.url, &conn_opts, connect_cb,
                                    NULL, &fx.conn),
                 0);
    cr_assert_not_null(fx.conn);
    RUN_UNTIL(fx.connected);
    cr_assert_eq(fx.connect_status, 0, "%s",
                 shoal_strerror(fx.connect_status));
    RUN_UNTIL(fx.srv_conn != NULL);
}

static void fx_start_default(void)
{
    fx_opts_t o = {.framing = SHOAL_FRAMING_MSGPACK};

    fx_start(&o);
}

static void server_closed_cb(shoal_node_t *node)
{
    cr_assert_eq(node, &fx.server);
    fx.server_closed = true;
}

static void client_closed_cb(shoal_node_t *node)
{
    cr_assert_eq(node, &fx.client);
    fx.client_closed = true;
}

static void close_client(void)
{
    if (!fx.client_closing)
        shoal_node_close(&fx.client, client_closed_cb);
    fx.client_closing = true;
}

/* Answers what the server still holds, closes both nodes and every
 * handle, and asserts that nothing is left on the loop. */
static void fx_finish(void)
{
    for (size_t i = 0; i < fx.n_kept; i++)
        if (fx.kept[i] != NULL)
            shoal_call_reply_json(fx.kept[i], "null");
    fx.n_kept = 0;
    close_client();
    shoal_node_close(&fx.server, server_closed_cb);
    RUN_UNTIL(fx.server_closed && fx.client_closed);
    uv_close((uv_handle_t *)&fx.guard, NULL);
    uv_close((uv_handle_t *)&fx.later_timer, NULL);
    /* Only close callbacks are left: a few turns run them all. */
    for (int i = 0; i < 16 && uv_loop_alive(&fx.loop); i++)
        uv_run(&fx.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&fx.loop), 0, "a handle was left open");
    if (fx.dir[0] != '\0') {
        char path[128];
        snprintf(path, sizeof(path), "%s/s.sock", fx.dir);
        cr_assert_neq(access(path, F_OK), 0, "socket file left behind");
        rmdir(fx.dir);
        fx.dir[0] = '\0';
    }
}

/* A failed test skips fx_finish: its socket folder goes here. */
static void remove_socket_dir(void)
{
    char path[128];

    if (fx.dir[0] == '\0')
        return;
    snprintf(path, sizeof(path), "%s/s.sock", fx.dir);
    unlink(path);
    rmdir(fx.dir);
    fx.dir[0] = '\0';
}

static shoal_node_counters_t counters(shoal_node_t *node)
{
    shoal_node_counters_t c;

    shoal_node_counters(node, &c);
    return c;
}

/* ---- calls ------------------------------------------------------------ */

static void check_call_in(shoal_framing_t framing, bool over_unix)
{
    fx_opts_t o = {.framing = framing, .over_unix = over_unix};
    rec_t add = {0}, echo = {0};

    fx_start(&o);
    cr_assert_eq(shoal_conn_call(fx.conn, "math", "add",
                                 json_payload("[1,2,39]"), 0, rec_cb, &add),
                 0);
    cr_assert_eq(shoal_conn_call(fx.conn, "math", "echo",
                                 json_payload("{\"s\":\"\\u00e9\",\"n\":"
                                              "[1,null,true]}"),
                                 0, rec_cb, &echo),
                 0);
    cr_assert_eq(shoal_conn_calls_in_flight(fx.conn), 2);
    RUN_UNTIL(add.n == 1 && echo.n == 1);
    cr_assert_eq(add.status, 0, "%s", add.message);
    cr_assert_str_eq(add.result, "42");
    cr_assert_eq(echo.status, 0, "%s", echo.message);
    cr_assert(json_eq(echo.result, "{\"s\":\"\xc3\xa9\",\"n\":[1,null,true]}"),
              "%s", echo.result);
    cr_assert_eq(shoal_conn_calls_in_flight(fx.conn), 0);
    /* The server speaks the framing the client chose. */
    cr_assert_eq(shoal_conn_framing(fx.srv_conn), framing);
    cr_assert_eq(counters(&fx.client).calls_made, 2);
    cr_assert_eq(counters(&fx.server).calls_served, 2);
    fx_finish();
}

Test(node, call_over_msgpack_returns_the_actions_result, .timeout = T_TIMEOUT)
{
    check_call_in(SHOAL_FRAMING_MSGPACK, false);
}

Test(node, call_over_ndjson_returns_the_actions_result, .timeout = T_TIMEOUT)
{
    check_call_in(SHOAL_FRAMING_NDJSON, false);
}

Test(node, call_over_json_socket_returns_the_actions_result,
     .timeout = T_TIMEOUT)
{
    check_call_in(SHOAL_FRAMING_JSONSOCKET, false);
}

Test(node, call_over_a_unix_socket_returns_the_actions_result,
     .timeout = T_TIMEOUT)
{
    check_call_in(SHOAL_FRAMING_MSGPACK, true);
}

Test(node, action_that_answers_after_a_timer_replies_later,
     .timeout = T_TIMEOUT)
{
    rec_t r = {0};

    fx_start_default();
    cr_assert_eq(
        shoal_conn_call(fx.conn, "math", "later", NULL, 0, rec_cb, &r), 0);
    RUN_UNTIL(r.n == 1);
    cr_assert_eq(r.status, 0, "%s", r.message);
    cr_assert_str_eq(r.result, "7");
    cr_assert(r.later_had_fired);
    fx_finish();
}

Test(node, call_that_times_out_fails_with_ETIMEDOUT_and_its_reply_is_dropped,
     .timeout = T_TIMEOUT)
{
    rec_t r = {0};

    fx_start_default();
    cr_assert_eq(
        shoal_conn_call(fx.conn, "math", "keep", NULL, 30, rec_cb, &r), 0);
    RUN_UNTIL(r.n == 1 && fx.n_kept == 1);
    cr_assert_eq(r.status, SHOAL_ETIMEDOUT, "%s", shoal_strerror(r.status));
    cr_assert_eq(shoal_conn_calls_in_flight(fx.conn), 0);
    /* The late answer still travels; nobody waits for it. */
    cr_assert_eq(shoal_call_reply_json(fx.kept[0], "42"), 0);
    fx.kept[0] = NULL;
    RUN_UNTIL(counters(&fx.client).replies_dropped == 1);
    cr_assert_eq(r.n, 1, "the callback ran again");
    /* The connection is still good. */
    {
        rec_t after = {0};
        cr_assert_eq(shoal_conn_call(fx.conn, "math", "add",
                                     json_payload("[1]"), 1000, rec_cb,
                                     &after),
                     0);
        RUN_UNTIL(after.n == 1);
        cr_assert_eq(after.status, 0);
    }
    fx_finish();
}

Test(node, server_closing_the_connection_fails_calls_in_flight_once,
     .timeout = T_TIMEOUT)
{
    rec_t r[3] = {{0}};

    fx_start_default();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(
            shoal_conn_call(fx.conn, "math", "keep", NULL, 0, rec_cb, &r[i]),
            0);
    RUN_UNTIL(fx.n_kept == 3);
    shoal_conn_close(fx.srv_conn);
    RUN_UNTIL(fx.conn_closes == 1 && fx.srv_conn_closes == 1);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(r[i].n, 1);
        cr_assert_eq(r[i].status, SHOAL_ECONNCLOSED, "%s",
                     shoal_strerror(r[i].status));
    }
    /* An orderly close by the peer. */
    cr_assert_eq(fx.conn_close_status, 0);
    /* The server's answers now go nowhere, and say so. */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(shoal_call_reply_json(fx.kept[i], "1"),
                     SHOAL_ECONNCLOSED);
        fx.kept[i] = NULL;
    }
    cr_assert_eq(counters(&fx.server).replies_dropped, 3);
    fx_finish();
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r[i].n, 1);
}

Test(node, closing_the_client_node_fails_its_calls_in_flight_once,
     .timeout = T_TIMEOUT)
{
    rec_t r = {0};

    fx_start_default();
    cr_assert_eq(shoal_conn_call(fx.conn, "math", "keep", NULL, 0, rec_cb, &r),
                 0);
    RUN_UNTIL(fx.n_kept == 1);
    close_client();
    RUN_UNTIL(r.n == 1 && fx.client_closed);
    cr_assert_eq(r.status, SHOAL_ECONNCLOSED);
    fx_finish();
    cr_assert_eq(r.n, 1);
}

Test(node, unknown_app_fails_with_ENOAPP_and_says_which, .timeout = T_TIMEOUT)
{
    rec_t r = {0};

    fx_start_default();
    cr_assert_eq(shoal_conn_call(fx.conn, "nope", "add", NULL, 0, rec_cb, &r),
                 0);
    RUN_UNTIL(r.n == 1);
    cr_assert_eq(r.status, SHOAL_ENOAPP, "%s", shoal_strerror(r.status));
    cr_assert_str_eq(r.code, "ENOAPP");
    cr_assert_not_null(strstr(r.message, "nope"), "%s", r.message);
    cr_assert_eq(counters(&fx.server).calls_failed, 1);
    fx_finish();
}

Test(node, unknown_action_fails_with_ENOACTION_and_says_which,
     .timeout = T_TIMEOUT)
{
    rec_t r = {0};

    fx_start_default();
    cr_assert_eq(
        shoal_conn_call(fx.conn, "math", "divide", NULL, 0, rec_cb, &r), 0);
    RUN_UNTIL(r.n == 1);
    cr_assert_eq(r.status, SHOAL_ENOACTION, "%s", shoal_strerror(r.status));
    cr_assert_str_eq(r.code, "ENOACTION");
    cr_assert_not_null(strstr(r.message, "divide"), "%s", r.message);
    fx_finish();
}

Test(node, call_on_a_closing_conn_returns_ECLOSING_and_never_calls_back,
     .timeout = T_TIMEOUT)
{
    shoal_conn_t *conn;
    rec_t r = {0};

    fx_start_default();
    conn = fx.conn;
    shoal_conn_close(conn);
    cr_assert_eq(shoal_conn_call(conn, "math", "add", json_payload("[1]"), 0,
                                 rec_cb, &r),
                 SHOAL_ECLOSING);
    cr_assert_eq(shoal_conn_describe(conn, 0, rec_cb, &r), SHOAL_ECLOSING);
    cr_assert_eq(shoal_conn_tell(conn, "math", NULL), SHOAL_ECLOSING);
    cr_assert_eq(shoal_conn_emit(conn, "ping", NULL), SHOAL_ECLOSING);
    RUN_UNTIL(fx.conn_closes == 1 && fx.srv_conn_closes == 1);
    cr_assert_eq(fx.conn_close_status, 0);
    fx_finish();
    cr_assert_eq(r.n, 0);
}

Test(node, call_with_a_name_over_255_bytes_is_refused_at_once,
     .timeout = T_TIMEOUT)
{
    char name[300];
    rec_t r = {0};

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    fx_start_default();
    cr_assert_eq(shoal_conn_call(fx.conn, name, "add", NULL, 0, rec_cb, &r),
                 SHOAL_ENAMETOOLONG);
    cr_assert_eq(shoal_conn_call(fx.conn, "math", name, NULL, 0, rec_cb, &r),
                 SHOAL_ENAMETOOLONG);
    cr_assert_eq(shoal_conn_calls_in_flight(fx.conn), 0);
    fx_finish();
    cr_assert_eq(r.n, 0);
}

/* ---- tells, events, hello, describe ----------------------------------- */

Test(node, tell_reaches_the_apps_tell_handler, .timeout = T_TIMEOUT)
{
    fx_start_default();
    cr_assert_eq(
        shoal_conn_tell(fx.conn, "math", json_payload("{\"x\":[1,2]}")), 0);
    cr_assert_eq(shoal_conn_tell(fx.conn, "math", NULL), 0);
    RUN_UNTIL(fx.tells == 2);
    cr_assert_str_eq(fx.tell_msg, "");
    cr_assert_eq(counters(&fx.server).tells_in, 2);
    fx_finish();
}

Test(node, events_flow_both_ways, .timeout = T_TIMEOUT)
{
    fx_start_default();
    cr_assert_eq(shoal_node_on(&fx.server, "ping", srv_event_cb, NULL), 0);
    cr_assert_eq(shoal_node_on(&fx.server, "*", srv_event_cb, NULL), 0);
    cr_assert_eq(shoal_node_on(&fx.client, "pong", cli_event_cb, NULL), 0);
    cr_assert_eq(shoal_node_on(&fx.client, NULL, cli_event_cb, NULL),
                 SHOAL_EINVAL);
    cr_assert_eq(shoal_conn_emit(fx.conn, "ping", json_payload("{\"n\":1}")),
                 0);
    cr_assert_eq(shoal_conn_emit(fx.conn, "other", NULL), 0);
    /* Nobody listens to "ignored" on the client: it is counted and
     * dropped. */
    RUN_UNTIL(fx.n_srv_events == 2 && fx.n_cli_events == 1 &&
              counters(&fx.client).events_in == 2);
    cr_assert_str_eq(fx.srv_events[0].name, "ping");
    cr_assert_str_eq(fx.srv_events[0].data, "{\"n\":1}");
    cr_assert_eq(fx.srv_events[0].conn, fx.srv_conn);
    cr_assert_str_eq(fx.srv_events[1].name, "other");
    cr_assert_str_eq(fx.srv_events[1].data, "");
    cr_assert_str_eq(fx.cli_events[0].name, "pong");
    cr_assert_str_eq(fx.cli_events[0].data, "{\"n\":1}");
    cr_assert_eq(fx.cli_events[0].conn, fx.conn);
    cr_assert_eq(counters(&fx.server).events_in, 2);
    fx_finish();
}

Test(node, hello_names_each_side_to_the_other, .timeout = T_TIMEOUT)
{
    fx_opts_t o = {.framing = SHOAL_FRAMING_NDJSON, .hello = true};

    fx_start(&o);
    RUN_UNTIL(fx.srv_hellos == 1 &&
              strcmp(shoal_conn_peer_name(fx.conn), "server") == 0);
    cr_assert_str_eq(shoal_conn_peer_name(fx.srv_conn), "client");
    cr_assert_str_eq(shoal_conn_peer_address(fx.conn), fx.url);
    fx_finish();
}

Test(node, describe_returns_the_peers_description, .timeout = T_TIMEOUT)
{
    rec_t r = {0};
    cJSON *desc;

    fx_start_default();
    cr_assert_eq(shoal_conn_describe(fx.conn, 1000, rec_cb, &r), 0);
    RUN_UNTIL(r.n == 1);
    cr_assert_eq(r.status, 0, "%s", r.message);
    cr_assert_eq(r.id, 1);
    desc = cJSON_Parse(r.result);
    cr_assert_not_null(desc, "%s", r.result);
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(desc, "name")),
                     "server");
    cr_assert_str_eq(
        cJSON_GetStringValue(cJSON_GetObjectItem(desc, "address")), fx.url);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(desc, "applications")),
                 1);
    cJSON_Delete(desc);
    fx_finish();
}

/* ---- back-pressure ---------------------------------------------------- */

static void bp_cb(const shoal_reply_t *reply, void *data)
{
    (void)data;
    fx.bp_done++;
    if (reply->status != 0 || reply->result.len < BP_RESULT_BYTES)
        fx.bp_failed++;
}

Test(node, paused_reader_keeps_the_servers_queue_bounded_until_resumed,
     .timeout = T_TIMEOUT)
{
    fx_opts_t o = {.framing = SHOAL_FRAMING_MSGPACK,
                   .over_unix = true,
                   .high_water = BP_HIGH_WATER};
    /* The high-water mark, plus the one reply that crossed it. */
    size_t bound = BP_HIGH_WATER + BP_RESULT_BYTES + 256;
    size_t served;

    fx_start(&o);
    shoal_conn_pause(fx.conn);
    for (int i = 0; i < BP_CALLS; i++)
        cr_assert_eq(
            shoal_conn_call(fx.conn, "math", "big", NULL, 0, bp_cb, NULL), 0);
    /* Replies fill the socket, then pile up past the mark: the server
     * stops reading. (It may pause and resume a few times before the
     * socket is full: wait for a pause with a write the kernel holds.) */
    SPIN_UNTIL(fx.srv_conn->paused_full && fx.srv_conn->writing);
    cr_assert(!fx.srv_conn->reading);
    served = fx.bp_served;
    cr_assert_lt(served, BP_CALLS);
    cr_assert_leq(fx.bp_max_queue, bound, "queue grew to %zu",
                  fx.bp_max_queue);
    cr_assert_leq(shoal_conn_write_queue_bytes(fx.srv_conn), bound);
    /* Nothing moves while the client does not read. */
    for (int i = 0; i < 50; i++)
        uv_run(&fx.loop, UV_RUN_NOWAIT);
    cr_assert_eq(fx.bp_served, served);
    cr_assert_eq(fx.bp_done, 0);

    shoal_conn_resume(fx.conn);
    RUN_UNTIL(fx.bp_done == BP_CALLS);
    cr_assert_eq(fx.bp_failed, 0);
    cr_assert_eq(fx.bp_served, BP_CALLS);
    cr_assert_leq(fx.bp_max_queue, bound, "queue grew to %zu",
                  fx.bp_max_queue);
    RUN_UNTIL(shoal_conn_write_queue_bytes(fx.srv_conn) == 0);
    cr_assert(!fx.srv_conn->paused_full);
    fx_finish();
}
