/* Applications: named handlers a node hosts, for tells and calls. */
#ifndef SHOAL_APP_H
#define SHOAL_APP_H

#include <stdarg.h>

#include "shoal/node.h"

/*
 * An application has a name, a JSON description and handlers: one for
 * tells and one per named action for calls. An action receives a
 * shoal_call_t and answers it exactly once with shoal_call_reply() or
 * shoal_call_fail(), before it returns or at any later time (after a timer,
 * after its own call to another node). Until then the call is in flight;
 * if the caller's connection ends first, the answer is dropped and counted.
 *
 * Handlers run on the node's loop: work that takes more than a few
 * milliseconds belongs on libuv's thread pool (shoal_call_queue_work) so
 * that the node keeps answering while it runs.
 */

typedef struct shoal_call_s shoal_call_t;

typedef void (*shoal_action_fn)(shoal_call_t *call, void *app_data);
typedef void (*shoal_tell_fn)(shoal_node_t *node, shoal_conn_t *from,
                              const shoal_payload_t *msg, void *app_data);

typedef struct {
    const char *name;
    shoal_action_fn fn;
} shoal_action_t;

typedef struct {
    const char *name;              /* required, at most 255 bytes */
    const char *description;       /* JSON object text; NULL: {} */
    const shoal_action_t *actions; /* n_actions entries */
    size_t n_actions;
    shoal_action_fn on_call; /* actions not in the table; NULL: ENOACTION */
    shoal_tell_fn on_tell;   /* NULL: tells are counted and dropped */
    void (*on_close)(void *app_data); /* removed, or the node closed */
    void *data;
} shoal_app_opts_t;

/* Registers an application on node. Copies opts (names, description, the
 * action table). Returns 0, SHOAL_EEXIST, SHOAL_EINVAL (no name, or a
 * description that is not a JSON object), SHOAL_ENAMETOOLONG or
 * SHOAL_ENOMEM. */
int shoal_node_add_app(shoal_node_t *node, const shoal_app_opts_t *opts);

/* Unregisters an application and calls its on_close. Calls it has in flight
 * stay valid until answered. Returns 0 or SHOAL_ENOAPP. */
int shoal_node_remove_app(shoal_node_t *node, const char *name);

/* The number of applications and the i-th one's name. */
size_t shoal_node_app_count(const shoal_node_t *node);
const char *shoal_node_app_name(const shoal_node_t *node, size_t i);

/* ---- applications from elsewhere ------------------------------------- */

/* The symbol a C plugin (a shared object in workers/) exports: it registers
 * its application(s) on node with shoal_node_add_app. name is the name the
 * user asked for (--app NAME). Returns 0 or a negative code. */
#define SHOAL_PLUGIN_SYMBOL "shoal_plugin_register"
typedef int (*shoal_plugin_register_fn)(shoal_node_t *node, const char *name);

/* Registers the application called name: a built-in one (echo, sum, sleep,
 * fail, crash) or a plugin NAME.so found in search_path (directories
 * separated by ':'; NULL: $SHOAL_APP_PATH then the installed workers
 * directory). On failure returns a negative code (SHOAL_ELOAD for a plugin
 * that cannot be loaded) and writes a sentence naming the file and the
 * reason into err. */
int shoal_node_load_app(shoal_node_t *node, const char *name,
                        const char *search_path, char *err, size_t err_len);

/* Registers application name served by an external program: command is run
 * with /bin/sh -c, and the node relays tells and calls to its standard
 * input and its replies back, as NDJSON (docs/workers.md). Returns 0 or a
 * negative code with a sentence in err. */
int shoal_node_add_exec_app(shoal_node_t *node, const char *name,
                            const char *command, char *err, size_t err_len);

/* ---- a call being served --------------------------------------------- */

const char *shoal_call_app(const shoal_call_t *call);
const char *shoal_call_action(const shoal_call_t *call);
int64_t shoal_call_id(const shoal_call_t *call);
shoal_node_t *shoal_call_node(const shoal_call_t *call);
/* The connection the call came on; NULL once it has closed. */
shoal_conn_t *shoal_call_conn(const shoal_call_t *call);
/* The calling node's name when it said one, else "". */
const char *shoal_call_from(const shoal_call_t *call);

/* The arguments as sent (absent: data == NULL). Valid until the call is
 * answered. */
const shoal_payload_t *shoal_call_args(const shoal_call_t *call);

/* The arguments as a cJSON tree owned by the call (built on first use,
 * freed when the call is answered); NULL when absent or out of memory. */
const cJSON *shoal_call_args_json(shoal_call_t *call);

/* Answers with result (any codec; NULL means null). The call is freed.
 * Returns 0, or SHOAL_ECONNCLOSED when the caller is gone (the answer is
 * dropped), or an encoding error (the caller then receives EAPPFAILED). */
int shoal_call_reply(shoal_call_t *call, const shoal_payload_t *result);

/* Answers with the JSON text of a value, e.g. "15" or "{\"ok\":true}". */
int shoal_call_reply_json(shoal_call_t *call, const char *json);

/* Answers with a cJSON value (not taken: the caller still owns it). */
int shoal_call_reply_cjson(shoal_call_t *call, const cJSON *result);

/* Answers with an error: code is a shoal or libuv error code, sent by
 * name. The message is printf-formatted. The call is freed. */
int shoal_call_fail(shoal_call_t *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same with an application's own error name ("EBADARGS"). */
int shoal_call_fail_named(shoal_call_t *call, const char *code,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Runs work(call, data) on libuv's thread pool, then done(call, status,
 * data) on the loop, where done answers the call. work must not touch the
 * node or the loop. Returns 0 or a libuv error (then neither runs). */
typedef void (*shoal_work_fn)(shoal_call_t *call, void *data);
typedef void (*shoal_work_done_fn)(shoal_call_t *call, int status, void *data);
int shoal_call_queue_work(shoal_call_t *call, shoal_work_fn work,
                          shoal_work_done_fn done, void *data);

#endif
