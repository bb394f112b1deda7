/* test_rng.c: the seeded generator is reproducible, roughly uniform, and
 * its normal fill has normal moments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

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

/* rng_normal_fill: mean 0, the asked scale, normal tails (about 4.55% beyond
 * 2 sd), an odd count filled to its last value, reproducible. */
static void test_normal_fill_moments(void **state) {
    (void)state;
    enum { N = 200001 };
    static float v[N + 1], w[N + 1];
    rng r;
    rng_seed(&r, 3);
    v[N] = 12345.0f; /* past the end: must stay */
    rng_normal_fill(&r, v, N, 0.5f);
    double sum = 0, sq = 0;
    int beyond = 0;
    for (int i = 0; i < N; i++) {
        sum += v[i];
        sq += (double)v[i] * v[i];
        beyond += v[i] > 1.0f || v[i] < -1.0f;
    }
    double mean = sum / N, sd = sqrt(sq / N - mean * mean);
    assert_true(mean > -0.005 && mean < 0.005);
    assert_true(sd > 0.495 && sd < 0.505);
    assert_true(beyond > (int)(0.042 * N) && beyond < (int)(0.049 * N));
    assert_true(v[N - 1] != 0.0f);
    assert_true(v[N] == 12345.0f);
    rng_seed(&r, 3);
    rng_normal_fill(&r, w, N, 0.5f);
    assert_memory_equal(v, w, sizeof(float) * N);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_stream),
        cmocka_unit_test(test_uniform_mean_and_below),
        cmocka_unit_test(test_shuffle_is_permutation),
        cmocka_unit_test(test_normal_fill_moments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
