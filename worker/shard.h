/* shard.h: the in-memory state of one Kafka partition P as the worker owns
 * it: P's user rows, P's item deltas, its users' recent ratings (bounded
 * histories), its pending forget requests, the outbox of its unlearning
 * cycles, its next offsets and counters, plus what changed since the last
 * checkpoint. The store (store.h) loads and checkpoints a shard; live.h
 * applies events to it. Rows have the layout of rows.h (user rows, and item
 * rows for the deltas). */
#ifndef UL_SHARD_H
#define UL_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "rowset.h"

/* contract: replaced by state2. Which schedule a changed user row is written on:
 * an event's change at the next checkpoint, a training change at the next row
 * flush (today both at the next checkpoint). */
typedef enum shard_class { SHARD_EVENT = 0, SHARD_TRAINING = 1 } shard_class;
/* contract: replaced by state2. A bit of s->user_flags[uidx]: an unlearning
 * cycle holds this user (training skips it). */
#define SHARD_USER_BUSY 1

/* The input topics a shard keeps a next offset for: the rows of the
 * worker's input table (worker.c), in its order. */
enum { SHARD_RATINGS = 0, SHARD_FORGET = 1, SHARD_N_INPUTS = 2 };

/* One remembered rating of a user. */
typedef struct hist_entry {
    int64_t item;
    int64_t time; /* event time, ms since the epoch */
    float rating;
} hist_entry;

/* A user's recent ratings, oldest first: entries v[start .. start+n). */
typedef struct hist {
    hist_entry *v;
    uint32_t start, n, cap;
} hist;

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
    /* The ratings partition's high watermark when the request arrived: it
     * is resolved only once ratings up to there are applied, so ratings
     * produced before it are not missed. -1 = no wait. */
    int64_t ratings_hwm;
    int unsaved; /* added since the last checkpoint */
} forget_req;

void forget_req_free(forget_req *fr);

/* Messages of one unlearning cycle (factor rows and receipts) kept in
 * Redis from the cycle's checkpoint until Kafka acknowledged all of them, so
 * a crash between the two re-publishes them instead of losing them. */
typedef struct outbox_entry {
    uint64_t version;    /* the partition's model version of the cycle (unique key) */
    unsigned char *blob; /* owned; records in publish.h's outbox format */
    size_t len;
    int unsaved;  /* added since the last checkpoint */
    int inflight; /* being published now */
} outbox_entry;

typedef struct shard_meta {
    int64_t next_offset[SHARD_N_INPUTS]; /* -1: none stored yet */
    uint64_t applied;                    /* ratings applied to m1 */
    uint64_t forgotten;                  /* ratings removed by unlearning */
    uint64_t version;                    /* bumped by every unlearning cycle */
    uint64_t forget_received, forget_completed;
    uint64_t dead_letters; /* invalid events of this partition sent to the DLQ */
    int64_t checkpoint_ms; /* wall time of the last checkpoint */
} shard_meta;

typedef struct shard {
    int32_t partition;
    int k;
    uint64_t seed;      /* initial rows are drawn from (seed, id) */
    float init_std;     /* std of the initial factors */
    uint32_t retention; /* ratings kept per user */
    shard_meta meta;
    int64_t durable_offset[SHARD_N_INPUTS]; /* next offsets at the last checkpoint (or load) */
    rowset *users;                          /* raw user id -> row */
    rowset *deltas; /* raw item id -> cumulative item change made by this partition */
    hist *hists;    /* parallel to `users` indices */
    int32_t hists_cap;
    /* contract: replaced by state2. Parallel to `users` like `hists` (valid
     * for an index once shard_hist() returned it): SHARD_USER_* bits, and
     * the row's passes of the per-row learning-rate schedule (not stored in
     * Redis: 0 after a load). */
    uint8_t *user_flags;
    float *user_passes;
    uint8_t *hist_dirty; /* parallel to `users` */
    int32_t *hist_dirty_list;
    size_t n_hist_dirty;
    forget_req *pending; /* the forget buffer, in arrival order */
    size_t n_pending, cap_pending;
    int64_t *removed; /* offsets of buffered requests completed since the checkpoint */
    size_t n_removed, cap_removed;
    outbox_entry *outbox; /* cycles whose messages are not all acknowledged */
    size_t n_outbox, cap_outbox;
    uint64_t *outbox_removed; /* versions acknowledged since the checkpoint */
    size_t n_outbox_removed, cap_outbox_removed;
} shard;

/* A fresh empty shard (offsets -1, counters 0). NULL on allocation failure. */
shard *shard_new(int32_t partition, int k, uint64_t seed, float init_std, uint32_t retention);
void shard_destroy(shard *s);

/* The index of user `raw`'s row, creating its initial row when absent; -1
 * on allocation failure. */
int32_t shard_user(shard *s, int64_t raw);

/* The history of the user at index `uidx` (grown to fit). NULL on
 * allocation failure. */
hist *shard_hist(shard *s, int32_t uidx);
/* Append to a history, dropping the oldest entry beyond the retention;
 * marks it dirty. -1 on allocation failure. */
int shard_hist_append(shard *s, int32_t uidx, const hist_entry *e);
/* Mark the history of `uidx` changed (e.g. after removing entries). */
void shard_hist_touch(shard *s, int32_t uidx);

/* contract: replaced by state2. Mark the user row at `uidx` changed, to be
 * written on the schedule of `cls` (today: the next checkpoint either way)
 * and published with the next changed rows. */
void shard_mark_user(shard *s, int32_t uidx, shard_class cls);

/* Take ownership of `fr` (its pointers are moved; *fr is zeroed) and add it
 * to the forget buffer. -1 on allocation failure (fr is left intact). */
int shard_pending_add(shard *s, forget_req *fr);
/* Remove buffered request i (freed) and remember its offset for the next
 * checkpoint. -1 on allocation failure (nothing removed). */
int shard_pending_remove(shard *s, size_t i);

/* Take ownership of `blob` as the outbox entry of `version`. -1 on
 * allocation failure (blob not taken). */
int shard_outbox_add(shard *s, uint64_t version, unsigned char *blob, size_t len);
/* Drop the entry of `version` (all its messages acknowledged); a no-op when
 * absent. -1 on allocation failure. */
int shard_outbox_remove(shard *s, uint64_t version);

/* 1 when something changed since the last checkpoint (rows, histories,
 * the forget buffer, the outbox, or the next offsets). */
int shard_is_dirty(const shard *s);
/* Forget everything changed since the last checkpoint was made durable (the
 * next offsets become the durable ones). */
void shard_clear_dirty(shard *s);

#endif
