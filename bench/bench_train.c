/* bench_train.c: continuous training in one process, without Kafka (the
 * end-to-end figures are bench/bench_train.sh's). Two measurements:
 *
 *   bench_train order [DATA]   the epoch order: SGD epochs of the trainer's
 *       schedule (epoch e at lr * decay^e) over the 80% training split in
 *       three orders - a fresh Fisher-Yates shuffle per epoch, train_perm
 *       (what the worker uses: no memory, no set-up), and by user (the order
 *       histories are stored in) - printing the test RMSE after every epoch.
 *   bench_train live [DATA]    the worker's code path: a live model on a
 *       private redis-server (16 partitions, all owned), the training ratings
 *       applied once in a shuffled order (live_apply_rating: the stream),
 *       then train_slice() at a share of 1 until training pauses, printing per
 *       epoch the training and test RMSE, the seconds and the ratings/s.
 *
 *       With --late F the last F of the (shuffled) training ratings arrive
 *       only after training paused a first time, then training resumes: how
 *       a converged model takes in new data (the re-warm rule, the floor).
 *
 * Options: --lr X --decay X --reg X --epochs N (order) --lr-min X
 * --min-improvement X --max-epochs N --late F --no-rewarm (live) --seed S. DATA defaults to
 * ML-1M from ../shared/data. Prints figures; asserts nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "live.h"
#include "mf.h"
#include "redis_local.h"
#include "rng.h"
#include "rows.h"
#include "store.h"
#include "train.h"
#include "ul_clock.h"
#include "ul_err.h"

#define PARTS 16

typedef struct bench_opts {
    const char *mode, *data;
    float lr, decay, reg, lr_min;
    int epochs, max_epochs;
    double min_improvement;
    uint64_t seed;
    double late;       /* live: share of the training ratings that arrive after a first pause */
    int no_rewarm;     /* live: events do not re-warm their rows */
    double share;      /* live: training.share while the stream runs (0: no training then) */
    double share_late; /* live: the same for the late ratings only */
    double rate;       /* live: ratings/s of the stream (0: as fast as it applies) */
} bench_opts;

static double clip(double v, const dataset *ds) {
    return v < ds->rating_min ? ds->rating_min : v > ds->rating_max ? ds->rating_max : v;
}

/* ---- order ---------------------------------------------------------------- */

typedef enum order_kind { ORDER_SHUFFLE, ORDER_PERM, ORDER_USER, N_ORDERS } order_kind;
static const char *order_names[N_ORDERS] = {"fisher-yates", "train_perm", "by user"};

static int by_user(const void *a, const void *b) {
    const ul_rating *x = a, *y = b;
    return x->user != y->user ? (x->user > y->user) - (x->user < y->user)
                              : (x->item > y->item) - (x->item < y->item);
}

static void run_order(const bench_opts *o, const dataset *ds, ul_ratings *tr,
                      const ul_ratings *test, order_kind kind) {
    char err[UL_ERRSTR_SIZE];
    mf_model *m = mf_model_new(ds->n_users, ds->n_items, 64, err, sizeof(err));
    mf_params mp;
    mf_params_init(&mp);
    rng r;
    rng_seed(&r, o->seed);
    for (size_t i = 0; i < (size_t)m->n_users * 64; i++)
        m->P[i] = (float)(rng_normal(&r) * mp.init_std);
    for (size_t i = 0; i < (size_t)m->n_items * 64; i++)
        m->Q[i] = (float)(rng_normal(&r) * mp.init_std);
    double sum = 0;
    for (size_t i = 0; i < tr->n; i++)
        sum += tr->v[i].value;
    m->global_mean = (float)(sum / (double)tr->n);
    m->rating_min = ds->rating_min;
    m->rating_max = ds->rating_max;
    size_t *idx = malloc(tr->n * sizeof(*idx));
    if (kind == ORDER_USER)
        qsort(tr->v, tr->n, sizeof(*tr->v), by_user);
    printf("%-13s", order_names[kind]);
    for (int e = 0; e < o->epochs; e++) {
        float lr = o->lr * powf(o->decay, (float)e);
        train_perm p;
        train_perm_init(&p, tr->n, rng_derive(o->seed, (uint64_t)e));
        for (size_t i = 0; i < tr->n; i++)
            idx[i] = i;
        if (kind == ORDER_SHUFFLE)
            rng_shuffle(&r, idx, tr->n, sizeof(*idx));
        for (size_t i = 0; i < tr->n; i++) {
            size_t j = kind == ORDER_PERM ? (size_t)train_perm_at(&p, i) : idx[i];
            const ul_rating *x = &tr->v[j];
            mf_sgd_step(m, x->user, x->item, x->value, lr, o->reg, mp.reg_bias);
        }
        printf(" %.4f", mf_rmse(m, test->v, test->n));
        fflush(stdout);
    }
    printf("\n");
    free(idx);
    mf_model_destroy(m);
}

static int bench_order(const bench_opts *o, const dataset *ds, ul_ratings *tr,
                       const ul_ratings *test) {
    printf("test RMSE after each of %d epochs (lr %g x %g^e, reg %g, k 64), %zu training "
           "ratings:\n",
           o->epochs, o->lr, o->decay, o->reg, tr->n);
    for (int k = 0; k < N_ORDERS; k++)
        run_order(o, ds, tr, test, (order_kind)k);
    return 0;
}

/* ---- live ----------------------------------------------------------------- */

static double live_test_rmse(live *l, const dataset *ds, const ul_ratings *test) {
    double sse = 0;
    for (size_t i = 0; i < test->n; i++) {
        int64_t u = ds->user_ids[test->v[i].user], it = ds->item_ids[test->v[i].item];
        int found = 0;
        shard *s = live_shard(l, rows_user_partition(u, PARTS));
        double e = test->v[i].value - clip(live_predict(l, s, u, it, &found), ds);
        sse += e * e;
    }
    return sqrt(sse / (double)test->n);
}

/* Apply training ratings [from, to) as the stream would; with a share > 0
 * the worker's loop is mimicked: train_slice() after every 1000 ratings
 * (their events), which trains while its credit at that share allows. */
static int stream(live *l, train *t, double share, double rate, const dataset *ds,
                  const ul_ratings *tr, size_t from, size_t to, const ul_ratings *test) {
    double t0 = ul_clock_mono_s();
    train_stats before;
    train_get_stats(t, &before);
    for (size_t i = from; i < to; i++) {
        if ((i - from) % 1000 == 999) {
            /* the next block is due at t0 + i / rate: until then the loop waits for input */
            while (rate > 0 && ul_clock_mono_s() < t0 + (double)(i - from) / rate)
                if (share > 0 && train_slice(t, 0) < 0)
                    return UL_ERR_NOMEM;
            if (share > 0 && train_slice(t, 1000) < 0)
                return UL_ERR_NOMEM;
        }
        const ul_rating *x = &tr->v[i];
        int64_t u = ds->user_ids[x->user], it = ds->item_ids[x->item];
        shard *s = live_shard(l, rows_user_partition(u, PARTS));
        if (live_apply_rating(l, s, u, it, x->value, (int64_t)i) != UL_OK)
            return UL_ERR_NOMEM;
    }
    train_stats after;
    train_get_stats(t, &after);
    double t1 = ul_clock_mono_s();
    printf("stream: ratings %zu..%zu applied in %.2f s (%.0f/s), %llu training steps meanwhile "
           "(%.2f per rating); test RMSE %.4f\n",
           from, to, t1 - t0, (double)(to - from) / (t1 - t0),
           (unsigned long long)(after.ratings - before.ratings),
           (double)(after.ratings - before.ratings) / (double)(to - from),
           live_test_rmse(l, ds, test));
    return UL_OK;
}

/* train_slice() at a share of 1 until training pauses or max_epochs more. */
static int train_until_paused(const bench_opts *o, live *l, train *t, const dataset *ds,
                              const ul_ratings *test) {
    train_stats ts;
    train_get_stats(t, &ts);
    uint64_t done = ts.epochs, ratings = ts.ratings, stop = ts.epochs + (uint64_t)o->max_epochs;
    double te = ul_clock_mono_s(), start = te;
    if (train_slice(t, 0) < 0) /* resumes if paused */
        return 1;
    train_get_stats(t, &ts);
    while (!ts.paused && ts.epochs < stop) {
        if (train_slice(t, 0) < 0)
            return 1;
        train_get_stats(t, &ts);
        if (ts.epochs == done)
            continue;
        double now = ul_clock_mono_s();
        printf("epoch %3llu: train RMSE %.4f, test RMSE %.4f, %.2f s (%.0f ratings/s), %.1f s in "
               "all\n",
               (unsigned long long)ts.epochs, ts.last_rmse, live_test_rmse(l, ds, test), now - te,
               (double)(ts.ratings - ratings) / (now - te), now - start);
        fflush(stdout);
        done = ts.epochs;
        ratings = ts.ratings;
        te = ul_clock_mono_s();
    }
    printf("%s after %llu epochs; test RMSE %.4f\n", ts.paused ? "paused" : "stopped",
           (unsigned long long)ts.epochs, live_test_rmse(l, ds, test));
    return 0;
}

static int bench_live(const bench_opts *o, const dataset *ds, ul_ratings *tr,
                      const ul_ratings *test) {
    char err[UL_ERRSTR_SIZE];
    redis_local *rl = redis_local_start(NULL, 10000, err, sizeof(err));
    if (rl == NULL) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 1;
    }
    store_opts so;
    store_opts_init(&so);
    so.port = redis_local_port(rl);
    so.password = redis_local_password(rl);
    so.inputs[SHARD_RATINGS] = "ratings";
    so.inputs[SHARD_FORGET] = "forget-requests";
    store *st = store_connect(&so, err, sizeof(err));
    live_opts lo;
    live_opts_init(&lo);
    lo.lr = 0.01f; /* the events' online step: the worker's model.learning.rate */
    lo.train_lr = o->lr;
    lo.train_lr_decay = o->decay;
    lo.train_lr_min = o->lr_min;
    lo.rewarm = o->no_rewarm < 0 ? 2 : !o->no_rewarm;
    lo.reg = o->reg;
    lo.rating_min = ds->rating_min;
    lo.rating_max = ds->rating_max;
    live *l = st ? live_new(&lo, st, PARTS, err, sizeof(err)) : NULL;
    for (int32_t p = 0; l && p < PARTS; p++)
        if (live_assign(l, p, NULL, err, sizeof(err)) == NULL) {
            live_destroy(l);
            l = NULL;
        }
    if (l == NULL) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 1;
    }
    rng r;
    rng_seed(&r, o->seed);
    rng_shuffle(&r, tr->v, tr->n, sizeof(*tr->v));
    size_t first = (size_t)((1.0 - o->late) * (double)tr->n);
    train_opts to;
    train_opts_init(&to);
    to.share = o->share > o->share_late ? o->share : o->share_late;
    to.idle_share = 1.0;
    to.min_improvement = o->min_improvement;
    to.log_every_ms = 0;
    train *t = train_new(&to, l, NULL, NULL);
    if (stream(l, t, o->share, o->rate, ds, tr, 0, first, test) != UL_OK ||
        train_until_paused(o, l, t, ds, test) != 0)
        return 1;
    if (first < tr->n &&
        (stream(l, t, o->share_late, o->rate, ds, tr, first, tr->n, test) != UL_OK ||
         train_until_paused(o, l, t, ds, test) != 0))
        return 1;
    train_destroy(t);
    live_destroy(l);
    store_destroy(st);
    redis_local_stop(rl);
    return 0;
}

int main(int argc, char **argv) {
    bench_opts o = {NULL,  NULL, 0.1f, 0.79f, 0.045f, 0.0f, 15, 100,
                    0.001, 42,   0.0,  0,     0.0,    0.0,  0.0};
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(k, "--lr") == 0 && v)
            o.lr = strtof(argv[++a], NULL);
        else if (strcmp(k, "--decay") == 0 && v)
            o.decay = strtof(argv[++a], NULL);
        else if (strcmp(k, "--reg") == 0 && v)
            o.reg = strtof(argv[++a], NULL);
        else if (strcmp(k, "--lr-min") == 0 && v)
            o.lr_min = strtof(argv[++a], NULL);
        else if (strcmp(k, "--epochs") == 0 && v)
            o.epochs = atoi(argv[++a]);
        else if (strcmp(k, "--max-epochs") == 0 && v)
            o.max_epochs = atoi(argv[++a]);
        else if (strcmp(k, "--min-improvement") == 0 && v)
            o.min_improvement = strtod(argv[++a], NULL);
        else if (strcmp(k, "--late") == 0 && v)
            o.late = strtod(argv[++a], NULL);
        else if (strcmp(k, "--no-rewarm") == 0)
            o.no_rewarm = 1;
        else if (strcmp(k, "--share") == 0 && v)
            o.share = o.share_late = strtod(argv[++a], NULL);
        else if (strcmp(k, "--rate") == 0 && v)
            o.rate = strtod(argv[++a], NULL);
        else if (strcmp(k, "--share-late") == 0 && v)
            o.share_late = strtod(argv[++a], NULL);
        else if (strcmp(k, "--rewarm-passes") == 0)
            o.no_rewarm = -1;
        else if (strcmp(k, "--seed") == 0 && v)
            o.seed = strtoull(argv[++a], NULL, 10);
        else if (k[0] != '-' && o.mode == NULL)
            o.mode = k;
        else if (k[0] != '-' && o.data == NULL)
            o.data = k;
        else {
            fprintf(stderr, "usage: bench_train order|live [DATA] [options]\n");
            return 2;
        }
    }
    if (o.mode == NULL || (strcmp(o.mode, "order") != 0 && strcmp(o.mode, "live") != 0)) {
        fprintf(stderr, "usage: bench_train order|live [DATA] [options]\n");
        return 2;
    }
    char err[UL_ERRSTR_SIZE];
    ds_load_opts lo;
    ds_load_opts_init(&lo);
    const char *path = o.data ? o.data : "../shared/data/ml-1m/ratings.csv";
    dataset *ds = ds_load(path, &lo, err, sizeof(err));
    ul_ratings tr, test;
    if (ds == NULL ||
        ds_split(ds->ratings, ds->n_ratings, 0.2, o.seed, &tr, &test, err, sizeof(err)) != UL_OK) {
        fprintf(stderr, "bench_train: %s\n", err);
        return 1;
    }
    printf("%s: %zu training, %zu test ratings (split seed %llu)\n", path, tr.n, test.n,
           (unsigned long long)o.seed);
    int rc = strcmp(o.mode, "order") == 0 ? bench_order(&o, ds, &tr, &test)
                                          : bench_live(&o, ds, &tr, &test);
    ul_ratings_free(&tr);
    ul_ratings_free(&test);
    ds_destroy(ds);
    return rc;
}
