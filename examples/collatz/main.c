/* collatz: the longest Collatz chain below N, split into ranges over a
 * pool of worker nodes by a dispatcher.
 *
 *   collatz [N] [--workers K] [--ranges R]     start a pool of K workers
 *   collatz [N] --url URL [--ranges R]         use a running dispatcher
 *
 * Without --url this program is the supervisor: it runs a node with a
 * dispatcher and starts K `shoal node --join ... --app collatz` workers
 * (the shoal command and the collatz plugin are looked for next to this
 * program's build folder, or named by $SHOAL_BIN and $SHOAL_APP_PATH).
 * With --url it submits the ranges to the dispatcher there, for instance
 * a `shoal node --dispatch` that collatz workers have joined.
 *
 * Prints the answer and each node's share of the numbers:
 *   longest chain below 1000000: 837799 (524 steps)
 *     w0  50.2% of the numbers, 131 ranges
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shoal.h>

#define COLLATZ_MAX_WORKERS 64
#define COLLATZ_MAX_NODES 64

typedef struct {
    uint64_t lo, hi;
} range_t;

typedef struct {
    char name[SHOAL_MAX_NAME_BYTES + 1];
    uint64_t numbers;
    long ranges;
} node_share_t;

typedef struct {
    uint64_t n;
    long n_ranges;
    int workers;
    const char *url;
    range_t *ranges;
    long done;
    bool submitted;
    int failed;
    uint64_t best_n, best_steps;
    node_share_t shares[COLLATZ_MAX_NODES];
    int n_shares;

    uv_loop_t *loop;
    shoal_node_t node;
    shoal_dispatch_t dispatch; /* when this program is the supervisor */
    bool supervising;
    shoal_conn_t *conn; /* when it uses a dispatcher elsewhere */
    uv_process_t procs[COLLATZ_MAX_WORKERS];
    int procs_running;
    uv_file parent_fd; /* the workers' --parent-fd: they end with us */
} collatz_t;

static void collatz_finish(collatz_t *c);

/* ---- outcomes -------------------------------------------------------------
 */

static void collatz_share(collatz_t *c, const char *node, const range_t *r)
{
    int i;

    for (i = 0; i < c->n_shares; i++)
        if (strcmp(c->shares[i].name, node) == 0)
            break;
    if (i == c->n_shares) {
        if (c->n_shares == COLLATZ_MAX_NODES)
            return;
        snprintf(c->shares[i].name, sizeof(c->shares[i].name), "%s", node);
        c->n_shares++;
    }
    c->shares[i].numbers += r->hi - r->lo;
    c->shares[i].ranges++;
}

static void collatz_outcome_cb(const shoal_outcome_t *o, void *data)
{
    collatz_t *c = *(collatz_t **)data;
    const range_t *r = (const range_t *)((collatz_t **)data + 1);
    shoal_payload_t v;
    int64_t n = 0, steps = 0;

    if (o->status != SHOAL_OUTCOME_OK ||
        shoal_payload_get(&o->result, "n", &v) != 0 ||
        shoal_payload_int(&v, &n) != 0 ||
        shoal_payload_get(&o->result, "steps", &v) != 0 ||
        shoal_payload_int(&v, &steps) != 0) {
        fprintf(stderr, "collatz: range [%llu, %llu): %s %s\n",
                (unsigned long long)r->lo, (unsigned long long)r->hi,
                o->code_name, o->message);
        c->failed++;
    } else {
        if ((uint64_t)steps > c->best_steps ||
            ((uint64_t)steps == c->best_steps && (uint64_t)n < c->best_n)) {
            c->best_steps = (uint64_t)steps;
            c->best_n = (uint64_t)n;
        }
        collatz_share(c, o->node, r);
    }
    free(data);
    if (++c->done == c->n_ranges)
        collatz_finish(c);
}

/* Submits every range: the dispatcher keeps a few in flight per node and
 * queues the rest, so a node that finishes early takes more. */
static void collatz_submit_all(collatz_t *c)
{
    char json[64];

    c->submitted = true;
    for (long i = 0; i < c->n_ranges; i++) {
        const range_t *r = &c->ranges[i];
        int len =
            snprintf(json, sizeof(json), "[%llu,%llu]",
                     (unsigned long long)r->lo, (unsigned long long)r->hi);
        shoal_payload_t args = {json, (size_t)len, SHOAL_CODEC_JSON};
        shoal_task_t task;
        collatz_t **data = malloc(sizeof(collatz_t *) + sizeof(range_t));
        int err;

        if (data == NULL) {
            fprintf(stderr, "collatz: out of memory\n");
            exit(1);
        }
        *data = c;
        memcpy(data + 1, r, sizeof(*r));
        memset(&task, 0, sizeof(task));
        task.app = "collatz";
        task.action = "range";
        task.args = &args;
        if (c->supervising)
            err = shoal_dispatch_submit(&c->dispatch, &task,
                                        collatz_outcome_cb, data);
        else
            err = shoal_submit(c->conn, &task, collatz_outcome_cb, data);
        if (err) {
            fprintf(stderr, "collatz: submit: %s\n", shoal_strerror(err));
            exit(1);
        }
    }
}

/* ---- the pool --------------------------------------------------------------
 */

static void collatz_proc_exit_cb(uv_process_t *proc, int64_t status,
                                 int signal)
{
    collatz_t *c = proc->data;

    (void)status;
    (void)signal;
    c->procs_running--;
    /* Close only after exit: closing a live process leaves a zombie. */
    uv_close((uv_handle_t *)proc, NULL);
}

/* The shoal command next to this program's build folder, or $SHOAL_BIN. */
static void collatz_find_shoal(char *shoal, size_t len, char *plugins,
                               size_t plugins_len)
{
    char exe[4096];
    size_t exe_len = sizeof(exe);
    char *slash;

    snprintf(shoal, len, "%s",
             getenv("SHOAL_BIN") ? getenv("SHOAL_BIN") : "shoal");
    plugins[0] = '\0';
    if (uv_exepath(exe, &exe_len) != 0 || (slash = strrchr(exe, '/')) == NULL)
        return;
    *slash = '\0';
    if (getenv("SHOAL_BIN") == NULL) {
        char candidate[4200];
        snprintf(candidate, sizeof(candidate), "%s/../shoal", exe);
        if (access(candidate, X_OK) == 0)
            snprintf(shoal, len, "%s", candidate);
    }
    snprintf(plugins, plugins_len, "%s/../workers", exe);
}

static int collatz_start_workers(collatz_t *c, const char *url)
{
    char shoal[4200], plugins[4200], name[32];
    uv_stdio_container_t stdio[4];
    uv_process_options_t opts;
    uv_file fds[2];
    int err;

    collatz_find_shoal(shoal, sizeof(shoal), plugins, sizeof(plugins));
    /* The workers watch fd 3 (--parent-fd): when this process ends, for
     * whatever reason, they see end of file and stop. */
    if ((err = uv_pipe(fds, 0, 0)) != 0)
        return err;
    c->parent_fd = fds[1];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_IGNORE;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = fds[0];
    for (int i = 0; i < c->workers; i++) {
        char *args[] = {shoal,   "node",    "--name",
                        name,    "--join",  (char *)url,
                        "--app", "collatz", "--parent-fd",
                        "3",     "--quiet", plugins[0] ? "--app-path" : NULL,
                        plugins, NULL};
        snprintf(name, sizeof(name), "w%d", i);
        memset(&opts, 0, sizeof(opts));
        opts.file = shoal;
        opts.args = args;
        opts.stdio = stdio;
        opts.stdio_count = 4;
        opts.exit_cb = collatz_proc_exit_cb;
        c->procs[i].data = c;
        err = uv_spawn(c->loop, &c->procs[i], &opts);
        if (err) {
            /* A failed spawn still needs its close. */
            uv_close((uv_handle_t *)&c->procs[i], NULL);
            fprintf(stderr, "collatz: cannot start %s: %s\n", shoal,
                    uv_strerror(err));
            break;
        }
        c->procs_running++;
    }
    uv_fs_close(c->loop, &(uv_fs_t){0}, fds[0], NULL);
    return err;
}

/* Each worker says hello when it joins; once the dispatcher knows them
 * all, the work starts. */
static void collatz_on_hello(shoal_node_t *node, shoal_conn_t *conn,
                             const shoal_payload_t *desc, void *data)
{
    collatz_t *c = data;
    shoal_dispatch_stats_t st;

    (void)node;
    (void)conn;
    (void)desc;
    shoal_dispatch_stats(&c->dispatch, &st);
    if (!c->submitted && (int)st.members >= c->workers)
        collatz_submit_all(c);
}

static void collatz_connected_cb(shoal_conn_t *conn, int status, void *data)
{
    collatz_t *c = data;

    if (status < 0) {
        fprintf(stderr, "collatz: cannot connect to %s: %s\n", c->url,
                shoal_strerror(status));
        c->failed++;
        collatz_finish(c);
        return;
    }
    c->conn = conn;
    collatz_submit_all(c);
}

static void collatz_finish(collatz_t *c)
{
    if (c->supervising) {
        /* Stop the workers, then the dispatcher and the node. */
        for (int i = 0; i < c->workers; i++)
            if (uv_is_active((uv_handle_t *)&c->procs[i]))
                uv_process_kill(&c->procs[i], SIGTERM);
        shoal_dispatch_close(&c->dispatch, NULL);
    }
    shoal_node_close(&c->node, NULL);
}

/* ---- main
 * ----------------------------------------------------------------------- */

static int collatz_usage(void)
{
    fprintf(stderr, "usage: collatz [N] [--workers K] [--ranges R] "
                    "[--url URL]\n");
    return 2;
}

int main(int argc, char **argv)
{
    collatz_t c;
    char url[128], dir[64];
    int err;

    memset(&c, 0, sizeof(c));
    c.n = 1000000;
    c.workers = 2;
    c.n_ranges = 256;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
            c.workers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ranges") == 0 && i + 1 < argc)
            c.n_ranges = atol(argv[++i]);
        else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            c.url = argv[++i];
        else if (argv[i][0] >= '0' && argv[i][0] <= '9')
            c.n = strtoull(argv[i], NULL, 10);
        else
            return collatz_usage();
    }
    if (c.n < 2 || c.workers < 1 || c.workers > COLLATZ_MAX_WORKERS ||
        c.n_ranges < 1)
        return collatz_usage();
    if ((uint64_t)c.n_ranges > c.n - 1)
        c.n_ranges = (long)(c.n - 1);
    c.ranges = calloc((size_t)c.n_ranges, sizeof(*c.ranges));
    if (c.ranges == NULL)
        return 1;
    for (long i = 0; i < c.n_ranges; i++) {
        c.ranges[i].lo = 1 + (c.n - 1) * (uint64_t)i / (uint64_t)c.n_ranges;
        c.ranges[i].hi =
            1 + (c.n - 1) * (uint64_t)(i + 1) / (uint64_t)c.n_ranges;
    }
    signal(SIGPIPE, SIG_IGN);
    c.loop = uv_default_loop();
    if ((err = shoal_node_init(c.loop, &c.node, NULL)) != 0)
        goto fail;
    if (c.url) {
        err = shoal_node_connect(&c.node, c.url, NULL, collatz_connected_cb,
                                 &c, NULL);
    } else {
        shoal_dispatch_opts_t dopts;
        shoal_node_hooks_t hooks;
        /* A private socket folder: nothing fixed, nothing shared. */
        snprintf(dir, sizeof(dir), "/tmp/collatz-XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("collatz: mkdtemp");
            return 1;
        }
        snprintf(url, sizeof(url), "unix://%s/sup.sock", dir);
        memset(&dopts, 0, sizeof(dopts));
        /* Ranges differ in cost: a few each, so none waits behind a long
         * queue on one node while another is idle. */
        dopts.inflight_per_node = 2;
        memset(&hooks, 0, sizeof(hooks));
        hooks.on_hello = collatz_on_hello;
        hooks.data = &c;
        c.supervising = true;
        if ((err = shoal_node_listen(&c.node, url)) != 0 ||
            (err = shoal_dispatch_init(&c.dispatch, &c.node, &dopts)) != 0 ||
            (err = shoal_node_add_hooks(&c.node, &hooks)) != 0 ||
            (err = collatz_start_workers(&c, url)) != 0) {
            c.supervising = false;
            shoal_node_close(&c.node, NULL);
            uv_run(c.loop, UV_RUN_DEFAULT);
            rmdir(dir);
            goto fail;
        }
    }
    if (err) {
        shoal_node_close(&c.node, NULL);
        uv_run(c.loop, UV_RUN_DEFAULT);
        goto fail;
    }
    uv_run(c.loop, UV_RUN_DEFAULT);
    if (c.supervising) {
        uv_fs_close(c.loop, &(uv_fs_t){0}, c.parent_fd, NULL);
        rmdir(dir);
    }
    uv_loop_close(c.loop);
    free(c.ranges);
    if (c.failed || c.done != c.n_ranges)
        return 1;
    printf("longest chain below %llu: %llu (%llu steps)\n",
           (unsigned long long)c.n, (unsigned long long)c.best_n,
           (unsigned long long)c.best_steps);
    for (int i = 0; i < c.n_shares; i++)
        printf("  %-12s %5.1f%% of the numbers, %ld ranges\n",
               c.shares[i].name,
               100.0 * (double)c.shares[i].numbers / (double)(c.n - 1),
               c.shares[i].ranges);
    return 0;
fail:
    fprintf(stderr, "collatz: %s\n", shoal_strerror(err));
    return 1;
}
