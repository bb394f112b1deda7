/* cycle.h: the unlearning cycles of the partitions a worker owns. Every
 * cycle.interval.ms the loop calls cycle_run_all(): each owned partition with
 * buffered forget requests runs one cycle (live_forget_cycle over at most
 * cycle.max.batch of them), the cycle's messages become the partition's
 * outbox entry (publish.h), the result and the entry are checkpointed in one
 * transaction, and only then are the messages published. Kept apart from
 * polling (worker.c) so that cycles can leave the loop thread. See
 * docs/stream.md, "Forget requests and the unlearning cycle". */
#ifndef UL_CYCLE_H
#define UL_CYCLE_H

#include <stddef.h>

#include "live.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"

/* What the cycles run with; every pointer is borrowed. */
typedef struct cycle_opts {
    live *lv;
    publisher *pub;
    metrics *metrics;
    ul_log *log;
    size_t max_batch;          /* cycle.max.batch: requests per cycle */
    const char *method;        /* for the log lines (the live runs it) */
    int exit_after_checkpoint; /* test hook: _exit(99) between checkpoint and publish */
} cycle_opts;

/* One cycle on every owned partition with buffered requests. A cycle that
 * fails is logged and its requests stay buffered (see live_forget_cycle);
 * a failed checkpoint or allocation is fatal: UL_ERR_* with errstr, and the
 * worker must stop (a restart resumes from the last checkpoint). */
int cycle_run_all(const cycle_opts *o, char *errstr, size_t errstr_size);

#endif
