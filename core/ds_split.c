/* ds_split.c: the seeded train/test split, ds_split() (see dataset.h). */
#include "dataset.h"

#include "rng.h"
#include "ul_err.h"

#include <math.h>
#include <stdlib.h>

/* Selection sampling (Knuth's algorithm S): one pass, exactly n_test picks,
 * both outputs keep the input order. */
int ds_split(const ul_rating *ratings, size_t n, double test_frac, uint64_t seed, ul_ratings *train,
             ul_ratings *test, char *errstr, size_t errstr_size) {
    if (train == NULL || test == NULL || (ratings == NULL && n > 0)) {
        ul_set_err(errstr, errstr_size, "split: missing ratings or outputs");
        return UL_ERR_ARG;
    }
    train->v = test->v = NULL;
    train->n = test->n = 0;
    if (!(test_frac >= 0.0 && test_frac <= 1.0)) {
        ul_set_err(errstr, errstr_size, "split: test fraction %g outside 0..1", test_frac);
        return UL_ERR_ARG;
    }
    size_t n_test = (size_t)llround((double)n * test_frac);
    if (n_test > n)
        n_test = n;
    train->v = malloc((n - n_test ? n - n_test : 1) * sizeof(*train->v));
    test->v = malloc((n_test ? n_test : 1) * sizeof(*test->v));
    if (train->v == NULL || test->v == NULL) {
        ul_ratings_free(train);
        ul_ratings_free(test);
        ul_set_err(errstr, errstr_size, "split: out of memory for %zu ratings", n);
        return UL_ERR_NOMEM;
    }
    rng r;
    rng_seed(&r, seed);
    size_t need = n_test;
    for (size_t j = 0; j < n; j++) {
        if (need > 0 && rng_below(&r, (uint64_t)(n - j)) < need) {
            test->v[test->n++] = ratings[j];
            need--;
        } else
            train->v[train->n++] = ratings[j];
    }
    return UL_OK;
}
