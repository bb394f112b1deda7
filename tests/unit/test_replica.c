/* test_replica.c: two lives sharing one store (a private redis-server, or
 * the cluster of UNLEARND_TEST_REDIS_CLUSTER) and one local mock broker,
 * exchanging item changes through the real item-updates topic: each has its
 * publisher (best-effort pushes, exact deliveries from the outbox, one entry
 * in flight per partition) and a consumer assigned every partition of the
 * topic, as the worker does. Both replicas end with the exact statistics of
 * every item and the same rows; the home owners' statistics in Redis are
 * exact; a delivery is dropped from the outbox once acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "kafka.h"
#include "publish.h"
#include "rng.h"
#include "store_fixture.h"
#include "worker.h"

#define K 4
#define PARTS 2
#define ITEMS 40

typedef struct side {
    store *st;
    live *lv;
    publisher *pub;
    metrics *m;
    rd_kafka_t *consumer;
    codec_item_updates u;
} side;

typedef struct rep_fixture {
    fixture fx; /* first: need_redis() reads it through the state */
    broker *b;
    ul_config *cfg;
    ul_log *log;
    codec *codec;
} rep_fixture;

static int rep_setup(void **state) {
    static rep_fixture rf;
    void *fs = NULL;
    if (setup(&fs) != 0)
        return -1;
    rf = (rep_fixture){*(fixture *)fs, NULL, config_new(), log_new(stderr, LOG_LEVEL_WARN), NULL};
    *state = &rf;
    char err[UL_ERRSTR_SIZE];
    broker_opts o;
    broker_opts_init(&o);
    broker_opts_from_config(&o, rf.cfg);
    o.partitions = PARTS;
    o.bootstrap_file = NULL;
    rf.b = broker_start(&o, rf.log, err, sizeof(err));
    int rc = rf.b ? config_set(rf.cfg, "kafka.bootstrap.servers", broker_bootstraps(rf.b), NULL,
                               err, sizeof(err))
                  : UL_ERR_IO;
    if (rc == UL_OK)
        rc = config_set(rf.cfg, "kafka.fetch.wait.max.ms", "10", NULL, err, sizeof(err));
    if (rc == UL_OK && (rf.codec = worker_codec_new(rf.cfg, err, sizeof(err))) == NULL)
        rc = UL_ERR_STATE;
    if (rc != UL_OK)
        print_error("setup: %s\n", err);
    return rc == UL_OK ? 0 : -1;
}

static int rep_teardown(void **state) {
    rep_fixture *rf = *state;
    codec_destroy(rf->codec);
    broker_stop(rf->b);
    log_destroy(rf->log);
    config_destroy(rf->cfg);
    void *fs = &rf->fx;
    return teardown(&fs);
}

static void side_open(rep_fixture *rf, side *sd, int32_t owned) {
    char err[UL_ERRSTR_SIZE];
    memset(sd, 0, sizeof(*sd));
    sd->st = fixture_store(&rf->fx);
    live_opts lo;
    live_opts_init(&lo);
    lo.k = K;
    lo.encode = publish_delivery_record;
    lo.encode_opaque = rf->codec;
    sd->lv = live_new(&lo, sd->st, PARTS, err, sizeof(err));
    if (sd->lv == NULL)
        fail_msg("live_new: %s", err);
    if (live_assign(sd->lv, owned, NULL, err, sizeof(err)) == NULL)
        fail_msg("assign: %s", err);
    sd->m = metrics_new();
    sd->pub = publish_new(rf->cfg, rf->log, sd->m, rf->codec, sd->lv, err, sizeof(err));
    assert_non_null(sd->pub);
    sd->consumer = kafka_client_new(rf->cfg, KAFKA_ASSIGNED, &rf->log, NULL, err, sizeof(err));
    assert_non_null(sd->consumer);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
    for (int32_t p = 0; p < PARTS; p++)
        rd_kafka_topic_partition_list_add(l, rf->cfg->topic_item_updates, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *e = rd_kafka_incremental_assign(sd->consumer, l);
    assert_null(e);
    rd_kafka_topic_partition_list_destroy(l);
}

static void side_close(side *sd) {
    rd_kafka_consumer_close(sd->consumer);
    rd_kafka_destroy(sd->consumer);
    publish_destroy(sd->pub);
    metrics_destroy(sd->m);
    live_destroy(sd->lv);
    store_destroy(sd->st);
    codec_item_updates_clear(&sd->u);
}

/* What the worker loop does for the side: push, checkpoint, deliver. */
static void side_housekeeping(side *sd) {
    char err[UL_ERRSTR_SIZE];
    live_push(sd->lv, SHARD_EVENT, publish_item_updates, sd->pub);
    for (int32_t p = 0; p < PARTS; p++) {
        shard *s = live_shard(sd->lv, p);
        if (s && live_checkpoint(sd->lv, s, err, sizeof(err)) != UL_OK)
            fail_msg("checkpoint: %s", err);
    }
    for (int round = 0; round < 8; round++) { /* one delivery entry in flight at a time */
        assert_int_equal(publish_deliveries(sd->pub, err, sizeof(err)), UL_OK);
        assert_int_equal(publish_flush(sd->pub, 10000), 0);
        assert_int_equal(publish_poll(sd->pub, err, sizeof(err)), UL_OK);
    }
}

/* Consume what arrived (until a quiet 300 ms). */
static void side_consume(const rep_fixture *rf, side *sd) {
    char err[UL_ERRSTR_SIZE];
    int quiet = 0;
    while (quiet < 6) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(sd->consumer, 50);
        if (rkm == NULL) {
            quiet++;
            continue;
        }
        quiet = 0;
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            assert_string_equal(rd_kafka_topic_name(rkm->rkt), rf->cfg->topic_item_updates);
            assert_int_equal(codec_decode_item_updates(rf->codec, rkm->payload, rkm->len, &sd->u,
                                                       err, sizeof(err)),
                             CODEC_OK);
            if (live_item_updates(sd->lv, rkm->partition, rkm->offset, &sd->u, err, sizeof(err)) !=
                UL_OK)
                fail_msg("item updates: %s", err);
        }
        rd_kafka_message_destroy(rkm);
    }
}

static void test_two_lives_one_broker(void **state) {
    rep_fixture *rf = *state;
    need_redis(state);
    char err[UL_ERRSTR_SIZE];
    side a, b;
    side_open(rf, &a, 0);
    side_open(rf, &b, 1);
    int64_t cnt[ITEMS + 1] = {0};
    double sum[ITEMS + 1] = {0};
    rng r;
    rng_seed(&r, 5);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 600; i++) {
            int64_t user = 1 + (int64_t)rng_below(&r, 60);
            int64_t item = 1 + (int64_t)rng_below(&r, ITEMS);
            float v = (float)(1 + rng_below(&r, 5));
            int32_t p = rows_user_partition(user, PARTS);
            side *sd = p == 0 ? &a : &b;
            assert_int_equal(live_apply_rating(sd->lv, live_shard(sd->lv, p), user, item, v, i),
                             UL_OK);
            cnt[item]++;
            sum[item] += v;
        }
        side_housekeeping(&a);
        side_housekeeping(&b);
        side_consume(rf, &a);
        side_consume(rf, &b);
    }
    /* Both replicas: every item's exact statistics and the same row. */
    for (int64_t i = 1; i <= ITEMS; i++) {
        int64_t ca, cb;
        double sa, sb;
        live_item_stats(a.lv, i, &ca, &sa);
        live_item_stats(b.lv, i, &cb, &sb);
        if (ca != cnt[i] || cb != cnt[i] || fabs(sa - sum[i]) > 1e-9 || fabs(sb - sum[i]) > 1e-9)
            fail_msg("item %lld: A %lld/%g, B %lld/%g, stream %lld/%g", (long long)i, (long long)ca,
                     sa, (long long)cb, sb, (long long)cnt[i], sum[i]);
        for (int f = 0; f <= K; f++)
            assert_true(fabsf(live_item_row(a.lv, i)[f] - live_item_row(b.lv, i)[f]) < 1e-4f);
    }
    /* The homes checkpoint what they applied: Redis's statistics are exact. */
    side_housekeeping(&a);
    side_housekeeping(&b);
    for (int64_t i = 1; i <= ITEMS; i++) {
        float row[3 + K];
        int found = 0;
        rows_stats st;
        assert_int_equal(store_item_get(rf->fx.st, rows_item_partition(i, PARTS), i, row, 3 + K,
                                        &found, &st, err, sizeof(err)),
                         UL_OK);
        assert_int_equal(st.count, cnt[i]);
        assert_true(fabs(st.sum - sum[i]) < 1e-9);
    }
    /* Every delivery was acknowledged and left the outboxes. */
    assert_int_equal(live_shard(a.lv, 0)->deliveries.n, 0);
    assert_int_equal(live_shard(b.lv, 1)->deliveries.n, 0);
    /* One delivery entry in flight per partition, in sequence order. */
    shard *s0 = live_shard(a.lv, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(live_apply_rating(a.lv, s0, 2, 7, 3.0f, i), UL_OK);
        assert_int_equal(live_checkpoint(a.lv, s0, err, sizeof(err)), UL_OK);
    }
    assert_int_equal(s0->deliveries.n, 2);
    assert_int_equal(publish_deliveries(a.pub, err, sizeof(err)), UL_OK);
    assert_int_equal(publish_deliveries(a.pub, err, sizeof(err)), UL_OK);
    assert_true(s0->deliveries.v[0].inflight && !s0->deliveries.v[1].inflight);
    assert_int_equal(publish_flush(a.pub, 10000), 0);
    assert_int_equal(publish_poll(a.pub, err, sizeof(err)), UL_OK);
    assert_int_equal(s0->deliveries.n, 1);
    assert_int_equal(s0->deliveries.v[0].version, s0->meta.out_seq - 1);
    side_close(&a);
    side_close(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_lives_one_broker),
    };
    return cmocka_run_group_tests_name("replica", tests, rep_setup, rep_teardown);
}
