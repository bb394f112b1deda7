/* test_rcluster.c: the Redis Cluster client without a cluster: CRC16 and
 * key slots (the Redis Cluster specification's vectors and hash-tag rules),
 * CLUSTER SLOTS parsing (3.x and 7.0 formats, unknown endpoints, malformed
 * replies), MOVED/ASK parsing, seed lists; then the same API against a
 * plain redis-server (redis_local: pipelines, transactions with and without
 * a guard, HSCAN, SCAN + DEL, SELECT, AUTH, clear errors for a dead
 * endpoint) and against a scripted fake server that drops the connection
 * after EXEC (the "unknown outcome"). The real cluster is exercised by
 * tests/integration/test_redis_cluster.sh. Server tests skip when redis-server
 * is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "rcluster.h"
#include "redis_local.h"
#include "ul_err.h"

/* ---- CRC16 and slots ---------------------------------------------------- */

static int slot_of(const char *key) {
    return rcluster_key_slot(key, strlen(key));
}

static void test_crc16_vectors(void **state) {
    (void)state;
    /* The specification's reference: CRC16-CCITT (XMODEM) of "123456789". */
    assert_int_equal(rcluster_crc16("123456789", 9), 0x31C3);
    assert_int_equal(rcluster_crc16("", 0), 0);
    /* Slots CLUSTER KEYSLOT gives on Redis 7.0. */
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of("hello"), 866);
    assert_int_equal(slot_of("user1000"), 3443);
    /* A binary key: every byte counts. */
    assert_int_equal(rcluster_key_slot("a\0b", 3), rcluster_crc16("a\0b", 3) & 16383);
    assert_int_not_equal(rcluster_key_slot("a\0b", 3), slot_of("a"));
}

static void test_hash_tags(void **state) {
    (void)state;
    /* Examples of the specification ("Hash tags"). */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("{user1000}.followers"), slot_of("user1000"));
    assert_int_equal(slot_of("foo{}{bar}"), rcluster_crc16("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("{foo"), rcluster_crc16("{foo", 4) & 16383); /* no closing brace */
    assert_int_equal(slot_of("x}y{z}"), slot_of("z")); /* '}' before the first '{' is data */
    /* Our layout: every key of a partition in one slot. */
    assert_int_equal(slot_of("ul:{p3}:meta"), slot_of("ul:{p3}:users"));
    assert_int_equal(slot_of("ul:{p3}:meta"), slot_of("p3"));
    assert_int_not_equal(slot_of("ul:{p3}:meta"), slot_of("ul:{p4}:meta"));
}

/* ---- CLUSTER SLOTS ------------------------------------------------------ */

static redisReply *resp(const char *text) {
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    void *r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

typedef struct seen {
    int n;
    int start[16], end[16], replica[16], port[16];
    char host[16][64], id[16][48];
    int stop_after; /* return 99 after this many calls (0 = never) */
} seen;

static int collect(void *ctx, int start, int end, int replica, const char *host, int port,
                   const char *id) {
    seen *s = ctx;
    if (s->n >= 16)
        return -1;
    s->start[s->n] = start;
    s->end[s->n] = end;
    s->replica[s->n] = replica;
    s->port[s->n] = port;
    snprintf(s->host[s->n], sizeof(s->host[0]), "%s", host);
    snprintf(s->id[s->n], sizeof(s->id[0]), "%s", id);
    s->n++;
    return s->stop_after && s->n == s->stop_after ? 99 : 0;
}

#define ID_A "07c37dfeb235213a872192d90877d0cd55635b91"
#define ID_B "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"

static void test_slots_parse_70(void **state) {
    (void)state;
    /* Redis 7.0: [endpoint, port, id, metadata]; metadata empty or a flat
     * (RESP2) map; the second range's primary has an unknown endpoint. */
    redisReply *r = resp("*2\r\n"
                         "*4\r\n:0\r\n:8191\r\n"
                         "*4\r\n$9\r\n127.0.0.1\r\n:30001\r\n$40\r\n" ID_A "\r\n*0\r\n"
                         "*4\r\n$9\r\n127.0.0.1\r\n:30004\r\n$40\r\n" ID_B "\r\n"
                         "*2\r\n$8\r\nhostname\r\n$5\r\nhost4\r\n"
                         "*3\r\n:8192\r\n:16383\r\n"
                         "*4\r\n$-1\r\n:30002\r\n$40\r\n" ID_B "\r\n*0\r\n");
    seen s = {0};
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(rcluster_slots_parse(r, "10.0.0.9", collect, &s, err, sizeof(err)), UL_OK);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.start[0], 0);
    assert_int_equal(s.end[0], 8191);
    assert_int_equal(s.replica[0], 0);
    assert_string_equal(s.host[0], "127.0.0.1");
    assert_int_equal(s.port[0], 30001);
    assert_string_equal(s.id[0], ID_A);
    assert_int_equal(s.replica[1], 1);
    assert_int_equal(s.port[1], 30004);
    assert_int_equal(s.start[2], 8192);
    assert_int_equal(s.end[2], 16383);
    assert_string_equal(s.host[2], "10.0.0.9"); /* NULL endpoint: the node that answered */
    freeReplyObject(r);
}

static void test_slots_parse_old_and_odd(void **state) {
    (void)state;
    /* Redis 3.0 ([ip, port] only), an empty ip and "?" (unknown hostname). */
    redisReply *r = resp("*2\r\n"
                         "*3\r\n:0\r\n:99\r\n*2\r\n$0\r\n\r\n:7000\r\n"
                         "*4\r\n:100\r\n:100\r\n*2\r\n$1\r\n?\r\n:7001\r\n"
                         "*2\r\n$4\r\nhost\r\n:7002\r\n");
    seen s = {0};
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(rcluster_slots_parse(r, "seed", collect, &s, err, sizeof(err)), UL_OK);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.host[0], "seed");
    assert_string_equal(s.id[0], "");
    assert_string_equal(s.host[1], "seed");
    assert_string_equal(s.host[2], "host");
    assert_int_equal(s.replica[2], 1);
    /* The callback's non-zero return stops the walk and is returned. */
    seen s2 = {0};
    s2.stop_after = 1;
    assert_int_equal(rcluster_slots_parse(r, "seed", collect, &s2, err, sizeof(err)), 99);
    assert_int_equal(s2.n, 1);
    freeReplyObject(r);
    /* An empty map is valid (a cluster being created): no calls. */
    r = resp("*0\r\n");
    seen s3 = {0};
    assert_int_equal(rcluster_slots_parse(r, "seed", collect, &s3, err, sizeof(err)), UL_OK);
    assert_int_equal(s3.n, 0);
    freeReplyObject(r);
}

static void expect_parse_error(const char *text, const char *needle) {
    redisReply *r = resp(text);
    seen s = {0};
    char err[UL_ERRSTR_SIZE] = "";
    assert_int_equal(rcluster_slots_parse(r, "h", collect, &s, err, sizeof(err)), UL_ERR_PARSE);
    if (strstr(err, needle) == NULL)
        fail_msg("'%s' lacks '%s'", err, needle);
    freeReplyObject(r);
}

static void test_slots_parse_malformed(void **state) {
    (void)state;
    expect_parse_error("-ERR nope\r\n", "expected an array");
    expect_parse_error("*1\r\n*2\r\n:0\r\n:5\r\n", "entry 0 is not [start, end, primary");
    expect_parse_error("*1\r\n*3\r\n:0\r\n$1\r\n5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
                       "entry 0 is not [start");
    expect_parse_error("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
                       "entry 0 has slots 0-16384");
    expect_parse_error("*1\r\n*3\r\n:9\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n", "has slots 9-5");
    expect_parse_error("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n",
                       "entry 0 node 0 is not [endpoint, port");
    expect_parse_error("*1\r\n*4\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n",
                       "entry 0 node 1");
    expect_parse_error("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n:1\r\n:1\r\n", "entry 0 node 0");
}

/* ---- redirections and seeds --------------------------------------------- */

static void expect_redirect(const char *err, int ask, int slot, const char *host, int port) {
    int a = -1, s = -1, p = -1;
    char h[64];
    assert_int_equal(rcluster_redirect_parse(err, strlen(err), &a, &s, h, sizeof(h), &p), 0);
    assert_int_equal(a, ask);
    assert_int_equal(s, slot);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void test_redirect_parse(void **state) {
    (void)state;
    expect_redirect("MOVED 3999 127.0.0.1:6381", 0, 3999, "127.0.0.1", 6381);
    expect_redirect("ASK 3999 127.0.0.1:6381", 1, 3999, "127.0.0.1", 6381);
    expect_redirect("MOVED 0 :30002", 0, 0, "", 30002); /* unknown endpoint */
    expect_redirect("MOVED 16383 ::1:7000", 0, 16383, "::1", 7000);
    expect_redirect("ASK 12 redis-3.example:6379", 1, 12, "redis-3.example", 6379);
    const char *bad[] = {"MOVED",           "MOVED x 1:2",
                         "MOVED 16384 h:1", "MOVED 1 h",
                         "MOVED 1 h:",      "MOVED 1 h:99999",
                         "MOVED 1 h:0",     "ERR MOVED 1 h:2",
                         "ASK1 h:2",        "CLUSTERDOWN The cluster is down",
                         "MOVED 1h:2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int a, s, p;
        char h[64];
        if (rcluster_redirect_parse(bad[i], strlen(bad[i]), &a, &s, h, sizeof(h), &p) != -1)
            fail_msg("'%s' parsed as a redirection", bad[i]);
    }
    char tiny[4];
    int a, s, p;
    assert_int_equal(
        rcluster_redirect_parse("MOVED 1 longhost:2", 18, &a, &s, tiny, sizeof(tiny), &p), -1);
}

static void test_seeds(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE];
    int n = 0;
    assert_int_equal(rcluster_seeds_check("a:1,b:2", &n, err, sizeof(err)), UL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rcluster_seeds_check(" a:1 , [::1]:7000 ", &n, err, sizeof(err)), UL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(rcluster_seeds_check("a:1,nope", &n, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "redis seed 'nope' is not host:port"));
    assert_int_equal(rcluster_seeds_check("", &n, err, sizeof(err)), UL_ERR_ARG);
    assert_int_equal(rcluster_seeds_check("a:1,", &n, err, sizeof(err)), UL_ERR_ARG);
    assert_int_equal(rcluster_seeds_check("a:70000", &n, err, sizeof(err)), UL_ERR_ARG);
    char host[16];
    int port;
    assert_int_equal(rcluster_endpoint_parse("[::1]:7000", 10, host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    assert_int_equal(rcluster_endpoint_parse(":7000", 5, host, sizeof(host), &port), -1);
    assert_int_equal(rcluster_endpoint_parse("h:7x", 4, host, sizeof(host), &port), -1);
}

/* ---- a plain Redis through the same API --------------------------------- */

typedef struct fixture {
    redis_local *rl;
    rcluster *rc;
    redisContext *raw; /* a direct connection, to check what Redis holds */
    char seeds[64];
} fixture;

/* A throwaway redis-server without a password: redis_local gives each one a
 * random password, which these tests set and clear themselves. */
static redis_local *start_plain(char *err, size_t size) {
    redis_local *rl = redis_local_start(NULL, 10000, err, size);
    if (rl == NULL)
        return NULL;
    redisContext *c = redisConnect("127.0.0.1", redis_local_port(rl));
    redisReply *r = c && !c->err ? redisCommand(c, "AUTH %s", redis_local_password(rl)) : NULL;
    if (r)
        freeReplyObject(r);
    r = c && !c->err ? redisCommand(c, "CONFIG SET requirepass %s", "") : NULL;
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    if (!ok) {
        snprintf(err, size, "cannot clear the throwaway server's password");
        redis_local_stop(rl);
        return NULL;
    }
    return rl;
}

static int setup(void **state) {
    static fixture fx;
    char err[UL_ERRSTR_SIZE];
    memset(&fx, 0, sizeof(fx));
    *state = &fx;
    if (!redis_local_available(NULL))
        return 0;
    if ((fx.rl = start_plain(err, sizeof(err))) == NULL) {
        print_error("redis_local_start: %s\n", err);
        return -1;
    }
    snprintf(fx.seeds, sizeof(fx.seeds), "127.0.0.1:%d", redis_local_port(fx.rl));
    /* The private server requires a random password; these tests set and
     * clear requirepass themselves, so start from none. */
    fx.raw = redisConnect("127.0.0.1", redis_local_port(fx.rl));
    if (fx.raw == NULL || fx.raw->err)
        return -1;
    redisReply *r = redisCommand(fx.raw, "AUTH %s", redis_local_password(fx.rl));
    freeReplyObject(r);
    r = redisCommand(fx.raw, "CONFIG SET requirepass %s", "");
    freeReplyObject(r);
    rcluster_opts o;
    rcluster_opts_init(&o);
    o.seeds = fx.seeds;
    if ((fx.rc = rcluster_connect(&o, err, sizeof(err))) == NULL) {
        print_error("rcluster_connect: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    rcluster_destroy(fx->rc);
    if (fx->raw)
        redisFree(fx->raw);
    redis_local_stop(fx->rl);
    return 0;
}

static fixture *need_redis(void **state) {
    fixture *fx = *state;
    if (fx->rc == NULL)
        skip();
    redisReply *r = redisCommand(fx->raw, "FLUSHALL");
    assert_non_null(r);
    freeReplyObject(r);
    return fx;
}

/* The raw value of a key/field ("" when absent), for checks. */
static const char *raw_hget(fixture *fx, const char *key, const char *field) {
    static char buf[128];
    redisReply *r = redisCommand(fx->raw, "HGET %s %s", key, field);
    assert_non_null(r);
    snprintf(buf, sizeof(buf), "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return buf;
}

static void test_plain_connect(void **state) {
    fixture *fx = need_redis(state);
    assert_int_equal(rcluster_is_cluster(fx->rc), 0);
    assert_int_equal(rcluster_primary_count(fx->rc), 1);
    assert_string_equal(rcluster_primary_where(fx->rc, 0), fx->seeds);
    assert_string_equal(rcluster_slot_where(fx->rc, 0), fx->seeds);
    assert_string_equal(rcluster_slot_where(fx->rc, 16383), fx->seeds);
    assert_string_equal(rcluster_slot_where(fx->rc, 16384), "");
    char err[UL_ERRSTR_SIZE];
    assert_int_equal(rcluster_ping_all(fx->rc, err, sizeof(err)), UL_OK);
    assert_int_equal(rcluster_refresh(fx->rc, err, sizeof(err)), UL_OK);
    /* Cluster mode refuses a plain Redis, naming it. */
    rcluster_opts o;
    rcluster_opts_init(&o);
    o.seeds = fx->seeds;
    o.mode = RCLUSTER_CLUSTER;
    assert_null(rcluster_connect(&o, err, sizeof(err)));
    assert_non_null(strstr(err, fx->seeds));
    assert_non_null(strstr(err, "cluster support disabled"));
    /* Auto mode with several seeds that are plain Redis servers. */
    char two[160];
    snprintf(two, sizeof(two), "%s,%s", fx->seeds, fx->seeds);
    o.seeds = two;
    o.mode = RCLUSTER_AUTO;
    assert_null(rcluster_connect(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "give it as the only endpoint"));
}

static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound, never listening: refused */
    return ntohs(a.sin_port);
}

static void test_dead_seeds(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE], seeds[160];
    int dead = closed_port();
    rcluster_opts o;
    rcluster_opts_init(&o);
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", dead);
    o.seeds = seeds;
    assert_null(rcluster_connect(&o, err, sizeof(err)));
    char want[96];
    snprintf(want, sizeof(want), "redis 127.0.0.1:%d: cannot connect: Connection refused", dead);
    if (strstr(err, want) == NULL || strstr(err, "no Redis seed node answered") == NULL)
        fail_msg("%s", err);
    o.seeds = "127.0.0.1:nope";
    assert_null(rcluster_connect(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "'127.0.0.1:nope' is not host:port"));
    /* A dead seed before a live one: the live one is used. */
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,%s", dead, fx->seeds);
    o.seeds = seeds;
    o.mode = RCLUSTER_STANDALONE;
    assert_null(rcluster_connect(&o, err, sizeof(err))); /* plain Redis: one endpoint only */
    assert_non_null(strstr(err, "a plain Redis takes one endpoint, got 2"));
}

static void test_pipeline(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    rcluster_pipeline *p = rcluster_pipeline_new(fx->rc);
    assert_non_null(p);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(rcluster_pipeline_append(p, "SET k:%d v%d", i, i), UL_OK);
    const char *argv[4] = {"HSET", "h:{t}", "f", "bin\0ary"};
    size_t lens[4] = {4, 5, 1, 7};
    assert_int_equal(rcluster_pipeline_append_argv(p, 4, argv, lens), UL_OK);
    assert_int_equal(rcluster_pipeline_append_argv(p, 1, argv, lens), UL_ERR_ARG); /* no key */
    assert_int_equal(rcluster_pipeline_count(p), 3001);
    assert_int_equal(rcluster_pipeline_exec(p, err, sizeof(err)), UL_OK);
    assert_int_equal(rcluster_pipeline_reply(p, 0)->type, REDIS_REPLY_STATUS);
    assert_int_equal(rcluster_pipeline_reply(p, 3000)->integer, 1);
    assert_null(rcluster_pipeline_reply(p, 3001));
    rcluster_pipeline_reset(p);
    for (int i = 0; i < 3000; i += 7)
        assert_int_equal(rcluster_pipeline_append(p, "GET k:%d", i), UL_OK);
    assert_int_equal(rcluster_pipeline_exec(p, err, sizeof(err)), UL_OK);
    for (int i = 0, j = 0; i < 3000; i += 7, j++) {
        char want[16];
        snprintf(want, sizeof(want), "v%d", i);
        assert_string_equal(rcluster_pipeline_reply(p, (size_t)j)->str, want);
    }
    /* An error reply: every command still runs, the first error is named. */
    rcluster_pipeline_reset(p);
    assert_int_equal(rcluster_pipeline_append(p, "SET a 1"), UL_OK);
    assert_int_equal(rcluster_pipeline_append(p, "HSET k:5 f secret-value"), UL_OK);
    assert_int_equal(rcluster_pipeline_append(p, "SET b 2"), UL_OK);
    assert_int_equal(rcluster_pipeline_exec(p, err, sizeof(err)), RCLUSTER_ERR_REPLY);
    char want[128];
    snprintf(want, sizeof(want), "redis %s: HSET k:5: WRONGTYPE", fx->seeds);
    if (strstr(err, want) == NULL || strstr(err, "secret-value"))
        fail_msg("%s", err);
    assert_int_equal(rcluster_pipeline_reply(p, 2)->type, REDIS_REPLY_STATUS);
    rcluster_pipeline_destroy(p);
    /* Single commands, both forms. */
    redisReply *r = NULL;
    assert_int_equal(rcluster_command(fx->rc, &r, err, sizeof(err), "GET %s", "b"), UL_OK);
    assert_string_equal(r->str, "2");
    freeReplyObject(r);
    const char *get[2] = {"HGET", "k:5"};
    assert_int_equal(rcluster_command_argv(fx->rc, 2, get, NULL, &r, err, sizeof(err)),
                     RCLUSTER_ERR_REPLY);
    assert_null(r);
    assert_int_equal(rcluster_command(fx->rc, &r, err, sizeof(err), "PING"), UL_ERR_ARG);
}

static void test_txn(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    rcluster_txn *t = rcluster_txn_new(fx->rc, "ul:{p1}:meta", 12);
    assert_non_null(t);
    assert_string_equal(rcluster_txn_where(t), "");
    assert_int_equal(rcluster_txn_append(t, "HSET ul:{p1}:users 7 row"), UL_OK);
    assert_int_equal(rcluster_txn_append(t, "HINCRBY ul:{p1}:meta seq 1"), UL_OK);
    /* Another slot would not be single-slot. */
    assert_int_equal(rcluster_txn_append(t, "HSET ul:{p2}:users 7 row"), UL_ERR_ARG);
    assert_int_equal(rcluster_txn_guard(t, "ul:{p2}:meta", "seq", NULL, 0), UL_ERR_ARG);
    /* First transaction: the guard expects no seq yet. */
    assert_int_equal(rcluster_txn_guard(t, "ul:{p1}:meta", "seq", NULL, 0), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), UL_OK);
    assert_string_equal(rcluster_txn_where(t), fx->seeds);
    assert_int_equal(rcluster_txn_reply(t, 1)->integer, 1);
    assert_null(rcluster_txn_reply(t, 2));
    /* Same commands, guard "1": applied, seq 2. */
    assert_int_equal(rcluster_txn_guard(t, "ul:{p1}:meta", "seq", "1", 1), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), UL_OK);
    assert_string_equal(raw_hget(fx, "ul:{p1}:meta", "seq"), "2");
    /* A stale guard: not applied, the values named. */
    assert_int_equal(rcluster_txn_guard(t, "ul:{p1}:meta", "seq", "1", 1), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), RCLUSTER_ERR_GUARD);
    if (strstr(err, "ul:{p1}:meta seq holds '2', expected '1'") == NULL)
        fail_msg("%s", err);
    assert_string_equal(raw_hget(fx, "ul:{p1}:meta", "seq"), "2");
    assert_null(rcluster_txn_reply(t, 0));
    assert_int_equal(rcluster_txn_guard(t, "ul:{p1}:meta", "seq", NULL, 0), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), RCLUSTER_ERR_GUARD);
    assert_non_null(strstr(err, "holds '2', expected nothing"));
    /* Rejected at queue time (wrong arity): EXECABORT, nothing applied. */
    rcluster_txn_reset(t);
    assert_int_equal(rcluster_txn_append(t, "HINCRBY ul:{p1}:meta seq 1"), UL_OK);
    assert_int_equal(rcluster_txn_append(t, "HSET ul:{p1}:users 8"), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), RCLUSTER_ERR_REPLY);
    if (strstr(err, "not applied: command 2 (HSET ul:{p1}:users): ERR wrong number") == NULL)
        fail_msg("%s", err);
    assert_string_equal(raw_hget(fx, "ul:{p1}:meta", "seq"), "2");
    /* A runtime error inside: applied, the other command kept. */
    rcluster_txn_reset(t);
    assert_int_equal(rcluster_txn_append(t, "HINCRBY ul:{p1}:meta seq 1"), UL_OK);
    assert_int_equal(rcluster_txn_append(t, "HINCRBY ul:{p1}:users 7 1"), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), RCLUSTER_ERR_EXEC);
    if (strstr(err, "applied, but command 2 (HINCRBY ul:{p1}:users) failed") == NULL)
        fail_msg("%s", err);
    assert_string_equal(raw_hget(fx, "ul:{p1}:meta", "seq"), "3");
    assert_int_equal(rcluster_txn_reply(t, 0)->integer, 3);
    rcluster_txn_destroy(t);
}

static int count_field(void *ctx, const char *field, size_t flen, const char *val, size_t vlen,
                       char *errstr, size_t errstr_size) {
    (void)errstr, (void)errstr_size;
    int *n = ctx;
    char f[32], v[32];
    snprintf(f, sizeof(f), "%.*s", (int)flen, field);
    snprintf(v, sizeof(v), "%.*s", (int)vlen, val);
    if (strcmp(f + 1, v + 1) != 0) /* fN -> vN */
        return UL_ERR_CORRUPT;
    (*n)++;
    return UL_OK;
}

static int count_key(void *ctx, const char *key, size_t len, char *errstr, size_t errstr_size) {
    (void)key, (void)len, (void)errstr, (void)errstr_size;
    (*(int *)ctx)++;
    return UL_OK;
}

static void test_scans(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    rcluster_pipeline *p = rcluster_pipeline_new(fx->rc);
    for (int i = 0; i < 2500; i++)
        assert_int_equal(rcluster_pipeline_append(p, "HSET ul:{p0}:users f%d v%d", i, i), UL_OK);
    for (int i = 0; i < 1200; i++)
        assert_int_equal(rcluster_pipeline_append(p, "SET ul:k%d x", i), UL_OK);
    assert_int_equal(rcluster_pipeline_append(p, "SET other x"), UL_OK);
    assert_int_equal(rcluster_pipeline_exec(p, err, sizeof(err)), UL_OK);
    rcluster_pipeline_destroy(p);
    int n = 0;
    assert_int_equal(
        rcluster_hscan(fx->rc, "ul:{p0}:users", count_field, NULL, &n, err, sizeof(err)), UL_OK);
    assert_int_equal(n, 2500);
    n = 0;
    assert_int_equal(rcluster_scan(fx->rc, "ul:*", count_key, &n, err, sizeof(err)), UL_OK);
    assert_int_equal(n, 1201);
    size_t deleted = 0;
    assert_int_equal(rcluster_del_matching(fx->rc, "ul:*", &deleted, err, sizeof(err)), UL_OK);
    assert_int_equal(deleted, 1201);
    redisReply *r = redisCommand(fx->raw, "DBSIZE");
    assert_int_equal(r->integer, 1); /* "other" kept */
    freeReplyObject(r);
    rcluster_stats st;
    rcluster_stats_get(fx->rc, &st);
    assert_int_equal(st.moved + st.ask + st.hscan_restarts, 0);
}

/* EVAL and FCALL route by their first key (argv[3]), so a Lua script can be
 * part of a partition's transaction; WAIT after EXEC asks no replica when
 * the node has none. */
static void test_eval_and_wait(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    static const char lua[] = "return redis.call('HSET', KEYS[1], 'f', ARGV[1])";
    rcluster_txn *t = rcluster_txn_new(fx->rc, "ul:{p1}:meta", 12);
    assert_int_equal(rcluster_txn_append(t, "EVAL %s 1 ul:{p1}:hist %s", lua, "v1"), UL_OK);
    assert_int_equal(rcluster_txn_append(t, "EVAL %s 1 ul:{p2}:hist %s", lua, "v1"), UL_ERR_ARG);
    assert_int_equal(rcluster_txn_append(t, "eval %s 1 ul:{p2}:hist %s", lua, "v1"), UL_ERR_ARG);
    assert_int_equal(rcluster_txn_append(t, "EVAL %s 0", lua), UL_ERR_ARG); /* no key */
    rcluster_txn_wait(t, 500);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), UL_OK);
    assert_int_equal(rcluster_txn_acked(t), -1); /* a plain Redis without replicas */
    assert_string_equal(raw_hget(fx, "ul:{p1}:hist", "f"), "v1");
    rcluster_txn_destroy(t);
    rcluster_pipeline *p = rcluster_pipeline_new(fx->rc);
    assert_int_equal(rcluster_pipeline_append(p, "EVAL %s 1 ul:{p3}:hist %s", lua, "v3"), UL_OK);
    assert_int_equal(rcluster_pipeline_exec(p, err, sizeof(err)), UL_OK);
    assert_string_equal(raw_hget(fx, "ul:{p3}:hist", "f"), "v3");
    rcluster_pipeline_destroy(p);
}

static void test_select_and_auth(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE];
    rcluster_opts o;
    rcluster_opts_init(&o);
    o.seeds = fx->seeds;
    o.db = 3;
    rcluster *rc = rcluster_connect(&o, err, sizeof(err));
    assert_non_null(rc);
    redisReply *r = NULL;
    assert_int_equal(rcluster_command(rc, &r, err, sizeof(err), "SET indb3 yes"), UL_OK);
    freeReplyObject(r);
    rcluster_destroy(rc);
    r = redisCommand(fx->raw, "EXISTS indb3"); /* the raw connection is on db 0 */
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    /* A password, given at runtime: wrong is a clear error without the secret. */
    r = redisCommand(fx->raw, "CONFIG SET requirepass s3cret-pw");
    freeReplyObject(r);
    o.db = 0;
    o.password = "wrong-pw";
    assert_null(rcluster_connect(&o, err, sizeof(err)));
    if (strstr(err, "AUTH (redis.password) failed: WRONGPASS") == NULL || strstr(err, "wrong-pw"))
        fail_msg("%s", err);
    o.user = "nobody";
    assert_null(rcluster_connect(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "AUTH (redis.user, redis.password) failed: WRONGPASS"));
    o.user = "default";
    o.password = "s3cret-pw";
    rc = rcluster_connect(&o, err, sizeof(err));
    assert_non_null(rc);
    assert_int_equal(rcluster_ping_all(rc, err, sizeof(err)), UL_OK);
    rcluster_destroy(rc);
    o.user = NULL;
    o.password = NULL;
    assert_null(rcluster_connect(&o, err, sizeof(err))); /* NOAUTH, named */
    assert_non_null(strstr(err, "NOAUTH"));
    r = redisCommand(fx->raw, "AUTH s3cret-pw");
    freeReplyObject(r);
    r = redisCommand(fx->raw, "CONFIG SET requirepass %s", "");
    freeReplyObject(r);
    /* A password given to a server without one is accepted (no user named). */
    o.password = "unused";
    rc = rcluster_connect(&o, err, sizeof(err));
    assert_non_null(rc);
    rcluster_destroy(rc);
}

/* A plain Redis that goes away mid-session: every call gives up after the
 * retry budget, naming the node; a transaction says "not applied". */
static void test_server_gone(void **state) {
    fixture *fx = need_redis(state);
    char err[UL_ERRSTR_SIZE], seeds[64];
    redis_local *rl = start_plain(err, sizeof(err));
    assert_non_null(rl);
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", redis_local_port(rl));
    rcluster_opts o;
    rcluster_opts_init(&o);
    o.seeds = seeds;
    o.password = redis_local_password(rl);
    o.retry_ms = 300;
    rcluster *rc = rcluster_connect(&o, err, sizeof(err));
    assert_non_null(rc);
    redisReply *r = NULL;
    assert_int_equal(rcluster_command(rc, &r, err, sizeof(err), "SET k v"), UL_OK);
    freeReplyObject(r);
    redis_local_stop(rl);
    rcluster_pipeline *p = rcluster_pipeline_new(rc);
    assert_int_equal(rcluster_pipeline_append(p, "SET k v2"), UL_OK);
    assert_int_equal(rcluster_pipeline_exec(p, err, sizeof(err)), UL_ERR_IO);
    if (strstr(err, seeds) == NULL || strstr(err, "gave up after 300 ms") == NULL)
        fail_msg("%s", err);
    assert_null(rcluster_pipeline_reply(p, 0));
    rcluster_pipeline_destroy(p);
    rcluster_txn *t = rcluster_txn_new(rc, "k", 1);
    assert_int_equal(rcluster_txn_append(t, "SET k v3"), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), UL_ERR_IO);
    assert_non_null(strstr(err, "transaction not applied"));
    rcluster_txn_destroy(t);
    assert_int_equal(rcluster_ping_all(rc, err, sizeof(err)), UL_ERR_IO);
    assert_non_null(strstr(err, seeds));
    rcluster_stats st;
    rcluster_stats_get(rc, &st);
    assert_true(st.node_errors >= 3);
    rcluster_destroy(rc);
    (void)fx;
}

/* ---- a fake server that drops the connection after EXEC ----------------- */

typedef struct fake {
    int lfd, port;
    pthread_t th;
} fake;

/* Accept one connection, read until "EXEC\r\n" has arrived, close without a reply. */
static void *fake_run(void *arg) {
    fake *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    char buf[4096], got_all[8192];
    size_t n = 0;
    while (fd >= 0) {
        ssize_t got = read(fd, buf, sizeof(buf));
        if (got <= 0)
            break;
        for (ssize_t i = 0; i < got && n + 1 < sizeof(got_all); i++)
            got_all[n++] = buf[i];
        got_all[n] = 0;
        if (strstr(got_all, "EXEC\r\n"))
            break;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void fake_start(fake *f) {
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void test_unknown_outcome(void **state) {
    (void)state;
    fake f;
    fake_start(&f);
    char seeds[64], err[UL_ERRSTR_SIZE];
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", f.port);
    rcluster_opts o;
    rcluster_opts_init(&o);
    o.seeds = seeds;
    o.mode = RCLUSTER_STANDALONE; /* no command at connect: the fake only sees the transaction */
    o.retry_ms = 200;
    rcluster *rc = rcluster_connect(&o, err, sizeof(err));
    assert_non_null(rc);
    rcluster_txn *t = rcluster_txn_new(rc, "ul:{p0}:meta", 12);
    assert_int_equal(rcluster_txn_append(t, "HSET ul:{p0}:meta seq 1"), UL_OK);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), RCLUSTER_ERR_UNKNOWN);
    if (strstr(err, seeds) == NULL || strstr(err, "may or may not have been applied") == NULL)
        fail_msg("%s", err);
    pthread_join(f.th, NULL);
    /* The server is gone for good: nothing can be sent, so the next
     * transaction is "not applied" after the retry budget. */
    close(f.lfd);
    assert_int_equal(rcluster_txn_exec(t, err, sizeof(err)), UL_ERR_IO);
    if (strstr(err, "cannot connect") == NULL || strstr(err, "gave up after 200 ms") == NULL)
        fail_msg("%s", err);
    rcluster_txn_destroy(t);
    rcluster_destroy(rc);
}

int main(void) {
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_crc16_vectors),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_slots_parse_70),
        cmocka_unit_test(test_slots_parse_old_and_odd),
        cmocka_unit_test(test_slots_parse_malformed),
        cmocka_unit_test(test_redirect_parse),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_unknown_outcome),
    };
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_plain_connect),   cmocka_unit_test(test_dead_seeds),
        cmocka_unit_test(test_pipeline),        cmocka_unit_test(test_txn),
        cmocka_unit_test(test_scans),           cmocka_unit_test(test_eval_and_wait),
        cmocka_unit_test(test_select_and_auth), cmocka_unit_test(test_server_gone),
    };
    int rc = cmocka_run_group_tests_name("rcluster_pure", pure, NULL, NULL);
    return rc | cmocka_run_group_tests_name("rcluster_plain", plain, setup, teardown);
}
