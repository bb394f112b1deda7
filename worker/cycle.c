/* cycle.c: unlearning cycles, from the forget buffer to the published
 * receipts (see cycle.h).
 *
 * DESIGN: a cycle's result is checkpointed before its messages are
 * published, with the messages in the same transaction (the outbox): after a
 * crash in between, the next owner publishes them, so a receipt is never
 * lost (at least once). A failed checkpoint is fatal: nothing after the last
 * one is durable, and a restart resumes from there. */
#include "cycle.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "ul_clock.h"
#include "ul_err.h"

static void log_cycle(const cycle_opts *o, const live_cycle *c) {
    log_info(o->log, "worker",
             "unlearning cycle on partition %d: %zu requests, %zu ratings forgotten, %zu user "
             "and %zu item rows changed, %s %.3f s",
             (int)c->partition, c->n_receipts, c->n_forgotten, c->n_users, c->n_items, o->method,
             c->unlearn_seconds);
    for (size_t i = 0; i < c->n_receipts; i++) {
        const codec_receipt *r = &c->receipts[i];
        log_info(o->log, "worker",
                 "forget request %s for user %" PRId64 " done: %d ratings forgotten, partition "
                 "%d version %" PRIu64 ", %" PRId64 " ms after receipt",
                 r->request_id, r->user_id, (int)r->forgotten, (int)c->partition, c->version,
                 r->completed_at - r->received_at);
    }
}

/* The outbox entry, the checkpoint, then publishing. */
static int finish_cycle(const cycle_opts *o, shard *s, const live_cycle *c, int64_t started_ms,
                        char *errstr, size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    int rc = publish_outbox_add(o->pub, s, c, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    if ((rc = live_checkpoint(o->lv, s, err, sizeof(err))) != UL_OK) {
        ul_set_err(errstr, errstr_size, "checkpoint of partition %d failed: %s", (int)s->partition,
                   err);
        return rc;
    }
    metrics_add(o->metrics, METRICS_CHECKPOINTS, 1);
    log_cycle(o, c);
    if (o->exit_after_checkpoint)
        _exit(99); /* like a crash right after the checkpoint */
    /* Not before a replica has the checkpoint (publish_outboxes sends it
     * once one has). */
    if (s->replicated)
        rc = publish_outbox_entry(o->pub, s->partition, &s->outbox.v[s->outbox.n - 1], errstr,
                                  errstr_size);
    metrics_add(o->metrics, METRICS_FORGET_COMPLETED, c->n_receipts);
    metrics_observe_cycle_seconds(o->metrics, (double)(ul_clock_mono_ms() - started_ms) / 1000.0);
    return rc;
}

int cycle_run_all(const cycle_opts *o, char *errstr, size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    for (int32_t p = 0; p < live_partitions(o->lv); p++) {
        shard *s = live_shard(o->lv, p);
        if (s == NULL || s->n_pending == 0)
            continue;
        live_cycle c;
        metrics_heartbeat(o->metrics);
        int64_t started_ms = ul_clock_mono_ms();
        if (live_forget_cycle(o->lv, s, o->max_batch, ul_clock_wall_ms(), &c, err, sizeof(err)) !=
            UL_OK) {
            log_error(o->log, "worker",
                      "unlearning cycle of partition %d failed (requests stay buffered): %s",
                      (int)p, err);
            continue;
        }
        int rc = c.n_receipts > 0 ? finish_cycle(o, s, &c, started_ms, errstr, errstr_size) : UL_OK;
        live_cycle_free(&c);
        if (rc != UL_OK)
            return rc;
    }
    return UL_OK;
}
