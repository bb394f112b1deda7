/* test_shard.c: one partition's in-memory state: per-user arrays grown
 * with the users (user_flags), histories bounded by the retention with what
 * they drop summarised (count, event times, a Bloom filter without false
 * negatives), appended entries counted for the checkpoint's append, the
 * event and training classes of dirty marks, home statistics, seen, the
 * exact deltas queued for delivery, both outbox lists, and what "dirty"
 * means (a row flush due, a checkpoint not on a replica yet). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "shard.h"

#define K 3

static void test_users_and_flags(void **state) {
    (void)state;
    shard *s = shard_new(2, K, 1, 0.1f, 10);
    assert_non_null(s);
    for (int64_t u = 0; u < 5000; u++) {
        int32_t i = shard_user(s, u * 7);
        assert_int_equal(i, (int32_t)u);
        assert_int_equal(s->user_flags[i], 0); /* grown with the users, zeroed */
        s->user_flags[i] = (uint8_t)(u & SHARD_USER_BUSY);
    }
    assert_int_equal(shard_user(s, 7 * 4999), 4999);
    assert_int_equal(s->user_flags[4999], SHARD_USER_BUSY);
    assert_true(s->users_cap >= rowset_size(s->users));
    shard_destroy(s);
}

static void test_history_and_evictions(void **state) {
    (void)state;
    shard *s = shard_new(0, K, 1, 0.1f, 20);
    int32_t u = shard_user(s, 9);
    assert_null(shard_evicted(s, u));
    for (int64_t i = 0; i < 500; i++) {
        hist_entry e = {1000 + i, 10 * i, 4.0f};
        assert_int_equal(shard_hist_append(s, u, &e), 0);
    }
    hist *h = shard_hist(s, u);
    assert_int_equal(h->n, 20);
    assert_int_equal(h->v[h->start].item, 1480); /* the last 20 */
    assert_int_equal(s->hist_added[u], 20);      /* capped at the retention */
    const shard_evict *e = shard_evicted(s, u);
    assert_non_null(e);
    assert_int_equal(e->count, 480);
    assert_int_equal(e->tmin, 0);
    assert_int_equal(e->tmax, 4790);
    int false_pos = 0;
    for (int64_t i = 0; i < 480; i++) /* never a false negative */
        assert_true(shard_evict_may_contain(e, 1000 + i));
    for (int64_t i = 0; i < 1000; i++)
        false_pos += shard_evict_may_contain(e, 100000 + i);
    print_message("Bloom filter of 480 items: %d of 1000 others match\n", false_pos);
    assert_true(false_pos < 1000); /* 480 items in 2048 bits still rule some out */
    assert_int_equal(shard_evict_may_contain(NULL, 1), 0);
    /* A light user: 10 evictions, almost no false positives. */
    int32_t v = shard_user(s, 10);
    for (int64_t i = 0; i < 30; i++) {
        hist_entry x = {i, i, 1.0f};
        shard_hist_append(s, v, &x);
    }
    false_pos = 0;
    for (int64_t i = 0; i < 1000; i++)
        false_pos += shard_evict_may_contain(shard_evicted(s, v), 100000 + i);
    assert_true(false_pos <= 5);
    assert_int_equal(shard_evicted(s, v)->count, 10);
    /* The checkpoint's view: appended and rewritten histories. */
    assert_true(shard_is_dirty(s));
    assert_int_equal(s->hist_dirty[u] & SHARD_HIST_REWRITE, 0);
    shard_clear_dirty(s);
    assert_int_equal(s->hist_added[u], 0);
    assert_int_equal(shard_is_dirty(s), 0);
    shard_hist_touch(s, u);
    assert_true(s->hist_dirty[u] & SHARD_HIST_REWRITE);
    assert_true(shard_is_dirty(s));
    shard_destroy(s);
}

static void test_classes_and_dirty(void **state) {
    (void)state;
    shard *s = shard_new(0, K, 1, 0.1f, 20);
    int32_t u = shard_user(s, 1);
    shard_clear_dirty(s);
    shard_mark_user(s, u, SHARD_TRAINING);
    assert_int_equal(shard_is_dirty(s), 0); /* waits for a row flush */
    size_t n;
    rowset_marked(s->users, SHARD_USER_TRAIN_DIRTY, &n);
    assert_int_equal(n, 1);
    rowset_marked(s->users, SHARD_USER_TRAIN_PUBLISH, &n);
    assert_int_equal(n, 1);
    shard_clear_dirty(s); /* not a flush: the training mark stays */
    rowset_marked(s->users, SHARD_USER_TRAIN_DIRTY, &n);
    assert_int_equal(n, 1);
    s->flush_rows = 1;
    assert_true(shard_is_dirty(s));
    shard_clear_dirty(s);
    rowset_marked(s->users, SHARD_USER_TRAIN_DIRTY, &n);
    assert_int_equal(n, 0);
    assert_int_equal(s->flush_rows, 0);
    shard_mark_user(s, u, SHARD_EVENT);
    assert_true(shard_is_dirty(s));
    shard_clear_dirty(s);
    s->replicated = 0; /* the last checkpoint is not on a replica: try again */
    assert_true(shard_is_dirty(s));
    s->replicated = 1;
    s->meta.next_offset[SHARD_ITEM_UPDATES] = 4;
    assert_true(shard_is_dirty(s));
    shard_destroy(s);
}

static void test_home_seen_pending(void **state) {
    (void)state;
    shard *s = shard_new(1, K, 1, 0.1f, 20);
    int32_t h = shard_home_item(s, 41);
    assert_true(h >= 0);
    assert_int_equal(shard_home_stats(s, h).count, 0);
    shard_home_add(s, h, 3, 12.5);
    shard_home_add(s, h, -1, -4.0);
    rows_stats st = shard_home_stats(s, h);
    assert_int_equal(st.count, 2);
    assert_true(st.sum == 8.5);
    assert_int_equal(shard_home_item(s, 41), h);
    assert_int_equal(shard_seen(s, 5), -1);
    assert_int_equal(shard_seen_set(s, 5, 77), 0);
    assert_int_equal(shard_seen(s, 5), 77);
    assert_int_equal(shard_seen(s, 4), -1);
    assert_int_equal(shard_seen_set(s, -1, 1), -1);
    assert_int_equal(shard_has_pending(s), 0);
    float d[1 + K] = {1, 2, 3, 4};
    assert_int_equal(shard_pend(s, 9, 1, 4.0, NULL), 0);
    assert_int_equal(shard_pend(s, 9, 1, 5.0, d), 0);
    assert_int_equal(shard_pend(s, 9, 0, 0.0, d), 0);
    assert_true(shard_has_pending(s));
    const float *r = rowset_row_const(s->pend_rows, rowset_find(s->pend_rows, 9));
    assert_true(r[0] == 2.0f && r[3] == 8.0f);
    rows_stats p;
    memcpy(&p, rowset_row_const(s->pend_stats, rowset_find(s->pend_stats, 9)), sizeof(p));
    assert_int_equal(p.count, 2);
    assert_true(p.sum == 9.0);
    assert_true(shard_is_dirty(s));
    shard_pend_clear(s);
    assert_int_equal(shard_has_pending(s), 0);
    shard_destroy(s);
}

static void test_outbox_lists(void **state) {
    (void)state;
    shard *s = shard_new(0, K, 1, 0.1f, 20);
    for (uint64_t k = 1; k <= 3; k++) {
        unsigned char *b = malloc(1);
        b[0] = (unsigned char)k;
        assert_int_equal(outbox_list_add(&s->deliveries, k, b, 1), 0);
    }
    assert_int_equal(shard_outbox_add(s, 9, malloc(1), 1), 0);
    assert_non_null(outbox_list_find(&s->deliveries, 2));
    assert_null(outbox_list_find(&s->deliveries, 9));
    assert_int_equal(outbox_list_remove(&s->deliveries, 2), 0);
    assert_int_equal(outbox_list_remove(&s->deliveries, 2), 0); /* absent: no-op */
    assert_int_equal(s->deliveries.n, 2);
    assert_int_equal(s->deliveries.n_removed, 1);
    assert_int_equal(s->deliveries.v[1].version, 3);
    assert_int_equal(s->outbox.n, 1);
    assert_true(s->deliveries.v[0].unsaved);
    shard_clear_dirty(s);
    assert_false(s->deliveries.v[0].unsaved);
    assert_int_equal(s->deliveries.n_removed, 0);
    assert_int_equal(shard_outbox_remove(s, 9), 0);
    assert_int_equal(s->outbox.n, 0);
    shard_destroy(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users_and_flags),   cmocka_unit_test(test_history_and_evictions),
        cmocka_unit_test(test_classes_and_dirty), cmocka_unit_test(test_home_seen_pending),
        cmocka_unit_test(test_outbox_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
