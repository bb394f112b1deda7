/* test_ul_buf.c: the growable byte buffer (appends, hand-over, free) and
 * the doubling growth of a typed array (capacity kept, contents moved). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_grow),
    };
    return cmocka_run_group_tests_name("ul_buf", tests, NULL, NULL);
}
