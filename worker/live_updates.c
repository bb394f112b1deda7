/* live_updates.c: records of item updates (see live.h, live_int.h): the
 * best-effort pushes (live_push), the exact deliveries and row flushes a
 * checkpoint writes (live_checkpoint), and applying the item-updates
 * records of every process to the replica and the home shards' durable
 * side (live_item_updates). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "live_int.h"
#include "rows.h"
#include "ul_buf.h"
#include "ul_err.h"

/* ---- records of item updates (built for pushes and deliveries) --------- */

static codec_item_update *scratch_items(live *l, size_t n) {
    if (n > l->scratch.cap_items) {
        codec_item_update *v = realloc(l->scratch.items, n * sizeof(*v));
        if (v == NULL)
            return NULL;
        l->scratch.items = v;
        l->scratch.cap_items = n;
    }
    return l->scratch.items;
}

/* The item ids of `rs` grouped by home partition: order[] holds indices of
 * rs sorted by home, start[h]..start[h+1] those of home h. Owned arrays. */
static int group_by_home(const live *l, const rowset *a, const rowset *b, int64_t **ids_out,
                         size_t **start_out, size_t *n_out) {
    size_t na = (size_t)rowset_size(a), nb = b ? (size_t)rowset_size(b) : 0, n = 0;
    size_t np = (size_t)l->n_parts;
    int64_t *ids = malloc((na + nb + 1) * sizeof(*ids)),
            *tmp = malloc((na + nb + 1) * sizeof(*tmp));
    size_t *start = calloc(np + 1, sizeof(*start));
    if (ids == NULL || tmp == NULL || start == NULL) {
        free(ids), free(tmp), free(start);
        return UL_ERR_NOMEM;
    }
    for (size_t i = 0; i < na; i++)
        tmp[n++] = rowset_key(a, (int32_t)i);
    for (size_t i = 0; i < nb; i++) /* b's items not in a */
        if (rowset_find(a, rowset_key(b, (int32_t)i)) < 0)
            tmp[n++] = rowset_key(b, (int32_t)i);
    for (size_t i = 0; i < n; i++)
        start[(size_t)home_of(l, tmp[i]) + 1]++;
    for (size_t h = 0; h < np; h++)
        start[h + 1] += start[h];
    size_t *fill = calloc(np, sizeof(*fill));
    if (fill == NULL) {
        free(ids), free(tmp), free(start);
        return UL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t h = (size_t)home_of(l, tmp[i]);
        ids[start[h] + fill[h]++] = tmp[i];
    }
    free(fill);
    free(tmp);
    *ids_out = ids;
    *start_out = start;
    *n_out = n;
    return UL_OK;
}

/* Fill `it` from a delta vector (bias + factors; NULL: none). */
static void update_of(codec_item_update *it, int64_t id, int64_t dcount, double dsum,
                      const float *vec, int k) {
    it->id = id;
    it->dcount = (int32_t)dcount;
    it->dsum = dsum;
    it->dbias = vec ? vec[ROWS_BIAS] : 0.0f;
    it->dvector = vec ? vec + ROWS_FACTORS : NULL;
    it->dim = vec ? k : 0;
}

size_t live_push(live *l, shard_class cls, live_push_fn fn, void *opaque) {
    rowset *acc = l->acc[cls];
    int64_t *ids = NULL;
    size_t *start = NULL, n = 0;
    if (rowset_size(acc) == 0 || group_by_home(l, acc, NULL, &ids, &start, &n) != UL_OK ||
        scratch_items(l, LIVE_PUSH_ITEMS) == NULL) {
        free(ids), free(start);
        return 0; /* out of memory: kept for the next push */
    }
    codec_item_updates *u = &l->scratch;
    u->instance = (int64_t)l->instance;
    u->source = cls == SHARD_TRAINING ? CODEC_UPDATE_TRAINING : CODEC_UPDATE_EVENT;
    u->seq = 0;
    u->nonce = (int64_t)l->nonce;
    for (int32_t h = 0; h < l->n_parts; h++) {
        for (size_t i = start[h]; i < start[h + 1]; i += LIVE_PUSH_ITEMS) {
            size_t end = i + LIVE_PUSH_ITEMS < start[h + 1] ? i + LIVE_PUSH_ITEMS : start[h + 1];
            u->n_items = 0;
            for (size_t j = i; j < end; j++)
                update_of(&u->items[u->n_items++], ids[j], 0, 0.0,
                          rowset_row_const(acc, rowset_find(acc, ids[j])), l->k);
            fn(opaque, h, u);
        }
    }
    u->n_items = 0;
    free(ids);
    free(start);
    rowset_clear(acc);
    return n;
}

/* s's queued exact deltas as one delivery entry of its outbox. */
static int make_delivery(live *l, shard *s, char *errstr, size_t errstr_size) {
    int64_t *ids = NULL;
    size_t *start = NULL, n = 0;
    if (l->o.encode == NULL) {
        ul_set_err(errstr, errstr_size, "partition %d has item deliveries but no encoder",
                   (int)s->partition);
        return UL_ERR_STATE;
    }
    if (group_by_home(l, s->pend_stats, s->pend_rows, &ids, &start, &n) != UL_OK ||
        scratch_items(l, LIVE_PUSH_ITEMS) == NULL) {
        free(ids), free(start);
        ul_set_err(errstr, errstr_size, "out of memory building item deliveries");
        return UL_ERR_NOMEM;
    }
    codec_item_updates *u = &l->scratch;
    *u = (codec_item_updates){.instance = (int64_t)l->instance,
                              .source = s->partition,
                              .seq = (int64_t)s->meta.out_seq,
                              .nonce = (int64_t)l->nonce,
                              .items = u->items,
                              .cap_items = u->cap_items};
    ul_buf entry = {0};
    int rc = UL_OK;
    for (int32_t h = 0; h < l->n_parts && rc == UL_OK; h++) {
        for (size_t i = start[h]; i < start[h + 1] && rc == UL_OK; i += LIVE_PUSH_ITEMS) {
            size_t end = i + LIVE_PUSH_ITEMS < start[h + 1] ? i + LIVE_PUSH_ITEMS : start[h + 1];
            u->n_items = 0;
            for (size_t j = i; j < end; j++) {
                int32_t si = rowset_find(s->pend_stats, ids[j]),
                        ri = rowset_find(s->pend_rows, ids[j]);
                rows_stats d = {0, 0.0};
                if (si >= 0)
                    memcpy(&d, rowset_row_const(s->pend_stats, si), sizeof(d));
                update_of(&u->items[u->n_items++], ids[j], d.count, d.sum,
                          ri >= 0 ? rowset_row_const(s->pend_rows, ri) : NULL, l->k);
            }
            rc = l->o.encode(l->o.encode_opaque, u, h, &entry, errstr, errstr_size);
        }
    }
    u->n_items = 0;
    free(ids);
    free(start);
    size_t len = 0;
    unsigned char *blob = rc == UL_OK && !entry.oom ? ul_buf_take(&entry, &len) : NULL;
    if (rc == UL_OK &&
        (blob == NULL || outbox_list_add(&s->deliveries, s->meta.out_seq, blob, len) != 0)) {
        free(blob);
        blob = NULL;
        ul_set_err(errstr, errstr_size, "out of memory building item deliveries");
        rc = UL_ERR_NOMEM;
    }
    ul_buf_free(&entry);
    if (rc != UL_OK)
        return rc;
    s->meta.out_seq++; /* the queue is cleared once the checkpoint holds the entry */
    return UL_OK;
}

/* A checkpoint that failed takes its delivery entry back (the queue still
 * holds the deltas: the next checkpoint makes it again). */
static void undo_delivery(shard *s) {
    outbox_list *d = &s->deliveries;
    if (d->n == 0 || !d->v[d->n - 1].unsaved || d->v[d->n - 1].version + 1 != s->meta.out_seq)
        return;
    free(d->v[--d->n].blob);
    s->meta.out_seq--;
}

/* The rows a row flush of s writes: P's changed home rows as of rows_off,
 * i.e. without this process's changes still on their way (own_out). */
static rowset *flush_rows(live *l, shard *s) {
    size_t n;
    const int32_t *idx = rowset_marked(s->home, SHARD_HOME_FLUSH, &n);
    rowset *out = rowset_new(l->row_dim);
    for (size_t i = 0; out && i < n; i++) {
        int64_t item = rowset_key(s->home, idx[i]);
        int32_t ei = rowset_find(l->items, item), r = rowset_insert(out, item, NULL);
        if (r < 0) {
            rowset_destroy(out);
            return NULL;
        }
        if (ei >= 0)
            memcpy(rowset_row(out, r), rowset_row_const(l->items, ei),
                   (size_t)l->row_dim * sizeof(float));
        int32_t oi = rowset_find(l->own_out, item);
        if (oi >= 0)
            add_vec(rowset_row(out, r), rowset_row_const(l->own_out, oi), rows_vector_dim(l->k),
                    -1.0f);
    }
    return out;
}

int live_checkpoint(live *l, shard *s, char *errstr, size_t errstr_size) {
    if (l->o.read_only) {
        ul_set_err(errstr, errstr_size, "a read-only live does not checkpoint");
        return UL_ERR_STATE;
    }
    int rc = shard_has_pending(s) ? make_delivery(l, s, errstr, errstr_size) : UL_OK;
    rowset *rows = NULL;
    int32_t p = s->partition;
    if (rc == UL_OK && s->flush_rows) {
        int64_t off = l->upd_pos[p] > l->rows_from[p] ? l->upd_pos[p] : l->rows_from[p];
        if ((rows = flush_rows(l, s)) == NULL ||
            shard_rows_seen_set(s, l->seen_rows + (size_t)p * (size_t)l->n_parts, l->n_parts) !=
                0) {
            ul_set_err(errstr, errstr_size, "out of memory building a row flush");
            rc = UL_ERR_NOMEM;
        }
        s->meta.rows_off = off;
        s->items = rows;
    }
    if (rc == UL_OK)
        rc = store_shard_checkpoint(l->st, s, errstr, errstr_size);
    s->items = NULL;
    rowset_destroy(rows);
    if (rc == UL_OK) {
        shard_pend_clear(s);
        if (s->meta.rows_off >= 0)
            l->rows_from[p] = s->meta.rows_off;
    } else {
        undo_delivery(s);
    }
    return rc;
}

/* ---- item-updates ------------------------------------------------------- */

int64_t live_updates_position(const live *l, int32_t p) {
    return p >= 0 && p < l->n_parts ? l->upd_pos[p] : -1;
}

void live_updates_skip(live *l, int32_t home, int64_t offset) {
    if (home < 0 || home >= l->n_parts)
        return;
    if (l->upd_pos[home] < 0 || offset >= l->upd_pos[home])
        l->upd_pos[home] = offset + 1;
    shard *s = l->shards[home];
    if (s && offset >= s->meta.next_offset[SHARD_ITEM_UPDATES])
        s->meta.next_offset[SHARD_ITEM_UPDATES] = offset + 1;
}

/* Every item of u belongs to `home`, its factors have our k, its source is
 * a partition we know: else nothing of it is applied. */
static int check_updates(const live *l, int32_t home, const codec_item_updates *u, char *errstr,
                         size_t errstr_size) {
    if (u->source >= l->n_parts) {
        ul_set_err(errstr, errstr_size,
                   "item updates from source partition %d, but there are %d partitions",
                   (int)u->source, (int)l->n_parts);
        return UL_ERR_RANGE;
    }
    for (size_t i = 0; i < u->n_items; i++) {
        const codec_item_update *it = &u->items[i];
        if (home_of(l, it->id) != home || (it->dim != 0 && it->dim != l->k)) {
            ul_set_err(errstr, errstr_size,
                       "item update of item %" PRId64 " (%d factors) in partition %d: its home "
                       "is %d and k is %d",
                       it->id, it->dim, (int)home, (int)home_of(l, it->id), l->k);
            return UL_ERR_RANGE;
        }
    }
    return UL_OK;
}

/* The delta of one update as a bias + factors vector into v. */
static const float *update_vec(const live *l, const codec_item_update *it, float *v) {
    if (it->dim == 0)
        return NULL;
    v[ROWS_BIAS] = it->dbias;
    memcpy(v + ROWS_FACTORS, it->dvector, (size_t)l->k * sizeof(float));
    return v;
}

/* u's row changes into the replica (from another process), or, for this
 * process's own record, out of own_out (they are back: the stored value of
 * those rows moves, their replica value not). `stats`: apply the
 * statistics too. */
static int apply_replica(live *l, const codec_item_updates *u, int rows, int stats, int own,
                         float *v) {
    shard_class cls = u->source == CODEC_UPDATE_TRAINING ? SHARD_TRAINING : SHARD_EVENT;
    for (size_t i = 0; i < u->n_items; i++) {
        const codec_item_update *it = &u->items[i];
        const float *d = rows ? update_vec(l, it, v) : NULL;
        if (own) {
            int32_t oi = d ? rowset_find(l->own_out, it->id) : -1;
            if (oi >= 0) {
                add_vec(rowset_row(l->own_out, oi), d, rows_vector_dim(l->k), -1.0f);
                shard *h = l->shards[home_of(l, it->id)];
                int32_t hi = h ? shard_home_item(h, it->id) : -1;
                if (hi >= 0)
                    rowset_mark(h->home, SHARD_HOME_FLUSH, hi);
            }
            continue;
        }
        int32_t ei = replica_item(l, it->id);
        if (ei < 0)
            return UL_ERR_NOMEM;
        if (stats)
            replica_stats_add(l, ei, it->dcount, it->dsum);
        if (d) {
            add_vec(rowset_row(l->items, ei), d, rows_vector_dim(l->k), 1.0f);
            item_changed(l, ei, it->id, cls);
        }
    }
    return UL_OK;
}

/* An exact delivery into home shard s's durable statistics. */
static int apply_durable(live *l, shard *s, const codec_item_updates *u) {
    if (shard_seen_set(s, u->source, u->seq) != 0)
        return UL_ERR_NOMEM;
    for (size_t i = 0; i < u->n_items; i++) {
        const codec_item_update *it = &u->items[i];
        int32_t hi = shard_home_item(s, it->id);
        if (hi < 0)
            return UL_ERR_NOMEM;
        shard_home_add(s, hi, it->dcount, it->dsum);
        if (it->dim > 0) { /* the home owner republishes a corrected row */
            int32_t ei = rowset_find(l->items, it->id);
            if (ei >= 0)
                rowset_mark_publish(l->items, ei);
        }
    }
    return UL_OK;
}

int live_item_updates(live *l, int32_t home, int64_t offset, const codec_item_updates *u,
                      char *errstr, size_t errstr_size) {
    if (home < 0 || home >= l->n_parts) {
        ul_set_err(errstr, errstr_size, "item updates of partition %d: there are %d", (int)home,
                   (int)l->n_parts);
        return UL_ERR_RANGE;
    }
    shard *s = l->shards[home];
    int replica = l->upd_pos[home] < 0 || offset >= l->upd_pos[home];
    int durable = s && offset >= s->meta.next_offset[SHARD_ITEM_UPDATES];
    if (replica)
        l->upd_pos[home] = offset + 1;
    if (durable)
        s->meta.next_offset[SHARD_ITEM_UPDATES] = offset + 1;
    if ((!replica && !durable) || (uint64_t)u->nonce != l->nonce)
        return UL_OK; /* seen already, or a record of an earlier state */
    int rc = check_updates(l, home, u, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    float v[1 + 1024 + 1];
    if (l->k > 1024) {
        ul_set_err(errstr, errstr_size, "k=%d is above 1024", l->k);
        return UL_ERR_RANGE;
    }
    int own = (uint64_t)u->instance == l->instance;
    if (replica && u->source >= 0) {
        size_t at = (size_t)home * (size_t)l->n_parts + (size_t)u->source;
        int stats = u->seq > l->seen[at], rows = u->seq > l->seen_rows[at];
        if (stats)
            l->seen[at] = u->seq;
        if (rows)
            l->seen_rows[at] = u->seq;
        if ((stats || rows) && (rc = apply_replica(l, u, rows, stats, own, v)) != UL_OK)
            return rc;
    } else if (replica && (l->rows_from[home] < 0 || offset >= l->rows_from[home])) {
        if ((rc = apply_replica(l, u, 1, 0, own, v)) != UL_OK)
            return rc;
    }
    if (durable && u->source >= 0 && u->seq > shard_seen(s, u->source))
        rc = apply_durable(l, s, u);
    if (rc == UL_ERR_NOMEM)
        ul_set_err(errstr, errstr_size, "out of memory applying item updates");
    return rc;
}
