/* Joining: a node keeps a connection to another node (its supervisor) open,
 * says hello on it, and redials with backoff when it drops. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define JOIN_BACKOFF_FIRST_MS 100
#define JOIN_BACKOFF_MAX_MS 5000

typedef struct {
    shoal_node_t *node;
    char url[160];
    uv_timer_t timer;
    shoal_conn_t *conn;
    uint64_t backoff_ms;
    bool closing;
    bool timer_closed;
} join_t;

static void join_dial(join_t *join);

static void join_timer_cb(uv_timer_t *timer)
{
    join_dial(timer->data);
}

/* Freed when both the timer and the connection are gone, in whichever
 * order their close callbacks run. */
static void join_maybe_free(join_t *join)
{
    if (join->closing && join->timer_closed && join->conn == NULL)
        free(join);
}

static void join_retry(join_t *join)
{
    join->conn = NULL;
    if (join->closing) {
        join_maybe_free(join);
        return;
    }
    uv_timer_start(&join->timer, join_timer_cb, join->backoff_ms, 0);
    join->backoff_ms *= 2;
    if (join->backoff_ms > JOIN_BACKOFF_MAX_MS)
        join->backoff_ms = JOIN_BACKOFF_MAX_MS;
}

static void join_connected_cb(shoal_conn_t *conn, int status, void *data)
{
    join_t *join = data;

    (void)conn;
    if (status < 0) {
        join_retry(join);
        return;
    }
    join->backoff_ms = JOIN_BACKOFF_FIRST_MS;
}

static void join_closed_cb(shoal_conn_t *conn, int status, void *data)
{
    (void)conn;
    (void)status;
    join_retry(data);
}

static void join_dial(join_t *join)
{
    shoal_conn_opts_t opts;

    if (join->closing)
        return;
    memset(&opts, 0, sizeof(opts));
    opts.hello = true;
    opts.on_close = join_closed_cb;
    opts.close_data = join;
    if (shoal_node_connect(join->node, join->url, &opts, join_connected_cb,
                           join, &join->conn) != 0) {
        join->conn = NULL;
        join_retry(join);
    }
}

static void join_timer_close_cb(uv_handle_t *handle)
{
    join_t *join = handle->data;

    join->timer_closed = true;
    join_maybe_free(join);
}

/* The node is closing: stop redialling. */
static void join_on_close(shoal_node_t *node, void *data)
{
    join_t *join = data;

    (void)node;
    join->closing = true;
    uv_close((uv_handle_t *)&join->timer, join_timer_close_cb);
}

int shoal_node_join(shoal_node_t *node, const char *url)
{
    shoal_node_hooks_t hooks;
    join_t *join;
    int err;

    if (strlen(url) >= sizeof(join->url))
        return SHOAL_EBADURL;
    join = calloc(1, sizeof(*join));
    if (join == NULL)
        return SHOAL_ENOMEM;
    join->node = node;
    join->backoff_ms = JOIN_BACKOFF_FIRST_MS;
    strcpy(join->url, url);
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_close = join_on_close;
    hooks.data = join;
    err = shoal_node_add_hooks(node, &hooks);
    if (err) {
        free(join);
        return err;
    }
    uv_timer_init(node->loop, &join->timer);
    join->timer.data = join;
    join_dial(join);
    return 0;
}
