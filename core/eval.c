/* eval.c: one cell of the paper's evaluation (see eval.h): its shared
 * pieces, the orig cache, progress, the cell's flow and the JSON of a
 * result. The methods are in eval_methods.c, the metrics and the sequential
 * runs in eval_metrics.c.
 *
 * DESIGN: a cell builds its shared pieces once (split, O1, F and the
 * affected users' remaining ratings, item means) in an eval_ctx, and caches
 * the models several methods start from (orig, M1, Retrain, SISA) there.
 * Retrain2 is built right after Retrain: it is the noise floor and the
 * membership audit's reference model. With opts.sequential, each
 * core/unlearn.h method is also run over F in batches (core/sequential.c)
 * and measured after every batch. */
#include "eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval_int.h"
#include "protocol.h"
#include "rng.h"
#include "sisa.h"
#include "ul_err.h"

double eval_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- progress ---------------------------------------------------------- */

int eval_report(eval_ctx *c, int epoch, int epochs) {
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
    return eval_report(ctx, epoch, epochs);
}

static int on_sisa_epoch(void *ctx, int shard, int shards, int epoch, int epochs) {
    eval_ctx *c = ctx;
    (void)shards;
    /* Each shard holds about 1/S of the data: spread one unit over them. */
    double saved = c->units_done;
    c->units_done += (double)shard / c->o->shards;
    int rc = eval_report(c, epoch, epochs);
    c->units_done = saved;
    return rc;
}

void eval_stage_begin(eval_ctx *c, const char *method, const char *stage, double weight) {
    c->method = method;
    c->stage = stage;
    c->unit_weight = weight;
    eval_report(c, 0, 0);
}

void eval_stage_end(eval_ctx *c) {
    c->units_done += c->unit_weight;
    c->unit_weight = 0;
}

/* ---- the shared pieces of a cell -------------------------------------- */

static mf_model *train_mf(eval_ctx *c, const ul_rating *r, size_t n, uint64_t seed,
                          const char *method, double *seconds, char *errstr, size_t errstr_size) {
    mf_params p = c->o->mf;
    p.seed = seed;
    eval_stage_begin(c, method, "training", (double)n / (double)(c->train.n ? c->train.n : 1));
    double t0 = eval_now_seconds();
    mf_model *m = mf_train(r, n, c->d->n_users, c->d->n_items, c->d->rating_min, c->d->rating_max,
                           &p, on_mf_epoch, c, errstr, errstr_size);
    *seconds = eval_now_seconds() - t0;
    eval_stage_end(c);
    return m;
}

int eval_fail_model(eval_ctx *c, char *errstr, size_t errstr_size) {
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

int eval_get_orig(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->orig != NULL || cache_lookup(c))
        return UL_OK;
    c->orig = train_mf(c, c->train.v, c->train.n, c->o->seed, "orig", &c->orig_seconds, errstr,
                       errstr_size);
    if (c->orig == NULL)
        return eval_fail_model(c, errstr, errstr_size);
    cache_store(c);
    return UL_OK;
}

int eval_get_m1(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->m1 == NULL)
        c->m1 = train_mf(c, c->faulty.v, c->faulty.n, c->o->seed, "faulty", &c->m1_seconds, errstr,
                         errstr_size);
    return c->m1 ? UL_OK : eval_fail_model(c, errstr, errstr_size);
}

int eval_get_retrain(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->retrain == NULL)
        c->retrain = train_mf(c, c->without_f.v, c->without_f.n, c->o->seed, "retrain",
                              &c->retrain_seconds, errstr, errstr_size);
    return c->retrain ? UL_OK : eval_fail_model(c, errstr, errstr_size);
}

int eval_get_retrain2(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->retrain2 == NULL)
        c->retrain2 =
            train_mf(c, c->without_f.v, c->without_f.n, c->o->seed + EVAL_NOISE_SEED_OFFSET,
                     "retrain2", &c->retrain2_seconds, errstr, errstr_size);
    return c->retrain2 ? UL_OK : eval_fail_model(c, errstr, errstr_size);
}

int eval_get_sisa(eval_ctx *c, char *errstr, size_t errstr_size) {
    if (c->sisa != NULL)
        return UL_OK;
    mf_params p = c->o->mf;
    p.seed = c->o->seed;
    eval_stage_begin(c, "sisa", "training", 1.0);
    c->sisa = sisa_train(c->faulty.v, c->faulty.n, c->d->n_users, c->d->n_items, c->d->rating_min,
                         c->d->rating_max, c->o->shards, rng_derive(c->o->seed, 3), &p,
                         on_sisa_epoch, c, errstr, errstr_size);
    eval_stage_end(c);
    if (c->sisa == NULL)
        return eval_fail_model(c, errstr, errstr_size);
    eval_stage_begin(c, "sisa", "unlearning", 1.0);
    int rc = sisa_unlearn(c->sisa, c->forget.v, c->forget.n, on_sisa_epoch, c, errstr, errstr_size);
    eval_stage_end(c);
    return rc == UL_OK ? UL_OK : eval_fail_model(c, errstr, errstr_size);
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
    eval_stage_begin(c, "", "splitting the data", 0);
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
        if (eval_find_method(names[j]) == NULL) {
            ul_set_err(errstr, errstr_size, "unknown method '%s'", names[j]);
            return UL_ERR_ARG;
        }
    }
    return mf_params_check(&o->mf, errstr, errstr_size);
}

/* Work units of the cell: orig, M1, Retrain and retrain2 (always built:
 * the distances, the reference, the noise floor) plus each other listed
 * method's own cost, SISA counted once. */

/* Retrain (the gap's reference) and retrain2 (its noise floor, the audit's
 * reference model) first, with their predictions on F and the
 * non-members. */
static int build_references(eval_ctx *c, eval_cell *cell, char *errstr, size_t errstr_size) {
    int rc = eval_get_retrain(c, errstr, errstr_size);
    if (rc == UL_OK)
        rc = eval_get_retrain2(c, errstr, errstr_size);
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
    eval_ens_borrow(&e, c->retrain2, 0, 0);
    eval_forget_metrics(c, &e, &r);
    cell->noise_floor = r.forget_gap;
    return UL_OK;
}

static int run_methods(eval_ctx *c, const char *const *names, size_t n_names, eval_cell *cell,
                       char *errstr, size_t errstr_size) {
    int rc = build_references(c, cell, errstr, errstr_size);
    for (size_t j = 0; j < n_names && rc == UL_OK; j++) {
        const eval_method *m = eval_find_method(names[j]);
        eval_ensemble e;
        memset(&e, 0, sizeof(e));
        rc = m->build(c, names[j], &e, errstr, errstr_size);
        if (rc == UL_OK)
            rc =
                eval_measure(c, names[j], &e, &cell->results[cell->n_results], errstr, errstr_size);
        eval_ens_release(&e);
        if (rc == UL_OK)
            cell->n_results++;
    }
    for (size_t j = 0; j < n_names && rc == UL_OK && c->o->sequential > 0; j++) {
        if (eval_find_method(names[j])->build != eval_build_unlearned)
            continue;
        rc = eval_run_sequential(c, names[j], &cell->results[cell->n_results], errstr, errstr_size);
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
    c.units_total = eval_plan_units(names, n_names, opts->sequential);
    rc = prepare(&c, cell, errstr, errstr_size);
    if (rc == UL_OK)
        rc = run_methods(&c, names, n_names, cell, errstr, errstr_size);
    if (rc == UL_OK) {
        c.units_done = c.units_total;
        eval_stage_begin(&c, "", "done", 0);
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