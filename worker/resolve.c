/* resolve.c: Avro schema resolution of a writer schema into our reader
 * schema, as a transcoder (see resolve.h).
 *
 * DESIGN
 * - avro-c's resolved reader (avro_resolved_reader_new) does the reading:
 *   the body is read into a generic value of the writer schema, and a
 *   resolved value of the reader schema wraps it (matching fields by name,
 *   skipping the writer's extra ones, promoting types, mapping enum symbols
 *   and union branches). Each reader field is then written with
 *   avro_value_write, so the result is exactly our reader's encoding and
 *   the hand-written decoders (codec.c) validate it as usual.
 * - avro-c does not implement defaults: its resolver refuses a reader field
 *   the writer lacks. So the resolver is built for the reader schema minus
 *   those fields, and their defaults (read from the reader's JSON, which
 *   avro-c does not keep) are encoded once and copied in at their place.
 *   Defaults apply to top-level fields, where all of ours are.
 * - avro-c reports an incompatible pair with no reason, so compat() walks
 *   both schemas first with Avro's rules and names the first problem.
 * - avro-c's resolved enum hands back the writer's symbol index, not ours.
 *   A top-level enum field (ours: reason, kind) is mapped by symbol name
 *   here; a nested enum must list its symbols in our order.
 * - Before avro-c reads a body, scan() walks it against the writer schema:
 *   every length, count and branch must fit the bytes, and the record must
 *   end exactly at the end. avro-c would otherwise trust a length prefix of
 *   2^62 and try to allocate it. */
#include "resolve.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "avro_bin.h"
#include "ul_err.h"

#define RESOLVE_MAX_DEPTH 32        /* nesting walked by compat() and scan() */
#define RESOLVE_MAX_OUT (64u << 20) /* largest transcoded body */

/* Where reader field i comes from: the pruned reader's field `src`, or the
 * default bytes defaults[off .. off + len). A top-level enum carries the
 * writer's index -> our index map (avro-c passes enum indices through). */
typedef struct field_plan {
    int src; /* -1: from the default */
    size_t off, len;
    int *enum_map, n_enum;
} field_plan;

struct resolve {
    int identity;
    avro_schema_t writer, pruned;
    avro_value_iface_t *writer_class, *resolved_class;
    avro_value_t writer_value, resolved_value;
    avro_reader_t in;
    avro_writer_t out;
    field_plan *plan;
    size_t n_fields;
    codec_buf defaults;
    pthread_mutex_t lock;
};

/* ---- schema walking ------------------------------------------------------ */

static avro_schema_t deref(avro_schema_t s) {
    return is_avro_link(s) ? avro_schema_link_target(s) : s;
}

static const char *type_name(avro_schema_t s) {
    switch (avro_typeof(deref(s))) {
    case AVRO_STRING:
        return "string";
    case AVRO_BYTES:
        return "bytes";
    case AVRO_INT32:
        return "int";
    case AVRO_INT64:
        return "long";
    case AVRO_FLOAT:
        return "float";
    case AVRO_DOUBLE:
        return "double";
    case AVRO_BOOLEAN:
        return "boolean";
    case AVRO_NULL:
        return "null";
    case AVRO_RECORD:
        return "record";
    case AVRO_ENUM:
        return "enum";
    case AVRO_FIXED:
        return "fixed";
    case AVRO_MAP:
        return "map";
    case AVRO_ARRAY:
        return "array";
    case AVRO_UNION:
        return "union";
    default:
        return "unknown type";
    }
}

/* Avro's promotions: the writer's primitive type can be read as the
 * reader's. */
static int promotes(avro_type_t w, avro_type_t r) {
    if (w == r)
        return 1;
    switch (w) {
    case AVRO_INT32:
        return r == AVRO_INT64 || r == AVRO_FLOAT || r == AVRO_DOUBLE;
    case AVRO_INT64:
        return r == AVRO_FLOAT || r == AVRO_DOUBLE;
    case AVRO_FLOAT:
        return r == AVRO_DOUBLE;
    case AVRO_STRING:
        return r == AVRO_BYTES;
    case AVRO_BYTES:
        return r == AVRO_STRING;
    default:
        return 0;
    }
}

static int compat(avro_schema_t w, avro_schema_t r, const char *path, int depth, char *why,
                  size_t size);

static int compat_union(avro_schema_t w, avro_schema_t r, const char *path, int depth, char *why,
                        size_t size) {
    if (is_avro_union(w)) { /* every branch the writer may use must be readable */
        for (size_t b = 0; b < avro_schema_union_size(w); b++)
            if (compat(avro_schema_union_branch(w, (int)b), r, path, depth + 1, why, size) != 0)
                return -1;
        return 0;
    }
    for (size_t b = 0; b < avro_schema_union_size(r); b++)
        if (compat(w, avro_schema_union_branch(r, (int)b), path, depth + 1, NULL, 0) == 0)
            return 0;
    if (why)
        snprintf(why, size, "field '%s': a %s matches no branch of our union", path, type_name(w));
    return -1;
}

static int compat_named(avro_schema_t w, avro_schema_t r, const char *path, char *why,
                        size_t size) {
    const char *wn = avro_schema_name(w), *rn = avro_schema_name(r);
    if (wn && rn && strcmp(wn, rn) == 0)
        return 0;
    if (why)
        snprintf(why, size, "field '%s': %s %s is not our %s %s", path, type_name(w), wn ? wn : "?",
                 type_name(r), rn ? rn : "?");
    return -1;
}

static int compat_enum(avro_schema_t w, avro_schema_t r, const char *path, int depth, char *why,
                       size_t size) {
    if (compat_named(w, r, path, why, size) != 0)
        return -1;
    for (int i = 0; i < avro_schema_enum_number_of_symbols(w); i++) {
        const char *sym = avro_schema_enum_get(w, i);
        int ours = avro_schema_enum_get_by_name(r, sym);
        if (ours < 0 || (depth > 0 && ours != i)) {
            if (why && ours < 0)
                snprintf(why, size, "field '%s': the writer's enum symbol %s is not one of ours",
                         path, sym);
            else if (why)
                snprintf(why, size,
                         "field '%s': a nested enum must list its symbols in our order (%s is "
                         "%d-th, ours %d-th)",
                         path, sym, i, ours);
            return -1;
        }
    }
    return 0;
}

static int compat_record(avro_schema_t w, avro_schema_t r, const char *path, int depth, char *why,
                         size_t size) {
    char sub[256];
    if (compat_named(w, r, path, why, size) != 0)
        return -1;
    for (size_t i = 0; i < avro_schema_record_size(r); i++) {
        const char *name = avro_schema_record_field_name(r, (int)i);
        int wi = avro_schema_record_field_get_index(w, name);
        snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", name);
        if (wi < 0) {
            if (why)
                snprintf(why, size, "field '%s' is missing from the writer schema", sub);
            return -1;
        }
        if (compat(avro_schema_record_field_get_by_index(w, wi),
                   avro_schema_record_field_get_by_index(r, (int)i), sub, depth + 1, why,
                   size) != 0)
            return -1;
    }
    return 0;
}

/* 0 when data written with `w` can be read as `r`; else -1 with the reason
 * (when why is set). */
static int compat(avro_schema_t w, avro_schema_t r, const char *path, int depth, char *why,
                  size_t size) {
    w = deref(w);
    r = deref(r);
    if (depth > RESOLVE_MAX_DEPTH)
        return 0; /* a recursive schema: avro-c's resolver has the last word */
    if (is_avro_union(w) || is_avro_union(r))
        return compat_union(w, r, path, depth, why, size);
    avro_type_t wt = avro_typeof(w), rt = avro_typeof(r);
    if (wt != rt && !promotes(wt, rt)) {
        if (why)
            snprintf(why, size, "field '%s': a %s cannot be read as a %s", path, type_name(w),
                     type_name(r));
        return -1;
    }
    switch (rt) {
    case AVRO_RECORD:
        return compat_record(w, r, path, depth, why, size);
    case AVRO_ENUM:
        return compat_enum(w, r, path, depth, why, size);
    case AVRO_FIXED:
        if (compat_named(w, r, path, why, size) != 0)
            return -1;
        if (avro_schema_fixed_size(w) == avro_schema_fixed_size(r))
            return 0;
        if (why)
            snprintf(why, size, "field '%s': fixed of %lld bytes, ours has %lld", path,
                     (long long)avro_schema_fixed_size(w), (long long)avro_schema_fixed_size(r));
        return -1;
    case AVRO_ARRAY:
        return compat(avro_schema_array_items(w), avro_schema_array_items(r), path, depth + 1, why,
                      size);
    case AVRO_MAP:
        return compat(avro_schema_map_values(w), avro_schema_map_values(r), path, depth + 1, why,
                      size);
    default:
        return 0;
    }
}

/* ---- scanning a body against the writer schema --------------------------- */

static int scan(avro_schema_t s, reader *rd, int depth);

static int scan_blocks(avro_schema_t items, int is_map, reader *rd, int depth) {
    for (;;) {
        int64_t count;
        if (r_block(rd, &count) != 0 || count > rd->end - rd->p)
            return -1;
        if (count == 0)
            return 0;
        for (int64_t i = 0; i < count; i++) {
            int64_t klen;
            if (is_map && (r_long(rd, &klen) != 0 || klen < 0 || klen > rd->end - rd->p))
                return -1;
            if (is_map)
                rd->p += klen;
            if (scan(items, rd, depth + 1) != 0)
                return -1;
        }
    }
}

static int skip_bytes(reader *rd, int64_t n) {
    if (n < 0 || n > rd->end - rd->p)
        return -1;
    rd->p += n;
    return 0;
}

/* Advance rd over one value of schema s; -1 when the bytes do not fit. */
static int scan(avro_schema_t s, reader *rd, int depth) {
    int64_t v;
    s = deref(s);
    if (depth > RESOLVE_MAX_DEPTH)
        return -1;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        return rd->p < rd->end && *rd->p <= 1 ? (rd->p++, 0) : -1;
    case AVRO_INT32:
    case AVRO_INT64:
        return r_long(rd, &v);
    case AVRO_ENUM:
        return r_long(rd, &v) != 0 || v < 0 || v >= avro_schema_enum_number_of_symbols(s) ? -1 : 0;
    case AVRO_FLOAT:
        return skip_bytes(rd, 4);
    case AVRO_DOUBLE:
        return skip_bytes(rd, 8);
    case AVRO_STRING:
    case AVRO_BYTES:
        return r_long(rd, &v) != 0 ? -1 : skip_bytes(rd, v);
    case AVRO_FIXED:
        return skip_bytes(rd, avro_schema_fixed_size(s));
    case AVRO_ARRAY:
        return scan_blocks(avro_schema_array_items(s), 0, rd, depth);
    case AVRO_MAP:
        return scan_blocks(avro_schema_map_values(s), 1, rd, depth);
    case AVRO_UNION:
        if (r_long(rd, &v) != 0 || v < 0 || (size_t)v >= avro_schema_union_size(s))
            return -1;
        return scan(avro_schema_union_branch(s, (int)v), rd, depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++)
            if (scan(avro_schema_record_field_get_by_index(s, (int)i), rd, depth + 1) != 0)
                return -1;
        return 0;
    default:
        return -1;
    }
}

/* ---- defaults ------------------------------------------------------------ */

/* Append the Avro encoding of JSON default `v` for schema s (the spec's
 * mapping: a union's default is for its first branch, bytes and fixed are
 * strings of code points 0..255). -1 when v does not fit s. */
static int put_default(writer *w, avro_schema_t s, json_t *v, int depth);

static int put_latin1(writer *w, avro_schema_t s, json_t *v) {
    const unsigned char *t = (const unsigned char *)json_string_value(v);
    size_t n = json_string_length(v), out = 0;
    unsigned char *buf = malloc(n + 1);
    int ok = t != NULL && buf != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        if (t[i] < 0x80) {
            buf[out++] = t[i];
        } else if ((t[i] == 0xc2 || t[i] == 0xc3) && i + 1 < n) { /* U+0080..U+00FF */
            buf[out++] = (unsigned char)(((t[i] & 0x03) << 6) | (t[i + 1] & 0x3f));
            i++;
        } else {
            ok = 0; /* a code point above 255 */
        }
    }
    ok = ok && (!is_avro_fixed(s) || (int64_t)out == avro_schema_fixed_size(s));
    if (ok && !is_avro_fixed(s))
        w_long(w, (int64_t)out);
    if (ok)
        w_bytes(w, buf, out);
    free(buf);
    return ok ? 0 : -1;
}

static int put_items(writer *w, avro_schema_t s, json_t *v, int depth) {
    size_t n = is_avro_array(s) ? json_array_size(v) : json_object_size(v);
    if (is_avro_array(s) ? !json_is_array(v) : !json_is_object(v))
        return -1;
    if (n > 0)
        w_long(w, (int64_t)n);
    if (is_avro_array(s)) {
        for (size_t i = 0; i < n; i++)
            if (put_default(w, avro_schema_array_items(s), json_array_get(v, i), depth + 1) != 0)
                return -1;
    } else {
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val) {
            w_long(w, (int64_t)strlen(key));
            w_bytes(w, key, strlen(key));
            if (put_default(w, avro_schema_map_values(s), val, depth + 1) != 0)
                return -1;
        }
    }
    w_long(w, 0);
    return 0;
}

static int put_default(writer *w, avro_schema_t s, json_t *v, int depth) {
    s = deref(s);
    if (depth > RESOLVE_MAX_DEPTH)
        return -1;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return json_is_null(v) ? 0 : -1;
    case AVRO_BOOLEAN:
        if (!json_is_boolean(v))
            return -1;
        w_bytes(w, json_is_true(v) ? "\1" : "\0", 1);
        return 0;
    case AVRO_INT32:
    case AVRO_INT64:
        if (!json_is_integer(v))
            return -1;
        w_long(w, (int64_t)json_integer_value(v));
        return 0;
    case AVRO_FLOAT:
    case AVRO_DOUBLE:
        if (!json_is_number(v))
            return -1;
        if (is_avro_float(s))
            w_float(w, (float)json_number_value(v));
        else
            w_double(w, json_number_value(v));
        return 0;
    case AVRO_STRING:
        if (!json_is_string(v))
            return -1;
        w_long(w, (int64_t)json_string_length(v));
        w_bytes(w, json_string_value(v), json_string_length(v));
        return 0;
    case AVRO_BYTES:
    case AVRO_FIXED:
        return json_is_string(v) ? put_latin1(w, s, v) : -1;
    case AVRO_ENUM: {
        int idx = json_is_string(v) ? avro_schema_enum_get_by_name(s, json_string_value(v)) : -1;
        if (idx < 0)
            return -1;
        w_long(w, idx);
        return 0;
    }
    case AVRO_ARRAY:
    case AVRO_MAP:
        return put_items(w, s, v, depth);
    case AVRO_UNION:
        w_long(w, 0);
        return put_default(w, avro_schema_union_branch(s, 0), v, depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++) {
            json_t *fv = json_object_get(v, avro_schema_record_field_name(s, (int)i));
            if (fv == NULL ||
                put_default(w, avro_schema_record_field_get_by_index(s, (int)i), fv, depth + 1))
                return -1;
        }
        return 0;
    default:
        return -1;
    }
}

/* The JSON "default" of reader field `name`, or NULL. */
static json_t *field_default(json_t *reader_json, const char *name) {
    json_t *fields = json_object_get(reader_json, "fields");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        json_t *f = json_array_get(fields, i);
        const char *fname = json_string_value(json_object_get(f, "name"));
        if (fname && strcmp(fname, name) == 0)
            return json_object_get(f, "default");
    }
    return NULL;
}

/* ---- building ------------------------------------------------------------ */

void resolve_destroy(resolve *res) {
    if (res == NULL)
        return;
    if (res->resolved_value.self)
        avro_value_decref(&res->resolved_value);
    if (res->writer_value.self)
        avro_value_decref(&res->writer_value);
    if (res->resolved_class)
        avro_value_iface_decref(res->resolved_class);
    if (res->writer_class)
        avro_value_iface_decref(res->writer_class);
    if (res->in)
        avro_reader_free(res->in);
    if (res->out)
        avro_writer_free(res->out);
    if (res->pruned)
        avro_schema_decref(res->pruned);
    if (res->writer)
        avro_schema_decref(res->writer);
    for (size_t i = 0; res->plan && i < res->n_fields; i++)
        free(res->plan[i].enum_map);
    free(res->plan);
    codec_buf_free(&res->defaults);
    pthread_mutex_destroy(&res->lock);
    free(res);
}

/* A top-level enum's index map, writer -> ours (compat() checked that every
 * writer symbol is ours). */
static int plan_enum(field_plan *fp, avro_schema_t w, avro_schema_t r) {
    if (!is_avro_enum(w) || !is_avro_enum(r))
        return 0;
    fp->n_enum = avro_schema_enum_number_of_symbols(w);
    fp->enum_map = calloc((size_t)fp->n_enum + 1, sizeof(int));
    if (fp->enum_map == NULL)
        return -1;
    for (int i = 0; i < fp->n_enum; i++)
        fp->enum_map[i] = avro_schema_enum_get_by_name(r, avro_schema_enum_get(w, i));
    return 0;
}

/* Plan every reader field: from the writer (checked with compat) or from
 * its default; fields the writer has go into the pruned reader schema. */
static int plan_fields(resolve *res, avro_schema_t rschema, json_t *reader_json, char *errstr,
                       size_t errstr_size) {
    char why[400];
    writer dw = {&res->defaults, 0};
    res->n_fields = avro_schema_record_size(rschema);
    res->plan = calloc(res->n_fields ? res->n_fields : 1, sizeof(*res->plan));
    res->pruned = avro_schema_record(avro_schema_name(rschema), avro_schema_namespace(rschema));
    if (res->plan == NULL || res->pruned == NULL)
        return UL_ERR_NOMEM;
    int n_src = 0;
    for (size_t i = 0; i < res->n_fields; i++) {
        const char *name = avro_schema_record_field_name(rschema, (int)i);
        avro_schema_t rf = avro_schema_record_field_get_by_index(rschema, (int)i);
        int wi = avro_schema_record_field_get_index(res->writer, name);
        if (wi >= 0) {
            avro_schema_t wf = avro_schema_record_field_get_by_index(res->writer, wi);
            if (compat(wf, rf, name, 0, why, sizeof(why)) != 0) {
                ul_set_err(errstr, errstr_size, "%s", why);
                return UL_ERR_ARG;
            }
            if (avro_schema_record_field_append(res->pruned, name, rf) != 0 ||
                plan_enum(&res->plan[i], deref(wf), deref(rf)) != 0)
                return UL_ERR_NOMEM;
            res->plan[i].src = n_src++;
            continue;
        }
        json_t *def = field_default(reader_json, name);
        size_t off = res->defaults.len;
        if (def == NULL || put_default(&dw, rf, def, 0) != 0) {
            ul_set_err(errstr, errstr_size, "field '%s' is missing from the writer schema and %s",
                       name, def ? "our default for it does not fit its type" : "has no default");
            return dw.failed ? UL_ERR_NOMEM : UL_ERR_ARG;
        }
        res->plan[i] = (field_plan){-1, off, res->defaults.len - off, NULL, 0};
    }
    return dw.failed ? UL_ERR_NOMEM : UL_OK;
}

static int build_reader(resolve *res, char *errstr, size_t errstr_size) {
    static char empty[1];
    res->writer_class = avro_generic_class_from_schema(res->writer);
    res->resolved_class = avro_resolved_reader_new(res->writer, res->pruned);
    if (res->resolved_class == NULL) {
        ul_set_err(errstr, errstr_size, "avro-c cannot resolve it: %s", avro_strerror());
        return UL_ERR_ARG;
    }
    if (res->writer_class == NULL ||
        avro_generic_value_new(res->writer_class, &res->writer_value) ||
        avro_resolved_reader_new_value(res->resolved_class, &res->resolved_value) ||
        (res->in = avro_reader_memory(empty, 0)) == NULL ||
        (res->out = avro_writer_memory(empty, 0)) == NULL)
        return UL_ERR_NOMEM;
    avro_resolved_reader_set_source(&res->resolved_value, &res->writer_value);
    return UL_OK;
}

int resolve_new(avro_schema_t wschema, const char *reader_text, resolve **out, char *errstr,
                size_t errstr_size) {
    avro_schema_t rschema = NULL;
    json_t *reader_json = json_loads(reader_text, 0, NULL);
    resolve *res = calloc(1, sizeof(*res));
    int rc = UL_ERR_NOMEM;
    *out = NULL;
    if (res != NULL)
        pthread_mutex_init(&res->lock, NULL);
    if (res == NULL || reader_json == NULL ||
        avro_schema_from_json_length(reader_text, strlen(reader_text), &rschema) != 0) {
        ul_set_err(errstr, errstr_size, "out of memory (or a bad reader schema)");
        goto done;
    }
    res->writer = avro_schema_incref(deref(wschema));
    if (!is_avro_record(res->writer)) {
        ul_set_err(errstr, errstr_size, "the writer schema is a %s, not a record",
                   type_name(res->writer));
        rc = UL_ERR_ARG;
    } else if (compat_named(res->writer, rschema, "", NULL, 0) != 0) {
        ul_set_err(errstr, errstr_size, "the writer schema is record %s, not our %s",
                   avro_schema_name(res->writer), avro_schema_name(rschema));
        rc = UL_ERR_ARG;
    } else if (avro_schema_equal(res->writer, rschema)) {
        res->identity = 1;
        rc = UL_OK;
    } else if ((rc = plan_fields(res, rschema, reader_json, errstr, errstr_size)) == UL_OK) {
        rc = build_reader(res, errstr, errstr_size);
    }
    if (rc == UL_ERR_NOMEM)
        ul_set_err(errstr, errstr_size, "out of memory resolving a writer schema");
done:
    if (rschema)
        avro_schema_decref(rschema);
    json_decref(reader_json);
    if (rc == UL_OK)
        *out = res;
    else
        resolve_destroy(res);
    return rc;
}

int resolve_is_identity(const resolve *res) {
    return res->identity;
}

/* ---- transcoding --------------------------------------------------------- */

static int write_enum(avro_writer_t w, const field_plan *fp, avro_value_t *field) {
    int idx;
    uint8_t buf[10];
    int rc = avro_value_get_enum(field, &idx);
    if (rc != 0 || idx < 0 || idx >= fp->n_enum)
        return rc ? rc : EINVAL;
    return avro_write(w, buf, (int64_t)avro_put_long(buf, fp->enum_map[idx]));
}

/* Write every reader field into out->data[0 .. out->cap); ENOSPC when it
 * does not fit. */
static int write_fields(resolve *res, codec_buf *out) {
    avro_writer_memory_set_dest(res->out, (const char *)out->data, (int64_t)out->cap);
    for (size_t i = 0; i < res->n_fields; i++) {
        const field_plan *fp = &res->plan[i];
        int rc;
        if (fp->src >= 0) {
            avro_value_t field;
            rc = avro_value_get_by_index(&res->resolved_value, (size_t)fp->src, &field, NULL);
            if (rc == 0 && fp->enum_map)
                rc = write_enum(res->out, fp, &field);
            else if (rc == 0)
                rc = avro_value_write(res->out, &field);
        } else {
            rc = fp->len ? avro_write(res->out, res->defaults.data + fp->off, (int64_t)fp->len) : 0;
        }
        if (rc != 0)
            return rc;
    }
    out->len = (size_t)avro_writer_tell(res->out);
    return 0;
}

static int transcode_locked(resolve *res, const void *body, size_t len, codec_buf *out,
                            char *errstr, size_t errstr_size) {
    reader rd = {body, (const uint8_t *)body + len};
    if (scan(res->writer, &rd, 0) != 0) {
        ul_set_err(errstr, errstr_size, "Avro body does not decode against the writer schema");
        return UL_ERR_PARSE;
    }
    if (rd.p != rd.end) {
        ul_set_err(errstr, errstr_size, "%td trailing bytes after the record", rd.end - rd.p);
        return UL_ERR_PARSE;
    }
    avro_reader_memory_set_source(res->in, body, (int64_t)len);
    if (avro_value_read(res->in, &res->writer_value) != 0) {
        ul_set_err(errstr, errstr_size, "Avro body does not decode: %s", avro_strerror());
        return UL_ERR_PARSE;
    }
    size_t want = 2 * len + res->defaults.len + 64;
    for (;;) {
        if (out->cap < want) {
            uint8_t *d = realloc(out->data, want);
            if (d == NULL)
                break;
            out->data = d;
            out->cap = want;
        }
        int rc = write_fields(res, out);
        if (rc == 0)
            return UL_OK;
        if (rc != ENOSPC || want >= RESOLVE_MAX_OUT)
            break;
        want *= 2;
    }
    ul_set_err(errstr, errstr_size, "out of memory transcoding a record");
    return UL_ERR_NOMEM;
}

int resolve_transcode(resolve *res, const void *body, size_t len, codec_buf *out, char *errstr,
                      size_t errstr_size) {
    out->len = 0;
    if (res->identity) { /* callers read identity bodies in place; copy for completeness */
        writer w = {out, 0};
        w_bytes(&w, body, len);
        return w.failed ? UL_ERR_NOMEM : UL_OK;
    }
    pthread_mutex_lock(&res->lock);
    int rc = transcode_locked(res, body, len, out, errstr, errstr_size);
    pthread_mutex_unlock(&res->lock);
    return rc;
}
