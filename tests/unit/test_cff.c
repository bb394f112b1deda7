/* test_cff.c: the CFF network's backward pass matches numerical gradients
 * (both output mappings), Adam lowers a loss, and the "cff" / "cff-paper"
 * methods lower their objective and shrink the forget gap of a faulty model
 * on synthetic data, and "cff" stays sane in the stream worker's case (one
 * user, an online m1, item_mean NULL). */
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
#include "rescue.h"
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
    unlearn_report rep;
    mf_model *mf = scenario_unlearn(&sc, method, NULL, &rep);
    double g1 = gap(sc.m1, &sc), gf = gap(mf, &sc);
    assert_true(g1 > 0.3); /* the faulty model is measurably wrong on F */
    assert_true(gf < max_gap_share * g1);
    assert_true(rep.n_users == 30);
    assert_true(rep.n_items > 0);
    if (strcmp(method, "cff") == 0) {
        assert_true(objective(mf, &sc) < 0.8 * objective(sc.m1, &sc));
        /* The item step takes F's pull out of F's items: their F-weighted
         * mean bias comes back towards Retrain's. Without it (cff_item_step
         * = 0) cff changes no item row and forgets less. */
        double b1 = scenario_item_bias(&sc, sc.m1), bf = scenario_item_bias(&sc, mf);
        double br = scenario_item_bias(&sc, sc.retrain);
        assert_true(b1 > br && bf < b1 - 0.3 * (b1 - br));
        /* With cff_item_users = 1 the step is fold-in's against fold-in's
         * re-solved users: F's item rows are fold-in's exactly; with the
         * default (the fused rows) they differ. */
        unlearn_params ui;
        unlearn_params_init(&ui);
        ui.cff_item_users = 1;
        unlearn_report repf, repu;
        mf_model *fo = scenario_unlearn(&sc, "foldin", NULL, &repf);
        mf_model *mu = scenario_unlearn(&sc, method, &ui, &repu);
        assert_true(memcmp(mf->item_bias, fo->item_bias, 200 * sizeof(float)) != 0);
        assert_int_equal(repf.n_items, rep.n_items);
        for (size_t c = 0; c < rep.n_items; c++) {
            int32_t i = rep.items[c];
            assert_memory_equal(mu->Q + (size_t)i * 16, fo->Q + (size_t)i * 16, 16 * sizeof(float));
            assert_memory_equal(&mu->item_bias[i], &fo->item_bias[i], sizeof(float));
        }
        unlearn_report_free(&repf);
        unlearn_report_free(&repu);
        mf_model_destroy(fo);
        mf_model_destroy(mu);
        unlearn_params up;
        unlearn_params_init(&up);
        up.cff_item_step = 0;
        unlearn_report rep0;
        mf_model *m0 = scenario_unlearn(&sc, method, &up, &rep0);
        assert_int_equal(rep0.n_items, 0);
        assert_float_equal(scenario_item_bias(&sc, m0), b1, 0);
        assert_true(gap(m0, &sc) > gf);
        unlearn_report_free(&rep0);
        mf_model_destroy(m0);
    }
    /* Rows outside the report are untouched. */
    scenario_assert_others_kept(&sc, mf);
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

/* The stream worker's case (worker/live.c): m1 learned online, one pass of
 * SGD from a tiny init (three passes here, so that it has learned F), and a cycle unlearns ONE user
 * on a sub-model holding that user and the items they rated, with item_mean NULL (mu + b_i). The
 * user forgets ten ratings that m1 learned as 5s. Before cff had a ridge
 * term, the network fitted this single user's remaining ratings with a row
 * many times m1's norm, raised every score and barely moved F. */
typedef struct stream_case {
    mf_model *sub;
    ul_rating F[10], *R;
    size_t nR;
    int32_t *item_count;
} stream_case;

static void stream_case_make(stream_case *sc, int k) {
    char err[UL_ERRSTR_SIZE];
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 40;
    so.n_items = 120;
    so.n_ratings = 2400;
    so.seed = 5;
    dataset *ds = ds_synthetic(&so, err, sizeof(err));
    assert_non_null(ds);
    mf_params mp;
    mf_params_init(&mp);
    mf_model *m1 = mf_model_new(40, 120, k, err, sizeof(err));
    assert_non_null(m1);
    m1->global_mean = 3.0f; /* the worker's: the middle of the scale */
    m1->rating_min = 1.0f;
    m1->rating_max = 5.0f;
    rng r;
    rng_seed(&r, 3);
    for (size_t j = 0; j < 40 * (size_t)k; j++)
        m1->P[j] = (float)(mp.init_std * rng_normal(&r));
    for (size_t j = 0; j < 120 * (size_t)k; j++)
        m1->Q[j] = (float)(mp.init_std * rng_normal(&r));
    /* User 0's first ten ratings are the mistaken 5s. */
    int32_t *cnt = calloc(120, sizeof(int32_t)), *local = malloc(120 * sizeof(int32_t));
    size_t nF = 0, n0 = 0;
    for (size_t j = 0; j < ds->n_ratings; j++) {
        ul_rating *x = &ds->ratings[j];
        cnt[x->item]++;
        if (x->user == 0 && n0++ < 10)
            x->value = 5.0f;
    }
    /* The worker's online rate (model.learning.rate, default 0.01), not the
     * offline trainer's first-epoch rate mp.lr. */
    const float online_lr = 0.01f;
    for (int pass = 0; pass < 3; pass++)
        for (size_t j = 0; j < ds->n_ratings; j++)
            mf_sgd_step(m1, ds->ratings[j].user, ds->ratings[j].item, ds->ratings[j].value,
                        online_lr, mp.reg, mp.reg_bias);
    sc->R = malloc(n0 * sizeof(ul_rating));
    sc->nR = 0;
    for (int i = 0; i < 120; i++)
        local[i] = -1;
    int32_t ni = 0;
    for (size_t j = 0; j < ds->n_ratings; j++) {
        ul_rating x = ds->ratings[j];
        if (x.user != 0)
            continue;
        local[x.item] = ni++;
        ul_rating y = {0, local[x.item], x.value, x.time};
        if (nF < 10)
            sc->F[nF++] = y;
        else
            sc->R[sc->nR++] = y;
    }
    assert_int_equal(nF, 10);
    assert_true(sc->nR >= 20);
    /* The sub-model, as live.c builds it. */
    sc->sub = mf_model_new(1, ni, k, err, sizeof(err));
    assert_non_null(sc->sub);
    sc->sub->global_mean = m1->global_mean;
    sc->sub->rating_min = 1.0f;
    sc->sub->rating_max = 5.0f;
    sc->sub->user_bias[0] = m1->user_bias[0];
    memcpy(sc->sub->P, m1->P, (size_t)k * sizeof(float));
    sc->item_count = malloc((size_t)ni * sizeof(int32_t));
    for (int i = 0; i < 120; i++) {
        if (local[i] < 0)
            continue;
        sc->sub->item_bias[local[i]] = m1->item_bias[i];
        memcpy(sc->sub->Q + (size_t)local[i] * (size_t)k, m1->Q + (size_t)i * (size_t)k,
               (size_t)k * sizeof(float));
        sc->item_count[local[i]] = cnt[i];
    }
    free(cnt);
    free(local);
    mf_model_destroy(m1);
    ds_destroy(ds);
}

static double mean_pred(const mf_model *m, const ul_rating *r, size_t n) {
    double s = 0;
    for (size_t j = 0; j < n; j++)
        s += mf_predict_raw(m, r[j].user, r[j].item);
    return s / (double)n;
}

static double row_norm(const mf_model *m) {
    double s = 0;
    for (int t = 0; t < m->k; t++)
        s += (double)m->P[t] * m->P[t];
    return sqrt(s);
}

static void test_cff_stream_single_user(void **state) {
    (void)state;
    const int k = 32;
    stream_case sc;
    stream_case_make(&sc, k);
    mf_model *mf = mf_model_clone(sc.sub);
    unlearn_request req = {sc.F, 10, sc.R, sc.nR, NULL, sc.item_count};
    char err[UL_ERRSTR_SIZE] = "";
    assert_int_equal(unlearn_apply("cff", mf, &req, NULL, NULL, err, sizeof(err)), UL_OK);
    double f0 = mean_pred(sc.sub, sc.F, 10), f1 = mean_pred(mf, sc.F, 10), target = 0;
    for (int j = 0; j < 10; j++)
        target += (sc.sub->global_mean + sc.sub->item_bias[sc.F[j].item]) / 10.0;
    double n0 = row_norm(sc.sub), n1 = row_norm(mf);
    double moved = 0, e0 = 0, e1 = 0;
    for (size_t j = 0; j < sc.nR; j++) {
        double p0 = mf_predict_raw(sc.sub, 0, sc.R[j].item);
        double p1 = mf_predict_raw(mf, 0, sc.R[j].item);
        moved += fabs(p1 - p0) / (double)sc.nR;
        e0 += (p0 - sc.R[j].value) * (p0 - sc.R[j].value) / (double)sc.nR;
        e1 += (p1 - sc.R[j].value) * (p1 - sc.R[j].value) / (double)sc.nR;
    }
    print_message("stream cff: F %.3f -> %.3f (target %.3f), |p| %.4f -> %.4f, retained moved "
                  "%.3f, RMSE %.3f -> %.3f\n",
                  f0, f1, target, n0, n1, moved, sqrt(e0), sqrt(e1));
    assert_true(f0 - target > 0.3);             /* m1 did learn the 5s */
    assert_true(f1 < f0 - 0.4 * (f0 - target)); /* (a) F drops towards D_fl1 */
    assert_true(n1 <= 3.0 * n0);                /* (b) the row keeps m1's scale */
    /* (c) the other scores move little (the bias F inflated comes down for
     * all of them, hence not zero) and fit the remaining ratings no worse. */
    assert_true(moved < 0.35);
    assert_true(e1 <= e0 + 0.01);
    mf_model_destroy(mf);
    mf_model_destroy(sc.sub);
    free(sc.R);
    free(sc.item_count);
}

/* The rescue model and the residual's base: m2 learns D_fl1 and the
 * affected users' remaining ratings with F's item rows held at m1's
 * (rescue_retain), and with no training step the fused rows are m2's rows
 * (cff_base_m2) or m1's (base m1: the untrained network is the identity). */
static void test_rescue_and_base(void **state) {
    (void)state;
    scenario sc = {0};
    scenario_make(&sc);
    unlearn_params up;
    unlearn_params_init(&up);
    up.cff_steps = 0;
    up.cff_item_step = 0;
    unlearn_report rep;
    mf_model *mf = scenario_unlearn(&sc, "cff", &up, &rep);
    unlearn_rows rows = {rep.users, rep.n_users, NULL, 0, NULL, NULL};
    /* F's items, positions as unlearn.c builds them */
    int32_t items[200];
    rows.user_pos = malloc(300 * sizeof(int32_t));
    rows.item_pos = malloc(200 * sizeof(int32_t));
    uint8_t in_f[200] = {0};
    for (size_t j = 0; j < sc.n_forget; j++)
        in_f[sc.forget[j].item] = 1;
    for (int i = 0; i < 200; i++) {
        rows.item_pos[i] = in_f[i] ? (int32_t)rows.n_items : -1;
        if (in_f[i])
            items[rows.n_items++] = i;
    }
    rows.items = items;
    for (int u = 0; u < 300; u++)
        rows.user_pos[u] = -1;
    for (size_t a = 0; a < rep.n_users; a++)
        rows.user_pos[rep.users[a]] = (int32_t)a;
    unlearn_request req = {sc.forget,   sc.n_forget,  sc.retain,
                           sc.n_retain, sc.item_mean, sc.item_count};
    rescue_model m2, m2f;
    char err[UL_ERRSTR_SIZE];
    up.seed = 1;
    assert_int_equal(rescue_train(sc.m1, &req, &rows, &up, &m2, err, sizeof(err)), UL_OK);
    int k = sc.m1->k;
    for (size_t c = 0; c < rows.n_items; c++) /* items held at m1's */
        assert_memory_equal(m2.Q + c * (size_t)k, sc.m1->Q + (size_t)items[c] * (size_t)k,
                            (size_t)k * sizeof(float));
    for (size_t a = 0; a < rep.n_users; a++) { /* base m2, no step: the rows are m2's */
        assert_memory_equal(mf->P + (size_t)rep.users[a] * (size_t)k, m2.P + a * (size_t)k,
                            (size_t)k * sizeof(float));
        assert_float_equal(mf->user_bias[rep.users[a]], m2.user_bias[a], 0);
    }
    up.rescue_retain = 0; /* the paper's m2: D_fl1 only, items move */
    assert_int_equal(rescue_train(sc.m1, &req, &rows, &up, &m2f, err, sizeof(err)), UL_OK);
    double e_with = 0, e_without = 0;
    for (size_t j = 0; j < sc.n_retain; j++) {
        const ul_rating *r = &sc.retain[j];
        size_t a = (size_t)rows.user_pos[r->user];
        double p1 = sc.m1->global_mean + sc.m1->item_bias[r->item] + m2.user_bias[a];
        double p0 = sc.m1->global_mean + sc.m1->item_bias[r->item] + m2f.user_bias[a];
        for (int t = 0; t < k; t++) {
            p1 += m2.P[a * (size_t)k + t] * sc.m1->Q[(size_t)r->item * (size_t)k + t];
            p0 += m2f.P[a * (size_t)k + t] * sc.m1->Q[(size_t)r->item * (size_t)k + t];
        }
        e_with += (p1 - r->value) * (p1 - r->value);
        e_without += (p0 - r->value) * (p0 - r->value);
    }
    assert_true(e_with < e_without); /* m2 with R fits R better */
    up.rescue_retain = 1;
    up.cff_base_m2 = 0; /* base m1, no step: cff is the identity */
    unlearn_report rep1;
    mf_model *id = scenario_unlearn(&sc, "cff", &up, &rep1);
    assert_memory_equal(id->P, sc.m1->P, (size_t)300 * (size_t)k * sizeof(float));
    assert_memory_equal(id->user_bias, sc.m1->user_bias, 300 * sizeof(float));
    rescue_free(&m2);
    rescue_free(&m2f);
    free(rows.user_pos);
    free(rows.item_pos);
    unlearn_report_free(&rep);
    unlearn_report_free(&rep1);
    mf_model_destroy(mf);
    mf_model_destroy(id);
    scenario_free(&sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_normalise),
        cmocka_unit_test(test_gradient_residual),
        cmocka_unit_test(test_output_mappings),
        cmocka_unit_test(test_adam_lowers_loss),
        cmocka_unit_test(test_cff_shrinks_forget_gap),
        cmocka_unit_test(test_cff_paper_shrinks_forget_gap),
        cmocka_unit_test(test_cff_stream_single_user),
        cmocka_unit_test(test_rescue_and_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
