/* live.h: the live model m1 as one worker sees it, and the two things that
 * change it: a rating (one SGD step) and an unlearning cycle.
 *
 * Item rows are shared by all partitions and never written by two of them:
 *
 *     effective item row = base row (ul:items, or the seeded initial row)
 *                          + sum over every partition p of delta_p
 *
 * A rating of partition P changes the effective row and adds the same change
 * to delta_P; only P's owner writes delta_P (in P's checkpoint). Deltas of
 * partitions this worker does not own are re-read by live_refresh(). Item
 * rows carry a third part, the number of ratings behind them (for fold-in's
 * item update), kept the same way. See docs/stream.md.
 *
 * A `live` borrows a store; it owns the shards of the partitions assigned
 * to it. Single-threaded: the worker loop calls everything. */
#ifndef UL_LIVE_H
#define UL_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "rows.h"
#include "shard.h"
#include "store.h"
#include "unlearn.h"

typedef struct live_opts {
    int k;                   /* used when Redis holds no model yet (default 64) */
    float lr, reg, reg_bias; /* online SGD step of an event (reg, reg_bias: training's too) */
    float init_std;          /* std of initial factors of unseen users/items */
    uint64_t seed;           /* initial rows are drawn from (seed, id) */
    uint32_t retention;      /* ratings kept per user */
    float rating_min, rating_max;
    const char *method; /* unlearning method name (borrowed; unlearn_method_default()) */
    unlearn_params uparams;
    /* contract: replaced by state2. Training's per-row schedule (core's
     * mf_sgd_step_rows): a row that has had `passes` passes over its
     * ratings trains at max(train_lr * train_lr_decay^passes, train_lr_min). `rewarm`: 1 (default)
     * the rule of live_sgd; 0 none and 2 the mean of passes, for measurements
     * (bench/bench_train.c). */
    float train_lr, train_lr_decay, train_lr_min;
    int rewarm;
} live_opts;

void live_opts_init(live_opts *opts);

typedef struct live live;

/* Read (or create, first writer wins) ul:model, the base item rows and every
 * partition's deltas. `n_partitions` > 0 is the ratings topic's partition
 * count. `st` is borrowed for the live's lifetime. NULL with errstr. */
live *live_new(const live_opts *opts, store *st, int32_t n_partitions, char *errstr,
               size_t errstr_size);
void live_destroy(live *l);

int live_k(const live *l);
float live_global_mean(const live *l);
int32_t live_partitions(const live *l);

/* Take partition p: load its shard from Redis (its deltas replace the
 * foreign copy). Returns the shard (owned by the live). NULL with errstr. */
shard *live_assign(live *l, int32_t p, char *errstr, size_t errstr_size);
/* The shard of p, or NULL when p is not owned. */
shard *live_shard(live *l, int32_t p);
/* Give p up without writing anything (the partition was lost: another
 * member may own it already). Its item deltas are re-read from Redis. */
int live_drop(live *l, int32_t p, char *errstr, size_t errstr_size);
/* Checkpoint p, then give it up (its deltas stay as a foreign copy). On a
 * checkpoint failure the shard is dropped anyway (nothing after the last
 * checkpoint is durable; the next owner resumes from there) and the error
 * is returned. */
int live_revoke(live *l, int32_t p, char *errstr, size_t errstr_size);

/* Apply one rating to shard s: SGD on the user's row and the item's
 * effective row, the item change into s's delta, the rating into the user's
 * history, applied+1. The caller advances the offset. UL_ERR_NOMEM only. */
int live_apply_rating(live *l, shard *s, int64_t user, int64_t item, float rating, int64_t time_ms);

/* contract: replaced by state2. One SGD step on (user row uidx of shard s,
 * item) toward `rating`: the user row marked for checkpoint and publishing
 * (shard_mark_user with cls), the item's effective row changed and the
 * change added to a delta: an event's to s's (the partition of the event),
 * a training step's to the delta of the item's home partition when this
 * worker owns it (so that training keeps one delta row per item), else to
 * s's. An event's step is the online step (live_opts.lr); it enters the
 * rating into its rows' schedule with 0 passes, keeping each row's training
 * rate the mean of its ratings' rates: decay^passes' = ((n-1) decay^passes
 * + 1) / n, n = the user's history length / the item's count with the new
 * rating. A training step is mf_sgd_step_rows: each row at its own rate of
 * the schedule, 1/n added to its passes (n without a new rating). The passes are in
 * memory only until state2 stores them with the rows: 0 after a load.
 * Creates the item's row if unseen. Does not change counts or histories
 * (live_apply_rating does). Returns the error before the step, or NAN when
 * out of memory. */
float live_sgd(live *l, shard *s, int32_t uidx, int64_t item, float rating, shard_class cls);

/* Buffer a decoded forget request of shard s for the next unlearning cycle
 * (its item list is moved out of `f`; the caller still clears f), with its
 * source offset, when it was received and the ratings partition's high
 * watermark then (see forget_req.ratings_hwm; -1 = no wait);
 * forget_received+1. The caller advances the offset. UL_ERR_NOMEM only (then
 * nothing is buffered). */
int live_buffer_forget(live *l, shard *s, codec_forget *f, int64_t offset, int64_t received_ms,
                       int64_t ratings_hwm);

/* Checkpoint one shard (store_shard_checkpoint). */
int live_checkpoint(live *l, shard *s, char *errstr, size_t errstr_size);

/* Re-read the deltas of partitions not owned here and recompute the
 * effective item rows. */
int live_refresh(live *l, char *errstr, size_t errstr_size);

/* Predictions from the current rows (unclipped when raw). `found` = 0 when
 * the user (in an owned shard) or item is unknown. */
float live_predict(const live *l, const shard *s, int64_t user, int64_t item, int *found);

/* Every effective item row (rows.h's item rows), keyed by raw item id;
 * borrowed until the next call that changes the live. */
const rowset *live_items(const live *l);

/* An item's effective row, or NULL if unknown. */
const float *live_item_row(const live *l, int64_t item);

/* ---- publishing rows (docs/stream.md, "Publishing factor rows") ----------
 * Every row a rating changes is marked for publishing: the user's row in
 * its shard and the item's effective row. The marks are independent of the
 * checkpoint's dirty marks and survive rebuilding the effective rows. */
/* Called once per marked row: `row` is a user or effective item row (an
 * item's bias without the global mean), borrowed for the call. `version` is
 * the user's partition's model version, or for items the highest version
 * among the owned partitions. */
typedef void (*live_row_fn)(void *opaque, rows_kind kind, int64_t id, const float *row,
                            uint64_t version);

/* Mark every user row of owned partition p and every effective item row
 * whose home partition is p (rows_item_partition), so that a takeover
 * republishes the partition in full. A no-op when p is not owned. */
void live_mark_partition(live *l, int32_t p);
/* Mark one row (a user's or an item's) if this worker holds it. */
void live_mark_row(live *l, rows_kind kind, int64_t id);
/* Call fn for every marked row (each once), then clear the marks. Returns
 * the number of rows. */
size_t live_publish_marked(live *l, live_row_fn fn, void *opaque);
/* How many rows are marked now. */
size_t live_marked(const live *l);

/* What an unlearning cycle did, for publishing after its checkpoint. */
typedef struct live_cycle {
    int32_t partition;
    uint64_t version;        /* the partition's model version after the cycle */
    codec_receipt *receipts; /* one per request, model_version = version */
    size_t n_receipts;
    int64_t *user_ids; /* changed user rows: ids and bias + factors (rows_vector_dim) */
    float *user_rows;
    size_t n_users;
    int64_t *item_ids; /* changed item rows: effective bias + factors (rows_vector_dim) */
    float *item_rows;
    size_t n_items;
    size_t n_forgotten;
    double unlearn_seconds;
} live_cycle;

void live_cycle_free(live_cycle *c);

/* One unlearning cycle on shard s: take up to max_batch buffered requests
 * whose preceding ratings are applied (see forget_req.ratings_hwm), resolve
 * each against its user's history, run the method with F = the resolved
 * ratings and retain = the users' other remembered ratings, make the result
 * live, delete F from the histories, bump the version and counters, remove
 * the requests from the buffer. Does not checkpoint: the caller checkpoints,
 * then publishes `out`. Returns UL_OK with out->n_receipts = 0 when nothing
 * was eligible. A failure up to and including the method's (resolving,
 * building the sub-model, unlearn_apply) changes nothing: the requests stay
 * buffered. An allocation failure after the method ran (making its rows
 * live, dropping F, finishing the requests) returns UL_ERR_NOMEM with part
 * of the result already applied to the shard. */
int live_forget_cycle(live *l, shard *s, size_t max_batch, int64_t now_ms, live_cycle *out,
                      char *errstr, size_t errstr_size);

#endif
