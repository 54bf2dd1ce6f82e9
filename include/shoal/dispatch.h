/* Dispatch: index-based placement over the nodes that host an application,
 * a dispatcher that spreads tasks with flow control and retries, and the
 * client side that submits tasks to it. */
#ifndef SHOAL_DISPATCH_H
#define SHOAL_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/node.h"
#include "shoal/wire.h"

/*
 * Three layers, each usable alone:
 *
 *   placer      a stable-ordered set of members (sorted by name, so that
 *               index i names the same member everywhere) and the pure
 *               functions that pick one: round-robin, key (rendezvous
 *               hashing), least-loaded, direct, broadcast. No I/O, no
 *               libuv: the dispatcher uses it, groupings of topologies
 *               will too.
 *   dispatcher  attached to a node: every peer that says hello joins the
 *               placers of the applications it hosts; tasks submitted
 *               (by the "dispatch" application, or in-process) are placed,
 *               bounded by a per-node limit of calls in flight and a
 *               bounded queue, placed again when their node dies, and end
 *               with exactly one outcome each.
 *   client      shoal_submit / shoal_submit_batch: calls to a dispatcher's
 *               "dispatch" application on a connection.
 *
 * docs/dispatch.md is the user's guide and the wire contract.
 */

/* ---- placement (dispatch_place.c) ------------------------------------- */

typedef enum {
    SHOAL_STRATEGY_ROUND_ROBIN = 0, /* the next index in turn */
    SHOAL_STRATEGY_KEY,          /* the same key, the same node (rendezvous) */
    SHOAL_STRATEGY_LEAST_LOADED, /* the fewest calls in flight */
    SHOAL_STRATEGY_BROADCAST,    /* every node, all replies collected */
    SHOAL_STRATEGY_DIRECT        /* the node named, or the index given */
} shoal_strategy_t;

/* "round-robin", "key", "least-loaded", "broadcast", "direct". */
const char *shoal_strategy_name(shoal_strategy_t strategy);

/* Parses a strategy name (also "rr", "ll"). Returns 0 or SHOAL_EINVAL. */
int shoal_strategy_parse(const char *name, shoal_strategy_t *out);

typedef struct {
    char *name;    /* owned copy */
    uint64_t hash; /* shoal_placer_hash of the name */
    void *data;    /* the caller's */
} shoal_placer_member_t;

/* A set of members kept sorted by name. Zero-initialise or
 * shoal_placer_init; free with shoal_placer_free. */
typedef struct {
    shoal_placer_member_t *members;
    size_t count;
    size_t cap;
    size_t cursor; /* round-robin: the index that comes next */
} shoal_placer_t;

void shoal_placer_init(shoal_placer_t *p);
void shoal_placer_free(shoal_placer_t *p);

/* Adds a member (name copied). Returns its index (>= 0): members after it
 * move up by one. Returns SHOAL_EEXIST, SHOAL_EINVAL (empty name),
 * SHOAL_ENAMETOOLONG or SHOAL_ENOMEM. The round-robin turn stays with the
 * member whose turn it was. */
int shoal_placer_add(shoal_placer_t *p, const char *name, void *data);

/* Removes a member. Returns the index it had, or SHOAL_ENOTFOUND. */
int shoal_placer_remove(shoal_placer_t *p, const char *name);

/* The index of the member called name, or SHOAL_ENOTFOUND. */
int shoal_placer_find(const shoal_placer_t *p, const char *name);

static inline size_t shoal_placer_count(const shoal_placer_t *p)
{
    return p->count;
}

/* The i-th member's name and data (i < count). */
const char *shoal_placer_name(const shoal_placer_t *p, size_t i);
void *shoal_placer_data(const shoal_placer_t *p, size_t i);

/* How busy a member is: its calls in flight, or SHOAL_PLACER_FULL when it
 * takes nothing more now. member_data is the member's data. */
#define SHOAL_PLACER_FULL SIZE_MAX
typedef size_t (*shoal_placer_load_fn)(void *member_data, void *arg);

/* Round-robin: the first member from the cursor on that is not full, and
 * moves the cursor past it. load NULL: nobody is ever full. Returns the
 * index, SHOAL_ENOWORKER (no members) or SHOAL_EOVERLOADED (all full). */
int shoal_placer_next(shoal_placer_t *p, shoal_placer_load_fn load, void *arg);

/* Least-loaded: the member with the lowest load that is not full; ties go
 * to the first from the round-robin cursor on, which then moves past it,
 * so that equally loaded members take turns. Same results as next. */
int shoal_placer_least_loaded(shoal_placer_t *p, shoal_placer_load_fn load,
                              void *arg);

/* A 64-bit hash of bytes (FNV-1a with a final avalanche mix). */
uint64_t shoal_placer_hash(const void *data, size_t len);

/* Key: the member with the highest rendezvous score for key_hash (a
 * shoal_placer_hash). The same key gives the same member while the set is
 * unchanged; when a member joins or leaves, only the keys that it wins or
 * held move (about 1/N of them). Load is not considered. Returns the
 * index or SHOAL_ENOWORKER. */
int shoal_placer_key(const shoal_placer_t *p, uint64_t key_hash);

/* ---- tasks and outcomes ------------------------------------------------ */

/* A task: call app.action(args) on one of the nodes that host app. Every
 * pointer is borrowed for the duration of the submit call only. */
typedef struct {
    const char *app;             /* required */
    const char *action;          /* required */
    const shoal_payload_t *args; /* NULL: none */
    const shoal_payload_t *id;   /* NULL: the dispatcher numbers it */
    shoal_strategy_t strategy;   /* ROUND_ROBIN by default */
    const char *key;             /* KEY: the key's bytes */
    size_t key_len;
    const char *node;      /* DIRECT: the node's name, or NULL ... */
    int64_t index;         /* ... and the index among the hosts */
    uint64_t timeout_ms;   /* per attempt; 0: none */
    int retries;           /* extra attempts; 0: the dispatcher's
                              default (3); negative: none */
    bool retry_on_error;   /* retry when the app answers an error */
    bool retry_on_timeout; /* retry when an attempt times out */
} shoal_task_t;

typedef enum {
    SHOAL_OUTCOME_OK = 0, /* result holds the application's result */
    SHOAL_OUTCOME_ERROR,  /* error holds {code, message} */
    SHOAL_OUTCOME_TIMEOUT /* the last attempt timed out */
} shoal_outcome_status_t;

/* "ok", "error", "timeout". */
const char *shoal_outcome_status_name(shoal_outcome_status_t status);

/* The one final outcome of a task. Everything is borrowed for the
 * duration of the callback. */
typedef struct {
    size_t index; /* position in the batch; 0 alone */
    shoal_outcome_status_t status;
    bool refused;           /* the task never ran: the dispatcher refused it
                               (ENOWORKER, ESTOPPING, a malformed task) or
                               the submit itself failed (ECONNCLOSED) */
    int code;               /* 0 when OK, else the error's code
                               (SHOAL_EREMOTE for an application's own) */
    const char *code_name;  /* "" when OK, else "ENOAPP", "EBADARGS"... */
    const char *message;    /* "" when OK */
    const char *node;       /* the node that produced it; "" if none */
    unsigned attempts;      /* 0 when refused */
    shoal_payload_t id;     /* the task's id */
    shoal_payload_t result; /* OK: the result (broadcast: an array of
                               {node, status, result|error}) */
    shoal_payload_t error;  /* the {code, message} object, when present */
    shoal_payload_t raw;    /* the whole outcome object as it came over the
                               wire; absent for in-process submits */
} shoal_outcome_t;

typedef void (*shoal_outcome_cb)(const shoal_outcome_t *outcome, void *data);

/* ---- the dispatcher (dispatch.c) --------------------------------------- */

typedef struct shoal_dispatch_s shoal_dispatch_t;
typedef struct shoal__dispatch_priv shoal__dispatch_priv_t;

typedef void (*shoal_dispatch_close_cb)(shoal_dispatch_t *d);
typedef void (*shoal_dispatch_drain_cb)(shoal_dispatch_t *d, void *data);

#define SHOAL_DISPATCH_DEFAULT_INFLIGHT 64
#define SHOAL_DISPATCH_DEFAULT_MAX_QUEUED 10000
#define SHOAL_DISPATCH_DEFAULT_RETRIES 3
#define SHOAL_DISPATCH_DEFAULT_WORKER_WAIT_MS 5000
#define SHOAL_DISPATCH_MAX_BATCH 100000

typedef struct {
    size_t inflight_per_node; /* calls in flight per node; 0: 64 */
    size_t max_queued;        /* tasks waiting for a node, all apps; 0: 10000.
                                 Past it the submitters are paused. */
    int retries;             /* default extra attempts; 0: 3, negative: none */
    uint64_t worker_wait_ms; /* how long a task waits for some node to host
                                its app before ENOWORKER; 0: 5000 */
    const char *app_name;    /* the application served; NULL: "dispatch" */
} shoal_dispatch_opts_t;

/* Counters, also in the "stats" reply and the node's description. */
typedef struct {
    uint64_t submitted; /* tasks accepted */
    uint64_t ok;
    uint64_t failed; /* outcome error, refusals excluded */
    uint64_t timed_out;
    uint64_t refused;  /* ENOWORKER, ESTOPPING, malformed */
    uint64_t retried;  /* attempts placed again */
    size_t queued;     /* tasks waiting for a node now */
    size_t queued_max; /* the most that ever waited at once */
    size_t max_queued; /* the bound */
    size_t in_flight;  /* attempts on nodes now */
    size_t members;    /* nodes that host at least one application */
    size_t paused;     /* submitting connections paused now */
    uint64_t pauses;   /* times a submitter was paused */
} shoal_dispatch_stats_t;

struct shoal_dispatch_s {
    void *data; /* the user's */
    /* private below */
    shoal_node_t *node;
    shoal__dispatch_priv_t *priv;
};

/* Attaches a dispatcher to node: watches hellos and closes (every peer
 * that says hello with applications is a member), and registers the
 * application opts->app_name ("dispatch") with the actions submit,
 * submit_batch, members and stats (docs/dispatch.md). Copies opts.
 * Returns 0, SHOAL_EEXIST (the application name is taken), SHOAL_ENOMEM
 * or SHOAL_EINVAL. Tasks go to the node's peers, never to the node's own
 * applications. */
int shoal_dispatch_init(shoal_dispatch_t *d, shoal_node_t *node,
                        const shoal_dispatch_opts_t *opts);

/* Places a task from this process: cb runs exactly once with its outcome,
 * later (never from inside this call). Returns 0, or SHOAL_EINVAL (no app
 * or action, a DIRECT task that names no node), SHOAL_ESTOPPING
 * (draining or closing) or SHOAL_ENOMEM, and then cb never runs. The
 * queue bound does not apply: a caller in this process keeps its own
 * window (shoal_dispatch_stats tells how much waits). */
int shoal_dispatch_submit(shoal_dispatch_t *d, const shoal_task_t *task,
                          shoal_outcome_cb cb, void *data);

/* Stops taking tasks (submits are refused with ESTOPPING), lets every task
 * already taken finish, queued ones included, then calls cb once. A task
 * whose app no node hosts still ends by ENOWORKER after worker_wait_ms.
 * Returns 0 or SHOAL_ECLOSING (closing or already draining). */
int shoal_dispatch_drain(shoal_dispatch_t *d, shoal_dispatch_drain_cb cb,
                         void *data);

/* The same as a supervisor's drain (a shoal_drain_fn of supervise.h):
 *   shoal_supervisor_add_drain(&sup, shoal_dispatch_drain_fn, &d);
 * drains d and calls done(done_data) once when it is done, or at once
 * when d is already draining or closing. */
void shoal_dispatch_drain_fn(void *dispatch, void (*done)(void *done_data),
                             void *done_data);

/* A copy of the counters. */
void shoal_dispatch_stats(const shoal_dispatch_t *d,
                          shoal_dispatch_stats_t *out);

/* The members as a new cJSON array in their stable order (by name):
 * [{"name","applications":[...],"in_flight","limit","done","failed",
 * "queued"}]. Caller frees it. */
cJSON *shoal_dispatch_members(const shoal_dispatch_t *d);

/* Unregisters the application and the hooks, ends every task still queued
 * or in flight with ESTOPPING (in-process callbacks and submitters are
 * told), and calls cb once the calls it sent to nodes have all come back
 * (answered, timed out, or failed when their connection closes): the
 * memory is the caller's again then. */
void shoal_dispatch_close(shoal_dispatch_t *d, shoal_dispatch_close_cb cb);

/* ---- the client side (submit.c) ---------------------------------------- */

/* Submits task to the dispatcher at the other end of conn (its "dispatch"
 * application). cb runs exactly once with the outcome: the dispatcher's,
 * or a refusal (refused = true) when the dispatcher refused the task or
 * the connection ended first. Returns 0, or a negative code
 * (SHOAL_EINVAL, SHOAL_ECLOSING, SHOAL_ENOMEM...) and then cb never runs.
 * The caller bounds how many submits it keeps in flight
 * (shoal_conn_calls_in_flight): the dispatcher pauses reading a submitter
 * that outruns its queue, so what is not read waits in this process. */
int shoal_submit(shoal_conn_t *conn, const shoal_task_t *task,
                 shoal_outcome_cb cb, void *data);

/* Submits n tasks (1 to SHOAL_DISPATCH_MAX_BATCH) in one message; cb runs
 * n times, once per task in task order (outcome->index), when the last of
 * them has finished. Same results as shoal_submit. */
int shoal_submit_batch(shoal_conn_t *conn, const shoal_task_t *tasks, size_t n,
                       shoal_outcome_cb cb, void *data);

/* Appends task as the object a submit carries ({"app","action","args",
 * ...}) in codec. Returns 0, SHOAL_EINVAL or an encoding error. */
int shoal_task_encode(const shoal_task_t *task, shoal_codec_t codec,
                      shoal_buf_t *buf);

/* Room for the strings of a decoded outcome. */
typedef struct {
    char code[SHOAL_MAX_NAME_BYTES + 1];
    char node[SHOAL_MAX_NAME_BYTES + 1];
    char message[512];
} shoal_outcome_text_t;

/* Reads an outcome object (as a submit's reply carries it) into out;
 * payloads borrow from outcome, strings from text. Returns 0 or
 * SHOAL_EBADMSG. */
int shoal_outcome_decode(const shoal_payload_t *outcome, shoal_outcome_t *out,
                         shoal_outcome_text_t *text);

#endif
