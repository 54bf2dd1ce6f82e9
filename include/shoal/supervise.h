/* Supervisor: spawns, names, watches and restarts local worker nodes. */
#ifndef SHOAL_SUPERVISE_H
#define SHOAL_SUPERVISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/node.h"

/*
 * A supervisor attaches to a node the caller created (and listens with). It
 * adds a private unix socket in a runtime folder, spawns each pool's
 * workers as child processes running `shoal node --join <that socket>`,
 * sees each one connect back and say hello, restarts those that exit by
 * their pool's policy, and stops them all on request: drain, SIGTERM, then
 * SIGKILL after a timeout. It also registers the application "supervisor"
 * on the node (actions status, stop, restart, call: docs/supervisor.md).
 *
 * A worker is `shoal node --name NAME --join URL --parent-fd 3 --quiet
 * --app A... --exec E...`, with fd 3 the read end of a pipe whose write
 * end only the supervisor holds: when the supervisor dies, however it
 * dies, the worker reads end of file and exits. Workers run in their own
 * session (a terminal's Ctrl-C reaches only the supervisor, which then
 * stops them in order). Their environment adds SHOAL_WORKER_NAME,
 * SHOAL_WORKER_INDEX (0-based within the pool, like pm2's
 * NODE_APP_INSTANCE: worker "w-1" has index 0), SHOAL_POOL and
 * SHOAL_SUPERVISOR (the URL they join).
 *
 * Handles follow libuv's habits: the caller allocates a
 * shoal_supervisor_t, init prepares it, close ends it asynchronously and
 * the memory is the caller's again in the close callback. Everything runs
 * on the node's loop.
 */

typedef struct shoal_supervisor_s shoal_supervisor_t;
typedef struct shoal__sup_priv shoal__sup_priv_t;

/* What happens when a worker exits on its own (named as in Erlang/OTP). */
typedef enum {
    SHOAL_RESTART_PERMANENT = 0, /* always restarted */
    SHOAL_RESTART_TRANSIENT,     /* restarted after an abnormal exit only:
                                    a signal or a non-zero status */
    SHOAL_RESTART_TEMPORARY      /* never restarted */
} shoal_restart_policy_t;

/* The state of a worker, as status shows it. */
typedef enum {
    SHOAL_WORKER_STARTING = 1, /* spawned (or waiting out a restart delay),
                                  has not said hello yet */
    SHOAL_WORKER_ONLINE,       /* its node said hello */
    SHOAL_WORKER_STOPPING,     /* SIGTERM sent, waiting for its exit */
    SHOAL_WORKER_ERRORED,      /* restarted too often: left down */
    SHOAL_WORKER_STOPPED       /* exited and not to be restarted */
} shoal_worker_state_t;

/* "permanent", "transient", "temporary"; NULL for other values. */
const char *shoal_restart_policy_name(shoal_restart_policy_t policy);
/* Parses a policy name. Returns 0 or SHOAL_EINVAL. */
int shoal_restart_policy_parse(const char *name, shoal_restart_policy_t *out);
/* "starting", "online", "stopping", "errored", "stopped"; "unknown". */
const char *shoal_worker_state_name(shoal_worker_state_t state);

/* ---- defaults (docs/supervisor.md says why) --------------------------- */

#define SHOAL_SUP_DEFAULT_POOL "worker"
#define SHOAL_SUP_DEFAULT_BACKOFF_INITIAL_MS 100
#define SHOAL_SUP_DEFAULT_BACKOFF_FACTOR 2.0
#define SHOAL_SUP_DEFAULT_BACKOFF_MAX_MS 30000
#define SHOAL_SUP_DEFAULT_RESET_AFTER_MS 30000
#define SHOAL_SUP_DEFAULT_MAX_RESTARTS 5
#define SHOAL_SUP_DEFAULT_RESTART_WINDOW_MS 60000
#define SHOAL_SUP_DEFAULT_START_TIMEOUT_MS 30000
#define SHOAL_SUP_DEFAULT_DRAIN_TIMEOUT_MS 5000
#define SHOAL_SUP_DEFAULT_KILL_TIMEOUT_MS 5000
#define SHOAL_SUP_DEFAULT_SAMPLE_INTERVAL_MS 1000
#define SHOAL_SUP_DEFAULT_LOG_MAX_BYTES (10u << 20)
/* A worker's output line longer than this is cut (and marked so). */
#define SHOAL_SUP_MAX_LINE_BYTES 4096
/* Workers per pool, and pools per supervisor. */
#define SHOAL_SUP_MAX_WORKERS 1024
#define SHOAL_SUP_MAX_POOLS 64

/* ---- options ---------------------------------------------------------- */

typedef struct {
    const char *name;         /* required: workers are NAME-1 ... NAME-N */
    unsigned workers;         /* 0: n_names when names are given, else the
                                 number of CPUs (uv_available_parallelism) */
    const char *const *names; /* n_names worker names instead of NAME-i;
                                 as many as workers */
    size_t n_names;
    const char *const *apps; /* --app of each worker (built-in or plugin) */
    size_t n_apps;
    const char *const *execs; /* --exec of each worker: "COMMAND" or
                                 "NAME=COMMAND" */
    size_t n_execs;
    const char *app_path; /* --app-path of each worker; NULL: none */
    shoal_restart_policy_t restart;
    /* Restart delays: the first restart after a stable uptime is
     * immediate, then initial, initial*factor, ... capped at max. */
    uint64_t backoff_initial_ms;
    double backoff_factor; /* >= 1 */
    uint64_t backoff_max_ms;
    uint64_t reset_after_ms; /* uptime after which a worker is stable */
    /* Budget: a worker that would be restarted a (max_restarts + 1)-th
     * time within restart_window_ms is left errored instead. */
    unsigned max_restarts;
    uint64_t restart_window_ms;
    /* A worker that has not said hello this long after its spawn is
     * killed (SIGKILL) and counts as crashed; 0: no limit. */
    uint64_t start_timeout_ms;
} shoal_pool_opts_t;

/* Fills opts with the defaults above (name SHOAL_SUP_DEFAULT_POOL,
 * workers 0, permanent, no apps). */
void shoal_pool_opts_default(shoal_pool_opts_t *opts);

typedef void (*shoal_supervisor_cb)(shoal_supervisor_t *sup);
/* The end of a stop: status 0 once every worker has been reaped,
 * SHOAL_ECANCELED when the supervisor was closed first. */
typedef void (*shoal_supervisor_stop_cb)(shoal_supervisor_t *sup, int status);

typedef struct {
    const char *exe;         /* the shoal command; NULL: this program */
    const char *runtime_dir; /* where the private socket goes; NULL: a new
                                mkdtemp folder under $TMPDIR (else /tmp),
                                removed at close */
    const char *log_dir;     /* NULL: worker lines go to log_fd_out (their
                                stdout) and log_fd_err (their stderr);
                                else to LOG_DIR/NAME.log */
    uint64_t log_max_bytes;  /* a log file is rotated to NAME.log.1 (one
                                kept) before it grows past this */
    int log_fd_out;          /* default 1; -1 drops the lines */
    int log_fd_err;          /* default 2; -1 drops the lines; also gets
                                the supervisor's own event lines unless
                                quiet */
    bool quiet;
    uint64_t drain_timeout_ms;   /* longest wait for the drains at stop */
    uint64_t kill_timeout_ms;    /* SIGTERM to SIGKILL */
    uint64_t sample_interval_ms; /* CPU, memory and call counters */
    /* Called when a stop started by the "stop" action (a remote `shoal
     * stop`) has finished; the owner typically closes everything and
     * exits. NULL: the action is refused. */
    shoal_supervisor_stop_cb on_remote_stop;
} shoal_supervisor_opts_t;

/* Fills opts with the defaults above. */
void shoal_supervisor_opts_default(shoal_supervisor_opts_t *opts);

struct shoal_supervisor_s {
    void *data; /* the user's */
    /* private below */
    shoal_node_t *node;
    shoal__sup_priv_t *priv;
};

/* ---- life cycle ------------------------------------------------------- */

/* Prepares a supervisor on node (which must outlive it): makes the
 * runtime folder, listens on its private socket, adds its node hooks and
 * the "supervisor" application. Copies opts (NULL: defaults). Returns 0,
 * SHOAL_EINVAL (bad options), SHOAL_EEXIST (the node already hosts an
 * application "supervisor"), SHOAL_ENOMEM or a libuv error. */
int shoal_supervisor_init(shoal_supervisor_t *sup, shoal_node_t *node,
                          const shoal_supervisor_opts_t *opts);

/* Adds a pool (copied). Before or after start: a pool added after start
 * starts at once. Returns 0, SHOAL_EINVAL (a value out of range),
 * SHOAL_EEXIST (a pool or worker name already taken),
 * SHOAL_ENAMETOOLONG, SHOAL_ESTOPPING or SHOAL_ENOMEM. When err is not
 * NULL it receives a sentence naming the offending field. */
int shoal_supervisor_add_pool(shoal_supervisor_t *sup,
                              const shoal_pool_opts_t *opts, char *err,
                              size_t err_len);

/* Spawns every worker. A worker that cannot be spawned counts as one
 * that exited at once (its pool's policy and budget apply). Returns 0 or
 * SHOAL_ESTOPPING. */
int shoal_supervisor_start(shoal_supervisor_t *sup);

/* The URL of the private socket the workers join ("unix:///..."). */
const char *shoal_supervisor_url(const shoal_supervisor_t *sup);

/* A drain holds a stop until work in flight is done: at stop, each
 * registered drain(data, done, done_data) is called once; the supervisor
 * stops taking new work and waits until each has called done(done_data)
 * or drain_timeout_ms has passed, whichever comes first, before it sends
 * SIGTERM. done must be called exactly once, on the loop, even after the
 * timeout (it is then harmless). Returns 0, SHOAL_ESTOPPING or
 * SHOAL_ENOMEM. */
typedef void (*shoal_drain_done_fn)(void *done_data);
typedef void (*shoal_drain_fn)(void *data, shoal_drain_done_fn done,
                               void *done_data);
int shoal_supervisor_add_drain(shoal_supervisor_t *sup, shoal_drain_fn drain,
                               void *data);

/* Stops gracefully: no more restarts, drains (see above), SIGTERM to every
 * worker, SIGKILL to those still running kill_timeout_ms later, then
 * cb(sup, 0) once every worker has been reaped (from the loop, never
 * before this returns; cb(sup, SHOAL_ECANCELED) if the supervisor is
 * closed first). Returns 0 (cb will run once) or SHOAL_ESTOPPING when a
 * stop is already under way (cb will not run). */
int shoal_supervisor_stop(shoal_supervisor_t *sup,
                          shoal_supervisor_stop_cb cb);

/* True once a stop has started. */
bool shoal_supervisor_stopping(const shoal_supervisor_t *sup);

/* Restarts the worker called name (NULL: every worker): SIGTERM, SIGKILL
 * after kill_timeout_ms, spawned again at once under the same name and
 * index. An errored or stopped worker is started again, with its restart
 * budget and delays reset. Returns the number of workers restarted,
 * SHOAL_ENOTFOUND or SHOAL_ESTOPPING. */
int shoal_supervisor_restart(shoal_supervisor_t *sup, const char *name);

/* The status as a new cJSON object (caller frees): the supervisor, its
 * pools and every worker, local or joined by hand (docs/supervisor.md
 * lists the fields). NULL when out of memory. */
cJSON *shoal_supervisor_status(shoal_supervisor_t *sup);

/* Kills (SIGKILL) whatever still runs, closes every handle, removes the
 * runtime folder, then calls cb. Call stop first for a graceful end. The
 * node stays usable. */
void shoal_supervisor_close(shoal_supervisor_t *sup, shoal_supervisor_cb cb);

/* ---- configuration files ---------------------------------------------- */

/*
 * A configuration file (JSON), the shoal equivalent of a PM2 ecosystem
 * file:
 *
 *   {"name": "sup", "listen": ["tcp://127.0.0.1:7000"],
 *    "log_dir": "logs", "log_max_bytes": 1048576,
 *    "drain_timeout_ms": 5000, "kill_timeout_ms": 5000,
 *    "sample_interval_ms": 1000,
 *    "pools": [{"name": "w", "workers": 2, "apps": ["echo"],
 *               "exec": ["py=python3 workers/py/echo.py"],
 *               "app_path": "build/workers", "names": ["a", "b"],
 *               "restart": "permanent",
 *               "backoff": {"initial_ms": 100, "factor": 2,
 *                           "max_ms": 30000, "reset_after_ms": 30000},
 *               "max_restarts": 5, "restart_window_ms": 60000,
 *               "start_timeout_ms": 30000}]}
 *
 * Every field but "pools" (and each pool's "name") is optional. Unknown
 * fields and values of the wrong type or out of range are refused.
 */
typedef struct {
    const char *name;          /* the supervisor node's name, or NULL */
    const char *const *listen; /* n_listen URLs */
    size_t n_listen;
    shoal_supervisor_opts_t sup; /* defaults where the file says nothing */
    shoal_pool_opts_t *pools;
    size_t n_pools;
    void *storage; /* private: what the pointers above point into */
} shoal_supervisor_config_t;

/* Parses and checks a configuration. Returns 0 and fills out (free it
 * with shoal_supervisor_config_free), or SHOAL_EBADCONFIG with a sentence
 * in err giving the JSON path of the field and the reason, e.g.
 * "pools[0].workers: must be a positive integer" (or SHOAL_ENOMEM). */
int shoal_supervisor_config_parse(const char *text, size_t len,
                                  shoal_supervisor_config_t *out, char *err,
                                  size_t err_len);

/* Same with the contents of a file; err names the file. */
int shoal_supervisor_config_load(const char *path,
                                 shoal_supervisor_config_t *out, char *err,
                                 size_t err_len);

/* Frees what parse or load allocated. NULL storage is a no-op. */
void shoal_supervisor_config_free(shoal_supervisor_config_t *cfg);

#endif
