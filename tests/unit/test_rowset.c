/* test_rowset.c: the keyed row table keeps dense indices, survives growth,
 * and tracks dirty rows once each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rowset.h"

static void test_insert_find_grow(void **state) {
    (void)state;
    rowset *rs = rowset_new(3);
    assert_non_null(rs);
    assert_int_equal(rowset_find(rs, 42), -1);
    for (int64_t i = 0; i < 10000; i++) {
        int created = 0;
        int32_t idx = rowset_insert(rs, i * 7919 - 5000, &created);
        assert_int_equal(idx, (int32_t)i);
        assert_int_equal(created, 1);
        float *row = rowset_row(rs, idx);
        assert_true(row[0] == 0.0f && row[2] == 0.0f);
        row[1] = (float)i;
    }
    assert_int_equal(rowset_size(rs), 10000);
    for (int64_t i = 0; i < 10000; i++) {
        int32_t idx = rowset_find(rs, i * 7919 - 5000);
        assert_int_equal(idx, (int32_t)i);
        assert_true(rowset_row(rs, idx)[1] == (float)i);
        assert_int_equal(rowset_key(rs, idx), i * 7919 - 5000);
    }
    int created = 1;
    assert_int_equal(rowset_insert(rs, -5000, &created), 0);
    assert_int_equal(created, 0);
    rowset_clear(rs);
    assert_int_equal(rowset_size(rs), 0);
    assert_int_equal(rowset_find(rs, -5000), -1);
    rowset_destroy(rs);
    rowset_destroy(NULL);
    assert_null(rowset_new(0));
}

static void test_dirty_once(void **state) {
    (void)state;
    rowset *rs = rowset_new(1);
    int32_t a = rowset_insert(rs, 1, NULL), b = rowset_insert(rs, 2, NULL);
    rowset_mark_dirty(rs, b);
    rowset_mark_dirty(rs, a);
    rowset_mark_dirty(rs, b);
    size_t n = 0;
    const int32_t *d = rowset_dirty(rs, &n);
    assert_int_equal(n, 2);
    assert_int_equal(d[0], b);
    assert_int_equal(d[1], a);
    rowset_clear_dirty(rs);
    rowset_dirty(rs, &n);
    assert_int_equal(n, 0);
    rowset_mark_dirty(rs, a);
    rowset_dirty(rs, &n);
    assert_int_equal(n, 1);
    rowset_destroy(rs);
}

/* Publish marks are a second set: clearing one kind leaves the other. */
static void test_publish_marks_independent(void **state) {
    (void)state;
    rowset *rs = rowset_new(1);
    int32_t a = rowset_insert(rs, 1, NULL), b = rowset_insert(rs, 2, NULL);
    rowset_mark_dirty(rs, a);
    rowset_mark_publish(rs, a);
    rowset_mark_publish(rs, b);
    rowset_mark_publish(rs, a);
    size_t n = 0;
    const int32_t *p = rowset_to_publish(rs, &n);
    assert_int_equal(n, 2);
    assert_int_equal(p[0], a);
    assert_int_equal(p[1], b);
    rowset_clear_dirty(rs);
    rowset_to_publish(rs, &n);
    assert_int_equal(n, 2);
    rowset_mark_dirty(rs, b);
    rowset_clear_publish(rs);
    rowset_to_publish(rs, &n);
    assert_int_equal(n, 0);
    rowset_dirty(rs, &n);
    assert_int_equal(n, 1);
    rowset_mark_publish(rs, b); /* marks again after a clear */
    rowset_to_publish(rs, &n);
    assert_int_equal(n, 1);
    rowset_clear(rs);
    rowset_to_publish(rs, &n);
    assert_int_equal(n, 0);
    rowset_destroy(rs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_find_grow),
        cmocka_unit_test(test_dirty_once),
        cmocka_unit_test(test_publish_marks_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
