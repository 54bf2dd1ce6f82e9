/* The client subcommands (call, tell, emit, describe) and every command's
 * --help, run as processes against a real node. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "integration/harness.h"

#define T_TIMEOUT 60

TestSuite(cli, .init = h_init, .fini = h_fini, .timeout = T_TIMEOUT);

/* Runs `shoal ARGS...` (NULL-terminated). */
#define SHOAL(run, ...)                                                       \
    h_run_shoal((const char *const[]){__VA_ARGS__, NULL}, run)

static void assert_exit(const h_run_t *run, int code)
{
    cr_assert_eq(run->exit_code, code,
                 "exit %d (status 0x%x), want %d\nstdout: %s\nstderr: %s",
                 run->exit_code, run->status, code, run->out, run->err);
}

/* The whole of stdout, as JSON. */
static cJSON *stdout_json(const h_run_t *run)
{
    cJSON *json = cJSON_Parse(run->out);

    cr_assert_not_null(json, "stdout is not JSON: %s", run->out);
    return json;
}

/* ---- call ------------------------------------------------------------- */

Test(cli, call_prints_the_result_and_exits_0_in_each_framing,
     .timeout = T_TIMEOUT)
{
    static const char *const framings[] = {"ndjson", "json-socket", "msgpack"};
    h_node_t node;
    h_run_t run;
    cJSON *out;

    h_node_start(&node, "cli", NULL);
    for (size_t f = 0; f < 3; f++) {
        const char *urls[] = {node.tcp_url, node.unix_url};
        for (size_t u = 0; u < 2; u++) {
            SHOAL(&run, "call", urls[u], "sum", "sum", "[1,2,3.5]",
                  "--framing", framings[f]);
            assert_exit(&run, 0);
            cr_assert_str_eq(run.out, "6.5\n", "%s over %s", framings[f],
                             urls[u]);
            h_run_free(&run);
        }
        SHOAL(&run, "call", "--framing", framings[f], node.tcp_url, "echo",
              "echo", "{\"s\":\"\\u00e9\xe2\x9c\x93\",\"a\":[true,null]}");
        assert_exit(&run, 0);
        out = stdout_json(&run);
        cr_assert(h_json_eq(out, "",
                            "{\"s\":\"\xc3\xa9\xe2\x9c\x93\",\"a\":[true,"
                            "null]}"),
                  "%s: %s", framings[f], run.out);
        cr_assert_eq(strchr(run.out, '\n')[1], '\0', "one line: %s", run.out);
        cJSON_Delete(out);
        h_run_free(&run);
    }
    h_node_stop(&node);
}

Test(cli, call_without_args_sends_none_and_pretty_indents,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_run_t run;
    cJSON *out;

    h_node_start(&node, "cli", NULL);
    SHOAL(&run, "call", node.tcp_url, "echo", "echo");
    assert_exit(&run, 0);
    cr_assert_str_eq(run.out, "null\n");
    h_run_free(&run);
    SHOAL(&run, "call", node.tcp_url, "echo", "echo", "{\"a\":{\"b\":1}}",
          "--pretty");
    assert_exit(&run, 0);
    cr_assert_not_null(strchr(run.out, '\n'));
    cr_assert_neq(strchr(run.out, '\n')[1], '\0', "not indented: %s", run.out);
    out = stdout_json(&run);
    cr_assert_eq(h_num(out, "a.b"), 1);
    cJSON_Delete(out);
    h_run_free(&run);
    h_node_stop(&node);
}

Test(cli, call_answered_with_an_error_prints_it_and_exits_1,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_run_t run;
    cJSON *out;

    h_node_start(&node, "cli", NULL);
    SHOAL(&run, "call", node.tcp_url, "fail", "any",
          "{\"code\":\"EFOO\",\"message\":\"boom\"}");
    assert_exit(&run, 1);
    out = stdout_json(&run);
    cr_assert_str_eq(h_str(out, "error.code"), "EFOO");
    cr_assert_str_eq(h_str(out, "error.message"), "boom");
    cJSON_Delete(out);
    cr_assert_not_null(strstr(run.err, "EFOO"), "%s", run.err);
    h_run_free(&run);

    SHOAL(&run, "call", node.unix_url, "nope", "x", "--framing", "msgpack");
    assert_exit(&run, 1);
    out = stdout_json(&run);
    cr_assert_str_eq(h_str(out, "error.code"), "ENOAPP");
    cr_assert_not_null(strstr(h_str(out, "error.message"), "nope"));
    cJSON_Delete(out);
    h_run_free(&run);

    SHOAL(&run, "call", node.tcp_url, "sum", "nope");
    assert_exit(&run, 1);
    out = stdout_json(&run);
    cr_assert_str_eq(h_str(out, "error.code"), "ENOACTION");
    cJSON_Delete(out);
    h_run_free(&run);
    h_node_stop(&node);
}

/* A listening socket nobody accepts on: the kernel completes the
 * handshake and takes the call, and no answer ever comes. */
static int silent_listener(char *url, size_t cap)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(fd, 4), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(url, cap, "tcp://127.0.0.1:%d", ntohs(sin.sin_port));
    return fd;
}

Test(cli, call_that_times_out_exits_2, .timeout = T_TIMEOUT)
{
    char url[64];
    int fd = silent_listener(url, sizeof(url));
    h_run_t run;
    cJSON *out;

    SHOAL(&run, "call", url, "sum", "sum", "[1]", "--timeout", "100");
    assert_exit(&run, 2);
    out = stdout_json(&run);
    cr_assert_str_eq(h_str(out, "error.code"), "ETIMEDOUT");
    cJSON_Delete(out);
    h_run_free(&run);
    SHOAL(&run, "describe", url, "--timeout", "100");
    assert_exit(&run, 2);
    h_run_free(&run);
    close(fd);
}

Test(cli, call_to_a_port_nobody_listens_on_exits_2, .timeout = T_TIMEOUT)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    char url[64], dir[64], unix_url[128];
    h_run_t run;
    int fd;

    /* Bound and not listening: connections to it are refused, and no
     * other test can take the port while it is held. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", ntohs(sin.sin_port));
    SHOAL(&run, "call", url, "sum", "sum", "[1]");
    assert_exit(&run, 2);
    cr_assert_not_null(strstr(run.err, "connection refused"), "%s", run.err);
    h_run_free(&run);
    close(fd);

    h_tmpdir(dir);
    snprintf(unix_url, sizeof(unix_url), "unix://%s/none.sock", dir);
    SHOAL(&run, "call", unix_url, "sum", "sum", "[1]");
    assert_exit(&run, 2);
    h_run_free(&run);
    SHOAL(&run, "describe", unix_url);
    assert_exit(&run, 2);
    h_run_free(&run);
    SHOAL(&run, "tell", url, "echo", "1");
    assert_exit(&run, 2);
    h_run_free(&run);
    SHOAL(&run, "emit", url, "ping");
    assert_exit(&run, 2);
    h_run_free(&run);
    h_tmpdir_remove(dir);
}

Test(cli, invalid_json_arguments_exit_2_before_connecting,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_run_t run;
    cJSON *desc;

    h_node_start(&node, "cli", NULL);
    SHOAL(&run, "call", node.tcp_url, "sum", "sum", "[1,");
    assert_exit(&run, 2);
    cr_assert_not_null(strstr(run.err, "ARGS_JSON is not valid JSON"), "%s",
                       run.err);
    cr_assert_str_eq(run.out, "");
    h_run_free(&run);
    SHOAL(&run, "call", node.tcp_url, "sum", "sum", "[1] trailing");
    assert_exit(&run, 2);
    h_run_free(&run);
    SHOAL(&run, "tell", node.tcp_url, "echo", "{nope}");
    assert_exit(&run, 2);
    cr_assert_not_null(strstr(run.err, "MSG_JSON"), "%s", run.err);
    h_run_free(&run);
    SHOAL(&run, "emit", node.tcp_url, "ping", "'x'");
    assert_exit(&run, 2);
    cr_assert_not_null(strstr(run.err, "DATA_JSON"), "%s", run.err);
    h_run_free(&run);
    /* None of them reached the node. */
    SHOAL(&run, "describe", node.tcp_url);
    assert_exit(&run, 0);
    desc = stdout_json(&run);
    cr_assert_eq(h_num(desc, "counters.conns_accepted"), 1);
    cJSON_Delete(desc);
    h_run_free(&run);
    h_node_stop(&node);
}

Test(cli, usage_errors_exit_2, .timeout = T_TIMEOUT)
{
    const char *const *const cases[] = {
        (const char *const[]){NULL},
        (const char *const[]){"frobnicate", NULL},
        (const char *const[]){"call", "tcp://127.0.0.1:1", "sum", NULL},
        (const char *const[]){"call", "--bogus", NULL},
        (const char *const[]){"call", "--framing", "xml", "tcp://x:1", "a",
                              "b", NULL},
        (const char *const[]){"call", "--timeout", "soon", "tcp://x:1", "a",
                              "b", NULL},
        (const char *const[]){"tell", "tcp://127.0.0.1:1", NULL},
        (const char *const[]){"emit", NULL},
        (const char *const[]){"describe", NULL},
        (const char *const[]){"node", "--max-depth", "100000", NULL},
        (const char *const[]){"node", "--max-frame-bytes", "0", NULL},
        (const char *const[]){"node", "stray", NULL},
        (const char *const[]){"node", "--app", "nosuchapp", NULL},
        (const char *const[]){"node", "--listen", "http://x", NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h_run_t run;
        h_run_shoal(cases[i], &run);
        cr_assert_eq(run.exit_code, 2, "case %zu (%s): exit %d, stderr %s", i,
                     cases[i][0] ? cases[i][0] : "(none)", run.exit_code,
                     run.err);
        cr_assert_neq(run.err[0], '\0', "case %zu says nothing", i);
        h_run_free(&run);
    }
}

Test(cli, help_on_every_command_exits_0_and_prints_usage, .timeout = T_TIMEOUT)
{
    static const char *const commands[] = {"node", "call", "tell", "emit",
                                           "describe"};
    char want[64];
    h_run_t run;

    SHOAL(&run, "--help");
    assert_exit(&run, 0);
    cr_assert(strncmp(run.out, "usage: shoal COMMAND", 20) == 0, "%s",
              run.out);
    for (size_t i = 0; i < 5; i++)
        cr_assert_not_null(strstr(run.out, commands[i]), "%s", commands[i]);
    h_run_free(&run);
    for (size_t i = 0; i < 5; i++) {
        snprintf(want, sizeof(want), "usage: shoal %s ", commands[i]);
        SHOAL(&run, commands[i], "--help");
        assert_exit(&run, 0);
        cr_assert(strncmp(run.out, want, strlen(want)) == 0, "%s: %s",
                  commands[i], run.out);
        h_run_free(&run);
        /* -h too, and --help wins over anything else on the line. */
        SHOAL(&run, commands[i], "tcp://127.0.0.1:1", "-h");
        assert_exit(&run, 0);
        cr_assert(strncmp(run.out, want, strlen(want)) == 0, "%s: %s",
                  commands[i], run.out);
        h_run_free(&run);
    }
}

/* ---- tell, emit, describe --------------------------------------------- */

/* The node's describe output, read through the CLI. */
static cJSON *cli_describe(const char *url)
{
    h_run_t run;
    cJSON *desc;

    SHOAL(&run, "describe", url);
    assert_exit(&run, 0);
    desc = stdout_json(&run);
    h_run_free(&run);
    return desc;
}

Test(cli, tell_is_delivered_and_counted, .timeout = T_TIMEOUT)
{
    static const char *const framings[] = {"ndjson", "json-socket", "msgpack"};
    h_node_t node;
    h_run_t run;
    bool counted = false;

    h_node_start(&node, "cli", NULL);
    for (size_t f = 0; f < 3; f++) {
        SHOAL(&run, "tell", node.tcp_url, "echo", "{\"n\":1}", "--framing",
              framings[f]);
        assert_exit(&run, 0);
        cr_assert_str_eq(run.out, "");
        h_run_free(&run);
    }
    SHOAL(&run, "tell", node.unix_url, "echo");
    assert_exit(&run, 0);
    h_run_free(&run);
    /* Each tell came on its own connection, so the node may read the
     * count call first: ask again a bounded number of times. */
    for (int i = 0; i < 100 && !counted; i++) {
        SHOAL(&run, "call", node.tcp_url, "echo", "count");
        assert_exit(&run, 0);
        counted = strcmp(run.out, "4\n") == 0;
        cr_assert(counted || strcmp(run.out, "0\n") == 0 ||
                      strcmp(run.out, "1\n") == 0 ||
                      strcmp(run.out, "2\n") == 0 ||
                      strcmp(run.out, "3\n") == 0,
                  "count: %s", run.out);
        h_run_free(&run);
    }
    cr_assert(counted, "the node did not count 4 tells");
    h_node_stop(&node);
}

Test(cli, emit_is_accepted_and_counted, .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_run_t run;
    cJSON *desc = NULL;
    bool counted = false;

    h_node_start(&node, "cli", NULL);
    SHOAL(&run, "emit", node.tcp_url, "ping", "{\"x\":[1,2]}");
    assert_exit(&run, 0);
    cr_assert_str_eq(run.out, "");
    h_run_free(&run);
    SHOAL(&run, "emit", node.unix_url, "bare", "--framing", "msgpack");
    assert_exit(&run, 0);
    h_run_free(&run);
    for (int i = 0; i < 100 && !counted; i++) {
        cJSON_Delete(desc);
        desc = cli_describe(node.tcp_url);
        counted = h_num(desc, "counters.events_in") == 2;
    }
    cr_assert(counted, "events_in: %g", h_num(desc, "counters.events_in"));
    cr_assert_eq(h_num(desc, "counters.errors"), 0);
    cJSON_Delete(desc);
    h_node_stop(&node);
}

Test(cli, describe_prints_the_nodes_description, .timeout = T_TIMEOUT)
{
    static const char *const framings[] = {"ndjson", "json-socket", "msgpack"};
    h_node_t node;
    h_run_t run;
    cJSON *desc;

    h_node_start(&node, "described", NULL);
    for (size_t f = 0; f < 3; f++) {
        SHOAL(&run, "describe", node.unix_url, "--framing", framings[f]);
        assert_exit(&run, 0);
        desc = stdout_json(&run);
        cr_assert_str_eq(h_str(desc, "name"), "described");
        cr_assert_eq(h_num(desc, "pid"), node.child.pid);
        cr_assert_str_eq(h_str(desc, "addresses.0"), node.addresses[0]);
        cr_assert_str_eq(h_str(desc, "addresses.1"), node.addresses[1]);
        cr_assert_eq(cJSON_GetArraySize(h_at(desc, "applications")), 4);
        cr_assert_eq(h_num(desc, "counters.conns_accepted"), f + 1);
        cJSON_Delete(desc);
        h_run_free(&run);
    }
    SHOAL(&run, "describe", node.tcp_url, "--pretty");
    assert_exit(&run, 0);
    cr_assert_gt(strlen(run.out), 0);
    cr_assert_neq(strchr(run.out, '\n')[1], '\0', "not indented");
    desc = stdout_json(&run);
    cr_assert_str_eq(h_str(desc, "name"), "described");
    cJSON_Delete(desc);
    h_run_free(&run);
    h_node_stop(&node);
}

Test(cli, version_prints_the_version, .timeout = T_TIMEOUT)
{
    h_run_t run;

    SHOAL(&run, "--version");
    assert_exit(&run, 0);
    cr_assert(strncmp(run.out, "shoal ", 6) == 0, "%s", run.out);
    h_run_free(&run);
}
