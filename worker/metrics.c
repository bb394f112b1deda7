/* metrics.c: the metrics registry, the librdkafka statistics scanner and the
 * Prometheus text rendering (see metrics.h).
 *
 * DESIGN: the worker thread writes, the HTTP thread reads. Plain counters are
 * C11 atomics (relaxed: each is an independent total, no ordering between
 * them is promised to a scraper). Everything else - the dead-letter reason
 * table, the histogram, the lag table, the health flags and timestamps - sits
 * behind one mutex; those writes happen a few times per second at most.
 *
 * The statistics JSON (tens of KB every statistics.interval.ms) is read by a
 * small recursive-descent scanner that only descends into
 * topics -> <name> -> partitions -> <id> and brokers -> <name>, and skips
 * every other value whole (strings with escapes, nested objects, arrays), so
 * keys such as "consumer_lag_stored" or the brokers' "toppars" never match by
 * accident and unknown new fields are harmless. */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ul_clock.h"
#include "ul_err.h"

/* The counters (metrics.h's enum, same order): the Prometheus name of the
 * exported ones (NULL: read by the worker's progress line only) and the
 * HELP text. */
typedef struct counter_def {
    const char *name;
    const char *help;
} counter_def;

static const counter_def counter_defs[METRICS_N_COUNTERS] = {
    [METRICS_RATINGS_APPLIED] = {"ratings_applied_total",
                                 "Ratings applied to the live model by this worker."},
    [METRICS_FORGET_RECEIVED] = {"forget_requests_received_total",
                                 "Forget requests accepted into a forget buffer by this worker."},
    [METRICS_FORGET_COMPLETED] = {"forget_requests_completed_total",
                                  "Forget requests applied with their receipt produced by this "
                                  "worker."},
    [METRICS_CHECKPOINT_PASSES] = {"checkpoints_total",
                                   "Successful checkpoint passes (state and offsets to Redis)."},
    [METRICS_CHECKPOINTS] = {NULL, "partition checkpoints"},
    [METRICS_DEAD_LETTERS] = {NULL, "records dead-lettered (exported by reason)"},
    [METRICS_ROWS_PUBLISHED] = {NULL, "factor rows published periodically"},
    [METRICS_ERASURE_BEYOND_RETENTION] = {"erasure_beyond_retention_total",
                                          "ERASURE forget requests that reached ratings older "
                                          "than the retained history (the model may still "
                                          "carry them)."},
    [METRICS_ITEM_UPDATES_IN] = {"item_updates_received_total",
                                 "Item-updates records of other workers applied to this worker's "
                                 "replica."},
    [METRICS_ITEM_UPDATE_AGE_MS] = {"item_updates_age_ms_total",
                                    "Sum over those records of their age when applied (now - the "
                                    "record's timestamp), ms: divided by "
                                    "item_updates_received_total, the mean staleness."},
    [METRICS_TRAINING_EPOCHS] = {"training_epochs_total",
                                 "Continuous-training epochs completed over the owned histories."},
    [METRICS_TRAINING_RATINGS] = {"training_ratings_total",
                                  "SGD steps of continuous training (retained ratings trained)."},
};

/* The gauges (metrics.h's enum, same order): name, HELP text and the value
 * before the first set. */
typedef struct gauge_def {
    const char *name;
    const char *help;
    double initial;
} gauge_def;

static const gauge_def gauge_defs[METRICS_N_GAUGES] = {
    [METRICS_TRAINING_LOSS] = {"training_loss_rmse",
                               "RMSE of continuous training's steps in its last completed epoch "
                               "(the epoch in progress before the first; -1 = none yet).",
                               -1.0},
    [METRICS_TRAINING_SHARE] = {"training_share",
                                "Measured share of the worker loop's wall time spent training "
                                "(last 5 s window).",
                                0.0},
    [METRICS_TRAINING_PAUSED] = {"training_paused",
                                 "1 while continuous training waits for new data (or is off).",
                                 1.0},
};

static const double cycle_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS (sizeof(cycle_buckets) / sizeof(cycle_buckets[0]))

typedef struct reason_count {
    char topic[128];
    char name[64];
    uint64_t count;
} reason_count;

/* The last statistics of one librdkafka client (the worker has several). */
typedef struct client_stats {
    char name[128]; /* the statistics' "name", e.g. rdkafka#consumer-1 */
    metrics_lag *lags;
    size_t n_lags;
    int brokers_up;
    double at; /* clock time of these statistics */
} client_stats;

struct metrics {
    _Atomic uint64_t counters[METRICS_N_COUNTERS];

    pthread_mutex_t lock; /* guards everything below */
    metrics_clock_fn clock;
    void *clock_opaque;
    reason_count reasons[METRICS_MAX_REASONS + 1]; /* +1: the overflow slot */
    size_t n_reasons;
    uint64_t bucket_counts[N_BUCKETS]; /* non-cumulative; +Inf = count */
    uint64_t cycle_count;
    double cycle_sum;
    client_stats clients[METRICS_MAX_CLIENTS];
    size_t n_clients;

    double heartbeat_at;
    double checkpoint_at; /* last checkpoint pass, or creation */
    int kafka_connected, redis_connected;
    char kafka_why[160], redis_why[160]; /* why not connected ("" = not said) */
    double redis_wait_at;                /* a Redis check in progress since then; 0 = none */
    int assigned;                        /* -1 = unknown */
    double gauges[METRICS_N_GAUGES];
};

static double clock_monotonic(void *opaque) {
    (void)opaque;
    return ul_clock_mono_s();
}

/* Caller holds the lock. */
static double now_locked(metrics *m) {
    return m->clock(m->clock_opaque);
}

metrics *metrics_new(void) {
    metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    for (int c = 0; c < METRICS_N_COUNTERS; c++)
        atomic_init(&m->counters[c], 0);
    m->clock = clock_monotonic;
    m->assigned = -1;
    for (int g = 0; g < METRICS_N_GAUGES; g++)
        m->gauges[g] = gauge_defs[g].initial;

    m->heartbeat_at = m->checkpoint_at = now_locked(m);
    return m;
}

void metrics_destroy(metrics *m) {
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->lock);
    for (size_t i = 0; i < m->n_clients; i++)
        free(m->clients[i].lags);
    free(m);
}

void metrics_set_clock(metrics *m, metrics_clock_fn fn, void *opaque) {
    pthread_mutex_lock(&m->lock);
    m->clock = fn ? fn : clock_monotonic;
    m->clock_opaque = fn ? opaque : NULL;
    m->heartbeat_at = m->checkpoint_at = now_locked(m);
    for (size_t i = 0; i < m->n_clients; i++)
        m->clients[i].at = m->heartbeat_at;

    pthread_mutex_unlock(&m->lock);
}

/* ---- counters and histogram ------------------------------------------ */

void metrics_add(metrics *m, metrics_counter c, uint64_t n) {
    atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

uint64_t metrics_count(metrics *m, metrics_counter c) {
    return atomic_load_explicit(&m->counters[c], memory_order_relaxed);
}

void metrics_set_gauge(metrics *m, metrics_gauge g, double value) {
    pthread_mutex_lock(&m->lock);
    m->gauges[g] = value;
    pthread_mutex_unlock(&m->lock);
}

double metrics_gauge_value(metrics *m, metrics_gauge g) {
    pthread_mutex_lock(&m->lock);
    double v = m->gauges[g];
    pthread_mutex_unlock(&m->lock);
    return v;
}

/* Caller holds the lock. The last slot, topic and reason "other", takes
 * what does not fit. */
static reason_count *reason_slot(metrics *m, const char *topic, const char *reason) {
    reason_count *other = &m->reasons[METRICS_MAX_REASONS];
    char t[sizeof(other->topic)], r[sizeof(other->name)];
    snprintf(t, sizeof(t), "%s", topic); /* long names are kept truncated */
    snprintf(r, sizeof(r), "%s", reason);
    for (size_t i = 0; i < m->n_reasons; i++)
        if (strcmp(m->reasons[i].topic, t) == 0 && strcmp(m->reasons[i].name, r) == 0)
            return &m->reasons[i];
    if (m->n_reasons < METRICS_MAX_REASONS && (strcmp(t, "other") || strcmp(r, "other"))) {
        reason_count *slot = &m->reasons[m->n_reasons++];
        memcpy(slot->topic, t, sizeof(t));
        memcpy(slot->name, r, sizeof(r));
        return slot;
    }
    snprintf(other->topic, sizeof(other->topic), "other");
    snprintf(other->name, sizeof(other->name), "other");
    return other;
}

void metrics_inc_dead_letter(metrics *m, const char *topic, const char *reason) {
    pthread_mutex_lock(&m->lock);
    reason_slot(m, topic ? topic : "unknown", reason ? reason : "unknown")->count++;
    pthread_mutex_unlock(&m->lock);
    metrics_add(m, METRICS_DEAD_LETTERS, 1);
}

void metrics_checkpoint_done(metrics *m) {
    metrics_add(m, METRICS_CHECKPOINT_PASSES, 1);
    pthread_mutex_lock(&m->lock);
    m->checkpoint_at = now_locked(m);
    pthread_mutex_unlock(&m->lock);
}

void metrics_observe_cycle_seconds(metrics *m, double seconds) {
    if (!(seconds >= 0) || isinf(seconds))
        return;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < N_BUCKETS; i++) {
        if (seconds <= cycle_buckets[i]) {
            m->bucket_counts[i]++;
            break;
        }
    }
    m->cycle_count++;
    m->cycle_sum += seconds;
    pthread_mutex_unlock(&m->lock);
}

/* ---- health -------------------------------------------------------------- */

void metrics_heartbeat(metrics *m) {
    pthread_mutex_lock(&m->lock);
    m->heartbeat_at = now_locked(m);
    pthread_mutex_unlock(&m->lock);
}

/* Caller holds the lock. */
static void set_link(int *flag, char *why, size_t why_size, int connected, const char *reason) {
    *flag = connected != 0;
    snprintf(why, why_size, "%s", connected || reason == NULL ? "" : reason);
}

void metrics_set_kafka_connected(metrics *m, int connected) {
    metrics_set_kafka_down(m, connected, NULL);
}

void metrics_set_redis_connected(metrics *m, int connected) {
    metrics_set_redis_down(m, connected, NULL);
}

void metrics_set_kafka_down(metrics *m, int connected, const char *why) {
    pthread_mutex_lock(&m->lock);
    set_link(&m->kafka_connected, m->kafka_why, sizeof(m->kafka_why), connected, why);
    pthread_mutex_unlock(&m->lock);
}

void metrics_set_redis_down(metrics *m, int connected, const char *why) {
    pthread_mutex_lock(&m->lock);
    set_link(&m->redis_connected, m->redis_why, sizeof(m->redis_why), connected, why);
    pthread_mutex_unlock(&m->lock);
}

void metrics_redis_waiting(metrics *m, int waiting) {
    pthread_mutex_lock(&m->lock);
    m->redis_wait_at = waiting ? now_locked(m) : 0;
    pthread_mutex_unlock(&m->lock);
}

void metrics_set_assigned_partitions(metrics *m, int n) {
    pthread_mutex_lock(&m->lock);
    m->assigned = n < 0 ? -1 : n;
    pthread_mutex_unlock(&m->lock);
}

int metrics_is_live(metrics *m, double max_age_s) {
    pthread_mutex_lock(&m->lock);
    int live = now_locked(m) - m->heartbeat_at <= max_age_s;
    pthread_mutex_unlock(&m->lock);
    return live;
}

/* Caller holds the lock. */
static int ready_locked(metrics *m, char *why, size_t why_size) {
    char buf[64];
    const char *missing = NULL, *detail = "";
    double waited = m->redis_wait_at > 0 ? now_locked(m) - m->redis_wait_at : 0;
    if (!m->kafka_connected) {
        missing = "not connected to Kafka";
        detail = m->kafka_why;
    } else if (!m->redis_connected) {
        missing = "not connected to Redis";
        detail = m->redis_why;
    } else if (waited > METRICS_REDIS_SLOW_S) {
        snprintf(buf, sizeof(buf), "a Redis call has waited %.1f s (no reply, or retrying)",
                 waited);
        missing = buf;
    } else if (m->assigned < 0) {
        missing = "no partition assignment yet (joining the group or rebalancing)";
    }
    if (why && why_size)
        snprintf(why, why_size, "%s%s%s", missing ? missing : "ready", *detail ? ": " : "", detail);
    return missing == NULL;
}

int metrics_is_ready(metrics *m, char *why, size_t why_size) {
    pthread_mutex_lock(&m->lock);
    int ready = ready_locked(m, why, why_size);
    pthread_mutex_unlock(&m->lock);
    return ready;
}

/* ---- librdkafka statistics scanner ---------------------------------------- */

#define JSON_MAX_DEPTH 64

typedef struct jscan {
    const char *s;
    size_t len, pos;
} jscan;

typedef struct lag_sink {
    metrics_lag *out;
    size_t max, n;
    int brokers_up;
    char client[128];
} lag_sink;

static void skip_ws(jscan *j) {
    while (j->pos < j->len && (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' ||
                               j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
        j->pos++;
}

static int peek(jscan *j) {
    skip_ws(j);
    return j->pos < j->len ? (unsigned char)j->s[j->pos] : -1;
}

static int eat(jscan *j, char c) {
    if (peek(j) != (unsigned char)c)
        return 0;
    j->pos++;
    return 1;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int unescape_char(jscan *j, char *ch) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (j->pos >= j->len)
        return -1;
    char e = j->s[j->pos++];
    const char *hit = e ? strchr(from, e) : NULL;
    if (hit) {
        *ch = to[hit - from];
        return 0;
    }
    if (e != 'u' || j->pos + 4 > j->len)
        return -1;
    int code = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(j->s[j->pos++]);
        if (h < 0)
            return -1;
        code = code * 16 + h;
    }
    *ch = code > 0 && code < 0x80 ? (char)code : '?'; /* names we match are ASCII */
    return 0;
}

/* A string at the cursor, unescaped into out (truncated; out may be NULL). */
static int scan_string(jscan *j, char *out, size_t out_size) {
    size_t n = 0;
    if (!eat(j, '"'))
        return -1;
    while (j->pos < j->len) {
        char ch = j->s[j->pos++];
        if (ch == '"') {
            if (out && out_size)
                out[n < out_size ? n : out_size - 1] = '\0';
            return 0;
        }
        if ((unsigned char)ch < 0x20)
            return -1;
        if (ch == '\\' && unescape_char(j, &ch) != 0)
            return -1;
        if (out && n + 1 < out_size)
            out[n++] = ch;
    }
    return -1;
}

static int scan_number(jscan *j, double *value) {
    char buf[64];
    size_t start = (skip_ws(j), j->pos), n = 0;
    while (j->pos < j->len && strchr("+-0123456789.eE", j->s[j->pos]) && j->s[j->pos])
        j->pos++;
    n = j->pos - start;
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, j->s + start, n);
    buf[n] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + n)
        return -1;
    if (value)
        *value = v;
    return 0;
}

static int scan_literal(jscan *j, const char *lit) {
    size_t n = strlen(lit);
    skip_ws(j);
    if (j->pos + n > j->len || memcmp(j->s + j->pos, lit, n) != 0)
        return -1;
    j->pos += n;
    return 0;
}

static int skip_value(jscan *j, int depth);

static int skip_container(jscan *j, char close, int is_object, int depth) {
    j->pos++; /* the opening bracket */
    if (eat(j, close))
        return 0;
    do {
        if (is_object && (scan_string(j, NULL, 0) != 0 || !eat(j, ':')))
            return -1;
        if (skip_value(j, depth + 1) != 0)
            return -1;
    } while (eat(j, ','));
    return eat(j, close) ? 0 : -1;
}

static int skip_value(jscan *j, int depth) {
    if (depth > JSON_MAX_DEPTH)
        return -1;
    switch (peek(j)) {
    case '{':
        return skip_container(j, '}', 1, depth);
    case '[':
        return skip_container(j, ']', 0, depth);
    case '"':
        return scan_string(j, NULL, 0);
    case 't':
        return scan_literal(j, "true");
    case 'f':
        return scan_literal(j, "false");
    case 'n':
        return scan_literal(j, "null");
    default:
        return scan_number(j, NULL);
    }
}

/* Iterate an object's members. Start with *first = 1. Returns 1 with the key
 * in `key` and the cursor on the value, 0 after the closing brace, -1 on a
 * syntax error. */
static int next_member(jscan *j, int *first, char *key, size_t key_size) {
    if (*first) {
        if (!eat(j, '{'))
            return -1;
        *first = 0;
        if (eat(j, '}'))
            return 0;
    } else {
        if (eat(j, '}'))
            return 0;
        if (!eat(j, ','))
            return -1;
    }
    if (scan_string(j, key, key_size) != 0 || !eat(j, ':'))
        return -1;
    return 1;
}

/* A number member as int64; other value types are skipped and leave *v. */
static int member_int(jscan *j, int64_t *v, int depth) {
    int c = peek(j);
    if (c != '-' && !(c >= '0' && c <= '9'))
        return skip_value(j, depth);
    double d;
    if (scan_number(j, &d) != 0)
        return -1;
    if (d >= -9.2e18 && d <= 9.2e18)
        *v = (int64_t)d;
    return 0;
}

static int member_bool(jscan *j, int *v, int depth) {
    int c = peek(j);
    if (c != 't' && c != 'f')
        return skip_value(j, depth);
    if (scan_literal(j, c == 't' ? "true" : "false") != 0)
        return -1;
    *v = c == 't';
    return 0;
}

static void sink_add(lag_sink *sk, const char *topic, int64_t partition, int64_t lag) {
    if (sk->n < sk->max) {
        metrics_lag *e = &sk->out[sk->n];
        snprintf(e->topic, sizeof(e->topic), "%s", topic);
        e->partition = (int32_t)partition;
        e->lag = lag;
    }
    sk->n++;
}

static int scan_partition(jscan *j, const char *topic, const char *id_key, lag_sink *sk,
                          int depth) {
    char key[64];
    int first = 1, rc, desired = 1;
    int64_t partition = strtoll(id_key, NULL, 10), lag = -1, lag_stored = -1, hi = -1, app = -1;
    if (peek(j) != '{')
        return skip_value(j, depth);
    while ((rc = next_member(j, &first, key, sizeof(key))) == 1) {
        if (strcmp(key, "partition") == 0)
            rc = member_int(j, &partition, depth + 1);
        else if (strcmp(key, "desired") == 0)
            rc = member_bool(j, &desired, depth + 1);
        else if (strcmp(key, "consumer_lag") == 0)
            rc = member_int(j, &lag, depth + 1);
        else if (strcmp(key, "consumer_lag_stored") == 0)
            rc = member_int(j, &lag_stored, depth + 1);
        else if (strcmp(key, "hi_offset") == 0)
            rc = member_int(j, &hi, depth + 1);
        else if (strcmp(key, "app_offset") == 0)
            rc = member_int(j, &app, depth + 1);
        else
            rc = skip_value(j, depth + 1);
        if (rc != 0)
            return -1;
    }
    if (rc < 0)
        return -1;
    int64_t best = lag_stored >= 0 ? lag_stored : lag;
    if (best < 0 && hi >= 0 && app >= 0 && app <= hi)
        best = hi - app; /* neither stored nor committed: behind the consumed position */
    if (partition >= 0 && partition <= INT32_MAX && desired && best >= 0)
        sink_add(sk, topic, partition, best);
    return 0;
}

static int scan_partitions(jscan *j, const char *topic, lag_sink *sk, int depth) {
    char key[64];
    int first = 1, rc;
    if (peek(j) != '{')
        return skip_value(j, depth);
    while ((rc = next_member(j, &first, key, sizeof(key))) == 1)
        if (scan_partition(j, topic, key, sk, depth + 1) != 0)
            return -1;
    return rc;
}

static int scan_topic(jscan *j, const char *topic, lag_sink *sk, int depth) {
    char key[64];
    int first = 1, rc;
    if (peek(j) != '{')
        return skip_value(j, depth);
    while ((rc = next_member(j, &first, key, sizeof(key))) == 1) {
        rc = strcmp(key, "partitions") == 0 ? scan_partitions(j, topic, sk, depth + 1)
                                            : skip_value(j, depth + 1);
        if (rc != 0)
            return -1;
    }
    return rc;
}

static int scan_topics(jscan *j, lag_sink *sk, int depth) {
    char topic[256];
    int first = 1, rc;
    if (peek(j) != '{')
        return skip_value(j, depth);
    while ((rc = next_member(j, &first, topic, sizeof(topic))) == 1)
        if (scan_topic(j, topic, sk, depth + 1) != 0)
            return -1;
    return rc;
}

static int scan_broker(jscan *j, lag_sink *sk, int depth) {
    char key[64], state[32];
    int first = 1, rc;
    if (peek(j) != '{')
        return skip_value(j, depth);
    while ((rc = next_member(j, &first, key, sizeof(key))) == 1) {
        if (strcmp(key, "state") == 0 && peek(j) == '"') {
            rc = scan_string(j, state, sizeof(state));
            if (rc == 0 && strcmp(state, "UP") == 0)
                sk->brokers_up++;
        } else {
            rc = skip_value(j, depth + 1);
        }
        if (rc != 0)
            return -1;
    }
    return rc;
}

static int scan_brokers(jscan *j, lag_sink *sk, int depth) {
    char name[256];
    int first = 1, rc;
    if (peek(j) != '{')
        return skip_value(j, depth);
    while ((rc = next_member(j, &first, name, sizeof(name))) == 1)
        if (scan_broker(j, sk, depth + 1) != 0)
            return -1;
    return rc;
}

static int scan_root(jscan *j, lag_sink *sk) {
    char key[64];
    int first = 1, rc;
    while ((rc = next_member(j, &first, key, sizeof(key))) == 1) {
        if (strcmp(key, "name") == 0 && peek(j) == '"')
            rc = scan_string(j, sk->client, sizeof(sk->client));
        else if (strcmp(key, "topics") == 0)
            rc = scan_topics(j, sk, 2);
        else if (strcmp(key, "brokers") == 0)
            rc = scan_brokers(j, sk, 2);
        else
            rc = skip_value(j, 2);
        if (rc != 0)
            return -1;
    }
    if (rc < 0)
        return -1;
    while (j->pos < j->len && j->s[j->pos] == '\0') /* a NUL-terminated copy */
        j->pos++;
    return peek(j) == -1 ? 0 : -1;
}

int metrics_parse_kafka_stats(const char *json, size_t len, metrics_lag *out, size_t max,
                              metrics_kafka_stats *info, char *errstr, size_t errstr_size) {
    jscan j = {json, json ? len : 0, 0};
    lag_sink sk = {out, out ? max : 0, 0, 0, ""};
    memset(info, 0, sizeof(*info));
    if (json == NULL || scan_root(&j, &sk) != 0) {
        ul_set_err(errstr, errstr_size,
                   "librdkafka statistics: malformed JSON near byte %zu of %zu", j.pos, j.len);
        return UL_ERR_PARSE;
    }
    info->n = sk.n;
    info->brokers_up = sk.brokers_up;
    memcpy(info->client, sk.client, sizeof(info->client));
    return UL_OK;
}

/* Caller holds the lock. The slot of `name`, a free one, or the one whose
 * statistics are oldest. */
static client_stats *client_slot(metrics *m, const char *name) {
    for (size_t i = 0; i < m->n_clients; i++)
        if (strcmp(m->clients[i].name, name) == 0)
            return &m->clients[i];
    if (m->n_clients < METRICS_MAX_CLIENTS)
        return &m->clients[m->n_clients++];
    client_stats *oldest = &m->clients[0];
    for (size_t i = 1; i < m->n_clients; i++)
        if (m->clients[i].at < oldest->at)
            oldest = &m->clients[i];
    return oldest;
}

int metrics_update_kafka_stats(metrics *m, const char *json, size_t len, char *errstr,
                               size_t errstr_size) {
    metrics_kafka_stats info;
    /* First pass counts, second fills an array of the right size; the scan is
     * cheap next to librdkafka producing the text. */
    int rc = metrics_parse_kafka_stats(json, len, NULL, 0, &info, errstr, errstr_size);
    if (rc)
        return rc;
    size_t n = info.n;
    metrics_lag *lags = n ? calloc(n, sizeof(*lags)) : NULL;
    if (n && lags == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    if (n)
        metrics_parse_kafka_stats(json, len, lags, n, &info, NULL, 0);
    pthread_mutex_lock(&m->lock);
    client_stats *c = client_slot(m, info.client);
    free(c->lags);
    memcpy(c->name, info.client, sizeof(c->name));
    c->lags = lags;
    c->n_lags = n;
    c->brokers_up = info.brokers_up;
    c->at = now_locked(m);
    pthread_mutex_unlock(&m->lock);
    return UL_OK;
}

int metrics_kafka_brokers_up(metrics *m) {
    pthread_mutex_lock(&m->lock);
    int up = m->n_clients ? 0 : -1;
    for (size_t i = 0; i < m->n_clients; i++)
        up = m->clients[i].brokers_up > up ? m->clients[i].brokers_up : up;
    pthread_mutex_unlock(&m->lock);
    return up;
}

/* ---- rendering ------------------------------------------------------------- */

char *metrics_escape_label(const char *value, char *buf, size_t size) {
    size_t n = 0;
    if (size == 0)
        return buf;
    for (const char *p = value ? value : ""; *p; p++) {
        const char *rep = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        size_t need = rep ? 2 : 1;
        if (n + need >= size)
            break;
        if (rep) {
            buf[n++] = rep[0];
            buf[n++] = rep[1];
        } else {
            buf[n++] = *p;
        }
    }
    buf[n] = '\0';
    return buf;
}

static void header(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP unlearnd_%s %s\n# TYPE unlearnd_%s %s\n", name, help, name, type);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v) {
    header(f, name, "counter", help);
    fprintf(f, "unlearnd_%s %llu\n", name, (unsigned long long)v);
}

static void gauge(FILE *f, const char *name, const char *help, double v) {
    header(f, name, "gauge", help);
    fprintf(f, "unlearnd_%s %.10g\n", name, v);
}

static void render_counters(metrics *m, FILE *f) {
    for (int c = 0; c < METRICS_N_COUNTERS; c++)
        if (counter_defs[c].name)
            counter(f, counter_defs[c].name, counter_defs[c].help,
                    metrics_count(m, (metrics_counter)c));
}

/* Caller holds the lock. */
static void render_dead_letter(metrics *m, FILE *f) {
    char topic[400], reason[200];
    header(f, "dead_letter_total", "counter",
           "Input records sent to the dead-letter topic, by source topic and reason.");
    for (size_t i = 0; i <= METRICS_MAX_REASONS; i++) {
        const reason_count *r = &m->reasons[i];
        if (i >= m->n_reasons && !(i == METRICS_MAX_REASONS && r->count))
            continue;
        fprintf(f, "unlearnd_dead_letter_total{topic=\"%s\",reason=\"%s\"} %llu\n",
                metrics_escape_label(r->topic, topic, sizeof(topic)),
                metrics_escape_label(r->name, reason, sizeof(reason)),
                (unsigned long long)r->count);
    }
}

/* Caller holds the lock. */
static void render_histogram(metrics *m, FILE *f) {
    uint64_t cumulative = 0;
    header(f, "unlearning_cycle_seconds", "histogram",
           "Duration of unlearning cycles (buffered forget requests applied).");
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cumulative += m->bucket_counts[i];
        fprintf(f, "unlearnd_unlearning_cycle_seconds_bucket{le=\"%g\"} %llu\n", cycle_buckets[i],
                (unsigned long long)cumulative);
    }
    fprintf(f, "unlearnd_unlearning_cycle_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)m->cycle_count);
    fprintf(f, "unlearnd_unlearning_cycle_seconds_sum %.10g\n", m->cycle_sum);
    fprintf(f, "unlearnd_unlearning_cycle_seconds_count %llu\n",
            (unsigned long long)m->cycle_count);
}

/* Caller holds the lock. The lag of each topic, summed over the partitions
 * this worker holds (a topic with lag 0 is still listed). */
static void render_topic_lag(metrics *m, FILE *f) {
    char label[600];
    const char *topics[METRICS_MAX_TOPICS];
    long long sums[METRICS_MAX_TOPICS];
    size_t n = 0;
    for (size_t c = 0; c < m->n_clients; c++)
        for (size_t i = 0; i < m->clients[c].n_lags; i++) {
            const metrics_lag *e = &m->clients[c].lags[i];
            size_t t = 0;
            while (t < n && strcmp(topics[t], e->topic) != 0)
                t++;
            if (t == n && n == METRICS_MAX_TOPICS)
                continue;
            if (t == n) {
                topics[n] = e->topic;
                sums[n++] = 0;
            }
            sums[t] += e->lag;
        }
    header(f, "topic_lag_messages", "gauge",
           "Messages behind the end of each input topic, over the partitions this worker holds "
           "(librdkafka statistics).");
    for (size_t t = 0; t < n; t++)
        fprintf(f, "unlearnd_topic_lag_messages{topic=\"%s\"} %lld\n",
                metrics_escape_label(topics[t], label, sizeof(label)), sums[t]);
}

/* Caller holds the lock. */
static void render_lag(metrics *m, FILE *f, double now) {
    char label[600];
    long long total = 0;
    double age = -1;
    int up = 0;
    header(f, "consumer_lag_messages", "gauge",
           "Messages behind the partition's end, per partition held by this worker "
           "(librdkafka statistics).");
    for (size_t c = 0; c < m->n_clients; c++) {
        const client_stats *cs = &m->clients[c];
        for (size_t i = 0; i < cs->n_lags; i++) {
            const metrics_lag *e = &cs->lags[i];
            fprintf(f, "unlearnd_consumer_lag_messages{topic=\"%s\",partition=\"%d\"} %lld\n",
                    metrics_escape_label(e->topic, label, sizeof(label)), (int)e->partition,
                    (long long)e->lag);
            total += e->lag;
        }
        age = now - cs->at > age ? now - cs->at : age;
        up = cs->brokers_up > up ? cs->brokers_up : up;
    }
    render_topic_lag(m, f);
    gauge(f, "worker_consumer_lag_messages",
          "Sum of consumer lag over the partitions this worker holds.", (double)total);
    gauge(f, "kafka_stats_age_seconds",
          "Seconds since the oldest of the Kafka clients' last statistics (-1 = none yet; "
          "lag is stale when large).",
          age);
    gauge(f, "kafka_brokers_up", "Kafka brokers in state UP in the last statistics.", (double)up);
}

/* Caller holds the lock. */
static void render_health(metrics *m, FILE *f, double now, double live_max_age_s) {
    gauge(f, "checkpoint_age_seconds",
          "Seconds since the last successful checkpoint pass (since start before the first).",
          now - m->checkpoint_at);
    gauge(f, "heartbeat_age_seconds", "Seconds since the worker loop last reported alive.",
          now - m->heartbeat_at);
    gauge(f, "assigned_partitions",
          "Partitions owned after the last assignment (-1 = none known: starting or "
          "rebalancing).",
          (double)m->assigned);
    gauge(f, "kafka_connected", "1 while the worker considers Kafka reachable.",
          (double)m->kafka_connected);
    gauge(f, "redis_connected", "1 while the worker's Redis connection works.",
          (double)m->redis_connected);
    gauge(f, "ready", "1 when /readyz answers 200.", (double)ready_locked(m, NULL, 0));
    gauge(f, "live", "1 when /livez answers 200.",
          (double)(now - m->heartbeat_at <= live_max_age_s));
    for (int g = 0; g < METRICS_N_GAUGES; g++)
        gauge(f, gauge_defs[g].name, gauge_defs[g].help, m->gauges[g]);
}

char *metrics_render(metrics *m, double live_max_age_s, size_t *len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (f == NULL)
        return NULL;
    render_counters(m, f);
    pthread_mutex_lock(&m->lock);
    double now = now_locked(m);
    render_dead_letter(m, f);
    render_histogram(m, f);
    render_lag(m, f, now);
    render_health(m, f, now, live_max_age_s);
    pthread_mutex_unlock(&m->lock);
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        free(buf);
        return NULL;
    }
    if (len)
        *len = size;
    return buf;
}
