/* test_forget.c: an unlearning cycle's computation (forget.h) against a
 * private redis-server: requests by items and by time window are resolved
 * against the histories; the receipts say requested / forgotten / not found /
 * beyond retention (a user never seen, the same items twice, items and
 * windows partly older than the retention); the forgotten ratings leave the
 * histories and the item counts and their predicted scores drop; a request
 * whose ratings watermark is unknown or not reached waits; one job spans
 * every partition; ratings applied while the job is out survive its merge
 * (row = online steps + the method's change); a partition dropped while the
 * job is out keeps its requests and rows; a failed method changes nothing;
 * the result survives a checkpoint and reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forget.h"
#include "forget_run.h"
#include "live.h"
#include "publish.h"
#include "rng.h"
#include "rows.h"
#include "store.h"
#include "store_fixture.h"
#include "ul_err.h"

#define K 8
#define PARTS 2

/* Encodes the checkpoints' exact item deliveries (live_opts.encode). */
static codec *the_codec;

static int forget_setup(void **state) {
    char err[UL_ERRSTR_SIZE];
    the_codec = codec_new(NULL, err, sizeof(err));
    if (the_codec == NULL) {
        print_error("codec_new: %s\n", err);
        return -1;
    }
    return setup(state);
}

static int forget_teardown(void **state) {
    codec_destroy(the_codec);
    return teardown(state);
}

static live *open_live(store *st, uint32_t retention) {
    char err[UL_ERRSTR_SIZE];
    live_opts o;
    live_opts_init(&o);
    o.k = K;
    o.retention = retention;
    o.encode = publish_delivery_record;
    o.encode_opaque = the_codec;
    live *l = live_new(&o, st, PARTS, err, sizeof(err));
    if (l == NULL)
        fail_msg("live_new: %s", err);
    return l;
}

/* Buffer forget_test_request(...) with `reason` in s. */
static void add_request(shard *s, int64_t offset, int64_t user, const int64_t *items, uint32_t n,
                        int64_t from, int64_t to, int reason) {
    forget_req fr = forget_test_request(offset, user, items, n, from, to);
    fr.reason = reason;
    assert_int_equal(shard_pending_add(s, &fr), 0);
    s->meta.forget_received++;
}

/* Background ratings: users 2..40 of `part` rate items 1..30 ~3. */
static void background(live *l, shard *s, int reps) {
    rng r;
    rng_seed(&r, 3);
    for (int rep = 0; rep < reps; rep++)
        for (int64_t u = 2; u <= 40; u++)
            if (rows_user_partition(u, PARTS) == s->partition)
                for (int64_t i = 1; i <= 30; i++)
                    assert_int_equal(
                        live_apply_rating(l, s, u, i, (float)(2 + rng_below(&r, 3)), 0), UL_OK);
}

/* A user of partition p (the first id from `from` on). */
static int64_t user_in(int32_t p, int64_t from) {
    while (rows_user_partition(from, PARTS) != p)
        from++;
    return from;
}

/* The live count of `item`'s ratings (replica statistics). */
static int64_t count_of(const live *l, int64_t item) {
    int64_t c;
    double sum;
    live_item_stats(l, item, &c, &sum);
    return c;
}

static double mean_score(live *l, shard *s, int64_t user, int64_t first, int64_t last) {
    int found;
    double t = 0;
    for (int64_t i = first; i <= last; i++)
        t += live_predict(l, s, user, i, &found);
    return t / (double)(last - first + 1);
}

static void test_forget_cycle(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st, 50);
    shard *s = live_assign(l, 0, NULL, err, sizeof(err));
    assert_non_null(s);
    background(l, s, 30);
    int64_t u = user_in(0, 100);
    /* u gives items 1..5 a 5, three times, at times 5000..; rates 6..15 at 1000. */
    for (int rep = 0; rep < 3; rep++) {
        for (int64_t i = 6; i <= 15; i++)
            live_apply_rating(l, s, u, i, 3.0f, 1000);
        for (int64_t i = 1; i <= 5; i++)
            live_apply_rating(l, s, u, i, 5.0f, 5000 + i);
    }
    double before = mean_score(l, s, u, 1, 5);
    uint64_t applied = s->meta.applied;
    int64_t count3 = count_of(l, 3);

    int64_t items[] = {1, 2, 3, 3, 999}; /* 3 twice, 999 never rated */
    add_request(s, 0, u, items, 5, 0, 0, CODEC_REASON_MISTAKE);
    add_request(s, 1, u, NULL, 0, 5004, 5005, CODEC_REASON_MISTAKE); /* items 4, 5 by time */
    int64_t unknown = user_in(0, 777);
    add_request(s, 2, unknown, items, 3, 0, 0, CODEC_REASON_MISTAKE); /* never seen */
    add_request(s, 3, u, items, 1, 0, 0, CODEC_REASON_MISTAKE);
    s->pending[3].ratings_hwm = 1000000; /* waits for ratings not applied yet */
    add_request(s, 4, u, items, 1, 0, 0, CODEC_REASON_MISTAKE);
    s->pending[4].ratings_hwm = FORGET_HWM_UNKNOWN; /* never eligible while unknown */
    s->meta.next_offset[SHARD_RATINGS] = 10;

    size_t n;
    forget_cycle *c = forget_test_run(l, "foldin", &n);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].n_receipts, 3);
    const codec_receipt *r = c[0].receipts;
    assert_string_equal(r[0].request_id, "req-0");
    assert_int_equal(r[0].forgotten, 9);
    assert_int_equal(r[0].requested, 4); /* distinct items */
    assert_int_equal(r[0].not_found, 1); /* 999 */
    assert_int_equal(r[0].beyond_retention, 0);
    assert_int_equal(r[1].forgotten, 6);
    assert_int_equal(r[1].requested, 0); /* a window */
    assert_int_equal(r[2].forgotten, 0);
    assert_int_equal(r[2].user_id, unknown);
    assert_int_equal(r[2].requested, 3);
    assert_int_equal(r[2].not_found, 3);
    assert_int_equal(r[0].completed_at, 12345);
    assert_int_equal(r[0].model_version, 1);
    assert_int_equal(c[0].n_forgotten, 15);
    assert_int_equal(c[0].version, 1);
    assert_int_equal(c[0].n_users, 1);
    assert_int_equal(c[0].user_ids[0], u);
    assert_true(c[0].n_items > 0);     /* foldin's item step: rows published */
    assert_int_equal(s->n_pending, 2); /* the waiting and the unknown one */
    assert_int_equal(s->meta.forgotten, 15);
    assert_int_equal(s->meta.forget_completed, 3);
    assert_int_equal(s->meta.applied, applied);
    assert_int_equal(s->user_flags[rowset_find(s->users, u)] & SHARD_USER_BUSY, 0);
    hist *h = shard_hist(s, rowset_find(s->users, u));
    assert_int_equal(h->n, 30);
    for (uint32_t e = 0; e < h->n; e++)
        assert_true(h->v[h->start + e].item > 5);
    /* item 3 lost u's three ratings in its count */
    assert_int_equal(count_of(l, 3), count3 - 3);
    double after = mean_score(l, s, u, 1, 5);
    print_message("mean predicted score of forgotten items: %.3f -> %.3f\n", before, after);
    assert_true(after < before - 0.15);
    forget_test_free(c, n);

    /* The user's side survives a checkpoint and reload (the items' side
     * travels through item-updates: test_live.c's test_forget_cycle). */
    assert_int_equal(live_checkpoint(l, s, err, sizeof(err)), UL_OK);
    live *l2 = open_live(fx->st, 50);
    shard *s2 = live_assign(l2, 0, NULL, err, sizeof(err));
    assert_int_equal(s2->n_pending, 2);
    assert_int_equal(s2->pending[0].offset, 3);
    assert_int_equal(shard_hist(s2, rowset_find(s2->users, u))->n, 30);
    int32_t x = rowset_find(s->users, u), x2 = rowset_find(s2->users, u);
    assert_memory_equal(rowset_row(s2->users, x2), rowset_row(s->users, x),
                        (1 + K) * sizeof(float));
    /* Once the ratings catch up, request 3 runs: its item is forgotten
     * already (the same items twice: not found the second time). */
    s2->meta.next_offset[SHARD_RATINGS] = 1000000;
    c = forget_test_run(l2, "foldin", &n);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].n_receipts, 1);
    assert_int_equal(c[0].receipts[0].forgotten, 0);
    assert_int_equal(c[0].receipts[0].not_found, 1);
    forget_test_free(c, n);
    assert_null(forget_test_run(l2, "foldin", &n)); /* request 4 still waits for its watermark */
    live_destroy(l2);
    live_destroy(l);
}

/* Retention 5: a user's oldest ratings leave the history; a receipt says
 * how many of a request's ratings may be among them. */
static void test_beyond_retention(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st, 5);
    shard *s = live_assign(l, 0, NULL, err, sizeof(err));
    background(l, s, 2);
    int64_t u = user_in(0, 200);
    for (int64_t i = 1; i <= 10; i++) /* items 1..5 (times 1..5) are dropped */
        assert_int_equal(live_apply_rating(l, s, u, 100 + i, 4.0f, i), UL_OK);
    const shard_evict *ev = shard_evicted(s, rowset_find(s->users, u));
    assert_non_null(ev);
    assert_int_equal(ev->count, 5);
    assert_int_equal(ev->tmin, 1);
    assert_int_equal(ev->tmax, 5);
    int64_t list[] = {101, 103, 108, 999};
    add_request(s, 0, u, list, 4, 0, 0, CODEC_REASON_ERASURE);
    add_request(s, 1, u, NULL, 0, 0, 3, CODEC_REASON_ERASURE);     /* meets 1..5 */
    add_request(s, 2, u, NULL, 0, 100, 200, CODEC_REASON_ERASURE); /* after everything */
    add_request(s, 3, u, NULL, 0, 0, 1000, CODEC_REASON_MISTAKE);  /* covers all */
    size_t n;
    forget_cycle *c = forget_test_run(l, "foldin", &n);
    assert_int_equal(n, 1);
    const codec_receipt *r = c[0].receipts;
    assert_int_equal(c[0].n_receipts, 4);
    assert_int_equal(r[0].requested, 4);
    assert_int_equal(r[0].forgotten, 1);        /* 108 */
    assert_int_equal(r[0].beyond_retention, 2); /* 101, 103 */
    assert_int_equal(r[0].not_found, 1);        /* 999 */
    assert_int_equal(r[1].forgotten, 0);
    assert_int_equal(r[1].beyond_retention, 5); /* at most: the window meets their range */
    assert_int_equal(r[2].beyond_retention, 0);
    assert_int_equal(r[3].forgotten, 4); /* the rest of the history */
    assert_int_equal(r[3].beyond_retention, 5);
    assert_int_equal(c[0].reasons[0], CODEC_REASON_ERASURE);
    assert_int_equal(c[0].reasons[3], CODEC_REASON_MISTAKE);
    forget_test_free(c, n);
    live_destroy(l);
}

/* One job over two partitions; partition 1 dropped while it is out keeps
 * its requests and its user's row; ratings applied meanwhile survive. */
static void test_job_spans_partitions(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st, 50);
    shard *s0 = live_assign(l, 0, NULL, err, sizeof(err)),
          *s1 = live_assign(l, 1, NULL, err, sizeof(err));
    background(l, s0, 10);
    background(l, s1, 10);
    int64_t u0 = user_in(0, 300), u1 = user_in(1, 300);
    for (int64_t i = 1; i <= 10; i++) {
        live_apply_rating(l, s0, u0, i, 5.0f, i);
        live_apply_rating(l, s1, u1, i, 5.0f, i);
    }
    int64_t items[] = {1, 2, 3};
    add_request(s0, 0, u0, items, 3, 0, 0, CODEC_REASON_MISTAKE);
    add_request(s1, 0, u1, items, 3, 0, 0, CODEC_REASON_MISTAKE);
    int32_t x0 = rowset_find(s0->users, u0), x1 = rowset_find(s1->users, u1);
    float row1[1 + K];
    memcpy(row1, rowset_row(s1->users, x1), sizeof(row1));
    int64_t count1 = count_of(l, 1);

    forget_opts o = forget_test_opts("foldin");
    forget_job *j = NULL;
    assert_int_equal(forget_prepare(l, &o, 0, &j, err, sizeof(err)), UL_OK);
    assert_non_null(j);
    assert_int_equal(forget_job_requests(j), 2);
    assert_int_equal(forget_job_ratings(j), 6);
    assert_true(s0->user_flags[x0] & SHARD_USER_BUSY);
    assert_true(s1->user_flags[x1] & SHARD_USER_BUSY);
    /* While the job is out: u0 rates item 20 (kept), partition 1 is dropped. */
    assert_int_equal(live_apply_rating(l, s0, u0, 20, 1.0f, 100), UL_OK);
    forget_compute(j);
    forget_drop_partition(j, 1);
    forget_cycle *c = NULL;
    size_t n = 0;
    assert_int_equal(forget_merge(l, j, 1, &c, &n, err, sizeof(err)), UL_OK);
    forget_job_free(l, j);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].partition, 0);
    assert_int_equal(s0->n_pending, 0);
    assert_int_equal(s1->n_pending, 1);
    assert_int_equal(s1->meta.version, 0);
    assert_memory_equal(rowset_row(s1->users, x1), row1, sizeof(row1));
    assert_int_equal(s1->user_flags[x1] & SHARD_USER_BUSY, 0);
    const hist *h = shard_hist(s0, x0);
    assert_int_equal(h->n, 8); /* 4..10 and the new 20 */
    assert_int_equal(h->v[h->start + h->n - 1].item, 20);
    /* Only partition 0's forgotten rating left item 1's count. */
    assert_int_equal(count_of(l, 1), count1 - 1);
    forget_test_free(c, n);
    live_destroy(l);
}

/* Apply the same online rating to (l, s) and return the user's row. */
static void online(live *l, shard *s, int64_t u, float *row) {
    assert_int_equal(live_apply_rating(l, s, u, 25, 2.0f, 50), UL_OK);
    memcpy(row, rowset_row(s->users, rowset_find(s->users, u)), (1 + K) * sizeof(float));
}

/* The merged row is the snapshot + the online steps made meanwhile + the
 * method's change: run the same job on two copies of the state, one with a
 * rating applied while it is out, and compare. */
/* The merge test's state: background, u's ratings, u's request. */
static shard *merge_state(live *l, int64_t u) {
    char err[UL_ERRSTR_SIZE];
    shard *s = live_assign(l, 0, NULL, err, sizeof(err));
    assert_non_null(s);
    background(l, s, 10);
    for (int64_t i = 1; i <= 12; i++)
        live_apply_rating(l, s, u, i, i <= 4 ? 5.0f : 3.0f, i);
    int64_t items[] = {1, 2, 3, 4};
    add_request(s, 0, u, items, 4, 0, 0, CODEC_REASON_MISTAKE);
    return s;
}

static void test_merge_keeps_online_steps(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    int64_t u = user_in(0, 400);
    /* Two lives built the same way (initial rows and steps are seeded): b
     * is a's state without the rating applied while the job is out. */
    live *a = open_live(fx->st, 50), *b = open_live(fx->st, 50);
    shard *sa = merge_state(a, u), *sb = merge_state(b, u);
    float r0[1 + K], r_online[1 + K], r_cycle[1 + K], r_both[1 + K];
    memcpy(r0, rowset_row(sa->users, rowset_find(sa->users, u)), sizeof(r0));

    forget_opts o = forget_test_opts("foldin");
    forget_job *j = NULL;
    forget_cycle *c = NULL;
    size_t n = 0;
    assert_int_equal(forget_prepare(a, &o, 0, &j, err, sizeof(err)), UL_OK);
    online(a, sa, u, r_online); /* while the job is out */
    forget_compute(j);
    assert_int_equal(forget_merge(a, j, 1, &c, &n, err, sizeof(err)), UL_OK);
    forget_job_free(a, j);
    forget_test_free(c, n);
    memcpy(r_both, rowset_row(sa->users, rowset_find(sa->users, u)), sizeof(r_both));

    c = forget_test_run(b, "foldin", &n); /* the same job, nothing meanwhile */
    forget_test_free(c, n);
    memcpy(r_cycle, rowset_row(sb->users, rowset_find(sb->users, u)), sizeof(r_cycle));
    for (int f = 0; f < 1 + K; f++) {
        float want = r0[f] + (r_online[f] - r0[f]) + (r_cycle[f] - r0[f]);
        assert_true(fabsf(r_both[f] - want) < 1e-5f);
        assert_true(fabsf(r_cycle[f] - r0[f]) > 1e-6f || f > 0); /* the method moved the bias */
    }
    const hist *h = shard_hist(sa, rowset_find(sa->users, u));
    assert_int_equal(h->n, 9); /* 5..12 and item 25 */
    live_destroy(b);
    live_destroy(a);
}

/* A method that fails changes nothing: the requests stay buffered. */
static void test_failed_method(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st, 50);
    shard *s = live_assign(l, 0, NULL, err, sizeof(err));
    background(l, s, 3);
    int64_t u = user_in(0, 2);
    int64_t items[] = {1};
    add_request(s, 0, u, items, 1, 0, 0, CODEC_REASON_MISTAKE);
    int32_t x = rowset_find(s->users, u);
    uint32_t n_hist = shard_hist(s, x)->n;
    forget_opts o = forget_test_opts("no-such-method");
    forget_job *j = NULL;
    forget_cycle *c = NULL;
    size_t n = 0;
    assert_int_equal(forget_prepare(l, &o, 0, &j, err, sizeof(err)), UL_OK);
    forget_compute(j);
    assert_int_equal(forget_merge(l, j, 1, &c, &n, err, sizeof(err)), UL_ERR_ABORTED);
    assert_non_null(strstr(err, "no-such-method"));
    forget_job_free(l, j);
    assert_int_equal(n, 0);
    assert_int_equal(s->n_pending, 1);
    assert_int_equal(s->meta.version, 0);
    assert_int_equal(shard_hist(s, x)->n, n_hist);
    assert_int_equal(s->user_flags[x] & SHARD_USER_BUSY, 0);
    live_destroy(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forget_cycle),
        cmocka_unit_test(test_beyond_retention),
        cmocka_unit_test(test_job_spans_partitions),
        cmocka_unit_test(test_merge_keeps_online_steps),
        cmocka_unit_test(test_failed_method),
    };
    return cmocka_run_group_tests_name("forget", tests, forget_setup, forget_teardown);
}
