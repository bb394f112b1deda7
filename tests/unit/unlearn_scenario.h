/* unlearn_scenario.h: the offline protocol on a small synthetic set, shared
 * by test_cff.c and test_foldin.c (static functions: each test program
 * includes it once). 10% of users forget 50% of their ratings, which m1
 * learned as 5; m1 and a Retrain are trained with mf_train. */
#ifndef UL_UNLEARN_SCENARIO_H
#define UL_UNLEARN_SCENARIO_H

#include <math.h>
#include <stdlib.h>

#include "dataset.h"
#include "mf.h"
#include "rng.h"
#include "ul_err.h"
#include "unlearn.h"

typedef struct scenario {
    dataset *ds;
    ul_rating *faulty, *clean, *forget, *retain;
    size_t n_faulty, n_clean, n_forget, n_retain;
    float *item_mean;
    int32_t *item_count;
    mf_model *m1, *retrain;
} scenario;

static void scenario_make(scenario *sc) {
    char err[UL_ERRSTR_SIZE];
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 300;
    so.n_items = 200;
    so.n_ratings = 18000;
    so.seed = 4;
    sc->ds = ds_synthetic(&so, err, sizeof(err));
    assert_non_null(sc->ds);
    size_t n = sc->ds->n_ratings;
    sc->faulty = malloc(n * sizeof(ul_rating));
    sc->clean = malloc(n * sizeof(ul_rating));
    sc->forget = malloc(n * sizeof(ul_rating));
    sc->retain = malloc(n * sizeof(ul_rating));
    sc->item_mean = calloc(200, sizeof(float));
    sc->item_count = calloc(200, sizeof(int32_t));
    int32_t *icnt = calloc(200, sizeof(int32_t));
    rng r;
    rng_seed(&r, 8);
    for (size_t j = 0; j < n; j++) {
        ul_rating x = sc->ds->ratings[j];
        int picked = x.user % 10 == 3;
        if (picked && rng_uniform(&r) < 0.5) {
            x.value = 5;
            sc->forget[sc->n_forget++] = x;
        } else {
            sc->clean[sc->n_clean++] = x;
            sc->item_mean[x.item] += x.value;
            icnt[x.item]++;
            if (picked)
                sc->retain[sc->n_retain++] = x;
        }
        sc->faulty[sc->n_faulty++] = x;
        sc->item_count[x.item]++;
    }
    for (int i = 0; i < 200; i++)
        sc->item_mean[i] = icnt[i] ? sc->item_mean[i] / (float)icnt[i] : 3.0f;
    free(icnt);
    mf_params mp;
    mf_params_init(&mp);
    mp.k = 16;
    mp.epochs = 25;
    sc->m1 = mf_train(sc->faulty, sc->n_faulty, 300, 200, 1, 5, &mp, NULL, NULL, err, sizeof(err));
    sc->retrain =
        mf_train(sc->clean, sc->n_clean, 300, 200, 1, 5, &mp, NULL, NULL, err, sizeof(err));
    assert_non_null(sc->m1);
    assert_non_null(sc->retrain);
}

static void scenario_free(scenario *sc) {
    ds_destroy(sc->ds);
    free(sc->faulty);
    free(sc->clean);
    free(sc->forget);
    free(sc->retain);
    free(sc->item_mean);
    free(sc->item_count);
    mf_model_destroy(sc->m1);
    mf_model_destroy(sc->retrain);
}

static double gap(const mf_model *m, const scenario *sc) {
    double s = 0;
    for (size_t j = 0; j < sc->n_forget; j++)
        s += fabs(mf_predict(m, sc->forget[j].user, sc->forget[j].item) -
                  mf_predict(sc->retrain, sc->forget[j].user, sc->forget[j].item));
    return s / (double)sc->n_forget;
}

/* A clone of m1 unlearned by `method` with `params` (NULL: the defaults) on
 * the forget set (the call must succeed), its report in *rep. The caller
 * frees both. */
static mf_model *scenario_unlearn(const scenario *sc, const char *method,
                                  const unlearn_params *params, unlearn_report *rep) {
    mf_model *mf = mf_model_clone(sc->m1);
    unlearn_request req = {sc->forget,   sc->n_forget,  sc->retain,
                           sc->n_retain, sc->item_mean, sc->item_count};
    char err[UL_ERRSTR_SIZE] = "";
    assert_int_equal(unlearn_apply(method, mf, &req, params, rep, err, sizeof(err)), UL_OK);
    return mf;
}

/* The F-weighted mean item bias of a model (eval's item_bias_forget). */
static double scenario_item_bias(const scenario *sc, const mf_model *m) {
    double s = 0;
    for (size_t j = 0; j < sc->n_forget; j++)
        s += m->item_bias[sc->forget[j].item];
    return s / (double)sc->n_forget;
}

/* The user rows of mf outside the forgetting users (u % 10 == 3) are m1's. */
static void scenario_assert_others_kept(const scenario *sc, const mf_model *mf) {
    for (int32_t u = 0; u < 300; u++)
        if (u % 10 != 3)
            assert_memory_equal(mf->P + u * 16, sc->m1->P + u * 16, 16 * sizeof(float));
}

#endif
