/* test_eval.c: one evaluation cell on a small synthetic set: the reference
 * and the metrics behave as defined (retrain's forget gap is 0, M1 predicts
 * higher on F than retrain, exposure is a share, SISA retrains only touched
 * shards, the membership audit tells M1's F from unseen pairs and not
 * Retrain's), results are reproducible, the JSON line has exactly the
 * documented keys, sequential unlearning adds a row with its trace, and bad
 * requests are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "eval.h"
#include "rng.h"
#include "ul_err.h"

static dataset *ds;

static int setup(void **state) {
    (void)state;
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 300;
    so.n_items = 150;
    so.n_ratings = 12000;
    so.seed = 3;
    char err[256];
    ds = ds_synthetic(&so, err, sizeof(err));
    return ds == NULL;
}

static int teardown(void **state) {
    (void)state;
    ds_destroy(ds);
    return 0;
}

static eval_data data_of(void) {
    eval_data d = {ds->ratings,    ds->n_ratings,  ds->n_users, ds->n_items,
                   ds->rating_min, ds->rating_max, "synthetic"};
    return d;
}

static eval_opts small_opts(void) {
    eval_opts o;
    eval_opts_init(&o);
    o.mf.k = 8;
    o.mf.epochs = 15;
    o.mf.threads = 1;
    o.users_pct = 10;
    o.forget_pct = 50;
    o.seed = 7;
    return o;
}

static const eval_result *find(const eval_cell *c, const char *method) {
    for (size_t j = 0; j < c->n_results; j++)
        if (strcmp(c->results[j].method, method) == 0)
            return &c->results[j];
    fail_msg("no result for %s", method);
    return NULL;
}

static const char *const base_methods[] = {"orig", "faulty", "retrain", "sisa", "retrain2"};

static void run(const eval_opts *o, eval_cell *c) {
    eval_data d = data_of();
    char err[256] = "";
    int rc = eval_run_cell(&d, o, base_methods, 5, NULL, NULL, c, err, sizeof(err));
    if (rc != UL_OK)
        fail_msg("eval_run_cell: %s", err);
}

static void test_metrics(void **state) {
    (void)state;
    eval_opts o = small_opts();
    eval_cell c;
    run(&o, &c);
    assert_int_equal(c.n_results, 5);
    assert_int_equal(c.n_train + c.n_test, ds->n_ratings);
    assert_int_equal(c.n_users_affected, 30); /* 10% of 300 users */
    assert_true(c.n_forget > 0 && c.n_test_affected > 0);
    const eval_result *orig = find(&c, "orig"), *m1 = find(&c, "faulty");
    const eval_result *re = find(&c, "retrain"), *sisa = find(&c, "sisa");
    const eval_result *re2 = find(&c, "retrain2");
    /* The reference against itself. */
    assert_float_equal(re->forget_gap, 0.0, 1e-12);
    /* O1 wrote 5s over F: M1 learned them, retrain never saw them. */
    assert_true(m1->mean_pred_forget > re->mean_pred_forget + 0.3);
    assert_true(m1->forget_gap > re2->forget_gap);
    assert_true(m1->rmse_affected > re->rmse_affected);
    /* The noise floor is the gap of the second retrain, small but not 0. */
    assert_float_equal(c.noise_floor, re2->forget_gap, 1e-12);
    assert_true(c.noise_floor > 0 && c.noise_floor < m1->forget_gap);
    for (size_t j = 0; j < c.n_results; j++) {
        const eval_result *r = &c.results[j];
        assert_true(r->topk_exposure >= 0 && r->topk_exposure <= 1);
        assert_true(r->rmse_test > 0 && r->rmse_test < 2);
        assert_true(r->mean_pred_forget >= 1 && r->mean_pred_forget <= 5);
        /* The overall RMSE lies between the two groups'. */
        double lo = fmin(r->rmse_affected, r->rmse_unaffected);
        double hi = fmax(r->rmse_affected, r->rmse_unaffected);
        assert_true(r->rmse_test >= lo - 1e-9 && r->rmse_test <= hi + 1e-9);
        assert_true(r->seconds >= 0);
    }
    /* SISA: S models, at least one and at most S shards retrained. */
    assert_int_equal(sisa->n_models, 5);
    assert_true(sisa->shards_touched >= 1 && sisa->shards_touched <= 5);
    assert_true(isnan(sisa->l1_P) && isnan(sisa->l2_Q));
    assert_true(sisa->unlearn_seconds > 0);
    /* Latent distances: orig is at 0 from itself, M1 at 0 from itself. */
    assert_float_equal(orig->l2_P, 0, 0);
    assert_float_equal(m1->l1_Q, 0, 0);
    assert_float_equal(orig->l1_P, m1->l2_P, 1e-9);
    assert_true(re->l1_P > 0 && re->l2_P > 0);
    assert_true(isnan(orig->unlearn_seconds) && isnan(m1->unlearn_seconds));
    /* The membership audit: M1 learned F's 5s, so its scores tell F from
     * the affected users' unseen test pairs (this small k = 8 model barely
     * memorises single pairs: the calibrated attack is what separates them);
     * Retrain never saw either set (0.5 up to sampling noise, about 0.03 on
     * these 30 users); retrain2 is the calibrated attack's own
     * reference, so every calibrated score is 0: exactly 0.5. */
    assert_int_equal(c.n_nonmember, c.n_test_affected);

    assert_true(m1->mia_auc > re->mia_auc);
    assert_true(m1->mia_auc_ref > re->mia_auc_ref + 0.05);
    assert_true(fabs(re->mia_auc - 0.5) < 0.08 && fabs(re->mia_auc_ref - 0.5) < 0.08);
    assert_float_equal(re2->mia_auc_ref, 0.5, 0);
    for (size_t j = 0; j < c.n_results; j++) {
        assert_true(c.results[j].mia_auc >= 0 && c.results[j].mia_auc <= 1);
        assert_true(isfinite(c.results[j].item_bias_forget));
        assert_int_equal(c.results[j].sequential, 0);
    }
    /* F's 5s pulled F's items up in M1, for everyone. */
    assert_true(m1->item_bias_forget > re->item_bias_forget);
    assert_true(m1->item_score_forget > re->item_score_forget);
    eval_cell_free(&c);
}

static void test_one_user_touches_one_shard(void **state) {
    (void)state;
    eval_opts o = small_opts();
    o.users_pct = 0.1; /* rounds to the minimum: one user */
    eval_data d = data_of();
    const char *const m[] = {"sisa"};
    eval_cell c;
    char err[256];
    assert_int_equal(eval_run_cell(&d, &o, m, 1, NULL, NULL, &c, err, sizeof(err)), UL_OK);
    assert_int_equal(c.n_users_affected, 1);
    assert_int_equal(c.results[0].shards_touched, 1);
    eval_cell_free(&c);
}

/* --valid: a tenth of the training split is scored instead of the test
 * split, and the test split is never read: rewriting every test rating
 * (found by its (user, item), with the split eval_run_cell makes from the
 * seed) leaves every figure bit-identical, while the test-split run moves. */
static void test_validation_never_reads_test(void **state) {
    (void)state;
    eval_opts o = small_opts();
    eval_cell t, a, b;
    run(&o, &t);
    o.valid_frac = 0.1;
    run(&o, &a);
    assert_int_equal(a.validation, 1);
    assert_int_equal(t.validation, 0);
    assert_int_equal(a.n_train + a.n_test, t.n_train);
    assert_true(a.n_test > t.n_train / 20 && a.n_test < t.n_train / 5);
    ul_ratings tr, te;
    char err[256] = "";
    assert_int_equal(ds_split(ds->ratings, ds->n_ratings, o.test_frac, rng_derive(o.seed, 1), &tr,
                              &te, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(te.n, t.n_test);
    uint8_t *in_test = calloc((size_t)ds->n_users * (size_t)ds->n_items, 1);
    for (size_t j = 0; j < te.n; j++)
        in_test[(size_t)te.v[j].user * (size_t)ds->n_items + (size_t)te.v[j].item] = 1;
    ul_rating *copy = malloc(ds->n_ratings * sizeof(*copy));
    memcpy(copy, ds->ratings, ds->n_ratings * sizeof(*copy));
    size_t changed = 0;
    for (size_t j = 0; j < ds->n_ratings; j++)
        if (in_test[(size_t)copy[j].user * (size_t)ds->n_items + (size_t)copy[j].item]) {
            copy[j].value = copy[j].value > 3 ? ds->rating_min : ds->rating_max;
            changed++;
        }
    assert_int_equal(changed, te.n);
    eval_data d = data_of();
    d.ratings = copy;
    static const char *const names[] = {"orig", "faulty", "retrain", "foldin"};
    assert_int_equal(eval_run_cell(&d, &o, names, 4, NULL, NULL, &b, err, sizeof(err)), UL_OK);
    assert_int_equal(a.n_results, 5); /* base_methods */
    for (size_t j = 0; j < b.n_results; j++) {
        const eval_result *y = &b.results[j];
        if (strcmp(y->method, "foldin") == 0)
            continue; /* not in the first run; compared below */
        const eval_result *x = find(&a, y->method);
        assert_float_equal(x->rmse_test, y->rmse_test, 0);
        assert_float_equal(x->forget_gap, y->forget_gap, 0);
        assert_float_equal(x->mia_auc, y->mia_auc, 0);
        assert_float_equal(x->mia_auc_ref, y->mia_auc_ref, 0);
    }
    eval_cell c;
    eval_data d0 = data_of();
    assert_int_equal(eval_run_cell(&d0, &o, names, 4, NULL, NULL, &c, err, sizeof(err)), UL_OK);
    assert_float_equal(find(&c, "foldin")->rmse_test, find(&b, "foldin")->rmse_test, 0);
    eval_cell_free(&c);
    /* the same rewrite moves the test-split figures */
    eval_cell e;
    o.valid_frac = 0;
    assert_int_equal(eval_run_cell(&d, &o, names, 4, NULL, NULL, &e, err, sizeof(err)), UL_OK);
    assert_true(fabs(find(&e, "retrain")->rmse_test - find(&t, "retrain")->rmse_test) > 0.1);
    o.valid_frac = 1;
    eval_cell f;
    assert_int_equal(eval_run_cell(&d, &o, names, 4, NULL, NULL, &f, err, sizeof(err)), UL_ERR_ARG);
    eval_cell_free(&f);
    eval_cell_free(&e);
    eval_cell_free(&b);
    eval_cell_free(&a);
    eval_cell_free(&t);
    ul_ratings_free(&tr);
    ul_ratings_free(&te);
    free(copy);
    free(in_test);
}

static void test_reproducible(void **state) {
    (void)state;
    eval_opts o = small_opts();
    eval_cell a, b;
    run(&o, &a);
    run(&o, &b);
    for (size_t j = 0; j < a.n_results; j++) {
        assert_float_equal(a.results[j].rmse_test, b.results[j].rmse_test, 0);
        assert_float_equal(a.results[j].forget_gap, b.results[j].forget_gap, 0);
        assert_float_equal(a.results[j].topk_exposure, b.results[j].topk_exposure, 0);
        assert_float_equal(a.results[j].mia_auc, b.results[j].mia_auc, 0);
        assert_float_equal(a.results[j].mia_auc_ref, b.results[j].mia_auc_ref, 0);
    }
    eval_cell_free(&a);
    eval_cell_free(&b);
}

/* The keys of a flat JSON object (values: strings, numbers, null or flat
 * arrays), in order, comma-joined into out. */
static void json_keys(const char *s, char *out, size_t size) {
    out[0] = '\0';
    assert_true(*s == '{');
    s++;
    while (*s && *s != '}') {
        assert_true(*s == '"');
        const char *end = strchr(s + 1, '"');
        assert_non_null(end);
        snprintf(out + strlen(out), size - strlen(out), "%s%.*s", out[0] ? "," : "",
                 (int)(end - s - 1), s + 1);
        s = end + 1;
        assert_true(*s == ':');
        s++;
        if (*s == '"') {
            s = strchr(s + 1, '"');
            assert_non_null(s);
            s++;
        } else if (*s == '[') { /* a flat array of numbers */
            s = strchr(s, ']');
            assert_non_null(s);
            s++;
        } else {
            while (*s && *s != ',' && *s != '}')
                s++;
        }
        if (*s == ',')
            s++;
    }
    assert_true(*s == '}' && s[1] == '\0');
}

#define ONE_SHOT_KEYS                                                                              \
    "dataset,users_pct,forget_pct,method,sequential,seed,rmse_test,rmse_affected,"                 \
    "rmse_unaffected,forget_gap,mean_pred_forget,topk_exposure,mia_auc,mia_auc_ref,"               \
    "item_bias_forget,item_score_forget,seconds,unlearn_seconds,l1_P,l2_P,l1_Q,l2_Q"

static void test_json_line(void **state) {
    (void)state;
    eval_opts o = small_opts();
    eval_cell c;
    run(&o, &c);
    char line[2048], keys[1024];
    for (size_t j = 0; j < c.n_results; j++) {
        int n = eval_result_json(&c, &c.results[j], line, sizeof(line));
        assert_true(n > 0 && (size_t)n == strlen(line));
        assert_null(strchr(line, '\n'));
        json_keys(line, keys, sizeof(keys));
        assert_string_equal(keys, ONE_SHOT_KEYS);
        assert_non_null(strstr(line, "\"dataset\":\"synthetic\""));
        assert_non_null(strstr(line, "\"seed\":7,"));
    }
    /* NaN is written as null (orig has no unlearning time). */
    eval_result_json(&c, find(&c, "orig"), line, sizeof(line));
    assert_non_null(strstr(line, "\"unlearn_seconds\":null"));
    /* Names are escaped; a short buffer is reported. */
    snprintf(c.dataset, sizeof(c.dataset), "a\"b\\c");
    assert_true(eval_result_json(&c, &c.results[0], line, sizeof(line)) > 0);
    assert_non_null(strstr(line, "\"dataset\":\"a\\\"b\\\\c\""));
    assert_int_equal(eval_result_json(&c, &c.results[0], line, 40), -1);
    eval_cell_free(&c);
}

static int stop_early(void *ctx, const eval_progress *p) {
    int *calls = ctx;
    (*calls)++;
    assert_true(p->done >= 0 && p->done <= 1);
    return *calls > 5;
}

static void test_bad_requests_and_abort(void **state) {
    (void)state;
    eval_opts o = small_opts();
    eval_data d = data_of();
    eval_cell c;
    char err[256] = "";
    const char *const bad[] = {"orig", "nope"};
    assert_int_equal(eval_run_cell(&d, &o, bad, 2, NULL, NULL, &c, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "nope"));
    eval_cell_free(&c);
    o.shards = 0;
    assert_int_equal(eval_run_cell(&d, &o, bad, 1, NULL, NULL, &c, err, sizeof(err)), UL_ERR_ARG);
    eval_cell_free(&c);
    o = small_opts();
    o.users_pct = 0;
    assert_int_equal(eval_run_cell(&d, &o, bad, 1, NULL, NULL, &c, err, sizeof(err)), UL_ERR_ARG);
    eval_cell_free(&c);
    o = small_opts();
    int calls = 0;
    assert_int_equal(eval_run_cell(&d, &o, bad, 1, stop_early, &calls, &c, err, sizeof(err)),
                     UL_ERR_ABORTED);
    eval_cell_free(&c);
}

static void test_registry(void **state) {
    (void)state;
    const char *const *all = eval_method_names();
    int has_retrain = 0, has_owner = 0;
    for (size_t j = 0; all[j] != NULL; j++) {
        assert_non_null(eval_method_doc(all[j]));
        has_retrain |= strcmp(all[j], "retrain") == 0;
        has_owner |= strcmp(all[j], "sisa-owner") == 0;
    }
    assert_true(has_retrain && has_owner);
    /* The defaults hold the paper's models and the noise floor. */
    const char *const want[] = {"orig", "faulty", "retrain", "sisa", "retrain2"};
    for (size_t w = 0; w < 5; w++) {
        int found = 0;
        for (const char *const *m = eval_default_methods(); *m != NULL; m++)
            found |= strcmp(*m, want[w]) == 0;
        assert_true(found);
    }
    assert_null(eval_method_doc("nope"));
    /* Every unlearning method of core/unlearn.h is an eval method. */
    for (const char *const *u = unlearn_method_names(); *u != NULL; u++)
        assert_non_null(eval_method_doc(*u));
}

/* Cells that differ only in users/forget % share orig through the cache:
 * the same model (same metrics, same recorded training time). */
static void test_cache_shares_orig(void **state) {
    (void)state;
    eval_cache *cache = eval_cache_new();
    assert_non_null(cache);
    eval_opts o = small_opts();
    eval_data d = data_of();
    const char *const m[] = {"orig", "faulty"};
    eval_cell plain, a, b, other_seed;
    char err[256] = "";
    assert_int_equal(eval_run_cell(&d, &o, m, 2, NULL, NULL, &plain, err, sizeof(err)), UL_OK);
    o.cache = cache;
    assert_int_equal(eval_run_cell(&d, &o, m, 2, NULL, NULL, &a, err, sizeof(err)), UL_OK);
    o.users_pct = 20;
    o.forget_pct = 30;
    assert_int_equal(eval_run_cell(&d, &o, m, 2, NULL, NULL, &b, err, sizeof(err)), UL_OK);
    o.seed++;
    assert_int_equal(eval_run_cell(&d, &o, m, 2, NULL, NULL, &other_seed, err, sizeof(err)), UL_OK);
    /* Same model with or without the cache, reused across cells. */
    assert_float_equal(a.results[0].rmse_test, plain.results[0].rmse_test, 0);
    assert_float_equal(b.results[0].rmse_test, a.results[0].rmse_test, 0);
    assert_float_equal(b.results[0].seconds, a.results[0].seconds, 0);
    /* M1 differs with the forget set; orig of another seed is trained anew. */
    assert_true(b.results[1].rmse_test != a.results[1].rmse_test);
    assert_true(other_seed.results[0].rmse_test != a.results[0].rmse_test);
    /* The distances to orig still use the cached model. */
    assert_float_equal(b.results[0].l2_P, 0, 0);
    eval_cell_free(&plain);
    eval_cell_free(&a);
    eval_cell_free(&b);
    eval_cell_free(&other_seed);
    /* More seeds than entries: the oldest are evicted (no leak, no reuse of
     * a freed model), and a re-run of the first seed matches. */
    o = small_opts();
    o.mf.epochs = 2;
    o.cache = cache;
    double first = 0;
    for (int j = 0; j <= EVAL_CACHE_ENTRIES + 1; j++) {
        o.seed = 100 + (uint64_t)(j % (EVAL_CACHE_ENTRIES + 1));
        eval_cell c;
        assert_int_equal(eval_run_cell(&d, &o, m, 1, NULL, NULL, &c, err, sizeof(err)), UL_OK);
        if (j == 0)
            first = c.results[0].rmse_test;
        if (j == EVAL_CACHE_ENTRIES + 1)
            assert_float_equal(c.results[0].rmse_test, first, 0);
        eval_cell_free(&c);
    }
    eval_cache_destroy(cache);
    eval_cache_destroy(NULL);
}

/* With 10 items and top-10, every candidate is in the top list (fewer than
 * 10 once the user's remaining items are excluded): exposure is exactly 1. */
static void test_exposure_with_few_candidates(void **state) {
    (void)state;
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 80;
    so.n_items = 10;
    so.n_ratings = 500;
    so.seed = 9;
    char err[256] = "";
    dataset *tiny = ds_synthetic(&so, err, sizeof(err));
    assert_non_null(tiny);
    eval_data d = {tiny->ratings,    tiny->n_ratings,  tiny->n_users, tiny->n_items,
                   tiny->rating_min, tiny->rating_max, "tiny"};
    eval_opts o = small_opts();
    o.users_pct = 50;
    o.shards = 2;
    const char *const m[] = {"faulty", "sisa"};
    eval_cell c;
    int rc = eval_run_cell(&d, &o, m, 2, NULL, NULL, &c, err, sizeof(err));
    if (rc != UL_OK)
        fail_msg("eval_run_cell: %s", err);
    assert_float_equal(c.results[0].topk_exposure, 1.0, 0);
    assert_float_equal(c.results[1].topk_exposure, 1.0, 0);
    eval_cell_free(&c);
    ds_destroy(tiny);
}

/* A core/unlearn.h method runs on a copy of M1 through the same metrics. */
static void test_unlearn_method_plugs_in(void **state) {
    (void)state;
    const char *const *un = unlearn_method_names();
    if (un[0] == NULL)
        skip();
    eval_opts o = small_opts();
    eval_data d = data_of();
    const char *const m[] = {"faulty", un[0]};
    eval_cell c;
    char err[256] = "";
    int rc = eval_run_cell(&d, &o, m, 2, NULL, NULL, &c, err, sizeof(err));
    if (rc != UL_OK)
        fail_msg("%s: %s", un[0], err);
    const eval_result *m1 = &c.results[0], *r = &c.results[1];
    assert_string_equal(r->method, un[0]);
    assert_int_equal(r->n_models, 1);
    assert_true(r->unlearn_seconds >= 0);
    assert_float_equal(r->train_seconds, m1->train_seconds, 0); /* starts from the same M1 */
    assert_true(r->l1_P > 0 || r->l1_Q > 0);                    /* it changed M1 */
    assert_true(r->forget_gap < m1->forget_gap);
    eval_cell_free(&c);
}

/* --sequential: one more row per unlearning method. One batch is the
 * one-shot model (identical metrics); with three, the trace has three
 * points, the last one the final model's, and the JSON line carries it. */
static void test_sequential_rows(void **state) {
    (void)state;
    eval_opts o = small_opts();
    eval_data d = data_of();
    const char *const m[] = {"faulty", "retrain", "foldin", "cff"};
    eval_cell c;
    char err[256] = "";
    o.sequential = 1;
    if (eval_run_cell(&d, &o, m, 4, NULL, NULL, &c, err, sizeof(err)) != UL_OK)
        fail_msg("eval_run_cell: %s", err);
    assert_int_equal(c.n_results, 6); /* 4 one-shot + seq:foldin, seq:cff */
    for (int k = 0; k < 2; k++) {
        const eval_result *one = &c.results[2 + k], *seq = &c.results[4 + k];
        assert_string_equal(seq->method, one->method);
        assert_int_equal(seq->sequential, 1);
        assert_float_equal(seq->rmse_test, one->rmse_test, 0);
        assert_float_equal(seq->forget_gap, one->forget_gap, 0);
        assert_float_equal(seq->mia_auc, one->mia_auc, 0);
        assert_float_equal(seq->l1_P, one->l1_P, 0);
    }
    eval_cell_free(&c);

    o.sequential = 3;
    if (eval_run_cell(&d, &o, m, 4, NULL, NULL, &c, err, sizeof(err)) != UL_OK)
        fail_msg("eval_run_cell: %s", err);
    assert_int_equal(c.n_results, 6);
    const eval_result *m1 = &c.results[0];
    for (int k = 4; k < 6; k++) {
        const eval_result *seq = &c.results[k];
        assert_int_equal(seq->sequential, 3);
        assert_int_equal(seq->n_trace, 3);
        const eval_seq_point *last = &seq->trace[2];
        assert_float_equal(last->rmse_test, seq->rmse_test, 0);
        assert_float_equal(last->forget_gap, seq->forget_gap, 0);
        assert_float_equal(last->mia_auc, seq->mia_auc, 0);
        assert_float_equal(last->item_bias_forget, seq->item_bias_forget, 0);
        assert_float_equal(last->item_score_forget, seq->item_score_forget, 0);
        /* Each batch removes more of F's pull. */
        assert_true(seq->trace[0].forget_gap < m1->forget_gap);
        assert_true(seq->forget_gap < seq->trace[0].forget_gap);
        size_t size = eval_result_json_size(seq);
        char *line = malloc(size), keys[2048];
        assert_true(eval_result_json(&c, seq, line, size) > 0);
        json_keys(line, keys, sizeof(keys));
        assert_string_equal(keys, ONE_SHOT_KEYS
                            ",trace_rmse,trace_gap,trace_mia,trace_item_bias,trace_item_score");
        assert_non_null(strstr(line, "\"sequential\":3,"));
        const char *tr = strstr(line, "\"trace_gap\":[");
        assert_non_null(tr);
        int commas = 0;
        for (const char *q = tr; *q != ']'; q++)
            commas += *q == ',';
        assert_int_equal(commas, 2);
        free(line);
    }
    eval_cell_free(&c);
    /* More batches than F's entries is refused. */
    o.sequential = 100000;
    assert_int_equal(eval_run_cell(&d, &o, m, 4, NULL, NULL, &c, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "batches"));
    eval_cell_free(&c);
    o.sequential = -1;
    assert_int_equal(eval_run_cell(&d, &o, m, 4, NULL, NULL, &c, err, sizeof(err)), UL_ERR_ARG);
    eval_cell_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_one_user_touches_one_shard),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_validation_never_reads_test),
        cmocka_unit_test(test_json_line),
        cmocka_unit_test(test_bad_requests_and_abort),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_exposure_with_few_candidates),
        cmocka_unit_test(test_cache_shares_orig),
        cmocka_unit_test(test_unlearn_method_plugs_in),
        cmocka_unit_test(test_sequential_rows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
