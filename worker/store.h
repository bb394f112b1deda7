/* store.h: the worker's Redis store, format 2, on the Redis Cluster client
 * (rcluster.h: one code path for a plain Redis and a Cluster). Owns the key
 * layout, the meta field table, the encodings of histories, eviction
 * summaries and forget requests, the loads and the checkpoint transaction
 * with its fence; see docs/store.md.
 *
 *   ul:model              hash: k, mean, min, max, partitions, format (2), nonce
 *   ul:{p<P>}:meta        hash: off:<topic> (next offset of each input topic),
 *                         rows_off, applied, forgotten, version, forget_received,
 *                         forget_completed, dead_letters, checkpoint_ms, epoch,
 *                         ckpt, out_seq
 *   ul:{p<P>}:users       hash: raw user id -> user row
 *   ul:{p<P>}:hist        hash: raw user id -> packed recent ratings (appended)
 *   ul:{p<P>}:evict       hash: raw user id -> eviction summary
 *   ul:{p<P>}:items       hash: home item id -> item row
 *   ul:{p<P>}:istats      hash: home item id -> count (int64) + rating sum (float64)
 *   ul:{p<P>}:seen        hash: <Q> -> last exact delivery from source partition Q
 *                         P's statistics applied; r<Q> -> the last one P's stored
 *                         rows include (at the last row flush)
 *   ul:{p<P>}:forget      hash: source offset -> encoded pending forget request
 *   ul:{p<P>}:outbox      hash: <version> -> an unlearning cycle's messages,
 *                         d<seq> -> a checkpoint's exact item deliveries, until
 *                         Kafka acknowledged them
 *
 * Ids in field names are decimal. Rows and statistics are encoded by
 * rows.h; histories, summaries and forget requests here; outbox entries are
 * publish.h's records, stored as they are. Every key of partition P carries
 * the hash tag {p<P>}: one Cluster slot per partition, so P's checkpoint is
 * one single-slot MULTI/EXEC and P's state and its next offsets become
 * durable together or not at all. */
#ifndef UL_STORE_H
#define UL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "rowset.h"
#include "shard.h"

#define STORE_FORMAT 2

/* A checkpoint (or claim) found partition P's fence moved: Redis lost what
 * this worker wrote (FLUSHALL, a restore, a failover that lost checkpoints)
 * or another worker took P. Nothing was written. The message names P and
 * both values. */
#define STORE_ERR_FENCE (-40)

typedef struct store_opts {
    const char *host;     /* one plain Redis: default "127.0.0.1" */
    int port;             /* default 6379 */
    const char *cluster;  /* "host:port,...": seed nodes of a Redis Cluster; when non-empty
                           * it replaces host/port */
    int timeout_ms;       /* connect and I/O timeout per node, default 5000 */
    int retry_ms;         /* how long one call rides out a failover or a redirection storm
                           * before it fails (rcluster_opts.retry_ms), default 10000 */
    int wait_ms;          /* after a checkpoint, wait this long for a replica to have it
                           * (when the node has replicas); default 1000 */
    const char *user;     /* ACL user for AUTH (Redis 6+); NULL/"" = default user */
    const char *password; /* AUTH when non-NULL and non-empty, on every node */
    int db;               /* SELECT when > 0 (plain Redis only) */
    /* The input topics' names, for their off:<topic> meta fields (indexed
     * like shard_meta.next_offset); NULL: that offset is not stored. */
    const char *inputs[SHARD_N_INPUTS];
    /* One line for every event the client rides out (redirection, node
     * down, failover); NULL: silent. */
    void (*log_fn)(void *log_ctx, const char *msg);
    void *log_ctx;
    /* Told when a call starts and stops waiting for Redis (rcluster_opts'
     * wait_fn); NULL: not told. */
    void (*wait_fn)(void *wait_ctx, int waiting);
    void *wait_ctx;
} store_opts;

/* Defaults: 127.0.0.1:6379, no cluster, timeouts above, no AUTH, db 0, no
 * input names (worker_store_opts() fills everything from a configuration). */
void store_opts_init(store_opts *opts);

typedef struct store store;

/* Connect (AUTH, SELECT; for a cluster, the slot map). NULL with a message
 * naming the node(s) that failed. */
store *store_connect(const store_opts *opts, char *errstr, size_t errstr_size);
void store_destroy(store *st);

/* 1 for a Redis Cluster; its primaries, and "host:port" of the i-th. */
int store_is_cluster(const store *st);
int store_primary_count(const store *st);
const char *store_primary_where(const store *st, int i);

/* Round trip; UL_OK when every primary answers PING. */
int store_ping(store *st, char *errstr, size_t errstr_size);

/* Model-wide facts. */
typedef struct store_model {
    int k;
    float global_mean;
    float rating_min, rating_max;
    int32_t partitions; /* 0 = unknown */
    int format;         /* of the stored state: STORE_FORMAT (1 = before format 2) */
    uint64_t nonce;     /* random, set once: which incarnation of the state this is */
} store_model;

/* Read ul:model; *found = 0 (and *m untouched) when it does not exist. */
int store_model_get(store *st, store_model *m, int *found, char *errstr, size_t errstr_size);
/* Write ul:model (format STORE_FORMAT, and m->nonce, or a random one when
 * 0). With only_if_absent, fields already present are kept (so concurrent
 * workers agree on the first writer's values); read back with
 * store_model_get. */
int store_model_put(store *st, const store_model *m, int only_if_absent, char *errstr,
                    size_t errstr_size);

/* ---- the item replica (every partition, at start) ----------------------- */

/* Called for each stored row (`dim` floats) and for each item's statistics
 * of partition P; a non-zero return stops the load and is returned.
 * Arguments are borrowed for the call. */
typedef int (*store_row_fn)(void *ctx, int64_t id, const float *row, int dim, char *errstr,
                            size_t errstr_size);
typedef int (*store_stats_fn)(void *ctx, int64_t id, const rows_stats *st, char *errstr,
                              size_t errstr_size);
/* `rows` 0: the last delivery from `source` P's statistics applied; 1: the
 * last one P's stored rows include (as of rows_off). */
typedef int (*store_seen_fn)(void *ctx, int32_t source, int rows, int64_t seq, char *errstr,
                             size_t errstr_size);
/* ul:{pP}:items (rows of `dim` floats; another size is an error naming the
 * key, the field and k), ul:{pP}:istats and ul:{pP}:seen. */
int store_home_load(store *st, int32_t partition, int dim, store_row_fn row_fn,
                    store_stats_fn stats_fn, store_seen_fn seen_fn, void *ctx, char *errstr,
                    size_t errstr_size);

/* ---- bulk writes (import) ----------------------------------------------- */

/* Rows of `dim` floats, row-major, into P's users; home items of P (rows and
 * statistics, stats may be NULL: 0/0). */
int store_users_put(store *st, int32_t partition, const int64_t *ids, const float *rows, size_t n,
                    int dim, char *errstr, size_t errstr_size);
int store_home_put(store *st, int32_t partition, const int64_t *ids, const float *rows,
                   const rows_stats *stats, size_t n, int dim, char *errstr, size_t errstr_size);

/* ---- a partition's state ------------------------------------------------ */

/* Take partition s->partition for this worker and load it into the empty
 * shard `s`: the claim bumps the fence (epoch and ckpt: a previous owner
 * still writing is refused from now on), then meta, users, histories,
 * eviction summaries, pending forget requests, the outboxes, P's home
 * items' statistics and seen. Item rows are not loaded (the live keeps every
 * item's row). Nothing is marked dirty. */
int store_shard_load(store *st, shard *s, char *errstr, size_t errstr_size);
/* The same without the claim (read-only tools: `unlearnd state`, the demo's
 * snapshots): the fence is left alone, so a running owner goes on. */
int store_shard_read(store *st, shard *s, char *errstr, size_t errstr_size);

/* One MULTI/EXEC, fenced (WATCH meta; ckpt must still be the value this
 * worker last wrote), writing s's changes: event-dirty user rows, history
 * appends (a Lua script appending and trimming to the retention) and
 * rewrites, eviction summaries, dirty home statistics, seen, corrected home
 * rows, forget buffer and outbox changes, and the meta (offsets, counters,
 * ckpt + 1, out_seq); at a row flush (s->flush_rows) also the training-dirty
 * user rows, every changed home row and rows_off. Sets
 * s->meta.checkpoint_ms. Then, when the node has replicas, waits for one to
 * have it (s->replicated: 0 when none did in time; publish only after 1).
 *
 * UL_OK: applied, marks cleared. UL_ERR_IO: not applied (Redis unavailable;
 * the marks are kept, try again later). STORE_ERR_FENCE: not applied, the
 * fence moved (message names P and both values: reload P). A checkpoint
 * whose EXEC outcome is unknown is resolved by reading ckpt back: applied
 * (UL_OK), not applied (UL_ERR_IO) or moved (STORE_ERR_FENCE). Other codes
 * (RCLUSTER_ERR_EXEC: applied in part; UL_ERR_NOMEM) are fatal. */
int store_shard_checkpoint(store *st, shard *s, char *errstr, size_t errstr_size);

/* Delete the outbox entries Kafka acknowledged since the last checkpoint
 * (s->outbox and s->deliveries removed keys) in a transaction of their own,
 * guarded by the fence like a checkpoint, right away, so that a restart
 * does not publish them again. On success they are forgotten; on failure
 * they stay for the next checkpoint (STORE_ERR_FENCE: the fence moved, as
 * for a checkpoint; UL_ERR_IO: Redis unavailable or the outcome unknown). */
int store_outbox_drop(store *st, shard *s, char *errstr, size_t errstr_size);

/* Read only the meta of a partition (for `unlearnd state`, the fence's
 * messages, the replica's rows_off). *found = 0 when the partition has no
 * meta yet (then *meta is the empty meta: counters 0, offsets -1). */
int store_meta_get(store *st, int32_t partition, shard_meta *meta, int *found, char *errstr,
                   size_t errstr_size);

/* Number of buffered forget requests of a partition (HLEN). */
int store_pending_count(store *st, int32_t partition, size_t *n, char *errstr, size_t errstr_size);

/* Read one user's row and history from partition `partition`. *found = 0
 * when the user has no row. `h` receives an owned array (free h->v). */
int store_user_get(store *st, int32_t partition, int64_t user, float *row, int dim, hist *h,
                   int *found, char *errstr, size_t errstr_size);

/* Read one home item's stored row (as of its home's last row flush;
 * *row_found = 0 when none) and statistics (0/0 when none) from its home
 * partition. */
int store_item_get(store *st, int32_t home, int64_t item, float *row, int dim, int *row_found,
                   rows_stats *stats, char *errstr, size_t errstr_size);

/* Delete every ul:* key on every primary (import --replace, tests). */
int store_clear_all(store *st, char *errstr, size_t errstr_size);

/* The binary encodings, exposed for the unit test and debug tools. */
int store_encode_forget(const forget_req *fr, unsigned char **buf, size_t *len);
int store_decode_forget(const unsigned char *buf, size_t len, forget_req *fr);
#define STORE_EVICT_BYTES (4 + 8 + 8 + SHARD_EVICT_BLOOM)
void store_encode_evict(const shard_evict *e, unsigned char *out);
int store_decode_evict(const unsigned char *buf, size_t len, shard_evict *e);

/* The Lua script of a history append (KEYS[1] the history hash, ARGV[1]
 * the retention in bytes, then user, bytes pairs): exposed for
 * bench/bench_store.c, which measures it. */
extern const char store_hist_append_lua[];

/* Stored histories shorter than this many entries are rewritten whole at a
 * checkpoint instead of appended to: below it the rewrite sends at most 80
 * bytes more per user and costs Redis a quarter of the script's CPU
 * (bench/bench_store.c measures both; docs/store.md). */
#define STORE_HIST_REWRITE_BELOW 4

#endif
