/* cmd_score.c: `unlearnd score`, the test error of a model file on a ratings
 * file: RMSE and MAE of the clipped predictions, matched by raw ids.
 *
 * DESIGN: the model may come from `unlearnd train` or from a live worker
 * (`unlearnd state --export-model`), so ids are matched by raw value
 * (sorted tables, binary search), never by dense index. A rating whose user
 * or item the model does not know is still scored (the global mean plus the
 * known bias, clipped) and counted separately, so a comparison between two
 * models never silently drops the hard cases. The ratings file must be on
 * the model's scale (it travels in the model file) unless --rating-min /
 * --rating-max widen what is accepted; predictions stay clipped to the
 * model's scale. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "mf.h"
#include "ul_err.h"

#define CMD "score"

typedef struct score_opts {
    const char *model, *data;
    ds_load_opts load; /* rating_min/max NAN: the model's */
} score_opts;

/* A raw id and its dense index in the model, sorted by raw id. */
typedef struct id_slot {
    int64_t raw;
    int32_t idx;
} id_slot;

static void score_help(void) {
    printf("Usage: unlearnd score --model MODEL --data PATH [--dups error|last]\n"
           "                      [--rating-min X --rating-max X]\n\n"
           "Score a model file (from 'unlearnd train' or 'unlearnd state --export-model')\n"
           "on a ratings file: RMSE and MAE of the predictions clipped to the model's\n"
           "scale, users and items matched by raw id. Ratings of users or items the model\n"
           "does not know are predicted from the global mean and the known bias and\n"
           "counted in unknown_users / unknown_items. Prints one line:\n"
           "  n=N rmse=R mae=M unknown_users=U unknown_items=I\n\n"
           "Options:\n"
           "  --model MODEL    model file (required)\n"
           "  --data PATH      ratings to score: u.data, ratings.dat or CSV with a header\n"
           "                   (required)\n"
           "  --dups POLICY    duplicate (user,item) lines: 'error' or 'last' (default "
           "error)\n" CLI_SCALE_HELP
           "                   (default: the model's scale, which 'unlearnd train' took from\n"
           "                   its data or its --rating-min/--rating-max; a rating of PATH\n"
           "                   beyond it is an error unless these widen what is accepted;\n"
           "                   predictions stay clipped to the model's scale)\n"
           "  --help           show this help\n\n"
           "Exit status: 0 success, 1 bad model, bad data or no ratings, 2 bad usage.\n");
}

static int score_parse(int argc, char **argv, score_opts *o, char *err, size_t size) {
    for (int a = 1; a < argc; a++) {
        const char *name = argv[a];
        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
            return 1;
        if (strcmp(name, "--model") != 0 && strcmp(name, "--data") != 0 &&
            strcmp(name, "--dups") != 0 && strcmp(name, "--rating-min") != 0 &&
            strcmp(name, "--rating-max") != 0) {
            ul_set_err(err, size, "unknown option '%s'", name);
            return -1;
        }
        if (a + 1 >= argc) {
            ul_set_err(err, size, "%s needs a value", name);
            return -1;
        }
        const char *val = argv[++a];
        if (strcmp(name, "--model") == 0)
            o->model = val;
        else if (strcmp(name, "--data") == 0)
            o->data = val;
        else if (strcmp(name, "--rating-min") == 0 || strcmp(name, "--rating-max") == 0) {
            float *bound =
                strcmp(name, "--rating-min") == 0 ? &o->load.rating_min : &o->load.rating_max;
            if (cli_parse_rating(name, val, bound, err, size) != 0)
                return -1;
        } else if (strcmp(val, "error") == 0 || strcmp(val, "last") == 0)
            o->load.dups = strcmp(val, "last") == 0 ? DS_DUP_LAST : DS_DUP_ERROR;
        else {
            ul_set_err(err, size, "--dups: '%s' is not a policy (use 'error' or 'last')", val);
            return -1;
        }
    }
    if (o->model == NULL || o->data == NULL) {
        ul_set_err(err, size, "%s is required", o->model == NULL ? "--model MODEL" : "--data PATH");
        return -1;
    }
    return 0;
}

static int cmp_slot(const void *a, const void *b) {
    const id_slot *x = a, *y = b;
    return (x->raw > y->raw) - (x->raw < y->raw);
}

/* Sorted (raw, idx) table of n ids; NULL ids mean raw == dense index. */
static id_slot *index_ids(const int64_t *ids, int32_t n) {
    id_slot *t = malloc(((size_t)n + 1) * sizeof(*t));
    if (t == NULL)
        return NULL;
    for (int32_t i = 0; i < n; i++) {
        t[i].raw = ids ? ids[i] : i;
        t[i].idx = i;
    }
    qsort(t, (size_t)n, sizeof(*t), cmp_slot);
    return t;
}

static int32_t find_id(const id_slot *t, int32_t n, int64_t raw) {
    id_slot key = {raw, 0};
    const id_slot *hit = bsearch(&key, t, (size_t)n, sizeof(*t), cmp_slot);
    return hit ? hit->idx : -1;
}

static float clip(const mf_model *m, float v) {
    return v < m->rating_min ? m->rating_min : v > m->rating_max ? m->rating_max : v;
}

/* The data's scale: the model's unless given; the hint names the model's. */
static dataset *score_load(const score_opts *o, const mf_model *m, char *err, size_t size) {
    char hint[160];
    ds_load_opts lo = o->load;
    if (isnan(lo.rating_min))
        lo.rating_min = m->rating_min;
    if (isnan(lo.rating_max))
        lo.rating_max = m->rating_max;
    snprintf(hint, sizeof(hint),
             "the model's scale is %g..%g; --rating-min/--rating-max accept ratings beyond it",
             (double)m->rating_min, (double)m->rating_max);
    lo.range_hint = hint;
    return ds_load(o->data, &lo, err, size);
}

static int score_run(const score_opts *o) {
    char err[UL_ERRSTR_SIZE];
    mf_model *m = mf_load(o->model, err, sizeof(err));
    dataset *ds = m ? score_load(o, m, err, sizeof(err)) : NULL;
    id_slot *users = ds ? index_ids(m->user_ids, m->n_users) : NULL;
    id_slot *items = users ? index_ids(m->item_ids, m->n_items) : NULL;
    int rc = CLI_EXIT_OK;
    if (items == NULL) {
        if (ds)
            ul_set_err(err, sizeof(err), "out of memory indexing the model's ids");
        rc = cli_fail(CMD, err);
        goto done;
    }
    if (ds->n_ratings == 0) {
        ul_set_err(err, sizeof(err), "%s: no ratings to score", o->data);
        rc = cli_fail(CMD, err);
        goto done;
    }
    double se = 0, ae = 0;
    size_t unknown_users = 0, unknown_items = 0;
    for (size_t r = 0; r < ds->n_ratings; r++) {
        const ul_rating *x = &ds->ratings[r];
        int32_t u = find_id(users, m->n_users, ds->user_ids[x->user]);
        int32_t i = find_id(items, m->n_items, ds->item_ids[x->item]);
        unknown_users += u < 0;
        unknown_items += i < 0;
        float pred;
        if (u >= 0 && i >= 0)
            pred = mf_predict(m, u, i);
        else
            pred = clip(m, m->global_mean + (u >= 0 ? m->user_bias[u] : 0.0f) +
                               (i >= 0 ? m->item_bias[i] : 0.0f));
        double d = (double)pred - (double)x->value;
        se += d * d;
        ae += fabs(d);
    }
    printf("n=%zu rmse=%.6f mae=%.6f unknown_users=%zu unknown_items=%zu\n", ds->n_ratings,
           sqrt(se / (double)ds->n_ratings), ae / (double)ds->n_ratings, unknown_users,
           unknown_items);
done:
    free(users);
    free(items);
    ds_destroy(ds);
    mf_model_destroy(m);
    return rc;
}

int cmd_score(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    score_opts o;
    memset(&o, 0, sizeof(o));
    ds_load_opts_init(&o.load);
    int rc = score_parse(argc, argv, &o, err, sizeof(err));
    if (rc == 1) {
        score_help();
        return CLI_EXIT_OK;
    }
    if (rc != 0)
        return cli_usage_error(CMD, err);
    return score_run(&o);
}
