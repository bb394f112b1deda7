/* cycle.c: unlearning cycles, from the forget buffer to the published
 * receipts, with the method on a thread of its own (see cycle.h).
 *
 * DESIGN
 * - A cycle's result is checkpointed before its messages are published,
 *   with the messages in the same transaction (the outbox): after a crash in
 *   between, the next owner publishes them, so a receipt is never lost (at
 *   least once). The outbox entry is added at the merge, so any checkpoint
 *   that includes the merged result (also a periodic one, or a revoke's)
 *   includes its messages; and an entry is published only once saved.
 * - The thread gets one job at a time through a mutex and a condition
 *   variable (IDLE -> RUNNING -> DONE -> IDLE); it never touches anything but
 *   the job, so the loop keeps polling, checkpointing and rebalancing while
 *   it runs. It runs at a lower priority (nice +10), so on a busy machine the
 *   loop is not starved of CPU by the method. A partition given up meanwhile is struck from the job
 *   (forget_drop_partition), so a rebalance never waits for the thread.
 * - Finishing a merged job checkpoints and publishes its partitions a few at
 *   a time (FINISH_BUDGET_MS of loop time per call), so sixteen checkpoints
 *   never hold the loop at once.
 * - A failed checkpoint is fatal: nothing after the last one is durable,
 *   and a restart resumes from there. */
#define _GNU_SOURCE /* syscall(SYS_gettid): a thread's own nice value (Linux) */
#include "cycle.h"

#include <cblas.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ul_clock.h"
#include "ul_err.h"

/* Finishing a merged job (checkpoint, publish) goes on within one
 * cycle_poll call while it has taken less than this; the loop polls between
 * calls. */
#define FINISH_BUDGET_MS 10
/* The cycle thread's nice value, relative to the process's (+10: ~1/10 of
 * the loop's CPU weight when both want a core). */
#define CYCLE_THREAD_NICE 10
/* At shutdown, how long a merged partition held by dead letters in flight
 * waits for them before it is left unfinished. */
#define DRAIN_DEAD_LETTER_MS 5000

typedef enum run_state { RUN_IDLE = 0, RUN_BUSY, RUN_DONE, RUN_STOP } run_state;

struct cycle {
    cycle_opts o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    run_state state; /* under mu */
    forget_job *job; /* out (RUN_BUSY/RUN_DONE), owned by the loop */
    int64_t started_ms;
    int64_t prepare_ms; /* loop time the job's snapshot took */
    forget_cycle *todo; /* merged, not finished yet: todo[next .. n_todo) */
    size_t n_todo, next;
    int32_t first; /* partition the next job starts from (rotates) */
};

static void *cycle_thread(void *arg) {
    cycle *c = arg;
    /* Linux gives each thread its own nice value: the method yields the
     * cores to the loop (and a local broker) whenever they want them. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), CYCLE_THREAD_NICE) != 0)
        log_warn(c->o.log, "worker", "the unlearning thread keeps the loop's priority");
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->state != RUN_BUSY && c->state != RUN_STOP)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->state == RUN_STOP)
            break;
        forget_job *j = c->job;
        pthread_mutex_unlock(&c->mu);
        forget_compute(j);
        if (c->o.exit_during_cycle)
            _exit(98); /* like a crash while the cycle is out */
        pthread_mutex_lock(&c->mu);
        if (c->state == RUN_BUSY)
            c->state = RUN_DONE;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

cycle *cycle_new(const cycle_opts *o, char *errstr, size_t errstr_size) {
    cycle *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    c->o = *o;
    c->o.forget.uparams.threads = 1; /* the loop and the broker need the other core */
    /* The method's BLAS calls (cff's network) run on the cycle thread only:
     * one BLAS thread, for the same reason. */
    openblas_set_num_threads(1);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&c->thread, NULL, cycle_thread, c) != 0) {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
        ul_set_err(errstr, errstr_size, "cannot start the unlearning cycle thread");
        return NULL;
    }
    return c;
}

static void drop_todo(cycle *c) {
    for (size_t i = 0; i < c->n_todo; i++)
        forget_cycle_free(&c->todo[i]);
    free(c->todo);
    c->todo = NULL;
    c->n_todo = c->next = 0;
}

void cycle_destroy(cycle *c) {
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->state = RUN_STOP;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    forget_job_free(c->o.lv, c->job);
    drop_todo(c);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static run_state state_of(cycle *c) {
    pthread_mutex_lock(&c->mu);
    run_state s = c->state;
    pthread_mutex_unlock(&c->mu);
    return s;
}

/* ---- starting a job ------------------------------------------------------ */

int cycle_start(cycle *c, char *errstr, size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    if (c->job != NULL || c->next < c->n_todo)
        return UL_OK;
    /* Entries left by a previous owner or a failed delivery go out again
     * (not while a merged job is being finished: those are finish_one's). */
    int rc = publish_outboxes(c->o.pub, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    forget_job *j = NULL;
    int64_t t0 = ul_clock_mono_ms();
    if (forget_prepare(c->o.lv, &c->o.forget, c->first, &j, err, sizeof(err)) != UL_OK) {
        log_error(c->o.log, "worker", "unlearning cycle not started (requests stay buffered): %s",
                  err);
        return UL_OK;
    }
    if (j == NULL)
        return UL_OK;
    c->first = (c->first + 1) % live_partitions(c->o.lv);
    metrics_heartbeat(c->o.metrics);
    c->started_ms = ul_clock_mono_ms();
    c->prepare_ms = c->started_ms - t0;
    pthread_mutex_lock(&c->mu);
    c->job = j;
    c->state = RUN_BUSY;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return UL_OK;
}

/* ---- merging and finishing ----------------------------------------------- */

static void log_job(const cycle *c, const forget_job *j, const forget_cycle *cy, size_t n,
                    int64_t merge_ms) {
    size_t nu = 0, ni = 0;
    for (size_t i = 0; i < n; i++) {
        nu += cy[i].n_users;
        ni += cy[i].n_items;
    }
    log_info(c->o.log, "worker",
             "unlearning cycle: %zu requests from %zu partitions, %zu ratings forgotten, %zu "
             "user and %zu item rows changed; on the loop: snapshot %" PRId64 " ms, merge %" PRId64
             " ms; merged %" PRId64 " ms after it started; %s %.3f s",
             forget_job_requests(j), n, forget_job_ratings(j), nu, ni, c->prepare_ms, merge_ms,
             ul_clock_mono_ms() - c->started_ms, c->o.forget.method, forget_job_seconds(j));
}

/* The WARN and the counter of ERASURE requests that reach beyond the
 * retained history (the model may still carry those ratings). */
static void note_beyond(const cycle *c, const forget_cycle *cy) {
    for (size_t i = 0; i < cy->n_receipts; i++) {
        const codec_receipt *r = &cy->receipts[i];
        if (cy->reasons[i] != CODEC_REASON_ERASURE || r->beyond_retention <= 0)
            continue;
        metrics_add(c->o.metrics, METRICS_ERASURE_BEYOND_RETENTION, 1);
        log_warn(c->o.log, "worker",
                 "ERASURE request %s for user %" PRId64 " reaches beyond the retained history: "
                 "at most %d of its ratings are no longer remembered and may still shape the "
                 "model (raise retention.per.user to cover what erasure promises)",
                 r->request_id, r->user_id, (int)r->beyond_retention);
    }
}

/* Merge the computed job: every involved partition gets its outbox entry
 * now (unsaved), and is finished later, one per cycle_poll. */
static int merge_job(cycle *c, char *errstr, size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    forget_cycle *cy = NULL;
    size_t n = 0;
    forget_job *j = c->job;
    int64_t t0 = ul_clock_mono_ms();
    int rc = forget_merge(c->o.lv, j, ul_clock_wall_ms(), &cy, &n, err, sizeof(err));
    if (rc == UL_ERR_ABORTED)
        log_error(c->o.log, "worker", "unlearning cycle failed (requests stay buffered): %s", err);
    else if (rc != UL_OK)
        ul_set_err(errstr, errstr_size, "%s", err);
    for (size_t i = 0; rc == UL_OK && i < n; i++) {
        shard *s = live_shard(c->o.lv, cy[i].partition);
        rc = publish_outbox_add(c->o.pub, s, &cy[i], errstr, errstr_size);
        note_beyond(c, &cy[i]);
    }
    if (rc == UL_OK && n > 0)
        log_job(c, j, cy, n, ul_clock_mono_ms() - t0);
    forget_job_free(c->o.lv, j);
    c->job = NULL;
    pthread_mutex_lock(&c->mu);
    c->state = RUN_IDLE;
    pthread_mutex_unlock(&c->mu);
    if (rc == UL_ERR_ABORTED)
        rc = UL_OK;
    if (rc != UL_OK) {
        for (size_t i = 0; i < n; i++)
            forget_cycle_free(&cy[i]);
        free(cy);
        return rc;
    }
    drop_todo(c);
    c->todo = cy;
    c->n_todo = n;
    return UL_OK;
}

static void log_receipts(const cycle *c, const forget_cycle *cy) {
    for (size_t i = 0; i < cy->n_receipts; i++) {
        const codec_receipt *r = &cy->receipts[i];
        log_info(c->o.log, "worker",
                 "forget request %s for user %" PRId64 " done: %d ratings forgotten, partition "
                 "%d version %" PRIu64 ", %" PRId64 " ms after receipt (%d items requested, %d "
                 "not found, at most %d beyond retention)",
                 r->request_id, r->user_id, (int)r->forgotten, (int)cy->partition, cy->version,
                 r->completed_at - r->received_at, (int)r->requested, (int)r->not_found,
                 (int)r->beyond_retention);
    }
}

/* The checkpoint, then publishing, of one merged partition. */
static int finish_one(cycle *c, forget_cycle *cy, char *errstr, size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    shard *s = live_shard(c->o.lv, cy->partition);
    outbox_entry *e = s ? outbox_list_find(&s->outbox, cy->version) : NULL;
    if (e == NULL) /* given up since (cycle_give_up clears it; defensive) */
        return UL_OK;
    int rc = live_checkpoint(c->o.lv, s, err, sizeof(err));
    if (rc != UL_OK) {
        /* The worker's handling, as for its periodic checkpoints: a fence
         * that moved reloads the partition (its requests run again from
         * what Redis holds), anything else stops the worker. */
        if (c->o.checkpoint_failed)
            c->o.checkpoint_failed(c->o.opaque, cy->partition, rc, err);
        if (rc == STORE_ERR_FENCE)
            return UL_OK;
        ul_set_err(errstr, errstr_size, "checkpoint of partition %d failed: %s", (int)cy->partition,
                   err);
        return rc;
    }
    metrics_add(c->o.metrics, METRICS_CHECKPOINTS, 1);
    log_receipts(c, cy);
    if (c->o.exit_after_checkpoint)
        _exit(99); /* like a crash right after the checkpoint */
    /* The checkpoint did not move the entries; not published before a
     * replica has the checkpoint (publish_outboxes sends it once one has). */
    e = outbox_list_find(&s->outbox, cy->version);
    if (e != NULL && !e->inflight && s->replicated)
        rc = publish_outbox_entry(c->o.pub, s->partition, e, errstr, errstr_size);
    metrics_add(c->o.metrics, METRICS_FORGET_COMPLETED, cy->n_receipts);
    return rc;
}

int cycle_poll(cycle *c, char *errstr, size_t errstr_size) {
    if (c->job != NULL && state_of(c) == RUN_DONE)
        return merge_job(c, errstr, errstr_size);
    int rc = UL_OK;
    int64_t t0 = ul_clock_mono_ms();
    while (rc == UL_OK && c->next < c->n_todo && ul_clock_mono_ms() - t0 < FINISH_BUDGET_MS) {
        forget_cycle *cy = &c->todo[c->next];
        /* Its checkpoint would move the offsets past a record that is
         * neither applied nor durably dead-lettered: wait for the letter. */
        if (cy->partition >= 0 && publish_dead_letters_pending(c->o.pub, cy->partition) > 0)
            break;
        c->next++;
        rc = cy->partition >= 0 ? finish_one(c, cy, errstr, errstr_size) : UL_OK;
        if (c->next == c->n_todo) { /* the whole cycle: from its start to its last publication */
            metrics_observe_cycle_seconds(c->o.metrics,
                                          (double)(ul_clock_mono_ms() - c->started_ms) / 1000.0);
            drop_todo(c);
        }
    }
    return rc;
}

void cycle_give_up(cycle *c, int32_t p) {
    if (c == NULL)
        return;
    if (c->job != NULL)
        forget_drop_partition(c->job, p);
    for (size_t i = c->next; i < c->n_todo; i++)
        if (c->todo[i].partition == p)
            c->todo[i].partition = -1; /* not finished here */
}

int cycle_drain(cycle *c, char *errstr, size_t errstr_size) {
    pthread_mutex_lock(&c->mu);
    while (c->job != NULL && c->state == RUN_BUSY)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    int rc = UL_OK;
    while (rc == UL_OK && (c->job != NULL || c->next < c->n_todo)) {
        size_t next = c->next;
        int merging = c->job != NULL;
        rc = cycle_poll(c, errstr, errstr_size);
        if (rc != UL_OK || merging || c->next != next || c->next >= c->n_todo)
            continue;
        /* Held by a dead letter in flight (cycle_poll): wait for it, then
         * leave the partition unfinished (its final checkpoint is held too,
         * and its next owner runs its requests again). */
        forget_cycle *cy = &c->todo[c->next];
        if (publish_settle_dead_letters(c->o.pub, cy->partition, DRAIN_DEAD_LETTER_MS) > 0) {
            log_warn(c->o.log, "worker",
                     "partition %d: unlearning cycle not finished at shutdown (dead letters in "
                     "flight); its requests stay buffered for the next owner",
                     (int)cy->partition);
            cy->partition = -1;
        }
    }
    return rc;
}

int cycle_settle(cycle *c, char *errstr, size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    int rc = publish_poll(c->o.pub, errstr, errstr_size);
    for (int32_t p = 0; rc == UL_OK && p < live_partitions(c->o.lv); p++) {
        shard *s = live_shard(c->o.lv, p);
        if (s != NULL && (s->outbox.n_removed > 0 || s->deliveries.n_removed > 0) &&
            store_outbox_drop(c->o.st, s, err, sizeof(err)) != UL_OK)
            log_warn(c->o.log, "redis",
                     "acknowledged outbox entries of partition %d not deleted yet (the next "
                     "checkpoint deletes them): %s",
                     (int)p, err);
    }
    return rc;
}
