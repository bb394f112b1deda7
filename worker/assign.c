/* assign.c: which partitions this worker owns, and where their inputs
 * start: the group consumer's rebalance callback (assign, revoke, lost),
 * each input's start offset checked against the broker's low watermark
 * (on.truncated), the item replica's catch-up, and what a moved fence leads
 * to (reload_partition: reload, drop, stop). Runs on the loop's thread
 * (worker.c), inside rd_kafka_consumer_poll/close.
 *
 * DESIGN
 * - Ownership follows the group input (the ratings topic): the group assigns
 *   its partitions; for each one the worker itself assigns the partition
 *   with the same number of every other input, on a second, group-less
 *   consumer. So a user's records of every input and the user's Redis shard
 *   are always handled together, whatever assignor the group uses (range,
 *   round-robin, cooperative-sticky).
 * - Offsets come from Redis, never from Kafka commits: on assignment each
 *   partition starts at the offsets stored with its state (or the beginning
 *   when it has none). When the broker no longer holds the records from
 *   there (its low watermark, asked at assignment, is above), on.truncated
 *   decides: stop naming the lost range, or warn and start at the oldest
 *   record left. */
#include "worker_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATERMARK_WAIT_MS 10000 /* asking a partition's offsets at assignment */
#define REVOKE_WAIT_MS 5000     /* a revoked partition's dead letters are waited for this long */

/* Partitions owned now, for /readyz and /metrics (-1: rebalancing). */
static void report_assignment(worker *w, int rebalancing) {
    int owned = 0;
    for (int32_t p = 0; p < w->n_parts; p++)
        owned += live_shard(w->lv, p) != NULL;
    metrics_set_assigned_partitions(w->metrics, rebalancing ? -1 : owned);
}

static int is_cooperative(rd_kafka_t *rk) {
    const char *proto = rd_kafka_rebalance_protocol(rk);
    return proto && strcmp(proto, "COOPERATIVE") == 0;
}

/* Where input i of shard s starts: its stored next offset, or for an empty
 * state the beginning (or the end, with kafka.auto.offset.reset=latest).
 * The broker's low watermark is asked now (librdkafka's cache may not know
 * it yet): records deleted before the state applied them (retention, a
 * purge) are never skipped without a word, see on.truncated. Returns the
 * offset, or INPUT_START_FAILED when the worker must stop
 * (worker_set_fatal). Item-updates (every partition, for the replica)
 * starts at its stored offset or the beginning: catch_up_updates checks
 * what the topic still holds. */
#define INPUT_START_FAILED INT64_MIN /* not an offset librdkafka knows */

/* One input partition's ends as the broker gave them. */
typedef struct wmark {
    int64_t lo, hi;          /* hi: -1 unless asked (query_wmarks) */
    rd_kafka_resp_err_t err; /* why they are not known */
} wmark;

/* The ends of every input of the n partitions ps[0..n) into m[j][i] (input
 * i of ps[j]): one ListOffsets round per end for them all (offsets for the
 * "earliest" and "latest" markers), not a query per partition and input,
 * which on assignment of 64 partitions was 192 round trips before the
 * first rating. The high end is asked only when it is used (a partition
 * without state starts at the end: kafka.auto.offset.reset=latest). */
static void query_wmarks(worker *w, const rd_kafka_topic_partition_t *ps, int n,
                         wmark (*m)[SHARD_N_INPUTS]) {
    int ends = w->start_offset == RD_KAFKA_OFFSET_END ? 2 : 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n * SHARD_N_INPUTS);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < SHARD_N_INPUTS; i++)
            rd_kafka_topic_partition_list_add(l, w->topic[i], ps[j].partition);
    for (int end = 0; end < ends; end++) {
        for (int e = 0; e < l->cnt; e++) {
            l->elems[e].offset = end == 0 ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
            l->elems[e].err = RD_KAFKA_RESP_ERR_NO_ERROR;
        }
        rd_kafka_resp_err_t all =
            rd_kafka_offsets_for_times(w->consumer[INPUT_GROUP], l, WATERMARK_WAIT_MS);
        for (int e = 0; e < l->cnt; e++) {
            wmark *x = &m[e / SHARD_N_INPUTS][e % SHARD_N_INPUTS];
            rd_kafka_resp_err_t err = all ? all : l->elems[e].err;
            if (end == 0) {
                *x = (wmark){l->elems[e].offset, -1, err};
            } else {
                x->hi = l->elems[e].offset;
                if (x->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                    x->err = err;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static int64_t input_start(worker *w, const shard *s, int i, const wmark *m) {
    char what[UL_ERRSTR_SIZE + 256], msg[sizeof(what) + 256];
    const char *topic = w->topic[i];
    int32_t p = s->partition;
    int64_t off = s->meta.next_offset[i], lo = m->lo, hi = m->hi;
    if (worker_input(i)->assign == INPUT_ALL)
        return off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    if (m->err || lo < 0) {
        snprintf(msg, sizeof(msg),
                 "cannot read the offsets of %s [%d] (needed to check that no record was lost "
                 "before the state applied it): %s",
                 topic, (int)p, m->err ? rd_kafka_err2str(m->err) : "no offset in the answer");
        worker_set_fatal(w, msg);
        return INPUT_START_FAILED;
    }
    if (off < 0 && w->start_offset == RD_KAFKA_OFFSET_END)
        return hi; /* the user chose to skip what the topic holds */
    int64_t want = off < 0 ? 0 : off;
    if (want >= lo)
        return want;
    snprintf(what, sizeof(what),
             "%s [%d]: records %" PRId64 "..%" PRId64 " (%" PRId64
             ") were deleted from the topic before this partition's state applied them (%s%" PRId64
             "; the oldest record left is at offset %" PRId64 ")",
             topic, (int)p, want, lo - 1, lo - want,
             off < 0 ? "its state in Redis is empty, offset " : "its state resumes at offset ",
             want, lo);
    if (strcmp(w->cfg->on_truncated, "accept") == 0) {
        log_warn(w->log, "kafka",
                 "%s; continuing without them from offset %" PRId64 " (on.truncated=accept)", what,
                 lo);
        return lo;
    }
    snprintf(msg, sizeof(msg),
             "%s. Refusing to build a model without them (on.truncated=refuse): restore the state "
             "(a Redis backup, or `unlearnd import`), or set on.truncated=accept to continue from "
             "offset %" PRId64,
             what, lo);
    if (w->fatal)
        log_error(w->log, "kafka", "%s", msg);
    worker_set_fatal(w, msg);
    return INPUT_START_FAILED;
}

/* Partition p of the item replica's consumer goes back to `off` when the
 * replica is past it (the durable side catches up: live_item_updates),
 * by assigning it again at that offset. */
static void catch_up_updates(worker *w, int32_t p, int64_t off, const wmark *m) {
    int64_t pos = live_updates_position(w->lv, p), lo = m->lo;
    /* The topic must still hold what the home's statistics have not applied. */
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && lo > (off < 0 ? 0 : off))
        log_warn(w->log, "kafka",
                 "%s [%d] no longer holds offsets %" PRId64 "..%" PRId64
                 " that partition %d's item statistics have not applied: exact deliveries among "
                 "them are lost (raise the topic's retention above the longest outage)",
                 w->topic[SHARD_ITEM_UPDATES], (int)p, off < 0 ? 0 : off, lo - 1, (int)p);
    if (pos >= 0 && off >= 0 && off >= pos)
        return; /* the replica is not ahead: nothing to catch up */
    const char *topic = w->topic[SHARD_ITEM_UPDATES];
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_error_t *e = rd_kafka_incremental_unassign(w->consumer[INPUT_ALL], l);
    if (e)
        rd_kafka_error_destroy(e);
    l->elems[0].offset = off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    if ((e = rd_kafka_incremental_assign(w->consumer[INPUT_ALL], l)) != NULL) {
        char msg[UL_ERRSTR_SIZE];
        snprintf(msg, sizeof(msg), "cannot seek %s [%d] back to %" PRId64 ": %s", topic, (int)p,
                 off, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        worker_set_fatal(w, msg);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Start every input of shard s: the group partition's offset into `tp`, the
 * alongside ones' into `alongside`; item-updates catches up. Returns -1
 * (nothing started) when the worker must stop. */
static int start_inputs(worker *w, const shard *s, rd_kafka_topic_partition_t *tp,
                        rd_kafka_topic_partition_list_t *alongside, const wmark *m) {
    char line[1024];
    size_t len = 0;
    int64_t start[SHARD_N_INPUTS];
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        if ((start[i] = input_start(w, s, i, &m[i])) == INPUT_START_FAILED)
            return -1;
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        int64_t off = s->meta.next_offset[i];
        w->lag_committed[s->partition][i] = s->durable_offset[i];
        if (worker_input(i)->assign == INPUT_GROUP)
            tp->offset = start[i];
        else if (worker_input(i)->assign == INPUT_ALONGSIDE)
            rd_kafka_topic_partition_list_add(alongside, w->topic[i], s->partition)->offset =
                start[i];
        else
            catch_up_updates(w, s->partition, off, &m[i]);
        int n = snprintf(line + len, sizeof(line) - len, "%s%s from offset %" PRId64, i ? ", " : "",
                         w->topic[i], start[i]);
        len += n > 0 && (size_t)n < sizeof(line) - len ? (size_t)n : 0;
    }
    log_info(w->log, "kafka",
             "assigned partition %d: %s (%" PRIu64 " applied, %zu forget requests buffered, "
             "epoch %" PRIu64 ")",
             (int)s->partition, line, s->meta.applied, s->n_pending, s->meta.epoch);
    return 0;
}

/* Buffered requests of s whose watermark is not known yet (loaded from
 * Redis) get it asked after the next poll batch. */
static void want_watermarks(worker *w, const shard *s) {
    for (size_t q = 0; q < s->n_pending; q++)
        w->hwm_wanted[s->partition] |= s->pending[q].ratings_hwm < 0;
}

/* Load the shards and set each partition's start offsets from Redis. */
static void on_assign(worker *w, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts) {
    char err[UL_ERRSTR_SIZE];
    rd_kafka_topic_partition_list_t *alongside =
        rd_kafka_topic_partition_list_new(parts->cnt * SHARD_N_INPUTS);
    wmark(*m)[SHARD_N_INPUTS] = calloc((size_t)parts->cnt + 1, sizeof(*m));
    if (m == NULL) {
        worker_set_fatal(w, "out of memory assigning partitions");
        for (int i = 0; i < parts->cnt; i++)
            parts->elems[i].offset = RD_KAFKA_OFFSET_END; /* consume nothing; we are stopping */
    } else {
        query_wmarks(w, parts->elems, parts->cnt, m);
    }
    for (int i = 0; m && i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        metrics_heartbeat(w->metrics); /* loading a big shard takes a while */
        shard *s = live_assign(w->lv, tp->partition, NULL, err, sizeof(err));
        if (s == NULL) {
            char msg[UL_ERRSTR_SIZE + 64];
            snprintf(msg, sizeof(msg), "cannot load partition %d: %s", (int)tp->partition, err);
            worker_set_fatal(w, msg);
            tp->offset = RD_KAFKA_OFFSET_END; /* consume nothing; we are stopping */
            continue;
        }
        live_mark_partition(w->lv, tp->partition); /* a takeover republishes it in full */
        want_watermarks(w, s);
        if (start_inputs(w, s, tp, alongside, m[i]) != 0)
            tp->offset = RD_KAFKA_OFFSET_END; /* consume nothing; we are stopping */
    }
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (is_cooperative(rk))
        e = rd_kafka_incremental_assign(rk, parts);
    else
        re = rd_kafka_assign(rk, parts);
    rd_kafka_error_t *fe = rd_kafka_incremental_assign(w->consumer[INPUT_ALONGSIDE], alongside);
    rd_kafka_resume_partitions(rk, parts); /* one paused by reload_partition is ours again */
    if (e || re || fe) {
        snprintf(err, sizeof(err), "assign failed: %s",
                 e    ? rd_kafka_error_string(e)
                 : re ? rd_kafka_err2str(re)
                      : rd_kafka_error_string(fe));
        worker_set_fatal(w, err);
    }
    if (e)
        rd_kafka_error_destroy(e);
    if (fe)
        rd_kafka_error_destroy(fe);
    rd_kafka_topic_partition_list_destroy(alongside);
    free(m);
    report_assignment(w, 0);
}

/* Give partition p up: checkpoint it first, unless it was lost (another
 * member may own it already: do not write). */
static void give_up(worker *w, int32_t p, int lost) {
    char err[UL_ERRSTR_SIZE];
    const shard *s = live_shard(w->lv, p);
    uint64_t applied = s->meta.applied;
    int64_t off = s->meta.next_offset[worker_group_input()];
    size_t dead = lost ? 0 : publish_settle_dead_letters(w->pub, p, REVOKE_WAIT_MS);
    if (lost)
        log_warn(w->log, "kafka",
                 "partition %d lost; its changes since the last checkpoint will be "
                 "replayed by its next owner",
                 (int)p);
    else if (dead > 0)
        log_warn(w->log, "kafka",
                 "partition %d revoked with %zu dead letters not acknowledged: given up without "
                 "its final checkpoint; its next owner replays from the last one",
                 (int)p, dead);
    lost |= dead > 0;
    cycle_give_up(w->cycles, p); /* its part of a cycle out is dropped, never waited for */
    w->hwm_wanted[p] = 0;
    int rc = lost ? live_drop(w->lv, p, err, sizeof(err)) : live_revoke(w->lv, p, err, sizeof(err));
    if (lost)
        publish_drop_dead_letters(w->pub, p);
    if (rc != UL_OK)
        log_error(w->log, "kafka", "partition %d revoked without its final checkpoint: %s", (int)p,
                  err);
    else if (!lost)
        log_info(w->log, "kafka",
                 "revoked partition %d at %s offset %" PRId64 " (%" PRIu64 " applied)", (int)p,
                 w->topic[worker_group_input()], off, applied);
}

static void on_revoke(worker *w, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int lost) {
    /* A worker stopping on a fault writes nothing more: its restart (or the
     * next owner) resumes from the last checkpoint, and a dead Redis would
     * only make each final checkpoint wait out redis.retry.ms. */
    lost = lost || w->fatal;
    /* Asked first: during rd_kafka_consumer_close, librdkafka 2.0.2 may stop
     * answering rd_kafka_rebalance_protocol once the assignment is gone, and
     * the call then waits forever (seen: a worker hung in its SIGTERM). */
    int cooperative = is_cooperative(rk);
    if (!lost) /* lost: another member may own them already, our rows may be stale */
        worker_send_changes(w);
    rd_kafka_topic_partition_list_t *alongside =
        rd_kafka_topic_partition_list_new(parts->cnt * SHARD_N_INPUTS);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (live_shard(w->lv, p) == NULL)
            continue;
        for (int in = 0; in < SHARD_N_INPUTS; in++)
            if (worker_input(in)->assign == INPUT_ALONGSIDE)
                rd_kafka_topic_partition_list_add(alongside, w->topic[in], p);
        give_up(w, p, lost);
    }
    rd_kafka_error_t *fe = rd_kafka_incremental_unassign(w->consumer[INPUT_ALONGSIDE], alongside);
    if (fe)
        rd_kafka_error_destroy(fe);
    rd_kafka_topic_partition_list_destroy(alongside);
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
    report_assignment(w, !cooperative); /* eager: everything moves */
}

/* Move partition p of consumer rk to `off` (an assigned partition). */
static void seek_input(worker *w, rd_kafka_t *rk, int i, int32_t p, int64_t off) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, w->topic[i], p)->offset = off;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(rk, l, 5000);
    if (e || l->elems[0].err) {
        char msg[UL_ERRSTR_SIZE];
        snprintf(msg, sizeof(msg), "cannot seek %s [%d] to %" PRId64 ": %s", w->topic[i], (int)p,
                 off, e ? rd_kafka_error_string(e) : rd_kafka_err2str(l->elems[0].err));
        worker_set_fatal(w, msg);
    }
    if (e)
        rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Stop consuming p's inputs here (its alongside ones are unassigned, the
 * group one paused) until the group revokes or assigns it again. */
static void stop_inputs(worker *w, int32_t p) {
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        if (worker_input(i)->assign == INPUT_ALL)
            continue;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, w->topic[i], p);
        if (worker_input(i)->assign == INPUT_GROUP) {
            rd_kafka_pause_partitions(w->consumer[INPUT_GROUP], l);
        } else {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(w->consumer[INPUT_ALONGSIDE], l);
            if (e)
                rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* P's fence moved (`why` says how): nothing is written on top of it. Another
 * worker took P: drop it, and stop consuming it until the group assigns it
 * again. Redis lost what this worker wrote (a failover, a restore, a
 * deleted key): drop P's in-memory state, reload it from Redis and replay
 * its inputs from the offsets stored with it. Redis lost everything
 * (ul:model gone or another nonce): nothing held in memory can be trusted,
 * the item replica included: stop (a restart rebuilds from Kafka). */
static void reload_partition(worker *w, int32_t p, const char *why) {
    char err[UL_ERRSTR_SIZE], msg[UL_ERRSTR_SIZE];
    uint64_t ours = live_shard(w->lv, p)->meta.epoch;
    store_model m;
    shard_meta meta;
    int mfound = 0, found = 0;
    log_warn(w->log, "redis", "%s", why);
    int rc = store_model_get(w->st, &m, &mfound, err, sizeof(err));
    if (rc == UL_OK && mfound && m.nonce == live_nonce(w->lv))
        rc = store_meta_get(w->st, p, &meta, &found, err, sizeof(err));
    cycle_give_up(w->cycles, p); /* its part of a cycle out was computed on what is dropped */
    w->hwm_wanted[p] = 0;
    live_drop(w->lv, p, NULL, 0);
    if (rc != UL_OK) {
        snprintf(msg, sizeof(msg), "partition %d: cannot read Redis after the fence moved: %.400s",
                 (int)p, err);
        worker_set_fatal(w, msg);
        return;
    }
    if (!mfound || m.nonce != live_nonce(w->lv)) {
        snprintf(msg, sizeof(msg),
                 "Redis lost the whole state (ul:model %s): stopping; a restart rebuilds it from "
                 "the topics",
                 mfound ? "holds another nonce" : "is gone");
        worker_set_fatal(w, msg);
        return;
    }
    if (found && meta.epoch > ours) {
        log_warn(w->log, "redis",
                 "partition %d: taken by another worker (epoch %" PRIu64 ", ours %" PRIu64
                 "): dropped without writing, not consumed here until the group assigns it again",
                 (int)p, meta.epoch, ours);
        stop_inputs(w, p);
        report_assignment(w, 0);
        return;
    }
    shard *s = live_assign(w->lv, p, NULL, err, sizeof(err));
    if (s == NULL) {
        snprintf(msg, sizeof(msg), "partition %d: reload failed: %.400s", (int)p, err);
        worker_set_fatal(w, msg);
        return;
    }
    log_warn(w->log, "redis",
             "partition %d: reloaded from Redis (%" PRIu64 " applied, epoch %" PRIu64
             "); replaying %s from offset %" PRId64,
             (int)p, s->meta.applied, s->meta.epoch, w->topic[SHARD_RATINGS],
             s->meta.next_offset[SHARD_RATINGS] < 0 ? 0 : s->meta.next_offset[SHARD_RATINGS]);
    want_watermarks(w, s);
    wmark wm[1][SHARD_N_INPUTS];
    query_wmarks(w, &(rd_kafka_topic_partition_t){.partition = p}, 1, wm);
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        if (worker_input(i)->assign == INPUT_ALL)
            catch_up_updates(w, p, s->meta.next_offset[i], &wm[0][i]);
        else {
            int64_t start = input_start(w, s, i, &wm[0][i]); /* lost records: on.truncated */
            if (start == INPUT_START_FAILED)
                return;
            seek_input(w, w->consumer[worker_input(i)->assign], i, p, start);
        }
    }
    live_mark_partition(w->lv, p);
}

/* A checkpoint of partition p failed with rc (err says how), periodic or a
 * cycle's: a fence that moved is not fatal, the partition is reloaded
 * (reload_partition); any other failure is (a restart resumes from the last
 * checkpoint). */
void assign_checkpoint_failed(worker *w, int32_t p, int rc, const char *err) {
    char what[64];
    if (rc == STORE_ERR_FENCE) {
        reload_partition(w, p, err);
        return;
    }
    snprintf(what, sizeof(what), "checkpoint of partition %d failed", (int)p);
    worker_redis_fault(w, what, err);
}

void assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    worker *w = opaque;
    log_info(w->log, "kafka", "rebalance (%s protocol): %s %d partitions",
             rd_kafka_rebalance_protocol(rk) ? rd_kafka_rebalance_protocol(rk) : "no",
             err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS   ? "assign"
             : err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS ? "revoke"
                                                           : "error,",
             parts ? parts->cnt : 0);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(w, rk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(w, rk, parts, rd_kafka_assignment_lost(rk));
    } else {
        log_error(w->log, "kafka", "rebalance error: %s", rd_kafka_err2str(err));
        on_revoke(w, rk, parts, 1);
    }
}
