/* worker.h: the stream worker (`unlearnd worker`): a consumer-group member on
 * the ratings topic that owns, for each assigned ratings partition P, the
 * matching forget-requests partition P and the Redis shard of P; it applies
 * ratings to m1, buffers forget requests, runs unlearning cycles, checkpoints
 * each partition atomically, and publishes factor rows, receipts and dead
 * letters. See docs/stream.md. */
#ifndef UL_WORKER_H
#define UL_WORKER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "log.h"
#include "store.h"

typedef struct worker worker;

/* Counters since start (this process only; Redis holds the per-partition
 * totals). */
typedef struct worker_stats {
    uint64_t ratings_applied;
    uint64_t forget_received;
    uint64_t forget_completed;
    uint64_t ratings_forgotten;
    uint64_t dead_letters;
    uint64_t checkpoints;
    uint64_t cycles;
    uint64_t produce_failures; /* delivery reports with an error */
    uint64_t rows_published;   /* factor rows published periodically (not cycles' rows) */
} worker_stats;

/* Connect everything: Redis (or a local redis-server when redis.host is
 * empty), the producer, the consumers, the topics' metadata (the ratings and
 * forget-requests topics must have the same partition count), and the live
 * model. `cfg` must be validated; it and `lg` are borrowed for the worker's
 * lifetime. NULL with errstr. */
/* A codec with the schema ids and validation limits a configuration names.
 * NULL with a message on error; the caller frees it with codec_destroy(). */
codec *worker_codec_new(const ul_config *cfg, char *errstr, size_t errstr_size);

/* The store connection options a configuration names (redis.*, the topic
 * names used in offset fields). The strings are borrowed from cfg. */
void worker_store_opts(const ul_config *cfg, store_opts *so);

worker *worker_new(const ul_config *cfg, ul_log *lg, char *errstr, size_t errstr_size);

/* The loop, until *stop becomes non-zero (a signal handler's flag) or a fatal
 * error (Redis lost, checkpoint failed). Then the bounded shutdown: finish
 * the batch in hand, checkpoint every partition, leave the group, flush the
 * producer. Returns UL_OK after a clean stop, or the fatal error. */
int worker_run(worker *w, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);

void worker_get_stats(const worker *w, worker_stats *out);

/* Stops the local redis-server if one was started. NULL is a no-op. */
void worker_destroy(worker *w);

#endif
