/* registry.c: the Schema Registry REST client (see registry.h).
 *
 * DESIGN: one libcurl easy handle per client, reused across requests (keeps
 * the connection alive) and guarded by a mutex, since the codec that owns
 * the client may be shared by threads. Lookups are rare (once per schema id
 * for the life of the process), so serialising them costs nothing. Every
 * request has a hard timeout (connection included) so a dead registry
 * delays the one record that needed it by at most that long. Responses are
 * read into memory up to 4 MiB (a schema is a few kB) and parsed with
 * jansson, which libavro already depends on. Only http and https are
 * allowed, redirects are not followed, and credentials travel only in the
 * Authorization header: messages print URLs without any user:password@. */
#include "registry.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ul_err.h"

#define REGISTRY_MAX_URLS 8
#define REGISTRY_MAX_RESPONSE (4u << 20)
#define REGISTRY_URL_MAX 1024

struct registry {
    char *urls[REGISTRY_MAX_URLS]; /* base URLs without a trailing '/' */
    size_t n_urls;
    char *user, *password;
    long timeout_ms;
    CURL *h;
    pthread_mutex_t lock;
};

typedef struct response {
    char *data;
    size_t len;
    int too_big;
} response;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s) {
    return (s && *s) ? strdup(s) : NULL;
}

/* The URL for messages: scheme://host:port/path with any userinfo dropped. */
static void url_display(const char *url, char *out, size_t size) {
    const char *host = strstr(url, "://");
    const char *at = host ? strchr(host + 3, '@') : NULL;
    const char *slash = host ? strchr(host + 3, '/') : NULL;
    if (at && (slash == NULL || at < slash))
        snprintf(out, size, "%.*s%s", (int)(host + 3 - url), url, at + 1);
    else
        snprintf(out, size, "%s", url);
}

static int add_url(registry *r, const char *s, size_t len, char *errstr, size_t errstr_size) {
    while (len > 0 && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '/'))
        len--;
    if (len == 0)
        return UL_OK;
    if (r->n_urls == REGISTRY_MAX_URLS || len >= REGISTRY_URL_MAX) {
        ul_set_err(errstr, errstr_size, "schema.registry.url: at most %d URLs of < %d bytes",
                   REGISTRY_MAX_URLS, REGISTRY_URL_MAX);
        return UL_ERR_ARG;
    }
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
        ul_set_err(errstr, errstr_size,
                   "schema.registry.url: '%.*s' is not an http:// or https:// URL", (int)len, s);
        return UL_ERR_ARG;
    }
    if ((r->urls[r->n_urls] = strndup(s, len)) == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    r->n_urls++;
    return UL_OK;
}

registry *registry_new(const registry_opts *opts, char *errstr, size_t errstr_size) {
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        ul_set_err(errstr, errstr_size, "libcurl: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    registry *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    const char *p = opts && opts->url ? opts->url : "";
    for (const char *comma; (comma = strchr(p, ',')) != NULL; p = comma + 1)
        if (add_url(r, p, (size_t)(comma - p), errstr, errstr_size) != UL_OK)
            goto fail;
    if (add_url(r, p, strlen(p), errstr, errstr_size) != UL_OK)
        goto fail;
    if (r->n_urls == 0) {
        ul_set_err(errstr, errstr_size, "schema.registry.url is empty");
        goto fail;
    }
    if (opts->password && *opts->password && !(opts->user && *opts->user)) {
        ul_set_err(errstr, errstr_size,
                   "schema.registry.password is set but schema.registry.user is empty");
        goto fail;
    }
    r->user = dup_or_null(opts->user);
    r->password = dup_or_null(opts->password);
    r->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
    r->h = curl_easy_init();
    if (r->h == NULL || (opts->user && *opts->user && r->user == NULL) ||
        (opts->password && *opts->password && r->password == NULL)) {
        ul_set_err(errstr, errstr_size, "out of memory creating the schema registry client");
        goto fail;
    }
    return r;
fail:
    registry_destroy(r);
    return NULL;
}

void registry_destroy(registry *r) {
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_urls; i++)
        free(r->urls[i]);
    free(r->user);
    if (r->password) {
        memset(r->password, 0, strlen(r->password));
        free(r->password);
    }
    if (r->h)
        curl_easy_cleanup(r->h);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* ---- HTTP ---------------------------------------------------------------- */

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
    response *resp = ud;
    size_t add = size * n;
    if (resp->len + add > REGISTRY_MAX_RESPONSE) {
        resp->too_big = 1;
        return 0; /* aborts the transfer */
    }
    char *d = realloc(resp->data, resp->len + add + 1);
    if (d == NULL)
        return 0;
    memcpy(d + resp->len, p, add);
    resp->len += add;
    d[resp->len] = '\0';
    resp->data = d;
    return add;
}

static void set_request(registry *r, const char *url, const char *body, struct curl_slist *hdrs,
                        response *resp) {
    CURL *h = r->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    if (r->user) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, r->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, r->password ? r->password : "");
    }
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
}

/* One request (POST when body is set) to the first base URL that answers
 * with a status below 500. On success *status and resp hold the answer and
 * `shown` the URL that gave it (for messages). */
static int http_call(registry *r, const char *path, const char *body, long *status, response *resp,
                     char *shown, size_t shown_size, char *errstr, size_t errstr_size) {
    char url[REGISTRY_URL_MAX + 512], why[CURL_ERROR_SIZE + 128] = "";
    struct curl_slist *hdrs =
        curl_slist_append(NULL, "Accept: application/vnd.schemaregistry.v1+json, application/json");
    if (body && hdrs)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/vnd.schemaregistry.v1+json");
    if (hdrs == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    int rc = REGISTRY_ERR_UNAVAILABLE;
    for (size_t i = 0; i < r->n_urls && rc == REGISTRY_ERR_UNAVAILABLE; i++) {
        snprintf(url, sizeof(url), "%s%s", r->urls[i], path);
        url_display(r->urls[i], shown, shown_size);
        free(resp->data);
        memset(resp, 0, sizeof(*resp));
        set_request(r, url, body, hdrs, resp);
        CURLcode cc = curl_easy_perform(r->h);
        *status = 0;
        curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, status);
        if (cc == CURLE_OK && *status < 500)
            rc = UL_OK;
        else if (resp->too_big)
            snprintf(why, sizeof(why), "%s: response larger than %u bytes", shown,
                     REGISTRY_MAX_RESPONSE);
        else if (cc == CURLE_OK)
            snprintf(why, sizeof(why), "%s answered HTTP %ld", shown, *status);
        else
            snprintf(why, sizeof(why), "%s unreachable: %s", shown, curl_easy_strerror(cc));
    }
    curl_slist_free_all(hdrs);
    if (rc != UL_OK)
        ul_set_err(errstr, errstr_size, "schema registry unavailable: %s (timeout %ld ms)", why,
                   r->timeout_ms);
    return rc;
}

/* The registry's own words: "message (error_code N)", or the body's start. */
static void registry_says(const response *resp, char *out, size_t size) {
    json_t *j = resp->data ? json_loadb(resp->data, resp->len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "message"));
    json_t *code = json_object_get(j, "error_code");
    if (msg && json_is_integer(code))
        snprintf(out, size, "%s (error_code %" JSON_INTEGER_FORMAT ")", msg,
                 json_integer_value(code));
    else if (msg)
        snprintf(out, size, "%s", msg);
    else
        snprintf(out, size, "%.80s", resp->data ? resp->data : "empty body");
    json_decref(j);
}

/* Statuses other than 200 and 404 are refusals; 401/403 name the options. */
static int refused(const response *resp, long status, const char *shown, const char *what,
                   char *errstr, size_t errstr_size) {
    char says[300];
    registry_says(resp, says, sizeof(says));
    if (status == 401 || status == 403)
        ul_set_err(errstr, errstr_size,
                   "the schema registry at %s refused our credentials for %s (HTTP %ld: %s): "
                   "check schema.registry.user and schema.registry.password",
                   shown, what, status, says);
    else
        ul_set_err(errstr, errstr_size, "the schema registry at %s refused %s (HTTP %ld: %s)",
                   shown, what, status, says);
    return REGISTRY_ERR_REFUSED;
}

/* ---- the two calls ------------------------------------------------------- */

/* {"schema": "...", "schemaType"?: "AVRO", "references"?: []} -> text. */
static int schema_from(const response *resp, int32_t id, const char *shown, char **schema,
                       char *errstr, size_t errstr_size) {
    json_t *j = json_loadb(resp->data ? resp->data : "", resp->len, 0, NULL);
    const char *text = json_string_value(json_object_get(j, "schema"));
    const char *type = json_string_value(json_object_get(j, "schemaType"));
    json_t *refs = json_object_get(j, "references");
    int rc = UL_OK;
    if (text == NULL) {
        ul_set_err(errstr, errstr_size,
                   "%s: the answer for schema id %" PRId32 " has no \"schema\" string", shown, id);
        rc = REGISTRY_ERR_REFUSED;
    } else if (type && strcmp(type, "AVRO") != 0) {
        ul_set_err(errstr, errstr_size, "schema id %" PRId32 " is a %s schema, not Avro", id, type);
        rc = REGISTRY_ERR_REFUSED;
    } else if (json_array_size(refs) > 0) {
        ul_set_err(errstr, errstr_size,
                   "schema id %" PRId32 " uses schema references, which unlearnd does not "
                   "resolve (register it self-contained)",
                   id);
        rc = REGISTRY_ERR_REFUSED;
    } else if ((*schema = strdup(text)) == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        rc = UL_ERR_NOMEM;
    }
    json_decref(j);
    return rc;
}

int registry_get_schema(registry *r, int32_t id, char **schema, char *errstr, size_t errstr_size) {
    char path[64], shown[REGISTRY_URL_MAX], what[64];
    response resp = {0};
    long status = 0;
    *schema = NULL;
    snprintf(path, sizeof(path), "/schemas/ids/%" PRId32, id);
    pthread_mutex_lock(&r->lock);
    int rc = http_call(r, path, NULL, &status, &resp, shown, sizeof(shown), errstr, errstr_size);
    pthread_mutex_unlock(&r->lock);
    if (rc == UL_OK && status == 200) {
        rc = schema_from(&resp, id, shown, schema, errstr, errstr_size);
    } else if (rc == UL_OK && status == 404) {
        char says[300];
        registry_says(&resp, says, sizeof(says));
        ul_set_err(errstr, errstr_size,
                   "schema id %" PRId32 " is not in the schema registry at %s (HTTP 404: %s)", id,
                   shown, says);
        rc = REGISTRY_ERR_NOT_FOUND;
    } else if (rc == UL_OK) {
        snprintf(what, sizeof(what), "schema id %" PRId32, id);
        rc = refused(&resp, status, shown, what, errstr, errstr_size);
    }
    free(resp.data);
    return rc;
}

int registry_register(registry *r, const char *subject, const char *schema, int32_t *id,
                      char *errstr, size_t errstr_size) {
    char path[600], shown[REGISTRY_URL_MAX], what[300];
    response resp = {0};
    long status = 0;
    json_t *req = json_pack("{s:s}", "schema", schema);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    char *esc = curl_easy_escape(r->h, subject, 0);
    json_decref(req);
    if (body == NULL || esc == NULL || strlen(esc) > 512) {
        free(body);
        curl_free(esc);
        ul_set_err(errstr, errstr_size, "cannot build the request registering subject '%s'",
                   subject);
        return UL_ERR_ARG;
    }
    snprintf(path, sizeof(path), "/subjects/%s/versions", esc);
    curl_free(esc);
    pthread_mutex_lock(&r->lock);
    int rc = http_call(r, path, body, &status, &resp, shown, sizeof(shown), errstr, errstr_size);
    pthread_mutex_unlock(&r->lock);
    free(body);
    json_t *j =
        rc == UL_OK && status == 200 && resp.data ? json_loadb(resp.data, resp.len, 0, NULL) : NULL;
    json_t *jid = json_object_get(j, "id");
    if (rc == UL_OK && status == 200 && json_is_integer(jid) && json_integer_value(jid) >= 0 &&
        json_integer_value(jid) <= INT32_MAX) {
        *id = (int32_t)json_integer_value(jid);
    } else if (rc == UL_OK) {
        snprintf(what, sizeof(what), "a new version of subject %s", subject);
        rc = refused(&resp, status, shown, what, errstr, errstr_size);
    }
    json_decref(j);
    free(resp.data);
    return rc;
}
