/* ds_index.h: a raw id -> dense index map (a direct array for small ids,
 * a hash for the rest) used by the dataset loader and for raw-id lookups
 * afterwards.
 * Keys are any int64 except INT64_MIN (the empty-slot marker); values are
 * the dense indices 0, 1, 2, ... handed out in first-seen order. */
#ifndef UL_DS_INDEX_H
#define UL_DS_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/* An empty index sized for about `expected` keys (it grows as needed).
 * NULL on allocation failure. */
ds_index *ds_index_new(size_t expected);
void ds_index_destroy(ds_index *ix);

/* The dense index of `key`, or -1 when absent. */
int32_t ds_index_get(const ds_index *ix, int64_t key);

/* The dense index of `key`, inserting it as the next index (= the count
 * before the call) when new; *is_new tells which. Returns -1 on allocation
 * failure or when INT32_MAX keys are already stored. */
int32_t ds_index_intern(ds_index *ix, int64_t key, int *is_new);

/* Number of keys stored. */
int32_t ds_index_count(const ds_index *ix);

#endif
