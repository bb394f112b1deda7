/* kafka.c: librdkafka client construction, what worker clients report,
 * produce with back-pressure, topic metadata, and the dead-letter record
 * (see kafka.h).
 *
 * DESIGN: role defaults are applied only when the user has not set the same
 * kafka.* property, so anything here can be overridden from config; a
 * default librdkafka refuses is an error, whichever role it belongs to. A
 * kafka.* property of the other role (e.g. fetch.wait.max.ms for a
 * producer) is not given to a client at all: librdkafka would ignore it with
 * a CONFWARN line. The roles come from librdkafka's own property table
 * (rd_kafka_conf_properties_show), so they match the linked version. */
#include "kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ul_clock.h"
#include "ul_err.h"

typedef struct role_default {
    const char *key, *value;
} role_default;

static const role_default producer_defaults[] = {
    {"partitioner", "murmur2_random"}, /* Java's default: same key, same partition */
    {"linger.ms", "5"},
    {NULL, NULL}};

static const role_default consumer_defaults[] = {
    {"enable.auto.commit", "false"}, /* offsets are stored with the state in Redis */
    {"enable.auto.offset.store", "false"},
    {"auto.offset.reset", "earliest"},
    {NULL, NULL}};

static const role_default output_defaults[] = {
    {"enable.idempotence", "true"}, /* retries must not duplicate receipts and factor rows */
    {NULL, NULL}};

static const role_default assigned_defaults[] = {
    {"fetch.wait.max.ms", "20"}, /* rare, latency-sensitive records */
    {NULL, NULL}};

/* The ratings consumer. All its partitions feed one queue, and librdkafka
 * 2.0.2 compares the queue's total length with queued.min.messages (meant
 * per partition): past it, every partition's next fetch is held back a
 * hard-coded 1 s (fetch.queue.backoff.ms, librdkafka #2879, arrived in 2.1).
 * The fetcher outruns the worker, so the queue always reaches the limit;
 * the worker idles unless the limit holds more than it applies in that
 * second. 1,000,000 queued ratings cover 1 s at the ingest target; they cost
 * ~200 bytes each (librdkafka's per-message op, whatever the record size:
 * ML-1M's worker peaks at ~320 MB against ~110 MB, docs/operations.md);
 * with librdkafka's 100,000 ML-1M ingest idled ~1 s after every ~120k ratings
 * (debug=fetch: "queued.min.messages exceeded"). The byte bound
 * keeps larger records from filling memory (64 MiB of payload); one fetch
 * response is bounded to 8 MiB so it never brings more than the queue takes,
 * whatever the partition count (librdkafka's 50 MB at 1 MB per partition
 * would let 64 partitions fetch ~2.5M ratings at once). */
static const role_default ingest_defaults[] = {{"queued.min.messages", "1000000"},
                                               {"queued.max.messages.kbytes", "65536"},
                                               {"fetch.max.bytes", "8388608"},
                                               {NULL, NULL}};

static const role_default stats_defaults[] = {{"statistics.interval.ms", "15000"}, {NULL, NULL}};

/* The roles (kafka.h): the kind of client and its defaults, in order. */
typedef struct role_def {
    rd_kafka_type_t type;
    const role_default *defaults[3]; /* NULL-terminated */
} role_def;

static const role_def roles[] = {
    [KAFKA_PRODUCER] = {RD_KAFKA_PRODUCER, {producer_defaults, NULL}},
    [KAFKA_CONSUMER] = {RD_KAFKA_CONSUMER, {consumer_defaults, NULL}},
    [KAFKA_OUTPUT] = {RD_KAFKA_PRODUCER, {producer_defaults, output_defaults, NULL}},
    [KAFKA_ASSIGNED] = {RD_KAFKA_CONSUMER, {consumer_defaults, assigned_defaults, NULL}},
    [KAFKA_INGEST] = {RD_KAFKA_CONSUMER, {consumer_defaults, ingest_defaults, NULL}},
};

/* The C/P column of `key` in librdkafka's property table text: 'C'
 * consumer only, 'P' producer only, '*' both, 0 not found. Lines look like
 * "fetch.wait.max.ms                        |  C  | 0 .. 300000 | ...". */
static char property_scope(const char *table, const char *key) {
    size_t kl = strlen(key);
    for (const char *line = table; line && *line;) {
        const char *nl = strchr(line, '\n');
        if (strncmp(line, key, kl) == 0 && (line[kl] == ' ' || line[kl] == '|')) {
            const char *c = strchr(line, '|');
            if (c == NULL || (nl && c > nl))
                return 0;
            for (c++; *c == ' '; c++)
                ;
            return *c == 'C' || *c == 'P' || *c == '*' ? *c : 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    return 0;
}

typedef struct role_filter {
    rd_kafka_type_t type;
    char *table; /* rd_kafka_conf_properties_show() output; NULL: keep everything */
} role_filter;

static int keep_for_role(const char *key, void *opaque) {
    const role_filter *rf = opaque;
    char scope = rf->table ? property_scope(rf->table, key) : 0;
    return rf->type == RD_KAFKA_PRODUCER ? scope != 'C' : scope != 'P';
}

/* Apply defaults the user did not override (kafka.<key> unset). */
static int apply_defaults(rd_kafka_conf_t *conf, const ul_config *cfg, const role_default *d,
                          char *errstr, size_t errstr_size) {
    char kerr[512], key[300], cur[16];
    for (; d->key; d++) {
        snprintf(key, sizeof(key), "kafka.%s", d->key);
        if (config_value(cfg, key, 1, cur, sizeof(cur)) == UL_OK)
            continue; /* the user chose */
        if (rd_kafka_conf_set(conf, d->key, d->value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            ul_set_err(errstr, errstr_size, "%s: %s", d->key, kerr);
            return UL_ERR_ARG;
        }
    }
    return UL_OK;
}

rd_kafka_conf_t *kafka_conf_new(const ul_config *cfg, kafka_role role, ul_log **log_owner,
                                char *errstr, size_t errstr_size) {
    char kerr[512];
    const role_def *rd = &roles[role];
    role_filter rf = {rd->type, NULL};
    size_t table_len = 0;
    FILE *mem = open_memstream(&rf.table, &table_len);
    if (mem) { /* without it every property is applied, as before */
        rd_kafka_conf_properties_show(mem);
        fclose(mem);
    }
    rd_kafka_conf_t *conf = config_kafka_conf_only(cfg, keep_for_role, &rf, errstr, errstr_size);
    free(rf.table);
    if (conf == NULL)
        return NULL;
    if (rd->type == RD_KAFKA_CONSUMER &&
        rd_kafka_conf_set(conf, "group.id", cfg->kafka_group_id, kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK) {
        ul_set_err(errstr, errstr_size, "kafka.group.id: %s", kerr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (int i = 0; rd->defaults[i]; i++)
        if (apply_defaults(conf, cfg, rd->defaults[i], errstr, errstr_size) != UL_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    if (log_owner)
        log_kafka_conf(conf, log_owner);
    return conf;
}

static int set_hooks(rd_kafka_conf_t *conf, const ul_config *cfg, const kafka_hooks *h,
                     char *errstr, size_t errstr_size) {
    if (h->delivered)
        rd_kafka_conf_set_dr_msg_cb(conf, h->delivered);
    if (h->error)
        rd_kafka_conf_set_error_cb(conf, h->error);
    if (h->rebalance)
        rd_kafka_conf_set_rebalance_cb(conf, h->rebalance);
    if (h->committed)
        rd_kafka_conf_set_offset_commit_cb(conf, h->committed);
    if (h->stats == NULL)
        return UL_OK;
    rd_kafka_conf_set_stats_cb(conf, h->stats);
    return apply_defaults(conf, cfg, stats_defaults, errstr, errstr_size);
}

rd_kafka_t *kafka_client_new(const ul_config *cfg, kafka_role role, ul_log **log_owner,
                             const kafka_hooks *hooks, char *errstr, size_t errstr_size) {
    char kerr[512];
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, role, log_owner, errstr, errstr_size);
    if (conf == NULL)
        return NULL;
    if (hooks && set_hooks(conf, cfg, hooks, errstr, errstr_size) != UL_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(roles[role].type, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        ul_set_err(errstr, errstr_size, "cannot create the Kafka client: %s", kerr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (roles[role].type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

void kafka_report_error(ul_log *lg, metrics *m, int err, const char *reason) {
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__FATAL)
        metrics_set_kafka_down(m, 0, rd_kafka_err2str((rd_kafka_resp_err_t)err));
    log_error(lg, "kafka", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

void kafka_report_stats(ul_log *lg, metrics *m, const char *json, size_t json_len) {
    char err[UL_ERRSTR_SIZE];
    if (metrics_update_kafka_stats(m, json, json_len, err, sizeof(err)) != UL_OK)
        log_warn(lg, "kafka", "%s", err);
}

int kafka_topic_partition_count(rd_kafka_t *rk, const char *topic, int wait_ms, int32_t *n,
                                char *errstr, size_t errstr_size) {
    int64_t deadline = ul_clock_mono_ms() + wait_ms;
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
        if (ul_clock_mono_ms() >= deadline)
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

void kafka_topic_warm(rd_kafka_t *rk, const char *topic) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
}

int kafka_produce(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                  size_t key_len, const void *value, size_t value_len, void *msg_opaque,
                  int block_ms, char *errstr, size_t errstr_size) {
    int64_t deadline = ul_clock_mono_ms() + block_ms;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY((void *)key, key_len), RD_KAFKA_V_VALUE((void *)value, value_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(msg_opaque),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return UL_OK;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL ||
            (block_ms >= 0 && ul_clock_mono_ms() >= deadline)) {
            ul_set_err(errstr, errstr_size, "producing to %s: %s", topic, rd_kafka_err2str(err));
            return UL_ERR_IO;
        }
        rd_kafka_poll(rk, 50); /* serve delivery reports to make room */
    }
}

void kafka_dead_letter_of(const rd_kafka_message_t *rkm, const char *error_code,
                          const char *error_message, kafka_dead_letter *dl) {
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(rkm, &tstype);
    *dl = (kafka_dead_letter){.source_topic = rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "",
                              .partition = rkm->partition,
                              .offset = rkm->offset,
                              .timestamp = tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts,
                              .key = rkm->key,
                              .key_len = rkm->key_len,
                              .value = rkm->payload,
                              .value_len = rkm->len,
                              .value_size = rkm->len,
                              .error_code = error_code ? error_code : "",
                              .error_message = error_message ? error_message : ""};
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
        dl->headers = hdrs;
}

/* The headers of dl: the source record's, then ours. Owned by the caller. */
static rd_kafka_headers_t *dead_letter_headers(const kafka_dead_letter *dl) {
    char partition[16], offset[32], size[32];
    rd_kafka_headers_t *h = dl->headers ? rd_kafka_headers_copy(dl->headers)
                                        : rd_kafka_headers_new(KAFKA_DEAD_LETTER_HEADERS);
    snprintf(partition, sizeof(partition), "%" PRId32, dl->partition);
    snprintf(offset, sizeof(offset), "%" PRId64, dl->offset);
    rd_kafka_header_add(h, "source.topic", -1, dl->source_topic, -1);
    rd_kafka_header_add(h, "source.partition", -1, partition, -1);
    rd_kafka_header_add(h, "source.offset", -1, offset, -1);
    rd_kafka_header_add(h, "error.code", -1, dl->error_code, -1);
    rd_kafka_header_add(h, "error.message", -1, dl->error_message, -1);
    if (dl->value_len < dl->value_size) {
        snprintf(size, sizeof(size), "%zu", dl->value_size);
        rd_kafka_header_add(h, "value.truncated", -1, "true", -1);
        rd_kafka_header_add(h, "source.value.size", -1, size, -1);
    }
    return h;
}

size_t kafka_dead_letter_fit(rd_kafka_t *rk, const kafka_dead_letter *dl) {
    char buf[32];
    size_t n = sizeof(buf), used = dl->key_len + KAFKA_DEAD_LETTER_OVERHEAD;
    long max = 1000000; /* librdkafka's default message.max.bytes */
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "message.max.bytes", buf, &n) == RD_KAFKA_CONF_OK)
        max = atol(buf);
    rd_kafka_headers_t *h = dead_letter_headers(dl);
    const char *name;
    const void *val;
    size_t len;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++)
        used += strlen(name) + len + 8;
    rd_kafka_headers_destroy(h);
    used += 64; /* the two truncation headers, when they are added */
    if ((size_t)max <= used)
        return 0;
    return dl->value_size < (size_t)max - used ? dl->value_size : (size_t)max - used;
}

int kafka_produce_dead_letter(rd_kafka_t *rk, const char *dead_letter_topic,
                              const kafka_dead_letter *dl, void *msg_opaque,
                              rd_kafka_resp_err_t *code, char *errstr, size_t errstr_size) {
    rd_kafka_headers_t *h = dead_letter_headers(dl);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(dead_letter_topic), RD_KAFKA_V_KEY((void *)dl->key, dl->key_len),
        RD_KAFKA_V_VALUE((void *)dl->value, dl->value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_TIMESTAMP(dl->timestamp > 0 ? dl->timestamp : 0), RD_KAFKA_V_HEADERS(h),
        RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (code)
        *code = err;
    if (err) {
        rd_kafka_headers_destroy(h); /* taken by librdkafka only on success */
        ul_set_err(errstr, errstr_size, "dead-letter %s [%" PRId32 "] @%" PRId64 ": %s",
                   dl->source_topic, dl->partition, dl->offset, rd_kafka_err2str(err));
        return UL_ERR_IO;
    }
    return UL_OK;
}

int kafka_header_text(const rd_kafka_message_t *rkm, const char *name, char *buf, size_t size) {
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t len = 0;
    if (rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    if (size == 0)
        return 0;
    size_t n = len < size - 1 ? len : size - 1;
    if (val)
        memcpy(buf, val, n);
    buf[n] = '\0';
    return 0;
}

int kafka_topic_offsets(rd_kafka_t *rk, const char *topic, int timeout_ms, int64_t *low_sum,
                        int64_t *high_sum, int *n_partitions, char *errstr, size_t errstr_size) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err =
        rkt ? rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (!err && (md->topic_cnt != 1 || md->topics[0].err))
        err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    if (err) {
        ul_set_err(errstr, errstr_size, "metadata of %s: %s", topic, rd_kafka_err2str(err));
        if (md)
            rd_kafka_metadata_destroy(md);
        return UL_ERR_IO;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    *low_sum = *high_sum = 0;
    *n_partitions = n;
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, timeout_ms);
        if (err) {
            ul_set_err(errstr, errstr_size, "offsets of %s [%d]: %s", topic, p,
                       rd_kafka_err2str(err));
            return UL_ERR_IO;
        }
        *low_sum += lo;
        *high_sum += hi;
    }
    return UL_OK;
}
