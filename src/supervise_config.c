/* Configuration files: JSON checked field by field, every refusal naming
 * the JSON path of the field and the reason. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervise_internal.h"

/* Larger files are not configurations. */
#define CFG_MAX_FILE_BYTES (1u << 20)
/* Timers: at most a day. */
#define CFG_MAX_MS 86400000.0

typedef struct {
    cJSON *root;
    const char **strings; /* every string array, back to back */
    size_t n_strings;
    size_t cap_strings;
} cfg_storage_t;

typedef struct {
    char *err;
    size_t err_len;
    cfg_storage_t *st;
} cfg_t;

static int cfg_fail(cfg_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int cfg_fail(cfg_t *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->err == NULL || c->err_len == 0)
        return SHOAL_EBADCONFIG;
    n = snprintf(c->err, c->err_len, "%s: ", path);
    if (n >= 0 && (size_t)n < c->err_len) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return SHOAL_EBADCONFIG;
}

/* Refuses any key not in allowed (a NULL-terminated list). */
static int cfg_known_keys(cfg_t *c, const cJSON *obj, const char *path,
                          const char *const *allowed)
{
    const cJSON *item;
    char sub[256];

    cJSON_ArrayForEach(item, obj)
    {
        bool known = false;
        for (const char *const *k = allowed; *k && !known; k++)
            known = strcmp(item->string, *k) == 0;
        if (!known) {
            snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
                     item->string);
            return cfg_fail(c, sub, "unknown field");
        }
        /* cJSON keeps duplicate keys; a file that says a thing twice is
         * ambiguous. */
        for (const cJSON *other = item->next; other; other = other->next)
            if (strcmp(other->string, item->string) == 0) {
                snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "",
                         item->string);
                return cfg_fail(c, sub, "given twice");
            }
    }
    return 0;
}

static void cfg_path(char *out, size_t len, const char *path, const char *key)
{
    snprintf(out, len, "%s%s%s", path, path[0] ? "." : "", key);
}

/* An integer in [min, max]; absent leaves *out alone. */
static int cfg_uint(cfg_t *c, const cJSON *obj, const char *path,
                    const char *key, double min, double max, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char sub[256];

    if (v == NULL)
        return 0;
    cfg_path(sub, sizeof(sub), path, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < min || v->valuedouble > max) {
        if (min == 1 && max >= 1e15)
            return cfg_fail(c, sub, "must be a positive integer");
        if (min == 1)
            return cfg_fail(c, sub,
                            "must be a positive integer (at most "
                            "%.0f)",
                            max);
        if (max >= 1e15)
            return cfg_fail(c, sub, "must be an integer of at least %.0f",
                            min);
        return cfg_fail(c, sub, "must be an integer from %.0f to %.0f", min,
                        max);
    }
    *out = (uint64_t)v->valuedouble;
    return 0;
}

static int cfg_string(cfg_t *c, const cJSON *obj, const char *path,
                      const char *key, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char sub[256];

    if (v == NULL)
        return 0;
    cfg_path(sub, sizeof(sub), path, key);
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
        return cfg_fail(c, sub, "must be a non-empty string");
    *out = v->valuestring;
    return 0;
}

/* An array of non-empty strings, kept in the storage's string table. */
static int cfg_strings(cfg_t *c, const cJSON *obj, const char *path,
                       const char *key, const char *const **out, size_t *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    cfg_storage_t *st = c->st;
    const cJSON *item;
    char sub[256];
    size_t i = 0, count;

    if (v == NULL)
        return 0;
    cfg_path(sub, sizeof(sub), path, key);
    if (!cJSON_IsArray(v))
        return cfg_fail(c, sub, "must be an array of strings");
    count = (size_t)cJSON_GetArraySize(v);
    if (st->n_strings + count > st->cap_strings)
        return SHOAL_ENOMEM; /* sized in advance: cannot happen */
    cJSON_ArrayForEach(item, v)
    {
        if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
            char at[300];
            snprintf(at, sizeof(at), "%s[%zu]", sub, i);
            return cfg_fail(c, at, "must be a non-empty string");
        }
        st->strings[st->n_strings + i] = item->valuestring;
        i++;
    }
    *out = st->strings + st->n_strings;
    *n = count;
    st->n_strings += count;
    return 0;
}

static int cfg_backoff(cfg_t *c, const cJSON *pool, const char *path,
                       shoal_pool_opts_t *o)
{
    static const char *const keys[] = {"initial_ms", "factor", "max_ms",
                                       "reset_after_ms", NULL};
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(pool, "backoff");
    const cJSON *factor;
    char sub[256];
    int err;

    if (b == NULL)
        return 0;
    cfg_path(sub, sizeof(sub), path, "backoff");
    if (!cJSON_IsObject(b))
        return cfg_fail(c, sub, "must be an object");
    if ((err = cfg_known_keys(c, b, sub, keys)) ||
        (err = cfg_uint(c, b, sub, "initial_ms", 0, CFG_MAX_MS,
                        &o->backoff_initial_ms)) ||
        (err = cfg_uint(c, b, sub, "max_ms", 0, CFG_MAX_MS,
                        &o->backoff_max_ms)) ||
        (err = cfg_uint(c, b, sub, "reset_after_ms", 0, CFG_MAX_MS,
                        &o->reset_after_ms)))
        return err;
    factor = cJSON_GetObjectItemCaseSensitive(b, "factor");
    if (factor != NULL) {
        char at[300];
        snprintf(at, sizeof(at), "%s.factor", sub);
        if (!cJSON_IsNumber(factor) || !(factor->valuedouble >= 1.0) ||
            factor->valuedouble > 1000.0)
            return cfg_fail(c, at, "must be a number from 1 to 1000");
        o->backoff_factor = factor->valuedouble;
    }
    if (o->backoff_max_ms < o->backoff_initial_ms)
        return cfg_fail(c, sub, "max_ms (%llu) is below initial_ms (%llu)",
                        (unsigned long long)o->backoff_max_ms,
                        (unsigned long long)o->backoff_initial_ms);
    return 0;
}

static bool cfg_name_ok(const char *name)
{
    if (name[0] == '.')
        return false;
    for (const char *p = name; *p; p++)
        if (*p == '/' || (unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return strlen(name) <= SHOAL_MAX_NAME_BYTES;
}

static int cfg_pool(cfg_t *c, const cJSON *pool, size_t index,
                    shoal_pool_opts_t *o)
{
    static const char *const keys[] = {"name",
                                       "workers",
                                       "names",
                                       "apps",
                                       "exec",
                                       "app_path",
                                       "restart",
                                       "backoff",
                                       "max_restarts",
                                       "restart_window_ms",
                                       "start_timeout_ms",
                                       NULL};
    char path[64], sub[300];
    const char *restart = NULL;
    uint64_t workers = 0, max_restarts = o->max_restarts;
    int err;

    snprintf(path, sizeof(path), "pools[%zu]", index);
    if (!cJSON_IsObject(pool))
        return cfg_fail(c, path, "must be an object");
    if ((err = cfg_known_keys(c, pool, path, keys)))
        return err;
    if (cJSON_GetObjectItemCaseSensitive(pool, "name") == NULL)
        return cfg_fail(c, path, "needs a \"name\"");
    if ((err = cfg_string(c, pool, path, "name", &o->name)))
        return err;
    snprintf(sub, sizeof(sub), "%s.name", path);
    if (!cfg_name_ok(o->name) || strlen(o->name) > SHOAL_MAX_NAME_BYTES - 8)
        return cfg_fail(c, sub,
                        "'%s' is not a pool name (no '/', no spaces, no "
                        "leading '.', at most %d bytes)",
                        o->name, SHOAL_MAX_NAME_BYTES - 8);
    if ((err = cfg_uint(c, pool, path, "workers", 1, SHOAL_SUP_MAX_WORKERS,
                        &workers)) ||
        (err = cfg_strings(c, pool, path, "names", &o->names, &o->n_names)) ||
        (err = cfg_strings(c, pool, path, "apps", &o->apps, &o->n_apps)) ||
        (err = cfg_strings(c, pool, path, "exec", &o->execs, &o->n_execs)) ||
        (err = cfg_string(c, pool, path, "app_path", &o->app_path)) ||
        (err = cfg_string(c, pool, path, "restart", &restart)) ||
        (err = cfg_backoff(c, pool, path, o)) ||
        (err = cfg_uint(c, pool, path, "max_restarts", 0, 1000000,
                        &max_restarts)) ||
        (err = cfg_uint(c, pool, path, "restart_window_ms", 1, CFG_MAX_MS,
                        &o->restart_window_ms)) ||
        (err = cfg_uint(c, pool, path, "start_timeout_ms", 0, CFG_MAX_MS,
                        &o->start_timeout_ms)))
        return err;
    o->workers = (unsigned)workers;
    o->max_restarts = (unsigned)max_restarts;
    if (restart != NULL && shoal_restart_policy_parse(restart, &o->restart)) {
        snprintf(sub, sizeof(sub), "%s.restart", path);
        return cfg_fail(c, sub,
                        "must be \"permanent\", \"transient\" or "
                        "\"temporary\", not \"%s\"",
                        restart);
    }
    if (o->n_names > 0 && workers > 0 && o->n_names != workers) {
        snprintf(sub, sizeof(sub), "%s.names", path);
        return cfg_fail(c, sub, "has %zu names for %llu workers", o->n_names,
                        (unsigned long long)workers);
    }
    if (o->n_names > SHOAL_SUP_MAX_WORKERS) {
        snprintf(sub, sizeof(sub), "%s.names", path);
        return cfg_fail(c, sub, "more than %d names", SHOAL_SUP_MAX_WORKERS);
    }
    for (size_t i = 0; i < o->n_names; i++) {
        snprintf(sub, sizeof(sub), "%s.names[%zu]", path, i);
        if (!cfg_name_ok(o->names[i]))
            return cfg_fail(c, sub,
                            "'%s' is not a node name (no '/', no spaces, "
                            "no leading '.')",
                            o->names[i]);
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->names[i], o->names[j]) == 0)
                return cfg_fail(c, sub, "'%s' is given twice", o->names[i]);
    }
    return 0;
}

/* Names must be unique across pools: explicit ones, and NAME-i. */
static int cfg_unique(cfg_t *c, const shoal_pool_opts_t *pools, size_t n)
{
    char sub[300], gen[SHOAL_MAX_NAME_BYTES + 16];

    for (size_t p = 0; p < n; p++) {
        for (size_t q = 0; q < p; q++)
            if (strcmp(pools[p].name, pools[q].name) == 0) {
                snprintf(sub, sizeof(sub), "pools[%zu].name", p);
                return cfg_fail(c, sub, "'%s' is the name of pools[%zu] too",
                                pools[p].name, q);
            }
        for (size_t i = 0; i < pools[p].n_names; i++)
            for (size_t q = 0; q < n; q++) {
                if (q == p)
                    continue;
                for (size_t j = 0; j < pools[q].n_names; j++)
                    if (q < p &&
                        strcmp(pools[p].names[i], pools[q].names[j]) == 0) {
                        snprintf(sub, sizeof(sub), "pools[%zu].names[%zu]", p,
                                 i);
                        return cfg_fail(c, sub,
                                        "'%s' is a worker of pools[%zu] "
                                        "too",
                                        pools[p].names[i], q);
                    }
                if (pools[q].n_names == 0 && pools[q].workers > 0)
                    for (unsigned k = 1; k <= pools[q].workers; k++) {
                        snprintf(gen, sizeof(gen), "%s-%u", pools[q].name, k);
                        if (strcmp(gen, pools[p].names[i]) == 0) {
                            snprintf(sub, sizeof(sub), "pools[%zu].names[%zu]",
                                     p, i);
                            return cfg_fail(c, sub,
                                            "'%s' is also the name of a "
                                            "worker of pools[%zu]",
                                            gen, q);
                        }
                    }
            }
    }
    return 0;
}

static size_t cfg_count_strings(const cJSON *root)
{
    const cJSON *pools = cJSON_GetObjectItemCaseSensitive(root, "pools");
    const cJSON *listen = cJSON_GetObjectItemCaseSensitive(root, "listen");
    const cJSON *pool;
    size_t n = cJSON_IsArray(listen) ? (size_t)cJSON_GetArraySize(listen) : 0;

    if (!cJSON_IsArray(pools))
        return n;
    cJSON_ArrayForEach(pool, pools)
    {
        static const char *const arrays[] = {"names", "apps", "exec"};
        for (size_t i = 0; i < 3; i++) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(pool, arrays[i]);
            if (cJSON_IsArray(a))
                n += (size_t)cJSON_GetArraySize(a);
        }
    }
    return n;
}

int shoal_supervisor_config_parse(const char *text, size_t len,
                                  shoal_supervisor_config_t *out, char *err,
                                  size_t err_len)
{
    static const char *const keys[] = {"name",
                                       "listen",
                                       "log_dir",
                                       "log_max_bytes",
                                       "drain_timeout_ms",
                                       "kill_timeout_ms",
                                       "sample_interval_ms",
                                       "pools",
                                       NULL};
    const char *parse_end = NULL;
    const cJSON *pools, *pool;
    cfg_storage_t *st;
    cfg_t c;
    size_t i = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    shoal_supervisor_opts_default(&out->sup);
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return SHOAL_ENOMEM;
    c.err = err;
    c.err_len = err_len;
    c.st = st;
    out->storage = st;
    st->root = cJSON_ParseWithLengthOpts(text, len, &parse_end, 0);
    if (st->root == NULL) {
        size_t at =
            parse_end && parse_end >= text ? (size_t)(parse_end - text) : 0;
        rc = cfg_fail(&c, "(file)", "not valid JSON (near byte %zu)", at);
        goto fail;
    }
    while (parse_end < text + len &&
           (*parse_end == ' ' || *parse_end == '\n' || *parse_end == '\r' ||
            *parse_end == '\t'))
        parse_end++;
    if (parse_end < text + len) {
        rc = cfg_fail(&c, "(file)", "text after the JSON value (byte %zu)",
                      (size_t)(parse_end - text));
        goto fail;
    }
    if (!cJSON_IsObject(st->root)) {
        rc = cfg_fail(&c, "(top level)", "must be an object");
        goto fail;
    }
    if ((rc = cfg_known_keys(&c, st->root, "", keys)))
        goto fail;
    st->cap_strings = cfg_count_strings(st->root);
    st->strings =
        calloc(st->cap_strings ? st->cap_strings : 1, sizeof(*st->strings));
    if (st->strings == NULL) {
        rc = SHOAL_ENOMEM;
        goto fail;
    }
    if ((rc = cfg_string(&c, st->root, "", "name", &out->name)) ||
        (rc = cfg_strings(&c, st->root, "", "listen", &out->listen,
                          &out->n_listen)) ||
        (rc = cfg_string(&c, st->root, "", "log_dir", &out->sup.log_dir)) ||
        (rc = cfg_uint(&c, st->root, "", "log_max_bytes",
                       2 * SHOAL_SUP_MAX_LINE_BYTES, 1e15,
                       &out->sup.log_max_bytes)) ||
        (rc = cfg_uint(&c, st->root, "", "drain_timeout_ms", 0, CFG_MAX_MS,
                       &out->sup.drain_timeout_ms)) ||
        (rc = cfg_uint(&c, st->root, "", "kill_timeout_ms", 0, CFG_MAX_MS,
                       &out->sup.kill_timeout_ms)) ||
        (rc = cfg_uint(&c, st->root, "", "sample_interval_ms", 0, CFG_MAX_MS,
                       &out->sup.sample_interval_ms)))
        goto fail;
    if (out->name != NULL && !cfg_name_ok(out->name)) {
        rc = cfg_fail(&c, "name", "'%s' is not a node name", out->name);
        goto fail;
    }
    pools = cJSON_GetObjectItemCaseSensitive(st->root, "pools");
    if (pools == NULL) {
        rc = cfg_fail(&c, "pools", "is required (an array of pools)");
        goto fail;
    }
    if (!cJSON_IsArray(pools) || cJSON_GetArraySize(pools) == 0) {
        rc = cfg_fail(&c, "pools", "must be a non-empty array of objects");
        goto fail;
    }
    if (cJSON_GetArraySize(pools) > SHOAL_SUP_MAX_POOLS) {
        rc = cfg_fail(&c, "pools", "more than %d pools", SHOAL_SUP_MAX_POOLS);
        goto fail;
    }
    out->n_pools = (size_t)cJSON_GetArraySize(pools);
    out->pools = calloc(out->n_pools, sizeof(*out->pools));
    if (out->pools == NULL) {
        rc = SHOAL_ENOMEM;
        goto fail;
    }
    cJSON_ArrayForEach(pool, pools)
    {
        shoal_pool_opts_default(&out->pools[i]);
        if ((rc = cfg_pool(&c, pool, i, &out->pools[i])))
            goto fail;
        i++;
    }
    if ((rc = cfg_unique(&c, out->pools, out->n_pools)))
        goto fail;
    return 0;
fail:
    shoal_supervisor_config_free(out);
    return rc;
}

int shoal_supervisor_config_load(const char *path,
                                 shoal_supervisor_config_t *out, char *err,
                                 size_t err_len)
{
    char *text = NULL, why[900];
    size_t len = 0;
    FILE *f;
    int rc;

    memset(out, 0, sizeof(*out));
    f = fopen(path, "rb");
    if (f == NULL) {
        rc = uv_translate_sys_error(errno);
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return rc;
    }
    text = malloc(CFG_MAX_FILE_BYTES + 1);
    if (text == NULL) {
        fclose(f);
        snprintf(err, err_len, "%s: out of memory", path);
        return SHOAL_ENOMEM;
    }
    len = fread(text, 1, CFG_MAX_FILE_BYTES + 1, f);
    if (ferror(f) || len > CFG_MAX_FILE_BYTES) {
        fclose(f);
        free(text);
        snprintf(err, err_len, "%s: %s", path,
                 len > CFG_MAX_FILE_BYTES ? "larger than 1 MiB"
                                          : "cannot be read");
        return SHOAL_EBADCONFIG;
    }
    fclose(f);
    why[0] = '\0';
    rc = shoal_supervisor_config_parse(text, len, out, why, sizeof(why));
    free(text);
    if (rc)
        snprintf(err, err_len, "%s: %s", path, why);
    return rc;
}

void shoal_supervisor_config_free(shoal_supervisor_config_t *cfg)
{
    cfg_storage_t *st = cfg->storage;

    if (st == NULL)
        return;
    cJSON_Delete(st->root);
    free(st->strings);
    free(st);
    free(cfg->pools);
    memset(cfg, 0, sizeof(*cfg));
}
