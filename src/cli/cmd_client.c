/* shoal call, tell, emit, describe: one request to a running node. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 60000

typedef struct {
    shoal_framing_t framing;
    uint64_t timeout_ms;
    bool pretty;
} client_opts_t;

static const struct option client_long_opts[] = {
    {"framing", required_argument, NULL, 'f'},
    {"timeout", required_argument, NULL, 't'},
    {"pretty", no_argument, NULL, 'p'},
    {NULL, 0, NULL, 0},
};

/* Parses the options every client command takes; leaves the positional
 * arguments at argv[optind..]. */
static int client_parse_opts(const char *cmd, int argc, char **argv,
                             client_opts_t *opts)
{
    int c;

    opts->framing = SHOAL_FRAMING_NDJSON;
    opts->timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
    opts->pretty = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:t:p", client_long_opts, NULL)) !=
           -1) {
        switch (c) {
        case 'f':
            if (shoal_framing_parse(optarg, &opts->framing) != 0)
                return cli_usage_error(cmd, "unknown framing '%s'", optarg);
            break;
        case 't':
            if (!cli_parse_u64(optarg, &opts->timeout_ms))
                return cli_usage_error(cmd, "--timeout takes milliseconds");
            break;
        case 'p':
            opts->pretty = true;
            break;
        default:
            return cli_usage_error(cmd, "unknown option");
        }
    }
    return 0;
}

static void client_print_json(const char *text, size_t len, bool pretty)
{
    cJSON *json;
    char *printed;

    if (!pretty) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        return;
    }
    json = cJSON_ParseWithLength(text, len);
    printed = json ? cJSON_Print(json) : NULL;
    if (printed)
        printf("%s\n", printed);
    else
        printf("%.*s\n", (int)len, text);
    free(printed);
    cJSON_Delete(json);
}

/* Prints the outcome of a call: the result, or the error as
 * {"error":{"code","message"}} on stdout and a line on stderr. */
static int client_report(const char *cmd, cli_client_t *c, int status,
                         bool pretty)
{
    cJSON *out, *error;
    char *text;

    if (status == 0) {
        client_print_json(c->result.base, c->result.len, pretty);
        return CLI_EXIT_OK;
    }
    out = cJSON_CreateObject();
    error = cJSON_AddObjectToObject(out, "error");
    cJSON_AddStringToObject(error, "code", c->code);
    cJSON_AddStringToObject(error, "message", c->message);
    text = pretty ? cJSON_Print(out) : cJSON_PrintUnformatted(out);
    printf("%s\n", text);
    fprintf(stderr, "shoal %s: %s: %s\n", cmd, c->code, c->message);
    free(text);
    cJSON_Delete(out);
    /* A reply that says error is the peer's answer; anything else (time
     * out, lost connection) is a failure to get one. */
    if (status == SHOAL_ETIMEDOUT || status == SHOAL_ECONNCLOSED)
        return CLI_EXIT_FAILURE;
    return CLI_EXIT_ERROR_REPLY;
}

void cli_usage_call(FILE *out)
{
    fprintf(out,
            "usage: shoal call URL APP ACTION [ARGS_JSON] [OPTIONS]\n\n"
            "Calls ACTION of application APP on the node at URL and prints "
            "the\nresult as JSON. On an error reply prints "
            "{\"error\":{\"code\",\"message\"}}\nand exits 1; exits 2 when "
            "no reply came (connection, time-out, usage).\n\n"
            "  --framing F    ndjson (default), json-socket or msgpack\n"
            "  --timeout MS   give up after MS milliseconds (default 60000, "
            "0: never)\n"
            "  --pretty       indent the JSON\n\n"
            "Example: shoal call tcp://127.0.0.1:7000 sum sum '[1,2,3]'\n");
}

int cli_cmd_call(int argc, char **argv)
{
    shoal_payload_t args = {NULL, 0, SHOAL_CODEC_NONE};
    client_opts_t opts;
    cli_client_t c;
    int err, n;

    if ((err = client_parse_opts("call", argc, argv, &opts)))
        return err;
    n = argc - optind;
    if (n < 3 || n > 4)
        return cli_usage_error("call", "expected URL APP ACTION [ARGS_JSON]");
    if (n == 4 && cli_json_arg("call", "ARGS_JSON", argv[optind + 3], &args))
        return CLI_EXIT_FAILURE;
    if (cli_client_open(&c, argv[optind], opts.framing) != 0) {
        cli_client_close(&c);
        return CLI_EXIT_FAILURE;
    }
    err = cli_client_call(&c, argv[optind + 1], argv[optind + 2],
                          n == 4 ? &args : NULL, opts.timeout_ms);
    err = client_report("call", &c, err, opts.pretty);
    cli_client_close(&c);
    return err;
}

void cli_usage_describe(FILE *out)
{
    fprintf(out,
            "usage: shoal describe URL [OPTIONS]\n\n"
            "Prints the description of the node at URL: name, addresses, "
            "pid,\napplications, known nodes, counters and load.\n\n"
            "  --framing F    ndjson (default), json-socket or msgpack\n"
            "  --timeout MS   give up after MS milliseconds (default 60000)\n"
            "  --pretty       indent the JSON\n");
}

int cli_cmd_describe(int argc, char **argv)
{
    client_opts_t opts;
    cli_client_t c;
    int err;

    if ((err = client_parse_opts("describe", argc, argv, &opts)))
        return err;
    if (argc - optind != 1)
        return cli_usage_error("describe", "expected URL");
    if (cli_client_open(&c, argv[optind], opts.framing) != 0) {
        cli_client_close(&c);
        return CLI_EXIT_FAILURE;
    }
    err = cli_client_describe(&c, opts.timeout_ms);
    err = client_report("describe", &c, err, opts.pretty);
    cli_client_close(&c);
    return err;
}

/* tell and emit send one message and wait until it is written. */
static int client_send_one(const char *cmd, int argc, char **argv,
                           bool is_event)
{
    shoal_payload_t body = {NULL, 0, SHOAL_CODEC_NONE};
    client_opts_t opts;
    cli_client_t c;
    int err, n;

    if ((err = client_parse_opts(cmd, argc, argv, &opts)))
        return err;
    n = argc - optind;
    if (n < 2 || n > 3)
        return cli_usage_error(cmd, is_event ? "expected URL EVENT [DATA_JSON]"
                                             : "expected URL APP [MSG_JSON]");
    if (n == 3 && cli_json_arg(cmd, is_event ? "DATA_JSON" : "MSG_JSON",
                               argv[optind + 2], &body))
        return CLI_EXIT_FAILURE;
    if (cli_client_open(&c, argv[optind], opts.framing) != 0) {
        cli_client_close(&c);
        return CLI_EXIT_FAILURE;
    }
    if (is_event)
        err = shoal_conn_emit(c.conn, argv[optind + 1], n == 3 ? &body : NULL);
    else
        err = shoal_conn_tell(c.conn, argv[optind + 1], n == 3 ? &body : NULL);
    if (err) {
        fprintf(stderr, "shoal %s: %s\n", cmd, shoal_strerror(err));
        cli_client_close(&c);
        return CLI_EXIT_FAILURE;
    }
    /* A tell or an event has no reply, but a node that refuses one says
     * so: a describe round trip after it shows whether it did. */
    err = cli_client_describe(&c, opts.timeout_ms);
    if (c.peer_error[0] != '\0') {
        fprintf(stderr, "shoal %s: the node refused it: %s\n", cmd,
                c.peer_error);
        cli_client_close(&c);
        return CLI_EXIT_ERROR_REPLY;
    }
    if (err)
        fprintf(stderr, "shoal %s: sent, but the node did not confirm: %s\n",
                cmd, c.message);
    cli_client_close(&c);
    return err ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

void cli_usage_tell(FILE *out)
{
    fprintf(out, "usage: shoal tell URL APP [MSG_JSON] [OPTIONS]\n\n"
                 "Sends MSG_JSON to application APP on the node at URL. "
                 "Tells get no\nreply; the command waits until the node has "
                 "read it and exits 1 if\nthe node refused it (an unknown "
                 "APP, for instance).\n\n"
                 "  --framing F    ndjson (default), json-socket or "
                 "msgpack\n");
}

int cli_cmd_tell(int argc, char **argv)
{
    return client_send_one("tell", argc, argv, false);
}

void cli_usage_emit(FILE *out)
{
    fprintf(out, "usage: shoal emit URL EVENT [DATA_JSON] [OPTIONS]\n\n"
                 "Sends the named event with DATA_JSON to the node at URL.\n\n"
                 "  --framing F    ndjson (default), json-socket or "
                 "msgpack\n");
}

int cli_cmd_emit(int argc, char **argv)
{
    return client_send_one("emit", argc, argv, true);
}
