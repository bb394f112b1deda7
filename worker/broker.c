/* broker.c: the local development broker (see broker.h).
 *
 * DESIGN: a producer handle created with test.mock.num.brokers owns
 * librdkafka's mock cluster, whose own threads serve clients on loopback
 * ports; we only create the topics and publish the address. The address file
 * is written atomically (temp + rename) so a reader never sees half a line,
 * and it is removed on stop only while it still holds our address, so a
 * second broker's file is never deleted by the first. */
#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka_mock.h>

#include "ul_err.h"

struct broker {
    ul_log *log; /* first member: the rd_kafka_t's opaque (log_kafka_conf) */
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mcluster;
    char *bootstraps;
    char *file; /* the address file we wrote, or NULL */
};

void broker_opts_init(broker_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->partitions = BROKER_DEFAULT_PARTITIONS;
    opts->n_brokers = 1;
}

void broker_opts_from_config(broker_opts *opts, const ul_config *cfg) {
    opts->n_topics = config_topics(cfg, opts->topics, BROKER_MAX_TOPICS);
    opts->bootstrap_file = cfg->bootstrap_file;
}

static int write_address_file(const char *path, const char *addr, char *errstr,
                              size_t errstr_size) {
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        ul_set_err(errstr, errstr_size, "%s: cannot write the broker address: %s", tmp,
                   strerror(errno));
        return UL_ERR_IO;
    }
    int bad = fprintf(f, "%s\n", addr) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        ul_set_err(errstr, errstr_size, "%s: cannot write the broker address: %s", path,
                   strerror(errno));
        unlink(tmp);
        return UL_ERR_IO;
    }
    return UL_OK;
}

/* Remove `path` if its first line is still `addr`. */
static void remove_address_file(const char *path, const char *addr) {
    char line[1024] = "";
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char *ok = fgets(line, sizeof(line), f);
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (ok && strcmp(line, addr) == 0)
        unlink(path);
}

static int create_topics(broker *b, const broker_opts *opts, char *errstr, size_t errstr_size) {
    for (int i = 0; i < opts->n_topics; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(b->mcluster, opts->topics[i], opts->partitions, 1);
        if (err) {
            ul_set_err(errstr, errstr_size, "creating topic %s: %s", opts->topics[i],
                       rd_kafka_err2str(err));
            return UL_ERR_STATE;
        }
        log_info(b->log, "broker", "topic %s: %d partitions", opts->topics[i], opts->partitions);
    }
    return UL_OK;
}

static rd_kafka_t *mock_handle(broker *b, int n_brokers, char *errstr, size_t errstr_size) {
    char kerr[512], num[16];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(num, sizeof(num), "%d", n_brokers);
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", num, kerr, sizeof(kerr)) ||
        rd_kafka_conf_set(conf, "client.id", "unlearnd-broker", kerr, sizeof(kerr))) {
        ul_set_err(errstr, errstr_size, "mock cluster config: %s", kerr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    log_kafka_conf(conf, &b->log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        ul_set_err(errstr, errstr_size, "cannot start the mock cluster: %s", kerr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

broker *broker_start(const broker_opts *opts, ul_log *lg, char *errstr, size_t errstr_size) {
    broker_opts defaults;
    if (opts == NULL) {
        broker_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts->partitions < 1 || opts->partitions > 1000 || opts->n_brokers < 1 ||
        opts->n_brokers > 16 || opts->n_topics < 0 || opts->n_topics > BROKER_MAX_TOPICS) {
        ul_set_err(errstr, errstr_size, "broker: partitions must be 1..1000, brokers 1..16");
        return NULL;
    }
    broker *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    b->log = lg;
    b->rk = mock_handle(b, opts->n_brokers, errstr, errstr_size);
    if (b->rk == NULL)
        goto fail;
    b->mcluster = rd_kafka_handle_mock_cluster(b->rk);
    const char *addr = b->mcluster ? rd_kafka_mock_cluster_bootstraps(b->mcluster) : NULL;
    if (addr == NULL || (b->bootstraps = strdup(addr)) == NULL) {
        ul_set_err(errstr, errstr_size, "the mock cluster did not start");
        goto fail;
    }
    if (create_topics(b, opts, errstr, errstr_size) != UL_OK)
        goto fail;
    if (opts->bootstrap_file && *opts->bootstrap_file) {
        if (write_address_file(opts->bootstrap_file, b->bootstraps, errstr, errstr_size))
            goto fail;
        b->file = strdup(opts->bootstrap_file);
        if (b->file == NULL) {
            remove_address_file(opts->bootstrap_file, b->bootstraps);
            ul_set_err(errstr, errstr_size, "out of memory");
            goto fail;
        }
    }
    log_info(b->log, "broker", "mock cluster of %d broker(s) at %s", opts->n_brokers,
             b->bootstraps);
    return b;
fail:
    broker_stop(b);
    return NULL;
}

const char *broker_bootstraps(const broker *b) {
    return b->bootstraps;
}

void broker_stop(broker *b) {
    if (b == NULL)
        return;
    if (b->file)
        remove_address_file(b->file, b->bootstraps);
    if (b->rk)
        rd_kafka_destroy(b->rk);
    free(b->file);
    free(b->bootstraps);
    free(b);
}
