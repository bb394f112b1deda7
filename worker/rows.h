/* rows.h: the one owner of the model's rows: their layout, their encoding in
 * Redis, the seeded row of an id never seen, the copy to and from an
 * mf_model, an item's statistics and their encoding, and which partition a
 * user or an item belongs to. Every other module (store, shard, live,
 * publish, import, state, topic_model) asks here instead of writing `1 + k`
 * or a partition formula itself.
 *
 *   user row  ROWS_USER  bias, k factors, row state (2 floats)   3 + k floats
 *   item row  ROWS_ITEM  bias, k factors, row state (2 floats)   3 + k floats
 *
 * The first 1 + k floats of either (bias, then factors: rows_vector_dim) are
 * what the model predicts with and what the factors topic publishes. The
 * row state is the online learner's per-row state (core's mf_row_state:
 * passes, n; 8 bytes) at rows_state_index: zero for a new row, kept with
 * the row in Redis so a restart resumes the row's learning-rate schedule.
 *
 * Item statistics (rows_stats: ratings behind the item and their sum) are
 * not part of the row: they are exact (events), the row is learned (best
 * effort); docs/store.md. Encoded as int64 count + float64 sum, 16 bytes.
 *
 * Encoding: the row's floats, float32 little-endian (rows.c refuses to build
 * on a big-endian host).
 *
 * Placement: user U belongs to the partition Java's default partitioner
 * gives the key "U" (murmur2 of the decimal id, as producers key ratings and
 * forget requests); item I's home is partition I mod P: the one copy of its
 * durable row and statistics lives in P's state, written by P's owner. */
#ifndef UL_ROWS_H
#define UL_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "mf.h"

typedef enum rows_kind { ROWS_USER = 0, ROWS_ITEM = 1 } rows_kind;

#define ROWS_BIAS 0    /* index of the bias in every row */
#define ROWS_FACTORS 1 /* index of the first of the k factors */

/* Floats in a row of `kind`. */
int rows_dim(rows_kind kind, int k);
/* Floats of the bias and factors (1 + k): the part predicted with and
 * published. */
int rows_vector_dim(int k);
/* Index of the row state (2 floats: passes, n) in a row of either kind
 * (1 + k). */
int rows_state_index(int k);
#define ROWS_STATE_FLOATS 2
/* The k of a row of `dim` floats of `kind` (for messages about stored rows). */
int rows_k(rows_kind kind, int dim);

/* The deterministic initial row of an id never seen: bias 0, factors
 * N(0, init_std^2) drawn from rng(seed, kind, id), row state 0. Every worker
 * and every replay draws the same row. */
void rows_init(float *row, rows_kind kind, int k, uint64_t seed, float init_std, int64_t id);

/* The stored value of a row of `dim` floats: *len bytes at the returned
 * pointer (borrowed from `row`). */
const void *rows_value(const float *row, int dim, size_t *len);
/* Decode a stored value into a row of `dim` floats: 0, or -1 when `len` is
 * not the size of such a row (nothing written). */
int rows_from_value(float *row, int dim, const void *val, size_t len);
/* Bytes of the stored value of a row of `dim` floats. */
size_t rows_value_size(int dim);

/* Copy a row's bias and factors into row `idx` of m's users or items, or
 * back (the row state is not part of an mf_model and is left alone). */
void rows_to_model(const float *row, rows_kind kind, mf_model *m, int32_t idx);
void rows_from_model(float *row, rows_kind kind, const mf_model *m, int32_t idx);

/* A one-user, one-item model whose rows are `urow` and `irow` (borrowed),
 * for an SGD step on them in place. */
mf_model rows_pair_model(float *urow, float *irow, int k, float mean, float rmin, float rmax);

/* An item's statistics: the ratings behind it and their sum (exact). */
typedef struct rows_stats {
    int64_t count;
    double sum;
} rows_stats;

#define ROWS_STATS_BYTES 16
/* Encode into out[ROWS_STATS_BYTES]; decode: 0, or -1 when `len` is not
 * ROWS_STATS_BYTES (nothing written). */
void rows_stats_value(const rows_stats *st, unsigned char *out);
int rows_stats_from_value(rows_stats *st, const void *val, size_t len);

/* The partition of user `user` among n, and the home partition of item
 * `item`. */
int32_t rows_user_partition(int64_t user, int32_t n);
int32_t rows_item_partition(int64_t item, int32_t n);

#endif
