/* Tests for framing: detection, the three cutters and their limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <msgpack.h>

#include "guard.h"
#include "shoal/wire.h"
#include "wire_internal.h"

/*
 * Every cutter test goes through feed(): it hands the cutter a growing
 * buffer the way conn does (bytes arrive in chunks, cut frames are dropped
 * from the front), and each time moves the unconsumed bytes so that they
 * end right before a PROT_NONE page. A cutter that reads one byte past the
 * length it was given crashes the test.
 *
 * No test here has a .timeout: with tests running in parallel, Criterion
 * 2.4.1 leaks a timeout record per test in its runner, which fails the
 * LeakSanitizer build. These tests only compute; the program's CTest
 * TIMEOUT bounds them.
 */

#define MAX_FRAMES 64

typedef struct {
    size_t off[MAX_FRAMES]; /* of each frame body in the input */
    size_t len[MAX_FRAMES];
    size_t n;
    size_t consumed; /* bytes of the input taken by whole frames */
    int err;         /* the first negative result, or 0 */
    size_t err_at;   /* bytes received when err came */
} cut_result_t;

/* A region whose last page is PROT_NONE. */
typedef struct {
    char *map;
    size_t map_len;
    char *end; /* first byte of the guard page */
} stream_t;

static void stream_init(stream_t *s, size_t cap)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (cap + page - 1) / page + 1;

    s->map_len = pages * page;
    s->map = mmap(NULL, s->map_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(s->map, MAP_FAILED);
    s->end = s->map + (pages - 1) * page;
    cr_assert_eq(mprotect(s->end, page, PROT_NONE), 0);
}

static void stream_free(stream_t *s)
{
    munmap(s->map, s->map_len);
}

/* Feeds in[0, n) to the cutter in chunks of the sizes chunks[] gives
 * (nchunks of them; the last chunk takes whatever is left). */
static void feed(shoal_framing_t framing, const char *in, size_t n,
                 const shoal_limits_t *lim, const size_t *chunks,
                 size_t nchunks, cut_result_t *res)
{
    stream_t s;
    shoal_cut_state_t st;
    size_t start = 0, avail = 0;

    memset(res, 0, sizeof(*res));
    stream_init(&s, n + 1);
    shoal_cut_reset(&st);
    for (size_t c = 0; c < nchunks && avail < n; c++) {
        size_t k = c + 1 == nchunks ? n - avail : chunks[c];

        if (k > n - avail)
            k = n - avail;
        avail += k;
        for (;;) {
            size_t have = avail - start;
            char *buf = s.end - have;
            shoal_frame_t fr = {NULL, 0};
            ssize_t r;

            memcpy(buf, in + start, have);
            r = shoal_wire_cut(framing, buf, have, lim, &st, &fr);
            if (r < 0) {
                res->err = (int)r;
                res->err_at = avail;
                goto out;
            }
            if (r == 0)
                break;
            cr_assert_leq((size_t)r, have);
            cr_assert(fr.len == 0 ||
                      (fr.data >= buf && fr.data + fr.len <= buf + (size_t)r));
            cr_assert_lt(res->n, MAX_FRAMES);
            res->off[res->n] = fr.len ? start + (size_t)(fr.data - buf) : 0;
            res->len[res->n] = fr.len;
            res->n++;
            start += (size_t)r;
            res->consumed = start;
        }
    }
out:
    stream_free(&s);
}

static void feed_whole(shoal_framing_t framing, const char *in, size_t n,
                       const shoal_limits_t *lim, cut_result_t *res)
{
    size_t all = n;

    feed(framing, in, n, lim, &all, 1, res);
}

static void assert_same(const cut_result_t *a, const cut_result_t *b,
                        const char *how)
{
    cr_assert_eq(a->n, b->n, "%s: %zu frames, expected %zu", how, a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        cr_assert_eq(a->off[i], b->off[i], "%s: frame %zu offset", how, i);
        cr_assert_eq(a->len[i], b->len[i], "%s: frame %zu length", how, i);
    }
    cr_assert_eq(a->consumed, b->consumed, "%s: consumed", how);
    cr_assert_eq(a->err, b->err, "%s: error %d, expected %d", how, a->err,
                 b->err);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64: reproducible from the seed printed on failure. */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * Checks that every way of splitting in[0, n) gives the result of cutting
 * it whole: one byte at a time, two pieces at every split point, and
 * random chunkings. A stream that fails must fail with the same code
 * after the same frames.
 */
static void check_all_splits(shoal_framing_t framing, const char *in, size_t n,
                             const shoal_limits_t *lim, cut_result_t *whole)
{
    size_t *chunks = calloc(n + 1, sizeof(size_t));
    cut_result_t res;

    cr_assert_not_null(chunks);
    feed_whole(framing, in, n, lim, whole);
    for (size_t i = 0; i < n; i++)
        chunks[i] = 1;
    feed(framing, in, n, lim, chunks, n, &res);
    assert_same(&res, whole, "byte by byte");
    for (size_t k = 1; k < n; k++) {
        size_t two[2] = {k, n - k};
        char how[64];

        snprintf(how, sizeof(how), "split at %zu", k);
        feed(framing, in, n, lim, two, 2, &res);
        assert_same(&res, whole, how);
    }
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint64_t s = seed * 0x9E3779B97F4A7C15ULL;
        size_t m = 0, total = 0;
        char how[64];

        while (total < n) {
            chunks[m] = 1 + rng_next(&s) % (seed % 4 == 0 ? 64 : 7);
            total += chunks[m++];
        }
        snprintf(how, sizeof(how), "random chunks, seed %llu",
                 (unsigned long long)seed);
        feed(framing, in, n, lim, chunks, m + 1, &res);
        assert_same(&res, whole, how);
    }
    free(chunks);
}

/* Cuts a stream that must fail, byte by byte, and returns how many bytes
 * had arrived when it did. */
static size_t fail_at(shoal_framing_t framing, const char *in, size_t n,
                      const shoal_limits_t *lim, int want)
{
    size_t *ones = malloc((n + 1) * sizeof(size_t));
    cut_result_t res;

    cr_assert_not_null(ones);
    for (size_t i = 0; i <= n; i++)
        ones[i] = 1;
    feed(framing, in, n, lim, ones, n, &res);
    free(ones);
    cr_assert_eq(res.err, want, "error %d (%s), expected %d (%s)", res.err,
                 shoal_strerror(res.err), want, shoal_strerror(want));
    return res.err_at;
}

static shoal_limits_t limits(size_t frame, size_t line, unsigned depth)
{
    shoal_limits_t lim;

    lim.max_frame_bytes = frame;
    lim.max_line_bytes = line;
    lim.max_depth = depth;
    return lim;
}

/* ---- detection ------------------------------------------------------ */

Test(wire_cut, first_byte_selects_the_framing)
{
    static const struct {
        unsigned char c;
        shoal_framing_t f;
    } cases[] = {
        {'{', SHOAL_FRAMING_NDJSON},     {' ', SHOAL_FRAMING_NDJSON},
        {'\t', SHOAL_FRAMING_NDJSON},    {'\n', SHOAL_FRAMING_NDJSON},
        {'\r', SHOAL_FRAMING_NDJSON},    {'0', SHOAL_FRAMING_JSONSOCKET},
        {'9', SHOAL_FRAMING_JSONSOCKET}, {0x80, SHOAL_FRAMING_MSGPACK},
        {0x83, SHOAL_FRAMING_MSGPACK},   {0x8f, SHOAL_FRAMING_MSGPACK},
        {0xde, SHOAL_FRAMING_MSGPACK},   {0xdf, SHOAL_FRAMING_MSGPACK},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        guard_buf_t g;
        shoal_framing_t f = SHOAL_FRAMING_UNKNOWN;

        cr_assert_eq(guard_buf_init(&g, &cases[i].c, 1), 0);
        cr_assert_eq(shoal_wire_detect(g.data, 1, &f), 1, "0x%02x",
                     cases[i].c);
        cr_assert_eq(f, cases[i].f, "0x%02x", cases[i].c);
        guard_buf_free(&g);
    }
}

Test(wire_cut, unknown_first_bytes_are_refused)
{
    static const unsigned char bad[] = {'[',  '"',  'a',  '#',  '-',  0x00,
                                        0x7f, 0x90, 0x9f, 0xc0, 0xc1, 0xdc,
                                        0xdd, 0xe0, 0xff, 0xa0};

    for (size_t i = 0; i < sizeof(bad); i++) {
        guard_buf_t g;
        shoal_framing_t f = SHOAL_FRAMING_UNKNOWN;

        cr_assert_eq(guard_buf_init(&g, &bad[i], 1), 0);
        cr_assert_eq(shoal_wire_detect(g.data, 1, &f), SHOAL_EBADFRAMING,
                     "0x%02x", bad[i]);
        guard_buf_free(&g);
    }
}

Test(wire_cut, detection_waits_for_a_first_byte)
{
    shoal_framing_t f = SHOAL_FRAMING_UNKNOWN;

    cr_assert_eq(shoal_wire_detect("", 0, &f), 0);
    cr_assert_eq(f, SHOAL_FRAMING_UNKNOWN);
}

Test(wire_cut, unknown_framing_cannot_be_cut)
{
    shoal_cut_state_t st;
    shoal_frame_t fr;

    shoal_cut_reset(&st);
    cr_assert_eq(
        shoal_wire_cut(SHOAL_FRAMING_UNKNOWN, "{}\n", 3, NULL, &st, &fr),
        SHOAL_EBADFRAMING);
}

/* ---- NDJSON --------------------------------------------------------- */

Test(wire_cut, ndjson_frame_is_cut_at_every_split_point)
{
    static const char in[] = "{\"type\":\"tell\",\"app\":\"sum\",\"msg\":"
                             "[1,2,3]}\n";
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_NDJSON, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.off[0], 0);
    cr_assert_eq(r.len[0], sizeof(in) - 2);
    cr_assert_eq(r.consumed, sizeof(in) - 1);
    cr_assert_eq(r.err, 0);
}

Test(wire_cut, ndjson_crlf_is_one_line_ending)
{
    static const char in[] = "{\"type\":\"tell\"}\r\n{\"type\":\"call\"}\n";
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_NDJSON, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.len[0], 15);
    cr_assert_eq(r.off[1], 17);
    cr_assert_eq(r.len[1], 15);
    cr_assert_eq(r.consumed, sizeof(in) - 1);
}

Test(wire_cut, ndjson_blank_lines_are_frames_of_length_zero)
{
    static const char in[] = "\n{\"type\":\"a\"}\n \t \r\n\r\n  {\"x\":1}\n";
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_NDJSON, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.n, 5);
    cr_assert_eq(r.len[0], 0);
    cr_assert_eq(r.off[1], 1);
    cr_assert_eq(r.len[1], 12);
    cr_assert_eq(r.len[2], 0);
    cr_assert_eq(r.len[3], 0);
    /* Leading whitespace stays in the frame: JSON allows it. */
    cr_assert_eq(r.off[4], 21);
    cr_assert_eq(r.len[4], 9);
}

Test(wire_cut, ndjson_partial_line_is_not_a_frame)
{
    static const char in[] = "{\"type\":\"tell\"}\n{\"type\":";
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_NDJSON, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.consumed, 16);
    cr_assert_eq(r.err, 0);
}

Test(wire_cut, ndjson_search_resumes_where_it_stopped)
{
    static const char in[] = "{\"type\":\"tell\",\"app\":\"x\"}\n";
    shoal_cut_state_t st;
    shoal_frame_t fr;

    shoal_cut_reset(&st);
    for (size_t len = 1; len < sizeof(in) - 1; len++) {
        cr_assert_eq(
            shoal_wire_cut(SHOAL_FRAMING_NDJSON, in, len, NULL, &st, &fr), 0);
        cr_assert_eq(st.scanned, len);
    }
    cr_assert_eq(shoal_wire_cut(SHOAL_FRAMING_NDJSON, in, sizeof(in) - 1, NULL,
                                &st, &fr),
                 (ssize_t)sizeof(in) - 1);
    cr_assert_eq(st.scanned, 0);
}

Test(wire_cut, ndjson_line_at_the_limit_passes_and_one_more_fails)
{
    shoal_limits_t lim = limits(1000, 10, 64);
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_NDJSON, "0123456789\n", 11, &lim, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.len[0], 10);
    check_all_splits(SHOAL_FRAMING_NDJSON, "0123456789\r\n", 12, &lim, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.len[0], 10);
    check_all_splits(SHOAL_FRAMING_NDJSON, "0123456789A\n", 12, &lim, &r);
    cr_assert_eq(r.err, SHOAL_ETOOBIG);
    check_all_splits(SHOAL_FRAMING_NDJSON, "0123456789A\r\n", 13, &lim, &r);
    cr_assert_eq(r.err, SHOAL_ETOOBIG);
}

Test(wire_cut, ndjson_long_line_fails_as_soon_as_it_passes_the_limit)
{
    shoal_limits_t lim = limits(1000, 10, 64);

    /* The 11th byte settles it; no need to wait for a newline. */
    cr_assert_eq(fail_at(SHOAL_FRAMING_NDJSON, "0123456789ABCDEF", 16, &lim,
                         SHOAL_ETOOBIG),
                 11);
    /* A '\r' in 11th place may still be the start of "\r\n". */
    cr_assert_eq(fail_at(SHOAL_FRAMING_NDJSON, "0123456789\rX", 12, &lim,
                         SHOAL_ETOOBIG),
                 12);
}

Test(wire_cut, ndjson_frame_limit_also_bounds_a_line)
{
    shoal_limits_t lim = limits(10, 1000, 64);
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_NDJSON, "0123456789\n", 11, &lim, &r);
    cr_assert_eq(r.n, 1);
    check_all_splits(SHOAL_FRAMING_NDJSON, "0123456789A\n", 12, &lim, &r);
    cr_assert_eq(r.err, SHOAL_ETOOBIG);
}

Test(wire_cut, ndjson_second_frame_is_limited_on_its_own)
{
    shoal_limits_t lim = limits(1000, 10, 64);
    cut_result_t r;

    /* Two lines of 10 bytes: 22 bytes in the buffer, neither too long. */
    check_all_splits(SHOAL_FRAMING_NDJSON, "0123456789\nabcdefghij\n", 22,
                     &lim, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.err, 0);
}

/* ---- json-socket ---------------------------------------------------- */

Test(wire_cut, jsonsocket_frame_is_cut_at_every_split_point)
{
    static const char in[] = "15#{\"type\":\"tell\"}";
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_JSONSOCKET, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.off[0], 3);
    cr_assert_eq(r.len[0], 15);
    cr_assert_eq(r.consumed, 18);
}

Test(wire_cut, jsonsocket_length_counts_utf8_bytes)
{
    /* "é" is two bytes: json-socket's Buffer.byteLength counts 26. */
    static const char body[] = "{\"type\":\"tell\",\"msg\":\"\xc3\xa9\"}";
    char in[128];
    int n;
    cut_result_t r;

    cr_assert_eq(strlen(body), 26);
    n = snprintf(in, sizeof(in), "%zu#%s%zu#%s", strlen(body), body,
                 strlen(body), body);
    check_all_splits(SHOAL_FRAMING_JSONSOCKET, in, (size_t)n, NULL, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.off[0], 3);
    cr_assert_eq(r.len[0], 26);
    cr_assert_eq(r.off[1], 32);
    cr_assert_eq(r.len[1], 26);
    cr_assert_eq(memcmp(in + r.off[1], body, 26), 0);
    cr_assert_eq(r.consumed, (size_t)n);
}

Test(wire_cut, jsonsocket_frames_back_to_back_with_a_partial_one)
{
    static const char in[] = "2#{}10#{\"a\":\"bc\"}3#[1";
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_JSONSOCKET, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.len[0], 2);
    cr_assert_eq(r.off[1], 7);
    cr_assert_eq(r.len[1], 10);
    cr_assert_eq(r.consumed, 17);
    cr_assert_eq(r.err, 0);
}

Test(wire_cut, jsonsocket_bad_prefixes_are_refused)
{
    static const struct {
        const char *in;
        int err;
        size_t at; /* bytes received when it fails */
    } cases[] = {
        {"#{}", SHOAL_EBADLENGTH, 1},
        {"0#", SHOAL_EBADLENGTH, 2},
        {"00#{}", SHOAL_EBADLENGTH, 3},
        {"1x#{}", SHOAL_EBADLENGTH, 2},
        {"1 #{}", SHOAL_EBADLENGTH, 2},
        {"-1#{}", SHOAL_EBADLENGTH, 1},
        {"+1#{}", SHOAL_EBADLENGTH, 1},
        {"{\"a\":1}", SHOAL_EBADLENGTH, 1},
        {"2#{}x#", SHOAL_EBADLENGTH, 5},
        /* 21 digits, all but one zeros: too long a prefix, whatever its
         * value. */
        {"000000000000000000001#x", SHOAL_EBADLENGTH, 21},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].in);
        cut_result_t r;

        check_all_splits(SHOAL_FRAMING_JSONSOCKET, cases[i].in, n, NULL, &r);
        cr_assert_eq(r.err, cases[i].err, "%s: %d", cases[i].in, r.err);
        cr_assert_eq(fail_at(SHOAL_FRAMING_JSONSOCKET, cases[i].in, n, NULL,
                             cases[i].err),
                     cases[i].at, "%s", cases[i].in);
    }
}

Test(wire_cut, jsonsocket_prefix_of_twenty_digits_is_accepted)
{
    static const char in[] = "00000000000000000002#{}";
    cut_result_t r;

    feed_whole(SHOAL_FRAMING_JSONSOCKET, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.off[0], 21);
    cr_assert_eq(r.len[0], 2);
}

Test(wire_cut, jsonsocket_length_at_the_limit_passes_and_one_more_fails)
{
    shoal_limits_t lim = limits(12, 1000, 64);
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_JSONSOCKET, "12#{\"a\":\"bcde\"}", 15, &lim,
                     &r);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.len[0], 12);
    /* Known from the prefix alone: the body never needs to arrive. */
    cr_assert_eq(fail_at(SHOAL_FRAMING_JSONSOCKET, "13#{\"a\":\"bcdef\"}", 16,
                         &lim, SHOAL_ETOOBIG),
                 2);
    cr_assert_eq(
        fail_at(SHOAL_FRAMING_JSONSOCKET, "120#", 4, &lim, SHOAL_ETOOBIG), 3);
}

Test(wire_cut, jsonsocket_huge_length_fails_before_it_overflows)
{
    static const char in[] = "99999999999999999999#";

    /* Default limit of 16 MiB (8 digits): 99999999 already passes it. */
    cr_assert_eq(fail_at(SHOAL_FRAMING_JSONSOCKET, in, sizeof(in) - 1, NULL,
                         SHOAL_ETOOBIG),
                 8);
    {
        shoal_limits_t lim = limits(SIZE_MAX, SIZE_MAX, 64);

        cr_assert_eq(fail_at(SHOAL_FRAMING_JSONSOCKET, in, sizeof(in) - 1,
                             &lim, SHOAL_ETOOBIG),
                     20);
    }
}

/* ---- MessagePack ---------------------------------------------------- */

/* {"type":"tell","app":"sum","msg":[1,2,3]} */
static const char mp_small[] = "\x83\xa4type\xa4tell\xa3"
                               "app\xa3sum\xa3msg\x93\x01\x02\x03";

/* A map holding every MessagePack type, each encoding the cutter must size:
 * lengths in 1, 2 and 4 bytes, bodies after them. */
static const unsigned char mp_every[] = {
    0xde, 0x00, 0x0e,                                   /* map16, 14 pairs */
    0xa1, 'a',  0xc0,                                   /* nil */
    0xa1, 'b',  0x92, 0xc2, 0xc3,                       /* [false, true] */
    0xa1, 'c',  0x93, 0x7f, 0xe0, 0xcc, 0xff,           /* fixints, uint8 */
    0xa1, 'd',  0xdc, 0x00, 0x03,                       /* array16 */
    0xcd, 0x01, 0x00,                                   /* uint16 */
    0xce, 0,    0,    1,    0,                          /* uint32 */
    0xcf, 0,    0,    0,    0,    0,    0,    1,  0,    /* uint64 */
    0xa1, 'e',  0xdd, 0,    0,    0,    4,              /* array32 */
    0xd0, 0x80, 0xd1, 0x80, 0x00,                       /* int8, int16 */
    0xd2, 0x80, 0,    0,    0,                          /* int32 */
    0xd3, 0x80, 0,    0,    0,    0,    0,    0,  0,    /* int64 */
    0xa1, 'f',  0x92, 0xca, 0x3f, 0x80, 0,    0,        /* float32 */
    0xcb, 0x3f, 0xf0, 0,    0,    0,    0,    0,  0,    /* float64 */
    0xa1, 'g',  0x93, 0xd9, 0x02, 'h',  'i',            /* str8 */
    0xda, 0x00, 0x01, 'j',                              /* str16 */
    0xdb, 0,    0,    0,    0x02, 'k',  'l',            /* str32 */
    0xa1, 'h',  0x93, 0xc4, 0x01, 0xaa,                 /* bin8 */
    0xc5, 0x00, 0x02, 0xbb, 0xcc,                       /* bin16 */
    0xc6, 0,    0,    0,    0,                          /* bin32, empty */
    0xa1, 'i',  0x95, 0xd4, 0x01, 0x11,                 /* fixext1 */
    0xd5, 0x01, 0x11, 0x22,                             /* fixext2 */
    0xd6, 0x01, 1,    2,    3,    4,                    /* fixext4 */
    0xd7, 0x01, 1,    2,    3,    4,    5,    6,  7, 8, /* fixext8 */
    0xd8, 0x01, 1,    2,    3,    4,    5,    6,  7, 8, /* fixext16 */
    9,    10,   11,   12,   13,   14,   15,   16,       /* */
    0xa1, 'j',  0x93, 0xc7, 0x01, 0x05, 0xee,           /* ext8 */
    0xc8, 0x00, 0x02, 0x05, 0xee, 0xef,                 /* ext16 */
    0xc9, 0,    0,    0,    0x01, 0x05, 0xee,           /* ext32 */
    0xa1, 'k',  0x80,                                   /* {} */
    0xa1, 'l',  0x90,                                   /* [] */
    0xa1, 'm',  0xdf, 0,    0,    0,    1,              /* map32 */
    0xa0, 0x81, 0xa0, 0x91, 0xa0,                       /* {"": {"": [""]}} */
    0xa1, 'n',  0xa0,                                   /* "" */
};

Test(wire_cut, msgpack_frame_is_cut_at_every_split_point)
{
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_MSGPACK, mp_small, sizeof(mp_small) - 1,
                     NULL, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.off[0], 0);
    cr_assert_eq(r.len[0], sizeof(mp_small) - 1);
}

Test(wire_cut, msgpack_every_type_is_sized_correctly)
{
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_MSGPACK, (const char *)mp_every,
                     sizeof(mp_every), NULL, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.len[0], sizeof(mp_every));
}

Test(wire_cut, msgpack_cutter_agrees_with_msgpack_c)
{
    msgpack_unpacked u;
    size_t off = 0;

    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, (const char *)mp_every,
                                     sizeof(mp_every), &off),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, sizeof(mp_every));
    cr_assert_eq(u.data.type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(u.data.via.map.size, 14);
    msgpack_unpacked_destroy(&u);
}

Test(wire_cut, msgpack_frames_back_to_back_with_a_partial_one)
{
    char in[512];
    size_t n = 0;
    cut_result_t r;

    memcpy(in + n, mp_small, sizeof(mp_small) - 1);
    n += sizeof(mp_small) - 1;
    memcpy(in + n, mp_every, sizeof(mp_every));
    n += sizeof(mp_every);
    in[n++] = (char)0x80; /* {} */
    memcpy(in + n, mp_small, 10);
    n += 10;
    check_all_splits(SHOAL_FRAMING_MSGPACK, in, n, NULL, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.off[1], sizeof(mp_small) - 1);
    cr_assert_eq(r.len[1], sizeof(mp_every));
    cr_assert_eq(r.len[2], 1);
    cr_assert_eq(r.consumed, n - 10);
}

Test(wire_cut, msgpack_top_level_that_is_not_a_map_is_still_cut)
{
    /* Decoding refuses it (ENOTMAP); cutting it keeps the stream in step. */
    static const char in[] = "\x93\x01\x02\x03\xa1x\x80";
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_MSGPACK, in, sizeof(in) - 1, NULL, &r);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.len[0], 4);
    cr_assert_eq(r.len[1], 2);
    cr_assert_eq(r.len[2], 1);
}

Test(wire_cut, msgpack_never_used_byte_is_refused)
{
    static const char in[] = "\x82\xa1x\x01\xa1y\xc1\x00";

    cr_assert_eq(
        fail_at(SHOAL_FRAMING_MSGPACK, in, 8, NULL, SHOAL_EBADMSGPACK), 7);
    cr_assert_eq(
        fail_at(SHOAL_FRAMING_MSGPACK, "\xc1", 1, NULL, SHOAL_EBADMSGPACK), 1);
}

/* Builds [[[...[]...]]] as depth nested fixarrays inside a map: the map
 * counts as level 1, so the innermost array is at depth + 1. */
static size_t mp_nested(char *out, unsigned depth)
{
    size_t n = 0;

    out[n++] = (char)0x81;
    out[n++] = (char)0xa1;
    out[n++] = 'k';
    for (unsigned i = 0; i < depth; i++)
        out[n++] = (char)(i + 1 < depth ? 0x91 : 0x90);
    return n;
}

Test(wire_cut, msgpack_depth_at_the_limit_passes_and_one_more_fails)
{
    shoal_limits_t lim = limits(1000, 1000, 4);
    char in[600];
    size_t n;
    cut_result_t r;

    n = mp_nested(in, 3); /* the map and three arrays: depth 4 */
    check_all_splits(SHOAL_FRAMING_MSGPACK, in, n, &lim, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    n = mp_nested(in, 4); /* depth 5, the last array empty */
    check_all_splits(SHOAL_FRAMING_MSGPACK, in, n, &lim, &r);
    cr_assert_eq(r.err, SHOAL_ETOODEEP);
    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, in, n, &lim, SHOAL_ETOODEEP),
                 n);
}

Test(wire_cut, msgpack_depth_limit_never_passes_the_cap)
{
    shoal_limits_t lim = limits(100000, 1000, 100000);
    char in[600];
    size_t n;
    cut_result_t r;

    n = mp_nested(in, SHOAL_MAX_DEPTH_CAP - 1);
    feed_whole(SHOAL_FRAMING_MSGPACK, in, n, &lim, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.n, 1);
    n = mp_nested(in, SHOAL_MAX_DEPTH_CAP);
    feed_whole(SHOAL_FRAMING_MSGPACK, in, n, &lim, &r);
    cr_assert_eq(r.err, SHOAL_ETOODEEP);
}

Test(wire_cut, msgpack_default_depth_is_64)
{
    char in[600];
    size_t n;
    cut_result_t r;

    n = mp_nested(in, SHOAL_DEFAULT_MAX_DEPTH - 1);
    check_all_splits(SHOAL_FRAMING_MSGPACK, in, n, NULL, &r);
    cr_assert_eq(r.err, 0);
    n = mp_nested(in, SHOAL_DEFAULT_MAX_DEPTH);
    check_all_splits(SHOAL_FRAMING_MSGPACK, in, n, NULL, &r);
    cr_assert_eq(r.err, SHOAL_ETOODEEP);
}

Test(wire_cut, msgpack_frame_at_the_limit_passes_and_one_more_fails)
{
    /* {"k": "abcdef"}: 1 + 2 + 7 = 10 bytes. */
    static const char ten[] = "\x81\xa1k\xa6"
                              "abcdef";
    static const char eleven[] = "\x81\xa1k\xa7"
                                 "abcdefg";
    static const char ten_nums[] = "\x81\xa1k\x96\x01\x02\x03\x04\x05\x06";
    static const char eleven_nums[] = "\x81\xa1k\x97\x01\x02\x03\x04\x05"
                                      "\x06\x07";
    shoal_limits_t lim = limits(10, 1000, 64);
    cut_result_t r;

    check_all_splits(SHOAL_FRAMING_MSGPACK, ten, 10, &lim, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.len[0], 10);
    check_all_splits(SHOAL_FRAMING_MSGPACK, ten_nums, 10, &lim, &r);
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.len[0], 10);
    /* Both known too big from the header of their last item. */
    cr_assert_eq(
        fail_at(SHOAL_FRAMING_MSGPACK, eleven, 11, &lim, SHOAL_ETOOBIG), 4);
    cr_assert_eq(
        fail_at(SHOAL_FRAMING_MSGPACK, eleven_nums, 11, &lim, SHOAL_ETOOBIG),
        4);
}

Test(wire_cut, msgpack_frame_limit_counts_scalars_too)
{
    /* {"k": uint64}: the 9-byte header alone passes a limit of 11. */
    static const char in[] = "\x81\xa1k\xcf\x00\x00\x00\x00\x00\x00\x00\x01";
    shoal_limits_t lim = limits(11, 1000, 64);

    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, in, 12, &lim, SHOAL_ETOOBIG),
                 4);
    lim.max_frame_bytes = 12;
    {
        cut_result_t r;

        check_all_splits(SHOAL_FRAMING_MSGPACK, in, 12, &lim, &r);
        cr_assert_eq(r.err, 0);
        cr_assert_eq(r.n, 1);
    }
}

Test(wire_cut, msgpack_huge_announced_length_fails_at_its_header)
{
    /* str32 of 256 MiB against the 16 MiB default: known after 8 bytes. */
    static const char str[] = "\x81\xa1k\xdb\x10\x00\x00\x00"
                              "abc";
    /* bin32, ext32, array32 and map32 likewise. */
    static const char bin[] = "\x81\xa1k\xc6\x10\x00\x00\x00"
                              "abc";
    static const char ext[] = "\x81\xa1k\xc9\x10\x00\x00\x00\x01"
                              "abc";
    static const char arr[] = "\x81\xa1k\xdd\x10\x00\x00\x00\x01";
    static const char map[] = "\xdf\x08\x00\x00\x01\xa1k";
    static const char map_max[] = "\xdf\xff\xff\xff\xff\xa1k";

    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, str, sizeof(str) - 1, NULL,
                         SHOAL_ETOOBIG),
                 8);
    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, bin, sizeof(bin) - 1, NULL,
                         SHOAL_ETOOBIG),
                 8);
    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, ext, sizeof(ext) - 1, NULL,
                         SHOAL_ETOOBIG),
                 9);
    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, arr, sizeof(arr) - 1, NULL,
                         SHOAL_ETOOBIG),
                 8);
    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, map, sizeof(map) - 1, NULL,
                         SHOAL_ETOOBIG),
                 5);
    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, map_max, sizeof(map_max) - 1,
                         NULL, SHOAL_ETOOBIG),
                 5);
}

Test(wire_cut, msgpack_map32_too_many_items_to_count_is_too_big)
{
    /* 2^32 - 1 pairs are 2^33 - 2 items: more than a level can count. */
    static const char in[] = "\xdf\xff\xff\xff\xff\xa1k";
    shoal_limits_t lim = limits(SIZE_MAX, SIZE_MAX, 64);

    cr_assert_eq(fail_at(SHOAL_FRAMING_MSGPACK, in, sizeof(in) - 1, &lim,
                         SHOAL_ETOOBIG),
                 5);
}

Test(wire_cut, msgpack_big_string_in_pieces_is_scanned_once)
{
    /* {"k": str32 of 16 MiB - 8 bytes}, exactly the default limit, arriving
     * in 64 KiB pieces. The cutter must skip the body, not scan it: after
     * each piece it has examined exactly what arrived. */
    size_t body = SHOAL_DEFAULT_MAX_FRAME_BYTES - 8;
    size_t total = body + 8;
    char *in = malloc(total);
    shoal_cut_state_t st;
    shoal_frame_t fr;
    size_t len = 0;
    ssize_t r = 0;

    cr_assert_not_null(in);
    memcpy(in, "\x81\xa1k\xdb", 4);
    in[4] = (char)(body >> 24);
    in[5] = (char)(body >> 16);
    in[6] = (char)(body >> 8);
    in[7] = (char)body;
    memset(in + 8, 'x', body);
    shoal_cut_reset(&st);
    while (len < total) {
        len += 65536;
        if (len > total)
            len = total;
        r = shoal_wire_cut(SHOAL_FRAMING_MSGPACK, in, len, NULL, &st, &fr);
        if (len < total) {
            cr_assert_eq(r, 0);
            cr_assert_eq(st.scanned, len);
            cr_assert_eq(st.skip, total - len);
        }
    }
    cr_assert_eq(r, (ssize_t)total);
    cr_assert_eq(fr.len, total);
    /* One byte more is over the limit, and known from the header. */
    in[7] = (char)(body + 1);
    shoal_cut_reset(&st);
    cr_assert_eq(shoal_wire_cut(SHOAL_FRAMING_MSGPACK, in, 8, NULL, &st, &fr),
                 SHOAL_ETOOBIG);
    free(in);
}

Test(wire_cut, cut_state_is_reset_between_frames)
{
    char in[64];
    size_t n = sizeof(mp_small) - 1;
    shoal_cut_state_t st;
    shoal_frame_t fr;

    /* Garbage in the state is harmless once reset. */
    memset(&st, 0xab, sizeof(st));
    shoal_cut_reset(&st);
    memcpy(in, mp_small, n);
    memcpy(in + n, mp_small, n);
    cr_assert_eq(
        shoal_wire_cut(SHOAL_FRAMING_MSGPACK, in, 2 * n, NULL, &st, &fr),
        (ssize_t)n);
    cr_assert_eq(st.scanned, 0);
    cr_assert_eq(st.depth, 0);
    cr_assert_eq(st.skip, 0);
    cr_assert_eq(
        shoal_wire_cut(SHOAL_FRAMING_MSGPACK, in + n, n, NULL, &st, &fr),
        (ssize_t)n);
}

/* ---- tables and small functions --------------------------------------- */

Test(wire_cut, limits_default_to_the_documented_values)
{
    shoal_limits_t lim;

    memset(&lim, 0xff, sizeof(lim));
    shoal_limits_default(&lim);
    cr_assert_eq(lim.max_frame_bytes, (size_t)16 << 20);
    cr_assert_eq(lim.max_line_bytes, (size_t)16 << 20);
    cr_assert_eq(lim.max_depth, 64);
}

Test(wire_cut, framing_names_round_trip)
{
    shoal_framing_t f;

    cr_assert_str_eq(shoal_framing_name(SHOAL_FRAMING_NDJSON), "ndjson");
    cr_assert_str_eq(shoal_framing_name(SHOAL_FRAMING_JSONSOCKET),
                     "json-socket");
    cr_assert_str_eq(shoal_framing_name(SHOAL_FRAMING_MSGPACK), "msgpack");
    cr_assert_str_eq(shoal_framing_name(SHOAL_FRAMING_UNKNOWN), "unknown");
    cr_assert_str_eq(shoal_framing_name((shoal_framing_t)42), "unknown");
    cr_assert_eq(shoal_framing_parse("ndjson", &f), 0);
    cr_assert_eq(f, SHOAL_FRAMING_NDJSON);
    cr_assert_eq(shoal_framing_parse("json-socket", &f), 0);
    cr_assert_eq(f, SHOAL_FRAMING_JSONSOCKET);
    cr_assert_eq(shoal_framing_parse("jsonsocket", &f), 0);
    cr_assert_eq(f, SHOAL_FRAMING_JSONSOCKET);
    cr_assert_eq(shoal_framing_parse("msgpack", &f), 0);
    cr_assert_eq(f, SHOAL_FRAMING_MSGPACK);
    cr_assert_eq(shoal_framing_parse("unknown", &f), SHOAL_EINVAL);
    cr_assert_eq(shoal_framing_parse("NDJSON", &f), SHOAL_EINVAL);
    cr_assert_eq(shoal_framing_parse("", &f), SHOAL_EINVAL);
    cr_assert_eq(shoal_framing_parse(NULL, &f), SHOAL_EINVAL);
}

Test(wire_cut, framings_map_to_their_codecs)
{
    cr_assert_eq(shoal_framing_codec(SHOAL_FRAMING_NDJSON), SHOAL_CODEC_JSON);
    cr_assert_eq(shoal_framing_codec(SHOAL_FRAMING_JSONSOCKET),
                 SHOAL_CODEC_JSON);
    cr_assert_eq(shoal_framing_codec(SHOAL_FRAMING_MSGPACK),
                 SHOAL_CODEC_MSGPACK);
    cr_assert_eq(shoal_framing_codec(SHOAL_FRAMING_UNKNOWN), SHOAL_CODEC_NONE);
}

Test(wire_cut, message_type_names_round_trip)
{
    static const char *names[] = {"hello", "describe", "tell", "call",
                                  "reply", "event",    "error"};

    for (int t = SHOAL_MSG_HELLO; t <= SHOAL_MSG_ERROR; t++) {
        const char *name = names[t - SHOAL_MSG_HELLO];

        cr_assert_str_eq(shoal_msg_type_name((shoal_msg_type_t)t), name);
        cr_assert_eq((int)shoal__msg_type_parse(name, strlen(name)), t);
    }
    cr_assert_null(shoal_msg_type_name(SHOAL_MSG_UNKNOWN));
    cr_assert_null(shoal_msg_type_name((shoal_msg_type_t)99));
    cr_assert_eq(shoal__msg_type_parse("", 0), SHOAL_MSG_UNKNOWN);
    cr_assert_eq(shoal__msg_type_parse("tel", 3), SHOAL_MSG_UNKNOWN);
    cr_assert_eq(shoal__msg_type_parse("tells", 5), SHOAL_MSG_UNKNOWN);
    cr_assert_eq(shoal__msg_type_parse("Tell", 4), SHOAL_MSG_UNKNOWN);
    cr_assert_eq(shoal__msg_type_parse("eXXor", 5), SHOAL_MSG_UNKNOWN);
    cr_assert_eq(shoal__msg_type_parse("describX", 8), SHOAL_MSG_UNKNOWN);
    /* Compared by length: a NUL inside does not end the name. */
    cr_assert_eq(shoal__msg_type_parse("call\0", 5), SHOAL_MSG_UNKNOWN);
}

Test(wire_cut, envelope_init_marks_every_field_absent)
{
    shoal_envelope_t env;
    shoal_name_t *names[] = {&env.type_name, &env.app, &env.action,
                             &env.event,     &env.to,  &env.from};
    shoal_payload_t *pls[] = {&env.args,  &env.msg,  &env.result,
                              &env.error, &env.data, &env.node};

    memset(&env, 0x5a, sizeof(env));
    shoal_envelope_init(&env);
    cr_assert_eq(env.type, SHOAL_MSG_UNKNOWN);
    cr_assert_not(env.has_id);
    for (size_t i = 0; i < 6; i++) {
        cr_assert_not(names[i]->present);
        cr_assert_eq(names[i]->len, 0);
        cr_assert_str_eq(names[i]->s, "");
        cr_assert_null(pls[i]->data);
        cr_assert_eq(pls[i]->len, 0);
    }
}

Test(wire_cut, decode_dispatches_on_the_codec)
{
    static const char json[] = "{\"type\":\"tell\"}";
    shoal_envelope_t env;

    cr_assert_eq(shoal_wire_decode(SHOAL_CODEC_JSON, json, sizeof(json) - 1,
                                   NULL, &env, NULL, 0),
                 0);
    cr_assert_eq(env.type, SHOAL_MSG_TELL);
    cr_assert_eq(shoal_wire_decode(SHOAL_CODEC_MSGPACK, mp_small,
                                   sizeof(mp_small) - 1, NULL, &env, NULL, 0),
                 0);
    cr_assert_eq(env.type, SHOAL_MSG_TELL);
    cr_assert_eq(shoal_wire_decode(SHOAL_CODEC_NONE, json, sizeof(json) - 1,
                                   NULL, &env, NULL, 0),
                 SHOAL_EINVAL);
}

Test(wire_cut, cut_msgpack_that_is_not_a_map_fails_to_decode)
{
    static const char in[] = "\x93\x01\x02\x03";
    shoal_cut_state_t st;
    shoal_frame_t fr;
    shoal_envelope_t env;

    shoal_cut_reset(&st);
    cr_assert_eq(shoal_wire_cut(SHOAL_FRAMING_MSGPACK, in, 4, NULL, &st, &fr),
                 4);
    cr_assert_eq(shoal_wire_decode(SHOAL_CODEC_MSGPACK, fr.data, fr.len, NULL,
                                   &env, NULL, 0),
                 SHOAL_ENOTMAP);
}
