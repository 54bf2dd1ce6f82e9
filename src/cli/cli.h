/* What the shoal subcommands share: option helpers and a blocking client. */
#ifndef SHOAL_CLI_H
#define SHOAL_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "shoal.h"

/* Exit statuses of every subcommand. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_ERROR_REPLY 1 /* the peer answered with an error */
#define CLI_EXIT_FAILURE 2     /* usage, connection or local failure */

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *out);
} cli_command_t;

int cli_cmd_node(int argc, char **argv);
void cli_usage_node(FILE *out);
int cli_cmd_call(int argc, char **argv);
void cli_usage_call(FILE *out);
int cli_cmd_tell(int argc, char **argv);
void cli_usage_tell(FILE *out);
int cli_cmd_emit(int argc, char **argv);
void cli_usage_emit(FILE *out);
int cli_cmd_describe(int argc, char **argv);
void cli_usage_describe(FILE *out);
int cli_cmd_submit(int argc, char **argv);
void cli_usage_submit(FILE *out);
int cli_cmd_supervise(int argc, char **argv);
void cli_usage_supervise(FILE *out);
int cli_cmd_status(int argc, char **argv);
void cli_usage_status(FILE *out);
int cli_cmd_stop(int argc, char **argv);
void cli_usage_stop(FILE *out);
int cli_cmd_restart(int argc, char **argv);
void cli_usage_restart(FILE *out);

/* Prints "shoal CMD: message" and the hint to use --help; returns
 * CLI_EXIT_FAILURE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a non-negative integer option value; false on garbage. */
bool cli_parse_u64(const char *text, uint64_t *out);

/* A node used as a client of one remote node, driven to completion step by
 * step: each cli_client_* call runs the loop until its answer is in. */
typedef struct {
    uv_loop_t loop;
    shoal_node_t node;
    shoal_conn_t *conn;
    int status;
    bool done;
    bool node_ready;
    shoal_reply_t reply; /* of the last call; payloads copied below */
    shoal_buf_t result;  /* JSON text */
    char message[1024];
    char code[SHOAL_MAX_NAME_BYTES + 1];
    /* An error message the node sent that answers no call (it refused a
     * tell or an event); empty when none came. */
    char peer_error[1024];
} cli_client_t;

/* Connects to url. Returns 0, or prints why not and returns the code. */
int cli_client_open(cli_client_t *c, const char *url, shoal_framing_t framing);
/* Waits for everything queued to be written, closes, frees the loop. */
void cli_client_close(cli_client_t *c);
/* Calls and waits. Returns the reply status; on success c->result holds
 * the result as JSON text, on an error reply c->code and c->message. */
int cli_client_call(cli_client_t *c, const char *app, const char *action,
                    const shoal_payload_t *args, uint64_t timeout_ms);
int cli_client_describe(cli_client_t *c, uint64_t timeout_ms);

/* Tells whoever started this process that it is ready: writes ready as
 * one JSON line to fd and closes fd (nothing when fd < 0). Takes ready. */
typedef struct cJSON cJSON;
void cli_write_ready(const char *cmd, int fd, cJSON *ready);

/* Checks that text is JSON and makes a payload of it; prints why not. */
int cli_json_arg(const char *cmd, const char *what, const char *text,
                 shoal_payload_t *out);

#endif
