/* worker.c: the stream worker's loop (see worker.h and docs/stream.md).
 *
 * DESIGN
 * - Ownership follows the ratings topic: the group assigns ratings
 *   partitions; for each one the worker itself assigns the forget-requests
 *   partition with the same number on a second, group-less consumer. So a
 *   user's ratings, forget requests and Redis shard are always handled
 *   together, whatever assignor the group uses (range, round-robin,
 *   cooperative-sticky).
 * - Offsets come from Redis, never from Kafka commits: on assignment each
 *   partition starts at the offsets stored with its state (or the beginning
 *   when it has none). Offsets are also committed after each checkpoint, for
 *   lag monitoring only.
 * - Everything runs on this thread: librdkafka calls the rebalance callback
 *   from inside rd_kafka_consumer_poll/close, so state never needs locks.
 * - An unlearning cycle's result is checkpointed before it is published; a
 *   failed checkpoint is fatal (the process exits and a restart resumes from
 *   the last durable state).
 * - Rows changed by ratings are published every publish.interval.ms (each
 *   marked row once, best effort), and a partition taken over is published
 *   in full, so the compacted factors topic holds the whole model after the
 *   first interval (docs/stream.md, "Publishing factor rows"). */
#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "http.h"
#include "kafka.h"
#include "live.h"
#include "metrics.h"
#include "redis_local.h"
#include "store.h"
#include "ul_err.h"

#define POLL_BATCH 20000       /* messages handled between housekeeping checks */
#define STATS_EVERY_MS 10000   /* progress log line */
#define METADATA_WAIT_MS 15000 /* how long to wait for the topics to exist */
#define FLUSH_MS 10000         /* producer flush at shutdown */

struct worker {
    ul_log *log; /* first: librdkafka's log callback finds it through the opaque */
    const ul_config *cfg;
    codec *codec;
    redis_local *rl;
    store *st;
    live *lv;
    rd_kafka_t *consumer;  /* group member on the ratings topic */
    rd_kafka_t *fconsumer; /* forget-requests, assigned by us */
    rd_kafka_t *producer;
    int32_t n_parts;
    int64_t start_offset;                 /* where a partition with no stored offset starts */
    int64_t (*saved_off)[SHARD_N_TOPICS]; /* offsets at the last checkpoint, per partition */
    int fatal;
    char fatal_msg[UL_ERRSTR_SIZE + 128];
    worker_stats stats;
    codec_buf buf;
    struct tracker *done;       /* outbox entries whose messages all got a delivery report */
    int fault_exit_after_cycle; /* test hook: die between checkpoint and publish */
    int republish;              /* a periodic row was not delivered: publish everything owned */
    metrics *metrics;           /* read by the HTTP thread (worker/metrics.h) */
    http_server *http;          /* NULL when metrics.port is 0 */
};

/* Delivery bookkeeping of one outbox entry being published. */
typedef struct tracker {
    int32_t partition;
    uint64_t version;
    int remaining; /* messages without a delivery report (+1 while still producing) */
    int failed;
    struct tracker *next;
} tracker;

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_fatal(worker *w, const char *msg) {
    if (w->fatal)
        return;
    w->fatal = 1;
    snprintf(w->fatal_msg, sizeof(w->fatal_msg), "%s", msg);
    log_error(w->log, "worker", "%s", msg);
}

/* ---- checkpoints -------------------------------------------------------- */

static int shard_changed(const worker *w, const shard *s) {
    size_t nu, nd;
    rowset_dirty(s->users, &nu);
    rowset_dirty(s->deltas, &nd);
    const int64_t *saved = w->saved_off[s->partition];
    return nu || nd || s->n_hist_dirty || s->n_removed || s->n_outbox_removed ||
           s->meta.next_offset[SHARD_RATINGS] != saved[SHARD_RATINGS] ||
           s->meta.next_offset[SHARD_FORGET] != saved[SHARD_FORGET];
}

static void commit_for_lag(worker *w, const shard *s) {
    if (s->meta.next_offset[SHARD_RATINGS] < 0)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, w->cfg->topic_ratings, s->partition)->offset =
        s->meta.next_offset[SHARD_RATINGS];
    rd_kafka_commit(w->consumer, l, 1); /* async; failures only affect lag reports */
    rd_kafka_topic_partition_list_destroy(l);
}

static int checkpoint_shard(worker *w, shard *s) {
    char err[UL_ERRSTR_SIZE];
    if (live_checkpoint(w->lv, s, err, sizeof(err)) != UL_OK) {
        char msg[UL_ERRSTR_SIZE + 64];
        snprintf(msg, sizeof(msg), "checkpoint of partition %d failed: %s", (int)s->partition, err);
        set_fatal(w, msg);
        return -1;
    }
    w->saved_off[s->partition][SHARD_RATINGS] = s->meta.next_offset[SHARD_RATINGS];
    w->saved_off[s->partition][SHARD_FORGET] = s->meta.next_offset[SHARD_FORGET];
    w->stats.checkpoints++;
    commit_for_lag(w, s);
    return 0;
}

static void checkpoint_all(worker *w) {
    for (int32_t p = 0; p < w->n_parts && !w->fatal; p++) {
        shard *s = live_shard(w->lv, p);
        if (s && shard_changed(w, s))
            checkpoint_shard(w, s);
    }
    if (!w->fatal)
        metrics_checkpoint_done(w->metrics);
}

/* Partitions owned now, for /readyz and /metrics (-1: rebalancing). */
static void report_assignment(worker *w, int rebalancing) {
    int owned = 0;
    for (int32_t p = 0; p < w->n_parts; p++)
        owned += live_shard(w->lv, p) != NULL;
    metrics_set_assigned_partitions(w->metrics, rebalancing ? -1 : owned);
}

/* ---- rebalancing -------------------------------------------------------- */

static int is_cooperative(rd_kafka_t *rk) {
    const char *proto = rd_kafka_rebalance_protocol(rk);
    return proto && strcmp(proto, "COOPERATIVE") == 0;
}

/* Load the shards and set each partition's start offset from Redis. */
static void on_assign(worker *w, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts) {
    char err[UL_ERRSTR_SIZE];
    rd_kafka_topic_partition_list_t *fparts = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        metrics_heartbeat(w->metrics); /* loading a big shard takes a while */
        shard *s = live_assign(w->lv, tp->partition, err, sizeof(err));
        if (s == NULL) {
            char msg[UL_ERRSTR_SIZE + 64];
            snprintf(msg, sizeof(msg), "cannot load partition %d: %s", (int)tp->partition, err);
            set_fatal(w, msg);
            tp->offset = RD_KAFKA_OFFSET_END; /* consume nothing; we are stopping */
            continue;
        }
        live_mark_partition(w->lv, tp->partition); /* a takeover republishes it in full */
        int64_t ro = s->meta.next_offset[SHARD_RATINGS], fo = s->meta.next_offset[SHARD_FORGET];
        tp->offset = ro >= 0 ? ro : w->start_offset;
        rd_kafka_topic_partition_list_add(fparts, w->cfg->topic_forget, tp->partition)->offset =
            fo >= 0 ? fo : w->start_offset;
        w->saved_off[tp->partition][SHARD_RATINGS] = ro;
        w->saved_off[tp->partition][SHARD_FORGET] = fo;
        log_info(w->log, "kafka",
                 "assigned partition %d: %s from offset %" PRId64 ", %s from offset %" PRId64
                 " (%" PRIu64 " applied, %zu forget requests buffered)",
                 (int)tp->partition, w->cfg->topic_ratings, ro < 0 ? 0 : ro, w->cfg->topic_forget,
                 fo < 0 ? 0 : fo, s->meta.applied, s->n_pending);
    }
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (is_cooperative(rk))
        e = rd_kafka_incremental_assign(rk, parts);
    else
        re = rd_kafka_assign(rk, parts);
    rd_kafka_error_t *fe = rd_kafka_incremental_assign(w->fconsumer, fparts);
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
    rd_kafka_topic_partition_list_destroy(fparts);
    report_assignment(w, 0);
}

static void process_done(worker *w);
static void publish_changed(worker *w);

/* Checkpoint, then give the partitions up. */
static void on_revoke(worker *w, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int lost) {
    char err[UL_ERRSTR_SIZE];
    if (!lost) /* lost: another member may own them already, our rows may be stale */
        publish_changed(w);
    rd_kafka_topic_partition_list_t *fparts = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        shard *s = live_shard(w->lv, p);
        if (s == NULL)
            continue;
        rd_kafka_topic_partition_list_add(fparts, w->cfg->topic_forget, p);
        uint64_t applied = s->meta.applied;
        int64_t off = s->meta.next_offset[SHARD_RATINGS];
        if (lost) /* another member may own it already: do not write */
            log_warn(w->log, "kafka",
                     "partition %d lost; its changes since the last checkpoint will be "
                     "replayed by its next owner",
                     (int)p);
        int rc =
            lost ? live_drop(w->lv, p, err, sizeof(err)) : live_revoke(w->lv, p, err, sizeof(err));
        if (rc != UL_OK)
            log_error(w->log, "kafka", "partition %d revoked without its final checkpoint: %s",
                      (int)p, err);
        else if (!lost)
            log_info(w->log, "kafka",
                     "revoked partition %d at %s offset %" PRId64 " (%" PRIu64 " applied)", (int)p,
                     w->cfg->topic_ratings, off, applied);
    }
    rd_kafka_error_t *fe = rd_kafka_incremental_unassign(w->fconsumer, fparts);
    if (fe)
        rd_kafka_error_destroy(fe);
    rd_kafka_topic_partition_list_destroy(fparts);
    if (is_cooperative(rk)) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
    report_assignment(w, !is_cooperative(rk)); /* eager: everything moves */
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

static void tracker_release(worker *w, tracker *t) {
    if (--t->remaining > 0)
        return;
    t->next = w->done; /* handled by the loop, outside librdkafka's callback */
    w->done = t;
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

/* A message's opaque is its outbox tracker, the worker itself for a
 * periodically published row, or NULL (dead letters). */
static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    (void)rk;
    worker *w = opaque;
    tracker *t = rkm->_private == (void *)w ? NULL : rkm->_private;
    if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        w->stats.produce_failures++;
        log_error(w->log, "kafka", "delivery to %s failed: %s",
                  rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "?", rd_kafka_err2str(rkm->err));
        if (t)
            t->failed = 1;
        if (rkm->_private == (void *)w)
            w->republish = 1; /* rare: the next interval publishes every owned row */
    }
    if (t)
        tracker_release(w, t);
}

/* Outbox entries fully acknowledged are dropped (the next checkpoint deletes
 * them from Redis); failed ones are published again at the next cycle. */
static void process_done(worker *w) {
    while (w->done) {
        tracker *t = w->done;
        w->done = t->next;
        shard *s = live_shard(w->lv, t->partition);
        for (size_t i = 0; s && i < s->n_outbox; i++) {
            if (s->outbox[i].version != t->version)
                continue;
            if (t->failed)
                s->outbox[i].inflight = 0;
            else if (shard_outbox_remove(s, t->version) != 0)
                set_fatal(w, "out of memory");
            break;
        }
        free(t);
    }
}

/* librdkafka statistics (kafka.statistics.interval.ms): consumer lag and
 * brokers up for /metrics; Kafka counts as connected while a broker is UP. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    worker *w = opaque;
    char err[UL_ERRSTR_SIZE];
    if (metrics_update_kafka_stats(w->metrics, json, json_len, err, sizeof(err)) != UL_OK)
        log_warn(w->log, "kafka", "%s", err);
    else
        metrics_set_kafka_connected(w->metrics, metrics_kafka_brokers_up(w->metrics) > 0);
    return 0; /* librdkafka frees json */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    worker *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__FATAL)
        metrics_set_kafka_connected(w->metrics, 0);
    log_error(w->log, "kafka", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---- events ------------------------------------------------------------- */

static void dead_letter(worker *w, shard *s, const rd_kafka_message_t *rkm, int code,
                        const char *why) {
    char err[UL_ERRSTR_SIZE];
    const char *name = code == UL_ERR_RANGE ? "wrong-partition" : codec_err_name(code);
    if (kafka_produce_dead_letter(w->producer, w->cfg->topic_dead_letter, rkm, name, why, err,
                                  sizeof(err)) != UL_OK)
        log_error(w->log, "worker", "%s", err);
    s->meta.dead_letters++;
    w->stats.dead_letters++;
    metrics_inc_dead_letter(w->metrics, rd_kafka_topic_name(rkm->rkt), name);
    log_warn(w->log, "worker", "dead-lettered %s [%d] @%" PRId64 ": %s: %s",
             rd_kafka_topic_name(rkm->rkt), (int)rkm->partition, rkm->offset, name, why);
}

/* A user's events must arrive in the partition of their user: otherwise the
 * user's rows would be split over two shards. */
/* codec_key_user's decimal key without printf (this runs once per event). */
static int user_key(int64_t user, char *key, size_t size) {
    if (user < 0)
        return codec_key_user(user, key, size);
    char rev[24];
    int n = 0;
    for (uint64_t v = (uint64_t)user; n == 0 || v > 0; v /= 10)
        rev[n++] = (char)('0' + v % 10);
    for (int i = 0; i < n; i++)
        key[i] = rev[n - 1 - i];
    key[n] = '\0';
    return n;
}

static int check_partition(worker *w, int32_t partition, int64_t user, char *err, size_t size) {
    char key[24];
    int len = user_key(user, key, sizeof(key));
    int32_t want = len > 0 ? codec_partition(key, (size_t)len, w->n_parts) : -1;
    if (want == partition)
        return UL_OK;
    ul_set_err(err, size,
               "user %" PRId64 " belongs to partition %d but arrived in %d (the producer must "
               "key by user id and partition with murmur2)",
               user, (int)want, (int)partition);
    return UL_ERR_RANGE;
}

static void on_rating(worker *w, const rd_kafka_message_t *rkm) {
    shard *s = live_shard(w->lv, rkm->partition);
    if (s == NULL || rkm->offset < s->meta.next_offset[SHARD_RATINGS])
        return; /* not ours any more, or already applied */
    codec_rating r;
    char err[UL_ERRSTR_SIZE];
    int rc = codec_decode_rating(w->codec, rkm->payload, rkm->len, &r, err, sizeof(err));
    if (rc == CODEC_OK)
        rc = check_partition(w, rkm->partition, r.user_id, err, sizeof(err));
    if (rc != CODEC_OK) {
        dead_letter(w, s, rkm, rc, err);
    } else if (live_apply_rating(w->lv, s, r.user_id, r.item_id, r.rating, r.event_time) != UL_OK) {
        set_fatal(w, "out of memory applying a rating");
        return;
    } else {
        w->stats.ratings_applied++;
        metrics_add_ratings_applied(w->metrics, 1);
    }
    s->meta.next_offset[SHARD_RATINGS] = rkm->offset + 1;
}

static int64_t ratings_high_watermark(worker *w, int32_t p) {
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(w->consumer, w->cfg->topic_ratings, p, &lo, &hi) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    return hi;
}

static void on_forget(worker *w, const rd_kafka_message_t *rkm) {
    shard *s = live_shard(w->lv, rkm->partition);
    if (s == NULL || rkm->offset < s->meta.next_offset[SHARD_FORGET])
        return;
    codec_forget f;
    char err[UL_ERRSTR_SIZE];
    int rc = codec_decode_forget(w->codec, rkm->payload, rkm->len, &f, err, sizeof(err));
    if (rc == CODEC_OK)
        rc = check_partition(w, rkm->partition, f.user_id, err, sizeof(err));
    if (rc != CODEC_OK) {
        if (rc == UL_ERR_RANGE)
            codec_forget_clear(&f);
        dead_letter(w, s, rkm, rc, err);
        s->meta.next_offset[SHARD_FORGET] = rkm->offset + 1;
        return;
    }
    forget_req fr;
    memset(&fr, 0, sizeof(fr));
    fr.offset = rkm->offset;
    fr.user = f.user_id;
    fr.request_id = strdup(f.request_id);
    fr.items = f.items; /* moved */
    fr.n_items = (uint32_t)f.n_items;
    f.items = NULL;
    fr.has_window = f.has_window;
    fr.from = f.window_from;
    fr.to = f.window_to;
    fr.reason = (int32_t)f.reason;
    fr.received_ms = wall_ms();
    fr.ratings_hwm = ratings_high_watermark(w, rkm->partition);
    fr.unsaved = 1;
    codec_forget_clear(&f);
    if (fr.request_id == NULL || shard_pending_add(s, &fr) != 0) {
        forget_req_free(&fr);
        set_fatal(w, "out of memory buffering a forget request");
        return;
    }
    s->meta.forget_received++;
    s->meta.next_offset[SHARD_FORGET] = rkm->offset + 1;
    w->stats.forget_received++;
    metrics_add_forget_received(w->metrics, 1);
    const forget_req *b = &s->pending[s->n_pending - 1];
    if (b->has_window)
        log_info(w->log, "worker",
                 "forget request %s for user %" PRId64 " (%s, time %" PRId64 "..%" PRId64
                 ") buffered from %s [%d] @%" PRId64,
                 b->request_id, b->user, codec_reason_name(b->reason), b->from, b->to,
                 w->cfg->topic_forget, (int)rkm->partition, rkm->offset);
    else
        log_info(w->log, "worker",
                 "forget request %s for user %" PRId64 " (%s, %u items) buffered from %s [%d] "
                 "@%" PRId64,
                 b->request_id, b->user, codec_reason_name(b->reason), b->n_items,
                 w->cfg->topic_forget, (int)rkm->partition, rkm->offset);
}

/* ---- publishing --------------------------------------------------------- */

typedef struct blob {
    unsigned char *p;
    size_t len, cap;
    int oom;
} blob;

static void blob_put(blob *b, const void *src, size_t n) {
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

/* Append one record (topic 0 factors, 1 receipts) to the outbox blob. */
static void blob_record(blob *b, uint8_t topic, const char *key, int key_len, const codec_buf *v) {
    uint32_t kl = (uint32_t)key_len, vl = (uint32_t)v->len;
    blob_put(b, &topic, 1);
    blob_put(b, &kl, 4);
    blob_put(b, key, kl);
    blob_put(b, &vl, 4);
    blob_put(b, v->data, vl);
}

static void encode_rows(worker *w, blob *b, codec_kind kind, const int64_t *ids, const float *rows,
                        size_t n, uint64_t version) {
    int k = live_k(w->lv);
    char key[32], err[UL_ERRSTR_SIZE];
    for (size_t i = 0; i < n; i++) {
        const float *row = rows + i * (size_t)(1 + k);
        /* Item biases carry the global mean, so a reader of the factors topic
         * predicts b_u + b_i' + p.q without knowing mu (docs/stream.md). */
        float bias = kind == CODEC_KIND_ITEM ? row[0] + live_global_mean(w->lv) : row[0];
        codec_factor f = {(int64_t)version, kind, ids[i], (float *)(row + 1), k, bias};
        if (codec_encode_factor(w->codec, &f, &w->buf, err, sizeof(err)) != CODEC_OK) {
            log_error(w->log, "worker", "factor row %" PRId64 " not published: %s", ids[i], err);
            continue;
        }
        blob_record(b, 0, key, codec_key_factor(kind, ids[i], key, sizeof(key)), &w->buf);
    }
}

/* Every message of a cycle (changed rows, then receipts) as one blob. */
static int encode_cycle(worker *w, const live_cycle *c, blob *b) {
    char key[32], err[UL_ERRSTR_SIZE];
    encode_rows(w, b, CODEC_KIND_USER, c->user_ids, c->user_rows, c->n_users, c->version);
    encode_rows(w, b, CODEC_KIND_ITEM, c->item_ids, c->item_rows, c->n_items, c->version);
    for (size_t i = 0; i < c->n_receipts; i++) {
        const live_receipt *r = &c->receipts[i];
        codec_receipt rc;
        memset(&rc, 0, sizeof(rc));
        snprintf(rc.request_id, sizeof(rc.request_id), "%s", r->request_id);
        rc.user_id = r->user;
        rc.forgotten = r->forgotten;
        rc.model_version = (int64_t)c->version;
        rc.received_at = r->received_ms;
        rc.completed_at = r->completed_ms;
        if (codec_encode_receipt(w->codec, &rc, &w->buf, err, sizeof(err)) != CODEC_OK) {
            log_error(w->log, "worker", "receipt %s not published: %s", r->request_id, err);
            continue;
        }
        blob_record(b, 1, key, codec_key_user(r->user, key, sizeof(key)), &w->buf);
    }
    return b->oom ? UL_ERR_NOMEM : UL_OK;
}

/* Produce every record of an outbox entry; the tracker drops the entry once
 * all are acknowledged. */
static void publish_entry(worker *w, int32_t partition, outbox_entry *e) {
    char err[UL_ERRSTR_SIZE];
    tracker *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        set_fatal(w, "out of memory");
        return;
    }
    t->partition = partition;
    t->version = e->version;
    t->remaining = 1; /* held until every record is handed over */
    e->inflight = 1;
    size_t pos = 0;
    while (pos + 9 <= e->len) {
        uint8_t topic = e->blob[pos];
        uint32_t kl, vl;
        memcpy(&kl, e->blob + pos + 1, 4);
        const unsigned char *key = e->blob + pos + 5;
        memcpy(&vl, key + kl, 4);
        const unsigned char *val = key + kl + 4;
        pos += 9 + (size_t)kl + vl;
        const char *name = topic == 0 ? w->cfg->topic_factors : w->cfg->topic_receipts;
        t->remaining++;
        if (kafka_produce(w->producer, name, RD_KAFKA_PARTITION_UA, key, kl, val, vl, t, FLUSH_MS,
                          err, sizeof(err)) != UL_OK) {
            log_error(w->log, "worker", "%s", err);
            w->stats.produce_failures++;
            t->failed = 1;
            tracker_release(w, t);
        }
    }
    tracker_release(w, t);
}

/* A republished outbox row may be older than one published since: mark
 * its rows so that the next periodic publish puts the current ones last. */
static void mark_entry_rows(worker *w, const outbox_entry *e) {
    size_t pos = 0;
    while (pos + 9 <= e->len) {
        uint32_t kl, vl;
        memcpy(&kl, e->blob + pos + 1, 4);
        if (pos + 9 + (size_t)kl > e->len)
            break; /* cannot happen: we wrote the blob */
        memcpy(&vl, e->blob + pos + 5 + kl, 4);
        const char *key = (const char *)e->blob + pos + 5;
        if (e->blob[pos] == 0 && kl > 2 && kl < 32 && key[1] == ':') {
            char id[32];
            memcpy(id, key + 2, kl - 2);
            id[kl - 2] = '\0';
            live_mark_row(w->lv, key[0] == 'i' ? LIVE_ITEM : LIVE_USER, strtoll(id, NULL, 10));
        }
        pos += 9 + (size_t)kl + vl;
    }
}

static void publish_outboxes(worker *w) {
    for (int32_t p = 0; p < w->n_parts && !w->fatal; p++) {
        shard *s = live_shard(w->lv, p);
        for (size_t i = 0; s && i < s->n_outbox; i++)
            if (!s->outbox[i].inflight) {
                log_info(w->log, "worker",
                         "publishing the outbox of partition %d version %" PRIu64
                         " again (left by a previous owner or a failed delivery)",
                         (int)p, s->outbox[i].version);
                publish_entry(w, p, &s->outbox[i]);
                mark_entry_rows(w, &s->outbox[i]);
            }
    }
}

/* One periodically published row (live_row_fn): best effort, the worker as
 * the message opaque (see delivery_cb). */
static void publish_row(void *opaque, int kind, int64_t id, const float *row, uint64_t version) {
    worker *w = opaque;
    int k = live_k(w->lv);
    char key[32], err[UL_ERRSTR_SIZE];
    codec_kind ck = kind == LIVE_ITEM ? CODEC_KIND_ITEM : CODEC_KIND_USER;
    float bias = ck == CODEC_KIND_ITEM ? row[0] + live_global_mean(w->lv) : row[0];
    codec_factor f = {(int64_t)version, ck, id, (float *)(row + 1), k, bias};
    if (codec_encode_factor(w->codec, &f, &w->buf, err, sizeof(err)) != CODEC_OK) {
        log_error(w->log, "worker", "factor row %" PRId64 " not published: %s", id, err);
        return;
    }
    int kl = codec_key_factor(ck, id, key, sizeof(key));
    if (kafka_produce(w->producer, w->cfg->topic_factors, RD_KAFKA_PARTITION_UA, key, (size_t)kl,
                      w->buf.data, w->buf.len, w, FLUSH_MS, err, sizeof(err)) != UL_OK) {
        log_error(w->log, "worker", "%s", err);
        w->stats.produce_failures++;
        w->republish = 1;
        return;
    }
    w->stats.rows_published++;
}

/* Publish every row marked since the last time (docs/stream.md). */
static void publish_changed(worker *w) {
    if (w->republish) {
        w->republish = 0;
        log_warn(w->log, "worker", "a factor row was not delivered: publishing every owned row");
        for (int32_t p = 0; p < w->n_parts; p++)
            live_mark_partition(w->lv, p);
    }
    size_t n = live_publish_marked(w->lv, publish_row, w);
    if (n > 0)
        log_debug(w->log, "worker", "published %zu changed factor rows to %s", n,
                  w->cfg->topic_factors);
}

static void log_cycle(worker *w, const live_cycle *c) {
    log_info(w->log, "worker",
             "unlearning cycle on partition %d: %zu requests, %zu ratings forgotten, %zu user "
             "and %zu item rows changed, %s %.3f s",
             (int)c->partition, c->n_receipts, c->n_forgotten, c->n_users, c->n_items,
             w->cfg->method, c->unlearn_seconds);
    for (size_t i = 0; i < c->n_receipts; i++) {
        const live_receipt *r = &c->receipts[i];
        log_info(w->log, "worker",
                 "forget request %s for user %" PRId64 " done: %d ratings forgotten, partition "
                 "%d version %" PRIu64 ", %" PRId64 " ms after receipt",
                 r->request_id, r->user, (int)r->forgotten, (int)c->partition, c->version,
                 r->completed_ms - r->received_ms);
    }
}

static void run_cycles(worker *w) {
    char err[UL_ERRSTR_SIZE];
    for (int32_t p = 0; p < w->n_parts && !w->fatal; p++) {
        shard *s = live_shard(w->lv, p);
        if (s == NULL || s->n_pending == 0)
            continue;
        live_cycle c;
        metrics_heartbeat(w->metrics);
        int64_t started_ms = mono_ms();
        int rc = live_forget_cycle(w->lv, s, (size_t)w->cfg->cycle_max_batch, wall_ms(), &c, err,
                                   sizeof(err));
        if (rc != UL_OK) {
            log_error(w->log, "worker",
                      "unlearning cycle of partition %d failed (requests stay buffered): %s",
                      (int)p, err);
            continue;
        }
        if (c.n_receipts > 0) {
            /* The messages go into the outbox of the same checkpoint as the
             * result: published after it is durable, and again after a
             * crash until Kafka acknowledged them. */
            blob b = {0};
            if (encode_cycle(w, &c, &b) != UL_OK ||
                shard_outbox_add(s, c.version, b.p, b.len) != 0) {
                free(b.p);
                set_fatal(w, "out of memory encoding an unlearning cycle");
            } else if (checkpoint_shard(w, s) == 0) {
                w->stats.cycles++;
                w->stats.forget_completed += c.n_receipts;
                w->stats.ratings_forgotten += c.n_forgotten;
                log_cycle(w, &c);
                if (w->fault_exit_after_cycle)
                    _exit(99); /* like a crash right after the checkpoint */
                publish_entry(w, p, &s->outbox[s->n_outbox - 1]);
                metrics_add_forget_completed(w->metrics, c.n_receipts);
                metrics_observe_cycle_seconds(w->metrics,
                                              (double)(mono_ms() - started_ms) / 1000.0);
            }
        }
        live_cycle_free(&c);
    }
}

/* ---- setup -------------------------------------------------------------- */

static int topic_partitions(rd_kafka_t *rk, const char *topic, int32_t *n, char *errstr,
                            size_t errstr_size) {
    int64_t deadline = mono_ms() + METADATA_WAIT_MS;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const char *why = "not found";
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
            *n = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
            rd_kafka_topic_destroy(rkt);
            return UL_OK;
        }
        why = e ? rd_kafka_err2str(e)
                : (md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not found");
        if (md)
            rd_kafka_metadata_destroy(md);
        if (mono_ms() >= deadline)
            break;
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    ul_set_err(errstr, errstr_size,
               "topic %s is not available (%s): create it, or start the local broker with "
               "'unlearnd broker'",
               topic, why);
    return UL_ERR_IO;
}

/* Fetch the output topics' metadata into the producer's cache now:
 * librdkafka 2.0.2 otherwise delays the first message to a topic it has not
 * seen by up to 1 s (fixed upstream in 2.10.1, #5032), which would add a
 * second to the first forget receipts. Failures only cost that second. */
static void warm_output_topics(worker *w) {
    const char *topics[] = {w->cfg->topic_factors, w->cfg->topic_receipts,
                            w->cfg->topic_dead_letter};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(w->producer, topics[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rkt && rd_kafka_metadata(w->producer, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
    }
}

static rd_kafka_t *make_client(worker *w, kafka_role role, int group, char *errstr,
                               size_t errstr_size) {
    char kerr[512];
    rd_kafka_conf_t *conf = kafka_conf_new(w->cfg, role, &w->log, errstr, errstr_size);
    if (conf == NULL)
        return NULL;
    if (role == KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    if (role == KAFKA_CONSUMER && w->http) {
        char ival[32];
        rd_kafka_conf_set_stats_cb(conf, stats_cb);
        if (config_value(w->cfg, "kafka.statistics.interval.ms", 1, ival, sizeof(ival)) != UL_OK &&
            rd_kafka_conf_set(conf, "statistics.interval.ms", "15000", kerr, sizeof(kerr)) !=
                RD_KAFKA_CONF_OK)
            log_warn(w->log, "kafka", "statistics.interval.ms: %s", kerr);
    }
    if (group) {
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    }
    char cur[32];
    if (role == KAFKA_PRODUCER &&
        config_value(w->cfg, "kafka.enable.idempotence", 1, cur, sizeof(cur)) != UL_OK &&
        rd_kafka_conf_set(conf, "enable.idempotence", "true", kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK) {
        /* Producer retries must not duplicate receipts and factor rows. */
        rd_kafka_conf_destroy(conf);
        ul_set_err(errstr, errstr_size, "enable.idempotence: %s", kerr);
        return NULL;
    }
    if (role == KAFKA_CONSUMER && !group &&
        config_value(w->cfg, "kafka.fetch.wait.max.ms", 1, cur, sizeof(cur)) != UL_OK &&
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "20", kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK) {
        /* Forget requests are rare and latency-sensitive: do not let an idle
         * fetch hold them for librdkafka's default 500 ms. */
        rd_kafka_conf_destroy(conf);
        ul_set_err(errstr, errstr_size, "fetch.wait.max.ms: %s", kerr);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(role == KAFKA_PRODUCER ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER,
                                  conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        ul_set_err(errstr, errstr_size, "cannot create the Kafka client: %s", kerr);
        return NULL;
    }
    if (role == KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

codec *worker_codec_new(const ul_config *cfg, char *errstr, size_t errstr_size) {
    codec_opts o;
    codec_opts_init(&o);
    o.schema_id_rating = (int32_t)cfg->schema_id_rating;
    o.schema_id_forget = (int32_t)cfg->schema_id_forget;
    o.schema_id_factor = (int32_t)cfg->schema_id_factor;
    o.schema_id_receipt = (int32_t)cfg->schema_id_receipt;
    o.rating_min = (float)cfg->rating_min;
    o.rating_max = (float)cfg->rating_max;
    o.max_forget_items = (size_t)cfg->forget_max_items;
    return codec_new(&o, errstr, errstr_size);
}

void worker_store_opts(const ul_config *cfg, store_opts *so) {
    store_opts_init(so);
    so->host = cfg->redis_host;
    so->port = (int)cfg->redis_port;
    so->shards = cfg->redis_shards;
    so->user = cfg->redis_user;
    so->password = cfg->redis_password;
    so->db = (int)cfg->redis_db;
    so->timeout_ms = (int)cfg->redis_timeout_ms;
    so->ratings_topic = cfg->topic_ratings;
    so->forget_topic = cfg->topic_forget;
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
        so.shards = NULL;
        log_info(w->log, "redis",
                 "no redis.host configured: started a private redis-server on %s:%d (state is "
                 "lost when the worker exits)",
                 so.host, so.port);
    }
    w->st = store_connect(&so, errstr, errstr_size);
    if (w->st == NULL)
        return UL_ERR_IO;
    metrics_set_redis_connected(w->metrics, 1);
    for (int i = 0; i < store_shard_count(w->st); i++)
        log_info(w->log, "redis", "connected to shard %d of %d: %s", i, store_shard_count(w->st),
                 store_shard_where(w->st, i));
    return UL_OK;
}

static int open_live(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    live_opts lo;
    live_opts_init(&lo);
    lo.k = (int)cfg->model_k;
    lo.lr = (float)cfg->learning_rate;
    lo.reg = (float)cfg->reg;
    lo.retention = (uint32_t)cfg->retention_per_user;
    lo.rating_min = (float)cfg->rating_min;
    lo.rating_max = (float)cfg->rating_max;
    lo.method = cfg->method;
    w->lv = live_new(&lo, w->st, w->n_parts, errstr, errstr_size);
    if (w->lv == NULL)
        return UL_ERR_STATE;
    if (live_k(w->lv) != (int)cfg->model_k)
        log_info(w->log, "worker", "Redis holds a model with k=%d: using it (model.k=%ld ignored)",
                 live_k(w->lv), cfg->model_k);
    return UL_OK;
}

worker *worker_new(const ul_config *cfg, ul_log *lg, char *errstr, size_t errstr_size) {
    worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    w->log = lg;
    w->cfg = cfg;
    /* Fault injection for the integration tests only (not a config option). */
    const char *fault = getenv("UNLEARND_FAULT");
    w->fault_exit_after_cycle = fault && strcmp(fault, "exit-after-cycle-checkpoint") == 0;
    if ((w->metrics = metrics_new()) == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (cfg->metrics_port > 0) {
        http_opts ho = {cfg->metrics_bind, (int)cfg->metrics_port,
                        (double)cfg->metrics_live_timeout_ms / 1000.0};
        if ((w->http = http_server_start(w->metrics, lg, &ho, errstr, errstr_size)) == NULL)
            goto fail;
    }
    /* Without stored offsets a partition starts at the beginning (its state is
     * empty, so everything must be applied), unless the user explicitly asked
     * for kafka.auto.offset.reset=latest (e.g. after `unlearnd import`).
     * Kafka's committed offsets are never used: they may be ahead of Redis. */
    char reset[32];
    w->start_offset = RD_KAFKA_OFFSET_BEGINNING;
    if (config_value(cfg, "kafka.auto.offset.reset", 1, reset, sizeof(reset)) == UL_OK &&
        (strcmp(reset, "latest") == 0 || strcmp(reset, "largest") == 0 ||
         strcmp(reset, "end") == 0))
        w->start_offset = RD_KAFKA_OFFSET_END;
    if ((w->codec = worker_codec_new(cfg, errstr, errstr_size)) == NULL)
        goto fail;
    if (open_store(w, errstr, errstr_size) != UL_OK)
        goto fail;
    if ((w->producer = make_client(w, KAFKA_PRODUCER, 0, errstr, errstr_size)) == NULL ||
        (w->consumer = make_client(w, KAFKA_CONSUMER, 1, errstr, errstr_size)) == NULL ||
        (w->fconsumer = make_client(w, KAFKA_CONSUMER, 0, errstr, errstr_size)) == NULL)
        goto fail;
    int32_t nr = 0, nf = 0;
    if (topic_partitions(w->consumer, cfg->topic_ratings, &nr, errstr, errstr_size) != UL_OK ||
        topic_partitions(w->consumer, cfg->topic_forget, &nf, errstr, errstr_size) != UL_OK)
        goto fail;
    if (nr != nf) {
        ul_set_err(errstr, errstr_size,
                   "%s has %d partitions but %s has %d: they must match so that a user's "
                   "ratings and forget requests share a partition",
                   cfg->topic_ratings, (int)nr, cfg->topic_forget, (int)nf);
        goto fail;
    }
    metrics_set_kafka_connected(w->metrics, 1); /* the brokers answered metadata requests */
    w->n_parts = nr;
    warm_output_topics(w);
    w->saved_off = calloc((size_t)nr, sizeof(*w->saved_off));
    if (w->saved_off == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (open_live(w, errstr, errstr_size) != UL_OK)
        goto fail;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, cfg->topic_ratings, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(w->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        ul_set_err(errstr, errstr_size, "cannot subscribe to %s: %s", cfg->topic_ratings,
                   rd_kafka_err2str(e));
        goto fail;
    }
    log_info(w->log, "worker",
             "consuming %s and %s (%d partitions) in group %s; method %s, k=%d, cycle every %ld "
             "ms, checkpoint every %ld ms, changed rows published every %ld ms",
             cfg->topic_ratings, cfg->topic_forget, (int)nr, cfg->kafka_group_id, cfg->method,
             live_k(w->lv), cfg->cycle_interval_ms, cfg->checkpoint_interval_ms,
             cfg->publish_interval_ms);
    return w;
fail:
    worker_destroy(w);
    return NULL;
}

/* ---- loop --------------------------------------------------------------- */

static int poll_batch(worker *w, rd_kafka_t *rk, int timeout_ms, int forget) {
    int n = 0;
    for (; n < POLL_BATCH && !w->fatal; n++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, n == 0 ? timeout_ms : 0);
        if (rkm == NULL)
            break;
        if (rkm->err) {
            if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn(w->log, "kafka", "consumer: %s", rd_kafka_message_errstr(rkm));
        } else if (forget) {
            on_forget(w, rkm);
        } else {
            on_rating(w, rkm);
        }
        rd_kafka_message_destroy(rkm);
    }
    return n;
}

static void log_stats(worker *w, int64_t elapsed_ms, uint64_t applied_before) {
    double rate = elapsed_ms > 0 ? (double)(w->stats.ratings_applied - applied_before) * 1000.0 /
                                       (double)elapsed_ms
                                 : 0.0;
    log_info(w->log, "worker",
             "%" PRIu64 " ratings applied (%.0f/s), forget requests %" PRIu64 " received / %" PRIu64
             " done, %" PRIu64 " dead-lettered, %" PRIu64 " checkpoints, %" PRIu64
             " factor rows published",
             w->stats.ratings_applied, rate, w->stats.forget_received, w->stats.forget_completed,
             w->stats.dead_letters, w->stats.checkpoints, w->stats.rows_published);
}

static void shutdown_worker(worker *w) {
    log_info(w->log, "worker", "stopping: final checkpoint, leaving the group");
    publish_changed(w);
    /* Deliver what is in flight first, so the final checkpoint can drop the
     * acknowledged outbox entries (no duplicates after a clean stop). */
    if (rd_kafka_flush(w->producer, FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_warn(w->log, "kafka", "%d messages still in flight; they stay in the outbox",
                 rd_kafka_outq_len(w->producer));
    process_done(w);
    checkpoint_all(w);
    /* Leaves the group; the revoke callback checkpoints again (a no-op when
     * nothing changed) and drops the shards. */
    rd_kafka_consumer_close(w->consumer);
    rd_kafka_consumer_close(w->fconsumer);
    if (rd_kafka_flush(w->producer, FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        log_error(w->log, "kafka", "%d messages not delivered at shutdown",
                  rd_kafka_outq_len(w->producer));
    log_stats(w, 0, w->stats.ratings_applied);
}

int worker_run(worker *w, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size) {
    int64_t now = mono_ms();
    int64_t next_ckpt = now + w->cfg->checkpoint_interval_ms;
    int64_t next_cycle = now + w->cfg->cycle_interval_ms;
    int64_t next_refresh = now + w->cfg->refresh_interval_ms, next_stats = now + STATS_EVERY_MS;
    int64_t next_publish = now + w->cfg->publish_interval_ms;
    uint64_t applied_at_stats = 0;
    char err[UL_ERRSTR_SIZE];
    while (!*stop && !w->fatal) {
        metrics_heartbeat(w->metrics);
        int n = poll_batch(w, w->consumer, 50, 0);
        n += poll_batch(w, w->fconsumer, 0, 1);
        rd_kafka_poll(w->producer, 0);
        process_done(w);
        now = mono_ms();
        if (now >= next_cycle) {
            publish_outboxes(w); /* left by a previous owner, or failed */
            run_cycles(w);
            next_cycle = now + w->cfg->cycle_interval_ms;
        }
        if (now >= next_publish) {
            publish_changed(w);
            next_publish = now + w->cfg->publish_interval_ms;
        }
        if (now >= next_ckpt) {
            checkpoint_all(w);
            next_ckpt = now + w->cfg->checkpoint_interval_ms;
        }
        if (now >= next_refresh) {
            int owned = 0;
            for (int32_t p = 0; p < w->n_parts; p++)
                owned += live_shard(w->lv, p) != NULL;
            if (owned < w->n_parts && live_refresh(w->lv, err, sizeof(err)) != UL_OK)
                log_warn(w->log, "worker", "refreshing other partitions' item deltas: %s", err);
            next_refresh = now + w->cfg->refresh_interval_ms;
        }
        if (now >= next_stats) {
            log_stats(w, now - (next_stats - STATS_EVERY_MS), applied_at_stats);
            applied_at_stats = w->stats.ratings_applied;
            next_stats = now + STATS_EVERY_MS;
        }
        (void)n;
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

void worker_get_stats(const worker *w, worker_stats *out) {
    *out = w->stats;
}

void worker_destroy(worker *w) {
    if (w == NULL)
        return;
    http_server_stop(w->http); /* first: it reads w->metrics */
    if (w->consumer)
        rd_kafka_destroy(w->consumer);
    if (w->fconsumer)
        rd_kafka_destroy(w->fconsumer);
    if (w->producer)
        rd_kafka_destroy(w->producer);
    live_destroy(w->lv);
    store_destroy(w->st);
    redis_local_stop(w->rl);
    codec_destroy(w->codec);
    codec_buf_free(&w->buf);
    free(w->saved_off);
    while (w->done) {
        tracker *t = w->done;
        w->done = t->next;
        free(t);
    }
    metrics_destroy(w->metrics);
    free(w);
}
