/* Placement: the stable order, round-robin turns, key stability and how
 * few keys move when a member joins or leaves, least-loaded choices. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "shoal/dispatch.h"

#define KEYS 100000

static void add_nodes(shoal_placer_t *p, int n)
{
    char name[32];

    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "node-%02d", i);
        cr_assert(shoal_placer_add(p, name, (void *)(intptr_t)(i + 1)) >= 0);
    }
}

static uint64_t key_hash(int k)
{
    char key[32];
    int len = snprintf(key, sizeof(key), "key-%d", k);

    return shoal_placer_hash(key, (size_t)len);
}

Test(dispatch_place, members_are_kept_in_name_order_whatever_the_joins)
{
    shoal_placer_t p;

    shoal_placer_init(&p);
    cr_assert_eq(shoal_placer_add(&p, "c", NULL), 0);
    cr_assert_eq(shoal_placer_add(&p, "a", NULL), 0);
    cr_assert_eq(shoal_placer_add(&p, "b", NULL), 1);
    cr_assert_eq(shoal_placer_add(&p, "b", NULL), SHOAL_EEXIST);
    cr_assert_eq(shoal_placer_add(&p, "", NULL), SHOAL_EINVAL);
    cr_assert_str_eq(shoal_placer_name(&p, 0), "a");
    cr_assert_str_eq(shoal_placer_name(&p, 1), "b");
    cr_assert_str_eq(shoal_placer_name(&p, 2), "c");
    cr_assert_null(shoal_placer_name(&p, 3));
    cr_assert_eq(shoal_placer_find(&p, "c"), 2);
    cr_assert_eq(shoal_placer_find(&p, "z"), SHOAL_ENOTFOUND);
    cr_assert_eq(shoal_placer_remove(&p, "b"), 1);
    cr_assert_eq(shoal_placer_remove(&p, "b"), SHOAL_ENOTFOUND);
    cr_assert_str_eq(shoal_placer_name(&p, 1), "c");
    shoal_placer_free(&p);
}

Test(dispatch_place, an_empty_set_has_no_worker)
{
    shoal_placer_t p;

    shoal_placer_init(&p);
    cr_assert_eq(shoal_placer_next(&p, NULL, NULL), SHOAL_ENOWORKER);
    cr_assert_eq(shoal_placer_least_loaded(&p, NULL, NULL), SHOAL_ENOWORKER);
    cr_assert_eq(shoal_placer_key(&p, 42), SHOAL_ENOWORKER);
    shoal_placer_free(&p);
}

Test(dispatch_place, round_robin_takes_each_index_in_turn)
{
    shoal_placer_t p;

    shoal_placer_init(&p);
    add_nodes(&p, 3);
    for (int i = 0; i < 9; i++)
        cr_assert_eq(shoal_placer_next(&p, NULL, NULL), i % 3);
    shoal_placer_free(&p);
}

static size_t load_from_table(void *member_data, void *arg)
{
    const size_t *loads = arg;

    return loads[(intptr_t)member_data - 1];
}

Test(dispatch_place, round_robin_skips_full_members_and_reports_overload)
{
    size_t loads[3] = {0, SHOAL_PLACER_FULL, 0};
    shoal_placer_t p;

    shoal_placer_init(&p);
    add_nodes(&p, 3);
    cr_assert_eq(shoal_placer_next(&p, load_from_table, loads), 0);
    cr_assert_eq(shoal_placer_next(&p, load_from_table, loads), 2);
    cr_assert_eq(shoal_placer_next(&p, load_from_table, loads), 0);
    loads[0] = loads[2] = SHOAL_PLACER_FULL;
    cr_assert_eq(shoal_placer_next(&p, load_from_table, loads),
                 SHOAL_EOVERLOADED);
    shoal_placer_free(&p);
}

Test(dispatch_place, the_turn_stays_with_its_member_when_another_joins)
{
    shoal_placer_t p;

    shoal_placer_init(&p);
    cr_assert_geq(shoal_placer_add(&p, "b", NULL), 0);
    cr_assert_geq(shoal_placer_add(&p, "c", NULL), 0);
    cr_assert_eq(shoal_placer_next(&p, NULL, NULL), 0); /* b */
    /* c's turn; "a" joins before it in the order. */
    cr_assert_geq(shoal_placer_add(&p, "a", NULL), 0);
    cr_assert_str_eq(
        shoal_placer_name(&p, (size_t)shoal_placer_next(&p, NULL, NULL)), "c");
    shoal_placer_free(&p);
}

Test(dispatch_place, least_loaded_picks_the_fewest_and_rotates_ties)
{
    size_t loads[3] = {5, 2, 7};
    shoal_placer_t p;
    int seen[3] = {0, 0, 0};

    shoal_placer_init(&p);
    add_nodes(&p, 3);
    cr_assert_eq(shoal_placer_least_loaded(&p, load_from_table, loads), 1);
    loads[0] = loads[1] = loads[2] = 3;
    for (int i = 0; i < 30; i++)
        seen[shoal_placer_least_loaded(&p, load_from_table, loads)]++;
    cr_assert_eq(seen[0], 10);
    cr_assert_eq(seen[1], 10);
    cr_assert_eq(seen[2], 10);
    loads[0] = loads[1] = loads[2] = SHOAL_PLACER_FULL;
    cr_assert_eq(shoal_placer_least_loaded(&p, load_from_table, loads),
                 SHOAL_EOVERLOADED);
    shoal_placer_free(&p);
}

Test(dispatch_place, a_key_goes_to_the_same_member_while_the_set_holds)
{
    shoal_placer_t p, q;

    shoal_placer_init(&p);
    shoal_placer_init(&q);
    add_nodes(&p, 10);
    /* Another placer built in another order agrees: the index depends
     * on the names only. */
    for (int i = 9; i >= 0; i--) {
        char name[32];
        snprintf(name, sizeof(name), "node-%02d", i);
        cr_assert_geq(shoal_placer_add(&q, name, NULL), 0);
    }
    for (int k = 0; k < 1000; k++) {
        int a = shoal_placer_key(&p, key_hash(k));
        cr_assert_eq(shoal_placer_key(&p, key_hash(k)), a);
        cr_assert_eq(shoal_placer_key(&q, key_hash(k)), a);
    }
    shoal_placer_free(&p);
    shoal_placer_free(&q);
}

Test(dispatch_place, keys_spread_evenly_over_members)
{
    int count[10] = {0};
    shoal_placer_t p;

    shoal_placer_init(&p);
    add_nodes(&p, 10);
    for (int k = 0; k < KEYS; k++)
        count[shoal_placer_key(&p, key_hash(k))]++;
    /* 10,000 expected each; 5 sigma is about 475. */
    for (int i = 0; i < 10; i++)
        cr_assert(count[i] > 9400 && count[i] < 10600, "member %d: %d", i,
                  count[i]);
    shoal_placer_free(&p);
}

Test(dispatch_place, a_join_moves_about_one_key_in_n_and_only_to_the_new)
{
    shoal_placer_t p;
    int *before = malloc(KEYS * sizeof(int));
    int moved = 0;

    cr_assert_not_null(before);
    shoal_placer_init(&p);
    add_nodes(&p, 10);
    for (int k = 0; k < KEYS; k++)
        before[k] = shoal_placer_key(&p, key_hash(k));
    cr_assert_eq(shoal_placer_add(&p, "node-10", NULL), 10);
    for (int k = 0; k < KEYS; k++) {
        int now = shoal_placer_key(&p, key_hash(k));
        if (now != before[k]) {
            moved++;
            cr_assert_eq(now, 10, "a key moved between old members");
        }
    }
    /* 1/11 of 100,000 is 9,091; hash % n would move about 90 %. */
    cr_assert(moved > 8600 && moved < 9600, "moved %d of %d", moved, KEYS);
    free(before);
    shoal_placer_free(&p);
}

Test(dispatch_place, a_leave_moves_only_the_keys_of_the_member_that_left)
{
    shoal_placer_t p;
    char **before = malloc(KEYS * sizeof(char *));
    int moved = 0;

    cr_assert_not_null(before);
    shoal_placer_init(&p);
    add_nodes(&p, 11);
    for (int k = 0; k < KEYS; k++)
        before[k] = strdup(
            shoal_placer_name(&p, (size_t)shoal_placer_key(&p, key_hash(k))));
    cr_assert_eq(shoal_placer_remove(&p, "node-04"), 4);
    for (int k = 0; k < KEYS; k++) {
        const char *now =
            shoal_placer_name(&p, (size_t)shoal_placer_key(&p, key_hash(k)));
        if (strcmp(now, before[k]) != 0) {
            moved++;
            cr_assert_str_eq(before[k], "node-04");
        }
        free(before[k]);
    }
    cr_assert(moved > 8600 && moved < 9600, "moved %d of %d", moved, KEYS);
    free(before);
    shoal_placer_free(&p);
}

Test(dispatch_place, strategy_names_parse_back)
{
    shoal_strategy_t s;

    for (int i = 0; i <= SHOAL_STRATEGY_DIRECT; i++) {
        cr_assert_eq(
            shoal_strategy_parse(shoal_strategy_name((shoal_strategy_t)i), &s),
            0);
        cr_assert_eq(s, (shoal_strategy_t)i);
    }
    cr_assert_eq(shoal_strategy_parse("rr", &s), 0);
    cr_assert_eq(s, SHOAL_STRATEGY_ROUND_ROBIN);
    cr_assert_eq(shoal_strategy_parse("random", &s), SHOAL_EINVAL);
}
