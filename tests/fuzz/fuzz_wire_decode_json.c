/* libFuzzer target: JSON envelopes decoded, payloads converted to
 * MessagePack, and the decoder and the converter kept in agreement. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "shoal/wire.h"
#include "wire_internal.h"

/* A finding, not an error path: stop so that libFuzzer records it. */
#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond))                                                          \
            abort();                                                          \
    } while (0)

/* Converts a JSON value that must be valid and checks that msgpack-c reads
 * back exactly one object, unless it nests deeper than msgpack-c's 32
 * levels (NOMEM_ERROR). */
static void fuzz_convert(const char *json, size_t len)
{
    shoal_buf_t buf = {NULL, 0, 0};
    msgpack_unpacked u;
    msgpack_unpack_return ret;
    size_t off = 0;

    FUZZ_CHECK(shoal__json_to_msgpack(json, len, &buf) == 0);
    msgpack_unpacked_init(&u);
    ret = msgpack_unpack_next(&u, buf.base, buf.len, &off);
    FUZZ_CHECK(ret == MSGPACK_UNPACK_NOMEM_ERROR ||
               (ret == MSGPACK_UNPACK_SUCCESS && off == buf.len));
    msgpack_unpacked_destroy(&u);
    shoal_buf_free(&buf);
}

static void fuzz_check_name(const shoal_name_t *name)
{
    if (!name->present) {
        FUZZ_CHECK(name->len == 0);
        return;
    }
    FUZZ_CHECK(name->s[name->len] == '\0');
    FUZZ_CHECK(strlen(name->s) == name->len);
    FUZZ_CHECK(shoal__utf8_valid(name->s, name->len, NULL));
}

static void fuzz_check_payload(const shoal_payload_t *pl, const char *frame,
                               size_t len)
{
    if (pl->data == NULL)
        return;
    FUZZ_CHECK(pl->codec == SHOAL_CODEC_JSON);
    FUZZ_CHECK(pl->len > 0);
    FUZZ_CHECK(pl->data >= frame && pl->data + pl->len <= frame + len);
    fuzz_convert(pl->data, pl->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *frame = (const char *)data;
    shoal_limits_t lim;
    shoal_envelope_t env;
    shoal_buf_t buf = {NULL, 0, 0};
    char detail[96];
    int err, conv;

    shoal_limits_default(&lim);
    memset(detail, 'x', sizeof(detail));
    err = shoal_wire_decode(SHOAL_CODEC_JSON, frame, size, &lim, &env, detail,
                            sizeof(detail));
    FUZZ_CHECK(err <= 0);
    if (err != 0)
        FUZZ_CHECK(memchr(detail, '\0', sizeof(detail)) != NULL);
    if (err == 0) {
        FUZZ_CHECK(env.type_name.present);
        FUZZ_CHECK(env.type ==
                   shoal__msg_type_parse(env.type_name.s, env.type_name.len));
        fuzz_check_name(&env.type_name);
        fuzz_check_name(&env.app);
        fuzz_check_name(&env.action);
        fuzz_check_name(&env.event);
        fuzz_check_name(&env.to);
        fuzz_check_name(&env.from);
        fuzz_check_payload(&env.args, frame, size);
        fuzz_check_payload(&env.msg, frame, size);
        fuzz_check_payload(&env.result, frame, size);
        fuzz_check_payload(&env.error, frame, size);
        fuzz_check_payload(&env.data, frame, size);
        fuzz_check_payload(&env.node, frame, size);
    }

    /* The converter validates with the same scanner, so it must agree on
     * what is valid JSON. Its depth cap (256) is above the decoder's
     * default limit (64). */
    conv = shoal__json_to_msgpack(frame, size, &buf);
    switch (err) {
    case 0:
    case SHOAL_ENOTMAP:
    case SHOAL_EBADMSG:
        /* The decoder validated the whole text. */
        FUZZ_CHECK(conv == 0);
        break;
    case SHOAL_EBADJSON:
    case SHOAL_EBADUTF8:
        /* Nothing before the first error stopped the decoder, so the
         * converter meets the same one. */
        FUZZ_CHECK(conv == err);
        break;
    case SHOAL_ETOODEEP:
    case SHOAL_EBADTYPE:
    case SHOAL_ENAMETOOLONG:
        /* The decoder stopped early; anything may follow. */
        break;
    default:
        FUZZ_CHECK(0);
    }
    if (conv == 0) {
        msgpack_unpacked u;
        msgpack_unpack_return ret;
        size_t off = 0;

        msgpack_unpacked_init(&u);
        ret = msgpack_unpack_next(&u, buf.base, buf.len, &off);
        FUZZ_CHECK(ret == MSGPACK_UNPACK_NOMEM_ERROR ||
                   (ret == MSGPACK_UNPACK_SUCCESS && off == buf.len));
        msgpack_unpacked_destroy(&u);
    } else {
        FUZZ_CHECK(buf.len == 0);
    }
    shoal_buf_free(&buf);

    /* A tighter depth limit can only turn success into ETOODEEP. */
    lim.max_depth = 3;
    {
        int err3 = shoal_wire_decode(SHOAL_CODEC_JSON, frame, size, &lim, &env,
                                     NULL, 0);

        if (err == 0)
            FUZZ_CHECK(err3 == 0 || err3 == SHOAL_ETOODEEP);
    }
    return 0;
}
