/* test_foldin.c: the fold-in method: the user step is the exact ridge
 * solution on the user's remaining ratings, on a planted model the item
 * step removes the forgotten ratings' pull, and the item step on its own
 * (foldin_item_step, which cff uses) is the same computation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ul_err.h"
#include "unlearn.h"
#include "unlearn_method.h"
#include "unlearn_scenario.h"

/* P, Q ~ N(0, 0.5), item biases ~ N(0, 0.3), user biases 0. */
static mf_model *model_new(int32_t nu, int32_t ni, int k, uint64_t seed) {
    return tu_model_random(nu, ni, k, seed, 0.5, 0.0, 0.3);
}

/* Solve the n x n system A x = b in double (Gauss-Jordan, partial pivot). */
static void solve_dense(int n, double *A, double *b) {
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[piv * n + c]))
                piv = r;
        for (int j = 0; j < n; j++) {
            double t = A[c * n + j];
            A[c * n + j] = A[piv * n + j];
            A[piv * n + j] = t;
        }
        double t = b[c];
        b[c] = b[piv];
        b[piv] = t;
        for (int r = 0; r < n; r++) {
            if (r == c)
                continue;
            double f = A[r * n + c] / A[c * n + c];
            for (int j = 0; j < n; j++)
                A[r * n + j] -= f * A[c * n + j];
            b[r] -= f * b[c];
        }
    }
    for (int c = 0; c < n; c++)
        b[c] /= A[c * n + c];
}

/* One user, K = 2, items fixed: [p; b] must equal the ridge solution
 * (X'X + n diag(reg, reg, reg_bias)) z = X'(r - mu - b_i). */
static void test_user_step_is_exact_ridge(void **state) {
    (void)state;
    mf_model *m = model_new(3, 6, 2, 5);
    ul_rating forget[2] = {{1, 0, 5, 0}, {1, 1, 5, 1}};
    ul_rating retain[4] = {{1, 2, 2, 2}, {1, 3, 4, 3}, {1, 4, 1, 4}, {1, 5, 3, 5}};
    unlearn_request req = {forget, 2, retain, 4, NULL, NULL};
    unlearn_params p;
    unlearn_params_init(&p);
    p.foldin_sweeps = 1;
    p.foldin_reg = 0.1f;
    p.foldin_reg_bias = 0.02f;
    p.foldin_reg_const = 0.3f; /* on top of reg per rating, factors only */
    double A[9] = {0}, b[3] = {0};
    for (int j = 0; j < 4; j++) {
        const float *q = m->Q + retain[j].item * 2;
        double x[3] = {q[0], q[1], 1.0};
        double y = retain[j].value - m->global_mean - m->item_bias[retain[j].item];
        for (int r = 0; r < 3; r++) {
            b[r] += x[r] * y;
            for (int c = 0; c < 3; c++)
                A[r * 3 + c] += x[r] * x[c];
        }
    }
    A[0] += 4 * 0.1 + 0.3;
    A[4] += 4 * 0.1 + 0.3;
    A[8] += 4 * 0.02;
    solve_dense(3, A, b);
    char err[UL_ERRSTR_SIZE] = "";
    assert_int_equal(unlearn_apply("foldin", m, &req, &p, NULL, err, sizeof(err)), UL_OK);
    assert_float_equal(m->P[2], b[0], 1e-4);
    assert_float_equal(m->P[3], b[1], 1e-4);
    assert_float_equal(m->user_bias[1], b[2], 1e-4);
    mf_model_destroy(m);
}

/* A user whose every rating is forgotten gets the empty ridge solution. */
static void test_user_with_nothing_left(void **state) {
    (void)state;
    mf_model *m = model_new(3, 6, 2, 6);
    m->user_bias[2] = 0.7f;
    ul_rating forget[2] = {{2, 0, 5, 0}, {2, 3, 5, 1}};
    unlearn_request req = {forget, 2, NULL, 0, NULL, NULL};
    assert_int_equal(unlearn_apply("foldin", m, &req, NULL, NULL, NULL, 0), UL_OK);
    assert_float_equal(m->P[4], 0, 0);
    assert_float_equal(m->P[5], 0, 0);
    assert_float_equal(m->user_bias[2], 0, 0);
    mf_model_destroy(m);
}

/* Items: an item pulled up by forgotten 5s comes down, by an amount that
 * grows as the forgotten share of its ratings grows. */
static void test_item_step_removes_pull(void **state) {
    (void)state;
    mf_model *m = model_new(50, 4, 3, 7);
    for (int32_t u = 0; u < 50; u++)
        m->user_bias[u] = 0;
    /* Users 0..9 forget item 0 and item 1, rated 5 where m1 predicts ~3.5. */
    ul_rating forget[20];
    for (int u = 0; u < 10; u++) {
        forget[2 * u] = (ul_rating){u, 0, 5, 0};
        forget[2 * u + 1] = (ul_rating){u, 1, 5, 0};
    }
    int32_t count[4] = {20, 200, 50, 50}; /* item 0: half its ratings forgotten */
    unlearn_request req = {forget, 20, NULL, 0, NULL, count};
    float b0 = m->item_bias[0], b1 = m->item_bias[1], b2 = m->item_bias[2];
    unlearn_report rep;
    assert_int_equal(unlearn_apply("foldin", m, &req, NULL, &rep, NULL, 0), UL_OK);
    assert_int_equal(rep.n_items, 2);
    float d0 = b0 - m->item_bias[0], d1 = b1 - m->item_bias[1];
    assert_true(d0 > 0.1f);
    assert_true(d1 > 0.0f);
    assert_true(d0 > 3 * d1);
    assert_float_equal(m->item_bias[2], b2, 0); /* not in F: untouched */
    unlearn_report_free(&rep);
    mf_model_destroy(m);
}

/* The worker hands fold-in a sub-model holding only the affected users (here
 * one) and the items they rated: the item step must stay finite and modest. */
static void test_single_user_submodel(void **state) {
    (void)state;
    mf_model *m = model_new(1, 12, 8, 13);
    ul_rating forget[4], retain[8];
    for (int j = 0; j < 4; j++)
        forget[j] = (ul_rating){0, j, 5, j};
    for (int j = 0; j < 8; j++)
        retain[j] = (ul_rating){0, 4 + j, (float)(1 + j % 5), j};
    int32_t count[12];
    for (int i = 0; i < 12; i++)
        count[i] = 40;
    float q0[12 * 8], b0[12];
    memcpy(q0, m->Q, sizeof(q0));
    memcpy(b0, m->item_bias, sizeof(b0));
    unlearn_request req = {forget, 4, retain, 8, NULL, count};
    assert_int_equal(unlearn_apply("foldin", m, &req, NULL, NULL, NULL, 0), UL_OK);
    for (int i = 0; i < 4; i++) {
        double d2 = 0;
        for (int e = 0; e < 8; e++)
            d2 += (m->Q[i * 8 + e] - q0[i * 8 + e]) * (m->Q[i * 8 + e] - q0[i * 8 + e]);
        assert_true(isfinite(d2) && sqrt(d2) < 0.5); /* one rating of 40 removed */
        assert_true(m->item_bias[i] < b0[i]);        /* a forgotten 5 pulled it up */
        assert_true(b0[i] - m->item_bias[i] < 0.2f);
    }
    mf_model_destroy(m);
}

/* An item whose every remaining rating is an affected user's (known) is
 * solved exactly on them, with the users' new rows: the ridge solution of
 * its remaining ratings, no stationarity of m1 assumed. */
static void test_fully_known_item_is_solved(void **state) {
    (void)state;
    const int k = 6, k1 = 7;
    mf_model *m = model_new(3, 10, k, 21);
    /* Item 0: user 2 forgets a 5; users 0 and 1 (who forget item 9) keep
     * ratings 4 and 2. Each user keeps ratings of items 1..8 too. */
    ul_rating forget[3] = {{2, 0, 5, 0}, {0, 9, 5, 0}, {1, 9, 5, 0}}, retain[32];
    size_t nr = 0;
    retain[nr++] = (ul_rating){0, 0, 4, 0};
    retain[nr++] = (ul_rating){1, 0, 2, 0};
    for (int32_t u = 0; u < 3; u++)
        for (int i = 1; i < 9; i++)
            retain[nr++] = (ul_rating){u, i, (float)(1 + (u + i) % 5), 0};
    int32_t count[10];
    for (int i = 0; i < 10; i++)
        count[i] = i == 0 ? 3 : 50;
    unlearn_request req = {forget, 3, retain, nr, NULL, count};
    unlearn_params p;
    unlearn_params_init(&p);
    assert_int_equal(unlearn_apply("foldin", m, &req, &p, NULL, NULL, 0), UL_OK);
    /* The expected row from the users' new rows, in double. */
    double A[7 * 7] = {0}, b[7] = {0};
    for (int j = 0; j < 2; j++) {
        int32_t u = retain[j].user;
        double x[7];
        for (int d = 0; d < k; d++)
            x[d] = m->P[u * k + d];
        x[k] = 1;
        double y = retain[j].value - m->global_mean - m->user_bias[u];
        for (int r = 0; r < k1; r++) {
            for (int c = 0; c < k1; c++)
                A[r * k1 + c] += x[r] * x[c];
            b[r] += y * x[r];
        }
    }
    for (int d = 0; d < k; d++)
        A[d * k1 + d] += 2 * p.foldin_reg;
    A[k * k1 + k] += 2 * p.foldin_reg_bias;
    solve_dense(k1, A, b);
    for (int d = 0; d < k; d++)
        assert_float_equal(m->Q[d], b[d], 1e-4);
    assert_float_equal(m->item_bias[0], b[k], 1e-4);
    mf_model_destroy(m);
}

/* The user solves run on threads; the result must not depend on how many. */
static void test_threads_do_not_change_result(void **state) {
    (void)state;
    mf_model *a = model_new(400, 60, 8, 11), *b = model_new(400, 60, 8, 11);
    size_t nf = 0, nr = 0;
    ul_rating *forget = malloc(400 * sizeof(ul_rating)), *retain = malloc(4000 * sizeof(ul_rating));
    int32_t count[60];
    for (int i = 0; i < 60; i++)
        count[i] = 80;
    for (int32_t u = 0; u < 400; u += 2) {
        forget[nf++] = (ul_rating){u, u % 60, 5, 0};
        for (int j = 1; j <= 10; j++)
            retain[nr++] = (ul_rating){u, (u + 7 * j) % 60, (float)(1 + (u + j) % 5), j};
    }
    unlearn_request req = {forget, nf, retain, nr, NULL, count};
    unlearn_params p;
    unlearn_params_init(&p);
    p.foldin_sweeps = 2;
    p.threads = 1;
    assert_int_equal(unlearn_apply("foldin", a, &req, &p, NULL, NULL, 0), UL_OK);
    p.threads = 4;
    assert_int_equal(unlearn_apply("foldin", b, &req, &p, NULL, NULL, 0), UL_OK);
    assert_memory_equal(a->P, b->P, 400 * 8 * sizeof(float));
    assert_memory_equal(a->Q, b->Q, 60 * 8 * sizeof(float));
    assert_memory_equal(a->user_bias, b->user_bias, 400 * sizeof(float));
    free(forget);
    free(retain);
    mf_model_destroy(a);
    mf_model_destroy(b);
}

/* On a planted model, fold-in moves the forgotten pairs' predictions most of
 * the way to a Retrain's, keeps the other users' rows, and fits the affected
 * users' remaining ratings about as well as Retrain does. */
static void test_planted_moves_toward_retrain(void **state) {
    (void)state;
    scenario sc = {0};
    scenario_make(&sc);
    unlearn_report rep;
    mf_model *mf = scenario_unlearn(&sc, "foldin", NULL, &rep);
    double g1 = gap(sc.m1, &sc), gf = gap(mf, &sc);
    assert_true(g1 > 0.3);
    assert_true(gf < 0.35 * g1);
    assert_int_equal(rep.n_users, 30);
    assert_true(rep.n_items > 0);
    scenario_assert_others_kept(&sc, mf);
    /* The remaining ratings are fitted at least as well as Retrain fits them. */
    assert_true(mf_rmse(mf, sc.retain, sc.n_retain) <
                mf_rmse(sc.retrain, sc.retain, sc.n_retain) + 0.05);
    /* F's items lose part of the pull F's 5s gave their biases. */
    double b1 = scenario_item_bias(&sc, sc.m1), bf = scenario_item_bias(&sc, mf);
    assert_true(bf < b1 - 0.3 * (b1 - scenario_item_bias(&sc, sc.retrain)));

    /* foldin_item_step, given fold-in's own new user rows, writes exactly
     * fold-in's item rows (one sweep). */
    unlearn_rows rows = {rep.users, rep.n_users, rep.items, rep.n_items, NULL, NULL};
    rows.user_pos = malloc(300 * sizeof(int32_t));
    rows.item_pos = malloc(200 * sizeof(int32_t));
    for (int j = 0; j < 300; j++)
        rows.user_pos[j] = -1;
    for (int j = 0; j < 200; j++)
        rows.item_pos[j] = -1;
    for (size_t a = 0; a < rep.n_users; a++)
        rows.user_pos[rep.users[a]] = (int32_t)a;
    for (size_t c = 0; c < rep.n_items; c++)
        rows.item_pos[rep.items[c]] = (int32_t)c;
    int k = mf->k;
    float *P1 = malloc(rep.n_users * (size_t)k * sizeof(float)), *bu1 = malloc(rep.n_users * 4);
    float *Q1 = malloc(rep.n_items * (size_t)k * sizeof(float)), *bi1 = malloc(rep.n_items * 4);
    for (size_t a = 0; a < rep.n_users; a++) {
        memcpy(P1 + a * (size_t)k, mf->P + (size_t)rep.users[a] * (size_t)k, (size_t)k * 4);
        bu1[a] = mf->user_bias[rep.users[a]];
    }
    unlearn_request req = {sc.forget,   sc.n_forget,  sc.retain,
                           sc.n_retain, sc.item_mean, sc.item_count};
    unlearn_params up;
    unlearn_params_init(&up);
    assert_int_equal(foldin_item_step(sc.m1, &req, &up, &rows, P1, bu1, Q1, bi1), UL_OK);
    for (size_t c = 0; c < rep.n_items; c++) {
        assert_memory_equal(Q1 + c * (size_t)k, mf->Q + (size_t)rep.items[c] * (size_t)k,
                            (size_t)k * 4);
        assert_memory_equal(&bi1[c], &mf->item_bias[rep.items[c]], 4);
    }
    req.item_count = NULL; /* n_i unknown: refused */
    assert_int_equal(foldin_item_step(sc.m1, &req, &up, &rows, P1, bu1, Q1, bi1), UL_ERR_ARG);
    free(P1);
    free(bu1);
    free(Q1);
    free(bi1);
    free(rows.user_pos);
    free(rows.item_pos);
    unlearn_report_free(&rep);
    mf_model_destroy(mf);
    scenario_free(&sc);
}

/* Later sweeps refine each user from the first sweep's Cholesky factor
 * instead of solving afresh: the same rows as fresh solves (to float
 * tolerance), and different from one sweep (the refinement does move them). */
static void test_refined_sweeps_match_fresh(void **state) {
    (void)state;
    scenario sc = {0};
    scenario_make(&sc);
    unlearn_params p;
    unlearn_params_init(&p);
    p.foldin_sweeps = 3;
    p.foldin_refine = 0;
    unlearn_report rf, rr, r1;
    mf_model *fresh = scenario_unlearn(&sc, "foldin", &p, &rf);
    p.foldin_refine = 1;
    mf_model *refined = scenario_unlearn(&sc, "foldin", &p, &rr);
    p.foldin_sweeps = 1;
    mf_model *one = scenario_unlearn(&sc, "foldin", &p, &r1);
    double d_fresh = 0, d_one = 0;
    for (size_t a = 0; a < rf.n_users; a++) {
        size_t u = (size_t)rf.users[a];
        for (int d = 0; d < fresh->k; d++) {
            size_t i = u * (size_t)fresh->k + (size_t)d;
            d_fresh = fmax(d_fresh, fabs(refined->P[i] - fresh->P[i]));
            d_one = fmax(d_one, fabs(one->P[i] - fresh->P[i]));
        }
        d_fresh = fmax(d_fresh, fabs(refined->user_bias[u] - fresh->user_bias[u]));
    }
    assert_true(d_fresh < 1e-3);
    assert_true(d_one > 10 * d_fresh);
    unlearn_report_free(&rf);
    unlearn_report_free(&rr);
    unlearn_report_free(&r1);
    mf_model_destroy(fresh);
    mf_model_destroy(refined);
    mf_model_destroy(one);
    scenario_free(&sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_step_is_exact_ridge),
        cmocka_unit_test(test_user_with_nothing_left),
        cmocka_unit_test(test_item_step_removes_pull),
        cmocka_unit_test(test_threads_do_not_change_result),
        cmocka_unit_test(test_single_user_submodel),
        cmocka_unit_test(test_fully_known_item_is_solved),
        cmocka_unit_test(test_planted_moves_toward_retrain),
        cmocka_unit_test(test_refined_sweeps_match_fresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
