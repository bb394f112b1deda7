/* publish.c: the worker's producer, the outbox record format, delivery
 * tracking, periodic rows and dead letters (see publish.h).
 *
 * DESIGN
 * - A message's opaque says what its delivery report settles: the outbox
 *   entry's tracker, the publisher itself for a periodically published row,
 *   or NULL for a dead letter (nothing to settle).
 * - A tracker counts the messages of one entry without a report, plus one
 *   while the entry is still being produced, so an entry whose messages are
 *   all acknowledged before the last one is queued is not dropped early.
 *   Trackers that reach 0 go to the `done` list inside librdkafka's callback
 *   and are settled by publish_poll, outside it.
 * - Every record kind says its topic and which row (if any) it carries
 *   (`kinds`): a new kind is a row there. */
#include "publish.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "rows.h"
#include "ul_err.h"

#define PRODUCE_BLOCK_MS 10000 /* how long a full producer queue may hold a message */

typedef enum out_topic { OUT_FACTORS = 0, OUT_RECEIPTS = 1 } out_topic;

typedef struct kind_def {
    int has_id;
    out_topic topic;
    int marks;     /* the record is a row of the live model: mark it */
    rows_kind row; /* which kind of row, when `marks` */
} kind_def;

static const kind_def kinds[PUBLISH_N_KINDS] = {
    [PUBLISH_OLD_FACTOR] = {0, OUT_FACTORS, 0, ROWS_USER},
    [PUBLISH_OLD_RECEIPT] = {0, OUT_RECEIPTS, 0, ROWS_USER},
    [PUBLISH_USER_ROW] = {1, OUT_FACTORS, 1, ROWS_USER},
    [PUBLISH_ITEM_ROW] = {1, OUT_FACTORS, 1, ROWS_ITEM},
    [PUBLISH_RECEIPT] = {1, OUT_RECEIPTS, 0, ROWS_USER},
};

/* ---- the record format -------------------------------------------------- */

void publish_record_put(ul_buf *b, const publish_record *r) {
    uint8_t kind = (uint8_t)r->kind;
    uint32_t kl = (uint32_t)r->key_len, vl = (uint32_t)r->value_len;
    ul_buf_put(b, &kind, 1);
    if (kinds[r->kind].has_id)
        ul_buf_put(b, &r->id, 8);
    ul_buf_put(b, &kl, 4);
    ul_buf_put(b, r->key, kl);
    ul_buf_put(b, &vl, 4);
    ul_buf_put(b, r->value, vl);
}

/* n bytes at *pos into dst (may be NULL: skip them); -1 when fewer are left. */
static int take(const unsigned char *entry, size_t len, size_t *pos, void *dst, size_t n) {
    if (len - *pos < n)
        return -1;
    if (dst)
        memcpy(dst, entry + *pos, n);
    *pos += n;
    return 0;
}

int publish_record_next(const unsigned char *entry, size_t len, size_t *pos, publish_record *r) {
    if (*pos >= len)
        return 0;
    uint8_t kind = entry[(*pos)++];
    uint32_t kl = 0, vl = 0;
    if (kind >= PUBLISH_N_KINDS)
        return -1;
    r->kind = (publish_kind)kind;
    r->id = -1;
    if ((kinds[kind].has_id && take(entry, len, pos, &r->id, 8) != 0) ||
        take(entry, len, pos, &kl, 4) != 0)
        return -1;
    r->key = entry + *pos;
    r->key_len = kl;
    if (take(entry, len, pos, NULL, kl) != 0 || take(entry, len, pos, &vl, 4) != 0)
        return -1;
    r->value = entry + *pos;
    r->value_len = vl;
    return take(entry, len, pos, NULL, vl) == 0 ? 1 : -1;
}

/* ---- the publisher ------------------------------------------------------ */

/* Delivery bookkeeping of one outbox entry being published. */
typedef struct tracker {
    int32_t partition;
    uint64_t version;
    int remaining; /* messages without a delivery report (+1 while still producing) */
    int failed;
    struct tracker *next;
} tracker;

struct publisher {
    ul_log *log; /* first: the producer's opaque (log_kafka_conf) */
    metrics *metrics;
    const ul_config *cfg;
    const codec *codec;
    live *lv;
    rd_kafka_t *producer;
    codec_buf buf; /* the message being encoded */
    tracker *done; /* entries whose messages all got a delivery report */
    int republish; /* a periodic row was not delivered: publish every owned row */
};

static const char *topic_of(const publisher *p, publish_kind kind) {
    return kinds[kind].topic == OUT_FACTORS ? p->cfg->topic_factors : p->cfg->topic_receipts;
}

static void tracker_release(publisher *p, tracker *t) {
    if (--t->remaining > 0)
        return;
    t->next = p->done; /* settled by publish_poll, outside librdkafka's callback */
    p->done = t;
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    (void)rk;
    publisher *p = opaque;
    tracker *t = rkm->_private == (void *)p ? NULL : rkm->_private;
    if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_error(p->log, "kafka", "delivery to %s failed: %s",
                  rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "?", rd_kafka_err2str(rkm->err));
        if (t)
            t->failed = 1;
        if (rkm->_private == (void *)p)
            p->republish = 1; /* rare: the next interval publishes every owned row */
    }
    if (t)
        tracker_release(p, t);
}

static void producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    publisher *p = opaque;
    kafka_report_error(p->log, p->metrics, err, reason);
}

publisher *publish_new(const ul_config *cfg, ul_log *lg, metrics *m, const codec *c, live *lv,
                       char *errstr, size_t errstr_size) {
    kafka_hooks hooks = {.delivered = delivered, .error = producer_error};
    publisher *p = malloc(sizeof(*p));
    if (p)
        *p = (publisher){.log = lg, .metrics = m, .cfg = cfg, .codec = c, .lv = lv};
    if (p == NULL || (p->producer = kafka_client_new(cfg, KAFKA_OUTPUT, &p->log, &hooks, errstr,
                                                     errstr_size)) == NULL) {
        if (p == NULL)
            ul_set_err(errstr, errstr_size, "out of memory");
        free(p);
        return NULL;
    }
    kafka_topic_warm(p->producer, cfg->topic_factors);
    kafka_topic_warm(p->producer, cfg->topic_receipts);
    kafka_topic_warm(p->producer, cfg->topic_dead_letter);
    return p;
}

void publish_destroy(publisher *p) {
    if (p == NULL)
        return;
    if (p->producer)
        rd_kafka_destroy(p->producer);
    while (p->done) {
        tracker *t = p->done;
        p->done = t->next;
        free(t);
    }
    codec_buf_free(&p->buf);
    free(p);
}

/* The factor record of a row into p->buf, its key into key[32]. Returns
 * the key's length, or -1 (logged) when the row does not encode. */
static int encode_row(publisher *p, rows_kind kind, int64_t id, const float *row, uint64_t version,
                      char *key) {
    char err[UL_ERRSTR_SIZE];
    codec_kind ck = kind == ROWS_ITEM ? CODEC_KIND_ITEM : CODEC_KIND_USER;
    /* Item biases carry the global mean, so a reader of the factors topic
     * predicts b_u + b_i' + p.q without knowing mu (docs/stream.md). */
    float bias = kind == ROWS_ITEM ? row[ROWS_BIAS] + live_global_mean(p->lv) : row[ROWS_BIAS];
    codec_factor f = {(int64_t)version, ck, id, (float *)(row + ROWS_FACTORS), live_k(p->lv), bias};
    if (codec_encode_factor(p->codec, &f, &p->buf, err, sizeof(err)) != CODEC_OK) {
        log_error(p->log, "worker", "factor row %" PRId64 " not published: %s", id, err);
        return -1;
    }
    return codec_key_factor(ck, id, key, 32);
}

static void put_rows(publisher *p, ul_buf *b, rows_kind kind, const int64_t *ids, const float *rows,
                     size_t n, uint64_t version) {
    size_t vdim = (size_t)rows_vector_dim(live_k(p->lv));
    char key[32];
    for (size_t i = 0; i < n; i++) {
        int kl = encode_row(p, kind, ids[i], rows + i * vdim, version, key);
        if (kl < 0)
            continue;
        publish_record r = {kind == ROWS_ITEM ? PUBLISH_ITEM_ROW : PUBLISH_USER_ROW,
                            ids[i],
                            key,
                            (size_t)kl,
                            p->buf.data,
                            p->buf.len};
        publish_record_put(b, &r);
    }
}

static void put_receipts(publisher *p, ul_buf *b, const forget_cycle *c) {
    char key[32], err[UL_ERRSTR_SIZE];
    for (size_t i = 0; i < c->n_receipts; i++) {
        const codec_receipt *rc = &c->receipts[i];
        if (codec_encode_receipt(p->codec, rc, &p->buf, err, sizeof(err)) != CODEC_OK) {
            log_error(p->log, "worker", "receipt %s not published: %s", rc->request_id, err);
            continue;
        }
        int kl = codec_key_user(rc->user_id, key, sizeof(key));
        publish_record r = {PUBLISH_RECEIPT, rc->user_id, key, (size_t)kl, p->buf.data, p->buf.len};
        publish_record_put(b, &r);
    }
}

int publish_outbox_add(publisher *p, shard *s, const forget_cycle *c, char *errstr,
                       size_t errstr_size) {
    ul_buf b = {0};
    put_rows(p, &b, ROWS_USER, c->user_ids, c->user_rows, c->n_users, c->version);
    put_rows(p, &b, ROWS_ITEM, c->item_ids, c->item_rows, c->n_items, c->version);
    put_receipts(p, &b, c);
    size_t len = 0;
    unsigned char *entry = b.oom ? NULL : ul_buf_take(&b, &len);
    if (entry == NULL || shard_outbox_add(s, c->version, entry, len) != 0) {
        free(entry);
        ul_buf_free(&b);
        ul_set_err(errstr, errstr_size, "out of memory encoding an unlearning cycle");
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

int publish_outbox_entry(publisher *p, int32_t partition, outbox_entry *e, char *errstr,
                         size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    tracker *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    t->partition = partition;
    t->version = e->version;
    t->remaining = 1; /* held until every record is handed over */
    e->inflight = 1;
    publish_record r;
    size_t pos = 0;
    int more;
    while ((more = publish_record_next(e->blob, e->len, &pos, &r)) > 0) {
        t->remaining++;
        if (kafka_produce(p->producer, topic_of(p, r.kind), RD_KAFKA_PARTITION_UA, r.key, r.key_len,
                          r.value, r.value_len, t, PRODUCE_BLOCK_MS, err, sizeof(err)) != UL_OK) {
            log_error(p->log, "worker", "%s", err);
            t->failed = 1;
            tracker_release(p, t);
        }
    }
    if (more < 0)
        log_error(p->log, "worker",
                  "the outbox entry of partition %d version %" PRIu64
                  " is malformed after byte %zu: the rest is not published",
                  (int)partition, e->version, pos);
    tracker_release(p, t);
    return UL_OK;
}

/* Mark the rows an outbox entry carries (see publish_outboxes). */
static void mark_rows(publisher *p, const outbox_entry *e) {
    publish_record r;
    size_t pos = 0;
    while (publish_record_next(e->blob, e->len, &pos, &r) > 0)
        if (kinds[r.kind].marks)
            live_mark_row(p->lv, kinds[r.kind].row, r.id);
}

int publish_outboxes(publisher *p, char *errstr, size_t errstr_size) {
    for (int32_t part = 0; part < live_partitions(p->lv); part++) {
        shard *s = live_shard(p->lv, part);
        for (size_t i = 0; s && i < s->n_outbox; i++) {
            if (s->outbox[i].inflight || s->outbox[i].unsaved) /* never before its checkpoint */
                continue;
            log_info(p->log, "worker",
                     "publishing the outbox of partition %d version %" PRIu64
                     " again (left by a previous owner or a failed delivery)",
                     (int)part, s->outbox[i].version);
            int rc = publish_outbox_entry(p, part, &s->outbox[i], errstr, errstr_size);
            if (rc != UL_OK)
                return rc;
            mark_rows(p, &s->outbox[i]);
        }
    }
    return UL_OK;
}

/* One periodically published row (live_row_fn): best effort, the publisher
 * as the message opaque (see delivered). */
static void publish_row(void *opaque, rows_kind kind, int64_t id, const float *row,
                        uint64_t version) {
    publisher *p = opaque;
    char key[32], err[UL_ERRSTR_SIZE];
    int kl = encode_row(p, kind, id, row, version, key);
    if (kl < 0)
        return;
    if (kafka_produce(p->producer, p->cfg->topic_factors, RD_KAFKA_PARTITION_UA, key, (size_t)kl,
                      p->buf.data, p->buf.len, p, PRODUCE_BLOCK_MS, err, sizeof(err)) != UL_OK) {
        log_error(p->log, "worker", "%s", err);
        p->republish = 1;
        return;
    }
    metrics_add(p->metrics, METRICS_ROWS_PUBLISHED, 1);
}

void publish_changed(publisher *p) {
    if (p->republish) {
        p->republish = 0;
        log_warn(p->log, "worker", "a factor row was not delivered: publishing every owned row");
        for (int32_t part = 0; part < live_partitions(p->lv); part++)
            live_mark_partition(p->lv, part);
    }
    size_t n = live_publish_marked(p->lv, publish_row, p);
    if (n > 0)
        log_debug(p->log, "worker", "published %zu changed factor rows to %s", n,
                  p->cfg->topic_factors);
}

void publish_dead_letter(publisher *p, const rd_kafka_message_t *rkm, const char *reason,
                         const char *why) {
    char err[UL_ERRSTR_SIZE];
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    if (kafka_produce_dead_letter(p->producer, p->cfg->topic_dead_letter, rkm, reason, why, err,
                                  sizeof(err)) != UL_OK)
        log_error(p->log, "worker", "%s", err);
    metrics_inc_dead_letter(p->metrics, topic, reason);
    log_warn(p->log, "worker", "dead-lettered %s [%d] @%" PRId64 ": %s: %s", topic,
             (int)rkm->partition, rkm->offset, reason, why);
}

int publish_poll(publisher *p, char *errstr, size_t errstr_size) {
    rd_kafka_poll(p->producer, 0);
    int rc = UL_OK;
    while (p->done) {
        tracker *t = p->done;
        p->done = t->next;
        shard *s = live_shard(p->lv, t->partition);
        for (size_t i = 0; s && i < s->n_outbox; i++) {
            if (s->outbox[i].version != t->version)
                continue;
            if (t->failed)
                s->outbox[i].inflight = 0;
            else if (shard_outbox_remove(s, t->version) != 0)
                rc = UL_ERR_NOMEM;
            break;
        }
        free(t);
    }
    if (rc != UL_OK)
        ul_set_err(errstr, errstr_size, "out of memory");
    return rc;
}

int publish_flush(publisher *p, int timeout_ms) {
    if (rd_kafka_flush(p->producer, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return rd_kafka_outq_len(p->producer);
}
