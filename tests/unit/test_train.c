/* test_train.c: continuous training (worker/train.h) on a live model over a
 * private redis-server, with a fake clock: the epoch order is a
 * permutation; the time budget holds (share of the wall time while events
 * flow and while idle, no slice longer than training.slice.ms, the poll
 * wait and the due flag agree with it); at most steps_per_event steps per
 * event while events flow; the off switch; training pauses
 * when an epoch stops improving and resumes on enough new ratings, on a
 * forget and on a partition change, not on too few ratings; users held by
 * an unlearning cycle are skipped (also a real job out on its thread, whose
 * merge then removes exactly the user's ratings); histories that shrink, slide or vanish
 * while an epoch runs are never read out of bounds; epochs lower the
 * training loss; the per-row schedule's passes grow one per epoch and a new
 * rating re-warms them; training's rows reach Redis at row flushes only,
 * with their schedule's state, and never add a rating. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "forget_run.h"
#include "live.h"
#include "publish.h"
#include "rows.h"
#include "store.h"
#include "store_fixture.h"
#include "train.h"
#include "ul_err.h"

#define K 8
#define PARTS 2
#define USERS 60
#define ITEMS 40

/* A clock that moves only when read (each read `tick` ms) or when the test
 * moves it: a slice's length is then a count of clock reads. */
typedef struct fake_clock {
    double now, tick;
} fake_clock;

static double fake_now(void *opaque) {
    fake_clock *c = opaque;
    double t = c->now;
    c->now += c->tick;
    return t;
}

/* A live owning partitions 0..owned-1; with `cd` its checkpoints encode
 * their exact item deliveries with it; read_only: a reader of the stored
 * state (store_shard_read), for checking what checkpoints wrote. */
static live *open_live_with(store *st, uint32_t retention, codec *cd, int read_only,
                            int32_t owned) {
    char err[UL_ERRSTR_SIZE];
    live_opts o;
    live_opts_init(&o);
    o.k = K;
    o.lr = 0.01f; /* events' online step: the worker's model.learning.rate */
    o.retention = retention;
    o.encode = cd ? publish_delivery_record : NULL;
    o.encode_opaque = cd;
    o.read_only = read_only;
    live *l = live_new(&o, st, PARTS, err, sizeof(err));
    if (l == NULL)
        fail_msg("live_new: %s", err);
    for (int32_t p = 0; p < owned; p++)
        if (live_assign(l, p, NULL, err, sizeof(err)) == NULL)
            fail_msg("live_assign: %s", err);
    return l;
}

static live *open_live(store *st, uint32_t retention) {
    return open_live_with(st, retention, NULL, 0, PARTS);
}

static shard *shard_of(live *l, int64_t user) {
    return live_shard(l, rows_user_partition(user, PARTS));
}

/* n ratings of users first..USERS and items 1..ITEMS with a pattern to
 * learn, the i-th at time `t0 + i`. */
static void feed_from(live *l, int64_t first, size_t n, uint64_t seed, int64_t t0) {
    for (size_t i = 0; i < n; i++) {
        uint64_t x = (seed + i) * 0x9e3779b97f4a7c15ULL;
        int64_t u = first + (int64_t)((x >> 20) % (uint64_t)(USERS - first + 1));
        int64_t it = 1 + (int64_t)((x >> 40) % ITEMS);
        float r = (float)(1 + (u % 3 + it % 3) % 5);
        assert_int_equal(live_apply_rating(l, shard_of(l, u), u, it, r, t0 + (int64_t)i), UL_OK);
    }
}

static void feed(live *l, size_t n, uint64_t seed, int64_t t0) {
    feed_from(l, 1, n, seed, t0);
}

static train *open_train(live *l, fake_clock *c, double share, double idle_share,
                         double min_improvement) {
    train_opts o;
    train_opts_init(&o);
    o.share = share;
    o.idle_share = idle_share;
    o.slice_ms = 2.0;
    o.min_improvement = min_improvement;
    o.steps_per_event = 0; /* the time budget alone (test_steps_per_event has the cap) */
    o.log_every_ms = 0;
    o.clock = fake_now;
    o.clock_opaque = c;
    train *t = train_new(&o, l, NULL, NULL);
    assert_non_null(t);
    return t;
}

static train_stats stats(const train *t) {
    train_stats st;
    train_get_stats(t, &st);
    return st;
}

/* Slices (1 ms of other work between them) until `epochs` epochs are done
 * or training pauses; at most `limit` slices. */
static void run_epochs(train *t, fake_clock *c, uint64_t epochs, int limit) {
    uint64_t until = stats(t).epochs + epochs;
    for (int i = 0; i < limit && stats(t).epochs < until && !stats(t).paused; i++) {
        c->now += 1.0;
        assert_true(train_slice(t, 0) >= 0);
    }
}

static void run_until_paused(train *t, fake_clock *c) {
    for (int i = 0; i < 20000 && !stats(t).paused; i++) {
        c->now += 1.0;
        assert_true(train_slice(t, 0) >= 0);
    }
    assert_true(stats(t).paused);
}

static const float *user_row(live *l, int64_t user) {
    shard *s = shard_of(l, user);
    return rowset_row_const(s->users, rowset_find(s->users, user));
}

static void test_perm_is_a_permutation(void **state) {
    (void)state;
    const uint64_t sizes[] = {1, 2, 3, 5, 16, 17, 1000, 4097, 70001};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        uint64_t n = sizes[k];
        uint8_t *seen = calloc(n, 1);
        train_perm p;
        train_perm_init(&p, n, 42 + k);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v = train_perm_at(&p, i);
            assert_true(v < n);
            assert_int_equal(seen[v], 0);
            seen[v] = 1;
        }
        free(seen);
    }
    /* Another seed, another order; and not the identity. */
    train_perm a, b;
    train_perm_init(&a, 1000, 1);
    train_perm_init(&b, 1000, 2);
    int same = 0, fixed = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        same += train_perm_at(&a, i) == train_perm_at(&b, i);
        fixed += train_perm_at(&a, i) == i;
    }
    assert_true(same < 50);
    assert_true(fixed < 50);
}

/* Simulate `iters` loop iterations of `work_ms` other work each, with or
 * without events; returns the share of the fake time spent in slices and
 * checks the longest slice. */
static double loop_share(train *t, fake_clock *c, int iters, double work_ms, size_t events,
                         double slice_ms) {
    double t0 = c->now, trained0 = stats(t).trained_ms, longest = 0;
    for (int i = 0; i < iters; i++) {
        c->now += work_ms;
        double before = c->now;
        assert_true(train_slice(t, events) >= 0);
        double took = c->now - before;
        longest = took > longest ? took : longest;
    }
    /* A slice ends at the first clock read past its deadline: one read of
     * STEPS_PER_CLOCK visits late at most (a few ticks here). */
    assert_true(longest <= slice_ms + 10 * c->tick);
    return (stats(t).trained_ms - trained0) / (c->now - t0);
}

static void test_budget_holds(void **state) {
    fixture *fx = need_redis(state);
    live *l = open_live(fx->st, 1000);
    feed(l, 20000, 1, 0);
    fake_clock c = {1000.0, 0.1};
    train *t = open_train(l, &c, 0.2, 0.6, -1.0); /* never pauses */
    double flowing = loop_share(t, &c, 1000, 1.0, 100, 2.0);
    assert_true(fabs(flowing - 0.2) < 0.03);
    assert_false(stats(t).idle);
    /* Long batches of records: the share holds too (the loop asks
     * train_due() and breaks out of its batch). */
    double t0 = c.now, trained0 = stats(t).trained_ms;
    for (int i = 0; i < 1000; i++) {
        for (int m = 0; m < 100 && !train_due(t); m++)
            c.now += 0.1; /* a record */
        assert_true(train_slice(t, 100) >= 0);
    }
    double batched = (stats(t).trained_ms - trained0) / (c.now - t0);
    assert_true(fabs(batched - 0.2) < 0.03);
    /* Idle: no events for TRAIN_IDLE_AFTER_MS, then idle.share. */
    loop_share(t, &c, (int)TRAIN_IDLE_AFTER_MS, 1.0, 0, 2.0);
    assert_true(stats(t).idle);
    double idle = loop_share(t, &c, 1000, 1.0, 0, 2.0);
    assert_true(fabs(idle - 0.6) < 0.05);
    /* Once the credit is spent (a few slices after a long pause: it is
     * capped at a few slices) it is not due and the poll may wait (at most
     * max_ms); once enough time passed, due and no wait. */
    c.now += 100.0;
    int slices = 0;
    while (train_due(t) && slices < 100) {
        assert_true(train_slice(t, 0) > 0);
        slices++;
    }
    assert_true(slices >= 2 && slices <= 8);
    assert_false(train_due(t));
    int wait = train_wait_ms(t, 50);
    assert_true(wait > 0 && wait <= 50);
    assert_int_equal(train_wait_ms(t, 1), 1);
    c.now += (double)wait + 1.0;
    assert_true(train_due(t));
    assert_int_equal(train_wait_ms(t, 50), 0);
    /* A share of 0 never trains while events flow. */
    train *none = open_train(l, &c, 0.0, 0.6, -1.0);
    assert_true(loop_share(none, &c, 300, 1.0, 1, 2.0) == 0.0);
    assert_int_equal(train_wait_ms(none, 50), 50);
    train_destroy(none);
    train_destroy(t);
    live_destroy(l);
}

/* While events flow, at most steps_per_event steps per event; idle, no cap. */
static void test_steps_per_event(void **state) {
    fixture *fx = need_redis(state);
    live *l = open_live(fx->st, 1000);
    feed(l, 20000, 9, 0);
    fake_clock c = {0.0, 0.1};
    train_opts o;
    train_opts_init(&o);
    o.share = o.idle_share = 1.0;
    o.slice_ms = 2.0;
    o.min_improvement = -1.0;
    o.steps_per_event = 0.25;
    o.log_every_ms = 0;
    o.clock = fake_now;
    o.clock_opaque = &c;
    train *t = train_new(&o, l, NULL, NULL);
    for (int i = 0; i < 1000; i++) {
        c.now += 1.0;
        assert_true(train_slice(t, 100) >= 0);
    }
    uint64_t flowing = stats(t).ratings;
    assert_true(flowing <= 25000 && flowing >= 25000 - 256);
    assert_int_equal(train_wait_ms(t, 50), 50); /* nothing to do until events arrive */
    for (int i = 0; i < 1000; i++) {
        c.now += 1.0;
        assert_true(train_slice(t, 0) >= 0);
    }
    assert_true(stats(t).idle);
    assert_true(stats(t).ratings > 2 * flowing);
    train_destroy(t);
    live_destroy(l);
}

static void test_disabled_changes_nothing(void **state) {
    fixture *fx = need_redis(state);
    live *l = open_live(fx->st, 1000);
    feed(l, 3000, 2, 0);
    float before[1 + K];
    memcpy(before, user_row(l, 5), sizeof(before));
    fake_clock c = {0.0, 0.02};
    train_opts o;
    train_opts_init(&o);
    o.enabled = 0;
    o.clock = fake_now;
    o.clock_opaque = &c;
    o.log_every_ms = 0;
    train *t = train_new(&o, l, NULL, NULL);
    for (int i = 0; i < 1000; i++) {
        c.now += 10.0;
        assert_int_equal(train_slice(t, 0), 0);
    }
    assert_false(train_due(t));
    assert_int_equal(train_wait_ms(t, 50), 50);
    assert_int_equal(stats(t).ratings, 0);
    assert_memory_equal(before, user_row(l, 5), sizeof(before));
    train_destroy(t);
    live_destroy(l);
}

/* Forget every rating of `user` through a real unlearning cycle. */
static void forget_user(live *l, int64_t user, int64_t offset) {
    shard *s = shard_of(l, user);
    forget_req fr = forget_test_request(offset, user, NULL, 0, 0, INT64_MAX);
    assert_int_equal(shard_pending_add(s, &fr), 0);
    size_t n = 0, forgotten = 0;
    forget_cycle *c = forget_test_run(l, "foldin", &n);
    assert_non_null(c);
    for (size_t i = 0; i < n; i++)
        forgotten += c[i].n_forgotten;
    assert_true(forgotten > 0);
    forget_test_free(c, n);
}

static void test_pause_and_resume(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st, 1000);
    feed(l, 3000, 3, 0);
    fake_clock c = {0.0, 1.0}; /* 512 visits a slice: at most one epoch ends in one */
    train *t = open_train(l, &c, 1.0, 1.0, 0.001);
    run_until_paused(t, &c);
    uint64_t epochs = stats(t).epochs, ratings = stats(t).ratings;
    assert_true(epochs >= 3);
    for (int i = 0; i < 100; i++) {
        c.now += 10.0;
        assert_int_equal(train_slice(t, 0), 0);
    }
    assert_false(train_due(t));
    assert_int_equal(stats(t).ratings, ratings);
    /* 1% of 3000 = 30 new ratings resume it; 20 do not. */
    feed(l, 20, 100, 10000);
    c.now += 10.0;
    assert_int_equal(train_slice(t, 1), 0);
    assert_true(stats(t).paused);
    feed(l, 10, 200, 20000);
    c.now += 10.0;
    assert_true(train_slice(t, 1) > 0);
    assert_false(stats(t).paused);
    run_until_paused(t, &c);
    assert_true(stats(t).epochs > epochs);
    /* A forget resumes it. */
    epochs = stats(t).epochs;
    forget_user(l, 7, 0);
    c.now += 10.0;
    assert_true(train_slice(t, 0) > 0);
    run_until_paused(t, &c);
    assert_true(stats(t).epochs > epochs);
    /* So does a partition given up (and one taken back). */
    epochs = stats(t).epochs;
    assert_int_equal(live_drop(l, 1, err, sizeof(err)), UL_OK);
    c.now += 10.0;
    assert_true(train_slice(t, 0) > 0);
    run_until_paused(t, &c);
    assert_true(stats(t).epochs > epochs);
    assert_non_null(live_assign(l, 1, NULL, err, sizeof(err)));
    c.now += 10.0;
    assert_true(train_slice(t, 0) > 0);
    train_destroy(t);
    live_destroy(l);
}

static void test_busy_users_are_skipped(void **state) {
    fixture *fx = need_redis(state);
    live *l = open_live(fx->st, 1000);
    feed(l, 3000, 4, 0);
    int64_t busy = 11, other = 12;
    shard *s = shard_of(l, busy);
    int32_t uidx = rowset_find(s->users, busy);
    assert_non_null(shard_hist(s, uidx));
    s->user_flags[uidx] |= SHARD_USER_BUSY;
    float held[1 + K], free_before[1 + K];
    memcpy(held, user_row(l, busy), sizeof(held));
    memcpy(free_before, user_row(l, other), sizeof(free_before));
    fake_clock c = {0.0, 1.0}; /* 512 visits a slice: at most one epoch ends in one */
    train *t = open_train(l, &c, 1.0, 1.0, -1.0);
    run_epochs(t, &c, 2, 10000);
    assert_int_equal(stats(t).epochs, 2);
    assert_true(stats(t).skipped_busy >= 2 * shard_hist(s, uidx)->n);
    assert_memory_equal(held, user_row(l, busy), sizeof(held));
    assert_memory_not_equal(free_before, user_row(l, other), sizeof(free_before));
    s->user_flags[uidx] &= (uint8_t)~SHARD_USER_BUSY;
    uint64_t skipped = stats(t).skipped_busy;
    run_epochs(t, &c, 2, 10000);
    assert_int_equal(stats(t).skipped_busy, skipped);
    assert_memory_not_equal(held, user_row(l, busy), sizeof(held));
    train_destroy(t);
    live_destroy(l);
}

/* An unlearning job out on its thread (forget.h: prepared, not merged yet)
 * holds its users: epochs meanwhile skip them, and the merge then removes
 * exactly the user's remembered ratings, with the counters exact. */
static void test_training_while_a_cycle_is_out(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st, 1000);
    feed(l, 3000, 5, 0);
    int64_t u = 13;
    shard *s = shard_of(l, u);
    int32_t uidx = rowset_find(s->users, u);
    uint32_t n = shard_hist(s, uidx)->n;
    uint64_t forgotten_before = s->meta.forgotten;
    assert_true(n > 0);
    float before[1 + K];
    memcpy(before, user_row(l, u), sizeof(before));
    forget_req fr = forget_test_request(7, u, NULL, 0, 0, INT64_MAX);
    assert_int_equal(shard_pending_add(s, &fr), 0);
    forget_opts o = forget_test_opts("foldin");
    forget_job *j = NULL;
    assert_int_equal(forget_prepare(l, &o, 0, &j, err, sizeof(err)), UL_OK);
    assert_non_null(j);
    assert_true(s->user_flags[uidx] & SHARD_USER_BUSY);
    fake_clock c = {0.0, 1.0};
    train *t = open_train(l, &c, 1.0, 1.0, -1.0);
    run_epochs(t, &c, 2, 10000);
    assert_int_equal(stats(t).epochs, 2);
    assert_true(stats(t).skipped_busy >= 2 * n);
    assert_memory_equal(before, user_row(l, u), sizeof(before));
    forget_compute(j);
    forget_cycle *out = NULL;
    size_t n_out = 0, forgotten = 0;
    assert_int_equal(forget_merge(l, j, 12345, &out, &n_out, err, sizeof(err)), UL_OK);
    forget_job_free(l, j);
    for (size_t i = 0; i < n_out; i++)
        forgotten += out[i].n_forgotten;
    assert_int_equal(forgotten, n);
    assert_int_equal(shard_hist(s, uidx)->n, 0);
    assert_int_equal(s->meta.forgotten, forgotten_before + n);
    assert_int_equal(s->user_flags[uidx] & SHARD_USER_BUSY, 0);
    forget_test_free(out, n_out);
    train_destroy(t);
    live_destroy(l);
}

/* An epoch spans many slices; meanwhile users' histories vanish (forgets)
 * and slide (new ratings past the retention), and in the next epoch a
 * partition goes away. Every visit of a rating no longer there is skipped:
 * a forgotten user's row never moves again (their stale entries are still
 * in the history's buffer), and ASan sees every read. */
static void test_histories_change_during_an_epoch(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st, 40); /* users hold ~40: new ratings evict */
    feed(l, 6000, 5, 0);
    fake_clock c = {0.0, 1.0}; /* 2 reads per 2 ms slice: 512 visits a slice */
    train *t = open_train(l, &c, 1.0, 1.0, -1.0);
    c.now += 10.0;
    assert_true(train_slice(t, 0) > 0);
    train_stats st = stats(t);
    assert_true(st.epoch_pos > 0 && st.epoch_pos < st.epoch_size / 2);
    float gone_row[1 + K];
    for (int64_t u = 1; u <= 10; u++)
        forget_user(l, u, u);
    memcpy(gone_row, user_row(l, 3), sizeof(gone_row));
    feed_from(l, 11, 400, 6, 100000); /* slides the other users' histories */
    uint64_t epochs = stats(t).epochs;
    for (int i = 0; i < 1000 && stats(t).epochs == epochs; i++) {
        c.now += 10.0;
        assert_true(train_slice(t, 1) >= 0);
    }
    assert_int_equal(stats(t).epochs, epochs + 1);
    assert_true(stats(t).skipped_gone > 0);
    assert_memory_equal(gone_row, user_row(l, 3), sizeof(gone_row));
    /* The next epoch plans what is there now: nothing is skipped, until a
     * partition goes away in the middle of it. */
    uint64_t gone = stats(t).skipped_gone;
    run_epochs(t, &c, 1, 1000);
    assert_int_equal(stats(t).skipped_gone, gone);
    c.now += 10.0;
    assert_true(train_slice(t, 0) > 0);
    assert_int_equal(live_drop(l, 0, err, sizeof(err)), UL_OK);
    run_epochs(t, &c, 1, 1000);
    assert_true(stats(t).skipped_gone > gone);
    train_destroy(t);
    live_destroy(l);
}

/* The schedule's passes of user row uidx (the row state of rows.h). */
static float passes(shard *s, int32_t uidx) {
    return rowset_row_const(s->users, uidx)[rows_state_index(K)];
}

static void test_epochs_lower_the_loss(void **state) {
    fixture *fx = need_redis(state);
    live *l = open_live(fx->st, 1000);
    feed(l, 4000, 7, 0);
    fake_clock c = {0.0, 1.0}; /* 512 visits a slice: at most one epoch ends in one */
    train *t = open_train(l, &c, 1.0, 1.0, -1.0);
    run_epochs(t, &c, 1, 10000);
    double first = stats(t).last_rmse;
    run_epochs(t, &c, 6, 10000);
    assert_int_equal(stats(t).epochs, 7);
    assert_true(first > 0);
    assert_true(stats(t).last_rmse < 0.8 * first);
    train_destroy(t);
    live_destroy(l);
}

/* The per-row schedule's bookkeeping (live_sgd): a pass per epoch, and a
 * new rating enters with 0 passes, keeping the row's rate the mean of its
 * ratings' rates. */
static void test_passes_and_rewarm(void **state) {
    fixture *fx = need_redis(state);
    live *l = open_live(fx->st, 1000);
    feed(l, 3000, 8, 0);
    int64_t u = 21;
    shard *s = shard_of(l, u);
    int32_t uidx = rowset_find(s->users, u);
    assert_true(passes(s, uidx) == 0.0f); /* the stream enters ratings with 0 passes */
    fake_clock c = {0.0, 1.0};            /* 512 visits a slice: at most one epoch ends in one */
    train *t = open_train(l, &c, 1.0, 1.0, -1.0);
    run_epochs(t, &c, 3, 10000);
    assert_int_equal(stats(t).epochs, 3);
    float n = (float)shard_hist(s, uidx)->n;
    assert_true(fabsf(passes(s, uidx) - 3.0f) < 1e-3f);
    assert_int_equal(live_apply_rating(l, s, u, 1, 4.0f, 50000), UL_OK);
    float d = 0.79f, want = logf((n * powf(d, 3.0f) + 1.0f) / (n + 1.0f)) / logf(d);
    assert_true(fabsf(passes(s, uidx) - want) < 1e-3f);
    assert_true(want < 3.0f);
    train_destroy(t);
    live_destroy(l);
}

static void checkpoint_all(live *l) {
    char err[UL_ERRSTR_SIZE];
    for (int32_t p = 0; p < PARTS; p++)
        if (live_checkpoint(l, live_shard(l, p), err, sizeof(err)) != UL_OK)
            fail_msg("checkpoint of %d: %s", (int)p, err);
}

/* What Redis holds for `user` (a reader's load): its row (rows_dim floats
 * into row), its history length; the partitions' applied counts summed. */
static void stored(store *st, int64_t user, float *row, uint32_t *hist_n, uint64_t *applied) {
    live *r = open_live_with(st, 1000, NULL, 1, PARTS);
    shard *s = shard_of(r, user);
    int32_t uidx = rowset_find(s->users, user);
    assert_true(uidx >= 0);
    memcpy(row, rowset_row_const(s->users, uidx), (size_t)rows_dim(ROWS_USER, K) * sizeof(float));
    *hist_n = shard_hist(s, uidx)->n;
    *applied = 0;
    for (int32_t p = 0; p < PARTS; p++)
        *applied += live_shard(r, p)->meta.applied;
    live_destroy(r);
}

/* Training's changes reach Redis at row flushes only (user rows with their
 * schedule's state), never as events: a checkpoint after training writes
 * nothing, and after a row flush the applied counts and histories are still
 * the events' (no rating carried twice). */
static void test_rows_wait_for_a_flush(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    codec *cd = codec_new(NULL, err, sizeof(err));
    assert_non_null(cd);
    live *l = open_live_with(fx->st, 1000, cd, 0, PARTS);
    feed(l, 3000, 9, 0);
    checkpoint_all(l);
    int64_t u = 21;
    size_t dim = (size_t)rows_dim(ROWS_USER, K);
    float before[64], trained[64], got[64];
    uint32_t n0, n1;
    uint64_t a0, a1;
    assert_true(dim <= 64);
    stored(fx->st, u, before, &n0, &a0);
    assert_int_equal(a0, 3000);
    assert_memory_equal(before, user_row(l, u), dim * sizeof(float));
    fake_clock c = {0.0, 1.0};
    train *t = open_train(l, &c, 1.0, 1.0, -1.0);
    run_epochs(t, &c, 3, 10000);
    assert_int_equal(stats(t).epochs, 3);
    memcpy(trained, user_row(l, u), dim * sizeof(float));
    assert_true(memcmp(before, trained, dim * sizeof(float)) != 0);
    for (int32_t p = 0; p < PARTS; p++)
        assert_int_equal(shard_is_dirty(live_shard(l, p)), 0);
    checkpoint_all(l);
    stored(fx->st, u, got, &n1, &a1);
    assert_memory_equal(before, got, dim * sizeof(float)); /* not at a checkpoint */
    for (int32_t p = 0; p < PARTS; p++)
        live_flush_due(l, p);
    checkpoint_all(l);
    stored(fx->st, u, got, &n1, &a1);
    assert_memory_equal(trained, got, dim * sizeof(float)); /* at the row flush, passes too */
    assert_true(fabsf(got[rows_state_index(K)] - 3.0f) < 1e-3f);
    assert_int_equal(n1, n0);
    assert_int_equal(a1, 3000);
    train_destroy(t);
    live_destroy(l);
    codec_destroy(cd);
}

/* With half the partitions (another worker owns the rest and its ratings
 * are in the item's live count), an item row's passes still grow by about
 * one per epoch: the schedule counts the owned share of its ratings. */
static void test_item_passes_with_half_the_partitions(void **state) {
    fixture *fx = need_redis(state);
    live *l = open_live_with(fx->st, 1000, NULL, 0, 1);
    shard *s = live_shard(l, 0);
    int64_t n_item1 = 0;
    for (int rep = 0; rep < 4; rep++)
        for (int64_t u = 1; u <= USERS; u++)
            for (int64_t it = 1; it <= ITEMS; it++)
                if (rows_user_partition(u, PARTS) == 0) {
                    float r = (float)(1 + (u % 3 + it % 3) % 5);
                    assert_int_equal(live_apply_rating(l, s, u, it, r, rep), UL_OK);
                    n_item1 += it == 1;
                }
    assert_true(n_item1 > 0);
    /* The other partition's ratings of item 1, as its exact delivery adds them. */
    assert_int_equal(live_correct_item(l, s, 1, NULL, n_item1, 3.0 * (double)n_item1), UL_OK);
    fake_clock c = {0.0, 1.0};
    train *t = open_train(l, &c, 1.0, 1.0, -1.0);
    run_epochs(t, &c, 3, 10000);
    assert_int_equal(stats(t).epochs, 3);
    float passes1 = live_item_row(l, 1)[rows_state_index(K)];
    if (fabsf(passes1 - 3.0f) > 0.1f)
        fail_msg("item 1: %g passes after 3 epochs", (double)passes1);
    train_destroy(t);
    live_destroy(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_perm_is_a_permutation),
        cmocka_unit_test(test_budget_holds),
        cmocka_unit_test(test_steps_per_event),
        cmocka_unit_test(test_disabled_changes_nothing),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_busy_users_are_skipped),
        cmocka_unit_test(test_training_while_a_cycle_is_out),
        cmocka_unit_test(test_histories_change_during_an_epoch),
        cmocka_unit_test(test_epochs_lower_the_loss),
        cmocka_unit_test(test_passes_and_rewarm),
        cmocka_unit_test(test_rows_wait_for_a_flush),
        cmocka_unit_test(test_item_passes_with_half_the_partitions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
