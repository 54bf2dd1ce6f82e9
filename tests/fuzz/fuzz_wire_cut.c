/* libFuzzer target: the three cutters, whole and in pieces, must agree. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "shoal/wire.h"

/*
 * Input: two control bytes, then the stream. The first picks the framing
 * and which limits are small, the second sizes them and seeds the
 * chunking. The stream is cut once whole and once as a growing buffer fed
 * in pseudo-random pieces; both must give the same frames and the same
 * error. Every buffer handed to the cutter is a fresh allocation of exactly
 * its length, so ASan catches any read past it.
 */

#define FUZZ_MAX_FRAMES 4096

/* A finding, not an error path: stop so that libFuzzer records it. */
#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond))                                                          \
            abort();                                                          \
    } while (0)

typedef struct {
    size_t off[FUZZ_MAX_FRAMES];
    size_t len[FUZZ_MAX_FRAMES];
    size_t n;
    size_t consumed;
    int err;
} fuzz_cuts_t;

static uint32_t fuzz_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* What a frame the cutter returned must satisfy, whatever the input. */
static void fuzz_check_frame(shoal_framing_t framing, const char *buf,
                             ssize_t r, const shoal_frame_t *fr,
                             const shoal_limits_t *lim)
{
    size_t used = (size_t)r;

    FUZZ_CHECK(fr->len <= lim->max_frame_bytes);
    if (fr->len > 0)
        FUZZ_CHECK(fr->data >= buf && fr->data + fr->len <= buf + used);
    switch (framing) {
    case SHOAL_FRAMING_NDJSON:
        FUZZ_CHECK(fr->len <= lim->max_line_bytes);
        FUZZ_CHECK(buf[used - 1] == '\n');
        FUZZ_CHECK(memchr(buf, '\n', used - 1) == NULL);
        if (fr->len > 0)
            FUZZ_CHECK(fr->data == buf &&
                       (fr->len + 1 == used || fr->len + 2 == used));
        break;
    case SHOAL_FRAMING_JSONSOCKET:
        FUZZ_CHECK(fr->len > 0 && fr->data + fr->len == buf + used);
        FUZZ_CHECK(fr->data[-1] == '#');
        break;
    default: {
        /* msgpack-c must read exactly one object there, unless the object
         * nests deeper than its 32 levels (NOMEM_ERROR). */
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpack_return ret;

        FUZZ_CHECK(fr->data == buf && fr->len == used);
        msgpack_unpacked_init(&u);
        ret = msgpack_unpack_next(&u, fr->data, fr->len, &off);
        FUZZ_CHECK(ret == MSGPACK_UNPACK_NOMEM_ERROR ||
                   (ret == MSGPACK_UNPACK_SUCCESS && off == fr->len));
        msgpack_unpacked_destroy(&u);
        break;
    }
    }
}

/* Feeds in[0, n): whole when seed is 0, else in pieces of 1 to 16 bytes. */
static void fuzz_cut(shoal_framing_t framing, const char *in, size_t n,
                     const shoal_limits_t *lim, uint32_t seed,
                     fuzz_cuts_t *out)
{
    shoal_cut_state_t st;
    size_t start = 0, avail = 0;

    out->n = 0;
    out->consumed = 0;
    out->err = 0;
    shoal_cut_reset(&st);
    while (avail < n) {
        avail += seed ? 1 + fuzz_rand(&seed) % 16 : n;
        if (avail > n)
            avail = n;
        for (;;) {
            size_t have = avail - start;
            char *buf = malloc(have ? have : 1);
            shoal_frame_t fr = {NULL, 0};
            ssize_t r;

            FUZZ_CHECK(buf != NULL);
            memcpy(buf, in + start, have);
            r = shoal_wire_cut(framing, buf, have, lim, &st, &fr);
            if (r > 0) {
                FUZZ_CHECK((size_t)r <= have);
                fuzz_check_frame(framing, buf, r, &fr, lim);
                if (out->n < FUZZ_MAX_FRAMES) {
                    out->off[out->n] =
                        fr.len ? start + (size_t)(fr.data - buf) : 0;
                    out->len[out->n] = fr.len;
                }
                out->n++;
                start += (size_t)r;
                out->consumed = start;
            }
            free(buf);
            if (r < 0) {
                out->err = (int)r;
                return;
            }
            if (r == 0)
                break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fuzz_cuts_t whole, pieces;
    shoal_framing_t framing;
    shoal_limits_t lim;
    const char *in;
    size_t n;

    if (size < 2)
        return 0;
    framing = (shoal_framing_t)(SHOAL_FRAMING_NDJSON + data[0] % 3);
    shoal_limits_default(&lim);
    if (data[0] & 0x04)
        lim.max_frame_bytes = 1 + data[1];
    if (data[0] & 0x08)
        lim.max_line_bytes = 1 + data[1] / 2;
    if (data[0] & 0x10)
        lim.max_depth = (data[1] >> 4) & 0x7;
    if (data[0] & 0x20)
        lim.max_depth = 1000; /* above the cap */
    in = (const char *)data + 2;
    n = size - 2;
    fuzz_cut(framing, in, n, &lim, 0, &whole);
    fuzz_cut(framing, in, n, &lim, 0x9e3779b9u ^ data[1] ^ (uint32_t)size,
             &pieces);
    FUZZ_CHECK(whole.n == pieces.n);
    FUZZ_CHECK(whole.consumed == pieces.consumed);
    FUZZ_CHECK(whole.err == pieces.err);
    for (size_t i = 0; i < whole.n && i < FUZZ_MAX_FRAMES; i++)
        FUZZ_CHECK(whole.off[i] == pieces.off[i] &&
                   whole.len[i] == pieces.len[i]);
    switch (whole.err) {
    case 0:
        break;
    case SHOAL_ETOOBIG:
        break;
    case SHOAL_EBADLENGTH:
        FUZZ_CHECK(framing == SHOAL_FRAMING_JSONSOCKET);
        break;
    case SHOAL_EBADMSGPACK:
    case SHOAL_ETOODEEP:
        FUZZ_CHECK(framing == SHOAL_FRAMING_MSGPACK);
        break;
    default:
        FUZZ_CHECK(0);
    }
    return 0;
}
