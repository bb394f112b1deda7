/* live.h: the live model m1 as one worker sees it, and what changes it: a
 * rating (one SGD step) and an unlearning cycle's corrections (forget.h
 * computes them; live_correct_item applies an item's).
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
 * to it. Single-threaded: the worker loop calls everything (an unlearning
 * cycle's thread works on a snapshot and never touches a live; forget.h). */
#ifndef UL_LIVE_H
#define UL_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "rows.h"
#include "shard.h"
#include "store.h"

typedef struct live_opts {
    int k;                   /* used when Redis holds no model yet (default 64) */
    float lr, reg, reg_bias; /* online SGD step */
    float init_std;          /* std of initial factors of unseen users/items */
    uint64_t seed;           /* initial rows are drawn from (seed, id) */
    uint32_t retention;      /* ratings kept per user */
    float rating_min, rating_max;
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
/* The rating scale of the stored model (ul:model). */
void live_rating_scale(const live *l, float *min, float *max);
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

/* Buffer a decoded forget request of shard s for the next unlearning cycle
 * (its item list is moved out of `f`; the caller still clears f), with its
 * source offset, when it was received and the ratings partition's high
 * watermark then (see forget_req.ratings_hwm; FORGET_HWM_UNKNOWN until the
 * broker has been asked);
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

/* ---- contract: replaced by state2 ------------------------------------------
 * What an unlearning cycle (forget.h) reads and changes of items. */
/* Live statistics of an item: ratings behind it and their sum; 0/0 when
 * unknown. (This version: the count is the effective row's, the sum is
 * estimated from the owned partitions' remembered ratings; see live.c.) */
void live_item_stats(const live *l, int64_t item, int64_t *count, double *sum);
/* An unlearning cycle's change to an item on behalf of partition s (the
 * requesting users'): delta = new - old of the bias and k factors
 * (rows_vector_dim floats; NULL for statistics only), dcount/dsum = -(number,
 * sum) of the forgotten ratings of that item. Applied now (effective row and
 * s's delta, marked for the checkpoint and for publishing). UL_ERR_NOMEM. */
int live_correct_item(live *l, shard *s, int64_t item, const float *delta, int64_t dcount,
                      double dsum);

#endif
