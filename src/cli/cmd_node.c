/* shoal node: runs one node with its listeners and applications until
 * SIGINT or SIGTERM. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define NODE_MAX_LISTEN 16
#define NODE_MAX_APPS 64

typedef struct {
    shoal_node_opts_t node;
    const char *listen[NODE_MAX_LISTEN];
    size_t n_listen;
    const char *apps[NODE_MAX_APPS];
    size_t n_apps;
    const char *app_path;
    const char *execs[NODE_MAX_APPS]; /* --exec, as given */
    size_t n_execs;
    const char *join;
    int ready_fd;
    int parent_fd;
    bool quiet;
    bool dispatch;
    shoal_dispatch_opts_t dispatch_opts;
} node_cli_opts_t;

typedef struct {
    shoal_node_t node;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_pipe_t parent;
    bool watching_parent;
    uv_timer_t deadline;
    bool stopping;
    shoal_dispatch_t dispatch;
    bool dispatching;
} node_cli_t;

void cli_usage_node(FILE *out)
{
    fprintf(out,
            "usage: shoal node [OPTIONS]\n\n"
            "Runs a node: listens on each --listen address, hosts each --app "
            "and\nanswers tells, calls, events and describes in NDJSON, "
            "json-socket or\nMessagePack (detected per connection) until "
            "SIGINT or SIGTERM.\n\n"
            "  --name NAME            node name (default: node-XXXXXX)\n"
            "  --listen URL           tcp://HOST:PORT or unix:///PATH; "
            "repeatable\n"
            "  --app NAME             host an application: a built-in one "
            "(echo, sum,\n"
            "                         sleep, fail, crash) or the plugin "
            "NAME.so from\n"
            "                         the app path; repeatable\n"
            "  --app-path DIRS        where plugins are looked for, "
            "':'-separated\n"
            "                         (default: $SHOAL_APP_PATH, then the "
            "installed\n"
            "                         workers directory)\n"
            "  --exec [NAME=]COMMAND  host an application served by COMMAND "
            "(run with\n"
            "                         /bin/sh -c) over NDJSON on its stdin "
            "and stdout;\n"
            "                         NAME defaults to the last word's "
            "base name\n"
            "                         without extension; repeatable\n"
            "  --join URL             stay connected to the node at URL "
            "(a supervisor)\n"
            "                         and introduce this node to it; "
            "redials if it drops\n"
            "  --parent-fd FD         exit when FD reaches end of file (the "
            "parent died)\n"
            "  --ready-fd FD          write {\"name\",\"addresses\"} as "
            "one JSON line to\n"
            "                         FD once listening, then close it\n"
            "  --max-frame-bytes N    largest frame (default 16777216)\n"
            "  --max-line-bytes N     longest NDJSON line (default "
            "16777216)\n"
            "  --max-depth N          deepest nesting (default 64, at most "
            "256)\n"
            "  --dispatch             also place tasks over the nodes that "
            "join this one\n"
            "                         (the \"dispatch\" application, "
            "docs/dispatch.md)\n"
            "  --dispatch-inflight N  calls in flight per node (default "
            "64)\n"
            "  --dispatch-queue N     tasks that may wait before "
            "submitters are\n"
            "                         paused (default 10000)\n"
            "  --quiet                do not print the addresses\n\n"
            "Example: shoal node --name n1 --listen tcp://127.0.0.1:7000 "
            "--app echo\n");
}

enum {
    OPT_READY_FD = 256,
    OPT_MAX_FRAME,
    OPT_MAX_LINE,
    OPT_MAX_DEPTH,
    OPT_QUIET,
    OPT_APP_PATH,
    OPT_JOIN,
    OPT_PARENT_FD,
    OPT_EXEC,
    OPT_DISPATCH,
    OPT_DISPATCH_INFLIGHT,
    OPT_DISPATCH_QUEUE,
};

static const struct option node_long_opts[] = {
    {"name", required_argument, NULL, 'n'},
    {"listen", required_argument, NULL, 'l'},
    {"app", required_argument, NULL, 'a'},
    {"ready-fd", required_argument, NULL, OPT_READY_FD},
    {"max-frame-bytes", required_argument, NULL, OPT_MAX_FRAME},
    {"max-line-bytes", required_argument, NULL, OPT_MAX_LINE},
    {"max-depth", required_argument, NULL, OPT_MAX_DEPTH},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"app-path", required_argument, NULL, OPT_APP_PATH},
    {"join", required_argument, NULL, OPT_JOIN},
    {"parent-fd", required_argument, NULL, OPT_PARENT_FD},
    {"exec", required_argument, NULL, OPT_EXEC},
    {"dispatch", no_argument, NULL, OPT_DISPATCH},
    {"dispatch-inflight", required_argument, NULL, OPT_DISPATCH_INFLIGHT},
    {"dispatch-queue", required_argument, NULL, OPT_DISPATCH_QUEUE},
    {NULL, 0, NULL, 0},
};

static int node_parse_opts(int argc, char **argv, node_cli_opts_t *o)
{
    uint64_t v;
    int c;

    memset(o, 0, sizeof(*o));
    o->ready_fd = -1;
    o->parent_fd = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:l:a:", node_long_opts, NULL)) !=
           -1) {
        switch (c) {
        case 'n':
            o->node.name = optarg;
            break;
        case 'l':
            if (o->n_listen == NODE_MAX_LISTEN)
                return cli_usage_error("node", "too many --listen");
            o->listen[o->n_listen++] = optarg;
            break;
        case 'a':
            if (o->n_apps == NODE_MAX_APPS)
                return cli_usage_error("node", "too many --app");
            o->apps[o->n_apps++] = optarg;
            break;
        case OPT_READY_FD:
            if (!cli_parse_u64(optarg, &v) || v > 65535)
                return cli_usage_error("node", "--ready-fd takes an fd");
            o->ready_fd = (int)v;
            break;
        case OPT_MAX_FRAME:
        case OPT_MAX_LINE:
        case OPT_MAX_DEPTH:
            if (!cli_parse_u64(optarg, &v) || v == 0)
                return cli_usage_error("node", "--max-* takes a positive "
                                               "number");
            if (c == OPT_MAX_FRAME)
                o->node.limits.max_frame_bytes = v;
            else if (c == OPT_MAX_LINE)
                o->node.limits.max_line_bytes = v;
            else if (v > SHOAL_MAX_DEPTH_CAP)
                return cli_usage_error("node", "--max-depth is at most %d",
                                       SHOAL_MAX_DEPTH_CAP);
            else
                o->node.limits.max_depth = (unsigned)v;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_APP_PATH:
            o->app_path = optarg;
            break;
        case OPT_JOIN:
            o->join = optarg;
            break;
        case OPT_PARENT_FD:
            if (!cli_parse_u64(optarg, &v) || v > 65535)
                return cli_usage_error("node", "--parent-fd takes an fd");
            o->parent_fd = (int)v;
            break;
        case OPT_EXEC:
            if (o->n_execs == NODE_MAX_APPS)
                return cli_usage_error("node", "too many --exec");
            o->execs[o->n_execs++] = optarg;
            break;
        case OPT_DISPATCH:
            o->dispatch = true;
            break;
        case OPT_DISPATCH_INFLIGHT:
        case OPT_DISPATCH_QUEUE:
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > 100000000)
                return cli_usage_error("node", "--dispatch-* takes a "
                                               "positive number");
            if (c == OPT_DISPATCH_INFLIGHT)
                o->dispatch_opts.inflight_per_node = v;
            else
                o->dispatch_opts.max_queued = v;
            o->dispatch = true;
            break;
        default:
            return cli_usage_error("node", "unknown option");
        }
    }
    if (optind < argc)
        return cli_usage_error("node", "unexpected argument '%s'",
                               argv[optind]);
    return 0;
}

/* The application name and command of --exec [NAME=]COMMAND: NAME when
 * the text starts with one ([A-Za-z0-9_.-]+ then '=', before any space),
 * else the base name of the command's last word without its extension
 * ("python3 workers/py/echo.py" -> "echo"). Returns false when no name
 * can be made. */
static bool node_exec_name(const char *text, char *name, size_t name_len,
                           const char **command)
{
    const char *p = text, *end, *last, *base, *dot = NULL;
    size_t len;

    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
           (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-')
        p++;
    if (p > text && *p == '=') {
        len = (size_t)(p - text);
        *command = p + 1;
    } else {
        *command = text;
        end = text + strlen(text);
        while (end > text && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        last = end;
        while (last > text && last[-1] != ' ' && last[-1] != '\t')
            last--;
        base = last;
        for (const char *q = last; q < end; q++)
            if (*q == '/')
                base = q + 1;
        /* From the second byte: ".profile" keeps its name. */
        for (const char *q = base + 1; q < end; q++)
            if (*q == '.')
                dot = q;
        text = base;
        len = (size_t)((dot ? dot : end) - base);
    }
    if (len == 0 || len >= name_len || **command == '\0')
        return false;
    memcpy(name, text, len);
    name[len] = '\0';
    return true;
}

/* Past this after a stop request, work still running is abandoned. */
#define NODE_STOP_DEADLINE_MS 5000

static void node_deadline_cb(uv_timer_t *timer)
{
    (void)timer;
    fprintf(stderr,
            "shoal node: work still running %d ms after the stop "
            "request; exiting\n",
            NODE_STOP_DEADLINE_MS);
    exit(CLI_EXIT_FAILURE);
}

static void node_stop(node_cli_t *cli)
{
    if (cli->stopping)
        return;
    cli->stopping = true;
    uv_close((uv_handle_t *)&cli->sigint, NULL);
    uv_close((uv_handle_t *)&cli->sigterm, NULL);
    if (cli->watching_parent)
        uv_close((uv_handle_t *)&cli->parent, NULL);
    /* Unreferenced: it bounds the shutdown without keeping the loop up. */
    uv_timer_init(cli->node.loop, &cli->deadline);
    uv_timer_start(&cli->deadline, node_deadline_cb, NODE_STOP_DEADLINE_MS, 0);
    uv_unref((uv_handle_t *)&cli->deadline);
    if (cli->dispatching)
        shoal_dispatch_close(&cli->dispatch, NULL);
    shoal_node_close(&cli->node, NULL);
}

static void node_signal_cb(uv_signal_t *sig, int signum)
{
    (void)signum;
    node_stop(sig->data);
}

static void node_parent_alloc_cb(uv_handle_t *handle, size_t suggested,
                                 uv_buf_t *buf)
{
    static char scratch[64];

    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

/* The parent holds the other end: end of file means it is gone, however it
 * died, and a worker must not outlive its supervisor. */
static void node_parent_read_cb(uv_stream_t *stream, ssize_t nread,
                                const uv_buf_t *buf)
{
    (void)buf;
    if (nread < 0)
        node_stop(stream->data);
}

static int node_watch_parent(node_cli_t *cli, int fd)
{
    int err = uv_pipe_init(cli->node.loop, &cli->parent, 0);

    if (err)
        return err;
    cli->parent.data = cli;
    err = uv_pipe_open(&cli->parent, fd);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&cli->parent, node_parent_alloc_cb,
                            node_parent_read_cb);
    if (err) {
        uv_close((uv_handle_t *)&cli->parent, NULL);
        return err;
    }
    cli->watching_parent = true;
    return 0;
}

/* Tells whoever started this node that it is listening, through an fd it
 * inherited: no polling, no sleeping on the other side. */
static void node_report_ready(node_cli_t *cli, const node_cli_opts_t *o)
{
    cJSON *ready = cJSON_CreateObject();
    cJSON *addresses = cJSON_AddArrayToObject(ready, "addresses");

    cJSON_AddStringToObject(ready, "name", shoal_node_name(&cli->node));
    for (size_t i = 0; i < shoal_node_address_count(&cli->node); i++) {
        const char *url = shoal_node_address(&cli->node, i);
        cJSON_AddItemToArray(addresses, cJSON_CreateString(url));
        if (!o->quiet)
            printf("node %s listening on %s\n", shoal_node_name(&cli->node),
                   url);
    }
    cli_write_ready("node", o->ready_fd, ready);
}

int cli_cmd_node(int argc, char **argv)
{
    node_cli_opts_t o;
    node_cli_t cli;
    uv_loop_t *loop = uv_default_loop();
    int err;

    if ((err = node_parse_opts(argc, argv, &o)))
        return err;
    /* Programs started by --exec inherit every fd without close-on-exec:
     * in them the ready and parent fds would outlive this process, and
     * whoever waits for their end would wait for the programs too. */
    if (o.ready_fd >= 0)
        fcntl(o.ready_fd, F_SETFD, FD_CLOEXEC);
    if (o.parent_fd >= 0)
        fcntl(o.parent_fd, F_SETFD, FD_CLOEXEC);
    memset(&cli, 0, sizeof(cli));
    err = shoal_node_init(loop, &cli.node, &o.node);
    if (err) {
        fprintf(stderr, "shoal node: %s\n", shoal_strerror(err));
        return CLI_EXIT_FAILURE;
    }
    for (size_t i = 0; i < o.n_apps && err == 0; i++) {
        char why[1024];
        err = shoal_node_load_app(&cli.node, o.apps[i], o.app_path, why,
                                  sizeof(why));
        if (err)
            fprintf(stderr, "shoal node: --app %s: %s\n", o.apps[i], why);
    }
    for (size_t i = 0; i < o.n_execs && err == 0; i++) {
        char why[1024], name[SHOAL_MAX_NAME_BYTES + 1];
        const char *command;
        if (!node_exec_name(o.execs[i], name, sizeof(name), &command)) {
            fprintf(stderr,
                    "shoal node: --exec %s: no application name (write "
                    "NAME=COMMAND)\n",
                    o.execs[i]);
            err = SHOAL_EINVAL;
            break;
        }
        err = shoal_node_add_exec_app(&cli.node, name, command, why,
                                      sizeof(why));
        if (err)
            fprintf(stderr, "shoal node: --exec %s: %s\n", o.execs[i], why);
    }
    for (size_t i = 0; i < o.n_listen && err == 0; i++) {
        err = shoal_node_listen(&cli.node, o.listen[i]);
        if (err)
            fprintf(stderr, "shoal node: cannot listen on %s: %s\n",
                    o.listen[i], shoal_strerror(err));
    }
    if (err == 0 && o.dispatch) {
        err = shoal_dispatch_init(&cli.dispatch, &cli.node, &o.dispatch_opts);
        if (err)
            fprintf(stderr, "shoal node: --dispatch: %s\n",
                    shoal_strerror(err));
        cli.dispatching = err == 0;
    }
    if (err == 0 && o.join != NULL) {
        err = shoal_node_join(&cli.node, o.join);
        if (err)
            fprintf(stderr, "shoal node: --join %s: %s\n", o.join,
                    shoal_strerror(err));
    }
    if (err == 0 && o.parent_fd >= 0) {
        err = node_watch_parent(&cli, o.parent_fd);
        if (err)
            fprintf(stderr, "shoal node: --parent-fd %d: %s\n", o.parent_fd,
                    shoal_strerror(err));
    }
    if (err) {
        if (cli.dispatching)
            shoal_dispatch_close(&cli.dispatch, NULL);
        shoal_node_close(&cli.node, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
        return CLI_EXIT_FAILURE;
    }
    uv_signal_init(loop, &cli.sigint);
    uv_signal_init(loop, &cli.sigterm);
    cli.sigint.data = cli.sigterm.data = &cli;
    uv_signal_start(&cli.sigint, node_signal_cb, SIGINT);
    uv_signal_start(&cli.sigterm, node_signal_cb, SIGTERM);
    node_report_ready(&cli, &o);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return CLI_EXIT_OK;
}
