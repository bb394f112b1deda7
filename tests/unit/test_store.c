/* test_store.c: the Redis store against a private redis-server
 * (redis_local): model facts, shard checkpoint/load round trips (rows,
 * deltas, histories, forget buffer, offsets, counters), dirty-only writes,
 * encodings, clear errors for a dead server or a malformed row, the
 * redis.shards parser and the placement over two shards. Skips
 * when redis-server is not installed. */
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

static void test_model_facts(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    store_model m = {0};
    int found = 1;
    assert_int_equal(store_model_get(fx->st, &m, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 0);
    store_model a = {K, 3.5f, 1.0f, 5.0f, 8};
    assert_int_equal(store_model_put(fx->st, &a, 1, err, sizeof(err)), UL_OK);
    store_model b = {16, 3.0f, 0.5f, 10.0f, 3};
    assert_int_equal(store_model_put(fx->st, &b, 1, err, sizeof(err)), UL_OK); /* kept */
    assert_int_equal(store_model_get(fx->st, &m, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 1);
    assert_int_equal(m.k, K);
    assert_true(m.global_mean == 3.5f && m.rating_min == 1.0f && m.rating_max == 5.0f);
    assert_int_equal(m.partitions, 8);
    assert_int_equal(store_model_put(fx->st, &b, 0, err, sizeof(err)), UL_OK); /* replaced */
    assert_int_equal(store_model_get(fx->st, &m, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(m.k, 16);
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

/* A shard with 50 users (3 ratings each, retention 2), 20 item deltas and two
 * pending forget requests. */
static shard *make_shard(int32_t p) {
    shard *s = shard_new(p, K, 42, 0.1f, 2);
    assert_non_null(s);
    for (int64_t u = 1; u <= 50; u++) {
        int32_t ui = shard_user(s, u * 1000);
        assert_true(ui >= 0);
        rowset_row(s->users, ui)[0] = (float)u;
        rowset_mark_dirty(s->users, ui);
        for (int j = 0; j < 3; j++) {
            hist_entry e = {u + j, 1000 * j, (float)(1 + j)};
            assert_int_equal(shard_hist_append(s, ui, &e), 0);
        }
    }
    for (int64_t i = 0; i < 20; i++) {
        int32_t di = rowset_insert(s->deltas, i, NULL);
        rowset_row(s->deltas, di)[K] = (float)i / 4;
        rowset_mark_dirty(s->deltas, di);
    }
    forget_req a = make_req(5, 3000, 0), b = make_req(9, 4000, 1);
    assert_int_equal(shard_pending_add(s, &a), 0);
    assert_int_equal(shard_pending_add(s, &b), 0);
    unsigned char *blob = malloc(3);
    memcpy(blob, "a\0b", 3);
    assert_int_equal(shard_outbox_add(s, 4, blob, 3), 0);
    blob = malloc(1);
    blob[0] = 'z';
    assert_int_equal(shard_outbox_add(s, 7, blob, 1), 0);
    s->meta.next_offset[SHARD_RATINGS] = 150;
    s->meta.next_offset[SHARD_FORGET] = 10;
    s->meta.applied = 150;
    s->meta.forgotten = 4;
    s->meta.version = 2;
    s->meta.forget_received = 2;
    s->meta.dead_letters = 1;
    return s;
}

static void assert_same_shard(shard *a, shard *b) {
    assert_int_equal(rowset_size(a->users), rowset_size(b->users));
    for (int32_t i = 0; i < rowset_size(a->users); i++) {
        int64_t key = rowset_key(a->users, i);
        int32_t j = rowset_find(b->users, key);
        assert_true(j >= 0);
        assert_memory_equal(rowset_row(a->users, i), rowset_row(b->users, j),
                            (1 + K) * sizeof(float));
        hist *ha = shard_hist(a, i), *hb = shard_hist(b, j);
        assert_int_equal(ha->n, hb->n);
        for (uint32_t e = 0; e < ha->n; e++) {
            assert_int_equal(ha->v[ha->start + e].item, hb->v[hb->start + e].item);
            assert_int_equal(ha->v[ha->start + e].time, hb->v[hb->start + e].time);
            assert_true(ha->v[ha->start + e].rating == hb->v[hb->start + e].rating);
        }
    }
    assert_int_equal(rowset_size(a->deltas), rowset_size(b->deltas));
    for (int32_t i = 0; i < rowset_size(a->deltas); i++) {
        int32_t j = rowset_find(b->deltas, rowset_key(a->deltas, i));
        assert_true(j >= 0);
        assert_memory_equal(rowset_row(a->deltas, i), rowset_row(b->deltas, j),
                            (2 + K) * sizeof(float));
    }
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
    assert_int_equal(a->n_outbox, b->n_outbox);
    for (size_t i = 0; i < a->n_outbox; i++) {
        assert_int_equal(a->outbox[i].version, b->outbox[i].version);
        assert_int_equal(a->outbox[i].len, b->outbox[i].len);
        assert_memory_equal(a->outbox[i].blob, b->outbox[i].blob, a->outbox[i].len);
    }
    assert_int_equal(a->meta.next_offset[0], b->meta.next_offset[0]);
    assert_int_equal(a->meta.next_offset[1], b->meta.next_offset[1]);
    assert_int_equal(a->meta.applied, b->meta.applied);
    assert_int_equal(a->meta.forgotten, b->meta.forgotten);
    assert_int_equal(a->meta.version, b->meta.version);
    assert_int_equal(a->meta.forget_received, b->meta.forget_received);
    assert_int_equal(a->meta.forget_completed, b->meta.forget_completed);
    assert_int_equal(a->meta.dead_letters, b->meta.dead_letters);
    assert_int_equal(a->meta.checkpoint_ms, b->meta.checkpoint_ms);
}

static shard *reload(store *st, int32_t p) {
    char err[UL_ERRSTR_SIZE];
    shard *s = shard_new(p, K, 42, 0.1f, 2);
    assert_non_null(s);
    int rc = store_shard_load(st, s, err, sizeof(err));
    if (rc != UL_OK)
        fail_msg("load: %s", err);
    return s;
}

static void test_checkpoint_roundtrip(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    shard *s = make_shard(3);
    /* retention 2: each user keeps its last two ratings */
    assert_int_equal(shard_hist(s, 0)->n, 2);
    assert_int_equal(shard_hist(s, 0)->v[shard_hist(s, 0)->start].item, 1 + 1);
    assert_int_equal(store_shard_checkpoint(fx->st, s, err, sizeof(err)), UL_OK);
    assert_true(s->meta.checkpoint_ms > 0);
    size_t n = 1;
    rowset_dirty(s->users, &n);
    assert_int_equal(n, 0);
    shard *r = reload(fx->st, 3);
    assert_same_shard(s, r);
    shard_destroy(r);

    /* Second step: complete one request, empty one history, change a row,
     * acknowledge one outbox entry. */
    assert_int_equal(shard_pending_remove(s, 0), 0);
    assert_int_equal(shard_outbox_remove(s, 4), 0);
    assert_int_equal(shard_outbox_remove(s, 99), 0); /* absent: no-op */
    assert_int_equal(s->n_outbox, 1);
    s->meta.forget_completed = 1;
    int32_t ui = rowset_find(s->users, 2000);
    shard_hist(s, ui)->n = 0;
    shard_hist_touch(s, ui);
    rowset_row(s->users, ui)[1] = 9.5f;
    rowset_mark_dirty(s->users, ui);
    s->meta.next_offset[SHARD_RATINGS] = 151;
    assert_int_equal(store_shard_checkpoint(fx->st, s, err, sizeof(err)), UL_OK);
    r = reload(fx->st, 3);
    assert_same_shard(s, r);
    assert_int_equal(r->n_pending, 1);
    assert_int_equal(r->pending[0].offset, 9);
    assert_int_equal(r->n_outbox, 1);
    assert_int_equal(r->outbox[0].version, 7);
    shard_destroy(r);

    /* Other partitions are untouched; a never-written partition is empty. */
    shard_meta meta;
    int found = 1;
    assert_int_equal(store_meta_get(fx->st, 4, &meta, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 0);
    r = reload(fx->st, 4);
    assert_int_equal(rowset_size(r->users), 0);
    assert_int_equal(r->meta.next_offset[0], -1);
    shard_destroy(r);
    shard_destroy(s);
}

static void test_user_get_and_deltas(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    shard *s = make_shard(1);
    assert_int_equal(store_shard_checkpoint(fx->st, s, err, sizeof(err)), UL_OK);
    float row[1 + K];
    hist h;
    int found = 0;
    assert_int_equal(store_user_get(fx->st, 1, 7000, row, 1 + K, &h, &found, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(found, 1);
    assert_true(row[0] == 7.0f);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.v[1].item, 7 + 2);
    free(h.v);
    assert_int_equal(store_user_get(fx->st, 1, 1, row, 1 + K, &h, &found, err, sizeof(err)), UL_OK);
    assert_int_equal(found, 0);
    rowset *d = rowset_new(2 + K);
    assert_int_equal(store_deltas_load(fx->st, 1, d, err, sizeof(err)), UL_OK);
    assert_int_equal(rowset_size(d), 20);
    assert_true(rowset_row(d, rowset_find(d, 8))[K] == 2.0f);
    rowset_destroy(d);
    shard_destroy(s);
}

static void test_bulk_rows_and_bad_row(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    enum { N = 1500 }; /* more than one HSET batch */
    int64_t *ids = malloc(N * sizeof(int64_t));
    float *rows = malloc(N * (1 + K) * sizeof(float));
    for (int i = 0; i < N; i++) {
        ids[i] = 100 + i;
        for (int f = 0; f <= K; f++)
            rows[i * (1 + K) + f] = (float)(i + f);
    }
    assert_int_equal(store_items_put(fx->st, ids, rows, N, 1 + K, err, sizeof(err)), UL_OK);
    rowset *items = rowset_new(1 + K);
    assert_int_equal(store_items_load(fx->st, items, err, sizeof(err)), UL_OK);
    assert_int_equal(rowset_size(items), N);
    int32_t idx = rowset_find(items, 100 + 1234);
    assert_memory_equal(rowset_row(items, idx), rows + 1234 * (1 + K), (1 + K) * sizeof(float));
    rowset_destroy(items);

    /* A row written with another k is refused with a message. */
    assert_int_equal(store_users_put(fx->st, 0, ids, rows, 1, 1 + K, err, sizeof(err)), UL_OK);
    shard *s = shard_new(0, K + 1, 1, 0.1f, 10);
    assert_int_equal(store_shard_load(fx->st, s, err, sizeof(err)), UL_ERR_CORRUPT);
    assert_non_null(strstr(err, "ul:{p0}:users"));
    assert_non_null(strstr(err, "k=5"));
    shard_destroy(s);
    free(ids);
    free(rows);
}

static void test_forget_encoding(void **state) {
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
}

static void test_connect_refused(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE] = "";
    store_opts o;
    store_opts_init(&o);
    o.port = 1; /* nothing listens on port 1 */
    o.timeout_ms = 500;
    assert_null(store_connect(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot connect to redis 127.0.0.1:1"));
}

static void test_local_stop_removes_server(void **state) {
    fixture *fx = *state;
    if (fx->st == NULL)
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

static void test_shards_parse(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE] = "";
    int n = 0;
    assert_int_equal(store_shards_check("", &n, err, sizeof(err)), UL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(store_shards_check("a:1, b:2 ,[::1]:6379", &n, err, sizeof(err)), UL_OK);
    assert_int_equal(n, 3);
    const char *bad[] = {"a", "a:", ":1", "a:0", "a:65536", "a:1,", "a:1,,b:2", "a:x1", "[]:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(store_shards_check(bad[i], &n, err, sizeof(err)), UL_ERR_ARG);
        assert_non_null(strstr(err, "redis.shards: '"));
    }
}

/* 1 when `key` exists on the redis-server at `port` (password `pw`). */
static int key_on(int port, const char *pw, const char *key) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_true(c != NULL && c->err == 0);
    redisReply *r = redisCommand(c, "AUTH %s", pw);
    assert_true(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(c, "EXISTS %s", key);
    assert_non_null(r);
    int found = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    redisFree(c);
    return found;
}

static void test_two_shards(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE], list[64];
    const char *pw = redis_local_password(fx->rl); /* one redis.password for both shards */
    redis_local *rl2 = redis_local_start_with_password(NULL, pw, 10000, err, sizeof(err));
    assert_non_null(rl2);
    int p1 = redis_local_port(fx->rl), p2 = redis_local_port(rl2);
    snprintf(list, sizeof(list), "127.0.0.1:%d,127.0.0.1:%d", p1, p2);
    store_opts o;
    store_opts_init(&o);
    o.shards = list;
    o.password = pw;
    store *st = store_connect(&o, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_shard_count(st), 2);
    assert_int_equal(store_ping(st, err, sizeof(err)), UL_OK);
    float rows[4 * (2 + K)];
    int64_t ids[4] = {10, 11, 12, 13};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        rows[i] = (float)i;
    for (int32_t p = 0; p < 4; p++) {
        assert_int_equal(store_shard_of(st, p), p % 2);
        assert_int_equal(store_users_put(st, p, ids, rows, 1, 1 + K, err, sizeof(err)), UL_OK);
        char key[32];
        snprintf(key, sizeof(key), "ul:{p%d}:users", (int)p);
        assert_int_equal(key_on(p % 2 ? p2 : p1, pw, key), 1);
        assert_int_equal(key_on(p % 2 ? p1 : p2, pw, key), 0);
    }
    /* Items spread by id: 10 and 12 on shard 0, 11 and 13 on shard 1; all read back. */
    assert_int_equal(store_items_put(st, ids, rows, 4, 2 + K, err, sizeof(err)), UL_OK);
    rowset *rs = rowset_new(2 + K);
    assert_int_equal(store_items_load(st, rs, err, sizeof(err)), UL_OK);
    assert_int_equal(rowset_size(rs), 4);
    for (int i = 0; i < 4; i++) {
        int32_t idx = rowset_find(rs, ids[i]);
        assert_true(idx >= 0);
        assert_memory_equal(rowset_row(rs, idx), rows + i * (2 + K), (2 + K) * sizeof(float));
    }
    rowset_destroy(rs);
    store_model m = {K, 3.5f, 1, 5, 4};
    assert_int_equal(store_model_put(st, &m, 0, err, sizeof(err)), UL_OK);
    assert_int_equal(key_on(p1, pw, "ul:model"), 1);
    assert_int_equal(key_on(p2, pw, "ul:model"), 0);
    assert_int_equal(store_clear_all(st, err, sizeof(err)), UL_OK);
    assert_int_equal(key_on(p2, pw, "ul:items"), 0);
    assert_int_equal(key_on(p2, pw, "ul:{p1}:users"), 0);
    store_destroy(st);
    redis_local_stop(rl2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_facts),
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_user_get_and_deltas),
        cmocka_unit_test(test_bulk_rows_and_bad_row),
        cmocka_unit_test(test_forget_encoding),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_local_stop_removes_server),
        cmocka_unit_test(test_shards_parse),
        cmocka_unit_test(test_two_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
