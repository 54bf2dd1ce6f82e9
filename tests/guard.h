/* Test helper: copies input so that it ends right before a PROT_NONE page,
 * so a function that reads one byte past the length it was given crashes. */
#ifndef SHOAL_TESTS_GUARD_H
#define SHOAL_TESTS_GUARD_H

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    char *map;
    size_t map_len;
    char *data; /* len bytes, followed by an inaccessible page */
} guard_buf_t;

static inline int guard_buf_init(guard_buf_t *g, const void *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;

    g->map_len = pages * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED)
        return -1;
    if (mprotect(g->map + (pages - 1) * page, page, PROT_NONE) != 0)
        return -1;
    g->data = g->map + (pages - 1) * page - len;
    if (len)
        memcpy(g->data, src, len);
    return 0;
}

static inline void guard_buf_free(guard_buf_t *g)
{
    munmap(g->map, g->map_len);
}

#endif
