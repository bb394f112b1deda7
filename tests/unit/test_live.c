/* test_live.c: the live model (state format 2) against a private
 * redis-server, with an in-memory stand-in for the item-updates topic (one
 * log per partition, records encoded and decoded by the codec, deliveries
 * taken from the shards' outboxes by the publisher's record format):
 *   - a crash and a replay from the last checkpoint give the same counts,
 *     histories and exact item statistics (replica and durable) as an
 *     uninterrupted run;
 *   - two lives owning different partitions exchange item changes: both
 *     replicas end with the exact statistics of every item and (nearly) the
 *     same rows; a change of one is seen by the other after one exchange;
 *   - exact deliveries apply once (a duplicate, an older sequence and the
 *     sender's own records are not applied twice), best-effort records of
 *     the sender are skipped, records of another state (nonce) ignored;
 *   - catch-up: a new owner of a home partition applies the exact
 *     deliveries its predecessor did not checkpoint, to the durable side
 *     only when the replica has them already;
 *   - the fence: a zombie's checkpoint is refused;
 *   - an unlearning cycle (forget.h; items by list and by window, unknown
 *     users, waiting for preceding ratings) corrects item statistics and
 *     rows through exact deliveries, and a restart sees the corrections;
 *   - publishing marks by class, items by their home's owner only;
 *   - settings that disagree with the stored model are refused naming both
 *     values; an older state format is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "codec.h"
#include "forget.h"
#include "forget_run.h"
#include "live.h"
#include "publish.h"
#include "rng.h"
#include "store.h"
#include "store_fixture.h"
#include "ul_err.h"

#define K 8
#define PARTS 2

/* ---- the item-updates stand-in ------------------------------------------ */

typedef struct msg {
    unsigned char *data;
    size_t len;
} msg;

typedef struct bus {
    codec *c;
    msg *log[PARTS];
    size_t n[PARTS], cap[PARTS];
} bus;

static bus the_bus;

static bus *bus_open(void) {
    char err[UL_ERRSTR_SIZE];
    memset(&the_bus, 0, sizeof(the_bus));
    the_bus.c = codec_new(NULL, err, sizeof(err));
    assert_non_null(the_bus.c);
    return &the_bus;
}

static void bus_close(bus *b) {
    for (int p = 0; p < PARTS; p++) {
        for (size_t i = 0; i < b->n[p]; i++)
            free(b->log[p][i].data);
        free(b->log[p]);
    }
    codec_destroy(b->c);
    memset(b, 0, sizeof(*b));
}

static void bus_put(bus *b, int32_t p, const void *data, size_t len) {
    assert_true(p >= 0 && p < PARTS);
    if (b->n[p] == b->cap[p]) {
        b->cap[p] = b->cap[p] ? 2 * b->cap[p] : 64;
        b->log[p] = realloc(b->log[p], b->cap[p] * sizeof(msg));
    }
    msg *m = &b->log[p][b->n[p]++];
    m->data = malloc(len);
    memcpy(m->data, data, len);
    m->len = len;
}

/* live_push_fn: a best-effort record onto the log of `home`. */
static void bus_push(void *opaque, int32_t home, const codec_item_updates *u) {
    bus *b = opaque;
    codec_buf buf = {0};
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(codec_encode_item_updates(b->c, u, &buf, err, sizeof(err)), CODEC_OK);
    bus_put(b, home, buf.data, buf.len);
    codec_buf_free(&buf);
}

/* Publish s's delivery entries (as Kafka would acknowledge them). */
static void bus_deliver(bus *b, shard *s) {
    while (s->deliveries.n > 0) {
        outbox_entry *e = &s->deliveries.v[0];
        publish_record r;
        size_t pos = 0;
        while (publish_record_next(e->blob, e->len, &pos, &r) > 0) {
            assert_int_equal(r.kind, PUBLISH_ITEM_UPDATES);
            bus_put(b, (int32_t)r.id, r.value, r.value_len);
        }
        assert_int_equal(outbox_list_remove(&s->deliveries, e->version), 0);
    }
}

/* Everything of partition p from offset `from` into l. */
static void bus_feed_from(bus *b, live *l, int32_t p, size_t from) {
    char err[UL_ERRSTR_SIZE];
    codec_item_updates u;
    memset(&u, 0, sizeof(u));
    for (size_t i = from; i < b->n[p]; i++) {
        assert_int_equal(codec_decode_item_updates(b->c, b->log[p][i].data, b->log[p][i].len, &u,
                                                   err, sizeof(err)),
                         CODEC_OK);
        if (live_item_updates(l, p, (int64_t)i, &u, err, sizeof(err)) != UL_OK)
            fail_msg("item updates: %s", err);
    }
    codec_item_updates_clear(&u);
}

/* Every partition from where the live's replica is (as the worker's consumer). */
static void bus_feed(bus *b, live *l) {
    for (int32_t p = 0; p < PARTS; p++) {
        int64_t pos = live_updates_position(l, p);
        shard *s = live_shard(l, p);
        int64_t dur = s ? s->meta.next_offset[SHARD_ITEM_UPDATES] : -1;
        int64_t from = pos < 0 ? 0 : pos;
        if (s && dur < from)
            from = dur < 0 ? 0 : dur; /* the catch-up seek */
        bus_feed_from(b, l, p, (size_t)from);
    }
}

/* ---- lives and streams -------------------------------------------------- */

static live *open_live(store *st) {
    char err[UL_ERRSTR_SIZE];
    live_opts o;
    live_opts_init(&o);
    o.k = K;
    o.retention = 50;
    o.encode = publish_delivery_record;
    o.encode_opaque = the_bus.c;
    live *l = live_new(&o, st, PARTS, err, sizeof(err));
    if (l == NULL)
        fail_msg("live_new: %s", err);
    return l;
}

static shard *assign(live *l, int32_t p) {
    char err[UL_ERRSTR_SIZE];
    shard *s = live_assign(l, p, NULL, err, sizeof(err));
    if (s == NULL)
        fail_msg("assign %d: %s", (int)p, err);
    return s;
}

static void checkpoint(live *l, shard *s) {
    char err[UL_ERRSTR_SIZE];
    int rc = live_checkpoint(l, s, err, sizeof(err));
    if (rc != UL_OK)
        fail_msg("checkpoint of %d: %s", (int)s->partition, err);
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

/* Apply events [from, to) of partition p (offsets: the event's index in the
 * partition's sub-stream), advancing its offset. */
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

/* The stream's exact statistics of item i. */
static void exact_stats(const ev *v, size_t n, int64_t item, int64_t *count, double *sum) {
    *count = 0;
    *sum = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].item == item) {
            (*count)++;
            *sum += v[i].rating;
        }
}

/* Every item's replica statistics in l are the stream's. */
static void assert_exact_replica(const live *l, const ev *v, size_t n) {
    for (int64_t i = 1; i <= 30; i++) {
        int64_t c, ec;
        double s, es;
        live_item_stats(l, i, &c, &s);
        exact_stats(v, n, i, &ec, &es);
        if (c != ec || fabs(s - es) > 1e-9)
            fail_msg("item %lld: replica %lld/%g, stream %lld/%g", (long long)i, (long long)c, s,
                     (long long)ec, es);
    }
}

/* Every item's durable statistics in Redis are the stream's. */
static void assert_exact_durable(store *st, const ev *v, size_t n) {
    char err[UL_ERRSTR_SIZE];
    for (int32_t p = 0; p < PARTS; p++) {
        shard *s = shard_new(p, K, 1, 0.1f, 50);
        assert_int_equal(store_shard_read(st, s, err, sizeof(err)), UL_OK);
        for (int64_t i = 1 + (p == 1 ? 0 : 1); i <= 30; i += PARTS) {
            int64_t ec;
            double es;
            exact_stats(v, n, i, &ec, &es);
            int32_t hi = rowset_find(s->home, i);
            rows_stats got = hi >= 0 ? shard_home_stats(s, hi) : (rows_stats){0, 0};
            if (got.count != ec || fabs(got.sum - es) > 1e-9)
                fail_msg("item %lld (home %d): Redis %lld/%g, stream %lld/%g", (long long)i, (int)p,
                         (long long)got.count, got.sum, (long long)ec, es);
        }
        shard_destroy(s);
    }
}

/* One round of a worker's housekeeping: push, checkpoint, deliver. */
static void round_trip(bus *b, live *l) {
    live_push(l, SHARD_EVENT, bus_push, b);
    for (int32_t p = 0; p < PARTS; p++) {
        shard *s = live_shard(l, p);
        if (s) {
            checkpoint(l, s);
            bus_deliver(b, s);
        }
    }
}

/* ---- tests -------------------------------------------------------------- */

static void test_replay_exactly_once(void **state) {
    fixture *fx = need_redis(state);
    bus *b = bus_open();
    size_t n = 4000;
    ev *v = make_stream(n);
    /* Run A owns both partitions: checkpoint at 1000 of each, apply more,
     * "crash" (no checkpoint, nothing delivered since). */
    live *a = open_live(fx->st);
    shard *a0 = assign(a, 0), *a1 = assign(a, 1);
    feed(a, a0, v, n, 0, 1000);
    feed(a, a1, v, n, 0, 1000);
    round_trip(b, a);
    bus_feed(b, a);
    round_trip(b, a); /* the homes' statistics durable */
    feed(a, a0, v, n, 1000, 1700);
    feed(a, a1, v, n, 1000, 1300);
    live_push(a, SHARD_EVENT, bus_push, b); /* best effort: on the wire, not durable */
    live_destroy(a);

    /* Run B resumes from Redis and the topic. */
    live *l = open_live(fx->st);
    shard *s0 = assign(l, 0), *s1 = assign(l, 1);
    assert_int_equal(s0->meta.applied, 1000);
    assert_int_equal(s0->meta.next_offset[SHARD_RATINGS], 1000);
    bus_feed(b, l);
    feed(l, s0, v, n, s0->meta.next_offset[SHARD_RATINGS], INT64_MAX);
    feed(l, s1, v, n, s1->meta.next_offset[SHARD_RATINGS], INT64_MAX);
    assert_int_equal(s0->meta.applied + s1->meta.applied, n);
    round_trip(b, l);
    bus_feed(b, l);
    round_trip(b, l);
    assert_exact_replica(l, v, n);
    assert_exact_durable(fx->st, v, n);
    /* A third start, replica from Redis plus the topic: exact too. */
    live *c = open_live(fx->st);
    bus_feed(b, c);
    assert_exact_replica(c, v, n);
    live_destroy(c);
    live_destroy(l);
    free(v);
    bus_close(b);
}

static void test_two_lives_exchange(void **state) {
    fixture *fx = need_redis(state);
    bus *b = bus_open();
    size_t n = 3000;
    ev *v = make_stream(n);
    store *st2 = fixture_store(fx);
    live *a = open_live(fx->st), *bl = open_live(st2);
    shard *a0 = assign(a, 0), *b1 = assign(bl, 1);
    for (int64_t from = 0; from < 2000; from += 250) {
        feed(a, a0, v, n, from, from + 250);
        feed(bl, b1, v, n, from, from + 250);
        round_trip(b, a);
        round_trip(b, bl);
        bus_feed(b, a);
        bus_feed(b, bl);
    }
    assert_exact_replica(a, v, n);
    assert_exact_replica(bl, v, n);
    round_trip(b, a);
    round_trip(b, bl);
    assert_exact_durable(fx->st, v, n);
    for (int64_t i = 1; i <= 30; i++) /* the same rows, up to the order of additions */
        for (int f = 0; f < 1 + K; f++)
            assert_true(fabsf(live_item_row(a, i)[f] - live_item_row(bl, i)[f]) < 1e-4f);
    /* One rating on A: B sees the row move after one exchange. */
    float before = live_item_row(bl, 7)[ROWS_BIAS];
    assert_int_equal(live_apply_rating(a, a0, 2, 7, 5.0f, 1), UL_OK);
    assert_true(live_item_row(bl, 7)[ROWS_BIAS] == before);
    live_push(a, SHARD_EVENT, bus_push, b);
    bus_feed(b, bl);
    assert_true(live_item_row(bl, 7)[ROWS_BIAS] != before);
    assert_true(fabsf(live_item_row(bl, 7)[ROWS_BIAS] - live_item_row(a, 7)[ROWS_BIAS]) < 1e-5f);
    live_destroy(a);
    live_destroy(bl);
    store_destroy(st2);
    free(v);
    bus_close(b);
}

/* Stats of item i in l. */
static int64_t count_of(const live *l, int64_t item) {
    int64_t c;
    double s;
    live_item_stats(l, item, &c, &s);
    return c;
}

static void test_dedup_and_own_records(void **state) {
    fixture *fx = need_redis(state);
    bus *b = bus_open();
    store *st2 = fixture_store(fx);
    live *a = open_live(fx->st), *h = open_live(st2);
    shard *a0 = assign(a, 0), *h1 = assign(h, 1);
    assert_int_equal(live_apply_rating(a, a0, 2, 5, 4.0f, 1), UL_OK); /* item 5: home 1 */
    assert_int_equal(count_of(a, 5), 1);                              /* applied at once */
    round_trip(b, a);
    assert_int_equal(b->n[1], 2); /* the best-effort row delta, then the exact delivery */
    bus_feed(b, h);
    bus_feed(b, a); /* its own records: nothing applied twice */
    assert_int_equal(count_of(a, 5), 1);
    assert_int_equal(count_of(h, 5), 1);
    rows_stats d = shard_home_stats(h1, rowset_find(h1->home, 5));
    assert_int_equal(d.count, 1);
    /* The same delivery again (at least once on the wire), later offset. */
    bus_put(b, 1, b->log[1][1].data, b->log[1][1].len);
    bus_feed(b, h);
    assert_int_equal(count_of(h, 5), 1);
    assert_int_equal(shard_home_stats(h1, rowset_find(h1->home, 5)).count, 1);
    /* A record of another state (Redis lost everything since) is ignored. */
    codec_item_updates u;
    memset(&u, 0, sizeof(u));
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(
        codec_decode_item_updates(b->c, b->log[1][1].data, b->log[1][1].len, &u, err, sizeof(err)),
        CODEC_OK);
    u.seq = 1000;
    u.nonce ^= 1;
    assert_int_equal(live_item_updates(h, 1, 100, &u, err, sizeof(err)), UL_OK);
    assert_int_equal(count_of(h, 5), 1);
    /* One that does not fit (an item of another home) is refused whole. */
    u.nonce ^= 1;
    u.items[0].id = 4;
    assert_int_equal(live_item_updates(h, 1, 101, &u, err, sizeof(err)), UL_ERR_RANGE);
    assert_non_null(strstr(err, "its home is 0"));
    codec_item_updates_clear(&u);
    live_destroy(a);
    live_destroy(h);
    store_destroy(st2);
    bus_close(b);
}

static void test_catch_up(void **state) {
    fixture *fx = need_redis(state);
    bus *b = bus_open();
    size_t n = 1200;
    ev *v = make_stream(n);
    store *st2 = fixture_store(fx);
    live *src = open_live(fx->st), *home = open_live(st2);
    shard *s0 = assign(src, 0);
    assign(home, 1);
    feed(src, s0, v, n, 0, INT64_MAX);
    round_trip(b, src);
    bus_feed(b, home); /* applied to home's durable state, never checkpointed: */
    live_destroy(home);
    /* A new owner of partition 1 whose replica is current already: the
     * catch-up gives the durable side what the old owner lost, and leaves
     * the replica alone. */
    live *next = open_live(st2);
    bus_feed(b, next);
    int64_t c1 = count_of(next, 5);
    shard *n1 = assign(next, 1);
    assert_int_equal(n1->meta.next_offset[SHARD_ITEM_UPDATES], -1);
    bus_feed(b, next);
    assert_int_equal(count_of(next, 5), c1);
    checkpoint(next, n1);
    bus_feed(b, src); /* and home 0's own side */
    round_trip(b, src);
    /* Partition 0's ratings only: its items' statistics are the stream's
     * restricted to partition 0's users. */
    ev *only0 = malloc(n * sizeof(*only0));
    size_t n0 = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].user % PARTS == 0)
            only0[n0++] = v[i];
    assert_exact_durable(fx->st, only0, n0);
    assert_exact_replica(next, only0, n0);
    free(only0);
    live_destroy(next);
    live_destroy(src);
    store_destroy(st2);
    free(v);
    bus_close(b);
}

static void test_fence_zombie(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    bus *b = bus_open();
    store *st2 = fixture_store(fx);
    live *old = open_live(fx->st), *cur = open_live(st2);
    shard *o0 = assign(old, 0);
    assert_int_equal(live_apply_rating(old, o0, 2, 5, 4.0f, 1), UL_OK);
    o0->meta.next_offset[SHARD_RATINGS] = 1;
    checkpoint(old, o0);
    shard *c0 = assign(cur, 0); /* the group gave partition 0 to another worker */
    assert_int_equal(c0->meta.applied, 1);
    assert_int_equal(live_apply_rating(old, o0, 4, 5, 1.0f, 2), UL_OK); /* the zombie goes on */
    o0->meta.next_offset[SHARD_RATINGS] = 2;
    assert_int_equal(live_checkpoint(old, o0, err, sizeof(err)), STORE_ERR_FENCE);
    assert_non_null(strstr(err, "another worker took the partition"));
    /* Dropping it takes its undelivered statistics back out of its replica. */
    assert_int_equal(count_of(old, 5), 2);
    assert_int_equal(live_drop(old, 0, err, sizeof(err)), UL_OK);
    assert_int_equal(count_of(old, 5), 1);
    shard *r = shard_new(0, K, 1, 0.1f, 50);
    assert_int_equal(store_shard_read(fx->st, r, err, sizeof(err)), UL_OK);
    assert_int_equal(r->meta.applied, 1); /* nothing of the zombie's */
    assert_int_equal(r->meta.next_offset[SHARD_RATINGS], 1);
    shard_destroy(r);
    checkpoint(cur, c0);
    live_destroy(old);
    live_destroy(cur);
    store_destroy(st2);
    bus_close(b);
}

/* Item rows reach Redis at row flushes, as of rows_off: a restart that loads
 * them and replays the topic from there has every change once, whether the
 * flushing process's own changes had come back through the topic or not. */
static void test_row_flush_exact(void **state) {
    fixture *fx = need_redis(state);
    bus *b = bus_open();
    size_t n = 3000;
    ev *v = make_stream(n);
    live *a = open_live(fx->st);
    shard *s0 = assign(a, 0), *s1 = assign(a, 1);
    for (int step = 0; step < 3; step++) {
        feed(a, s0, v, n, step * 400, (step + 1) * 400);
        feed(a, s1, v, n, step * 400, (step + 1) * 400);
        live_push(a, SHARD_EVENT, bus_push, b);
        if (step == 1)
            bus_feed(b, a); /* its own records come back (in between: on their way) */
        live_flush_due(a, 0);
        live_flush_due(a, 1);
        round_trip(b, a);
    }
    /* A restart: rows from Redis, the topic replayed from rows_off. */
    live *r = open_live(fx->st);
    bus_feed(b, r);
    for (int64_t i = 1; i <= 30; i++) {
        const float *x = live_item_row(a, i), *y = live_item_row(r, i);
        for (int f = 0; f <= K; f++)
            if (fabsf(x[f] - y[f]) > 1e-5f)
                fail_msg("item %lld factor %d: %g before the restart, %g after", (long long)i, f,
                         x[f], y[f]);
    }
    live_destroy(r);
    live_destroy(a);
    free(v);
    bus_close(b);
}

static void test_forget_cycle(void **state) {
    fixture *fx = need_redis(state);
    bus *b = bus_open();
    live *l = open_live(fx->st);
    shard *s = assign(l, 0);
    assign(l, 1);
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
    round_trip(b, l);
    bus_feed(b, l);
    int found;
    double before = 0;
    for (int64_t i = 1; i <= 5; i++)
        before += live_predict(l, s, 100, i, &found);
    before /= 5;
    uint64_t applied = s->meta.applied;
    int64_t c3 = count_of(l, 3);
    float bias3 = live_item_row(l, 3)[ROWS_BIAS];

    int64_t items[] = {1, 2, 3};
    forget_req a = forget_test_request(0, 100, items, 3, 0, 0);
    forget_req bq = forget_test_request(1, 100, NULL, 0, 5004, 5005); /* items 4, 5 by time */
    forget_req c = forget_test_request(2, 777, items, 3, 0, 0);       /* never seen */
    forget_req d = forget_test_request(3, 100, items, 1, 0, 0);
    d.ratings_hwm = 1000000; /* waits for ratings not applied yet */
    assert_int_equal(shard_pending_add(s, &a), 0);
    assert_int_equal(shard_pending_add(s, &bq), 0);
    assert_int_equal(shard_pending_add(s, &c), 0);
    assert_int_equal(shard_pending_add(s, &d), 0);
    s->meta.next_offset[SHARD_RATINGS] = 10;
    s->meta.forget_received = 4;

    size_t n;
    forget_cycle *all = forget_test_run(l, "foldin", &n);
    assert_int_equal(n, 1);
    forget_cycle *out = &all[0];
    assert_int_equal(out->n_receipts, 3);
    assert_string_equal(out->receipts[0].request_id, "req-0");
    assert_int_equal(out->receipts[0].forgotten, 9);
    assert_int_equal(out->receipts[1].forgotten, 6);
    assert_int_equal(out->receipts[2].forgotten, 0);
    assert_int_equal(out->receipts[2].user_id, 777);
    assert_int_equal(out->receipts[0].completed_at, 12345);
    assert_int_equal(out->n_forgotten, 15);
    assert_int_equal(out->version, 1);
    assert_int_equal(out->n_users, 1);
    assert_int_equal(out->user_ids[0], 100);
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
    /* Item 3 lost user 100's three ratings and moved (fold-in corrects
     * item rows), in the replica now and at its home after the delivery. */
    assert_int_equal(count_of(l, 3), c3 - 3);
    assert_true(live_item_row(l, 3)[ROWS_BIAS] != bias3);
    forget_test_free(all, n);

    /* The cycle's result survives a checkpoint and reload. */
    round_trip(b, l);
    bus_feed(b, l);
    round_trip(b, l);
    live *l2 = open_live(fx->st);
    shard *s2 = assign(l2, 0);
    bus_feed(b, l2);
    assert_int_equal(s2->n_pending, 1);
    assert_int_equal(s2->pending[0].offset, 3);
    assert_int_equal(shard_hist(s2, rowset_find(s2->users, 100))->n, 30);
    assert_int_equal(count_of(l2, 3), c3 - 3);
    for (int64_t i = 1; i <= 5; i++) {
        int f1, f2;
        float p1 = live_predict(l, s, 100, i, &f1), p2 = live_predict(l2, s2, 100, i, &f2);
        if (fabsf(p1 - p2) >= 1e-3f)
            fail_msg("item %lld: %g before the restart, %g after", (long long)i, p1, p2);
    }
    /* Once the ratings catch up, d runs: its items are already forgotten. */
    s2->meta.next_offset[SHARD_RATINGS] = 1000000;
    all = forget_test_run(l2, "foldin", &n);
    assert_int_equal(n, 1);
    out = &all[0];
    assert_int_equal(out->n_receipts, 1);
    assert_int_equal(out->receipts[0].forgotten, 0);
    forget_test_free(all, n);
    assert_null(forget_test_run(l2, "foldin", &n));
    live_destroy(l2);
    live_destroy(l);
    bus_close(b);
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

static size_t publish(live *l, shard_class cls, seen *sn) {
    memset(sn, 0, sizeof(*sn));
    sn->k_ok = 1;
    return live_publish_marked(l, cls, collect, sn);
}

/* Events mark their user and item once per publish, training marks its own
 * class; items go out from their home's owner only; a takeover marks every
 * user of the partition and its home items. */
static void test_publish_marks(void **state) {
    fixture *fx = need_redis(state);
    bus *b = bus_open();
    live *l = open_live(fx->st);
    shard *s0 = assign(l, 0);
    seen sn;
    assert_int_equal(publish(l, SHARD_EVENT, &sn), 0); /* nothing yet */
    assert_int_equal(live_apply_rating(l, s0, 2, 7, 4.0f, 1), UL_OK);
    assert_int_equal(live_apply_rating(l, s0, 2, 7, 5.0f, 2), UL_OK);
    assert_int_equal(live_apply_rating(l, s0, 4, 8, 3.0f, 3), UL_OK);
    assert_int_equal(live_marked(l), 4);
    /* Items 7 (home 1, not owned) and 8 (home 0): only 8 is published. */
    assert_int_equal(publish(l, SHARD_EVENT, &sn), 3);
    assert_int_equal(sn.n[ROWS_USER], 2);
    assert_true(has(&sn, ROWS_ITEM, 8) && !has(&sn, ROWS_ITEM, 7));
    assert_true(sn.k_ok);
    assert_int_equal(live_marked(l), 0);
    /* Training changes wait for their own class. */
    int32_t u2 = rowset_find(s0->users, 2);
    live_sgd(l, s0, u2, 8, 4.0f, SHARD_TRAINING);
    assert_int_equal(publish(l, SHARD_EVENT, &sn), 0);
    assert_int_equal(publish(l, SHARD_TRAINING, &sn), 2);
    assert_true(has(&sn, ROWS_USER, 2) && has(&sn, ROWS_ITEM, 8));
    /* A takeover of partition 1 marks its home items (7). */
    assign(l, 1);
    live_mark_partition(l, 1);
    assert_int_equal(publish(l, SHARD_EVENT, &sn), 1);
    assert_true(has(&sn, ROWS_ITEM, 7));
    live_mark_partition(l, 0);
    assert_int_equal(publish(l, SHARD_EVENT, &sn), 3);
    live_mark_row(l, ROWS_USER, 4);
    live_mark_row(l, ROWS_ITEM, 8);
    live_mark_row(l, ROWS_ITEM, 12345); /* unknown: ignored */
    assert_int_equal(publish(l, SHARD_EVENT, &sn), 2);
    live_destroy(l);
    bus_close(b);
}

/* The contract other modules code against: classes, statistics,
 * corrections, user flags, evictions. */
static void test_contract(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    bus *b = bus_open();
    live *l = open_live(fx->st);
    shard *s = assign(l, 0);
    int32_t u = shard_user(s, 2);
    assert_true(u >= 0);
    assert_int_equal(s->user_flags[u], 0);
    s->user_flags[u] |= SHARD_USER_BUSY;
    float e1 = live_sgd(l, s, u, 9, 5.0f, SHARD_TRAINING);
    assert_true(isfinite(e1));
    assert_int_equal(shard_is_dirty(s), 0); /* training: the next row flush */
    assert_int_equal(count_of(l, 9), 0);    /* SGD only, no statistics */
    float e2 = live_sgd(l, s, u, 9, 5.0f, SHARD_EVENT);
    assert_true(fabsf(e2) < fabsf(e1)); /* it learned */
    assert_int_equal(shard_is_dirty(s), 1);
    assert_int_equal(s->user_flags[u], SHARD_USER_BUSY);
    /* A correction: replica now, delivered at the checkpoint. */
    float delta[1 + K];
    for (int f = 0; f <= K; f++)
        delta[f] = 0.125f;
    float bias = live_item_row(l, 9)[ROWS_BIAS];
    assert_int_equal(live_correct_item(l, s, 9, delta, -2, -7.0), UL_OK);
    assert_true(live_item_row(l, 9)[ROWS_BIAS] == bias + 0.125f);
    int64_t c;
    double sum;
    live_item_stats(l, 9, &c, &sum);
    assert_int_equal(c, -2);
    assert_true(sum == -7.0);
    live_item_stats(l, 123456, &c, &sum);
    assert_int_equal(c, 0);
    checkpoint(l, s);
    assert_int_equal(s->deliveries.n, 1);
    /* Evictions: retention 50, 60 ratings. */
    for (int i = 0; i < 60; i++)
        assert_int_equal(live_apply_rating(l, s, 2, 100 + i, 3.0f, i), UL_OK);
    const shard_evict *evs = shard_evicted(s, u);
    assert_non_null(evs);
    assert_int_equal(evs->count, 10); /* 60 ratings, 50 kept (SGD steps alone are no history) */
    assert_true(shard_evict_may_contain(evs, 100) && shard_evict_may_contain(evs, 109));
    assert_int_equal(shard_hist(s, u)->n, 50);
    assert_null(shard_evicted(s, shard_user(s, 4)));
    (void)err;
    live_destroy(l);
    bus_close(b);
}

static void test_settings_mismatch(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    live *l = open_live(fx->st);
    live_destroy(l);
    live_opts o;
    live_opts_init(&o);
    o.k = K;
    assert_null(live_new(&o, fx->st, PARTS + 1, err, sizeof(err)));
    assert_non_null(strstr(err, "2 partitions"));
    o.rating_min = 0.5f;
    assert_null(live_new(&o, fx->st, PARTS, err, sizeof(err)));
    if (strstr(err, "rating scale 1..5") == NULL || strstr(err, "are 0.5..5") == NULL)
        fail_msg("%s", err);
    o.rating_min = 1.0f;
    o.k = K + 1; /* not configured: the stored k is used */
    l = live_new(&o, fx->st, PARTS, err, sizeof(err));
    assert_non_null(l);
    assert_int_equal(live_k(l), K);
    live_destroy(l);
    o.k_explicit = 1;
    assert_null(live_new(&o, fx->st, PARTS, err, sizeof(err)));
    if (strstr(err, "k=8") == NULL || strstr(err, "model.k is 9") == NULL)
        fail_msg("%s", err);
    /* A state of format 1 (no format field) is refused, and left as it is. */
    if (fx->rl == NULL)
        return; /* the raw edit below needs the plain server */
    redisContext *c = redisConnect("127.0.0.1", redis_local_port(fx->rl));
    redisReply *r = redisCommand(c, "AUTH %s", redis_local_password(fx->rl));
    freeReplyObject(r);
    r = redisCommand(c, "HDEL ul:model format");
    freeReplyObject(r);
    o.k_explicit = 0;
    o.k = K;
    assert_null(live_new(&o, fx->st, PARTS, err, sizeof(err)));
    assert_non_null(strstr(err, "format 1"));
    r = redisCommand(c, "HEXISTS ul:model format");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_exactly_once),
        cmocka_unit_test(test_two_lives_exchange),
        cmocka_unit_test(test_dedup_and_own_records),
        cmocka_unit_test(test_catch_up),
        cmocka_unit_test(test_fence_zombie),
        cmocka_unit_test(test_row_flush_exact),
        cmocka_unit_test(test_forget_cycle),
        cmocka_unit_test(test_publish_marks),
        cmocka_unit_test(test_contract),
        cmocka_unit_test(test_settings_mismatch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
