/* One libuv stream: framing detection, frame cutting, batched writes,
 * back-pressure and the one way a connection fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Read at least this much per read call: one syscall for many small
 * frames. */
#define CONN_READ_CHUNK_BYTES 65536
/* Buffers that grew for a big frame are given back above this size. */
#define CONN_KEEP_BUFFER_BYTES (1u << 20)

static void conn_flush(shoal_conn_t *conn);
static void conn_close_handle(shoal_conn_t *conn);
static void conn_update_reading(shoal_conn_t *conn);
static void conn_deliver_frames(shoal_conn_t *conn);

/* ---- flusher ---------------------------------------------------------- */

static void flusher_prepare_cb(uv_prepare_t *prepare)
{
    shoal__flusher_t *flusher = prepare->data;

    /* conn_flush may close a connection; each is unlinked before it is
     * flushed, so the walk never touches a freed one. */
    while (!shoal__list_empty(&flusher->dirty)) {
        shoal__list_t *item = flusher->dirty.next;
        shoal__list_remove(item);
        conn_flush(SHOAL__CONTAINER(item, shoal_conn_t, dirty_link));
    }
    /* An active prepare handle keeps the loop alive: run only when
     * needed. */
    uv_prepare_stop(prepare);
}

void shoal__flusher_init(uv_loop_t *loop, shoal__flusher_t *flusher)
{
    uv_prepare_init(loop, &flusher->prepare);
    flusher->prepare.data = flusher;
    shoal__list_init(&flusher->dirty);
}

void shoal__flusher_close(shoal__flusher_t *flusher, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&flusher->prepare, cb);
}

static void conn_mark_dirty(shoal_conn_t *conn)
{
    if (conn->dirty_link.next != &conn->dirty_link)
        return;
    shoal__list_push(&conn->flusher->dirty, &conn->dirty_link);
    uv_prepare_start(&conn->flusher->prepare, flusher_prepare_cb);
}

/* ---- setup ------------------------------------------------------------ */

void shoal__conn_setup(shoal_conn_t *conn, shoal_node_t *node,
                       const shoal__conn_owner_t *owner,
                       shoal__flusher_t *flusher, const shoal_limits_t *limits,
                       size_t high_water, uint64_t linger_ms)
{
    memset(conn, 0, sizeof(*conn));
    conn->node = node;
    conn->owner = owner;
    conn->flusher = flusher;
    conn->limits = limits;
    conn->high_water = high_water;
    conn->linger_ms = linger_ms;
    conn->state = SHOAL_CONN_CONNECTING;
    conn->next_id = 1;
    shoal_cut_reset(&conn->cut);
    shoal_buf_init(&conn->out);
    shoal_buf_init(&conn->sending);
    shoal__list_init(&conn->dirty_link);
    shoal__list_init(&conn->node_link);
    shoal__list_init(&conn->calls_in);
    shoal__map_init(&conn->calls_out);
}

int shoal__conn_start(shoal_conn_t *conn)
{
    conn->h.handle.data = conn;
    conn->state = SHOAL_CONN_OPEN;
    if (conn->h.handle.type == UV_TCP)
        uv_tcp_nodelay(&conn->h.tcp, 1);
    conn_update_reading(conn);
    if (conn->state == SHOAL_CONN_OPEN && conn->out.len > 0)
        conn_mark_dirty(conn);
    return 0;
}

/* ---- failure and closing ---------------------------------------------- */

/* Bad input from the peer: it is told what was wrong before the close. */
static bool conn_err_is_bad_input(int err)
{
    switch (err) {
    case SHOAL_EBADFRAMING:
    case SHOAL_EBADJSON:
    case SHOAL_EBADMSGPACK:
    case SHOAL_EBADLENGTH:
    case SHOAL_ETOOBIG:
    case SHOAL_ETOODEEP:
    case SHOAL_EBADUTF8:
    case SHOAL_ENOTMAP:
    case SHOAL_ETRUNCATED:
        return true;
    default:
        return false;
    }
}

static void conn_linger_close_cb(uv_handle_t *handle)
{
    free(handle);
}

static void conn_linger_cb(uv_timer_t *timer)
{
    shoal_conn_t *conn = timer->data;

    /* The peer does not read what is left: give up on it. */
    conn_close_handle(conn);
}

/* Stops taking input and closes once the queue is written, or after the
 * linger time. */
static void conn_begin_close(shoal_conn_t *conn)
{
    if (conn->state >= SHOAL_CONN_CLOSING)
        return;
    if (conn->state == SHOAL_CONN_CONNECTING) {
        conn_close_handle(conn);
        return;
    }
    conn->state = SHOAL_CONN_CLOSING;
    conn_update_reading(conn);
    conn_flush(conn);
    if (conn->state == SHOAL_CONN_CLOSED)
        return;
    if (!conn->writing && conn->out.len == 0) {
        conn_close_handle(conn);
        return;
    }
    conn->linger = malloc(sizeof(*conn->linger));
    if (conn->linger == NULL) {
        conn_close_handle(conn);
        return;
    }
    uv_timer_init(conn->h.handle.loop, conn->linger);
    conn->linger->data = conn;
    uv_timer_start(conn->linger, conn_linger_cb, conn->linger_ms, 0);
}

void shoal__conn_fail(shoal_conn_t *conn, int err, const char *detail)
{
    if (conn->state >= SHOAL_CONN_CLOSING)
        return; /* reported once */
    conn->close_status = err;
    if (conn_err_is_bad_input(err) && conn->state == SHOAL_CONN_OPEN) {
        char message[256];
        snprintf(message, sizeof(message), "%s",
                 detail ? detail : shoal_strerror(err));
        shoal__conn_send_error(conn, false, 0, shoal_err_name(err), message);
        conn_begin_close(conn);
        return;
    }
    if (err < 0 && !conn_err_is_bad_input(err)) {
        /* The stream itself broke: nothing more can be written. */
        conn_close_handle(conn);
        return;
    }
    conn_begin_close(conn);
}

void shoal__conn_end(shoal_conn_t *conn, int status)
{
    if (conn->state >= SHOAL_CONN_CLOSING)
        return;
    conn->close_status = status;
    conn_begin_close(conn);
}

static void conn_close_cb(uv_handle_t *handle)
{
    shoal_conn_t *conn = handle->data;

    shoal__list_remove(&conn->dirty_link);
    free(conn->in);
    conn->in = NULL;
    shoal_buf_free(&conn->out);
    shoal_buf_free(&conn->sending);
    /* The owner fails calls in flight and frees conn. */
    conn->owner->on_closed(conn, conn->close_status);
}

static void conn_close_handle(shoal_conn_t *conn)
{
    if (conn->state == SHOAL_CONN_CLOSED)
        return;
    conn->state = SHOAL_CONN_CLOSED;
    shoal__list_remove(&conn->dirty_link);
    if (conn->linger != NULL) {
        uv_timer_stop(conn->linger);
        uv_close((uv_handle_t *)conn->linger, conn_linger_close_cb);
        conn->linger = NULL;
    }
    conn->h.handle.data = conn;
    uv_close(&conn->h.handle, conn_close_cb);
}

/* ---- writing ---------------------------------------------------------- */

static void conn_write_cb(uv_write_t *req, int status);

/* A write finished: start the next one, resume reading when the queue has
 * drained, finish a close. */
static void conn_wrote(shoal_conn_t *conn)
{
    conn->sending.len = 0;
    if (conn->sending.cap > CONN_KEEP_BUFFER_BYTES)
        shoal_buf_free(&conn->sending);
    if (conn->out.len > 0) {
        conn_flush(conn);
        if (conn->state == SHOAL_CONN_CLOSED || conn->writing)
            return;
    }
    if (conn->state == SHOAL_CONN_CLOSING && conn->out.len == 0) {
        conn_close_handle(conn);
        return;
    }
    if (conn->paused_full &&
        conn->out.len + conn->sending.len <= conn->high_water / 2) {
        conn->paused_full = false;
        conn_deliver_frames(conn);
    }
}

static void conn_flush(shoal_conn_t *conn)
{
    shoal_buf_t swap;
    uv_buf_t buf;
    int n;

    if (conn->writing || conn->out.len == 0 ||
        conn->state == SHOAL_CONN_CONNECTING ||
        conn->state == SHOAL_CONN_CLOSED)
        return;
    /* What was filled this turn goes to the kernel; the emptied buffer
     * takes the next turn's output. */
    swap = conn->sending;
    conn->sending = conn->out;
    conn->out = swap;
    conn->out.len = 0;

    buf = uv_buf_init(conn->sending.base, (unsigned)conn->sending.len);
    n = uv_try_write(&conn->h.stream, &buf, 1);
    if (n == (int)conn->sending.len) {
        conn_wrote(conn);
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        shoal__conn_fail(conn, n, NULL);
        return;
    }
    if (n < 0)
        n = 0;
    buf = uv_buf_init(conn->sending.base + n,
                      (unsigned)(conn->sending.len - (size_t)n));
    conn->write_req.data = conn;
    n = uv_write(&conn->write_req, &conn->h.stream, &buf, 1, conn_write_cb);
    if (n < 0) {
        shoal__conn_fail(conn, n, NULL);
        return;
    }
    conn->writing = true;
}

static void conn_write_cb(uv_write_t *req, int status)
{
    shoal_conn_t *conn = req->data;

    conn->writing = false;
    if (conn->state == SHOAL_CONN_CLOSED)
        return; /* UV_ECANCELED after uv_close */
    if (status < 0) {
        shoal__conn_fail(conn, status, NULL);
        return;
    }
    conn_wrote(conn);
}

int shoal__conn_send(shoal_conn_t *conn, const shoal_envelope_t *env)
{
    shoal_framing_t framing = conn->framing;
    int err;

    if (conn->state >= SHOAL_CONN_CLOSING)
        return SHOAL_ECLOSING;
    /* Nothing arrived yet on an accepted connection: speak NDJSON, the
     * framing a person at a terminal reads. */
    if (framing == SHOAL_FRAMING_UNKNOWN)
        framing = SHOAL_FRAMING_NDJSON;
    err = shoal_wire_encode(framing, env, &conn->out);
    if (err)
        return err;
    conn->node->priv->counters.msgs_out++;
    conn_mark_dirty(conn);
    /* Only answers count: a caller that queues many calls must keep
     * reading the replies that will drain its queue, or both sides
     * stall. */
    if ((env->type == SHOAL_MSG_REPLY || env->type == SHOAL_MSG_ERROR) &&
        !conn->paused_full &&
        conn->out.len + conn->sending.len > conn->high_water) {
        /* The peer does not read its replies as fast as it sends
         * requests: stop reading it until they drain. */
        conn->paused_full = true;
        conn_update_reading(conn);
    }
    return 0;
}

int shoal__conn_send_error(shoal_conn_t *conn, bool has_id, int64_t id,
                           const char *code, const char *message)
{
    shoal_framing_t framing = conn->framing;
    shoal_envelope_t env;
    shoal_buf_t payload;
    int err;

    if (framing == SHOAL_FRAMING_UNKNOWN)
        framing = SHOAL_FRAMING_NDJSON;
    shoal_buf_init(&payload);
    err = shoal_wire_encode_error(shoal_framing_codec(framing), code, message,
                                  &payload);
    if (err)
        goto done;
    shoal_envelope_init(&env);
    env.type = has_id ? SHOAL_MSG_REPLY : SHOAL_MSG_ERROR;
    env.has_id = has_id;
    env.id = id;
    env.error.data = payload.base;
    env.error.len = payload.len;
    env.error.codec = shoal_framing_codec(framing);
    err = shoal__conn_send(conn, &env);
done:
    shoal_buf_free(&payload);
    return err;
}

/* ---- reading ---------------------------------------------------------- */

static void conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    shoal_conn_t *conn = handle->data;
    size_t held = conn->in_len - conn->in_off;
    size_t cap;
    char *in;

    (void)suggested;
    /* Move an unfinished frame to the front before growing. */
    if (conn->in_off > 0 &&
        conn->in_cap - conn->in_len < CONN_READ_CHUNK_BYTES) {
        conn->in_consumed += conn->in_off;
        memmove(conn->in, conn->in + conn->in_off, held);
        conn->in_off = 0;
        conn->in_len = held;
    }
    if (conn->in_cap - conn->in_len < CONN_READ_CHUNK_BYTES) {
        cap = conn->in_cap ? conn->in_cap * 2 : CONN_READ_CHUNK_BYTES;
        while (cap - conn->in_len < CONN_READ_CHUNK_BYTES)
            cap *= 2;
        in = realloc(conn->in, cap);
        if (in == NULL) {
            *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
            return;
        }
        conn->in = in;
        conn->in_cap = cap;
    }
    *buf = uv_buf_init(conn->in + conn->in_len,
                       (unsigned)(conn->in_cap - conn->in_len));
}

static bool conn_only_whitespace(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

static void conn_read_eof(shoal_conn_t *conn)
{
    size_t held = conn->in_len - conn->in_off;
    char detail[160];

    conn->reading = false;
    uv_read_stop(&conn->h.stream);
    if (held > 0 && !conn_only_whitespace(conn->in + conn->in_off, held)) {
        snprintf(detail, sizeof(detail),
                 "frame cut off by a closed connection after %zu bytes", held);
        conn->node->priv->counters.errors++;
        shoal__conn_fail(conn, SHOAL_ETRUNCATED, detail);
        return;
    }
    /* The peer is done sending but may still read: answer the calls it
     * made before closing. */
    conn->in_off = conn->in_len = 0;
    conn->eof = true;
    conn->pauses++;
    if (shoal__list_empty(&conn->calls_in))
        shoal__conn_end(conn, 0);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread,
                         const uv_buf_t *buf)
{
    shoal_conn_t *conn = stream->data;

    (void)buf;
    if (nread > 0) {
        conn->in_len += (size_t)nread;
        conn_deliver_frames(conn);
        return;
    }
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        conn_read_eof(conn);
        return;
    }
    shoal__conn_fail(conn, (int)nread, NULL);
}

/* Errors after which the stream can still be trusted: the message is
 * refused, the connection stays. */
static bool conn_err_is_per_message(int err)
{
    return err == SHOAL_EBADTYPE || err == SHOAL_ENAMETOOLONG ||
           err == SHOAL_EBADMSG;
}

static void conn_decode_frame(shoal_conn_t *conn, const shoal_frame_t *frame)
{
    shoal_envelope_t env;
    char detail[200];
    int err;

    conn->node->priv->counters.msgs_in++;
    detail[0] = '\0';
    err = shoal_wire_decode(conn->in_codec, frame->data, frame->len,
                            conn->limits, &env, detail, sizeof(detail));
    if (err == 0) {
        conn->owner->on_message(conn, &env, frame);
        return;
    }
    conn->node->priv->counters.errors++;
    if (conn_err_is_per_message(err)) {
        shoal__conn_send_error(conn, env.has_id, env.id, shoal_err_name(err),
                               detail[0] ? detail : shoal_strerror(err));
        return;
    }
    shoal__conn_fail(conn, err, detail[0] ? detail : NULL);
}

/* Says which limit a frame broke, and where the frame starts in the
 * stream: the cutters stop at the byte that decides, which is not always
 * a byte a person could point to. */
static void conn_cut_error_detail(const shoal_conn_t *conn, int err,
                                  char *detail, size_t len)
{
    unsigned long long at =
        (unsigned long long)(conn->in_consumed + conn->in_off);
    size_t limit = conn->limits->max_frame_bytes;
    const char *what = "max_frame_bytes";

    if (err == SHOAL_ETOOBIG) {
        if (conn->in_framing == SHOAL_FRAMING_NDJSON &&
            conn->limits->max_line_bytes < limit) {
            limit = conn->limits->max_line_bytes;
            what = "max_line_bytes";
        }
        snprintf(detail, len,
                 "frame starting at byte %llu exceeds the limit of %zu "
                 "bytes (%s)",
                 at, limit, what);
    } else if (err == SHOAL_ETOODEEP) {
        snprintf(detail, len,
                 "frame starting at byte %llu nests deeper than %u", at,
                 conn->limits->max_depth);
    } else {
        snprintf(detail, len, "%s in the frame starting at byte %llu",
                 shoal_strerror(err), at);
    }
}

static bool conn_wants_input(const shoal_conn_t *conn)
{
    return conn->state == SHOAL_CONN_OPEN && conn->pauses == 0 &&
           !conn->paused_full;
}

static void conn_deliver_frames(shoal_conn_t *conn)
{
    char detail[96];

    /* A handler that resumes this connection lands here again: the outer
     * loop carries on instead. */
    if (conn->delivering)
        return;
    conn->delivering = true;
    /* Bounded by the bytes already read: at most one read buffer. */
    while (conn_wants_input(conn) && conn->in_off < conn->in_len) {
        const char *p = conn->in + conn->in_off;
        size_t len = conn->in_len - conn->in_off;
        shoal_frame_t frame;
        ssize_t n;

        if (conn->in_framing == SHOAL_FRAMING_UNKNOWN) {
            shoal_framing_t framing;
            /* Both sides detect: a peer that speaks first (a server that
             * pushes an event) need not speak this side's framing. */
            if (shoal_wire_detect(p, len, &framing) < 0) {
                snprintf(detail, sizeof(detail),
                         "unknown framing: first byte 0x%02x",
                         (unsigned char)p[0]);
                conn->node->priv->counters.errors++;
                shoal__conn_fail(conn, SHOAL_EBADFRAMING, detail);
                break;
            }
            conn->in_framing = framing;
            conn->in_codec = shoal_framing_codec(framing);
            /* An accepted connection answers in the framing it is spoken
             * to in. */
            if (conn->framing == SHOAL_FRAMING_UNKNOWN) {
                conn->framing = framing;
                conn->codec = conn->in_codec;
            }
        }
        n = shoal_wire_cut(conn->in_framing, p, len, conn->limits, &conn->cut,
                           &frame);
        if (n == 0)
            break;
        if (n < 0) {
            conn->node->priv->counters.errors++;
            conn_cut_error_detail(conn, (int)n, detail, sizeof(detail));
            shoal__conn_fail(conn, (int)n, detail);
            break;
        }
        conn->in_off += (size_t)n;
        if (frame.len > 0)
            conn_decode_frame(conn, &frame);
    }
    conn->delivering = false;
    if (conn->state == SHOAL_CONN_CLOSED)
        return;
    if (conn->in_off == conn->in_len) {
        conn->in_consumed += conn->in_off;
        conn->in_off = conn->in_len = 0;
        if (conn->in_cap > CONN_KEEP_BUFFER_BYTES) {
            free(conn->in);
            conn->in = NULL;
            conn->in_cap = 0;
        }
    }
    conn_update_reading(conn);
}

static void conn_update_reading(shoal_conn_t *conn)
{
    bool want = conn_wants_input(conn);

    if (want && !conn->reading) {
        if (uv_read_start(&conn->h.stream, conn_alloc_cb, conn_read_cb) == 0)
            conn->reading = true;
    } else if (!want && conn->reading) {
        uv_read_stop(&conn->h.stream);
        conn->reading = false;
    }
}

/* ---- public ----------------------------------------------------------- */

void shoal_conn_pause(shoal_conn_t *conn)
{
    conn->pauses++;
    conn_update_reading(conn);
}

void shoal_conn_resume(shoal_conn_t *conn)
{
    if (conn->pauses == 0)
        return;
    conn->pauses--;
    if (conn->pauses == 0)
        conn_deliver_frames(conn);
}

void shoal_conn_close(shoal_conn_t *conn)
{
    shoal__conn_end(conn, 0);
}

size_t shoal_conn_write_queue_bytes(const shoal_conn_t *conn)
{
    return conn->out.len + conn->sending.len;
}

const char *shoal_conn_peer_name(const shoal_conn_t *conn)
{
    return conn->peer_named ? conn->peer_name : conn->address;
}

const char *shoal_conn_peer_address(const shoal_conn_t *conn)
{
    return conn->address;
}

shoal_framing_t shoal_conn_framing(const shoal_conn_t *conn)
{
    return conn->framing;
}

size_t shoal_conn_calls_in_flight(const shoal_conn_t *conn)
{
    return conn->calls_out.count;
}

shoal_node_t *shoal_conn_node(const shoal_conn_t *conn)
{
    return conn->node;
}

void shoal_conn_set_data(shoal_conn_t *conn, void *data)
{
    conn->user_data = data;
}

void *shoal_conn_data(const shoal_conn_t *conn)
{
    return conn->user_data;
}
