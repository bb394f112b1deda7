/* test_ds_index.c: the raw id -> dense index map: first-seen order, the
 * direct array and the hash agreeing with a reference through the array's
 * growth (keys moving from the hash into it), sparse and negative keys,
 * and the empty-slot key refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "ds_index.h"
#include "rng.h"

/* A key drawn from a mix: small ids (the array's), ids a little beyond
 * what the array covers yet, huge and negative ones (the hash's). */
static int64_t mixed_key(rng *r) {
    switch (rng_below(r, 8)) {
    case 0:
        return -(int64_t)rng_below(r, 1000) - 1;
    case 1:
        return (int64_t)(rng_next(r) >> 1);
    case 2:
        return (int64_t)rng_below(r, 1 << 22);
    default:
        return (int64_t)rng_below(r, 200000);
    }
}

/* Intern 300k mixed keys; every answer must match a slow reference. */
static void test_matches_reference(void **state) {
    (void)state;
    enum { N = 300000 };
    int64_t *seen = malloc(N * sizeof(int64_t)); /* dense -> key, the reference */
    int64_t *keys = malloc(N * sizeof(int64_t));
    assert_non_null(seen);
    assert_non_null(keys);
    ds_index *ix = ds_index_new(16);
    assert_non_null(ix);
    rng r;
    rng_seed(&r, 5);
    int32_t count = 0;
    for (int x = 0; x < N; x++) {
        int64_t k =
            x > 1000 && rng_below(&r, 3) == 0 ? keys[rng_below(&r, (uint64_t)x)] : mixed_key(&r);
        keys[x] = k;
        int is_new = -1;
        int32_t v = ds_index_intern(ix, k, &is_new);
        assert_true(v >= 0 && v <= count);
        if (v == count) {
            assert_int_equal(is_new, 1);
            seen[count++] = k;
        } else {
            assert_int_equal(is_new, 0);
            assert_true(seen[v] == k);
        }
    }
    assert_int_equal(ds_index_count(ix), count);
    /* Every stored key is found again, after all the growth. */
    for (int32_t v = 0; v < count; v++)
        assert_int_equal(ds_index_get(ix, seen[v]), v);
    /* Absent keys are absent, small and large. */
    enum { SMALL = 1 << 22 };
    unsigned char *present = calloc(SMALL, 1);
    assert_non_null(present);
    for (int32_t v = 0; v < count; v++)
        if (seen[v] >= 0 && seen[v] < SMALL)
            present[seen[v]] = 1;
    int absent = 0;
    for (int64_t k = 0; k < SMALL; k++)
        if (!present[k]) {
            assert_int_equal(ds_index_get(ix, k), -1);
            absent++;
        }
    assert_true(absent > 1000);
    free(present);
    assert_int_equal(ds_index_get(ix, INT64_MAX - 3), -1);
    ds_index_destroy(ix);
    free(seen);
    free(keys);
}

/* Ids first seen out of order and far apart: first-seen dense indices. */
static void test_first_seen_order(void **state) {
    (void)state;
    static const int64_t keys[] = {138000, 5, 70000, 5, 1, 1LL << 40, 138000, 0, -7, 4096};
    static const int32_t want[] = {0, 1, 2, 1, 3, 4, 0, 5, 6, 7};
    ds_index *ix = ds_index_new(4);
    assert_non_null(ix);
    for (size_t x = 0; x < sizeof(keys) / sizeof(keys[0]); x++) {
        int is_new;
        assert_int_equal(ds_index_intern(ix, keys[x], &is_new), want[x]);
    }
    assert_int_equal(ds_index_count(ix), 8);
    /* Fill in the small ids: the array grows over keys the hash held. */
    for (int64_t k = 0; k < 150000; k++) {
        int is_new;
        assert_true(ds_index_intern(ix, k, &is_new) >= 0);
    }
    assert_int_equal(ds_index_get(ix, 138000), 0);
    assert_int_equal(ds_index_get(ix, 70000), 2);
    assert_int_equal(ds_index_get(ix, 1LL << 40), 4);
    assert_int_equal(ds_index_get(ix, -7), 6);
    int is_new;
    assert_int_equal(ds_index_intern(ix, INT64_MIN, &is_new), -1);
    assert_int_equal(ds_index_get(ix, INT64_MIN), -1);
    assert_int_equal(ds_index_get(NULL, 3), -1);
    ds_index_destroy(ix);
    ds_index_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_first_seen_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
