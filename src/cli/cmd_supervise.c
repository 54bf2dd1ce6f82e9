/* shoal supervise: a supervisor and its pool of worker nodes until SIGINT,
 * SIGTERM or `shoal stop`; shoal status, stop, restart: its remote
 * controls, thin clients of the "supervisor" application. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define SUP_CLI_MAX_LISTEN 16
#define SUP_CLI_MAX_APPS 64
#define SUP_CLI_DEFAULT_NAME "supervisor"
#define SUP_CLI_TIMEOUT_MS 60000
/* How often status is asked while waiting for workers. */
#define SUP_CLI_POLL_MS 25

/* ---- shoal supervise -----------------------------------------------------
 */

typedef struct {
    const char *config;
    const char *name;
    const char *listen[SUP_CLI_MAX_LISTEN];
    size_t n_listen;
    shoal_pool_opts_t pool;
    const char *apps[SUP_CLI_MAX_APPS];
    const char *execs[SUP_CLI_MAX_APPS];
    char *names_text; /* --names, split in place */
    const char *names[SHOAL_SUP_MAX_WORKERS];
    const char *pool_option; /* the first pool option seen, for errors */
    shoal_supervisor_opts_t sup;
    bool set_log_dir, set_log_max, set_drain, set_kill, set_sample;
    const char *runtime_dir;
    int ready_fd;
    bool quiet;
    bool check;
} sup_cli_opts_t;

typedef struct {
    shoal_node_t node;
    shoal_supervisor_t sup;
    /* Tasks spread over the workers (the "dispatch" application): its
     * drain holds the supervisor's stop. */
    shoal_dispatch_t dispatch;
    bool dispatching;
    shoal_drain_done_fn drain_done;
    void *drain_done_data;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    int status;
    bool stopping;
} sup_cli_t;

void cli_usage_supervise(FILE *out)
{
    fprintf(
        out,
        "usage: shoal supervise [OPTIONS]\n\n"
        "Runs a supervisor: a node that spawns a pool of local worker nodes\n"
        "(`shoal node` processes named POOL-1 ... POOL-N), restarts those "
        "that\nexit by the pool's policy, prints their output prefixed with "
        "their\nname, and on SIGINT/SIGTERM (or `shoal stop URL`) drains, "
        "stops them\nall and exits 0. Workers exit by themselves if the "
        "supervisor dies.\nIt also hosts the dispatcher (application "
        "\"dispatch\": `shoal submit URL`\nspreads tasks over the "
        "workers). See docs/supervisor.md.\n\n"
        "  --config FILE           pools and settings from a JSON file "
        "(pool options\n"
        "                          below are then refused)\n"
        "  --name NAME             the supervisor's node name (default "
        "supervisor)\n"
        "  --listen URL            tcp://HOST:PORT or unix:///PATH for "
        "clients and\n"
        "                          nodes that join by hand; repeatable\n"
        "  --runtime-dir DIR       where the private socket goes (default: "
        "a new\n"
        "                          folder under $TMPDIR, removed at exit)\n"
        "  --ready-fd FD           write {\"name\",\"addresses\",\"url\","
        "\"pid\"} as one\n"
        "                          JSON line to FD once started, then close "
        "it\n"
        "  --quiet                 print neither addresses nor events\n"
        "  --check                 check the options (and --config), print "
        "the pools\n"
        "                          and exit\n\n"
        "Pool (one, without --config):\n"
        "  --pool NAME             pool name (default worker)\n"
        "  --workers N             worker count (default: the number of "
        "CPUs)\n"
        "  --names A,B,...         worker names instead of POOL-1 ... "
        "POOL-N\n"
        "  --app NAME              application of each worker (built-in or "
        "plugin);\n"
        "                          repeatable\n"
        "  --exec [NAME=]COMMAND   external application of each worker "
        "(NDJSON on\n"
        "                          stdin/stdout); repeatable\n"
        "  --app-path DIRS         where workers look for plugins\n"
        "  --restart POLICY        permanent (default), transient or "
        "temporary\n"
        "  --backoff-initial-ms N  first restart delay after an unstable run "
        "(100)\n"
        "  --backoff-factor X      growth of the delay (2)\n"
        "  --backoff-max-ms N      longest delay (30000)\n"
        "  --backoff-reset-ms N    uptime after which a worker is stable "
        "and\n"
        "                          restarts at once (30000)\n"
        "  --max-restarts R        restarts allowed within the window (5)\n"
        "  --restart-window-ms T   the budget's window (60000); past R "
        "restarts\n"
        "                          in T ms a worker is left errored\n"
        "  --start-timeout-ms N    kill a worker that has not said hello "
        "N ms after\n"
        "                          its start (30000; 0: never)\n\n"
        "Supervisor:\n"
        "  --drain-timeout-ms N    longest wait for work in flight at stop "
        "(5000)\n"
        "  --kill-timeout-ms N     SIGTERM to SIGKILL (5000)\n"
        "  --sample-interval-ms N  CPU/memory/calls sampling (1000; 0: "
        "never)\n"
        "  --log-dir DIR           worker output to DIR/NAME.log instead of "
        "this\n"
        "                          process's stdout/stderr\n"
        "  --log-max-bytes N       rotate NAME.log to NAME.log.1 past N "
        "bytes\n"
        "                          (10485760)\n\n"
        "Example: shoal supervise --listen tcp://127.0.0.1:7000 --workers 4 "
        "--app echo\n");
}

enum {
    OPT_CONFIG = 256,
    OPT_NAME,
    OPT_LISTEN,
    OPT_RUNTIME_DIR,
    OPT_READY_FD,
    OPT_QUIET,
    OPT_CHECK,
    OPT_POOL,
    OPT_WORKERS,
    OPT_NAMES,
    OPT_APP,
    OPT_EXEC,
    OPT_APP_PATH,
    OPT_RESTART,
    OPT_BACKOFF_INITIAL,
    OPT_BACKOFF_FACTOR,
    OPT_BACKOFF_MAX,
    OPT_BACKOFF_RESET,
    OPT_MAX_RESTARTS,
    OPT_RESTART_WINDOW,
    OPT_START_TIMEOUT,
    OPT_DRAIN_TIMEOUT,
    OPT_KILL_TIMEOUT,
    OPT_SAMPLE_INTERVAL,
    OPT_LOG_DIR,
    OPT_LOG_MAX,
};

static const struct option sup_long_opts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},
    {"name", required_argument, NULL, OPT_NAME},
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"runtime-dir", required_argument, NULL, OPT_RUNTIME_DIR},
    {"ready-fd", required_argument, NULL, OPT_READY_FD},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"check", no_argument, NULL, OPT_CHECK},
    {"pool", required_argument, NULL, OPT_POOL},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"names", required_argument, NULL, OPT_NAMES},
    {"app", required_argument, NULL, OPT_APP},
    {"exec", required_argument, NULL, OPT_EXEC},
    {"app-path", required_argument, NULL, OPT_APP_PATH},
    {"restart", required_argument, NULL, OPT_RESTART},
    {"backoff-initial-ms", required_argument, NULL, OPT_BACKOFF_INITIAL},
    {"backoff-factor", required_argument, NULL, OPT_BACKOFF_FACTOR},
    {"backoff-max-ms", required_argument, NULL, OPT_BACKOFF_MAX},
    {"backoff-reset-ms", required_argument, NULL, OPT_BACKOFF_RESET},
    {"max-restarts", required_argument, NULL, OPT_MAX_RESTARTS},
    {"restart-window-ms", required_argument, NULL, OPT_RESTART_WINDOW},
    {"start-timeout-ms", required_argument, NULL, OPT_START_TIMEOUT},
    {"drain-timeout-ms", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"kill-timeout-ms", required_argument, NULL, OPT_KILL_TIMEOUT},
    {"sample-interval-ms", required_argument, NULL, OPT_SAMPLE_INTERVAL},
    {"log-dir", required_argument, NULL, OPT_LOG_DIR},
    {"log-max-bytes", required_argument, NULL, OPT_LOG_MAX},
    {NULL, 0, NULL, 0},
};

/* Splits "a,b,c" in place into o->names. */
static int sup_split_names(sup_cli_opts_t *o, char *text)
{
    char *save = NULL;

    o->pool.n_names = 0;
    for (char *tok = strtok_r(text, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->pool.n_names == SHOAL_SUP_MAX_WORKERS)
            return cli_usage_error("supervise", "more than %d --names",
                                   SHOAL_SUP_MAX_WORKERS);
        o->names[o->pool.n_names++] = tok;
    }
    if (o->pool.n_names == 0)
        return cli_usage_error("supervise", "--names takes A,B,...");
    o->pool.names = o->names;
    return 0;
}

static int sup_opt_ms(const char *opt, uint64_t *out)
{
    if (!cli_parse_u64(optarg, out) || *out > 86400000u)
        return cli_usage_error("supervise",
                               "%s takes milliseconds (at most a day)", opt);
    return 0;
}

static int sup_parse_pool_opt(sup_cli_opts_t *o, int c, const char *opt)
{
    uint64_t v;
    char *end;

    switch (c) {
    case OPT_POOL:
        o->pool.name = optarg;
        return 0;
    case OPT_WORKERS:
        if (!cli_parse_u64(optarg, &v) || v == 0 || v > SHOAL_SUP_MAX_WORKERS)
            return cli_usage_error("supervise",
                                   "--workers takes a number from 1 to %d",
                                   SHOAL_SUP_MAX_WORKERS);
        o->pool.workers = (unsigned)v;
        return 0;
    case OPT_NAMES:
        free(o->names_text);
        o->names_text = strdup(optarg);
        if (o->names_text == NULL)
            return CLI_EXIT_FAILURE;
        return sup_split_names(o, o->names_text);
    case OPT_APP:
        if (o->pool.n_apps == SUP_CLI_MAX_APPS)
            return cli_usage_error("supervise", "too many --app");
        o->apps[o->pool.n_apps++] = optarg;
        o->pool.apps = o->apps;
        return 0;
    case OPT_EXEC:
        if (o->pool.n_execs == SUP_CLI_MAX_APPS)
            return cli_usage_error("supervise", "too many --exec");
        o->execs[o->pool.n_execs++] = optarg;
        o->pool.execs = o->execs;
        return 0;
    case OPT_APP_PATH:
        o->pool.app_path = optarg;
        return 0;
    case OPT_RESTART:
        if (shoal_restart_policy_parse(optarg, &o->pool.restart) != 0)
            return cli_usage_error("supervise",
                                   "--restart takes permanent, transient "
                                   "or temporary");
        return 0;
    case OPT_BACKOFF_INITIAL:
        return sup_opt_ms(opt, &o->pool.backoff_initial_ms);
    case OPT_BACKOFF_FACTOR:
        errno = 0;
        o->pool.backoff_factor = strtod(optarg, &end);
        if (errno != 0 || *end != '\0' || end == optarg ||
            !(o->pool.backoff_factor >= 1.0) ||
            o->pool.backoff_factor > 1000.0)
            return cli_usage_error("supervise",
                                   "--backoff-factor takes a number from 1 "
                                   "to 1000");
        return 0;
    case OPT_BACKOFF_MAX:
        return sup_opt_ms(opt, &o->pool.backoff_max_ms);
    case OPT_BACKOFF_RESET:
        return sup_opt_ms(opt, &o->pool.reset_after_ms);
    case OPT_MAX_RESTARTS:
        if (!cli_parse_u64(optarg, &v) || v > 1000000)
            return cli_usage_error("supervise",
                                   "--max-restarts takes a number up to "
                                   "1000000");
        o->pool.max_restarts = (unsigned)v;
        return 0;
    case OPT_RESTART_WINDOW:
        if (sup_opt_ms(opt, &o->pool.restart_window_ms))
            return CLI_EXIT_FAILURE;
        if (o->pool.restart_window_ms == 0)
            return cli_usage_error("supervise",
                                   "--restart-window-ms must be positive");
        return 0;
    case OPT_START_TIMEOUT:
        return sup_opt_ms(opt, &o->pool.start_timeout_ms);
    }
    return cli_usage_error("supervise", "unknown option");
}

static int sup_parse_opts(int argc, char **argv, sup_cli_opts_t *o)
{
    uint64_t v;
    int c, idx = 0, err;

    memset(o, 0, sizeof(*o));
    shoal_pool_opts_default(&o->pool);
    shoal_supervisor_opts_default(&o->sup);
    o->ready_fd = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", sup_long_opts, &idx)) != -1) {
        const char *opt = NULL;
        for (const struct option *lo = sup_long_opts; lo->name; lo++)
            if (lo->val == c)
                opt = lo->name;
        switch (c) {
        case OPT_CONFIG:
            o->config = optarg;
            break;
        case OPT_NAME:
            o->name = optarg;
            break;
        case OPT_LISTEN:
            if (o->n_listen == SUP_CLI_MAX_LISTEN)
                return cli_usage_error("supervise", "too many --listen");
            o->listen[o->n_listen++] = optarg;
            break;
        case OPT_RUNTIME_DIR:
            o->runtime_dir = optarg;
            break;
        case OPT_READY_FD:
            if (!cli_parse_u64(optarg, &v) || v > 65535)
                return cli_usage_error("supervise", "--ready-fd takes an fd");
            o->ready_fd = (int)v;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_CHECK:
            o->check = true;
            break;
        case OPT_DRAIN_TIMEOUT:
            o->set_drain = true;
            if ((err = sup_opt_ms("--drain-timeout-ms",
                                  &o->sup.drain_timeout_ms)))
                return err;
            break;
        case OPT_KILL_TIMEOUT:
            o->set_kill = true;
            if ((err =
                     sup_opt_ms("--kill-timeout-ms", &o->sup.kill_timeout_ms)))
                return err;
            break;
        case OPT_SAMPLE_INTERVAL:
            o->set_sample = true;
            if ((err = sup_opt_ms("--sample-interval-ms",
                                  &o->sup.sample_interval_ms)))
                return err;
            break;
        case OPT_LOG_DIR:
            o->set_log_dir = true;
            o->sup.log_dir = optarg;
            break;
        case OPT_LOG_MAX:
            o->set_log_max = true;
            if (!cli_parse_u64(optarg, &o->sup.log_max_bytes) ||
                o->sup.log_max_bytes < 2 * SHOAL_SUP_MAX_LINE_BYTES)
                return cli_usage_error("supervise",
                                       "--log-max-bytes takes a number of "
                                       "at least %d",
                                       2 * SHOAL_SUP_MAX_LINE_BYTES);
            break;
        case '?':
            return cli_usage_error("supervise", "unknown option");
        default: {
            char dashed[64];
            if (o->pool_option == NULL)
                o->pool_option = opt;
            snprintf(dashed, sizeof(dashed), "--%s", opt ? opt : "?");
            if ((err = sup_parse_pool_opt(o, c, dashed)))
                return err;
        }
        }
    }
    if (optind < argc)
        return cli_usage_error("supervise", "unexpected argument '%s'",
                               argv[optind]);
    if (o->config != NULL && o->pool_option != NULL)
        return cli_usage_error("supervise",
                               "--%s cannot be combined with --config: set "
                               "it in the file",
                               o->pool_option);
    if (o->pool.backoff_max_ms < o->pool.backoff_initial_ms)
        return cli_usage_error("supervise", "--backoff-max-ms is below "
                                            "--backoff-initial-ms");
    o->sup.quiet = o->quiet;
    o->sup.runtime_dir = o->runtime_dir;
    return 0;
}

/* The command line's supervisor settings win over the file's. */
static void sup_apply_overrides(const sup_cli_opts_t *o,
                                shoal_supervisor_opts_t *sup)
{
    if (o->set_log_dir)
        sup->log_dir = o->sup.log_dir;
    if (o->set_log_max)
        sup->log_max_bytes = o->sup.log_max_bytes;
    if (o->set_drain)
        sup->drain_timeout_ms = o->sup.drain_timeout_ms;
    if (o->set_kill)
        sup->kill_timeout_ms = o->sup.kill_timeout_ms;
    if (o->set_sample)
        sup->sample_interval_ms = o->sup.sample_interval_ms;
    sup->quiet = o->sup.quiet;
    sup->runtime_dir = o->sup.runtime_dir;
}

static void sup_cli_closed_cb(shoal_supervisor_t *sup)
{
    sup_cli_t *cli = sup->data;

    uv_close((uv_handle_t *)&cli->sigint, NULL);
    uv_close((uv_handle_t *)&cli->sigterm, NULL);
    shoal_node_close(&cli->node, NULL);
}

/* The dispatcher goes first: the supervisor's close kills what still
 * runs, and the node outlives both. */
static void sup_cli_dispatch_closed_cb(shoal_dispatch_t *d)
{
    sup_cli_t *cli = d->data;

    shoal_supervisor_close(&cli->sup, sup_cli_closed_cb);
}

static void sup_cli_close(sup_cli_t *cli)
{
    if (cli->dispatching) {
        cli->dispatching = false;
        shoal_dispatch_close(&cli->dispatch, sup_cli_dispatch_closed_cb);
        return;
    }
    shoal_supervisor_close(&cli->sup, sup_cli_closed_cb);
}

static void sup_cli_stopped_cb(shoal_supervisor_t *sup, int status)
{
    sup_cli_t *cli = sup->data;

    cli->status = status == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
    sup_cli_close(cli);
}

static void sup_cli_dispatch_drained_cb(shoal_dispatch_t *d, void *data)
{
    sup_cli_t *cli = data;

    (void)d;
    cli->drain_done(cli->drain_done_data);
}

/* At stop: the dispatcher takes no more tasks and finishes those it has
 * (or the supervisor's drain timeout passes). */
static void sup_cli_drain(void *data, shoal_drain_done_fn done,
                          void *done_data)
{
    sup_cli_t *cli = data;

    cli->drain_done = done;
    cli->drain_done_data = done_data;
    if (shoal_dispatch_drain(&cli->dispatch, sup_cli_dispatch_drained_cb,
                             cli) != 0)
        done(done_data);
}

static int sup_cli_attach_dispatch(sup_cli_t *cli)
{
    int err = shoal_dispatch_init(&cli->dispatch, &cli->node, NULL);

    if (err)
        return err;
    cli->dispatch.data = cli;
    cli->dispatching = true;
    return shoal_supervisor_add_drain(&cli->sup, sup_cli_drain, cli);
}

static void sup_cli_signal_cb(uv_signal_t *sig, int signum)
{
    sup_cli_t *cli = sig->data;

    (void)signum;
    if (cli->stopping || shoal_supervisor_stopping(&cli->sup)) {
        fprintf(stderr, "shoal supervise: already stopping (the kill timeout "
                        "bounds it)\n");
        return;
    }
    cli->stopping = true;
    shoal_supervisor_stop(&cli->sup, sup_cli_stopped_cb);
}

static void sup_cli_report_ready(sup_cli_t *cli, const sup_cli_opts_t *o)
{
    cJSON *ready = cJSON_CreateObject();
    cJSON *addresses = cJSON_AddArrayToObject(ready, "addresses");
    const char *name = shoal_node_name(&cli->node);

    cJSON_AddStringToObject(ready, "name", name);
    cJSON_AddStringToObject(ready, "url", shoal_supervisor_url(&cli->sup));
    cJSON_AddNumberToObject(ready, "pid", getpid());
    for (size_t i = 0; i < shoal_node_address_count(&cli->node); i++) {
        const char *url = shoal_node_address(&cli->node, i);
        cJSON_AddItemToArray(addresses, cJSON_CreateString(url));
        if (!o->quiet)
            printf("supervisor %s listening on %s\n", name, url);
    }
    cli_write_ready("supervise", o->ready_fd, ready);
}

static void sup_print_pool(const shoal_pool_opts_t *p)
{
    unsigned workers = p->workers   ? p->workers
                       : p->n_names ? (unsigned)p->n_names
                                    : uv_available_parallelism();

    printf("pool %s: %u worker%s, restart %s, apps", p->name, workers,
           workers == 1 ? "" : "s", shoal_restart_policy_name(p->restart));
    for (size_t i = 0; i < p->n_apps; i++)
        printf(" %s", p->apps[i]);
    for (size_t i = 0; i < p->n_execs; i++)
        printf(" [%s]", p->execs[i]);
    if (p->n_apps + p->n_execs == 0)
        printf(" (none)");
    printf("\n");
}

static int sup_cli_run(sup_cli_opts_t *o, const char *name,
                       const char *const *listen, size_t n_listen,
                       const shoal_supervisor_opts_t *sopts,
                       const shoal_pool_opts_t *pools, size_t n_pools)
{
    uv_loop_t *loop = uv_default_loop();
    shoal_supervisor_opts_t sup_opts = *sopts;
    shoal_node_opts_t nopts;
    char why[1024];
    sup_cli_t cli;
    int err;

    memset(&cli, 0, sizeof(cli));
    memset(&nopts, 0, sizeof(nopts));
    nopts.name = name ? name : SUP_CLI_DEFAULT_NAME;
    err = shoal_node_init(loop, &cli.node, &nopts);
    if (err) {
        fprintf(stderr, "shoal supervise: --name %s: %s\n", nopts.name,
                shoal_strerror(err));
        return CLI_EXIT_FAILURE;
    }
    for (size_t i = 0; i < n_listen && err == 0; i++) {
        err = shoal_node_listen(&cli.node, listen[i]);
        if (err)
            fprintf(stderr, "shoal supervise: cannot listen on %s: %s\n",
                    listen[i], shoal_strerror(err));
    }
    if (err == 0) {
        /* `shoal stop URL` ends this process like SIGTERM does. */
        sup_opts.on_remote_stop = sup_cli_stopped_cb;
        err = shoal_supervisor_init(&cli.sup, &cli.node, &sup_opts);
        if (err)
            fprintf(stderr, "shoal supervise: %s\n", shoal_strerror(err));
    }
    if (err) {
        shoal_node_close(&cli.node, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        return CLI_EXIT_FAILURE;
    }
    cli.sup.data = &cli;
    cli.status = CLI_EXIT_FAILURE;
    uv_signal_init(loop, &cli.sigint);
    uv_signal_init(loop, &cli.sigterm);
    cli.sigint.data = cli.sigterm.data = &cli;
    err = sup_cli_attach_dispatch(&cli);
    if (err)
        fprintf(stderr, "shoal supervise: dispatch: %s\n",
                shoal_strerror(err));
    for (size_t i = 0; i < n_pools && err == 0; i++) {
        why[0] = '\0';
        err = shoal_supervisor_add_pool(&cli.sup, &pools[i], why, sizeof(why));
        if (err)
            fprintf(stderr, "shoal supervise: %s\n",
                    why[0] ? why : shoal_strerror(err));
    }
    if (err) {
        sup_cli_close(&cli);
        uv_run(loop, UV_RUN_DEFAULT);
        return CLI_EXIT_FAILURE;
    }
    uv_signal_start(&cli.sigint, sup_cli_signal_cb, SIGINT);
    uv_signal_start(&cli.sigterm, sup_cli_signal_cb, SIGTERM);
    shoal_supervisor_start(&cli.sup);
    sup_cli_report_ready(&cli, o);
    if (!o->quiet) {
        for (size_t i = 0; i < n_pools; i++)
            sup_print_pool(&pools[i]);
        fflush(stdout);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return cli.status;
}

int cli_cmd_supervise(int argc, char **argv)
{
    shoal_supervisor_config_t cfg;
    const char *listen[2 * SUP_CLI_MAX_LISTEN];
    size_t n_listen = 0;
    sup_cli_opts_t o;
    char why[1200];
    int err;

    memset(&cfg, 0, sizeof(cfg));
    if ((err = sup_parse_opts(argc, argv, &o))) {
        free(o.names_text);
        return err;
    }
    /* Workers must not inherit the ready fd: whoever waits on it would
     * see it open until the last worker exits. */
    if (o.ready_fd >= 0 && fcntl(o.ready_fd, F_SETFD, FD_CLOEXEC) != 0) {
        fprintf(stderr, "shoal supervise: --ready-fd %d: %s\n", o.ready_fd,
                strerror(errno));
        free(o.names_text);
        return CLI_EXIT_FAILURE;
    }
    if (o.config != NULL) {
        err = shoal_supervisor_config_load(o.config, &cfg, why, sizeof(why));
        if (err) {
            fprintf(stderr, "shoal supervise: invalid configuration: %s\n",
                    why);
            free(o.names_text);
            return CLI_EXIT_FAILURE;
        }
        for (size_t i = 0; i < cfg.n_listen && n_listen < 16; i++)
            listen[n_listen++] = cfg.listen[i];
        sup_apply_overrides(&o, &cfg.sup);
    }
    for (size_t i = 0; i < o.n_listen; i++)
        listen[n_listen++] = o.listen[i];
    if (o.check) {
        printf("configuration OK\n");
        if (o.config != NULL)
            for (size_t i = 0; i < cfg.n_pools; i++)
                sup_print_pool(&cfg.pools[i]);
        else
            sup_print_pool(&o.pool);
        err = CLI_EXIT_OK;
    } else if (o.config != NULL) {
        err = sup_cli_run(&o, o.name ? o.name : cfg.name, listen, n_listen,
                          &cfg.sup, cfg.pools, cfg.n_pools);
    } else {
        err = sup_cli_run(&o, o.name, listen, n_listen, &o.sup, &o.pool, 1);
    }
    uv_loop_close(uv_default_loop());
    shoal_supervisor_config_free(&cfg);
    free(o.names_text);
    return err;
}

/* ---- the remote controls -------------------------------------------------
 */

typedef struct {
    shoal_framing_t framing;
    uint64_t timeout_ms;
    bool json;
    bool pretty;
    bool wait; /* stop, restart: until done; status: until online */
} sup_client_opts_t;

static const struct option sup_client_long_opts[] = {
    {"framing", required_argument, NULL, 'f'},
    {"timeout", required_argument, NULL, 't'},
    {"json", no_argument, NULL, 'j'},
    {"pretty", no_argument, NULL, 'p'},
    {"wait-online", no_argument, NULL, 'w'},
    {"no-wait", no_argument, NULL, 'n'},
    {NULL, 0, NULL, 0},
};

static int sup_client_parse(const char *cmd, int argc, char **argv,
                            sup_client_opts_t *o, bool wait_default)
{
    int c;

    o->framing = SHOAL_FRAMING_NDJSON;
    o->timeout_ms = SUP_CLI_TIMEOUT_MS;
    o->json = o->pretty = false;
    o->wait = wait_default;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", sup_client_long_opts, NULL)) !=
           -1) {
        switch (c) {
        case 'f':
            if (shoal_framing_parse(optarg, &o->framing) != 0)
                return cli_usage_error(cmd, "unknown framing '%s'", optarg);
            break;
        case 't':
            if (!cli_parse_u64(optarg, &o->timeout_ms))
                return cli_usage_error(cmd, "--timeout takes milliseconds");
            break;
        case 'j':
            o->json = true;
            break;
        case 'p':
            o->pretty = o->json = true;
            break;
        case 'w':
            if (strcmp(cmd, "status") != 0)
                return cli_usage_error(cmd, "unknown option");
            o->wait = true;
            break;
        case 'n':
            if (strcmp(cmd, "status") == 0)
                return cli_usage_error(cmd, "unknown option");
            o->wait = false;
            break;
        default:
            return cli_usage_error(cmd, "unknown option");
        }
    }
    return 0;
}

/* Runs the client's loop for ms milliseconds: the pause between two
 * status requests. */
static void sup_client_timer_cb(uv_timer_t *timer)
{
    *(bool *)timer->data = true;
}

static void sup_client_pause(cli_client_t *c, uint64_t ms)
{
    uv_timer_t timer;
    bool fired = false;

    uv_timer_init(&c->loop, &timer);
    timer.data = &fired;
    uv_timer_start(&timer, sup_client_timer_cb, ms, 0);
    while (!fired && uv_run(&c->loop, UV_RUN_ONCE))
        ;
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
}

static int sup_client_fail(const char *cmd, cli_client_t *c, int status)
{
    fprintf(stderr, "shoal %s: %s: %s\n", cmd, c->code, c->message);
    if (status == SHOAL_ETIMEDOUT || status == SHOAL_ECONNCLOSED)
        return CLI_EXIT_FAILURE;
    return CLI_EXIT_ERROR_REPLY;
}

/* Calls supervisor.ACTION and parses the result; NULL on failure (with
 * *status set). */
static cJSON *sup_client_call(cli_client_t *c, const char *action,
                              const char *args_json, uint64_t timeout_ms,
                              int *status)
{
    shoal_payload_t args = {args_json, args_json ? strlen(args_json) : 0,
                            SHOAL_CODEC_JSON};

    *status = cli_client_call(c, "supervisor", action,
                              args_json ? &args : NULL, timeout_ms);
    if (*status != 0)
        return NULL;
    return cJSON_ParseWithLength(c->result.base, c->result.len);
}

static const char *sup_fmt_duration(double ms, char *buf, size_t len)
{
    double s = ms / 1000.0;

    if (s < 60)
        snprintf(buf, len, "%.0fs", floor(s));
    else if (s < 3600)
        snprintf(buf, len, "%.0fm", floor(s / 60));
    else if (s < 86400)
        snprintf(buf, len, "%.0fh", floor(s / 3600));
    else
        snprintf(buf, len, "%.0fd", floor(s / 86400));
    return buf;
}

static const char *sup_fmt_bytes(double bytes, char *buf, size_t len)
{
    if (bytes <= 0)
        snprintf(buf, len, "-");
    else if (bytes < 1024 * 1024)
        snprintf(buf, len, "%.1f KiB", bytes / 1024);
    else if (bytes < 1024.0 * 1024 * 1024)
        snprintf(buf, len, "%.1f MiB", bytes / (1024 * 1024));
    else
        snprintf(buf, len, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
    return buf;
}

#define SUP_COLS 12

static const char *const sup_col_names[SUP_COLS] = {
    "NAME",     "POOL", "INDEX",     "PID",  "STATE", "UPTIME",
    "RESTARTS", "APPS", "IN_FLIGHT", "DONE", "CPU%",  "MEM"};

static const char *sup_jstr(const cJSON *obj, const char *key)
{
    const char *s =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
    return s ? s : "-";
}

static void sup_jnum(const cJSON *obj, const char *key, const char *fmt,
                     char *buf, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (cJSON_IsNumber(v))
        snprintf(buf, len, fmt, v->valuedouble);
    else
        snprintf(buf, len, "-");
}

/* One row of the worker table, as strings. */
static void sup_worker_row(const cJSON *w, char cells[SUP_COLS][256])
{
    const cJSON *apps = cJSON_GetObjectItemCaseSensitive(w, "applications");
    const cJSON *app;
    bool live = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(w, "pid"));
    size_t n = 0;

    snprintf(cells[0], 256, "%s", sup_jstr(w, "name"));
    snprintf(cells[1], 256, "%s", sup_jstr(w, "pool"));
    sup_jnum(w, "index", "%.0f", cells[2], 256);
    sup_jnum(w, "pid", "%.0f", cells[3], 256);
    snprintf(cells[4], 256, "%s", sup_jstr(w, "state"));
    if (live)
        sup_fmt_duration(cJSON_GetNumberValue(
                             cJSON_GetObjectItemCaseSensitive(w, "uptime_ms")),
                         cells[5], 256);
    else
        snprintf(cells[5], 256, "-");
    sup_jnum(w, "restarts", "%.0f", cells[6], 256);
    cells[7][0] = '\0';
    cJSON_ArrayForEach(app, apps)
    {
        if (cJSON_IsString(app) && n + strlen(app->valuestring) + 2 < 256)
            n += (size_t)snprintf(cells[7] + n, 256 - n, "%s%s", n ? "," : "",
                                  app->valuestring);
    }
    if (n == 0)
        snprintf(cells[7], 256, "-");
    sup_jnum(w, "calls_in_flight", "%.0f", cells[8], 256);
    sup_jnum(w, "calls_done", "%.0f", cells[9], 256);
    if (live)
        sup_jnum(w, "cpu_percent", "%.1f", cells[10], 256);
    else
        snprintf(cells[10], 256, "-");
    sup_fmt_bytes(
        cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(w, "rss_bytes")),
        cells[11], 256);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w, "remote")))
        snprintf(cells[1], 256, "(joined)");
}

static void sup_print_table(const cJSON *status)
{
    const cJSON *workers = cJSON_GetObjectItemCaseSensitive(status, "workers");
    const cJSON *pools = cJSON_GetObjectItemCaseSensitive(status, "pools");
    size_t n = (size_t)cJSON_GetArraySize(workers), r = 0;
    size_t width[SUP_COLS];
    char(*rows)[SUP_COLS][256];
    const cJSON *item;
    char up[32];

    printf(
        "supervisor %s (pid %.0f) %s, up %s, workers join %s\n",
        sup_jstr(status, "name"),
        cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(status, "pid")),
        sup_jstr(status, "state"),
        sup_fmt_duration(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
                             status, "uptime_ms")),
                         up, sizeof(up)),
        sup_jstr(status, "url"));
    cJSON_ArrayForEach(item, pools)
    {
        printf("pool %s: %s, %.0f/%.0f online, restart %s\n",
               sup_jstr(item, "name"), sup_jstr(item, "state"),
               cJSON_GetNumberValue(
                   cJSON_GetObjectItemCaseSensitive(item, "online")),
               cJSON_GetNumberValue(
                   cJSON_GetObjectItemCaseSensitive(item, "workers")),
               sup_jstr(item, "restart"));
    }
    printf("\n");
    rows = calloc(n + 1, sizeof(*rows));
    if (rows == NULL)
        return;
    for (size_t c = 0; c < SUP_COLS; c++) {
        snprintf(rows[0][c], 256, "%s", sup_col_names[c]);
        width[c] = strlen(sup_col_names[c]);
    }
    cJSON_ArrayForEach(item, workers)
    {
        r++;
        sup_worker_row(item, rows[r]);
        for (size_t c = 0; c < SUP_COLS; c++)
            if (strlen(rows[r][c]) > width[c])
                width[c] = strlen(rows[r][c]);
    }
    for (size_t i = 0; i <= r; i++) {
        for (size_t c = 0; c + 1 < SUP_COLS; c++)
            printf("%-*s  ", (int)width[c], rows[i][c]);
        printf("%s\n", rows[i][SUP_COLS - 1]);
    }
    free(rows);
    cJSON_ArrayForEach(item, workers)
    {
        const char *err = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(item, "last_error"));
        const char *state = sup_jstr(item, "state");
        if (err != NULL && strcmp(state, "online") != 0)
            printf("%s: last error: %s\n", sup_jstr(item, "name"), err);
    }
}

/* True when a pool is errored: waiting for it to be online is vain. */
static bool sup_any_errored(const cJSON *status)
{
    const cJSON *p;

    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(status, "pools"))
    {
        if (strcmp(sup_jstr(p, "state"), "errored") == 0)
            return true;
    }
    return false;
}

/* True when every local worker is online (and there is at least one). */
static bool sup_all_online(const cJSON *status)
{
    const cJSON *workers = cJSON_GetObjectItemCaseSensitive(status, "workers");
    const cJSON *w;
    size_t local = 0;

    cJSON_ArrayForEach(w, workers)
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w, "remote")))
            continue;
        local++;
        if (strcmp(sup_jstr(w, "state"), "online") != 0)
            return false;
    }
    return local > 0;
}

void cli_usage_status(FILE *out)
{
    fprintf(
        out,
        "usage: shoal status URL [OPTIONS]\n\n"
        "Prints the workers of the supervisor at URL like `pm2 list`: "
        "name, pool,\nindex, pid, state (starting, online, stopping, "
        "errored, stopped),\nuptime, restarts, applications, calls in "
        "flight, calls done, CPU %%\nand memory. Nodes that joined by "
        "hand are listed as (joined).\n\n"
        "  --json          print the status as JSON (the fields are in\n"
        "                  docs/supervisor.md)\n"
        "  --pretty        indented JSON\n"
        "  --wait-online   first wait until every worker is online "
        "(exit 2 if\n"
        "                  they are not within --timeout, 1 as soon as "
        "a pool is\n"
        "                  errored)\n"
        "  --timeout MS    give up after MS milliseconds (default "
        "60000)\n"
        "  --framing F     ndjson (default), json-socket or msgpack\n\n"
        "Example: shoal status unix:///tmp/shoal-x1y2z3/supervisor.sock\n");
}

int cli_cmd_status(int argc, char **argv)
{
    sup_client_opts_t o;
    cli_client_t c;
    cJSON *status = NULL;
    uint64_t start;
    char *text;
    int err;

    if ((err = sup_client_parse("status", argc, argv, &o, false)))
        return err;
    if (argc - optind != 1)
        return cli_usage_error("status", "expected URL");
    if (cli_client_open(&c, argv[optind], o.framing) != 0) {
        cli_client_close(&c);
        return CLI_EXIT_FAILURE;
    }
    start = uv_now(&c.loop);
    for (;;) {
        cJSON_Delete(status);
        status = sup_client_call(&c, "status", NULL, o.timeout_ms, &err);
        if (status == NULL) {
            err = err ? sup_client_fail("status", &c, err) : CLI_EXIT_FAILURE;
            cli_client_close(&c);
            return err;
        }
        if (!o.wait || sup_all_online(status))
            break;
        if (sup_any_errored(status)) {
            fprintf(stderr, "shoal status: a pool is errored\n");
            err = CLI_EXIT_ERROR_REPLY;
            break;
        }
        uv_update_time(&c.loop);
        if (o.timeout_ms > 0 && uv_now(&c.loop) - start >= o.timeout_ms) {
            fprintf(stderr,
                    "shoal status: not every worker online after %llu ms\n",
                    (unsigned long long)o.timeout_ms);
            err = CLI_EXIT_FAILURE;
            break;
        }
        sup_client_pause(&c, SUP_CLI_POLL_MS);
    }
    if (o.json) {
        text = o.pretty ? cJSON_Print(status) : cJSON_PrintUnformatted(status);
        if (text)
            printf("%s\n", text);
        free(text);
    } else {
        sup_print_table(status);
    }
    cJSON_Delete(status);
    cli_client_close(&c);
    return err;
}

void cli_usage_stop(FILE *out)
{
    fprintf(out,
            "usage: shoal stop URL [OPTIONS]\n\n"
            "Stops the supervisor at URL as SIGTERM would: it stops taking "
            "work,\nlets calls in flight finish (drain timeout), sends "
            "SIGTERM to its\nworkers, SIGKILL after the kill timeout, and "
            "exits once all are\nreaped. Waits until it has exited.\n\n"
            "  --no-wait       return once the supervisor took the request\n"
            "  --timeout MS    give up waiting after MS milliseconds "
            "(default 60000)\n"
            "  --framing F     ndjson (default), json-socket or msgpack\n");
}

static void sup_client_conn_closed(shoal_node_t *node, shoal_conn_t *conn,
                                   int status, void *data)
{
    (void)node;
    (void)conn;
    (void)status;
    *(bool *)data = true;
}

int cli_cmd_stop(int argc, char **argv)
{
    shoal_node_hooks_t hooks;
    sup_client_opts_t o;
    bool closed = false;
    cli_client_t c;
    cJSON *result;
    uint64_t start;
    int err;

    if ((err = sup_client_parse("stop", argc, argv, &o, true)))
        return err;
    if (argc - optind != 1)
        return cli_usage_error("stop", "expected URL");
    if (cli_client_open(&c, argv[optind], o.framing) != 0) {
        cli_client_close(&c);
        return CLI_EXIT_FAILURE;
    }
    memset(&hooks, 0, sizeof(hooks));
    hooks.on_conn_close = sup_client_conn_closed;
    hooks.data = &closed;
    shoal_node_add_hooks(&c.node, &hooks);
    result = sup_client_call(&c, "stop", NULL, o.timeout_ms, &err);
    if (result == NULL) {
        err = err ? sup_client_fail("stop", &c, err) : CLI_EXIT_FAILURE;
        cli_client_close(&c);
        return err;
    }
    cJSON_Delete(result);
    err = CLI_EXIT_OK;
    /* The supervisor closes this connection when it exits. */
    start = uv_now(&c.loop);
    while (o.wait && !closed) {
        uv_update_time(&c.loop);
        if (o.timeout_ms > 0 && uv_now(&c.loop) - start >= o.timeout_ms) {
            fprintf(stderr, "shoal stop: still running after %llu ms\n",
                    (unsigned long long)o.timeout_ms);
            err = CLI_EXIT_FAILURE;
            break;
        }
        sup_client_pause(&c, SUP_CLI_POLL_MS);
    }
    if (err == CLI_EXIT_OK)
        printf(o.wait ? "stopped\n" : "stopping\n");
    cli_client_close(&c);
    return err;
}

void cli_usage_restart(FILE *out)
{
    fprintf(out,
            "usage: shoal restart URL [WORKER|POOL] [OPTIONS]\n\n"
            "Restarts one worker, every worker of a pool, or every worker "
            "of the\nsupervisor at URL: SIGTERM, SIGKILL after the kill "
            "timeout, then a new\nprocess under the same name and index. "
            "Errored and stopped workers\nstart again with a fresh restart "
            "budget. Waits until each is online\nagain.\n\n"
            "  --no-wait       return once the supervisor took the request\n"
            "  --timeout MS    give up waiting after MS milliseconds "
            "(default 60000)\n"
            "  --framing F     ndjson (default), json-socket or msgpack\n");
}

/* Whether a restarted worker is back: online with another pid (1), not
 * yet (0), or down for good (-1). */
static int sup_restart_done(const cJSON *status, const cJSON *item)
{
    const char *name = sup_jstr(item, "name");
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(item, "pid");
    const cJSON *w;

    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(status, "workers"))
    {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(w, "pid");
        const char *state = sup_jstr(w, "state");
        if (strcmp(sup_jstr(w, "name"), name) != 0)
            continue;
        if (strcmp(state, "errored") == 0 || strcmp(state, "stopped") == 0)
            return -1;
        if (strcmp(state, "online") == 0 && cJSON_IsNumber(pid) &&
            (!cJSON_IsNumber(old) || old->valuedouble != pid->valuedouble))
            return 1;
        return 0;
    }
    return -1;
}

int cli_cmd_restart(int argc, char **argv)
{
    sup_client_opts_t o;
    cli_client_t c;
    cJSON *result, *status = NULL, *args;
    const cJSON *item;
    char *args_text = NULL;
    uint64_t start;
    int err, n;

    if ((err = sup_client_parse("restart", argc, argv, &o, true)))
        return err;
    n = argc - optind;
    if (n < 1 || n > 2)
        return cli_usage_error("restart", "expected URL [WORKER|POOL]");
    if (n == 2) {
        args = cJSON_CreateObject();
        cJSON_AddStringToObject(args, "worker", argv[optind + 1]);
        args_text = cJSON_PrintUnformatted(args);
        cJSON_Delete(args);
    }
    if (cli_client_open(&c, argv[optind], o.framing) != 0) {
        free(args_text);
        cli_client_close(&c);
        return CLI_EXIT_FAILURE;
    }
    result = sup_client_call(&c, "restart", args_text, o.timeout_ms, &err);
    free(args_text);
    if (result == NULL) {
        err = err ? sup_client_fail("restart", &c, err) : CLI_EXIT_FAILURE;
        cli_client_close(&c);
        return err;
    }
    err = CLI_EXIT_OK;
    start = uv_now(&c.loop);
    while (o.wait) {
        bool all = true;
        int s;
        cJSON_Delete(status);
        status = sup_client_call(&c, "status", NULL, o.timeout_ms, &s);
        if (status == NULL) {
            err = s ? sup_client_fail("restart", &c, s) : CLI_EXIT_FAILURE;
            break;
        }
        cJSON_ArrayForEach(
            item, cJSON_GetObjectItemCaseSensitive(result, "restarted"))
        {
            int done = sup_restart_done(status, item);
            if (done < 0) {
                fprintf(stderr, "shoal restart: %s did not come back\n",
                        sup_jstr(item, "name"));
                err = CLI_EXIT_ERROR_REPLY;
            }
            all = all && done != 0;
        }
        if (all)
            break;
        uv_update_time(&c.loop);
        if (o.timeout_ms > 0 && uv_now(&c.loop) - start >= o.timeout_ms) {
            fprintf(stderr, "shoal restart: not back after %llu ms\n",
                    (unsigned long long)o.timeout_ms);
            err = CLI_EXIT_FAILURE;
            break;
        }
        sup_client_pause(&c, SUP_CLI_POLL_MS);
    }
    cJSON_ArrayForEach(item,
                       cJSON_GetObjectItemCaseSensitive(result, "restarted"))
    {
        printf("%s %s\n",
               o.wait && err == CLI_EXIT_OK ? "restarted" : "restarting",
               sup_jstr(item, "name"));
    }
    cJSON_Delete(status);
    cJSON_Delete(result);
    cli_client_close(&c);
    return err;
}
