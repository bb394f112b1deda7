/* codec.c: Confluent-framed Avro records of our topics (see codec.h):
 * codec_new() and its schema checks, the framing, and the four topic
 * records. The internal ItemUpdates record is in codec_updates.c, keys and
 * partitioning in codec_keys.c, the Avro primitives in avro_bin.h, what the
 * files share in codec_int.h.
 *
 * DESIGN: the Avro binary encoding of our records (four flat ones and the
 * internal ItemUpdates, an array of records) is written and
 * read by hand (zigzag varints, little-endian floats, length-prefixed
 * strings, blocked arrays, union and enum indices). avro-c's generic value
 * API costs several allocations and virtual calls per record; the hand path
 * allocates nothing for a rating and decodes it in tens of nanoseconds (see
 * bench/bench_codec.c, which measures both and checks they agree). avro-c is
 * still the authority on the schemas: codec_new() parses the embedded
 * schemas/NAME.avsc with it and checks that every field, in order, has the type
 * the hand-written code expects, so a schema edit that is not mirrored here
 * fails at start instead of producing bytes other readers cannot decode.
 *
 * Validation (ids, scale, list sizes, window order) runs in both directions:
 * we never write a record we would reject on reading.
 *
 * Other writer schemas: a record whose id is not our configured one is
 * transcoded into our encoding by its resolution (schema_cache.h, resolve.h)
 * and then read by the same hand-written code, so every path validates
 * alike. A writer schema equal to ours (our schema registered under another
 * id) is read in place, without transcoding. */
#include "codec.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <avro.h>

#include "avro_bin.h"
#include "codec_int.h"
#include "registry.h"
#include "schema_cache.h"
#include "ul_err.h"

/* schemas_embed.c, generated at build time from schemas/NAME.avsc. */
extern const char *const codec_schema_table[][2];

/* The four record types, in one table: the reader number of schema_cache,
 * the embedded schema, the name used in messages. */
enum { READ_RATING = 0, READ_FORGET, READ_FACTOR, READ_RECEIPT };
static const struct {
    const char *schema, *what;
} readers[SCHEMA_CACHE_READERS] = {
    {"rating", "rating"},
    {"forget_request", "forget request"},
    {"factor", "factor"},
    {"forget_receipt", "receipt"},
};

static int32_t own_id(const codec_opts *o, int reader_no) {
    switch (reader_no) {
    case READ_RATING:
        return o->schema_id_rating;
    case READ_FORGET:
        return o->schema_id_forget;
    case READ_FACTOR:
        return o->schema_id_factor;
    default:
        return o->schema_id_receipt;
    }
}

static const char *const reason_names[CODEC_N_REASONS] = {
    "MISTAKE", "SOMEONE_ELSE", "FAULTY_ACQUISITION", "LOST_INTEREST", "ERASURE"};

const char *codec_err_name(int code) {
    switch (code) {
    case CODEC_OK:
        return "ok";
    case CODEC_ERR_TOO_SHORT:
        return "too-short";
    case CODEC_ERR_BAD_MAGIC:
        return "bad-magic";
    case CODEC_ERR_UNKNOWN_SCHEMA:
        return "unknown-schema";
    case CODEC_ERR_AVRO:
        return "avro-decode";
    case CODEC_ERR_INVALID:
        return "invalid";
    case CODEC_ERR_NOMEM:
        return "no-memory";
    case CODEC_ERR_UNRESOLVED:
        return "unresolved-schema";
    case CODEC_ERR_REGISTRY:
        return "registry-unavailable";
    default:
        return "unknown-error";
    }
}

const char *codec_reason_name(int reason) {
    if (reason < 0 || reason >= CODEC_N_REASONS)
        return NULL;
    return reason_names[reason];
}

int codec_reason_parse(const char *name, codec_reason *reason) {
    for (int i = 0; name && i < CODEC_N_REASONS; i++) {
        if (strcasecmp(name, reason_names[i]) == 0) {
            *reason = (codec_reason)i;
            return UL_OK;
        }
    }
    return UL_ERR_ARG;
}

void codec_forget_clear(codec_forget *fr) {
    if (fr == NULL)
        return;
    free(fr->items);
    fr->items = NULL;
    fr->n_items = 0;
}

void codec_factor_clear(codec_factor *f) {
    if (f == NULL)
        return;
    free(f->vector);
    f->vector = NULL;
    f->dim = 0;
}

void codec_buf_free(codec_buf *b) {
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void codec_opts_init(codec_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->schema_id_rating = 1;
    opts->schema_id_forget = 2;
    opts->schema_id_factor = 3;
    opts->schema_id_receipt = 4;
    opts->schema_id_item_update = 6;
    opts->rating_min = 1.0f;
    opts->rating_max = 5.0f;
    opts->max_forget_items = 10000;
    opts->registry_timeout_ms = 5000;
    opts->registry_retry_ms = 5000;
}

const char *codec_schema_text(const char *name) {
    for (size_t i = 0; name && codec_schema_table[i][0]; i++)
        if (strcmp(codec_schema_table[i][0], name) == 0)
            return codec_schema_table[i][1];
    return NULL;
}

/* ---- Schema check against the hand-written layout ---------------------- */

/* One expected field: name and avro-c type. */
typedef struct field_spec {
    const char *name;
    avro_type_t type;
} field_spec;

static const field_spec rating_fields[] = {{"user_id", AVRO_INT64},
                                           {"item_id", AVRO_INT64},
                                           {"rating", AVRO_FLOAT},
                                           {"event_time", AVRO_INT64},
                                           {NULL, AVRO_NULL}};
static const field_spec forget_fields[] = {{"request_id", AVRO_STRING},
                                           {"user_id", AVRO_INT64},
                                           {"items", AVRO_UNION},
                                           {"window", AVRO_UNION},
                                           {"reason", AVRO_ENUM},
                                           {"requested_at", AVRO_INT64},
                                           {NULL, AVRO_NULL}};
static const field_spec factor_fields[] = {
    {"model_version", AVRO_INT64}, {"kind", AVRO_ENUM},  {"id", AVRO_INT64},
    {"vector", AVRO_ARRAY},        {"bias", AVRO_FLOAT}, {NULL, AVRO_NULL}};
static const field_spec receipt_fields[] = {
    {"request_id", AVRO_STRING},      {"user_id", AVRO_INT64},
    {"forgotten", AVRO_INT32},        {"model_version", AVRO_INT64},
    {"received_at", AVRO_INT64},      {"completed_at", AVRO_INT64},
    {"requested", AVRO_INT32},        {"not_found", AVRO_INT32},
    {"beyond_retention", AVRO_INT32}, {NULL, AVRO_NULL}};

static const field_spec item_update_fields[] = {{"instance", AVRO_INT64}, {"source", AVRO_INT32},
                                                {"seq", AVRO_INT64},      {"nonce", AVRO_INT64},
                                                {"items", AVRO_ARRAY},    {NULL, AVRO_NULL}};
static const field_spec item_update_item_fields[] = {
    {"id", AVRO_INT64},    {"dcount", AVRO_INT32},  {"dsum", AVRO_DOUBLE},
    {"dbias", AVRO_FLOAT}, {"dvector", AVRO_ARRAY}, {NULL, AVRO_NULL}};

/* The fields of record `schema`, in order, against spec; `nested` (may be
 * NULL) is the spec of the records an array field of `schema` holds. */
static int check_record(const char *name, avro_schema_t schema, const field_spec *spec,
                        const field_spec *nested, char *errstr, size_t errstr_size) {
    size_t n = 0;
    while (spec[n].name)
        n++;
    if (!is_avro_record(schema) || avro_schema_record_size(schema) != n) {
        ul_set_err(errstr, errstr_size, "schema %s.avsc: expected a record of %zu fields", name, n);
        return UL_ERR_CORRUPT;
    }
    for (size_t i = 0; i < n; i++) {
        avro_schema_t field = avro_schema_record_field_get_by_index(schema, (int)i);
        const char *fname = avro_schema_record_field_name(schema, (int)i);
        if (fname == NULL || strcmp(fname, spec[i].name) != 0 ||
            avro_typeof(field) != spec[i].type) {
            ul_set_err(errstr, errstr_size,
                       "schema %s.avsc: field %zu is not '%s' of the type codec.c writes", name, i,
                       spec[i].name);
            return UL_ERR_CORRUPT;
        }
        if (nested && spec[i].type == AVRO_ARRAY &&
            check_record(name, avro_schema_array_items(field), nested, NULL, errstr, errstr_size) !=
                UL_OK)
            return UL_ERR_CORRUPT;
    }
    return UL_OK;
}

static int check_schema2(const char *name, const field_spec *spec, const field_spec *nested,
                         char *errstr, size_t errstr_size) {
    const char *text = codec_schema_text(name);
    avro_schema_t schema = NULL;
    if (text == NULL) {
        ul_set_err(errstr, errstr_size, "schema %s.avsc is not embedded in this build", name);
        return UL_ERR_CORRUPT;
    }
    if (avro_schema_from_json_length(text, strlen(text), &schema) != 0) {
        ul_set_err(errstr, errstr_size, "schema %s.avsc does not parse: %s", name, avro_strerror());
        return UL_ERR_CORRUPT;
    }
    int rc = check_record(name, schema, spec, nested, errstr, errstr_size);
    avro_schema_decref(schema);
    return rc;
}

static int check_schema(const char *name, const field_spec *spec, char *errstr,
                        size_t errstr_size) {
    return check_schema2(name, spec, NULL, errstr, errstr_size);
}

static registry_opts registry_opts_of(const codec_opts *o) {
    registry_opts ro = {o->registry_url, o->registry_user, o->registry_password,
                        o->registry_timeout_ms};
    return ro;
}

/* The writer schemas: ours at their ids (an id shared by two record types
 * stays the first's: each type's own id is read by its fast path anyway),
 * then the writer files (which must not reuse our ids), and the registry. */
static schema_cache *cache_new(const codec_opts *o, char *errstr, size_t errstr_size) {
    char origin[64], why[UL_ERRSTR_SIZE];
    schema_cache_opts so = {registry_opts_of(o), o->registry_retry_ms};
    schema_cache *sc = schema_cache_new(&so, errstr, errstr_size);
    for (int r = 0; sc && r < SCHEMA_CACHE_READERS; r++) {
        snprintf(origin, sizeof(origin), "our schemas/%s.avsc", readers[r].schema);
        int rc = schema_cache_add(sc, own_id(o, r), codec_schema_text(readers[r].schema), origin,
                                  why, sizeof(why));
        if (rc != UL_OK && rc != UL_ERR_STATE) {
            ul_set_err(errstr, errstr_size, "%s", why);
            schema_cache_destroy(sc);
            return NULL;
        }
    }
    if (sc && schema_cache_add_files(sc, o->schema_writers, errstr, errstr_size) != UL_OK) {
        schema_cache_destroy(sc);
        return NULL;
    }
    return sc;
}

codec *codec_new(const codec_opts *opts, char *errstr, size_t errstr_size) {
    codec_opts defaults;
    if (opts == NULL) {
        codec_opts_init(&defaults);
        opts = &defaults;
    }
    if (!(opts->rating_min < opts->rating_max) || !isfinite(opts->rating_min) ||
        !isfinite(opts->rating_max)) {
        ul_set_err(errstr, errstr_size, "rating scale %g..%g is empty", (double)opts->rating_min,
                   (double)opts->rating_max);
        return NULL;
    }
    if (opts->max_forget_items < 1) {
        ul_set_err(errstr, errstr_size, "max forget items must be at least 1");
        return NULL;
    }
    if (check_schema("rating", rating_fields, errstr, errstr_size) ||
        check_schema("forget_request", forget_fields, errstr, errstr_size) ||
        check_schema("factor", factor_fields, errstr, errstr_size) ||
        check_schema("forget_receipt", receipt_fields, errstr, errstr_size) ||
        check_schema2("item_update", item_update_fields, item_update_item_fields, errstr,
                      errstr_size))
        return NULL;
    codec *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    c->opts = *opts;
    c->opts.schema_writers = c->opts.registry_url = NULL;
    c->opts.registry_user = c->opts.registry_password = NULL;
    if ((c->cache = cache_new(opts, errstr, errstr_size)) == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void codec_destroy(codec *c) {
    if (c == NULL)
        return;
    schema_cache_destroy(c->cache);
    free(c);
}

int codec_register_outputs(codec_opts *opts, const char *factors_topic, const char *receipts_topic,
                           char *errstr, size_t errstr_size) {
    if (opts->registry_url == NULL || *opts->registry_url == '\0') {
        ul_set_err(errstr, errstr_size, "registering the output schemas needs schema.registry.url");
        return UL_ERR_ARG;
    }
    registry_opts ro = registry_opts_of(opts);
    registry *reg = registry_new(&ro, errstr, errstr_size);
    if (reg == NULL)
        return UL_ERR_ARG;
    char subject[300];
    int32_t factor_id = 0, receipt_id = 0;
    snprintf(subject, sizeof(subject), "%s-value", factors_topic);
    int rc = registry_register(reg, subject, codec_schema_text("factor"), &factor_id, errstr,
                               errstr_size);
    snprintf(subject, sizeof(subject), "%s-value", receipts_topic);
    if (rc == UL_OK)
        rc = registry_register(reg, subject, codec_schema_text("forget_receipt"), &receipt_id,
                               errstr, errstr_size);
    registry_destroy(reg);
    if (rc == UL_OK) {
        opts->schema_id_factor = factor_id;
        opts->schema_id_receipt = receipt_id;
    }
    return rc;
}

/* ---- Writer ------------------------------------------------------------ */

static void w_string(writer *w, const char *s) {
    size_t n = strlen(s);
    w_long(w, (int64_t)n);
    w_bytes(w, s, n);
}

/* ---- Reader ------------------------------------------------------------ */

/* A string into a fixed buffer; a string too long for it is consumed and
 * reported through *too_long (a validation error, not an Avro one). */
static int r_string(reader *r, char *buf, size_t size, size_t *len, int *too_long) {
    int64_t n;
    if (r_long(r, &n) != 0 || n < 0 || n > r->end - r->p)
        return -1;
    *len = (size_t)n;
    *too_long = (size_t)n >= size;
    size_t copy = *too_long ? size - 1 : (size_t)n;
    memcpy(buf, r->p, copy);
    buf[copy] = '\0';
    r->p += n;
    return 0;
}

/* A body of another writer schema: resolved, then read in place (same
 * schema) or from its transcoding into `tmp` (the caller frees tmp). */
static int r_resolved(const codec *c, int reader_no, uint32_t id, const uint8_t *body, size_t len,
                      reader *r, codec_buf *tmp, char *errstr, size_t errstr_size) {
    char why[UL_ERRSTR_SIZE];
    const char *what = readers[reader_no].what;
    resolve *res = NULL;
    int rc = id > INT32_MAX ? CODEC_ERR_UNKNOWN_SCHEMA
                            : schema_cache_resolve(c->cache, (int32_t)id, reader_no,
                                                   codec_schema_text(readers[reader_no].schema),
                                                   &res, why, sizeof(why));
    if (rc == CODEC_ERR_UNKNOWN_SCHEMA)
        ul_set_err(errstr, errstr_size,
                   "%s: schema id %" PRIu32 " is not the configured %" PRId32 ": %s", what, id,
                   own_id(&c->opts, reader_no), id > INT32_MAX ? "ids are below 2^31" : why);
    else if (rc != CODEC_OK)
        ul_set_err(errstr, errstr_size, "%s: %s", what, why);
    else if (!resolve_is_identity(res) &&
             (rc = resolve_transcode(res, body, len, tmp, why, sizeof(why))) != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s: schema id %" PRIu32 ": %s", what, id, why);
        return rc == UL_ERR_NOMEM ? CODEC_ERR_NOMEM : CODEC_ERR_AVRO;
    }
    if (rc != CODEC_OK)
        return rc;
    r->p = resolve_is_identity(res) ? body : tmp->data;
    r->end = r->p + (resolve_is_identity(res) ? len : tmp->len);
    return CODEC_OK;
}

/* Check the frame and position r at a body in our schema of `reader_no`:
 * the record's own bytes for our id (the fast path), else its resolution. */
static inline int r_open(const codec *c, int reader_no, const void *buf, size_t len, reader *r,
                         codec_buf *tmp, char *errstr, size_t errstr_size) {
    uint32_t id;
    int rc = r_frame(buf, len, &id, readers[reader_no].what, errstr, errstr_size);
    if (rc)
        return rc;
    const uint8_t *body = (const uint8_t *)buf + CODEC_HEADER_SIZE;
    if (id == (uint32_t)own_id(&c->opts, reader_no)) {
        r->p = body;
        r->end = body + (len - CODEC_HEADER_SIZE);
        return CODEC_OK;
    }
    return r_resolved(c, reader_no, id, body, len - CODEC_HEADER_SIZE, r, tmp, errstr, errstr_size);
}

int64_t codec_peek_schema_id(const void *buf, size_t len) {
    const uint8_t *p = buf;
    if (buf == NULL || len < CODEC_HEADER_SIZE || p[0] != 0)
        return -1;
    return (int64_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
}

/* ---- Validation (shared by encoders and decoders) ---------------------- */

int codec_invalid(char *errstr, size_t errstr_size, const char *fmt, ...) {
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return CODEC_ERR_INVALID;
}

static inline int check_rating(const codec *c, const codec_rating *r, char *errstr,
                               size_t errstr_size) {
    if (r->user_id < 0)
        return codec_invalid(errstr, errstr_size, "rating: negative user_id %" PRId64, r->user_id);
    if (r->item_id < 0)
        return codec_invalid(errstr, errstr_size, "rating: negative item_id %" PRId64, r->item_id);
    if (isnan(r->rating))
        return codec_invalid(errstr, errstr_size, "rating: value is NaN");
    if (!(r->rating >= c->opts.rating_min && r->rating <= c->opts.rating_max))
        return codec_invalid(errstr, errstr_size, "rating: %g outside the scale %g..%g",
                             (double)r->rating, (double)c->opts.rating_min,
                             (double)c->opts.rating_max);
    if (r->event_time < 0)
        return codec_invalid(errstr, errstr_size, "rating: negative event_time %" PRId64,
                             r->event_time);
    return CODEC_OK;
}

static int check_request_id(const char *what, const char *id, size_t len, int too_long,
                            char *errstr, size_t errstr_size) {
    if (len == 0)
        return codec_invalid(errstr, errstr_size, "%s: missing (empty) request_id", what);
    if (too_long)
        return codec_invalid(errstr, errstr_size, "%s: request_id of %zu bytes is longer than %d",
                             what, len, CODEC_REQUEST_ID_MAX);
    if (strlen(id) != len)
        return codec_invalid(errstr, errstr_size, "%s: request_id contains a NUL byte", what);
    return CODEC_OK;
}

static int check_forget(const codec *c, const codec_forget *fr, char *errstr, size_t errstr_size) {
    size_t len = strnlen(fr->request_id, sizeof(fr->request_id));
    int rc = check_request_id("forget request", fr->request_id, len, len >= sizeof(fr->request_id),
                              errstr, errstr_size);
    if (rc)
        return rc;
    if (fr->user_id < 0)
        return codec_invalid(errstr, errstr_size, "forget request %s: negative user_id %" PRId64,
                             fr->request_id, fr->user_id);
    if ((fr->items != NULL || fr->n_items > 0) == (fr->has_window != 0))
        return codec_invalid(errstr, errstr_size,
                             "forget request %s: give exactly one of an item list or a time window",
                             fr->request_id);
    if (!fr->has_window && (fr->items == NULL || fr->n_items == 0))
        return codec_invalid(errstr, errstr_size, "forget request %s: empty item list",
                             fr->request_id);
    if (fr->n_items > c->opts.max_forget_items)
        return codec_invalid(errstr, errstr_size,
                             "forget request %s: %zu items, more than forget.max.items=%zu",
                             fr->request_id, fr->n_items, c->opts.max_forget_items);
    for (size_t i = 0; i < fr->n_items; i++)
        if (fr->items[i] < 0)
            return codec_invalid(errstr, errstr_size,
                                 "forget request %s: negative item id %" PRId64, fr->request_id,
                                 fr->items[i]);
    if (fr->has_window && fr->window_from > fr->window_to)
        return codec_invalid(errstr, errstr_size,
                             "forget request %s: window from %" PRId64 " is after to %" PRId64,
                             fr->request_id, fr->window_from, fr->window_to);
    if (fr->has_window && fr->window_from < 0)
        return codec_invalid(errstr, errstr_size, "forget request %s: negative window start",
                             fr->request_id);
    if ((int)fr->reason < 0 || (int)fr->reason >= CODEC_N_REASONS)
        return codec_invalid(errstr, errstr_size, "forget request %s: unknown reason %d",
                             fr->request_id, (int)fr->reason);
    if (fr->requested_at < 0)
        return codec_invalid(errstr, errstr_size, "forget request %s: negative requested_at",
                             fr->request_id);
    return CODEC_OK;
}

static int check_factor(const codec_factor *f, char *errstr, size_t errstr_size) {
    if (f->model_version < 0)
        return codec_invalid(errstr, errstr_size, "factor: negative model_version");
    if (f->kind != CODEC_KIND_USER && f->kind != CODEC_KIND_ITEM)
        return codec_invalid(errstr, errstr_size, "factor: unknown kind %d", (int)f->kind);
    if (f->id < 0)
        return codec_invalid(errstr, errstr_size, "factor: negative id %" PRId64, f->id);
    if (f->dim < 1 || f->dim > CODEC_MAX_DIM || f->vector == NULL)
        return codec_invalid(errstr, errstr_size, "factor: vector of %d floats (want 1..%d)",
                             f->dim, CODEC_MAX_DIM);
    for (int i = 0; i < f->dim; i++)
        if (!isfinite(f->vector[i]))
            return codec_invalid(errstr, errstr_size, "factor: vector[%d] is not finite", i);
    if (!isfinite(f->bias))
        return codec_invalid(errstr, errstr_size, "factor: bias is not finite");
    return CODEC_OK;
}

static int check_receipt(const codec_receipt *rc, char *errstr, size_t errstr_size) {
    size_t len = strnlen(rc->request_id, sizeof(rc->request_id));
    int err = check_request_id("receipt", rc->request_id, len, len >= sizeof(rc->request_id),
                               errstr, errstr_size);
    if (err)
        return err;
    if (rc->user_id < 0 || rc->forgotten < 0 || rc->model_version < 0 || rc->requested < 0 ||
        rc->not_found < 0 || rc->beyond_retention < 0)
        return codec_invalid(errstr, errstr_size, "receipt %s: negative user_id, count or version",
                             rc->request_id);
    return CODEC_OK;
}

/* ---- Records ------------------------------------------------------------ */

int codec_encode_rating(const codec *c, const codec_rating *r, codec_buf *out, char *errstr,
                        size_t errstr_size) {
    int rc = check_rating(c, r, errstr, errstr_size);
    if (rc)
        return rc;
    writer w = {out, 0};
    w_header(&w, c->opts.schema_id_rating);
    w_long(&w, r->user_id);
    w_long(&w, r->item_id);
    w_float(&w, r->rating);
    w_long(&w, r->event_time);
    return w_finish(&w, errstr, errstr_size);
}

static inline int r_rating_body(const codec *c, reader *rd, codec_rating *r, char *errstr,
                                size_t errstr_size) {
    if (r_long(rd, &r->user_id))
        return avro_fail("rating", "user_id", errstr, errstr_size);
    if (r_long(rd, &r->item_id))
        return avro_fail("rating", "item_id", errstr, errstr_size);
    if (r_float(rd, &r->rating))
        return avro_fail("rating", "rating", errstr, errstr_size);
    if (r_long(rd, &r->event_time))
        return avro_fail("rating", "event_time", errstr, errstr_size);
    int rc = r_done(rd, "rating", errstr, errstr_size);
    return rc ? rc : check_rating(c, r, errstr, errstr_size);
}

/* A rating of another writer schema (out of line: the hot path is ours). */
static int decode_rating_resolved(const codec *c, const void *buf, size_t len, codec_rating *r,
                                  char *errstr, size_t errstr_size) {
    reader rd;
    codec_buf tmp = {0};
    int rc = r_open(c, READ_RATING, buf, len, &rd, &tmp, errstr, errstr_size);
    if (rc == CODEC_OK)
        rc = r_rating_body(c, &rd, r, errstr, errstr_size);
    tmp_free(&tmp);
    return rc;
}

int codec_decode_rating(const codec *c, const void *buf, size_t len, codec_rating *r, char *errstr,
                        size_t errstr_size) {
    const uint8_t *p = buf;
    if (p && len >= CODEC_HEADER_SIZE && p[0] == 0 &&
        ((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]) ==
            (uint32_t)c->opts.schema_id_rating) {
        reader rd = {p + CODEC_HEADER_SIZE, p + len};
        return r_rating_body(c, &rd, r, errstr, errstr_size);
    }
    return decode_rating_resolved(c, buf, len, r, errstr, errstr_size);
}

int codec_encode_forget(const codec *c, const codec_forget *fr, codec_buf *out, char *errstr,
                        size_t errstr_size) {
    int rc = check_forget(c, fr, errstr, errstr_size);
    if (rc)
        return rc;
    writer w = {out, 0};
    w_header(&w, c->opts.schema_id_forget);
    w_string(&w, fr->request_id);
    w_long(&w, fr->user_id);
    if (fr->has_window) {
        w_long(&w, 0); /* items: null */
    } else {
        w_long(&w, 1);
        w_long(&w, (int64_t)fr->n_items);
        for (size_t i = 0; i < fr->n_items; i++)
            w_long(&w, fr->items[i]);
        w_long(&w, 0);
    }
    if (fr->has_window) {
        w_long(&w, 1);
        w_long(&w, fr->window_from);
        w_long(&w, fr->window_to);
    } else {
        w_long(&w, 0);
    }
    w_long(&w, (int64_t)fr->reason);
    w_long(&w, fr->requested_at);
    return w_finish(&w, errstr, errstr_size);
}

/* items: a union of null and array<long>; bounded by max_forget_items before
 * anything is allocated. */
static int r_forget_items(const codec *c, reader *rd, codec_forget *fr, char *errstr,
                          size_t errstr_size) {
    int64_t branch, count;
    if (r_long(rd, &branch) || (branch != 0 && branch != 1))
        return avro_fail("forget request", "items", errstr, errstr_size);
    if (branch == 0)
        return CODEC_OK;
    size_t cap = 0;
    for (;;) {
        if (r_block(rd, &count))
            return avro_fail("forget request", "items", errstr, errstr_size);
        if (count == 0)
            break;
        if (count > rd->end - rd->p)
            return avro_fail("forget request", "items", errstr, errstr_size);
        if (fr->n_items + (size_t)count > c->opts.max_forget_items)
            return codec_invalid(errstr, errstr_size,
                                 "forget request: more than forget.max.items=%zu items",
                                 c->opts.max_forget_items);
        if (fr->n_items + (size_t)count > cap) {
            cap = fr->n_items + (size_t)count;
            int64_t *items = realloc(fr->items, cap * sizeof(*items));
            if (items == NULL) {
                ul_set_err(errstr, errstr_size, "out of memory decoding a forget request");
                return CODEC_ERR_NOMEM;
            }
            fr->items = items;
        }
        for (int64_t i = 0; i < count; i++)
            if (r_long(rd, &fr->items[fr->n_items++]))
                return avro_fail("forget request", "items", errstr, errstr_size);
    }
    if (fr->n_items == 0)
        return codec_invalid(errstr, errstr_size, "forget request: empty item list");
    return CODEC_OK;
}

static int r_forget_body(const codec *c, reader *rd, codec_forget *fr, char *errstr,
                         size_t errstr_size) {
    size_t id_len;
    int too_long, rc;
    int64_t branch;
    int32_t reason;
    if (r_string(rd, fr->request_id, sizeof(fr->request_id), &id_len, &too_long))
        return avro_fail("forget request", "request_id", errstr, errstr_size);
    rc = check_request_id("forget request", fr->request_id, id_len, too_long, errstr, errstr_size);
    if (rc)
        return rc;
    if (r_long(rd, &fr->user_id))
        return avro_fail("forget request", "user_id", errstr, errstr_size);
    rc = r_forget_items(c, rd, fr, errstr, errstr_size);
    if (rc)
        return rc;
    if (r_long(rd, &branch) || (branch != 0 && branch != 1))
        return avro_fail("forget request", "window", errstr, errstr_size);
    fr->has_window = branch == 1;
    if (fr->has_window && (r_long(rd, &fr->window_from) || r_long(rd, &fr->window_to)))
        return avro_fail("forget request", "window", errstr, errstr_size);
    if (r_int(rd, &reason))
        return avro_fail("forget request", "reason", errstr, errstr_size);
    if (reason < 0 || reason >= CODEC_N_REASONS)
        return codec_invalid(errstr, errstr_size,
                             "forget request %s: unknown reason index %" PRId32, fr->request_id,
                             reason);
    fr->reason = (codec_reason)reason;
    if (r_long(rd, &fr->requested_at))
        return avro_fail("forget request", "requested_at", errstr, errstr_size);
    rc = r_done(rd, "forget request", errstr, errstr_size);
    return rc ? rc : check_forget(c, fr, errstr, errstr_size);
}

int codec_decode_forget(const codec *c, const void *buf, size_t len, codec_forget *fr, char *errstr,
                        size_t errstr_size) {
    reader rd;
    codec_buf tmp = {0};
    memset(fr, 0, sizeof(*fr));
    int rc = r_open(c, READ_FORGET, buf, len, &rd, &tmp, errstr, errstr_size);
    if (rc == CODEC_OK)
        rc = r_forget_body(c, &rd, fr, errstr, errstr_size);
    if (rc != CODEC_OK)
        codec_forget_clear(fr);
    tmp_free(&tmp);
    return rc;
}

int codec_encode_factor(const codec *c, const codec_factor *f, codec_buf *out, char *errstr,
                        size_t errstr_size) {
    int rc = check_factor(f, errstr, errstr_size);
    if (rc)
        return rc;
    writer w = {out, 0};
    w_header(&w, c->opts.schema_id_factor);
    w_long(&w, f->model_version);
    w_long(&w, (int64_t)f->kind);
    w_long(&w, f->id);
    w_long(&w, f->dim);
    for (int i = 0; i < f->dim; i++)
        w_float(&w, f->vector[i]);
    w_long(&w, 0);
    w_float(&w, f->bias);
    return w_finish(&w, errstr, errstr_size);
}

static int r_factor_vector(reader *rd, codec_factor *f, char *errstr, size_t errstr_size) {
    int64_t count;
    for (;;) {
        if (r_block(rd, &count))
            return avro_fail("factor", "vector", errstr, errstr_size);
        if (count == 0)
            return CODEC_OK;
        if (count > (rd->end - rd->p) / 4 || f->dim + count > CODEC_MAX_DIM)
            return avro_fail("factor", "vector", errstr, errstr_size);
        float *v = realloc(f->vector, (size_t)(f->dim + count) * sizeof(float));
        if (v == NULL) {
            ul_set_err(errstr, errstr_size, "out of memory decoding a factor");
            return CODEC_ERR_NOMEM;
        }
        f->vector = v;
        for (int64_t i = 0; i < count; i++)
            r_float(rd, &f->vector[f->dim++]);
    }
}

static int r_factor_body(reader *rd, codec_factor *f, char *errstr, size_t errstr_size) {
    int32_t kind;
    int rc = CODEC_OK;
    if (r_long(rd, &f->model_version))
        rc = avro_fail("factor", "model_version", errstr, errstr_size);
    else if (r_int(rd, &kind) || kind < 0 || kind > 1)
        rc = avro_fail("factor", "kind", errstr, errstr_size);
    else if (f->kind = (codec_kind)kind, r_long(rd, &f->id))
        rc = avro_fail("factor", "id", errstr, errstr_size);
    else if ((rc = r_factor_vector(rd, f, errstr, errstr_size)) != CODEC_OK)
        ;
    else if (r_float(rd, &f->bias))
        rc = avro_fail("factor", "bias", errstr, errstr_size);
    else if ((rc = r_done(rd, "factor", errstr, errstr_size)) == CODEC_OK)
        rc = check_factor(f, errstr, errstr_size);
    return rc;
}

int codec_decode_factor(const codec *c, const void *buf, size_t len, codec_factor *f, char *errstr,
                        size_t errstr_size) {
    reader rd;
    codec_buf tmp = {0};
    memset(f, 0, sizeof(*f));
    int rc = r_open(c, READ_FACTOR, buf, len, &rd, &tmp, errstr, errstr_size);
    if (rc == CODEC_OK)
        rc = r_factor_body(&rd, f, errstr, errstr_size);
    if (rc != CODEC_OK)
        codec_factor_clear(f);
    tmp_free(&tmp);
    return rc;
}

int codec_encode_receipt(const codec *c, const codec_receipt *rc, codec_buf *out, char *errstr,
                         size_t errstr_size) {
    int err = check_receipt(rc, errstr, errstr_size);
    if (err)
        return err;
    writer w = {out, 0};
    w_header(&w, c->opts.schema_id_receipt);
    w_string(&w, rc->request_id);
    w_long(&w, rc->user_id);
    w_long(&w, rc->forgotten);
    w_long(&w, rc->model_version);
    w_long(&w, rc->received_at);
    w_long(&w, rc->completed_at);
    w_long(&w, rc->requested);
    w_long(&w, rc->not_found);
    w_long(&w, rc->beyond_retention);
    return w_finish(&w, errstr, errstr_size);
}

static int r_receipt_body(reader *rd, codec_receipt *rc, char *errstr, size_t errstr_size) {
    size_t id_len;
    int too_long;
    if (r_string(rd, rc->request_id, sizeof(rc->request_id), &id_len, &too_long))
        return avro_fail("receipt", "request_id", errstr, errstr_size);
    int err = check_request_id("receipt", rc->request_id, id_len, too_long, errstr, errstr_size);
    if (err)
        return err;
    if (r_long(rd, &rc->user_id) || r_int(rd, &rc->forgotten) || r_long(rd, &rc->model_version) ||
        r_long(rd, &rc->received_at) || r_long(rd, &rc->completed_at))
        return avro_fail("receipt", "user_id..completed_at", errstr, errstr_size);
    /* A record of the first version of the schema, under the same id, ends
     * here: its later fields take their defaults (0). */
    if (rd->p != rd->end && (r_int(rd, &rc->requested) || r_int(rd, &rc->not_found) ||
                             r_int(rd, &rc->beyond_retention)))
        return avro_fail("receipt", "requested..beyond_retention", errstr, errstr_size);
    err = r_done(rd, "receipt", errstr, errstr_size);
    return err ? err : check_receipt(rc, errstr, errstr_size);
}

int codec_decode_receipt(const codec *c, const void *buf, size_t len, codec_receipt *rc,
                         char *errstr, size_t errstr_size) {
    reader rd;
    codec_buf tmp = {0};
    memset(rc, 0, sizeof(*rc));
    int err = r_open(c, READ_RECEIPT, buf, len, &rd, &tmp, errstr, errstr_size);
    if (err == CODEC_OK)
        err = r_receipt_body(&rd, rc, errstr, errstr_size);
    tmp_free(&tmp);
    return err;
}
