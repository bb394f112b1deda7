/* shard.c: one partition's state (see shard.h).
 *
 * DESIGN
 * - Histories are kept in a buffer twice the retention so that dropping the
 *   oldest rating is amortised O(1) (the live entries slide back to the
 *   front once the buffer's end is reached), while the logical content is
 *   always exactly the last `retention` ratings: a replay from Redis sees the
 *   same histories as an uninterrupted run. The checkpoint appends what was
 *   added (hist_added) unless something else changed the history
 *   (SHARD_HIST_REWRITE: it is written whole).
 * - Every per-user array is parallel to the users rowset and grown in one
 *   place (grow_users), by shard_user, the one way a user is added.
 * - Statistics (rows_stats) and eviction summaries live in rowsets of
 *   floats sized to hold them, accessed by memcpy (statistics) or as the
 *   struct (summaries, whose rows are 8-byte aligned: 280 bytes each). */
#include "shard.h"

#include <stdlib.h>
#include <string.h>

#include "ul_buf.h"

#define STATS_DIM ((int)(sizeof(rows_stats) / sizeof(float)))
#define EVICT_DIM ((int)(sizeof(shard_evict) / sizeof(float)))
#define BLOOM_HASHES 4

_Static_assert(sizeof(shard_evict) % 8 == 0, "eviction rows keep 8-byte alignment");
_Static_assert(sizeof(rows_stats) == 16, "rows_stats is 16 bytes");

void forget_req_free(forget_req *fr) {
    if (fr == NULL)
        return;
    free(fr->request_id);
    free(fr->items);
    memset(fr, 0, sizeof(*fr));
}

shard *shard_new(int32_t partition, int k, uint64_t seed, float init_std, uint32_t retention) {
    shard *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->partition = partition;
    s->k = k;
    s->seed = seed;
    s->init_std = init_std;
    s->retention = retention ? retention : 1;
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        s->meta.next_offset[t] = s->durable_offset[t] = -1;
    s->meta.rows_off = -1;
    s->replicated = 1;
    s->users = rowset_new(rows_dim(ROWS_USER, k));
    s->evicts = rowset_new(EVICT_DIM);
    s->home = rowset_new(STATS_DIM);
    s->pend_stats = rowset_new(STATS_DIM);
    s->pend_rows = rowset_new(rows_vector_dim(k));
    if (s->users == NULL || s->evicts == NULL || s->home == NULL || s->pend_stats == NULL ||
        s->pend_rows == NULL) {
        shard_destroy(s);
        return NULL;
    }
    return s;
}

static void outbox_list_free(outbox_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].blob);
    free(l->v);
    free(l->removed);
    memset(l, 0, sizeof(*l));
}

void shard_destroy(shard *s) {
    if (s == NULL)
        return;
    for (int32_t i = 0; i < s->users_cap; i++)
        free(s->hists[i].v);
    free(s->hists);
    free(s->hist_dirty);
    free(s->hist_added);
    free(s->hist_dirty_list);
    free(s->user_flags);
    for (size_t i = 0; i < s->n_pending; i++)
        forget_req_free(&s->pending[i]);
    free(s->pending);
    free(s->removed);
    outbox_list_free(&s->outbox);
    outbox_list_free(&s->deliveries);
    free(s->seen);
    free(s->seen_dirty);
    free(s->rows_seen);
    rowset_destroy(s->users);
    rowset_destroy(s->evicts);
    rowset_destroy(s->home);
    rowset_destroy(s->pend_stats);
    rowset_destroy(s->pend_rows);
    free(s);
}

/* ---- users -------------------------------------------------------------- */

static int grow_array(void **arr, size_t elem, int32_t old_cap, int32_t cap) {
    unsigned char *p = realloc(*arr, (size_t)cap * elem);
    if (p == NULL)
        return -1;
    memset(p + (size_t)old_cap * elem, 0, (size_t)(cap - old_cap) * elem);
    *arr = p;
    return 0;
}

/* Room for `need` users in every per-user array. */
static int grow_users(shard *s, int32_t need) {
    if (need <= s->users_cap)
        return 0;
    int32_t cap = s->users_cap ? s->users_cap : 64;
    while (cap < need)
        cap *= 2;
    if (grow_array((void **)&s->hists, sizeof(*s->hists), s->users_cap, cap) != 0 ||
        grow_array((void **)&s->hist_dirty, sizeof(*s->hist_dirty), s->users_cap, cap) != 0 ||
        grow_array((void **)&s->hist_added, sizeof(*s->hist_added), s->users_cap, cap) != 0 ||
        grow_array((void **)&s->hist_dirty_list, sizeof(*s->hist_dirty_list), s->users_cap, cap) !=
            0 ||
        grow_array((void **)&s->user_flags, sizeof(*s->user_flags), s->users_cap, cap) != 0)
        return -1; /* the arrays grown so far keep their new size: harmless */
    s->users_cap = cap;
    return 0;
}

int32_t shard_user(shard *s, int64_t raw) {
    int created = 0;
    int32_t idx = rowset_insert(s->users, raw, &created);
    if (idx < 0 || grow_users(s, idx + 1) != 0)
        return -1;
    if (created)
        rows_init(rowset_row(s->users, idx), ROWS_USER, s->k, s->seed, s->init_std, raw);
    return idx;
}

void shard_mark_user(shard *s, int32_t uidx, shard_class cls) {
    if (cls == SHARD_TRAINING) {
        rowset_mark(s->users, SHARD_USER_TRAIN_DIRTY, uidx);
        rowset_mark(s->users, SHARD_USER_TRAIN_PUBLISH, uidx);
    } else {
        rowset_mark(s->users, SHARD_USER_DIRTY, uidx);
        rowset_mark(s->users, SHARD_USER_PUBLISH, uidx);
    }
}

/* ---- histories ---------------------------------------------------------- */

hist *shard_hist(shard *s, int32_t uidx) {
    return uidx >= 0 && uidx < s->users_cap ? &s->hists[uidx] : NULL;
}

static void hist_mark(shard *s, int32_t uidx, uint8_t bits) {
    if (!(s->hist_dirty[uidx] & SHARD_HIST_DIRTY))
        s->hist_dirty_list[s->n_hist_dirty++] = uidx;
    s->hist_dirty[uidx] |= (uint8_t)(bits | SHARD_HIST_DIRTY);
}

void shard_hist_touch(shard *s, int32_t uidx) {
    hist_mark(s, uidx, SHARD_HIST_REWRITE);
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Bit positions of `item` in the Bloom filter: BLOOM_HASHES of 11 bits each
 * from one 64-bit hash. */
static void bloom_bits(int64_t item, uint32_t *bits) {
    uint64_t h = mix64((uint64_t)item + 0x9e3779b97f4a7c15ULL);
    for (int i = 0; i < BLOOM_HASHES; i++)
        bits[i] = (uint32_t)(h >> (11 * i)) & (SHARD_EVICT_BLOOM * 8 - 1);
}

int shard_evict_may_contain(const shard_evict *e, int64_t item) {
    uint32_t bits[BLOOM_HASHES];
    if (e == NULL || e->count == 0)
        return 0;
    bloom_bits(item, bits);
    for (int i = 0; i < BLOOM_HASHES; i++)
        if (!(e->bloom[bits[i] >> 3] & (1u << (bits[i] & 7))))
            return 0;
    return 1;
}

static shard_evict *evict_row(shard *s, int64_t user, int create) {
    int32_t i = create ? rowset_insert(s->evicts, user, NULL) : rowset_find(s->evicts, user);
    return i < 0 ? NULL : (shard_evict *)(void *)rowset_row(s->evicts, i);
}

const shard_evict *shard_evicted(const shard *s, int32_t uidx) {
    int32_t i = rowset_find(s->evicts, rowset_key(s->users, uidx));
    return i < 0 ? NULL : (const shard_evict *)(const void *)rowset_row_const(s->evicts, i);
}

int shard_evict_put(shard *s, int64_t user, const shard_evict *e) {
    shard_evict *row = evict_row(s, user, 1);
    if (row == NULL)
        return -1;
    *row = *e;
    return 0;
}

/* The oldest entry of uidx's history leaves it: into the summary. */
static int evict_add(shard *s, int32_t uidx, const hist_entry *e) {
    int64_t user = rowset_key(s->users, uidx);
    shard_evict *row = evict_row(s, user, 1);
    if (row == NULL)
        return -1;
    if (row->count == 0 || e->time < row->tmin)
        row->tmin = e->time;
    if (row->count == 0 || e->time > row->tmax)
        row->tmax = e->time;
    row->count++;
    uint32_t bits[BLOOM_HASHES];
    bloom_bits(e->item, bits);
    for (int i = 0; i < BLOOM_HASHES; i++)
        row->bloom[bits[i] >> 3] |= (uint8_t)(1u << (bits[i] & 7));
    rowset_mark_dirty(s->evicts, rowset_find(s->evicts, user));
    return 0;
}

int shard_hist_append(shard *s, int32_t uidx, const hist_entry *e) {
    hist *h = shard_hist(s, uidx);
    if (h == NULL)
        return -1;
    if (h->n == s->retention) {
        if (evict_add(s, uidx, &h->v[h->start]) != 0)
            return -1;
        h->start++;
        h->n--;
    }
    if (h->start + h->n == h->cap) {
        if (h->start > 0) {
            memmove(h->v, h->v + h->start, h->n * sizeof(*h->v));
            h->start = 0;
        } else {
            uint32_t cap = h->cap ? h->cap * 2 : 4; /* most users of a big catalogue have few */
            if (cap > 2 * s->retention)
                cap = 2 * s->retention;
            hist_entry *v = realloc(h->v, cap * sizeof(*v));
            if (v == NULL)
                return -1;
            h->v = v;
            h->cap = cap;
        }
    }
    h->v[h->start + h->n++] = *e;
    if (s->hist_added[uidx] < s->retention)
        s->hist_added[uidx]++;
    hist_mark(s, uidx, 0);
    return 0;
}

/* ---- forget buffer and outboxes ---------------------------------------- */

int shard_pending_add(shard *s, forget_req *fr) {
    forget_req *p = ul_grow(s->pending, &s->cap_pending, s->n_pending + 1, sizeof(*p));
    if (p == NULL)
        return -1;
    s->pending = p;
    s->pending[s->n_pending++] = *fr;
    memset(fr, 0, sizeof(*fr));
    return 0;
}

int shard_pending_remove(shard *s, size_t i) {
    int64_t *r = ul_grow(s->removed, &s->cap_removed, s->n_removed + 1, sizeof(*r));
    if (r == NULL)
        return -1;
    s->removed = r;
    s->removed[s->n_removed++] = s->pending[i].offset;
    forget_req_free(&s->pending[i]);
    memmove(s->pending + i, s->pending + i + 1, (s->n_pending - i - 1) * sizeof(*s->pending));
    s->n_pending--;
    return 0;
}

int outbox_list_add(outbox_list *l, uint64_t key, unsigned char *blob, size_t len) {
    outbox_entry *o = ul_grow(l->v, &l->cap, l->n + 1, sizeof(*o));
    if (o == NULL)
        return -1;
    l->v = o;
    l->v[l->n++] = (outbox_entry){key, blob, len, 1, 0};
    return 0;
}

outbox_entry *outbox_list_find(outbox_list *l, uint64_t key) {
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].version == key)
            return &l->v[i];
    return NULL;
}

int outbox_list_remove(outbox_list *l, uint64_t key) {
    outbox_entry *e = outbox_list_find(l, key);
    if (e == NULL)
        return 0;
    uint64_t *r = ul_grow(l->removed, &l->cap_removed, l->n_removed + 1, sizeof(*r));
    if (r == NULL)
        return -1;
    l->removed = r;
    l->removed[l->n_removed++] = key;
    free(e->blob);
    size_t i = (size_t)(e - l->v);
    memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof(*l->v));
    l->n--;
    return 0;
}

int shard_outbox_add(shard *s, uint64_t version, unsigned char *blob, size_t len) {
    return outbox_list_add(&s->outbox, version, blob, len);
}

int shard_outbox_remove(shard *s, uint64_t version) {
    return outbox_list_remove(&s->outbox, version);
}

/* ---- home items, seen, pending deltas ---------------------------------- */

int32_t shard_home_item(shard *s, int64_t item) {
    return rowset_insert(s->home, item, NULL); /* a new row is zero: 0 ratings, sum 0 */
}

static rows_stats stats_get(const rowset *rs, int32_t i) {
    rows_stats st;
    memcpy(&st, rowset_row_const(rs, i), sizeof(st));
    return st;
}

static void stats_add(rowset *rs, int32_t i, int64_t dcount, double dsum) {
    rows_stats st = stats_get(rs, i);
    st.count += dcount;
    st.sum += dsum;
    memcpy(rowset_row(rs, i), &st, sizeof(st));
}

rows_stats shard_home_stats(const shard *s, int32_t hi) {
    return stats_get(s->home, hi);
}

void shard_home_add(shard *s, int32_t hi, int64_t dcount, double dsum) {
    stats_add(s->home, hi, dcount, dsum);
    rowset_mark(s->home, SHARD_HOME_STATS, hi);
}

int64_t shard_seen(const shard *s, int32_t q) {
    return q >= 0 && q < s->n_seen ? s->seen[q] : -1;
}

int shard_seen_set(shard *s, int32_t q, int64_t seq) {
    if (q < 0)
        return -1;
    if (q >= s->n_seen) {
        int32_t n = q + 1;
        int64_t *v = realloc(s->seen, (size_t)n * sizeof(*v));
        if (v == NULL)
            return -1;
        s->seen = v;
        uint8_t *d = realloc(s->seen_dirty, (size_t)n);
        if (d == NULL)
            return -1;
        s->seen_dirty = d;
        for (int32_t i = s->n_seen; i < n; i++) {
            s->seen[i] = -1;
            s->seen_dirty[i] = 0;
        }
        s->n_seen = n;
    }
    s->seen[q] = seq;
    s->seen_dirty[q] = 1;
    s->any_seen_dirty = 1;
    return 0;
}

int shard_rows_seen_set(shard *s, const int64_t *seq, int32_t n) {
    if (n > s->n_rows_seen) {
        int64_t *v = realloc(s->rows_seen, (size_t)n * sizeof(*v));
        if (v == NULL)
            return -1;
        s->rows_seen = v;
        s->n_rows_seen = n;
    }
    memcpy(s->rows_seen, seq, (size_t)n * sizeof(*seq));
    s->n_rows_seen = n;
    return 0;
}

int shard_pend(shard *s, int64_t item, int64_t dcount, double dsum, const float *delta) {
    int32_t i = rowset_insert(s->pend_stats, item, NULL);
    int32_t r = delta ? rowset_insert(s->pend_rows, item, NULL) : 0;
    if (i < 0 || r < 0)
        return -1;
    stats_add(s->pend_stats, i, dcount, dsum);
    if (delta) {
        float *row = rowset_row(s->pend_rows, r);
        for (int f = 0; f < rows_vector_dim(s->k); f++)
            row[f] += delta[f];
    }
    return 0;
}

int shard_has_pending(const shard *s) {
    return rowset_size(s->pend_stats) > 0 || rowset_size(s->pend_rows) > 0;
}

void shard_pend_clear(shard *s) {
    rowset_clear(s->pend_stats);
    rowset_clear(s->pend_rows);
}

/* ---- dirty state -------------------------------------------------------- */

int shard_is_dirty(const shard *s) {
    size_t nu, ne, nh;
    rowset_marked(s->users, SHARD_USER_DIRTY, &nu);
    rowset_dirty(s->evicts, &ne);
    rowset_marked(s->home, SHARD_HOME_STATS, &nh);
    int moved = 0;
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        moved |= s->meta.next_offset[t] != s->durable_offset[t];
    return nu || ne || nh || !s->replicated || s->n_hist_dirty || s->n_removed ||
           s->outbox.n_removed || s->deliveries.n_removed || s->any_seen_dirty || moved ||
           shard_has_pending(s) || s->flush_rows;
}

static void outbox_list_saved(outbox_list *l) {
    for (size_t i = 0; i < l->n; i++)
        l->v[i].unsaved = 0;
    l->n_removed = 0;
}

void shard_clear_dirty(shard *s) {
    rowset_clear_marks(s->users, SHARD_USER_DIRTY);
    rowset_clear_dirty(s->evicts);
    rowset_clear_marks(s->home, SHARD_HOME_STATS);
    if (s->flush_rows) {
        rowset_clear_marks(s->users, SHARD_USER_TRAIN_DIRTY);
        rowset_clear_marks(s->home, SHARD_HOME_FLUSH);
        s->flush_rows = 0;
    }
    for (size_t i = 0; i < s->n_hist_dirty; i++) {
        int32_t u = s->hist_dirty_list[i];
        s->hist_dirty[u] = 0;
        s->hist_added[u] = 0;
    }
    s->n_hist_dirty = 0;
    for (size_t i = 0; i < s->n_pending; i++)
        s->pending[i].unsaved = 0;
    s->n_removed = 0;
    outbox_list_saved(&s->outbox);
    outbox_list_saved(&s->deliveries);
    for (int32_t q = 0; q < s->n_seen; q++)
        s->seen_dirty[q] = 0;
    s->any_seen_dirty = 0;
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        s->durable_offset[t] = s->meta.next_offset[t];
}
