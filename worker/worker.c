/* worker.c: the stream worker's loop: each iteration polls the input
 * topics, decodes each record and dispatches it to its input's handler (the
 * `inputs` table), then runs what its timers make due (checkpoints, cycles,
 * item pushes, row publishing and flushes, connection checks, training
 * slices), until a stop or a fatal error. Which partitions it owns is
 * assign.c's, building and freeing the worker setup.c's, what it writes to
 * Kafka publish.c's, unlearning cycles cycle.c's, the model live.c's (see
 * worker.h and docs/stream.md).
 *
 * DESIGN
 * - The input topics are one table (`inputs`): each row names its topic's
 *   config key, the record its handler decodes, how its partitions are
 *   assigned, and whether its offsets are committed to Kafka for lag tools.
 *   Adding an input is a row, its handler and its offset slot in shard.h
 *   (docs/hacking.md).
 * - Everything runs on this thread: librdkafka calls the rebalance callback
 *   (assign.c) from inside rd_kafka_consumer_poll/close, so state never
 *   needs locks. The one other thread is the unlearning cycle's (cycle.h),
 *   which works on a snapshot and never touches the state.
 * - A forget request's ratings watermark is asked from the broker after the
 *   poll batch that brought it (once per partition per batch), never taken
 *   from librdkafka's cache: a cached value can be stale or unknown, and a
 *   request must cover every rating acknowledged before it was produced.
 * - Durable offsets of the inputs that ask for it are committed to Kafka
 *   after checkpoints, for lag monitoring only.
 * - A failed checkpoint, or a Redis that does not answer the PING of the
 *   loop's connection check (every few seconds, idle or not), is fatal: the
 *   process exits saying why, and a restart resumes from the last durable
 *   state (crash-only Redis faults, docs/operations.md). Kafka outages are
 *   waited out (librdkafka reconnects); /readyz follows both. */
#include "worker_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "ul_clock.h"

#define POLL_BATCH 20000          /* messages handled between housekeeping checks */
#define STATS_EVERY_MS 10000      /* progress log line */
#define FLUSH_MS 10000            /* producer flush at shutdown */
#define CHECK_EVERY_MS 2000       /* Redis and Kafka are checked this often, idle or not */
#define KAFKA_CHECK_WAIT_MS 2000  /* a metadata round trip slower than this: Kafka is down */
#define DEAD_LETTER_WAIT_MS 500   /* a checkpoint or cycle pass waits this long for dead letters */
#define WATERMARK_TIMEOUT_MS 2000 /* one broker query for the ratings partitions' ends */
#define WATERMARK_RETRY_MS 500    /* after a failed one */

static int on_rating(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err, size_t size);
static int on_forget(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err, size_t size);
static int on_item_updates(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err,
                           size_t size);

/* The input topics, indexed like a shard's next offsets (shard.h). */
static const input_topic inputs[SHARD_N_INPUTS] = {
    [SHARD_RATINGS] = {"topic.ratings", "ratings", "rating", INPUT_GROUP, 1, on_rating},
    [SHARD_FORGET] = {"topic.forget_requests", "forget", "forget_request", INPUT_ALONGSIDE, 1,
                      on_forget},
    [SHARD_ITEM_UPDATES] = {"topic.item_updates", "item_updates", "item_update", INPUT_ALL, 0,
                            on_item_updates},
};

void worker_set_fatal(worker *w, const char *msg) {
    if (w->fatal)
        return;
    w->fatal = 1;
    snprintf(w->fatal_msg, sizeof(w->fatal_msg), "%s", msg);
    log_error(w->log, "worker", "%s", msg);
}

/* Redis faults are crash-only (docs/operations.md, "Redis faults"): the
 * process exits and its restart reloads every partition from what Redis
 * really holds, which is exact. (The store does not reconnect, and a
 * checkpoint whose reply was lost may or may not have been applied.) */
void worker_redis_fault(worker *w, const char *what, const char *err) {
    char msg[2 * UL_ERRSTR_SIZE];
    metrics_set_redis_down(w->metrics, 0, err);
    snprintf(msg, sizeof(msg),
             "%s: %s. Exiting: a Redis fault stops the worker, and its restart resumes every "
             "partition from its last checkpoint (docs/operations.md, \"Redis faults\")",
             what, err);
    worker_set_fatal(w, msg);
}

/* The input every partition's ownership follows. */
int worker_group_input(void) {
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        if (inputs[i].assign == INPUT_GROUP)
            return i;
    return 0;
}

const input_topic *worker_input(int i) {
    return &inputs[i];
}

const char *worker_input_label(int input) {
    return input >= 0 && input < SHARD_N_INPUTS ? inputs[input].label : NULL;
}

/* ---- checkpoints -------------------------------------------------------- */

/* Commit the durable offsets that moved since the last commit (async;
 * failures only affect lag reports). Every input's go through the group
 * consumer: a group member may commit any partition's offset for the group,
 * while the alongside consumer, which is no member, would be refused by a
 * real Kafka once the group has members (UNKNOWN_MEMBER_ID). */
static void commit_for_lag(worker *w) {
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int32_t p = 0; p < w->n_parts; p++) {
        const shard *s = live_shard(w->lv, p);
        for (int i = 0; s && i < SHARD_N_INPUTS; i++) {
            int64_t off = s->durable_offset[i];
            if (!inputs[i].lag_commit || off < 0 || off == w->lag_committed[p][i])
                continue;
            if (l == NULL)
                l = rd_kafka_topic_partition_list_new(w->n_parts * SHARD_N_INPUTS);
            rd_kafka_topic_partition_list_add(l, w->topic[i], p)->offset = off;
            w->lag_committed[p][i] = off;
        }
    }
    if (l) {
        rd_kafka_commit(w->consumer[INPUT_GROUP], l, 1);
        rd_kafka_topic_partition_list_destroy(l);
    }
}

/* Checkpoint every owned partition that changed. A partition with an
 * unacknowledged dead letter is not checkpointed: its offsets would move past
 * a record that is neither applied nor durably dead-lettered; it stays dirty
 * and goes with a later pass (a crash meanwhile replays the record). A fence
 * that moved is not fatal: the partition is reloaded (reload_partition); any
 * other failure is (a restart resumes from the last checkpoint). */
static void checkpoint_all(worker *w) {
    char err[UL_ERRSTR_SIZE];
    int held = 0;
    publish_settle_dead_letters(w->pub, -1, DEAD_LETTER_WAIT_MS);
    for (int32_t p = 0; p < w->n_parts && !w->fatal; p++) {
        shard *s = live_shard(w->lv, p);
        if (s == NULL || !shard_is_dirty(s))
            continue;
        if (publish_dead_letters_pending(w->pub, p) > 0) {
            held++;
            continue;
        }
        int rc = live_checkpoint(w->lv, s, err, sizeof(err));
        if (rc != UL_OK) {
            assign_checkpoint_failed(w, p, rc, err);
            continue; /* fatal: the loop condition stops */
        }
        metrics_add(w->metrics, METRICS_CHECKPOINTS, 1);
    }
    if (held)
        log_debug(w->log, "worker", "%d partitions not checkpointed: dead letters in flight", held);
    else if (!w->fatal)
        metrics_checkpoint_done(w->metrics); /* its age is the alert when dead letters hang */
    commit_for_lag(w);
    if (!w->fatal && publish_deliveries(w->pub, err, sizeof(err)) != UL_OK)
        worker_set_fatal(w, err);
}

static void start_cycle(worker *w) {
    char err[UL_ERRSTR_SIZE];
    if (cycle_start(w->cycles, err, sizeof(err)) != UL_OK)
        worker_set_fatal(w, err);
}

/* Every iteration: merge a computed cycle or finish some of its partitions
 * (a partition with a dead letter in flight waits: cycle.c). */
static void poll_cycle(worker *w) {
    char err[UL_ERRSTR_SIZE];
    if (cycle_poll(w->cycles, err, sizeof(err)) != UL_OK)
        worker_set_fatal(w, err);
}

/* ---- connection checks ------------------------------------------------- */

/* PING every Redis shard, idle or not, so that /readyz and the exit follow
 * a Redis that died or froze within seconds (not at the next write). */
static void check_redis(worker *w) {
    char err[UL_ERRSTR_SIZE];
    metrics_redis_waiting(w->metrics, 1);
    int rc = store_ping(w->st, err, sizeof(err));
    metrics_redis_waiting(w->metrics, 0);
    if (rc == UL_OK)
        metrics_set_redis_connected(w->metrics, 1);
    else
        worker_redis_fault(w, "Redis stopped answering", err);
}

/* A metadata round trip to the brokers: Kafka is ready when it answers in
 * time (librdkafka reconnects by itself; the worker only waits meanwhile). */
static void check_kafka(worker *w) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e =
        rd_kafka_metadata(w->consumer[INPUT_GROUP], 0, w->check_topic, &md, KAFKA_CHECK_WAIT_MS);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (w->kafka_down)
            log_info(w->log, "kafka", "the brokers answer again: ready");
        w->kafka_down = 0;
        metrics_set_kafka_connected(w->metrics, 1);
        return;
    }
    if (!w->kafka_down)
        log_warn(w->log, "kafka",
                 "the brokers did not answer a metadata request within %d ms (%s): not ready; "
                 "waiting for them (nothing is lost meanwhile)",
                 KAFKA_CHECK_WAIT_MS, rd_kafka_err2str(e));
    w->kafka_down = 1;
    metrics_set_kafka_down(w->metrics, 0, rd_kafka_err2str(e));
}

static void check_connections(worker *w) {
    check_redis(w);
    metrics_heartbeat(w->metrics);
    if (!w->fatal)
        check_kafka(w);
}

static void push_items(worker *w, shard_class cls) {
    size_t n = live_push(w->lv, cls, publish_item_updates, w->pub);
    if (n > 0)
        log_debug(w->log, "worker", "pushed %zu item changes (%s) to %s", n,
                  cls == SHARD_TRAINING ? "training" : "events", w->topic[SHARD_ITEM_UPDATES]);
}

/* 1 once per completed training epoch: its item changes go out then too (not
 * only every training.push.interval.ms), so that other workers' epochs see
 * them before training far past them (a small catalogue runs many epochs
 * per push interval, and two workers each moving an item on their own
 * stale copy overshoot). */
static int train_epoch_ended(worker *w) {
    train_stats st;
    train_get_stats(w->train, &st);
    if (st.epochs == w->pushed_epochs)
        return 0;
    w->pushed_epochs = st.epochs;
    return 1;
}

/* Send every change not sent yet, without waiting for its interval: item
 * deltas of both classes to item-updates, marked rows of both classes to
 * the factors topic. Before a partition's final row flush (a revocation, a
 * clean stop): the flush writes trained rows to Redis, and without this the
 * topic would miss the rows trained since the last training publish when no
 * one takes the partition over. */
void worker_send_changes(worker *w) {
    push_items(w, SHARD_EVENT);
    push_items(w, SHARD_TRAINING);
    publish_changed_class(w->pub, SHARD_EVENT);
    publish_changed_class(w->pub, SHARD_TRAINING);
}

/* ---- decode and dispatch ------------------------------------------------ */

/* A user's events must arrive in the partition of their user: otherwise the
 * user's rows would be split over two shards. With string keys that is
 * murmur2 of the decimal id (rows_user_partition); with Confluent-Avro keys
 * (key.format=avro) the key must name the record's user, and the partition
 * is murmur2 of the key bytes as they came, as a Java producer with
 * KafkaAvroSerializer keys sends them. Returns UL_ERR_RANGE (wrong
 * partition) or UL_ERR_PARSE (a key that is not the user's) with err. */
static int check_partition(worker *w, const rd_kafka_message_t *rkm, int64_t user, char *err,
                           size_t size) {
    int64_t keyed = -1;
    int32_t want = rows_user_partition(user, w->n_parts);
    if (w->key_format == CODEC_KEY_AVRO) {
        if (codec_user_key_parse(CODEC_KEY_AVRO, rkm->key, rkm->key_len, &keyed) != UL_OK ||
            keyed != user) {
            ul_set_err(err, size,
                       "the key (%zu bytes) is not user %" PRId64 " as a Confluent-Avro long or "
                       "string (key.format=avro)",
                       rkm->key_len, user);
            return UL_ERR_PARSE;
        }
        want = codec_partition(rkm->key, rkm->key_len, w->n_parts);
    }
    if (want == rkm->partition)
        return UL_OK;
    ul_set_err(err, size,
               "user %" PRId64 " belongs to partition %d but arrived in %d (the producer must "
               "key by user id and partition with murmur2; key.format=%s)",
               user, (int)want, (int)rkm->partition, w->cfg->key_format);
    return UL_ERR_RANGE;
}

/* The dead-letter reason of a handler's error. */
static const char *reject_reason(int rc) {
    return rc == UL_ERR_RANGE   ? "wrong-partition"
           : rc == UL_ERR_PARSE ? "bad-key"
                                : codec_err_name(rc);
}

static int on_rating(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err, size_t size) {
    codec_rating r;
    int rc = codec_decode_rating(w->codec, rkm->payload, rkm->len, &r, err, size);
    if (rc == CODEC_OK)
        rc = check_partition(w, rkm, r.user_id, err, size);
    if (rc != CODEC_OK)
        return rc;
    if (live_apply_rating(w->lv, s, r.user_id, r.item_id, r.rating, r.event_time) != UL_OK) {
        ul_set_err(err, size, "out of memory applying a rating");
        return UL_ERR_NOMEM;
    }
    metrics_add(w->metrics, METRICS_RATINGS_APPLIED, 1);
    return CODEC_OK;
}

/* Ask the broker for the end of every ratings partition whose buffered
 * requests wait for one, in one request (ListOffsets for the latest offset:
 * the high watermark, or with read_committed the last stable offset, which
 * is what this consumer can read), after the poll batch that brought them:
 * every rating acknowledged before a request was produced is below the
 * answer. A query that fails is retried after WATERMARK_RETRY_MS; until then
 * the requests are not eligible. */
static void resolve_watermarks(worker *w) {
    int64_t now = ul_clock_mono_ms();
    if (now < w->hwm_retry_ms)
        return;
    rd_kafka_topic_partition_list_t *parts = NULL;
    for (int32_t p = 0; p < w->n_parts; p++) {
        if (!w->hwm_wanted[p] || live_shard(w->lv, p) == NULL)
            continue;
        if (parts == NULL)
            parts = rd_kafka_topic_partition_list_new(w->n_parts);
        rd_kafka_topic_partition_list_add(parts, w->topic[SHARD_RATINGS], p)->offset =
            RD_KAFKA_OFFSET_END; /* as a timestamp: "latest" */
    }
    if (parts == NULL)
        return;
    /* Asked through the group-less consumer: a broker answers a connection's
     * requests in order, so behind the group consumer's long-polling fetch
     * (fetch.wait.max.ms, 500 ms by default) the answer, and the loop, would
     * wait that long on a quiet stream; this one's fetches wait 20 ms. */
    rd_kafka_t *rk = w->consumer[INPUT_ALONGSIDE];
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, parts, WATERMARK_TIMEOUT_MS);
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        shard *s = live_shard(w->lv, tp->partition);
        rd_kafka_resp_err_t pe = e ? e : tp->err;
        if (pe != RD_KAFKA_RESP_ERR_NO_ERROR || tp->offset < 0) {
            log_warn(w->log, "kafka",
                     "cannot ask the broker for the end of %s [%d] (%s): its forget requests "
                     "wait; retrying in %d ms",
                     w->topic[SHARD_RATINGS], (int)tp->partition,
                     pe ? rd_kafka_err2str(pe) : "no offset", WATERMARK_RETRY_MS);
            w->hwm_retry_ms = now + WATERMARK_RETRY_MS;
            continue;
        }
        for (size_t q = 0; q < s->n_pending; q++)
            if (s->pending[q].ratings_hwm < 0)
                s->pending[q].ratings_hwm = tp->offset;
        w->hwm_wanted[tp->partition] = 0;
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

static void log_buffered(worker *w, const forget_req *b, const rd_kafka_message_t *rkm) {
    char what[96];
    if (b->has_window)
        snprintf(what, sizeof(what), "time %" PRId64 "..%" PRId64, b->from, b->to);
    else
        snprintf(what, sizeof(what), "%u items", b->n_items);
    log_info(w->log, "worker",
             "forget request %s for user %" PRId64 " (%s, %s) buffered from %s [%d] @%" PRId64,
             b->request_id, b->user, codec_reason_name(b->reason), what, w->topic[SHARD_FORGET],
             (int)rkm->partition, rkm->offset);
}

static int on_forget(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err, size_t size) {
    codec_forget f;
    int rc = codec_decode_forget(w->codec, rkm->payload, rkm->len, &f, err, size);
    if (rc != CODEC_OK)
        return rc; /* f holds nothing */
    rc = check_partition(w, rkm, f.user_id, err, size);
    if (rc == CODEC_OK && live_buffer_forget(w->lv, s, &f, rkm->offset, ul_clock_wall_ms(),
                                             FORGET_HWM_UNKNOWN) != UL_OK) {
        ul_set_err(err, size, "out of memory buffering a forget request");
        rc = UL_ERR_NOMEM;
    }
    codec_forget_clear(&f);
    if (rc != CODEC_OK)
        return rc;
    w->hwm_wanted[rkm->partition] = 1; /* resolve_watermarks, after this poll batch */
    metrics_add(w->metrics, METRICS_FORGET_RECEIVED, 1);
    log_buffered(w, &s->pending[s->n_pending - 1], rkm);
    return CODEC_OK;
}

/* A record of item-updates partition h (any h: the replica takes all): the
 * live applies it to the replica and, when h is owned, to h's durable
 * state. One that does not decode or fit is skipped (its offset passed),
 * logged, and dead-lettered by h's owner only. */
static int on_item_updates(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err,
                           size_t size) {
    (void)s;
    int rc = codec_decode_item_updates(w->codec, rkm->payload, rkm->len, &w->upd, err, size);
    if (rc == CODEC_OK && (uint64_t)w->upd.instance != live_instance(w->lv)) {
        int64_t ts = rd_kafka_message_timestamp(rkm, NULL), now = ul_clock_wall_ms();
        metrics_add(w->metrics, METRICS_ITEM_UPDATES_IN, 1);
        metrics_add(w->metrics, METRICS_ITEM_UPDATE_AGE_MS,
                    ts > 0 && now > ts ? (uint64_t)(now - ts) : 0);
    }
    if (rc == CODEC_OK)
        rc = live_item_updates(w->lv, rkm->partition, rkm->offset, &w->upd, err, size);
    else
        live_updates_skip(w->lv, rkm->partition, rkm->offset);
    return rc;
}

static int input_of(const worker *w, const rd_kafka_message_t *rkm) {
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        if (strcmp(w->topic[i], topic) == 0)
            return i;
    return -1;
}

/* An item-updates record: every partition's, owned or not. */
static void dispatch_all(worker *w, int in, const rd_kafka_message_t *rkm) {
    char err[UL_ERRSTR_SIZE];
    shard *s = live_shard(w->lv, rkm->partition);
    int rc = inputs[in].on_record(w, s, rkm, err, sizeof(err));
    if (rc == UL_OK)
        return;
    if (rc == UL_ERR_NOMEM) {
        worker_set_fatal(w, err);
        return;
    }
    if (w->upd_errors++ % 1000 == 0)
        log_warn(w->log, "worker", "%s [%d] @%" PRId64 " skipped (%" PRIu64 " so far): %s",
                 w->topic[in], (int)rkm->partition, rkm->offset, w->upd_errors, err);
    if (s) {
        publish_dead_letter(w->pub, rkm,
                            rc == UL_ERR_RANGE ? "wrong-partition" : codec_err_name(rc), err);
        s->meta.dead_letters++;
    }
}

/* One record of an owned partition not applied yet: its handler, a dead
 * letter when it is invalid, then the next offset. */
static void dispatch(worker *w, const rd_kafka_message_t *rkm) {
    char err[UL_ERRSTR_SIZE];
    int in = input_of(w, rkm);
    if (in >= 0 && inputs[in].assign == INPUT_ALL) {
        dispatch_all(w, in, rkm);
        return;
    }
    shard *s = in >= 0 ? live_shard(w->lv, rkm->partition) : NULL;
    if (s == NULL || rkm->offset < s->meta.next_offset[in])
        return; /* not ours any more, or already applied */
    int rc = inputs[in].on_record(w, s, rkm, err, sizeof(err));
    if (rc == UL_ERR_NOMEM) {
        worker_set_fatal(w, err);
        return;
    }
    if (rc != CODEC_OK) {
        if (publish_dead_letter(w->pub, rkm, reject_reason(rc), err) != UL_OK) {
            worker_set_fatal(w, "out of memory keeping a dead letter");
            return;
        }
        s->meta.dead_letters++;
    }
    s->meta.next_offset[in] = rkm->offset + 1;
}

static int poll_consumer(worker *w, rd_kafka_t *rk, int timeout_ms) {
    int n = 0;
    for (; n < POLL_BATCH && !w->fatal; n++) {
        if ((n & 255) == 255 && train_due(w->train))
            break; /* a training slice is due: keep its share while events flow */
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, n == 0 ? timeout_ms : 0);
        if (rkm == NULL)
            break;
        if (rkm->err) {
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn(w->log, "kafka", "consumer: %s", rd_kafka_message_errstr(rkm));
        } else {
            dispatch(w, rkm);
        }
        rd_kafka_message_destroy(rkm);
    }
    return n;
}

/* ---- loop --------------------------------------------------------------- */

static void log_stats(worker *w, int64_t elapsed_ms, uint64_t applied_before) {
    metrics *m = w->metrics;
    uint64_t applied = metrics_count(m, METRICS_RATINGS_APPLIED);
    double rate =
        elapsed_ms > 0 ? (double)(applied - applied_before) * 1000.0 / (double)elapsed_ms : 0.0;
    log_info(w->log, "worker",
             "%" PRIu64 " ratings applied (%.0f/s), forget requests %" PRIu64 " received / %" PRIu64
             " done, %" PRIu64 " dead-lettered, %" PRIu64 " checkpoints, %" PRIu64
             " factor rows published",
             applied, rate, metrics_count(m, METRICS_FORGET_RECEIVED),
             metrics_count(m, METRICS_FORGET_COMPLETED), metrics_count(m, METRICS_DEAD_LETTERS),
             metrics_count(m, METRICS_CHECKPOINTS), metrics_count(m, METRICS_ROWS_PUBLISHED));
}

static void settle_deliveries(worker *w) {
    char err[UL_ERRSTR_SIZE];
    if (cycle_settle(w->cycles, err, sizeof(err)) != UL_OK)
        worker_set_fatal(w, err);
}

/* The next owned partition (round-robin) is due a row flush. */
static void flush_next_partition(worker *w) {
    for (int32_t i = 0; i < w->n_parts; i++) {
        int32_t p = (w->flush_next + i) % w->n_parts;
        if (live_shard(w->lv, p)) {
            live_flush_due(w->lv, p);
            w->flush_next = (p + 1) % w->n_parts;
            return;
        }
    }
}

/* Row flushes are spread: with n partitions owned, one every interval / n. */
static int64_t flush_step_ms(const worker *w) {
    int owned = 0;
    for (int32_t p = 0; p < w->n_parts; p++)
        owned += live_shard(w->lv, p) != NULL;
    long step = w->cfg->rows_flush_interval_ms / (owned > 0 ? owned : 1);
    return step > 0 ? step : 1;
}

/* Deliver what the checkpoints left in the outboxes (one delivery entry in
 * flight per partition: a few rounds), so a clean stop leaves none. */
static void drain_outboxes(worker *w) {
    char err[UL_ERRSTR_SIZE];
    for (int round = 0; round < 16 && !w->fatal; round++) {
        int left = 0;
        for (int32_t p = 0; p < w->n_parts; p++) {
            const shard *s = live_shard(w->lv, p);
            left += s ? (int)s->deliveries.n : 0;
        }
        if (left == 0)
            return;
        if (publish_deliveries(w->pub, err, sizeof(err)) != UL_OK) {
            worker_set_fatal(w, err);
            return;
        }
        if (publish_flush(w->pub, FLUSH_MS) > 0)
            return;
        settle_deliveries(w);
    }
}

static void shutdown_worker(worker *w) {
    char err[UL_ERRSTR_SIZE];
    log_info(w->log, "worker", "stopping: final checkpoint, leaving the group");
    if (cycle_drain(w->cycles, err, sizeof(err)) != UL_OK) /* the cycle out, finished */
        worker_set_fatal(w, err);
    if (w->fatal)
        return;
    worker_send_changes(w);
    for (int32_t p = 0; p < w->n_parts; p++)
        live_flush_due(w->lv, p); /* a clean stop leaves every row in Redis */
    /* Deliver what is in flight first, so the final checkpoint can drop the
     * acknowledged outbox entries (no duplicates after a clean stop). */
    char what[512];
    if (publish_flush(w->pub, FLUSH_MS) > 0 && publish_in_flight(w->pub, what, sizeof(what)) > 0)
        log_warn(w->log, "kafka", "not delivered after %d s: %s", FLUSH_MS / 1000, what);
    settle_deliveries(w);
    checkpoint_all(w);
    drain_outboxes(w);
    /* Leaves the group; the revoke callback checkpoints again (dropping the
     * acknowledged entries) and drops the shards. */
    for (int a = 0; a < INPUT_N_ASSIGN; a++)
        rd_kafka_consumer_close(w->consumer[a]);
    if (publish_flush(w->pub, FLUSH_MS) > 0 && publish_in_flight(w->pub, what, sizeof(what)) > 0)
        log_error(w->log, "kafka", "not delivered at shutdown: %s", what);
    log_stats(w, 0, 0);
}

int worker_run(worker *w, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    char err[UL_ERRSTR_SIZE];
    int64_t now = ul_clock_mono_ms();
    int64_t next_ckpt = now + cfg->checkpoint_interval_ms,
            next_cycle = now + cfg->cycle_interval_ms, next_stats = now + STATS_EVERY_MS;
    int64_t next_publish = now + cfg->publish_interval_ms,
            next_publish_train = now + cfg->publish_training_interval_ms;
    int64_t next_push = now + cfg->items_push_interval_ms,
            next_push_train = now + cfg->training_push_interval_ms;
    int64_t next_flush = now + flush_step_ms(w), next_check = now + CHECK_EVERY_MS;
    uint64_t applied_at_stats = 0;
    while (!*stop && !w->fatal) {
        metrics_heartbeat(w->metrics);
        int events = poll_consumer(w, w->consumer[INPUT_GROUP], train_wait_ms(w->train, 50));
        events += poll_consumer(w, w->consumer[INPUT_ALONGSIDE], 0);
        poll_consumer(w, w->consumer[INPUT_ALL], 0); /* item updates: not events of our own */
        resolve_watermarks(w);
        settle_deliveries(w);
        if (!w->fatal && publish_deliveries(w->pub, err, sizeof(err)) != UL_OK)
            worker_set_fatal(w, err);
        poll_cycle(w);
        now = ul_clock_mono_ms();
        if (now >= next_cycle) {
            start_cycle(w);
            next_cycle = now + cfg->cycle_interval_ms;
        }
        if (now >= next_push) {
            push_items(w, SHARD_EVENT);
            next_push = now + cfg->items_push_interval_ms;
        }
        if (now >= next_push_train || train_epoch_ended(w)) {
            push_items(w, SHARD_TRAINING);
            next_push_train = now + cfg->training_push_interval_ms;
        }
        if (now >= next_publish) {
            publish_changed_class(w->pub, SHARD_EVENT);
            next_publish = now + cfg->publish_interval_ms;
        }
        if (now >= next_publish_train) {
            publish_changed_class(w->pub, SHARD_TRAINING);
            next_publish_train = now + cfg->publish_training_interval_ms;
        }
        if (now >= next_flush) {
            flush_next_partition(w);
            next_flush = now + flush_step_ms(w);
        }
        if (now >= next_ckpt) {
            checkpoint_all(w);
            next_ckpt = now + cfg->checkpoint_interval_ms;
        }
        if (now >= next_check) {
            check_connections(w);
            next_check = ul_clock_mono_ms() + CHECK_EVERY_MS;
        }
        if (now >= next_stats) {
            log_stats(w, now - (next_stats - STATS_EVERY_MS), applied_at_stats);
            applied_at_stats = metrics_count(w->metrics, METRICS_RATINGS_APPLIED);
            next_stats = now + STATS_EVERY_MS;
        }
        if (!w->fatal && train_slice(w->train, (size_t)events) < 0)
            worker_set_fatal(w, "out of memory in continuous training");
    }
    if (!w->fatal)
        shutdown_worker(w);
    if (w->fatal) {
        snprintf(errstr, errstr_size, "%.*s", (int)(errstr_size ? errstr_size - 1 : 0),
                 w->fatal_msg);
        return UL_ERR_STATE;
    }
    return UL_OK;
}

metrics *worker_metrics(worker *w) {
    return w->metrics;
}
