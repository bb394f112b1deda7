/* shard.h: the in-memory state of one Kafka partition P as the worker owns
 * it: P's user rows, its users' recent ratings (bounded histories) and what
 * was evicted from them, its pending forget requests, the outbox of its
 * unlearning cycles and of its exact item deliveries, its next offsets and
 * counters; the durable statistics of P's home items (rows.h:
 * rows_item_partition) and the last exact delivery applied from every source
 * partition; the exact item deltas P's events made since the last checkpoint
 * (to deliver to the items' home partitions); plus what changed since the
 * last checkpoint and since the last row flush. The store (store.h) loads and
 * checkpoints a shard; live.h applies events to it. Rows have the layout of
 * rows.h. See docs/store.md. */
#ifndef UL_SHARD_H
#define UL_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "rows.h"
#include "rowset.h"

/* The input topics a shard keeps a next offset for: the rows of the
 * worker's input table (worker.c), in its order. SHARD_ITEM_UPDATES is the
 * internal topic: partition P carries the updates of P's home items; P's
 * offset is how far P's durable statistics have applied it. */
enum { SHARD_RATINGS = 0, SHARD_FORGET = 1, SHARD_ITEM_UPDATES = 2, SHARD_N_INPUTS = 3 };

/* Why a row changed: an event (a rating, a forget) is checkpointed at the
 * next checkpoint and published at publish.interval.ms; background training
 * at the next row flush and publish.training.interval.ms. */
typedef enum shard_class { SHARD_EVENT = 0, SHARD_TRAINING = 1 } shard_class;

/* Bits of s->user_flags[uidx]. */
#define SHARD_USER_BUSY 1 /* an unlearning cycle holds this user (training skips it) */

/* Mark sets of s->users (rowset.h). */
enum {
    SHARD_USER_DIRTY = ROWSET_DIRTY,     /* event-changed: written at the next checkpoint */
    SHARD_USER_PUBLISH = ROWSET_PUBLISH, /* event-changed: published at publish.interval.ms */
    SHARD_USER_TRAIN_DIRTY = 2,          /* training-changed: written at the next row flush */
    SHARD_USER_TRAIN_PUBLISH = 3,        /* training-changed: publish.training.interval.ms */
};

/* Mark sets of s->home (P's home items). */
enum {
    SHARD_HOME_STATS = 0, /* statistics changed: written at the next checkpoint */
    SHARD_HOME_FLUSH = 1, /* row changed since the last row flush: written at the next one */
};

/* One remembered rating of a user. */
typedef struct hist_entry {
    int64_t item;
    int64_t time; /* event time, ms since the epoch */
    float rating;
} hist_entry;

/* Bits of s->hist_dirty[uidx]. */
enum { SHARD_HIST_DIRTY = 1, SHARD_HIST_REWRITE = 2 };

/* A user's recent ratings, oldest first: entries v[start .. start+n). */
typedef struct hist {
    hist_entry *v;
    uint32_t start, n, cap;
} hist;

/* What a user's history dropped beyond the retention: how many, their event
 * times, and a Bloom filter of their items (so a forget request can say
 * "beyond retention" instead of "never seen"). */
#define SHARD_EVICT_BLOOM 256 /* bytes: 2048 bits */
typedef struct shard_evict {
    uint32_t count;
    int64_t tmin, tmax; /* event times, ms */
    uint8_t bloom[SHARD_EVICT_BLOOM];
} shard_evict;

#define FORGET_HWM_UNKNOWN (-1)

/* A validated forget request waiting for the next unlearning cycle. */
typedef struct forget_req {
    int64_t offset; /* its offset in the forget-requests partition (unique key) */
    int64_t user;
    char *request_id; /* owned */
    int64_t *items;   /* owned; n_items > 0 for an item-list request */
    uint32_t n_items;
    int has_window; /* 1: forget the ratings with from <= time <= to */
    int64_t from, to;
    int32_t reason;
    int64_t received_ms;
    /* The ratings partition's high watermark, asked from the broker after
     * the request was consumed: it is resolved only once ratings up to there
     * are applied, so every rating acknowledged before the request was
     * produced is covered. FORGET_HWM_UNKNOWN (any negative value, also the
     * -1 older versions stored when their cached watermark was unknown)
     * until the broker answered: never eligible. */
    int64_t ratings_hwm;
    int unsaved; /* added since the last checkpoint */
} forget_req;

void forget_req_free(forget_req *fr);

/* Messages kept in Redis from a checkpoint until Kafka acknowledged all of
 * them, so a crash between the two re-publishes them instead of losing them:
 * an unlearning cycle's (factor rows and receipts; key = the partition's
 * model version) or a checkpoint's exact item deliveries (item-updates
 * records; key = the delivery sequence). */
typedef struct outbox_entry {
    uint64_t version;    /* cycle: model version; delivery: sequence (unique key) */
    unsigned char *blob; /* owned; records in publish.h's outbox format */
    size_t len;
    int unsaved;  /* added since the last checkpoint */
    int inflight; /* being published now */
} outbox_entry;

/* A list of outbox entries with the keys removed since the checkpoint. */
typedef struct outbox_list {
    outbox_entry *v;
    size_t n, cap;
    uint64_t *removed;
    size_t n_removed, cap_removed;
} outbox_list;

typedef struct shard_meta {
    int64_t next_offset[SHARD_N_INPUTS]; /* -1: none stored yet */
    uint64_t applied;                    /* ratings applied to m1 */
    uint64_t forgotten;                  /* ratings removed by unlearning */
    uint64_t version;                    /* bumped by every unlearning cycle */
    uint64_t forget_received, forget_completed;
    uint64_t dead_letters; /* invalid events of this partition sent to the DLQ */
    int64_t checkpoint_ms; /* wall time of the last checkpoint */
    int64_t rows_off;      /* item-updates offset at the last row flush; -1: none */
    uint64_t epoch;        /* bumped by every owner taking P (the fence) */
    uint64_t ckpt;         /* checkpoint sequence: the fence's guard value */
    uint64_t out_seq;      /* the next exact-delivery sequence */
} shard_meta;

typedef struct shard {
    int32_t partition;
    int k;
    uint64_t seed;      /* initial rows are drawn from (seed, id) */
    float init_std;     /* std of the initial factors */
    uint32_t retention; /* ratings kept per user */
    shard_meta meta;
    int64_t durable_offset[SHARD_N_INPUTS]; /* next offsets at the last checkpoint (or load) */
    rowset *users;                          /* raw user id -> row; marks SHARD_USER_* */
    /* Parallel to `users` indices (grown by shard_user, the one way users
     * are added): */
    uint8_t *user_flags; /* SHARD_USER_BUSY, ... */
    hist *hists;
    uint8_t *hist_dirty;  /* SHARD_HIST_* bits */
    uint32_t *hist_added; /* entries appended since the last checkpoint */
    int32_t users_cap;
    int32_t *hist_dirty_list;
    size_t n_hist_dirty;
    rowset *evicts;      /* raw user id -> shard_evict (as rows of floats); dirty marks */
    forget_req *pending; /* the forget buffer, in arrival order */
    size_t n_pending, cap_pending;
    int64_t *removed; /* offsets of buffered requests completed since the checkpoint */
    size_t n_removed, cap_removed;
    outbox_list outbox;     /* unlearning cycles not yet acknowledged, by version */
    outbox_list deliveries; /* exact item deliveries not yet acknowledged, by sequence */
    /* P's home items: durable statistics (rows_stats) and row marks. */
    rowset *home;
    int64_t *seen; /* per source partition Q: last exact delivery applied (-1 none) */
    uint8_t *seen_dirty;
    int32_t n_seen;
    int any_seen_dirty;
    /* At a row flush, per source Q: the last exact delivery the flushed rows
     * include (the live fills it; written with rows_off). */
    int64_t *rows_seen;
    int32_t n_rows_seen;
    /* Exact deltas P's events made since the last checkpoint, by item (any
     * home): statistics, and the row corrections of unlearning cycles. */
    rowset *pend_stats; /* rows_stats */
    rowset *pend_rows;  /* rows_vector_dim floats; only items a cycle corrected */
    /* The rows of P's home items to write at a row flush (the live's, as of
     * rows_off), borrowed: looked up by item id, first rows_dim floats. */
    const rowset *items;
    int flush_rows; /* the next checkpoint is a row flush (train-dirty users, home rows) */
    int replicated; /* the last checkpoint reached a replica (or there is none) */
} shard;

/* A fresh empty shard (offsets -1, counters 0). NULL on allocation failure. */
shard *shard_new(int32_t partition, int k, uint64_t seed, float init_std, uint32_t retention);
void shard_destroy(shard *s);

/* The index of user `raw`'s row, creating its initial row when absent; -1
 * on allocation failure. */
int32_t shard_user(shard *s, int64_t raw);
/* Mark user row uidx changed by an event or by training (checkpoint and
 * publish marks of that class). */
void shard_mark_user(shard *s, int32_t uidx, shard_class cls);

/* The history of the user at index `uidx`. */
hist *shard_hist(shard *s, int32_t uidx);
/* Append to a history, dropping the oldest entry beyond the retention into
 * the user's eviction summary; marks it for the checkpoint (appended). -1 on
 * allocation failure. */
int shard_hist_append(shard *s, int32_t uidx, const hist_entry *e);
/* Mark the history of `uidx` changed other than by appending (e.g. after
 * removing entries): the checkpoint rewrites it whole. */
void shard_hist_touch(shard *s, int32_t uidx);

/* The eviction summary of user uidx; NULL: nothing evicted. Borrowed until
 * the next change of the shard. */
const shard_evict *shard_evicted(const shard *s, int32_t uidx);
/* 1 when `item` may be among the evicted ratings (Bloom filter: no false
 * negatives), 0 when it certainly is not. */
int shard_evict_may_contain(const shard_evict *e, int64_t item);
/* Replace user `user`'s summary with a stored one (the store's load). -1 on
 * allocation failure. */
int shard_evict_put(shard *s, int64_t user, const shard_evict *e);

/* Take ownership of `fr` (its pointers are moved; *fr is zeroed) and add it
 * to the forget buffer. -1 on allocation failure (fr is left intact). */
int shard_pending_add(shard *s, forget_req *fr);
/* Remove buffered request i (freed) and remember its offset for the next
 * checkpoint. -1 on allocation failure (nothing removed). */
int shard_pending_remove(shard *s, size_t i);

/* Take ownership of `blob` as the entry of `key` in list l (s->outbox or
 * s->deliveries), unsaved, at the end. -1 on allocation failure (blob not
 * taken). */
int outbox_list_add(outbox_list *l, uint64_t key, unsigned char *blob, size_t len);
/* Drop the entry of `key` (all its messages acknowledged) and remember the
 * key for the next checkpoint; a no-op when absent. -1 on allocation
 * failure. */
int outbox_list_remove(outbox_list *l, uint64_t key);
/* The entry of `key`, or NULL. */
outbox_entry *outbox_list_find(outbox_list *l, uint64_t key);
/* The cycle outbox's shorthands: s->outbox. */
int shard_outbox_add(shard *s, uint64_t version, unsigned char *blob, size_t len);
int shard_outbox_remove(shard *s, uint64_t version);

/* P's home item `item`: its index in s->home (created with statistics 0/0
 * when absent), -1 on allocation failure. */
int32_t shard_home_item(shard *s, int64_t item);
/* The durable statistics of home item index hi (copied). */
rows_stats shard_home_stats(const shard *s, int32_t hi);
/* Add to them and mark them for the checkpoint. */
void shard_home_add(shard *s, int32_t hi, int64_t dcount, double dsum);

/* The last exact delivery applied from source partition q (-1: none), and
 * setting it (marked for the checkpoint; -1 on allocation failure). */
int64_t shard_seen(const shard *s, int32_t q);
int shard_seen_set(shard *s, int32_t q, int64_t seq);

/* The rows_seen of the next row flush (n sources). -1 on allocation
 * failure. */
int shard_rows_seen_set(shard *s, const int64_t *seq, int32_t n);

/* Add an event's exact change of `item` to the deltas to deliver: dcount and
 * dsum to its statistics, and (delta non-NULL) rows_vector_dim floats to its
 * row. -1 on allocation failure (nothing added). */
int shard_pend(shard *s, int64_t item, int64_t dcount, double dsum, const float *delta);
/* 1 when there are deltas to deliver. */
int shard_has_pending(const shard *s);
/* Forget them (they went into a delivery entry, or the shard is dropped). */
void shard_pend_clear(shard *s);

/* 1 when something changed since the last checkpoint (rows, histories,
 * evictions, home statistics, seen, the forget buffer, the outboxes, the
 * next offsets, pending deltas), a row flush is due, or the last checkpoint
 * has not reached a replica yet (the next one waits again). */
int shard_is_dirty(const shard *s);
/* Forget everything changed since the last checkpoint was made durable (the
 * next offsets become the durable ones); after a row flush (s->flush_rows)
 * the training marks and flush marks too, and flush_rows is reset. */
void shard_clear_dirty(shard *s);

#endif
