/* What the supervisor's files (supervise*.c) share: its structures. */
#ifndef SHOAL_SUPERVISE_INTERNAL_H
#define SHOAL_SUPERVISE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "shoal/supervise.h"

/* Restarts remembered per worker for status (the most recent ones). */
#define SUP_HISTORY 16
/* The last line a worker wrote on stderr, kept for status. */
#define SUP_LAST_ERROR_BYTES 512

typedef struct sup_worker sup_worker_t;
typedef struct sup_pool sup_pool_t;

/* One line being collected from a worker's stdout or stderr. */
typedef struct {
    char buf[SHOAL_SUP_MAX_LINE_BYTES];
    size_t len;
    bool cutting; /* the line passed the bound: skip to its end */
} sup_line_t;

/* One process of a worker, from its spawn until the last of its handles
 * has closed (its output may still drain after the next one started). */
typedef struct sup_run {
    shoal__list_t link; /* priv->runs */
    shoal__sup_priv_t *sup;
    sup_worker_t *worker; /* for the prefix of its lines */
    uv_process_t proc;
    uv_pipe_t out;
    uv_pipe_t err;
    sup_line_t out_line;
    sup_line_t err_line;
    int parent_fd; /* our end of the worker's fd 3; -1 once closed */
    int pid;
    unsigned open_handles; /* of proc, out, err */
    bool exited;           /* the exit callback ran */
    bool out_open;
    bool err_open;
} sup_run_t;

/* One restart of a worker, in supervisor time (ms since init). */
typedef struct {
    uint64_t exit_ms;
    uint64_t delay_ms;
    uint64_t start_ms; /* when the replacement was spawned; 0: not yet */
    int64_t exit_status;
    int term_signal;
    bool requested; /* by a restart request, not an exit */
} sup_restart_t;

struct sup_worker {
    shoal__sup_priv_t *sup;
    sup_pool_t *pool;
    char name[SHOAL_MAX_NAME_BYTES + 1];
    unsigned index;
    shoal_worker_state_t state;
    sup_run_t *run;     /* the live process, NULL between processes */
    shoal_conn_t *conn; /* its join connection once it said hello */
    uv_timer_t timer;   /* the restart delay, or the kill timeout */
    bool timer_waiting; /* the timer holds a spawn */
    bool restart_requested;
    uint64_t spawned_ms;
    uint64_t online_ms;
    uint64_t spawn_due_ms; /* when the pending spawn is due */
    unsigned restarts;
    unsigned backoff_step; /* restarts since the last stable uptime */
    uint64_t *budget;      /* times of the last restarts, a ring */
    size_t budget_len;
    size_t budget_head;
    sup_restart_t history[SUP_HISTORY];
    unsigned n_history; /* total; history[n % SUP_HISTORY] is next */
    bool has_exited;
    int64_t last_exit_status;
    int last_term_signal;
    uint64_t last_exit_ms;
    char last_error[SUP_LAST_ERROR_BYTES];
    cJSON *apps; /* names from its description */
    double calls_in_flight;
    double calls_done;
    /* CPU and memory samples of the live process */
    int sample_pid;
    uint64_t cpu_ticks;
    uint64_t cpu_sample_ms;
    double cpu_percent;
    uint64_t rss_bytes;
    /* its log file (log_dir only) */
    int log_fd;
    uint64_t log_bytes;
};

struct sup_pool {
    shoal__sup_priv_t *sup;
    shoal_pool_opts_t opts; /* strings point into the copies below */
    char *name;
    char **apps;
    char **execs;
    char *app_path;
    sup_worker_t *workers;
    unsigned n_workers;
};

/* A node that joined by itself (`shoal node --join URL`): listed, not
 * controlled. */
typedef struct {
    shoal__list_t link;
    shoal_conn_t *conn;
    char name[SHOAL_MAX_NAME_BYTES + 1];
    char address[160];
    int64_t pid;
    uint64_t since_ms;
    cJSON *apps;
    double calls_in_flight;
    double calls_done;
    double rss_bytes;
} sup_remote_t;

/* What the node's hooks and the "supervisor" application point to. It
 * outlives the supervisor until the node can no longer call them: the node
 * has no way to remove hooks. */
typedef struct {
    shoal__sup_priv_t *sup; /* NULL once the supervisor closed */
    shoal_node_t *node;
    bool node_closing;  /* its on_close hook ran */
    bool node_done;     /* ... and its last connection is gone */
    bool app_gone;      /* the application was removed or closed */
    unsigned in_flight; /* describes sent and not answered */
} sup_shim_t;

/* A stop waiting for the drains. */
typedef struct {
    shoal__sup_priv_t *sup; /* NULL once the wait ended */
    unsigned pending;
} sup_drain_round_t;

typedef struct {
    shoal_drain_fn fn;
    void *data;
} sup_drain_t;

typedef enum {
    SUP_IDLE = 0,    /* init: pools may be added */
    SUP_RUNNING,     /* start: workers run and are restarted */
    SUP_DRAINING,    /* stop: waiting for the drains */
    SUP_TERMINATING, /* SIGTERM sent, waiting for the exits */
    SUP_STOPPED,     /* every worker reaped */
    SUP_CLOSING
} sup_phase_t;

struct shoal__sup_priv {
    shoal_supervisor_t *handle;
    shoal_node_t *node;
    sup_shim_t *shim;
    shoal_supervisor_opts_t opts; /* strings point into the copies below */
    char *exe;
    char *log_dir;
    char runtime_dir[256];
    bool own_runtime_dir;
    char sock_path[108];
    char url[128];
    sup_pool_t **pools;
    size_t n_pools;
    shoal__list_t runs;
    shoal__list_t remotes;
    sup_drain_t *drains;
    size_t n_drains;
    sup_drain_round_t *round;
    uv_timer_t drain_timer;
    uv_timer_t kill_timer;
    uv_timer_t done_timer;
    uv_timer_t sample_timer;
    sup_phase_t phase;
    shoal_supervisor_stop_cb stop_cb;
    shoal_supervisor_cb close_cb;
    unsigned pending_closes;
    uint64_t started_ms;
    char read_buf[65536];
};

/* Milliseconds since the supervisor was initialised. */
uint64_t shoal__sup_now(const shoal__sup_priv_t *priv);

/* ---- output (supervise_log.c) ------------------------------------------ */

/* Feeds bytes a worker wrote on stdout (is_err false) or stderr; every
 * whole line goes out with the worker's name in front. */
void shoal__sup_log_feed(shoal__sup_priv_t *priv, sup_worker_t *w,
                         sup_line_t *line, bool is_err, const char *data,
                         size_t len);
/* The stream ended: a last line without "\n" goes out too. */
void shoal__sup_log_flush(shoal__sup_priv_t *priv, sup_worker_t *w,
                          sup_line_t *line, bool is_err);
/* A line of the supervisor's own about a worker (NULL: the supervisor),
 * to log_fd_err unless quiet. */
void shoal__sup_log_event(shoal__sup_priv_t *priv, const sup_worker_t *w,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Closes the worker's log file. */
void shoal__sup_log_close(sup_worker_t *w);

/* ---- /proc (supervise_proc.c) ------------------------------------------ */

/* Reads the CPU time (clock ticks, user + system) and the resident memory
 * of pid from /proc. Returns 0 or a negative code (the process is gone,
 * or there is no /proc). */
int shoal__sup_proc_sample(int pid, uint64_t *cpu_ticks, uint64_t *rss_bytes);
/* Clock ticks per second. */
long shoal__sup_proc_hz(void);

/* ---- the "supervisor" application and status (supervise_app.c) -------- */

int shoal__sup_app_add(shoal__sup_priv_t *priv);
cJSON *shoal__sup_status(shoal__sup_priv_t *priv);
/* Starts a stop on behalf of the "stop" action. */
int shoal__sup_remote_stop(shoal__sup_priv_t *priv);
/* The app was removed or the node closed it. */
void shoal__sup_shim_app_gone(sup_shim_t *shim);
/* Finds a worker by name, or NULL. */
sup_worker_t *shoal__sup_find_worker(shoal__sup_priv_t *priv,
                                     const char *name);

#endif
