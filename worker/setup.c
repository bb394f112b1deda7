/* setup.c: building and freeing a worker from its configuration
 * (worker_new, worker_destroy): the input topics' names, the metrics and
 * HTTP server, the codec, the Redis store (or a private redis-server), the
 * three consumers and their callbacks, the live model, the item replica's
 * first assignment, training, the cycle runner, the producer and the group
 * subscription; and the mappings from config to the options of the codec
 * and the store that the CLI's tools use too (worker.h). */
#include "worker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

#define METADATA_WAIT_MS 15000 /* how long to wait for the topics to exist */

/* store_opts.wait_fn: /readyz follows a Redis call that waits long, whatever the
 * call (the loop's PING included). */
static void store_waiting(void *opaque, int waiting) {
    metrics_redis_waiting(opaque, waiting);
}

/* cycle_ckpt_fn: a cycle's checkpoint failed. */
static void cycle_checkpoint_failed(void *opaque, int32_t p, int rc, const char *err) {
    assign_checkpoint_failed(opaque, p, rc, err);
}

/* Lag commits are advisory: one failing during a rebalance is expected. */
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
    (void)rk;
    (void)offsets;
    worker *w = opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_debug(w->log, "kafka", "lag commit failed (harmless): %s", rd_kafka_err2str(err));
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    worker *w = opaque;
    kafka_report_stats(w->log, w->metrics, json, json_len);
    return 0; /* librdkafka frees json */
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    worker *w = opaque;
    kafka_report_error(w->log, w->metrics, err, reason);
}

codec_key_format worker_key_format(const ul_config *cfg) {
    return cfg->key_format && strcmp(cfg->key_format, "avro") == 0 ? CODEC_KEY_AVRO
                                                                   : CODEC_KEY_STRING;
}

int32_t worker_user_partition(const ul_config *cfg, int64_t user, int32_t n) {
    return codec_user_partition(worker_key_format(cfg), (int32_t)cfg->key_schema_id, user, n);
}

/* The codec of cfg; with register_outputs (the worker, not the tools) and
 * schema.registry.register=1, our output schemas are registered first and
 * written with the registry's ids. */
static codec *codec_from_config(const ul_config *cfg, int register_outputs, char *errstr,
                                size_t errstr_size) {
    codec_opts o;
    codec_opts_init(&o);
    o.schema_id_rating = (int32_t)cfg->schema_id_rating;
    o.schema_id_forget = (int32_t)cfg->schema_id_forget;
    o.schema_id_factor = (int32_t)cfg->schema_id_factor;
    o.schema_id_receipt = (int32_t)cfg->schema_id_receipt;
    o.schema_id_item_update = (int32_t)cfg->schema_id_item_update;
    o.rating_min = (float)cfg->rating_min;
    o.rating_max = (float)cfg->rating_max;
    o.max_forget_items = (size_t)cfg->forget_max_items;
    o.schema_writers = cfg->schema_writers;
    o.registry_url = cfg->schema_registry_url;
    o.registry_user = cfg->schema_registry_user;
    o.registry_password = cfg->schema_registry_password;
    o.registry_timeout_ms = cfg->schema_registry_timeout_ms;
    if (register_outputs && cfg->schema_registry_register &&
        codec_register_outputs(&o, cfg->topic_factors, cfg->topic_receipts, errstr, errstr_size) !=
            UL_OK)
        return NULL;
    return codec_new(&o, errstr, errstr_size);
}

codec *worker_codec_new(const ul_config *cfg, char *errstr, size_t errstr_size) {
    return codec_from_config(cfg, 0, errstr, errstr_size);
}

void worker_store_opts(const ul_config *cfg, store_opts *so) {
    store_opts_init(so);
    so->host = cfg->redis_host;
    so->port = (int)cfg->redis_port;
    so->cluster = cfg->redis_cluster;
    so->user = cfg->redis_user;
    so->password = cfg->redis_password;
    so->db = (int)cfg->redis_db;
    so->timeout_ms = (int)cfg->redis_timeout_ms;
    so->retry_ms = (int)cfg->redis_retry_ms;
    so->wait_ms = (int)cfg->redis_wait_ms;
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        so->inputs[i] = config_str(cfg, worker_input(i)->key);
}

/* The store's one line per event it rides out (redirection, failover). */
static void store_log(void *ctx, const char *msg) {
    worker *w = ctx;
    log_warn(w->log, "redis", "%s", msg);
}

static int open_store(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    store_opts so;
    worker_store_opts(cfg, &so);
    if (!config_has_redis(cfg)) {
        w->rl = redis_local_start(cfg->redis_server_path, 10000, errstr, errstr_size);
        if (w->rl == NULL)
            return UL_ERR_IO;
        so.host = redis_local_host(w->rl);
        so.port = redis_local_port(w->rl);
        so.password = redis_local_password(w->rl);
        so.user = NULL;
        so.cluster = NULL;
        log_info(w->log, "redis",
                 "no redis.host configured: started a private redis-server on %s:%d (state is "
                 "lost when the worker exits)",
                 so.host, so.port);
    }
    so.log_fn = store_log;
    so.log_ctx = w;
    so.wait_fn = store_waiting; /* /readyz: Redis silent for long, whatever the call */
    so.wait_ctx = w->metrics;
    w->st = store_connect(&so, errstr, errstr_size);
    /* every primary answers before we say connected (the slot map came from one seed) */
    if (w->st == NULL || store_ping(w->st, errstr, errstr_size) != UL_OK)
        return UL_ERR_IO;
    metrics_set_redis_connected(w->metrics, 1);
    if (store_is_cluster(w->st))
        for (int i = 0; i < store_primary_count(w->st); i++)
            log_info(w->log, "redis", "connected to Redis Cluster primary %d of %d: %s", i + 1,
                     store_primary_count(w->st), store_primary_where(w->st, i));
    else
        log_info(w->log, "redis", "connected to Redis %s", store_primary_where(w->st, 0));
    return UL_OK;
}

/* The two consumers, and every input topic's partition count (they must
 * match: a user's records of every input share a partition). */
static int open_consumers(worker *w, char *errstr, size_t errstr_size) {
    kafka_hooks h = {.error = error_cb, .stats = w->http ? stats_cb : NULL};
    kafka_hooks g = h;
    g.rebalance = assign_rebalance_cb;
    g.committed = commit_cb;
    if ((w->consumer[INPUT_GROUP] =
             kafka_client_new(w->cfg, KAFKA_INGEST, &w->log, &g, errstr, errstr_size)) == NULL ||
        (w->consumer[INPUT_ALONGSIDE] =
             kafka_client_new(w->cfg, KAFKA_ASSIGNED, &w->log, &h, errstr, errstr_size)) == NULL ||
        (w->consumer[INPUT_ALL] =
             kafka_client_new(w->cfg, KAFKA_ASSIGNED, &w->log, &h, errstr, errstr_size)) == NULL)
        return UL_ERR_IO;
    int32_t n[SHARD_N_INPUTS];
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        char why[UL_ERRSTR_SIZE];
        int internal = worker_input(i)->assign == INPUT_ALL;
        if (kafka_topic_partition_count(w->consumer[INPUT_GROUP], w->topic[i], METADATA_WAIT_MS,
                                        &n[i], why, sizeof(why)) != UL_OK) {
            ul_set_err(errstr, errstr_size, "%s%s", why,
                       internal ? " (the internal topic the workers exchange item changes on: "
                                  "create it with the ratings topic's partition count, see "
                                  "docs/operations.md)"
                                : "");
            return UL_ERR_IO;
        }
        if (n[i] != n[0]) {
            ul_set_err(errstr, errstr_size,
                       "%s has %d partitions but %s has %d: they must match so that %s (%s)",
                       w->topic[0], (int)n[0], w->topic[i], (int)n[i],
                       internal ? "partition P carries the changes of partition P's home items"
                                : "a user's records of every input topic share a partition",
                       internal ? "recreate it, or add partitions: kafka-topics.sh --alter "
                                  "--partitions N (docs/operations.md)"
                                : "repartition one of them");
            return UL_ERR_STATE;
        }
    }
    metrics_set_kafka_connected(w->metrics, 1); /* the brokers answered metadata requests */
    w->n_parts = n[0];
    w->check_topic =
        rd_kafka_topic_new(w->consumer[INPUT_GROUP], w->topic[worker_group_input()], NULL);
    if (w->check_topic == NULL) {
        ul_set_err(errstr, errstr_size, "%s: %s", w->topic[worker_group_input()],
                   rd_kafka_err2str(rd_kafka_last_error()));
        return UL_ERR_IO;
    }
    return UL_OK;
}

static int open_live(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    live_opts lo;
    live_opts_init(&lo);
    lo.k = (int)cfg->model_k;
    lo.lr = (float)cfg->learning_rate;
    lo.reg = (float)cfg->reg;
    lo.train_lr = (float)cfg->training_learning_rate;
    lo.train_lr_decay = (float)cfg->training_learning_rate_decay;
    lo.train_lr_min = (float)cfg->training_learning_rate_min;
    lo.retention = (uint32_t)cfg->retention_per_user;
    lo.rating_min = (float)cfg->rating_min;
    lo.rating_max = (float)cfg->rating_max;
    lo.k_explicit = !config_is_default(cfg, "model.k");
    lo.encode = publish_delivery_record;
    lo.encode_opaque = w->codec;
    w->lv = live_new(&lo, w->st, w->n_parts, errstr, errstr_size);
    if (w->lv == NULL)
        return UL_ERR_STATE;
    if (live_k(w->lv) != (int)cfg->model_k)
        log_info(w->log, "worker", "Redis holds a model with k=%d: using it (model.k not set)",
                 live_k(w->lv));
    return UL_OK;
}

/* The item replica consumes every partition of item-updates, each from
 * where the replica loaded from Redis is (rows_off; the beginning without). */
static int assign_replica(worker *w, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(w->n_parts);
    for (int32_t p = 0; p < w->n_parts; p++) {
        int64_t pos = live_updates_position(w->lv, p);
        rd_kafka_topic_partition_list_add(l, w->topic[SHARD_ITEM_UPDATES], p)->offset =
            pos >= 0 ? pos : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_error_t *e = rd_kafka_incremental_assign(w->consumer[INPUT_ALL], l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        ul_set_err(errstr, errstr_size, "cannot assign %s: %s", w->topic[SHARD_ITEM_UPDATES],
                   rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return UL_ERR_IO;
    }
    return UL_OK;
}

static int open_train(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    train_opts to;
    train_opts_init(&to);
    to.enabled = cfg->training_enabled != 0;
    to.share = cfg->training_share;
    to.idle_share = cfg->training_idle_share;
    to.slice_ms = cfg->training_slice_ms;
    to.min_improvement = cfg->training_min_improvement;
    to.resume_fraction = cfg->training_resume_fraction;
    to.steps_per_event = cfg->training_steps_per_event;
    w->train = train_new(&to, w->lv, w->metrics, w->log);
    if (w->train == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

static int open_cycles(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    /* Fault injection for the integration tests only (not a config option). */
    const char *fault = getenv("UNLEARND_FAULT");
    cycle_opts co = {.lv = w->lv,
                     .st = w->st,
                     .pub = w->pub,
                     .metrics = w->metrics,
                     .log = w->log,
                     .forget = {.max_batch = (size_t)cfg->cycle_max_batch, .method = cfg->method},
                     .checkpoint_failed = cycle_checkpoint_failed,
                     .opaque = w,
                     .exit_after_checkpoint =
                         fault && strcmp(fault, "exit-after-cycle-checkpoint") == 0,
                     .exit_during_cycle = fault && strcmp(fault, "exit-during-cycle") == 0};
    unlearn_params_init(&co.forget.uparams);
    w->cycles = cycle_new(&co, errstr, errstr_size);
    return w->cycles ? UL_OK : UL_ERR_NOMEM;
}

static int subscribe(worker *w, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    for (int i = 0; i < SHARD_N_INPUTS; i++)
        if (worker_input(i)->assign == INPUT_GROUP)
            rd_kafka_topic_partition_list_add(topics, w->topic[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(w->consumer[INPUT_GROUP], topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        ul_set_err(errstr, errstr_size, "cannot subscribe to %s: %s",
                   w->topic[worker_group_input()], rd_kafka_err2str(e));
        return UL_ERR_IO;
    }
    return UL_OK;
}

/* "a, b and c" of the input topics' names. */
static const char *input_names(const worker *w, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < SHARD_N_INPUTS && len < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 == SHARD_N_INPUTS ? " and " : ", ";
        int n = snprintf(buf + len, size - len, "%s%s", sep, w->topic[i]);
        len += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

/* The input topics' names; a row naming no topic option or no embedded
 * schema is a mistake in the table. */
static int open_inputs(worker *w, char *errstr, size_t errstr_size) {
    for (int i = 0; i < SHARD_N_INPUTS; i++) {
        w->topic[i] = config_str(w->cfg, worker_input(i)->key);
        if (w->topic[i] == NULL || codec_schema_text(worker_input(i)->schema) == NULL) {
            ul_set_err(errstr, errstr_size, "input %s: no such topic option or schema %s",
                       worker_input(i)->key, worker_input(i)->schema);
            return UL_ERR_STATE;
        }
    }
    return UL_OK;
}

/* Without stored offsets a partition starts at the beginning (its state is
 * empty, so everything must be applied), unless the user explicitly asked
 * for kafka.auto.offset.reset=latest (e.g. after `unlearnd import`).
 * Kafka's committed offsets are never used: they may be ahead of Redis. */
static int64_t start_offset(const ul_config *cfg) {
    char reset[32];
    if (config_value(cfg, "kafka.auto.offset.reset", 1, reset, sizeof(reset)) == UL_OK &&
        (strcmp(reset, "latest") == 0 || strcmp(reset, "largest") == 0 ||
         strcmp(reset, "end") == 0))
        return RD_KAFKA_OFFSET_END;
    return RD_KAFKA_OFFSET_BEGINNING;
}

static int open_http(worker *w, char *errstr, size_t errstr_size) {
    const ul_config *cfg = w->cfg;
    if ((w->metrics = metrics_new()) == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    if (cfg->metrics_port <= 0)
        return UL_OK;
    http_opts ho = {cfg->metrics_bind, (int)cfg->metrics_port,
                    (double)cfg->metrics_live_timeout_ms / 1000.0};
    w->http = http_server_start(w->metrics, w->log, &ho, errstr, errstr_size);
    return w->http ? UL_OK : UL_ERR_IO;
}

void worker_destroy(worker *w) {
    if (w == NULL)
        return;
    http_server_stop(w->http); /* first: it reads w->metrics */
    if (w->check_topic)
        rd_kafka_topic_destroy(w->check_topic);
    for (int a = 0; a < INPUT_N_ASSIGN; a++) /* may revoke: cycle_give_up */
        if (w->consumer[a])
            rd_kafka_destroy(w->consumer[a]);
    cycle_destroy(w->cycles); /* before the live its job may point into */
    publish_destroy(w->pub);
    train_destroy(w->train);
    live_destroy(w->lv);
    store_destroy(w->st);
    redis_local_stop(w->rl);
    codec_destroy(w->codec);
    codec_item_updates_clear(&w->upd);
    free(w->lag_committed);
    free(w->hwm_wanted);
    metrics_destroy(w->metrics);
    free(w);
}

worker *worker_new(const ul_config *cfg, ul_log *lg, char *errstr, size_t errstr_size) {
    char names[1024];
    worker *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    w->log = lg;
    w->cfg = cfg;
    w->start_offset = start_offset(cfg);
    w->key_format = worker_key_format(cfg);
    if (open_inputs(w, errstr, errstr_size) != UL_OK ||
        open_http(w, errstr, errstr_size) != UL_OK ||
        (w->codec = codec_from_config(cfg, 1, errstr, errstr_size)) == NULL ||
        open_store(w, errstr, errstr_size) != UL_OK ||
        open_consumers(w, errstr, errstr_size) != UL_OK ||
        open_live(w, errstr, errstr_size) != UL_OK || open_train(w, errstr, errstr_size) != UL_OK ||
        (w->pub = publish_new(cfg, lg, w->metrics, w->codec, w->lv, errstr, errstr_size)) == NULL)
        goto fail;
    w->lag_committed = calloc((size_t)w->n_parts, sizeof(*w->lag_committed));
    w->hwm_wanted = calloc((size_t)w->n_parts, 1);
    if (w->lag_committed == NULL || w->hwm_wanted == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (open_cycles(w, errstr, errstr_size) != UL_OK ||
        assign_replica(w, errstr, errstr_size) != UL_OK ||
        subscribe(w, errstr, errstr_size) != UL_OK)
        goto fail;
    log_info(w->log, "worker",
             "consuming %s (%d partitions) in group %s; method %s, k=%d, cycle every %ld "
             "ms, checkpoint every %ld ms, changed rows published every %ld ms; continuous "
             "training %s (%.2f of the loop's time while events flow, %.2f when idle)",
             input_names(w, names, sizeof(names)), (int)w->n_parts, cfg->kafka_group_id,
             cfg->method, live_k(w->lv), cfg->cycle_interval_ms, cfg->checkpoint_interval_ms,
             cfg->publish_interval_ms, cfg->training_enabled ? "on" : "off", cfg->training_share,
             cfg->training_idle_share);
    return w;
fail:
    worker_destroy(w);
    return NULL;
}
