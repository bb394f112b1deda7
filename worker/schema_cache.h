/* schema_cache.h: the writer schemas the codec knows, by Confluent schema
 * id, and their resolutions into our reader schemas (resolve.h). Sources,
 * in the order they are consulted:
 *
 *   1. added at start: the codec's own embedded schemas at their configured
 *      ids, and the files of `schema.writers` ("ID=PATH.avsc,...");
 *   2. the Schema Registry (registry.h), asked once per unknown id.
 *
 * Everything found is kept for the life of the cache (an id names one
 * schema forever in a registry), so the registry is asked at most once per
 * id; a failed lookup (404, registry unreachable) is remembered for
 * `retry_ms` and fails at once meanwhile, so a burst of records with an
 * unknown id costs one request, not one per record. Resolutions are built
 * on first use per (id, reader) and kept, an incompatible pair too (with
 * its reason). Thread-safe: one lock around lookups. */
#ifndef UL_SCHEMA_CACHE_H
#define UL_SCHEMA_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "resolve.h"

#define SCHEMA_CACHE_READERS 4    /* reader schemas a resolution may target */
#define SCHEMA_CACHE_MAX_IDS 4096 /* ids remembered; beyond, unknown ids are refused */

typedef struct schema_cache_opts {
    registry_opts registry; /* registry.url NULL/"" = no registry */
    long retry_ms;          /* a failed lookup is not retried sooner; <= 0 = 5000 */
} schema_cache_opts;

typedef struct schema_cache schema_cache;

/* An empty cache with its registry client (which connects nothing yet).
 * NULL with errstr on error (a bad registry URL). */
schema_cache *schema_cache_new(const schema_cache_opts *opts, char *errstr, size_t errstr_size);
void schema_cache_destroy(schema_cache *sc);

/* Add writer schema `text` under `id`; `origin` says where it came from in
 * messages ("schemas/rating.avsc"). UL_ERR_STATE when the id is taken,
 * UL_ERR_PARSE when the text is not an Avro schema. */
int schema_cache_add(schema_cache *sc, int32_t id, const char *text, const char *origin,
                     char *errstr, size_t errstr_size);

/* Read and add the writer files of `writers`, "ID=PATH[,ID=PATH...]"
 * (schema.writers; NULL or "" = none). Errors name the entry and the file,
 * or the schema that already has the id. */
int schema_cache_add_files(schema_cache *sc, const char *writers, char *errstr, size_t errstr_size);

/* 1 when a registry is configured. */
int schema_cache_has_registry(const schema_cache *sc);

/* The resolution of writer schema `id` into reader number `reader`
 * (0..SCHEMA_CACHE_READERS-1) whose schema is `reader_text`. Returns
 * CODEC_OK with *res (owned by the cache), CODEC_ERR_UNKNOWN_SCHEMA (no
 * source has the id), CODEC_ERR_UNRESOLVED (the writer schema cannot be
 * read as ours, or is not a usable Avro schema), CODEC_ERR_REGISTRY (the
 * registry could not be asked), or CODEC_ERR_NOMEM, with a message. */
int schema_cache_resolve(schema_cache *sc, int32_t id, int reader, const char *reader_text,
                         resolve **res, char *errstr, size_t errstr_size);

#endif
