/* rcluster_map.c: the cluster client's view of the cluster (see rcluster.c
 * for the design): key slots (CRC16), the parsers (endpoints, seed lists,
 * CLUSTER SLOTS, MOVED/ASK), nodes and their lazily opened connections, and
 * loading and installing the slot map (rcluster_refresh). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include "rcluster_int.h"
#include "ul_err.h"

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

int rc_each_seed(const char *list, seed_fn fn, void *ctx, char *errstr, size_t errstr_size) {
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
    int count = rc_each_seed(list, NULL, NULL, errstr, errstr_size);
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

rc_node *rc_node_get(rcluster *rc, const char *host, int port) {
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
    nd->failed_ms = rc_now_ms();
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
int rc_node_simple(rcluster *rc, rc_node *nd, const char *what, redisReply **out, char *errstr,
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
    int rc_ = rc_node_simple(rc, nd, what, &r, errstr, errstr_size, argc, argv);
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
int rc_node_ready(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size) {
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
        rc_ = rc_node_simple(rc, nd, "SELECT", &r, errstr, errstr_size, 2, argv);
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
int rc_node_sendv(rcluster *rc, rc_node *nd, struct iovec *v, int n, char *errstr,
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

/* Read one reply; NULL (and the connection closed, errstr filled) on failure. */
redisReply *rc_node_read(rcluster *rc, rc_node *nd, char *errstr, size_t errstr_size) {
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
    rc_node *nd = rc_node_get(ctx->rc, host, port);
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
int rc_map_install(rcluster *rc, rc_node **slots) {
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
int rc_map_load_from(rcluster *rc, rc_node *nd, int *standalone, char *errstr, size_t errstr_size) {
    *standalone = 0;
    int rc_ = rc_node_ready(rc, nd, errstr, errstr_size);
    if (rc_ != UL_OK)
        return rc_;
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    redisReply *r = NULL;
    rc_ = rc_node_simple(rc, nd, "CLUSTER SLOTS", &r, errstr, errstr_size, 2, argv);
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
    rc_ = rc_map_install(rc, rc->scratch_slots);
    for (int i = 0; rc_ == UL_OK && i < rc->n_nodes; i++)
        rc->nodes[i]->replicas = rc->nodes[i]->replicas_new;
    if (rc_ == UL_OK && ctx.covered < RCLUSTER_SLOTS)
        rc_log(rc, "redis %s: %d of %d slots are not served by any node", nd->addr,
               RCLUSTER_SLOTS - ctx.covered, RCLUSTER_SLOTS);
    return rc_;
}

void rc_err_append(char *errstr, size_t errstr_size, const char *msg) {
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
            int rc_ = rc_map_load_from(rc, nd, &standalone, msg, sizeof(msg));
            if (rc_ == UL_OK)
                return UL_OK;
            if (rc_ == UL_ERR_NOMEM) {
                ul_set_err(errstr, errstr_size, "out of memory");
                return rc_;
            }
            rc_err_append(errstr, errstr_size, msg);
        }
    }
    return UL_ERR_IO;
}

/* Best-effort refresh inside a retry loop: failures are only logged. */
void rc_refresh_quiet(rcluster *rc) {
    char msg[UL_ERRSTR_SIZE];
    if (rc->cluster && rcluster_refresh(rc, msg, sizeof(msg)) != UL_OK)
        rc_log(rc, "cannot refresh the slot map: %s", msg);
}
