/* rcluster.h: a Redis Cluster client on hiredis 0.14.1 (blocking I/O, one
 * connection per node). Owns the slot map (CLUSTER SLOTS), the per-node
 * connections (AUTH on each), slot routing by CRC16 with hash tags, and the
 * retry rules: MOVED (map updated, retried), ASK (ASKING + retry on the
 * target, map kept), TRYAGAIN / CLUSTERDOWN / LOADING / a node down (retried
 * with backoff within opts.retry_ms, the map refreshed from the other known
 * nodes). A plain Redis is a "cluster" of one node serving every slot, so a
 * caller has one code path for both. See docs/cluster.md.
 *
 * Every command is routed by its first argument (argv[1]): the key of every
 * command the store sends (HSET, HDEL, HGET, HMGET, HSCAN, HLEN, HSETNX,
 * DEL, SET, GET, ...); EVAL/EVALSHA/FCALL (and their _RO forms) by their
 * first key (argv[3]). Keyless commands go through the whole-cluster
 * helpers (rcluster_ping_all, rcluster_scan).
 *
 * Return codes: UL_OK, UL_ERR_ARG (bad seed list, cross-slot transaction),
 * UL_ERR_NOMEM, UL_ERR_IO (unavailable: no node could serve the request
 * within the retry budget; a transaction was NOT applied) or one of
 * rcluster_err below. Messages name the node ("redis host:port") and the
 * reply, never a password or a value.
 *
 * Commands are written with MSG_NOSIGNAL, but hiredis's own writes (AUTH,
 * CLUSTER SLOTS on a fresh connection) are plain write()s: a process using
 * this client ignores SIGPIPE, as the unlearnd CLI does. Not thread-safe:
 * one rcluster per thread. */
#ifndef UL_RCLUSTER_H
#define UL_RCLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define RCLUSTER_SLOTS 16384

enum rcluster_err {
    RCLUSTER_ERR_REPLY = -32,   /* Redis answered an error that retrying cannot fix (WRONGTYPE,
                                 * WRONGPASS, a transaction command rejected at queue time...).
                                 * A transaction was NOT applied. */
    RCLUSTER_ERR_UNKNOWN = -33, /* a transaction's EXEC was sent but its reply never came
                                 * (connection lost, timeout): it may or may not have been
                                 * applied. Treat as fatal or reload. */
    RCLUSTER_ERR_EXEC = -34,    /* a transaction was applied but a command inside failed (Redis
                                 * does not roll back): the state is partial. */
    RCLUSTER_ERR_GUARD = -35,   /* a transaction's guard field did not hold the expected value
                                 * (rcluster_txn_guard): NOT applied. */
};

/* "unavailable", "Redis error reply", ... for any code (falls back to ul_err_name). */
const char *rcluster_err_name(int code);

typedef enum rcluster_mode {
    RCLUSTER_AUTO = 0,   /* ask the first seed that answers: a cluster node, or a plain Redis
                          * (cluster support disabled; then exactly one seed) */
    RCLUSTER_CLUSTER,    /* refuse a seed that is not a cluster node */
    RCLUSTER_STANDALONE, /* one plain Redis, all slots, never a CLUSTER command */
} rcluster_mode;

typedef struct rcluster_opts {
    const char *seeds;    /* "host:port,host:port,..." ("[v6]:port" allowed); tried in order */
    rcluster_mode mode;   /* default RCLUSTER_AUTO */
    int timeout_ms;       /* connect and I/O timeout per node, default 5000 */
    int retry_ms;         /* how long one call keeps retrying (node down, CLUSTERDOWN,
                           * TRYAGAIN, failover) before UL_ERR_IO; default 10000 */
    const char *user;     /* ACL user for AUTH (Redis 6+); NULL/"" = default user */
    const char *password; /* AUTH on every node connection when non-empty */
    int db;               /* SELECT when > 0: plain Redis only (a cluster has only db 0) */
    /* Called (when non-NULL) with a one-line message for every retried event:
     * redirections, node failures, CLUSTERDOWN, map refreshes. Borrowed. */
    void (*log_fn)(void *log_ctx, const char *msg);
    void *log_ctx;
    /* Called (when non-NULL) with 1 before the client blocks waiting for a
     * node's reply (none already buffered) or first sleeps before a retry
     * (a node down, CLUSTERDOWN, a slot not served), and with 0 once the
     * reply came or the call ended, so a caller can tell how long Redis has
     * kept it waiting (the worker's /readyz). Never nested. On the caller's
     * thread. Borrowed. */
    void (*wait_fn)(void *wait_ctx, int waiting);
    void *wait_ctx;
} rcluster_opts;

void rcluster_opts_init(rcluster_opts *opts);

typedef struct rcluster rcluster;

/* Connect to the first seed that answers (AUTH, SELECT) and load the slot
 * map. NULL with a message naming every seed tried and why it failed.
 * `opts` strings are copied. */
rcluster *rcluster_connect(const rcluster_opts *opts, char *errstr, size_t errstr_size);
void rcluster_destroy(rcluster *rc);

/* 1 when connected to a Redis Cluster, 0 for a plain Redis. */
int rcluster_is_cluster(const rcluster *rc);

/* Reload the slot map from the known nodes (healthy ones first, then the
 * seeds). Called internally after MOVED and node failures; callers may call
 * it periodically. A no-op for a plain Redis. */
int rcluster_refresh(rcluster *rc, char *errstr, size_t errstr_size);

/* CRC16-CCITT (XMODEM) and the key's slot: the CRC of the hash tag (the
 * bytes between the first '{' and the next '}', when non-empty) or of the
 * whole key, mod 16384. */
uint16_t rcluster_crc16(const char *buf, size_t len);
int rcluster_key_slot(const char *key, size_t len);

/* "host:port" of the primary serving `slot` in the current map ("" when
 * uncovered). Node strings stay valid until rcluster_destroy, so a caller may
 * compare the pointers to notice that a slot changed primary. */
const char *rcluster_slot_where(const rcluster *rc, int slot);

/* Number of distinct primaries in the current map, and the i-th one's "host:port". */
int rcluster_primary_count(const rcluster *rc);
const char *rcluster_primary_where(const rcluster *rc, int i);

/* One command routed by argv[1]. On UL_OK *reply is the reply (owned by the
 * caller: freeReplyObject); an error reply is returned as RCLUSTER_ERR_REPLY
 * with *reply = NULL. rcluster_command takes a hiredis format ("HGET %s %b"). */
int rcluster_command(rcluster *rc, redisReply **reply, char *errstr, size_t errstr_size,
                     const char *fmt, ...);
int rcluster_command_argv(rcluster *rc, int argc, const char **argv, const size_t *argvlen,
                          redisReply **reply, char *errstr, size_t errstr_size);

/* ---- pipelines ----------------------------------------------------------
 * Commands are copied when appended, grouped by node on exec, sent to every
 * node before any reply is read, and re-sent one by one after a redirection
 * or a lost connection, in their original order (so per key, order holds).
 * A command whose reply was lost with a connection is sent again: only put
 * idempotent commands in a pipeline (HSET, HDEL, DEL, GET...); use a
 * transaction for anything else. A pipeline is not atomic. Keep one and
 * reset it between calls: its command arena is reused. */
typedef struct rcluster_pipeline rcluster_pipeline;

/* Borrows rc until rcluster_pipeline_destroy. NULL when out of memory. */
rcluster_pipeline *rcluster_pipeline_new(rcluster *rc);
void rcluster_pipeline_destroy(rcluster_pipeline *p);
/* UL_ERR_ARG for a command without a key (argc < 2). */
int rcluster_pipeline_append_argv(rcluster_pipeline *p, int argc, const char **argv,
                                  const size_t *argvlen);
int rcluster_pipeline_append(rcluster_pipeline *p, const char *fmt, ...);
size_t rcluster_pipeline_count(const rcluster_pipeline *p);
/* Send every command not yet answered. Every command is attempted even
 * when another fails; the first error reply is returned as
 * RCLUSTER_ERR_REPLY naming the command and node. UL_ERR_IO when some
 * commands could not be delivered within the retry budget (others may
 * have been applied). */
int rcluster_pipeline_exec(rcluster_pipeline *p, char *errstr, size_t errstr_size);
/* The i-th command's reply (error replies included); NULL before exec or
 * when it was never answered. Borrowed until reset or destroy. */
const redisReply *rcluster_pipeline_reply(const rcluster_pipeline *p, size_t i);
/* Drop the commands and replies; the pipeline is reusable. */
void rcluster_pipeline_reset(rcluster_pipeline *p);

/* ---- single-slot transactions -------------------------------------------
 * MULTI, the commands, EXEC on the primary of one slot, pipelined (one round
 * trip; two with a guard). Retried whole while nothing can have been
 * applied: the slot moved (MOVED at queue time, EXECABORT, MOVED on EXEC),
 * ASK (ASKING, then the whole transaction on the target), TRYAGAIN,
 * CLUSTERDOWN, a node down before EXEC was written, a guard WATCH that
 * fired. The outcome is never ambiguous: UL_OK (applied), UL_ERR_IO /
 * RCLUSTER_ERR_REPLY / RCLUSTER_ERR_GUARD (not applied),
 * RCLUSTER_ERR_EXEC (applied, a command failed) or RCLUSTER_ERR_UNKNOWN. */
typedef struct rcluster_txn rcluster_txn;

/* The transaction's slot is `key`'s slot (e.g. "ul:{p3}:meta"). Borrows rc. */
rcluster_txn *rcluster_txn_new(rcluster *rc, const char *key, size_t keylen);
void rcluster_txn_destroy(rcluster_txn *t);
/* UL_ERR_ARG when argv[1] is in another slot than the transaction's. */
int rcluster_txn_append_argv(rcluster_txn *t, int argc, const char **argv, const size_t *argvlen);
int rcluster_txn_append(rcluster_txn *t, const char *fmt, ...);
/* Only EXEC when hash `key` (same slot) field `field` holds `expected`
 * (expected = NULL: the field must be absent), atomically (WATCH key; HGET;
 * MULTI ... EXEC). A mismatch is RCLUSTER_ERR_GUARD naming the value found.
 * This is how a sole writer notices that a failover lost an acknowledged
 * transaction (docs/cluster.md). Copies the strings. */
int rcluster_txn_guard(rcluster_txn *t, const char *key, const char *field, const char *expected,
                       size_t expected_len);
int rcluster_txn_exec(rcluster_txn *t, char *errstr, size_t errstr_size);
/* The i-th command's result inside EXEC's reply (after UL_OK or
 * RCLUSTER_ERR_EXEC), NULL otherwise. Borrowed until reset or destroy. */
const redisReply *rcluster_txn_reply(const rcluster_txn *t, size_t i);
/* "host:port" of the node of the last attempt ("" before exec). */
const char *rcluster_txn_where(const rcluster_txn *t);
/* After an applied EXEC, wait up to timeout_ms (0 = never: the default) for
 * one replica to acknowledge the transaction's writes (WAIT 1 on the same
 * connection), when the node has replicas: in the slot map (a cluster) or
 * in ROLE at connect (a plain Redis). rcluster_txn_acked then says how many
 * acknowledged: -1 when none was asked (no replicas), 0 when none did in
 * time (or the WAIT failed). A caller that must not announce a write a
 * failover could undo (a receipt) publishes only after acked != 0. Keep
 * timeout_ms below the client's I/O timeout. */
void rcluster_txn_wait(rcluster_txn *t, int timeout_ms);
int rcluster_txn_acked(const rcluster_txn *t);
/* Drop the commands, the guard and the replies; keeps the slot. */
void rcluster_txn_reset(rcluster_txn *t);

/* ---- whole-cluster helpers ---------------------------------------------- */

/* PING every primary; the first that fails (after retries) is named. */
int rcluster_ping_all(rcluster *rc, char *errstr, size_t errstr_size);

/* SCAN MATCH `pattern` over every primary; fn gets each key (borrowed for
 * the call; fn must not call rcluster functions). When a node fails mid-scan
 * the map is refreshed and the scan restarts, so fn may see a key twice. A
 * non-zero return from fn stops the scan and is returned. */
typedef int (*rcluster_key_fn)(void *ctx, const char *key, size_t len, char *errstr,
                               size_t errstr_size);
int rcluster_scan(rcluster *rc, const char *pattern, rcluster_key_fn fn, void *ctx, char *errstr,
                  size_t errstr_size);

/* Delete every key matching `pattern` (scan + DEL), repeated until a pass
 * finds none (keys moving between nodes during a pass are caught by the
 * next). *deleted (may be NULL) receives the number of keys deleted. */
int rcluster_del_matching(rcluster *rc, const char *pattern, size_t *deleted, char *errstr,
                          size_t errstr_size);

/* HSCAN `key` to the end, COUNT 1000 per call. If the key's node changes
 * between calls (migration, failover) the cursor means nothing there, so
 * the scan restarts from 0: restart_fn (when non-NULL) is called first, to
 * drop what fn received so far (e.g. appended entries); with restart_fn
 * NULL, fn must tolerate seeing a field twice (e.g. it overwrites). fn's
 * arguments are borrowed for the call; fn may call rcluster functions. A
 * non-zero return from fn or restart_fn stops the scan and is returned. */
typedef int (*rcluster_field_fn)(void *ctx, const char *field, size_t flen, const char *val,
                                 size_t vlen, char *errstr, size_t errstr_size);
typedef int (*rcluster_restart_fn)(void *ctx, char *errstr, size_t errstr_size);
int rcluster_hscan(rcluster *rc, const char *key, rcluster_field_fn fn,
                   rcluster_restart_fn restart_fn, void *ctx, char *errstr, size_t errstr_size);

/* Counters since connect, for metrics and tests. */
typedef struct rcluster_stats {
    uint64_t moved, ask, tryagain, clusterdown; /* replies seen (clusterdown includes LOADING) */
    uint64_t node_errors;                       /* connect or I/O failures */
    uint64_t refreshes;                         /* slot maps loaded */
    uint64_t txn_retries;                       /* transactions re-sent whole */
    uint64_t hscan_restarts;                    /* HSCANs restarted after a node change */
} rcluster_stats;

void rcluster_stats_get(const rcluster *rc, rcluster_stats *out);

/* ---- parsers (exposed for the unit test) -------------------------------- */

/* "host:port" (blanks around ignored, "[v6]:port" allowed) -> host, port.
 * -1 when malformed. */
int rcluster_endpoint_parse(const char *s, size_t len, char *host, size_t host_size, int *port);
/* Validate a seed list; *n (may be NULL) receives the count. UL_ERR_ARG names the bad entry. */
int rcluster_seeds_check(const char *list, int *n, char *errstr, size_t errstr_size);

/* Walk a CLUSTER SLOTS reply (3.x to 7.x formats: [start, end, primary,
 * replicas...], each node [endpoint, port, id?, metadata?]). An endpoint
 * that is NULL, "" or "?" means `reply_host` (the node that answered). fn is
 * called once per node entry (replica = 0 for the primary); a non-zero
 * return stops the walk and is returned. UL_ERR_PARSE describes a malformed
 * reply. */
typedef int (*rcluster_range_fn)(void *ctx, int start, int end, int replica, const char *host,
                                 int port, const char *id);
int rcluster_slots_parse(const redisReply *r, const char *reply_host, rcluster_range_fn fn,
                         void *ctx, char *errstr, size_t errstr_size);

/* "MOVED 3999 127.0.0.1:6381" / "ASK 3999 :6381" -> *ask (0/1), *slot, host
 * ("" when the reply has none: the same host as the node that answered),
 * *port. -1 when `err` is not a redirection. */
int rcluster_redirect_parse(const char *err, size_t len, int *ask, int *slot, char *host,
                            size_t host_size, int *port);

#endif
