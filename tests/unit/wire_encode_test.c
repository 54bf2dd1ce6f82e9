/* Envelope encoding, transcoding, error values and the cJSON bridge. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <msgpack.h>
#include <uv.h>

#include "shoal/wire.h"
#include "wire_internal.h"

/* A string literal and its length without the NUL. */
#define RAW(s) s, sizeof(s) - 1

static const shoal_framing_t framings[] = {
    SHOAL_FRAMING_NDJSON, SHOAL_FRAMING_JSONSOCKET, SHOAL_FRAMING_MSGPACK};

/* ---- helpers --------------------------------------------------------- */

static void set_name(shoal_name_t *name, const char *s)
{
    size_t n = strlen(s);

    cr_assert_leq(n, SHOAL_MAX_NAME_BYTES);
    memcpy(name->s, s, n + 1);
    name->len = (uint8_t)n;
    name->present = true;
}

static shoal_payload_t json_payload(const char *text)
{
    shoal_payload_t pl = {text, strlen(text), SHOAL_CODEC_JSON};

    return pl;
}

/* Transcodes a JSON text to MessagePack into a buffer the caller frees. */
static shoal_payload_t mp_payload(const char *json, shoal_buf_t *store)
{
    shoal_payload_t in = json_payload(json), out;

    shoal_buf_init(store);
    cr_assert_eq(shoal_wire_transcode(&in, SHOAL_CODEC_MSGPACK, store), 0,
                 "%s", json);
    out.data = store->base;
    out.len = store->len;
    out.codec = SHOAL_CODEC_MSGPACK;
    return out;
}

/* Asserts that two payloads, in any codecs, hold the same value. */
static void assert_same_value(const shoal_payload_t *a,
                              const shoal_payload_t *b)
{
    cJSON *ja = shoal_payload_to_cjson(a);
    cJSON *jb = shoal_payload_to_cjson(b);

    cr_assert_not_null(ja, "%.*s", (int)a->len, a->data);
    cr_assert_not_null(jb, "%.*s", (int)b->len, b->data);
    cr_assert(cJSON_Compare(ja, jb, true), "%.*s vs %.*s", (int)a->len,
              a->data, (int)b->len, b->data);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
}

static void assert_same_name(const shoal_name_t *a, const shoal_name_t *b)
{
    cr_assert_eq(a->present, b->present);
    cr_assert_eq(a->len, b->len);
    cr_assert_eq(memcmp(a->s, b->s, a->len), 0, "%s vs %s", a->s, b->s);
    cr_assert_eq(b->s[b->len], '\0');
}

/* Cuts the one frame in buf and decodes it. */
static void cut_and_decode(shoal_framing_t framing, const shoal_buf_t *buf,
                           shoal_envelope_t *env)
{
    shoal_cut_state_t st;
    shoal_frame_t frame;
    shoal_framing_t detected;
    char detail[128] = "";
    ssize_t n;

    cr_assert_eq(shoal_wire_detect(buf->base, buf->len, &detected), 1);
    cr_assert_eq(detected, framing);
    shoal_cut_reset(&st);
    n = shoal_wire_cut(framing, buf->base, buf->len, NULL, &st, &frame);
    cr_assert_eq(n, (ssize_t)buf->len, "cut %zd of %zu", n, buf->len);
    cr_assert_eq(shoal_wire_decode(shoal_framing_codec(framing), frame.data,
                                   frame.len, NULL, env, detail,
                                   sizeof(detail)),
                 0, "%s: %.*s", detail, (int)frame.len, frame.data);
}

/* The payload texts of the full envelope, in field order. */
static const char *full_texts[6] = {
    "[1, \"two\", {\"three\": 3.5, \"big\": 18446744073709551615}]",
    ("{\"text\": \"line1\\nline2 \\u00e9 \\ud83d\\ude00 \\\"q\\\"\",\n"
     " \"n\": -5}"),
    "6",
    "{\"code\": \"ENOAPP\", \"message\": \"no such app\"}",
    "null",
    "{\"name\": \"n1\", \"applications\": [], \"load\": 0.25}",
};

/* An envelope with every field set; payloads in codec (NONE: mixed). */
static void full_envelope(shoal_envelope_t *env, shoal_codec_t codec,
                          shoal_buf_t store[6])
{
    shoal_payload_t *pl[] = {&env->args,  &env->msg,  &env->result,
                             &env->error, &env->data, &env->node};

    shoal_envelope_init(env);
    env->type = SHOAL_MSG_CALL;
    env->has_id = true;
    env->id = -1234567890123;
    set_name(&env->from, "node-\xc3\xa9t\xc3\xa9");
    set_name(&env->to, "node b");
    set_name(&env->app, "collatz");
    set_name(&env->action, "a\"b\\c\x01\t");
    set_name(&env->event, "tick");
    for (int i = 0; i < 6; i++) {
        bool mp = codec == SHOAL_CODEC_MSGPACK ||
                  (codec == SHOAL_CODEC_NONE && i % 2 == 1);

        shoal_buf_init(&store[i]);
        *pl[i] = mp ? mp_payload(full_texts[i], &store[i])
                    : json_payload(full_texts[i]);
    }
}

static void free_store(shoal_buf_t store[6])
{
    for (int i = 0; i < 6; i++)
        shoal_buf_free(&store[i]);
}

static void assert_same_envelope(const shoal_envelope_t *a,
                                 const shoal_envelope_t *b)
{
    const shoal_payload_t *pa[] = {&a->args,  &a->msg,  &a->result,
                                   &a->error, &a->data, &a->node};
    const shoal_payload_t *pb[] = {&b->args,  &b->msg,  &b->result,
                                   &b->error, &b->data, &b->node};

    cr_assert_eq(a->type, b->type);
    cr_assert_eq(a->has_id, b->has_id);
    cr_assert_eq(a->id, b->id);
    assert_same_name(&a->from, &b->from);
    assert_same_name(&a->to, &b->to);
    assert_same_name(&a->app, &b->app);
    assert_same_name(&a->action, &b->action);
    assert_same_name(&a->event, &b->event);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(pa[i]->data == NULL, pb[i]->data == NULL, "#%d", i);
        if (pa[i]->data != NULL)
            assert_same_value(pa[i], pb[i]);
    }
}

/* ---- envelopes -------------------------------------------------------- */

Test(wire_encode, full_envelope_round_trips_in_every_framing_and_codec)
{
    static const shoal_codec_t codecs[] = {
        SHOAL_CODEC_JSON, SHOAL_CODEC_MSGPACK, SHOAL_CODEC_NONE};

    for (size_t f = 0; f < 3; f++) {
        for (size_t c = 0; c < 3; c++) {
            shoal_envelope_t env, back;
            shoal_buf_t store[6], buf = {0};
            shoal_codec_t want = shoal_framing_codec(framings[f]);

            full_envelope(&env, codecs[c], store);
            cr_assert_eq(shoal_wire_encode(framings[f], &env, &buf), 0);
            cut_and_decode(framings[f], &buf, &back);
            assert_same_envelope(&env, &back);
            cr_assert_str_eq(back.type_name.s, "call");
            /* Payloads arrive in the framing's codec. */
            cr_assert_eq(back.args.codec, want);
            cr_assert_eq(back.msg.codec, want);
            shoal_buf_free(&buf);
            free_store(store);
        }
    }
}

Test(wire_encode, frames_appended_back_to_back_cut_apart)
{
    for (size_t f = 0; f < 3; f++) {
        shoal_envelope_t env, back;
        shoal_buf_t store[6], buf = {0};
        shoal_cut_state_t st;
        shoal_frame_t frame;
        size_t at = 0;

        full_envelope(&env, SHOAL_CODEC_NONE, store);
        for (int i = 0; i < 3; i++) {
            env.id = i;
            cr_assert_eq(shoal_wire_encode(framings[f], &env, &buf), 0);
        }
        shoal_cut_reset(&st);
        for (int i = 0; i < 3; i++) {
            ssize_t n = shoal_wire_cut(framings[f], buf.base + at,
                                       buf.len - at, NULL, &st, &frame);

            cr_assert_gt(n, 0);
            at += (size_t)n;
            cr_assert_eq(shoal_wire_decode(shoal_framing_codec(framings[f]),
                                           frame.data, frame.len, NULL, &back,
                                           NULL, 0),
                         0);
            cr_assert_eq(back.id, i);
        }
        cr_assert_eq(at, buf.len);
        shoal_buf_free(&buf);
        free_store(store);
    }
}

Test(wire_encode, json_fields_are_written_in_the_documented_order)
{
    shoal_envelope_t env;
    shoal_buf_t buf = {0};
    static const char want[] =
        "{\"type\":\"call\",\"id\":7,\"from\":\"a\",\"to\":\"b\",\"app\":"
        "\"c\","
        "\"action\":\"d\",\"event\":\"e\",\"args\":[1],\"msg\":2,"
        "\"result\":3,\"error\":{},\"data\":4,\"node\":{}}\n";

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_CALL;
    env.has_id = true;
    env.id = 7;
    set_name(&env.event, "e");
    set_name(&env.action, "d");
    set_name(&env.app, "c");
    set_name(&env.to, "b");
    set_name(&env.from, "a");
    env.node = json_payload("{}");
    env.data = json_payload("4");
    env.error = json_payload("{}");
    env.result = json_payload("3");
    env.msg = json_payload("2");
    env.args = json_payload("[1]");
    cr_assert_eq(shoal_wire_encode(SHOAL_FRAMING_NDJSON, &env, &buf), 0);
    cr_assert_eq(buf.len, sizeof(want) - 1);
    cr_assert_eq(memcmp(buf.base, want, buf.len), 0, "%.*s", (int)buf.len,
                 buf.base);
    shoal_buf_free(&buf);
}

Test(wire_encode, msgpack_fields_are_written_in_order_as_msgpack_c_would)
{
    shoal_envelope_t env;
    shoal_buf_t buf = {0};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const char *keys[] = {"from", "to", "app", "action", "event"};

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_REPLY;
    env.has_id = true;
    env.id = 300;
    set_name(&env.from, "a");
    set_name(&env.to, "b");
    set_name(&env.app, "c");
    set_name(&env.action, "a name that is longer than 31 bytes");
    set_name(&env.event, "e");
    env.result = (shoal_payload_t){RAW("\x06"), SHOAL_CODEC_MSGPACK};
    env.data = (shoal_payload_t){RAW("\x91\xc0"), SHOAL_CODEC_MSGPACK};
    cr_assert_eq(shoal_wire_encode(SHOAL_FRAMING_MSGPACK, &env, &buf), 0);

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, "reply", 5);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_int64(&pk, 300);
    for (int i = 0; i < 5; i++) {
        const shoal_name_t *names[] = {&env.from, &env.to, &env.app,
                                       &env.action, &env.event};

        msgpack_pack_str_with_body(&pk, keys[i], strlen(keys[i]));
        msgpack_pack_str_with_body(&pk, names[i]->s, names[i]->len);
    }
    msgpack_pack_str_with_body(&pk, "result", 6);
    msgpack_pack_int(&pk, 6);
    msgpack_pack_str_with_body(&pk, "data", 4);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_nil(&pk);
    cr_assert_eq(buf.len, sb.size);
    cr_assert_eq(memcmp(buf.base, sb.data, sb.size), 0);
    msgpack_sbuffer_destroy(&sb);
    shoal_buf_free(&buf);
}

Test(wire_encode, msgpack_id_takes_the_smallest_integer_form)
{
    static const int64_t ids[] = {
        0,         1,      127,    128,          255,
        256,       65535,  65536,  4294967295LL, 4294967296LL,
        INT64_MAX, -1,     -32,    -33,          -128,
        -129,      -32768, -32769, INT32_MIN,    (int64_t)INT32_MIN - 1,
        INT64_MIN};
    static const size_t sizes[] = {1, 1, 1, 2, 2, 3, 3, 5, 5, 9, 9,
                                   1, 1, 2, 2, 3, 3, 5, 5, 9, 9};

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        shoal_envelope_t env, back;
        shoal_buf_t buf = {0};
        msgpack_sbuffer sb;
        msgpack_packer pk;
        /* {"type": "tell", "id": ...} before the id is 15 bytes. */
        const size_t head = 1 + 5 + 5 + 3;

        shoal_envelope_init(&env);
        env.type = SHOAL_MSG_TELL;
        env.has_id = true;
        env.id = ids[i];
        cr_assert_eq(shoal_wire_encode(SHOAL_FRAMING_MSGPACK, &env, &buf), 0);
        cr_assert_eq(buf.len - head, sizes[i], "id %lld", (long long)ids[i]);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_int64(&pk, ids[i]);
        cr_assert_eq(sb.size, sizes[i]);
        cr_assert_eq(memcmp(buf.base + head, sb.data, sb.size), 0);
        cut_and_decode(SHOAL_FRAMING_MSGPACK, &buf, &back);
        cr_assert_eq(back.id, ids[i]);
        msgpack_sbuffer_destroy(&sb);
        shoal_buf_free(&buf);
    }
}

Test(wire_encode, ndjson_frame_of_a_payload_with_raw_newlines_is_one_line)
{
    shoal_envelope_t env, back;
    shoal_buf_t buf = {0};
    const char *text = "{\n  \"a\": [1,\r\n    2],\n  \"b\": \"x\\ny\"\r\n}\n";
    shoal_payload_t orig = json_payload(text);

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_TELL;
    set_name(&env.app, "echo");
    env.msg = orig;
    cr_assert_eq(shoal_wire_encode(SHOAL_FRAMING_NDJSON, &env, &buf), 0);
    cr_assert_eq(memchr(buf.base, '\n', buf.len), buf.base + buf.len - 1);
    cr_assert_null(memchr(buf.base, '\r', buf.len));
    cut_and_decode(SHOAL_FRAMING_NDJSON, &buf, &back);
    assert_same_value(&orig, &back.msg);
    shoal_buf_free(&buf);
}

Test(wire_encode, json_socket_prefix_is_the_utf8_byte_length)
{
    shoal_envelope_t env, back;
    shoal_buf_t buf = {0};
    char *hash;
    unsigned long n;

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_TELL;
    set_name(&env.app, "\xe6\x97\xa5\xe6\x9c\xac");
    env.msg = json_payload("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    cr_assert_eq(shoal_wire_encode(SHOAL_FRAMING_JSONSOCKET, &env, &buf), 0);
    hash = memchr(buf.base, '#', buf.len);
    cr_assert_not_null(hash);
    n = strtoul(buf.base, NULL, 10);
    cr_assert_eq(n, buf.len - (size_t)(hash + 1 - buf.base));
    cr_assert_eq(n,
                 strlen("{\"type\":\"tell\",\"app\":\"\",\"msg\":\"caf \"}") +
                     6 + 2 + 4);
    cut_and_decode(SHOAL_FRAMING_JSONSOCKET, &buf, &back);
    cr_assert_str_eq(back.app.s, "\xe6\x97\xa5\xe6\x9c\xac");
    shoal_buf_free(&buf);
}

Test(wire_encode, json_socket_prefix_grows_past_one_digit_boundaries)
{
    static const size_t lens[] = {0, 1, 60, 100, 1000, 10000, 100000};

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        shoal_envelope_t env, back;
        shoal_buf_t buf = {0}, text = {0};

        cr_assert_eq(shoal_buf_append(&text, "\"", 1), 0);
        for (size_t k = 0; k < lens[i]; k++)
            cr_assert_eq(shoal_buf_append(&text, "x", 1), 0);
        cr_assert_eq(shoal_buf_append(&text, "\"", 1), 0);
        shoal_envelope_init(&env);
        env.type = SHOAL_MSG_EVENT;
        env.data = (shoal_payload_t){text.base, text.len, SHOAL_CODEC_JSON};
        cr_assert_eq(shoal_buf_append(&buf, "", 0), 0);
        cr_assert_eq(shoal_wire_encode(SHOAL_FRAMING_JSONSOCKET, &env, &buf),
                     0);
        cut_and_decode(SHOAL_FRAMING_JSONSOCKET, &buf, &back);
        cr_assert_eq(back.data.len, text.len);
        shoal_buf_free(&buf);
        shoal_buf_free(&text);
    }
}

Test(wire_encode, unknown_type_is_forwarded_by_its_name)
{
    for (size_t f = 0; f < 3; f++) {
        shoal_envelope_t env, back;
        shoal_buf_t buf = {0};

        shoal_envelope_init(&env);
        set_name(&env.type_name, "gossip");
        cr_assert_eq(shoal_wire_encode(framings[f], &env, &buf), 0);
        cut_and_decode(framings[f], &buf, &back);
        cr_assert_eq(back.type, SHOAL_MSG_UNKNOWN);
        cr_assert_str_eq(back.type_name.s, "gossip");
        shoal_buf_free(&buf);
    }
}

Test(wire_encode, encoders_restore_the_buffer_on_error)
{
    static const char nan_mp[] = "\x91\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00";

    for (size_t f = 0; f < 3; f++) {
        shoal_envelope_t env;
        shoal_buf_t buf = {0};
        int want = f < 2 ? SHOAL_EBADTYPE : SHOAL_EBADJSON;

        cr_assert_eq(shoal_buf_append(&buf, "keep", 4), 0);
        shoal_envelope_init(&env);
        cr_assert_eq(shoal_wire_encode(framings[f], &env, &buf), SHOAL_EINVAL,
                     "no type");
        cr_assert_eq(buf.len, 4);

        env.type = SHOAL_MSG_TELL;
        set_name(&env.app, "echo");
        if (f < 2)
            env.msg = (shoal_payload_t){nan_mp, sizeof(nan_mp) - 1,
                                        SHOAL_CODEC_MSGPACK};
        else
            env.msg = json_payload("[1, 2");
        cr_assert_eq(shoal_wire_encode(framings[f], &env, &buf), want);
        cr_assert_eq(buf.len, 4);

        env.msg = (shoal_payload_t){"1", 1, SHOAL_CODEC_NONE};
        cr_assert_eq(shoal_wire_encode(framings[f], &env, &buf), SHOAL_EINVAL);
        cr_assert_eq(buf.len, 4);
        cr_assert_eq(memcmp(buf.base, "keep", 4), 0);
        shoal_buf_free(&buf);
    }
}

Test(wire_encode, unknown_framing_is_EBADFRAMING)
{
    shoal_envelope_t env;
    shoal_buf_t buf = {0};

    shoal_envelope_init(&env);
    env.type = SHOAL_MSG_TELL;
    cr_assert_eq(shoal_wire_encode(SHOAL_FRAMING_UNKNOWN, &env, &buf),
                 SHOAL_EBADFRAMING);
    cr_assert_eq(buf.len, 0);
    shoal_buf_free(&buf);
}

/* ---- transcoding ------------------------------------------------------ */

static const char *json_corpus[] = {
    "{}",
    "[]",
    "0",
    "-0",
    "1.5",
    "-1e-7",
    "[1.0, 2.50, 1e3, 1E+2, -0.0]",
    "9007199254740993",
    "18446744073709551615",
    "-9223372036854775808",
    "9223372036854775807",
    "123456789012345678901234567890",
    "\"\\u00e9\\ud83d\\ude00 \\\" \\\\ \\/ \\b\\f\\n\\r\\t \\u0001 \\u001f\"",
    "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"",
    "{\"a\":{\"b\":{\"c\":[[],[{}],{\"d\":null}]}}}",
    "[true,false,null]",
    "{\"\":\"\"}",
    " { \"spaced\" : [ 1 , 2 ] } ",
    ("{\"ints\":[-1,-32,-33,-128,-129,-32768,-32769,-2147483648,"
     "-2147483649,127,128,255,256,65535,65536,4294967295,4294967296]}"),
    ("{\"k\\u0000ey\":\"v\",\"long\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"),
    "[0.1, 0.2, 0.30000000000000004, 1e-300, 1.7976931348623157e308]",
};

Test(wire_encode, json_to_msgpack_to_json_keeps_the_value)
{
    for (size_t i = 0; i < sizeof(json_corpus) / sizeof(json_corpus[0]); i++) {
        shoal_payload_t orig = json_payload(json_corpus[i]), mp, back, mp2;
        shoal_buf_t b1 = {0}, b2 = {0}, b3 = {0};

        cr_assert_eq(shoal_wire_transcode(&orig, SHOAL_CODEC_MSGPACK, &b1), 0,
                     "%s", json_corpus[i]);
        mp = (shoal_payload_t){b1.base, b1.len, SHOAL_CODEC_MSGPACK};
        cr_assert_eq(shoal_wire_transcode(&mp, SHOAL_CODEC_JSON, &b2), 0, "%s",
                     json_corpus[i]);
        back = (shoal_payload_t){b2.base, b2.len, SHOAL_CODEC_JSON};
        assert_same_value(&orig, &back);
        /* After one trip the forms are fixed points. */
        cr_assert_eq(shoal_wire_transcode(&back, SHOAL_CODEC_MSGPACK, &b3), 0);
        mp2 = (shoal_payload_t){b3.base, b3.len, SHOAL_CODEC_MSGPACK};
        cr_assert_eq(mp2.len, mp.len, "%s -> %.*s", json_corpus[i],
                     (int)back.len, back.data);
        cr_assert_eq(memcmp(mp2.data, mp.data, mp.len), 0, "%s",
                     json_corpus[i]);
        shoal_buf_free(&b1);
        shoal_buf_free(&b2);
        shoal_buf_free(&b3);
    }
}

/* Packs a varied value with msgpack-c. float32 makes it non-canonical. */
static void pack_corpus(msgpack_packer *pk, bool with_float32)
{
    static const int64_t ints[] = {
        0,      -1,           -32,           -33,       127,
        128,    255,          256,           -129,      70000,
        -70000, 5000000000LL, -5000000000LL, INT64_MIN, INT64_MAX};

    msgpack_pack_map(pk, with_float32 ? 7 : 6);
    msgpack_pack_str_with_body(pk, RAW("ints"));
    msgpack_pack_array(pk, sizeof(ints) / sizeof(ints[0]) + 1);
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        msgpack_pack_int64(pk, ints[i]);
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_str_with_body(pk, RAW("floats"));
    msgpack_pack_array(pk, 5);
    msgpack_pack_double(pk, 0.1);
    msgpack_pack_double(pk, -1e300);
    msgpack_pack_double(pk, 2.0);
    msgpack_pack_double(pk, -0.0);
    msgpack_pack_double(pk, 5e-324);
    msgpack_pack_str_with_body(pk, RAW("text"));
    msgpack_pack_array(pk, 4);
    msgpack_pack_str_with_body(pk, RAW("caf\xc3\xa9 \xf0\x9f\x98\x80"));
    msgpack_pack_str_with_body(pk, RAW("\"\\\n\r\t\b\f\x01\x1f/"));
    msgpack_pack_str_with_body(pk, RAW(""));
    msgpack_pack_str_with_body(
        pk, RAW("a str8 that is longer than thirty-one bytes"));
    msgpack_pack_str_with_body(pk, RAW("nested"));
    msgpack_pack_map(pk, 2);
    msgpack_pack_str_with_body(pk, RAW("a"));
    msgpack_pack_array(pk, 2);
    msgpack_pack_map(pk, 0);
    msgpack_pack_array(pk, 1);
    msgpack_pack_array(pk, 0);
    msgpack_pack_str_with_body(pk, RAW("b"));
    msgpack_pack_nil(pk);
    msgpack_pack_str_with_body(pk, RAW("bools"));
    msgpack_pack_array(pk, 2);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    msgpack_pack_str_with_body(pk, RAW("\xe6\x97\xa5 key"));
    msgpack_pack_int(pk, 1);
    if (with_float32) {
        msgpack_pack_str_with_body(pk, RAW("f32"));
        msgpack_pack_float(pk, 0.25f);
    }
}

Test(wire_encode, msgpack_to_json_to_msgpack_keeps_the_value)
{
    for (int f32 = 0; f32 < 2; f32++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        shoal_payload_t orig, json, back;
        shoal_buf_t b1 = {0}, b2 = {0};

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_corpus(&pk, f32);
        orig = (shoal_payload_t){sb.data, sb.size, SHOAL_CODEC_MSGPACK};
        cr_assert_eq(shoal_wire_transcode(&orig, SHOAL_CODEC_JSON, &b1), 0);
        json = (shoal_payload_t){b1.base, b1.len, SHOAL_CODEC_JSON};
        cr_assert_eq(shoal_wire_transcode(&json, SHOAL_CODEC_MSGPACK, &b2), 0,
                     "%.*s", (int)b1.len, b1.base);
        back = (shoal_payload_t){b2.base, b2.len, SHOAL_CODEC_MSGPACK};
        assert_same_value(&orig, &back);
        assert_same_value(&orig, &json);
        /* What msgpack-c packs canonically comes back byte for byte: ints
         * stay ints at their smallest, floats stay float64. */
        if (!f32) {
            cr_assert_eq(b2.len, sb.size);
            cr_assert_eq(memcmp(b2.base, sb.data, sb.size), 0);
        }
        shoal_buf_free(&b1);
        shoal_buf_free(&b2);
        msgpack_sbuffer_destroy(&sb);
    }
}

Test(wire_encode, transcode_in_the_same_codec_copies)
{
    shoal_payload_t j = json_payload(" [1, 2] ");
    shoal_payload_t m = {RAW("\x92\x01\x02"), SHOAL_CODEC_MSGPACK};
    shoal_buf_t buf = {0};

    cr_assert_eq(shoal_wire_transcode(&j, SHOAL_CODEC_JSON, &buf), 0);
    cr_assert_eq(shoal_wire_transcode(&m, SHOAL_CODEC_MSGPACK, &buf), 0);
    cr_assert_eq(buf.len, 8 + 3);
    cr_assert_eq(memcmp(buf.base, " [1, 2] \x92\x01\x02", 11), 0);
    shoal_buf_free(&buf);
}

Test(wire_encode, transcode_refuses_bad_arguments_and_restores_the_buffer)
{
    shoal_payload_t nan = {RAW("\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00"),
                           SHOAL_CODEC_MSGPACK};
    shoal_payload_t bin = {RAW("\xc4\x01\x00"), SHOAL_CODEC_MSGPACK};
    shoal_payload_t badjson = json_payload("{\"a\":}");
    shoal_payload_t none = {"1", 1, SHOAL_CODEC_NONE};
    shoal_payload_t absent = {NULL, 0, SHOAL_CODEC_JSON};
    shoal_payload_t ok = json_payload("1");
    shoal_buf_t buf = {0};

    cr_assert_eq(shoal_buf_append(&buf, "keep", 4), 0);
    cr_assert_eq(shoal_wire_transcode(&nan, SHOAL_CODEC_JSON, &buf),
                 SHOAL_EBADTYPE);
    cr_assert_eq(shoal_wire_transcode(&bin, SHOAL_CODEC_JSON, &buf),
                 SHOAL_EBADMSGPACK);
    cr_assert_eq(shoal_wire_transcode(&badjson, SHOAL_CODEC_MSGPACK, &buf),
                 SHOAL_EBADJSON);
    cr_assert_eq(shoal_wire_transcode(&none, SHOAL_CODEC_JSON, &buf),
                 SHOAL_EINVAL);
    cr_assert_eq(shoal_wire_transcode(&absent, SHOAL_CODEC_JSON, &buf),
                 SHOAL_EINVAL);
    cr_assert_eq(shoal_wire_transcode(&ok, SHOAL_CODEC_NONE, &buf),
                 SHOAL_EINVAL);
    cr_assert_eq(buf.len, 4);
    shoal_buf_free(&buf);
}

Test(wire_encode, json_write_string_escapes_what_json_requires)
{
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {RAW(""), "\"\""},
        {RAW("plain"), "\"plain\""},
        {RAW("\"\\/"), "\"\\\"\\\\/\""},
        {RAW("\n\r\t\b\f"), "\"\\n\\r\\t\\b\\f\""},
        {RAW("\x00\x01\x1f\x7f"), "\"\\u0000\\u0001\\u001f\x7f\""},
        {RAW("caf\xc3\xa9 \xf0\x9f\x98\x80"),
         "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""},
        {RAW("\xe2\x80\xa8"), "\"\xe2\x80\xa8\""},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        shoal_buf_t buf = {0};

        cr_assert_eq(shoal__json_write_string(&buf, cases[i].in, cases[i].len),
                     0);
        cr_assert_eq(buf.len, strlen(cases[i].out), "#%zu", i);
        cr_assert_eq(memcmp(buf.base, cases[i].out, buf.len), 0, "#%zu: %.*s",
                     i, (int)buf.len, buf.base);
        shoal_buf_free(&buf);
    }
}

/* ---- error values ----------------------------------------------------- */

Test(wire_encode, error_value_is_code_and_message_in_either_codec)
{
    shoal_buf_t buf = {0};
    static const char mp[] = "\x82\xa4"
                             "code\xa6"
                             "ENOAPP\xa7message\xaano app \"x\"";

    cr_assert_eq(shoal_wire_encode_error(SHOAL_CODEC_JSON, "ENOAPP",
                                         "no app \"x\"", &buf),
                 0);
    cr_assert_eq(buf.len, strlen("{\"code\":\"ENOAPP\",\"message\":"
                                 "\"no app \\\"x\\\"\"}"));
    cr_assert_eq(memcmp(buf.base,
                        "{\"code\":\"ENOAPP\",\"message\":"
                        "\"no app \\\"x\\\"\"}",
                        buf.len),
                 0);
    buf.len = 0;
    cr_assert_eq(shoal_wire_encode_error(SHOAL_CODEC_MSGPACK, "ENOAPP",
                                         "no app \"x\"", &buf),
                 0);
    cr_assert_eq(buf.len, sizeof(mp) - 1);
    cr_assert_eq(memcmp(buf.base, mp, buf.len), 0);
    shoal_buf_free(&buf);
}

Test(wire_encode, error_value_round_trips_through_decode_error)
{
    static const shoal_codec_t codecs[] = {SHOAL_CODEC_JSON,
                                           SHOAL_CODEC_MSGPACK};
    static const struct {
        const char *code;
        int want;
    } codes[] = {
        {"ENOAPP", SHOAL_ENOAPP},
        {"ETIMEDOUT", SHOAL_ETIMEDOUT},
        {"ECONNREFUSED", UV_ECONNREFUSED},
        {"EMYAPPFAILED", SHOAL_EREMOTE},
    };

    for (size_t c = 0; c < 2; c++) {
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
            shoal_buf_t buf = {0};
            shoal_name_t name;
            shoal_payload_t pl;
            char msg[64];

            cr_assert_eq(shoal_wire_encode_error(codecs[c], codes[i].code,
                                                 "went \"wrong\"\n", &buf),
                         0);
            pl = (shoal_payload_t){buf.base, buf.len, codecs[c]};
            cr_assert_eq(shoal_wire_decode_error(&pl, &name, msg, sizeof(msg)),
                         codes[i].want);
            cr_assert(name.present);
            cr_assert_str_eq(name.s, codes[i].code);
            cr_assert_eq(name.len, strlen(codes[i].code));
            cr_assert_str_eq(msg, "went \"wrong\"\n");
            cr_assert_eq(shoal_wire_decode_error(&pl, NULL, NULL, 0),
                         codes[i].want);
            shoal_buf_free(&buf);
        }
    }
}

Test(wire_encode, invalid_utf8_in_an_error_message_becomes_U_FFFD)
{
    static const shoal_codec_t codecs[] = {SHOAL_CODEC_JSON,
                                           SHOAL_CODEC_MSGPACK};

    for (size_t c = 0; c < 2; c++) {
        shoal_buf_t buf = {0};
        shoal_payload_t pl;
        char msg[64];

        cr_assert_eq(shoal_wire_encode_error(codecs[c], "E\xff",
                                             "bad \xff\xfe end \xe2\x82",
                                             &buf),
                     0);
        pl = (shoal_payload_t){buf.base, buf.len, codecs[c]};
        cr_assert_eq(shoal_wire_decode_error(&pl, NULL, msg, sizeof(msg)),
                     SHOAL_EREMOTE);
        cr_assert_str_eq(msg, "bad \xef\xbf\xbd\xef\xbf\xbd end "
                              "\xef\xbf\xbd\xef\xbf\xbd");
        shoal_buf_free(&buf);
    }
}

Test(wire_encode, decode_error_truncates_the_message_at_a_character)
{
    shoal_buf_t buf = {0};
    shoal_payload_t pl;
    char msg[4];

    cr_assert_eq(shoal_wire_encode_error(SHOAL_CODEC_MSGPACK, "EAPPFAILED",
                                         "\xc3\xa9\xc3\xa9\xc3\xa9", &buf),
                 0);
    pl = (shoal_payload_t){buf.base, buf.len, SHOAL_CODEC_MSGPACK};
    cr_assert_eq(shoal_wire_decode_error(&pl, NULL, msg, sizeof(msg)),
                 SHOAL_EAPPFAILED);
    cr_assert_str_eq(msg, "\xc3\xa9");
    shoal_buf_free(&buf);
}

Test(wire_encode, decode_error_refuses_what_is_not_an_error_object)
{
    static const char *bad[] = {
        "[]",
        "\"ENOAPP\"",
        "{\"message\":\"m\"}",
        "{\"code\":5,\"message\":\"m\"}",
        "{\"code\":\"ENOAPP\",\"message\":1}",
        "{\"code\":\"ENOAPP\"",
    };

    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        shoal_payload_t pl = json_payload(bad[b]);
        shoal_name_t name;
        char msg[16];

        cr_assert_eq(shoal_wire_decode_error(&pl, &name, msg, sizeof(msg)),
                     SHOAL_EBADMSG, "%s", bad[b]);
        cr_assert_not(name.present);
        cr_assert_str_eq(msg, "");
    }
    cr_assert_eq(shoal_wire_decode_error(NULL, NULL, NULL, 0), SHOAL_EBADMSG);
}

Test(wire_encode, decode_error_without_a_message_gives_an_empty_one)
{
    shoal_payload_t pl = json_payload("{\"code\":\"ENOTFOUND\"}");
    char msg[16] = "junk";

    cr_assert_eq(shoal_wire_decode_error(&pl, NULL, msg, sizeof(msg)),
                 SHOAL_ENOTFOUND);
    cr_assert_str_eq(msg, "");
}

/* ---- cJSON bridge ----------------------------------------------------- */

Test(wire_encode, cjson_tree_is_written_compactly_in_json)
{
    cJSON *tree = cJSON_Parse("{\"i\":3,\"f\":2.5,\"big\":1e20,\"neg\":-4,"
                              "\"s\":\"a\\\"b\\n\\u00e9\",\"arr\":[true,"
                              "false,null],\"o\":{}}");
    shoal_buf_t buf = {0};
    static const char want[] =
        "{\"i\":3,\"f\":2.5,\"big\":1e+20,\"neg\":-4,\"s\":\"a\\\"b\\n"
        "\xc3\xa9\",\"arr\":[true,false,null],\"o\":{}}";

    cr_assert_not_null(tree);
    cr_assert_eq(shoal_payload_from_cjson(tree, SHOAL_CODEC_JSON, &buf), 0);
    cr_assert_eq(buf.len, sizeof(want) - 1, "%.*s", (int)buf.len, buf.base);
    cr_assert_eq(memcmp(buf.base, want, buf.len), 0);
    cJSON_Delete(tree);
    shoal_buf_free(&buf);
}

Test(wire_encode, cjson_tree_packs_integral_numbers_as_ints)
{
    cJSON *tree = cJSON_CreateArray();
    shoal_buf_t buf = {0};
    static const char want[] = "\x96\x03\xcb\x40\x04\x00\x00\x00\x00\x00\x00"
                               "\xd0\x80\xcf\x00\x00\x00\xe8\xd4\xa5\x10\x00"
                               "\xcb\x44\x15\xaf\x1d\x78\xb5\x8c\x40\xa1x";

    cJSON_AddItemToArray(tree, cJSON_CreateNumber(3));
    cJSON_AddItemToArray(tree, cJSON_CreateNumber(2.5));
    cJSON_AddItemToArray(tree, cJSON_CreateNumber(-128));
    cJSON_AddItemToArray(tree, cJSON_CreateNumber(1e12));
    cJSON_AddItemToArray(tree, cJSON_CreateNumber(1e20));
    cJSON_AddItemToArray(tree, cJSON_CreateString("x"));
    cr_assert_eq(shoal_payload_from_cjson(tree, SHOAL_CODEC_MSGPACK, &buf), 0);
    cr_assert_eq(buf.len, sizeof(want) - 1);
    cr_assert_eq(memcmp(buf.base, want, buf.len), 0);
    cJSON_Delete(tree);
    shoal_buf_free(&buf);
}

Test(wire_encode, cjson_round_trips_through_both_codecs)
{
    for (size_t i = 0; i < sizeof(json_corpus) / sizeof(json_corpus[0]); i++) {
        shoal_payload_t orig = json_payload(json_corpus[i]);
        cJSON *tree = shoal_payload_to_cjson(&orig);

        cr_assert_not_null(tree, "%s", json_corpus[i]);
        for (int c = 0; c < 2; c++) {
            shoal_codec_t codec = c ? SHOAL_CODEC_MSGPACK : SHOAL_CODEC_JSON;
            shoal_buf_t buf = {0};
            shoal_payload_t pl;
            cJSON *back;

            cr_assert_eq(shoal_payload_from_cjson(tree, codec, &buf), 0, "%s",
                         json_corpus[i]);
            pl = (shoal_payload_t){buf.base, buf.len, codec};
            back = shoal_payload_to_cjson(&pl);
            cr_assert_not_null(back);
            cr_assert(cJSON_Compare(tree, back, true), "%s", json_corpus[i]);
            cJSON_Delete(back);
            shoal_buf_free(&buf);
        }
        cJSON_Delete(tree);
    }
}

Test(wire_encode, cjson_refuses_what_the_wire_cannot_carry)
{
    cJSON *nan = cJSON_CreateNumber(NAN);
    cJSON *inf = cJSON_CreateArray();
    cJSON *bad = cJSON_CreateObject();
    cJSON *raw = cJSON_CreateRaw("[1]");
    cJSON *deep = cJSON_CreateArray(), *at = deep;
    shoal_buf_t buf = {0};

    cJSON_AddItemToArray(inf, cJSON_CreateNumber(INFINITY));
    cJSON_AddItemToObject(bad, "k\xff", cJSON_CreateNull());
    for (int i = 0; i < SHOAL_MAX_DEPTH_CAP + 1; i++) {
        cJSON *next = cJSON_CreateArray();

        cJSON_AddItemToArray(at, next);
        at = next;
    }
    cr_assert_eq(shoal_buf_append(&buf, "keep", 4), 0);
    for (int c = 0; c < 2; c++) {
        shoal_codec_t codec = c ? SHOAL_CODEC_MSGPACK : SHOAL_CODEC_JSON;

        cr_assert_eq(shoal_payload_from_cjson(nan, codec, &buf),
                     SHOAL_EBADTYPE);
        cr_assert_eq(shoal_payload_from_cjson(inf, codec, &buf),
                     SHOAL_EBADTYPE);
        cr_assert_eq(shoal_payload_from_cjson(bad, codec, &buf),
                     SHOAL_EBADUTF8);
        cr_assert_eq(shoal_payload_from_cjson(deep, codec, &buf),
                     SHOAL_ETOODEEP);
        cr_assert_eq(shoal_payload_from_cjson(NULL, codec, &buf),
                     SHOAL_EINVAL);
        cr_assert_eq(buf.len, 4);
    }
    cr_assert_eq(shoal_payload_from_cjson(raw, SHOAL_CODEC_MSGPACK, &buf),
                 SHOAL_EBADTYPE);
    cr_assert_eq(shoal_payload_from_cjson(raw, SHOAL_CODEC_JSON, &buf), 0);
    cr_assert_eq(buf.len, 7);
    cr_assert_eq(shoal_payload_from_cjson(nan, SHOAL_CODEC_NONE, &buf),
                 SHOAL_EINVAL);
    cJSON_Delete(nan);
    cJSON_Delete(inf);
    cJSON_Delete(bad);
    cJSON_Delete(raw);
    cJSON_Delete(deep);
    shoal_buf_free(&buf);
}
