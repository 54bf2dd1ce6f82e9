/* shoal_strerror and error names: one table for shoal's codes, libuv's
 * for the rest. */
#include <string.h>

#include <uv.h>

#include "shoal/error.h"

const char *shoal_strerror(int err)
{
    switch (err) {
#define SHOAL_ERR_MSG(name, value, message)                                   \
    case value:                                                               \
        return message;
        SHOAL_ERRNO_MAP(SHOAL_ERR_MSG)
#undef SHOAL_ERR_MSG
    }
    /* uv_strerror allocates (and leaks) for codes it does not know, so only
     * hand it codes it names. */
#define SHOAL_UV_MSG(name, message)                                           \
    if (err == UV_##name)                                                     \
        return message;
    UV_ERRNO_MAP(SHOAL_UV_MSG)
#undef SHOAL_UV_MSG
    return "unknown error";
}

const char *shoal_err_name(int err)
{
    switch (err) {
#define SHOAL_ERR_NAME(name, value, message)                                  \
    case value:                                                               \
        return #name;
        SHOAL_ERRNO_MAP(SHOAL_ERR_NAME)
#undef SHOAL_ERR_NAME
    }
#define SHOAL_UV_NAME(name, message)                                          \
    if (err == UV_##name)                                                     \
        return #name;
    UV_ERRNO_MAP(SHOAL_UV_NAME)
#undef SHOAL_UV_NAME
    return "EUNKNOWN";
}

int shoal_err_from_name(const char *name, unsigned long len)
{
#define SHOAL_ERR_MATCH(ename, value, message)                                \
    if (len == sizeof(#ename) - 1 && memcmp(name, #ename, len) == 0)          \
        return value;
    SHOAL_ERRNO_MAP(SHOAL_ERR_MATCH)
#undef SHOAL_ERR_MATCH
#define SHOAL_UV_MATCH(ename, message)                                        \
    if (len == sizeof(#ename) - 1 && memcmp(name, #ename, len) == 0)          \
        return UV_##ename;
    UV_ERRNO_MAP(SHOAL_UV_MATCH)
#undef SHOAL_UV_MATCH
    return SHOAL_EREMOTE;
}
