/* demo_report.c: what `unlearnd demo` prints on stdout once the run is
 * over: each shown user's top-10 before, after and in the retrain without
 * the forgotten ratings, and the run's figures (ingest throughput, forget
 * latency, forgotten items' scores and list counts, the factors topic
 * check, the settings). Reads the demo's state, never changes it. */
#include "demo_report.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int in_top(const snapshot *s, int64_t item) {
    for (int r = 0; r < s->n_top; r++)
        if (s->top[r] == item)
            return 1;
    return 0;
}

/* Forgotten items of u in s's list; with keep, only those it (the
 * retrain's list) does not hold. */
static int forgotten_in(const demo_user *u, const snapshot *s, const snapshot *keep) {
    int n = 0;
    for (int r = 0; r < s->n_top; r++)
        n += demo_user_forgets(u, s->top[r]) && (keep == NULL || !in_top(keep, s->top[r]));
    return n;
}

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static void print_user_table(const demo_user *u) {
    double rated = 0.0;
    for (int i = 0; i < u->n_items; i++)
        rated += u->ratings[i];
    printf("\nuser %" PRId64 " (%s): %d ratings forgotten, receipt %.2f s after the request\n",
           u->user, codec_reason_name(u->reason), (int)u->receipt.forgotten,
           (double)(u->receipt_ms - u->sent_ms) / 1000.0);
    printf("  rank   before             after              retrain without them   "
           "(* = a forgotten item)\n");
    for (int r = 0; r < DEMO_TOP; r++) {
        printf("  %4d", r + 1);
        const snapshot *s[3] = {&u->before, &u->after, &u->retrain};
        for (int k = 0; k < 3; k++) {
            if (r < s[k]->n_top)
                printf("   %c%-8" PRId64 " %6.3f", demo_user_forgets(u, s[k]->top[r]) ? '*' : ' ',
                       s[k]->top[r], (double)s[k]->score[r]);
            else
                printf("   %-16s", "-");
        }
        printf("\n");
    }
    printf("  forgotten items: mean predicted score %.3f before, %.3f after, %.3f in the "
           "retrain (their ratings averaged %.2f); in the top-10: %d before, %d after, %d in "
           "the retrain's; %d stay where the retrain drops them\n",
           u->before.forgot_mean, u->after.forgot_mean, u->retrain.forgot_mean, rated / u->n_items,
           forgotten_in(u, &u->before, NULL), forgotten_in(u, &u->after, NULL),
           forgotten_in(u, &u->retrain, NULL), forgotten_in(u, &u->after, &u->retrain));
}

/* Distinct items over the users' lists of one kind (0 before, 1 after, 2
 * the retrain's). */
static int distinct_items(const demo *d, int kind) {
    int64_t *v = malloc(((size_t)d->n_users * DEMO_TOP + 1) * sizeof(*v));
    int n = 0, distinct = 0;
    if (v == NULL)
        return -1;
    for (int i = 0; i < d->n_users; i++) {
        const demo_user *u = &d->users[i];
        const snapshot *s = kind == 0 ? &u->before : kind == 1 ? &u->after : &u->retrain;
        for (int r = 0; r < s->n_top; r++)
            v[n++] = s->top[r];
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    for (int j = 0; j < n; j++)
        distinct += j == 0 || v[j] != v[j - 1];
    free(v);
    return distinct;
}

/* Nearest-rank percentile of a sorted array. */
static int64_t percentile(const int64_t *v, int n, double q) {
    int rank = (int)ceil(q * n);
    return v[rank < 1 ? 0 : rank - 1];
}

static void print_figures(const demo *d) {
    int n = d->n_users;
    int64_t lat[MAX_FORGET_USERS], work[MAX_FORGET_USERS];
    double before = 0.0, after = 0.0;
    int top_before = 0, top_after = 0, top_retrain = 0, stay = 0;
    int nb = 0, forgot_total = 0;
    for (int i = 0; i < n; i++) {
        const demo_user *u = &d->users[i];
        lat[i] = u->receipt_ms - u->sent_ms;
        work[i] = u->receipt.completed_at - u->receipt.received_at;
        forgot_total += u->receipt.forgotten;
        if (!isnan(u->before.forgot_mean) && !isnan(u->after.forgot_mean)) {
            before += u->before.forgot_mean;
            after += u->after.forgot_mean;
            nb++;
        }
        top_before += forgotten_in(u, &u->before, NULL);
        top_after += forgotten_in(u, &u->after, NULL);
        top_retrain += forgotten_in(u, &u->retrain, NULL);
        stay += forgotten_in(u, &u->after, &u->retrain);
    }
    qsort(lat, (size_t)n, sizeof(lat[0]), cmp_i64);
    qsort(work, (size_t)n, sizeof(work[0]), cmp_i64);
    printf("\nFigures (broker, Redis and worker share this machine's cores):\n");
    printf("  ingest: %zu ratings in %.2f s = %.0f ratings/s end to end (produced in %.2f s; "
           "applied to m1 and checkpointed to Redis; after a warm-up of %zu)\n",
           d->n_timed, d->ingest_s, (double)d->n_timed / d->ingest_s, d->produce_s,
           d->ds->n_ratings - d->n_timed);
    printf("  forget latency (request produced -> receipt consumed): n=%d p50=%" PRId64
           " ms p99=%" PRId64 " ms max=%" PRId64 " ms; inside the worker p50=%" PRId64 " ms\n",
           n, percentile(lat, n, 0.5), percentile(lat, n, 0.99), lat[n - 1],
           percentile(work, n, 0.5));
    printf("  forgotten: %d ratings of %d users; their items' mean predicted score %.3f before, "
           "%.3f after; forgotten items in those users' top-10: %d before, %d after\n",
           forgot_total, n, nb ? before / nb : NAN, nb ? after / nb : NAN, top_before, top_after);
    printf("  retrain without them (offline MF, %.2f s): %d forgotten items in its top-10 lists; "
           "%d stay in an \"after\" list where the retrain drops them\n",
           d->retrain_s, top_retrain, stay);
    printf("  top-10 lists of the %d users: %d distinct items before, %d after, %d in the "
           "retrain's\n",
           n, distinct_items(d, 0), distinct_items(d, 1), distinct_items(d, 2));
    printf("  factors topic: %" PRId64 " records rebuild the whole model (%d users, %d items, "
           "model version %" PRId64 "); these users' \"after\" scores from it equal Redis's "
           "(max |diff| %.1e)\n",
           d->topic.messages, (int)d->topic_users, (int)d->topic_items, d->topic.max_version,
           d->topic_max_diff);
    printf("  settings: method %s, k=%ld, cycle.interval.ms=%ld, checkpoint.interval.ms=%ld, "
           "publish.interval.ms=%ld, %d partitions\n",
           d->cfg->method, d->cfg->model_k, d->cfg->cycle_interval_ms,
           d->cfg->checkpoint_interval_ms, d->cfg->publish_interval_ms,
           (int)demo_stack_partitions(d->stack));
}

void demo_report_print(const demo *d) {
    for (int i = 0; i < d->n_users && i < d->a->show; i++)
        print_user_table(&d->users[i]);
    print_figures(d);
}
