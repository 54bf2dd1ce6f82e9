/* Reading values in place: the same answers from JSON and MessagePack,
 * every cut of an input refused without reading past its end. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dispatch_internal.h"
#include "guard.h"
#include "shoal/wire.h"

#define TASK_JSON                                                             \
    "{\"app\":\"echo\", \"action\" : \"ec\\u0068o\",\"args\":{\"a\":[1,{"     \
    "\"b\":\"}]\"}],\"c\":null},\"id\":-7,\"retry_on_error\":true,"           \
    "\"key\":\"k\\\"1\"}"

/* The JSON above as MessagePack, through the wire transcoder. */
static shoal_buf_t to_msgpack(const char *json)
{
    shoal_payload_t in = {json, strlen(json), SHOAL_CODEC_JSON};
    shoal_buf_t out;

    shoal_buf_init(&out);
    cr_assert_eq(shoal_wire_transcode(&in, SHOAL_CODEC_MSGPACK, &out), 0);
    return out;
}

static void check_task(const shoal_payload_t *task)
{
    shoal_payload_t v, w;
    char text[64];
    int64_t n;
    bool b;

    cr_assert_eq(shoal_payload_type(task), SHOAL_VALUE_OBJECT);
    cr_assert_eq(shoal_payload_get(task, "app", &v), 0);
    cr_assert_eq(shoal_payload_string(&v, text, sizeof(text)), 4);
    cr_assert_str_eq(text, "echo");
    cr_assert_eq(shoal_payload_get(task, "action", &v), 0);
    cr_assert(shoal_payload_string_eq(&v, "echo"));
    cr_assert_eq(shoal_payload_get(task, "id", &v), 0);
    cr_assert_eq(shoal_payload_int(&v, &n), 0);
    cr_assert_eq(n, -7);
    cr_assert_eq(shoal_payload_get(task, "retry_on_error", &v), 0);
    cr_assert_eq(shoal_payload_bool(&v, &b), 0);
    cr_assert(b);
    cr_assert_eq(shoal_payload_get(task, "key", &v), 0);
    cr_assert_eq(shoal_payload_string(&v, text, sizeof(text)), 3);
    cr_assert_str_eq(text, "k\"1");
    cr_assert_eq(shoal_payload_string(&v, text, 3), SHOAL_ETOOBIG);
    cr_assert_eq(shoal_payload_get(task, "args", &v), 0);
    cr_assert_eq(shoal_payload_type(&v), SHOAL_VALUE_OBJECT);
    cr_assert_eq(shoal_payload_get(&v, "c", &w), 0);
    cr_assert_eq(shoal_payload_type(&w), SHOAL_VALUE_NULL);
    cr_assert_eq(shoal_payload_get(&v, "a", &w), 0);
    cr_assert_eq(shoal_payload_type(&w), SHOAL_VALUE_ARRAY);
    cr_assert_eq(shoal_payload_get(task, "nope", &v), SHOAL_ENOTFOUND);
    cr_assert_eq(shoal_payload_get(&w, "x", &v), SHOAL_EBADTYPE);
}

Test(payload, fields_read_the_same_from_json_and_msgpack)
{
    shoal_payload_t json = {TASK_JSON, strlen(TASK_JSON), SHOAL_CODEC_JSON};
    shoal_buf_t mp = to_msgpack(TASK_JSON);
    shoal_payload_t msgpack = {mp.base, mp.len, SHOAL_CODEC_MSGPACK};

    check_task(&json);
    check_task(&msgpack);
    shoal_buf_free(&mp);
}

Test(payload, a_sub_value_is_the_exact_bytes_it_occupies)
{
    shoal_payload_t json = {TASK_JSON, strlen(TASK_JSON), SHOAL_CODEC_JSON};
    shoal_payload_t v;

    cr_assert_eq(shoal_payload_get(&json, "args", &v), 0);
    cr_assert_eq(v.len, strlen("{\"a\":[1,{\"b\":\"}]\"}],\"c\":null}"));
    cr_assert_eq(
        memcmp(v.data, "{\"a\":[1,{\"b\":\"}]\"}],\"c\":null}", v.len), 0);
}

Test(payload, arrays_iterate_in_order)
{
    const char *text = "[ 1, \"two\", [3], {\"four\":4} ,5]";
    shoal_payload_t json = {text, strlen(text), SHOAL_CODEC_JSON};
    shoal_buf_t mp = to_msgpack(text);
    shoal_payload_t msgpack = {mp.base, mp.len, SHOAL_CODEC_MSGPACK};
    const shoal_payload_t *both[2] = {&json, &msgpack};

    for (int c = 0; c < 2; c++) {
        shoal_payload_iter_t it;
        shoal_payload_t item;
        shoal_value_type_t want[] = {SHOAL_VALUE_INT, SHOAL_VALUE_STRING,
                                     SHOAL_VALUE_ARRAY, SHOAL_VALUE_OBJECT,
                                     SHOAL_VALUE_INT};
        int n = 0;
        cr_assert_eq(shoal_payload_iter_init(&it, both[c]), 0);
        while (shoal_payload_iter_next(&it, NULL, &item) == 1) {
            cr_assert_lt(n, 5);
            cr_assert_eq(shoal_payload_type(&item), want[n]);
            n++;
        }
        cr_assert_eq(n, 5);
    }
    shoal_buf_free(&mp);
}

Test(payload, integers_of_every_msgpack_width_read_back)
{
    const char *text = "[0, 127, 128, -1, -32, -33, 255, 256, 65535, 65536, "
                       "-129, -32769, 4294967296, -4294967296, "
                       "9223372036854775807, -9223372036854775808]";
    const int64_t want[] = {
        0,         127,      128,   -1,   -32,    -33,          255,
        256,       65535,    65536, -129, -32769, 4294967296LL, -4294967296LL,
        INT64_MAX, INT64_MIN};
    shoal_buf_t mp = to_msgpack(text);
    shoal_payload_t json = {text, strlen(text), SHOAL_CODEC_JSON};
    shoal_payload_t msgpack = {mp.base, mp.len, SHOAL_CODEC_MSGPACK};
    const shoal_payload_t *both[2] = {&json, &msgpack};

    for (int c = 0; c < 2; c++) {
        shoal_payload_iter_t it;
        shoal_payload_t item;
        int64_t n;
        size_t i = 0;
        shoal_payload_iter_init(&it, both[c]);
        while (shoal_payload_iter_next(&it, NULL, &item) == 1) {
            cr_assert_eq(shoal_payload_int(&item, &n), 0, "item %zu", i);
            cr_assert_eq(n, want[i], "codec %d item %zu", c, i);
            i++;
        }
        cr_assert_eq(i, sizeof(want) / sizeof(want[0]));
    }
    shoal_buf_free(&mp);
}

/* Every prefix of a value is refused (or, for JSON scalars, read as a
 * shorter value), and no read goes past its end: the guard page after it
 * would crash the test. */
static void feed_every_cut(const char *data, size_t len, shoal_codec_t codec)
{
    for (size_t cut = 0; cut < len; cut++) {
        guard_buf_t g = {0};
        shoal_payload_t p, v, k;
        shoal_payload_iter_t it;
        cr_assert_eq(guard_buf_init(&g, data, cut), 0);
        p.data = g.data;
        p.len = cut;
        p.codec = codec;
        (void)shoal_payload_get(&p, "args", &v);
        (void)shoal_payload_get(&p, "zzz", &v);
        if (shoal_payload_iter_init(&it, &p) == 0)
            while (shoal_payload_iter_next(&it, &k, &v) == 1)
                (void)shoal_payload_type(&v);
        guard_buf_free(&g);
    }
}

Test(payload, cut_inputs_never_read_past_their_end)
{
    shoal_buf_t mp = to_msgpack(TASK_JSON);

    feed_every_cut(TASK_JSON, strlen(TASK_JSON), SHOAL_CODEC_JSON);
    feed_every_cut(mp.base, mp.len, SHOAL_CODEC_MSGPACK);
    shoal_buf_free(&mp);
}

Test(payload, a_cut_msgpack_map_is_an_error)
{
    shoal_buf_t mp = to_msgpack(TASK_JSON);
    shoal_payload_t p = {mp.base, mp.len - 1, SHOAL_CODEC_MSGPACK};
    shoal_payload_t v;

    cr_assert_eq(shoal_payload_get(&p, "zzz", &v), SHOAL_EBADMSGPACK);
    shoal_buf_free(&mp);
}

Test(payload, a_huge_msgpack_count_is_refused_not_trusted)
{
    /* array32 of 2^32-1 items in 6 bytes */
    const char data[] = "\xdd\xff\xff\xff\xff\x01";
    shoal_payload_t p = {data, 6, SHOAL_CODEC_MSGPACK};
    shoal_payload_t outer, v;
    char wrap[16] = "\x81\xa1x";

    memcpy(wrap + 3, data, 6);
    outer.data = wrap;
    outer.len = 9;
    outer.codec = SHOAL_CODEC_MSGPACK;
    cr_assert_eq(shoal_payload_type(&p), SHOAL_VALUE_ARRAY);
    cr_assert_eq(shoal_payload_get(&outer, "x", &v), SHOAL_EBADMSGPACK);
}

Test(payload, the_writer_makes_the_same_value_in_both_codecs)
{
    shoal_payload_t json_out, mp_out, id = {"\"t-1\"", 5, SHOAL_CODEC_JSON};
    shoal_payload_t result = {"[1,{\"x\":\"y\"}]", 13, SHOAL_CODEC_JSON};
    shoal_buf_t jb, mb, back;
    shoal__pw_t w;

    shoal_buf_init(&jb);
    shoal_buf_init(&mb);
    shoal_buf_init(&back);
    shoal__pw_init(&w, &jb, SHOAL_CODEC_JSON);
    shoal__outcome_write(&w, &id, NULL, SHOAL_OUTCOME_OK, "n\"1", 2, &result,
                         NULL, "", "");
    cr_assert_eq(shoal__pw_finish(&w, &json_out), 0);
    cr_assert_eq(json_out.len, jb.len);
    cr_assert_eq(
        memcmp(jb.base,
               "{\"id\":\"t-1\",\"status\":\"ok\",\"node\":\"n\\\"1\","
               "\"attempts\":2,\"result\":[1,{\"x\":\"y\"}]}",
               jb.len),
        0, "%.*s", (int)jb.len, jb.base);
    shoal__pw_init(&w, &mb, SHOAL_CODEC_MSGPACK);
    shoal__outcome_write(&w, &id, NULL, SHOAL_OUTCOME_OK, "n\"1", 2, &result,
                         NULL, "", "");
    cr_assert_eq(shoal__pw_finish(&w, &mp_out), 0);
    cr_assert_eq(shoal_wire_transcode(&mp_out, SHOAL_CODEC_JSON, &back), 0);
    cr_assert_eq(back.len, jb.len);
    cr_assert_eq(memcmp(back.base, jb.base, jb.len), 0, "%.*s", (int)back.len,
                 back.base);
    shoal_buf_free(&jb);
    shoal_buf_free(&mb);
    shoal_buf_free(&back);
}

Test(payload, keys_hash_the_same_from_either_codec)
{
    const char *text = "[\"a\\u00e9\", 42, [1,2]]";
    shoal_buf_t mp = to_msgpack(text), s1, s2;
    shoal_payload_t json = {text, strlen(text), SHOAL_CODEC_JSON};
    shoal_payload_t msgpack = {mp.base, mp.len, SHOAL_CODEC_MSGPACK};
    shoal_payload_iter_t a, b;
    shoal_payload_t x, y;

    shoal_buf_init(&s1);
    shoal_buf_init(&s2);
    shoal_payload_iter_init(&a, &json);
    shoal_payload_iter_init(&b, &msgpack);
    while (shoal_payload_iter_next(&a, NULL, &x) == 1) {
        const char *bx, *by;
        size_t lx, ly;
        cr_assert_eq(shoal_payload_iter_next(&b, NULL, &y), 1);
        cr_assert_eq(shoal__dispatch_key_bytes(&x, &s1, &bx, &lx), 0);
        cr_assert_eq(shoal__dispatch_key_bytes(&y, &s2, &by, &ly), 0);
        cr_assert_eq(lx, ly);
        cr_assert_eq(memcmp(bx, by, lx), 0);
    }
    shoal_buf_free(&s1);
    shoal_buf_free(&s2);
    shoal_buf_free(&mp);
}
