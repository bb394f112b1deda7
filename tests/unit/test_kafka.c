/* test_kafka.c: the in-process local broker (broker_start/stop, topics,
 * address file), client confs with role defaults and user overrides,
 * produce + dead-letter records and their headers read back, topic offsets,
 * and librdkafka's logs routed through our logger. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "kafka.h"
#include "testutil.h"
#include "ul_err.h"

static char err[UL_ERRSTR_SIZE];

typedef struct fixture {
    ul_log *log; /* first: the opaque of our clients */
    FILE *logf;
    char *logbuf;
    size_t loglen;
    broker *b;
    ul_config *cfg;
    char addr_file[600];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    f->logf = open_memstream(&f->logbuf, &f->loglen);
    f->log = log_new(f->logf, LOG_LEVEL_DEBUG);
    f->cfg = config_new();
    snprintf(f->addr_file, sizeof(f->addr_file), "%s/broker-%d.addr", tu_tmpdir(), (int)getpid());
    assert_int_equal(
        config_set(f->cfg, "broker.bootstrap.file", f->addr_file, NULL, err, sizeof(err)), UL_OK);
    broker_opts o;
    broker_opts_init(&o);
    o.partitions = 3;
    broker_opts_from_config(&o, f->cfg);
    assert_int_equal(o.n_topics, 6);
    f->b = broker_start(&o, f->log, err, sizeof(err));
    if (f->b == NULL)
        fail_msg("broker_start: %s", err);
    assert_int_equal(config_validate(f->cfg, 1, err, sizeof(err)), UL_OK); /* reads the file */
    assert_string_equal(f->cfg->kafka_bootstrap, broker_bootstraps(f->b));
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    broker_stop(f->b);
    assert_int_equal(access(f->addr_file, F_OK), -1); /* removed */
    config_destroy(f->cfg);
    log_destroy(f->log);
    fclose(f->logf);
    free(f->logbuf);
    free(f);
    return 0;
}

static void conf_expect(rd_kafka_conf_t *conf, const char *key, const char *want) {
    char v[128];
    size_t size = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(conf, key, v, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(v, want);
}

static void test_role_defaults_and_overrides(void **state) {
    fixture *f = *state;
    rd_kafka_conf_t *conf = kafka_conf_new(f->cfg, KAFKA_PRODUCER, &f->log, err, sizeof(err));
    assert_non_null(conf);
    conf_expect(conf, "partitioner", "murmur2_random");
    rd_kafka_conf_destroy(conf);
    conf = kafka_conf_new(f->cfg, KAFKA_CONSUMER, &f->log, err, sizeof(err));
    assert_non_null(conf);
    conf_expect(conf, "enable.auto.commit", "false");
    conf_expect(conf, "auto.offset.reset", "smallest"); /* librdkafka reports earliest so */
    conf_expect(conf, "group.id", "unlearnd");
    rd_kafka_conf_destroy(conf);
    /* the user's choice wins */
    assert_int_equal(
        config_set(f->cfg, "kafka.partitioner", "consistent_random", NULL, err, sizeof(err)),
        UL_OK);
    assert_int_equal(
        config_set(f->cfg, "kafka.auto.offset.reset", "latest", NULL, err, sizeof(err)), UL_OK);
    conf = kafka_conf_new(f->cfg, KAFKA_PRODUCER, NULL, err, sizeof(err));
    conf_expect(conf, "partitioner", "consistent_random");
    rd_kafka_conf_destroy(conf);
    conf = kafka_conf_new(f->cfg, KAFKA_CONSUMER, NULL, err, sizeof(err));
    conf_expect(conf, "auto.offset.reset", "largest");
    rd_kafka_conf_destroy(conf);
}

/* The worker's roles add their defaults to the base role's, and the user's
 * choice wins there too; a client with a statistics hook asks for them. */
static int no_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk, (void)json, (void)len, (void)opaque;
    return 0;
}

static void test_worker_roles(void **state) {
    fixture *f = *state;
    rd_kafka_conf_t *conf = kafka_conf_new(f->cfg, KAFKA_OUTPUT, NULL, err, sizeof(err));
    assert_non_null(conf);
    conf_expect(conf, "enable.idempotence", "true");
    conf_expect(conf, "partitioner", "murmur2_random");
    rd_kafka_conf_destroy(conf);
    conf = kafka_conf_new(f->cfg, KAFKA_PRODUCER, NULL, err, sizeof(err));
    conf_expect(conf, "enable.idempotence", "false"); /* the tools' producers: librdkafka's */
    rd_kafka_conf_destroy(conf);
    conf = kafka_conf_new(f->cfg, KAFKA_ASSIGNED, NULL, err, sizeof(err));
    assert_non_null(conf);
    conf_expect(conf, "fetch.wait.max.ms", "20");
    conf_expect(conf, "enable.auto.commit", "false");
    conf_expect(conf, "group.id", "unlearnd");
    rd_kafka_conf_destroy(conf);
    assert_int_equal(config_set(f->cfg, "kafka.fetch.wait.max.ms", "7", NULL, err, sizeof(err)),
                     UL_OK);
    conf = kafka_conf_new(f->cfg, KAFKA_ASSIGNED, NULL, err, sizeof(err));
    conf_expect(conf, "fetch.wait.max.ms", "7");
    rd_kafka_conf_destroy(conf);
    /* the ratings consumer: a queue that outlasts librdkafka 2.0.2's 1 s
     * fetch back-off; the other consumers keep librdkafka's 100000 */
    conf = kafka_conf_new(f->cfg, KAFKA_INGEST, NULL, err, sizeof(err));
    assert_non_null(conf);
    conf_expect(conf, "queued.min.messages", "1000000");
    conf_expect(conf, "queued.max.messages.kbytes", "65536");
    conf_expect(conf, "fetch.max.bytes", "8388608");
    conf_expect(conf, "enable.auto.commit", "false");
    rd_kafka_conf_destroy(conf);
    conf = kafka_conf_new(f->cfg, KAFKA_CONSUMER, NULL, err, sizeof(err));
    conf_expect(conf, "queued.min.messages", "100000");
    rd_kafka_conf_destroy(conf);
    assert_int_equal(
        config_set(f->cfg, "kafka.queued.min.messages", "300000", NULL, err, sizeof(err)), UL_OK);
    conf = kafka_conf_new(f->cfg, KAFKA_INGEST, NULL, err, sizeof(err));
    conf_expect(conf, "queued.min.messages", "300000");
    conf_expect(conf, "fetch.max.bytes", "8388608");
    rd_kafka_conf_destroy(conf);
    kafka_hooks h = {.stats = no_stats};
    rd_kafka_t *rk = kafka_client_new(f->cfg, KAFKA_CONSUMER, NULL, &h, err, sizeof(err));
    assert_non_null(rk);
    size_t size = 32;
    char v[32];
    assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(rk), "statistics.interval.ms", v, &size),
                     RD_KAFKA_CONF_OK);
    assert_string_equal(v, "15000");
    rd_kafka_destroy(rk);
}

/* A kafka.* property of the other role is not given to a client (librdkafka
 * would print a CONFWARN line); properties of both roles go to both. */
static void test_role_scoped_properties(void **state) {
    fixture *f = *state;
    char v[64];
    size_t size;
    assert_int_equal(config_set(f->cfg, "kafka.fetch.wait.max.ms", "10", NULL, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(config_set(f->cfg, "kafka.linger.ms", "7", NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(config_set(f->cfg, "kafka.socket.timeout.ms", "12345", NULL, err, sizeof(err)),
                     UL_OK);
    rd_kafka_conf_t *conf = kafka_conf_new(f->cfg, KAFKA_PRODUCER, NULL, err, sizeof(err));
    assert_non_null(conf);
    conf_expect(conf, "fetch.wait.max.ms", "500"); /* librdkafka's default: not set */
    conf_expect(conf, "linger.ms", "7");
    conf_expect(conf, "socket.timeout.ms", "12345");
    rd_kafka_conf_destroy(conf);
    conf = kafka_conf_new(f->cfg, KAFKA_CONSUMER, NULL, err, sizeof(err));
    assert_non_null(conf);
    conf_expect(conf, "fetch.wait.max.ms", "10");
    size = sizeof(v);
    assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", v, &size), RD_KAFKA_CONF_OK);
    assert_string_not_equal(v, "7"); /* a producer property: not set */
    conf_expect(conf, "socket.timeout.ms", "12345");
    rd_kafka_conf_destroy(conf);
    /* A producer built from it starts without warnings about consumer keys. */
    fflush(f->logf);
    size_t before = strlen(f->logbuf ? f->logbuf : "");
    rd_kafka_t *p = kafka_client_new(f->cfg, KAFKA_PRODUCER, &f->log, NULL, err, sizeof(err));
    assert_non_null(p);
    rd_kafka_destroy(p);
    fflush(f->logf);
    assert_null(strstr(f->logbuf + before, "CONFWARN"));
}

/* Header `name` of rkm is `want`. */
static void expect_header(const rd_kafka_message_t *rkm, const char *name, const char *want) {
    char h[128];
    assert_int_equal(kafka_header_text(rkm, name, h, sizeof(h)), 0);
    assert_string_equal(h, want);
}

/* The next message of at least min_len bytes c receives (10 s at most). */
static rd_kafka_message_t *poll_one(rd_kafka_t *c, size_t min_len) {
    for (int i = 0; i < 100; i++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c, 100);
        if (rkm && rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR && rkm->len >= min_len)
            return rkm;
        if (rkm)
            rd_kafka_message_destroy(rkm);
    }
    fail_msg("no message of %zu bytes or more arrived", min_len);
    return NULL;
}

/* Consume one message from `topic` partition 0..2 starting at the beginning. */
static rd_kafka_message_t *consume_one(rd_kafka_t *c, const char *topic) {
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(3);
    for (int p = 0; p < 3; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    return poll_one(c, 0);
}

static void test_produce_and_dead_letter(void **state) {
    fixture *f = *state;
    rd_kafka_t *p = kafka_client_new(f->cfg, KAFKA_PRODUCER, &f->log, NULL, err, sizeof(err));
    rd_kafka_t *c = kafka_client_new(f->cfg, KAFKA_CONSUMER, &f->log, NULL, err, sizeof(err));
    assert_non_null(p);
    assert_non_null(c);
    const char junk[] = {0x07, 0x00, 0x01};
    /* The input has a header of its own and a timestamp: both must survive
     * into the dead letter (issue 11.4). */
    rd_kafka_headers_t *hin = rd_kafka_headers_new(1);
    rd_kafka_header_add(hin, "trace-id", -1, "abc-123", -1);
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("ratings"), RD_KAFKA_V_KEY("21", 2),
                                       RD_KAFKA_V_VALUE((void *)junk, sizeof(junk)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_TIMESTAMP(1700000000123LL),
                                       RD_KAFKA_V_HEADERS(hin), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_message_t *in = consume_one(c, "ratings");
    assert_int_equal(in->partition, 0); /* Java's murmur2 partition of "21" among 3 */
    kafka_dead_letter d;
    kafka_dead_letter_of(in, "bad-magic", "rating: magic byte is 7", &d);
    assert_int_equal(kafka_dead_letter_fit(p, &d), sizeof(junk)); /* small: kept whole */
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR__FAIL;
    assert_int_equal(kafka_produce_dead_letter(p, "dead-letter", &d, NULL, &code, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(code, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_message_destroy(in);
    rd_kafka_message_t *dl = consume_one(c, "dead-letter");
    assert_int_equal(dl->len, sizeof(junk));
    assert_memory_equal(dl->payload, junk, sizeof(junk));
    assert_int_equal(dl->key_len, 2);
    assert_memory_equal(dl->key, "21", 2);
    char h[128];
    expect_header(dl, "source.topic", "ratings");
    expect_header(dl, "source.partition", "0");
    expect_header(dl, "source.offset", "0");
    expect_header(dl, "error.code", "bad-magic");
    assert_int_equal(kafka_header_text(dl, "error.message", h, 8), 0); /* truncated */
    assert_string_equal(h, "rating:");
    assert_int_equal(kafka_header_text(dl, "nope", h, sizeof(h)), -1);
    expect_header(dl, "trace-id", "abc-123");
    assert_int_equal(kafka_header_text(dl, "value.truncated", h, sizeof(h)), -1);
    rd_kafka_timestamp_type_t tstype;
    assert_int_equal(rd_kafka_message_timestamp(dl, &tstype), 1700000000123LL);
    assert_int_equal(tstype, RD_KAFKA_TIMESTAMP_CREATE_TIME);
    rd_kafka_message_destroy(dl);

    /* A record over message.max.bytes (1,000,000 by default): sent whole it
     * is refused; cut to what fits it goes, saying so and the original size
     * (issue 10.7). */
    size_t big = 1500000;
    char *value = malloc(big);
    assert_non_null(value);
    memset(value, 'x', big);
    d = (kafka_dead_letter){.source_topic = "ratings",
                            .partition = 2,
                            .offset = 77,
                            .timestamp = -1,
                            .key = "21",
                            .key_len = 2,
                            .value = value,
                            .value_len = big,
                            .value_size = big,
                            .error_code = "avro-decode",
                            .error_message = "too big"};
    assert_int_equal(kafka_produce_dead_letter(p, "dead-letter", &d, NULL, &code, err, sizeof(err)),
                     UL_ERR_IO);
    assert_int_equal(code, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    d.value_len = kafka_dead_letter_fit(p, &d);
    assert_true(d.value_len > 900000 && d.value_len < 1000000);
    assert_int_equal(kafka_produce_dead_letter(p, "dead-letter", &d, NULL, &code, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    dl = poll_one(c, 1000); /* the second dead letter */
    assert_int_equal(dl->len, d.value_len);
    expect_header(dl, "value.truncated", "true");
    expect_header(dl, "source.value.size", "1500000");
    expect_header(dl, "source.offset", "77");
    rd_kafka_message_destroy(dl);
    free(value);

    int64_t lo, hi;
    int n;
    assert_int_equal(kafka_topic_offsets(p, "ratings", 5000, &lo, &hi, &n, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(lo, 0);
    assert_int_equal(hi, 1);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
    /* librdkafka's own lines went through our logger */
    fflush(f->logf);
    assert_non_null(strstr(f->logbuf, " rdkafka: "));
    assert_non_null(strstr(f->logbuf, "INFO  broker: topic dead-letter: 3 partitions"));
}

static void test_broker_refuses_bad_opts(void **state) {
    (void)state;
    broker_opts o;
    broker_opts_init(&o);
    o.partitions = 0;
    assert_null(broker_start(&o, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "partitions"));
    broker_opts_init(&o);
    o.bootstrap_file = "/nonexistent-dir/x.addr";
    assert_null(broker_start(&o, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent-dir/x.addr"));
    broker_stop(NULL);
}

static void test_log_levels_and_format(void **state) {
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    ul_log *lg = log_new(mem, LOG_LEVEL_WARN);
    log_info(lg, "x", "hidden %d", 1);
    log_warn(lg, "store", "shown %d\n", 2);
    log_error(NULL, "x", "no logger is fine");
    log_level lv;
    assert_int_equal(log_parse_level("DEBUG", &lv), UL_OK);
    assert_int_equal(lv, LOG_LEVEL_DEBUG);
    assert_int_equal(log_parse_level("loud", &lv), UL_ERR_ARG);
    log_set_level(lg, lv);
    assert_true(log_enabled(lg, LOG_LEVEL_DEBUG));
    log_debug(lg, "kafka", "%s", "d");
    fflush(mem);
    assert_null(strstr(buf, "hidden"));
    /* 2026-11-27T16:58:03.412Z WARN  store: shown 2 */
    const char *w = strstr(buf, "Z WARN  store: shown 2\n");
    assert_non_null(w);
    assert_int_equal(w - buf, 23); /* ISO time with ms before it */
    assert_non_null(strstr(buf, "Z DEBUG kafka: d\n"));
    assert_string_equal(log_level_name(LOG_LEVEL_INFO), "info");
    log_destroy(lg);
    fclose(mem);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_role_defaults_and_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_role_scoped_properties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_produce_and_dead_letter, setup, teardown),
        cmocka_unit_test(test_broker_refuses_bad_opts),
        cmocka_unit_test(test_log_levels_and_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
