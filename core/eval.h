/* eval.h: the paper's offline evaluation, one cell at a time. A cell is
 * (dataset, users %, forget %, seed): split 80/20, apply O1 to the training
 * set (core/protocol.h), build each requested method's model and measure
 * it against the test set and the forget set F.
 *
 * Methods come from one registry (eval.c): a name and a function that
 * returns an "ensemble" of 1..S models whose predictions are averaged, with
 * its training and unlearning wall times. Retrain (MF without F) is always
 * built as the reference of the forget gap, and a second Retrain with
 * seed + 1000 gives the gap's noise floor ("retrain2").
 *
 * No printing: results come back as structs; eval_result_json() formats one
 * result as a JSON line for front ends. Definitions: docs/eval.md. */
#ifndef UL_EVAL_H
#define UL_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "mf.h"
#include "sequential.h"
#include "unlearn.h"

#define EVAL_METHOD_NAME_MAX 24
#define EVAL_NOISE_SEED_OFFSET 1000 /* retrain2 uses the MF seed + this */

/* An optional cache shared by the cells of a grid. `orig` depends only on
 * the data, the split and the MF parameters, not on users % or forget %, so
 * cells that differ only in those train it once. Holds up to
 * EVAL_CACHE_ENTRIES models (least recently used evicted). The data must
 * stay unchanged while the cache is in use. */
typedef struct eval_cache eval_cache;
#define EVAL_CACHE_ENTRIES 16

eval_cache *eval_cache_new(void); /* NULL on allocation failure */
void eval_cache_destroy(eval_cache *cache);

/* The data of a cell: the whole rating set in dense ids (split inside). */
typedef struct eval_data {
    const ul_rating *ratings; /* borrowed for the call */
    size_t n;
    int32_t n_users, n_items;
    float rating_min, rating_max;
    const char *name; /* for reports, e.g. "ml-100k"; borrowed */
} eval_data;

typedef struct eval_opts {
    double users_pct;  /* x: share of users picked by O1, (0, 100] */
    double forget_pct; /* y: share of each picked user's ratings, (0, 100] */
    uint64_t seed;     /* drives the split, O1, SISA's shards and the MF seed */
    double test_frac;  /* share of ratings held out for test, default 0.2 */
    /* Tuning: > 0 holds out this share of the training split as a
     * validation set and scores every metric on it instead of the test
     * split, which is then never read (every model trains on the rest of
     * the training split). 0, the default: score on the test split. */
    double valid_frac;
    mf_params mf; /* every MF's hyper-parameters; mf.seed is set from `seed` */
    int shards;   /* SISA shards, default 5 */
    int top_k;    /* the K of the top-K exposure, default 10 */
    /* Knobs of the unlearning methods (cff, foldin); NULL: their defaults.
     * Borrowed for the call. */
    const unlearn_params *unlearn;
    /* Shared across cells, or NULL; borrowed for the call. With a cache,
     * orig's seconds are those of the training that filled it. */
    eval_cache *cache;
    /* Sequential unlearning (core/sequential.h): with sequential = N > 0,
     * every listed core/unlearn.h method also runs over F split into N
     * batches (split by sequential_by, seeded from `seed`), and adds one
     * more result (sequential = N) after the one-shot results. 0: off. */
    int sequential;
    seq_split sequential_by;
} eval_opts;

void eval_opts_init(eval_opts *opts);

/* Progress of a cell, reported at each training epoch and between stages. */
typedef struct eval_progress {
    double done;        /* share of the cell's work done, 0..1 (an estimate) */
    const char *method; /* the model being built, e.g. "sisa" */
    const char *stage;  /* "split", "training", "unlearning", "scoring" */
    int epoch, epochs;  /* within the current training; 0 otherwise */
} eval_progress;

/* Non-zero return aborts the cell with UL_ERR_ABORTED. */
typedef int (*eval_progress_fn)(void *ctx, const eval_progress *p);

/* The model after one batch of a sequential run. */
typedef struct eval_seq_point {
    double rmse_test;         /* all test ratings */
    double forget_gap;        /* over all of F, against the one-shot Retrain */
    double mia_auc;           /* the membership-inference AUC on F (see below) */
    double item_bias_forget;  /* F-weighted mean item bias */
    double item_score_forget; /* F-weighted mean of the items' mean score, unaffected users */
} eval_seq_point;

typedef struct eval_result {
    char method[EVAL_METHOD_NAME_MAX];
    int n_models;            /* models averaged (1, or S for sisa) */
    double rmse_test;        /* all test ratings */
    double rmse_affected;    /* test ratings of affected users (NaN if none) */
    double rmse_unaffected;  /* test ratings of the other users (NaN if none) */
    double forget_gap;       /* mean |pred - retrain's pred| over F */
    double mean_pred_forget; /* mean pred over F */
    double topk_exposure;    /* share of F's pairs whose item is in the user's top-K */
    double seconds;          /* train_seconds + unlearn_seconds (NaN counted as 0) */
    double train_seconds;    /* building the model the method starts from */
    double unlearn_seconds;  /* removing F (NaN for orig and faulty) */
    double l1_P, l2_P;       /* ||P_m1 - P||_F, ||P_orig - P||_F; NaN for ensembles */
    double l1_Q, l2_Q;       /* same for Q */
    int shards_touched;      /* sisa: shards retrained by unlearning; 0 otherwise */
    /* Membership inference (docs/eval.md): AUC of an attack telling F's
     * pairs (members, claimed value: the scale maximum) from the affected
     * users' test pairs (never trained on); 0.5 = no trace. mia_auc scores a
     * pair by the model's raw prediction (a loss-threshold attack);
     * mia_auc_ref by that minus a reference model's (retrain2: trained
     * without any candidate), a difficulty-calibrated attack. */
    double mia_auc, mia_auc_ref;
    double item_bias_forget; /* mean over (u, i) in F of b_i (F-weighted mean item bias) */
    /* mean over (u, i) in F of item i's mean raw score over the unaffected
     * users (mu + mean b_u + b_i + mean p_u . q_i): F's pull left in the
     * items for everyone else, comparable across models whatever their mu
     * (biases are only defined up to b_i + c, b_u - c). NaN when every user
     * is affected. */
    double item_score_forget;
    /* 0: one-shot. N: this method applied over F in N sequential batches;
     * trace[b] is the model after batch b (n_trace = N entries, owned by
     * the cell). */
    int sequential;
    eval_seq_point *trace;
    size_t n_trace;
} eval_result;

typedef struct eval_cell {
    char dataset[64];
    double users_pct, forget_pct;
    uint64_t seed;
    size_t n_train, n_test;  /* n_test: the validation ratings with opts.valid_frac > 0 */
    int validation;          /* 1: scored on a validation split (opts.valid_frac > 0) */
    size_t n_forget;         /* |F| */
    size_t n_retain;         /* the affected users' remaining training ratings */
    size_t n_users_affected; /* users picked by O1 */
    size_t n_test_affected;  /* test ratings of affected users */
    double noise_floor;      /* forget gap between retrain and retrain2 */
    size_t n_nonmember;      /* the membership audit's non-members: affected users' test pairs */
    /* One per requested method, in request order, then (with
     * opts.sequential) one per requested core/unlearn.h method. */
    eval_result *results;
    size_t n_results;
} eval_cell;

/* Run one cell for `methods` (names from eval_method_names()). Fills `cell`
 * (free with eval_cell_free(), also after a failure). Returns UL_OK,
 * UL_ERR_ARG (unknown method, bad option, data that does not fit),
 * UL_ERR_NOMEM or UL_ERR_ABORTED. */
int eval_run_cell(const eval_data *data, const eval_opts *opts, const char *const *methods,
                  size_t n_methods, eval_progress_fn progress, void *progress_ctx, eval_cell *cell,
                  char *errstr, size_t errstr_size);

void eval_cell_free(eval_cell *cell);

/* The registry: every method name, NULL-terminated; the default list (what
 * `unlearnd eval` runs without --methods), NULL-terminated; a one-line
 * description of a method, or NULL when the name is unknown. */
const char *const *eval_method_names(void);
const char *const *eval_default_methods(void);
const char *eval_method_doc(const char *name);

/* One result as a single-line JSON object (no newline) with the keys
 * dataset, users_pct, forget_pct, method, sequential, seed, rmse_test,
 * rmse_affected, rmse_unaffected, forget_gap, mean_pred_forget,
 * topk_exposure, mia_auc, mia_auc_ref, item_bias_forget, item_score_forget,
 * seconds, unlearn_seconds, l1_P, l2_P, l1_Q, l2_Q (NaN written as null); a
 * sequential result adds trace_rmse, trace_gap, trace_mia, trace_item_bias
 * and trace_item_score, arrays of its N batches. Returns the length, or -1 when
 * `size` is too small (eval_result_json_size() is always enough). */
int eval_result_json(const eval_cell *cell, const eval_result *r, char *buf, size_t size);
size_t eval_result_json_size(const eval_result *r);

#endif
