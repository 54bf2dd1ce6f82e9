/* Applications from shared objects: found by name on a search path, loaded
 * with dlopen, registered through their one exported symbol. */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#ifndef SHOAL_DEFAULT_APP_PATH
#define SHOAL_DEFAULT_APP_PATH "/usr/local/lib/shoal/workers"
#endif

/* A name is a file name, never a path: "../x" must not load ../x.so. */
static bool plugin_name_ok(const char *name)
{
    if (name[0] == '\0' || name[0] == '.')
        return false;
    for (const char *p = name; *p; p++)
        if (*p == '/')
            return false;
    return true;
}

/* Finds DIR/NAME.so on the ':'-separated path; true and the file in out. */
static bool plugin_find(const char *path, const char *name, char *out,
                        size_t out_len)
{
    const char *dir = path;

    while (dir && *dir) {
        const char *end = strchr(dir, ':');
        size_t len = end ? (size_t)(end - dir) : strlen(dir);
        struct stat st;

        if (len > 0) {
            snprintf(out, out_len, "%.*s/%s.so", (int)len, dir, name);
            if (stat(out, &st) == 0)
                return true;
        }
        dir = end ? end + 1 : NULL;
    }
    return false;
}

int shoal_node_load_app(shoal_node_t *node, const char *name,
                        const char *search_path, char *err, size_t err_len)
{
    shoal_plugin_register_fn reg;
    char file[1024];
    char path[2048];
    void *lib;
    int rc;

    rc = shoal__builtin_app_add(node, name);
    if (rc != SHOAL_ENOAPP) {
        if (rc)
            snprintf(err, err_len, "application '%s': %s", name,
                     shoal_strerror(rc));
        return rc;
    }
    if (!plugin_name_ok(name)) {
        snprintf(err, err_len, "application '%s': not a plugin name", name);
        return SHOAL_EINVAL;
    }
    if (search_path == NULL) {
        const char *env = getenv("SHOAL_APP_PATH");
        snprintf(path, sizeof(path), "%s%s%s", env ? env : "", env ? ":" : "",
                 SHOAL_DEFAULT_APP_PATH);
        search_path = path;
    }
    if (!plugin_find(search_path, name, file, sizeof(file))) {
        snprintf(err, err_len,
                 "application '%s': no built-in and no %s.so in %s", name,
                 name, search_path);
        return SHOAL_ELOAD;
    }
    /* RTLD_LOCAL: two plugins may use the same internal names. */
    lib = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        snprintf(err, err_len, "cannot load %s: %s", file, dlerror());
        return SHOAL_ELOAD;
    }
    *(void **)&reg = dlsym(lib, SHOAL_PLUGIN_SYMBOL);
    if (reg == NULL) {
        snprintf(err, err_len, "cannot load %s: it does not export %s", file,
                 SHOAL_PLUGIN_SYMBOL);
        dlclose(lib);
        return SHOAL_ELOAD;
    }
    rc = reg(node, name);
    if (rc) {
        snprintf(err, err_len, "%s: %s returned %s", file, SHOAL_PLUGIN_SYMBOL,
                 shoal_strerror(rc));
        dlclose(lib);
        return rc;
    }
    /* The library stays loaded for the life of the process: its handlers
     * are registered on the node. */
    return 0;
}
