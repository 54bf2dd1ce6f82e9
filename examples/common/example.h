/* What the examples share: running the same program again as a server in a
 * child process, and serving until SIGTERM. Public API only. */
#ifndef SHOAL_EXAMPLE_H
#define SHOAL_EXAMPLE_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shoal.h>

/* ---- the parent: a server child and a private socket folder ----------- */

typedef struct {
    uv_process_t proc;
    bool running;
} example_child_t;

static void example_child_exit_cb(uv_process_t *proc, int64_t status,
                                  int term_signal)
{
    example_child_t *child = proc->data;

    (void)term_signal;
    if (status != 0)
        fprintf(stderr, "server exited with status %lld\n", (long long)status);
    child->running = false;
    /* Close only after exit: closing a live process leaves a zombie. */
    uv_close((uv_handle_t *)proc, NULL);
}

/* Runs this program again as `PROGRAM serve --ready-fd 3 URL` and returns
 * once the child is listening: it closes fd 3 then, or dies. Nothing
 * polls or sleeps: the read below ends at that close. Returns 0 or a
 * negative code; the child is stopped with example_stop_server(). */
static inline int example_start_server(uv_loop_t *loop, example_child_t *child,
                                       const char *url)
{
    char exe[4096], ready[512];
    size_t exe_len = sizeof(exe);
    char *args[] = {exe, "serve", "--ready-fd", "3", (char *)url, NULL};
    uv_stdio_container_t stdio[4];
    uv_process_options_t opts;
    uv_file fds[2];
    size_t got = 0;
    ssize_t n;
    int err;

    memset(child, 0, sizeof(*child));
    if ((err = uv_exepath(exe, &exe_len)) != 0)
        return err;
    /* Both ends close on exec; the child gets the write end as fd 3. */
    if ((err = uv_pipe(fds, 0, 0)) != 0)
        return err;
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = 1;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = fds[1];
    memset(&opts, 0, sizeof(opts));
    opts.file = exe;
    opts.args = args;
    opts.exit_cb = example_child_exit_cb;
    opts.stdio = stdio;
    opts.stdio_count = 4;
    child->proc.data = child;
    err = uv_spawn(loop, &child->proc, &opts);
    close(fds[1]);
    if (err) {
        /* A failed spawn still needs its close. */
        uv_close((uv_handle_t *)&child->proc, NULL);
        close(fds[0]);
        return err;
    }
    child->running = true;
    while ((n = read(fds[0], ready + got, sizeof(ready) - 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    /* A child that died before listening said nothing. */
    if (got == 0) {
        fprintf(stderr, "the server exited before it was ready\n");
        return UV_ESRCH;
    }
    return 0;
}

/* Asks the server to stop; its exit callback closes the handle. */
static inline void example_stop_server(example_child_t *child)
{
    if (child->running)
        uv_process_kill(&child->proc, SIGTERM);
}

/* Makes a private folder for Unix sockets: "/tmp/shoal-NAME-XXXXXX". */
static inline int example_make_dir(char *dir, size_t len, const char *name)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, len, "%s/shoal-%s-XXXXXX", tmp && tmp[0] ? tmp : "/tmp",
             name);
    return mkdtemp(dir) != NULL ? 0 : uv_translate_sys_error(errno);
}

/* Runs a client against a server child on a Unix socket: the program run
 * with no arguments. client talks to url and stops the server when done.
 * Returns the client's exit status, or 2 when the server did not start or
 * a handle was left open. */
typedef int (*example_client_fn)(uv_loop_t *loop, const char *url,
                                 example_child_t *server);

static inline int example_demo(const char *name, const char *socket_name,
                               example_client_fn client)
{
    uv_loop_t *loop = uv_default_loop();
    example_child_t server;
    char dir[256], url[300];
    int err, status = 2;

    if ((err = example_make_dir(dir, sizeof(dir), name)) != 0) {
        fprintf(stderr, "%s: mkdtemp: %s\n", name, shoal_strerror(err));
        return 2;
    }
    snprintf(url, sizeof(url), "unix://%s/%s", dir, socket_name);
    err = example_start_server(loop, &server, url);
    if (err == 0) {
        status = client(loop, url, &server);
    } else {
        fprintf(stderr, "%s: server on %s: %s\n", name, url,
                shoal_strerror(err));
        uv_run(loop, UV_RUN_DEFAULT);
    }
    rmdir(dir);
    return uv_loop_close(loop) == 0 ? status : 2;
}

/* ---- the child: serve until SIGTERM or SIGINT ------------------------- */

typedef struct {
    shoal_node_t *node;
    uv_signal_t sigterm;
    uv_signal_t sigint;
} example_serve_t;

static void example_signal_cb(uv_signal_t *sig, int signum)
{
    example_serve_t *serve = sig->data;

    (void)signum;
    uv_close((uv_handle_t *)&serve->sigterm, NULL);
    uv_close((uv_handle_t *)&serve->sigint, NULL);
    shoal_node_close(serve->node, NULL);
}

/* Parses `serve [--ready-fd FD] URL...` (argv[0] is "serve"), listens on
 * every URL, says it is ready by closing FD, and runs the loop until a
 * signal closes the node. Returns the exit status. */
static inline int example_serve(uv_loop_t *loop, shoal_node_t *node, int argc,
                                char **argv)
{
    example_serve_t serve;
    int ready_fd = -1, i = 1, err;

    if (argc > 2 && strcmp(argv[1], "--ready-fd") == 0) {
        ready_fd = atoi(argv[2]);
        i = 3;
    }
    if (i >= argc) {
        fprintf(stderr, "serve: expected at least one URL\n");
        shoal_node_close(node, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    for (; i < argc; i++) {
        if ((err = shoal_node_listen(node, argv[i])) != 0) {
            fprintf(stderr, "serve: cannot listen on %s: %s\n", argv[i],
                    shoal_strerror(err));
            shoal_node_close(node, NULL);
            uv_run(loop, UV_RUN_DEFAULT);
            return 2;
        }
    }
    serve.node = node;
    uv_signal_init(loop, &serve.sigterm);
    uv_signal_init(loop, &serve.sigint);
    serve.sigterm.data = serve.sigint.data = &serve;
    uv_signal_start(&serve.sigterm, example_signal_cb, SIGTERM);
    uv_signal_start(&serve.sigint, example_signal_cb, SIGINT);
    if (ready_fd >= 0) {
        ssize_t n = write(ready_fd, "ready\n", 6);
        (void)n; /* the close below is the signal that counts */
        close(ready_fd);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

#endif
