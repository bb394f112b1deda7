/* sisa.c: the SISA baseline for MF (see sisa.h).
 *
 * DESIGN: shards are by user (a user's ratings live in one shard), so a
 * forget request touches exactly the shards of its users and the rest stay
 * untouched. Each shard keeps its own copy of its ratings, because SISA's
 * unlearning retrains a shard from its remaining data; there is no slicing
 * (one slice per shard): with MF training taking well under a second per
 * shard, checkpoints per slice would cost more memory than they save. Every
 * shard model has the full user x item shape; rows of users and items a
 * shard never saw keep their initial values, so such a shard predicts about
 * mu_s + b_i for a user it does not know. */
#include "sisa.h"

#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "ul_clock.h"
#include "ul_err.h"

struct sisa {
    int shards;
    uint64_t shard_seed;
    int32_t n_users, n_items;
    float rating_min, rating_max;
    mf_params params;
    int32_t *user_shard;              /* n_users */
    ul_ratings data[SISA_MAX_SHARDS]; /* each shard's ratings */
    mf_model *models[SISA_MAX_SHARDS];
    int touched;
    size_t removed;
    double train_seconds, unlearn_seconds;
};

typedef struct shard_progress {
    sisa_progress_fn fn;
    void *ctx;
    int shard, shards;
    int aborted; /* the callback asked to stop */
} shard_progress;

static int on_epoch(void *ctx, int epoch, int epochs, double train_rmse) {
    (void)train_rmse;
    shard_progress *sp = ctx;
    if (sp->fn != NULL && sp->fn(sp->ctx, sp->shard, sp->shards, epoch, epochs) != 0)
        sp->aborted = 1;
    return sp->aborted;
}

int sisa_shard_of(uint64_t shard_seed, int shards, int32_t user) {
    return (int)(rng_derive(shard_seed, (uint64_t)(uint32_t)user) % (uint64_t)shards);
}

/* (Re)train shard `sh`; the previous model, if any, is replaced. */
static int train_shard(sisa *s, int sh, shard_progress *sp, char *errstr, size_t errstr_size) {
    mf_params p = s->params;
    p.seed = rng_derive(s->params.seed, (uint64_t)sh);
    mf_model *m = NULL;
    if (s->data[sh].n == 0) {
        /* Every rating of the shard was forgotten: it knows nothing, so it
         * predicts the middle of the scale. */
        m = mf_model_new(s->n_users, s->n_items, p.k, errstr, errstr_size);
        if (m != NULL) {
            m->rating_min = s->rating_min;
            m->rating_max = s->rating_max;
            m->global_mean = (s->rating_min + s->rating_max) / 2;
        }
    } else {
        m = mf_train(s->data[sh].v, s->data[sh].n, s->n_users, s->n_items, s->rating_min,
                     s->rating_max, &p, on_epoch, sp, errstr, errstr_size);
    }
    if (m == NULL)
        return sp->aborted ? UL_ERR_ABORTED : UL_ERR_ARG; /* errstr says why */
    mf_model_destroy(s->models[sh]);
    s->models[sh] = m;
    return UL_OK;
}

static int distribute(sisa *s, const ul_rating *ratings, size_t n, char *errstr,
                      size_t errstr_size) {
    size_t cnt[SISA_MAX_SHARDS] = {0};
    for (int32_t u = 0; u < s->n_users; u++)
        s->user_shard[u] = sisa_shard_of(s->shard_seed, s->shards, u);
    for (size_t j = 0; j < n; j++) {
        int32_t u = ratings[j].user, i = ratings[j].item;
        if (u < 0 || u >= s->n_users || i < 0 || i >= s->n_items) {
            ul_set_err(errstr, errstr_size, "rating %zu (user %d, item %d) is outside %dx%d", j,
                       (int)u, (int)i, (int)s->n_users, (int)s->n_items);
            return UL_ERR_ARG;
        }
        cnt[s->user_shard[u]]++;
    }
    for (int sh = 0; sh < s->shards; sh++) {
        if (cnt[sh] == 0) {
            ul_set_err(errstr, errstr_size,
                       "shard %d of %d gets no ratings: use fewer shards for %zu ratings", sh,
                       s->shards, n);
            return UL_ERR_ARG;
        }
        s->data[sh].v = malloc(sizeof(ul_rating) * cnt[sh]);
        if (s->data[sh].v == NULL) {
            ul_set_err(errstr, errstr_size, "out of memory splitting %zu ratings into shards", n);
            return UL_ERR_NOMEM;
        }
    }
    for (size_t j = 0; j < n; j++) {
        ul_ratings *d = &s->data[s->user_shard[ratings[j].user]];
        d->v[d->n++] = ratings[j];
    }
    return UL_OK;
}

sisa *sisa_train(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                 float rating_min, float rating_max, int shards, uint64_t shard_seed,
                 const mf_params *params, sisa_progress_fn progress, void *progress_ctx,
                 char *errstr, size_t errstr_size) {
    if (shards < 1 || shards > SISA_MAX_SHARDS || n_users <= 0 || n_items <= 0) {
        ul_set_err(errstr, errstr_size, "SISA needs 1..%d shards and a non-empty matrix (got %d)",
                   SISA_MAX_SHARDS, shards);
        return NULL;
    }
    if (mf_params_check(params, errstr, errstr_size) != UL_OK)
        return NULL;
    sisa *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->user_shard = malloc(sizeof(int32_t) * (size_t)n_users)) == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory creating %d SISA shards", shards);
        sisa_destroy(s);
        return NULL;
    }
    s->shards = shards;
    s->shard_seed = shard_seed;
    s->n_users = n_users;
    s->n_items = n_items;
    s->rating_min = rating_min;
    s->rating_max = rating_max;
    s->params = *params;
    double t0 = ul_clock_mono_s();
    if (distribute(s, ratings, n, errstr, errstr_size) != UL_OK)
        goto fail;
    shard_progress sp = {progress, progress_ctx, 0, shards, 0};
    for (int sh = 0; sh < shards; sh++) {
        sp.shard = sh;
        if (train_shard(s, sh, &sp, errstr, errstr_size) != UL_OK)
            goto fail;
    }
    s->train_seconds = ul_clock_mono_s() - t0;
    return s;
fail:
    sisa_destroy(s);
    return NULL;
}

static int cmp_pair(const void *a, const void *b) {
    const ul_rating *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

/* Drop the shard's ratings found in the sorted `keys`; returns how many. */
static size_t drop_pairs(ul_ratings *d, const ul_rating *keys, size_t n_keys) {
    size_t w = 0;
    for (size_t j = 0; j < d->n; j++) {
        if (bsearch(&d->v[j], keys, n_keys, sizeof(ul_rating), cmp_pair) == NULL)
            d->v[w++] = d->v[j];
    }
    size_t dropped = d->n - w;
    d->n = w;
    return dropped;
}

int sisa_unlearn(sisa *s, const ul_rating *forget, size_t n_forget, sisa_progress_fn progress,
                 void *progress_ctx, char *errstr, size_t errstr_size) {
    double t0 = ul_clock_mono_s();
    s->touched = 0;
    s->removed = 0;
    ul_rating *keys = malloc(sizeof(ul_rating) * (n_forget ? n_forget : 1));
    if (keys == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory sorting %zu forget pairs", n_forget);
        return UL_ERR_NOMEM;
    }
    memcpy(keys, forget, sizeof(ul_rating) * n_forget);
    qsort(keys, n_forget, sizeof(ul_rating), cmp_pair);
    int dirty[SISA_MAX_SHARDS] = {0};
    int n_dirty = 0;
    for (int sh = 0; sh < s->shards; sh++) {
        size_t dropped = drop_pairs(&s->data[sh], keys, n_forget);
        s->removed += dropped;
        if (dropped > 0)
            dirty[n_dirty++] = sh;
    }
    free(keys);
    shard_progress sp = {progress, progress_ctx, 0, n_dirty, 0};
    for (int j = 0; j < n_dirty; j++) {
        sp.shard = j;
        int rc = train_shard(s, dirty[j], &sp, errstr, errstr_size);
        if (rc != UL_OK)
            return rc;
    }
    s->touched = n_dirty;
    s->unlearn_seconds = ul_clock_mono_s() - t0;
    return UL_OK;
}

int sisa_shards(const sisa *s) {
    return s->shards;
}

const mf_model *sisa_model(const sisa *s, int shard) {
    return s->models[shard];
}

size_t sisa_shard_size(const sisa *s, int shard) {
    return s->data[shard].n;
}

const int32_t *sisa_user_shards(const sisa *s) {
    return s->user_shard;
}

int sisa_touched(const sisa *s) {
    return s->touched;
}

size_t sisa_removed(const sisa *s) {
    return s->removed;
}

double sisa_unlearn_seconds(const sisa *s) {
    return s->unlearn_seconds;
}

double sisa_train_seconds(const sisa *s) {
    return s->train_seconds;
}

float sisa_predict(const sisa *s, int32_t user, int32_t item) {
    double sum = 0;
    for (int sh = 0; sh < s->shards; sh++)
        sum += mf_predict(s->models[sh], user, item);
    return (float)(sum / s->shards);
}

void sisa_destroy(sisa *s) {
    if (s == NULL)
        return;
    for (int sh = 0; sh < SISA_MAX_SHARDS; sh++) {
        free(s->data[sh].v);
        mf_model_destroy(s->models[sh]);
    }
    free(s->user_shard);
    free(s);
}
