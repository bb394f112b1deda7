/* test_resolve.c: schema evolution. Records written by avro-c with evolved
 * writer schemas (a field added with a default, a field removed that our
 * reader has a default for, fields reordered, types promoted, another
 * namespace), given to the codec through schema.writers files, decode into
 * the same values as our own records, interleaved with them; incompatible
 * writer schemas are refused with the reason; bad bodies of a resolved
 * schema are Avro errors; defaults of every type are encoded as avro-c
 * encodes the same value; receipts of the first schema version decode with
 * the new fields' defaults, and a first-version reader reads ours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>

#include "codec.h"
#include "resolve.h"
#include "testutil.h"
#include "ul_err.h"

static char err[UL_ERRSTR_SIZE];

/* Rating v2: a field added at the end, with a default. */
static const char rating_v2[] =
    "{\"type\":\"record\",\"name\":\"Rating\",\"namespace\":\"io.unlearnd\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},"
    "{\"name\":\"rating\",\"type\":\"float\"},"
    "{\"name\":\"event_time\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"source\",\"type\":\"string\",\"default\":\"web\"}]}";
/* Rating v3: reordered, int ids and rating (promoted), another namespace,
 * an optional field in front. */
static const char rating_v3[] =
    "{\"type\":\"record\",\"name\":\"Rating\",\"namespace\":\"com.example.lake\",\"fields\":["
    "{\"name\":\"device\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"event_time\",\"type\":\"long\"},{\"name\":\"rating\",\"type\":\"int\"},"
    "{\"name\":\"item_id\",\"type\":\"int\"},{\"name\":\"user_id\",\"type\":\"long\"}]}";
/* Forget requests without `window` (v2) or without `items` (v3): both have
 * defaults (null) in our reader schema. */
static const char forget_v2[] =
    "{\"type\":\"record\",\"name\":\"ForgetRequest\",\"namespace\":\"io.unlearnd\",\"fields\":["
    "{\"name\":\"request_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"long\"},"
    "{\"name\":\"items\",\"type\":[\"null\",{\"type\":\"array\",\"items\":\"long\"}]},"
    "{\"name\":\"reason\",\"type\":{\"type\":\"enum\",\"name\":\"ForgetReason\",\"symbols\":"
    "[\"MISTAKE\",\"ERASURE\"]}},"
    "{\"name\":\"requested_at\",\"type\":\"long\"}]}";
static const char forget_v3[] =
    "{\"type\":\"record\",\"name\":\"ForgetRequest\",\"fields\":["
    "{\"name\":\"requested_at\",\"type\":\"long\"},{\"name\":\"reason\",\"type\":{\"type\":"
    "\"enum\",\"name\":\"ForgetReason\",\"symbols\":[\"ERASURE\",\"MISTAKE\"]}},"
    "{\"name\":\"window\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"TimeWindow\","
    "\"fields\":[{\"name\":\"to\",\"type\":\"long\"},{\"name\":\"from\",\"type\":\"long\"}]}]},"
    "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"request_id\",\"type\":\"string\"}]}";

/* Incompatible ones, each with the reason we expect. */
static const struct {
    const char *schema, *why;
} bad_ratings[] = {
    {"{\"type\":\"record\",\"name\":\"Rating\",\"fields\":[{\"name\":\"user_id\",\"type\":"
     "\"long\"},{\"name\":\"rating\",\"type\":\"float\"},{\"name\":\"event_time\",\"type\":"
     "\"long\"}]}",
     "field 'item_id' is missing from the writer schema and has no default"},
    {"{\"type\":\"record\",\"name\":\"Rating\",\"fields\":[{\"name\":\"user_id\",\"type\":"
     "\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},{\"name\":\"rating\",\"type\":"
     "\"string\"},{\"name\":\"event_time\",\"type\":\"long\"}]}",
     "field 'rating': a string cannot be read as a float"},
    {"{\"type\":\"record\",\"name\":\"Rating\",\"fields\":[{\"name\":\"user_id\",\"type\":"
     "\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},{\"name\":\"rating\",\"type\":"
     "\"double\"},{\"name\":\"event_time\",\"type\":\"long\"}]}",
     "field 'rating': a double cannot be read as a float"},
    {"{\"type\":\"record\",\"name\":\"Score\",\"fields\":[{\"name\":\"user_id\",\"type\":"
     "\"long\"}]}",
     "the writer schema is record Score, not our Rating"},
    {"\"string\"", "the writer schema is a string, not a record"},
};

static const char forget_bad_enum[] =
    "{\"type\":\"record\",\"name\":\"ForgetRequest\",\"fields\":["
    "{\"name\":\"request_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"long\"},"
    "{\"name\":\"items\",\"type\":[\"null\",{\"type\":\"array\",\"items\":\"long\"}]},"
    "{\"name\":\"reason\",\"type\":{\"type\":\"enum\",\"name\":\"ForgetReason\",\"symbols\":"
    "[\"MISTAKE\",\"BORED\"]}},{\"name\":\"requested_at\",\"type\":\"long\"}]}";

/* ---- writing records with avro-c, as another producer would ------------- */

typedef struct producer {
    avro_schema_t schema;
    avro_value_iface_t *iface;
    avro_value_t rec;
    uint32_t id;
} producer;

static void producer_init(producer *p, const char *schema, uint32_t id) {
    assert_int_equal(avro_schema_from_json_length(schema, strlen(schema), &p->schema), 0);
    p->iface = avro_generic_class_from_schema(p->schema);
    assert_non_null(p->iface);
    assert_int_equal(avro_generic_value_new(p->iface, &p->rec), 0);
    p->id = id;
}

static void producer_done(producer *p) {
    avro_value_decref(&p->rec);
    avro_value_iface_decref(p->iface);
    avro_schema_decref(p->schema);
}

static avro_value_t field(producer *p, const char *name) {
    avro_value_t f;
    assert_int_equal(avro_value_get_by_name(&p->rec, name, &f, NULL), 0);
    return f;
}

/* Confluent framing of the current record into buf; returns its length. */
static size_t produce(producer *p, uint8_t *buf, size_t size) {
    buf[0] = 0;
    for (int i = 0; i < 4; i++)
        buf[1 + i] = (uint8_t)(p->id >> (24 - 8 * i));
    avro_writer_t w = avro_writer_memory((char *)buf + 5, (int64_t)size - 5);
    assert_int_equal(avro_value_write(w, &p->rec), 0);
    size_t n = 5 + (size_t)avro_writer_tell(w);
    avro_writer_free(w);
    return n;
}

static codec *codec_with(const char *writers) {
    codec_opts o;
    codec_opts_init(&o);
    o.schema_writers = writers;
    codec *c = codec_new(&o, err, sizeof(err));
    if (c == NULL)
        fail_msg("codec_new: %s", err);
    return c;
}

static char writers_buf[2048];

/* "10=<tmp>/rating_v2.avsc,11=<tmp>/rating_v3.avsc,..." */
static const char *writers_files(void) {
    static const struct {
        int id;
        const char *name, *text;
    } files[] = {{10, "rating_v2.avsc", rating_v2},
                 {11, "rating_v3.avsc", rating_v3},
                 {20, "forget_v2.avsc", forget_v2},
                 {21, "forget_v3.avsc", forget_v3}};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        n += (size_t)snprintf(writers_buf + n, sizeof(writers_buf) - n, "%s%d=%s", i ? "," : "",
                              files[i].id, tu_write_file(files[i].name, files[i].text));
    return writers_buf;
}

/* ---- evolved writers decode --------------------------------------------- */

/* 3 writer versions interleaved, 3000 records: every one decodes to what
 * was written. */
static void test_ratings_three_versions_interleaved(void **state) {
    (void)state;
    codec *c = codec_with(writers_files());
    producer v2, v3;
    producer_init(&v2, rating_v2, 10);
    producer_init(&v3, rating_v3, 11);
    codec_buf own = {0};
    uint8_t buf[128];
    size_t ok = 0;
    for (int i = 0; i < 3000; i++) {
        int64_t user = 1000 + i, item = 7 * i % 1700, t = 1700000000000 + i;
        float value = (float)(1 + i % 5);
        const uint8_t *rec = buf;
        size_t len;
        avro_value_t f;
        if (i % 3 == 0) {
            codec_rating r = {user, item, value, t};
            assert_int_equal(codec_encode_rating(c, &r, &own, err, sizeof(err)), CODEC_OK);
            rec = own.data;
            len = own.len;
        } else if (i % 3 == 1) {
            f = field(&v2, "user_id"), avro_value_set_long(&f, user);
            f = field(&v2, "item_id"), avro_value_set_long(&f, item);
            f = field(&v2, "rating"), avro_value_set_float(&f, value);
            f = field(&v2, "event_time"), avro_value_set_long(&f, t);
            f = field(&v2, "source"), avro_value_set_string(&f, i % 2 ? "app" : "a longer source");
            len = produce(&v2, buf, sizeof(buf));
        } else {
            avro_value_t branch;
            f = field(&v3, "device");
            avro_value_set_branch(&f, i % 2, &branch);
            if (i % 2)
                avro_value_set_string(&branch, "phone");
            f = field(&v3, "event_time"), avro_value_set_long(&f, t);
            f = field(&v3, "rating"), avro_value_set_int(&f, (int32_t)value);
            f = field(&v3, "item_id"), avro_value_set_int(&f, (int32_t)item);
            f = field(&v3, "user_id"), avro_value_set_long(&f, user);
            len = produce(&v3, buf, sizeof(buf));
        }
        codec_rating out;
        int rc = codec_decode_rating(c, rec, len, &out, err, sizeof(err));
        if (rc != CODEC_OK)
            fail_msg("record %d (writer %d): %s", i, i % 3, err);
        ok += out.user_id == user && out.item_id == item && out.rating == value &&
              out.event_time == t;
    }
    assert_int_equal(ok, 3000);
    /* Validation applies to resolved records too. */
    avro_value_t f = field(&v2, "rating");
    avro_value_set_float(&f, 9.0f);
    size_t len = produce(&v2, buf, sizeof(buf));
    codec_rating out;
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)), CODEC_ERR_INVALID);
    assert_non_null(strstr(err, "9 outside the scale"));
    producer_done(&v2);
    producer_done(&v3);
    codec_buf_free(&own);
    codec_destroy(c);
}

static void test_forget_fields_removed(void **state) {
    (void)state;
    codec *c = codec_with(writers_files());
    producer v2, v3;
    producer_init(&v2, forget_v2, 20);
    producer_init(&v3, forget_v3, 21);
    uint8_t buf[256];
    avro_value_t f, branch, item;
    f = field(&v2, "request_id"), avro_value_set_string(&f, "req-v2");
    f = field(&v2, "user_id"), avro_value_set_long(&f, 42);
    f = field(&v2, "items"), avro_value_set_branch(&f, 1, &branch);
    for (int64_t k = 1; k <= 3; k++) {
        avro_value_append(&branch, &item, NULL);
        avro_value_set_long(&item, 100 * k);
    }
    f = field(&v2, "reason"), avro_value_set_enum(&f, 1); /* ERASURE, index 4 in ours */
    f = field(&v2, "requested_at"), avro_value_set_long(&f, 1700000000000);
    size_t len = produce(&v2, buf, sizeof(buf));
    codec_forget fr;
    assert_int_equal(codec_decode_forget(c, buf, len, &fr, err, sizeof(err)), CODEC_OK);
    assert_string_equal(fr.request_id, "req-v2");
    assert_true(fr.user_id == 42 && fr.n_items == 3 && fr.items[2] == 300 && !fr.has_window);
    assert_int_equal(fr.reason, CODEC_REASON_ERASURE);
    codec_forget_clear(&fr);

    f = field(&v3, "requested_at"), avro_value_set_long(&f, 1700000000001);
    f = field(&v3, "reason"), avro_value_set_enum(&f, 1); /* MISTAKE */
    f = field(&v3, "window"), avro_value_set_branch(&f, 1, &branch);
    avro_value_get_by_name(&branch, "from", &item, NULL), avro_value_set_long(&item, 10);
    avro_value_get_by_name(&branch, "to", &item, NULL), avro_value_set_long(&item, 20);
    f = field(&v3, "user_id"), avro_value_set_long(&f, 43);
    f = field(&v3, "request_id"), avro_value_set_string(&f, "req-v3");
    len = produce(&v3, buf, sizeof(buf));
    assert_int_equal(codec_decode_forget(c, buf, len, &fr, err, sizeof(err)), CODEC_OK);
    assert_string_equal(fr.request_id, "req-v3");
    assert_true(fr.user_id == 43 && fr.items == NULL && fr.has_window);
    assert_true(fr.window_from == 10 && fr.window_to == 20 && fr.requested_at == 1700000000001);
    assert_int_equal(fr.reason, CODEC_REASON_MISTAKE);
    codec_forget_clear(&fr);
    producer_done(&v2);
    producer_done(&v3);
    codec_destroy(c);
}

/* Our own schema registered under another id is read in place. */
static void test_our_schema_under_another_id(void **state) {
    (void)state;
    char writers[600];
    snprintf(writers, sizeof(writers), "77=%s",
             tu_write_file("ours.avsc", codec_schema_text("rating")));
    codec *c = codec_with(writers);
    producer p;
    producer_init(&p, codec_schema_text("rating"), 77);
    avro_value_t f;
    f = field(&p, "user_id"), avro_value_set_long(&f, 5);
    f = field(&p, "item_id"), avro_value_set_long(&f, 6);
    f = field(&p, "rating"), avro_value_set_float(&f, 3.5f);
    f = field(&p, "event_time"), avro_value_set_long(&f, 8);
    uint8_t buf[64];
    size_t len = produce(&p, buf, sizeof(buf));
    codec_rating r;
    assert_int_equal(codec_decode_rating(c, buf, len, &r, err, sizeof(err)), CODEC_OK);
    assert_true(r.user_id == 5 && r.item_id == 6 && r.rating == 3.5f && r.event_time == 8);
    buf[len] = 0; /* one trailing byte */
    assert_int_equal(codec_decode_rating(c, buf, len + 1, &r, err, sizeof(err)), CODEC_ERR_AVRO);
    assert_non_null(strstr(err, "1 trailing bytes"));
    producer_done(&p);
    codec_destroy(c);
}

/* ---- refusals ------------------------------------------------------------ */

static void test_incompatible_writers_refused(void **state) {
    (void)state;
    char writers[4096] = "", name[32];
    size_t n = 0, nb = sizeof(bad_ratings) / sizeof(bad_ratings[0]);
    for (size_t i = 0; i < nb; i++) {
        snprintf(name, sizeof(name), "bad%zu.avsc", i);
        n += (size_t)snprintf(writers + n, sizeof(writers) - n, "%s%zu=%s", i ? "," : "", 30 + i,
                              tu_write_file(name, bad_ratings[i].schema));
    }
    snprintf(writers + n, sizeof(writers) - n, ",40=%s",
             tu_write_file("bad_enum.avsc", forget_bad_enum));
    codec *c = codec_with(writers);
    uint8_t rec[] = {0, 0, 0, 0, 30, 2, 4, 0, 0, 0x80, 0x3f, 6};
    for (size_t i = 0; i < nb; i++) {
        codec_rating r;
        rec[4] = (uint8_t)(30 + i);
        for (int again = 0; again < 2; again++) { /* the verdict is cached */
            assert_int_equal(codec_decode_rating(c, rec, sizeof(rec), &r, err, sizeof(err)),
                             CODEC_ERR_UNRESOLVED);
            if (strstr(err, bad_ratings[i].why) == NULL)
                fail_msg("schema %zu: '%s' lacks '%s'", i, err, bad_ratings[i].why);
        }
        assert_non_null(strstr(err, "bad")); /* names the file it came from */
        assert_non_null(strstr(err, "rating: writer schema 3"));
    }
    codec_forget fr;
    rec[4] = 40;
    assert_int_equal(codec_decode_forget(c, rec, sizeof(rec), &fr, err, sizeof(err)),
                     CODEC_ERR_UNRESOLVED);
    assert_non_null(strstr(err, "enum symbol BORED is not one of ours"));
    assert_string_equal(codec_err_name(CODEC_ERR_UNRESOLVED), "unresolved-schema");
    assert_string_equal(codec_err_name(CODEC_ERR_REGISTRY), "registry-unavailable");
    /* No source knows id 99: unknown-schema, saying where we looked. */
    rec[4] = 99;
    codec_rating r;
    assert_int_equal(codec_decode_rating(c, rec, sizeof(rec), &r, err, sizeof(err)),
                     CODEC_ERR_UNKNOWN_SCHEMA);
    assert_non_null(strstr(err, "schema id 99 is not the configured 1"));
    assert_non_null(strstr(err, "schema.registry.url"));
    codec_destroy(c);
}

/* Bodies that do not fit the writer schema are Avro errors, never reads
 * past the end or giant allocations. */
static void test_resolved_bad_bodies(void **state) {
    (void)state;
    codec *c = codec_with(writers_files());
    producer v2;
    producer_init(&v2, rating_v2, 10);
    avro_value_t f;
    f = field(&v2, "user_id"), avro_value_set_long(&f, 1);
    f = field(&v2, "item_id"), avro_value_set_long(&f, 2);
    f = field(&v2, "rating"), avro_value_set_float(&f, 3);
    f = field(&v2, "event_time"), avro_value_set_long(&f, 4);
    f = field(&v2, "source"), avro_value_set_string(&f, "web");
    uint8_t buf[64];
    size_t len = produce(&v2, buf, sizeof(buf));
    codec_rating r;
    for (size_t cut = 5; cut < len; cut++)
        assert_int_equal(codec_decode_rating(c, buf, cut, &r, err, sizeof(err)), CODEC_ERR_AVRO);
    /* The string's length prefix claims 2^61 bytes. */
    size_t at = len - 4; /* zigzag(3) = 6, then "web" */
    assert_int_equal(buf[at], 6);
    uint8_t huge[64];
    memcpy(huge, buf, at);
    const uint8_t big[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40};
    memcpy(huge + at, big, sizeof(big));
    assert_int_equal(codec_decode_rating(c, huge, at + sizeof(big), &r, err, sizeof(err)),
                     CODEC_ERR_AVRO);
    assert_non_null(strstr(err, "schema id 10"));
    producer_done(&v2);
    codec_destroy(c);
}

static void test_writer_files_errors(void **state) {
    (void)state;
    codec_opts o;
    codec_opts_init(&o);
    static const struct {
        const char *writers, *piece;
    } cases[] = {
        {"5=/nonexistent/v2.avsc", "cannot read /nonexistent/v2.avsc"},
        {"five=x.avsc", "'five=x.avsc' is not ID=PATH"},
        {"5=", "is not ID=PATH"},
        {"-1=x.avsc", "is not ID=PATH"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        o.schema_writers = cases[i].writers;
        assert_null(codec_new(&o, err, sizeof(err)));
        if (strstr(err, cases[i].piece) == NULL || strstr(err, "schema.writers") == NULL)
            fail_msg("'%s': message '%s' lacks '%s'", cases[i].writers, err, cases[i].piece);
    }
    char writers[600];
    snprintf(writers, sizeof(writers), "1=%s", tu_write_file("clash.avsc", rating_v2));
    o.schema_writers = writers;
    assert_null(codec_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "schema id 1 is already our schemas/rating.avsc"));
    snprintf(writers, sizeof(writers), "9=%s", tu_write_file("junk.avsc", "{\"type\": 12}"));
    assert_null(codec_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "not an Avro schema"));
    /* Spaces and empty entries are fine. */
    snprintf(writers, sizeof(writers), " 9=%s , ,", tu_write_file("v2b.avsc", rating_v2));
    codec *c = codec_new(&o, err, sizeof(err));
    assert_non_null(c);
    codec_destroy(c);
}

/* Threads share a codec: resolved decodes from two threads at once (ASan
 * build) all succeed with the right values. */
typedef struct shared_decode {
    const codec *c;
    const uint8_t *rec;
    size_t len;
    int ok;
} shared_decode;

static void *decode_many(void *arg) {
    shared_decode *sd = arg;
    char e[UL_ERRSTR_SIZE];
    for (int i = 0; i < 2000; i++) {
        codec_rating r;
        sd->ok += codec_decode_rating(sd->c, sd->rec, sd->len, &r, e, sizeof(e)) == CODEC_OK &&
                  r.user_id == 11 && r.rating == 2.5f;
    }
    return NULL;
}

static void test_threads_share_a_codec(void **state) {
    (void)state;
    codec *c = codec_with(writers_files());
    producer v2;
    producer_init(&v2, rating_v2, 10);
    avro_value_t f;
    f = field(&v2, "user_id"), avro_value_set_long(&f, 11);
    f = field(&v2, "item_id"), avro_value_set_long(&f, 12);
    f = field(&v2, "rating"), avro_value_set_float(&f, 2.5f);
    f = field(&v2, "event_time"), avro_value_set_long(&f, 13);
    f = field(&v2, "source"), avro_value_set_string(&f, "web");
    uint8_t buf[64];
    size_t len = produce(&v2, buf, sizeof(buf));
    shared_decode a = {c, buf, len, 0}, b = a;
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, decode_many, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, decode_many, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.ok + b.ok, 4000);
    producer_done(&v2);
    codec_destroy(c);
}

/* ---- defaults, directly on resolve --------------------------------------- */

/* A reader with defaults of every kind; the writer has only `id`. The
 * transcoded body must be avro-c's encoding of a reader record holding
 * those defaults. */
static void test_defaults_of_every_type(void **state) {
    (void)state;
    static const char reader[] =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
        "{\"name\":\"id\",\"type\":\"long\"},"
        "{\"name\":\"b\",\"type\":\"boolean\",\"default\":true},"
        "{\"name\":\"i\",\"type\":\"int\",\"default\":-7},"
        "{\"name\":\"f\",\"type\":\"float\",\"default\":1.5},"
        "{\"name\":\"d\",\"type\":\"double\",\"default\":-2.25},"
        "{\"name\":\"s\",\"type\":\"string\",\"default\":\"h\\u00e9\"},"
        "{\"name\":\"y\",\"type\":\"bytes\",\"default\":\"\\u00ff\\u0001\"},"
        "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\"]},"
        "\"default\":\"B\"},"
        "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"int\"},\"default\":[1,2]},"
        "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"long\"},\"default\":{\"k\":3}},"
        "{\"name\":\"u\",\"type\":[\"null\",\"int\"],\"default\":null},"
        "{\"name\":\"r\",\"type\":{\"type\":\"record\",\"name\":\"In\",\"fields\":[{\"name\":"
        "\"x\",\"type\":\"int\"}]},\"default\":{\"x\":9}},"
        "{\"name\":\"x\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":2},"
        "\"default\":\"ab\"}]}";
    static const char writer[] =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"id\",\"type\":\"int\"}]}";
    avro_schema_t ws, rs;
    assert_int_equal(avro_schema_from_json_length(writer, strlen(writer), &ws), 0);
    assert_int_equal(avro_schema_from_json_length(reader, strlen(reader), &rs), 0);
    resolve *res = NULL;
    if (resolve_new(ws, reader, &res, err, sizeof(err)) != UL_OK)
        fail_msg("resolve_new: %s", err);
    assert_false(resolve_is_identity(res));
    const uint8_t body[] = {0x54}; /* id = 42 as an int */
    codec_buf out = {0};
    assert_int_equal(resolve_transcode(res, body, sizeof(body), &out, err, sizeof(err)), UL_OK);

    avro_value_iface_t *iface = avro_generic_class_from_schema(rs);
    avro_value_t v, f, sub;
    avro_generic_value_new(iface, &v);
    avro_value_get_by_name(&v, "id", &f, NULL), avro_value_set_long(&f, 42);
    avro_value_get_by_name(&v, "b", &f, NULL), avro_value_set_boolean(&f, 1);
    avro_value_get_by_name(&v, "i", &f, NULL), avro_value_set_int(&f, -7);
    avro_value_get_by_name(&v, "f", &f, NULL), avro_value_set_float(&f, 1.5f);
    avro_value_get_by_name(&v, "d", &f, NULL), avro_value_set_double(&f, -2.25);
    avro_value_get_by_name(&v, "s", &f, NULL), avro_value_set_string(&f, "h\xc3\xa9");
    avro_value_get_by_name(&v, "y", &f, NULL), avro_value_set_bytes(&f, "\xff\x01", 2);
    avro_value_get_by_name(&v, "e", &f, NULL), avro_value_set_enum(&f, 1);
    avro_value_get_by_name(&v, "a", &f, NULL);
    avro_value_append(&f, &sub, NULL), avro_value_set_int(&sub, 1);
    avro_value_append(&f, &sub, NULL), avro_value_set_int(&sub, 2);
    avro_value_get_by_name(&v, "m", &f, NULL);
    avro_value_add(&f, "k", &sub, NULL, NULL), avro_value_set_long(&sub, 3);
    avro_value_get_by_name(&v, "u", &f, NULL), avro_value_set_branch(&f, 0, &sub);
    avro_value_set_null(&sub);
    avro_value_get_by_name(&v, "r", &f, NULL), avro_value_get_by_name(&f, "x", &sub, NULL);
    avro_value_set_int(&sub, 9);
    avro_value_get_by_name(&v, "x", &f, NULL), avro_value_set_fixed(&f, "ab", 2);
    char want[256];
    avro_writer_t w = avro_writer_memory(want, sizeof(want));
    assert_int_equal(avro_value_write(w, &v), 0);
    assert_int_equal(out.len, (size_t)avro_writer_tell(w));
    assert_memory_equal(out.data, want, out.len);
    avro_writer_free(w);
    avro_value_decref(&v);
    avro_value_iface_decref(iface);
    codec_buf_free(&out);
    resolve_destroy(res);

    /* A default that does not fit its type is refused, not guessed. */
    static const char bad_default[] =
        "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"id\",\"type\":\"long\"},"
        "{\"name\":\"n\",\"type\":\"int\",\"default\":\"seven\"}]}";
    assert_int_equal(resolve_new(ws, bad_default, &res, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "field 'n' is missing from the writer schema and our default"));
    assert_null(res);
    avro_schema_decref(ws);
    avro_schema_decref(rs);
}

/* ForgetReceipt as its first version had it (before requested, not_found
 * and beyond_retention). */
static const char receipt_v1[] =
    "{\"type\":\"record\",\"name\":\"ForgetReceipt\",\"namespace\":\"io.unlearnd\",\"fields\":["
    "{\"name\":\"request_id\",\"type\":\"string\"},{\"name\":\"user_id\",\"type\":\"long\"},"
    "{\"name\":\"forgotten\",\"type\":\"int\"},{\"name\":\"model_version\",\"type\":\"long\"},"
    "{\"name\":\"received_at\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"completed_at\",\"type\":{\"type\":\"long\",\"logicalType\":"
    "\"timestamp-millis\"}}]}";

static void set_receipt_v1(producer *p) {
    avro_value_t f = field(p, "request_id");
    avro_value_set_string(&f, "old-1");
    f = field(p, "user_id");
    avro_value_set_long(&f, 42);
    f = field(p, "forgotten");
    avro_value_set_int(&f, 3);
    f = field(p, "model_version");
    avro_value_set_long(&f, 7);
    f = field(p, "received_at");
    avro_value_set_long(&f, 1000);
    f = field(p, "completed_at");
    avro_value_set_long(&f, 1200);
}

static void expect_receipt_v1(const codec *c, const uint8_t *buf, size_t len) {
    codec_receipt r;
    assert_int_equal(codec_decode_receipt(c, buf, len, &r, err, sizeof(err)), CODEC_OK);
    assert_string_equal(r.request_id, "old-1");
    assert_true(r.user_id == 42 && r.forgotten == 3 && r.model_version == 7 &&
                r.received_at == 1000 && r.completed_at == 1200);
    assert_true(r.requested == 0 && r.not_found == 0 && r.beyond_retention == 0); /* defaults */
}

/* The receipt schema gained three fields with defaults: our decoder reads
 * records of the first version (under our id, as the topic holds them from
 * before the change, and through the writer schema under another id), and
 * a reader of the first version reads ours (Avro resolution, writer = ours). */
static void test_receipt_versions(void **state) {
    (void)state;
    char writers[600];
    snprintf(writers, sizeof(writers), "30=%s", tu_write_file("receipt_v1.avsc", receipt_v1));
    codec *c = codec_with(writers);
    uint8_t buf[256];
    producer p;
    producer_init(&p, receipt_v1, 4); /* our receipt id */
    set_receipt_v1(&p);
    expect_receipt_v1(c, buf, produce(&p, buf, sizeof(buf)));
    p.id = 30;
    expect_receipt_v1(c, buf, produce(&p, buf, sizeof(buf)));
    producer_done(&p);

    codec_receipt r = {"new-1", 5, 2, 9, 10, 20, 4, 1, 1};
    codec_buf b = {0};
    assert_int_equal(codec_encode_receipt(c, &r, &b, err, sizeof(err)), CODEC_OK);
    avro_schema_t ours, old;
    const char *text = codec_schema_text("forget_receipt");
    assert_int_equal(avro_schema_from_json_length(text, strlen(text), &ours), 0);
    assert_int_equal(avro_schema_from_json_length(receipt_v1, strlen(receipt_v1), &old), 0);
    avro_value_iface_t *wclass = avro_generic_class_from_schema(ours);
    avro_value_iface_t *rclass = avro_resolved_reader_new(ours, old);
    assert_non_null(rclass);
    avro_value_t wval, rval, f;
    assert_int_equal(avro_generic_value_new(wclass, &wval), 0);
    assert_int_equal(avro_resolved_reader_new_value(rclass, &rval), 0);
    avro_resolved_reader_set_source(&rval, &wval);
    avro_reader_t rd = avro_reader_memory((const char *)b.data + 5, (int64_t)b.len - 5);
    assert_int_equal(avro_value_read(rd, &wval), 0);
    size_t n_fields;
    assert_int_equal(avro_value_get_size(&rval, &n_fields), 0);
    assert_int_equal(n_fields, 6); /* what the old reader knows */
    int32_t forgotten;
    int64_t completed;
    const char *id;
    size_t id_len;
    assert_int_equal(avro_value_get_by_name(&rval, "request_id", &f, NULL), 0);
    assert_int_equal(avro_value_get_string(&f, &id, &id_len), 0);
    assert_string_equal(id, "new-1");
    assert_int_equal(avro_value_get_by_name(&rval, "forgotten", &f, NULL), 0);
    assert_int_equal(avro_value_get_int(&f, &forgotten), 0);
    assert_int_equal(forgotten, 2);
    assert_int_equal(avro_value_get_by_name(&rval, "completed_at", &f, NULL), 0);
    assert_int_equal(avro_value_get_long(&f, &completed), 0);
    assert_int_equal(completed, 20);
    avro_reader_free(rd);
    avro_value_decref(&rval);
    avro_value_decref(&wval);
    avro_value_iface_decref(rclass);
    avro_value_iface_decref(wclass);
    avro_schema_decref(old);
    avro_schema_decref(ours);
    codec_buf_free(&b);
    codec_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratings_three_versions_interleaved),
        cmocka_unit_test(test_forget_fields_removed),
        cmocka_unit_test(test_our_schema_under_another_id),
        cmocka_unit_test(test_incompatible_writers_refused),
        cmocka_unit_test(test_resolved_bad_bodies),
        cmocka_unit_test(test_writer_files_errors),
        cmocka_unit_test(test_threads_share_a_codec),
        cmocka_unit_test(test_defaults_of_every_type),
        cmocka_unit_test(test_receipt_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
