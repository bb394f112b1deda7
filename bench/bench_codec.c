/* bench_codec.c: how fast rating records decode, on the same ratings.
 * Prints figures; asserts nothing about time.
 *
 *   bench_codec [N]      (default N = 2,000,000 ratings)
 *
 *   hand             codec_decode_rating on our schema id: the hand-written
 *                    fast path the worker uses
 *   resolved v2      codec_decode_rating on a writer schema with one more
 *                    field (a string with a default, "web"), known from a
 *                    schema.writers file: avro-c's resolved reader
 *                    transcodes into our encoding, then the hand path reads it
 *   resolved same    our own schema under another id (read in place)
 *   avro-c reused    one avro-c reader + generic value reused for every record
 *   avro-c per msg   a new avro-c reader and value per record (the slow pattern)
 *
 * Every path's decoded values are summed and compared, so a fast wrong
 * decoder would show up as a mismatch (exit 1). Also times encoding. */
#include "codec.h"
#include "ul_clock.h"
#include "ul_err.h"

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REC_MAX 40   /* bytes per framed rating (+ 4 for v2's field), upper bound */
#define ID_V2 1000   /* the evolved writer schema's id */
#define ID_SAME 1001 /* our schema under another id */

/* Rating v2: ours plus a field added with a default. */
static const char rating_v2[] =
    "{\"type\":\"record\",\"name\":\"Rating\",\"namespace\":\"io.unlearnd\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},"
    "{\"name\":\"rating\",\"type\":\"float\"},{\"name\":\"event_time\",\"type\":\"long\"},"
    "{\"name\":\"source\",\"type\":\"string\",\"default\":\"\"}]}";

typedef struct sums {
    int64_t ids;
    double ratings;
    int64_t times;
} sums;

static void report(const char *what, size_t n, double secs) {
    printf("%-16s %10zu records %8.3f s %8.1f ns/record %8.2f M records/s\n", what, n, secs,
           secs * 1e9 / (double)n, (double)n / secs / 1e6);
}

static int same(const sums *a, const sums *b) {
    return a->ids == b->ids && a->ratings == b->ratings && a->times == b->times;
}

/* Decode with avro-c. `reuse` keeps one reader and value for all records. */
static int avro_c_decode(const uint8_t *data, const size_t *len, size_t n, int reuse, sums *s) {
    const char *text = codec_schema_text("rating");
    avro_schema_t schema;
    if (avro_schema_from_json_length(text, strlen(text), &schema) != 0)
        return -1;
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    avro_value_t val, f;
    avro_reader_t rd = avro_reader_memory((const char *)data, 0);
    avro_generic_value_new(iface, &val);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *p = (const char *)data + i * REC_MAX + CODEC_HEADER_SIZE;
        int64_t plen = (int64_t)len[i] - CODEC_HEADER_SIZE;
        if (!reuse) {
            avro_reader_free(rd);
            avro_value_decref(&val);
            rd = avro_reader_memory(p, plen);
            avro_generic_value_new(iface, &val);
        } else {
            avro_reader_memory_set_source(rd, p, plen);
        }
        int64_t u, it, t;
        float r;
        rc |= avro_value_read(rd, &val);
        rc |= avro_value_get_by_index(&val, 0, &f, NULL) || avro_value_get_long(&f, &u);
        rc |= avro_value_get_by_index(&val, 1, &f, NULL) || avro_value_get_long(&f, &it);
        rc |= avro_value_get_by_index(&val, 2, &f, NULL) || avro_value_get_float(&f, &r);
        rc |= avro_value_get_by_index(&val, 3, &f, NULL) || avro_value_get_long(&f, &t);
        s->ids += u + it;
        s->ratings += r;
        s->times += t;
    }
    avro_reader_free(rd);
    avro_value_decref(&val);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    return rc;
}

/* A temporary file holding `text`; its path into path (the caller unlinks). */
static int temp_file(const char *text, char *path, size_t size) {
    snprintf(path, size, "/tmp/bench_codec_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The same records under writer schema id `id`; with `extra`, the v2 field
 * ("web") appended. */
static void reframe(const uint8_t *data, const size_t *len, size_t n, uint32_t id, int extra,
                    uint8_t *out, size_t *out_len) {
    for (size_t i = 0; i < n; i++) {
        uint8_t *o = out + i * REC_MAX;
        memcpy(o, data + i * REC_MAX, len[i]);
        for (int k = 0; k < 4; k++)
            o[1 + k] = (uint8_t)(id >> (24 - 8 * k));
        out_len[i] = len[i];
        if (extra) {
            memcpy(o + len[i], "\x06web", 4);
            out_len[i] += 4;
        }
    }
}

/* Decode every record with the codec; 0, or 1 with a message. */
static int codec_pass(const char *what, const codec *c, const uint8_t *data, const size_t *len,
                      size_t n, sums *s) {
    char err[UL_ERRSTR_SIZE];
    double t0 = ul_clock_mono_s();
    for (size_t i = 0; i < n; i++) {
        codec_rating r;
        if (codec_decode_rating(c, data + i * REC_MAX, len[i], &r, err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_codec: %s: decode: %s\n", what, err);
            return 1;
        }
        s->ids += r.user_id + r.item_id;
        s->ratings += r.rating;
        s->times += r.event_time;
    }
    report(what, n, ul_clock_mono_s() - t0);
    return 0;
}

int main(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 2000000;
    if (n == 0) {
        fprintf(stderr, "usage: bench_codec [N>0]\n");
        return 2;
    }
    char v2_path[64], same_path[64], writers[160];
    if (temp_file(rating_v2, v2_path, sizeof(v2_path)) != 0 ||
        temp_file(codec_schema_text("rating"), same_path, sizeof(same_path)) != 0) {
        fprintf(stderr, "bench_codec: cannot write the writer schema files in /tmp\n");
        return 1;
    }
    snprintf(writers, sizeof(writers), "%d=%s,%d=%s", ID_V2, v2_path, ID_SAME, same_path);
    codec_opts o;
    codec_opts_init(&o);
    o.schema_writers = writers;
    codec *c = codec_new(&o, err, sizeof(err));
    unlink(v2_path);
    unlink(same_path);
    uint8_t *data = malloc(n * REC_MAX), *other = malloc(n * REC_MAX);
    size_t *len = malloc(n * sizeof(size_t)), *other_len = malloc(n * sizeof(size_t));
    if (c == NULL || data == NULL || len == NULL || other == NULL || other_len == NULL) {
        fprintf(stderr, "bench_codec: %s\n", c ? "out of memory" : err);
        return 1;
    }
    /* ML-like ids and times: users up to 1e6, items up to 1e5, ms times. */
    codec_buf b = {0};
    uint64_t x = 88172645463325252ULL;
    double t0 = ul_clock_mono_s();
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        codec_rating r = {(int64_t)(x % 1000000), (int64_t)((x >> 20) % 100000),
                          (float)(2 + (x >> 40) % 9) * 0.5f, 1700000000000 + (int64_t)i};
        if (codec_encode_rating(c, &r, &b, err, sizeof(err)) != CODEC_OK || b.len > REC_MAX) {
            fprintf(stderr, "bench_codec: encode: %s\n", err);
            return 1;
        }
        memcpy(data + i * REC_MAX, b.data, b.len);
        len[i] = b.len;
    }
    report("encode", n, ul_clock_mono_s() - t0);

    sums hand = {0}, v2 = {0}, same_id = {0}, reused = {0}, per = {0};
    if (codec_pass("hand", c, data, len, n, &hand) != 0)
        return 1;
    reframe(data, len, n, ID_V2, 1, other, other_len);
    if (codec_pass("resolved v2", c, other, other_len, n, &v2) != 0)
        return 1;
    reframe(data, len, n, ID_SAME, 0, other, other_len);
    if (codec_pass("resolved same", c, other, other_len, n, &same_id) != 0)
        return 1;
    t0 = ul_clock_mono_s();
    int rc = avro_c_decode(data, len, n, 1, &reused);
    report("avro-c reused", n, ul_clock_mono_s() - t0);
    size_t n_per = n < 500000 ? n : 500000; /* the slow path on a prefix */
    t0 = ul_clock_mono_s();
    rc |= avro_c_decode(data, len, n_per, 0, &per);
    report("avro-c per msg", n_per, ul_clock_mono_s() - t0);
    sums hand_prefix = {0};
    for (size_t i = 0; i < n_per; i++) {
        codec_rating r;
        codec_decode_rating(c, data + i * REC_MAX, len[i], &r, NULL, 0);
        hand_prefix.ids += r.user_id + r.item_id;
        hand_prefix.ratings += r.rating;
        hand_prefix.times += r.event_time;
    }
    int ok = rc == 0 && same(&hand, &reused) && same(&hand_prefix, &per) && same(&hand, &v2) &&
             same(&hand, &same_id);
    printf("decoders agree: %s\n", ok ? "yes" : "NO");
    codec_buf_free(&b);
    free(data);
    free(len);
    free(other);
    free(other_len);
    codec_destroy(c);
    return ok ? 0 : 1;
}
