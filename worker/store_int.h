/* store_int.h: what the store's files share (store.c: connect, model,
 * meta, bulk writes, reads for tools; store_load.c: the replica's load and
 * the shard load; store_ckpt.c: encodings and the checkpoint). Internal to
 * worker/: not an API (that is store.h). The parsing and command-building
 * helpers are static inline so the per-field and per-pair paths stay
 * inlined as before the split. */
#ifndef UL_STORE_INT_H
#define UL_STORE_INT_H

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rcluster.h"
#include "store.h"
#include "ul_buf.h"
#include "ul_err.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "store*.c write little-endian binary values; port the encoders for this host"
#endif

#define PAIRS_PER_CMD 512 /* field/value pairs per HSET / fields per HDEL / users per EVAL */

/* History value: n entries of (item i64, time i64, rating f32), oldest first. */
#define HIST_ENTRY_BYTES 20

struct store {
    rcluster *rc;
    char *inputs[SHARD_N_INPUTS]; /* input topic names of the off:<name> fields; NULL: not stored */
    int wait_ms;
    char where[320]; /* "redis host:port" / "redis cluster (seeds ...)", for messages */
};

static inline void key_of(char *buf, size_t size, int32_t partition, const char *suffix) {
    snprintf(buf, size, "ul:{p%" PRId32 "}:%s", partition, suffix);
}

static inline int oom(char *errstr, size_t errstr_size) {
    ul_set_err(errstr, errstr_size, "out of memory");
    return UL_ERR_NOMEM;
}

static inline int parse_i64(const char *s, size_t len, int64_t *out) {
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

static inline int parse_u64(const char *s, size_t len, uint64_t *out) {
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

static inline int reply_str(const redisReply *r) {
    return r && r->type == REDIS_REPLY_STRING;
}

/* ---- commands (store.c): argv with scratch for decimals, into a txn or
 * pipeline ---- */

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

int cmdbuf_init(cmdbuf *b, int cap);
void cmdbuf_free(cmdbuf *b);
/* Hand the command to its target and reset. */
void cmdbuf_send(cmdbuf *b);

static inline void cmdbuf_add(cmdbuf *b, const void *s, size_t len) {
    b->argv[b->argc] = s;
    b->argvlen[b->argc++] = len;
}

static inline void cmdbuf_add_str(cmdbuf *b, const char *s) {
    cmdbuf_add(b, s, strlen(s));
}

static inline void cmdbuf_add_i64(cmdbuf *b, int64_t v) {
    int len = ul_fmt_i64(b->num[b->argc], sizeof(b->num[0]), v);
    cmdbuf_add(b, b->num[b->argc], (size_t)len);
}

static inline void cmdbuf_add_u64(cmdbuf *b, uint64_t v) {
    int len = ul_fmt_u64(b->num[b->argc], sizeof(b->num[0]), v);
    cmdbuf_add(b, b->num[b->argc], (size_t)len);
}

/* Start `cmd key` when nothing is pending. */
static inline void cmdbuf_begin(cmdbuf *b, const char *cmd, const char *key) {
    if (b->argc > 0)
        return;
    cmdbuf_add_str(b, cmd);
    cmdbuf_add_str(b, key);
}

/* Send when full (another pair would not fit). */
static inline void cmdbuf_maybe_send(cmdbuf *b) {
    if (b->argc + 2 > b->cap)
        cmdbuf_send(b);
}

static inline void cmdbuf_flush(cmdbuf *b) {
    if (b->argc > 0)
        cmdbuf_send(b);
}

/* Entry i of a history value (the caller checked its length). */
static inline hist_entry decode_hist_entry(const char *val, size_t i) {
    hist_entry e;
    memcpy(&e.item, val + i * HIST_ENTRY_BYTES, 8);
    memcpy(&e.time, val + i * HIST_ENTRY_BYTES + 8, 8);
    memcpy(&e.rating, val + i * HIST_ENTRY_BYTES + 16, 4);
    return e;
}

/* HSET of the meta (store.c) into b's target. */
void store_send_meta(const store *st, cmdbuf *b, const char *key, const shard_meta *m);

/* The fence's current values (store_load.c; 0 when absent); *found = 0
 * without a meta. */
int store_fence_get(store *st, int32_t p, uint64_t *epoch, uint64_t *ckpt, int *found, char *errstr,
                    size_t errstr_size);

#endif
