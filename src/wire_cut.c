/* Framing: detecting and cutting frames, plus the wire's small tables. */
#include <string.h>

#include "wire_internal.h"

/*
 * Every cutter is resumable: st records how far the current frame has been
 * examined, so a frame arriving in many reads costs one pass over its bytes.
 * Cutters read nothing past len and reset st themselves after a cut.
 *
 * A NULL limits pointer means the defaults, so that tools and tests need
 * not build a shoal_limits_t to cut a frame.
 */

void shoal_limits_default(shoal_limits_t *limits)
{
    limits->max_frame_bytes = SHOAL_DEFAULT_MAX_FRAME_BYTES;
    limits->max_line_bytes = SHOAL_DEFAULT_MAX_LINE_BYTES;
    limits->max_depth = SHOAL_DEFAULT_MAX_DEPTH;
}

/* pending[] is left alone: the MessagePack cutter writes a level's counter
 * before it reads it, and clearing 1 KiB per frame would cost more than
 * cutting a small frame. */
void shoal_cut_reset(shoal_cut_state_t *st)
{
    st->scanned = 0;
    st->need = 0;
    st->body_at = 0;
    st->depth = 0;
    st->skip = 0;
}

int shoal_wire_detect(const char *buf, size_t len, shoal_framing_t *out)
{
    unsigned char c;

    if (len == 0)
        return 0;
    c = (unsigned char)buf[0];
    if (c == '{' || c == ' ' || c == '\t' || c == '\n' || c == '\r')
        *out = SHOAL_FRAMING_NDJSON;
    else if (c >= '0' && c <= '9')
        *out = SHOAL_FRAMING_JSONSOCKET;
    else if ((c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf)
        *out = SHOAL_FRAMING_MSGPACK;
    else
        return SHOAL_EBADFRAMING;
    return 1;
}

/* A line is blank when it holds only JSON whitespace ("\r" included, so a
 * stray "\r\r\n" is blank too). Real frames start with '{' at once, so this
 * stops at the first byte of every line that matters. */
static bool wire_line_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

static ssize_t wire_cut_ndjson(const char *buf, size_t len,
                               const shoal_limits_t *limits,
                               shoal_cut_state_t *st, shoal_frame_t *out)
{
    size_t max = limits->max_line_bytes;
    const char *nl;
    size_t line;

    /* A line is also a frame body, so the smaller limit applies. */
    if (limits->max_frame_bytes < max)
        max = limits->max_frame_bytes;
    nl = st->scanned < len ? memchr(buf + st->scanned, '\n', len - st->scanned)
                           : NULL;
    if (nl == NULL) {
        st->scanned = len;
        /* A line of max bytes may still be followed by "\r\n": only a byte
         * past that which is not '\r' makes the line too long for sure. */
        if (len > max && (len - max > 1 || buf[max] != '\r'))
            return SHOAL_ETOOBIG;
        return 0;
    }
    line = (size_t)(nl - buf);
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    if (line > max)
        return SHOAL_ETOOBIG;
    out->data = buf;
    out->len = wire_line_blank(buf, line) ? 0 : line;
    shoal_cut_reset(st);
    return (ssize_t)(nl - buf) + 1;
}

/* json-socket (the npm package): "<UTF-8 byte length>#<JSON>". scanned
 * counts prefix bytes read, need accumulates the length, body_at is set
 * once '#' has been seen. */
static ssize_t wire_cut_jsonsocket(const char *buf, size_t len,
                                   const shoal_limits_t *limits,
                                   shoal_cut_state_t *st, shoal_frame_t *out)
{
    size_t max = limits->max_frame_bytes;
    size_t total;

    while (st->body_at == 0) {
        unsigned d;

        if (st->scanned == len)
            return 0;
        d = (unsigned)(unsigned char)buf[st->scanned] - '0';
        if (d > 9) {
            /* An empty prefix and "0" both leave need at 0. */
            if (buf[st->scanned] != '#' || st->need == 0)
                return SHOAL_EBADLENGTH;
            st->body_at = st->scanned + 1;
            break;
        }
        if (st->scanned == SHOAL_MAX_LENGTH_DIGITS)
            return SHOAL_EBADLENGTH;
        /* Checked before multiplying, so need never overflows. */
        if (d > max || st->need > (max - d) / 10)
            return SHOAL_ETOOBIG;
        st->need = st->need * 10 + d;
        st->scanned++;
    }
    total = st->body_at + st->need;
    if (len < total)
        return 0;
    out->data = buf + st->body_at;
    out->len = st->need;
    shoal_cut_reset(st);
    return (ssize_t)total;
}

/* Reads a big-endian unsigned integer of n (1, 2 or 4) bytes. */
static uint32_t wire_read_be(const unsigned char *p, size_t n)
{
    uint32_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Counts one finished MessagePack item: closes every container it
 * completes. Returns true when that completes the top-level object. */
static bool wire_item_done(shoal_cut_state_t *st)
{
    while (--st->pending[st->depth] == 0) {
        if (st->depth == 0)
            return true;
        st->depth--;
    }
    return false;
}

static ssize_t wire_cut_done(const char *buf, size_t pos,
                             shoal_cut_state_t *st, shoal_frame_t *out)
{
    out->data = buf;
    out->len = pos;
    shoal_cut_reset(st);
    return (ssize_t)pos;
}

/*
 * MessagePack is self-delimiting: the cutter walks the object's structure
 * without decoding values. st->pending[0] counts the one top-level object,
 * st->pending[d] the items (keys and values both count) still to come in
 * the container open at depth d; st->skip the bytes left of a str, bin or
 * ext body that ended the previous buffer. scanned always rests on an item
 * boundary or inside a body, so a header split across reads is read again
 * whole (at most 9 bytes) next time.
 */
static ssize_t wire_cut_msgpack(const char *buf, size_t len,
                                const shoal_limits_t *limits,
                                shoal_cut_state_t *st, shoal_frame_t *out)
{
    /* Bytes after the type byte for 0xc0-0xdf: lengths, counts, values. */
    static const unsigned char field[0x20] = {
        [0x04] = 1, [0x05] = 2, [0x06] = 4,             /* bin 8/16/32 */
        [0x07] = 2, [0x08] = 3, [0x09] = 5,             /* ext: + type */
        [0x0a] = 4, [0x0b] = 8,                         /* float 32/64 */
        [0x0c] = 1, [0x0d] = 2, [0x0e] = 4, [0x0f] = 8, /* uint */
        [0x10] = 1, [0x11] = 2, [0x12] = 4, [0x13] = 8, /* int */
        [0x14] = 1, [0x15] = 1, [0x16] = 1, [0x17] = 1, /* fixext: type */
        [0x18] = 1,                                     /* fixext 16 */
        [0x19] = 1, [0x1a] = 2, [0x1b] = 4,             /* str 8/16/32 */
        [0x1c] = 2, [0x1d] = 4,                         /* array 16/32 */
        [0x1e] = 2, [0x1f] = 4,                         /* map 16/32 */
    };
    const unsigned char *p = (const unsigned char *)buf;
    size_t max = limits->max_frame_bytes;
    unsigned max_depth = limits->max_depth;
    size_t pos = st->scanned;

    if (max_depth > SHOAL_MAX_DEPTH_CAP)
        max_depth = SHOAL_MAX_DEPTH_CAP;
    if (pos == 0) {
        st->depth = 0;
        st->pending[0] = 1;
        st->skip = 0;
    }
    if (st->skip) {
        if (len - pos < st->skip) {
            st->skip -= (uint32_t)(len - pos);
            st->scanned = len;
            return 0;
        }
        pos += st->skip;
        st->skip = 0;
        if (wire_item_done(st))
            return wire_cut_done(buf, pos, st, out);
    }
    while (pos < len) {
        unsigned c = p[pos];
        size_t hs = 1;      /* header bytes, type byte included */
        uint64_t body = 0;  /* raw bytes after the header */
        uint64_t items = 0; /* keys and values of a container */
        bool container = false;

        if (c >= 0xc0 && c <= 0xdf) {
            if (c == 0xc1)
                return SHOAL_EBADMSGPACK; /* never used */
            hs += field[c - 0xc0];
        }
        if (pos + hs > max)
            return SHOAL_ETOOBIG;
        if (len - pos < hs)
            break;
        if (c <= 0x7f || c >= 0xe0) {
            /* fixint */
        } else if (c <= 0x8f) {
            container = true;
            items = 2 * (c & 0x0f);
        } else if (c <= 0x9f) {
            container = true;
            items = c & 0x0f;
        } else if (c <= 0xbf) {
            body = c & 0x1f;
        } else if (c >= 0xc4 && c <= 0xc6) {
            body = wire_read_be(p + pos + 1, hs - 1);
        } else if (c >= 0xc7 && c <= 0xc9) {
            body = wire_read_be(p + pos + 1, hs - 2);
        } else if (c >= 0xd4 && c <= 0xd8) {
            body = (uint64_t)1 << (c - 0xd4);
        } else if (c >= 0xd9 && c <= 0xdb) {
            body = wire_read_be(p + pos + 1, hs - 1);
        } else if (c >= 0xdc) {
            container = true;
            items = wire_read_be(p + pos + 1, hs - 1);
            if (c >= 0xde)
                items *= 2;
        }
        pos += hs;
        if (container) {
            /* Every item takes at least a byte. */
            if (items > max - pos)
                return SHOAL_ETOOBIG;
            if (st->depth >= max_depth)
                return SHOAL_ETOODEEP;
            if (items > 0) {
                if (items > UINT32_MAX)
                    return SHOAL_ETOOBIG;
                st->pending[++st->depth] = (uint32_t)items;
                continue;
            }
        } else if (body > 0) {
            if (body > max - pos)
                return SHOAL_ETOOBIG;
            if (len - pos < body) {
                /* body < 2^32: the widest length field has 4 bytes. */
                st->skip = (uint32_t)(body - (len - pos));
                st->scanned = len;
                return 0;
            }
            pos += (size_t)body;
        }
        if (wire_item_done(st))
            return wire_cut_done(buf, pos, st, out);
    }
    st->scanned = pos;
    return 0;
}

ssize_t shoal_wire_cut(shoal_framing_t framing, const char *buf, size_t len,
                       const shoal_limits_t *limits, shoal_cut_state_t *st,
                       shoal_frame_t *out)
{
    shoal_limits_t defaults;

    if (limits == NULL) {
        shoal_limits_default(&defaults);
        limits = &defaults;
    }
    switch (framing) {
    case SHOAL_FRAMING_NDJSON:
        return wire_cut_ndjson(buf, len, limits, st, out);
    case SHOAL_FRAMING_JSONSOCKET:
        return wire_cut_jsonsocket(buf, len, limits, st, out);
    case SHOAL_FRAMING_MSGPACK:
        return wire_cut_msgpack(buf, len, limits, st, out);
    default:
        return SHOAL_EBADFRAMING;
    }
}

int shoal_wire_decode(shoal_codec_t codec, const char *frame, size_t len,
                      const shoal_limits_t *limits, shoal_envelope_t *env,
                      char *detail, size_t detail_len)
{
    shoal_limits_t defaults;

    if (limits == NULL) {
        shoal_limits_default(&defaults);
        limits = &defaults;
    }
    switch (codec) {
    case SHOAL_CODEC_JSON:
        return shoal__json_decode(frame, len, limits, env, detail, detail_len);
    case SHOAL_CODEC_MSGPACK:
        return shoal__msgpack_decode(frame, len, limits, env, detail,
                                     detail_len);
    default:
        return SHOAL_EINVAL;
    }
}

shoal_codec_t shoal_framing_codec(shoal_framing_t framing)
{
    switch (framing) {
    case SHOAL_FRAMING_NDJSON:
    case SHOAL_FRAMING_JSONSOCKET:
        return SHOAL_CODEC_JSON;
    case SHOAL_FRAMING_MSGPACK:
        return SHOAL_CODEC_MSGPACK;
    default:
        return SHOAL_CODEC_NONE;
    }
}

const char *shoal_framing_name(shoal_framing_t framing)
{
    switch (framing) {
    case SHOAL_FRAMING_NDJSON:
        return "ndjson";
    case SHOAL_FRAMING_JSONSOCKET:
        return "json-socket";
    case SHOAL_FRAMING_MSGPACK:
        return "msgpack";
    default:
        return "unknown";
    }
}

int shoal_framing_parse(const char *name, shoal_framing_t *out)
{
    if (name == NULL)
        return SHOAL_EINVAL;
    if (strcmp(name, "ndjson") == 0)
        *out = SHOAL_FRAMING_NDJSON;
    else if (strcmp(name, "json-socket") == 0 ||
             strcmp(name, "jsonsocket") == 0)
        *out = SHOAL_FRAMING_JSONSOCKET;
    else if (strcmp(name, "msgpack") == 0)
        *out = SHOAL_FRAMING_MSGPACK;
    else
        return SHOAL_EINVAL;
    return 0;
}

/* Indexed by shoal_msg_type_t. */
static const char *const wire_type_names[] = {
    NULL, "hello", "describe", "tell", "call", "reply", "event", "error",
};

const char *shoal_msg_type_name(shoal_msg_type_t type)
{
    if ((unsigned)type >= sizeof(wire_type_names) / sizeof(*wire_type_names))
        return NULL;
    return wire_type_names[type];
}

shoal_msg_type_t shoal__msg_type_parse(const char *s, size_t len)
{
    shoal_msg_type_t t;

    switch (len) {
    case 4:
        t = s[0] == 't' ? SHOAL_MSG_TELL : SHOAL_MSG_CALL;
        break;
    case 5:
        t = s[0] == 'h'   ? SHOAL_MSG_HELLO
            : s[0] == 'r' ? SHOAL_MSG_REPLY
            : s[1] == 'v' ? SHOAL_MSG_EVENT
                          : SHOAL_MSG_ERROR;
        break;
    case 8:
        t = SHOAL_MSG_DESCRIBE;
        break;
    default:
        return SHOAL_MSG_UNKNOWN;
    }
    /* The guess above is the only name of that length that can match. A
     * loop, not memcmp: a library call costs more than these few bytes. */
    for (size_t i = 0; i < len; i++)
        if (wire_type_names[t][i] != s[i])
            return SHOAL_MSG_UNKNOWN;
    return t;
}

static void wire_name_init(shoal_name_t *name)
{
    name->present = false;
    name->len = 0;
    name->s[0] = '\0';
}

static void wire_payload_init(shoal_payload_t *payload)
{
    payload->data = NULL;
    payload->len = 0;
    payload->codec = SHOAL_CODEC_NONE;
}

/* Field by field rather than memset: the names make the envelope 1.6 KiB,
 * and this runs once per message. */
void shoal_envelope_init(shoal_envelope_t *env)
{
    env->type = SHOAL_MSG_UNKNOWN;
    wire_name_init(&env->type_name);
    env->has_id = false;
    env->id = 0;
    wire_name_init(&env->app);
    wire_name_init(&env->action);
    wire_name_init(&env->event);
    wire_name_init(&env->to);
    wire_name_init(&env->from);
    wire_payload_init(&env->args);
    wire_payload_init(&env->msg);
    wire_payload_init(&env->result);
    wire_payload_init(&env->error);
    wire_payload_init(&env->data);
    wire_payload_init(&env->node);
}
