/* Error codes shared by every layer: one table, names and messages. */
#ifndef SHOAL_ERROR_H
#define SHOAL_ERROR_H

/*
 * Every shoal function that can fail returns an int: 0 or a count on
 * success, a negative code on failure. libuv's UV_E* codes pass through
 * unchanged; shoal's own codes sit below -4200, a range libuv does not use.
 *
 * The NAME column is what crosses process boundaries: an error reply on the
 * wire carries {"code": "ENOAPP", "message": "..."} and never a number.
 *
 * XX(name, value, message)
 */
#define SHOAL_ERRNO_MAP(XX)                                                   \
    XX(EBADFRAMING, -4201, "unknown framing")                                 \
    XX(EBADJSON, -4202, "invalid JSON")                                       \
    XX(EBADMSGPACK, -4203, "invalid MessagePack")                             \
    XX(EBADLENGTH, -4204, "invalid length prefix")                            \
    XX(ETOOBIG, -4205, "frame exceeds the size limit")                        \
    XX(ETOODEEP, -4206, "nesting exceeds the depth limit")                    \
    XX(EBADUTF8, -4207, "invalid UTF-8")                                      \
    XX(ENOTMAP, -4208, "message is not an object or map")                     \
    XX(ETRUNCATED, -4209, "frame cut off by a closed connection")             \
    XX(EBADMSG, -4210, "malformed message")                                   \
    XX(EBADTYPE, -4211, "field has the wrong type")                           \
    XX(ENOAPP, -4212, "no such application")                                  \
    XX(ENOACTION, -4213, "no such action")                                    \
    XX(EAPPFAILED, -4214, "application failed")                               \
    XX(ETIMEDOUT, -4215, "timed out")                                         \
    XX(ECONNCLOSED, -4216, "connection closed")                               \
    XX(ENOROUTE, -4217, "no route to node")                                   \
    XX(ENOMEM, -4218, "out of memory")                                        \
    XX(EINVAL, -4219, "invalid argument")                                     \
    XX(EEXIST, -4220, "already exists")                                       \
    XX(ECLOSING, -4221, "handle is closing")                                  \
    XX(EBADURL, -4222, "invalid address")                                     \
    XX(ENAMETOOLONG, -4223, "name too long")                                  \
    XX(EBADCONFIG, -4224, "invalid configuration")                            \
    XX(ELOAD, -4225, "cannot load application")                               \
    XX(EOVERLOADED, -4226, "queue full")                                      \
    XX(ENOWORKER, -4227, "no node hosts the application")                     \
    XX(ESTOPPING, -4228, "shutting down")                                     \
    XX(ECANCELED, -4229, "canceled")                                          \
    XX(ENOTFOUND, -4230, "not found")                                         \
    XX(EREMOTE, -4231, "remote error")

typedef enum {
#define SHOAL_ERR_ENUM(name, value, message) SHOAL_##name = value,
    SHOAL_ERRNO_MAP(SHOAL_ERR_ENUM)
#undef SHOAL_ERR_ENUM
} shoal_errno_t;

/* Returns a static message for any shoal or libuv error code; never
 * allocates. Unknown codes give "unknown error". */
const char *shoal_strerror(int err);

/* Returns the static name of an error code ("ENOAPP", "ECONNREFUSED"), or
 * "EUNKNOWN". This is the form that crosses process boundaries. */
const char *shoal_err_name(int err);

/* Returns the code for a name produced by shoal_err_name(), or
 * SHOAL_EREMOTE when the name is not known here (an error from a newer
 * peer, or an application's own code). len is the name's length. */
int shoal_err_from_name(const char *name, unsigned long len);

#endif
