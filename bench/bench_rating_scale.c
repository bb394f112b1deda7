/* bench_rating_scale.c: does the model's quality depend on the rating scale? The
 * orig test RMSE (unlearnd eval's `orig`: MF with the default parameters on
 * the 80/20 split of seed S) of one set of ratings on two scales related by
 * a linear map, with the second RMSE converted back into the first's units.
 * Prints figures; asserts nothing.
 *
 *   bench_rating_scale [--seeds N] [PATH ...]
 *
 *   synthetic half stars   ds_synthetic() on 0.5..5 in steps of 0.5 (ML-1M's
 *                          shape: 6040 users, 3706 items, 1,000,209 ratings),
 *                          against the same ratings mapped onto 1..5
 *                          (r' = 1 + (r - 0.5) * 8/9)
 *   PATH                   a whole-star file (e.g. ML-1M's ratings.csv,
 *                          1..5) against its image on 0.5..5
 *                          (r' = 0.5 + (r - 1) * 9/8): not half stars, the
 *                          same ratings on the half-star range
 *
 * The target: |RMSE(half) - RMSE(rescaled) * 9/8| <= 0.005. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "eval.h"
#include "ul_err.h"

/* orig's test RMSE of `ratings` on lo..hi with seed `seed`; NAN on error. */
static double orig_rmse(const dataset *ds, const ul_rating *ratings, float lo, float hi,
                        uint64_t seed) {
    char err[UL_ERRSTR_SIZE];
    const char *methods[] = {"orig"};
    eval_data d = {ratings, ds->n_ratings, ds->n_users, ds->n_items, lo, hi, ds->name};
    eval_opts o;
    eval_opts_init(&o);
    o.seed = seed;
    eval_cell cell;
    double rmse = NAN;
    if (eval_run_cell(&d, &o, methods, 1, NULL, NULL, &cell, err, sizeof(err)) == UL_OK)
        rmse = cell.results[0].rmse_test;
    else
        fprintf(stderr, "bench_rating_scale: %s\n", err);
    eval_cell_free(&cell);
    return rmse;
}

/* Compare ds (on its scale) with its image under r -> lo2 + (r - lo) * f,
 * for seeds 1..n. */
static int compare(const char *label, const dataset *ds, float lo2, float hi2, long n_seeds) {
    double f = ((double)hi2 - lo2) / ((double)ds->rating_max - ds->rating_min);
    ul_rating *image = malloc(ds->n_ratings * sizeof(*image));
    if (image == NULL)
        return 1;
    for (size_t j = 0; j < ds->n_ratings; j++) {
        image[j] = ds->ratings[j];
        image[j].value = (float)(lo2 + ((double)ds->ratings[j].value - ds->rating_min) * f);
    }
    printf("%s: %zu ratings on %g..%g vs the same on %g..%g\n", label, ds->n_ratings,
           (double)ds->rating_min, (double)ds->rating_max, (double)lo2, (double)hi2);
    printf("  seed  rmse(%g..%g)  rmse(%g..%g)  in the first's units  difference\n",
           (double)ds->rating_min, (double)ds->rating_max, (double)lo2, (double)hi2);
    double worst = 0;
    for (long s = 1; s <= n_seeds; s++) {
        double a = orig_rmse(ds, ds->ratings, ds->rating_min, ds->rating_max, (uint64_t)s);
        double b = orig_rmse(ds, image, lo2, hi2, (uint64_t)s);
        if (isnan(a) || isnan(b)) {
            free(image);
            return 1;
        }
        printf("  %4ld  %12.4f  %12.4f  %20.4f  %+10.4f\n", s, a, b, b / f, a - b / f);
        worst = fabs(a - b / f) > worst ? fabs(a - b / f) : worst;
    }
    printf("  largest |difference| %.4f (target <= 0.005)\n", worst);
    free(image);
    return 0;
}

int main(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    long n_seeds = 3;
    int a = 1, rc = 0;
    if (a + 1 < argc && strcmp(argv[a], "--seeds") == 0) {
        n_seeds = strtol(argv[a + 1], NULL, 10);
        a += 2;
    }
    if (n_seeds < 1 || n_seeds > 100) {
        fprintf(stderr, "usage: bench_rating_scale [--seeds 1..100] [PATH ...]\n");
        return 2;
    }
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 6040;
    so.n_items = 3706;
    so.n_ratings = 1000209;
    so.rating_min = 0.5f;
    so.rating_step = 0.5f;
    dataset *ds = ds_synthetic(&so, err, sizeof(err));
    if (ds == NULL) {
        fprintf(stderr, "bench_rating_scale: %s\n", err);
        return 1;
    }
    rc |= compare("synthetic half stars", ds, 1.0f, 5.0f, n_seeds);
    ds_destroy(ds);
    for (; a < argc; a++) {
        ds_load_opts lo;
        ds_load_opts_init(&lo);
        if ((ds = ds_load(argv[a], &lo, err, sizeof(err))) == NULL) {
            fprintf(stderr, "bench_rating_scale: %s\n", err);
            return 1;
        }
        rc |= compare(argv[a], ds, 0.5f, 5.0f, n_seeds);
        ds_destroy(ds);
    }
    return rc;
}
