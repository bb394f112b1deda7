/* test_cycle.c: unlearning cycles through cycle.h, against a private
 * redis-server and the local mock broker: a job over both partitions is
 * computed on the cycle thread while ratings keep being applied, merged, and
 * finished partition by partition (the outbox entry is in Redis before it is
 * published); once Kafka acknowledged it, cycle_settle deletes it from Redis
 * at once (not at the next checkpoint); a partition given up while its job
 * is out keeps its request for the next owner; cycle_drain finishes the job
 * out; a checkpoint whose fence moved goes to the worker's handler. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cycle.h"
#include "pub_fixture.h"
#include "rows.h"

#define K 4

/* What the checkpoint_failed callback saw. */
typedef struct ckpt_fail {
    int calls;
    int32_t p;
    int rc;
} ckpt_fail;

static void on_ckpt_fail(void *opaque, int32_t p, int rc, const char *err) {
    ckpt_fail *f = opaque;
    (void)err;
    f->calls++;
    f->p = p;
    f->rc = rc;
}

typedef struct rig {
    live *lv;
    shard *s[2];
    metrics *m;
    publisher *pub;
    cycle *c;
    ckpt_fail failed;
    uint64_t applied0; /* partition 0's applied count when the cycle started */
} rig;

static int64_t user_in(int32_t p, int64_t from) {
    while (rows_user_partition(from, 2) != p)
        from++;
    return from;
}

static void add_request(shard *s, int64_t offset, int64_t user, int64_t item) {
    forget_req fr;
    memset(&fr, 0, sizeof(fr));
    fr.offset = offset;
    fr.user = user;
    char id[32];
    snprintf(id, sizeof(id), "c-%d-%lld", (int)s->partition, (long long)offset);
    fr.request_id = strdup(id);
    fr.items = malloc(sizeof(int64_t));
    fr.items[0] = item;
    fr.n_items = 1;
    fr.ratings_hwm = 0;
    fr.unsaved = 1;
    assert_int_equal(shard_pending_add(s, &fr), 0);
}

/* Both partitions owned, 30 users rating 10 items, one request each (user
 * u_p forgets item 3), checkpointed; the cycle machinery on top. */
static void rig_up(pub_fixture *pf, rig *r) {
    char err[UL_ERRSTR_SIZE];
    live_opts lo;
    live_opts_init(&lo);
    lo.k = K;
    lo.encode = publish_delivery_record; /* the checkpoints' item deliveries */
    lo.encode_opaque = pf->codec;
    memset(&r->failed, 0, sizeof(r->failed));
    r->lv = live_new(&lo, pf->fx.st, 2, err, sizeof(err));
    assert_non_null(r->lv);
    for (int p = 0; p < 2; p++) {
        r->s[p] = live_assign(r->lv, p, NULL, err, sizeof(err));
        assert_non_null(r->s[p]);
    }
    for (int64_t u = 1; u <= 30; u++)
        for (int64_t i = 1; i <= 10; i++)
            assert_int_equal(live_apply_rating(r->lv, r->s[rows_user_partition(u, 2)], u, i,
                                               (float)(1 + (u + i) % 5), i),
                             UL_OK);
    for (int p = 0; p < 2; p++) {
        add_request(r->s[p], 0, user_in(p, 1), 3);
        assert_int_equal(live_checkpoint(r->lv, r->s[p], err, sizeof(err)), UL_OK);
    }
    r->m = metrics_new();
    r->pub = publish_new(pf->cfg, pf->log, r->m, pf->codec, r->lv, err, sizeof(err));
    assert_non_null(r->pub);
    cycle_opts co = {.lv = r->lv,
                     .st = pf->fx.st,
                     .pub = r->pub,
                     .metrics = r->m,
                     .log = pf->log,
                     .forget = {.max_batch = 100, .method = "foldin"},
                     .checkpoint_failed = on_ckpt_fail,
                     .opaque = &r->failed};
    unlearn_params_init(&co.forget.uparams);
    r->c = cycle_new(&co, err, sizeof(err));
    assert_non_null(r->c);
}

/* rig_up on the test's fixture, then the first cycle started. */
static pub_fixture *rig_start(void **state, rig *r) {
    pub_fixture *pf = *state;
    need_redis(state);
    char err[UL_ERRSTR_SIZE];
    rig_up(pf, r);
    r->applied0 = r->s[0]->meta.applied;
    assert_int_equal(cycle_start(r->c, err, sizeof(err)), UL_OK);
    return pf;
}

static void rig_down(rig *r) {
    cycle_destroy(r->c);
    publish_flush(r->pub, 10000);
    publish_destroy(r->pub);
    metrics_destroy(r->m);
    live_destroy(r->lv);
}

/* The partition as Redis holds it now. */
static shard *stored(pub_fixture *pf, int32_t p) {
    char err[UL_ERRSTR_SIZE];
    shard *s = shard_new(p, K, 1, 0.1f, 50);
    assert_non_null(s);
    if (store_shard_read(pf->fx.st, s, err, sizeof(err)) != UL_OK)
        fail_msg("load: %s", err);
    return s;
}

/* Partition p in Redis holds `pending` requests and completed `completed`. */
static void expect_stored(pub_fixture *pf, int32_t p, size_t pending, uint64_t completed) {
    shard *s = stored(pf, p);
    assert_int_equal(s->n_pending, pending);
    assert_int_equal(s->meta.forget_completed, completed);
    shard_destroy(s);
}

static void nap(void) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
}

/* cycle_poll (applying a rating now and then) until partition p completed
 * `want` requests; fails after 10 s. */
static void poll_until(rig *r, int32_t p, uint64_t want) {
    char err[UL_ERRSTR_SIZE];
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(cycle_poll(r->c, err, sizeof(err)), UL_OK);
        if (r->s[p] != NULL && r->s[p]->meta.forget_completed >= want && r->s[p]->outbox.n > 0 &&
            r->s[p]->outbox.v[0].inflight)
            return;
        assert_int_equal(live_apply_rating(r->lv, r->s[0], user_in(0, 1), 20, 4.0f, 99), UL_OK);
        nap();
    }
    fail_msg("partition %d never completed %llu requests", (int)p, (unsigned long long)want);
}

static void test_cycle_publishes_then_deletes(void **state) {
    char err[UL_ERRSTR_SIZE];
    rig r;
    pub_fixture *pf = rig_start(state, &r);
    poll_until(&r, 0, 1);
    poll_until(&r, 1, 1);
    assert_true(r.s[0]->meta.applied > r.applied0); /* ratings went on meanwhile */
    for (int p = 0; p < 2; p++) { /* checkpointed with its outbox entry before publishing */
        shard *s = stored(pf, p);
        assert_int_equal(s->meta.forget_completed, 1);
        assert_int_equal(s->n_pending, 0);
        assert_int_equal(s->outbox.n, 1);
        shard_destroy(s);
    }
    assert_int_equal(publish_flush(r.pub, 10000), 0);
    assert_int_equal(cycle_settle(r.c, err, sizeof(err)), UL_OK);
    for (int p = 0; p < 2; p++) { /* deleted now, not at the next checkpoint */
        assert_int_equal(r.s[p]->outbox.n, 0);
        shard *s = stored(pf, p);
        assert_int_equal(s->outbox.n, 0);
        shard_destroy(s);
    }
    assert_int_equal(metrics_count(r.m, METRICS_FORGET_COMPLETED), 2);
    rig_down(&r);
}

static void test_partition_given_up_while_out(void **state) {
    char err[UL_ERRSTR_SIZE];
    rig r;
    pub_fixture *pf = rig_start(state, &r);
    cycle_give_up(r.c, 1); /* a rebalance while the thread computes */
    assert_int_equal(live_revoke(r.lv, 1, err, sizeof(err)), UL_OK);
    r.s[1] = NULL;
    poll_until(&r, 0, 1);
    expect_stored(pf, 1, 1, 0); /* the next owner finds the request */
    /* Taken back: the request runs in the next cycle. */
    r.s[1] = live_assign(r.lv, 1, NULL, err, sizeof(err));
    assert_non_null(r.s[1]);
    assert_int_equal(r.s[1]->n_pending, 1);
    r.s[1]->pending[0].ratings_hwm = 0;
    assert_int_equal(cycle_start(r.c, err, sizeof(err)), UL_OK);
    assert_int_equal(cycle_drain(r.c, err, sizeof(err)), UL_OK);
    assert_int_equal(r.s[1]->meta.forget_completed, 1);
    assert_int_equal(r.s[1]->n_pending, 0);
    rig_down(&r);
}

/* Another worker takes partition 0 while its job is out: its checkpoint
 * finds the fence moved, which goes to checkpoint_failed (the worker
 * reloads the partition) instead of stopping the cycles; partition 1 is
 * finished as usual and partition 0's request stays in Redis. */
static void test_fence_moved_while_out(void **state) {
    char err[UL_ERRSTR_SIZE];
    rig r;
    pub_fixture *pf = rig_start(state, &r);
    shard *zombie = shard_new(0, K, 1, 0.1f, 50);
    assert_non_null(zombie);
    assert_int_equal(store_shard_load(pf->fx.st, zombie, err, sizeof(err)), UL_OK); /* takes it */
    shard_destroy(zombie);
    if (cycle_drain(r.c, err, sizeof(err)) != UL_OK)
        fail_msg("drain: %s", err);
    assert_int_equal(r.failed.calls, 1);
    assert_int_equal(r.failed.p, 0);
    assert_int_equal(r.failed.rc, STORE_ERR_FENCE);
    expect_stored(pf, 0, 1, 0);
    expect_stored(pf, 1, 0, 1);
    rig_down(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cycle_publishes_then_deletes),
        cmocka_unit_test(test_partition_given_up_while_out),
        cmocka_unit_test(test_fence_moved_while_out),
    };
    return cmocka_run_group_tests_name("cycle", tests, pub_setup, pub_teardown);
}
