/* MessagePack in: envelope decoding, and values out as JSON or cJSON. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "wire_internal.h"

/*
 * One reader, wire_mp_read, classifies the item at the cursor and steps over
 * its header (and a str's bytes); three walkers drive it: wire_mp_skip
 * validates a value, wire_mp_json writes it as JSON text, wire_mp_cjson
 * builds a cJSON tree. The first two keep an explicit stack of open
 * containers, so hostile nesting costs no recursion; the third recurses,
 * bounded by SHOAL_MAX_DEPTH_CAP.
 *
 * Accepted: nil, bool, int, uint, float 32/64, str (valid UTF-8), array and
 * map with str keys. Refused: bin and ext (a JSON peer could not receive
 * them), and 0xc1, which MessagePack never uses.
 */

/* A cursor over one buffer. */
typedef struct {
    const unsigned char *p;
    size_t len;
    size_t pos;
    unsigned max_depth; /* containers nested, the outermost counts 1 */
    char *detail;       /* NULL: the caller wants no explanation */
    size_t detail_len;
    /* A field of the wrong type or too long a name: the frame is still
     * walked to the end, so that its id is known and the refusal can
     * answer the call. */
    int deferred;
} wire_mp_walk_t;

typedef enum {
    WIRE_MP_NIL,
    WIRE_MP_BOOL,
    WIRE_MP_INT,  /* v.i; every integer that fits int64 */
    WIRE_MP_UINT, /* v.u; only above INT64_MAX */
    WIRE_MP_FLOAT,
    WIRE_MP_STR,   /* s, n bytes, already checked to be UTF-8 */
    WIRE_MP_ARRAY, /* n items follow */
    WIRE_MP_MAP    /* n key/value pairs follow */
} wire_mp_kind_t;

typedef struct {
    wire_mp_kind_t kind;
    uint32_t n;
    const char *s;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double d;
    } v;
} wire_mp_item_t;

/* An open container on a walker's stack: items left << 1 | is_map. For a
 * map the items are keys and values, so an even count left means a key is
 * next. */
static inline uint64_t wire_mp_open(uint32_t n, bool is_map)
{
    return is_map ? (uint64_t)n << 2 | 1 : (uint64_t)n << 1;
}

static inline bool wire_mp_key_next(uint64_t open)
{
    return (open & 3) == 1;
}

/* The hot path is a few small functions that must inline into their
 * callers, and cold ones that must not bloat them. */
#if defined(__GNUC__)
#define WIRE_MP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define WIRE_MP_INLINE inline __attribute__((always_inline))
#define WIRE_MP_NOINLINE __attribute__((noinline))
#else
#define WIRE_MP_PRINTF(f, a)
#define WIRE_MP_INLINE inline
#define WIRE_MP_NOINLINE
#endif

static int wire_mp_fail(wire_mp_walk_t *w, int err, const char *fmt, ...)
    WIRE_MP_PRINTF(3, 4);

static int wire_mp_fail(wire_mp_walk_t *w, int err, const char *fmt, ...)
{
    va_list ap;

    /* The first refused field is the one the message names. */
    if (w->deferred != 0 &&
        (err == SHOAL_EBADTYPE || err == SHOAL_ENAMETOOLONG))
        return err;
    if (w->detail != NULL && w->detail_len > 0) {
        va_start(ap, fmt);
        vsnprintf(w->detail, w->detail_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

static int wire_mp_truncated(wire_mp_walk_t *w, size_t at)
{
    return wire_mp_fail(w, SHOAL_EBADMSGPACK,
                        "invalid MessagePack: truncated at byte %zu", at);
}

static int wire_mp_bad_key(wire_mp_walk_t *w, size_t at)
{
    return wire_mp_fail(w, SHOAL_EBADTYPE,
                        "map key at byte %zu is not a string", at);
}

static int wire_mp_too_deep(wire_mp_walk_t *w, size_t at)
{
    return wire_mp_fail(w, SHOAL_ETOODEEP,
                        "nesting deeper than %u at byte %zu", w->max_depth,
                        at);
}

/* Big-endian loads; compilers turn these into one load and a byte swap. */
static inline uint32_t wire_mp_be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static inline uint32_t wire_mp_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static inline uint64_t wire_mp_be64(const unsigned char *p)
{
    return (uint64_t)wire_mp_be32(p) << 32 | wire_mp_be32(p + 4);
}

/* True when s[0, n) is all ASCII: a few word loads for the short strings
 * of a header, so that shoal__utf8_valid runs only for the others. */
static inline bool wire_mp_ascii(const unsigned char *s, size_t n)
{
    uint64_t acc = 0, v;
    uint32_t v32, acc32;

    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8) {
            memcpy(&v, s + i, 8);
            acc |= v;
        }
        memcpy(&v, s + n - 8, 8);
        acc |= v;
        return (acc & 0x8080808080808080u) == 0;
    }
    if (n >= 4) {
        memcpy(&acc32, s, 4);
        memcpy(&v32, s + n - 4, 4);
        return ((acc32 | v32) & 0x80808080u) == 0;
    }
    for (size_t i = 0; i < n; i++)
        acc |= s[i];
    return (acc & 0x80) == 0;
}

/* Finishes reading a str of n bytes after a head-byte header at `at`. */
static inline int wire_mp_str(wire_mp_walk_t *w, wire_mp_item_t *it, size_t at,
                              size_t head, size_t n)
{
    const unsigned char *s = w->p + at + head;
    size_t bad;

    if (w->len - at - head < n)
        return wire_mp_truncated(w, at);
    if (!wire_mp_ascii(s, n) && !shoal__utf8_valid((const char *)s, n, &bad))
        return wire_mp_fail(w, SHOAL_EBADUTF8,
                            "invalid UTF-8 in string at byte %zu",
                            at + head + bad);
    it->kind = WIRE_MP_STR;
    it->s = (const char *)s;
    it->n = (uint32_t)n;
    w->pos = at + head + n;
    return 0;
}

/* wire_mp_read for every lead byte. Kept out of line so that the inline
 * part stays small. */
static WIRE_MP_NOINLINE int wire_mp_read_slow(wire_mp_walk_t *w,
                                              wire_mp_item_t *it)
{
    const unsigned char *p = w->p + w->pos;
    size_t left = w->len - w->pos;
    size_t at = w->pos;
    size_t head, n;
    unsigned char b;
    uint32_t u32;
    uint64_t u64;
    float f;

    if (left == 0)
        return wire_mp_truncated(w, at);
    b = p[0];
    if (b <= 0x7f || b >= 0xe0) {
        it->kind = WIRE_MP_INT;
        it->v.i = b <= 0x7f ? b : (int)b - 256;
        w->pos++;
        return 0;
    }
    if (b <= 0x8f) {
        n = b & 0x0f;
        head = 1;
        goto map;
    }
    if (b <= 0x9f) {
        n = b & 0x0f;
        head = 1;
        goto array;
    }
    if (b <= 0xbf) {
        n = b & 0x1f;
        head = 1;
        goto str;
    }
    switch (b) {
    case 0xc0:
        it->kind = WIRE_MP_NIL;
        w->pos++;
        return 0;
    case 0xc2:
    case 0xc3:
        it->kind = WIRE_MP_BOOL;
        it->v.b = b == 0xc3;
        w->pos++;
        return 0;
    case 0xca:
        if (left < 5)
            return wire_mp_truncated(w, at);
        u32 = wire_mp_be32(p + 1);
        memcpy(&f, &u32, 4);
        it->kind = WIRE_MP_FLOAT;
        it->v.d = f;
        w->pos += 5;
        return 0;
    case 0xcb:
        if (left < 9)
            return wire_mp_truncated(w, at);
        u64 = wire_mp_be64(p + 1);
        it->kind = WIRE_MP_FLOAT;
        memcpy(&it->v.d, &u64, 8);
        w->pos += 9;
        return 0;
    case 0xcc:
        if (left < 2)
            return wire_mp_truncated(w, at);
        it->kind = WIRE_MP_INT;
        it->v.i = p[1];
        w->pos += 2;
        return 0;
    case 0xcd:
        if (left < 3)
            return wire_mp_truncated(w, at);
        it->kind = WIRE_MP_INT;
        it->v.i = wire_mp_be16(p + 1);
        w->pos += 3;
        return 0;
    case 0xce:
        if (left < 5)
            return wire_mp_truncated(w, at);
        it->kind = WIRE_MP_INT;
        it->v.i = wire_mp_be32(p + 1);
        w->pos += 5;
        return 0;
    case 0xcf:
        if (left < 9)
            return wire_mp_truncated(w, at);
        u64 = wire_mp_be64(p + 1);
        if (u64 > INT64_MAX) {
            it->kind = WIRE_MP_UINT;
            it->v.u = u64;
        } else {
            it->kind = WIRE_MP_INT;
            it->v.i = (int64_t)u64;
        }
        w->pos += 9;
        return 0;
    case 0xd0:
        if (left < 2)
            return wire_mp_truncated(w, at);
        it->kind = WIRE_MP_INT;
        it->v.i = (int8_t)p[1];
        w->pos += 2;
        return 0;
    case 0xd1:
        if (left < 3)
            return wire_mp_truncated(w, at);
        it->kind = WIRE_MP_INT;
        it->v.i = (int16_t)wire_mp_be16(p + 1);
        w->pos += 3;
        return 0;
    case 0xd2:
        if (left < 5)
            return wire_mp_truncated(w, at);
        it->kind = WIRE_MP_INT;
        it->v.i = (int32_t)wire_mp_be32(p + 1);
        w->pos += 5;
        return 0;
    case 0xd3:
        if (left < 9)
            return wire_mp_truncated(w, at);
        it->kind = WIRE_MP_INT;
        it->v.i = (int64_t)wire_mp_be64(p + 1);
        w->pos += 9;
        return 0;
    case 0xd9:
        if (left < 2)
            return wire_mp_truncated(w, at);
        n = p[1];
        head = 2;
        goto str;
    case 0xda:
        if (left < 3)
            return wire_mp_truncated(w, at);
        n = wire_mp_be16(p + 1);
        head = 3;
        goto str;
    case 0xdb:
        if (left < 5)
            return wire_mp_truncated(w, at);
        n = wire_mp_be32(p + 1);
        head = 5;
        goto str;
    case 0xdc:
        if (left < 3)
            return wire_mp_truncated(w, at);
        n = wire_mp_be16(p + 1);
        head = 3;
        goto array;
    case 0xdd:
        if (left < 5)
            return wire_mp_truncated(w, at);
        n = wire_mp_be32(p + 1);
        head = 5;
        goto array;
    case 0xde:
        if (left < 3)
            return wire_mp_truncated(w, at);
        n = wire_mp_be16(p + 1);
        head = 3;
        goto map;
    case 0xdf:
        if (left < 5)
            return wire_mp_truncated(w, at);
        n = wire_mp_be32(p + 1);
        head = 5;
        goto map;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return wire_mp_fail(w, SHOAL_EBADMSGPACK,
                            "invalid MessagePack: bin (0x%02x) at byte %zu "
                            "is not accepted, send a str",
                            b, at);
    case 0xc1:
        return wire_mp_fail(w, SHOAL_EBADMSGPACK,
                            "invalid MessagePack: byte 0xc1 at byte %zu is "
                            "never used",
                            at);
    default: /* 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext */
        return wire_mp_fail(w, SHOAL_EBADMSGPACK,
                            "invalid MessagePack: ext (0x%02x) at byte %zu "
                            "is not accepted",
                            b, at);
    }

str:
    return wire_mp_str(w, it, at, head, n);

array:
    /* Every item takes a byte at least: a count larger than what is left
     * is a truncated frame, caught before anything walks it. */
    if (left - head < n)
        return wire_mp_truncated(w, at);
    it->kind = WIRE_MP_ARRAY;
    it->n = (uint32_t)n;
    w->pos += head;
    return 0;

map:
    if ((left - head) / 2 < n)
        return wire_mp_truncated(w, at);
    it->kind = WIRE_MP_MAP;
    it->n = (uint32_t)n;
    w->pos += head;
    return 0;
}

/* Reads the item at the cursor into it and steps over its header, and over
 * its bytes for a str. Returns 0, SHOAL_EBADMSGPACK (truncated, bin, ext,
 * 0xc1) or SHOAL_EBADUTF8. Reads nothing past w->len. The forms envelopes
 * are mostly made of (fixint, fixstr, fixmap) are read inline. */
static WIRE_MP_INLINE int wire_mp_read(wire_mp_walk_t *w, wire_mp_item_t *it)
{
    size_t at = w->pos;
    unsigned b;

    if (at == w->len)
        return wire_mp_truncated(w, at);
    b = w->p[at];
    if (b <= 0x7f) {
        it->kind = WIRE_MP_INT;
        it->v.i = b;
        w->pos = at + 1;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf)
        return wire_mp_str(w, it, at, 1, b & 0x1f);
    if (b <= 0x8f && (w->len - at - 1) / 2 >= (b & 0x0f)) {
        it->kind = WIRE_MP_MAP;
        it->n = b & 0x0f;
        w->pos = at + 1;
        return 0;
    }
    return wire_mp_read_slow(w, it);
}

/* Validates the whole value at the cursor and steps over it. depth is the
 * depth of the container holding the value (1 inside the envelope). */
static int wire_mp_skip(wire_mp_walk_t *w, unsigned depth)
{
    uint64_t open[SHOAL_MAX_DEPTH_CAP];
    unsigned top = 0;
    bool key = false;
    wire_mp_item_t it;
    size_t at;
    int err;

    for (;;) {
        at = w->pos;
        err = wire_mp_read(w, &it);
        if (err)
            return err;
        if (key && it.kind != WIRE_MP_STR)
            return wire_mp_bad_key(w, at);
        if (it.kind == WIRE_MP_ARRAY || it.kind == WIRE_MP_MAP) {
            if (depth + top + 1 > w->max_depth)
                return wire_mp_too_deep(w, at);
            if (it.n > 0)
                open[top++] = wire_mp_open(it.n, it.kind == WIRE_MP_MAP);
        }
        /* Close the containers this item completed, then pick the next
         * item of the innermost one still open. */
        for (;;) {
            if (top == 0)
                return 0;
            if (open[top - 1] >= 2)
                break;
            top--;
        }
        key = wire_mp_key_next(open[top - 1]);
        open[top - 1] -= 2;
    }
}

/* True when every byte of s[0, n) is in 0x01-0x7f: the usual name, which
 * then needs no UTF-8 or NUL check of its own. Word at a time, with
 * overlapping loads for the tail: no high bit, and no zero byte by the
 * exact test (v - 0x01..01) & ~v & 0x80..80. */
static inline bool wire_mp_plain(const unsigned char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u;
    uint64_t v, bad = 0;
    uint32_t v32, bad32 = 0;

    if (n >= 8) {
        for (size_t i = 0; i + 8 <= n; i += 8) {
            memcpy(&v, s + i, 8);
            bad |= v | ((v - ones) & ~v);
        }
        memcpy(&v, s + n - 8, 8);
        bad |= v | ((v - ones) & ~v);
        return (bad & 0x8080808080808080u) == 0;
    }
    if (n >= 4) {
        memcpy(&v32, s, 4);
        bad32 |= v32 | ((v32 - 0x01010101u) & ~v32);
        memcpy(&v32, s + n - 4, 4);
        bad32 |= v32 | ((v32 - 0x01010101u) & ~v32);
        return (bad32 & 0x80808080u) == 0;
    }
    for (size_t i = 0; i < n; i++)
        bad |= (unsigned char)(s[i] - 1) >= 0x7f;
    return bad == 0;
}

/* Stores a name that passed every check. */
static inline void wire_mp_name_set(shoal_name_t *out, const void *s, size_t n)
{
    memcpy(out->s, s, n);
    out->s[n] = '\0';
    out->len = (uint8_t)n;
    out->present = true;
}

/* wire_mp_name for what is not a fixstr or str8 of plain bytes. */
static WIRE_MP_NOINLINE int
wire_mp_name_slow(wire_mp_walk_t *w, const char *field, shoal_name_t *out)
{
    wire_mp_item_t it;
    size_t at = w->pos;
    int err = wire_mp_read(w, &it);

    if (err)
        return err;
    if (it.kind != WIRE_MP_STR)
        return wire_mp_fail(w, SHOAL_EBADTYPE,
                            "field \"%s\" at byte %zu is not a string", field,
                            at);
    if (it.n > SHOAL_MAX_NAME_BYTES)
        return wire_mp_fail(w, SHOAL_ENAMETOOLONG,
                            "field \"%s\" at byte %zu is longer than %d "
                            "bytes",
                            field, at, SHOAL_MAX_NAME_BYTES);
    if (memchr(it.s, '\0', it.n) != NULL)
        return wire_mp_fail(w, SHOAL_EBADTYPE,
                            "field \"%s\" at byte %zu contains U+0000", field,
                            at);
    wire_mp_name_set(out, it.s, it.n);
    return 0;
}

/* Reads the name field `field` at the cursor into out. */
static inline int wire_mp_name(wire_mp_walk_t *w, const char *field,
                               shoal_name_t *out)
{
    size_t at = w->pos, left = w->len - at, head, n;
    const unsigned char *p = w->p + at;

    if (left >= 1 && (p[0] & 0xe0) == 0xa0) {
        n = p[0] & 0x1f;
        head = 1;
    } else if (left >= 2 && p[0] == 0xd9) {
        n = p[1];
        head = 2;
    } else {
        return wire_mp_name_slow(w, field, out);
    }
    if (left - head < n || !wire_mp_plain(p + head, n))
        return wire_mp_name_slow(w, field, out);
    wire_mp_name_set(out, p + head, n);
    w->pos = at + head + n;
    return 0;
}

static int wire_mp_id(wire_mp_walk_t *w, shoal_envelope_t *env)
{
    wire_mp_item_t it;
    size_t at = w->pos;
    int err = wire_mp_read(w, &it);

    if (err)
        return err;
    if (it.kind == WIRE_MP_UINT)
        return wire_mp_fail(w, SHOAL_EBADTYPE,
                            "field \"id\" at byte %zu does not fit int64", at);
    if (it.kind != WIRE_MP_INT)
        return wire_mp_fail(w, SHOAL_EBADTYPE,
                            "field \"id\" at byte %zu is not an integer", at);
    env->has_id = true;
    env->id = it.v.i;
    return 0;
}

static int wire_mp_payload(wire_mp_walk_t *w, shoal_payload_t *out)
{
    wire_mp_item_t it;
    size_t at = w->pos;
    unsigned b = at < w->len ? w->p[at] : 0x90;
    int err;

    /* Only containers need the walker (and at the end of the frame it is
     * the walker that reports the truncation). */
    if ((b >= 0x80 && b <= 0x9f) || (b >= 0xdc && b <= 0xdf))
        err = wire_mp_skip(w, 1);
    else
        err = wire_mp_read(w, &it);
    if (err)
        return err;
    out->data = (const char *)w->p + at;
    out->len = w->pos - at;
    out->codec = SHOAL_CODEC_MSGPACK;
    return 0;
}

/* Reads the value of the envelope field named k[0, n): known fields are
 * recorded (the last of duplicates wins), others validated and dropped. */
static int wire_mp_field(wire_mp_walk_t *w, shoal_envelope_t *env,
                         const char *k, size_t n)
{
    size_t bad;

    switch (n) {
    case 2:
        if (memcmp(k, "id", 2) == 0)
            return wire_mp_id(w, env);
        if (memcmp(k, "to", 2) == 0)
            return wire_mp_name(w, "to", &env->to);
        break;
    case 3:
        if (memcmp(k, "app", 3) == 0)
            return wire_mp_name(w, "app", &env->app);
        if (memcmp(k, "msg", 3) == 0)
            return wire_mp_payload(w, &env->msg);
        break;
    case 4:
        if (memcmp(k, "type", 4) == 0)
            return wire_mp_name(w, "type", &env->type_name);
        if (memcmp(k, "from", 4) == 0)
            return wire_mp_name(w, "from", &env->from);
        if (memcmp(k, "args", 4) == 0)
            return wire_mp_payload(w, &env->args);
        if (memcmp(k, "data", 4) == 0)
            return wire_mp_payload(w, &env->data);
        if (memcmp(k, "node", 4) == 0)
            return wire_mp_payload(w, &env->node);
        break;
    case 5:
        if (memcmp(k, "event", 5) == 0)
            return wire_mp_name(w, "event", &env->event);
        if (memcmp(k, "error", 5) == 0)
            return wire_mp_payload(w, &env->error);
        break;
    case 6:
        if (memcmp(k, "action", 6) == 0)
            return wire_mp_name(w, "action", &env->action);
        if (memcmp(k, "result", 6) == 0)
            return wire_mp_payload(w, &env->result);
        break;
    }
    /* A key read inline has not been checked yet; known ones are ASCII. */
    if (!wire_mp_ascii((const unsigned char *)k, n) &&
        !shoal__utf8_valid(k, n, &bad))
        return wire_mp_fail(w, SHOAL_EBADUTF8,
                            "invalid UTF-8 in string at byte %zu",
                            (size_t)((const unsigned char *)k - w->p) + bad);
    return wire_mp_skip(w, 1);
}

int shoal__msgpack_decode(const char *frame, size_t len,
                          const shoal_limits_t *limits, shoal_envelope_t *env,
                          char *detail, size_t detail_len)
{
    wire_mp_walk_t w;
    wire_mp_item_t it;
    unsigned char b;
    size_t at, value_at;
    int err;

    w.p = (const unsigned char *)frame;
    w.len = len;
    w.pos = 0;
    w.max_depth = limits != NULL ? limits->max_depth : SHOAL_DEFAULT_MAX_DEPTH;
    /* The walkers' stacks hold SHOAL_MAX_DEPTH_CAP levels, and the cutter
     * never lets a deeper frame through anyway. */
    if (w.max_depth > SHOAL_MAX_DEPTH_CAP)
        w.max_depth = SHOAL_MAX_DEPTH_CAP;
    w.detail = detail;
    w.detail_len = detail_len;
    w.deferred = 0;
    if (detail != NULL && detail_len > 0)
        detail[0] = '\0';
    shoal_envelope_init(env);

    if (len == 0)
        return wire_mp_truncated(&w, 0);
    b = w.p[0];
    if (!((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf))
        return wire_mp_fail(&w, SHOAL_ENOTMAP,
                            "message is not a map (first byte 0x%02x)", b);
    if (w.max_depth < 1)
        return wire_mp_too_deep(&w, 0);
    err = wire_mp_read(&w, &it);
    if (err)
        return err;
    for (uint32_t i = 0; i < it.n; i++) {
        wire_mp_item_t key;

        at = w.pos;
        /* Keys are nearly always fixstr: read those inline, and leave
         * their UTF-8 to wire_mp_field, which need not check known keys. */
        if (at < len && (w.p[at] & 0xe0) == 0xa0 &&
            len - at - 1 >= (w.p[at] & 0x1fu)) {
            key.s = (const char *)w.p + at + 1;
            key.n = w.p[at] & 0x1f;
            w.pos = at + 1 + key.n;
        } else {
            err = wire_mp_read(&w, &key);
            if (err)
                return err;
            if (key.kind != WIRE_MP_STR)
                return wire_mp_bad_key(&w, at);
        }
        value_at = w.pos;
        err = wire_mp_field(&w, env, key.s, key.n);
        if (err == SHOAL_EBADTYPE || err == SHOAL_ENAMETOOLONG) {
            if (w.deferred == 0)
                w.deferred = err;
            w.pos = value_at;
            err = wire_mp_skip(&w, 1);
        }
        if (err)
            return err;
    }
    if (w.pos != len)
        return wire_mp_fail(&w, SHOAL_EBADMSGPACK,
                            "invalid MessagePack: %zu trailing bytes at byte "
                            "%zu",
                            len - w.pos, w.pos);
    if (w.deferred != 0)
        return w.deferred;
    if (!env->type_name.present)
        return wire_mp_fail(&w, SHOAL_EBADMSG, "missing \"type\"");
    env->type = shoal__msg_type_parse(env->type_name.s, env->type_name.len);
    return 0;
}

/* ---- MessagePack -> JSON text ---------------------------------------- */

static int wire_mp_putc(shoal_buf_t *out, char c)
{
    if (out->len == out->cap && shoal_buf_reserve(out, 1) != 0)
        return SHOAL_ENOMEM;
    out->base[out->len++] = c;
    return 0;
}

/* Writes a decimal integer: the magnitude, negated when neg. */
static int wire_mp_json_int(shoal_buf_t *out, uint64_t mag, bool neg)
{
    char tmp[24];
    char *end = tmp + sizeof(tmp);
    char *q = end;

    do {
        *--q = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag != 0);
    if (neg)
        *--q = '-';
    return shoal_buf_append(out, q, (size_t)(end - q));
}

/* Writes a finite double with 17 significant digits, which reads back to
 * the same double. An integral value gets ".0" so that it stays a float
 * for a reader that tells the two apart ("%.17g" prints 1.0 as "1"). */
static int wire_mp_json_double(shoal_buf_t *out, double d)
{
    char tmp[40];
    bool plain = true;
    int n;

    if (!isfinite(d))
        return SHOAL_EBADTYPE;
    n = snprintf(tmp, sizeof(tmp) - 2, "%.17g", d);
    if (n < 0 || (size_t)n >= sizeof(tmp) - 2)
        return SHOAL_EBADTYPE;
    for (int i = 0; i < n; i++) {
        /* A locale with a decimal comma must not leak into JSON. */
        if (tmp[i] == ',')
            tmp[i] = '.';
        if (tmp[i] == '.' || tmp[i] == 'e')
            plain = false;
    }
    if (plain) {
        tmp[n++] = '.';
        tmp[n++] = '0';
    }
    return shoal_buf_append(out, tmp, (size_t)n);
}

/* Writes the whole value at the cursor as JSON. */
static int wire_mp_json(wire_mp_walk_t *w, shoal_buf_t *out)
{
    uint64_t open[SHOAL_MAX_DEPTH_CAP];
    unsigned top = 0;
    bool key = false, fresh = false;
    wire_mp_item_t it;
    int err;

    for (;;) {
        err = wire_mp_read(w, &it);
        if (err)
            return err;
        if (key && it.kind != WIRE_MP_STR)
            return SHOAL_EBADTYPE;
        switch (it.kind) {
        case WIRE_MP_NIL:
            err = shoal_buf_append(out, "null", 4);
            break;
        case WIRE_MP_BOOL:
            err = it.v.b ? shoal_buf_append(out, "true", 4)
                         : shoal_buf_append(out, "false", 5);
            break;
        case WIRE_MP_INT:
            err = it.v.i < 0
                      ? wire_mp_json_int(out, 0 - (uint64_t)it.v.i, true)
                      : wire_mp_json_int(out, (uint64_t)it.v.i, false);
            break;
        case WIRE_MP_UINT:
            err = wire_mp_json_int(out, it.v.u, false);
            break;
        case WIRE_MP_FLOAT:
            err = wire_mp_json_double(out, it.v.d);
            break;
        case WIRE_MP_STR:
            err = shoal__json_write_string(out, it.s, it.n);
            break;
        case WIRE_MP_ARRAY:
        case WIRE_MP_MAP:
            if (top == SHOAL_MAX_DEPTH_CAP)
                return SHOAL_ETOODEEP;
            err = wire_mp_putc(out, it.kind == WIRE_MP_MAP ? '{' : '[');
            if (err == 0 && it.n == 0)
                err = wire_mp_putc(out, it.kind == WIRE_MP_MAP ? '}' : ']');
            if (err == 0 && it.n > 0) {
                open[top++] = wire_mp_open(it.n, it.kind == WIRE_MP_MAP);
                fresh = true;
            }
            break;
        }
        if (err)
            return err;
        for (;;) {
            if (top == 0)
                return 0;
            if (open[top - 1] >= 2)
                break;
            err = wire_mp_putc(out, (open[top - 1] & 1) ? '}' : ']');
            if (err)
                return err;
            top--;
        }
        key = wire_mp_key_next(open[top - 1]);
        if (!fresh) {
            err = wire_mp_putc(out, (open[top - 1] & 1) && !key ? ':' : ',');
            if (err)
                return err;
        }
        fresh = false;
        open[top - 1] -= 2;
    }
}

int shoal__msgpack_to_json(const char *mp, size_t len, shoal_buf_t *out)
{
    wire_mp_walk_t w = {
        (const unsigned char *)mp, len, 0, SHOAL_MAX_DEPTH_CAP, NULL, 0, 0};
    size_t start = out->len;
    int err = wire_mp_json(&w, out);

    if (err == 0 && w.pos != len)
        err = SHOAL_EBADMSGPACK;
    if (err)
        out->len = start;
    return err;
}

/* ---- MessagePack -> cJSON -------------------------------------------- */

/* Copies s[0, n) NUL-terminated into small, or into the heap when it does
 * not fit (then *heap is set and the caller frees it). */
static const char *wire_mp_cstr(const char *s, size_t n, char *small,
                                size_t small_len, char **heap)
{
    char *d = small;

    *heap = NULL;
    if (n >= small_len) {
        d = malloc(n + 1);
        if (d == NULL)
            return NULL;
        *heap = d;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Builds the cJSON form of the value at the cursor, or NULL. depth counts
 * the containers around it. */
static cJSON *wire_mp_cjson(wire_mp_walk_t *w, unsigned depth)
{
    wire_mp_item_t it, k;
    cJSON *node = NULL, *child;
    char small[64], *heap;
    const char *s;

    if (wire_mp_read(w, &it) != 0)
        return NULL;
    switch (it.kind) {
    case WIRE_MP_NIL:
        return cJSON_CreateNull();
    case WIRE_MP_BOOL:
        return cJSON_CreateBool(it.v.b);
    case WIRE_MP_INT:
        return cJSON_CreateNumber((double)it.v.i);
    case WIRE_MP_UINT:
        return cJSON_CreateNumber((double)it.v.u);
    case WIRE_MP_FLOAT:
        return isfinite(it.v.d) ? cJSON_CreateNumber(it.v.d) : NULL;
    case WIRE_MP_STR:
        s = wire_mp_cstr(it.s, it.n, small, sizeof(small), &heap);
        node = s != NULL ? cJSON_CreateString(s) : NULL;
        free(heap);
        return node;
    case WIRE_MP_ARRAY:
        if (depth >= SHOAL_MAX_DEPTH_CAP)
            return NULL;
        node = cJSON_CreateArray();
        for (uint32_t i = 0; node != NULL && i < it.n; i++) {
            child = wire_mp_cjson(w, depth + 1);
            if (child == NULL) {
                cJSON_Delete(node);
                return NULL;
            }
            cJSON_AddItemToArray(node, child);
        }
        return node;
    case WIRE_MP_MAP:
        if (depth >= SHOAL_MAX_DEPTH_CAP)
            return NULL;
        node = cJSON_CreateObject();
        for (uint32_t i = 0; node != NULL && i < it.n; i++) {
            if (wire_mp_read(w, &k) != 0 || k.kind != WIRE_MP_STR)
                goto fail;
            child = wire_mp_cjson(w, depth + 1);
            if (child == NULL)
                goto fail;
            s = wire_mp_cstr(k.s, k.n, small, sizeof(small), &heap);
            if (s == NULL) {
                cJSON_Delete(child);
                goto fail;
            }
            /* cJSON copies the key. */
            cJSON_AddItemToObject(node, s, child);
            free(heap);
        }
        return node;
    }
fail:
    cJSON_Delete(node);
    return NULL;
}

static bool wire_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

cJSON *shoal_payload_to_cjson(const shoal_payload_t *in)
{
    wire_mp_walk_t w;
    const char *end = NULL;
    cJSON *json;

    if (in == NULL || in->data == NULL)
        return NULL;
    switch (in->codec) {
    case SHOAL_CODEC_JSON:
        json = cJSON_ParseWithLengthOpts(in->data, in->len, &end, 0);
        if (json == NULL)
            return NULL;
        /* cJSON stops after the value; anything but space after it makes
         * the payload something other than one value. */
        while (end < in->data + in->len && wire_json_space(*end))
            end++;
        if (end != in->data + in->len) {
            cJSON_Delete(json);
            return NULL;
        }
        return json;
    case SHOAL_CODEC_MSGPACK:
        w.p = (const unsigned char *)in->data;
        w.len = in->len;
        w.pos = 0;
        w.max_depth = SHOAL_MAX_DEPTH_CAP;
        w.detail = NULL;
        w.detail_len = 0;
        json = wire_mp_cjson(&w, 0);
        if (json != NULL && w.pos != in->len) {
            cJSON_Delete(json);
            return NULL;
        }
        return json;
    default:
        return NULL;
    }
}
