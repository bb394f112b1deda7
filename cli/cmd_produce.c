/* cmd_produce.c: `unlearnd produce ratings|forget`, feeding the input topics
 * as a user backfilling from a data lake would: Avro records in Confluent
 * framing, keyed by the user id, partitioned like Java producers
 * (murmur2_random). Waits for every delivery report and says how many
 * failed; exits 1 when any did. With --writer-schema FILE --writer-id N the
 * records are written in another writer schema (a data lake's evolved
 * version) instead of ours: our encoding is resolved into FILE's schema by
 * Avro's rules (resolve.h, with our schema as the writer), so fields FILE
 * adds take its defaults and fields it lacks are left out. */
#include "cli.h"
#include "cli_config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <avro.h>

#include "codec.h"
#include "dataset.h"
#include "kafka.h"
#include "resolve.h"
#include "ul_buf.h"
#include "ul_clock.h"
#include "ul_err.h"
#include "worker.h"

#define FLUSH_TIMEOUT_MS 60000

/* The producer's opaque: the logger first (log_kafka_conf), then counters the
 * delivery report callback updates (it runs on our thread, in poll/flush). */
typedef struct produce_ctx {
    ul_log *log;
    size_t delivered, failed;
    char first_error[256];
} produce_ctx;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque) {
    (void)rk;
    produce_ctx *ctx = opaque;
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ctx->delivered++;
        return;
    }
    if (ctx->failed++ == 0)
        snprintf(ctx->first_error, sizeof(ctx->first_error), "%s", rd_kafka_err2str(rkm->err));
}

static void print_help(void) {
    printf(
        "Usage: unlearnd produce ratings --data PATH [--rate N] [--limit N] [options]\n"
        "       unlearnd produce forget --user ID (--items A,B,... | --from T --to T)\n"
        "                               --reason R [--request-id ID] [options]\n"
        "       unlearnd produce forget --batch FILE [options]\n\n"
        "Feeds the input topics like a producer backfilling from a data lake: Avro records\n"
        "in Confluent framing (schema ids from config), keyed by the user id as a decimal\n"
        "string (or Confluent-Avro-serialised with --key.format avro --key.schema.id ID),\n"
        "partitioned with murmur2 like Java's default partitioner. Waits for every\n"
        "delivery and exits 1 if any failed.\n\n"
        "produce ratings:\n"
        "  --data PATH    ratings file: u.data, ratings.dat or CSV with a header\n"
        "                 (user,item,rating[,timestamp]); raw ids are sent unchanged; a\n"
        "                 repeated (user,item) keeps the later rating\n"
        "  --rate N       ratings per second, 0 = as fast as possible (default 0)\n"
        "  --limit N      send only the first N ratings (default: all)\n"
        "  event_time is the file's timestamp (seconds -> ms) or, without timestamps, the\n"
        "  0-based line position as ms, so file order is event-time order. Ratings go out in\n"
        "  large batches (kafka.linger.ms=50, kafka.batch.num.messages=100000 unless set).\n\n"
        "produce forget:\n"
        "  --user ID          raw user id\n"
        "  --items A,B,...    raw item ids to forget (at most forget.max.items)\n"
        "  --from T --to T    or every rating with from <= event_time <= to; T is ms since\n"
        "                     the epoch or YYYY-MM-DDTHH:MM:SS[Z] (UTC)\n"
        "  --reason R         MISTAKE, SOMEONE_ELSE, FAULTY_ACQUISITION, LOST_INTEREST, ERASURE\n"
        "  --request-id ID    default: generated; printed on stdout either way\n"
        "  --batch FILE       many requests at once, one per line of FILE (- = stdin), each\n"
        "                     line holding the options above (e.g. --user 7 --items 1,2\n"
        "                     --reason MISTAKE); # comments and blank lines skipped; every\n"
        "                     line is checked before the first request is sent\n\n"
        "Both (another writer schema, as an evolved producer of a data lake writes):\n"
        "  --writer-schema FILE  write the records in this Avro schema (a Rating or a\n"
        "                 ForgetRequest record) instead of ours: fields matched by name,\n"
        "                 fields FILE adds written with their defaults (each needs one),\n"
        "                 fields FILE lacks left out, our long/float promoted to FILE's\n"
        "                 float/double (Avro's resolution rules, ours as the writer)\n"
        "  --writer-id N  the schema id framed into every record with --writer-schema\n"
        "                 (give the worker the same file: schema.writers=N=FILE)\n\n"
        "Kafka, topics, schema ids and the rating scale come from the configuration\n"
        "(--kafka.bootstrap.servers, --topic.ratings, --schema.id.rating, --rating.min, ...;\n"
        "listed below). Without kafka.bootstrap.servers the local broker's\n"
        "address file is used (start `unlearnd broker`).\n");
    printf("\n");
    config_print_help(stdout);
}

/* Fail fast, with a hint, when Kafka does not answer (e.g. a stale address
 * file left by a killed local broker) instead of queueing into the void.
 * Asking for the metadata of the topic we are about to write also puts it in
 * the producer's cache: librdkafka 2.0.2 otherwise holds the first message
 * to an unseen topic for up to 1 s (fixed upstream in 2.10.1, #5032). */
static rd_kafka_t *check_reachable(const ul_config *cfg, rd_kafka_t *rk, const char *topic,
                                   char *err, size_t err_size) {
    char kerr[UL_ERRSTR_SIZE];
    int64_t lo, hi;
    int parts;
    if (kafka_topic_offsets(rk, topic, 5000, &lo, &hi, &parts, kerr, sizeof(kerr)) == UL_OK)
        return rk;
    snprintf(err, err_size,
             "Kafka at %.120s does not answer (%.120s); for the local broker: is `unlearnd "
             "broker` running, or is %.120s left from a stopped one?",
             cfg->kafka_bootstrap, kerr, cfg->bootstrap_file);
    rd_kafka_destroy(rk);
    return NULL;
}

/* A backfill wants large batches: fewer requests for any broker, and the
 * local mock broker returns one batch per partition per fetch, so its
 * consumers read as fast as the batches are large (docs/broker.md). Applied
 * only where the user did not set the property. */
static int bulk_batches(const ul_config *cfg, rd_kafka_conf_t *conf, char *err, size_t err_size) {
    static const char *const kv[][2] = {{"linger.ms", "50"}, {"batch.num.messages", "100000"}};
    char key[64], val[64], kerr[512];
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        snprintf(key, sizeof(key), "kafka.%s", kv[i][0]);
        if (config_value(cfg, key, 1, val, sizeof(val)) == UL_OK)
            continue;
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(err, err_size, "%s: %.400s", kv[i][0], kerr);
            return UL_ERR_ARG;
        }
    }
    return UL_OK;
}

/* Resolves kafka.bootstrap.servers (after the local checks, so bad input is
 * reported even without a broker) and creates the producer. */
static rd_kafka_t *make_producer(ul_config *cfg, produce_ctx *ctx, const char *topic, char *err,
                                 size_t err_size) {
    char kerr[512];
    if (config_validate(cfg, 1, err, err_size) != UL_OK)
        return NULL;
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, KAFKA_PRODUCER, &ctx->log, err, err_size);
    if (conf == NULL)
        return NULL;
    if (strcmp(topic, cfg->topic_ratings) == 0 && bulk_batches(cfg, conf, err, err_size) != UL_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        snprintf(err, err_size, "cannot create the Kafka producer: %.400s", kerr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return check_reachable(cfg, rk, topic, err, err_size);
}

/* Flush and report; returns the exit code. */
static int finish(const char *what, rd_kafka_t *rk, produce_ctx *ctx, size_t sent) {
    char msg[1024];
    rd_kafka_flush(rk, FLUSH_TIMEOUT_MS);
    int pending = rd_kafka_outq_len(rk);
    if (ctx->failed == 0 && pending == 0)
        return CLI_EXIT_OK;
    snprintf(msg, sizeof(msg), "%zu of %zu %s not delivered (%zu failed%s%s, %d still queued)",
             ctx->failed + (size_t)pending, sent, what, ctx->failed, ctx->failed ? ": " : "",
             ctx->first_error, pending);
    return cli_fail("produce", msg);
}

/* ---- --writer-schema FILE --writer-id N ----------------------------------- */

typedef struct produce_writer {
    const char *path; /* NULL: our own schema */
    long id;          /* -1: not given */
    resolve *res;     /* ours (as the writer) -> FILE's schema */
    codec_buf body;
} produce_writer;

/* Consume --writer-schema / --writer-id at k (value v); 1 when it was one. */
static int writer_arg(produce_writer *w, const char *k, const char *v, char *err, size_t size,
                      int *bad) {
    *bad = 0;
    if (strcmp(k, "--writer-schema") == 0) {
        w->path = v;
        *bad = v == NULL;
        if (*bad)
            snprintf(err, size, "--writer-schema needs a file");
        return 1;
    }
    if (strcmp(k, "--writer-id") != 0)
        return 0;
    *bad = cli_parse_long(k, v, 0, INT32_MAX, &w->id, err, size) != 0;
    return 1;
}

static char *read_text(const char *path, char *err, size_t size) {
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        n < (1L << 20) && (text = malloc((size_t)n + 1)) != NULL &&
        fread(text, 1, (size_t)n, f) == (size_t)n) {
        text[n] = '\0';
    } else {
        free(text);
        text = NULL;
        snprintf(err, size, "--writer-schema %.200s: cannot read it%s", path,
                 n >= (1L << 20) ? " (over 1 MiB)" : "");
    }
    if (f)
        fclose(f);
    return text;
}

/* Check the options and build the resolution of our schema `name` into the
 * file's. UL_OK (also without --writer-schema) or UL_ERR_ARG with a message. */
static int writer_open(produce_writer *w, const char *name, char *err, size_t size) {
    if ((w->path == NULL) != (w->id < 0)) {
        snprintf(err, size, "--writer-schema FILE and --writer-id N go together");
        return UL_ERR_ARG;
    }
    if (w->path == NULL)
        return UL_OK;
    char why[256];
    const char *ours = codec_schema_text(name);
    char *text = read_text(w->path, err, size);
    avro_schema_t mine = NULL, theirs = NULL;
    int rc = UL_ERR_ARG;
    if (text == NULL)
        return UL_ERR_ARG;
    if (avro_schema_from_json_length(text, strlen(text), &theirs) != 0)
        snprintf(err, size, "--writer-schema %.200s: not an Avro schema: %.200s", w->path,
                 avro_strerror());
    else if (avro_schema_from_json_length(ours, strlen(ours), &mine) != 0)
        snprintf(err, size, "our %s schema does not parse: %s", name, avro_strerror());
    else if (!is_avro_record(theirs) ||
             strcmp(avro_schema_name(theirs), avro_schema_name(mine)) != 0)
        snprintf(err, size, "--writer-schema %.200s: not a %s record (it is %.100s)", w->path,
                 avro_schema_name(mine),
                 is_avro_record(theirs) ? avro_schema_name(theirs) : "not a record");
    else if ((rc = resolve_new(mine, text, &w->res, why, sizeof(why))) != UL_OK)
        snprintf(err, size, "--writer-schema %.150s: a %s cannot be written in it: %s", w->path,
                 name, why);
    if (theirs)
        avro_schema_decref(theirs);
    if (mine)
        avro_schema_decref(mine);
    free(text);
    return rc == UL_OK ? UL_OK : UL_ERR_ARG;
}

/* Rewrite the framed record in buf (our schema) into the writer schema,
 * framed with --writer-id. No-op without --writer-schema. */
static int writer_apply(produce_writer *w, codec_buf *buf, char *err, size_t size) {
    if (w->res == NULL)
        return UL_OK;
    if (resolve_transcode(w->res, buf->data + CODEC_HEADER_SIZE, buf->len - CODEC_HEADER_SIZE,
                          &w->body, err, size) != UL_OK)
        return UL_ERR_ARG;
    size_t len = CODEC_HEADER_SIZE + w->body.len;
    if (len > buf->cap) {
        uint8_t *d = realloc(buf->data, len);
        if (d == NULL) {
            snprintf(err, size, "out of memory");
            return UL_ERR_NOMEM;
        }
        buf->data = d;
        buf->cap = len;
    }
    uint32_t id = (uint32_t)w->id;
    uint8_t hdr[CODEC_HEADER_SIZE] = {0, (uint8_t)(id >> 24), (uint8_t)(id >> 16),
                                      (uint8_t)(id >> 8), (uint8_t)id};
    memcpy(buf->data, hdr, CODEC_HEADER_SIZE);
    memcpy(buf->data + CODEC_HEADER_SIZE, w->body.data, w->body.len);
    buf->len = len;
    return UL_OK;
}

static void writer_close(produce_writer *w) {
    resolve_destroy(w->res);
    codec_buf_free(&w->body);
}

/* ---- produce ratings ------------------------------------------------------ */

typedef struct ratings_args {
    const char *data;
    long rate;
    long limit;
    produce_writer writer;
} ratings_args;

static int parse_ratings_args(cli_config *cc, ratings_args *a) {
    char err[UL_ERRSTR_SIZE];
    a->data = NULL;
    a->rate = 0;
    a->limit = -1;
    a->writer = (produce_writer){NULL, -1, NULL, {0}};
    for (int i = 1; i < cc->args.n_rest; i++) {
        const char *k = cc->args.rest[i];
        const char *v = i + 1 < cc->args.n_rest ? cc->args.rest[i + 1] : NULL;
        int bad = 0;
        if (writer_arg(&a->writer, k, v, err, sizeof(err), &bad)) {
            if (bad)
                return cli_usage_error("produce", err);
        } else if (strcmp(k, "--data") == 0 && v) {
            a->data = v;
        } else if (strcmp(k, "--rate") == 0) {
            if (cli_parse_long(k, v, 0, 100000000, &a->rate, err, sizeof(err)))
                return cli_usage_error("produce", err);
        } else if (strcmp(k, "--limit") == 0) {
            if (cli_parse_long(k, v, 0, 2000000000, &a->limit, err, sizeof(err)))
                return cli_usage_error("produce", err);
        } else {
            snprintf(err, sizeof(err), "produce ratings: unexpected argument '%s'%s", k,
                     v ? "" : " (or missing value)");
            return cli_usage_error("produce", err);
        }
        i++;
    }
    if (a->data == NULL)
        return cli_usage_error("produce", "produce ratings: --data PATH is required");
    return CLI_EXIT_OK;
}

/* Sleep so that `sent` ratings take sent/rate seconds since t0. */
static void pace(double t0, size_t sent, long rate) {
    double ahead = (double)sent / (double)rate - (ul_clock_mono_s() - t0);
    if (ahead > 0.001) {
        struct timespec ts = {(time_t)ahead, (long)((ahead - (double)(time_t)ahead) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static int send_ratings(const cli_config *cc, const dataset *ds, const codec *cd, rd_kafka_t *rk,
                        produce_ctx *ctx, ratings_args *a, size_t *sent) {
    char err[UL_ERRSTR_SIZE], key[CODEC_KEY_MAX];
    codec_buf buf = {0};
    size_t n = a->limit >= 0 && (size_t)a->limit < ds->n_ratings ? (size_t)a->limit : ds->n_ratings;
    double t0 = ul_clock_mono_s(), last = t0;
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        const ul_rating *r = &ds->ratings[i];
        codec_rating ev = {ds->user_ids[r->user], ds->item_ids[r->item], r->value,
                           ds->has_time ? r->time * 1000 : r->time};
        int klen = codec_user_key(worker_key_format(cc->cfg), (int32_t)cc->cfg->key_schema_id,
                                  ev.user_id, key, sizeof(key));
        if (codec_encode_rating(cd, &ev, &buf, err, sizeof(err)) != CODEC_OK ||
            writer_apply(&a->writer, &buf, err, sizeof(err)) != UL_OK ||
            kafka_produce(rk, cc->cfg->topic_ratings, RD_KAFKA_PARTITION_UA, key, (size_t)klen,
                          buf.data, buf.len, NULL, -1, err, sizeof(err)) != UL_OK) {
            rc = cli_fail("produce", err);
            break;
        }
        *sent = i + 1;
        if (a->rate > 0 && (i & 63) == 63)
            pace(t0, *sent, a->rate);
        if ((i & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            double t = ul_clock_mono_s();
            if (t - last >= 1.0) {
                log_info(cc->log, "produce", "%zu/%zu ratings sent (%.0f/s), %zu delivered", *sent,
                         n, (double)*sent / (t - t0), ctx->delivered);
                last = t;
            }
        }
    }
    codec_buf_free(&buf);
    return rc;
}

/* The local mock broker silently drops a partition's oldest data beyond ~5
 * MiB: say so when it happened, rather than let a consumer miss ratings. */
static void warn_if_dropped(const cli_config *cc, rd_kafka_t *rk) {
    char err[UL_ERRSTR_SIZE];
    int64_t lo = 0, hi = 0;
    int parts = 0;
    if (kafka_topic_offsets(rk, cc->cfg->topic_ratings, 5000, &lo, &hi, &parts, err, sizeof(err)) !=
        UL_OK) {
        log_warn(cc->log, "produce", "%s", err);
        return;
    }
    if (lo > 0)
        log_warn(cc->log, "produce",
                 "the broker no longer holds the oldest %" PRId64 " of %" PRId64
                 " messages in %s (%d partitions): it dropped them (the local broker keeps "
                 "about 5 MiB per partition; use more partitions or a real Kafka, "
                 "docs/broker.md)",
                 lo, hi, cc->cfg->topic_ratings, parts);
}

static int produce_ratings(cli_config *cc) {
    char err[UL_ERRSTR_SIZE];
    ratings_args a;
    int rc = parse_ratings_args(cc, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    ds_load_opts lo;
    ds_load_opts_init(&lo);
    lo.rating_min = (float)cc->cfg->rating_min;
    lo.rating_max = (float)cc->cfg->rating_max;
    lo.dups = DS_DUP_LAST;
    lo.range_hint = CLI_STREAM_SCALE_HINT;
    produce_ctx ctx = {cc->log, 0, 0, ""};
    if (writer_open(&a.writer, "rating", err, sizeof(err)) != UL_OK)
        return cli_usage_error("produce", err);
    codec *cd = worker_codec_new(cc->cfg, err, sizeof(err));
    dataset *ds = cd ? ds_load(a.data, &lo, err, sizeof(err)) : NULL;
    rd_kafka_t *rk =
        ds ? make_producer(cc->cfg, &ctx, cc->cfg->topic_ratings, err, sizeof(err)) : NULL;
    if (rk == NULL) {
        rc = cli_fail("produce", err);
        goto done;
    }
    if (ds->n_duplicates)
        log_warn(cc->log, "produce", "%s: %zu earlier ratings of a repeated (user,item) skipped",
                 a.data, ds->n_duplicates);
    size_t sent = 0;
    double t0 = ul_clock_mono_s();
    rc = send_ratings(cc, ds, cd, rk, &ctx, &a, &sent);
    int frc = finish("ratings", rk, &ctx, sent);
    rc = rc != CLI_EXIT_OK ? rc : frc;
    double secs = ul_clock_mono_s() - t0;
    warn_if_dropped(cc, rk);
    printf("produced %zu ratings to %s from %s in %.2f s (%.0f/s): %zu delivered, %zu failed\n",
           sent, cc->cfg->topic_ratings, a.data, secs, secs > 0 ? (double)sent / secs : 0.0,
           ctx.delivered, sent - ctx.delivered);
done:
    if (rk)
        rd_kafka_destroy(rk);
    ds_destroy(ds);
    codec_destroy(cd);
    writer_close(&a.writer);
    return rc;
}

/* ---- produce forget --------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil algorithm, re-derived). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "1700000000000" (ms) or "2026-11-27T10:00:00[Z]" (UTC) -> ms. */
static int parse_time_ms(const char *opt, const char *s, int64_t *ms, char *err, size_t size) {
    long v;
    int y, mo, d, h, mi, sec, n = 0;
    if (s == NULL) {
        snprintf(err, size, "%s needs a time", opt);
        return -1;
    }
    if (strchr(s, '-') == NULL || *s == '-') {
        if (cli_parse_long(opt, s, 0, INT64_MAX / 2, &v, err, size))
            return -1;
        *ms = v;
        return 0;
    }
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        (s[n] != '\0' && strcmp(s + n, "Z") != 0) || mo < 1 || mo > 12 || d < 1 || d > 31 ||
        h > 23 || mi > 59 || sec > 60 || y < 1970) {
        snprintf(err, size, "%s: '%s' is neither ms since the epoch nor YYYY-MM-DDTHH:MM:SS[Z]",
                 opt, s);
        return -1;
    }
    *ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)sec * 1000;
    return 0;
}

static int parse_items(const char *s, codec_forget *fr, size_t max, char *err, size_t size) {
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    if (n > max) {
        snprintf(err, size, "--items: %zu ids, more than forget.max.items=%zu", n, max);
        return -1;
    }
    fr->items = calloc(n, sizeof(int64_t));
    if (fr->items == NULL) {
        snprintf(err, size, "out of memory");
        return -1;
    }
    const char *p = s;
    for (size_t i = 0; i < n; i++) {
        char tok[32];
        size_t len = strcspn(p, ",");
        long v;
        if (len == 0 || len >= sizeof(tok)) {
            snprintf(err, size, "--items: item %zu of '%s' is empty or too long", i + 1, s);
            return -1;
        }
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (cli_parse_long("--items", tok, 0, INT64_MAX, &v, err, size))
            return -1;
        fr->items[fr->n_items++] = v;
        p += len + (p[len] == ',');
    }
    return 0;
}

static int forget_arg(cli_config *cc, const char *k, const char *v, codec_forget *fr,
                      produce_writer *w, int *seen, char *err, size_t size) {
    long l;
    int bad = 0;
    if (writer_arg(w, k, v, err, size, &bad))
        return bad ? -1 : 0;
    if (v == NULL) {
        snprintf(err, size, "produce forget: %s needs a value", k);
        return -1;
    }
    if (strcmp(k, "--user") == 0) {
        if (cli_parse_long(k, v, 0, INT64_MAX, &l, err, size))
            return -1;
        fr->user_id = l;
        *seen |= 1;
    } else if (strcmp(k, "--items") == 0) {
        *seen |= 2;
        return parse_items(v, fr, (size_t)cc->cfg->forget_max_items, err, size);
    } else if (strcmp(k, "--from") == 0 || strcmp(k, "--to") == 0) {
        *seen |= k[2] == 'f' ? 4 : 8;
        return parse_time_ms(k, v, k[2] == 'f' ? &fr->window_from : &fr->window_to, err, size);
    } else if (strcmp(k, "--reason") == 0) {
        if (codec_reason_parse(v, &fr->reason) != UL_OK) {
            snprintf(err, size,
                     "--reason: '%s' is not one of MISTAKE, SOMEONE_ELSE, FAULTY_ACQUISITION, "
                     "LOST_INTEREST, ERASURE",
                     v);
            return -1;
        }
        *seen |= 16;
    } else if (strcmp(k, "--request-id") == 0) {
        if (*v == '\0' || strlen(v) > CODEC_REQUEST_ID_MAX) {
            snprintf(err, size, "--request-id: must be 1..%d bytes", CODEC_REQUEST_ID_MAX);
            return -1;
        }
        snprintf(fr->request_id, sizeof(fr->request_id), "%s", v);
    } else {
        snprintf(err, size, "produce forget: unexpected argument '%s'", k);
        return -1;
    }
    return 0;
}

/* One request's options (argv[0..argc), pairs "--key value") into fr. */
static int parse_forget_args(cli_config *cc, char *const *argv, int argc, codec_forget *fr,
                             produce_writer *w, char *err, size_t size) {
    int seen = 0;
    for (int i = 0; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (forget_arg(cc, argv[i], v, fr, w, &seen, err, size))
            return -1;
    }
    const char *missing =
        !(seen & 1)                        ? "--user ID is required"
        : !(seen & 16)                     ? "--reason R is required"
        : (seen & 2) && (seen & 12)        ? "give either --items or --from/--to, not both"
        : !(seen & 2) && (seen & 12) != 12 ? "give --items A,B,... or both --from and --to"
                                           : NULL;
    if (missing) {
        snprintf(err, size, "produce forget: %s", missing);
        return -1;
    }
    fr->has_window = (seen & 12) == 12;
    if (fr->request_id[0] == '\0')
        snprintf(fr->request_id, sizeof(fr->request_id), "fr-%" PRId64 "-%ld-%" PRId64,
                 ul_clock_wall_ms(), (long)getpid(), fr->user_id);
    fr->requested_at = ul_clock_wall_ms();
    return 0;
}

/* Encode one request and hand it to the producer. */
static int send_forget(cli_config *cc, const codec *cd, rd_kafka_t *rk, const codec_forget *fr,
                       produce_writer *w, codec_buf *buf, char *err, size_t size) {
    char key[CODEC_KEY_MAX];
    if (codec_encode_forget(cd, fr, buf, err, size) != CODEC_OK ||
        writer_apply(w, buf, err, size) != UL_OK)
        return -1;
    int klen = codec_user_key(worker_key_format(cc->cfg), (int32_t)cc->cfg->key_schema_id,
                              fr->user_id, key, sizeof(key));
    return kafka_produce(rk, cc->cfg->topic_forget, RD_KAFKA_PARTITION_UA, key, (size_t)klen,
                         buf->data, buf->len, NULL, -1, err, size) == UL_OK
               ? 0
               : -1;
}

/* --batch FILE: one request per line, its options as on the command line
 * (blank lines and lines starting with # skipped). Everything is parsed and
 * encoded before the first record is sent, so a bad line sends nothing. */
#define BATCH_MAX_TOKENS 16

typedef struct forget_batch {
    codec_forget *v;
    size_t n, cap;
    produce_writer w; /* --writer-schema: one for every request */
} forget_batch;

static void batch_free(forget_batch *b) {
    for (size_t i = 0; i < b->n; i++)
        codec_forget_clear(&b->v[i]);
    free(b->v);
}

/* Parse one request's options and add it to b; `where` prefixes an error
 * ("" on the command line). */
static int batch_add(cli_config *cc, char *const *argv, int argc, forget_batch *b,
                     const char *where, char *err, size_t size) {
    char e[UL_ERRSTR_SIZE];
    codec_forget *v = ul_grow(b->v, &b->cap, b->n + 1, sizeof(*v));
    if (v == NULL) {
        snprintf(err, size, "out of memory");
        return -1;
    }
    b->v = v;
    codec_forget *fr = &b->v[b->n++];
    memset(fr, 0, sizeof(*fr));
    if (parse_forget_args(cc, argv, argc, fr, &b->w, e, sizeof(e)) != 0) {
        snprintf(err, size, "%s%s", where, e);
        return -1;
    }
    if (b->n > 1 && strncmp(fr->request_id, "fr-", 3) == 0) /* generated: keep them distinct */
        snprintf(fr->request_id + strlen(fr->request_id),
                 sizeof(fr->request_id) - strlen(fr->request_id), "-%zu", b->n);
    return 0;
}

static int batch_line(cli_config *cc, char *line, size_t lineno, forget_batch *b, char *err,
                      size_t size) {
    char *tok[BATCH_MAX_TOKENS], *save = NULL, where[64];
    int n = 0;
    for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == BATCH_MAX_TOKENS) {
            snprintf(err, size, "--batch line %zu: more than %d words", lineno, BATCH_MAX_TOKENS);
            return -1;
        }
        tok[n++] = t;
    }
    if (n == 0 || tok[0][0] == '#')
        return 0;
    for (int i = 0; i < n; i++)
        if (strncmp(tok[i], "--writer-", 9) == 0) { /* would point into this line's buffer */
            snprintf(err, size, "--batch line %zu: %s is not supported with --batch", lineno,
                     tok[i]);
            return -1;
        }
    snprintf(where, sizeof(where), "--batch line %zu: ", lineno);
    return batch_add(cc, tok, n, b, where, err, size);
}

static int batch_load(cli_config *cc, const char *path, forget_batch *b, char *err, size_t size) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        snprintf(err, size, "--batch %s: cannot open it", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0)
        rc = batch_line(cc, line, ++lineno, b, err, size);
    free(line);
    if (f != stdin)
        fclose(f);
    if (rc == 0 && b->n == 0) {
        snprintf(err, size, "--batch %s: no requests in it", path);
        rc = -1;
    }
    return rc;
}

static int produce_forget(cli_config *cc) {
    char err[UL_ERRSTR_SIZE];
    forget_batch b = {.w = {NULL, -1, NULL, {0}}};
    codec_buf buf = {0};
    produce_ctx ctx = {cc->log, 0, 0, ""};
    rd_kafka_t *rk = NULL;
    int rc = CLI_EXIT_OK;
    char *const *argv = cc->args.rest + 1;
    int argc = cc->args.n_rest - 1;
    codec *cd = worker_codec_new(cc->cfg, err, sizeof(err));
    if (cd == NULL) {
        rc = cli_fail("produce", err);
        goto done;
    }
    int parsed = argc == 2 && strcmp(argv[0], "--batch") == 0
                     ? batch_load(cc, argv[1], &b, err, sizeof(err))
                     : batch_add(cc, argv, argc, &b, "", err, sizeof(err));
    if (parsed == 0 && writer_open(&b.w, "forget_request", err, sizeof(err)) != UL_OK)
        parsed = -1;
    for (size_t i = 0; parsed == 0 && i < b.n; i++)
        if (codec_encode_forget(cd, &b.v[i], &buf, err, sizeof(err)) != CODEC_OK ||
            writer_apply(&b.w, &buf, err, sizeof(err)) != UL_OK)
            parsed = -1;
    if (parsed != 0) {
        rc = cli_usage_error("produce", err);
        goto done;
    }
    rk = make_producer(cc->cfg, &ctx, cc->cfg->topic_forget, err, sizeof(err));
    for (size_t i = 0; rk && i < b.n; i++)
        if (send_forget(cc, cd, rk, &b.v[i], &b.w, &buf, err, sizeof(err)) != 0) {
            rc = cli_fail("produce", err);
            goto done;
        }
    if (rk == NULL) {
        rc = cli_fail("produce", err);
        goto done;
    }
    rc = finish("forget requests", rk, &ctx, b.n);
    for (size_t i = 0; rc == CLI_EXIT_OK && i < b.n; i++) {
        const codec_forget *fr = &b.v[i];
        printf("%s\n", fr->request_id);
        log_info(cc->log, "produce", "forget request %s for user %" PRId64 " (%s, %s) sent to %s",
                 fr->request_id, fr->user_id, codec_reason_name(fr->reason),
                 fr->has_window ? "time window" : "item list", cc->cfg->topic_forget);
    }
done:
    if (rk)
        rd_kafka_destroy(rk);
    codec_buf_free(&buf);
    batch_free(&b);
    codec_destroy(cd);
    writer_close(&b.w);
    return rc;
}

int cmd_produce(int argc, char **argv) {
    cli_config cc;
    int rc = cli_config_load("produce", argc, argv, &cc);
    if (rc == CLI_EXIT_OK && cc.args.help) {
        print_help();
        goto done;
    }
    if (rc == CLI_EXIT_OK && cc.args.dump) {
        config_dump(cc.cfg, stdout);
        goto done;
    }
    if (rc != CLI_EXIT_OK)
        goto done;
    const char *what = cc.args.n_rest > 0 ? cc.args.rest[0] : "";
    if (strcmp(what, "ratings") != 0 && strcmp(what, "forget") != 0) {
        rc = cli_usage_error("produce",
                             "say what to produce: `produce ratings` or `produce forget`");
        goto done;
    }
    rc = cli_config_ready("produce", &cc, 0);
    if (rc == CLI_EXIT_OK)
        rc = strcmp(what, "ratings") == 0 ? produce_ratings(&cc) : produce_forget(&cc);
done:
    cli_config_free(&cc);
    return rc;
}
