/* Parsing of the two address forms a node listens on and connects to. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "shoal/error.h"
#include "url.h"

static int url_parse_tcp(const char *rest, shoal_url_t *out)
{
    const char *colon;
    size_t host_len;
    char *end;
    long port;

    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        if (close == NULL || close[1] != ':')
            return SHOAL_EBADURL;
        host_len = (size_t)(close - rest - 1);
        rest++;
        colon = close + 1;
    } else {
        colon = strrchr(rest, ':');
        if (colon == NULL)
            return SHOAL_EBADURL;
        host_len = (size_t)(colon - rest);
    }
    if (host_len == 0 || host_len >= sizeof(out->host))
        return SHOAL_EBADURL;
    memcpy(out->host, rest, host_len);
    out->host[host_len] = '\0';
    if (strcmp(out->host, "*") == 0)
        strcpy(out->host, "0.0.0.0");
    if (colon[1] < '0' || colon[1] > '9')
        return SHOAL_EBADURL;
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return SHOAL_EBADURL;
    out->port = (int)port;
    out->kind = SHOAL_URL_TCP;
    return 0;
}

int shoal__url_parse(const char *url, shoal_url_t *out)
{
    memset(out, 0, sizeof(*out));
    if (url == NULL)
        return SHOAL_EBADURL;
    if (strncmp(url, "tcp://", 6) == 0)
        return url_parse_tcp(url + 6, out);
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        size_t len = strlen(path);
        if (len == 0 || len >= sizeof(out->path))
            return SHOAL_EBADURL;
        memcpy(out->path, path, len + 1);
        out->kind = SHOAL_URL_UNIX;
        return 0;
    }
    return SHOAL_EBADURL;
}

bool shoal__url_host_is_ip(const char *host)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;

    return uv_ip4_addr(host, 0, &a4) == 0 || uv_ip6_addr(host, 0, &a6) == 0;
}
