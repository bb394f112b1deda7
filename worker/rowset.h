/* rowset.h: a table of float rows keyed by a 64-bit raw id (a user or an
 * item), with stable dense indices and dirty tracking. The worker keeps each
 * partition's user rows and item deltas, and its effective item rows, in
 * rowsets; the store writes back only the rows marked dirty since the last
 * checkpoint.
 *
 * Rows are `dim` floats. Indices are dense (0..n-1, in insertion order) and
 * stay valid for the rowset's lifetime; row pointers stay valid until the
 * next insertion (the slab may move). There is no removal. */
#ifndef UL_ROWSET_H
#define UL_ROWSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct rowset rowset;

/* An empty rowset of `dim`-float rows; NULL on allocation failure. */
rowset *rowset_new(int dim);
void rowset_destroy(rowset *rs);

int rowset_dim(const rowset *rs);
int32_t rowset_size(const rowset *rs);

/* The index of `key`, or -1 when absent. */
int32_t rowset_find(const rowset *rs, int64_t key);
/* The index of `key`, inserting a zero row when absent (*created = 1 then;
 * `created` may be NULL). Returns -1 on allocation failure. */
int32_t rowset_insert(rowset *rs, int64_t key, int *created);

int64_t rowset_key(const rowset *rs, int32_t idx);
float *rowset_row(rowset *rs, int32_t idx);
const float *rowset_row_const(const rowset *rs, int32_t idx);

/* Dirty tracking: mark a row changed since the last checkpoint; list the
 * dirty indices (borrowed until the next call that changes the rowset);
 * clear the marks once they are durable. */
void rowset_mark_dirty(rowset *rs, int32_t idx);
const int32_t *rowset_dirty(const rowset *rs, size_t *n);
void rowset_clear_dirty(rowset *rs);

/* Publish marks: a second set, independent of the dirty marks, for rows
 * changed since they were last published (the worker publishes on its own
 * schedule, not at checkpoints). Same contract as the dirty marks. */
void rowset_mark_publish(rowset *rs, int32_t idx);
const int32_t *rowset_to_publish(const rowset *rs, size_t *n);
void rowset_clear_publish(rowset *rs);

/* Remove every row and every mark (indices restart at 0). */
void rowset_clear(rowset *rs);

#endif
