/* codec_updates.c: the internal ItemUpdates record (see codec.h), an array
 * of per-item deltas, Confluent-framed Avro written and read by hand like the
 * topic records in codec.c, and validated in both directions. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"

void codec_item_updates_clear(codec_item_updates *u) {
    if (u == NULL)
        return;
    free(u->items);
    free(u->vectors);
    memset(u, 0, sizeof(*u));
}

static int check_item_updates(const codec_item_updates *u, char *errstr, size_t errstr_size) {
    if (u->source < CODEC_UPDATE_TRAINING)
        return codec_invalid(errstr, errstr_size, "item updates: source %d", (int)u->source);
    if ((u->source >= 0) != (u->seq > 0) || u->seq < 0)
        return codec_invalid(errstr, errstr_size, "item updates: seq %" PRId64 " with source %d",
                             u->seq, (int)u->source);
    for (size_t i = 0; i < u->n_items; i++) {
        const codec_item_update *it = &u->items[i];
        if (it->id < 0 || it->dim < 0 || it->dim > CODEC_MAX_DIM || !isfinite(it->dsum) ||
            !isfinite(it->dbias))
            return codec_invalid(errstr, errstr_size,
                                 "item updates: item %zu (id %" PRId64 ") is invalid", i, it->id);
        for (int f = 0; f < it->dim; f++)
            if (!isfinite(it->dvector[f]))
                return codec_invalid(errstr, errstr_size,
                                     "item updates: item %" PRId64 " has a non-finite factor",
                                     it->id);
    }
    return CODEC_OK;
}

int codec_encode_item_updates(const codec *c, const codec_item_updates *u, codec_buf *out,
                              char *errstr, size_t errstr_size) {
    int rc = check_item_updates(u, errstr, errstr_size);
    if (rc)
        return rc;
    writer w = {out, 0};
    w_header(&w, c->opts.schema_id_item_update);
    w_long(&w, u->instance);
    w_long(&w, u->source);
    w_long(&w, u->seq);
    w_long(&w, u->nonce);
    if (u->n_items > 0)
        w_long(&w, (int64_t)u->n_items);
    for (size_t i = 0; i < u->n_items; i++) {
        const codec_item_update *it = &u->items[i];
        w_long(&w, it->id);
        w_long(&w, it->dcount);
        w_double(&w, it->dsum);
        w_float(&w, it->dbias);
        if (it->dim > 0)
            w_long(&w, it->dim);
        for (int f = 0; f < it->dim; f++)
            w_float(&w, it->dvector[f]);
        w_long(&w, 0);
    }
    w_long(&w, 0);
    return w_finish(&w, errstr, errstr_size);
}

static int r_double(reader *r, double *d) {
    if (r->end - r->p < 8)
        return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)r->p[i] << (8 * i);
    memcpy(d, &u, 8);
    r->p += 8;
    return 0;
}

static int upd_oom(char *errstr, size_t errstr_size) {
    ul_set_err(errstr, errstr_size, "out of memory decoding item updates");
    return CODEC_ERR_NOMEM;
}

/* One ItemUpdate: its factors go to u->vectors[*nv..]; offsets, not
 * pointers, until every item is read (the array may move). */
static int r_item_update(reader *rd, codec_item_updates *u, codec_item_update *it, size_t *nv,
                         char *errstr, size_t errstr_size) {
    const char *what = "item updates";
    int64_t count;
    if (r_long(rd, &it->id) || r_int(rd, &it->dcount) || r_double(rd, &it->dsum) ||
        r_float(rd, &it->dbias))
        return avro_fail(what, "items", errstr, errstr_size);
    it->dim = 0;
    it->dvector = (const float *)(uintptr_t)*nv; /* fixed up by the caller */
    for (;;) {
        if (r_block(rd, &count))
            return avro_fail(what, "dvector", errstr, errstr_size);
        if (count == 0)
            return CODEC_OK;
        if (count > (rd->end - rd->p) / 4 || it->dim + count > CODEC_MAX_DIM)
            return avro_fail(what, "dvector", errstr, errstr_size);
        size_t need = *nv + (size_t)count;
        if (need > u->cap_vectors) {
            size_t cap = u->cap_vectors ? u->cap_vectors : 256;
            while (cap < need)
                cap *= 2;
            float *v = realloc(u->vectors, cap * sizeof(float));
            if (v == NULL)
                return upd_oom(errstr, errstr_size);
            u->vectors = v;
            u->cap_vectors = cap;
        }
        for (int64_t i = 0; i < count; i++)
            r_float(rd, &u->vectors[(*nv)++]);
        it->dim += (int)count;
    }
}

static int r_item_updates_body(reader *rd, codec_item_updates *u, char *errstr,
                               size_t errstr_size) {
    const char *what = "item updates";
    if (r_long(rd, &u->instance) || r_int(rd, &u->source) || r_long(rd, &u->seq) ||
        r_long(rd, &u->nonce))
        return avro_fail(what, "instance..nonce", errstr, errstr_size);
    size_t nv = 0;
    int64_t count;
    u->n_items = 0;
    for (;;) {
        if (r_block(rd, &count))
            return avro_fail(what, "items", errstr, errstr_size);
        if (count == 0)
            break;
        if (count > (rd->end - rd->p) / 14) /* an item takes at least 14 bytes */
            return avro_fail(what, "items", errstr, errstr_size);
        if (u->n_items + (size_t)count > u->cap_items) {
            size_t cap = u->cap_items ? u->cap_items : 64;
            while (cap < u->n_items + (size_t)count)
                cap *= 2;
            codec_item_update *v = realloc(u->items, cap * sizeof(*v));
            if (v == NULL)
                return upd_oom(errstr, errstr_size);
            u->items = v;
            u->cap_items = cap;
        }
        for (int64_t i = 0; i < count; i++) {
            int rc = r_item_update(rd, u, &u->items[u->n_items++], &nv, errstr, errstr_size);
            if (rc)
                return rc;
        }
    }
    for (size_t i = 0; i < u->n_items; i++) /* offsets into pointers */
        u->items[i].dvector = u->vectors + (uintptr_t)u->items[i].dvector;
    int rc = r_done(rd, what, errstr, errstr_size);
    return rc ? rc : check_item_updates(u, errstr, errstr_size);
}

int codec_decode_item_updates(const codec *c, const void *buf, size_t len, codec_item_updates *u,
                              char *errstr, size_t errstr_size) {
    uint32_t id;
    int rc = r_frame(buf, len, &id, "item updates", errstr, errstr_size);
    if (rc)
        return rc;
    if (id != (uint32_t)c->opts.schema_id_item_update) {
        ul_set_err(errstr, errstr_size,
                   "item updates: schema id %" PRIu32 " is not the configured %" PRId32
                   " (an internal topic: written by workers of the same configuration only)",
                   id, c->opts.schema_id_item_update);
        return CODEC_ERR_UNKNOWN_SCHEMA;
    }
    reader rd = {(const uint8_t *)buf + CODEC_HEADER_SIZE, (const uint8_t *)buf + len};
    rc = r_item_updates_body(&rd, u, errstr, errstr_size);
    if (rc)
        u->n_items = 0;
    return rc;
}
