/* store_fixture.h: the cmocka group fixture of the tests that need a Redis
 * store: a private redis-server (redis_local) and a store connected to it,
 * shared by test_store.c, test_live.c, test_publish.c and test_replica.c
 * (static functions: each test program includes it once). With
 * UNLEARND_TEST_REDIS_CLUSTER=host:port,... in the environment the store
 * connects to that Redis Cluster instead (tests/integration/
 * test_store_cluster.sh starts one and runs these programs against it).
 * Without redis-server installed the group starts and every test skips; a
 * server that does not start fails setup. */
#ifndef UL_STORE_FIXTURE_H
#define UL_STORE_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "redis_local.h"
#include "store.h"
#include "ul_err.h"

typedef struct fixture {
    redis_local *rl; /* NULL against a cluster */
    store *st;
    const char *cluster; /* the seeds, or NULL */
} fixture;

/* Options of a store on the fixture's Redis (inputs named). */
static void fixture_store_opts(const fixture *fx, store_opts *o) {
    store_opts_init(o);
    o->inputs[SHARD_RATINGS] = "ratings"; /* so the shards' offsets are stored */
    o->inputs[SHARD_FORGET] = "forget-requests";
    o->inputs[SHARD_ITEM_UPDATES] = "item-updates";
    if (fx->cluster) {
        o->cluster = fx->cluster;
        return;
    }
    o->port = redis_local_port(fx->rl);
    o->password = redis_local_password(fx->rl);
}

static int setup(void **state) {
    static fixture fx;
    char err[UL_ERRSTR_SIZE];
    memset(&fx, 0, sizeof(fx));
    *state = &fx;
    const char *seeds = getenv("UNLEARND_TEST_REDIS_CLUSTER");
    if (seeds && *seeds) {
        fx.cluster = seeds;
    } else {
        if (!redis_local_available(NULL))
            return 0;
        fx.rl = redis_local_start(NULL, 10000, err, sizeof(err));
        if (fx.rl == NULL) {
            print_error("redis_local_start: %s\n", err);
            return -1;
        }
    }
    store_opts o;
    fixture_store_opts(&fx, &o);
    fx.st = store_connect(&o, err, sizeof(err));
    if (fx.st == NULL) {
        print_error("store_connect: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    store_destroy(fx->st);
    redis_local_stop(fx->rl);
    return 0;
}

/* The fixture with an empty Redis, or a skip when there is no redis-server. */
static fixture *need_redis(void **state) {
    fixture *fx = *state;
    if (fx->st == NULL)
        skip();
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(store_clear_all(fx->st, err, sizeof(err)), UL_OK);
    return fx;
}

/* A second store on the same Redis (another worker's). */
static inline store *fixture_store(const fixture *fx) {
    char err[UL_ERRSTR_SIZE];
    store_opts o;
    fixture_store_opts(fx, &o);
    store *st = store_connect(&o, err, sizeof(err));
    if (st == NULL)
        fail_msg("store_connect: %s", err);
    return st;
}

#endif
