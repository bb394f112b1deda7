/* ds_index.c: the raw id -> dense index map (see ds_index.h).
 *
 * DESIGN: two tables. Raw ids are usually small non-negative integers
 * (MovieLens: 1..N with gaps), so keys in [0, direct_cap) live in a plain
 * array `direct` (4 bytes a slot, -1 = absent): one load, no probing, and
 * ML-20M's 138k users fit in 540 KB, in a core's L2. Every other key goes
 * to a hash of (key, value) slots: capacity a power of two, load factor at
 * most 1/2, linear probing, Fibonacci hashing; no deletion, so no
 * tombstones. The array grows (doubling) to cover a new key when it would
 * stay within MAX_SLOTS_PER_KEY slots per stored key, so sparse or huge ids
 * cost no more memory than the hash would; when it grows, keys of the hash
 * that the new range covers are copied into it. Invariant: a key inside
 * [0, direct_cap) is stored iff direct[key] >= 0; a key outside is stored
 * iff the hash has it. With random-order input (a stream, a shuffled
 * file) the hash alone missed the cache on nearly every rating: 43% of
 * loading a 20M-rating file. */
#include "ds_index.h"

#include <stdlib.h>

#define EMPTY_KEY INT64_MIN
#define DIRECT_MIN 4096        /* first size of the array */
#define MAX_SLOTS_PER_KEY 8    /* array slots allowed per stored key (32 B) */
#define DIRECT_LIMIT (1 << 30) /* largest array, in slots */
#define HASH_START 1024        /* keys the hash is first sized for */

typedef struct slot {
    int64_t key;
    int32_t value;
} slot;

struct ds_index {
    int32_t *direct;    /* direct_cap entries, -1 = absent */
    int64_t direct_cap; /* 0 or a power of two */
    slot *slots;
    size_t cap;     /* power of two */
    int bits;       /* log2(cap) */
    size_t used;    /* occupied hash slots (keys since copied to the array included) */
    int32_t hashed; /* keys whose home is the hash */
    int32_t len;    /* keys stored */
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
    /* Most keys usually end up in the array: start the hash small. */
    if (expected > HASH_START)
        expected = HASH_START;
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
    free(ix->direct);
    free(ix->slots);
    free(ix);
}

static int in_direct(const ds_index *ix, int64_t key) {
    return key >= 0 && key < ix->direct_cap;
}

/* The hash slot holding `key`, or the empty slot where it would go. */
static size_t hash_find(const ds_index *ix, int64_t key) {
    size_t mask = ix->cap - 1;
    size_t i = slot_of(key, ix->bits);
    while (ix->slots[i].key != EMPTY_KEY && ix->slots[i].key != key)
        i = (i + 1) & mask;
    return i;
}

int32_t ds_index_get(const ds_index *ix, int64_t key) {
    if (ix == NULL || key == EMPTY_KEY)
        return -1;
    if (in_direct(ix, key))
        return ix->direct[key];
    size_t i = hash_find(ix, key);
    return ix->slots[i].key == key ? ix->slots[i].value : -1;
}

/* Double the hash, dropping the copies of keys that moved to the array. */
static int hash_grow(ds_index *ix) {
    int bits = ix->bits + 1;
    size_t cap = (size_t)1 << bits;
    slot *s = slots_new(cap);
    if (s == NULL)
        return -1;
    ix->used = 0;
    for (size_t j = 0; j < ix->cap; j++) {
        if (ix->slots[j].key == EMPTY_KEY || in_direct(ix, ix->slots[j].key))
            continue;
        ix->used++;
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

/* Grow the array to cover `key` if that keeps it within budget. Returns 1
 * when the key is now inside it, 0 when it stays out, -1 on allocation
 * failure. */
static int direct_cover(ds_index *ix, int64_t key) {
    if (key < 0 || key >= DIRECT_LIMIT)
        return 0;
    int64_t cap = ix->direct_cap ? ix->direct_cap : DIRECT_MIN;
    while (cap <= key)
        cap *= 2;
    if (cap > DIRECT_MIN && cap > (int64_t)MAX_SLOTS_PER_KEY * ((int64_t)ix->len + 1))
        return 0;
    int32_t *d = realloc(ix->direct, (size_t)cap * sizeof(*d));
    if (d == NULL)
        return -1;
    for (int64_t x = ix->direct_cap; x < cap; x++)
        d[x] = -1;
    ix->direct = d;
    /* Keys of the hash that the array now covers move to it (the hash
     * keeps its copies; lookups in range never read them). */
    for (size_t j = 0; ix->hashed > 0 && j < ix->cap; j++) {
        int64_t k = ix->slots[j].key;
        if (k >= ix->direct_cap && k < cap) {
            d[k] = ix->slots[j].value;
            ix->hashed--;
        }
    }
    ix->direct_cap = cap;
    return 1;
}

int32_t ds_index_intern(ds_index *ix, int64_t key, int *is_new) {
    *is_new = 0;
    if (key == EMPTY_KEY)
        return -1;
    if (in_direct(ix, key) && ix->direct[key] >= 0)
        return ix->direct[key];
    if (!in_direct(ix, key)) {
        size_t i = hash_find(ix, key);
        if (ix->slots[i].key == key)
            return ix->slots[i].value;
    }
    if (ix->len == INT32_MAX)
        return -1;
    int covered = in_direct(ix, key) ? 1 : direct_cover(ix, key);
    if (covered < 0)
        return -1;
    if (covered) {
        ix->direct[key] = ix->len;
    } else {
        if ((ix->used + 1) * 2 > ix->cap && hash_grow(ix) != 0)
            return -1;
        size_t i = hash_find(ix, key);
        ix->slots[i].key = key;
        ix->slots[i].value = ix->len;
        ix->used++;
        ix->hashed++;
    }
    *is_new = 1;
    return ix->len++;
}

int32_t ds_index_count(const ds_index *ix) {
    return ix ? ix->len : 0;
}
