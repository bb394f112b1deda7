/* config.c: the layered loading of ul_config (see config.h): parsing and
 * range-checking values, defaults, --config file, environment, command line,
 * origins, validation, kafka.* passthrough, --help and --dump-config. The
 * options themselves are in config_options.c.
 *
 * DESIGN: values live in typed fields of ul_config reached through the
 * table's offsetof, so callers read plain struct members while help, dump,
 * env names and validation all come from the table. Every set records its
 * origin ("default", "file.conf:3", "UNLEARND_MODEL_K", "--model.k") so
 * --dump-config says where each value came from. kafka.* keys not in the
 * table are kept in a list in the order given and checked against librdkafka
 * when set. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"
#include "log.h"
#include "rcluster.h"
#include "redact.h"
#include "ul_err.h"
#include "unlearn.h"

/* ---- small helpers ------------------------------------------------------ */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static const opt_def *find_option(const char *key) {
    for (size_t i = 0; i < config_n_options; i++)
        if (strcmp(config_options[i].key, key) == 0)
            return &config_options[i];
    return NULL;
}

/* The value of kafka.<rdkey> when set, else NULL. */
static const char *kafka_extra_value(const ul_config *cfg, const char *rdkey) {
    for (const config_kv *kv = cfg->kafka_extra; kv; kv = kv->next)
        if (strcmp(kv->key, rdkey) == 0)
            return kv->value;
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

static int is_text(const opt_def *o) {
    return o->type != OPT_INT && o->type != OPT_DOUBLE;
}

/* The choices of an OPT_ENUM or OPT_METHOD option, '|'-separated. */
static const char *choices_text(const opt_def *o, char *buf, size_t size) {
    return o->type == OPT_METHOD ? unlearn_method_list(1, "|", buf, size) : o->choices;
}

/* Keys whose values are secrets: masked in --dump-config and config_value(),
 * and handed to the logger by config_log_secrets so no log line prints them.
 * The librdkafka rows are the properties its src/rdkafka_conf.c flags
 * _RK_SENSITIVE in 2.0.2 (ssl.key.location, ssl.key.password, ssl.key.pem,
 * ssl_key, ssl.ca.pem, ssl.keystore.password, sasl.username, sasl.password,
 * sasl.oauthbearer.config) and in later releases (sasl.oauthbearer.client.secret,
 * sasl.oauthbearer.assertion.private.key.*); the name rules also cover our own
 * keys and properties yet to come. Matching ignores case. */
typedef enum secret_match { MATCH_EQUAL, MATCH_PREFIX, MATCH_SUFFIX, MATCH_CONTAINS } secret_match;

static const struct secret_rule {
    secret_match how;
    const char *pattern;
} secret_rules[] = {
    {MATCH_CONTAINS, "password"},   /* redis.password, kafka.sasl/ssl.*.password */
    {MATCH_CONTAINS, "passphrase"}, /* ...assertion.private.key.passphrase */
    {MATCH_CONTAINS, "secret"},     /* kafka.sasl.oauthbearer.client.secret */
    {MATCH_SUFFIX, ".pem"},         /* kafka.ssl.key.pem, kafka.ssl.ca.pem, ... */
    {MATCH_SUFFIX, ".key"},
    {MATCH_PREFIX, "kafka.ssl.key."}, /* .location, .password, .pem */
    {MATCH_EQUAL, "kafka.ssl_key"},
    {MATCH_PREFIX, "kafka.ssl.keystore."},
    {MATCH_EQUAL, "kafka.sasl.username"}, /* with SASL/PLAIN often an API key */
    {MATCH_EQUAL, "kafka.sasl.oauthbearer.config"},
    {MATCH_PREFIX, "kafka.sasl.oauthbearer.assertion."},
};

static int ci_equal_n(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int rule_matches(const struct secret_rule *r, const char *key) {
    size_t n = strlen(key), m = strlen(r->pattern);
    if (m > n)
        return 0;
    switch (r->how) {
    case MATCH_EQUAL:
        return n == m && ci_equal_n(key, r->pattern, m);
    case MATCH_PREFIX:
        return ci_equal_n(key, r->pattern, m);
    case MATCH_SUFFIX:
        return ci_equal_n(key + n - m, r->pattern, m);
    case MATCH_CONTAINS:
        for (size_t i = 0; i + m <= n; i++)
            if (ci_equal_n(key + i, r->pattern, m))
                return 1;
        return 0;
    }
    return 0;
}

int config_key_is_secret(const char *key) {
    for (size_t i = 0; key && i < sizeof(secret_rules) / sizeof(secret_rules[0]); i++)
        if (rule_matches(&secret_rules[i], key))
            return 1;
    return 0;
}

int config_has_redis(const ul_config *cfg) {
    return (cfg->redis_host && *cfg->redis_host) || (cfg->redis_cluster && *cfg->redis_cluster);
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

/* An option's default as text: the table's, or computed (the method from
 * core's table, the broker's address file). */
static const char *default_text(const opt_def *o, char *buf, size_t size) {
    if (o->def)
        return o->def;
    if (o->type == OPT_METHOD)
        return unlearn_method_default();
    return config_default_bootstrap_file(buf, size);
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
    for (size_t i = 0; i < config_n_options; i++) {
        const opt_def *o = &config_options[i];
        if (is_text(o))
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
    cfg->origins = calloc(config_n_options, sizeof(char *));
    if (cfg->origins == NULL)
        goto fail;
    for (size_t i = 0; i < config_n_options; i++) {
        const char *def = default_text(&config_options[i], path, sizeof(path));
        if (config_set(cfg, config_options[i].key, def, "default", err, sizeof(err)) != UL_OK)
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
    char choices[256];
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
    case OPT_METHOD:
        if (!choice_ok(choices_text(o, choices, sizeof(choices)), value)) {
            ul_set_err(errstr, errstr_size, "%s%s: '%s' is not one of %s", where, o->key, value,
                       choices_text(o, choices, sizeof(choices)));
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
    char kerr[512], shown[512], key[300];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, rdkey, value, kerr, sizeof(kerr));
    rd_kafka_conf_destroy(conf);
    if (res != RD_KAFKA_CONF_OK) {
        /* librdkafka quotes invalid values: never a secret one */
        snprintf(key, sizeof(key), "kafka.%s", rdkey);
        const char *secret = config_key_is_secret(key) ? value : NULL;
        redact_text(kerr, &secret, 1, shown, sizeof(shown));
        ul_set_err(errstr, errstr_size, "%skafka.%s: %s", where, rdkey, shown);
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

/* 1 when `key` looks like an option name: [A-Za-z0-9._-] with a dot. */
static int key_shape_ok(const char *key) {
    for (const char *p = key; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return 0;
    return strchr(key, '.') != NULL;
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
    if (o == NULL && !key_shape_ok(key)) {
        /* not shaped like any key: perhaps a secret typed on the wrong side */
        ul_set_err(errstr, errstr_size,
                   "%sunknown option (not shown: keys are words with dots, such as redis.host; "
                   "see --help for the list)",
                   where);
        return UL_ERR_ARG;
    }
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
    size_t idx = (size_t)(o - config_options);
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
        /* never quote the line: `redis.password: hunter2` holds a secret */
        ul_set_err(errstr, errstr_size,
                   "%s: expected key=value (the line has no '='; it is not shown since it may "
                   "hold a secret)",
                   origin);
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
    for (size_t i = 0; i < config_n_options; i++) {
        env_name(config_options[i].key, key, sizeof(key));
        if (strcmp(key, env) == 0)
            return config_set(cfg, config_options[i].key, eq + 1, env, errstr, errstr_size);
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

/* Endpoints carry no credentials: librdkafka and the store would take
 * `user:pw@host` for a host name (and quote it in their errors). The value
 * is not shown. */
static int check_no_credentials(const ul_config *cfg, char *errstr, size_t errstr_size) {
    static const struct {
        const char *key, *instead;
    } endpoints[] = {
        {"kafka.bootstrap.servers", "kafka.sasl.username and kafka.sasl.password"},
        {"kafka.metadata.broker.list", "kafka.sasl.username and kafka.sasl.password"},
        {"redis.host", "redis.user and redis.password"},
        {"redis.cluster", "redis.user and redis.password"},
    };
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        const char *key = endpoints[i].key;
        const opt_def *o = find_option(key);
        const char *value = o ? *str_field((ul_config *)cfg, o) : kafka_extra_value(cfg, key + 6);
        if (value && redact_has_credentials(value)) {
            ul_set_err(errstr, errstr_size,
                       "%s holds credentials (a user:password before an '@'; the value is not "
                       "shown): give host:port only, and the credentials in %s",
                       key, endpoints[i].instead);
            return UL_ERR_ARG;
        }
    }
    return UL_OK;
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
    if (check_no_credentials(cfg, errstr, errstr_size) != UL_OK)
        return UL_ERR_ARG;
    if (*cfg->redis_cluster &&
        rcluster_seeds_check(cfg->redis_cluster, NULL, errstr, errstr_size) != UL_OK)
        return UL_ERR_ARG;
    if (*cfg->redis_cluster && cfg->redis_db > 0) {
        ul_set_err(errstr, errstr_size,
                   "redis.db is %ld but a Redis Cluster has only database 0 (redis.cluster)",
                   cfg->redis_db);
        return UL_ERR_ARG;
    }
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

/* The value of option o as text: a pointer to the string field, or the
 * number formatted into num. */
static const char *option_text(const ul_config *cfg, const opt_def *o, char *num, size_t size) {
    ul_config *c = (ul_config *)cfg; /* the field accessors do not write */
    switch (o->type) {
    case OPT_INT:
        snprintf(num, size, "%ld", *long_field(c, o));
        return num;
    case OPT_DOUBLE:
        snprintf(num, size, "%.15g", *double_field(c, o));
        return num;
    default:
        return *str_field(c, o);
    }
}

/* `value` of `key` as it may be shown: REDACT_MASK for a secret key's
 * non-empty value, else the value with embedded credentials masked (or
 * unchanged when `reveal`). Truncated to `size` only after masking. */
static void shown_value(const char *key, const char *value, int reveal, char *buf, size_t size) {
    if (reveal)
        snprintf(buf, size, "%s", value);
    else if (config_key_is_secret(key) && *value != '\0')
        snprintf(buf, size, "%s", REDACT_MASK);
    else
        redact_text(value, NULL, 0, buf, size);
}

int config_is_default(const ul_config *cfg, const char *key) {
    const opt_def *o = find_option(key);
    if (o == NULL)
        return 0;
    const char *org = cfg->origins[o - config_options];
    return org == NULL || strcmp(org, "default") == 0;
}

const char *config_str(const ul_config *cfg, const char *key) {
    const opt_def *o = find_option(key);
    return o && is_text(o) ? *str_field((ul_config *)cfg, o) : NULL;
}

int config_topics(const ul_config *cfg, const char **names, int max) {
    int n = 0;
    for (size_t i = 0; i < config_n_options && n < max; i++)
        if (config_options[i].type == OPT_TOPIC)
            names[n++] = *str_field((ul_config *)cfg, &config_options[i]);
    return n;
}

int config_value(const ul_config *cfg, const char *key, int reveal, char *buf, size_t size) {
    char num[64];
    const opt_def *o = find_option(key);
    const char *value = o                                ? option_text(cfg, o, num, sizeof(num))
                        : strncmp(key, "kafka.", 6) == 0 ? kafka_extra_value(cfg, key + 6)
                                                         : NULL;
    if (value == NULL)
        return UL_ERR_ARG;
    shown_value(key, value, reveal, buf, size);
    return UL_OK;
}

int config_log_secrets(const ul_config *cfg, ul_log *lg) {
    char num[64], key[300];
    for (size_t i = 0; i < config_n_options; i++) {
        const char *v = option_text(cfg, &config_options[i], num, sizeof(num));
        if (config_key_is_secret(config_options[i].key) && *v && log_add_secret(lg, v) != UL_OK)
            return UL_ERR_NOMEM;
    }
    for (const config_kv *kv = cfg->kafka_extra; kv; kv = kv->next) {
        snprintf(key, sizeof(key), "kafka.%s", kv->key);
        if (config_key_is_secret(key) && *kv->value && log_add_secret(lg, kv->value) != UL_OK)
            return UL_ERR_NOMEM;
    }
    return UL_OK;
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
    case OPT_METHOD: {
        char choices[256];
        snprintf(buf, size, "%s", choices_text(o, choices, sizeof(choices)));
        break;
    }
    case OPT_TOPIC:
        snprintf(buf, size, "topic");
        break;
    case OPT_STR:
        snprintf(buf, size, "text");
        break;
    }
    return buf;
}

/* "Secret keys:" and the secret_rules as glob patterns, wrapped at 80
 * columns. */
static void print_secret_rules(FILE *out) {
    static const char *const shape[] = {[MATCH_EQUAL] = "%s",
                                        [MATCH_PREFIX] = "%s*",
                                        [MATCH_SUFFIX] = "*%s",
                                        [MATCH_CONTAINS] = "*%s*"};
    size_t col = (size_t)fprintf(out, "Secret keys:");
    char glob[128];
    for (size_t i = 0; i < sizeof(secret_rules) / sizeof(secret_rules[0]); i++) {
        snprintf(glob, sizeof(glob), shape[secret_rules[i].how], secret_rules[i].pattern);
        if (col + 1 + strlen(glob) > 79) {
            fprintf(out, "\n ");
            col = 1;
        }
        col += (size_t)fprintf(out, " %s", glob);
    }
    fprintf(out, "\n");
}

void config_print_help(FILE *out) {
    char type[64], def[512];
    fprintf(out, "Configuration (--KEY VALUE, --KEY=VALUE, env UNLEARND_<KEY>, or KEY=VALUE\n"
                 "lines in --config FILE):\n");
    for (size_t i = 0; i < config_n_options; i++) {
        const opt_def *o = &config_options[i];
        char path[512];
        const char *d = default_text(o, path, sizeof(path));
        snprintf(def, sizeof(def), "%s", *d ? d : "(empty)");
        fprintf(out, "  --%-26s %s\n  %-28s [%s; default %s]\n", o->key, o->doc, "",
                type_text(o, type, sizeof(type)), def);
    }
    fprintf(out, "  --kafka.<property>           any other librdkafka property, passed through\n"
                 "  --config FILE                read KEY=VALUE lines (# comments) from FILE\n"
                 "                               (env UNLEARND_CONFIG)\n"
                 "  --dump-config                print the effective configuration and exit\n"
                 "Precedence: defaults < --config file < environment (UNLEARND_<KEY>, dots as\n"
                 "underscores, upper case, e.g. UNLEARND_MODEL_K) < command-line flags.\n"
                 "Secret values are masked in dumps, errors and logs, as are credentials in\n"
                 "endpoints (user:password@host); pass secrets in a --config file or the\n"
                 "environment (flags show in ps).\n");
    print_secret_rules(out);
}

/* One `key=value` line of a dump, the value as shown_value would give it
 * (whole: a dump is never truncated). */
static void dump_value(FILE *out, const char *key, const char *value) {
    if (config_key_is_secret(key) && *value != '\0') {
        fprintf(out, "%s=%s\n", key, REDACT_MASK);
        return;
    }
    char *shown = redact_dup(value, NULL, 0);
    fprintf(out, "%s=%s\n", key, shown ? shown : "(out of memory)");
    free(shown);
}

void config_dump(const ul_config *cfg, FILE *out) {
    char num[64], key[300];
    fprintf(out, "# unlearnd effective configuration (secrets masked)\n");
    for (size_t i = 0; i < config_n_options; i++) {
        const opt_def *o = &config_options[i];
        fprintf(out, "# %s (from %s)\n", o->doc, cfg->origins[i] ? cfg->origins[i] : "?");
        dump_value(out, o->key, option_text(cfg, o, num, sizeof(num)));
    }
    for (const config_kv *kv = cfg->kafka_extra; kv; kv = kv->next) {
        snprintf(key, sizeof(key), "kafka.%s", kv->key);
        fprintf(out, "# librdkafka property (from %s)\n", kv->origin);
        dump_value(out, key, kv->value);
    }
}
