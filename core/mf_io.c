/* mf_io.c: the binary model file (mf_save / mf_load).
 *
 * Layout, all little-endian whatever the host:
 *   header, 64 bytes:
 *     0  "ULMF"           4  u32 version (1)     8  u32 flags (bit 0: user
 *     ids, bit 1: item ids)  12 i32 n_users  16 i32 n_items  20 i32 k
 *     24 f32 global_mean  28 f32 rating_min  32 f32 rating_max  36 u32 0
 *     40 u64 payload bytes  48 u32 payload CRC-32  52..59 zero
 *     60 u32 CRC-32 of bytes 0..59
 *   payload: f32 user_bias[n_users], f32 item_bias[n_items],
 *     f32 P[n_users*k], f32 Q[n_items*k], then i64 user_ids[n_users] and
 *     i64 item_ids[n_items] when their flag is set.
 * CRC-32 is the IEEE/zlib polynomial (reflected 0xEDB88320).
 *
 * Saving writes PATH.tmp, fsyncs it and renames it over PATH, so a reader
 * never sees a half-written model. Loading checks magic, version, header
 * CRC, dimensions against the file size (before allocating anything), then
 * the payload CRC; every rejection names the file. */
#include "mf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ul_err.h"

#define MF_MAGIC "ULMF"
#define MF_VERSION 1u
#define MF_HEADER_SIZE 64
#define MF_FLAG_USER_IDS 1u
#define MF_FLAG_ITEM_IDS 2u
#define MF_CHUNK 65536

typedef struct crc32_ctx {
    uint32_t table[256];
    uint32_t crc;
} crc32_ctx;

static void crc32_init(crc32_ctx *c) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t v = n;
        for (int b = 0; b < 8; b++)
            v = (v & 1u) ? 0xEDB88320u ^ (v >> 1) : v >> 1;
        c->table[n] = v;
    }
    c->crc = 0xFFFFFFFFu;
}

static void crc32_update(crc32_ctx *c, const uint8_t *buf, size_t n) {
    uint32_t crc = c->crc;
    for (size_t x = 0; x < n; x++)
        crc = c->table[(crc ^ buf[x]) & 0xFFu] ^ (crc >> 8);
    c->crc = crc;
}

static uint32_t crc32_final(const crc32_ctx *c) {
    return c->crc ^ 0xFFFFFFFFu;
}

static void put_u32(uint8_t *b, uint32_t v) {
    for (int x = 0; x < 4; x++)
        b[x] = (uint8_t)(v >> (8 * x));
}

static void put_u64(uint8_t *b, uint64_t v) {
    for (int x = 0; x < 8; x++)
        b[x] = (uint8_t)(v >> (8 * x));
}

static void put_f32(uint8_t *b, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(b, v);
}

static uint32_t get_u32(const uint8_t *b) {
    uint32_t v = 0;
    for (int x = 0; x < 4; x++)
        v |= (uint32_t)b[x] << (8 * x);
    return v;
}

static uint64_t get_u64(const uint8_t *b) {
    uint64_t v = 0;
    for (int x = 0; x < 8; x++)
        v |= (uint64_t)b[x] << (8 * x);
    return v;
}

static float get_f32(const uint8_t *b) {
    uint32_t v = get_u32(b);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

static uint64_t payload_bytes(uint64_t nu, uint64_t ni, uint64_t k, uint32_t flags) {
    uint64_t bytes = (nu + ni) * 4 + (nu + ni) * k * 4;
    if (flags & MF_FLAG_USER_IDS)
        bytes += nu * 8;
    if (flags & MF_FLAG_ITEM_IDS)
        bytes += ni * 8;
    return bytes;
}

/* ---- writing ---- */

typedef struct writer {
    FILE *f;
    crc32_ctx crc;
    uint8_t buf[MF_CHUNK];
    size_t used;
    int failed;
} writer;

static void writer_flush(writer *w) {
    if (w->used == 0)
        return;
    crc32_update(&w->crc, w->buf, w->used);
    if (fwrite(w->buf, 1, w->used, w->f) != w->used)
        w->failed = 1;
    w->used = 0;
}

static void write_floats(writer *w, const float *v, size_t n) {
    for (size_t x = 0; x < n; x++) {
        if (w->used + 4 > MF_CHUNK)
            writer_flush(w);
        put_f32(w->buf + w->used, v[x]);
        w->used += 4;
    }
}

static void write_ids(writer *w, const int64_t *v, size_t n) {
    for (size_t x = 0; x < n; x++) {
        if (w->used + 8 > MF_CHUNK)
            writer_flush(w);
        put_u64(w->buf + w->used, (uint64_t)v[x]);
        w->used += 8;
    }
}

static void encode_header(const mf_model *m, uint32_t flags, uint64_t bytes, uint32_t crc,
                          uint8_t *h) {
    memset(h, 0, MF_HEADER_SIZE);
    memcpy(h, MF_MAGIC, 4);
    put_u32(h + 4, MF_VERSION);
    put_u32(h + 8, flags);
    put_u32(h + 12, (uint32_t)m->n_users);
    put_u32(h + 16, (uint32_t)m->n_items);
    put_u32(h + 20, (uint32_t)m->k);
    put_f32(h + 24, m->global_mean);
    put_f32(h + 28, m->rating_min);
    put_f32(h + 32, m->rating_max);
    put_u64(h + 40, bytes);
    put_u32(h + 48, crc);
    crc32_ctx c;
    crc32_init(&c);
    crc32_update(&c, h, MF_HEADER_SIZE - 4);
    put_u32(h + 60, crc32_final(&c));
}

/* Header placeholder, payload with its CRC, then the real header. */
static int write_model(writer *w, const mf_model *m) {
    size_t nu = (size_t)m->n_users, ni = (size_t)m->n_items, k = (size_t)m->k;
    uint32_t flags = (m->user_ids ? MF_FLAG_USER_IDS : 0u) | (m->item_ids ? MF_FLAG_ITEM_IDS : 0u);
    uint8_t h[MF_HEADER_SIZE];
    memset(h, 0, sizeof(h));
    if (fwrite(h, 1, sizeof(h), w->f) != sizeof(h))
        return -1;
    crc32_init(&w->crc);
    write_floats(w, m->user_bias, nu);
    write_floats(w, m->item_bias, ni);
    write_floats(w, m->P, nu * k);
    write_floats(w, m->Q, ni * k);
    if (m->user_ids != NULL)
        write_ids(w, m->user_ids, nu);
    if (m->item_ids != NULL)
        write_ids(w, m->item_ids, ni);
    writer_flush(w);
    if (w->failed)
        return -1;
    encode_header(m, flags, payload_bytes(nu, ni, k, flags), crc32_final(&w->crc), h);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof(h), w->f) != sizeof(h))
        return -1;
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        return -1;
    return 0;
}

int mf_save(const mf_model *m, const char *path, char *errstr, size_t errstr_size) {
    if (m == NULL || path == NULL) {
        ul_set_err(errstr, errstr_size, "mf_save: model and path are required");
        return UL_ERR_ARG;
    }
    size_t len = strlen(path);
    char *tmp = malloc(len + 5);
    writer *w = malloc(sizeof(*w));
    if (tmp == NULL || w == NULL) {
        free(tmp);
        free(w);
        ul_set_err(errstr, errstr_size, "%s: out of memory", path);
        return UL_ERR_NOMEM;
    }
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    memset(w, 0, sizeof(*w));
    int rc = UL_OK;
    w->f = fopen(tmp, "wb");
    if (w->f == NULL) {
        ul_set_err(errstr, errstr_size, "%s: cannot create: %s", tmp, strerror(errno));
        rc = UL_ERR_IO;
        goto done;
    }
    int werr = write_model(w, m);
    int saved_errno = errno;
    if (fclose(w->f) != 0 && werr == 0) {
        werr = -1;
        saved_errno = errno;
    }
    if (werr == 0 && rename(tmp, path) != 0) {
        werr = -1;
        saved_errno = errno;
    }
    if (werr != 0) {
        unlink(tmp);
        ul_set_err(errstr, errstr_size, "%s: cannot write model: %s", path, strerror(saved_errno));
        rc = UL_ERR_IO;
    }
done:
    free(tmp);
    free(w);
    return rc;
}

/* ---- reading ---- */

typedef struct reader {
    FILE *f;
    crc32_ctx crc;
    uint8_t buf[MF_CHUNK];
    size_t used, len; /* consumed / filled bytes of buf */
    int short_read;
} reader;

/* Make at least `need` (<= MF_CHUNK) bytes available in buf. */
static int reader_fill(reader *r, size_t need) {
    if (r->len - r->used >= need)
        return 0;
    memmove(r->buf, r->buf + r->used, r->len - r->used);
    r->len -= r->used;
    r->used = 0;
    size_t got = fread(r->buf + r->len, 1, MF_CHUNK - r->len, r->f);
    crc32_update(&r->crc, r->buf + r->len, got);
    r->len += got;
    if (r->len < need) {
        r->short_read = 1;
        return -1;
    }
    return 0;
}

static int read_floats(reader *r, float *v, size_t n) {
    for (size_t x = 0; x < n; x++) {
        if (reader_fill(r, 4) != 0)
            return -1;
        v[x] = get_f32(r->buf + r->used);
        r->used += 4;
    }
    return 0;
}

static int read_ids(reader *r, int64_t **v, size_t n) {
    *v = malloc(n * sizeof(int64_t));
    if (*v == NULL)
        return -1;
    for (size_t x = 0; x < n; x++) {
        if (reader_fill(r, 8) != 0)
            return -1;
        (*v)[x] = (int64_t)get_u64(r->buf + r->used);
        r->used += 8;
    }
    return 0;
}

typedef struct header {
    uint32_t version, flags;
    int32_t n_users, n_items, k;
    float global_mean, rating_min, rating_max;
    uint64_t bytes;
    uint32_t crc;
} header;

static int check_header(const uint8_t *h, uint64_t file_size, const char *path, header *hd,
                        char *errstr, size_t errstr_size) {
    if (memcmp(h, MF_MAGIC, 4) != 0) {
        ul_set_err(errstr, errstr_size, "%s: not an unlearnd model file (bad magic)", path);
        return UL_ERR_CORRUPT;
    }
    hd->version = get_u32(h + 4);
    if (hd->version != MF_VERSION) {
        ul_set_err(errstr, errstr_size,
                   "%s: model format version %u is not supported (this build reads version %u)",
                   path, hd->version, MF_VERSION);
        return UL_ERR_CORRUPT;
    }
    crc32_ctx c;
    crc32_init(&c);
    crc32_update(&c, h, MF_HEADER_SIZE - 4);
    if (crc32_final(&c) != get_u32(h + 60)) {
        ul_set_err(errstr, errstr_size, "%s: model header checksum mismatch (corrupt file)", path);
        return UL_ERR_CORRUPT;
    }
    hd->flags = get_u32(h + 8);
    hd->n_users = (int32_t)get_u32(h + 12);
    hd->n_items = (int32_t)get_u32(h + 16);
    hd->k = (int32_t)get_u32(h + 20);
    hd->global_mean = get_f32(h + 24);
    hd->rating_min = get_f32(h + 28);
    hd->rating_max = get_f32(h + 32);
    hd->bytes = get_u64(h + 40);
    hd->crc = get_u32(h + 48);
    if (hd->n_users < 1 || hd->n_items < 1 || hd->k < 1 || hd->k > MF_MAX_K ||
        (hd->flags & ~(MF_FLAG_USER_IDS | MF_FLAG_ITEM_IDS)) != 0) {
        ul_set_err(errstr, errstr_size,
                   "%s: absurd model dimensions (users %d, items %d, k %d, flags %#x)", path,
                   (int)hd->n_users, (int)hd->n_items, (int)hd->k, hd->flags);
        return UL_ERR_CORRUPT;
    }
    uint64_t expect =
        payload_bytes((uint64_t)hd->n_users, (uint64_t)hd->n_items, (uint64_t)hd->k, hd->flags);
    if (hd->bytes != expect) {
        ul_set_err(errstr, errstr_size,
                   "%s: header says %llu payload bytes but its dimensions need %llu", path,
                   (unsigned long long)hd->bytes, (unsigned long long)expect);
        return UL_ERR_CORRUPT;
    }
    if (file_size != MF_HEADER_SIZE + expect) {
        ul_set_err(errstr, errstr_size,
                   "%s: %s: %llu bytes, expected %llu for a %d x %d k=%d model", path,
                   file_size < MF_HEADER_SIZE + expect ? "truncated" : "trailing data",
                   (unsigned long long)file_size, (unsigned long long)(MF_HEADER_SIZE + expect),
                   (int)hd->n_users, (int)hd->n_items, (int)hd->k);
        return UL_ERR_CORRUPT;
    }
    if (!isfinite(hd->global_mean) || !isfinite(hd->rating_min) || !isfinite(hd->rating_max) ||
        hd->rating_min >= hd->rating_max) {
        ul_set_err(errstr, errstr_size, "%s: invalid mean or rating scale in the header", path);
        return UL_ERR_CORRUPT;
    }
    return UL_OK;
}

static int read_payload(reader *r, mf_model *m, uint32_t flags) {
    size_t nu = (size_t)m->n_users, ni = (size_t)m->n_items, k = (size_t)m->k;
    if (read_floats(r, m->user_bias, nu) || read_floats(r, m->item_bias, ni) ||
        read_floats(r, m->P, nu * k) || read_floats(r, m->Q, ni * k))
        return -1;
    if ((flags & MF_FLAG_USER_IDS) && read_ids(r, &m->user_ids, nu))
        return -1;
    if ((flags & MF_FLAG_ITEM_IDS) && read_ids(r, &m->item_ids, ni))
        return -1;
    return 0;
}

mf_model *mf_load(const char *path, char *errstr, size_t errstr_size) {
    mf_model *m = NULL;
    reader *r = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        ul_set_err(errstr, errstr_size, "%s: cannot open model: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    uint8_t h[MF_HEADER_SIZE];
    header hd;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        ul_set_err(errstr, errstr_size, "%s: not a regular file", path);
        goto fail;
    }
    if (fread(h, 1, MF_HEADER_SIZE, f) != MF_HEADER_SIZE) {
        ul_set_err(errstr, errstr_size, "%s: truncated model file (%lld bytes, header needs %d)",
                   path, (long long)st.st_size, MF_HEADER_SIZE);
        goto fail;
    }
    if (check_header(h, (uint64_t)st.st_size, path, &hd, errstr, errstr_size) != UL_OK)
        goto fail;
    m = mf_model_new(hd.n_users, hd.n_items, hd.k, errstr, errstr_size);
    r = calloc(1, sizeof(*r));
    if (m == NULL || r == NULL) {
        ul_set_err(errstr, errstr_size, "%s: out of memory for a %d x %d k=%d model", path,
                   (int)hd.n_users, (int)hd.n_items, (int)hd.k);
        goto fail;
    }
    m->global_mean = hd.global_mean;
    m->rating_min = hd.rating_min;
    m->rating_max = hd.rating_max;
    r->f = f;
    crc32_init(&r->crc);
    if (read_payload(r, m, hd.flags) != 0) {
        if (r->short_read)
            ul_set_err(errstr, errstr_size, "%s: truncated model file", path);
        else
            ul_set_err(errstr, errstr_size, "%s: out of memory reading raw ids", path);
        goto fail;
    }
    if (crc32_final(&r->crc) != hd.crc) {
        ul_set_err(errstr, errstr_size, "%s: model checksum mismatch (corrupt file)", path);
        goto fail;
    }
    free(r);
    fclose(f);
    return m;
fail:
    free(r);
    mf_model_destroy(m);
    fclose(f);
    return NULL;
}
