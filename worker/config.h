/* config.h: the worker's configuration: one table in config.c describes every
 * option (name, type, default, range, doc line); --help and --dump-config are
 * generated from it.
 *
 * Precedence, lowest first: defaults < file (`key=value` lines, `#` comments;
 * errors reported as path:line) < environment (UNLEARND_<KEY>, dots as
 * underscores, upper case: kafka.group.id -> UNLEARND_KAFKA_GROUP_ID) <
 * command-line flags (`--key value` or `--key=value`).
 *
 * Every `kafka.*` key is handed to librdkafka unchanged (minus the prefix) and
 * is validated when set by applying it to a scratch rd_kafka_conf_t. `redis.*`
 * keys are the store's (table rows).
 *
 * Secrets: config.c's `secret_rules` table (one source) says which keys hold
 * secrets: every property librdkafka flags sensitive (sasl.username,
 * sasl.password, ssl.key.*, ssl.keystore.password, ssl.ca.pem,
 * sasl.oauthbearer.config, ...) and any key containing password, passphrase
 * or secret, or ending in .pem or .key. Their values are masked in
 * --dump-config and config_value(), never quoted in errors, and handed to
 * the logger (config_log_secrets) so no log line prints them; credentials
 * embedded in any other value (user:password@host) are masked too
 * (worker/redact.h), and refused in endpoints by config_validate.
 *
 * The parsed values live in the public struct below (read it directly; write
 * only through config_set so origins and validation stay right). */
#ifndef UL_CONFIG_H
#define UL_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "log.h"

typedef struct config_kv config_kv; /* a kafka.* pass-through entry, opaque */

typedef struct ul_config {
    /* Kafka */
    char *kafka_bootstrap;      /* kafka.bootstrap.servers; "" until resolved */
    char *kafka_group_id;       /* kafka.group.id */
    char *bootstrap_file;       /* broker.bootstrap.file: the local broker's address file */
    char *topic_ratings;        /* topic.ratings */
    char *topic_forget;         /* topic.forget_requests */
    char *topic_factors;        /* topic.factors */
    char *topic_receipts;       /* topic.forget_receipts */
    char *topic_dead_letter;    /* topic.dead_letter */
    char *topic_item_updates;   /* topic.item_updates (internal) */
    long schema_id_rating;      /* schema.id.rating: Confluent schema ids */
    long schema_id_forget;      /* schema.id.forget_request */
    long schema_id_factor;      /* schema.id.factor */
    long schema_id_receipt;     /* schema.id.forget_receipt */
    long schema_id_item_update; /* schema.id.item_update */
    char *key_format;           /* key.format: string|avro (user keys of the inputs) */
    long key_schema_id;         /* key.schema.id: Avro keys' schema id (key.format=avro) */
    /* Writer schemas (worker/schema_cache.h) */
    char *schema_writers;            /* schema.writers: ID=PATH.avsc,... */
    char *schema_registry_url;       /* schema.registry.url; "" = no registry */
    char *schema_registry_user;      /* schema.registry.user (basic auth) */
    char *schema_registry_password;  /* schema.registry.password (secret) */
    long schema_registry_timeout_ms; /* schema.registry.timeout.ms */
    long schema_registry_register;   /* schema.registry.register: 1 = register outputs */
    /* Redis (the store) */
    char *redis_host;        /* redis.host; "" = start a local redis-server */
    long redis_port;         /* redis.port */
    char *redis_cluster;     /* redis.cluster: seed nodes host:port,...; "" = redis.host */
    char *redis_user;        /* redis.user: ACL user; "" = default user */
    char *redis_password;    /* redis.password; "" = none (secret) */
    long redis_db;           /* redis.db */
    long redis_timeout_ms;   /* redis.timeout.ms */
    long redis_retry_ms;     /* redis.retry.ms */
    long redis_wait_ms;      /* redis.wait.ms */
    char *redis_server_path; /* redis.server.path: binary for the local server */
    /* Unlearning and the live model */
    char *method;                      /* method: one of core's stream methods (unlearn.h) */
    long cycle_interval_ms;            /* cycle.interval.ms */
    long publish_interval_ms;          /* publish.interval.ms */
    long cycle_max_batch;              /* cycle.max.batch: forget requests per cycle */
    long checkpoint_interval_ms;       /* checkpoint.interval.ms */
    char *on_truncated;                /* on.truncated: refuse|accept (input records lost) */
    long rows_flush_interval_ms;       /* rows.flush.interval.ms */
    long items_push_interval_ms;       /* items.push.interval.ms */
    long training_push_interval_ms;    /* training.push.interval.ms */
    long publish_training_interval_ms; /* publish.training.interval.ms */
    long retention_per_user;           /* retention.per.user: recent ratings kept per user */
    long model_k;                      /* model.k */
    double learning_rate;              /* model.learning.rate */
    double reg;                        /* model.reg */
    double rating_min;                 /* rating.min */
    double rating_max;                 /* rating.max */
    long forget_max_items;             /* forget.max.items */
    /* Continuous training (worker/train.h) */
    long training_enabled;               /* training.enabled: on/off */
    double training_share;               /* training.share: of the loop's time while events flow */
    double training_idle_share;          /* training.idle.share: of it while the input is idle */
    double training_slice_ms;            /* training.slice.ms: longest slice */
    double training_min_improvement;     /* training.min.improvement: pause threshold */
    double training_resume_fraction;     /* training.resume.fraction: new ratings to resume */
    double training_steps_per_event;     /* training.steps.per.event: cap while events flow */
    double training_learning_rate;       /* training.learning.rate: per-row schedule's start */
    double training_learning_rate_decay; /* training.learning.rate.decay: per pass */
    double training_learning_rate_min;   /* training.learning.rate.min: its floor */
    /* Logging */
    char *log_level; /* log.level: error|warn|info|debug */
    /* Metrics and health (worker/http.h) */
    char *metrics_bind;           /* metrics.bind */
    long metrics_port;            /* metrics.port; 0 = no HTTP server */
    long metrics_live_timeout_ms; /* metrics.live.timeout.ms: /livez staleness */

    /* Private: kafka.* pass-through entries and per-key origins. */
    config_kv *kafka_extra;
    char **origins;
} ul_config;

/* A config holding the defaults. NULL when out of memory. */
ul_config *config_new(void);
void config_destroy(ul_config *cfg);

/* Set one option from text. `origin` names where it came from for error
 * messages ("worker.conf:12", "UNLEARND_MODEL_K", "--model.k"); may be NULL.
 * Unknown keys, values of the wrong type or outside the range, and kafka.*
 * values librdkafka rejects all return UL_ERR_ARG with a message such as
 * "worker.conf:12: model.k: 0 is outside 1..1024". */
int config_set(ul_config *cfg, const char *key, const char *value, const char *origin, char *errstr,
               size_t errstr_size);

/* Apply a `key=value` file. Blank lines and lines whose first non-blank
 * character is `#` are skipped; spaces around key and value are trimmed.
 * Errors name path:line and what is wrong, never the line's text (it may hold
 * a secret: `redis.password: hunter2`). */
int config_load_file(ul_config *cfg, const char *path, char *errstr, size_t errstr_size);

/* Apply UNLEARND_<KEY> variables from `envp` (NULL-terminated, e.g.
 * `environ`). Table keys are looked up by their env names; any other
 * UNLEARND_KAFKA_<X> becomes kafka.<x> with underscores as dots. Other
 * UNLEARND_* variables are ignored (they may belong to other tools), except
 * UNLEARND_CONFIG, which config_load() reads. */
int config_load_env(ul_config *cfg, char *const *envp, char *errstr, size_t errstr_size);

/* What config_load() found on the command line besides options. */
typedef struct config_cli {
    int help;                /* --help / -h was given */
    int dump;                /* --dump-config was given */
    const char *config_path; /* --config PATH (or UNLEARND_CONFIG), borrowed; may be NULL */
    int n_rest;              /* arguments that are not config options, in order */
    char **rest;             /* borrowed from argv; owned array, freed by config_cli_free */
} config_cli;

void config_cli_free(config_cli *cli);

/* The whole sequence in precedence order: the file named by --config (or
 * UNLEARND_CONFIG), then `envp`, then the flags in argv[1..argc-1]. Flags
 * naming a table key or kafka.* are consumed (`--key value`, `--key=value`);
 * --config, --help/-h and --dump-config are recorded in `cli`; a flag with a
 * dot that names no option is an error (a mistyped key); everything else is
 * left in cli->rest, in order, for the command's own parser. Does not call
 * config_validate(). */
int config_load(ul_config *cfg, int argc, char **argv, char *const *envp, config_cli *cli,
                char *errstr, size_t errstr_size);

/* Cross-field checks (rating.min < rating.max, method known, log level
 * known, no credentials inside kafka.bootstrap.servers, redis.host or
 * redis.cluster, all kafka.* accepted together by librdkafka) and resolution of
 * kafka.bootstrap.servers: when empty, the first line of
 * broker.bootstrap.file is used; when that file is missing too, the error
 * says to start `unlearnd broker` or set kafka.bootstrap.servers. With
 * `need_kafka` 0 the bootstrap is not required (for commands that do not
 * talk to Kafka). */
int config_validate(ul_config *cfg, int need_kafka, char *errstr, size_t errstr_size);

/* A new rd_kafka_conf_t with every kafka.* value applied (bootstrap.servers
 * included) except kafka.group.id, which only consumers take (kafka.h's
 * kafka_conf_new adds it for KAFKA_CONSUMER; producers would warn). The
 * caller owns it (rd_kafka_new takes it over). NULL with errstr on error. */
rd_kafka_conf_t *config_kafka_conf(const ul_config *cfg, char *errstr, size_t errstr_size);
/* The same, applying only the kafka.* keys (without the prefix) for which
 * keep(key, opaque) returns non-zero; keep NULL = all. kafka.h uses it to
 * give each client only the properties of its role. */
rd_kafka_conf_t *config_kafka_conf_only(const ul_config *cfg,
                                        int (*keep)(const char *key, void *opaque), void *opaque,
                                        char *errstr, size_t errstr_size);

/* The current value of `key` as text into buf; unless `reveal`, a secret
 * key's value is "********" and credentials embedded in any other value are
 * masked (masking comes before truncation to `size`). Returns 0, or
 * UL_ERR_ARG for a key that is neither a table option nor a kafka.* key set. */
int config_value(const ul_config *cfg, const char *key, int reveal, char *buf, size_t size);

/* The value of a text option (text, topic or choice; e.g. "topic.ratings"),
 * borrowed from cfg until that option is set again. Unmasked: never log a
 * secret through it. NULL for an unknown key or a numeric option. */
const char *config_str(const ul_config *cfg, const char *key);

/* The names of every topic option (inputs and outputs), in the table's
 * order, borrowed like config_str; at most `max`. Returns how many. */
int config_topics(const ul_config *cfg, const char **names, int max);

/* 1 when `key` (with its kafka. prefix) holds a secret: a row of the
 * secret_rules table matches it (case-insensitive). */
int config_key_is_secret(const char *key);

/* Give `lg` (log_add_secret) every non-empty value of a secret key, so no
 * log line shows it, wherever it comes from (librdkafka's own lines too).
 * Call before the logger is used by other threads; values set later are not
 * covered. Returns 0 or UL_ERR_NOMEM. */
int config_log_secrets(const ul_config *cfg, ul_log *lg);

/* 1 when `key` still has its default value (no file, environment or flag
 * set it). */
int config_is_default(const ul_config *cfg, const char *key);

/* 1 when a Redis is configured (redis.host or redis.cluster). */
int config_has_redis(const ul_config *cfg);

/* The options table as help text: one entry per option with its type, range,
 * default and doc line, then the precedence rules. */
void config_print_help(FILE *out);

/* Every option as `key=value` (secrets and embedded credentials masked, as
 * config_value), each preceded by a comment
 * line saying where the value came from; the output is a valid config file
 * (with secrets to fill in). */
void config_dump(const ul_config *cfg, FILE *out);

/* The default path of the local broker's bootstrap file:
 * $XDG_RUNTIME_DIR/unlearnd-broker.addr, else /tmp/unlearnd-broker.addr.
 * Written into buf; returns buf. */
char *config_default_bootstrap_file(char *buf, size_t size);

#endif
