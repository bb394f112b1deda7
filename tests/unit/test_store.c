/* test_store.c: the Redis store, format 2, against a private redis-server
 * (redis_local) or, with UNLEARND_TEST_REDIS_CLUSTER set, a Redis Cluster
 * (tests/integration/test_store_cluster.sh): model facts (format, a nonce
 * set once), shard checkpoint/load round trips (user rows, histories,
 * eviction summaries, home statistics, seen, forget buffer, both outboxes,
 * offsets, counters), histories appended by the Lua script equal to the
 * rewritten ones on both sides of the rewrite threshold and across
 * evictions, the fence (a second owner's claim refuses the first one's
 * checkpoint; Redis losing the state is named), read-only loads leaving the
 * fence alone, the replica's load of a partition's home items, encodings,
 * and clear errors for a dead server or a malformed row. Skips when
 * redis-server is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_local.h"
#include "shard.h"
#include "store.h"
#include "store_fixture.h"
#include "ul_err.h"

#define K 4
#define DIM (3 + K) /* rows_dim */

static void test_model_facts(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    store_model m = {0};
    int found = 1;
    assert_int_equal(store_model_get(fx->st, &m, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 0);
    store_model a = {K, 3.5f, 1.0f, 5.0f, 8, STORE_FORMAT, 0};
    assert_int_equal(store_model_put(fx->st, &a, 1, err, sizeof(err)), UL_OK);
    assert_int_equal(store_model_get(fx->st, &m, &found, err, sizeof(err)), UL_OK);
    uint64_t nonce = m.nonce;
    assert_true(nonce != 0);
    store_model b = {16, 3.0f, 0.5f, 10.0f, 3, STORE_FORMAT, 0};
    assert_int_equal(store_model_put(fx->st, &b, 1, err, sizeof(err)), UL_OK); /* kept */
    assert_int_equal(store_model_get(fx->st, &m, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 1);
    assert_int_equal(m.k, K);
    assert_true(m.global_mean == 3.5f && m.rating_min == 1.0f && m.rating_max == 5.0f);
    assert_int_equal(m.partitions, 8);
    assert_int_equal(m.format, STORE_FORMAT);
    assert_true(m.nonce == nonce);                                             /* set once */
    assert_int_equal(store_model_put(fx->st, &b, 0, err, sizeof(err)), UL_OK); /* replaced */
    assert_int_equal(store_model_get(fx->st, &m, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(m.k, 16);
    assert_true(m.nonce != nonce); /* an import makes a new state */
}

static forget_req make_req(int64_t offset, int64_t user, int window) {
    forget_req fr;
    memset(&fr, 0, sizeof(fr));
    fr.offset = offset;
    fr.user = user;
    fr.request_id = strdup(window ? "req-window" : "req-items");
    if (window) {
        fr.has_window = 1;
        fr.from = 1000;
        fr.to = 2000;
    } else {
        fr.n_items = 3;
        fr.items = malloc(3 * sizeof(int64_t));
        fr.items[0] = 10;
        fr.items[1] = -1;
        fr.items[2] = 1LL << 40;
    }
    fr.reason = 2;
    fr.received_ms = 1700000000123LL;
    fr.ratings_hwm = 77;
    fr.unsaved = 1;
    return fr;
}

static unsigned char *blob_of(const char *s, size_t len) {
    unsigned char *b = malloc(len);
    memcpy(b, s, len);
    return b;
}

/* A claimed, loaded (empty) shard of partition p. */
static shard *take(store *st, int32_t p, uint32_t retention) {
    char err[UL_ERRSTR_SIZE];
    shard *s = shard_new(p, K, 42, 0.1f, retention);
    assert_non_null(s);
    if (store_shard_load(st, s, err, sizeof(err)) != UL_OK)
        fail_msg("load: %s", err);
    return s;
}

/* What partition p holds now, without taking it. */
static shard *peek(store *st, int32_t p, uint32_t retention) {
    char err[UL_ERRSTR_SIZE];
    shard *s = shard_new(p, K, 42, 0.1f, retention);
    assert_non_null(s);
    if (store_shard_read(st, s, err, sizeof(err)) != UL_OK)
        fail_msg("read: %s", err);
    return s;
}

/* Partition p with 50 users (3 ratings each, retention 2: one evicted each),
 * 20 home items' statistics, seen of two sources, two pending forget
 * requests, a cycle's and a delivery's outbox entries. */
static shard *make_shard(store *st, int32_t p) {
    shard *s = take(st, p, 2);
    for (int64_t u = 1; u <= 50; u++) {
        int32_t ui = shard_user(s, u * 1000);
        assert_true(ui >= 0);
        rowset_row(s->users, ui)[0] = (float)u;
        shard_mark_user(s, ui, SHARD_EVENT);
        for (int j = 0; j < 3; j++) {
            hist_entry e = {u + j, 1000 * j, (float)(1 + j)};
            assert_int_equal(shard_hist_append(s, ui, &e), 0);
        }
    }
    for (int64_t i = 0; i < 20; i++) {
        int32_t hi = shard_home_item(s, i * 4 + p);
        shard_home_add(s, hi, i + 1, 2.5 * (double)i);
    }
    assert_int_equal(shard_seen_set(s, 0, 17), 0);
    assert_int_equal(shard_seen_set(s, 2, 5), 0);
    forget_req a = make_req(5, 3000, 0), b = make_req(9, 4000, 1);
    assert_int_equal(shard_pending_add(s, &a), 0);
    assert_int_equal(shard_pending_add(s, &b), 0);
    assert_int_equal(shard_outbox_add(s, 4, blob_of("a\0b", 3), 3), 0);
    assert_int_equal(shard_outbox_add(s, 7, blob_of("z", 1), 1), 0);
    assert_int_equal(outbox_list_add(&s->deliveries, 3, blob_of("dd", 2), 2), 0);
    s->meta.next_offset[SHARD_RATINGS] = 150;
    s->meta.next_offset[SHARD_FORGET] = 10;
    s->meta.next_offset[SHARD_ITEM_UPDATES] = 33;
    s->meta.applied = 150;
    s->meta.forgotten = 4;
    s->meta.version = 2;
    s->meta.forget_received = 2;
    s->meta.dead_letters = 1;
    s->meta.out_seq = 4;
    return s;
}

static void assert_same_list(const outbox_list *a, const outbox_list *b) {
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->v[i].version, b->v[i].version);
        assert_int_equal(a->v[i].len, b->v[i].len);
        assert_memory_equal(a->v[i].blob, b->v[i].blob, a->v[i].len);
    }
}

static void assert_same_shard(shard *a, shard *b) {
    assert_int_equal(rowset_size(a->users), rowset_size(b->users));
    for (int32_t i = 0; i < rowset_size(a->users); i++) {
        int64_t key = rowset_key(a->users, i);
        int32_t j = rowset_find(b->users, key);
        assert_true(j >= 0);
        assert_memory_equal(rowset_row(a->users, i), rowset_row(b->users, j), DIM * sizeof(float));
        hist *ha = shard_hist(a, i), *hb = shard_hist(b, j);
        assert_int_equal(ha->n, hb->n);
        for (uint32_t e = 0; e < ha->n; e++) {
            assert_int_equal(ha->v[ha->start + e].item, hb->v[hb->start + e].item);
            assert_int_equal(ha->v[ha->start + e].time, hb->v[hb->start + e].time);
            assert_true(ha->v[ha->start + e].rating == hb->v[hb->start + e].rating);
        }
        const shard_evict *ea = shard_evicted(a, i), *eb = shard_evicted(b, j);
        assert_true((ea == NULL) == (eb == NULL));
        if (ea)
            assert_memory_equal(ea, eb, sizeof(*ea));
    }
    assert_int_equal(rowset_size(a->home), rowset_size(b->home));
    for (int32_t i = 0; i < rowset_size(a->home); i++) {
        int32_t j = rowset_find(b->home, rowset_key(a->home, i));
        assert_true(j >= 0);
        rows_stats x = shard_home_stats(a, i), y = shard_home_stats(b, j);
        assert_int_equal(x.count, y.count);
        assert_true(x.sum == y.sum);
    }
    for (int32_t q = 0; q < 4; q++)
        assert_int_equal(shard_seen(a, q), shard_seen(b, q));
    assert_int_equal(a->n_pending, b->n_pending);
    for (size_t i = 0; i < a->n_pending; i++) {
        forget_req *x = &a->pending[i], *y = &b->pending[i];
        assert_int_equal(x->offset, y->offset);
        assert_int_equal(x->user, y->user);
        assert_string_equal(x->request_id, y->request_id);
        assert_int_equal(x->n_items, y->n_items);
        if (x->n_items)
            assert_memory_equal(x->items, y->items, x->n_items * sizeof(int64_t));
        assert_int_equal(x->has_window, y->has_window);
        assert_int_equal(x->from, y->from);
        assert_int_equal(x->to, y->to);
        assert_int_equal(x->reason, y->reason);
        assert_int_equal(x->received_ms, y->received_ms);
        assert_int_equal(x->ratings_hwm, y->ratings_hwm);
    }
    assert_same_list(&a->outbox, &b->outbox);
    assert_same_list(&a->deliveries, &b->deliveries);
    for (int t = 0; t < SHARD_N_INPUTS; t++)
        assert_int_equal(a->meta.next_offset[t], b->meta.next_offset[t]);
    assert_int_equal(a->meta.applied, b->meta.applied);
    assert_int_equal(a->meta.forgotten, b->meta.forgotten);
    assert_int_equal(a->meta.version, b->meta.version);
    assert_int_equal(a->meta.forget_received, b->meta.forget_received);
    assert_int_equal(a->meta.forget_completed, b->meta.forget_completed);
    assert_int_equal(a->meta.dead_letters, b->meta.dead_letters);
    assert_int_equal(a->meta.checkpoint_ms, b->meta.checkpoint_ms);
    assert_int_equal(a->meta.out_seq, b->meta.out_seq);
    assert_int_equal(a->meta.ckpt, b->meta.ckpt);
    assert_int_equal(a->meta.epoch, b->meta.epoch);
}

static void checkpoint_ok(store *st, shard *s) {
    char err[UL_ERRSTR_SIZE];
    int rc = store_shard_checkpoint(st, s, err, sizeof(err));
    if (rc != UL_OK)
        fail_msg("checkpoint of %d: %s", (int)s->partition, err);
}

static void test_checkpoint_roundtrip(void **state) {
    fixture *fx = need_redis(state);
    shard *s = make_shard(fx->st, 3);
    assert_int_equal(s->meta.epoch, 1);
    assert_int_equal(s->meta.ckpt, 1);
    assert_int_equal(shard_hist(s, 0)->n, 2); /* retention 2 */
    assert_int_equal(shard_hist(s, 0)->v[shard_hist(s, 0)->start].item, 1 + 1);
    assert_non_null(shard_evicted(s, 0));
    assert_int_equal(shard_evicted(s, 0)->count, 1);
    checkpoint_ok(fx->st, s);
    assert_true(s->meta.checkpoint_ms > 0);
    assert_int_equal(s->meta.ckpt, 2);
    assert_int_equal(shard_is_dirty(s), 0);
    shard *r = peek(fx->st, 3, 2);
    assert_same_shard(s, r);
    shard_destroy(r);

    /* Second step: complete one request, empty one history, change a row,
     * acknowledge one outbox entry and the delivery, new statistics. */
    assert_int_equal(shard_pending_remove(s, 0), 0);
    assert_int_equal(shard_outbox_remove(s, 4), 0);
    assert_int_equal(shard_outbox_remove(s, 99), 0); /* absent: no-op */
    assert_int_equal(outbox_list_remove(&s->deliveries, 3), 0);
    assert_int_equal(s->outbox.n, 1);
    s->meta.forget_completed = 1;
    int32_t ui = rowset_find(s->users, 2000);
    shard_hist(s, ui)->n = 0;
    shard_hist_touch(s, ui);
    rowset_row(s->users, ui)[1] = 9.5f;
    shard_mark_user(s, ui, SHARD_EVENT);
    shard_home_add(s, shard_home_item(s, 3), 5, 1.5);
    assert_int_equal(shard_seen_set(s, 1, 2), 0);
    s->meta.next_offset[SHARD_RATINGS] = 151;
    checkpoint_ok(fx->st, s);
    r = peek(fx->st, 3, 2);
    assert_same_shard(s, r);
    assert_int_equal(r->n_pending, 1);
    assert_int_equal(r->pending[0].offset, 9);
    assert_int_equal(r->outbox.n, 1);
    assert_int_equal(r->outbox.v[0].version, 7);
    assert_int_equal(r->deliveries.n, 0);
    shard_destroy(r);

    /* Training-changed rows wait for a row flush. */
    int32_t u2 = rowset_find(s->users, 5000);
    rowset_row(s->users, u2)[1] = 4.25f;
    shard_mark_user(s, u2, SHARD_TRAINING);
    assert_int_equal(shard_is_dirty(s), 0);
    s->meta.applied++; /* something else to write */
    s->meta.next_offset[SHARD_RATINGS]++;
    checkpoint_ok(fx->st, s);
    r = peek(fx->st, 3, 2);
    assert_true(rowset_row(r->users, rowset_find(r->users, 5000))[1] != 4.25f);
    shard_destroy(r);
    s->flush_rows = 1;
    assert_int_equal(shard_is_dirty(s), 1);
    checkpoint_ok(fx->st, s);
    r = peek(fx->st, 3, 2);
    assert_true(rowset_row(r->users, rowset_find(r->users, 5000))[1] == 4.25f);
    shard_destroy(r);

    /* Other partitions are untouched; a never-written partition is empty. */
    shard_meta meta;
    int found = 1;
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(store_meta_get(fx->st, 4, &meta, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 0);
    r = peek(fx->st, 4, 2);
    assert_int_equal(rowset_size(r->users), 0);
    assert_int_equal(r->meta.next_offset[0], -1);
    assert_int_equal(r->meta.out_seq, 1);
    shard_destroy(r);
    shard_destroy(s);
}

/* The stored history of every user equals the in-memory one. */
static void assert_hists_stored(store *st, shard *s) {
    char err[UL_ERRSTR_SIZE];
    for (int32_t u = 0; u < rowset_size(s->users); u++) {
        float row[DIM];
        hist h;
        int found = 0;
        assert_int_equal(store_user_get(st, s->partition, rowset_key(s->users, u), row, DIM, &h,
                                        &found, err, sizeof(err)),
                         UL_OK);
        const hist *m = shard_hist(s, u);
        if (h.n != m->n)
            fail_msg("user %lld: %u stored, %u in memory", (long long)rowset_key(s->users, u), h.n,
                     m->n);
        for (uint32_t e = 0; e < m->n; e++) {
            assert_int_equal(h.v[e].item, m->v[m->start + e].item);
            assert_int_equal(h.v[e].time, m->v[m->start + e].time);
        }
        free(h.v);
    }
}

/* Appends (the Lua script) and rewrites leave the same values: users
 * growing from nothing past the rewrite threshold and the retention,
 * checkpoint after checkpoint, and a rewrite after entries are removed. */
static void test_hist_append(void **state) {
    fixture *fx = need_redis(state);
    enum { R = 30, USERS = 12 };
    shard *s = take(fx->st, 1, R);
    int64_t t = 0;
    for (int round = 0; round < 14; round++) {
        for (int64_t u = 1; u <= USERS; u++) {
            int32_t ui = shard_user(s, u);
            shard_mark_user(s, ui, SHARD_EVENT);
            int n = (int)((u * 3 + round) % 7); /* 0..6 new entries, some users idle */
            for (int j = 0; j < n; j++) {
                hist_entry e = {u * 1000 + t, t, 1.0f + (float)(t % 5)};
                t++;
                assert_int_equal(shard_hist_append(s, ui, &e), 0);
            }
        }
        if (round == 9) { /* a forget: entries removed, the history rewritten */
            hist *h = shard_hist(s, 2);
            h->start++;
            h->n -= 2;
            shard_hist_touch(s, 2);
        }
        s->meta.next_offset[SHARD_RATINGS] = t;
        checkpoint_ok(fx->st, s);
        assert_hists_stored(fx->st, s);
    }
    assert_true(shard_hist(s, 3)->n == R); /* some reached the retention */
    shard_destroy(s);
}

static void test_fence(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    store *other = fixture_store(fx);
    shard *a = take(fx->st, 2, 5);
    a->meta.applied = 10;
    a->meta.next_offset[SHARD_RATINGS] = 10;
    checkpoint_ok(fx->st, a);
    /* A read-only look leaves the fence alone. */
    shard *r = peek(other, 2, 5);
    assert_int_equal(r->meta.epoch, a->meta.epoch);
    shard_destroy(r);
    a->meta.applied = 11;
    a->meta.next_offset[SHARD_RATINGS] = 11;
    checkpoint_ok(fx->st, a);
    /* Another worker takes the partition: A's next checkpoint is refused. */
    shard *b = take(other, 2, 5);
    assert_int_equal(b->meta.epoch, 2);
    assert_int_equal(b->meta.applied, 11);
    a->meta.applied = 99;
    a->meta.next_offset[SHARD_RATINGS] = 99;
    assert_int_equal(store_shard_checkpoint(fx->st, a, err, sizeof(err)), STORE_ERR_FENCE);
    if (strstr(err, "partition 2") == NULL || strstr(err, "epoch 2") == NULL ||
        strstr(err, "epoch 1") == NULL || strstr(err, "another worker took the partition") == NULL)
        fail_msg("%s", err);
    assert_int_equal(shard_is_dirty(a), 1); /* nothing cleared */
    r = peek(other, 2, 5);
    assert_int_equal(r->meta.applied, 11); /* nothing written */
    shard_destroy(r);
    b->meta.applied = 12;
    b->meta.next_offset[SHARD_RATINGS] = 12;
    checkpoint_ok(other, b);
    /* Redis loses everything: the next checkpoint says so. */
    assert_int_equal(store_clear_all(fx->st, err, sizeof(err)), UL_OK);
    b->meta.applied = 13;
    b->meta.next_offset[SHARD_RATINGS] = 13;
    assert_int_equal(store_shard_checkpoint(other, b, err, sizeof(err)), STORE_ERR_FENCE);
    if (strstr(err, "partition 2: Redis lost its state") == NULL)
        fail_msg("%s", err);
    shard_destroy(a);
    shard_destroy(b);
    store_destroy(other);
}

static int got_row(void *ctx, int64_t id, const float *row, int dim, char *errstr,
                   size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    int *n = ctx;
    assert_int_equal(dim, DIM);
    assert_true(row[0] == (float)id);
    n[0]++;
    return UL_OK;
}

static int got_stats(void *ctx, int64_t id, const rows_stats *st, char *errstr,
                     size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    int *n = ctx;
    assert_int_equal(st->count, id * 2);
    assert_true(st->sum == (double)id / 2);
    n[1]++;
    return UL_OK;
}

static int got_seen(void *ctx, int32_t q, int rows, int64_t seq, char *errstr, size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    int *n = ctx;
    assert_int_equal(seq, q * 10 + 1 + (rows ? 100 : 0));
    n[2 + rows]++;
    return UL_OK;
}

static void test_home_rows(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    enum { N = 1500 }; /* more than one HSET batch */
    int64_t *ids = malloc(N * sizeof(int64_t));
    float *rows = calloc(N * DIM, sizeof(float));
    rows_stats *st = malloc(N * sizeof(*st));
    for (int i = 0; i < N; i++) {
        ids[i] = 2 * i + 1; /* home 1 of 2 */
        rows[i * DIM] = (float)ids[i];
        st[i] = (rows_stats){ids[i] * 2, (double)ids[i] / 2};
    }
    assert_int_equal(store_home_put(fx->st, 1, ids, rows, st, N, DIM, err, sizeof(err)), UL_OK);
    shard *s = take(fx->st, 1, 5);
    assert_int_equal(shard_seen_set(s, 0, 1), 0);
    assert_int_equal(shard_seen_set(s, 3, 31), 0);
    int64_t rows_seen[4] = {-1, 111, -1, -1}; /* a row flush: the rows' seen too */
    assert_int_equal(shard_rows_seen_set(s, rows_seen, 4), 0);
    s->flush_rows = 1;
    s->meta.applied = 1;
    checkpoint_ok(fx->st, s);
    assert_int_equal(rowset_size(s->home), N); /* the load took the statistics */
    int n[4] = {0, 0, 0, 0};
    assert_int_equal(
        store_home_load(fx->st, 1, DIM, got_row, got_stats, got_seen, n, err, sizeof(err)), UL_OK);
    assert_int_equal(n[0], N);
    assert_int_equal(n[1], N);
    assert_int_equal(n[2], 2);
    assert_int_equal(n[3], 1);
    /* A row of another k is refused, naming the key, the item and k. */
    assert_int_equal(store_home_load(fx->st, 1, DIM + 1, got_row, NULL, NULL, n, err, sizeof(err)),
                     UL_ERR_CORRUPT);
    if (strstr(err, "ul:{p1}:items") == NULL || strstr(err, "k=5") == NULL)
        fail_msg("%s", err);
    /* So is a user row. */
    assert_int_equal(store_users_put(fx->st, 0, ids, rows, 1, DIM, err, sizeof(err)), UL_OK);
    shard *b = shard_new(0, K + 1, 1, 0.1f, 10);
    assert_int_equal(store_shard_load(fx->st, b, err, sizeof(err)), UL_ERR_CORRUPT);
    assert_non_null(strstr(err, "ul:{p0}:users"));
    assert_non_null(strstr(err, "k=5"));
    shard_destroy(b);
    shard_destroy(s);
    free(ids);
    free(rows);
    free(st);
}

static void test_user_get(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    shard *s = make_shard(fx->st, 1);
    checkpoint_ok(fx->st, s);
    float row[DIM];
    hist h;
    int found = 0;
    assert_int_equal(store_user_get(fx->st, 1, 7000, row, DIM, &h, &found, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(found, 1);
    assert_true(row[0] == 7.0f);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.v[1].item, 7 + 2);
    free(h.v);
    assert_int_equal(store_user_get(fx->st, 1, 1, row, DIM, &h, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 0);
    size_t pending = 0;
    assert_int_equal(store_pending_count(fx->st, 1, &pending, err, sizeof(err)), UL_OK);
    assert_int_equal(pending, 2);
    shard_destroy(s);
}

static void test_encodings(void **state) {
    (void)state;
    forget_req a = make_req(12, 99, 0), b;
    unsigned char *buf = NULL;
    size_t len = 0;
    assert_int_equal(store_encode_forget(&a, &buf, &len), UL_OK);
    assert_int_equal(store_decode_forget(buf, len, &b), UL_OK);
    assert_string_equal(a.request_id, b.request_id);
    assert_int_equal(b.n_items, 3);
    assert_int_equal(b.items[2], 1LL << 40);
    forget_req_free(&b);
    for (size_t cut = 0; cut < len; cut++) /* every truncation is rejected */
        assert_int_equal(store_decode_forget(buf, cut, &b), UL_ERR_CORRUPT);
    buf[0] = 99; /* unknown format */
    assert_int_equal(store_decode_forget(buf, len, &b), UL_ERR_CORRUPT);
    free(buf);
    forget_req_free(&a);
    shard_evict e, back;
    memset(&e, 0, sizeof(e)); /* padding too: compared whole */
    e.count = 7;
    e.tmin = -5;
    e.tmax = 1LL << 42;
    e.bloom[0] = 0x81;
    e.bloom[SHARD_EVICT_BLOOM - 1] = 0x42;
    unsigned char v[STORE_EVICT_BYTES];
    store_encode_evict(&e, v);
    assert_int_equal(store_decode_evict(v, sizeof(v), &back), UL_OK);
    assert_memory_equal(&e, &back, sizeof(e));
    assert_int_equal(store_decode_evict(v, sizeof(v) - 1, &back), UL_ERR_CORRUPT);
}

static void test_connect_refused(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE] = "";
    store_opts o;
    store_opts_init(&o);
    o.port = 1; /* nothing listens on port 1 */
    o.timeout_ms = 500;
    assert_null(store_connect(&o, err, sizeof(err)));
    if (strstr(err, "redis 127.0.0.1:1: cannot connect") == NULL)
        fail_msg("%s", err);
    o.cluster = "127.0.0.1:1,nope";
    assert_null(store_connect(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "'nope' is not host:port"));
}

static void test_local_stop_removes_server(void **state) {
    fixture *fx = *state;
    if (fx->st == NULL || fx->rl == NULL)
        skip();
    char err[UL_ERRSTR_SIZE];
    redis_local *rl = redis_local_start(NULL, 10000, err, sizeof(err));
    assert_non_null(rl);
    int port = redis_local_port(rl);
    assert_true(port > 0 && port != redis_local_port(fx->rl));
    redis_local_stop(rl);
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_true(c == NULL || c->err != 0);
    redisFree(c);
    assert_null(redis_local_start("/nonexistent/redis-server", 1000, err, sizeof(err)));
    assert_non_null(strstr(err, "not found"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_facts),
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_hist_append),
        cmocka_unit_test(test_fence),
        cmocka_unit_test(test_home_rows),
        cmocka_unit_test(test_user_get),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_local_stop_removes_server),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
