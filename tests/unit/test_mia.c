/* test_mia.c: the membership audit's AUC against hand-computed cases
 * (separation, reversal, ties counted one half, groups compared only
 * within), against a brute-force pair count on random grouped scores with
 * many ties, and its refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "mia.h"
#include "rng.h"
#include "ul_err.h"

static double auc_of(const float *a, size_t na, const float *b, size_t nb) {
    double v = -1;
    assert_int_equal(mia_auc(a, NULL, na, b, NULL, nb, &v), UL_OK);
    return v;
}

static void test_hand_cases(void **state) {
    (void)state;
    const float hi[] = {3, 4, 5}, lo[] = {0, 1, 2};
    assert_float_equal(auc_of(hi, 3, lo, 2), 1.0, 0);
    assert_float_equal(auc_of(lo, 3, hi, 3), 0.0, 0);
    const float same[] = {2, 2, 2};
    assert_float_equal(auc_of(same, 3, same, 2), 0.5, 0);
    /* members {1, 3}, non-members {2, 3}: pairs (1,2) lose, (1,3) lose,
     * (3,2) win, (3,3) tie -> (0 + 0 + 1 + 0.5) / 4. */
    const float m[] = {1, 3}, n[] = {2, 3};
    assert_float_equal(auc_of(m, 2, n, 2), 0.375, 1e-12);
    /* Two users: each one's member outscores that user's non-member, but
     * not the other user's. Pooled 3 of 4 pairs; within users 2 of 2. */
    const float gm[] = {10, 1}, gn[] = {9, 0};
    const int32_t ga[] = {7, 3}, gb[] = {7, 3};
    assert_float_equal(auc_of(gm, 2, gn, 2), 0.75, 1e-12);
    double v = -1;
    assert_int_equal(mia_auc(gm, ga, 2, gn, gb, 2, &v), UL_OK);
    assert_float_equal(v, 1.0, 0);
    /* A group with members only is not compared with anyone. */
    const int32_t gc[] = {7, 5};
    assert_int_equal(mia_auc(gm, gc, 2, gn, gb, 2, &v), UL_OK);
    assert_float_equal(v, 1.0, 0); /* only group 7: (10 vs 9) */
}

/* Random scores on a coarse grid (many ties) in random groups against an
 * O(n^2) count, pooled and grouped. */
static void test_matches_pair_count(void **state) {
    (void)state;
    rng g;
    rng_seed(&g, 5);
    float a[300], b[200];
    int32_t ga[300], gb[200];
    for (int j = 0; j < 300; j++) {
        a[j] = (float)rng_below(&g, 12) * 0.5f;
        ga[j] = (int32_t)rng_below(&g, 9) - 4;
    }
    for (int j = 0; j < 200; j++) {
        b[j] = (float)rng_below(&g, 10) * 0.5f;
        gb[j] = (int32_t)rng_below(&g, 9) - 4;
    }
    double wins = 0, gwins = 0, gpairs = 0;
    for (int x = 0; x < 300; x++)
        for (int y = 0; y < 200; y++) {
            double w = a[x] > b[y] ? 1.0 : a[x] == b[y] ? 0.5 : 0.0;
            wins += w;
            if (ga[x] == gb[y]) {
                gwins += w;
                gpairs++;
            }
        }
    assert_float_equal(auc_of(a, 300, b, 200), wins / (300.0 * 200.0), 1e-12);
    double v = -1;
    assert_int_equal(mia_auc(a, ga, 300, b, gb, 200, &v), UL_OK);
    assert_float_equal(v, gwins / gpairs, 1e-12);
}

static void test_empty_and_bad(void **state) {
    (void)state;
    const float a[] = {1, 2};
    double v = 0;
    assert_int_equal(mia_auc(a, NULL, 2, a, NULL, 0, &v), UL_OK);
    assert_true(isnan(v));
    assert_int_equal(mia_auc(a, NULL, 0, a, NULL, 2, &v), UL_OK);
    assert_true(isnan(v));
    const int32_t g1[] = {1, 1}, g2[] = {2, 2};
    assert_int_equal(mia_auc(a, g1, 2, a, g2, 2, &v), UL_OK); /* no shared group */
    assert_true(isnan(v));
    const float bad[] = {1, NAN};
    assert_int_equal(mia_auc(bad, NULL, 2, a, NULL, 2, &v), UL_ERR_ARG);
    assert_int_equal(mia_auc(a, NULL, 2, bad, NULL, 2, &v), UL_ERR_ARG);
    assert_int_equal(mia_auc(a, g1, 2, a, NULL, 2, &v), UL_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_cases),
        cmocka_unit_test(test_matches_pair_count),
        cmocka_unit_test(test_empty_and_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
