/* test_live.c: the live model against a private redis-server: ratings
 * update rows and counters; a restart from the last checkpoint plus a
 * replay gives the same counts and (nearly) the same rows as an
 * uninterrupted run; two owners of different partitions never lose each
 * other's item updates; an unlearning cycle resolves requests by items and by
 * time window, drops the forgotten ratings, lowers their predicted scores,
 * answers 0 for unknown users and waits for preceding ratings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "live.h"
#include "rng.h"
#include "store.h"
#include "forget_fixture.h"
#include "store_fixture.h"
#include "ul_err.h"

#define K 8
#define PARTS 2

static live *open_live(store *st) {
    char err[UL_ERRSTR_SIZE];
    live_opts o;
    live_opts_init(&o);
    o.k = K;
    o.retention = 50;
    o.method = "foldin";
    live *l = live_new(&o, st, PARTS, err, sizeof(err));
    if (l == NULL)
        fail_msg("live_new: %s", err);
    return l;
}

/* A synthetic stream: user u (1..40) in partition u % PARTS, items 1..30. */
typedef struct ev {
    int64_t user, item, time;
    float rating;
} ev;

static ev *make_stream(size_t n) {
    ev *v = malloc(n * sizeof(*v));
    rng r;
    rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) {
        v[i].user = 1 + (int64_t)rng_below(&r, 40);
        v[i].item = 1 + (int64_t)rng_below(&r, 30);
        v[i].rating = (float)(1 + rng_below(&r, 5));
        v[i].time = 1000 * (int64_t)i;
    }
    return v;
}

/* Apply events [from, to) of partition p, advancing its offset (the event's
 * index in the partition's sub-stream). */
static void feed(live *l, shard *s, const ev *v, size_t n, int64_t from, int64_t to) {
    int64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].user % PARTS != s->partition)
            continue;
        if (off >= from && off < to) {
            assert_int_equal(live_apply_rating(l, s, v[i].user, v[i].item, v[i].rating, v[i].time),
                             UL_OK);
            s->meta.next_offset[SHARD_RATINGS] = off + 1;
        }
        off++;
    }
}

static void test_replay_exactly_once(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    size_t n = 4000;
    ev *v = make_stream(n);
    /* Uninterrupted reference, kept in memory only. */
    live *ref = open_live(fx->st);
    shard *r0 = live_assign(ref, 0, err, sizeof(err));
    assert_non_null(r0);
    feed(ref, r0, v, n, 0, INT64_MAX);
    uint64_t total = r0->meta.applied;
    assert_true(total > 1500 && total < 2500);

    /* Run A: checkpoint at 1000, apply more, "crash" (no checkpoint). */
    live *a = open_live(fx->st);
    shard *a0 = live_assign(a, 0, err, sizeof(err));
    feed(a, a0, v, n, 0, 1000);
    assert_int_equal(live_checkpoint(a, a0, err, sizeof(err)), UL_OK);
    feed(a, a0, v, n, 1000, 1700);
    live_destroy(a);

    /* Run B resumes from the stored offset. */
    live *b = open_live(fx->st);
    shard *b0 = live_assign(b, 0, err, sizeof(err));
    assert_non_null(b0);
    assert_int_equal(b0->meta.applied, 1000);
    assert_int_equal(b0->meta.next_offset[SHARD_RATINGS], 1000);
    feed(b, b0, v, n, b0->meta.next_offset[SHARD_RATINGS], INT64_MAX);
    assert_int_equal(b0->meta.applied, total);
    /* Same model up to float rounding of the delta bookkeeping. */
    for (int64_t u = 0; u < 40; u += PARTS)
        for (int64_t i = 1; i <= 30; i++) {
            int f1, f2;
            float p1 = live_predict(ref, r0, u, i, &f1), p2 = live_predict(b, b0, u, i, &f2);
            assert_int_equal(f1, f2);
            assert_true(fabsf(p1 - p2) < 1e-3f);
        }
    live_destroy(b);
    live_destroy(ref);
    free(v);
}

static void test_two_owners_keep_both_item_updates(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    size_t n = 3000;
    ev *v = make_stream(n);
    live *one = open_live(fx->st);
    shard *o0 = live_assign(one, 0, err, sizeof(err)), *o1 = live_assign(one, 1, err, sizeof(err));
    feed(one, o0, v, n, 0, INT64_MAX);
    feed(one, o1, v, n, 0, INT64_MAX);
    float count_one = live_item_row(one, 5)[1 + K];
    assert_true(count_one > 50);
    live_destroy(one);
    assert_int_equal(store_clear_all(fx->st, err, sizeof(err)), UL_OK);

    /* Two workers, one partition each, interleaved and checkpointing. */
    live *a = open_live(fx->st), *b = open_live(fx->st);
    shard *a0 = live_assign(a, 0, err, sizeof(err)), *b1 = live_assign(b, 1, err, sizeof(err));
    feed(a, a0, v, n, 0, 500);
    feed(b, b1, v, n, 0, 500);
    assert_int_equal(live_checkpoint(a, a0, err, sizeof(err)), UL_OK);
    assert_int_equal(live_checkpoint(b, b1, err, sizeof(err)), UL_OK);
    assert_int_equal(live_refresh(a, err, sizeof(err)), UL_OK);
    assert_int_equal(live_refresh(b, err, sizeof(err)), UL_OK);
    feed(a, a0, v, n, 500, INT64_MAX);
    feed(b, b1, v, n, 500, INT64_MAX);
    assert_int_equal(live_checkpoint(a, a0, err, sizeof(err)), UL_OK);
    assert_int_equal(live_checkpoint(b, b1, err, sizeof(err)), UL_OK);
    assert_int_equal(live_refresh(a, err, sizeof(err)), UL_OK);
    assert_int_equal(live_refresh(b, err, sizeof(err)), UL_OK);
    /* Both see every rating of item 5, and the same effective row. */
    assert_true(fabsf(live_item_row(a, 5)[1 + K] - count_one) < 0.5f);
    for (int f = 0; f < 1 + K; f++)
        assert_true(fabsf(live_item_row(a, 5)[f] - live_item_row(b, 5)[f]) < 1e-5f);
    live_destroy(a);
    live_destroy(b);
    free(v);
}

static void test_forget_cycle(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st);
    shard *s = live_assign(l, 0, err, sizeof(err));
    /* Background: 20 users of partition 0 rate 30 items ~3 on average. */
    rng r;
    rng_seed(&r, 3);
    for (int rep = 0; rep < 30; rep++)
        for (int64_t u = 2; u <= 40; u += 2)
            for (int64_t i = 1; i <= 30; i++)
                live_apply_rating(l, s, u, i, (float)(2 + rng_below(&r, 3)), 0);
    /* User 100 (a "someone else" account) gives items 1..5 a 5, repeatedly,
     * at times 5000..; and rates items 6..15 normally at time 1000. */
    for (int rep = 0; rep < 3; rep++) {
        for (int64_t i = 6; i <= 15; i++)
            live_apply_rating(l, s, 100, i, 3.0f, 1000);
        for (int64_t i = 1; i <= 5; i++)
            live_apply_rating(l, s, 100, i, 5.0f, 5000 + i);
    }
    /* 50 ratings per user are remembered (retention), here 45. */
    int found;
    double before = 0;
    for (int64_t i = 1; i <= 5; i++)
        before += live_predict(l, s, 100, i, &found);
    before /= 5;
    uint64_t applied = s->meta.applied;

    int64_t items[] = {1, 2, 3};
    forget_req a = request(0, 100, items, 3, 0, 0);
    forget_req b = request(1, 100, NULL, 0, 5004, 5005); /* items 4, 5 by time */
    forget_req c = request(2, 777, items, 3, 0, 0);      /* never seen */
    forget_req d = request(3, 100, items, 1, 0, 0);
    d.ratings_hwm = 1000000; /* waits for ratings not applied yet */
    assert_int_equal(shard_pending_add(s, &a), 0);
    assert_int_equal(shard_pending_add(s, &b), 0);
    assert_int_equal(shard_pending_add(s, &c), 0);
    assert_int_equal(shard_pending_add(s, &d), 0);
    s->meta.next_offset[SHARD_RATINGS] = 10;
    s->meta.forget_received = 4;

    live_cycle out;
    assert_int_equal(live_forget_cycle(l, s, 100, 12345, &out, err, sizeof(err)), UL_OK);
    assert_int_equal(out.n_receipts, 3);
    assert_string_equal(out.receipts[0].request_id, "req-0");
    assert_int_equal(out.receipts[0].forgotten, 9);
    assert_int_equal(out.receipts[1].forgotten, 6);
    assert_int_equal(out.receipts[2].forgotten, 0);
    assert_int_equal(out.receipts[2].user_id, 777);
    assert_int_equal(out.receipts[0].completed_at, 12345);
    assert_int_equal(out.n_forgotten, 15);
    assert_int_equal(out.version, 1);
    assert_int_equal(out.n_users, 1);
    assert_int_equal(out.user_ids[0], 100);
    assert_int_equal(s->n_pending, 1); /* d still waits */
    assert_int_equal(s->meta.forgotten, 15);
    assert_int_equal(s->meta.forget_completed, 3);
    assert_int_equal(s->meta.applied, applied);
    hist *h = shard_hist(s, rowset_find(s->users, 100));
    assert_int_equal(h->n, 30);
    for (uint32_t e = 0; e < h->n; e++)
        assert_true(h->v[h->start + e].item > 5);
    double after = 0;
    for (int64_t i = 1; i <= 5; i++)
        after += live_predict(l, s, 100, i, &found);
    after /= 5;
    print_message("mean predicted score of forgotten items: %.3f -> %.3f\n", before, after);
    assert_true(after < before - 0.15);
    live_cycle_free(&out);

    /* The cycle's result survives a checkpoint and reload. */
    assert_int_equal(live_checkpoint(l, s, err, sizeof(err)), UL_OK);
    live *l2 = open_live(fx->st);
    shard *s2 = live_assign(l2, 0, err, sizeof(err));
    assert_int_equal(s2->n_pending, 1);
    assert_int_equal(s2->pending[0].offset, 3);
    assert_int_equal(shard_hist(s2, rowset_find(s2->users, 100))->n, 30);
    for (int64_t i = 1; i <= 5; i++) {
        int f1, f2;
        assert_true(fabsf(live_predict(l, s, 100, i, &f1) - live_predict(l2, s2, 100, i, &f2)) <
                    1e-4f);
    }
    /* Once the ratings catch up, d runs: its items are already forgotten. */
    s2->meta.next_offset[SHARD_RATINGS] = 1000000;
    if (live_forget_cycle(l2, s2, 100, 1, &out, err, sizeof(err)) != UL_OK)
        fail_msg("cycle: %s", err);
    assert_int_equal(out.n_receipts, 1);
    assert_int_equal(out.receipts[0].forgotten, 0);
    live_cycle_free(&out);
    assert_int_equal(live_forget_cycle(l2, s2, 100, 1, &out, err, sizeof(err)), UL_OK);
    assert_int_equal(out.n_receipts, 0);
    live_destroy(l2);
    live_destroy(l);
}

/* Rows seen by live_publish_marked, by kind. */
typedef struct seen {
    int64_t ids[2][256];
    size_t n[2];
    int k_ok;
} seen;

static void collect(void *opaque, rows_kind kind, int64_t id, const float *row, uint64_t version) {
    seen *sn = opaque;
    (void)version;
    assert_true(kind == ROWS_USER || kind == ROWS_ITEM);
    assert_true(sn->n[kind] < 256);
    sn->ids[kind][sn->n[kind]++] = id;
    sn->k_ok &= isfinite(row[0]) && isfinite(row[K]);
}

static int has(const seen *sn, int kind, int64_t id) {
    for (size_t i = 0; i < sn->n[kind]; i++)
        if (sn->ids[kind][i] == id)
            return 1;
    return 0;
}

/* Ratings mark their user and item once per publish; a takeover marks every
 * user of the partition and the items mapping to it; the item marks survive
 * rebuilding the effective rows (another partition taken over). */
static void test_publish_marks(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st);
    shard *s0 = live_assign(l, 0, err, sizeof(err));
    assert_non_null(s0);
    seen sn = {.k_ok = 1};
    assert_int_equal(live_publish_marked(l, collect, &sn), 0); /* nothing yet */
    assert_int_equal(live_apply_rating(l, s0, 2, 7, 4.0f, 1), UL_OK);
    assert_int_equal(live_apply_rating(l, s0, 2, 7, 5.0f, 2), UL_OK);
    assert_int_equal(live_apply_rating(l, s0, 4, 7, 3.0f, 3), UL_OK);
    assert_int_equal(live_apply_rating(l, s0, 4, 9, 3.0f, 4), UL_OK);
    assert_int_equal(live_marked(l), 4);
    /* Taking partition 1 rebuilds the effective rows: the marks stay. */
    assert_non_null(live_assign(l, 1, err, sizeof(err)));
    assert_int_equal(live_publish_marked(l, collect, &sn), 4);
    assert_int_equal(sn.n[ROWS_USER], 2);
    assert_int_equal(sn.n[ROWS_ITEM], 2);
    assert_true(has(&sn, ROWS_USER, 2) && has(&sn, ROWS_USER, 4));
    assert_true(has(&sn, ROWS_ITEM, 7) && has(&sn, ROWS_ITEM, 9));
    assert_true(sn.k_ok);
    assert_int_equal(live_marked(l), 0);
    /* A takeover of partition 0: its users, and the items with id % 2 == 0
     * (none here: 7 and 9 are odd; add 8). */
    assert_int_equal(live_apply_rating(l, s0, 6, 8, 3.0f, 5), UL_OK);
    memset(&sn, 0, sizeof(sn));
    sn.k_ok = 1;
    assert_int_equal(live_publish_marked(l, collect, &sn), 2);
    memset(&sn, 0, sizeof(sn));
    live_mark_partition(l, 0);
    assert_int_equal(live_publish_marked(l, collect, &sn), 4);
    assert_int_equal(sn.n[ROWS_USER], 3);
    assert_true(has(&sn, ROWS_ITEM, 8));
    memset(&sn, 0, sizeof(sn));
    live_mark_partition(l, 1); /* owned, no users; items 7 and 9 */
    assert_int_equal(live_publish_marked(l, collect, &sn), 2);
    assert_true(has(&sn, ROWS_ITEM, 7) && has(&sn, ROWS_ITEM, 9));
    memset(&sn, 0, sizeof(sn));
    live_mark_row(l, ROWS_USER, 4);
    live_mark_row(l, ROWS_ITEM, 9);
    live_mark_row(l, ROWS_ITEM, 12345); /* unknown: ignored */
    assert_int_equal(live_publish_marked(l, collect, &sn), 2);
    live_destroy(l);
}

/* Another worker's item changes, seen at the refresh, are marked by the
 * owner of the item's partition only (item id mod partitions), once. */
static void test_refresh_marks_owned_items(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *a = open_live(fx->st), *b = open_live(fx->st);
    assert_non_null(live_assign(a, 0, err, sizeof(err)));
    shard *b1 = live_assign(b, 1, err, sizeof(err));
    assert_non_null(b1);
    seen sn = {.k_ok = 1};
    live_publish_marked(a, collect, &sn); /* the takeover marks: none (no rows) */
    assert_int_equal(live_apply_rating(b, b1, 3, 4, 5.0f, 1), UL_OK); /* item 4: partition 0 */
    assert_int_equal(live_apply_rating(b, b1, 3, 5, 1.0f, 2), UL_OK); /* item 5: partition 1 */
    assert_int_equal(live_checkpoint(b, b1, err, sizeof(err)), UL_OK);
    assert_int_equal(live_refresh(a, err, sizeof(err)), UL_OK);
    memset(&sn, 0, sizeof(sn));
    sn.k_ok = 1;
    assert_int_equal(live_publish_marked(a, collect, &sn), 1);
    assert_true(has(&sn, ROWS_ITEM, 4));
    /* A's effective row of item 4 is B's: the same base plus B's delta. */
    const float *ra = live_item_row(a, 4), *rb = live_item_row(b, 4);
    assert_non_null(ra);
    for (int f = 0; f < 2 + K; f++)
        assert_true(fabsf(ra[f] - rb[f]) < 1e-6f);
    assert_int_equal(live_refresh(a, err, sizeof(err)), UL_OK); /* nothing new */
    assert_int_equal(live_marked(a), 0);
    live_destroy(a);
    live_destroy(b);
}

static void test_partition_count_mismatch(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st);
    live_destroy(l);
    live_opts o;
    live_opts_init(&o);
    o.k = K;
    assert_null(live_new(&o, fx->st, PARTS + 1, err, sizeof(err)));
    assert_non_null(strstr(err, "2 partitions"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_exactly_once),
        cmocka_unit_test(test_two_owners_keep_both_item_updates),
        cmocka_unit_test(test_forget_cycle),
        cmocka_unit_test(test_publish_marks),
        cmocka_unit_test(test_refresh_marks_owned_items),
        cmocka_unit_test(test_partition_count_mismatch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
