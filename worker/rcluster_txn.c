/* rcluster_txn.c: the cluster client's batched calls (see rcluster.c for the
 * design): classifying a reply (done, MOVED, ASK, retry later), pipelines
 * (rounds grouped by node, resent after redirects) and transactions (one
 * round on one node, with an optional guard and WAIT, retried whole). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "rcluster_int.h"
#include "ul_err.h"

#define CHUNK_CMDS 8192        /* commands in flight per pipeline round */
#define CHUNK_BYTES (8u << 20) /* bytes in flight per pipeline round */

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
        rc_node *to = rc_node_get(rc, host[0] ? host : nd->host, port);
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
int rc_pipe_add(rcluster_pipeline *p, size_t off) {
    const char *key;
    size_t klen;
    if (rc_resp_key(p->buf.p + off, p->buf.len - off, &key, &klen) != 0) {
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
    int rc = rc_buf_append_argv(&p->buf, argc, argv, argvlen, &off);
    return rc == UL_OK ? rc_pipe_add(p, off) : rc;
}

int rcluster_pipeline_append(rcluster_pipeline *p, const char *fmt, ...) {
    size_t off;
    va_list ap;
    va_start(ap, fmt);
    int rc = rc_buf_append_fmt(&p->buf, fmt, ap, &off);
    va_end(ap);
    return rc == UL_OK ? rc_pipe_add(p, off) : rc;
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
    int rc_ = rc_node_ready(rc, nd, msg, sizeof(msg)), n = 0;
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
    if (rc_ == UL_OK && rc_node_sendv(rc, nd, iov, n, msg, sizeof(msg)) != 0)
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
            if ((r = rc_node_read(rc, nd, msg, sizeof(msg))) == NULL)
                goto lost;
            freeReplyObject(r);
        }
        if ((r = rc_node_read(rc, nd, msg, sizeof(msg))) == NULL)
            goto lost;
        reply_kind kind = classify(rc, nd, r, &c->ask);
        if (kind == REPLY_DONE) {
            c->reply = r;
            c->node = nd;
            continue;
        }
        rc_cmd_name(name, sizeof(name), p->buf.p + c->off, c->len);
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
    rc_retry_init(rc, &rt);
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
            rc_refresh_quiet(rc);
        size_t left = 0;
        for (size_t k = 0; k < npend; k++)
            left += p->cmds[pend[k]].reply == NULL;
        if (left == 0) /* all answered: no wait, whatever the budget says */
            break;
        if (rc_retry_wait(&rt, fl.backoff) != 0) {
            ul_set_err(errstr, errstr_size, "%s (gave up after %d ms)",
                       rt.last[0] ? rt.last : "redirections did not settle", rc->retry_ms);
            rc_ = UL_ERR_IO;
            break;
        }
    }
    rc_retry_end(&rt);
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
        rc_cmd_name(name, sizeof(name), p->buf.p + c->off, c->len);
        ul_set_err(errstr, errstr_size, "redis %s: %s: %s", c->node->addr, name, c->reply->str);
        return RCLUSTER_ERR_REPLY;
    }
    return UL_OK;
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
    if (rc_resp_key(t->buf.p + off, t->buf.len - off, &key, &klen) != 0 ||
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
    int rc = rc_buf_append_argv(&t->buf, argc, argv, argvlen, &off);
    return rc == UL_OK ? txn_add(t, off) : rc;
}

int rcluster_txn_append(rcluster_txn *t, const char *fmt, ...) {
    size_t off;
    va_list ap;
    va_start(ap, fmt);
    int rc = rc_buf_append_fmt(&t->buf, fmt, ap, &off);
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
    if (rc_node_simple(rc, nd, "WAIT", &r, msg, sizeof(msg), 3, argv) != UL_OK) {
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
        rc_note(t->rc, tt->rt,
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
        rc_note(t->rc, tt->rt, "redis %s: transaction not applied: %s: %s", tt->nd->addr, what,
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
        rc_note(t->rc, tt->rt, "%s (transaction not applied)", msg);
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
        if ((r[i] = rc_node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL) {
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
            rc_printable(have, sizeof(have), found ? val->str : "", found ? val->len : 0);
            rc_printable(want, sizeof(want), t->gval ? t->gval : "", t->gval ? t->gval_len : 0);
            rc_printable(key, sizeof(key), t->gkey, strlen(t->gkey));
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
        rc_cmd_name(name, sizeof(name), t->buf.p + t->offs[i], txn_cmd_len(t, i));
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
        if ((r = rc_node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL)
            return txn_lost(t, tt, tt->msg);
        freeReplyObject(r);
    }
    if ((r = rc_node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL)
        return txn_lost(t, tt, tt->msg);
    int multi_ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    for (size_t i = 0; i < t->n; i++) {
        if ((r = rc_node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL) {
            step = txn_lost(t, tt, tt->msg);
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR && cause == NULL) {
            cause = r, first_err = (int)i;
            continue;
        }
        freeReplyObject(r);
    }
    if ((r = rc_node_read(rc, tt->nd, tt->msg, sizeof(tt->msg))) == NULL) {
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
        rc_note(rc, tt->rt, "redis %s: the guard key changed during the transaction (not applied)",
                tt->nd->addr);
        step = TXN_RETRY_BACKOFF;
    } else if (r->type == REDIS_REPLY_ERROR) {
        char what[160] = "EXEC";
        const redisReply *why = r;
        if (err_is(r, "EXECABORT") && cause) {
            char name[128];
            rc_cmd_name(name, sizeof(name), t->buf.p + t->offs[first_err],
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
    int rc_ = rc_node_ready(rc, nd, tt->msg, sizeof(tt->msg));
    if (rc_ == UL_ERR_IO) {
        rc_note(rc, tt->rt, "%s (transaction not applied)", tt->msg);
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
        bad = (tt->asking && rc_buf_put(&pre, ASKING_CMD, alen)) ||
              rc_resp_format(&pre, 2, watch, NULL) ||
              (tt->asking && rc_buf_put(&pre, ASKING_CMD, alen)) ||
              rc_resp_format(&pre, 3, hget, NULL);
    bad = bad || (tt->asking && rc_buf_put(&pre, ASKING_CMD, alen)) ||
          rc_buf_put(&pre, MULTI, sizeof(MULTI) - 1);
    if (bad) {
        free(pre.p);
        ul_set_err(tt->msg, sizeof(tt->msg), "out of memory");
        tt->code = UL_ERR_NOMEM;
        return TXN_FAIL;
    }
    struct iovec v[3] = {
        {pre.p, pre.len}, {t->buf.p, t->buf.len}, {(void *)EXEC, sizeof(EXEC) - 1}};
    int sent = rc_node_sendv(rc, nd, v, t->guard ? 2 : 3, tt->msg, sizeof(tt->msg));
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
        if (rc_node_sendv(rc, nd, &lv, 1, tt->msg, sizeof(tt->msg)) != 0)
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
    rc_retry_init(t->rc, &rt);
    int rc_ = txn_exec_retrying(t, &rt, errstr, errstr_size);
    rc_retry_end(&rt);
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
            rc_note(rc, rt, "slot %d is not served by any node (transaction not applied)", t->slot);
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
            rc_refresh_quiet(rc);
        if (rc_retry_wait(rt, step == TXN_RETRY_BACKOFF) != 0) {
            ul_set_err(errstr, errstr_size, "%s (gave up after %d ms)",
                       rt->last[0] ? rt->last : "redirections did not settle", rc->retry_ms);
            return UL_ERR_IO;
        }
    }
}
