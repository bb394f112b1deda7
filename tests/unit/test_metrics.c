/* test_metrics.c: Prometheus rendering (HELP/TYPE, label escaping, histogram
 * buckets, sum and count), health flags, and consumer lag taken from a
 * librdkafka statistics document written after librdkafka's STATISTICS.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "metrics.h"
#include "rng.h"
#include "ul_err.h"

static double fake_now;
static double fake_clock(void *opaque) {
    return *(double *)opaque;
}

/* 1 when `line` is a whole line of `text`. */
static int has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

/* A consumer's statistics as librdkafka 2.0 emits them (abridged only where
 * fields repeat): a bootstrap broker not yet up and a learned one that is, a
 * broker "toppars" map (which also has "partition" keys), the internal
 * partition -1, a partition no longer assigned (desired false, lag -1), one
 * with only the committed-offset lag, escapes in strings, arrays, a window
 * object and the consumer group state. */
static const char stats_json[] =
    "{ \"name\": \"rdkafka#consumer-1\", \"client_id\": \"unlearnd \\\"w\\u00e9\\\"\", "
    "\"type\": \"consumer\", \"ts\":5016483227792, \"time\":1527060869, "
    "\"age\":4398245, \"replyq\":0, \"msg_cnt\":0, \"msg_size\":0, \"msg_max\":100000, "
    "\"msg_size_max\":1073741824, \"simple_cnt\":0, \"metadata_cache_cnt\":2, "
    "\"brokers\":{ "
    "\"kafka:9092/bootstrap\": { \"name\":\"kafka:9092/bootstrap\", \"nodeid\":-1, "
    "\"nodename\":\"kafka:9092\", \"source\":\"configured\", \"state\":\"INIT\", "
    "\"stateage\":9057234, \"outbuf_cnt\":0, \"outbuf_msg_cnt\":0, \"waitresp_cnt\":0, "
    "\"waitresp_msg_cnt\":0, \"tx\":0, \"txbytes\":0, \"req\": { \"Fetch\": 0, "
    "\"Offset\": 0 }, \"rtt\": { \"min\":0, \"max\":0, \"avg\":0, \"sum\":0, "
    "\"stddev\": 0, \"p50\": 0, \"p75\": 0, \"p90\": 0, \"p95\": 0, \"p99\": 0, "
    "\"p99_99\": 0, \"outofrange\": 0, \"hdrsize\": 13424, \"cnt\":0 }, "
    "\"toppars\":{ } }, "
    "\"kafka-0.kafka:9092/1\": { \"name\":\"kafka-0.kafka:9092/1\", \"nodeid\":1, "
    "\"nodename\":\"kafka-0.kafka:9092\", \"source\":\"learned\", \"state\":\"UP\", "
    "\"stateage\":9057209, \"int_latency\": { \"min\":0, \"max\":0, \"avg\":0, \"sum\":0, "
    "\"stddev\": 0, \"p50\": 0, \"p75\": 0, \"p90\": 0, \"p95\": 0, \"p99\": 0, "
    "\"p99_99\": 0, \"outofrange\": 0, \"hdrsize\": 11376, \"cnt\":0 }, "
    "\"toppars\":{ \"ratings-0\": { \"topic\":\"ratings\", \"partition\":0}, "
    "\"ratings-1\": { \"topic\":\"ratings\", \"partition\":1}, "
    "\"forget-requests-0\": { \"topic\":\"forget-requests\", \"partition\":0} } } }, "
    "\"topics\":{ "
    "\"ratings\": { \"topic\":\"ratings\", \"age\":9060, \"metadata_age\":9060, "
    "\"batchsize\": { \"min\":0, \"max\":0, \"avg\":0, \"sum\":0, \"stddev\": 0, "
    "\"p50\": 0, \"p75\": 0, \"p90\": 0, \"p95\": 0, \"p99\": 0, \"p99_99\": 0, "
    "\"outofrange\": 0, \"hdrsize\": 14448, \"cnt\":0 }, "
    "\"partitions\":{ "
    "\"0\": { \"partition\":0, \"broker\":1, \"leader\":1, \"desired\":true, "
    "\"unknown\":false, \"msgq_cnt\":0, \"msgq_bytes\":0, \"xmit_msgq_cnt\":0, "
    "\"xmit_msgq_bytes\":0, \"fetchq_cnt\":12, \"fetchq_size\":4420, "
    "\"fetch_state\":\"active\", \"query_offset\":-1001, \"next_offset\":1880, "
    "\"app_offset\":1870, \"stored_offset\":1760, \"commited_offset\":1730, "
    "\"committed_offset\":1730, \"eof_offset\":-1001, \"lo_offset\":0, "
    "\"hi_offset\":1880, \"ls_offset\":1880, \"consumer_lag\":150, "
    "\"consumer_lag_stored\":120, \"txmsgs\":0, \"txbytes\":0, \"rxmsgs\":1880, "
    "\"rxbytes\":98120, \"msgs\": 1880, \"rx_ver_drops\": 0, \"msgs_inflight\": 0, "
    "\"next_ack_seq\": 0, \"next_err_seq\": 0, \"acked_msgid\": 0} , "
    "\"1\": { \"partition\":1, \"broker\":1, \"leader\":1, \"desired\":true, "
    "\"unknown\":false, \"fetch_state\":\"active\", \"stored_offset\":-1001, "
    "\"committed_offset\":960, \"hi_offset\":1000, \"consumer_lag\":40, "
    "\"consumer_lag_stored\":-1, \"rxmsgs\":0 } , "
    "\"2\": { \"partition\":2, \"broker\":-1, \"leader\":1, \"desired\":false, "
    "\"unknown\":false, \"fetch_state\":\"none\", \"stored_offset\":-1001, "
    "\"committed_offset\":-1001, \"hi_offset\":-1001, \"consumer_lag\":-1, "
    "\"consumer_lag_stored\":-1 } , "
    "\"-1\": { \"partition\":-1, \"broker\":-1, \"leader\":-1, \"desired\":false, "
    "\"unknown\":false, \"msgq_cnt\":0, \"fetch_state\":\"none\", \"consumer_lag\":-1, "
    "\"consumer_lag_stored\":-1, \"acked_msgid\": 0} } }, "
    "\"forget-requests\": { \"topic\":\"forget-requests\", \"age\":9050, "
    "\"metadata_age\":9050, \"partitions\":{ "
    "\"0\": { \"partition\":0, \"broker\":1, \"leader\":1, \"desired\":true, "
    "\"unknown\":false, \"fetch_state\":\"active\", \"consumer_lag\":7, "
    "\"consumer_lag_stored\":3 } , "
    "\"1\": { \"partition\":1, \"broker\":1, \"leader\":1, \"desired\":true, "
    "\"unknown\":false, \"fetch_state\":\"active\", \"app_offset\":90, "
    "\"stored_offset\":-1001, \"committed_offset\":-1001, \"hi_offset\":100, "
    "\"consumer_lag\":-1, \"consumer_lag_stored\":-1 } , "
    "\"-1\": { \"partition\":-1, \"desired\":false, \"consumer_lag\":-1 } } } }, "
    "\"cgrp\": { \"state\": \"up\", \"stateage\": 8997, \"join_state\": \"steady\", "
    "\"rebalance_age\": 8979, \"rebalance_cnt\": 1, \"rebalance_reason\": "
    "\"group is rebalancing\", \"assignment_size\": 2 }, "
    "\"tx\":0, \"tx_bytes\":0, \"rx\":12, \"rx_bytes\":300, \"txmsgs\":0, "
    "\"txmsg_bytes\":0, \"rxmsgs\":1880, \"rxmsg_bytes\":98120, "
    "\"tags\": [\"a\", [1, 2.5e3, -3], {\"x\": null}, true, false] }";

static void test_lag_from_stats(void **state) {
    (void)state;
    metrics_lag lags[8];
    metrics_kafka_stats info;
    char err[UL_ERRSTR_SIZE];
    int rc =
        metrics_parse_kafka_stats(stats_json, strlen(stats_json), lags, 8, &info, err, sizeof(err));
    assert_int_equal(rc, UL_OK);
    assert_int_equal(info.n, 4);
    assert_int_equal(info.brokers_up, 1);
    assert_string_equal(info.client, "rdkafka#consumer-1");
    assert_string_equal(lags[0].topic, "ratings");
    assert_int_equal(lags[0].partition, 0);
    assert_int_equal(lags[0].lag, 120); /* stored-offset lag preferred */
    assert_string_equal(lags[1].topic, "ratings");
    assert_int_equal(lags[1].partition, 1);
    assert_int_equal(lags[1].lag, 40); /* committed lag when nothing stored */
    assert_string_equal(lags[2].topic, "forget-requests");
    assert_int_equal(lags[2].partition, 0);
    assert_int_equal(lags[2].lag, 3);
    assert_int_equal(lags[3].partition, 1); /* neither stored nor committed */
    assert_int_equal(lags[3].lag, 100 - 90);

    /* A short output array: the count still says how many there are. */
    memset(lags, 0, sizeof(lags));
    rc =
        metrics_parse_kafka_stats(stats_json, strlen(stats_json), lags, 1, &info, err, sizeof(err));
    assert_int_equal(rc, UL_OK);
    assert_int_equal(info.n, 4);
    assert_int_equal(lags[0].lag, 120);
    assert_int_equal(lags[1].lag, 0);

    /* librdkafka's length may include the terminating NUL. */
    rc =
        metrics_parse_kafka_stats(stats_json, sizeof(stats_json), lags, 8, &info, err, sizeof(err));
    assert_int_equal(rc, UL_OK);
    assert_int_equal(info.n, 4);

    /* A producer's statistics (no consumer fields) and an empty document. */
    const char *producer = "{\"type\":\"producer\",\"topics\":{\"factors\":{\"partitions\":{"
                           "\"0\":{\"partition\":0,\"desired\":false,\"msgq_cnt\":5}}}}}";
    assert_int_equal(
        metrics_parse_kafka_stats(producer, strlen(producer), lags, 8, &info, err, sizeof(err)),
        UL_OK);
    assert_int_equal(info.n, 0);
    assert_int_equal(info.brokers_up, 0);
    assert_int_equal(metrics_parse_kafka_stats("{}", 2, lags, 8, &info, err, sizeof(err)), UL_OK);
    assert_int_equal(info.n, 0);
}

static void test_stats_malformed(void **state) {
    (void)state;
    metrics_lag lags[8];
    metrics_kafka_stats info;
    char err[UL_ERRSTR_SIZE];
    size_t len = strlen(stats_json);
    /* Every proper prefix is malformed and reported, never a crash. */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = metrics_parse_kafka_stats(stats_json, cut, lags, 8, &info, err, sizeof(err));
        assert_int_equal(rc, UL_ERR_PARSE);
    }
    assert_non_null(strstr(err, "malformed JSON near byte"));

    const char *bad[] = {"",
                         "[]",
                         "{\"topics\":{\"t\":{\"partitions\":{\"0\":{\"consumer_lag\":}}}}}",
                         "{\"a\":1,}",
                         "{\"a\" 1}",
                         "{\"a\":\"unterminated}",
                         "{\"a\":\"bad \\x escape\"}",
                         "{\"a\":tru}",
                         "{\"a\":1} trailing",
                         "{\"a\":\"ctl \x01 char\"}",
                         "{\"a\":1e}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            metrics_parse_kafka_stats(bad[i], strlen(bad[i]), lags, 8, &info, err, sizeof(err)),
            UL_ERR_PARSE);
    assert_int_equal(metrics_parse_kafka_stats(NULL, 5, lags, 8, &info, err, sizeof(err)),
                     UL_ERR_PARSE);

    /* Nesting far deeper than any statistics is refused, not recursed into. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 16);
    assert_non_null(deep);
    size_t k = (size_t)sprintf(deep, "{\"x\":");
    memset(deep + k, '[', depth);
    memset(deep + k + depth, ']', depth);
    strcpy(deep + k + 2 * depth, "}");
    assert_int_equal(
        metrics_parse_kafka_stats(deep, strlen(deep), lags, 8, &info, err, sizeof(err)),
        UL_ERR_PARSE);
    free(deep);

    /* Seeded byte mutations of the real sample: any outcome but a crash. */
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    rng r;
    rng_seed(&r, 42);
    for (int round = 0; round < 2000; round++) {
        memcpy(copy, stats_json, len + 1);
        for (int m = 0; m < 3; m++)
            copy[rng_below(&r, len)] = (char)(rng_next(&r) & 0xff);
        int rc = metrics_parse_kafka_stats(copy, len, lags, 8, &info, err, sizeof(err));
        assert_true(rc == UL_OK || rc == UL_ERR_PARSE);
        assert_true(rc != UL_OK || info.n <= 100);
    }
    free(copy);
}

static void test_update_keeps_last_good(void **state) {
    (void)state;
    metrics *m = metrics_new();
    assert_non_null(m);
    double now = 100;
    metrics_set_clock(m, fake_clock, &now);
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(
        metrics_update_kafka_stats(m, stats_json, strlen(stats_json), err, sizeof(err)), UL_OK);
    now = 103;
    assert_int_equal(metrics_update_kafka_stats(m, "{\"topics\":", 10, err, sizeof(err)),
                     UL_ERR_PARSE);
    char *text = metrics_render(m, 30, NULL);
    assert_non_null(text);
    assert_true(
        has_line(text, "unlearnd_consumer_lag_messages{topic=\"ratings\",partition=\"0\"} 120"));
    assert_true(
        has_line(text, "unlearnd_consumer_lag_messages{topic=\"ratings\",partition=\"1\"} 40"));
    assert_true(has_line(
        text, "unlearnd_consumer_lag_messages{topic=\"forget-requests\",partition=\"0\"} 3"));
    assert_true(has_line(
        text, "unlearnd_consumer_lag_messages{topic=\"forget-requests\",partition=\"1\"} 10"));
    assert_null(strstr(text, "partition=\"2\""));
    assert_null(strstr(text, "partition=\"-1\""));
    assert_true(has_line(text, "unlearnd_worker_consumer_lag_messages 173"));
    assert_true(has_line(text, "unlearnd_topic_lag_messages{topic=\"ratings\"} 160"));
    assert_true(has_line(text, "unlearnd_topic_lag_messages{topic=\"forget-requests\"} 13"));
    assert_true(has_line(text, "unlearnd_kafka_stats_age_seconds 3"));
    assert_true(has_line(text, "unlearnd_kafka_brokers_up 1"));
    free(text);

    /* A second client (the worker's forget-requests consumer) is kept apart. */
    const char *other = "{\"name\":\"rdkafka#consumer-2\",\"topics\":{\"forget-requests\":{"
                        "\"partitions\":{\"3\":{\"partition\":3,\"consumer_lag\":9}}}}}";
    now = 104;
    assert_int_equal(metrics_update_kafka_stats(m, other, strlen(other), err, sizeof(err)), UL_OK);
    text = metrics_render(m, 30, NULL);
    assert_true(
        has_line(text, "unlearnd_consumer_lag_messages{topic=\"ratings\",partition=\"0\"} 120"));
    assert_true(has_line(
        text, "unlearnd_consumer_lag_messages{topic=\"forget-requests\",partition=\"3\"} 9"));
    assert_true(has_line(text, "unlearnd_worker_consumer_lag_messages 182"));
    /* per topic, summed over both clients */
    assert_true(has_line(text, "unlearnd_topic_lag_messages{topic=\"forget-requests\"} 22"));
    assert_true(has_line(text, "unlearnd_kafka_stats_age_seconds 4")); /* the oldest */
    free(text);

    /* A rebalance that took every partition from consumer-1 empties its table. */
    const char *none = "{\"name\":\"rdkafka#consumer-1\",\"topics\":{}}";
    assert_int_equal(metrics_update_kafka_stats(m, none, strlen(none), err, sizeof(err)), UL_OK);
    text = metrics_render(m, 30, NULL);
    assert_null(strstr(text, "{topic=\"ratings\""));
    assert_true(has_line(text, "unlearnd_worker_consumer_lag_messages 9"));
    free(text);
    metrics_destroy(m);
}

static void test_render_format(void **state) {
    (void)state;
    metrics *m = metrics_new();
    assert_non_null(m);
    fake_now = 1000;
    metrics_set_clock(m, fake_clock, &fake_now);
    metrics_add(m, METRICS_RATINGS_APPLIED, 1000);
    metrics_add(m, METRICS_RATINGS_APPLIED, 234);
    metrics_add(m, METRICS_FORGET_RECEIVED, 5);
    metrics_add(m, METRICS_FORGET_COMPLETED, 4);
    metrics_inc_dead_letter(m, "ratings", "avro-decode");
    metrics_inc_dead_letter(m, "ratings", "avro-decode");
    metrics_inc_dead_letter(m, "forget-requests", "invalid");
    metrics_inc_dead_letter(m, NULL, NULL);
    fake_now = 1010;
    metrics_checkpoint_done(m);
    metrics_checkpoint_done(m);
    fake_now = 1012.5;

    size_t len = 0;
    char *text = metrics_render(m, 30, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_true(has_line(text, "# TYPE unlearnd_ratings_applied_total counter"));
    assert_true(has_line(text, "unlearnd_ratings_applied_total 1234"));
    assert_true(has_line(text, "unlearnd_forget_requests_received_total 5"));
    assert_true(has_line(text, "unlearnd_forget_requests_completed_total 4"));
    assert_true(has_line(text, "unlearnd_checkpoints_total 2"));
    assert_true(has_line(text, "# TYPE unlearnd_dead_letter_total counter"));
    assert_true(
        has_line(text, "unlearnd_dead_letter_total{topic=\"ratings\",reason=\"avro-decode\"} 2"));
    assert_true(has_line(
        text, "unlearnd_dead_letter_total{topic=\"forget-requests\",reason=\"invalid\"} 1"));
    assert_true(
        has_line(text, "unlearnd_dead_letter_total{topic=\"unknown\",reason=\"unknown\"} 1"));
    assert_true(has_line(text, "unlearnd_checkpoint_age_seconds 2.5"));
    assert_true(has_line(text, "# TYPE unlearnd_checkpoint_age_seconds gauge"));
    assert_true(has_line(text, "unlearnd_kafka_stats_age_seconds -1"));
    assert_true(has_line(text, "unlearnd_assigned_partitions -1"));
    assert_true(has_line(text, "unlearnd_ready 0"));
    /* Continuous training: its counters and the gauge table, before a set. */
    assert_true(has_line(text, "unlearnd_training_epochs_total 0"));
    assert_true(has_line(text, "unlearnd_training_loss_rmse -1"));
    assert_true(has_line(text, "unlearnd_training_paused 1"));
    free(text);
    metrics_add(m, METRICS_TRAINING_EPOCHS, 3);
    metrics_add(m, METRICS_TRAINING_RATINGS, 2400);
    metrics_set_gauge(m, METRICS_TRAINING_LOSS, 0.8125);
    metrics_set_gauge(m, METRICS_TRAINING_SHARE, 0.25);
    metrics_set_gauge(m, METRICS_TRAINING_PAUSED, 0);
    assert_true(metrics_gauge_value(m, METRICS_TRAINING_SHARE) == 0.25);
    text = metrics_render(m, 30, &len);
    assert_non_null(text);
    assert_true(has_line(text, "# TYPE unlearnd_training_epochs_total counter"));
    assert_true(has_line(text, "unlearnd_training_epochs_total 3"));
    assert_true(has_line(text, "unlearnd_training_ratings_total 2400"));
    assert_true(has_line(text, "# TYPE unlearnd_training_loss_rmse gauge"));
    assert_true(has_line(text, "unlearnd_training_loss_rmse 0.8125"));
    assert_true(has_line(text, "unlearnd_training_share 0.25"));
    assert_true(has_line(text, "unlearnd_training_paused 0"));

    /* Every sample's family was announced by HELP then TYPE before it, each
     * family once, and each sample line is `name[{labels}] value`. */
    char family[128], last[128] = "";
    int n_samples = 0;
    for (char *line = text; *line;) {
        char *eol = strchr(line, '\n');
        assert_non_null(eol);
        *eol = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s", family), 1);
            char type_line[200];
            snprintf(type_line, sizeof(type_line), "# TYPE %s ", family);
            assert_int_equal(strncmp(eol + 1, type_line, strlen(type_line)), 0);
            assert_true(strcmp(family, last) != 0);
            snprintf(last, sizeof(last), "%s", family);
        } else if (line[0] != '#') {
            assert_int_equal(strncmp(line, last, strlen(last)), 0);
            const char *rest = line + strlen(last);
            if (strncmp(rest, "_bucket{", 8) == 0 || strncmp(rest, "_sum ", 5) == 0 ||
                strncmp(rest, "_count ", 7) == 0)
                rest = strpbrk(rest, "{ ");
            if (*rest == '{')
                rest = strstr(rest, "} ") + 1;
            assert_true(*rest == ' ');
            char *end = NULL;
            strtod(rest + 1, &end);
            assert_true(end != rest + 1 && *end == '\0');
            n_samples++;
        }
        line = eol + 1;
    }
    assert_true(n_samples >= 20);
    free(text);
    metrics_destroy(m);
}

static void test_label_escaping(void **state) {
    (void)state;
    char buf[64];
    assert_string_equal(metrics_escape_label("a\"b\\c\nd", buf, sizeof(buf)), "a\\\"b\\\\c\\nd");
    assert_string_equal(metrics_escape_label("plain-name_1", buf, sizeof(buf)), "plain-name_1");
    assert_string_equal(metrics_escape_label(NULL, buf, sizeof(buf)), "");
    /* Truncation never splits an escape sequence. */
    assert_string_equal(metrics_escape_label("ab\"c", buf, 4), "ab");
    assert_string_equal(metrics_escape_label("ab\"c", buf, 5), "ab\\\"");

    metrics *m = metrics_new();
    metrics_inc_dead_letter(m, "t\"1", "bad \"quote\"\\path\nline");
    char *text = metrics_render(m, 30, NULL);
    assert_true(has_line(text, "unlearnd_dead_letter_total{topic=\"t\\\"1\",reason=\"bad "
                               "\\\"quote\\\"\\\\path\\nline\"} 1"));
    free(text);
    metrics_destroy(m);
}

static void test_dead_letter_overflow(void **state) {
    (void)state;
    metrics *m = metrics_new();
    char reason[32], line[128];
    for (int i = 0; i < METRICS_MAX_REASONS + 8; i++) {
        snprintf(reason, sizeof(reason), "r%02d", i);
        metrics_inc_dead_letter(m, "ratings", reason);
        metrics_inc_dead_letter(m, "ratings", reason);
    }
    metrics_inc_dead_letter(m, "ratings", "r00");
    metrics_inc_dead_letter(m, "other", "other");
    char *text = metrics_render(m, 30, NULL);
    assert_true(has_line(text, "unlearnd_dead_letter_total{topic=\"ratings\",reason=\"r00\"} 3"));
    snprintf(line, sizeof(line), "unlearnd_dead_letter_total{topic=\"ratings\",reason=\"r%02d\"} 2",
             METRICS_MAX_REASONS - 1);
    assert_true(has_line(text, line));
    snprintf(reason, sizeof(reason), "reason=\"r%02d\"", METRICS_MAX_REASONS);
    assert_null(strstr(text, reason));
    assert_true(has_line(text, "unlearnd_dead_letter_total{topic=\"other\",reason=\"other\"} 17"));
    free(text);
    metrics_destroy(m);
}

static void test_histogram(void **state) {
    (void)state;
    metrics *m = metrics_new();
    const double obs[] = {0.003, 0.02, 0.1, 0.3, 4, 20, -1, NAN};
    for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
        metrics_observe_cycle_seconds(m, obs[i]);
    char *text = metrics_render(m, 30, NULL);
    assert_true(has_line(text, "# TYPE unlearnd_unlearning_cycle_seconds histogram"));
    const char *expect[] = {
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"0.005\"} 1",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"0.01\"} 1",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"0.025\"} 2",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"0.05\"} 2",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"0.1\"} 3", /* le is inclusive */
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"0.25\"} 3",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"0.5\"} 4",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"1\"} 4",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"2.5\"} 4",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"5\"} 5",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"10\"} 5",
        "unlearnd_unlearning_cycle_seconds_bucket{le=\"+Inf\"} 6",
        "unlearnd_unlearning_cycle_seconds_count 6",
    };
    const char *prev = text;
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        assert_true(has_line(text, expect[i]));
        const char *at = strstr(text, expect[i]);
        assert_true(at > prev); /* buckets in increasing order, +Inf last */
        prev = at;
    }
    const char *sum = strstr(text, "unlearnd_unlearning_cycle_seconds_sum ");
    assert_non_null(sum);
    assert_true(
        fabs(strtod(sum + strlen("unlearnd_unlearning_cycle_seconds_sum "), NULL) - 24.423) < 1e-9);
    free(text);
    metrics_destroy(m);
}

static void test_health(void **state) {
    (void)state;
    metrics *m = metrics_new();
    double now = 50;
    char why[128];
    metrics_set_clock(m, fake_clock, &now);
    assert_true(metrics_is_live(m, 10));
    now = 65;
    assert_false(metrics_is_live(m, 10));
    metrics_heartbeat(m);
    assert_true(metrics_is_live(m, 10));

    assert_false(metrics_is_ready(m, why, sizeof(why)));
    assert_non_null(strstr(why, "Kafka"));
    metrics_set_kafka_connected(m, 1);
    assert_false(metrics_is_ready(m, why, sizeof(why)));
    assert_non_null(strstr(why, "Redis"));
    metrics_set_redis_connected(m, 1);
    assert_false(metrics_is_ready(m, why, sizeof(why)));
    assert_non_null(strstr(why, "assignment"));
    metrics_set_assigned_partitions(m, 0); /* an idle member is ready */
    assert_true(metrics_is_ready(m, why, sizeof(why)));
    metrics_set_assigned_partitions(m, 3);
    assert_true(metrics_is_ready(m, NULL, 0));
    char *text = metrics_render(m, 10, NULL);
    assert_true(has_line(text, "unlearnd_ready 1"));
    assert_true(has_line(text, "unlearnd_live 1"));
    assert_true(has_line(text, "unlearnd_assigned_partitions 3"));
    free(text);
    metrics_set_assigned_partitions(m, -1); /* rebalancing */
    assert_false(metrics_is_ready(m, NULL, 0));
    metrics_set_assigned_partitions(m, 2);
    /* A Redis check that waits: ready for METRICS_REDIS_SLOW_S, then not
     * until it returns (issue 10.4). */
    metrics_redis_waiting(m, 1);
    now = 65.5;
    assert_true(metrics_is_ready(m, NULL, 0));
    now = 66.5;
    assert_false(metrics_is_ready(m, why, sizeof(why)));
    assert_string_equal(why, "a Redis call has waited 1.5 s (no reply, or retrying)");
    metrics_redis_waiting(m, 0);
    assert_true(metrics_is_ready(m, NULL, 0));
    /* Down with a reason, then back. */
    metrics_set_kafka_down(m, 0, "Local: Timed out");
    assert_false(metrics_is_ready(m, why, sizeof(why)));
    assert_string_equal(why, "not connected to Kafka: Local: Timed out");
    metrics_set_kafka_connected(m, 1);
    assert_true(metrics_is_ready(m, NULL, 0));
    metrics_set_redis_down(m, 0, "redis 127.0.0.1:6379: PING: Connection refused");
    assert_false(metrics_is_ready(m, why, sizeof(why)));
    assert_string_equal(why,
                        "not connected to Redis: redis 127.0.0.1:6379: PING: Connection refused");
    metrics_set_redis_connected(m, 1);
    assert_true(metrics_is_ready(m, why, sizeof(why)));
    assert_string_equal(why, "ready");
    metrics_set_redis_connected(m, 0);
    assert_false(metrics_is_ready(m, why, sizeof(why)));
    assert_string_equal(why, "not connected to Redis");
    now = 100;
    text = metrics_render(m, 10, NULL);
    assert_true(has_line(text, "unlearnd_live 0"));
    assert_true(has_line(text, "unlearnd_heartbeat_age_seconds 35"));
    assert_true(has_line(text, "unlearnd_checkpoint_age_seconds 50"));
    free(text);
    metrics_destroy(m);
    metrics_destroy(NULL);
}

typedef struct writer_arg {
    metrics *m;
    int n;
} writer_arg;

static void *writer(void *opaque) {
    writer_arg *a = opaque;
    for (int i = 0; i < a->n; i++) {
        metrics_add(a->m, METRICS_RATINGS_APPLIED, 1);
        metrics_inc_dead_letter(a->m, "ratings", i % 2 ? "invalid" : "avro-decode");
        metrics_observe_cycle_seconds(a->m, 0.01);
        metrics_heartbeat(a->m);
    }
    return NULL;
}

static void test_concurrent_render(void **state) {
    (void)state;
    metrics *m = metrics_new();
    writer_arg a = {m, 20000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer, &a), 0);
    for (int i = 0; i < 50; i++) {
        char *text = metrics_render(m, 30, NULL);
        assert_non_null(text);
        free(text);
        metrics_update_kafka_stats(m, stats_json, strlen(stats_json), NULL, 0);
    }
    pthread_join(th, NULL);
    char *text = metrics_render(m, 30, NULL);
    assert_true(has_line(text, "unlearnd_ratings_applied_total 20000"));
    assert_true(
        has_line(text, "unlearnd_dead_letter_total{topic=\"ratings\",reason=\"invalid\"} 10000"));
    assert_true(has_line(text, "unlearnd_unlearning_cycle_seconds_count 20000"));
    free(text);
    metrics_destroy(m);
}

/* ---- the real thing: statistics from librdkafka 2.0.2 itself ------------- */

typedef struct stats_capture {
    char *json; /* last statistics document, malloc'd */
    size_t len;
} stats_capture;

static int capture_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque) {
    (void)rk;
    stats_capture *cap = opaque;
    free(cap->json);
    cap->json = malloc(json_len + 1);
    memcpy(cap->json, json, json_len);
    cap->json[json_len] = '\0';
    cap->len = json_len;
    return 0; /* librdkafka frees json */
}

static void conf_set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[256];
    assert_int_equal(rd_kafka_conf_set(conf, key, value, err, sizeof(err)), RD_KAFKA_CONF_OK);
}

/* Produce 100 records to ratings[0] and 30 to ratings[1] of a mock cluster,
 * consume them all, store offsets 60 and 30 (as the worker does after a
 * checkpoint), and read the lag from the statistics librdkafka emits:
 * 100 - 60 = 40 and 0. */
static void test_lag_from_librdkafka(void **state) {
    (void)state;
    char err[512];
    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    conf_set(pconf, "test.mock.num.brokers", "1");
    conf_set(pconf, "log_level", "3");
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    assert_non_null(producer);
    rd_kafka_mock_cluster_t *mcl = rd_kafka_handle_mock_cluster(producer);
    assert_non_null(mcl);
    assert_int_equal(rd_kafka_mock_topic_create(mcl, "ratings", 2, 1), 0);
    for (int i = 0; i < 130; i++) {
        rd_kafka_resp_err_t perr = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC("ratings"), RD_KAFKA_V_PARTITION(i < 100 ? 0 : 1),
            RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        assert_int_equal(perr, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    stats_capture cap = {NULL, 0};
    rd_kafka_conf_t *cconf = rd_kafka_conf_new();
    conf_set(cconf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mcl));
    conf_set(cconf, "group.id", "test-metrics");
    conf_set(cconf, "enable.auto.commit", "false");
    conf_set(cconf, "enable.auto.offset.store", "false");
    conf_set(cconf, "statistics.interval.ms", "100");
    conf_set(cconf, "log_level", "3");
    rd_kafka_conf_set_stats_cb(cconf, capture_stats);
    rd_kafka_conf_set_opaque(cconf, &cap);
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    assert_non_null(consumer);
    rd_kafka_poll_set_consumer(consumer);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(parts, "ratings", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_topic_partition_list_add(parts, "ratings", 1)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(consumer, parts), RD_KAFKA_RESP_ERR_NO_ERROR);

    int consumed = 0;
    for (int tries = 0; consumed < 130 && tries < 200; tries++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(consumer, 100);
        if (rkm && rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            consumed++;
        if (rkm)
            rd_kafka_message_destroy(rkm);
    }
    assert_int_equal(consumed, 130);
    parts->elems[0].offset = 60;
    parts->elems[1].offset = 30;
    assert_int_equal(rd_kafka_offsets_store(consumer, parts), RD_KAFKA_RESP_ERR_NO_ERROR);

    /* Wait for statistics that reflect the stored offsets. */
    metrics_lag lags[4];
    metrics_kafka_stats info;
    int seen = 0;
    for (int tries = 0; tries < 100 && !seen; tries++) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(consumer, 100);
        if (rkm)
            rd_kafka_message_destroy(rkm);
        if (cap.json == NULL)
            continue;
        assert_int_equal(
            metrics_parse_kafka_stats(cap.json, cap.len, lags, 4, &info, err, sizeof(err)), UL_OK);
        seen = info.n == 2 && lags[0].lag == 40;
    }
    assert_true(seen);
    assert_non_null(strstr(cap.json, "\"consumer_lag_stored\""));
    assert_string_equal(lags[0].topic, "ratings");
    assert_int_equal(lags[0].partition, 0);
    assert_int_equal(lags[1].partition, 1);
    assert_int_equal(lags[1].lag, 0);
    assert_true(info.brokers_up >= 1);
    metrics *mb = metrics_new();
    assert_int_equal(metrics_kafka_brokers_up(mb), -1);
    metrics_update_kafka_stats(mb, cap.json, cap.len, NULL, 0);
    assert_int_equal(metrics_kafka_brokers_up(mb), info.brokers_up);
    metrics_destroy(mb);
    assert_non_null(strstr(info.client, "consumer"));

    metrics *m = metrics_new();
    assert_int_equal(metrics_update_kafka_stats(m, cap.json, cap.len, err, sizeof(err)), UL_OK);
    char *text = metrics_render(m, 30, NULL);
    assert_true(has_line(text, "unlearnd_worker_consumer_lag_messages 40"));
    free(text);
    metrics_destroy(m);

    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_destroy(producer);
    free(cap.json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lag_from_stats),
        cmocka_unit_test(test_stats_malformed),
        cmocka_unit_test(test_update_keeps_last_good),
        cmocka_unit_test(test_render_format),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_dead_letter_overflow),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_concurrent_render),
        cmocka_unit_test(test_lag_from_librdkafka),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
