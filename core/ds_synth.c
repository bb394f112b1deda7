/* ds_synth.c: the seeded synthetic generator, ds_synthetic() (see
 * dataset.h): a planted biased low-rank model sampled onto a rating scale.
 * The dataset it returns is freed with ds_destroy() (dataset.c). */
#include "dataset.h"

#include "ds_index.h"
#include "rng.h"
#include "ul_err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void ds_synth_opts_init(ds_synth_opts *opts) {
    opts->n_users = 1000;
    opts->n_items = 1500;
    opts->n_ratings = 100000;
    opts->rank = 8;
    opts->noise = 0.5f;
    opts->seed = 1;
    opts->rating_min = 1.0f;
    opts->rating_max = 5.0f;
    opts->rating_step = 1.0f;
}

static int synth_check(const ds_synth_opts *o, char *errstr, size_t errstr_size) {
    if (o->n_users < 1 || o->n_items < 1) {
        ul_set_err(errstr, errstr_size,
                   "synthetic: need at least one user and one item (got %d, %d)", (int)o->n_users,
                   (int)o->n_items);
        return UL_ERR_ARG;
    }
    if (o->n_ratings < 1 || o->n_ratings / (size_t)o->n_users > (size_t)o->n_items ||
        (o->n_ratings / (size_t)o->n_users == (size_t)o->n_items &&
         o->n_ratings % (size_t)o->n_users != 0)) {
        ul_set_err(errstr, errstr_size,
                   "synthetic: %zu ratings do not fit %d users x %d items (at least 1, at most "
                   "one per pair)",
                   o->n_ratings, (int)o->n_users, (int)o->n_items);
        return UL_ERR_ARG;
    }
    if (o->rank < 1 || o->rank > 1024) {
        ul_set_err(errstr, errstr_size, "synthetic: rank %d outside 1..1024", o->rank);
        return UL_ERR_ARG;
    }
    if (!isfinite(o->noise) || o->noise < 0.0f) {
        ul_set_err(errstr, errstr_size, "synthetic: noise %g must be finite and >= 0",
                   (double)o->noise);
        return UL_ERR_ARG;
    }
    if (!isfinite(o->rating_min) || !isfinite(o->rating_max) || o->rating_min >= o->rating_max ||
        !(o->rating_step > 0.0f) || o->rating_step > o->rating_max - o->rating_min) {
        ul_set_err(errstr, errstr_size,
                   "synthetic: scale %g..%g step %g (want min < max, 0 < step <= max - min)",
                   (double)o->rating_min, (double)o->rating_max, (double)o->rating_step);
        return UL_ERR_ARG;
    }
    return UL_OK;
}

/* Raw ids 1..n, dense = raw - 1. */
static int synth_ids(int32_t n, int64_t **ids, ds_index **ix) {
    *ids = malloc((size_t)n * sizeof(**ids));
    *ix = ds_index_new((size_t)n);
    if (*ids == NULL || *ix == NULL)
        return UL_ERR_NOMEM;
    for (int32_t j = 0; j < n; j++) {
        int is_new;
        (*ids)[j] = (int64_t)j + 1;
        if (ds_index_intern(*ix, (int64_t)j + 1, &is_new) != j)
            return UL_ERR_NOMEM;
    }
    return UL_OK;
}

/* Fisher-Yates on ratings; typed so the swap is inlined (rng_shuffle's
 * generic memcpy swap costs twice as much on 20M ratings). */
static void ratings_shuffle(rng *r, ul_rating *v, size_t n) {
    for (size_t j = n; j > 1; j--) {
        size_t pick = (size_t)rng_below(r, (uint64_t)j);
        ul_rating tmp = v[j - 1];
        v[j - 1] = v[pick];
        v[pick] = tmp;
    }
}

static void gauss_fill(rng *r, float *v, size_t n, double std) {
    for (size_t j = 0; j < n; j++)
        v[j] = (float)(rng_normal(r) * std);
}

/* The planted value x (on 1..5) mapped onto the scale, rounded to a step and
 * clipped. With the defaults (1..5, step 1) this is clip(round(x), 1, 5). */
static float synth_level(const ds_synth_opts *o, double x) {
    double lo = o->rating_min, hi = o->rating_max, step = o->rating_step;
    double y = lo + (x - 1.0) * (hi - lo) / 4.0;
    y = lo + floor((y - lo) / step + 0.5) * step;
    return (float)(y < lo ? lo : y > hi ? hi : y);
}

/* The planted model: mu + b_u + b_i + p_u.q_i with ML-like spreads (mean
 * 3.5, user bias sd 0.35, item bias sd 0.5, p.q sd 0.8), then noise, round,
 * clip. Each user gets n/U (or one more) distinct items drawn by a partial
 * Fisher-Yates pass over a persistent item permutation: O(ratings) total,
 * no pair hash. Ratings are then shuffled so that users interleave as in a
 * stream; time = position. */
static int synth_fill(const ds_synth_opts *o, ul_rating *out) {
    const int32_t nu = o->n_users, ni = o->n_items;
    const int k = o->rank;
    float *P = malloc((size_t)nu * (size_t)k * sizeof(*P));
    float *Q = malloc((size_t)ni * (size_t)k * sizeof(*Q));
    float *bu = malloc((size_t)nu * sizeof(*bu));
    float *bi = malloc((size_t)ni * sizeof(*bi));
    int32_t *perm = malloc((size_t)ni * sizeof(*perm));
    int rc = UL_ERR_NOMEM;
    if (!P || !Q || !bu || !bi || !perm)
        goto done;
    rng r;
    rng_seed(&r, o->seed);
    double fstd = pow(0.64 / k, 0.25);
    gauss_fill(&r, P, (size_t)nu * (size_t)k, fstd);
    gauss_fill(&r, Q, (size_t)ni * (size_t)k, fstd);
    gauss_fill(&r, bu, (size_t)nu, 0.35);
    gauss_fill(&r, bi, (size_t)ni, 0.5);
    for (int32_t i = 0; i < ni; i++)
        perm[i] = i;
    size_t base = o->n_ratings / (size_t)nu, extra = o->n_ratings % (size_t)nu, w = 0;
    for (int32_t u = 0; u < nu; u++) {
        size_t cnt = base + ((size_t)u < extra);
        const float *pu = P + (size_t)u * (size_t)k;
        for (size_t j = 0; j < cnt; j++) {
            size_t pick = j + (size_t)rng_below(&r, (uint64_t)((size_t)ni - j));
            int32_t it = perm[pick];
            perm[pick] = perm[j];
            perm[j] = it;
            const float *qi = Q + (size_t)it * (size_t)k;
            double x = 3.5 + bu[u] + bi[it] + rng_normal(&r) * o->noise;
            for (int f = 0; f < k; f++)
                x += (double)pu[f] * qi[f];
            out[w].user = u;
            out[w].item = it;
            out[w].value = synth_level(o, x);
            w++;
        }
    }
    ratings_shuffle(&r, out, w);
    for (size_t j = 0; j < w; j++)
        out[j].time = (int64_t)j;
    rc = UL_OK;
done:
    free(P);
    free(Q);
    free(bu);
    free(bi);
    free(perm);
    return rc;
}

dataset *ds_synthetic(const ds_synth_opts *opts, char *errstr, size_t errstr_size) {
    ds_synth_opts defaults;
    if (opts == NULL) {
        ds_synth_opts_init(&defaults);
        opts = &defaults;
    }
    if (synth_check(opts, errstr, errstr_size) != UL_OK)
        return NULL;
    dataset *ds = calloc(1, sizeof(*ds));
    if (ds == NULL)
        goto nomem;
    /* Zeroed: the padding after `value` is then deterministic too. */
    ds->ratings = calloc(opts->n_ratings, sizeof(*ds->ratings));
    if (ds->ratings == NULL || synth_ids(opts->n_users, &ds->user_ids, &ds->user_index) ||
        synth_ids(opts->n_items, &ds->item_ids, &ds->item_index) ||
        synth_fill(opts, ds->ratings) != UL_OK)
        goto nomem;
    ds->n_ratings = opts->n_ratings;
    ds->n_users = opts->n_users;
    ds->n_items = opts->n_items;
    ds->rating_min = opts->rating_min;
    ds->rating_max = opts->rating_max;
    snprintf(ds->format, sizeof(ds->format), "synthetic");
    snprintf(ds->name, sizeof(ds->name), "synthetic");
    return ds;
nomem:
    ds_destroy(ds);
    ul_set_err(errstr, errstr_size, "synthetic: out of memory for %zu ratings", opts->n_ratings);
    return NULL;
}
