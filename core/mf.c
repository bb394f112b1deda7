/* mf.c: the biased MF model: allocation, copies, prediction, the online SGD
 * step, RMSE, batched scoring (OpenBLAS sgemm) and top-K. Training lives in
 * mf_train.c, the file format in mf_io.c.
 *
 * Arrays are allocated 64-byte aligned (and zeroed) so that rows of K=64
 * floats start on cache lines; they are still freed with plain free(). */
#include "mf.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf_kernel.h"
#include "mf_par.h"
#include "ul_err.h"

void mf_params_init(mf_params *params) {
    memset(params, 0, sizeof(*params));
    /* Chosen by bench/tune_mf on validation splits carved from the training
     * parts of ML-100K and ML-1M (lowest mean validation RMSE); see docs/mf.md. */
    params->k = 64;
    params->epochs = 15;
    params->lr = 0.1f;
    params->lr_decay = 0.79f;
    params->reg = 0.045f;
    params->reg_bias = 0.05f;
    params->init_std = 0.003f;
    params->seed = 42;
    params->threads = 0;
}

int mf_params_check(const mf_params *params, char *errstr, size_t errstr_size) {
    if (params == NULL) {
        ul_set_err(errstr, errstr_size, "MF parameters missing");
        return UL_ERR_ARG;
    }
    if (params->k < 1 || params->k > MF_MAX_K) {
        ul_set_err(errstr, errstr_size, "MF k=%d outside 1..%d", params->k, MF_MAX_K);
        return UL_ERR_ARG;
    }
    if (params->epochs < 0 || params->epochs > 100000) {
        ul_set_err(errstr, errstr_size, "MF epochs=%d outside 0..100000", params->epochs);
        return UL_ERR_ARG;
    }
    if (!isfinite(params->lr) || params->lr <= 0.0f || params->lr > 10.0f) {
        ul_set_err(errstr, errstr_size, "MF lr=%g must be in (0, 10]", (double)params->lr);
        return UL_ERR_ARG;
    }
    if (!isfinite(params->reg) || params->reg < 0.0f) {
        ul_set_err(errstr, errstr_size, "MF reg=%g must be finite and >= 0", (double)params->reg);
        return UL_ERR_ARG;
    }
    if (!isfinite(params->reg_bias) || params->reg_bias < 0.0f) {
        ul_set_err(errstr, errstr_size, "MF reg_bias=%g must be finite and >= 0",
                   (double)params->reg_bias);
        return UL_ERR_ARG;
    }
    if (!isfinite(params->init_std) || params->init_std < 0.0f) {
        ul_set_err(errstr, errstr_size, "MF init_std=%g must be finite and >= 0",
                   (double)params->init_std);
        return UL_ERR_ARG;
    }
    if (!isfinite(params->lr_decay) || params->lr_decay <= 0.0f || params->lr_decay > 1.0f) {
        ul_set_err(errstr, errstr_size, "MF lr_decay=%g must be in (0, 1]",
                   (double)params->lr_decay);
        return UL_ERR_ARG;
    }
    if (params->kernel < MF_KERNEL_AUTO || params->kernel >= MF_KERNEL_COUNT) {
        ul_set_err(errstr, errstr_size, "MF kernel=%d is not a kernel variant",
                   (int)params->kernel);
        return UL_ERR_ARG;
    }
    if (!mf_kernel_available(params->kernel)) {
        ul_set_err(errstr, errstr_size,
                   "MF kernel '%s' does not run on this CPU (use 'auto', or 'base' which runs "
                   "everywhere)",
                   mf_kernel_name(params->kernel));
        return UL_ERR_ARG;
    }
    if (params->threads < 0 || params->threads > 1024) {
        ul_set_err(errstr, errstr_size, "MF threads=%d outside 0..1024 (0 = all cores)",
                   params->threads);
        return UL_ERR_ARG;
    }
    return UL_OK;
}

/* n elements of `size` bytes, zeroed, 64-byte aligned; NULL on failure. */
static void *alloc_zeroed(size_t n, size_t size) {
    size_t bytes = n * size;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0)
        bytes = 64;
    void *p = aligned_alloc(64, bytes);
    if (p != NULL)
        memset(p, 0, bytes);
    return p;
}

mf_model *mf_model_new(int32_t n_users, int32_t n_items, int k, char *errstr, size_t errstr_size) {
    if (n_users < 1 || n_items < 1) {
        ul_set_err(errstr, errstr_size,
                   "MF model needs at least one user and one item (got %d, %d)", (int)n_users,
                   (int)n_items);
        return NULL;
    }
    if (k < 1 || k > MF_MAX_K) {
        ul_set_err(errstr, errstr_size, "MF k=%d outside 1..%d", k, MF_MAX_K);
        return NULL;
    }
    mf_model *m = calloc(1, sizeof(*m));
    if (m == NULL)
        goto fail;
    m->n_users = n_users;
    m->n_items = n_items;
    m->k = k;
    m->rating_min = 1.0f;
    m->rating_max = 5.0f;
    m->user_bias = alloc_zeroed((size_t)n_users, sizeof(float));
    m->item_bias = alloc_zeroed((size_t)n_items, sizeof(float));
    m->P = alloc_zeroed((size_t)n_users * (size_t)k, sizeof(float));
    m->Q = alloc_zeroed((size_t)n_items * (size_t)k, sizeof(float));
    if (m->user_bias == NULL || m->item_bias == NULL || m->P == NULL || m->Q == NULL)
        goto fail;
    return m;
fail:
    mf_model_destroy(m);
    ul_set_err(errstr, errstr_size, "out of memory for a %d x %d MF model with k=%d", (int)n_users,
               (int)n_items, k);
    return NULL;
}

mf_model *mf_model_clone(const mf_model *m) {
    mf_model *c = mf_model_new(m->n_users, m->n_items, m->k, NULL, 0);
    if (c == NULL)
        return NULL;
    size_t nu = (size_t)m->n_users, ni = (size_t)m->n_items, k = (size_t)m->k;
    c->global_mean = m->global_mean;
    c->rating_min = m->rating_min;
    c->rating_max = m->rating_max;
    memcpy(c->user_bias, m->user_bias, nu * sizeof(float));
    memcpy(c->item_bias, m->item_bias, ni * sizeof(float));
    memcpy(c->P, m->P, nu * k * sizeof(float));
    memcpy(c->Q, m->Q, ni * k * sizeof(float));
    if ((m->user_ids != NULL || m->item_ids != NULL) &&
        mf_model_set_ids(c, m->user_ids, m->item_ids) != UL_OK) {
        mf_model_destroy(c);
        return NULL;
    }
    return c;
}

void mf_model_destroy(mf_model *m) {
    if (m == NULL)
        return;
    free(m->user_bias);
    free(m->item_bias);
    free(m->P);
    free(m->Q);
    free(m->user_ids);
    free(m->item_ids);
    free(m);
}

/* Replace *dst with a copy of n ids (or NULL when src is NULL). */
static int copy_ids(int64_t **dst, const int64_t *src, size_t n) {
    int64_t *copy = NULL;
    if (src != NULL) {
        copy = malloc(n * sizeof(int64_t));
        if (copy == NULL)
            return UL_ERR_NOMEM;
        memcpy(copy, src, n * sizeof(int64_t));
    }
    free(*dst);
    *dst = copy;
    return UL_OK;
}

int mf_model_set_ids(mf_model *m, const int64_t *user_ids, const int64_t *item_ids) {
    if (m == NULL)
        return UL_ERR_ARG;
    if (copy_ids(&m->user_ids, user_ids, (size_t)m->n_users) != UL_OK)
        return UL_ERR_NOMEM;
    if (copy_ids(&m->item_ids, item_ids, (size_t)m->n_items) != UL_OK)
        return UL_ERR_NOMEM;
    return UL_OK;
}

float mf_predict_raw(const mf_model *m, int32_t user, int32_t item) {
    int has_user = user >= 0 && user < m->n_users;
    int has_item = item >= 0 && item < m->n_items;
    float r = m->global_mean;
    if (has_user)
        r += m->user_bias[user];
    if (has_item)
        r += m->item_bias[item];
    if (has_user && has_item) {
        const float *p = m->P + (size_t)user * (size_t)m->k;
        const float *q = m->Q + (size_t)item * (size_t)m->k;
        /* The baseline kernel's dot on every CPU: a model predicts the same
         * whatever the machine. */
        r += mf_dot_base(p, q, m->k);
    }
    return r;
}

static float clip(const mf_model *m, float r) {
    if (r < m->rating_min)
        return m->rating_min;
    if (r > m->rating_max)
        return m->rating_max;
    return r;
}

float mf_predict(const mf_model *m, int32_t user, int32_t item) {
    return clip(m, mf_predict_raw(m, user, item));
}

float mf_sgd_step(mf_model *m, int32_t user, int32_t item, float value, float lr, float reg,
                  float reg_bias) {
    if (user < 0 || user >= m->n_users || item < 0 || item >= m->n_items)
        return value - mf_predict_raw(m, user, item);
    float *p = m->P + (size_t)user * (size_t)m->k;
    float *q = m->Q + (size_t)item * (size_t)m->k;
    return mf_kernel_get(MF_KERNEL_AUTO)
        ->sgd_step(p, q, &m->user_bias[user], &m->item_bias[item], m->k, m->global_mean, value, lr,
                   lr, reg, reg_bias);
}

float mf_row_lr(const mf_params *params, const mf_row_state *st, float lr_min) {
    float lr = (float)(params->lr * pow(params->lr_decay, st->passes));
    return lr > lr_min ? lr : lr_min;
}

float mf_sgd_step_rows(mf_model *m, int32_t user, int32_t item, float value,
                       const mf_params *params, float lr_min, mf_row_state *user_state,
                       mf_row_state *item_state) {
    if (user < 0 || user >= m->n_users || item < 0 || item >= m->n_items)
        return value - mf_predict_raw(m, user, item);
    float *p = m->P + (size_t)user * (size_t)m->k;
    float *q = m->Q + (size_t)item * (size_t)m->k;
    float err =
        mf_kernel_get(MF_KERNEL_AUTO)
            ->sgd_step(p, q, &m->user_bias[user], &m->item_bias[item], m->k, m->global_mean, value,
                       mf_row_lr(params, user_state, lr_min), mf_row_lr(params, item_state, lr_min),
                       params->reg, params->reg_bias);
    user_state->passes += user_state->n >= 1.0f ? 1.0f / user_state->n : 1.0f;
    item_state->passes += item_state->n >= 1.0f ? 1.0f / item_state->n : 1.0f;
    return err;
}

/* mf_rmse works in fixed chunks, summed in chunk order: the result does
 * not depend on how many threads ran them. */
#define RMSE_CHUNK 65536

typedef struct rmse_job {
    const mf_model *m;
    const ul_rating *ratings;
    size_t n;
    double *sse; /* one per chunk */
} rmse_job;

/* Ratings ahead whose rows mf_rmse prefetches: a large model's rows come
 * from memory, one miss per rating otherwise. */
#define RMSE_PREFETCH 8

static void prefetch_row(const float *row, int k) {
    for (int l = 0; l < k; l += 32) /* a line in 128 bytes (see mf_kernel_impl.h) */
        __builtin_prefetch(row + l);
}

static void prefetch_rows(const mf_model *m, const ul_rating *r) {
    if (r->user >= 0 && r->user < m->n_users)
        prefetch_row(m->P + (size_t)r->user * (size_t)m->k, m->k);
    if (r->item >= 0 && r->item < m->n_items)
        prefetch_row(m->Q + (size_t)r->item * (size_t)m->k, m->k);
}

static double rmse_chunk_sse(const rmse_job *job, size_t c) {
    size_t lo = c * RMSE_CHUNK, hi = lo + RMSE_CHUNK < job->n ? lo + RMSE_CHUNK : job->n;
    double sse = 0.0;
    for (size_t i = lo; i < hi; i++) {
        if (i + RMSE_PREFETCH < hi)
            prefetch_rows(job->m, &job->ratings[i + RMSE_PREFETCH]);
        const ul_rating *r = &job->ratings[i];
        double e = (double)r->value - (double)mf_predict(job->m, r->user, r->item);
        sse += e * e;
    }
    return sse;
}

static void rmse_task(void *ctx, size_t c) {
    rmse_job *job = ctx;
    job->sse[c] = rmse_chunk_sse(job, c);
}

double mf_rmse(const mf_model *m, const ul_rating *ratings, size_t n) {
    if (n == 0)
        return 0.0;
    size_t chunks = (n + RMSE_CHUNK - 1) / RMSE_CHUNK;
    rmse_job job = {m, ratings, n, chunks > 1 ? malloc(chunks * sizeof(double)) : NULL};
    double sse = 0.0;
    if (job.sse != NULL) {
        mf_par_run(chunks, 0, rmse_task, &job);
        for (size_t c = 0; c < chunks; c++)
            sse += job.sse[c];
        free(job.sse);
    } else { /* one chunk, or no memory for the slots: same sums, in turn */
        for (size_t c = 0; c < chunks; c++)
            sse += rmse_chunk_sse(&job, c);
    }
    return sqrt(sse / (double)n);
}

int mf_score_users(const mf_model *m, const int32_t *users, size_t n_users, float *out) {
    if (m == NULL || (n_users > 0 && (users == NULL || out == NULL)))
        return UL_ERR_ARG;
    if (n_users == 0)
        return UL_OK;
    if (n_users > (size_t)INT32_MAX / (size_t)m->k)
        return UL_ERR_ARG; /* sgemm takes int dimensions: call in batches */
    size_t k = (size_t)m->k, ni = (size_t)m->n_items;
    for (size_t r = 0; r < n_users; r++)
        if (users[r] < 0 || users[r] >= m->n_users)
            return UL_ERR_ARG;
    float *Pu = malloc(n_users * k * sizeof(float));
    if (Pu == NULL)
        return UL_ERR_NOMEM;
    for (size_t r = 0; r < n_users; r++)
        memcpy(Pu + r * k, m->P + (size_t)users[r] * k, k * sizeof(float));
    /* out = Pu * Q^T, then add mu + b_u + b_i. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_users, (int)ni, (int)k, 1.0f, Pu,
                (int)k, m->Q, (int)k, 0.0f, out, (int)ni);
    free(Pu);
    for (size_t r = 0; r < n_users; r++) {
        float base = m->global_mean + m->user_bias[users[r]];
        float *row = out + r * ni;
        for (size_t i = 0; i < ni; i++)
            row[i] += base + m->item_bias[i];
    }
    return UL_OK;
}

/* Heap order for top-K: is (sa, a) a worse recommendation than (sb, b)? */
static int worse(float sa, int32_t a, float sb, int32_t b) {
    return sa < sb || (sa == sb && a > b);
}

/* Restore the min-heap (worst at the root) below position i. */
static void heap_down(int32_t *items, float *scores, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse(scores[l], items[l], scores[w], items[w]))
            w = l;
        if (r < n && worse(scores[r], items[r], scores[w], items[w]))
            w = r;
        if (w == i)
            return;
        float ts = scores[i];
        int32_t ti = items[i];
        scores[i] = scores[w];
        items[i] = items[w];
        scores[w] = ts;
        items[w] = ti;
        i = w;
    }
}

int mf_top_k(const mf_model *m, int32_t user, const uint8_t *exclude, int k_top, int32_t *items,
             float *scores) {
    if (m == NULL || user < 0 || user >= m->n_users || k_top < 0 ||
        (k_top > 0 && (items == NULL || scores == NULL)))
        return UL_ERR_ARG;
    if (k_top == 0)
        return 0;
    float *all = malloc((size_t)m->n_items * sizeof(float));
    if (all == NULL)
        return UL_ERR_NOMEM;
    int rc = mf_score_users(m, &user, 1, all);
    if (rc != UL_OK) {
        free(all);
        return rc;
    }
    /* A min-heap of the best k_top seen so far, worst at the root. */
    int n = 0;
    for (int32_t i = 0; i < m->n_items; i++) {
        if ((exclude != NULL && exclude[i]) || isnan(all[i]))
            continue;
        if (n < k_top) {
            items[n] = i;
            scores[n] = all[i];
            n++;
            if (n == k_top)
                for (int h = n / 2 - 1; h >= 0; h--)
                    heap_down(items, scores, n, h);
        } else if (worse(scores[0], items[0], all[i], i)) {
            items[0] = i;
            scores[0] = all[i];
            heap_down(items, scores, n, 0);
        }
    }
    free(all);
    if (n < k_top)
        for (int h = n / 2 - 1; h >= 0; h--)
            heap_down(items, scores, n, h);
    /* Heap sort: move the worst to the end repeatedly, leaving best first. */
    for (int end = n - 1; end > 0; end--) {
        float ts = scores[0];
        int32_t ti = items[0];
        scores[0] = scores[end];
        items[0] = items[end];
        scores[end] = ts;
        items[end] = ti;
        heap_down(items, scores, end, 0);
    }
    return n;
}
