/* sequential.h: sequential unlearning. Real deletion requests arrive one
 * after another, so the forget set F is split into N batches and a method
 * runs N times, each call on the model the previous one left, with only
 * what the platform knows at that moment (the ERASE benchmark's setting,
 * Lubitzsch et al. 2026). `unlearnd eval --sequential N` measures the model
 * after all N batches against one-shot unlearning (docs/eval.md).
 *
 * What batch b's request holds (positions refer to the training array the
 * model learned, F's values as it learned them):
 * - forget: F's entries assigned to batch b, in position order;
 * - retain: the batch's users' training ratings outside the entries
 *   forgotten so far (batches 0..b), in position order: F's entries of
 *   later batches are still there, as the platform still holds them;
 * - item_mean: per item, the mean over the training ratings not forgotten
 *   so far (items with none: the mean of all of those);
 * - item_count: per item, the ratings the model embodies before the batch
 *   (the training count minus batches 0..b-1).
 * With N = 1 the request is exactly the one-shot request of eval.c, and the
 * result is bit-identical to one-shot unlearning. */
#ifndef UL_SEQUENTIAL_H
#define UL_SEQUENTIAL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "mf.h"
#include "protocol.h"
#include "unlearn.h"

typedef enum seq_split {
    SEQ_BY_RATINGS = 0, /* F's entries in a seeded random order, cut into N near-equal batches */
    SEQ_BY_USERS =
        1, /* the affected users in a seeded random order, each user's entries in one batch */
} seq_split;

#define SEQ_MAX_BATCHES 100000

typedef struct seq_opts {
    int batches; /* N, 1..SEQ_MAX_BATCHES, at most |F| (by ratings) or the affected users */
    seq_split split;
    uint64_t seed; /* drives the batch assignment */
} seq_opts;

/* Batch of each of F's entries (batch_of[j] for fs->pos[j]), 0..N-1, every
 * batch non-empty. Returns UL_OK, or UL_ERR_ARG with a message when N does
 * not fit F. */
int seq_assign(const proto_forget *fs, const ul_rating *train, const seq_opts *opts,
               int32_t *batch_of, char *errstr, size_t errstr_size);

/* Called after batch b (0-based) has been applied; `m` is borrowed for the
 * call. A non-zero return stops the run with UL_ERR_ABORTED. */
typedef int (*seq_batch_fn)(void *ctx, int batch, int batches, const mf_model *m);

/* Unlearn F from `m` (m1, changed in place) in opts->batches calls of
 * unlearn_apply(method, ...), building each batch's request as above from
 * `train` (n ratings, the faulty training array m learned; n_items items)
 * and F's positions `fs`. Batch 0 runs with up->seed, batch b > 0 with
 * rng_derive(up->seed, b). `seconds` (may be NULL) gets the summed wall
 * time of the unlearn_apply calls (building the requests not counted).
 * `fn` may be NULL. Returns UL_OK, or the first failing call's code (the
 * model then holds the batches before it) with its message. */
int seq_unlearn(const char *method, mf_model *m, const ul_rating *train, size_t n, int32_t n_items,
                const proto_forget *fs, const seq_opts *opts, const unlearn_params *up,
                seq_batch_fn fn, void *ctx, double *seconds, char *errstr, size_t errstr_size);

#endif
