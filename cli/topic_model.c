/* topic_model.c: the factors topic back into a model (see topic_model.h).
 *
 * DESIGN: no consumer group and no commits: the reader assigns every
 * partition itself, so any number of readers can bootstrap at once. Rows
 * are keyed u:<id> / i:<id>, so all versions of a row live in one partition
 * and "latest" is simply the last one read from it; model versions are
 * per ratings partition and only reported (the highest), never compared. */
#include "topic_model.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "kafka.h"
#include "rows.h"
#include "rowset.h"
#include "ul_clock.h"
#include "ul_err.h"

typedef struct reader {
    ul_log *log; /* first: the rd_kafka_t's opaque (log_kafka_conf) */
    rd_kafka_t *rk;
    codec *cd;
    int32_t n_parts;
    int64_t *end;          /* per partition: high watermark at start */
    int64_t *next;         /* per partition: next offset to read */
    rowset *users, *items; /* bias + factors (rows_vector_dim) as published */
    int k;                 /* from the first row; -1 before */
    topic_model_info info;
} reader;

static void reader_free(reader *r) {
    if (r->rk)
        rd_kafka_destroy(r->rk);
    codec_destroy(r->cd);
    rowset_destroy(r->users);
    rowset_destroy(r->items);
    free(r->end);
    free(r->next);
}

static int open_consumer(reader *r, const ul_config *cfg, char *errstr, size_t errstr_size) {
    codec_opts co;
    codec_opts_init(&co);
    co.schema_id_factor = (int32_t)cfg->schema_id_factor;
    r->cd = codec_new(&co, errstr, errstr_size);
    if (r->cd == NULL)
        return UL_ERR_STATE;
    r->rk = kafka_client_new(cfg, KAFKA_CONSUMER, &r->log, NULL, errstr, errstr_size);
    return r->rk ? UL_OK : UL_ERR_IO;
}

/* Partition count and watermarks; fails on an unreachable broker, a missing
 * topic or an empty one. */
static int read_offsets(reader *r, const ul_config *cfg, const char *topic, int timeout_ms,
                        char *errstr, size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(r->rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ul_set_err(errstr, errstr_size,
                   "no answer from Kafka at %s (%s): start 'unlearnd broker' or set "
                   "kafka.bootstrap.servers",
                   cfg->kafka_bootstrap, rd_kafka_err2str(e));
        return UL_ERR_IO;
    }
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        ul_set_err(errstr, errstr_size, "topic %s does not exist on %s (%s)", topic,
                   cfg->kafka_bootstrap,
                   rd_kafka_err2str(md->topic_cnt == 1 ? md->topics[0].err
                                                       : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        rd_kafka_metadata_destroy(md);
        return UL_ERR_STATE;
    }
    r->n_parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    r->end = calloc((size_t)r->n_parts, sizeof(*r->end));
    r->next = calloc((size_t)r->n_parts, sizeof(*r->next));
    if (r->end == NULL || r->next == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    int64_t total = 0, dropped = 0;
    for (int32_t p = 0; p < r->n_parts; p++) {
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(r->rk, topic, p, &lo, &hi, timeout_ms);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ul_set_err(errstr, errstr_size, "offsets of %s [%d]: %s", topic, (int)p,
                       rd_kafka_err2str(e));
            return UL_ERR_IO;
        }
        r->next[p] = lo;
        r->end[p] = hi;
        total += hi - lo;
        dropped += lo;
    }
    if (total == 0) {
        ul_set_err(errstr, errstr_size,
                   "topic %s is empty: no worker has published factor rows yet (start "
                   "'unlearnd worker' and feed it ratings)",
                   topic);
        return UL_ERR_STATE;
    }
    if (dropped > 0)
        log_warn(r->log, "factors",
                 "%s: the broker no longer holds its %" PRId64
                 " oldest records; rows published only there are missing",
                 topic, dropped);
    return UL_OK;
}

static int assign_all(reader *r, const char *topic, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->n_parts);
    for (int32_t p = 0; p < r->n_parts; p++)
        if (r->next[p] < r->end[p])
            rd_kafka_topic_partition_list_add(l, topic, p)->offset = r->next[p];
    rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ul_set_err(errstr, errstr_size, "cannot read %s: %s", topic, rd_kafka_err2str(e));
        return UL_ERR_IO;
    }
    return UL_OK;
}

/* Keep one decoded record as the latest row of its (kind, id). */
static int keep_row(reader *r, const codec_factor *f, char *errstr, size_t errstr_size) {
    if (r->k < 0) {
        r->k = f->dim;
        r->users = rowset_new(rows_vector_dim(f->dim));
        r->items = rowset_new(rows_vector_dim(f->dim));
        if (r->users == NULL || r->items == NULL) {
            ul_set_err(errstr, errstr_size, "out of memory");
            return UL_ERR_NOMEM;
        }
    }
    if (f->dim != r->k) {
        ul_set_err(errstr, errstr_size,
                   "%s %" PRId64 " has %d factors but earlier rows have %d: the topic mixes "
                   "models of different dimensions",
                   f->kind == CODEC_KIND_USER ? "user" : "item", f->id, f->dim, r->k);
        return UL_ERR_CORRUPT;
    }
    rowset *rs = f->kind == CODEC_KIND_USER ? r->users : r->items;
    int32_t idx = rowset_insert(rs, f->id, NULL);
    if (idx < 0) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    float *row = rowset_row(rs, idx);
    row[ROWS_BIAS] = f->bias;
    memcpy(row + ROWS_FACTORS, f->vector, (size_t)f->dim * sizeof(float));
    if (f->model_version > r->info.max_version)
        r->info.max_version = f->model_version;
    return UL_OK;
}

static int on_message(reader *r, const rd_kafka_message_t *rkm, char *errstr, size_t errstr_size) {
    if (rkm->partition < 0 || rkm->partition >= r->n_parts || rkm->offset >= r->end[rkm->partition])
        return UL_OK; /* published after we started: not part of this snapshot */
    r->next[rkm->partition] = rkm->offset + 1;
    r->info.messages++;
    codec_factor f;
    char err[UL_ERRSTR_SIZE];
    int rc = codec_decode_factor(r->cd, rkm->payload, rkm->len, &f, err, sizeof(err));
    if (rc != CODEC_OK) {
        r->info.undecodable++;
        log_warn(r->log, "factors", "skipping %s [%d] @%" PRId64 ": %s: %s",
                 rd_kafka_topic_name(rkm->rkt), (int)rkm->partition, rkm->offset,
                 codec_err_name(rc), err);
        return UL_OK;
    }
    rc = keep_row(r, &f, errstr, errstr_size);
    codec_factor_clear(&f);
    return rc;
}

static int done_reading(const reader *r) {
    for (int32_t p = 0; p < r->n_parts; p++)
        if (r->next[p] < r->end[p])
            return 0;
    return 1;
}

static int read_all(reader *r, const char *topic, int timeout_ms, char *errstr,
                    size_t errstr_size) {
    int64_t deadline = ul_clock_mono_ms() + timeout_ms;
    while (!done_reading(r)) {
        if (ul_clock_mono_ms() >= deadline) {
            int64_t left = 0;
            for (int32_t p = 0; p < r->n_parts; p++)
                left += r->end[p] - r->next[p];
            ul_set_err(errstr, errstr_size,
                       "timed out after %d ms reading %s: %" PRId64 " records still unread",
                       timeout_ms, topic, left);
            return UL_ERR_IO;
        }
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->rk, 100);
        if (rkm == NULL)
            continue;
        int rc = UL_OK;
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            rc = on_message(r, rkm, errstr, errstr_size);
        else if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn(r->log, "factors", "%s", rd_kafka_message_errstr(rkm));
        rd_kafka_message_destroy(rkm);
        if (rc != UL_OK)
            return rc;
    }
    return UL_OK;
}

static mf_model *build_model(const reader *r, const ul_config *cfg, char *errstr,
                             size_t errstr_size) {
    int32_t nu = rowset_size(r->users), ni = rowset_size(r->items);
    if (nu == 0 || ni == 0) {
        ul_set_err(errstr, errstr_size,
                   "the factors topic holds %d user rows and %d item rows: nothing to rank yet",
                   (int)nu, (int)ni);
        return NULL;
    }
    mf_model *m = mf_model_new(nu, ni, r->k, errstr, errstr_size);
    if (m == NULL)
        return NULL;
    m->user_ids = malloc((size_t)(nu ? nu : 1) * sizeof(*m->user_ids));
    m->item_ids = malloc((size_t)(ni ? ni : 1) * sizeof(*m->item_ids));
    if (m->user_ids == NULL || m->item_ids == NULL) {
        mf_model_destroy(m);
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    m->global_mean = 0.0f; /* folded into the published item biases */
    m->rating_min = (float)cfg->rating_min;
    m->rating_max = (float)cfg->rating_max;
    for (int32_t u = 0; u < nu; u++) {
        m->user_ids[u] = rowset_key(r->users, u);
        rows_to_model(rowset_row_const(r->users, u), ROWS_USER, m, u);
    }
    for (int32_t i = 0; i < ni; i++) {
        m->item_ids[i] = rowset_key(r->items, i);
        rows_to_model(rowset_row_const(r->items, i), ROWS_ITEM, m, i);
    }
    return m;
}

mf_model *topic_model_load(const ul_config *cfg, ul_log *lg, const char *topic, int timeout_ms,
                           topic_model_info *info, char *errstr, size_t errstr_size) {
    reader r;
    memset(&r, 0, sizeof(r));
    r.log = lg;
    r.k = -1;
    r.info.max_version = -1;
    mf_model *m = NULL;
    if (open_consumer(&r, cfg, errstr, errstr_size) != UL_OK ||
        read_offsets(&r, cfg, topic, timeout_ms, errstr, errstr_size) != UL_OK ||
        assign_all(&r, topic, errstr, errstr_size) != UL_OK ||
        read_all(&r, topic, timeout_ms, errstr, errstr_size) != UL_OK)
        goto done;
    if (r.k < 0) {
        ul_set_err(errstr, errstr_size, "topic %s holds %" PRId64 " records but none decodes",
                   topic, r.info.messages);
        goto done;
    }
    m = build_model(&r, cfg, errstr, errstr_size);
    r.info.partitions = r.n_parts;
    if (info)
        *info = r.info;
done:
    if (r.rk)
        rd_kafka_consumer_close(r.rk);
    reader_free(&r);
    return m;
}
