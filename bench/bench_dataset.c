/* bench_dataset.c: how fast datasets load, generate and split. Prints
 * figures; asserts nothing about time.
 *
 *   bench_dataset [PATH ...] [--synthetic N]
 *
 * Loads each PATH (default: the shared ML-100K and ML-1M when present) and
 * generates a synthetic set of N ratings (default 20,000,000), reporting
 * wall seconds, ratings/s and the 80/20 split time. */
#include "dataset.h"
#include "ul_clock.h"
#include "ul_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void report(const char *what, const dataset *ds, double secs) {
    printf("%-28s %10zu ratings %7d users %7d items %8.3f s %8.2f M ratings/s\n", what,
           ds->n_ratings, (int)ds->n_users, (int)ds->n_items, secs,
           (double)ds->n_ratings / secs / 1e6);
}

static int split_bench(const dataset *ds) {
    char err[UL_ERRSTR_SIZE];
    ul_ratings train, test;
    double t0 = ul_clock_mono_s();
    if (ds_split(ds->ratings, ds->n_ratings, 0.2, 1, &train, &test, err, sizeof(err)) != UL_OK) {
        fprintf(stderr, "bench_dataset: %s\n", err);
        return 1;
    }
    printf("%-28s %10zu train %10zu test %8.3f s\n", "  split 80/20", train.n, test.n,
           ul_clock_mono_s() - t0);
    ul_ratings_free(&train);
    ul_ratings_free(&test);
    return 0;
}

static int load_bench(const char *path) {
    char err[UL_ERRSTR_SIZE];
    ds_load_opts opts;
    ds_load_opts_init(&opts);
    double t0 = ul_clock_mono_s();
    dataset *ds = ds_load(path, &opts, err, sizeof(err));
    double secs = ul_clock_mono_s() - t0;
    if (ds == NULL) {
        fprintf(stderr, "bench_dataset: %s\n", err);
        return 1;
    }
    char what[128];
    snprintf(what, sizeof(what), "load %s (%s)", ds->name, ds->format);
    report(what, ds, secs);
    int rc = split_bench(ds);
    ds_destroy(ds);
    return rc;
}

static int synth_bench(size_t n) {
    char err[UL_ERRSTR_SIZE];
    ds_synth_opts opts;
    ds_synth_opts_init(&opts);
    opts.n_ratings = n;
    opts.n_users = (int32_t)(n / 150 > 1000 ? n / 150 : 1000);
    opts.n_items = (int32_t)(n / 1000 > 1500 ? n / 1000 : 1500);
    double t0 = ul_clock_mono_s();
    dataset *ds = ds_synthetic(&opts, err, sizeof(err));
    double secs = ul_clock_mono_s() - t0;
    if (ds == NULL) {
        fprintf(stderr, "bench_dataset: %s\n", err);
        return 1;
    }
    report("synthetic", ds, secs);
    int rc = split_bench(ds);
    ds_destroy(ds);
    return rc;
}

int main(int argc, char **argv) {
    size_t n_synth = 20000000;
    int rc = 0, loaded = 0;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--synthetic") == 0 && a + 1 < argc)
            n_synth = (size_t)strtoull(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--help") == 0) {
            printf("usage: bench_dataset [PATH ...] [--synthetic N]\n");
            return 0;
        } else {
            rc |= load_bench(argv[a]);
            loaded = 1;
        }
    }
    if (!loaded) {
        const char *defaults[] = {"../shared/data/ml-100k/u.data",
                                  "../shared/data/ml-1m/ratings.csv"};
        for (int j = 0; j < 2; j++)
            if (access(defaults[j], R_OK) == 0)
                rc |= load_bench(defaults[j]);
    }
    if (n_synth > 0)
        rc |= synth_bench(n_synth);
    return rc;
}
