/* test_codec.c: Confluent-framed Avro records: round trips, the wire bytes,
 * agreement with avro-c in both directions (the internal ItemUpdates record
 * with its nested array of records too), every rejected input with its
 * code, keys and Java-compatible murmur2 partitioning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "ul_err.h"

static char err[UL_ERRSTR_SIZE];

static codec *make(void) {
    codec_opts o;
    codec_opts_init(&o);
    o.max_forget_items = 5;
    codec *c = codec_new(&o, err, sizeof(err));
    assert_non_null(c);
    return c;
}

/* ---- a raw Avro writer for hand-made (possibly invalid) records -------- */

typedef struct raw {
    uint8_t b[4096];
    size_t n;
} raw;

static void raw_header(raw *r, uint8_t magic, uint32_t id) {
    r->n = 0;
    r->b[r->n++] = magic;
    r->b[r->n++] = (uint8_t)(id >> 24);
    r->b[r->n++] = (uint8_t)(id >> 16);
    r->b[r->n++] = (uint8_t)(id >> 8);
    r->b[r->n++] = (uint8_t)id;
}

static void raw_long(raw *r, int64_t v) {
    uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (u >= 0x80) {
        r->b[r->n++] = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    r->b[r->n++] = (uint8_t)u;
}

static void raw_float(raw *r, float f) {
    memcpy(r->b + r->n, &f, 4); /* x86/ARM little-endian, as Avro */
    r->n += 4;
}

static void raw_string(raw *r, const char *s) {
    raw_long(r, (int64_t)strlen(s));
    memcpy(r->b + r->n, s, strlen(s));
    r->n += strlen(s);
}

static void raw_rating(raw *r, int64_t u, int64_t i, float v, int64_t t) {
    raw_header(r, 0, 1);
    raw_long(r, u);
    raw_long(r, i);
    raw_float(r, v);
    raw_long(r, t);
}

/* forget request with an item list (n >= 0) or a window (n < 0). */
static void raw_forget(raw *r, const char *id, int64_t user, const int64_t *items, int n,
                       int64_t from, int64_t to, int64_t reason) {
    raw_header(r, 0, 2);
    raw_string(r, id);
    raw_long(r, user);
    if (n >= 0) {
        raw_long(r, 1);
        if (n > 0)
            raw_long(r, n);
        for (int k = 0; k < n; k++)
            raw_long(r, items[k]);
        raw_long(r, 0);
        raw_long(r, 0);
    } else {
        raw_long(r, 0);
        raw_long(r, 1);
        raw_long(r, from);
        raw_long(r, to);
    }
    raw_long(r, reason);
    raw_long(r, 1700000000000);
}

/* ---- round trips ------------------------------------------------------- */

static void test_rating_round_trip_and_wire_bytes(void **state) {
    (void)state;
    codec *c = make();
    codec_buf b = {0};
    codec_rating in = {42, 7, 4.5f, 1700000000123}, out;
    assert_int_equal(codec_encode_rating(c, &in, &b, err, sizeof(err)), CODEC_OK);
    /* magic 0, schema id 1 big-endian, then zigzag(42)=84, zigzag(7)=14 */
    const uint8_t head[] = {0, 0, 0, 0, 1, 84, 14};
    assert_memory_equal(b.data, head, sizeof(head));
    assert_int_equal(codec_peek_schema_id(b.data, b.len), 1);
    raw r;
    raw_rating(&r, 42, 7, 4.5f, 1700000000123);
    assert_int_equal(b.len, r.n);
    assert_memory_equal(b.data, r.b, r.n);
    assert_int_equal(codec_decode_rating(c, b.data, b.len, &out, err, sizeof(err)), CODEC_OK);
    assert_int_equal(out.user_id, 42);
    assert_int_equal(out.item_id, 7);
    assert_true(out.rating == 4.5f);
    assert_int_equal(out.event_time, 1700000000123);
    /* extremes of the long encoding */
    codec_rating big = {INT64_MAX, 0, 1.0f, 0};
    assert_int_equal(codec_encode_rating(c, &big, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(codec_decode_rating(c, b.data, b.len, &out, err, sizeof(err)), CODEC_OK);
    assert_true(out.user_id == INT64_MAX && out.item_id == 0 && out.rating == 1.0f);
    codec_buf_free(&b);
    codec_destroy(c);
}

static void test_forget_round_trip(void **state) {
    (void)state;
    codec *c = make();
    codec_buf b = {0};
    int64_t items[] = {3, 1, 99999999999};
    codec_forget in = {.user_id = 5,
                       .items = items,
                       .n_items = 3,
                       .reason = CODEC_REASON_SOMEONE_ELSE,
                       .requested_at = 77};
    strcpy(in.request_id, "req-1");
    codec_forget out;
    assert_int_equal(codec_encode_forget(c, &in, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(codec_peek_schema_id(b.data, b.len), 2);
    assert_int_equal(codec_decode_forget(c, b.data, b.len, &out, err, sizeof(err)), CODEC_OK);
    assert_string_equal(out.request_id, "req-1");
    assert_int_equal(out.user_id, 5);
    assert_int_equal(out.n_items, 3);
    assert_int_equal(out.items[2], 99999999999);
    assert_false(out.has_window);
    assert_int_equal(out.reason, CODEC_REASON_SOMEONE_ELSE);
    assert_int_equal(out.requested_at, 77);
    codec_forget_clear(&out);

    codec_forget win = {.user_id = 6,
                        .has_window = 1,
                        .window_from = 10,
                        .window_to = 10,
                        .reason = CODEC_REASON_ERASURE};
    strcpy(win.request_id, "w");
    assert_int_equal(codec_encode_forget(c, &win, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(codec_decode_forget(c, b.data, b.len, &out, err, sizeof(err)), CODEC_OK);
    assert_true(out.has_window && out.window_from == 10 && out.window_to == 10);
    assert_null(out.items);
    assert_int_equal(out.reason, CODEC_REASON_ERASURE);
    codec_forget_clear(&out);
    codec_buf_free(&b);
    codec_destroy(c);
}

static void test_factor_and_receipt_round_trip(void **state) {
    (void)state;
    codec *c = make();
    codec_buf b = {0};
    float v[64];
    for (int i = 0; i < 64; i++)
        v[i] = (float)i * 0.25f - 3.0f;
    codec_factor f = {9, CODEC_KIND_ITEM, 1234, v, 64, -0.5f}, fo;
    assert_int_equal(codec_encode_factor(c, &f, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(codec_decode_factor(c, b.data, b.len, &fo, err, sizeof(err)), CODEC_OK);
    assert_int_equal(fo.model_version, 9);
    assert_int_equal(fo.kind, CODEC_KIND_ITEM);
    assert_int_equal(fo.id, 1234);
    assert_int_equal(fo.dim, 64);
    assert_memory_equal(fo.vector, v, sizeof(v));
    assert_true(fo.bias == -0.5f);
    codec_factor_clear(&fo);
    v[3] = NAN;
    assert_int_equal(codec_encode_factor(c, &f, &b, err, sizeof(err)), CODEC_ERR_INVALID);

    codec_receipt rc = {"", 5, 3, 10, 100, 200, 7, 1, 2}, ro;
    strcpy(rc.request_id, "req-1");
    assert_int_equal(codec_encode_receipt(c, &rc, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(codec_decode_receipt(c, b.data, b.len, &ro, err, sizeof(err)), CODEC_OK);
    assert_string_equal(ro.request_id, "req-1");
    assert_true(ro.user_id == 5 && ro.forgotten == 3 && ro.model_version == 10 &&
                ro.received_at == 100 && ro.completed_at == 200);
    /* a receipt is not a rating: schema id 4 (our receipt schema) cannot be
     * read as a rating */
    codec_rating r;
    assert_int_equal(codec_decode_rating(c, b.data, b.len, &r, err, sizeof(err)),
                     CODEC_ERR_UNRESOLVED);
    assert_non_null(strstr(err, "record ForgetReceipt, not our Rating"));
    codec_buf_free(&b);
    codec_destroy(c);
}

/* ---- agreement with avro-c --------------------------------------------- */

static avro_value_iface_t *iface_for(const char *name, avro_schema_t *schema) {
    const char *text = codec_schema_text(name);
    assert_non_null(text);
    assert_int_equal(avro_schema_from_json_length(text, strlen(text), schema), 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(*schema);
    assert_non_null(iface);
    return iface;
}

static void test_avro_c_reads_what_we_write(void **state) {
    (void)state;
    codec *c = make();
    codec_buf b = {0};
    int64_t items[] = {11, 12};
    codec_forget fr = {.user_id = 77,
                       .items = items,
                       .n_items = 2,
                       .reason = CODEC_REASON_LOST_INTEREST,
                       .requested_at = 123};
    strcpy(fr.request_id, "abc");
    assert_int_equal(codec_encode_forget(c, &fr, &b, err, sizeof(err)), CODEC_OK);
    avro_schema_t schema;
    avro_value_iface_t *iface = iface_for("forget_request", &schema);
    avro_value_t val, field, branch, elem;
    assert_int_equal(avro_generic_value_new(iface, &val), 0);
    avro_reader_t rd = avro_reader_memory((const char *)b.data + 5, (int64_t)b.len - 5);
    assert_int_equal(avro_value_read(rd, &val), 0);
    const char *s;
    size_t size;
    int64_t l;
    int e, disc;
    assert_int_equal(avro_value_get_by_name(&val, "request_id", &field, NULL), 0);
    assert_int_equal(avro_value_get_string(&field, &s, &size), 0);
    assert_string_equal(s, "abc");
    assert_int_equal(avro_value_get_by_name(&val, "user_id", &field, NULL), 0);
    assert_int_equal(avro_value_get_long(&field, &l), 0);
    assert_int_equal(l, 77);
    assert_int_equal(avro_value_get_by_name(&val, "items", &field, NULL), 0);
    assert_int_equal(avro_value_get_discriminant(&field, &disc), 0);
    assert_int_equal(disc, 1);
    assert_int_equal(avro_value_get_current_branch(&field, &branch), 0);
    assert_int_equal(avro_value_get_size(&branch, &size), 0);
    assert_int_equal(size, 2);
    assert_int_equal(avro_value_get_by_index(&branch, 1, &elem, NULL), 0);
    assert_int_equal(avro_value_get_long(&elem, &l), 0);
    assert_int_equal(l, 12);
    assert_int_equal(avro_value_get_by_name(&val, "window", &field, NULL), 0);
    assert_int_equal(avro_value_get_discriminant(&field, &disc), 0);
    assert_int_equal(disc, 0);
    assert_int_equal(avro_value_get_by_name(&val, "reason", &field, NULL), 0);
    assert_int_equal(avro_value_get_enum(&field, &e), 0);
    assert_int_equal(e, CODEC_REASON_LOST_INTEREST);
    avro_reader_free(rd);
    avro_value_decref(&val);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    codec_buf_free(&b);
    codec_destroy(c);
}

static void test_we_read_what_avro_c_writes(void **state) {
    (void)state;
    codec *c = make();
    avro_schema_t schema;
    avro_value_iface_t *iface = iface_for("forget_request", &schema);
    avro_value_t val, field, branch, sub;
    assert_int_equal(avro_generic_value_new(iface, &val), 0);
    avro_value_get_by_name(&val, "request_id", &field, NULL);
    avro_value_set_string(&field, "from-avro-c");
    avro_value_get_by_name(&val, "user_id", &field, NULL);
    avro_value_set_long(&field, 9);
    avro_value_get_by_name(&val, "items", &field, NULL);
    avro_value_set_branch(&field, 0, &branch);
    avro_value_set_null(&branch);
    avro_value_get_by_name(&val, "window", &field, NULL);
    avro_value_set_branch(&field, 1, &branch);
    avro_value_get_by_name(&branch, "from", &sub, NULL);
    avro_value_set_long(&sub, 1000);
    avro_value_get_by_name(&branch, "to", &sub, NULL);
    avro_value_set_long(&sub, 2000);
    avro_value_get_by_name(&val, "reason", &field, NULL);
    avro_value_set_enum(&field, CODEC_REASON_FAULTY_ACQUISITION);
    avro_value_get_by_name(&val, "requested_at", &field, NULL);
    avro_value_set_long(&field, 5);
    char buf[256] = {0, 0, 0, 0, 2};
    avro_writer_t w = avro_writer_memory(buf + 5, sizeof(buf) - 5);
    assert_int_equal(avro_value_write(w, &val), 0);
    size_t len = 5 + (size_t)avro_writer_tell(w);
    codec_forget fr;
    assert_int_equal(codec_decode_forget(c, buf, len, &fr, err, sizeof(err)), CODEC_OK);
    assert_string_equal(fr.request_id, "from-avro-c");
    assert_true(fr.user_id == 9 && fr.has_window && fr.window_from == 1000 &&
                fr.window_to == 2000 && fr.reason == CODEC_REASON_FAULTY_ACQUISITION &&
                fr.requested_at == 5);
    codec_forget_clear(&fr);
    avro_writer_free(w);
    avro_value_decref(&val);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    codec_destroy(c);
}

/* ---- ItemUpdates (internal) --------------------------------------------- */

static codec_item_updates sample_updates(codec_item_update *it, float *v) {
    for (int f = 0; f < 3; f++)
        v[f] = 0.5f * (float)f - 0.25f;
    it[0] = (codec_item_update){41, -2, -7.5, 0.125f, v, 3};
    it[1] = (codec_item_update){1LL << 40, 1, 4.0, 0.0f, NULL, 0};
    codec_item_updates u = {.instance = 1234567890123LL,
                            .source = 3,
                            .seq = 99,
                            .nonce = 424242,
                            .items = it,
                            .n_items = 2};
    return u;
}

static void test_item_updates_round_trip(void **state) {
    (void)state;
    codec *c = make();
    codec_buf b = {0};
    codec_item_update it[2];
    float v[3];
    codec_item_updates u = sample_updates(it, v), back;
    memset(&back, 0, sizeof(back));
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(b.data[4], 6);     /* schema.id.item_update */
    for (int rep = 0; rep < 2; rep++) { /* the second decode reuses the arrays */
        assert_int_equal(codec_decode_item_updates(c, b.data, b.len, &back, err, sizeof(err)),
                         CODEC_OK);
        assert_true(back.instance == u.instance && back.source == 3 && back.seq == 99 &&
                    back.nonce == 424242);
        assert_int_equal(back.n_items, 2);
        assert_true(back.items[0].id == 41 && back.items[0].dcount == -2 &&
                    back.items[0].dsum == -7.5 && back.items[0].dbias == 0.125f);
        assert_int_equal(back.items[0].dim, 3);
        assert_memory_equal(back.items[0].dvector, v, sizeof(v));
        assert_true(back.items[1].id == (1LL << 40) && back.items[1].dim == 0);
    }
    /* Best effort: source -1 or -2 with seq 0; an empty record. */
    u.source = CODEC_UPDATE_TRAINING;
    u.seq = 0;
    u.n_items = 0;
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(codec_decode_item_updates(c, b.data, b.len, &back, err, sizeof(err)),
                     CODEC_OK);
    assert_int_equal(back.n_items, 0);
    assert_int_equal(back.source, CODEC_UPDATE_TRAINING);
    /* Invalid: an exact source without a sequence, a best-effort one with
     * one, a source below -2, a negative id, a non-finite factor. */
    u = sample_updates(it, v);
    u.seq = 0;
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_ERR_INVALID);
    u.seq = 5;
    u.source = CODEC_UPDATE_EVENT;
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_ERR_INVALID);
    u.source = -3;
    u.seq = 0;
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_ERR_INVALID);
    u = sample_updates(it, v);
    it[1].id = -1;
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_ERR_INVALID);
    it[1].id = 5;
    v[1] = NAN;
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_ERR_INVALID);
    v[1] = 1.0f;
    /* Every truncation is an Avro error; another schema id is unknown. */
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_OK);
    for (size_t cut = 5; cut < b.len; cut++)
        assert_int_equal(codec_decode_item_updates(c, b.data, cut, &back, err, sizeof(err)),
                         CODEC_ERR_AVRO);
    b.data[4] = 1;
    assert_int_equal(codec_decode_item_updates(c, b.data, b.len, &back, err, sizeof(err)),
                     CODEC_ERR_UNKNOWN_SCHEMA);
    assert_non_null(strstr(err, "internal topic"));
    codec_item_updates_clear(&back);
    codec_buf_free(&b);
    codec_destroy(c);
}

/* avro-c reads our ItemUpdates (the nested records and arrays), and we read
 * avro-c's. */
static void test_item_updates_avro_c(void **state) {
    (void)state;
    codec *c = make();
    codec_buf b = {0};
    codec_item_update it[2];
    float v[3];
    codec_item_updates u = sample_updates(it, v), back;
    memset(&back, 0, sizeof(back));
    assert_int_equal(codec_encode_item_updates(c, &u, &b, err, sizeof(err)), CODEC_OK);
    avro_schema_t schema;
    avro_value_iface_t *iface = iface_for("item_update", &schema);
    avro_value_t val, field, elem, sub, f;
    assert_int_equal(avro_generic_value_new(iface, &val), 0);
    avro_reader_t rd = avro_reader_memory((const char *)b.data + 5, (int64_t)b.len - 5);
    assert_int_equal(avro_value_read(rd, &val), 0);
    int64_t l;
    int32_t i32;
    double d;
    float fl;
    size_t size;
    assert_int_equal(avro_value_get_by_name(&val, "instance", &field, NULL), 0);
    assert_int_equal(avro_value_get_long(&field, &l), 0);
    assert_true(l == u.instance);
    assert_int_equal(avro_value_get_by_name(&val, "source", &field, NULL), 0);
    assert_int_equal(avro_value_get_int(&field, &i32), 0);
    assert_int_equal(i32, 3);
    assert_int_equal(avro_value_get_by_name(&val, "items", &field, NULL), 0);
    assert_int_equal(avro_value_get_size(&field, &size), 0);
    assert_int_equal(size, 2);
    assert_int_equal(avro_value_get_by_index(&field, 0, &elem, NULL), 0);
    assert_int_equal(avro_value_get_by_name(&elem, "dsum", &sub, NULL), 0);
    assert_int_equal(avro_value_get_double(&sub, &d), 0);
    assert_true(d == -7.5);
    assert_int_equal(avro_value_get_by_name(&elem, "dvector", &sub, NULL), 0);
    assert_int_equal(avro_value_get_size(&sub, &size), 0);
    assert_int_equal(size, 3);
    assert_int_equal(avro_value_get_by_index(&sub, 2, &f, NULL), 0);
    assert_int_equal(avro_value_get_float(&f, &fl), 0);
    assert_true(fl == v[2]);
    avro_reader_free(rd);
    /* Now avro-c writes one: source 0, seq 7, one item with 2 factors. */
    avro_value_reset(&val);
    avro_value_get_by_name(&val, "instance", &field, NULL);
    avro_value_set_long(&field, 77);
    avro_value_get_by_name(&val, "source", &field, NULL);
    avro_value_set_int(&field, 0);
    avro_value_get_by_name(&val, "seq", &field, NULL);
    avro_value_set_long(&field, 7);
    avro_value_get_by_name(&val, "nonce", &field, NULL);
    avro_value_set_long(&field, 9);
    avro_value_get_by_name(&val, "items", &field, NULL);
    avro_value_append(&field, &elem, NULL);
    avro_value_get_by_name(&elem, "id", &sub, NULL);
    avro_value_set_long(&sub, 12);
    avro_value_get_by_name(&elem, "dcount", &sub, NULL);
    avro_value_set_int(&sub, 1);
    avro_value_get_by_name(&elem, "dsum", &sub, NULL);
    avro_value_set_double(&sub, 4.5);
    avro_value_get_by_name(&elem, "dbias", &sub, NULL);
    avro_value_set_float(&sub, -1.0f);
    avro_value_get_by_name(&elem, "dvector", &sub, NULL);
    avro_value_append(&sub, &f, NULL);
    avro_value_set_float(&f, 0.5f);
    avro_value_append(&sub, &f, NULL);
    avro_value_set_float(&f, 0.75f);
    char buf[256] = {0, 0, 0, 0, 6};
    avro_writer_t w = avro_writer_memory(buf + 5, sizeof(buf) - 5);
    assert_int_equal(avro_value_write(w, &val), 0);
    size_t len = 5 + (size_t)avro_writer_tell(w);
    assert_int_equal(codec_decode_item_updates(c, buf, len, &back, err, sizeof(err)), CODEC_OK);
    assert_true(back.instance == 77 && back.source == 0 && back.seq == 7 && back.nonce == 9);
    assert_int_equal(back.n_items, 1);
    assert_true(back.items[0].id == 12 && back.items[0].dcount == 1 && back.items[0].dsum == 4.5 &&
                back.items[0].dbias == -1.0f && back.items[0].dim == 2 &&
                back.items[0].dvector[1] == 0.75f);
    codec_item_updates_clear(&back);
    avro_writer_free(w);
    avro_value_decref(&val);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
    codec_buf_free(&b);
    codec_destroy(c);
}

/* ---- bad input ---------------------------------------------------------- */

static void test_frame_errors(void **state) {
    (void)state;
    codec *c = make();
    codec_rating r;
    const uint8_t short4[] = {0, 0, 0, 1};
    assert_int_equal(codec_decode_rating(c, short4, 4, &r, err, sizeof(err)), CODEC_ERR_TOO_SHORT);
    assert_non_null(strstr(err, "5-byte"));
    assert_int_equal(codec_decode_rating(c, NULL, 0, &r, err, sizeof(err)), CODEC_ERR_TOO_SHORT);
    raw x;
    raw_rating(&x, 1, 2, 3.0f, 4);
    x.b[0] = 1;
    assert_int_equal(codec_decode_rating(c, x.b, x.n, &r, err, sizeof(err)), CODEC_ERR_BAD_MAGIC);
    assert_int_equal(codec_peek_schema_id(x.b, x.n), -1);
    raw_header(&x, 0, 77);
    raw_long(&x, 1);
    assert_int_equal(codec_decode_rating(c, x.b, x.n, &r, err, sizeof(err)),
                     CODEC_ERR_UNKNOWN_SCHEMA);
    assert_non_null(strstr(err, "77"));
    assert_string_equal(codec_err_name(CODEC_ERR_UNKNOWN_SCHEMA), "unknown-schema");
    codec_destroy(c);
}

static void test_avro_errors(void **state) {
    (void)state;
    codec *c = make();
    codec_rating r;
    raw x;
    raw_rating(&x, 1, 2, 3.0f, 4);
    for (size_t cut = 5; cut < x.n; cut++) /* every truncation */
        assert_int_equal(codec_decode_rating(c, x.b, cut, &r, err, sizeof(err)), CODEC_ERR_AVRO);
    x.b[x.n++] = 0; /* trailing byte */
    assert_int_equal(codec_decode_rating(c, x.b, x.n, &r, err, sizeof(err)), CODEC_ERR_AVRO);
    assert_non_null(strstr(err, "trailing"));
    raw_header(&x, 0, 1); /* an 11-byte varint */
    for (int i = 0; i < 11; i++)
        x.b[x.n++] = 0xff;
    assert_int_equal(codec_decode_rating(c, x.b, x.n, &r, err, sizeof(err)), CODEC_ERR_AVRO);

    codec_forget fr;
    raw_header(&x, 0, 2);
    raw_string(&x, "id");
    raw_long(&x, 1);
    raw_long(&x, 2); /* union branch 2 does not exist */
    assert_int_equal(codec_decode_forget(c, x.b, x.n, &fr, err, sizeof(err)), CODEC_ERR_AVRO);
    assert_null(fr.items);
    raw_header(&x, 0, 2);
    raw_long(&x, 1000); /* string longer than the message */
    assert_int_equal(codec_decode_forget(c, x.b, x.n, &fr, err, sizeof(err)), CODEC_ERR_AVRO);
    codec_destroy(c);
}

static void test_rating_validation(void **state) {
    (void)state;
    codec *c = make();
    codec_rating r;
    raw x;
    const struct {
        int64_t u, i;
        float v;
        int64_t t;
        const char *needle;
    } bad[] = {
        {1, 2, NAN, 0, "NaN"},          {1, 2, 0.5f, 0, "outside"}, {1, 2, 5.5f, 0, "outside"},
        {1, 2, INFINITY, 0, "outside"}, {-1, 2, 3, 0, "user_id"},   {1, -2, 3, 0, "item_id"},
        {1, 2, 3, -5, "event_time"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        raw_rating(&x, bad[k].u, bad[k].i, bad[k].v, bad[k].t);
        assert_int_equal(codec_decode_rating(c, x.b, x.n, &r, err, sizeof(err)), CODEC_ERR_INVALID);
        assert_non_null(strstr(err, bad[k].needle));
        codec_rating in = {bad[k].u, bad[k].i, bad[k].v, bad[k].t};
        codec_buf b = {0};
        assert_int_equal(codec_encode_rating(c, &in, &b, err, sizeof(err)), CODEC_ERR_INVALID);
        codec_buf_free(&b);
    }
    raw_rating(&x, 0, 0, 1.0f, 0); /* the scale is inclusive */
    assert_int_equal(codec_decode_rating(c, x.b, x.n, &r, err, sizeof(err)), CODEC_OK);
    raw_rating(&x, 0, 0, 5.0f, 0);
    assert_int_equal(codec_decode_rating(c, x.b, x.n, &r, err, sizeof(err)), CODEC_OK);
    codec_destroy(c);
}

static void expect_forget(codec *c, raw *x, int code, const char *needle) {
    codec_forget fr;
    assert_int_equal(codec_decode_forget(c, x->b, x->n, &fr, err, sizeof(err)), code);
    if (needle && strstr(err, needle) == NULL)
        fail_msg("message '%s' lacks '%s'", err, needle);
    if (code != CODEC_OK)
        assert_null(fr.items);
    codec_forget_clear(&fr);
}

static void test_forget_validation(void **state) {
    (void)state;
    codec *c = make(); /* max 5 items */
    raw x;
    int64_t items[6] = {1, 2, 3, 4, 5, 6}, neg[2] = {1, -3};
    raw_forget(&x, "ok", 1, items, 5, 0, 0, 0);
    expect_forget(c, &x, CODEC_OK, NULL);
    raw_forget(&x, "r", 1, items, 0, 0, 0, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "empty item list");
    raw_forget(&x, "r", 1, items, 6, 0, 0, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "forget.max.items=5");
    raw_forget(&x, "r", 1, neg, 2, 0, 0, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "negative item");
    raw_forget(&x, "r", -1, items, 1, 0, 0, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "negative user_id");
    raw_forget(&x, "r", 1, NULL, -1, 20, 10, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "is after");
    raw_forget(&x, "r", 1, NULL, -1, 10, 20, 5);
    expect_forget(c, &x, CODEC_ERR_INVALID, "unknown reason");
    raw_forget(&x, "r", 1, NULL, -1, 10, 20, -1);
    expect_forget(c, &x, CODEC_ERR_INVALID, "unknown reason");
    raw_forget(&x, "", 1, items, 1, 0, 0, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "missing");
    char longid[CODEC_REQUEST_ID_MAX + 2];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    raw_forget(&x, longid, 1, items, 1, 0, 0, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "longer than");
    /* neither items nor window */
    raw_header(&x, 0, 2);
    raw_string(&x, "n");
    raw_long(&x, 1);
    raw_long(&x, 0);
    raw_long(&x, 0);
    raw_long(&x, 0);
    raw_long(&x, 0);
    expect_forget(c, &x, CODEC_ERR_INVALID, "exactly one");

    /* the encoder refuses the same things */
    codec_buf b = {0};
    codec_forget both = {.user_id = 1, .items = items, .n_items = 1, .has_window = 1};
    strcpy(both.request_id, "b");
    assert_int_equal(codec_encode_forget(c, &both, &b, err, sizeof(err)), CODEC_ERR_INVALID);
    both.items = NULL;
    both.n_items = 0;
    both.window_from = 5;
    both.window_to = 4;
    assert_int_equal(codec_encode_forget(c, &both, &b, err, sizeof(err)), CODEC_ERR_INVALID);
    codec_buf_free(&b);
    codec_destroy(c);
}

static void test_reasons_and_keys(void **state) {
    (void)state;
    codec_reason r;
    assert_int_equal(codec_reason_parse("lost_interest", &r), UL_OK);
    assert_int_equal(r, CODEC_REASON_LOST_INTEREST);
    assert_int_equal(codec_reason_parse("BORED", &r), UL_ERR_ARG);
    assert_string_equal(codec_reason_name(CODEC_REASON_ERASURE), "ERASURE");
    assert_null(codec_reason_name(5));
    char key[24];
    assert_int_equal(codec_key_user(12345, key, sizeof(key)), 5);
    assert_string_equal(key, "12345");
    assert_int_equal(codec_key_factor(CODEC_KIND_USER, 7, key, sizeof(key)), 3);
    assert_string_equal(key, "u:7");
    assert_int_equal(codec_key_factor(CODEC_KIND_ITEM, 42, key, sizeof(key)), 4);
    assert_string_equal(key, "i:42");
    assert_int_equal(codec_key_user(12345, key, 3), -1);
    int64_t id;
    assert_int_equal(codec_parse_user_key("908", 3, &id), UL_OK);
    assert_int_equal(id, 908);
    assert_int_equal(codec_parse_user_key("-1", 2, &id), UL_ERR_PARSE);
    assert_int_equal(codec_parse_user_key("u:1", 3, &id), UL_ERR_PARSE);
    assert_int_equal(codec_parse_user_key("", 0, &id), UL_ERR_PARSE);
}

/* Java's Utils.murmur2 test vectors (Kafka's UtilsTest), and librdkafka's
 * murmur2 partitioner agreeing with ours on many keys. */
static void test_murmur2_java_compatible(void **state) {
    (void)state;
    const struct {
        const char *key;
        int32_t hash;
    } java[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t k = 0; k < sizeof(java) / sizeof(java[0]); k++)
        assert_int_equal(codec_murmur2(java[k].key, strlen(java[k].key)), java[k].hash);
    char key[24];
    for (int64_t u = 0; u < 2000; u++) {
        int n = codec_key_user(u * 7919, key, sizeof(key));
        for (int32_t parts = 1; parts <= 13; parts += 4) {
            int32_t want =
                rd_kafka_msg_partitioner_murmur2(NULL, key, (size_t)n, parts, NULL, NULL);
            assert_int_equal(codec_partition(key, (size_t)n, parts), want);
        }
    }
    assert_int_equal(codec_partition("1", 1, 0), -1);
}

/* Confluent-Avro user keys (key.format=avro, issue 11.5): the bytes
 * KafkaAvroSerializer writes for a long key, read back as a long or as a
 * string of digits; the partition is murmur2 of those bytes. */
static void test_avro_user_keys(void **state) {
    (void)state;
    unsigned char k[CODEC_KEY_MAX];
    int64_t u = -1;
    int n = codec_user_key(CODEC_KEY_AVRO, 7, 42, k, sizeof(k));
    const unsigned char want[] = {0, 0, 0, 0, 7, 0x54}; /* zigzag(42) = 84 */
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(k, want, sizeof(want));
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, k, (size_t)n, &u), UL_OK);
    assert_int_equal(u, 42);
    assert_int_equal(codec_user_key(CODEC_KEY_AVRO, 7, 42, k, 8), -1); /* too small */
    const unsigned char str[] = {0, 0, 0, 1, 2, 0x06, '1', '2', '3'};  /* Avro string "123" */
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, str, sizeof(str), &u), UL_OK);
    assert_int_equal(u, 123);
    const unsigned char big[] = {0, 0, 0, 0, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f}; /* 2^31-1 */
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, big, sizeof(big), &u), UL_OK);
    assert_int_equal(u, 2147483647);
    const unsigned char bad_magic[] = {1, 0, 0, 0, 7, 0x54};
    const unsigned char trailing[] = {0, 0, 0, 0, 7, 0x54, 0x00};
    const unsigned char negative[] = {0, 0, 0, 0, 7, 0x01};          /* -1 */
    const unsigned char letters[] = {0, 0, 0, 0, 7, 0x04, '4', 'x'}; /* "4x" */
    const unsigned char empty[] = {0, 0, 0, 0, 7};
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, bad_magic, 6, &u), UL_ERR_PARSE);
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, trailing, 7, &u), UL_ERR_PARSE);
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, negative, 6, &u), UL_ERR_PARSE);
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, letters, 8, &u), UL_ERR_PARSE);
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, empty, 5, &u), UL_ERR_PARSE);
    assert_int_equal(codec_user_key_parse(CODEC_KEY_AVRO, "42", 2, &u), UL_ERR_PARSE);
    assert_int_equal(codec_user_key_parse(CODEC_KEY_STRING, "42", 2, &u), UL_OK);
    assert_int_equal(u, 42);
    /* Partitions: string keys as before (user 21 in partition 0 of 4), Avro
     * keys by their own bytes, schema id included. */
    assert_int_equal(codec_user_partition(CODEC_KEY_STRING, 7, 21, 4), 0);
    int differ = 0;
    for (int64_t user = 0; user < 200; user++) {
        n = codec_user_key(CODEC_KEY_AVRO, 7, user, k, sizeof(k));
        assert_int_equal(codec_user_partition(CODEC_KEY_AVRO, 7, user, 16),
                         codec_partition(k, (size_t)n, 16));
        differ += codec_user_partition(CODEC_KEY_AVRO, 7, user, 16) !=
                  codec_user_partition(CODEC_KEY_STRING, 7, user, 16);
    }
    assert_true(differ > 150); /* the two formats place users independently */
}

static void test_schemas_embedded(void **state) {
    (void)state;
    const char *names[] = {"rating", "forget_request", "factor", "forget_receipt", "item_update"};
    for (int i = 0; i < 5; i++) {
        const char *t = codec_schema_text(names[i]);
        assert_non_null(t);
        assert_non_null(strstr(t, "io.unlearnd"));
    }
    assert_null(codec_schema_text("nope"));
    codec_opts o;
    codec_opts_init(&o);
    o.rating_min = 5;
    o.rating_max = 1;
    assert_null(codec_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "scale"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rating_round_trip_and_wire_bytes),
        cmocka_unit_test(test_forget_round_trip),
        cmocka_unit_test(test_factor_and_receipt_round_trip),
        cmocka_unit_test(test_avro_c_reads_what_we_write),
        cmocka_unit_test(test_we_read_what_avro_c_writes),
        cmocka_unit_test(test_item_updates_round_trip),
        cmocka_unit_test(test_item_updates_avro_c),
        cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_avro_errors),
        cmocka_unit_test(test_rating_validation),
        cmocka_unit_test(test_forget_validation),
        cmocka_unit_test(test_reasons_and_keys),
        cmocka_unit_test(test_murmur2_java_compatible),
        cmocka_unit_test(test_avro_user_keys),
        cmocka_unit_test(test_schemas_embedded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
