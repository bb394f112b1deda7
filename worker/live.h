/* live.h: the live model m1 as one worker sees it (state format 2, see
 * docs/store.md), and what changes it: a rating (one SGD step), an
 * unlearning cycle's corrections, the item updates of other workers.
 *
 * Every item has one home partition h(I) = I mod N (rows.h); its durable row
 * and statistics live in h's state, written by h's owner. Every worker keeps
 * a replica of every item's row and live statistics in memory and keeps it
 * current by consuming the internal topic item-updates (partition h carries
 * the updates of h's home items):
 *   - best effort: the factor deltas of online SGD steps and of background
 *     training, accumulated per item and pushed every items.push.interval.ms
 *     / training.push.interval.ms (live_push); never re-sent;
 *   - exact: the statistics deltas of a partition Q's ratings and forgets
 *     and the row corrections of Q's unlearning cycles, written into Q's
 *     outbox in Q's checkpoint (live_checkpoint) as records sequenced by
 *     Q's out_seq, published after it, applied once by every receiver
 *     (deduplicated by (Q, seq)).
 * The sending process applied its own changes when the events happened and
 * skips its own records (their `instance`).
 *
 * A `live` borrows a store; it owns the shards of the partitions assigned
 * to it. Single-threaded: the worker loop calls everything (an unlearning
 * cycle's thread works on a snapshot and never touches a live; forget.h
 * computes the cycle, live_correct_item applies its item changes). */
#ifndef UL_LIVE_H
#define UL_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "rows.h"
#include "shard.h"
#include "store.h"
#include "ul_buf.h"

/* Append the outbox record(s) carrying `u` (an exact delivery for home
 * partition `home`) to the outbox entry being built in `entry` (publish.c's
 * record format: publish_delivery_record). UL_OK, or an error with errstr. */
typedef int (*live_encode_fn)(void *opaque, const codec_item_updates *u, int32_t home,
                              ul_buf *entry, char *errstr, size_t errstr_size);

typedef struct live_opts {
    int k;                   /* used when Redis holds no model yet (default 64) */
    int k_explicit;          /* k was configured: a stored model of another k is refused */
    float lr, reg, reg_bias; /* online SGD step of an event (reg, reg_bias: training's too) */
    float init_std;          /* std of initial factors of unseen users/items */
    uint64_t seed;           /* initial rows are drawn from (seed, id) */
    uint32_t retention;      /* ratings kept per user */
    float rating_min, rating_max;
    /* Training's per-row schedule (core's mf_sgd_step_rows, the row state
     * of rows.h): a row that has had `passes` passes over its ratings trains
     * at max(train_lr * train_lr_decay^passes, train_lr_min). `rewarm`: 1
     * (default) the rule of live_sgd; 0 none and 2 the mean of passes, for
     * measurements (bench/bench_train.c). */
    float train_lr, train_lr_decay, train_lr_min;
    int rewarm;
    /* How a checkpoint's exact deliveries become outbox records; NULL: a
     * checkpoint with deliveries fails (tools that only read never
     * checkpoint). Borrowed. */
    live_encode_fn encode;
    void *encode_opaque;
    /* A reader (tools): live_assign loads a partition without taking it
     * (store_shard_read), so the owner that is running goes on. Such a live
     * must not checkpoint. */
    int read_only;
} live_opts;

void live_opts_init(live_opts *opts);

typedef struct live live;

/* Read (or create, first writer wins) ul:model and check it against the
 * options: format 2 (an older state is refused, saying what to do), the
 * partition count, the rating scale, and k when k_explicit (a mismatch is
 * refused naming both values). Then load the replica: every partition's
 * home item rows, statistics, seen and rows_off. `n_partitions` > 0 is the
 * ratings topic's partition count. `st` is borrowed for the live's
 * lifetime. NULL with errstr. */
live *live_new(const live_opts *opts, store *st, int32_t n_partitions, char *errstr,
               size_t errstr_size);
void live_destroy(live *l);

int live_k(const live *l);
float live_global_mean(const live *l);
/* The rating scale of the stored model (ul:model). */
void live_rating_scale(const live *l, float *min, float *max);
int32_t live_partitions(const live *l);
/* This process's random id (records it sent carry it), and the state's
 * nonce (ul:model). */
uint64_t live_instance(const live *l);
uint64_t live_nonce(const live *l);

/* Take partition p: claim it (the fence) and load its shard from Redis.
 * Returns the shard (owned by the live). NULL with errstr (code in *rc when
 * rc is non-NULL: STORE_ERR_FENCE when another worker keeps taking it). */
shard *live_assign(live *l, int32_t p, int *rc, char *errstr, size_t errstr_size);
/* The shard of p, or NULL when p is not owned. */
shard *live_shard(live *l, int32_t p);
/* Give p up without writing anything (the partition was lost, or its fence
 * moved): its exact changes not yet checkpointed are taken back out of the
 * replica (the next owner replays them). */
int live_drop(live *l, int32_t p, char *errstr, size_t errstr_size);
/* Checkpoint p with a full row flush, then give it up (its items stay in
 * the replica). On a checkpoint failure the shard is dropped anyway (see
 * live_drop; the next owner resumes from the last checkpoint) and the
 * error is returned. */
int live_revoke(live *l, int32_t p, char *errstr, size_t errstr_size);

/* One SGD step on (user row uidx of shard s, item) toward `rating`: the
 * user row marked for checkpoint (SHARD_EVENT: next checkpoint;
 * SHARD_TRAINING: next row flush) and for publishing (class-specific
 * interval), the item change applied to the replica and accumulated for
 * broadcast in the class's accumulator. An event's step is the online step
 * (live_opts.lr); it enters the rating into its rows' schedule with 0
 * passes, keeping each row's training rate the mean of its ratings' rates:
 * decay^passes' = ((n-1) decay^passes + 1) / n, n = the user's history
 * length / the item's count with the new rating (an item's count scaled by
 * the share of partitions owned: with several workers each counts its share
 * of the item's ratings, so its passes grow about one per epoch). A
 * training step is
 * mf_sgd_step_rows: each row at its own rate of the schedule (the row state
 * of rows.h, stored with the row), 1/n added to its passes. Creates the
 * item's row if unseen. Does not change statistics or histories
 * (live_apply_rating does). Returns the error before the step, or NAN when
 * out of memory. */
float live_sgd(live *l, shard *s, int32_t uidx, int64_t item, float rating, shard_class cls);
/* Live (replica) statistics of an item: ratings behind it and their sum.
 * 0/0 when unknown. */
void live_item_stats(const live *l, int64_t item, int64_t *count, double *sum);
/* An unlearning cycle's change to an item on behalf of partition s (the
 * requesting users' partition): delta = new - old of the bias and k factors
 * (rows_vector_dim floats, may be NULL for statistics only), dcount/dsum =
 * -(number, sum) of the forgotten ratings of that item. Applied to the
 * replica now; marked; queued as an exact delivery in s's next checkpoint.
 * UL_ERR_NOMEM only. */
int live_correct_item(live *l, shard *s, int64_t item, const float *delta, int64_t dcount,
                      double dsum);

/* Apply one rating to shard s: live_sgd (SHARD_EVENT), the item's
 * statistics (replica now, delivered to its home at the checkpoint), the
 * rating into the user's history, applied+1. The caller advances the
 * offset. UL_ERR_NOMEM only. */
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

/* Checkpoint one shard: its exact deltas since the last checkpoint become a
 * delivery entry of its outbox (one record per destination home partition,
 * sequenced by out_seq), at a row flush rows_off is the replica's position
 * in item-updates p, then store_shard_checkpoint (its codes). */
int live_checkpoint(live *l, shard *s, char *errstr, size_t errstr_size);
/* Make p's next checkpoint a row flush (rows.flush.interval.ms). */
void live_flush_due(live *l, int32_t p);

/* ---- item-updates --------------------------------------------------------
 * The replica's position in item-updates partition p: the next offset it
 * needs (-1: from the beginning). At start it is p's stored rows_off. */
int64_t live_updates_position(const live *l, int32_t p);
/* One record of item-updates partition `home` at `offset`: applied to the
 * replica when the replica has not seen that offset yet (best effort, and
 * exact deliveries above the last (source, seq) applied; never the
 * process's own records), and to home's durable state when home is owned
 * and its item-updates offset is not past it (exact deliveries only, above
 * home's seen[source]: statistics, and corrected rows marked for the
 * checkpoint). Records of another state (nonce) are skipped. Returns UL_OK,
 * UL_ERR_RANGE with errstr for a record that does not fit (a source or item
 * of another partition count, factors of another k: nothing applied), or
 * UL_ERR_NOMEM. */
int live_item_updates(live *l, int32_t home, int64_t offset, const codec_item_updates *u,
                      char *errstr, size_t errstr_size);

/* A record of item-updates partition `home` at `offset` that cannot be
 * applied (it does not decode): the positions move past it. */
void live_updates_skip(live *l, int32_t home, int64_t offset);

/* Called once per record of pushed best-effort deltas (borrowed for the
 * call): produce it to item-updates partition `home`. */
typedef void (*live_push_fn)(void *opaque, int32_t home, const codec_item_updates *u);
/* Send the accumulated best-effort item deltas of class cls (one record per
 * home partition, at most LIVE_PUSH_ITEMS items each) and clear them.
 * Returns the number of items. */
#define LIVE_PUSH_ITEMS 512
size_t live_push(live *l, shard_class cls, live_push_fn fn, void *opaque);

/* Predictions from the current rows (unclipped when raw). `found` = 0 when
 * the user (in an owned shard) or item is unknown. */
float live_predict(const live *l, const shard *s, int64_t user, int64_t item, int *found);

/* Every item's replica row (rows.h's item rows, followed by the item's
 * statistics: use live_item_row / live_item_stats), keyed by raw item id;
 * borrowed until the next call that changes the live. */
const rowset *live_items(const live *l);

/* An item's replica row, or NULL if unknown. */
const float *live_item_row(const live *l, int64_t item);

/* ---- publishing rows (docs/stream.md, "Publishing factor rows") ----------
 * Every row an event changes is marked for publishing (SHARD_EVENT), every
 * row training changes too (SHARD_TRAINING, a slower interval). Users are
 * published by their partition's owner, items only by their home
 * partition's owner. */
/* Called once per marked row: `row` is a user or item row (an item's bias
 * without the global mean), borrowed for the call. `version` is the user's
 * partition's model version, or for items the highest version among the
 * owned partitions. */
typedef void (*live_row_fn)(void *opaque, rows_kind kind, int64_t id, const float *row,
                            uint64_t version);

/* Mark every user row of owned partition p and every item row whose home
 * partition is p, so that a takeover republishes the partition in full. A
 * no-op when p is not owned. */
void live_mark_partition(live *l, int32_t p);
/* Mark one row (a user's or an item's) if this worker holds it. */
void live_mark_row(live *l, rows_kind kind, int64_t id);
/* Call fn for every row marked in class cls that this worker publishes
 * (each once), then clear the class's marks. Returns the number of rows. */
size_t live_publish_marked(live *l, shard_class cls, live_row_fn fn, void *opaque);
/* How many rows are marked now (both classes). */
size_t live_marked(const live *l);

#endif
