/* CPU time and resident memory of a worker, read from /proc. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "supervise_internal.h"

/* Reads a small /proc file into buf (NUL-terminated). */
static int proc_read(const char *path, char *buf, size_t len)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return uv_translate_sys_error(errno);
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return uv_translate_sys_error(errno);
    buf[n] = '\0';
    return 0;
}

int shoal__sup_proc_sample(int pid, uint64_t *cpu_ticks, uint64_t *rss_bytes)
{
    char path[64], buf[1024];
    unsigned long long utime, stime, size, resident;
    const char *p;
    int err;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if ((err = proc_read(path, buf, sizeof(buf))) != 0)
        return err;
    /* The command name may hold spaces and parentheses: fields are
     * counted from the last ')'. utime and stime are fields 14 and 15;
     * after ')' come field 3 (state) onwards. */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &utime, &stime) != 2)
        return SHOAL_EBADMSG;
    snprintf(path, sizeof(path), "/proc/%d/statm", pid);
    if ((err = proc_read(path, buf, sizeof(buf))) != 0)
        return err;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return SHOAL_EBADMSG;
    *cpu_ticks = utime + stime;
    *rss_bytes = resident * (uint64_t)sysconf(_SC_PAGESIZE);
    return 0;
}

long shoal__sup_proc_hz(void)
{
    static long hz;

    if (hz <= 0)
        hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return hz;
}
