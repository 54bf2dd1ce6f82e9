/* What the wire modules share with each other and nothing else. */
#ifndef SHOAL_WIRE_INTERNAL_H
#define SHOAL_WIRE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "shoal/wire.h"

/* Checks that s[0, len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). On failure stores the offset of the first bad
 * byte in *bad_at when it is not NULL. */
bool shoal__utf8_valid(const char *s, size_t len, size_t *bad_at);

/* Appends the MessagePack form of one JSON value (already validated by
 * shoal_wire_decode or about to be: invalid text gives SHOAL_EBADJSON).
 * Implemented in wire_json.c. */
int shoal__json_to_msgpack(const char *json, size_t len, shoal_buf_t *out);

/* Appends the JSON text of one MessagePack object. Implemented in
 * wire_msgpack.c. */
int shoal__msgpack_to_json(const char *mp, size_t len, shoal_buf_t *out);

/* Appends s[0, len) as a quoted JSON string, escaping what JSON requires.
 * Implemented in wire_encode.c. */
int shoal__json_write_string(shoal_buf_t *out, const char *s, size_t len);

/* JSON decoding, implemented in wire_json.c; same contract as
 * shoal_wire_decode for SHOAL_CODEC_JSON. */
int shoal__json_decode(const char *frame, size_t len,
                       const shoal_limits_t *limits, shoal_envelope_t *env,
                       char *detail, size_t detail_len);

/* MessagePack decoding, implemented in wire_msgpack.c; same contract as
 * shoal_wire_decode for SHOAL_CODEC_MSGPACK. */
int shoal__msgpack_decode(const char *frame, size_t len,
                          const shoal_limits_t *limits, shoal_envelope_t *env,
                          char *detail, size_t detail_len);

/* Maps a "type" string to its enum (SHOAL_MSG_UNKNOWN if not known).
 * Implemented in wire_cut.c. */
shoal_msg_type_t shoal__msg_type_parse(const char *s, size_t len);

#endif
