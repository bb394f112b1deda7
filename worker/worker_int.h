/* worker_int.h: not API: shared by worker*.c only (worker.c, assign.c,
 * setup.c; no other file includes it). The worker's struct, the input-topic
 * table's row type, and the few calls one of these files makes into another.
 * The public API is worker.h. */
#ifndef UL_WORKER_INT_H
#define UL_WORKER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "config.h"
#include "cycle.h"
#include "http.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "redis_local.h"
#include "shard.h"
#include "store.h"
#include "train.h"
#include "ul_err.h"
#include "worker.h"

/* How an input topic's partitions reach this worker; each mode has its
 * consumer. */
typedef enum input_assign {
    INPUT_GROUP = 0,     /* subscribed in the consumer group; its partitions are what this
                          * worker owns (exactly one input) */
    INPUT_ALONGSIDE = 1, /* partition P assigned by the worker along with group partition P */
    INPUT_ALL = 2,       /* every partition, always (the item replica): its handler gets the
                          * record whether or not the partition is owned, and the live keeps
                          * the positions (item-updates) */
    INPUT_N_ASSIGN = 3
} input_assign;

struct worker {
    ul_log *log; /* first: the consumers' opaque (log_kafka_conf) */
    metrics *metrics;
    const ul_config *cfg;
    codec *codec;
    redis_local *rl;
    store *st;
    live *lv;
    publisher *pub;
    train *train;                         /* continuous training, called from the loop */
    uint64_t pushed_epochs;               /* training epochs whose item changes went out */
    rd_kafka_t *consumer[INPUT_N_ASSIGN]; /* by input_assign */
    const char *topic[SHARD_N_INPUTS];    /* the input topics' names (borrowed from cfg) */
    int32_t n_parts;
    int64_t start_offset;                     /* where a partition with no stored offset starts */
    codec_key_format key_format;              /* key.format */
    int64_t (*lag_committed)[SHARD_N_INPUTS]; /* per partition: offsets committed for lag */
    cycle *cycles;
    uint8_t *hwm_wanted;           /* per partition: buffered requests wait for their watermark */
    int64_t hwm_retry_ms;          /* after a failed watermark query, not before (monotonic) */
    rd_kafka_topic_t *check_topic; /* the group input's topic, for the Kafka check */
    int kafka_down;                /* the last Kafka check failed */
    int fatal;
    char fatal_msg[3 * UL_ERRSTR_SIZE];
    http_server *http;      /* NULL when metrics.port is 0 */
    codec_item_updates upd; /* the item-updates record being applied (reused) */
    int32_t flush_next;     /* the next partition due a row flush (round-robin) */
    uint64_t upd_errors;    /* item-updates records that did not apply */
};

/* An input's handler: decode the record, check it, apply it to shard s (the
 * partition's; the caller advances the offset). Returns CODEC_OK; a
 * codec_err, UL_ERR_RANGE or UL_ERR_PARSE with a message dead-letters the
 * record (reject_reason); UL_ERR_NOMEM is fatal. */
typedef int (*input_fn)(worker *w, shard *s, const rd_kafka_message_t *rkm, char *err, size_t size);

typedef struct input_topic {
    const char *key;    /* config key of the topic's name */
    const char *label;  /* short name in `unlearnd state` (offset.<label>) */
    const char *schema; /* the record it carries, schemas/<schema>.avsc */
    input_assign assign;
    int lag_commit; /* commit its durable offsets to Kafka for lag tools */
    input_fn on_record;
} input_topic;

/* worker.c: the input-topic table and the worker's fatal stop. */

/* Row i of the input-topic table (0 <= i < SHARD_N_INPUTS). */
const input_topic *worker_input(int i);

/* The input every partition's ownership follows. */
int worker_group_input(void);

/* Stop the worker: the loop ends and worker_run returns msg (the first one
 * set wins; it is logged at once). */
void worker_set_fatal(worker *w, const char *msg);

/* A Redis fault: fatal, with what failed and how (docs/operations.md). */
void worker_redis_fault(worker *w, const char *what, const char *err);

/* Send every change not sent yet (item deltas, marked rows), before a
 * partition's final row flush. */
void worker_send_changes(worker *w);

/* assign.c: partition ownership. */

/* librdkafka's rebalance callback of the group consumer (opaque: the worker). */
void assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);

/* A checkpoint of partition p failed with rc (err says how): a moved fence
 * reloads the partition, anything else is fatal. */
void assign_checkpoint_failed(worker *w, int32_t p, int rc, const char *err);

#endif
