/* test_cff.c: the CFF network's backward pass matches numerical gradients
 * (both output mappings), Adam lowers a loss, and the "cff" / "cff-paper"
 * methods lower their objective and shrink the forget gap of a faulty model
 * on synthetic data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cff.h"
#include "dataset.h"
#include "mf.h"
#include "rng.h"
#include "ul_err.h"
#include "unlearn.h"
#include "unlearn_scenario.h"

/* L = sum_r sum_j w_rj y_rj^2 / 2 + v_rj y_rj: dL/dy = w y + v. */
static double toy_loss(cff_net *net, const float *x, int n, int d, const float *w, const float *v,
                       float *y, float *dy) {
    cff_net_forward(net, x, n, y);
    double loss = 0;
    for (int j = 0; j < n * d; j++) {
        loss += 0.5 * w[j] * y[j] * y[j] + v[j] * y[j];
        if (dy)
            dy[j] = w[j] * y[j] + v[j];
    }
    return loss;
}

static void gradient_check(cff_output out, uint64_t seed) {
    const int d = 5, n = 4;
    cff_net *net = cff_net_new(d, 3, 2, 7, out, n, 11);
    assert_non_null(net);
    size_t np = cff_net_n_params(net);
    assert_int_equal(np, 3 * 2 + 3 + 2 * 3 + 2 + 7 * 2 * 5 + 7 + 5 * 7 + 5);
    float *theta = cff_net_params(net);
    rng r;
    rng_seed(&r, seed);
    /* Random parameters everywhere (the residual net starts with W4 = 0,
     * which would hide the earlier layers' gradients). */
    for (size_t j = 0; j < np; j++)
        theta[j] = (float)(0.6 * rng_normal(&r));
    float x[4 * 10], w[4 * 5], v[4 * 5], y[4 * 5], dy[4 * 5];
    for (int j = 0; j < n * 2 * d; j++)
        x[j] = (float)rng_normal(&r);
    for (int j = 0; j < n * d; j++) {
        w[j] = (float)rng_uniform(&r);
        v[j] = (float)rng_normal(&r);
    }
    toy_loss(net, x, n, d, w, v, y, dy);
    cff_net_backward(net, x, n, dy);
    float *grad = malloc(np * sizeof(float));
    memcpy(grad, cff_net_grads(net), np * sizeof(float));
    int bad = 0;
    double max_rel = 0;
    for (size_t j = 0; j < np; j++) {
        const float eps = 1e-3f;
        float keep = theta[j];
        theta[j] = keep + eps;
        double lp = toy_loss(net, x, n, d, w, v, y, NULL);
        theta[j] = keep - eps;
        double lm = toy_loss(net, x, n, d, w, v, y, NULL);
        theta[j] = keep;
        double num = (lp - lm) / (2.0 * eps);
        double rel = fabs(num - grad[j]) / fmax(1e-2, fabs(num) + fabs(grad[j]));
        if (rel > max_rel)
            max_rel = rel;
        /* A ReLU kink inside [-eps, eps] can spoil one coordinate: allow
         * at most one such outlier, never a systematic error. */
        bad += rel > 2e-2;
    }
    assert_true(bad <= 1);
    assert_true(max_rel < 0.5);
    free(grad);
    cff_net_destroy(net);
}

static void test_gradient_normalise(void **state) {
    (void)state;
    gradient_check(CFF_OUT_NORMALISE, 5);
    gradient_check(CFF_OUT_NORMALISE, 7);
}

static void test_gradient_residual(void **state) {
    (void)state;
    gradient_check(CFF_OUT_RESIDUAL, 7);
    gradient_check(CFF_OUT_RESIDUAL, 5);
}

static void test_output_mappings(void **state) {
    (void)state;
    const int d = 6;
    float x[2 * 6], y[6];
    for (int j = 0; j < 12; j++)
        x[j] = (float)(j - 5) * 0.3f;
    cff_net *res = cff_net_new(d, 4, 2, 16, CFF_OUT_RESIDUAL, 1, 1);
    cff_net_forward(res, x, 1, y);
    for (int j = 0; j < d; j++) /* untrained residual net: the m1 row */
        assert_float_equal(y[j], x[j], 0);
    cff_net *nrm = cff_net_new(d, 4, 2, 16, CFF_OUT_NORMALISE, 1, 1);
    cff_net_forward(nrm, x, 1, y);
    double s = 0;
    for (int j = 0; j < d; j++)
        s += y[j] * y[j];
    assert_float_equal(s, 1.0, 1e-5);
    assert_null(cff_net_new(0, 1, 1, 1, CFF_OUT_RESIDUAL, 1, 1));
    cff_net_destroy(res);
    cff_net_destroy(nrm);
    cff_net_destroy(NULL);
}

static void test_adam_lowers_loss(void **state) {
    (void)state;
    const int d = 8, n = 16;
    cff_net *net = cff_net_new(d, 4, 2, 32, CFF_OUT_RESIDUAL, n, 5);
    float x[16 * 16], y[16 * 8], dy[16 * 8], w[16 * 8], v[16 * 8];
    rng r;
    rng_seed(&r, 9);
    for (int j = 0; j < n * 2 * d; j++)
        x[j] = (float)rng_normal(&r);
    for (int j = 0; j < n * d; j++) {
        w[j] = 1;
        v[j] = -(float)rng_normal(&r); /* minimum at y = -v */
    }
    double first = toy_loss(net, x, n, d, w, v, y, dy), last = first;
    for (int t = 0; t < 200; t++) {
        last = toy_loss(net, x, n, d, w, v, y, dy);
        cff_net_backward(net, x, n, dy);
        cff_net_adam_step(net, 1e-2f);
    }
    assert_true(last < first - 0.3 * fabs(first));
    cff_net_destroy(net);
}

/* The "cff" objective at weight 1: D_fl1 error plus remaining-rating error. */
static double objective(const mf_model *m, const scenario *sc) {
    double s = 0;
    for (size_t j = 0; j < sc->n_forget; j++) {
        double e = mf_predict_raw(m, sc->forget[j].user, sc->forget[j].item) -
                   sc->item_mean[sc->forget[j].item];
        s += e * e;
    }
    for (size_t j = 0; j < sc->n_retain; j++) {
        double e = mf_predict_raw(m, sc->retain[j].user, sc->retain[j].item) - sc->retain[j].value;
        s += e * e;
    }
    return s / (double)(sc->n_forget + sc->n_retain);
}

static void run_method(const char *method, double max_gap_share) {
    scenario sc = {0};
    scenario_make(&sc);
    mf_model *mf = mf_model_clone(sc.m1);
    unlearn_request req = {sc.forget,   sc.n_forget,  sc.retain,
                           sc.n_retain, sc.item_mean, sc.item_count};
    unlearn_report rep;
    char err[UL_ERRSTR_SIZE] = "";
    assert_int_equal(unlearn_apply(method, mf, &req, NULL, &rep, err, sizeof(err)), UL_OK);
    double g1 = gap(sc.m1, &sc), gf = gap(mf, &sc);
    assert_true(g1 > 0.3); /* the faulty model is measurably wrong on F */
    assert_true(gf < max_gap_share * g1);
    assert_true(rep.n_users == 30);
    if (strcmp(method, "cff") == 0) {
        assert_true(objective(mf, &sc) < 0.8 * objective(sc.m1, &sc));
        assert_int_equal(rep.n_items, 0); /* users only by default */
    } else {
        assert_true(rep.n_items > 0);
    }
    /* Rows outside the report are untouched. */
    for (int32_t u = 0; u < 300; u++)
        if (u % 10 != 3)
            assert_memory_equal(mf->P + u * 16, sc.m1->P + u * 16, 16 * sizeof(float));
    unlearn_report_free(&rep);
    mf_model_destroy(mf);
    scenario_free(&sc);
}

static void test_cff_shrinks_forget_gap(void **state) {
    (void)state;
    run_method("cff", 0.5);
}

static void test_cff_paper_shrinks_forget_gap(void **state) {
    (void)state;
    run_method("cff-paper", 0.9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_normalise),
        cmocka_unit_test(test_gradient_residual),
        cmocka_unit_test(test_output_mappings),
        cmocka_unit_test(test_adam_lowers_loss),
        cmocka_unit_test(test_cff_shrinks_forget_gap),
        cmocka_unit_test(test_cff_paper_shrinks_forget_gap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
