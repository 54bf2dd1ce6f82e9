/* Applications: the registry of a node, and calls being served from the
 * moment they arrive until they are answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- registry ------------------------------------------------------------
 */

shoal__app_t *shoal__node_find_app(shoal_node_t *node, const char *name,
                                   size_t len)
{
    shoal__list_t *pos;

    for (pos = node->priv->apps.next; pos != &node->priv->apps;
         pos = pos->next) {
        shoal__app_t *app = SHOAL__CONTAINER(pos, shoal__app_t, link);
        if (app->name_len == len && memcmp(app->name, name, len) == 0)
            return app;
    }
    return NULL;
}

static void app_free(shoal__app_t *app)
{
    for (size_t i = 0; i < app->n_actions; i++)
        free((char *)app->actions[i].name);
    free(app->actions);
    free(app->description);
    free(app);
}

/* Checks that the description is a JSON object and keeps it unformatted. */
static char *app_copy_description(const char *text)
{
    cJSON *json;
    char *copy;

    if (text == NULL)
        return strdup("{}");
    json = cJSON_Parse(text);
    if (json == NULL || !cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return NULL;
    }
    copy = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return copy;
}

int shoal_node_add_app(shoal_node_t *node, const shoal_app_opts_t *opts)
{
    shoal__app_t *app;
    size_t len;

    if (opts == NULL || opts->name == NULL || opts->name[0] == '\0')
        return SHOAL_EINVAL;
    len = strlen(opts->name);
    if (len > SHOAL_MAX_NAME_BYTES)
        return SHOAL_ENAMETOOLONG;
    if (shoal__node_find_app(node, opts->name, len) != NULL)
        return SHOAL_EEXIST;
    app = calloc(1, sizeof(*app));
    if (app == NULL)
        return SHOAL_ENOMEM;
    memcpy(app->name, opts->name, len + 1);
    app->name_len = len;
    app->opts = *opts;
    app->opts.name = app->name;
    app->description = app_copy_description(opts->description);
    if (app->description == NULL) {
        free(app);
        return SHOAL_EINVAL;
    }
    app->opts.description = app->description;
    if (opts->n_actions > 0) {
        app->actions = calloc(opts->n_actions, sizeof(*app->actions));
        if (app->actions == NULL) {
            app_free(app);
            return SHOAL_ENOMEM;
        }
        for (size_t i = 0; i < opts->n_actions; i++) {
            app->actions[i].fn = opts->actions[i].fn;
            app->actions[i].name = strdup(opts->actions[i].name);
            app->n_actions = i + 1;
            if (app->actions[i].name == NULL) {
                app_free(app);
                return SHOAL_ENOMEM;
            }
        }
    }
    app->opts.actions = app->actions;
    shoal__list_push(&node->priv->apps, &app->link);
    return 0;
}

static void app_close(shoal__app_t *app)
{
    shoal__list_remove(&app->link);
    /* on_close may answer the app's calls, and the last answer would free
     * a removed app: hold it until on_close has returned. */
    app->in_flight++;
    if (app->opts.on_close)
        app->opts.on_close(app->opts.data);
    app->opts.on_close = NULL;
    /* Calls still in flight point at the app: it goes with the last one. */
    if (--app->in_flight == 0)
        app_free(app);
}

int shoal_node_remove_app(shoal_node_t *node, const char *name)
{
    shoal__app_t *app = shoal__node_find_app(node, name, strlen(name));

    if (app == NULL)
        return SHOAL_ENOAPP;
    app_close(app);
    return 0;
}

void shoal__app_close_all(shoal_node_t *node)
{
    while (!shoal__list_empty(&node->priv->apps))
        app_close(SHOAL__CONTAINER(node->priv->apps.next, shoal__app_t, link));
}

size_t shoal_node_app_count(const shoal_node_t *node)
{
    size_t n = 0;

    for (shoal__list_t *pos = node->priv->apps.next; pos != &node->priv->apps;
         pos = pos->next)
        n++;
    return n;
}

const char *shoal_node_app_name(const shoal_node_t *node, size_t i)
{
    for (shoal__list_t *pos = node->priv->apps.next; pos != &node->priv->apps;
         pos = pos->next)
        if (i-- == 0)
            return SHOAL__CONTAINER(pos, shoal__app_t, link)->name;
    return NULL;
}

void shoal__app_describe(shoal_node_t *node, cJSON *apps)
{
    for (shoal__list_t *pos = node->priv->apps.next; pos != &node->priv->apps;
         pos = pos->next) {
        shoal__app_t *app = SHOAL__CONTAINER(pos, shoal__app_t, link);
        cJSON *item = cJSON_CreateObject();
        cJSON *actions;

        cJSON_AddStringToObject(item, "name", app->name);
        cJSON_AddItemToObject(item, "description",
                              cJSON_Parse(app->description));
        actions = cJSON_AddArrayToObject(item, "actions");
        for (size_t i = 0; i < app->n_actions; i++)
            cJSON_AddItemToArray(actions,
                                 cJSON_CreateString(app->actions[i].name));
        cJSON_AddNumberToObject(item, "calls", (double)app->calls);
        cJSON_AddNumberToObject(item, "tells", (double)app->tells);
        cJSON_AddNumberToObject(item, "calls_in_flight",
                                (double)app->in_flight);
        cJSON_AddItemToArray(apps, item);
    }
}

/* ---- serving --------------------------------------------------------------
 */

static void app_refuse(shoal_node_t *node, shoal_conn_t *conn,
                       const shoal_envelope_t *env, int err,
                       const char *message)
{
    node->priv->counters.errors++;
    if (env->type == SHOAL_MSG_CALL)
        node->priv->counters.calls_failed++;
    shoal__conn_send_error(conn, env->has_id, env->id, shoal_err_name(err),
                           message);
}

void shoal__app_serve_tell(shoal_node_t *node, shoal_conn_t *conn,
                           const shoal_envelope_t *env)
{
    char message[2 * SHOAL_MAX_NAME_BYTES + 64];
    shoal__app_t *app;

    node->priv->counters.tells_in++;
    if (!env->app.present) {
        app_refuse(node, conn, env, SHOAL_EBADMSG, "tell needs an \"app\"");
        return;
    }
    app = shoal__node_find_app(node, env->app.s, env->app.len);
    if (app == NULL) {
        snprintf(message, sizeof(message), "no application '%s' on node '%s'",
                 env->app.s, node->priv->name);
        app_refuse(node, conn, env, SHOAL_ENOAPP, message);
        return;
    }
    app->tells++;
    if (app->opts.on_tell)
        app->opts.on_tell(node, conn, &env->msg, app->opts.data);
}

static shoal_action_fn app_find_action(shoal__app_t *app, const char *name)
{
    for (size_t i = 0; i < app->n_actions; i++)
        if (strcmp(app->actions[i].name, name) == 0)
            return app->actions[i].fn;
    return app->opts.on_call;
}

/* The call outlives the frame it came in: keep its own copy of the
 * arguments. */
static int call_keep_args(shoal_call_t *call)
{
    if (call->args_copy != NULL || call->args.data == NULL)
        return 0;
    call->args_copy = malloc(call->args.len ? call->args.len : 1);
    if (call->args_copy == NULL)
        return SHOAL_ENOMEM;
    memcpy(call->args_copy, call->args.data, call->args.len);
    call->args.data = call->args_copy;
    return 0;
}

static void call_free(shoal_call_t *call)
{
    shoal_node_t *node = call->node;
    shoal__app_t *app = call->app;
    shoal_conn_t *conn = call->conn;

    if (call->node->priv->serving == call)
        call->node->priv->serving = NULL;
    shoal__list_remove(&call->conn_link);
    cJSON_Delete(call->args_json);
    free(call->args_copy);
    free(call);
    app->in_flight--;
    if (app->in_flight == 0 && app->link.next == &app->link)
        app_free(app); /* removed while this call was in flight */
    /* A closing node waits for its last call to be answered. */
    if (--node->priv->calls_serving == 0 && node->priv->closing)
        shoal__node_maybe_closed(node);
    /* A peer that stopped sending waited for this answer. */
    if (conn && conn->eof && shoal__list_empty(&conn->calls_in))
        shoal__conn_end(conn, 0);
}

void shoal__app_serve_call(shoal_node_t *node, shoal_conn_t *conn,
                           const shoal_envelope_t *env)
{
    char message[2 * SHOAL_MAX_NAME_BYTES + 64];
    shoal_action_fn fn;
    shoal__app_t *app;
    shoal_call_t *call;

    if (!env->has_id || !env->app.present || !env->action.present) {
        app_refuse(node, conn, env, SHOAL_EBADMSG,
                   "call needs \"id\", \"app\" and \"action\"");
        return;
    }
    app = shoal__node_find_app(node, env->app.s, env->app.len);
    if (app == NULL) {
        snprintf(message, sizeof(message), "no application '%s' on node '%s'",
                 env->app.s, node->priv->name);
        app_refuse(node, conn, env, SHOAL_ENOAPP, message);
        return;
    }
    fn = app_find_action(app, env->action.s);
    if (fn == NULL) {
        snprintf(message, sizeof(message),
                 "application '%s' has no action '%s'", env->app.s,
                 env->action.s);
        app_refuse(node, conn, env, SHOAL_ENOACTION, message);
        return;
    }
    call = malloc(sizeof(*call));
    if (call == NULL) {
        app_refuse(node, conn, env, SHOAL_ENOMEM, "out of memory");
        return;
    }
    call->node = node;
    call->conn = conn;
    call->app = app;
    call->id = env->id;
    memcpy(call->action, env->action.s, env->action.len + 1u);
    if (env->from.present)
        memcpy(call->from, env->from.s, env->from.len + 1u);
    else if (conn->peer_named)
        memcpy(call->from, conn->peer_name, strlen(conn->peer_name) + 1);
    else
        call->from[0] = '\0';
    call->args = env->args;
    call->args_copy = NULL;
    call->args_json = NULL;
    shoal__list_push(&conn->calls_in, &call->conn_link);
    app->calls++;
    app->in_flight++;
    node->priv->calls_serving++;

    /* The handler may answer at once (and free the call) or keep it. The
     * frame is only borrowed until this returns, so a kept call copies its
     * arguments now; call_free clears node->priv->serving if answered. */
    node->priv->serving = call;
    fn(call, app->opts.data);
    if (node->priv->serving == call) {
        node->priv->serving = NULL;
        if (call_keep_args(call) != 0)
            shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
    }
}

void shoal__app_detach_calls(shoal_conn_t *conn)
{
    /* Their answers will find conn == NULL and be dropped. */
    while (!shoal__list_empty(&conn->calls_in)) {
        shoal__list_t *item = conn->calls_in.next;
        shoal__list_remove(item);
        SHOAL__CONTAINER(item, shoal_call_t, conn_link)->conn = NULL;
    }
}

/* ---- answering ---------------------------------------------------------- */

static int call_send_reply(shoal_call_t *call, shoal_envelope_t *env)
{
    shoal_conn_t *conn = call->conn;
    shoal__node_priv_t *priv = call->node->priv;
    int err;

    if (conn == NULL || shoal__conn_closing(conn)) {
        priv->counters.replies_dropped++;
        call_free(call);
        return SHOAL_ECONNCLOSED;
    }
    env->type = SHOAL_MSG_REPLY;
    env->has_id = true;
    env->id = call->id;
    /* Replies say who answered: a dispatcher reports it, and a reply that
     * crossed several nodes can be told apart. */
    env->from.present = true;
    env->from.len = (uint8_t)strlen(priv->name);
    memcpy(env->from.s, priv->name, env->from.len + 1u);
    err = shoal__conn_send(conn, env);
    if (err == 0) {
        priv->counters.calls_served++;
        if (env->error.data != NULL)
            priv->counters.calls_failed++;
    }
    call_free(call);
    return err;
}

int shoal_call_reply(shoal_call_t *call, const shoal_payload_t *result)
{
    static const shoal_payload_t null_json = {"null", 4, SHOAL_CODEC_JSON};
    shoal_envelope_t env;
    shoal_conn_t *conn = call->conn;
    int err;

    shoal_envelope_init(&env);
    env.result = result && result->data ? *result : null_json;
    err = call_send_reply(call, &env);
    if (err < 0 && err != SHOAL_ECONNCLOSED && err != SHOAL_ECLOSING &&
        conn != NULL) {
        /* The result could not be encoded: the caller still gets an
         * answer. */
        shoal__conn_send_error(conn, true, env.id, "EAPPFAILED",
                               "the application's result could not be "
                               "encoded");
    }
    return err;
}

int shoal_call_reply_json(shoal_call_t *call, const char *json)
{
    shoal_payload_t result = {json, strlen(json), SHOAL_CODEC_JSON};

    return shoal_call_reply(call, &result);
}

int shoal_call_reply_cjson(shoal_call_t *call, const cJSON *result)
{
    shoal_payload_t payload;
    shoal_buf_t buf;
    int err;

    shoal_buf_init(&buf);
    err = shoal_payload_from_cjson(result, SHOAL_CODEC_JSON, &buf);
    if (err) {
        shoal_buf_free(&buf);
        return shoal_call_fail(call, SHOAL_EAPPFAILED,
                               "result could not be encoded");
    }
    payload.data = buf.base;
    payload.len = buf.len;
    payload.codec = SHOAL_CODEC_JSON;
    err = shoal_call_reply(call, &payload);
    shoal_buf_free(&buf);
    return err;
}

static int call_fail_v(shoal_call_t *call, const char *code, const char *fmt,
                       va_list ap)
{
    shoal_conn_t *conn = call->conn;
    shoal_codec_t codec;
    shoal_envelope_t env;
    char message[1024];
    shoal_buf_t buf;
    int err;

    vsnprintf(message, sizeof(message), fmt, ap);
    if (conn == NULL) {
        call->node->priv->counters.replies_dropped++;
        call_free(call);
        return SHOAL_ECONNCLOSED;
    }
    codec = conn->codec ? conn->codec : SHOAL_CODEC_JSON;
    shoal_buf_init(&buf);
    err = shoal_wire_encode_error(codec, code, message, &buf);
    if (err) {
        call_free(call);
        return err;
    }
    shoal_envelope_init(&env);
    env.error.data = buf.base;
    env.error.len = buf.len;
    env.error.codec = codec;
    err = call_send_reply(call, &env);
    shoal_buf_free(&buf);
    return err;
}

int shoal_call_fail(shoal_call_t *call, int code, const char *fmt, ...)
{
    va_list ap;
    int err;

    va_start(ap, fmt);
    err = call_fail_v(call, shoal_err_name(code), fmt, ap);
    va_end(ap);
    return err;
}

int shoal_call_fail_named(shoal_call_t *call, const char *code,
                          const char *fmt, ...)
{
    va_list ap;
    int err;

    va_start(ap, fmt);
    err = call_fail_v(call, code, fmt, ap);
    va_end(ap);
    return err;
}

/* ---- accessors ------------------------------------------------------------
 */

const char *shoal_call_app(const shoal_call_t *call)
{
    return call->app->name;
}

const char *shoal_call_action(const shoal_call_t *call)
{
    return call->action;
}

int64_t shoal_call_id(const shoal_call_t *call)
{
    return call->id;
}

shoal_node_t *shoal_call_node(const shoal_call_t *call)
{
    return call->node;
}

shoal_conn_t *shoal_call_conn(const shoal_call_t *call)
{
    return call->conn;
}

const char *shoal_call_from(const shoal_call_t *call)
{
    return call->from;
}

const shoal_payload_t *shoal_call_args(const shoal_call_t *call)
{
    return &call->args;
}

const cJSON *shoal_call_args_json(shoal_call_t *call)
{
    if (call->args_json == NULL && call->args.data != NULL)
        call->args_json = shoal_payload_to_cjson(&call->args);
    return call->args_json;
}

/* ---- work off the loop
 * ------------------------------------------------------ */

static void call_work_cb(uv_work_t *req)
{
    shoal_call_t *call = req->data;

    call->work_fn(call, call->work_data);
}

static void call_after_work_cb(uv_work_t *req, int status)
{
    shoal_call_t *call = req->data;

    call->work_done(call, status, call->work_data);
}

int shoal_call_queue_work(shoal_call_t *call, shoal_work_fn work,
                          shoal_work_done_fn done, void *data)
{
    int err;

    /* The thread reads the arguments after the frame is gone. */
    err = call_keep_args(call);
    if (err)
        return err;
    call->work_fn = work;
    call->work_done = done;
    call->work_data = data;
    call->work.data = call;
    return uv_queue_work(call->node->loop, &call->work, call_work_cb,
                         call_after_work_cb);
}
