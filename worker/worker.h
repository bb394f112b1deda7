/* worker.h: the stream worker (`unlearnd worker`): a consumer-group member on
 * the ratings topic that owns, for each assigned ratings partition P, the
 * partition P of every other input topic (forget requests) and the Redis
 * shard of P; it applies ratings to m1, buffers forget requests, runs
 * unlearning cycles (cycle.h), checkpoints each partition atomically, and
 * publishes factor rows, receipts and dead letters (publish.h). See
 * docs/stream.md. */
#ifndef UL_WORKER_H
#define UL_WORKER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

typedef struct worker worker;

/* A codec with the schema ids and validation limits a configuration names.
 * NULL with a message on error; the caller frees it with codec_destroy(). */
codec *worker_codec_new(const ul_config *cfg, char *errstr, size_t errstr_size);

/* The store connection options a configuration names (redis.*, and the
 * input topics' names for their offset fields). The strings are borrowed
 * from cfg. */
void worker_store_opts(const ul_config *cfg, store_opts *so);

/* The input keys' format a configuration names (key.format), and the
 * partition of `user` among n as a Java producer keys and sends it in that
 * format (with key.schema.id for Avro keys): where a tool finds a user's
 * state. */
codec_key_format worker_key_format(const ul_config *cfg);
int32_t worker_user_partition(const ul_config *cfg, int64_t user, int32_t n);

/* The short name of input topic `input` (a shard.h SHARD_* index:
 * "ratings", "forget"), as `unlearnd state` prints its offset; NULL past the
 * last. */
const char *worker_input_label(int input);

/* Connect everything: Redis (or a local redis-server when redis.host is
 * empty), the consumers, the input topics' metadata (they must all have the
 * same partition count), the live model and the producer. `cfg` must be
 * validated; it and `lg` are borrowed for the worker's lifetime. NULL with
 * errstr. */
worker *worker_new(const ul_config *cfg, ul_log *lg, char *errstr, size_t errstr_size);

/* The loop, until *stop becomes non-zero (a signal handler's flag) or a fatal
 * error (Redis lost, checkpoint failed). Then the bounded shutdown: finish
 * the batch in hand, checkpoint every partition, leave the group, flush the
 * producer. Returns UL_OK after a clean stop, or the fatal error. The
 * counters are in the worker's metrics (/metrics, and the progress line). */
int worker_run(worker *w, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);

/* The worker's metrics (borrowed until worker_destroy; every metrics_*
 * reader is thread-safe), e.g. for a tool running the loop on a thread to
 * see whether continuous training has paused (METRICS_TRAINING_PAUSED). */
metrics *worker_metrics(worker *w);

/* Stops the local redis-server if one was started. NULL is a no-op. */
void worker_destroy(worker *w);

#endif
