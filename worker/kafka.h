/* kafka.h: librdkafka client plumbing shared by the worker and the tools:
 * client configs built from ul_config with our logger and Java-compatible
 * partitioning, a produce call that waits out a full queue, and the
 * dead-letter record format.
 *
 * Dead-letter records carry the original key and value bytes unchanged and
 * these headers (values are text):
 *   source.topic, source.partition, source.offset, error.code (codec_err_name
 *   or another short name), error.message (the decoder's sentence). */
#ifndef UL_KAFKA_H
#define UL_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "log.h"

typedef enum kafka_role { KAFKA_PRODUCER = 0, KAFKA_CONSUMER = 1 } kafka_role;

/* A client conf: every kafka.* option from cfg, librdkafka's logs routed
 * through `*log_owner` (see log_kafka_conf: the conf's opaque becomes
 * log_owner), and role defaults the user did not override:
 *   producer: partitioner=murmur2_random (Java's default), linger.ms=5;
 *   consumer: group.id=kafka.group.id, enable.auto.commit=false, enable.auto.offset.store=false,
 *             auto.offset.reset=earliest (the worker stores offsets itself).
 * kafka.* properties that librdkafka scopes to the other role (C or P in its
 * CONFIGURATION.md) are left out, so a config shared by all clients (e.g.
 * kafka.fetch.wait.max.ms) gives no CONFWARN.
 * The caller adds callbacks and passes it to rd_kafka_new (which takes it).
 * NULL with errstr on error. */
rd_kafka_conf_t *kafka_conf_new(const ul_config *cfg, kafka_role role, ul_log **log_owner,
                                char *errstr, size_t errstr_size);

/* Shortcut: kafka_conf_new + rd_kafka_new (producer or consumer; for a
 * consumer also rd_kafka_poll_set_consumer). NULL with errstr on error. */
rd_kafka_t *kafka_client_new(const ul_config *cfg, kafka_role role, ul_log **log_owner,
                             char *errstr, size_t errstr_size);

/* Produce one record (key and value copied). When the local queue is full it
 * serves delivery reports (rd_kafka_poll) and retries for up to
 * `block_ms` (-1 = forever). `partition` may be RD_KAFKA_PARTITION_UA to let
 * the partitioner choose. Returns 0 or UL_ERR_IO with librdkafka's reason. */
int kafka_produce(rd_kafka_t *rk, const char *topic, int32_t partition, const void *key,
                  size_t key_len, const void *value, size_t value_len, void *msg_opaque,
                  int block_ms, char *errstr, size_t errstr_size);

/* Send a consumed message to the dead-letter topic with the headers above.
 * Returns 0 or UL_ERR_IO. */
int kafka_produce_dead_letter(rd_kafka_t *rk, const char *dead_letter_topic,
                              const rd_kafka_message_t *rkm, const char *error_code,
                              const char *error_message, char *errstr, size_t errstr_size);

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
