/* Worker output: split into lines, each prefixed with the worker's name,
 * to the supervisor's own output or to a size-capped file per worker. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "supervise_internal.h"

#define LOG_CUT_MARK " [line cut]"

/* Writes all of buf, or gives up: a full pipe on a non-blocking fd, or a
 * broken one, costs lines, never the supervisor. */
static void log_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static int log_open(shoal__sup_priv_t *priv, sup_worker_t *w, bool truncate)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s.log", priv->log_dir, w->name);
    w->log_fd = open(path,
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC |
                         (truncate ? O_TRUNC : 0),
                     0644);
    if (w->log_fd < 0)
        return -1;
    w->log_bytes = fstat(w->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

/* NAME.log becomes NAME.log.1 (the previous .1 goes) and a new NAME.log
 * starts: at most twice the cap on disk per worker. */
static void log_rotate(shoal__sup_priv_t *priv, sup_worker_t *w)
{
    char from[4096], to[4200];

    close(w->log_fd);
    w->log_fd = -1;
    snprintf(from, sizeof(from), "%s/%s.log", priv->log_dir, w->name);
    snprintf(to, sizeof(to), "%s.1", from);
    rename(from, to);
    log_open(priv, w, true);
}

static void log_emit(shoal__sup_priv_t *priv, sup_worker_t *w, bool is_err,
                     const char *line, size_t len, bool cut)
{
    char out[SHOAL_SUP_MAX_LINE_BYTES + SHOAL_MAX_NAME_BYTES + 32];
    size_t n = 0;
    int fd;

    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (is_err && len > 0) {
        size_t keep =
            len < sizeof(w->last_error) - 1 ? len : sizeof(w->last_error) - 1;
        memcpy(w->last_error, line, keep);
        w->last_error[keep] = '\0';
    }
    n = (size_t)snprintf(out, sizeof(out), "[%s] ", w->name);
    memcpy(out + n, line, len);
    n += len;
    if (cut) {
        memcpy(out + n, LOG_CUT_MARK, sizeof(LOG_CUT_MARK) - 1);
        n += sizeof(LOG_CUT_MARK) - 1;
    }
    out[n++] = '\n';
    if (priv->log_dir == NULL) {
        fd = is_err ? priv->opts.log_fd_err : priv->opts.log_fd_out;
        if (fd >= 0)
            log_write_all(fd, out, n);
        return;
    }
    if (w->log_fd < 0 && log_open(priv, w, false) != 0)
        return;
    if (w->log_bytes > 0 && w->log_bytes + n > priv->opts.log_max_bytes) {
        log_rotate(priv, w);
        if (w->log_fd < 0)
            return;
    }
    log_write_all(w->log_fd, out, n);
    w->log_bytes += n;
}

void shoal__sup_log_feed(shoal__sup_priv_t *priv, sup_worker_t *w,
                         sup_line_t *line, bool is_err, const char *data,
                         size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;

        if (!line->cutting) {
            size_t room = sizeof(line->buf) - line->len;
            size_t copy = take < room ? take : room;
            memcpy(line->buf + line->len, data, copy);
            line->len += copy;
            if (take > room) {
                /* Too long: what fits goes out marked, the rest of the
                 * line is skipped. */
                log_emit(priv, w, is_err, line->buf, line->len, true);
                line->len = 0;
                line->cutting = true;
            }
        }
        if (nl == NULL)
            return;
        if (!line->cutting)
            log_emit(priv, w, is_err, line->buf, line->len, false);
        line->len = 0;
        line->cutting = false;
        data = nl + 1;
        len -= take + 1;
    }
}

void shoal__sup_log_flush(shoal__sup_priv_t *priv, sup_worker_t *w,
                          sup_line_t *line, bool is_err)
{
    if (line->len > 0 && !line->cutting)
        log_emit(priv, w, is_err, line->buf, line->len, false);
    line->len = 0;
    line->cutting = false;
}

void shoal__sup_log_event(shoal__sup_priv_t *priv, const sup_worker_t *w,
                          const char *fmt, ...)
{
    char out[1024];
    va_list ap;
    int n;

    if (priv->opts.quiet || priv->opts.log_fd_err < 0)
        return;
    if (w != NULL)
        n = snprintf(out, sizeof(out), "shoal supervise: %s: ", w->name);
    else
        n = snprintf(out, sizeof(out), "shoal supervise: ");
    va_start(ap, fmt);
    n += vsnprintf(out + n, sizeof(out) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if ((size_t)n > sizeof(out) - 2)
        n = (int)sizeof(out) - 2;
    out[n++] = '\n';
    log_write_all(priv->opts.log_fd_err, out, (size_t)n);
}

void shoal__sup_log_close(sup_worker_t *w)
{
    if (w->log_fd >= 0)
        close(w->log_fd);
    w->log_fd = -1;
}
