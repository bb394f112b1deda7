/* test_rows.c: the row layout's owner: dimensions and indices (the row
 * state reserved after the factors), the seeded initial rows (deterministic,
 * per kind and id, state 0), the stored encoding's size check, the copy to
 * and from an mf_model (the state left alone), the statistics' encoding, and
 * the placement of users (Java's partitioner over the decimal key) and items
 * (id mod partitions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "rows.h"

#define K 3

static void test_layout(void **state) {
    (void)state;
    assert_int_equal(rows_dim(ROWS_USER, K), 3 + K);
    assert_int_equal(rows_dim(ROWS_ITEM, K), 3 + K);
    assert_int_equal(rows_vector_dim(K), 1 + K);
    assert_int_equal(rows_state_index(K), 1 + K);
    assert_int_equal(ROWS_STATE_FLOATS * sizeof(float), 8); /* core's mf_row_state */
    assert_int_equal(rows_k(ROWS_USER, rows_dim(ROWS_USER, 7)), 7);
    assert_int_equal(rows_k(ROWS_ITEM, rows_dim(ROWS_ITEM, 7)), 7);
    assert_int_equal(ROWS_BIAS, 0);
    assert_int_equal(ROWS_FACTORS, 1);
}

static void test_initial_rows(void **state) {
    (void)state;
    float a[3 + K], b[3 + K], u[3 + K];
    memset(a, 0xff, sizeof(a));
    rows_init(a, ROWS_ITEM, K, 1, 0.1f, 42);
    rows_init(b, ROWS_ITEM, K, 1, 0.1f, 42);
    rows_init(u, ROWS_USER, K, 1, 0.1f, 42);
    assert_memory_equal(a, b, sizeof(a)); /* every worker draws the same row */
    assert_true(a[ROWS_BIAS] == 0.0f && a[rows_state_index(K)] == 0.0f &&
                a[rows_state_index(K) + 1] == 0.0f);
    assert_true(a[ROWS_FACTORS] != 0.0f);
    assert_memory_not_equal(a + ROWS_FACTORS, u + ROWS_FACTORS, K * sizeof(float)); /* kinds */
    rows_init(b, ROWS_ITEM, K, 1, 0.1f, 43);
    assert_memory_not_equal(a + ROWS_FACTORS, b + ROWS_FACTORS, K * sizeof(float)); /* ids */
}

static void test_value_and_model(void **state) {
    (void)state;
    float row[3 + K] = {0.5f, 1, 2, 3, 9, 4}, back[3 + K] = {0};
    size_t len;
    const void *v = rows_value(row, 3 + K, &len);
    assert_int_equal(len, rows_value_size(3 + K));
    assert_int_equal(rows_from_value(back, 3 + K, v, len), 0);
    assert_memory_equal(back, row, sizeof(row));
    assert_int_equal(rows_from_value(back, 1 + K, v, len), -1); /* another k */

    char err[256];
    mf_model *m = mf_model_new(2, 2, K, err, sizeof(err));
    assert_non_null(m);
    rows_to_model(row, ROWS_ITEM, m, 1);
    assert_true(m->item_bias[1] == 0.5f && m->Q[K + 2] == 3.0f);
    float out[3 + K] = {0, 0, 0, 0, 7, 8};
    rows_from_model(out, ROWS_ITEM, m, 1);
    assert_memory_equal(out, row, (1 + K) * sizeof(float));
    assert_true(out[rows_state_index(K)] == 7.0f); /* the state is not the model's */
    assert_true(out[rows_state_index(K) + 1] == 8.0f);
    rows_to_model(row, ROWS_USER, m, 0);
    assert_true(m->user_bias[0] == 0.5f && m->P[1] == 2.0f);
    mf_model_destroy(m);
}

static void test_stats_value(void **state) {
    (void)state;
    rows_stats a = {123456789012LL, -3.25}, b = {0, 0};
    unsigned char v[ROWS_STATS_BYTES];
    rows_stats_value(&a, v);
    assert_int_equal(rows_stats_from_value(&b, v, sizeof(v)), 0);
    assert_int_equal(b.count, a.count);
    assert_true(b.sum == a.sum);
    assert_int_equal(rows_stats_from_value(&b, v, sizeof(v) - 1), -1);
}

static void test_placement(void **state) {
    (void)state;
    char key[24];
    for (int64_t u = 0; u < 5000; u += 7) {
        int len = codec_key_user(u, key, sizeof(key));
        assert_int_equal(rows_user_partition(u, 4), codec_partition(key, (size_t)len, 4));
    }
    assert_int_equal(rows_user_partition(21, 4), 0); /* as Java puts it (docs/stream.md) */
    assert_int_equal(rows_item_partition(10, 4), 2);
    assert_int_equal(rows_item_partition(3, 4), 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),          cmocka_unit_test(test_initial_rows),
        cmocka_unit_test(test_value_and_model), cmocka_unit_test(test_stats_value),
        cmocka_unit_test(test_placement),
    };
    return cmocka_run_group_tests_name("rows", tests, NULL, NULL);
}
