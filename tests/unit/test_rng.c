/* test_rng.c: the seeded generator is reproducible and roughly uniform. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rng.h"

static void test_same_seed_same_stream(void **state) {
    (void)state;
    rng a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(rng_next(&a), rng_next(&b));
    rng_seed(&b, 43);
    assert_true(rng_next(&a) != rng_next(&b));
}

static void test_uniform_mean_and_below(void **state) {
    (void)state;
    rng r;
    rng_seed(&r, 7);
    double sum = 0;
    int counts[5] = {0};
    for (int i = 0; i < 100000; i++) {
        double u = rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        counts[rng_below(&r, 5)]++;
    }
    assert_true(sum / 100000 > 0.49 && sum / 100000 < 0.51);
    for (int k = 0; k < 5; k++)
        assert_true(counts[k] > 19000 && counts[k] < 21000);
}

static void test_shuffle_is_permutation(void **state) {
    (void)state;
    rng r;
    rng_seed(&r, 1);
    int a[100], seen[100] = {0};
    for (int i = 0; i < 100; i++)
        a[i] = i;
    rng_shuffle(&r, a, 100, sizeof(int));
    int moved = 0;
    for (int i = 0; i < 100; i++) {
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 50);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_uniform_mean_and_below),
        cmocka_unit_test(test_shuffle_is_permutation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
