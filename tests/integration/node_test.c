/* `shoal node` as a black box: raw sockets in each framing, bad input that
 * must cost only its sender, limits, slow readers, signals and socket
 * files. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <msgpack.h>

#include "integration/harness.h"

#define T_TIMEOUT 60

TestSuite(node, .init = h_init, .fini = h_fini, .timeout = T_TIMEOUT);

static const h_framing_t all_framings[] = {H_NDJSON, H_JSONSOCKET, H_MSGPACK};

/* ---- helpers ---------------------------------------------------------- */

/* Asserts m is {"type":"reply","id":id,"result":result_json}; frees m. */
static void assert_reply(cJSON *m, int id, const char *result_json)
{
    char *text = cJSON_PrintUnformatted(m);

    cr_assert_str_eq(h_str(m, "type"), "reply", "%s", text);
    cr_assert_eq(h_num(m, "id"), id, "%s", text);
    cr_assert_null(h_at(m, "error"), "%s", text);
    cr_assert(h_json_eq(m, "result", result_json), "want %s, got %s",
              result_json, text);
    free(text);
    cJSON_Delete(m);
}

/* Asserts m is a reply with id whose error has the code; frees m. */
static void assert_error_reply(cJSON *m, int id, const char *code)
{
    char *text = cJSON_PrintUnformatted(m);

    cr_assert_str_eq(h_str(m, "type"), "reply", "%s", text);
    cr_assert_eq(h_num(m, "id"), id, "%s", text);
    cr_assert_null(h_at(m, "result"), "%s", text);
    cr_assert_str_eq(h_str(m, "error.code"), code, "%s", text);
    cr_assert_not_null(h_str(m, "error.message"), "%s", text);
    free(text);
    cJSON_Delete(m);
}

/* Asserts m is an error message (no id) with the code; frees m. */
static void assert_error_message(cJSON *m, const char *code)
{
    char *text = cJSON_PrintUnformatted(m);

    cr_assert_str_eq(h_str(m, "type"), "error", "%s", text);
    cr_assert_null(h_at(m, "id"), "%s", text);
    cr_assert_str_eq(h_str(m, "error.code"), code, "%s", text);
    cr_assert_not_null(h_str(m, "error.message"), "%s", text);
    cr_assert_neq(h_str(m, "error.message")[0], '\0', "%s", text);
    free(text);
    cJSON_Delete(m);
}

/* The sender hears what was wrong, then the node closes its side. */
static void expect_closed_with(h_conn_t *c, const char *code)
{
    assert_error_message(h_expect(c), code);
    h_expect_eof(c);
}

static void expect_sum(h_conn_t *c, int id)
{
    char msg[128];

    snprintf(msg, sizeof(msg),
             "{\"type\":\"call\",\"id\":%d,\"app\":\"sum\",\"action\":"
             "\"sum\",\"args\":[1,2,3]}",
             id);
    assert_reply(h_call(c, msg), id, "6");
}

/* A client connected before the bad input still gets pipelined calls
 * answered, in order. */
static void expect_unaffected(h_conn_t *c)
{
    char *batch = NULL;
    size_t len = 0;

    h_frame(c->framing,
            "{\"type\":\"call\",\"id\":101,\"app\":\"sum\",\"action\":\"sum\","
            "\"args\":[10,20]}",
            &batch, &len);
    h_frame(c->framing,
            "{\"type\":\"call\",\"id\":102,\"app\":\"echo\",\"action\":"
            "\"echo\",\"args\":{\"still\":\"here \\u00e9\"}}",
            &batch, &len);
    h_send_raw(c, batch, len);
    free(batch);
    assert_reply(h_expect(c), 101, "30");
    assert_reply(h_expect(c), 102, "{\"still\":\"here \\u00e9\"}");
}

static cJSON *describe(h_conn_t *c, int id)
{
    char msg[64];
    cJSON *m, *result;

    snprintf(msg, sizeof(msg), "{\"type\":\"describe\",\"id\":%d}", id);
    m = h_call(c, msg);
    cr_assert_str_eq(h_str(m, "type"), "reply");
    cr_assert_eq(h_num(m, "id"), id);
    result = cJSON_DetachItemFromObject(m, "result");
    cr_assert(cJSON_IsObject(result));
    cJSON_Delete(m);
    return result;
}

/* A node, a bystander that has made a call, and a sender for bad input:
 * the shape of every bad-input test. */
typedef struct {
    h_node_t node;
    h_conn_t bystander;
    h_conn_t sender;
} bad_fx_t;

static void bad_begin(bad_fx_t *fx, const char *const *extra,
                      h_framing_t sender_reads)
{
    h_node_start(&fx->node, "bad", extra);
    /* Another framing on the other listener: nothing shared with the
     * sender but the node. */
    h_conn_open(&fx->bystander, fx->node.unix_url,
                sender_reads == H_MSGPACK ? H_NDJSON : H_MSGPACK);
    expect_sum(&fx->bystander, 1);
    h_conn_open(&fx->sender, fx->node.tcp_url, sender_reads);
}

/* Sends bytes that should be refused with code, then checks both
 * clients and stops the node. */
static void bad_send_and_check(bad_fx_t *fx, const void *bytes, size_t len,
                               const char *code)
{
    cJSON *desc;

    h_send_raw(&fx->sender, bytes, len);
    expect_closed_with(&fx->sender, code);
    expect_unaffected(&fx->bystander);
    desc = describe(&fx->bystander, 103);
    cr_assert_eq(h_num(desc, "counters.errors"), 1);
    cJSON_Delete(desc);
    h_conn_close(&fx->sender);
    h_conn_close(&fx->bystander);
    h_node_stop(&fx->node);
}

/* A MessagePack buffer built by hand. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp_t;

static void mp_init(mp_t *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_str(mp_t *m, const char *s, size_t len)
{
    msgpack_pack_str(&m->pk, len);
    msgpack_pack_str_body(&m->pk, s, len);
}

/* Packs {"type":"call","id":id,"app":app,"action":action,"args": <str of
 * len bytes>} with the str body given. */
static void mp_call_with_str(mp_t *m, int id, const char *app, const char *str,
                             size_t len)
{
    msgpack_pack_map(&m->pk, 5);
    mp_str(m, "type", 4);
    mp_str(m, "call", 4);
    mp_str(m, "id", 2);
    msgpack_pack_int(&m->pk, id);
    mp_str(m, "app", 3);
    mp_str(m, app, strlen(app));
    mp_str(m, "action", 6);
    mp_str(m, app, strlen(app));
    mp_str(m, "args", 4);
    mp_str(m, str, len);
}

/* ---- calls in each framing -------------------------------------------- */

static void check_calls_on(const char *const *urls, size_t n_urls)
{
    for (size_t u = 0; u < n_urls; u++)
        for (size_t f = 0; f < 3; f++) {
            h_conn_t c;
            h_conn_open(&c, urls[u], all_framings[f]);
            assert_reply(h_call(&c, "{\"type\":\"call\",\"id\":1,\"app\":"
                                    "\"sum\",\"action\":\"sum\",\"args\":"
                                    "[1,2,3.5]}"),
                         1, "6.5");
            assert_reply(
                h_call(&c, "{\"type\":\"call\",\"id\":2,\"app\":\"echo\","
                           "\"action\":\"echo\",\"args\":{\"s\":\"\\u00e9"
                           "\\u2713\",\"n\":[1,null,true,-7,0.25]}}"),
                2, "{\"s\":\"\\u00e9\\u2713\",\"n\":[1,null,true,-7,0.25]}");
            assert_reply(h_call(&c,
                                "{\"type\":\"call\",\"id\":3,\"app\":\"echo\","
                                "\"action\":\"echo\"}"),
                         3, "null");
            h_conn_close(&c);
        }
}

Test(node, calls_over_tcp_are_answered_in_each_framing, .timeout = T_TIMEOUT)
{
    h_node_t node;

    h_node_start(&node, "tcp", NULL);
    check_calls_on((const char *const[]){node.tcp_url}, 1);
    h_node_stop(&node);
}

Test(node, calls_over_a_unix_socket_are_answered_in_each_framing,
     .timeout = T_TIMEOUT)
{
    h_node_t node;

    h_node_start(&node, "unix", NULL);
    check_calls_on((const char *const[]){node.unix_url}, 1);
    h_node_stop(&node);
}

Test(node, pipelined_calls_are_answered_in_order_with_matching_ids,
     .timeout = T_TIMEOUT)
{
    enum { N = 500 };
    h_node_t node;

    h_node_start(&node, "pipeline", NULL);
    for (size_t f = 0; f < 3; f++) {
        char *batch = NULL, msg[160];
        size_t len = 0;
        h_conn_t c;
        h_conn_open(&c, node.tcp_url, all_framings[f]);
        for (int id = 1; id <= N; id++) {
            if (id % 2)
                snprintf(msg, sizeof(msg),
                         "{\"type\":\"call\",\"id\":%d,\"app\":\"sum\","
                         "\"action\":\"sum\",\"args\":[%d,1]}",
                         id, id);
            else
                snprintf(msg, sizeof(msg),
                         "{\"type\":\"call\",\"id\":%d,\"app\":\"echo\","
                         "\"action\":\"echo\",\"args\":\"m%d\"}",
                         id, id);
            h_frame(all_framings[f], msg, &batch, &len);
        }
        h_send_raw(&c, batch, len);
        free(batch);
        for (int id = 1; id <= N; id++) {
            char want[32];
            if (id % 2)
                snprintf(want, sizeof(want), "%d", id + 1);
            else
                snprintf(want, sizeof(want), "\"m%d\"", id);
            assert_reply(h_expect(&c), id, want);
        }
        h_conn_close(&c);
    }
    h_node_stop(&node);
}

/* Sends the JSON messages (NULL-terminated) in the conn's framing in one
 * write, so that the node reads them together. */
static void send_together(h_conn_t *c, const char *const *msgs)
{
    char *batch = NULL;
    size_t len = 0;

    for (size_t i = 0; msgs[i] != NULL; i++)
        h_frame(c->framing, msgs[i], &batch, &len);
    h_send_raw(c, batch, len);
    free(batch);
}

Test(node, slow_call_does_not_hold_up_later_calls_on_the_connection,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;

    h_node_start(&node, "slow", NULL);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    send_together(&c, (const char *const[]){
                          "{\"type\":\"call\",\"id\":1,\"app\":\"sleep\","
                          "\"action\":\"sleep\",\"args\":300}",
                          "{\"type\":\"call\",\"id\":2,\"app\":\"sum\","
                          "\"action\":\"sum\",\"args\":[1,2,3]}",
                          NULL});
    assert_reply(h_expect(&c), 2, "6");
    assert_reply(h_expect(&c), 1, "300");
    h_conn_close(&c);
    h_node_stop(&node);
}

Test(node, tells_are_counted_and_count_reports_them, .timeout = T_TIMEOUT)
{
    h_node_t node;
    int total = 0;

    h_node_start(&node, "tells", NULL);
    for (size_t f = 0; f < 3; f++) {
        h_conn_t c;
        char want[16];
        h_conn_open(&c, node.tcp_url, all_framings[f]);
        /* Tells get no answer; the call after them on the same
         * connection is served after them. */
        for (size_t i = 0; i <= f + 1; i++, total++)
            h_send(&c, "{\"type\":\"tell\",\"app\":\"echo\",\"msg\":"
                       "{\"n\":1}}");
        h_send(&c, "{\"type\":\"tell\",\"app\":\"echo\"}");
        total++;
        snprintf(want, sizeof(want), "%d", total);
        assert_reply(h_call(&c, "{\"type\":\"call\",\"id\":7,\"app\":"
                                "\"echo\",\"action\":\"count\"}"),
                     7, want);
        h_conn_close(&c);
    }
    h_node_stop(&node);
}

Test(node, tell_to_an_unknown_app_is_refused_and_the_connection_stays,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;

    h_node_start(&node, "tellnoapp", NULL);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    h_send(&c, "{\"type\":\"tell\",\"app\":\"nope\",\"msg\":1}");
    assert_error_message(h_expect(&c), "ENOAPP");
    expect_sum(&c, 2);
    h_conn_close(&c);
    h_node_stop(&node);
}

/* ---- describe, events, hello ------------------------------------------ */

static const cJSON *find_app(const cJSON *apps, const char *name)
{
    const cJSON *app;

    cJSON_ArrayForEach(app, apps) if (strcmp(h_str(app, "name"), name) ==
                                      0) return app;
    return NULL;
}

Test(node, describe_reports_name_addresses_pid_applications_and_counters,
     .timeout = T_TIMEOUT)
{
    static const char *const apps[] = {"echo", "sum", "sleep", "fail"};
    const cJSON *addresses, *echo;
    h_node_t node;
    cJSON *desc;
    h_conn_t c;

    h_node_start(&node, "described", NULL);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    expect_sum(&c, 1);
    desc = describe(&c, 2);
    cr_assert_str_eq(h_str(desc, "name"), "described");
    cr_assert_str_eq(h_str(desc, "address"), node.addresses[0]);
    addresses = h_at(desc, "addresses");
    cr_assert_eq(cJSON_GetArraySize(addresses), (int)node.n_addresses);
    for (size_t i = 0; i < node.n_addresses; i++)
        cr_assert_str_eq(
            cJSON_GetStringValue(cJSON_GetArrayItem(addresses, (int)i)),
            node.addresses[i]);
    /* The real port, not the 0 it was asked for. */
    cr_assert_str_neq(node.tcp_url, "tcp://127.0.0.1:0");
    cr_assert_eq(h_num(desc, "pid"), node.child.pid);
    cr_assert_eq(cJSON_GetArraySize(h_at(desc, "applications")), 4);
    for (size_t i = 0; i < 4; i++) {
        const cJSON *app = find_app(h_at(desc, "applications"), apps[i]);
        cr_assert_not_null(app, "%s not described", apps[i]);
        cr_assert(cJSON_IsObject(h_at(app, "description")));
        cr_assert_not_null(h_str(app, "description.summary"), "%s", apps[i]);
    }
    echo = find_app(h_at(desc, "applications"), "echo");
    cr_assert(h_json_eq(echo, "actions", "[\"echo\",\"count\"]"));
    cr_assert_eq(h_num(find_app(h_at(desc, "applications"), "sum"), "calls"),
                 1);
    cr_assert_eq(h_num(desc, "counters.calls_served"), 1);
    cr_assert_eq(h_num(desc, "counters.calls_failed"), 0);
    cr_assert_eq(h_num(desc, "counters.conns_accepted"), 1);
    cr_assert_eq(h_num(desc, "counters.msgs_in"), 2);
    cr_assert_eq(h_num(desc, "counters.errors"), 0);
    cr_assert_eq(h_num(desc, "counters.replies_dropped"), 0);
    cr_assert(cJSON_IsArray(h_at(desc, "nodes")));
    cr_assert_eq(h_num(desc, "load.connections"), 1);
    cJSON_Delete(desc);

    /* The same description in MessagePack. */
    h_conn_close(&c);
    h_conn_open(&c, node.unix_url, H_MSGPACK);
    desc = describe(&c, 3);
    cr_assert_str_eq(h_str(desc, "name"), "described");
    cr_assert_eq(h_num(desc, "pid"), node.child.pid);
    cr_assert_eq(h_num(desc, "counters.conns_accepted"), 2);
    cJSON_Delete(desc);
    h_conn_close(&c);
    h_node_stop(&node);
}

Test(node, describe_without_an_id_is_refused_and_the_connection_stays,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;

    h_node_start(&node, "descnoid", NULL);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    h_send(&c, "{\"type\":\"describe\"}");
    assert_error_message(h_expect(&c), "EBADMSG");
    expect_sum(&c, 1);
    h_conn_close(&c);
    h_node_stop(&node);
}

Test(node, event_is_accepted_silently_and_the_connection_stays_usable,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    cJSON *desc;

    h_node_start(&node, "events", NULL);
    for (size_t f = 0; f < 3; f++) {
        h_conn_t c;
        h_conn_open(&c, node.tcp_url, all_framings[f]);
        h_send(&c, "{\"type\":\"event\",\"event\":\"ping\",\"data\":"
                   "{\"n\":[1,2]}}");
        h_send(&c, "{\"type\":\"event\",\"event\":\"bare\"}");
        /* Nothing answers the events: the next message is the reply. */
        expect_sum(&c, 5);
        h_conn_close(&c);
    }
    {
        h_conn_t c;
        h_conn_open(&c, node.tcp_url, H_NDJSON);
        desc = describe(&c, 1);
        cr_assert_eq(h_num(desc, "counters.events_in"), 6);
        cr_assert_eq(h_num(desc, "counters.errors"), 0);
        cJSON_Delete(desc);
        h_conn_close(&c);
    }
    h_node_stop(&node);
}

Test(node, hello_is_answered_with_the_nodes_own_hello, .timeout = T_TIMEOUT)
{
    h_node_t node;
    cJSON *m, *desc;
    const cJSON *peer;
    h_conn_t c;

    h_node_start(&node, "greeter", NULL);
    for (size_t f = 0; f < 3; f++) {
        h_conn_open(&c, node.tcp_url, all_framings[f]);
        m = h_call(&c, "{\"type\":\"hello\",\"from\":\"tester\",\"node\":"
                       "{\"name\":\"tester\"}}");
        cr_assert_str_eq(h_str(m, "type"), "hello");
        cr_assert_str_eq(h_str(m, "from"), "greeter");
        cr_assert_str_eq(h_str(m, "node.name"), "greeter");
        cr_assert_eq(h_num(m, "node.pid"), node.child.pid);
        cr_assert(cJSON_IsArray(h_at(m, "node.applications")));
        cJSON_Delete(m);
        /* The node now knows the peer by name. */
        desc = describe(&c, 9);
        peer = h_at(desc, "nodes.0");
        cr_assert_not_null(peer);
        cr_assert_str_eq(h_str(peer, "name"), "tester");
        cr_assert_str_eq(h_str(peer, "direction"), "in");
        cJSON_Delete(desc);
        h_conn_close(&c);
    }
    h_node_stop(&node);
}

/* ---- answers that are errors ------------------------------------------ */

Test(node, error_replies_carry_their_code_and_keep_the_connection_open,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    cJSON *m;

    h_node_start(&node, "errors", NULL);
    for (size_t f = 0; f < 3; f++) {
        h_conn_t c;
        h_conn_open(&c, node.tcp_url, all_framings[f]);
        assert_error_reply(
            h_call(&c, "{\"type\":\"call\",\"id\":1,\"app\":\"nope\","
                       "\"action\":\"x\"}"),
            1, "ENOAPP");
        assert_error_reply(
            h_call(&c, "{\"type\":\"call\",\"id\":2,\"app\":\"sum\","
                       "\"action\":\"nope\"}"),
            2, "ENOACTION");
        assert_error_reply(
            h_call(&c, "{\"type\":\"call\",\"id\":3,\"app\":\"sum\","
                       "\"action\":\"sum\",\"args\":[1,\"two\"]}"),
            3, "EBADTYPE");
        m = h_call(&c, "{\"type\":\"call\",\"id\":4,\"app\":\"fail\","
                       "\"action\":\"any\",\"args\":{\"code\":\"EFOO\","
                       "\"message\":\"boom \\u00fc\"}}");
        cr_assert_str_eq(h_str(m, "error.message"), "boom \xc3\xbc");
        assert_error_reply(m, 4, "EFOO");
        assert_error_reply(
            h_call(&c, "{\"type\":\"call\",\"id\":5,\"app\":\"sum\","
                       "\"action\":\"sum\",\"to\":\"elsewhere\"}"),
            5, "ENOROUTE");
        expect_sum(&c, 6);
        h_conn_close(&c);
    }
    h_node_stop(&node);
}

Test(node, wrong_field_types_are_refused_and_the_connection_stays_open,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;

    h_node_start(&node, "types", NULL);
    for (size_t f = 0; f < 3; f++) {
        h_conn_open(&c, node.tcp_url, all_framings[f]);
        /* The id was readable: the refusal answers it. */
        assert_error_reply(h_call(&c, "{\"type\":\"call\",\"id\":3,\"app\":5,"
                                      "\"action\":\"sum\"}"),
                           3, "EBADTYPE");
        assert_error_reply(
            h_call(&c, "{\"type\":\"call\",\"id\":4,\"app\":\"sum\","
                       "\"action\":[\"sum\"]}"),
            4, "EBADTYPE");
        /* An id that is not an integer cannot be answered. */
        assert_error_message(h_call(&c, "{\"type\":\"call\",\"id\":\"x\","
                                        "\"app\":\"sum\",\"action\":"
                                        "\"sum\"}"),
                             "EBADTYPE");
        assert_error_message(h_call(&c, "{\"type\":7}"), "EBADTYPE");
        expect_sum(&c, 5);
        h_conn_close(&c);
    }
    h_node_stop(&node);
}

Test(node, malformed_messages_are_refused_and_the_connection_stays_open,
     .timeout = T_TIMEOUT)
{
    char long_name[300], msg[512];
    h_node_t node;
    h_conn_t c;

    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    h_node_start(&node, "malformed", NULL);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    /* The id was readable, so the refusal answers it. */
    assert_error_reply(h_call(&c, "{\"id\":1,\"app\":\"sum\"}"), 1, "EBADMSG");
    assert_error_message(h_call(&c, "{\"app\":\"sum\"}"), "EBADMSG");
    assert_error_reply(h_call(&c, "{\"type\":\"gossip\",\"id\":2}"), 2,
                       "EBADMSG");
    assert_error_reply(h_call(&c, "{\"type\":\"call\",\"id\":3,\"app\":"
                                  "\"sum\"}"),
                       3, "EBADMSG");
    snprintf(msg, sizeof(msg),
             "{\"type\":\"call\",\"id\":4,\"app\":\"%s\",\"action\":\"x\"}",
             long_name);
    assert_error_reply(h_call(&c, msg), 4, "ENAMETOOLONG");
    /* Blank lines are skipped. */
    h_send_raw(&c, "\n\r\n  \n", 6);
    expect_sum(&c, 5);
    h_conn_close(&c);
    h_node_stop(&node);
}

/* ---- bad input: the sender's connection closes, nobody else notices -- */

Test(node, invalid_json_closes_only_the_sender_with_EBADJSON,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "{\"type\":\"call\",\"id\":1,]\n";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_NDJSON);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADJSON");
}

Test(node, invalid_json_in_a_json_socket_frame_closes_only_the_sender,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "9#{\"type\":}";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_JSONSOCKET);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADJSON");
}

Test(node, unknown_framing_closes_only_the_sender_with_EBADFRAMING,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    bad_fx_t fx;

    /* The framing is unknown, so the error comes as NDJSON. */
    bad_begin(&fx, NULL, H_NDJSON);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADFRAMING");
}

Test(node, bad_json_socket_length_prefix_closes_only_the_sender,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "12x{\"type\":\"x\"}";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_JSONSOCKET);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADLENGTH");
}

Test(node, zero_json_socket_length_closes_only_the_sender,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "0#{}";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_JSONSOCKET);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADLENGTH");
}

Test(node, invalid_msgpack_closes_only_the_sender_with_EBADMSGPACK,
     .timeout = T_TIMEOUT)
{
    /* {"type": <0xc1, a byte MessagePack never uses>} */
    static const char bad[] = "\x81\xa4type\xc1";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_MSGPACK);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADMSGPACK");
}

Test(node, msgpack_non_map_first_closes_only_the_sender_with_EBADFRAMING,
     .timeout = T_TIMEOUT)
{
    /* [1, 2, 3]: not a map, so not a framing the node knows. */
    static const char bad[] = "\x93\x01\x02\x03";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_NDJSON);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADFRAMING");
}

Test(node, msgpack_non_map_after_a_map_closes_only_the_sender_with_ENOTMAP,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "\x93\x01\x02\x03";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_MSGPACK);
    expect_sum(&fx.sender, 1);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "ENOTMAP");
}

Test(node, json_non_object_after_an_object_closes_only_the_sender,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "[1,2,3]\n";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_NDJSON);
    expect_sum(&fx.sender, 1);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "ENOTMAP");
}

Test(node, invalid_utf8_closes_only_the_sender_with_EBADUTF8,
     .timeout = T_TIMEOUT)
{
    static const char bad[] = "{\"type\":\"call\",\"id\":1,\"app\":\"echo\","
                              "\"action\":\"echo\",\"args\":\"a\xff\xfe\"}\n";
    bad_fx_t fx;

    bad_begin(&fx, NULL, H_NDJSON);
    bad_send_and_check(&fx, bad, sizeof(bad) - 1, "EBADUTF8");
}

Test(node, invalid_utf8_in_msgpack_closes_only_the_sender_with_EBADUTF8,
     .timeout = T_TIMEOUT)
{
    bad_fx_t fx;
    mp_t m;

    mp_init(&m);
    mp_call_with_str(&m, 1, "echo", "\xc3\x28", 2);
    bad_begin(&fx, NULL, H_MSGPACK);
    bad_send_and_check(&fx, m.sb.data, m.sb.size, "EBADUTF8");
    msgpack_sbuffer_destroy(&m.sb);
}

/* ---- limits ------------------------------------------------------------ */

static const char *const small_frames[] = {"--max-frame-bytes", "1024", NULL};

/* An NDJSON echo call of exactly len bytes (newline excluded). */
static char *ndjson_call_of(size_t len)
{
    static const char head[] =
        "{\"type\":\"call\",\"id\":1,\"app\":\"echo\",\"action\":\"echo\","
        "\"args\":\"";
    char *msg = malloc(len + 2);
    size_t pad = len - (sizeof(head) - 1) - 2;

    cr_assert_not_null(msg);
    memcpy(msg, head, sizeof(head) - 1);
    memset(msg + sizeof(head) - 1, 'x', pad);
    memcpy(msg + sizeof(head) - 1 + pad, "\"}\n", 4);
    return msg;
}

Test(node, ndjson_line_at_the_frame_limit_is_served, .timeout = T_TIMEOUT)
{
    char *msg = ndjson_call_of(1024);
    h_node_t node;
    h_conn_t c;
    cJSON *m;

    h_node_start(&node, "limit", small_frames);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    h_send_raw(&c, msg, 1025);
    m = h_expect(&c);
    cr_assert_eq(strlen(h_str(m, "result")), strspn(strchr(msg, 'x'), "x"));
    cJSON_Delete(m);
    expect_sum(&c, 2);
    h_conn_close(&c);
    h_node_stop(&node);
    free(msg);
}

Test(node, oversized_ndjson_line_closes_only_the_sender_with_ETOOBIG,
     .timeout = T_TIMEOUT)
{
    char *msg = ndjson_call_of(1025);
    bad_fx_t fx;

    bad_begin(&fx, small_frames, H_NDJSON);
    bad_send_and_check(&fx, msg, 1026, "ETOOBIG");
    free(msg);
}

Test(node, line_over_max_line_bytes_closes_only_the_sender_with_ETOOBIG,
     .timeout = T_TIMEOUT)
{
    static const char *const small_lines[] = {"--max-line-bytes", "512", NULL};
    char *msg = ndjson_call_of(600);
    bad_fx_t fx;

    bad_begin(&fx, small_lines, H_NDJSON);
    bad_send_and_check(&fx, msg, 601, "ETOOBIG");
    free(msg);
}

Test(node, oversized_json_socket_frame_closes_only_the_sender_with_ETOOBIG,
     .timeout = T_TIMEOUT)
{
    char *msg = ndjson_call_of(1100), framed[1200];
    int n = snprintf(framed, sizeof(framed), "1100#%.1100s", msg);
    bad_fx_t fx;

    bad_begin(&fx, small_frames, H_JSONSOCKET);
    bad_send_and_check(&fx, framed, (size_t)n, "ETOOBIG");
    free(msg);
}

Test(node, oversized_msgpack_frame_closes_only_the_sender_with_ETOOBIG,
     .timeout = T_TIMEOUT)
{
    char big[2000];
    bad_fx_t fx;
    mp_t m;

    memset(big, 'y', sizeof(big));
    mp_init(&m);
    mp_call_with_str(&m, 1, "echo", big, sizeof(big));
    bad_begin(&fx, small_frames, H_MSGPACK);
    bad_send_and_check(&fx, m.sb.data, m.sb.size, "ETOOBIG");
    msgpack_sbuffer_destroy(&m.sb);
}

static const char *const shallow[] = {"--max-depth", "4", NULL};
static const char at_depth_limit[] =
    "{\"type\":\"call\",\"id\":1,\"app\":\"echo\",\"action\":\"echo\","
    "\"args\":[[[1]]]}";
static const char past_depth_limit[] =
    "{\"type\":\"call\",\"id\":1,\"app\":\"echo\",\"action\":\"echo\","
    "\"args\":[[[[1]]]]}";

Test(node, nesting_at_max_depth_is_served_in_each_framing,
     .timeout = T_TIMEOUT)
{
    h_node_t node;

    h_node_start(&node, "deep", shallow);
    for (size_t f = 0; f < 3; f++) {
        h_conn_t c;
        h_conn_open(&c, node.tcp_url, all_framings[f]);
        assert_reply(h_call(&c, at_depth_limit), 1, "[[[1]]]");
        h_conn_close(&c);
    }
    h_node_stop(&node);
}

static void check_too_deep(h_framing_t framing)
{
    char *framed = NULL;
    size_t len = 0;
    bad_fx_t fx;

    h_frame(framing, past_depth_limit, &framed, &len);
    bad_begin(&fx, shallow, framing);
    bad_send_and_check(&fx, framed, len, "ETOODEEP");
    free(framed);
}

Test(node, nesting_past_max_depth_in_ndjson_closes_only_the_sender,
     .timeout = T_TIMEOUT)
{
    check_too_deep(H_NDJSON);
}

Test(node, nesting_past_max_depth_in_json_socket_closes_only_the_sender,
     .timeout = T_TIMEOUT)
{
    check_too_deep(H_JSONSOCKET);
}

Test(node, nesting_past_max_depth_in_msgpack_closes_only_the_sender,
     .timeout = T_TIMEOUT)
{
    check_too_deep(H_MSGPACK);
}

/* ---- json-socket with non-ASCII text ----------------------------------- */

Test(node, json_socket_non_ascii_frames_in_one_write_are_all_answered,
     .timeout = T_TIMEOUT)
{
    /* Lengths are bytes, not characters: 2-, 3- and 4-byte sequences. */
    static const char *const texts[] = {
        "h\xc3\xa9llo w\xc3\xb6rld",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
        "fish \xf0\x9f\x90\x9f and \xe2\x9c\x93",
    };
    char *batch = NULL, msg[256];
    size_t len = 0;
    h_node_t node;
    h_conn_t c;

    h_node_start(&node, "utf8", NULL);
    h_conn_open(&c, node.tcp_url, H_JSONSOCKET);
    for (int i = 0; i < 3; i++) {
        snprintf(msg, sizeof(msg),
                 "{\"type\":\"call\",\"id\":%d,\"app\":\"echo\",\"action\":"
                 "\"echo\",\"args\":\"%s\"}",
                 i + 1, texts[i]);
        h_frame(H_JSONSOCKET, msg, &batch, &len);
    }
    h_send_raw(&c, batch, len);
    free(batch);
    for (int i = 0; i < 3; i++) {
        cJSON *m = h_expect(&c);
        cr_assert_eq(h_num(m, "id"), i + 1);
        cr_assert_str_eq(h_str(m, "result"), texts[i]);
        cJSON_Delete(m);
    }
    h_conn_close(&c);
    h_node_stop(&node);
}

/* ---- frames cut off --------------------------------------------------- */

static void check_truncated(h_framing_t framing)
{
    char *framed = NULL;
    size_t len = 0;
    bad_fx_t fx;
    cJSON *desc;

    h_frame(framing,
            "{\"type\":\"call\",\"id\":1,\"app\":\"sum\",\"action\":\"sum\","
            "\"args\":[1,2]}",
            &framed, &len);
    bad_begin(&fx, NULL, framing);
    h_send_raw(&fx.sender, framed, len / 2);
    /* Half a frame, then the sender says it is done: it still reads. */
    cr_assert_eq(shutdown(fx.sender.fd, SHUT_WR), 0);
    expect_closed_with(&fx.sender, "ETRUNCATED");
    expect_unaffected(&fx.bystander);
    desc = describe(&fx.bystander, 9);
    cr_assert_eq(h_num(desc, "counters.calls_served"), 3);
    cJSON_Delete(desc);
    free(framed);
    h_conn_close(&fx.sender);
    h_conn_close(&fx.bystander);
    h_node_stop(&fx.node);
}

Test(node, ndjson_frame_cut_off_by_shutdown_is_refused_with_ETRUNCATED,
     .timeout = T_TIMEOUT)
{
    check_truncated(H_NDJSON);
}

Test(node, json_socket_frame_cut_off_by_shutdown_is_refused_with_ETRUNCATED,
     .timeout = T_TIMEOUT)
{
    check_truncated(H_JSONSOCKET);
}

Test(node, msgpack_frame_cut_off_by_shutdown_is_refused_with_ETRUNCATED,
     .timeout = T_TIMEOUT)
{
    check_truncated(H_MSGPACK);
}

Test(node, calls_answered_before_a_clean_shutdown_still_reach_the_client,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;

    h_node_start(&node, "halfclose", NULL);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    send_together(&c, (const char *const[]){
                          "{\"type\":\"call\",\"id\":1,\"app\":\"sleep\","
                          "\"action\":\"sleep\",\"args\":50}",
                          "{\"type\":\"call\",\"id\":2,\"app\":\"sum\","
                          "\"action\":\"sum\",\"args\":[2,2]}",
                          NULL});
    /* Done sending: the node still answers what it was asked. */
    cr_assert_eq(shutdown(c.fd, SHUT_WR), 0);
    assert_reply(h_expect(&c), 2, "4");
    assert_reply(h_expect(&c), 1, "50");
    h_expect_eof(&c);
    h_conn_close(&c);
    h_node_stop(&node);
}

Test(node, client_closing_mid_frame_does_not_hurt_the_node_or_others,
     .timeout = T_TIMEOUT)
{
    static const char partial[] = "{\"type\":\"call\",\"id\":1,\"app\":\"su";
    h_node_t node;
    h_conn_t other, quitter;
    cJSON *desc;

    h_node_start(&node, "quitter", NULL);
    h_conn_open(&other, node.tcp_url, H_MSGPACK);
    expect_sum(&other, 1);
    for (int i = 0; i < 20; i++) {
        h_conn_open(&quitter, i % 2 ? node.tcp_url : node.unix_url, H_NDJSON);
        h_send_raw(&quitter, partial, sizeof(partial) - 1);
        h_conn_close(&quitter);
    }
    expect_unaffected(&other);
    desc = describe(&other, 2);
    cr_assert_eq(h_num(desc, "counters.conns_accepted"), 21);
    cJSON_Delete(desc);
    h_conn_close(&other);
    h_node_stop(&node);
}

/* ---- a client that never reads ----------------------------------------- */

Test(node, client_that_never_reads_its_replies_does_not_hurt_another,
     .timeout = T_TIMEOUT)
{
    enum { N = 20000 };
    char *batch = NULL, msg[512], pad[257];
    size_t len = 0, sent = 0;
    int stalls = 0, id = 1, rounds = 0;
    h_conn_t hog, other;
    h_node_t node;

    memset(pad, 'z', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (int i = 1; i <= N; i++) {
        snprintf(msg, sizeof(msg),
                 "{\"type\":\"call\",\"id\":%d,\"app\":\"echo\",\"action\":"
                 "\"echo\",\"args\":\"%s\"}",
                 i, pad);
        h_frame(H_NDJSON, msg, &batch, &len);
    }
    h_node_start(&node, "hog", NULL);
    /* The hog on the unix socket, whose small kernel buffers make the
     * node's own queue fill up. */
    h_conn_open(&other, node.tcp_url, H_NDJSON);
    h_conn_open(&hog, node.unix_url, H_NDJSON);
    /* Feed the hog's calls as fast as the node takes them, with a round
     * trip on the other client between writes: once the hog's replies
     * pile up the node stops reading it, its socket fills, and the other
     * client must still be served. Bounded: stops after three writes in a
     * row that the socket refused. */
    while (sent < len && stalls < 3 && rounds++ < N) {
        size_t n = h_send_nowait(&hog, batch + sent, len - sent);
        sent += n;
        stalls = n == 0 ? stalls + 1 : 0;
        expect_sum(&other, id++);
    }
    expect_unaffected(&other);
    h_conn_close(&hog);
    expect_sum(&other, id++);
    h_conn_close(&other);
    free(batch);
    h_node_stop(&node);
}

/* ---- signals and socket files ------------------------------------------ */

Test(node, sigterm_with_clients_connected_exits_0_and_removes_the_socket,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t idle, busy;
    struct stat st;

    h_node_start(&node, "term", NULL);
    cr_assert_eq(stat(node.sock_path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600);
    h_conn_open(&idle, node.unix_url, H_NDJSON);
    h_conn_open(&busy, node.tcp_url, H_NDJSON);
    expect_sum(&busy, 1);
    /* h_node_stop asserts exit status 0 and that the file is gone. */
    h_node_stop(&node);
    h_expect_eof(&idle);
    h_expect_eof(&busy);
    h_conn_close(&idle);
    h_conn_close(&busy);
}

Test(node, sigterm_answers_a_call_in_flight_with_estopping_and_exits_0,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    cJSON *m;
    h_conn_t c;

    h_node_start(&node, "inflight", NULL);
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    /* Far longer than the test: only the stop can end it. */
    h_send(&c, "{\"type\":\"call\",\"id\":1,\"app\":\"sleep\",\"action\":"
               "\"sleep\",\"args\":600000}");
    expect_sum(&c, 2);
    h_node_stop(&node);
    /* The caller is told, not left waiting for an answer that will never
     * come; then the connection closes with the node. */
    m = h_recv(&c, H_WAIT_MS);
    cr_assert_not_null(m, "no answer to the call in flight");
    assert_error_reply(m, 1, "ESTOPPING");
    h_expect_eof(&c);
    h_conn_close(&c);
}

Test(node, sigint_exits_0_and_removes_the_socket, .timeout = T_TIMEOUT)
{
    h_node_t node;
    int status;

    h_node_start(&node, "int", NULL);
    cr_assert_eq(kill(node.child.pid, SIGINT), 0);
    status = h_child_wait(&node.child, H_WAIT_MS);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status 0x%x",
              status);
    cr_assert_neq(access(node.sock_path, F_OK), 0);
    h_node_reap(&node);
}

/* Leaves a socket file nobody listens on, like a node that was killed. */
static void make_stale_socket(const char *path)
{
    struct sockaddr_un sun;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    cr_assert_lt(strlen(path), sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "%s",
                 strerror(errno));
    close(fd);
    cr_assert_eq(access(path, F_OK), 0);
}

Test(node, stale_socket_file_at_the_listen_path_is_replaced,
     .timeout = T_TIMEOUT)
{
    char dir[64], listen[200];
    const char *args[] = {"--name",   "replacer", "--app",   "sum",
                          "--listen", listen,     "--quiet", NULL};
    h_node_t node;
    h_conn_t c;

    h_tmpdir(dir);
    snprintf(listen, sizeof(listen), "unix://%s/stale.sock", dir);
    make_stale_socket(listen + 7);
    memset(&node, 0, sizeof(node));
    cr_assert_eq(h_node_spawn(&node, args), 0, "node refused a stale file");
    cr_assert_str_eq(node.unix_url, listen);
    h_conn_open(&c, node.unix_url, H_NDJSON);
    expect_sum(&c, 1);
    h_conn_close(&c);
    h_node_stop(&node);
    h_tmpdir_remove(dir);
}

Test(node, live_socket_at_the_listen_path_is_refused, .timeout = T_TIMEOUT)
{
    h_node_t first, second;
    char listen[200];
    const char *err;
    const char *args[] = {"--name",   "second",   "--app",
                          "sum",      "--listen", "tcp://127.0.0.1:0",
                          "--listen", listen,     "--quiet",
                          NULL};
    h_conn_t c;
    int status;

    h_node_start(&first, "first", NULL);
    h_conn_open(&c, first.unix_url, H_NDJSON);
    expect_sum(&c, 1);
    snprintf(listen, sizeof(listen), "%s", first.unix_url);
    memset(&second, 0, sizeof(second));
    cr_assert_eq(h_node_spawn(&second, args), -1,
                 "a second node listened on a live socket");
    status = h_child_wait(&second.child, H_WAIT_MS);
    err = h_node_stderr(&second);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status 0x%x: %s",
              status, err);
    cr_assert_not_null(strstr(err, "address already in use"), "%s", err);
    h_node_reap(&second);
    /* The first node lost neither its file nor its clients. */
    cr_assert_eq(access(first.sock_path, F_OK), 0);
    expect_sum(&c, 2);
    h_conn_close(&c);
    h_conn_open(&c, first.unix_url, H_MSGPACK);
    expect_sum(&c, 3);
    h_conn_close(&c);
    h_node_stop(&first);
}

Test(node, regular_file_at_the_listen_path_is_refused_and_kept,
     .timeout = T_TIMEOUT)
{
    char dir[64], listen[256], path[128];
    const char *err;
    h_node_t refused;
    const char *args[] = {"--name", "refused", "--listen",
                          listen,   "--quiet", NULL};
    int fd, status;

    h_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/file", dir);
    snprintf(listen, sizeof(listen), "unix://%s", path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    memset(&refused, 0, sizeof(refused));
    cr_assert_eq(h_node_spawn(&refused, args), -1);
    status = h_child_wait(&refused.child, H_WAIT_MS);
    err = h_node_stderr(&refused);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "status 0x%x: %s",
              status, err);
    cr_assert_not_null(strstr(err, "address already in use"), "%s", err);
    h_node_reap(&refused);
    cr_assert_eq(access(path, F_OK), 0, "a regular file was removed");
    h_tmpdir_remove(dir);
}
