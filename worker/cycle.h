/* cycle.h: the unlearning cycles of the partitions a worker owns, run
 * without holding the loop. Every cycle.interval.ms the loop calls
 * cycle_start(): the eligible requests of every owned partition become one
 * job (forget.h) that the cycle thread computes while the loop goes on
 * polling; cycle_poll(), called every iteration, merges a computed job
 * (adding each involved partition's outbox entry: publish.h), then finishes
 * the involved partitions a few per call (about 10 ms of loop time) in the
 * order *outbox -> checkpoint -> publish*. One job is out at a time. Acknowledged outbox entries
 * are deleted from Redis as soon as their delivery reports are served (cycle_settle), so a restart
 * publishes a cycle's messages again only if it crashed between their checkpoint and that deletion.
 * See docs/stream.md, "Forget requests and the unlearning cycle".
 *
 * Threads: the loop thread calls every function here; the cycle thread
 * only runs forget_compute on the job it is handed. */
#ifndef UL_CYCLE_H
#define UL_CYCLE_H

#include <stddef.h>
#include <stdint.h>

#include "forget.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "store.h"

/* A cycle's checkpoint of partition p failed with rc (err says how): the
 * worker's handling, the same as for its periodic checkpoints (a fence that
 * moved: p is reloaded; anything else: the worker stops). */
typedef void (*cycle_ckpt_fn)(void *opaque, int32_t p, int rc, const char *err);

/* What the cycles run with; every pointer is borrowed for the cycle's life. */
typedef struct cycle_opts {
    live *lv;
    store *st; /* to delete acknowledged outbox entries (cycle_settle) */
    publisher *pub;
    metrics *metrics;
    ul_log *log;
    forget_opts forget;              /* batch, method and its knobs (threads: 1) */
    cycle_ckpt_fn checkpoint_failed; /* NULL: only the returned error */
    void *opaque;                    /* checkpoint_failed's */
    /* test hooks (UNLEARND_FAULT, not options): _exit(99) between a
     * checkpoint and its publication; _exit(98) on the cycle thread right
     * after computing a job (a crash while a cycle is out) */
    int exit_after_checkpoint, exit_during_cycle;
} cycle_opts;

typedef struct cycle cycle;

/* Start the cycle thread. NULL with errstr. */
cycle *cycle_new(const cycle_opts *o, char *errstr, size_t errstr_size);
/* Stop the thread (waiting for a job being computed) and drop what was not
 * finished: its requests are still buffered in Redis. NULL is a no-op. */
void cycle_destroy(cycle *c);

/* Take the eligible requests into a job for the thread, unless one is out
 * or still being finished. A job that cannot be prepared is logged and its
 * requests stay buffered. Also publishes the outbox entries left by a
 * previous owner or a failed delivery. UL_ERR_* with errstr when the worker
 * must stop. */
int cycle_start(cycle *c, char *errstr, size_t errstr_size);
/* Merge a computed job, or finish the next merged partitions (one with a
 * dead letter in flight waits for it, as periodic checkpoints do). A
 * checkpoint that fails goes to o.checkpoint_failed; UL_ERR_* with errstr
 * when the worker must stop (a checkpoint failure other than a moved fence,
 * out of memory). */
int cycle_poll(cycle *c, char *errstr, size_t errstr_size);
/* Partition p is being revoked or lost: its part of the job out is dropped
 * and its merged result is not finished here (a revoke's final checkpoint
 * keeps the outbox entry for the next owner; a loss drops it, and the next
 * owner runs the requests again). Never waits for the thread. NULL is a
 * no-op. */
void cycle_give_up(cycle *c, int32_t p);
/* Wait for the job out (if any), merge it and finish every partition (at
 * shutdown); a partition whose dead letters stay in flight for 5 s is left
 * unfinished (its requests run again at the next owner). UL_ERR_* with
 * errstr like cycle_poll. */
int cycle_drain(cycle *c, char *errstr, size_t errstr_size);
/* Serve delivery reports (publish_poll) and delete the acknowledged outbox
 * entries from Redis right away (a failure is logged; the next checkpoint
 * deletes them). UL_ERR_NOMEM with errstr. */
int cycle_settle(cycle *c, char *errstr, size_t errstr_size);

#endif
