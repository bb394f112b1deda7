/* test_mf.c: biased MF: training quality on a planted model, determinism
 * across thread counts, the online step, scoring and top-K, parameter
 * checks, and the model file (round trip and every kind of rejection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "rng.h"
#include "testutil.h"
#include "ul_err.h"

/* A planted rank-4 model: r = 3.5 + b_u + b_i + p_u.q_i + noise, clipped to
 * 1..5, on a random 30% of a 300 x 200 matrix. */
#define PL_USERS 300
#define PL_ITEMS 200

typedef struct planted {
    ul_rating *v;
    size_t n;
} planted;

static planted make_planted(uint64_t seed, float noise) {
    enum { R = 4 };
    rng r;
    rng_seed(&r, seed);
    static float P[PL_USERS][R], Q[PL_ITEMS][R], bu[PL_USERS], bi[PL_ITEMS];
    for (int u = 0; u < PL_USERS; u++) {
        bu[u] = (float)(0.3 * rng_normal(&r));
        for (int f = 0; f < R; f++)
            P[u][f] = (float)(0.6 * rng_normal(&r));
    }
    for (int i = 0; i < PL_ITEMS; i++) {
        bi[i] = (float)(0.3 * rng_normal(&r));
        for (int f = 0; f < R; f++)
            Q[i][f] = (float)(0.6 * rng_normal(&r));
    }
    planted pl = {malloc(PL_USERS * PL_ITEMS * sizeof(ul_rating)), 0};
    assert_non_null(pl.v);
    for (int u = 0; u < PL_USERS; u++)
        for (int i = 0; i < PL_ITEMS; i++) {
            if (rng_uniform(&r) >= 0.3)
                continue;
            double v = 3.5 + bu[u] + bi[i] + noise * rng_normal(&r);
            for (int f = 0; f < R; f++)
                v += P[u][f] * Q[i][f];
            v = v < 1 ? 1 : v > 5 ? 5 : v;
            pl.v[pl.n++] = (ul_rating){.user = u, .item = i, .value = (float)v, .time = 0};
        }
    rng_shuffle(&r, pl.v, pl.n, sizeof(ul_rating));
    return pl;
}

static mf_params small_params(void) {
    mf_params p;
    mf_params_init(&p);
    /* Fixed here, not the defaults: those are tuned for MovieLens. */
    p.k = 16;
    p.epochs = 30;
    p.lr = 0.03f;
    p.lr_decay = 0.97f;
    p.reg = 0.05f;
    p.init_std = 0.1f;
    p.threads = 1;
    return p;
}

static mf_model *train_or_fail(const ul_rating *v, size_t n, const mf_params *p) {
    char err[UL_ERRSTR_SIZE] = "";
    mf_model *m = mf_train(v, n, PL_USERS, PL_ITEMS, 1.0f, 5.0f, p, NULL, NULL, err, sizeof(err));
    if (m == NULL)
        fail_msg("mf_train: %s", err);
    return m;
}

static double stddev(const ul_rating *v, size_t n) {
    double s = 0, s2 = 0;
    for (size_t x = 0; x < n; x++) {
        s += v[x].value;
        s2 += (double)v[x].value * v[x].value;
    }
    return sqrt(s2 / (double)n - (s / (double)n) * (s / (double)n));
}

static void test_train_planted_low_rmse(void **state) {
    (void)state;
    planted pl = make_planted(1, 0.1f);
    size_t n_test = pl.n / 10, n_train = pl.n - n_test;
    mf_params p = small_params();
    mf_model *m = train_or_fail(pl.v, n_train, &p);
    double test = mf_rmse(m, pl.v + n_train, n_test);
    double base = stddev(pl.v + n_train, n_test);
    print_message("planted: test RMSE %.4f, mean predictor %.4f\n", test, base);
    /* The mean predictor has RMSE ~ base (about 0.8), the noise is 0.1: a
     * fitted model must be far below the first, near the second. */
    assert_true(base > 0.6);
    assert_true(test < 0.3 * base);
    assert_true(mf_rmse(m, pl.v, n_train) < test + 0.05);
    assert_true(fabsf(m->global_mean - 3.5f) < 0.3f);
    mf_model_destroy(m);
    free(pl.v);
}

static int same_model(const mf_model *a, const mf_model *b) {
    size_t nu = (size_t)a->n_users, ni = (size_t)a->n_items, k = (size_t)a->k;
    return a->n_users == b->n_users && a->n_items == b->n_items && a->k == b->k &&
           memcmp(&a->global_mean, &b->global_mean, sizeof(float)) == 0 &&
           memcmp(a->user_bias, b->user_bias, nu * sizeof(float)) == 0 &&
           memcmp(a->item_bias, b->item_bias, ni * sizeof(float)) == 0 &&
           memcmp(a->P, b->P, nu * k * sizeof(float)) == 0 &&
           memcmp(a->Q, b->Q, ni * k * sizeof(float)) == 0;
}

static void test_deterministic_across_threads(void **state) {
    (void)state;
    planted pl = make_planted(2, 0.2f);
    mf_params p = small_params();
    p.epochs = 5;
    p.k = 64; /* the specialised kernel */
    mf_model *one = train_or_fail(pl.v, pl.n, &p);
    p.threads = 2;
    mf_model *two = train_or_fail(pl.v, pl.n, &p);
    p.threads = 7;
    mf_model *seven = train_or_fail(pl.v, pl.n, &p);
    assert_true(same_model(one, two));
    assert_true(same_model(one, seven));
    p.seed = 43;
    mf_model *other = train_or_fail(pl.v, pl.n, &p);
    assert_false(same_model(one, other));
    mf_model_destroy(one);
    mf_model_destroy(two);
    mf_model_destroy(seven);
    mf_model_destroy(other);
    free(pl.v);
}

static void test_sgd_step_reduces_error(void **state) {
    (void)state;
    mf_model *m = mf_model_new(3, 4, 8, NULL, 0);
    assert_non_null(m);
    m->global_mean = 3.0f;
    for (int x = 0; x < 8; x++) {
        m->P[8 + x] = 0.1f * (float)(x + 1);
        m->Q[2 * 8 + x] = 0.05f * (float)(8 - x);
    }
    float before = 4.5f - mf_predict_raw(m, 1, 2);
    float err = mf_sgd_step(m, 1, 2, 4.5f, 0.05f, 0.01f, 0.01f);
    assert_float_equal(err, before, 1e-6);
    float prev = fabsf(err);
    for (int s = 0; s < 10; s++) {
        float e = fabsf(mf_sgd_step(m, 1, 2, 4.5f, 0.05f, 0.01f, 0.01f));
        assert_true(e < prev);
        prev = e;
    }
    for (int s = 0; s < 40; s++)
        mf_sgd_step(m, 1, 2, 4.5f, 0.05f, 0.01f, 0.01f);
    assert_true(fabsf(4.5f - mf_predict_raw(m, 1, 2)) < 0.05f);
    /* Other rows are untouched. */
    assert_float_equal(m->user_bias[0], 0.0f, 0);
    assert_float_equal(m->item_bias[3], 0.0f, 0);
    mf_model_destroy(m);
}

/* The k=64 fast path of the step and the prediction against the update
 * written out in double precision. */
static void test_sgd_step_k64_formula(void **state) {
    (void)state;
    enum { K = 64 };
    mf_model *m = mf_model_new(2, 2, K, NULL, 0);
    assert_non_null(m);
    rng r;
    rng_seed(&r, 5);
    double p[K], q[K], dot = 0;
    for (int x = 0; x < K; x++) {
        m->P[K + x] = (float)(0.2 * rng_normal(&r));
        m->Q[x] = (float)(0.2 * rng_normal(&r));
        p[x] = m->P[K + x];
        q[x] = m->Q[x];
        dot += p[x] * q[x];
    }
    m->global_mean = 3.6f;
    m->user_bias[1] = 0.25f;
    m->item_bias[0] = -0.5f;
    double pred = 3.6 + 0.25 - 0.5 + dot;
    assert_float_equal(mf_predict_raw(m, 1, 0), pred, 1e-5);
    const double lr = 0.02, reg = 0.05, rb = 0.01, value = 4.0;
    double e = value - pred;
    float got = mf_sgd_step(m, 1, 0, (float)value, (float)lr, (float)reg, (float)rb);
    assert_float_equal(got, e, 1e-5);
    assert_float_equal(m->user_bias[1], 0.25 + lr * (e - rb * 0.25), 1e-6);
    assert_float_equal(m->item_bias[0], -0.5 + lr * (e - rb * -0.5), 1e-6);
    for (int x = 0; x < K; x++) {
        assert_float_equal(m->P[K + x], p[x] + lr * (e * q[x] - reg * p[x]), 1e-6);
        assert_float_equal(m->Q[x], q[x] + lr * (e * p[x] - reg * q[x]), 1e-6);
    }
    /* Outside the model: the error of the fallback prediction, no update. */
    float bi = m->item_bias[0];
    assert_float_equal(mf_sgd_step(m, 7, 0, 4.0f, 0.1f, 0.0f, 0.0f), 4.0 - (3.6 + bi), 1e-5);
    assert_float_equal(m->item_bias[0], bi, 0);
    mf_model_destroy(m);
}

static void test_predict_clips_and_unknown(void **state) {
    (void)state;
    mf_model *m = mf_model_new(2, 2, 4, NULL, 0);
    assert_non_null(m);
    m->global_mean = 4.0f;
    m->user_bias[0] = 2.0f;
    m->item_bias[1] = -0.5f;
    assert_float_equal(mf_predict_raw(m, 0, 0), 6.0f, 1e-6);
    assert_float_equal(mf_predict(m, 0, 0), 5.0f, 0);
    m->user_bias[1] = -5.0f;
    assert_float_equal(mf_predict(m, 1, 0), 1.0f, 0);
    /* Unknown ids fall back to the terms that exist. */
    assert_float_equal(mf_predict_raw(m, -1, 1), 3.5f, 1e-6);
    assert_float_equal(mf_predict_raw(m, 0, 99), 6.0f, 1e-6);
    ul_rating r[2] = {{.user = 0, .item = 0, .value = 5.0f}, {.user = 1, .item = 0, .value = 2.0f}};
    assert_float_equal(mf_rmse(m, r, 2), sqrt(0.5), 1e-6);
    assert_float_equal(mf_rmse(m, r, 0), 0.0, 0);
    mf_model_destroy(m);
}

static void test_score_users_matches_predict(void **state) {
    (void)state;
    planted pl = make_planted(3, 0.2f);
    mf_params p = small_params();
    p.epochs = 3;
    mf_model *m = train_or_fail(pl.v, pl.n, &p);
    int32_t users[3] = {0, 17, 299};
    float *out = malloc(3 * PL_ITEMS * sizeof(float));
    assert_int_equal(mf_score_users(m, users, 3, out), UL_OK);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < PL_ITEMS; i++)
            assert_float_equal(out[r * PL_ITEMS + i], mf_predict_raw(m, users[r], i), 1e-4);
    int32_t bad = PL_USERS;
    assert_int_equal(mf_score_users(m, &bad, 1, out), UL_ERR_ARG);
    free(out);
    mf_model_destroy(m);
    free(pl.v);
}

static void test_top_k_order_and_exclusion(void **state) {
    (void)state;
    mf_model *m = mf_model_new(1, 6, 2, NULL, 0);
    assert_non_null(m);
    m->P[0] = 1.0f;
    m->P[1] = 0.0f;
    /* Item scores: 0:0.1 1:0.5 2:0.3 3:0.5 4:-1 5:0.9 */
    float q0[6] = {0.1f, 0.5f, 0.3f, 0.5f, -1.0f, 0.9f};
    for (int i = 0; i < 6; i++)
        m->Q[2 * i] = q0[i];
    int32_t items[6];
    float scores[6];
    assert_int_equal(mf_top_k(m, 0, NULL, 3, items, scores), 3);
    assert_int_equal(items[0], 5);
    assert_int_equal(items[1], 1); /* tie with 3: lower index first */
    assert_int_equal(items[2], 3);
    assert_float_equal(scores[0], 0.9f, 1e-6);
    uint8_t exclude[6] = {0, 1, 0, 0, 0, 1};
    assert_int_equal(mf_top_k(m, 0, exclude, 2, items, scores), 2);
    assert_int_equal(items[0], 3);
    assert_int_equal(items[1], 2);
    /* Asking for more than remain returns what remains, sorted. */
    assert_int_equal(mf_top_k(m, 0, exclude, 10, items, scores), 4);
    int32_t want[4] = {3, 2, 0, 4};
    for (int x = 0; x < 4; x++)
        assert_int_equal(items[x], want[x]);
    assert_int_equal(mf_top_k(m, 0, NULL, 0, items, scores), 0);
    assert_int_equal(mf_top_k(m, 1, NULL, 3, items, scores), UL_ERR_ARG);
    assert_int_equal(mf_top_k(m, 0, NULL, -1, items, scores), UL_ERR_ARG);
    mf_model_destroy(m);
}

static void test_params_check(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE];
    mf_params p;
    mf_params_init(&p);
    assert_int_equal(p.k, 64);
    assert_int_equal(mf_params_check(&p, err, sizeof(err)), UL_OK);
#define BAD(field, value, word)                                                                    \
    do {                                                                                           \
        mf_params q = p;                                                                           \
        q.field = value;                                                                           \
        err[0] = '\0';                                                                             \
        assert_int_equal(mf_params_check(&q, err, sizeof(err)), UL_ERR_ARG);                       \
        assert_non_null(strstr(err, word));                                                        \
    } while (0)
    BAD(k, 0, "k=");
    BAD(k, -3, "k=");
    BAD(k, MF_MAX_K + 1, "k=");
    BAD(epochs, -1, "epochs");
    BAD(lr, 0.0f, "lr");
    BAD(lr, -0.1f, "lr");
    BAD(lr, NAN, "lr");
    BAD(reg, -1.0f, "reg");
    BAD(reg, INFINITY, "reg");
    BAD(reg_bias, NAN, "reg_bias");
    BAD(init_std, NAN, "init_std");
    BAD(init_std, -1.0f, "init_std");
    BAD(lr_decay, 0.0f, "lr_decay");
    BAD(lr_decay, 1.5f, "lr_decay");
    BAD(threads, -1, "threads");
#undef BAD
    assert_int_equal(mf_params_check(NULL, err, sizeof(err)), UL_ERR_ARG);
}

static void test_train_rejects_bad_input(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE];
    mf_params p = small_params();
    ul_rating r[2] = {{.user = 0, .item = 0, .value = 4.0f}, {.user = 5, .item = 0, .value = 3.0f}};
    assert_null(mf_train(r, 2, 3, 3, 1, 5, &p, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "rating 1"));
    r[1].user = 1;
    r[1].value = NAN;
    assert_null(mf_train(r, 2, 3, 3, 1, 5, &p, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "finite"));
    assert_null(mf_train(r, 0, 3, 3, 1, 5, &p, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no ratings"));
    r[1].value = 2.0f;
    assert_null(mf_train(r, 2, 3, 3, 5, 1, &p, NULL, NULL, err, sizeof(err)));
    p.k = 0;
    assert_null(mf_train(r, 2, 3, 3, 1, 5, &p, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "k="));
    assert_null(mf_model_new(0, 3, 4, err, sizeof(err)));
    assert_null(mf_model_new(3, 3, 0, err, sizeof(err)));
}

typedef struct progress_log {
    int calls, stop_at;
    double first, last;
} progress_log;

static int on_progress(void *ctx, int epoch, int epochs, double rmse) {
    progress_log *log = ctx;
    log->calls++;
    assert_int_equal(epoch, log->calls);
    assert_true(epochs >= epoch);
    if (epoch == 1)
        log->first = rmse;
    log->last = rmse;
    return epoch == log->stop_at;
}

static void test_progress_and_abort(void **state) {
    (void)state;
    planted pl = make_planted(4, 0.1f);
    char err[UL_ERRSTR_SIZE];
    mf_params p = small_params();
    p.epochs = 10;
    progress_log log = {0, -1, 0, 0};
    mf_model *m =
        mf_train(pl.v, pl.n, PL_USERS, PL_ITEMS, 1, 5, &p, on_progress, &log, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(log.calls, 10);
    assert_true(log.last < log.first);
    mf_model_destroy(m);
    log = (progress_log){0, 3, 0, 0};
    p.threads = 2;
    assert_null(
        mf_train(pl.v, pl.n, PL_USERS, PL_ITEMS, 1, 5, &p, on_progress, &log, err, sizeof(err)));
    assert_int_equal(log.calls, 3);
    assert_non_null(strstr(err, "aborted"));
    /* A learning rate far too large is reported, not returned as NaNs. */
    p.lr = 8.0f;
    p.lr_decay = 1.0f;
    p.epochs = 50;
    assert_null(mf_train(pl.v, pl.n, PL_USERS, PL_ITEMS, 1, 5, &p, NULL, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "diverged"));
    free(pl.v);
}

static void test_clone_is_deep(void **state) {
    (void)state;
    mf_model *m = mf_model_new(2, 3, 4, NULL, 0);
    assert_non_null(m);
    int64_t uids[2] = {10, 20}, iids[3] = {7, 8, 9};
    assert_int_equal(mf_model_set_ids(m, uids, iids), UL_OK);
    m->P[5] = 1.5f;
    mf_model *c = mf_model_clone(m);
    assert_non_null(c);
    assert_true(same_model(m, c));
    assert_int_equal(c->item_ids[2], 9);
    c->P[5] = 0.0f;
    c->user_ids[0] = 11;
    assert_float_equal(m->P[5], 1.5f, 0);
    assert_int_equal(m->user_ids[0], 10);
    mf_model_destroy(c);
    mf_model_destroy(m);
    mf_model_destroy(NULL);
}

/* ---- model files ---- */

static mf_model *random_model(int with_ids) {
    mf_model *m = mf_model_new(5, 7, 3, NULL, 0);
    assert_non_null(m);
    rng r;
    rng_seed(&r, 9);
    m->global_mean = 3.25f;
    m->rating_min = 0.5f;
    m->rating_max = 5.0f;
    for (int x = 0; x < 5 * 3; x++)
        m->P[x] = (float)rng_normal(&r);
    for (int x = 0; x < 7 * 3; x++)
        m->Q[x] = (float)rng_normal(&r);
    for (int x = 0; x < 5; x++)
        m->user_bias[x] = (float)rng_normal(&r);
    for (int x = 0; x < 7; x++)
        m->item_bias[x] = (float)rng_normal(&r);
    if (with_ids) {
        /* 1: both tables, 2: user ids only. */
        int64_t uids[5] = {1, 2, 30, 400, -5}, iids[7] = {9, 8, 7, 6, 5, 4, INT64_MAX};
        assert_int_equal(mf_model_set_ids(m, uids, with_ids == 1 ? iids : NULL), UL_OK);
    }
    return m;
}

static const char *model_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tu_tmpdir(), name);
    return path;
}

static void test_save_load_round_trip(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE];
    for (int with_ids = 0; with_ids < 3; with_ids++) {
        mf_model *m = random_model(with_ids);
        const char *path = model_path("rt.ulmf");
        assert_int_equal(mf_save(m, path, err, sizeof(err)), UL_OK);
        mf_model *l = mf_load(path, err, sizeof(err));
        if (l == NULL)
            fail_msg("mf_load: %s", err);
        assert_true(same_model(m, l));
        assert_float_equal(l->rating_min, 0.5f, 0);
        assert_float_equal(l->rating_max, 5.0f, 0);
        if (with_ids)
            assert_memory_equal(l->user_ids, m->user_ids, 5 * sizeof(int64_t));
        else
            assert_null(l->user_ids);
        if (with_ids == 1)
            assert_memory_equal(l->item_ids, m->item_ids, 7 * sizeof(int64_t));
        else
            assert_null(l->item_ids);
        mf_model_destroy(l);
        mf_model_destroy(m);
    }
    /* No temporary file is left behind. */
    FILE *f = fopen(model_path("rt.ulmf.tmp"), "rb");
    assert_null(f);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*n);
    assert_int_equal(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

static void write_all(const char *path, const unsigned char *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
}

static uint32_t test_crc32(const unsigned char *b, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t x = 0; x < n; x++) {
        c ^= b[x];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void put32(unsigned char *b, uint32_t v) {
    for (int x = 0; x < 4; x++)
        b[x] = (unsigned char)(v >> (8 * x));
}

/* Write `buf` altered as asked, load it, expect a rejection naming the file
 * and containing `word`. */
static void expect_reject(const unsigned char *buf, size_t n, const char *word) {
    char err[UL_ERRSTR_SIZE] = "";
    const char *path = model_path("bad.ulmf");
    write_all(path, buf, n);
    mf_model *m = mf_load(path, err, sizeof(err));
    if (m != NULL)
        fail_msg("a model with '%s' was accepted", word);
    if (strstr(err, path) == NULL || strstr(err, word) == NULL)
        fail_msg("error '%s' should name the file and say '%s'", err, word);
}

static void test_load_rejects_bad_files(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE];
    mf_model *m = random_model(1);
    const char *path = model_path("good.ulmf");
    assert_int_equal(mf_save(m, path, err, sizeof(err)), UL_OK);
    mf_model_destroy(m);
    size_t n;
    unsigned char *good = read_all(path, &n);
    unsigned char *b = malloc(n);

    memcpy(b, good, n);
    b[n - 3] ^= 0x40; /* a raw id bit */
    expect_reject(b, n, "checksum");
    memcpy(b, good, n);
    b[64 + 10] ^= 0x01; /* a bias bit */
    expect_reject(b, n, "checksum");
    memcpy(b, good, n);
    b[25] ^= 0x01; /* global mean: caught by the header CRC */
    expect_reject(b, n, "checksum");
    expect_reject(good, n - 1, "truncated");
    expect_reject(good, 40, "truncated");
    expect_reject(good, 0, "truncated");
    memcpy(b, good, n);
    memcpy(b, "ULMX", 4);
    expect_reject(b, n, "magic");
    memcpy(b, good, n);
    put32(b + 4, 99);
    expect_reject(b, n, "version 99");
    /* Absurd dimensions with a valid header checksum: rejected from the
     * header alone, before any allocation. */
    memcpy(b, good, n);
    put32(b + 12, 0x7FFFFFFF);
    put32(b + 60, test_crc32(b, 60));
    expect_reject(b, n, "payload bytes");
    memcpy(b, good, n);
    put32(b + 20, 0);
    put32(b + 60, test_crc32(b, 60));
    expect_reject(b, n, "absurd");
    /* Trailing garbage. */
    unsigned char *longer = malloc(n + 8);
    memcpy(longer, good, n);
    memset(longer + n, 0, 8);
    expect_reject(longer, n + 8, "trailing");
    free(longer);

    assert_null(mf_load(model_path("missing.ulmf"), err, sizeof(err)));
    assert_non_null(strstr(err, "missing.ulmf"));
    m = random_model(0);
    assert_int_equal(mf_save(m, "/nonexistent-dir/x.ulmf", err, sizeof(err)), UL_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent-dir/x.ulmf"));
    mf_model_destroy(m);
    free(b);
    free(good);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_planted_low_rmse),
        cmocka_unit_test(test_deterministic_across_threads),
        cmocka_unit_test(test_sgd_step_reduces_error),
        cmocka_unit_test(test_sgd_step_k64_formula),
        cmocka_unit_test(test_predict_clips_and_unknown),
        cmocka_unit_test(test_score_users_matches_predict),
        cmocka_unit_test(test_top_k_order_and_exclusion),
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_train_rejects_bad_input),
        cmocka_unit_test(test_progress_and_abort),
        cmocka_unit_test(test_clone_is_deep),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_load_rejects_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
