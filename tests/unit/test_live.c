/* test_live.c: the live model against a private redis-server: ratings
 * update rows and counters; a restart from the last checkpoint plus a
 * replay gives the same counts and (nearly) the same rows as an
 * uninterrupted run; two owners of different partitions never lose each
 * other's item updates; published rows are marked once; the contract's
 * item statistics follow the ratings and the histories (unlearning cycles
 * are test_forget.c's). */
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

/* The contract's minimal versions (replaced by state2): item statistics
 * follow the ratings and the histories (an evicted rating leaves the rating
 * sum's estimate), live_correct_item moves the effective row and the
 * partition's delta, every user row has a flags byte (also after a load),
 * and a history that drops entries keeps a summary of them. */
static void test_contract_versions(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st); /* retention 50 */
    shard *s = live_assign(l, 0, err, sizeof(err));
    int64_t count;
    double sum;
    live_item_stats(l, 77, &count, &sum);
    assert_true(count == 0 && sum == 0.0);  /* unknown */
    for (int64_t u = 0; u < 40; u += PARTS) /* 20 users of partition 0 rate item 77 */
        assert_int_equal(live_apply_rating(l, s, u, 77, u < 20 ? 5.0f : 1.0f, 1), UL_OK);
    live_item_stats(l, 77, &count, &sum);
    assert_int_equal(count, 20);
    assert_true(fabs(sum - 60.0) < 1e-3); /* 10 fives and 10 ones */
    /* User 0 rates 60 items more: its rating of 77 (the oldest) is dropped. */
    for (int64_t i = 1; i <= 60; i++)
        assert_int_equal(live_apply_rating(l, s, 0, 100 + i, 3.0f, 10 + i), UL_OK);
    int32_t x = rowset_find(s->users, 0);
    const shard_evict *drop = shard_evicted(s, x);
    assert_non_null(drop);
    assert_int_equal(drop->count, 11);
    assert_true(drop->tmin == 1 && drop->tmax == 20);
    assert_true(shard_evict_may_contain(drop, 77) && shard_evict_may_contain(drop, 110));
    int not_there = 0;
    for (int64_t i = 111; i <= 160; i++)
        not_there += !shard_evict_may_contain(drop, i);
    assert_true(not_there >= 49); /* a Bloom filter: rare false positives */
    assert_null(shard_evicted(s, rowset_find(s->users, 2)));
    live_item_stats(l, 77, &count, &sum);
    assert_int_equal(count, 20);                        /* the model still counts it */
    assert_true(fabs(sum - 20.0 * 55.0 / 19.0) < 1e-3); /* mean of the 19 remembered */
    /* A cycle's correction of item 77 on behalf of partition 0. */
    float before[2 + K], delta[1 + K];
    memcpy(before, live_item_row(l, 77), sizeof(before));
    for (int f = 0; f < 1 + K; f++)
        delta[f] = 0.01f * (float)(f + 1);
    assert_int_equal(live_correct_item(l, s, 77, delta, -2, -10.0), UL_OK);
    const float *after = live_item_row(l, 77);
    for (int f = 0; f < 1 + K; f++)
        assert_true(fabsf(after[f] - before[f] - delta[f]) < 1e-6f);
    assert_true(fabsf(after[1 + K] - (before[1 + K] - 2.0f)) < 1e-6f);
    live_item_stats(l, 77, &count, &sum);
    assert_int_equal(count, 18);
    assert_true(fabs(sum - 18.0 * 45.0 / 17.0) < 1e-3);
    /* Flags for every user row, and after a reload. */
    assert_true(s->users_cap >= rowset_size(s->users));
    shard_mark_user(s, x, SHARD_EVENT);
    assert_int_equal(live_checkpoint(l, s, err, sizeof(err)), UL_OK);
    live *l2 = open_live(fx->st);
    shard *s2 = live_assign(l2, 0, err, sizeof(err));
    assert_true(s2->users_cap >= rowset_size(s2->users));
    assert_int_equal(s2->user_flags[rowset_size(s2->users) - 1], 0);
    float d2 = live_item_row(l2, 77)[1 + K];
    assert_true(fabsf(d2 - (before[1 + K] - 2.0f)) < 1e-6f); /* the delta was checkpointed */
    live_destroy(l2);
    live_destroy(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_exactly_once),
        cmocka_unit_test(test_two_owners_keep_both_item_updates),
        cmocka_unit_test(test_publish_marks),
        cmocka_unit_test(test_refresh_marks_owned_items),
        cmocka_unit_test(test_partition_count_mismatch),
        cmocka_unit_test(test_contract_versions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
