/* rcluster_int.h: what the Redis Cluster client's files share (rcluster.c:
 * helpers, connect, single commands, whole-cluster helpers; rcluster_map.c:
 * slots, parsers, nodes and connections, the slot map; rcluster_txn.c: reply
 * classification, pipelines, transactions). Internal to worker/: not an API
 * (that is rcluster.h). rc_-prefixed functions are internal to rcluster*.c. */
#ifndef UL_RCLUSTER_INT_H
#define UL_RCLUSTER_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rcluster.h"
#include "ul_err.h"

#define NAME_MAX_CHARS 80

/* ---- types -------------------------------------------------------------- */

typedef struct rc_node {
    char host[256];
    int port;
    char addr[300]; /* "host:port" ("[v6]:port"), for messages and callers */
    redisContext *c;
    int64_t failed_ms; /* when it last failed; 0 once it answered again */
    int seed;          /* from opts.seeds */
    int in_map;        /* primary or replica in the current map */
    int replicas;      /* as a primary: replicas in the current map (WAIT after a txn) */
    int replicas_new;  /* scratch while a map loads */
    unsigned mark;     /* scratch for a pipeline round */
} rc_node;

struct rcluster {
    char *seeds, *user, *password;
    rcluster_mode mode;
    int timeout_ms, retry_ms, db;
    void (*log_fn)(void *, const char *);
    void *log_ctx;
    void (*wait_fn)(void *, int);
    void *wait_ctx;
    int wait_depth; /* nested waits (a reply inside a retry): wait_fn on 0 <-> 1 only */
    int cluster;    /* 1: Redis Cluster, 0: one plain Redis */
    rc_node **nodes;
    int n_nodes, cap_nodes;
    rc_node *slots[RCLUSTER_SLOTS];
    rc_node **scratch_slots; /* RCLUSTER_SLOTS entries, for loading a map */
    rc_node **primaries;     /* distinct primaries of `slots`, in slot order */
    int n_primaries;
    unsigned round; /* pipeline round counter (node marks) */
    rcluster_stats stats;
    rcluster_pipeline *one; /* reused by rcluster_command */
};

typedef struct rc_buf {
    char *p;
    size_t len, cap;
} rc_buf;

typedef struct rc_cmd {
    size_t off, len; /* formatted bytes in the pipeline's arena */
    int slot;
    rc_node *ask;  /* next attempt: ASKING, then this node */
    rc_node *node; /* the node that answered */
    redisReply *reply;
    int asked; /* scratch: this round was sent with ASKING */
} rc_cmd;

struct rcluster_pipeline {
    rcluster *rc;
    rc_buf buf;
    rc_cmd *cmds;
    size_t n, cap;
};

struct rcluster_txn {
    rcluster *rc;
    int slot;
    rc_buf buf;   /* the commands, formatted */
    size_t *offs; /* start of each command in buf */
    size_t n, cap;
    int guard;
    char *gkey, *gfield, *gval; /* gval NULL: the field must be absent */
    size_t gval_len;
    redisReply *exec;
    rc_node *where;
    int wait_ms; /* > 0: WAIT for a replica after EXEC (rcluster_txn_wait) */
    int acked;   /* replicas that acknowledged; -1: none asked */
};

/* Retry bookkeeping of one call. */
typedef struct retry {
    rcluster *rc;
    int waiting; /* slept once already: the caller was told (rc_waiting) */
    int64_t deadline;
    int backoff_ms;
    int free_redirects;
    char last[UL_ERRSTR_SIZE]; /* the last retryable failure, for the final message */
} retry;

/* ---- rcluster.c: small helpers ------------------------------------------ */

int64_t rc_now_ms(void);
void rc_log(rcluster *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rc_note(rcluster *rc, retry *rt, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void rc_waiting(rcluster *rc, int on);
void rc_retry_init(rcluster *rc, retry *rt);
int rc_retry_wait(retry *rt, int backoff);
void rc_retry_end(retry *rt);
void rc_printable(char *out, size_t size, const char *s, size_t len);
int rc_buf_put(rc_buf *b, const void *s, size_t n);
int rc_resp_format(rc_buf *b, int argc, const char **argv, const size_t *argvlen);
int rc_buf_append_argv(rc_buf *b, int argc, const char **argv, const size_t *argvlen, size_t *off);
int rc_buf_append_fmt(rc_buf *b, const char *fmt, va_list ap, size_t *off);
int rc_resp_key(const char *cmd, size_t len, const char **key, size_t *klen);
void rc_cmd_name(char *out, size_t size, const char *cmd, size_t len);

/* ---- rcluster_map.c: parsers, nodes and connections, the slot map ------- */

typedef int (*seed_fn)(void *ctx, const char *host, int port);

int rc_each_seed(const char *list, seed_fn fn, void *ctx, char *errstr, size_t errstr_size);
rc_node *rc_node_get(rcluster *rc, const char *host, int port);
int rc_node_simple(rcluster *rc, rc_node *nd, const char *what, redisReply **out, char *errstr,
                   size_t errstr_size, int argc, const char **argv);
int rc_node_ready(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size);
int rc_node_sendv(rcluster *rc, rc_node *nd, struct iovec *v, int n, char *errstr,
                  size_t errstr_size);
redisReply *rc_node_read(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size);
int rc_map_install(rcluster *rc, rc_node **slots);
int rc_map_load_from(rcluster *rc, rc_node *nd, int *standalone, char *errstr, size_t errstr_size);
void rc_err_append(char *errstr, size_t errstr_size, const char *msg);
void rc_refresh_quiet(rcluster *rc);

/* ---- rcluster_txn.c: pipelines ------------------------------------------ */

int rc_pipe_add(rcluster_pipeline *p, size_t off);

#endif
