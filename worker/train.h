/* train.h: continuous training of the live model m1. Between events the
 * worker keeps running SGD epochs over the ratings it retains (its owned
 * users' histories), so that a streamed model converges to what batch
 * training of the same ratings gives. Everything runs on the loop thread in
 * time slices: the loop calls train_slice() every iteration, which trains
 * for at most training.slice.ms when the time budget allows:
 *
 *   training.share       of the loop's wall time while events flow, and at
 *                        most training.steps.per.event SGD steps per event
 *                        that arrived (training a young model while its data
 *                        pours in fits the early ratings: measured, see
 *                        docs/training.md)
 *   training.idle.share  of it when no event arrived for TRAIN_IDLE_AFTER_MS
 *
 * An epoch visits every rating retained when it starts once, in an order
 * drawn anew per epoch (train_perm). Users an unlearning cycle holds
 * (SHARD_USER_BUSY) are skipped; ratings forgotten or evicted since the
 * epoch started are skipped (every visit re-checks the history's bounds).
 * Training pauses once an epoch's loss improved by less than
 * training.min.improvement over the previous epoch's, and resumes when new
 * ratings (training.resume.fraction of the owned history), a forget, or a
 * change of the owned partitions arrive. Each step goes through live_sgd()
 * with SHARD_TRAINING, which owns the per-row learning-rate schedule. See
 * docs/training.md. */
#ifndef UL_TRAIN_H
#define UL_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "live.h"
#include "log.h"
#include "metrics.h"

/* No event for this long: the input is idle and training.idle.share applies. */
#define TRAIN_IDLE_AFTER_MS 500.0

/* A monotonic clock in milliseconds (tests pass a fake one). */
typedef double (*train_clock_fn)(void *opaque);

typedef struct train_opts {
    int enabled;            /* training.enabled */
    double share;           /* training.share: 0..1 of the wall time while events flow */
    double idle_share;      /* training.idle.share: 0..1 of it while the input is idle */
    double slice_ms;        /* training.slice.ms: the longest slice */
    double min_improvement; /* training.min.improvement: relative, epoch over epoch */
    double resume_fraction; /* training.resume.fraction: of the owned history */
    double steps_per_event; /* training.steps.per.event: cap while events flow; 0 = none */
    uint64_t seed;          /* the epochs' orders */
    double log_every_ms;    /* progress line while training; 0 = none */
    train_clock_fn clock;   /* NULL = the monotonic clock */
    void *clock_opaque;
} train_opts;

/* The defaults of the config table (docs/training.md). */
void train_opts_init(train_opts *o);

typedef struct train train;

/* A trainer of the shards `lv` owns. lv, metrics and log are borrowed for
 * the trainer's lifetime (metrics and log may be NULL). NULL when out of
 * memory. */
train *train_new(const train_opts *o, live *lv, metrics *m, ul_log *log);
void train_destroy(train *t);

/* The loop's call, once per iteration; `events` = records the loop handled
 * since the previous call. Trains for at most slice_ms when the budget has
 * a slice's worth of time. Returns the ratings trained, or -1 when a step
 * ran out of memory (the worker is in trouble; nothing is half-applied). */
long train_slice(train *t, size_t events);

/* 1 when a slice is due: a loop handling a long batch of records should
 * stop and call train_slice(), so that the share holds while events flow. */
int train_due(train *t);

/* How long the loop may block waiting for input before the next slice is
 * due, in 0..max_ms (max_ms when training is off or paused). */
int train_wait_ms(train *t, int max_ms);

typedef struct train_stats {
    uint64_t epochs;                /* completed epochs */
    uint64_t ratings;               /* SGD steps taken */
    uint64_t skipped_busy;          /* visits skipped: the user was in an unlearning cycle */
    uint64_t skipped_gone;          /* visits skipped: the rating or its partition was gone */
    double last_rmse;               /* RMSE of the last completed epoch's steps; -1 before one */
    double epoch_rmse;              /* RMSE of the epoch in progress so far; -1 before a step */
    double share;                   /* measured share of wall time spent training (last window) */
    double trained_ms;              /* wall time spent in slices, in all */
    uint64_t epoch_pos, epoch_size; /* visits made / to make in the epoch in progress */
    int paused;                     /* 1: waiting for new data (or nothing to train) */
    int idle;                       /* 1: the input is idle (idle.share applies) */
} train_stats;

void train_get_stats(const train *t, train_stats *st);

/* ---- the epoch order ---------------------------------------------------
 * A pseudo-random permutation of 0..n-1 from a seed, without memory: a
 * 4-round Feistel network on the smallest even-bit domain >= n, walking
 * cycles until the value falls below n (fewer than 4 rounds of walking on
 * average). Exposed for the tests and bench/bench_train.c. */
typedef struct train_perm {
    uint64_t n;
    int half_bits;
    uint64_t keys[4];
} train_perm;

void train_perm_init(train_perm *p, uint64_t n, uint64_t seed);
/* The i-th element (i < n) of the permutation. */
uint64_t train_perm_at(const train_perm *p, uint64_t i);

#endif
