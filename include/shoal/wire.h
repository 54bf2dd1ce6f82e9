/* Bytes <-> messages: framings, envelope codec, limits. Pure functions. */
#ifndef SHOAL_WIRE_H
#define SHOAL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shoal/error.h"

/*
 * The wire layer knows nothing of sockets or event loops. Cutting and
 * decoding functions never allocate and never read past the length they are
 * given; what they output borrows from their input. Encoding functions
 * append to a shoal_buf_t, which is the only thing here that allocates.
 *
 * docs/protocol.md is the contract these functions implement.
 */

/* How frames are delimited on a stream. One port speaks all three; the
 * first byte a peer sends tells which one it uses. */
typedef enum {
    SHOAL_FRAMING_UNKNOWN = 0,
    SHOAL_FRAMING_NDJSON,     /* one JSON object per line, "\n" or "\r\n" */
    SHOAL_FRAMING_JSONSOCKET, /* <UTF-8 byte length>#<JSON object> */
    SHOAL_FRAMING_MSGPACK     /* MessagePack maps back to back */
} shoal_framing_t;

/* How a value is encoded: the two framings of JSON share a codec. */
typedef enum {
    SHOAL_CODEC_NONE = 0,
    SHOAL_CODEC_JSON,
    SHOAL_CODEC_MSGPACK
} shoal_codec_t;

#define SHOAL_DEFAULT_MAX_FRAME_BYTES ((size_t)16 << 20)
#define SHOAL_DEFAULT_MAX_LINE_BYTES ((size_t)16 << 20)
#define SHOAL_DEFAULT_MAX_DEPTH 64
/* The deepest nesting a node can be configured to accept: the cut state
 * keeps one counter per level. */
#define SHOAL_MAX_DEPTH_CAP 256
/* Longest name (application, action, event, node) in bytes, unescaped. */
#define SHOAL_MAX_NAME_BYTES 255
/* Longest json-socket length prefix in digits ("16777216" has 8). */
#define SHOAL_MAX_LENGTH_DIGITS 20

typedef struct {
    size_t max_frame_bytes; /* a frame body, any framing */
    size_t max_line_bytes;  /* an NDJSON line, newline excluded */
    unsigned max_depth;     /* arrays and objects nested, the envelope is 1 */
} shoal_limits_t;

/* Fills limits with the defaults above. */
void shoal_limits_default(shoal_limits_t *limits);

/* A frame body cut from a stream: for NDJSON the line without its line
 * ending, for json-socket the JSON text after '#', for MessagePack the map.
 * Borrowed from the buffer it was cut from. */
typedef struct {
    const char *data;
    size_t len;
} shoal_frame_t;

/* State a cutter keeps between calls on a growing buffer, so that bytes are
 * scanned once however the stream is split. Zero it (shoal_cut_reset) at
 * the start of each frame; the cutters reset it themselves after a cut. */
typedef struct {
    size_t scanned; /* bytes of the current frame already examined */
    size_t need;    /* json-socket: body length once the prefix is read */
    size_t body_at; /* json-socket: offset of the body, after '#' */
    unsigned depth; /* MessagePack: open containers */
    uint32_t pending[SHOAL_MAX_DEPTH_CAP + 1]; /* items left per level */
    uint32_t skip; /* MessagePack: raw bytes left in a str/bin/ext */
} shoal_cut_state_t;

void shoal_cut_reset(shoal_cut_state_t *st);

/* Detects the framing from the first bytes a peer sent: '{' or JSON
 * whitespace means NDJSON, a decimal digit json-socket, a MessagePack map
 * header (0x80-0x8f, 0xde, 0xdf) MessagePack. Returns 1 and sets *out, 0 if
 * len is 0, or SHOAL_EBADFRAMING. */
int shoal_wire_detect(const char *buf, size_t len, shoal_framing_t *out);

/* Cuts one frame off the front of buf[0, len). Returns the bytes the frame
 * occupies including its prefix or line ending (> 0), 0 if buf holds no
 * whole frame yet, or a negative code: SHOAL_ETOOBIG as soon as the frame
 * can only end past its limit, SHOAL_EBADLENGTH for a json-socket prefix
 * that is not a decimal number followed by '#', SHOAL_EBADMSGPACK or
 * SHOAL_ETOODEEP for a MessagePack stream that cannot be cut. st carries
 * progress between calls on the same (growing) buffer.
 *
 * NDJSON: blank lines (only whitespace) are skipped and reported as a frame
 * of length 0 (out->len == 0): the caller drops them. */
ssize_t shoal_wire_cut(shoal_framing_t framing, const char *buf, size_t len,
                       const shoal_limits_t *limits, shoal_cut_state_t *st,
                       shoal_frame_t *out);

/* The codec a framing's bodies use. */
shoal_codec_t shoal_framing_codec(shoal_framing_t framing);

/* The name of a framing: "ndjson", "json-socket", "msgpack", "unknown". */
const char *shoal_framing_name(shoal_framing_t framing);

/* Parses "ndjson", "json-socket" (or "jsonsocket"), "msgpack". Returns 0 or
 * SHOAL_EINVAL. */
int shoal_framing_parse(const char *name, shoal_framing_t *out);

/* ---- values --------------------------------------------------------- */

/* One encoded value (a whole JSON value or MessagePack object), borrowed.
 * data == NULL means absent. */
typedef struct {
    const char *data;
    size_t len;
    shoal_codec_t codec;
} shoal_payload_t;

/* A growable byte buffer. Zero-initialise or shoal_buf_init; free with
 * shoal_buf_free. */
typedef struct {
    char *base;
    size_t len;
    size_t cap;
} shoal_buf_t;

void shoal_buf_init(shoal_buf_t *buf);
void shoal_buf_free(shoal_buf_t *buf);
/* Makes room for at least extra more bytes. Returns 0 or SHOAL_ENOMEM. */
int shoal_buf_reserve(shoal_buf_t *buf, size_t extra);
/* Appends bytes. Returns 0 or SHOAL_ENOMEM (and buf is unchanged). */
int shoal_buf_append(shoal_buf_t *buf, const void *data, size_t len);

/* ---- envelopes ------------------------------------------------------ */

typedef enum {
    SHOAL_MSG_UNKNOWN = 0, /* a "type" this version does not know */
    SHOAL_MSG_HELLO,
    SHOAL_MSG_DESCRIBE,
    SHOAL_MSG_TELL,
    SHOAL_MSG_CALL,
    SHOAL_MSG_REPLY,
    SHOAL_MSG_EVENT,
    SHOAL_MSG_ERROR
} shoal_msg_type_t;

/* "hello", "describe", ...; NULL for SHOAL_MSG_UNKNOWN. */
const char *shoal_msg_type_name(shoal_msg_type_t type);

/* A name field, unescaped: NUL-terminated, len excludes the NUL. An absent
 * field has len 0 and present false. */
typedef struct {
    bool present;
    uint8_t len;
    char s[SHOAL_MAX_NAME_BYTES + 1];
} shoal_name_t;

/*
 * The header fields of one message and its payloads. Every message is an
 * object (JSON) or a map (MessagePack) with string keys; keys not listed
 * here are ignored, so that newer peers can add fields.
 *
 *   type    string, required: hello | describe | tell | call | reply |
 *           event | error
 *   id      integer: calls, describes and their replies
 *   app     string: tell, call
 *   action  string: call
 *   event   string: event
 *   to      string: destination node (absent: whichever node receives it)
 *   from    string: source node
 *   args    any: call arguments
 *   msg     any: tell body
 *   result  any: reply result
 *   error   object {code, message}: reply error, or error message
 *   data    any: event data
 *   node    object: hello's node description
 */
typedef struct {
    shoal_msg_type_t type;
    shoal_name_t type_name; /* as sent, for error messages */
    bool has_id;
    int64_t id;
    shoal_name_t app;
    shoal_name_t action;
    shoal_name_t event;
    shoal_name_t to;
    shoal_name_t from;
    shoal_payload_t args;
    shoal_payload_t msg;
    shoal_payload_t result;
    shoal_payload_t error;
    shoal_payload_t data;
    shoal_payload_t node;
} shoal_envelope_t;

/* Sets every field of env to absent. */
void shoal_envelope_init(shoal_envelope_t *env);

/*
 * Decodes one frame body in the given codec into env. Validates the whole
 * frame: syntax, UTF-8 in every string, nesting up to limits->max_depth.
 * Payload fields borrow from frame. Returns 0 or:
 *   SHOAL_EBADJSON, SHOAL_EBADMSGPACK  syntax (trailing bytes included)
 *   SHOAL_EBADUTF8                     a string is not valid UTF-8
 *   SHOAL_ETOODEEP                     nesting past the limit
 *   SHOAL_ENOTMAP                      the frame is not an object/map
 *   SHOAL_EBADTYPE                     a known field has the wrong type
 *                                      (type/app/... not a string, id not
 *                                      an integer), or a MessagePack key
 *                                      that is not a string
 *   SHOAL_ENAMETOOLONG                 a name longer than 255 bytes
 *   SHOAL_EBADMSG                      "type" is missing
 * When detail is not NULL it receives a short NUL-terminated explanation
 * with the byte offset ("unexpected '}' at byte 17"); detail_len includes
 * room for the NUL.
 */
int shoal_wire_decode(shoal_codec_t codec, const char *frame, size_t len,
                      const shoal_limits_t *limits, shoal_envelope_t *env,
                      char *detail, size_t detail_len);

/*
 * Appends one whole frame (prefix or newline included) carrying env's
 * present fields, in the given framing. Payloads in another codec are
 * transcoded; payloads in the framing's own codec are copied unchanged
 * (for NDJSON, raw line breaks in JSON whitespace become spaces). Fields
 * are written in the order type, id, from, to, app, action, event, then the
 * payloads. Returns 0 or a negative code (SHOAL_ENOMEM, or a transcoding
 * error); on error buf->len is restored.
 */
int shoal_wire_encode(shoal_framing_t framing, const shoal_envelope_t *env,
                      shoal_buf_t *buf);

/* Appends the value in `to` codec. Same codec: copies. JSON -> MessagePack:
 * integers that fit int64/uint64 become integers, other numbers float64.
 * MessagePack -> JSON: floats print with 17 significant digits, NaN and
 * infinities are refused (SHOAL_EBADTYPE), bin and ext are refused.
 * Returns 0 or a negative code; on error buf->len is restored. */
int shoal_wire_transcode(const shoal_payload_t *in, shoal_codec_t to,
                         shoal_buf_t *buf);

/* Appends an error value {"code": name, "message": message} in codec:
 * code is a name such as "ENOAPP" (shoal_err_name), message any UTF-8
 * text (invalid bytes are replaced by U+FFFD). Returns 0 or SHOAL_ENOMEM. */
int shoal_wire_encode_error(shoal_codec_t codec, const char *code,
                            const char *message, shoal_buf_t *buf);

/* Splits an error payload {code, message} into a code (known names map to
 * shoal codes, others to SHOAL_EREMOTE) and a NUL-terminated message copied
 * into msg (truncated to msg_len - 1). The raw code name is copied to
 * name when not NULL. Returns the code, or SHOAL_EBADMSG when the payload is
 * not such an object. */
int shoal_wire_decode_error(const shoal_payload_t *err, shoal_name_t *name,
                            char *msg, size_t msg_len);

/* ---- cJSON bridge --------------------------------------------------- */

typedef struct cJSON cJSON;

/* Builds a cJSON tree from a payload in either codec. Returns NULL on bad
 * input or out of memory. The caller frees it with cJSON_Delete. */
cJSON *shoal_payload_to_cjson(const shoal_payload_t *in);

/* Appends json in the given codec. Returns 0 or a negative code; on error
 * buf->len is restored. */
int shoal_payload_from_cjson(const cJSON *json, shoal_codec_t codec,
                             shoal_buf_t *buf);

/* ---- reading values in place (payload.c) ------------------------------ */

/* What a payload holds. JSON numbers without '.', 'e' or 'E' are INT. */
typedef enum {
    SHOAL_VALUE_NONE = 0, /* absent or not a value */
    SHOAL_VALUE_NULL,
    SHOAL_VALUE_BOOL,
    SHOAL_VALUE_INT,
    SHOAL_VALUE_FLOAT,
    SHOAL_VALUE_STRING,
    SHOAL_VALUE_ARRAY,
    SHOAL_VALUE_OBJECT,
    SHOAL_VALUE_BINARY /* MessagePack bin and ext */
} shoal_value_type_t;

/* The type of the value p holds, from its first byte. */
shoal_value_type_t shoal_payload_type(const shoal_payload_t *p);

/* Walks the members of an object or the items of an array without
 * decoding them: each value comes out as a payload borrowed from the
 * container, in its codec, as the bytes it occupies there. The walk never
 * reads outside the container; malformed input gives an error. */
typedef struct {
    const char *data;
    size_t len;
    shoal_codec_t codec;
    bool object;
    bool done;
    size_t off;
    uint64_t left;  /* MessagePack: items still to come */
    uint64_t count; /* items returned so far */
} shoal_payload_iter_t;

/* Returns 0, SHOAL_EINVAL (absent payload) or SHOAL_EBADTYPE (neither an
 * object nor an array). */
int shoal_payload_iter_init(shoal_payload_iter_t *it,
                            const shoal_payload_t *container);

/* Returns 1 and the next item (key: its key, a string payload, for
 * objects; NULL ok), 0 at the end, or SHOAL_EBADJSON / SHOAL_EBADMSGPACK. */
int shoal_payload_iter_next(shoal_payload_iter_t *it, shoal_payload_t *key,
                            shoal_payload_t *value);

/* Finds key in the object obj and stores its value (borrowed from obj) in
 * out. Returns 0, SHOAL_ENOTFOUND, SHOAL_EBADTYPE (obj is not an object)
 * or a codec error. Linear in the size of obj. */
int shoal_payload_get(const shoal_payload_t *obj, const char *key,
                      shoal_payload_t *out);

/* Copies a string value, unescaped and NUL-terminated, into out. Returns
 * its length, SHOAL_EBADTYPE (not a string), SHOAL_ETOOBIG (it needs more
 * than out_len - 1 bytes) or SHOAL_EBADJSON. */
int shoal_payload_string(const shoal_payload_t *p, char *out, size_t out_len);

/* True when p is a string equal to text. */
bool shoal_payload_string_eq(const shoal_payload_t *p, const char *text);

/* Reads an integer (that fits int64_t) or a boolean. Returns 0 or
 * SHOAL_EBADTYPE. */
int shoal_payload_int(const shoal_payload_t *p, int64_t *out);
int shoal_payload_bool(const shoal_payload_t *p, bool *out);

#endif
