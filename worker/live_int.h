/* live_int.h: what the live files share (live.c: the replica, the model and
 * the start-up load, ownership, events, predictions, publishing;
 * live_updates.c: records of item updates for pushes and deliveries, the
 * checkpoint, and applying item-updates records). Internal to worker/: not
 * an API. The replica helpers are static inline so the per-rating path in
 * live.c stays inlined as before the split. */
#ifndef UL_LIVE_INT_H
#define UL_LIVE_INT_H

#include <stdint.h>
#include <string.h>

#include "live.h"
#include "mf.h"
#include "rows.h"

#define STATS_FLOATS ((int)(sizeof(rows_stats) / sizeof(float)))
/* Mark set of the replica for training-changed rows to publish (ROWSET_PUBLISH
 * holds the event-changed ones). */
enum { ITEM_TRAIN_PUBLISH = 2 };

struct live {
    live_opts o;
    store *st;
    int k;
    int row_dim;  /* rows_dim(ROWS_ITEM, k) */
    int item_dim; /* row_dim + STATS_FLOATS: a replica row */
    float mean, rmin, rmax;
    int32_t n_parts;
    uint64_t nonce, instance;
    shard **shards;     /* per partition, NULL when not owned */
    rowset *items;      /* the replica: row, then live statistics */
    rowset *acc[2];     /* best-effort deltas not yet pushed, per class (rows_vector_dim) */
    rowset *own_out;    /* this process's row changes not yet back from the topic */
    int64_t *upd_pos;   /* per home partition: next item-updates offset (-1: from the start) */
    int64_t *rows_from; /* per home partition: stored rows include the records below */
    int64_t *seen;      /* [home * n_parts + source]: statistics */
    int64_t *seen_rows; /* [home * n_parts + source]: row corrections */
    codec_item_updates scratch; /* records being built */
    mf_params sched;            /* training's per-row schedule (rates and reg of the options) */
    float ln_decay;             /* logf(train_lr_decay), for rewarm; 0 when it does not apply */
    int32_t n_owned;            /* partitions owned (shards non-NULL) */
};

/* ---- the replica -------------------------------------------------------- */

/* The replica index of `item`, created (initial row, statistics 0) when
 * absent; -1 when out of memory. */
static inline int32_t replica_item(live *l, int64_t item) {
    int created = 0;
    int32_t idx = rowset_insert(l->items, item, &created);
    if (idx >= 0 && created)
        rows_init(rowset_row(l->items, idx), ROWS_ITEM, l->k, l->o.seed, l->o.init_std, item);
    return idx;
}

static inline rows_stats replica_stats(const live *l, int32_t ei) {
    rows_stats st;
    memcpy(&st, rowset_row_const(l->items, ei) + l->row_dim, sizeof(st));
    return st;
}

static inline void replica_stats_add(live *l, int32_t ei, int64_t dcount, double dsum) {
    rows_stats st = replica_stats(l, ei);
    st.count += dcount;
    st.sum += dsum;
    memcpy(rowset_row(l->items, ei) + l->row_dim, &st, sizeof(st));
}

static inline int32_t home_of(const live *l, int64_t item) {
    return rows_item_partition(item, l->n_parts);
}

/* Replica row ei (of `item`) changed: publish it (class cls) and, when its
 * home is owned here, flush it at the home's next row flush. */
static inline void item_changed(live *l, int32_t ei, int64_t item, shard_class cls) {
    rowset_mark(l->items, cls == SHARD_TRAINING ? ITEM_TRAIN_PUBLISH : ROWSET_PUBLISH, ei);
    shard *h = l->shards[home_of(l, item)];
    if (h) {
        int32_t hi = shard_home_item(h, item);
        if (hi >= 0)
            rowset_mark(h->home, SHARD_HOME_FLUSH, hi);
    }
}

static inline void add_vec(float *dst, const float *src, int n, float sign) {
    for (int f = 0; f < n; f++)
        dst[f] += sign * src[f];
}

#endif
