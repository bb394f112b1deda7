/* test_protocol.c: operation O1 picks the right number of users and
 * ratings, reproducibly, overwrites exactly those entries; the split and the
 * item means treat F as documented; bad arguments are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "protocol.h"
#include "rng.h"
#include "ul_err.h"

#define N_USERS 60
#define N_ITEMS 40

/* A random training array: users 0..49 have 1..30 ratings each (distinct
 * items), users 50..59 have none. Values 1..4 so that O1's 5 is visible. */
static ul_ratings make_train(uint64_t seed) {
    ul_ratings t = {malloc(sizeof(ul_rating) * 50 * 30), 0};
    rng r;
    rng_seed(&r, seed);
    for (int32_t u = 0; u < 50; u++) {
        int cnt = 1 + (int)rng_below(&r, 30);
        for (int j = 0; j < cnt; j++)
            t.v[t.n++] = (ul_rating){u, (int32_t)((u + 3 * j) % N_ITEMS),
                                     (float)(1 + rng_below(&r, 4)), (int64_t)t.n};
    }
    /* Shuffle so a user's ratings are not contiguous. */
    rng_shuffle(&r, t.v, t.n, sizeof(ul_rating));
    return t;
}

static size_t user_count(const ul_ratings *t, int32_t u) {
    size_t c = 0;
    for (size_t j = 0; j < t->n; j++)
        c += t->v[j].user == u;
    return c;
}

static proto_opts opts_of(double x, double y, uint64_t seed) {
    proto_opts o = {x, y, 5.0f, seed};
    return o;
}

static void test_sizes(void **state) {
    (void)state;
    ul_ratings t = make_train(1);
    ul_ratings faulty;
    proto_forget fs;
    char err[256];
    proto_opts o = opts_of(20, 40, 7);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_OK);
    /* 20% of the 50 users with ratings (users without ratings do not count). */
    assert_int_equal(fs.n_users, 10);
    assert_int_equal(faulty.n, t.n);
    size_t want = 0, n_flag = 0;
    for (size_t a = 0; a < fs.n_users; a++) {
        assert_true(fs.users[a] < 50);
        if (a > 0)
            assert_true(fs.users[a] > fs.users[a - 1]);
        size_t c = user_count(&t, fs.users[a]);
        size_t k = (size_t)llround(0.4 * (double)c);
        want += k < 1 ? 1 : k;
    }
    for (int32_t u = 0; u < N_USERS; u++)
        n_flag += fs.affected[u];
    assert_int_equal(n_flag, 10);
    assert_int_equal(fs.n, want);
    for (size_t j = 1; j < fs.n; j++)
        assert_true(fs.pos[j] > fs.pos[j - 1]);
    proto_forget_free(&fs);
    ul_ratings_free(&faulty);
    ul_ratings_free(&t);
}

static void test_at_least_one(void **state) {
    (void)state;
    ul_ratings t = make_train(2);
    ul_ratings faulty;
    proto_forget fs;
    char err[256];
    proto_opts o = opts_of(0.1, 0.1, 3);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(fs.n_users, 1);
    assert_int_equal(fs.n, 1);
    proto_forget_free(&fs);
    ul_ratings_free(&faulty);
    /* 100% of everything: every rating of every user with ratings. */
    o = opts_of(100, 100, 3);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(fs.n_users, 50);
    assert_int_equal(fs.n, t.n);
    proto_forget_free(&fs);
    ul_ratings_free(&faulty);
    ul_ratings_free(&t);
}

static void test_deterministic(void **state) {
    (void)state;
    ul_ratings t = make_train(3);
    ul_ratings f1, f2, f3;
    proto_forget a, b, c;
    char err[256];
    proto_opts o = opts_of(30, 50, 11);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &f1, &a, err, sizeof(err)), UL_OK);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &f2, &b, err, sizeof(err)), UL_OK);
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.pos, b.pos, sizeof(size_t) * a.n);
    assert_memory_equal(a.users, b.users, sizeof(int32_t) * a.n_users);
    o.seed = 12;
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &f3, &c, err, sizeof(err)), UL_OK);
    int differ = a.n != c.n || a.n_users != c.n_users ||
                 memcmp(a.users, c.users, sizeof(int32_t) * a.n_users) != 0;
    assert_true(differ);
    proto_forget_free(&a);
    proto_forget_free(&b);
    proto_forget_free(&c);
    ul_ratings_free(&f1);
    ul_ratings_free(&f2);
    ul_ratings_free(&f3);
    ul_ratings_free(&t);
}

static void test_exactly_selected_overwritten(void **state) {
    (void)state;
    ul_ratings t = make_train(4);
    ul_ratings faulty;
    proto_forget fs;
    char err[256];
    proto_opts o = opts_of(25, 50, 5);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_OK);
    uint8_t *in_f = calloc(t.n, 1);
    for (size_t j = 0; j < fs.n; j++) {
        in_f[fs.pos[j]] = 1;
        assert_true(fs.clean[j] == t.v[fs.pos[j]].value);
        assert_true(fs.affected[t.v[fs.pos[j]].user]);
    }
    for (size_t j = 0; j < t.n; j++) {
        assert_int_equal(faulty.v[j].user, t.v[j].user);
        assert_int_equal(faulty.v[j].item, t.v[j].item);
        if (in_f[j])
            assert_true(faulty.v[j].value == 5.0f);
        else
            assert_true(faulty.v[j].value == t.v[j].value); /* values are 1..4: untouched */
    }
    free(in_f);
    proto_forget_free(&fs);
    ul_ratings_free(&faulty);
    ul_ratings_free(&t);
}

static void test_split(void **state) {
    (void)state;
    ul_ratings t = make_train(5);
    ul_ratings faulty, forget, retain, rest;
    proto_forget fs;
    char err[256];
    proto_opts o = opts_of(20, 30, 9);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(
        proto_split(faulty.v, faulty.n, &fs, &forget, &retain, &rest, err, sizeof(err)), UL_OK);
    assert_int_equal(forget.n, fs.n);
    assert_int_equal(forget.n + retain.n + rest.n, t.n);
    for (size_t j = 0; j < forget.n; j++)
        assert_true(forget.v[j].value == 5.0f);
    for (size_t j = 0; j < retain.n; j++)
        assert_true(fs.affected[retain.v[j].user]);
    for (size_t j = 0; j < rest.n; j++)
        assert_false(fs.affected[rest.v[j].user]);
    ul_ratings_free(&forget);
    ul_ratings_free(&retain);
    ul_ratings_free(&rest);
    /* Only F wanted; the clean array gives the clean values. */
    assert_int_equal(proto_split(t.v, t.n, &fs, &forget, NULL, NULL, err, sizeof(err)), UL_OK);
    for (size_t j = 0; j < forget.n; j++)
        assert_true(forget.v[j].value == fs.clean[j]);
    ul_ratings_free(&forget);
    /* An F that does not fit the array is refused. */
    assert_int_equal(proto_split(t.v, fs.pos[fs.n - 1], &fs, &forget, NULL, NULL, err, sizeof(err)),
                     UL_ERR_ARG);
    proto_forget_free(&fs);
    ul_ratings_free(&faulty);
    ul_ratings_free(&t);
}

static void test_item_means_exclude_f(void **state) {
    (void)state;
    ul_ratings t = make_train(6);
    ul_ratings faulty;
    proto_forget fs;
    char err[256];
    proto_opts o = opts_of(40, 60, 2);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_OK);
    float means[N_ITEMS + 1];
    assert_int_equal(
        proto_item_means(faulty.v, faulty.n, &fs, N_ITEMS + 1, 3.0f, means, err, sizeof(err)),
        UL_OK);
    uint8_t *in_f = calloc(t.n, 1);
    for (size_t j = 0; j < fs.n; j++)
        in_f[fs.pos[j]] = 1;
    double gsum = 0;
    size_t gcnt = 0;
    for (int32_t i = 0; i < N_ITEMS; i++) {
        double sum = 0;
        size_t cnt = 0;
        for (size_t j = 0; j < t.n; j++) {
            if (t.v[j].item == i && !in_f[j]) {
                sum += t.v[j].value;
                cnt++;
            }
        }
        gsum += sum;
        gcnt += cnt;
        if (cnt > 0)
            assert_float_equal(means[i], sum / (double)cnt, 1e-5);
        assert_true(means[i] <= 4.0f); /* the 5s of F never leak in */
    }
    /* Item N_ITEMS has no rating at all: it gets the global mean outside F. */
    assert_float_equal(means[N_ITEMS], gsum / (double)gcnt, 1e-5);
    /* A bad item id is refused. */
    faulty.v[0].item = N_ITEMS + 5;
    assert_int_equal(
        proto_item_means(faulty.v, faulty.n, &fs, N_ITEMS + 1, 3.0f, means, err, sizeof(err)),
        UL_ERR_ARG);
    free(in_f);
    proto_forget_free(&fs);
    ul_ratings_free(&faulty);
    ul_ratings_free(&t);
}

static void test_bad_arguments(void **state) {
    (void)state;
    ul_ratings t = make_train(7);
    ul_ratings faulty;
    proto_forget fs;
    char err[256] = "";
    proto_opts o = opts_of(0, 50, 1);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_ERR_ARG);
    assert_non_null(strstr(err, "users"));
    o = opts_of(10, 100.5, 1);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_ERR_ARG);
    o = opts_of(10, NAN, 1);
    assert_int_equal(proto_make_faulty(t.v, t.n, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_ERR_ARG);
    o = opts_of(10, 50, 1);
    /* A user id outside n_users. */
    assert_int_equal(proto_make_faulty(t.v, t.n, 10, &o, &faulty, &fs, err, sizeof(err)),
                     UL_ERR_ARG);
    assert_null(faulty.v);
    /* Nothing to forget. */
    assert_int_equal(proto_make_faulty(t.v, 0, N_USERS, &o, &faulty, &fs, err, sizeof(err)),
                     UL_ERR_ARG);
    proto_forget_free(&fs);
    proto_forget_free(NULL);
    ul_ratings_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),         cmocka_unit_test(test_at_least_one),
        cmocka_unit_test(test_deterministic), cmocka_unit_test(test_exactly_selected_overwritten),
        cmocka_unit_test(test_split),         cmocka_unit_test(test_item_means_exclude_f),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
