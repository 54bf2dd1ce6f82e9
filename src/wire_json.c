/* JSON bodies: a strict scanner, envelope decoding, JSON to MessagePack. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "wire_internal.h"

/*
 * One scanner serves three callers: shoal__json_decode (envelope fields
 * recorded, everything else validated), and both passes of
 * shoal__json_to_msgpack (the first also records each container's item
 * count, so that the second can write the smallest MessagePack headers).
 *
 * RFC 8259, strictly: no comments, no trailing commas, no leading zeros,
 * no NaN or Infinity, no raw control characters in strings, well-formed
 * UTF-8, \u escapes that name Unicode scalar values (a surrogate only as
 * half of a pair). Values nest recursively, which is safe because depth is
 * bounded by max_depth <= SHOAL_MAX_DEPTH_CAP before a level is entered.
 * The scanner never reads past len and never allocates, except for the
 * count array of a very container-rich value in shoal__json_to_msgpack.
 */

typedef struct {
    const unsigned char *p;
    size_t len;
    size_t pos; /* the next byte to examine */
    unsigned max_depth;
    bool escaped; /* set when a string had an escape; callers clear it */
    char *detail;
    size_t detail_len;
    /* A field of the wrong type or too long a name: the frame is still
     * scanned to the end, so that its id is known and the refusal can
     * answer the call. */
    int deferred;
    /* shoal__json_to_msgpack only: item counts of containers in the order
     * they open; local storage first, then spill. */
    uint32_t *counts;
    size_t ncounts;
    size_t counts_cap;
    shoal_buf_t *spill;
} wire_json_scan_t;

/* Where an unescaped string goes. s == NULL only counts bytes. */
typedef struct {
    char *s;
    size_t cap;
    size_t len;
    bool overflow; /* more than cap bytes: the rest was dropped */
    bool nul;      /* \u0000 appeared */
} wire_json_text_t;

/* Bytes a string can hold without a second look: not '"', '\\', a control
 * character or the start of a multi-byte UTF-8 sequence. */
static const unsigned char wire_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 '"' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50 '\\' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 */
};

#define JSON_ONES 0x0101010101010101ULL
#define JSON_HIGHS 0x8080808080808080ULL

/* Marks (with its top bit) each of 8 bytes that is '"', '\\', below 0x20
 * or above 0x7f. The borrows can mark a byte wrongly only above one that
 * really matches, so the lowest mark is exact. */
static inline uint64_t wire_json_word_special(uint64_t v)
{
    uint64_t q = v ^ (JSON_ONES * '"');
    uint64_t b = v ^ (JSON_ONES * '\\');

    return (((q - JSON_ONES) & ~q) | ((b - JSON_ONES) & ~b) |
            ((v - JSON_ONES * 0x20) & ~v) | v) &
           JSON_HIGHS;
}

/* Where the lowest mark is: in memory order, which is the low byte first
 * on little-endian machines. Elsewhere the byte loop finds it. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                           \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define JSON_FIRST_MARK(m) ((size_t)__builtin_ctzll(m) >> 3)
#else
#define JSON_FIRST_MARK(m) ((size_t)0)
#endif

static int wire_json_fail(wire_json_scan_t *js, int err, const char *fmt, ...)
{
    va_list ap;

    /* The first refused field is the one the message names. */
    if (js->deferred != 0 &&
        (err == SHOAL_EBADTYPE || err == SHOAL_ENAMETOOLONG))
        return err;
    if (js->detail != NULL && js->detail_len > 0) {
        va_start(ap, fmt);
        vsnprintf(js->detail, js->detail_len, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* The byte at pos (or the end of input) cannot appear there. */
static int wire_json_unexpected(wire_json_scan_t *js, size_t pos)
{
    unsigned c;

    if (pos >= js->len)
        return wire_json_fail(js, SHOAL_EBADJSON,
                              "invalid JSON: unexpected end at byte %zu", pos);
    c = js->p[pos];
    if (c >= 0x20 && c < 0x7f)
        return wire_json_fail(js, SHOAL_EBADJSON,
                              "invalid JSON: unexpected '%c' at byte %zu", c,
                              pos);
    return wire_json_fail(js, SHOAL_EBADJSON,
                          "invalid JSON: unexpected byte 0x%02x at byte %zu",
                          c, pos);
}

static int wire_json_too_deep(wire_json_scan_t *js)
{
    return wire_json_fail(js, SHOAL_ETOODEEP,
                          "nesting deeper than %u at byte %zu", js->max_depth,
                          js->pos);
}

static inline void wire_json_skip_ws(wire_json_scan_t *js)
{
    const unsigned char *p = js->p;
    size_t pos = js->pos;

    /* Most tokens follow one another with no whitespace: one comparison
     * settles that case. */
    while (
        pos < js->len && p[pos] <= ' ' &&
        (p[pos] == ' ' || p[pos] == '\n' || p[pos] == '\r' || p[pos] == '\t'))
        pos++;
    js->pos = pos;
}

static bool wire_json_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static void wire_json_text_add(wire_json_text_t *t, const void *b, size_t n)
{
    if (t->s == NULL) {
        t->len += n;
        return;
    }
    if (t->overflow || n > t->cap - t->len) {
        t->overflow = true;
        return;
    }
    memcpy(t->s + t->len, b, n);
    t->len += n;
}

/* Appends code point cp (a Unicode scalar value) as UTF-8. */
static void wire_json_text_put(wire_json_text_t *t, uint32_t cp)
{
    unsigned char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
        if (cp == 0)
            t->nul = true;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    wire_json_text_add(t, u, n);
}

/* Reads the four hex digits of a \u escape at at. */
static int wire_json_hex4(wire_json_scan_t *js, size_t at, uint32_t *out)
{
    uint32_t v = 0;

    for (size_t i = at; i < at + 4; i++) {
        unsigned c;

        if (i >= js->len)
            return wire_json_unexpected(js, i);
        c = js->p[i];
        if (c >= '0' && c <= '9')
            c -= '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            c = (c | 0x20) - 'a' + 10;
        else
            return wire_json_unexpected(js, i);
        v = v << 4 | c;
    }
    *out = v;
    return 0;
}

/* Decodes the escape whose backslash is at *at; moves *at past it. */
static int wire_json_escape(wire_json_scan_t *js, size_t *at,
                            wire_json_text_t *out)
{
    const unsigned char *p = js->p;
    size_t e = *at, next = e + 2;
    uint32_t cp, lo;
    int err;

    if (js->len - e < 2)
        return wire_json_unexpected(js, js->len);
    switch (p[e + 1]) {
    case '"':
    case '\\':
    case '/':
        cp = p[e + 1];
        break;
    case 'b':
        cp = '\b';
        break;
    case 'f':
        cp = '\f';
        break;
    case 'n':
        cp = '\n';
        break;
    case 'r':
        cp = '\r';
        break;
    case 't':
        cp = '\t';
        break;
    case 'u':
        if ((err = wire_json_hex4(js, e + 2, &cp)) != 0)
            return err;
        next = e + 6;
        if (cp < 0xd800 || cp > 0xdfff)
            break;
        /* A surrogate stands only as the high half of a pair: alone it
         * has no UTF-8 form. */
        if (cp >= 0xdc00)
            goto lone;
        /* Input that ends here is an unterminated string, not a lone
         * surrogate: every prefix of a good frame fails the same way. */
        if (js->len - next == 0 || (js->len - next == 1 && p[next] == '\\'))
            return wire_json_unexpected(js, js->len);
        if (js->len - next < 2 || p[next] != '\\' || p[next + 1] != 'u')
            goto lone;
        if ((err = wire_json_hex4(js, next + 2, &lo)) != 0)
            return err;
        if (lo < 0xdc00 || lo > 0xdfff)
            goto lone;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        next += 6;
        break;
    default:
        return wire_json_fail(js, SHOAL_EBADJSON,
                              "invalid JSON: bad escape at byte %zu", e);
    }
    js->escaped = true;
    if (out != NULL)
        wire_json_text_put(out, cp);
    *at = next;
    return 0;
lone:
    return wire_json_fail(js, SHOAL_EBADUTF8,
                          "invalid UTF-8: lone surrogate escape at byte %zu",
                          e);
}

/* Scans the string whose opening quote is at js->pos, leaving pos past the
 * closing quote. Unescapes into out when it is not NULL. Runs of plain
 * bytes are skipped 8 at a time; UTF-8 is checked once per run between
 * quotes and escapes, and only when the run has a byte above 0x7f. */
static int wire_json_string(wire_json_scan_t *js, wire_json_text_t *out)
{
    const unsigned char *p = js->p;
    size_t len = js->len;
    size_t pos = js->pos + 1;
    size_t seg = pos; /* start of the run not yet copied or checked */
    bool high = false;
    int err;

    for (;;) {
        unsigned char c;

        while (len - pos >= 8) {
            uint64_t v, m;

            memcpy(&v, p + pos, 8);
            if ((m = wire_json_word_special(v)) != 0) {
                pos += JSON_FIRST_MARK(m);
                break;
            }
            pos += 8;
        }
        while (pos < len && wire_json_plain[p[pos]])
            pos++;
        if (pos == len)
            return wire_json_unexpected(js, pos);
        c = p[pos];
        if (c >= 0x80) {
            high = true;
            while (++pos < len && p[pos] >= 0x80)
                ;
            continue;
        }
        if (high) {
            size_t bad = 0;

            if (!shoal__utf8_valid((const char *)p + seg, pos - seg, &bad))
                return wire_json_fail(js, SHOAL_EBADUTF8,
                                      "invalid UTF-8 at byte %zu", seg + bad);
            high = false;
        }
        if (out != NULL && pos > seg)
            wire_json_text_add(out, p + seg, pos - seg);
        if (c == '"') {
            js->pos = pos + 1;
            return 0;
        }
        if (c != '\\')
            return wire_json_fail(
                js, SHOAL_EBADJSON,
                "invalid JSON: control character in string at "
                "byte %zu",
                pos);
        if ((err = wire_json_escape(js, &pos, out)) != 0)
            return err;
        seg = pos;
    }
}

/* The common case of keys and names: a short string of plain bytes (no
 * escape, no control character, ASCII only) needs neither validation nor
 * unescaping. On success sets *s and *n to its contents, moves past the
 * closing quote and returns true; otherwise moves nothing and returns
 * false, and wire_json_string takes over. js->pos is at the '"'. */
static bool wire_json_plain_string(wire_json_scan_t *js, size_t max,
                                   const char **s, size_t *n)
{
    const unsigned char *p = js->p;
    size_t start = js->pos + 1, pos = start;
    size_t end = js->len - start > max ? start + max : js->len;

    while (pos < end && wire_json_plain[p[pos]])
        pos++;
    if (pos >= js->len || p[pos] != '"')
        return false;
    *s = (const char *)p + start;
    *n = pos - start;
    js->pos = pos + 1;
    return true;
}

/* Scans a number at js->pos. *is_int tells whether it has neither fraction
 * nor exponent. What follows it is the caller's to judge, which is how
 * "01" fails: the number is "0" and '1' cannot follow a value. */
static int wire_json_number(wire_json_scan_t *js, bool *is_int)
{
    const unsigned char *p = js->p;
    size_t len = js->len, pos = js->pos;

    *is_int = true;
    if (p[pos] == '-')
        pos++;
    if (pos < len && p[pos] == '0')
        pos++;
    else if (pos < len && p[pos] >= '1' && p[pos] <= '9')
        while (++pos < len && wire_json_is_digit(p[pos]))
            ;
    else
        return wire_json_unexpected(js, pos);
    if (pos < len && p[pos] == '.') {
        *is_int = false;
        if (++pos >= len || !wire_json_is_digit(p[pos]))
            return wire_json_unexpected(js, pos);
        while (++pos < len && wire_json_is_digit(p[pos]))
            ;
    }
    if (pos < len && (p[pos] == 'e' || p[pos] == 'E')) {
        *is_int = false;
        if (++pos < len && (p[pos] == '+' || p[pos] == '-'))
            pos++;
        if (pos >= len || !wire_json_is_digit(p[pos]))
            return wire_json_unexpected(js, pos);
        while (++pos < len && wire_json_is_digit(p[pos]))
            ;
    }
    js->pos = pos;
    return 0;
}

/* Parses the digits s[0, n) into *out; false if above UINT64_MAX. */
static bool wire_json_parse_u64(const unsigned char *s, size_t n,
                                uint64_t *out)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned d = s[i] - '0';

        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Parses an integer token (as wire_json_number accepted it) into an int64. */
static bool wire_json_parse_i64(const unsigned char *s, size_t n, int64_t *out)
{
    bool neg = s[0] == '-';
    uint64_t mag;

    if (!wire_json_parse_u64(s + neg, n - neg, &mag))
        return false;
    if (!neg) {
        if (mag > INT64_MAX)
            return false;
        *out = (int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX + 1)
            return false;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    }
    return true;
}

static int wire_json_literal(wire_json_scan_t *js, const char *word, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (js->pos + i >= js->len || js->p[js->pos + i] != word[i])
            return wire_json_unexpected(js, js->pos + i);
    js->pos += n;
    return 0;
}

/* Reserves the next container's slot in the count array. */
static int wire_json_count_open(wire_json_scan_t *js, size_t *slot)
{
    if (js->ncounts == js->counts_cap) {
        size_t cap = js->counts_cap * 2;
        bool first = js->spill->base == NULL;

        /* The spill buffer's len stays 0: only its storage is used, and
         * realloc keeps the counts already there. */
        if (shoal_buf_reserve(js->spill, cap * sizeof(uint32_t)) != 0)
            return SHOAL_ENOMEM;
        if (first)
            memcpy(js->spill->base, js->counts,
                   js->ncounts * sizeof(uint32_t));
        js->counts = (uint32_t *)(void *)js->spill->base;
        js->counts_cap = cap;
    }
    *slot = js->ncounts++;
    return 0;
}

static int wire_json_count_close(wire_json_scan_t *js, size_t slot, size_t n)
{
    if (n > UINT32_MAX)
        return wire_json_fail(js, SHOAL_ETOOBIG,
                              "more than 2^32-1 items at byte %zu", js->pos);
    js->counts[slot] = (uint32_t)n;
    return 0;
}

static int wire_json_value(wire_json_scan_t *js, unsigned depth);

/* An object or array at js->pos, entering nesting level depth. */
static int wire_json_container(wire_json_scan_t *js, unsigned depth)
{
    const unsigned char *p = js->p;
    unsigned char end = p[js->pos] == '{' ? '}' : ']';
    size_t n = 0, slot = 0;
    int err;

    if (depth > js->max_depth)
        return wire_json_too_deep(js);
    if (js->counts != NULL && (err = wire_json_count_open(js, &slot)) != 0)
        return err;
    js->pos++;
    wire_json_skip_ws(js);
    if (js->pos < js->len && p[js->pos] == end) {
        js->pos++;
        goto done;
    }
    for (;;) {
        if (end == '}') {
            if (js->pos >= js->len || p[js->pos] != '"')
                return wire_json_unexpected(js, js->pos);
            if ((err = wire_json_string(js, NULL)) != 0)
                return err;
            wire_json_skip_ws(js);
            if (js->pos >= js->len || p[js->pos] != ':')
                return wire_json_unexpected(js, js->pos);
            js->pos++;
            wire_json_skip_ws(js);
        }
        if ((err = wire_json_value(js, depth)) != 0)
            return err;
        n++;
        wire_json_skip_ws(js);
        if (js->pos < js->len && p[js->pos] == ',') {
            js->pos++;
            wire_json_skip_ws(js);
            continue;
        }
        if (js->pos < js->len && p[js->pos] == end) {
            js->pos++;
            break;
        }
        return wire_json_unexpected(js, js->pos);
    }
done:
    return js->counts != NULL ? wire_json_count_close(js, slot, n) : 0;
}

/* Any value at js->pos (no leading whitespace), inside depth containers. */
static int wire_json_value(wire_json_scan_t *js, unsigned depth)
{
    bool is_int;

    if (js->pos >= js->len)
        return wire_json_unexpected(js, js->pos);
    switch (js->p[js->pos]) {
    case '{':
    case '[':
        return wire_json_container(js, depth + 1);
    case '"':
        return wire_json_string(js, NULL);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return wire_json_number(js, &is_int);
    case 't':
        return wire_json_literal(js, "true", 4);
    case 'f':
        return wire_json_literal(js, "false", 5);
    case 'n':
        return wire_json_literal(js, "null", 4);
    default:
        return wire_json_unexpected(js, js->pos);
    }
}

/* ---- envelopes ------------------------------------------------------ */

enum { JSON_NAME, JSON_ID, JSON_PAYLOAD };

typedef struct {
    const char *key;
    unsigned char kind;
    size_t off; /* of the field in shoal_envelope_t */
} wire_json_field_t;

#define JSON_FIELD(key, kind, member)                                         \
    {                                                                         \
        key, kind, offsetof(shoal_envelope_t, member)                         \
    }

/* The order is wire_json_field_find's: keep them in step. */
static const wire_json_field_t wire_json_fields[] = {
    JSON_FIELD("type", JSON_NAME, type_name),   /* 0 */
    JSON_FIELD("id", JSON_ID, id),              /* 1 */
    JSON_FIELD("app", JSON_NAME, app),          /* 2 */
    JSON_FIELD("action", JSON_NAME, action),    /* 3 */
    JSON_FIELD("event", JSON_NAME, event),      /* 4 */
    JSON_FIELD("to", JSON_NAME, to),            /* 5 */
    JSON_FIELD("from", JSON_NAME, from),        /* 6 */
    JSON_FIELD("args", JSON_PAYLOAD, args),     /* 7 */
    JSON_FIELD("msg", JSON_PAYLOAD, msg),       /* 8 */
    JSON_FIELD("result", JSON_PAYLOAD, result), /* 9 */
    JSON_FIELD("error", JSON_PAYLOAD, error),   /* 10 */
    JSON_FIELD("data", JSON_PAYLOAD, data),     /* 11 */
    JSON_FIELD("node", JSON_PAYLOAD, node),     /* 12 */
};

/* The known field named s[0, n), or NULL. Length and one byte single out
 * the only candidate, which one memcmp confirms. */
static const wire_json_field_t *wire_json_field_find(const char *s, size_t n)
{
    unsigned i;

    switch (n) {
    case 2:
        i = s[0] == 'i' ? 1 : 5;
        break;
    case 3:
        i = s[0] == 'a' ? 2 : 8;
        break;
    case 4:
        i = s[0] == 't'   ? 0
            : s[0] == 'f' ? 6
            : s[0] == 'a' ? 7
            : s[0] == 'd' ? 11
                          : 12;
        break;
    case 5:
        i = s[1] == 'v' ? 4 : 10;
        break;
    case 6:
        i = s[0] == 'a' ? 3 : 9;
        break;
    default:
        return NULL;
    }
    /* A loop, not memcmp: a library call costs more than these few bytes. */
    for (size_t k = 0; k < n; k++)
        if (wire_json_fields[i].key[k] != s[k])
            return NULL;
    return &wire_json_fields[i];
}

/* A known field holds a value of the wrong kind. Syntax errors in that
 * value still win, so that bad JSON is always reported as such. */
static int wire_json_wrong_type(wire_json_scan_t *js,
                                const wire_json_field_t *f, const char *want)
{
    size_t at = js->pos;
    int err = wire_json_value(js, 1);

    if (err != 0)
        return err;
    return wire_json_fail(js, SHOAL_EBADTYPE, "\"%s\" is not %s at byte %zu",
                          f->key, want, at);
}

static int wire_json_name(wire_json_scan_t *js, const wire_json_field_t *f,
                          shoal_name_t *name)
{
    wire_json_text_t t = {name->s, SHOAL_MAX_NAME_BYTES, 0, false, false};
    size_t at = js->pos, n;
    const char *plain;
    int err;

    if (at >= js->len || js->p[at] != '"')
        return wire_json_wrong_type(js, f, "a string");
    if (wire_json_plain_string(js, SHOAL_MAX_NAME_BYTES, &plain, &n)) {
        memcpy(name->s, plain, n);
        name->s[n] = '\0';
        name->len = (uint8_t)n;
        name->present = true;
        return 0;
    }
    if ((err = wire_json_string(js, &t)) != 0)
        return err;
    if (t.overflow)
        return wire_json_fail(js, SHOAL_ENAMETOOLONG,
                              "\"%s\" longer than %d bytes at byte %zu",
                              f->key, SHOAL_MAX_NAME_BYTES, at);
    if (t.nul)
        return wire_json_fail(js, SHOAL_EBADTYPE,
                              "\"%s\" contains NUL at byte %zu", f->key, at);
    name->s[t.len] = '\0';
    name->len = (uint8_t)t.len;
    name->present = true;
    return 0;
}

static int wire_json_id(wire_json_scan_t *js, const wire_json_field_t *f,
                        shoal_envelope_t *env)
{
    size_t at = js->pos;
    bool is_int;
    int err;

    if (at >= js->len || (js->p[at] != '-' && !wire_json_is_digit(js->p[at])))
        return wire_json_wrong_type(js, f, "an integer");
    if ((err = wire_json_number(js, &is_int)) != 0)
        return err;
    if (!is_int || !wire_json_parse_i64(js->p + at, js->pos - at, &env->id))
        return wire_json_fail(js, SHOAL_EBADTYPE,
                              "\"id\" is not a 64-bit integer at byte %zu",
                              at);
    env->has_id = true;
    return 0;
}

/* One member's value at js->pos; f is NULL for a key we do not know. */
static int wire_json_member(wire_json_scan_t *js, const wire_json_field_t *f,
                            shoal_envelope_t *env)
{
    char *field = (char *)env + (f != NULL ? f->off : 0);
    shoal_payload_t *pl = (shoal_payload_t *)(void *)field;
    size_t at = js->pos;
    int err;

    if (f == NULL)
        return wire_json_value(js, 1);
    switch (f->kind) {
    case JSON_NAME:
        if ((err = wire_json_name(js, f, (shoal_name_t *)(void *)field)) != 0)
            return err;
        if (f == &wire_json_fields[0])
            env->type =
                shoal__msg_type_parse(env->type_name.s, env->type_name.len);
        return 0;
    case JSON_ID:
        return wire_json_id(js, f, env);
    default:
        if ((err = wire_json_value(js, 1)) != 0)
            return err;
        pl->data = (const char *)js->p + at;
        pl->len = js->pos - at;
        pl->codec = SHOAL_CODEC_JSON;
        return 0;
    }
}

/* The top-level object, at nesting level 1. Later duplicates overwrite
 * earlier ones. */
static int wire_json_envelope(wire_json_scan_t *js, shoal_envelope_t *env)
{
    const unsigned char *p = js->p;
    int err;

    if (js->max_depth < 1)
        return wire_json_too_deep(js);
    js->pos++;
    wire_json_skip_ws(js);
    if (js->pos < js->len && p[js->pos] == '}') {
        js->pos++;
        return 0;
    }
    for (;;) {
        size_t at = js->pos, value_at, key_len;
        const wire_json_field_t *f;
        const char *key;

        if (at >= js->len || p[at] != '"')
            return wire_json_unexpected(js, at);
        js->escaped = false;
        if (wire_json_plain_string(js, 8, &key, &key_len)) {
            f = wire_json_field_find(key, key_len);
        } else if ((err = wire_json_string(js, NULL)) != 0) {
            return err;
        } else if (!js->escaped) {
            f = wire_json_field_find((const char *)p + at + 1,
                                     js->pos - at - 2);
        } else {
            /* Rare: unescape, then match. Known keys have at most 6
             * bytes; a longer one is unknown. */
            char unescaped[8];
            wire_json_text_t kt = {unescaped, 6, 0, false, false};

            js->pos = at;
            wire_json_string(js, &kt);
            f = kt.overflow ? NULL : wire_json_field_find(unescaped, kt.len);
        }
        wire_json_skip_ws(js);
        if (js->pos >= js->len || p[js->pos] != ':')
            return wire_json_unexpected(js, js->pos);
        js->pos++;
        wire_json_skip_ws(js);
        value_at = js->pos;
        err = wire_json_member(js, f, env);
        if (err == SHOAL_EBADTYPE || err == SHOAL_ENAMETOOLONG) {
            if (js->deferred == 0)
                js->deferred = err;
            js->pos = value_at;
            err = wire_json_value(js, 1);
        }
        if (err != 0)
            return err;
        wire_json_skip_ws(js);
        if (js->pos < js->len && p[js->pos] == ',') {
            js->pos++;
            wire_json_skip_ws(js);
            continue;
        }
        if (js->pos < js->len && p[js->pos] == '}') {
            js->pos++;
            return 0;
        }
        return wire_json_unexpected(js, js->pos);
    }
}

static void wire_json_scan_init(wire_json_scan_t *js, const char *s,
                                size_t len, unsigned max_depth, char *detail,
                                size_t detail_len)
{
    js->p = (const unsigned char *)s;
    js->len = len;
    js->pos = 0;
    js->max_depth = max_depth;
    js->escaped = false;
    js->deferred = 0;
    js->detail = detail;
    js->detail_len = detail_len;
    js->counts = NULL;
    js->ncounts = 0;
    js->counts_cap = 0;
    js->spill = NULL;
}

/* Nothing but whitespace may follow the value. */
static int wire_json_finish(wire_json_scan_t *js)
{
    wire_json_skip_ws(js);
    return js->pos == js->len ? 0 : wire_json_unexpected(js, js->pos);
}

int shoal__json_decode(const char *frame, size_t len,
                       const shoal_limits_t *limits, shoal_envelope_t *env,
                       char *detail, size_t detail_len)
{
    wire_json_scan_t js;
    unsigned max_depth = limits->max_depth;
    int err;

    if (max_depth > SHOAL_MAX_DEPTH_CAP)
        max_depth = SHOAL_MAX_DEPTH_CAP;
    wire_json_scan_init(&js, frame, len, max_depth, detail, detail_len);
    shoal_envelope_init(env);
    wire_json_skip_ws(&js);
    if (js.pos < len && js.p[js.pos] != '{') {
        /* Valid JSON that is not an object is ENOTMAP; invalid, EBADJSON. */
        if ((err = wire_json_value(&js, 0)) != 0 ||
            (err = wire_json_finish(&js)) != 0)
            return err;
        return wire_json_fail(&js, SHOAL_ENOTMAP, "message is not an object");
    }
    if (js.pos == len)
        return wire_json_unexpected(&js, js.pos);
    if ((err = wire_json_envelope(&js, env)) != 0 ||
        (err = wire_json_finish(&js)) != 0)
        return err;
    if (js.deferred != 0)
        return js.deferred;
    if (!env->type_name.present)
        return wire_json_fail(&js, SHOAL_EBADMSG, "message has no \"type\"");
    return 0;
}

/* ---- JSON to MessagePack -------------------------------------------- */

typedef struct {
    wire_json_scan_t js; /* over text the first pass validated */
    msgpack_packer pk;
    shoal_buf_t *out;
    size_t next_count;
} wire_json_emit_t;

static int wire_json_emit_write(void *data, const char *buf, size_t len)
{
    return shoal_buf_append(data, buf, len) == 0 ? 0 : -1;
}

static int wire_json_emit_value(wire_json_emit_t *em);

static int wire_json_emit_string(wire_json_emit_t *em)
{
    wire_json_scan_t *js = &em->js;
    size_t at = js->pos;
    wire_json_text_t t = {NULL, 0, 0, false, false};
    shoal_buf_t *out = em->out;

    js->escaped = false;
    wire_json_string(js, NULL);
    if (!js->escaped) {
        size_t n = js->pos - at - 2;

        return msgpack_pack_str(&em->pk, n) ||
               msgpack_pack_str_body(&em->pk, js->p + at + 1, n);
    }
    /* Escapes: count the unescaped bytes for the header, then unescape
     * straight into the buffer. */
    js->pos = at;
    wire_json_string(js, &t);
    if (msgpack_pack_str(&em->pk, t.len) != 0 ||
        shoal_buf_reserve(out, t.len) != 0)
        return -1;
    js->pos = at;
    t.s = out->base + out->len;
    t.cap = t.len;
    t.len = 0;
    wire_json_string(js, &t);
    out->len += t.len;
    return 0;
}

static int wire_json_emit_number(wire_json_emit_t *em)
{
    wire_json_scan_t *js = &em->js;
    const unsigned char *s = js->p + js->pos;
    char local[64];
    shoal_buf_t big = {NULL, 0, 0};
    uint64_t mag;
    bool is_int, neg = s[0] == '-';
    size_t n;
    double d;

    wire_json_number(js, &is_int);
    n = (size_t)(js->p + js->pos - s);
    if (is_int && wire_json_parse_u64(s + neg, n - neg, &mag)) {
        if (!neg && mag > INT64_MAX)
            return msgpack_pack_uint64(&em->pk, mag);
        if (!neg)
            return msgpack_pack_int64(&em->pk, (int64_t)mag);
        if (mag <= INT64_MAX)
            return msgpack_pack_int64(&em->pk, -(int64_t)mag);
        if (mag == (uint64_t)INT64_MAX + 1)
            return msgpack_pack_int64(&em->pk, INT64_MIN);
    }
    /* strtod wants a NUL-terminated string and the text is not one. The
     * program must keep the "C" LC_NUMERIC locale, as shoal never sets
     * another. */
    if (n < sizeof(local)) {
        memcpy(local, s, n);
        local[n] = '\0';
        d = strtod(local, NULL);
    } else {
        if (shoal_buf_append(&big, s, n) != 0 ||
            shoal_buf_append(&big, "", 1) != 0) {
            shoal_buf_free(&big);
            return -1;
        }
        d = strtod(big.base, NULL);
        shoal_buf_free(&big);
    }
    /* Beyond double's range strtod gives an infinity, as JavaScript's
     * JSON.parse does. */
    return msgpack_pack_double(&em->pk, d);
}

static int wire_json_emit_container(wire_json_emit_t *em)
{
    wire_json_scan_t *js = &em->js;
    bool object = js->p[js->pos] == '{';
    uint32_t n = js->counts[em->next_count++];
    int err;

    err =
        object ? msgpack_pack_map(&em->pk, n) : msgpack_pack_array(&em->pk, n);
    if (err != 0)
        return err;
    js->pos++;
    for (uint32_t i = 0; i < n; i++) {
        wire_json_skip_ws(js);
        if (object) {
            if (wire_json_emit_string(em) != 0)
                return -1;
            wire_json_skip_ws(js);
            js->pos++; /* ':' */
            wire_json_skip_ws(js);
        }
        if (wire_json_emit_value(em) != 0)
            return -1;
        wire_json_skip_ws(js);
        js->pos++; /* ',' or the closing bracket */
    }
    if (n == 0) {
        wire_json_skip_ws(js);
        js->pos++;
    }
    return 0;
}

/* The value at js->pos, which the first pass found valid. */
static int wire_json_emit_value(wire_json_emit_t *em)
{
    wire_json_scan_t *js = &em->js;

    switch (js->p[js->pos]) {
    case '{':
    case '[':
        return wire_json_emit_container(em);
    case '"':
        return wire_json_emit_string(em);
    case 't':
        js->pos += 4;
        return msgpack_pack_true(&em->pk);
    case 'f':
        js->pos += 5;
        return msgpack_pack_false(&em->pk);
    case 'n':
        js->pos += 4;
        return msgpack_pack_nil(&em->pk);
    default:
        return wire_json_emit_number(em);
    }
}

int shoal__json_to_msgpack(const char *json, size_t len, shoal_buf_t *out)
{
    uint32_t local[64];
    shoal_buf_t spill = {NULL, 0, 0};
    wire_json_emit_t em;
    size_t old_len = out->len;
    int err;

    /* First pass: validate, and count every container's items. */
    wire_json_scan_init(&em.js, json, len, SHOAL_MAX_DEPTH_CAP, NULL, 0);
    em.js.counts = local;
    em.js.counts_cap = sizeof(local) / sizeof(local[0]);
    em.js.spill = &spill;
    wire_json_skip_ws(&em.js);
    if ((err = wire_json_value(&em.js, 0)) == 0 &&
        (err = wire_json_finish(&em.js)) == 0) {
        em.js.pos = 0;
        wire_json_skip_ws(&em.js);
        em.out = out;
        em.next_count = 0;
        msgpack_packer_init(&em.pk, out, wire_json_emit_write);
        if (wire_json_emit_value(&em) != 0) {
            out->len = old_len;
            err = SHOAL_ENOMEM;
        }
    }
    shoal_buf_free(&spill);
    return err;
}
