/* publish.h: everything the stream worker writes to Kafka, through its one
 * producer (kafka.h's KAFKA_OUTPUT role: idempotent):
 *   - the messages of an unlearning cycle (changed factor rows, receipts),
 *     kept as the partition's outbox entry from the cycle's checkpoint until
 *     Kafka acknowledged every one of them (delivery tracking), and
 *     published again after a crash or a failed delivery;
 *   - the exact item deliveries of a checkpoint (item-updates records, one
 *     per destination home partition, produced to that partition), kept as
 *     the partition's delivery entry until acknowledged, one entry in flight
 *     per partition so that a destination receives a source's sequence in
 *     order;
 *   - the factor rows changed since the last publish: by events every
 *     publish.interval.ms, by training every publish.training.interval.ms
 *     (best effort: a failed delivery makes the next interval publish every
 *     owned row), and every row of a partition taken over;
 *   - the best-effort item deltas (item-updates records) live_push hands
 *     over;
 *   - dead letters, kept until acknowledged (see publish_dead_letter).
 * Failed messages are summarised (one ERROR line per kind, topic and reason
 * at most every 10 s), never logged one by one.
 * Nothing a checkpoint made is published before the checkpoint reached a
 * replica (shard.replicated), so a failover cannot undo what was announced.
 * It owns the outbox record format and is the one place that knows that a
 * published item row's bias carries the global mean (docs/stream.md).
 *
 * Outbox entry (shard.h's outbox_entry.blob, stored in Redis as it is): a
 * sequence of records, integers little-endian,
 *
 *     u8 kind, i64 id (kinds that have one), u32 key length, key,
 *     u32 value length, value (the Kafka message, Avro-encoded)
 *
 * so publishing again needs no encoding and marking a record's row needs no
 * parsing of its key. Kinds 0 and 1 are the records of older versions (no
 * id): still published, never marked.
 *
 * Single-threaded, like the loop that calls it; librdkafka's delivery
 * reports are served inside publish_poll() and publish_flush(). */
#ifndef UL_PUBLISH_H
#define UL_PUBLISH_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "config.h"
#include "forget.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "shard.h"
#include "ul_buf.h"

/* ---- the outbox record format ------------------------------------------ */

typedef enum publish_kind {
    PUBLISH_OLD_FACTOR = 0,   /* a factor row of an older version (no id) */
    PUBLISH_OLD_RECEIPT = 1,  /* a receipt of an older version (no id) */
    PUBLISH_USER_ROW = 2,     /* to topic.factors; id = the user */
    PUBLISH_ITEM_ROW = 3,     /* to topic.factors; id = the item */
    PUBLISH_RECEIPT = 4,      /* to topic.forget_receipts; id = the user */
    PUBLISH_ITEM_UPDATES = 5, /* to topic.item_updates, partition id (the items' home) */
    PUBLISH_N_KINDS
} publish_kind;

typedef struct publish_record {
    publish_kind kind;
    int64_t id; /* -1 for the old kinds */
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
} publish_record;

/* Append a record to an entry being built (b->oom on allocation failure). */
void publish_record_put(ul_buf *b, const publish_record *r);

/* The record at *pos of an entry of `len` bytes, *pos moved past it; key
 * and value are borrowed from the entry. Returns 1, 0 at the end, or -1 when
 * the rest of the entry is malformed (truncated, unknown kind). */
int publish_record_next(const unsigned char *entry, size_t len, size_t *pos, publish_record *r);

/* ---- the publisher ----------------------------------------------------- */

typedef struct publisher publisher;

/* The producer (its output topics' metadata fetched now: librdkafka 2.0.2
 * otherwise holds the first message to an unknown topic up to 1 s, #5032)
 * and the publishing state. cfg, lg, m, c and lv are borrowed for the
 * publisher's lifetime. NULL with errstr. */
publisher *publish_new(const ul_config *cfg, ul_log *lg, metrics *m, const codec *c, live *lv,
                       char *errstr, size_t errstr_size);
/* Destroys the producer (undelivered messages are dropped: flush first). */
void publish_destroy(publisher *p);

/* Encode the messages of cycle c (its changed rows, then one receipt per
 * request) as shard s's outbox entry of c->version, unsaved: the caller
 * checkpoints it with the cycle's result, then calls publish_outbox_entry.
 * UL_ERR_NOMEM with errstr (nothing added). */
int publish_outbox_add(publisher *p, shard *s, const forget_cycle *c, char *errstr,
                       size_t errstr_size);
/* Produce every record of outbox entry e of `partition`; once Kafka
 * acknowledged all of them publish_poll drops the entry (the next checkpoint
 * deletes it from Redis). UL_ERR_NOMEM with errstr. */
int publish_outbox_entry(publisher *p, int32_t partition, outbox_entry *e, char *errstr,
                         size_t errstr_size);
/* Publish every outbox entry of the owned partitions that is not in flight
 * (left by a previous owner, or a failed delivery), and mark its rows: a
 * row published again may be older than one published since, so the next
 * publish_changed_class puts the current one last. UL_ERR_NOMEM with errstr. */
int publish_outboxes(publisher *p, char *errstr, size_t errstr_size);

/* live_encode_fn (opaque: the codec): `u` encoded as one outbox record of
 * kind PUBLISH_ITEM_UPDATES for partition `home`, appended to `entry`. */
int publish_delivery_record(void *codec, const codec_item_updates *u, int32_t home, ul_buf *entry,
                            char *errstr, size_t errstr_size);
/* Publish the oldest delivery entry of every owned partition whose last
 * checkpoint reached a replica, unless one of its entries is in flight
 * already (publish_poll drops an acknowledged one; the next call sends the
 * next). UL_ERR_NOMEM with errstr. */
int publish_deliveries(publisher *p, char *errstr, size_t errstr_size);
/* live_push_fn (opaque: the publisher): produce a best-effort item-updates
 * record to partition `home` (never re-sent; failures are logged). */
void publish_item_updates(void *publisher, int32_t home, const codec_item_updates *u);

/* Publish every row of class cls (SHARD_EVENT: changed by events;
 * SHARD_TRAINING: by training) marked since the last time
 * (live_publish_marked), each once; after a failed delivery of such a row,
 * every owned row. */
void publish_changed_class(publisher *p, shard_class cls);

/* Send a consumed message to the dead-letter topic (kafka.h's record: its
 * own headers and timestamp kept, ours added, a value too large for
 * message.max.bytes cut to fit) with `reason` (a short name) and `why`;
 * logged now, counted (metrics) once Kafka acknowledged it. Until then it is
 * kept and produced again after a failure; while any of a partition's dead
 * letters is pending the caller must not checkpoint that partition. Returns
 * UL_OK or UL_ERR_NOMEM. */
int publish_dead_letter(publisher *p, const rd_kafka_message_t *rkm, const char *reason,
                        const char *why);
/* Dead letters of source partition `partition` (-1: of all) not yet
 * acknowledged. */
size_t publish_dead_letters_pending(const publisher *p, int32_t partition);
/* Serve delivery reports for up to timeout_ms, or until none of those dead
 * letters is in flight; returns how many are still pending. */
size_t publish_settle_dead_letters(publisher *p, int32_t partition, int timeout_ms);
/* Forget the pending dead letters of a partition given up without its
 * checkpoint (its next owner replays their records); those in flight are
 * still counted if they arrive. */
void publish_drop_dead_letters(publisher *p, int32_t partition);

/* Serve delivery reports: an outbox entry whose messages are all
 * acknowledged is dropped, one with a failed message is published again by
 * the next publish_outboxes. UL_ERR_NOMEM with errstr. */
int publish_poll(publisher *p, char *errstr, size_t errstr_size);
/* Wait up to timeout_ms for every message in flight; returns how many are
 * still in flight (0 when all were delivered or failed). */
int publish_flush(publisher *p, int timeout_ms);
/* Messages produced without a delivery report yet, and a sentence saying
 * what they are (periodic rows, outbox records, dead letters) and what
 * happens to each if the process stops now, into `what`. */
int publish_in_flight(const publisher *p, char *what, size_t size);

#endif
