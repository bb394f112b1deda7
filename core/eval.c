/* eval.c: one cell of the paper's evaluation (see eval.h) and the method
 * registry.
 *
 * DESIGN: a cell builds its shared pieces once (split, O1, F and the
 * affected users' remaining ratings, item means) in an eval_ctx, and caches
 * the models several methods start from (orig, M1, Retrain, SISA) there.
 * Each method is a builder in the `methods` table that fills an
 * eval_ensemble: 1..S borrowed or owned models whose clipped predictions
 * are averaged (or, with `route`, one model answers per user). A new method
 * is one builder and one table row; the metrics are shared. Every metric is
 * computed right after its model is built, so at most the cached models
 * and one method's models are alive at a time. Retrain2 is built right after
 * Retrain: it is the noise floor and the membership audit's reference model.
 * With opts.sequential, each core/unlearn.h method is also run over F in
 * batches (core/sequential.c) and measured after every batch. */
#include "eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mia.h"
#include "protocol.h"
#include "rng.h"
#include "sisa.h"
#include "ul_err.h"

#define EVAL_MAX_MODELS SISA_MAX_SHARDS
#define EVAL_SCORE_BATCH 256         /* affected users scored per sgemm batch, at most */
#define EVAL_SCORE_FLOATS (4u << 20) /* and at most this many scores per buffer (16 MiB) */

typedef struct eval_ensemble {
    const mf_model *models[EVAL_MAX_MODELS];
    int n;
    const int32_t *route; /* NULL, or per user the one model that answers */
    void *owner;          /* freed with owner_free after the metrics */
    void (*owner_free)(void *);
    double train_seconds, unlearn_seconds;
    int shards_touched;
} eval_ensemble;

typedef struct eval_ctx {
    const eval_data *d;
    const eval_opts *o;
    eval_progress_fn progress;
    void *progress_ctx;
    int aborted;
    ul_ratings train, test, faulty;
    proto_forget fs;
    ul_ratings forget;            /* F with the faulty values (as M1 learned them) */
    ul_ratings retain;            /* the affected users' remaining ratings */
    ul_ratings without_f;         /* the training set without F, in training order */
    float *item_mean;             /* per item, over the training ratings outside F */
    int32_t *item_count;          /* per item, ratings in M1's training set (F included) */
    float *ref_pred;              /* retrain's clipped prediction on each entry of F */
    ul_ratings nonmember;         /* the affected users' test ratings: the audit's non-members */
    float *ref_raw_f, *ref_raw_n; /* retrain2's raw predictions on F and on the non-members */
    float *score_f, *score_n;     /* scratch: one model's attack scores */
    int32_t *user_f, *user_n;     /* the user of each member / non-member: the attack's groups */
    mf_model *orig, *m1, *retrain, *retrain2;
    int orig_cached; /* orig belongs to the eval_cache */
    double orig_seconds, m1_seconds, retrain_seconds, retrain2_seconds;
    sisa *sisa;
    /* progress accounting, in units of one training on the whole train set */
    double units_done, units_total, unit_weight;
    const char *method;
    const char *stage;
} eval_ctx;

typedef int (*eval_build_fn)(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                             size_t errstr_size);

typedef struct eval_method {
    const char *name;
    eval_build_fn build;
    int in_default; /* run by `unlearnd eval` without --methods */
    double units;   /* rough cost in trainings, for progress */
    const char *doc;
} eval_method;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- progress ---------------------------------------------------------- */

static int report(eval_ctx *c, int epoch, int epochs) {
    if (c->progress == NULL || c->aborted)
        return c->aborted;
    double done = c->units_done;
    if (epochs > 0)
        done += c->unit_weight * epoch / epochs;
    eval_progress p = {c->units_total > 0 ? done / c->units_total : 0, c->method, c->stage, epoch,
                       epochs};
    if (p.done > 1)
        p.done = 1;
    if (c->progress(c->progress_ctx, &p) != 0)
        c->aborted = 1;
    return c->aborted;
}

static int on_mf_epoch(void *ctx, int epoch, int epochs, double train_rmse) {
    (void)train_rmse;
    return report(ctx, epoch, epochs);
}

static int on_sisa_epoch(void *ctx, int shard, int shards, int epoch, int epochs) {
    eval_ctx *c = ctx;
    (void)shards;
    /* Each shard holds about 1/S of the data: spread one unit over them. */
    double saved = c->units_done;
    c->units_done += (double)shard / c->o->shards;
    int rc = report(c, epoch, epochs);
    c->units_done = saved;
    return rc;
}

static void stage_begin(eval_ctx *c, const char *method, const char *stage, double weight) {
    c->method = method;
    c->stage = stage;
    c->unit_weight = weight;
    report(c, 0, 0);
}

static void stage_end(eval_ctx *c) {
    c->units_done += c->unit_weight;
    c->unit_weight = 0;
}

/* ---- the shared pieces of a cell -------------------------------------- */

static mf_model *train_mf(eval_ctx *c, const ul_rating *r, size_t n, uint64_t seed,
                          const char *method, double *seconds, char *errstr, size_t errstr_size) {
    mf_params p = c->o->mf;
    p.seed = seed;
    stage_begin(c, method, "training", (double)n / (double)(c->train.n ? c->train.n : 1));
    double t0 = now_seconds();
    mf_model *m = mf_train(r, n, c->d->n_users, c->d->n_items, c->d->rating_min, c->d->rating_max,
                           &p, on_mf_epoch, c, errstr, errstr_size);
    *seconds = now_seconds() - t0;
    stage_end(c);
    return m;
}

static int fail_model(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->aborted) {
        ul_set_err(errstr, errstr_size, "evaluation aborted");
        return UL_ERR_ABORTED;
    }
    return UL_ERR_ARG; /* mf_train said why in errstr */
}

/* ---- the orig cache ---------------------------------------------------- */

typedef struct cache_entry {
    const ul_rating *ratings; /* the key: data, split and MF parameters */
    size_t n;
    int32_t n_users, n_items;
    uint64_t seed;
    double test_frac, valid_frac;
    mf_params mf;
    mf_model *orig; /* the value; NULL: free slot */
    double seconds;
    uint64_t used; /* last use, for LRU eviction */
} cache_entry;

struct eval_cache {
    cache_entry e[EVAL_CACHE_ENTRIES];
    uint64_t clock;
};

eval_cache *eval_cache_new(void) {
    return calloc(1, sizeof(eval_cache));
}

void eval_cache_destroy(eval_cache *cache) {
    if (cache == NULL)
        return;
    for (int j = 0; j < EVAL_CACHE_ENTRIES; j++)
        mf_model_destroy(cache->e[j].orig);
    free(cache);
}

/* The key of the context's orig model (the entry's value left empty). */
static cache_entry cache_key(const eval_ctx *c) {
    cache_entry k;
    memset(&k, 0, sizeof(k));
    k.ratings = c->d->ratings;
    k.n = c->d->n;
    k.n_users = c->d->n_users;
    k.n_items = c->d->n_items;
    k.seed = c->o->seed;
    k.test_frac = c->o->test_frac;
    k.valid_frac = c->o->valid_frac;
    memcpy(&k.mf, &c->o->mf, sizeof(k.mf));
    return k;
}

/* A byte-wise key match: padding can only cause a miss, never a false hit. */
static int cache_match(const cache_entry *a, const cache_entry *b) {
    return a->orig != NULL && a->ratings == b->ratings && a->n == b->n &&
           a->n_users == b->n_users && a->n_items == b->n_items && a->seed == b->seed &&
           a->test_frac == b->test_frac && a->valid_frac == b->valid_frac &&
           memcmp(&a->mf, &b->mf, sizeof(a->mf)) == 0;
}

static int cache_lookup(eval_ctx *c) {
    eval_cache *cache = c->o->cache;
    if (cache == NULL)
        return 0;
    cache_entry k = cache_key(c);
    for (int j = 0; j < EVAL_CACHE_ENTRIES; j++) {
        if (cache_match(&cache->e[j], &k)) {
            cache->e[j].used = ++cache->clock;
            c->orig = cache->e[j].orig;
            c->orig_seconds = cache->e[j].seconds;
            c->orig_cached = 1;
            return 1;
        }
    }
    return 0;
}

/* Hand the freshly trained orig to the cache (evicting the least recently
 * used entry); the context then borrows it. */
static void cache_store(eval_ctx *c) {
    eval_cache *cache = c->o->cache;
    if (cache == NULL)
        return;
    int slot = 0;
    for (int j = 1; j < EVAL_CACHE_ENTRIES; j++)
        if (cache->e[j].used < cache->e[slot].used)
            slot = j;
    mf_model_destroy(cache->e[slot].orig);
    cache->e[slot] = cache_key(c);
    cache->e[slot].orig = c->orig;
    cache->e[slot].seconds = c->orig_seconds;
    cache->e[slot].used = ++cache->clock;
    c->orig_cached = 1;
}

static int get_orig(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->orig != NULL || cache_lookup(c))
        return UL_OK;
    c->orig = train_mf(c, c->train.v, c->train.n, c->o->seed, "orig", &c->orig_seconds, errstr,
                       errstr_size);
    if (c->orig == NULL)
        return fail_model(c, errstr, errstr_size);
    cache_store(c);
    return UL_OK;
}

static int get_m1(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->m1 == NULL)
        c->m1 = train_mf(c, c->faulty.v, c->faulty.n, c->o->seed, "faulty", &c->m1_seconds, errstr,
                         errstr_size);
    return c->m1 ? UL_OK : fail_model(c, errstr, errstr_size);
}

static int get_retrain(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->retrain == NULL)
        c->retrain = train_mf(c, c->without_f.v, c->without_f.n, c->o->seed, "retrain",
                              &c->retrain_seconds, errstr, errstr_size);
    return c->retrain ? UL_OK : fail_model(c, errstr, errstr_size);
}

static int get_retrain2(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->retrain2 == NULL)
        c->retrain2 =
            train_mf(c, c->without_f.v, c->without_f.n, c->o->seed + EVAL_NOISE_SEED_OFFSET,
                     "retrain2", &c->retrain2_seconds, errstr, errstr_size);
    return c->retrain2 ? UL_OK : fail_model(c, errstr, errstr_size);
}

static int get_sisa(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->sisa != NULL)
        return UL_OK;
    mf_params p = c->o->mf;
    p.seed = c->o->seed;
    stage_begin(c, "sisa", "training", 1.0);
    c->sisa = sisa_train(c->faulty.v, c->faulty.n, c->d->n_users, c->d->n_items, c->d->rating_min,
                         c->d->rating_max, c->o->shards, rng_derive(c->o->seed, 3), &p,
                         on_sisa_epoch, c, errstr, errstr_size);
    stage_end(c);
    if (c->sisa == NULL)
        return fail_model(c, errstr, errstr_size);
    stage_begin(c, "sisa", "unlearning", 1.0);
    int rc = sisa_unlearn(c->sisa, c->forget.v, c->forget.n, on_sisa_epoch, c, errstr, errstr_size);
    stage_end(c);
    return rc == UL_OK ? UL_OK : fail_model(c, errstr, errstr_size);
}

static int build_without_f(eval_ctx *c) {
    uint8_t *in_f = calloc(c->train.n ? c->train.n : 1, 1);
    c->without_f.v = malloc(sizeof(ul_rating) * (c->train.n ? c->train.n : 1));
    if (in_f == NULL || c->without_f.v == NULL) {
        free(in_f);
        return UL_ERR_NOMEM;
    }
    for (size_t j = 0; j < c->fs.n; j++)
        in_f[c->fs.pos[j]] = 1;
    for (size_t j = 0; j < c->train.n; j++)
        if (!in_f[j])
            c->without_f.v[c->without_f.n++] = c->train.v[j];
    free(in_f);
    return UL_OK;
}

/* Tuning: the test split is dropped unread and a validation share of the
 * training split takes its place (seeded apart from the test split). */
static int hold_out_validation(eval_ctx *c, char *errstr, size_t errstr_size) {
    ul_ratings tr, va;
    int rc = ds_split(c->train.v, c->train.n, c->o->valid_frac, rng_derive(c->o->seed, 5), &tr, &va,
                      errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    ul_ratings_free(&c->train);
    ul_ratings_free(&c->test);
    c->train = tr;
    c->test = va;
    return UL_OK;
}

static int prepare(eval_ctx *c, eval_cell *cell, char *errstr, size_t errstr_size) {
    const eval_data *d = c->d;
    stage_begin(c, "", "splitting the data", 0);
    int rc = ds_split(d->ratings, d->n, c->o->test_frac, rng_derive(c->o->seed, 1), &c->train,
                      &c->test, errstr, errstr_size);
    if (rc == UL_OK && c->o->valid_frac > 0)
        rc = hold_out_validation(c, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    proto_opts po = {c->o->users_pct, c->o->forget_pct, d->rating_max, rng_derive(c->o->seed, 2)};
    rc = proto_make_faulty(c->train.v, c->train.n, d->n_users, &po, &c->faulty, &c->fs, errstr,
                           errstr_size);
    if (rc != UL_OK)
        return rc;
    rc = proto_split(c->faulty.v, c->faulty.n, &c->fs, &c->forget, &c->retain, NULL, errstr,
                     errstr_size);
    if (rc != UL_OK)
        return rc;
    c->item_mean = malloc(sizeof(float) * (size_t)d->n_items);
    c->item_count = calloc((size_t)d->n_items, sizeof(int32_t));
    size_t nf = c->forget.n ? c->forget.n : 1, nt = c->test.n ? c->test.n : 1;
    c->ref_pred = malloc(sizeof(float) * nf);
    c->ref_raw_f = malloc(sizeof(float) * nf);
    c->score_f = malloc(sizeof(float) * nf);
    c->nonmember.v = malloc(sizeof(ul_rating) * nt);
    c->ref_raw_n = malloc(sizeof(float) * nt);
    c->score_n = malloc(sizeof(float) * nt);
    c->user_f = malloc(sizeof(int32_t) * nf);
    c->user_n = malloc(sizeof(int32_t) * nt);
    if (c->item_mean == NULL || c->item_count == NULL || c->ref_pred == NULL ||
        c->ref_raw_f == NULL || c->score_f == NULL || c->nonmember.v == NULL ||
        c->ref_raw_n == NULL || c->score_n == NULL || c->user_f == NULL || c->user_n == NULL ||
        build_without_f(c) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory preparing the cell");
        return UL_ERR_NOMEM;
    }
    rc = proto_item_means(c->train.v, c->train.n, &c->fs, d->n_items,
                          (d->rating_min + d->rating_max) / 2, c->item_mean, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    for (size_t j = 0; j < c->faulty.n; j++)
        c->item_count[c->faulty.v[j].item]++;
    cell->n_train = c->train.n;
    cell->n_test = c->test.n;
    cell->validation = c->o->valid_frac > 0;
    cell->n_forget = c->forget.n;
    cell->n_retain = c->retain.n;
    cell->n_users_affected = c->fs.n_users;
    for (size_t j = 0; j < c->test.n; j++) {
        int32_t u = c->test.v[j].user;
        if (u >= 0 && u < d->n_users && c->fs.affected[u]) {
            c->user_n[c->nonmember.n] = u;
            c->nonmember.v[c->nonmember.n++] = c->test.v[j];
        }
    }
    for (size_t j = 0; j < c->forget.n; j++)
        c->user_f[j] = c->forget.v[j].user;
    cell->n_test_affected = c->nonmember.n;
    cell->n_nonmember = c->nonmember.n;
    return UL_OK;
}

static void ctx_free(eval_ctx *c) {
    ul_ratings_free(&c->train);
    ul_ratings_free(&c->test);
    ul_ratings_free(&c->faulty);
    ul_ratings_free(&c->forget);
    ul_ratings_free(&c->retain);
    ul_ratings_free(&c->without_f);
    proto_forget_free(&c->fs);
    free(c->item_mean);
    free(c->item_count);
    free(c->ref_pred);
    ul_ratings_free(&c->nonmember);
    free(c->ref_raw_f);
    free(c->ref_raw_n);
    free(c->score_f);
    free(c->score_n);
    free(c->user_f);
    free(c->user_n);
    if (!c->orig_cached)
        mf_model_destroy(c->orig);
    mf_model_destroy(c->m1);
    mf_model_destroy(c->retrain);
    mf_model_destroy(c->retrain2);
    sisa_destroy(c->sisa);
}

/* ---- ensembles --------------------------------------------------------- */

static void ens_borrow(eval_ensemble *e, const mf_model *m, double train_s, double unlearn_s) {
    e->models[0] = m;
    e->n = 1;
    e->train_seconds = train_s;
    e->unlearn_seconds = unlearn_s;
}

static void free_model(void *m) {
    mf_model_destroy(m);
}

static void ens_own(eval_ensemble *e, mf_model *m, double train_s, double unlearn_s) {
    ens_borrow(e, m, train_s, unlearn_s);
    e->owner = m;
    e->owner_free = free_model;
}

static void ens_release(eval_ensemble *e) {
    if (e->owner_free != NULL)
        e->owner_free(e->owner);
    memset(e, 0, sizeof(*e));
}

typedef float (*predict_fn)(const mf_model *m, int32_t user, int32_t item);

/* The routed model's prediction, or the mean of the models'. */
static float ens_mean(const eval_ensemble *e, predict_fn predict, int32_t user, int32_t item) {
    if (e->route != NULL)
        return predict(e->models[e->route[user]], user, item);
    double sum = 0;
    for (int j = 0; j < e->n; j++)
        sum += predict(e->models[j], user, item);
    return (float)(sum / e->n);
}

static float ens_predict(const eval_ensemble *e, int32_t user, int32_t item) {
    return ens_mean(e, mf_predict, user, item);
}

/* ---- the methods ------------------------------------------------------- */

static int build_orig(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                      size_t errstr_size) {
    (void)name;
    int rc = get_orig(c, errstr, errstr_size);
    if (rc == UL_OK)
        ens_borrow(e, c->orig, c->orig_seconds, NAN);
    return rc;
}

static int build_faulty(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                        size_t errstr_size) {
    (void)name;
    int rc = get_m1(c, errstr, errstr_size);
    if (rc == UL_OK)
        ens_borrow(e, c->m1, c->m1_seconds, NAN);
    return rc;
}

/* Retrain is its own unlearning: its training time is the unlearning time. */
static int build_retrain(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                         size_t errstr_size) {
    (void)name;
    int rc = get_retrain(c, errstr, errstr_size);
    if (rc == UL_OK)
        ens_borrow(e, c->retrain, 0, c->retrain_seconds);
    return rc;
}

static int build_retrain2(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                          size_t errstr_size) {
    (void)name;
    int rc = get_retrain2(c, errstr, errstr_size);
    if (rc == UL_OK)
        ens_borrow(e, c->retrain2, 0, c->retrain2_seconds);
    return rc;
}

static void ens_sisa(eval_ctx *c, eval_ensemble *e) {
    e->n = sisa_shards(c->sisa);
    for (int sh = 0; sh < e->n; sh++)
        e->models[sh] = sisa_model(c->sisa, sh);
    e->train_seconds = sisa_train_seconds(c->sisa);
    e->unlearn_seconds = sisa_unlearn_seconds(c->sisa);
    e->shards_touched = sisa_touched(c->sisa);
}

static int build_sisa(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                      size_t errstr_size) {
    (void)name;
    int rc = get_sisa(c, errstr, errstr_size);
    if (rc == UL_OK)
        ens_sisa(c, e);
    return rc;
}

/* SISA where only the user's own shard answers (the other shards never saw
 * the user): measures what plain averaging costs. */
static int build_sisa_owner(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                            size_t errstr_size) {
    int rc = build_sisa(c, name, e, errstr, errstr_size);
    if (rc == UL_OK)
        e->route = sisa_user_shards(c->sisa);
    return rc;
}

/* The knobs every unlearning run of the cell uses. */
static void cell_unlearn_params(const eval_ctx *c, unlearn_params *up) {
    if (c->o->unlearn != NULL)
        *up = *c->o->unlearn;
    else
        unlearn_params_init(up);
    up->seed = c->o->seed;
    up->threads = c->o->mf.threads;
}

/* A copy of M1 for `name` to change. */
static mf_model *clone_m1(eval_ctx *c, const char *name, int *rc, char *errstr,
                          size_t errstr_size) {
    *rc = get_m1(c, errstr, errstr_size);
    if (*rc != UL_OK)
        return NULL;
    mf_model *m = mf_model_clone(c->m1);
    if (m == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory copying M1 for %s", name);
        *rc = UL_ERR_NOMEM;
    }
    return m;
}

/* Every method of core/unlearn.h (cff, foldin, ...): M1 cloned, then
 * unlearn_apply() with F, the affected users' remaining ratings, the item
 * means outside F (O2's corrected values) and the item counts. */
static int build_unlearned(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                           size_t errstr_size) {
    int rc;
    mf_model *m = clone_m1(c, name, &rc, errstr, errstr_size);
    if (m == NULL)
        return rc;
    unlearn_params up;
    cell_unlearn_params(c, &up);
    unlearn_request req = {c->forget.v, c->forget.n,  c->retain.v,
                           c->retain.n, c->item_mean, c->item_count};
    stage_begin(c, name, "unlearning", 0.2);
    double t0 = now_seconds();
    rc = unlearn_apply(name, m, &req, &up, NULL, errstr, errstr_size);
    double seconds = now_seconds() - t0;
    stage_end(c);
    if (rc != UL_OK) {
        mf_model_destroy(m);
        return rc;
    }
    ens_own(e, m, c->m1_seconds, seconds);
    return UL_OK;
}

static const eval_method methods[] = {
    {"orig", build_orig, 1, 1.0, "MF on the clean training set (before O1)"},
    {"faulty", build_faulty, 1, 1.0, "M1: MF on the faulty training set (F overwritten)"},
    {"retrain", build_retrain, 1, 1.0, "MF retrained from scratch without F (the reference)"},
    {"sisa", build_sisa, 1, 2.0, "SISA: S user shards, touched shards retrained, mean of all"},
    {"sisa-owner", build_sisa_owner, 1, 2.0,
     "SISA's shards, but only the user's own shard predicts"},
    {"retrain2", build_retrain2, 1, 1.0,
     "Retrain with MF seed + 1000: its forget gap is the noise floor"},
};

#define N_METHODS (sizeof(methods) / sizeof(methods[0]))
#define MAX_UNLEARN_METHODS 16

/* The row every unlearn.h method shares; only its name differs. */
static const eval_method unlearn_row = {NULL, build_unlearned, 1, 0.2,
                                        "M1 unlearned by the core/unlearn.h method of this name"};

static int is_unlearn_method(const char *name) {
    const char *const *names = unlearn_method_names();
    for (size_t j = 0; names[j] != NULL; j++)
        if (strcmp(names[j], name) == 0)
            return 1;
    return 0;
}

static const eval_method *find_method(const char *name) {
    for (size_t j = 0; j < N_METHODS; j++)
        if (strcmp(methods[j].name, name) == 0)
            return &methods[j];
    return is_unlearn_method(name) ? &unlearn_row : NULL;
}

/* The table's names, then unlearn.h's; `only_default` keeps the default
 * ones. The static buffer is rebuilt on each call (same content). */
static const char *const *list_methods(const char **names, int only_default) {
    size_t w = 0;
    for (size_t j = 0; j < N_METHODS; j++)
        if (!only_default || methods[j].in_default)
            names[w++] = methods[j].name;
    const char *const *un = unlearn_method_names();
    for (size_t j = 0; un[j] != NULL && j < MAX_UNLEARN_METHODS; j++)
        names[w++] = un[j];
    names[w] = NULL;
    return names;
}

const char *const *eval_method_names(void) {
    static const char *names[N_METHODS + MAX_UNLEARN_METHODS + 1];
    return list_methods(names, 0);
}

const char *const *eval_default_methods(void) {
    static const char *names[N_METHODS + MAX_UNLEARN_METHODS + 1];
    return list_methods(names, 1);
}

const char *eval_method_doc(const char *name) {
    const eval_method *m = find_method(name);
    if (m == &unlearn_row && unlearn_method_doc(name) != NULL)
        return unlearn_method_doc(name);
    return m ? m->doc : NULL;
}

/* ---- metrics ----------------------------------------------------------- */

static void rmse_split(const eval_ctx *c, const eval_ensemble *e, eval_result *r) {
    double se[2] = {0, 0};
    size_t cnt[2] = {0, 0};
    for (size_t j = 0; j < c->test.n; j++) {
        const ul_rating *t = &c->test.v[j];
        double err = t->value - ens_predict(e, t->user, t->item);
        int a = c->fs.affected[t->user] ? 1 : 0;
        se[a] += err * err;
        cnt[a]++;
    }
    size_t n = cnt[0] + cnt[1];
    r->rmse_test = n ? sqrt((se[0] + se[1]) / (double)n) : NAN;
    r->rmse_affected = cnt[1] ? sqrt(se[1] / (double)cnt[1]) : NAN;
    r->rmse_unaffected = cnt[0] ? sqrt(se[0] / (double)cnt[0]) : NAN;
}

static void forget_metrics(const eval_ctx *c, const eval_ensemble *e, eval_result *r) {
    double gap = 0, sum = 0;
    for (size_t j = 0; j < c->forget.n; j++) {
        const ul_rating *f = &c->forget.v[j];
        float p = ens_predict(e, f->user, f->item);
        gap += fabs((double)p - c->ref_pred[j]);
        sum += p;
    }
    double n = (double)c->forget.n;
    r->forget_gap = c->forget.n ? gap / n : NAN;
    r->mean_pred_forget = c->forget.n ? sum / n : NAN;
}

/* The raw (unclipped) score of the ensemble, as exposure ranks by: the
 * attacker's view of a pair. */
static float ens_raw(const eval_ensemble *e, int32_t user, int32_t item) {
    return ens_mean(e, mf_predict_raw, user, item);
}

static double ens_item_bias(const eval_ensemble *e, int32_t user, int32_t item) {
    if (e->route != NULL)
        return e->models[e->route[user]]->item_bias[item];
    double sum = 0;
    for (int j = 0; j < e->n; j++)
        sum += e->models[j]->item_bias[item];
    return sum / e->n;
}

/* The F-weighted mean over F's items of each item's mean raw score over the
 * unaffected users, mu + mean(b_u) + b_i + mean(p_u).q_i: what F left in
 * the items for the users who asked for nothing, free of the bias gauge
 * (b_i + c, b_u - c predict the same). */
static double model_item_score(const eval_ctx *c, const mf_model *m, double *pmean) {
    size_t k = (size_t)m->k, n = 0;
    double bu = 0;
    memset(pmean, 0, k * sizeof(double));
    for (int32_t u = 0; u < m->n_users; u++) {
        if (c->fs.affected[u])
            continue;
        n++;
        bu += m->user_bias[u];
        for (size_t d = 0; d < k; d++)
            pmean[d] += m->P[(size_t)u * k + d];
    }
    if (n == 0)
        return NAN;
    for (size_t d = 0; d < k; d++)
        pmean[d] /= (double)n;
    double base = m->global_mean + bu / (double)n, sum = 0;
    for (size_t j = 0; j < c->forget.n; j++) {
        int32_t i = c->forget.v[j].item;
        double s = base + m->item_bias[i];
        for (size_t d = 0; d < k; d++)
            s += pmean[d] * m->Q[(size_t)i * k + d];
        sum += s;
    }
    return c->forget.n ? sum / (double)c->forget.n : NAN;
}

static int item_score(const eval_ctx *c, const eval_ensemble *e, double *out) {
    double *pmean = malloc(sizeof(double) * (size_t)e->models[0]->k), sum = 0;
    if (pmean == NULL)
        return UL_ERR_NOMEM;
    for (int j = 0; j < e->n; j++) /* routed or averaged: every shard serves its users */
        sum += model_item_score(c, e->models[j], pmean);
    free(pmean);
    *out = sum / e->n;
    return UL_OK;
}

/* The membership-inference audit (docs/eval.md): members are F's pairs,
 * non-members the affected users' test pairs, compared within each user
 * (one threshold per user); the loss-threshold attack scores a pair by the
 * raw prediction, the calibrated one by that minus retrain2's. Also the
 * F-weighted mean item bias. */
static int audit_metrics(const eval_ctx *c, const eval_ensemble *e, eval_result *r) {
    double bias = 0;
    for (size_t j = 0; j < c->forget.n; j++) {
        const ul_rating *f = &c->forget.v[j];
        c->score_f[j] = ens_raw(e, f->user, f->item);
        bias += ens_item_bias(e, f->user, f->item);
    }
    for (size_t j = 0; j < c->nonmember.n; j++)
        c->score_n[j] = ens_raw(e, c->nonmember.v[j].user, c->nonmember.v[j].item);
    r->item_bias_forget = c->forget.n ? bias / (double)c->forget.n : NAN;
    int rc = item_score(c, e, &r->item_score_forget);
    if (rc == UL_OK)
        rc = mia_auc(c->score_f, c->user_f, c->forget.n, c->score_n, c->user_n, c->nonmember.n,
                     &r->mia_auc);
    for (size_t j = 0; j < c->forget.n; j++)
        c->score_f[j] -= c->ref_raw_f[j];
    for (size_t j = 0; j < c->nonmember.n; j++)
        c->score_n[j] -= c->ref_raw_n[j];
    if (rc == UL_OK)
        rc = mia_auc(c->score_f, c->user_f, c->forget.n, c->score_n, c->user_n, c->nonmember.n,
                     &r->mia_auc_ref);
    return rc;
}

/* Per affected user (index a into fs.users), a CSR list of items. */
typedef struct user_items {
    size_t *start; /* n_users_affected + 1 */
    int32_t *items;
} user_items;

static void user_items_free(user_items *ui) {
    free(ui->start);
    free(ui->items);
}

static int user_items_build(const ul_ratings *rs, const int32_t *slot, size_t n_slots,
                            user_items *ui) {
    ui->start = calloc(n_slots + 1, sizeof(size_t));
    ui->items = malloc(sizeof(int32_t) * (rs->n ? rs->n : 1));
    size_t *fill = malloc(sizeof(size_t) * (n_slots + 1));
    if (ui->start == NULL || ui->items == NULL || fill == NULL) {
        free(fill);
        return UL_ERR_NOMEM;
    }
    for (size_t j = 0; j < rs->n; j++)
        ui->start[slot[rs->v[j].user] + 1]++;
    for (size_t a = 0; a < n_slots; a++)
        ui->start[a + 1] += ui->start[a];
    memcpy(fill, ui->start, sizeof(size_t) * (n_slots + 1));
    for (size_t j = 0; j < rs->n; j++)
        ui->items[fill[slot[rs->v[j].user]]++] = rs->v[j].item;
    free(fill);
    return UL_OK;
}

/* Scores of the ensemble for users[0..nb) into out (nb x n_items): the
 * mean of the models' unclipped scores (or the routed model's). */
static int ens_scores(const eval_ensemble *e, const int32_t *users, size_t nb, int32_t n_items,
                      float *tmp, float *out) {
    size_t row = (size_t)n_items;
    memset(out, 0, sizeof(float) * nb * row);
    for (int m = 0; m < e->n; m++) {
        if (mf_score_users(e->models[m], users, nb, tmp) != 0)
            return UL_ERR_ARG;
        for (size_t a = 0; a < nb; a++) {
            if (e->route != NULL && e->route[users[a]] != m)
                continue;
            float w = e->route != NULL ? 1.0f : 1.0f / (float)e->n;
            for (size_t i = 0; i < row; i++)
                out[a * row + i] += w * tmp[a * row + i];
        }
    }
    return UL_OK;
}

/* Mark in `in_top` the top_k items of `scores`, skipping excluded items;
 * ties go to the lower item id. `best` has room for top_k ids. Returns how
 * many were marked (fewer than top_k when few items are left). */
static int mark_top(const float *scores, int32_t n_items, const uint8_t *exclude, int top_k,
                    int32_t *best, uint8_t *in_top) {
    int n = 0;
    for (int32_t i = 0; i < n_items; i++) {
        if (exclude[i])
            continue;
        if (n == top_k && scores[i] <= scores[best[n - 1]])
            continue;
        int pos = n < top_k ? n++ : top_k - 1;
        while (pos > 0 && scores[best[pos - 1]] < scores[i]) {
            best[pos] = best[pos - 1];
            pos--;
        }
        best[pos] = i;
    }
    for (int j = 0; j < n; j++)
        in_top[best[j]] = 1;
    return n;
}

typedef struct exposure_buf {
    size_t batch;  /* users per sgemm batch */
    int32_t *slot; /* dense user -> index into fs.users, or -1 */
    user_items keep, gone;
    float *tmp, *scores;
    uint8_t *exclude, *in_top;
    int32_t *best;
} exposure_buf;

static void exposure_buf_free(exposure_buf *b) {
    free(b->slot);
    user_items_free(&b->keep);
    user_items_free(&b->gone);
    free(b->tmp);
    free(b->scores);
    free(b->exclude);
    free(b->in_top);
    free(b->best);
}

static int exposure_buf_init(const eval_ctx *c, exposure_buf *b) {
    size_t n_items = (size_t)c->d->n_items, batch = EVAL_SCORE_FLOATS / n_items;
    if (batch > EVAL_SCORE_BATCH)
        batch = EVAL_SCORE_BATCH;
    if (batch < 1)
        batch = 1;
    memset(b, 0, sizeof(*b));
    b->batch = batch;
    b->slot = malloc(sizeof(int32_t) * (size_t)c->d->n_users);
    b->tmp = malloc(sizeof(float) * batch * n_items);
    b->scores = malloc(sizeof(float) * batch * n_items);
    b->exclude = calloc(n_items, 1);
    b->in_top = calloc(n_items, 1);
    b->best = malloc(sizeof(int32_t) * (size_t)c->o->top_k);
    if (!b->slot || !b->tmp || !b->scores || !b->exclude || !b->in_top || !b->best)
        return UL_ERR_NOMEM;
    for (int32_t u = 0; u < c->d->n_users; u++)
        b->slot[u] = -1;
    for (size_t a = 0; a < c->fs.n_users; a++)
        b->slot[c->fs.users[a]] = (int32_t)a;
    if (user_items_build(&c->retain, b->slot, c->fs.n_users, &b->keep) != UL_OK ||
        user_items_build(&c->forget, b->slot, c->fs.n_users, &b->gone) != UL_OK)
        return UL_ERR_NOMEM;
    return UL_OK;
}

/* Hits of user slot `a` (scores in `row`): F's items in its top-K. */
static size_t user_hits(const eval_ctx *c, exposure_buf *b, size_t a, const float *row) {
    const user_items *keep = &b->keep, *gone = &b->gone;
    for (size_t j = keep->start[a]; j < keep->start[a + 1]; j++)
        b->exclude[keep->items[j]] = 1;
    int n_top = mark_top(row, c->d->n_items, b->exclude, c->o->top_k, b->best, b->in_top);
    size_t hits = 0;
    for (size_t j = gone->start[a]; j < gone->start[a + 1]; j++)
        hits += b->in_top[gone->items[j]];
    for (size_t j = keep->start[a]; j < keep->start[a + 1]; j++)
        b->exclude[keep->items[j]] = 0;
    for (int j = 0; j < n_top; j++)
        b->in_top[b->best[j]] = 0;
    return hits;
}

static int topk_exposure(const eval_ctx *c, const eval_ensemble *e, double *out) {
    exposure_buf b;
    int rc = exposure_buf_init(c, &b);
    size_t hits = 0, row = (size_t)c->d->n_items;
    for (size_t a0 = 0; rc == UL_OK && a0 < c->fs.n_users; a0 += b.batch) {
        size_t nb = c->fs.n_users - a0;
        if (nb > b.batch)
            nb = b.batch;
        rc = ens_scores(e, c->fs.users + a0, nb, c->d->n_items, b.tmp, b.scores);
        for (size_t a = 0; rc == UL_OK && a < nb; a++)
            hits += user_hits(c, &b, a0 + a, b.scores + a * row);
    }
    exposure_buf_free(&b);
    *out = c->forget.n ? (double)hits / (double)c->forget.n : NAN;
    return rc;
}

static double frob_diff(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t j = 0; j < n; j++) {
        double d = (double)a[j] - b[j];
        s += d * d;
    }
    return sqrt(s);
}

static int latent_distances(eval_ctx *c, const eval_ensemble *e, eval_result *r, char *errstr,
                            size_t errstr_size) {
    r->l1_P = r->l2_P = r->l1_Q = r->l2_Q = NAN;
    if (e->n != 1 || e->route != NULL)
        return UL_OK;
    int rc = get_m1(c, errstr, errstr_size);
    if (rc == UL_OK)
        rc = get_orig(c, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    const mf_model *m = e->models[0];
    size_t np = (size_t)m->n_users * (size_t)m->k, nq = (size_t)m->n_items * (size_t)m->k;
    r->l1_P = frob_diff(c->m1->P, m->P, np);
    r->l2_P = frob_diff(c->orig->P, m->P, np);
    r->l1_Q = frob_diff(c->m1->Q, m->Q, nq);
    r->l2_Q = frob_diff(c->orig->Q, m->Q, nq);
    return UL_OK;
}

/* The message for a failed audit: a non-finite score means the model did. */
static int audit_failed(int rc, const char *name, char *errstr, size_t errstr_size) {
    if (rc == UL_ERR_ARG)
        ul_set_err(errstr, errstr_size, "%s: the model predicts non-finite scores (it diverged)",
                   name);
    else if (rc != UL_OK)
        ul_set_err(errstr, errstr_size, "out of memory in the membership audit");
    return rc;
}

static int measure(eval_ctx *c, const char *name, const eval_ensemble *e, eval_result *r,
                   char *errstr, size_t errstr_size) {
    stage_begin(c, name, "scoring", 0);
    snprintf(r->method, sizeof(r->method), "%s", name);
    r->n_models = e->n;
    r->train_seconds = e->train_seconds;
    r->unlearn_seconds = e->unlearn_seconds;
    r->seconds = e->train_seconds + (isnan(e->unlearn_seconds) ? 0 : e->unlearn_seconds);
    r->shards_touched = e->shards_touched;
    rmse_split(c, e, r);
    forget_metrics(c, e, r);
    if (topk_exposure(c, e, &r->topk_exposure) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory scoring the affected users");
        return UL_ERR_NOMEM;
    }
    int rc = audit_failed(audit_metrics(c, e, r), name, errstr, errstr_size);
    return rc == UL_OK ? latent_distances(c, e, r, errstr, errstr_size) : rc;
}

/* ---- sequential unlearning -------------------------------------------- */

typedef struct seq_run {
    eval_ctx *c;
    const char *name;
    eval_seq_point *trace;
    int failed; /* a batch's audit failed: its code */
} seq_run;

static int on_seq_batch(void *ctx, int batch, int batches, const mf_model *m) {
    seq_run *sr = ctx;
    eval_ensemble e;
    eval_result r;
    memset(&e, 0, sizeof(e));
    ens_borrow(&e, m, 0, 0);
    rmse_split(sr->c, &e, &r);
    forget_metrics(sr->c, &e, &r);
    int rc = audit_metrics(sr->c, &e, &r);
    if (rc != UL_OK) {
        sr->failed = rc;
        return 1;
    }
    sr->trace[batch] = (eval_seq_point){r.rmse_test, r.forget_gap, r.mia_auc, r.item_bias_forget,
                                        r.item_score_forget};
    return report(sr->c, batch + 1, batches);
}

/* `name` (a core/unlearn.h method) over F in opts.sequential batches, one
 * after another from M1; the final model measured like any other, with the
 * per-batch trace. */
static int run_sequential(eval_ctx *c, const char *name, eval_result *r, char *errstr,
                          size_t errstr_size) {
    int rc, n = c->o->sequential;
    seq_run sr = {c, name, calloc((size_t)n, sizeof(eval_seq_point)), 0};
    mf_model *m = clone_m1(c, name, &rc, errstr, errstr_size);
    if (m == NULL || sr.trace == NULL) {
        mf_model_destroy(m);
        free(sr.trace);
        if (m == NULL)
            return rc;
        ul_set_err(errstr, errstr_size, "out of memory for the sequential trace");
        return UL_ERR_NOMEM;
    }
    unlearn_params up;
    cell_unlearn_params(c, &up);
    seq_opts so = {n, c->o->sequential_by, rng_derive(c->o->seed, 4)};
    double seconds = 0;
    stage_begin(c, name, "sequential unlearning", 0.2 + 0.01 * n);
    rc = seq_unlearn(name, m, c->faulty.v, c->faulty.n, c->d->n_items, &c->fs, &so, &up,
                     on_seq_batch, &sr, &seconds, errstr, errstr_size);
    stage_end(c);
    if (sr.failed) {
        rc = audit_failed(sr.failed, name, errstr, errstr_size);
    } else if (rc == UL_ERR_ABORTED) {
        rc = fail_model(c, errstr, errstr_size);
    }
    eval_ensemble e;
    memset(&e, 0, sizeof(e));
    ens_own(&e, m, c->m1_seconds, seconds);
    if (rc == UL_OK)
        rc = measure(c, name, &e, r, errstr, errstr_size);
    ens_release(&e);
    if (rc != UL_OK) {
        free(sr.trace);
        return rc;
    }
    r->sequential = n;
    r->trace = sr.trace;
    r->n_trace = (size_t)n;
    return UL_OK;
}

/* ---- a cell ------------------------------------------------------------ */

static int check_opts(const eval_data *d, const eval_opts *o, const char *const *names,
                      size_t n_names, char *errstr, size_t errstr_size) {
    if (d->n == 0 || d->n_users <= 0 || d->n_items <= 0) {
        ul_set_err(errstr, errstr_size, "the dataset is empty");
        return UL_ERR_ARG;
    }
    if (!(o->test_frac > 0 && o->test_frac < 1)) {
        ul_set_err(errstr, errstr_size, "test share %g is outside (0, 1)", o->test_frac);
        return UL_ERR_ARG;
    }
    if (!(o->valid_frac >= 0 && o->valid_frac < 1)) {
        ul_set_err(errstr, errstr_size, "validation share %g is outside [0, 1)", o->valid_frac);
        return UL_ERR_ARG;
    }
    if (o->shards < 1 || o->shards > SISA_MAX_SHARDS || o->top_k < 1) {
        ul_set_err(errstr, errstr_size, "shards must be in 1..%d and top-K >= 1", SISA_MAX_SHARDS);
        return UL_ERR_ARG;
    }
    if (n_names == 0) {
        ul_set_err(errstr, errstr_size, "no method to evaluate");
        return UL_ERR_ARG;
    }
    if (o->sequential < 0 || o->sequential > SEQ_MAX_BATCHES ||
        (o->sequential_by != SEQ_BY_RATINGS && o->sequential_by != SEQ_BY_USERS)) {
        ul_set_err(errstr, errstr_size, "sequential batches must be in 0..%d (by ratings or users)",
                   SEQ_MAX_BATCHES);
        return UL_ERR_ARG;
    }
    for (size_t j = 0; j < n_names; j++) {
        if (find_method(names[j]) == NULL) {
            ul_set_err(errstr, errstr_size, "unknown method '%s'", names[j]);
            return UL_ERR_ARG;
        }
    }
    return mf_params_check(&o->mf, errstr, errstr_size);
}

/* Work units of the cell: orig, M1, Retrain and retrain2 (always built:
 * the distances, the reference, the noise floor) plus each other listed
 * method's own cost, SISA counted once. */
static double plan_units(const char *const *names, size_t n_names, int sequential) {
    double units = 4;
    int sisa_counted = 0;
    for (size_t j = 0; j < n_names; j++) {
        const eval_method *m = find_method(names[j]);
        int is_sisa = m->build == build_sisa || m->build == build_sisa_owner;
        int base = m->build == build_orig || m->build == build_faulty ||
                   m->build == build_retrain || m->build == build_retrain2;
        if (base || (is_sisa && sisa_counted))
            continue;
        sisa_counted |= is_sisa;
        units += m->units;
        if (sequential > 0 && m->build == build_unlearned)
            units += 0.2 + 0.01 * sequential;
    }
    return units;
}

/* Retrain (the gap's reference) and retrain2 (its noise floor, the audit's
 * reference model) first, with their predictions on F and the
 * non-members. */
static int build_references(eval_ctx *c, eval_cell *cell, char *errstr, size_t errstr_size) {
    int rc = get_retrain(c, errstr, errstr_size);
    if (rc == UL_OK)
        rc = get_retrain2(c, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    for (size_t j = 0; j < c->forget.n; j++) {
        const ul_rating *f = &c->forget.v[j];
        c->ref_pred[j] = mf_predict(c->retrain, f->user, f->item);
        c->ref_raw_f[j] = mf_predict_raw(c->retrain2, f->user, f->item);
    }
    for (size_t j = 0; j < c->nonmember.n; j++)
        c->ref_raw_n[j] =
            mf_predict_raw(c->retrain2, c->nonmember.v[j].user, c->nonmember.v[j].item);
    eval_ensemble e;
    eval_result r;
    memset(&e, 0, sizeof(e));
    ens_borrow(&e, c->retrain2, 0, 0);
    forget_metrics(c, &e, &r);
    cell->noise_floor = r.forget_gap;
    return UL_OK;
}

static int run_methods(eval_ctx *c, const char *const *names, size_t n_names, eval_cell *cell,
                       char *errstr, size_t errstr_size) {
    int rc = build_references(c, cell, errstr, errstr_size);
    for (size_t j = 0; j < n_names && rc == UL_OK; j++) {
        const eval_method *m = find_method(names[j]);
        eval_ensemble e;
        memset(&e, 0, sizeof(e));
        rc = m->build(c, names[j], &e, errstr, errstr_size);
        if (rc == UL_OK)
            rc = measure(c, names[j], &e, &cell->results[cell->n_results], errstr, errstr_size);
        ens_release(&e);
        if (rc == UL_OK)
            cell->n_results++;
    }
    for (size_t j = 0; j < n_names && rc == UL_OK && c->o->sequential > 0; j++) {
        if (find_method(names[j])->build != build_unlearned)
            continue;
        rc = run_sequential(c, names[j], &cell->results[cell->n_results], errstr, errstr_size);
        if (rc == UL_OK)
            cell->n_results++;
    }
    return rc;
}

int eval_run_cell(const eval_data *data, const eval_opts *opts, const char *const *names,
                  size_t n_names, eval_progress_fn progress, void *progress_ctx, eval_cell *cell,
                  char *errstr, size_t errstr_size) {
    memset(cell, 0, sizeof(*cell));
    snprintf(cell->dataset, sizeof(cell->dataset), "%s", data->name ? data->name : "data");
    cell->users_pct = opts->users_pct;
    cell->forget_pct = opts->forget_pct;
    cell->seed = opts->seed;
    cell->noise_floor = NAN;
    int rc = check_opts(data, opts, names, n_names, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    cell->results = calloc(2 * n_names, sizeof(eval_result)); /* one-shot, then sequential */
    if (cell->results == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    eval_ctx c;
    memset(&c, 0, sizeof(c));
    c.d = data;
    c.o = opts;
    c.progress = progress;
    c.progress_ctx = progress_ctx;
    c.units_total = plan_units(names, n_names, opts->sequential);
    rc = prepare(&c, cell, errstr, errstr_size);
    if (rc == UL_OK)
        rc = run_methods(&c, names, n_names, cell, errstr, errstr_size);
    if (rc == UL_OK) {
        c.units_done = c.units_total;
        stage_begin(&c, "", "done", 0);
    }
    ctx_free(&c);
    return rc;
}

void eval_cell_free(eval_cell *cell) {
    if (cell == NULL)
        return;
    for (size_t j = 0; cell->results != NULL && j < cell->n_results; j++)
        free(cell->results[j].trace);
    free(cell->results);
    cell->results = NULL;
    cell->n_results = 0;
}

void eval_opts_init(eval_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->users_pct = 10;
    opts->forget_pct = 50;
    opts->seed = 42;
    opts->test_frac = 0.2;
    mf_params_init(&opts->mf);
    opts->shards = 5;
    opts->top_k = 10;
    opts->unlearn = NULL;
    opts->cache = NULL;
    opts->sequential = 0;
    opts->sequential_by = SEQ_BY_RATINGS;
}

/* ---- JSON -------------------------------------------------------------- */

typedef struct jbuf {
    char *p;
    size_t size, len;
    int overflow;
} jbuf;

static void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void jb_printf(jbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->size ? b->size - b->len : 0;
    int n = vsnprintf(b->p + (b->len < b->size ? b->len : 0), room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        b->overflow = 1;
    else
        b->len += (size_t)n;
}

static void jb_string(jbuf *b, const char *key, const char *s) {
    jb_printf(b, "\"%s\":\"", key);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            jb_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            jb_printf(b, "\\u%04x", ch);
        else
            jb_printf(b, "%c", ch);
    }
    jb_printf(b, "\",");
}

static void jb_num(jbuf *b, const char *key, double v, int last) {
    if (isfinite(v))
        jb_printf(b, "\"%s\":%.6g%s", key, v, last ? "" : ",");
    else
        jb_printf(b, "\"%s\":null%s", key, last ? "" : ",");
}

/* "key":[v0,v1,...] over the trace's field at `offset`. */
static void jb_trace(jbuf *b, const char *key, const eval_result *r, size_t offset, int last) {
    jb_printf(b, "\"%s\":[", key);
    for (size_t j = 0; j < r->n_trace; j++) {
        double v;
        memcpy(&v, (const char *)&r->trace[j] + offset, sizeof(v));
        if (isfinite(v))
            jb_printf(b, "%s%.6g", j ? "," : "", v);
        else
            jb_printf(b, "%snull", j ? "," : "");
    }
    jb_printf(b, "]%s", last ? "" : ",");
}

int eval_result_json(const eval_cell *cell, const eval_result *r, char *buf, size_t size) {
    jbuf b = {buf, size, 0, 0};
    jb_printf(&b, "{");
    jb_string(&b, "dataset", cell->dataset);
    jb_num(&b, "users_pct", cell->users_pct, 0);
    jb_num(&b, "forget_pct", cell->forget_pct, 0);
    jb_string(&b, "method", r->method);
    jb_printf(&b, "\"sequential\":%d,", r->sequential);
    jb_printf(&b, "\"seed\":%llu,", (unsigned long long)cell->seed);
    jb_num(&b, "rmse_test", r->rmse_test, 0);
    jb_num(&b, "rmse_affected", r->rmse_affected, 0);
    jb_num(&b, "rmse_unaffected", r->rmse_unaffected, 0);
    jb_num(&b, "forget_gap", r->forget_gap, 0);
    jb_num(&b, "mean_pred_forget", r->mean_pred_forget, 0);
    jb_num(&b, "topk_exposure", r->topk_exposure, 0);
    jb_num(&b, "mia_auc", r->mia_auc, 0);
    jb_num(&b, "mia_auc_ref", r->mia_auc_ref, 0);
    jb_num(&b, "item_bias_forget", r->item_bias_forget, 0);
    jb_num(&b, "item_score_forget", r->item_score_forget, 0);
    jb_num(&b, "seconds", r->seconds, 0);
    jb_num(&b, "unlearn_seconds", r->unlearn_seconds, 0);
    jb_num(&b, "l1_P", r->l1_P, 0);
    jb_num(&b, "l2_P", r->l2_P, 0);
    jb_num(&b, "l1_Q", r->l1_Q, 0);
    jb_num(&b, "l2_Q", r->l2_Q, r->n_trace == 0);
    if (r->n_trace > 0) {
        jb_trace(&b, "trace_rmse", r, offsetof(eval_seq_point, rmse_test), 0);
        jb_trace(&b, "trace_gap", r, offsetof(eval_seq_point, forget_gap), 0);
        jb_trace(&b, "trace_mia", r, offsetof(eval_seq_point, mia_auc), 0);
        jb_trace(&b, "trace_item_bias", r, offsetof(eval_seq_point, item_bias_forget), 0);
        jb_trace(&b, "trace_item_score", r, offsetof(eval_seq_point, item_score_forget), 1);
    }
    jb_printf(&b, "}");
    return b.overflow ? -1 : (int)b.len;
}

size_t eval_result_json_size(const eval_result *r) {
    return 2048 + 5 * 16 * r->n_trace; /* %.6g with sign and exponent fits 15 */
}
