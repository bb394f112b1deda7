/* cmd_state.c: `unlearnd state`, a read-only look at the worker's state in
 * Redis: per-partition counters and offsets, or one user's row, history and
 * predicted scores. For operators and the integration tests (which assert
 * on these lines instead of poking Redis keys). */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_config.h"
#include "config.h"
#include "live.h"
#include "mf.h"
#include "rows.h"
#include "store.h"
#include "ul_err.h"
#include "worker.h"

#define CMD "state"
#define MAX_ITEMS 1000

typedef struct state_opts {
    long partition; /* -1 = all */
    int64_t user;
    int have_user;
    int64_t items[MAX_ITEMS];
    int n_items;
    int history;
    const char *export_path;       /* --export-model */
    int64_t stat_items[MAX_ITEMS]; /* --item-stats */
    int n_stat_items;
} state_opts;

static void state_help(void) {
    printf("Usage: unlearnd state [--partition P] [--user ID [--items A,B,...] [--history]]\n"
           "                      [--item-stats A,B,...] [--export-model PATH]\n"
           "                      [--config FILE] [--redis.host H --redis.port N ...]\n\n"
           "Print the stream worker's state from Redis (read-only).\n\n"
           "Without --user, one line per partition (all, or only --partition P):\n"
           "  partition=P applied=N forgotten=N version=N forget_received=N\n"
           "  forget_completed=N pending=N dead_letters=N offset.ratings=N offset.forget=N\n"
           "  offset.item_updates=N epoch=N\n"
           "followed by a 'total' line summing them. Offsets are -1 before the first\n"
           "checkpoint.\n\n"
           "With --user ID: the user's partition, bias, number of remembered ratings and,\n"
           "for each item of --items, the predicted score (unclipped) as\n"
           "  item=I score=S rated=0|1\n"
           "With --history, the remembered ratings as 'hist item=I rating=R time=T'.\n\n"
           "With --item-stats A,B,...: each item's home partition, its exact statistics\n"
           "(the ratings behind it and their sum, as of the home's last checkpoint) and\n"
           "its stored row's bias (as of the home's last row flush) as\n"
           "  item=I home=P count=N sum=S bias=B (bias=none before the first flush)\n\n"
           "With --export-model PATH: write the live model m1 as stored (user rows of all\n"
           "partitions; item rows from their home partitions) to a model file that\n"
           "'unlearnd score' and 'unlearnd recommend' read. Run it when the workers are\n"
           "stopped (or idle for rows.flush.interval.ms): item rows are written at row\n"
           "flushes, user rows at checkpoints.\n\n"
           "Options:\n"
           "  --partition P    only this partition (default: all)\n"
           "  --user ID        one user (raw id)\n"
           "  --items A,B,...  items to score for --user (up to %d)\n"
           "  --history        print the user's remembered ratings\n"
           "  --item-stats A,B,...  items' statistics and stored bias (up to %d)\n"
           "  --export-model PATH  write the whole live model to a model file\n"
           "  --config FILE    worker config file; redis.* and topic.* options apply\n"
           "  --help           show this help\n\n"
           "Exit status: 0 success, 1 Redis unreachable or no state yet, 2 bad usage.\n",
           MAX_ITEMS, MAX_ITEMS);
}

static int parse_items(const char *name, const char *s, int64_t *items, int *n, char *err,
                       size_t size) {
    char *copy = strdup(s), *save = NULL;
    if (copy == NULL)
        return -1;
    *n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (*n == MAX_ITEMS || cli_parse_u64(name, t, &v, err, size) != 0) {
            if (*n == MAX_ITEMS)
                ul_set_err(err, size, "%s: more than %d items", name, MAX_ITEMS);
            free(copy);
            return -1;
        }
        items[(*n)++] = (int64_t)v;
    }
    free(copy);
    if (*n == 0) {
        ul_set_err(err, size, "%s: empty list", name);
        return -1;
    }
    return 0;
}

static int state_parse(int n, char **rest, state_opts *o, char *err, size_t size) {
    o->partition = -1;
    for (int a = 0; a < n; a++) {
        const char *name = rest[a];
        if (strcmp(name, "--history") == 0) {
            o->history = 1;
            continue;
        }
        if (strcmp(name, "--partition") != 0 && strcmp(name, "--user") != 0 &&
            strcmp(name, "--items") != 0 && strcmp(name, "--export-model") != 0 &&
            strcmp(name, "--item-stats") != 0) {
            ul_set_err(err, size, "unknown option '%s'", name);
            return -1;
        }
        if (a + 1 >= n) {
            ul_set_err(err, size, "%s needs a value", name);
            return -1;
        }
        const char *val = rest[++a];
        uint64_t u;
        if (strcmp(name, "--export-model") == 0) {
            o->export_path = val;
        } else if (strcmp(name, "--partition") == 0) {
            if (cli_parse_long(name, val, 0, 100000, &o->partition, err, size) != 0)
                return -1;
        } else if (strcmp(name, "--user") == 0) {
            if (cli_parse_u64(name, val, &u, err, size) != 0)
                return -1;
            o->user = (int64_t)u;
            o->have_user = 1;
        } else if (strcmp(name, "--item-stats") == 0) {
            if (parse_items(name, val, o->stat_items, &o->n_stat_items, err, size) != 0)
                return -1;
        } else if (parse_items(name, val, o->items, &o->n_items, err, size) != 0) {
            return -1;
        }
    }
    if (o->n_stat_items > 0 && (o->have_user || o->export_path)) {
        ul_set_err(err, size, "--item-stats goes alone (no --user or --export-model)");
        return -1;
    }
    if (o->export_path && (o->have_user || o->partition >= 0)) {
        ul_set_err(err, size, "--export-model exports every partition: no --user or --partition");
        return -1;
    }
    if ((o->n_items > 0 || o->history) && !o->have_user) {
        ul_set_err(err, size, "--items and --history need --user");
        return -1;
    }
    return 0;
}

static int print_item_stats(store *st, const store_model *m, const state_opts *o) {
    char err[UL_ERRSTR_SIZE];
    int dim = rows_dim(ROWS_ITEM, m->k);
    float *row = malloc((size_t)dim * sizeof(float));
    if (row == NULL)
        return cli_fail(CMD, "out of memory");
    for (int i = 0; i < o->n_stat_items; i++) {
        int64_t item = o->stat_items[i];
        int32_t home = rows_item_partition(item, m->partitions);
        int found = 0;
        rows_stats sv;
        if (store_item_get(st, home, item, row, dim, &found, &sv, err, sizeof(err)) != UL_OK) {
            free(row);
            return cli_fail(CMD, err);
        }
        printf("item=%" PRId64 " home=%d count=%" PRId64 " sum=%.17g", item, (int)home, sv.count,
               sv.sum);
        if (found)
            printf(" bias=%.6f\n", (double)row[ROWS_BIAS]);
        else
            printf(" bias=none\n");
    }
    free(row);
    return CLI_EXIT_OK;
}

static int print_partitions(store *st, const store_model *m, const state_opts *o) {
    char err[UL_ERRSTR_SIZE];
    shard_meta t;
    memset(&t, 0, sizeof(t));
    size_t pending_total = 0;
    for (int32_t p = 0; p < m->partitions; p++) {
        if (o->partition >= 0 && p != o->partition)
            continue;
        shard_meta meta;
        int found = 0;
        size_t pending = 0;
        if (store_meta_get(st, p, &meta, &found, err, sizeof(err)) != UL_OK ||
            store_pending_count(st, p, &pending, err, sizeof(err)) != UL_OK)
            return cli_fail(CMD, err);
        printf("partition=%d applied=%" PRIu64 " forgotten=%" PRIu64 " version=%" PRIu64
               " forget_received=%" PRIu64 " forget_completed=%" PRIu64
               " pending=%zu dead_letters=%" PRIu64,
               (int)p, meta.applied, meta.forgotten, meta.version, meta.forget_received,
               meta.forget_completed, pending, meta.dead_letters);
        for (int i = 0; i < SHARD_N_INPUTS; i++)
            printf(" offset.%s=%" PRId64, worker_input_label(i), meta.next_offset[i]);
        printf(" epoch=%" PRIu64 "\n", meta.epoch);
        t.applied += meta.applied;
        t.forgotten += meta.forgotten;
        t.forget_received += meta.forget_received;
        t.forget_completed += meta.forget_completed;
        t.dead_letters += meta.dead_letters;
        pending_total += pending;
    }
    if (o->partition >= m->partitions)
        return cli_fail(CMD, "no such partition");
    printf("total applied=%" PRIu64 " forgotten=%" PRIu64 " forget_received=%" PRIu64
           " forget_completed=%" PRIu64 " pending=%zu dead_letters=%" PRIu64 "\n",
           t.applied, t.forgotten, t.forget_received, t.forget_completed, pending_total,
           t.dead_letters);
    return CLI_EXIT_OK;
}

/* Copy every partition's user rows and every item row (from its home
 * partition) into an mf_model. */
static mf_model *collect_model(live *l, const store_model *m, char *err, size_t size) {
    int32_t n_users = 0;
    for (int32_t p = 0; p < m->partitions; p++) {
        shard *s = live_assign(l, p, NULL, err, size);
        if (s == NULL)
            return NULL;
        n_users += rowset_size(s->users);
    }
    const rowset *items = live_items(l);
    int k = live_k(l);
    mf_model *mf = mf_model_new(n_users, rowset_size(items), k, err, size);
    int64_t *uids = malloc(((size_t)n_users + 1) * sizeof(*uids));
    int64_t *iids = malloc(((size_t)rowset_size(items) + 1) * sizeof(*iids));
    if (mf == NULL || uids == NULL || iids == NULL) {
        ul_set_err(err, size, "out of memory exporting %d users", (int)n_users);
        goto fail;
    }
    int32_t u = 0;
    for (int32_t p = 0; p < m->partitions; p++) {
        shard *s = live_shard(l, p);
        for (int32_t i = 0; i < rowset_size(s->users); i++, u++) {
            uids[u] = rowset_key(s->users, i);
            rows_to_model(rowset_row_const(s->users, i), ROWS_USER, mf, u);
        }
    }
    for (int32_t i = 0; i < rowset_size(items); i++) {
        iids[i] = rowset_key(items, i);
        rows_to_model(rowset_row_const(items, i), ROWS_ITEM, mf, i);
    }
    mf->global_mean = live_global_mean(l);
    mf->rating_min = m->rating_min;
    mf->rating_max = m->rating_max;
    if (mf_model_set_ids(mf, uids, iids) != UL_OK) {
        ul_set_err(err, size, "out of memory exporting the ids");
        goto fail;
    }
    free(uids);
    free(iids);
    return mf;
fail:
    free(uids);
    free(iids);
    mf_model_destroy(mf);
    return NULL;
}

static int export_model(store *st, const store_model *m, const state_opts *o) {
    char err[UL_ERRSTR_SIZE];
    live *l = cli_state_live(st, m, err, sizeof(err));
    mf_model *mf = l ? collect_model(l, m, err, sizeof(err)) : NULL;
    int rc = mf ? mf_save(mf, o->export_path, err, sizeof(err)) : UL_ERR_IO;
    if (rc == UL_OK)
        printf("exported %d users and %d items (k=%d, mean %.4f) from %d partitions to %s\n",
               (int)mf->n_users, (int)mf->n_items, mf->k, (double)mf->global_mean,
               (int)m->partitions, o->export_path);
    mf_model_destroy(mf);
    live_destroy(l);
    return rc == UL_OK ? CLI_EXIT_OK : cli_fail(CMD, err);
}

static int print_user(const ul_config *cfg, store *st, const store_model *m, const state_opts *o) {
    char err[UL_ERRSTR_SIZE];
    int32_t p = worker_user_partition(cfg, o->user, m->partitions); /* as key.format keys it */
    live *l = cli_state_live(st, m, err, sizeof(err));
    shard *s = l ? live_assign(l, p, NULL, err, sizeof(err)) : NULL;
    if (s == NULL) {
        live_destroy(l);
        return cli_fail(CMD, err);
    }
    int32_t ui = rowset_find(s->users, o->user);
    printf("user=%" PRId64 " partition=%d known=%d", o->user, (int)p, ui >= 0);
    hist *h = ui >= 0 ? shard_hist(s, ui) : NULL;
    if (ui >= 0)
        printf(" bias=%.4f remembered=%u", (double)rowset_row(s->users, ui)[ROWS_BIAS],
               h ? h->n : 0);
    printf("\n");
    for (int i = 0; i < o->n_items; i++) {
        int found = 0, rated = 0;
        float score = live_predict(l, s, o->user, o->items[i], &found);
        for (uint32_t e = 0; h && e < h->n; e++)
            rated |= h->v[h->start + e].item == o->items[i];
        printf("item=%" PRId64 " score=%.4f rated=%d known=%d\n", o->items[i], (double)score, rated,
               found);
    }
    for (uint32_t e = 0; o->history && h && e < h->n; e++) {
        const hist_entry *he = &h->v[h->start + e];
        printf("hist item=%" PRId64 " rating=%g time=%" PRId64 "\n", he->item, (double)he->rating,
               he->time);
    }
    live_destroy(l);
    return CLI_EXIT_OK;
}

static int state_parse_opts(int n, char **rest, void *opts, char *err, size_t size) {
    return state_parse(n, rest, opts, err, size);
}

static int state_run(cli_config *cc, store *st, const store_model *m, void *opts) {
    const state_opts *o = opts;
    if (o->export_path)
        return export_model(st, m, o);
    if (o->n_stat_items > 0)
        return print_item_stats(st, m, o);
    return o->have_user ? print_user(cc->cfg, st, m, o) : print_partitions(st, m, o);
}

int cmd_state(int argc, char **argv) {
    static const cli_state_cmd c = {CMD, state_help, state_parse_opts, 0, state_run};
    state_opts o;
    memset(&o, 0, sizeof(o));
    return cli_state_main(&c, &o, argc, argv);
}
