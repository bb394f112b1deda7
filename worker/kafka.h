/* kafka.h: librdkafka client plumbing shared by the worker and the tools:
 * clients built from ul_config with our logger, per-role defaults (Java-
 * compatible partitioning, the worker's idempotent producer), what a worker
 * client reports (errors, statistics), a produce call that waits out a full
 * queue, topic metadata, and the dead-letter record format.
 *
 * Dead-letter records carry the original key, value bytes, timestamp and
 * headers, and these five headers added after the original ones (values
 * are text):
 *   source.topic, source.partition, source.offset, error.code (codec_err_name
 *   or another short name), error.message (the decoder's sentence).
 * A value that would not fit the producer's message.max.bytes is cut to a
 * prefix that does, and two more headers say so: value.truncated ("true")
 * and source.value.size (the original size in bytes). */
#ifndef UL_KAFKA_H
#define UL_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

/* What a client is for; each role has its defaults (kafka.c's tables),
 * applied only where the user did not set the same kafka.* property:
 *   KAFKA_PRODUCER  partitioner=murmur2_random (Java's default), linger.ms=5;
 *   KAFKA_CONSUMER  group.id=kafka.group.id, enable.auto.commit=false,
 *                   enable.auto.offset.store=false, auto.offset.reset=earliest
 *                   (the worker stores offsets itself);
 *   KAFKA_OUTPUT    the worker's producer: KAFKA_PRODUCER's and
 *                   enable.idempotence=true (retries must not duplicate
 *                   receipts and factor rows);
 *   KAFKA_ASSIGNED  a consumer the worker assigns partitions to itself
 *                   (forget requests): KAFKA_CONSUMER's and
 *                   fetch.wait.max.ms=20 (its records are rare and
 *                   latency-sensitive; librdkafka's default holds an idle
 *                   fetch 500 ms);
 *   KAFKA_INGEST    the worker's ratings consumer: KAFKA_CONSUMER's and a
 *                   prefetch queue sized for ingest at the broker's speed
 *                   (queued.min.messages=1000000,
 *                   queued.max.messages.kbytes=65536, fetch.max.bytes=
 *                   8388608; why in kafka.c and docs/operations.md). */
typedef enum kafka_role {
    KAFKA_PRODUCER = 0,
    KAFKA_CONSUMER = 1,
    KAFKA_OUTPUT = 2,
    KAFKA_ASSIGNED = 3,
    KAFKA_INGEST = 4,
} kafka_role;

/* A client conf: every kafka.* option from cfg, librdkafka's logs routed
 * through `*log_owner` (see log_kafka_conf: the conf's opaque becomes
 * log_owner), and the role's defaults. kafka.* properties that librdkafka
 * scopes to the other kind of client (C or P in its CONFIGURATION.md) are
 * left out, so a config shared by all clients (e.g. kafka.fetch.wait.max.ms)
 * gives no CONFWARN. The caller adds callbacks and passes it to rd_kafka_new
 * (which takes it). NULL with errstr on error. */
rd_kafka_conf_t *kafka_conf_new(const ul_config *cfg, kafka_role role, ul_log **log_owner,
                                char *errstr, size_t errstr_size);

/* Callbacks a client is made with (NULL members are not set). Each gets the
 * client's opaque, `log_owner`. Giving `stats` asks for librdkafka's
 * statistics: statistics.interval.ms=15000 unless the user set
 * kafka.statistics.interval.ms. */
typedef struct kafka_hooks {
    void (*delivered)(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque);
    void (*error)(rd_kafka_t *rk, int err, const char *reason, void *opaque);
    int (*stats)(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);
    void (*rebalance)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *parts, void *opaque);
    void (*committed)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque);
} kafka_hooks;

/* kafka_conf_new + the hooks (may be NULL) + rd_kafka_new (for a consumer
 * also rd_kafka_poll_set_consumer). NULL with errstr on error. */
rd_kafka_t *kafka_client_new(const ul_config *cfg, kafka_role role, ul_log **log_owner,
                             const kafka_hooks *hooks, char *errstr, size_t errstr_size);

/* What a worker client's error and statistics callbacks do: log the error,
 * and mark Kafka disconnected in `m` when all brokers are down or the error
 * is fatal (the worker's periodic metadata check marks it connected again);
 * feed the statistics to `m` (lag, brokers up). */
void kafka_report_error(ul_log *lg, metrics *m, int err, const char *reason);
void kafka_report_stats(ul_log *lg, metrics *m, const char *json, size_t json_len);

/* The partition count of `topic`, waiting up to wait_ms for it to exist.
 * UL_ERR_IO with a message saying how to create it. */
int kafka_topic_partition_count(rd_kafka_t *rk, const char *topic, int wait_ms, int32_t *n,
                                char *errstr, size_t errstr_size);

/* Fetch the metadata of `topic` into rk's cache now (failures are ignored:
 * librdkafka fetches it itself at the first message, later). */
void kafka_topic_warm(rd_kafka_t *rk, const char *topic);

/* Produce one record (key and value copied). When the local queue is full it
 * serves delivery reports (rd_kafka_poll) and retries for up to
 * `block_ms` (-1 = forever). `partition` may be RD_KAFKA_PARTITION_UA to let
 * the partitioner choose. Returns 0 or UL_ERR_IO with librdkafka's reason. */
int kafka_produce(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                  size_t key_len, const void *value, size_t value_len, void *msg_opaque,
                  int block_ms, char *errstr, size_t errstr_size);

/* A dead letter: the consumed record it stands for, and why. */
typedef struct kafka_dead_letter {
    const char *source_topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp;                 /* the record's, ms since the epoch; -1 = none */
    const rd_kafka_headers_t *headers; /* the record's own; NULL = none */
    const void *key;
    size_t key_len;
    const void *value; /* the bytes sent: the value, or a prefix of it */
    size_t value_len;
    size_t value_size; /* the original value's size (> value_len: truncated) */
    const char *error_code, *error_message;
} kafka_dead_letter;

#define KAFKA_DEAD_LETTER_HEADERS 7     /* ours, at most */
#define KAFKA_DEAD_LETTER_OVERHEAD 1024 /* record and batch framing, with margin */

/* The dead letter of consumed message rkm (pointers borrowed from it), the
 * whole value kept. */
void kafka_dead_letter_of(const rd_kafka_message_t *rkm, const char *error_code,
                          const char *error_message, kafka_dead_letter *dl);
/* How many bytes of dl's value fit in rk's message.max.bytes with its key
 * and headers (dl->value_size when all of it does). */
size_t kafka_dead_letter_fit(rd_kafka_t *rk, const kafka_dead_letter *dl);
/* Produce dl (copied) to the dead-letter topic with the headers above;
 * msg_opaque goes to the delivery report. Returns 0, or UL_ERR_IO with
 * librdkafka's reason (and its code in *code, when code is not NULL). */
int kafka_produce_dead_letter(rd_kafka_t *rk, const char *dead_letter_topic,
                              const kafka_dead_letter *dl, void *msg_opaque,
                              rd_kafka_resp_err_t *code, char *errstr, size_t errstr_size);

/* Offsets of every partition of `topic`: the sum over partitions of the low
 * and high watermarks, and the partition count. A low watermark above 0
 * means the broker deleted older messages (retention; the local mock broker
 * drops data beyond ~5 MiB per partition). Returns 0 or UL_ERR_IO. */
int kafka_topic_offsets(rd_kafka_t *rk, const char *topic, int timeout_ms, int64_t *low_sum,
                        int64_t *high_sum, int *n_partitions, char *errstr, size_t errstr_size);

/* Read a text header of a consumed message into buf (NUL-terminated,
 * truncated). Returns 0, or -1 when the header is absent. */
int kafka_header_text(const rd_kafka_message_t *rkm, const char *name, char *buf, size_t size);

#endif
