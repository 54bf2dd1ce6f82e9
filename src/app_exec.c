/* External applications: a program in any language, run with /bin/sh -c,
 * serves one application over newline-delimited JSON on its stdin and
 * stdout (docs/workers.md is the protocol). */

/*
 * Two layers live in this file, and only the second knows the protocol.
 *
 * exec_proc_t is "a child process speaking a framing over its stdio": it
 * spawns the command in a process group of its own, writes bytes to the
 * child's stdin (a queue and one write in flight, as conn.c does), reads
 * its stdout and cuts it into frames with a pluggable cut function, lets
 * stderr through to the node's stderr, stops the child politely (stdin
 * closed, then SIGTERM, then SIGKILL) and reports its exit once, after its
 * last output has been read. It knows nothing of calls or JSON: its owner
 * gets frames and the exit through exec_proc_ops_t. Storm's multilang
 * protocol (a JSON text followed by a line "end") will be one more cut
 * function and one more owner over the same struct; when it arrives, this
 * half moves to src/proc.c with its declarations in internal.h.
 *
 * exec_app_t is the NDJSON protocol for one application: each call gets an
 * id of the node's own (mapped back to the caller's call), each tell and
 * call becomes one line for the program, each line the program writes is
 * decoded by the wire layer (shoal_wire_decode; arguments and results pass
 * through as JSON text, transcoded by the wire encoder when the caller
 * speaks MessagePack). It restarts the program when work arrives after an
 * exit, with a bounded backoff for a program that keeps dying, and bounds
 * what waits for the program.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Calls in flight to one program; past it callers get EOVERLOADED. */
#define EXEC_MAX_CALLS 1024
/* After stdin is closed, the program has this long before SIGTERM, then
 * this long again before SIGKILL. Together under the CLI's 5 s bound. */
#define EXEC_STOP_GRACE_MS 1000
#define EXEC_KILL_GRACE_MS 1000
/* A program that dies sooner than this after its start waits before the
 * next one, from EXEC_BACKOFF_MIN_MS doubling up to EXEC_BACKOFF_MAX_MS. */
#define EXEC_STABLE_MS 2000
#define EXEC_BACKOFF_MIN_MS 100
#define EXEC_BACKOFF_MAX_MS 5000
/* Read at least this much per read call. */
#define EXEC_READ_CHUNK_BYTES 65536
/* A read buffer that grew for a long line is given back above this. */
#define EXEC_KEEP_BUFFER_BYTES (1u << 20)
/* Reads of what a program left in its stdout when it exited (bounded:
 * a grandchild may still be writing). */
#define EXEC_DRAIN_READS 64
/* How much of a bad line goes into the message about it. */
#define EXEC_EXCERPT_BYTES 80

/* ---- a child process speaking a framing over its stdio ------------------
 */

typedef struct exec_proc exec_proc_t;

/* Cuts one frame off buf[0, len), with shoal_wire_cut's contract. */
typedef ssize_t (*exec_cut_fn)(const char *buf, size_t len,
                               const shoal_limits_t *limits,
                               shoal_cut_state_t *st, shoal_frame_t *out);

typedef struct {
    exec_cut_fn cut;
    /* A frame the child wrote; borrowed until the callback returns. */
    void (*on_frame)(exec_proc_t *proc, const shoal_frame_t *frame,
                     void *owner);
    /* The child has exited and what it wrote has been delivered. why is
     * NULL, or the reason proc killed it ("wrote a line over N bytes").
     * Called once; proc is freed soon after and must not be used again. */
    void (*on_exit)(exec_proc_t *proc, int64_t exit_status, int term_signal,
                    const char *why, void *owner);
} exec_proc_ops_t;

struct exec_proc {
    uv_process_t process;
    uv_pipe_t in;  /* the child's stdin: written here */
    uv_pipe_t out; /* the child's stdout: read here */
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    const exec_proc_ops_t *ops;
    void *owner; /* NULL once detached */
    char label[SHOAL_MAX_NAME_BYTES + 32];
    shoal_limits_t limits;
    shoal_buf_t queue;   /* filled since the last write started */
    shoal_buf_t sending; /* handed to the kernel */
    char *rbuf;
    size_t rlen; /* bytes held */
    size_t roff; /* bytes already cut */
    size_t rcap;
    shoal_cut_state_t cut;
    int open_handles; /* close callbacks due before the memory goes */
    int pid;
    int stop_stage; /* 0 running, 1 stdin closed, 2 SIGTERM, 3 SIGKILL */
    bool writing;
    bool in_closed; /* shut down by us, or broken */
    bool out_eof;
    bool exited;
    bool killed;
    char why[96];
};

static void proc_flush(exec_proc_t *proc);

static void proc_close_cb(uv_handle_t *handle)
{
    exec_proc_t *proc = handle->data;

    if (--proc->open_handles > 0)
        return;
    shoal_buf_free(&proc->queue);
    shoal_buf_free(&proc->sending);
    free(proc->rbuf);
    free(proc);
}

static void proc_close_all(exec_proc_t *proc)
{
    proc->open_handles = 4;
    uv_close((uv_handle_t *)&proc->process, proc_close_cb);
    uv_close((uv_handle_t *)&proc->in, proc_close_cb);
    uv_close((uv_handle_t *)&proc->out, proc_close_cb);
    uv_close((uv_handle_t *)&proc->timer, proc_close_cb);
}

/* Signals the child's whole process group: /bin/sh may have forked the
 * program instead of exec'ing it, and a SIGTERM to the shell alone would
 * leave the program running. */
static void proc_signal(exec_proc_t *proc, int signum)
{
    if (proc->exited)
        return;
    if (uv_kill(-proc->pid, signum) != 0)
        uv_process_kill(&proc->process, signum);
}

/* Kills the child for something it did; its output is ignored from now
 * on and the owner hears why with the exit. */
static void proc_kill(exec_proc_t *proc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void proc_kill(exec_proc_t *proc, const char *fmt, ...)
{
    va_list ap;

    if (proc->killed || proc->exited)
        return;
    va_start(ap, fmt);
    vsnprintf(proc->why, sizeof(proc->why), fmt, ap);
    va_end(ap);
    proc->killed = true;
    proc->in_closed = true;
    if (!proc->out_eof)
        uv_read_stop((uv_stream_t *)&proc->out);
    proc_signal(proc, SIGKILL);
}

/* ---- reading ---------------------------------------------------------- */

/* Makes room for a read of at least EXEC_READ_CHUNK_BYTES. */
static bool proc_reserve(exec_proc_t *proc)
{
    size_t held = proc->rlen - proc->roff;
    size_t cap;
    char *grown;

    if (proc->roff > 0 && proc->rcap - proc->rlen < EXEC_READ_CHUNK_BYTES) {
        memmove(proc->rbuf, proc->rbuf + proc->roff, held);
        proc->roff = 0;
        proc->rlen = held;
    }
    if (proc->rcap - proc->rlen >= EXEC_READ_CHUNK_BYTES)
        return true;
    cap = proc->rcap ? proc->rcap * 2 : EXEC_READ_CHUNK_BYTES;
    while (cap - proc->rlen < EXEC_READ_CHUNK_BYTES)
        cap *= 2;
    grown = realloc(proc->rbuf, cap);
    if (grown == NULL)
        return false;
    proc->rbuf = grown;
    proc->rcap = cap;
    return true;
}

static void proc_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    exec_proc_t *proc = handle->data;

    (void)suggested;
    if (!proc_reserve(proc)) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(proc->rbuf + proc->rlen,
                       (unsigned)(proc->rcap - proc->rlen));
}

/* Cuts and delivers every whole frame held. Bounded by the bytes read. */
static void proc_deliver(exec_proc_t *proc)
{
    while (!proc->killed && proc->roff < proc->rlen) {
        shoal_frame_t frame;
        ssize_t n =
            proc->ops->cut(proc->rbuf + proc->roff, proc->rlen - proc->roff,
                           &proc->limits, &proc->cut, &frame);
        if (n == 0)
            break;
        if (n == SHOAL_ETOOBIG) {
            proc_kill(proc, "wrote a line over %zu bytes",
                      proc->limits.max_line_bytes);
            break;
        }
        if (n < 0) {
            proc_kill(proc, "wrote output that cannot be framed (%s)",
                      shoal_strerror((int)n));
            break;
        }
        proc->roff += (size_t)n;
        /* The owner may stop, kill or detach proc; its memory stays until
         * the close callbacks, after the exit. */
        if (frame.len > 0 && proc->owner != NULL)
            proc->ops->on_frame(proc, &frame, proc->owner);
    }
    if (proc->roff == proc->rlen) {
        proc->roff = proc->rlen = 0;
        if (proc->rcap > EXEC_KEEP_BUFFER_BYTES) {
            free(proc->rbuf);
            proc->rbuf = NULL;
            proc->rcap = 0;
        }
    }
}

static void proc_stop(exec_proc_t *proc);

static void proc_read_cb(uv_stream_t *stream, ssize_t nread,
                         const uv_buf_t *buf)
{
    exec_proc_t *proc = stream->data;

    (void)buf;
    if (nread > 0) {
        proc->rlen += (size_t)nread;
        proc_deliver(proc);
        return;
    }
    if (nread == 0)
        return;
    /* End of file or a broken pipe: the program can no longer answer, so
     * it is asked to end; the exit callback finishes the story. */
    proc->out_eof = true;
    uv_read_stop(stream);
    proc_stop(proc);
}

/* At exit, what the program wrote last may still sit in the pipe: read it
 * now, so that replies written just before an exit are not failed. */
static void proc_drain(exec_proc_t *proc)
{
    int fd;

    if (proc->out_eof || proc->killed ||
        uv_fileno((uv_handle_t *)&proc->out, &fd) != 0)
        return;
    for (int i = 0; i < EXEC_DRAIN_READS && !proc->killed; i++) {
        ssize_t n;

        if (!proc_reserve(proc))
            return;
        n = read(fd, proc->rbuf + proc->rlen, proc->rcap - proc->rlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* end of file, or nothing more now (EAGAIN) */
        proc->rlen += (size_t)n;
        proc_deliver(proc);
    }
}

static bool proc_only_whitespace(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

static void proc_exit_cb(uv_process_t *process, int64_t exit_status,
                         int term_signal)
{
    exec_proc_t *proc = process->data;

    proc->exited = true;
    uv_timer_stop(&proc->timer);
    proc_drain(proc);
    if (!proc->killed && proc->roff < proc->rlen &&
        !proc_only_whitespace(proc->rbuf + proc->roff,
                              proc->rlen - proc->roff))
        fprintf(stderr,
                "shoal: %s: the program's last %zu bytes had no line end; "
                "dropped\n",
                proc->label, proc->rlen - proc->roff);
    if (proc->owner != NULL)
        proc->ops->on_exit(proc, exit_status, term_signal,
                           proc->killed ? proc->why : NULL, proc->owner);
    proc_close_all(proc);
}

/* ---- writing ---------------------------------------------------------- */

static void proc_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* the child sees end of file either way */
}

/* Closes the child's stdin once everything queued is written. */
static void proc_close_input(exec_proc_t *proc)
{
    if (proc->in_closed || proc->writing || proc->queue.len > 0)
        return;
    proc->in_closed = true;
    /* A failure means the pipe is already broken: the child has seen the
     * end of its input, or is gone. */
    (void)uv_shutdown(&proc->shutdown_req, (uv_stream_t *)&proc->in,
                      proc_shutdown_cb);
}

/* The child does not read its stdin any more (it closed it, or died). */
static void proc_input_broken(exec_proc_t *proc)
{
    proc->in_closed = true;
    proc->queue.len = 0;
    proc_stop(proc);
}

static void proc_write_cb(uv_write_t *req, int status)
{
    exec_proc_t *proc = req->data;

    proc->writing = false;
    proc->sending.len = 0;
    if (status == UV_ECANCELED)
        return; /* the handle is closing */
    if (status < 0) {
        proc_input_broken(proc);
        return;
    }
    if (proc->sending.cap > EXEC_KEEP_BUFFER_BYTES)
        shoal_buf_free(&proc->sending);
    proc_flush(proc);
    if (proc->stop_stage > 0)
        proc_close_input(proc);
}

static void proc_flush(exec_proc_t *proc)
{
    shoal_buf_t swap;
    uv_buf_t buf;
    int err;

    if (proc->writing || proc->queue.len == 0 || proc->in_closed)
        return;
    swap = proc->sending;
    proc->sending = proc->queue;
    proc->queue = swap;
    proc->queue.len = 0;
    buf = uv_buf_init(proc->sending.base, (unsigned)proc->sending.len);
    proc->write_req.data = proc;
    /* uv_write writes at once when it can and calls back later. */
    err = uv_write(&proc->write_req, (uv_stream_t *)&proc->in, &buf, 1,
                   proc_write_cb);
    if (err) {
        proc->sending.len = 0;
        proc_input_broken(proc);
        return;
    }
    proc->writing = true;
}

/* True while the child takes input. */
static bool proc_accepting(const exec_proc_t *proc)
{
    return !proc->exited && !proc->killed && !proc->in_closed &&
           proc->stop_stage == 0;
}

/* Queues bytes for the child's stdin. Returns 0, SHOAL_ECLOSING when the
 * child takes no input, or SHOAL_ENOMEM. */
static int proc_write(exec_proc_t *proc, const char *data, size_t len)
{
    if (!proc_accepting(proc))
        return SHOAL_ECLOSING;
    if (shoal_buf_append(&proc->queue, data, len) != 0)
        return SHOAL_ENOMEM;
    proc_flush(proc);
    return 0;
}

static size_t proc_queued_bytes(const exec_proc_t *proc)
{
    return proc->queue.len + proc->sending.len;
}

/* ---- starting and stopping ---------------------------------------------
 */

static void proc_stop_timer_cb(uv_timer_t *timer)
{
    exec_proc_t *proc = timer->data;

    if (proc->stop_stage == 1) {
        proc->stop_stage = 2;
        proc_signal(proc, SIGTERM);
        uv_timer_start(&proc->timer, proc_stop_timer_cb, EXEC_KILL_GRACE_MS,
                       0);
    } else if (proc->stop_stage == 2) {
        proc->stop_stage = 3;
        proc_signal(proc, SIGKILL);
    }
}

/* Asks the child to end: stdin is closed once what is queued is written;
 * SIGTERM follows after a grace period, SIGKILL after a second one. */
static void proc_stop(exec_proc_t *proc)
{
    if (proc->stop_stage > 0 || proc->exited)
        return;
    proc->stop_stage = 1;
    proc_flush(proc);
    proc_close_input(proc);
    uv_timer_start(&proc->timer, proc_stop_timer_cb, EXEC_STOP_GRACE_MS, 0);
}

/* The owner lets go: no more callbacks; proc ends on its own and frees
 * itself after the child's exit. */
static void proc_detach(exec_proc_t *proc)
{
    proc->owner = NULL;
}

/* Runs /bin/sh -c command with stdin and stdout on pipes and stderr
 * shared with the node. Returns 0 and the proc in *out, or a libuv error
 * (the half-made proc frees itself). */
static int proc_start(uv_loop_t *loop, const char *command, const char *label,
                      const shoal_limits_t *limits, const exec_proc_ops_t *ops,
                      void *owner, exec_proc_t **out)
{
    uv_process_options_t options;
    uv_stdio_container_t stdio[3];
    char *args[4];
    exec_proc_t *proc;
    int err;

    proc = calloc(1, sizeof(*proc));
    if (proc == NULL)
        return SHOAL_ENOMEM;
    proc->ops = ops;
    proc->owner = owner;
    proc->limits = *limits;
    snprintf(proc->label, sizeof(proc->label), "%s", label);
    shoal_cut_reset(&proc->cut);
    shoal_buf_init(&proc->queue);
    shoal_buf_init(&proc->sending);
    uv_pipe_init(loop, &proc->in, 0);
    uv_pipe_init(loop, &proc->out, 0);
    uv_timer_init(loop, &proc->timer);
    proc->process.data = proc->in.data = proc->out.data = proc->timer.data =
        proc;

    args[0] = "/bin/sh";
    args[1] = "-c";
    args[2] = (char *)command;
    args[3] = NULL;
    /* Pipe flags are the child's point of view. */
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&proc->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&proc->out;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    memset(&options, 0, sizeof(options));
    options.file = args[0];
    options.args = args;
    options.stdio = stdio;
    options.stdio_count = 3;
    options.exit_cb = proc_exit_cb;
    /* A session and process group of its own: proc_signal reaches the
     * program behind the shell, and a Ctrl-C at the node's terminal
     * reaches only the node, which then stops its programs in order. */
    options.flags = UV_PROCESS_DETACHED;
    err = uv_spawn(loop, &proc->process, &options);
    if (err == 0)
        err = uv_read_start((uv_stream_t *)&proc->out, proc_alloc_cb,
                            proc_read_cb);
    if (err) {
        /* A failed spawn still needs its handle closed. */
        if (proc->process.pid > 0) {
            proc->pid = proc->process.pid;
            proc_kill(proc, "could not be read from");
            /* The exit callback closes everything. */
            proc->owner = NULL;
            return err;
        }
        proc_close_all(proc);
        return err;
    }
    proc->pid = proc->process.pid;
    *out = proc;
    return 0;
}

static ssize_t exec_cut_ndjson(const char *buf, size_t len,
                               const shoal_limits_t *limits,
                               shoal_cut_state_t *st, shoal_frame_t *out)
{
    return shoal_wire_cut(SHOAL_FRAMING_NDJSON, buf, len, limits, st, out);
}

/* ---- the NDJSON application --------------------------------------------
 */

typedef struct {
    shoal_call_t *call;
    bool sent; /* written to the running program, not waiting for one */
} exec_call_t;

typedef struct {
    shoal__app_t *app; /* the registry's record; NULL once closed */
    uv_loop_t *loop;
    char label[SHOAL_MAX_NAME_BYTES + 32]; /* "application 'NAME'" */
    char *command;
    shoal_limits_t limits;
    size_t high_water;  /* bytes waiting for the program */
    exec_proc_t *proc;  /* the program, NULL when none runs */
    shoal__map_t calls; /* the node's id -> exec_call_t */
    int64_t next_id;
    shoal_buf_t pending; /* lines for the next program while none runs */
    uv_timer_t restart_timer;
    uint64_t started_ms;
    uint64_t backoff_ms;
    uint64_t next_start_ms;
    uint64_t tells_dropped;
    bool overloaded; /* reported once per episode */
    bool closing;
} exec_app_t;

static void exec_on_frame(exec_proc_t *proc, const shoal_frame_t *frame,
                          void *owner);
static void exec_on_exit(exec_proc_t *proc, int64_t exit_status,
                         int term_signal, const char *why, void *owner);

static const exec_proc_ops_t exec_ndjson_ops = {
    .cut = exec_cut_ndjson,
    .on_frame = exec_on_frame,
    .on_exit = exec_on_exit,
};

static size_t exec_queued_bytes(const exec_app_t *ex)
{
    return ex->pending.len + (ex->proc ? proc_queued_bytes(ex->proc) : 0);
}

/* Answers every call (only those written to the program that ended, when
 * sent_only) with code and message. Returns how many. The ids are
 * collected first: answering must not happen while the map is walked. */
static size_t exec_fail_calls(exec_app_t *ex, bool sent_only, int code,
                              const char *message)
{
    uint64_t *ids;
    size_t n = 0;

    if (ex->calls.count == 0)
        return 0;
    ids = malloc(ex->calls.count * sizeof(*ids));
    if (ids == NULL)
        return 0;
    for (size_t i = 0; i <= ex->calls.mask; i++) {
        exec_call_t *ec = ex->calls.values[i];
        if (ec != NULL && (!sent_only || ec->sent))
            ids[n++] = ex->calls.keys[i];
    }
    for (size_t i = 0; i < n; i++) {
        exec_call_t *ec = shoal__map_del(&ex->calls, ids[i]);
        shoal_call_t *call = ec->call;
        free(ec);
        shoal_call_fail(call, code, "%s", message);
    }
    free(ids);
    return n;
}

static void exec_mark_sent(exec_app_t *ex)
{
    for (size_t i = 0; ex->calls.count > 0 && i <= ex->calls.mask; i++) {
        exec_call_t *ec = ex->calls.values[i];
        if (ec != NULL)
            ec->sent = true;
    }
}

/* Starts the program now. Lines that waited for it are written first. */
static int exec_start(exec_app_t *ex)
{
    int err;

    err = proc_start(ex->loop, ex->command, ex->label, &ex->limits,
                     &exec_ndjson_ops, ex, &ex->proc);
    if (err) {
        ex->proc = NULL;
        return err;
    }
    ex->started_ms = uv_now(ex->loop);
    if (ex->pending.len > 0) {
        err = proc_write(ex->proc, ex->pending.base, ex->pending.len);
        ex->pending.len = 0;
        if (ex->pending.cap > EXEC_KEEP_BUFFER_BYTES)
            shoal_buf_free(&ex->pending);
        if (err) {
            /* Nothing was queued: the program has nothing to answer. */
            exec_fail_calls(ex, false, SHOAL_EAPPFAILED,
                            "the program's input could not be queued");
            return 0;
        }
    }
    exec_mark_sent(ex);
    return 0;
}

static void exec_ensure_started(exec_app_t *ex);

static void exec_restart_cb(uv_timer_t *timer)
{
    exec_ensure_started(timer->data);
}

static void exec_next_backoff(exec_app_t *ex, uint64_t now)
{
    if (now - ex->started_ms >= EXEC_STABLE_MS)
        ex->backoff_ms = 0;
    else if (ex->backoff_ms == 0)
        ex->backoff_ms = EXEC_BACKOFF_MIN_MS;
    else if (ex->backoff_ms * 2 > EXEC_BACKOFF_MAX_MS)
        ex->backoff_ms = EXEC_BACKOFF_MAX_MS;
    else
        ex->backoff_ms *= 2;
    ex->next_start_ms = now + ex->backoff_ms;
}

/* Work waits for the program: start it, now or when the backoff ends. */
static void exec_ensure_started(exec_app_t *ex)
{
    uint64_t now = uv_now(ex->loop);
    char message[160];
    int err;

    if (ex->proc != NULL || ex->closing ||
        uv_is_active((uv_handle_t *)&ex->restart_timer))
        return;
    if (now < ex->next_start_ms) {
        uv_timer_start(&ex->restart_timer, exec_restart_cb,
                       ex->next_start_ms - now, 0);
        return;
    }
    ex->started_ms = now;
    err = exec_start(ex);
    if (err == 0)
        return;
    snprintf(message, sizeof(message), "cannot start the program: %s",
             shoal_strerror(err));
    fprintf(stderr, "shoal: %s: %s\n", ex->label, message);
    ex->pending.len = 0;
    exec_fail_calls(ex, false, SHOAL_EAPPFAILED, message);
    exec_next_backoff(ex, now);
}

/* Writes one line to the program, or keeps it for the next one. */
static int exec_send(exec_app_t *ex, const shoal_buf_t *line)
{
    int err;

    if (ex->proc != NULL && proc_accepting(ex->proc))
        return proc_write(ex->proc, line->base, line->len);
    err = shoal_buf_append(&ex->pending, line->base, line->len);
    if (err)
        return err;
    exec_ensure_started(ex);
    return 0;
}

/* ---- from the node to the program --------------------------------------
 */

static const shoal_payload_t exec_null = {"null", 4, SHOAL_CODEC_JSON};

static void exec_action_cb(shoal_call_t *call, void *data)
{
    exec_app_t *ex = data;
    const shoal_payload_t *args = shoal_call_args(call);
    const char *action = shoal_call_action(call);
    shoal_envelope_t env;
    exec_call_t *ec;
    shoal_buf_t line;
    int64_t id;
    int err;

    if (ex->calls.count >= EXEC_MAX_CALLS) {
        shoal_call_fail(call, SHOAL_EOVERLOADED,
                        "%s: %d calls already wait for its program", ex->label,
                        EXEC_MAX_CALLS);
        return;
    }
    if (exec_queued_bytes(ex) >= ex->high_water) {
        shoal_call_fail(call, SHOAL_EOVERLOADED,
                        "%s: its program does not read its input "
                        "(%zu bytes wait)",
                        ex->label, exec_queued_bytes(ex));
        return;
    }
    id = ex->next_id++;
    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_CALL;
    env.has_id = true;
    env.id = id;
    env.action.present = true;
    env.action.len = (uint8_t)strlen(action);
    memcpy(env.action.s, action, env.action.len + 1u);
    /* Always present, so that a program may read args without a test. */
    env.args = args->data != NULL ? *args : exec_null;
    shoal_buf_init(&line);
    err = shoal_wire_encode(SHOAL_FRAMING_NDJSON, &env, &line);
    if (err) {
        shoal_buf_free(&line);
        shoal_call_fail(call, SHOAL_EBADTYPE,
                        "%s: the arguments cannot be passed on as JSON: %s",
                        ex->label, shoal_strerror(err));
        return;
    }
    ec = malloc(sizeof(*ec));
    if (ec == NULL || shoal__map_put(&ex->calls, (uint64_t)id, ec) != 0) {
        free(ec);
        shoal_buf_free(&line);
        shoal_call_fail(call, SHOAL_ENOMEM, "out of memory");
        return;
    }
    ec->call = call;
    ec->sent = false;
    /* exec_send may start the program, which marks ec sent, or fail to,
     * which answers the call: ec is not touched after it. */
    err = exec_send(ex, &line);
    shoal_buf_free(&line);
    if (err == 0) {
        ec = shoal__map_get(&ex->calls, (uint64_t)id);
        if (ec != NULL && ex->proc != NULL && proc_accepting(ex->proc))
            ec->sent = true;
        return;
    }
    ec = shoal__map_del(&ex->calls, (uint64_t)id);
    if (ec != NULL) {
        free(ec);
        shoal_call_fail(call, err, "%s: %s", ex->label, shoal_strerror(err));
    }
}

static void exec_tell_cb(shoal_node_t *node, shoal_conn_t *from,
                         const shoal_payload_t *msg, void *data)
{
    exec_app_t *ex = data;
    shoal_envelope_t env;
    shoal_buf_t line;

    (void)node;
    (void)from;
    if (exec_queued_bytes(ex) >= ex->high_water) {
        /* A tell has no answer to carry an error: it is counted, and the
         * first of a run is reported. */
        ex->tells_dropped++;
        if (!ex->overloaded)
            fprintf(stderr,
                    "shoal: %s: its program does not read its input; "
                    "dropping tells\n",
                    ex->label);
        ex->overloaded = true;
        return;
    }
    ex->overloaded = false;
    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_TELL;
    env.msg = msg != NULL && msg->data != NULL ? *msg : exec_null;
    shoal_buf_init(&line);
    if (shoal_wire_encode(SHOAL_FRAMING_NDJSON, &env, &line) != 0 ||
        exec_send(ex, &line) != 0) {
        ex->tells_dropped++;
        fprintf(stderr,
                "shoal: %s: a tell could not be passed on as JSON; "
                "dropped\n",
                ex->label);
    }
    shoal_buf_free(&line);
}

/* ---- from the program to the node --------------------------------------
 */

/* Reports a line the program should not have written. */
static void exec_complain(const exec_app_t *ex, const shoal_frame_t *frame,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void exec_complain(const exec_app_t *ex, const shoal_frame_t *frame,
                          const char *fmt, ...)
{
    char what[256], excerpt[EXEC_EXCERPT_BYTES + 4];
    size_t n =
        frame->len < EXEC_EXCERPT_BYTES ? frame->len : EXEC_EXCERPT_BYTES;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)frame->data[i];
        excerpt[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    memcpy(excerpt + n, frame->len > n ? "..." : "", frame->len > n ? 4 : 1);
    fprintf(stderr, "shoal: %s: the program wrote %s; line dropped: %s\n",
            ex->label, what, excerpt);
}

static void exec_on_reply(exec_app_t *ex, const shoal_frame_t *frame,
                          const shoal_envelope_t *env)
{
    shoal_call_t *call;
    exec_call_t *ec;
    shoal_name_t code;
    char message[1024];

    if (!env->has_id) {
        exec_complain(ex, frame, "a reply without an \"id\"");
        return;
    }
    ec = shoal__map_get(&ex->calls, (uint64_t)env->id);
    if (ec == NULL || !ec->sent) {
        exec_complain(ex, frame, "a reply to unknown id %lld",
                      (long long)env->id);
        return;
    }
    shoal__map_del(&ex->calls, (uint64_t)env->id);
    call = ec->call;
    free(ec);
    if (env->error.data == NULL) {
        shoal_call_reply(call, env->result.data ? &env->result : NULL);
        return;
    }
    shoal_wire_decode_error(&env->error, &code, message, sizeof(message));
    if (!code.present || code.len == 0) {
        exec_complain(ex, frame,
                      "an error that is not {\"code\", "
                      "\"message\"}");
        shoal_call_fail(call, SHOAL_EAPPFAILED,
                        "%s: its program answered with a malformed error",
                        ex->label);
        return;
    }
    shoal_call_fail_named(call, code.s, "%s", message);
}

/* Replaces the registry's copy of the description and action table with
 * what the program says of itself. app_exec.c is part of the app module:
 * it keeps the record in the shape app.c allocates and frees. */
static void exec_on_hello(exec_app_t *ex, const shoal_frame_t *frame)
{
    shoal__app_t *app = ex->app;
    cJSON *hello = cJSON_ParseWithLength(frame->data, frame->len);
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(hello, "description");
    const cJSON *actions = cJSON_GetObjectItemCaseSensitive(hello, "actions");
    const cJSON *item;

    if (hello == NULL || app == NULL) {
        cJSON_Delete(hello);
        return;
    }
    if (desc != NULL && !cJSON_IsObject(desc)) {
        exec_complain(ex, frame,
                      "a hello whose \"description\" is not an "
                      "object");
    } else if (desc != NULL) {
        cJSON *copy = cJSON_Duplicate(desc, 1);
        char *text;

        if (copy != NULL &&
            !cJSON_HasObjectItem(copy, "exec")) /* where it comes from */
            cJSON_AddStringToObject(copy, "exec", ex->command);
        text = copy ? cJSON_PrintUnformatted(copy) : NULL;
        cJSON_Delete(copy);
        if (text != NULL) {
            free(app->description);
            app->description = text;
            app->opts.description = text;
        }
    }
    if (actions != NULL) {
        size_t n = (size_t)cJSON_GetArraySize(actions);
        shoal_action_t *table = NULL;
        size_t made = 0;
        bool ok = cJSON_IsArray(actions);

        if (ok && n > 0)
            ok = (table = calloc(n, sizeof(*table))) != NULL;
        cJSON_ArrayForEach(item, actions)
        {
            const char *name = cJSON_GetStringValue(item);
            if (!ok)
                break;
            ok = name != NULL && name[0] != '\0' &&
                 strlen(name) <= SHOAL_MAX_NAME_BYTES;
            if (ok)
                ok = (table[made].name = strdup(name)) != NULL;
            if (ok)
                table[made++].fn = exec_action_cb;
        }
        if (!ok) {
            for (size_t i = 0; i < made; i++)
                free((char *)table[i].name);
            free(table);
            exec_complain(ex, frame,
                          "a hello whose \"actions\" is not an "
                          "array of names");
        } else {
            for (size_t i = 0; i < app->n_actions; i++)
                free((char *)app->actions[i].name);
            free(app->actions);
            app->actions = table;
            app->n_actions = made;
            app->opts.actions = table;
            app->opts.n_actions = made;
            /* Declared actions are the only ones: others get ENOACTION
             * from the node without reaching the program. */
            app->opts.on_call = NULL;
        }
    }
    cJSON_Delete(hello);
}

static void exec_on_frame(exec_proc_t *proc, const shoal_frame_t *frame,
                          void *owner)
{
    exec_app_t *ex = owner;
    shoal_envelope_t env;
    char detail[200];
    int err;

    (void)proc;
    detail[0] = '\0';
    err = shoal_wire_decode(SHOAL_CODEC_JSON, frame->data, frame->len,
                            &ex->limits, &env, detail, sizeof(detail));
    if (err) {
        /* The wire layer's detail is a whole phrase ("invalid JSON:
         * unexpected '}' at byte 17"). */
        exec_complain(ex, frame, "%s",
                      detail[0] ? detail : shoal_strerror(err));
        return;
    }
    switch (env.type) {
    case SHOAL_MSG_REPLY:
        exec_on_reply(ex, frame, &env);
        break;
    case SHOAL_MSG_HELLO:
        exec_on_hello(ex, frame);
        break;
    default:
        exec_complain(ex, frame,
                      "a message of type '%s', which programs "
                      "do not send",
                      env.type_name.s);
        break;
    }
}

static void exec_on_exit(exec_proc_t *proc, int64_t exit_status,
                         int term_signal, const char *why, void *owner)
{
    exec_app_t *ex = owner;
    uint64_t now = uv_now(ex->loop);
    char message[160];
    size_t failed;

    (void)proc;
    ex->proc = NULL;
    if (why != NULL)
        snprintf(message, sizeof(message), "program %s and was killed", why);
    else if (term_signal != 0)
        snprintf(message, sizeof(message), "program killed by signal %d",
                 term_signal);
    else
        snprintf(message, sizeof(message), "program exited with status %lld",
                 (long long)exit_status);
    failed = exec_fail_calls(ex, true, SHOAL_EAPPFAILED, message);
    fprintf(stderr, "shoal: %s: %s; %zu call%s failed\n", ex->label, message,
            failed, failed == 1 ? "" : "s");
    exec_next_backoff(ex, now);
    /* Restarted only when work waits for it. */
    if (ex->pending.len > 0 || ex->calls.count > 0)
        exec_ensure_started(ex);
}

/* ---- life cycle --------------------------------------------------------
 */

static void exec_free(exec_app_t *ex)
{
    shoal__map_free(&ex->calls);
    shoal_buf_free(&ex->pending);
    free(ex->command);
    free(ex);
}

static void exec_timer_close_cb(uv_handle_t *handle)
{
    exec_free(handle->data);
}

/* The app is removed or the node closes: calls are answered now (the
 * node's connections still take answers), the program is stopped in its
 * own time, and nothing here touches the node again. */
static void exec_close_cb(void *data)
{
    exec_app_t *ex = data;
    char message[SHOAL_MAX_NAME_BYTES + 64];

    ex->closing = true;
    snprintf(message, sizeof(message), "%s is shutting down", ex->label);
    /* app.c's app_close frees its record after on_close when no call is in
     * flight, and call_free frees a removed record with its last call:
     * answering the last call here would free it under app_close. Hold
     * one reference while answering. */
    ex->app->in_flight++;
    exec_fail_calls(ex, false, SHOAL_ESTOPPING, message);
    ex->app->in_flight--;
    ex->app = NULL;
    if (ex->proc != NULL) {
        proc_detach(ex->proc);
        proc_stop(ex->proc);
        ex->proc = NULL;
    }
    uv_close((uv_handle_t *)&ex->restart_timer, exec_timer_close_cb);
}

int shoal_node_add_exec_app(shoal_node_t *node, const char *name,
                            const char *command, char *err, size_t err_len)
{
    shoal_app_opts_t opts;
    exec_app_t *ex;
    cJSON *desc;
    char *desc_text;
    int rc;

    if (name == NULL || command == NULL || command[0] == '\0') {
        snprintf(err, err_len,
                 "an external application needs a name and "
                 "a command");
        return SHOAL_EINVAL;
    }
    if (node->priv->closing) {
        snprintf(err, err_len, "application '%s': %s", name,
                 shoal_strerror(SHOAL_ECLOSING));
        return SHOAL_ECLOSING;
    }
    ex = calloc(1, sizeof(*ex));
    desc = cJSON_CreateObject();
    if (ex == NULL || desc == NULL ||
        cJSON_AddStringToObject(desc, "exec", command) == NULL ||
        (ex->command = strdup(command)) == NULL ||
        (desc_text = cJSON_PrintUnformatted(desc)) == NULL) {
        cJSON_Delete(desc);
        if (ex != NULL)
            free(ex->command);
        free(ex);
        snprintf(err, err_len, "application '%s': %s", name,
                 shoal_strerror(SHOAL_ENOMEM));
        return SHOAL_ENOMEM;
    }
    cJSON_Delete(desc);
    ex->loop = node->loop;
    ex->limits = node->priv->limits;
    ex->high_water = node->priv->high_water;
    ex->next_id = 1;
    snprintf(ex->label, sizeof(ex->label), "application '%s'", name);
    shoal__map_init(&ex->calls);
    shoal_buf_init(&ex->pending);

    memset(&opts, 0, sizeof(opts));
    opts.name = name;
    opts.description = desc_text;
    opts.on_call = exec_action_cb;
    opts.on_tell = exec_tell_cb;
    opts.on_close = exec_close_cb;
    opts.data = ex;
    rc = shoal_node_add_app(node, &opts);
    free(desc_text);
    if (rc) {
        snprintf(err, err_len, "application '%s': %s", name,
                 shoal_strerror(rc));
        exec_free(ex);
        return rc;
    }
    ex->app = shoal__node_find_app(node, name, strlen(name));
    uv_timer_init(ex->loop, &ex->restart_timer);
    ex->restart_timer.data = ex;
    /* Started now rather than at the first call: its hello describes the
     * application from the start, and a command that cannot be spawned
     * is refused here. */
    ex->started_ms = uv_now(ex->loop);
    rc = exec_start(ex);
    if (rc) {
        snprintf(err, err_len,
                 "application '%s': cannot start /bin/sh -c "
                 "'%s': %s",
                 name, command, shoal_strerror(rc));
        shoal_node_remove_app(node, name);
        return rc;
    }
    return 0;
}
