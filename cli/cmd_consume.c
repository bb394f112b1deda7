/* cmd_consume.c: `unlearnd consume`, a debugging reader for our topics: reads
 * a topic from the beginning (no consumer group offsets are committed),
 * decodes each record with the codec matching the topic and prints one line
 * per message, then the count. Used by the integration tests to check what
 * the producers and the worker wrote. */
#include "cli.h"
#include "cli_config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "kafka.h"
#include "ul_clock.h"
#include "ul_err.h"
#include "worker.h"

#define MAX_PARTITIONS 1024

typedef struct consume_args {
    const char *topic;
    long count;      /* stop after this many; -1 = everything present at start */
    long timeout_ms; /* give up after this long */
    int quiet;       /* only the final count */
} consume_args;

typedef struct consumer_ctx {
    ul_log *log; /* first: the rd_kafka_t's opaque */
} consumer_ctx;

static void print_help(void) {
    printf("Usage: unlearnd consume --topic T [--count N] [--timeout-ms MS] [--quiet] [options]\n\n"
           "Reads topic T from the beginning of every partition without joining a consumer\n"
           "group or committing offsets, and prints one line per message: partition, offset,\n"
           "key and the decoded record (ratings, forget requests, factors and receipts are\n"
           "decoded with the configured schema ids; dead-letter messages show their error\n"
           "headers). Then prints `consumed N messages from T`.\n\n"
           "  --topic T        topic to read (required)\n"
           "  --count N        stop after N messages; exit 1 if fewer arrive in time\n"
           "                   (default: read what the topic holds when the command starts)\n"
           "  --timeout-ms MS  give up after MS milliseconds (default 10000)\n"
           "  --quiet          print only the final count\n\n"
           "Kafka settings, topic names and schema ids come from the configuration\n"
           "(listed below).\n");
    printf("\n");
    config_print_help(stdout);
}

static int parse_args(cli_config *cc, consume_args *a) {
    char err[UL_ERRSTR_SIZE];
    a->topic = NULL;
    a->count = -1;
    a->timeout_ms = 10000;
    a->quiet = 0;
    for (int i = 0; i < cc->args.n_rest; i++) {
        const char *k = cc->args.rest[i];
        const char *v = i + 1 < cc->args.n_rest ? cc->args.rest[i + 1] : NULL;
        if (strcmp(k, "--quiet") == 0) {
            a->quiet = 1;
            continue;
        }
        if (strcmp(k, "--topic") == 0 && v) {
            a->topic = v;
        } else if (strcmp(k, "--count") == 0) {
            if (cli_parse_long(k, v, 0, 2000000000, &a->count, err, sizeof(err)))
                return cli_usage_error("consume", err);
        } else if (strcmp(k, "--timeout-ms") == 0) {
            if (cli_parse_long(k, v, 1, 86400000, &a->timeout_ms, err, sizeof(err)))
                return cli_usage_error("consume", err);
        } else {
            snprintf(err, sizeof(err), "unexpected argument '%s'%s", k,
                     v ? "" : " (or missing value)");
            return cli_usage_error("consume", err);
        }
        i++;
    }
    if (a->topic == NULL)
        return cli_usage_error("consume", "--topic T is required");
    return CLI_EXIT_OK;
}

static void print_forget(const codec_forget *fr) {
    printf("forget %s user=%" PRId64 " reason=%s", fr->request_id, fr->user_id,
           codec_reason_name(fr->reason));
    if (fr->has_window) {
        printf(" window=%" PRId64 "..%" PRId64, fr->window_from, fr->window_to);
    } else {
        printf(" items=");
        for (size_t i = 0; i < fr->n_items; i++)
            printf("%s%" PRId64, i ? "," : "", fr->items[i]);
    }
    printf(" requested_at=%" PRId64 "\n", fr->requested_at);
}

static void print_factor(const codec_factor *f) {
    printf("factor v%" PRId64 " %s %" PRId64 " bias=%g dim=%d [", f->model_version,
           f->kind == CODEC_KIND_USER ? "user" : "item", f->id, (double)f->bias, f->dim);
    for (int i = 0; i < f->dim && i < 4; i++)
        printf("%s%.4f", i ? " " : "", (double)f->vector[i]);
    printf("%s]\n", f->dim > 4 ? " ..." : "");
}

/* Decode and print the value of one message according to its topic. */
static void print_value(const ul_config *cfg, const codec *cd, const rd_kafka_message_t *rkm) {
    char err[UL_ERRSTR_SIZE], h1[64], h2[512];
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    int rc = CODEC_OK;
    if (strcmp(topic, cfg->topic_ratings) == 0) {
        codec_rating r;
        if ((rc = codec_decode_rating(cd, rkm->payload, rkm->len, &r, err, sizeof(err))) == 0)
            printf("rating user=%" PRId64 " item=%" PRId64 " rating=%g time=%" PRId64 "\n",
                   r.user_id, r.item_id, (double)r.rating, r.event_time);
    } else if (strcmp(topic, cfg->topic_forget) == 0) {
        codec_forget fr;
        if ((rc = codec_decode_forget(cd, rkm->payload, rkm->len, &fr, err, sizeof(err))) == 0)
            print_forget(&fr);
        codec_forget_clear(&fr);
    } else if (strcmp(topic, cfg->topic_factors) == 0) {
        codec_factor f;
        if ((rc = codec_decode_factor(cd, rkm->payload, rkm->len, &f, err, sizeof(err))) == 0)
            print_factor(&f);
        codec_factor_clear(&f);
    } else if (strcmp(topic, cfg->topic_receipts) == 0) {
        codec_receipt r;
        if ((rc = codec_decode_receipt(cd, rkm->payload, rkm->len, &r, err, sizeof(err))) == 0)
            printf("receipt %s user=%" PRId64 " forgotten=%" PRId32 " version=%" PRId64
                   " received_at=%" PRId64 " completed_at=%" PRId64 " requested=%" PRId32
                   " not_found=%" PRId32 " beyond_retention=%" PRId32 "\n",
                   r.request_id, r.user_id, r.forgotten, r.model_version, r.received_at,
                   r.completed_at, r.requested, r.not_found, r.beyond_retention);
    } else {
        if (kafka_header_text(rkm, "error.code", h1, sizeof(h1)) != 0)
            snprintf(h1, sizeof(h1), "-");
        if (kafka_header_text(rkm, "error.message", h2, sizeof(h2)) != 0)
            snprintf(h2, sizeof(h2), "-");
        printf("%zu bytes error.code=%s error.message=%s\n", rkm->len, h1, h2);
    }
    if (rc != CODEC_OK)
        printf("undecodable (%s): %s\n", codec_err_name(rc), err);
}

/* Assign every partition of the topic at its beginning; *expected is the sum
 * of the messages present now. */
static int assign_all(rd_kafka_t *rk, const char *topic, long *expected, char *err, size_t size) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        snprintf(err, size, "topic %s: %s", topic,
                 rd_kafka_err2str(e               ? e
                                  : md->topic_cnt ? md->topics[0].err
                                                  : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        if (md)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    *expected = 0;
    for (int p = 0; p < n && p < MAX_PARTITIONS; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        *expected += (long)(hi - lo);
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    e = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) {
        snprintf(err, size, "assigning %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static long read_messages(cli_config *cc, const codec *cd, rd_kafka_t *rk, const consume_args *a,
                          long want) {
    long got = 0;
    double deadline = ul_clock_mono_s() + (double)a->timeout_ms / 1000.0;
    while (got < want && ul_clock_mono_s() < deadline) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 100);
        if (rkm == NULL)
            continue;
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            got++;
            if (!a->quiet) {
                printf("[%" PRId32 "] @%" PRId64 " key=%.*s ", rkm->partition, rkm->offset,
                       (int)rkm->key_len, rkm->key ? (const char *)rkm->key : "");
                print_value(cc->cfg, cd, rkm);
            }
        } else if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            log_warn(cc->log, "consume", "%s", rd_kafka_message_errstr(rkm));
        }
        rd_kafka_message_destroy(rkm);
    }
    return got;
}

static int consume(cli_config *cc, const consume_args *a) {
    char err[UL_ERRSTR_SIZE];
    consumer_ctx ctx = {cc->log};
    long expected = 0;
    int rc = CLI_EXIT_OK;
    codec *cd = worker_codec_new(cc->cfg, err, sizeof(err));
    rd_kafka_t *rk =
        cd ? kafka_client_new(cc->cfg, KAFKA_CONSUMER, &ctx.log, NULL, err, sizeof(err)) : NULL;
    if (rk == NULL || assign_all(rk, a->topic, &expected, err, sizeof(err)) != 0) {
        rc = cli_fail("consume", err);
        goto done;
    }
    long want = a->count >= 0 ? a->count : expected;
    long got = read_messages(cc, cd, rk, a, want);
    printf("consumed %ld messages from %s\n", got, a->topic);
    if (got < want) {
        snprintf(err, sizeof(err), "only %ld of %ld messages arrived within %ld ms", got, want,
                 a->timeout_ms);
        rc = cli_fail("consume", err);
    }
    rd_kafka_consumer_close(rk);
done:
    if (rk)
        rd_kafka_destroy(rk);
    codec_destroy(cd);
    return rc;
}

int cmd_consume(int argc, char **argv) {
    cli_config cc;
    consume_args a;
    int rc = cli_config_load("consume", argc, argv, &cc);
    if (rc == CLI_EXIT_OK && cc.args.help) {
        print_help();
        goto done;
    }
    if (rc == CLI_EXIT_OK)
        rc = parse_args(&cc, &a);
    if (rc == CLI_EXIT_OK && cc.args.dump) {
        config_dump(cc.cfg, stdout);
        goto done;
    }
    if (rc == CLI_EXIT_OK)
        rc = cli_config_ready("consume", &cc, 1);
    if (rc == CLI_EXIT_OK)
        rc = consume(&cc, &a);
done:
    cli_config_free(&cc);
    return rc;
}
