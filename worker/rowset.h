/* rowset.h: a table of float rows keyed by a 64-bit raw id (a user or an
 * item), with stable dense indices and marks. The worker keeps each
 * partition's user rows, its home items' statistics and every item's
 * replica row in rowsets; the store writes back only the rows marked since
 * the last checkpoint, the publisher only the rows marked for publishing.
 *
 * Rows are `dim` floats. Indices are dense (0..n-1, in insertion order) and
 * stay valid for the rowset's lifetime; row pointers stay valid until the
 * next insertion (the slab may move). There is no removal.
 *
 * Marks: ROWSET_MARK_SETS independent sets (the caller names them: e.g.
 * "dirty for the checkpoint", "to publish", "changed by training"). A row is
 * in a set at most once; listing a set visits only its rows. */
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

#define ROWSET_MARK_SETS 4

/* Put row idx into mark set `set` (0..ROWSET_MARK_SETS-1); a no-op when it
 * is there already. O(1), never allocates (lists grow with the rows). */
void rowset_mark(rowset *rs, int set, int32_t idx);
/* 1 when row idx is in `set`. */
int rowset_is_marked(const rowset *rs, int set, int32_t idx);
/* The indices in `set`, in marking order (borrowed until the next call that
 * changes the rowset). */
const int32_t *rowset_marked(const rowset *rs, int set, size_t *n);
/* Empty `set`. */
void rowset_clear_marks(rowset *rs, int set);

/* The two sets most callers mean: ROWSET_DIRTY (changed since the last
 * checkpoint) and ROWSET_PUBLISH (changed since last published). */
enum { ROWSET_DIRTY = 0, ROWSET_PUBLISH = 1 };
void rowset_mark_dirty(rowset *rs, int32_t idx);
const int32_t *rowset_dirty(const rowset *rs, size_t *n);
void rowset_clear_dirty(rowset *rs);
void rowset_mark_publish(rowset *rs, int32_t idx);
const int32_t *rowset_to_publish(const rowset *rs, size_t *n);
void rowset_clear_publish(rowset *rs);

/* Remove every row and every mark (indices restart at 0). */
void rowset_clear(rowset *rs);

#endif
