/* registry.h: a client of a Confluent Schema Registry's REST API (the two
 * calls unlearnd needs), over libcurl:
 *
 *   GET  /schemas/ids/{id}                the writer schema of a record
 *   POST /subjects/{subject}/versions     register a schema, get its id
 *
 * with HTTP basic auth, a timeout per request and several base URLs tried in
 * order (Confluent's comma-separated form). It does not cache: the codec's
 * schema cache (schema_cache.h) keeps what it fetched, by id, for good.
 *
 * Errors: REGISTRY_ERR_NOT_FOUND (404: the registry does not know the id),
 * REGISTRY_ERR_UNAVAILABLE (no registry answered: connection refused,
 * timeout, 5xx; worth retrying), REGISTRY_ERR_REFUSED (it answered no: 401,
 * 403, 409 incompatible, 422 invalid schema, or a response we cannot read),
 * UL_ERR_NOMEM; each with a message naming the URL (without credentials)
 * and the registry's own message. */
#ifndef UL_REGISTRY_H
#define UL_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

enum registry_err {
    REGISTRY_ERR_NOT_FOUND = -201,
    REGISTRY_ERR_UNAVAILABLE = -202,
    REGISTRY_ERR_REFUSED = -203,
};

typedef struct registry_opts {
    const char *url;      /* "http://host:8081[,http://other:8081]" (schema.registry.url) */
    const char *user;     /* basic auth user; NULL or "" = no auth */
    const char *password; /* basic auth password (a secret: never printed) */
    long timeout_ms;      /* whole request, connection included; <= 0 = 5000 */
} registry_opts;

typedef struct registry registry;

/* Copies the options. NULL with errstr when the URL list is empty or a URL
 * is not http:// or https://, or a password is given without a user. Safe to
 * share between threads (requests are serialised). */
registry *registry_new(const registry_opts *opts, char *errstr, size_t errstr_size);
void registry_destroy(registry *r);

/* GET /schemas/ids/{id}: the schema's JSON text in *schema (malloc'd; the
 * caller frees). Only Avro schemas without references are accepted. */
int registry_get_schema(registry *r, int32_t id, char **schema, char *errstr, size_t errstr_size);

/* POST /subjects/{subject}/versions {"schema": text}: the id the registry
 * gives it (the existing id when the subject already holds that schema). */
int registry_register(registry *r, const char *subject, const char *schema, int32_t *id,
                      char *errstr, size_t errstr_size);

#endif
