/* cmd_demo.c: `unlearnd demo`, the README's first command: the whole stream
 * story on this machine in well under a minute. Starts the local stack
 * (demo_stack.h: broker, throwaway Redis, worker), feeds a rating set,
 * waits until the worker has applied every rating, sends forget requests
 * for a few users, waits for their receipts, and prints each user's top-10
 * and the mean predicted score of the forgotten items before and after,
 * with ingest throughput and forget latency. Progress goes to stderr,
 * results to stdout (printed by demo_report.c; demo_report.h holds the
 * state both files share).
 *
 * DESIGN
 * - Waits are on events, never blind sleeps: ingestion is complete when
 *   every ratings partition's offset checkpointed in Redis reaches the
 *   partition's high watermark; a forget request is complete when its
 *   receipt arrives on the receipts topic. Every wait has a deadline.
 * - Scores are read from the worker's durable state in Redis (live.h,
 *   read-only, as `unlearnd state` does), because the "before" must be read
 *   before the forget requests. The "after" is then checked through the
 *   factors topic too: the model a ranking server rebuilds from it
 *   (topic_model.h) must hold every user and item and give these users the
 *   same scores as Redis (within 1e-3), waiting for the worker's next
 *   periodic publish if needed.
 * - The forgotten ratings are each chosen user's high ratings (the story:
 *   someone else used the account and loved those items), so the effect of
 *   forgetting them is visible in the scores. Choices are seeded.
 * - Whether a forgotten item should leave a list is a retrain's call, not
 *   the demo's: after the receipts it trains an offline MF (mf_train, the
 *   worker's k, `unlearnd train`'s defaults otherwise) on the data without
 *   the forgotten ratings and ranks the same users with it. A forgotten
 *   item that stays in an "after" list although that retrain does not rank
 *   it in its top-10 is counted (the unlearning kept it); one the retrain
 *   ranks there too may stay (the user's other ratings point at it). */
#include "cli.h"
#include "cli_config.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "codec.h"
#include "dataset.h"
#include "demo_report.h"
#include "demo_stack.h"
#include "kafka.h"
#include "live.h"
#include "mf.h"
#include "rng.h"
#include "rows.h"
#include "topic_model.h"
#include "ul_clock.h"
#include "ul_err.h"
#include "worker.h"

#define CMD "demo"
#define MIN_USER_RATINGS 10

/* Set by SIGINT/SIGTERM (cli_signals_install); a second Ctrl-C exits at once
 * (redis-server follows us out). */
static volatile sig_atomic_t interrupted;

static void progress(const demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const demo *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "demo %6.2fs: ", (double)(ul_clock_mono_ms() - d->t0_ms) / 1000.0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- options ------------------------------------------------------------ */

static void print_help(void) {
    printf("Usage: unlearnd demo [--data PATH | --synthetic [--ratings N]] [options]\n\n"
           "The stream worker end to end on this machine, with nothing to install or start:\n"
           "  1. starts a local Kafka (librdkafka's mock cluster), a throwaway redis-server and\n"
           "     the worker, all inside this process;\n"
           "  2. feeds a rating set into the ratings topic and waits until the worker has\n"
           "     applied every rating and checkpointed it to Redis (ingest throughput);\n"
           "  3. sends forget requests for a few users - each user's high ratings, as if\n"
           "     someone else had used the account - showing user, reason and items;\n"
           "  4. waits for their receipts (forget -> receipt latency) and prints, for each\n"
           "     user, the top-10 before and after and the mean predicted score of the\n"
           "     forgotten items before and after;\n"
           "  5. trains an offline model on the data without the forgotten ratings (a\n"
           "     retrain: 'unlearnd train''s MF with the worker's model.k) and prints its\n"
           "     top-10 beside them, counting forgotten items that stay in an \"after\"\n"
           "     list although the retrain does not rank them in its top-10;\n"
           "  6. stops everything it started, also on Ctrl-C or error.\n"
           "Progress goes to stderr, results to stdout. Scores are read from the worker's\n"
           "state in Redis; ids are the data's raw ids.\n\n"
           "Options:\n"
           "  --data PATH              ratings file (u.data, ratings.dat or CSV). Default:\n"
           "                           MovieLens-100K from $UNLEARND_DATA_DIR/%s,\n"
           "                           ../shared/data or next to the repository; if none is\n"
           "                           found, the synthetic set\n"
           "  --synthetic              use a seeded synthetic set instead of a file\n"
           "  --ratings N              size of the synthetic set, 1000..5000000 (default 100000)\n"
           "  --forget-users N         users sending a forget request, 1..%d (default 3)\n"
           "  --forget-items N         most items per request, 1..%d (default 10)\n"
           "  --forget-interval-ms MS  pause between forget requests (default 0: all at once)\n"
           "  --show N                 users whose top-10 tables are printed (default 5)\n"
           "  --partitions N           partitions per topic, 1..256 (default %d; the local\n"
           "                           broker keeps ~5 MiB per partition, docs/broker.md)\n"
           "  --timeout S              give up on any wait after S seconds (default 120)\n"
           "  --seed S                 seed for the synthetic set and the choices (default 1)\n"
           "  --verbose                show the worker's and librdkafka's info logs\n"
           "  --help                   show this help\n\n"
           "Worker settings (method, model.k, cycle.interval.ms, checkpoint.interval.ms, ...)\n"
           "can be given as --KEY VALUE, in a --config file or as UNLEARND_* variables, as for\n"
           "'unlearnd worker' (see its --help). Kafka and Redis addresses are ignored: the demo\n"
           "always uses its own, and stops them on exit.\n\n"
           "Exit status: 0 success, 1 runtime failure (a wait timed out, a service did not\n"
           "start), 2 bad usage, 130 interrupted.\n",
           CLI_ML100K_REL, MAX_FORGET_USERS, MAX_FORGET_ITEMS, BROKER_DEFAULT_PARTITIONS);
}

static int parse_flag(demo_args *a, const char *k) {
    if (strcmp(k, "--synthetic") == 0)
        a->synthetic = 1;
    else if (strcmp(k, "--verbose") == 0)
        a->verbose = 1;
    else
        return 0;
    return 1;
}

static int parse_value(demo_args *a, const char *k, const char *v, char *err, size_t size) {
    struct {
        const char *name;
        long *dst, min, max;
    } nums[] = {
        {"--ratings", &a->synth_ratings, 1000, 5000000},
        {"--forget-users", &a->forget_users, 1, MAX_FORGET_USERS},
        {"--forget-items", &a->forget_items, 1, MAX_FORGET_ITEMS},
        {"--forget-interval-ms", &a->forget_interval_ms, 0, 60000},
        {"--show", &a->show, 0, MAX_FORGET_USERS},
        {"--partitions", &a->partitions, 1, 256},
        {"--timeout", &a->timeout_s, 1, 86400},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        if (strcmp(k, nums[i].name) == 0)
            return cli_parse_long(k, v, nums[i].min, nums[i].max, nums[i].dst, err, size);
    if (strcmp(k, "--seed") == 0)
        return cli_parse_u64(k, v, &a->seed, err, size);
    if (strcmp(k, "--data") == 0 && v != NULL) {
        a->data = v;
        return 0;
    }
    snprintf(err, size, "unknown argument '%s'%s", k,
             strcmp(k, "--data") == 0 ? " (needs a path)" : "");
    return -1;
}

static int parse_args(const config_cli *cli, demo_args *a) {
    char err[UL_ERRSTR_SIZE];
    for (int i = 0; i < cli->n_rest; i++) {
        const char *k = cli->rest[i];
        if (parse_flag(a, k))
            continue;
        const char *v = i + 1 < cli->n_rest ? cli->rest[++i] : NULL;
        if (parse_value(a, k, v, err, sizeof(err)) != 0)
            return cli_usage_error(CMD, err);
    }
    if (a->data && a->synthetic)
        return cli_usage_error(CMD, "give either --data or --synthetic, not both");
    return CLI_EXIT_OK;
}

/* ---- data ---------------------------------------------------------------- */

static dataset *load_data(demo *d, char *err, size_t size) {
    char path[PATH_MAX + 64], where[3 * PATH_MAX];
    const char *use = d->a->data;
    if (use == NULL && !d->a->synthetic &&
        cli_find_ml100k(path, sizeof(path), where, sizeof(where)))
        use = path;
    if (use != NULL) {
        ds_load_opts lo;
        ds_load_opts_init(&lo);
        lo.rating_min = (float)d->cfg->rating_min;
        lo.rating_max = (float)d->cfg->rating_max;
        lo.dups = DS_DUP_LAST;
        lo.range_hint = CLI_STREAM_SCALE_HINT;
        dataset *ds = ds_load(use, &lo, err, size);
        if (ds)
            progress(d, "data: %s (%s, %zu ratings, %d users, %d items)", use, ds->name,
                     ds->n_ratings, (int)ds->n_users, (int)ds->n_items);
        return ds;
    }
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_ratings = (size_t)d->a->synth_ratings;
    so.n_users = (int32_t)(so.n_ratings / 100 > 50 ? so.n_ratings / 100 : 50);
    so.n_items = (int32_t)(so.n_ratings / 60 > 200 ? so.n_ratings / 60 : 200);
    so.seed = d->a->seed;
    dataset *ds = ds_synthetic(&so, err, size);
    if (ds)
        progress(d, "data: synthetic (%zu ratings, %d users, %d items, seed %" PRIu64 ")%s%s%s",
                 ds->n_ratings, (int)ds->n_users, (int)ds->n_items, so.seed,
                 d->a->synthetic ? "" : "; no MovieLens-100K found (tried ",
                 d->a->synthetic ? "" : where, d->a->synthetic ? "" : "; set UNLEARND_DATA_DIR)");
    return ds;
}

/* ---- choosing the forget requests ---------------------------------------- */

/* Fill u->items with up to `want` of the user's ratings at rating.max - 1 or
 * above, highest first, ties in seeded random order. Returns how many. */
static int pick_items(const dataset *ds, const size_t *pos, size_t n, size_t want, rng *r,
                      demo_user *u) {
    size_t *high = malloc(n * sizeof(*high));
    size_t nh = 0;
    if (high == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ds->ratings[pos[i]].value >= ds->rating_max - 1.0f)
            high[nh++] = pos[i];
    rng_shuffle(r, high, nh, sizeof(*high));
    u->n_items = 0;
    for (int pass = 0; pass < 2; pass++) /* the top value first, then the rest */
        for (size_t i = 0; i < nh && (size_t)u->n_items < want; i++) {
            const ul_rating *x = &ds->ratings[high[i]];
            if ((x->value >= ds->rating_max) != (pass == 0))
                continue;
            u->items[u->n_items] = ds->item_ids[x->item];
            u->ratings[u->n_items++] = x->value;
        }
    free(high);
    return u->n_items;
}

static int pick_users(demo *d, char *err, size_t size) {
    const dataset *ds = d->ds;
    size_t nu = (size_t)ds->n_users;
    size_t *start = calloc(nu + 1, sizeof(*start)), *pos = malloc(ds->n_ratings * sizeof(*pos));
    size_t *fill = calloc(nu, sizeof(*fill));
    int32_t *order = malloc(nu * sizeof(*order));
    d->users = calloc((size_t)d->a->forget_users, sizeof(*d->users));
    int rc = UL_ERR_NOMEM;
    if (!start || !pos || !fill || !order || !d->users)
        goto done;
    for (size_t i = 0; i < ds->n_ratings; i++)
        start[ds->ratings[i].user + 1]++;
    for (size_t u = 0; u < nu; u++)
        start[u + 1] += start[u];
    for (size_t i = 0; i < ds->n_ratings; i++) {
        int32_t u = ds->ratings[i].user;
        pos[start[u] + fill[u]++] = i;
    }
    for (size_t u = 0; u < nu; u++)
        order[u] = (int32_t)u;
    rng r;
    rng_seed(&r, rng_derive(d->a->seed, 0xde30));
    rng_shuffle(&r, order, nu, sizeof(*order));
    static const codec_reason reasons[] = {CODEC_REASON_SOMEONE_ELSE, CODEC_REASON_MISTAKE,
                                           CODEC_REASON_FAULTY_ACQUISITION,
                                           CODEC_REASON_LOST_INTEREST};
    for (size_t o = 0; o < nu && d->n_users < d->a->forget_users; o++) {
        int32_t u = order[o];
        size_t n = start[u + 1] - start[u];
        demo_user *du = &d->users[d->n_users];
        if (n < MIN_USER_RATINGS ||
            pick_items(ds, pos + start[u], n, (size_t)d->a->forget_items, &r, du) < 3)
            continue;
        du->user = ds->user_ids[u];
        du->reason = reasons[d->n_users % 4];
        snprintf(du->request_id, sizeof(du->request_id), "demo-%" PRId64 "-%" PRId64, du->user,
                 ul_clock_wall_ms());
        d->n_users++;
    }
    rc = UL_OK;
    if (d->n_users == 0) {
        ul_set_err(err, size,
                   "no user has %d ratings with at least 3 of them at %g or above: nothing "
                   "to forget in this data",
                   MIN_USER_RATINGS, (double)ds->rating_max - 1.0);
        rc = UL_ERR_ARG;
    } else if (d->n_users < d->a->forget_users) {
        progress(d, "only %d users qualify for a forget request (asked for %ld)", d->n_users,
                 d->a->forget_users);
    }
done:
    if (rc == UL_ERR_NOMEM)
        ul_set_err(err, size, "out of memory");
    free(start);
    free(pos);
    free(fill);
    free(order);
    return rc;
}

/* ---- Kafka clients ------------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    (void)rk;
    demo *d = opaque;
    if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR && d->delivery_failures++ == 0)
        log_error(d->log, "demo", "delivery failed: %s", rd_kafka_err2str(rkm->err));
}

static int open_clients(demo *d, char *err, size_t size) {
    char kerr[512];
    rd_kafka_conf_t *conf = kafka_conf_new(d->cfg, KAFKA_PRODUCER, &d->log, err, size);
    if (conf == NULL)
        return UL_ERR_ARG;
    /* Big batches: the local broker returns one batch per partition per
     * fetch, so the worker reads it as fast as the batches are large. */
    if (rd_kafka_conf_set(conf, "linger.ms", "50", kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "batch.num.messages", "100000", kerr, sizeof(kerr)) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        ul_set_err(err, size, "producer settings: %s", kerr);
        return UL_ERR_ARG;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    d->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (d->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        ul_set_err(err, size, "cannot create the producer: %s", kerr);
        return UL_ERR_IO;
    }
    /* Learn the forget topic's partitions now, so the first request's
     * latency does not include the producer's first metadata lookup. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(d->producer, d->cfg->topic_forget, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (rkt && rd_kafka_metadata(d->producer, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    d->receipts = kafka_client_new(d->cfg, KAFKA_CONSUMER, &d->log, NULL, err, size);
    if (d->receipts == NULL)
        return UL_ERR_IO;
    int32_t n = demo_stack_partitions(d->stack);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int32_t p = 0; p < n; p++)
        rd_kafka_topic_partition_list_add(l, d->cfg->topic_receipts, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(d->receipts, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ul_set_err(err, size, "cannot read %s: %s", d->cfg->topic_receipts, rd_kafka_err2str(e));
        return UL_ERR_IO;
    }
    return UL_OK;
}

/* ---- ingest -------------------------------------------------------------- */

static int send_ratings(demo *d, size_t from, size_t to, char *err, size_t size) {
    const dataset *ds = d->ds;
    char key[24];
    codec_buf buf = {0};
    int rc = UL_OK;
    for (size_t i = from; i < to && rc == UL_OK; i++) {
        const ul_rating *r = &ds->ratings[i];
        codec_rating ev = {ds->user_ids[r->user], ds->item_ids[r->item], r->value,
                           ds->has_time ? r->time * 1000 : r->time};
        int klen = codec_key_user(ev.user_id, key, sizeof(key));
        if (codec_encode_rating(d->cd, &ev, &buf, err, size) != CODEC_OK ||
            kafka_produce(d->producer, d->cfg->topic_ratings, RD_KAFKA_PARTITION_UA, key,
                          (size_t)klen, buf.data, buf.len, NULL, 10000, err, size) != UL_OK)
            rc = UL_ERR_IO;
        if ((i & 1023) == 0) {
            rd_kafka_poll(d->producer, 0);
            if (interrupted) {
                ul_set_err(err, size, "interrupted");
                rc = UL_ERR_ABORTED;
            }
        }
    }
    codec_buf_free(&buf);
    if (rc == UL_OK && rd_kafka_flush(d->producer, (int)d->a->timeout_s * 1000) != 0) {
        ul_set_err(err, size, "%d ratings still undelivered after %ld s",
                   rd_kafka_outq_len(d->producer), d->a->timeout_s);
        rc = UL_ERR_IO;
    }
    if (rc == UL_OK && d->delivery_failures > 0) {
        ul_set_err(err, size, "%zu ratings were not delivered to the broker", d->delivery_failures);
        rc = UL_ERR_IO;
    }
    return rc;
}

/* High watermarks of the ratings partitions; refuses if the broker dropped
 * any (the mock keeps ~5 MiB per partition). */
static int ratings_hwm(demo *d, int64_t *hwm, char *err, size_t size) {
    int64_t dropped = 0;
    for (int32_t p = 0; p < demo_stack_partitions(d->stack); p++) {
        int64_t lo = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(d->producer, d->cfg->topic_ratings,
                                                                 p, &lo, &hwm[p], 10000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ul_set_err(err, size, "offsets of %s [%d]: %s", d->cfg->topic_ratings, (int)p,
                       rd_kafka_err2str(e));
            return UL_ERR_IO;
        }
        dropped += lo;
    }
    if (dropped > 0) {
        ul_set_err(err, size,
                   "the local broker dropped %" PRId64 " ratings (it keeps ~5 MiB per "
                   "partition): use more --partitions",
                   dropped);
        return UL_ERR_STATE;
    }
    return UL_OK;
}

/* Produce ratings [from, to) and wait until the worker has applied and
 * checkpointed them. */
static int feed(demo *d, size_t from, size_t to, char *err, size_t size) {
    int64_t hwm[256];
    int rc = send_ratings(d, from, to, err, size);
    if (rc == UL_OK)
        rc = ratings_hwm(d, hwm, err, size);
    if (rc != UL_OK)
        return rc;
    d->produce_s = (double)(ul_clock_mono_ms() - d->feed_ms) / 1000.0;
    return demo_stack_wait_applied(d->stack, hwm, (int)d->a->timeout_s * 1000, &interrupted,
                                   &d->applied, err, size);
}

/* A warm-up slice first: the worker's group join (the local broker delays a
 * new group's first rebalance by ~3 s) is not part of the ingest figure.
 * The timed part ends when the last rating is durable in Redis, so it
 * includes the wait for the next checkpoint. */
static int ingest(demo *d, char *err, size_t size) {
    size_t n = d->ds->n_ratings, warm = n / 100 < 1000 ? n / 100 : 1000;
    progress(d, "warm-up: %zu ratings, waiting for the worker to join its group and apply them",
             warm);
    d->feed_ms = ul_clock_mono_ms();
    int rc = feed(d, 0, warm, err, size);
    if (rc != UL_OK)
        return rc;
    progress(d, "producing the other %zu ratings to %s (%d partitions)", n - warm,
             d->cfg->topic_ratings, (int)demo_stack_partitions(d->stack));
    d->feed_ms = ul_clock_mono_ms();
    rc = feed(d, warm, n, err, size);
    if (rc != UL_OK)
        return rc;
    d->n_timed = n - warm;
    d->ingest_s = (double)(ul_clock_mono_ms() - d->feed_ms) / 1000.0;
    progress(d, "the worker applied %" PRIu64 " ratings (%.0f ratings/s end to end)", d->applied,
             (double)d->n_timed / d->ingest_s);
    return UL_OK;
}

/* ---- scores from Redis ---------------------------------------------------- */

int demo_user_forgets(const demo_user *u, int64_t item) {
    for (int i = 0; i < u->n_items; i++)
        if (u->items[i] == item)
            return 1;
    return 0;
}

static void top_insert(snapshot *s, int64_t item, float score) {
    if (s->n_top == DEMO_TOP && score <= s->score[DEMO_TOP - 1])
        return;
    int i = s->n_top < DEMO_TOP ? s->n_top++ : DEMO_TOP - 1;
    for (; i > 0 && s->score[i - 1] < score; i--) {
        s->score[i] = s->score[i - 1];
        s->top[i] = s->top[i - 1];
    }
    s->score[i] = score;
    s->top[i] = item;
}

static void score_user(const demo *d, const live *l, const shard *s, const demo_user *u,
                       snapshot *out) {
    memset(out, 0, sizeof(*out));
    for (int32_t i = 0; i < d->ds->n_items; i++) {
        int found = 0;
        float sc = live_predict(l, s, u->user, d->ds->item_ids[i], &found);
        if (found)
            top_insert(out, d->ds->item_ids[i], sc);
    }
    double sum = 0.0;
    for (int i = 0; i < u->n_items; i++) {
        int found = 0;
        float sc = live_predict(l, s, u->user, u->items[i], &found);
        if (found) {
            sum += sc;
            out->n_forgot_known++;
        }
    }
    out->forgot_mean = out->n_forgot_known ? sum / out->n_forgot_known : NAN;
}

static int snapshot_all(demo *d, int after, char *err, size_t size) {
    store *st = demo_stack_store(d->stack);
    store_model m;
    int found = 0;
    /* Continuous training keeps changing the rows until it pauses: the
     * before/after tables should differ by the forget only. */
    progress(d, "waiting for continuous training to settle before the %s snapshot",
             after ? "after" : "before");
    int rc = demo_stack_wait_quiet(d->stack, (int)d->a->timeout_s * 1000, &interrupted, err, size);
    if (rc != UL_OK)
        return rc;
    rc = store_model_get(st, &m, &found, err, size);
    if (rc != UL_OK)
        return rc;
    live_opts lo;
    live_opts_init(&lo);
    lo.k = m.k;
    lo.rating_min = m.rating_min;
    lo.rating_max = m.rating_max;
    lo.read_only = 1;
    live *l = live_new(&lo, st, demo_stack_partitions(d->stack), err, size);
    if (l == NULL)
        return UL_ERR_STATE;
    for (int i = 0; i < d->n_users && rc == UL_OK; i++) {
        demo_user *u = &d->users[i];
        shard *s = live_assign(l, rows_user_partition(u->user, m.partitions), NULL, err, size);
        if (s == NULL)
            rc = UL_ERR_STATE;
        else
            score_user(d, l, s, u, after ? &u->after : &u->before);
    }
    live_destroy(l);
    return rc;
}

/* ---- forget requests and receipts ------------------------------------------ */

static void print_request(const demo_user *u) {
    printf("  user %-7" PRId64 " %-18s %2d items:", u->user, codec_reason_name(u->reason),
           u->n_items);
    for (int i = 0; i < u->n_items; i++)
        printf(" %" PRId64 "(%g)", u->items[i], (double)u->ratings[i]);
    printf("\n");
}

static int send_forget(demo *d, demo_user *u, char *err, size_t size) {
    codec_forget fr;
    memset(&fr, 0, sizeof(fr));
    snprintf(fr.request_id, sizeof(fr.request_id), "%s", u->request_id);
    fr.user_id = u->user;
    fr.items = u->items; /* borrowed for encoding */
    fr.n_items = (size_t)u->n_items;
    fr.reason = u->reason;
    fr.requested_at = ul_clock_wall_ms();
    codec_buf buf = {0};
    char key[24];
    int klen = codec_key_user(u->user, key, sizeof(key));
    u->sent_ms = ul_clock_mono_ms();
    int rc = codec_encode_forget(d->cd, &fr, &buf, err, size) == CODEC_OK ? UL_OK : UL_ERR_ARG;
    if (rc == UL_OK)
        rc = kafka_produce(d->producer, d->cfg->topic_forget, RD_KAFKA_PARTITION_UA, key,
                           (size_t)klen, buf.data, buf.len, NULL, 10000, err, size);
    codec_buf_free(&buf);
    if (rc == UL_OK && rd_kafka_flush(d->producer, 10000) != 0) {
        ul_set_err(err, size, "forget request %s not delivered", u->request_id);
        rc = UL_ERR_IO;
    }
    return rc;
}

/* Read receipts for up to wait_ms; 1 when every request has one. */
static int poll_receipts(demo *d, int wait_ms) {
    int64_t until = ul_clock_mono_ms() + wait_ms;
    do {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(d->receipts, 10);
        if (rkm == NULL)
            continue;
        codec_receipt r;
        char err[UL_ERRSTR_SIZE];
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            codec_decode_receipt(d->cd, rkm->payload, rkm->len, &r, err, sizeof(err)) == CODEC_OK)
            for (int i = 0; i < d->n_users; i++)
                if (d->users[i].receipt_ms == 0 &&
                    strcmp(d->users[i].request_id, r.request_id) == 0) {
                    d->users[i].receipt_ms = ul_clock_mono_ms();
                    d->users[i].receipt = r;
                    progress(d,
                             "receipt %s: user %" PRId64 ", %d ratings forgotten, model "
                             "version %" PRId64,
                             r.request_id, r.user_id, (int)r.forgotten, r.model_version);
                }
        rd_kafka_message_destroy(rkm);
    } while (ul_clock_mono_ms() < until);
    for (int i = 0; i < d->n_users; i++)
        if (d->users[i].receipt_ms == 0)
            return 0;
    return 1;
}

static int forget(demo *d, char *err, size_t size) {
    printf("\nForget requests (each user's high ratings, as if someone else had rated them):\n");
    for (int i = 0; i < d->n_users; i++) {
        print_request(&d->users[i]);
        int rc = send_forget(d, &d->users[i], err, size);
        if (rc != UL_OK)
            return rc;
        if (d->a->forget_interval_ms > 0 && i + 1 < d->n_users)
            poll_receipts(d, (int)d->a->forget_interval_ms);
    }
    fflush(stdout);
    progress(d, "%d forget requests sent to %s; waiting for their receipts", d->n_users,
             d->cfg->topic_forget);
    int64_t deadline = ul_clock_mono_ms() + d->a->timeout_s * 1000;
    while (!poll_receipts(d, 100)) {
        if (demo_stack_worker_alive(d->stack, err, size) != UL_OK)
            return UL_ERR_STATE;
        if (interrupted) {
            ul_set_err(err, size, "interrupted");
            return UL_ERR_ABORTED;
        }
        if (ul_clock_mono_ms() >= deadline) {
            int missing = 0;
            for (int i = 0; i < d->n_users; i++)
                missing += d->users[i].receipt_ms == 0;
            ul_set_err(err, size, "%d of %d receipts did not arrive within %ld s", missing,
                       d->n_users, d->a->timeout_s);
            return UL_ERR_IO;
        }
    }
    return UL_OK;
}

/* ---- the "after" through the factors topic ---------------------------------- */

static int32_t raw_index(const int64_t *ids, int32_t n, int64_t raw) {
    for (int32_t i = 0; ids && i < n; i++)
        if (ids[i] == raw)
            return i;
    return -1;
}

/* Largest |topic - Redis| over every demo user's "after" top-10 and the
 * mean of the forgotten items; INFINITY when the topic lacks a user or
 * item of the data set. */
static double topic_diff(const demo *d, const mf_model *m) {
    if (m->n_users != d->ds->n_users || m->n_items != d->ds->n_items)
        return INFINITY;
    double worst = 0.0;
    for (int i = 0; i < d->n_users; i++) {
        const demo_user *u = &d->users[i];
        int32_t ui = raw_index(m->user_ids, m->n_users, u->user);
        if (ui < 0)
            return INFINITY;
        for (int r = 0; r < u->after.n_top; r++) {
            int32_t ii = raw_index(m->item_ids, m->n_items, u->after.top[r]);
            if (ii < 0)
                return INFINITY;
            worst = fmax(worst, fabs((double)mf_predict_raw(m, ui, ii) - u->after.score[r]));
        }
        double sum = 0.0;
        int n = 0;
        for (int j = 0; j < u->n_items; j++) {
            int32_t ii = raw_index(m->item_ids, m->n_items, u->items[j]);
            if (ii >= 0) {
                sum += mf_predict_raw(m, ui, ii);
                n++;
            }
        }
        if (n != u->after.n_forgot_known)
            return INFINITY;
        if (n > 0)
            worst = fmax(worst, fabs(sum / n - u->after.forgot_mean));
    }
    return worst;
}

/* Rebuild the model from the factors topic until it is complete and agrees
 * with Redis (the worker publishes rows changed by ratings every
 * publish.interval.ms, so the last ones may still be on their way). */
static int verify_topic(demo *d, char *err, size_t size) {
    char terr[UL_ERRSTR_SIZE] = "";
    int64_t deadline = ul_clock_mono_ms() + d->a->timeout_s * 1000;
    progress(d, "rebuilding the model from %s, as a ranking server would", d->cfg->topic_factors);
    for (;;) {
        topic_model_info info;
        mf_model *m =
            topic_model_load(d->cfg, NULL, d->cfg->topic_factors, 10000, &info, terr, sizeof(terr));
        /* Redis gets item rows at row flushes: compare with its state now. */
        int src = snapshot_all(d, 1, err, size);
        if (src != UL_OK) {
            mf_model_destroy(m);
            return src;
        }
        if (m != NULL) {
            double diff = topic_diff(d, m);
            snprintf(terr, sizeof(terr), "%d of %d users, %d of %d items, max score difference %g",
                     (int)m->n_users, (int)d->ds->n_users, (int)m->n_items, (int)d->ds->n_items,
                     diff);
            d->topic = info;
            d->topic_users = m->n_users;
            d->topic_items = m->n_items;
            d->topic_max_diff = diff;
            mf_model_destroy(m);
            if (diff <= 1e-3)
                return UL_OK;
        }
        if (interrupted) {
            ul_set_err(err, size, "interrupted");
            return UL_ERR_ABORTED;
        }
        if (ul_clock_mono_ms() >= deadline) {
            ul_set_err(err, size, "the model rebuilt from %s does not match Redis after %ld s: %s",
                       d->cfg->topic_factors, d->a->timeout_s, terr);
            return UL_ERR_STATE;
        }
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- the retrain without the forgotten ratings ------------------------------ */

/* The top-10 over every item (rated ones included, as for Redis's) and the
 * forgotten items' mean score of dense user ui in an offline model. */
static void score_model(const mf_model *m, int32_t ui, const demo_user *u, snapshot *out) {
    memset(out, 0, sizeof(*out));
    for (int32_t i = 0; i < m->n_items; i++)
        top_insert(out, m->item_ids[i], mf_predict_raw(m, ui, i));
    double sum = 0.0;
    for (int j = 0; j < u->n_items; j++) {
        int32_t ii = raw_index(m->item_ids, m->n_items, u->items[j]);
        if (ii >= 0) {
            sum += mf_predict_raw(m, ui, ii);
            out->n_forgot_known++;
        }
    }
    out->forgot_mean = out->n_forgot_known ? sum / out->n_forgot_known : NAN;
}

/* The data's ratings without every demo user's forgotten ones; the caller
 * frees. NULL when out of memory. */
static ul_rating *ratings_kept(const demo *d, size_t *n) {
    const dataset *ds = d->ds;
    int32_t *slot = malloc(((size_t)ds->n_users + 1) * sizeof(*slot));
    ul_rating *keep = malloc((ds->n_ratings + 1) * sizeof(*keep));
    *n = 0;
    if (slot != NULL && keep != NULL) {
        for (int32_t u = 0; u < ds->n_users; u++)
            slot[u] = -1;
        for (int i = 0; i < d->n_users; i++)
            slot[ds_user_index(ds, d->users[i].user)] = i;
        for (size_t r = 0; r < ds->n_ratings; r++) {
            const ul_rating *x = &ds->ratings[r];
            int i = slot[x->user];
            if (i < 0 || !demo_user_forgets(&d->users[i], ds->item_ids[x->item]))
                keep[(*n)++] = *x;
        }
    } else {
        free(keep);
        keep = NULL;
    }
    free(slot);
    return keep;
}

/* Train the offline retrain (mf_train: the worker's k, the defaults of
 * `unlearnd train` otherwise, the demo's seed) and rank the demo users. */
static int retrain(demo *d, char *err, size_t size) {
    const dataset *ds = d->ds;
    size_t n;
    ul_rating *keep = ratings_kept(d, &n);
    if (keep == NULL) {
        ul_set_err(err, size, "out of memory");
        return UL_ERR_NOMEM;
    }
    mf_params p;
    mf_params_init(&p);
    p.k = (int)d->cfg->model_k;
    p.seed = d->a->seed;
    progress(d,
             "retraining offline without the %zu forgotten ratings (%zu ratings, k=%d, %d epochs)",
             ds->n_ratings - n, n, p.k, p.epochs);
    int64_t t = ul_clock_mono_ms();
    mf_model *m = mf_train(keep, n, ds->n_users, ds->n_items, ds->rating_min, ds->rating_max, &p,
                           NULL, NULL, err, size);
    free(keep);
    if (m == NULL || mf_model_set_ids(m, ds->user_ids, ds->item_ids) != UL_OK) {
        if (m != NULL)
            ul_set_err(err, size, "out of memory");
        mf_model_destroy(m);
        return UL_ERR_STATE;
    }
    d->retrain_s = (double)(ul_clock_mono_ms() - t) / 1000.0;
    for (int i = 0; i < d->n_users; i++)
        score_model(m, ds_user_index(ds, d->users[i].user), &d->users[i], &d->users[i].retrain);
    mf_model_destroy(m);
    return UL_OK;
}

/* ---- the run ---------------------------------------------------------------- */

static int demo_run(demo *d) {
    char err[UL_ERRSTR_SIZE];
    int rc;
    if ((d->ds = load_data(d, err, sizeof(err))) == NULL ||
        (d->cd = worker_codec_new(d->cfg, err, sizeof(err))) == NULL ||
        pick_users(d, err, sizeof(err)) != UL_OK)
        return cli_fail(CMD, err);
    progress(d, "starting the local broker, a throwaway redis-server and the worker");
    d->stack = demo_stack_start(d->cfg, d->log, (int)d->a->partitions, err, sizeof(err));
    if (d->stack == NULL)
        return cli_fail(CMD, err);
    printf("unlearnd demo: %s, %zu ratings, %d users, %d items; local broker %s, Redis %s:%ld\n",
           d->ds->name, d->ds->n_ratings, (int)d->ds->n_users, (int)d->ds->n_items,
           d->cfg->kafka_bootstrap, d->cfg->redis_host, d->cfg->redis_port);
    fflush(stdout);
    if ((rc = open_clients(d, err, sizeof(err))) == UL_OK &&
        (rc = ingest(d, err, sizeof(err))) == UL_OK &&
        (rc = snapshot_all(d, 0, err, sizeof(err))) == UL_OK &&
        (rc = forget(d, err, sizeof(err))) == UL_OK &&
        (rc = snapshot_all(d, 1, err, sizeof(err))) == UL_OK &&
        (rc = verify_topic(d, err, sizeof(err))) == UL_OK)
        rc = retrain(d, err, sizeof(err));
    if (rc == UL_OK) {
        demo_report_print(d);
        return fflush(stdout) == 0 ? CLI_EXIT_OK : cli_fail(CMD, "cannot write to stdout");
    }
    if (rc == UL_ERR_ABORTED) {
        progress(d, "interrupted: stopping everything");
        return 130;
    }
    return cli_fail(CMD, err);
}

static void demo_cleanup(demo *d) {
    if (d->receipts) {
        rd_kafka_consumer_close(d->receipts);
        rd_kafka_destroy(d->receipts);
    }
    if (d->producer)
        rd_kafka_destroy(d->producer);
    if (d->stack) {
        progress(d, "stopping the worker, the broker and redis-server");
        demo_stack_stop(d->stack);
    }
    codec_destroy(d->cd);
    ds_destroy(d->ds);
    free(d->users);
    log_destroy(d->log);
}

/* The local broker answers a fetch that finds no data only when its
 * fetch.wait.max.ms has expired, even if data arrives meanwhile (a real
 * Kafka answers at once). With librdkafka's 500 ms default every hop (forget
 * request -> worker, receipt -> us) would wait up to half a second, so the
 * demo polls every 10 ms unless told otherwise. */
static int local_fetch_wait(ul_config *cfg) {
    char v[32], err[UL_ERRSTR_SIZE];
    if (config_value(cfg, "kafka.fetch.wait.max.ms", 1, v, sizeof(v)) != UL_OK &&
        config_set(cfg, "kafka.fetch.wait.max.ms", "10", "demo", err, sizeof(err)) != UL_OK)
        return cli_fail(CMD, err);
    /* The snapshots read item rows from Redis, which gets them at row
     * flushes: flush often so they are current. */
    if (config_is_default(cfg, "rows.flush.interval.ms") &&
        config_set(cfg, "rows.flush.interval.ms", "500", "demo", err, sizeof(err)) != UL_OK)
        return cli_fail(CMD, err);
    return CLI_EXIT_OK;
}

int cmd_demo(int argc, char **argv) {
    cli_config cc;
    demo_args a = {NULL, 0, 100000, 3, 10, 0, 5, BROKER_DEFAULT_PARTITIONS, 120, 1, 0};
    demo d;
    memset(&d, 0, sizeof(d));
    d.t0_ms = ul_clock_mono_ms();
    int rc = cli_config_load(CMD, argc, argv, &cc);
    if (rc == CLI_EXIT_OK && cc.args.help) {
        print_help();
        goto done;
    }
    if (rc == CLI_EXIT_OK)
        rc = parse_args(&cc.args, &a);
    if (rc == CLI_EXIT_OK && cc.args.dump) {
        config_dump(cc.cfg, stdout);
        goto done;
    }
    if (rc == CLI_EXIT_OK)
        rc = cli_config_ready(CMD, &cc, 0);
    if (rc != CLI_EXIT_OK)
        goto done;
    log_level level = LOG_LEVEL_WARN;
    if (a.verbose)
        log_parse_level(cc.cfg->log_level, &level);
    d.log = log_new(stderr, level);
    if (d.log == NULL || config_log_secrets(cc.cfg, d.log) != UL_OK) {
        rc = cli_fail(CMD, "out of memory");
        goto done;
    }
    d.a = &a;
    d.cfg = cc.cfg;
    if ((rc = local_fetch_wait(cc.cfg)) != CLI_EXIT_OK)
        goto done;
    cli_signals_install(&interrupted);
    rc = demo_run(&d);
    demo_cleanup(&d);
done:
    cli_config_free(&cc);
    return rc;
}
