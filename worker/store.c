/* store.c: Redis I/O for the worker's state (layout in store.h and
 * docs/store.md).
 *
 * DESIGN: reads use HSCAN (COUNT 1000) so a large partition never blocks
 * Redis for long; writes are pipelined (redisAppendCommandArgv, then one
 * reply per command) and a checkpoint wraps all of a partition's writes in
 * MULTI/EXEC. hiredis copies each command into its output buffer when it is
 * appended, so the argument buffers below are reused between commands.
 * Model rows are encoded by rows.h; the other binary values (histories,
 * forget requests) assume a little-endian host (checked at compile time). */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "rows.h"
#include "ul_buf.h"
#include "ul_clock.h"
#include "ul_err.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "store.c writes little-endian binary rows; port the encoders for this host"
#endif

#define PAIRS_PER_CMD 512 /* field/value pairs per HSET / fields per HDEL */
#define SCAN_COUNT "1000"

/* One Redis endpoint (a shard). */
typedef struct node {
    redisContext *c;
    char where[300]; /* "redis host:port", for messages */
} node;

struct store {
    node *nodes; /* nodes[0] also holds ul:model */
    int n_nodes;
    char *inputs[SHARD_N_INPUTS]; /* input topic names of the off:<name> fields; NULL: not stored */
};

/* The stable mappings (docs/store.md "Shards"): partition P lives on shard
 * P mod n, item row I on shard I mod n, ul:model on shard 0. Changing the
 * shard list therefore moves keys; it needs a fresh state (import --replace
 * or a replay). */
static int mod_n(int64_t v, int n) {
    return (int)(((v % n) + n) % n);
}

static node *part_node(store *st, int32_t partition) {
    return &st->nodes[mod_n(partition, st->n_nodes)];
}

static node *model_node(store *st) {
    return &st->nodes[0];
}

void store_opts_init(store_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->host = "127.0.0.1";
    opts->port = 6379;
    opts->timeout_ms = 5000;
}

/* Turn a hiredis failure or an error reply into errstr; returns UL_ERR_IO. */
static int fail_reply(node *st, redisReply *r, const char *what, char *errstr, size_t errstr_size) {
    if (r == NULL)
        ul_set_err(errstr, errstr_size, "%s: %s: %s", st->where, what,
                   st->c->errstr[0] ? st->c->errstr : "connection lost");
    else if (r->type == REDIS_REPLY_ERROR)
        ul_set_err(errstr, errstr_size, "%s: %s: %s", st->where, what, r->str);
    else
        ul_set_err(errstr, errstr_size, "%s: %s: unexpected reply type %d", st->where, what,
                   r->type);
    if (r)
        freeReplyObject(r);
    return UL_ERR_IO;
}

/* Parse "host:port" (surrounding blanks ignored; "[v6addr]:port" allowed)
 * into host/port. */
static int parse_endpoint(const char *s, size_t len, char *host, size_t host_size, int *port) {
    while (len > 0 && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    size_t colon = len;
    while (colon > 0 && s[colon - 1] != ':')
        colon--;
    if (colon < 2 || colon == len || len - colon > 5)
        return -1;
    size_t hlen = colon - 1;
    const char *h = s;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
        h++, hlen -= 2;
    if (hlen == 0 || hlen >= host_size)
        return -1;
    long v = 0;
    for (size_t i = colon; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)v;
    return 0;
}

/* Calls fn for each endpoint of a comma-separated list; -1 with errstr on a
 * malformed one. Returns the number of endpoints. */
typedef int (*endpoint_fn)(void *ctx, const char *host, int port, char *errstr, size_t errstr_size);

static int each_endpoint(const char *list, endpoint_fn fn, void *ctx, char *errstr,
                         size_t errstr_size) {
    int n = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char host[256];
        int port = 0;
        if (parse_endpoint(p, len, host, sizeof(host), &port) != 0) {
            ul_set_err(errstr, errstr_size,
                       "redis.shards: '%.*s' is not host:port (expected host:port,host:port,...)",
                       (int)len, p);
            return -1;
        }
        if (n >= STORE_MAX_SHARDS) {
            ul_set_err(errstr, errstr_size, "redis.shards: more than %d endpoints",
                       STORE_MAX_SHARDS);
            return -1;
        }
        if (fn && fn(ctx, host, port, errstr, errstr_size) != 0)
            return -1;
        n++;
        if (end == NULL)
            return n;
        p = end + 1;
    }
}

int store_shards_check(const char *list, int *n, char *errstr, size_t errstr_size) {
    int count = list && *list ? each_endpoint(list, NULL, NULL, errstr, errstr_size) : 1;
    if (count < 0)
        return UL_ERR_ARG;
    if (n)
        *n = count;
    return UL_OK;
}

/* AUTH [user] password. A server without any password answers "called
 * without any password configured"; that one is accepted when no user is
 * named, so shards can be moved to requirepass one at a time. */
static int node_auth(node *nd, const store_opts *opts, char *errstr, size_t errstr_size) {
    redisReply *r;
    int has_user = opts->user && *opts->user;
    if (has_user)
        r = redisCommand(nd->c, "AUTH %s %s", opts->user, opts->password);
    else
        r = redisCommand(nd->c, "AUTH %s", opts->password);
    if (r && r->type == REDIS_REPLY_ERROR && !has_user &&
        strstr(r->str, "without any password configured")) {
        freeReplyObject(r);
        return UL_OK;
    }
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        /* Never echo the password: the reply text only. */
        fail_reply(nd, r,
                   has_user ? "AUTH (redis.user, redis.password) failed"
                            : "AUTH (redis.password) failed",
                   errstr, errstr_size);
        return UL_ERR_IO;
    }
    freeReplyObject(r);
    return UL_OK;
}

typedef struct connect_ctx {
    store *st;
    const store_opts *opts;
} connect_ctx;

static int node_connect(void *vctx, const char *host, int port, char *errstr, size_t errstr_size) {
    connect_ctx *ctx = vctx;
    const store_opts *opts = ctx->opts;
    node *nd = &ctx->st->nodes[ctx->st->n_nodes++];
    snprintf(nd->where, sizeof(nd->where), "redis %s:%d", host, port);
    struct timeval tv = {opts->timeout_ms / 1000, (opts->timeout_ms % 1000) * 1000};
    nd->c = redisConnectWithTimeout(host, port, tv);
    if (nd->c == NULL) {
        ul_set_err(errstr, errstr_size, "%s: out of memory", nd->where);
        return -1;
    }
    if (nd->c->err) {
        ul_set_err(errstr, errstr_size, "cannot connect to %s: %s", nd->where, nd->c->errstr);
        return -1;
    }
    if (redisSetTimeout(nd->c, tv) != REDIS_OK) {
        ul_set_err(errstr, errstr_size, "%s: cannot set the I/O timeout", nd->where);
        return -1;
    }
    if (opts->password && *opts->password && node_auth(nd, opts, errstr, errstr_size) != UL_OK)
        return -1;
    if (opts->db > 0) {
        redisReply *r = redisCommand(nd->c, "SELECT %d", opts->db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fail_reply(nd, r, "SELECT", errstr, errstr_size);
            return -1;
        }
        freeReplyObject(r);
    }
    return 0;
}

store *store_connect(const store_opts *opts, char *errstr, size_t errstr_size) {
    store_opts def;
    if (opts == NULL) {
        store_opts_init(&def);
        opts = &def;
    }
    int n = 1;
    if (store_shards_check(opts->shards, &n, errstr, errstr_size) != UL_OK)
        return NULL;
    store *st = calloc(1, sizeof(*st));
    if (st == NULL || (st->nodes = calloc((size_t)n, sizeof(*st->nodes))) == NULL) {
        free(st);
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        if (opts->inputs[t] && (st->inputs[t] = strdup(opts->inputs[t])) == NULL) {
            ul_set_err(errstr, errstr_size, "out of memory");
            goto fail;
        }
    connect_ctx ctx = {st, opts};
    if (opts->shards && *opts->shards) {
        if (each_endpoint(opts->shards, node_connect, &ctx, errstr, errstr_size) < 0)
            goto fail;
    } else {
        const char *host = opts->host && *opts->host ? opts->host : "127.0.0.1";
        if (node_connect(&ctx, host, opts->port, errstr, errstr_size) != 0)
            goto fail;
    }
    return st;
fail:
    store_destroy(st);
    return NULL;
}

void store_destroy(store *st) {
    if (st == NULL)
        return;
    for (int i = 0; i < st->n_nodes; i++)
        if (st->nodes[i].c)
            redisFree(st->nodes[i].c);
    free(st->nodes);
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        free(st->inputs[t]);
    free(st);
}

int store_shard_count(const store *st) {
    return st->n_nodes;
}

int store_shard_of(const store *st, int32_t partition) {
    return mod_n(partition, st->n_nodes);
}

const char *store_shard_where(const store *st, int idx) {
    return idx >= 0 && idx < st->n_nodes ? st->nodes[idx].where + 6 : "";
}

int store_ping(store *st, char *errstr, size_t errstr_size) {
    for (int i = 0; i < st->n_nodes; i++) {
        node *nd = &st->nodes[i];
        redisReply *r = redisCommand(nd->c, "PING");
        if (r == NULL || r->type != REDIS_REPLY_STATUS)
            return fail_reply(nd, r, "PING", errstr, errstr_size);
        freeReplyObject(r);
    }
    return UL_OK;
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
    int64_t v;
    if (parse_i64(s, len, &v) != 0 || v < 0)
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

/* ---- HSCAN -------------------------------------------------------------- */

typedef int (*pair_fn)(void *ctx, const char *field, size_t flen, const char *val, size_t vlen,
                       char *errstr, size_t errstr_size);

static int hscan_all(node *st, const char *key, pair_fn fn, void *ctx, char *errstr,
                     size_t errstr_size) {
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(st->c, "HSCAN %s %s COUNT " SCAN_COUNT, key, cursor);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY)
            return fail_reply(st, r, key, errstr, errstr_size);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *kv = r->element[1];
        for (size_t i = 0; i + 1 < kv->elements; i += 2) {
            redisReply *f = kv->element[i], *v = kv->element[i + 1];
            int rc = fn(ctx, f->str, f->len, v->str, v->len, errstr, errstr_size);
            if (rc != UL_OK) {
                freeReplyObject(r);
                return rc;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return UL_OK;
}

typedef struct row_ctx {
    rowset *into;
    rows_kind kind;
    const char *key;
} row_ctx;

static int load_row(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                    char *errstr, size_t errstr_size) {
    row_ctx *ctx = vctx;
    int dim = rowset_dim(ctx->into);
    int64_t id;
    if (parse_i64(field, flen, &id) != 0) {
        ul_set_err(errstr, errstr_size, "%s: field '%.*s' is not an id", ctx->key, (int)flen,
                   field);
        return UL_ERR_CORRUPT;
    }
    if (vlen != rows_value_size(dim)) {
        ul_set_err(errstr, errstr_size, "%s: row %" PRId64 " has %zu bytes, expected %zu (k=%d)",
                   ctx->key, id, vlen, rows_value_size(dim), rows_k(ctx->kind, dim));
        return UL_ERR_CORRUPT;
    }
    int32_t idx = rowset_insert(ctx->into, id, NULL);
    if (idx < 0) {
        ul_set_err(errstr, errstr_size, "out of memory loading %s", ctx->key);
        return UL_ERR_NOMEM;
    }
    rows_from_value(rowset_row(ctx->into, idx), dim, val, vlen);
    return UL_OK;
}

static void key_of(char *buf, size_t size, int32_t partition, const char *suffix) {
    snprintf(buf, size, "ul:{p%" PRId32 "}:%s", partition, suffix);
}

int store_items_load(store *st, rowset *into, char *errstr, size_t errstr_size) {
    row_ctx ctx = {into, ROWS_ITEM, "ul:items"};
    for (int i = 0; i < st->n_nodes; i++) {
        int rc = hscan_all(&st->nodes[i], "ul:items", load_row, &ctx, errstr, errstr_size);
        if (rc != UL_OK)
            return rc;
    }
    return UL_OK;
}

int store_deltas_load(store *st, int32_t partition, rowset *into, char *errstr,
                      size_t errstr_size) {
    node *nd = part_node(st, partition);
    char key[64];
    key_of(key, sizeof(key), partition, "idelta");
    row_ctx ctx = {into, ROWS_ITEM, key};
    return hscan_all(nd, key, load_row, &ctx, errstr, errstr_size);
}

/* ---- model -------------------------------------------------------------- */

int store_model_get(store *st, store_model *m, int *found, char *errstr, size_t errstr_size) {
    node *nd = model_node(st);
    redisReply *r = redisCommand(nd->c, "HMGET ul:model k mean min max partitions");
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5)
        return fail_reply(nd, r, "HMGET ul:model", errstr, errstr_size);
    *found = 0;
    if (r->element[0]->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return UL_OK;
    }
    store_model v = {0};
    int64_t k = 0, parts = 0;
    int bad = r->element[0]->type != REDIS_REPLY_STRING ||
              parse_i64(r->element[0]->str, r->element[0]->len, &k) != 0 || k <= 0 || k > 4096;
    for (int i = 1; i <= 3 && !bad; i++) {
        float *dst = i == 1 ? &v.global_mean : i == 2 ? &v.rating_min : &v.rating_max;
        bad = r->element[i]->type != REDIS_REPLY_STRING ||
              parse_float(r->element[i]->str, r->element[i]->len, dst) != 0;
    }
    if (!bad && r->element[4]->type == REDIS_REPLY_STRING)
        bad = parse_i64(r->element[4]->str, r->element[4]->len, &parts) != 0 || parts < 0;
    freeReplyObject(r);
    if (bad) {
        ul_set_err(errstr, errstr_size, "%s: ul:model is malformed (expected k, mean, min, max)",
                   nd->where);
        return UL_ERR_CORRUPT;
    }
    v.k = (int)k;
    v.partitions = (int32_t)parts;
    *m = v;
    *found = 1;
    return UL_OK;
}

int store_model_put(store *st, const store_model *m, int only_if_absent, char *errstr,
                    size_t errstr_size) {
    node *nd = model_node(st);
    char vals[5][48];
    const char *names[5] = {"k", "mean", "min", "max", "partitions"};
    snprintf(vals[0], sizeof(vals[0]), "%d", m->k);
    snprintf(vals[1], sizeof(vals[1]), "%.9g", (double)m->global_mean);
    snprintf(vals[2], sizeof(vals[2]), "%.9g", (double)m->rating_min);
    snprintf(vals[3], sizeof(vals[3]), "%.9g", (double)m->rating_max);
    snprintf(vals[4], sizeof(vals[4]), "%" PRId32, m->partitions);
    int n = m->partitions > 0 ? 5 : 4;
    for (int i = 0; i < n; i++) {
        const char *cmd = only_if_absent ? "HSETNX" : "HSET";
        redisAppendCommand(nd->c, "%s ul:model %s %s", cmd, names[i], vals[i]);
    }
    int rc = UL_OK;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(nd->c, (void **)&r) != REDIS_OK || r == NULL ||
            r->type != REDIS_REPLY_INTEGER) {
            rc = fail_reply(nd, r, "HSET ul:model", errstr, errstr_size);
            r = NULL;
            if (nd->c->err)
                return rc;
        }
        if (r)
            freeReplyObject(r);
    }
    return rc;
}

/* ---- pipelined batch writes --------------------------------------------- */

/* A command under construction: argv with owned scratch storage for the
 * decimal fields (values point into caller memory). */
typedef struct cmdbuf {
    const char **argv;
    size_t *argvlen;
    char (*num)[24];
    int argc, cap;
} cmdbuf;

static int cmdbuf_init(cmdbuf *b, int cap) {
    b->argv = calloc((size_t)cap, sizeof(*b->argv));
    b->argvlen = calloc((size_t)cap, sizeof(*b->argvlen));
    b->num = calloc((size_t)cap, sizeof(*b->num));
    b->argc = 0;
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
    int len = snprintf(b->num[b->argc], sizeof(b->num[0]), "%" PRId64, v);
    cmdbuf_add(b, b->num[b->argc], (size_t)len);
}

static void cmdbuf_add_u64(cmdbuf *b, uint64_t v) {
    int len = snprintf(b->num[b->argc], sizeof(b->num[0]), "%" PRIu64, v);
    cmdbuf_add(b, b->num[b->argc], (size_t)len);
}

/* Append the command and reset; returns the number of commands appended. */
static int cmdbuf_send(node *st, cmdbuf *b) {
    int rc = redisAppendCommandArgv(st->c, b->argc, b->argv, b->argvlen) == REDIS_OK ? 1 : -1;
    b->argc = 0;
    return rc;
}

/* Read `n` replies; the first error is reported. */
static int read_replies(node *st, int n, const char *what, char *errstr, size_t errstr_size) {
    int rc = UL_OK;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(st->c, (void **)&r) != REDIS_OK)
            return fail_reply(st, NULL, what, errstr, errstr_size);
        if (r->type == REDIS_REPLY_ERROR && rc == UL_OK) {
            rc = fail_reply(st, r, what, errstr, errstr_size);
            continue;
        }
        freeReplyObject(r);
    }
    return rc;
}

static int put_rows(node *st, const char *key, const int64_t *ids, const float *rows, size_t n,
                    int dim, char *errstr, size_t errstr_size) {
    cmdbuf b;
    int sent = 0;
    if (cmdbuf_init(&b, 2 + 2 * PAIRS_PER_CMD) != 0) {
        cmdbuf_free(&b);
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (b.argc == 0) {
            cmdbuf_add_str(&b, "HSET");
            cmdbuf_add_str(&b, key);
        }
        size_t len;
        const void *val = rows_value(rows + i * (size_t)dim, dim, &len);
        cmdbuf_add_i64(&b, ids[i]);
        cmdbuf_add(&b, val, len);
        if (b.argc == b.cap || i + 1 == n)
            sent += cmdbuf_send(st, &b);
    }
    cmdbuf_free(&b);
    return read_replies(st, sent, key, errstr, errstr_size);
}

int store_items_put(store *st, const int64_t *ids, const float *rows, size_t n, int dim,
                    char *errstr, size_t errstr_size) {
    if (st->n_nodes == 1)
        return put_rows(&st->nodes[0], "ul:items", ids, rows, n, dim, errstr, errstr_size);
    /* Item I goes to shard I mod n: gather each shard's rows, then write. */
    int64_t *sids = malloc((n ? n : 1) * sizeof(*sids));
    float *srows = malloc((n ? n : 1) * (size_t)dim * sizeof(*srows));
    int rc = sids && srows ? UL_OK : UL_ERR_NOMEM;
    if (rc != UL_OK)
        ul_set_err(errstr, errstr_size, "out of memory");
    for (int sh = 0; sh < st->n_nodes && rc == UL_OK; sh++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            if (mod_n(ids[i], st->n_nodes) != sh)
                continue;
            sids[m] = ids[i];
            memcpy(srows + m * (size_t)dim, rows + i * (size_t)dim, (size_t)dim * sizeof(float));
            m++;
        }
        if (m > 0)
            rc = put_rows(&st->nodes[sh], "ul:items", sids, srows, m, dim, errstr, errstr_size);
    }
    free(sids);
    free(srows);
    return rc;
}

int store_users_put(store *st, int32_t partition, const int64_t *ids, const float *rows, size_t n,
                    int dim, char *errstr, size_t errstr_size) {
    node *nd = part_node(st, partition);
    char key[64];
    key_of(key, sizeof(key), partition, "users");
    return put_rows(nd, key, ids, rows, n, dim, errstr, errstr_size);
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

/* History value: n entries of (item i64, time i64, rating f32), oldest first. */
#define HIST_ENTRY_BYTES 20

static void encode_hist(const hist *h, unsigned char *out) {
    for (uint32_t i = 0; i < h->n; i++) {
        const hist_entry *e = &h->v[h->start + i];
        memcpy(out + i * HIST_ENTRY_BYTES, &e->item, 8);
        memcpy(out + i * HIST_ENTRY_BYTES + 8, &e->time, 8);
        memcpy(out + i * HIST_ENTRY_BYTES + 16, &e->rating, 4);
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

/* ---- shard load --------------------------------------------------------- */

typedef struct shard_ctx {
    shard *s;
    const char *key;
} shard_ctx;

static int load_hist(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                     char *errstr, size_t errstr_size) {
    shard_ctx *ctx = vctx;
    int64_t user;
    if (parse_i64(field, flen, &user) != 0 || vlen % HIST_ENTRY_BYTES != 0) {
        ul_set_err(errstr, errstr_size, "%s: malformed history '%.*s'", ctx->key, (int)flen, field);
        return UL_ERR_CORRUPT;
    }
    int32_t uidx = shard_user(ctx->s, user);
    if (uidx < 0)
        goto oom;
    for (size_t i = 0; i < vlen / HIST_ENTRY_BYTES; i++) {
        hist_entry e = decode_hist_entry(val, i);
        if (shard_hist_append(ctx->s, uidx, &e) != 0)
            goto oom;
    }
    return UL_OK;
oom:
    ul_set_err(errstr, errstr_size, "out of memory loading %s", ctx->key);
    return UL_ERR_NOMEM;
}

static int load_forget(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                       char *errstr, size_t errstr_size) {
    shard_ctx *ctx = vctx;
    forget_req fr;
    int rc = store_decode_forget((const unsigned char *)val, vlen, &fr);
    if (rc != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s: malformed forget request '%.*s'", ctx->key, (int)flen,
                   field);
        return rc;
    }
    if (shard_pending_add(ctx->s, &fr) != 0) {
        forget_req_free(&fr);
        ul_set_err(errstr, errstr_size, "out of memory loading %s", ctx->key);
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

static int load_outbox(void *vctx, const char *field, size_t flen, const char *val, size_t vlen,
                       char *errstr, size_t errstr_size) {
    shard_ctx *ctx = vctx;
    int64_t version;
    if (parse_i64(field, flen, &version) != 0 || version < 0) {
        ul_set_err(errstr, errstr_size, "%s: malformed field '%.*s'", ctx->key, (int)flen, field);
        return UL_ERR_CORRUPT;
    }
    unsigned char *blob = malloc(vlen ? vlen : 1);
    if (blob == NULL || shard_outbox_add(ctx->s, (uint64_t)version, blob, vlen) != 0) {
        free(blob);
        ul_set_err(errstr, errstr_size, "out of memory loading %s", ctx->key);
        return UL_ERR_NOMEM;
    }
    memcpy(blob, val, vlen);
    return UL_OK;
}

static int cmp_outbox(const void *a, const void *b) {
    const outbox_entry *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static int cmp_pending(const void *a, const void *b) {
    const forget_req *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

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

int store_meta_get(store *st, int32_t partition, shard_meta *meta, int *found, char *errstr,
                   size_t errstr_size) {
    node *nd = part_node(st, partition);
    char key[64], off[SHARD_N_INPUTS][300];
    int input[SHARD_N_INPUTS], n_off = 0;
    cmdbuf b;
    if (cmdbuf_init(&b, 2 + SHARD_N_INPUTS + (int)N_META_FIELDS) != 0) {
        cmdbuf_free(&b);
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
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
    redisReply *r = redisCommandArgv(nd->c, b.argc, b.argv, b.argvlen);
    size_t n_fields = (size_t)b.argc - 2;
    cmdbuf_free(&b);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != n_fields)
        return fail_reply(nd, r, key, errstr, errstr_size);
    shard_meta m;
    memset(&m, 0, sizeof(m));
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        m.next_offset[t] = -1;
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
        ul_set_err(errstr, errstr_size, "%s: %s has a malformed field", nd->where, key);
        return UL_ERR_CORRUPT;
    }
    *found = any;
    *meta = m;
    return UL_OK;
}

int store_shard_load(store *st, shard *s, char *errstr, size_t errstr_size) {
    node *nd = part_node(st, s->partition);
    char key[64];
    int found = 0;
    int rc = store_meta_get(st, s->partition, &s->meta, &found, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    key_of(key, sizeof(key), s->partition, "users");
    row_ctx rctx = {s->users, ROWS_USER, key};
    if ((rc = hscan_all(nd, key, load_row, &rctx, errstr, errstr_size)) != UL_OK)
        return rc;
    key_of(key, sizeof(key), s->partition, "idelta");
    rctx.into = s->deltas;
    rctx.kind = ROWS_ITEM;
    if ((rc = hscan_all(nd, key, load_row, &rctx, errstr, errstr_size)) != UL_OK)
        return rc;
    key_of(key, sizeof(key), s->partition, "hist");
    shard_ctx sctx = {s, key};
    if ((rc = hscan_all(nd, key, load_hist, &sctx, errstr, errstr_size)) != UL_OK)
        return rc;
    key_of(key, sizeof(key), s->partition, "forget");
    if ((rc = hscan_all(nd, key, load_forget, &sctx, errstr, errstr_size)) != UL_OK)
        return rc;
    if (s->n_pending > 1)
        qsort(s->pending, s->n_pending, sizeof(*s->pending), cmp_pending);
    key_of(key, sizeof(key), s->partition, "outbox");
    if ((rc = hscan_all(nd, key, load_outbox, &sctx, errstr, errstr_size)) != UL_OK)
        return rc;
    if (s->n_outbox > 1)
        qsort(s->outbox, s->n_outbox, sizeof(*s->outbox), cmp_outbox);
    shard_clear_dirty(s);
    return UL_OK;
}

/* ---- checkpoint --------------------------------------------------------- */

static int send_dirty_rows(node *st, cmdbuf *b, const char *key, rowset *rs) {
    size_t n;
    const int32_t *dirty = rowset_dirty(rs, &n);
    int sent = 0, dim = rowset_dim(rs);
    for (size_t i = 0; i < n; i++) {
        if (b->argc == 0) {
            cmdbuf_add_str(b, "HSET");
            cmdbuf_add_str(b, key);
        }
        size_t len;
        const void *val = rows_value(rowset_row_const(rs, dirty[i]), dim, &len);
        cmdbuf_add_i64(b, rowset_key(rs, dirty[i]));
        cmdbuf_add(b, val, len);
        if (b->argc >= b->cap - 1 || i + 1 == n)
            sent += cmdbuf_send(st, b);
    }
    return sent;
}

/* Histories: non-empty ones are HSET, emptied ones HDEL. All packed values
 * go into one scratch buffer sized up front, so the argv entries pointing
 * into it stay valid until each command is appended. The caller frees
 * *scratch after the appends. */
static int send_dirty_hists(node *st, cmdbuf *b, const char *key, shard *s, int *sent,
                            unsigned char **scratch) {
    size_t total = 0, used = 0;
    for (size_t i = 0; i < s->n_hist_dirty; i++)
        total += (size_t)s->hists[s->hist_dirty_list[i]].n * HIST_ENTRY_BYTES;
    *scratch = malloc(total ? total : 1);
    if (*scratch == NULL)
        return -1;
    for (int pass = 0; pass < 2; pass++) { /* 0: HSET non-empty, 1: HDEL empty */
        for (size_t i = 0; i < s->n_hist_dirty; i++) {
            int32_t uidx = s->hist_dirty_list[i];
            const hist *h = &s->hists[uidx];
            if ((pass == 0) != (h->n > 0))
                continue;
            if (b->argc == 0) {
                cmdbuf_add_str(b, pass == 0 ? "HSET" : "HDEL");
                cmdbuf_add_str(b, key);
            }
            cmdbuf_add_i64(b, rowset_key(s->users, uidx));
            if (pass == 0) {
                size_t len = (size_t)h->n * HIST_ENTRY_BYTES;
                encode_hist(h, *scratch + used);
                cmdbuf_add(b, *scratch + used, len);
                used += len;
            }
            if (b->argc >= b->cap - 1)
                *sent += cmdbuf_send(st, b);
        }
        if (b->argc > 0)
            *sent += cmdbuf_send(st, b);
    }
    return 0;
}

static int send_forget_changes(node *st, cmdbuf *b, const char *key, shard *s, int *sent) {
    for (size_t i = 0; i < s->n_removed; i++) {
        if (b->argc == 0) {
            cmdbuf_add_str(b, "HDEL");
            cmdbuf_add_str(b, key);
        }
        cmdbuf_add_i64(b, s->removed[i]);
        if (b->argc >= b->cap - 1 || i + 1 == s->n_removed)
            *sent += cmdbuf_send(st, b);
    }
    for (size_t i = 0; i < s->n_pending; i++) {
        forget_req *fr = &s->pending[i];
        if (!fr->unsaved)
            continue;
        unsigned char *buf = NULL;
        size_t len = 0;
        if (store_encode_forget(fr, &buf, &len) != UL_OK)
            return -1;
        cmdbuf_add_str(b, "HSET");
        cmdbuf_add_str(b, key);
        cmdbuf_add_i64(b, fr->offset);
        cmdbuf_add(b, buf, len);
        *sent += cmdbuf_send(st, b);
        free(buf);
    }
    return 0;
}

/* HDEL the acknowledged entries and, with `added`, HSET the unsaved ones. */
static void send_outbox_changes(node *st, cmdbuf *b, const char *key, shard *s, int *sent,
                                int added) {
    for (size_t i = 0; i < s->n_outbox_removed; i++) {
        if (b->argc == 0) {
            cmdbuf_add_str(b, "HDEL");
            cmdbuf_add_str(b, key);
        }
        cmdbuf_add_u64(b, s->outbox_removed[i]);
        if (b->argc >= b->cap - 1 || i + 1 == s->n_outbox_removed)
            *sent += cmdbuf_send(st, b);
    }
    for (size_t i = 0; added && i < s->n_outbox; i++) {
        if (!s->outbox[i].unsaved)
            continue;
        cmdbuf_add_str(b, "HSET");
        cmdbuf_add_str(b, key);
        cmdbuf_add_u64(b, s->outbox[i].version);
        cmdbuf_add(b, s->outbox[i].blob, s->outbox[i].len);
        *sent += cmdbuf_send(st, b);
    }
}

static int send_meta(node *nd, const store *st, cmdbuf *b, const char *key, const shard *s) {
    char off[SHARD_N_INPUTS][300];
    const shard_meta *m = &s->meta;
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
        cmdbuf_add_str(b, meta_fields[i].name);
        if (meta_fields[i].is_signed)
            cmdbuf_add_i64(b, *(const int64_t *)v);
        else
            cmdbuf_add_u64(b, *(const uint64_t *)v);
    }
    return cmdbuf_send(nd, b);
}

int store_shard_checkpoint(store *st, shard *s, char *errstr, size_t errstr_size) {
    node *nd = part_node(st, s->partition);
    char key[64];
    cmdbuf b;
    int sent = 0, rc = UL_OK;
    if (cmdbuf_init(&b, 2 + 2 * PAIRS_PER_CMD) != 0) {
        cmdbuf_free(&b);
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    s->meta.checkpoint_ms = ul_clock_wall_ms();
    redisAppendCommand(nd->c, "MULTI");
    key_of(key, sizeof(key), s->partition, "users");
    sent += send_dirty_rows(nd, &b, key, s->users);
    key_of(key, sizeof(key), s->partition, "idelta");
    sent += send_dirty_rows(nd, &b, key, s->deltas);
    key_of(key, sizeof(key), s->partition, "hist");
    unsigned char *scratch = NULL;
    int oom = send_dirty_hists(nd, &b, key, s, &sent, &scratch);
    free(scratch);
    key_of(key, sizeof(key), s->partition, "forget");
    oom |= send_forget_changes(nd, &b, key, s, &sent);
    key_of(key, sizeof(key), s->partition, "outbox");
    send_outbox_changes(nd, &b, key, s, &sent, 1);
    key_of(key, sizeof(key), s->partition, "meta");
    sent += send_meta(nd, st, &b, key, s);
    cmdbuf_free(&b);
    /* On a local failure, DISCARD instead of EXEC: nothing is applied. */
    redisAppendCommand(nd->c, oom ? "DISCARD" : "EXEC");
    rc = read_replies(nd, 1 + sent, "checkpoint", errstr, errstr_size);
    redisReply *r = NULL;
    if (redisGetReply(nd->c, (void **)&r) != REDIS_OK)
        return fail_reply(nd, NULL, "checkpoint EXEC", errstr, errstr_size);
    if (oom) {
        freeReplyObject(r);
        ul_set_err(errstr, errstr_size, "out of memory building the checkpoint of partition %d",
                   (int)s->partition);
        return UL_ERR_NOMEM;
    }
    if (r->type != REDIS_REPLY_ARRAY) /* EXECABORT: nothing applied */
        return fail_reply(nd, r, "checkpoint EXEC", errstr, errstr_size);
    for (size_t i = 0; i < r->elements && rc == UL_OK; i++)
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            ul_set_err(errstr, errstr_size, "%s: checkpoint of partition %d: %s", nd->where,
                       (int)s->partition, r->element[i]->str);
            rc = UL_ERR_IO;
        }
    freeReplyObject(r);
    if (rc == UL_OK)
        shard_clear_dirty(s);
    return rc;
}

int store_outbox_drop(store *st, shard *s, char *errstr, size_t errstr_size) {
    if (s->n_outbox_removed == 0)
        return UL_OK;
    node *nd = part_node(st, s->partition);
    char key[64];
    cmdbuf b;
    int sent = 0;
    if (cmdbuf_init(&b, 2 + PAIRS_PER_CMD) != 0) {
        cmdbuf_free(&b);
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    key_of(key, sizeof(key), s->partition, "outbox");
    send_outbox_changes(nd, &b, key, s, &sent, 0);
    cmdbuf_free(&b);
    int rc = read_replies(nd, sent, "deleting acknowledged outbox entries", errstr, errstr_size);
    if (rc == UL_OK)
        s->n_outbox_removed = 0;
    return rc;
}

/* ---- reads for tools ---------------------------------------------------- */

int store_user_get(store *st, int32_t partition, int64_t user, float *row, int dim, hist *h,
                   int *found, char *errstr, size_t errstr_size) {
    node *nd = part_node(st, partition);
    char ukey[64], hkey[64];
    key_of(ukey, sizeof(ukey), partition, "users");
    key_of(hkey, sizeof(hkey), partition, "hist");
    memset(h, 0, sizeof(*h));
    *found = 0;
    redisReply *r = redisCommand(nd->c, "HGET %s %" PRId64, ukey, user);
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
        return fail_reply(nd, r, ukey, errstr, errstr_size);
    if (r->type == REDIS_REPLY_NIL) {
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
    r = redisCommand(nd->c, "HGET %s %" PRId64, hkey, user);
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
        return fail_reply(nd, r, hkey, errstr, errstr_size);
    if (r->type == REDIS_REPLY_STRING && r->len > 0) {
        h->n = h->cap = (uint32_t)(r->len / HIST_ENTRY_BYTES);
        h->v = malloc((size_t)h->n * sizeof(*h->v));
        if (h->v == NULL) {
            freeReplyObject(r);
            ul_set_err(errstr, errstr_size, "out of memory");
            return UL_ERR_NOMEM;
        }
        for (uint32_t i = 0; i < h->n; i++)
            h->v[i] = decode_hist_entry(r->str, i);
    }
    freeReplyObject(r);
    *found = 1;
    return UL_OK;
}

int store_pending_count(store *st, int32_t partition, size_t *n, char *errstr, size_t errstr_size) {
    node *nd = part_node(st, partition);
    char key[64];
    key_of(key, sizeof(key), partition, "forget");
    redisReply *r = redisCommand(nd->c, "HLEN %s", key);
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        return fail_reply(nd, r, key, errstr, errstr_size);
    *n = (size_t)r->integer;
    freeReplyObject(r);
    return UL_OK;
}

static int node_clear_all(node *st, char *errstr, size_t errstr_size) {
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(st->c, "SCAN %s MATCH ul:* COUNT 1000", cursor);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            return fail_reply(st, r, "SCAN", errstr, errstr_size);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *d =
                redisCommand(st->c, "DEL %b", keys->element[i]->str, (size_t)keys->element[i]->len);
            if (d == NULL || d->type != REDIS_REPLY_INTEGER) {
                freeReplyObject(r);
                return fail_reply(st, d, "DEL", errstr, errstr_size);
            }
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return UL_OK;
}

int store_clear_all(store *st, char *errstr, size_t errstr_size) {
    for (int i = 0; i < st->n_nodes; i++) {
        int rc = node_clear_all(&st->nodes[i], errstr, errstr_size);
        if (rc != UL_OK)
            return rc;
    }
    return UL_OK;
}
