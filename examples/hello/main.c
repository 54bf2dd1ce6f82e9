/* hello: a greeting service over json-socket framing, and a client that
 * picks one of several servers by the hash of the name it greets.
 *
 *   hello                         starts two servers, greets James, stops
 *   hello serve URL...            serves app "hello", action "greet"
 *   hello greet NAME URL1 URL2... calls greet {"name": NAME} on one server
 *
 * The server is chosen as index = FNV-1a(NAME) mod n: the same name always
 * lands on the same server. Prints the greeting ("Hello James"). */
#include <cjson/cJSON.h>

#include "../common/example.h"

/* ---- the server ------------------------------------------------------- */

/* greet {"name": "James"} -> "Hello James" */
static void hello_greet(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);
    const char *name =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "name"));
    cJSON *greeting;
    char *text;

    (void)data;
    if (name == NULL) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "greet takes {\"name\": string}");
        return;
    }
    text = malloc(strlen(name) + sizeof("Hello "));
    if (text == NULL) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    sprintf(text, "Hello %s", name);
    greeting = cJSON_CreateString(text);
    shoal_call_reply_cjson(call, greeting);
    cJSON_Delete(greeting);
    free(text);
}

static const shoal_action_t hello_actions[] = {
    {"greet", hello_greet},
};

static int hello_serve(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    shoal_app_opts_t app;
    shoal_node_t node;
    int err, status;

    if ((err = shoal_node_init(loop, &node, NULL)) != 0) {
        fprintf(stderr, "hello: %s\n", shoal_strerror(err));
        return 2;
    }
    memset(&app, 0, sizeof(app));
    app.name = "hello";
    app.description = "{\"summary\":\"greet {name} answers Hello <name>\"}";
    app.actions = hello_actions;
    app.n_actions = 1;
    if ((err = shoal_node_add_app(&node, &app)) != 0) {
        fprintf(stderr, "hello: %s\n", shoal_strerror(err));
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
    const char *name;
    int status;
    example_child_t *servers; /* stopped once the answer is in */
    size_t n_servers;
} hello_client_t;

/* FNV-1a, 32 bits: a stable hash, so a name keeps its server. */
static uint32_t hello_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void hello_client_closed_cb(shoal_node_t *node)
{
    hello_client_t *c = node->data;

    for (size_t i = 0; i < c->n_servers; i++)
        example_stop_server(&c->servers[i]);
}

static void hello_reply_cb(const shoal_reply_t *reply, void *data)
{
    hello_client_t *c = data;
    cJSON *result;

    if (reply->status != 0) {
        fprintf(stderr, "hello: %s: %s\n", shoal_err_name(reply->status),
                reply->message);
        c->status = 1;
    } else {
        result = shoal_payload_to_cjson(&reply->result);
        if (cJSON_IsString(result)) {
            printf("%s\n", cJSON_GetStringValue(result));
        } else {
            fprintf(stderr, "hello: the answer is not a string\n");
            c->status = 1;
        }
        cJSON_Delete(result);
    }
    shoal_node_close(&c->node, hello_client_closed_cb);
}

static void hello_connect_cb(shoal_conn_t *conn, int status, void *data)
{
    hello_client_t *c = data;
    shoal_payload_t args;
    cJSON *json;
    char *text;
    int err;

    if (status < 0) {
        fprintf(stderr, "hello: cannot connect: %s\n", shoal_strerror(status));
        c->status = 2;
        shoal_node_close(&c->node, hello_client_closed_cb);
        return;
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "name", c->name);
    text = cJSON_PrintUnformatted(json);
    args.data = text;
    args.len = strlen(text);
    args.codec = SHOAL_CODEC_JSON;
    /* args are encoded before this returns: they can go right after. */
    err = shoal_conn_call(conn, "hello", "greet", &args, 10000, hello_reply_cb,
                          c);
    cJSON_free(text);
    cJSON_Delete(json);
    if (err) {
        fprintf(stderr, "hello: %s\n", shoal_strerror(err));
        c->status = 2;
        shoal_node_close(&c->node, hello_client_closed_cb);
    }
}

/* Greets name on one of urls[0, n); servers (may be NULL) are stopped
 * when it is done. Returns the exit status. */
static int hello_greet_on(uv_loop_t *loop, const char *name, char **urls,
                          size_t n, example_child_t *servers, size_t n_servers)
{
    hello_client_t c;
    shoal_conn_opts_t copts;
    size_t index = hello_hash(name) % n;
    int err;

    memset(&c, 0, sizeof(c));
    c.name = name;
    c.servers = servers;
    c.n_servers = n_servers;
    if ((err = shoal_node_init(loop, &c.node, NULL)) != 0) {
        fprintf(stderr, "hello: %s\n", shoal_strerror(err));
        for (size_t i = 0; i < n_servers; i++)
            example_stop_server(&servers[i]);
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    c.node.data = &c;
    memset(&copts, 0, sizeof(copts));
    copts.framing = SHOAL_FRAMING_JSONSOCKET;
    err = shoal_node_connect(&c.node, urls[index], &copts, hello_connect_cb,
                             &c, NULL);
    if (err) {
        fprintf(stderr, "hello: cannot connect to %s: %s\n", urls[index],
                shoal_strerror(err));
        c.status = 2;
        shoal_node_close(&c.node, hello_client_closed_cb);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return c.status;
}

/* ---- hello with no arguments: two servers, one greeting --------------- */

static int hello_demo(void)
{
    uv_loop_t *loop = uv_default_loop();
    example_child_t servers[2];
    char dir[256], a[300], b[300];
    char *urls[] = {a, b};
    size_t started = 0;
    int err, status = 2;

    if ((err = example_make_dir(dir, sizeof(dir), "hello")) != 0) {
        fprintf(stderr, "hello: mkdtemp: %s\n", shoal_strerror(err));
        return 2;
    }
    snprintf(a, sizeof(a), "unix://%s/a.sock", dir);
    snprintf(b, sizeof(b), "unix://%s/b.sock", dir);
    for (; started < 2; started++) {
        err = example_start_server(loop, &servers[started], urls[started]);
        if (err) {
            fprintf(stderr, "hello: server on %s: %s\n", urls[started],
                    shoal_strerror(err));
            break;
        }
    }
    if (started == 2) {
        status = hello_greet_on(loop, "James", urls, 2, servers, 2);
    } else {
        for (size_t i = 0; i < started; i++)
            example_stop_server(&servers[i]);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    rmdir(dir);
    return uv_loop_close(loop) == 0 ? status : 2;
}

int main(int argc, char **argv)
{
    if (argc == 1)
        return hello_demo();
    if (strcmp(argv[1], "serve") == 0)
        return hello_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "greet") == 0 && argc >= 4) {
        int status = hello_greet_on(uv_default_loop(), argv[2], argv + 3,
                                    (size_t)(argc - 3), NULL, 0);
        return uv_loop_close(uv_default_loop()) == 0 ? status : 2;
    }
    fprintf(stderr, "usage: hello\n"
                    "       hello serve URL...\n"
                    "       hello greet NAME URL1 [URL2...]\n");
    return 2;
}
