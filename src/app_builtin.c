/* Applications compiled into shoal, for tests, benchmarks and trying things
 * out from the shell: echo, sum, sleep, fail, crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- echo: answers with its arguments, counts tells -----------------------
 */

typedef struct {
    uint64_t tells;
} echo_state_t;

static void echo_echo(shoal_call_t *call, void *data)
{
    (void)data;
    shoal_call_reply(call, shoal_call_args(call));
}

static void echo_count(shoal_call_t *call, void *data)
{
    echo_state_t *st = data;
    char text[32];

    snprintf(text, sizeof(text), "%llu", (unsigned long long)st->tells);
    shoal_call_reply_json(call, text);
}

static void echo_tell(shoal_node_t *node, shoal_conn_t *from,
                      const shoal_payload_t *msg, void *data)
{
    echo_state_t *st = data;

    (void)node;
    (void)from;
    (void)msg;
    st->tells++;
}

static void builtin_free_state(void *data)
{
    free(data);
}

static const shoal_action_t echo_actions[] = {
    {"echo", echo_echo},
    {"count", echo_count},
};

/* ---- sum: adds the numbers of an array ------------------------------------
 */

static void sum_sum(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);
    const cJSON *item;
    double total = 0;
    char text[64];

    (void)data;
    if (!cJSON_IsArray(args)) {
        shoal_call_fail(call, SHOAL_EBADTYPE, "sum takes an array of numbers");
        return;
    }
    cJSON_ArrayForEach(item, args)
    {
        if (!cJSON_IsNumber(item)) {
            shoal_call_fail(call, SHOAL_EBADTYPE,
                            "sum takes an array of numbers");
            return;
        }
        total += item->valuedouble;
    }
    snprintf(text, sizeof(text), "%.17g", total);
    shoal_call_reply_json(call, text);
}

static const shoal_action_t sum_actions[] = {
    {"sum", sum_sum},
};

/* ---- sleep: answers after the given milliseconds ---------------------- */

/* Sleeps in progress, so that a closing node answers them at once instead
 * of waiting them out. */
typedef struct {
    shoal__list_t pending;
} sleep_state_t;

typedef struct {
    uv_timer_t timer;
    shoal__list_t link;
    shoal_call_t *call;
    double ms;
} sleep_req_t;

static void sleep_close_cb(uv_handle_t *handle)
{
    free(handle->data);
}

static void sleep_end(sleep_req_t *req)
{
    shoal__list_remove(&req->link);
    uv_close((uv_handle_t *)&req->timer, sleep_close_cb);
}

static void sleep_timer_cb(uv_timer_t *timer)
{
    sleep_req_t *req = timer->data;
    char text[64];

    snprintf(text, sizeof(text), "%.17g", req->ms);
    shoal_call_reply_json(req->call, text);
    sleep_end(req);
}

static void sleep_sleep(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);
    sleep_state_t *st = data;
    sleep_req_t *req;

    if (!cJSON_IsNumber(args) || args->valuedouble < 0 ||
        args->valuedouble > 86400000.0) {
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "sleep takes a number of milliseconds");
        return;
    }
    req = malloc(sizeof(*req));
    if (req == NULL) {
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    req->call = call;
    req->ms = args->valuedouble;
    shoal__list_push(&st->pending, &req->link);
    uv_timer_init(shoal_call_node(call)->loop, &req->timer);
    req->timer.data = req;
    uv_timer_start(&req->timer, sleep_timer_cb, (uint64_t)req->ms, 0);
}

static void sleep_close(void *data)
{
    sleep_state_t *st = data;

    while (!shoal__list_empty(&st->pending)) {
        sleep_req_t *req =
            SHOAL__CONTAINER(st->pending.next, sleep_req_t, link);
        uv_timer_stop(&req->timer);
        shoal_call_fail(req->call, SHOAL_ESTOPPING,
                        "the node is shutting down");
        sleep_end(req);
    }
    free(st);
}

static const shoal_action_t sleep_actions[] = {
    {"sleep", sleep_sleep},
};

/* ---- fail: answers with the error it is asked for
 * ---------------------------- */

static void fail_any(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);
    const char *code =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(args, "code"));
    const char *message = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(args, "message"));

    (void)data;
    shoal_call_fail_named(call, code ? code : "EAPPFAILED", "%s",
                          message ? message : "failed on demand");
}

/* ---- crash: ends the process, for supervision tests
 * -------------------------- */

static void crash_abort(shoal_call_t *call, void *data)
{
    (void)call;
    (void)data;
    abort();
}

static void crash_exit(shoal_call_t *call, void *data)
{
    const cJSON *args = shoal_call_args_json(call);

    (void)data;
    exit(cJSON_IsNumber(args) ? args->valueint : 1);
}

static const shoal_action_t crash_actions[] = {
    {"abort", crash_abort},
    {"exit", crash_exit},
};

/* ---- registry
 * ------------------------------------------------------------------ */

#define BUILTIN_COUNT(a) (sizeof(a) / sizeof((a)[0]))

int shoal__builtin_app_add(shoal_node_t *node, const char *name)
{
    shoal_app_opts_t opts;

    memset(&opts, 0, sizeof(opts));
    opts.name = name;
    if (strcmp(name, "echo") == 0) {
        opts.description = "{\"summary\":\"answers echo with its arguments;"
                           " count gives the tells received\"}";
        opts.actions = echo_actions;
        opts.n_actions = BUILTIN_COUNT(echo_actions);
        opts.on_tell = echo_tell;
        opts.data = calloc(1, sizeof(echo_state_t));
        if (opts.data == NULL)
            return SHOAL_ENOMEM;
        opts.on_close = builtin_free_state;
    } else if (strcmp(name, "sum") == 0) {
        opts.description = "{\"summary\":\"sum adds an array of numbers\"}";
        opts.actions = sum_actions;
        opts.n_actions = BUILTIN_COUNT(sum_actions);
    } else if (strcmp(name, "sleep") == 0) {
        opts.description = "{\"summary\":\"sleep answers after the given "
                           "milliseconds\"}";
        opts.actions = sleep_actions;
        opts.n_actions = BUILTIN_COUNT(sleep_actions);
        opts.data = malloc(sizeof(sleep_state_t));
        if (opts.data == NULL)
            return SHOAL_ENOMEM;
        shoal__list_init(&((sleep_state_t *)opts.data)->pending);
        opts.on_close = sleep_close;
    } else if (strcmp(name, "fail") == 0) {
        opts.description = "{\"summary\":\"every action answers with the "
                           "error {code, message} in its arguments\"}";
        opts.on_call = fail_any;
    } else if (strcmp(name, "crash") == 0) {
        opts.description = "{\"summary\":\"abort kills the process, exit "
                           "ends it with the given status\"}";
        opts.actions = crash_actions;
        opts.n_actions = BUILTIN_COUNT(crash_actions);
    } else {
        return SHOAL_ENOAPP;
    }
    {
        int err = shoal_node_add_app(node, &opts);
        if (err && opts.on_close)
            opts.on_close(opts.data);
        return err;
    }
}
