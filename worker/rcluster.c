/* rcluster.c: the Redis Cluster client (API and retry rules in rcluster.h,
 * behaviour in docs/cluster.md).
 *
 * DESIGN: blocking hiredis contexts, one per node, opened lazily and closed
 * on any I/O error (a stream we stopped reading mid-reply is unusable). The
 * slot map is a flat table slot -> node; nodes are never freed before
 * rcluster_destroy, so a node pointer (and its "host:port") stays valid in
 * the table, in a pending ASK and in the caller's hands across refreshes.
 * Commands are formatted once into a byte arena (RESP), which is what makes
 * re-sending after MOVED/ASK/a lost connection cheap; the slot comes from
 * argv[1] of the formatted bytes, so argv and printf-style appends share one
 * path, and bytes go to the socket straight from the arena (sendmsg). A
 * pipeline round groups the unanswered commands by target node, writes
 * every node's commands before reading any reply, classifies each
 * reply (done, MOVED, ASK, retry later) and loops until all are answered or
 * the retry budget runs out. A transaction is one round on one node and is
 * retried whole; it reports "unknown" only when its EXEC was completely
 * written and no EXEC reply came back.
 *
 * This file: the small helpers (logging, retry bookkeeping, RESP
 * formatting), connect and destroy, single commands and the whole-cluster
 * helpers (ping, scan, delete, hscan). rcluster_map.c: key slots, the
 * parsers, nodes and their connections, the slot map. rcluster_txn.c: reply
 * classification, pipelines and transactions. rcluster_int.h: what they
 * share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rcluster_int.h"
#include "ul_err.h"

#define MAX_FREE_REDIRECTS 16 /* redirection rounds in a row before backing off */
#define BACKOFF_FIRST_MS 20
#define BACKOFF_MAX_MS 500
#define HSCAN_MAX_RESTARTS 16
#define DEL_MAX_PASSES 10

/* ---- small helpers ------------------------------------------------------ */

int64_t rc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static char *dup_or_null(const char *s) {
    return s && *s ? strdup(s) : NULL;
}

void rc_log(rcluster *rc, const char *fmt, ...) {
    if (rc->log_fn == NULL)
        return;
    char msg[UL_ERRSTR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rc->log_fn(rc->log_ctx, msg);
}

/* Record a retryable failure (kept for the final message) and log it. */
void rc_note(rcluster *rc, retry *rt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->last, sizeof(rt->last), fmt, ap);
    va_end(ap);
    rc_log(rc, "%s (retrying)", rt->last);
}

/* A wait starts (1) or ends (0); wait_fn hears the outermost only. */
void rc_waiting(rcluster *rc, int on) {
    int edge = on ? rc->wait_depth++ == 0 : --rc->wait_depth == 0;
    if (edge && rc->wait_fn)
        rc->wait_fn(rc->wait_ctx, on);
}

void rc_retry_init(rcluster *rc, retry *rt) {
    rt->rc = rc;
    rt->waiting = 0;
    rt->deadline = rc_now_ms() + rc->retry_ms;
    rt->backoff_ms = BACKOFF_FIRST_MS;
    rt->free_redirects = MAX_FREE_REDIRECTS;
    rt->last[0] = '\0';
}

/* Before the next attempt. A round of redirections only goes again at once
 * (a few times); anything else sleeps (exponential backoff). -1 when the
 * budget is spent. */
int rc_retry_wait(retry *rt, int backoff) {
    if (!backoff && rt->free_redirects-- > 0)
        return 0;
    int64_t left = rt->deadline - rc_now_ms();
    if (left <= 0)
        return -1;
    if (!rt->waiting) { /* a wait on Redis from now until the call ends */
        rt->waiting = 1;
        rc_waiting(rt->rc, 1);
    }
    sleep_ms(left < rt->backoff_ms ? left : rt->backoff_ms);
    rt->backoff_ms = rt->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rt->backoff_ms * 2;
    return 0;
}

/* The call is over (answered or given up). */
void rc_retry_end(retry *rt) {
    if (rt->waiting)
        rc_waiting(rt->rc, 0);
    rt->waiting = 0;
}

/* Printable, bounded copy of a key or command name for messages. */
void rc_printable(char *out, size_t size, const char *s, size_t len) {
    size_t j = 0;
    for (size_t i = 0; i < len && j + 4 < size && i < NAME_MAX_CHARS; i++)
        out[j++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (len > NAME_MAX_CHARS && j + 4 < size)
        out[j++] = '.', out[j++] = '.', out[j++] = '.';
    out[j] = '\0';
}

static int buf_reserve(rc_buf *b, size_t n);

int rc_buf_put(rc_buf *b, const void *s, size_t n) {
    if (buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int buf_reserve(rc_buf *b, size_t n) {
    if (b->len + n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* "<prefix><v>\r\n" at p (room reserved by the caller); returns the end. */
static char *put_len(char *p, char prefix, size_t v) {
    char digits[24];
    int n = 0;
    do
        digits[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    *p++ = prefix;
    while (n > 0)
        *p++ = digits[--n];
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* RESP array of bulk strings, the request format: sized first, then one
 * pass of copies (this is the pipeline's hot path). */
int rc_resp_format(rc_buf *b, int argc, const char **argv, const size_t *argvlen) {
    size_t need = 24;
    for (int i = 0; i < argc; i++)
        need += 24 + 2 + (argvlen ? argvlen[i] : strlen(argv[i]));
    if (buf_reserve(b, need) != 0)
        return -1;
    char *p = put_len(b->p + b->len, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        p = put_len(p, '$', len);
        memcpy(p, argv[i], len);
        p += len;
        *p++ = '\r';
        *p++ = '\n';
    }
    b->len = (size_t)(p - b->p);
    return 0;
}

static int resp_formatv(rc_buf *b, const char *fmt, va_list ap) {
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0)
        return -1;
    int rc = rc_buf_put(b, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

/* Format a command at the end of b; *off receives where it starts. On
 * failure b is unchanged. Shared by pipelines, transactions and single
 * commands (argv and printf-style forms). */
int rc_buf_append_argv(rc_buf *b, int argc, const char **argv, const size_t *argvlen, size_t *off) {
    if (argc < 2)
        return UL_ERR_ARG; /* routing needs argv[1] */
    *off = b->len;
    if (rc_resp_format(b, argc, argv, argvlen) != 0) {
        b->len = *off;
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

int rc_buf_append_fmt(rc_buf *b, const char *fmt, va_list ap, size_t *off) {
    *off = b->len;
    if (resp_formatv(b, fmt, ap) != 0) {
        b->len = *off;
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

/* Argument `idx` of a formatted command; -1 when absent. */
static int resp_arg(const char *cmd, size_t len, int idx, const char **arg, size_t *alen) {
    const char *p = cmd, *end = cmd + len;
    if (p >= end || *p != '*')
        return -1;
    long argc = strtol(p + 1, NULL, 10);
    p = memchr(p, '\n', (size_t)(end - p));
    for (long i = 0; p && i < argc; i++) {
        p++;
        if (p >= end || *p != '$')
            return -1;
        size_t n = (size_t)strtoul(p + 1, NULL, 10);
        p = memchr(p, '\n', (size_t)(end - p));
        if (p == NULL || (size_t)(end - p - 1) < n)
            return -1;
        if (i == idx) {
            *arg = p + 1;
            *alen = n;
            return 0;
        }
        p = p + 1 + n + 1; /* past data and "\r", at "\n" */
        if (p >= end)
            return -1;
    }
    return -1;
}

/* The routing key of a formatted command: argv[1], except for the
 * script and function calls (EVAL script numkeys key ..., FCALL name
 * numkeys key ...), whose first key is argv[3]. -1 when there is none. */
int rc_resp_key(const char *cmd, size_t len, const char **key, size_t *klen) {
    static const char *const keyed3[] = {"EVAL",       "EVALSHA", "EVAL_RO",
                                         "EVALSHA_RO", "FCALL",   "FCALL_RO"};
    const char *a0;
    size_t l0;
    if (resp_arg(cmd, len, 0, &a0, &l0) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(keyed3) / sizeof(keyed3[0]); i++)
        if (l0 == strlen(keyed3[i]) && strncasecmp(a0, keyed3[i], l0) == 0)
            return resp_arg(cmd, len, 3, key, klen);
    return resp_arg(cmd, len, 1, key, klen);
}

/* "HSET ul:{p1}:users" for messages: the command and its key, never values. */
void rc_cmd_name(char *out, size_t size, const char *cmd, size_t len) {
    const char *a0 = "?", *a1 = "";
    size_t l0 = 1, l1 = 0;
    resp_arg(cmd, len, 0, &a0, &l0);
    resp_arg(cmd, len, 1, &a1, &l1);
    char n0[32], n1[NAME_MAX_CHARS + 8];
    rc_printable(n0, sizeof(n0), a0, l0);
    rc_printable(n1, sizeof(n1), a1, l1);
    snprintf(out, size, "%s%s%s", n0, l1 ? " " : "", n1);
}

/* ---- connect ------------------------------------------------------------ */

void rcluster_opts_init(rcluster_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->mode = RCLUSTER_AUTO;
    opts->timeout_ms = 5000;
    opts->retry_ms = 10000;
}

static int add_seed(void *vrc, const char *host, int port) {
    rc_node *nd = rc_node_get(vrc, host, port);
    if (nd)
        nd->seed = 1;
    return nd ? 0 : -1;
}

/* A plain Redis: one node serving every slot. */
static int use_standalone(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size) {
    rc->cluster = 0;
    if (nd->c) { /* opened before we knew: SELECT now */
        redisFree(nd->c);
        nd->c = NULL;
    }
    int rc_ = rc_node_ready(rc, nd, errstr, errstr_size);
    if (rc_ != UL_OK)
        return rc_;
    for (int s = 0; s < RCLUSTER_SLOTS; s++)
        rc->scratch_slots[s] = nd;
    nd->in_map = 1;
    /* Its replicas, for WAIT after a transaction: ROLE lists the connected
     * ones (a server too old for ROLE, or refusing it, counts none). */
    const char *argv[1] = {"ROLE"};
    redisReply *r = NULL;
    char msg[UL_ERRSTR_SIZE];
    if (rc_node_simple(rc, nd, "ROLE", &r, msg, sizeof(msg), 1, argv) == UL_OK) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "master") == 0 && r->element[2]->type == REDIS_REPLY_ARRAY)
            nd->replicas = (int)r->element[2]->elements;
        freeReplyObject(r);
    }
    return rc_map_install(rc, rc->scratch_slots);
}

static int connect_cluster(rcluster *rc, int n_seeds, char *errstr, size_t errstr_size) {
    errstr[0] = '\0';
    for (int i = 0; i < rc->n_nodes; i++) {
        rc_node *nd = rc->nodes[i];
        char msg[UL_ERRSTR_SIZE];
        int standalone;
        int rc_ = rc_map_load_from(rc, nd, &standalone, msg, sizeof(msg));
        if (rc_ == UL_OK)
            return UL_OK;
        if (standalone && rc->mode == RCLUSTER_AUTO && n_seeds == 1)
            return use_standalone(rc, nd, errstr, errstr_size);
        if (standalone) {
            snprintf(msg, sizeof(msg), "redis %s is a plain Redis (cluster support disabled)%s",
                     nd->addr,
                     rc->mode == RCLUSTER_AUTO ? ": give it as the only endpoint"
                                               : ", not a cluster node");
            ul_set_err(errstr, errstr_size, "%s", msg);
            return UL_ERR_ARG;
        }
        if (rc_ == UL_ERR_NOMEM)
            return rc_;
        rc_err_append(errstr, errstr_size, msg);
    }
    char all[UL_ERRSTR_SIZE] = "no Redis seed node answered: ";
    rc_err_append(all + strlen(all), sizeof(all) - strlen(all), errstr);
    ul_set_err(errstr, errstr_size, "%s", all);
    return UL_ERR_IO;
}

rcluster *rcluster_connect(const rcluster_opts *opts, char *errstr, size_t errstr_size) {
    char msg[UL_ERRSTR_SIZE];
    rcluster *rc = calloc(1, sizeof(*rc));
    if (rc == NULL || (rc->scratch_slots = calloc(RCLUSTER_SLOTS, sizeof(rc_node *))) == NULL)
        goto oom;
    rc->seeds = strdup(opts->seeds ? opts->seeds : "");
    rc->user = dup_or_null(opts->user);
    rc->password = dup_or_null(opts->password);
    if (rc->seeds == NULL || (opts->user && *opts->user && !rc->user) ||
        (opts->password && *opts->password && !rc->password))
        goto oom;
    rc->mode = opts->mode;
    rc->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
    rc->retry_ms = opts->retry_ms >= 0 ? opts->retry_ms : 0;
    rc->db = opts->db;
    rc->log_fn = opts->log_fn;
    rc->log_ctx = opts->log_ctx;
    rc->wait_fn = opts->wait_fn;
    rc->wait_ctx = opts->wait_ctx;
    rc->cluster = rc->mode != RCLUSTER_STANDALONE;
    int n = rc_each_seed(opts->seeds, add_seed, rc, msg, sizeof(msg));
    if (n < 0) {
        ul_set_err(errstr, errstr_size, "%s", msg);
        rcluster_destroy(rc);
        return NULL;
    }
    int rc_;
    if (rc->mode == RCLUSTER_STANDALONE && n != 1) {
        ul_set_err(msg, sizeof(msg), "a plain Redis takes one endpoint, got %d", n);
        rc_ = UL_ERR_ARG;
    } else if (rc->mode == RCLUSTER_STANDALONE) {
        rc_ = use_standalone(rc, rc->nodes[0], msg, sizeof(msg));
    } else {
        rc_ = connect_cluster(rc, n, msg, sizeof(msg));
    }
    if (rc_ == UL_OK && rc->cluster && rc->db > 0) {
        ul_set_err(msg, sizeof(msg), "redis.db=%d: a Redis Cluster has only database 0", rc->db);
        rc_ = UL_ERR_ARG;
    }
    if (rc_ == UL_OK && (rc->one = rcluster_pipeline_new(rc)) == NULL)
        goto oom;
    if (rc_ != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s", msg);
        rcluster_destroy(rc);
        return NULL;
    }
    return rc;
oom:
    ul_set_err(errstr, errstr_size, "out of memory");
    rcluster_destroy(rc);
    return NULL;
}

void rcluster_destroy(rcluster *rc) {
    if (rc == NULL)
        return;
    rcluster_pipeline_destroy(rc->one);
    for (int i = 0; i < rc->n_nodes; i++) {
        if (rc->nodes[i]->c)
            redisFree(rc->nodes[i]->c);
        free(rc->nodes[i]);
    }
    free(rc->nodes);
    free(rc->primaries);
    free(rc->scratch_slots);
    free(rc->seeds);
    free(rc->user);
    if (rc->password) {
        memset(rc->password, 0, strlen(rc->password));
        free(rc->password);
    }
    free(rc);
}

int rcluster_is_cluster(const rcluster *rc) {
    return rc->cluster;
}

const char *rcluster_slot_where(const rcluster *rc, int slot) {
    if (slot < 0 || slot >= RCLUSTER_SLOTS || rc->slots[slot] == NULL)
        return "";
    return rc->slots[slot]->addr;
}

int rcluster_primary_count(const rcluster *rc) {
    return rc->n_primaries;
}

const char *rcluster_primary_where(const rcluster *rc, int i) {
    return i >= 0 && i < rc->n_primaries ? rc->primaries[i]->addr : "";
}

void rcluster_stats_get(const rcluster *rc, rcluster_stats *out) {
    *out = rc->stats;
}

const char *rcluster_err_name(int code) {
    switch (code) {
    case UL_ERR_IO:
        return "Redis unavailable";
    case RCLUSTER_ERR_REPLY:
        return "Redis error reply";
    case RCLUSTER_ERR_UNKNOWN:
        return "transaction outcome unknown";
    case RCLUSTER_ERR_EXEC:
        return "transaction applied with errors";
    case RCLUSTER_ERR_GUARD:
        return "transaction guard mismatch";
    default:
        return ul_err_name(code);
    }
}

/* ---- single commands ---------------------------------------------------- */

/* Run p->one's single command; *reply is handed over (p->one emptied). */
static int one_run(rcluster *rc, redisReply **reply, rc_node **node, char *errstr,
                   size_t errstr_size) {
    rcluster_pipeline *p = rc->one;
    int rc_ = rcluster_pipeline_exec(p, errstr, errstr_size);
    if (rc_ == UL_OK) {
        *reply = p->cmds[0].reply;
        if (node)
            *node = p->cmds[0].node;
        p->cmds[0].reply = NULL;
    }
    rcluster_pipeline_reset(p);
    return rc_;
}

int rcluster_command_argv(rcluster *rc, int argc, const char **argv, const size_t *argvlen,
                          redisReply **reply, char *errstr, size_t errstr_size) {
    *reply = NULL;
    int rc_ = rcluster_pipeline_append_argv(rc->one, argc, argv, argvlen);
    if (rc_ != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s",
                   rc_ == UL_ERR_ARG ? "a command needs a key (argv[1])" : "out of memory");
        return rc_;
    }
    return one_run(rc, reply, NULL, errstr, errstr_size);
}

int rcluster_command(rcluster *rc, redisReply **reply, char *errstr, size_t errstr_size,
                     const char *fmt, ...) {
    *reply = NULL;
    size_t off;
    va_list ap;
    va_start(ap, fmt);
    int rc_ = rc_buf_append_fmt(&rc->one->buf, fmt, ap, &off);
    va_end(ap);
    if (rc_ == UL_OK)
        rc_ = rc_pipe_add(rc->one, off);
    if (rc_ != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s",
                   rc_ == UL_ERR_ARG ? "a command needs a key (argv[1])" : "out of memory");
        return rc_;
    }
    return one_run(rc, reply, NULL, errstr, errstr_size);
}

/* ---- whole-cluster helpers ---------------------------------------------- */

/* A keyless command on one node. UL_ERR_IO (connection closed) or
 * RCLUSTER_ERR_REPLY with errstr; else *out. */
static int node_call(rcluster *rc, rc_node *nd, const char *what, redisReply **out, char *errstr,
                     size_t errstr_size, int argc, const char **argv) {
    int rc_ = rc_node_ready(rc, nd, errstr, errstr_size);
    return rc_ != UL_OK ? rc_ : rc_node_simple(rc, nd, what, out, errstr, errstr_size, argc, argv);
}

/* Retry loop shared by the helpers that visit every primary: `visit` runs
 * over the primaries; UL_ERR_IO from it refreshes, waits and starts over. */
typedef int (*visit_fn)(rcluster *rc, rc_node *nd, void *ctx, char *errstr, size_t errstr_size);

static int each_primary_retrying(rcluster *rc, retry *rt, visit_fn visit, void *ctx, char *errstr,
                                 size_t errstr_size);

static int each_primary(rcluster *rc, visit_fn visit, void *ctx, char *errstr, size_t errstr_size) {
    retry rt;
    rc_retry_init(rc, &rt);
    int rc_ = each_primary_retrying(rc, &rt, visit, ctx, errstr, errstr_size);
    rc_retry_end(&rt);
    return rc_;
}

static int each_primary_retrying(rcluster *rc, retry *rt, visit_fn visit, void *ctx, char *errstr,
                                 size_t errstr_size) {
    for (;;) {
        int rc_ = UL_OK;
        for (int i = 0; i < rc->n_primaries && rc_ == UL_OK; i++)
            rc_ = visit(rc, rc->primaries[i], ctx, rt->last, sizeof(rt->last));
        if (rc_ != UL_ERR_IO) {
            if (rc_ != UL_OK)
                ul_set_err(errstr, errstr_size, "%s", rt->last);
            return rc_;
        }
        rc_log(rc, "%s (retrying)", rt->last);
        rc_refresh_quiet(rc);
        if (rc_retry_wait(rt, 1) != 0) {
            ul_set_err(errstr, errstr_size, "%s (gave up after %d ms)", rt->last, rc->retry_ms);
            return UL_ERR_IO;
        }
    }
}

static int visit_ping(rcluster *rc, rc_node *nd, void *ctx, char *errstr, size_t errstr_size) {
    (void)ctx;
    const char *argv[1] = {"PING"};
    redisReply *r = NULL;
    int rc_ = node_call(rc, nd, "PING", &r, errstr, errstr_size, 1, argv);
    if (r)
        freeReplyObject(r);
    return rc_;
}

int rcluster_ping_all(rcluster *rc, char *errstr, size_t errstr_size) {
    return each_primary(rc, visit_ping, NULL, errstr, errstr_size);
}

typedef struct scan_ctx {
    const char *pattern;
    rcluster_key_fn fn;
    void *ctx;
} scan_ctx;

static int visit_scan(rcluster *rc, rc_node *nd, void *vctx, char *errstr, size_t errstr_size) {
    scan_ctx *sc = vctx;
    char cursor[32] = "0";
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", sc->pattern, "COUNT", "1000"};
        redisReply *r = NULL;
        int rc_ = node_call(rc, nd, "SCAN", &r, errstr, errstr_size, 6, argv);
        if (rc_ != UL_OK)
            return rc_;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            ul_set_err(errstr, errstr_size, "redis %s: SCAN: unexpected reply", nd->addr);
            freeReplyObject(r);
            return RCLUSTER_ERR_REPLY;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements && rc_ == UL_OK; i++)
            rc_ =
                sc->fn(sc->ctx, keys->element[i]->str, keys->element[i]->len, errstr, errstr_size);
        freeReplyObject(r);
        if (rc_ != UL_OK)
            return rc_ == UL_ERR_IO ? UL_ERR_STATE : rc_; /* fn's IO must not restart the scan */
    } while (strcmp(cursor, "0") != 0);
    return UL_OK;
}

int rcluster_scan(rcluster *rc, const char *pattern, rcluster_key_fn fn, void *ctx, char *errstr,
                  size_t errstr_size) {
    scan_ctx sc = {pattern, fn, ctx};
    return each_primary(rc, visit_scan, &sc, errstr, errstr_size);
}

static int collect_del(void *ctx, const char *key, size_t len, char *errstr, size_t errstr_size) {
    const char *argv[2] = {"DEL", key};
    size_t lens[2] = {3, len};
    if (rcluster_pipeline_append_argv(ctx, 2, argv, lens) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

int rcluster_del_matching(rcluster *rc, const char *pattern, size_t *deleted, char *errstr,
                          size_t errstr_size) {
    size_t total = 0;
    int rc_ = UL_OK;
    rcluster_pipeline *p = rcluster_pipeline_new(rc);
    if (p == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    for (int pass = 0;; pass++) {
        rcluster_pipeline_reset(p);
        if ((rc_ = rcluster_scan(rc, pattern, collect_del, p, errstr, errstr_size)) != UL_OK)
            break;
        if (p->n == 0)
            break;
        if (pass == DEL_MAX_PASSES) {
            ul_set_err(errstr, errstr_size,
                       "keys matching '%s' still appear after %d passes: something writes them",
                       pattern, DEL_MAX_PASSES);
            rc_ = UL_ERR_STATE;
            break;
        }
        if ((rc_ = rcluster_pipeline_exec(p, errstr, errstr_size)) != UL_OK)
            break;
        for (size_t i = 0; i < p->n; i++)
            total += p->cmds[i].reply->type == REDIS_REPLY_INTEGER
                         ? (size_t)p->cmds[i].reply->integer
                         : 0;
    }
    rcluster_pipeline_destroy(p);
    if (deleted)
        *deleted = total;
    return rc_;
}

static int hscan_reply_ok(const redisReply *r) {
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
           r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_ARRAY;
}

int rcluster_hscan(rcluster *rc, const char *key, rcluster_field_fn fn,
                   rcluster_restart_fn restart_fn, void *ctx, char *errstr, size_t errstr_size) {
    char cursor[32];
    rc_node *prev = NULL;
    int restarts = 0;
restart:
    snprintf(cursor, sizeof(cursor), "0");
    prev = NULL;
    do {
        const char *argv[5] = {"HSCAN", key, cursor, "COUNT", "1000"};
        redisReply *r = NULL;
        rc_node *nd = NULL;
        int rc_ = rcluster_pipeline_append_argv(rc->one, 5, argv, NULL);
        if (rc_ != UL_OK) {
            ul_set_err(errstr, errstr_size, "out of memory");
            return rc_;
        }
        if ((rc_ = one_run(rc, &r, &nd, errstr, errstr_size)) != UL_OK)
            return rc_;
        if (!hscan_reply_ok(r)) {
            ul_set_err(errstr, errstr_size, "redis %s: HSCAN %s: unexpected reply", nd->addr, key);
            freeReplyObject(r);
            return RCLUSTER_ERR_REPLY;
        }
        if (prev && nd != prev) { /* the cursor belongs to the old node's table */
            freeReplyObject(r);
            rc->stats.hscan_restarts++;
            if (++restarts > HSCAN_MAX_RESTARTS) {
                ul_set_err(errstr, errstr_size, "HSCAN %s: the key moved %d times during the scan",
                           key, restarts);
                return UL_ERR_IO;
            }
            rc_log(rc, "HSCAN %s: moved from %s to %s, restarting the scan", key, prev->addr,
                   nd->addr);
            if (restart_fn && (rc_ = restart_fn(ctx, errstr, errstr_size)) != UL_OK)
                return rc_;
            goto restart;
        }
        prev = nd;
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *kv = r->element[1];
        for (size_t i = 0; i + 1 < kv->elements && rc_ == UL_OK; i += 2)
            rc_ = fn(ctx, kv->element[i]->str, kv->element[i]->len, kv->element[i + 1]->str,
                     kv->element[i + 1]->len, errstr, errstr_size);
        freeReplyObject(r);
        if (rc_ != UL_OK)
            return rc_;
    } while (strcmp(cursor, "0") != 0);
    return UL_OK;
}
