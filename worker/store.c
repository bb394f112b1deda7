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

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/hiredis.h>

#include "rcluster.h"
#include "rows.h"
#include "ul_buf.h"
#include "ul_clock.h"
#include "ul_err.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "store.c writes little-endian binary values; port the encoders for this host"
#endif

#define PAIRS_PER_CMD 512 /* field/value pairs per HSET / fields per HDEL / users per EVAL */
#define CLAIM_TRIES 8     /* concurrent claims of one partition: retried this often */

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

struct store {
    rcluster *rc;
    char *inputs[SHARD_N_INPUTS]; /* input topic names of the off:<name> fields; NULL: not stored */
    int wait_ms;
    char where[320]; /* "redis host:port" / "redis cluster (seeds ...)", for messages */
};

void store_opts_init(store_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->host = "127.0.0.1";
    opts->port = 6379;
    opts->timeout_ms = 5000;
    opts->retry_ms = 10000;
    opts->wait_ms = 1000;
}

static void key_of(char *buf, size_t size, int32_t partition, const char *suffix) {
    snprintf(buf, size, "ul:{p%" PRId32 "}:%s", partition, suffix);
}

static int oom(char *errstr, size_t errstr_size) {
    ul_set_err(errstr, errstr_size, "out of memory");
    return UL_ERR_NOMEM;
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

static int parse_i64(const char *s, size_t len, int64_t *out) {
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_u64(const char *s, size_t len, uint64_t *out) {
    char buf[32];
    if (len == 0 || len >= sizeof(buf) || s[0] == '-')
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

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

static int reply_str(const redisReply *r) {
    return r && r->type == REDIS_REPLY_STRING;
}

/* ---- commands: argv with scratch for decimals, into a txn or pipeline --- */

/* A command under construction: argv with owned scratch storage for the
 * decimal fields (values point into caller memory). Appending copies the
 * command (rcluster formats it), so the buffers are reused. */
typedef struct cmdbuf {
    const char **argv;
    size_t *argvlen;
    char (*num)[24];
    int argc, cap;
    rcluster_txn *txn; /* the target: a transaction, or */
    rcluster_pipeline *pipe;
    int rc; /* the first append failure */
} cmdbuf;

static int cmdbuf_init(cmdbuf *b, int cap) {
    memset(b, 0, sizeof(*b));
    b->argv = calloc((size_t)cap, sizeof(*b->argv));
    b->argvlen = calloc((size_t)cap, sizeof(*b->argvlen));
    b->num = calloc((size_t)cap, sizeof(*b->num));
    b->cap = cap;
    return b->argv && b->argvlen && b->num ? 0 : -1;
}

static void cmdbuf_free(cmdbuf *b) {
    free(b->argv);
    free(b->argvlen);
    free(b->num);
}

static void cmdbuf_add(cmdbuf *b, const void *s, size_t len) {
    b->argv[b->argc] = s;
    b->argvlen[b->argc++] = len;
}

static void cmdbuf_add_str(cmdbuf *b, const char *s) {
    cmdbuf_add(b, s, strlen(s));
}

static void cmdbuf_add_i64(cmdbuf *b, int64_t v) {
    int len = ul_fmt_i64(b->num[b->argc], sizeof(b->num[0]), v);
    cmdbuf_add(b, b->num[b->argc], (size_t)len);
}

static void cmdbuf_add_u64(cmdbuf *b, uint64_t v) {
    int len = ul_fmt_u64(b->num[b->argc], sizeof(b->num[0]), v);
    cmdbuf_add(b, b->num[b->argc], (size_t)len);
}

/* Hand the command to its target and reset. */
static void cmdbuf_send(cmdbuf *b) {
    int rc = b->txn ? rcluster_txn_append_argv(b->txn, b->argc, b->argv, b->argvlen)
                    : rcluster_pipeline_append_argv(b->pipe, b->argc, b->argv, b->argvlen);
    if (rc != UL_OK && b->rc == UL_OK)
        b->rc = rc;
    b->argc = 0;
}

/* Start `cmd key` when nothing is pending. */
static void cmdbuf_begin(cmdbuf *b, const char *cmd, const char *key) {
    if (b->argc > 0)
        return;
    cmdbuf_add_str(b, cmd);
    cmdbuf_add_str(b, key);
}

/* Send when full (another pair would not fit). */
static void cmdbuf_maybe_send(cmdbuf *b) {
    if (b->argc + 2 > b->cap)
        cmdbuf_send(b);
}

static void cmdbuf_flush(cmdbuf *b) {
    if (b->argc > 0)
        cmdbuf_send(b);
}

/* ---- HSCAN -------------------------------------------------------------- */

static int hscan(store *st, const char *key, rcluster_field_fn fn, rcluster_restart_fn restart,
                 void *ctx, char *errstr, size_t errstr_size) {
    return rcluster_hscan(st->rc, key, fn, restart, ctx, errstr, errstr_size);
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

/* History value: n entries of (item i64, time i64, rating f32), oldest first. */
#define HIST_ENTRY_BYTES 20

static void encode_hist_range(const hist *h, uint32_t from, unsigned char *out) {
    for (uint32_t i = from; i < h->n; i++) {
        const hist_entry *e = &h->v[h->start + i];
        unsigned char *o = out + (size_t)(i - from) * HIST_ENTRY_BYTES;
        memcpy(o, &e->item, 8);
        memcpy(o + 8, &e->time, 8);
        memcpy(o + 16, &e->rating, 4);
    }
}

/* Entry i of a history value (the caller checked its length). */
static hist_entry decode_hist_entry(const char *val, size_t i) {
    hist_entry e;
    memcpy(&e.item, val + i * HIST_ENTRY_BYTES, 8);
    memcpy(&e.time, val + i * HIST_ENTRY_BYTES + 8, 8);
    memcpy(&e.rating, val + i * HIST_ENTRY_BYTES + 16, 4);
    return e;
}

/* ---- meta --------------------------------------------------------------- */

/* The fields of ul:{p<P>}:meta after the offsets (off:<input topic>), in
 * the order they are written: the one list store_meta_get and send_meta
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

static void send_meta(const store *st, cmdbuf *b, const char *key, const shard_meta *m) {
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
static int fence_get(store *st, int32_t p, uint64_t *epoch, uint64_t *ckpt, int *found,
                     char *errstr, size_t errstr_size) {
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
        int rc = fence_get(st, s->partition, &epoch, &ckpt, &found, errstr, errstr_size);
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
        send_meta(st, b, key, &m);
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
    if (fence_get(st, s->partition, &epoch, &ckpt, &found, err, sizeof(err)) != UL_OK)
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
    if (fence_get(st, s->partition, &epoch, &ckpt, &found, err, sizeof(err)) != UL_OK) {
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
