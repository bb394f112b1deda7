/* store.h: the worker's Redis store (hiredis 0.14). Owns the key layout and
 * the binary encodings; see docs/store.md.
 *
 *   ul:model              hash: k, mean, min, max, partitions (model-wide facts)
 *   ul:items              hash: raw item id -> base row (written by import)
 *   ul:{p<P>}:meta        hash: off:<topic> (next offset of each input topic),
 *                         applied, forgotten, version, forget_received,
 *                         forget_completed, dead_letters, checkpoint_ms
 *   ul:{p<P>}:users       hash: raw user id -> row
 *   ul:{p<P>}:idelta      hash: raw item id -> partition P's cumulative item delta
 *   ul:{p<P>}:hist        hash: raw user id -> packed recent ratings
 *   ul:{p<P>}:forget      hash: source offset -> encoded pending forget request
 *   ul:{p<P>}:outbox      hash: model version -> messages of an unlearning cycle
 *                         not yet acknowledged by Kafka
 *
 * Ids in field names are decimal. Rows (users, items, deltas) are encoded by
 * rows.h; histories and forget requests here; outbox entries are publish.h's
 * records, stored as they are. The `{p<P>}` hash tag
 * keeps a partition's keys in one Redis Cluster slot, so a checkpoint's MULTI/EXEC stays
 * single-slot. A partition's checkpoint is one MULTI/EXEC: its state and its next offsets become
 * durable together or not at all. */
#ifndef UL_STORE_H
#define UL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "rowset.h"
#include "shard.h"

#define STORE_MAX_SHARDS 1024

typedef struct store_opts {
    const char *host;     /* default "127.0.0.1" */
    int port;             /* default 6379 */
    const char *shards;   /* "host:port,host:port,...": one endpoint per shard; when
                           * non-empty it replaces host/port (see the mapping below) */
    int timeout_ms;       /* connect and I/O timeout, default 5000 */
    const char *user;     /* ACL user for AUTH (Redis 6+); NULL/"" = default user */
    const char *password; /* AUTH when non-NULL and non-empty, on every shard */
    int db;               /* SELECT when > 0 */
    /* The input topics' names, for their off:<topic> meta fields (indexed
     * like shard_meta.next_offset); NULL: that offset is not stored. */
    const char *inputs[SHARD_N_INPUTS];
} store_opts;

/* Defaults: 127.0.0.1:6379, one shard, timeout 5000 ms, no AUTH, db 0, no
 * input names (worker_store_opts() fills everything from a configuration). */
void store_opts_init(store_opts *opts);

typedef struct store store;

/* Connect to every shard (AUTH, SELECT). NULL with a message naming the
 * failing host:port. Shards (docs/store.md): partition P's keys live on shard
 * P mod n, the base row of item I on shard I mod n, ul:model on shard 0. */
store *store_connect(const store_opts *opts, char *errstr, size_t errstr_size);
void store_destroy(store *st);

/* Validate a redis.shards list ("" = one shard from host/port); *n (may be
 * NULL) receives the number of shards. UL_ERR_ARG names the bad entry. */
int store_shards_check(const char *list, int *n, char *errstr, size_t errstr_size);
int store_shard_count(const store *st);
/* The shard holding partition P's keys, and a shard's "host:port". */
int store_shard_of(const store *st, int32_t partition);
const char *store_shard_where(const store *st, int idx);

/* Round trip; UL_OK when every shard answers PING. */
int store_ping(store *st, char *errstr, size_t errstr_size);

/* Model-wide facts. */
typedef struct store_model {
    int k;
    float global_mean;
    float rating_min, rating_max;
    int32_t partitions; /* 0 = unknown */
} store_model;

/* Read ul:model; *found = 0 (and *m untouched) when it does not exist. */
int store_model_get(store *st, store_model *m, int *found, char *errstr, size_t errstr_size);
/* Write ul:model. With only_if_absent, fields already present are kept (so
 * concurrent workers agree on the first writer's values); read back with
 * store_model_get. */
int store_model_put(store *st, const store_model *m, int only_if_absent, char *errstr,
                    size_t errstr_size);

/* Load every row of ul:items (base rows) or ul:{p<P>}:idelta into `into`
 * (rows of the rowset's dim; values overwrite). A row of the wrong size is
 * an error naming the key and field. */
int store_items_load(store *st, rowset *into, char *errstr, size_t errstr_size);
int store_deltas_load(store *st, int32_t partition, rowset *into, char *errstr, size_t errstr_size);

/* Bulk writes for import: rows of `dim` floats, row-major. */
int store_items_put(store *st, const int64_t *ids, const float *rows, size_t n, int dim,
                    char *errstr, size_t errstr_size);
int store_users_put(store *st, int32_t partition, const int64_t *ids, const float *rows, size_t n,
                    int dim, char *errstr, size_t errstr_size);

/* Load partition s->partition into the empty shard `s`: meta, users,
 * deltas, histories, pending forget requests and the outbox. Nothing is marked dirty. */
int store_shard_load(store *st, shard *s, char *errstr, size_t errstr_size);

/* One MULTI/EXEC writing s's dirty user rows, dirty deltas, dirty
 * histories, forget buffer and outbox changes and its meta (offsets and counters);
 * sets s->meta.checkpoint_ms. On success the shard's dirty marks are
 * cleared; on failure nothing was written and the marks are kept. */
int store_shard_checkpoint(store *st, shard *s, char *errstr, size_t errstr_size);

/* Delete the outbox entries Kafka acknowledged since the last checkpoint
 * (s->outbox_removed) in a transaction of their own, right away, so that a
 * restart does not publish them again; on success they are forgotten, on
 * failure they stay for the next checkpoint. */
int store_outbox_drop(store *st, shard *s, char *errstr, size_t errstr_size);

/* Read only the meta of a partition (for `unlearnd state`). *found = 0 when
 * the partition has no meta yet (then *meta is the empty meta: counters 0,
 * offsets -1). */
int store_meta_get(store *st, int32_t partition, shard_meta *meta, int *found, char *errstr,
                   size_t errstr_size);

/* Number of buffered forget requests of a partition (HLEN). */
int store_pending_count(store *st, int32_t partition, size_t *n, char *errstr, size_t errstr_size);

/* Read one user's row and history from partition `partition`. *found = 0
 * when the user has no row. `h` receives an owned array (free h->v). */
int store_user_get(store *st, int32_t partition, int64_t user, float *row, int dim, hist *h,
                   int *found, char *errstr, size_t errstr_size);

/* Delete every ul:* key (import --replace, tests). */
int store_clear_all(store *st, char *errstr, size_t errstr_size);

/* The binary encodings, exposed for the unit test and debug tools. */
int store_encode_forget(const forget_req *fr, unsigned char **buf, size_t *len);
int store_decode_forget(const unsigned char *buf, size_t len, forget_req *fr);

#endif
