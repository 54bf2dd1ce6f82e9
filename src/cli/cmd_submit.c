/* shoal submit: streams tasks (NDJSON) to a dispatcher and their outcomes
 * back (NDJSON), with a window, a progress bar, a job log and resume. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define SUBMIT_DEFAULT_WINDOW 1024
#define SUBMIT_MAX_WINDOW 1000000
#define SUBMIT_TICK_MS 200
#define SUBMIT_MAX_NODES 256
/* Lines read per turn of the loop, so that outcomes keep flowing. */
#define SUBMIT_READ_PER_TURN 4096

typedef struct {
    const char *url;
    const char *app;
    const char *action;
    const char *in_path;
    const char *joblog_path;
    shoal_strategy_t strategy;
    bool has_strategy;
    shoal_framing_t framing;
    size_t window;
    size_t batch;
    uint64_t timeout_ms;
    int retries;
    bool ordered;
    bool resume;
    bool resume_failed;
    int bar; /* -1: when stderr is a terminal */
    bool quiet;
} submit_opts_t;

/* A task read and not printed yet. */
typedef struct {
    uint64_t seq;
    bool busy;
    bool done; /* ordered: finished, waiting for its turn to print */
    bool skip; /* ordered: a line that needs no output */
    uint64_t start_ns;
    char *id_json;   /* the task's id as JSON */
    shoal_buf_t out; /* ordered: the outcome line */
} submit_slot_t;

/* One submit_batch call: which slot each of its tasks has. */
typedef struct {
    size_t n;
    size_t slots[];
} submit_group_t;

typedef struct {
    char name[SHOAL_MAX_NAME_BYTES + 1];
    uint64_t count;
} submit_node_count_t;

typedef struct {
    submit_opts_t o;
    uv_loop_t loop;
    shoal_node_t node;
    bool node_open;
    shoal_conn_t *conn;
    uv_signal_t sigint;
    uv_timer_t tick;
    uv_idle_t idle;
    FILE *in;
    FILE *joblog;
    char *line;
    size_t line_cap;
    uint64_t line_no;
    bool eof;
    bool stopping; /* Ctrl-C, or the connection is gone */
    bool lost;     /* the connection ended */
    int interrupts;

    submit_slot_t *slots;
    size_t *free_slots; /* unordered: a stack of free slot indices */
    size_t n_free;
    size_t in_flight;    /* slots busy */
    uint64_t next_print; /* ordered: the seq printed next */

    /* --resume: seqs already done, as a bitmap */
    uint8_t *done_bits;
    uint64_t done_bits_len;

    /* the batch being gathered */
    shoal_task_t *tasks;
    char **task_lines; /* each task's line, owned until sent */
    struct submit_task_text **task_texts;
    size_t *task_slots;
    size_t n_tasks;
    shoal_buf_t scratch;

    /* counts */
    uint64_t total; /* lines in the input, when known */
    uint64_t read, skipped, finished, ok, failed, timed_out, retried;
    uint64_t lost_tasks; /* in flight when the connection ended */
    uint64_t t0_ns;
    submit_node_count_t nodes[SUBMIT_MAX_NODES];
    size_t n_nodes;
    bool bar_drawn;
    bool out_error;
} submit_t;

void cli_usage_submit(FILE *out)
{
    fprintf(out,
            "usage: shoal submit URL --app APP --action ACTION [OPTIONS]\n\n"
            "Reads tasks as NDJSON (one a line) from --in FILE or standard "
            "input,\nsubmits them to the dispatcher at URL, and writes each "
            "task's outcome\nas one NDJSON line on standard output:\n"
            "  {\"id\",\"status\":\"ok\"|\"error\"|\"timeout\",\"node\","
            "\"attempts\",\"result\"|\"error\"}\n\n"
            "A line is a task object when it is an object with \"args\", "
            "\"app\" or\n\"action\" (fields as in docs/dispatch.md: key, "
            "strategy, node, index,\ntimeout_ms, retries, retry_on_error, "
            "retry_on_timeout, id); any other\nJSON value is the args of a "
            "task of APP.ACTION. A task's id is its line\nnumber unless it "
            "gives one.\n\n"
            "  --app APP          application of tasks that do not name one\n"
            "  --action ACTION    action of tasks that do not name one\n"
            "  --strategy S       round-robin (default), key, least-loaded, "
            "broadcast\n"
            "  --in FILE          read tasks from FILE (default: standard "
            "input)\n"
            "  --window N         tasks in flight at most (default 1024)\n"
            "  --batch N          tasks per message (default 1; 100 suits "
            "tiny tasks)\n"
            "  --ordered          print outcomes in input order (default: "
            "as they end)\n"
            "  --timeout MS       per-attempt time limit of each task\n"
            "  --retries N        attempts after the first when a node is "
            "lost\n"
            "  --joblog FILE      append one line per finished task: "
            "{\"seq\",\"id\",\n"
            "                     \"status\",\"node\",\"attempts\",\"ms\"}\n"
            "  --resume           skip the tasks the joblog already has\n"
            "  --resume-failed    skip only those that ended ok\n"
            "  --bar / --no-bar   progress on standard error (default: when "
            "it is\n"
            "                     a terminal)\n"
            "  --framing F        msgpack (default), ndjson or json-socket\n"
            "  --quiet            no summary\n\n"
            "Exits 0 when every task ended ok, 1 when some did not, 2 on a "
            "usage or\nconnection error, 130 when interrupted (Ctrl-C stops "
            "reading and waits\nfor the tasks in flight; a second Ctrl-C "
            "stops at once).\n\n"
            "Example: seq 1 1000 | shoal submit tcp://127.0.0.1:7000 --app "
            "echo --action echo\n");
}

enum {
    OPT_APP = 256,
    OPT_ACTION,
    OPT_STRATEGY,
    OPT_IN,
    OPT_WINDOW,
    OPT_BATCH,
    OPT_ORDERED,
    OPT_TIMEOUT,
    OPT_RETRIES,
    OPT_JOBLOG,
    OPT_RESUME,
    OPT_RESUME_FAILED,
    OPT_BAR,
    OPT_NO_BAR,
    OPT_FRAMING,
    OPT_QUIET,
};

static const struct option submit_long_opts[] = {
    {"app", required_argument, NULL, OPT_APP},
    {"action", required_argument, NULL, OPT_ACTION},
    {"strategy", required_argument, NULL, OPT_STRATEGY},
    {"in", required_argument, NULL, OPT_IN},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"ordered", no_argument, NULL, OPT_ORDERED},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"joblog", required_argument, NULL, OPT_JOBLOG},
    {"resume", no_argument, NULL, OPT_RESUME},
    {"resume-failed", no_argument, NULL, OPT_RESUME_FAILED},
    {"bar", no_argument, NULL, OPT_BAR},
    {"no-bar", no_argument, NULL, OPT_NO_BAR},
    {"framing", required_argument, NULL, OPT_FRAMING},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {NULL, 0, NULL, 0},
};

static int submit_parse_opts(int argc, char **argv, submit_opts_t *o)
{
    uint64_t v;
    int c;

    memset(o, 0, sizeof(*o));
    o->window = SUBMIT_DEFAULT_WINDOW;
    o->batch = 1;
    o->bar = -1;
    o->framing = SHOAL_FRAMING_MSGPACK;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", submit_long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_APP:
            o->app = optarg;
            break;
        case OPT_ACTION:
            o->action = optarg;
            break;
        case OPT_STRATEGY:
            if (shoal_strategy_parse(optarg, &o->strategy) != 0 ||
                o->strategy == SHOAL_STRATEGY_DIRECT)
                return cli_usage_error("submit", "unknown strategy '%s'",
                                       optarg);
            o->has_strategy = true;
            break;
        case OPT_IN:
            o->in_path = optarg;
            break;
        case OPT_WINDOW:
        case OPT_BATCH:
            if (!cli_parse_u64(optarg, &v) || v == 0 || v > SUBMIT_MAX_WINDOW)
                return cli_usage_error("submit",
                                       "--window and --batch take "
                                       "1 to %d",
                                       SUBMIT_MAX_WINDOW);
            if (c == OPT_WINDOW)
                o->window = v;
            else
                o->batch = v;
            break;
        case OPT_ORDERED:
            o->ordered = true;
            break;
        case OPT_TIMEOUT:
            if (!cli_parse_u64(optarg, &o->timeout_ms))
                return cli_usage_error("submit", "--timeout takes "
                                                 "milliseconds");
            break;
        case OPT_RETRIES:
            if (!cli_parse_u64(optarg, &v) || v > 1000)
                return cli_usage_error("submit", "--retries takes 0 to "
                                                 "1000");
            o->retries = v == 0 ? -1 : (int)v;
            break;
        case OPT_JOBLOG:
            o->joblog_path = optarg;
            break;
        case OPT_RESUME:
            o->resume = true;
            break;
        case OPT_RESUME_FAILED:
            o->resume = o->resume_failed = true;
            break;
        case OPT_BAR:
            o->bar = 1;
            break;
        case OPT_NO_BAR:
            o->bar = 0;
            break;
        case OPT_FRAMING:
            if (shoal_framing_parse(optarg, &o->framing) != 0)
                return cli_usage_error("submit", "unknown framing '%s'",
                                       optarg);
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        default:
            return cli_usage_error("submit", "unknown option");
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("submit", "expected URL");
    o->url = argv[optind];
    if (o->resume && o->joblog_path == NULL)
        return cli_usage_error("submit", "--resume needs --joblog");
    if (o->batch > o->window)
        o->batch = o->window;
    if (o->bar < 0)
        o->bar = isatty(STDERR_FILENO);
    return 0;
}

/* ---- the job log ---------------------------------------------------------
 */

static bool submit_is_done(const submit_t *s, uint64_t seq)
{
    return seq < s->done_bits_len &&
           (s->done_bits[seq / 8] & (1u << (seq % 8))) != 0;
}

static int submit_mark_done(submit_t *s, uint64_t seq)
{
    if (seq >= s->done_bits_len) {
        uint64_t len = s->done_bits_len ? s->done_bits_len : 8192;
        uint8_t *grown;
        while (len <= seq)
            len *= 2;
        grown = realloc(s->done_bits, len / 8);
        if (grown == NULL)
            return SHOAL_ENOMEM;
        memset(grown + s->done_bits_len / 8, 0, (len - s->done_bits_len) / 8);
        s->done_bits = grown;
        s->done_bits_len = len;
    }
    s->done_bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
    return 0;
}

/* Reads the seqs an earlier run finished. A line cut off by a crash is
 * ignored: its task runs again. */
static int submit_read_joblog(submit_t *s)
{
    FILE *f = fopen(s->o.joblog_path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    while ((n = getline(&line, &cap, f)) > 0) {
        cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(j, "seq");
        const char *status = cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(j, "status"));
        if (cJSON_IsNumber(seq) && seq->valuedouble >= 1 && status &&
            (!s->o.resume_failed || strcmp(status, "ok") == 0))
            submit_mark_done(s, (uint64_t)seq->valuedouble);
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return 0;
}

/* ---- output --------------------------------------------------------------
 */

static double submit_seconds(const submit_t *s)
{
    return (double)(uv_hrtime() - s->t0_ns) / 1e9;
}

static void submit_clear_bar(submit_t *s)
{
    if (s->bar_drawn) {
        fputs("\r\033[K", stderr);
        s->bar_drawn = false;
    }
}

static void submit_draw_bar(submit_t *s)
{
    double t = submit_seconds(s);
    double rate = t > 0 ? (double)s->finished / t : 0;
    uint64_t todo = s->total > s->skipped ? s->total - s->skipped : 0;
    char bar[33];

    if (!s->o.bar)
        return;
    if (todo > 0) {
        double frac = (double)s->finished / (double)todo;
        size_t fill = (size_t)(frac * 30);
        double eta = rate > 0 ? (double)(todo - s->finished) / rate : 0;
        if (frac > 1)
            frac = 1;
        memset(bar, '#', fill > 30 ? 30 : fill);
        memset(bar + (fill > 30 ? 30 : fill), '.',
               30 - (fill > 30 ? 30 : fill));
        bar[30] = '\0';
        fprintf(stderr,
                "\r[%s] %3.0f%% %llu/%llu %.0f/s ETA %d:%02d failed %llu"
                "\033[K",
                bar, frac * 100, (unsigned long long)s->finished,
                (unsigned long long)todo, rate, (int)(eta / 60), (int)eta % 60,
                (unsigned long long)(s->failed + s->timed_out));
    } else {
        fprintf(stderr, "\r%llu done %.0f/s in flight %zu failed %llu\033[K",
                (unsigned long long)s->finished, rate, s->in_flight,
                (unsigned long long)(s->failed + s->timed_out));
    }
    s->bar_drawn = true;
}

/* stdout first: a line in the job log means its outcome was printed. */
static void submit_flush(submit_t *s)
{
    if (fflush(stdout) != 0 && !s->out_error) {
        s->out_error = true;
        s->stopping = true;
    }
    if (s->joblog)
        fflush(s->joblog);
}

static void submit_tick_cb(uv_timer_t *timer)
{
    submit_t *s = timer->data;

    submit_flush(s);
    submit_draw_bar(s);
}

static void submit_count_node(submit_t *s, const char *name)
{
    size_t i;

    if (name[0] == '\0')
        return;
    for (i = 0; i < s->n_nodes; i++)
        if (strcmp(s->nodes[i].name, name) == 0) {
            s->nodes[i].count++;
            return;
        }
    if (s->n_nodes < SUBMIT_MAX_NODES) {
        snprintf(s->nodes[i].name, sizeof(s->nodes[i].name), "%s", name);
        s->nodes[i].count = 1;
        s->n_nodes++;
    }
}

static void submit_print_summary(submit_t *s)
{
    double t = submit_seconds(s);

    submit_clear_bar(s);
    if (s->o.quiet)
        return;
    fprintf(stderr,
            "shoal submit: %llu tasks in %.2f s (%.0f tasks/s): %llu ok, "
            "%llu failed, %llu timed out, %llu retried",
            (unsigned long long)s->finished, t,
            t > 0 ? (double)s->finished / t : 0.0, (unsigned long long)s->ok,
            (unsigned long long)s->failed, (unsigned long long)s->timed_out,
            (unsigned long long)s->retried);
    if (s->skipped)
        fprintf(stderr, ", %llu skipped (--resume)",
                (unsigned long long)s->skipped);
    fputc('\n', stderr);
    for (size_t i = 0; i < s->n_nodes; i++)
        fprintf(stderr, "  %-24s %llu (%.1f%%)\n", s->nodes[i].name,
                (unsigned long long)s->nodes[i].count,
                s->finished
                    ? 100.0 * (double)s->nodes[i].count / (double)s->finished
                    : 0.0);
    if (s->lost)
        fprintf(stderr,
                "shoal submit: the connection to %s was lost; %llu tasks "
                "in flight have no outcome (--resume runs them again)\n",
                s->o.url, (unsigned long long)s->lost_tasks);
}

/* ---- slots ---------------------------------------------------------------
 */

static bool submit_can_take(const submit_t *s)
{
    if (s->o.ordered)
        return s->line_no + 1 < s->next_print + s->o.window;
    return s->n_free > 0;
}

static size_t submit_slot_take(submit_t *s, uint64_t seq)
{
    size_t i = s->o.ordered ? (size_t)(seq % s->o.window)
                            : s->free_slots[--s->n_free];
    submit_slot_t *slot = &s->slots[i];

    slot->seq = seq;
    slot->busy = true;
    slot->done = slot->skip = false;
    slot->start_ns = uv_hrtime();
    s->in_flight++;
    return i;
}

/* Prints what is due: in order, everything finished from next_print on. */
static void submit_print_ordered(submit_t *s)
{
    for (;;) {
        submit_slot_t *slot = &s->slots[s->next_print % s->o.window];
        if (!slot->busy || slot->seq != s->next_print || !slot->done)
            return;
        if (!slot->skip)
            fwrite(slot->out.base, 1, slot->out.len, stdout);
        slot->out.len = 0;
        slot->busy = false;
        s->next_print++;
    }
}

static void submit_slot_release(submit_t *s, size_t i)
{
    submit_slot_t *slot = &s->slots[i];

    free(slot->id_json);
    slot->id_json = NULL;
    s->in_flight--;
    if (s->o.ordered) {
        slot->done = true;
        submit_print_ordered(s);
    } else {
        slot->busy = false;
        s->free_slots[s->n_free++] = i;
    }
}

/* Writes one outcome line: to stdout, or kept until its turn. */
static void submit_emit(submit_t *s, size_t i, const char *text, size_t len)
{
    if (s->o.ordered) {
        shoal_buf_t *out = &s->slots[i].out;
        shoal_buf_append(out, text, len);
        shoal_buf_append(out, "\n", 1);
    } else {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
    }
}

static void submit_joblog(submit_t *s, const submit_slot_t *slot,
                          const char *status, const char *node,
                          unsigned attempts, const char *code)
{
    double ms = (double)(uv_hrtime() - slot->start_ns) / 1e6;

    if (s->joblog == NULL)
        return;
    fprintf(s->joblog, "{\"seq\":%llu,\"id\":%s,\"status\":\"%s\",\"node\":",
            (unsigned long long)slot->seq,
            slot->id_json ? slot->id_json : "null", status);
    if (node[0]) {
        char *quoted = NULL;
        cJSON *str = cJSON_CreateString(node);
        quoted = cJSON_PrintUnformatted(str);
        fputs(quoted ? quoted : "null", s->joblog);
        free(quoted);
        cJSON_Delete(str);
    } else {
        fputs("null", s->joblog);
    }
    fprintf(s->joblog, ",\"attempts\":%u,\"ms\":%.3f", attempts, ms);
    if (code[0])
        fprintf(s->joblog, ",\"code\":\"%s\"", code);
    fputs("}\n", s->joblog);
}

static void submit_fill(submit_t *s);

static void submit_idle_cb(uv_idle_t *idle)
{
    submit_fill(idle->data);
}

/* One task's end, whatever it was. */
static void submit_finished(submit_t *s, size_t i, const shoal_outcome_t *o)
{
    submit_slot_t *slot = &s->slots[i];
    const char *status = shoal_outcome_status_name(o->status);

    if (o->refused &&
        (o->code == SHOAL_ECONNCLOSED || o->code == SHOAL_ECLOSING)) {
        /* The task may or may not have run: no outcome, no log line, so
         * that --resume runs it again. */
        s->lost = true;
        s->stopping = true;
        s->lost_tasks++;
        submit_slot_release(s, i);
        return;
    }
    s->finished++;
    if (o->status == SHOAL_OUTCOME_OK)
        s->ok++;
    else if (o->status == SHOAL_OUTCOME_TIMEOUT)
        s->timed_out++;
    else
        s->failed++;
    if (o->attempts > 1)
        s->retried++;
    submit_count_node(s, o->node);
    s->scratch.len = 0;
    if (o->raw.data != NULL &&
        shoal_wire_transcode(&o->raw, SHOAL_CODEC_JSON, &s->scratch) == 0) {
        submit_emit(s, i, s->scratch.base, s->scratch.len);
    } else {
        /* A refusal: no outcome object came, write one. */
        cJSON *j = cJSON_CreateObject();
        cJSON *err;
        char *text;
        cJSON_AddItemToObject(
            j, "id", cJSON_Parse(slot->id_json ? slot->id_json : "null"));
        cJSON_AddStringToObject(j, "status", status);
        cJSON_AddNullToObject(j, "node");
        cJSON_AddNumberToObject(j, "attempts", o->attempts);
        err = cJSON_AddObjectToObject(j, "error");
        cJSON_AddStringToObject(err, "code", o->code_name);
        cJSON_AddStringToObject(err, "message", o->message);
        text = cJSON_PrintUnformatted(j);
        if (text)
            submit_emit(s, i, text, strlen(text));
        free(text);
        cJSON_Delete(j);
    }
    submit_joblog(s, slot, status, o->node, o->attempts,
                  o->status == SHOAL_OUTCOME_OK ? "" : o->code_name);
    submit_slot_release(s, i);
}

static void submit_outcome_cb(const shoal_outcome_t *o, void *data)
{
    submit_group_t *g = data;
    submit_t *s = *(submit_t **)(g->slots + g->n);
    bool last = o->index + 1 == g->n;

    submit_finished(s, g->slots[o->index], o);
    if (last) {
        free(g);
        /* The whole reply is in: refill on this turn, once. */
        uv_idle_start(&s->idle, submit_idle_cb);
    }
}

/* ---- reading tasks --------------------------------------------------------
 */

/* A line that is not a task: it ends here with this error. */
static void submit_local_error(submit_t *s, size_t i, int code,
                               const char *message)
{
    shoal_outcome_t o;

    memset(&o, 0, sizeof(o));
    o.status = SHOAL_OUTCOME_ERROR;
    o.refused = true;
    o.code = code;
    o.code_name = shoal_err_name(code);
    o.message = message;
    o.node = "";
    submit_finished(s, i, &o);
}

static int submit_name_field(const shoal_payload_t *v, char *out)
{
    return shoal_payload_string(v, out, SHOAL_MAX_NAME_BYTES + 1) > 0
               ? 0
               : SHOAL_EBADTYPE;
}

/* Storage for the strings of one task read from a line, kept until the
 * task is sent. */
typedef struct submit_task_text {
    char app[SHOAL_MAX_NAME_BYTES + 1];
    char action[SHOAL_MAX_NAME_BYTES + 1];
    char node[SHOAL_MAX_NAME_BYTES + 1];
    char seq[24];
    shoal_payload_t args;
    shoal_payload_t id;
    shoal_buf_t key;
} submit_task_text_t;

/* Reads a task object line into task. Returns 0 or a code. */
static int submit_task_object(const shoal_payload_t *obj, shoal_task_t *task,
                              submit_task_text_t *text)
{
    shoal_payload_iter_t it;
    shoal_payload_t k, v;
    int64_t n;
    bool b;
    int err;

    shoal_payload_iter_init(&it, obj);
    while ((err = shoal_payload_iter_next(&it, &k, &v)) == 1) {
        err = 0;
        if (shoal_payload_string_eq(&k, "app")) {
            err = submit_name_field(&v, text->app);
            task->app = text->app;
        } else if (shoal_payload_string_eq(&k, "action")) {
            err = submit_name_field(&v, text->action);
            task->action = text->action;
        } else if (shoal_payload_string_eq(&k, "args")) {
            text->args = v;
            task->args = &text->args;
        } else if (shoal_payload_string_eq(&k, "id")) {
            text->id = v;
            task->id = &text->id;
        } else if (shoal_payload_string_eq(&k, "strategy")) {
            char name[32];
            if (shoal_payload_string(&v, name, sizeof(name)) < 0 ||
                shoal_strategy_parse(name, &task->strategy) != 0)
                err = SHOAL_EINVAL;
        } else if (shoal_payload_string_eq(&k, "key")) {
            text->key.len = 0;
            if (shoal_payload_type(&v) == SHOAL_VALUE_STRING) {
                shoal_buf_reserve(&text->key, v.len + 1);
                err = shoal_payload_string(&v, text->key.base, v.len + 1);
                text->key.len = err >= 0 ? (size_t)err : 0;
                err = err >= 0 ? 0 : err;
            } else if (shoal_payload_int(&v, &n) == 0) {
                char digits[24];
                int len =
                    snprintf(digits, sizeof(digits), "%lld", (long long)n);
                shoal_buf_append(&text->key, digits, (size_t)len);
            } else {
                shoal_buf_append(&text->key, v.data, v.len);
            }
            task->key = text->key.base ? text->key.base : "";
            task->key_len = text->key.len;
            if (!task->strategy)
                task->strategy = SHOAL_STRATEGY_KEY;
        } else if (shoal_payload_string_eq(&k, "node")) {
            err = submit_name_field(&v, text->node);
            task->node = text->node;
            task->strategy = SHOAL_STRATEGY_DIRECT;
        } else if (shoal_payload_string_eq(&k, "index")) {
            err = shoal_payload_int(&v, &task->index);
            task->strategy = SHOAL_STRATEGY_DIRECT;
        } else if (shoal_payload_string_eq(&k, "timeout_ms")) {
            err = shoal_payload_int(&v, &n);
            task->timeout_ms = n > 0 ? (uint64_t)n : 0;
        } else if (shoal_payload_string_eq(&k, "retries")) {
            err = shoal_payload_int(&v, &n);
            task->retries = n <= 0 ? -1 : n > 1000 ? 1000 : (int)n;
        } else if (shoal_payload_string_eq(&k, "retry_on_error")) {
            err = shoal_payload_bool(&v, &b);
            task->retry_on_error = b;
        } else if (shoal_payload_string_eq(&k, "retry_on_timeout")) {
            err = shoal_payload_bool(&v, &b);
            task->retry_on_timeout = b;
        }
        if (err)
            return err;
    }
    return err;
}

static bool submit_is_task_object(const shoal_payload_t *line)
{
    shoal_payload_t v;

    return shoal_payload_type(line) == SHOAL_VALUE_OBJECT &&
           (shoal_payload_get(line, "args", &v) == 0 ||
            shoal_payload_get(line, "app", &v) == 0 ||
            shoal_payload_get(line, "action", &v) == 0);
}

/* The id a task goes by, as JSON, for the job log and refusals. */
static char *submit_id_json(const shoal_payload_t *id, uint64_t seq)
{
    shoal_buf_t buf;
    char *text;

    if (id == NULL) {
        text = malloc(24);
        if (text)
            snprintf(text, 24, "%llu", (unsigned long long)seq);
        return text;
    }
    shoal_buf_init(&buf);
    if (shoal_wire_transcode(id, SHOAL_CODEC_JSON, &buf) != 0 ||
        shoal_buf_append(&buf, "", 1) != 0) {
        shoal_buf_free(&buf);
        return strdup("null");
    }
    return buf.base;
}

static void submit_send_batch(submit_t *s)
{
    submit_group_t *g;
    int err;

    if (s->n_tasks == 0)
        return;
    g = malloc(sizeof(*g) + s->n_tasks * sizeof(size_t) + sizeof(submit_t *));
    if (g == NULL) {
        err = SHOAL_ENOMEM;
    } else {
        g->n = s->n_tasks;
        memcpy(g->slots, s->task_slots, s->n_tasks * sizeof(size_t));
        *(submit_t **)(g->slots + g->n) = s;
        if (s->n_tasks == 1)
            err = shoal_submit(s->conn, &s->tasks[0], submit_outcome_cb, g);
        else
            err = shoal_submit_batch(s->conn, s->tasks, s->n_tasks,
                                     submit_outcome_cb, g);
        if (err)
            free(g);
    }
    for (size_t k = 0; k < s->n_tasks; k++) {
        if (err)
            submit_local_error(s, s->task_slots[k], err, shoal_strerror(err));
        free(s->task_lines[k]);
        shoal_buf_free(&s->task_texts[k]->key);
        free(s->task_texts[k]);
    }
    if (err == SHOAL_ECLOSING || err == SHOAL_ECONNCLOSED) {
        s->lost = true;
        s->stopping = true;
    }
    s->n_tasks = 0;
}

/* Turns one line into a task of the batch being gathered. */
static void submit_take_line(submit_t *s, char *line, size_t len)
{
    uint64_t seq = s->line_no;
    shoal_payload_t payload = {line, len, SHOAL_CODEC_JSON};
    submit_task_text_t *text;
    shoal_task_t *task;
    cJSON *check;
    size_t i;
    int err = 0;

    i = submit_slot_take(s, seq);
    check = cJSON_ParseWithOpts(line, NULL, 1);
    if (check == NULL) {
        s->slots[i].id_json = submit_id_json(NULL, seq);
        submit_local_error(s, i, SHOAL_EBADJSON, "the line is not JSON");
        free(line);
        return;
    }
    cJSON_Delete(check);
    /* The strings of the task live next to it until it is sent. */
    text = calloc(1, sizeof(*text));
    if (text == NULL) {
        s->slots[i].id_json = submit_id_json(NULL, seq);
        submit_local_error(s, i, SHOAL_ENOMEM, "out of memory");
        free(line);
        return;
    }
    task = &s->tasks[s->n_tasks];
    memset(task, 0, sizeof(*task));
    task->app = s->o.app;
    task->action = s->o.action;
    task->strategy =
        s->o.has_strategy ? s->o.strategy : SHOAL_STRATEGY_ROUND_ROBIN;
    task->timeout_ms = s->o.timeout_ms;
    task->retries = s->o.retries;
    if (submit_is_task_object(&payload)) {
        err = submit_task_object(&payload, task, text);
    } else {
        text->args = payload;
        task->args = &text->args;
    }
    s->slots[i].id_json = submit_id_json(task->id, seq);
    if (err == 0 && (task->app == NULL || task->action == NULL))
        err = SHOAL_EINVAL;
    if (err) {
        submit_local_error(s, i, err,
                           err == SHOAL_EINVAL
                               ? "the task needs --app and --action or "
                                 "\"app\" and \"action\""
                               : "the task object cannot be read");
        shoal_buf_free(&text->key);
        free(text);
        free(line);
        return;
    }
    if (task->id == NULL) {
        /* The line number is the id: outcomes say which line they
         * answer. */
        text->id.data = text->seq;
        text->id.len = (size_t)snprintf(text->seq, sizeof(text->seq), "%llu",
                                        (unsigned long long)seq);
        text->id.codec = SHOAL_CODEC_JSON;
        task->id = &text->id;
    }
    s->task_lines[s->n_tasks] = line;
    s->task_texts[s->n_tasks] = text;
    s->task_slots[s->n_tasks] = i;
    s->n_tasks++;
    if (s->n_tasks == s->o.batch)
        submit_send_batch(s);
}

static void submit_maybe_done(submit_t *s);

static void submit_fill(submit_t *s)
{
    size_t turn = 0;

    uv_idle_stop(&s->idle);
    while (!s->eof && !s->stopping && submit_can_take(s) &&
           turn++ < SUBMIT_READ_PER_TURN) {
        ssize_t n = getline(&s->line, &s->line_cap, s->in);
        char *copy;
        size_t len;
        if (n < 0) {
            s->eof = true;
            break;
        }
        s->line_no++;
        len = (size_t)n;
        while (len > 0 &&
               (s->line[len - 1] == '\n' || s->line[len - 1] == '\r' ||
                s->line[len - 1] == ' ' || s->line[len - 1] == '\t'))
            len--;
        if (len == 0) {
            /* A blank line keeps its number but is no task. */
            if (s->o.ordered) {
                size_t i = submit_slot_take(s, s->line_no);
                s->slots[i].skip = true;
                submit_slot_release(s, i);
            }
            continue;
        }
        s->read++;
        if (s->o.resume && submit_is_done(s, s->line_no)) {
            s->skipped++;
            if (s->o.ordered) {
                size_t i = submit_slot_take(s, s->line_no);
                s->slots[i].skip = true;
                submit_slot_release(s, i);
            }
            continue;
        }
        copy = malloc(len + 1);
        if (copy == NULL) {
            s->stopping = true;
            break;
        }
        memcpy(copy, s->line, len);
        copy[len] = '\0';
        submit_take_line(s, copy, len);
    }
    /* A partial batch goes now: nothing more comes for a while. */
    submit_send_batch(s);
    if (!s->eof && !s->stopping && submit_can_take(s))
        uv_idle_start(&s->idle, submit_idle_cb);
    submit_maybe_done(s);
}

/* ---- running -------------------------------------------------------------
 */

static void submit_maybe_done(submit_t *s)
{
    if ((!s->eof && !s->stopping) || s->in_flight > 0 || !s->node_open)
        return;
    s->node_open = false;
    uv_idle_stop(&s->idle);
    uv_close((uv_handle_t *)&s->idle, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    shoal_node_close(&s->node, NULL);
}

static void submit_sigint_cb(uv_signal_t *sig, int signum)
{
    submit_t *s = sig->data;

    (void)signum;
    if (++s->interrupts > 1) {
        submit_clear_bar(s);
        submit_flush(s);
        fprintf(stderr,
                "shoal submit: interrupted again; %zu tasks "
                "abandoned\n",
                s->in_flight);
        _exit(130);
    }
    s->stopping = true;
    submit_clear_bar(s);
    fprintf(stderr,
            "shoal submit: interrupted; waiting for %zu tasks in flight "
            "(Ctrl-C again to stop now)\n",
            s->in_flight);
    submit_maybe_done(s);
}

static void submit_connected_cb(shoal_conn_t *conn, int status, void *data)
{
    submit_t *s = data;

    if (status < 0) {
        fprintf(stderr, "shoal submit: cannot connect to %s: %s\n", s->o.url,
                shoal_strerror(status));
        s->lost = true;
        s->stopping = true;
        s->conn = NULL;
        submit_maybe_done(s);
        return;
    }
    s->conn = conn;
    s->t0_ns = uv_hrtime();
    submit_fill(s);
}

/* Counts the lines of a regular file, for the progress bar's total. */
static uint64_t submit_count_lines(const char *path)
{
    char buf[65536];
    uint64_t lines = 0;
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return 0;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        for (char *p = buf; (p = memchr(p, '\n', n - (size_t)(p - buf))); p++)
            lines++;
    fclose(f);
    return lines;
}

static int submit_setup(submit_t *s)
{
    shoal_conn_opts_t copts;
    shoal_node_opts_t nopts;
    struct stat st;
    int err;

    s->in = s->o.in_path ? fopen(s->o.in_path, "r") : stdin;
    if (s->in == NULL) {
        fprintf(stderr, "shoal submit: --in %s: %s\n", s->o.in_path,
                strerror(errno));
        return -1;
    }
    if (s->o.bar && s->o.in_path && stat(s->o.in_path, &st) == 0 &&
        S_ISREG(st.st_mode))
        s->total = submit_count_lines(s->o.in_path);
    if (s->o.resume && submit_read_joblog(s) != 0) {
        fprintf(stderr, "shoal submit: --joblog %s: %s\n", s->o.joblog_path,
                strerror(errno));
        return -1;
    }
    if (s->o.joblog_path) {
        s->joblog = fopen(s->o.joblog_path, s->o.resume ? "a" : "w");
        if (s->joblog == NULL) {
            fprintf(stderr, "shoal submit: --joblog %s: %s\n",
                    s->o.joblog_path, strerror(errno));
            return -1;
        }
    }
    s->slots = calloc(s->o.window, sizeof(*s->slots));
    s->free_slots = calloc(s->o.window, sizeof(*s->free_slots));
    s->tasks = calloc(s->o.batch, sizeof(*s->tasks));
    s->task_lines = calloc(s->o.batch, sizeof(*s->task_lines));
    s->task_texts = calloc(s->o.batch, sizeof(*s->task_texts));
    s->task_slots = calloc(s->o.batch, sizeof(*s->task_slots));
    if (!s->slots || !s->free_slots || !s->tasks || !s->task_lines ||
        !s->task_texts || !s->task_slots) {
        fprintf(stderr, "shoal submit: out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < s->o.window; i++)
        s->free_slots[s->n_free++] = s->o.window - 1 - i;
    s->next_print = 1;
    uv_loop_init(&s->loop);
    memset(&nopts, 0, sizeof(nopts));
    nopts.framing = s->o.framing;
    err = shoal_node_init(&s->loop, &s->node, &nopts);
    if (err) {
        fprintf(stderr, "shoal submit: %s\n", shoal_strerror(err));
        return -1;
    }
    s->node_open = true;
    uv_signal_init(&s->loop, &s->sigint);
    s->sigint.data = s;
    uv_signal_start(&s->sigint, submit_sigint_cb, SIGINT);
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, submit_tick_cb, SUBMIT_TICK_MS, SUBMIT_TICK_MS);
    uv_unref((uv_handle_t *)&s->tick);
    uv_idle_init(&s->loop, &s->idle);
    s->idle.data = s;
    memset(&copts, 0, sizeof(copts));
    copts.framing = s->o.framing;
    err = shoal_node_connect(&s->node, s->o.url, &copts, submit_connected_cb,
                             s, NULL);
    if (err) {
        fprintf(stderr, "shoal submit: cannot connect to %s: %s\n", s->o.url,
                shoal_strerror(err));
        s->lost = true;
        s->stopping = true;
        submit_maybe_done(s);
    }
    return 0;
}

static void submit_free(submit_t *s)
{
    if (s->slots)
        for (size_t i = 0; i < s->o.window; i++) {
            free(s->slots[i].id_json);
            shoal_buf_free(&s->slots[i].out);
        }
    free(s->slots);
    free(s->free_slots);
    free(s->tasks);
    free(s->task_lines);
    free(s->task_texts);
    free(s->task_slots);
    free(s->done_bits);
    free(s->line);
    shoal_buf_free(&s->scratch);
    if (s->in && s->in != stdin)
        fclose(s->in);
    if (s->joblog)
        fclose(s->joblog);
}

int cli_cmd_submit(int argc, char **argv)
{
    static char out_buf[1 << 16];
    submit_t *s;
    int err, code;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CLI_EXIT_FAILURE;
    if ((err = submit_parse_opts(argc, argv, &s->o))) {
        free(s);
        return err;
    }
    setvbuf(stdout, out_buf, _IOFBF, sizeof(out_buf));
    if (submit_setup(s) != 0) {
        if (s->node_open) {
            shoal_node_close(&s->node, NULL);
            uv_run(&s->loop, UV_RUN_DEFAULT);
        }
        submit_free(s);
        free(s);
        return CLI_EXIT_FAILURE;
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    submit_flush(s);
    submit_print_summary(s);
    if (s->lost && s->finished == 0)
        code = CLI_EXIT_FAILURE;
    else if (s->interrupts > 0)
        code = 130;
    else if (s->lost || s->out_error)
        code = CLI_EXIT_FAILURE;
    else
        code = s->ok == s->finished ? CLI_EXIT_OK : CLI_EXIT_ERROR_REPLY;
    submit_free(s);
    free(s);
    return code;
}
