/* Integration test harness: real `shoal` processes started and stopped
 * without sleeps, and raw sockets that speak the three framings, so that
 * what is tested is the bytes on the wire. */
#ifndef SHOAL_TESTS_HARNESS_H
#define SHOAL_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <msgpack.h>

/* The longest any single wait (a reply, a start, an exit) may take. Far
 * above what a loaded sanitizer build needs; a wait that runs out fails
 * the test instead of hanging it. */
#define H_WAIT_MS 15000
#define H_MAX_ADDRESSES 8

/* Ignores SIGPIPE (a peer that closed must cost a write error, not the
 * test). Use as a suite's .init. */
void h_init(void);

/* Kills (SIGKILL) and reaps every child a failed test left running, frees
 * its h_run outputs and removes its folders. Use as a suite's .fini:
 * Criterion runs it after a failed assertion too. */
void h_fini(void);

/* Makes a fresh folder /tmp/shoal-test-XXXXXX in dir (64 bytes), removed
 * by h_tmpdir_remove or, after a failed test, by h_fini. */
void h_tmpdir(char *dir);
/* Removes the folder and every file in it. */
void h_tmpdir_remove(const char *dir);

/* ---- child processes ------------------------------------------------ */

/* A child whose exit is seen as EOF on death_fd: it inherits the write end
 * of a pipe and holds it until it exits, so waiting is poll(), never a
 * sleep. */
typedef struct {
    pid_t pid;
    int death_fd;
    bool reaped;
    int status; /* waitpid status once reaped */
} h_child_t;

/* Waits up to timeout_ms for the child to exit and reaps it. Returns its
 * waitpid status, or -1 when it did not exit in time (it is left
 * running). */
int h_child_wait(h_child_t *child, int timeout_ms);

/* What h_run collected. */
typedef struct {
    int status;    /* waitpid status */
    int exit_code; /* WEXITSTATUS, or -1 when killed by a signal */
    char *out;     /* stdout, NUL-terminated */
    size_t out_len;
    char *err; /* stderr, NUL-terminated */
    size_t err_len;
} h_run_t;

/* Runs argv[0] (looked up on PATH when it has no '/') with argv, stdin
 * from /dev/null, capturing stdout and stderr, and waits for its exit
 * (bounded by H_WAIT_MS; the test fails past it). Free with h_run_free. */
void h_run(const char *const *argv, h_run_t *out);
/* Same with SHOAL_BIN as argv[0]: args are what follows "shoal". */
void h_run_shoal(const char *const *args, h_run_t *out);
void h_run_free(h_run_t *run);

/* ---- shoal node ----------------------------------------------------- */

typedef struct {
    h_child_t child;
    char dir[64];        /* mkdtemp folder: sockets, the node's stderr */
    char sock_path[128]; /* the unix listener h_node_start adds */
    char name[256];
    size_t n_addresses;
    char addresses[H_MAX_ADDRESSES][160];
    char tcp_url[160];  /* the first tcp:// address, "" if none */
    char unix_url[160]; /* the first unix:// address, "" if none */
} h_node_t;

/* Starts `shoal node --name NAME --listen tcp://127.0.0.1:0 --listen
 * unix://DIR/s.sock --app echo --app sum --app sleep --app fail` plus the
 * NULL-terminated extra arguments (NULL: none), and waits for its ready
 * line. Fails the test when the node does not start. */
void h_node_start(h_node_t *node, const char *name, const char *const *extra);

/* Lower level: runs `shoal node ARGS --ready-fd FD` (ARGS NULL-terminated)
 * with stderr to DIR/stderr.log in a new folder. Returns 0 once the ready
 * line is read and parsed, or -1 when the node closed the fd without one
 * (it failed to start: h_child_wait gives its status). */
int h_node_spawn(h_node_t *node, const char *const *args);

/* The node's stderr so far (the first 16 KiB), in a buffer the next call
 * reuses. */
const char *h_node_stderr(const h_node_t *node);

/* Sends SIGTERM and waits (bounded) for the exit. Asserts exit status 0
 * and that the unix socket file is gone; removes the folder. */
void h_node_stop(h_node_t *node);

/* Reaps a node that already exited (or failed to start) and removes its
 * folder; returns its waitpid status. */
int h_node_reap(h_node_t *node);

/* ---- raw sockets ---------------------------------------------------- */

typedef enum { H_NDJSON, H_JSONSOCKET, H_MSGPACK } h_framing_t;

/* A client socket that reads messages in one framing. */
typedef struct {
    int fd;
    h_framing_t framing;
    char *buf; /* NDJSON / json-socket: bytes read, from off to len */
    size_t off, len, cap;
    msgpack_unpacker unpacker; /* MessagePack */
    bool eof;                  /* the peer closed (FIN or RST) */
    int err;                   /* errno of a reset, else 0 */
} h_conn_t;

/* Connects to a tcp:// or unix:// URL (asserts success). */
void h_conn_open(h_conn_t *c, const char *url, h_framing_t framing);
void h_conn_close(h_conn_t *c);
/* Connects a bare fd; returns it or -errno. */
int h_connect_url(const char *url);

/* Sends all bytes (bounded wait for room; asserts). */
void h_send_raw(h_conn_t *c, const void *data, size_t len);
/* Sends what the socket takes now without waiting; returns the bytes
 * taken (0 when it is full). */
size_t h_send_nowait(h_conn_t *c, const void *data, size_t len);
/* Appends the JSON text json to out, framed in framing (MessagePack:
 * converted, integers as integers). */
void h_frame(h_framing_t framing, const char *json, char **out, size_t *len);
/* Sends one JSON message in the conn's framing. */
void h_send(h_conn_t *c, const char *json);

/* Reads one NDJSON line / json-socket body / MessagePack object. Return
 * 1 (got one; line and body are borrowed until the next read), 0 at EOF,
 * -1 when timeout_ms passed. The line excludes its "\n". */
int h_read_line(h_conn_t *c, const char **line, size_t *len, int timeout_ms);
int h_read_jsonsocket(h_conn_t *c, const char **body, size_t *len,
                      int timeout_ms);
int h_read_msgpack(h_conn_t *c, msgpack_unpacked *out, int timeout_ms);

/* Reads one message in the conn's framing as cJSON (caller deletes), or
 * NULL at EOF (c->eof) or time-out. */
cJSON *h_recv(h_conn_t *c, int timeout_ms);
/* Asserts a message arrives within H_WAIT_MS. */
cJSON *h_expect(h_conn_t *c);
/* Asserts the peer closes within H_WAIT_MS with nothing more sent. */
void h_expect_eof(h_conn_t *c);
/* Sends json and returns the next message. */
cJSON *h_call(h_conn_t *c, const char *json);

/* ---- JSON helpers --------------------------------------------------- */

/* Follows a dotted path ("error.code", "addresses.0"). NULL if absent. */
const cJSON *h_at(const cJSON *json, const char *path);
/* The string at path, or NULL when absent or not a string. */
const char *h_str(const cJSON *json, const char *path);
/* The number at path; fails the test when absent. */
double h_num(const cJSON *json, const char *path);
/* True when the value at path equals the JSON text expected. */
bool h_json_eq(const cJSON *json, const char *path, const char *expected);
/* MessagePack object -> cJSON; NULL for bin, ext or non-string keys. */
cJSON *h_msgpack_to_cjson(const msgpack_object *o);

#endif
