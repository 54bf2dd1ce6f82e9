/* libFuzzer target: the payload walkers of payload.c over any bytes, as
 * JSON and as MessagePack. They must never read outside the input nor
 * loop without end, whatever they are given. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shoal/wire.h"

/* Walks a value and what it holds, down to a fixed depth. */
static void fuzz_walk(const shoal_payload_t *p, int depth)
{
    shoal_payload_iter_t it;
    shoal_payload_t k, v;
    char text[64];
    int64_t n;
    bool b;

    (void)shoal_payload_string(p, text, sizeof(text));
    (void)shoal_payload_int(p, &n);
    (void)shoal_payload_bool(p, &b);
    (void)shoal_payload_get(p, "args", &v);
    if (depth == 0 || shoal_payload_iter_init(&it, p) != 0)
        return;
    for (int i = 0; i < 1000 && shoal_payload_iter_next(&it, &k, &v) == 1;
         i++) {
        (void)shoal_payload_string_eq(&k, "app");
        fuzz_walk(&v, depth - 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shoal_payload_t json = {(const char *)data, size, SHOAL_CODEC_JSON};
    shoal_payload_t mp = {(const char *)data, size, SHOAL_CODEC_MSGPACK};

    fuzz_walk(&json, 8);
    fuzz_walk(&mp, 8);
    return 0;
}
