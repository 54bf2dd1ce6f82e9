/* A small writer of maps and arrays in either codec (payload.c): pure, no
 * libuv, like the rest of the wire layer. */
#ifndef SHOAL_PAYLOAD_INTERNAL_H
#define SHOAL_PAYLOAD_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "shoal/wire.h"

/* ---- a writer of small values (payload.c) ------------------------------ */

#define SHOAL__PW_MAX_DEPTH 8

/* Appends one value to buf in codec. MessagePack needs each container's
 * item count up front (pairs for maps); JSON ignores it and places commas
 * itself. The first error sticks and every later call is a no-op;
 * shoal__pw_finish reports it and restores buf->len. */
typedef struct {
    shoal_buf_t *buf;
    shoal_codec_t codec;
    int err;
    size_t start;
    unsigned depth;
    bool after_key;
    char closer[SHOAL__PW_MAX_DEPTH];
    uint32_t count[SHOAL__PW_MAX_DEPTH];
} shoal__pw_t;

void shoal__pw_init(shoal__pw_t *w, shoal_buf_t *buf, shoal_codec_t codec);
void shoal__pw_map(shoal__pw_t *w, uint32_t pairs);
void shoal__pw_array(shoal__pw_t *w, uint32_t items);
void shoal__pw_end(shoal__pw_t *w);
void shoal__pw_key(shoal__pw_t *w, const char *key);
void shoal__pw_str(shoal__pw_t *w, const char *s, size_t len);
void shoal__pw_cstr(shoal__pw_t *w, const char *s);
void shoal__pw_int(shoal__pw_t *w, int64_t v);
void shoal__pw_bool(shoal__pw_t *w, bool v);
void shoal__pw_null(shoal__pw_t *w);
/* Appends an encoded value, transcoded when its codec differs; absent
 * (NULL or data NULL) writes null. */
void shoal__pw_value(shoal__pw_t *w, const shoal_payload_t *v);
/* Returns 0 and the value written (borrowed from buf, when out is not
 * NULL), or the first error. */
int shoal__pw_finish(shoal__pw_t *w, shoal_payload_t *out);

#endif
