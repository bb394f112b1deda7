/* codec.h: the records on our topics (schemas/NAME.avsc) in Confluent wire
 * format: magic byte 0, 4-byte big-endian schema id, then the Avro binary
 * encoding of the record. Our own schemas' ids come from config; records we
 * write carry them.
 *
 * Reading, a record's id selects its writer schema. The configured id of
 * the record type is ours and is read by the hand-written decoder (the
 * fast path). Any other id is looked up: in the files of `schema_writers`,
 * then in a Confluent Schema Registry when `registry_url` is set (fetched
 * once per id, cached; schema_cache.h). Its schema is then read into ours
 * with Avro's resolution rules (resolve.h: added, removed and reordered
 * fields, defaults, promotions) and decoded and validated like our own.
 * Records whose schema cannot be found, read or fetched get the codes
 * unknown-schema, unresolved-schema and registry-unavailable.
 *
 * Decoding checks the frame, then the Avro encoding, then the meaning (ids
 * non-negative, rating finite and on the configured scale, item list not
 * empty and not too long, window from <= to, known reason) and returns one of
 * the codes below with a message saying what was wrong; the worker sends such
 * messages to the dead-letter topic with the code's name.
 *
 * Keys: ratings and forget requests are keyed by the user id as a decimal
 * string ("42"), factors by "u:<id>" / "i:<id>" so a compacted topic keeps
 * the latest row of each. Partitioning is Java's default (murmur2), exposed
 * here so tests and tools can predict a key's partition. */
#ifndef UL_CODEC_H
#define UL_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Decode outcomes. Values are distinct from core/ul_err.h codes on purpose:
 * they are reasons for the dead-letter topic, not program errors. */
typedef enum codec_err {
    CODEC_OK = 0,
    CODEC_ERR_TOO_SHORT = -101,      /* fewer than 5 bytes: no Confluent header */
    CODEC_ERR_BAD_MAGIC = -102,      /* first byte is not 0 */
    CODEC_ERR_UNKNOWN_SCHEMA = -103, /* schema id is not the one configured for the topic */
    CODEC_ERR_AVRO = -104,           /* body does not decode against the schema */
    CODEC_ERR_INVALID = -105,        /* decodes, but a value is not acceptable */
    CODEC_ERR_NOMEM = -106,          /* allocation failed while decoding */
    CODEC_ERR_UNRESOLVED = -107,     /* the writer schema cannot be read as ours (incompatible) */
    CODEC_ERR_REGISTRY = -108,       /* the schema registry could not be asked (retry later) */
} codec_err;

/* Stable short names for dead-letter headers and counters: "too-short",
 * "bad-magic", "unknown-schema", "avro-decode", "invalid", "no-memory",
 * "unresolved-schema", "registry-unavailable". */
const char *codec_err_name(int code);

#define CODEC_HEADER_SIZE 5
#define CODEC_REQUEST_ID_MAX 128 /* longest request id accepted (bytes) */

typedef struct codec_rating {
    int64_t user_id;
    int64_t item_id;
    float rating;
    int64_t event_time; /* ms since the epoch (timestamp-millis) */
} codec_rating;

typedef enum codec_reason {
    CODEC_REASON_MISTAKE = 0,
    CODEC_REASON_SOMEONE_ELSE = 1,
    CODEC_REASON_FAULTY_ACQUISITION = 2,
    CODEC_REASON_LOST_INTEREST = 3,
    CODEC_REASON_ERASURE = 4,
} codec_reason;
#define CODEC_N_REASONS 5

/* "MISTAKE", ... ; NULL for an out-of-range value. */
const char *codec_reason_name(int reason);
/* Case-insensitive name -> reason; UL_ERR_ARG when unknown. */
int codec_reason_parse(const char *name, codec_reason *reason);

/* A forget request: exactly one of `items` (n_items > 0) or the window
 * (has_window) is set. Decoding allocates `items`; free with
 * codec_forget_clear(). */
typedef struct codec_forget {
    char request_id[CODEC_REQUEST_ID_MAX + 1];
    int64_t user_id;
    int64_t *items; /* owned; NULL when the request is a window */
    size_t n_items;
    int has_window;
    int64_t window_from, window_to; /* ms, inclusive */
    codec_reason reason;
    int64_t requested_at; /* ms */
} codec_forget;

void codec_forget_clear(codec_forget *fr);

typedef enum codec_kind { CODEC_KIND_USER = 0, CODEC_KIND_ITEM = 1 } codec_kind;

/* One factor row. For encoding `vector` is borrowed; codec_decode_factor
 * allocates it (free with codec_factor_clear()). */
typedef struct codec_factor {
    int64_t model_version;
    codec_kind kind;
    int64_t id; /* raw id */
    float *vector;
    int dim;
    float bias;
} codec_factor;

void codec_factor_clear(codec_factor *f);

/* A receipt (schemas/forget_receipt.avsc; the counts are defined in
 * forget.h). Records of the first schema version, without the last three
 * fields, decode with them 0. */
typedef struct codec_receipt {
    char request_id[CODEC_REQUEST_ID_MAX + 1];
    int64_t user_id;
    int32_t forgotten; /* remembered ratings removed */
    int64_t model_version;
    int64_t received_at;      /* ms */
    int64_t completed_at;     /* ms */
    int32_t requested;        /* distinct items listed; 0 for a window */
    int32_t not_found;        /* listed items never seen (or already forgotten) */
    int32_t beyond_retention; /* at most this many are older than the retained history */
} codec_receipt;

/* One item's change in an ItemUpdates record (schemas/item_update.avsc).
 * `dvector` holds `dim` factors (0: the row did not change); for encoding it
 * is borrowed, decoded ones point into the record's `vectors`. */
typedef struct codec_item_update {
    int64_t id;
    int32_t dcount;
    double dsum;
    float dbias;
    const float *dvector;
    int dim;
} codec_item_update;

#define CODEC_UPDATE_EVENT (-1)    /* source of best-effort deltas of online learning */
#define CODEC_UPDATE_TRAINING (-2) /* source of best-effort deltas of background training */

/* The record of topic.item_updates: the changes of several items of one
 * home partition. Decoding fills `items` and `vectors` (owned; kept and
 * reused by the next decode into the same struct: free with
 * codec_item_updates_clear()). */
typedef struct codec_item_updates {
    int64_t instance;
    int32_t source; /* CODEC_UPDATE_EVENT/TRAINING, or the sending ratings partition */
    int64_t seq;    /* 0 best effort; else the source's exact-delivery sequence (> 0) */
    int64_t nonce;  /* the state's nonce (ul:model) */
    codec_item_update *items;
    size_t n_items;
    /* decoding only */
    size_t cap_items;
    float *vectors;
    size_t cap_vectors;
} codec_item_updates;

void codec_item_updates_clear(codec_item_updates *u);

/* Schema ids, validation limits and writer-schema sources (from config).
 * The strings are borrowed for the codec_new() call only. */
typedef struct codec_opts {
    int32_t schema_id_rating, schema_id_forget, schema_id_factor, schema_id_receipt;
    int32_t schema_id_item_update; /* the internal topic's records: only this id is read */
    float rating_min, rating_max;  /* accepted rating scale, inclusive */
    size_t max_forget_items;       /* longest item list accepted */
    const char *schema_writers;    /* "ID=PATH.avsc,..." writer schemas (schema.writers) */
    const char *registry_url;      /* schema.registry.url; NULL/"" = no registry */
    const char *registry_user;     /* schema.registry.user (basic auth); NULL/"" = none */
    const char *registry_password; /* schema.registry.password */
    long registry_timeout_ms;      /* per request (schema.registry.timeout.ms); <= 0 = 5000 */
    long registry_retry_ms;        /* a failed lookup is repeated no sooner; <= 0 = 5000 */
} codec_opts;

/* Defaults: ids 1..4 (rating, forget, factor, receipt) and 6 (item update; 5 is key.schema.id's),
 * scale 1..5, 10000 items, no writer files, no registry. */
void codec_opts_init(codec_opts *opts);

typedef struct codec codec;

/* Parses and checks the embedded schemas, reads the writer files and sets up
 * (without contacting it) the registry client. NULL with errstr on error.
 * Share a codec between threads freely: what it learns about schema ids is
 * guarded inside. */
codec *codec_new(const codec_opts *opts, char *errstr, size_t errstr_size);
void codec_destroy(codec *c);

/* Register our output schemas with the registry of opts (registry_url):
 * POST /subjects/<factors_topic>-value/versions with schemas/factor.avsc
 * and /subjects/<receipts_topic>-value/versions with forget_receipt.avsc,
 * and set opts->schema_id_factor / schema_id_receipt to the ids the
 * registry answers (the existing ones when already registered). Call it
 * before codec_new(). UL_ERR_ARG without a registry URL; else 0 or the
 * registry's error (registry.h) with a message. */
int codec_register_outputs(codec_opts *opts, const char *factors_topic, const char *receipts_topic,
                           char *errstr, size_t errstr_size);

/* A growable output buffer. Encoders reset `len` and write from the start;
 * the buffer is reused across calls. Free with codec_buf_free(). */
typedef struct codec_buf {
    uint8_t *data;
    size_t len, cap;
} codec_buf;

void codec_buf_free(codec_buf *b);

/* Encoders: Confluent header + Avro body into `out`. They validate like the
 * decoders (a record we would reject is never written) and return 0,
 * CODEC_ERR_INVALID or CODEC_ERR_NOMEM with a message. */
int codec_encode_rating(const codec *c, const codec_rating *r, codec_buf *out, char *errstr,
                        size_t errstr_size);
int codec_encode_forget(const codec *c, const codec_forget *fr, codec_buf *out, char *errstr,
                        size_t errstr_size);
int codec_encode_factor(const codec *c, const codec_factor *f, codec_buf *out, char *errstr,
                        size_t errstr_size);
int codec_encode_receipt(const codec *c, const codec_receipt *rc, codec_buf *out, char *errstr,
                         size_t errstr_size);
int codec_encode_item_updates(const codec *c, const codec_item_updates *u, codec_buf *out,
                              char *errstr, size_t errstr_size);

/* Decoders: 0 or a codec_err with a message naming the problem ("rating NaN",
 * "item list has 20001 items, more than forget.max.items=10000"). Trailing
 * bytes after the record are an Avro error. On error the output holds nothing
 * that needs freeing. The rating decoder allocates nothing on the fast path
 * (our own schema id); a record of another writer schema is resolved (one
 * registry request the first time an id is seen, then from the cache). */
int codec_decode_rating(const codec *c, const void *buf, size_t len, codec_rating *r, char *errstr,
                        size_t errstr_size);
int codec_decode_forget(const codec *c, const void *buf, size_t len, codec_forget *fr, char *errstr,
                        size_t errstr_size);
int codec_decode_factor(const codec *c, const void *buf, size_t len, codec_factor *f, char *errstr,
                        size_t errstr_size);
int codec_decode_receipt(const codec *c, const void *buf, size_t len, codec_receipt *rc,
                         char *errstr, size_t errstr_size);
/* The internal record is only read in our own schema (its id configured as
 * schema_id_item_update): any other id is unknown-schema. Allocates into u
 * (reusing its arrays). */
int codec_decode_item_updates(const codec *c, const void *buf, size_t len, codec_item_updates *u,
                              char *errstr, size_t errstr_size);

/* The Confluent schema id of a framed message, or -1 when the frame is too
 * short or the magic byte is wrong (to route a message by schema). */
int64_t codec_peek_schema_id(const void *buf, size_t len);

/* Keys. Write a NUL-terminated key into buf and return its length (without
 * the NUL), or -1 when buf is too small. 24 bytes always suffice. */
int codec_key_user(int64_t user_id, char *buf, size_t size);
int codec_key_factor(codec_kind kind, int64_t id, char *buf, size_t size);

/* Parse a user key ("42") back; UL_ERR_PARSE when it is not a plain
 * non-negative decimal. */
int codec_parse_user_key(const void *key, size_t len, int64_t *user_id);

/* User keys in either format the worker accepts (key.format):
 *   CODEC_KEY_STRING  the user id as a decimal string ("42");
 *   CODEC_KEY_AVRO    Confluent-Avro-serialised, as KafkaAvroSerializer
 *                     writes a key: magic 0, the key schema's id (4 bytes,
 *                     big-endian), then the Avro body of a `long` (zigzag
 *                     varint) or of a `string` holding the decimal id.
 * A Java producer's default partitioner hashes the key bytes as they are,
 * so a user's partition depends on the format (and, for Avro, on the key
 * schema's id): codec_user_partition gives it. */
typedef enum codec_key_format { CODEC_KEY_STRING = 0, CODEC_KEY_AVRO = 1 } codec_key_format;
#define CODEC_KEY_MAX 32 /* bytes of the longest user key either format writes */

/* Write user's key (Avro: as a long with `schema_id`) into buf; returns its
 * length, or -1 when buf is too small. */
int codec_user_key(codec_key_format fmt, int32_t schema_id, int64_t user, void *buf, size_t size);
/* The user id of a key; UL_ERR_PARSE when it is not a key of that format
 * (Avro: bad frame, or neither a whole long nor a string of digits). */
int codec_user_key_parse(codec_key_format fmt, const void *key, size_t len, int64_t *user);
/* The partition a Java producer (murmur2) sends user's key to; -1 when n <= 0. */
int32_t codec_user_partition(codec_key_format fmt, int32_t schema_id, int64_t user, int32_t n);

/* Java's Utils.murmur2 over the key bytes, and the partition Java's default
 * partitioner (and librdkafka's murmur2/murmur2_random) gives it:
 * (murmur2(key) & 0x7fffffff) % partition_cnt. */
int32_t codec_murmur2(const void *key, size_t len);
int32_t codec_partition(const void *key, size_t len, int32_t partition_cnt);

/* The embedded schema texts (schemas/NAME.avsc), for registering with a schema
 * registry or printing. Names: "rating", "forget_request", "factor",
 * "forget_receipt", "item_update". NULL for an unknown name. */
const char *codec_schema_text(const char *name);

#endif
