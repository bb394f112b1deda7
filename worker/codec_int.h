/* codec_int.h: what the codec's files share (codec.c: codec_new, schema
 * checks, framing, the four topic records; codec_updates.c: ItemUpdates;
 * codec_keys.c: keys and partitioning). Internal to worker/: not an API.
 * The frame and error helpers are static inline so the rating decode in
 * codec.c stays inlined as before the split. */
#ifndef UL_CODEC_INT_H
#define UL_CODEC_INT_H

#include <stddef.h>
#include <stdint.h>

#include "avro_bin.h"
#include "codec.h"
#include "schema_cache.h"
#include "ul_err.h"

#define CODEC_MAX_DIM 65536 /* longest factor vector accepted */

struct codec {
    codec_opts opts; /* the borrowed strings cleared */
    schema_cache *cache;
};

/* A validation failure: the message into errstr; returns CODEC_ERR_INVALID. */
int codec_invalid(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void w_header(writer *w, int32_t schema_id) {
    uint32_t id = (uint32_t)schema_id;
    uint8_t h[CODEC_HEADER_SIZE] = {0, (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
                                    (uint8_t)id};
    w->b->len = 0;
    w_bytes(w, h, sizeof(h));
}

static inline int w_finish(writer *w, char *errstr, size_t errstr_size) {
    if (w->failed) {
        ul_set_err(errstr, errstr_size, "out of memory while encoding");
        return CODEC_ERR_NOMEM;
    }
    return CODEC_OK;
}

/* Check the Confluent frame; the schema id into *id. */
static inline int r_frame(const void *buf, size_t len, uint32_t *id, const char *what, char *errstr,
                          size_t errstr_size) {
    const uint8_t *p = buf;
    if (buf == NULL || len < CODEC_HEADER_SIZE) {
        ul_set_err(errstr, errstr_size, "%s: %zu bytes, shorter than the 5-byte Confluent header",
                   what, buf ? len : 0);
        return CODEC_ERR_TOO_SHORT;
    }
    if (p[0] != 0) {
        ul_set_err(errstr, errstr_size, "%s: magic byte is %u, expected 0 (Confluent framing)",
                   what, p[0]);
        return CODEC_ERR_BAD_MAGIC;
    }
    *id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    return CODEC_OK;
}

static inline void tmp_free(codec_buf *tmp) {
    if (tmp->data)
        codec_buf_free(tmp);
}

static inline int avro_fail(const char *what, const char *field, char *errstr, size_t errstr_size) {
    ul_set_err(errstr, errstr_size, "%s: Avro body does not decode (at field %s)", what, field);
    return CODEC_ERR_AVRO;
}

static inline int r_done(reader *r, const char *what, char *errstr, size_t errstr_size) {
    if (r->p != r->end) {
        ul_set_err(errstr, errstr_size, "%s: %td trailing bytes after the record", what,
                   r->end - r->p);
        return CODEC_ERR_AVRO;
    }
    return CODEC_OK;
}

#endif
