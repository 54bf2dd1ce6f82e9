/* Helpers shared by the subcommands: usage errors, numbers, and a client
 * that runs the loop until each answer is in. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "shoal %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see `shoal %s --help`)\n", cmd);
    return CLI_EXIT_FAILURE;
}

bool cli_parse_u64(const char *text, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (text == NULL || text[0] < '0' || text[0] > '9')
        return false;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

void cli_write_ready(const char *cmd, int fd, cJSON *ready)
{
    char *text = cJSON_PrintUnformatted(ready);

    fflush(stdout);
    if (fd >= 0 && text != NULL) {
        size_t len = strlen(text);
        text[len] = '\n';
        if (write(fd, text, len + 1) < 0)
            fprintf(stderr, "shoal %s: --ready-fd: %s\n", cmd,
                    strerror(errno));
        close(fd);
    }
    free(text);
    cJSON_Delete(ready);
}

int cli_json_arg(const char *cmd, const char *what, const char *text,
                 shoal_payload_t *out)
{
    cJSON *json = cJSON_ParseWithOpts(text, NULL, 1);

    if (json == NULL)
        return cli_usage_error(cmd, "%s is not valid JSON: %s", what, text);
    cJSON_Delete(json);
    out->data = text;
    out->len = strlen(text);
    out->codec = SHOAL_CODEC_JSON;
    return 0;
}

static void client_connected_cb(shoal_conn_t *conn, int status, void *data)
{
    cli_client_t *c = data;

    (void)conn;
    c->status = status;
    c->done = true;
    if (status < 0)
        c->conn = NULL;
}

static void client_peer_error(shoal_node_t *node, shoal_conn_t *conn, int err,
                              const char *message, void *data)
{
    cli_client_t *c = data;

    (void)node;
    (void)conn;
    if (c->peer_error[0] == '\0')
        snprintf(c->peer_error, sizeof(c->peer_error), "%s: %s",
                 shoal_err_name(err), message);
}

static void client_run_until_done(cli_client_t *c)
{
    /* Each step stops the loop from its callback; the loop also ends by
     * itself if the connection goes and nothing else is pending. */
    while (!c->done && uv_run(&c->loop, UV_RUN_ONCE))
        ;
}

int cli_client_open(cli_client_t *c, const char *url, shoal_framing_t framing)
{
    shoal_node_hooks_t hooks;
    shoal_conn_opts_t copts;
    shoal_node_opts_t opts;
    int err;

    memset(c, 0, sizeof(*c));
    shoal_buf_init(&c->result);
    uv_loop_init(&c->loop);
    memset(&opts, 0, sizeof(opts));
    opts.framing = framing;
    err = shoal_node_init(&c->loop, &c->node, &opts);
    if (err) {
        fprintf(stderr, "shoal: %s\n", shoal_strerror(err));
        return err;
    }
    c->node_ready = true;
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_peer_error = client_peer_error;
    hooks.data = c;
    shoal_node_add_hooks(&c->node, &hooks);
    memset(&copts, 0, sizeof(copts));
    copts.framing = framing;
    err = shoal_node_connect(&c->node, url, &copts, client_connected_cb, c,
                             &c->conn);
    if (err == 0) {
        client_run_until_done(c);
        err = c->done ? c->status : SHOAL_ECONNCLOSED;
    }
    if (err) {
        c->conn = NULL;
        fprintf(stderr, "shoal: cannot connect to %s: %s\n", url,
                shoal_strerror(err));
    }
    return err;
}

void cli_client_close(cli_client_t *c)
{
    if (c->node_ready) {
        shoal_node_close(&c->node, NULL);
        uv_run(&c->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&c->loop);
    shoal_buf_free(&c->result);
}

static void client_reply_cb(const shoal_reply_t *reply, void *data)
{
    cli_client_t *c = data;
    shoal_name_t code;

    c->done = true;
    c->status = reply->status;
    c->result.len = 0;
    c->code[0] = '\0';
    snprintf(c->message, sizeof(c->message), "%s", reply->message);
    if (reply->status == 0) {
        if (reply->result.data == NULL ||
            shoal_wire_transcode(&reply->result, SHOAL_CODEC_JSON,
                                 &c->result) != 0)
            shoal_buf_append(&c->result, "null", 4);
        return;
    }
    if (reply->error.data != NULL) {
        shoal_wire_decode_error(&reply->error, &code, c->message,
                                sizeof(c->message));
        snprintf(c->code, sizeof(c->code), "%s", code.s);
    } else {
        snprintf(c->code, sizeof(c->code), "%s",
                 shoal_err_name(reply->status));
    }
}

static int client_wait(cli_client_t *c, int err)
{
    if (err) {
        snprintf(c->code, sizeof(c->code), "%s", shoal_err_name(err));
        snprintf(c->message, sizeof(c->message), "%s", shoal_strerror(err));
        return err;
    }
    client_run_until_done(c);
    if (!c->done) {
        snprintf(c->code, sizeof(c->code), "ECONNCLOSED");
        snprintf(c->message, sizeof(c->message), "connection closed");
        return SHOAL_ECONNCLOSED;
    }
    return c->status;
}

int cli_client_call(cli_client_t *c, const char *app, const char *action,
                    const shoal_payload_t *args, uint64_t timeout_ms)
{
    c->done = false;
    return client_wait(c, shoal_conn_call(c->conn, app, action, args,
                                          timeout_ms, client_reply_cb, c));
}

int cli_client_describe(cli_client_t *c, uint64_t timeout_ms)
{
    c->done = false;
    return client_wait(
        c, shoal_conn_describe(c->conn, timeout_ms, client_reply_cb, c));
}
