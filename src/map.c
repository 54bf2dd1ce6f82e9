/* An open-addressing hash map from 64-bit ids to pointers, for calls in
 * flight: linear probing, deletion by backward shift (no tombstones). */
#include <stdlib.h>

#include "internal.h"

static size_t map_slot(uint64_t key, size_t mask)
{
    /* Ids are sequential: mix the bits so neighbours spread out. */
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & mask;
}

void shoal__map_init(shoal__map_t *map)
{
    map->keys = NULL;
    map->values = NULL;
    map->count = 0;
    map->mask = 0;
}

void shoal__map_free(shoal__map_t *map)
{
    free(map->keys);
    free(map->values);
    shoal__map_init(map);
}

static int map_grow(shoal__map_t *map)
{
    size_t cap = map->mask ? (map->mask + 1) * 2 : 16;
    shoal__map_t bigger;

    bigger.keys = malloc(cap * sizeof(*bigger.keys));
    bigger.values = calloc(cap, sizeof(*bigger.values));
    if (bigger.keys == NULL || bigger.values == NULL) {
        free(bigger.keys);
        free(bigger.values);
        return SHOAL_ENOMEM;
    }
    bigger.mask = cap - 1;
    bigger.count = map->count;
    for (size_t i = 0; map->mask && i <= map->mask; i++) {
        size_t j;
        if (map->values[i] == NULL)
            continue;
        j = map_slot(map->keys[i], bigger.mask);
        while (bigger.values[j] != NULL)
            j = (j + 1) & bigger.mask;
        bigger.keys[j] = map->keys[i];
        bigger.values[j] = map->values[i];
    }
    free(map->keys);
    free(map->values);
    *map = bigger;
    return 0;
}

int shoal__map_put(shoal__map_t *map, uint64_t key, void *value)
{
    size_t i;

    /* Keep the load under 3/4 so probes stay short. */
    if (map->mask == 0 || (map->count + 1) * 4 > (map->mask + 1) * 3) {
        int err = map_grow(map);
        if (err)
            return err;
    }
    i = map_slot(key, map->mask);
    while (map->values[i] != NULL) {
        if (map->keys[i] == key)
            return SHOAL_EEXIST;
        i = (i + 1) & map->mask;
    }
    map->keys[i] = key;
    map->values[i] = value;
    map->count++;
    return 0;
}

void *shoal__map_get(const shoal__map_t *map, uint64_t key)
{
    size_t i;

    if (map->mask == 0)
        return NULL;
    i = map_slot(key, map->mask);
    while (map->values[i] != NULL) {
        if (map->keys[i] == key)
            return map->values[i];
        i = (i + 1) & map->mask;
    }
    return NULL;
}

void *shoal__map_del(shoal__map_t *map, uint64_t key)
{
    size_t i, j;
    void *value;

    if (map->mask == 0)
        return NULL;
    i = map_slot(key, map->mask);
    while (map->values[i] != NULL && map->keys[i] != key)
        i = (i + 1) & map->mask;
    if (map->values[i] == NULL)
        return NULL;
    value = map->values[i];
    map->values[i] = NULL;
    map->count--;
    /* Shift back the entries of the probe run that follows, so that every
     * entry stays reachable from its home slot. */
    j = i;
    for (;;) {
        size_t home;
        j = (j + 1) & map->mask;
        if (map->values[j] == NULL)
            break;
        home = map_slot(map->keys[j], map->mask);
        /* Entry j may move to hole i if its home is not in (i, j]. */
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            map->keys[i] = map->keys[j];
            map->values[i] = map->values[j];
            map->values[j] = NULL;
            i = j;
        }
    }
    return value;
}
