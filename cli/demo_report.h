/* demo_report.h: what cmd_demo.c (options, the run) and demo_report.c
 * (the printed top-10 tables and figures) share: the demo's state, each
 * chosen user's forget request with its before/after/retrain lists, and
 * the two calls that cross between them. */
#ifndef UL_DEMO_REPORT_H
#define UL_DEMO_REPORT_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "dataset.h"
#include "demo_stack.h"
#include "log.h"
#include "topic_model.h"

#define DEMO_TOP 10
#define MAX_FORGET_USERS 1000
#define MAX_FORGET_ITEMS 100

typedef struct demo_args {
    const char *data; /* NULL: ML-100K if found, else synthetic */
    int synthetic;
    long synth_ratings;
    long forget_users;
    long forget_items;
    long forget_interval_ms;
    long show;
    long partitions;
    long timeout_s;
    uint64_t seed;
    int verbose;
} demo_args;

typedef struct snapshot {
    int64_t top[DEMO_TOP];
    float score[DEMO_TOP];
    int n_top;
    double forgot_mean; /* mean predicted score of the forgotten items */
    int n_forgot_known;
} snapshot;

typedef struct demo_user {
    int64_t user;
    codec_reason reason;
    int64_t items[MAX_FORGET_ITEMS];
    float ratings[MAX_FORGET_ITEMS];
    int n_items;
    char request_id[64];
    int64_t sent_ms, receipt_ms; /* monotonic; receipt_ms 0 = not yet */
    codec_receipt receipt;
    snapshot before, after;
    snapshot retrain; /* the offline retrain without the forgotten ratings */
} demo_user;

typedef struct demo {
    ul_log *log; /* first: the rd_kafka_t opaque (log_kafka_conf) */
    const demo_args *a;
    ul_config *cfg;
    dataset *ds;
    codec *cd;
    demo_stack *stack;
    rd_kafka_t *producer;
    rd_kafka_t *receipts; /* consumer of the receipts topic */
    size_t delivery_failures;
    demo_user *users;
    int n_users;
    int64_t t0_ms, feed_ms;
    size_t n_timed; /* ratings in the timed part of the ingest */
    double produce_s, ingest_s;
    uint64_t applied;
    topic_model_info topic; /* the factors topic as a server rebuilds it */
    int32_t topic_users, topic_items;
    double topic_max_diff; /* largest |topic score - Redis score| of the "after" */
    double retrain_s;      /* the offline retrain's training time */
} demo;

/* 1 if item is one of u's forgotten items (cmd_demo.c). */
int demo_user_forgets(const demo_user *u, int64_t item);

/* Print to stdout the top-10 table of the first --show users and the run's
 * figures (demo_report.c). */
void demo_report_print(const demo *d);

#endif
