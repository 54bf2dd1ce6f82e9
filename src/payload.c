/* Reading values out of an encoded payload (JSON or MessagePack) without
 * decoding it whole, and writing small maps in either codec. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "payload_internal.h"

/*
 * The walkers here skip values instead of building trees: a task's
 * arguments pass through the dispatcher as the bytes they came in. They
 * are written for values the wire decoder already validated, yet they stay
 * inside [data, data + len) and report malformed input with an error
 * whatever they are given: nothing here reads past the end.
 */

/* ---- JSON -------------------------------------------------------------- */

static size_t json_ws(const char *p, size_t i, size_t len)
{
    while (i < len &&
           (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* p[i] is '"': returns the offset just past the closing quote, or 0. */
static size_t json_skip_string(const char *p, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return 0;
}

static bool json_is_scalar_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '-' || c == '+' || c == '.';
}

/* Skips the value at p[i] (no leading whitespace). Returns the offset past
 * it, or 0 when it is malformed or cut off. Containers are skipped by
 * counting brackets outside strings: no recursion, any depth. */
static size_t json_skip_value(const char *p, size_t i, size_t len)
{
    size_t depth = 0;

    if (i >= len)
        return 0;
    if (p[i] == '"')
        return json_skip_string(p, i, len);
    if (p[i] != '{' && p[i] != '[') {
        size_t start = i;
        while (i < len && json_is_scalar_char(p[i]))
            i++;
        return i > start ? i : 0;
    }
    for (; i < len; i++) {
        char c = p[i];
        if (c == '"') {
            i = json_skip_string(p, i, len);
            if (i == 0)
                return 0;
            i--;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                return i + 1;
        }
    }
    return 0;
}

static unsigned json_hex(const char *p)
{
    unsigned v = 0;

    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0x110000; /* not hex: never a valid code point */
    }
    return v;
}

static size_t utf8_put(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Unescapes the JSON string body s[0, len) (quotes excluded) into out.
 * Returns the length written (a NUL follows), SHOAL_ETOOBIG when it does
 * not fit in out_len - 1 bytes, or SHOAL_EBADJSON. */
static int json_unescape(const char *s, size_t len, char *out, size_t out_len)
{
    size_t o = 0;

    if (out_len == 0)
        return SHOAL_ETOOBIG;
    for (size_t i = 0; i < len; i++) {
        char tmp[4];
        size_t n = 1;
        tmp[0] = s[i];
        if (s[i] == '\\') {
            if (++i >= len)
                return SHOAL_EBADJSON;
            switch (s[i]) {
            case '"':
            case '\\':
            case '/':
                tmp[0] = s[i];
                break;
            case 'b':
                tmp[0] = '\b';
                break;
            case 'f':
                tmp[0] = '\f';
                break;
            case 'n':
                tmp[0] = '\n';
                break;
            case 'r':
                tmp[0] = '\r';
                break;
            case 't':
                tmp[0] = '\t';
                break;
            case 'u': {
                unsigned cp;
                if (len - i < 5)
                    return SHOAL_EBADJSON;
                cp = json_hex(s + i + 1);
                i += 4;
                if (cp >= 0xd800 && cp < 0xdc00 && len - i >= 7 &&
                    s[i + 1] == '\\' && s[i + 2] == 'u') {
                    unsigned lo = json_hex(s + i + 3);
                    if (lo >= 0xdc00 && lo < 0xe000) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                    }
                }
                if (cp > 0x10ffff)
                    return SHOAL_EBADJSON;
                n = utf8_put(tmp, cp);
                break;
            }
            default:
                return SHOAL_EBADJSON;
            }
        }
        if (o + n >= out_len)
            return SHOAL_ETOOBIG;
        memcpy(out + o, tmp, n);
        o += n;
    }
    out[o] = '\0';
    return (int)o;
}

/* ---- MessagePack ------------------------------------------------------- */

static uint64_t mp_be(const unsigned char *p, size_t n)
{
    uint64_t v = 0;

    for (size_t k = 0; k < n; k++)
        v = (v << 8) | p[k];
    return v;
}

/* One MessagePack header at p[i]: its size, the raw bytes that follow it
 * (str, bin, ext, scalars) and the values nested in it (arrays: n, maps:
 * 2n). Returns 0 or SHOAL_EBADMSGPACK (unknown byte, cut off). */
typedef struct {
    size_t head;
    uint64_t body;
    uint64_t children;
} mp_head_t;

static int mp_header(const unsigned char *p, size_t i, size_t len,
                     mp_head_t *h)
{
    unsigned char b;
    size_t extra = 0; /* bytes of length that follow the type byte */

    if (i >= len)
        return SHOAL_EBADMSGPACK;
    b = p[i];
    h->head = 1;
    h->body = 0;
    h->children = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if (b >= 0x80 && b <= 0x8f) {
        h->children = 2u * (b & 0x0f);
        return 0;
    }
    if (b >= 0x90 && b <= 0x9f) {
        h->children = b & 0x0f;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        h->body = b & 0x1f;
        return 0;
    }
    switch (b) {
    case 0xcc:
    case 0xd0:
        h->body = 1;
        return 0;
    case 0xcd:
    case 0xd1:
        h->body = 2;
        return 0;
    case 0xca:
    case 0xce:
    case 0xd2:
        h->body = 4;
        return 0;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        h->body = 8;
        return 0;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        h->body = 1u + (1u << (b - 0xd4)); /* type byte + data */
        return 0;
    case 0xc4:
    case 0xd9:
        extra = 1;
        break;
    case 0xc5:
    case 0xda:
    case 0xdc:
    case 0xde:
        extra = 2;
        break;
    case 0xc6:
    case 0xdb:
    case 0xdd:
    case 0xdf:
        extra = 4;
        break;
    case 0xc7:
        extra = 1;
        break;
    case 0xc8:
        extra = 2;
        break;
    case 0xc9:
        extra = 4;
        break;
    default:
        return SHOAL_EBADMSGPACK; /* 0xc1 */
    }
    if (len - i - 1 < extra)
        return SHOAL_EBADMSGPACK;
    h->head = 1 + extra;
    {
        uint64_t n = mp_be(p + i + 1, extra);
        if (b == 0xdc || b == 0xdd)
            h->children = n;
        else if (b == 0xde || b == 0xdf)
            h->children = 2 * n;
        else if (b >= 0xc7 && b <= 0xc9)
            h->body = n + 1; /* ext: the type byte, then the data */
        else
            h->body = n;
    }
    return 0;
}

/* Skips the value at p[i]. Returns the offset past it, or 0. Nested values
 * are counted, not recursed into. */
static size_t mp_skip_value(const unsigned char *p, size_t i, size_t len)
{
    uint64_t left = 1;

    while (left > 0) {
        mp_head_t h;
        if (mp_header(p, i, len, &h) != 0)
            return 0;
        if (h.body > len - i - h.head)
            return 0;
        i += h.head + (size_t)h.body;
        left--;
        /* Each nested value takes at least one byte: more than the bytes
         * left can only be malformed, and the count cannot overflow. */
        if (h.children > len - i || left + h.children > len - i)
            return 0;
        left += h.children;
    }
    return i;
}

/* ---- values ------------------------------------------------------------ */

static bool payload_ok(const shoal_payload_t *p)
{
    return p != NULL && p->data != NULL && p->len > 0 &&
           (p->codec == SHOAL_CODEC_JSON || p->codec == SHOAL_CODEC_MSGPACK);
}

/* The first byte of a JSON payload after whitespace, or -1. */
static int json_first(const shoal_payload_t *p, size_t *at)
{
    size_t i = json_ws(p->data, 0, p->len);

    *at = i;
    return i < p->len ? (unsigned char)p->data[i] : -1;
}

shoal_value_type_t shoal_payload_type(const shoal_payload_t *p)
{
    unsigned char b;
    size_t i;
    int c;

    if (!payload_ok(p))
        return SHOAL_VALUE_NONE;
    if (p->codec == SHOAL_CODEC_JSON) {
        c = json_first(p, &i);
        switch (c) {
        case '{':
            return SHOAL_VALUE_OBJECT;
        case '[':
            return SHOAL_VALUE_ARRAY;
        case '"':
            return SHOAL_VALUE_STRING;
        case 'n':
            return SHOAL_VALUE_NULL;
        case 't':
        case 'f':
            return SHOAL_VALUE_BOOL;
        default:
            if (c == '-' || (c >= '0' && c <= '9')) {
                for (size_t k = i; k < p->len; k++)
                    if (p->data[k] == '.' || p->data[k] == 'e' ||
                        p->data[k] == 'E')
                        return SHOAL_VALUE_FLOAT;
                return SHOAL_VALUE_INT;
            }
            return SHOAL_VALUE_NONE;
        }
    }
    b = (unsigned char)p->data[0];
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3))
        return SHOAL_VALUE_INT;
    if (b <= 0x8f || b == 0xde || b == 0xdf)
        return SHOAL_VALUE_OBJECT;
    if (b <= 0x9f || b == 0xdc || b == 0xdd)
        return SHOAL_VALUE_ARRAY;
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb))
        return SHOAL_VALUE_STRING;
    if (b == 0xc0)
        return SHOAL_VALUE_NULL;
    if (b == 0xc2 || b == 0xc3)
        return SHOAL_VALUE_BOOL;
    if (b == 0xca || b == 0xcb)
        return SHOAL_VALUE_FLOAT;
    if (b == 0xc1)
        return SHOAL_VALUE_NONE;
    return SHOAL_VALUE_BINARY;
}

int shoal_payload_iter_init(shoal_payload_iter_t *it,
                            const shoal_payload_t *container)
{
    memset(it, 0, sizeof(*it));
    if (!payload_ok(container))
        return SHOAL_EINVAL;
    it->data = container->data;
    it->len = container->len;
    it->codec = container->codec;
    if (container->codec == SHOAL_CODEC_JSON) {
        size_t i;
        int c = json_first(container, &i);
        if (c != '{' && c != '[')
            return SHOAL_EBADTYPE;
        it->object = c == '{';
        it->off = i + 1;
        return 0;
    }
    {
        mp_head_t h;
        int err = mp_header((const unsigned char *)container->data, 0,
                            container->len, &h);
        shoal_value_type_t t = shoal_payload_type(container);
        if (err)
            return err;
        if (t != SHOAL_VALUE_OBJECT && t != SHOAL_VALUE_ARRAY)
            return SHOAL_EBADTYPE;
        it->object = t == SHOAL_VALUE_OBJECT;
        it->left = it->object ? h.children / 2 : h.children;
        it->off = h.head;
    }
    return 0;
}

static int iter_next_json(shoal_payload_iter_t *it, shoal_payload_t *key,
                          shoal_payload_t *value)
{
    const char *p = it->data;
    size_t i = json_ws(p, it->off, it->len), end;

    if (it->done || i >= it->len)
        return it->done ? 0 : SHOAL_EBADJSON;
    if (p[i] == (it->object ? '}' : ']')) {
        it->done = true;
        return 0;
    }
    if (it->count > 0) {
        if (p[i] != ',')
            return SHOAL_EBADJSON;
        i = json_ws(p, i + 1, it->len);
    }
    if (it->object) {
        if (i >= it->len || p[i] != '"')
            return SHOAL_EBADJSON;
        end = json_skip_string(p, i, it->len);
        if (end == 0)
            return SHOAL_EBADJSON;
        if (key) {
            key->data = p + i;
            key->len = end - i;
            key->codec = SHOAL_CODEC_JSON;
        }
        i = json_ws(p, end, it->len);
        if (i >= it->len || p[i] != ':')
            return SHOAL_EBADJSON;
        i = json_ws(p, i + 1, it->len);
    }
    end = json_skip_value(p, i, it->len);
    if (end == 0)
        return SHOAL_EBADJSON;
    value->data = p + i;
    value->len = end - i;
    value->codec = SHOAL_CODEC_JSON;
    it->off = end;
    it->count++;
    return 1;
}

static int iter_next_msgpack(shoal_payload_iter_t *it, shoal_payload_t *key,
                             shoal_payload_t *value)
{
    const unsigned char *p = (const unsigned char *)it->data;
    size_t end;

    if (it->left == 0)
        return 0;
    if (it->object) {
        end = mp_skip_value(p, it->off, it->len);
        if (end == 0)
            return SHOAL_EBADMSGPACK;
        if (key) {
            key->data = it->data + it->off;
            key->len = end - it->off;
            key->codec = SHOAL_CODEC_MSGPACK;
        }
        it->off = end;
    }
    end = mp_skip_value(p, it->off, it->len);
    if (end == 0)
        return SHOAL_EBADMSGPACK;
    value->data = it->data + it->off;
    value->len = end - it->off;
    value->codec = SHOAL_CODEC_MSGPACK;
    it->off = end;
    it->left--;
    it->count++;
    return 1;
}

int shoal_payload_iter_next(shoal_payload_iter_t *it, shoal_payload_t *key,
                            shoal_payload_t *value)
{
    if (key && !it->object) {
        key->data = NULL;
        key->len = 0;
        key->codec = SHOAL_CODEC_NONE;
    }
    if (it->codec == SHOAL_CODEC_JSON)
        return iter_next_json(it, key, value);
    return iter_next_msgpack(it, key, value);
}

/* The raw bytes of a string value: for JSON the body between the quotes,
 * still escaped (*escaped tells whether it holds a backslash). */
static int payload_string_raw(const shoal_payload_t *p, const char **s,
                              size_t *len, bool *escaped)
{
    *escaped = false;
    if (!payload_ok(p))
        return SHOAL_EBADTYPE;
    if (p->codec == SHOAL_CODEC_JSON) {
        size_t i, end;
        if (json_first(p, &i) != '"')
            return SHOAL_EBADTYPE;
        end = json_skip_string(p->data, i, p->len);
        if (end == 0)
            return SHOAL_EBADJSON;
        *s = p->data + i + 1;
        *len = end - i - 2;
        *escaped = memchr(*s, '\\', *len) != NULL;
        return 0;
    }
    {
        mp_head_t h;
        int err;
        if (shoal_payload_type(p) != SHOAL_VALUE_STRING)
            return SHOAL_EBADTYPE;
        err = mp_header((const unsigned char *)p->data, 0, p->len, &h);
        if (err)
            return err;
        if (h.body > p->len - h.head)
            return SHOAL_EBADMSGPACK;
        *s = p->data + h.head;
        *len = (size_t)h.body;
    }
    return 0;
}

int shoal_payload_string(const shoal_payload_t *p, char *out, size_t out_len)
{
    const char *s;
    size_t len;
    bool escaped;
    int err = payload_string_raw(p, &s, &len, &escaped);

    if (err)
        return err;
    if (escaped)
        return json_unescape(s, len, out, out_len);
    if (len >= out_len || len > (size_t)INT32_MAX)
        return SHOAL_ETOOBIG;
    memcpy(out, s, len);
    out[len] = '\0';
    return (int)len;
}

bool shoal_payload_string_eq(const shoal_payload_t *p, const char *text)
{
    char tmp[SHOAL_MAX_NAME_BYTES + 1];
    const char *s;
    size_t len, tlen = strlen(text);
    bool escaped;
    int n;

    if (payload_string_raw(p, &s, &len, &escaped) != 0)
        return false;
    if (!escaped)
        return len == tlen && memcmp(s, text, len) == 0;
    n = json_unescape(s, len, tmp, sizeof(tmp));
    return n >= 0 && (size_t)n == tlen && memcmp(tmp, text, tlen) == 0;
}

int shoal_payload_get(const shoal_payload_t *obj, const char *key,
                      shoal_payload_t *out)
{
    shoal_payload_iter_t it;
    shoal_payload_t k, v;
    int err = shoal_payload_iter_init(&it, obj);

    if (err)
        return err;
    if (!it.object)
        return SHOAL_EBADTYPE;
    while ((err = shoal_payload_iter_next(&it, &k, &v)) == 1) {
        if (shoal_payload_string_eq(&k, key)) {
            *out = v;
            return 0;
        }
    }
    return err < 0 ? err : SHOAL_ENOTFOUND;
}

int shoal_payload_int(const shoal_payload_t *p, int64_t *out)
{
    if (!payload_ok(p))
        return SHOAL_EBADTYPE;
    if (p->codec == SHOAL_CODEC_JSON) {
        char text[32];
        char *end;
        size_t i, n;
        long long v;

        if (shoal_payload_type(p) != SHOAL_VALUE_INT)
            return SHOAL_EBADTYPE;
        json_first(p, &i);
        n = p->len - i;
        while (n > 0 && !json_is_scalar_char(p->data[i + n - 1]))
            n--;
        if (n >= sizeof(text))
            return SHOAL_EBADTYPE;
        memcpy(text, p->data + i, n);
        text[n] = '\0';
        errno = 0;
        v = strtoll(text, &end, 10);
        if (errno != 0 || *end != '\0')
            return SHOAL_EBADTYPE;
        *out = v;
        return 0;
    }
    {
        const unsigned char *b = (const unsigned char *)p->data;
        size_t n;
        uint64_t u;

        if (b[0] <= 0x7f) {
            *out = b[0];
            return 0;
        }
        if (b[0] >= 0xe0) {
            *out = (int8_t)b[0];
            return 0;
        }
        if (b[0] < 0xcc || b[0] > 0xd3)
            return SHOAL_EBADTYPE;
        n = (size_t)1 << ((b[0] - 0xcc) & 3);
        if (p->len < 1 + n)
            return SHOAL_EBADMSGPACK;
        u = mp_be(b + 1, n);
        if (b[0] <= 0xcf) {
            if (u > (uint64_t)INT64_MAX)
                return SHOAL_EBADTYPE;
            *out = (int64_t)u;
        } else if (n == 1) {
            *out = (int8_t)u;
        } else if (n == 2) {
            *out = (int16_t)u;
        } else if (n == 4) {
            *out = (int32_t)u;
        } else {
            *out = (int64_t)u;
        }
    }
    return 0;
}

int shoal_payload_bool(const shoal_payload_t *p, bool *out)
{
    if (shoal_payload_type(p) != SHOAL_VALUE_BOOL)
        return SHOAL_EBADTYPE;
    if (p->codec == SHOAL_CODEC_JSON) {
        size_t i;
        *out = json_first(p, &i) == 't';
    } else {
        *out = (unsigned char)p->data[0] == 0xc3;
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------ */

void shoal__pw_init(shoal__pw_t *w, shoal_buf_t *buf, shoal_codec_t codec)
{
    memset(w, 0, sizeof(*w));
    w->buf = buf;
    w->codec = codec;
    w->start = buf->len;
}

static void pw_put(shoal__pw_t *w, const void *data, size_t len)
{
    if (w->err == 0)
        w->err = shoal_buf_append(w->buf, data, len);
}

/* JSON: the comma before a value, unless it follows its key. */
static void pw_sep(shoal__pw_t *w)
{
    if (w->codec != SHOAL_CODEC_JSON || w->depth == 0)
        return;
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->count[w->depth - 1]++ > 0)
        pw_put(w, ",", 1);
}

static void pw_mp_len(shoal__pw_t *w, unsigned char fix, unsigned fix_max,
                      unsigned char b8, unsigned char b16, unsigned char b32,
                      uint64_t n)
{
    unsigned char h[5];

    if (n <= fix_max) {
        h[0] = (unsigned char)(fix | n);
        pw_put(w, h, 1);
    } else if (b8 != 0 && n <= 0xff) {
        h[0] = b8;
        h[1] = (unsigned char)n;
        pw_put(w, h, 2);
    } else if (n <= 0xffff) {
        h[0] = b16;
        h[1] = (unsigned char)(n >> 8);
        h[2] = (unsigned char)n;
        pw_put(w, h, 3);
    } else {
        h[0] = b32;
        h[1] = (unsigned char)(n >> 24);
        h[2] = (unsigned char)(n >> 16);
        h[3] = (unsigned char)(n >> 8);
        h[4] = (unsigned char)n;
        pw_put(w, h, 5);
    }
}

static void pw_open(shoal__pw_t *w, bool object, uint32_t n)
{
    pw_sep(w);
    if (w->depth >= SHOAL__PW_MAX_DEPTH) {
        w->err = SHOAL_ETOODEEP;
        return;
    }
    w->closer[w->depth] = object ? '}' : ']';
    w->count[w->depth++] = 0;
    if (w->codec == SHOAL_CODEC_JSON)
        pw_put(w, object ? "{" : "[", 1);
    else if (object)
        pw_mp_len(w, 0x80, 15, 0, 0xde, 0xdf, n);
    else
        pw_mp_len(w, 0x90, 15, 0, 0xdc, 0xdd, n);
}

void shoal__pw_map(shoal__pw_t *w, uint32_t n)
{
    pw_open(w, true, n);
}

void shoal__pw_array(shoal__pw_t *w, uint32_t n)
{
    pw_open(w, false, n);
}

void shoal__pw_end(shoal__pw_t *w)
{
    if (w->depth == 0)
        return;
    w->depth--;
    if (w->codec == SHOAL_CODEC_JSON)
        pw_put(w, &w->closer[w->depth], 1);
}

static void pw_json_string(shoal__pw_t *w, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;

    pw_put(w, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        if (n == 0) {
            run++;
            continue;
        }
        pw_put(w, s + i - run, run);
        run = 0;
        pw_put(w, esc, n);
    }
    pw_put(w, s + len - run, run);
    pw_put(w, "\"", 1);
}

static void pw_string(shoal__pw_t *w, const char *s, size_t len)
{
    if (w->codec == SHOAL_CODEC_JSON) {
        pw_json_string(w, s, len);
        return;
    }
    pw_mp_len(w, 0xa0, 31, 0xd9, 0xda, 0xdb, len);
    pw_put(w, s, len);
}

void shoal__pw_key(shoal__pw_t *w, const char *key)
{
    pw_sep(w);
    pw_string(w, key, strlen(key));
    if (w->codec == SHOAL_CODEC_JSON)
        pw_put(w, ":", 1);
    w->after_key = true;
}

void shoal__pw_str(shoal__pw_t *w, const char *s, size_t len)
{
    pw_sep(w);
    pw_string(w, s, len);
}

void shoal__pw_cstr(shoal__pw_t *w, const char *s)
{
    shoal__pw_str(w, s, strlen(s));
}

void shoal__pw_int(shoal__pw_t *w, int64_t v)
{
    unsigned char h[9];

    pw_sep(w);
    if (w->codec == SHOAL_CODEC_JSON) {
        char text[24];
        int n = snprintf(text, sizeof(text), "%lld", (long long)v);
        pw_put(w, text, (size_t)n);
        return;
    }
    if (v >= 0 && v <= 0x7f) {
        h[0] = (unsigned char)v;
        pw_put(w, h, 1);
    } else if (v < 0 && v >= -32) {
        h[0] = (unsigned char)(int8_t)v;
        pw_put(w, h, 1);
    } else {
        uint64_t u = (uint64_t)v;
        h[0] = v >= 0 ? 0xcf : 0xd3;
        for (int k = 0; k < 8; k++)
            h[1 + k] = (unsigned char)(u >> (56 - 8 * k));
        pw_put(w, h, 9);
    }
}

void shoal__pw_bool(shoal__pw_t *w, bool v)
{
    unsigned char b = v ? 0xc3 : 0xc2;

    pw_sep(w);
    if (w->codec == SHOAL_CODEC_JSON)
        pw_put(w, v ? "true" : "false", v ? 4 : 5);
    else
        pw_put(w, &b, 1);
}

void shoal__pw_null(shoal__pw_t *w)
{
    unsigned char b = 0xc0;

    pw_sep(w);
    if (w->codec == SHOAL_CODEC_JSON)
        pw_put(w, "null", 4);
    else
        pw_put(w, &b, 1);
}

void shoal__pw_value(shoal__pw_t *w, const shoal_payload_t *v)
{
    if (v == NULL || v->data == NULL) {
        shoal__pw_null(w);
        return;
    }
    pw_sep(w);
    if (w->err)
        return;
    if (v->codec == w->codec)
        pw_put(w, v->data, v->len);
    else
        w->err = shoal_wire_transcode(v, w->codec, w->buf);
}

int shoal__pw_finish(shoal__pw_t *w, shoal_payload_t *out)
{
    if (w->err) {
        w->buf->len = w->start;
        return w->err;
    }
    if (out) {
        out->data = w->buf->base + w->start;
        out->len = w->buf->len - w->start;
        out->codec = w->codec;
    }
    return 0;
}
