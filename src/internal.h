/* What the runtime modules (conn, node, app) share: their structures. */
#ifndef SHOAL_INTERNAL_H
#define SHOAL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "shoal/app.h"
#include "shoal/node.h"
#include "shoal/wire.h"

/* ---- intrusive lists ---------------------------------------------------- */

typedef struct shoal__list {
    struct shoal__list *prev;
    struct shoal__list *next;
} shoal__list_t;

static inline void shoal__list_init(shoal__list_t *head)
{
    head->prev = head;
    head->next = head;
}

static inline bool shoal__list_empty(const shoal__list_t *head)
{
    return head->next == head;
}

static inline void shoal__list_push(shoal__list_t *head, shoal__list_t *item)
{
    item->next = head;
    item->prev = head->prev;
    head->prev->next = item;
    head->prev = item;
}

/* Unlinks item and leaves it linked to itself, so a second remove is
 * harmless. */
static inline void shoal__list_remove(shoal__list_t *item)
{
    item->prev->next = item->next;
    item->next->prev = item->prev;
    item->prev = item;
    item->next = item;
}

#define SHOAL__CONTAINER(ptr, type, field)                                    \
    ((type *)((char *)(ptr)-offsetof(type, field)))

/* ---- a map from 64-bit ids to pointers (map.c) -----------------------------
 */

typedef struct {
    uint64_t *keys;
    void **values;
    size_t count;
    size_t mask; /* capacity - 1, capacity a power of two; 0: empty */
} shoal__map_t;

void shoal__map_init(shoal__map_t *map);
void shoal__map_free(shoal__map_t *map);
/* Returns 0, SHOAL_EEXIST or SHOAL_ENOMEM. value must not be NULL. */
int shoal__map_put(shoal__map_t *map, uint64_t key, void *value);
void *shoal__map_get(const shoal__map_t *map, uint64_t key);
/* Removes key and returns its value, or NULL. */
void *shoal__map_del(shoal__map_t *map, uint64_t key);

/* ---- connections (conn.c) ------------------------------------------------
 */

typedef enum {
    SHOAL_CONN_CONNECTING = 1,
    SHOAL_CONN_HANDSHAKE, /* reserved: authentication before anything */
    SHOAL_CONN_OPEN,
    SHOAL_CONN_CLOSING, /* draining its queue before uv_close */
    SHOAL_CONN_CLOSED   /* uv_close called */
} shoal_conn_state_t;

/* Flushes the write queues of every connection that got output during one
 * loop turn, just before the loop polls: one write per connection per turn
 * however many messages were queued. */
typedef struct {
    uv_prepare_t prepare;
    shoal__list_t dirty;
} shoal__flusher_t;

/* What conn calls up into its owner. */
typedef struct {
    /* A decoded message; frame is its body. */
    void (*on_message)(shoal_conn_t *conn, const shoal_envelope_t *env,
                       const shoal_frame_t *frame);
    /* The connection ended; called from the handle's close callback, just
     * before the memory is freed. */
    void (*on_closed)(shoal_conn_t *conn, int status);
} shoal__conn_owner_t;

struct shoal_conn_s {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    shoal_node_t *node;
    const shoal__conn_owner_t *owner;
    shoal__flusher_t *flusher;
    const shoal_limits_t *limits;
    shoal_conn_state_t state;
    bool outbound;
    shoal_framing_t framing; /* what this side sends */
    shoal_codec_t codec;
    shoal_framing_t in_framing; /* what the peer sends, from its 1st byte */
    shoal_codec_t in_codec;
    int close_status;
    char peer_name[SHOAL_MAX_NAME_BYTES + 1];
    bool peer_named;
    char address[160];
    char peer_listen[160]; /* the address the peer says it listens on */

    /* reading */
    char *in;
    size_t in_len; /* bytes held */
    size_t in_off; /* bytes already consumed */
    size_t in_cap;
    uint64_t in_consumed; /* bytes before in[0] since the start */
    shoal_cut_state_t cut;
    unsigned pauses;  /* shoal_conn_pause nesting */
    bool paused_full; /* by its own write queue */
    bool reading;
    bool delivering; /* inside conn_deliver_frames */
    bool eof;        /* the peer sent everything it will */

    /* writing */
    shoal_buf_t out;     /* filled during this loop turn */
    shoal_buf_t sending; /* handed to the kernel, write pending */
    uv_write_t write_req;
    bool writing;
    shoal__list_t dirty_link;
    size_t high_water;
    uint64_t linger_ms;
    uv_timer_t *linger; /* while closing with output queued */

    /* node's bookkeeping */
    shoal__list_t node_link;
    shoal__map_t calls_out; /* id -> shoal__request_t */
    shoal__list_t calls_in; /* shoal_call_t being served */
    int64_t next_id;
    shoal_connect_cb connect_cb;
    void *connect_data;
    shoal_conn_close_cb on_close;
    void *close_data;
    void *user_data;
    bool send_hello;
    uv_connect_t connect_req;
    uv_getaddrinfo_t *resolve;
    char connect_url[128];
};

void shoal__flusher_init(uv_loop_t *loop, shoal__flusher_t *flusher);
void shoal__flusher_close(shoal__flusher_t *flusher, uv_close_cb cb);

/* Prepares conn's fields (the stream handle is initialised by the caller
 * before or after, but before shoal__conn_start). */
void shoal__conn_setup(shoal_conn_t *conn, shoal_node_t *node,
                       const shoal__conn_owner_t *owner,
                       shoal__flusher_t *flusher, const shoal_limits_t *limits,
                       size_t high_water, uint64_t linger_ms);
/* The stream is connected: set OPEN and start reading. Returns 0 or a
 * libuv error. */
int shoal__conn_start(shoal_conn_t *conn);

/* Queues one message in the connection's framing. Returns 0, SHOAL_ECLOSING
 * or an encoding error. Output is written before the loop next polls. */
int shoal__conn_send(shoal_conn_t *conn, const shoal_envelope_t *env);

/* Queues an error message {type:"error", id?, error:{code, message}}. */
int shoal__conn_send_error(shoal_conn_t *conn, bool has_id, int64_t id,
                           const char *code, const char *message);

/* Ends conn because of err: reports it once, sends the peer an error
 * message saying what was wrong when err is bad input, writes what is
 * queued (bounded by the linger time) and closes. detail may be NULL. */
void shoal__conn_fail(shoal_conn_t *conn, int err, const char *detail);

/* Closes conn without sending anything more than what is queued. */
void shoal__conn_end(shoal_conn_t *conn, int status);

/* True when the connection takes no more messages. */
static inline bool shoal__conn_closing(const shoal_conn_t *conn)
{
    return conn->state >= SHOAL_CONN_CLOSING;
}

/* ---- node ------------------------------------------------------------------
 */

typedef struct shoal__listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    shoal_node_t *node;
    char url[160];
    char path[108]; /* unix: removed at close */
} shoal__listener_t;

typedef struct shoal__app {
    shoal__list_t link;
    char name[SHOAL_MAX_NAME_BYTES + 1];
    size_t name_len;
    char *description; /* JSON object text */
    shoal_action_t *actions;
    size_t n_actions;
    shoal_app_opts_t opts; /* names point into the copies above */
    uint64_t calls;
    uint64_t tells;
    size_t in_flight;
} shoal__app_t;

typedef struct shoal__event_handler {
    shoal__list_t link;
    char name[SHOAL_MAX_NAME_BYTES + 1];
    shoal_event_cb cb;
    void *user;
} shoal__event_handler_t;

/* A call this node sent and waits for. */
typedef struct shoal__request {
    shoal_conn_t *conn;
    int64_t id;
    shoal_call_cb cb;
    void *data;
    uint64_t deadline_ms; /* 0: none */
    shoal__list_t timeout_link;
} shoal__request_t;

struct shoal__node_priv {
    char name[SHOAL_MAX_NAME_BYTES + 1];
    shoal_limits_t limits;
    shoal_framing_t framing;
    size_t high_water;
    uint64_t linger_ms;
    shoal_node_hooks_t *hooks; /* n_hooks sets */
    size_t n_hooks;
    shoal__flusher_t flusher;
    uv_timer_t timeout_timer; /* the earliest call deadline */
    shoal__list_t timeouts;   /* requests with a deadline, by deadline */
    shoal__listener_t **listeners;
    size_t n_listeners;
    size_t pending_closes; /* handles whose close callback is due */
    shoal__list_t conns;
    shoal__list_t apps;
    shoal__list_t handlers;
    shoal_node_counters_t counters;
    uint64_t started_ms;
    shoal_node_close_cb close_cb;
    shoal_call_t *serving; /* the call whose handler runs now */
    size_t calls_serving;  /* calls received and not answered yet */
    bool closing;
};

/* ---- a call being served (app.c) -------------------------------------------
 */

struct shoal_call_s {
    shoal__list_t conn_link; /* in conn->calls_in while conn lives */
    shoal_node_t *node;
    shoal_conn_t *conn;
    shoal__app_t *app;
    int64_t id;
    char action[SHOAL_MAX_NAME_BYTES + 1];
    char from[SHOAL_MAX_NAME_BYTES + 1];
    shoal_payload_t args;
    char *args_copy; /* once the call outlives its frame */
    cJSON *args_json;
    uv_work_t work;
    shoal_work_fn work_fn;
    shoal_work_done_fn work_done;
    void *work_data;
};

/* Finds the app named name (len bytes), or NULL. */
shoal__app_t *shoal__node_find_app(shoal_node_t *node, const char *name,
                                   size_t len);

/* Serves a call message that arrived on conn: routes it to its app and
 * action, or answers with the error. */
void shoal__app_serve_call(shoal_node_t *node, shoal_conn_t *conn,
                           const shoal_envelope_t *env);

/* Delivers a tell to its app, or answers with an error message. */
void shoal__app_serve_tell(shoal_node_t *node, shoal_conn_t *conn,
                           const shoal_envelope_t *env);

/* The connection of calls being served is closing: detach them so that
 * their answers are dropped. */
void shoal__app_detach_calls(shoal_conn_t *conn);

/* Removes and closes every app (node close). */
void shoal__app_close_all(shoal_node_t *node);

/* Adds the apps' part of the description. */
void shoal__app_describe(shoal_node_t *node, cJSON *apps);

/* Calls hook NAME of every hook set with the arguments after node. */
#define SHOAL__HOOKS(node, name, ...)                                         \
    do {                                                                      \
        for (size_t hook_i_ = 0; hook_i_ < (node)->priv->n_hooks; hook_i_++)  \
            if ((node)->priv->hooks[hook_i_].name)                            \
                (node)->priv->hooks[hook_i_].name(                            \
                    (node), __VA_ARGS__, (node)->priv->hooks[hook_i_].data);  \
    } while (0)

#define SHOAL__HOOKS_NOARGS(node, name)                                       \
    do {                                                                      \
        for (size_t hook_i_ = 0; hook_i_ < (node)->priv->n_hooks; hook_i_++)  \
            if ((node)->priv->hooks[hook_i_].name)                            \
                (node)->priv->hooks[hook_i_].name(                            \
                    (node), (node)->priv->hooks[hook_i_].data);               \
    } while (0)

/* Finishes a node's close once its connections, handles and served calls
 * are all gone; does nothing before. */
void shoal__node_maybe_closed(shoal_node_t *node);

/* Milliseconds on the loop clock. */
static inline uint64_t shoal__now_ms(shoal_node_t *node)
{
    return uv_now(node->loop);
}

/* Registers the built-in application called name (app_builtin.c): echo,
 * sum, sleep, fail, crash. Returns 0, SHOAL_ENOAPP if there is no such
 * built-in, or a shoal_node_add_app error. */
int shoal__builtin_app_add(shoal_node_t *node, const char *name);
#endif
