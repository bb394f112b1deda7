/* test_config.c: the layered configuration: defaults, file (errors as
 * path:line), environment, flags, in that precedence; unknown keys, bad
 * values, kafka.* validation through librdkafka, secret masking, bootstrap
 * resolution and the generated help and dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unlearn.h"
#include "testutil.h"
#include "ul_err.h"

static char err[UL_ERRSTR_SIZE];

static void expect_err(int rc, const char *needle) {
    assert_int_not_equal(rc, UL_OK);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_defaults(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    assert_non_null(cfg);
    assert_string_equal(cfg->topic_ratings, "ratings");
    assert_string_equal(cfg->topic_forget, "forget-requests");
    assert_string_equal(cfg->topic_dead_letter, "dead-letter");
    assert_string_equal(cfg->method, "foldin");
    assert_int_equal(cfg->model_k, 64);
    assert_int_equal(cfg->schema_id_rating, 1);
    assert_int_equal(cfg->schema_id_receipt, 4);
    assert_true(cfg->rating_min == 1.0 && cfg->rating_max == 5.0);
    assert_string_equal(cfg->redis_host, "");
    assert_string_equal(cfg->kafka_bootstrap, "");
    assert_non_null(strstr(cfg->bootstrap_file, "unlearnd-broker.addr"));
    /* the HTTP endpoint is for this machine unless asked otherwise */
    assert_string_equal(cfg->metrics_bind, "127.0.0.1");
    config_destroy(cfg);
    config_destroy(NULL);
}

/* The method option's choices and default are core's stream methods; text
 * options read by key are the struct's strings. */
static void test_method_from_core_and_text_by_key(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    assert_string_equal(cfg->method, unlearn_method_default());
    assert_int_equal(config_set(cfg, "method", "foldin", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_set(cfg, "method", "cff-paper", NULL, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "'cff-paper' is not one of cff|foldin"));
    assert_string_equal(cfg->method, "foldin");
    assert_true(config_str(cfg, "topic.ratings") == cfg->topic_ratings);
    assert_int_equal(config_set(cfg, "topic.ratings", "r2", NULL, err, sizeof(err)), UL_OK);
    assert_string_equal(config_str(cfg, "topic.ratings"), "r2");
    assert_string_equal(config_str(cfg, "method"), "foldin");
    assert_null(config_str(cfg, "model.k")); /* numeric */
    assert_null(config_str(cfg, "no.such.key"));
    const char *topics[8];
    assert_int_equal(config_topics(cfg, topics, 8), 6); /* every topic option, in order */
    assert_string_equal(topics[0], "r2");
    assert_string_equal(topics[4], "dead-letter");
    assert_string_equal(topics[5], "item-updates");
    assert_int_equal(config_topics(cfg, topics, 2), 2);
    config_destroy(cfg);
}

static void test_precedence(void **state) {
    (void)state;
    const char *path = tu_write_file("prec.conf", "# comment\n"
                                                  "  model.k = 16  \n"
                                                  "\n"
                                                  "cycle.interval.ms=250\n"
                                                  "method=foldin\n"
                                                  "redis.port=7000\n");
    char env1[] = "UNLEARND_MODEL_K=24";
    char env2[] = "UNLEARND_CYCLE_INTERVAL_MS=300";
    char env3[] = "UNLEARND_SHARED_DATA=/elsewhere"; /* not ours: ignored */
    char env4[] = "UNLEARND_TOPIC_FORGET_REQUESTS=fr2";
    char *envp[] = {env1, env2, env3, env4, NULL};
    char *argv[] = {"worker", "--config", (char *)path,   "--model.k=32", "positional",
                    "--own",  "ownvalue", "--redis.host", "db.local",     NULL};
    ul_config *cfg = config_new();
    config_cli cli;
    assert_int_equal(config_load(cfg, 9, argv, envp, &cli, err, sizeof(err)), UL_OK);
    assert_int_equal(cfg->model_k, 32);            /* flag > env > file */
    assert_int_equal(cfg->cycle_interval_ms, 300); /* env > file */
    assert_string_equal(cfg->method, "foldin");    /* file > default */
    assert_int_equal(cfg->redis_port, 7000);
    assert_string_equal(cfg->redis_host, "db.local");
    assert_string_equal(cfg->topic_forget, "fr2");
    assert_string_equal(cli.config_path, path);
    assert_false(cli.help);
    assert_int_equal(cli.n_rest, 3); /* non-config arguments kept in order */
    assert_string_equal(cli.rest[0], "positional");
    assert_string_equal(cli.rest[1], "--own");
    assert_string_equal(cli.rest[2], "ownvalue");
    /* the dump says where each value came from */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    config_dump(cfg, mem);
    fclose(mem);
    assert_non_null(strstr(buf, "(from --model.k)\nmodel.k=32\n"));
    assert_non_null(strstr(buf, "(from UNLEARND_CYCLE_INTERVAL_MS)\ncycle.interval.ms=300\n"));
    assert_non_null(strstr(buf, ":5)\nmethod=foldin\n")); /* path:line of the file */
    free(buf);
    config_cli_free(&cli);
    config_destroy(cfg);
}

static void test_config_env_path_and_flags(void **state) {
    (void)state;
    const char *path = tu_write_file("envpath.conf", "model.k=8\n");
    char env[600];
    snprintf(env, sizeof(env), "UNLEARND_CONFIG=%s", path);
    char *envp[] = {env, NULL};
    char *argv[] = {"worker", "--help", "--dump-config", NULL};
    ul_config *cfg = config_new();
    config_cli cli;
    assert_int_equal(config_load(cfg, 3, argv, envp, &cli, err, sizeof(err)), UL_OK);
    assert_int_equal(cfg->model_k, 8);
    assert_true(cli.help && cli.dump);
    config_cli_free(&cli);
    char *argv2[] = {"worker", "--model.k", NULL};
    expect_err(config_load(cfg, 2, argv2, NULL, &cli, err, sizeof(err)), "needs a value");
    config_cli_free(&cli);
    char *argv4[] = {"worker", "--modle.k", "3", NULL};
    expect_err(config_load(cfg, 3, argv4, NULL, &cli, err, sizeof(err)),
               "unknown option 'modle.k'");
    config_cli_free(&cli);
    char *argv3[] = {"worker", "--config", "/nonexistent/x.conf", NULL};
    expect_err(config_load(cfg, 3, argv3, NULL, &cli, err, sizeof(err)), "/nonexistent/x.conf");
    config_cli_free(&cli);
    config_destroy(cfg);
}

static void test_file_errors_name_path_and_line(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    const char *p = tu_write_file("bad1.conf", "model.k=8\n# ok\nmodel.kk=3\n");
    expect_err(config_load_file(cfg, p, err, sizeof(err)),
               "bad1.conf:3: unknown option 'model.kk'");
    p = tu_write_file("bad2.conf", "\n\nmodel.k=0\n");
    expect_err(config_load_file(cfg, p, err, sizeof(err)), "bad2.conf:3: model.k: 0 is outside");
    p = tu_write_file("bad3.conf", "just words\n");
    expect_err(config_load_file(cfg, p, err, sizeof(err)), "bad3.conf:1: expected key=value");
    p = tu_write_file("bad4.conf", "kafka.acks=banana\n");
    expect_err(config_load_file(cfg, p, err, sizeof(err)), "bad4.conf:1: kafka.acks");
    p = tu_write_file("bad5.conf", "=3\n");
    expect_err(config_load_file(cfg, p, err, sizeof(err)), "bad5.conf:1: missing key");
    expect_err(config_load_file(cfg, "/no/such/file.conf", err, sizeof(err)), "cannot open");
    config_destroy(cfg);
}

static void test_bad_values(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    expect_err(config_set(cfg, "model.k", "abc", "--model.k", err, sizeof(err)),
               "--model.k: model.k: 'abc' is not a whole number");
    expect_err(config_set(cfg, "model.k", "12x", NULL, err, sizeof(err)), "not a whole number");
    expect_err(config_set(cfg, "model.learning.rate", "0", NULL, err, sizeof(err)), "outside");
    expect_err(config_set(cfg, "model.reg", "nan", NULL, err, sizeof(err)), "not a number");
    expect_err(config_set(cfg, "method", "retrain", NULL, err, sizeof(err)), "cff|foldin");
    expect_err(config_set(cfg, "log.level", "loud", NULL, err, sizeof(err)), "error|warn");
    expect_err(config_set(cfg, "topic.ratings", "bad topic!", NULL, err, sizeof(err)),
               "not a valid topic");
    expect_err(config_set(cfg, "topic.ratings", "", NULL, err, sizeof(err)), "not a valid topic");
    expect_err(config_set(cfg, "redis.port", "70000", NULL, err, sizeof(err)), "1..65535");
    expect_err(config_set(cfg, "redis.nosuch", "1", NULL, err, sizeof(err)), "unknown option");
    expect_err(config_set(cfg, "nosuch", "1", "UNLEARND_X", err, sizeof(err)), "UNLEARND_X");
    /* values are unchanged after a refused set */
    assert_int_equal(cfg->model_k, 64);
    assert_string_equal(cfg->method, "foldin");
    /* env: an unknown table-looking var is ignored, a bad value is an error */
    char bad[] = "UNLEARND_MODEL_K=-3";
    char *envp[] = {bad, NULL};
    expect_err(config_load_env(cfg, envp, err, sizeof(err)), "UNLEARND_MODEL_K: model.k");
    /* cross-field checks */
    assert_int_equal(config_set(cfg, "rating.min", "5", NULL, err, sizeof(err)), UL_OK);
    expect_err(config_validate(cfg, 0, err, sizeof(err)), "rating.min");
    config_destroy(cfg);
}

static void test_kafka_passthrough(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    char v[64];
    assert_int_equal(config_set(cfg, "kafka.linger.ms", "7", "--kafka.linger.ms", err, sizeof(err)),
                     UL_OK);
    char env[] = "UNLEARND_KAFKA_QUEUE_BUFFERING_MAX_MESSAGES=5000";
    char *envp[] = {env, NULL};
    assert_int_equal(config_load_env(cfg, envp, err, sizeof(err)), UL_OK);
    expect_err(config_set(cfg, "kafka.no.such.property", "1", NULL, err, sizeof(err)),
               "kafka.no.such.property");
    expect_err(config_set(cfg, "kafka.linger.ms", "-5", NULL, err, sizeof(err)), "linger.ms");
    assert_int_equal(
        config_set(cfg, "kafka.bootstrap.servers", "h1:9092,h2:9092", NULL, err, sizeof(err)),
        UL_OK);
    rd_kafka_conf_t *conf = config_kafka_conf(cfg, err, sizeof(err));
    assert_non_null(conf);
    size_t size = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", v, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(v, "7");
    size = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(conf, "queue.buffering.max.messages", v, &size),
                     RD_KAFKA_CONF_OK);
    assert_string_equal(v, "5000");
    size = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", v, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(v, "h1:9092,h2:9092");
    rd_kafka_conf_destroy(conf);
    assert_int_equal(config_value(cfg, "kafka.linger.ms", 0, v, sizeof(v)), UL_OK);
    assert_string_equal(v, "7");
    assert_int_equal(config_value(cfg, "kafka.acks", 0, v, sizeof(v)), UL_ERR_ARG);
    assert_int_equal(config_validate(cfg, 1, err, sizeof(err)), UL_OK);
    config_destroy(cfg);
}

static void test_secrets_masked(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    char v[64];
    assert_true(config_key_is_secret("redis.password"));
    assert_true(config_key_is_secret("kafka.sasl.username"));
    assert_true(config_key_is_secret("kafka.ssl.key.password"));
    assert_false(config_key_is_secret("model.k"));
    assert_int_equal(config_set(cfg, "redis.password", "hunter2", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_set(cfg, "kafka.sasl.password", "s3cr3t", NULL, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(config_value(cfg, "redis.password", 0, v, sizeof(v)), UL_OK);
    assert_string_equal(v, "********");
    assert_int_equal(config_value(cfg, "redis.password", 1, v, sizeof(v)), UL_OK);
    assert_string_equal(v, "hunter2");
    assert_string_equal(cfg->redis_password, "hunter2");
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    config_dump(cfg, mem);
    fclose(mem);
    assert_null(strstr(buf, "hunter2"));
    assert_null(strstr(buf, "s3cr3t"));
    assert_non_null(strstr(buf, "redis.password=********"));
    assert_non_null(strstr(buf, "kafka.sasl.password=********"));
    free(buf);
    config_destroy(cfg);
}

/* The properties librdkafka's src/rdkafka_conf.c flags _RK_SENSITIVE: in
 * 2.0.2 (the first nine) and in later releases (up to 2.15). There is no API
 * for the flag, so the list is copied from the source. */
static const char *const rdkafka_sensitive[] = {
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
};

static void test_secret_keys_cover_librdkafka(void **state) {
    (void)state;
    char key[128];
    for (size_t i = 0; i < sizeof(rdkafka_sensitive) / sizeof(rdkafka_sensitive[0]); i++) {
        snprintf(key, sizeof(key), "kafka.%s", rdkafka_sensitive[i]);
        if (!config_key_is_secret(key))
            fail_msg("%s is sensitive in librdkafka but not masked", key);
    }
    const char *also[] = {"redis.password",      "kafka.ssl.keystore.location",
                          "KAFKA.SASL.PASSWORD", "kafka.ssl.certificate.pem",
                          "some.future.api.key", "x.client_secret"};
    for (size_t i = 0; i < sizeof(also) / sizeof(also[0]); i++)
        if (!config_key_is_secret(also[i]))
            fail_msg("%s not masked", also[i]);
    /* settings a reader needs stay readable */
    const char *plain[] = {"kafka.bootstrap.servers",
                           "kafka.sasl.mechanisms",
                           "kafka.security.protocol",
                           "kafka.ssl.certificate.location",
                           "kafka.ssl.ca.location",
                           "redis.host",
                           "redis.user",
                           "model.k",
                           "kafka.sasl.kerberos.service.name"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (config_key_is_secret(plain[i]))
            fail_msg("%s masked", plain[i]);
}

static char *dump_text(const ul_config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    config_dump(cfg, mem);
    fclose(mem);
    return buf;
}

/* kafka.ssl.key.pem and credentials inside endpoints were printed in clear. */
static void test_secrets_masked_everywhere(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    char v[256];
    const char *pem = "-----BEGIN PRIVATE KEY-----PEMSECRET-----END PRIVATE KEY-----";
    assert_int_equal(config_set(cfg, "kafka.ssl.key.pem", pem, NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(
        config_set(cfg, "kafka.ssl.keystore.password", "KSSECRET", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_set(cfg, "kafka.sasl.oauthbearer.config", "principal=OASECRET", NULL,
                                err, sizeof(err)),
                     UL_OK);
    assert_int_equal(config_set(cfg, "kafka.bootstrap.servers", "h1:9092,bob:BSSECRET@h2:9092",
                                NULL, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(
        config_set(cfg, "redis.host", "redis://:RDSECRET@db:6379", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_value(cfg, "kafka.ssl.key.pem", 0, v, sizeof(v)), UL_OK);
    assert_string_equal(v, "********");
    assert_int_equal(config_value(cfg, "kafka.ssl.key.pem", 1, v, sizeof(v)), UL_OK);
    assert_string_equal(v, pem);
    assert_int_equal(config_value(cfg, "kafka.bootstrap.servers", 0, v, sizeof(v)), UL_OK);
    assert_string_equal(v, "h1:9092,bob:********@h2:9092");
    assert_int_equal(config_value(cfg, "redis.host", 0, v, sizeof(v)), UL_OK);
    assert_string_equal(v, "redis://:********@db:6379");
    /* a short buffer gets a cut of the masked text, never the secret's start */
    assert_int_equal(config_value(cfg, "kafka.bootstrap.servers", 0, v, 16), UL_OK);
    assert_string_equal(v, "h1:9092,bob:***");
    char *buf = dump_text(cfg);
    const char *secrets[] = {"PEMSECRET", "KSSECRET", "OASECRET", "BSSECRET", "RDSECRET"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(buf, secrets[i]))
            fail_msg("--dump-config shows %s", secrets[i]);
    assert_non_null(strstr(buf, "\nkafka.ssl.key.pem=********\n"));
    assert_non_null(strstr(buf, "\nkafka.bootstrap.servers=h1:9092,bob:********@h2:9092\n"));
    free(buf);
    /* endpoints with credentials are refused, naming the key, not the value */
    expect_err(config_validate(cfg, 1, err, sizeof(err)), "kafka.bootstrap.servers holds");
    assert_null(strstr(err, "BSSECRET"));
    assert_int_equal(config_set(cfg, "kafka.bootstrap.servers", "h1:9092", NULL, err, sizeof(err)),
                     UL_OK);
    expect_err(config_validate(cfg, 1, err, sizeof(err)), "redis.host holds");
    assert_null(strstr(err, "RDSECRET"));
    assert_int_equal(config_set(cfg, "redis.host", "db", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_set(cfg, "redis.cluster", "a:1,u:SHSECRET@b:2", NULL, err, sizeof(err)),
                     UL_OK);
    expect_err(config_validate(cfg, 1, err, sizeof(err)), "redis.cluster holds");
    assert_null(strstr(err, "SHSECRET"));
    assert_int_equal(config_set(cfg, "redis.cluster", "a:1,nope", NULL, err, sizeof(err)), UL_OK);
    expect_err(config_validate(cfg, 1, err, sizeof(err)), "'nope' is not host:port");
    assert_int_equal(config_set(cfg, "redis.cluster", "a:1,b:2", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_set(cfg, "redis.db", "3", NULL, err, sizeof(err)), UL_OK);
    expect_err(config_validate(cfg, 1, err, sizeof(err)), "has only database 0");
    assert_int_equal(config_set(cfg, "redis.db", "0", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_set(cfg, "redis.cluster", "", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(
        config_set(cfg, "kafka.metadata.broker.list", "u:MBSECRET@h:1", NULL, err, sizeof(err)),
        UL_OK);
    expect_err(config_validate(cfg, 1, err, sizeof(err)), "kafka.metadata.broker.list holds");
    assert_null(strstr(err, "MBSECRET"));
    config_destroy(cfg);
}

/* A line without '=' was quoted (60 characters) in the error. */
static void test_file_errors_never_quote_the_line(void **state) {
    (void)state;
    static const struct {
        const char *line, *says;
    } cases[] = {
        {"redis.password: LINESECRET1\n", ":1: expected key=value"},
        {"# fine\nredis.password LINESECRET2\n", ":2: expected key=value"},
        {"redis.password LINESECRET3 = x\n", ":1: unknown option (not shown"},
        {"kafka.sasl.password LINESECRET4=x\n", ":1: unknown option (not shown"},
        {"LINESECRET5=x\n", ":1: unknown option (not shown"},
        {"redis.password:LINESECRET6=x\n", ":1: unknown option (not shown"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ul_config *cfg = config_new();
        const char *p = tu_write_file("secret-line.conf", cases[i].line);
        err[0] = '\0';
        expect_err(config_load_file(cfg, p, err, sizeof(err)), cases[i].says);
        if (strstr(err, "LINESECRET"))
            fail_msg("case %zu: the error quotes the secret: %s", i, err);
        config_destroy(cfg);
    }
}

/* config_log_secrets: the configured secrets never reach a log line. */
static void test_log_secrets(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    assert_int_equal(config_set(cfg, "redis.password", "LOGSECRET1", NULL, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(config_set(cfg, "kafka.sasl.password", "LOGSECRET2", NULL, err, sizeof(err)),
                     UL_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    ul_log *lg = log_new(mem, LOG_LEVEL_INFO);
    assert_int_equal(config_log_secrets(cfg, lg), UL_OK);
    log_info(lg, "test", "redis said LOGSECRET1 and librdkafka LOGSECRET2, bob:x@h");
    log_destroy(lg);
    fclose(mem);
    assert_null(strstr(buf, "LOGSECRET"));
    assert_non_null(strstr(buf, "redis said ******** and librdkafka ********, bob:********@h\n"));
    free(buf);
    config_destroy(cfg);
}

static void test_bootstrap_resolution(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/no-broker.addr", tu_tmpdir());
    assert_int_equal(config_set(cfg, "broker.bootstrap.file", missing, NULL, err, sizeof(err)),
                     UL_OK);
    expect_err(config_validate(cfg, 1, err, sizeof(err)), "unlearnd broker");
    assert_int_equal(config_validate(cfg, 0, err, sizeof(err)), UL_OK); /* not needed */
    const char *addr = tu_write_file("broker.addr", "127.0.0.1:12345\n");
    assert_int_equal(config_set(cfg, "broker.bootstrap.file", addr, NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_validate(cfg, 1, err, sizeof(err)), UL_OK);
    assert_string_equal(cfg->kafka_bootstrap, "127.0.0.1:12345");
    /* an explicit bootstrap wins over the file */
    assert_int_equal(config_set(cfg, "kafka.bootstrap.servers", "k:1", NULL, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(config_validate(cfg, 1, err, sizeof(err)), UL_OK);
    assert_string_equal(cfg->kafka_bootstrap, "k:1");
    config_destroy(cfg);
}

static void test_help_lists_every_option(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    config_print_help(mem);
    fclose(mem);
    const char *keys[] = {"kafka.bootstrap.servers",
                          "kafka.group.id",
                          "topic.dead_letter",
                          "schema.id.forget_request",
                          "redis.password",
                          "method",
                          "retention.per.user",
                          "forget.max.items",
                          "log.level",
                          "UNLEARND_"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strstr(buf, keys[i]) == NULL)
            fail_msg("help lacks %s", keys[i]);
    assert_non_null(strstr(buf, "default 64"));
    /* the secret keys, from the same table that masks them */
    assert_non_null(strstr(buf, "Secret keys: *password*"));
    assert_non_null(strstr(buf, "kafka.sasl.username"));
    free(buf);
}

/* The schema rows: defaults, the registry password masked, register 0..1. */
static void test_schema_registry_options(void **state) {
    (void)state;
    char buf[256];
    ul_config *cfg = config_new();
    assert_non_null(cfg);
    assert_string_equal(cfg->schema_writers, "");
    assert_string_equal(cfg->schema_registry_url, "");
    assert_int_equal(cfg->schema_registry_timeout_ms, 5000);
    assert_int_equal(cfg->schema_registry_register, 0);
    assert_int_equal(config_set(cfg, "schema.registry.password", "pw-1", "--x", err, sizeof(err)),
                     UL_OK);
    assert_int_equal(config_value(cfg, "schema.registry.password", 0, buf, sizeof(buf)), UL_OK);
    assert_string_equal(buf, "********");
    assert_int_equal(config_set(cfg, "schema.registry.register", "2", "--x", err, sizeof(err)),
                     UL_ERR_ARG);
    assert_int_equal(
        config_set(cfg, "schema.writers", "5=a.avsc,6=b.avsc", "--x", err, sizeof(err)), UL_OK);
    assert_string_equal(cfg->schema_writers, "5=a.avsc,6=b.avsc");
    config_destroy(cfg);
}

/* The continuous-training rows: defaults, ranges, help lines. */
static void test_training_options(void **state) {
    (void)state;
    ul_config *cfg = config_new();
    assert_non_null(cfg);
    assert_int_equal(cfg->training_enabled, 1);
    assert_true(cfg->training_share == 0.15);
    assert_true(cfg->training_idle_share == 0.5);
    assert_true(cfg->training_slice_ms == 5.0);
    assert_true(cfg->training_min_improvement == 0.001);
    assert_true(cfg->training_resume_fraction == 0.01);
    assert_true(cfg->training_steps_per_event == 0.25);
    assert_true(cfg->training_learning_rate == 0.1);
    assert_true(cfg->training_learning_rate_decay == 0.79);
    assert_true(cfg->training_learning_rate_min == 0.0);
    assert_int_equal(config_set(cfg, "training.enabled", "0", "--x", err, sizeof(err)), UL_OK);
    assert_int_equal(cfg->training_enabled, 0);
    assert_int_equal(config_set(cfg, "training.enabled", "2", "--x", err, sizeof(err)), UL_ERR_ARG);
    assert_int_equal(config_set(cfg, "training.share", "1.5", "--x", err, sizeof(err)), UL_ERR_ARG);
    assert_int_equal(config_set(cfg, "training.idle.share", "-0.1", "--x", err, sizeof(err)),
                     UL_ERR_ARG);
    assert_int_equal(config_set(cfg, "training.slice.ms", "0", "--x", err, sizeof(err)),
                     UL_ERR_ARG);
    assert_int_equal(config_set(cfg, "training.share", "0.3", "--x", err, sizeof(err)), UL_OK);
    assert_true(cfg->training_share == 0.3);
    config_destroy(cfg);
    char *buf = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&buf, &size);
    config_print_help(mem);
    fclose(mem);
    const char *keys[] = {"training.enabled",          "training.share",
                          "training.idle.share",       "training.slice.ms",
                          "training.min.improvement",  "training.resume.fraction",
                          "training.learning.rate",    "training.learning.rate.decay",
                          "training.learning.rate.min"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strstr(buf, keys[i]) == NULL)
            fail_msg("help lacks %s", keys[i]);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_options),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_method_from_core_and_text_by_key),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_config_env_path_and_flags),
        cmocka_unit_test(test_file_errors_name_path_and_line),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_kafka_passthrough),
        cmocka_unit_test(test_secrets_masked),
        cmocka_unit_test(test_secret_keys_cover_librdkafka),
        cmocka_unit_test(test_secrets_masked_everywhere),
        cmocka_unit_test(test_file_errors_never_quote_the_line),
        cmocka_unit_test(test_log_secrets),
        cmocka_unit_test(test_bootstrap_resolution),
        cmocka_unit_test(test_help_lists_every_option),
        cmocka_unit_test(test_schema_registry_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
