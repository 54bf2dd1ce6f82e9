/* The client side of dispatch: tasks encoded as submit calls, outcomes
 * decoded from their replies. */
#include <stdlib.h>
#include <string.h>

#include "dispatch_internal.h"

#define SUBMIT_APP "dispatch"

typedef struct {
    shoal_outcome_cb cb;
    void *data;
    size_t n; /* tasks in the call: 1 for submit */
} submit_req_t;

/* ---- tasks ---------------------------------------------------------------
 */

static int task_check(const shoal_task_t *task)
{
    if (task == NULL || task->app == NULL || task->action == NULL ||
        task->app[0] == '\0' || task->action[0] == '\0' ||
        (unsigned)task->strategy > SHOAL_STRATEGY_DIRECT)
        return SHOAL_EINVAL;
    if (strlen(task->app) > SHOAL_MAX_NAME_BYTES ||
        strlen(task->action) > SHOAL_MAX_NAME_BYTES ||
        (task->node && strlen(task->node) > SHOAL_MAX_NAME_BYTES))
        return SHOAL_ENAMETOOLONG;
    if (task->strategy == SHOAL_STRATEGY_KEY && task->key == NULL &&
        task->key_len > 0)
        return SHOAL_EINVAL;
    if (task->strategy == SHOAL_STRATEGY_DIRECT && task->node == NULL &&
        task->index < 0)
        return SHOAL_EINVAL;
    return 0;
}

static void task_write(shoal__pw_t *w, const shoal_task_t *task)
{
    bool has_args = task->args && task->args->data;
    bool has_id = task->id && task->id->data;
    bool direct = task->strategy == SHOAL_STRATEGY_DIRECT;
    uint32_t n = 2;

    n += has_args + has_id + (task->strategy != SHOAL_STRATEGY_ROUND_ROBIN);
    n += task->strategy == SHOAL_STRATEGY_KEY;
    n += direct;
    n += task->timeout_ms > 0;
    n += task->retries != 0;
    n += task->retry_on_error + task->retry_on_timeout;
    shoal__pw_map(w, n);
    shoal__pw_key(w, "app");
    shoal__pw_cstr(w, task->app);
    shoal__pw_key(w, "action");
    shoal__pw_cstr(w, task->action);
    if (has_args) {
        shoal__pw_key(w, "args");
        shoal__pw_value(w, task->args);
    }
    if (has_id) {
        shoal__pw_key(w, "id");
        shoal__pw_value(w, task->id);
    }
    if (task->strategy != SHOAL_STRATEGY_ROUND_ROBIN) {
        shoal__pw_key(w, "strategy");
        shoal__pw_cstr(w, shoal_strategy_name(task->strategy));
    }
    if (task->strategy == SHOAL_STRATEGY_KEY) {
        shoal__pw_key(w, "key");
        shoal__pw_str(w, task->key ? task->key : "", task->key_len);
    }
    if (direct && task->node) {
        shoal__pw_key(w, "node");
        shoal__pw_cstr(w, task->node);
    } else if (direct) {
        shoal__pw_key(w, "index");
        shoal__pw_int(w, task->index);
    }
    if (task->timeout_ms > 0) {
        shoal__pw_key(w, "timeout_ms");
        shoal__pw_int(w, (int64_t)task->timeout_ms);
    }
    if (task->retries != 0) {
        shoal__pw_key(w, "retries");
        shoal__pw_int(w, task->retries < 0 ? 0 : task->retries);
    }
    if (task->retry_on_error) {
        shoal__pw_key(w, "retry_on_error");
        shoal__pw_bool(w, true);
    }
    if (task->retry_on_timeout) {
        shoal__pw_key(w, "retry_on_timeout");
        shoal__pw_bool(w, true);
    }
    shoal__pw_end(w);
}

int shoal_task_encode(const shoal_task_t *task, shoal_codec_t codec,
                      shoal_buf_t *buf)
{
    shoal__pw_t w;
    int err = task_check(task);

    if (err)
        return err;
    if (codec != SHOAL_CODEC_JSON && codec != SHOAL_CODEC_MSGPACK)
        return SHOAL_EINVAL;
    shoal__pw_init(&w, buf, codec);
    task_write(&w, task);
    return shoal__pw_finish(&w, NULL);
}

/* ---- outcomes ------------------------------------------------------------
 */

int shoal_outcome_decode(const shoal_payload_t *outcome, shoal_outcome_t *out,
                         shoal_outcome_text_t *text)
{
    shoal_payload_iter_t it;
    shoal_payload_t k, v;
    bool has_status = false;
    char status[16];
    int64_t n;
    int err;

    memset(out, 0, sizeof(*out));
    text->code[0] = text->node[0] = text->message[0] = '\0';
    out->code_name = text->code;
    out->message = text->message;
    out->node = text->node;
    out->raw = *outcome;
    if (shoal_payload_type(outcome) != SHOAL_VALUE_OBJECT)
        return SHOAL_EBADMSG;
    shoal_payload_iter_init(&it, outcome);
    while ((err = shoal_payload_iter_next(&it, &k, &v)) == 1) {
        if (shoal_payload_string_eq(&k, "id")) {
            out->id = v;
        } else if (shoal_payload_string_eq(&k, "status")) {
            if (shoal_payload_string(&v, status, sizeof(status)) < 0)
                return SHOAL_EBADMSG;
            has_status = true;
        } else if (shoal_payload_string_eq(&k, "node")) {
            if (shoal_payload_type(&v) == SHOAL_VALUE_STRING &&
                shoal_payload_string(&v, text->node, sizeof(text->node)) < 0)
                return SHOAL_EBADMSG;
        } else if (shoal_payload_string_eq(&k, "attempts")) {
            if (shoal_payload_int(&v, &n) == 0 && n >= 0)
                out->attempts = (unsigned)n;
        } else if (shoal_payload_string_eq(&k, "result")) {
            out->result = v;
        } else if (shoal_payload_string_eq(&k, "error")) {
            shoal_name_t name;
            out->error = v;
            out->code = shoal_wire_decode_error(&v, &name, text->message,
                                                sizeof(text->message));
            if (out->code == SHOAL_EBADMSG)
                return SHOAL_EBADMSG;
            memcpy(text->code, name.s, name.len + 1u);
        }
    }
    if (err < 0 || !has_status)
        return SHOAL_EBADMSG;
    if (strcmp(status, "ok") == 0) {
        out->status = SHOAL_OUTCOME_OK;
        out->code = 0;
        return 0;
    }
    out->status = strcmp(status, "timeout") == 0 ? SHOAL_OUTCOME_TIMEOUT
                                                 : SHOAL_OUTCOME_ERROR;
    if (out->error.data == NULL)
        return SHOAL_EBADMSG;
    out->refused = out->attempts == 0;
    return 0;
}

/* An outcome for a task that never ran: the call failed or was refused. */
static void submit_refused(const shoal_reply_t *reply, size_t index,
                           shoal_outcome_cb cb, void *data)
{
    shoal_outcome_t o;
    shoal_name_t name;
    char message[512];

    memset(&o, 0, sizeof(o));
    o.index = index;
    o.status = reply->status == SHOAL_ETIMEDOUT ? SHOAL_OUTCOME_TIMEOUT
                                                : SHOAL_OUTCOME_ERROR;
    o.refused = true;
    o.code = reply->status ? reply->status : SHOAL_EBADMSG;
    o.code_name = shoal_err_name(o.code);
    o.message = reply->status ? reply->message : "malformed outcome";
    o.node = "";
    if (reply->error.data != NULL &&
        shoal_wire_decode_error(&reply->error, &name, message,
                                sizeof(message)) != SHOAL_EBADMSG) {
        o.error = reply->error;
        o.code_name = name.s;
        o.message = message;
    }
    cb(&o, data);
}

static void submit_one(const shoal_payload_t *value, size_t index,
                       const shoal_reply_t *reply, shoal_outcome_cb cb,
                       void *data)
{
    shoal_outcome_text_t text;
    shoal_reply_t bad;
    shoal_outcome_t o;

    if (shoal_outcome_decode(value, &o, &text) != 0) {
        bad = *reply;
        bad.status = SHOAL_EBADMSG;
        bad.message = "the dispatcher's outcome cannot be read";
        bad.error.data = NULL;
        submit_refused(&bad, index, cb, data);
        return;
    }
    o.index = index;
    cb(&o, data);
}

static void submit_reply_cb(const shoal_reply_t *reply, void *data)
{
    submit_req_t req = *(submit_req_t *)data;
    shoal_payload_iter_t it;
    shoal_payload_t item;
    size_t i = 0;

    /* shoal's part goes before the user's callbacks run. */
    free(data);
    if (reply->status != 0) {
        for (i = 0; i < req.n; i++)
            submit_refused(reply, i, req.cb, req.data);
        return;
    }
    if (req.n == 1 &&
        shoal_payload_type(&reply->result) == SHOAL_VALUE_OBJECT) {
        submit_one(&reply->result, 0, reply, req.cb, req.data);
        return;
    }
    if (shoal_payload_iter_init(&it, &reply->result) == 0)
        while (i < req.n && shoal_payload_iter_next(&it, NULL, &item) == 1)
            submit_one(&item, i++, reply, req.cb, req.data);
    for (; i < req.n; i++) {
        shoal_reply_t bad = *reply;
        bad.status = SHOAL_EBADMSG;
        bad.message = "the dispatcher's reply lacks this outcome";
        bad.error.data = NULL;
        submit_refused(&bad, i, req.cb, req.data);
    }
}

static shoal_codec_t submit_codec(const shoal_conn_t *conn)
{
    shoal_codec_t codec = shoal_framing_codec(shoal_conn_framing(conn));

    return codec == SHOAL_CODEC_JSON ? codec : SHOAL_CODEC_MSGPACK;
}

static int submit_send(shoal_conn_t *conn, const char *action,
                       const shoal_buf_t *buf, shoal_codec_t codec, size_t n,
                       shoal_outcome_cb cb, void *data)
{
    shoal_payload_t args = {buf->base, buf->len, codec};
    submit_req_t *req = malloc(sizeof(*req));
    int err;

    if (req == NULL)
        return SHOAL_ENOMEM;
    req->cb = cb;
    req->data = data;
    req->n = n;
    err = shoal_conn_call(conn, SUBMIT_APP, action, &args, 0, submit_reply_cb,
                          req);
    if (err)
        free(req);
    return err;
}

int shoal_submit(shoal_conn_t *conn, const shoal_task_t *task,
                 shoal_outcome_cb cb, void *data)
{
    shoal_codec_t codec = submit_codec(conn);
    shoal_buf_t buf;
    int err;

    if (cb == NULL)
        return SHOAL_EINVAL;
    shoal_buf_init(&buf);
    err = shoal_task_encode(task, codec, &buf);
    if (err == 0)
        err = submit_send(conn, "submit", &buf, codec, 1, cb, data);
    shoal_buf_free(&buf);
    return err;
}

int shoal_submit_batch(shoal_conn_t *conn, const shoal_task_t *tasks, size_t n,
                       shoal_outcome_cb cb, void *data)
{
    shoal_codec_t codec = submit_codec(conn);
    shoal_buf_t buf;
    shoal__pw_t w;
    int err;

    if (cb == NULL || tasks == NULL || n == 0 || n > SHOAL_DISPATCH_MAX_BATCH)
        return SHOAL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((err = task_check(&tasks[i])) != 0)
            return err;
    shoal_buf_init(&buf);
    shoal__pw_init(&w, &buf, codec);
    shoal__pw_array(&w, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        task_write(&w, &tasks[i]);
    shoal__pw_end(&w);
    err = shoal__pw_finish(&w, NULL);
    if (err == 0)
        err = submit_send(conn, "submit_batch", &buf, codec, n, cb, data);
    shoal_buf_free(&buf);
    return err;
}
