/* tune_mf.c: the reproducible procedure behind mf_params_init()'s defaults.
 *
 * For each dataset: a seeded 80/20 train/test split (the protocol's), then
 * validation splits carved from the TRAINING part only (N folds, each a
 * seeded 80% fit / 20% validation split of it). Every combination of the
 * grid is trained on each `fit` and scored on its `validation` after every
 * epoch (one training gives the whole curve, so the epoch counts of the grid
 * cost one run of the largest), averaged over the folds; the test part is
 * never looked at while choosing. The choice: the fewest epochs whose mean
 * validation RMSE over the datasets is within --tolerance of the best mean
 * anywhere in the grid (quality first, then speed; ties within 0.0001 at
 * that epoch count go to the smaller learning rate), printed last. With
 * --test, the library defaults are then trained on the full training part
 * and scored once on the test part (the figure the targets are about);
 * --test-only skips the search.
 *
 *   build/tune_mf [--data FILE]... [--set NAME=V1,V2,...]... [--folds N (3)]
 *                 [--tolerance X (0.0005)] [--test | --test-only]
 *                 [--split-seed S (42)] [--threads N]
 *
 * NAME is one of k, epochs, lr, lr_decay, reg, reg_bias, init_std; a name not
 * set keeps its default (mf_params_init). Without --set the grid is the one
 * recorded in docs/mf.md. Datasets default to ml-100k/u.data and
 * ml-1m/ratings.csv under $UNLEARND_SHARED_DATA (default ../shared/data);
 * missing ones are skipped with a message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "mf.h"
#include "ul_err.h"

#define MAX_DATA 8
#define MAX_VALUES 16
#define MAX_FOLDS 8
#define MAX_EPOCHS 400
#define VAL_SEED 7 /* fit/validation inside train: VAL_SEED + fold */
#define TIE 0.0001 /* mean validation RMSEs this close are a tie */

enum { KNOB_K, KNOB_EPOCHS, KNOB_LR, KNOB_LR_DECAY, KNOB_REG, KNOB_REG_BIAS, KNOB_INIT, N_KNOBS };

static const char *knob_names[N_KNOBS] = {"k",   "epochs",   "lr",      "lr_decay",
                                          "reg", "reg_bias", "init_std"};

typedef struct grid {
    double v[N_KNOBS][MAX_VALUES];
    int n[N_KNOBS]; /* 0: keep the default */
} grid;

typedef struct data {
    const char *path;
    dataset *ds;
    ul_ratings train, test;
    ul_ratings fit[MAX_FOLDS], val[MAX_FOLDS];
} data;

typedef struct choice {
    mf_params p;
    double mean;
} choice;

static void set_knob(mf_params *p, int knob, double v) {
    switch (knob) {
    case KNOB_K:
        p->k = (int)v;
        break;
    case KNOB_EPOCHS:
        p->epochs = (int)v;
        break;
    case KNOB_LR:
        p->lr = (float)v;
        break;
    case KNOB_LR_DECAY:
        p->lr_decay = (float)v;
        break;
    case KNOB_REG:
        p->reg = (float)v;
        break;
    case KNOB_REG_BIAS:
        p->reg_bias = (float)v;
        break;
    default:
        p->init_std = (float)v;
        break;
    }
}

static int parse_set(grid *g, const char *arg) {
    const char *eq = strchr(arg, '=');
    int knob = -1;
    for (int x = 0; x < N_KNOBS && eq != NULL; x++)
        if (strlen(knob_names[x]) == (size_t)(eq - arg) &&
            strncmp(arg, knob_names[x], (size_t)(eq - arg)) == 0)
            knob = x;
    if (knob < 0) {
        fprintf(stderr,
                "tune_mf: --set %s: expected NAME=V1,V2,... with NAME one of k, epochs, "
                "lr, lr_decay, reg, reg_bias, init_std\n",
                arg);
        return -1;
    }
    g->n[knob] = 0;
    for (const char *s = eq + 1; *s != '\0';) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || (*end != ',' && *end != '\0') || g->n[knob] == MAX_VALUES ||
            (knob == KNOB_EPOCHS && (v < 1 || v > MAX_EPOCHS))) {
            fprintf(stderr,
                    "tune_mf: --set %s: bad value list (at most %d numbers; epochs 1..%d)\n", arg,
                    MAX_VALUES, MAX_EPOCHS);
            return -1;
        }
        g->v[knob][g->n[knob]++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* The grid recorded in docs/mf.md. */
static void default_grid(grid *g) {
    static const char *sets[] = {"epochs=10,12,15,18,20,25,30,40", "lr=0.04,0.06,0.08,0.1,0.12",
                                 "lr_decay=0.76,0.79,0.82,0.85,0.88,0.92", "reg=0.04,0.045,0.05",
                                 "init_std=0.003"};
    for (size_t x = 0; x < sizeof(sets) / sizeof(sets[0]); x++)
        parse_set(g, sets[x]);
}

static int load_data(data *d, uint64_t split_seed, int folds, char *err, size_t errsize) {
    ds_load_opts lo;
    ds_load_opts_init(&lo);
    d->ds = ds_load(d->path, &lo, err, errsize);
    if (d->ds == NULL)
        return -1;
    if (ds_split(d->ds->ratings, d->ds->n_ratings, 0.2, split_seed, &d->train, &d->test, err,
                 errsize) != UL_OK)
        return -1;
    for (int f = 0; f < folds; f++)
        if (ds_split(d->train.v, d->train.n, 0.2, VAL_SEED + (uint64_t)f, &d->fit[f], &d->val[f],
                     err, errsize) != UL_OK)
            return -1;
    return 0;
}

static void free_data(data *d) {
    ul_ratings_free(&d->train);
    ul_ratings_free(&d->test);
    for (int f = 0; f < MAX_FOLDS; f++) {
        ul_ratings_free(&d->fit[f]);
        ul_ratings_free(&d->val[f]);
    }
    ds_destroy(d->ds);
}

typedef struct curve {
    const ul_ratings *score;
    double rmse[MAX_EPOCHS + 1]; /* rmse[e]: after epoch e */
} curve;

static int on_epoch(void *ctx, int epoch, int epochs, double train_rmse, const mf_model *m) {
    (void)epochs;
    (void)train_rmse;
    curve *c = ctx;
    c->rmse[epoch] = mf_rmse(m, c->score->v, c->score->n);
    return 0;
}

/* Train on `on` for p->epochs, filling c->rmse[1..epochs] on c->score.
 * Returns -1 on failure (NAN in the curve). */
static int trial(const data *d, const ul_ratings *on, const mf_params *p, curve *c) {
    char err[UL_ERRSTR_SIZE];
    for (int e = 0; e <= MAX_EPOCHS; e++)
        c->rmse[e] = NAN;
    mf_model *m = mf_train_watch(on->v, on->n, d->ds->n_users, d->ds->n_items, d->ds->rating_min,
                                 d->ds->rating_max, p, on_epoch, c, err, sizeof(err));
    if (m == NULL) {
        fprintf(stderr, "tune_mf: %s: %s\n", d->path, err);
        return -1;
    }
    mf_model_destroy(m);
    return 0;
}

static void print_params(const mf_params *p) {
    printf("k=%d epochs=%d lr=%g lr_decay=%g reg=%g reg_bias=%g init_std=%g", p->k, p->epochs,
           (double)p->lr, (double)p->lr_decay, (double)p->reg, (double)p->reg_bias,
           (double)p->init_std);
}

/* One combination of the non-epoch knobs: train every fold of every
 * dataset once for the largest epoch count, print a line per epoch count,
 * and keep the best mean and the choice (see the top comment). */
static void evaluate(const grid *g, const mf_params *base, data *ds, int nd, int folds,
                     double tolerance, choice *best, choice *chosen, int *n_seen, choice *seen) {
    static double val[MAX_DATA][MAX_EPOCHS + 1];
    mf_params p = *base;
    p.epochs = 0;
    for (int x = 0; x < g->n[KNOB_EPOCHS]; x++)
        if ((int)g->v[KNOB_EPOCHS][x] > p.epochs)
            p.epochs = (int)g->v[KNOB_EPOCHS][x];
    for (int d = 0; d < nd; d++) {
        for (int e = 0; e <= p.epochs; e++)
            val[d][e] = 0.0;
        for (int f = 0; f < folds; f++) {
            static curve c;
            c.score = &ds[d].val[f];
            trial(&ds[d], &ds[d].fit[f], &p, &c);
            for (int e = 1; e <= p.epochs; e++)
                val[d][e] += c.rmse[e] / folds;
        }
    }
    for (int x = 0; x < g->n[KNOB_EPOCHS]; x++) {
        int e = (int)g->v[KNOB_EPOCHS][x];
        double sum = 0.0;
        mf_params q = p;
        q.epochs = e;
        print_params(&q);
        for (int d = 0; d < nd; d++) {
            printf("  val[%s]=%.5f", ds[d].ds->name, val[d][e]);
            sum += val[d][e];
        }
        printf("  mean=%.5f\n", sum / nd);
        seen[*n_seen] = (choice){q, sum / nd};
        *n_seen += 1;
        if (sum / nd < best->mean)
            *best = seen[*n_seen - 1];
    }
    fflush(stdout);
    *chosen = *best;
    for (int s = 0; s < *n_seen; s++) {
        const choice *c = &seen[s];
        if (c->mean <= best->mean + tolerance &&
            (c->p.epochs < chosen->p.epochs ||
             (c->p.epochs == chosen->p.epochs && c->mean < chosen->mean)))
            *chosen = *c;
    }
    /* Near-ties at that epoch count go to the smaller learning rate, the
     * safer one on other data. */
    const choice fewest = *chosen;
    for (int s = 0; s < *n_seen; s++) {
        const choice *c = &seen[s];
        if (c->p.epochs == fewest.p.epochs && c->mean <= fewest.mean + TIE &&
            (c->p.lr < chosen->p.lr || (c->p.lr == chosen->p.lr && c->mean < chosen->mean)))
            *chosen = *c;
    }
}

/* Walk every combination of the knobs other than epochs (an odometer). */
static void search(const grid *g, data *ds, int nd, int folds, int threads, double tolerance) {
    int idx[N_KNOBS] = {0};
    size_t combos = (size_t)(g->n[KNOB_EPOCHS] ? g->n[KNOB_EPOCHS] : 1);
    for (int x = 0; x < N_KNOBS; x++)
        if (x != KNOB_EPOCHS && g->n[x] > 0)
            combos *= (size_t)g->n[x];
    choice *seen = malloc(combos * sizeof(*seen));
    choice best = {.mean = INFINITY}, chosen = best;
    int n_seen = 0;
    grid g1 = *g;
    if (seen == NULL) {
        fprintf(stderr, "tune_mf: out of memory for %zu grid points\n", combos);
        return;
    }
    if (g1.n[KNOB_EPOCHS] == 0) { /* the default epoch count only */
        mf_params def;
        mf_params_init(&def);
        g1.v[KNOB_EPOCHS][0] = def.epochs;
        g1.n[KNOB_EPOCHS] = 1;
    }
    for (;;) {
        mf_params p;
        mf_params_init(&p);
        p.threads = threads;
        for (int x = 0; x < N_KNOBS; x++)
            if (x != KNOB_EPOCHS && g1.n[x] > 0)
                set_knob(&p, x, g1.v[x][idx[x]]);
        evaluate(&g1, &p, ds, nd, folds, tolerance, &best, &chosen, &n_seen, seen);
        int x = 0;
        for (; x < N_KNOBS; x++) {
            if (x == KNOB_EPOCHS || g1.n[x] == 0)
                continue;
            if (++idx[x] < g1.n[x])
                break;
            idx[x] = 0;
        }
        if (x == N_KNOBS)
            break;
    }
    printf("best mean validation RMSE %.5f: ", best.mean);
    print_params(&best.p);
    printf("\nchosen (fewest epochs within %g of the best): mean %.5f: ", tolerance, chosen.mean);
    print_params(&chosen.p);
    printf("\n");
    free(seen);
}

static void test_defaults(data *ds, int nd, int threads) {
    mf_params p;
    mf_params_init(&p);
    p.threads = threads;
    printf("defaults: ");
    print_params(&p);
    printf("\n");
    for (int d = 0; d < nd; d++) {
        static curve c;
        c.score = &ds[d].test;
        trial(&ds[d], &ds[d].train, &p, &c);
        printf("  %s: train on the 80%% split, test RMSE %.4f (%zu test ratings)\n", ds[d].ds->name,
               c.rmse[p.epochs], ds[d].test.n);
    }
}

static int usage(void) {
    fprintf(stderr, "usage: tune_mf [--data FILE]... [--set NAME=V1,V2,...]... [--folds N] "
                    "[--tolerance X] [--test | --test-only] [--split-seed S] [--threads N]\n");
    return 2;
}

int main(int argc, char **argv) {
    static grid g;
    data ds[MAX_DATA];
    const char *paths[MAX_DATA];
    int np = 0, nd = 0, with_test = 0, custom = 0, search_only = 1;
    long threads = 0, folds = 3;
    double tolerance = 0.0005;
    uint64_t split_seed = 42;
    memset(ds, 0, sizeof(ds));
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--data") == 0 && a + 1 < argc && np < MAX_DATA) {
            paths[np++] = argv[++a];
        } else if (strcmp(argv[a], "--set") == 0 && a + 1 < argc) {
            if (parse_set(&g, argv[++a]) != 0)
                return 2;
            custom = 1;
        } else if (strcmp(argv[a], "--test") == 0) {
            with_test = 1;
        } else if (strcmp(argv[a], "--test-only") == 0) {
            with_test = 1;
            search_only = 0;
        } else if (strcmp(argv[a], "--split-seed") == 0 && a + 1 < argc) {
            split_seed = strtoull(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--tolerance") == 0 && a + 1 < argc) {
            tolerance = strtod(argv[++a], NULL);
        } else if (strcmp(argv[a], "--folds") == 0 && a + 1 < argc) {
            folds = strtol(argv[++a], NULL, 10);
            if (folds < 1 || folds > MAX_FOLDS) {
                fprintf(stderr, "tune_mf: --folds must be 1..%d\n", MAX_FOLDS);
                return 2;
            }
        } else if (strcmp(argv[a], "--threads") == 0 && a + 1 < argc) {
            threads = strtol(argv[++a], NULL, 10);
        } else {
            return usage();
        }
    }
    static char def[2][1024];
    if (np == 0) {
        const char *base = getenv("UNLEARND_SHARED_DATA");
        snprintf(def[0], sizeof(def[0]), "%s/ml-100k/u.data", base ? base : "../shared/data");
        snprintf(def[1], sizeof(def[1]), "%s/ml-1m/ratings.csv", base ? base : "../shared/data");
        paths[np++] = def[0];
        paths[np++] = def[1];
    }
    if (!custom)
        default_grid(&g);
    for (int x = 0; x < np; x++) {
        char err[UL_ERRSTR_SIZE];
        if (access(paths[x], R_OK) != 0) {
            printf("tune_mf: skipping %s: not found\n", paths[x]);
            continue;
        }
        ds[nd].path = paths[x];
        if (load_data(&ds[nd], split_seed, (int)folds, err, sizeof(err)) != 0) {
            fprintf(stderr, "tune_mf: %s\n", err);
            free_data(&ds[nd]);
            continue;
        }
        printf("%s: split seed %llu: %zu train (%ld folds of %zu fit / %zu validation), %zu test "
               "ratings\n",
               paths[x], (unsigned long long)split_seed, ds[nd].train.n, folds, ds[nd].fit[0].n,
               ds[nd].val[0].n, ds[nd].test.n);
        nd++;
    }
    if (nd == 0) {
        printf("tune_mf: no dataset found, nothing to do\n");
        return 0;
    }
    if (search_only)
        search(&g, ds, nd, (int)folds, (int)threads, tolerance);
    if (with_test)
        test_defaults(ds, nd, (int)threads);
    for (int d = 0; d < nd; d++)
        free_data(&ds[d]);
    return 0;
}
