/* test_mf_kernel.c: the SGD kernel variants (each one this CPU runs against
 * the baseline, within rounding tolerances: the AVX variants fuse
 * multiply-adds), their selection, training with a forced variant, the
 * per-row online step, the watched trainer, the cache-sized groups and the
 * parallel RMSE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "mf_kernel.h"
#include "rng.h"
#include "ul_err.h"

static float *random_floats(rng *r, size_t n, double sd) {
    float *v = malloc(n * sizeof(float));
    assert_non_null(v);
    for (size_t x = 0; x < n; x++)
        v[x] = (float)(sd * rng_normal(r));
    return v;
}

static int cpu_has(mf_kernel_id id) {
#if defined(__x86_64__)
    if (id == MF_KERNEL_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (id == MF_KERNEL_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    return id == MF_KERNEL_BASE || id == MF_KERNEL_AUTO;
}

static void test_table_and_names(void **state) {
    (void)state;
    for (int id = 0; id < MF_KERNEL_COUNT; id++) {
        mf_kernel_id back = MF_KERNEL_COUNT;
        assert_int_equal(mf_kernel_parse(mf_kernel_name((mf_kernel_id)id), &back), UL_OK);
        assert_int_equal(back, id);
        assert_int_equal(mf_kernel_available((mf_kernel_id)id), cpu_has((mf_kernel_id)id));
        if (id != MF_KERNEL_AUTO && cpu_has((mf_kernel_id)id))
            assert_int_equal(mf_kernel_get((mf_kernel_id)id)->id, id);
    }
    mf_kernel_id id;
    assert_int_equal(mf_kernel_parse("sse9", &id), UL_ERR_ARG);
    /* AUTO is the best the CPU runs. */
    mf_kernel_id best = cpu_has(MF_KERNEL_AVX512) ? MF_KERNEL_AVX512
                        : cpu_has(MF_KERNEL_AVX2) ? MF_KERNEL_AVX2
                                                  : MF_KERNEL_BASE;
    assert_int_equal(mf_kernel_get(MF_KERNEL_AUTO)->id, best);
    print_message("kernels: best on this CPU is %s\n", mf_kernel_name(best));
    mf_params p;
    mf_params_init(&p);
    char err[UL_ERRSTR_SIZE];
    p.kernel = MF_KERNEL_COUNT;
    assert_int_equal(mf_params_check(&p, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "kernel"));
}

/* One step of every variant from the same start, for several k (the k=64
 * intrinsics path, multiples of 16, a tail), against the baseline. */
static void test_step_matches_base(void **state) {
    (void)state;
    static const int ks[] = {64, 16, 7, 100, 1};
    const mf_kernel *base = mf_kernel_get(MF_KERNEL_BASE);
    for (int id = MF_KERNEL_AVX2; id < MF_KERNEL_COUNT; id++) {
        const mf_kernel *kern = mf_kernel_get((mf_kernel_id)id);
        if (kern == NULL) {
            print_message("kernel %s: not on this CPU, skipped\n", mf_kernel_name(id));
            continue;
        }
        int differs = 0;
        for (size_t c = 0; c < sizeof(ks) / sizeof(ks[0]); c++) {
            int k = ks[c];
            rng r;
            rng_seed(&r, 11 + (uint64_t)k);
            float *p0 = random_floats(&r, (size_t)k, 0.3), *q0 = random_floats(&r, (size_t)k, 0.3);
            float *p1 = malloc((size_t)k * sizeof(float)), *q1 = malloc((size_t)k * sizeof(float));
            float *p2 = malloc((size_t)k * sizeof(float)), *q2 = malloc((size_t)k * sizeof(float));
            memcpy(p1, p0, (size_t)k * sizeof(float));
            memcpy(q1, q0, (size_t)k * sizeof(float));
            memcpy(p2, p0, (size_t)k * sizeof(float));
            memcpy(q2, q0, (size_t)k * sizeof(float));
            float bu1 = 0.2f, bi1 = -0.3f, bu2 = 0.2f, bi2 = -0.3f;
            assert_float_equal(kern->dot(p0, q0, k), base->dot(p0, q0, k), 1e-5);
            float e1 =
                base->sgd_step(p1, q1, &bu1, &bi1, k, 3.5f, 4.0f, 0.05f, 0.03f, 0.05f, 0.02f);
            float e2 =
                kern->sgd_step(p2, q2, &bu2, &bi2, k, 3.5f, 4.0f, 0.05f, 0.03f, 0.05f, 0.02f);
            assert_float_equal(e1, e2, 1e-5);
            assert_float_equal(bu1, bu2, 1e-6);
            assert_float_equal(bi1, bi2, 1e-6);
            for (int j = 0; j < k; j++) {
                assert_float_equal(p1[j], p2[j], 1e-6);
                assert_float_equal(q1[j], q2[j], 1e-6);
                differs |= p1[j] != p2[j] || q1[j] != q2[j];
            }
            free(p0);
            free(q0);
            free(p1);
            free(q1);
            free(p2);
            free(q2);
        }
        /* Fused multiply-adds round differently somewhere: the variant is
         * not the baseline under another name. */
        assert_true(differs);
    }
}

/* A block of 5000 ratings on a 50 x 40 model: each variant's rows and
 * squared error after the block, against the baseline's. */
static void test_block_matches_base(void **state) {
    (void)state;
    enum { NU = 50, NI = 40, N = 5000, K = 64 };
    rng r;
    rng_seed(&r, 3);
    mf_entry *e = calloc(N + MF_PREFETCH, sizeof(mf_entry));
    assert_non_null(e);
    for (int x = 0; x < N; x++)
        e[x] = (mf_entry){(int32_t)rng_below(&r, NU), (int32_t)rng_below(&r, NI),
                          (float)(1 + rng_below(&r, 5))};
    mf_model *ref = mf_model_new(NU, NI, K, NULL, 0);
    assert_non_null(ref);
    for (size_t x = 0; x < (size_t)NU * K; x++)
        ref->P[x] = (float)(0.1 * rng_normal(&r));
    for (size_t x = 0; x < (size_t)NI * K; x++)
        ref->Q[x] = (float)(0.1 * rng_normal(&r));
    for (int id = MF_KERNEL_BASE; id < MF_KERNEL_COUNT; id++) {
        const mf_kernel *kern = mf_kernel_get((mf_kernel_id)id);
        if (kern == NULL)
            continue;
        mf_model *a = mf_model_clone(ref), *b = mf_model_clone(ref);
        assert_non_null(a);
        assert_non_null(b);
        mf_block_job ja = {e, N,    a->P,  a->Q,  a->user_bias, a->item_bias,
                           K, 3.5f, 0.02f, 0.05f, 0.05f};
        mf_block_job jb = {e, N,    b->P,  b->Q,  b->user_bias, b->item_bias,
                           K, 3.5f, 0.02f, 0.05f, 0.05f};
        double sa = mf_kernel_get(MF_KERNEL_BASE)->sgd_block(&ja);
        double sb = kern->sgd_block(&jb);
        assert_true(fabs(sa - sb) <= 1e-4 * sa);
        double worst = 0;
        for (size_t x = 0; x < (size_t)NU * K; x++)
            worst = fmax(worst, fabs((double)a->P[x] - b->P[x]));
        for (size_t x = 0; x < (size_t)NI * K; x++)
            worst = fmax(worst, fabs((double)a->Q[x] - b->Q[x]));
        print_message("kernel %s: block of %d ratings, largest row difference %.2g\n",
                      mf_kernel_name(id), N, worst);
        assert_true(worst < 1e-4);
        mf_model_destroy(a);
        mf_model_destroy(b);
    }
    mf_model_destroy(ref);
    free(e);
}

/* A planted rank-3 set, shuffled. */
static ul_rating *planted(int nu, int ni, size_t n, uint64_t seed) {
    rng r;
    rng_seed(&r, seed);
    float *P = random_floats(&r, (size_t)nu * 3, 0.5), *Q = random_floats(&r, (size_t)ni * 3, 0.5);
    ul_rating *v = malloc(n * sizeof(ul_rating));
    assert_non_null(v);
    for (size_t x = 0; x < n; x++) {
        int u = (int)rng_below(&r, (uint64_t)nu), i = (int)rng_below(&r, (uint64_t)ni);
        double y = 3.5 + 0.3 * rng_normal(&r);
        for (int f = 0; f < 3; f++)
            y += P[u * 3 + f] * Q[i * 3 + f];
        v[x] = (ul_rating){u, i, (float)(y < 1 ? 1 : y > 5 ? 5 : y), 0};
    }
    free(P);
    free(Q);
    return v;
}

static int same_rows(const mf_model *a, const mf_model *b) {
    size_t nu = (size_t)a->n_users, ni = (size_t)a->n_items, k = (size_t)a->k;
    return memcmp(a->P, b->P, nu * k * sizeof(float)) == 0 &&
           memcmp(a->Q, b->Q, ni * k * sizeof(float)) == 0 &&
           memcmp(a->user_bias, b->user_bias, nu * sizeof(float)) == 0 &&
           memcmp(a->item_bias, b->item_bias, ni * sizeof(float)) == 0;
}

static mf_model *train(const ul_rating *v, size_t n, int nu, int ni, const mf_params *p) {
    char err[UL_ERRSTR_SIZE] = "";
    mf_model *m = mf_train(v, n, nu, ni, 1, 5, p, NULL, NULL, err, sizeof(err));
    if (m == NULL)
        fail_msg("mf_train: %s", err);
    return m;
}

/* Every variant trains to the baseline's quality, and each is
 * bit-identical across thread counts. */
static void test_train_each_kernel(void **state) {
    (void)state;
    enum { NU = 400, NI = 300, N = 40000 };
    ul_rating *v = planted(NU, NI, N, 8);
    size_t n_train = N - N / 10;
    mf_params p;
    mf_params_init(&p);
    p.epochs = 15;
    p.lr = 0.02f;
    p.lr_decay = 0.95f;
    p.init_std = 0.05f;
    p.threads = 1;
    p.kernel = MF_KERNEL_BASE;
    mf_model *base = train(v, n_train, NU, NI, &p);
    double base_rmse = mf_rmse(base, v + n_train, N - n_train);
    for (int id = MF_KERNEL_AVX2; id < MF_KERNEL_COUNT; id++) {
        if (!mf_kernel_available((mf_kernel_id)id))
            continue;
        p.kernel = (mf_kernel_id)id;
        p.threads = 1;
        mf_model *one = train(v, n_train, NU, NI, &p);
        p.threads = 3;
        mf_model *three = train(v, n_train, NU, NI, &p);
        double rmse = mf_rmse(one, v + n_train, N - n_train);
        print_message("kernel %s: test RMSE %.5f (base %.5f)\n", mf_kernel_name(id), rmse,
                      base_rmse);
        assert_true(fabs(rmse - base_rmse) < 0.002);
        assert_true(same_rows(one, three));
        assert_false(same_rows(one, base));
        mf_model_destroy(one);
        mf_model_destroy(three);
    }
    mf_model_destroy(base);
    free(v);
}

/* More rows than 16 groups of the cache budget hold: the trainer uses more
 * groups (and uint16 group tables) and stays thread-count independent. */
static void test_many_groups_deterministic(void **state) {
    (void)state;
    enum { NU = 40000, NI = 1500, N = 120000 };
    ul_rating *v = planted(NU, NI, N, 9);
    mf_params p;
    mf_params_init(&p);
    p.epochs = 2;
    p.threads = 1;
    mf_model *one = train(v, N, NU, NI, &p);
    p.threads = 3;
    mf_model *three = train(v, N, NU, NI, &p);
    assert_true(same_rows(one, three));
    assert_true(mf_rmse(one, v, N) < 1.2);
    mf_model_destroy(one);
    mf_model_destroy(three);
    free(v);
}

typedef struct watch_log {
    int calls;
    double last_rmse;
    mf_model *last;
} watch_log;

static int on_watch(void *ctx, int epoch, int epochs, double train_rmse, const mf_model *m) {
    watch_log *w = ctx;
    assert_int_equal(epoch, w->calls + 1);
    w->calls++;
    w->last_rmse = train_rmse;
    if (epoch == epochs) {
        mf_model_destroy(w->last);
        w->last = mf_model_clone(m);
    }
    return 0;
}

/* mf_train_watch shows the model after each epoch and returns what
 * mf_train returns. */
static void test_watch_same_model(void **state) {
    (void)state;
    enum { NU = 200, NI = 150, N = 12000 };
    ul_rating *v = planted(NU, NI, N, 10);
    mf_params p;
    mf_params_init(&p);
    p.epochs = 6;
    p.threads = 2;
    char err[UL_ERRSTR_SIZE];
    watch_log w = {0, 0, NULL};
    mf_model *a = mf_train_watch(v, N, NU, NI, 1, 5, &p, on_watch, &w, err, sizeof(err));
    mf_model *b = train(v, N, NU, NI, &p);
    assert_non_null(a);
    assert_int_equal(w.calls, 6);
    assert_non_null(w.last);
    assert_true(same_rows(a, b));
    assert_true(same_rows(a, w.last));
    mf_model_destroy(a);
    mf_model_destroy(b);
    mf_model_destroy(w.last);
    free(v);
}

/* The per-row online step runs at lr * lr_decay^passes (with the floor)
 * on each side and advances passes by 1/n. */
static void test_row_schedule_step(void **state) {
    (void)state;
    mf_params p;
    mf_params_init(&p);
    p.lr = 0.05f;
    p.lr_decay = 0.9f;
    mf_row_state fresh = {0.0f, 4.0f}, old = {30.0f, 10.0f};
    assert_float_equal(mf_row_lr(&p, &fresh, 0.0f), 0.05, 1e-7);
    assert_true(fabs(mf_row_lr(&p, &old, 0.0f) - 0.05 * pow(0.9, 30)) < 1e-6 * 0.05 * pow(0.9, 30));
    assert_true(mf_row_lr(&p, &old, 0.01f) == 0.01f);

    rng r;
    rng_seed(&r, 21);
    mf_model *a = mf_model_new(2, 2, 64, NULL, 0), *b = NULL;
    assert_non_null(a);
    for (int x = 0; x < 2 * 64; x++) {
        a->P[x] = (float)(0.1 * rng_normal(&r));
        a->Q[x] = (float)(0.1 * rng_normal(&r));
    }
    a->global_mean = 3.5f;
    b = mf_model_clone(a);
    assert_non_null(b);
    /* Equal rates on both sides: the same as mf_sgd_step at that rate. */
    mf_row_state us = {3.0f, 4.0f}, is = {3.0f, 2.0f};
    float lr = mf_row_lr(&p, &us, 0.0f);
    float e1 = mf_sgd_step_rows(a, 1, 0, 4.5f, &p, 0.0f, &us, &is);
    float e2 = mf_sgd_step(b, 1, 0, 4.5f, lr, p.reg, p.reg_bias);
    assert_float_equal(e1, e2, 0);
    assert_memory_equal(a->P, b->P, 2 * 64 * sizeof(float));
    assert_memory_equal(a->Q, b->Q, 2 * 64 * sizeof(float));
    assert_float_equal(us.passes, 3.25, 1e-6);
    assert_float_equal(is.passes, 3.5, 1e-6);
    /* A fresh item beside an old user: the item moves faster. */
    mf_row_state u2 = old, i2 = fresh;
    float q_before = a->Q[64], p_before = a->P[0];
    mf_sgd_step_rows(a, 0, 1, 5.0f, &p, 0.0f, &u2, &i2);
    assert_true(fabsf(a->Q[64] - q_before) > fabsf(a->P[0] - p_before));
    /* Outside the model: nothing changes, states included. */
    mf_row_state u3 = us;
    mf_sgd_step_rows(a, 5, 0, 4.0f, &p, 0.0f, &u3, &is);
    assert_float_equal(u3.passes, us.passes, 0);
    mf_model_destroy(a);
    mf_model_destroy(b);
}

/* mf_rmse over more than one chunk equals the plain sum. */
static void test_rmse_chunks(void **state) {
    (void)state;
    enum { NU = 300, NI = 200, N = 200001 };
    ul_rating *v = planted(NU, NI, N, 12);
    mf_params p;
    mf_params_init(&p);
    p.epochs = 2;
    mf_model *m = train(v, 20000, NU, NI, &p);
    double sse = 0;
    for (size_t x = 0; x < N; x++) {
        double e = v[x].value - mf_predict(m, v[x].user, v[x].item);
        sse += e * e;
    }
    assert_true(fabs(mf_rmse(m, v, N) - sqrt(sse / N)) < 1e-9);
    assert_true(mf_rmse(m, v, 0) == 0.0);
    mf_model_destroy(m);
    free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_and_names),           cmocka_unit_test(test_step_matches_base),
        cmocka_unit_test(test_block_matches_base),        cmocka_unit_test(test_train_each_kernel),
        cmocka_unit_test(test_many_groups_deterministic), cmocka_unit_test(test_watch_same_model),
        cmocka_unit_test(test_row_schedule_step),         cmocka_unit_test(test_rmse_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
