/* worker.c: the stream worker's consuming side: the loop that polls the
 * input topics and hands each record to its topic's handler, for the
 * partitions the consumer group gives this worker (see worker.h and
 * docs/stream.md). What it writes to Kafka is publish.c's, unlearning cycles
 * are cycle.c's, the model and its state live.c's.
 *
 * DESIGN
 * - The input topics are one table (`inputs`): each row names its topic's
 *   config key, the record its handler decodes, how its partitions are
 *   assigned, and whether its offsets are committed to Kafka for lag tools.
 *   Adding an input is a row, its handler and its offset slot in shard.h
 *   (docs/hacking.md).
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
 *   record left. Durable offsets of the inputs that ask for it are also
 *   committed after checkpoints, for lag monitoring only.
 * - Everything runs on this thread: librdkafka calls the rebalance callback
 *   from inside rd_kafka_consumer_poll/close, so state never needs locks.
 *   The one other thread is the unlearning cycle's (cycle.h), which works on
 *   a snapshot and never touches the state.
 * - A forget request's ratings watermark is asked from the broker after the
 *   poll batch that brought it (once per partition per batch), never taken
 *   from librdkafka's cache: a cached value can be stale or unknown, and a
 *   request must cover every rating acknowledged before it was produced.
 * - A failed checkpoint, or a Redis that does not answer the PING of the
 *   loop's connection check (every few seconds, idle or not), is fatal: the
 *   process exits saying why, and a restart resumes from the last durable
 *   state (crash-only Redis faults, docs/operations.md). Kafka outages are
 *   waited out (librdkafka reconnects); /readyz follows both. */
#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cycle.h"
#include "http.h"
#include "kafka.h"
#include "live.h"
#include "metrics.h"
#include "publish.h"
#include "redis_local.h"
#include "rows.h"
#include "store.h"
#include "train.h"
#include "ul_clock.h"
#include "ul_err.h"

#define POLL_BATCH 20000          /* messages handled between housekeeping checks */
#define STATS_EVERY_MS 10000      /* progress log line */
#define METADATA_WAIT_MS 15000    /* how long to wait for the topics to exist */
#define FLUSH_MS 10000            /* producer flush at shutdown */
#define WATERMARK_WAIT_MS 10000   /* asking a partition's offsets at assignment */
#define CHECK_EVERY_MS 2000       /* Redis and Kafka are checked this often, idle or not */
#define KAFKA_CHECK_WAIT_MS 2000  /* a metadata round trip slower than this: Kafka is down */
#define DEAD_LETTER_WAIT_MS 500   /* a checkpoint or cycle pass waits this long for dead letters */
#define REVOKE_WAIT_MS 5000       /* a revoked partition's dead letters are waited for this long */
#define WATERMARK_TIMEOUT_MS 2000 /* one broker query for the ratings partitions' ends */
#define WATERMARK_RETRY_MS 500    /* after a failed one */

/* How an input topic's partitions reach this worker; each mode has its
 * consumer. */
typedef enum input_assign {
    INPUT_GROUP = 0,     /* subscribed in the consumer group; its partitions are what this
                          * worker owns (exactly one input) */
    INPUT_ALONGSIDE = 1, /* partition P assigned by the worker along with group partition P */
    INPUT_ALL = 2,       /* every partition, always (the item replica): its handler gets the
                          * record whether or not the partition is owned, and the live keeps
                          * the positions (item-updates) */
    INPUT_N_ASSIGN = 3
} input_assign;

struct worker {
    ul_log *log; /* first: the consumers' opaque (log_kafka_conf) */
    metrics *metrics;
    const ul_config *cfg;
    codec *codec;
    redis_local *rl;
    store *st;
    live *lv;
    publisher *pub;
    train *train;                         /* continuous training, called from the loop */
    uint64_t pushed_epochs;               /* training epochs whose item changes went out */
    rd_kafka_t *consumer[INPUT_N_ASSIGN]; /* by input_assign */
    const char *topic[SHARD_N_INPUTS];    /* the input topics' names (borrowed from cfg) */
    int32_t n_parts;
    int64_t start_offset;                     /* where a partition with no stored offset starts */
    codec_key_format key_format;              /* key.format */
    int64_t (*lag_committed)[SHARD_N_INPUTS]; /* per partition: offsets committed for lag */
    cycle *cycles;
    uint8_t *hwm_wanted;           /* per partition: buffered requests wait for their watermark */
    int64_t hwm_retry_ms;          /* after a failed watermark query, not before (monotonic) */
    rd_kafka_topic_t *check_topic; /* the group input's topic, for the Kafka check */
    int kafka_down;                /* the last Kafka check failed */
    int fatal;
    char fatal_msg[3 * UL_ERRSTR_SIZE];
    http_server *http;      /* NULL when metrics.port is 0 */
    codec_item_updates upd; /* the item-updates record being applied (reused) */
    int32_t flush_next;     /* the next partition due a row flush (round-robin) */
    uint64_t upd_errors;    /* item-updates records that did not apply */
};

/* An input's handler: decode the record, check it, apply it to shard s (the
 * partition's; the caller advances the offset). Returns CODEC_OK; a
 * codec_err, UL_ERR_RANGE or UL_ERR_PARSE with a message dead-letters the
 * record (reject_reason); UL_ERR_NOMEM is fatal. */
typedef int (*input_fn)(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err, size_t size);

typedef struct input_topic {
    const char *key;    /* config key of the topic's name */
    const char *label;  /* short name in `unlearnd state` (offset.<label>) */
    const char *schema; /* the record it carries, schemas/<schema>.avsc */
    input_assign assign;
    int lag_commit; /* commit its durable offsets to Kafka for lag tools */
    input_fn on_record;
} input_topic;

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

static void set_fatal(worker *w, const char *msg) {
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
static void redis_fault(worker *w, const char *what, const char *err) {
    char msg[2 * UL_ERRSTR_SIZE];
    metrics_set_redis_down(w->metrics, 0, err);
    snprintf(msg, sizeof(msg),
             "%s: %s. Exiting: a Redis fault stops the worker, and its restart resumes every "
             "partition from its last checkpoint (docs/operations.md, \"Redis faults\")",
             what, err);
    set_fatal(w, msg);
}

/* The input every partition's ownership follows. */
static int group_input(void) {
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        if (inputs[i].assign == INPUT_GROUP)
            return i;
    return 0;
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

static void reload_partition(worker *w, int32_t p, const char *why);

/* A checkpoint of partition p failed with rc (err says how), periodic or a
 * cycle's: a fence that moved is not fatal, the partition is reloaded
 * (reload_partition); any other failure is (a restart resumes from the last
 * checkpoint). */
static void checkpoint_failed(worker *w, int32_t p, int rc, const char *err) {
    char what[64];
    if (rc == STORE_ERR_FENCE) {
        reload_partition(w, p, err);
        return;
    }
    snprintf(what, sizeof(what), "checkpoint of partition %d failed", (int)p);
    redis_fault(w, what, err);
}

/* cycle_ckpt_fn: a cycle's checkpoint failed. */
static void cycle_checkpoint_failed(void *opaque, int32_t p, int rc, const char *err) {
    checkpoint_failed(opaque, p, rc, err);
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
            checkpoint_failed(w, p, rc, err);
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
        set_fatal(w, err);
}

static void start_cycle(worker *w) {
    char err[UL_ERRSTR_SIZE];
    if (cycle_start(w->cycles, err, sizeof(err)) != UL_OK)
        set_fatal(w, err);
}

/* Every iteration: merge a computed cycle or finish some of its partitions
 * (a partition with a dead letter in flight waits: cycle.c). */
static void poll_cycle(worker *w) {
    char err[UL_ERRSTR_SIZE];
    if (cycle_poll(w->cycles, err, sizeof(err)) != UL_OK)
        set_fatal(w, err);
}

/* ---- connection checks ------------------------------------------------- */

/* PING every Redis shard, idle or not, so that /readyz and the exit follow
 * a Redis that died or froze within seconds (not at the next write). */
static void store_waiting(void *opaque, int waiting) {
    metrics_redis_waiting(opaque, waiting);
}

static void check_redis(worker *w) {
    char err[UL_ERRSTR_SIZE];
    metrics_redis_waiting(w->metrics, 1);
    int rc = store_ping(w->st, err, sizeof(err));
    metrics_redis_waiting(w->metrics, 0);
    if (rc == UL_OK)
        metrics_set_redis_connected(w->metrics, 1);
    else
        redis_fault(w, "Redis stopped answering", err);
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

/* ---- rebalancing -------------------------------------------------------- */

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
 * offset, or INPUT_START_FAILED when the worker must stop (set_fatal). Item-updates (every
 * partition, for the replica) starts at its stored offset or the beginning:
 * catch_up_updates checks what the topic still holds. */
#define INPUT_START_FAILED INT64_MIN /* not an offset librdkafka knows */

static int64_t input_start(worker *w, const shard *s, int i) {
    char what[UL_ERRSTR_SIZE + 256], msg[sizeof(what) + 256];
    const char *topic = w->topic[i];
    int32_t p = s->partition;
    int64_t off = s->meta.next_offset[i], lo = 0, hi = 0;
    if (inputs[i].assign == INPUT_ALL)
        return off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(w->consumer[inputs[i].assign], topic,
                                                             p, &lo, &hi, WATERMARK_WAIT_MS);
    if (e) {
        snprintf(msg, sizeof(msg),
                 "cannot read the offsets of %s [%d] (needed to check that no record was lost "
                 "before the state applied it): %s",
                 topic, (int)p, rd_kafka_err2str(e));
        set_fatal(w, msg);
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
    set_fatal(w, msg);
    return INPUT_START_FAILED;
}

/* Partition p of the item replica's consumer goes back to `off` when the
 * replica is past it (the durable side catches up: live_item_updates),
 * by assigning it again at that offset. */
static void catch_up_updates(worker *w, int32_t p, int64_t off) {
    int64_t pos = live_updates_position(w->lv, p), lo = -1, hi = -1;
    /* The topic must still hold what the home's statistics have not applied. */
    if (rd_kafka_query_watermark_offsets(w->consumer[INPUT_ALL], w->topic[SHARD_ITEM_UPDATES], p,
                                         &lo, &hi, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        lo > (off < 0 ? 0 : off))
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
        set_fatal(w, msg);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Start every input of shard s: the group partition's offset into `tp`, the
 * alongside ones' into `alongside`; item-updates catches up. Returns -1
 * (nothing started) when the worker must stop. */
static int start_inputs(worker *w, const shard *s, rd_kafka_topic_partition_t *tp,
                        rd_kafka_topic_partition_list_t *alongside) {
    char line[1024];
    size_t len = 0;
    int64_t start[SHARD_N_INPUTS];
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        if ((start[i] = input_start(w, s, i)) == INPUT_START_FAILED)
            return -1;
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        int64_t off = s->meta.next_offset[i];
        w->lag_committed[s->partition][i] = s->durable_offset[i];
        if (inputs[i].assign == INPUT_GROUP)
            tp->offset = start[i];
        else if (inputs[i].assign == INPUT_ALONGSIDE)
            rd_kafka_topic_partition_list_add(alongside, w->topic[i], s->partition)->offset =
                start[i];
        else
            catch_up_updates(w, s->partition, off);
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
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        metrics_heartbeat(w->metrics); /* loading a big shard takes a while */
        shard *s = live_assign(w->lv, tp->partition, NULL, err, sizeof(err));
        if (s == NULL) {
            char msg[UL_ERRSTR_SIZE + 64];
            snprintf(msg, sizeof(msg), "cannot load partition %d: %s", (int)tp->partition, err);
            set_fatal(w, msg);
            tp->offset = RD_KAFKA_OFFSET_END; /* consume nothing; we are stopping */
            continue;
        }
        live_mark_partition(w->lv, tp->partition); /* a takeover republishes it in full */
        want_watermarks(w, s);
        if (start_inputs(w, s, tp, alongside) != 0)
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
        set_fatal(w, err);
    }
    if (e)
        rd_kafka_error_destroy(e);
    if (fe)
        rd_kafka_error_destroy(fe);
    rd_kafka_topic_partition_list_destroy(alongside);
    report_assignment(w, 0);
}

/* Give partition p up: checkpoint it first, unless it was lost (another
 * member may own it already: do not write). */
static void give_up(worker *w, int32_t p, int lost) {
    char err[UL_ERRSTR_SIZE];
    const shard *s = live_shard(w->lv, p);
    uint64_t applied = s->meta.applied;
    int64_t off = s->meta.next_offset[group_input()];
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
                 w->topic[group_input()], off, applied);
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
static void send_changes(worker *w) {
    push_items(w, SHARD_EVENT);
    push_items(w, SHARD_TRAINING);
    publish_changed_class(w->pub, SHARD_EVENT);
    publish_changed_class(w->pub, SHARD_TRAINING);
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
        send_changes(w);
    rd_kafka_topic_partition_list_t *alongside =
        rd_kafka_topic_partition_list_new(parts->cnt * SHARD_N_INPUTS);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (live_shard(w->lv, p) == NULL)
            continue;
        for (int in = 0; in < SHARD_N_INPUTS; in++)
            if (inputs[in].assign == INPUT_ALONGSIDE)
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
        set_fatal(w, msg);
    }
    if (e)
        rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Stop consuming p's inputs here (its alongside ones are unassigned, the
 * group one paused) until the group revokes or assigns it again. */
static void stop_inputs(worker *w, int32_t p) {
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        if (inputs[i].assign == INPUT_ALL)
            continue;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, w->topic[i], p);
        if (inputs[i].assign == INPUT_GROUP) {
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
        set_fatal(w, msg);
        return;
    }
    if (!mfound || m.nonce != live_nonce(w->lv)) {
        snprintf(msg, sizeof(msg),
                 "Redis lost the whole state (ul:model %s): stopping; a restart rebuilds it from "
                 "the topics",
                 mfound ? "holds another nonce" : "is gone");
        set_fatal(w, msg);
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
        set_fatal(w, msg);
        return;
    }
    log_warn(w->log, "redis",
             "partition %d: reloaded from Redis (%" PRIu64 " applied, epoch %" PRIu64
             "); replaying %s from offset %" PRId64,
             (int)p, s->meta.applied, s->meta.epoch, w->topic[SHARD_RATINGS],
             s->meta.next_offset[SHARD_RATINGS] < 0 ? 0 : s->meta.next_offset[SHARD_RATINGS]);
    want_watermarks(w, s);
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        if (inputs[i].assign == INPUT_ALL)
            catch_up_updates(w, p, s->meta.next_offset[i]);
        else {
            int64_t start = input_start(w, s, i); /* lost records: on.truncated */
            if (start == INPUT_START_FAILED)
                return;
            seek_input(w, w->consumer[inputs[i].assign], i, p, start);
        }
    }
    live_mark_partition(w->lv, p);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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

/* Lag commits are advisory: one failing during a rebalance is expected. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
    (void)rk;
    (void)offsets;
    worker *w = opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_debug(w->log, "kafka", "lag commit failed (harmless): %s", rd_kafka_err2str(err));
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    worker *w = opaque;
    kafka_report_stats(w->log, w->metrics, json, json_len);
    return 0; /* librdkafka frees json */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    worker *w = opaque;
    kafka_report_error(w->log, w->metrics, err, reason);
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
        set_fatal(w, err);
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
        set_fatal(w, err);
        return;
    }
    if (rc != CODEC_OK) {
        if (publish_dead_letter(w->pub, rkm, reject_reason(rc), err) != UL_OK) {
            set_fatal(w, "out of memory keeping a dead letter");
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

/* ---- setup -------------------------------------------------------------- */

codec_key_format worker_key_format(const ul_config *cfg) {
    return cfg->key_format && strcmp(cfg->key_format, "avro") == 0 ? CODEC_KEY_AVRO
                                                                   : CODEC_KEY_STRING;
}

int32_t worker_user_partition(const ul_config *cfg, int64_t user, int32_t n) {
    return codec_user_partition(worker_key_format(cfg), (int32_t)cfg->key_schema_id, user, n);
}

const char *worker_input_label(int input) {
    return input >= 0 && input < SHARD_N_INPUTS ? inputs[input].label : NULL;
}

/* The codec of cfg; with register_outputs (the worker, not the tools) and
 * schema.registry.register=1, our output schemas are registered first and
 * written with the registry's ids. */
static codec *codec_from_config(const ul_config *cfg, int register_outputs, char *errstr,
                                size_t errstr_size) {
    codec_opts o;
    codec_opts_init(&o);
    o.schema_id_rating = (int32_t)cfg->schema_id_rating;
    o.schema_id_forget = (int32_t)cfg->schema_id_forget;
    o.schema_id_factor = (int32_t)cfg->schema_id_factor;
    o.schema_id_receipt = (int32_t)cfg->schema_id_receipt;
    o.schema_id_item_update = (int32_t)cfg->schema_id_item_update;
    o.rating_min = (float)cfg->rating_min;
    o.rating_max = (float)cfg->rating_max;
    o.max_forget_items = (size_t)cfg->forget_max_items;
    o.schema_writers = cfg->schema_writers;
    o.registry_url = cfg->schema_registry_url;
    o.registry_user = cfg->schema_registry_user;
    o.registry_password = cfg->schema_registry_password;
    o.registry_timeout_ms = cfg->schema_registry_timeout_ms;
    if (register_outputs && cfg->schema_registry_register &&
        codec_register_outputs(&o, cfg->topic_factors, cfg->topic_receipts, errstr, errstr_size) !=
            UL_OK)
        return NULL;
    return codec_new(&o, errstr, errstr_size);
}

codec *worker_codec_new(const ul_config *cfg, char *errstr, size_t errstr_size) {
    return codec_from_config(cfg, 0, errstr, errstr_size);
}

void worker_store_opts(const ul_config *cfg, store_opts *so) {
    store_opts_init(so);
    so->host = cfg->redis_host;
    so->port = (int)cfg->redis_port;
    so->cluster = cfg->redis_cluster;
    so->user = cfg->redis_user;
    so->password = cfg->redis_password;
    so->db = (int)cfg->redis_db;
    so->timeout_ms = (int)cfg->redis_timeout_ms;
    so->retry_ms = (int)cfg->redis_retry_ms;
    so->wait_ms = (int)cfg->redis_wait_ms;
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        so->inputs[i] = config_str(cfg, inputs[i].key);
}

/* The store's one line per event it rides out (redirection, failover). */
static void store_log(void *ctx, const char *msg) {
    worker *w = ctx;
    log_warn(w->log, "redis", "%s", msg);
}

static int open_store(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    store_opts so;
    worker_store_opts(cfg, &so);
    if (!config_has_redis(cfg)) {
        w->rl = redis_local_start(cfg->redis_server_path, 10000, errstr, errstr_size);
        if (w->rl == NULL)
            return UL_ERR_IO;
        so.host = redis_local_host(w->rl);
        so.port = redis_local_port(w->rl);
        so.password = redis_local_password(w->rl);
        so.user = NULL;
        so.cluster = NULL;
        log_info(w->log, "redis",
                 "no redis.host configured: started a private redis-server on %s:%d (state is "
                 "lost when the worker exits)",
                 so.host, so.port);
    }
    so.log_fn = store_log;
    so.log_ctx = w;
    so.wait_fn = store_waiting; /* /readyz: Redis silent for long, whatever the call */
    so.wait_ctx = w->metrics;
    w->st = store_connect(&so, errstr, errstr_size);
    /* every primary answers before we say connected (the slot map came from one seed) */
    if (w->st == NULL || store_ping(w->st, errstr, errstr_size) != UL_OK)
        return UL_ERR_IO;
    metrics_set_redis_connected(w->metrics, 1);
    if (store_is_cluster(w->st))
        for (int i = 0; i < store_primary_count(w->st); i++)
            log_info(w->log, "redis", "connected to Redis Cluster primary %d of %d: %s", i + 1,
                     store_primary_count(w->st), store_primary_where(w->st, i));
    else
        log_info(w->log, "redis", "connected to Redis %s", store_primary_where(w->st, 0));
    return UL_OK;
}

/* The two consumers, and every input topic's partition count (they must
 * match: a user's records of every input share a partition). */
static int open_consumers(worker *w, char *errstr, size_t errstr_size) {
    kafka_hooks h = {.error = error_cb, .stats = w->http ? stats_cb : NULL};
    kafka_hooks g = h;
    g.rebalance = rebalance_cb;
    g.committed = commit_cb;
    if ((w->consumer[INPUT_GROUP] =
             kafka_client_new(w->cfg, KAFKA_INGEST, &w->log, &g, errstr, errstr_size)) == NULL ||
        (w->consumer[INPUT_ALONGSIDE] =
             kafka_client_new(w->cfg, KAFKA_ASSIGNED, &w->log, &h, errstr, errstr_size)) == NULL ||
        (w->consumer[INPUT_ALL] =
             kafka_client_new(w->cfg, KAFKA_ASSIGNED, &w->log, &h, errstr, errstr_size)) == NULL)
        return UL_ERR_IO;
    int32_t n[SHARD_N_INPUTS];
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        char why[UL_ERRSTR_SIZE];
        int internal = inputs[i].assign == INPUT_ALL;
        if (kafka_topic_partition_count(w->consumer[INPUT_GROUP], w->topic[i], METADATA_WAIT_MS,
                                        &n[i], why, sizeof(why)) != UL_OK) {
            ul_set_err(errstr, errstr_size, "%s%s", why,
                       internal ? " (the internal topic the workers exchange item changes on: "
                                  "create it with the ratings topic's partition count, see "
                                  "docs/operations.md)"
                                : "");
            return UL_ERR_IO;
        }
        if (n[i] != n[0]) {
            ul_set_err(errstr, errstr_size,
                       "%s has %d partitions but %s has %d: they must match so that %s (%s)",
                       w->topic[0], (int)n[0], w->topic[i], (int)n[i],
                       internal ? "partition P carries the changes of partition P's home items"
                                : "a user's records of every input topic share a partition",
                       internal ? "recreate it, or add partitions: kafka-topics.sh --alter "
                                  "--partitions N (docs/operations.md)"
                                : "repartition one of them");
            return UL_ERR_STATE;
        }
    }
    metrics_set_kafka_connected(w->metrics, 1); /* the brokers answered metadata requests */
    w->n_parts = n[0];
    w->check_topic = rd_kafka_topic_new(w->consumer[INPUT_GROUP], w->topic[group_input()], NULL);
    if (w->check_topic == NULL) {
        ul_set_err(errstr, errstr_size, "%s: %s", w->topic[group_input()],
                   rd_kafka_err2str(rd_kafka_last_error()));
        return UL_ERR_IO;
    }
    return UL_OK;
}

static int open_live(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    live_opts lo;
    live_opts_init(&lo);
    lo.k = (int)cfg->model_k;
    lo.lr = (float)cfg->learning_rate;
    lo.reg = (float)cfg->reg;
    lo.train_lr = (float)cfg->training_learning_rate;
    lo.train_lr_decay = (float)cfg->training_learning_rate_decay;
    lo.train_lr_min = (float)cfg->training_learning_rate_min;
    lo.retention = (uint32_t)cfg->retention_per_user;
    lo.rating_min = (float)cfg->rating_min;
    lo.rating_max = (float)cfg->rating_max;
    lo.k_explicit = !config_is_default(cfg, "model.k");
    lo.encode = publish_delivery_record;
    lo.encode_opaque = w->codec;
    w->lv = live_new(&lo, w->st, w->n_parts, errstr, errstr_size);
    if (w->lv == NULL)
        return UL_ERR_STATE;
    if (live_k(w->lv) != (int)cfg->model_k)
        log_info(w->log, "worker", "Redis holds a model with k=%d: using it (model.k not set)",
                 live_k(w->lv));
    return UL_OK;
}

/* The item replica consumes every partition of item-updates, each from
 * where the replica loaded from Redis is (rows_off; the beginning without). */
static int assign_replica(worker *w, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(w->n_parts);
    for (int32_t p = 0; p < w->n_parts; p++) {
        int64_t pos = live_updates_position(w->lv, p);
        rd_kafka_topic_partition_list_add(l, w->topic[SHARD_ITEM_UPDATES], p)->offset =
            pos >= 0 ? pos : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_error_t *e = rd_kafka_incremental_assign(w->consumer[INPUT_ALL], l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        ul_set_err(errstr, errstr_size, "cannot assign %s: %s", w->topic[SHARD_ITEM_UPDATES],
                   rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return UL_ERR_IO;
    }
    return UL_OK;
}

static int open_train(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    train_opts to;
    train_opts_init(&to);
    to.enabled = cfg->training_enabled != 0;
    to.share = cfg->training_share;
    to.idle_share = cfg->training_idle_share;
    to.slice_ms = cfg->training_slice_ms;
    to.min_improvement = cfg->training_min_improvement;
    to.resume_fraction = cfg->training_resume_fraction;
    to.steps_per_event = cfg->training_steps_per_event;
    w->train = train_new(&to, w->lv, w->metrics, w->log);
    if (w->train == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

static int open_cycles(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    /* Fault injection for the integration tests only (not a config option). */
    const char *fault = getenv("UNLEARND_FAULT");
    cycle_opts co = {.lv = w->lv,
                     .st = w->st,
                     .pub = w->pub,
                     .metrics = w->metrics,
                     .log = w->log,
                     .forget = {.max_batch = (size_t)cfg->cycle_max_batch, .method = cfg->method},
                     .checkpoint_failed = cycle_checkpoint_failed,
                     .opaque = w,
                     .exit_after_checkpoint =
                         fault && strcmp(fault, "exit-after-cycle-checkpoint") == 0,
                     .exit_during_cycle = fault && strcmp(fault, "exit-during-cycle") == 0};
    unlearn_params_init(&co.forget.uparams);
    w->cycles = cycle_new(&co, errstr, errstr_size);
    return w->cycles ? UL_OK : UL_ERR_NOMEM;
}

static int subscribe(worker *w, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        if (inputs[i].assign == INPUT_GROUP)
            rd_kafka_topic_partition_list_add(topics, w->topic[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(w->consumer[INPUT_GROUP], topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        ul_set_err(errstr, errstr_size, "cannot subscribe to %s: %s", w->topic[group_input()],
                   rd_kafka_err2str(e));
        return UL_ERR_IO;
    }
    return UL_OK;
}

/* "a, b and c" of the input topics' names. */
static const char *input_names(const worker *w, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < SHARD_N_INPUTS && len < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == SHARD_N_INPUTS ? " and " : ", ";
        int n = snprintf(buf + len, size - len, "%s%s", sep, w->topic[i]);
        len += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

/* The input topics' names; a row naming no topic option or no embedded
 * schema is a mistake in the table. */
static int open_inputs(worker *w, char *errstr, size_t errstr_size) {
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        w->topic[i] = config_str(w->cfg, inputs[i].key);
        if (w->topic[i] == NULL || codec_schema_text(inputs[i].schema) == NULL) {
            ul_set_err(errstr, errstr_size, "input %s: no such topic option or schema %s",
                       inputs[i].key, inputs[i].schema);
            return UL_ERR_STATE;
        }
    }
    return UL_OK;
}

/* Without stored offsets a partition starts at the beginning (its state is
 * empty, so everything must be applied), unless the user explicitly asked
 * for kafka.auto.offset.reset=latest (e.g. after `unlearnd import`).
 * Kafka's committed offsets are never used: they may be ahead of Redis. */
static int64_t start_offset(const ul_config *cfg) {
    char reset[32];
    if (config_value(cfg, "kafka.auto.offset.reset", 1, reset, sizeof(reset)) == UL_OK &&
        (strcmp(reset, "latest") == 0 || strcmp(reset, "largest") == 0 ||
         strcmp(reset, "end") == 0))
        return RD_KAFKA_OFFSET_END;
    return RD_KAFKA_OFFSET_BEGINNING;
}

static int open_http(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    if ((w->metrics = metrics_new()) == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    if (cfg->metrics_port <= 0)
        return UL_OK;
    http_opts ho = {cfg->metrics_bind, (int)cfg->metrics_port,
                    (double)cfg->metrics_live_timeout_ms / 1000.0};
    w->http = http_server_start(w->metrics, w->log, &ho, errstr, errstr_size);
    return w->http ? UL_OK : UL_ERR_IO;
}

worker *worker_new(const ul_config *cfg, ul_log *lg, char *errstr, size_t errstr_size) {
    char names[1024];
    worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    w->log = lg;
    w->cfg = cfg;
    w->start_offset = start_offset(cfg);
    w->key_format = worker_key_format(cfg);
    if (open_inputs(w, errstr, errstr_size) != UL_OK ||
        open_http(w, errstr, errstr_size) != UL_OK ||
        (w->codec = codec_from_config(cfg, 1, errstr, errstr_size)) == NULL ||
        open_store(w, errstr, errstr_size) != UL_OK ||
        open_consumers(w, errstr, errstr_size) != UL_OK ||
        open_live(w, errstr, errstr_size) != UL_OK || open_train(w, errstr, errstr_size) != UL_OK ||
        (w->pub = publish_new(cfg, lg, w->metrics, w->codec, w->lv, errstr, errstr_size)) == NULL)
        goto fail;
    w->lag_committed = calloc((size_t)w->n_parts, sizeof(*w->lag_committed));
    w->hwm_wanted = calloc((size_t)w->n_parts, 1);
    if (w->lag_committed == NULL || w->hwm_wanted == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (open_cycles(w, errstr, errstr_size) != UL_OK ||
        assign_replica(w, errstr, errstr_size) != UL_OK ||
        subscribe(w, errstr, errstr_size) != UL_OK)
        goto fail;
    log_info(w->log, "worker",
             "consuming %s (%d partitions) in group %s; method %s, k=%d, cycle every %ld "
             "ms, checkpoint every %ld ms, changed rows published every %ld ms; continuous "
             "training %s (%.2f of the loop's time while events flow, %.2f when idle)",
             input_names(w, names, sizeof(names)), (int)w->n_parts, cfg->kafka_group_id,
             cfg->method, live_k(w->lv), cfg->cycle_interval_ms, cfg->checkpoint_interval_ms,
             cfg->publish_interval_ms, cfg->training_enabled ? "on" : "off", cfg->training_share,
             cfg->training_idle_share);
    return w;
fail:
    worker_destroy(w);
    return NULL;
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
        set_fatal(w, err);
}

/* Send the item deltas of class cls accumulated since the last push. */
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
            set_fatal(w, err);
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
        set_fatal(w, err);
    if (w->fatal)
        return;
    send_changes(w);
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
            set_fatal(w, err);
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
            set_fatal(w, "out of memory in continuous training");
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

void worker_destroy(worker *w) {
    if (w == NULL)
        return;
    http_server_stop(w->http); /* first: it reads w->metrics */
    if (w->check_topic)
        rd_kafka_topic_destroy(w->check_topic);
    for (int a = 0; a < INPUT_N_ASSIGN; a++) /* may revoke: cycle_give_up */
        if (w->consumer[a])
            rd_kafka_destroy(w->consumer[a]);
    cycle_destroy(w->cycles); /* before the live its job may point into */
    publish_destroy(w->pub);
    train_destroy(w->train);
    live_destroy(w->lv);
    store_destroy(w->st);
    redis_local_stop(w->rl);
    codec_destroy(w->codec);
    codec_item_updates_clear(&w->upd);
    free(w->lag_committed);
    free(w->hwm_wanted);
    metrics_destroy(w->metrics);
    free(w);
}
