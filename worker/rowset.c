/* rowset.c: open-addressing hash (linear probing, power-of-two capacity,
 * load <= 1/2) from raw id to dense index, over a slab of rows. Keys and
 * rows live in parallel arrays indexed by the dense index; a hash slot holds
 * the key beside index+1 (0 = empty slot), so a lookup reads one cache line
 * of the hash and none of the key array (the worker does several lookups
 * per rating, each a likely cache miss at scale). Marks are a byte per row (bit s: in set s) plus
 * one list per set, so marking is O(1) and a checkpoint or a publish visits
 * only the changed rows. */
#include "rowset.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    int64_t key;
    int32_t idx; /* index+1, 0 = empty */
} slot;

struct rowset {
    int dim;
    int32_t n, cap;                  /* rows used / allocated */
    slot *slots;                     /* the hash */
    uint32_t n_slots;                /* power of two */
    int64_t *keys;                   /* cap */
    float *rows;                     /* cap * dim */
    uint8_t *marks;                  /* cap: bit s = in set s */
    int32_t *list[ROWSET_MARK_SETS]; /* cap each: the set's rows in marking order */
    size_t n_list[ROWSET_MARK_SETS];
};

static uint32_t hash_key(int64_t key) {
    uint64_t z = (uint64_t)key * 0x9e3779b97f4a7c15ULL;
    z ^= z >> 32;
    return (uint32_t)z;
}

rowset *rowset_new(int dim) {
    if (dim <= 0)
        return NULL;
    rowset *rs = calloc(1, sizeof(*rs));
    if (rs == NULL)
        return NULL;
    rs->dim = dim;
    rs->n_slots = 64;
    rs->slots = calloc(rs->n_slots, sizeof(*rs->slots));
    if (rs->slots == NULL) {
        free(rs);
        return NULL;
    }
    return rs;
}

void rowset_destroy(rowset *rs) {
    if (rs == NULL)
        return;
    free(rs->slots);
    free(rs->keys);
    free(rs->rows);
    free(rs->marks);
    for (int m = 0; m < ROWSET_MARK_SETS; m++)
        free(rs->list[m]);
    free(rs);
}

int rowset_dim(const rowset *rs) {
    return rs->dim;
}

int32_t rowset_size(const rowset *rs) {
    return rs->n;
}

int32_t rowset_find(const rowset *rs, int64_t key) {
    uint32_t mask = rs->n_slots - 1;
    for (uint32_t h = hash_key(key) & mask;; h = (h + 1) & mask) {
        const slot *s = &rs->slots[h];
        if (s->idx == 0)
            return -1;
        if (s->key == key)
            return s->idx - 1;
    }
}

static void place(slot *slots, uint32_t n_slots, int64_t key, int32_t idx) {
    uint32_t mask = n_slots - 1;
    uint32_t h = hash_key(key) & mask;
    while (slots[h].idx != 0)
        h = (h + 1) & mask;
    slots[h].key = key;
    slots[h].idx = idx + 1;
}

static int grow_slots(rowset *rs) {
    uint32_t n_slots = rs->n_slots * 2;
    slot *slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (int32_t i = 0; i < rs->n; i++)
        place(slots, n_slots, rs->keys[i], i);
    free(rs->slots);
    rs->slots = slots;
    rs->n_slots = n_slots;
    return 0;
}

static int grow_rows(rowset *rs) {
    int32_t cap = rs->cap ? rs->cap * 2 : 64;
    int64_t *keys = realloc(rs->keys, (size_t)cap * sizeof(*keys));
    if (keys == NULL)
        return -1;
    rs->keys = keys;
    float *rows = realloc(rs->rows, (size_t)cap * (size_t)rs->dim * sizeof(*rows));
    if (rows == NULL)
        return -1;
    rs->rows = rows;
    uint8_t *marks = realloc(rs->marks, (size_t)cap);
    if (marks == NULL)
        return -1;
    rs->marks = marks;
    for (int m = 0; m < ROWSET_MARK_SETS; m++) {
        int32_t *list = realloc(rs->list[m], (size_t)cap * sizeof(*list));
        if (list == NULL)
            return -1;
        rs->list[m] = list;
    }
    rs->cap = cap;
    return 0;
}

int32_t rowset_insert(rowset *rs, int64_t key, int *created) {
    int32_t idx = rowset_find(rs, key);
    if (created)
        *created = 0;
    if (idx >= 0)
        return idx;
    if ((uint32_t)(rs->n + 1) * 2 > rs->n_slots && grow_slots(rs) != 0)
        return -1;
    if (rs->n == rs->cap && grow_rows(rs) != 0)
        return -1;
    idx = rs->n++;
    rs->keys[idx] = key;
    memset(rs->rows + (size_t)idx * (size_t)rs->dim, 0, (size_t)rs->dim * sizeof(float));
    rs->marks[idx] = 0;
    place(rs->slots, rs->n_slots, key, idx);
    if (created)
        *created = 1;
    return idx;
}

int64_t rowset_key(const rowset *rs, int32_t idx) {
    return rs->keys[idx];
}

float *rowset_row(rowset *rs, int32_t idx) {
    return rs->rows + (size_t)idx * (size_t)rs->dim;
}

const float *rowset_row_const(const rowset *rs, int32_t idx) {
    return rs->rows + (size_t)idx * (size_t)rs->dim;
}

void rowset_mark(rowset *rs, int set, int32_t idx) {
    uint8_t bit = (uint8_t)(1u << set);
    if (rs->marks[idx] & bit)
        return;
    rs->marks[idx] |= bit;
    rs->list[set][rs->n_list[set]++] = idx;
}

int rowset_is_marked(const rowset *rs, int set, int32_t idx) {
    return (rs->marks[idx] >> set) & 1;
}

const int32_t *rowset_marked(const rowset *rs, int set, size_t *n) {
    *n = rs->n_list[set];
    return rs->list[set];
}

void rowset_clear_marks(rowset *rs, int set) {
    uint8_t keep = (uint8_t) ~(1u << set);
    for (size_t i = 0; i < rs->n_list[set]; i++)
        rs->marks[rs->list[set][i]] &= keep;
    rs->n_list[set] = 0;
}

void rowset_mark_dirty(rowset *rs, int32_t idx) {
    rowset_mark(rs, ROWSET_DIRTY, idx);
}

const int32_t *rowset_dirty(const rowset *rs, size_t *n) {
    return rowset_marked(rs, ROWSET_DIRTY, n);
}

void rowset_clear_dirty(rowset *rs) {
    rowset_clear_marks(rs, ROWSET_DIRTY);
}

void rowset_mark_publish(rowset *rs, int32_t idx) {
    rowset_mark(rs, ROWSET_PUBLISH, idx);
}

const int32_t *rowset_to_publish(const rowset *rs, size_t *n) {
    return rowset_marked(rs, ROWSET_PUBLISH, n);
}

void rowset_clear_publish(rowset *rs) {
    rowset_clear_marks(rs, ROWSET_PUBLISH);
}

void rowset_clear(rowset *rs) {
    memset(rs->slots, 0, rs->n_slots * sizeof(*rs->slots));
    rs->n = 0;
    for (int m = 0; m < ROWSET_MARK_SETS; m++)
        rs->n_list[m] = 0;
}
