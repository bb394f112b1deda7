/* pub_fixture.h: the store fixture (store_fixture.h) plus the local mock
 * broker (2 partitions per topic), a configuration pointing at it, a logger
 * and a codec: what a publisher needs. Shared by test_publish.c and
 * test_cycle.c (static functions: each test program includes it once). */
#ifndef UL_PUB_FIXTURE_H
#define UL_PUB_FIXTURE_H

#include <stdio.h>

#include "broker.h"
#include "config.h"
#include "log.h"
#include "store_fixture.h"
#include "worker.h"

/* The store fixture plus the local mock broker, for a publisher. */
typedef struct pub_fixture {
    fixture fx; /* first: need_redis() reads it through the state */
    broker *b;
    ul_config *cfg;
    ul_log *log;
    codec *codec;
} pub_fixture;

static int pub_setup(void **state) {
    static pub_fixture pf;
    void *fs = NULL;
    if (setup(&fs) != 0) /* the store fixture's */
        return -1;
    pf = (pub_fixture){*(fixture *)fs, NULL, config_new(), log_new(stderr, LOG_LEVEL_WARN), NULL};
    *state = &pf;
    char err[UL_ERRSTR_SIZE];
    broker_opts o;
    broker_opts_init(&o);
    broker_opts_from_config(&o, pf.cfg);
    o.partitions = 2;
    o.bootstrap_file = NULL;
    pf.b = broker_start(&o, pf.log, err, sizeof(err));
    int rc = pf.b ? config_set(pf.cfg, "kafka.bootstrap.servers", broker_bootstraps(pf.b), NULL,
                               err, sizeof(err))
                  : UL_ERR_IO;
    if (rc == UL_OK && (pf.codec = worker_codec_new(pf.cfg, err, sizeof(err))) == NULL)
        rc = UL_ERR_STATE;
    if (rc != UL_OK)
        print_error("setup: %s\n", err);
    return rc == UL_OK ? 0 : -1;
}

static int pub_teardown(void **state) {
    pub_fixture *pf = *state;
    codec_destroy(pf->codec);
    broker_stop(pf->b);
    log_destroy(pf->log);
    config_destroy(pf->cfg);
    void *fs = &pf->fx;
    return teardown(&fs);
}

#endif
