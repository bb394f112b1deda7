/* config.c: the options table and the layered loading of ul_config (see
 * config.h).
 *
 * DESIGN: `options[]` is the single description of every option; values live
 * in typed fields of ul_config reached through offsetof, so callers read
 * plain struct members while help, dump, env names and validation all come
 * from the table. Every set records its origin ("default", "file.conf:3",
 * "UNLEARND_MODEL_K", "--model.k") so --dump-config says where each value
 * came from. kafka.* keys not in the table are kept in a list in the order
 * given and checked against librdkafka when set. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "ul_err.h"

typedef enum opt_type {
    OPT_STR,   /* free text */
    OPT_TOPIC, /* a Kafka topic name */
    OPT_INT,   /* long within [min, max] */
    OPT_DOUBLE,
    OPT_ENUM, /* one of `choices` ('|'-separated), stored as text */
} opt_type;

typedef struct opt_def {
    const char *key;
    opt_type type;
    const char *def; /* default as text; NULL = computed in config_new */
    double min, max;
    const char *choices;
    size_t offset;
    const char *doc;
} opt_def;

#define F(field) offsetof(ul_config, field)
#define I32MAX 2147483647.0

static const opt_def options[] = {
    {"kafka.bootstrap.servers", OPT_STR, "", 0, 0, NULL, F(kafka_bootstrap),
     "Kafka brokers host:port,...; empty = read broker.bootstrap.file"},
    {"kafka.group.id", OPT_STR, "unlearnd", 0, 0, NULL, F(kafka_group_id),
     "consumer group of the workers (librdkafka group.id)"},
    {"broker.bootstrap.file", OPT_STR, NULL, 0, 0, NULL, F(bootstrap_file),
     "where `unlearnd broker` writes its address"},
    {"topic.ratings", OPT_TOPIC, "ratings", 0, 0, NULL, F(topic_ratings),
     "input: rating events, keyed by user id"},
    {"topic.forget_requests", OPT_TOPIC, "forget-requests", 0, 0, NULL, F(topic_forget),
     "input: forget requests, keyed by user id"},
    {"topic.factors", OPT_TOPIC, "factors", 0, 0, NULL, F(topic_factors),
     "output: changed factor rows, keyed u:<id>/i:<id> (compacted)"},
    {"topic.forget_receipts", OPT_TOPIC, "forget-receipts", 0, 0, NULL, F(topic_receipts),
     "output: one receipt per applied forget request"},
    {"topic.dead_letter", OPT_TOPIC, "dead-letter", 0, 0, NULL, F(topic_dead_letter),
     "output: undecodable or invalid input with the reason in headers"},
    {"schema.id.rating", OPT_INT, "1", 0, I32MAX, NULL, F(schema_id_rating),
     "Confluent schema id of rating records"},
    {"schema.id.forget_request", OPT_INT, "2", 0, I32MAX, NULL, F(schema_id_forget),
     "Confluent schema id of forget requests"},
    {"schema.id.factor", OPT_INT, "3", 0, I32MAX, NULL, F(schema_id_factor),
     "Confluent schema id of factor rows"},
    {"schema.id.forget_receipt", OPT_INT, "4", 0, I32MAX, NULL, F(schema_id_receipt),
     "Confluent schema id of forget receipts"},
    {"schema.writers", OPT_STR, "", 0, 0, NULL, F(schema_writers),
     "other writer schemas by id, ID=PATH.avsc,...: records with those ids are read into ours "
     "by Avro's resolution rules"},
    {"schema.registry.url", OPT_STR, "", 0, 0, NULL, F(schema_registry_url),
     "Confluent Schema Registry URL(s), comma-separated: a record's unknown schema id is fetched "
     "once (GET /schemas/ids/ID) and resolved into ours; empty = none"},
    {"schema.registry.user", OPT_STR, "", 0, 0, NULL, F(schema_registry_user),
     "Schema Registry basic-auth user; empty = no auth"},
    {"schema.registry.password", OPT_STR, "", 0, 0, NULL, F(schema_registry_password),
     "Schema Registry basic-auth password"},
    {"schema.registry.timeout.ms", OPT_INT, "5000", 100, 600000, NULL,
     F(schema_registry_timeout_ms), "Schema Registry request timeout"},
    {"schema.registry.register", OPT_INT, "0", 0, 1, NULL, F(schema_registry_register),
     "1 = at start, register the output schemas under <topic>-value and write with the ids "
     "the registry gives"},
    {"redis.host", OPT_STR, "", 0, 0, NULL, F(redis_host),
     "Redis host; empty = start a local redis-server on a free port"},
    {"redis.port", OPT_INT, "6379", 1, 65535, NULL, F(redis_port), "Redis port"},
    {"redis.shards", OPT_STR, "", 0, 0, NULL, F(redis_shards),
     "Redis shards host:port,host:port,...; partition P on shard P mod n, item I on I mod n; "
     "replaces redis.host/port; empty = one shard (redis.host)"},
    {"redis.user", OPT_STR, "", 0, 0, NULL, F(redis_user),
     "Redis ACL user for AUTH user password (Redis 6+); empty = the default user"},
    {"redis.password", OPT_STR, "", 0, 0, NULL, F(redis_password),
     "Redis AUTH password, used on every shard; empty = none"},
    {"redis.db", OPT_INT, "0", 0, 1000000, NULL, F(redis_db), "Redis database number"},
    {"redis.timeout.ms", OPT_INT, "2000", 1, 600000, NULL, F(redis_timeout_ms),
     "Redis connect and command timeout"},
    {"redis.server.path", OPT_STR, "redis-server", 0, 0, NULL, F(redis_server_path),
     "redis-server binary used for the local Redis"},
    {"method", OPT_ENUM, "cff", 0, 0, "cff|foldin", F(method), "unlearning method"},
    {"cycle.interval.ms", OPT_INT, "200", 1, 3600000, NULL, F(cycle_interval_ms),
     "how often buffered forget requests are applied"},
    {"cycle.max.batch", OPT_INT, "1000", 1, 1000000, NULL, F(cycle_max_batch),
     "most forget requests applied in one cycle"},
    {"checkpoint.interval.ms", OPT_INT, "1000", 1, 3600000, NULL, F(checkpoint_interval_ms),
     "how often partition state and offsets are written to Redis"},
    {"refresh.interval.ms", OPT_INT, "200", 10, 3600000, NULL, F(refresh_interval_ms),
     "how often the item deltas of partitions owned by other workers are re-read"},
    {"publish.interval.ms", OPT_INT, "2000", 1, 3600000, NULL, F(publish_interval_ms),
     "how often rows changed by ratings are published to topic.factors (each row once)"},
    {"retention.per.user", OPT_INT, "1000", 1, 1000000, NULL, F(retention_per_user),
     "recent ratings kept per user for forget requests"},
    {"model.k", OPT_INT, "64", 1, 1024, NULL, F(model_k), "latent dimension K of the live model"},
    {"model.learning.rate", OPT_DOUBLE, "0.01", 1e-9, 1, NULL, F(learning_rate),
     "SGD learning rate of online updates"},
    {"model.reg", OPT_DOUBLE, "0.05", 0, 10, NULL, F(reg), "L2 regularisation of online updates"},
    {"rating.min", OPT_DOUBLE, "1", -1e6, 1e6, NULL, F(rating_min), "lowest valid rating"},
    {"rating.max", OPT_DOUBLE, "5", -1e6, 1e6, NULL, F(rating_max), "highest valid rating"},
    {"forget.max.items", OPT_INT, "10000", 1, 10000000, NULL, F(forget_max_items),
     "longest item list accepted in one forget request"},
    {"log.level", OPT_ENUM, "info", 0, 0, "error|warn|info|debug", F(log_level),
     "lowest level logged"},
    {"metrics.bind", OPT_STR, "0.0.0.0", 0, 0, NULL, F(metrics_bind),
     "address of the HTTP server for /metrics, /livez, /readyz"},
    {"metrics.port", OPT_INT, "0", 0, 65535, NULL, F(metrics_port),
     "port of that HTTP server (deploy/ uses 9464); 0 = no server"},
    {"metrics.live.timeout.ms", OPT_INT, "30000", 1000, 3600000, NULL, F(metrics_live_timeout_ms),
     "/livez fails when the worker loop was silent this long"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

struct config_kv {
    char *key; /* without the kafka. prefix */
    char *value;
    char *origin;
    struct config_kv *next;
};

/* ---- small helpers ------------------------------------------------------ */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static const opt_def *find_option(const char *key) {
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].key, key) == 0)
            return &options[i];
    return NULL;
}

static char **str_field(ul_config *cfg, const opt_def *o) {
    return (char **)((char *)cfg + o->offset);
}

static long *long_field(ul_config *cfg, const opt_def *o) {
    return (long *)((char *)cfg + o->offset);
}

static double *double_field(ul_config *cfg, const opt_def *o) {
    return (double *)((char *)cfg + o->offset);
}

int config_key_is_secret(const char *key) {
    char low[256];
    size_t i = 0;
    for (; key[i] && i < sizeof(low) - 1; i++)
        low[i] = (char)tolower((unsigned char)key[i]);
    low[i] = '\0';
    return strstr(low, "password") || strstr(low, "secret") || strstr(low, "sasl");
}

int config_has_redis(const ul_config *cfg) {
    return (cfg->redis_host && *cfg->redis_host) || (cfg->redis_shards && *cfg->redis_shards);
}

/* UNLEARND_ + upper(key) with '.' and '-' as '_'. */
static void env_name(const char *key, char *buf, size_t size) {
    int n = snprintf(buf, size, "UNLEARND_");
    size_t j = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; key[i] && j + 1 < size; i++) {
        char ch = key[i];
        buf[j++] = (ch == '.' || ch == '-') ? '_' : (char)toupper((unsigned char)ch);
    }
    buf[j] = '\0';
}

char *config_default_bootstrap_file(char *buf, size_t size) {
    const char *dir = getenv("XDG_RUNTIME_DIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    snprintf(buf, size, "%s/unlearnd-broker.addr", dir);
    return buf;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void free_kv(config_kv *kv) {
    while (kv) {
        config_kv *next = kv->next;
        free(kv->key);
        free(kv->value);
        free(kv->origin);
        free(kv);
        kv = next;
    }
}

void config_destroy(ul_config *cfg) {
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_def *o = &options[i];
        if (o->type == OPT_STR || o->type == OPT_TOPIC || o->type == OPT_ENUM)
            free(*str_field(cfg, o));
        if (cfg->origins)
            free(cfg->origins[i]);
    }
    free(cfg->origins);
    free_kv(cfg->kafka_extra);
    free(cfg);
}

ul_config *config_new(void) {
    char err[UL_ERRSTR_SIZE];
    char path[512];
    ul_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    cfg->origins = calloc(N_OPTIONS, sizeof(char *));
    if (cfg->origins == NULL)
        goto fail;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *def = options[i].def;
        if (def == NULL)
            def = config_default_bootstrap_file(path, sizeof(path));
        if (config_set(cfg, options[i].key, def, "default", err, sizeof(err)) != UL_OK)
            goto fail; /* only on allocation failure: the defaults are valid */
    }
    return cfg;
fail:
    config_destroy(cfg);
    return NULL;
}

/* ---- setting values ----------------------------------------------------- */

static int parse_long(const char *s, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    const char *p = choices;
    while (n > 0 && p && *p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

static int topic_ok(const char *v) {
    size_t n = strlen(v);
    if (n == 0 || n > 249 || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && v[i] != '.' && v[i] != '_' && v[i] != '-')
            return 0;
    return 1;
}

/* Parse and range-check `value` for o into the struct. */
static int set_typed(ul_config *cfg, const opt_def *o, const char *value, const char *where,
                     char *errstr, size_t errstr_size) {
    long l;
    double d;
    switch (o->type) {
    case OPT_INT:
        if (parse_long(value, &l) != 0) {
            ul_set_err(errstr, errstr_size, "%s%s: '%s' is not a whole number", where, o->key,
                       value);
            return UL_ERR_ARG;
        }
        if ((double)l < o->min || (double)l > o->max) {
            ul_set_err(errstr, errstr_size, "%s%s: %ld is outside %.0f..%.0f", where, o->key, l,
                       o->min, o->max);
            return UL_ERR_ARG;
        }
        *long_field(cfg, o) = l;
        return UL_OK;
    case OPT_DOUBLE:
        if (parse_double(value, &d) != 0) {
            ul_set_err(errstr, errstr_size, "%s%s: '%s' is not a number", where, o->key, value);
            return UL_ERR_ARG;
        }
        if (d < o->min || d > o->max) {
            ul_set_err(errstr, errstr_size, "%s%s: %g is outside %g..%g", where, o->key, d, o->min,
                       o->max);
            return UL_ERR_ARG;
        }
        *double_field(cfg, o) = d;
        return UL_OK;
    case OPT_ENUM:
        if (!choice_ok(o->choices, value)) {
            ul_set_err(errstr, errstr_size, "%s%s: '%s' is not one of %s", where, o->key, value,
                       o->choices);
            return UL_ERR_ARG;
        }
        break;
    case OPT_TOPIC:
        if (!topic_ok(value)) {
            ul_set_err(errstr, errstr_size,
                       "%s%s: '%s' is not a valid topic name (1..249 of [a-zA-Z0-9._-])", where,
                       o->key, value);
            return UL_ERR_ARG;
        }
        break;
    case OPT_STR:
        break;
    }
    char *copy = dup_str(value);
    if (copy == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    free(*str_field(cfg, o));
    *str_field(cfg, o) = copy;
    return UL_OK;
}

static int kafka_check(const char *rdkey, const char *value, const char *where, char *errstr,
                       size_t errstr_size) {
    char kerr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, rdkey, value, kerr, sizeof(kerr));
    rd_kafka_conf_destroy(conf);
    if (res != RD_KAFKA_CONF_OK) {
        ul_set_err(errstr, errstr_size, "%skafka.%s: %s", where, rdkey, kerr);
        return UL_ERR_ARG;
    }
    return UL_OK;
}

static int set_kafka_extra(ul_config *cfg, const char *rdkey, const char *value, const char *origin,
                           const char *where, char *errstr, size_t errstr_size) {
    int rc = kafka_check(rdkey, value, where, errstr, errstr_size);
    if (rc)
        return rc;
    config_kv **pp = &cfg->kafka_extra;
    while (*pp && strcmp((*pp)->key, rdkey) != 0)
        pp = &(*pp)->next;
    config_kv *kv = *pp;
    if (kv == NULL) {
        kv = calloc(1, sizeof(*kv));
        if (kv == NULL || (kv->key = dup_str(rdkey)) == NULL)
            goto nomem;
        *pp = kv;
    }
    char *v = dup_str(value), *o = dup_str(origin ? origin : "api");
    if (v == NULL || o == NULL) {
        free(v);
        free(o);
        goto nomem;
    }
    free(kv->value);
    free(kv->origin);
    kv->value = v;
    kv->origin = o;
    return UL_OK;
nomem:
    if (kv && *pp != kv) {
        free(kv->key);
        free(kv);
    }
    ul_set_err(errstr, errstr_size, "out of memory");
    return UL_ERR_NOMEM;
}

int config_set(ul_config *cfg, const char *key, const char *value, const char *origin, char *errstr,
               size_t errstr_size) {
    char where[300] = "";
    if (origin && strcmp(origin, "default") != 0)
        snprintf(where, sizeof(where), "%s: ", origin);
    if (key == NULL || value == NULL) {
        ul_set_err(errstr, errstr_size, "%smissing key or value", where);
        return UL_ERR_ARG;
    }
    const opt_def *o = find_option(key);
    if (o == NULL && strncmp(key, "kafka.", 6) == 0 && key[6] != '\0')
        return set_kafka_extra(cfg, key + 6, value, origin, where, errstr, errstr_size);
    if (o == NULL) {
        ul_set_err(errstr, errstr_size, "%sunknown option '%s' (see --help for the list)", where,
                   key);
        return UL_ERR_ARG;
    }
    if (strncmp(key, "kafka.", 6) == 0 && *value != '\0') {
        int rc = kafka_check(key + 6, value, where, errstr, errstr_size);
        if (rc)
            return rc;
    }
    int rc = set_typed(cfg, o, value, where, errstr, errstr_size);
    if (rc)
        return rc;
    size_t idx = (size_t)(o - options);
    char *org = dup_str(origin ? origin : "api");
    if (org == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    free(cfg->origins[idx]);
    cfg->origins[idx] = org;
    return UL_OK;
}

/* ---- sources ------------------------------------------------------------ */

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_line(ul_config *cfg, char *line, const char *origin, char *errstr,
                     size_t errstr_size) {
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return UL_OK;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        ul_set_err(errstr, errstr_size, "%s: expected key=value, got '%.60s'", origin, s);
        return UL_ERR_PARSE;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    if (*key == '\0') {
        ul_set_err(errstr, errstr_size, "%s: missing key before '='", origin);
        return UL_ERR_PARSE;
    }
    return config_set(cfg, key, value, origin, errstr, errstr_size);
}

int config_load_file(ul_config *cfg, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        ul_set_err(errstr, errstr_size, "%s: cannot open config file: %s", path, strerror(errno));
        return UL_ERR_IO;
    }
    char line[4096], origin[600];
    int rc = UL_OK;
    for (long lineno = 1; rc == UL_OK && fgets(line, sizeof(line), f); lineno++) {
        snprintf(origin, sizeof(origin), "%s:%ld", path, lineno);
        size_t n = strlen(line);
        if (n == sizeof(line) - 1 && line[n - 1] != '\n' && !feof(f)) {
            ul_set_err(errstr, errstr_size, "%s: line longer than %zu bytes", origin,
                       sizeof(line) - 2);
            rc = UL_ERR_PARSE;
            break;
        }
        rc = load_line(cfg, line, origin, errstr, errstr_size);
    }
    if (rc == UL_OK && ferror(f)) {
        ul_set_err(errstr, errstr_size, "%s: read error: %s", path, strerror(errno));
        rc = UL_ERR_IO;
    }
    fclose(f);
    return rc;
}

/* UNLEARND_KAFKA_SASL_MECHANISMS -> kafka.sasl.mechanisms */
static void kafka_key_from_env(const char *name, size_t len, char *buf, size_t size) {
    size_t j = (size_t)snprintf(buf, size, "kafka.");
    for (size_t i = strlen("UNLEARND_KAFKA_"); i < len && j + 1 < size; i++)
        buf[j++] = name[i] == '_' ? '.' : (char)tolower((unsigned char)name[i]);
    buf[j] = '\0';
}

static int load_env_var(ul_config *cfg, const char *var, char *errstr, size_t errstr_size) {
    char env[300], key[300];
    const char *eq = strchr(var, '=');
    if (eq == NULL || strncmp(var, "UNLEARND_", 9) != 0)
        return UL_OK;
    size_t len = (size_t)(eq - var);
    if (len >= sizeof(env))
        return UL_OK;
    memcpy(env, var, len);
    env[len] = '\0';
    for (size_t i = 0; i < N_OPTIONS; i++) {
        env_name(options[i].key, key, sizeof(key));
        if (strcmp(key, env) == 0)
            return config_set(cfg, options[i].key, eq + 1, env, errstr, errstr_size);
    }
    if (strncmp(env, "UNLEARND_KAFKA_", 15) != 0 || len == 15)
        return UL_OK;
    kafka_key_from_env(env, len, key, sizeof(key));
    return config_set(cfg, key, eq + 1, env, errstr, errstr_size);
}

int config_load_env(ul_config *cfg, char *const *envp, char *errstr, size_t errstr_size) {
    for (size_t i = 0; envp && envp[i]; i++) {
        int rc = load_env_var(cfg, envp[i], errstr, errstr_size);
        if (rc)
            return rc;
    }
    return UL_OK;
}

void config_cli_free(config_cli *cli) {
    if (cli == NULL)
        return;
    free(cli->rest);
    cli->rest = NULL;
    cli->n_rest = 0;
}

static const char *env_lookup(char *const *envp, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
            return envp[i] + n + 1;
    return NULL;
}

static int is_config_flag(const char *name, size_t len) {
    char key[300];
    if (len >= sizeof(key))
        return 0;
    memcpy(key, name, len);
    key[len] = '\0';
    return find_option(key) != NULL || (strncmp(key, "kafka.", 6) == 0 && len > 6);
}

/* First pass: --config, --help, --dump-config, and the non-config arguments. */
static int scan_args(int argc, char **argv, config_cli *cli, char *errstr, size_t errstr_size) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *name = a + 2, *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli->help = 1;
        } else if (strcmp(a, "--dump-config") == 0) {
            cli->dump = 1;
        } else if (strncmp(a, "--config", 8) == 0 && (a[8] == '\0' || a[8] == '=')) {
            if (a[8] == '=') {
                cli->config_path = a + 9;
            } else if (i + 1 < argc) {
                cli->config_path = argv[++i];
            } else {
                ul_set_err(errstr, errstr_size, "--config needs a file path");
                return UL_ERR_ARG;
            }
        } else if (strncmp(a, "--", 2) == 0 && !is_config_flag(name, len) &&
                   memchr(name, '.', len) != NULL) {
            /* commands' own flags have no dots: this is a mistyped option */
            ul_set_err(errstr, errstr_size, "--%.*s: unknown option '%.*s' (see --help)", (int)len,
                       name, (int)len, name);
            return UL_ERR_ARG;
        } else if (strncmp(a, "--", 2) == 0 && is_config_flag(name, len)) {
            if (!eq && i + 1 >= argc) {
                ul_set_err(errstr, errstr_size, "--%s needs a value", name);
                return UL_ERR_ARG;
            }
            i += eq ? 0 : 1;
        } else {
            cli->rest[cli->n_rest++] = argv[i];
        }
    }
    return UL_OK;
}

/* Second pass: apply --key value / --key=value. */
static int apply_args(ul_config *cfg, int argc, char **argv, char *errstr, size_t errstr_size) {
    char key[300], origin[310];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--config", 8) == 0 && a[8] == '\0') {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            continue;
        const char *name = a + 2, *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (!is_config_flag(name, len))
            continue;
        memcpy(key, name, len);
        key[len] = '\0';
        snprintf(origin, sizeof(origin), "--%s", key);
        const char *value = eq ? eq + 1 : argv[++i];
        int rc = config_set(cfg, key, value, origin, errstr, errstr_size);
        if (rc)
            return rc;
    }
    return UL_OK;
}

int config_load(ul_config *cfg, int argc, char **argv, char *const *envp, config_cli *cli,
                char *errstr, size_t errstr_size) {
    memset(cli, 0, sizeof(*cli));
    cli->rest = calloc((size_t)(argc > 0 ? argc : 1), sizeof(char *));
    if (cli->rest == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    int rc = scan_args(argc, argv, cli, errstr, errstr_size);
    if (rc)
        return rc;
    if (cli->config_path == NULL)
        cli->config_path = env_lookup(envp, "UNLEARND_CONFIG");
    if (cli->config_path && *cli->config_path) {
        rc = config_load_file(cfg, cli->config_path, errstr, errstr_size);
        if (rc)
            return rc;
    }
    rc = config_load_env(cfg, envp, errstr, errstr_size);
    if (rc)
        return rc;
    return apply_args(cfg, argc, argv, errstr, errstr_size);
}

/* ---- validation and Kafka ------------------------------------------------ */

static int read_bootstrap_file(ul_config *cfg, char *errstr, size_t errstr_size) {
    FILE *f = fopen(cfg->bootstrap_file, "r");
    if (f == NULL) {
        ul_set_err(errstr, errstr_size,
                   "no Kafka to talk to: kafka.bootstrap.servers is empty and the local broker's "
                   "address file %s is missing (start `unlearnd broker`, or set "
                   "kafka.bootstrap.servers / UNLEARND_KAFKA_BOOTSTRAP_SERVERS)",
                   cfg->bootstrap_file);
        return UL_ERR_ARG;
    }
    char line[1024] = "", origin[600];
    char *ok = fgets(line, sizeof(line), f);
    fclose(f);
    char *addr = trim(line);
    if (ok == NULL || *addr == '\0') {
        ul_set_err(errstr, errstr_size, "%s: empty broker address file", cfg->bootstrap_file);
        return UL_ERR_ARG;
    }
    snprintf(origin, sizeof(origin), "%s (broker.bootstrap.file)", cfg->bootstrap_file);
    return config_set(cfg, "kafka.bootstrap.servers", addr, origin, errstr, errstr_size);
}

int config_validate(ul_config *cfg, int need_kafka, char *errstr, size_t errstr_size) {
    log_level lvl;
    if (!(cfg->rating_min < cfg->rating_max)) {
        ul_set_err(errstr, errstr_size, "rating.min (%g) must be below rating.max (%g)",
                   cfg->rating_min, cfg->rating_max);
        return UL_ERR_ARG;
    }
    if (log_parse_level(cfg->log_level, &lvl) != UL_OK) {
        ul_set_err(errstr, errstr_size, "log.level: unknown level '%s'", cfg->log_level);
        return UL_ERR_ARG;
    }
    if (store_shards_check(cfg->redis_shards, NULL, errstr, errstr_size) != UL_OK)
        return UL_ERR_ARG;
    if (*cfg->redis_user && !*cfg->redis_password) {
        ul_set_err(errstr, errstr_size, "redis.user is set but redis.password is empty");
        return UL_ERR_ARG;
    }
    if (*cfg->kafka_group_id == '\0') {
        ul_set_err(errstr, errstr_size, "kafka.group.id must not be empty");
        return UL_ERR_ARG;
    }
    if (need_kafka && *cfg->kafka_bootstrap == '\0') {
        int rc = read_bootstrap_file(cfg, errstr, errstr_size);
        if (rc)
            return rc;
    }
    rd_kafka_conf_t *conf = config_kafka_conf(cfg, errstr, errstr_size);
    if (conf == NULL)
        return UL_ERR_ARG;
    rd_kafka_conf_destroy(conf);
    return UL_OK;
}

rd_kafka_conf_t *config_kafka_conf(const ul_config *cfg, char *errstr, size_t errstr_size) {
    return config_kafka_conf_only(cfg, NULL, NULL, errstr, errstr_size);
}

rd_kafka_conf_t *config_kafka_conf_only(const ul_config *cfg,
                                        int (*keep)(const char *key, void *opaque), void *opaque,
                                        char *errstr, size_t errstr_size) {
    char kerr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (*cfg->kafka_bootstrap && rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_bootstrap,
                                                   kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        ul_set_err(errstr, errstr_size, "kafka.bootstrap.servers: %s", kerr);
        goto fail;
    }
    for (const config_kv *kv = cfg->kafka_extra; kv; kv = kv->next) {
        if (keep && !keep(kv->key, opaque))
            continue;
        if (rd_kafka_conf_set(conf, kv->key, kv->value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            ul_set_err(errstr, errstr_size, "%s: kafka.%s: %s", kv->origin, kv->key, kerr);
            goto fail;
        }
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- reporting ------------------------------------------------------------ */

static void option_text(const ul_config *cfg, const opt_def *o, char *buf, size_t size) {
    ul_config *c = (ul_config *)cfg; /* the field accessors do not write */
    switch (o->type) {
    case OPT_INT:
        snprintf(buf, size, "%ld", *long_field(c, o));
        break;
    case OPT_DOUBLE:
        snprintf(buf, size, "%.15g", *double_field(c, o));
        break;
    default:
        snprintf(buf, size, "%s", *str_field(c, o));
        break;
    }
}

static const char *mask(const char *key, const char *value, int reveal) {
    if (reveal || !config_key_is_secret(key) || *value == '\0')
        return value;
    return "********";
}

int config_value(const ul_config *cfg, const char *key, int reveal, char *buf, size_t size) {
    char text[1024];
    const opt_def *o = find_option(key);
    if (o) {
        option_text(cfg, o, text, sizeof(text));
        snprintf(buf, size, "%s", mask(key, text, reveal));
        return UL_OK;
    }
    if (strncmp(key, "kafka.", 6) == 0) {
        for (const config_kv *kv = cfg->kafka_extra; kv; kv = kv->next) {
            if (strcmp(kv->key, key + 6) == 0) {
                snprintf(buf, size, "%s", mask(key, kv->value, reveal));
                return UL_OK;
            }
        }
    }
    return UL_ERR_ARG;
}

static const char *type_text(const opt_def *o, char *buf, size_t size) {
    switch (o->type) {
    case OPT_INT:
        snprintf(buf, size, "integer %.0f..%.0f", o->min, o->max);
        break;
    case OPT_DOUBLE:
        snprintf(buf, size, "number %g..%g", o->min, o->max);
        break;
    case OPT_ENUM:
        snprintf(buf, size, "%s", o->choices);
        break;
    case OPT_TOPIC:
        snprintf(buf, size, "topic");
        break;
    case OPT_STR:
        snprintf(buf, size, "text");
        break;
    }
    return buf;
}

void config_print_help(FILE *out) {
    char type[64], def[512];
    fprintf(out, "Configuration (--KEY VALUE, --KEY=VALUE, env UNLEARND_<KEY>, or KEY=VALUE\n"
                 "lines in --config FILE):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_def *o = &options[i];
        if (o->def)
            snprintf(def, sizeof(def), "%s", *o->def ? o->def : "(empty)");
        else
            config_default_bootstrap_file(def, sizeof(def));
        fprintf(out, "  --%-26s %s\n  %-28s [%s; default %s]\n", o->key, o->doc, "",
                type_text(o, type, sizeof(type)), def);
    }
    fprintf(out, "  --kafka.<property>           any other librdkafka property, passed through\n"
                 "  --config FILE                read KEY=VALUE lines (# comments) from FILE\n"
                 "                               (env UNLEARND_CONFIG)\n"
                 "  --dump-config                print the effective configuration and exit\n"
                 "Precedence: defaults < --config file < environment (UNLEARND_<KEY>, dots as\n"
                 "underscores, upper case, e.g. UNLEARND_MODEL_K) < command-line flags.\n"
                 "Values of keys containing password/secret/sasl are masked in dumps and logs.\n");
}

void config_dump(const ul_config *cfg, FILE *out) {
    char text[1024];
    fprintf(out, "# unlearnd effective configuration (secrets masked)\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_def *o = &options[i];
        option_text(cfg, o, text, sizeof(text));
        fprintf(out, "# %s (from %s)\n%s=%s\n", o->doc, cfg->origins[i] ? cfg->origins[i] : "?",
                o->key, mask(o->key, text, 0));
    }
    for (const config_kv *kv = cfg->kafka_extra; kv; kv = kv->next) {
        char key[300];
        snprintf(key, sizeof(key), "kafka.%s", kv->key);
        fprintf(out, "# librdkafka property (from %s)\nkafka.%s=%s\n", kv->origin, kv->key,
                mask(key, kv->value, 0));
    }
}
