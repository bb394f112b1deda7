/* broker.h: the local development broker: librdkafka's mock cluster hosted in
 * this process, with our topics created, its bootstrap address printed and
 * written to a file the other commands read (kafka.bootstrap.servers
 * defaults to that file's content).
 *
 * Limits (librdkafka 2.0.2's mock cluster, see docs/broker.md): in memory
 * only; about 5 MiB or 100k batches per partition, older data dropped
 * silently; transactional calls accepted without their semantics. Production
 * points kafka.bootstrap.servers at a real Kafka. */
#ifndef UL_BROKER_H
#define UL_BROKER_H

#include <stddef.h>

#include "config.h"
#include "log.h"

#define BROKER_MAX_TOPICS 16

/* Default partitions per topic. Enough that MovieLens-1M (~29 MB of
 * ratings on the wire) stays far below the mock cluster's ~5 MiB per
 * partition: with 4, a quarter of it was silently dropped (docs/broker.md). */
#define BROKER_DEFAULT_PARTITIONS 16

typedef struct broker_opts {
    int partitions; /* per topic, default BROKER_DEFAULT_PARTITIONS */
    int n_brokers;  /* mock brokers, default 1 */
    /* Topics to create (borrowed strings); default: none, see
     * broker_opts_from_config(). */
    const char *topics[BROKER_MAX_TOPICS];
    int n_topics;
    /* Where to write the bootstrap address (borrowed); NULL = don't write. The
     * file is written atomically (temp file + rename) and removed by
     * broker_stop(). */
    const char *bootstrap_file;
} broker_opts;

void broker_opts_init(broker_opts *opts);

/* Fill topics (every topic option of cfg: ratings, forget-requests,
 * factors, forget-receipts, dead-letter as named there) and bootstrap_file
 * (cfg->bootstrap_file) from a config. Strings are borrowed from cfg. */
void broker_opts_from_config(broker_opts *opts, const ul_config *cfg);

typedef struct broker broker;

/* Start the mock cluster (its threads serve clients until broker_stop),
 * create the topics, write the bootstrap file. `lg` is borrowed until
 * broker_stop and may be NULL. NULL with errstr on error (e.g. the bootstrap
 * file's directory is not writable). */
broker *broker_start(const broker_opts *opts, ul_log *lg, char *errstr, size_t errstr_size);

/* "127.0.0.1:port[,...]", valid until broker_stop. */
const char *broker_bootstraps(const broker *b);

/* Destroy the cluster (all data is lost) and remove the bootstrap file if this
 * broker wrote it. NULL is a no-op. */
void broker_stop(broker *b);

#endif
