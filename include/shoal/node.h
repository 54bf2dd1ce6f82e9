/* Nodes: a name, listeners, connections to peers, calls in flight. */
#ifndef SHOAL_NODE_H
#define SHOAL_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/error.h"
#include "shoal/wire.h"

/*
 * A node is one process's presence in shoal: it listens on any number of
 * addresses, accepts and opens connections, hosts applications (app.h) and
 * routes each message that arrives to the application it names or to the
 * call in flight it answers. A C program that only calls other nodes is a
 * node too, one that never listens.
 *
 * Handles follow libuv's habits: the caller allocates a shoal_node_t,
 * shoal_node_init() prepares it, shoal_node_close() ends it asynchronously
 * and the memory is the caller's again when the close callback runs.
 *
 * Connections (shoal_conn_t) are allocated by the node, when it accepts one
 * or when shoal_node_connect() opens one; a shoal_conn_t pointer stays valid
 * until the conn's close callback has returned.
 */

typedef struct shoal_node_s shoal_node_t;
typedef struct shoal_conn_s shoal_conn_t;
typedef struct shoal__node_priv shoal__node_priv_t;

typedef void (*shoal_node_close_cb)(shoal_node_t *node);

/* Called when a connection opened by shoal_node_connect() is ready
 * (status 0) or failed (status < 0; conn is about to be freed). */
typedef void (*shoal_connect_cb)(shoal_conn_t *conn, int status, void *data);

/* Called once when a connection ends. status is 0 for an orderly close by
 * either side, else the error that ended it (e.g. SHOAL_EBADJSON when the
 * peer sent invalid JSON). The conn is freed after the callback returns. */
typedef void (*shoal_conn_close_cb)(shoal_conn_t *conn, int status,
                                    void *data);

/* Hooks a node calls on connection life-cycle events; every member may be
 * NULL. Several modules may watch one node (a supervisor and a
 * dispatcher): each registers its own set with shoal_node_add_hooks. They
 * run on the loop thread and may send on the connection. */
typedef struct {
    /* A connection was accepted on a listener. */
    void (*on_accept)(shoal_node_t *node, shoal_conn_t *conn, void *data);
    /* A peer said hello; desc is its description (an object in JSON or
     * MessagePack), borrowed for the duration of the call. */
    void (*on_hello)(shoal_node_t *node, shoal_conn_t *conn,
                     const shoal_payload_t *desc, void *data);
    /* Any connection ended (after its calls in flight were failed). */
    void (*on_conn_close)(shoal_node_t *node, shoal_conn_t *conn, int status,
                          void *data);
    /* Adds fields to this node's description (e.g. a supervisor's pool):
     * desc is a cJSON object the hook may add to. */
    void (*on_describe)(shoal_node_t *node, cJSON *desc, void *data);
    /* A peer sent an error message that answers no call (it refused a
     * tell or an event, or is about to close the connection): err is the
     * code, message its text. */
    void (*on_peer_error)(shoal_node_t *node, shoal_conn_t *conn, int err,
                          const char *message, void *data);
    /* shoal_node_close was called: stop starting new work. The other hooks
     * keep being called while the connections close, so what they use must
     * live until the node's close callback (or shoal_node_remove_hooks). */
    void (*on_close)(shoal_node_t *node, void *data);
    void *data;
} shoal_node_hooks_t;

typedef struct {
    const char *name;              /* NULL: random, like "node-3fa9c2" */
    shoal_limits_t limits;         /* zero fields take the defaults */
    shoal_framing_t framing;       /* for connections this node opens;
                                      UNKNOWN: MessagePack */
    size_t write_high_water_bytes; /* stop reading a peer whose replies
                                      wait past this; 0: 4 MiB */
    uint64_t linger_ms;            /* how long a failing connection may take
                                      to send its error; 0: 2000 */
} shoal_node_opts_t;

/* Counters a node keeps; also in its description under "counters". */
typedef struct {
    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t calls_served; /* calls answered by this node's apps */
    uint64_t calls_failed; /* ... with an error reply */
    uint64_t calls_made;   /* calls this node sent */
    uint64_t tells_in;
    uint64_t events_in;
    uint64_t errors; /* bad input, refused messages */
    uint64_t conns_accepted;
    uint64_t replies_dropped; /* replies whose caller had gone */
} shoal_node_counters_t;

struct shoal_node_s {
    void *data; /* the user's */
    /* private below */
    uv_loop_t *loop;
    shoal__node_priv_t *priv;
};

/* Prepares a node on loop. Copies what opts points to. Returns 0,
 * SHOAL_ENOMEM, SHOAL_EINVAL or SHOAL_ENAMETOOLONG (name). */
int shoal_node_init(uv_loop_t *loop, shoal_node_t *node,
                    const shoal_node_opts_t *opts);

/* Listens on url: "tcp://HOST:PORT" (PORT 0 picks a free port; HOST an
 * IPv4 or [IPv6] literal, "localhost" or "*") or "unix:///PATH" (a stale
 * socket file is replaced, a live one is EADDRINUSE; the file is created
 * mode 0600 and removed at close). Returns 0 or a negative code. */
int shoal_node_listen(shoal_node_t *node, const char *url);

/* Adds a set of hooks (copied). Sets run in the order they were added.
 * Returns 0 or SHOAL_ENOMEM. */
int shoal_node_add_hooks(shoal_node_t *node, const shoal_node_hooks_t *hooks);

/* Removes every hook set whose data is data. Returns 0 or
 * SHOAL_ENOTFOUND. */
int shoal_node_remove_hooks(shoal_node_t *node, void *data);

/* Keeps a connection to the node at url open, says hello on it (so the
 * other side knows this node's name and applications) and redials with
 * backoff (100 ms doubling to 5 s) whenever it drops, until the node
 * closes. Returns 0 or a negative code. */
int shoal_node_join(shoal_node_t *node, const char *url);

/* The node's name. */
const char *shoal_node_name(const shoal_node_t *node);

/* The number of addresses listened on, and the i-th as a URL with the
 * actual port ("tcp://127.0.0.1:40613"); NULL past the end. */
size_t shoal_node_address_count(const shoal_node_t *node);
const char *shoal_node_address(const shoal_node_t *node, size_t i);

/* A copy of the counters. */
void shoal_node_counters(const shoal_node_t *node, shoal_node_counters_t *out);

/* The node's description as a new cJSON object: name, address, addresses,
 * pid, applications, nodes, counters, load. Caller frees it. */
cJSON *shoal_node_describe(shoal_node_t *node);

/* Closes listeners, connections (calls in flight fail with
 * SHOAL_ECONNCLOSED, apps are closed), then calls cb. */
void shoal_node_close(shoal_node_t *node, shoal_node_close_cb cb);

/* ---- connections ---------------------------------------------------- */

typedef struct {
    shoal_framing_t framing; /* UNKNOWN: the node's default */
    bool hello;              /* send this node's hello on connect */
    shoal_conn_close_cb on_close;
    void *close_data;
} shoal_conn_opts_t;

/* Opens a connection to url (as in shoal_node_listen; TCP hosts may be
 * names). On success returns 0, stores the new conn in *out when out is not
 * NULL, and calls cb exactly once later with the outcome; calls, tells and
 * emits made before it completes are queued. On failure returns a negative
 * code and never calls cb. */
int shoal_node_connect(shoal_node_t *node, const char *url,
                       const shoal_conn_opts_t *opts, shoal_connect_cb cb,
                       void *data, shoal_conn_t **out);

/* The result of a call. status 0: result holds the result. Otherwise the
 * error: a code from the reply's error name (SHOAL_EREMOTE for names this
 * side does not know), SHOAL_ETIMEDOUT, or SHOAL_ECONNCLOSED when the
 * connection ended first; error then holds the remote {code, message}
 * object when there was one (absent for local failures), and message a
 * NUL-terminated text either way. Everything is borrowed for the duration
 * of the callback. */
typedef struct {
    int status;
    int64_t id;
    shoal_payload_t result;
    shoal_payload_t error;
    const char *message;
    const char *node; /* the node that answered ("" if unknown) */
} shoal_reply_t;

typedef void (*shoal_call_cb)(const shoal_reply_t *reply, void *data);

/* Calls app.action(args) on the peer. args is any value in either codec
 * (NULL: no args); it must be valid in its codec (values from the wire
 * are) and is encoded before this returns. timeout_ms 0 means none. Returns
 * 0 and later calls cb exactly once, or returns a negative code
 * (SHOAL_ECLOSING, SHOAL_ENAMETOOLONG, SHOAL_ENOMEM, a transcoding error)
 * and never calls cb. */
int shoal_conn_call(shoal_conn_t *conn, const char *app, const char *action,
                    const shoal_payload_t *args, uint64_t timeout_ms,
                    shoal_call_cb cb, void *data);

/* Sends a tell (no reply) to app on the peer. Returns 0 or a code. */
int shoal_conn_tell(shoal_conn_t *conn, const char *app,
                    const shoal_payload_t *msg);

/* Sends a named event with data (NULL: none). Returns 0 or a code. */
int shoal_conn_emit(shoal_conn_t *conn, const char *event,
                    const shoal_payload_t *data);

/* Asks the peer for its description; cb gets it as reply->result. */
int shoal_conn_describe(shoal_conn_t *conn, uint64_t timeout_ms,
                        shoal_call_cb cb, void *data);

/* Closes the connection after what is queued to it has been written. */
void shoal_conn_close(shoal_conn_t *conn);

/* Stops and restarts reading from the peer (for back-pressure across
 * connections). Pauses nest: reading resumes when every pause has been
 * resumed. */
void shoal_conn_pause(shoal_conn_t *conn);
void shoal_conn_resume(shoal_conn_t *conn);

/* Bytes queued to the peer and not yet written. */
size_t shoal_conn_write_queue_bytes(const shoal_conn_t *conn);

/* The peer's name once it said hello, else its address. */
const char *shoal_conn_peer_name(const shoal_conn_t *conn);
/* The peer's address ("tcp://127.0.0.1:5000", "unix:///tmp/s"). */
const char *shoal_conn_peer_address(const shoal_conn_t *conn);
/* The framing the connection speaks (UNKNOWN before the peer's first
 * byte on an accepted connection). */
shoal_framing_t shoal_conn_framing(const shoal_conn_t *conn);
/* Calls sent on this connection and not answered yet. */
size_t shoal_conn_calls_in_flight(const shoal_conn_t *conn);
/* The node the connection belongs to. */
shoal_node_t *shoal_conn_node(const shoal_conn_t *conn);

/* A user pointer per connection. */
void shoal_conn_set_data(shoal_conn_t *conn, void *data);
void *shoal_conn_data(const shoal_conn_t *conn);

/* ---- events --------------------------------------------------------- */

/* Called for an event that arrived on conn; data is borrowed. */
typedef void (*shoal_event_cb)(shoal_node_t *node, shoal_conn_t *conn,
                               const char *event, const shoal_payload_t *data,
                               void *user);

/* Registers cb for event name ("*" receives every event without a handler
 * of its own). A second registration for the same name replaces the
 * first. Returns 0 or a code. */
int shoal_node_on(shoal_node_t *node, const char *event, shoal_event_cb cb,
                  void *user);

#endif
