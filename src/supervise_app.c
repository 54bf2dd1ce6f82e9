/* The supervisor's application ("supervisor": status, stop, restart,
 * call) and the status it reports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervise_internal.h"

/* Milliseconds a status call may wait for a forwarded call by default. */
#define SUP_CALL_TIMEOUT_MS 60000

/* ---- status ------------------------------------------------------------- */

static const char *sup_pool_state(shoal__sup_priv_t *priv,
                                  const sup_pool_t *pool)
{
    bool starting = false, online = false, stopping = false;

    for (unsigned i = 0; i < pool->n_workers; i++)
        switch (pool->workers[i].state) {
        case SHOAL_WORKER_ERRORED:
            return "errored";
        case SHOAL_WORKER_STARTING:
            starting = true;
            break;
        case SHOAL_WORKER_ONLINE:
            online = true;
            break;
        case SHOAL_WORKER_STOPPING:
            stopping = true;
            break;
        case SHOAL_WORKER_STOPPED:
            break;
        }
    if (stopping || (priv->phase >= SUP_DRAINING && priv->phase < SUP_STOPPED))
        return "stopping";
    if (starting)
        return "starting";
    return online ? "online" : "stopped";
}

static const char *sup_phase_name(sup_phase_t phase)
{
    switch (phase) {
    case SUP_IDLE:
        return "idle";
    case SUP_RUNNING:
        return "running";
    case SUP_DRAINING:
        return "draining";
    case SUP_TERMINATING:
        return "stopping";
    case SUP_STOPPED:
        return "stopped";
    case SUP_CLOSING:
        return "closing";
    }
    return "unknown";
}

static cJSON *sup_strings(char *const *v, size_t n)
{
    cJSON *array = cJSON_CreateArray();

    for (size_t i = 0; array != NULL && i < n; i++)
        cJSON_AddItemToArray(array, cJSON_CreateString(v[i]));
    return array;
}

static cJSON *sup_pool_json(shoal__sup_priv_t *priv, const sup_pool_t *pool)
{
    const shoal_pool_opts_t *o = &pool->opts;
    cJSON *json = cJSON_CreateObject();
    cJSON *backoff;
    unsigned online = 0;

    for (unsigned i = 0; i < pool->n_workers; i++)
        if (pool->workers[i].state == SHOAL_WORKER_ONLINE)
            online++;
    cJSON_AddStringToObject(json, "name", pool->name);
    cJSON_AddStringToObject(json, "state", sup_pool_state(priv, pool));
    cJSON_AddStringToObject(json, "restart",
                            shoal_restart_policy_name(o->restart));
    cJSON_AddNumberToObject(json, "workers", pool->n_workers);
    cJSON_AddNumberToObject(json, "online", online);
    cJSON_AddItemToObject(json, "apps", sup_strings(pool->apps, o->n_apps));
    cJSON_AddItemToObject(json, "exec", sup_strings(pool->execs, o->n_execs));
    backoff = cJSON_AddObjectToObject(json, "backoff");
    cJSON_AddNumberToObject(backoff, "initial_ms",
                            (double)o->backoff_initial_ms);
    cJSON_AddNumberToObject(backoff, "factor", o->backoff_factor);
    cJSON_AddNumberToObject(backoff, "max_ms", (double)o->backoff_max_ms);
    cJSON_AddNumberToObject(backoff, "reset_after_ms",
                            (double)o->reset_after_ms);
    cJSON_AddNumberToObject(json, "max_restarts", o->max_restarts);
    cJSON_AddNumberToObject(json, "restart_window_ms",
                            (double)o->restart_window_ms);
    cJSON_AddNumberToObject(json, "start_timeout_ms",
                            (double)o->start_timeout_ms);
    return json;
}

static void sup_add_exit(cJSON *json, const char *key, int64_t status,
                         int signal)
{
    if (signal != 0) {
        cJSON_AddNullToObject(json, key);
        cJSON_AddNumberToObject(json, "signal", signal);
    } else {
        cJSON_AddNumberToObject(json, key, (double)status);
        cJSON_AddNullToObject(json, "signal");
    }
}

static cJSON *sup_history_json(const sup_worker_t *w)
{
    cJSON *array = cJSON_CreateArray();
    unsigned first =
        w->n_history > SUP_HISTORY ? w->n_history - SUP_HISTORY : 0;

    for (unsigned k = first; array != NULL && k < w->n_history; k++) {
        const sup_restart_t *r = &w->history[k % SUP_HISTORY];
        cJSON *item = cJSON_CreateObject();

        cJSON_AddNumberToObject(item, "exit_ms", (double)r->exit_ms);
        cJSON_AddNumberToObject(item, "delay_ms", (double)r->delay_ms);
        if (r->start_ms != 0)
            cJSON_AddNumberToObject(item, "start_ms", (double)r->start_ms);
        else
            cJSON_AddNullToObject(item, "start_ms");
        if (r->requested)
            cJSON_AddNullToObject(item, "status");
        else
            sup_add_exit(item, "status", r->exit_status, r->term_signal);
        cJSON_AddBoolToObject(item, "requested", r->requested);
        cJSON_AddItemToArray(array, item);
    }
    return array;
}

static cJSON *sup_worker_json(const sup_worker_t *w, uint64_t now)
{
    cJSON *json = cJSON_CreateObject();
    bool live = w->run != NULL && !w->run->exited;

    cJSON_AddStringToObject(json, "name", w->name);
    cJSON_AddStringToObject(json, "pool", w->pool->name);
    cJSON_AddNumberToObject(json, "index", w->index);
    if (live)
        cJSON_AddNumberToObject(json, "pid", w->run->pid);
    else
        cJSON_AddNullToObject(json, "pid");
    cJSON_AddStringToObject(json, "state", shoal_worker_state_name(w->state));
    cJSON_AddBoolToObject(json, "remote", false);
    cJSON_AddNumberToObject(json, "uptime_ms",
                            live ? (double)(now - w->spawned_ms) : 0);
    cJSON_AddNumberToObject(json, "restarts", w->restarts);
    cJSON_AddItemToObject(json, "applications",
                          w->apps && live ? cJSON_Duplicate(w->apps, 1)
                                          : cJSON_CreateArray());
    cJSON_AddNumberToObject(json, "calls_in_flight",
                            live ? w->calls_in_flight : 0);
    cJSON_AddNumberToObject(json, "calls_done", live ? w->calls_done : 0);
    cJSON_AddNumberToObject(json, "cpu_percent", live ? w->cpu_percent : 0);
    cJSON_AddNumberToObject(json, "rss_bytes",
                            live ? (double)w->rss_bytes : 0);
    if (w->timer_waiting)
        cJSON_AddNumberToObject(
            json, "restart_in_ms",
            w->spawn_due_ms > now ? (double)(w->spawn_due_ms - now) : 0);
    if (w->has_exited) {
        cJSON *last = cJSON_AddObjectToObject(json, "last_exit");
        sup_add_exit(last, "status", w->last_exit_status, w->last_term_signal);
        cJSON_AddNumberToObject(last, "at_ms", (double)w->last_exit_ms);
    } else {
        cJSON_AddNullToObject(json, "last_exit");
    }
    if (w->last_error[0])
        cJSON_AddStringToObject(json, "last_error", w->last_error);
    else
        cJSON_AddNullToObject(json, "last_error");
    cJSON_AddItemToObject(json, "history", sup_history_json(w));
    return json;
}

static cJSON *sup_remote_json(const sup_remote_t *r, uint64_t now)
{
    cJSON *json = cJSON_CreateObject();

    cJSON_AddStringToObject(json, "name", r->name);
    cJSON_AddNullToObject(json, "pool");
    cJSON_AddNullToObject(json, "index");
    if (r->pid > 0)
        cJSON_AddNumberToObject(json, "pid", (double)r->pid);
    else
        cJSON_AddNullToObject(json, "pid");
    cJSON_AddStringToObject(json, "state", "online");
    cJSON_AddBoolToObject(json, "remote", true);
    cJSON_AddStringToObject(json, "address", r->address);
    cJSON_AddNumberToObject(json, "uptime_ms", (double)(now - r->since_ms));
    cJSON_AddNumberToObject(json, "restarts", 0);
    cJSON_AddItemToObject(json, "applications",
                          r->apps ? cJSON_Duplicate(r->apps, 1)
                                  : cJSON_CreateArray());
    cJSON_AddNumberToObject(json, "calls_in_flight", r->calls_in_flight);
    cJSON_AddNumberToObject(json, "calls_done", r->calls_done);
    /* Its CPU is not ours to read: it may run on another machine. */
    cJSON_AddNullToObject(json, "cpu_percent");
    cJSON_AddNumberToObject(json, "rss_bytes", r->rss_bytes);
    return json;
}

cJSON *shoal__sup_status(shoal__sup_priv_t *priv)
{
    cJSON *json = cJSON_CreateObject();
    cJSON *addresses, *pools, *workers;
    uint64_t now = shoal__sup_now(priv);
    shoal_node_t *node = priv->node;

    if (json == NULL)
        return NULL;
    cJSON_AddStringToObject(json, "name", shoal_node_name(node));
    cJSON_AddNumberToObject(json, "pid", uv_os_getpid());
    cJSON_AddStringToObject(json, "state", sup_phase_name(priv->phase));
    cJSON_AddStringToObject(json, "url", priv->url);
    addresses = cJSON_AddArrayToObject(json, "addresses");
    for (size_t i = 0; i < shoal_node_address_count(node); i++)
        cJSON_AddItemToArray(addresses,
                             cJSON_CreateString(shoal_node_address(node, i)));
    cJSON_AddNumberToObject(json, "uptime_ms", (double)now);
    pools = cJSON_AddArrayToObject(json, "pools");
    workers = cJSON_AddArrayToObject(json, "workers");
    for (size_t p = 0; p < priv->n_pools; p++) {
        sup_pool_t *pool = priv->pools[p];
        cJSON_AddItemToArray(pools, sup_pool_json(priv, pool));
        for (unsigned i = 0; i < pool->n_workers; i++)
            cJSON_AddItemToArray(workers,
                                 sup_worker_json(&pool->workers[i], now));
    }
    for (shoal__list_t *pos = priv->remotes.next; pos != &priv->remotes;
         pos = pos->next)
        cJSON_AddItemToArray(
            workers,
            sup_remote_json(SHOAL__CONTAINER(pos, sup_remote_t, link), now));
    return json;
}

cJSON *shoal_supervisor_status(shoal_supervisor_t *sup)
{
    return shoal__sup_status(sup->priv);
}

/* ---- actions ------------------------------------------------------------ */

static shoal__sup_priv_t *sup_of(shoal_call_t *call, void *data)
{
    sup_shim_t *shim = data;

    if (shim->sup == NULL || shim->sup->phase == SUP_CLOSING) {
        shoal_call_fail(call, SHOAL_ECLOSING, "the supervisor is closing");
        return NULL;
    }
    return shim->sup;
}

static void sup_action_status(shoal_call_t *call, void *data)
{
    shoal__sup_priv_t *priv = sup_of(call, data);
    cJSON *status;

    if (priv == NULL)
        return;
    status = shoal__sup_status(priv);
    if (status == NULL) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    shoal_call_reply_cjson(call, status);
    cJSON_Delete(status);
}

static void sup_action_stop(shoal_call_t *call, void *data)
{
    shoal__sup_priv_t *priv = sup_of(call, data);
    int err;

    if (priv == NULL)
        return;
    err = shoal__sup_remote_stop(priv);
    if (err == SHOAL_EINVAL) {
        shoal_call_fail(call, SHOAL_EINVAL,
                        "this supervisor does not take stop requests");
        return;
    }
    if (err) {
        shoal_call_fail(call, err, "%s", shoal_strerror(err));
        return;
    }
    /* Queued now, written before the loop next polls: the caller hears
     * back before the workers are even signalled. */
    shoal_call_reply_json(call, "{\"stopping\":true}");
}

/* The worker named in args ({"worker": NAME}), or NULL for all. */
static int sup_worker_arg(shoal_call_t *call, const char **name)
{
    const cJSON *args = shoal_call_args_json(call);
    const cJSON *worker;

    *name = NULL;
    if (args == NULL || cJSON_IsNull(args))
        return 0;
    if (cJSON_IsString(args)) {
        *name = args->valuestring;
        return 0;
    }
    if (!cJSON_IsObject(args))
        return SHOAL_EBADTYPE;
    worker = cJSON_GetObjectItemCaseSensitive(args, "worker");
    if (worker == NULL || cJSON_IsNull(worker))
        return 0;
    if (!cJSON_IsString(worker))
        return SHOAL_EBADTYPE;
    *name = worker->valuestring;
    return 0;
}

static void sup_action_restart(shoal_call_t *call, void *data)
{
    shoal__sup_priv_t *priv = sup_of(call, data);
    cJSON *result, *list;
    const char *name;
    int n;

    if (priv == NULL)
        return;
    if (sup_worker_arg(call, &name) != 0) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "restart takes {\"worker\": NAME}, a name or "
                        "nothing");
        return;
    }
    /* Who is restarted, with the pid being replaced, before anything
     * changes: the caller waits for new pids. */
    result = cJSON_CreateObject();
    list = cJSON_AddArrayToObject(result, "restarted");
    for (size_t p = 0; p < priv->n_pools; p++) {
        sup_pool_t *pool = priv->pools[p];
        bool whole = name == NULL || strcmp(pool->name, name) == 0;
        for (unsigned i = 0; i < pool->n_workers; i++) {
            sup_worker_t *w = &pool->workers[i];
            cJSON *item;
            if (!whole && strcmp(w->name, name) != 0)
                continue;
            item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "name", w->name);
            if (w->run != NULL && !w->run->exited)
                cJSON_AddNumberToObject(item, "pid", w->run->pid);
            else
                cJSON_AddNullToObject(item, "pid");
            cJSON_AddItemToArray(list, item);
        }
    }
    n = shoal_supervisor_restart(priv->handle, name);
    if (n == SHOAL_ENOTFOUND)
        shoal_call_fail(call, n, "no worker or pool called '%s'", name);
    else if (n < 0)
        shoal_call_fail(call, n, "%s", shoal_strerror(n));
    else
        shoal_call_reply_cjson(call, result);
    cJSON_Delete(result);
}

/* call {worker, app, action, args?, timeout_ms?}: a call to one worker's
 * application through the supervisor, answered with its reply. */
static void sup_forward_cb(const shoal_reply_t *reply, void *data)
{
    shoal_call_t *call = data;
    shoal_name_t code;
    char message[512];

    if (reply->status == 0) {
        shoal_call_reply(call, &reply->result);
        return;
    }
    if (reply->error.data != NULL &&
        shoal_wire_decode_error(&reply->error, &code, message,
                                sizeof(message)) != SHOAL_EBADMSG) {
        shoal_call_fail_named(call, code.s, "%s", message);
        return;
    }
    shoal_call_fail(call, reply->status, "%s", reply->message);
}

static shoal_conn_t *sup_conn_of(shoal__sup_priv_t *priv, const char *name)
{
    sup_worker_t *w = shoal__sup_find_worker(priv, name);

    if (w != NULL)
        return w->conn;
    for (shoal__list_t *pos = priv->remotes.next; pos != &priv->remotes;
         pos = pos->next) {
        sup_remote_t *r = SHOAL__CONTAINER(pos, sup_remote_t, link);
        if (strcmp(r->name, name) == 0)
            return r->conn;
    }
    return NULL;
}

static void sup_action_call(shoal_call_t *call, void *data)
{
    shoal__sup_priv_t *priv = sup_of(call, data);
    const cJSON *args, *worker, *app, *action, *fargs, *timeout;
    shoal_payload_t payload;
    shoal_conn_t *conn;
    uint64_t timeout_ms = SUP_CALL_TIMEOUT_MS;
    shoal_buf_t buf;
    int err;

    if (priv == NULL)
        return;
    if (priv->phase >= SUP_DRAINING) {
        shoal_call_fail(call, SHOAL_ESTOPPING,
                        "the supervisor is stopping: no new calls");
        return;
    }
    args = shoal_call_args_json(call);
    worker = cJSON_GetObjectItemCaseSensitive(args, "worker");
    app = cJSON_GetObjectItemCaseSensitive(args, "app");
    action = cJSON_GetObjectItemCaseSensitive(args, "action");
    fargs = cJSON_GetObjectItemCaseSensitive(args, "args");
    timeout = cJSON_GetObjectItemCaseSensitive(args, "timeout_ms");
    if (!cJSON_IsString(worker) || !cJSON_IsString(app) ||
        !cJSON_IsString(action) ||
        (timeout != NULL &&
         (!cJSON_IsNumber(timeout) || timeout->valuedouble < 0))) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "call takes {\"worker\", \"app\", \"action\", "
                        "\"args\"?, \"timeout_ms\"?}");
        return;
    }
    if (timeout != NULL)
        timeout_ms = (uint64_t)timeout->valuedouble;
    conn = sup_conn_of(priv, worker->valuestring);
    if (conn == NULL) {
        shoal_call_fail(call, SHOAL_ENOWORKER, "worker '%s' is not online",
                        worker->valuestring);
        return;
    }
    shoal_buf_init(&buf);
    memset(&payload, 0, sizeof(payload));
    if (fargs != NULL) {
        err = shoal_payload_from_cjson(fargs, SHOAL_CODEC_JSON, &buf);
        if (err) {
            shoal_buf_free(&buf);
            shoal_call_fail(call, err, "%s", shoal_strerror(err));
            return;
        }
        payload.data = buf.base;
        payload.len = buf.len;
        payload.codec = SHOAL_CODEC_JSON;
    }
    /* The call stays valid until answered, whatever happens to the
     * supervisor: the reply callback needs nothing else. */
    err = shoal_conn_call(conn, app->valuestring, action->valuestring,
                          fargs ? &payload : NULL, timeout_ms, sup_forward_cb,
                          call);
    shoal_buf_free(&buf);
    if (err)
        shoal_call_fail(call, err, "%s", shoal_strerror(err));
}

static void sup_app_close(void *data)
{
    shoal__sup_shim_app_gone(data);
}

static const shoal_action_t sup_actions[] = {
    {"status", sup_action_status},
    {"stop", sup_action_stop},
    {"restart", sup_action_restart},
    {"call", sup_action_call},
};

int shoal__sup_app_add(shoal__sup_priv_t *priv)
{
    shoal_app_opts_t opts;

    memset(&opts, 0, sizeof(opts));
    opts.name = "supervisor";
    opts.description =
        "{\"summary\":\"status: the pools and workers; stop: drain and "
        "stop every worker, then exit; restart {worker?}: restart one "
        "worker, a pool or all; call {worker, app, action, args?}: call "
        "one worker's application\"}";
    opts.actions = sup_actions;
    opts.n_actions = sizeof(sup_actions) / sizeof(sup_actions[0]);
    opts.on_close = sup_app_close;
    opts.data = priv->shim;
    return shoal_node_add_app(priv->node, &opts);
}
