/* mf.h: biased matrix factorisation, r(u,i) = mu + b_u + b_i + p_u . q_i,
 * trained by SGD; prediction, batched scoring and top-K with OpenBLAS;
 * binary save/load with magic, version and checksum.
 *
 * The model struct is public on purpose: fusion, fold-in and the worker's
 * store read and write its rows directly. Rows are contiguous, row-major,
 * `k` floats each. */
#ifndef UL_MF_H
#define UL_MF_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/* Largest latent dimension accepted by mf_model_new / mf_params_check. */
#define MF_MAX_K 4096

typedef struct mf_model {
    int32_t n_users, n_items;
    int k;
    float global_mean;
    float rating_min, rating_max; /* predictions are clipped to this scale */
    float *user_bias;             /* n_users */
    float *item_bias;             /* n_items */
    float *P;                     /* n_users x k */
    float *Q;                     /* n_items x k */
    int64_t *user_ids;            /* dense -> raw id, n_users; may be NULL */
    int64_t *item_ids;            /* dense -> raw id, n_items; may be NULL */
} mf_model;

/* The SGD kernel variants, by instruction set (see docs/mf.md). AUTO picks
 * the fastest this CPU runs; the variants round differently (the AVX ones
 * fuse multiply-adds), so a model is bit-identical only for one variant. */
typedef enum mf_kernel_id {
    MF_KERNEL_AUTO = 0,
    MF_KERNEL_BASE,   /* portable C; SSE2 on x86-64, runs everywhere */
    MF_KERNEL_AVX2,   /* AVX2 + FMA */
    MF_KERNEL_AVX512, /* AVX-512F + FMA */
    MF_KERNEL_COUNT
} mf_kernel_id;

/* "auto", "base", "avx2", "avx512". */
const char *mf_kernel_name(mf_kernel_id id);
/* Name -> id; UL_OK, or UL_ERR_ARG for an unknown name. */
int mf_kernel_parse(const char *name, mf_kernel_id *id);
/* 1 when this build and this CPU run the variant (AUTO: always). */
int mf_kernel_available(mf_kernel_id id);

typedef struct mf_params {
    int k;          /* latent dimension, default 64 */
    int epochs;     /* SGD passes over the data */
    float lr;       /* learning rate */
    float reg;      /* L2 on P and Q */
    float reg_bias; /* L2 on the biases */
    float init_std; /* std of the Gaussian initialisation of P and Q */
    uint64_t seed;
    int threads; /* worker threads for training; 0 = number of cores */
    /* Learning-rate schedule: epoch e (0-based) uses lr * lr_decay^e. */
    float lr_decay;
    mf_kernel_id kernel; /* default MF_KERNEL_AUTO */
} mf_params;

/* Defaults (tuned on a validation split carved from the training data; see
 * docs/mf.md). */
void mf_params_init(mf_params *params);

/* Returns UL_OK or UL_ERR_ARG with a message naming the bad field. */
int mf_params_check(const mf_params *params, char *errstr, size_t errstr_size);

/* A zeroed model (biases 0, P = Q = 0, no raw ids). NULL on error. */
mf_model *mf_model_new(int32_t n_users, int32_t n_items, int k, char *errstr, size_t errstr_size);
/* Deep copy, raw ids included. NULL on allocation failure. */
mf_model *mf_model_clone(const mf_model *m);
void mf_model_destroy(mf_model *m);

/* Copy the raw id tables (e.g. from a dataset) into the model. */
int mf_model_set_ids(mf_model *m, const int64_t *user_ids, const int64_t *item_ids);

/* Called after each epoch; a non-zero return aborts training with
 * UL_ERR_ABORTED. `train_rmse` is the running RMSE of that epoch's updates. */
typedef int (*mf_progress_fn)(void *ctx, int epoch, int epochs, double train_rmse);

/* Train a fresh model on `n` ratings with dense ids < n_users / n_items.
 * Deterministic for a given seed, whatever the thread count (bit-identical
 * for one binary). The progress callback runs on the calling thread. Returns
 * NULL with a message on bad parameters, no ratings, an id outside the
 * model, a non-finite value, divergence (non-finite training RMSE: lower lr),
 * an abort by the callback, or out of memory. The caller owns the model. */
mf_model *mf_train(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                   float rating_min, float rating_max, const mf_params *params,
                   mf_progress_fn progress, void *progress_ctx, char *errstr, size_t errstr_size);

/* Like mf_progress_fn, with the model as it stands after that epoch, for
 * learning curves. `m` is borrowed for the call only: read it, do not keep
 * or change it. */
typedef int (*mf_watch_fn)(void *ctx, int epoch, int epochs, double train_rmse, const mf_model *m);

/* mf_train, calling `watch` (which may be NULL) after each epoch with the
 * model. Gathering the model costs a copy of its rows per epoch, nothing
 * when watch is NULL; the result is the same as mf_train's. */
mf_model *mf_train_watch(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                         float rating_min, float rating_max, const mf_params *params,
                         mf_watch_fn watch, void *watch_ctx, char *errstr, size_t errstr_size);

/* Predictions: raw (unclipped) and clipped to the model's scale. A user or
 * item outside the model (e.g. unseen) contributes no bias and no factor:
 * the prediction falls back to mu + b_i, mu + b_u or mu. */
float mf_predict_raw(const mf_model *m, int32_t user, int32_t item);
float mf_predict(const mf_model *m, int32_t user, int32_t item);

/* One online SGD step on (user, item, value): updates p_u, q_i, b_u, b_i.
 * Returns the error before the step (value - raw prediction). A user or
 * item outside the model changes nothing. */
float mf_sgd_step(mf_model *m, int32_t user, int32_t item, float value, float lr, float reg,
                  float reg_bias);

/* The online learner's state of one row (a user's or an item's), kept by
 * the caller beside the row: 8 bytes. The trainer's schedule (epoch e runs
 * at lr * lr_decay^e) is applied per row, counting each row's own passes
 * over its ratings: a new row learns at lr, a row trained for E epochs at
 * lr * lr_decay^E, as in the trainer's last epoch. See docs/mf.md. */
typedef struct mf_row_state {
    float passes; /* passes over the row's ratings so far: 0 for a new row,
                   * params->epochs for a row of a model from mf_train */
    float n;      /* ratings the row has; the caller keeps it up to date */
} mf_row_state;

/* The learning rate of a row in state `st`: lr * lr_decay^passes, but not
 * below lr_min (0: no floor). */
float mf_row_lr(const mf_params *params, const mf_row_state *st, float lr_min);

/* One online SGD step on (user, item, value) at each row's own rate
 * (mf_row_lr), with params' reg and reg_bias; each row's passes then grow
 * by 1/n (1 when n < 1). Returns the error before the step. A user or item
 * outside the model changes nothing, states included. */
float mf_sgd_step_rows(mf_model *m, int32_t user, int32_t item, float value,
                       const mf_params *params, float lr_min, mf_row_state *user_state,
                       mf_row_state *item_state);

/* Root mean squared error of clipped predictions over n ratings (0 if
 * n=0), on all cores in fixed chunks: the same result whatever their
 * number. */
double mf_rmse(const mf_model *m, const ul_rating *ratings, size_t n);

/* Scores of every item for each of n_users users (sgemm): out is
 * n_users x m->n_items, row-major, unclipped, biases included. Returns
 * UL_OK, UL_ERR_ARG for a user outside the model (or more than INT32_MAX/k
 * users at once: batch them), UL_ERR_NOMEM. */
int mf_score_users(const mf_model *m, const int32_t *users, size_t n_users, float *out);

/* The top `k_top` items for `user`, best first (ties: lower item index
 * first), skipping items whose `exclude` byte is non-zero (exclude may be
 * NULL; else n_items bytes). Scores are the unclipped predictions. Writes at
 * most k_top entries; returns how many were written (fewer when few items
 * remain), or a negative code (UL_ERR_ARG, UL_ERR_NOMEM). */
int mf_top_k(const mf_model *m, int32_t user, const uint8_t *exclude, int k_top, int32_t *items,
             float *scores);

/* Binary model file: magic "ULMF", version, dimensions, scale, arrays, raw
 * ids, CRC-32. A corrupt or truncated file is rejected with a message. */
int mf_save(const mf_model *m, const char *path, char *errstr, size_t errstr_size);
mf_model *mf_load(const char *path, char *errstr, size_t errstr_size);

#endif
