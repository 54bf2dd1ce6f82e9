/* Out to the wire: envelopes to frames, transcoding, errors, cJSON. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <msgpack.h>

#include "wire_internal.h"

/* The header names, in the order they are written after "type" and "id". */
static const struct {
    const char *key;
    size_t key_len;
    size_t offset;
} wire_enc_names[] = {
    {"from", 4, offsetof(shoal_envelope_t, from)},
    {"to", 2, offsetof(shoal_envelope_t, to)},
    {"app", 3, offsetof(shoal_envelope_t, app)},
    {"action", 6, offsetof(shoal_envelope_t, action)},
    {"event", 5, offsetof(shoal_envelope_t, event)},
};

/* The payloads, in the order they are written after the names. */
static const struct {
    const char *key;
    size_t key_len;
    size_t offset;
} wire_enc_payloads[] = {
    {"args", 4, offsetof(shoal_envelope_t, args)},
    {"msg", 3, offsetof(shoal_envelope_t, msg)},
    {"result", 6, offsetof(shoal_envelope_t, result)},
    {"error", 5, offsetof(shoal_envelope_t, error)},
    {"data", 4, offsetof(shoal_envelope_t, data)},
    {"node", 4, offsetof(shoal_envelope_t, node)},
};

#define WIRE_ENC_COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const shoal_name_t *wire_enc_name(const shoal_envelope_t *env, size_t i)
{
    return (const shoal_name_t *)((const char *)env +
                                  wire_enc_names[i].offset);
}

static const shoal_payload_t *wire_enc_payload(const shoal_envelope_t *env,
                                               size_t i)
{
    return (const shoal_payload_t *)((const char *)env +
                                     wire_enc_payloads[i].offset);
}

/* ---- JSON text ------------------------------------------------------- */

/* Bytes each byte adds when written inside a JSON string: 1 for the
 * two-character escapes, 5 for \u00XX, 0 for bytes written as they are
 * (valid UTF-8 passes through unchanged). */
/* clang-format off */
static const unsigned char wire_enc_json_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* \b \t \n \f \r */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    ['"'] = 1, ['\\'] = 1,
};
/* clang-format on */

/* Writes s[0, len) quoted and escaped at d, which has room for it; returns
 * the end of what it wrote. */
static char *wire_enc_json_str_at(char *d, const char *s, size_t len,
                                  size_t extra)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;

    *d++ = '"';
    if (extra == 0) {
        if (len > 0)
            memcpy(d, s, len);
        d += len;
        *d++ = '"';
        return d;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = u[i];

        if (wire_enc_json_extra[c] == 0) {
            *d++ = (char)c;
            continue;
        }
        *d++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *d++ = (char)c;
            break;
        case '\b':
            *d++ = 'b';
            break;
        case '\t':
            *d++ = 't';
            break;
        case '\n':
            *d++ = 'n';
            break;
        case '\f':
            *d++ = 'f';
            break;
        case '\r':
            *d++ = 'r';
            break;
        default:
            *d++ = 'u';
            *d++ = '0';
            *d++ = '0';
            *d++ = hex[c >> 4];
            *d++ = hex[c & 15];
        }
    }
    *d++ = '"';
    return d;
}

static size_t wire_enc_json_extra_of(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t extra = 0;

    for (size_t i = 0; i < len; i++)
        extra += wire_enc_json_extra[u[i]];
    return extra;
}

int shoal__json_write_string(shoal_buf_t *out, const char *s, size_t len)
{
    size_t extra = wire_enc_json_extra_of(s, len);
    char *end;
    int err;

    if (len > SIZE_MAX / 8)
        return SHOAL_ENOMEM;
    err = shoal_buf_reserve(out, len + extra + 2);
    if (err)
        return err;
    end = wire_enc_json_str_at(out->base + out->len, s, len, extra);
    out->len = (size_t)(end - out->base);
    return 0;
}

/* Writes the decimal digits of v at d (room for 20); returns their end.
 * Two digits a step: this runs for the id of every JSON message. */
static char *wire_enc_u64_at(char *d, uint64_t v)
{
    static const char pairs[] = "00010203040506070809"
                                "10111213141516171819"
                                "20212223242526272829"
                                "30313233343536373839"
                                "40414243444546474849"
                                "50515253545556575859"
                                "60616263646566676869"
                                "70717273747576777879"
                                "80818283848586878889"
                                "90919293949596979899";
    char tmp[20];
    char *end = tmp + sizeof(tmp), *q = end;

    while (v >= 100) {
        q -= 2;
        memcpy(q, pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) {
        q -= 2;
        memcpy(q, pairs + 2 * v, 2);
    } else {
        *--q = (char)('0' + v);
    }
    memcpy(d, q, (size_t)(end - q));
    return d + (end - q);
}

/* Writes v in decimal at d (room for 20); returns its end. */
static char *wire_enc_int_at(char *d, int64_t v)
{
    if (v >= 0)
        return wire_enc_u64_at(d, (uint64_t)v);
    *d++ = '-';
    return wire_enc_u64_at(d, 0 - (uint64_t)v);
}

/* The type as a string: the enum's name, or for a type this version does
 * not know, the name it arrived with (forwarding a newer peer's message). */
static int wire_enc_type(const shoal_envelope_t *env, const char **s,
                         size_t *len)
{
    const char *name = shoal_msg_type_name(env->type);

    if (name != NULL) {
        *s = name;
        *len = strlen(name);
        return 0;
    }
    if (env->type_name.present) {
        *s = env->type_name.s;
        *len = env->type_name.len;
        return 0;
    }
    return SHOAL_EINVAL;
}

/* Turns the raw line breaks of a JSON text into spaces. Valid JSON has
 * them only as whitespace (never raw inside a string), and in NDJSON a raw
 * one would end the line early. */
static void wire_enc_unbreak(char *p, size_t len)
{
    char *end = p + len, *q;

    if (len < 64) {
        for (; p < end; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        return;
    }
    for (q = p; (q = memchr(q, '\n', (size_t)(end - q))) != NULL;)
        *q++ = ' ';
    for (q = p; (q = memchr(q, '\r', (size_t)(end - q))) != NULL;)
        *q++ = ' ';
}

/* Bytes a payload adds in a JSON frame, beyond what transcoding reserves
 * for itself: ,"key": and a JSON payload's own text. */
static size_t wire_enc_json_payload_need(const shoal_envelope_t *env,
                                         size_t from)
{
    size_t need = 0;

    for (size_t i = from; i < WIRE_ENC_COUNT(wire_enc_payloads); i++) {
        const shoal_payload_t *pl = wire_enc_payload(env, i);

        if (pl->data == NULL)
            continue;
        need += wire_enc_payloads[i].key_len + 4;
        if (pl->codec == SHOAL_CODEC_JSON)
            need += pl->len;
    }
    return need + 2; /* "}\n" */
}

/* Appends env as one JSON object, and a newline when ndjson. A single
 * reservation covers the header at its longest (every byte of a name
 * escaped as \u00XX) and the payloads already in JSON, so most frames are
 * written with no further checks. */
static int wire_enc_json(const shoal_envelope_t *env, bool ndjson,
                         shoal_buf_t *buf)
{
    const char *ts;
    size_t tlen, need;
    char *d;
    int err;

    err = wire_enc_type(env, &ts, &tlen);
    if (err)
        return err;
    need = sizeof("{\"type\":\"\",\"id\":") + 6 * tlen + 20;
    for (size_t i = 0; i < WIRE_ENC_COUNT(wire_enc_names); i++)
        need += wire_enc_names[i].key_len + 6 +
                6 * (size_t)wire_enc_name(env, i)->len;
    need += wire_enc_json_payload_need(env, 0);
    err = shoal_buf_reserve(buf, need);
    if (err)
        return err;
    d = buf->base + buf->len;
    memcpy(d, "{\"type\":", 8);
    d = wire_enc_json_str_at(d + 8, ts, tlen,
                             wire_enc_json_extra_of(ts, tlen));
    if (env->has_id) {
        memcpy(d, ",\"id\":", 6);
        d = wire_enc_int_at(d + 6, env->id);
    }
    for (size_t i = 0; i < WIRE_ENC_COUNT(wire_enc_names); i++) {
        const shoal_name_t *name = wire_enc_name(env, i);

        if (!name->present)
            continue;
        *d++ = ',';
        *d++ = '"';
        memcpy(d, wire_enc_names[i].key, wire_enc_names[i].key_len);
        d += wire_enc_names[i].key_len;
        *d++ = '"';
        *d++ = ':';
        d = wire_enc_json_str_at(d, name->s, name->len,
                                 wire_enc_json_extra_of(name->s, name->len));
    }

    for (size_t i = 0; i < WIRE_ENC_COUNT(wire_enc_payloads); i++) {
        const shoal_payload_t *pl = wire_enc_payload(env, i);
        size_t klen = wire_enc_payloads[i].key_len;

        if (pl->data == NULL)
            continue;
        *d++ = ',';
        *d++ = '"';
        memcpy(d, wire_enc_payloads[i].key, klen);
        d += klen;
        *d++ = '"';
        *d++ = ':';
        switch (pl->codec) {
        case SHOAL_CODEC_JSON:
            if (pl->len == 0)
                return SHOAL_EINVAL;
            memcpy(d, pl->data, pl->len);
            if (ndjson)
                wire_enc_unbreak(d, pl->len);
            d += pl->len;
            break;
        case SHOAL_CODEC_MSGPACK:
            /* The transcoder appends (and may move the buffer): hand it
             * the length so far, then reserve again for the rest. */
            buf->len = (size_t)(d - buf->base);
            err = shoal__msgpack_to_json(pl->data, pl->len, buf);
            if (err == 0)
                err = shoal_buf_reserve(
                    buf, wire_enc_json_payload_need(env, i + 1));
            if (err)
                return err;
            d = buf->base + buf->len;
            break;
        default:
            return SHOAL_EINVAL;
        }
    }
    *d++ = '}';
    if (ndjson)
        *d++ = '\n';
    buf->len = (size_t)(d - buf->base);
    return 0;
}

/* Puts "<length>#" in front of the body that starts at start. */
static int wire_enc_prefix(shoal_buf_t *buf, size_t start)
{
    char tmp[SHOAL_MAX_LENGTH_DIGITS + 1];
    size_t body = buf->len - start, n;
    int err;

    n = (size_t)(wire_enc_u64_at(tmp, body) - tmp);
    tmp[n++] = '#';
    err = shoal_buf_reserve(buf, n);
    if (err)
        return err;
    memmove(buf->base + start + n, buf->base + start, body);
    memcpy(buf->base + start, tmp, n);
    buf->len += n;
    return 0;
}

/* ---- MessagePack ----------------------------------------------------- */

static unsigned char *wire_enc_be(unsigned char *d, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        *d++ = (unsigned char)(v >> (8 * i));
    return d;
}

/* Writes a str header for len bytes at d (room for 5); returns its end. */
static unsigned char *wire_enc_mp_str_head(unsigned char *d, size_t len)
{
    if (len <= 31) {
        *d++ = (unsigned char)(0xa0 | len);
        return d;
    }
    if (len <= 0xff) {
        *d++ = 0xd9;
        return wire_enc_be(d, len, 1);
    }
    if (len <= 0xffff) {
        *d++ = 0xda;
        return wire_enc_be(d, len, 2);
    }
    *d++ = 0xdb;
    return wire_enc_be(d, len, 4);
}

static unsigned char *wire_enc_mp_str(unsigned char *d, const char *s,
                                      size_t len)
{
    d = wire_enc_mp_str_head(d, len);
    if (len > 0)
        memcpy(d, s, len);
    return d + len;
}

/* Appends a short str: a key. */
static int wire_enc_mp_key(shoal_buf_t *buf, const char *key, size_t len)
{
    unsigned char tmp[8];

    return shoal_buf_append(buf, tmp,
                            (size_t)(wire_enc_mp_str(tmp, key, len) - tmp));
}

/* Writes v in its smallest MessagePack form at d (room for 9). */
static unsigned char *wire_enc_mp_int(unsigned char *d, int64_t v)
{
    if (v >= 0) {
        if (v <= 0x7f) {
            *d++ = (unsigned char)v;
            return d;
        }
        if (v <= 0xff) {
            *d++ = 0xcc;
            return wire_enc_be(d, (uint64_t)v, 1);
        }
        if (v <= 0xffff) {
            *d++ = 0xcd;
            return wire_enc_be(d, (uint64_t)v, 2);
        }
        if (v <= 0xffffffff) {
            *d++ = 0xce;
            return wire_enc_be(d, (uint64_t)v, 4);
        }
        *d++ = 0xcf;
        return wire_enc_be(d, (uint64_t)v, 8);
    }
    if (v >= -32) {
        *d++ = (unsigned char)(0x100 + v);
        return d;
    }
    if (v >= INT8_MIN) {
        *d++ = 0xd0;
        return wire_enc_be(d, (uint64_t)v, 1);
    }
    if (v >= INT16_MIN) {
        *d++ = 0xd1;
        return wire_enc_be(d, (uint64_t)v, 2);
    }
    if (v >= INT32_MIN) {
        *d++ = 0xd2;
        return wire_enc_be(d, (uint64_t)v, 4);
    }
    *d++ = 0xd3;
    return wire_enc_be(d, (uint64_t)v, 8);
}

/* Bytes the payloads from index `from` on add in a MessagePack frame,
 * beyond what transcoding reserves for itself; counts them into *count. */
static size_t wire_enc_mp_payload_need(const shoal_envelope_t *env,
                                       size_t from, size_t *count)
{
    size_t need = 0;

    for (size_t i = from; i < WIRE_ENC_COUNT(wire_enc_payloads); i++) {
        const shoal_payload_t *pl = wire_enc_payload(env, i);

        if (pl->data == NULL)
            continue;
        *count += 1;
        need += 1 + wire_enc_payloads[i].key_len;
        if (pl->codec == SHOAL_CODEC_MSGPACK)
            need += pl->len;
    }
    return need;
}

/* Appends env as one map; like wire_enc_json, one reservation covers all
 * but transcoded payloads. */
static int wire_enc_msgpack(const shoal_envelope_t *env, shoal_buf_t *buf)
{
    const char *ts;
    size_t tlen, need, fields = 1, more = 0;
    unsigned char *d;
    int err;

    err = wire_enc_type(env, &ts, &tlen);
    if (err)
        return err;
    need = 1 + 5 + 2 + tlen + 3 + 9;
    fields += env->has_id;
    for (size_t i = 0; i < WIRE_ENC_COUNT(wire_enc_names); i++) {
        const shoal_name_t *name = wire_enc_name(env, i);

        fields += name->present;
        need += 1 + wire_enc_names[i].key_len + 2 + name->len;
    }
    need += wire_enc_mp_payload_need(env, 0, &fields);
    err = shoal_buf_reserve(buf, need);
    if (err)
        return err;
    d = (unsigned char *)buf->base + buf->len;
    /* At most 13 fields: the map header is always a fixmap. */
    *d++ = (unsigned char)(0x80 | fields);
    d = wire_enc_mp_str(d, "type", 4);
    d = wire_enc_mp_str(d, ts, tlen);
    if (env->has_id) {
        d = wire_enc_mp_str(d, "id", 2);
        d = wire_enc_mp_int(d, env->id);
    }
    for (size_t i = 0; i < WIRE_ENC_COUNT(wire_enc_names); i++) {
        const shoal_name_t *name = wire_enc_name(env, i);

        if (!name->present)
            continue;
        d = wire_enc_mp_str(d, wire_enc_names[i].key,
                            wire_enc_names[i].key_len);
        d = wire_enc_mp_str(d, name->s, name->len);
    }

    for (size_t i = 0; i < WIRE_ENC_COUNT(wire_enc_payloads); i++) {
        const shoal_payload_t *pl = wire_enc_payload(env, i);

        if (pl->data == NULL)
            continue;
        d = wire_enc_mp_str(d, wire_enc_payloads[i].key,
                            wire_enc_payloads[i].key_len);
        switch (pl->codec) {
        case SHOAL_CODEC_MSGPACK:
            if (pl->len == 0)
                return SHOAL_EINVAL;
            memcpy(d, pl->data, pl->len);
            d += pl->len;
            break;
        case SHOAL_CODEC_JSON:
            buf->len = (size_t)((char *)d - buf->base);
            err = shoal__json_to_msgpack(pl->data, pl->len, buf);
            if (err == 0)
                err = shoal_buf_reserve(
                    buf, wire_enc_mp_payload_need(env, i + 1, &more));
            if (err)
                return err;
            d = (unsigned char *)buf->base + buf->len;
            break;
        default:
            return SHOAL_EINVAL;
        }
    }
    buf->len = (size_t)((char *)d - buf->base);
    return 0;
}

/* ---- public encoders ------------------------------------------------- */

int shoal_wire_encode(shoal_framing_t framing, const shoal_envelope_t *env,
                      shoal_buf_t *buf)
{
    size_t start = buf->len;
    int err;

    switch (framing) {
    case SHOAL_FRAMING_NDJSON:
        err = wire_enc_json(env, true, buf);
        break;
    case SHOAL_FRAMING_JSONSOCKET:
        err = wire_enc_json(env, false, buf);
        if (err == 0)
            err = wire_enc_prefix(buf, start);
        break;
    case SHOAL_FRAMING_MSGPACK:
        err = wire_enc_msgpack(env, buf);
        break;
    default:
        err = SHOAL_EBADFRAMING;
    }
    if (err)
        buf->len = start;
    return err;
}

int shoal_wire_transcode(const shoal_payload_t *in, shoal_codec_t to,
                         shoal_buf_t *buf)
{
    size_t start = buf->len;
    int err;

    if (in == NULL || in->data == NULL)
        return SHOAL_EINVAL;
    if (in->codec == to &&
        (to == SHOAL_CODEC_JSON || to == SHOAL_CODEC_MSGPACK))
        err = shoal_buf_append(buf, in->data, in->len);
    else if (in->codec == SHOAL_CODEC_JSON && to == SHOAL_CODEC_MSGPACK)
        err = shoal__json_to_msgpack(in->data, in->len, buf);
    else if (in->codec == SHOAL_CODEC_MSGPACK && to == SHOAL_CODEC_JSON)
        err = shoal__msgpack_to_json(in->data, in->len, buf);
    else
        err = SHOAL_EINVAL;
    if (err)
        buf->len = start;
    return err;
}

/* ---- error values ---------------------------------------------------- */

/* Appends s[0, len) to out with every byte that does not start valid UTF-8
 * replaced by U+FFFD. */
static int wire_enc_utf8_clean(shoal_buf_t *out, const char *s, size_t len)
{
    size_t bad;
    int err = 0;

    while (err == 0 && len > 0) {
        if (shoal__utf8_valid(s, len, &bad))
            return shoal_buf_append(out, s, len);
        err = shoal_buf_append(out, s, bad);
        if (err == 0)
            err = shoal_buf_append(out, "\xef\xbf\xbd", 3);
        s += bad + 1;
        len -= bad + 1;
    }
    return err;
}

/* Appends one error-value string in codec, made valid UTF-8 first. */
static int wire_enc_error_str(shoal_codec_t codec, const char *s,
                              shoal_buf_t *buf)
{
    shoal_buf_t clean;
    size_t len = strlen(s);
    unsigned char head[5];
    int err = 0;

    shoal_buf_init(&clean);
    if (!shoal__utf8_valid(s, len, NULL)) {
        err = wire_enc_utf8_clean(&clean, s, len);
        s = clean.base;
        len = clean.len;
    }
    if (err == 0 && codec == SHOAL_CODEC_JSON)
        err = shoal__json_write_string(buf, s, len);
    if (err == 0 && codec == SHOAL_CODEC_MSGPACK) {
        if (len > UINT32_MAX)
            err = SHOAL_ENOMEM;
        else
            err = shoal_buf_append(
                buf, head, (size_t)(wire_enc_mp_str_head(head, len) - head));
        if (err == 0)
            err = shoal_buf_append(buf, s, len);
    }
    shoal_buf_free(&clean);
    return err;
}

int shoal_wire_encode_error(shoal_codec_t codec, const char *code,
                            const char *message, shoal_buf_t *buf)
{
    size_t start = buf->len;
    int err;

    if (code == NULL)
        code = "EUNKNOWN";
    if (message == NULL)
        message = "";
    switch (codec) {
    case SHOAL_CODEC_JSON:
        err = shoal_buf_append(buf, "{\"code\":", 8);
        if (err == 0)
            err = wire_enc_error_str(codec, code, buf);
        if (err == 0)
            err = shoal_buf_append(buf, ",\"message\":", 11);
        if (err == 0)
            err = wire_enc_error_str(codec, message, buf);
        if (err == 0)
            err = shoal_buf_append(buf, "}", 1);
        break;
    case SHOAL_CODEC_MSGPACK:
        err = shoal_buf_append(buf, "\x82", 1);
        if (err == 0)
            err = wire_enc_mp_key(buf, "code", 4);
        if (err == 0)
            err = wire_enc_error_str(codec, code, buf);
        if (err == 0)
            err = wire_enc_mp_key(buf, "message", 7);
        if (err == 0)
            err = wire_enc_error_str(codec, message, buf);
        break;
    default:
        err = SHOAL_EINVAL;
    }
    if (err)
        buf->len = start;
    return err;
}

/* Copies s into d[0, cap) NUL-terminated, cut at a UTF-8 character
 * boundary when it does not fit. Returns the bytes copied. */
static size_t wire_enc_copy_text(char *d, size_t cap, const char *s)
{
    size_t n = strlen(s);

    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return n;
}

int shoal_wire_decode_error(const shoal_payload_t *err, shoal_name_t *name,
                            char *msg, size_t msg_len)
{
    cJSON *json, *code, *text;
    int rc = SHOAL_EBADMSG;

    if (msg != NULL && msg_len > 0)
        msg[0] = '\0';
    if (name != NULL) {
        name->present = false;
        name->len = 0;
        name->s[0] = '\0';
    }
    json = shoal_payload_to_cjson(err);
    if (!cJSON_IsObject(json))
        goto done;
    code = cJSON_GetObjectItemCaseSensitive(json, "code");
    text = cJSON_GetObjectItemCaseSensitive(json, "message");
    /* A missing message is tolerated; a missing code is not. */
    if (!cJSON_IsString(code) || (text != NULL && !cJSON_IsString(text)))
        goto done;
    rc = shoal_err_from_name(code->valuestring, strlen(code->valuestring));
    if (name != NULL) {
        name->len = (uint8_t)wire_enc_copy_text(name->s, sizeof(name->s),
                                                code->valuestring);
        name->present = true;
    }
    if (text != NULL && msg != NULL && msg_len > 0)
        wire_enc_copy_text(msg, msg_len, text->valuestring);
done:
    cJSON_Delete(json);
    return rc;
}

/* ---- cJSON -> either codec ------------------------------------------- */

/* Numbers: cJSON keeps a double. An integral one within int64 is written
 * as an integer, anything else as a float; NaN and infinities have no
 * JSON form and are refused. */
static bool wire_enc_integral(double d, int64_t *out)
{
    if (!(d >= -0x1p63 && d < 0x1p63))
        return false;
    *out = (int64_t)d;
    return (double)*out == d;
}

static int wire_enc_cjson_number(double d, shoal_buf_t *buf)
{
    char tmp[40];
    int64_t i;
    int n;

    if (!isfinite(d))
        return SHOAL_EBADTYPE;
    if (wire_enc_integral(d, &i)) {
        n = (int)(wire_enc_int_at(tmp, i) - tmp);
    } else {
        n = snprintf(tmp, sizeof(tmp), "%.17g", d);
        if (n < 0 || (size_t)n >= sizeof(tmp))
            return SHOAL_EBADTYPE;
        /* A locale with a decimal comma must not leak into JSON. */
        for (int k = 0; k < n; k++)
            if (tmp[k] == ',')
                tmp[k] = '.';
    }
    return shoal_buf_append(buf, tmp, (size_t)n);
}

/* A string cJSON holds: valid UTF-8 or refused. */
static int wire_enc_cjson_text(const char *s, size_t *len)
{
    if (s == NULL)
        return SHOAL_EINVAL;
    *len = strlen(s);
    return shoal__utf8_valid(s, *len, NULL) ? 0 : SHOAL_EBADUTF8;
}

static int wire_enc_cjson_json(const cJSON *item, shoal_buf_t *buf,
                               unsigned depth)
{
    const cJSON *child;
    size_t len;
    int err;

    switch (item->type & 0xff) {
    case cJSON_NULL:
        return shoal_buf_append(buf, "null", 4);
    case cJSON_True:
        return shoal_buf_append(buf, "true", 4);
    case cJSON_False:
        return shoal_buf_append(buf, "false", 5);
    case cJSON_Number:
        return wire_enc_cjson_number(item->valuedouble, buf);
    case cJSON_String:
        err = wire_enc_cjson_text(item->valuestring, &len);
        return err ? err
                   : shoal__json_write_string(buf, item->valuestring, len);
    case cJSON_Raw:
        /* cJSON's contract for Raw: text already in JSON form. */
        if (item->valuestring == NULL)
            return SHOAL_EINVAL;
        return shoal_buf_append(buf, item->valuestring,
                                strlen(item->valuestring));
    case cJSON_Array:
    case cJSON_Object:
        if (depth >= SHOAL_MAX_DEPTH_CAP)
            return SHOAL_ETOODEEP;
        err = shoal_buf_append(buf, item->type & cJSON_Array ? "[" : "{", 1);
        for (child = item->child; err == 0 && child; child = child->next) {
            if (child != item->child)
                err = shoal_buf_append(buf, ",", 1);
            if (err == 0 && (item->type & cJSON_Object)) {
                err = wire_enc_cjson_text(child->string, &len);
                if (err == 0)
                    err = shoal__json_write_string(buf, child->string, len);
                if (err == 0)
                    err = shoal_buf_append(buf, ":", 1);
            }
            if (err == 0)
                err = wire_enc_cjson_json(child, buf, depth + 1);
        }
        if (err == 0)
            err =
                shoal_buf_append(buf, item->type & cJSON_Array ? "]" : "}", 1);
        return err;
    default:
        return SHOAL_EINVAL;
    }
}

static int wire_enc_pack_write(void *data, const char *bytes, size_t len)
{
    return shoal_buf_append(data, bytes, len) == 0 ? 0 : -1;
}

/* Packs item with msgpack-c. The packer reports only that a write failed,
 * and a write fails only for want of memory. */
static int wire_enc_cjson_mp(const cJSON *item, msgpack_packer *pk,
                             unsigned depth)
{
    const cJSON *child;
    size_t len, n = 0;
    int64_t i;
    int err;

    switch (item->type & 0xff) {
    case cJSON_NULL:
        return msgpack_pack_nil(pk) ? SHOAL_ENOMEM : 0;
    case cJSON_True:
        return msgpack_pack_true(pk) ? SHOAL_ENOMEM : 0;
    case cJSON_False:
        return msgpack_pack_false(pk) ? SHOAL_ENOMEM : 0;
    case cJSON_Number:
        if (!isfinite(item->valuedouble))
            return SHOAL_EBADTYPE;
        if (wire_enc_integral(item->valuedouble, &i))
            return msgpack_pack_int64(pk, i) ? SHOAL_ENOMEM : 0;
        return msgpack_pack_double(pk, item->valuedouble) ? SHOAL_ENOMEM : 0;
    case cJSON_String:
        err = wire_enc_cjson_text(item->valuestring, &len);
        if (err)
            return err;
        if (msgpack_pack_str(pk, len) ||
            msgpack_pack_str_body(pk, item->valuestring, len))
            return SHOAL_ENOMEM;
        return 0;
    case cJSON_Array:
    case cJSON_Object:
        if (depth >= SHOAL_MAX_DEPTH_CAP)
            return SHOAL_ETOODEEP;
        for (child = item->child; child; child = child->next)
            n++;
        if (item->type & cJSON_Array)
            err = msgpack_pack_array(pk, n) ? SHOAL_ENOMEM : 0;
        else
            err = msgpack_pack_map(pk, n) ? SHOAL_ENOMEM : 0;
        for (child = item->child; err == 0 && child; child = child->next) {
            if (item->type & cJSON_Object) {
                err = wire_enc_cjson_text(child->string, &len);
                if (err)
                    return err;
                if (msgpack_pack_str(pk, len) ||
                    msgpack_pack_str_body(pk, child->string, len))
                    return SHOAL_ENOMEM;
            }
            err = wire_enc_cjson_mp(child, pk, depth + 1);
        }
        return err;
    default:
        /* Raw included: its text cannot be checked to be one value. */
        return SHOAL_EBADTYPE;
    }
}

int shoal_payload_from_cjson(const cJSON *json, shoal_codec_t codec,
                             shoal_buf_t *buf)
{
    size_t start = buf->len;
    msgpack_packer pk;
    int err;

    if (json == NULL)
        return SHOAL_EINVAL;
    switch (codec) {
    case SHOAL_CODEC_JSON:
        err = wire_enc_cjson_json(json, buf, 0);
        break;
    case SHOAL_CODEC_MSGPACK:
        msgpack_packer_init(&pk, buf, wire_enc_pack_write);
        err = wire_enc_cjson_mp(json, &pk, 0);
        break;
    default:
        err = SHOAL_EINVAL;
    }
    if (err)
        buf->len = start;
    return err;
}
