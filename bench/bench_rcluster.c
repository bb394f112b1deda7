/* bench_rcluster.c: pipelined HSET throughput through worker/rcluster (the
 * store's write pattern: HSET of 512 field/value pairs per command, keys
 * tagged by partition). Prints figures; asserts nothing about time. Run it
 * against a cluster and a plain Redis with bench/bench_rcluster.sh.
 *
 *   bench_rcluster --seeds H:P,... [--raw | --fresh] [--commands N] [--pairs P]
 *                  [--value-bytes B] [--partitions T] [--runs R]
 *
 *   default: 200 commands x 512 pairs x 260-byte values (a k=64 user row)
 *   over 64 partitions ("bh:{p<i>}:users"), 5 timed runs after one warm-up;
 *   each run appends every command to one reused pipeline and executes it
 *   (what a store call pays); --fresh makes a new pipeline per run (a fresh
 *   arena, as a caller that does not keep its pipeline pays). --raw times plain hiredis
 * (redisAppendCommandArgv, then one redisGetReply per command) on the first seed: the baseline of
 * what the client adds. Every reply is checked (integer, no error), so a fast wrong run shows as a
 * failure (exit 1). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "rcluster.h"
#include "ul_err.h"

typedef struct bench {
    const char *seeds;
    int raw, fresh, commands, pairs, value_bytes, partitions, runs;
    char *value;
    char (*fields)[16];
} bench;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* argv of command i: HSET bh:{p<i mod T>}:users f<j> value ... */
static int build_argv(const bench *b, int i, const char **argv, size_t *lens, char *key,
                      size_t key_size) {
    int n = 0;
    argv[n] = "HSET", lens[n++] = 4;
    lens[n] = (size_t)snprintf(key, key_size, "bh:{p%d}:users", i % b->partitions);
    argv[n++] = key;
    for (int j = 0; j < b->pairs; j++) {
        int f = (i / b->partitions) * b->pairs + j; /* distinct fields per key */
        argv[n] = b->fields[f % (b->commands * b->pairs)];
        lens[n] = strlen(argv[n]);
        n++;
        argv[n] = b->value, lens[n++] = (size_t)b->value_bytes;
    }
    return n;
}

static int reply_ok(const redisReply *r) {
    return r && r->type == REDIS_REPLY_INTEGER;
}

/* One run through `p` (reset first: a caller keeping its pipeline reuses the arena). */
static double run_rcluster(const bench *b, rcluster_pipeline *p, const char **argv, size_t *lens) {
    char err[UL_ERRSTR_SIZE], key[64];
    double t = now_s();
    rcluster_pipeline_reset(p);
    for (int i = 0; i < b->commands; i++) {
        int argc = build_argv(b, i, argv, lens, key, sizeof(key));
        if (p == NULL || rcluster_pipeline_append_argv(p, argc, argv, lens) != UL_OK) {
            fprintf(stderr, "bench_rcluster: out of memory\n");
            exit(1);
        }
    }
    if (rcluster_pipeline_exec(p, err, sizeof(err)) != UL_OK) {
        fprintf(stderr, "bench_rcluster: %s\n", err);
        exit(1);
    }
    t = now_s() - t;
    for (int i = 0; i < b->commands; i++)
        if (!reply_ok(rcluster_pipeline_reply(p, (size_t)i))) {
            fprintf(stderr, "bench_rcluster: command %d: unexpected reply\n", i);
            exit(1);
        }
    return t;
}

static double run_raw(const bench *b, redisContext *c, const char **argv, size_t *lens) {
    char key[64];
    double t = now_s();
    for (int i = 0; i < b->commands; i++) {
        int argc = build_argv(b, i, argv, lens, key, sizeof(key));
        if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
            fprintf(stderr, "bench_rcluster: raw append failed\n");
            exit(1);
        }
    }
    for (int i = 0; i < b->commands; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !reply_ok(r)) {
            fprintf(stderr, "bench_rcluster: raw command %d failed: %s\n", i,
                    r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
            exit(1);
        }
        freeReplyObject(r);
    }
    return now_s() - t;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse(bench *b, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(k, "--raw") == 0 || strcmp(k, "--fresh") == 0) {
            *(k[2] == 'r' ? &b->raw : &b->fresh) = 1;
            continue;
        }
        if (v == NULL)
            return -1;
        i++;
        if (strcmp(k, "--seeds") == 0)
            b->seeds = v;
        else if (strcmp(k, "--commands") == 0)
            b->commands = atoi(v);
        else if (strcmp(k, "--pairs") == 0)
            b->pairs = atoi(v);
        else if (strcmp(k, "--value-bytes") == 0)
            b->value_bytes = atoi(v);
        else if (strcmp(k, "--partitions") == 0)
            b->partitions = atoi(v);
        else if (strcmp(k, "--runs") == 0)
            b->runs = atoi(v);
        else
            return -1;
    }
    return b->seeds && b->commands > 0 && b->pairs > 0 && b->value_bytes > 0 && b->partitions > 0 &&
                   b->runs > 0 && b->runs <= 100
               ? 0
               : -1;
}

int main(int argc, char **argv) {
    bench b = {NULL, 0, 0, 200, 512, 260, 64, 5, NULL, NULL};
    signal(SIGPIPE, SIG_IGN); /* as the CLI does: a dead node is an error, not a signal */
    if (parse(&b, argc, argv) != 0) {
        fprintf(stderr, "usage: bench_rcluster --seeds H:P,... [--raw | --fresh] [--commands N] "
                        "[--pairs P] "
                        "[--value-bytes B] [--partitions T] [--runs R]\n");
        return 2;
    }
    b.value = malloc((size_t)b.value_bytes);
    b.fields = malloc((size_t)b.commands * (size_t)b.pairs * sizeof(*b.fields));
    const char **av = malloc((size_t)(2 + 2 * b.pairs) * sizeof(*av));
    size_t *lens = malloc((size_t)(2 + 2 * b.pairs) * sizeof(*lens));
    if (!b.value || !b.fields || !av || !lens)
        return 1;
    for (int i = 0; i < b.value_bytes; i++)
        b.value[i] = (char)('a' + i % 26);
    for (int i = 0; i < b.commands * b.pairs; i++)
        snprintf(b.fields[i], sizeof(b.fields[i]), "%d", i);
    char err[UL_ERRSTR_SIZE];
    rcluster_opts o;
    rcluster_opts_init(&o);
    o.seeds = b.seeds;
    rcluster *rc = rcluster_connect(&o, err, sizeof(err));
    if (rc == NULL) {
        fprintf(stderr, "bench_rcluster: %s\n", err);
        return 1;
    }
    redisContext *c = NULL;
    if (b.raw) {
        char host[256];
        int port;
        const char *comma = strchr(b.seeds, ',');
        size_t len = comma ? (size_t)(comma - b.seeds) : strlen(b.seeds);
        if (rcluster_endpoint_parse(b.seeds, len, host, sizeof(host), &port) != 0 ||
            (c = redisConnect(host, port)) == NULL || c->err) {
            fprintf(stderr, "bench_rcluster: cannot connect to %.*s\n", (int)len, b.seeds);
            return 1;
        }
    }
    double t[101];
    rcluster_pipeline *p = rcluster_pipeline_new(rc);
    for (int r = 0; r <= b.runs; r++) { /* run 0 warms up (creates the fields) */
        if (b.fresh && r > 0) {         /* a new pipeline (and arena) per run */
            rcluster_pipeline_destroy(p);
            p = rcluster_pipeline_new(rc);
        }
        t[r] = b.raw ? run_raw(&b, c, av, lens) : run_rcluster(&b, p, av, lens);
    }
    rcluster_pipeline_destroy(p);
    qsort(t + 1, (size_t)b.runs, sizeof(t[0]), cmp_double);
    double med = t[1 + b.runs / 2];
    double fields = (double)b.commands * b.pairs;
    double mb = fields * (b.value_bytes + 6) / 1e6;
    printf("%-8s %-10s primaries=%d commands=%d pairs=%d value=%dB runs=%d median=%.3fs "
           "min=%.3fs max=%.3fs  %.0f HSET/s  %.0f fields/s  %.1f MB/s\n",
           b.raw     ? "hiredis"
           : b.fresh ? "rc-fresh"
                     : "rcluster",
           rcluster_is_cluster(rc) ? "cluster" : "plain", rcluster_primary_count(rc), b.commands,
           b.pairs, b.value_bytes, b.runs, med, t[1], t[b.runs], b.commands / med, fields / med,
           mb / med);
    if (c)
        redisFree(c);
    rcluster_destroy(rc);
    free(b.value), free(b.fields), free(av), free(lens);
    return 0;
}
