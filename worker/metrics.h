/* metrics.h: the worker's counters, gauges and one histogram, their
 * Prometheus text rendering, the liveness heartbeat and the readiness flags.
 *
 * A `metrics` handle is created by the worker (no globals) and shared with the
 * HTTP server thread (worker/http.h), which renders it while the worker
 * writes: every function here is thread-safe (counters are C11 atomics; the
 * label tables and the histogram sit behind one mutex).
 *
 * Exposed series (all prefixed unlearnd_):
 *   ratings_applied_total                 counter
 *   forget_requests_received_total        counter
 *   forget_requests_completed_total       counter
 *   dead_letter_total{topic,reason}       counter, topic = the source topic,
 *                                         reason = codec_err_name() or another
 *                                         short name
 *   erasure_beyond_retention_total        counter, ERASURE requests whose receipt
 *                                         has beyond_retention > 0 (cycle.c)
 *   checkpoints_total                     counter
 *   checkpoint_age_seconds                gauge, since the last checkpoint pass
 *                                         (since start before the first one)
 *   unlearning_cycle_seconds              histogram (Prometheus default buckets)
 *   consumer_lag_messages{topic,partition} gauge, from librdkafka statistics
 *   topic_lag_messages{topic}             gauge, per input topic, sum over this
 *                                         worker's partitions (at most
 *                                         METRICS_MAX_TOPICS topics)
 *   worker_consumer_lag_messages          gauge, sum over this worker's partitions
 *   kafka_stats_age_seconds               gauge, age of the oldest client's last
 *                                         statistics (-1 before any)
 *   kafka_brokers_up                      gauge, brokers in state UP (statistics)
 *   assigned_partitions                   gauge, -1 while no assignment is known
 *   kafka_connected, redis_connected, ready, live   gauges 0/1
 *   heartbeat_age_seconds                 gauge
 *   training_epochs_total                 counter, continuous training (train.h)
 *   training_ratings_total                counter, its SGD steps
 *   training_loss_rmse, training_share, training_paused   gauges (metrics_gauge)
 *
 * WHERE THE WORKER CALLS THESE (worker.c unless another file is named):
 *   start-up         m = metrics_new(); http_server_start(m, ...) when
 *                    metrics.port > 0; then, on every consumer, a stats_cb
 *                    (kafka.h: kafka_report_stats; statistics.interval.ms
 *                    15000 unless kafka.statistics.interval.ms is set) that
 *                    calls metrics_update_kafka_stats(m, json, len)
 *                    (each client's statistics are kept apart by their
 *                    "name", so two consumers do not overwrite each other).
 *   Redis connected  metrics_set_redis_connected(m, 1) at start; every
 *                    few seconds (idle or not) the loop PINGs the store
 *                    between metrics_redis_waiting(m, 1) and (m, 0); a failed
 *                    PING is metrics_set_redis_down(m, 0, reason) (and the
 *                    worker exits: docs/operations.md, "Redis faults").
 *   Kafka            metrics_set_kafka_connected(m, 1) once the brokers
 *                    answered the topic metadata; then every few seconds a
 *                    metadata round trip of the loop sets it 1, or 0 with the
 *                    reason; 0 also from every client's error_cb
 *                    (kafka_report_error) on RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
 *                    or RD_KAFKA_RESP_ERR__FATAL. (The statistics' brokers UP
 *                    are a gauge only: a frozen broker stays UP there until
 *                    socket.timeout.ms.)
 *   rebalance_cb     on an eager revoke: metrics_set_assigned_partitions(m, -1)
 *                    (not ready while everything moves); after an assign or
 *                    a cooperative revoke: the number of partitions now
 *                    owned (0 = idle member: still ready).
 *   main loop        metrics_heartbeat(m) once per iteration (each poll), and
 *                    before each long step (loading a shard on assignment,
 *                    starting an unlearning job: cycle.c).
 *   per rating       metrics_add(m, METRICS_RATINGS_APPLIED, 1).
 *   forget request   metrics_add(m, METRICS_FORGET_RECEIVED, 1) when stored
 *                    in the forget buffer; METRICS_FORGET_COMPLETED + n when
 *                    the receipts of a cycle's partition have been produced
 *                    (cycle.c).
 *   dead letter      metrics_inc_dead_letter(m, source_topic, reason) per record
 *                    whose dead letter Kafka acknowledged (publish.c).
 *   checkpoints      METRICS_CHECKPOINTS + 1 per partition checkpoint (here
 *                    and cycle.c); metrics_checkpoint_done(m) after each
 *                    successful pass (also when nothing was dirty: the age is
 *                    the alert).
 *   factor rows      METRICS_ROWS_PUBLISHED + 1 per periodic row (publish.c).
 *   unlearning cycle metrics_observe_cycle_seconds(m, seconds) per cycle that
 *                    completed requests (from its snapshot to the publication
 *                    of its last partition; cycle.c); an ERASURE receipt with
 *                    beyond_retention > 0: METRICS_ERASURE_BEYOND_RETENTION + 1
 *                    (cycle.c).
 *   training         METRICS_TRAINING_EPOCHS + 1 per epoch, METRICS_TRAINING_RATINGS
 *                    + n per slice; the METRICS_TRAINING_* gauges at most every
 *                    250 ms and at pauses (train.c).
 *   shutdown         http_server_stop(), then metrics_destroy(m).
 */
#ifndef UL_METRICS_H
#define UL_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics;

/* A clock in seconds (monotonic by default); tests replace it. */
typedef double (*metrics_clock_fn)(void *opaque);

/* A new registry; all counters 0, not connected, no assignment, the
 * heartbeat and checkpoint age start now. NULL when out of memory. */
metrics *metrics_new(void);
/* NULL is a no-op. The HTTP server must be stopped first. */
void metrics_destroy(metrics *m);

/* Replace the clock (for tests). `fn` NULL restores the monotonic clock. */
void metrics_set_clock(metrics *m, metrics_clock_fn fn, void *opaque);

/* ---- counters ---------------------------------------------------------- */
/* The worker's counters, each counted once, here (this process since it
 * started; Redis holds the per-partition totals). Those with a name in
 * metrics.c's table are exported; the rest feed the worker's progress log
 * line. The item-updates pair gives the mean age of another worker's item
 * changes when this one applies them (the staleness between workers, less
 * the push interval the change waited before it was sent). */
typedef enum metrics_counter {
    METRICS_RATINGS_APPLIED = 0,      /* ratings_applied_total */
    METRICS_FORGET_RECEIVED,          /* forget_requests_received_total */
    METRICS_FORGET_COMPLETED,         /* forget_requests_completed_total */
    METRICS_CHECKPOINT_PASSES,        /* checkpoints_total (metrics_checkpoint_done) */
    METRICS_CHECKPOINTS,              /* partition checkpoints */
    METRICS_DEAD_LETTERS,             /* all dead letters (metrics_inc_dead_letter) */
    METRICS_ROWS_PUBLISHED,           /* factor rows published periodically */
    METRICS_ERASURE_BEYOND_RETENTION, /* erasure_beyond_retention_total */
    METRICS_ITEM_UPDATES_IN,          /* item_updates_received_total */
    METRICS_ITEM_UPDATE_AGE_MS,       /* item_updates_age_ms_total */
    METRICS_TRAINING_EPOCHS,          /* training_epochs_total */
    METRICS_TRAINING_RATINGS,         /* training_ratings_total */
    METRICS_N_COUNTERS
} metrics_counter;

void metrics_add(metrics *m, metrics_counter c, uint64_t n);
uint64_t metrics_count(metrics *m, metrics_counter c);
/* One record from `topic` dead-lettered for `reason` (a short name such as
 * "avro-decode"; both copied). At most METRICS_MAX_REASONS distinct
 * (topic, reason) pairs are kept; later new ones are counted under topic and
 * reason "other". NULL counts as "unknown". */
void metrics_inc_dead_letter(metrics *m, const char *topic, const char *reason);
#define METRICS_MAX_REASONS 64
/* A checkpoint pass succeeded: counts it and resets checkpoint_age_seconds. */
void metrics_checkpoint_done(metrics *m);

/* ---- gauges ------------------------------------------------------------ */
/* Values set by the worker and exported as they are (metrics.c's gauge
 * table gives each its name and HELP text). */
typedef enum metrics_gauge {
    METRICS_TRAINING_LOSS = 0, /* training_loss_rmse */
    METRICS_TRAINING_SHARE,    /* training_share */
    METRICS_TRAINING_PAUSED,   /* training_paused */
    METRICS_N_GAUGES
} metrics_gauge;

void metrics_set_gauge(metrics *m, metrics_gauge g, double value);
double metrics_gauge_value(metrics *m, metrics_gauge g);

/* ---- histogram --------------------------------------------------------- */
/* One unlearning cycle took `seconds` (negative or NaN values are ignored). */
void metrics_observe_cycle_seconds(metrics *m, double seconds);

/* ---- consumer lag from librdkafka statistics ---------------------------- */
typedef struct metrics_lag {
    char topic[256];
    int32_t partition;
    int64_t lag;
} metrics_lag;

typedef struct metrics_kafka_stats {
    char client[128]; /* the statistics' "name" (rdkafka#consumer-1); "" if absent */
    int brokers_up;   /* brokers whose "state" is "UP" */
    size_t n;         /* partitions with a known lag (may exceed `max`) */
} metrics_kafka_stats;

/* Scan the statistics JSON librdkafka hands to stats_cb (topics -> <name> ->
 * partitions -> <id> -> consumer_lag_stored / consumer_lag) and return the
 * lag of every partition this consumer holds: partition != -1, "desired"
 * not false, and a lag >= 0 (consumer_lag_stored when known, since the
 * worker stores offsets itself; else consumer_lag, measured from the
 * committed offset; else hi_offset - app_offset, for a consumer that neither
 * stores nor commits, like the worker's forget-requests consumer). Up to `max` entries go to `out`
 * (may be NULL); `info` gets the client name, the count and brokers up. Returns 0, or UL_ERR_PARSE
 * with the byte offset when the text is not well-formed JSON. */
int metrics_parse_kafka_stats(const char *json, size_t len, metrics_lag *out, size_t max,
                              metrics_kafka_stats *info, char *errstr, size_t errstr_size);

/* Parse and replace that client's lag table and brokers-up count (clients
 * are told apart by the statistics' "name"; at most METRICS_MAX_CLIENTS, the
 * stalest slot is reused). Malformed JSON leaves the previous values and
 * returns UL_ERR_PARSE. */
int metrics_update_kafka_stats(metrics *m, const char *json, size_t len, char *errstr,
                               size_t errstr_size);

#define METRICS_MAX_CLIENTS 8
#define METRICS_MAX_TOPICS 16

/* The most brokers any client saw UP in its last statistics; -1 before any
 * statistics arrived. */
int metrics_kafka_brokers_up(metrics *m);

/* ---- health ------------------------------------------------------------ */
/* The worker loop is alive now. */
void metrics_heartbeat(metrics *m);
void metrics_set_kafka_connected(metrics *m, int connected);
void metrics_set_redis_connected(metrics *m, int connected);
/* The same with the reason /readyz gives while not connected (copied,
 * truncated; NULL = none). */
void metrics_set_kafka_down(metrics *m, int connected, const char *why);
void metrics_set_redis_down(metrics *m, int connected, const char *why);
/* A wait on Redis starts (1) or ends (0): a reply awaited, or a call
 * retrying (a node down, CLUSTERDOWN, a slot not served); while one has
 * lasted more than METRICS_REDIS_SLOW_S the worker is not ready (a frozen
 * Redis blocks a call up to redis.timeout.ms, a retried one lasts up to
 * redis.retry.ms). */
void metrics_redis_waiting(metrics *m, int waiting);
#define METRICS_REDIS_SLOW_S 1.0
/* Partitions owned after the last assignment; -1 = none known (starting,
 * or a rebalance in progress). */
void metrics_set_assigned_partitions(metrics *m, int n);

/* 1 when the last heartbeat is at most `max_age_s` old. */
int metrics_is_live(metrics *m, double max_age_s);
/* 1 when connected to Kafka and Redis, no Redis check has waited too long,
 * and an assignment (possibly empty) is known. Otherwise 0 and a sentence
 * naming what is missing (and why, when known) in `why` (may be NULL). */
int metrics_is_ready(metrics *m, char *why, size_t why_size);

/* ---- rendering ---------------------------------------------------------- */
/* The Prometheus text exposition format (version 0.0.4) of every series,
 * with HELP and TYPE lines. `live_max_age_s` decides unlearnd_live. Returns
 * a malloc'd NUL-terminated buffer the caller frees, its length in `*len`
 * (may be NULL); NULL when out of memory. */
char *metrics_render(metrics *m, double live_max_age_s, size_t *len);

/* Write `value` into buf as a Prometheus label value (no quotes): \ as \\,
 * " as \", newline as \n. Truncates at a character boundary; returns buf. */
char *metrics_escape_label(const char *value, char *buf, size_t size);

#endif
