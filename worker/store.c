/* store.c: Redis I/O for the worker's state, format 2 (layout in store.h
 * and docs/store.md), through rcluster (a plain Redis is a cluster of one
 * node serving every slot).
 *
 * DESIGN
 * - Reads use HSCAN (COUNT 1000, rcluster_hscan: restarted when a key moves
 *   between nodes) so a large partition never blocks Redis for long; bulk
 *   writes are rcluster pipelines of HSETs of 512 pairs.
 * - A checkpoint is one transaction on the slot of {p<P>}, guarded by the
 *   fence: WATCH ul:{pP}:meta and EXEC only while `ckpt` holds the value
 *   this worker last wrote. Taking a partition (store_shard_load) bumps
 *   `epoch` and `ckpt` in one guarded transaction, so a previous owner's
 *   next checkpoint finds ckpt moved and writes nothing; a Redis that lost
 *   data (FLUSHALL, an old snapshot, a failover that lost acknowledged
 *   checkpoints) holds an older or no ckpt and is noticed the same way. The
 *   guard is one field; the epoch names the writer in messages.
 * - Histories are appended, not rewritten: a Lua script inside the MULTI
 *   appends each user's new entries and trims the value to the retention.
 *   Short stored histories (below STORE_HIST_REWRITE_BELOW) and histories
 *   changed otherwise (a forget) are written whole.
 * - Model rows and statistics are encoded by rows.h; the other binary
 *   values assume a little-endian host (checked at compile time). */
#include "store.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/hiredis.h>

#include "rcluster.h"
#include "rows.h"
#include "store_int.h"
#include "ul_clock.h"
#include "ul_err.h"

void store_opts_init(store_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->host = "127.0.0.1";
    opts->port = 6379;
    opts->timeout_ms = 5000;
    opts->retry_ms = 10000;
    opts->wait_ms = 1000;
}

/* ---- connect ------------------------------------------------------------ */

store *store_connect(const store_opts *opts, char *errstr, size_t errstr_size) {
    store_opts def;
    if (opts == NULL) {
        store_opts_init(&def);
        opts = &def;
    }
    store *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        oom(errstr, errstr_size);
        return NULL;
    }
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        if (opts->inputs[t] && (st->inputs[t] = strdup(opts->inputs[t])) == NULL) {
            oom(errstr, errstr_size);
            store_destroy(st);
            return NULL;
        }
    char seeds[300];
    int cluster = opts->cluster && *opts->cluster;
    if (!cluster)
        snprintf(seeds, sizeof(seeds), "%s:%d", opts->host ? opts->host : "127.0.0.1", opts->port);
    rcluster_opts ro;
    rcluster_opts_init(&ro);
    ro.seeds = cluster ? opts->cluster : seeds;
    ro.mode = cluster ? RCLUSTER_CLUSTER : RCLUSTER_AUTO;
    ro.timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
    ro.retry_ms = opts->retry_ms > 0 ? opts->retry_ms : 10000;
    ro.user = opts->user;
    ro.password = opts->password;
    ro.db = opts->db;
    ro.log_fn = opts->log_fn;
    ro.log_ctx = opts->log_ctx;
    ro.wait_fn = opts->wait_fn;
    ro.wait_ctx = opts->wait_ctx;
    /* WAIT must return before the socket's own timeout fires. */
    st->wait_ms = opts->wait_ms < ro.timeout_ms / 2 ? opts->wait_ms : ro.timeout_ms / 2;
    if ((st->rc = rcluster_connect(&ro, errstr, errstr_size)) == NULL) {
        store_destroy(st);
        return NULL;
    }
    snprintf(st->where, sizeof(st->where), "redis %s%s",
             rcluster_is_cluster(st->rc) ? "cluster " : "", ro.seeds);
    return st;
}

void store_destroy(store *st) {
    if (st == NULL)
        return;
    rcluster_destroy(st->rc);
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        free(st->inputs[t]);
    free(st);
}

int store_is_cluster(const store *st) {
    return rcluster_is_cluster(st->rc);
}

int store_primary_count(const store *st) {
    return rcluster_primary_count(st->rc);
}

const char *store_primary_where(const store *st, int i) {
    return rcluster_primary_where(st->rc, i);
}

int store_ping(store *st, char *errstr, size_t errstr_size) {
    return rcluster_ping_all(st->rc, errstr, errstr_size);
}

/* ---- parsing helpers ---------------------------------------------------- */

static int parse_float(const char *s, size_t len, float *out) {
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    float v = strtof(buf, &end);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* ---- commands: argv with scratch for decimals, into a txn or pipeline --- */

int cmdbuf_init(cmdbuf *b, int cap) {
    memset(b, 0, sizeof(*b));
    b->argv = calloc((size_t)cap, sizeof(*b->argv));
    b->argvlen = calloc((size_t)cap, sizeof(*b->argvlen));
    b->num = calloc((size_t)cap, sizeof(*b->num));
    b->cap = cap;
    return b->argv && b->argvlen && b->num ? 0 : -1;
}

void cmdbuf_free(cmdbuf *b) {
    free(b->argv);
    free(b->argvlen);
    free(b->num);
}

/* Hand the command to its target and reset. */
void cmdbuf_send(cmdbuf *b) {
    int rc = b->txn ? rcluster_txn_append_argv(b->txn, b->argc, b->argv, b->argvlen)
                    : rcluster_pipeline_append_argv(b->pipe, b->argc, b->argv, b->argvlen);
    if (rc != UL_OK && b->rc == UL_OK)
        b->rc = rc;
    b->argc = 0;
}

/* ---- model -------------------------------------------------------------- */

static const char *const model_fields[] = {"k",          "mean",   "min",  "max",
                                           "partitions", "format", "nonce"};
#define N_MODEL_FIELDS 7

int store_model_get(store *st, store_model *m, int *found, char *errstr, size_t errstr_size) {
    redisReply *r = NULL;
    int rc = rcluster_command(st->rc, &r, errstr, errstr_size,
                              "HMGET ul:model k mean min max partitions format nonce");
    if (rc != UL_OK)
        return rc;
    *found = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != N_MODEL_FIELDS) {
        freeReplyObject(r);
        ul_set_err(errstr, errstr_size, "%s: HMGET ul:model: unexpected reply", st->where);
        return UL_ERR_CORRUPT;
    }
    if (!reply_str(r->element[0])) {
        freeReplyObject(r);
        return UL_OK;
    }
    store_model v = {0};
    int64_t k = 0, parts = 0, format = 1;
    redisReply **e = r->element;
    int bad = parse_i64(e[0]->str, e[0]->len, &k) != 0 || k <= 0 || k > 4096;
    for (int i = 1; i <= 3 && !bad; i++) {
        float *dst = i == 1 ? &v.global_mean : i == 2 ? &v.rating_min : &v.rating_max;
        bad = !reply_str(e[i]) || parse_float(e[i]->str, e[i]->len, dst) != 0;
    }
    if (!bad && reply_str(e[4]))
        bad = parse_i64(e[4]->str, e[4]->len, &parts) != 0 || parts < 0;
    if (!bad && reply_str(e[5]))
        bad = parse_i64(e[5]->str, e[5]->len, &format) != 0 || format < 1;
    if (!bad && reply_str(e[6]))
        bad = parse_u64(e[6]->str, e[6]->len, &v.nonce) != 0;
    freeReplyObject(r);
    if (bad) {
        ul_set_err(errstr, errstr_size,
                   "%s: ul:model is malformed (expected k, mean, min, max, partitions, format)",
                   st->where);
        return UL_ERR_CORRUPT;
    }
    v.k = (int)k;
    v.partitions = (int32_t)parts;
    v.format = (int)format;
    *m = v;
    *found = 1;
    return UL_OK;
}

static uint64_t random_nonce(void) {
    uint64_t v = 0;
    while (v == 0)
        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
            v = (uint64_t)ul_clock_wall_ms() * 0x9e3779b97f4a7c15ULL;
    return v;
}

int store_model_put(store *st, const store_model *m, int only_if_absent, char *errstr,
                    size_t errstr_size) {
    char vals[N_MODEL_FIELDS][48];
    snprintf(vals[0], sizeof(vals[0]), "%d", m->k);
    snprintf(vals[1], sizeof(vals[1]), "%.9g", (double)m->global_mean);
    snprintf(vals[2], sizeof(vals[2]), "%.9g", (double)m->rating_min);
    snprintf(vals[3], sizeof(vals[3]), "%.9g", (double)m->rating_max);
    snprintf(vals[4], sizeof(vals[4]), "%" PRId32, m->partitions);
    snprintf(vals[5], sizeof(vals[5]), "%d", STORE_FORMAT);
    snprintf(vals[6], sizeof(vals[6]), "%" PRIu64, m->nonce ? m->nonce : random_nonce());
    rcluster_pipeline *p = rcluster_pipeline_new(st->rc);
    if (p == NULL)
        return oom(errstr, errstr_size);
    int rc = UL_OK;
    for (int i = 0; i < N_MODEL_FIELDS && rc == UL_OK; i++) {
        if (i == 4 && m->partitions <= 0)
            continue;
        rc = rcluster_pipeline_append(p, "%s ul:model %s %s", only_if_absent ? "HSETNX" : "HSET",
                                      model_fields[i], vals[i]);
    }
    if (rc == UL_OK)
        rc = rcluster_pipeline_exec(p, errstr, errstr_size);
    else
        oom(errstr, errstr_size);
    rcluster_pipeline_destroy(p);
    return rc;
}

/* ---- meta --------------------------------------------------------------- */

/* The fields of ul:{p<P>}:meta after the offsets (off:<input topic>), in
 * the order they are written: the one list store_meta_get and store_send_meta
 * share. */
typedef struct meta_field {
    const char *name;
    size_t offset; /* in shard_meta */
    int is_signed; /* int64_t; else uint64_t */
} meta_field;

static const meta_field meta_fields[] = {
    {"applied", offsetof(shard_meta, applied), 0},
    {"forgotten", offsetof(shard_meta, forgotten), 0},
    {"version", offsetof(shard_meta, version), 0},
    {"forget_received", offsetof(shard_meta, forget_received), 0},
    {"forget_completed", offsetof(shard_meta, forget_completed), 0},
    {"dead_letters", offsetof(shard_meta, dead_letters), 0},
    {"checkpoint_ms", offsetof(shard_meta, checkpoint_ms), 1},
    {"rows_off", offsetof(shard_meta, rows_off), 1},
    {"epoch", offsetof(shard_meta, epoch), 0},
    {"ckpt", offsetof(shard_meta, ckpt), 0},
    {"out_seq", offsetof(shard_meta, out_seq), 0},
};
#define N_META_FIELDS (sizeof(meta_fields) / sizeof(meta_fields[0]))

/* "off:<name>" of input t into buf; 0 when its offset is not stored. */
static int offset_field(const store *st, int t, char *buf, size_t size) {
    if (st->inputs[t] == NULL)
        return 0;
    snprintf(buf, size, "off:%s", st->inputs[t]);
    return 1;
}

static int parse_meta_field(const meta_field *f, const redisReply *e, shard_meta *m) {
    void *dst = (char *)m + f->offset;
    return f->is_signed ? parse_i64(e->str, e->len, dst) : parse_u64(e->str, e->len, dst);
}

static void meta_empty(shard_meta *m) {
    memset(m, 0, sizeof(*m));
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        m->next_offset[t] = -1;
    m->rows_off = -1;
    m->out_seq = 1;
}

int store_meta_get(store *st, int32_t partition, shard_meta *meta, int *found, char *errstr,
                   size_t errstr_size) {
    char key[64], off[SHARD_N_INPUTS][300];
    int input[SHARD_N_INPUTS], n_off = 0;
    cmdbuf b;
    if (cmdbuf_init(&b, 2 + SHARD_N_INPUTS + (int)N_META_FIELDS) != 0) {
        cmdbuf_free(&b);
        return oom(errstr, errstr_size);
    }
    key_of(key, sizeof(key), partition, "meta");
    cmdbuf_add_str(&b, "HMGET");
    cmdbuf_add_str(&b, key);
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        if (offset_field(st, t, off[n_off], sizeof(off[0]))) {
            cmdbuf_add_str(&b, off[n_off]);
            input[n_off++] = t;
        }
    for (size_t i = 0; i < N_META_FIELDS; i++)
        cmdbuf_add_str(&b, meta_fields[i].name);
    redisReply *r = NULL;
    int rc = rcluster_command_argv(st->rc, b.argc, b.argv, b.argvlen, &r, errstr, errstr_size);
    size_t n_fields = (size_t)b.argc - 2;
    cmdbuf_free(&b);
    if (rc != UL_OK)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n_fields) {
        freeReplyObject(r);
        ul_set_err(errstr, errstr_size, "%s: HMGET %s: unexpected reply", st->where, key);
        return UL_ERR_CORRUPT;
    }
    shard_meta m;
    meta_empty(&m);
    int any = 0, bad = 0;
    for (size_t i = 0; i < n_fields; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        any = 1;
        if (i < (size_t)n_off)
            bad |= parse_i64(e->str, e->len, &m.next_offset[input[i]]);
        else
            bad |= parse_meta_field(&meta_fields[i - (size_t)n_off], e, &m);
    }
    freeReplyObject(r);
    if (bad) {
        ul_set_err(errstr, errstr_size, "%s: %s has a malformed field", st->where, key);
        return UL_ERR_CORRUPT;
    }
    *found = any;
    *meta = m;
    return UL_OK;
}

void store_send_meta(const store *st, cmdbuf *b, const char *key, const shard_meta *m) {
    char off[SHARD_N_INPUTS][300];
    cmdbuf_add_str(b, "HSET");
    cmdbuf_add_str(b, key);
    for (int t = 0; t < SHARD_N_INPUTS; t++) {
        if (m->next_offset[t] < 0 || !offset_field(st, t, off[t], sizeof(off[t])))
            continue;
        cmdbuf_add_str(b, off[t]);
        cmdbuf_add_i64(b, m->next_offset[t]);
    }
    for (size_t i = 0; i < N_META_FIELDS; i++) {
        const void *v = (const char *)m + meta_fields[i].offset;
        if (meta_fields[i].offset == offsetof(shard_meta, rows_off) && m->rows_off < 0)
            continue;
        cmdbuf_add_str(b, meta_fields[i].name);
        if (meta_fields[i].is_signed)
            cmdbuf_add_i64(b, *(const int64_t *)v);
        else
            cmdbuf_add_u64(b, *(const uint64_t *)v);
    }
    cmdbuf_send(b);
}

/* ---- bulk writes -------------------------------------------------------- */

/* HSETs of `n` (id, value) pairs into a pipeline; value(i, &len) gives the
 * bytes of pair i (borrowed until the next call). */
typedef const void *(*value_fn)(void *ctx, size_t i, size_t *len);

static void put_pairs(cmdbuf *b, const char *key, const int64_t *ids, size_t n, value_fn value,
                      void *ctx) {
    for (size_t i = 0; i < n; i++) {
        cmdbuf_begin(b, "HSET", key);
        size_t len;
        const void *v = value(ctx, i, &len);
        cmdbuf_add_i64(b, ids[i]);
        cmdbuf_add(b, v, len);
        cmdbuf_maybe_send(b);
    }
    cmdbuf_flush(b);
}

typedef struct rows_src {
    const float *rows;
    const rows_stats *stats;
    int dim;
    unsigned char *scratch; /* ROWS_STATS_BYTES per pair: argv points into it */
} rows_src;

static const void *row_value(void *vctx, size_t i, size_t *len) {
    rows_src *s = vctx;
    return rows_value(s->rows + i * (size_t)s->dim, s->dim, len);
}

static const void *stats_value(void *vctx, size_t i, size_t *len) {
    rows_src *s = vctx;
    rows_stats zero = {0, 0.0};
    unsigned char *v = s->scratch + i * ROWS_STATS_BYTES;
    rows_stats_value(s->stats ? &s->stats[i] : &zero, v);
    *len = ROWS_STATS_BYTES;
    return v;
}

/* Run the pairs of up to two keys as one pipeline. */
static int put_bulk(store *st, const char *key1, const char *key2, const int64_t *ids, size_t n,
                    rows_src *src, char *errstr, size_t errstr_size) {
    cmdbuf b;
    int rc = cmdbuf_init(&b, 2 + 2 * PAIRS_PER_CMD) == 0 ? UL_OK : UL_ERR_NOMEM;
    if (rc == UL_OK && (b.pipe = rcluster_pipeline_new(st->rc)) == NULL)
        rc = UL_ERR_NOMEM;
    if (rc == UL_OK) {
        put_pairs(&b, key1, ids, n, row_value, src);
        if (key2)
            put_pairs(&b, key2, ids, n, stats_value, src);
        rc = b.rc;
    }
    if (rc == UL_OK)
        rc = rcluster_pipeline_exec(b.pipe, errstr, errstr_size);
    else
        oom(errstr, errstr_size);
    rcluster_pipeline_destroy(b.pipe);
    cmdbuf_free(&b);
    return rc;
}

int store_users_put(store *st, int32_t partition, const int64_t *ids, const float *rows, size_t n,
                    int dim, char *errstr, size_t errstr_size) {
    char key[64];
    key_of(key, sizeof(key), partition, "users");
    rows_src src = {rows, NULL, dim, NULL};
    return put_bulk(st, key, NULL, ids, n, &src, errstr, errstr_size);
}

int store_home_put(store *st, int32_t partition, const int64_t *ids, const float *rows,
                   const rows_stats *stats, size_t n, int dim, char *errstr, size_t errstr_size) {
    char ikey[64], skey[64];
    key_of(ikey, sizeof(ikey), partition, "items");
    key_of(skey, sizeof(skey), partition, "istats");
    rows_src src = {rows, stats, dim, malloc(n * ROWS_STATS_BYTES + 1)};
    int rc = src.scratch ? put_bulk(st, ikey, skey, ids, n, &src, errstr, errstr_size)
                         : oom(errstr, errstr_size);
    free(src.scratch);
    return rc;
}

/* ---- reads for tools ---------------------------------------------------- */

int store_user_get(store *st, int32_t partition, int64_t user, float *row, int dim, hist *h,
                   int *found, char *errstr, size_t errstr_size) {
    char ukey[64], hkey[64];
    key_of(ukey, sizeof(ukey), partition, "users");
    key_of(hkey, sizeof(hkey), partition, "hist");
    memset(h, 0, sizeof(*h));
    *found = 0;
    redisReply *r = NULL;
    int rc = rcluster_command(st->rc, &r, errstr, errstr_size, "HGET %s %" PRId64, ukey, user);
    if (rc != UL_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return UL_OK;
    }
    int bad = rows_from_value(row, dim, r->str, r->len);
    freeReplyObject(r);
    if (bad) {
        ul_set_err(errstr, errstr_size, "%s: row of user %" PRId64 " has the wrong size", ukey,
                   user);
        return UL_ERR_CORRUPT;
    }
    rc = rcluster_command(st->rc, &r, errstr, errstr_size, "HGET %s %" PRId64, hkey, user);
    if (rc != UL_OK)
        return rc;
    if (r->type == REDIS_REPLY_STRING && r->len > 0) {
        h->n = h->cap = (uint32_t)(r->len / HIST_ENTRY_BYTES);
        h->v = malloc((size_t)h->n * sizeof(*h->v));
        if (h->v == NULL) {
            freeReplyObject(r);
            return oom(errstr, errstr_size);
        }
        for (uint32_t i = 0; i < h->n; i++)
            h->v[i] = decode_hist_entry(r->str, i);
    }
    freeReplyObject(r);
    *found = 1;
    return UL_OK;
}

int store_item_get(store *st, int32_t home, int64_t item, float *row, int dim, int *row_found,
                   rows_stats *stats, char *errstr, size_t errstr_size) {
    char ikey[64], skey[64];
    key_of(ikey, sizeof(ikey), home, "items");
    key_of(skey, sizeof(skey), home, "istats");
    *row_found = 0;
    *stats = (rows_stats){0, 0.0};
    redisReply *r = NULL;
    int rc = rcluster_command(st->rc, &r, errstr, errstr_size, "HGET %s %" PRId64, ikey, item);
    if (rc != UL_OK)
        return rc;
    int bad = r->type == REDIS_REPLY_STRING && rows_from_value(row, dim, r->str, r->len) != 0;
    *row_found = r->type == REDIS_REPLY_STRING && !bad;
    freeReplyObject(r);
    if (!bad && (rc = rcluster_command(st->rc, &r, errstr, errstr_size, "HGET %s %" PRId64, skey,
                                       item)) != UL_OK)
        return rc;
    if (!bad) {
        bad = r->type == REDIS_REPLY_STRING && rows_stats_from_value(stats, r->str, r->len) != 0;
        freeReplyObject(r);
    }
    if (bad) {
        ul_set_err(errstr, errstr_size, "%s/%s: item %" PRId64 " has a value of the wrong size",
                   ikey, skey, item);
        return UL_ERR_CORRUPT;
    }
    return UL_OK;
}

int store_pending_count(store *st, int32_t partition, size_t *n, char *errstr, size_t errstr_size) {
    char key[64];
    key_of(key, sizeof(key), partition, "forget");
    redisReply *r = NULL;
    int rc = rcluster_command(st->rc, &r, errstr, errstr_size, "HLEN %s", key);
    if (rc != UL_OK)
        return rc;
    *n = r->type == REDIS_REPLY_INTEGER ? (size_t)r->integer : 0;
    freeReplyObject(r);
    return UL_OK;
}

int store_clear_all(store *st, char *errstr, size_t errstr_size) {
    return rcluster_del_matching(st->rc, "ul:*", NULL, errstr, errstr_size);
}
