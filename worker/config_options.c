/* config_options.c: the options table, the one source of every config option
 * (key, type, default, range, field in ul_config, help line); config.c loads
 * values through it.
 *
 * DESIGN: `config_options[]` is the single description of every option;
 * help, --dump-config, env names and range checks all come from its rows, so
 * adding an option is a field in config.h and a row here. */
#include <stddef.h>

#include "config.h"
#include "config_int.h"

#define F(field) offsetof(ul_config, field)
#define I32MAX 2147483647.0

const opt_def config_options[] = {
    {"kafka.bootstrap.servers", OPT_STR, "", 0, 0, NULL, F(kafka_bootstrap),
     "Kafka brokers host:port,...; empty = read broker.bootstrap.file"},
    {"kafka.group.id", OPT_STR, "unlearnd", 0, 0, NULL, F(kafka_group_id),
     "consumer group of the workers (librdkafka group.id)"},
    {"broker.bootstrap.file", OPT_STR, NULL, 0, 0, NULL, F(bootstrap_file),
     "where `unlearnd broker` writes its address"},
    {"topic.ratings", OPT_TOPIC, "ratings", 0, 0, NULL, F(topic_ratings),
     "input: rating events, keyed by user id"},
    {"topic.forget_requests", OPT_TOPIC, "forget-requests", 0, 0, NULL, F(topic_forget),
     "input: forget requests, keyed by user id"},
    {"topic.factors", OPT_TOPIC, "factors", 0, 0, NULL, F(topic_factors),
     "output: changed factor rows, keyed u:<id>/i:<id> (compacted)"},
    {"topic.forget_receipts", OPT_TOPIC, "forget-receipts", 0, 0, NULL, F(topic_receipts),
     "output: one receipt per applied forget request"},
    {"topic.dead_letter", OPT_TOPIC, "dead-letter", 0, 0, NULL, F(topic_dead_letter),
     "output: undecodable or invalid input with the reason in headers"},
    {"topic.item_updates", OPT_TOPIC, "item-updates", 0, 0, NULL, F(topic_item_updates),
     "internal: item changes between workers, partition P = P's home items; needs the ratings "
     "topic's partition count"},
    {"schema.id.rating", OPT_INT, "1", 0, I32MAX, NULL, F(schema_id_rating),
     "Confluent schema id of rating records"},
    {"schema.id.forget_request", OPT_INT, "2", 0, I32MAX, NULL, F(schema_id_forget),
     "Confluent schema id of forget requests"},
    {"schema.id.factor", OPT_INT, "3", 0, I32MAX, NULL, F(schema_id_factor),
     "Confluent schema id of factor rows"},
    {"schema.id.forget_receipt", OPT_INT, "4", 0, I32MAX, NULL, F(schema_id_receipt),
     "Confluent schema id of forget receipts"},
    {"key.format", OPT_ENUM, "string", 0, 0, "string|avro", F(key_format),
     "keys of ratings and forget requests: string = the user id in decimal; avro = "
     "Confluent-Avro-serialised (a long or a string), the partition checked as a Java producer "
     "hashes those bytes"},
    {"key.schema.id", OPT_INT, "5", 0, I32MAX, NULL, F(key_schema_id),
     "with key.format=avro: the Confluent schema id of keys that produce, state and import "
     "write or hash (the worker reads any id)"},
    {"schema.id.item_update", OPT_INT, "6", 0, I32MAX, NULL, F(schema_id_item_update),
     "schema id of the internal item-updates records (every worker the same)"},
    {"schema.writers", OPT_STR, "", 0, 0, NULL, F(schema_writers),
     "other writer schemas by id, ID=PATH.avsc,...: records with those ids are read into ours "
     "by Avro's resolution rules"},
    {"schema.registry.url", OPT_STR, "", 0, 0, NULL, F(schema_registry_url),
     "Confluent Schema Registry URL(s), comma-separated: a record's unknown schema id is fetched "
     "once (GET /schemas/ids/ID) and resolved into ours; empty = none"},
    {"schema.registry.user", OPT_STR, "", 0, 0, NULL, F(schema_registry_user),
     "Schema Registry basic-auth user; empty = no auth"},
    {"schema.registry.password", OPT_STR, "", 0, 0, NULL, F(schema_registry_password),
     "Schema Registry basic-auth password"},
    {"schema.registry.timeout.ms", OPT_INT, "5000", 100, 600000, NULL,
     F(schema_registry_timeout_ms), "Schema Registry request timeout"},
    {"schema.registry.register", OPT_INT, "0", 0, 1, NULL, F(schema_registry_register),
     "1 = at start, register the output schemas under <topic>-value and write with the ids "
     "the registry gives"},
    {"redis.host", OPT_STR, "", 0, 0, NULL, F(redis_host),
     "Redis host; empty = start a local redis-server on a free port (random password)"},
    {"redis.port", OPT_INT, "6379", 1, 65535, NULL, F(redis_port), "Redis port"},
    {"redis.cluster", OPT_STR, "", 0, 0, NULL, F(redis_cluster),
     "Redis Cluster seed nodes host:port,host:port,...; replaces redis.host/port; empty = one "
     "plain Redis (redis.host)"},
    {"redis.user", OPT_STR, "", 0, 0, NULL, F(redis_user),
     "Redis ACL user for AUTH user password (Redis 6+); empty = the default user"},
    {"redis.password", OPT_STR, "", 0, 0, NULL, F(redis_password),
     "Redis AUTH password, used on every node; empty = none"},
    {"redis.db", OPT_INT, "0", 0, 1000000, NULL, F(redis_db), "Redis database number"},
    {"redis.timeout.ms", OPT_INT, "2000", 1, 600000, NULL, F(redis_timeout_ms),
     "Redis connect and command timeout"},
    {"redis.retry.ms", OPT_INT, "10000", 0, 3600000, NULL, F(redis_retry_ms),
     "how long one Redis call rides out a failover, a node down or redirections before it "
     "fails"},
    {"redis.wait.ms", OPT_INT, "1000", 0, 600000, NULL, F(redis_wait_ms),
     "after a checkpoint, wait this long for a replica to have it before publishing what it "
     "made (when the node has replicas); 0 = do not wait"},
    {"redis.server.path", OPT_STR, "redis-server", 0, 0, NULL, F(redis_server_path),
     "redis-server binary used for the local Redis"},
    {"method", OPT_METHOD, NULL, 0, 0, NULL, F(method), "unlearning method"},
    {"cycle.interval.ms", OPT_INT, "200", 1, 3600000, NULL, F(cycle_interval_ms),
     "how often buffered forget requests are applied"},
    {"cycle.max.batch", OPT_INT, "1000", 1, 1000000, NULL, F(cycle_max_batch),
     "most forget requests applied in one cycle (all owned partitions together)"},
    {"on.truncated", OPT_ENUM, "refuse", 0, 0, "refuse|accept", F(on_truncated),
     "when an input partition lost records the state has not applied (retention, a purge): "
     "refuse = stop naming the lost range, accept = warn naming it and start at the oldest "
     "record left"},
    {"checkpoint.interval.ms", OPT_INT, "1000", 1, 3600000, NULL, F(checkpoint_interval_ms),
     "how often partition state and offsets are written to Redis"},
    {"rows.flush.interval.ms", OPT_INT, "10000", 1, 3600000, NULL, F(rows_flush_interval_ms),
     "how often each owned partition writes its training-changed user rows and changed home "
     "item rows (round-robin over the partitions)"},
    {"items.push.interval.ms", OPT_INT, "200", 1, 3600000, NULL, F(items_push_interval_ms),
     "how often item changes made by events are sent to the other workers (topic.item_updates)"},
    {"training.push.interval.ms", OPT_INT, "2000", 1, 3600000, NULL, F(training_push_interval_ms),
     "how often item changes made by background training are sent to the other workers"},
    {"publish.interval.ms", OPT_INT, "2000", 1, 3600000, NULL, F(publish_interval_ms),
     "how often rows changed by events are published to topic.factors (each row once)"},
    {"publish.training.interval.ms", OPT_INT, "10000", 1, 3600000, NULL,
     F(publish_training_interval_ms),
     "how often rows changed only by background training are published to topic.factors"},
    {"retention.per.user", OPT_INT, "5000", 1, 1000000, NULL, F(retention_per_user),
     "recent ratings kept per user for forget requests (older ones can no longer be "
     "forgotten; receipts count them as beyond_retention)"},
    {"model.k", OPT_INT, "64", 1, 1024, NULL, F(model_k), "latent dimension K of the live model"},
    {"model.learning.rate", OPT_DOUBLE, "0.01", 1e-9, 1, NULL, F(learning_rate),
     "SGD learning rate of online updates"},
    {"model.reg", OPT_DOUBLE, "0.05", 0, 10, NULL, F(reg), "L2 regularisation of online updates"},
    {"training.enabled", OPT_INT, "1", 0, 1, NULL, F(training_enabled),
     "continuous training: SGD epochs over the retained ratings between events; 0 = off"},
    {"training.share", OPT_DOUBLE, "0.15", 0, 1, NULL, F(training_share),
     "share of the worker loop's wall time spent training while events flow"},
    {"training.idle.share", OPT_DOUBLE, "0.5", 0, 1, NULL, F(training_idle_share),
     "share of the loop's wall time spent training while the input is idle (no event for 500 "
     "ms)"},
    {"training.slice.ms", OPT_DOUBLE, "5", 0.1, 1000, NULL, F(training_slice_ms),
     "longest time slice of training between two polls of the input"},
    {"training.min.improvement", OPT_DOUBLE, "0.001", 0, 1, NULL, F(training_min_improvement),
     "training pauses when an epoch's RMSE improves on the previous epoch's by less than this "
     "fraction"},
    {"training.resume.fraction", OPT_DOUBLE, "0.01", 0, 1, NULL, F(training_resume_fraction),
     "paused training resumes when new ratings reach this fraction of the owned history (or "
     "on a forget)"},
    {"training.steps.per.event", OPT_DOUBLE, "0.25", 0, 1000000, NULL, F(training_steps_per_event),
     "while events flow, at most this many training steps per event that arrived (more fits a "
     "young model to its first ratings); 0 = no limit but training.share"},
    {"training.learning.rate", OPT_DOUBLE, "0.1", 1e-9, 1, NULL, F(training_learning_rate),
     "training's per-row schedule: a row that had E passes over its ratings trains at this x "
     "training.learning.rate.decay^E (a new rating re-warms its rows)"},
    {"training.learning.rate.decay", OPT_DOUBLE, "0.79", 0.01, 1, NULL,
     F(training_learning_rate_decay), "per-pass decay of training's learning rate"},
    {"training.learning.rate.min", OPT_DOUBLE, "0", 0, 1, NULL, F(training_learning_rate_min),
     "floor of training's learning rate; 0 = none (a floor trains converged rows forever)"},
    {"rating.min", OPT_DOUBLE, "1", -1e6, 1e6, NULL, F(rating_min), "lowest valid rating"},
    {"rating.max", OPT_DOUBLE, "5", -1e6, 1e6, NULL, F(rating_max), "highest valid rating"},
    {"forget.max.items", OPT_INT, "10000", 1, 10000000, NULL, F(forget_max_items),
     "longest item list accepted in one forget request"},
    {"log.level", OPT_ENUM, "info", 0, 0, "error|warn|info|debug", F(log_level),
     "lowest level logged"},
    {"metrics.bind", OPT_STR, "127.0.0.1", 0, 0, NULL, F(metrics_bind),
     "address of the HTTP server for /metrics, /livez, /readyz; 127.0.0.1 = this machine "
     "only, 0.0.0.0 = every interface (deploy/ sets it)"},
    {"metrics.port", OPT_INT, "0", 0, 65535, NULL, F(metrics_port),
     "port of that HTTP server (deploy/ uses 9464); 0 = no server"},
    {"metrics.live.timeout.ms", OPT_INT, "30000", 1000, 3600000, NULL, F(metrics_live_timeout_ms),
     "/livez fails when the worker loop was silent this long"},
};

const size_t config_n_options = sizeof(config_options) / sizeof(config_options[0]);
