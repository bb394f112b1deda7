/* test_publish.c: the outbox record format (every kind with its id, the
 * records of older versions without one, truncated and unknown input
 * refused), and a publisher against a private redis-server and the local
 * mock broker: a cycle's outbox entry carries its rows and receipts by kind
 * and id (an item row's bias with the global mean folded in), is dropped once
 * Kafka acknowledged it, and published again marks the rows it carries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "publish.h"
#include "pub_fixture.h"
#include "ul_buf.h"
#include "worker.h"

#define K 4

static void put(ul_buf *b, publish_kind kind, int64_t id, const char *key, const char *value) {
    publish_record r = {kind, id, key, strlen(key), value, strlen(value)};
    publish_record_put(b, &r);
}

static void expect(const unsigned char *e, size_t len, size_t *pos, publish_kind kind, int64_t id,
                   const char *key, const char *value) {
    publish_record r;
    assert_int_equal(publish_record_next(e, len, pos, &r), 1);
    assert_int_equal(r.kind, kind);
    assert_int_equal(r.id, id);
    assert_int_equal(r.key_len, strlen(key));
    assert_memory_equal(r.key, key, r.key_len);
    assert_int_equal(r.value_len, strlen(value));
    assert_memory_equal(r.value, value, r.value_len);
}

static void test_record_format(void **state) {
    (void)state;
    ul_buf b = {0};
    put(&b, PUBLISH_USER_ROW, 42, "u:42", "row-u");
    put(&b, PUBLISH_ITEM_ROW, 1LL << 40, "i:1099511627776", "row-i");
    put(&b, PUBLISH_RECEIPT, 42, "42", "");
    /* A record of an older version: u8 topic (0 factors), no id. */
    const unsigned char old[] = {0, 4, 0, 0, 0, 'u', ':', '7', '7', 1, 0, 0, 0, 'v'};
    ul_buf_put(&b, old, sizeof(old));
    assert_false(b.oom);
    size_t pos = 0;
    expect(b.data, b.len, &pos, PUBLISH_USER_ROW, 42, "u:42", "row-u");
    expect(b.data, b.len, &pos, PUBLISH_ITEM_ROW, 1LL << 40, "i:1099511627776", "row-i");
    expect(b.data, b.len, &pos, PUBLISH_RECEIPT, 42, "42", "");
    expect(b.data, b.len, &pos, PUBLISH_OLD_FACTOR, -1, "u:77", "v");
    publish_record r;
    assert_int_equal(publish_record_next(b.data, b.len, &pos, &r), 0);
    /* Every truncation ends in an error, never past the end (ASan). */
    for (size_t cut = 0; cut < b.len; cut++) {
        int rc;
        pos = 0;
        while ((rc = publish_record_next(b.data, cut, &pos, &r)) > 0)
            assert_true(pos <= cut);
        assert_true(rc == -1 || pos == cut);
    }
    b.data[0] = PUBLISH_N_KINDS; /* unknown kind */
    pos = 0;
    assert_int_equal(publish_record_next(b.data, b.len, &pos, &r), -1);
    ul_buf_free(&b);
}

/* A cycle of partition 0 by hand: user 7 and item 9 changed, one receipt. */
static forget_cycle make_cycle(float *user_row, float *item_row, codec_receipt *rc) {
    forget_cycle c;
    static int64_t uid = 7, iid = 9;
    memset(&c, 0, sizeof(c));
    c.version = 3;
    c.user_ids = &uid;
    c.user_rows = user_row;
    c.n_users = 1;
    c.item_ids = &iid;
    c.item_rows = item_row;
    c.n_items = 1;
    memset(rc, 0, sizeof(*rc));
    snprintf(rc->request_id, sizeof(rc->request_id), "req-1");
    rc->user_id = 7;
    rc->forgotten = 2;
    rc->model_version = 3;
    c.receipts = rc;
    c.n_receipts = 1;
    return c;
}

static void expect_factor(const codec *cd, const publish_record *r, float bias) {
    codec_factor f;
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(codec_decode_factor(cd, r->value, r->value_len, &f, err, sizeof(err)),
                     CODEC_OK);
    assert_int_equal(f.id, r->id);
    assert_int_equal(f.dim, K);
    assert_true(f.bias == bias);
    assert_int_equal(f.model_version, 3);
    codec_factor_clear(&f);
}

static void test_cycle_outbox(void **state) {
    pub_fixture *pf = *state;
    need_redis(state); /* pf->fx is its first member */
    char err[UL_ERRSTR_SIZE];
    live_opts lo;
    live_opts_init(&lo);
    lo.k = K;
    live *lv = live_new(&lo, pf->fx.st, 2, err, sizeof(err));
    assert_non_null(lv);
    shard *s = live_assign(lv, 0, NULL, err, sizeof(err));
    assert_non_null(s);
    assert_non_null(live_assign(lv, 1, NULL, err, sizeof(err))); /* item 9's home */
    assert_int_equal(live_apply_rating(lv, s, 7, 9, 4.0f, 1000), UL_OK);
    metrics *m = metrics_new();
    publisher *p = publish_new(pf->cfg, pf->log, m, pf->codec, lv, err, sizeof(err));
    assert_non_null(p);

    float urow[1 + K] = {0.5f, 1, 2, 3, 4}, irow[1 + K] = {-0.25f, 4, 3, 2, 1};
    codec_receipt rc;
    forget_cycle c = make_cycle(urow, irow, &rc);
    assert_int_equal(publish_outbox_add(p, s, &c, err, sizeof(err)), UL_OK);
    assert_int_equal(s->outbox.n, 1);
    const outbox_entry *e = &s->outbox.v[0];
    publish_record r;
    size_t pos = 0;
    assert_int_equal(publish_record_next(e->blob, e->len, &pos, &r), 1);
    assert_int_equal(r.kind, PUBLISH_USER_ROW);
    expect_factor(pf->codec, &r, 0.5f);
    assert_int_equal(publish_record_next(e->blob, e->len, &pos, &r), 1);
    assert_int_equal(r.kind, PUBLISH_ITEM_ROW);
    assert_int_equal(r.id, 9);
    expect_factor(pf->codec, &r, -0.25f + live_global_mean(lv)); /* mu folded in */
    assert_int_equal(publish_record_next(e->blob, e->len, &pos, &r), 1);
    assert_int_equal(r.kind, PUBLISH_RECEIPT);
    assert_int_equal(r.id, 7);
    assert_memory_equal(r.key, "7", 1);
    codec_receipt back;
    assert_int_equal(codec_decode_receipt(pf->codec, r.value, r.value_len, &back, err, sizeof(err)),
                     CODEC_OK);
    assert_string_equal(back.request_id, "req-1");
    assert_int_equal(back.forgotten, 2);
    assert_int_equal(publish_record_next(e->blob, e->len, &pos, &r), 0);

    /* Published and acknowledged: dropped (the next checkpoint deletes it). */
    publish_changed_class(p, SHARD_EVENT); /* the rating's marks */
    assert_int_equal(live_marked(lv), 0);
    assert_int_equal(publish_outbox_entry(p, 0, &s->outbox.v[0], err, sizeof(err)), UL_OK);
    assert_int_equal(publish_flush(p, 10000), 0);
    assert_int_equal(publish_poll(p, err, sizeof(err)), UL_OK);
    assert_int_equal(s->outbox.n, 0);
    assert_int_equal(s->outbox.n_removed, 1);

    /* Left in the outbox (a previous owner's): published again, rows marked;
     * not before it is in Redis (unsaved) and on a replica. */
    assert_int_equal(publish_outbox_add(p, s, &c, err, sizeof(err)), UL_OK);
    assert_int_equal(publish_outboxes(p, err, sizeof(err)), UL_OK);
    assert_int_equal(live_marked(lv), 0); /* unsaved: not published */
    s->outbox.v[0].unsaved = 0;
    s->replicated = 0;
    assert_int_equal(publish_outboxes(p, err, sizeof(err)), UL_OK);
    assert_int_equal(live_marked(lv), 0); /* not on a replica yet */
    s->replicated = 1;
    assert_int_equal(publish_outboxes(p, err, sizeof(err)), UL_OK);
    assert_int_equal(live_marked(lv), 2);
    assert_int_equal(publish_flush(p, 10000), 0);
    assert_int_equal(publish_poll(p, err, sizeof(err)), UL_OK);
    assert_int_equal(s->outbox.n, 0);
    assert_int_equal(metrics_count(m, METRICS_ROWS_PUBLISHED), 2); /* the rating's two rows */
    publish_destroy(p);
    metrics_destroy(m);
    live_destroy(lv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_format),
        cmocka_unit_test_setup_teardown(test_cycle_outbox, pub_setup, pub_teardown),
    };
    return cmocka_run_group_tests_name("publish", tests, NULL, NULL);
}
