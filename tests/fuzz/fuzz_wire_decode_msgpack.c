/* libFuzzer: MessagePack envelopes decoded, transcoded, re-encoded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "shoal/wire.h"

/* A finding, not an error path: stop so that libFuzzer records it. */
#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond))                                                          \
            abort();                                                          \
    } while (0)

/* payload -> JSON -> MessagePack -> JSON: the JSON parses, and the second
 * JSON text is the first one again. */
static void fuzz_payload(const shoal_payload_t *pl)
{
    shoal_buf_t json = {0}, mp = {0}, json2 = {0};
    shoal_payload_t jp, mpp;
    cJSON *tree;
    int err;

    err = shoal_wire_transcode(pl, SHOAL_CODEC_JSON, &json);
    /* The decoder checked everything else: only NaN and infinities have no
     * JSON form. */
    FUZZ_CHECK(err == 0 || err == SHOAL_EBADTYPE);
    if (err == 0) {
        tree = cJSON_ParseWithLength(json.base, json.len);
        FUZZ_CHECK(tree != NULL);
        cJSON_Delete(tree);
        jp = (shoal_payload_t){json.base, json.len, SHOAL_CODEC_JSON};
        FUZZ_CHECK(shoal_wire_transcode(&jp, SHOAL_CODEC_MSGPACK, &mp) == 0);
        mpp = (shoal_payload_t){mp.base, mp.len, SHOAL_CODEC_MSGPACK};
        FUZZ_CHECK(shoal_wire_transcode(&mpp, SHOAL_CODEC_JSON, &json2) == 0);
        FUZZ_CHECK(json2.len == json.len &&
                   memcmp(json2.base, json.base, json.len) == 0);
    }
    shoal_buf_free(&json);
    shoal_buf_free(&mp);
    shoal_buf_free(&json2);
}

/* Encodes env in framing and decodes the frame again. */
static void fuzz_reencode(shoal_framing_t framing, const shoal_envelope_t *env)
{
    shoal_buf_t buf = {0};
    shoal_cut_state_t st;
    shoal_frame_t frame;
    shoal_envelope_t back;
    ssize_t n;
    int err;

    err = shoal_wire_encode(framing, env, &buf);
    FUZZ_CHECK(err == 0 || err == SHOAL_EBADTYPE);
    if (err == 0) {
        shoal_cut_reset(&st);
        n = shoal_wire_cut(framing, buf.base, buf.len, NULL, &st, &frame);
        FUZZ_CHECK(n == (ssize_t)buf.len);
        FUZZ_CHECK(shoal_wire_decode(shoal_framing_codec(framing), frame.data,
                                     frame.len, NULL, &back, NULL, 0) == 0);
        FUZZ_CHECK(back.type == env->type && back.has_id == env->has_id &&
                   back.id == env->id && back.app.len == env->app.len &&
                   memcmp(back.app.s, env->app.s, env->app.len) == 0);
    }
    shoal_buf_free(&buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shoal_envelope_t env;
    shoal_limits_t limits;
    char detail[128];
    int err;

    shoal_limits_default(&limits);
    err = shoal_wire_decode(SHOAL_CODEC_MSGPACK, (const char *)data, size,
                            &limits, &env, detail, sizeof(detail));
    if (err != 0) {
        FUZZ_CHECK(err < 0 && detail[0] != '\0');
        return 0;
    }
    const shoal_payload_t *pls[] = {&env.args,  &env.msg,  &env.result,
                                    &env.error, &env.data, &env.node};
    for (size_t i = 0; i < sizeof(pls) / sizeof(pls[0]); i++)
        if (pls[i]->data != NULL)
            fuzz_payload(pls[i]);
    fuzz_reencode(SHOAL_FRAMING_NDJSON, &env);
    fuzz_reencode(SHOAL_FRAMING_JSONSOCKET, &env);
    fuzz_reencode(SHOAL_FRAMING_MSGPACK, &env);
    return 0;
}
