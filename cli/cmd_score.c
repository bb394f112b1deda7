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
 * model's scale.
 *
 * Two comparisons serve the forgetting protocol (docs/eval.md) on exported
 * models: --reference scores the same ratings with a second model (the
 * forget gap: mean |pred - pred_ref| of the clipped predictions, and both
 * means), and --exclude ranks every item of the model for each user of the
 * data except the items that user has in the exclusion file, and counts how
 * many of the data's pairs land in the user's top N (the top-N exposure;
 * unclipped scores, ties to the lower dense index, as offline eval does). */
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
    const char *reference; /* --reference: a second model, or NULL */
    const char *exclude;   /* --exclude: ratings kept out of the ranking, or NULL */
    long top;              /* --top: N of the exposure, default 10 */
    ds_load_opts load;     /* rating_min/max NAN: the model's */
} score_opts;

/* The data's (user, item) pairs as the model's dense indices, -1 unknown. */
typedef struct score_pair {
    int32_t user, item;
} score_pair;

/* A raw id and its dense index in the model, sorted by raw id. */
typedef struct id_slot {
    int64_t raw;
    int32_t idx;
} id_slot;

static void score_help(void) {
    printf("Usage: unlearnd score --model MODEL --data PATH [--dups error|last]\n"
           "                      [--rating-min X --rating-max X] [--reference MODEL]\n"
           "                      [--exclude PATH [--top N]]\n\n"
           "Score a model file (from 'unlearnd train' or 'unlearnd state --export-model')\n"
           "on a ratings file: RMSE and MAE of the predictions clipped to the model's\n"
           "scale, users and items matched by raw id. Ratings of users or items the model\n"
           "does not know are predicted from the global mean and the known bias and\n"
           "counted in unknown_users / unknown_items. Prints one line:\n"
           "  n=N rmse=R mae=M unknown_users=U unknown_items=I\n"
           "and, with --reference, ' mean_pred=P ref_mean_pred=Q gap=G'; with --exclude,\n"
           "' top=N exposure=E' (docs/eval.md: the forgetting metrics of a forget set).\n\n"
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
           "  --reference MODEL  score PATH with this model too: mean_pred and\n"
           "                   ref_mean_pred are the two models' mean clipped predictions,\n"
           "                   gap the mean |prediction - reference's| (the forget gap when\n"
           "                   PATH is the forget set and the reference the retrain)\n"
           "  --exclude PATH2  top-N exposure of PATH's pairs: for each user of PATH, rank\n"
           "                   every item of the model except that user's items in PATH2\n"
           "                   (e.g. the ratings they keep) by unclipped score; exposure is\n"
           "                   the share of PATH's pairs whose item is in the user's top N\n"
           "                   (a pair of an unknown user or item counts as not exposed)\n"
           "  --top N          N of the exposure, 1..10000 (default 10; needs --exclude)\n"
           "  --help           show this help\n\n"
           "Exit status: 0 success, 1 bad model, bad data or no ratings, 2 bad usage.\n");
}

/* Every option takes a value; NULL-terminated. */
static const char *const score_options[] = {"--model",      "--data",       "--dups",
                                            "--rating-min", "--rating-max", "--reference",
                                            "--exclude",    "--top",        NULL};

static int known_option(const char *name) {
    for (size_t k = 0; score_options[k] != NULL; k++)
        if (strcmp(score_options[k], name) == 0)
            return 1;
    return 0;
}

static int opt_value(score_opts *o, const char *name, const char *val, char *err, size_t size) {
    if (strcmp(name, "--model") == 0)
        o->model = val;
    else if (strcmp(name, "--data") == 0)
        o->data = val;
    else if (strcmp(name, "--reference") == 0)
        o->reference = val;
    else if (strcmp(name, "--exclude") == 0)
        o->exclude = val;
    else if (strcmp(name, "--top") == 0)
        return cli_parse_long(name, val, 1, 10000, &o->top, err, size);
    else if (strcmp(name, "--rating-min") == 0 || strcmp(name, "--rating-max") == 0) {
        float *bound =
            strcmp(name, "--rating-min") == 0 ? &o->load.rating_min : &o->load.rating_max;
        return cli_parse_rating(name, val, bound, err, size);
    } else if (strcmp(val, "error") == 0 || strcmp(val, "last") == 0)
        o->load.dups = strcmp(val, "last") == 0 ? DS_DUP_LAST : DS_DUP_ERROR;
    else {
        ul_set_err(err, size, "--dups: '%s' is not a policy (use 'error' or 'last')", val);
        return -1;
    }
    return 0;
}

static int score_parse(int argc, char **argv, score_opts *o, char *err, size_t size) {
    int have_top = 0;
    for (int a = 1; a < argc; a++) {
        const char *name = argv[a];
        if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
            return 1;
        if (!known_option(name)) {
            ul_set_err(err, size, "unknown option '%s'", name);
            return -1;
        }
        if (a + 1 >= argc) {
            ul_set_err(err, size, "%s needs a value", name);
            return -1;
        }
        have_top |= strcmp(name, "--top") == 0;
        if (opt_value(o, name, argv[++a], err, size) != 0)
            return -1;
    }
    if (o->model == NULL || o->data == NULL) {
        ul_set_err(err, size, "%s is required", o->model == NULL ? "--model MODEL" : "--data PATH");
        return -1;
    }
    if (have_top && o->exclude == NULL) {
        ul_set_err(err, size, "--top needs --exclude PATH (the ratings kept out of the ranking)");
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

/* A loaded model and its raw-id tables; scorer_close() frees all three. */
typedef struct scorer {
    mf_model *m;
    id_slot *users, *items;
} scorer;

static void scorer_close(scorer *sc) {
    free(sc->users);
    free(sc->items);
    mf_model_destroy(sc->m);
    memset(sc, 0, sizeof(*sc));
}

static int scorer_open(scorer *sc, const char *path, char *err, size_t size) {
    memset(sc, 0, sizeof(*sc));
    sc->m = mf_load(path, err, size);
    if (sc->m == NULL)
        return -1;
    sc->users = index_ids(sc->m->user_ids, sc->m->n_users);
    sc->items = index_ids(sc->m->item_ids, sc->m->n_items);
    if (sc->users == NULL || sc->items == NULL) {
        scorer_close(sc);
        ul_set_err(err, size, "out of memory indexing the ids of %s", path);
        return -1;
    }
    return 0;
}

/* The model's dense indices of rating r of ds, -1 when unknown. */
static score_pair scorer_pair(const scorer *sc, const dataset *ds, size_t r) {
    const ul_rating *x = &ds->ratings[r];
    score_pair p = {find_id(sc->users, sc->m->n_users, ds->user_ids[x->user]),
                    find_id(sc->items, sc->m->n_items, ds->item_ids[x->item])};
    return p;
}

static float clip(const mf_model *m, float v) {
    return v < m->rating_min ? m->rating_min : v > m->rating_max ? m->rating_max : v;
}

/* The clipped prediction; an unknown user or item falls back to the mean
 * plus the known bias. */
static float scorer_predict(const scorer *sc, score_pair p) {
    const mf_model *m = sc->m;
    if (p.user >= 0 && p.item >= 0)
        return mf_predict(m, p.user, p.item);
    return clip(m, m->global_mean + (p.user >= 0 ? m->user_bias[p.user] : 0.0f) +
                       (p.item >= 0 ? m->item_bias[p.item] : 0.0f));
}

/* The data's scale: the model's unless given; the hint names the model's. */
static dataset *score_load(const score_opts *o, const char *path, const mf_model *m, char *err,
                           size_t size) {
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
    return ds_load(path, &lo, err, size);
}

/* n=, rmse=, mae=, unknown_*= of the model on every rating of ds. */
static void print_error(const scorer *sc, const dataset *ds) {
    double se = 0, ae = 0;
    size_t unknown_users = 0, unknown_items = 0;
    for (size_t r = 0; r < ds->n_ratings; r++) {
        score_pair p = scorer_pair(sc, ds, r);
        unknown_users += p.user < 0;
        unknown_items += p.item < 0;
        double d = (double)scorer_predict(sc, p) - (double)ds->ratings[r].value;
        se += d * d;
        ae += fabs(d);
    }
    printf("n=%zu rmse=%.6f mae=%.6f unknown_users=%zu unknown_items=%zu", ds->n_ratings,
           sqrt(se / (double)ds->n_ratings), ae / (double)ds->n_ratings, unknown_users,
           unknown_items);
}

/* mean_pred=, ref_mean_pred=, gap= against the reference model. */
static void print_reference(const scorer *sc, const scorer *ref, const dataset *ds) {
    double sum = 0, ref_sum = 0, gap = 0;
    for (size_t r = 0; r < ds->n_ratings; r++) {
        double a = scorer_predict(sc, scorer_pair(sc, ds, r));
        double b = scorer_predict(ref, scorer_pair(ref, ds, r));
        sum += a;
        ref_sum += b;
        gap += fabs(a - b);
    }
    double n = (double)ds->n_ratings;
    printf(" mean_pred=%.6f ref_mean_pred=%.6f gap=%.6f", sum / n, ref_sum / n, gap / n);
}

static int cmp_pair(const void *a, const void *b) {
    const score_pair *x = a, *y = b;
    if (x->user != y->user)
        return (x->user > y->user) - (x->user < y->user);
    return (x->item > y->item) - (x->item < y->item);
}

/* ds's pairs the model knows (user and item), sorted by user; the caller
 * frees. NULL on allocation failure. */
static score_pair *known_pairs(const scorer *sc, const dataset *ds, size_t *n) {
    score_pair *v = malloc((ds->n_ratings + 1) * sizeof(*v));
    *n = 0;
    for (size_t r = 0; v != NULL && r < ds->n_ratings; r++) {
        score_pair p = scorer_pair(sc, ds, r);
        if (p.user >= 0 && p.item >= 0)
            v[(*n)++] = p;
    }
    if (v != NULL)
        qsort(v, *n, sizeof(*v), cmp_pair);
    return v;
}

/* How many of f[a..end) (one user's pairs) are in that user's top `top`,
 * ranking every item except the excl bytes set. Negative: mf_top_k's code. */
static long user_hits(const mf_model *m, const score_pair *f, size_t a, size_t end,
                      const uint8_t *excl, int top, int32_t *list, float *scores) {
    int got = mf_top_k(m, f[a].user, excl, top, list, scores);
    if (got < 0)
        return got;
    long hits = 0;
    for (size_t j = a; j < end; j++)
        for (int t = 0; t < got; t++)
            if (list[t] == f[j].item) {
                hits++;
                break;
            }
    return hits;
}

/* The top-N exposure of ds's pairs (share of them in their user's top N,
 * excluding each user's items in keep). UL_OK or UL_ERR_NOMEM. */
static int exposure(const scorer *sc, const dataset *ds, const dataset *keep, int top,
                    double *out) {
    size_t nf, nk, hits = 0, b = 0;
    score_pair *f = known_pairs(sc, ds, &nf), *k = known_pairs(sc, keep, &nk);
    uint8_t *excl = calloc((size_t)sc->m->n_items + 1, 1);
    int32_t *list = malloc((size_t)top * sizeof(*list));
    float *scores = malloc((size_t)top * sizeof(*scores));
    int rc = f && k && excl && list && scores ? UL_OK : UL_ERR_NOMEM;
    for (size_t a = 0, end; rc == UL_OK && a < nf; a = end) {
        for (end = a; end < nf && f[end].user == f[a].user;)
            end++;
        while (b < nk && k[b].user < f[a].user)
            b++;
        size_t kb = b;
        for (; b < nk && k[b].user == f[a].user; b++)
            excl[k[b].item] = 1;
        long h = user_hits(sc->m, f, a, end, excl, top, list, scores);
        rc = h < 0 ? (int)h : UL_OK;
        hits += h > 0 ? (size_t)h : 0;
        for (size_t j = kb; j < b; j++)
            excl[k[j].item] = 0;
    }
    *out = (double)hits / (double)ds->n_ratings;
    free(f);
    free(k);
    free(excl);
    free(list);
    free(scores);
    return rc;
}

static int score_run(const score_opts *o) {
    char err[UL_ERRSTR_SIZE];
    scorer sc = {0}, ref = {0};
    dataset *ds = NULL, *keep = NULL;
    double exp = 0;
    int rc = CLI_EXIT_OK;
    if (scorer_open(&sc, o->model, err, sizeof(err)) != 0 ||
        (ds = score_load(o, o->data, sc.m, err, sizeof(err))) == NULL ||
        (o->reference && scorer_open(&ref, o->reference, err, sizeof(err)) != 0) ||
        (o->exclude && (keep = score_load(o, o->exclude, sc.m, err, sizeof(err))) == NULL)) {
        rc = cli_fail(CMD, err);
        goto done;
    }
    if (ds->n_ratings == 0) {
        ul_set_err(err, sizeof(err), "%s: no ratings to score", o->data);
        rc = cli_fail(CMD, err);
        goto done;
    }
    if (keep && exposure(&sc, ds, keep, (int)o->top, &exp) != UL_OK) {
        rc = cli_fail(CMD, "out of memory ranking the items");
        goto done;
    }
    print_error(&sc, ds);
    if (ref.m)
        print_reference(&sc, &ref, ds);
    if (keep)
        printf(" top=%ld exposure=%.6f", o->top, exp);
    printf("\n");
done:
    ds_destroy(keep);
    ds_destroy(ds);
    scorer_close(&ref);
    scorer_close(&sc);
    return rc;
}

int cmd_score(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    score_opts o;
    memset(&o, 0, sizeof(o));
    o.top = 10;
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
