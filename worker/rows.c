/* rows.c: the model's row layout, encoding and placement (see rows.h). */
#include "rows.h"

#include <string.h>

#include "codec.h"
#include "rng.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rows.c stores rows as little-endian float32; port rows_value for this host"
#endif

int rows_dim(rows_kind kind, int k) {
    (void)kind; /* both kinds: bias, factors, row state */
    return 1 + k + ROWS_STATE_FLOATS;
}

int rows_vector_dim(int k) {
    return 1 + k;
}

int rows_state_index(int k) {
    return 1 + k;
}

int rows_k(rows_kind kind, int dim) {
    (void)kind;
    return dim - 1 - ROWS_STATE_FLOATS;
}

void rows_init(float *row, rows_kind kind, int k, uint64_t seed, float init_std, int64_t id) {
    rng r;
    rng_seed(&r, rng_derive(rng_derive(seed, (uint64_t)kind), (uint64_t)id));
    row[ROWS_BIAS] = 0.0f;
    rng_normal_fill(&r, row + ROWS_FACTORS, (size_t)k, init_std);
    for (int i = 0; i < ROWS_STATE_FLOATS; i++)
        row[rows_state_index(k) + i] = 0.0f;
}

size_t rows_value_size(int dim) {
    return (size_t)dim * sizeof(float);
}

const void *rows_value(const float *row, int dim, size_t *len) {
    *len = rows_value_size(dim);
    return row;
}

int rows_from_value(float *row, int dim, const void *val, size_t len) {
    if (len != rows_value_size(dim))
        return -1;
    memcpy(row, val, len);
    return 0;
}

void rows_stats_value(const rows_stats *st, unsigned char *out) {
    memcpy(out, &st->count, 8);
    memcpy(out + 8, &st->sum, 8);
}

int rows_stats_from_value(rows_stats *st, const void *val, size_t len) {
    if (len != ROWS_STATS_BYTES)
        return -1;
    memcpy(&st->count, val, 8);
    memcpy(&st->sum, (const unsigned char *)val + 8, 8);
    return 0;
}

void rows_to_model(const float *row, rows_kind kind, mf_model *m, int32_t idx) {
    size_t k = (size_t)m->k;
    float *bias = kind == ROWS_ITEM ? m->item_bias : m->user_bias;
    float *factors = (kind == ROWS_ITEM ? m->Q : m->P) + (size_t)idx * k;
    bias[idx] = row[ROWS_BIAS];
    memcpy(factors, row + ROWS_FACTORS, k * sizeof(float));
}

void rows_from_model(float *row, rows_kind kind, const mf_model *m, int32_t idx) {
    size_t k = (size_t)m->k;
    const float *bias = kind == ROWS_ITEM ? m->item_bias : m->user_bias;
    const float *factors = (kind == ROWS_ITEM ? m->Q : m->P) + (size_t)idx * k;
    row[ROWS_BIAS] = bias[idx];
    memcpy(row + ROWS_FACTORS, factors, k * sizeof(float));
}

mf_model rows_pair_model(float *urow, float *irow, int k, float mean, float rmin, float rmax) {
    mf_model m;
    memset(&m, 0, sizeof(m));
    m.n_users = m.n_items = 1;
    m.k = k;
    m.global_mean = mean;
    m.rating_min = rmin;
    m.rating_max = rmax;
    m.user_bias = urow + ROWS_BIAS;
    m.P = urow + ROWS_FACTORS;
    m.item_bias = irow + ROWS_BIAS;
    m.Q = irow + ROWS_FACTORS;
    return m;
}

int32_t rows_user_partition(int64_t user, int32_t n) {
    char key[24];
    int len = codec_key_user(user, key, sizeof(key)); /* printf-free: it runs once per event */
    return len > 0 && n > 0 ? codec_partition(key, (size_t)len, n) : -1;
}

int32_t rows_item_partition(int64_t item, int32_t n) {
    return (int32_t)((uint64_t)item % (uint64_t)n);
}
