/* cmd_erasure.c: `unlearnd erasure-report --user ID [--request ID]`, for
 * each of a user's forget requests: where the forgotten ratings no longer
 * exist (the worker's Redis state, the rows the unlearning cycle rewrote,
 * the outbox, the factor rows published after the receipt) and where they
 * may still exist (the source topics until retention deletes them, with
 * partitions, offsets and dates; factor rows published before the receipt
 * until compaction removes them). Read-only: Redis through the store's
 * read path (no fence bump), Kafka through a group-less consumer that
 * assigns the partitions it reads.
 *
 * DESIGN
 * - One document, two renderings: the report is built as a JSON object
 *   (jansson) and either printed as it is (--json) or rendered as text from
 *   the same entries, so the two can never disagree.
 * - Requests are joined by request id from three sources: the user's
 *   partition of forget-requests (the request records), the Redis forget
 *   buffer (requests not yet applied) and forget-receipts (completed ones).
 * - A rating "belongs to" a request when it is the user's, matches the
 *   request's items or window, and its Kafka timestamp is not after the
 *   moment the worker received the request (the receipt's received_at, else
 *   the request record's timestamp): ratings the user gave again afterwards
 *   are new data, not forgotten data.
 * - Honesty about learned rows: a factor row is a vector fitted to data; it
 *   cannot prove a rating's absence. The report says what the design
 *   guarantees (exact history, statistics and receipt; rows recomputed by
 *   the cycle) and what it does not (SGD steps other rows took while the
 *   rating was present; items evicted from the history before the request). */
#include "cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_config.h"
#include "codec.h"
#include "config.h"
#include "kafka.h"
#include "live.h"
#include "rows.h"
#include "store.h"
#include "ul_clock.h"
#include "ul_err.h"
#include "worker.h"

#define CMD "erasure-report"
#define SCAN_TIMEOUT_MS 60000
#define ADMIN_TIMEOUT_MS 5000

static void erasure_help(void) {
    printf("Usage: unlearnd erasure-report --user ID [--request ID] [--json]\n"
           "                               [--config FILE] [--redis.host H --redis.port N ...]\n"
           "                               [--kafka.bootstrap.servers B ...]\n\n"
           "For each forget request of a user (or only --request ID): where the forgotten\n"
           "ratings no longer exist and where they may still exist.\n\n"
           "Requests are found in the user's partition of the forget-requests topic, in the\n"
           "worker's forget buffer in Redis (not yet applied) and in forget-receipts\n"
           "(completed). A rating belongs to a request when it is the user's, matches its\n"
           "items or time window and reached Kafka before the worker received the request.\n\n"
           "gone:  the user's history in Redis (ul:{pP}:hist), its eviction summary, the\n"
           "       user row and the items' rows and exact statistics as the unlearning cycle\n"
           "       left them (a learned row cannot prove absence: the report says what the\n"
           "       design guarantees and what it does not), the outbox, and the user's\n"
           "       factor rows published at or after the receipt's model version.\n"
           "still: the ratings records (topic, partition, offset, timestamp) and the request\n"
           "       record itself until the topic's retention deletes them, with the earliest\n"
           "       date (timestamp + retention.ms) and what else must happen (segment.ms);\n"
           "       factor rows of the user published before the receipt, until compaction.\n"
           "       Retention settings are read from the broker (DescribeConfigs); when the\n"
           "       broker does not answer, the report says they are unknown.\n\n"
           "Options:\n"
           "  --user ID        the user (raw id)\n"
           "  --request ID     only this request id\n"
           "  --json           print the report as one JSON object instead of text\n"
           "  --config FILE    worker config file: redis.*, kafka.*, topic.*, key.* apply\n"
           "  --help           show this help\n\n"
           "Reads the whole partition of the user in ratings and forget-requests, the\n"
           "user's partition of factors and every partition of forget-receipts.\n\n"
           "Exit status: 0 report printed; 1 Redis or Kafka unreachable, no worker state,\n"
           "unknown user, no forget request (or not --request ID); 2 bad usage.\n");
}

typedef struct erasure_opts {
    int64_t user;
    int have_user;
    const char *request;
    int json;
} erasure_opts;

static int erasure_parse(int n, char **rest, erasure_opts *o, char *err, size_t size) {
    const char *const names[] = {"--user", "--request", NULL};
    for (int a = 0; a < n; a++) {
        if (strcmp(rest[a], "--json") == 0) {
            o->json = 1;
            continue;
        }
        const char *val = NULL;
        const char *name = cli_opt_next(n, rest, &a, names, &val, err, size);
        uint64_t u = 0;
        if (name == NULL)
            return -1;
        if (strcmp(name, "--request") == 0) {
            if (*val == '\0' || strlen(val) > CODEC_REQUEST_ID_MAX) {
                ul_set_err(err, size, "--request: 1..%d bytes", CODEC_REQUEST_ID_MAX);
                return -1;
            }
            o->request = val;
        } else {
            if (cli_parse_u64(name, val, &u, err, size) != 0 || u > INT64_MAX) {
                if (u > INT64_MAX)
                    ul_set_err(err, size, "--user: above 2^63-1");
                return -1;
            }
            o->user = (int64_t)u;
            o->have_user = 1;
        }
    }
    if (!o->have_user) {
        ul_set_err(err, size, "--user ID is required");
        return -1;
    }
    return 0;
}

/* ---- small helpers ----------------------------------------------------- */

static void iso_time(int64_t ms, char *buf, size_t size) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%" PRId64 " ms", ms);
}

static void add_time(json_t *o, const char *name, int64_t ms) {
    char buf[64];
    iso_time(ms, buf, sizeof(buf));
    json_object_set_new(o, name, json_integer(ms));
    char key[80];
    snprintf(key, sizeof(key), "%s_utc", name);
    json_object_set_new(o, key, json_string(buf));
}

/* An entry of a request's "gone" or "still" list. */
static json_t *entry(json_t *list, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *entry(json_t *list, const char *where, const char *fmt, ...) {
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s}", "where", where, "detail", detail);
    json_array_append_new(list, e);
    return e;
}

/* ---- Kafka reading ------------------------------------------------------ */

typedef int (*scan_fn)(void *ctx, const rd_kafka_message_t *m);

/* Read `topic` [p] from its low to its high watermark (as of now), calling
 * fn for every record. */
static int scan_partition(rd_kafka_t *rk, const char *topic, int32_t p, scan_fn fn, void *ctx,
                          char *err, size_t size) {
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ul_set_err(err, size, "offsets of %s [%d]: %s", topic, (int)p, rd_kafka_err2str(e));
        return UL_ERR_IO;
    }
    if (lo >= hi)
        return UL_OK;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
    e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ul_set_err(err, size, "cannot read %s [%d]: %s", topic, (int)p, rd_kafka_err2str(e));
        return UL_ERR_IO;
    }
    int64_t deadline = ul_clock_wall_ms() + SCAN_TIMEOUT_MS, next = lo;
    int rc = UL_OK;
    while (next < hi && rc == UL_OK) {
        if (ul_clock_wall_ms() > deadline) {
            ul_set_err(err, size, "reading %s [%d] timed out at offset %" PRId64 " of %" PRId64,
                       topic, (int)p, next, hi);
            rc = UL_ERR_IO;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            next = m->offset + 1;
            rc = fn(ctx, m);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            ul_set_err(err, size, "reading %s [%d]: %s", topic, (int)p, rd_kafka_message_errstr(m));
            rc = UL_ERR_IO;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    return rc;
}

/* retention.ms, segment.ms, cleanup.policy of each topic into out[topic],
 * or {"unknown": reason} when the broker does not say. */
static void topic_configs(rd_kafka_t *rk, const char *const *topics, int n, json_t *out) {
    static const char *const keys[] = {"retention.ms", "segment.ms", "cleanup.policy",
                                       "min.compaction.lag.ms", "delete.retention.ms"};
    char why[512] = "";
    rd_kafka_ConfigResource_t *res[8];
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(o, ADMIN_TIMEOUT_MS, why, sizeof(why));
    for (int i = 0; i < n; i++)
        res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topics[i]);
    rd_kafka_DescribeConfigs(rk, res, (size_t)n, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS + 2000);
    const rd_kafka_DescribeConfigs_result_t *result =
        ev ? rd_kafka_event_DescribeConfigs_result(ev) : NULL;
    if (ev == NULL)
        snprintf(why, sizeof(why), "the broker did not answer DescribeConfigs");
    else if (rd_kafka_event_error(ev))
        snprintf(why, sizeof(why), "DescribeConfigs: %s", rd_kafka_event_error_string(ev));
    size_t cnt = 0;
    const rd_kafka_ConfigResource_t **rs =
        result && !rd_kafka_event_error(ev)
            ? rd_kafka_DescribeConfigs_result_resources(result, &cnt)
            : NULL;
    for (int i = 0; i < n; i++) {
        json_t *t = json_object();
        const rd_kafka_ConfigResource_t *r = NULL;
        for (size_t j = 0; rs && j < cnt; j++)
            if (strcmp(rd_kafka_ConfigResource_name(rs[j]), topics[i]) == 0)
                r = rs[j];
        if (r && rd_kafka_ConfigResource_error(r) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            size_t ne = 0;
            const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(r, &ne);
            for (size_t j = 0; j < ne; j++)
                for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
                    if (strcmp(rd_kafka_ConfigEntry_name(ce[j]), keys[k]) == 0 &&
                        rd_kafka_ConfigEntry_value(ce[j]))
                        json_object_set_new(t, keys[k],
                                            json_string(rd_kafka_ConfigEntry_value(ce[j])));
        } else {
            json_object_set_new(t, "unknown",
                                json_string(r        ? rd_kafka_ConfigResource_error_string(r)
                                            : why[0] ? why
                                                     : "the broker did not describe the topic"));
        }
        json_object_set_new(out, topics[i], t);
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    for (int i = 0; i < n; i++)
        rd_kafka_ConfigResource_destroy(res[i]);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_queue_destroy(q);
}

/* A topic's numeric setting, -2 when unknown. */
static int64_t topic_ms(json_t *configs, const char *topic, const char *key) {
    const char *v = json_string_value(json_object_get(json_object_get(configs, topic), key));
    char *end = NULL;
    long long x = v ? strtoll(v, &end, 10) : 0;
    return v && end && *end == '\0' ? (int64_t)x : -2;
}

/* ---- what is collected --------------------------------------------------- */

typedef struct found_rating {
    int64_t offset, ts; /* in ratings [P]; ts: the record's Kafka timestamp */
    codec_rating r;
} found_rating;

typedef struct found_request {
    char id[CODEC_REQUEST_ID_MAX + 1];
    int64_t offset, ts; /* in forget-requests [P]; -1 when not (or no longer) there */
    codec_forget fr;    /* items owned */
    int have_fr;
    int pending; /* in the Redis forget buffer */
    int have_receipt;
    codec_receipt rc;
    int32_t rc_partition;
    int64_t rc_offset;
} found_request;

typedef struct found_factor {
    int64_t offset, ts, version;
} found_factor;

typedef struct collect {
    const ul_config *cfg;
    const codec *cd;
    int64_t user;
    char key[CODEC_KEY_MAX];
    int key_len;
    found_rating *ratings;
    size_t n_ratings, cap_ratings;
    found_request *reqs;
    size_t n_reqs, cap_reqs;
    found_factor *factors;
    size_t n_factors, cap_factors;
    int32_t scan_partition; /* of the scan running now */
    int oom;
} collect;

static void *grow(void *v, size_t *cap, size_t n, size_t elem, int *oom) {
    if (n < *cap)
        return v;
    size_t c = *cap ? *cap * 2 : 16;
    void *nv = realloc(v, c * elem);
    if (nv == NULL) {
        *oom = 1;
        return NULL;
    }
    *cap = c;
    return nv;
}

static found_request *request_get(collect *c, const char *id) {
    for (size_t i = 0; i < c->n_reqs; i++)
        if (strcmp(c->reqs[i].id, id) == 0)
            return &c->reqs[i];
    found_request *v = grow(c->reqs, &c->cap_reqs, c->n_reqs, sizeof(*v), &c->oom);
    if (v == NULL)
        return NULL;
    c->reqs = v;
    found_request *r = &c->reqs[c->n_reqs++];
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->offset = r->ts = -1;
    return r;
}

static int is_users_key(const collect *c, const rd_kafka_message_t *m) {
    return m->key_len == (size_t)c->key_len && memcmp(m->key, c->key, m->key_len) == 0;
}

static int64_t msg_ts(const rd_kafka_message_t *m) {
    return rd_kafka_message_timestamp(m, NULL);
}

static int on_rating(void *ctx, const rd_kafka_message_t *m) {
    collect *c = ctx;
    codec_rating r;
    char err[256];
    if (!is_users_key(c, m) ||
        codec_decode_rating(c->cd, m->payload, m->len, &r, err, sizeof(err)) != CODEC_OK ||
        r.user_id != c->user)
        return UL_OK;
    found_rating *v = grow(c->ratings, &c->cap_ratings, c->n_ratings, sizeof(*v), &c->oom);
    if (v == NULL)
        return UL_ERR_NOMEM;
    c->ratings = v;
    c->ratings[c->n_ratings++] = (found_rating){m->offset, msg_ts(m), r};
    return UL_OK;
}

static int on_request(void *ctx, const rd_kafka_message_t *m) {
    collect *c = ctx;
    codec_forget fr;
    char err[256];
    memset(&fr, 0, sizeof(fr));
    if (!is_users_key(c, m) ||
        codec_decode_forget(c->cd, m->payload, m->len, &fr, err, sizeof(err)) != CODEC_OK)
        return UL_OK;
    found_request *r = fr.user_id == c->user ? request_get(c, fr.request_id) : NULL;
    if (r != NULL && !r->have_fr) {
        r->fr = fr;
        r->have_fr = 1;
        r->offset = m->offset;
        r->ts = msg_ts(m);
        return UL_OK;
    }
    codec_forget_clear(&fr);
    return c->oom ? UL_ERR_NOMEM : UL_OK;
}

static int on_receipt(void *ctx, const rd_kafka_message_t *m) {
    collect *c = ctx;
    codec_receipt rc;
    char err[256];
    if (codec_decode_receipt(c->cd, m->payload, m->len, &rc, err, sizeof(err)) != CODEC_OK ||
        rc.user_id != c->user)
        return UL_OK;
    found_request *r = request_get(c, rc.request_id);
    if (r == NULL)
        return UL_ERR_NOMEM;
    if (!r->have_receipt) { /* at least once: keep the first */
        r->have_receipt = 1;
        r->rc = rc;
        r->rc_partition = c->scan_partition;
        r->rc_offset = m->offset;
    }
    return UL_OK;
}

static int on_factor(void *ctx, const rd_kafka_message_t *m) {
    collect *c = ctx;
    codec_factor f;
    char err[256], key[CODEC_KEY_MAX];
    int klen = codec_key_factor(CODEC_KIND_USER, c->user, key, sizeof(key));
    if (m->key_len != (size_t)klen || memcmp(m->key, key, (size_t)klen) != 0 ||
        codec_decode_factor(c->cd, m->payload, m->len, &f, err, sizeof(err)) != CODEC_OK)
        return UL_OK;
    codec_factor_clear(&f);
    found_factor *v = grow(c->factors, &c->cap_factors, c->n_factors, sizeof(*v), &c->oom);
    if (v == NULL)
        return UL_ERR_NOMEM;
    c->factors = v;
    c->factors[c->n_factors++] = (found_factor){m->offset, msg_ts(m), f.model_version};
    return UL_OK;
}

static void collect_free(collect *c) {
    for (size_t i = 0; i < c->n_reqs; i++)
        codec_forget_clear(&c->reqs[i].fr);
    free(c->reqs);
    free(c->ratings);
    free(c->factors);
}

/* Every partition of forget-receipts, partition P of ratings and
 * forget-requests, and the user row's partition of factors. */
static int collect_kafka(collect *c, rd_kafka_t *rk, int32_t p, char *err, size_t size) {
    const ul_config *cfg = c->cfg;
    int32_t n_receipts = 0, n_factors = 0;
    char fkey[CODEC_KEY_MAX];
    int rc = kafka_topic_partition_count(rk, cfg->topic_receipts, 5000, &n_receipts, err, size);
    if (rc == UL_OK)
        rc = kafka_topic_partition_count(rk, cfg->topic_factors, 5000, &n_factors, err, size);
    if (rc == UL_OK)
        rc = scan_partition(rk, cfg->topic_forget, p, on_request, c, err, size);
    for (int32_t q = 0; q < n_receipts && rc == UL_OK; q++) {
        c->scan_partition = q;
        rc = scan_partition(rk, cfg->topic_receipts, q, on_receipt, c, err, size);
    }
    if (rc == UL_OK)
        rc = scan_partition(rk, cfg->topic_ratings, p, on_rating, c, err, size);
    int klen = codec_key_factor(CODEC_KIND_USER, c->user, fkey, sizeof(fkey));
    if (rc == UL_OK)
        rc = scan_partition(rk, cfg->topic_factors, codec_partition(fkey, (size_t)klen, n_factors),
                            on_factor, c, err, size);
    if (rc == UL_OK && c->oom) {
        ul_set_err(err, size, "out of memory");
        rc = UL_ERR_NOMEM;
    }
    return rc;
}

/* The Redis forget buffer's requests of the user join the list. */
static int collect_pending(collect *c, const shard *s) {
    for (size_t i = 0; i < s->n_pending; i++) {
        const forget_req *q = &s->pending[i];
        if (q->user != c->user)
            continue;
        found_request *r = request_get(c, q->request_id ? q->request_id : "");
        if (r == NULL)
            return UL_ERR_NOMEM;
        r->pending = 1;
        if (r->have_fr)
            continue;
        /* Known only from Redis (its record is gone from the topic). */
        r->offset = q->offset;
        r->fr.user_id = q->user;
        r->fr.has_window = q->has_window;
        r->fr.window_from = q->from;
        r->fr.window_to = q->to;
        r->fr.reason = (codec_reason)q->reason;
        r->fr.requested_at = q->received_ms;
        if (q->n_items > 0) {
            r->fr.items = malloc(q->n_items * sizeof(int64_t));
            if (r->fr.items == NULL)
                return UL_ERR_NOMEM;
            memcpy(r->fr.items, q->items, q->n_items * sizeof(int64_t));
            r->fr.n_items = q->n_items;
        }
        r->have_fr = 1;
    }
    return UL_OK;
}

/* ---- the report ----------------------------------------------------------- */

static int request_matches(const codec_forget *fr, int64_t item, int64_t event_time) {
    if (fr->has_window)
        return event_time >= fr->window_from && event_time <= fr->window_to;
    for (size_t i = 0; i < fr->n_items; i++)
        if (fr->items[i] == item)
            return 1;
    return 0;
}

typedef struct report_ctx {
    const collect *c;
    const ul_config *cfg;
    store *st;
    const store_model *m;
    shard *s;
    int32_t uidx; /* the user's row in s, -1 none */
    int32_t p;
    json_t *configs;
} report_ctx;

/* The moment the worker received request r: ratings that reached Kafka
 * later are new data, not part of it. */
static int64_t request_cutoff(const found_request *r) {
    return r->have_receipt ? r->rc.received_at : r->ts >= 0 ? r->ts : INT64_MAX;
}

/* 1 when the rating record fr belongs to request r (see DESIGN). */
static int rating_of_request(const found_request *r, const found_rating *fr) {
    return request_matches(&r->fr, fr->r.item_id, fr->r.event_time) && fr->ts <= request_cutoff(r);
}

/* When a record of `topic` with Kafka timestamp ts may be deleted. */
static void add_deletion(const report_ctx *x, json_t *e, const char *topic, int64_t ts) {
    int64_t ret = topic_ms(x->configs, topic, "retention.ms");
    int64_t seg = topic_ms(x->configs, topic, "segment.ms");
    const char *policy =
        json_string_value(json_object_get(json_object_get(x->configs, topic), "cleanup.policy"));
    char when[64], why[600];
    if (ret == -2) {
        snprintf(why, sizeof(why), "retention of %s unknown (%s): ask the broker's operator", topic,
                 json_string_value(json_object_get(json_object_get(x->configs, topic), "unknown"))
                     ?: "retention.ms not reported");
    } else if (ret < 0 || (policy && strstr(policy, "delete") == NULL)) {
        snprintf(why, sizeof(why),
                 "never deleted by time: %s has retention.ms=%" PRId64 ", cleanup.policy=%s", topic,
                 ret, policy ? policy : "?");
    } else {
        add_time(e, "deleted_not_before", ts + ret);
        iso_time(ts + ret, when, sizeof(when));
        if (seg >= 0) {
            char late[64];
            add_time(e, "deleted_by_about", ts + seg + ret);
            iso_time(ts + seg + ret, late, sizeof(late));
            snprintf(why, sizeof(why),
                     "deleted with its segment: not before %s (timestamp + retention.ms=%" PRId64
                     "), about %s at the latest (+ segment.ms=%" PRId64
                     ") if the partition keeps receiving records (the active segment is never "
                     "deleted)",
                     when, ret, late, seg);
        } else {
            snprintf(why, sizeof(why),
                     "deleted with its segment: not before %s (timestamp + retention.ms=%" PRId64
                     "); segment.ms unknown",
                     when, ret);
        }
    }
    json_object_set_new(e, "deletion", json_string(why));
}

static void report_history(const report_ctx *x, const found_request *r, json_t *gone,
                           json_t *still) {
    hist *h = x->uidx >= 0 ? shard_hist(x->s, x->uidx) : NULL;
    uint32_t n = 0;
    for (uint32_t e = 0; h && e < h->n; e++)
        n += request_matches(&r->fr, h->v[h->start + e].item, h->v[h->start + e].time);
    if (n == 0)
        entry(gone, "redis history",
              "ul:{p%d}:hist holds none of the request's ratings (%u ratings remembered for the "
              "user)",
              (int)x->p, h ? h->n : 0);
    else
        entry(still, "redis history", "ul:{p%d}:hist still holds %u matching rating(s)%s",
              (int)x->p, n,
              r->have_receipt ? " (given again after the request)"
                              : ": the request is not applied yet");
    const shard_evict *ev = x->uidx >= 0 ? shard_evicted(x->s, x->uidx) : NULL;
    int may = 0;
    for (size_t i = 0; ev && !r->fr.has_window && i < r->fr.n_items; i++)
        may |= shard_evict_may_contain(ev, r->fr.items[i]);
    if (ev && r->fr.has_window)
        may = ev->tmin <= r->fr.window_to && ev->tmax >= r->fr.window_from;
    if (may)
        entry(still, "learned rows (beyond retention)",
              "some of these ratings may have left the history before the request "
              "(retention.per.user; eviction summary of %u ratings): the cycle could not "
              "remove what it no longer had, so their influence on the user and item rows "
              "remains",
              ev->count);
    else if (ev)
        entry(gone, "redis eviction summary",
              "ul:{p%d}:evict: none of the request's ratings was evicted before it", (int)x->p);
}

static void report_rows(const report_ctx *x, const found_request *r, json_t *gone, json_t *still) {
    if (!r->have_receipt) {
        entry(still, "user and item rows",
              "the request is not applied yet: ul:{p%d}:users, the items' rows and their exact "
              "statistics still include these ratings",
              (int)x->p);
        return;
    }
    entry(gone, "user row",
          "ul:{p%d}:users: the row was recomputed without the %d forgotten rating(s) by "
          "the unlearning cycle of version %" PRId64 " (method %s); later changes come "
          "from the remaining history and new ratings. A learned row cannot prove that a "
          "rating's influence is gone, only how it was recomputed",
          (int)x->p, (int)r->rc.forgotten, r->rc.model_version, x->cfg->method);
    size_t n_items = 0;
    json_t *items = json_array();
    for (size_t i = 0; i < x->c->n_ratings && n_items < 50; i++) {
        const found_rating *fr = &x->c->ratings[i];
        if (!rating_of_request(r, fr))
            continue;
        int64_t item = fr->r.item_id;
        int32_t home = rows_item_partition(item, x->m->partitions);
        rows_stats sv = {0, 0};
        int found = 0;
        char err[UL_ERRSTR_SIZE];
        int dim = rows_dim(ROWS_ITEM, x->m->k);
        float *row = malloc((size_t)dim * sizeof(float));
        if (row &&
            store_item_get(x->st, home, item, row, dim, &found, &sv, err, sizeof(err)) == UL_OK)
            json_array_append_new(items, json_pack("{s:I, s:i, s:I, s:f}", "item", (json_int_t)item,
                                                   "home", (int)home, "count", (json_int_t)sv.count,
                                                   "sum", sv.sum));
        free(row);
        n_items++;
    }
    if (json_array_size(items) > 0) {
        json_t *e = entry(gone, "item rows and statistics",
                          "ul:{pH}:istats of the %zu item(s) (exact: each forgotten rating's "
                          "count and value were subtracted by an exact delivery); the item rows "
                          "received the cycle's correction, best effort: the SGD steps other "
                          "users' rows and these items took while the rating was present are "
                          "not undone",
                          json_array_size(items));
        json_object_set(e, "items", items);
    }
    json_decref(items);
}

static void report_outbox_and_factors(const report_ctx *x, const found_request *r, json_t *gone,
                                      json_t *still) {
    size_t waiting = r->have_receipt ? 0 : x->s->outbox.n;
    if (r->have_receipt)
        entry(gone, "outbox",
              "ul:{p%d}:outbox holds %zu unpublished cycle(s); this request's receipt is "
              "published (the outbox holds factor rows and receipts, never ratings)",
              (int)x->p, x->s->outbox.n);
    else if (waiting)
        entry(still, "outbox",
              "ul:{p%d}:outbox holds %zu unpublished cycle(s): the receipt may be among them",
              (int)x->p, waiting);
    if (!r->have_receipt)
        return;
    json_t *before = json_array();
    size_t after = 0;
    int64_t last_ts = -1;
    for (size_t i = 0; i < x->c->n_factors; i++) {
        const found_factor *f = &x->c->factors[i];
        if (f->ts >= 0 && f->ts < r->rc.completed_at) {
            json_array_append_new(before, json_pack("{s:I, s:I}", "offset", (json_int_t)f->offset,
                                                    "model_version", (json_int_t)f->version));
            last_ts = f->ts > last_ts ? f->ts : last_ts;
        } else {
            after++;
        }
    }
    if (after)
        entry(gone, "factors topic",
              "%zu row(s) u:%" PRId64 " published at or after the receipt (computed without "
              "the forgotten ratings); the latest row of the key is one of them",
              after, x->c->user);
    if (json_array_size(before)) {
        const char *policy = json_string_value(
            json_object_get(json_object_get(x->configs, x->cfg->topic_factors), "cleanup.policy"));
        json_t *e =
            entry(still, "factors topic",
                  "%zu row(s) u:%" PRId64 " published before the receipt (computed with "
                  "the forgotten ratings) remain in %s until %s",
                  json_array_size(before), x->c->user, x->cfg->topic_factors,
                  policy && strstr(policy, "compact")
                      ? "compaction removes superseded rows (after their segment rolls: "
                        "segment.ms, min.compaction.lag.ms)"
                      : "retention deletes them (cleanup.policy is not compact or unknown)");
        json_object_set(e, "records", before);
        if (!after)
            json_object_set_new(e, "note",
                                json_string("no later row of the key was published yet: "
                                            "compaction keeps the latest"));
        add_deletion(x, e, x->cfg->topic_factors, last_ts);
    }
    json_decref(before);
}

static void report_topics(const report_ctx *x, const found_request *r, json_t *still) {
    for (size_t i = 0; i < x->c->n_ratings; i++) {
        const found_rating *fr = &x->c->ratings[i];
        if (!rating_of_request(r, fr))
            continue;
        json_t *e = entry(still, "ratings topic",
                          "%s [%d] @%" PRId64 ": item %" PRId64 " rating %g, event time %" PRId64,
                          x->cfg->topic_ratings, (int)x->p, fr->offset, fr->r.item_id,
                          (double)fr->r.rating, fr->r.event_time);
        json_object_set_new(e, "topic", json_string(x->cfg->topic_ratings));
        json_object_set_new(e, "partition", json_integer(x->p));
        json_object_set_new(e, "offset", json_integer(fr->offset));
        add_time(e, "timestamp", fr->ts);
        add_deletion(x, e, x->cfg->topic_ratings, fr->ts);
    }
    if (r->offset >= 0 && r->ts >= 0) {
        json_t *e =
            entry(still, "forget-requests topic",
                  "%s [%d] @%" PRId64 ": the request itself (user id and %s)", x->cfg->topic_forget,
                  (int)x->p, r->offset, r->fr.has_window ? "the time window" : "the item ids");
        json_object_set_new(e, "topic", json_string(x->cfg->topic_forget));
        json_object_set_new(e, "partition", json_integer(x->p));
        json_object_set_new(e, "offset", json_integer(r->offset));
        add_time(e, "timestamp", r->ts);
        add_deletion(x, e, x->cfg->topic_forget, r->ts);
    }
}

static const char *request_status(const report_ctx *x, const found_request *r) {
    if (r->have_receipt)
        return "completed";
    if (r->pending)
        return "pending";
    if (r->offset >= x->s->meta.next_offset[SHARD_FORGET])
        return "not yet read by the worker";
    return "read, no receipt found (completed with its receipt past retention, or dead-lettered)";
}

static json_t *report_request(const report_ctx *x, const found_request *r) {
    json_t *o = json_pack("{s:s, s:s}", "request_id", r->id, "status", request_status(x, r));
    json_t *gone = json_array(), *still = json_array();
    if (r->have_fr) {
        json_object_set_new(o, "reason", json_string(codec_reason_name((int)r->fr.reason)));
        if (r->fr.has_window) {
            json_object_set_new(o, "window",
                                json_pack("{s:I, s:I}", "from", (json_int_t)r->fr.window_from, "to",
                                          (json_int_t)r->fr.window_to));
        } else {
            json_t *items = json_array();
            for (size_t i = 0; i < r->fr.n_items; i++)
                json_array_append_new(items, json_integer(r->fr.items[i]));
            json_object_set_new(o, "items", items);
        }
    }
    if (r->have_receipt) {
        json_t *rc = json_pack("{s:i, s:I, s:s, s:i, s:I}", "forgotten", (int)r->rc.forgotten,
                               "model_version", (json_int_t)r->rc.model_version, "topic",
                               x->cfg->topic_receipts, "partition", (int)r->rc_partition, "offset",
                               (json_int_t)r->rc_offset);
        add_time(rc, "received_at", r->rc.received_at);
        add_time(rc, "completed_at", r->rc.completed_at);
        json_object_set_new(o, "receipt", rc);
    }
    if (r->have_fr) {
        report_history(x, r, gone, still);
        report_rows(x, r, gone, still);
        report_outbox_and_factors(x, r, gone, still);
        report_topics(x, r, still);
    } else {
        entry(still, "unknown",
              "only the receipt is left: the request record is past the retention of %s, so "
              "its items cannot be matched",
              x->cfg->topic_forget);
    }
    json_object_set_new(o, "gone", gone);
    json_object_set_new(o, "still", still);
    return o;
}

/* ---- text rendering -------------------------------------------------------- */

static void print_entries(json_t *list, const char *tag) {
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        printf("  %-6s %s: %s\n", tag, json_string_value(json_object_get(e, "where")),
               json_string_value(json_object_get(e, "detail")));
        const char *del = json_string_value(json_object_get(e, "deletion"));
        if (del)
            printf("         %s\n", del);
    }
}

static void print_text(json_t *doc) {
    printf("erasure report for user %" JSON_INTEGER_FORMAT " (partition %" JSON_INTEGER_FORMAT
           ", %s)\n",
           json_integer_value(json_object_get(doc, "user")),
           json_integer_value(json_object_get(doc, "partition")),
           json_is_true(json_object_get(doc, "known")) ? "a row in Redis" : "no row in Redis");
    const char *t;
    json_t *cfg;
    json_object_foreach(json_object_get(doc, "topics"), t, cfg) {
        const char *unk = json_string_value(json_object_get(cfg, "unknown"));
        if (unk) {
            printf("topic %s: retention unknown (%s)\n", t, unk);
            continue;
        }
        printf("topic %s:", t);
        const char *k;
        json_t *v;
        json_object_foreach(cfg, k, v) printf(" %s=%s", k, json_string_value(v));
        printf("\n");
    }
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(doc, "requests"), i, r) {
        printf("\nrequest %s: %s", json_string_value(json_object_get(r, "request_id")),
               json_string_value(json_object_get(r, "status")));
        json_t *rc = json_object_get(r, "receipt");
        if (rc)
            printf(", %" JSON_INTEGER_FORMAT
                   " rating(s) forgotten, model version %" JSON_INTEGER_FORMAT ", completed %s",
                   json_integer_value(json_object_get(rc, "forgotten")),
                   json_integer_value(json_object_get(rc, "model_version")),
                   json_string_value(json_object_get(rc, "completed_at_utc")));
        printf("\n");
        print_entries(json_object_get(r, "gone"), "gone");
        print_entries(json_object_get(r, "still"), "still");
    }
}

/* ---- the command --------------------------------------------------------- */

static int run_report(cli_config *cc, store *st, const store_model *m, const erasure_opts *o) {
    char err[UL_ERRSTR_SIZE];
    const ul_config *cfg = cc->cfg;
    int32_t p = worker_user_partition(cfg, o->user, m->partitions);
    collect c = {.cfg = cfg, .user = o->user};
    c.key_len = codec_user_key(worker_key_format(cfg), (int32_t)cfg->key_schema_id, o->user, c.key,
                               sizeof(c.key));
    codec *cd = worker_codec_new(cfg, err, sizeof(err));
    live *l = cd ? cli_state_live(st, m, err, sizeof(err)) : NULL;
    shard *s = l ? live_assign(l, p, NULL, err, sizeof(err)) : NULL;
    ul_log *klog = cc->log;
    rd_kafka_t *rk =
        s ? kafka_client_new(cfg, KAFKA_CONSUMER, &klog, NULL, err, sizeof(err)) : NULL;
    json_t *doc = NULL;
    int rc = CLI_EXIT_FAIL;
    c.cd = cd;
    if (rk == NULL || collect_kafka(&c, rk, p, err, sizeof(err)) != UL_OK ||
        collect_pending(&c, s) != UL_OK) {
        cli_fail(CMD, c.oom ? "out of memory" : err);
        goto done;
    }
    int32_t uidx = rowset_find(s->users, o->user);
    if (uidx < 0 && c.n_reqs == 0 && c.n_ratings == 0) {
        snprintf(err, sizeof(err),
                 "user %" PRId64 " is unknown: no row in Redis (partition %d), no rating in %s "
                 "[%d] and no forget request",
                 o->user, (int)p, cfg->topic_ratings, (int)p);
        cli_fail(CMD, err);
        goto done;
    }
    if (c.n_reqs == 0) {
        snprintf(err, sizeof(err),
                 "user %" PRId64 " has no forget request (none in %s [%d], in the forget buffer or "
                 "in %s)",
                 o->user, cfg->topic_forget, (int)p, cfg->topic_receipts);
        cli_fail(CMD, err);
        goto done;
    }
    const char *topics[] = {cfg->topic_ratings, cfg->topic_forget, cfg->topic_factors,
                            cfg->topic_receipts};
    json_t *configs = json_object();
    topic_configs(rk, topics, 4, configs);
    doc = json_pack("{s:I, s:i, s:b, s:o}", "user", (json_int_t)o->user, "partition", (int)p,
                    "known", uidx >= 0, "topics", configs);
    json_t *reqs = json_array();
    report_ctx x = {&c, cfg, st, m, s, uidx, p, configs};
    for (size_t i = 0; i < c.n_reqs; i++)
        if (o->request == NULL || strcmp(o->request, c.reqs[i].id) == 0)
            json_array_append_new(reqs, report_request(&x, &c.reqs[i]));
    json_object_set_new(doc, "requests", reqs);
    if (json_array_size(reqs) == 0) {
        snprintf(err, sizeof(err), "user %" PRId64 " has no forget request '%s' (%zu other%s)",
                 o->user, o->request, c.n_reqs, c.n_reqs == 1 ? "" : "s");
        cli_fail(CMD, err);
        goto done;
    }
    if (o->json) {
        json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("\n");
    } else {
        print_text(doc);
    }
    rc = CLI_EXIT_OK;
done:
    json_decref(doc);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    collect_free(&c);
    live_destroy(l);
    codec_destroy(cd);
    return rc;
}

static int erasure_parse_opts(int n, char **rest, void *opts, char *err, size_t size) {
    return erasure_parse(n, rest, opts, err, size);
}

static int erasure_run(cli_config *cc, store *st, const store_model *m, void *opts) {
    return run_report(cc, st, m, opts);
}

int cmd_erasure(int argc, char **argv) {
    static const cli_state_cmd c = {CMD, erasure_help, erasure_parse_opts, 1, erasure_run};
    erasure_opts o;
    memset(&o, 0, sizeof(o));
    return cli_state_main(&c, &o, argc, argv);
}
