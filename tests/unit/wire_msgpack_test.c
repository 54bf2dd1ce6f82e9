/* MessagePack envelope decoding, and MessagePack values as JSON. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <msgpack.h>

#include "guard.h"
#include "shoal/wire.h"
#include "wire_internal.h"

/* A string literal and its length without the NUL. */
#define RAW(s) s, sizeof(s) - 1

/* ---- helpers --------------------------------------------------------- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} packer_t;

static void pk_init(packer_t *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
}

static void pk_free(packer_t *p)
{
    msgpack_sbuffer_destroy(&p->sb);
}

static void pk_str(packer_t *p, const char *s)
{
    msgpack_pack_str(&p->pk, strlen(s));
    msgpack_pack_str_body(&p->pk, s, strlen(s));
}

static void pk_raw(packer_t *p, const void *raw, size_t len)
{
    msgpack_sbuffer_write(&p->sb, raw, len);
}

/* {"type": "tell", key: raw}, or {"type": raw} when key is "type". */
static void pk_envelope_with(packer_t *p, const char *key, const void *raw,
                             size_t len)
{
    pk_init(p);
    if (strcmp(key, "type") == 0) {
        msgpack_pack_map(&p->pk, 1);
    } else {
        msgpack_pack_map(&p->pk, 2);
        pk_str(p, "type");
        pk_str(p, "tell");
    }
    pk_str(p, key);
    pk_raw(p, raw, len);
}

/* Decodes a copy of data that ends at a guard page. */
static int decode_guarded(const void *data, size_t len,
                          const shoal_limits_t *limits, shoal_envelope_t *env,
                          char *detail, size_t detail_len)
{
    guard_buf_t g = {NULL, 0, NULL};
    int rc;

    cr_assert_eq(guard_buf_init(&g, data, len), 0);
    rc = shoal_wire_decode(SHOAL_CODEC_MSGPACK, g.data, len, limits, env,
                           detail, detail_len);
    guard_buf_free(&g);
    return rc;
}

static int decode_packed(packer_t *p, shoal_envelope_t *env)
{
    return decode_guarded(p->sb.data, p->sb.size, NULL, env, NULL, 0);
}

/* Packs an envelope that sets every field, the payloads of varied types. */
static void pk_full_envelope(packer_t *p)
{
    pk_init(p);
    msgpack_pack_map(&p->pk, 14);
    pk_str(p, "type");
    pk_str(p, "call");
    pk_str(p, "id");
    msgpack_pack_int64(&p->pk, 1234567);
    pk_str(p, "app");
    pk_str(p, "collatz");
    pk_str(p, "action");
    pk_str(p, "steps");
    pk_str(p, "event");
    pk_str(p, "tick");
    pk_str(p, "to");
    pk_str(p, "node-b");
    pk_str(p, "from");
    pk_str(p, "node-\xc3\xa9");
    pk_str(p, "args");
    msgpack_pack_array(&p->pk, 3);
    msgpack_pack_int(&p->pk, 27);
    msgpack_pack_double(&p->pk, 0.5);
    msgpack_pack_map(&p->pk, 1);
    pk_str(p, "k");
    msgpack_pack_nil(&p->pk);
    pk_str(p, "msg");
    pk_str(p, "hello");
    pk_str(p, "result");
    msgpack_pack_int64(&p->pk, -70000);
    pk_str(p, "error");
    msgpack_pack_map(&p->pk, 2);
    pk_str(p, "code");
    pk_str(p, "ENOAPP");
    pk_str(p, "message");
    pk_str(p, "no such application");
    pk_str(p, "data");
    msgpack_pack_true(&p->pk);
    pk_str(p, "node");
    msgpack_pack_map(&p->pk, 1);
    pk_str(p, "name");
    pk_str(p, "n1");
    pk_str(p, "x-extension");
    msgpack_pack_array(&p->pk, 2);
    msgpack_pack_map(&p->pk, 0);
    msgpack_pack_array(&p->pk, 0);
}

/* The JSON text of a MessagePack payload, for comparisons. */
static char *payload_json(const shoal_payload_t *pl)
{
    shoal_buf_t b = {0};
    char *s;

    cr_assert_eq(pl->codec, SHOAL_CODEC_MSGPACK);
    cr_assert_eq(shoal__msgpack_to_json(pl->data, pl->len, &b), 0);
    cr_assert_eq(shoal_buf_append(&b, "", 1), 0);
    s = strdup(b.base);
    shoal_buf_free(&b);
    return s;
}

static void assert_payload_json(const shoal_payload_t *pl, const char *want)
{
    char *got = payload_json(pl);

    cr_assert_str_eq(got, want);
    free(got);
}

/* ---- envelopes that decode ------------------------------------------- */

Test(wire_msgpack, tell_envelope_packed_by_msgpack_c_decodes)
{
    packer_t p;
    shoal_envelope_t env;
    char detail[128];

    pk_init(&p);
    msgpack_pack_map(&p.pk, 3);
    pk_str(&p, "type");
    pk_str(&p, "tell");
    pk_str(&p, "app");
    pk_str(&p, "echo");
    pk_str(&p, "msg");
    msgpack_pack_map(&p.pk, 1);
    pk_str(&p, "n");
    msgpack_pack_int(&p.pk, 42);
    cr_assert_eq(shoal__msgpack_decode(p.sb.data, p.sb.size, NULL, &env,
                                       detail, sizeof(detail)),
                 0);
    cr_assert_str_eq(detail, "");
    cr_assert_eq(env.type, SHOAL_MSG_TELL);
    cr_assert_str_eq(env.type_name.s, "tell");
    cr_assert(env.app.present);
    cr_assert_str_eq(env.app.s, "echo");
    cr_assert_eq(env.app.len, 4);
    cr_assert_not(env.action.present);
    cr_assert_not(env.has_id);
    cr_assert_eq(env.msg.codec, SHOAL_CODEC_MSGPACK);
    /* The span is the value's bytes, borrowed from the frame. */
    cr_assert_eq(env.msg.data, p.sb.data + p.sb.size - 4);
    cr_assert_eq(env.msg.len, 4);
    cr_assert_null(env.args.data);
    assert_payload_json(&env.msg, "{\"n\":42}");
    pk_free(&p);
}

Test(wire_msgpack, every_field_of_a_full_envelope_is_recorded)
{
    packer_t p;
    shoal_envelope_t env;

    pk_full_envelope(&p);
    cr_assert_eq(decode_packed(&p, &env), 0);
    cr_assert_eq(env.type, SHOAL_MSG_CALL);
    cr_assert(env.has_id);
    cr_assert_eq(env.id, 1234567);
    cr_assert_str_eq(env.app.s, "collatz");
    cr_assert_str_eq(env.action.s, "steps");
    cr_assert_str_eq(env.event.s, "tick");
    cr_assert_str_eq(env.to.s, "node-b");
    cr_assert_str_eq(env.from.s, "node-\xc3\xa9");
    cr_assert_eq(env.from.len, 7);
    pk_free(&p);

    /* Spans borrow from the frame, so check them on an unguarded copy. */
    pk_full_envelope(&p);
    cr_assert_eq(shoal_wire_decode(SHOAL_CODEC_MSGPACK, p.sb.data, p.sb.size,
                                   NULL, &env, NULL, 0),
                 0);
    assert_payload_json(&env.args, "[27,0.5,{\"k\":null}]");
    assert_payload_json(&env.msg, "\"hello\"");
    assert_payload_json(&env.result, "-70000");
    assert_payload_json(&env.error, "{\"code\":\"ENOAPP\",\"message\":"
                                    "\"no such application\"}");
    assert_payload_json(&env.data, "true");
    assert_payload_json(&env.node, "{\"name\":\"n1\"}");
    pk_free(&p);
}

Test(wire_msgpack, every_payload_field_accepts_every_value_type)
{
    static const char *keys[] = {"args",  "msg",  "result",
                                 "error", "data", "node"};
    static const struct {
        const char *raw;
        size_t len;
    } values[] = {
        {RAW("\xc0")},
        {RAW("\xc2")},
        {RAW("\x05")},
        {RAW("\xff")},
        {RAW("\xcf\x80\x00\x00\x00\x00\x00\x00\x00")},
        {RAW("\xca\x3f\x80\x00\x00")},
        {RAW("\xa3\x61\x62\x63")},
        {RAW("\x92\x01\xa0")},
        {RAW("\x81\xa1\x6b\x90")},
        {RAW("\x80")},
    };

    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
            packer_t p;
            shoal_envelope_t env;
            const shoal_payload_t *pl[] = {&env.args,  &env.msg,  &env.result,
                                           &env.error, &env.data, &env.node};

            pk_envelope_with(&p, keys[k], values[v].raw, values[v].len);
            cr_assert_eq(shoal_wire_decode(SHOAL_CODEC_MSGPACK, p.sb.data,
                                           p.sb.size, NULL, &env, NULL, 0),
                         0, "%s #%zu", keys[k], v);
            cr_assert_eq(pl[k]->len, values[v].len);
            cr_assert_eq(memcmp(pl[k]->data, values[v].raw, values[v].len), 0);
            cr_assert_eq(pl[k]->codec, SHOAL_CODEC_MSGPACK);
            pk_free(&p);
        }
    }
}

Test(wire_msgpack, id_accepts_every_integer_format_that_fits_int64)
{
    static const struct {
        const char *raw;
        size_t len;
        int64_t want;
    } ids[] = {
        {RAW("\x00"), 0},
        {RAW("\x7f"), 127},
        {RAW("\xe0"), -32},
        {RAW("\xff"), -1},
        {RAW("\xcc\xff"), 255},
        {RAW("\xcd\xff\xff"), 65535},
        {RAW("\xce\xff\xff\xff\xff"), 4294967295},
        {RAW("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"), INT64_MAX},
        {RAW("\xcf\x00\x00\x00\x00\x00\x00\x00\x05"), 5},
        {RAW("\xd0\x80"), -128},
        {RAW("\xd0\x05"), 5},
        {RAW("\xd1\x80\x00"), -32768},
        {RAW("\xd2\x80\x00\x00\x00"), INT32_MIN},
        {RAW("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), INT64_MIN},
        {RAW("\xd3\xff\xff\xff\xff\xff\xff\xff\xfe"), -2},
    };

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        packer_t p;
        shoal_envelope_t env;

        pk_envelope_with(&p, "id", ids[i].raw, ids[i].len);
        cr_assert_eq(decode_packed(&p, &env), 0, "#%zu", i);
        cr_assert(env.has_id);
        cr_assert_eq(env.id, ids[i].want, "#%zu", i);
        pk_free(&p);
    }
}

Test(wire_msgpack, names_of_every_str_format_decode)
{
    char name[SHOAL_MAX_NAME_BYTES];
    unsigned char raw[5 + sizeof(name)];
    size_t lens[] = {0, 1, 31, 32, 200, SHOAL_MAX_NAME_BYTES};

    memset(name, 'n', sizeof(name));
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int format = 0; format < 3; format++) {
            packer_t p;
            shoal_envelope_t env;
            size_t n = lens[i], head;

            if (format == 0 && n > 31)
                continue;
            if (format == 0) {
                raw[0] = (unsigned char)(0xa0 | n);
                head = 1;
            } else if (format == 1) {
                raw[0] = 0xd9;
                raw[1] = (unsigned char)n;
                head = 2;
            } else {
                raw[0] = 0xdb;
                raw[1] = raw[2] = raw[3] = 0;
                raw[4] = (unsigned char)n;
                head = 5;
            }
            memcpy(raw + head, name, n);
            pk_envelope_with(&p, "app", raw, head + n);
            cr_assert_eq(decode_packed(&p, &env), 0);
            cr_assert(env.app.present);
            cr_assert_eq(env.app.len, n);
            cr_assert_eq(strlen(env.app.s), n);
            pk_free(&p);
        }
    }
}

Test(wire_msgpack, envelope_in_map16_and_map32_headers_decodes)
{
    static const unsigned char map16[] = {0xde, 0x00, 0x01, 0xa4, 't',
                                          'y',  'p',  'e',  0xa5, 'r',
                                          'e',  'p',  'l',  'y'};
    static const unsigned char map32[] = {
        0xdf, 0x00, 0x00, 0x00, 0x02, 0xa4, 't', 'y', 'p', 'e', 0xa5, 'e',
        'v',  'e',  'n',  't',  0xa5, 'e',  'v', 'e', 'n', 't', 0xa1, 'x'};
    shoal_envelope_t env;

    cr_assert_eq(decode_guarded(map16, sizeof(map16), NULL, &env, NULL, 0), 0);
    cr_assert_eq(env.type, SHOAL_MSG_REPLY);
    cr_assert_eq(decode_guarded(map32, sizeof(map32), NULL, &env, NULL, 0), 0);
    cr_assert_eq(env.type, SHOAL_MSG_EVENT);
    cr_assert_str_eq(env.event.s, "x");
}

Test(wire_msgpack, unknown_type_is_kept_by_name)
{
    packer_t p;
    shoal_envelope_t env;

    pk_envelope_with(&p, "type", "\xa6gossip", 7);
    cr_assert_eq(decode_packed(&p, &env), 0);
    cr_assert_eq(env.type, SHOAL_MSG_UNKNOWN);
    cr_assert_str_eq(env.type_name.s, "gossip");
    pk_free(&p);
}

Test(wire_msgpack, duplicate_keys_keep_the_last_value)
{
    packer_t p;
    shoal_envelope_t env;

    pk_init(&p);
    msgpack_pack_map(&p.pk, 6);
    pk_str(&p, "type");
    pk_str(&p, "call");
    pk_str(&p, "app");
    pk_str(&p, "first-app-name");
    pk_str(&p, "type");
    pk_str(&p, "tell");
    pk_str(&p, "id");
    msgpack_pack_int(&p.pk, 1);
    pk_str(&p, "app");
    pk_str(&p, "b");
    pk_str(&p, "id");
    msgpack_pack_int(&p.pk, 2);
    cr_assert_eq(decode_packed(&p, &env), 0);
    cr_assert_eq(env.type, SHOAL_MSG_TELL);
    cr_assert_str_eq(env.app.s, "b");
    cr_assert_eq(env.app.len, 1);
    cr_assert_eq(env.id, 2);
    pk_free(&p);
}

Test(wire_msgpack, unknown_keys_are_validated_and_ignored)
{
    packer_t p;
    shoal_envelope_t env;

    pk_envelope_with(&p, "future", "\x92\x81\xa1k\xc3\x93\x01\x02\x03", 9);
    cr_assert_eq(decode_packed(&p, &env), 0);
    cr_assert_null(env.msg.data);
    pk_free(&p);

    pk_envelope_with(&p, "future", "\x91\xa2\xc3\x28", 4);
    cr_assert_eq(decode_packed(&p, &env), SHOAL_EBADUTF8);
    pk_free(&p);

    pk_envelope_with(&p, "\xc3\x28", "\x01", 1);
    cr_assert_eq(decode_packed(&p, &env), SHOAL_EBADUTF8);
    pk_free(&p);
}

/* ---- envelopes that do not ------------------------------------------- */

Test(wire_msgpack, name_fields_of_another_type_are_EBADTYPE)
{
    static const char *names[] = {"type",  "app", "action",
                                  "event", "to",  "from"};
    static const struct {
        const char *raw;
        size_t len;
    } bad[] = {
        {RAW("\x05")},
        {RAW("\xff")},
        {RAW("\xc0")},
        {RAW("\xc3")},
        {RAW("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00")},
        {RAW("\x91\xa1x")},
        {RAW("\x81\xa1x\xa1y")},
        {RAW("\x90")},
    };

    for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
            packer_t p;
            shoal_envelope_t env;
            char detail[128];

            pk_envelope_with(&p, names[n], bad[b].raw, bad[b].len);
            cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, NULL, &env,
                                        detail, sizeof(detail)),
                         SHOAL_EBADTYPE, "%s #%zu", names[n], b);
            cr_assert_not_null(strstr(detail, names[n]), "%s", detail);
            pk_free(&p);
        }
    }
}

Test(wire_msgpack, id_of_another_type_or_beyond_int64_is_EBADTYPE)
{
    static const struct {
        const char *raw;
        size_t len;
    } bad[] = {
        {RAW("\xa1\x31")},
        {RAW("\xc0")},
        {RAW("\xc2")},
        {RAW("\xca\x3f\x80\x00\x00")},
        {RAW("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00")},
        {RAW("\x91\x01")},
        {RAW("\x80")},
        {RAW("\xcf\x80\x00\x00\x00\x00\x00\x00\x00")},
        {RAW("\xcf\xff\xff\xff\xff\xff\xff\xff\xff")},
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        packer_t p;
        shoal_envelope_t env;

        pk_envelope_with(&p, "id", bad[b].raw, bad[b].len);
        cr_assert_eq(decode_packed(&p, &env), SHOAL_EBADTYPE, "#%zu", b);
        pk_free(&p);
    }
}

Test(wire_msgpack, name_longer_than_255_bytes_is_ENAMETOOLONG)
{
    unsigned char raw[2 + 256];
    packer_t p;
    shoal_envelope_t env;

    raw[0] = 0xd9;
    raw[1] = 255;
    memset(raw + 2, 'a', 256);
    pk_envelope_with(&p, "action", raw, 2 + 255);
    cr_assert_eq(decode_packed(&p, &env), 0);
    cr_assert_eq(env.action.len, 255);
    pk_free(&p);

    raw[0] = 0xda;
    raw[1] = 0x01;
    raw[2] = 0x00;
    memset(raw + 3, 'a', 255);
    pk_init(&p);
    msgpack_pack_map(&p.pk, 2);
    pk_str(&p, "type");
    pk_str(&p, "call");
    pk_str(&p, "to");
    pk_raw(&p, raw, 3);
    for (int i = 0; i < 256; i++)
        pk_raw(&p, "a", 1);
    cr_assert_eq(decode_packed(&p, &env), SHOAL_ENAMETOOLONG);
    pk_free(&p);
}

Test(wire_msgpack, name_containing_nul_is_EBADTYPE)
{
    packer_t p;
    shoal_envelope_t env;

    pk_envelope_with(&p, "app", "\xa3\x61\x00\x62", 4);
    cr_assert_eq(decode_packed(&p, &env), SHOAL_EBADTYPE);
    pk_free(&p);
}

Test(wire_msgpack, missing_type_is_EBADMSG)
{
    packer_t p;
    shoal_envelope_t env;
    char detail[64];

    pk_init(&p);
    msgpack_pack_map(&p.pk, 1);
    pk_str(&p, "app");
    pk_str(&p, "x");
    cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, NULL, &env, detail,
                                sizeof(detail)),
                 SHOAL_EBADMSG);
    cr_assert_str_eq(detail, "missing \"type\"");
    pk_free(&p);

    cr_assert_eq(decode_guarded("\x80", 1, NULL, &env, NULL, 0),
                 SHOAL_EBADMSG);
}

Test(wire_msgpack, top_level_other_than_a_map_is_ENOTMAP)
{
    static const struct {
        const char *raw;
        size_t len;
    } bad[] = {
        {RAW("\x90")},         {RAW("\x91\x80")}, {RAW("\xa4type")},
        {RAW("\x01")},         {RAW("\xc0")},     {RAW("\xdc\x00\x00")},
        {RAW("\xcb\x00\x00")}, {RAW("{}")},
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        shoal_envelope_t env;

        cr_assert_eq(
            decode_guarded(bad[b].raw, bad[b].len, NULL, &env, NULL, 0),
            SHOAL_ENOTMAP, "#%zu", b);
    }
}

Test(wire_msgpack, input_cut_at_every_length_is_EBADMSGPACK_without_overread)
{
    packer_t p;
    shoal_envelope_t env;
    char detail[128];

    pk_full_envelope(&p);
    for (size_t len = 0; len < p.sb.size; len++) {
        cr_assert_eq(
            decode_guarded(p.sb.data, len, NULL, &env, detail, sizeof(detail)),
            SHOAL_EBADMSGPACK, "len %zu", len);
        cr_assert_not_null(strstr(detail, "truncated at byte"), "%s", detail);
    }
    cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, NULL, &env, NULL, 0), 0);
    pk_free(&p);
}

Test(wire_msgpack, truncation_detail_names_the_byte_offset)
{
    shoal_envelope_t env;
    char detail[128];
    /* {"type": "tell", "msg": "abc" cut after "ab" } */
    static const char frame[] = "\x82\xa4type\xa4tell\xa3msg\xa3"
                                "ab";

    cr_assert_eq(decode_guarded(frame, sizeof(frame) - 1, NULL, &env, detail,
                                sizeof(detail)),
                 SHOAL_EBADMSGPACK);
    cr_assert_str_eq(detail, "invalid MessagePack: truncated at byte 15");
}

Test(wire_msgpack, containers_claiming_more_items_than_bytes_are_refused)
{
    shoal_envelope_t env;

    cr_assert_eq(
        decode_guarded("\xdf\xff\xff\xff\xff", 5, NULL, &env, NULL, 0),
        SHOAL_EBADMSGPACK);
    cr_assert_eq(decode_guarded("\x81\xa3msg\xdd\xff\xff\xff\xff\x01", 11,
                                NULL, &env, NULL, 0),
                 SHOAL_EBADMSGPACK);
    cr_assert_eq(decode_guarded("\x81\xa3msg\xdb\xff\xff\xff\xff\x01", 11,
                                NULL, &env, NULL, 0),
                 SHOAL_EBADMSGPACK);
}

Test(wire_msgpack, bin_ext_and_0xc1_are_EBADMSGPACK_with_a_reason)
{
    static const struct {
        const char *raw;
        size_t len;
        const char *why;
    } bad[] = {
        {RAW("\xc4\x01\x00"), "bin"},
        {RAW("\xc5\x00\x01\x00"), "bin"},
        {RAW("\xc6\x00\x00\x00\x01\x00"), "bin"},
        {RAW("\xc7\x01\x01\x00"), "ext"},
        {RAW("\xc8\x00\x01\x01\x00"), "ext"},
        {RAW("\xc9\x00\x00\x00\x01\x01\x00"), "ext"},
        {RAW("\xd4\x01\x00"), "ext"},
        {RAW("\xd5\x01\x00\x00"), "ext"},
        {RAW("\xd6\x01\x00\x00\x00\x00"), "ext"},
        {RAW("\xd7\x01\x00\x00\x00\x00\x00\x00\x00\x00"), "ext"},
        {RAW("\xd8\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
             "\x00\x00"),
         "ext"},
        {RAW("\xc1"), "0xc1"},
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        unsigned char nested[32];
        packer_t p;
        shoal_envelope_t env;
        char detail[128];

        /* At the top of a payload ... */
        pk_envelope_with(&p, "msg", bad[b].raw, bad[b].len);
        cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, NULL, &env, detail,
                                    sizeof(detail)),
                     SHOAL_EBADMSGPACK, "#%zu", b);
        cr_assert_not_null(strstr(detail, bad[b].why), "%s", detail);
        pk_free(&p);

        /* ... and inside a map in an unknown field. */
        nested[0] = 0x91;
        nested[1] = 0x81;
        nested[2] = 0xa1;
        nested[3] = 'k';
        memcpy(nested + 4, bad[b].raw, bad[b].len);
        pk_envelope_with(&p, "zzz", nested, 4 + bad[b].len);
        cr_assert_eq(decode_packed(&p, &env), SHOAL_EBADMSGPACK, "#%zu", b);
        pk_free(&p);
    }
}

Test(wire_msgpack, map_keys_that_are_not_str_are_EBADTYPE_at_every_level)
{
    static const struct {
        const char *raw;
        size_t len;
    } bad[] = {
        /* { 1: "x", "type": "tell" } */
        {RAW("\x82\x01\xa1x\xa4type\xa4tell")},
        /* { "type": "tell", "msg": { 1: 2 } } */
        {RAW("\x82\xa4type\xa4tell\xa3msg\x81\x01\x02")},
        /* { "type": "tell", "args": [ { "a": { nil: 1 } } ] } */
        {RAW("\x82\xa4type\xa4tell\xa4"
             "args\x91\x81\xa1"
             "a\x81\xc0\x01")},
        /* { "type": "tell", "msg": { [ ]: 1 } } */
        {RAW("\x82\xa4type\xa4tell\xa3msg\x81\x90\x01")},
        /* { "type": "tell", "x": { "a": 1, 2.0: 1 } } */
        {RAW("\x82\xa4type\xa4tell\xa1x\x82\xa1"
             "a\x01\xca\x40\x00\x00\x00\x01")},
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        shoal_envelope_t env;
        char detail[128];

        cr_assert_eq(decode_guarded(bad[b].raw, bad[b].len, NULL, &env, detail,
                                    sizeof(detail)),
                     SHOAL_EBADTYPE, "#%zu", b);
        cr_assert_not_null(strstr(detail, "key"), "%s", detail);
    }
}

Test(wire_msgpack, invalid_utf8_in_any_string_is_EBADUTF8)
{
    static const char *bad[] = {
        "\xc3\x28",         /* bad continuation */
        "\xc0\xaf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xff",
        "ok\x80",
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        unsigned char raw[16];
        size_t n = strlen(bad[b]);
        packer_t p;
        shoal_envelope_t env;
        char detail[128];

        raw[0] = (unsigned char)(0xa0 | n);
        memcpy(raw + 1, bad[b], n);
        pk_envelope_with(&p, "from", raw, n + 1);
        cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, NULL, &env, detail,
                                    sizeof(detail)),
                     SHOAL_EBADUTF8, "#%zu", b);
        cr_assert_not_null(strstr(detail, "UTF-8"));
        pk_free(&p);

        raw[0] = 0x91;
        raw[1] = (unsigned char)(0xa0 | n);
        memcpy(raw + 2, bad[b], n);
        pk_envelope_with(&p, "result", raw, n + 2);
        cr_assert_eq(decode_packed(&p, &env), SHOAL_EBADUTF8, "#%zu", b);
        pk_free(&p);
    }
}

Test(wire_msgpack, invalid_utf8_detail_names_the_bad_byte)
{
    shoal_envelope_t env;
    char detail[128];
    /* {"type": "tell", "to": "ok\xff"}: the bad byte is at 17. */
    static const char frame[] = "\x82\xa4type\xa4tell\xa2to\xa3ok\xff";

    cr_assert_eq(decode_guarded(frame, sizeof(frame) - 1, NULL, &env, detail,
                                sizeof(detail)),
                 SHOAL_EBADUTF8);
    cr_assert_str_eq(detail, "invalid UTF-8 in string at byte 17");
}

/* {"type": "tell", key: depth - 1 nested containers}: the envelope is at
 * depth 1, so the innermost container sits at `depth`. */
static void pk_nested(packer_t *p, const char *key, unsigned depth, bool map)
{
    pk_init(p);
    msgpack_pack_map(&p->pk, 2);
    pk_str(p, "type");
    pk_str(p, "tell");
    pk_str(p, key);
    for (unsigned i = 2; i < depth; i++)
        pk_raw(p, map ? "\x81\xa1k" : "\x91", map ? 3 : 1);
    pk_raw(p, map ? "\x80" : "\x90", 1);
}

Test(wire_msgpack, nesting_at_the_limit_passes_and_one_past_is_ETOODEEP)
{
    static const unsigned limits_to_try[] = {2, 3, 5, 64, 256};
    static const char *keys[] = {"msg", "unknown"};

    for (size_t l = 0; l < sizeof(limits_to_try) / sizeof(unsigned); l++) {
        for (size_t k = 0; k < 2; k++) {
            for (int map = 0; map < 2; map++) {
                shoal_limits_t limits;
                shoal_envelope_t env;
                packer_t p;

                shoal_limits_default(&limits);
                limits.max_depth = limits_to_try[l];
                pk_nested(&p, keys[k], limits.max_depth, map);
                cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, &limits,
                                            &env, NULL, 0),
                             0, "limit %u", limits.max_depth);
                pk_free(&p);
                pk_nested(&p, keys[k], limits.max_depth + 1, map);
                cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, &limits,
                                            &env, NULL, 0),
                             SHOAL_ETOODEEP, "limit %u", limits.max_depth);
                pk_free(&p);
            }
        }
    }
}

Test(wire_msgpack, depth_limit_of_one_allows_only_flat_envelopes)
{
    shoal_limits_t limits;
    shoal_envelope_t env;

    shoal_limits_default(&limits);
    limits.max_depth = 1;
    cr_assert_eq(
        decode_guarded("\x81\xa4type\xa4tell", 11, &limits, &env, NULL, 0), 0);
    cr_assert_eq(decode_guarded("\x82\xa4type\xa4tell\xa3msg\x90", 16, &limits,
                                &env, NULL, 0),
                 SHOAL_ETOODEEP);
    limits.max_depth = 0;
    cr_assert_eq(
        decode_guarded("\x81\xa4type\xa4tell", 11, &limits, &env, NULL, 0),
        SHOAL_ETOODEEP);
}

Test(wire_msgpack, depth_limit_above_the_cap_is_held_to_the_cap)
{
    shoal_limits_t limits;
    shoal_envelope_t env;
    packer_t p;

    shoal_limits_default(&limits);
    limits.max_depth = 100000;
    pk_nested(&p, "msg", SHOAL_MAX_DEPTH_CAP, false);
    cr_assert_eq(decode_packed(&p, &env), SHOAL_ETOODEEP);
    cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, &limits, &env, NULL, 0),
                 0);
    pk_free(&p);
    pk_nested(&p, "msg", 5000, false);
    cr_assert_eq(decode_guarded(p.sb.data, p.sb.size, &limits, &env, NULL, 0),
                 SHOAL_ETOODEEP);
    pk_free(&p);
}

Test(wire_msgpack, trailing_bytes_after_the_map_are_EBADMSGPACK)
{
    shoal_envelope_t env;
    char detail[128];

    cr_assert_eq(decode_guarded("\x81\xa4type\xa4tell\x00", 12, NULL, &env,
                                detail, sizeof(detail)),
                 SHOAL_EBADMSGPACK);
    cr_assert_str_eq(detail,
                     "invalid MessagePack: 1 trailing bytes at byte 11");
    cr_assert_eq(
        decode_guarded("\x81\xa4type\xa4tell\x80", 12, NULL, &env, NULL, 0),
        SHOAL_EBADMSGPACK);
}

Test(wire_msgpack, detail_is_optional_and_bounded)
{
    shoal_envelope_t env;
    char detail[8];

    cr_assert_eq(decode_guarded("\x81\xa4type", 6, NULL, &env, NULL, 0),
                 SHOAL_EBADMSGPACK);
    memset(detail, 'x', sizeof(detail));
    cr_assert_eq(
        decode_guarded("\x81\xa4type", 6, NULL, &env, detail, sizeof(detail)),
        SHOAL_EBADMSGPACK);
    cr_assert_eq(strlen(detail), sizeof(detail) - 1);
    cr_assert_eq(decode_guarded("\x81\xa4type", 6, NULL, &env, detail, 0),
                 SHOAL_EBADMSGPACK);
}

/* ---- MessagePack -> JSON ---------------------------------------------- */

static int to_json(const void *mp, size_t len, char *out, size_t out_len)
{
    shoal_buf_t b = {0};
    guard_buf_t g = {NULL, 0, NULL};
    int rc;

    cr_assert_eq(guard_buf_init(&g, mp, len), 0);
    rc = shoal__msgpack_to_json(g.data, len, &b);
    guard_buf_free(&g);
    if (rc == 0) {
        cr_assert_lt(b.len, out_len);
        memcpy(out, b.base, b.len);
        out[b.len] = '\0';
    } else {
        cr_assert_eq(b.len, 0);
    }
    shoal_buf_free(&b);
    return rc;
}

Test(wire_msgpack, scalars_become_their_json_text)
{
    static const struct {
        const char *raw;
        size_t len;
        const char *json;
    } cases[] = {
        {RAW("\xc0"), "null"},
        {RAW("\xc2"), "false"},
        {RAW("\xc3"), "true"},
        {RAW("\x00"), "0"},
        {RAW("\x7f"), "127"},
        {RAW("\xe0"), "-32"},
        {RAW("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), "18446744073709551615"},
        {RAW("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), "-9223372036854775808"},
        {RAW("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"), "1.0"},
        {RAW("\xcb\xbf\xf8\x00\x00\x00\x00\x00\x00"), "-1.5"},
        {RAW("\xcb\x80\x00\x00\x00\x00\x00\x00\x00"), "-0.0"},
        {RAW("\xcb\x44\x15\xaf\x1d\x78\xb5\x8c\x40"), "1e+20"},
        {RAW("\xca\x3f\x80\x00\x00"), "1.0"},
        {RAW("\xca\x3e\x80\x00\x00"), "0.25"},
        {RAW("\xa0"), "\"\""},
        {RAW("\xa5\xc3\xa9t\xc3\xa9"), "\"\xc3\xa9t\xc3\xa9\""},
        {RAW("\xa6q\"b\\\n\x01"), "\"q\\\"b\\\\\\n\\u0001\""},
        {RAW("\x90"), "[]"},
        {RAW("\x80"), "{}"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];

        cr_assert_eq(to_json(cases[i].raw, cases[i].len, out, sizeof(out)), 0,
                     "#%zu", i);
        cr_assert_str_eq(out, cases[i].json, "#%zu", i);
    }
}

Test(wire_msgpack, floats_print_with_17_digits_and_read_back_exactly)
{
    static const double values[] = {
        0.1,      -2.5e-300,           1.7976931348623157e308,
        4.9e-324, 123456789.123456789, 1e21};

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        packer_t p;
        char out[64];

        pk_init(&p);
        msgpack_pack_double(&p.pk, values[i]);
        cr_assert_eq(to_json(p.sb.data, p.sb.size, out, sizeof(out)), 0);
        cr_assert_eq(strtod(out, NULL), values[i], "%s", out);
        cJSON *j = cJSON_Parse(out);
        cr_assert(cJSON_IsNumber(j), "%s", out);
        cJSON_Delete(j);
        pk_free(&p);
    }
}

Test(wire_msgpack, nested_values_become_compact_json)
{
    char out[256];
    packer_t p;

    pk_init(&p);
    msgpack_pack_map(&p.pk, 3);
    pk_str(&p, "a");
    msgpack_pack_array(&p.pk, 3);
    msgpack_pack_int(&p.pk, 1);
    msgpack_pack_map(&p.pk, 0);
    msgpack_pack_array(&p.pk, 1);
    msgpack_pack_array(&p.pk, 0);
    pk_str(&p, "b");
    msgpack_pack_map(&p.pk, 2);
    pk_str(&p, "c");
    msgpack_pack_nil(&p.pk);
    pk_str(&p, "d");
    msgpack_pack_array(&p.pk, 2);
    pk_str(&p, "x");
    msgpack_pack_false(&p.pk);
    pk_str(&p, "");
    msgpack_pack_int(&p.pk, -7);
    cr_assert_eq(to_json(p.sb.data, p.sb.size, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "{\"a\":[1,{},[[]]],\"b\":{\"c\":null,\"d\":"
                          "[\"x\",false]},\"\":-7}");
    pk_free(&p);
}

Test(wire_msgpack, to_json_refuses_what_json_cannot_hold)
{
    static const struct {
        const char *raw;
        size_t len;
        int err;
    } bad[] = {
        {RAW("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), SHOAL_EBADTYPE},
        {RAW("\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00"), SHOAL_EBADTYPE},
        {RAW("\x91\xcb\xff\xf0\x00\x00\x00\x00\x00\x00"), SHOAL_EBADTYPE},
        {RAW("\xca\x7f\xc0\x00\x00"), SHOAL_EBADTYPE},
        {RAW("\x81\x01\x02"), SHOAL_EBADTYPE},
        {RAW("\x92\x01\xc4\x00"), SHOAL_EBADMSGPACK},
        {RAW("\xd4\x00\x00"), SHOAL_EBADMSGPACK},
        {RAW("\xc1"), SHOAL_EBADMSGPACK},
        {RAW("\x01\x02"), SHOAL_EBADMSGPACK},
        {RAW("\x92\x01"), SHOAL_EBADMSGPACK},
        {RAW(""), SHOAL_EBADMSGPACK},
        {RAW("\xa1\xff"), SHOAL_EBADUTF8},
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        char out[64];

        cr_assert_eq(to_json(bad[b].raw, bad[b].len, out, sizeof(out)),
                     bad[b].err, "#%zu", b);
    }
}

Test(wire_msgpack, to_json_restores_the_buffer_on_error)
{
    shoal_buf_t b = {0};

    cr_assert_eq(shoal_buf_append(&b, "keep", 4), 0);
    cr_assert_eq(shoal__msgpack_to_json("\x93\xa1x\x01\xc1", 5, &b),
                 SHOAL_EBADMSGPACK);
    cr_assert_eq(b.len, 4);
    cr_assert_eq(memcmp(b.base, "keep", 4), 0);
    shoal_buf_free(&b);
}

Test(wire_msgpack, to_json_of_every_prefix_never_overreads)
{
    packer_t p;

    pk_full_envelope(&p);
    for (size_t len = 0; len < p.sb.size; len++) {
        char out[1024];

        cr_assert_eq(to_json(p.sb.data, len, out, sizeof(out)),
                     SHOAL_EBADMSGPACK, "len %zu", len);
    }
    pk_free(&p);
}

Test(wire_msgpack, deeply_nested_values_are_refused_past_the_cap)
{
    unsigned char raw[SHOAL_MAX_DEPTH_CAP + 2];
    shoal_buf_t b = {0};

    memset(raw, 0x91, sizeof(raw));
    raw[SHOAL_MAX_DEPTH_CAP - 1] = 0x90;
    cr_assert_eq(shoal__msgpack_to_json((char *)raw, SHOAL_MAX_DEPTH_CAP, &b),
                 0);
    cr_assert_eq(b.len, 2 * SHOAL_MAX_DEPTH_CAP);
    b.len = 0;
    raw[SHOAL_MAX_DEPTH_CAP - 1] = 0x91;
    raw[SHOAL_MAX_DEPTH_CAP] = 0x90;
    cr_assert_eq(
        shoal__msgpack_to_json((char *)raw, SHOAL_MAX_DEPTH_CAP + 1, &b),
        SHOAL_ETOODEEP);
    shoal_buf_free(&b);
}

/* ---- MessagePack -> cJSON --------------------------------------------- */

Test(wire_msgpack, payload_to_cjson_builds_the_same_tree_as_json_would)
{
    packer_t p;
    shoal_payload_t pl;
    cJSON *got, *want;

    pk_init(&p);
    msgpack_pack_map(&p.pk, 4);
    pk_str(&p, "list");
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_int(&p.pk, -3);
    msgpack_pack_double(&p.pk, 2.5);
    msgpack_pack_true(&p.pk);
    msgpack_pack_nil(&p.pk);
    pk_str(&p, "text");
    pk_str(&p, "caf\xc3\xa9 \"quoted\"");
    pk_str(&p, "empty");
    msgpack_pack_map(&p.pk, 0);
    /* A key longer than the builder's small buffer. */
    pk_str(&p, "a key that is rather longer than sixty-four bytes, to take "
               "the heap path");
    pk_str(&p, "and a value that is long as well, longer than sixty-four "
               "bytes for sure");
    pl.data = p.sb.data;
    pl.len = p.sb.size;
    pl.codec = SHOAL_CODEC_MSGPACK;
    got = shoal_payload_to_cjson(&pl);
    want = cJSON_Parse(
        "{\"list\":[-3,2.5,true,null],\"text\":\"caf\xc3\xa9 \\\"quoted\\\"\","
        "\"empty\":{},\"a key that is rather longer than sixty-four bytes, "
        "to take the heap path\":\"and a value that is long as well, longer "
        "than sixty-four bytes for sure\"}");
    cr_assert_not_null(got);
    cr_assert_not_null(want);
    cr_assert(cJSON_Compare(got, want, true));
    cJSON_Delete(got);
    cJSON_Delete(want);
    pk_free(&p);
}

Test(wire_msgpack, payload_to_cjson_turns_integers_past_2_53_into_doubles)
{
    shoal_payload_t pl = {RAW("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
                          SHOAL_CODEC_MSGPACK};
    cJSON *got = shoal_payload_to_cjson(&pl);

    cr_assert(cJSON_IsNumber(got));
    cr_assert_eq(got->valuedouble, 18446744073709551615.0);
    cJSON_Delete(got);
}

Test(wire_msgpack, payload_to_cjson_refuses_bad_input)
{
    static const struct {
        const char *raw;
        size_t len;
        shoal_codec_t codec;
    } bad[] = {
        {RAW("\x81\x01\x02"), SHOAL_CODEC_MSGPACK},
        {RAW("\x91\xc4\x00"), SHOAL_CODEC_MSGPACK},
        {RAW("\xa1\xff"), SHOAL_CODEC_MSGPACK},
        {RAW("\x01\x01"), SHOAL_CODEC_MSGPACK},
        {RAW("\x92\x01"), SHOAL_CODEC_MSGPACK},
        {RAW("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), SHOAL_CODEC_MSGPACK},
        {RAW("[1,"), SHOAL_CODEC_JSON},
        {RAW("{} x"), SHOAL_CODEC_JSON},
        {RAW("1"), SHOAL_CODEC_NONE},
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        shoal_payload_t pl = {bad[b].raw, bad[b].len, bad[b].codec};

        cr_assert_null(shoal_payload_to_cjson(&pl), "#%zu", b);
    }
    cr_assert_null(shoal_payload_to_cjson(NULL));
}

Test(wire_msgpack, payload_to_cjson_accepts_json_with_surrounding_space)
{
    shoal_payload_t pl = {RAW("[1, 2]\r\n "), SHOAL_CODEC_JSON};
    cJSON *got = shoal_payload_to_cjson(&pl);

    cr_assert(cJSON_IsArray(got));
    cr_assert_eq(cJSON_GetArraySize(got), 2);
    cJSON_Delete(got);
}
