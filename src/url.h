/* Addresses: "tcp://HOST:PORT" and "unix:///PATH". */
#ifndef SHOAL_URL_H
#define SHOAL_URL_H

#include <stdbool.h>

typedef enum { SHOAL_URL_TCP = 1, SHOAL_URL_UNIX } shoal_url_kind_t;

typedef struct {
    shoal_url_kind_t kind;
    char host[256]; /* TCP: without brackets; "*" becomes "0.0.0.0" */
    int port;
    char path[108]; /* Unix: the socket path (sun_path is 108 bytes) */
} shoal_url_t;

/* Parses url. Returns 0 or SHOAL_EBADURL. */
int shoal__url_parse(const char *url, shoal_url_t *out);

/* True when host is an IPv4 or IPv6 literal. */
bool shoal__url_host_is_ip(const char *host);

#endif
