/* cmd_eval.c: `unlearnd eval`, the paper's offline evaluation protocol over
 * a grid of cells (users % x forget % x seeds), a thin front end over
 * core/eval.h. Without --json it prints a table per cell and, for several
 * seeds, a mean +- std summary; with --json one JSON object per line per
 * (users, forget, method, seed) and nothing else on stdout. Progress goes to
 * stderr (a bar on a terminal, plain lines otherwise).
 *
 * Default data: ML-100K's u.data from $UNLEARND_DATA_DIR, ../shared/data, or
 * the shared data next to the repository holding this executable; else a
 * synthetic set. stderr says which. */
#include "cli.h"
#include "progress.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "eval.h"
#include "mf.h"
#include "ul_err.h"

#define CMD "eval"
#define MAX_LIST 32
#define ML100K_REL CLI_ML100K_REL

typedef struct eval_cli {
    const char *data_path; /* NULL: the default search */
    double users[MAX_LIST], forget[MAX_LIST];
    size_t n_users, n_forget;
    const char *methods[MAX_LIST];
    size_t n_methods;
    char methods_buf[512];
    eval_opts opts;
    unlearn_params unlearn; /* --set knobs; opts.unlearn points here */
    long seeds;
    int json;
    ds_dup_policy dups;
    float rating_min, rating_max; /* NAN: the file's lowest / highest rating */
} eval_cli;

/* One row per option: --help is generated from this table. */
typedef struct opt_doc {
    const char *name, *arg, *doc;
} opt_doc;

static const opt_doc opt_docs[] = {
    {"--data", "PATH",
     "ratings file (u.data, ratings.dat or CSV with a header); default: ML-100K u.data from "
     "$UNLEARND_DATA_DIR, ../shared/data or next to the repository, else a synthetic set"},
    {"--users", "LIST", "x: % of users whose ratings turn faulty, e.g. 10,15,20 (default 10)"},
    {"--forget", "LIST",
     "y: % of each picked user's training ratings overwritten and forgotten (default 50)"},
    {"--methods", "LIST", "methods to evaluate, comma-separated (default: every method below)"},
    {"--k", "N", NULL},      /* doc built from mf_params_init() */
    {"--epochs", "N", NULL}, /* doc built from mf_params_init() */
    {"--seed", "S", "first seed: drives the split, O1, SISA's shards and MF (default 42)"},
    {"--seeds", "N", "run seeds S..S+N-1 and summarise mean +- std (default 1)"},
    {"--shards", "N", "SISA shards, 1..64 (default 5)"},
    {"--threads", "N", "training threads, 0 = all cores (default 0)"},
    {"--dups", "POLICY", "duplicate (user,item) lines: error or last (default error)"},
    {"--rating-min", "X",
     "lowest rating of the scale (the stream's rating.min; default: the lowest in the file)"},
    {"--rating-max", "X",
     "highest rating of the scale (the stream's rating.max; default: the highest in the file)"},
    {"--sequential", "N",
     "also run every unlearning method (foldin, cff, ...) over F split into N batches applied one "
     "after another, and report the model after all N (rows 'seq:METHOD') with its per-batch "
     "trace (JSON); default 0 = off"},
    {"--sequential-by", "WHAT",
     "how F is split: ratings (F's entries in random order, a user's ratings may span batches) or "
     "users (each user's forgotten ratings in one batch; N at most the affected users); default "
     "ratings"},
    {"--valid", NULL,
     "tuning: hold out 10% of the training split and score every metric on it instead of the "
     "test split, which is then never read"},
    {"--set", "KNOB=VALUE", NULL}, /* doc built from unlearn_params_knobs() */
    {"--json", NULL, "one JSON object per line per (users, forget, method, seed) on stdout"},
    {"--help", NULL, "this help"},
};

/* "  head  doc..." with the doc wrapped at 79 columns under a 21-column
 * indent. */
static void print_wrapped(const char *head, const char *doc) {
    printf("  %-18s", head);
    int col = 20;
    const char *w = doc;
    while (*w) {
        size_t len = strcspn(w, " ");
        if (col + 1 + (int)len > 79 && col > 21) {
            printf("\n%21s", "");
            col = 21;
        } else {
            putchar(' ');
            col++;
        }
        printf("%.*s", (int)len, w);
        col += (int)len;
        w += len;
        while (*w == ' ')
            w++;
    }
    putchar('\n');
}

static void print_help(void) {
    printf("Usage: unlearnd eval [options]\n\n"
           "Runs the paper's evaluation protocol: split the ratings 80/20, overwrite y%% of the\n"
           "training ratings of x%% of the users with the scale maximum (the forget set F), then\n"
           "build each method's model and measure it. See docs/eval.md for every definition.\n\n"
           "Options:\n");
    mf_params mp;
    mf_params_init(&mp);
    for (size_t j = 0; j < sizeof(opt_docs) / sizeof(opt_docs[0]); j++) {
        char head[40], doc[1024];
        snprintf(head, sizeof(head), "%s%s%s", opt_docs[j].name, opt_docs[j].arg ? " " : "",
                 opt_docs[j].arg ? opt_docs[j].arg : "");
        /* The MF defaults come from core/mf.c, not from a copy here. */
        if (strcmp(opt_docs[j].name, "--k") == 0)
            snprintf(doc, sizeof(doc), "latent dimension of every MF (default %d)", mp.k);
        else if (strcmp(opt_docs[j].name, "--epochs") == 0)
            snprintf(doc, sizeof(doc), "SGD epochs of every MF (default %d)", mp.epochs);
        else if (strcmp(opt_docs[j].name, "--set") == 0) {
            char knobs[768];
            snprintf(doc, sizeof(doc),
                     "set a knob of the unlearning methods (repeatable; defaults and meaning: "
                     "core/unlearn.h, docs/unlearning.md): %s",
                     unlearn_params_knobs(", ", knobs, sizeof(knobs)));
        } else
            snprintf(doc, sizeof(doc), "%s", opt_docs[j].doc);
        print_wrapped(head, doc);
    }
    printf("\nMethods:\n");
    for (const char *const *m = eval_method_names(); *m != NULL; m++)
        print_wrapped(*m, eval_method_doc(*m));
    printf("\nMetrics (per method): test RMSE (all, affected users, other users); forget gap =\n"
           "mean |prediction - retrain's| over F; mean prediction over F; top-10 exposure =\n"
           "share of F's pairs whose item is in its user's top-10; MIA AUC = membership-\n"
           "inference AUC of F's pairs against the affected users' test pairs (attack score:\n"
           "the raw prediction; 'ref': minus retrain2's), Retrain's is the reference; b_i on F\n"
           "= F-weighted mean item bias; item F = F-weighted mean of each item's mean score\n"
           "over the unaffected users; wall seconds. Each cell also prints the noise floor: the "
           "forget\n"
           "gap between retrain and retrain2.\n\n"
           "Exit status: 0 success, 1 data or runtime error, 2 bad option.\n");
}

/* "10,15,20" -> values in (0, 100]. */
static int parse_pct_list(const char *opt, const char *s, double *out, size_t *n, char *errstr,
                          size_t errstr_size) {
    char buf[256];
    if (strlen(s) >= sizeof(buf) || *s == '\0') {
        snprintf(errstr, errstr_size, "%s: expected a comma-separated list of percentages", opt);
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", s);
    *n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_LIST) {
            snprintf(errstr, errstr_size, "%s: at most %d values", opt, MAX_LIST);
            return -1;
        }
        double v;
        if (cli_parse_double(opt, tok, 0, 100, &v, errstr, errstr_size) != 0)
            return -1;
        if (v <= 0) {
            snprintf(errstr, errstr_size, "%s: %g%% must be above 0", opt, v);
            return -1;
        }
        out[(*n)++] = v;
    }
    if (*n == 0 || s[strlen(s) - 1] == ',' || s[0] == ',' || strstr(s, ",,")) {
        snprintf(errstr, errstr_size, "%s: '%s' has an empty element", opt, s);
        return -1;
    }
    return 0;
}

static int parse_methods(eval_cli *a, const char *s, char *errstr, size_t errstr_size) {
    if (strlen(s) >= sizeof(a->methods_buf) || *s == '\0' || s[strlen(s) - 1] == ',' ||
        s[0] == ',' || strstr(s, ",,")) {
        snprintf(errstr, errstr_size, "--methods: '%s' is not a comma-separated list of names", s);
        return -1;
    }
    snprintf(a->methods_buf, sizeof(a->methods_buf), "%s", s);
    a->n_methods = 0;
    char *save = NULL;
    for (char *tok = strtok_r(a->methods_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (eval_method_doc(tok) == NULL) {
            char known[256] = "";
            for (const char *const *m = eval_method_names(); *m != NULL; m++)
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                         known[0] ? ", " : "", *m);
            snprintf(errstr, errstr_size, "--methods: unknown method '%s' (known: %s)", tok, known);
            return -1;
        }
        for (size_t j = 0; j < a->n_methods; j++) {
            if (strcmp(a->methods[j], tok) == 0) {
                snprintf(errstr, errstr_size, "--methods: '%s' is listed twice", tok);
                return -1;
            }
        }
        if (a->n_methods == MAX_LIST) {
            snprintf(errstr, errstr_size, "--methods: at most %d methods", MAX_LIST);
            return -1;
        }
        a->methods[a->n_methods++] = tok;
    }
    return 0;
}

static void cli_defaults(eval_cli *a) {
    memset(a, 0, sizeof(*a));
    eval_opts_init(&a->opts);
    a->users[0] = 10;
    a->n_users = 1;
    a->forget[0] = 50;
    a->n_forget = 1;
    for (const char *const *m = eval_default_methods(); *m != NULL && a->n_methods < MAX_LIST; m++)
        a->methods[a->n_methods++] = *m;
    unlearn_params_init(&a->unlearn);
    a->opts.unlearn = &a->unlearn;
    a->seeds = 1;
    a->dups = DS_DUP_ERROR;
    a->rating_min = a->rating_max = NAN;
}

static int parse_one(eval_cli *a, const char *name, const char *v, char *errstr,
                     size_t errstr_size) {
    long l;
    if (strcmp(name, "--data") == 0) {
        a->data_path = v;
    } else if (strcmp(name, "--users") == 0) {
        return parse_pct_list(name, v, a->users, &a->n_users, errstr, errstr_size);
    } else if (strcmp(name, "--forget") == 0) {
        return parse_pct_list(name, v, a->forget, &a->n_forget, errstr, errstr_size);
    } else if (strcmp(name, "--methods") == 0) {
        return parse_methods(a, v, errstr, errstr_size);
    } else if (strcmp(name, "--k") == 0) {
        if (cli_parse_long(name, v, 1, MF_MAX_K, &l, errstr, errstr_size) != 0)
            return -1;
        a->opts.mf.k = (int)l;
    } else if (strcmp(name, "--epochs") == 0) {
        if (cli_parse_long(name, v, 1, 100000, &l, errstr, errstr_size) != 0)
            return -1;
        a->opts.mf.epochs = (int)l;
    } else if (strcmp(name, "--seed") == 0) {
        return cli_parse_u64(name, v, &a->opts.seed, errstr, errstr_size);
    } else if (strcmp(name, "--seeds") == 0) {
        return cli_parse_long(name, v, 1, 1000, &a->seeds, errstr, errstr_size);
    } else if (strcmp(name, "--shards") == 0) {
        if (cli_parse_long(name, v, 1, 64, &l, errstr, errstr_size) != 0)
            return -1;
        a->opts.shards = (int)l;
    } else if (strcmp(name, "--threads") == 0) {
        if (cli_parse_long(name, v, 0, 1024, &l, errstr, errstr_size) != 0)
            return -1;
        a->opts.mf.threads = (int)l;
    } else if (strcmp(name, "--sequential") == 0) {
        if (cli_parse_long(name, v, 0, SEQ_MAX_BATCHES, &l, errstr, errstr_size) != 0)
            return -1;
        a->opts.sequential = (int)l;
    } else if (strcmp(name, "--sequential-by") == 0) {
        if (strcmp(v, "ratings") != 0 && strcmp(v, "users") != 0) {
            snprintf(errstr, errstr_size, "--sequential-by: '%s' is not one of ratings, users", v);
            return -1;
        }
        a->opts.sequential_by = strcmp(v, "users") == 0 ? SEQ_BY_USERS : SEQ_BY_RATINGS;
    } else if (strcmp(name, "--dups") == 0) {
        if (strcmp(v, "error") != 0 && strcmp(v, "last") != 0) {
            snprintf(errstr, errstr_size, "--dups: '%s' is not one of error, last", v);
            return -1;
        }
        a->dups = strcmp(v, "last") == 0 ? DS_DUP_LAST : DS_DUP_ERROR;
    } else if (strcmp(name, "--rating-min") == 0) {
        return cli_parse_rating(name, v, &a->rating_min, errstr, errstr_size);
    } else if (strcmp(name, "--rating-max") == 0) {
        return cli_parse_rating(name, v, &a->rating_max, errstr, errstr_size);
    } else if (strcmp(name, "--set") == 0) {
        char why[UL_ERRSTR_SIZE - 8]; /* room for the prefix */
        if (unlearn_params_set(&a->unlearn, v, why, sizeof(why)) != UL_OK) {
            snprintf(errstr, errstr_size, "--set: %s", why);
            return -1;
        }
    }
    return 0;
}

static const char *const valued_opts[] = {
    "--data",       "--users",      "--forget",        "--methods", "--k",    "--epochs",
    "--seed",       "--seeds",      "--shards",        "--threads", "--dups", "--rating-min",
    "--rating-max", "--sequential", "--sequential-by", "--set",     NULL};

/* Returns 0, 1 for --help, -1 on a usage error. */
static int parse_args(eval_cli *a, int argc, char **argv, char *errstr, size_t errstr_size) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        if (strcmp(arg, "--json") == 0) {
            a->json = 1;
            continue;
        }
        if (strcmp(arg, "--valid") == 0) {
            a->opts.valid_frac = 0.1;
            continue;
        }
        const char *v = NULL;
        const char *name = cli_opt_next(argc, argv, &i, valued_opts, &v, errstr, errstr_size);
        if (name == NULL || parse_one(a, name, v, errstr, errstr_size) != 0)
            return -1;
    }
    if (a->opts.seed > UINT64_MAX - (uint64_t)a->seeds - EVAL_NOISE_SEED_OFFSET) {
        snprintf(errstr, errstr_size, "--seed: %" PRIu64 " leaves no room for --seeds %ld",
                 a->opts.seed, a->seeds);
        return -1;
    }
    return 0;
}

/* ---- data ------------------------------------------------------------- */

static dataset *load_data(const eval_cli *a, char *errstr, size_t errstr_size) {
    char path[PATH_MAX + 64], where[3 * PATH_MAX];
    const char *use = a->data_path;
    if (use == NULL && cli_find_ml100k(path, sizeof(path), where, sizeof(where)))
        use = path;
    dataset *ds = NULL;
    if (use != NULL) {
        ds_load_opts lo;
        ds_load_opts_init(&lo);
        lo.dups = a->dups;
        lo.rating_min = a->rating_min;
        lo.rating_max = a->rating_max;
        lo.range_hint = CLI_SCALE_HINT;
        ds = ds_load(use, &lo, errstr, errstr_size);
        if (ds != NULL &&
            cli_check_scale(use, ds->rating_min, ds->rating_max, errstr, errstr_size) != 0) {
            ds_destroy(ds);
            return NULL;
        }
        if (ds != NULL)
            fprintf(stderr,
                    "unlearnd eval: data: %s (%s, %zu ratings, %d users, %d items, scale "
                    "%g..%g)\n",
                    use, ds->name, ds->n_ratings, (int)ds->n_users, (int)ds->n_items,
                    (double)ds->rating_min, (double)ds->rating_max);
        return ds;
    }
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    ds = ds_synthetic(&so, errstr, errstr_size);
    if (ds != NULL)
        fprintf(stderr,
                "unlearnd eval: no MovieLens file found (tried %s; set UNLEARND_DATA_DIR or "
                "--data); using a synthetic set: %zu ratings, %d users, %d items, seed %" PRIu64
                "\n",
                where, ds->n_ratings, (int)ds->n_users, (int)ds->n_items, so.seed);
    return ds;
}

/* ---- output ----------------------------------------------------------- */

static void fmt_num(char *buf, size_t size, double v, const char *fmt) {
    if (isfinite(v))
        snprintf(buf, size, fmt, v);
    else
        snprintf(buf, size, "-");
}

static void print_cell_table(const eval_cell *c, int top_k) {
    printf("\n%s  users %g%%  forget %g%%  seed %" PRIu64 ": |F| = %zu ratings of %zu users "
           "(%zu of their ratings remain); train %zu, %s %zu\n",
           c->dataset, c->users_pct, c->forget_pct, c->seed, c->n_forget, c->n_users_affected,
           c->n_retain, c->n_train, c->validation ? "validation (every metric on it)" : "test",
           c->n_test);
    char top[16];
    snprintf(top, sizeof(top), "top-%d exp", top_k);
    printf("%-14s %7s %8s %7s %10s %9s %10s %7s %7s %8s %8s %8s %9s\n", "method", "RMSE",
           "affected", "others", "forget gap", "pred on F", top, "MIA AUC", "MIA ref", "b_i on F",
           "item F", "seconds", "unlearn s");
    int sequential = 0;
    for (size_t j = 0; j < c->n_results; j++) {
        const eval_result *r = &c->results[j];
        const struct {
            double v;
            const char *fmt;
        } col[12] = {{r->rmse_test, "%.4f"},        {r->rmse_affected, "%.4f"},
                     {r->rmse_unaffected, "%.4f"},  {r->forget_gap, "%.4f"},
                     {r->mean_pred_forget, "%.3f"}, {r->topk_exposure, "%.3f"},
                     {r->mia_auc, "%.4f"},          {r->mia_auc_ref, "%.4f"},
                     {r->item_bias_forget, "%.4f"}, {r->item_score_forget, "%.4f"},
                     {r->seconds, "%.2f"},          {r->unlearn_seconds, "%.3f"}};
        char f[12][24], name[EVAL_METHOD_NAME_MAX + 8];
        snprintf(name, sizeof(name), "%s%s", r->sequential ? "seq:" : "", r->method);
        sequential = r->sequential ? r->sequential : sequential;
        for (int q = 0; q < 12; q++)
            fmt_num(f[q], 24, col[q].v, col[q].fmt);
        printf("%-14s %7s %8s %7s %10s %9s %10s %7s %7s %8s %8s %8s %9s", name, f[0], f[1], f[2],
               f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11]);
        if (r->shards_touched > 0)
            printf("  (%d of %d shards retrained)", r->shards_touched, r->n_models);
        printf("\n");
    }
    printf("noise floor of the forget gap (retrain vs retrain with seed+%d): %.4f\n",
           EVAL_NOISE_SEED_OFFSET, c->noise_floor);
    printf("membership audit: %zu members (F) against %zu non-members (the affected users' test "
           "pairs)\n",
           c->n_forget, c->n_nonmember);
    if (sequential > 0)
        printf("seq:METHOD = METHOD applied to F in %d batches one after another (unlearn s: "
               "their sum)\n",
               sequential);
    fflush(stdout);
}

static int print_cell_json(const eval_cell *c) {
    for (size_t j = 0; j < c->n_results; j++) {
        size_t size = eval_result_json_size(&c->results[j]);
        char *line = malloc(size);
        if (line == NULL || eval_result_json(c, &c->results[j], line, size) < 0) {
            free(line);
            return -1;
        }
        printf("%s\n", line);
        free(line);
    }
    fflush(stdout);
    return 0;
}

#define SUMMARY_COLS 6 /* RMSE, affected, forget gap, exposure, MIA AUC, seconds */

/* Mean and sample std of one metric over the seeds of pair `p`, method `m`
 * (NaN values are skipped), formatted as "mean +- std". */
static void summary_col(const eval_cell *cells, size_t n_seeds, size_t p, size_t m, int metric,
                        char *out, size_t size) {
    double s = 0, ss = 0;
    size_t n = 0;
    for (size_t k = 0; k < n_seeds; k++) {
        const eval_result *r = &cells[p * n_seeds + k].results[m];
        double v[SUMMARY_COLS] = {r->rmse_test,     r->rmse_affected, r->forget_gap,
                                  r->topk_exposure, r->mia_auc,       r->seconds};
        if (isnan(v[metric]))
            continue;
        s += v[metric];
        ss += v[metric] * v[metric];
        n++;
    }
    if (n == 0) {
        snprintf(out, size, "-");
        return;
    }
    double mean = s / (double)n, var = ss / (double)n - mean * mean;
    double sd = n > 1 && var > 0 ? sqrt(var * (double)n / (double)(n - 1)) : 0;
    snprintf(out, size, metric == SUMMARY_COLS - 1 ? "%.2f +- %.2f" : "%.4f +- %.4f", mean, sd);
}

/* Mean +- std over seeds of each (users, forget, method): cells[] holds the
 * seeds of one (users, forget) pair consecutively. */
static void print_summary(const eval_cell *cells, size_t n_seeds, size_t n_pairs, int top_k) {
    char top[24];
    snprintf(top, sizeof(top), "top-%d exposure", top_k);
    printf("\nmean +- std over %zu seeds\n", n_seeds);
    printf("%-7s %-7s %-14s %17s %17s %17s %17s %17s %13s\n", "users%", "forget%", "method", "RMSE",
           "RMSE affected", "forget gap", top, "MIA AUC", "seconds");
    for (size_t p = 0; p < n_pairs; p++) {
        const eval_cell *c0 = &cells[p * n_seeds];
        for (size_t m = 0; m < c0->n_results; m++) {
            char col[SUMMARY_COLS][40], name[EVAL_METHOD_NAME_MAX + 8];
            for (int q = 0; q < SUMMARY_COLS; q++)
                summary_col(cells, n_seeds, p, m, q, col[q], sizeof(col[q]));
            snprintf(name, sizeof(name), "%s%s", c0->results[m].sequential ? "seq:" : "",
                     c0->results[m].method);
            printf("%-7g %-7g %-14s %17s %17s %17s %17s %17s %13s\n", c0->users_pct, c0->forget_pct,
                   name, col[0], col[1], col[2], col[3], col[4], col[5]);
        }
        double nf = 0;
        for (size_t k = 0; k < n_seeds; k++)
            nf += cells[p * n_seeds + k].noise_floor;
        printf("%-7g %-7g noise floor of the forget gap: %.4f (mean)\n", c0->users_pct,
               c0->forget_pct, nf / (double)n_seeds);
    }
}

/* ---- running ---------------------------------------------------------- */

typedef struct run_state {
    progress *prog;
    size_t cell, n_cells;
    double users_pct, forget_pct;
    uint64_t seed;
} run_state;

static int on_progress(void *ctx, const eval_progress *p) {
    run_state *st = ctx;
    char stage[160], detail[64] = "";
    snprintf(stage, sizeof(stage),
             "%s%s%s (cell %zu/%zu: %g%% users, %g%% forgotten, seed %" PRIu64 ")", p->stage,
             p->method[0] ? " " : "", p->method, st->cell + 1, st->n_cells, st->users_pct,
             st->forget_pct, st->seed);
    if (p->epochs > 0)
        snprintf(detail, sizeof(detail), "epoch %d/%d", p->epoch, p->epochs);
    progress_update(st->prog, ((double)st->cell + p->done) / (double)st->n_cells, stage,
                    detail[0] ? detail : NULL);
    return 0;
}

static int run_grid(const eval_cli *a, const dataset *ds, eval_cell *cells, char *errstr,
                    size_t errstr_size) {
    eval_data d = {ds->ratings,    ds->n_ratings,  ds->n_users, ds->n_items,
                   ds->rating_min, ds->rating_max, ds->name};
    run_state st = {progress_new(stderr, "unlearnd eval"),
                    0,
                    a->n_users * a->n_forget * (size_t)a->seeds,
                    0,
                    0,
                    0};
    /* Cells with the same seed share orig; without a cache (out of memory)
     * every cell trains its own. */
    eval_cache *cache = eval_cache_new();
    int rc = UL_OK;
    for (size_t u = 0; u < a->n_users && rc == UL_OK; u++) {
        for (size_t f = 0; f < a->n_forget && rc == UL_OK; f++) {
            for (long s = 0; s < a->seeds && rc == UL_OK; s++, st.cell++) {
                eval_opts o = a->opts;
                o.users_pct = a->users[u];
                o.forget_pct = a->forget[f];
                o.seed = a->opts.seed + (uint64_t)s;
                o.cache = cache;
                st.users_pct = o.users_pct;
                st.forget_pct = o.forget_pct;
                st.seed = o.seed;
                rc = eval_run_cell(&d, &o, a->methods, a->n_methods, on_progress, &st,
                                   &cells[st.cell], errstr, errstr_size);
                if (rc != UL_OK)
                    break;
                progress_message(st.prog,
                                 "unlearnd eval: cell %zu/%zu done (users %g%%, "
                                 "forget %g%%, seed %" PRIu64 ")",
                                 st.cell + 1, st.n_cells, o.users_pct, o.forget_pct, o.seed);
                if (a->json ? print_cell_json(&cells[st.cell]) != 0
                            : (print_cell_table(&cells[st.cell], o.top_k), 0)) {
                    ul_set_err(errstr, errstr_size, "out of memory formatting a JSON line");
                    rc = UL_ERR_STATE;
                }
            }
        }
    }
    progress_destroy(st.prog);
    eval_cache_destroy(cache);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_cli a;
    char errstr[UL_ERRSTR_SIZE] = "";
    cli_defaults(&a);
    int prc = parse_args(&a, argc, argv, errstr, sizeof(errstr));
    if (prc == 1) {
        print_help();
        return CLI_EXIT_OK;
    }
    if (prc != 0)
        return cli_usage_error(CMD, errstr);
    if (mf_params_check(&a.opts.mf, errstr, sizeof(errstr)) != UL_OK)
        return cli_usage_error(CMD, errstr);
    if (unlearn_params_check(&a.unlearn, errstr, sizeof(errstr)) != UL_OK)
        return cli_usage_error(CMD, errstr);
    dataset *ds = load_data(&a, errstr, sizeof(errstr));
    if (ds == NULL)
        return cli_fail(CMD, errstr);
    size_t n_cells = a.n_users * a.n_forget * (size_t)a.seeds;
    eval_cell *cells = calloc(n_cells, sizeof(eval_cell));
    if (cells == NULL) {
        ds_destroy(ds);
        return cli_fail(CMD, "out of memory");
    }
    int rc = run_grid(&a, ds, cells, errstr, sizeof(errstr));
    if (rc == UL_OK && !a.json && a.seeds > 1)
        print_summary(cells, (size_t)a.seeds, a.n_users * a.n_forget, a.opts.top_k);
    for (size_t j = 0; j < n_cells; j++)
        eval_cell_free(&cells[j]);
    free(cells);
    ds_destroy(ds);
    return rc == UL_OK ? CLI_EXIT_OK : cli_fail(CMD, errstr);
}
