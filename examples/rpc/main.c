/* rpc: remote procedure calls over a Unix socket. A server hosts the app
 * "math": add answers at once, multiply one second later from a timer,
 * without holding up the node meanwhile.
 *
 *   rpc                starts a server in a child process, runs the client
 *   rpc serve URL...   serves "math"
 *   rpc client URL     calls multiply and add, prints each answer
 *
 * Prints
 *   add(1,2,3,4,5) = 15
 *   multiply(1,2,3,4,5) = 120
 * add comes first although it was called second: replies are matched to
 * calls by id, not by order. */
#include <cjson/cJSON.h>

#include "../common/example.h"

#define RPC_MULTIPLY_DELAY_MS 1000

/* ---- the server ------------------------------------------------------- */

/* Folds the numbers of the call's array into *out with + or *. */
static int rpc_fold(shoal_call_t *call, bool multiply, double *out)
{
    const cJSON *args = shoal_call_args_json(call);
    const cJSON *item;
    double acc = multiply ? 1 : 0;

    if (!cJSON_IsArray(args))
        return SHOAL_EBADTYPE;
    cJSON_ArrayForEach(item, args)
    {
        if (!cJSON_IsNumber(item))
            return SHOAL_EBADTYPE;
        acc = multiply ? acc * item->valuedouble : acc + item->valuedouble;
    }
    *out = acc;
    return 0;
}

static void rpc_reply_number(shoal_call_t *call, double value)
{
    char text[64];

    snprintf(text, sizeof(text), "%.17g", value);
    shoal_call_reply_json(call, text);
}

static void rpc_add(shoal_call_t *call, void *data)
{
    double sum;

    (void)data;
    if (rpc_fold(call, false, &sum) != 0) {
        shoal_call_fail(call, SHOAL_EBADTYPE, "add takes an array of numbers");
        return;
    }
    rpc_reply_number(call, sum);
}

/* A multiply waiting for its timer. */
typedef struct {
    uv_timer_t timer;
    shoal_call_t *call;
    double product;
} rpc_later_t;

static void rpc_later_close_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void rpc_later_cb(uv_timer_t *timer)
{
    rpc_later_t *later = timer->data;

    /* The call stayed valid while its handler was away: it is answered
     * now, exactly once. */
    rpc_reply_number(later->call, later->product);
    uv_close((uv_handle_t *)timer, rpc_later_close_cb);
}

static void rpc_multiply(shoal_call_t *call, void *data)
{
    rpc_later_t *later;
    double product;

    (void)data;
    if (rpc_fold(call, true, &product) != 0) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "multiply takes an array of numbers");
        return;
    }
    later = malloc(sizeof(*later));
    if (later == NULL) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    later->call = call;
    later->product = product;
    uv_timer_init(shoal_call_node(call)->loop, &later->timer);
    later->timer.data = later;
    uv_timer_start(&later->timer, rpc_later_cb, RPC_MULTIPLY_DELAY_MS, 0);
}

static const shoal_action_t rpc_actions[] = {
    {"add", rpc_add},
    {"multiply", rpc_multiply},
};

static int rpc_serve(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    shoal_app_opts_t app;
    shoal_node_t node;
    int err, status;

    if ((err = shoal_node_init(loop, &node, NULL)) != 0) {
        fprintf(stderr, "rpc: %s\n", shoal_strerror(err));
        return 2;
    }
    memset(&app, 0, sizeof(app));
    app.name = "math";
    app.description = "{\"summary\":\"add and multiply arrays of numbers\"}";
    app.actions = rpc_actions;
    app.n_actions = sizeof(rpc_actions) / sizeof(rpc_actions[0]);
    if ((err = shoal_node_add_app(&node, &app)) != 0) {
        fprintf(stderr, "rpc: %s\n", shoal_strerror(err));
        shoal_node_close(&node, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    status = example_serve(loop, &node, argc, argv);
    return uv_loop_close(loop) == 0 ? status : 2;
}

/* ---- the client ------------------------------------------------------- */

static const char rpc_args[] = "[1,2,3,4,5]";

typedef struct rpc_client rpc_client_t;

/* One call in flight: what to print when its answer comes. */
typedef struct {
    rpc_client_t *client;
    const char *action;
} rpc_request_t;

struct rpc_client {
    shoal_node_t node;
    rpc_request_t requests[2];
    int pending; /* calls not answered yet */
    int status;
    example_child_t *server; /* stopped once both answers are in */
};

static void rpc_client_closed_cb(shoal_node_t *node)
{
    rpc_client_t *c = node->data;

    if (c->server != NULL)
        example_stop_server(c->server);
}

static void rpc_reply_cb(const shoal_reply_t *reply, void *data)
{
    rpc_request_t *req = data;
    rpc_client_t *c = req->client;
    shoal_buf_t text;

    shoal_buf_init(&text);
    if (reply->status != 0) {
        fprintf(stderr, "rpc: %s: %s: %s\n", req->action,
                shoal_err_name(reply->status), reply->message);
        c->status = 1;
    } else if (shoal_wire_transcode(&reply->result, SHOAL_CODEC_JSON, &text) ==
               0) {
        /* "[1,2,3,4,5]" printed as "(1,2,3,4,5)" */
        printf("%s(%.*s) = %.*s\n", req->action, (int)(sizeof(rpc_args) - 3),
               rpc_args + 1, (int)text.len, text.base);
        fflush(stdout);
    } else {
        c->status = 1;
    }
    shoal_buf_free(&text);
    if (--c->pending == 0)
        shoal_node_close(&c->node, rpc_client_closed_cb);
}

static void rpc_connect_cb(shoal_conn_t *conn, int status, void *data)
{
    rpc_client_t *c = data;
    shoal_payload_t args = {rpc_args, sizeof(rpc_args) - 1, SHOAL_CODEC_JSON};
    /* multiply first: its answer still comes second. */
    static const char *const actions[] = {"multiply", "add"};

    if (status < 0) {
        fprintf(stderr, "rpc: cannot connect: %s\n", shoal_strerror(status));
        c->status = 2;
        shoal_node_close(&c->node, rpc_client_closed_cb);
        return;
    }
    for (int i = 0; i < 2; i++) {
        rpc_request_t *req = &c->requests[i];
        int err;

        req->client = c;
        req->action = actions[i];
        err = shoal_conn_call(conn, "math", actions[i], &args, 10000,
                              rpc_reply_cb, req);
        if (err) {
            fprintf(stderr, "rpc: %s: %s\n", actions[i], shoal_strerror(err));
            c->status = 2;
            shoal_conn_close(conn); /* fails the calls already made */
            break;
        }
        c->pending++;
    }
    if (c->pending == 0)
        shoal_node_close(&c->node, rpc_client_closed_cb);
}

/* Calls math on url; server (may be NULL) is stopped when it is done.
 * Returns the exit status. */
static int rpc_client(uv_loop_t *loop, const char *url,
                      example_child_t *server)
{
    rpc_client_t c;
    int err;

    memset(&c, 0, sizeof(c));
    c.server = server;
    /* No framing chosen: the node's default for connections it opens,
     * MessagePack. */
    if ((err = shoal_node_init(loop, &c.node, NULL)) != 0) {
        fprintf(stderr, "rpc: %s\n", shoal_strerror(err));
        if (server != NULL)
            example_stop_server(server);
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    c.node.data = &c;
    err = shoal_node_connect(&c.node, url, NULL, rpc_connect_cb, &c, NULL);
    if (err) {
        fprintf(stderr, "rpc: cannot connect to %s: %s\n", url,
                shoal_strerror(err));
        c.status = 2;
        shoal_node_close(&c.node, rpc_client_closed_cb);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return c.status;
}

/* ---- rpc with no arguments: a server child and the client ------------- */

int main(int argc, char **argv)
{
    int status;

    if (argc == 1)
        return example_demo("rpc", "math.sock", rpc_client);
    if (strcmp(argv[1], "serve") == 0)
        return rpc_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "client") == 0 && argc == 3) {
        status = rpc_client(uv_default_loop(), argv[2], NULL);
        return uv_loop_close(uv_default_loop()) == 0 ? status : 2;
    }
    fprintf(stderr, "usage: rpc\n"
                    "       rpc serve URL...\n"
                    "       rpc client URL\n");
    return 2;
}
