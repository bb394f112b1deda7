/* bench_mf.c: MF training speed and memory. Trains 20 epochs at K=64 (the
 * other hyper-parameters at their defaults) on an 80/20 split of MovieLens-1M
 * with 1 thread and with 2, for every SGD kernel variant this CPU runs (or
 * the one named), and prints wall time, the median ms per epoch, ratings/s,
 * test RMSE, whether the 1- and 2-thread models are bit-identical, and peak
 * RSS against the model's theoretical size (users + items) x (K + 1) x 4
 * bytes.
 *
 *   build/bench_mf [RATINGS_FILE | synthetic] [EPOCHS] [KERNEL]
 *
 * KERNEL: auto, base, avx2 or avx512 (default: each available in turn).
 * Default file: $UNLEARND_SHARED_DATA/ml-1m/ratings.csv (UNLEARND_SHARED_DATA
 * defaults to ../shared/data, i.e. run from the repository root). When it is
 * absent the benchmark says so and exits 0; `synthetic` measures on a
 * generated set of ML-1M's shape instead. Timings on a shared machine are
 * noisy: run it a few times. */
#include <math.h>
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

#define MAX_EPOCHS 1000

typedef struct timing {
    double start;
    double at[MAX_EPOCHS + 1]; /* at[e]: when epoch e finished */
} timing;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of the epoch times 2..E (epoch 1 also pays for the set-up). */
static double median_epoch(const timing *t, int epochs) {
    double d[MAX_EPOCHS];
    int n = 0;
    for (int e = 2; e <= epochs; e++)
        d[n++] = t->at[e] - t->at[e - 1];
    if (n == 0)
        return t->at[1] - t->start;
    qsort(d, (size_t)n, sizeof(d[0]), cmp_double);
    return n % 2 ? d[n / 2] : (d[n / 2 - 1] + d[n / 2]) / 2;
}

static int on_epoch(void *ctx, int epoch, int epochs, double train_rmse) {
    (void)epochs;
    (void)train_rmse;
    timing *t = ctx;
    if (epoch <= MAX_EPOCHS)
        t->at[epoch] = ul_clock_mono_s();
    return 0;
}

static dataset *load(const char *path, char *err, size_t errsize) {
    if (strcmp(path, "synthetic") == 0) {
        ds_synth_opts so;
        ds_synth_opts_init(&so);
        so.n_users = 6040;
        so.n_items = 3706;
        so.n_ratings = 1000209;
        so.seed = 1;
        return ds_synthetic(&so, err, errsize);
    }
    ds_load_opts lo;
    ds_load_opts_init(&lo);
    return ds_load(path, &lo, err, errsize);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int same_model(const mf_model *a, const mf_model *b) {
    size_t nu = (size_t)a->n_users, ni = (size_t)a->n_items, k = (size_t)a->k;
    return memcmp(a->user_bias, b->user_bias, nu * sizeof(float)) == 0 &&
           memcmp(a->item_bias, b->item_bias, ni * sizeof(float)) == 0 &&
           memcmp(a->P, b->P, nu * k * sizeof(float)) == 0 &&
           memcmp(a->Q, b->Q, ni * k * sizeof(float)) == 0;
}

static mf_model *run(const dataset *ds, const ul_ratings *train, const ul_ratings *test,
                     const mf_params *p) {
    static timing t;
    char err[UL_ERRSTR_SIZE];
    t.start = ul_clock_mono_s();
    mf_model *m = mf_train(train->v, train->n, ds->n_users, ds->n_items, ds->rating_min,
                           ds->rating_max, p, on_epoch, &t, err, sizeof(err));
    double end = ul_clock_mono_s();
    if (m == NULL) {
        fprintf(stderr, "bench_mf: %s\n", err);
        return NULL;
    }
    double per_epoch = median_epoch(&t, p->epochs);
    printf("kernel=%-6s threads=%d  total %.3f s  first epoch+setup %.1f ms  %.2f ms/epoch "
           "(median)  %.1f M ratings/s  test RMSE %.4f\n",
           mf_kernel_name(p->kernel), p->threads, end - t.start, (t.at[1] - t.start) * 1e3,
           per_epoch * 1e3, (double)train->n / per_epoch * 1e-6, mf_rmse(m, test->v, test->n));
    return m;
}

int main(int argc, char **argv) {
    char def[1024], err[UL_ERRSTR_SIZE];
    const char *base = getenv("UNLEARND_SHARED_DATA");
    snprintf(def, sizeof(def), "%s/ml-1m/ratings.csv", base ? base : "../shared/data");
    const char *path = argc > 1 ? argv[1] : def;
    int epochs = argc > 2 ? atoi(argv[2]) : 20;
    int only = -1; /* every available variant */
    if (argc > 3) {
        mf_kernel_id id;
        if (mf_kernel_parse(argv[3], &id) != UL_OK || !mf_kernel_available(id)) {
            fprintf(stderr,
                    "bench_mf: KERNEL '%s' is not one this CPU runs (auto, base, avx2, "
                    "avx512)\n",
                    argv[3]);
            return 2;
        }
        only = (int)id;
    }
    if (epochs < 1 || epochs > MAX_EPOCHS) {
        fprintf(stderr, "bench_mf: EPOCHS must be 1..%d\n", MAX_EPOCHS);
        return 2;
    }
    if (strcmp(path, "synthetic") != 0 && access(path, R_OK) != 0) {
        printf("bench_mf: skipped: %s not found (pass a ratings file, or `synthetic`)\n", path);
        return 0;
    }
    dataset *ds = load(path, err, sizeof(err));
    if (ds == NULL) {
        fprintf(stderr, "bench_mf: %s\n", err);
        return 1;
    }
    ul_ratings train = {0}, test = {0};
    if (ds_split(ds->ratings, ds->n_ratings, 0.2, 42, &train, &test, err, sizeof(err)) != UL_OK) {
        fprintf(stderr, "bench_mf: %s\n", err);
        ds_destroy(ds);
        return 1;
    }
    double rss_loaded = peak_rss_mib(), rss_trained = 0;
    mf_params p;
    mf_params_init(&p);
    p.epochs = epochs;
    printf("bench_mf: %s: %d users, %d items, %zu train / %zu test ratings, K=%d, %d epochs, "
           "%ld cores online\n",
           path, (int)ds->n_users, (int)ds->n_items, train.n, test.n, p.k, epochs,
           sysconf(_SC_NPROCESSORS_ONLN));
    int rc = 0;
    for (int id = only >= 0 ? only : MF_KERNEL_BASE; id < MF_KERNEL_COUNT; id++) {
        if (only >= 0 && id != only)
            break;
        if (!mf_kernel_available((mf_kernel_id)id))
            continue;
        p.kernel = (mf_kernel_id)id;
        p.threads = 1;
        mf_model *m1 = run(ds, &train, &test, &p);
        if (rss_trained == 0)
            rss_trained = peak_rss_mib();
        p.threads = 2;
        mf_model *m2 = run(ds, &train, &test, &p);
        if (m1 == NULL || m2 == NULL)
            rc = 1;
        else
            printf("kernel=%-6s models for 1 and 2 threads bit-identical: %s\n",
                   mf_kernel_name(p.kernel), same_model(m1, m2) ? "yes" : "NO");
        mf_model_destroy(m1);
        mf_model_destroy(m2);
    }
    double model_mib = (double)(ds->n_users + ds->n_items) * (p.k + 1) * 4 / 1048576.0;
    printf("memory: peak RSS %.1f MiB after loading and splitting, %.1f MiB after the first "
           "training (+%.1f MiB), %.1f MiB at the end\n"
           "        one model (users+items)x(K+1)x4 = %.2f MiB; training also holds a working copy "
           "of the model and 12 B/rating of blocks (%.1f MiB), freed on return\n",
           rss_loaded, rss_trained, rss_trained - rss_loaded, peak_rss_mib(), model_mib,
           (double)train.n * 12 / 1048576.0);
    ul_ratings_free(&train);
    ul_ratings_free(&test);
    ds_destroy(ds);
    return rc;
}
