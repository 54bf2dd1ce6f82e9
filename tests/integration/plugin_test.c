/* C plugins (src/app_plugin.c and workers/): `shoal node --app NAME
 * --app-path DIR` with the bundled collatz and wordcount, and the ways a
 * plugin fails to load. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "integration/harness.h"

#define T_TIMEOUT 60

TestSuite(plugin, .init = h_init, .fini = h_fini, .timeout = T_TIMEOUT);

static void start_with(h_node_t *node, const char *app)
{
    const char *extra[] = {"--app", app, "--app-path", SHOAL_PLUGIN_DIR, NULL};

    h_node_start(node, "plugins", extra);
}

/* Sends a call and asserts its reply's result is the JSON text want. */
static void expect_result(h_conn_t *c, const char *call, const char *want)
{
    cJSON *reply = h_call(c, call);

    cr_assert(h_json_eq(reply, "result", want), "got %s for %s",
              cJSON_PrintUnformatted(reply), call);
    cJSON_Delete(reply);
}

static void expect_error(h_conn_t *c, const char *call, const char *code,
                         const char *message_part)
{
    cJSON *reply = h_call(c, call);
    const char *got = h_str(reply, "error.code");
    const char *message = h_str(reply, "error.message");

    cr_assert(got != NULL && strcmp(got, code) == 0, "got %s for %s",
              cJSON_PrintUnformatted(reply), call);
    cr_assert(message != NULL && strstr(message, message_part) != NULL,
              "message %s", message ? message : "(none)");
    cJSON_Delete(reply);
}

Test(plugin, collatz_finds_the_longest_chain_below_a_million,
     .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;

    start_with(&node, "collatz");
    h_conn_open(&c, node.unix_url, H_MSGPACK);
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":1,\"app\":\"collatz\","
                  "\"action\":\"range\",\"args\":[1,1000000]}",
                  "{\"n\":837799,\"steps\":524,\"count\":999999}");
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":2,\"app\":\"collatz\","
                  "\"action\":\"range\",\"args\":{\"lo\":20,\"hi\":30}}",
                  "{\"n\":27,\"steps\":111,\"count\":10}");
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":3,\"app\":\"collatz\","
                  "\"action\":\"steps\",\"args\":{\"n\":27}}",
                  "111");
    /* 12327829503 climbs to 20722398914405051728, past 2^64, on its way
     * down: the walk goes on in 128 bits. */
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":4,\"app\":\"collatz\","
                  "\"action\":\"range\",\"args\":[12327829500,"
                  "12327829600]}",
                  "{\"n\":12327829503,\"steps\":543,\"count\":100}");
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":9,\"app\":\"collatz\","
                  "\"action\":\"range\",\"args\":[0,2]}",
                  "{\"n\":1,\"steps\":0,\"count\":2}");
    expect_error(&c,
                 "{\"type\":\"call\",\"id\":5,\"app\":\"collatz\","
                 "\"action\":\"range\",\"args\":[5,5]}",
                 "EBADTYPE", "0 <= lo < hi <= 2^40");
    expect_error(&c,
                 "{\"type\":\"call\",\"id\":6,\"app\":\"collatz\","
                 "\"action\":\"range\",\"args\":[1,1099511627777]}",
                 "EBADTYPE", "2^40");
    expect_error(&c,
                 "{\"type\":\"call\",\"id\":7,\"app\":\"collatz\","
                 "\"action\":\"range\",\"args\":[1.5,3]}",
                 "EBADTYPE", "two integers");
    expect_error(&c,
                 "{\"type\":\"call\",\"id\":8,\"app\":\"collatz\","
                 "\"action\":\"steps\",\"args\":{\"n\":0}}",
                 "EBADTYPE", "1 <= N");
    h_conn_close(&c);
    h_node_stop(&node);
}

Test(plugin, node_answers_others_while_collatz_computes, .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;
    cJSON *first, *second;

    start_with(&node, "collatz");
    h_conn_open(&c, node.tcp_url, H_NDJSON);
    h_send(&c, "{\"type\":\"call\",\"id\":1,\"app\":\"collatz\","
               "\"action\":\"range\",\"args\":[1,10000000]}");
    h_send(&c, "{\"type\":\"call\",\"id\":2,\"app\":\"echo\","
               "\"action\":\"echo\",\"args\":\"still here\"}");
    /* The range runs on the thread pool: the echo is answered first. */
    first = h_expect(&c);
    cr_assert(h_json_eq(first, "id", "2"), "first reply: %s",
              cJSON_PrintUnformatted(first));
    cr_assert(h_json_eq(first, "result", "\"still here\""));
    second = h_expect(&c);
    cr_assert(h_json_eq(second, "id", "1"));
    cr_assert(h_json_eq(second, "result",
                        "{\"n\":8400511,\"steps\":685,\"count\":9999999}"),
              "%s", cJSON_PrintUnformatted(second));
    cJSON_Delete(first);
    cJSON_Delete(second);
    h_conn_close(&c);
    h_node_stop(&node);
}

Test(plugin, wordcount_registers_split_and_count, .timeout = T_TIMEOUT)
{
    h_node_t node;
    h_conn_t c;

    start_with(&node, "wordcount");
    h_conn_open(&c, node.unix_url, H_NDJSON);
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":1,\"app\":\"split\","
                  "\"action\":\"split\",\"args\":{\"sentence\":"
                  "\"The cat, THE hat\\u2014\\u00c9lan stra\\u00dfe "
                  "\\u6771\\u4eac!\"}}",
                  "[\"the\",\"cat\",\"the\",\"hat\",\"\xc3\xa9lan\","
                  "\"stra\xc3\x9f"
                  "e\",\"\xe6\x9d\xb1\xe4\xba\xac\"]");
    h_send(&c, "{\"type\":\"tell\",\"app\":\"count\",\"msg\":{\"word\":"
               "\"the\"}}");
    h_send(&c, "{\"type\":\"tell\",\"app\":\"count\",\"msg\":{\"word\":"
               "\"cat\"}}");
    h_send(&c, "{\"type\":\"tell\",\"app\":\"count\",\"msg\":{\"word\":"
               "\"the\"}}");
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":2,\"app\":\"count\","
                  "\"action\":\"count\",\"args\":{\"word\":\"the\"}}",
                  "3");
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":3,\"app\":\"count\","
                  "\"action\":\"count\",\"args\":{\"word\":\"hat\"}}",
                  "1");
    expect_result(&c,
                  "{\"type\":\"call\",\"id\":4,\"app\":\"count\","
                  "\"action\":\"top\",\"args\":{\"n\":2}}",
                  "[[\"the\",3],[\"cat\",1]]");
    expect_error(&c,
                 "{\"type\":\"call\",\"id\":5,\"app\":\"count\","
                 "\"action\":\"count\",\"args\":{\"word\":7}}",
                 "EBADTYPE", "word");
    h_conn_close(&c);
    h_node_stop(&node);
}

/* ---- failures to load ------------------------------------------------- */

/* Runs `shoal node --app NAME --app-path DIR` and asserts exit status 2
 * with each of the parts in its stderr. */
static void expect_load_failure(const char *name, const char *dir,
                                const char *part1, const char *part2)
{
    h_run_t run;

    h_run_shoal(
        (const char *const[]){"node", "--app", name, "--app-path", dir, NULL},
        &run);
    cr_assert_eq(run.exit_code, 2, "exit %d, stderr: %s", run.exit_code,
                 run.err);
    cr_assert_not_null(strstr(run.err, part1), "stderr: %s", run.err);
    cr_assert_not_null(strstr(run.err, part2), "stderr: %s", run.err);
    h_run_free(&run);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");

    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

Test(plugin, a_file_that_is_not_elf_exits_2_naming_it, .timeout = T_TIMEOUT)
{
    char dir[64], path[128], text[256];

    h_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/bad.so", dir);
    memset(text, '#', sizeof(text));
    write_file(path, text, sizeof(text));
    expect_load_failure("bad", dir, path, "invalid ELF header");
    h_tmpdir_remove(dir);
}

Test(plugin, a_library_without_the_symbol_exits_2_naming_it,
     .timeout = T_TIMEOUT)
{
    expect_load_failure("nosym", SHOAL_TEST_PLUGIN_DIR,
                        SHOAL_TEST_PLUGIN_DIR "/nosym.so",
                        "does not export shoal_plugin_register");
}

Test(plugin, a_missing_plugin_exits_2_naming_the_path, .timeout = T_TIMEOUT)
{
    char dir[64], want[128];

    h_tmpdir(dir);
    snprintf(want, sizeof(want), "no nosuchapp.so in %s", dir);
    expect_load_failure("nosuchapp", dir, "application 'nosuchapp'", want);
    h_tmpdir_remove(dir);
}

Test(plugin, a_plugin_asked_for_a_name_it_lacks_exits_2, .timeout = T_TIMEOUT)
{
    char dir[64], path[128];
    FILE *in;
    char *data;
    long len;

    /* collatz.so under another name is asked for "other". */
    h_tmpdir(dir);
    in = fopen(SHOAL_PLUGIN_DIR "/collatz.so", "rb");
    cr_assert_not_null(in);
    fseek(in, 0, SEEK_END);
    len = ftell(in);
    fseek(in, 0, SEEK_SET);
    data = malloc((size_t)len);
    cr_assert_eq(fread(data, 1, (size_t)len, in), (size_t)len);
    fclose(in);
    snprintf(path, sizeof(path), "%s/other.so", dir);
    write_file(path, data, (size_t)len);
    free(data);
    expect_load_failure("other", dir, path,
                        "shoal_plugin_register returned no such "
                        "application");
    h_tmpdir_remove(dir);
}
