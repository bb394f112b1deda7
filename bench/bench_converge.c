/* bench_converge.c: test RMSE against wall time while training, for
 * unlearnd's trainer and, when pointed at a LibMF checkout, for LibMF's
 * mf-train on the same split in the same run. Prints both curves and the
 * time each needs to reach a target RMSE; asserts nothing.
 *
 *   build/bench_converge [--data FILE] [--threads N (2)] [--epochs E]
 *                        [--target RMSE (0.848)] [--runs R (3)]
 *                        [--libmf DIR] [--libmf-iters N (20)] [--libmf-l2 X (0.05)]
 *                        [--tsv PREFIX]
 *
 * Data: $UNLEARND_SHARED_DATA/ml-1m/ratings.csv by default, split 80/20 with
 * seed 42 (bench_mf's split). unlearnd trains with mf_params_init()'s
 * defaults at K=64 (E epochs: default the library's), scoring the test part
 * after every epoch; the clock starts when mf_train_watch is called (data
 * loaded) and includes that scoring, as LibMF's includes its own.
 *
 * LibMF is never part of this project: with --libmf DIR the benchmark runs
 * DIR/mf-train (building it first with `make -C DIR mf-train` if it is
 * missing) as `mf-train -k 64 -s N -t ITERS -l2 X -p TEST TRAIN MODEL` on
 * text copies of the same split written to a temporary directory, and
 * timestamps each line mf-train prints: its clock starts at its header
 * line, printed once its data are loaded, and each iteration's line comes
 * after it has scored the test set. mf-train flushes its output only after
 * each iteration, so the header arrives with iteration 0's line: LibMF's
 * times leave out its first iteration (they favour LibMF by that much). The default -l2 0.05 was
 * LibMF's best of 0.01..0.1 at 20 iterations here (its own default 0.1 gave 0.868).
 *
 * Each side runs R times, alternating, and the medians are reported (the
 * machine may be shared). With --tsv PREFIX the median curves are written to
 * PREFIX-unlearnd.tsv and PREFIX-libmf.tsv (seconds, test RMSE) for
 * bench/converge.sh to plot. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "mf.h"
#include "ul_clock.h"
#include "ul_err.h"

#define MAX_POINTS 512
#define MAX_RUNS 9

typedef struct curve {
    int n;
    double process; /* LibMF: seconds from spawning mf-train to its exit */
    double secs[MAX_POINTS];
    double rmse[MAX_POINTS];
} curve;

typedef struct opts {
    const char *data, *libmf, *tsv;
    int threads, epochs, runs, libmf_iters;
    double target, libmf_l2;
} opts;

typedef struct watch_ctx {
    const ul_ratings *test;
    double start;
    curve *c;
} watch_ctx;

static int on_epoch(void *ctx, int epoch, int epochs, double train_rmse, const mf_model *m) {
    (void)epochs;
    (void)train_rmse;
    watch_ctx *w = ctx;
    double rmse = mf_rmse(m, w->test->v, w->test->n);
    if (epoch <= MAX_POINTS) {
        w->c->secs[epoch - 1] = ul_clock_mono_s() - w->start;
        w->c->rmse[epoch - 1] = rmse;
        w->c->n = epoch;
    }
    return 0;
}

static int run_unlearnd(const dataset *ds, const ul_ratings *train, const ul_ratings *test,
                        const opts *o, curve *c) {
    char err[UL_ERRSTR_SIZE];
    mf_params p;
    mf_params_init(&p);
    p.threads = o->threads;
    if (o->epochs > 0)
        p.epochs = o->epochs;
    watch_ctx w = {test, ul_clock_mono_s(), c};
    c->n = 0;
    mf_model *m = mf_train_watch(train->v, train->n, ds->n_users, ds->n_items, ds->rating_min,
                                 ds->rating_max, &p, on_epoch, &w, err, sizeof(err));
    if (m == NULL) {
        fprintf(stderr, "bench_converge: %s\n", err);
        return -1;
    }
    mf_model_destroy(m);
    return 0;
}

/* Ratings as LibMF's text format: "user item rating" per line, dense ids. */
static int write_text(const char *path, const ul_ratings *r) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench_converge: cannot write %s\n", path);
        return -1;
    }
    for (size_t x = 0; x < r->n; x++)
        fprintf(f, "%d %d %g\n", (int)r->v[x].user, (int)r->v[x].item, (double)r->v[x].value);
    return fclose(f) == 0 ? 0 : -1;
}

static int run_libmf(const opts *o, const char *dir, curve *c) {
    char cmd[4096], line[512];
    snprintf(cmd, sizeof(cmd),
             "'%s/mf-train' -k 64 -s %d -t %d -l2 %g -p '%s/test.txt' '%s/train.txt' "
             "'%s/model.txt'",
             o->libmf, o->threads, o->libmf_iters, o->libmf_l2, dir, dir, dir);
    double spawned = ul_clock_mono_s();
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    double start = -1;
    c->n = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        int iter;
        double tr, va;
        double t = ul_clock_mono_s();
        if (strncmp(line, "iter", 4) == 0 || strstr(line, "iter ") != NULL) {
            start = t;
            continue;
        }
        if (start >= 0 && sscanf(line, "%d %lf %lf", &iter, &tr, &va) == 3 && c->n < MAX_POINTS) {
            c->secs[c->n] = t - start;
            c->rmse[c->n] = va;
            c->n++;
        }
    }
    int status = pclose(f);
    c->process = ul_clock_mono_s() - spawned;
    if (status != 0 || c->n == 0) {
        fprintf(stderr, "bench_converge: '%s' failed (status %d, %d iterations read)\n", cmd,
                status, c->n);
        return -1;
    }
    return 0;
}

/* Build DIR/mf-train with LibMF's own Makefile when it is missing. */
static int libmf_ready(const char *dir) {
    char path[4096], cmd[4200];
    snprintf(path, sizeof(path), "%s/mf-train", dir);
    if (access(path, X_OK) == 0)
        return 0;
    snprintf(cmd, sizeof(cmd), "make -C '%s' mf-train >&2", dir);
    fprintf(stderr, "bench_converge: building LibMF: %s\n", cmd);
    if (system(cmd) != 0 || access(path, X_OK) != 0) {
        fprintf(stderr, "bench_converge: no %s after make\n", path);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The point-wise median of R curves (over the points all of them have). */
static void median_curve(const curve *runs, int r, curve *out) {
    out->n = MAX_POINTS;
    for (int x = 0; x < r; x++)
        if (runs[x].n < out->n)
            out->n = runs[x].n;
    for (int p = 0; p < out->n; p++) {
        double s[MAX_RUNS], v[MAX_RUNS];
        for (int x = 0; x < r; x++) {
            s[x] = runs[x].secs[p];
            v[x] = runs[x].rmse[p];
        }
        qsort(s, (size_t)r, sizeof(double), cmp_double);
        qsort(v, (size_t)r, sizeof(double), cmp_double);
        out->secs[p] = s[r / 2];
        out->rmse[p] = v[r / 2];
    }
    double proc[MAX_RUNS];
    for (int x = 0; x < r; x++)
        proc[x] = runs[x].process;
    qsort(proc, (size_t)r, sizeof(double), cmp_double);
    out->process = proc[r / 2];
}

/* Seconds until the curve first reaches `target`, or -1; *at the epoch. */
static double time_to(const curve *c, double target, int *at) {
    for (int p = 0; p < c->n; p++)
        if (c->rmse[p] <= target) {
            *at = p + 1;
            return c->secs[p];
        }
    *at = -1;
    return -1;
}

static void print_curve(const char *who, const curve *c) {
    printf("%s: epoch/iteration, seconds, test RMSE (median of the runs)\n", who);
    for (int p = 0; p < c->n; p++)
        printf("  %3d  %7.3f  %.4f\n", p + 1, c->secs[p], c->rmse[p]);
}

static void write_tsv(const char *prefix, const char *who, const curve *c) {
    char path[4096];
    snprintf(path, sizeof(path), "%s-%s.tsv", prefix, who);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench_converge: cannot write %s\n", path);
        return;
    }
    fprintf(f, "# seconds\ttest_rmse\t(%s)\n", who);
    for (int p = 0; p < c->n; p++)
        fprintf(f, "%.4f\t%.4f\n", c->secs[p], c->rmse[p]);
    fclose(f);
}

static void report(const opts *o, const curve *u, const curve *l) {
    int ue, le;
    double tu = time_to(u, o->target, &ue);
    printf("unlearnd: test RMSE <= %.3f after epoch %d at %.3f s; final %.4f after %d epochs "
           "(%.3f s)\n",
           o->target, ue, tu, u->rmse[u->n - 1], u->n, u->secs[u->n - 1]);
    if (l == NULL)
        return;
    double tl = l->secs[l->n - 1], rl = l->rmse[l->n - 1];
    double tl_target = time_to(l, o->target, &le);
    printf("LibMF:    %d iterations: test RMSE %.4f at %.3f s; <= %.3f after iteration %d "
           "(%.3f s); whole mf-train process %.3f s (loading the text files included)\n",
           l->n, rl, tl, o->target, le, tl_target, l->process);
    int ur;
    double tu_rl = time_to(u, rl, &ur);
    if (tu >= 0)
        printf("ratio: unlearnd's time to %.3f / LibMF's time to its %d-iteration RMSE = "
               "%.3f / %.3f = %.2f\n",
               o->target, l->n, tu, tl, tu / tl);
    if (tu_rl >= 0)
        printf("ratio: unlearnd's time to LibMF's %d-iteration RMSE %.4f (epoch %d) / LibMF's = "
               "%.3f / %.3f = %.2f\n",
               l->n, rl, ur, tu_rl, tl, tu_rl / tl);
}

static int parse_args(int argc, char **argv, opts *o) {
    for (int a = 1; a < argc; a++) {
        const char *k = argv[a], *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (v == NULL)
            return -1;
        if (strcmp(k, "--data") == 0)
            o->data = v;
        else if (strcmp(k, "--libmf") == 0)
            o->libmf = v;
        else if (strcmp(k, "--tsv") == 0)
            o->tsv = v;
        else if (strcmp(k, "--threads") == 0)
            o->threads = atoi(v);
        else if (strcmp(k, "--epochs") == 0)
            o->epochs = atoi(v);
        else if (strcmp(k, "--runs") == 0)
            o->runs = atoi(v);
        else if (strcmp(k, "--libmf-iters") == 0)
            o->libmf_iters = atoi(v);
        else if (strcmp(k, "--target") == 0)
            o->target = atof(v);
        else if (strcmp(k, "--libmf-l2") == 0)
            o->libmf_l2 = atof(v);
        else
            return -1;
        a++;
    }
    if (o->threads < 1 || o->runs < 1 || o->runs > MAX_RUNS || o->epochs < 0 ||
        o->epochs > MAX_POINTS || o->libmf_iters < 1 || o->libmf_iters > MAX_POINTS)
        return -1;
    return 0;
}

int main(int argc, char **argv) {
    static char def[1024], dir[] = "/tmp/unlearnd-converge-XXXXXX";
    const char *base = getenv("UNLEARND_SHARED_DATA");
    snprintf(def, sizeof(def), "%s/ml-1m/ratings.csv", base ? base : "../shared/data");
    opts o = {def, NULL, NULL, 2, 0, 3, 20, 0.848, 0.05};
    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr,
                "usage: bench_converge [--data FILE] [--threads N] [--epochs E] "
                "[--target RMSE] [--runs R (1..%d)] [--libmf DIR] [--libmf-iters N] "
                "[--libmf-l2 X] [--tsv PREFIX]\n",
                MAX_RUNS);
        return 2;
    }
    if (access(o.data, R_OK) != 0) {
        printf("bench_converge: skipped: %s not found (pass --data FILE)\n", o.data);
        return 0;
    }
    char err[UL_ERRSTR_SIZE];
    dataset *ds = ds_load(o.data, NULL, err, sizeof(err));
    ul_ratings train = {0}, test = {0};
    if (ds == NULL ||
        ds_split(ds->ratings, ds->n_ratings, 0.2, 42, &train, &test, err, sizeof(err)) != UL_OK) {
        fprintf(stderr, "bench_converge: %s\n", err);
        ds_destroy(ds);
        return 1;
    }
    int use_libmf = o.libmf != NULL;
    if (use_libmf) {
        char tr[4200], te[4200];
        snprintf(tr, sizeof(tr), "%s/train.txt", mkdtemp(dir) ? dir : "/tmp");
        snprintf(te, sizeof(te), "%s/test.txt", dir);
        if (libmf_ready(o.libmf) != 0 || write_text(tr, &train) != 0 || write_text(te, &test))
            return 1;
    }
    printf("bench_converge: %s: %zu train / %zu test ratings, K=64, %d threads, %d runs each%s\n",
           o.data, train.n, test.n, o.threads, o.runs, use_libmf ? ", alternating with LibMF" : "");
    static curve uc[MAX_RUNS], lc[MAX_RUNS], um, lm;
    int rc = 0;
    for (int r = 0; r < o.runs && rc == 0; r++) {
        rc = run_unlearnd(ds, &train, &test, &o, &uc[r]);
        if (rc == 0 && use_libmf)
            rc = run_libmf(&o, dir, &lc[r]);
    }
    if (rc == 0) {
        median_curve(uc, o.runs, &um);
        print_curve("unlearnd", &um);
        if (use_libmf) {
            median_curve(lc, o.runs, &lm);
            print_curve("LibMF", &lm);
        }
        report(&o, &um, use_libmf ? &lm : NULL);
        if (o.tsv != NULL) {
            write_tsv(o.tsv, "unlearnd", &um);
            if (use_libmf)
                write_tsv(o.tsv, "libmf", &lm);
        }
    }
    if (use_libmf) {
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_converge: could not remove %s\n", dir);
    }
    ul_ratings_free(&train);
    ul_ratings_free(&test);
    ds_destroy(ds);
    return rc == 0 ? 0 : 1;
}
