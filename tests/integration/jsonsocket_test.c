/* Interoperability: the unmodified json-socket npm package, driven by
 * tests/integration/node/jsonsocket_client.js, talks to a real node. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "integration/harness.h"

#define T_TIMEOUT 60
#define JS_DIR SHOAL_SOURCE_DIR "/tests/integration/node"

TestSuite(jsonsocket, .init = h_init, .fini = h_fini, .timeout = T_TIMEOUT);

/* scripts/test runs npm install there before the tests; say so plainly
 * when it has not run. */
static void require_json_socket(void)
{
    cr_assert_eq(access(JS_DIR "/node_modules/json-socket/package.json", R_OK),
                 0,
                 "json-socket is not installed: run `npm install` in %s "
                 "(scripts/test does)",
                 JS_DIR);
}

static void run_client(const char *url)
{
    const char *argv[] = {"node", JS_DIR "/jsonsocket_client.js", url, NULL};
    h_run_t run;

    h_run(argv, &run);
    cr_assert_eq(run.exit_code, 0,
                 "jsonsocket_client.js %s: exit %d\nstdout: %s\nstderr: %s",
                 url, run.exit_code, run.out, run.err);
    h_run_free(&run);
}

Test(jsonsocket, npm_json_socket_client_is_served_over_tcp,
     .timeout = T_TIMEOUT)
{
    h_node_t node;

    require_json_socket();
    h_node_start(&node, "js-tcp", NULL);
    run_client(node.tcp_url);
    h_node_stop(&node);
}

Test(jsonsocket, npm_json_socket_client_is_served_over_a_unix_socket,
     .timeout = T_TIMEOUT)
{
    h_node_t node;

    require_json_socket();
    h_node_start(&node, "js-unix", NULL);
    run_client(node.unix_url);
    h_node_stop(&node);
}

Test(jsonsocket, npm_json_socket_client_exits_1_when_the_node_is_gone,
     .timeout = T_TIMEOUT)
{
    const char *argv[] = {"node", JS_DIR "/jsonsocket_client.js", NULL, NULL};
    char dir[64], url[128];
    h_run_t run;

    /* The client reports failure, so the tests above mean something. */
    require_json_socket();
    h_tmpdir(dir);
    snprintf(url, sizeof(url), "unix://%s/none.sock", dir);
    argv[2] = url;
    h_run(argv, &run);
    cr_assert_eq(run.exit_code, 1, "exit %d: %s", run.exit_code, run.err);
    h_run_free(&run);
    h_tmpdir_remove(dir);
}
