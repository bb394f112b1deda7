/* store_ckpt.c: writing a partition's state: the binary encodings of the
 * values the store holds (forget requests, eviction summaries, histories)
 * and the checkpoint (store_shard_checkpoint, one fenced transaction) with
 * store_outbox_drop. Shares store_int.h with store.c and store_load.c. */
#include "store.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcluster.h"
#include "rows.h"
#include "store_int.h"
#include "ul_buf.h"
#include "ul_clock.h"
#include "ul_err.h"

/* Appends each user's entries and trims the value to the retention (the
 * last ARGV[1] bytes): KEYS[1] = the history hash, then user, bytes pairs. */
const char store_hist_append_lua[] = "local cap = tonumber(ARGV[1])\n"
                                     "for i = 2, #ARGV, 2 do\n"
                                     "  local v = redis.call('HGET', KEYS[1], ARGV[i])\n"
                                     "  if v then v = v .. ARGV[i + 1] else v = ARGV[i + 1] end\n"
                                     "  if #v > cap then v = string.sub(v, #v - cap + 1) end\n"
                                     "  redis.call('HSET', KEYS[1], ARGV[i], v)\n"
                                     "end\n"
                                     "return 0\n";

/* ---- encodings ---------------------------------------------------------- */

#define FORGET_FORMAT 1

int store_encode_forget(const forget_req *fr, unsigned char **buf, size_t *len) {
    ul_buf w = {0};
    uint8_t fmt = FORGET_FORMAT, win = (uint8_t)(fr->has_window != 0);
    uint32_t idlen = fr->request_id ? (uint32_t)strlen(fr->request_id) : 0;
    ul_buf_put(&w, &fmt, 1);
    ul_buf_put(&w, &fr->offset, 8);
    ul_buf_put(&w, &fr->user, 8);
    ul_buf_put(&w, &win, 1);
    ul_buf_put(&w, &fr->from, 8);
    ul_buf_put(&w, &fr->to, 8);
    ul_buf_put(&w, &fr->reason, 4);
    ul_buf_put(&w, &fr->received_ms, 8);
    ul_buf_put(&w, &fr->ratings_hwm, 8);
    ul_buf_put(&w, &idlen, 4);
    ul_buf_put(&w, fr->request_id ? fr->request_id : "", idlen);
    ul_buf_put(&w, &fr->n_items, 4);
    ul_buf_put(&w, fr->items ? (const void *)fr->items : "", (size_t)fr->n_items * 8);
    if (w.oom) {
        ul_buf_free(&w);
        return UL_ERR_NOMEM;
    }
    *buf = ul_buf_take(&w, len);
    return UL_OK;
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
} rbuf;

static int rget(rbuf *r, void *dst, size_t n) {
    if (r->len - r->pos < n)
        return -1;
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

int store_decode_forget(const unsigned char *buf, size_t len, forget_req *fr) {
    rbuf r = {buf, len, 0};
    forget_req v = {0};
    uint8_t fmt = 0, win = 0;
    uint32_t idlen = 0;
    if (rget(&r, &fmt, 1) || fmt != FORGET_FORMAT || rget(&r, &v.offset, 8) ||
        rget(&r, &v.user, 8) || rget(&r, &win, 1) || rget(&r, &v.from, 8) || rget(&r, &v.to, 8) ||
        rget(&r, &v.reason, 4) || rget(&r, &v.received_ms, 8) || rget(&r, &v.ratings_hwm, 8) ||
        rget(&r, &idlen, 4) || idlen > r.len - r.pos)
        return UL_ERR_CORRUPT;
    v.has_window = win;
    v.request_id = malloc((size_t)idlen + 1);
    if (v.request_id == NULL)
        return UL_ERR_NOMEM;
    memcpy(v.request_id, r.p + r.pos, idlen);
    v.request_id[idlen] = '\0';
    r.pos += idlen;
    if (rget(&r, &v.n_items, 4) || (size_t)v.n_items * 8 != r.len - r.pos) {
        forget_req_free(&v);
        return UL_ERR_CORRUPT;
    }
    if (v.n_items > 0) {
        v.items = malloc((size_t)v.n_items * 8);
        if (v.items == NULL) {
            forget_req_free(&v);
            return UL_ERR_NOMEM;
        }
        memcpy(v.items, r.p + r.pos, (size_t)v.n_items * 8);
    }
    *fr = v;
    return UL_OK;
}

void store_encode_evict(const shard_evict *e, unsigned char *out) {
    memcpy(out, &e->count, 4);
    memcpy(out + 4, &e->tmin, 8);
    memcpy(out + 12, &e->tmax, 8);
    memcpy(out + 20, e->bloom, SHARD_EVICT_BLOOM);
}

int store_decode_evict(const unsigned char *buf, size_t len, shard_evict *e) {
    if (len != STORE_EVICT_BYTES)
        return UL_ERR_CORRUPT;
    memset(e, 0, sizeof(*e));
    memcpy(&e->count, buf, 4);
    memcpy(&e->tmin, buf + 4, 8);
    memcpy(&e->tmax, buf + 12, 8);
    memcpy(e->bloom, buf + 20, SHARD_EVICT_BLOOM);
    return UL_OK;
}

static void encode_hist_range(const hist *h, uint32_t from, unsigned char *out) {
    for (uint32_t i = from; i < h->n; i++) {
        const hist_entry *e = &h->v[h->start + i];
        unsigned char *o = out + (size_t)(i - from) * HIST_ENTRY_BYTES;
        memcpy(o, &e->item, 8);
        memcpy(o + 8, &e->time, 8);
        memcpy(o + 16, &e->rating, 4);
    }
}
/* ---- checkpoint --------------------------------------------------------- */

/* Rows of `rs` in mark set `set` (and set2 >= 0) as HSETs of their first
 * `dim` floats, from `rows` looked up by key (NULL: rs's own rows). */
static void send_rows(cmdbuf *b, const char *key, const rowset *rs, int set, int set2,
                      const rowset *rows, int dim) {
    for (int pass = 0; pass < 2; pass++) {
        int which = pass == 0 ? set : set2;
        if (which < 0)
            continue;
        size_t n;
        const int32_t *idx = rowset_marked(rs, which, &n);
        for (size_t i = 0; i < n; i++) {
            if (pass == 1 && set >= 0 && rowset_is_marked(rs, set, idx[i]))
                continue; /* sent in the first pass */
            int64_t id = rowset_key(rs, idx[i]);
            int32_t r = rows ? rowset_find(rows, id) : idx[i];
            if (r < 0)
                continue;
            size_t len;
            const void *val = rows_value(rowset_row_const(rows ? rows : rs, r), dim, &len);
            cmdbuf_begin(b, "HSET", key);
            cmdbuf_add_i64(b, id);
            cmdbuf_add(b, val, len);
            cmdbuf_maybe_send(b);
        }
    }
    cmdbuf_flush(b);
}

/* How a dirty history is written. */
typedef enum hist_op { HIST_OP_DEL, HIST_OP_SET, HIST_OP_APPEND } hist_op;

static hist_op hist_op_of(const shard *s, int32_t uidx) {
    const hist *h = &s->hists[uidx];
    uint32_t added = s->hist_added[uidx];
    if (h->n == 0)
        return HIST_OP_DEL;
    if ((s->hist_dirty[uidx] & SHARD_HIST_REWRITE) || added >= h->n ||
        h->n - added < STORE_HIST_REWRITE_BELOW)
        return HIST_OP_SET;
    return HIST_OP_APPEND;
}

/* Histories: whole values (HSET), appends (EVAL), emptied ones (HDEL). All
 * packed values go into one scratch buffer sized up front, so the argv
 * entries pointing into it stay valid until each command is appended. */
static int send_hists(cmdbuf *b, const char *key, const shard *s, unsigned char **scratch) {
    size_t total = 0, used = 0;
    for (size_t i = 0; i < s->n_hist_dirty; i++)
        total += (size_t)s->hists[s->hist_dirty_list[i]].n * HIST_ENTRY_BYTES;
    *scratch = malloc(total ? total : 1);
    if (*scratch == NULL)
        return -1;
    char cap[24];
    snprintf(cap, sizeof(cap), "%" PRIu64, (uint64_t)s->retention * HIST_ENTRY_BYTES);
    static const hist_op order[] = {HIST_OP_SET, HIST_OP_APPEND, HIST_OP_DEL};
    for (size_t o = 0; o < 3; o++) {
        for (size_t i = 0; i < s->n_hist_dirty; i++) {
            int32_t uidx = s->hist_dirty_list[i];
            const hist *h = &s->hists[uidx];
            if (hist_op_of(s, uidx) != order[o])
                continue;
            if (b->argc == 0) {
                if (order[o] == HIST_OP_APPEND) {
                    cmdbuf_add_str(b, "EVAL");
                    cmdbuf_add_str(b, store_hist_append_lua);
                    cmdbuf_add_str(b, "1");
                    cmdbuf_add_str(b, key);
                    cmdbuf_add_str(b, cap);
                } else {
                    cmdbuf_begin(b, order[o] == HIST_OP_DEL ? "HDEL" : "HSET", key);
                }
            }
            cmdbuf_add_i64(b, rowset_key(s->users, uidx));
            if (order[o] != HIST_OP_DEL) {
                uint32_t from = order[o] == HIST_OP_APPEND ? h->n - s->hist_added[uidx] : 0;
                size_t len = (size_t)(h->n - from) * HIST_ENTRY_BYTES;
                encode_hist_range(h, from, *scratch + used);
                cmdbuf_add(b, *scratch + used, len);
                used += len;
            }
            cmdbuf_maybe_send(b);
        }
        cmdbuf_flush(b);
    }
    return 0;
}

static void send_evicts(cmdbuf *b, const char *key, const shard *s, unsigned char *scratch) {
    size_t n;
    const int32_t *idx = rowset_marked(s->evicts, ROWSET_DIRTY, &n);
    for (size_t i = 0; i < n; i++) {
        const shard_evict *e =
            (const shard_evict *)(const void *)rowset_row_const(s->evicts, idx[i]);
        store_encode_evict(e, scratch + i * STORE_EVICT_BYTES);
        cmdbuf_begin(b, "HSET", key);
        cmdbuf_add_i64(b, rowset_key(s->evicts, idx[i]));
        cmdbuf_add(b, scratch + i * STORE_EVICT_BYTES, STORE_EVICT_BYTES);
        cmdbuf_maybe_send(b);
    }
    cmdbuf_flush(b);
}

static void send_stats(cmdbuf *b, const char *key, const shard *s, unsigned char *scratch) {
    size_t n;
    const int32_t *idx = rowset_marked(s->home, SHARD_HOME_STATS, &n);
    for (size_t i = 0; i < n; i++) {
        rows_stats sv = shard_home_stats(s, idx[i]);
        rows_stats_value(&sv, scratch + i * ROWS_STATS_BYTES);
        cmdbuf_begin(b, "HSET", key);
        cmdbuf_add_i64(b, rowset_key(s->home, idx[i]));
        cmdbuf_add(b, scratch + i * ROWS_STATS_BYTES, ROWS_STATS_BYTES);
        cmdbuf_maybe_send(b);
    }
    cmdbuf_flush(b);
}

/* seen: "<Q>" the home's durable statistics' last delivery from Q; at a
 * row flush also "r<Q>", the last the flushed rows include. */
static void send_seen(cmdbuf *b, const char *key, const shard *s) {
    for (int32_t q = 0; q < s->n_seen; q++) {
        if (!s->seen_dirty[q])
            continue;
        cmdbuf_begin(b, "HSET", key);
        cmdbuf_add_i64(b, q);
        cmdbuf_add_i64(b, s->seen[q]);
        cmdbuf_maybe_send(b);
    }
    for (int32_t q = 0; s->flush_rows && q < s->n_rows_seen; q++) {
        if (s->rows_seen[q] < 0)
            continue;
        cmdbuf_begin(b, "HSET", key);
        int len = snprintf(b->num[b->argc], sizeof(b->num[0]), "r%d", (int)q);
        cmdbuf_add(b, b->num[b->argc], (size_t)len);
        cmdbuf_add_i64(b, s->rows_seen[q]);
        cmdbuf_maybe_send(b);
    }
    cmdbuf_flush(b);
}

static int send_forget_changes(cmdbuf *b, const char *key, const shard *s) {
    for (size_t i = 0; i < s->n_removed; i++) {
        cmdbuf_begin(b, "HDEL", key);
        cmdbuf_add_i64(b, s->removed[i]);
        cmdbuf_maybe_send(b);
    }
    cmdbuf_flush(b);
    for (size_t i = 0; i < s->n_pending; i++) {
        const forget_req *fr = &s->pending[i];
        if (!fr->unsaved)
            continue;
        unsigned char *buf = NULL;
        size_t len = 0;
        if (store_encode_forget(fr, &buf, &len) != UL_OK)
            return -1;
        cmdbuf_begin(b, "HSET", key);
        cmdbuf_add_i64(b, fr->offset);
        cmdbuf_add(b, buf, len);
        cmdbuf_send(b);
        free(buf);
    }
    return 0;
}

/* Outbox field of an entry: "<version>" or "d<seq>". */
static void outbox_field(cmdbuf *b, int delivery, uint64_t key) {
    int len = snprintf(b->num[b->argc], sizeof(b->num[0]), "%s%" PRIu64, delivery ? "d" : "", key);
    cmdbuf_add(b, b->num[b->argc], (size_t)len);
}

/* HDEL the acknowledged entries and, with `added`, HSET the unsaved ones. */
static void send_outbox_changes(cmdbuf *b, const char *key, const shard *s, int added) {
    for (int delivery = 0; delivery < 2; delivery++) {
        const outbox_list *l = delivery ? &s->deliveries : &s->outbox;
        for (size_t i = 0; i < l->n_removed; i++) {
            cmdbuf_begin(b, "HDEL", key);
            outbox_field(b, delivery, l->removed[i]);
            cmdbuf_maybe_send(b);
        }
        cmdbuf_flush(b);
        for (size_t i = 0; added && i < l->n; i++) {
            if (!l->v[i].unsaved)
                continue;
            cmdbuf_begin(b, "HSET", key);
            outbox_field(b, delivery, l->v[i].version);
            cmdbuf_add(b, l->v[i].blob, l->v[i].len);
            cmdbuf_send(b);
        }
    }
}

/* Every write of the checkpoint into b's transaction. -1 when out of memory. */
static int build_checkpoint(store *st, cmdbuf *b, shard *s) {
    char key[64];
    int32_t p = s->partition;
    size_t ne, nh;
    rowset_marked(s->evicts, ROWSET_DIRTY, &ne);
    rowset_marked(s->home, SHARD_HOME_STATS, &nh);
    unsigned char *evs = malloc(ne * STORE_EVICT_BYTES + 1),
                  *sts = malloc(nh * ROWS_STATS_BYTES + 1);
    unsigned char *hs = NULL;
    int rc = evs && sts ? 0 : -1;
    if (rc == 0) {
        key_of(key, sizeof(key), p, "users");
        send_rows(b, key, s->users, SHARD_USER_DIRTY, s->flush_rows ? SHARD_USER_TRAIN_DIRTY : -1,
                  NULL, rowset_dim(s->users));
        key_of(key, sizeof(key), p, "hist");
        rc = send_hists(b, key, s, &hs);
    }
    if (rc == 0) {
        key_of(key, sizeof(key), p, "evict");
        send_evicts(b, key, s, evs);
        key_of(key, sizeof(key), p, "istats");
        send_stats(b, key, s, sts);
        key_of(key, sizeof(key), p, "items");
        if (s->items && s->flush_rows)
            send_rows(b, key, s->home, SHARD_HOME_FLUSH, -1, s->items, rows_dim(ROWS_ITEM, s->k));
        key_of(key, sizeof(key), p, "seen");
        send_seen(b, key, s);
        key_of(key, sizeof(key), p, "forget");
        rc = send_forget_changes(b, key, s);
    }
    if (rc == 0) {
        key_of(key, sizeof(key), p, "outbox");
        send_outbox_changes(b, key, s, 1);
        shard_meta m = s->meta;
        m.ckpt++;
        key_of(key, sizeof(key), p, "meta");
        store_send_meta(st, b, key, &m);
    }
    /* The argv of the appended commands was copied: the buffers can go. */
    free(evs);
    free(sts);
    free(hs);
    return rc == 0 && b->rc == UL_OK ? 0 : -1;
}

/* The fence moved: say how (the values found against ours). */
static int fence_moved(store *st, const shard *s, char *errstr, size_t errstr_size) {
    uint64_t epoch = 0, ckpt = 0;
    int found = 0;
    char err[UL_ERRSTR_SIZE];
    if (store_fence_get(st, s->partition, &epoch, &ckpt, &found, err, sizeof(err)) != UL_OK)
        ul_set_err(errstr, errstr_size,
                   "partition %d: the fence moved (this worker holds epoch %" PRIu64
                   " ckpt %" PRIu64 "; reading Redis's values failed: %s)",
                   (int)s->partition, s->meta.epoch, s->meta.ckpt, err);
    else if (!found)
        ul_set_err(errstr, errstr_size,
                   "partition %d: Redis lost its state (no epoch or ckpt any more; this worker "
                   "holds epoch %" PRIu64 " ckpt %" PRIu64 ")",
                   (int)s->partition, s->meta.epoch, s->meta.ckpt);
    else
        ul_set_err(errstr, errstr_size,
                   "partition %d: the fence moved: Redis holds epoch %" PRIu64 " ckpt %" PRIu64
                   ", this worker holds epoch %" PRIu64 " ckpt %" PRIu64 " (%s)",
                   (int)s->partition, epoch, ckpt, s->meta.epoch, s->meta.ckpt,
                   epoch > s->meta.epoch ? "another worker took the partition"
                   : ckpt < s->meta.ckpt ? "Redis lost checkpoints"
                                         : "someone else wrote it");
    return STORE_ERR_FENCE;
}

/* EXEC's outcome is unknown: ckpt tells (ours + 1: applied; ours: not). */
static int resolve_unknown(store *st, shard *s, char *errstr, size_t errstr_size) {
    uint64_t epoch, ckpt;
    int found;
    char err[UL_ERRSTR_SIZE];
    if (store_fence_get(st, s->partition, &epoch, &ckpt, &found, err, sizeof(err)) != UL_OK) {
        ul_set_err(errstr, errstr_size,
                   "checkpoint of partition %d: outcome unknown and Redis unreachable (%s); the "
                   "next checkpoint's fence decides",
                   (int)s->partition, err);
        return UL_ERR_IO;
    }
    if (found && epoch == s->meta.epoch && ckpt == s->meta.ckpt + 1)
        return UL_OK;
    if (found && epoch == s->meta.epoch && ckpt == s->meta.ckpt) {
        char why[UL_ERRSTR_SIZE];
        snprintf(why, sizeof(why), "%s", errstr ? errstr : "");
        ul_set_err(errstr, errstr_size, "checkpoint of partition %d: not applied (%s)",
                   (int)s->partition, why);
        return UL_ERR_IO;
    }
    return fence_moved(st, s, errstr, errstr_size);
}

int store_shard_checkpoint(store *st, shard *s, char *errstr, size_t errstr_size) {
    char key[64], want[24];
    key_of(key, sizeof(key), s->partition, "meta");
    cmdbuf b;
    if (cmdbuf_init(&b, 5 + 2 * PAIRS_PER_CMD) != 0 ||
        (b.txn = rcluster_txn_new(st->rc, key, strlen(key))) == NULL) {
        cmdbuf_free(&b);
        return oom(errstr, errstr_size);
    }
    int64_t was = s->meta.checkpoint_ms;
    s->meta.checkpoint_ms = ul_clock_wall_ms();
    snprintf(want, sizeof(want), "%" PRIu64, s->meta.ckpt);
    int rc = rcluster_txn_guard(b.txn, key, "ckpt", want, strlen(want));
    if (rc == UL_OK && build_checkpoint(st, &b, s) != 0)
        rc = b.rc == UL_ERR_ARG ? UL_ERR_ARG : UL_ERR_NOMEM;
    if (rc == UL_OK) {
        rcluster_txn_wait(b.txn, st->wait_ms);
        rc = rcluster_txn_exec(b.txn, errstr, errstr_size);
        if (rc == RCLUSTER_ERR_GUARD)
            rc = fence_moved(st, s, errstr, errstr_size);
        else if (rc == RCLUSTER_ERR_UNKNOWN)
            rc = resolve_unknown(st, s, errstr, errstr_size);
    } else {
        ul_set_err(errstr, errstr_size, "%s building the checkpoint of partition %d",
                   rc == UL_ERR_ARG ? "a command outside the partition's slot" : "out of memory",
                   (int)s->partition);
    }
    int acked = rc == UL_OK ? rcluster_txn_acked(b.txn) : -1;
    rcluster_txn_destroy(b.txn);
    cmdbuf_free(&b);
    if (rc != UL_OK) {
        s->meta.checkpoint_ms = was;
        return rc;
    }
    s->meta.ckpt++;
    s->replicated = acked != 0;
    shard_clear_dirty(s);
    return UL_OK;
}

int store_outbox_drop(store *st, shard *s, char *errstr, size_t errstr_size) {
    if (s->outbox.n_removed == 0 && s->deliveries.n_removed == 0)
        return UL_OK;
    char key[64], want[24];
    key_of(key, sizeof(key), s->partition, "meta");
    cmdbuf b;
    if (cmdbuf_init(&b, 2 + PAIRS_PER_CMD) != 0 ||
        (b.txn = rcluster_txn_new(st->rc, key, strlen(key))) == NULL) {
        cmdbuf_free(&b);
        return oom(errstr, errstr_size);
    }
    /* Guarded like a checkpoint: a worker that lost the partition deletes
     * nothing (its fence check comes with the next checkpoint). */
    snprintf(want, sizeof(want), "%" PRIu64, s->meta.ckpt);
    int rc = rcluster_txn_guard(b.txn, key, "ckpt", want, strlen(want));
    key_of(key, sizeof(key), s->partition, "outbox");
    if (rc == UL_OK) {
        send_outbox_changes(&b, key, s, 0);
        rc = b.rc;
    }
    if (rc == UL_OK) {
        rc = rcluster_txn_exec(b.txn, errstr, errstr_size);
        if (rc == RCLUSTER_ERR_GUARD)
            rc = fence_moved(st, s, errstr, errstr_size);
        else if (rc == RCLUSTER_ERR_UNKNOWN)
            rc = UL_ERR_IO; /* HDELs are idempotent: the next checkpoint repeats them */
    } else {
        ul_set_err(errstr, errstr_size, "out of memory deleting acknowledged outbox entries");
    }
    rcluster_txn_destroy(b.txn);
    cmdbuf_free(&b);
    if (rc == UL_OK) {
        s->outbox.n_removed = 0;
        s->deliveries.n_removed = 0;
    }
    return rc;
}
