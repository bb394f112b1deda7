/* cmd_import.c: `unlearnd import`, load a model trained offline (`unlearnd
 * train`) into Redis as the live model m1: each user row into the partition
 * its key maps to (murmur2, as the producers partition), each item row and
 * its statistics (counted from --data) into its home partition (rows.h's
 * layout and placement), and the model-wide facts into ul:model.
 * So a platform with years of history starts from its model instead of
 * replaying everything. The rating scale is the model's (from its file, set
 * by `unlearnd train`); it goes into ul:model, and --data must be on it. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "cli_config.h"
#include "config.h"
#include "dataset.h"
#include "kafka.h"
#include "mf.h"
#include "rows.h"
#include "store.h"
#include "ul_err.h"
#include "worker.h"

#define CMD "import"

typedef struct import_opts {
    const char *model;
    const char *data;
    long partitions; /* 0 = ask Kafka */
    int replace;
} import_opts;

static void import_help(void) {
    printf("Usage: unlearnd import --model MODEL [--partitions N] [--data PATH] [--replace]\n"
           "                       [--config FILE] [--redis.host H --redis.port N ...]\n\n"
           "Load a model written by 'unlearnd train' into Redis as the worker's live model:\n"
           "user rows go to the partition their user key maps to (murmur2, as Java\n"
           "producers and 'unlearnd produce' partition), item I's row and statistics to its\n"
           "home partition I mod N. Start the worker afterwards; with\n"
           "kafka.auto.offset.reset=latest it starts at the end of the topics instead of\n"
           "replaying them.\n\n"
           "Options:\n"
           "  --model MODEL     model file from 'unlearnd train' (required)\n"
           "  --partitions N    partition count of the ratings topic (default: asked from\n"
           "                    Kafka, kafka.bootstrap.servers or the local broker's file)\n"
           "  --data PATH       the ratings the model was trained on: each item's count and\n"
           "                    rating sum (fold-in weighs item updates by the count;\n"
           "                    unlearning corrects toward the item mean; default: 0/0)\n"
           "  --replace         delete any existing worker state (all ul:* keys) first;\n"
           "                    without it, a Redis that already holds a model is refused\n"
           "  --config FILE     worker config file; redis.* and topic.* options apply\n"
           "  --help            show this help\n\n"
           "The rating scale is the model's: 'unlearnd train' took it from its data (or from\n"
           "--rating-min/--rating-max) and stored it in the model file; --data must be on it.\n"
           "The worker accepts ratings on rating.min..rating.max: when that differs from the\n"
           "model's scale this command says which options to start the worker with.\n"
           "redis.host must be set (a private redis-server would vanish with this command).\n"
           "Exit status: 0 success, 1 runtime failure, 2 bad usage.\n");
}

static int import_parse(int n, char **rest, import_opts *o, char *err, size_t size) {
    for (int a = 0; a < n; a++) {
        const char *name = rest[a];
        if (strcmp(name, "--replace") == 0) {
            o->replace = 1;
            continue;
        }
        if (strcmp(name, "--model") != 0 && strcmp(name, "--data") != 0 &&
            strcmp(name, "--partitions") != 0) {
            ul_set_err(err, size, "unknown option '%s'", name);
            return -1;
        }
        if (a + 1 >= n) {
            ul_set_err(err, size, "%s needs a value", name);
            return -1;
        }
        const char *val = rest[++a];
        if (strcmp(name, "--model") == 0)
            o->model = val;
        else if (strcmp(name, "--data") == 0)
            o->data = val;
        else if (cli_parse_long(name, val, 1, 100000, &o->partitions, err, size) != 0)
            return -1;
    }
    if (o->model == NULL) {
        ul_set_err(err, size, "--model MODEL is required");
        return -1;
    }
    return 0;
}

static int kafka_partitions(const ul_config *cfg, long *n, char *err, size_t size) {
    rd_kafka_t *rk = kafka_client_new(cfg, KAFKA_PRODUCER, NULL, NULL, err, size);
    if (rk == NULL)
        return UL_ERR_IO;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, cfg->topic_ratings, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    int rc = UL_OK;
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        ul_set_err(err, size, "cannot read the partition count of %s (%s): pass --partitions",
                   cfg->topic_ratings,
                   e ? rd_kafka_err2str(e)
                     : rd_kafka_err2str(md->topic_cnt ? md->topics[0].err
                                                      : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        rc = UL_ERR_IO;
    } else {
        *n = md->topics[0].partition_cnt;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}

/* Per-item rating counts and sums from the training data, in the model's
 * item order. */
static rows_stats *item_stats(const mf_model *m, const char *path, char *err, size_t size) {
    rows_stats *stats = calloc((size_t)m->n_items + 1, sizeof(*stats));
    if (stats == NULL || path == NULL)
        return stats;
    char hint[128];
    ds_load_opts lo;
    ds_load_opts_init(&lo);
    lo.rating_min = m->rating_min;
    lo.rating_max = m->rating_max;
    lo.dups = DS_DUP_LAST;
    snprintf(hint, sizeof(hint),
             "the model's scale; 'unlearnd train --rating-min/--rating-max' sets it");
    lo.range_hint = hint;
    dataset *ds = ds_load(path, &lo, err, size);
    if (ds == NULL) {
        free(stats);
        return NULL;
    }
    for (size_t r = 0; r < ds->n_ratings; r++) {
        int64_t raw = ds->item_ids[ds->ratings[r].item];
        for (int32_t i = 0; i < m->n_items; i++) /* small catalogues: linear is fine */
            if ((m->item_ids ? m->item_ids[i] : i) == raw) {
                stats[i].count++;
                stats[i].sum += ds->ratings[r].value;
                break;
            }
    }
    ds_destroy(ds);
    return stats;
}

/* The rows of `kind` placed in partition p (users by key, items by home)
 * into ids/rows (and their statistics into st_rows for items); returns n. */
static size_t rows_of(const mf_model *m, rows_kind kind, int32_t parts, int32_t p,
                      const rows_stats *stats, int64_t *ids, float *rows, rows_stats *st_rows) {
    int dim = rows_dim(kind, m->k);
    int32_t count = kind == ROWS_ITEM ? m->n_items : m->n_users;
    const int64_t *raw_ids = kind == ROWS_ITEM ? m->item_ids : m->user_ids;
    size_t n = 0;
    for (int32_t i = 0; i < count; i++) {
        int64_t raw = raw_ids ? raw_ids[i] : i;
        int32_t at =
            kind == ROWS_ITEM ? rows_item_partition(raw, parts) : rows_user_partition(raw, parts);
        if (at != p)
            continue;
        memset(rows + n * (size_t)dim, 0, (size_t)dim * sizeof(float)); /* row state 0 */
        rows_from_model(rows + n * (size_t)dim, kind, m, i);
        if (kind == ROWS_ITEM)
            st_rows[n] = stats[i];
        ids[n++] = raw;
    }
    return n;
}

static int write_model(store *st, const mf_model *m, int32_t parts, const rows_stats *stats,
                       char *err, size_t size) {
    int k = m->k, rc, udim = rows_dim(ROWS_USER, k), idim = rows_dim(ROWS_ITEM, k);
    store_model sm = {k, m->global_mean, m->rating_min, m->rating_max, parts, STORE_FORMAT, 0};
    if ((rc = store_model_put(st, &sm, 0, err, size)) != UL_OK)
        return rc;
    size_t most = (size_t)(m->n_items > m->n_users ? m->n_items : m->n_users) + 1;
    int64_t *ids = malloc(most * sizeof(int64_t));
    float *rows = calloc(most * (size_t)(udim > idim ? udim : idim), sizeof(float));
    rows_stats *st_rows = malloc(most * sizeof(*st_rows));
    if (ids == NULL || rows == NULL || st_rows == NULL) {
        free(ids);
        free(rows);
        free(st_rows);
        ul_set_err(err, size, "out of memory");
        return UL_ERR_NOMEM;
    }
    for (int32_t p = 0; p < parts && rc == UL_OK; p++) {
        size_t n = rows_of(m, ROWS_ITEM, parts, p, stats, ids, rows, st_rows);
        rc = store_home_put(st, p, ids, rows, st_rows, n, idim, err, size);
    }
    for (int32_t p = 0; p < parts && rc == UL_OK; p++) {
        size_t n = rows_of(m, ROWS_USER, parts, p, stats, ids, rows, st_rows);
        rc = store_users_put(st, p, ids, rows, n, udim, err, size);
    }
    free(ids);
    free(rows);
    free(st_rows);
    return rc;
}

static int import_run(const ul_config *cfg, import_opts *o) {
    char err[UL_ERRSTR_SIZE];
    if (worker_key_format(cfg) != CODEC_KEY_STRING)
        return cli_usage_error(CMD, "key.format=avro: import places users by the partition of "
                                    "their string key; with Avro keys it cannot yet");
    if (o->partitions == 0 && kafka_partitions(cfg, &o->partitions, err, sizeof(err)) != UL_OK)
        return cli_fail(CMD, err);
    mf_model *m = mf_load(o->model, err, sizeof(err));
    if (m == NULL)
        return cli_fail(CMD, err);
    rows_stats *counts = item_stats(m, o->data, err, sizeof(err));
    store_opts so;
    worker_store_opts(cfg, &so);
    store *st = counts ? store_connect(&so, err, sizeof(err)) : NULL;
    store_model cur;
    int found = 0, rc = st ? store_model_get(st, &cur, &found, err, sizeof(err)) : UL_ERR_IO;
    if (rc == UL_OK && found && !o->replace) {
        ul_set_err(err, sizeof(err),
                   "Redis already holds a model (k=%d): pass --replace to delete the existing "
                   "state first",
                   cur.k);
        rc = UL_ERR_STATE;
    }
    if (rc == UL_OK && o->replace)
        rc = store_clear_all(st, err, sizeof(err));
    if (rc == UL_OK)
        rc = write_model(st, m, (int32_t)o->partitions, counts, err, sizeof(err));
    if (rc == UL_OK)
        printf("imported %d users and %d items (k=%d, mean %.4f, scale %g..%g) into %s%s over "
               "%ld partitions\n",
               (int)m->n_users, (int)m->n_items, m->k, (double)m->global_mean,
               (double)m->rating_min, (double)m->rating_max,
               store_is_cluster(st) ? "the Redis Cluster of " : "", store_primary_where(st, 0),
               o->partitions);
    if (rc == UL_OK &&
        ((float)cfg->rating_min != m->rating_min || (float)cfg->rating_max != m->rating_max))
        fprintf(stderr,
                "unlearnd import: note: the model's scale is %g..%g but rating.min/rating.max "
                "are %g..%g: start the worker with --rating.min %g --rating.max %g so that it "
                "accepts the ratings the model was trained on\n",
                (double)m->rating_min, (double)m->rating_max, cfg->rating_min, cfg->rating_max,
                (double)m->rating_min, (double)m->rating_max);
    store_destroy(st);
    free(counts);
    mf_model_destroy(m);
    return rc == UL_OK ? CLI_EXIT_OK : cli_fail(CMD, err);
}

int cmd_import(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    cli_config cc;
    import_opts o;
    memset(&o, 0, sizeof(o));
    int rc = cli_config_load(CMD, argc, argv, &cc);
    if (rc != CLI_EXIT_OK)
        goto done;
    if (cc.args.help) {
        import_help();
        goto done;
    }
    if (import_parse(cc.args.n_rest, cc.args.rest, &o, err, sizeof(err)) != 0) {
        rc = cli_usage_error(CMD, err);
        goto done;
    }
    if ((rc = cli_config_ready(CMD, &cc, o.partitions == 0)) != CLI_EXIT_OK)
        goto done;
    if (!config_has_redis(cc.cfg)) {
        rc = cli_usage_error(CMD, "redis.host is not set: say which Redis the worker will use");
        goto done;
    }
    rc = import_run(cc.cfg, &o);
done:
    cli_config_free(&cc);
    return rc;
}
