/* ds_index.c: the raw id -> dense index hash (see ds_index.h).
 *
 * DESIGN: one flat array of (key, value) slots, capacity a power of two,
 * load factor at most 1/2, linear probing, Fibonacci hashing of the key.
 * There is no deletion, so probing needs no tombstones. MovieLens ids are
 * small consecutive integers; multiplying by 2^64/phi spreads them evenly
 * over the table, and the few thousand slots of a typical index stay in
 * cache while a million ratings are loaded. */
#include "ds_index.h"

#include <stdlib.h>

#define EMPTY_KEY INT64_MIN

typedef struct slot {
    int64_t key;
    int32_t value;
} slot;

struct ds_index {
    slot *slots;
    size_t cap;  /* power of two */
    int bits;    /* log2(cap) */
    int32_t len; /* keys stored */
};

static size_t slot_of(int64_t key, int bits) {
    return (size_t)(((uint64_t)key * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
}

static slot *slots_new(size_t cap) {
    slot *s = malloc(cap * sizeof(*s));
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < cap; i++)
        s[i].key = EMPTY_KEY;
    return s;
}

ds_index *ds_index_new(size_t expected) {
    ds_index *ix = calloc(1, sizeof(*ix));
    if (ix == NULL)
        return NULL;
    ix->bits = 4;
    while (((size_t)1 << ix->bits) < expected * 2 && ix->bits < 40)
        ix->bits++;
    ix->cap = (size_t)1 << ix->bits;
    ix->slots = slots_new(ix->cap);
    if (ix->slots == NULL) {
        free(ix);
        return NULL;
    }
    return ix;
}

void ds_index_destroy(ds_index *ix) {
    if (ix == NULL)
        return;
    free(ix->slots);
    free(ix);
}

int32_t ds_index_get(const ds_index *ix, int64_t key) {
    if (ix == NULL || key == EMPTY_KEY)
        return -1;
    size_t mask = ix->cap - 1;
    for (size_t i = slot_of(key, ix->bits);; i = (i + 1) & mask) {
        if (ix->slots[i].key == key)
            return ix->slots[i].value;
        if (ix->slots[i].key == EMPTY_KEY)
            return -1;
    }
}

static int index_grow(ds_index *ix) {
    int bits = ix->bits + 1;
    size_t cap = (size_t)1 << bits;
    slot *s = slots_new(cap);
    if (s == NULL)
        return -1;
    for (size_t j = 0; j < ix->cap; j++) {
        if (ix->slots[j].key == EMPTY_KEY)
            continue;
        size_t i = slot_of(ix->slots[j].key, bits);
        while (s[i].key != EMPTY_KEY)
            i = (i + 1) & (cap - 1);
        s[i] = ix->slots[j];
    }
    free(ix->slots);
    ix->slots = s;
    ix->cap = cap;
    ix->bits = bits;
    return 0;
}

int32_t ds_index_intern(ds_index *ix, int64_t key, int *is_new) {
    *is_new = 0;
    if (key == EMPTY_KEY)
        return -1;
    size_t mask = ix->cap - 1;
    size_t i = slot_of(key, ix->bits);
    for (; ix->slots[i].key != EMPTY_KEY; i = (i + 1) & mask)
        if (ix->slots[i].key == key)
            return ix->slots[i].value;
    if (ix->len == INT32_MAX)
        return -1;
    if ((size_t)(ix->len + 1) * 2 > ix->cap) {
        if (index_grow(ix) != 0)
            return -1;
        mask = ix->cap - 1;
        for (i = slot_of(key, ix->bits); ix->slots[i].key != EMPTY_KEY; i = (i + 1) & mask)
            ;
    }
    ix->slots[i].key = key;
    ix->slots[i].value = ix->len;
    *is_new = 1;
    return ix->len++;
}

int32_t ds_index_count(const ds_index *ix) {
    return ix ? ix->len : 0;
}
