/* Tests for JSON bodies: strict decoding of envelopes, JSON to MessagePack. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <msgpack.h>

#include "guard.h"
#include "shoal/wire.h"
#include "wire_internal.h"

/*
 * Every input is copied to end right before a PROT_NONE page (guard.h), so
 * that a scanner reading one byte past the length it was given crashes.
 *
 * No test here has a .timeout: with tests running in parallel, Criterion
 * 2.4.1 leaks a timeout record per test in its runner, which fails the
 * LeakSanitizer build. These tests only compute; the program's CTest
 * TIMEOUT bounds them.
 */

typedef struct {
    guard_buf_t g;
    shoal_envelope_t env;
    char detail[160];
    int err;
} dec_t;

static int dec_n(dec_t *d, const char *s, size_t n, const shoal_limits_t *lim)
{
    shoal_limits_t defaults;

    if (lim == NULL) {
        shoal_limits_default(&defaults);
        lim = &defaults;
    }
    cr_assert_eq(guard_buf_init(&d->g, s, n), 0);
    d->detail[0] = '\0';
    d->err = shoal__json_decode(d->g.data, n, lim, &d->env, d->detail,
                                sizeof(d->detail));
    return d->err;
}

static int dec(dec_t *d, const char *s)
{
    return dec_n(d, s, strlen(s), NULL);
}

static void dec_free(dec_t *d)
{
    guard_buf_free(&d->g);
}

/* Decodes s and asserts the result code. */
static void expect(const char *s, int want)
{
    dec_t d;

    dec(&d, s);
    cr_assert_eq(d.err, want, "%s: got %d (%s: %s), want %d (%s)", s, d.err,
                 shoal_err_name(d.err), d.detail, want, shoal_err_name(want));
    dec_free(&d);
}

static void expect_lim(const char *s, const shoal_limits_t *lim, int want)
{
    dec_t d;

    dec_n(&d, s, strlen(s), lim);
    cr_assert_eq(d.err, want, "%s: got %d (%s: %s), want %d", s, d.err,
                 shoal_err_name(d.err), d.detail, want);
    dec_free(&d);
}

/* The payload is present, borrowed from the frame, and spells text. */
static void assert_span(const dec_t *d, const shoal_payload_t *pl,
                        const char *text)
{
    cr_assert_not_null(pl->data, "absent, expected %s", text);
    cr_assert_eq(pl->codec, SHOAL_CODEC_JSON);
    cr_assert(pl->data >= d->g.data, "%s", text);
    cr_assert_eq(pl->len, strlen(text), "%.*s vs %s", (int)pl->len, pl->data,
                 text);
    cr_assert_eq(memcmp(pl->data, text, pl->len), 0, "%.*s vs %s",
                 (int)pl->len, pl->data, text);
}

static void assert_name(const shoal_name_t *name, const char *s, size_t n)
{
    cr_assert(name->present);
    cr_assert_eq(name->len, n);
    cr_assert_eq(memcmp(name->s, s, n), 0);
    cr_assert_eq(name->s[n], '\0');
}

/* ---- envelopes ------------------------------------------------------ */

Test(wire_json, small_tell_is_decoded)
{
    dec_t d;

    cr_assert_eq(
        dec(&d, "{\"type\":\"tell\",\"app\":\"sum\",\"msg\":[1,2,3]}"), 0,
        "%s", d.detail);
    cr_assert_eq(d.env.type, SHOAL_MSG_TELL);
    assert_name(&d.env.type_name, "tell", 4);
    assert_name(&d.env.app, "sum", 3);
    assert_span(&d, &d.env.msg, "[1,2,3]");
    cr_assert_not(d.env.has_id);
    cr_assert_not(d.env.action.present);
    cr_assert_null(d.env.args.data);
    dec_free(&d);
}

Test(wire_json, every_field_is_recorded)
{
    static const char in[] =
        "{\"type\":\"call\",\"id\":42,\"from\":\"n1\",\"to\":\"n2\","
        "\"app\":\"math\",\"action\":\"add\",\"event\":\"tick\","
        "\"args\":{\"a\":[1,2.5,\"x\"]},\"msg\":\"hi\",\"result\":null,"
        "\"error\":{\"code\":\"ENOAPP\",\"message\":\"no\"},\"data\":true,"
        "\"node\":{\"name\":\"n1\",\"applications\":[]}}";
    dec_t d;

    cr_assert_eq(dec(&d, in), 0, "%s", d.detail);
    cr_assert_eq(d.env.type, SHOAL_MSG_CALL);
    cr_assert(d.env.has_id);
    cr_assert_eq(d.env.id, 42);
    assert_name(&d.env.from, "n1", 2);
    assert_name(&d.env.to, "n2", 2);
    assert_name(&d.env.app, "math", 4);
    assert_name(&d.env.action, "add", 3);
    assert_name(&d.env.event, "tick", 4);
    assert_span(&d, &d.env.args, "{\"a\":[1,2.5,\"x\"]}");
    assert_span(&d, &d.env.msg, "\"hi\"");
    assert_span(&d, &d.env.result, "null");
    assert_span(&d, &d.env.error, "{\"code\":\"ENOAPP\",\"message\":\"no\"}");
    assert_span(&d, &d.env.data, "true");
    assert_span(&d, &d.env.node, "{\"name\":\"n1\",\"applications\":[]}");
    dec_free(&d);
}

Test(wire_json, payload_spans_exclude_surrounding_whitespace)
{
    static const char in[] =
        " \t\r\n{ \"type\" : \"tell\" ,\n\"msg\" :\t[ 1 , "
        "{ \"a\" : 2 } ] \r\n, \"data\":-1.5e+3 } \n";
    dec_t d;

    cr_assert_eq(dec(&d, in), 0, "%s", d.detail);
    assert_span(&d, &d.env.msg, "[ 1 , { \"a\" : 2 } ]");
    assert_span(&d, &d.env.data, "-1.5e+3");
    cr_assert_eq(d.env.msg.data, d.g.data + 32);
    dec_free(&d);
}

Test(wire_json, all_message_types_are_known)
{
    static const struct {
        const char *in;
        shoal_msg_type_t t;
    } cases[] = {
        {"{\"type\":\"hello\"}", SHOAL_MSG_HELLO},
        {"{\"type\":\"describe\"}", SHOAL_MSG_DESCRIBE},
        {"{\"type\":\"tell\"}", SHOAL_MSG_TELL},
        {"{\"type\":\"call\"}", SHOAL_MSG_CALL},
        {"{\"type\":\"reply\"}", SHOAL_MSG_REPLY},
        {"{\"type\":\"event\"}", SHOAL_MSG_EVENT},
        {"{\"type\":\"error\"}", SHOAL_MSG_ERROR},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dec_t d;

        cr_assert_eq(dec(&d, cases[i].in), 0);
        cr_assert_eq(d.env.type, cases[i].t, "%s", cases[i].in);
        dec_free(&d);
    }
}

Test(wire_json, unknown_type_is_kept_by_name)
{
    dec_t d;

    cr_assert_eq(dec(&d, "{\"type\":\"gossip\"}"), 0);
    cr_assert_eq(d.env.type, SHOAL_MSG_UNKNOWN);
    assert_name(&d.env.type_name, "gossip", 6);
    dec_free(&d);
    cr_assert_eq(dec(&d, "{\"type\":\"\"}"), 0);
    cr_assert_eq(d.env.type, SHOAL_MSG_UNKNOWN);
    assert_name(&d.env.type_name, "", 0);
    dec_free(&d);
}

Test(wire_json, missing_type_is_a_bad_message)
{
    expect("{}", SHOAL_EBADMSG);
    expect("{\"app\":\"x\",\"msg\":1}", SHOAL_EBADMSG);
    expect("{\"Type\":\"tell\"}", SHOAL_EBADMSG);
    expect("{\"args\":{\"type\":\"tell\"}}", SHOAL_EBADMSG);
}

Test(wire_json, name_fields_must_be_strings)
{
    static const char *keys[] = {"type",  "app", "action",
                                 "event", "to",  "from"};
    static const char *values[] = {"1",    "-1.5", "true", "false",
                                   "null", "[]",   "{}",   "[\"x\"]"};

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
            char in[128];

            snprintf(in, sizeof(in), "{\"type\":\"tell\",\"%s\":%s}", keys[k],
                     values[v]);
            expect(in, SHOAL_EBADTYPE);
        }
}

Test(wire_json, syntax_errors_win_over_type_errors)
{
    expect("{\"type\":\"tell\",\"app\":[1,}", SHOAL_EBADJSON);
    expect("{\"type\":\"tell\",\"id\":\"x}", SHOAL_EBADJSON);
    expect("{\"type\":\"tell\",\"app\":", SHOAL_EBADJSON);
    expect("{\"type\":\"tell\",\"id\":", SHOAL_EBADJSON);
    expect("{\"type\":\"tell\",\"id\":1.}", SHOAL_EBADJSON);
    expect("{\"type\":\"tell\",\"app\":tru}", SHOAL_EBADJSON);
}

Test(wire_json, id_must_be_a_64_bit_integer)
{
    static const char *values[] = {
        "\"5\"",
        "1.0",
        "1e2",
        "1E2",
        "-1.5e3",
        "0.5",
        "true",
        "null",
        "[]",
        "{}",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "99999999999999999999999999",
    };

    for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
        char in[128];

        snprintf(in, sizeof(in), "{\"type\":\"call\",\"id\":%s}", values[v]);
        expect(in, SHOAL_EBADTYPE);
    }
}

Test(wire_json, id_at_the_int64_bounds_is_accepted)
{
    static const struct {
        const char *text;
        int64_t v;
    } cases[] = {
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
        {"0", 0},
        {"-0", 0},
        {"-1", -1},
        {"1000000", 1000000},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char in[128];
        dec_t d;

        snprintf(in, sizeof(in), "{\"type\":\"call\",\"id\":%s}",
                 cases[i].text);
        cr_assert_eq(dec(&d, in), 0, "%s: %s", in, d.detail);
        cr_assert(d.env.has_id);
        cr_assert_eq(d.env.id, cases[i].v, "%s", in);
        dec_free(&d);
    }
}

Test(wire_json, names_are_unescaped)
{
    dec_t d;

    cr_assert_eq(dec(&d, "{\"type\":\"t\\u0065ll\",\"app\":\"s\\u0075m\","
                         "\"action\":\"\\u00e9t\\u00C9\",\"event\":"
                         "\"\\ud83d\\ude00\",\"to\":"
                         "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\","
                         "\"from\":\"\xc3\xa9\\u4e2d\"}"),
                 0, "%s", d.detail);
    cr_assert_eq(d.env.type, SHOAL_MSG_TELL);
    assert_name(&d.env.app, "sum", 3);
    assert_name(&d.env.action, "\xc3\xa9t\xc3\x89", 5);
    assert_name(&d.env.event, "\xf0\x9f\x98\x80", 4);
    assert_name(&d.env.to, "a\"b\\c/d\b\f\n\r\t", 12);
    assert_name(&d.env.from, "\xc3\xa9\xe4\xb8\xad", 5);
    dec_free(&d);
}

/* {"type":"tell","app":"<prefix><n times 'a'><suffix>"} */
static char *long_name_msg(const char *key, size_t n, const char *suffix)
{
    size_t cap = n + 128;
    char *in = malloc(cap);
    size_t len;

    cr_assert_not_null(in);
    len = (size_t)snprintf(in, cap, "{\"type\":\"tell\",\"%s\":\"", key);
    memset(in + len, 'a', n);
    snprintf(in + len + n, cap - len - n, "%s\"}", suffix);
    return in;
}

Test(wire_json, name_of_255_bytes_passes_and_256_fails)
{
    static const char *keys[] = {"type",  "app", "action",
                                 "event", "to",  "from"};

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        char *ok = long_name_msg(keys[k], 255, "");
        char *bad = long_name_msg(keys[k], 256, "");
        /* Unescaped length counts: 253 + 2 bytes of é is 255. */
        char *ok_esc = long_name_msg(keys[k], 253, "\\u00e9");
        char *bad_esc = long_name_msg(keys[k], 254, "\\u00e9");
        dec_t d;

        cr_assert_eq(dec(&d, ok), 0, "%s: %s", keys[k], d.detail);
        dec_free(&d);
        expect(bad, SHOAL_ENAMETOOLONG);
        cr_assert_eq(dec(&d, ok_esc), 0, "%s: %s", keys[k], d.detail);
        dec_free(&d);
        expect(bad_esc, SHOAL_ENAMETOOLONG);
        free(ok);
        free(bad);
        free(ok_esc);
        free(bad_esc);
    }
}

Test(wire_json, long_type_is_kept_whole)
{
    char in[400];
    dec_t d;

    memset(in, 'x', sizeof(in));
    memcpy(in, "{\"type\":\"", 9);
    memcpy(in + 9 + 255, "\"}", 3);
    cr_assert_eq(dec(&d, in), 0);
    cr_assert_eq(d.env.type_name.len, 255);
    cr_assert_eq(d.env.type_name.s[255], '\0');
    cr_assert_eq(d.env.type, SHOAL_MSG_UNKNOWN);
    dec_free(&d);
}

Test(wire_json, name_containing_nul_is_refused)
{
    expect("{\"type\":\"tell\",\"app\":\"a\\u0000b\"}", SHOAL_EBADTYPE);
    expect("{\"type\":\"tell\\u0000\"}", SHOAL_EBADTYPE);
    expect("{\"type\":\"tell\",\"from\":\"\\u0000\"}", SHOAL_EBADTYPE);
    /* Outside names a NUL is just a character. */
    expect("{\"type\":\"tell\",\"msg\":\"a\\u0000b\"}", 0);
    expect("{\"type\":\"tell\",\"x\\u0000\":1}", 0);
}

Test(wire_json, escaped_keys_match_known_fields)
{
    dec_t d;

    cr_assert_eq(dec(&d, "{\"\\u0074ype\":\"tell\",\"\\u0061pp\":\"x\","
                         "\"ms\\u0067\":[],\"\\u0069\\u0064\":7}"),
                 0, "%s", d.detail);
    cr_assert_eq(d.env.type, SHOAL_MSG_TELL);
    assert_name(&d.env.app, "x", 1);
    assert_span(&d, &d.env.msg, "[]");
    cr_assert_eq(d.env.id, 7);
    dec_free(&d);
    /* Escaped or not, a longer key is another key. */
    cr_assert_eq(dec(&d, "{\"type\":\"tell\",\"app\\u0073\":\"x\","
                         "\"\\u00e1pp\":\"y\"}"),
                 0);
    cr_assert_not(d.env.app.present);
    dec_free(&d);
}

Test(wire_json, last_duplicate_wins)
{
    dec_t d;

    cr_assert_eq(dec(&d, "{\"type\":\"call\",\"app\":\"a\",\"id\":1,"
                         "\"msg\":[1],\"type\":\"tell\",\"app\":\"bb\","
                         "\"id\":2,\"msg\":{\"x\":2}}"),
                 0);
    cr_assert_eq(d.env.type, SHOAL_MSG_TELL);
    assert_name(&d.env.type_name, "tell", 4);
    assert_name(&d.env.app, "bb", 2);
    cr_assert_eq(d.env.id, 2);
    assert_span(&d, &d.env.msg, "{\"x\":2}");
    dec_free(&d);
}

Test(wire_json, unknown_keys_are_validated_and_ignored)
{
    dec_t d;

    cr_assert_eq(dec(&d, "{\"zzz\":{\"a\":[1,{\"b\":null}]},\"type\":\"tell\","
                         "\"apps\":\"x\",\"ap\":1,\"i\":2,\"typ\":3,"
                         "\"\":4,\"nodes\":5,\"errors\":6,\"resulted\":7}"),
                 0, "%s", d.detail);
    cr_assert_eq(d.env.type, SHOAL_MSG_TELL);
    cr_assert_not(d.env.app.present);
    cr_assert_not(d.env.has_id);
    cr_assert_null(d.env.node.data);
    cr_assert_null(d.env.error.data);
    cr_assert_null(d.env.result.data);
    dec_free(&d);
    expect("{\"type\":\"tell\",\"zzz\":[1,]}", SHOAL_EBADJSON);
    expect("{\"type\":\"tell\",\"zzz\":\"\xff\"}", SHOAL_EBADUTF8);
    expect("{\"type\":\"tell\",\"z\xff\":1}", SHOAL_EBADUTF8);
}

Test(wire_json, frames_that_are_not_objects_are_not_maps)
{
    static const char *cases[] = {
        "[1]",    "[]",   "\"x\"",
        "42",     "-1.5", "true",
        "false",  "null", " [ {\"type\":\"tell\"} ] ",
        "\"{}\"",
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect(cases[i], SHOAL_ENOTMAP);
}

Test(wire_json, invalid_json_is_refused)
{
    static const char *cases[] = {
        "",
        " \t\r\n",
        "{",
        "}",
        "{\"type\":\"tell\"",
        "{\"type\":\"tell\",}",
        "{\"type\":\"tell\",\"msg\":[1,2,]}",
        "{\"type\":\"tell\",\"msg\":[,1]}",
        "{\"type\":\"tell\",\"msg\":[1 2]}",
        "{\"type\":\"tell\" \"app\":\"x\"}",
        "{\"type\" \"tell\"}",
        "{\"type\"::\"tell\"}",
        "{,\"type\":\"tell\"}",
        "{type:\"tell\"}",
        "{'type':'tell'}",
        "{\"type\":'tell'}",
        "{\"type\":\"tell\"} x",
        "{\"type\":\"tell\"}{}",
        "{\"type\":\"tell\"},",
        "/* c */{\"type\":\"tell\"}",
        "{\"type\":\"tell\"// c\n}",
        "{\"type\":\"tell\",\"msg\":01}",
        "{\"type\":\"tell\",\"msg\":-01}",
        "{\"type\":\"tell\",\"msg\":00}",
        "{\"type\":\"tell\",\"msg\":+1}",
        "{\"type\":\"tell\",\"msg\":.5}",
        "{\"type\":\"tell\",\"msg\":1.}",
        "{\"type\":\"tell\",\"msg\":1.e5}",
        "{\"type\":\"tell\",\"msg\":1e}",
        "{\"type\":\"tell\",\"msg\":1e+}",
        "{\"type\":\"tell\",\"msg\":-}",
        "{\"type\":\"tell\",\"msg\":- 1}",
        "{\"type\":\"tell\",\"msg\":0x10}",
        "{\"type\":\"tell\",\"msg\":NaN}",
        "{\"type\":\"tell\",\"msg\":Infinity}",
        "{\"type\":\"tell\",\"msg\":-Infinity}",
        "{\"type\":\"tell\",\"msg\":nul}",
        "{\"type\":\"tell\",\"msg\":True}",
        "{\"type\":\"tell\",\"msg\":undefined}",
        "{\"type\":\"tell\",\"msg\":\"a\tb\"}",
        "{\"type\":\"tell\",\"msg\":\"a\nb\"}",
        ("{\"type\":\"tell\",\"msg\":\"a\x01"
         "b\"}"),
        ("{\"type\":\"tell\",\"msg\":\"a\x1f"
         "b\"}"),
        "{\"type\":\"tell\",\"msg\":\"\\x41\"}",
        "{\"type\":\"tell\",\"msg\":\"\\a\"}",
        "{\"type\":\"tell\",\"msg\":\"\\u12\"}",
        "{\"type\":\"tell\",\"msg\":\"\\u12G4\"}",
        "{\"type\":\"tell\",\"msg\":\"\\U0041\"}",
        "{\"type\":\"tell\",\"msg\":\"abc}",
        "{\"type\":\"tell\",\"msg\":\"abc\\\"}",
        "{\"type\":\"tell\",\"msg\":{\"a\"}}",
        "{\"type\":\"tell\",\"msg\":{\"a\":}}",
        "{\"type\":\"tell\",\"msg\":{1:2}}",
        "{\"type\":\"tell\",\"msg\":[1}",
        "{\"type\":\"tell\",\"msg\":{\"a\":1]}",
        "\xef\xbb\xbf{\"type\":\"tell\"}",
        "{\"type\":\"tell\",\"msg\":\"\\ud800\\u12\"}",
        "[1,]",
        "[",
        "\"abc",
        "tru",
        "-",
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect(cases[i], SHOAL_EBADJSON);
}

Test(wire_json, raw_nul_byte_is_refused)
{
    static const char in[] = "{\"type\":\"te\0ll\"}";
    dec_t d;

    cr_assert_eq(dec_n(&d, in, sizeof(in) - 1, NULL), SHOAL_EBADJSON);
    dec_free(&d);
    cr_assert_eq(dec_n(&d, in, 0, NULL), SHOAL_EBADJSON);
    dec_free(&d);
    /* A NUL after the object is trailing garbage like any other byte. */
    cr_assert_eq(dec_n(&d, "{\"type\":\"tell\"}\0", 16, NULL), SHOAL_EBADJSON);
    dec_free(&d);
}

Test(wire_json, invalid_utf8_is_refused)
{
    static const char *bad[] = {
        "\x80",             /* continuation without a lead */
        "\xbf",             /* */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong */
        "\xe0\x9f\xbf",     /* overlong */
        "\xf0\x80\x80\x80", /* overlong */
        "\xf0\x8f\xbf\xbf", /* overlong */
        "\xed\xa0\x80",     /* surrogate D800 */
        "\xed\xbf\xbf",     /* surrogate DFFF */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", /* */
        "\xff",             /* */
        "\xfe",             /* */
        "\xc3",             /* truncated before the quote */
        "\xe2\x82",         /* */
        "\xc3x",            /* continuation missing */
        "a\xc3\xa9\xc3",    /* good, then truncated */
    };
    static const char *where[] = {
        "{\"type\":\"tell\",\"msg\":\"%s\"}",
        "{\"type\":\"tell\",\"app\":\"%s\"}",
        "{\"type\":\"%s\"}",
        "{\"type\":\"tell\",\"%s\":1}",
        "{\"type\":\"tell\",\"args\":[{\"a\":[\"%s\"]}]}",
        "{\"type\":\"tell\",\"msg\":\"x\\n%s\\n\"}",
    };

    for (size_t w = 0; w < sizeof(where) / sizeof(where[0]); w++)
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
            char in[128];

            snprintf(in, sizeof(in), where[w], bad[b]);
            expect(in, SHOAL_EBADUTF8);
        }
}

Test(wire_json, valid_utf8_of_every_length_is_accepted)
{
    dec_t d;

    cr_assert_eq(dec(&d, "{\"type\":\"tell\",\"app\":\"\x7f\xc2\x80\xdf\xbf"
                         "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
                         "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\","
                         "\"msg\":\"\xe4\xb8\xad\xe6\x96\x87 text\"}"),
                 0, "%s", d.detail);
    cr_assert_eq(d.env.app.len, 1 + 2 + 2 + 3 + 3 + 3 + 3 + 4 + 4);
    dec_free(&d);
}

Test(wire_json, lone_surrogate_escapes_are_refused)
{
    static const char *cases[] = {
        "\\ud800",        "\\udbff",        "\\udc00",    "\\udfff",
        "\\ud800\\u0041", "\\ud800x",       "\\ud800\\n", "\\udc00\\ud800",
        "\\ud800\\ud800", "\\ud800\\ue000",
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char in[128];

        snprintf(in, sizeof(in), "{\"type\":\"tell\",\"msg\":\"%s\"}",
                 cases[i]);
        expect(in, SHOAL_EBADUTF8);
        snprintf(in, sizeof(in), "{\"type\":\"tell\",\"app\":\"%s\"}",
                 cases[i]);
        expect(in, SHOAL_EBADUTF8);
    }
    expect("{\"type\":\"tell\",\"msg\":\"\\ud800\\udc00\\udbff\\udfff\"}", 0);
}

/* {"type":"t","msg":<depth - 1 nested arrays>}: the envelope is level 1. */
static char *nested_msg(unsigned depth, bool objects)
{
    size_t cap = 64 + 8 * (size_t)depth;
    char *in = malloc(cap);
    size_t n;

    cr_assert_not_null(in);
    n = (size_t)snprintf(in, cap, "{\"type\":\"t\",\"msg\":");
    for (unsigned i = 1; i < depth; i++)
        n += (size_t)snprintf(in + n, cap - n, objects ? "{\"a\":" : "[");
    n += (size_t)snprintf(in + n, cap - n, "1");
    for (unsigned i = 1; i < depth; i++)
        in[n++] = objects ? '}' : ']';
    in[n++] = '}';
    in[n] = '\0';
    return in;
}

Test(wire_json, depth_at_the_limit_passes_and_one_more_fails)
{
    shoal_limits_t lim;

    shoal_limits_default(&lim);
    for (unsigned limit = 1; limit <= 5; limit++) {
        lim.max_depth = limit;
        for (int obj = 0; obj < 2; obj++) {
            char *ok = nested_msg(limit, obj);
            char *bad = nested_msg(limit + 1, obj);

            expect_lim(ok, &lim, 0);
            expect_lim(bad, &lim, SHOAL_ETOODEEP);
            free(ok);
            free(bad);
        }
    }
    lim.max_depth = 0;
    expect_lim("{\"type\":\"tell\"}", &lim, SHOAL_ETOODEEP);
    lim.max_depth = 1;
    expect_lim("{\"type\":\"tell\",\"msg\":[]}", &lim, SHOAL_ETOODEEP);
    expect_lim("{\"type\":\"tell\",\"x\":{}}", &lim, SHOAL_ETOODEEP);
    expect_lim("[[]]", &lim, SHOAL_ETOODEEP);
    expect_lim("[]", &lim, SHOAL_ENOTMAP);
}

Test(wire_json, default_depth_is_64)
{
    char *ok = nested_msg(SHOAL_DEFAULT_MAX_DEPTH, false);
    char *bad = nested_msg(SHOAL_DEFAULT_MAX_DEPTH + 1, true);

    expect(ok, 0);
    expect(bad, SHOAL_ETOODEEP);
    free(ok);
    free(bad);
}

Test(wire_json, depth_limit_never_passes_the_cap)
{
    shoal_limits_t lim;
    char *ok = nested_msg(SHOAL_MAX_DEPTH_CAP, false);
    char *bad = nested_msg(SHOAL_MAX_DEPTH_CAP + 1, false);

    shoal_limits_default(&lim);
    lim.max_depth = 100000;
    expect_lim(ok, &lim, 0);
    expect_lim(bad, &lim, SHOAL_ETOODEEP);
    free(ok);
    free(bad);
}

Test(wire_json, details_name_the_problem_and_its_offset)
{
    static const struct {
        const char *in;
        const char *detail;
    } cases[] = {
        {"{\"type\":\"tell\",\"msg\":[1]]}",
         "invalid JSON: unexpected ']' at byte 24"},
        {"{\"type\":\"tell\"", "invalid JSON: unexpected end at byte 14"},
        {"{\"a\":\"\xff\"}", "invalid UTF-8 at byte 6"},
        {"{\"a\":\"ab\xc3\xa9\xe2\x82\"}", "invalid UTF-8 at byte 10"},
        {"{\"a\":\"\x01\"}",
         "invalid JSON: control character in string at byte 6"},
        {"{\"a\":1}\x02", "invalid JSON: unexpected byte 0x02 at byte 7"},
        {"{\"a\":\"\\q\"}", "invalid JSON: bad escape at byte 6"},
        {"{\"a\":\"\\udc00\"}",
         "invalid UTF-8: lone surrogate escape at byte 6"},
        {"{\"type\":1}", "\"type\" is not a string at byte 8"},
        {"{\"type\":\"t\",\"id\":1.5}",
         "\"id\" is not a 64-bit integer at byte 17"},
        {"{\"type\":\"t\",\"id\":\"1\"}",
         "\"id\" is not an integer at byte 17"},
        {"{\"app\":\"a\\u0000\"}", "\"app\" contains NUL at byte 7"},
        {"{\"app\":\"x\"}", "message has no \"type\""},
        {"[1]", "message is not an object"},
        {"{\"type\":\"t\",\"msg\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
         "[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]}",
         "nesting deeper than 64 at byte 81"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dec_t d;

        cr_assert_lt(dec(&d, cases[i].in), 0, "%s", cases[i].in);
        cr_assert_str_eq(d.detail, cases[i].detail, "%s", cases[i].in);
        dec_free(&d);
    }
}

Test(wire_json, long_name_detail_says_so)
{
    char *in = long_name_msg("app", 300, "");
    dec_t d;

    cr_assert_eq(dec(&d, in), SHOAL_ENAMETOOLONG);
    cr_assert_str_eq(d.detail, "\"app\" longer than 255 bytes at byte 21");
    dec_free(&d);
    free(in);
}

Test(wire_json, detail_is_optional_and_truncated_to_fit)
{
    static const char in[] = "{\"type\":\"tell\",}";
    shoal_limits_t lim;
    shoal_envelope_t env;
    char small[8];

    shoal_limits_default(&lim);
    cr_assert_eq(shoal__json_decode(in, sizeof(in) - 1, &lim, &env, NULL, 0),
                 SHOAL_EBADJSON);
    memset(small, 'x', sizeof(small));
    cr_assert_eq(shoal__json_decode(in, sizeof(in) - 1, &lim, &env, small,
                                    sizeof(small)),
                 SHOAL_EBADJSON);
    cr_assert_str_eq(small, "invalid");
    memset(small, 'x', sizeof(small));
    cr_assert_eq(shoal__json_decode(in, sizeof(in) - 1, &lim, &env, small, 0),
                 SHOAL_EBADJSON);
    cr_assert_eq(small[0], 'x');
}

Test(wire_json, every_prefix_of_a_message_is_refused)
{
    static const char *msgs[] = {
        ("{\"type\":\"call\",\"id\":-12,\"app\":\"s\\u00e9m\",\"args\":"
         "{\"a\":[1.5e-3,true,false,null,\"\xc3\xa9\\ud83d\\ude00\"]}}"),
        "{\"type\":\"tell\",\"msg\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\"}",
        "{\"type\":\"tell\",\"x\":{},\"y\":[],\"z\":\"\",\"w\":0}",
    };

    for (size_t m = 0; m < sizeof(msgs) / sizeof(msgs[0]); m++) {
        size_t n = strlen(msgs[m]);
        dec_t d;

        cr_assert_eq(dec_n(&d, msgs[m], n, NULL), 0, "%s: %s", msgs[m],
                     d.detail);
        dec_free(&d);
        for (size_t k = 0; k < n; k++) {
            cr_assert_eq(dec_n(&d, msgs[m], k, NULL), SHOAL_EBADJSON,
                         "%.*s: %s", (int)k, msgs[m], d.detail);
            dec_free(&d);
        }
    }
}

Test(wire_json, raw_line_breaks_in_whitespace_are_accepted)
{
    dec_t d;

    /* json-socket frames may carry pretty-printed JSON. */
    cr_assert_eq(dec(&d, "{\n  \"type\": \"tell\",\n  \"msg\": [\n    1\n  ]"
                         "\n}\n"),
                 0);
    assert_span(&d, &d.env.msg, "[\n    1\n  ]");
    dec_free(&d);
}

Test(wire_json, long_strings_take_the_word_at_a_time_path)
{
    /* Specials at every position within an 8-byte word. */
    for (size_t pad = 0; pad < 24; pad++) {
        char in[256];
        char text[64];
        dec_t d;

        memset(text, 'a', pad);
        text[pad] = '\0';
        snprintf(in, sizeof(in),
                 "{\"type\":\"tell\",\"app\":\"%s\\n%s\xc3\xa9%s\"}", text,
                 text, text);
        cr_assert_eq(dec(&d, in), 0, "%s", in);
        cr_assert_eq(d.env.app.len, 3 * pad + 3);
        cr_assert_eq(d.env.app.s[pad], '\n');
        dec_free(&d);
        snprintf(in, sizeof(in), "{\"type\":\"tell\",\"app\":\"%s\x01%s\"}",
                 text, text);
        expect(in, SHOAL_EBADJSON);
        snprintf(in, sizeof(in), "{\"type\":\"tell\",\"app\":\"%s\xff%s\"}",
                 text, text);
        expect(in, SHOAL_EBADUTF8);
    }
}

/* ---- JSON to MessagePack ---------------------------------------------- */

typedef struct {
    shoal_buf_t buf;
    msgpack_unpacked u;
} mp_t;

/* Converts json (through a guard page) and unpacks the single object it
 * must produce. */
static void to_mp(mp_t *m, const char *json)
{
    guard_buf_t g;
    size_t off = 0;
    size_t n = strlen(json);
    int err;

    shoal_buf_init(&m->buf);
    cr_assert_eq(guard_buf_init(&g, json, n), 0);
    err = shoal__json_to_msgpack(g.data, n, &m->buf);
    guard_buf_free(&g);
    cr_assert_eq(err, 0, "%s: %s", json, shoal_err_name(err));
    msgpack_unpacked_init(&m->u);
    cr_assert_eq(msgpack_unpack_next(&m->u, m->buf.base, m->buf.len, &off),
                 MSGPACK_UNPACK_SUCCESS, "%s", json);
    cr_assert_eq(off, m->buf.len, "%s: trailing bytes", json);
}

static void mp_free(mp_t *m)
{
    msgpack_unpacked_destroy(&m->u);
    shoal_buf_free(&m->buf);
}

static int mp_err(const char *json, size_t n)
{
    guard_buf_t g;
    shoal_buf_t buf;
    int err;

    shoal_buf_init(&buf);
    cr_assert_eq(shoal_buf_append(&buf, "keep", 4), 0);
    cr_assert_eq(guard_buf_init(&g, json, n), 0);
    err = shoal__json_to_msgpack(g.data, n, &buf);
    guard_buf_free(&g);
    cr_assert_eq(buf.len, 4, "%s: buffer not restored", json);
    cr_assert_eq(memcmp(buf.base, "keep", 4), 0);
    shoal_buf_free(&buf);
    return err;
}

Test(wire_json, integers_become_msgpack_integers)
{
    static const struct {
        const char *json;
        int64_t v;
        size_t bytes; /* the smallest encoding */
    } cases[] = {
        {"0", 0, 1},
        {"-0", 0, 1},
        {"127", 127, 1},
        {"128", 128, 2},
        {"255", 255, 2},
        {"256", 256, 3},
        {"65536", 65536, 5},
        {"4294967296", 4294967296LL, 9},
        {"-1", -1, 1},
        {"-32", -32, 1},
        {"-33", -33, 2},
        {"-129", -129, 3},
        {"-2147483649", -2147483649LL, 9},
        {"9223372036854775807", INT64_MAX, 9},
        {"-9223372036854775808", INT64_MIN, 9},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mp_t m;
        msgpack_object *o = &m.u.data;

        to_mp(&m, cases[i].json);
        cr_assert_eq(m.buf.len, cases[i].bytes, "%s", cases[i].json);
        if (cases[i].v >= 0) {
            cr_assert_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER, "%s",
                         cases[i].json);
            cr_assert_eq(o->via.u64, (uint64_t)cases[i].v);
        } else {
            cr_assert_eq(o->type, MSGPACK_OBJECT_NEGATIVE_INTEGER, "%s",
                         cases[i].json);
            cr_assert_eq(o->via.i64, cases[i].v);
        }
        mp_free(&m);
    }
}

Test(wire_json, large_positive_integers_become_uint64)
{
    mp_t m;

    to_mp(&m, "18446744073709551615");
    cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(m.u.data.via.u64, UINT64_MAX);
    mp_free(&m);
    to_mp(&m, "9223372036854775808");
    cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(m.u.data.via.u64, (uint64_t)INT64_MAX + 1);
    mp_free(&m);
}

Test(wire_json, other_numbers_become_float64)
{
    static const struct {
        const char *json;
        double v;
    } cases[] = {
        {"1.5", 1.5},
        {"-0.5", -0.5},
        {"1e3", 1000.0},
        {"1E-2", 0.01},
        {"2.5e+2", 250.0},
        {"0.0", 0.0},
        {"18446744073709551616", 18446744073709551616.0},
        {"-9223372036854775809", -9223372036854775809.0},
        {"123456789012345678901234567890", 123456789012345678901234567890.0},
        {"1e400", INFINITY},
        {"-1e400", -INFINITY},
        {"1e-400", 0.0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mp_t m;

        to_mp(&m, cases[i].json);
        cr_assert_eq(m.buf.len, 9, "%s", cases[i].json);
        cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_FLOAT64, "%s",
                     cases[i].json);
        cr_assert_eq(m.u.data.via.f64, cases[i].v, "%s: %g", cases[i].json,
                     m.u.data.via.f64);
        mp_free(&m);
    }
}

Test(wire_json, long_number_text_is_parsed_whole)
{
    /* Longer than any fixed buffer: 0.000...0001 with 300 zeros, and a
     * mantissa of 400 digits. */
    char in[512];
    mp_t m;

    strcpy(in, "0.");
    memset(in + 2, '0', 300);
    strcpy(in + 302, "1e300");
    to_mp(&m, in);
    cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_eq(m.u.data.via.f64, strtod(in, NULL));
    mp_free(&m);
    memset(in, '7', 400);
    strcpy(in + 400, ".25");
    to_mp(&m, in);
    cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_eq(m.u.data.via.f64, strtod(in, NULL));
    mp_free(&m);
}

Test(wire_json, literals_become_nil_and_booleans)
{
    mp_t m;

    to_mp(&m, "[null,true,false]");
    cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(m.u.data.via.array.size, 3);
    cr_assert_eq(m.u.data.via.array.ptr[0].type, MSGPACK_OBJECT_NIL);
    cr_assert_eq(m.u.data.via.array.ptr[1].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert(m.u.data.via.array.ptr[1].via.boolean);
    cr_assert_not(m.u.data.via.array.ptr[2].via.boolean);
    cr_assert_eq(m.buf.len, 4);
    mp_free(&m);
}

Test(wire_json, strings_are_unescaped)
{
    static const struct {
        const char *json;
        const char *s;
        size_t n;
    } cases[] = {
        {"\"\"", "", 0},
        {"\"abc\"", "abc", 3},
        {"\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "a\"b\\c/d\b\f\n\r\t", 12},
        {"\"\\u0041\\u00e9\\u4e2d\\ud83d\\ude00\"",
         "A\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 10},
        {"\"\\u0000\"", "\0", 1},
        {"\"\xc3\xa9t\xc3\xa9\"", "\xc3\xa9t\xc3\xa9", 5},
        {"\"tab\\tand more than eight bytes\"",
         "tab\tand more than eight bytes", 29},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mp_t m;

        to_mp(&m, cases[i].json);
        cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_STR, "%s", cases[i].json);
        cr_assert_eq(m.u.data.via.str.size, cases[i].n, "%s", cases[i].json);
        cr_assert(cases[i].n == 0 || memcmp(m.u.data.via.str.ptr, cases[i].s,
                                            cases[i].n) == 0,
                  "%s", cases[i].json);
        mp_free(&m);
    }
}

Test(wire_json, string_headers_are_the_smallest)
{
    static const struct {
        size_t n;
        size_t header;
        unsigned char first;
    } cases[] = {
        {0, 1, 0xa0},   {31, 1, 0xbf},    {32, 2, 0xd9},    {255, 2, 0xd9},
        {256, 3, 0xda}, {65535, 3, 0xda}, {65536, 5, 0xdb},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int escaped = 0; escaped < 2; escaped++) {
            /* Escaped: the raw text is longer than the string. */
            size_t raw = cases[i].n + (escaped && cases[i].n ? 1 : 0);
            char *json = malloc(raw + 3);
            mp_t m;

            cr_assert_not_null(json);
            json[0] = '"';
            memset(json + 1, 'x', raw);
            if (escaped && cases[i].n)
                memcpy(json + 1, "\\n", 2);
            json[raw + 1] = '"';
            json[raw + 2] = '\0';
            to_mp(&m, json);
            cr_assert_eq(m.buf.len, cases[i].header + cases[i].n, "%zu",
                         cases[i].n);
            cr_assert_eq((unsigned char)m.buf.base[0], cases[i].first);
            cr_assert_eq(m.u.data.via.str.size, cases[i].n);
            if (escaped && cases[i].n)
                cr_assert_eq(m.u.data.via.str.ptr[0], '\n');
            mp_free(&m);
            free(json);
        }
    }
}

/* "[1,1,...,1]" or "{"k0":1,...}" with n items. */
static char *container_json(size_t n, bool object)
{
    char *json = malloc(16 * n + 3);
    size_t len = 0;

    cr_assert_not_null(json);
    json[len++] = object ? '{' : '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            json[len++] = ',';
        if (object)
            len += (size_t)sprintf(json + len, "\"k%zu\":", i);
        json[len++] = '1';
    }
    json[len++] = object ? '}' : ']';
    json[len] = '\0';
    return json;
}

Test(wire_json, container_headers_are_the_smallest)
{
    static const struct {
        size_t n;
        unsigned char array, map;
    } cases[] = {
        {0, 0x90, 0x80},  {1, 0x91, 0x81},     {15, 0x9f, 0x8f},
        {16, 0xdc, 0xde}, {65535, 0xdc, 0xde}, {65536, 0xdd, 0xdf},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (int object = 0; object < 2; object++) {
            char *json = container_json(cases[i].n, object);
            mp_t m;

            to_mp(&m, json);
            cr_assert_eq((unsigned char)m.buf.base[0],
                         object ? cases[i].map : cases[i].array);
            if (object) {
                cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_MAP);
                cr_assert_eq(m.u.data.via.map.size, cases[i].n);
            } else {
                cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_ARRAY);
                cr_assert_eq(m.u.data.via.array.size, cases[i].n);
            }
            mp_free(&m);
            free(json);
        }
}

Test(wire_json, nested_values_convert_like_msgpack_c_packs_them)
{
    static const char json[] =
        " { \"a\" : [ 1 , -2 , 3.5 , \"x\" , { } , [ ] ] ,\n"
        "\"b\":{\"c\":{\"d\":[null,true,false]}},\"\":\"\\u00e9\"} ";
    msgpack_sbuffer sb;
    msgpack_packer pk;
    mp_t m;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_int64(&pk, 1);
    msgpack_pack_int64(&pk, -2);
    msgpack_pack_double(&pk, 3.5);
    msgpack_pack_str_with_body(&pk, "x", 1);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_array(&pk, 0);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "c", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "d", 1);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_str_with_body(&pk, "", 0);
    msgpack_pack_str_with_body(&pk, "\xc3\xa9", 2);
    to_mp(&m, json);
    cr_assert_eq(m.buf.len, sb.size);
    cr_assert_eq(memcmp(m.buf.base, sb.data, sb.size), 0);
    {
        msgpack_unpacked want;
        size_t off = 0;

        msgpack_unpacked_init(&want);
        cr_assert_eq(msgpack_unpack_next(&want, sb.data, sb.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
        cr_assert(msgpack_object_equal(want.data, m.u.data));
        msgpack_unpacked_destroy(&want);
    }
    mp_free(&m);
    msgpack_sbuffer_destroy(&sb);
}

Test(wire_json, many_containers_are_counted_beyond_the_local_array)
{
    /* 300 containers in all, nested and side by side. */
    char json[4096];
    size_t n = 0;
    mp_t m;

    json[n++] = '[';
    for (int i = 0; i < 100; i++)
        n += (size_t)sprintf(json + n, "%s[{\"a\":[%d]}]", i ? "," : "", i);
    json[n++] = ']';
    json[n] = '\0';
    to_mp(&m, json);
    cr_assert_eq(m.u.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(m.u.data.via.array.size, 100);
    for (uint32_t i = 0; i < 100; i++) {
        msgpack_object *o = &m.u.data.via.array.ptr[i];

        cr_assert_eq(o->type, MSGPACK_OBJECT_ARRAY);
        cr_assert_eq(o->via.array.size, 1);
        o = &o->via.array.ptr[0];
        cr_assert_eq(o->type, MSGPACK_OBJECT_MAP);
        cr_assert_eq(o->via.map.size, 1);
        o = &o->via.map.ptr[0].val;
        cr_assert_eq(o->via.array.size, 1);
        cr_assert_eq(o->via.array.ptr[0].via.u64, i);
    }
    mp_free(&m);
}

Test(wire_json, conversion_appends_to_the_buffer)
{
    shoal_buf_t buf;

    shoal_buf_init(&buf);
    cr_assert_eq(shoal_buf_append(&buf, "abc", 3), 0);
    cr_assert_eq(shoal__json_to_msgpack("[1,2]", 5, &buf), 0);
    cr_assert_eq(buf.len, 6);
    cr_assert_eq(memcmp(buf.base, "abc\x92\x01\x02", 6), 0);
    shoal_buf_free(&buf);
}

Test(wire_json, bad_text_is_not_converted_and_the_buffer_is_restored)
{
    static const struct {
        const char *json;
        int err;
    } cases[] = {
        {"", SHOAL_EBADJSON},
        {"[1,]", SHOAL_EBADJSON},
        {"{\"a\":1,}", SHOAL_EBADJSON},
        {"01", SHOAL_EBADJSON},
        {"[1] [2]", SHOAL_EBADJSON},
        {"NaN", SHOAL_EBADJSON},
        {"\"\xff\"", SHOAL_EBADUTF8},
        {"\"\\ud800\"", SHOAL_EBADUTF8},
        {"[\"\xed\xa0\x80\"]", SHOAL_EBADUTF8},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_eq(mp_err(cases[i].json, strlen(cases[i].json)),
                     cases[i].err, "%s", cases[i].json);
}

Test(wire_json, conversion_depth_is_capped)
{
    char json[2 * SHOAL_MAX_DEPTH_CAP + 8];
    size_t n = 0;
    shoal_buf_t buf;

    for (int i = 0; i < SHOAL_MAX_DEPTH_CAP; i++)
        json[n++] = '[';
    for (int i = 0; i < SHOAL_MAX_DEPTH_CAP; i++)
        json[n++] = ']';
    json[n] = '\0';
    /* msgpack-c's unpacker stops at 32 levels: check the bytes instead. */
    shoal_buf_init(&buf);
    cr_assert_eq(shoal__json_to_msgpack(json, n, &buf), 0);
    cr_assert_eq(buf.len, SHOAL_MAX_DEPTH_CAP);
    for (int i = 0; i + 1 < SHOAL_MAX_DEPTH_CAP; i++)
        cr_assert_eq((unsigned char)buf.base[i], 0x91);
    cr_assert_eq((unsigned char)buf.base[SHOAL_MAX_DEPTH_CAP - 1], 0x90);
    shoal_buf_free(&buf);
    memmove(json + 1, json, n + 1);
    json[0] = '[';
    json[n + 1] = ']';
    json[n + 2] = '\0';
    cr_assert_eq(mp_err(json, n + 2), SHOAL_ETOODEEP);
}

Test(wire_json, every_decoded_payload_converts)
{
    static const char in[] =
        "{\"type\":\"call\",\"id\":1,\"args\":{\"x\":[1,2.5,\"\\u00e9\"]},"
        "\"msg\":-7,\"result\":\"s\",\"error\":{\"code\":\"E\"},"
        "\"data\":[[],{}],\"node\":null}";
    const shoal_payload_t *pls[6];
    dec_t d;

    cr_assert_eq(dec(&d, in), 0);
    pls[0] = &d.env.args;
    pls[1] = &d.env.msg;
    pls[2] = &d.env.result;
    pls[3] = &d.env.error;
    pls[4] = &d.env.data;
    pls[5] = &d.env.node;
    for (int i = 0; i < 6; i++) {
        shoal_buf_t buf;
        msgpack_unpacked u;
        size_t off = 0;

        shoal_buf_init(&buf);
        cr_assert_eq(shoal__json_to_msgpack(pls[i]->data, pls[i]->len, &buf),
                     0);
        msgpack_unpacked_init(&u);
        cr_assert_eq(msgpack_unpack_next(&u, buf.base, buf.len, &off),
                     MSGPACK_UNPACK_SUCCESS);
        cr_assert_eq(off, buf.len);
        msgpack_unpacked_destroy(&u);
        shoal_buf_free(&buf);
    }
    dec_free(&d);
}
