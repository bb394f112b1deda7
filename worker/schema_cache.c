/* schema_cache.c: writer schemas by id and their resolutions (see
 * schema_cache.h).
 *
 * DESIGN: entries live in an array of pointers that only grows (a topic
 * sees a handful of schema versions; SCHEMA_CACHE_MAX_IDS bounds what a
 * stream of garbage ids can make us remember), found by a linear scan under
 * one mutex. The registry is asked with that mutex held: a second thread
 * wanting the same id would wait for the same answer anyway, and lookups
 * happen once per id. A resolve object, once built, is never freed before
 * the cache, so callers use it after the lock is released. */
#include "schema_cache.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ul_clock.h"
#include "ul_err.h"

#define SCHEMA_FILE_MAX (1u << 20)

typedef enum entry_state {
    ENTRY_SCHEMA,      /* `schema` is set */
    ENTRY_NOT_FOUND,   /* the registry has no such id (until retry_at) */
    ENTRY_UNAVAILABLE, /* the registry could not be asked (until retry_at) */
    ENTRY_UNUSABLE,    /* not an Avro schema we can use (for good) */
} entry_state;

typedef struct entry {
    int32_t id;
    entry_state state;
    avro_schema_t schema;
    char origin[160];
    char *error; /* why, for the failure states */
    int64_t retry_at_ms;
    resolve *res[SCHEMA_CACHE_READERS];
    char *res_error[SCHEMA_CACHE_READERS]; /* why the pair is incompatible */
} entry;

struct schema_cache {
    entry **entries;
    size_t n, cap;
    registry *reg;
    long retry_ms;
    pthread_mutex_t lock;
};

static void entry_free(entry *e) {
    if (e == NULL)
        return;
    if (e->schema)
        avro_schema_decref(e->schema);
    free(e->error);
    for (int r = 0; r < SCHEMA_CACHE_READERS; r++) {
        resolve_destroy(e->res[r]);
        free(e->res_error[r]);
    }
    free(e);
}

void schema_cache_destroy(schema_cache *sc) {
    if (sc == NULL)
        return;
    for (size_t i = 0; i < sc->n; i++)
        entry_free(sc->entries[i]);
    free(sc->entries);
    registry_destroy(sc->reg);
    pthread_mutex_destroy(&sc->lock);
    free(sc);
}

static entry *find(const schema_cache *sc, int32_t id) {
    for (size_t i = 0; i < sc->n; i++)
        if (sc->entries[i]->id == id)
            return sc->entries[i];
    return NULL;
}

static entry *entry_new(schema_cache *sc, int32_t id) {
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 16;
        entry **bigger = realloc(sc->entries, cap * sizeof(*bigger));
        if (bigger == NULL)
            return NULL;
        sc->entries = bigger;
        sc->cap = cap;
    }
    entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->id = id;
    sc->entries[sc->n++] = e;
    return e;
}

static int parse_schema(const char *text, avro_schema_t *schema, char *errstr, size_t errstr_size) {
    if (avro_schema_from_json_length(text, strlen(text), schema) != 0) {
        ul_set_err(errstr, errstr_size, "not an Avro schema: %s", avro_strerror());
        return UL_ERR_PARSE;
    }
    return UL_OK;
}

int schema_cache_add(schema_cache *sc, int32_t id, const char *text, const char *origin,
                     char *errstr, size_t errstr_size) {
    avro_schema_t schema;
    if (find(sc, id) != NULL) {
        ul_set_err(errstr, errstr_size, "schema id %" PRId32 " is already %s", id,
                   find(sc, id)->origin);
        return UL_ERR_STATE;
    }
    if (parse_schema(text, &schema, errstr, errstr_size) != UL_OK)
        return UL_ERR_PARSE;
    entry *e = entry_new(sc, id);
    if (e == NULL) {
        avro_schema_decref(schema);
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    e->state = ENTRY_SCHEMA;
    e->schema = schema;
    snprintf(e->origin, sizeof(e->origin), "%s", origin);
    return UL_OK;
}

/* ---- schema.writers ------------------------------------------------------ */

static char *read_file(const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(SCHEMA_FILE_MAX + 1) : NULL;
    size_t n = buf ? fread(buf, 1, SCHEMA_FILE_MAX + 1, f) : 0;
    int err = errno;
    if (f)
        fclose(f);
    if (buf == NULL || n > SCHEMA_FILE_MAX) {
        ul_set_err(errstr, errstr_size, "cannot read %s: %s", path,
                   f == NULL ? strerror(err)
                   : buf     ? "larger than 1 MiB"
                             : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* One "ID=PATH" entry of schema.writers. */
static int add_writer_file(schema_cache *sc, const char *s, size_t len, char *errstr,
                           size_t errstr_size) {
    char item[1200], origin[1300], why[UL_ERRSTR_SIZE];
    while (len > 0 && *s == ' ')
        s++, len--;
    while (len > 0 && s[len - 1] == ' ')
        len--;
    if (len == 0)
        return UL_OK;
    snprintf(item, sizeof(item), "%.*s", (int)len, s);
    char *eq = strchr(item, '='), *end = NULL;
    errno = 0;
    long id = eq ? strtol(item, &end, 10) : -1;
    if (eq == NULL || end != eq || eq == item || errno || id < 0 || id > INT32_MAX ||
        eq[1] == '\0') {
        ul_set_err(errstr, errstr_size,
                   "schema.writers: '%s' is not ID=PATH (a schema id 0..2147483647, '=', an "
                   ".avsc file)",
                   item);
        return UL_ERR_ARG;
    }
    char *text = read_file(eq + 1, why, sizeof(why));
    if (text == NULL) {
        ul_set_err(errstr, errstr_size, "schema.writers: %s", why);
        return UL_ERR_IO;
    }
    snprintf(origin, sizeof(origin), "%s (schema.writers)", eq + 1);
    int rc = schema_cache_add(sc, (int32_t)id, text, origin, why, sizeof(why));
    free(text);
    if (rc != UL_OK)
        ul_set_err(errstr, errstr_size, "schema.writers: %s: %s", item, why);
    return rc;
}

schema_cache *schema_cache_new(const schema_cache_opts *opts, char *errstr, size_t errstr_size) {
    schema_cache *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&sc->lock, NULL);
    sc->retry_ms = opts && opts->retry_ms > 0 ? opts->retry_ms : 5000;
    if (opts && opts->registry.url && *opts->registry.url &&
        (sc->reg = registry_new(&opts->registry, errstr, errstr_size)) == NULL) {
        schema_cache_destroy(sc);
        return NULL;
    }
    return sc;
}

int schema_cache_add_files(schema_cache *sc, const char *writers, char *errstr,
                           size_t errstr_size) {
    const char *p = writers ? writers : "";
    int rc = UL_OK;
    for (const char *comma; rc == UL_OK && (comma = strchr(p, ',')) != NULL; p = comma + 1)
        rc = add_writer_file(sc, p, (size_t)(comma - p), errstr, errstr_size);
    return rc == UL_OK ? add_writer_file(sc, p, strlen(p), errstr, errstr_size) : rc;
}

int schema_cache_has_registry(const schema_cache *sc) {
    return sc->reg != NULL;
}

/* ---- lookups ------------------------------------------------------------- */

/* Out of memory leaves the entry "unavailable" without a message (retried,
 * reported as no-memory). */
static void set_failure(entry *e, entry_state state, int64_t retry_at, const char *why) {
    free(e->error);
    e->error = strdup(why);
    e->state = e->error ? state : ENTRY_UNAVAILABLE;
    e->retry_at_ms = retry_at;
}

/* Ask the registry for e->id and record the outcome in e. */
static void fetch(schema_cache *sc, entry *e) {
    char why[UL_ERRSTR_SIZE], perr[UL_ERRSTR_SIZE];
    char *text = NULL;
    int64_t retry_at = ul_clock_mono_ms() + sc->retry_ms;
    int rc = registry_get_schema(sc->reg, e->id, &text, why, sizeof(why));
    if (rc == UL_OK && parse_schema(text, &e->schema, perr, sizeof(perr)) == UL_OK) {
        e->state = ENTRY_SCHEMA;
        snprintf(e->origin, sizeof(e->origin), "from the schema registry");
    } else if (rc == UL_OK) {
        ul_set_err(why, sizeof(why), "the registry's schema id %" PRId32 " is %s", e->id, perr);
        set_failure(e, ENTRY_UNUSABLE, 0, why);
    } else if (rc == REGISTRY_ERR_NOT_FOUND) {
        set_failure(e, ENTRY_NOT_FOUND, retry_at, why);
    } else { /* unreachable, or refused (credentials can be fixed): ask again later */
        set_failure(e, ENTRY_UNAVAILABLE, retry_at, why);
    }
    free(text);
}

/* The entry for `id` with its schema, fetching it when needed; else the
 * failure's code and message. Called with the lock held. */
static int lookup(schema_cache *sc, int32_t id, entry **out, char *errstr, size_t errstr_size) {
    entry *e = find(sc, id);
    if (e == NULL && sc->reg == NULL) {
        ul_set_err(errstr, errstr_size,
                   "no writer schema is known for id %" PRId32
                   " (it is in no schema.writers file, and no schema.registry.url is set)",
                   id);
        return CODEC_ERR_UNKNOWN_SCHEMA;
    }
    if (e == NULL && sc->n >= SCHEMA_CACHE_MAX_IDS) {
        ul_set_err(errstr, errstr_size,
                   "schema id %" PRId32 ": more than %d distinct ids seen, not asking the "
                   "registry about more",
                   id, SCHEMA_CACHE_MAX_IDS);
        return CODEC_ERR_UNKNOWN_SCHEMA;
    }
    if (e == NULL && (e = entry_new(sc, id)) != NULL)
        e->state = ENTRY_UNAVAILABLE; /* not asked yet: retry_at 0 */
    if (e == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return CODEC_ERR_NOMEM;
    }
    if ((e->state == ENTRY_NOT_FOUND || e->state == ENTRY_UNAVAILABLE) &&
        ul_clock_mono_ms() >= e->retry_at_ms)
        fetch(sc, e);
    *out = e;
    switch (e->state) {
    case ENTRY_SCHEMA:
        return CODEC_OK;
    case ENTRY_NOT_FOUND:
        ul_set_err(errstr, errstr_size, "%s", e->error);
        return CODEC_ERR_UNKNOWN_SCHEMA;
    case ENTRY_UNAVAILABLE:
        ul_set_err(errstr, errstr_size, "%s", e->error ? e->error : "out of memory");
        return e->error ? CODEC_ERR_REGISTRY : CODEC_ERR_NOMEM;
    default:
        ul_set_err(errstr, errstr_size, "%s", e->error);
        return CODEC_ERR_UNRESOLVED;
    }
}

/* Build (once) the resolution of e's schema into reader r. */
static int resolution(entry *e, int r, const char *reader_text, char *errstr, size_t errstr_size) {
    char why[UL_ERRSTR_SIZE];
    if (e->res[r] != NULL)
        return CODEC_OK;
    if (e->res_error[r] == NULL) {
        int rc = resolve_new(e->schema, reader_text, &e->res[r], why, sizeof(why));
        if (rc == UL_ERR_NOMEM) {
            ul_set_err(errstr, errstr_size, "%s", why);
            return CODEC_ERR_NOMEM;
        }
        if (rc == UL_OK)
            return CODEC_OK;
        if ((e->res_error[r] = strdup(why)) == NULL) {
            ul_set_err(errstr, errstr_size, "out of memory");
            return CODEC_ERR_NOMEM;
        }
    }
    ul_set_err(errstr, errstr_size, "writer schema %" PRId32 " (%s) cannot be read as ours: %s",
               e->id, e->origin, e->res_error[r]);
    return CODEC_ERR_UNRESOLVED;
}

int schema_cache_resolve(schema_cache *sc, int32_t id, int reader, const char *reader_text,
                         resolve **res, char *errstr, size_t errstr_size) {
    entry *e = NULL;
    *res = NULL;
    if (reader < 0 || reader >= SCHEMA_CACHE_READERS) {
        ul_set_err(errstr, errstr_size, "no reader schema %d", reader);
        return CODEC_ERR_UNRESOLVED;
    }
    pthread_mutex_lock(&sc->lock);
    int rc = lookup(sc, id, &e, errstr, errstr_size);
    if (rc == CODEC_OK)
        rc = resolution(e, reader, reader_text, errstr, errstr_size);
    if (rc == CODEC_OK)
        *res = e->res[reader];
    pthread_mutex_unlock(&sc->lock);
    return rc;
}
