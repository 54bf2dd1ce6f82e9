/* Growable byte buffers: the one place the wire layer allocates. */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "shoal/wire.h"

void shoal_buf_init(shoal_buf_t *buf)
{
    buf->base = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void shoal_buf_free(shoal_buf_t *buf)
{
    free(buf->base);
    shoal_buf_init(buf);
}

int shoal_buf_reserve(shoal_buf_t *buf, size_t extra)
{
    size_t want, cap;
    char *base;

    if (buf->cap - buf->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - buf->len)
        return SHOAL_ENOMEM;
    want = buf->len + extra;
    cap = buf->cap ? buf->cap : 256;
    while (cap < want)
        cap *= 2;
    base = realloc(buf->base, cap);
    if (base == NULL)
        return SHOAL_ENOMEM;
    buf->base = base;
    buf->cap = cap;
    return 0;
}

int shoal_buf_append(shoal_buf_t *buf, const void *data, size_t len)
{
    int err = shoal_buf_reserve(buf, len);

    if (err)
        return err;
    if (len)
        memcpy(buf->base + buf->len, data, len);
    buf->len += len;
    return 0;
}
