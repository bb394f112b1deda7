/* demo_stack.h: the whole local stack in one process, for `unlearnd demo`:
 * the mock broker (worker/broker.h), a throwaway redis-server
 * (worker/redis_local.h) and the stream worker's loop on a thread
 * (worker/worker.h), plus a Redis connection of our own to watch the
 * worker's durable state. demo_stack_stop() tears all of it down. */
#ifndef UL_DEMO_STACK_H
#define UL_DEMO_STACK_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "store.h"

typedef struct demo_stack demo_stack;

/* Start broker (`partitions` per topic, no address file: a broker the user
 * runs is left alone), Redis and the worker. `cfg` is modified
 * (kafka.bootstrap.servers, redis.host, redis.port point at what we
 * started), then validated; it and `lg` (the worker's and librdkafka's
 * logger) are borrowed until demo_stack_stop. NULL with errstr; whatever
 * was started is stopped again. */
demo_stack *demo_stack_start(ul_config *cfg, ul_log *lg, int partitions, char *errstr,
                             size_t errstr_size);

/* Our own connection to the worker's Redis (borrowed). */
store *demo_stack_store(demo_stack *s);
int32_t demo_stack_partitions(const demo_stack *s);

/* UL_OK while the worker loop runs; once it has returned, UL_ERR_STATE with
 * its message (it only returns early on a fatal error). */
int demo_stack_worker_alive(demo_stack *s, char *errstr, size_t errstr_size);

/* Wait until every ratings partition p has its checkpointed next offset at
 * or beyond hwm[p] (every rating produced so far is applied and durable in
 * Redis). Polls Redis every 20 ms; gives up after timeout_ms, when the
 * worker fails, or when *interrupted becomes non-zero (UL_ERR_ABORTED).
 * *applied receives the partitions' applied total. */
int demo_stack_wait_applied(demo_stack *s, const int64_t *hwm, int timeout_ms,
                            volatile sig_atomic_t *interrupted, uint64_t *applied, char *errstr,
                            size_t errstr_size);

/* Wait until the model in Redis stops changing: continuous training paused
 * (or off) and stayed paused for two checkpoint intervals, at least 500 ms
 * (a resume after new data shows within one loop iteration). Gives up like
 * demo_stack_wait_applied. */
int demo_stack_wait_quiet(demo_stack *s, int timeout_ms, volatile sig_atomic_t *interrupted,
                          char *errstr, size_t errstr_size);

/* Stop the worker (its bounded shutdown: final checkpoint, leave the group,
 * flush), join its thread, stop the broker and Redis. NULL is a no-op. */
void demo_stack_stop(demo_stack *s);

#endif
