/* Supervisor: spawns worker nodes, sees them say hello, restarts them by
 * policy with backoff and a budget, and stops them in order. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervise_internal.h"

extern char **environ;

/* Arguments of a worker's command line besides its apps and execs. */
#define SUP_FIXED_ARGS 16

static void sup_spawn_due_cb(uv_timer_t *timer);
static void sup_worker_exited(sup_worker_t *w, int64_t exit_status,
                              int term_signal);
static void sup_maybe_stopped(shoal__sup_priv_t *priv);
static void sup_maybe_closed(shoal__sup_priv_t *priv);
static void sup_shim_maybe_free(sup_shim_t *shim);

/* ---- names ------------------------------------------------------------- */

static const char *const sup_policy_names[] = {"permanent", "transient",
                                               "temporary"};

const char *shoal_restart_policy_name(shoal_restart_policy_t policy)
{
    if ((unsigned)policy > SHOAL_RESTART_TEMPORARY)
        return NULL;
    return sup_policy_names[policy];
}

int shoal_restart_policy_parse(const char *name, shoal_restart_policy_t *out)
{
    for (unsigned i = 0; i <= SHOAL_RESTART_TEMPORARY; i++)
        if (name != NULL && strcmp(name, sup_policy_names[i]) == 0) {
            *out = (shoal_restart_policy_t)i;
            return 0;
        }
    return SHOAL_EINVAL;
}

const char *shoal_worker_state_name(shoal_worker_state_t state)
{
    switch (state) {
    case SHOAL_WORKER_STARTING:
        return "starting";
    case SHOAL_WORKER_ONLINE:
        return "online";
    case SHOAL_WORKER_STOPPING:
        return "stopping";
    case SHOAL_WORKER_ERRORED:
        return "errored";
    case SHOAL_WORKER_STOPPED:
        return "stopped";
    }
    return "unknown";
}

/* ---- options ----------------------------------------------------------- */

void shoal_pool_opts_default(shoal_pool_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->name = SHOAL_SUP_DEFAULT_POOL;
    opts->restart = SHOAL_RESTART_PERMANENT;
    opts->backoff_initial_ms = SHOAL_SUP_DEFAULT_BACKOFF_INITIAL_MS;
    opts->backoff_factor = SHOAL_SUP_DEFAULT_BACKOFF_FACTOR;
    opts->backoff_max_ms = SHOAL_SUP_DEFAULT_BACKOFF_MAX_MS;
    opts->reset_after_ms = SHOAL_SUP_DEFAULT_RESET_AFTER_MS;
    opts->max_restarts = SHOAL_SUP_DEFAULT_MAX_RESTARTS;
    opts->restart_window_ms = SHOAL_SUP_DEFAULT_RESTART_WINDOW_MS;
    opts->start_timeout_ms = SHOAL_SUP_DEFAULT_START_TIMEOUT_MS;
}

void shoal_supervisor_opts_default(shoal_supervisor_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->log_max_bytes = SHOAL_SUP_DEFAULT_LOG_MAX_BYTES;
    opts->log_fd_out = 1;
    opts->log_fd_err = 2;
    opts->drain_timeout_ms = SHOAL_SUP_DEFAULT_DRAIN_TIMEOUT_MS;
    opts->kill_timeout_ms = SHOAL_SUP_DEFAULT_KILL_TIMEOUT_MS;
    opts->sample_interval_ms = SHOAL_SUP_DEFAULT_SAMPLE_INTERVAL_MS;
}

uint64_t shoal__sup_now(const shoal__sup_priv_t *priv)
{
    return uv_now(priv->node->loop) - priv->started_ms;
}

/* ---- the shim between the node and the supervisor ---------------------- */

/* Freed when the supervisor has closed, the node will call no more of its
 * hooks and no describe it sent is waiting. */
static void sup_shim_maybe_free(sup_shim_t *shim)
{
    if (shim->sup == NULL && shim->node_done && shim->app_gone &&
        shim->in_flight == 0)
        free(shim);
}

/* The node calls hooks until its last connection has closed. */
static void sup_shim_check_node_done(sup_shim_t *shim)
{
    if (shim->node_done || !shim->node_closing)
        return;
    if (shim->node->priv == NULL ||
        shoal__list_empty(&shim->node->priv->conns))
        shim->node_done = true;
}

void shoal__sup_shim_app_gone(sup_shim_t *shim)
{
    shim->app_gone = true;
    sup_shim_maybe_free(shim);
}

/* ---- finding workers --------------------------------------------------- */

sup_worker_t *shoal__sup_find_worker(shoal__sup_priv_t *priv, const char *name)
{
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++)
            if (strcmp(priv->pools[p]->workers[i].name, name) == 0)
                return &priv->pools[p]->workers[i];
    return NULL;
}

static sup_pool_t *sup_find_pool(shoal__sup_priv_t *priv, const char *name)
{
    for (size_t p = 0; p < priv->n_pools; p++)
        if (strcmp(priv->pools[p]->name, name) == 0)
            return priv->pools[p];
    return NULL;
}

/* ---- runs: one process each -------------------------------------------- */

static void sup_run_maybe_free(sup_run_t *run)
{
    shoal__sup_priv_t *priv = run->sup;

    if (run->open_handles > 0)
        return;
    shoal__list_remove(&run->link);
    free(run);
    if (priv->phase == SUP_CLOSING)
        sup_maybe_closed(priv);
}

static void sup_run_handle_close_cb(uv_handle_t *handle)
{
    sup_run_t *run = handle->data;

    run->open_handles--;
    sup_run_maybe_free(run);
}

static void sup_run_close_pipe(sup_run_t *run, bool is_err)
{
    uv_pipe_t *pipe = is_err ? &run->err : &run->out;
    bool *open = is_err ? &run->err_open : &run->out_open;

    if (!*open)
        return;
    *open = false;
    uv_close((uv_handle_t *)pipe, sup_run_handle_close_cb);
}

static void sup_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    sup_run_t *run = handle->data;

    (void)suggested;
    /* One buffer for every pipe: each read is consumed before the next
     * one is allocated. */
    *buf = uv_buf_init(run->sup->read_buf, sizeof(run->sup->read_buf));
}

static void sup_read_cb(uv_stream_t *stream, ssize_t nread,
                        const uv_buf_t *buf)
{
    sup_run_t *run = stream->data;
    bool is_err = stream == (uv_stream_t *)&run->err;
    sup_line_t *line = is_err ? &run->err_line : &run->out_line;

    if (nread > 0) {
        shoal__sup_log_feed(run->sup, run->worker, line, is_err, buf->base,
                            (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    /* End of file (every holder of the write end is gone) or an error. */
    shoal__sup_log_flush(run->sup, run->worker, line, is_err);
    sup_run_close_pipe(run, is_err);
}

static void sup_exit_cb(uv_process_t *proc, int64_t exit_status,
                        int term_signal)
{
    sup_run_t *run = proc->data;
    sup_worker_t *w = run->worker;

    run->exited = true;
    if (run->parent_fd >= 0) {
        close(run->parent_fd);
        run->parent_fd = -1;
    }
    /* Only now: closing a live process handle would leave a zombie. */
    uv_close((uv_handle_t *)proc, sup_run_handle_close_cb);
    if (run->sup->phase == SUP_CLOSING)
        return;
    if (w->run == run) {
        w->run = NULL;
        sup_worker_exited(w, exit_status, term_signal);
    }
}

/* The worker's command line: shoal node --name NAME --join URL
 * --parent-fd 3 --quiet [--app-path P] --app A... --exec E... */
static char **sup_worker_args(shoal__sup_priv_t *priv, sup_worker_t *w)
{
    sup_pool_t *pool = w->pool;
    size_t n = SUP_FIXED_ARGS + 2 * (pool->opts.n_apps + pool->opts.n_execs);
    char **args = calloc(n, sizeof(*args));
    size_t i = 0;

    if (args == NULL)
        return NULL;
    args[i++] = priv->exe;
    args[i++] = "node";
    args[i++] = "--name";
    args[i++] = w->name;
    args[i++] = "--join";
    args[i++] = priv->url;
    args[i++] = "--parent-fd";
    args[i++] = "3";
    args[i++] = "--quiet";
    if (pool->app_path != NULL) {
        args[i++] = "--app-path";
        args[i++] = pool->app_path;
    }
    for (size_t a = 0; a < pool->opts.n_apps; a++) {
        args[i++] = "--app";
        args[i++] = pool->apps[a];
    }
    for (size_t e = 0; e < pool->opts.n_execs; e++) {
        args[i++] = "--exec";
        args[i++] = pool->execs[e];
    }
    args[i] = NULL;
    return args;
}

static bool sup_env_is_ours(const char *entry)
{
    return strncmp(entry, "SHOAL_WORKER_NAME=", 18) == 0 ||
           strncmp(entry, "SHOAL_WORKER_INDEX=", 19) == 0 ||
           strncmp(entry, "SHOAL_POOL=", 11) == 0 ||
           strncmp(entry, "SHOAL_SUPERVISOR=", 17) == 0;
}

/* This process's environment plus the worker's name, index, pool and
 * supervisor. One allocation: the array, then the four strings. */
static char **sup_worker_env(shoal__sup_priv_t *priv, sup_worker_t *w)
{
    size_t n = 0, extra, count;
    char **env;
    char *text;

    while (environ[n] != NULL)
        n++;
    extra =
        4 * 32 + strlen(w->name) + strlen(w->pool->name) + strlen(priv->url);
    env = malloc((n + 5) * sizeof(*env) + extra);
    if (env == NULL)
        return NULL;
    count = 0;
    for (size_t i = 0; i < n; i++)
        if (!sup_env_is_ours(environ[i]))
            env[count++] = environ[i];
    text = (char *)(env + n + 5);
    env[count++] = text;
    text += sprintf(text, "SHOAL_WORKER_NAME=%s", w->name) + 1;
    env[count++] = text;
    text += sprintf(text, "SHOAL_WORKER_INDEX=%u", w->index) + 1;
    env[count++] = text;
    text += sprintf(text, "SHOAL_POOL=%s", w->pool->name) + 1;
    env[count++] = text;
    sprintf(text, "SHOAL_SUPERVISOR=%s", priv->url);
    env[count] = NULL;
    return env;
}

static void sup_history_start(sup_worker_t *w, uint64_t now)
{
    if (w->n_history > 0) {
        sup_restart_t *last = &w->history[(w->n_history - 1) % SUP_HISTORY];
        if (last->start_ms == 0)
            last->start_ms = now;
    }
}

/* Spawns the worker's next process. A failure counts as an exit with
 * status 127, like a shell's "command not found". */
static void sup_spawn(sup_worker_t *w)
{
    shoal__sup_priv_t *priv = w->sup;
    uv_process_options_t options;
    uv_stdio_container_t stdio[4];
    uv_loop_t *loop = priv->node->loop;
    uv_file fds[2] = {-1, -1};
    char **args = NULL, **env = NULL;
    bool spawned = false;
    sup_run_t *run;
    int err;

    run = calloc(1, sizeof(*run));
    if (run == NULL) {
        snprintf(w->last_error, sizeof(w->last_error),
                 "cannot spawn: out of memory");
        sup_worker_exited(w, 127, 0);
        return;
    }
    run->sup = priv;
    run->worker = w;
    run->parent_fd = -1;
    shoal__list_push(&priv->runs, &run->link);
    uv_pipe_init(loop, &run->out, 0);
    uv_pipe_init(loop, &run->err, 0);
    run->out.data = run->err.data = run->proc.data = run;
    run->out_open = run->err_open = true;
    run->open_handles = 3;

    args = sup_worker_args(priv, w);
    env = sup_worker_env(priv, w);
    /* Both ends close on exec: only the dup on fd 3 reaches the child,
     * and no other child inherits the write end. */
    err = args && env ? uv_pipe(fds, 0, 0) : SHOAL_ENOMEM;
    spawned = err == 0;
    if (err == 0) {
        memset(&options, 0, sizeof(options));
        memset(stdio, 0, sizeof(stdio));
        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[1].data.stream = (uv_stream_t *)&run->out;
        stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
        stdio[2].data.stream = (uv_stream_t *)&run->err;
        stdio[3].flags = UV_INHERIT_FD;
        stdio[3].data.fd = fds[0];
        options.file = priv->exe;
        options.args = args;
        options.env = env;
        options.stdio = stdio;
        options.stdio_count = 4;
        options.exit_cb = sup_exit_cb;
        /* A session of its own: a terminal's Ctrl-C goes to the
         * supervisor only, which then stops the workers in order. */
        options.flags = UV_PROCESS_DETACHED;
        err = uv_spawn(loop, &run->proc, &options);
        close(fds[0]);
    }
    free(args);
    free(env);
    if (err) {
        /* A failed spawn still needs its handle closed. */
        if (fds[1] >= 0)
            close(fds[1]);
        if (spawned)
            uv_close((uv_handle_t *)&run->proc, sup_run_handle_close_cb);
        else
            run->open_handles--; /* never initialised */
        sup_run_close_pipe(run, false);
        sup_run_close_pipe(run, true);
        run->exited = true;
        snprintf(w->last_error, sizeof(w->last_error), "cannot spawn %s: %s",
                 priv->exe, shoal_strerror(err));
        shoal__sup_log_event(priv, w, "%s", w->last_error);
        w->spawned_ms = shoal__sup_now(priv);
        sup_history_start(w, w->spawned_ms ? w->spawned_ms : 1);
        sup_worker_exited(w, 127, 0);
        return;
    }
    run->parent_fd = fds[1];
    run->pid = run->proc.pid;
    uv_read_start((uv_stream_t *)&run->out, sup_alloc_cb, sup_read_cb);
    uv_read_start((uv_stream_t *)&run->err, sup_alloc_cb, sup_read_cb);
    w->run = run;
    w->conn = NULL;
    w->state = SHOAL_WORKER_STARTING;
    w->spawned_ms = shoal__sup_now(priv);
    w->online_ms = 0;
    w->sample_pid = 0;
    w->cpu_percent = 0;
    w->rss_bytes = 0;
    w->calls_in_flight = 0;
    w->calls_done = 0;
    /* 0 means "not yet" in the history: the first millisecond is 1. */
    sup_history_start(w, w->spawned_ms ? w->spawned_ms : 1);
    if (w->pool->opts.start_timeout_ms > 0)
        uv_timer_start(&w->timer, sup_spawn_due_cb,
                       w->pool->opts.start_timeout_ms, 0);
}

/* Spawns after delay_ms; always through the timer, so that a worker that
 * cannot be spawned never recurses. */
static void sup_schedule_spawn(sup_worker_t *w, uint64_t delay_ms)
{
    w->state = SHOAL_WORKER_STARTING;
    w->timer_waiting = true;
    w->spawn_due_ms = shoal__sup_now(w->sup) + delay_ms;
    uv_timer_start(&w->timer, sup_spawn_due_cb, delay_ms, 0);
}

/* The worker's one timer: a spawn that is due, a start that takes too
 * long, or the kill timeout of a restart. */
static void sup_spawn_due_cb(uv_timer_t *timer)
{
    sup_worker_t *w = timer->data;

    if (w->timer_waiting) {
        w->timer_waiting = false;
        sup_spawn(w);
        return;
    }
    if (w->run == NULL || w->run->exited)
        return;
    if (w->state == SHOAL_WORKER_STARTING) {
        snprintf(w->last_error, sizeof(w->last_error),
                 "no hello within %llu ms of its start; killed",
                 (unsigned long long)w->pool->opts.start_timeout_ms);
        shoal__sup_log_event(w->sup, w, "%s", w->last_error);
        uv_process_kill(&w->run->proc, SIGKILL);
        return;
    }
    /* The kill timeout of a restart: SIGTERM was not enough. */
    if (w->state == SHOAL_WORKER_STOPPING) {
        shoal__sup_log_event(w->sup, w,
                             "still running %llu ms after SIGTERM; "
                             "sending SIGKILL",
                             (unsigned long long)w->sup->opts.kill_timeout_ms);
        uv_process_kill(&w->run->proc, SIGKILL);
    }
}

/* ---- policies ---------------------------------------------------------- */

static void sup_history_add(sup_worker_t *w, uint64_t now, int64_t status,
                            int signal, uint64_t delay, bool requested)
{
    sup_restart_t *r = &w->history[w->n_history % SUP_HISTORY];

    r->exit_ms = now;
    r->delay_ms = delay;
    r->start_ms = 0;
    r->exit_status = status;
    r->term_signal = signal;
    r->requested = requested;
    w->n_history++;
}

/* Counts the restarts inside the window and, when the budget allows one
 * more, records it. */
static bool sup_budget_take(sup_worker_t *w, uint64_t now)
{
    const shoal_pool_opts_t *o = &w->pool->opts;
    size_t inside = 0;

    for (size_t i = 0; i < w->budget_len; i++)
        if (now - w->budget[i] < o->restart_window_ms)
            inside++;
    if (inside >= o->max_restarts)
        return false;
    /* The ring holds max_restarts entries: the oldest falls out. */
    if (w->budget_len < o->max_restarts) {
        w->budget[w->budget_len++] = now;
    } else {
        w->budget[w->budget_head] = now;
        w->budget_head = (w->budget_head + 1) % o->max_restarts;
    }
    return true;
}

static uint64_t sup_backoff_delay(const shoal_pool_opts_t *o, unsigned step)
{
    double delay;

    if (step == 0)
        return 0;
    delay = (double)o->backoff_initial_ms * pow(o->backoff_factor, step - 1);
    if (!(delay < (double)o->backoff_max_ms))
        return o->backoff_max_ms;
    return (uint64_t)delay;
}

static void sup_describe_exit(char *out, size_t len, int64_t status,
                              int signal)
{
    if (signal != 0)
        snprintf(out, len, "killed by signal %d (%s)", signal,
                 strsignal(signal));
    else
        snprintf(out, len, "exited with status %lld", (long long)status);
}

static void sup_worker_exited(sup_worker_t *w, int64_t exit_status,
                              int term_signal)
{
    shoal__sup_priv_t *priv = w->sup;
    const shoal_pool_opts_t *o = &w->pool->opts;
    uint64_t now = shoal__sup_now(priv);
    bool abnormal = term_signal != 0 || exit_status != 0;
    char how[96];
    uint64_t delay;

    uv_timer_stop(&w->timer);
    w->timer_waiting = false;
    w->conn = NULL;
    w->has_exited = true;
    w->last_exit_status = exit_status;
    w->last_term_signal = term_signal;
    w->last_exit_ms = now;
    sup_describe_exit(how, sizeof(how), exit_status, term_signal);

    if (priv->phase >= SUP_DRAINING) {
        w->state = SHOAL_WORKER_STOPPED;
        w->restart_requested = false;
        sup_maybe_stopped(priv);
        return;
    }
    if (w->restart_requested) {
        w->restart_requested = false;
        w->restarts++;
        sup_history_add(w, now, exit_status, term_signal, 0, true);
        shoal__sup_log_event(priv, w, "%s; restarting as requested", how);
        sup_schedule_spawn(w, 0);
        return;
    }
    if (o->restart == SHOAL_RESTART_TEMPORARY ||
        (o->restart == SHOAL_RESTART_TRANSIENT && !abnormal)) {
        w->state = SHOAL_WORKER_STOPPED;
        shoal__sup_log_event(priv, w, "%s; not restarted (%s)", how,
                             shoal_restart_policy_name(o->restart));
        return;
    }
    if (now - w->spawned_ms >= o->reset_after_ms)
        w->backoff_step = 0;
    if (!sup_budget_take(w, now)) {
        w->state = SHOAL_WORKER_ERRORED;
        shoal__sup_log_event(
            priv, w, "%s; errored: restarted %u times within %llu ms", how,
            o->max_restarts, (unsigned long long)o->restart_window_ms);
        return;
    }
    delay = sup_backoff_delay(o, w->backoff_step);
    w->backoff_step++;
    w->restarts++;
    sup_history_add(w, now, exit_status, term_signal, delay, false);
    shoal__sup_log_event(priv, w, "%s; restarting in %llu ms", how,
                         (unsigned long long)delay);
    sup_schedule_spawn(w, delay);
}

/* ---- node hooks -------------------------------------------------------- */

static cJSON *sup_app_names(const cJSON *desc)
{
    const cJSON *apps = cJSON_GetObjectItemCaseSensitive(desc, "applications");
    cJSON *names = cJSON_CreateArray();
    const cJSON *app;

    if (names == NULL)
        return NULL;
    cJSON_ArrayForEach(app, apps)
    {
        const char *name = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(app, "name"));
        if (name != NULL)
            cJSON_AddItemToArray(names, cJSON_CreateString(name));
    }
    return names;
}

static double sup_json_num(const cJSON *json, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, a);

    if (b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, b);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* What a node's description says about it, for a worker or a node that
 * joined by hand alike: its applications (kept when the description lists
 * none) and its call counters. */
static void sup_read_description(const cJSON *desc, cJSON **apps,
                                 double *calls_in_flight, double *calls_done)
{
    cJSON *names = sup_app_names(desc);

    if (names != NULL) {
        cJSON_Delete(*apps);
        *apps = names;
    }
    *calls_in_flight = sup_json_num(desc, "load", "calls_in_flight");
    *calls_done = sup_json_num(desc, "counters", "calls_served");
}

static void sup_worker_update(sup_worker_t *w, const cJSON *desc)
{
    sup_read_description(desc, &w->apps, &w->calls_in_flight, &w->calls_done);
}

static void sup_remote_update(sup_remote_t *r, const cJSON *desc)
{
    sup_read_description(desc, &r->apps, &r->calls_in_flight, &r->calls_done);
    /* A remote node has no pid here to sample: its own figure it is. */
    r->rss_bytes = sup_json_num(desc, "load", "rss_bytes");
}

static sup_remote_t *sup_find_remote(shoal__sup_priv_t *priv,
                                     const shoal_conn_t *conn)
{
    for (shoal__list_t *pos = priv->remotes.next; pos != &priv->remotes;
         pos = pos->next) {
        sup_remote_t *r = SHOAL__CONTAINER(pos, sup_remote_t, link);
        if (r->conn == conn)
            return r;
    }
    return NULL;
}

static sup_worker_t *sup_find_worker_by_conn(shoal__sup_priv_t *priv,
                                             const shoal_conn_t *conn)
{
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++)
            if (priv->pools[p]->workers[i].conn == conn)
                return &priv->pools[p]->workers[i];
    return NULL;
}

static void sup_remote_free(sup_remote_t *r)
{
    shoal__list_remove(&r->link);
    cJSON_Delete(r->apps);
    free(r);
}

/* A worker is online once the node with its name and the pid of its
 * process says hello; any other node that says hello joined by hand. */
static void sup_on_hello(shoal_node_t *node, shoal_conn_t *conn,
                         const shoal_payload_t *payload, void *data)
{
    sup_shim_t *shim = data;
    shoal__sup_priv_t *priv = shim->sup;
    const char *name = shoal_conn_peer_name(conn);
    sup_worker_t *w;
    sup_remote_t *r;
    cJSON *desc;
    int64_t pid;

    (void)node;
    if (priv == NULL || priv->phase == SUP_CLOSING)
        return;
    desc = payload->data ? shoal_payload_to_cjson(payload) : NULL;
    pid = (int64_t)sup_json_num(desc, "pid", NULL);
    w = shoal__sup_find_worker(priv, name);
    if (w != NULL && w->run != NULL && !w->run->exited && w->run->pid == pid) {
        w->conn = conn;
        if (w->state == SHOAL_WORKER_STARTING) {
            /* The start timeout is over; no other use of the timer runs
             * while starting. */
            uv_timer_stop(&w->timer);
            w->state = SHOAL_WORKER_ONLINE;
            w->online_ms = shoal__sup_now(priv);
        }
        sup_worker_update(w, desc);
        cJSON_Delete(desc);
        return;
    }
    r = sup_find_remote(priv, conn);
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            cJSON_Delete(desc);
            return;
        }
        shoal__list_push(&priv->remotes, &r->link);
        r->conn = conn;
        r->since_ms = shoal__sup_now(priv);
        shoal__sup_log_event(priv, NULL, "node %s joined from %s", name,
                             shoal_conn_peer_address(conn));
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->address, sizeof(r->address), "%s",
             shoal_conn_peer_address(conn));
    r->pid = pid;
    sup_remote_update(r, desc);
    cJSON_Delete(desc);
}

static void sup_on_conn_close(shoal_node_t *node, shoal_conn_t *conn,
                              int status, void *data)
{
    sup_shim_t *shim = data;
    shoal__sup_priv_t *priv = shim->sup;
    sup_worker_t *w;
    sup_remote_t *r;

    (void)node;
    (void)status;
    if (priv != NULL) {
        w = sup_find_worker_by_conn(priv, conn);
        if (w != NULL) {
            w->conn = NULL;
            /* The process lives: its node redials. */
            if (w->state == SHOAL_WORKER_ONLINE)
                w->state = SHOAL_WORKER_STARTING;
        }
        r = sup_find_remote(priv, conn);
        if (r != NULL) {
            shoal__sup_log_event(priv, NULL, "node %s left", r->name);
            sup_remote_free(r);
        }
    }
    sup_shim_check_node_done(shim);
    sup_shim_maybe_free(shim);
}

static void sup_on_describe(shoal_node_t *node, cJSON *desc, void *data)
{
    sup_shim_t *shim = data;
    shoal__sup_priv_t *priv = shim->sup;
    cJSON *sup, *pools;

    (void)node;
    if (priv == NULL)
        return;
    sup = cJSON_AddObjectToObject(desc, "supervisor");
    if (sup == NULL)
        return;
    cJSON_AddStringToObject(sup, "url", priv->url);
    pools = cJSON_AddArrayToObject(sup, "pools");
    for (size_t p = 0; pools != NULL && p < priv->n_pools; p++) {
        cJSON *pool = cJSON_CreateObject();
        cJSON_AddStringToObject(pool, "name", priv->pools[p]->name);
        cJSON_AddNumberToObject(pool, "workers", priv->pools[p]->n_workers);
        cJSON_AddItemToArray(pools, pool);
    }
}

static void sup_on_node_close(shoal_node_t *node, void *data)
{
    sup_shim_t *shim = data;

    (void)node;
    shim->node_closing = true;
    sup_shim_check_node_done(shim);
    sup_shim_maybe_free(shim);
}

/* ---- samples ------------------------------------------------------------ */

typedef struct {
    sup_shim_t *shim;
    shoal_conn_t *conn;
} sup_describe_req_t;

static void sup_describe_cb(const shoal_reply_t *reply, void *data)
{
    sup_describe_req_t *req = data;
    sup_shim_t *shim = req->shim;
    shoal__sup_priv_t *priv = shim->sup;
    sup_worker_t *w;
    sup_remote_t *r;
    cJSON *desc;

    shim->in_flight--;
    /* Only a reply proves the connection is still the one asked. */
    if (priv != NULL && reply->status == 0) {
        desc = shoal_payload_to_cjson(&reply->result);
        if (desc != NULL) {
            if ((w = sup_find_worker_by_conn(priv, req->conn)) != NULL)
                sup_worker_update(w, desc);
            else if ((r = sup_find_remote(priv, req->conn)) != NULL)
                sup_remote_update(r, desc);
            cJSON_Delete(desc);
        }
    }
    free(req);
    sup_shim_maybe_free(shim);
}

static void sup_describe(shoal__sup_priv_t *priv, shoal_conn_t *conn)
{
    sup_describe_req_t *req = malloc(sizeof(*req));

    if (req == NULL)
        return;
    req->shim = priv->shim;
    req->conn = conn;
    if (shoal_conn_describe(conn, priv->opts.sample_interval_ms,
                            sup_describe_cb, req) != 0) {
        free(req);
        return;
    }
    priv->shim->in_flight++;
}

static void sup_sample_worker(shoal__sup_priv_t *priv, sup_worker_t *w,
                              uint64_t now)
{
    uint64_t ticks, rss;
    int pid = w->run->pid;

    if (shoal__sup_proc_sample(pid, &ticks, &rss) != 0)
        return;
    if (w->sample_pid == pid && now > w->cpu_sample_ms &&
        ticks >= w->cpu_ticks)
        w->cpu_percent = (double)(ticks - w->cpu_ticks) * 100000.0 /
                         (double)shoal__sup_proc_hz() /
                         (double)(now - w->cpu_sample_ms);
    w->sample_pid = pid;
    w->cpu_ticks = ticks;
    w->cpu_sample_ms = now;
    w->rss_bytes = rss;
    (void)priv;
}

static void sup_sample_cb(uv_timer_t *timer)
{
    shoal__sup_priv_t *priv = timer->data;
    uint64_t now = shoal__sup_now(priv);

    if (priv->shim->node_closing)
        return;
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++) {
            sup_worker_t *w = &priv->pools[p]->workers[i];
            if (w->run != NULL && !w->run->exited)
                sup_sample_worker(priv, w, now);
            /* A describe times out within the interval: at most one
             * per connection is in flight. */
            if (w->conn != NULL)
                sup_describe(priv, w->conn);
        }
    for (shoal__list_t *pos = priv->remotes.next; pos != &priv->remotes;
         pos = pos->next) {
        sup_describe(priv, SHOAL__CONTAINER(pos, sup_remote_t, link)->conn);
    }
}

/* ---- init --------------------------------------------------------------- */

static int sup_make_runtime_dir(shoal__sup_priv_t *priv, const char *dir)
{
    const char *tmp = getenv("TMPDIR");
    int n;

    if (dir != NULL) {
        n = snprintf(priv->runtime_dir, sizeof(priv->runtime_dir), "%s", dir);
        if (n < 0 || (size_t)n >= sizeof(priv->runtime_dir))
            return SHOAL_ENAMETOOLONG;
        return 0;
    }
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    n = snprintf(priv->runtime_dir, sizeof(priv->runtime_dir),
                 "%s/shoal-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(priv->runtime_dir))
        return SHOAL_ENAMETOOLONG;
    if (mkdtemp(priv->runtime_dir) == NULL)
        return uv_translate_sys_error(errno);
    priv->own_runtime_dir = true;
    return 0;
}

static char *sup_exe_path(const char *exe)
{
    char path[4096];
    size_t len = sizeof(path);

    if (exe != NULL)
        return strdup(exe);
    if (uv_exepath(path, &len) != 0)
        return NULL;
    return strdup(path);
}

static void sup_priv_free(shoal__sup_priv_t *priv)
{
    for (size_t p = 0; p < priv->n_pools; p++) {
        sup_pool_t *pool = priv->pools[p];
        for (unsigned i = 0; i < pool->n_workers; i++) {
            cJSON_Delete(pool->workers[i].apps);
            free(pool->workers[i].budget);
        }
        free(pool->workers);
        for (size_t a = 0; a < pool->opts.n_apps; a++)
            free(pool->apps[a]);
        for (size_t e = 0; e < pool->opts.n_execs; e++)
            free(pool->execs[e]);
        free(pool->apps);
        free(pool->execs);
        free(pool->app_path);
        free(pool->name);
        free(pool);
    }
    free(priv->pools);
    free(priv->drains);
    free(priv->exe);
    free(priv->log_dir);
    free(priv);
}

int shoal_supervisor_init(shoal_supervisor_t *sup, shoal_node_t *node,
                          const shoal_supervisor_opts_t *opts)
{
    shoal_supervisor_opts_t defaults;
    shoal__sup_priv_t *priv;
    shoal_node_hooks_t hooks;
    uv_loop_t *loop = node->loop;
    bool hooks_added;
    int err, n;

    if (opts == NULL) {
        shoal_supervisor_opts_default(&defaults);
        opts = &defaults;
    }
    if (opts->log_max_bytes < 2 * SHOAL_SUP_MAX_LINE_BYTES &&
        opts->log_dir != NULL)
        return SHOAL_EINVAL;
    priv = calloc(1, sizeof(*priv));
    if (priv == NULL)
        return SHOAL_ENOMEM;
    priv->handle = sup;
    priv->node = node;
    priv->opts = *opts;
    shoal__list_init(&priv->runs);
    shoal__list_init(&priv->remotes);
    priv->exe = sup_exe_path(opts->exe);
    priv->log_dir = opts->log_dir ? strdup(opts->log_dir) : NULL;
    priv->shim = calloc(1, sizeof(*priv->shim));
    if (priv->exe == NULL || priv->shim == NULL ||
        (opts->log_dir != NULL && priv->log_dir == NULL)) {
        free(priv->shim);
        sup_priv_free(priv);
        return SHOAL_ENOMEM;
    }
    priv->opts.exe = priv->exe;
    priv->opts.log_dir = priv->log_dir;
    priv->opts.runtime_dir = NULL;
    if (priv->log_dir != NULL && mkdir(priv->log_dir, 0755) != 0 &&
        errno != EEXIST) {
        err = uv_translate_sys_error(errno);
        free(priv->shim);
        sup_priv_free(priv);
        return err;
    }
    err = sup_make_runtime_dir(priv, opts->runtime_dir);
    if (err == 0) {
        n = snprintf(priv->sock_path, sizeof(priv->sock_path),
                     "%s/supervisor.sock", priv->runtime_dir);
        if (n < 0 || (size_t)n >= sizeof(priv->sock_path))
            err = SHOAL_ENAMETOOLONG;
        snprintf(priv->url, sizeof(priv->url), "unix://%s", priv->sock_path);
    }
    priv->shim->sup = priv;
    priv->shim->node = node;
    sup->node = node;
    sup->priv = priv;
    if (err == 0)
        err = shoal__sup_app_add(priv);
    if (err) {
        if (priv->own_runtime_dir)
            rmdir(priv->runtime_dir);
        free(priv->shim);
        sup_priv_free(priv);
        sup->priv = NULL;
        return err;
    }
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_hello = sup_on_hello;
    hooks.on_conn_close = sup_on_conn_close;
    hooks.on_describe = sup_on_describe;
    hooks.on_close = sup_on_node_close;
    hooks.data = priv->shim;
    err = shoal_node_add_hooks(node, &hooks);
    hooks_added = err == 0;
    if (err == 0)
        err = shoal_node_listen(node, priv->url);
    if (err) {
        /* Hooks, once added, stay with the node: then the shim goes when
         * the node closes. */
        sup_shim_t *shim = priv->shim;
        shim->sup = NULL;
        if (!shim->app_gone)
            shoal_node_remove_app(node, "supervisor");
        if (priv->own_runtime_dir)
            rmdir(priv->runtime_dir);
        sup_priv_free(priv);
        sup->priv = NULL;
        if (!hooks_added)
            shim->node_done = true;
        sup_shim_maybe_free(shim);
        return err;
    }
    uv_timer_init(loop, &priv->drain_timer);
    uv_timer_init(loop, &priv->kill_timer);
    uv_timer_init(loop, &priv->done_timer);
    uv_timer_init(loop, &priv->sample_timer);
    priv->drain_timer.data = priv->kill_timer.data = priv;
    priv->done_timer.data = priv->sample_timer.data = priv;
    priv->started_ms = uv_now(loop);
    priv->phase = SUP_IDLE;
    return 0;
}

const char *shoal_supervisor_url(const shoal_supervisor_t *sup)
{
    return sup->priv->url;
}

/* ---- pools -------------------------------------------------------------- */

static int sup_fail(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int sup_fail(char *err, size_t err_len, int code, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && err_len > 0) {
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A name a node can take and a file can be called: no '/', no spaces. */
static bool sup_name_ok(const char *name)
{
    if (name == NULL || name[0] == '\0' || name[0] == '.')
        return false;
    for (const char *p = name; *p; p++)
        if (*p == '/' || (unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static int sup_check_pool(shoal__sup_priv_t *priv, const shoal_pool_opts_t *o,
                          unsigned workers, char *err, size_t err_len)
{
    if (!sup_name_ok(o->name))
        return sup_fail(err, err_len, SHOAL_EINVAL,
                        "pool name '%s': must be a non-empty name without "
                        "'/' or spaces",
                        o->name ? o->name : "");
    if (strlen(o->name) > SHOAL_MAX_NAME_BYTES - 8)
        return sup_fail(err, err_len, SHOAL_ENAMETOOLONG,
                        "pool name '%s': longer than %d bytes", o->name,
                        SHOAL_MAX_NAME_BYTES - 8);
    if (sup_find_pool(priv, o->name) != NULL)
        return sup_fail(err, err_len, SHOAL_EEXIST,
                        "pool '%s': there is already a pool of that name",
                        o->name);
    if (workers == 0 || workers > SHOAL_SUP_MAX_WORKERS)
        return sup_fail(err, err_len, SHOAL_EINVAL,
                        "pool '%s': workers must be between 1 and %d", o->name,
                        SHOAL_SUP_MAX_WORKERS);
    if (o->n_names > 0 && o->n_names != workers)
        return sup_fail(err, err_len, SHOAL_EINVAL,
                        "pool '%s': %zu names for %u workers", o->name,
                        o->n_names, workers);
    if (shoal_restart_policy_name(o->restart) == NULL)
        return sup_fail(err, err_len, SHOAL_EINVAL,
                        "pool '%s': unknown restart policy", o->name);
    if (!(o->backoff_factor >= 1.0 && o->backoff_factor <= 1000.0))
        return sup_fail(err, err_len, SHOAL_EINVAL,
                        "pool '%s': the backoff factor must be between 1 "
                        "and 1000",
                        o->name);
    if (o->max_restarts > 1000000)
        return sup_fail(err, err_len, SHOAL_EINVAL,
                        "pool '%s': max_restarts is at most 1000000", o->name);
    if (o->restart_window_ms == 0)
        return sup_fail(err, err_len, SHOAL_EINVAL,
                        "pool '%s': the restart window must be positive",
                        o->name);
    if (priv->n_pools >= SHOAL_SUP_MAX_POOLS)
        return sup_fail(err, err_len, SHOAL_EINVAL, "more than %d pools",
                        SHOAL_SUP_MAX_POOLS);
    for (size_t i = 0; i < o->n_apps; i++)
        if (o->apps[i] == NULL || o->apps[i][0] == '\0')
            return sup_fail(err, err_len, SHOAL_EINVAL,
                            "pool '%s': an empty application name", o->name);
    for (size_t i = 0; i < o->n_execs; i++)
        if (o->execs[i] == NULL || o->execs[i][0] == '\0')
            return sup_fail(err, err_len, SHOAL_EINVAL,
                            "pool '%s': an empty command", o->name);
    return 0;
}

static char **sup_strdupv(const char *const *v, size_t n)
{
    char **copy = calloc(n ? n : 1, sizeof(*copy));

    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((copy[i] = strdup(v[i])) == NULL) {
            while (i > 0)
                free(copy[--i]);
            free(copy);
            return NULL;
        }
    return copy;
}

static int sup_name_workers(shoal__sup_priv_t *priv, sup_pool_t *pool,
                            const shoal_pool_opts_t *o, char *err,
                            size_t err_len)
{
    for (unsigned i = 0; i < pool->n_workers; i++) {
        sup_worker_t *w = &pool->workers[i];

        if (o->n_names > 0) {
            if (!sup_name_ok(o->names[i]) ||
                strlen(o->names[i]) > SHOAL_MAX_NAME_BYTES)
                return sup_fail(err, err_len, SHOAL_EINVAL,
                                "pool '%s': worker name '%s' is not a "
                                "valid node name",
                                o->name, o->names[i]);
            snprintf(w->name, sizeof(w->name), "%s", o->names[i]);
        } else {
            snprintf(w->name, sizeof(w->name), "%s-%u", o->name, i + 1);
        }
        if (shoal__sup_find_worker(priv, w->name) != NULL ||
            strcmp(w->name, shoal_node_name(priv->node)) == 0)
            return sup_fail(err, err_len, SHOAL_EEXIST,
                            "pool '%s': the name '%s' is already taken",
                            o->name, w->name);
        for (unsigned j = 0; j < i; j++)
            if (strcmp(pool->workers[j].name, w->name) == 0)
                return sup_fail(err, err_len, SHOAL_EEXIST,
                                "pool '%s': the name '%s' is given twice",
                                o->name, w->name);
    }
    return 0;
}

static void sup_pool_free_partial(sup_pool_t *pool)
{
    if (pool->workers != NULL)
        for (unsigned i = 0; i < pool->n_workers; i++)
            free(pool->workers[i].budget);
    free(pool->workers);
    for (size_t a = 0; pool->apps && a < pool->opts.n_apps; a++)
        free(pool->apps[a]);
    for (size_t e = 0; pool->execs && e < pool->opts.n_execs; e++)
        free(pool->execs[e]);
    free(pool->apps);
    free(pool->execs);
    free(pool->app_path);
    free(pool->name);
    free(pool);
}

int shoal_supervisor_add_pool(shoal_supervisor_t *sup,
                              const shoal_pool_opts_t *opts, char *err,
                              size_t err_len)
{
    shoal__sup_priv_t *priv = sup->priv;
    sup_pool_t *pool, **grown;
    unsigned workers;
    int rc;

    if (priv->phase >= SUP_DRAINING)
        return sup_fail(err, err_len, SHOAL_ESTOPPING,
                        "the supervisor is stopping");
    workers = opts->workers;
    if (workers == 0)
        workers = opts->n_names > 0 ? (unsigned)opts->n_names
                                    : uv_available_parallelism();
    rc = sup_check_pool(priv, opts, workers, err, err_len);
    if (rc)
        return rc;
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return sup_fail(err, err_len, SHOAL_ENOMEM, "out of memory");
    pool->sup = priv;
    pool->opts = *opts;
    pool->opts.workers = workers;
    pool->name = strdup(opts->name);
    pool->apps = sup_strdupv(opts->apps, opts->n_apps);
    pool->execs = sup_strdupv(opts->execs, opts->n_execs);
    pool->app_path = opts->app_path ? strdup(opts->app_path) : NULL;
    pool->workers = calloc(workers, sizeof(*pool->workers));
    pool->n_workers = workers;
    if (pool->name == NULL || pool->apps == NULL || pool->execs == NULL ||
        pool->workers == NULL || (opts->app_path && !pool->app_path)) {
        if (pool->apps == NULL)
            pool->opts.n_apps = 0;
        if (pool->execs == NULL)
            pool->opts.n_execs = 0;
        sup_pool_free_partial(pool);
        return sup_fail(err, err_len, SHOAL_ENOMEM, "out of memory");
    }
    pool->opts.name = pool->name;
    pool->opts.apps = (const char *const *)pool->apps;
    pool->opts.execs = (const char *const *)pool->execs;
    pool->opts.app_path = pool->app_path;
    pool->opts.names = NULL;
    for (unsigned i = 0; i < workers; i++) {
        pool->workers[i].budget = calloc(
            opts->max_restarts ? opts->max_restarts : 1, sizeof(uint64_t));
        if (pool->workers[i].budget == NULL) {
            sup_pool_free_partial(pool);
            return sup_fail(err, err_len, SHOAL_ENOMEM, "out of memory");
        }
    }
    rc = sup_name_workers(priv, pool, opts, err, err_len);
    pool->opts.n_names = 0;
    grown =
        rc ? NULL : realloc(priv->pools, (priv->n_pools + 1) * sizeof(*grown));
    if (grown == NULL) {
        sup_pool_free_partial(pool);
        return rc ? rc : sup_fail(err, err_len, SHOAL_ENOMEM, "out of memory");
    }
    priv->pools = grown;
    priv->pools[priv->n_pools++] = pool;
    for (unsigned i = 0; i < workers; i++) {
        sup_worker_t *w = &pool->workers[i];
        w->sup = priv;
        w->pool = pool;
        w->index = i;
        w->state = SHOAL_WORKER_STOPPED;
        w->log_fd = -1;
        uv_timer_init(priv->node->loop, &w->timer);
        w->timer.data = w;
        if (priv->phase == SUP_RUNNING)
            sup_schedule_spawn(w, 0);
    }
    return 0;
}

/* ---- start -------------------------------------------------------------- */

int shoal_supervisor_start(shoal_supervisor_t *sup)
{
    shoal__sup_priv_t *priv = sup->priv;

    if (priv->phase >= SUP_DRAINING)
        return SHOAL_ESTOPPING;
    if (priv->phase == SUP_RUNNING)
        return 0;
    priv->phase = SUP_RUNNING;
    /* Spawned at once, not through the timer: the first ones matter for
     * how soon a pool is up. */
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++) {
            sup_worker_t *w = &priv->pools[p]->workers[i];
            w->state = SHOAL_WORKER_STARTING;
            sup_spawn(w);
        }
    if (priv->opts.sample_interval_ms > 0) {
        uv_timer_start(&priv->sample_timer, sup_sample_cb,
                       priv->opts.sample_interval_ms,
                       priv->opts.sample_interval_ms);
        /* Sampling alone keeps nothing alive. */
        uv_unref((uv_handle_t *)&priv->sample_timer);
    }
    return 0;
}

/* ---- restart ------------------------------------------------------------ */

static void sup_worker_restart(sup_worker_t *w)
{
    shoal__sup_priv_t *priv = w->sup;

    /* A restart by hand is a fresh start: budget and delays reset. */
    w->budget_len = 0;
    w->budget_head = 0;
    w->backoff_step = 0;
    if (w->run != NULL && !w->run->exited) {
        if (w->restart_requested)
            return;
        w->restart_requested = true;
        w->state = SHOAL_WORKER_STOPPING;
        w->timer_waiting = false;
        uv_process_kill(&w->run->proc, SIGTERM);
        uv_timer_start(&w->timer, sup_spawn_due_cb, priv->opts.kill_timeout_ms,
                       0);
        return;
    }
    uv_timer_stop(&w->timer);
    w->restarts++;
    sup_history_add(w, shoal__sup_now(priv), 0, 0, 0, true);
    shoal__sup_log_event(priv, w, "started again as requested");
    sup_schedule_spawn(w, 0);
}

int shoal_supervisor_restart(shoal_supervisor_t *sup, const char *name)
{
    shoal__sup_priv_t *priv = sup->priv;
    int n = 0;

    if (priv->phase >= SUP_DRAINING)
        return SHOAL_ESTOPPING;
    if (priv->phase == SUP_IDLE)
        return SHOAL_EINVAL;
    for (size_t p = 0; p < priv->n_pools; p++) {
        sup_pool_t *pool = priv->pools[p];
        bool whole = name == NULL || strcmp(pool->name, name) == 0;
        for (unsigned i = 0; i < pool->n_workers; i++)
            if (whole || strcmp(pool->workers[i].name, name) == 0) {
                sup_worker_restart(&pool->workers[i]);
                n++;
            }
    }
    if (n == 0 && name != NULL)
        return SHOAL_ENOTFOUND;
    return n;
}

/* ---- stop --------------------------------------------------------------- */

static void sup_done_cb(uv_timer_t *timer)
{
    shoal__sup_priv_t *priv = timer->data;
    shoal_supervisor_stop_cb cb = priv->stop_cb;

    priv->stop_cb = NULL;
    if (cb)
        cb(priv->handle, 0);
}

/* Every worker has been reaped: the stop is over. The callback runs from
 * a timer, never from inside shoal_supervisor_stop. */
static void sup_maybe_stopped(shoal__sup_priv_t *priv)
{
    if (priv->phase != SUP_TERMINATING)
        return;
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++)
            if (priv->pools[p]->workers[i].run != NULL)
                return;
    priv->phase = SUP_STOPPED;
    uv_timer_stop(&priv->kill_timer);
    shoal__sup_log_event(priv, NULL, "every worker has exited");
    uv_timer_start(&priv->done_timer, sup_done_cb, 0, 0);
}

static void sup_kill_cb(uv_timer_t *timer)
{
    shoal__sup_priv_t *priv = timer->data;

    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++) {
            sup_worker_t *w = &priv->pools[p]->workers[i];
            if (w->run != NULL && !w->run->exited) {
                shoal__sup_log_event(
                    priv, w,
                    "still running %llu ms after SIGTERM; "
                    "sending SIGKILL",
                    (unsigned long long)priv->opts.kill_timeout_ms);
                uv_process_kill(&w->run->proc, SIGKILL);
            }
        }
}

/* Drains are over (or timed out): SIGTERM to every worker. */
static void sup_terminate(shoal__sup_priv_t *priv)
{
    unsigned running = 0;

    priv->phase = SUP_TERMINATING;
    uv_timer_stop(&priv->drain_timer);
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++) {
            sup_worker_t *w = &priv->pools[p]->workers[i];
            uv_timer_stop(&w->timer);
            w->timer_waiting = false;
            w->restart_requested = false;
            if (w->run != NULL && !w->run->exited) {
                w->state = SHOAL_WORKER_STOPPING;
                uv_process_kill(&w->run->proc, SIGTERM);
                running++;
            }
        }
    if (running > 0) {
        shoal__sup_log_event(priv, NULL,
                             "stopping: SIGTERM sent to %u worker%s", running,
                             running == 1 ? "" : "s");
        uv_timer_start(&priv->kill_timer, sup_kill_cb,
                       priv->opts.kill_timeout_ms, 0);
    }
    sup_maybe_stopped(priv);
}

static void sup_drain_done(void *done_data)
{
    sup_drain_round_t *round = done_data;
    shoal__sup_priv_t *priv = round->sup;

    round->pending--;
    if (round->pending > 0)
        return;
    if (priv != NULL) {
        priv->round = NULL;
        sup_terminate(priv);
    }
    free(round);
}

static void sup_drain_timeout_cb(uv_timer_t *timer)
{
    shoal__sup_priv_t *priv = timer->data;
    sup_drain_round_t *round = priv->round;

    if (round != NULL) {
        shoal__sup_log_event(priv, NULL,
                             "drain timeout (%llu ms) passed with work "
                             "still in flight",
                             (unsigned long long)priv->opts.drain_timeout_ms);
        /* Late dones still find the round; it goes with the last. */
        round->sup = NULL;
        priv->round = NULL;
    }
    sup_terminate(priv);
}

int shoal_supervisor_add_drain(shoal_supervisor_t *sup, shoal_drain_fn drain,
                               void *data)
{
    shoal__sup_priv_t *priv = sup->priv;
    sup_drain_t *grown;

    if (drain == NULL)
        return SHOAL_EINVAL;
    if (priv->phase >= SUP_DRAINING)
        return SHOAL_ESTOPPING;
    grown = realloc(priv->drains, (priv->n_drains + 1) * sizeof(*grown));
    if (grown == NULL)
        return SHOAL_ENOMEM;
    grown[priv->n_drains].fn = drain;
    grown[priv->n_drains].data = data;
    priv->drains = grown;
    priv->n_drains++;
    return 0;
}

int shoal_supervisor_stop(shoal_supervisor_t *sup, shoal_supervisor_stop_cb cb)
{
    shoal__sup_priv_t *priv = sup->priv;
    sup_drain_round_t *round;

    if (priv->phase >= SUP_DRAINING)
        return SHOAL_ESTOPPING;
    priv->phase = SUP_DRAINING;
    priv->stop_cb = cb;
    shoal__sup_log_event(priv, NULL, "stopping");
    /* No more restarts: workers waiting for one are done. */
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++) {
            sup_worker_t *w = &priv->pools[p]->workers[i];
            if (w->run == NULL) {
                uv_timer_stop(&w->timer);
                w->timer_waiting = false;
                if (w->state != SHOAL_WORKER_ERRORED)
                    w->state = SHOAL_WORKER_STOPPED;
            }
        }
    round = priv->n_drains > 0 ? calloc(1, sizeof(*round)) : NULL;
    if (round == NULL) {
        /* No drains (or no memory to wait for them). */
        sup_terminate(priv);
        return 0;
    }
    round->sup = priv;
    /* One for each drain, one for this loop: a drain that is done at once
     * must not end the round before the others were asked. */
    round->pending = (unsigned)priv->n_drains + 1;
    priv->round = round;
    uv_timer_start(&priv->drain_timer, sup_drain_timeout_cb,
                   priv->opts.drain_timeout_ms, 0);
    for (size_t i = 0; i < priv->n_drains; i++)
        priv->drains[i].fn(priv->drains[i].data, sup_drain_done, round);
    /* The drains were asked, none closed the supervisor: end the loop's
     * share of the round. */
    sup_drain_done(round);
    return 0;
}

bool shoal_supervisor_stopping(const shoal_supervisor_t *sup)
{
    return sup->priv->phase >= SUP_DRAINING;
}

static void sup_remote_stop_cb(shoal_supervisor_t *sup, int status)
{
    shoal__sup_priv_t *priv = sup->priv;

    if (priv->opts.on_remote_stop)
        priv->opts.on_remote_stop(sup, status);
}

int shoal__sup_remote_stop(shoal__sup_priv_t *priv)
{
    if (priv->opts.on_remote_stop == NULL)
        return SHOAL_EINVAL;
    if (priv->phase >= SUP_DRAINING)
        return 0; /* already under way: the same outcome */
    return shoal_supervisor_stop(priv->handle, sup_remote_stop_cb);
}

/* ---- close -------------------------------------------------------------- */

static void sup_handle_closed_cb(uv_handle_t *handle)
{
    shoal__sup_priv_t *priv = handle->data;

    priv->pending_closes--;
    sup_maybe_closed(priv);
}

static void sup_worker_timer_closed_cb(uv_handle_t *handle)
{
    sup_worker_t *w = handle->data;

    w->sup->pending_closes--;
    sup_maybe_closed(w->sup);
}

static void sup_maybe_closed(shoal__sup_priv_t *priv)
{
    shoal_supervisor_t *sup = priv->handle;
    shoal_supervisor_stop_cb stop_cb;
    shoal_supervisor_cb cb;
    sup_shim_t *shim;

    if (priv->pending_closes > 0 || !shoal__list_empty(&priv->runs))
        return;
    /* A stop still under way hears that it will not finish. */
    stop_cb = priv->stop_cb;
    priv->stop_cb = NULL;
    if (stop_cb)
        stop_cb(sup, SHOAL_ECANCELED);
    while (!shoal__list_empty(&priv->remotes))
        sup_remote_free(
            SHOAL__CONTAINER(priv->remotes.next, sup_remote_t, link));
    if (priv->own_runtime_dir) {
        unlink(priv->sock_path);
        rmdir(priv->runtime_dir);
    }
    cb = priv->close_cb;
    shim = priv->shim;
    sup_priv_free(priv);
    sup->priv = NULL;
    sup_shim_check_node_done(shim);
    sup_shim_maybe_free(shim);
    if (cb)
        cb(sup);
}

void shoal_supervisor_close(shoal_supervisor_t *sup, shoal_supervisor_cb cb)
{
    shoal__sup_priv_t *priv = sup->priv;
    sup_shim_t *shim = priv->shim;

    if (priv->phase == SUP_CLOSING)
        return;
    priv->phase = SUP_CLOSING;
    priv->close_cb = cb;
    if (priv->round != NULL) {
        priv->round->sup = NULL;
        priv->round = NULL;
    }
    /* Hooks and the application stay registered with the node; from now
     * on they find no supervisor. */
    shim->sup = NULL;
    if (!shim->app_gone && !shim->node_closing)
        shoal_node_remove_app(priv->node, "supervisor");
    priv->pending_closes += 4;
    uv_close((uv_handle_t *)&priv->drain_timer, sup_handle_closed_cb);
    uv_close((uv_handle_t *)&priv->kill_timer, sup_handle_closed_cb);
    uv_close((uv_handle_t *)&priv->done_timer, sup_handle_closed_cb);
    uv_close((uv_handle_t *)&priv->sample_timer, sup_handle_closed_cb);
    for (size_t p = 0; p < priv->n_pools; p++)
        for (unsigned i = 0; i < priv->pools[p]->n_workers; i++) {
            sup_worker_t *w = &priv->pools[p]->workers[i];
            priv->pending_closes++;
            uv_close((uv_handle_t *)&w->timer, sup_worker_timer_closed_cb);
            shoal__sup_log_close(w);
        }
    /* Processes still running are killed; their handles close from the
     * exit callback, their pipes now. */
    for (shoal__list_t *pos = priv->runs.next; pos != &priv->runs;) {
        sup_run_t *run = SHOAL__CONTAINER(pos, sup_run_t, link);
        pos = pos->next;
        if (!run->exited)
            uv_process_kill(&run->proc, SIGKILL);
        sup_run_close_pipe(run, false);
        sup_run_close_pipe(run, true);
    }
}
