/* test_ul_buf.c: the growable byte buffer (appends, hand-over, free) and
 * the doubling growth of a typed array (capacity kept, contents moved), and
 * the decimal formatting of integers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ul_buf.h"

static void test_buf(void **state) {
    (void)state;
    ul_buf b = {0};
    for (int i = 0; i < 1000; i++)
        ul_buf_put(&b, &i, sizeof(i));
    ul_buf_put(&b, NULL, 0);
    assert_false(b.oom);
    assert_int_equal(b.len, 1000 * sizeof(int));
    assert_true(b.cap >= b.len);
    int v;
    memcpy(&v, b.data + 999 * sizeof(int), sizeof(v));
    assert_int_equal(v, 999);
    size_t len;
    unsigned char *p = ul_buf_take(&b, &len);
    assert_int_equal(len, 1000 * sizeof(int));
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(p);
    ul_buf_put(&b, "x", 1);
    ul_buf_free(&b);
    assert_null(b.data);
    ul_buf_free(NULL);
}

static void test_grow(void **state) {
    (void)state;
    int64_t *a = NULL;
    size_t cap = 0;
    for (size_t n = 0; n < 100; n++) {
        int64_t *g = ul_grow(a, &cap, n + 1, sizeof(*a));
        assert_non_null(g);
        a = g;
        a[n] = (int64_t)n;
        assert_true(cap >= n + 1);
    }
    assert_int_equal(cap, 128); /* 16, 32, 64, 128 */
    for (size_t n = 0; n < 100; n++)
        assert_int_equal(a[n], n);
    assert_ptr_equal(ul_grow(a, &cap, 50, sizeof(*a)), a);   /* room already */
    assert_null(ul_grow(a, &cap, SIZE_MAX / 4, sizeof(*a))); /* too big: unchanged */
    assert_int_equal(cap, 128);
    free(a);
}

/* ul_fmt_*: what printf prints, at the extremes too; too small a buffer is
 * -1 with "" (never a cut number). */
static void test_fmt(void **state) {
    (void)state;
    const int64_t v[] = {0, 7, -7, 10, 1000000, -1000000, INT64_MAX, INT64_MIN};
    char got[32], want[32];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        int n = snprintf(want, sizeof(want), "%" PRId64, v[i]);
        assert_int_equal(ul_fmt_i64(got, sizeof(got), v[i]), n);
        assert_string_equal(got, want);
        assert_int_equal(ul_fmt_i64(got, (size_t)n + 1, v[i]), n); /* exactly enough */
        assert_int_equal(ul_fmt_i64(got, (size_t)n, v[i]), -1);
        assert_string_equal(got, "");
    }
    snprintf(want, sizeof(want), "%" PRIu64, UINT64_MAX);
    assert_int_equal(ul_fmt_u64(got, sizeof(got), UINT64_MAX), 20);
    assert_string_equal(got, want);
    assert_int_equal(ul_fmt_u64(got, 0, 5), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_fmt),
    };
    return cmocka_run_group_tests_name("ul_buf", tests, NULL, NULL);
}
