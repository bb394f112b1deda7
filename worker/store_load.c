/* store_load.c: reading a partition's state back from Redis: the
 * replica's load (store_home_load: item rows, statistics, seen) and the
 * shard load (store_shard_load / store_shard_read), with the claim that
 * takes a partition by bumping its fence. Shares store_int.h with store.c
 * and store_ckpt.c. */
#include "store.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rcluster.h"
#include "rows.h"
#include "store_int.h"
#include "ul_err.h"

#define CLAIM_TRIES 8 /* concurrent claims of one partition: retried this often */

/* ---- HSCAN -------------------------------------------------------------- */

static int hscan(store *st, const char *key, rcluster_field_fn fn, rcluster_restart_fn restart,
                 void *ctx, char *errstr, size_t errstr_size) {
    return rcluster_hscan(st->rc, key, fn, restart, ctx, errstr, errstr_size);
}

/* ---- the replica's load ------------------------------------------------- */

typedef struct home_ctx {
    const char *key;
    int dim;
    store_row_fn row_fn;
    store_stats_fn stats_fn;
    store_seen_fn seen_fn;
    void *ctx;
    float *row; /* scratch of dim floats */
} home_ctx;

static int bad_field(const char *key, const char *field, size_t flen, char *errstr,
                     size_t errstr_size) {
    ul_set_err(errstr, errstr_size, "%s: field '%.*s' is not an id", key,
               (int)(flen > 40 ? 40 : flen), field);
    return UL_ERR_CORRUPT;
}

static int load_home_row(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                         char *errstr, size_t errstr_size) {
    home_ctx *c = vctx;
    int64_t id;
    if (parse_i64(field, flen, &id) != 0 || id < 0)
        return bad_field(c->key, field, flen, errstr, errstr_size);
    if (rows_from_value(c->row, c->dim, val, vlen) != 0) {
        ul_set_err(errstr, errstr_size, "%s: row %" PRId64 " has %zu bytes, expected %zu (k=%d)",
                   c->key, id, vlen, rows_value_size(c->dim), rows_k(ROWS_ITEM, c->dim));
        return UL_ERR_CORRUPT;
    }
    return c->row_fn(c->ctx, id, c->row, c->dim, errstr, errstr_size);
}

static int load_home_stats(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                           char *errstr, size_t errstr_size) {
    home_ctx *c = vctx;
    int64_t id;
    rows_stats sv;
    if (parse_i64(field, flen, &id) != 0 || id < 0)
        return bad_field(c->key, field, flen, errstr, errstr_size);
    if (rows_stats_from_value(&sv, val, vlen) != 0) {
        ul_set_err(errstr, errstr_size, "%s: statistics of item %" PRId64 " have %zu bytes, not %d",
                   c->key, id, vlen, ROWS_STATS_BYTES);
        return UL_ERR_CORRUPT;
    }
    return c->stats_fn(c->ctx, id, &sv, errstr, errstr_size);
}

static int load_seen(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                     char *errstr, size_t errstr_size) {
    home_ctx *c = vctx;
    int64_t q, seq;
    int rows = flen > 0 && field[0] == 'r';
    if (parse_i64(field + rows, flen - (size_t)rows, &q) != 0 || q < 0 || q > INT32_MAX ||
        parse_i64(val, vlen, &seq))
        return bad_field(c->key, field, flen, errstr, errstr_size);
    return c->seen_fn(c->ctx, (int32_t)q, rows, seq, errstr, errstr_size);
}

int store_home_load(store *st, int32_t partition, int dim, store_row_fn row_fn,
                    store_stats_fn stats_fn, store_seen_fn seen_fn, void *ctx, char *errstr,
                    size_t errstr_size) {
    char key[64];
    home_ctx c = {key, dim, row_fn, stats_fn, seen_fn, ctx, malloc((size_t)dim * sizeof(float))};
    if (c.row == NULL)
        return oom(errstr, errstr_size);
    int rc = UL_OK;
    if (row_fn) {
        key_of(key, sizeof(key), partition, "items");
        rc = hscan(st, key, load_home_row, NULL, &c, errstr, errstr_size);
    }
    if (rc == UL_OK && stats_fn) {
        key_of(key, sizeof(key), partition, "istats");
        rc = hscan(st, key, load_home_stats, NULL, &c, errstr, errstr_size);
    }
    if (rc == UL_OK && seen_fn) {
        key_of(key, sizeof(key), partition, "seen");
        rc = hscan(st, key, load_seen, NULL, &c, errstr, errstr_size);
    }
    free(c.row);
    return rc;
}

/* ---- shard load --------------------------------------------------------- */

typedef struct shard_ctx {
    shard *s;
    const char *key;
} shard_ctx;

static int load_oom(const shard_ctx *c, char *errstr, size_t errstr_size) {
    ul_set_err(errstr, errstr_size, "out of memory loading %s", c->key);
    return UL_ERR_NOMEM;
}

static int load_user(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                     char *errstr, size_t errstr_size) {
    shard_ctx *c = vctx;
    int dim = rowset_dim(c->s->users);
    int64_t id;
    if (parse_i64(field, flen, &id) != 0 || id < 0)
        return bad_field(c->key, field, flen, errstr, errstr_size);
    if (vlen != rows_value_size(dim)) {
        ul_set_err(errstr, errstr_size, "%s: row %" PRId64 " has %zu bytes, expected %zu (k=%d)",
                   c->key, id, vlen, rows_value_size(dim), rows_k(ROWS_USER, dim));
        return UL_ERR_CORRUPT;
    }
    int32_t idx = shard_user(c->s, id);
    if (idx < 0)
        return load_oom(c, errstr, errstr_size);
    rows_from_value(rowset_row(c->s->users, idx), dim, val, vlen);
    return UL_OK;
}

static int load_hist(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                     char *errstr, size_t errstr_size) {
    shard_ctx *c = vctx;
    int64_t user;
    if (parse_i64(field, flen, &user) != 0 || vlen % HIST_ENTRY_BYTES != 0) {
        ul_set_err(errstr, errstr_size, "%s: malformed history '%.*s'", c->key, (int)flen, field);
        return UL_ERR_CORRUPT;
    }
    int32_t uidx = shard_user(c->s, user);
    if (uidx < 0)
        return load_oom(c, errstr, errstr_size);
    for (size_t i = 0; i < vlen / HIST_ENTRY_BYTES; i++) {
        hist_entry e = decode_hist_entry(val, i);
        if (shard_hist_append(c->s, uidx, &e) != 0)
            return load_oom(c, errstr, errstr_size);
    }
    return UL_OK;
}

/* The history hash moved between nodes mid-scan: start the histories over. */
static int restart_hists(void *vctx, char *errstr, size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    shard_ctx *c = vctx;
    for (int32_t u = 0; u < c->s->users_cap; u++)
        c->s->hists[u].start = c->s->hists[u].n = 0;
    return UL_OK;
}

static int load_evict(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                      char *errstr, size_t errstr_size) {
    shard_ctx *c = vctx;
    int64_t user;
    shard_evict e;
    if (parse_i64(field, flen, &user) != 0 ||
        store_decode_evict((const unsigned char *)val, vlen, &e) != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s: malformed eviction summary '%.*s'", c->key, (int)flen,
                   field);
        return UL_ERR_CORRUPT;
    }
    return shard_evict_put(c->s, user, &e) == 0 ? UL_OK : load_oom(c, errstr, errstr_size);
}

static int load_forget(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                       char *errstr, size_t errstr_size) {
    shard_ctx *c = vctx;
    forget_req fr;
    int rc = store_decode_forget((const unsigned char *)val, vlen, &fr);
    if (rc != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s: malformed forget request '%.*s'", c->key, (int)flen,
                   field);
        return rc;
    }
    if (shard_pending_add(c->s, &fr) != 0) {
        forget_req_free(&fr);
        return load_oom(c, errstr, errstr_size);
    }
    return UL_OK;
}

static int restart_forget(void *vctx, char *errstr, size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    shard *s = ((shard_ctx *)vctx)->s;
    for (size_t i = 0; i < s->n_pending; i++)
        forget_req_free(&s->pending[i]);
    s->n_pending = 0;
    return UL_OK;
}

/* Outbox fields: "<version>" (a cycle) or "d<seq>" (deliveries). */
static int load_outbox(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                       char *errstr, size_t errstr_size) {
    shard_ctx *c = vctx;
    int delivery = flen > 0 && field[0] == 'd';
    uint64_t key;
    if (parse_u64(field + delivery, flen - (size_t)delivery, &key) != 0) {
        ul_set_err(errstr, errstr_size, "%s: malformed field '%.*s'", c->key, (int)flen, field);
        return UL_ERR_CORRUPT;
    }
    unsigned char *blob = malloc(vlen ? vlen : 1);
    outbox_list *l = delivery ? &c->s->deliveries : &c->s->outbox;
    if (blob == NULL || outbox_list_add(l, key, blob, vlen) != 0) {
        free(blob);
        return load_oom(c, errstr, errstr_size);
    }
    memcpy(blob, val, vlen);
    return UL_OK;
}

static void outbox_list_drop(outbox_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].blob);
    l->n = 0;
}

static int restart_outbox(void *vctx, char *errstr, size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    shard *s = ((shard_ctx *)vctx)->s;
    outbox_list_drop(&s->outbox);
    outbox_list_drop(&s->deliveries);
    return UL_OK;
}

static int load_istat(void *vctx, int64_t id, const rows_stats *sv, char *errstr,
                      size_t errstr_size) {
    shard_ctx *c = vctx;
    int32_t hi = shard_home_item(c->s, id);
    if (hi < 0)
        return load_oom(c, errstr, errstr_size);
    rows_stats cur = shard_home_stats(c->s, hi);
    shard_home_add(c->s, hi, sv->count - cur.count, sv->sum - cur.sum);
    return UL_OK;
}

static int load_seen_into(void *vctx, int32_t q, int rows, int64_t seq, char *errstr,
                          size_t errstr_size) {
    shard_ctx *c = vctx;
    if (rows) /* the live keeps those (its replica's) */
        return UL_OK;
    return shard_seen_set(c->s, q, seq) == 0 ? UL_OK : load_oom(c, errstr, errstr_size);
}

static int cmp_entry(const void *a, const void *b) {
    const outbox_entry *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static int cmp_pending(const void *a, const void *b) {
    const forget_req *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* The fence's current values (0 when absent); *found = 0 without a meta. */
int store_fence_get(store *st, int32_t p, uint64_t *epoch, uint64_t *ckpt, int *found, char *errstr,
                    size_t errstr_size) {
    char key[64];
    key_of(key, sizeof(key), p, "meta");
    redisReply *r = NULL;
    int rc = rcluster_command(st->rc, &r, errstr, errstr_size, "HMGET %s epoch ckpt", key);
    if (rc != UL_OK)
        return rc;
    *epoch = *ckpt = 0;
    *found = 0;
    int bad = r->type != REDIS_REPLY_ARRAY || r->elements != 2;
    if (!bad && reply_str(r->element[0]))
        bad = parse_u64(r->element[0]->str, r->element[0]->len, epoch) != 0;
    if (!bad && reply_str(r->element[1])) {
        bad = parse_u64(r->element[1]->str, r->element[1]->len, ckpt) != 0;
        *found = 1;
    }
    freeReplyObject(r);
    if (bad) {
        ul_set_err(errstr, errstr_size, "%s: %s: malformed epoch or ckpt", st->where, key);
        return UL_ERR_CORRUPT;
    }
    return UL_OK;
}

/* Take P: epoch + 1 and ckpt + 1 in one transaction guarded by the ckpt just
 * read (retried when another worker claims at the same moment). */
static int claim(store *st, shard *s, char *errstr, size_t errstr_size) {
    char key[64], want[24];
    key_of(key, sizeof(key), s->partition, "meta");
    for (int attempt = 0; attempt < CLAIM_TRIES; attempt++) {
        uint64_t epoch, ckpt;
        int found;
        int rc = store_fence_get(st, s->partition, &epoch, &ckpt, &found, errstr, errstr_size);
        if (rc != UL_OK)
            return rc;
        rcluster_txn *t = rcluster_txn_new(st->rc, key, strlen(key));
        if (t == NULL)
            return oom(errstr, errstr_size);
        snprintf(want, sizeof(want), "%" PRIu64, ckpt);
        rc = rcluster_txn_guard(t, key, "ckpt", found ? want : NULL, strlen(want));
        if (rc == UL_OK)
            rc = rcluster_txn_append(t, "HSET %s epoch %" PRIu64 " ckpt %" PRIu64, key, epoch + 1,
                                     ckpt + 1);
        if (rc == UL_OK)
            rc = rcluster_txn_exec(t, errstr, errstr_size);
        rcluster_txn_destroy(t);
        if (rc == UL_OK) {
            s->meta.epoch = epoch + 1;
            s->meta.ckpt = ckpt + 1;
            return UL_OK;
        }
        if (rc != RCLUSTER_ERR_GUARD)
            return rc;
    }
    ul_set_err(errstr, errstr_size,
               "partition %d: another worker kept taking it while this one tried %d times",
               (int)s->partition, CLAIM_TRIES);
    return STORE_ERR_FENCE;
}

static int shard_load(store *st, shard *s, int take, char *errstr, size_t errstr_size) {
    char key[64];
    int found = 0;
    int rc = take ? claim(st, s, errstr, errstr_size) : UL_OK;
    uint64_t epoch = s->meta.epoch, ckpt = s->meta.ckpt;
    if (rc == UL_OK)
        rc = store_meta_get(st, s->partition, &s->meta, &found, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    if (take && (s->meta.epoch != epoch || s->meta.ckpt != ckpt)) {
        ul_set_err(errstr, errstr_size,
                   "partition %d: taken by another worker while loading (epoch %" PRIu64
                   ", expected %" PRIu64 ")",
                   (int)s->partition, s->meta.epoch, epoch);
        return STORE_ERR_FENCE;
    }
    shard_ctx c = {s, key};
    static const struct {
        const char *suffix;
        rcluster_field_fn fn;
        rcluster_restart_fn restart;
    } parts[] = {
        {"users", load_user, NULL},
        {"hist", load_hist, restart_hists},
        {"evict", load_evict, NULL},
        {"forget", load_forget, restart_forget},
        {"outbox", load_outbox, restart_outbox},
    };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && rc == UL_OK; i++) {
        key_of(key, sizeof(key), s->partition, parts[i].suffix);
        rc = hscan(st, key, parts[i].fn, parts[i].restart, &c, errstr, errstr_size);
    }
    if (rc == UL_OK) {
        key_of(key, sizeof(key), s->partition, "istats");
        rc = store_home_load(st, s->partition, 1, NULL, load_istat, load_seen_into, &c, errstr,
                             errstr_size);
    }
    if (rc != UL_OK)
        return rc;
    if (s->n_pending > 1)
        qsort(s->pending, s->n_pending, sizeof(*s->pending), cmp_pending);
    if (s->outbox.n > 1)
        qsort(s->outbox.v, s->outbox.n, sizeof(*s->outbox.v), cmp_entry);
    if (s->deliveries.n > 1)
        qsort(s->deliveries.v, s->deliveries.n, sizeof(*s->deliveries.v), cmp_entry);
    shard_clear_dirty(s);
    return UL_OK;
}

int store_shard_load(store *st, shard *s, char *errstr, size_t errstr_size) {
    return shard_load(st, s, 1, errstr, errstr_size);
}

int store_shard_read(store *st, shard *s, char *errstr, size_t errstr_size) {
    return shard_load(st, s, 0, errstr, errstr_size);
}
