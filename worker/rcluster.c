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
 * written and no EXEC reply came back. */
#include "rcluster.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>

#include "ul_err.h"

#define MAX_FREE_REDIRECTS 16 /* redirection rounds in a row before backing off */
#define BACKOFF_FIRST_MS 20
#define BACKOFF_MAX_MS 500
#define CHUNK_CMDS 8192        /* commands in flight per pipeline round */
#define CHUNK_BYTES (8u << 20) /* bytes in flight per pipeline round */
#define HSCAN_MAX_RESTARTS 16
#define DEL_MAX_PASSES 10
#define NAME_MAX_CHARS 80
#define SEND_IOV_MAX 1024 /* iovecs per sendmsg (POSIX guarantees at least 16; Linux 1024) */

static const uint16_t crc16_table[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a, 0xb16b,
    0xc18c, 0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462, 0x3443, 0x0420, 0x1401,
    0x64e6, 0x74c7, 0x44a4, 0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738,
    0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96,
    0x1a71, 0x0a50, 0x3a33, 0x2a12, 0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41, 0xedae, 0xfd8f, 0xcdec, 0xddcd,
    0xad2a, 0xbd0b, 0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9, 0xb1ca, 0xa1eb,
    0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290, 0x22f3, 0x32d2,
    0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405, 0xa7db, 0xb7fa, 0x8799, 0x97b8,
    0xe75f, 0xf77e, 0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827,
    0x18c0, 0x08e1, 0x3882, 0x28a3, 0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d,
    0xbdaa, 0xad8b, 0x9de8, 0x8dc9, 0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74,
    0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};

/* ---- types -------------------------------------------------------------- */

typedef struct rc_node {
    char host[256];
    int port;
    char addr[300]; /* "host:port" ("[v6]:port"), for messages and callers */
    redisContext *c;
    int64_t failed_ms; /* when it last failed; 0 once it answered again */
    int seed;          /* from opts.seeds */
    int in_map;        /* primary or replica in the current map */
    int replicas;      /* as a primary: replicas in the current map (WAIT after a txn) */
    int replicas_new;  /* scratch while a map loads */
    unsigned mark;     /* scratch for a pipeline round */
} rc_node;

struct rcluster {
    char *seeds, *user, *password;
    rcluster_mode mode;
    int timeout_ms, retry_ms, db;
    void (*log_fn)(void *, const char *);
    void *log_ctx;
    void (*wait_fn)(void *, int);
    void *wait_ctx;
    int wait_depth; /* nested waits (a reply inside a retry): wait_fn on 0 <-> 1 only */
    int cluster;    /* 1: Redis Cluster, 0: one plain Redis */
    rc_node **nodes;
    int n_nodes, cap_nodes;
    rc_node *slots[RCLUSTER_SLOTS];
    rc_node **scratch_slots; /* RCLUSTER_SLOTS entries, for loading a map */
    rc_node **primaries;     /* distinct primaries of `slots`, in slot order */
    int n_primaries;
    unsigned round; /* pipeline round counter (node marks) */
    rcluster_stats stats;
    rcluster_pipeline *one; /* reused by rcluster_command */
};

typedef struct rc_buf {
    char *p;
    size_t len, cap;
} rc_buf;

typedef struct rc_cmd {
    size_t off, len; /* formatted bytes in the pipeline's arena */
    int slot;
    rc_node *ask;  /* next attempt: ASKING, then this node */
    rc_node *node; /* the node that answered */
    redisReply *reply;
    int asked; /* scratch: this round was sent with ASKING */
} rc_cmd;

struct rcluster_pipeline {
    rcluster *rc;
    rc_buf buf;
    rc_cmd *cmds;
    size_t n, cap;
};

struct rcluster_txn {
    rcluster *rc;
    int slot;
    rc_buf buf;   /* the commands, formatted */
    size_t *offs; /* start of each command in buf */
    size_t n, cap;
    int guard;
    char *gkey, *gfield, *gval; /* gval NULL: the field must be absent */
    size_t gval_len;
    redisReply *exec;
    rc_node *where;
    int wait_ms; /* > 0: WAIT for a replica after EXEC (rcluster_txn_wait) */
    int acked;   /* replicas that acknowledged; -1: none asked */
};

/* Retry bookkeeping of one call. */
typedef struct retry {
    rcluster *rc;
    int waiting; /* slept once already: the caller was told (rc_waiting) */
    int64_t deadline;
    int backoff_ms;
    int free_redirects;
    char last[UL_ERRSTR_SIZE]; /* the last retryable failure, for the final message */
} retry;

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void) {
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

static void rc_log(rcluster *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rc_log(rcluster *rc, const char *fmt, ...) {
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
static void note(rcluster *rc, retry *rt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(rcluster *rc, retry *rt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->last, sizeof(rt->last), fmt, ap);
    va_end(ap);
    rc_log(rc, "%s (retrying)", rt->last);
}

/* A wait starts (1) or ends (0); wait_fn hears the outermost only. */
static void rc_waiting(rcluster *rc, int on) {
    int edge = on ? rc->wait_depth++ == 0 : --rc->wait_depth == 0;
    if (edge && rc->wait_fn)
        rc->wait_fn(rc->wait_ctx, on);
}

static void retry_init(rcluster *rc, retry *rt) {
    rt->rc = rc;
    rt->waiting = 0;
    rt->deadline = now_ms() + rc->retry_ms;
    rt->backoff_ms = BACKOFF_FIRST_MS;
    rt->free_redirects = MAX_FREE_REDIRECTS;
    rt->last[0] = '\0';
}

/* Before the next attempt. A round of redirections only goes again at once
 * (a few times); anything else sleeps (exponential backoff). -1 when the
 * budget is spent. */
static int retry_wait(retry *rt, int backoff) {
    if (!backoff && rt->free_redirects-- > 0)
        return 0;
    int64_t left = rt->deadline - now_ms();
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
static void retry_end(retry *rt) {
    if (rt->waiting)
        rc_waiting(rt->rc, 0);
    rt->waiting = 0;
}

/* Printable, bounded copy of a key or command name for messages. */
static void printable(char *out, size_t size, const char *s, size_t len) {
    size_t j = 0;
    for (size_t i = 0; i < len && j + 4 < size && i < NAME_MAX_CHARS; i++)
        out[j++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (len > NAME_MAX_CHARS && j + 4 < size)
        out[j++] = '.', out[j++] = '.', out[j++] = '.';
    out[j] = '\0';
}

static int buf_reserve(rc_buf *b, size_t n);

static int buf_put(rc_buf *b, const void *s, size_t n) {
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
static int resp_format(rc_buf *b, int argc, const char **argv, const size_t *argvlen) {
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
    int rc = buf_put(b, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return rc;
}

/* Format a command at the end of b; *off receives where it starts. On
 * failure b is unchanged. Shared by pipelines, transactions and single
 * commands (argv and printf-style forms). */
static int buf_append_argv(rc_buf *b, int argc, const char **argv, const size_t *argvlen,
                           size_t *off) {
    if (argc < 2)
        return UL_ERR_ARG; /* routing needs argv[1] */
    *off = b->len;
    if (resp_format(b, argc, argv, argvlen) != 0) {
        b->len = *off;
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

static int buf_append_fmt(rc_buf *b, const char *fmt, va_list ap, size_t *off) {
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
static int resp_key(const char *cmd, size_t len, const char **key, size_t *klen) {
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
static void cmd_name(char *out, size_t size, const char *cmd, size_t len) {
    const char *a0 = "?", *a1 = "";
    size_t l0 = 1, l1 = 0;
    resp_arg(cmd, len, 0, &a0, &l0);
    resp_arg(cmd, len, 1, &a1, &l1);
    char n0[32], n1[NAME_MAX_CHARS + 8];
    printable(n0, sizeof(n0), a0, l0);
    printable(n1, sizeof(n1), a1, l1);
    snprintf(out, size, "%s%s%s", n0, l1 ? " " : "", n1);
}

/* ---- slots -------------------------------------------------------------- */

uint16_t rcluster_crc16(const char *buf, size_t len) {
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ (uint8_t)buf[i]) & 0xff]);
    return crc;
}

int rcluster_key_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return rcluster_crc16(open + 1, (size_t)(close - open - 1)) & (RCLUSTER_SLOTS - 1);
    }
    return rcluster_crc16(key, len) & (RCLUSTER_SLOTS - 1);
}

/* ---- parsers ------------------------------------------------------------ */

int rcluster_endpoint_parse(const char *s, size_t len, char *host, size_t host_size, int *port) {
    while (len > 0 && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (colon == NULL)
        return -1;
    size_t hlen = (size_t)(colon - s), plen = len - hlen - 1;
    const char *h = s;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
        h++, hlen -= 2;
    if (hlen == 0 || hlen >= host_size || plen == 0 || plen > 5)
        return -1;
    long v = 0;
    for (size_t i = 0; i < plen; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9')
            return -1;
        v = v * 10 + (colon[1 + i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)v;
    return 0;
}

typedef int (*seed_fn)(void *ctx, const char *host, int port);

static int each_seed(const char *list, seed_fn fn, void *ctx, char *errstr, size_t errstr_size) {
    if (list == NULL || *list == '\0') {
        ul_set_err(errstr, errstr_size, "no Redis seed nodes given (expected host:port,...)");
        return -1;
    }
    int n = 0;
    for (const char *p = list;; n++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char host[256];
        int port;
        if (rcluster_endpoint_parse(p, len, host, sizeof(host), &port) != 0) {
            ul_set_err(errstr, errstr_size,
                       "redis seed '%.*s' is not host:port (expected host:port,host:port,...)",
                       (int)len, p);
            return -1;
        }
        if (fn && fn(ctx, host, port) != 0) {
            ul_set_err(errstr, errstr_size, "out of memory");
            return -1;
        }
        if (end == NULL)
            return n + 1;
        p = end + 1;
    }
}

int rcluster_seeds_check(const char *list, int *n, char *errstr, size_t errstr_size) {
    int count = each_seed(list, NULL, NULL, errstr, errstr_size);
    if (count < 0)
        return UL_ERR_ARG;
    if (n)
        *n = count;
    return UL_OK;
}

static int is_int(const redisReply *r) {
    return r && r->type == REDIS_REPLY_INTEGER;
}

/* One node entry of CLUSTER SLOTS: [endpoint, port, id?, metadata?]. */
static int slots_node(const redisReply *e, const char *reply_host, char *host, size_t host_size,
                      int *port, const char **id) {
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements < 2 || !is_int(e->element[1]))
        return -1;
    const redisReply *ep = e->element[0];
    const char *h = reply_host;
    if (ep->type == REDIS_REPLY_STRING && ep->len > 0 && strcmp(ep->str, "?") != 0)
        h = ep->str;
    else if (ep->type != REDIS_REPLY_STRING && ep->type != REDIS_REPLY_NIL)
        return -1;
    if (strlen(h) >= host_size || e->element[1]->integer < 1 || e->element[1]->integer > 65535)
        return -1;
    snprintf(host, host_size, "%s", h);
    *port = (int)e->element[1]->integer;
    *id = e->elements >= 3 && e->element[2]->type == REDIS_REPLY_STRING ? e->element[2]->str : "";
    return 0;
}

int rcluster_slots_parse(const redisReply *r, const char *reply_host, rcluster_range_fn fn,
                         void *ctx, char *errstr, size_t errstr_size) {
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        ul_set_err(errstr, errstr_size, "CLUSTER SLOTS: expected an array, got reply type %d",
                   r ? r->type : -1);
        return UL_ERR_PARSE;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !is_int(e->element[0]) ||
            !is_int(e->element[1])) {
            ul_set_err(errstr, errstr_size,
                       "CLUSTER SLOTS: entry %zu is not [start, end, primary, replicas...]", i);
            return UL_ERR_PARSE;
        }
        long long start = e->element[0]->integer, end = e->element[1]->integer;
        if (start < 0 || end < start || end >= RCLUSTER_SLOTS) {
            ul_set_err(errstr, errstr_size, "CLUSTER SLOTS: entry %zu has slots %lld-%lld", i,
                       start, end);
            return UL_ERR_PARSE;
        }
        for (size_t j = 2; j < e->elements; j++) {
            char host[256];
            int port;
            const char *id;
            if (slots_node(e->element[j], reply_host, host, sizeof(host), &port, &id) != 0) {
                ul_set_err(errstr, errstr_size,
                           "CLUSTER SLOTS: entry %zu node %zu is not [endpoint, port, id...]", i,
                           j - 2);
                return UL_ERR_PARSE;
            }
            int rc = fn(ctx, (int)start, (int)end, j > 2, host, port, id);
            if (rc != 0)
                return rc;
        }
    }
    return UL_OK;
}

int rcluster_redirect_parse(const char *err, size_t len, int *ask, int *slot, char *host,
                            size_t host_size, int *port) {
    size_t skip;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0)
        *ask = 0, skip = 6;
    else if (len > 4 && memcmp(err, "ASK ", 4) == 0)
        *ask = 1, skip = 4;
    else
        return -1;
    const char *p = err + skip, *end = err + len;
    long s = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && s < RCLUSTER_SLOTS)
        s = s * 10 + (*p++ - '0');
    if (p == digits || p >= end || *p != ' ' || s >= RCLUSTER_SLOTS)
        return -1;
    p++;
    /* "host:port", host possibly empty (unknown endpoint) or an IPv6 address. */
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
    if (colon == NULL)
        return -1;
    size_t hlen = (size_t)(colon - p);
    if (hlen + 1 > host_size)
        return -1;
    long v = 0;
    const char *q = colon + 1;
    if (q >= end)
        return -1;
    for (; q < end; q++) {
        if (*q < '0' || *q > '9' || v > 65535)
            return -1;
        v = v * 10 + (*q - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    memcpy(host, p, hlen);
    host[hlen] = '\0';
    *slot = (int)s;
    *port = (int)v;
    return 0;
}

/* ---- nodes and connections ---------------------------------------------- */

static rc_node *node_get(rcluster *rc, const char *host, int port) {
    for (int i = 0; i < rc->n_nodes; i++)
        if (rc->nodes[i]->port == port && strcmp(rc->nodes[i]->host, host) == 0)
            return rc->nodes[i];
    if (rc->n_nodes == rc->cap_nodes) {
        int cap = rc->cap_nodes ? rc->cap_nodes * 2 : 8;
        rc_node **nodes = realloc(rc->nodes, (size_t)cap * sizeof(*nodes));
        if (nodes == NULL)
            return NULL;
        rc->nodes = nodes;
        rc->cap_nodes = cap;
    }
    rc_node *nd = calloc(1, sizeof(*nd));
    if (nd == NULL)
        return NULL;
    snprintf(nd->host, sizeof(nd->host), "%s", host);
    nd->port = port;
    snprintf(nd->addr, sizeof(nd->addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    rc->nodes[rc->n_nodes++] = nd;
    return nd;
}

static void node_close(rcluster *rc, rc_node *nd) {
    if (nd->c) {
        redisFree(nd->c);
        nd->c = NULL;
    }
    nd->failed_ms = now_ms();
    rc->stats.node_errors++;
}

/* hiredis's text for the context's error, with a timeout said plainly. */
static const char *ctx_err(const rcluster *rc, const redisContext *c, char *buf, size_t size) {
    if (c == NULL || c->errstr[0] == '\0')
        return "connection lost";
    if (strstr(c->errstr, "temporarily unavailable") || strstr(c->errstr, "timed out")) {
        snprintf(buf, size, "timed out after %d ms", rc->timeout_ms);
        return buf;
    }
    return c->errstr;
}

/* A synchronous command on a fresh connection (AUTH, SELECT, CLUSTER SLOTS).
 * UL_ERR_IO when the connection failed, RCLUSTER_ERR_REPLY on an error
 * reply (message "redis host:port: what: reply"), else *out. */
static int node_simple(rcluster *rc, rc_node *nd, const char *what, redisReply **out, char *errstr,
                       size_t errstr_size, int argc, const char **argv) {
    redisReply *r = redisCommandArgv(nd->c, argc, argv, NULL);
    if (r == NULL) {
        char tmp[64];
        ul_set_err(errstr, errstr_size, "redis %s: %s: %s", nd->addr, what,
                   ctx_err(rc, nd->c, tmp, sizeof(tmp)));
        node_close(rc, nd);
        return UL_ERR_IO;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        ul_set_err(errstr, errstr_size, "redis %s: %s: %s", nd->addr, what, r->str);
        freeReplyObject(r);
        return RCLUSTER_ERR_REPLY;
    }
    *out = r;
    return UL_OK;
}

/* AUTH [user] password. A server without any password answers "called
 * without any password configured"; accepted when no user is named, so
 * nodes can be moved to requirepass one at a time. The password is never
 * part of a message. */
static int node_auth(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size) {
    const char *argv[3] = {"AUTH", rc->user ? rc->user : rc->password, rc->password};
    int argc = rc->user ? 3 : 2;
    const char *what =
        rc->user ? "AUTH (redis.user, redis.password) failed" : "AUTH (redis.password) failed";
    redisReply *r = NULL;
    int rc_ = node_simple(rc, nd, what, &r, errstr, errstr_size, argc, argv);
    if (rc_ == RCLUSTER_ERR_REPLY && !rc->user && strstr(errstr, "without any password"))
        return UL_OK;
    if (r)
        freeReplyObject(r);
    return rc_;
}

/* An idle connection that is readable has been closed by the peer (or
 * holds data nobody asked for): either way it cannot be used. Checking
 * costs one poll(), no round trip, and keeps a transaction from being sent
 * into a socket the server already closed (which would make its outcome
 * "unknown" for nothing). */
static int conn_dead(const redisContext *c) {
    struct pollfd pfd = {c->fd, POLLIN, 0};
    return poll(&pfd, 1, 0) != 0;
}

/* Open nd's connection if needed: connect, AUTH, SELECT. UL_ERR_IO when
 * unreachable (retryable), RCLUSTER_ERR_REPLY when AUTH/SELECT is refused. */
static int node_ready(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size) {
    if (nd->c && !conn_dead(nd->c))
        return UL_OK;
    if (nd->c) { /* the peer closed it while idle (restarted, killed): open a new one */
        redisFree(nd->c);
        nd->c = NULL;
    }
    struct timeval tv = {rc->timeout_ms / 1000, (rc->timeout_ms % 1000) * 1000};
    nd->c = redisConnectWithTimeout(nd->host, nd->port, tv);
    if (nd->c == NULL || nd->c->err) {
        char tmp[64];
        ul_set_err(errstr, errstr_size, "redis %s: cannot connect: %s", nd->addr,
                   nd->c ? ctx_err(rc, nd->c, tmp, sizeof(tmp)) : "out of memory");
        node_close(rc, nd);
        return UL_ERR_IO;
    }
    if (redisSetTimeout(nd->c, tv) != REDIS_OK) {
        ul_set_err(errstr, errstr_size, "redis %s: cannot set the I/O timeout", nd->addr);
        node_close(rc, nd);
        return UL_ERR_IO;
    }
    int rc_ = rc->password ? node_auth(rc, nd, errstr, errstr_size) : UL_OK;
    if (rc_ == UL_OK && !rc->cluster && rc->db > 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", rc->db);
        const char *argv[2] = {"SELECT", db};
        redisReply *r = NULL;
        rc_ = node_simple(rc, nd, "SELECT", &r, errstr, errstr_size, 2, argv);
        if (r)
            freeReplyObject(r);
    }
    if (rc_ != UL_OK) {
        if (nd->c)
            node_close(rc, nd);
        return rc_;
    }
    nd->failed_ms = 0;
    return UL_OK;
}

/* Write v[0..n) completely to nd's socket (blocking, within the context's
 * send timeout), straight from the caller's buffers: commands live in our
 * arena already, so they skip hiredis's output buffer (one copy less on
 * the pipeline's hot path). MSG_NOSIGNAL: a peer that closed the socket is
 * an error here, never a SIGPIPE. -1 (message, connection closed) on
 * failure; v is consumed. */
static int node_sendv(rcluster *rc, rc_node *nd, struct iovec *v, int n, char *errstr,
                      size_t errstr_size) {
    while (n > 0) {
        struct msghdr mh;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = v;
        mh.msg_iovlen = (size_t)(n < SEND_IOV_MAX ? n : SEND_IOV_MAX);
        ssize_t w = sendmsg(nd->c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            char tmp[64];
            snprintf(tmp, sizeof(tmp), "timed out after %d ms", rc->timeout_ms);
            ul_set_err(errstr, errstr_size, "redis %s: write failed: %s", nd->addr,
                       e == EAGAIN || e == EWOULDBLOCK ? tmp : strerror(e));
            node_close(rc, nd);
            return -1;
        }
        while (n > 0 && (size_t)w >= v->iov_len) {
            w -= (ssize_t)v->iov_len;
            v++, n--;
        }
        if (n > 0) {
            v->iov_base = (char *)v->iov_base + w;
            v->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Append [p, p+len) to an iovec list, merged with the previous entry when
 * contiguous (consecutive commands for one node usually are). */
static void iov_add(struct iovec *v, int *n, const void *p, size_t len) {
    if (*n > 0 && (const char *)v[*n - 1].iov_base + v[*n - 1].iov_len == (const char *)p) {
        v[*n - 1].iov_len += len;
        return;
    }
    v[*n].iov_base = (void *)p;
    v[*n].iov_len = len;
    (*n)++;
}

/* Read one reply; NULL (and the connection closed, errstr filled) on failure. */
static redisReply *node_read(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size) {
    redisReply *r = NULL;
    if (redisReaderGetReply(nd->c->reader, (void **)&r) == REDIS_OK && r != NULL)
        return r; /* already read with an earlier one: no wait */
    rc_waiting(rc, 1);
    int got = redisGetReply(nd->c, (void **)&r);
    rc_waiting(rc, 0);
    if (got != REDIS_OK || r == NULL) {
        char tmp[64];
        ul_set_err(errstr, errstr_size, "redis %s: %s", nd->addr,
                   ctx_err(rc, nd->c, tmp, sizeof(tmp)));
        node_close(rc, nd);
        return NULL;
    }
    return r;
}

/* ---- the slot map ------------------------------------------------------- */

typedef struct map_ctx {
    rcluster *rc;
    rc_node **slots;
    int covered;
    rc_node *primary;   /* of the range being walked */
    int range_replicas; /* its replicas so far */
} map_ctx;

static int map_range(void *vctx, int start, int end, int replica, const char *host, int port,
                     const char *id) {
    (void)id;
    map_ctx *ctx = vctx;
    rc_node *nd = node_get(ctx->rc, host, port);
    if (nd == NULL)
        return UL_ERR_NOMEM;
    nd->in_map = 1;
    if (replica) {
        if (ctx->primary && ++ctx->range_replicas > ctx->primary->replicas_new)
            ctx->primary->replicas_new = ctx->range_replicas;
        return 0;
    }
    ctx->primary = nd;
    ctx->range_replicas = 0;
    for (int s = start; s <= end; s++) {
        ctx->covered += ctx->slots[s] == NULL;
        ctx->slots[s] = nd;
    }
    return 0;
}

/* Install a new slot table: primaries list, connections of nodes that left. */
static int map_install(rcluster *rc, rc_node **slots) {
    rc_node **prim = malloc((size_t)rc->n_nodes * sizeof(*prim));
    if (prim == NULL)
        return UL_ERR_NOMEM;
    memcpy(rc->slots, slots, sizeof(rc->slots));
    int n = 0;
    rc->round++;
    for (int s = 0; s < RCLUSTER_SLOTS; s++) {
        rc_node *nd = rc->slots[s];
        if (nd && nd->mark != rc->round) {
            nd->mark = rc->round;
            prim[n++] = nd;
        }
    }
    free(rc->primaries);
    rc->primaries = prim;
    rc->n_primaries = n;
    for (int i = 0; i < rc->n_nodes; i++)
        if (!rc->nodes[i]->in_map && rc->nodes[i]->c) {
            redisFree(rc->nodes[i]->c);
            rc->nodes[i]->c = NULL;
        }
    rc->stats.refreshes++;
    return UL_OK;
}

/* CLUSTER SLOTS from nd. *standalone = 1 when nd has cluster support disabled. */
static int map_load_from(rcluster *rc, rc_node *nd, int *standalone, char *errstr,
                         size_t errstr_size) {
    *standalone = 0;
    int rc_ = node_ready(rc, nd, errstr, errstr_size);
    if (rc_ != UL_OK)
        return rc_;
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    redisReply *r = NULL;
    rc_ = node_simple(rc, nd, "CLUSTER SLOTS", &r, errstr, errstr_size, 2, argv);
    if (rc_ == RCLUSTER_ERR_REPLY && strstr(errstr, "cluster support disabled")) {
        *standalone = 1;
        return rc_;
    }
    if (rc_ != UL_OK)
        return rc_;
    for (int i = 0; i < rc->n_nodes; i++)
        rc->nodes[i]->in_map = rc->nodes[i]->replicas_new = 0;
    memset(rc->scratch_slots, 0, RCLUSTER_SLOTS * sizeof(*rc->scratch_slots));
    map_ctx ctx = {rc, rc->scratch_slots, 0, NULL, 0};
    char perr[256];
    rc_ = rcluster_slots_parse(r, nd->host, map_range, &ctx, perr, sizeof(perr));
    freeReplyObject(r);
    if (rc_ == UL_ERR_PARSE)
        ul_set_err(errstr, errstr_size, "redis %s: %s", nd->addr, perr);
    else if (rc_ == UL_OK && ctx.covered == 0) {
        ul_set_err(errstr, errstr_size, "redis %s: CLUSTER SLOTS: no slot is assigned to any node",
                   nd->addr);
        rc_ = UL_ERR_IO;
    }
    if (rc_ != UL_OK) {
        for (int s = 0; s < RCLUSTER_SLOTS; s++) /* keep the old map's nodes marked */
            if (rc->slots[s])
                rc->slots[s]->in_map = 1;
        return rc_;
    }
    rc_ = map_install(rc, rc->scratch_slots);
    for (int i = 0; rc_ == UL_OK && i < rc->n_nodes; i++)
        rc->nodes[i]->replicas = rc->nodes[i]->replicas_new;
    if (rc_ == UL_OK && ctx.covered < RCLUSTER_SLOTS)
        rc_log(rc, "redis %s: %d of %d slots are not served by any node", nd->addr,
               RCLUSTER_SLOTS - ctx.covered, RCLUSTER_SLOTS);
    return rc_;
}

static void err_append(char *errstr, size_t errstr_size, const char *msg) {
    if (errstr == NULL || errstr_size == 0)
        return;
    size_t used = strlen(errstr), n = strlen(msg);
    if (used > 0 && used + 2 < errstr_size) {
        memcpy(errstr + used, "; ", 2);
        used += 2;
    }
    if (used + 1 >= errstr_size)
        return;
    if (n > errstr_size - used - 1)
        n = errstr_size - used - 1;
    memcpy(errstr + used, msg, n);
    errstr[used + n] = '\0';
}

int rcluster_refresh(rcluster *rc, char *errstr, size_t errstr_size) {
    if (!rc->cluster)
        return UL_OK;
    if (errstr && errstr_size)
        errstr[0] = '\0';
    /* Healthy map nodes first, then healthy others (seeds), then those that failed. */
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < rc->n_nodes; i++) {
            rc_node *nd = rc->nodes[i];
            int healthy = nd->failed_ms == 0;
            if ((pass == 0 && !(healthy && nd->in_map)) ||
                (pass == 1 && !(healthy && !nd->in_map)) || (pass == 2 && healthy))
                continue;
            char msg[UL_ERRSTR_SIZE];
            int standalone;
            int rc_ = map_load_from(rc, nd, &standalone, msg, sizeof(msg));
            if (rc_ == UL_OK)
                return UL_OK;
            if (rc_ == UL_ERR_NOMEM) {
                ul_set_err(errstr, errstr_size, "out of memory");
                return rc_;
            }
            err_append(errstr, errstr_size, msg);
        }
    }
    return UL_ERR_IO;
}

/* Best-effort refresh inside a retry loop: failures are only logged. */
static void refresh_quiet(rcluster *rc) {
    char msg[UL_ERRSTR_SIZE];
    if (rc->cluster && rcluster_refresh(rc, msg, sizeof(msg)) != UL_OK)
        rc_log(rc, "cannot refresh the slot map: %s", msg);
}

/* ---- connect ------------------------------------------------------------ */

void rcluster_opts_init(rcluster_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->mode = RCLUSTER_AUTO;
    opts->timeout_ms = 5000;
    opts->retry_ms = 10000;
}

static int add_seed(void *vrc, const char *host, int port) {
    rc_node *nd = node_get(vrc, host, port);
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
    int rc_ = node_ready(rc, nd, errstr, errstr_size);
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
    if (node_simple(rc, nd, "ROLE", &r, msg, sizeof(msg), 1, argv) == UL_OK) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "master") == 0 && r->element[2]->type == REDIS_REPLY_ARRAY)
            nd->replicas = (int)r->element[2]->elements;
        freeReplyObject(r);
    }
    return map_install(rc, rc->scratch_slots);
}

static int connect_cluster(rcluster *rc, int n_seeds, char *errstr, size_t errstr_size) {
    errstr[0] = '\0';
    for (int i = 0; i < rc->n_nodes; i++) {
        rc_node *nd = rc->nodes[i];
        char msg[UL_ERRSTR_SIZE];
        int standalone;
        int rc_ = map_load_from(rc, nd, &standalone, msg, sizeof(msg));
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
        err_append(errstr, errstr_size, msg);
    }
    char all[UL_ERRSTR_SIZE] = "no Redis seed node answered: ";
    err_append(all + strlen(all), sizeof(all) - strlen(all), errstr);
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
    int n = each_seed(opts->seeds, add_seed, rc, msg, sizeof(msg));
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

/* ---- reply classification ----------------------------------------------- */

typedef enum reply_kind {
    REPLY_DONE,    /* a result, or an error retrying cannot fix */
    REPLY_MOVED,   /* map updated; send again */
    REPLY_ASK,     /* send again to *ask with ASKING */
    REPLY_BACKOFF, /* TRYAGAIN, CLUSTERDOWN, LOADING: send again after a pause */
} reply_kind;

static int err_is(const redisReply *r, const char *prefix) {
    size_t n = strlen(prefix);
    return r->len >= n && memcmp(r->str, prefix, n) == 0;
}

/* Classify reply r that node nd gave for slot `slot`. MOVED updates the
 * map entry at once (the retry goes right even if a refresh fails). */
static reply_kind classify(rcluster *rc, rc_node *nd, const redisReply *r, rc_node **ask) {
    if (r->type != REDIS_REPLY_ERROR || !rc->cluster)
        return REPLY_DONE;
    int is_ask, rslot, port;
    char host[256];
    if (rcluster_redirect_parse(r->str, r->len, &is_ask, &rslot, host, sizeof(host), &port) == 0) {
        rc_node *to = node_get(rc, host[0] ? host : nd->host, port);
        if (to == NULL)
            return REPLY_DONE;
        if (is_ask) {
            rc->stats.ask++;
            *ask = to;
            return REPLY_ASK;
        }
        rc->stats.moved++;
        rc->slots[rslot] = to;
        return REPLY_MOVED;
    }
    if (err_is(r, "TRYAGAIN")) {
        rc->stats.tryagain++;
        return REPLY_BACKOFF;
    }
    if (err_is(r, "CLUSTERDOWN") || err_is(r, "LOADING") || err_is(r, "MASTERDOWN")) {
        rc->stats.clusterdown++;
        return REPLY_BACKOFF;
    }
    return REPLY_DONE;
}

/* ---- pipelines ---------------------------------------------------------- */

rcluster_pipeline *rcluster_pipeline_new(rcluster *rc) {
    rcluster_pipeline *p = calloc(1, sizeof(*p));
    if (p)
        p->rc = rc;
    return p;
}

void rcluster_pipeline_reset(rcluster_pipeline *p) {
    for (size_t i = 0; i < p->n; i++)
        if (p->cmds[i].reply)
            freeReplyObject(p->cmds[i].reply);
    p->n = 0;
    p->buf.len = 0;
}

void rcluster_pipeline_destroy(rcluster_pipeline *p) {
    if (p == NULL)
        return;
    rcluster_pipeline_reset(p);
    free(p->cmds);
    free(p->buf.p);
    free(p);
}

size_t rcluster_pipeline_count(const rcluster_pipeline *p) {
    return p->n;
}

const redisReply *rcluster_pipeline_reply(const rcluster_pipeline *p, size_t i) {
    return i < p->n ? p->cmds[i].reply : NULL;
}

/* Register the command formatted at [off, buf.len): slot from argv[1]. */
static int pipe_add(rcluster_pipeline *p, size_t off) {
    const char *key;
    size_t klen;
    if (resp_key(p->buf.p + off, p->buf.len - off, &key, &klen) != 0) {
        p->buf.len = off;
        return UL_ERR_ARG;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        rc_cmd *cmds = realloc(p->cmds, cap * sizeof(*cmds));
        if (cmds == NULL) {
            p->buf.len = off;
            return UL_ERR_NOMEM;
        }
        p->cmds = cmds;
        p->cap = cap;
    }
    rc_cmd *c = &p->cmds[p->n++];
    memset(c, 0, sizeof(*c));
    c->off = off;
    c->len = p->buf.len - off;
    c->slot = rcluster_key_slot(key, klen);
    return UL_OK;
}

int rcluster_pipeline_append_argv(rcluster_pipeline *p, int argc, const char **argv,
                                  const size_t *argvlen) {
    size_t off;
    int rc = buf_append_argv(&p->buf, argc, argv, argvlen, &off);
    return rc == UL_OK ? pipe_add(p, off) : rc;
}

int rcluster_pipeline_append(rcluster_pipeline *p, const char *fmt, ...) {
    size_t off;
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_append_fmt(&p->buf, fmt, ap, &off);
    va_end(ap);
    return rc == UL_OK ? pipe_add(p, off) : rc;
}

static const char ASKING_CMD[] = "*1\r\n$6\r\nASKING\r\n";

/* Flags of one pipeline round. */
typedef struct round_flags {
    int refresh, backoff;
    unsigned logged; /* events of this round already logged (one line per kind, not per command) */
    int fatal;       /* a node refused AUTH: stop */
    char fatal_msg[UL_ERRSTR_SIZE];
} round_flags;

/* Kinds of retryable events in a round, for round_note. */
enum { EV_UNCOVERED = 1, EV_NODE = 2, EV_REDIRECT = 4, EV_BUSY = 8 };

/* Record a retryable event of this round (kept for the final message) and
 * log it, once per kind and round. */
static void round_note(rcluster *rc, retry *rt, round_flags *fl, unsigned kind, const char *fmt,
                       ...) __attribute__((format(printf, 5, 6)));
static void round_note(rcluster *rc, retry *rt, round_flags *fl, unsigned kind, const char *fmt,
                       ...) {
    if (fl->logged & kind)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->last, sizeof(rt->last), fmt, ap);
    va_end(ap);
    rc_log(rc, "%s (retrying)", rt->last);
    fl->logged |= kind;
}

/* Append and write node nd's commands of this round (pend[k] with tgt[k]
 * == nd). On failure the commands stay unanswered and tgt[k] is cleared. */
static void round_send(rcluster_pipeline *p, rc_node *nd, const size_t *pend, rc_node **tgt,
                       size_t npend, struct iovec *iov, retry *rt, round_flags *fl) {
    rcluster *rc = p->rc;
    char msg[UL_ERRSTR_SIZE];
    int rc_ = node_ready(rc, nd, msg, sizeof(msg)), n = 0;
    for (size_t k = 0; k < npend && rc_ == UL_OK; k++) {
        rc_cmd *c = &p->cmds[pend[k]];
        if (tgt[k] != nd)
            continue;
        c->asked = c->ask != NULL;
        c->ask = NULL;
        if (c->asked)
            iov_add(iov, &n, ASKING_CMD, sizeof(ASKING_CMD) - 1);
        iov_add(iov, &n, p->buf.p + c->off, c->len);
    }
    if (rc_ == UL_OK && node_sendv(rc, nd, iov, n, msg, sizeof(msg)) != 0)
        rc_ = UL_ERR_IO;
    if (rc_ == UL_OK)
        return;
    if (rc_ == RCLUSTER_ERR_REPLY) {
        fl->fatal = 1;
        snprintf(fl->fatal_msg, sizeof(fl->fatal_msg), "%s", msg);
    } else {
        round_note(rc, rt, fl, EV_NODE, "%s", msg);
    }
    fl->refresh = fl->backoff = 1;
    for (size_t k = 0; k < npend; k++)
        if (tgt[k] == nd)
            tgt[k] = NULL;
}

/* Read node nd's replies of this round, in order. */
static void round_read(rcluster_pipeline *p, rc_node *nd, const size_t *pend, rc_node **tgt,
                       size_t npend, retry *rt, round_flags *fl) {
    rcluster *rc = p->rc;
    char msg[UL_ERRSTR_SIZE], name[128];
    for (size_t k = 0; k < npend; k++) {
        rc_cmd *c = &p->cmds[pend[k]];
        if (tgt[k] != nd)
            continue;
        redisReply *r = NULL;
        if (c->asked) { /* ASKING's +OK; an error shows again on the command itself */
            if ((r = node_read(rc, nd, msg, sizeof(msg))) == NULL)
                goto lost;
            freeReplyObject(r);
        }
        if ((r = node_read(rc, nd, msg, sizeof(msg))) == NULL)
            goto lost;
        reply_kind kind = classify(rc, nd, r, &c->ask);
        if (kind == REPLY_DONE) {
            c->reply = r;
            c->node = nd;
            continue;
        }
        cmd_name(name, sizeof(name), p->buf.p + c->off, c->len);
        round_note(rc, rt, fl, kind == REPLY_BACKOFF ? EV_BUSY : EV_REDIRECT, "redis %s: %s: %s",
                   nd->addr, name, r->str);
        fl->refresh |= kind == REPLY_MOVED || err_is(r, "CLUSTERDOWN");
        fl->backoff |= kind == REPLY_BACKOFF;
        freeReplyObject(r);
    }
    return;
lost:
    round_note(rc, rt, fl, EV_NODE, "%s", msg);
    fl->refresh = fl->backoff = 1;
}

/* Deliver commands [from, to) until each has a reply or the budget is spent. */
static int pipe_run(rcluster_pipeline *p, size_t from, size_t to, char *errstr,
                    size_t errstr_size) {
    rcluster *rc = p->rc;
    size_t cap = to - from;
    size_t *pend = malloc(cap * sizeof(*pend));
    rc_node **tgt = malloc(cap * sizeof(*tgt));
    rc_node **used = malloc((size_t)(rc->n_nodes + cap) * sizeof(*used));
    struct iovec *iov = malloc(2 * cap * sizeof(*iov)); /* ASKING + command each */
    if (pend == NULL || tgt == NULL || used == NULL || iov == NULL) {
        free(pend), free(tgt), free(used), free(iov);
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    retry rt;
    retry_init(rc, &rt);
    int rc_ = UL_OK;
    for (;;) {
        size_t npend = 0, nused = 0;
        round_flags fl = {0};
        rc->round++;
        for (size_t i = from; i < to; i++) {
            rc_cmd *c = &p->cmds[i];
            if (c->reply)
                continue;
            rc_node *nd = c->ask ? c->ask : rc->slots[c->slot];
            if (nd == NULL) {
                round_note(rc, &rt, &fl, EV_UNCOVERED, "slot %d is not served by any node",
                           c->slot);
                fl.refresh = fl.backoff = 1;
            } else if (nd->mark != rc->round) {
                nd->mark = rc->round;
                used[nused++] = nd;
            }
            pend[npend] = i;
            tgt[npend++] = nd;
        }
        if (npend == 0)
            break;
        for (size_t j = 0; j < nused && !fl.fatal; j++)
            round_send(p, used[j], pend, tgt, npend, iov, &rt, &fl);
        for (size_t j = 0; j < nused && !fl.fatal; j++)
            if (used[j]->c)
                round_read(p, used[j], pend, tgt, npend, &rt, &fl);
        if (fl.fatal) {
            ul_set_err(errstr, errstr_size, "%s", fl.fatal_msg);
            rc_ = RCLUSTER_ERR_REPLY;
            break;
        }
        if (fl.refresh)
            refresh_quiet(rc);
        size_t left = 0;
        for (size_t k = 0; k < npend; k++)
            left += p->cmds[pend[k]].reply == NULL;
        if (left == 0) /* all answered: no wait, whatever the budget says */
            break;
        if (retry_wait(&rt, fl.backoff) != 0) {
            ul_set_err(errstr, errstr_size, "%s (gave up after %d ms)",
                       rt.last[0] ? rt.last : "redirections did not settle", rc->retry_ms);
            rc_ = UL_ERR_IO;
            break;
        }
    }
    retry_end(&rt);
    free(pend), free(tgt), free(used), free(iov);
    return rc_;
}

int rcluster_pipeline_exec(rcluster_pipeline *p, char *errstr, size_t errstr_size) {
    for (size_t from = 0; from < p->n;) {
        size_t to = from, bytes = 0;
        while (to < p->n && to - from < CHUNK_CMDS && bytes < CHUNK_BYTES)
            bytes += p->cmds[to++].len;
        int rc = pipe_run(p, from, to, errstr, errstr_size);
        if (rc != UL_OK)
            return rc;
        from = to;
    }
    for (size_t i = 0; i < p->n; i++) {
        const rc_cmd *c = &p->cmds[i];
        if (c->reply->type != REDIS_REPLY_ERROR)
            continue;
        char name[128];
        cmd_name(name, sizeof(name), p->buf.p + c->off, c->len);
        ul_set_err(errstr, errstr_size, "redis %s: %s: %s", c->node->addr, name, c->reply->str);
        return RCLUSTER_ERR_REPLY;
    }
    return UL_OK;
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
    int rc_ = buf_append_fmt(&rc->one->buf, fmt, ap, &off);
    va_end(ap);
    if (rc_ == UL_OK)
        rc_ = pipe_add(rc->one, off);
    if (rc_ != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s",
                   rc_ == UL_ERR_ARG ? "a command needs a key (argv[1])" : "out of memory");
        return rc_;
    }
    return one_run(rc, reply, NULL, errstr, errstr_size);
}

/* ---- transactions ------------------------------------------------------- */

rcluster_txn *rcluster_txn_new(rcluster *rc, const char *key, size_t keylen) {
    rcluster_txn *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->rc = rc;
    t->slot = rcluster_key_slot(key, keylen);
    return t;
}

static void txn_clear_guard(rcluster_txn *t) {
    free(t->gkey), free(t->gfield), free(t->gval);
    t->gkey = t->gfield = t->gval = NULL;
    t->guard = 0;
}

void rcluster_txn_reset(rcluster_txn *t) {
    if (t->exec)
        freeReplyObject(t->exec);
    t->exec = NULL;
    t->n = 0;
    t->buf.len = 0;
    txn_clear_guard(t);
}

void rcluster_txn_destroy(rcluster_txn *t) {
    if (t == NULL)
        return;
    rcluster_txn_reset(t);
    free(t->buf.p);
    free(t->offs);
    free(t);
}

/* Register the command at [off, buf.len): it must be in the txn's slot. */
static int txn_add(rcluster_txn *t, size_t off) {
    const char *key;
    size_t klen;
    int rc = UL_OK;
    if (resp_key(t->buf.p + off, t->buf.len - off, &key, &klen) != 0 ||
        rcluster_key_slot(key, klen) != t->slot)
        rc = UL_ERR_ARG; /* no key, or another slot: it would not be single-slot */
    if (rc == UL_OK && t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        size_t *offs = realloc(t->offs, cap * sizeof(*offs));
        if (offs == NULL)
            rc = UL_ERR_NOMEM;
        else
            t->offs = offs, t->cap = cap;
    }
    if (rc != UL_OK) {
        t->buf.len = off;
        return rc;
    }
    t->offs[t->n++] = off;
    return UL_OK;
}

int rcluster_txn_append_argv(rcluster_txn *t, int argc, const char **argv, const size_t *argvlen) {
    size_t off;
    int rc = buf_append_argv(&t->buf, argc, argv, argvlen, &off);
    return rc == UL_OK ? txn_add(t, off) : rc;
}

int rcluster_txn_append(rcluster_txn *t, const char *fmt, ...) {
    size_t off;
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_append_fmt(&t->buf, fmt, ap, &off);
    va_end(ap);
    return rc == UL_OK ? txn_add(t, off) : rc;
}

int rcluster_txn_guard(rcluster_txn *t, const char *key, const char *field, const char *expected,
                       size_t expected_len) {
    if (rcluster_key_slot(key, strlen(key)) != t->slot)
        return UL_ERR_ARG;
    txn_clear_guard(t);
    t->gkey = strdup(key);
    t->gfield = strdup(field);
    if (expected) {
        t->gval = malloc(expected_len + 1);
        if (t->gval) {
            memcpy(t->gval, expected, expected_len);
            t->gval[expected_len] = '\0';
        }
    }
    t->gval_len = expected_len;
    if (t->gkey == NULL || t->gfield == NULL || (expected && t->gval == NULL)) {
        txn_clear_guard(t);
        return UL_ERR_NOMEM;
    }
    t->guard = 1;
    return UL_OK;
}

const redisReply *rcluster_txn_reply(const rcluster_txn *t, size_t i) {
    if (t->exec == NULL || t->exec->type != REDIS_REPLY_ARRAY || i >= t->exec->elements)
        return NULL;
    return t->exec->element[i];
}

const char *rcluster_txn_where(const rcluster_txn *t) {
    return t->where ? t->where->addr : "";
}

void rcluster_txn_wait(rcluster_txn *t, int timeout_ms) {
    t->wait_ms = timeout_ms;
}

int rcluster_txn_acked(const rcluster_txn *t) {
    return t->acked;
}

/* WAIT 1 <ms> on the connection that applied the transaction: its writes
 * reached a replica, or not within the time (t->acked 0; a failure to ask
 * closes the connection and counts 0 too: the caller treats both as "not
 * replicated yet"). Nodes without replicas in the map are not asked. */
static void txn_wait_replica(rcluster_txn *t) {
    rcluster *rc = t->rc;
    rc_node *nd = t->where;
    t->acked = -1;
    if (t->wait_ms <= 0 || nd == NULL || nd->replicas <= 0 || nd->c == NULL)
        return;
    char ms[16], msg[UL_ERRSTR_SIZE];
    snprintf(ms, sizeof(ms), "%d", t->wait_ms);
    const char *argv[3] = {"WAIT", "1", ms};
    redisReply *r = NULL;
    t->acked = 0;
    if (node_simple(rc, nd, "WAIT", &r, msg, sizeof(msg), 3, argv) != UL_OK) {
        rc_log(rc, "%s (the transaction was applied; replication not confirmed)", msg);
        return;
    }
    if (r->type == REDIS_REPLY_INTEGER)
        t->acked = (int)r->integer;
    freeReplyObject(r);
}

/* What one attempt came to. */
typedef enum txn_step {
    TXN_APPLIED,       /* EXEC answered with results: t->exec */
    TXN_RETRY,         /* nothing applied; try again at once (MOVED/ASK) */
    TXN_RETRY_BACKOFF, /* nothing applied; try again after a pause */
    TXN_FAIL,          /* final: *code and errstr */
} txn_step;

typedef struct txn_try {
    rc_node *nd;
    int asking;
    rc_node *ask;   /* out: the ASK target */
    int code;       /* for TXN_FAIL */
    int guard_read; /* the guard key answered on this node (not redirected) */
    int exec_sent;
    int refresh;
    retry *rt;
    char msg[UL_ERRSTR_SIZE];
} txn_try;

/* Bytes of the transaction's command i. */
static size_t txn_cmd_len(const rcluster_txn *t, size_t i) {
    return (i + 1 < t->n ? t->offs[i + 1] : t->buf.len) - t->offs[i];
}

/* Map an error reply that means "not applied" to the next step. */
static txn_step txn_not_applied(rcluster_txn *t, txn_try *tt, const redisReply *r,
                                const char *what) {
    if (tt->guard_read && r->type == REDIS_REPLY_ERROR && err_is(r, "ASK ")) {
        /* The guard key answered here (the migrating source) but another key
         * already moved: the keys are split and no node can run the whole
         * transaction until the migration finishes. Following the ASK would
         * read the guard where its key is not yet. Redis says TRYAGAIN for
         * this; so do we. */
        t->rc->stats.tryagain++;
        note(t->rc, tt->rt,
             "redis %s: transaction on slot %d: %s: %s while the guard key is still here: "
             "the slot's keys are split by a migration (TRYAGAIN)",
             tt->nd->addr, t->slot, what, r->str);
        return TXN_RETRY_BACKOFF;
    }
    reply_kind kind = classify(t->rc, tt->nd, r, &tt->ask);
    if (kind == REPLY_MOVED || kind == REPLY_ASK) {
        rc_log(t->rc, "redis %s: transaction on slot %d: %s: %s (not applied, retrying it whole)",
               tt->nd->addr, t->slot, what, r->str);
        tt->refresh = kind == REPLY_MOVED;
        return TXN_RETRY;
    }
    if (kind == REPLY_BACKOFF) {
        note(t->rc, tt->rt, "redis %s: transaction not applied: %s: %s", tt->nd->addr, what,
             r->str);
        tt->refresh = err_is(r, "CLUSTERDOWN");
        return TXN_RETRY_BACKOFF;
    }
    ul_set_err(tt->msg, sizeof(tt->msg), "redis %s: transaction not applied: %s: %s", tt->nd->addr,
               what, r->str);
    tt->code = RCLUSTER_ERR_REPLY;
    return TXN_FAIL;
}

/* The connection broke: before EXEC was fully written nothing can have been
 * applied (the server drops a client's open MULTI); after, it is unknown. */
static txn_step txn_lost(rcluster_txn *t, txn_try *tt, const char *why) {
    char msg[UL_ERRSTR_SIZE]; /* `why` is often tt->msg itself */
    snprintf(msg, sizeof(msg), "%s", why);
    if (!tt->exec_sent) {
        note(t->rc, tt->rt, "%s (transaction not applied)", msg);
        tt->refresh = 1;
        return TXN_RETRY_BACKOFF;
    }
    ul_set_err(tt->msg, sizeof(tt->msg),
               "%s after EXEC was sent: the transaction may or may not have been applied", msg);
    tt->code = RCLUSTER_ERR_UNKNOWN;
    return TXN_FAIL;
}

/* Guard replies: [ASKING] WATCH, [ASKING] HGET. Returns -1 to proceed with
 * EXEC, else the step (DISCARD will be sent). */
static int txn_read_guard(rcluster_txn *t, txn_try *tt) {
    rcluster *rc = t->rc;
    redisReply *r[4] = {0};
    int n = tt->asking ? 4 : 2, step = -1;
    for (int i = 0; i < n; i++)
        if ((r[i] = node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL) {
            step = txn_lost(t, tt, tt->msg);
            goto done;
        }
    redisReply *watch = r[n / 2 - 1], *val = r[n - 1];
    if (watch->type == REDIS_REPLY_ERROR) {
        step = txn_not_applied(t, tt, watch, "WATCH");
    } else if (val->type == REDIS_REPLY_ERROR) {
        step = txn_not_applied(t, tt, val, "guard HGET");
    } else if (val->type != REDIS_REPLY_STRING && val->type != REDIS_REPLY_NIL) {
        ul_set_err(tt->msg, sizeof(tt->msg), "redis %s: guard HGET: unexpected reply type %d",
                   tt->nd->addr, val->type);
        tt->code = RCLUSTER_ERR_REPLY;
        step = TXN_FAIL;
    } else {
        tt->guard_read = 1;
        int found = val->type == REDIS_REPLY_STRING;
        int same = t->gval ? found && val->len == t->gval_len &&
                                 memcmp(val->str, t->gval, t->gval_len) == 0
                           : !found;
        if (!same) {
            char have[NAME_MAX_CHARS + 8], want[NAME_MAX_CHARS + 8], key[NAME_MAX_CHARS + 8];
            printable(have, sizeof(have), found ? val->str : "", found ? val->len : 0);
            printable(want, sizeof(want), t->gval ? t->gval : "", t->gval ? t->gval_len : 0);
            printable(key, sizeof(key), t->gkey, strlen(t->gkey));
            ul_set_err(tt->msg, sizeof(tt->msg),
                       "redis %s: transaction not applied: %s %s holds %s%s%s, expected %s%s%s",
                       tt->nd->addr, key, t->gfield, found ? "'" : "", found ? have : "nothing",
                       found ? "'" : "", t->gval ? "'" : "", t->gval ? want : "nothing",
                       t->gval ? "'" : "");
            tt->code = RCLUSTER_ERR_GUARD;
            step = TXN_FAIL;
        }
    }
done:
    for (int i = 0; i < n; i++)
        if (r[i])
            freeReplyObject(r[i]);
    return step;
}

/* The applied transaction's results: an error inside is RCLUSTER_ERR_EXEC. */
static txn_step txn_applied(rcluster_txn *t, txn_try *tt, redisReply *exec) {
    t->exec = exec;
    for (size_t i = 0; i < exec->elements; i++) {
        if (exec->element[i]->type != REDIS_REPLY_ERROR)
            continue;
        char name[128];
        cmd_name(name, sizeof(name), t->buf.p + t->offs[i], txn_cmd_len(t, i));
        ul_set_err(tt->msg, sizeof(tt->msg),
                   "redis %s: transaction applied, but command %zu (%s) failed: %s", tt->nd->addr,
                   i + 1, name, exec->element[i]->str);
        tt->code = RCLUSTER_ERR_EXEC;
        return TXN_FAIL;
    }
    return TXN_APPLIED;
}

/* MULTI's reply, the QUEUED replies, then EXEC's (or DISCARD's). */
static txn_step txn_read_body(rcluster_txn *t, txn_try *tt, int discard_step) {
    rcluster *rc = t->rc;
    int first_err = -1;
    redisReply *cause = NULL, *r;
    txn_step step = TXN_FAIL;
    if (tt->asking) {
        if ((r = node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL)
            return txn_lost(t, tt, tt->msg);
        freeReplyObject(r);
    }
    if ((r = node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL)
        return txn_lost(t, tt, tt->msg);
    int multi_ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    for (size_t i = 0; i < t->n; i++) {
        if ((r = node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL) {
            step = txn_lost(t, tt, tt->msg);
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR && cause == NULL) {
            cause = r, first_err = (int)i;
            continue;
        }
        freeReplyObject(r);
    }
    if ((r = node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL) {
        step = txn_lost(t, tt, tt->msg);
        goto out;
    }
    if (discard_step >= 0) {
        freeReplyObject(r);
        step = (txn_step)discard_step;
    } else if (!multi_ok) {
        freeReplyObject(r);
        ul_set_err(tt->msg, sizeof(tt->msg),
                   "redis %s: MULTI was refused: the commands may have run outside a transaction",
                   tt->nd->addr);
        tt->code = RCLUSTER_ERR_UNKNOWN;
    } else if (r->type == REDIS_REPLY_ARRAY) {
        step = txn_applied(t, tt, r);
    } else if (r->type == REDIS_REPLY_NIL) { /* the guard's WATCH fired */
        freeReplyObject(r);
        note(rc, tt->rt, "redis %s: the guard key changed during the transaction (not applied)",
             tt->nd->addr);
        step = TXN_RETRY_BACKOFF;
    } else if (r->type == REDIS_REPLY_ERROR) {
        char what[160] = "EXEC";
        const redisReply *why = r;
        if (err_is(r, "EXECABORT") && cause) {
            char name[128];
            cmd_name(name, sizeof(name), t->buf.p + t->offs[first_err],
                     txn_cmd_len(t, (size_t)first_err));
            snprintf(what, sizeof(what), "command %d (%s)", first_err + 1, name);
            why = cause;
        }
        step = txn_not_applied(t, tt, why, what);
        freeReplyObject(r);
    } else {
        freeReplyObject(r);
        ul_set_err(tt->msg, sizeof(tt->msg), "redis %s: EXEC: unexpected reply type", tt->nd->addr);
        tt->code = RCLUSTER_ERR_UNKNOWN;
    }
out:
    if (cause)
        freeReplyObject(cause);
    return step;
}

/* One attempt on tt->nd: [guard] MULTI cmds EXEC, pipelined. */
static txn_step txn_attempt(rcluster_txn *t, txn_try *tt) {
    rcluster *rc = t->rc;
    rc_node *nd = tt->nd;
    int rc_ = node_ready(rc, nd, tt->msg, sizeof(tt->msg));
    if (rc_ == UL_ERR_IO) {
        note(rc, tt->rt, "%s (transaction not applied)", tt->msg);
        tt->refresh = 1;
        return TXN_RETRY_BACKOFF;
    }
    if (rc_ != UL_OK) {
        tt->code = rc_;
        return TXN_FAIL;
    }
    static const char MULTI[] = "*1\r\n$5\r\nMULTI\r\n", EXEC[] = "*1\r\n$4\r\nEXEC\r\n",
                      DISCARD[] = "*1\r\n$7\r\nDISCARD\r\n";
    /* What goes before the commands: [[ASKING] WATCH [ASKING] HGET] [ASKING] MULTI. */
    const char *watch[2] = {"WATCH", t->gkey}, *hget[3] = {"HGET", t->gkey, t->gfield};
    rc_buf pre = {0};
    size_t alen = sizeof(ASKING_CMD) - 1;
    int bad = 0;
    if (t->guard)
        bad = (tt->asking && buf_put(&pre, ASKING_CMD, alen)) ||
              resp_format(&pre, 2, watch, NULL) ||
              (tt->asking && buf_put(&pre, ASKING_CMD, alen)) || resp_format(&pre, 3, hget, NULL);
    bad = bad || (tt->asking && buf_put(&pre, ASKING_CMD, alen)) ||
          buf_put(&pre, MULTI, sizeof(MULTI) - 1);
    if (bad) {
        free(pre.p);
        ul_set_err(tt->msg, sizeof(tt->msg), "out of memory");
        tt->code = UL_ERR_NOMEM;
        return TXN_FAIL;
    }
    struct iovec v[3] = {
        {pre.p, pre.len}, {t->buf.p, t->buf.len}, {(void *)EXEC, sizeof(EXEC) - 1}};
    int sent = node_sendv(rc, nd, v, t->guard ? 2 : 3, tt->msg, sizeof(tt->msg));
    free(pre.p);
    if (sent != 0)
        return txn_lost(t, tt, tt->msg); /* EXEC not completely written */
    int discard_step = -1;
    if (t->guard) {
        discard_step = txn_read_guard(t, tt);
        if (nd->c == NULL) /* the connection broke while reading */
            return (txn_step)discard_step;
        const char *last = discard_step < 0 ? EXEC : DISCARD;
        struct iovec lv = {(void *)last, strlen(last)};
        if (node_sendv(rc, nd, &lv, 1, tt->msg, sizeof(tt->msg)) != 0)
            return discard_step < 0 ? txn_lost(t, tt, tt->msg) : (txn_step)discard_step;
    }
    tt->exec_sent = discard_step < 0;
    return txn_read_body(t, tt, discard_step);
}

static int txn_exec_retrying(rcluster_txn *t, retry *rt, char *errstr, size_t errstr_size);

int rcluster_txn_exec(rcluster_txn *t, char *errstr, size_t errstr_size) {
    if (t->exec)
        freeReplyObject(t->exec);
    t->exec = NULL;
    t->acked = -1;
    retry rt;
    retry_init(t->rc, &rt);
    int rc_ = txn_exec_retrying(t, &rt, errstr, errstr_size);
    retry_end(&rt);
    return rc_;
}

static int txn_exec_retrying(rcluster_txn *t, retry *rt, char *errstr, size_t errstr_size) {
    rcluster *rc = t->rc;
    rc_node *ask = NULL;
    for (int attempt = 0;; attempt++) {
        txn_try tt = {0};
        tt.rt = rt;
        tt.nd = ask ? ask : rc->slots[t->slot];
        tt.asking = ask != NULL && rc->cluster;
        ask = NULL;
        txn_step step;
        if (attempt > 0)
            rc->stats.txn_retries++;
        if (tt.nd == NULL) {
            note(rc, rt, "slot %d is not served by any node (transaction not applied)", t->slot);
            tt.refresh = 1;
            step = TXN_RETRY_BACKOFF;
        } else {
            t->where = tt.nd;
            step = txn_attempt(t, &tt);
        }
        if (step == TXN_APPLIED) {
            txn_wait_replica(t);
            return UL_OK;
        }
        if (step == TXN_FAIL) {
            ul_set_err(errstr, errstr_size, "%s", tt.msg);
            return tt.code;
        }
        ask = tt.ask;
        if (tt.refresh)
            refresh_quiet(rc);
        if (retry_wait(rt, step == TXN_RETRY_BACKOFF) != 0) {
            ul_set_err(errstr, errstr_size, "%s (gave up after %d ms)",
                       rt->last[0] ? rt->last : "redirections did not settle", rc->retry_ms);
            return UL_ERR_IO;
        }
    }
}

/* ---- whole-cluster helpers ---------------------------------------------- */

/* A keyless command on one node. UL_ERR_IO (connection closed) or
 * RCLUSTER_ERR_REPLY with errstr; else *out. */
static int node_call(rcluster *rc, rc_node *nd, const char *what, redisReply **out, char *errstr,
                     size_t errstr_size, int argc, const char **argv) {
    int rc_ = node_ready(rc, nd, errstr, errstr_size);
    return rc_ != UL_OK ? rc_ : node_simple(rc, nd, what, out, errstr, errstr_size, argc, argv);
}

/* Retry loop shared by the helpers that visit every primary: `visit` runs
 * over the primaries; UL_ERR_IO from it refreshes, waits and starts over. */
typedef int (*visit_fn)(rcluster *rc, rc_node *nd, void *ctx, char *errstr, size_t errstr_size);

static int each_primary_retrying(rcluster *rc, retry *rt, visit_fn visit, void *ctx, char *errstr,
                                 size_t errstr_size);

static int each_primary(rcluster *rc, visit_fn visit, void *ctx, char *errstr, size_t errstr_size) {
    retry rt;
    retry_init(rc, &rt);
    int rc_ = each_primary_retrying(rc, &rt, visit, ctx, errstr, errstr_size);
    retry_end(&rt);
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
        refresh_quiet(rc);
        if (retry_wait(rt, 1) != 0) {
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
