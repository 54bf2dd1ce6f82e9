/* Integration test harness: children started and reaped through fds,
 * raw sockets read with poll() deadlines, framings encoded by hand. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "integration/harness.h"

#define H_READ_CHUNK 65536
#define H_MAX_CHILDREN 64
#define H_MAX_DIRS 16

/* What a failed test leaves behind, for h_fini to clean up: the test's
 * stack is gone by then, so copies are kept here. */
static pid_t h_live_pids[H_MAX_CHILDREN];
static char h_live_dirs[H_MAX_DIRS][64];
static h_run_t *h_live_runs[H_MAX_CHILDREN];
static h_run_t h_run_copies[H_MAX_CHILDREN];

/* Remembers where a run's outputs are, so that h_fini frees them when an
 * assertion ends the test before h_run_free. */
static void h_run_track(h_run_t *run, bool live)
{
    for (size_t i = 0; i < H_MAX_CHILDREN; i++) {
        if (live && h_live_runs[i] == NULL) {
            h_live_runs[i] = run;
            h_run_copies[i] = *run;
            return;
        }
        if (!live && h_live_runs[i] == run) {
            h_live_runs[i] = NULL;
            return;
        }
    }
}

static void h_pid_track(pid_t pid, bool live)
{
    for (size_t i = 0; i < H_MAX_CHILDREN; i++) {
        if (live && h_live_pids[i] == 0) {
            h_live_pids[i] = pid;
            return;
        }
        if (!live && h_live_pids[i] == pid) {
            h_live_pids[i] = 0;
            return;
        }
    }
}

static void h_dir_track(const char *dir, bool live)
{
    for (size_t i = 0; i < H_MAX_DIRS; i++) {
        if (live && h_live_dirs[i][0] == '\0') {
            snprintf(h_live_dirs[i], sizeof(h_live_dirs[i]), "%s", dir);
            return;
        }
        if (!live && strcmp(h_live_dirs[i], dir) == 0) {
            h_live_dirs[i][0] = '\0';
            return;
        }
    }
}

/* Removes a test folder and the files in it (sockets, logs). */
static void h_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
    h_dir_track(dir, false);
}

void h_tmpdir(char *dir)
{
    snprintf(dir, 64, "/tmp/shoal-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    h_dir_track(dir, true);
}

void h_tmpdir_remove(const char *dir)
{
    h_rmdir(dir);
}

void h_init(void)
{
    signal(SIGPIPE, SIG_IGN);
}

void h_fini(void)
{
    for (size_t i = 0; i < H_MAX_CHILDREN; i++) {
        int status;
        if (h_live_pids[i] == 0)
            continue;
        kill(h_live_pids[i], SIGKILL);
        while (waitpid(h_live_pids[i], &status, 0) < 0 && errno == EINTR)
            ;
        h_live_pids[i] = 0;
    }
    for (size_t i = 0; i < H_MAX_DIRS; i++)
        if (h_live_dirs[i][0] != '\0')
            h_rmdir(h_live_dirs[i]);
    for (size_t i = 0; i < H_MAX_CHILDREN; i++) {
        if (h_live_runs[i] == NULL)
            continue;
        free(h_run_copies[i].out);
        free(h_run_copies[i].err);
        h_live_runs[i] = NULL;
    }
}

static int64_t h_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int h_left_ms(int64_t deadline)
{
    int64_t left = deadline - h_now_ms();

    return left < 0 ? 0 : (int)left;
}

static void h_cloexec(int fd)
{
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void h_pipe(int fds[2])
{
    cr_assert_eq(pipe(fds), 0, "pipe: %s", strerror(errno));
    h_cloexec(fds[0]);
    h_cloexec(fds[1]);
}

/* ---- children --------------------------------------------------------- */

/* Forks and execs argv. The child inherits only stdin (/dev/null), the
 * given stdout and stderr, keep_fd (-1: none) and the write end of the
 * death pipe; it is killed if this test process dies first. */
static void h_spawn(h_child_t *child, const char *const *argv, int out_fd,
                    int err_fd, int keep_fd)
{
    pid_t parent = getpid();
    int death[2];
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid;

    cr_assert_geq(null_fd, 0, "/dev/null: %s", strerror(errno));
    h_pipe(death);
    memset(child, 0, sizeof(*child));
    pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(null_fd, 0);
        if (out_fd >= 0)
            dup2(out_fd, 1);
        if (err_fd >= 0)
            dup2(err_fd, 2);
        fcntl(death[1], F_SETFD, 0);
        if (keep_fd >= 0)
            fcntl(keep_fd, F_SETFD, 0);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(null_fd);
    close(death[1]);
    child->pid = pid;
    child->death_fd = death[0];
    h_pid_track(pid, true);
}

int h_child_wait(h_child_t *child, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    struct pollfd p = {.fd = child->death_fd, .events = POLLIN};
    char scratch[64];
    int status;

    if (child->reaped)
        return child->status;
    for (;;) {
        int r = poll(&p, 1, h_left_ms(deadline));
        ssize_t n;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -1;
        n = read(child->death_fd, scratch, sizeof(scratch));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF: every copy of the write end is closed */
    }
    /* The child has closed its fds: it is exiting, waitpid returns. */
    while (waitpid(child->pid, &status, 0) < 0)
        cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    close(child->death_fd);
    child->death_fd = -1;
    child->reaped = true;
    child->status = status;
    h_pid_track(child->pid, false);
    return status;
}

/* The capacity h_append gives a buffer of len bytes: a power of two, so
 * that many appends cost linear time (ASan's realloc always copies). */
static size_t h_append_cap(size_t len)
{
    size_t cap = 64;

    while (cap < len)
        cap *= 2;
    return cap;
}

/* Appends n bytes to a NUL-terminated buffer that only h_append grows
 * (*buf NULL and *len 0 to start). */
static void h_append(char **buf, size_t *len, const char *data, size_t n)
{
    if (*buf == NULL || h_append_cap(*len + n + 1) > h_append_cap(*len + 1)) {
        *buf = realloc(*buf, h_append_cap(*len + n + 1));
        cr_assert_not_null(*buf);
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

void h_run(const char *const *argv, h_run_t *out)
{
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    int out_pipe[2], err_pipe[2];
    struct pollfd p[2];
    h_child_t child;
    char chunk[4096];
    int open_fds = 2;

    memset(out, 0, sizeof(*out));
    h_append(&out->out, &out->out_len, "", 0);
    h_append(&out->err, &out->err_len, "", 0);
    h_pipe(out_pipe);
    h_pipe(err_pipe);
    h_spawn(&child, argv, out_pipe[1], err_pipe[1], -1);
    close(out_pipe[1]);
    close(err_pipe[1]);
    p[0] = (struct pollfd){.fd = out_pipe[0], .events = POLLIN};
    p[1] = (struct pollfd){.fd = err_pipe[0], .events = POLLIN};
    while (open_fds > 0) {
        int r = poll(p, 2, h_left_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            kill(child.pid, SIGKILL);
            h_child_wait(&child, H_WAIT_MS);
            cr_assert_fail("%s did not finish in %d ms; stdout: %s stderr: %s",
                           argv[0], H_WAIT_MS, out->out, out->err);
        }
        for (int i = 0; i < 2; i++) {
            ssize_t n;
            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            n = read(p[i].fd, chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close(p[i].fd);
                p[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                h_append(&out->out, &out->out_len, chunk, (size_t)n);
            } else {
                h_append(&out->err, &out->err_len, chunk, (size_t)n);
            }
        }
    }
    out->status = h_child_wait(&child, h_left_ms(deadline));
    if (out->status == -1) {
        kill(child.pid, SIGKILL);
        h_child_wait(&child, H_WAIT_MS);
        cr_assert_fail("%s closed its output but did not exit", argv[0]);
    }
    out->exit_code = WIFEXITED(out->status) ? WEXITSTATUS(out->status) : -1;
    h_run_track(out, true);
}

void h_run_shoal(const char *const *args, h_run_t *out)
{
    const char *argv[64];
    size_t n = 0;

    argv[n++] = SHOAL_BIN;
    while (args[n - 1] != NULL && n < 63) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    h_run(argv, out);
}

void h_run_free(h_run_t *run)
{
    h_run_track(run, false);
    free(run->out);
    free(run->err);
    run->out = run->err = NULL;
}

/* ---- shoal node ------------------------------------------------------- */

static void h_node_prepare(h_node_t *node)
{
    memset(node, 0, sizeof(*node));
    node->child.death_fd = -1;
    h_tmpdir(node->dir);
    snprintf(node->sock_path, sizeof(node->sock_path), "%s/s.sock", node->dir);
}

/* Reads up to the first newline (or EOF) from fd within the deadline. */
static bool h_read_ready_line(int fd, char *line, size_t cap, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t len = 0;

    while (len + 1 < cap) {
        int r = poll(&p, 1, h_left_ms(deadline));
        ssize_t n;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return false;
        n = read(fd, line + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
        if (memchr(line, '\n', len) != NULL)
            return true;
    }
    line[len] = '\0';
    return false;
}

static void h_node_parse_ready(h_node_t *node, const char *line)
{
    cJSON *ready = cJSON_Parse(line);
    const cJSON *addr;

    cr_assert_not_null(ready, "ready line is not JSON: %s", line);
    cr_assert_not_null(h_str(ready, "name"), "ready line: %s", line);
    snprintf(node->name, sizeof(node->name), "%s", h_str(ready, "name"));
    cJSON_ArrayForEach(addr, cJSON_GetObjectItem(ready, "addresses"))
    {
        const char *url = cJSON_GetStringValue(addr);
        cr_assert_not_null(url, "ready line: %s", line);
        cr_assert_lt(node->n_addresses, H_MAX_ADDRESSES);
        snprintf(node->addresses[node->n_addresses++],
                 sizeof(node->addresses[0]), "%s", url);
        if (strncmp(url, "tcp://", 6) == 0 && node->tcp_url[0] == '\0')
            snprintf(node->tcp_url, sizeof(node->tcp_url), "%s", url);
        if (strncmp(url, "unix://", 7) == 0 && node->unix_url[0] == '\0')
            snprintf(node->unix_url, sizeof(node->unix_url), "%s", url);
    }
    cJSON_Delete(ready);
}

int h_node_spawn(h_node_t *node, const char *const *args)
{
    int64_t deadline = h_now_ms() + H_WAIT_MS;
    const char *argv[64];
    char log_path[160], fd_text[16], line[4096];
    int ready[2], log_fd, null_fd;
    size_t n = 0;
    bool ok;

    if (node->dir[0] == '\0')
        h_node_prepare(node);
    snprintf(log_path, sizeof(log_path), "%s/stderr.log", node->dir);
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(log_fd, 0, "%s: %s", log_path, strerror(errno));
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    cr_assert_geq(null_fd, 0);
    h_pipe(ready);
    snprintf(fd_text, sizeof(fd_text), "%d", ready[1]);
    argv[n++] = SHOAL_BIN;
    argv[n++] = "node";
    for (size_t i = 0; args[i] != NULL && n < 60; i++)
        argv[n++] = args[i];
    argv[n++] = "--ready-fd";
    argv[n++] = fd_text;
    argv[n] = NULL;
    h_spawn(&node->child, argv, null_fd, log_fd, ready[1]);
    close(ready[1]);
    close(log_fd);
    close(null_fd);
    ok = h_read_ready_line(ready[0], line, sizeof(line), deadline);
    close(ready[0]);
    if (!ok)
        return -1;
    h_node_parse_ready(node, line);
    return 0;
}

const char *h_node_stderr(const h_node_t *node)
{
    static char text[16384];
    char path[160];
    size_t len = 0;
    ssize_t n = 1;
    int fd;

    text[0] = '\0';
    snprintf(path, sizeof(path), "%s/stderr.log", node->dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return text;
    while (len + 1 < sizeof(text) &&
           (n = read(fd, text + len, sizeof(text) - 1 - len)) > 0)
        len += (size_t)n;
    text[len] = '\0';
    close(fd);
    return text;
}

void h_node_start(h_node_t *node, const char *name, const char *const *extra)
{
    const char *args[64];
    char unix_arg[160];
    size_t n = 0;

    h_node_prepare(node);
    snprintf(unix_arg, sizeof(unix_arg), "unix://%s", node->sock_path);
    args[n++] = "--name";
    args[n++] = name;
    args[n++] = "--listen";
    args[n++] = "tcp://127.0.0.1:0";
    args[n++] = "--listen";
    args[n++] = unix_arg;
    args[n++] = "--quiet";
    args[n++] = "--app";
    args[n++] = "echo";
    args[n++] = "--app";
    args[n++] = "sum";
    args[n++] = "--app";
    args[n++] = "sleep";
    args[n++] = "--app";
    args[n++] = "fail";
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 60; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (h_node_spawn(node, args) != 0) {
        int status = h_child_wait(&node->child, H_WAIT_MS);
        const char *err = h_node_stderr(node);
        cr_assert_fail("shoal node did not start (status 0x%x): %s", status,
                       err);
    }
    cr_assert_str_eq(node->name, name);
    cr_assert_neq(node->tcp_url[0], '\0');
    cr_assert_neq(node->unix_url[0], '\0');
}

int h_node_reap(h_node_t *node)
{
    int status = h_child_wait(&node->child, H_WAIT_MS);

    if (status == -1) {
        kill(node->child.pid, SIGKILL);
        h_child_wait(&node->child, H_WAIT_MS);
        cr_assert_fail("shoal node %s did not exit in %d ms", node->name,
                       H_WAIT_MS);
    }
    h_rmdir(node->dir);
    return status;
}

void h_node_stop(h_node_t *node)
{
    char unix_path[160] = "", err[2048];
    bool socket_left;
    int status;

    cr_assert_eq(kill(node->child.pid, SIGTERM), 0, "kill: %s",
                 strerror(errno));
    status = h_child_wait(&node->child, H_WAIT_MS);
    if (status == -1) {
        kill(node->child.pid, SIGKILL);
        h_child_wait(&node->child, H_WAIT_MS);
        cr_assert_fail("shoal node %s ignored SIGTERM for %d ms", node->name,
                       H_WAIT_MS);
    }
    if (node->unix_url[0] != '\0')
        snprintf(unix_path, sizeof(unix_path), "%s", node->unix_url + 7);
    socket_left = unix_path[0] != '\0' && access(unix_path, F_OK) == 0;
    snprintf(err, sizeof(err), "%s", h_node_stderr(node));
    h_rmdir(node->dir);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "shoal node %s: status 0x%x after SIGTERM, stderr: %s",
              node->name, status, err);
    cr_assert(!socket_left, "socket file %s left after SIGTERM", unix_path);
}

/* ---- raw sockets ------------------------------------------------------ */

int h_connect_url(const char *url)
{
    int fd, rc;

    if (strncmp(url, "unix://", 7) == 0) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        if (strlen(url + 7) >= sizeof(sun.sun_path))
            return -ENAMETOOLONG;
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", url + 7);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    } else if (strncmp(url, "tcp://", 6) == 0) {
        struct sockaddr_in sin;
        char host[64];
        const char *colon = strrchr(url + 6, ':');
        int one = 1;
        if (colon == NULL || (size_t)(colon - (url + 6)) >= sizeof(host))
            return -EINVAL;
        memcpy(host, url + 6, (size_t)(colon - (url + 6)));
        host[colon - (url + 6)] = '\0';
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
            return -EINVAL;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        rc = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
    } else {
        return -EINVAL;
    }
    if (rc != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    /* Every wait is a poll() with a deadline; nothing blocks. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

void h_conn_open(h_conn_t *c, const char *url, h_framing_t framing)
{
    memset(c, 0, sizeof(*c));
    c->framing = framing;
    c->fd = h_connect_url(url);
    cr_assert_geq(c->fd, 0, "connect %s: %s", url, strerror(-c->fd));
    if (framing == H_MSGPACK)
        cr_assert(msgpack_unpacker_init(&c->unpacker, H_READ_CHUNK));
}

void h_conn_close(h_conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    if (c->framing == H_MSGPACK)
        msgpack_unpacker_destroy(&c->unpacker);
    c->framing = H_NDJSON;
}

/* Sends from data; returns bytes sent, or -errno; waits for room until
 * the deadline when wait is set. */
static ssize_t h_send_until(h_conn_t *c, const char *data, size_t len,
                            int64_t deadline, bool wait)
{
    size_t sent = 0;

    while (sent < len) {
        ssize_t n = send(c->fd, data + sent, len - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = c->fd, .events = POLLOUT};
            if (!wait || poll(&p, 1, h_left_ms(deadline)) == 0)
                break;
            continue;
        }
        return -errno;
    }
    return (ssize_t)sent;
}

void h_send_raw(h_conn_t *c, const void *data, size_t len)
{
    ssize_t n = h_send_until(c, data, len, h_now_ms() + H_WAIT_MS, true);

    cr_assert_geq(n, 0, "send: %s", strerror((int)-n));
    cr_assert_eq((size_t)n, len, "send: peer took %zd of %zu bytes in %d ms",
                 n, len, H_WAIT_MS);
}

size_t h_send_nowait(h_conn_t *c, const void *data, size_t len)
{
    ssize_t n = h_send_until(c, data, len, 0, false);

    cr_assert_geq(n, 0, "send: %s", strerror((int)-n));
    return (size_t)n;
}

static void h_pack(msgpack_packer *pk, const cJSON *j)
{
    const cJSON *item;

    if (cJSON_IsNull(j)) {
        msgpack_pack_nil(pk);
    } else if (cJSON_IsTrue(j)) {
        msgpack_pack_true(pk);
    } else if (cJSON_IsFalse(j)) {
        msgpack_pack_false(pk);
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d > -9.2e18 && d < 9.2e18 && (double)(int64_t)d == d)
            msgpack_pack_int64(pk, (int64_t)d);
        else
            msgpack_pack_double(pk, d);
    } else if (cJSON_IsString(j)) {
        size_t n = strlen(j->valuestring);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, j->valuestring, n);
    } else if (cJSON_IsArray(j)) {
        msgpack_pack_array(pk, (size_t)cJSON_GetArraySize(j));
        cJSON_ArrayForEach(item, j) h_pack(pk, item);
    } else {
        msgpack_pack_map(pk, (size_t)cJSON_GetArraySize(j));
        cJSON_ArrayForEach(item, j)
        {
            size_t n = strlen(item->string);
            msgpack_pack_str(pk, n);
            msgpack_pack_str_body(pk, item->string, n);
            h_pack(pk, item);
        }
    }
}

void h_frame(h_framing_t framing, const char *json, char **out, size_t *len)
{
    size_t n = strlen(json);

    if (framing == H_NDJSON) {
        h_append(out, len, json, n);
        h_append(out, len, "\n", 1);
    } else if (framing == H_JSONSOCKET) {
        char prefix[32];
        int p = snprintf(prefix, sizeof(prefix), "%zu#", n);
        h_append(out, len, prefix, (size_t)p);
        h_append(out, len, json, n);
    } else {
        cJSON *tree = cJSON_Parse(json);
        msgpack_sbuffer sb;
        msgpack_packer pk;
        cr_assert_not_null(tree, "not JSON: %s", json);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        h_pack(&pk, tree);
        h_append(out, len, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        cJSON_Delete(tree);
    }
}

void h_send(h_conn_t *c, const char *json)
{
    char *framed = NULL;
    size_t len = 0;

    h_frame(c->framing, json, &framed, &len);
    h_send_raw(c, framed, len);
    free(framed);
}

/* Reads what the socket has into dst within the deadline: bytes (> 0),
 * 0 at EOF or reset (c->eof), -1 at the deadline. */
static ssize_t h_fill_into(h_conn_t *c, char *dst, size_t cap,
                           int64_t deadline)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};

    if (c->eof)
        return 0;
    for (;;) {
        ssize_t n = recv(c->fd, dst, cap, 0);
        if (n > 0)
            return n;
        if (n == 0) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET || errno == EPIPE) {
            c->eof = true;
            c->err = errno;
            return 0;
        }
        cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s",
                  strerror(errno));
        if (poll(&p, 1, h_left_ms(deadline)) == 0)
            return -1;
    }
}

/* Reads more into c->buf. */
static ssize_t h_fill(h_conn_t *c, int64_t deadline)
{
    ssize_t n;

    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->cap - c->len < H_READ_CHUNK) {
        c->cap = c->cap ? c->cap * 2 : 2 * H_READ_CHUNK;
        c->buf = realloc(c->buf, c->cap);
        cr_assert_not_null(c->buf);
    }
    n = h_fill_into(c, c->buf + c->len, c->cap - c->len, deadline);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

int h_read_line(h_conn_t *c, const char **line, size_t *len, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    size_t scanned = 0;

    for (;;) {
        const char *start = c->buf + c->off;
        const char *nl =
            c->len - c->off > scanned
                ? memchr(start + scanned, '\n', c->len - c->off - scanned)
                : NULL;
        ssize_t n;
        if (nl != NULL) {
            *line = start;
            *len = (size_t)(nl - start);
            c->off += *len + 1;
            return 1;
        }
        scanned = c->len - c->off;
        n = h_fill(c, deadline);
        if (n <= 0)
            return n == 0 ? 0 : -1;
    }
}

int h_read_jsonsocket(h_conn_t *c, const char **body, size_t *len,
                      int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    for (;;) {
        const char *p = c->buf + c->off;
        size_t held = c->len - c->off, need = 0, i;
        ssize_t n;
        for (i = 0; i < held && p[i] >= '0' && p[i] <= '9'; i++)
            need = need * 10 + (size_t)(p[i] - '0');
        if (i < held) {
            cr_assert(i > 0 && i <= 20 && p[i] == '#',
                      "bad json-socket prefix from the node: %.*s",
                      (int)(held < 40 ? held : 40), p);
            if (held - i - 1 >= need) {
                *body = p + i + 1;
                *len = need;
                c->off += i + 1 + need;
                return 1;
            }
        }
        n = h_fill(c, deadline);
        if (n <= 0)
            return n == 0 ? 0 : -1;
    }
}

int h_read_msgpack(h_conn_t *c, msgpack_unpacked *out, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;

    for (;;) {
        msgpack_unpack_return ret = msgpack_unpacker_next(&c->unpacker, out);
        ssize_t n;
        if (ret == MSGPACK_UNPACK_SUCCESS)
            return 1;
        cr_assert_eq(ret, MSGPACK_UNPACK_CONTINUE,
                     "invalid MessagePack from the node (%d)", (int)ret);
        cr_assert(msgpack_unpacker_reserve_buffer(&c->unpacker, H_READ_CHUNK));
        n = h_fill_into(c, msgpack_unpacker_buffer(&c->unpacker),
                        msgpack_unpacker_buffer_capacity(&c->unpacker),
                        deadline);
        if (n <= 0)
            return n == 0 ? 0 : -1;
        msgpack_unpacker_buffer_consumed(&c->unpacker, (size_t)n);
    }
}

cJSON *h_recv(h_conn_t *c, int timeout_ms)
{
    const char *text;
    size_t len;
    cJSON *json;
    int r;

    if (c->framing == H_MSGPACK) {
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        r = h_read_msgpack(c, &up, timeout_ms);
        json = r == 1 ? h_msgpack_to_cjson(&up.data) : NULL;
        msgpack_unpacked_destroy(&up);
        cr_assert(r != 1 || json != NULL, "MessagePack not JSON-like");
        return json;
    }
    if (c->framing == H_NDJSON)
        r = h_read_line(c, &text, &len, timeout_ms);
    else
        r = h_read_jsonsocket(c, &text, &len, timeout_ms);
    if (r != 1)
        return NULL;
    json = cJSON_ParseWithLength(text, len);
    cr_assert_not_null(json, "node sent invalid JSON: %.*s", (int)len, text);
    return json;
}

cJSON *h_expect(h_conn_t *c)
{
    cJSON *m = h_recv(c, H_WAIT_MS);

    cr_assert_not_null(m, "no message: %s",
                       c->eof ? "the node closed the connection"
                              : "timed out");
    return m;
}

void h_expect_eof(h_conn_t *c)
{
    cJSON *m = h_recv(c, H_WAIT_MS);
    char *text = m ? cJSON_PrintUnformatted(m) : NULL;

    cr_assert_null(m, "expected the node to close, got %s", text);
    cr_assert(c->eof, "the node did not close the connection in %d ms",
              H_WAIT_MS);
    if (c->framing != H_MSGPACK)
        cr_assert_eq(c->len - c->off, 0,
                     "%zu bytes of a cut-off frame before the close",
                     c->len - c->off);
}

cJSON *h_call(h_conn_t *c, const char *json)
{
    h_send(c, json);
    return h_expect(c);
}

/* ---- JSON helpers ----------------------------------------------------- */

const cJSON *h_at(const cJSON *json, const char *path)
{
    char key[256];

    while (json != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");
        char *end;
        long index;
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        path += n + (path[n] == '.');
        index = strtol(key, &end, 10);
        if (cJSON_IsArray(json) && *end == '\0' && end != key)
            json = cJSON_GetArrayItem(json, (int)index);
        else
            json = cJSON_GetObjectItemCaseSensitive(json, key);
    }
    return json;
}

const char *h_str(const cJSON *json, const char *path)
{
    return cJSON_GetStringValue(h_at(json, path));
}

double h_num(const cJSON *json, const char *path)
{
    const cJSON *v = h_at(json, path);

    cr_assert(cJSON_IsNumber(v), "no number at %s", path);
    return v->valuedouble;
}

bool h_json_eq(const cJSON *json, const char *path, const char *expected)
{
    cJSON *want = cJSON_Parse(expected);
    bool eq;

    cr_assert_not_null(want, "not JSON: %s", expected);
    eq = cJSON_Compare(h_at(json, path), want, true);
    cJSON_Delete(want);
    return eq;
}

cJSON *h_msgpack_to_cjson(const msgpack_object *o)
{
    cJSON *out = NULL;

    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return cJSON_CreateNull();
    case MSGPACK_OBJECT_BOOLEAN:
        return cJSON_CreateBool(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return cJSON_CreateNumber((double)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return cJSON_CreateNumber((double)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return cJSON_CreateNumber(o->via.f64);
    case MSGPACK_OBJECT_STR: {
        char *s = malloc(o->via.str.size + 1);
        cr_assert_not_null(s);
        memcpy(s, o->via.str.ptr, o->via.str.size);
        s[o->via.str.size] = '\0';
        out = cJSON_CreateString(s);
        free(s);
        return out;
    }
    case MSGPACK_OBJECT_ARRAY:
        out = cJSON_CreateArray();
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            cJSON *item = h_msgpack_to_cjson(&o->via.array.ptr[i]);
            if (item == NULL) {
                cJSON_Delete(out);
                return NULL;
            }
            cJSON_AddItemToArray(out, item);
        }
        return out;
    case MSGPACK_OBJECT_MAP:
        out = cJSON_CreateObject();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            char key[1024];
            cJSON *item;
            if (kv->key.type != MSGPACK_OBJECT_STR ||
                kv->key.via.str.size >= sizeof(key)) {
                cJSON_Delete(out);
                return NULL;
            }
            memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
            key[kv->key.via.str.size] = '\0';
            item = h_msgpack_to_cjson(&kv->val);
            if (item == NULL) {
                cJSON_Delete(out);
                return NULL;
            }
            cJSON_AddItemToObject(out, key, item);
        }
        return out;
    default:
        return NULL;
    }
}
