/* codec.c: Confluent-framed Avro records of our topics (see codec.h).
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
#include "registry.h"
#include "schema_cache.h"
#include "ul_err.h"

/* schemas_embed.c, generated at build time from schemas/NAME.avsc. */
extern const char *const codec_schema_table[][2];

#define CODEC_MAX_DIM 65536 /* longest factor vector accepted */

struct codec {
    codec_opts opts; /* the borrowed strings cleared */
    schema_cache *cache;
};

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

static void w_header(writer *w, int32_t schema_id) {
    uint32_t id = (uint32_t)schema_id;
    uint8_t h[CODEC_HEADER_SIZE] = {0, (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
                                    (uint8_t)id};
    w->b->len = 0;
    w_bytes(w, h, sizeof(h));
}

static int w_finish(writer *w, char *errstr, size_t errstr_size) {
    if (w->failed) {
        ul_set_err(errstr, errstr_size, "out of memory while encoding");
        return CODEC_ERR_NOMEM;
    }
    return CODEC_OK;
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

/* Check the Confluent frame; the schema id into *id. */
static int r_frame(const void *buf, size_t len, uint32_t *id, const char *what, char *errstr,
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

static inline void tmp_free(codec_buf *tmp) {
    if (tmp->data)
        codec_buf_free(tmp);
}

static int avro_fail(const char *what, const char *field, char *errstr, size_t errstr_size) {
    ul_set_err(errstr, errstr_size, "%s: Avro body does not decode (at field %s)", what, field);
    return CODEC_ERR_AVRO;
}

static int r_done(reader *r, const char *what, char *errstr, size_t errstr_size) {
    if (r->p != r->end) {
        ul_set_err(errstr, errstr_size, "%s: %td trailing bytes after the record", what,
                   r->end - r->p);
        return CODEC_ERR_AVRO;
    }
    return CODEC_OK;
}

int64_t codec_peek_schema_id(const void *buf, size_t len) {
    const uint8_t *p = buf;
    if (buf == NULL || len < CODEC_HEADER_SIZE || p[0] != 0)
        return -1;
    return (int64_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
}

/* ---- Validation (shared by encoders and decoders) ---------------------- */

static int invalid(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int invalid(char *errstr, size_t errstr_size, const char *fmt, ...) {
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
        return invalid(errstr, errstr_size, "rating: negative user_id %" PRId64, r->user_id);
    if (r->item_id < 0)
        return invalid(errstr, errstr_size, "rating: negative item_id %" PRId64, r->item_id);
    if (isnan(r->rating))
        return invalid(errstr, errstr_size, "rating: value is NaN");
    if (!(r->rating >= c->opts.rating_min && r->rating <= c->opts.rating_max))
        return invalid(errstr, errstr_size, "rating: %g outside the scale %g..%g",
                       (double)r->rating, (double)c->opts.rating_min, (double)c->opts.rating_max);
    if (r->event_time < 0)
        return invalid(errstr, errstr_size, "rating: negative event_time %" PRId64, r->event_time);
    return CODEC_OK;
}

static int check_request_id(const char *what, const char *id, size_t len, int too_long,
                            char *errstr, size_t errstr_size) {
    if (len == 0)
        return invalid(errstr, errstr_size, "%s: missing (empty) request_id", what);
    if (too_long)
        return invalid(errstr, errstr_size, "%s: request_id of %zu bytes is longer than %d", what,
                       len, CODEC_REQUEST_ID_MAX);
    if (strlen(id) != len)
        return invalid(errstr, errstr_size, "%s: request_id contains a NUL byte", what);
    return CODEC_OK;
}

static int check_forget(const codec *c, const codec_forget *fr, char *errstr, size_t errstr_size) {
    size_t len = strnlen(fr->request_id, sizeof(fr->request_id));
    int rc = check_request_id("forget request", fr->request_id, len, len >= sizeof(fr->request_id),
                              errstr, errstr_size);
    if (rc)
        return rc;
    if (fr->user_id < 0)
        return invalid(errstr, errstr_size, "forget request %s: negative user_id %" PRId64,
                       fr->request_id, fr->user_id);
    if ((fr->items != NULL || fr->n_items > 0) == (fr->has_window != 0))
        return invalid(errstr, errstr_size,
                       "forget request %s: give exactly one of an item list or a time window",
                       fr->request_id);
    if (!fr->has_window && (fr->items == NULL || fr->n_items == 0))
        return invalid(errstr, errstr_size, "forget request %s: empty item list", fr->request_id);
    if (fr->n_items > c->opts.max_forget_items)
        return invalid(errstr, errstr_size,
                       "forget request %s: %zu items, more than forget.max.items=%zu",
                       fr->request_id, fr->n_items, c->opts.max_forget_items);
    for (size_t i = 0; i < fr->n_items; i++)
        if (fr->items[i] < 0)
            return invalid(errstr, errstr_size, "forget request %s: negative item id %" PRId64,
                           fr->request_id, fr->items[i]);
    if (fr->has_window && fr->window_from > fr->window_to)
        return invalid(errstr, errstr_size,
                       "forget request %s: window from %" PRId64 " is after to %" PRId64,
                       fr->request_id, fr->window_from, fr->window_to);
    if (fr->has_window && fr->window_from < 0)
        return invalid(errstr, errstr_size, "forget request %s: negative window start",
                       fr->request_id);
    if ((int)fr->reason < 0 || (int)fr->reason >= CODEC_N_REASONS)
        return invalid(errstr, errstr_size, "forget request %s: unknown reason %d", fr->request_id,
                       (int)fr->reason);
    if (fr->requested_at < 0)
        return invalid(errstr, errstr_size, "forget request %s: negative requested_at",
                       fr->request_id);
    return CODEC_OK;
}

static int check_factor(const codec_factor *f, char *errstr, size_t errstr_size) {
    if (f->model_version < 0)
        return invalid(errstr, errstr_size, "factor: negative model_version");
    if (f->kind != CODEC_KIND_USER && f->kind != CODEC_KIND_ITEM)
        return invalid(errstr, errstr_size, "factor: unknown kind %d", (int)f->kind);
    if (f->id < 0)
        return invalid(errstr, errstr_size, "factor: negative id %" PRId64, f->id);
    if (f->dim < 1 || f->dim > CODEC_MAX_DIM || f->vector == NULL)
        return invalid(errstr, errstr_size, "factor: vector of %d floats (want 1..%d)", f->dim,
                       CODEC_MAX_DIM);
    for (int i = 0; i < f->dim; i++)
        if (!isfinite(f->vector[i]))
            return invalid(errstr, errstr_size, "factor: vector[%d] is not finite", i);
    if (!isfinite(f->bias))
        return invalid(errstr, errstr_size, "factor: bias is not finite");
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
        return invalid(errstr, errstr_size, "receipt %s: negative user_id, count or version",
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
            return invalid(errstr, errstr_size,
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
        return invalid(errstr, errstr_size, "forget request: empty item list");
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
        return invalid(errstr, errstr_size, "forget request %s: unknown reason index %" PRId32,
                       fr->request_id, reason);
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

/* ---- ItemUpdates (internal) ------------------------------------------- */

void codec_item_updates_clear(codec_item_updates *u) {
    if (u == NULL)
        return;
    free(u->items);
    free(u->vectors);
    memset(u, 0, sizeof(*u));
}

static int check_item_updates(const codec_item_updates *u, char *errstr, size_t errstr_size) {
    if (u->source < CODEC_UPDATE_TRAINING)
        return invalid(errstr, errstr_size, "item updates: source %d", (int)u->source);
    if ((u->source >= 0) != (u->seq > 0) || u->seq < 0)
        return invalid(errstr, errstr_size, "item updates: seq %" PRId64 " with source %d", u->seq,
                       (int)u->source);
    for (size_t i = 0; i < u->n_items; i++) {
        const codec_item_update *it = &u->items[i];
        if (it->id < 0 || it->dim < 0 || it->dim > CODEC_MAX_DIM || !isfinite(it->dsum) ||
            !isfinite(it->dbias))
            return invalid(errstr, errstr_size,
                           "item updates: item %zu (id %" PRId64 ") is invalid", i, it->id);
        for (int f = 0; f < it->dim; f++)
            if (!isfinite(it->dvector[f]))
                return invalid(errstr, errstr_size,
                               "item updates: item %" PRId64 " has a non-finite factor", it->id);
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

/* ---- Keys and partitioning --------------------------------------------- */

int codec_key_user(int64_t user_id, char *buf, size_t size) {
    int n = snprintf(buf, size, "%" PRId64, user_id);
    return (n < 0 || (size_t)n >= size) ? -1 : n;
}

int codec_key_factor(codec_kind kind, int64_t id, char *buf, size_t size) {
    int n = snprintf(buf, size, "%c:%" PRId64, kind == CODEC_KIND_USER ? 'u' : 'i', id);
    return (n < 0 || (size_t)n >= size) ? -1 : n;
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
