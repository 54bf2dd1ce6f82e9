/* Nodes: listeners, connections, routing of each message, calls in flight
 * and their deadlines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "url.h"

#define NODE_DEFAULT_HIGH_WATER_BYTES ((size_t)4 << 20)
#define NODE_DEFAULT_LINGER_MS 2000
#define NODE_LISTEN_BACKLOG 511

static void node_on_message(shoal_conn_t *conn, const shoal_envelope_t *env,
                            const shoal_frame_t *frame);
static void node_on_closed(shoal_conn_t *conn, int status);

static const shoal__conn_owner_t node_conn_owner = {
    .on_message = node_on_message,
    .on_closed = node_on_closed,
};

/* True when the sender waits for a reply to this message: calls and
 * describes carry an id their caller waits on. */
static bool node_expects_reply(const shoal_envelope_t *env)
{
    return env->has_id &&
           (env->type == SHOAL_MSG_CALL || env->type == SHOAL_MSG_DESCRIBE ||
            env->type == SHOAL_MSG_EVENT);
}

/* ---- init --------------------------------------------------------------- */

static void node_random_name(char *out, size_t len)
{
    unsigned char bytes[3];

    if (uv_random(NULL, NULL, bytes, sizeof(bytes), 0, NULL) != 0) {
        uint64_t t = uv_hrtime() ^ (uint64_t)uv_os_getpid();
        bytes[0] = (unsigned char)t;
        bytes[1] = (unsigned char)(t >> 8);
        bytes[2] = (unsigned char)(t >> 16);
    }
    snprintf(out, len, "node-%02x%02x%02x", bytes[0], bytes[1], bytes[2]);
}

int shoal_node_init(uv_loop_t *loop, shoal_node_t *node,
                    const shoal_node_opts_t *opts)
{
    shoal_node_opts_t none;
    shoal__node_priv_t *priv;

    if (opts == NULL) {
        memset(&none, 0, sizeof(none));
        opts = &none;
    }
    if (opts->name != NULL && strlen(opts->name) > SHOAL_MAX_NAME_BYTES)
        return SHOAL_ENAMETOOLONG;
    if (opts->name != NULL && opts->name[0] == '\0')
        return SHOAL_EINVAL;
    priv = calloc(1, sizeof(*priv));
    if (priv == NULL)
        return SHOAL_ENOMEM;
    node->loop = loop;
    node->priv = priv;
    if (opts->name)
        snprintf(priv->name, sizeof(priv->name), "%s", opts->name);
    else
        node_random_name(priv->name, sizeof(priv->name));
    shoal_limits_default(&priv->limits);
    if (opts->limits.max_frame_bytes)
        priv->limits.max_frame_bytes = opts->limits.max_frame_bytes;
    if (opts->limits.max_line_bytes)
        priv->limits.max_line_bytes = opts->limits.max_line_bytes;
    if (opts->limits.max_depth)
        priv->limits.max_depth = opts->limits.max_depth;
    if (priv->limits.max_depth > SHOAL_MAX_DEPTH_CAP)
        priv->limits.max_depth = SHOAL_MAX_DEPTH_CAP;
    priv->framing = opts->framing ? opts->framing : SHOAL_FRAMING_MSGPACK;
    priv->high_water = opts->write_high_water_bytes
                           ? opts->write_high_water_bytes
                           : NODE_DEFAULT_HIGH_WATER_BYTES;
    priv->linger_ms =
        opts->linger_ms ? opts->linger_ms : NODE_DEFAULT_LINGER_MS;
    shoal__flusher_init(loop, &priv->flusher);
    uv_timer_init(loop, &priv->timeout_timer);
    priv->timeout_timer.data = node;
    shoal__list_init(&priv->timeouts);
    shoal__list_init(&priv->conns);
    shoal__list_init(&priv->apps);
    shoal__list_init(&priv->handlers);
    priv->started_ms = uv_now(loop);
    return 0;
}

/* A removed set is emptied in place, never moved: hooks may be removed
 * from inside a hook while SHOAL__HOOKS walks the array. */
static bool node_hooks_empty(const shoal_node_hooks_t *h)
{
    return h->on_accept == NULL && h->on_hello == NULL &&
           h->on_conn_close == NULL && h->on_describe == NULL &&
           h->on_peer_error == NULL && h->on_close == NULL;
}

int shoal_node_add_hooks(shoal_node_t *node, const shoal_node_hooks_t *hooks)
{
    shoal__node_priv_t *priv = node->priv;
    shoal_node_hooks_t *grown;

    for (size_t i = 0; i < priv->n_hooks; i++)
        if (node_hooks_empty(&priv->hooks[i])) {
            priv->hooks[i] = *hooks;
            return 0;
        }
    grown = realloc(priv->hooks, (priv->n_hooks + 1) * sizeof(*grown));
    if (grown == NULL)
        return SHOAL_ENOMEM;
    grown[priv->n_hooks++] = *hooks;
    priv->hooks = grown;
    return 0;
}

int shoal_node_remove_hooks(shoal_node_t *node, void *data)
{
    shoal__node_priv_t *priv = node->priv;
    int err = SHOAL_ENOTFOUND;

    for (size_t i = 0; i < priv->n_hooks; i++)
        if (priv->hooks[i].data == data &&
            !node_hooks_empty(&priv->hooks[i])) {
            memset(&priv->hooks[i], 0, sizeof(priv->hooks[i]));
            err = 0;
        }
    return err;
}

const char *shoal_node_name(const shoal_node_t *node)
{
    return node->priv->name;
}

size_t shoal_node_address_count(const shoal_node_t *node)
{
    return node->priv->n_listeners;
}

const char *shoal_node_address(const shoal_node_t *node, size_t i)
{
    if (i >= node->priv->n_listeners)
        return NULL;
    return node->priv->listeners[i]->url;
}

void shoal_node_counters(const shoal_node_t *node, shoal_node_counters_t *out)
{
    *out = node->priv->counters;
}

/* ---- connections -------------------------------------------------------- */

static shoal_conn_t *node_conn_new(shoal_node_t *node)
{
    shoal__node_priv_t *priv = node->priv;
    shoal_conn_t *conn = malloc(sizeof(*conn));

    if (conn == NULL)
        return NULL;
    shoal__conn_setup(conn, node, &node_conn_owner, &priv->flusher,
                      &priv->limits, priv->high_water, priv->linger_ms);
    shoal__list_push(&priv->conns, &conn->node_link);
    return conn;
}

static void node_addr_string(const struct sockaddr_storage *ss, char *out,
                             size_t len)
{
    char ip[64] = "?";
    int port = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(out, len, "tcp://%s:%d", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(out, len, "tcp://[%s]:%d", ip, port);
    } else {
        snprintf(out, len, "unix://?");
    }
}

static void node_connection_cb(uv_stream_t *server, int status)
{
    shoal__listener_t *listener = server->data;
    shoal_node_t *node = listener->node;
    shoal_conn_t *conn;
    int err;

    if (status < 0 || node->priv->closing)
        return;
    conn = node_conn_new(node);
    if (conn == NULL)
        return; /* the peer stays in the backlog until memory returns */
    if (server->type == UV_TCP)
        err = uv_tcp_init(node->loop, &conn->h.tcp);
    else
        err = uv_pipe_init(node->loop, &conn->h.pipe, 0);
    if (err) {
        shoal__list_remove(&conn->node_link);
        free(conn);
        return;
    }
    conn->h.handle.data = conn;
    if (uv_accept(server, &conn->h.stream) != 0) {
        shoal__conn_fail(conn, UV_ECONNABORTED, NULL);
        return;
    }
    if (server->type == UV_TCP) {
        struct sockaddr_storage ss;
        int ss_len = sizeof(ss);
        if (uv_tcp_getpeername(&conn->h.tcp, (struct sockaddr *)&ss,
                               &ss_len) == 0)
            node_addr_string(&ss, conn->address, sizeof(conn->address));
    } else {
        snprintf(conn->address, sizeof(conn->address), "%s", listener->url);
    }
    node->priv->counters.conns_accepted++;
    shoal__conn_start(conn);
    SHOAL__HOOKS(node, on_accept, conn);
}

/* ---- listening ---------------------------------------------------------- */

/* A socket file nobody accepts on is stale and may be replaced; one that
 * answers belongs to a live node. */
static int node_unlink_stale_socket(const char *path)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode))
        return UV_EADDRINUSE;
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
    if (rc == 0)
        return UV_EADDRINUSE;
    if (unlink(path) != 0 && errno != ENOENT)
        return uv_translate_sys_error(errno);
    return 0;
}

static void node_listener_close_cb(uv_handle_t *handle)
{
    shoal__listener_t *listener = handle->data;

    free(listener);
}

static int node_listen_tcp(shoal_node_t *node, shoal__listener_t *listener,
                           const shoal_url_t *url)
{
    struct sockaddr_storage ss;
    int ss_len = sizeof(ss);
    const char *host = url->host;
    int err;

    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, url->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, url->port, (struct sockaddr_in6 *)&ss) != 0) {
        free(listener);
        return SHOAL_EBADURL;
    }
    err = uv_tcp_init(node->loop, &listener->h.tcp);
    if (err) {
        free(listener);
        return err;
    }
    listener->h.handle.data = listener;
    err = uv_tcp_bind(&listener->h.tcp, (struct sockaddr *)&ss, 0);
    if (err == 0)
        err = uv_listen(&listener->h.stream, NODE_LISTEN_BACKLOG,
                        node_connection_cb);
    if (err == 0)
        err = uv_tcp_getsockname(&listener->h.tcp, (struct sockaddr *)&ss,
                                 &ss_len);
    if (err) {
        uv_close(&listener->h.handle, node_listener_close_cb);
        return err;
    }
    node_addr_string(&ss, listener->url, sizeof(listener->url));
    return 0;
}

static int node_listen_unix(shoal_node_t *node, shoal__listener_t *listener,
                            const shoal_url_t *url)
{
    mode_t old_mask;
    int err;

    err = node_unlink_stale_socket(url->path);
    if (err == 0)
        err = uv_pipe_init(node->loop, &listener->h.pipe, 0);
    if (err) {
        free(listener);
        return err;
    }
    listener->h.handle.data = listener;
    /* Created 0600 from the start: a chmod after bind would leave a window
     * in which anyone could connect. */
    old_mask = umask(0177);
    err = uv_pipe_bind(&listener->h.pipe, url->path);
    umask(old_mask);
    if (err == 0)
        err = uv_listen(&listener->h.stream, NODE_LISTEN_BACKLOG,
                        node_connection_cb);
    if (err) {
        uv_close(&listener->h.handle, node_listener_close_cb);
        return err;
    }
    snprintf(listener->path, sizeof(listener->path), "%s", url->path);
    snprintf(listener->url, sizeof(listener->url), "unix://%s", url->path);
    return 0;
}

int shoal_node_listen(shoal_node_t *node, const char *url_text)
{
    shoal__node_priv_t *priv = node->priv;
    shoal__listener_t *listener, **grown;
    shoal_url_t url;
    int err;

    if (priv->closing)
        return SHOAL_ECLOSING;
    err = shoal__url_parse(url_text, &url);
    if (err)
        return err;
    grown = realloc(priv->listeners,
                    (priv->n_listeners + 1) * sizeof(*priv->listeners));
    if (grown == NULL)
        return SHOAL_ENOMEM;
    priv->listeners = grown;
    listener = calloc(1, sizeof(*listener));
    if (listener == NULL)
        return SHOAL_ENOMEM;
    listener->node = node;
    if (url.kind == SHOAL_URL_TCP)
        err = node_listen_tcp(node, listener, &url);
    else
        err = node_listen_unix(node, listener, &url);
    if (err)
        return err; /* the listener is freed already, or by its close
                       callback */
    priv->listeners[priv->n_listeners++] = listener;
    return 0;
}

/* ---- connecting --------------------------------------------------------- */

static void node_send_hello(shoal_conn_t *conn);

static void node_connect_done(shoal_conn_t *conn, int status)
{
    shoal_connect_cb cb = conn->connect_cb;
    void *data = conn->connect_data;

    conn->connect_cb = NULL;
    if (status < 0) {
        conn->close_status = status;
        shoal__conn_fail(conn, status, NULL);
        /* cb runs from node_on_closed, once the handle is closed. */
        conn->connect_cb = cb;
        return;
    }
    shoal__conn_start(conn);
    if (conn->send_hello)
        node_send_hello(conn);
    if (cb)
        cb(conn, 0, data);
}

static void node_connect_cb(uv_connect_t *req, int status)
{
    shoal_conn_t *conn = req->data;

    if (status == UV_ECANCELED)
        return; /* closed while connecting; node_on_closed reports it */
    node_connect_done(conn, status);
}

static int node_connect_addr(shoal_conn_t *conn, const struct sockaddr *sa)
{
    int err = uv_tcp_init(conn->node->loop, &conn->h.tcp);

    if (err)
        return err;
    conn->h.handle.data = conn;
    conn->connect_req.data = conn;
    err =
        uv_tcp_connect(&conn->connect_req, &conn->h.tcp, sa, node_connect_cb);
    if (err) {
        shoal__conn_fail(conn, err, NULL);
        return 0; /* reported through the close path */
    }
    return 0;
}

/* A connection that never got a handle (its name did not resolve) ends
 * here: the callback hears why, and the memory goes. */
static void node_conn_abandon(shoal_conn_t *conn, int status)
{
    shoal_node_t *node = conn->node;
    shoal_connect_cb cb = conn->connect_cb;

    shoal__list_remove(&conn->node_link);
    if (cb)
        cb(conn, status, conn->connect_data);
    free(conn);
    if (node->priv->closing)
        shoal__node_maybe_closed(node);
}

static void node_resolved_cb(uv_getaddrinfo_t *req, int status,
                             struct addrinfo *res)
{
    shoal_conn_t *conn = req->data;

    conn->resolve = NULL;
    free(req);
    if (status == 0 && conn->node->priv->closing)
        status = SHOAL_ECLOSING;
    if (status < 0) {
        uv_freeaddrinfo(res);
        node_conn_abandon(conn, status);
        return;
    }
    if (node_connect_addr(conn, res->ai_addr) != 0)
        node_conn_abandon(conn, UV_EINVAL);
    uv_freeaddrinfo(res);
}

int shoal_node_connect(shoal_node_t *node, const char *url_text,
                       const shoal_conn_opts_t *opts, shoal_connect_cb cb,
                       void *data, shoal_conn_t **out)
{
    struct sockaddr_storage ss;
    shoal_conn_t *conn;
    shoal_url_t url;
    int err;

    if (node->priv->closing)
        return SHOAL_ECLOSING;
    err = shoal__url_parse(url_text, &url);
    if (err)
        return err;
    conn = node_conn_new(node);
    if (conn == NULL)
        return SHOAL_ENOMEM;
    conn->outbound = true;
    conn->framing =
        opts && opts->framing ? opts->framing : node->priv->framing;
    conn->codec = shoal_framing_codec(conn->framing);
    conn->send_hello = opts ? opts->hello : false;
    conn->on_close = opts ? opts->on_close : NULL;
    conn->close_data = opts ? opts->close_data : NULL;
    conn->connect_cb = cb;
    conn->connect_data = data;
    snprintf(conn->address, sizeof(conn->address), "%s", url_text);
    snprintf(conn->connect_url, sizeof(conn->connect_url), "%s", url_text);

    if (url.kind == SHOAL_URL_UNIX) {
        err = uv_pipe_init(node->loop, &conn->h.pipe, 0);
        if (err) {
            shoal__list_remove(&conn->node_link);
            free(conn);
            return err;
        }
        conn->h.handle.data = conn;
        conn->connect_req.data = conn;
        uv_pipe_connect(&conn->connect_req, &conn->h.pipe, url.path,
                        node_connect_cb);
    } else if (uv_ip4_addr(url.host, url.port, (struct sockaddr_in *)&ss) ==
                   0 ||
               uv_ip6_addr(url.host, url.port, (struct sockaddr_in6 *)&ss) ==
                   0) {
        err = node_connect_addr(conn, (struct sockaddr *)&ss);
    } else {
        struct addrinfo hints;
        char port[8];

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%d", url.port);
        conn->resolve = malloc(sizeof(*conn->resolve));
        if (conn->resolve == NULL) {
            err = SHOAL_ENOMEM;
        } else {
            conn->resolve->data = conn;
            err = uv_getaddrinfo(node->loop, conn->resolve, node_resolved_cb,
                                 url.host, port, &hints);
            if (err) {
                free(conn->resolve);
                conn->resolve = NULL;
            }
        }
    }
    if (err) {
        shoal__list_remove(&conn->node_link);
        free(conn);
        return err;
    }
    if (out)
        *out = conn;
    return 0;
}

/* ---- calls this node makes ---------------------------------------------- */

static void node_timeout_cb(uv_timer_t *timer);

static void node_arm_timeout(shoal_node_t *node)
{
    shoal__node_priv_t *priv = node->priv;
    shoal__request_t *first;
    uint64_t now = shoal__now_ms(node);

    if (shoal__list_empty(&priv->timeouts)) {
        uv_timer_stop(&priv->timeout_timer);
        return;
    }
    first =
        SHOAL__CONTAINER(priv->timeouts.next, shoal__request_t, timeout_link);
    uv_timer_start(&priv->timeout_timer, node_timeout_cb,
                   first->deadline_ms > now ? first->deadline_ms - now : 0, 0);
}

/* Keeps the list ordered by deadline. Calls made with the same timeout
 * arrive in deadline order, so the walk from the tail is short. */
static void node_add_timeout(shoal_node_t *node, shoal__request_t *req)
{
    shoal__list_t *head = &node->priv->timeouts;
    shoal__list_t *pos = head->prev;
    bool first;

    while (pos != head &&
           SHOAL__CONTAINER(pos, shoal__request_t, timeout_link)->deadline_ms >
               req->deadline_ms)
        pos = pos->prev;
    req->timeout_link.prev = pos;
    req->timeout_link.next = pos->next;
    pos->next->prev = &req->timeout_link;
    pos->next = &req->timeout_link;
    first = head->next == &req->timeout_link;
    if (first)
        node_arm_timeout(node);
}

/* Ends a request: frees shoal's part, then calls the user's callback. */
static void node_finish_request(shoal__request_t *req, shoal_reply_t *reply)
{
    shoal_call_cb cb = req->cb;
    void *data = req->data;

    shoal__list_remove(&req->timeout_link);
    free(req);
    reply->message = reply->message ? reply->message : "";
    reply->node = reply->node ? reply->node : "";
    if (cb)
        cb(reply, data);
}

static void node_fail_request(shoal__request_t *req, int status)
{
    shoal_reply_t reply;

    memset(&reply, 0, sizeof(reply));
    reply.status = status;
    reply.id = req->id;
    reply.message = shoal_strerror(status);
    node_finish_request(req, &reply);
}

static void node_timeout_cb(uv_timer_t *timer)
{
    shoal_node_t *node = timer->data;
    shoal__node_priv_t *priv = node->priv;
    uint64_t now = shoal__now_ms(node);
    /* Bounded: only the requests that are due now. */
    while (!shoal__list_empty(&priv->timeouts)) {
        shoal__request_t *req = SHOAL__CONTAINER(
            priv->timeouts.next, shoal__request_t, timeout_link);
        if (req->deadline_ms > now)
            break;
        shoal__map_del(&req->conn->calls_out, (uint64_t)req->id);
        node_fail_request(req, SHOAL_ETIMEDOUT);
    }
    node_arm_timeout(node);
}

static int node_start_request(shoal_conn_t *conn, shoal_envelope_t *env,
                              uint64_t timeout_ms, shoal_call_cb cb,
                              void *data)
{
    shoal_node_t *node = conn->node;
    shoal__request_t *req;
    int err;

    if (shoal__conn_closing(conn))
        return SHOAL_ECLOSING;
    req = malloc(sizeof(*req));
    if (req == NULL)
        return SHOAL_ENOMEM;
    req->conn = conn;
    req->id = conn->next_id++;
    req->cb = cb;
    req->data = data;
    req->deadline_ms = 0;
    shoal__list_init(&req->timeout_link);
    env->has_id = true;
    env->id = req->id;
    err = shoal__map_put(&conn->calls_out, (uint64_t)req->id, req);
    if (err == 0) {
        err = shoal__conn_send(conn, env);
        if (err)
            shoal__map_del(&conn->calls_out, (uint64_t)req->id);
    }
    if (err) {
        free(req);
        return err;
    }
    node->priv->counters.calls_made++;
    if (timeout_ms > 0) {
        req->deadline_ms = shoal__now_ms(node) + timeout_ms;
        node_add_timeout(node, req);
    }
    return 0;
}

static int node_set_name(shoal_name_t *name, const char *s)
{
    size_t len;

    if (s == NULL)
        return SHOAL_EINVAL;
    len = strlen(s);
    if (len > SHOAL_MAX_NAME_BYTES)
        return SHOAL_ENAMETOOLONG;
    name->present = true;
    name->len = (uint8_t)len;
    memcpy(name->s, s, len + 1);
    return 0;
}

int shoal_conn_call(shoal_conn_t *conn, const char *app, const char *action,
                    const shoal_payload_t *args, uint64_t timeout_ms,
                    shoal_call_cb cb, void *data)
{
    shoal_envelope_t env;
    int err;

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_CALL;
    if ((err = node_set_name(&env.app, app)) ||
        (err = node_set_name(&env.action, action)))
        return err;
    if (args)
        env.args = *args;
    return node_start_request(conn, &env, timeout_ms, cb, data);
}

int shoal_conn_describe(shoal_conn_t *conn, uint64_t timeout_ms,
                        shoal_call_cb cb, void *data)
{
    shoal_envelope_t env;

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_DESCRIBE;
    return node_start_request(conn, &env, timeout_ms, cb, data);
}

int shoal_conn_tell(shoal_conn_t *conn, const char *app,
                    const shoal_payload_t *msg)
{
    shoal_envelope_t env;
    int err;

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_TELL;
    if ((err = node_set_name(&env.app, app)))
        return err;
    if (msg)
        env.msg = *msg;
    return shoal__conn_send(conn, &env);
}

int shoal_conn_emit(shoal_conn_t *conn, const char *event,
                    const shoal_payload_t *data)
{
    shoal_envelope_t env;
    int err;

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_EVENT;
    if ((err = node_set_name(&env.event, event)))
        return err;
    if (data)
        env.data = *data;
    return shoal__conn_send(conn, &env);
}

/* An error message without an id: the peer refused something that had no
 * reply to carry the refusal (a tell, an event) or is about to close. */
static void node_on_peer_error(shoal_conn_t *conn, const shoal_envelope_t *env)
{
    shoal_name_t code;
    char message[512];
    int err;

    if (env->error.data == NULL)
        return;
    err =
        shoal_wire_decode_error(&env->error, &code, message, sizeof(message));
    SHOAL__HOOKS(conn->node, on_peer_error, conn, err, message);
}

/* A reply (or an error message with an id) to a call this node made. */
static void node_on_reply(shoal_conn_t *conn, const shoal_envelope_t *env)
{
    shoal__request_t *req;
    shoal_reply_t reply;
    shoal_name_t code;
    char message[512];

    if (!env->has_id)
        return;
    req = shoal__map_del(&conn->calls_out, (uint64_t)env->id);
    if (req == NULL) {
        /* Late (after its timeout) or never asked: nothing waits. */
        conn->node->priv->counters.replies_dropped++;
        return;
    }
    memset(&reply, 0, sizeof(reply));
    reply.id = env->id;
    reply.node = env->from.present ? env->from.s : conn->peer_name;
    if (env->error.data != NULL) {
        reply.error = env->error;
        reply.status = shoal_wire_decode_error(&env->error, &code, message,
                                               sizeof(message));
        reply.message = message;
    } else {
        reply.result = env->result;
        reply.message = "";
    }
    node_finish_request(req, &reply);
}

/* ---- descriptions and hello --------------------------------------------- */

static int node_send_json(shoal_conn_t *conn, shoal_envelope_t *env,
                          shoal_payload_t *slot, const cJSON *json)
{
    shoal_buf_t buf;
    int err;

    shoal_buf_init(&buf);
    err = shoal_payload_from_cjson(
        json, conn->codec ? conn->codec : SHOAL_CODEC_JSON, &buf);
    if (err == 0) {
        slot->data = buf.base;
        slot->len = buf.len;
        slot->codec = conn->codec ? conn->codec : SHOAL_CODEC_JSON;
        err = shoal__conn_send(conn, env);
    }
    shoal_buf_free(&buf);
    return err;
}

static void node_send_hello(shoal_conn_t *conn)
{
    shoal_envelope_t env;
    cJSON *desc = shoal_node_describe(conn->node);

    if (desc == NULL)
        return;
    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_HELLO;
    node_set_name(&env.from, conn->node->priv->name);
    node_send_json(conn, &env, &env.node, desc);
    cJSON_Delete(desc);
}

static void node_on_hello(shoal_conn_t *conn, const shoal_envelope_t *env)
{
    shoal_node_t *node = conn->node;
    const char *name = env->from.present ? env->from.s : NULL;
    const char *address;
    cJSON *desc = NULL;

    if (env->node.data != NULL)
        desc = shoal_payload_to_cjson(&env->node);
    if (name == NULL)
        name = cJSON_GetStringValue(cJSON_GetObjectItem(desc, "name"));
    if (name != NULL && strlen(name) <= SHOAL_MAX_NAME_BYTES) {
        snprintf(conn->peer_name, sizeof(conn->peer_name), "%s", name);
        conn->peer_named = true;
    }
    /* Where the peer can be reached, as it says: the socket's own address
     * is an ephemeral port, or our listener for a Unix socket. */
    address = cJSON_GetStringValue(cJSON_GetObjectItem(desc, "address"));
    if (address != NULL)
        snprintf(conn->peer_listen, sizeof(conn->peer_listen), "%s", address);
    cJSON_Delete(desc);
    /* The side that opened the connection speaks first; answer it. */
    if (!conn->outbound)
        node_send_hello(conn);
    if (!shoal__conn_closing(conn))
        SHOAL__HOOKS(node, on_hello, conn, &env->node);
}

static void node_on_describe(shoal_conn_t *conn, const shoal_envelope_t *env)
{
    shoal_envelope_t reply;
    cJSON *desc;

    if (!env->has_id) {
        shoal__conn_send_error(conn, false, 0, "EBADMSG",
                               "describe needs an id");
        return;
    }
    desc = shoal_node_describe(conn->node);
    if (desc == NULL) {
        shoal__conn_send_error(conn, true, env->id, "ENOMEM", "out of memory");
        return;
    }
    shoal_envelope_init(&reply);
    reply.type = SHOAL_MSG_REPLY;
    reply.has_id = true;
    reply.id = env->id;
    node_set_name(&reply.from, conn->node->priv->name);
    node_send_json(conn, &reply, &reply.result, desc);
    cJSON_Delete(desc);
}

/* ---- events ------------------------------------------------------------- */

int shoal_node_on(shoal_node_t *node, const char *event, shoal_event_cb cb,
                  void *user)
{
    shoal__event_handler_t *h;
    shoal__list_t *pos;

    if (event == NULL || cb == NULL)
        return SHOAL_EINVAL;
    if (strlen(event) > SHOAL_MAX_NAME_BYTES)
        return SHOAL_ENAMETOOLONG;
    for (pos = node->priv->handlers.next; pos != &node->priv->handlers;
         pos = pos->next) {
        h = SHOAL__CONTAINER(pos, shoal__event_handler_t, link);
        if (strcmp(h->name, event) == 0) {
            h->cb = cb;
            h->user = user;
            return 0;
        }
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return SHOAL_ENOMEM;
    snprintf(h->name, sizeof(h->name), "%s", event);
    h->cb = cb;
    h->user = user;
    shoal__list_push(&node->priv->handlers, &h->link);
    return 0;
}

static void node_on_event(shoal_conn_t *conn, const shoal_envelope_t *env)
{
    shoal_node_t *node = conn->node;
    shoal__event_handler_t *match = NULL, *any = NULL;
    shoal__list_t *pos;

    node->priv->counters.events_in++;
    if (!env->event.present) {
        shoal__conn_send_error(conn, node_expects_reply(env), env->id,
                               "EBADMSG", "event needs an \"event\" name");
        return;
    }
    for (pos = node->priv->handlers.next; pos != &node->priv->handlers;
         pos = pos->next) {
        shoal__event_handler_t *h =
            SHOAL__CONTAINER(pos, shoal__event_handler_t, link);
        if (strcmp(h->name, env->event.s) == 0)
            match = h;
        else if (strcmp(h->name, "*") == 0)
            any = h;
    }
    if (match == NULL)
        match = any;
    /* Like socket.io, an event nobody listens to is dropped. */
    if (match)
        match->cb(node, conn, env->event.s, &env->data, match->user);
}

/* ---- routing ------------------------------------------------------------ */

/* Every decoded message passes here. Forwarding to other nodes will be a
 * step of its own before the switch, on env->to. */
static void node_on_message(shoal_conn_t *conn, const shoal_envelope_t *env,
                            const shoal_frame_t *frame)
{
    shoal_node_t *node = conn->node;
    char detail[SHOAL_MAX_NAME_BYTES + 64];

    (void)frame;
    if (env->to.present && strcmp(env->to.s, node->priv->name) != 0) {
        node->priv->counters.errors++;
        snprintf(detail, sizeof(detail), "no route to node '%s'", env->to.s);
        shoal__conn_send_error(conn, node_expects_reply(env), env->id,
                               "ENOROUTE", detail);
        return;
    }
    switch (env->type) {
    case SHOAL_MSG_CALL:
        shoal__app_serve_call(node, conn, env);
        break;
    case SHOAL_MSG_TELL:
        shoal__app_serve_tell(node, conn, env);
        break;
    case SHOAL_MSG_REPLY:
        node_on_reply(conn, env);
        break;
    case SHOAL_MSG_EVENT:
        node_on_event(conn, env);
        break;
    case SHOAL_MSG_HELLO:
        node_on_hello(conn, env);
        break;
    case SHOAL_MSG_DESCRIBE:
        node_on_describe(conn, env);
        break;
    case SHOAL_MSG_ERROR:
        /* A peer's complaint about something this node sent. With an id
         * it answers a call; otherwise it is counted. */
        if (env->has_id) {
            node_on_reply(conn, env);
        } else {
            node->priv->counters.errors++;
            node_on_peer_error(conn, env);
        }
        break;
    default:
        node->priv->counters.errors++;
        snprintf(detail, sizeof(detail), "unknown message type '%s'",
                 env->type_name.s);
        shoal__conn_send_error(conn, env->has_id, env->id, "EBADMSG", detail);
        break;
    }
}

/* ---- closing ------------------------------------------------------------ */

static void node_on_closed(shoal_conn_t *conn, int status)
{
    shoal_node_t *node = conn->node;
    shoal__node_priv_t *priv = node->priv;
    shoal_connect_cb connect_cb = conn->connect_cb;

    shoal__list_remove(&conn->node_link);
    shoal__app_detach_calls(conn);
    /* Calls in flight on this connection fail: nothing answers them now.
     * Each is removed from the map before its callback runs. */
    while (conn->calls_out.count > 0) {
        shoal__request_t *req = NULL;
        for (size_t i = 0; i <= conn->calls_out.mask; i++)
            if (conn->calls_out.values[i] != NULL) {
                req = conn->calls_out.values[i];
                break;
            }
        shoal__map_del(&conn->calls_out, (uint64_t)req->id);
        node_fail_request(req, SHOAL_ECONNCLOSED);
    }
    shoal__map_free(&conn->calls_out);
    if (connect_cb) {
        conn->connect_cb = NULL;
        connect_cb(conn, status < 0 ? status : SHOAL_ECONNCLOSED,
                   conn->connect_data);
    } else {
        if (conn->on_close)
            conn->on_close(conn, status, conn->close_data);
        SHOAL__HOOKS(node, on_conn_close, conn, status);
    }
    free(conn);
    if (priv->closing)
        shoal__node_maybe_closed(node);
}

static void node_handle_closed_cb(uv_handle_t *handle)
{
    shoal_node_t *node = handle->data;

    node->priv->pending_closes--;
    shoal__node_maybe_closed(node);
}

static void node_listener_closed_cb(uv_handle_t *handle)
{
    shoal__listener_t *listener = handle->data;
    shoal_node_t *node = listener->node;

    free(listener);
    node->priv->pending_closes--;
    shoal__node_maybe_closed(node);
}

void shoal__node_maybe_closed(shoal_node_t *node)
{
    shoal__node_priv_t *priv = node->priv;
    shoal_node_close_cb cb;

    /* Calls still being served (a timer, the thread pool) answer into a
     * closed connection, but they need the node until they do. */
    if (priv->pending_closes > 0 || !shoal__list_empty(&priv->conns) ||
        priv->calls_serving > 0)
        return;
    if (!priv->closing)
        return;
    if (!uv_is_closing((uv_handle_t *)&priv->flusher.prepare)) {
        /* Connections are gone: the last handles can go. */
        priv->pending_closes += 2;
        priv->flusher.prepare.data = node;
        shoal__flusher_close(&priv->flusher, node_handle_closed_cb);
        uv_close((uv_handle_t *)&priv->timeout_timer, node_handle_closed_cb);
        return;
    }
    while (!shoal__list_empty(&priv->handlers)) {
        shoal__list_t *item = priv->handlers.next;
        shoal__list_remove(item);
        free(SHOAL__CONTAINER(item, shoal__event_handler_t, link));
    }
    free(priv->listeners);
    free(priv->hooks);
    cb = priv->close_cb;
    free(priv);
    node->priv = NULL;
    if (cb)
        cb(node);
}

void shoal_node_close(shoal_node_t *node, shoal_node_close_cb cb)
{
    shoal__node_priv_t *priv = node->priv;
    shoal__list_t *pos, *next;

    if (priv->closing)
        return;
    priv->closing = true;
    priv->close_cb = cb;
    SHOAL__HOOKS_NOARGS(node, on_close);
    for (size_t i = 0; i < priv->n_listeners; i++) {
        shoal__listener_t *listener = priv->listeners[i];
        if (listener->path[0])
            unlink(listener->path);
        priv->pending_closes++;
        listener->h.handle.data = listener;
        uv_close(&listener->h.handle, node_listener_closed_cb);
    }
    priv->n_listeners = 0;
    shoal__app_close_all(node);
    for (pos = priv->conns.next; pos != &priv->conns; pos = next) {
        shoal_conn_t *conn = SHOAL__CONTAINER(pos, shoal_conn_t, node_link);
        next = pos->next;
        if (conn->resolve != NULL)
            uv_cancel((uv_req_t *)conn->resolve);
        else
            shoal__conn_end(conn, SHOAL_ECONNCLOSED);
    }
    shoal__node_maybe_closed(node);
}
