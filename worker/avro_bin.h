/* avro_bin.h: the Avro binary encoding's primitives, shared by the
 * hand-written codec (codec.c) and the schema resolution (resolve.c): a
 * growable writer over a codec_buf (zigzag varints, little-endian floats,
 * raw bytes) and a bounded reader (varints with overflow checks, floats,
 * array block headers). Internal to worker/: not an API. Every reader
 * function returns 0, or -1 when the bytes end early or a varint is bad;
 * the writer records an allocation failure in `failed` and ignores later
 * writes. */
#ifndef UL_AVRO_BIN_H
#define UL_AVRO_BIN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

typedef struct writer {
    codec_buf *b;
    int failed;
} writer;

static inline int w_reserve(writer *w, size_t extra) {
    codec_buf *b = w->b;
    if (w->failed)
        return -1;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL) {
        w->failed = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline void w_bytes(writer *w, const void *p, size_t n) {
    if (w_reserve(w, n) == 0) {
        memcpy(w->b->data + w->b->len, p, n);
        w->b->len += n;
    }
}

/* The zigzag varint of v into p (at most 10 bytes); returns its length. */
static inline size_t avro_put_long(uint8_t *p, int64_t v) {
    uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 0;
    while (u >= 0x80) {
        p[n++] = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    p[n++] = (uint8_t)u;
    return n;
}

static inline void w_long(writer *w, int64_t v) {
    if (w_reserve(w, 10) != 0)
        return;
    w->b->len += avro_put_long(w->b->data + w->b->len, v);
}

static inline void w_float(writer *w, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    w_bytes(w, le, 4);
}

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static inline int r_long(reader *r, int64_t *v) {
    uint64_t u = 0;
    for (int shift = 0; shift < 70 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        u |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
            return 0;
        }
    }
    return -1;
}

static inline int r_int(reader *r, int32_t *v) {
    int64_t l;
    if (r_long(r, &l) != 0 || l < INT32_MIN || l > INT32_MAX)
        return -1;
    *v = (int32_t)l;
    return 0;
}

static inline int r_float(reader *r, float *f) {
    if (r->end - r->p < 4)
        return -1;
    uint32_t u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
    memcpy(f, &u, 4);
    r->p += 4;
    return 0;
}

/* Start of an array block: item count (negative = followed by byte size). */
static inline int r_block(reader *r, int64_t *count) {
    if (r_long(r, count) != 0)
        return -1;
    if (*count < 0) {
        int64_t bytes;
        if (*count == INT64_MIN || r_long(r, &bytes) != 0 || bytes < 0)
            return -1;
        *count = -*count;
    }
    return 0;
}

static inline void w_double(writer *w, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(u >> (8 * i));
    w_bytes(w, le, 8);
}

#endif
