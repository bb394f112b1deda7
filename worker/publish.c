/* publish.c: the worker's producer, the outbox record format, delivery
 * tracking, periodic rows and dead letters (see publish.h).
 *
 * DESIGN
 * - A message's opaque says what its delivery report settles: the outbox
 *   entry's tracker, the publisher itself for a periodically published row,
 *   or the dead letter (trackers and dead letters start with their
 *   msg_kind).
 * - A dead letter is kept (a copy of what it carries) until Kafka
 *   acknowledged it, and produced again after a failure, its value halved
 *   each time the broker finds it too large. While any of a partition's dead
 *   letters is unacknowledged the worker does not checkpoint that partition
 *   (publish_dead_letters_pending), so its offsets never move past a record
 *   that is neither applied nor durably dead-lettered; a crash replays it.
 * - Failures are counted by (what, topic, reason) and logged as one line
 *   each at most every FAILURE_LOG_MS: a broker outage that times out
 *   thousands of messages gives a few lines, not one per message.
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
#include "ul_clock.h"
#include "ul_err.h"

#define PRODUCE_BLOCK_MS 10000 /* how long a full producer queue may hold a message */
#define FAILURE_LOG_MS 10000   /* at most one summary of failed messages this often */
#define MAX_FAILURE_KINDS 16   /* distinct (what, topic, reason) counted between summaries */
#define RETRY_FIRST_MS 500     /* a failed dead letter is produced again after this, */
#define RETRY_MAX_MS 10000     /* doubling up to this */

typedef enum out_topic { OUT_FACTORS = 0, OUT_RECEIPTS = 1, OUT_ITEM_UPDATES = 2 } out_topic;

typedef struct kind_def {
    int has_id;
    out_topic topic;
    int marks;     /* the record is a row of the live model: mark it */
    rows_kind row; /* which kind of row, when `marks` */
    int to_id;     /* produced to partition `id` (else partitioned by key) */
} kind_def;

static const kind_def kinds[PUBLISH_N_KINDS] = {
    [PUBLISH_OLD_FACTOR] = {0, OUT_FACTORS, 0, ROWS_USER, 0},
    [PUBLISH_OLD_RECEIPT] = {0, OUT_RECEIPTS, 0, ROWS_USER, 0},
    [PUBLISH_USER_ROW] = {1, OUT_FACTORS, 1, ROWS_USER, 0},
    [PUBLISH_ITEM_ROW] = {1, OUT_FACTORS, 1, ROWS_ITEM, 0},
    [PUBLISH_RECEIPT] = {1, OUT_RECEIPTS, 0, ROWS_USER, 0},
    [PUBLISH_ITEM_UPDATES] = {1, OUT_ITEM_UPDATES, 0, ROWS_ITEM, 1},
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

/* What a message's opaque points to, as its first member (see DESIGN). */
typedef enum msg_kind { MSG_ENTRY = 1, MSG_DEAD_LETTER = 2 } msg_kind;

/* What the messages are, for the failure summaries. */
typedef enum msg_what {
    WHAT_ROW = 0,
    WHAT_OUTBOX,
    WHAT_DEAD_LETTER,
    WHAT_ITEM_UPDATES,
    N_WHAT
} msg_what;

static const char *const what_names[N_WHAT] = {
    [WHAT_ROW] = "factor rows published periodically (every owned row is published again at the "
                 "next interval)",
    [WHAT_OUTBOX] = "records of unlearning cycles (their outbox entries stay in Redis and are "
                    "published again)",
    [WHAT_DEAD_LETTER] = "dead letters (produced again; their partitions are not checkpointed "
                         "past them meanwhile)",
    [WHAT_ITEM_UPDATES] = "best-effort item updates (never sent again: training and later "
                          "ratings carry the rows on)",
};

typedef struct failure_count {
    msg_what what;
    const char *topic; /* borrowed from the config */
    char why[160];
    uint64_t n;
} failure_count;

/* Delivery bookkeeping of one outbox entry being published. */
typedef struct tracker {
    msg_kind kind; /* MSG_ENTRY */
    int32_t partition;
    int delivery;     /* an exact-delivery entry (key = sequence), else a cycle's */
    uint64_t version; /* the entry's key */
    int remaining;    /* messages without a delivery report (+1 while still producing) */
    int failed;
    struct tracker *next;
} tracker;

/* A dead letter until Kafka acknowledged it (everything copied). */
typedef struct dead_letter {
    msg_kind kind; /* MSG_DEAD_LETTER */
    kafka_dead_letter dl;
    char *source_topic, *reason, *why; /* owned: dl's strings */
    void *bytes;                       /* owned: key then the kept prefix of the value */
    rd_kafka_headers_t *headers;       /* owned: the source record's */
    int inflight;                      /* produced, no delivery report yet */
    int delivered;                     /* acknowledged: count and free it */
    int64_t retry_at;                  /* failed: produce again from then */
    int retry_ms;
    struct dead_letter *next;
} dead_letter;

struct publisher {
    ul_log *log; /* first: the producer's opaque (log_kafka_conf) */
    metrics *metrics;
    const ul_config *cfg;
    const codec *codec;
    live *lv;
    rd_kafka_t *producer;
    codec_buf buf;        /* the message being encoded */
    tracker *done;        /* entries whose messages all got a delivery report */
    int republish;        /* a periodic row was not delivered: publish every owned row */
    dead_letter *dead;    /* dead letters not yet settled, newest first */
    int inflight[N_WHAT]; /* produced, no delivery report yet */
    failure_count failures[MAX_FAILURE_KINDS];
    size_t n_failures;
    int64_t next_failure_log; /* monotonic ms */
    int pushes;               /* the opaque of best-effort item updates (its address) */
};

static const char *topic_of(const publisher *p, publish_kind kind) {
    switch (kinds[kind].topic) {
    case OUT_FACTORS:
        return p->cfg->topic_factors;
    case OUT_RECEIPTS:
        return p->cfg->topic_receipts;
    default:
        return p->cfg->topic_item_updates;
    }
}

static void tracker_release(publisher *p, tracker *t) {
    if (--t->remaining > 0)
        return;
    t->next = p->done; /* settled by publish_poll, outside librdkafka's callback */
    p->done = t;
}

/* One more message of `what` to `topic` failed for `why`; summarised by
 * report_failures. */
static void count_failure(publisher *p, msg_what what, const char *topic, const char *why) {
    failure_count *f = NULL;
    for (size_t i = 0; i < p->n_failures && f == NULL; i++)
        if (p->failures[i].what == what && p->failures[i].topic == topic &&
            strcmp(p->failures[i].why, why) == 0)
            f = &p->failures[i];
    if (f == NULL && p->n_failures < MAX_FAILURE_KINDS) {
        f = &p->failures[p->n_failures++];
        *f = (failure_count){.what = what, .topic = topic};
        snprintf(f->why, sizeof(f->why), "%s", why);
    }
    if (f == NULL) /* full: counted with the last kind, whatever its reason */
        f = &p->failures[MAX_FAILURE_KINDS - 1];
    f->n++;
}

/* One line per (what, topic, reason) counted since the last report, at most
 * every FAILURE_LOG_MS (or now, when `force`). */
static void report_failures(publisher *p, int force) {
    int64_t now = ul_clock_mono_ms();
    if (p->n_failures == 0 || (!force && now < p->next_failure_log))
        return;
    for (size_t i = 0; i < p->n_failures; i++) {
        const failure_count *f = &p->failures[i];
        log_error(p->log, "kafka", "%" PRIu64 " %s to %s not delivered: %s", f->n,
                  what_names[f->what], f->topic, f->why);
    }
    p->n_failures = 0;
    p->next_failure_log = now + FAILURE_LOG_MS;
}

static void dead_letter_reported(publisher *p, dead_letter *d, rd_kafka_resp_err_t err) {
    d->inflight = 0;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        d->delivered = 1;
        return;
    }
    count_failure(p, WHAT_DEAD_LETTER, p->cfg->topic_dead_letter, rd_kafka_err2str(err));
    if ((err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
         err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
         err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE) &&
        d->dl.value_len > 0) {
        d->dl.value_len /= 2; /* the broker's limit is below the producer's */
        d->retry_at = 0;
        return;
    }
    d->retry_at = ul_clock_mono_ms() + d->retry_ms;
    d->retry_ms = d->retry_ms * 2 < RETRY_MAX_MS ? d->retry_ms * 2 : RETRY_MAX_MS;
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    (void)rk;
    publisher *p = opaque;
    const char *topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "?";
    if (rkm->_private == (void *)&p->pushes) { /* best effort: counted, never re-sent */
        p->inflight[WHAT_ITEM_UPDATES]--;
        if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR)
            count_failure(p, WHAT_ITEM_UPDATES, p->cfg->topic_item_updates,
                          rd_kafka_err2str(rkm->err));
        return;
    }
    const msg_kind *kind = rkm->_private == (void *)p ? NULL : rkm->_private;
    if (kind && *kind == MSG_DEAD_LETTER) {
        p->inflight[WHAT_DEAD_LETTER]--;
        dead_letter_reported(p, rkm->_private, rkm->err);
        return;
    }
    tracker *t = kind ? rkm->_private : NULL;
    p->inflight[t ? WHAT_OUTBOX : WHAT_ROW]--;
    if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* the config's own string: count_failure keys on the pointer */
        const char *cfg_topic = strcmp(topic, p->cfg->topic_receipts) == 0 ? p->cfg->topic_receipts
                                                                           : p->cfg->topic_factors;
        count_failure(p, t ? WHAT_OUTBOX : WHAT_ROW, cfg_topic, rd_kafka_err2str(rkm->err));
        if (t)
            t->failed = 1;
        else
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
    kafka_topic_warm(p->producer, cfg->topic_item_updates);
    return p;
}

static void dead_letter_free(dead_letter *d) {
    if (d->headers)
        rd_kafka_headers_destroy(d->headers);
    free(d->source_topic);
    free(d->reason);
    free(d->why);
    free(d->bytes);
    free(d);
}

void publish_destroy(publisher *p) {
    if (p == NULL)
        return;
    if (p->producer)
        rd_kafka_destroy(p->producer); /* serves no more reports: the dead letters are ours */
    report_failures(p, 1);
    while (p->dead) {
        dead_letter *d = p->dead;
        p->dead = d->next;
        dead_letter_free(d);
    }
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

/* Produce every record of entry e (a delivery entry when `delivery`). */
static int publish_entry(publisher *p, int32_t partition, int delivery, outbox_entry *e,
                         char *errstr, size_t errstr_size) {
    char err[UL_ERRSTR_SIZE];
    tracker *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    t->kind = MSG_ENTRY;
    t->partition = partition;
    t->delivery = delivery;
    t->version = e->version;
    t->remaining = 1; /* held until every record is handed over */
    e->inflight = 1;
    publish_record r;
    size_t pos = 0;
    int more;
    while ((more = publish_record_next(e->blob, e->len, &pos, &r)) > 0) {
        t->remaining++;
        int32_t part = kinds[r.kind].to_id ? (int32_t)r.id : RD_KAFKA_PARTITION_UA;
        if (kafka_produce(p->producer, topic_of(p, r.kind), part, r.key, r.key_len, r.value,
                          r.value_len, t, PRODUCE_BLOCK_MS, err, sizeof(err)) != UL_OK) {
            count_failure(p, WHAT_OUTBOX, topic_of(p, r.kind), err);
            t->failed = 1;
            tracker_release(p, t);
        } else {
            p->inflight[WHAT_OUTBOX]++;
        }
    }
    if (more < 0)
        log_error(p->log, "worker",
                  "the outbox entry of partition %d %s %" PRIu64
                  " is malformed after byte %zu: the rest is not published",
                  (int)partition, delivery ? "delivery" : "version", e->version, pos);
    tracker_release(p, t);
    return UL_OK;
}

int publish_outbox_entry(publisher *p, int32_t partition, outbox_entry *e, char *errstr,
                         size_t errstr_size) {
    return publish_entry(p, partition, 0, e, errstr, errstr_size);
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
        for (size_t i = 0; s && s->replicated && i < s->outbox.n; i++) {
            outbox_entry *e = &s->outbox.v[i];
            if (e->inflight || e->unsaved)
                continue;
            log_info(p->log, "worker",
                     "publishing the outbox of partition %d version %" PRIu64
                     " (left by a previous owner, a failed delivery, or waiting for a replica)",
                     (int)part, e->version);
            int rc = publish_outbox_entry(p, part, e, errstr, errstr_size);
            if (rc != UL_OK)
                return rc;
            mark_rows(p, e);
        }
    }
    return UL_OK;
}

int publish_delivery_record(void *codec_opaque, const codec_item_updates *u, int32_t home,
                            ul_buf *entry, char *errstr, size_t errstr_size) {
    codec_buf buf = {0};
    char key[24];
    int rc = codec_encode_item_updates(codec_opaque, u, &buf, errstr, errstr_size);
    if (rc == CODEC_OK) {
        int kl = snprintf(key, sizeof(key), "%d", (int)u->source);
        publish_record r = {PUBLISH_ITEM_UPDATES, home, key, (size_t)kl, buf.data, buf.len};
        publish_record_put(entry, &r);
    }
    codec_buf_free(&buf);
    return rc == CODEC_OK ? UL_OK : UL_ERR_ARG;
}

int publish_deliveries(publisher *p, char *errstr, size_t errstr_size) {
    for (int32_t part = 0; part < live_partitions(p->lv); part++) {
        shard *s = live_shard(p->lv, part);
        if (s == NULL || !s->replicated || s->deliveries.n == 0)
            continue;
        outbox_entry *e = &s->deliveries.v[0]; /* in sequence order: one at a time */
        if (e->inflight || e->unsaved)
            continue;
        int rc = publish_entry(p, part, 1, e, errstr, errstr_size);
        if (rc != UL_OK)
            return rc;
    }
    return UL_OK;
}

void publish_item_updates(void *opaque, int32_t home, const codec_item_updates *u) {
    publisher *p = opaque;
    char err[UL_ERRSTR_SIZE];
    if (codec_encode_item_updates(p->codec, u, &p->buf, err, sizeof(err)) != CODEC_OK) {
        log_error(p->log, "worker", "item updates for partition %d not sent: %s", (int)home, err);
        return;
    }
    if (kafka_produce(p->producer, p->cfg->topic_item_updates, home, NULL, 0, p->buf.data,
                      p->buf.len, &p->pushes, PRODUCE_BLOCK_MS, err, sizeof(err)) != UL_OK) {
        count_failure(p, WHAT_ITEM_UPDATES, p->cfg->topic_item_updates, err);
        return;
    }
    p->inflight[WHAT_ITEM_UPDATES]++;
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
        count_failure(p, WHAT_ROW, p->cfg->topic_factors, err);
        p->republish = 1;
        return;
    }
    p->inflight[WHAT_ROW]++;
    metrics_add(p->metrics, METRICS_ROWS_PUBLISHED, 1);
}

void publish_changed_class(publisher *p, shard_class cls) {
    if (p->republish) {
        p->republish = 0;
        log_debug(p->log, "worker", "a factor row was not delivered: publishing every owned row");
        for (int32_t part = 0; part < live_partitions(p->lv); part++)
            live_mark_partition(p->lv, part);
    }
    size_t n = live_publish_marked(p->lv, cls, publish_row, p);
    if (n > 0)
        log_debug(p->log, "worker", "published %zu changed factor rows to %s", n,
                  p->cfg->topic_factors);
}

/* Produce d (again). A value the producer finds too large is halved and
 * tried at once; another refusal waits for the retry. */
static void dead_letter_send(publisher *p, dead_letter *d) {
    char err[UL_ERRSTR_SIZE];
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (;;) {
        if (kafka_produce_dead_letter(p->producer, p->cfg->topic_dead_letter, &d->dl, d, &code, err,
                                      sizeof(err)) == UL_OK) {
            d->inflight = 1;
            p->inflight[WHAT_DEAD_LETTER]++;
            return;
        }
        if (code != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || d->dl.value_len == 0)
            break;
        d->dl.value_len /= 2;
    }
    dead_letter_reported(p, d, code);
}

int publish_dead_letter(publisher *p, const rd_kafka_message_t *rkm, const char *reason,
                        const char *why) {
    kafka_dead_letter src;
    kafka_dead_letter_of(rkm, reason, why, &src);
    size_t kept = kafka_dead_letter_fit(p->producer, &src);
    dead_letter *d = calloc(1, sizeof(*d));
    if (d == NULL || (d->bytes = malloc(src.key_len + kept + 1)) == NULL ||
        (d->source_topic = strdup(src.source_topic)) == NULL ||
        (d->reason = strdup(src.error_code)) == NULL ||
        (d->why = strdup(src.error_message)) == NULL ||
        (src.headers && (d->headers = rd_kafka_headers_copy(src.headers)) == NULL)) {
        if (d)
            dead_letter_free(d);
        return UL_ERR_NOMEM;
    }
    if (src.key_len)
        memcpy(d->bytes, src.key, src.key_len);
    if (kept)
        memcpy((char *)d->bytes + src.key_len, src.value, kept);
    d->kind = MSG_DEAD_LETTER;
    d->dl = src;
    d->dl.source_topic = d->source_topic;
    d->dl.error_code = d->reason;
    d->dl.error_message = d->why;
    d->dl.headers = d->headers;
    d->dl.key = src.key ? d->bytes : NULL;
    d->dl.value = (char *)d->bytes + src.key_len;
    d->dl.value_len = kept;
    d->retry_ms = RETRY_FIRST_MS;
    d->next = p->dead;
    p->dead = d;
    log_warn(p->log, "worker", "dead-lettered %s [%d] @%" PRId64 ": %s: %s%s", d->source_topic,
             (int)rkm->partition, rkm->offset, reason, why,
             kept < src.value_size ? " (value truncated to fit message.max.bytes)" : "");
    dead_letter_send(p, d);
    return UL_OK;
}

size_t publish_dead_letters_pending(const publisher *p, int32_t partition) {
    size_t n = 0;
    for (const dead_letter *d = p->dead; d; d = d->next)
        n += !d->delivered && (partition < 0 || d->dl.partition == partition);
    return n;
}

size_t publish_settle_dead_letters(publisher *p, int32_t partition, int timeout_ms) {
    int64_t deadline = ul_clock_mono_ms() + timeout_ms;
    size_t n;
    while ((n = publish_dead_letters_pending(p, partition)) > 0 && ul_clock_mono_ms() < deadline) {
        int waiting = 0;
        for (const dead_letter *d = p->dead; d; d = d->next)
            waiting |= d->inflight && (partition < 0 || d->dl.partition == partition);
        if (!waiting)
            break; /* all of them wait for their retry: publish_poll's */
        rd_kafka_poll(p->producer, 10);
    }
    return n;
}

void publish_drop_dead_letters(publisher *p, int32_t partition) {
    for (dead_letter **dp = &p->dead; *dp;) {
        dead_letter *d = *dp;
        if (d->dl.partition != partition || d->inflight) {
            dp = &d->next; /* in flight: settled (and freed) by its report */
            continue;
        }
        *dp = d->next;
        dead_letter_free(d);
    }
}

/* Count and free the acknowledged dead letters; produce the failed ones
 * whose retry is due, unless their partition was given up (its next owner
 * replays the record from the last checkpoint, before it). */
static void settle_dead_letters(publisher *p) {
    int64_t now = ul_clock_mono_ms();
    for (dead_letter **dp = &p->dead; *dp;) {
        dead_letter *d = *dp;
        int owned = live_shard(p->lv, d->dl.partition) != NULL;
        if (d->delivered || (!d->inflight && !owned)) {
            if (d->delivered)
                metrics_inc_dead_letter(p->metrics, d->source_topic, d->reason);
            *dp = d->next;
            dead_letter_free(d);
            continue;
        }
        if (!d->inflight && now >= d->retry_at)
            dead_letter_send(p, d);
        dp = &d->next;
    }
}

int publish_poll(publisher *p, char *errstr, size_t errstr_size) {
    rd_kafka_poll(p->producer, 0);
    settle_dead_letters(p);
    report_failures(p, 0);
    int rc = UL_OK;
    while (p->done) {
        tracker *t = p->done;
        p->done = t->next;
        shard *s = live_shard(p->lv, t->partition);
        outbox_list *l = s ? (t->delivery ? &s->deliveries : &s->outbox) : NULL;
        outbox_entry *e = l ? outbox_list_find(l, t->version) : NULL;
        if (e && t->failed)
            e->inflight = 0;
        else if (e && outbox_list_remove(l, t->version) != 0)
            rc = UL_ERR_NOMEM;
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

int publish_in_flight(const publisher *p, char *what, size_t size) {
    int n = p->inflight[WHAT_ROW] + p->inflight[WHAT_OUTBOX] + p->inflight[WHAT_DEAD_LETTER] +
            p->inflight[WHAT_ITEM_UPDATES];
    snprintf(what, size,
             "%d periodically published factor rows (published again by the partitions' next "
             "owners), %d records of unlearning cycles (they stay in their outbox entries in "
             "Redis), %d dead letters (their partitions were not checkpointed past them), %d "
             "best-effort item updates",
             p->inflight[WHAT_ROW], p->inflight[WHAT_OUTBOX], p->inflight[WHAT_DEAD_LETTER],
             p->inflight[WHAT_ITEM_UPDATES]);
    return n;
}
