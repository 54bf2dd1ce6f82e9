/* events: named events both ways on one connection, in NDJSON. The server
 * listens for "sum" and answers each with a "result" event on the
 * connection it came from; the client emits "sum" with [1,2,3,4] and
 * prints the result.
 *
 *   events              starts a server in a child process, runs the client
 *   events serve URL... serves the "sum" event
 *   events client URL   emits sum [1,2,3,4], waits for "result"
 *
 * Prints
 *   result 10 */
#include <cjson/cJSON.h>

#include "../common/example.h"

/* ---- the server ------------------------------------------------------- */

static void events_on_sum(shoal_node_t *node, shoal_conn_t *conn,
                          const char *event, const shoal_payload_t *data,
                          void *user)
{
    cJSON *numbers = shoal_payload_to_cjson(data);
    const cJSON *item;
    shoal_payload_t result;
    double sum = 0;
    char text[64];

    (void)node;
    (void)event;
    (void)user;
    cJSON_ArrayForEach(item, numbers)
    {
        if (cJSON_IsNumber(item))
            sum += item->valuedouble;
    }
    cJSON_Delete(numbers);
    snprintf(text, sizeof(text), "%.17g", sum);
    result.data = text;
    result.len = strlen(text);
    result.codec = SHOAL_CODEC_JSON;
    /* Back on the connection the event came from, in its framing. */
    shoal_conn_emit(conn, "result", &result);
}

static int events_serve(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    shoal_node_t node;
    int err, status;

    if ((err = shoal_node_init(loop, &node, NULL)) != 0) {
        fprintf(stderr, "events: %s\n", shoal_strerror(err));
        return 2;
    }
    if ((err = shoal_node_on(&node, "sum", events_on_sum, NULL)) != 0) {
        fprintf(stderr, "events: %s\n", shoal_strerror(err));
        shoal_node_close(&node, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    status = example_serve(loop, &node, argc, argv);
    return uv_loop_close(loop) == 0 ? status : 2;
}

/* ---- the client ------------------------------------------------------- */

typedef struct {
    shoal_node_t node;
    int status;
    example_child_t *server; /* stopped once the result is in */
} events_client_t;

static void events_client_closed_cb(shoal_node_t *node)
{
    events_client_t *c = node->data;

    if (c->server != NULL)
        example_stop_server(c->server);
}

static void events_on_result(shoal_node_t *node, shoal_conn_t *conn,
                             const char *event, const shoal_payload_t *data,
                             void *user)
{
    events_client_t *c = user;
    shoal_buf_t text;

    (void)conn;
    shoal_buf_init(&text);
    if (data->data != NULL &&
        shoal_wire_transcode(data, SHOAL_CODEC_JSON, &text) == 0) {
        printf("%s %.*s\n", event, (int)text.len, text.base);
        c->status = 0;
    }
    shoal_buf_free(&text);
    shoal_node_close(node, events_client_closed_cb);
}

/* The connection ended before a result came. */
static void events_conn_closed_cb(shoal_conn_t *conn, int status, void *data)
{
    events_client_t *c = data;

    (void)conn;
    if (c->status != 0) {
        fprintf(stderr, "events: connection closed before the result: %s\n",
                status ? shoal_strerror(status) : "by the server");
        shoal_node_close(&c->node, events_client_closed_cb);
    }
}

static void events_connect_cb(shoal_conn_t *conn, int status, void *data)
{
    events_client_t *c = data;
    static const char numbers[] = "[1,2,3,4]";
    shoal_payload_t payload = {numbers, sizeof(numbers) - 1, SHOAL_CODEC_JSON};
    int err;

    if (status < 0) {
        fprintf(stderr, "events: cannot connect: %s\n",
                shoal_strerror(status));
        c->status = 2;
        shoal_node_close(&c->node, events_client_closed_cb);
        return;
    }
    if ((err = shoal_conn_emit(conn, "sum", &payload)) != 0) {
        fprintf(stderr, "events: %s\n", shoal_strerror(err));
        c->status = 2;
        shoal_node_close(&c->node, events_client_closed_cb);
    }
}

/* Emits sum on url and waits for the result; server (may be NULL) is
 * stopped when it is done. Returns the exit status. */
static int events_client(uv_loop_t *loop, const char *url,
                         example_child_t *server)
{
    events_client_t c;
    shoal_conn_opts_t copts;
    int err;

    memset(&c, 0, sizeof(c));
    c.status = 1; /* until the result comes */
    c.server = server;
    if ((err = shoal_node_init(loop, &c.node, NULL)) != 0) {
        fprintf(stderr, "events: %s\n", shoal_strerror(err));
        if (server != NULL)
            example_stop_server(server);
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    c.node.data = &c;
    /* Events arrive at the node, whichever connection brings them. */
    err = shoal_node_on(&c.node, "result", events_on_result, &c);
    if (err == 0) {
        memset(&copts, 0, sizeof(copts));
        copts.framing = SHOAL_FRAMING_NDJSON;
        copts.on_close = events_conn_closed_cb;
        copts.close_data = &c;
        err = shoal_node_connect(&c.node, url, &copts, events_connect_cb, &c,
                                 NULL);
    }
    if (err) {
        fprintf(stderr, "events: %s: %s\n", url, shoal_strerror(err));
        shoal_node_close(&c.node, events_client_closed_cb);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return c.status;
}

/* ---- events with no arguments: a server child and the client ---------- */

int main(int argc, char **argv)
{
    int status;

    if (argc == 1)
        return example_demo("events", "events.sock", events_client);
    if (strcmp(argv[1], "serve") == 0)
        return events_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "client") == 0 && argc == 3) {
        status = events_client(uv_default_loop(), argv[2], NULL);
        return uv_loop_close(uv_default_loop()) == 0 ? status : 2;
    }
    fprintf(stderr, "usage: events\n"
                    "       events serve URL...\n"
                    "       events client URL\n");
    return 2;
}
