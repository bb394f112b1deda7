/* bench_consume.c: a plain consumer, the yardstick of the worker's ingest
 * rate (bench/bench_ingest.sh runs both on one topic): a balanced consumer
 * in its own group reads the ratings topic to its end and does nothing with
 * the records. Prints records/s from the first record to the last (the
 * worker's figure runs from its assignment to a checkpoint that shows all
 * applied, a longer span: the ratio is conservative) and its peak RSS.
 *
 *   bench_consume --count N [--librdkafka-defaults] [config options...]
 *
 *   --count N               stop after N records (the topic's size)
 *   --librdkafka-defaults   the consumer role (KAFKA_CONSUMER: group, offsets)
 *                           without the worker's ingest queue settings
 *                           (KAFKA_INGEST, worker/kafka.c), to show what they buy
 * Config options (--kafka.*, --topic.ratings, --kafka.group.id, ...) as for
 * the worker; the bootstrap comes from broker.bootstrap.file like the
 * worker's. Prints figures; asserts nothing about time. Exit 1 when fewer
 * than N records arrive within 120 s. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "kafka.h"
#include "ul_clock.h"
#include "ul_err.h"

extern char **environ;

static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_consume --count N [--librdkafka-defaults] [config options]\n");
    return 2;
}

int main(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    long want = -1;
    int plain = 0;
    ul_config *cfg = config_new();
    config_cli cli = {0};
    if (cfg == NULL || config_load(cfg, argc, argv, environ, &cli, err, sizeof(err)) != UL_OK ||
        config_validate(cfg, 1, err, sizeof(err)) != UL_OK) {
        fprintf(stderr, "bench_consume: %s\n", cfg ? err : "out of memory");
        return 2;
    }
    for (int i = 0; i < cli.n_rest; i++) {
        if (strcmp(cli.rest[i], "--count") == 0 && i + 1 < cli.n_rest)
            want = strtol(cli.rest[++i], NULL, 10);
        else if (strcmp(cli.rest[i], "--librdkafka-defaults") == 0)
            plain = 1;
        else
            return usage();
    }
    if (want <= 0)
        return usage();
    rd_kafka_conf_t *conf =
        kafka_conf_new(cfg, plain ? KAFKA_CONSUMER : KAFKA_INGEST, NULL, err, sizeof(err));
    if (conf == NULL) {
        fprintf(stderr, "bench_consume: %s\n", err);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "bench_consume: %s\n", err);
        return 2;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, cfg->topic_ratings, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    long got = 0;
    double t0 = 0, deadline = ul_clock_mono_s() + 120.0;
    while (got < want && ul_clock_mono_s() < deadline) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
        if (rkm == NULL)
            continue;
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR && got++ == 0)
            t0 = ul_clock_mono_s();
        rd_kafka_message_destroy(rkm);
    }
    double t1 = ul_clock_mono_s();
    printf("consumed %ld of %ld records in %.3f s from the first: %.0f records/s, peak RSS %ld kB "
           "(%s)\n",
           got, want, t1 - t0, got > 1 ? (double)(got - 1) / (t1 - t0) : 0.0, peak_rss_kb(),
           plain ? "librdkafka's queue defaults" : "the worker's ingest defaults");
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    config_cli_free(&cli);
    config_destroy(cfg);
    return got == want ? 0 : 1;
}
