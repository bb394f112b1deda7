/* shard.c: one partition's state. Histories are kept in a buffer twice the
 * retention so that dropping the oldest rating is amortised O(1) (the live
 * entries slide back to the front once the buffer's end is reached), while
 * the logical content is always exactly the last `retention` ratings: a
 * replay from Redis sees the same histories as an uninterrupted run. */
#include "shard.h"

#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "ul_buf.h"

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
    s->users = rowset_new(rows_dim(ROWS_USER, k));
    s->deltas = rowset_new(rows_dim(ROWS_ITEM, k));
    if (s->users == NULL || s->deltas == NULL) {
        shard_destroy(s);
        return NULL;
    }
    return s;
}

void shard_destroy(shard *s) {
    if (s == NULL)
        return;
    for (int32_t i = 0; i < s->hists_cap; i++)
        free(s->hists[i].v);
    free(s->hists);
    free(s->hist_dirty);
    free(s->hist_dirty_list);
    free(s->user_flags);
    free(s->user_passes);
    for (size_t i = 0; i < s->n_pending; i++)
        forget_req_free(&s->pending[i]);
    free(s->pending);
    free(s->removed);
    for (size_t i = 0; i < s->n_outbox; i++)
        free(s->outbox[i].blob);
    free(s->outbox);
    free(s->outbox_removed);
    rowset_destroy(s->users);
    rowset_destroy(s->deltas);
    free(s);
}

int32_t shard_user(shard *s, int64_t raw) {
    int created = 0;
    int32_t idx = rowset_insert(s->users, raw, &created);
    if (idx >= 0 && created)
        rows_init(rowset_row(s->users, idx), ROWS_USER, s->k, s->seed, s->init_std, raw);
    return idx;
}

static int grow_hists(shard *s, int32_t need) {
    int32_t cap = s->hists_cap ? s->hists_cap : 64;
    while (cap < need)
        cap *= 2;
    hist *h = realloc(s->hists, (size_t)cap * sizeof(*h));
    if (h == NULL)
        return -1;
    s->hists = h;
    uint8_t *d = realloc(s->hist_dirty, (size_t)cap);
    if (d == NULL)
        return -1;
    s->hist_dirty = d;
    int32_t *l = realloc(s->hist_dirty_list, (size_t)cap * sizeof(*l));
    if (l == NULL)
        return -1;
    s->hist_dirty_list = l;
    uint8_t *fl = realloc(s->user_flags, (size_t)cap);
    if (fl == NULL)
        return -1;
    s->user_flags = fl;
    float *ps = realloc(s->user_passes, (size_t)cap * sizeof(*ps));
    if (ps == NULL)
        return -1;
    s->user_passes = ps;
    memset(s->user_flags + s->hists_cap, 0, (size_t)(cap - s->hists_cap));
    memset(s->user_passes + s->hists_cap, 0, (size_t)(cap - s->hists_cap) * sizeof(*ps));
    memset(s->hists + s->hists_cap, 0, (size_t)(cap - s->hists_cap) * sizeof(*h));
    memset(s->hist_dirty + s->hists_cap, 0, (size_t)(cap - s->hists_cap));
    s->hists_cap = cap;
    return 0;
}

hist *shard_hist(shard *s, int32_t uidx) {
    if (uidx >= s->hists_cap && grow_hists(s, uidx + 1) != 0)
        return NULL;
    return &s->hists[uidx];
}

void shard_hist_touch(shard *s, int32_t uidx) {
    if (s->hist_dirty[uidx])
        return;
    s->hist_dirty[uidx] = 1;
    s->hist_dirty_list[s->n_hist_dirty++] = uidx;
}

int shard_hist_append(shard *s, int32_t uidx, const hist_entry *e) {
    hist *h = shard_hist(s, uidx);
    if (h == NULL)
        return -1;
    if (h->n == s->retention) {
        h->start++;
        h->n--;
    }
    if (h->start + h->n == h->cap) {
        if (h->start > 0) {
            memmove(h->v, h->v + h->start, h->n * sizeof(*h->v));
            h->start = 0;
        } else {
            uint32_t cap = h->cap ? h->cap * 2 : 8;
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
    shard_hist_touch(s, uidx);
    return 0;
}

void shard_mark_user(shard *s, int32_t uidx, shard_class cls) {
    (void)cls; /* contract: replaced by state2 (train-dirty rows wait for a row flush) */
    rowset_mark_dirty(s->users, uidx);
    rowset_mark_publish(s->users, uidx);
}

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

int shard_outbox_add(shard *s, uint64_t version, unsigned char *blob, size_t len) {
    outbox_entry *o = ul_grow(s->outbox, &s->cap_outbox, s->n_outbox + 1, sizeof(*o));
    if (o == NULL)
        return -1;
    s->outbox = o;
    outbox_entry *e = &s->outbox[s->n_outbox++];
    e->version = version;
    e->blob = blob;
    e->len = len;
    e->unsaved = 1;
    e->inflight = 0;
    return 0;
}

int shard_outbox_remove(shard *s, uint64_t version) {
    size_t i = 0;
    while (i < s->n_outbox && s->outbox[i].version != version)
        i++;
    if (i == s->n_outbox)
        return 0;
    uint64_t *r =
        ul_grow(s->outbox_removed, &s->cap_outbox_removed, s->n_outbox_removed + 1, sizeof(*r));
    if (r == NULL)
        return -1;
    s->outbox_removed = r;
    s->outbox_removed[s->n_outbox_removed++] = version;
    free(s->outbox[i].blob);
    memmove(s->outbox + i, s->outbox + i + 1, (s->n_outbox - i - 1) * sizeof(*s->outbox));
    s->n_outbox--;
    return 0;
}

int shard_is_dirty(const shard *s) {
    size_t nu, nd;
    rowset_dirty(s->users, &nu);
    rowset_dirty(s->deltas, &nd);
    int moved = 0;
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        moved |= s->meta.next_offset[t] != s->durable_offset[t];
    return nu || nd || s->n_hist_dirty || s->n_removed || s->n_outbox_removed || moved;
}

void shard_clear_dirty(shard *s) {
    rowset_clear_dirty(s->users);
    rowset_clear_dirty(s->deltas);
    for (size_t i = 0; i < s->n_hist_dirty; i++)
        s->hist_dirty[s->hist_dirty_list[i]] = 0;
    s->n_hist_dirty = 0;
    for (size_t i = 0; i < s->n_pending; i++)
        s->pending[i].unsaved = 0;
    s->n_removed = 0;
    for (size_t i = 0; i < s->n_outbox; i++)
        s->outbox[i].unsaved = 0;
    s->n_outbox_removed = 0;
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        s->durable_offset[t] = s->meta.next_offset[t];
}
