/* bench_scale.c: MF at 20M ratings against ML-1M, in the same run: load
 * time of a 20M-rating CSV, training cost per rating per epoch, the RMSE
 * pass after training, and memory. Prints figures; asserts nothing.
 *
 *   build/bench_scale [--file PATH] [--ratings N] [--epochs E (5)]
 *                     [--threads T (2)] [--ref FILE] [--kernel NAME]
 *
 * PATH (default /tmp/unlearnd-synth20m.csv) is written first if it does not
 * exist: a synthetic set of ML-20M's shape (138,493 users, 26,744 items,
 * N = 20,000,263 ratings, ds_synthetic seed 1) as
 * `userId,movieId,rating,timestamp` lines, like ML-20M's ratings.csv
 * (536 MB; it is never part of the repository). The reference FILE is
 * $UNLEARND_SHARED_DATA/ml-1m/ratings.csv by default (skipped if absent).
 * Each set is split 80/20 (seed 42) and trained E epochs at K=64 with the
 * other defaults; the per-rating figure is the median epoch over training
 * ratings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "mf.h"
#include "ul_clock.h"
#include "ul_err.h"

#define MAX_EPOCHS 100

typedef struct opts {
    const char *file, *ref;
    size_t ratings;
    int epochs, threads;
    mf_kernel_id kernel;
} opts;

typedef struct result {
    double load_s, ns_per_rating, cpu_ns_per_rating, setup_ms, rmse_pass_ms;
    size_t n_train;
} result;

/* CPU seconds of the whole process (all threads): unlike wall time, not
 * inflated when another process holds the core. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int write_synthetic(const opts *o) {
    char err[UL_ERRSTR_SIZE];
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 138493;
    so.n_items = 26744;
    so.n_ratings = o->ratings;
    so.seed = 1;
    double t0 = ul_clock_mono_s();
    dataset *ds = ds_synthetic(&so, err, sizeof(err));
    FILE *f = ds ? fopen(o->file, "w") : NULL;
    if (f == NULL) {
        fprintf(stderr, "bench_scale: %s\n", ds ? "cannot write the file" : err);
        ds_destroy(ds);
        return -1;
    }
    fprintf(f, "userId,movieId,rating,timestamp\n");
    for (size_t j = 0; j < ds->n_ratings; j++) {
        const ul_rating *r = &ds->ratings[j];
        fprintf(f, "%lld,%lld,%.1f,%lld\n", (long long)ds->user_ids[r->user],
                (long long)ds->item_ids[r->item], (double)r->value,
                (long long)(1000000000 + r->time));
    }
    int rc = fclose(f) == 0 ? 0 : -1;
    printf("wrote %s: %zu synthetic ratings in %.1f s\n", o->file, ds->n_ratings,
           ul_clock_mono_s() - t0);
    ds_destroy(ds);
    return rc;
}

typedef struct timing {
    double at[MAX_EPOCHS + 1], cpu[MAX_EPOCHS + 1];
} timing;

static int on_epoch(void *ctx, int epoch, int epochs, double train_rmse) {
    (void)epochs;
    (void)train_rmse;
    timing *t = ctx;
    if (epoch <= MAX_EPOCHS) {
        t->at[epoch] = ul_clock_mono_s();
        t->cpu[epoch] = cpu_s();
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int measure(const char *path, const opts *o, result *res) {
    char err[UL_ERRSTR_SIZE];
    double t0 = ul_clock_mono_s();
    dataset *ds = ds_load(path, NULL, err, sizeof(err));
    res->load_s = ul_clock_mono_s() - t0;
    ul_ratings train = {0}, test = {0};
    if (ds == NULL ||
        ds_split(ds->ratings, ds->n_ratings, 0.2, 42, &train, &test, err, sizeof(err)) != UL_OK) {
        fprintf(stderr, "bench_scale: %s\n", err);
        ds_destroy(ds);
        return -1;
    }
    mf_params p;
    mf_params_init(&p);
    p.epochs = o->epochs;
    p.threads = o->threads;
    p.kernel = o->kernel;
    static timing t;
    t0 = ul_clock_mono_s();
    mf_model *m = mf_train(train.v, train.n, ds->n_users, ds->n_items, ds->rating_min,
                           ds->rating_max, &p, on_epoch, &t, err, sizeof(err));
    if (m == NULL) {
        fprintf(stderr, "bench_scale: %s\n", err);
        return -1;
    }
    double d[MAX_EPOCHS], c[MAX_EPOCHS];
    int n = 0;
    for (int e = 2; e <= p.epochs; e++, n++) {
        d[n] = t.at[e] - t.at[e - 1];
        c[n] = t.cpu[e] - t.cpu[e - 1];
    }
    qsort(d, (size_t)n, sizeof(d[0]), cmp_double);
    qsort(c, (size_t)n, sizeof(c[0]), cmp_double);
    res->setup_ms = (t.at[1] - t0) * 1e3;
    res->ns_per_rating = d[n / 2] * 1e9 / (double)train.n;
    res->cpu_ns_per_rating = c[n / 2] * 1e9 / (double)train.n;
    res->n_train = train.n;
    t0 = ul_clock_mono_s();
    double rmse = mf_rmse(m, train.v, train.n);
    res->rmse_pass_ms = (ul_clock_mono_s() - t0) * 1e3;
    printf("%s: %zu ratings (%d users, %d items): load %.2f s (%.1f M ratings/s); %zu train, "
           "%d epochs on %d threads: first epoch + set-up %.0f ms, median epoch %.1f ms = %.2f "
           "ns/rating wall, %.2f ns/rating CPU (all threads); RMSE pass over the training set "
           "%.0f ms (train RMSE %.4f); peak RSS %.0f MiB\n",
           path, ds->n_ratings, (int)ds->n_users, (int)ds->n_items, res->load_s,
           (double)ds->n_ratings / res->load_s * 1e-6, train.n, p.epochs, o->threads, res->setup_ms,
           res->ns_per_rating * (double)train.n * 1e-6, res->ns_per_rating, res->cpu_ns_per_rating,
           res->rmse_pass_ms, rmse, peak_rss_mib());
    mf_model_destroy(m);
    ul_ratings_free(&train);
    ul_ratings_free(&test);
    ds_destroy(ds);
    return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
    for (int a = 1; a + 1 < argc; a += 2) {
        const char *k = argv[a], *v = argv[a + 1];
        if (strcmp(k, "--file") == 0)
            o->file = v;
        else if (strcmp(k, "--ref") == 0)
            o->ref = v;
        else if (strcmp(k, "--ratings") == 0)
            o->ratings = strtoull(v, NULL, 10);
        else if (strcmp(k, "--epochs") == 0)
            o->epochs = atoi(v);
        else if (strcmp(k, "--threads") == 0)
            o->threads = atoi(v);
        else if (strcmp(k, "--kernel") != 0 || mf_kernel_parse(v, &o->kernel) != UL_OK)
            return -1;
    }
    if (argc % 2 == 0 || o->epochs < 2 || o->epochs > MAX_EPOCHS || o->threads < 1 ||
        o->ratings < 1000 || !mf_kernel_available(o->kernel))
        return -1;
    return 0;
}

int main(int argc, char **argv) {
    static char ref[1024];
    const char *base = getenv("UNLEARND_SHARED_DATA");
    snprintf(ref, sizeof(ref), "%s/ml-1m/ratings.csv", base ? base : "../shared/data");
    opts o = {"/tmp/unlearnd-synth20m.csv", ref, 20000263, 5, 2, MF_KERNEL_AUTO};
    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr,
                "usage: bench_scale [--file PATH] [--ratings N] [--epochs E (2..%d)] "
                "[--threads T] [--ref FILE] [--kernel auto|base|avx2|avx512]\n",
                MAX_EPOCHS);
        return 2;
    }
    if (access(o.file, R_OK) != 0 && write_synthetic(&o) != 0)
        return 1;
    printf("bench_scale: K=64, kernel %s, %d threads, %ld cores online\n", mf_kernel_name(o.kernel),
           o.threads, sysconf(_SC_NPROCESSORS_ONLN));
    result big, small;
    int have_ref = access(o.ref, R_OK) == 0;
    if (have_ref && measure(o.ref, &o, &small) != 0)
        return 1;
    if (measure(o.file, &o, &big) != 0)
        return 1;
    if (have_ref)
        printf("per-rating epoch cost at %zu vs %zu train ratings: wall %.2f / %.2f ns = %.2fx, "
               "CPU %.2f / %.2f ns = %.2fx\n",
               big.n_train, small.n_train, big.ns_per_rating, small.ns_per_rating,
               big.ns_per_rating / small.ns_per_rating, big.cpu_ns_per_rating,
               small.cpu_ns_per_rating, big.cpu_ns_per_rating / small.cpu_ns_per_rating);
    else
        printf("bench_scale: reference %s not found: no ratio\n", o.ref);
    return 0;
}
