/* The dispatcher: members from hellos, tasks placed over them with a limit
 * of calls in flight per node and a bounded queue, retries when a node
 * dies, one outcome per task, and the "dispatch" application. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_internal.h"
#include "internal.h"

/*
 * A task is always in exactly one of three places, and moves only by the
 * functions named here:
 *
 *   queued     in its group's `waiting` list (any node of the app will do,
 *              or no node hosts the app yet) or in one member's `bound`
 *              list (key and direct tasks wait for their node);
 *   in flight  one shoal_conn_call on a member's connection, whose
 *              callback (dispatch_reply_cb) runs exactly once: answered,
 *              timed out, or failed when the connection closes;
 *   finished   task_finish has given its outcome to its origin and freed
 *              it.
 *
 * task_place moves a task from nowhere (new, or back from a failed
 * attempt) to queued or in flight; member_pump moves queued tasks to in
 * flight when a member has room. That is what makes the outcome exactly
 * once: every path out of "in flight" goes through the reply callback.
 */

#define DISPATCH_DEFAULT_APP "dispatch"

typedef struct dispatch_group dispatch_group_t;
typedef struct dispatch_member dispatch_member_t;
typedef struct dispatch_task dispatch_task_t;
typedef struct dispatch_batch dispatch_batch_t;
typedef struct dispatch_bcast dispatch_bcast_t;

/* The nodes that host one application, and the tasks any of them may
 * take. */
struct dispatch_group {
    shoal__list_t link;
    char name[SHOAL_MAX_NAME_BYTES + 1];
    shoal_placer_t placer; /* data: dispatch_member_t */
    shoal__list_t waiting; /* dispatch_task_t, oldest first */
    size_t n_waiting;
};

/* A peer that said hello with applications. */
struct dispatch_member {
    shoal__list_t link;
    shoal_conn_t *conn;
    char name[SHOAL_MAX_NAME_BYTES + 1];
    dispatch_group_t **groups; /* the applications it hosts */
    size_t n_groups;
    size_t next_group;   /* pump takes from its groups in turn */
    shoal__list_t bound; /* key and direct tasks waiting for this node */
    size_t n_bound;
    shoal__list_t flying; /* tasks in flight on this node */
    size_t in_flight;
    uint64_t done;
    uint64_t failed;
    bool retired; /* out of the placers: closing or replaced */
};

typedef enum {
    ORIGIN_CALL,  /* a "submit" call, answered with the outcome */
    ORIGIN_BATCH, /* one task of a "submit_batch" call */
    ORIGIN_LOCAL  /* shoal_dispatch_submit: a callback */
} dispatch_origin_t;

/* A submit_batch call: outcomes are kept, in the order they finish, in
 * one buffer, and sent as one array in task order when the last ends. */
struct dispatch_batch {
    shoal_call_t *call;
    shoal_codec_t codec;
    size_t n;
    size_t left;
    shoal_buf_t outs;
    size_t (*slots)[2]; /* offset and length of each task's outcome */
};

/* One sub-call of a broadcast. */
typedef struct {
    dispatch_bcast_t *bcast;
    dispatch_member_t *member;
    size_t off; /* of this node's reply in bcast->replies */
    size_t len;
} dispatch_bslot_t;

struct dispatch_bcast {
    dispatch_task_t *task;
    size_t n;
    size_t left;
    shoal_codec_t codec;
    shoal_buf_t replies;
    dispatch_bslot_t slots[];
};

struct dispatch_task {
    shoal__list_t link; /* in a queue, or its member's flying list */
    shoal__dispatch_priv_t *priv;
    dispatch_group_t *group;
    dispatch_member_t *member; /* in flight on, or bound to */
    dispatch_origin_t origin;
    union {
        shoal_call_t *call;
        struct {
            dispatch_batch_t *batch;
            size_t index;
        } b;
        struct {
            shoal_outcome_cb cb;
            void *data;
        } local;
    } u;
    /* args and id: offsets into the origin call's arguments (which move
     * when the call is kept), or into own_bytes for in-process tasks */
    size_t args_off, args_len;
    size_t id_off, id_len;
    shoal_codec_t codec;
    bool has_args, has_id;
    int64_t num_id;
    const char *action;      /* in the task's own allocation */
    const char *direct_node; /* DIRECT: the node, same allocation */
    const char *own_bytes;   /* ORIGIN_LOCAL: args then id */
    shoal_strategy_t strategy;
    uint64_t key_hash;
    uint64_t timeout_ms;
    uint64_t queued_at_ms;
    int retries_left;
    unsigned attempts;
    bool retry_on_error;
    bool retry_on_timeout;
    bool queued;
    bool orphan; /* its origin has been told (dispatcher closed) */
    /* deferred in-process outcome (failed inside shoal_dispatch_submit) */
    int deferred_code;
};

struct shoal__dispatch_priv {
    shoal_dispatch_t *d;
    char app_name[SHOAL_MAX_NAME_BYTES + 1];
    size_t limit;
    size_t max_queued;
    int retries;
    uint64_t worker_wait_ms;
    shoal__list_t groups;
    dispatch_group_t *last_group; /* where the last task went */
    shoal__list_t members;
    shoal__map_t members_by_conn; /* conn -> dispatch_member_t */
    shoal__map_t paused;          /* conn -> conn, paused by us */
    shoal_dispatch_stats_t stats;
    uint64_t next_id;
    size_t tasks;      /* alive: queued, in flight, or in a batch not sent */
    size_t calls_out;  /* shoal_conn_call callbacks still due */
    uv_timer_t *timer; /* the earliest ENOWORKER deadline */
    uv_idle_t *idle;   /* delivers deferred in-process outcomes */
    shoal__list_t deferred;
    shoal__list_t bcasts; /* broadcasts in flight */
    size_t handles_open;  /* timer and idle, until their close callbacks */
    bool submitting;      /* inside shoal_dispatch_submit */
    bool draining;
    bool closing;
    bool node_closing;
    shoal_dispatch_drain_cb drain_cb;
    void *drain_data;
    void (*sup_done)(void *done_data); /* shoal_dispatch_drain_fn's */
    void *sup_done_data;
    shoal_dispatch_close_cb close_cb;
};

static void task_place(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                       bool front);
static void member_pump(shoal__dispatch_priv_t *priv, dispatch_member_t *m);
static void dispatch_check_idle(shoal__dispatch_priv_t *priv);
static void dispatch_arm_timer(shoal__dispatch_priv_t *priv);
static void dispatch_maybe_resume(shoal__dispatch_priv_t *priv);

static uint64_t dispatch_now(shoal__dispatch_priv_t *priv)
{
    return uv_now(priv->d->node->loop);
}

static void list_push_front(shoal__list_t *head, shoal__list_t *item)
{
    item->prev = head;
    item->next = head->next;
    head->next->prev = item;
    head->next = item;
}

/* ---- groups ------------------------------------------------------------- */

static dispatch_group_t *group_find(shoal__dispatch_priv_t *priv,
                                    const char *name)
{
    /* Tasks come in runs of one application: try the last one first. */
    if (priv->last_group && strcmp(priv->last_group->name, name) == 0)
        return priv->last_group;
    for (shoal__list_t *pos = priv->groups.next; pos != &priv->groups;
         pos = pos->next) {
        dispatch_group_t *g = SHOAL__CONTAINER(pos, dispatch_group_t, link);
        if (strcmp(g->name, name) == 0)
            return priv->last_group = g;
    }
    return NULL;
}

static dispatch_group_t *group_get(shoal__dispatch_priv_t *priv,
                                   const char *name)
{
    dispatch_group_t *g = group_find(priv, name);

    if (g != NULL)
        return g;
    if (strlen(name) > SHOAL_MAX_NAME_BYTES)
        return NULL;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    strcpy(g->name, name);
    shoal_placer_init(&g->placer);
    shoal__list_init(&g->waiting);
    shoal__list_push(&priv->groups, &g->link);
    return g;
}

/* A group nobody hosts and nothing waits in is forgotten, so that
 * submits naming random applications cost nothing lasting. */
static void group_maybe_free(shoal__dispatch_priv_t *priv, dispatch_group_t *g)
{
    if (g->placer.count > 0 || g->n_waiting > 0)
        return;
    if (priv->last_group == g)
        priv->last_group = NULL;
    shoal__list_remove(&g->link);
    shoal_placer_free(&g->placer);
    free(g);
}

/* ---- flow control --------------------------------------------------------
 */

static size_t member_load(void *member_data, void *arg)
{
    dispatch_member_t *m = member_data;
    shoal__dispatch_priv_t *priv = arg;

    if (m->in_flight >= priv->limit || m->n_bound > 0)
        return SHOAL_PLACER_FULL;
    return m->in_flight;
}

static bool member_has_room(shoal__dispatch_priv_t *priv,
                            const dispatch_member_t *m)
{
    return !m->retired && m->in_flight < priv->limit;
}

static void queue_count(shoal__dispatch_priv_t *priv, int delta)
{
    priv->stats.queued = (size_t)((long)priv->stats.queued + delta);
    if (priv->stats.queued > priv->stats.queued_max)
        priv->stats.queued_max = priv->stats.queued;
}

/* The submitter of a task that made the queue pass its bound stops being
 * read until the queue is half empty: its kernel buffer fills and its own
 * writes slow down. */
static void dispatch_pause(shoal__dispatch_priv_t *priv, shoal_conn_t *conn)
{
    uint64_t key = (uint64_t)(uintptr_t)conn;

    if (conn == NULL || priv->stats.queued <= priv->max_queued)
        return;
    if (shoal__map_get(&priv->paused, key) != NULL)
        return;
    if (shoal__map_put(&priv->paused, key, conn) != 0)
        return;
    shoal_conn_pause(conn);
    priv->stats.paused++;
    priv->stats.pauses++;
}

static void dispatch_maybe_resume(shoal__dispatch_priv_t *priv)
{
    shoal_conn_t *conns[64];
    size_t n = 0;

    if (priv->paused.count == 0 || priv->stats.queued > priv->max_queued / 2)
        return;
    /* Resuming reads at once, and what it reads may pause again: take the
     * connections out of the map first, resume them after. */
    while (priv->paused.count > 0) {
        for (size_t i = 0; i <= priv->paused.mask && n < 64; i++)
            if (priv->paused.values[i] != NULL)
                conns[n++] = priv->paused.values[i];
        for (size_t i = 0; i < n; i++)
            shoal__map_del(&priv->paused, (uint64_t)(uintptr_t)conns[i]);
        priv->stats.paused -= n;
        for (size_t i = 0; i < n; i++)
            shoal_conn_resume(conns[i]);
        n = 0;
        if (priv->stats.queued > priv->max_queued / 2)
            break;
    }
}

/* ---- task bytes --------------------------------------------------------- */

static const char *task_base(const dispatch_task_t *t)
{
    switch (t->origin) {
    case ORIGIN_CALL:
        return shoal_call_args(t->u.call)->data;
    case ORIGIN_BATCH:
        return shoal_call_args(t->u.b.batch->call)->data;
    default:
        return t->own_bytes;
    }
}

static void task_args(const dispatch_task_t *t, shoal_payload_t *out)
{
    out->data = t->has_args ? task_base(t) + t->args_off : NULL;
    out->len = t->has_args ? t->args_len : 0;
    out->codec = t->codec;
}

/* The id as a payload: the submitter's, or the number given here. */
static void task_id(const dispatch_task_t *t, shoal_payload_t *out,
                    char *scratch, size_t scratch_len)
{
    if (t->has_id) {
        out->data = task_base(t) + t->id_off;
        out->len = t->id_len;
        out->codec = t->codec;
        return;
    }
    out->len =
        (size_t)snprintf(scratch, scratch_len, "%lld", (long long)t->num_id);
    out->data = scratch;
    out->codec = SHOAL_CODEC_JSON;
}

/* The connection the task's submitter is on; NULL once it has gone (or
 * for in-process tasks). */
static shoal_conn_t *task_submitter(const dispatch_task_t *t)
{
    if (t->origin == ORIGIN_CALL)
        return shoal_call_conn(t->u.call);
    if (t->origin == ORIGIN_BATCH)
        return shoal_call_conn(t->u.b.batch->call);
    return NULL;
}

static bool task_abandoned(const dispatch_task_t *t)
{
    return t->origin != ORIGIN_LOCAL && task_submitter(t) == NULL;
}

/* ---- outcomes ------------------------------------------------------------
 */

void shoal__outcome_write(shoal__pw_t *w, const shoal_payload_t *id,
                          const int64_t *num_id, shoal_outcome_status_t status,
                          const char *node, unsigned attempts,
                          const shoal_payload_t *result,
                          const shoal_payload_t *error, const char *code_name,
                          const char *message)
{
    shoal__pw_map(w, 5);
    shoal__pw_key(w, "id");
    if (id && id->data)
        shoal__pw_value(w, id);
    else if (num_id)
        shoal__pw_int(w, *num_id);
    else
        shoal__pw_null(w);
    shoal__pw_key(w, "status");
    shoal__pw_cstr(w, shoal_outcome_status_name(status));
    shoal__pw_key(w, "node");
    if (node && node[0])
        shoal__pw_cstr(w, node);
    else
        shoal__pw_null(w);
    shoal__pw_key(w, "attempts");
    shoal__pw_int(w, attempts);
    if (status == SHOAL_OUTCOME_OK) {
        shoal__pw_key(w, "result");
        shoal__pw_value(w, result);
    } else if (error && error->data) {
        shoal__pw_key(w, "error");
        shoal__pw_value(w, error);
    } else {
        shoal__pw_key(w, "error");
        shoal__pw_map(w, 2);
        shoal__pw_key(w, "code");
        shoal__pw_cstr(w, code_name);
        shoal__pw_key(w, "message");
        shoal__pw_cstr(w, message);
        shoal__pw_end(w);
    }
    shoal__pw_end(w);
}

const char *shoal_outcome_status_name(shoal_outcome_status_t status)
{
    switch (status) {
    case SHOAL_OUTCOME_OK:
        return "ok";
    case SHOAL_OUTCOME_TIMEOUT:
        return "timeout";
    default:
        return "error";
    }
}

/* What ends a task, gathered for task_finish. */
typedef struct {
    shoal_outcome_status_t status;
    bool refused;
    int code;
    const char *code_name;
    const char *message;
    const char *node;
    const shoal_payload_t *result;
    const shoal_payload_t *error;
} dispatch_end_t;

static void dispatch_end_error(dispatch_end_t *e, int code,
                               const char *message, bool refused)
{
    memset(e, 0, sizeof(*e));
    e->status =
        code == SHOAL_ETIMEDOUT ? SHOAL_OUTCOME_TIMEOUT : SHOAL_OUTCOME_ERROR;
    e->refused = refused;
    e->code = code;
    e->code_name = shoal_err_name(code);
    e->message = message ? message : shoal_strerror(code);
}

static void batch_reply(shoal__dispatch_priv_t *priv, dispatch_batch_t *b)
{
    shoal__pw_t w;
    shoal_buf_t buf;
    shoal_payload_t out;

    (void)priv;
    shoal_buf_init(&buf);
    shoal__pw_init(&w, &buf, b->codec);
    shoal__pw_array(&w, (uint32_t)b->n);
    for (size_t i = 0; i < b->n; i++) {
        shoal_payload_t one = {b->outs.base + b->slots[i][0], b->slots[i][1],
                               b->codec};
        shoal__pw_value(&w, &one);
    }
    shoal__pw_end(&w);
    if (shoal__pw_finish(&w, &out) == 0)
        shoal_call_reply(b->call, &out);
    else
        shoal_call_fail(b->call, SHOAL_ENOMEM, "out of memory");
    shoal_buf_free(&buf);
    shoal_buf_free(&b->outs);
    free(b->slots);
    free(b);
}

/* Gives the outcome to the task's origin; the caller frees the task. */
static void task_deliver(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                         const dispatch_end_t *e)
{
    char id_text[24];
    shoal_payload_t id, payload;
    shoal_codec_t codec;
    shoal__pw_t w;
    shoal_buf_t buf;

    task_id(t, &id, id_text, sizeof(id_text));
    if (t->origin == ORIGIN_LOCAL) {
        shoal_outcome_t o;
        memset(&o, 0, sizeof(o));
        o.status = e->status;
        o.refused = e->refused;
        o.code = e->code;
        o.code_name = e->status == SHOAL_OUTCOME_OK ? "" : e->code_name;
        o.message = e->status == SHOAL_OUTCOME_OK ? "" : e->message;
        o.node = e->node ? e->node : "";
        o.attempts = t->attempts;
        o.id = id;
        if (e->result)
            o.result = *e->result;
        if (e->error)
            o.error = *e->error;
        t->u.local.cb(&o, t->u.local.data);
        return;
    }
    if (t->origin == ORIGIN_CALL && e->refused) {
        /* The task never ran: the submit itself is refused. */
        shoal_call_fail_named(t->u.call, e->code_name, "%s", e->message);
        return;
    }
    if (t->origin == ORIGIN_BATCH) {
        dispatch_batch_t *b = t->u.b.batch;
        size_t start = b->outs.len;
        shoal__pw_init(&w, &b->outs, b->codec);
        shoal__outcome_write(&w, t->has_id ? &id : NULL, &t->num_id, e->status,
                             e->node, t->attempts, e->result, e->error,
                             e->code_name, e->message);
        if (shoal__pw_finish(&w, NULL) != 0) {
            shoal__pw_init(&w, &b->outs, b->codec);
            shoal__outcome_write(&w, t->has_id ? &id : NULL, &t->num_id,
                                 SHOAL_OUTCOME_ERROR, e->node, t->attempts,
                                 NULL, NULL, "EAPPFAILED",
                                 "the result could not be encoded");
            shoal__pw_finish(&w, NULL);
        }
        b->slots[t->u.b.index][0] = start;
        b->slots[t->u.b.index][1] = b->outs.len - start;
        if (--b->left == 0)
            batch_reply(priv, b);
        return;
    }
    /* One outcome in the codec its result came in, so that a result
     * passes through as it is; the reply transcodes it for the submitter
     * only if that one speaks the other codec. */
    codec = e->result && e->result->data ? e->result->codec : t->codec;
    shoal_buf_init(&buf);
    shoal__pw_init(&w, &buf, codec);
    shoal__outcome_write(&w, t->has_id ? &id : NULL, &t->num_id, e->status,
                         e->node, t->attempts, e->result, e->error,
                         e->code_name, e->message);
    if (shoal__pw_finish(&w, &payload) == 0)
        shoal_call_reply(t->u.call, &payload);
    else
        shoal_call_fail(t->u.call, SHOAL_EAPPFAILED,
                        "the result could not be encoded");
    shoal_buf_free(&buf);
}

static void dispatch_idle_cb(uv_idle_t *idle);

/* The one way a task ends. t is in no list and has no call in flight. */
static void task_finish(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                        const dispatch_end_t *e)
{
    if (e->refused)
        priv->stats.refused++;
    else if (e->status == SHOAL_OUTCOME_OK)
        priv->stats.ok++;
    else if (e->status == SHOAL_OUTCOME_TIMEOUT)
        priv->stats.timed_out++;
    else
        priv->stats.failed++;
    if (t->origin == ORIGIN_LOCAL && priv->submitting) {
        /* Inside shoal_dispatch_submit: the callback runs later. Only
         * failures without a result get here. */
        t->deferred_code = e->code;
        shoal__list_push(&priv->deferred, &t->link);
        uv_idle_start(priv->idle, dispatch_idle_cb);
        return;
    } else {
        task_deliver(priv, t, e);
        free(t);
    }
    priv->tasks--;
    dispatch_check_idle(priv);
}

static void dispatch_idle_cb(uv_idle_t *idle)
{
    shoal__dispatch_priv_t *priv = idle->data;

    uv_idle_stop(idle);
    while (!shoal__list_empty(&priv->deferred)) {
        dispatch_task_t *t =
            SHOAL__CONTAINER(priv->deferred.next, dispatch_task_t, link);
        dispatch_end_t e;
        shoal__list_remove(&t->link);
        dispatch_end_error(&e, t->deferred_code, NULL, t->attempts == 0);
        task_deliver(priv, t, &e);
        free(t);
        priv->tasks--;
    }
    dispatch_check_idle(priv);
}

static void task_refuse(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                        int code, const char *message)
{
    dispatch_end_t e;

    dispatch_end_error(&e, code, message, t->attempts == 0);
    task_finish(priv, t, &e);
}

/* ---- queues ------------------------------------------------------------- */

static void task_enqueue(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                         shoal__list_t *list, bool front)
{
    if (front)
        list_push_front(list, &t->link);
    else
        shoal__list_push(list, &t->link);
    t->queued = true;
    t->queued_at_ms = dispatch_now(priv);
    queue_count(priv, +1);
}

static void task_dequeue(shoal__dispatch_priv_t *priv, dispatch_task_t *t)
{
    shoal__list_remove(&t->link);
    t->queued = false;
    queue_count(priv, -1);
    if (t->member != NULL) {
        t->member->n_bound--;
        t->member = NULL;
    } else {
        t->group->n_waiting--;
    }
}

static void task_wait_in_group(shoal__dispatch_priv_t *priv,
                               dispatch_task_t *t, bool front)
{
    t->member = NULL;
    task_enqueue(priv, t, &t->group->waiting, front);
    t->group->n_waiting++;
    if (t->group->placer.count == 0)
        dispatch_arm_timer(priv);
}

static void task_bind(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                      dispatch_member_t *m, bool front)
{
    t->member = m;
    task_enqueue(priv, t, &m->bound, front);
    m->n_bound++;
}

/* ---- sending ------------------------------------------------------------ */

static void dispatch_reply_cb(const shoal_reply_t *reply, void *data);
static void dispatch_bcast_reply_cb(const shoal_reply_t *reply, void *data);
static void member_retire(shoal__dispatch_priv_t *priv, dispatch_member_t *m);
static void member_leave_group(shoal__dispatch_priv_t *priv,
                               dispatch_member_t *m, dispatch_group_t *g);

/* Sends one attempt of t to m. Returns 0 (in flight), or a negative code
 * when the call could not be made; t is then untouched. */
static int task_call(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                     dispatch_member_t *m, shoal_call_cb cb, void *cb_data)
{
    shoal_payload_t args;
    int err;

    task_args(t, &args);
    err = shoal_conn_call(m->conn, t->group->name, t->action,
                          t->has_args ? &args : NULL, t->timeout_ms, cb,
                          cb_data);
    if (err == 0) {
        m->in_flight++;
        priv->stats.in_flight++;
        priv->calls_out++;
    }
    return err;
}

static void task_send_broadcast(shoal__dispatch_priv_t *priv,
                                dispatch_task_t *t);

/* Sends t to m, which has room. On a connection that is closing, retires
 * m and places t again; on any other failure t ends with that error. */
static void task_send(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                      dispatch_member_t *m)
{
    int err;

    if (task_abandoned(t)) {
        /* Nobody waits for this outcome any more. */
        task_refuse(priv, t, SHOAL_ECONNCLOSED, "the submitter has gone");
        return;
    }
    t->member = m;
    err = task_call(priv, t, m, dispatch_reply_cb, t);
    if (err == 0) {
        t->attempts++;
        shoal__list_push(&m->flying, &t->link);
        return;
    }
    t->member = NULL;
    if (err == SHOAL_ECLOSING) {
        member_retire(priv, m);
        task_place(priv, t, true);
        return;
    }
    task_refuse(priv, t, err, NULL);
}

static dispatch_member_t *group_member(const dispatch_group_t *g, int i)
{
    return shoal_placer_data(&g->placer, (size_t)i);
}

/* Finds a home for t: in flight on a node with room, or queued. front puts
 * a task that comes back from a failed attempt ahead of newer ones. */
static void task_place(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                       bool front)
{
    dispatch_group_t *g = t->group;
    dispatch_member_t *m;
    int i;

    switch (t->strategy) {
    case SHOAL_STRATEGY_BROADCAST:
        if (g->placer.count == 0) {
            task_wait_in_group(priv, t, front);
            return;
        }
        task_send_broadcast(priv, t);
        return;
    case SHOAL_STRATEGY_KEY:
        i = shoal_placer_key(&g->placer, t->key_hash);
        if (i < 0) {
            task_wait_in_group(priv, t, front);
            return;
        }
        m = group_member(g, i);
        break;
    case SHOAL_STRATEGY_DIRECT:
        i = shoal_placer_find(&g->placer, t->direct_node);
        if (i < 0) {
            /* Its node is gone: no other node may take it. */
            task_refuse(priv, t, SHOAL_ECONNCLOSED,
                        "the node the task was directed to has gone");
            return;
        }
        m = group_member(g, i);
        break;
    case SHOAL_STRATEGY_LEAST_LOADED:
        i = shoal_placer_least_loaded(&g->placer, member_load, priv);
        if (i < 0) {
            task_wait_in_group(priv, t, front);
            return;
        }
        task_send(priv, t, group_member(g, i));
        return;
    default:
        i = shoal_placer_next(&g->placer, member_load, priv);
        if (i < 0) {
            task_wait_in_group(priv, t, front);
            return;
        }
        task_send(priv, t, group_member(g, i));
        return;
    }
    /* key and direct: this node or none. */
    if (member_has_room(priv, m) && m->n_bound == 0)
        task_send(priv, t, m);
    else
        task_bind(priv, t, m, front);
}

/* Fills m's free slots: its own bound tasks first, then the waiting tasks
 * of its applications, taken from each in turn. */
static void member_pump(shoal__dispatch_priv_t *priv, dispatch_member_t *m)
{
    while (member_has_room(priv, m) && !priv->closing) {
        dispatch_task_t *t = NULL;

        if (m->n_bound > 0) {
            t = SHOAL__CONTAINER(m->bound.next, dispatch_task_t, link);
            task_dequeue(priv, t);
            task_send(priv, t, m);
            continue;
        }
        for (size_t k = 0; k < m->n_groups && t == NULL; k++) {
            dispatch_group_t *g = m->groups[(m->next_group + k) % m->n_groups];
            if (g->n_waiting == 0)
                continue;
            t = SHOAL__CONTAINER(g->waiting.next, dispatch_task_t, link);
            m->next_group = (m->next_group + k + 1) % m->n_groups;
        }
        if (t == NULL)
            break;
        task_dequeue(priv, t);
        if (t->strategy == SHOAL_STRATEGY_ROUND_ROBIN ||
            t->strategy == SHOAL_STRATEGY_LEAST_LOADED)
            task_send(priv, t, m);
        else
            task_place(priv, t, true); /* its own node, or everyone */
    }
}

/* ---- broadcast ------------------------------------------------------------
 */

static void bcast_finish(shoal__dispatch_priv_t *priv, dispatch_bcast_t *bc)
{
    dispatch_task_t *t = bc->task;
    shoal_payload_t all;
    dispatch_end_t e;
    shoal_buf_t buf;
    shoal__pw_t w;

    shoal__list_remove(&t->link);
    shoal_buf_init(&buf);
    shoal__pw_init(&w, &buf, bc->codec);
    shoal__pw_array(&w, (uint32_t)bc->n);
    for (size_t i = 0; i < bc->n; i++) {
        shoal_payload_t one = {bc->replies.base + bc->slots[i].off,
                               bc->slots[i].len, bc->codec};
        shoal__pw_value(&w, &one);
    }
    shoal__pw_end(&w);
    memset(&e, 0, sizeof(e));
    if (shoal__pw_finish(&w, &all) == 0) {
        e.status = SHOAL_OUTCOME_OK;
        e.result = &all;
        task_finish(priv, t, &e);
    } else {
        task_refuse(priv, t, SHOAL_ENOMEM, NULL);
    }
    shoal_buf_free(&buf);
    shoal_buf_free(&bc->replies);
    free(bc);
}

/* Writes one node's part of a broadcast's result:
 * {"node", "status", "result" | "error"}. */
static void bcast_note(dispatch_bcast_t *bc, dispatch_bslot_t *s,
                       const shoal_reply_t *reply, int status)
{
    size_t start = bc->replies.len;
    shoal__pw_t w;

    shoal__pw_init(&w, &bc->replies, bc->codec);
    shoal__pw_map(&w, 3);
    shoal__pw_key(&w, "node");
    shoal__pw_cstr(&w, s->member->name);
    shoal__pw_key(&w, "status");
    if (status == 0) {
        shoal__pw_cstr(&w, "ok");
        shoal__pw_key(&w, "result");
        shoal__pw_value(&w, &reply->result);
    } else {
        shoal__pw_cstr(&w, status == SHOAL_ETIMEDOUT ? "timeout" : "error");
        shoal__pw_key(&w, "error");
        if (reply && reply->error.data) {
            shoal__pw_value(&w, &reply->error);
        } else {
            shoal__pw_map(&w, 2);
            shoal__pw_key(&w, "code");
            shoal__pw_cstr(&w, shoal_err_name(status));
            shoal__pw_key(&w, "message");
            shoal__pw_cstr(&w, shoal_strerror(status));
            shoal__pw_end(&w);
        }
    }
    shoal__pw_end(&w);
    if (shoal__pw_finish(&w, NULL) != 0) {
        shoal__pw_init(&w, &bc->replies, bc->codec);
        shoal__pw_null(&w);
        shoal__pw_finish(&w, NULL);
    }
    s->off = start;
    s->len = bc->replies.len - start;
}

static void task_send_broadcast(shoal__dispatch_priv_t *priv,
                                dispatch_task_t *t)
{
    dispatch_group_t *g = t->group;
    size_t n = g->placer.count;
    dispatch_bcast_t *bc;

    bc = calloc(1, sizeof(*bc) + n * sizeof(bc->slots[0]));
    if (bc == NULL) {
        task_refuse(priv, t, SHOAL_ENOMEM, NULL);
        return;
    }
    shoal__list_push(&priv->bcasts, &t->link);
    bc->task = t;
    bc->n = n;
    bc->left = n + 1; /* one more, dropped below: no early finish */
    bc->codec = t->codec ? t->codec : SHOAL_CODEC_MSGPACK;
    shoal_buf_init(&bc->replies);
    t->attempts = 1;
    t->member = NULL;
    /* Every node, whatever its load: a broadcast does not wait. */
    for (size_t i = 0; i < n; i++) {
        dispatch_bslot_t *s = &bc->slots[i];
        int err;
        s->bcast = bc;
        s->member = group_member(g, (int)i);
        err = task_call(priv, t, s->member, dispatch_bcast_reply_cb, s);
        if (err) {
            bcast_note(bc, s, NULL, err);
            bc->left--;
        }
    }
    if (--bc->left == 0)
        bcast_finish(priv, bc);
}

static void member_call_done(shoal__dispatch_priv_t *priv,
                             dispatch_member_t *m)
{
    m->in_flight--;
    priv->stats.in_flight--;
    priv->calls_out--;
}

static void dispatch_maybe_closed(shoal__dispatch_priv_t *priv);

/* Decodes the error of a failed reply for an outcome: its name and
 * message, kept in the caller's buffers. */
static void dispatch_end_from_reply(dispatch_end_t *e,
                                    const shoal_reply_t *reply,
                                    const dispatch_member_t *m,
                                    shoal_name_t *name, char *msg,
                                    size_t msg_len)
{
    dispatch_end_error(e, reply->status, reply->message, false);
    e->node = m->name;
    if (reply->error.data != NULL) {
        e->error = &reply->error;
        if (shoal_wire_decode_error(&reply->error, name, msg, msg_len) !=
            SHOAL_EBADMSG) {
            e->code_name = name->s;
            e->message = msg;
        }
    }
}

/* Whether a failed attempt is tried again, on another node if it can. */
static bool task_should_retry(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                              int status)
{
    bool wanted;

    if (t->retries_left <= 0 || priv->node_closing || priv->closing)
        return false;
    switch (status) {
    case SHOAL_ECONNCLOSED:
    case SHOAL_ECLOSING:
    case SHOAL_ENOAPP:
    case SHOAL_ENOROUTE:
        wanted = true; /* the node is gone or does not host the app */
        break;
    case SHOAL_ETIMEDOUT:
        wanted = t->retry_on_timeout;
        break;
    default:
        wanted = t->retry_on_error;
        break;
    }
    return wanted;
}

static void dispatch_reply_cb(const shoal_reply_t *reply, void *data)
{
    dispatch_task_t *t = data;
    shoal__dispatch_priv_t *priv = t->priv;
    dispatch_member_t *m = t->member;
    char msg[512];
    shoal_name_t name;
    dispatch_end_t e;

    shoal__list_remove(&t->link);
    t->member = NULL;
    member_call_done(priv, m);
    if (t->orphan) {
        /* Its origin heard ESTOPPING when the dispatcher closed. */
        free(t);
        dispatch_maybe_closed(priv);
        return;
    }
    if (reply->status == 0) {
        m->done++;
        memset(&e, 0, sizeof(e));
        e.status = SHOAL_OUTCOME_OK;
        e.node = m->name;
        e.result = &reply->result;
        task_finish(priv, t, &e);
    } else {
        m->failed++;
        if (reply->status == SHOAL_ECONNCLOSED ||
            reply->status == SHOAL_ECLOSING)
            member_retire(priv, m);
        if (task_should_retry(priv, t, reply->status)) {
            t->retries_left--;
            priv->stats.retried++;
            /* A node that does not host the app is not asked again. */
            if (reply->status == SHOAL_ENOAPP)
                member_leave_group(priv, m, t->group);
            task_place(priv, t, true);
        } else {
            dispatch_end_from_reply(&e, reply, m, &name, msg, sizeof(msg));
            task_finish(priv, t, &e);
        }
    }
    if (!priv->closing) {
        member_pump(priv, m);
        dispatch_maybe_resume(priv);
    }
}

static void dispatch_bcast_reply_cb(const shoal_reply_t *reply, void *data)
{
    dispatch_bslot_t *s = data;
    dispatch_bcast_t *bc = s->bcast;
    dispatch_task_t *t = bc->task;
    shoal__dispatch_priv_t *priv = t->priv;
    dispatch_member_t *m = s->member;

    member_call_done(priv, m);
    if (reply->status == 0)
        m->done++;
    else
        m->failed++;
    if (reply->status == SHOAL_ECONNCLOSED)
        member_retire(priv, m);
    if (!t->orphan)
        bcast_note(bc, s, reply, reply->status);
    if (--bc->left == 0) {
        if (t->orphan) {
            shoal__list_remove(&t->link);
            shoal_buf_free(&bc->replies);
            free(bc);
            free(t);
            dispatch_maybe_closed(priv);
            return;
        }
        bcast_finish(priv, bc);
    }
    if (!priv->closing) {
        member_pump(priv, m);
        dispatch_maybe_resume(priv);
    }
}

/* ---- members -------------------------------------------------------------
 */

static void group_remove_member(shoal__dispatch_priv_t *priv,
                                dispatch_group_t *g, dispatch_member_t *m)
{
    int i = shoal_placer_find(&g->placer, m->name);

    /* The name may belong to a newer member that replaced this one. */
    if (i >= 0 && group_member(g, i) == m) {
        shoal_placer_remove(&g->placer, m->name);
        if (g->placer.count == 0 && g->n_waiting > 0)
            dispatch_arm_timer(priv);
    }
}

/* m said it does not host g's application after all. */
static void member_leave_group(shoal__dispatch_priv_t *priv,
                               dispatch_member_t *m, dispatch_group_t *g)
{
    for (size_t i = 0; i < m->n_groups; i++)
        if (m->groups[i] == g) {
            m->groups[i] = m->groups[--m->n_groups];
            m->next_group = 0;
            group_remove_member(priv, g, m);
            return;
        }
}

/* Takes m out of every placer and places its bound tasks again. Its calls
 * in flight go on: they end through their callbacks. */
static void member_retire(shoal__dispatch_priv_t *priv, dispatch_member_t *m)
{
    if (m->retired)
        return;
    m->retired = true;
    for (size_t i = 0; i < m->n_groups; i++)
        group_remove_member(priv, m->groups[i], m);
    while (m->n_bound > 0 && !priv->closing) {
        dispatch_task_t *t =
            SHOAL__CONTAINER(m->bound.next, dispatch_task_t, link);
        task_dequeue(priv, t);
        task_place(priv, t, true);
    }
}

static void member_free(dispatch_member_t *m)
{
    shoal__list_remove(&m->link);
    free(m->groups);
    free(m);
}

/* The application names in a description, or NULL when it lists none. */
static cJSON *dispatch_hello_apps(const shoal_payload_t *desc, cJSON **json)
{
    cJSON *apps;

    *json = desc->data ? shoal_payload_to_cjson(desc) : NULL;
    apps = cJSON_GetObjectItemCaseSensitive(*json, "applications");
    return cJSON_IsArray(apps) && cJSON_GetArraySize(apps) > 0 ? apps : NULL;
}

static void dispatch_on_hello(shoal_node_t *node, shoal_conn_t *conn,
                              const shoal_payload_t *desc, void *data)
{
    shoal__dispatch_priv_t *priv = data;
    uint64_t key = (uint64_t)(uintptr_t)conn;
    dispatch_member_t *m = shoal__map_get(&priv->members_by_conn, key);
    const cJSON *app;
    cJSON *json, *apps;
    size_t n;

    (void)node;
    if (priv->closing || priv->node_closing)
        return;
    apps = dispatch_hello_apps(desc, &json);
    if (apps == NULL) {
        /* A client, or a node that hosts nothing any more. */
        if (m != NULL)
            member_retire(priv, m);
        cJSON_Delete(json);
        return;
    }
    if (m == NULL) {
        m = calloc(1, sizeof(*m));
        if (m == NULL || shoal__map_put(&priv->members_by_conn, key, m)) {
            free(m);
            cJSON_Delete(json);
            return;
        }
        m->conn = conn;
        shoal__list_init(&m->bound);
        shoal__list_init(&m->flying);
        shoal__list_push(&priv->members, &m->link);
    } else {
        /* A second hello: its applications may have changed. */
        for (size_t i = 0; i < m->n_groups; i++)
            group_remove_member(priv, m->groups[i], m);
        m->n_groups = 0;
        m->retired = false;
    }
    snprintf(m->name, sizeof(m->name), "%s", shoal_conn_peer_name(conn));
    /* A node that comes back under its name replaces the one that has
     * not been seen to go yet. */
    for (shoal__list_t *pos = priv->members.next; pos != &priv->members;
         pos = pos->next) {
        dispatch_member_t *o = SHOAL__CONTAINER(pos, dispatch_member_t, link);
        if (o != m && !o->retired && strcmp(o->name, m->name) == 0)
            member_retire(priv, o);
    }
    n = (size_t)cJSON_GetArraySize(apps);
    free(m->groups);
    m->groups = calloc(n, sizeof(*m->groups));
    if (m->groups == NULL) {
        cJSON_Delete(json);
        member_retire(priv, m);
        return;
    }
    cJSON_ArrayForEach(app, apps)
    {
        const char *name = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(app, "name"));
        dispatch_group_t *g;
        if (name == NULL || (g = group_get(priv, name)) == NULL)
            continue;
        if (shoal_placer_add(&g->placer, m->name, m) >= 0)
            m->groups[m->n_groups++] = g;
    }
    cJSON_Delete(json);
    member_pump(priv, m);
}

static void dispatch_on_conn_close(shoal_node_t *node, shoal_conn_t *conn,
                                   int status, void *data)
{
    shoal__dispatch_priv_t *priv = data;
    uint64_t key = (uint64_t)(uintptr_t)conn;
    dispatch_member_t *m;

    (void)node;
    (void)status;
    if (shoal__map_del(&priv->paused, key) != NULL)
        priv->stats.paused--;
    m = shoal__map_del(&priv->members_by_conn, key);
    if (m == NULL)
        return;
    /* Its calls in flight have failed already (the node fails them before
     * it runs this hook), and were placed again. */
    member_retire(priv, m);
    member_free(m);
}

/* ---- ENOWORKER deadlines -------------------------------------------------
 */

static void dispatch_timer_cb(uv_timer_t *timer)
{
    shoal__dispatch_priv_t *priv = timer->data;
    uint64_t now = dispatch_now(priv);
    shoal__list_t expired, *pos, *next;

    /* Collected first: refusing a task runs its callback, which may
     * submit and so change the groups. */
    shoal__list_init(&expired);
    for (pos = priv->groups.next; pos != &priv->groups; pos = next) {
        dispatch_group_t *g = SHOAL__CONTAINER(pos, dispatch_group_t, link);
        next = pos->next;
        if (g->placer.count > 0)
            continue;
        while (g->n_waiting > 0) {
            dispatch_task_t *t =
                SHOAL__CONTAINER(g->waiting.next, dispatch_task_t, link);
            if (t->queued_at_ms + priv->worker_wait_ms > now)
                break;
            task_dequeue(priv, t);
            shoal__list_push(&expired, &t->link);
        }
    }
    while (!shoal__list_empty(&expired) && !priv->closing) {
        dispatch_task_t *t =
            SHOAL__CONTAINER(expired.next, dispatch_task_t, link);
        char msg[SHOAL_MAX_NAME_BYTES + 64];
        shoal__list_remove(&t->link);
        snprintf(msg, sizeof(msg), "no node hosts application '%s'",
                 t->group->name);
        task_refuse(priv, t, SHOAL_ENOWORKER, msg);
    }
    for (pos = priv->groups.next; pos != &priv->groups; pos = next) {
        next = pos->next;
        group_maybe_free(priv, SHOAL__CONTAINER(pos, dispatch_group_t, link));
    }
    dispatch_arm_timer(priv);
    dispatch_maybe_resume(priv);
}

static void dispatch_arm_timer(shoal__dispatch_priv_t *priv)
{
    uint64_t now = dispatch_now(priv), first = UINT64_MAX;

    if (priv->closing)
        return;
    for (shoal__list_t *pos = priv->groups.next; pos != &priv->groups;
         pos = pos->next) {
        dispatch_group_t *g = SHOAL__CONTAINER(pos, dispatch_group_t, link);
        dispatch_task_t *t;
        if (g->placer.count > 0 || g->n_waiting == 0)
            continue;
        t = SHOAL__CONTAINER(g->waiting.next, dispatch_task_t, link);
        if (t->queued_at_ms + priv->worker_wait_ms < first)
            first = t->queued_at_ms + priv->worker_wait_ms;
    }
    if (first == UINT64_MAX)
        uv_timer_stop(priv->timer);
    else
        uv_timer_start(priv->timer, dispatch_timer_cb,
                       first > now ? first - now : 0, 0);
}

/* ---- taking tasks --------------------------------------------------------
 */

/* A task as submitted, before it is a dispatch_task_t. Payloads borrow
 * from the submit. */
typedef struct {
    const char *app;
    const char *action;
    const char *node;
    shoal_payload_t args;
    shoal_payload_t id;
    shoal_strategy_t strategy;
    uint64_t key_hash;
    bool has_key;
    bool has_node;
    bool has_index;
    int64_t index;
    uint64_t timeout_ms;
    bool has_retries;
    int retries;
    bool retry_on_error;
    bool retry_on_timeout;
} task_spec_t;

static int spec_name(const shoal_payload_t *v, char *out, const char *field,
                     char *why, size_t why_len)
{
    int n = shoal_payload_string(v, out, SHOAL_MAX_NAME_BYTES + 1);

    if (n > 0)
        return 0;
    snprintf(why, why_len, "\"%s\" must be a string of 1 to %d bytes", field,
             SHOAL_MAX_NAME_BYTES);
    return n == SHOAL_ETOOBIG ? SHOAL_ENAMETOOLONG : SHOAL_EBADTYPE;
}

static int spec_uint(const shoal_payload_t *v, int64_t max, int64_t *out,
                     const char *field, char *why, size_t why_len)
{
    if (shoal_payload_int(v, out) == 0 && *out >= 0 && *out <= max)
        return 0;
    snprintf(why, why_len, "\"%s\" must be an integer from 0 to %lld", field,
             (long long)max);
    return SHOAL_EBADTYPE;
}

static int spec_bool(const shoal_payload_t *v, bool *out, const char *field,
                     char *why, size_t why_len)
{
    if (shoal_payload_bool(v, out) == 0)
        return 0;
    snprintf(why, why_len, "\"%s\" must be true or false", field);
    return SHOAL_EBADTYPE;
}

/* Room for the names of a task read from the wire. */
typedef struct {
    char app[SHOAL_MAX_NAME_BYTES + 1];
    char action[SHOAL_MAX_NAME_BYTES + 1];
    char node[SHOAL_MAX_NAME_BYTES + 1];
} spec_names_t;

/* Reads a task object {"app","action","args",...} in one pass; the names
 * go to names. Returns 0, or an error code with a sentence in why. */
static int spec_parse(const shoal_payload_t *obj, task_spec_t *spec,
                      spec_names_t *names, char *why, size_t why_len)
{
    shoal_payload_iter_t it;
    shoal_payload_t k, v, strategy = {NULL, 0, SHOAL_CODEC_NONE};
    shoal_buf_t scratch;
    int64_t n;
    int err;

    memset(spec, 0, sizeof(*spec));
    names->app[0] = names->action[0] = names->node[0] = '\0';
    spec->app = names->app;
    spec->action = names->action;
    spec->node = names->node;
    if (shoal_payload_type(obj) != SHOAL_VALUE_OBJECT) {
        snprintf(why, why_len,
                 "a task is an object with \"app\", "
                 "\"action\" and \"args\"");
        return SHOAL_EBADTYPE;
    }
    shoal_payload_iter_init(&it, obj);
    while ((err = shoal_payload_iter_next(&it, &k, &v)) == 1) {
        err = 0;
        if (shoal_payload_string_eq(&k, "app"))
            err = spec_name(&v, names->app, "app", why, why_len);
        else if (shoal_payload_string_eq(&k, "action"))
            err = spec_name(&v, names->action, "action", why, why_len);
        else if (shoal_payload_string_eq(&k, "args"))
            spec->args = v;
        else if (shoal_payload_string_eq(&k, "id"))
            spec->id = v;
        else if (shoal_payload_string_eq(&k, "strategy"))
            strategy = v;
        else if (shoal_payload_string_eq(&k, "key")) {
            const char *bytes;
            size_t len;
            shoal_buf_init(&scratch);
            err = shoal__dispatch_key_bytes(&v, &scratch, &bytes, &len);
            if (err == 0) {
                spec->key_hash = shoal_placer_hash(bytes, len);
                spec->has_key = true;
            } else {
                snprintf(why, why_len, "\"key\" cannot be read");
            }
            shoal_buf_free(&scratch);
        } else if (shoal_payload_string_eq(&k, "node")) {
            err = spec_name(&v, names->node, "node", why, why_len);
            spec->has_node = true;
        } else if (shoal_payload_string_eq(&k, "index")) {
            err =
                spec_uint(&v, INT32_MAX, &spec->index, "index", why, why_len);
            spec->has_index = true;
        } else if (shoal_payload_string_eq(&k, "timeout_ms")) {
            err = spec_uint(&v, INT64_MAX, &n, "timeout_ms", why, why_len);
            spec->timeout_ms = (uint64_t)n;
        } else if (shoal_payload_string_eq(&k, "retries")) {
            err = spec_uint(&v, 1000, &n, "retries", why, why_len);
            spec->retries = (int)n;
            spec->has_retries = true;
        } else if (shoal_payload_string_eq(&k, "retry_on_error"))
            err = spec_bool(&v, &spec->retry_on_error, "retry_on_error", why,
                            why_len);
        else if (shoal_payload_string_eq(&k, "retry_on_timeout"))
            err = spec_bool(&v, &spec->retry_on_timeout, "retry_on_timeout",
                            why, why_len);
        if (err)
            return err;
    }
    if (err < 0) {
        snprintf(why, why_len, "the task cannot be read");
        return err;
    }
    if (spec->app[0] == '\0' || spec->action[0] == '\0') {
        snprintf(why, why_len, "a task needs \"app\" and \"action\"");
        return SHOAL_EBADMSG;
    }
    if (strategy.data != NULL) {
        char name[32];
        if (shoal_payload_string(&strategy, name, sizeof(name)) < 0 ||
            shoal_strategy_parse(name, &spec->strategy) != 0) {
            snprintf(why, why_len,
                     "\"strategy\" is one of round-robin, key, "
                     "least-loaded, broadcast, direct");
            return SHOAL_EINVAL;
        }
    } else if (spec->has_key) {
        spec->strategy = SHOAL_STRATEGY_KEY;
    } else if (spec->has_node || spec->has_index) {
        spec->strategy = SHOAL_STRATEGY_DIRECT;
    }
    if (spec->strategy == SHOAL_STRATEGY_KEY && !spec->has_key) {
        snprintf(why, why_len, "strategy key needs a \"key\"");
        return SHOAL_EINVAL;
    }
    if (spec->strategy == SHOAL_STRATEGY_DIRECT && !spec->has_node &&
        !spec->has_index) {
        snprintf(why, why_len, "strategy direct needs \"node\" or \"index\"");
        return SHOAL_EINVAL;
    }
    return 0;
}

/* Makes the task: one allocation holding the task, its action and, for
 * in-process tasks, copies of its arguments and id. base is where the
 * submit's arguments start (NULL for in-process tasks). */
static dispatch_task_t *task_new(shoal__dispatch_priv_t *priv,
                                 const task_spec_t *spec, const char *base,
                                 shoal_codec_t codec)
{
    size_t action_len = strlen(spec->action);
    size_t node_len =
        spec->strategy == SHOAL_STRATEGY_DIRECT ? SHOAL_MAX_NAME_BYTES + 1 : 0;
    size_t own = base ? 0 : spec->args.len + spec->id.len;
    dispatch_task_t *t;
    char *tail;

    t = malloc(sizeof(*t) + action_len + 1 + node_len + own);
    if (t == NULL)
        return NULL;
    memset(t, 0, sizeof(*t));
    tail = (char *)(t + 1);
    memcpy(tail, spec->action, action_len + 1);
    t->action = tail;
    tail += action_len + 1;
    if (node_len) {
        t->direct_node = tail;
        tail += node_len;
    }
    t->priv = priv;
    shoal__list_init(&t->link);
    t->codec = codec;
    t->has_args = spec->args.data != NULL;
    t->has_id = spec->id.data != NULL;
    if (base) {
        t->args_off = t->has_args ? (size_t)(spec->args.data - base) : 0;
        t->id_off = t->has_id ? (size_t)(spec->id.data - base) : 0;
    } else {
        if (t->has_args)
            memcpy(tail, spec->args.data, spec->args.len);
        if (t->has_id)
            memcpy(tail + spec->args.len, spec->id.data, spec->id.len);
        t->own_bytes = tail;
        t->args_off = 0;
        t->id_off = spec->args.len;
    }
    t->args_len = spec->args.len;
    t->id_len = spec->id.len;
    t->num_id = (int64_t)++priv->next_id;
    t->strategy = spec->strategy;
    t->key_hash = spec->key_hash;
    t->timeout_ms = spec->timeout_ms;
    t->retries_left = spec->has_retries ? spec->retries : priv->retries;
    t->retry_on_error = spec->retry_on_error;
    t->retry_on_timeout = spec->retry_on_timeout;
    return t;
}

/* Resolves a direct task's node and places a new task (or refuses it). */
static void task_start(shoal__dispatch_priv_t *priv, dispatch_task_t *t,
                       const task_spec_t *spec)
{
    char why[2 * SHOAL_MAX_NAME_BYTES + 64];

    priv->tasks++;
    priv->stats.submitted++;
    t->group = group_get(priv, spec->app);
    if (t->group == NULL) {
        task_refuse(priv, t, SHOAL_ENOMEM, NULL);
        return;
    }
    if (t->strategy == SHOAL_STRATEGY_DIRECT) {
        const char *name = NULL;
        if (spec->has_node &&
            shoal_placer_find(&t->group->placer, spec->node) >= 0)
            name = spec->node;
        else if (!spec->has_node)
            name = shoal_placer_name(&t->group->placer, (size_t)spec->index);
        if (name == NULL) {
            if (spec->has_node)
                snprintf(why, sizeof(why),
                         "no node '%s' hosts application '%s'", spec->node,
                         spec->app);
            else
                snprintf(why, sizeof(why),
                         "application '%s' has no node at index %lld",
                         spec->app, (long long)spec->index);
            dispatch_group_t *g = t->group;
            task_refuse(priv, t, SHOAL_ENOTFOUND, why);
            group_maybe_free(priv, g);
            return;
        }
        snprintf((char *)t->direct_node, SHOAL_MAX_NAME_BYTES + 1, "%s", name);
    }
    task_place(priv, t, false);
}

/* ---- the "dispatch" application ------------------------------------------
 */

static void dispatch_refuse_call(shoal__dispatch_priv_t *priv,
                                 shoal_call_t *call, int code, const char *why)
{
    priv->stats.refused++;
    shoal_call_fail(call, code, "%s", why);
}

static bool dispatch_taking(shoal__dispatch_priv_t *priv, shoal_call_t *call)
{
    if (!priv->draining && !priv->closing && !priv->node_closing)
        return true;
    dispatch_refuse_call(priv, call, SHOAL_ESTOPPING,
                         "the dispatcher takes no more tasks");
    return false;
}

static void dispatch_submit_action(shoal_call_t *call, void *data)
{
    shoal__dispatch_priv_t *priv = data;
    const shoal_payload_t *args = shoal_call_args(call);
    shoal_conn_t *conn = shoal_call_conn(call);
    char why[256];
    spec_names_t names;
    task_spec_t spec;
    dispatch_task_t *t;
    int err;

    if (!dispatch_taking(priv, call))
        return;
    err = spec_parse(args, &spec, &names, why, sizeof(why));
    if (err) {
        dispatch_refuse_call(priv, call, err, why);
        return;
    }
    t = task_new(priv, &spec, args->data, args->codec);
    if (t == NULL) {
        dispatch_refuse_call(priv, call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    t->origin = ORIGIN_CALL;
    t->u.call = call;
    task_start(priv, t, &spec);
    dispatch_pause(priv, conn);
}

/* Writes a refused outcome into a batch slot for an item that is not a
 * task at all. */
static void batch_refuse_item(dispatch_batch_t *b, size_t i, int code,
                              const char *why)
{
    size_t start = b->outs.len;
    shoal__pw_t w;

    shoal__pw_init(&w, &b->outs, b->codec);
    shoal__outcome_write(&w, NULL, NULL, SHOAL_OUTCOME_ERROR, NULL, 0, NULL,
                         NULL, shoal_err_name(code), why);
    shoal__pw_finish(&w, NULL);
    b->slots[i][0] = start;
    b->slots[i][1] = b->outs.len - start;
    b->left--;
}

static void dispatch_submit_batch_action(shoal_call_t *call, void *data)
{
    shoal__dispatch_priv_t *priv = data;
    const shoal_payload_t *args = shoal_call_args(call);
    shoal_conn_t *conn = shoal_call_conn(call);
    shoal_payload_iter_t it;
    shoal_payload_t item;
    dispatch_batch_t *b;
    size_t n = 0;
    char why[256];
    int err;

    if (!dispatch_taking(priv, call))
        return;
    if (shoal_payload_type(args) != SHOAL_VALUE_ARRAY) {
        dispatch_refuse_call(priv, call, SHOAL_EBADTYPE,
                             "submit_batch takes an array of tasks");
        return;
    }
    shoal_payload_iter_init(&it, args);
    while ((err = shoal_payload_iter_next(&it, NULL, &item)) == 1)
        if (++n > SHOAL_DISPATCH_MAX_BATCH)
            break;
    if (err < 0 || n > SHOAL_DISPATCH_MAX_BATCH) {
        snprintf(why, sizeof(why), "a batch holds at most %d tasks",
                 SHOAL_DISPATCH_MAX_BATCH);
        dispatch_refuse_call(priv, call, err < 0 ? err : SHOAL_ETOOBIG, why);
        return;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL ||
        (b->slots = calloc(n ? n : 1, sizeof(*b->slots))) == NULL) {
        free(b);
        dispatch_refuse_call(priv, call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    b->call = call;
    b->codec = args->codec;
    b->n = n;
    b->left = n + 1; /* held until every task is started */
    shoal_buf_init(&b->outs);
    shoal_payload_iter_init(&it, args);
    for (size_t i = 0; i < n; i++) {
        spec_names_t names;
        task_spec_t spec;
        dispatch_task_t *t;
        shoal_payload_iter_next(&it, NULL, &item);
        err = spec_parse(&item, &spec, &names, why, sizeof(why));
        if (err) {
            priv->stats.refused++;
            batch_refuse_item(b, i, err, why);
            continue;
        }
        t = task_new(priv, &spec, args->data, args->codec);
        if (t == NULL) {
            priv->stats.refused++;
            batch_refuse_item(b, i, SHOAL_ENOMEM, "out of memory");
            continue;
        }
        t->origin = ORIGIN_BATCH;
        t->u.b.batch = b;
        t->u.b.index = i;
        task_start(priv, t, &spec);
    }
    if (--b->left == 0)
        batch_reply(priv, b);
    dispatch_pause(priv, conn);
}

static void dispatch_members_action(shoal_call_t *call, void *data)
{
    shoal__dispatch_priv_t *priv = data;
    cJSON *members = shoal_dispatch_members(priv->d);

    if (members == NULL) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    shoal_call_reply_cjson(call, members);
    cJSON_Delete(members);
}

static cJSON *dispatch_stats_json(const shoal__dispatch_priv_t *priv)
{
    const shoal_dispatch_stats_t *s = &priv->stats;
    cJSON *o = cJSON_CreateObject();

    if (o == NULL)
        return NULL;
    cJSON_AddNumberToObject(o, "submitted", (double)s->submitted);
    cJSON_AddNumberToObject(o, "ok", (double)s->ok);
    cJSON_AddNumberToObject(o, "failed", (double)s->failed);
    cJSON_AddNumberToObject(o, "timed_out", (double)s->timed_out);
    cJSON_AddNumberToObject(o, "refused", (double)s->refused);
    cJSON_AddNumberToObject(o, "retried", (double)s->retried);
    cJSON_AddNumberToObject(o, "queued", (double)s->queued);
    cJSON_AddNumberToObject(o, "queued_max", (double)s->queued_max);
    cJSON_AddNumberToObject(o, "max_queued", (double)priv->max_queued);
    cJSON_AddNumberToObject(o, "in_flight", (double)s->in_flight);
    cJSON_AddNumberToObject(o, "inflight_per_node", (double)priv->limit);
    cJSON_AddNumberToObject(o, "members", (double)priv->members_by_conn.count);
    cJSON_AddNumberToObject(o, "paused", (double)s->paused);
    cJSON_AddNumberToObject(o, "pauses", (double)s->pauses);
    cJSON_AddBoolToObject(o, "draining", priv->draining);
    return o;
}

static void dispatch_stats_action(shoal_call_t *call, void *data)
{
    cJSON *stats = dispatch_stats_json(data);

    if (stats == NULL) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    shoal_call_reply_cjson(call, stats);
    cJSON_Delete(stats);
}

static const shoal_action_t dispatch_actions[] = {
    {"submit", dispatch_submit_action},
    {"submit_batch", dispatch_submit_batch_action},
    {"members", dispatch_members_action},
    {"stats", dispatch_stats_action},
};

/* ---- node hooks -----------------------------------------------------------
 */

static void dispatch_on_describe(shoal_node_t *node, cJSON *desc, void *data)
{
    cJSON *stats = dispatch_stats_json(data);

    (void)node;
    if (stats != NULL)
        cJSON_AddItemToObject(desc, "dispatch", stats);
}

/* Ends every queued task with code; user callbacks may run. */
static void dispatch_end_queued(shoal__dispatch_priv_t *priv, int code)
{
    for (;;) {
        dispatch_task_t *t = NULL;
        for (shoal__list_t *pos = priv->groups.next;
             pos != &priv->groups && t == NULL; pos = pos->next) {
            dispatch_group_t *g =
                SHOAL__CONTAINER(pos, dispatch_group_t, link);
            if (g->n_waiting > 0)
                t = SHOAL__CONTAINER(g->waiting.next, dispatch_task_t, link);
        }
        for (shoal__list_t *pos = priv->members.next;
             pos != &priv->members && t == NULL; pos = pos->next) {
            dispatch_member_t *m =
                SHOAL__CONTAINER(pos, dispatch_member_t, link);
            if (m->n_bound > 0)
                t = SHOAL__CONTAINER(m->bound.next, dispatch_task_t, link);
        }
        if (t == NULL)
            return;
        task_dequeue(priv, t);
        task_refuse(priv, t, code, NULL);
    }
}

/* The node is closing: its connections go, and with them every call in
 * flight (their callbacks end those tasks without retrying). */
static void dispatch_on_node_close(shoal_node_t *node, void *data)
{
    shoal__dispatch_priv_t *priv = data;

    (void)node;
    priv->node_closing = true;
    uv_timer_stop(priv->timer);
    dispatch_end_queued(priv, SHOAL_ESTOPPING);
}

/* The hooks go with the dispatcher, unless the node has closed and freed
 * them already. */
static void dispatch_unhook(shoal__dispatch_priv_t *priv)
{
    shoal_node_t *node = priv->d->node;

    if (node->priv != NULL)
        shoal_node_remove_hooks(node, priv);
}

/* ---- public
 * ------------------------------------------------------------------ */

static void dispatch_handle_close_cb(uv_handle_t *handle)
{
    shoal__dispatch_priv_t *priv = handle->data;

    free(handle);
    if (--priv->handles_open == 0) {
        shoal_dispatch_t *d = priv->d;
        shoal_dispatch_close_cb cb = priv->close_cb;
        while (!shoal__list_empty(&priv->members))
            member_free(
                SHOAL__CONTAINER(priv->members.next, dispatch_member_t, link));
        while (!shoal__list_empty(&priv->groups)) {
            dispatch_group_t *g =
                SHOAL__CONTAINER(priv->groups.next, dispatch_group_t, link);
            shoal__list_remove(&g->link);
            shoal_placer_free(&g->placer);
            free(g);
        }
        shoal__map_free(&priv->members_by_conn);
        shoal__map_free(&priv->paused);
        free(priv);
        d->priv = NULL;
        if (cb)
            cb(d);
    }
}

/* Closing ends once every call sent has come back; the handles close
 * last, so that the final step always runs from their callbacks, never
 * from inside one of ours. */
static void dispatch_maybe_closed(shoal__dispatch_priv_t *priv)
{
    if (!priv->closing || priv->calls_out > 0 || priv->handles_open < 2 ||
        uv_is_closing((uv_handle_t *)priv->timer))
        return;
    uv_close((uv_handle_t *)priv->timer, dispatch_handle_close_cb);
    uv_close((uv_handle_t *)priv->idle, dispatch_handle_close_cb);
}

static void dispatch_check_idle(shoal__dispatch_priv_t *priv)
{
    if (priv->draining && priv->drain_cb && priv->tasks == 0 &&
        !priv->closing) {
        shoal_dispatch_drain_cb cb = priv->drain_cb;
        priv->drain_cb = NULL;
        cb(priv->d, priv->drain_data);
    }
}

int shoal_dispatch_init(shoal_dispatch_t *d, shoal_node_t *node,
                        const shoal_dispatch_opts_t *opts)
{
    shoal_dispatch_opts_t none;
    shoal__dispatch_priv_t *priv;
    shoal_node_hooks_t hooks;
    shoal_app_opts_t app;
    int err;

    if (opts == NULL) {
        memset(&none, 0, sizeof(none));
        opts = &none;
    }
    if (opts->app_name && strlen(opts->app_name) > SHOAL_MAX_NAME_BYTES)
        return SHOAL_ENAMETOOLONG;
    priv = calloc(1, sizeof(*priv));
    if (priv == NULL)
        return SHOAL_ENOMEM;
    priv->timer = malloc(sizeof(*priv->timer));
    priv->idle = malloc(sizeof(*priv->idle));
    if (priv->timer == NULL || priv->idle == NULL) {
        free(priv->timer);
        free(priv->idle);
        free(priv);
        return SHOAL_ENOMEM;
    }
    d->node = node;
    d->priv = priv;
    priv->d = d;
    snprintf(priv->app_name, sizeof(priv->app_name), "%s",
             opts->app_name ? opts->app_name : DISPATCH_DEFAULT_APP);
    priv->limit = opts->inflight_per_node ? opts->inflight_per_node
                                          : SHOAL_DISPATCH_DEFAULT_INFLIGHT;
    priv->max_queued = opts->max_queued ? opts->max_queued
                                        : SHOAL_DISPATCH_DEFAULT_MAX_QUEUED;
    priv->retries = opts->retries == 0  ? SHOAL_DISPATCH_DEFAULT_RETRIES
                    : opts->retries < 0 ? 0
                                        : opts->retries;
    priv->worker_wait_ms = opts->worker_wait_ms
                               ? opts->worker_wait_ms
                               : SHOAL_DISPATCH_DEFAULT_WORKER_WAIT_MS;
    priv->stats.max_queued = priv->max_queued;
    shoal__list_init(&priv->groups);
    shoal__list_init(&priv->members);
    shoal__list_init(&priv->deferred);
    shoal__list_init(&priv->bcasts);
    shoal__map_init(&priv->members_by_conn);
    shoal__map_init(&priv->paused);

    memset(&app, 0, sizeof(app));
    app.name = priv->app_name;
    app.description = "{\"summary\":\"places tasks on the nodes that host "
                      "their application: submit, submit_batch, members, "
                      "stats\"}";
    app.actions = dispatch_actions;
    app.n_actions = sizeof(dispatch_actions) / sizeof(dispatch_actions[0]);
    app.data = priv;
    err = shoal_node_add_app(node, &app);
    if (err == 0) {
        memset(&hooks, 0, sizeof(hooks));
        hooks.on_hello = dispatch_on_hello;
        hooks.on_conn_close = dispatch_on_conn_close;
        hooks.on_describe = dispatch_on_describe;
        hooks.on_close = dispatch_on_node_close;
        hooks.data = priv;
        err = shoal_node_add_hooks(node, &hooks);
        if (err)
            shoal_node_remove_app(node, priv->app_name);
    }
    if (err) {
        free(priv->timer);
        free(priv->idle);
        free(priv);
        d->priv = NULL;
        return err;
    }
    uv_timer_init(node->loop, priv->timer);
    uv_idle_init(node->loop, priv->idle);
    priv->timer->data = priv;
    priv->idle->data = priv;
    priv->handles_open = 2;
    return 0;
}

int shoal_dispatch_submit(shoal_dispatch_t *d, const shoal_task_t *task,
                          shoal_outcome_cb cb, void *data)
{
    shoal__dispatch_priv_t *priv = d->priv;
    task_spec_t spec;
    dispatch_task_t *t;

    if (priv->closing || priv->draining || priv->node_closing)
        return SHOAL_ESTOPPING;
    if (task == NULL || cb == NULL || task->app == NULL ||
        task->action == NULL || task->app[0] == '\0' ||
        task->action[0] == '\0' ||
        (unsigned)task->strategy > SHOAL_STRATEGY_DIRECT)
        return SHOAL_EINVAL;
    if (strlen(task->app) > SHOAL_MAX_NAME_BYTES ||
        strlen(task->action) > SHOAL_MAX_NAME_BYTES ||
        (task->node && strlen(task->node) > SHOAL_MAX_NAME_BYTES))
        return SHOAL_ENAMETOOLONG;
    if (task->strategy == SHOAL_STRATEGY_DIRECT && task->node == NULL &&
        task->index < 0)
        return SHOAL_EINVAL;
    if (task->args && task->args->data && task->id && task->id->data &&
        task->args->codec != task->id->codec)
        return SHOAL_EINVAL;
    memset(&spec, 0, sizeof(spec));
    spec.app = task->app;
    spec.action = task->action;
    if (task->args && task->args->data)
        spec.args = *task->args;
    if (task->id && task->id->data)
        spec.id = *task->id;
    spec.strategy = task->strategy;
    if (task->strategy == SHOAL_STRATEGY_KEY) {
        spec.key_hash =
            shoal_placer_hash(task->key ? task->key : "", task->key_len);
        spec.has_key = true;
    }
    if (task->strategy == SHOAL_STRATEGY_DIRECT) {
        if (task->node) {
            spec.node = task->node;
            spec.has_node = true;
        } else {
            spec.index = task->index;
            spec.has_index = true;
        }
    }
    spec.timeout_ms = task->timeout_ms;
    spec.has_retries = task->retries != 0;
    spec.retries = task->retries < 0 ? 0 : task->retries;
    spec.retry_on_error = task->retry_on_error;
    spec.retry_on_timeout = task->retry_on_timeout;
    t = task_new(priv, &spec, NULL,
                 spec.args.data ? spec.args.codec
                 : spec.id.data ? spec.id.codec
                                : SHOAL_CODEC_MSGPACK);
    if (t == NULL)
        return SHOAL_ENOMEM;
    t->origin = ORIGIN_LOCAL;
    t->u.local.cb = cb;
    t->u.local.data = data;
    priv->submitting = true;
    task_start(priv, t, &spec);
    priv->submitting = false;
    return 0;
}

int shoal_dispatch_drain(shoal_dispatch_t *d, shoal_dispatch_drain_cb cb,
                         void *data)
{
    shoal__dispatch_priv_t *priv = d->priv;

    if (priv->closing || priv->draining)
        return SHOAL_ECLOSING;
    priv->draining = true;
    priv->drain_cb = cb;
    priv->drain_data = data;
    /* Even with nothing to wait for, cb runs later, not from here. */
    uv_idle_start(priv->idle, dispatch_idle_cb);
    return 0;
}

static void dispatch_sup_drained_cb(shoal_dispatch_t *d, void *data)
{
    shoal__dispatch_priv_t *priv = d->priv;
    void (*done)(void *) = priv->sup_done;

    (void)data;
    priv->sup_done = NULL;
    if (done)
        done(priv->sup_done_data);
}

void shoal_dispatch_drain_fn(void *dispatch, void (*done)(void *done_data),
                             void *done_data)
{
    shoal_dispatch_t *d = dispatch;
    shoal__dispatch_priv_t *priv = d->priv;

    if (priv == NULL) {
        done(done_data); /* closed already */
        return;
    }
    priv->sup_done = done;
    priv->sup_done_data = done_data;
    if (shoal_dispatch_drain(d, dispatch_sup_drained_cb, NULL) != 0) {
        /* Draining already, or closing: nothing to hold the stop for. */
        priv->sup_done = NULL;
        done(done_data);
    }
}

void shoal_dispatch_stats(const shoal_dispatch_t *d,
                          shoal_dispatch_stats_t *out)
{
    *out = d->priv->stats;
    out->members = d->priv->members_by_conn.count;
}

/* Members in the stable order: by name. */
static int dispatch_member_cmp(const void *a, const void *b)
{
    const dispatch_member_t *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

cJSON *shoal_dispatch_members(const shoal_dispatch_t *d)
{
    const shoal__dispatch_priv_t *priv = d->priv;
    dispatch_member_t **all;
    size_t n = 0;
    cJSON *out;

    out = cJSON_CreateArray();
    all = calloc(priv->members_by_conn.count + 1, sizeof(*all));
    if (out == NULL || all == NULL) {
        cJSON_Delete(out);
        free(all);
        return NULL;
    }
    for (const shoal__list_t *pos = priv->members.next; pos != &priv->members;
         pos = pos->next) {
        dispatch_member_t *m = SHOAL__CONTAINER(pos, dispatch_member_t, link);
        if (!m->retired && n <= priv->members_by_conn.count)
            all[n++] = m;
    }
    qsort(all, n, sizeof(*all), dispatch_member_cmp);
    for (size_t i = 0; i < n; i++) {
        dispatch_member_t *m = all[i];
        cJSON *o = cJSON_CreateObject();
        cJSON *apps;
        cJSON_AddStringToObject(o, "name", m->name);
        cJSON_AddNumberToObject(o, "index", (double)i);
        apps = cJSON_AddArrayToObject(o, "applications");
        for (size_t k = 0; k < m->n_groups; k++)
            cJSON_AddItemToArray(apps, cJSON_CreateString(m->groups[k]->name));
        cJSON_AddNumberToObject(o, "in_flight", (double)m->in_flight);
        cJSON_AddNumberToObject(o, "limit", (double)priv->limit);
        cJSON_AddNumberToObject(o, "queued", (double)m->n_bound);
        cJSON_AddNumberToObject(o, "done", (double)m->done);
        cJSON_AddNumberToObject(o, "failed", (double)m->failed);
        cJSON_AddItemToArray(out, o);
    }
    free(all);
    return out;
}

void shoal_dispatch_close(shoal_dispatch_t *d, shoal_dispatch_close_cb cb)
{
    shoal__dispatch_priv_t *priv = d->priv;
    dispatch_end_t e;

    if (priv == NULL || priv->closing)
        return;
    dispatch_end_queued(priv, SHOAL_ESTOPPING);
    priv->closing = true;
    priv->close_cb = cb;
    dispatch_unhook(priv);
    if (d->node->priv != NULL && !priv->node_closing)
        shoal_node_remove_app(d->node, priv->app_name);
    uv_timer_stop(priv->timer);
    /* Submitters left paused would never be read again. */
    priv->max_queued = SIZE_MAX;
    dispatch_maybe_resume(priv);
    /* Tasks in flight: their origins hear now; the tasks stay until their
     * calls come back. */
    dispatch_end_error(&e, SHOAL_ESTOPPING, NULL, false);
    for (shoal__list_t *pos = priv->members.next; pos != &priv->members;
         pos = pos->next) {
        dispatch_member_t *m = SHOAL__CONTAINER(pos, dispatch_member_t, link);
        for (shoal__list_t *f = m->flying.next; f != &m->flying; f = f->next) {
            dispatch_task_t *t = SHOAL__CONTAINER(f, dispatch_task_t, link);
            if (t->orphan)
                continue;
            t->orphan = true;
            e.node = m->name;
            task_deliver(priv, t, &e);
        }
    }
    for (shoal__list_t *pos = priv->bcasts.next; pos != &priv->bcasts;
         pos = pos->next) {
        dispatch_task_t *t = SHOAL__CONTAINER(pos, dispatch_task_t, link);
        if (t->orphan)
            continue;
        t->orphan = true;
        e.node = NULL;
        task_deliver(priv, t, &e);
    }
    while (!shoal__list_empty(&priv->deferred)) {
        dispatch_task_t *t =
            SHOAL__CONTAINER(priv->deferred.next, dispatch_task_t, link);
        shoal__list_remove(&t->link);
        dispatch_end_error(&e, t->deferred_code, NULL, t->attempts == 0);
        task_deliver(priv, t, &e);
        free(t);
    }
    dispatch_maybe_closed(priv);
}

/* ---- keys ------------------------------------------------------------------
 */

int shoal__dispatch_key_bytes(const shoal_payload_t *key, shoal_buf_t *scratch,
                              const char **bytes, size_t *len)
{
    shoal_value_type_t type = shoal_payload_type(key);
    int64_t n;
    int err;

    scratch->len = 0;
    if (type == SHOAL_VALUE_STRING) {
        err = shoal_buf_reserve(scratch, key->len + 1);
        if (err)
            return err;
        err = shoal_payload_string(key, scratch->base, scratch->cap);
        if (err < 0)
            return err;
        *bytes = scratch->base;
        *len = (size_t)err;
        return 0;
    }
    if (type == SHOAL_VALUE_INT && shoal_payload_int(key, &n) == 0) {
        char text[24];
        int k = snprintf(text, sizeof(text), "%lld", (long long)n);
        err = shoal_buf_append(scratch, text, (size_t)k);
        if (err)
            return err;
        *bytes = scratch->base;
        *len = scratch->len;
        return 0;
    }
    err = shoal_wire_transcode(key, SHOAL_CODEC_JSON, scratch);
    if (err)
        return err;
    *bytes = scratch->base;
    *len = scratch->len;
    return 0;
}
