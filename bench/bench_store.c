/* bench_store.c: what a checkpoint's history write costs Redis, appended by
 * the store's Lua script (EVAL in the transaction: the new entries only) or
 * rewritten whole (HSET of the full value), by the length of the history
 * already stored. For each length L: U users with L stored entries of 20
 * bytes get one more entry, written both ways in rounds of 512 users per
 * command (as the checkpoint batches them); printed per user: the bytes sent
 * to Redis, the bytes Redis writes to its append-only file (what replicas
 * receive too: a script's effects are propagated as the HSETs it made,
 * with the whole new value; AOF switched on for the run), and Redis's CPU
 * time (INFO cpu, user + sys of the server process: parsing and I/O
 * included), medians of R rounds. The store rewrites
 * histories shorter than STORE_HIST_REWRITE_BELOW entries (store.h); this
 * benchmark is where that number comes from. Starts its own redis-server
 * (redis_local). Prints figures; asserts nothing.
 *
 *   bench_store [--users U] [--rounds R] */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_local.h"
#include "store.h"
#include "ul_err.h"

#define ENTRY 20
#define PER_CMD 512

static redisReply *cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "bench_store: %s\n", r ? r->str : c->errstr);
        exit(1);
    }
    return r;
}

/* A field of INFO's text ("usec=123" style or "name:value"), as a double. */
static double info_num(redisContext *c, const char *section, const char *key) {
    redisReply *r = cmd(c, "INFO %s", section);
    const char *p = strstr(r->str, key);
    double v = p ? strtod(p + strlen(key), NULL) : 0.0;
    freeReplyObject(r);
    return v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Send one round (every user, PER_CMD per command) of `eval` or HSET of
 * `len` entries; adds the bytes Redis received to *bytes. */
static void round_of(redisContext *c, int eval, int users, int len, unsigned char *val,
                     double *bytes) {
    double in0 = info_num(c, "stats", "total_net_input_bytes:");
    char key[] = "ul:{p0}:hist", cap[24], ids[PER_CMD][24];
    snprintf(cap, sizeof(cap), "%d", 1000 * ENTRY);
    const char *argv[5 + 2 * PER_CMD];
    size_t argl[5 + 2 * PER_CMD];
    int n_cmds = 0;
    for (int from = 0; from < users; from += PER_CMD) {
        int argc = 0;
        if (eval) {
            argv[argc] = "EVAL", argl[argc++] = 4;
            argv[argc] = store_hist_append_lua, argl[argc++] = strlen(store_hist_append_lua);
            argv[argc] = "1", argl[argc++] = 1;
            argv[argc] = key, argl[argc++] = strlen(key);
            argv[argc] = cap, argl[argc++] = strlen(cap);
        } else {
            argv[argc] = "HSET", argl[argc++] = 4;
            argv[argc] = key, argl[argc++] = strlen(key);
        }
        for (int u = from; u < users && u < from + PER_CMD; u++) {
            snprintf(ids[u - from], sizeof(ids[0]), "%d", u);
            argv[argc] = ids[u - from], argl[argc++] = strlen(ids[u - from]);
            argv[argc] = (const char *)val, argl[argc++] = (size_t)(eval ? ENTRY : len * ENTRY);
        }
        redisAppendCommandArgv(c, argc, argv, argl);
        n_cmds++;
    }
    for (int i = 0; i < n_cmds; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "bench_store: %s\n", r ? r->str : c->errstr);
            exit(1);
        }
        freeReplyObject(r);
    }
    *bytes += info_num(c, "stats", "total_net_input_bytes:") - in0;
}

/* The server's CPU time so far, in microseconds. */
static double cpu_usec(redisContext *c) {
    return 1e6 * (info_num(c, "cpu", "used_cpu_user:") + info_num(c, "cpu", "used_cpu_sys:"));
}

static double aof_size(redisContext *c) {
    return info_num(c, "persistence", "aof_current_size:");
}

int main(int argc, char **argv) {
    int users = 20000, rounds = 9;
    for (int a = 1; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "--users") == 0)
            users = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "--rounds") == 0)
            rounds = atoi(argv[a + 1]);
    }
    char err[UL_ERRSTR_SIZE];
    redis_local *rl = redis_local_start(NULL, 10000, err, sizeof(err));
    if (rl == NULL) {
        fprintf(stderr, "bench_store: %s\n", err);
        return 1;
    }
    redisContext *c = redisConnect("127.0.0.1", redis_local_port(rl));
    freeReplyObject(cmd(c, "AUTH %s", redis_local_password(rl)));
    freeReplyObject(cmd(c, "CONFIG SET appendonly yes"));
    freeReplyObject(cmd(c, "CONFIG SET appendfsync no"));
    freeReplyObject(cmd(c, "CONFIG SET auto-aof-rewrite-percentage 0"));
    static const int lens[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    unsigned char *val = calloc(300, ENTRY);
    printf("history write per user, %d users, %d rounds (median), one new entry each:\n", users,
           rounds);
    printf("%8s | %12s %12s | %12s %12s | %11s %11s\n", "stored", "append in", "rewrite in",
           "append aof", "rewrite aof", "append us", "rewrite us");
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        int len = lens[li];
        double ue[64], uh[64], be = 0, bh = 0, re = 0, rh = 0;
        for (int rep = 0; rep < rounds && rep < 64; rep++) {
            freeReplyObject(cmd(c, "DEL ul:{p0}:hist"));
            for (int u = 0; u < users; u++) /* the stored histories */
                redisAppendCommand(c, "HSET ul:{p0}:hist %d %b", u, val, (size_t)len * ENTRY);
            for (int u = 0; u < users; u++) {
                redisReply *r = NULL;
                redisGetReply(c, (void **)&r);
                freeReplyObject(r);
            }
            double t0 = cpu_usec(c), o0 = aof_size(c);
            round_of(c, 1, users, len, val, &be);
            ue[rep] = (cpu_usec(c) - t0) / users;
            re += aof_size(c) - o0;
            t0 = cpu_usec(c); /* overwrites the L + 1 entries just appended */
            o0 = aof_size(c);
            round_of(c, 0, users, len + 1, val, &bh);
            uh[rep] = (cpu_usec(c) - t0) / users;
            rh += aof_size(c) - o0;
        }
        qsort(ue, (size_t)rounds, sizeof(double), cmp_double);
        qsort(uh, (size_t)rounds, sizeof(double), cmp_double);
        printf("%8d | %12.1f %12.1f | %12.1f %12.1f | %11.2f %11.2f\n", len, be / rounds / users,
               bh / rounds / users, re / rounds / users, rh / rounds / users, ue[rounds / 2],
               uh[rounds / 2]);
    }
    printf("(the store rewrites histories below %d stored entries: STORE_HIST_REWRITE_BELOW)\n",
           STORE_HIST_REWRITE_BELOW);
    redisFree(c);
    redis_local_stop(rl);
    free(val);
    return 0;
}
