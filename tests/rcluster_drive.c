/* rcluster_drive.c: a command-line driver of worker/rcluster for the
 * integration tests (tests/integration/test_redis_cluster.sh) and the cluster
 * harness's users: it runs workloads through the client and checks what
 * Redis holds afterwards. Not installed; not part of the `unlearnd` CLI.
 *
 *   rcluster_drive [options] COMMAND [args]
 *     connect              connect and print the mode and the primaries
 *     ping                 PING every primary
 *     keyslots N           print N keys (some with hash tags) and their slots
 *     fill VALUE           SET one key per slot (16384 keys, pipelined) to VALUE
 *     check VALUE          GET them back; exit 1 on any mismatch (prints the counters)
 *     clear PATTERN        delete the keys matching PATTERN on every primary
 *     hscan N              write hash hs:{h} with N fields, then HSCAN it; the first
 *                          page's callback writes round=1 to --status-file and waits for
 *                          --wait-file (a test moves the key meanwhile); exit 1 unless
 *                          exactly N distinct fields were seen at the end
 *     workload             rounds of: SET every slot's key to the round number,
 *                          GET them back, one guarded transaction per hash tag;
 *                          until --rounds, --stop-file or --max-seconds; then
 *                          checks every tag's transactions are whole (see below)
 *   options:
 *     --seeds H:P,...      (required)    --mode auto|cluster|standalone
 *     --user U             --password P  (or RCLUSTER_PASSWORD in the environment)
 *     --retry-ms N         --timeout-ms N  (the client's budgets)
 *     --wait-file F        after connecting, wait until F exists (a test rearranges the
 *                          cluster behind the client's back meanwhile)
 *     --status-file F      workload: rewrite F after each round (key=value counters)
 *     --stop-file F        workload: stop after the round in which F appears
 *     --rounds N --max-seconds N --tags N --strict
 *     --show-slot S        print the primary of slot S in the map loaded at connect
 *     --slot S             fill/check: only slot S's key
 *
 * Workload transactions: tag i owns rd:{t<i>}:meta (field seq) and
 * rd:{t<i>}:data. Each transaction is guarded by "seq holds what we last
 * wrote" and sets seq+1 and data field seq+1 together. A guard mismatch
 * (a failover lost an acknowledged transaction) or an unknown outcome makes
 * the driver re-read seq, as the worker would reload. At the end every
 * tag must hold seq == what the driver believes and exactly seq data
 * fields: no transaction half applied, none lost without notice. Writes
 * lost to a failover (an acknowledged SET missing on the promoted replica)
 * are counted; with --strict they fail the run, and so does anything
 * unavailable for the whole retry budget (a graceful failover or a
 * migration must not stall the client). */
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "rcluster.h"
#include "ul_err.h"

#define MAX_TAGS 256

typedef struct drive {
    rcluster_opts o;
    const char *wait_file, *status_file, *stop_file;
    long rounds, max_seconds;
    int tags, strict, show_slot;
    int first_slot, last_slot; /* fill/check: the slots whose keys are used */
    rcluster *rc;
    char slot_key[RCLUSTER_SLOTS][24]; /* one key per slot */
    /* workload counters */
    long round, txn_ok, txn_unavailable, guard_reloads, unknown, lost_writes, rounds_unavailable;
    long seq[MAX_TAGS];
} drive;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double t0;

static void log_line(void *ctx, const char *msg) {
    (void)ctx;
    fprintf(stderr, "[%8.3f] rcluster: %s\n", now_s() - t0, msg);
}

static int die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "rcluster_drive: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static int exists(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0;
}

/* The first key "ks:<n>" of every slot. */
static void make_slot_keys(drive *d) {
    int left = RCLUSTER_SLOTS;
    for (long n = 0; left > 0; n++) {
        char key[24];
        int len = snprintf(key, sizeof(key), "ks:%ld", n);
        int s = rcluster_key_slot(key, (size_t)len);
        if (d->slot_key[s][0] == '\0') {
            memcpy(d->slot_key[s], key, (size_t)len + 1);
            left--;
        }
    }
}

static void print_stats(const drive *d, FILE *f) {
    rcluster_stats st;
    rcluster_stats_get(d->rc, &st);
    fprintf(f,
            "round=%ld txn_ok=%ld txn_unavailable=%ld guard_reloads=%ld unknown=%ld "
            "lost_writes=%ld rounds_unavailable=%ld moved=%llu ask=%llu tryagain=%llu "
            "clusterdown=%llu node_errors=%llu refreshes=%llu txn_retries=%llu\n",
            d->round, d->txn_ok, d->txn_unavailable, d->guard_reloads, d->unknown, d->lost_writes,
            d->rounds_unavailable, (unsigned long long)st.moved, (unsigned long long)st.ask,
            (unsigned long long)st.tryagain, (unsigned long long)st.clusterdown,
            (unsigned long long)st.node_errors, (unsigned long long)st.refreshes,
            (unsigned long long)st.txn_retries);
}

static void write_status(const drive *d) {
    if (d->status_file == NULL)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", d->status_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return;
    print_stats(d, f);
    fclose(f);
    rename(tmp, d->status_file);
}

/* ---- fill / check ------------------------------------------------------- */

static int cmd_fill(drive *d, const char *value) {
    char err[UL_ERRSTR_SIZE];
    rcluster_pipeline *p = rcluster_pipeline_new(d->rc);
    for (int s = d->first_slot; s <= d->last_slot; s++)
        rcluster_pipeline_append(p, "SET %s %s", d->slot_key[s], value);
    int rc = rcluster_pipeline_exec(p, err, sizeof(err));
    rcluster_pipeline_destroy(p);
    if (rc != UL_OK)
        return die("fill: %s", err);
    printf("filled %d keys\n", d->last_slot - d->first_slot + 1);
    return 0;
}

/* GET every slot key; mismatches counted (and printed, up to 5). */
static int get_all(drive *d, const char *value, long *bad, const char **where_before, long *lost,
                   char *err, size_t err_size) {
    rcluster_pipeline *p = rcluster_pipeline_new(d->rc);
    for (int s = d->first_slot; s <= d->last_slot; s++)
        rcluster_pipeline_append(p, "GET %s", d->slot_key[s]);
    int rc = rcluster_pipeline_exec(p, err, err_size);
    *bad = 0;
    for (int s = d->first_slot; s <= d->last_slot && rc == UL_OK; s++) {
        const redisReply *r = rcluster_pipeline_reply(p, (size_t)(s - d->first_slot));
        if (r->type == REDIS_REPLY_STRING && strcmp(r->str, value) == 0)
            continue;
        /* Lost with a failover: the slot's primary changed since the write. */
        if (where_before && where_before[s] != rcluster_slot_where(d->rc, s) && !d->strict) {
            (*lost)++;
            continue;
        }
        if ((*bad)++ < 5)
            fprintf(stderr, "slot %d key %s (on %s): got %s, expected %s\n", s, d->slot_key[s],
                    rcluster_slot_where(d->rc, s), r->type == REDIS_REPLY_STRING ? r->str : "nil",
                    value);
    }
    rcluster_pipeline_destroy(p);
    return rc;
}

static int cmd_check(drive *d, const char *value) {
    char err[UL_ERRSTR_SIZE];
    long bad = 0;
    if (get_all(d, value, &bad, NULL, NULL, err, sizeof(err)) != UL_OK)
        return die("check: %s", err);
    if (bad)
        return die("check: %ld of %d keys differ", bad, d->last_slot - d->first_slot + 1);
    printf("checked %d keys\n", d->last_slot - d->first_slot + 1);
    print_stats(d, stdout);
    return 0;
}

/* ---- workload ----------------------------------------------------------- */

static void tag_key(char *buf, size_t size, int tag, const char *what) {
    snprintf(buf, size, "rd:{t%d}:%s", tag, what);
}

/* seq of a tag as stored (0 when absent); -1 with err on failure. */
static long read_seq(drive *d, int tag, char *err, size_t err_size) {
    char key[64];
    tag_key(key, sizeof(key), tag, "meta");
    redisReply *r = NULL;
    if (rcluster_command(d->rc, &r, err, err_size, "HGET %s seq", key) != UL_OK)
        return -1;
    long v = r->type == REDIS_REPLY_STRING ? atol(r->str) : 0;
    freeReplyObject(r);
    return v;
}

/* One guarded transaction for `tag`. Returns 0, or 1 on a failure that
 * ends the run. */
static int tag_txn(drive *d, int tag) {
    char meta[64], data[64], err[UL_ERRSTR_SIZE], want[24], next[24];
    tag_key(meta, sizeof(meta), tag, "meta");
    tag_key(data, sizeof(data), tag, "data");
    rcluster_txn *t = rcluster_txn_new(d->rc, meta, strlen(meta));
    int n = snprintf(want, sizeof(want), "%ld", d->seq[tag]);
    snprintf(next, sizeof(next), "%ld", d->seq[tag] + 1);
    rcluster_txn_guard(t, meta, "seq", d->seq[tag] ? want : NULL, (size_t)n);
    rcluster_txn_append(t, "HSET %s seq %s", meta, next);
    rcluster_txn_append(t, "HSET %s %s %ld", data, next, d->round);
    int rc = rcluster_txn_exec(t, err, sizeof(err));
    rcluster_txn_destroy(t);
    switch (rc) {
    case UL_OK:
        d->seq[tag]++;
        d->txn_ok++;
        return 0;
    case UL_ERR_IO: /* not applied; the next round tries again */
        fprintf(stderr, "tag %d: %s\n", tag, err);
        d->txn_unavailable++;
        return d->strict ? die("tag %d: unavailable in a --strict run", tag) : 0;
    case RCLUSTER_ERR_GUARD:
    case RCLUSTER_ERR_UNKNOWN: {
        fprintf(stderr, "tag %d: %s: reloading\n", tag, err);
        long v = read_seq(d, tag, err, sizeof(err));
        if (v < 0)
            return die("tag %d: reload: %s", tag, err);
        *(rc == RCLUSTER_ERR_GUARD ? &d->guard_reloads : &d->unknown) += 1;
        d->seq[tag] = v;
        return d->strict ? die("tag %d: %s in a --strict run", tag, rcluster_err_name(rc)) : 0;
    }
    default:
        return die("tag %d: %s", tag, err);
    }
}

static int workload_round(drive *d, const char **where) {
    char err[UL_ERRSTR_SIZE], value[24];
    snprintf(value, sizeof(value), "%ld", d->round);
    rcluster_pipeline *p = rcluster_pipeline_new(d->rc);
    for (int s = 0; s < RCLUSTER_SLOTS; s++)
        rcluster_pipeline_append(p, "SET %s %s", d->slot_key[s], value);
    int rc = rcluster_pipeline_exec(p, err, sizeof(err));
    rcluster_pipeline_destroy(p);
    if (rc == UL_OK) {
        for (int s = 0; s < RCLUSTER_SLOTS; s++)
            where[s] = rcluster_slot_where(d->rc, s);
        long bad = 0;
        rc = get_all(d, value, &bad, where, &d->lost_writes, err, sizeof(err));
        if (rc == UL_OK && bad)
            return die("round %ld: %ld keys read back wrong", d->round, bad);
    }
    if (rc == UL_ERR_IO) {
        fprintf(stderr, "round %ld: %s\n", d->round, err);
        d->rounds_unavailable++;
        if (d->strict)
            return die("round %ld: unavailable in a --strict run", d->round);
    } else if (rc != UL_OK) {
        return die("round %ld: %s", d->round, err);
    }
    for (int tag = 0; tag < d->tags; tag++)
        if (tag_txn(d, tag) != 0)
            return 1;
    return 0;
}

/* Every tag: seq as the driver believes, exactly seq data fields. */
static int workload_verify(drive *d) {
    char err[UL_ERRSTR_SIZE], data[64];
    int bad = 0;
    for (int tag = 0; tag < d->tags; tag++) {
        long v = read_seq(d, tag, err, sizeof(err));
        tag_key(data, sizeof(data), tag, "data");
        redisReply *r = NULL;
        if (v < 0 || rcluster_command(d->rc, &r, err, sizeof(err), "HLEN %s", data) != UL_OK)
            return die("verify: %s", err);
        long fields = r->integer;
        freeReplyObject(r);
        if (v != d->seq[tag] || fields != v) {
            fprintf(stderr, "tag %d: seq %ld, expected %ld, %ld data fields\n", tag, v, d->seq[tag],
                    fields);
            bad = 1;
        }
    }
    return bad ? die("verify: transactions not whole") : 0;
}

static int cmd_workload(drive *d) {
    char err[UL_ERRSTR_SIZE];
    for (int tag = 0; tag < d->tags; tag++)
        if ((d->seq[tag] = read_seq(d, tag, err, sizeof(err))) < 0)
            return die("start: %s", err);
    const char **where = calloc(RCLUSTER_SLOTS, sizeof(*where));
    double end = now_s() + (double)d->max_seconds;
    int rc = 0;
    for (d->round = 1; rc == 0; d->round++) {
        rc = workload_round(d, where);
        write_status(d);
        if ((d->rounds && d->round >= d->rounds) || exists(d->stop_file) || now_s() > end)
            break;
    }
    free(where);
    if (rc == 0)
        rc = workload_verify(d);
    print_stats(d, stdout);
    return rc;
}

/* ---- hscan ------------------------------------------------------------- */

typedef struct scan_state {
    drive *d;
    long seen, restarts;
    int paused;
} scan_state;

static void wait_for_file(const char *path) {
    struct timespec pause = {0, 50 * 1000000L};
    while (path && !exists(path))
        nanosleep(&pause, NULL);
}

static int scan_field(void *ctx, const char *field, size_t flen, const char *val, size_t vlen,
                      char *errstr, size_t errstr_size) {
    (void)field, (void)flen, (void)val, (void)vlen, (void)errstr, (void)errstr_size;
    scan_state *ss = ctx;
    ss->seen++;
    if (!ss->paused) { /* the first page: let the test move the key now */
        ss->paused = 1;
        ss->d->round = 1;
        write_status(ss->d);
        wait_for_file(ss->d->wait_file);
    }
    return UL_OK;
}

/* The scan starts over on another node: what we counted is void. */
static int scan_restart(void *ctx, char *errstr, size_t errstr_size) {
    (void)errstr, (void)errstr_size;
    scan_state *ss = ctx;
    ss->seen = 0;
    ss->restarts++;
    return UL_OK;
}

static int cmd_hscan(drive *d, long n) {
    char err[UL_ERRSTR_SIZE];
    rcluster_pipeline *p = rcluster_pipeline_new(d->rc);
    for (long i = 0; i < n; i++)
        rcluster_pipeline_append(p, "HSET hs:{h} f%ld v%ld", i, i);
    int rc = rcluster_pipeline_exec(p, err, sizeof(err));
    rcluster_pipeline_destroy(p);
    if (rc != UL_OK)
        return die("hscan: write: %s", err);
    scan_state ss = {d, 0, 0, 0};
    if (rcluster_hscan(d->rc, "hs:{h}", scan_field, scan_restart, &ss, err, sizeof(err)) != UL_OK)
        return die("hscan: %s", err);
    printf("fields=%ld restarts=%ld\n", ss.seen, ss.restarts);
    return ss.seen == n ? 0 : die("hscan: saw %ld fields, the hash has %ld", ss.seen, n);
}

/* ---- small commands ----------------------------------------------------- */

static int cmd_connect(drive *d) {
    int covered = 0;
    for (int s = 0; s < RCLUSTER_SLOTS; s++)
        covered += rcluster_slot_where(d->rc, s)[0] != '\0';
    printf("mode=%s primaries=%d covered=%d\n", rcluster_is_cluster(d->rc) ? "cluster" : "plain",
           rcluster_primary_count(d->rc), covered);
    for (int i = 0; i < rcluster_primary_count(d->rc); i++)
        printf("primary %s\n", rcluster_primary_where(d->rc, i));
    return 0;
}

static int cmd_keyslots(long n) {
    for (long i = 0; i < n; i++) {
        char key[64];
        switch (i % 4) {
        case 0:
            snprintf(key, sizeof(key), "key:%ld", i * 7919);
            break;
        case 1:
            snprintf(key, sizeof(key), "ul:{p%ld}:users", i);
            break;
        case 2:
            snprintf(key, sizeof(key), "a{}b%ld{c}", i);
            break;
        default:
            snprintf(key, sizeof(key), "x{{t%ld}}y", i);
        }
        printf("%s %d\n", key, rcluster_key_slot(key, strlen(key)));
    }
    return 0;
}

static int cmd_simple(drive *d, const char *cmd, const char *arg) {
    char err[UL_ERRSTR_SIZE];
    if (strcmp(cmd, "ping") == 0) {
        if (rcluster_ping_all(d->rc, err, sizeof(err)) != UL_OK)
            return die("ping: %s", err);
        printf("pinged %d primaries\n", rcluster_primary_count(d->rc));
        return 0;
    }
    size_t n = 0;
    if (rcluster_del_matching(d->rc, arg, &n, err, sizeof(err)) != UL_OK)
        return die("clear: %s", err);
    printf("deleted %zu keys\n", n);
    return 0;
}

/* ---- main --------------------------------------------------------------- */

static int usage(void) {
    fprintf(stderr, "usage: rcluster_drive --seeds H:P,... [options] "
                    "connect|ping|keyslots N|fill V|check V|clear PATTERN|workload|hscan N\n"
                    "(options are described at the top of tests/rcluster_drive.c)\n");
    return 2;
}

static int parse_opts(drive *d, int argc, char **argv, int *next) {
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *k = argv[i] + 2, *v = argv[i + 1];
        if (strcmp(k, "strict") == 0) {
            d->strict = 1;
            i--;
        } else if (strcmp(k, "seeds") == 0)
            d->o.seeds = v;
        else if (strcmp(k, "user") == 0)
            d->o.user = v;
        else if (strcmp(k, "password") == 0)
            d->o.password = v;
        else if (strcmp(k, "retry-ms") == 0)
            d->o.retry_ms = atoi(v);
        else if (strcmp(k, "timeout-ms") == 0)
            d->o.timeout_ms = atoi(v);
        else if (strcmp(k, "mode") == 0)
            d->o.mode = strcmp(v, "cluster") == 0      ? RCLUSTER_CLUSTER
                        : strcmp(v, "standalone") == 0 ? RCLUSTER_STANDALONE
                                                       : RCLUSTER_AUTO;
        else if (strcmp(k, "wait-file") == 0)
            d->wait_file = v;
        else if (strcmp(k, "status-file") == 0)
            d->status_file = v;
        else if (strcmp(k, "stop-file") == 0)
            d->stop_file = v;
        else if (strcmp(k, "rounds") == 0)
            d->rounds = atol(v);
        else if (strcmp(k, "max-seconds") == 0)
            d->max_seconds = atol(v);
        else if (strcmp(k, "tags") == 0)
            d->tags = atoi(v);
        else if (strcmp(k, "show-slot") == 0)
            d->show_slot = atoi(v);
        else if (strcmp(k, "slot") == 0)
            d->first_slot = d->last_slot = atoi(v);
        else
            return -1;
    }
    *next = i;
    int needs_seeds = i < argc && strcmp(argv[i], "keyslots") != 0;
    int slots_ok = d->first_slot >= 0 && d->last_slot < RCLUSTER_SLOTS;
    return (d->o.seeds || !needs_seeds) && slots_ok && d->tags >= 0 && d->tags <= MAX_TAGS &&
                   i < argc
               ? 0
               : -1;
}

int main(int argc, char **argv) {
    static drive d;
    t0 = now_s();
    signal(SIGPIPE, SIG_IGN); /* as the CLI does: a dead node is an error, not a signal */
    setvbuf(stderr, NULL, _IOLBF, 0);
    rcluster_opts_init(&d.o);
    d.o.password = getenv("RCLUSTER_PASSWORD");
    d.o.log_fn = log_line;
    d.tags = 16;
    d.max_seconds = 120;
    d.show_slot = -1;
    d.last_slot = RCLUSTER_SLOTS - 1;
    int i;
    if (parse_opts(&d, argc, argv, &i) != 0)
        return usage();
    const char *cmd = argv[i], *arg = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(cmd, "keyslots") == 0)
        return arg ? cmd_keyslots(atol(arg)) : usage();
    char err[UL_ERRSTR_SIZE];
    if ((d.rc = rcluster_connect(&d.o, err, sizeof(err))) == NULL)
        return die("%s", err);
    if (d.show_slot >= 0)
        fprintf(stderr, "slot %d is on %s\n", d.show_slot, rcluster_slot_where(d.rc, d.show_slot));
    if (d.status_file)
        write_status(&d);
    if (strcmp(cmd, "hscan") != 0) /* hscan waits inside the scan */
        wait_for_file(d.wait_file);
    make_slot_keys(&d);
    int rc;
    if (strcmp(cmd, "connect") == 0)
        rc = cmd_connect(&d);
    else if (strcmp(cmd, "fill") == 0 && arg)
        rc = cmd_fill(&d, arg);
    else if (strcmp(cmd, "check") == 0 && arg)
        rc = cmd_check(&d, arg);
    else if (strcmp(cmd, "workload") == 0)
        rc = cmd_workload(&d);
    else if (strcmp(cmd, "hscan") == 0 && arg)
        rc = cmd_hscan(&d, atol(arg));
    else if (strcmp(cmd, "ping") == 0 || (strcmp(cmd, "clear") == 0 && arg))
        rc = cmd_simple(&d, cmd, arg);
    else
        rc = usage();
    rcluster_destroy(d.rc);
    return rc;
}
