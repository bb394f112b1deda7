/* bench_unlearn.c: what unlearning costs next to retraining, and how well
 * each method forgets. Prints figures; asserts nothing about time.
 *
 *   bench_unlearn [--data PATH | --synthetic N] [--users PCT] [--forget PCT]
 *                 [--match-forget N] [--methods foldin,cff,...] [--seed S]
 *                 [--valid] [--set KNOB=VALUE ...]
 *
 * Default: ML-1M (shared data) at 10% users / 50% forgotten, then a
 * synthetic set of 20,000,000 ratings with the same number of forgotten
 * ratings. For each: wall time of Retrain (MF on the training set without
 * F, default hyper-parameters), of each method (m2 and CFF training
 * included), their ratio, and the quality figures of `unlearnd eval`: test
 * RMSE, forget gap against Retrain, top-10 exposure of F's items.
 * --valid scores on a validation split carved from the training data (for
 * tuning knobs; the test split is never used then). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "mf.h"
#include "rng.h"
#include "ul_clock.h"
#include "ul_err.h"
#include "unlearn.h"

typedef struct bench_opts {
    const char *data;
    size_t synthetic;
    double users_pct, forget_pct;
    size_t match_forget;
    char methods[256];
    uint64_t seed;
    int valid;
    unlearn_params up;
} bench_opts;

typedef struct protocol {
    ul_ratings train, test; /* train already faulty (F set to the maximum) */
    ul_rating *forget, *retain, *clean;
    size_t n_forget, n_retain, n_clean; /* clean = train without F */
    float *item_mean;
    int32_t *item_count;
    int32_t n_users, n_items;
    float rmin, rmax;
} protocol;

/* The paper's O1 on the training set: pick users, overwrite pct of each
 * one's ratings with the maximum; F = those entries. */
static int make_protocol(const bench_opts *o, const ul_rating *r, size_t n, int32_t nu, int32_t ni,
                         float rmin, float rmax, protocol *pr) {
    char err[UL_ERRSTR_SIZE];
    memset(pr, 0, sizeof(*pr));
    pr->n_users = nu;
    pr->n_items = ni;
    pr->rmin = rmin;
    pr->rmax = rmax;
    if (ds_split(r, n, 0.2, o->seed, &pr->train, &pr->test, err, sizeof(err)) != UL_OK)
        return fprintf(stderr, "bench_unlearn: %s\n", err), -1;
    if (o->valid) { /* tuning: score on a validation split carved from train */
        ul_ratings tr, va;
        if (ds_split(pr->train.v, pr->train.n, 0.1, o->seed + 1000, &tr, &va, err, sizeof(err)))
            return fprintf(stderr, "bench_unlearn: %s\n", err), -1;
        ul_ratings_free(&pr->train);
        ul_ratings_free(&pr->test);
        pr->train = tr;
        pr->test = va;
    }
    size_t nt = pr->train.n;
    int32_t *order = malloc((size_t)nu * sizeof(*order));
    uint8_t *picked = calloc((size_t)nu, 1);
    size_t *cnt = calloc((size_t)nu, sizeof(size_t));
    uint8_t *is_f = calloc(nt, 1);
    pr->forget = malloc(nt * sizeof(ul_rating));
    pr->retain = malloc(nt * sizeof(ul_rating));
    pr->clean = malloc(nt * sizeof(ul_rating));
    pr->item_mean = calloc((size_t)ni, sizeof(float));
    pr->item_count = calloc((size_t)ni, sizeof(int32_t));
    double *isum = calloc((size_t)ni, sizeof(double));
    int32_t *icnt = calloc((size_t)ni, sizeof(int32_t));
    if (!order || !picked || !cnt || !is_f || !pr->forget || !pr->retain || !pr->clean ||
        !pr->item_mean || !pr->item_count || !isum || !icnt)
        return fprintf(stderr, "bench_unlearn: out of memory\n"), -1;
    rng g;
    rng_seed(&g, rng_derive(o->seed, 0xfa17));
    for (int32_t u = 0; u < nu; u++)
        order[u] = u;
    rng_shuffle(&g, order, (size_t)nu, sizeof(*order));
    for (size_t j = 0; j < nt; j++)
        cnt[pr->train.v[j].user]++;
    /* Index of each user's ratings in a shuffled copy: take the first pct. */
    size_t *perm = malloc(nt * sizeof(size_t));
    for (size_t j = 0; j < nt; j++)
        perm[j] = j;
    rng_shuffle(&g, perm, nt, sizeof(size_t));
    size_t want_users = (size_t)llround((double)nu * o->users_pct / 100.0);
    size_t *taken = calloc((size_t)nu, sizeof(size_t)), n_f_target = 0;
    for (size_t a = 0; a < (size_t)nu; a++) {
        int32_t u = order[a];
        if (cnt[u] == 0)
            continue;
        if (o->match_forget ? n_f_target >= o->match_forget : a >= want_users)
            break;
        picked[u] = 1;
        n_f_target += (size_t)llround((double)cnt[u] * o->forget_pct / 100.0);
    }
    for (size_t j = 0; j < nt; j++) {
        ul_rating *x = &pr->train.v[perm[j]];
        if (picked[x->user] &&
            taken[x->user] < (size_t)llround((double)cnt[x->user] * o->forget_pct / 100.0)) {
            taken[x->user]++;
            is_f[perm[j]] = 1;
        }
    }
    for (size_t j = 0; j < nt; j++) {
        ul_rating *x = &pr->train.v[j];
        if (is_f[j]) {
            x->value = rmax; /* O1: the faulty rating m1 learns */
            pr->forget[pr->n_forget++] = *x;
        } else {
            isum[x->item] += x->value;
            icnt[x->item]++;
            pr->clean[pr->n_clean++] = *x;
            if (picked[x->user])
                pr->retain[pr->n_retain++] = *x;
        }
        pr->item_count[x->item]++;
    }
    double mu = 0;
    for (size_t j = 0; j < pr->n_clean; j++)
        mu += pr->clean[j].value;
    mu /= pr->n_clean ? (double)pr->n_clean : 1.0;
    for (int32_t i = 0; i < ni; i++) /* item means from outside F */
        pr->item_mean[i] = icnt[i] ? (float)(isum[i] / icnt[i]) : (float)mu;
    free(order);
    free(picked);
    free(cnt);
    free(is_f);
    free(perm);
    free(taken);
    free(isum);
    free(icnt);
    return 0;
}

static void protocol_free(protocol *pr) {
    ul_ratings_free(&pr->train);
    ul_ratings_free(&pr->test);
    free(pr->forget);
    free(pr->retain);
    free(pr->clean);
    free(pr->item_mean);
    free(pr->item_count);
}

static double forget_gap(const mf_model *m, const mf_model *ref, const protocol *pr) {
    double s = 0;
    for (size_t j = 0; j < pr->n_forget; j++)
        s += fabs(mf_predict(m, pr->forget[j].user, pr->forget[j].item) -
                  mf_predict(ref, pr->forget[j].user, pr->forget[j].item));
    return pr->n_forget ? s / (double)pr->n_forget : 0;
}

/* Share of F's (user, item) whose item is in the user's top-10 among the
 * items the user has not kept (retained ratings excluded). */
static double exposure(const mf_model *m, const protocol *pr) {
    uint8_t *ex = calloc((size_t)m->n_items, 1);
    uint8_t *seen = calloc((size_t)m->n_users, 1);
    size_t hit = 0, n = 0;
    int32_t top[10];
    float score[10];
    for (size_t j = 0; j < pr->n_forget; j++) {
        int32_t u = pr->forget[j].user;
        if (seen[u])
            continue;
        seen[u] = 1;
        memset(ex, 0, (size_t)m->n_items);
        for (size_t r = 0; r < pr->n_retain; r++)
            if (pr->retain[r].user == u)
                ex[pr->retain[r].item] = 1;
        int nt = mf_top_k(m, u, ex, 10, top, score);
        for (size_t f = j; f < pr->n_forget; f++) {
            if (pr->forget[f].user != u)
                continue;
            n++;
            for (int t = 0; t < nt; t++)
                hit += top[t] == pr->forget[f].item;
        }
    }
    free(ex);
    free(seen);
    return n ? (double)hit / (double)n : 0;
}

static mf_model *train_model(const protocol *pr, const ul_rating *r, size_t n, uint64_t seed,
                             double *secs) {
    char err[UL_ERRSTR_SIZE];
    mf_params mp;
    mf_params_init(&mp);
    mp.seed = seed;
    double t0 = ul_clock_mono_s(), c0 = ul_clock_cpu_s();
    mf_model *m = mf_train(r, n, pr->n_users, pr->n_items, pr->rmin, pr->rmax, &mp, NULL, NULL, err,
                           sizeof(err));
    *secs = ul_clock_mono_s() - t0;
    if (m != NULL)
        printf("  (training: %.3f s wall, %.3f s cpu)\n", *secs, ul_clock_cpu_s() - c0);
    if (m == NULL)
        fprintf(stderr, "bench_unlearn: %s\n", err);
    return m;
}

/* ||Q_a - Q_b||_F and ||P_a - P_b||_F (Table 2b's l1 against m1). */
static double frob(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t j = 0; j < n; j++)
        s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return sqrt(s);
}

static const mf_model *g_m1; /* the run's m1, for the distance columns */

/* F-weighted mean item bias, and F-weighted mean of each item's mean score
 * over the unaffected users (eval's item_bias_forget, item_score_forget). */
static void item_pull(const mf_model *m, const protocol *pr, double *bias, double *score) {
    size_t k = (size_t)m->k, n = 0;
    uint8_t *aff = calloc((size_t)m->n_users, 1);
    double *pm = calloc(k, sizeof(double)), bu = 0;
    for (size_t j = 0; j < pr->n_forget; j++)
        aff[pr->forget[j].user] = 1;
    for (int32_t u = 0; u < m->n_users; u++) {
        if (aff[u])
            continue;
        n++;
        bu += m->user_bias[u];
        for (size_t d = 0; d < k; d++)
            pm[d] += m->P[(size_t)u * k + d];
    }
    *bias = *score = 0;
    for (size_t j = 0; j < pr->n_forget; j++) {
        int32_t i = pr->forget[j].item;
        double s = m->global_mean + bu / (double)n + m->item_bias[i];
        for (size_t d = 0; d < k; d++)
            s += pm[d] / (double)n * m->Q[(size_t)i * k + d];
        *bias += m->item_bias[i];
        *score += s;
    }
    *bias /= (double)pr->n_forget;
    *score /= (double)pr->n_forget;
    free(aff);
    free(pm);
}

/* One line of `key value` pairs per model, so scripts can pick columns by
 * name (bench/ablation.sh). */
static void print_row(const char *name, const mf_model *m, const mf_model *ref, const protocol *pr,
                      double secs, double retrain_secs, double gap_m1, int with_exposure) {
    double gap = forget_gap(m, ref, pr);
    size_t k = (size_t)m->k;
    printf("  %-10s rmse %.4f  gap %.4f  gap_pct %5.1f  exposure ", name,
           mf_rmse(m, pr->test.v, pr->test.n), gap, gap_m1 > 0 ? 100 * gap / gap_m1 : 0);
    if (with_exposure)
        printf("%.4f", exposure(m, pr));
    else
        printf("-");
    printf("  wall_s %.3f  pct_of_retrain %6.2f", secs, 100 * secs / retrain_secs);
    double ib, is;
    item_pull(m, pr, &ib, &is);
    printf("  dP %.2f  dQ %.2f  item_bias %.4f  item_score %.4f\n",
           frob(m->P, g_m1->P, (size_t)m->n_users * k), frob(m->Q, g_m1->Q, (size_t)m->n_items * k),
           ib, is);
}

static int run(const bench_opts *o, const char *label, const ul_rating *r, size_t n, int32_t nu,
               int32_t ni, float rmin, float rmax) {
    protocol pr;
    if (make_protocol(o, r, n, nu, ni, rmin, rmax, &pr) != 0)
        return 1;
    int big = n > 5000000;
    printf("%s: %zu train, %zu %s, |F| = %zu, retained of affected users = %zu\n", label,
           pr.train.n, pr.test.n, o->valid ? "validation" : "test", pr.n_forget, pr.n_retain);
    double t_m1, t_re, t_re2 = 0;
    mf_model *m1 = train_model(&pr, pr.train.v, pr.train.n, o->seed, &t_m1);
    mf_model *re = m1 ? train_model(&pr, pr.clean, pr.n_clean, o->seed, &t_re) : NULL;
    mf_model *re2 = re && !big ? train_model(&pr, pr.clean, pr.n_clean, o->seed + 7, &t_re2) : NULL;
    if (re == NULL)
        return mf_model_destroy(m1), protocol_free(&pr), 1;
    double gap_m1 = forget_gap(m1, re, &pr);
    g_m1 = m1;
    print_row("m1", m1, re, &pr, t_m1, t_re, gap_m1, !big);
    print_row("retrain", re, re, &pr, t_re, t_re, gap_m1, !big);
    if (re2)
        print_row("retrain2", re2, re, &pr, t_re2, t_re, gap_m1, !big);
    char list[256];
    snprintf(list, sizeof(list), "%s", o->methods);
    int rc = 0;
    for (char *save = NULL, *meth = strtok_r(list, ",", &save); meth;
         meth = strtok_r(NULL, ",", &save)) {
        mf_model *mf = mf_model_clone(m1);
        unlearn_request req = {pr.forget,   pr.n_forget,  pr.retain,
                               pr.n_retain, pr.item_mean, pr.item_count};
        unlearn_report rep;
        char err[UL_ERRSTR_SIZE];
        double t0 = ul_clock_mono_s(), c0 = ul_clock_cpu_s();
        if (mf == NULL || unlearn_apply(meth, mf, &req, &o->up, &rep, err, sizeof(err)) != UL_OK) {
            fprintf(stderr, "bench_unlearn: %s: %s\n", meth, mf ? err : "out of memory");
            mf_model_destroy(mf);
            rc = 1;
            continue;
        }
        double secs = ul_clock_mono_s() - t0, cpu = ul_clock_cpu_s() - c0;
        print_row(meth, mf, re, &pr, secs, t_re, gap_m1, !big);
        printf("  %-10s cpu_s %.3f (all threads)\n", meth, cpu);
        unlearn_report_free(&rep);
        mf_model_destroy(mf);
    }
    mf_model_destroy(m1);
    mf_model_destroy(re);
    mf_model_destroy(re2);
    protocol_free(&pr);
    return rc;
}

static int run_synthetic(const bench_opts *o) {
    char err[UL_ERRSTR_SIZE];
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_ratings = o->synthetic;
    so.n_users = (int32_t)(o->synthetic / 150 > 1000 ? o->synthetic / 150 : 1000);
    so.n_items = (int32_t)(o->synthetic / 1000 > 1500 ? o->synthetic / 1000 : 1500);
    so.seed = o->seed;
    dataset *ds = ds_synthetic(&so, err, sizeof(err));
    if (ds == NULL)
        return fprintf(stderr, "bench_unlearn: %s\n", err), 1;
    char label[64];
    snprintf(label, sizeof(label), "synthetic %zu", ds->n_ratings);
    int rc = run(o, label, ds->ratings, ds->n_ratings, ds->n_users, ds->n_items, ds->rating_min,
                 ds->rating_max);
    ds_destroy(ds);
    return rc;
}

static int run_file(const bench_opts *o, const char *path) {
    char err[UL_ERRSTR_SIZE];
    ds_load_opts lo;
    ds_load_opts_init(&lo);
    dataset *ds = ds_load(path, &lo, err, sizeof(err));
    if (ds == NULL)
        return fprintf(stderr, "bench_unlearn: %s\n", err), 1;
    char label[128];
    snprintf(label, sizeof(label), "%s %g%% users / %g%% forgotten", ds->name, o->users_pct,
             o->forget_pct);
    int rc = run(o, label, ds->ratings, ds->n_ratings, ds->n_users, ds->n_items, ds->rating_min,
                 ds->rating_max);
    ds_destroy(ds);
    return rc;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* figures appear as they are measured */
    bench_opts o = {.users_pct = 10, .forget_pct = 50, .seed = 1};
    snprintf(o.methods, sizeof(o.methods), "foldin,cff,cff-paper");
    unlearn_params_init(&o.up);
    int explicit = 0;
    for (int a = 1; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(argv[a], "--data") == 0 && v)
            o.data = v, a++, explicit = 1;
        else if (strcmp(argv[a], "--synthetic") == 0 && v)
            o.synthetic = strtoull(v, NULL, 10), a++, explicit = 1;
        else if (strcmp(argv[a], "--users") == 0 && v)
            o.users_pct = atof(v), a++;
        else if (strcmp(argv[a], "--forget") == 0 && v)
            o.forget_pct = atof(v), a++;
        else if (strcmp(argv[a], "--match-forget") == 0 && v)
            o.match_forget = strtoull(v, NULL, 10), a++;
        else if (strcmp(argv[a], "--methods") == 0 && v)
            snprintf(o.methods, sizeof(o.methods), "%s", v), a++;
        else if (strcmp(argv[a], "--seed") == 0 && v)
            o.seed = strtoull(v, NULL, 10), o.up.seed = o.seed, a++;
        else if (strcmp(argv[a], "--valid") == 0)
            o.valid = 1;
        else if (strcmp(argv[a], "--set") == 0 && v) {
            char err[UL_ERRSTR_SIZE];
            if (unlearn_params_set(&o.up, v, err, sizeof(err)) != UL_OK)
                return fprintf(stderr, "bench_unlearn: --set %s\n", err), 2;
            a++;
        } else if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            printf(
                "usage: bench_unlearn [--data PATH | --synthetic N] [--users PCT] [--forget PCT]\n"
                "                     [--match-forget N] [--methods LIST] [--seed S] [--valid]\n"
                "                     [--set KNOB=VALUE ...]\n"
                "Without --data/--synthetic: ML-1M (../shared/data) at 10%% users / 50%%\n"
                "forgotten, then 20,000,000 synthetic ratings with ~40,000 forgotten.\n"
                "--users/--forget: x and y of the protocol (default 10, 50); --match-forget N:\n"
                "pick users until |F| >= N instead; --methods: unlearn.h names (default\n"
                "foldin,cff,cff-paper); --seed: split, O1 and MF seed (default 1); --valid:\n"
                "score on a validation split carved from training (for tuning); --set: any\n"
                "unlearn_params knob, e.g. --set foldin_sweeps=2 (see core/unlearn.h).\n");
            return 0;
        } else {
            fprintf(stderr, "usage: bench_unlearn [--data PATH | --synthetic N] [--users PCT] "
                            "[--forget PCT] [--match-forget N] [--methods LIST] [--seed S] "
                            "[--valid] [--set KNOB=VALUE]\n");
            return 2;
        }
    }
    char perr[UL_ERRSTR_SIZE];
    if (unlearn_params_check(&o.up, perr, sizeof(perr)) != UL_OK)
        return fprintf(stderr, "bench_unlearn: --set: %s\n", perr), 2;
    if (explicit)
        return o.data ? run_file(&o, o.data) : run_synthetic(&o);
    const char *ml1m = "../shared/data/ml-1m/ratings.csv";
    int rc = 0;
    const char *env = getenv("UNLEARND_DATA_DIR");
    char path[4096];
    if (env != NULL) {
        snprintf(path, sizeof(path), "%s/ml-1m/ratings.csv", env);
        ml1m = path;
    }
    if (access(ml1m, R_OK) != 0) {
        printf("ML-1M not found at %s: skipped\n", ml1m);
    } else {
        rc |= run_file(&o, ml1m);
    }
    o.synthetic = 20000000;
    o.match_forget = 40000; /* ~ |F| of ML-1M at 10% / 50% */
    rc |= run_synthetic(&o);
    return rc;
}
