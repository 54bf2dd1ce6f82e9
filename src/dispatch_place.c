/* Placement: a stable-ordered set of members and the pure functions that
 * pick one of them (round-robin, key, least-loaded). No I/O, no libuv. */
#include <stdlib.h>
#include <string.h>

#include "shoal/dispatch.h"

static const char *const place_strategy_names[] = {
    [SHOAL_STRATEGY_ROUND_ROBIN] = "round-robin",
    [SHOAL_STRATEGY_KEY] = "key",
    [SHOAL_STRATEGY_LEAST_LOADED] = "least-loaded",
    [SHOAL_STRATEGY_BROADCAST] = "broadcast",
    [SHOAL_STRATEGY_DIRECT] = "direct",
};

const char *shoal_strategy_name(shoal_strategy_t strategy)
{
    if ((unsigned)strategy > SHOAL_STRATEGY_DIRECT)
        return "unknown";
    return place_strategy_names[strategy];
}

int shoal_strategy_parse(const char *name, shoal_strategy_t *out)
{
    if (name == NULL)
        return SHOAL_EINVAL;
    for (unsigned i = 0; i <= SHOAL_STRATEGY_DIRECT; i++)
        if (strcmp(name, place_strategy_names[i]) == 0) {
            *out = (shoal_strategy_t)i;
            return 0;
        }
    if (strcmp(name, "rr") == 0 || strcmp(name, "round_robin") == 0) {
        *out = SHOAL_STRATEGY_ROUND_ROBIN;
        return 0;
    }
    if (strcmp(name, "ll") == 0 || strcmp(name, "least_loaded") == 0) {
        *out = SHOAL_STRATEGY_LEAST_LOADED;
        return 0;
    }
    return SHOAL_EINVAL;
}

/* ---- hashing ------------------------------------------------------------ */

/* MurmurHash3's finaliser: every input bit flips each output bit with
 * probability close to 1/2, which FNV-1a alone does not give. */
static uint64_t place_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t shoal_placer_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return place_mix(h ^ len);
}

/* The rendezvous score of a member for a key. Mixing the sum before the
 * xor keeps scores of different members for one key independent. */
static uint64_t place_score(uint64_t member_hash, uint64_t key_hash)
{
    return place_mix(member_hash ^ place_mix(key_hash + member_hash));
}

/* ---- the set ------------------------------------------------------------ */

void shoal_placer_init(shoal_placer_t *p)
{
    memset(p, 0, sizeof(*p));
}

void shoal_placer_free(shoal_placer_t *p)
{
    for (size_t i = 0; i < p->count; i++)
        free(p->members[i].name);
    free(p->members);
    memset(p, 0, sizeof(*p));
}

/* The index where name is, or where it would go (*found false). */
static size_t place_search(const shoal_placer_t *p, const char *name,
                           bool *found)
{
    size_t lo = 0, hi = p->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->members[mid].name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

int shoal_placer_add(shoal_placer_t *p, const char *name, void *data)
{
    size_t at, len;
    bool found;
    char *copy;

    if (name == NULL || name[0] == '\0')
        return SHOAL_EINVAL;
    len = strlen(name);
    if (len > SHOAL_MAX_NAME_BYTES)
        return SHOAL_ENAMETOOLONG;
    at = place_search(p, name, &found);
    if (found)
        return SHOAL_EEXIST;
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        shoal_placer_member_t *grown =
            realloc(p->members, cap * sizeof(*grown));
        if (grown == NULL)
            return SHOAL_ENOMEM;
        p->members = grown;
        p->cap = cap;
    }
    copy = malloc(len + 1);
    if (copy == NULL)
        return SHOAL_ENOMEM;
    memcpy(copy, name, len + 1);
    memmove(p->members + at + 1, p->members + at,
            (p->count - at) * sizeof(*p->members));
    p->members[at].name = copy;
    p->members[at].hash = shoal_placer_hash(name, len);
    p->members[at].data = data;
    p->count++;
    /* The member whose turn it was keeps it. */
    if (at < p->cursor)
        p->cursor++;
    return (int)at;
}

int shoal_placer_remove(shoal_placer_t *p, const char *name)
{
    bool found;
    size_t at = place_search(p, name, &found);

    if (!found)
        return SHOAL_ENOTFOUND;
    free(p->members[at].name);
    memmove(p->members + at, p->members + at + 1,
            (p->count - at - 1) * sizeof(*p->members));
    p->count--;
    if (at < p->cursor)
        p->cursor--;
    if (p->cursor >= p->count)
        p->cursor = 0;
    return (int)at;
}

int shoal_placer_find(const shoal_placer_t *p, const char *name)
{
    bool found;
    size_t at = place_search(p, name, &found);

    return found ? (int)at : SHOAL_ENOTFOUND;
}

const char *shoal_placer_name(const shoal_placer_t *p, size_t i)
{
    return i < p->count ? p->members[i].name : NULL;
}

void *shoal_placer_data(const shoal_placer_t *p, size_t i)
{
    return i < p->count ? p->members[i].data : NULL;
}

/* ---- choosing ----------------------------------------------------------- */

static size_t place_load(const shoal_placer_t *p, size_t i,
                         shoal_placer_load_fn load, void *arg)
{
    return load ? load(p->members[i].data, arg) : 0;
}

int shoal_placer_next(shoal_placer_t *p, shoal_placer_load_fn load, void *arg)
{
    if (p->count == 0)
        return SHOAL_ENOWORKER;
    if (p->cursor >= p->count)
        p->cursor = 0;
    for (size_t k = 0; k < p->count; k++) {
        size_t i = (p->cursor + k) % p->count;
        if (place_load(p, i, load, arg) != SHOAL_PLACER_FULL) {
            p->cursor = (i + 1) % p->count;
            return (int)i;
        }
    }
    return SHOAL_EOVERLOADED;
}

int shoal_placer_least_loaded(shoal_placer_t *p, shoal_placer_load_fn load,
                              void *arg)
{
    size_t best = SIZE_MAX, best_load = SHOAL_PLACER_FULL;

    if (p->count == 0)
        return SHOAL_ENOWORKER;
    if (p->cursor >= p->count)
        p->cursor = 0;
    for (size_t k = 0; k < p->count; k++) {
        size_t i = (p->cursor + k) % p->count;
        size_t l = place_load(p, i, load, arg);
        if (l < best_load) {
            best = i;
            best_load = l;
        }
    }
    if (best == SIZE_MAX)
        return SHOAL_EOVERLOADED;
    p->cursor = (best + 1) % p->count;
    return (int)best;
}

int shoal_placer_key(const shoal_placer_t *p, uint64_t key_hash)
{
    uint64_t best_score = 0;
    size_t best = 0;

    if (p->count == 0)
        return SHOAL_ENOWORKER;
    for (size_t i = 0; i < p->count; i++) {
        uint64_t s = place_score(p->members[i].hash, key_hash);
        /* Ties (one in 2^64) go to the lower index: still stable. */
        if (i == 0 || s > best_score) {
            best = i;
            best_score = s;
        }
    }
    return (int)best;
}
