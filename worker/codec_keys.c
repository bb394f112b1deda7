/* codec_keys.c: the Kafka keys of our records (see codec.h): user and factor
 * keys as text or Confluent-framed Avro, their parsing, and the murmur2
 * partitioner that matches the Java client's default. */
#include <stdlib.h>
#include <string.h>

#include "codec_int.h"
#include "ul_buf.h"

int codec_key_user(int64_t user_id, char *buf, size_t size) {
    return ul_fmt_i64(buf, size, user_id);
}

int codec_key_factor(codec_kind kind, int64_t id, char *buf, size_t size) {
    if (size < 3)
        return -1;
    buf[0] = kind == CODEC_KIND_USER ? 'u' : 'i';
    buf[1] = ':';
    int n = ul_fmt_i64(buf + 2, size - 2, id);
    return n < 0 ? -1 : n + 2;
}

int codec_parse_user_key(const void *key, size_t len, int64_t *user_id) {
    const char *s = key;
    int64_t v = 0;
    if (key == NULL || len == 0 || len > 19)
        return UL_ERR_PARSE;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return UL_ERR_PARSE;
        v = v * 10 + (s[i] - '0');
    }
    *user_id = v;
    return UL_OK;
}

int codec_user_key(codec_key_format fmt, int32_t schema_id, int64_t user, void *buf, size_t size) {
    if (fmt == CODEC_KEY_STRING)
        return codec_key_user(user, buf, size);
    uint8_t *p = buf;
    if (size < 5 + 10)
        return -1;
    uint32_t id = (uint32_t)schema_id;
    p[0] = 0;
    p[1] = (uint8_t)(id >> 24);
    p[2] = (uint8_t)(id >> 16);
    p[3] = (uint8_t)(id >> 8);
    p[4] = (uint8_t)id;
    return (int)(5 + avro_put_long(p + 5, user));
}

int codec_user_key_parse(codec_key_format fmt, const void *key, size_t len, int64_t *user) {
    if (fmt == CODEC_KEY_STRING)
        return codec_parse_user_key(key, len, user);
    const uint8_t *k = key;
    if (key == NULL || len < 6 || k[0] != 0)
        return UL_ERR_PARSE;
    int64_t v;
    reader r = {k + 5, k + len};
    if (r_long(&r, &v) == 0 && r.p == r.end) /* a long: the varint is the whole body */
        return v >= 0 ? (*user = v, UL_OK) : UL_ERR_PARSE;
    r = (reader){k + 5, k + len};
    if (r_long(&r, &v) == 0 && v > 0 && v == r.end - r.p) /* a string of the rest's length */
        return codec_parse_user_key(r.p, (size_t)v, user);
    return UL_ERR_PARSE;
}

int32_t codec_user_partition(codec_key_format fmt, int32_t schema_id, int64_t user, int32_t n) {
    uint8_t key[CODEC_KEY_MAX];
    int len = codec_user_key(fmt, schema_id, user, key, sizeof(key));
    return len < 0 ? -1 : codec_partition(key, (size_t)len, n);
}

/* Java's org.apache.kafka.common.utils.Utils.murmur2 (seed 0x9747b28c). */
int32_t codec_murmur2(const void *key, size_t len) {
    const uint8_t *data = key;
    const uint32_t m = 0x5bd1e995;
    const int r = 24;
    uint32_t h = 0x9747b28cU ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        const uint8_t *p = data + i * 4;
        uint32_t k =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = data + n4 * 4;
    switch (len % 4) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t codec_partition(const void *key, size_t len, int32_t partition_cnt) {
    if (partition_cnt <= 0)
        return -1;
    uint32_t h = (uint32_t)codec_murmur2(key, len) & 0x7fffffffU;
    return (int32_t)(h % (uint32_t)partition_cnt);
}
