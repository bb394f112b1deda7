/* cmd_train.c: `unlearnd train`, the production trainer. Loads a ratings
 * file, trains biased MF on ALL of its ratings (no split: evaluation is
 * `unlearnd eval`'s job), reports each epoch on stderr and saves the model
 * with the dataset's raw ids so that `unlearnd recommend` speaks raw ids.
 * The rating scale is the file's (lowest..highest rating) unless given; the
 * model file carries it, so score, recommend and import use it. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "mf.h"
#include "ul_clock.h"
#include "ul_err.h"

#define CMD "train"

typedef struct train_opts {
    const char *data, *out;
    mf_params params;
    ds_load_opts load;
} train_opts;

static void train_help(void) {
    mf_params p;
    mf_params_init(&p);
    printf("Usage: unlearnd train --data PATH --out MODEL [options]\n\n"
           "Train a biased matrix-factorisation model on every rating in PATH and save it.\n"
           "PATH may be MovieLens u.data (tab-separated), ratings.dat ('::'), or CSV with a\n"
           "header naming user, item, rating[, timestamp] columns; the format is detected.\n"
           "Progress (epoch, train RMSE) goes to stderr. The model keeps the raw ids and the\n"
           "rating scale (predictions are clipped to it): by default the lowest and highest\n"
           "rating in PATH (half stars give 0.5..5); give --rating-min/--rating-max when the\n"
           "file does not reach both ends of the scale.\n\n"
           "Options:\n"
           "  --data PATH      ratings file to train on (required)\n"
           "  --out MODEL      where to write the model file (required; written atomically)\n"
           "  --k N            latent dimension, 1..%d (default %d)\n"
           "  --epochs N       SGD passes over the data (default %d)\n"
           "  --lr X           initial learning rate, decayed x%g per epoch (default %g)\n"
           "  --reg X          L2 regularisation of the factors (default %g)\n"
           "  --seed S         random seed; same seed and data give the same model (default "
           "%llu)\n"
           "  --threads N      training threads, 0 = all cores; the model does not depend on\n"
           "                   it (default %d)\n"
           "  --dups POLICY    duplicate (user,item) lines: 'error' stops and names both lines,\n"
           "                   'last' keeps the later rating (default error)\n" CLI_SCALE_HELP
           "                   (default: the lowest / highest rating in PATH)\n"
           "  --help           show this help\n\n"
           "Exit status: 0 success, 1 bad data or I/O failure, 2 bad usage.\n",
           MF_MAX_K, p.k, p.epochs, (double)p.lr_decay, (double)p.lr, (double)p.reg,
           (unsigned long long)p.seed, p.threads);
}

static int dups_parse(const char *val, ds_dup_policy *dups, char *err, size_t size) {
    if (strcmp(val, "error") == 0)
        *dups = DS_DUP_ERROR;
    else if (strcmp(val, "last") == 0)
        *dups = DS_DUP_LAST;
    else {
        ul_set_err(err, size, "--dups: '%s' is not a policy (use 'error' or 'last')", val);
        return -1;
    }
    return 0;
}

static int opt_value(const char *name, const char *val, train_opts *o, char *err, size_t size) {
    long l;
    double d;
    if (strcmp(name, "--data") == 0)
        o->data = val;
    else if (strcmp(name, "--out") == 0)
        o->out = val;
    else if (strcmp(name, "--k") == 0) {
        if (cli_parse_long(name, val, 1, MF_MAX_K, &l, err, size) != 0)
            return -1;
        o->params.k = (int)l;
    } else if (strcmp(name, "--epochs") == 0) {
        if (cli_parse_long(name, val, 0, 100000, &l, err, size) != 0)
            return -1;
        o->params.epochs = (int)l;
    } else if (strcmp(name, "--lr") == 0) {
        if (cli_parse_double(name, val, 1e-9, 10.0, &d, err, size) != 0)
            return -1;
        o->params.lr = (float)d;
    } else if (strcmp(name, "--reg") == 0) {
        if (cli_parse_double(name, val, 0.0, 1e6, &d, err, size) != 0)
            return -1;
        o->params.reg = (float)d;
    } else if (strcmp(name, "--seed") == 0)
        return cli_parse_u64(name, val, &o->params.seed, err, size);
    else if (strcmp(name, "--threads") == 0) {
        if (cli_parse_long(name, val, 0, 1024, &l, err, size) != 0)
            return -1;
        o->params.threads = (int)l;
    } else if (strcmp(name, "--dups") == 0)
        return dups_parse(val, &o->load.dups, err, size);
    else if (strcmp(name, "--rating-min") == 0)
        return cli_parse_rating(name, val, &o->load.rating_min, err, size);
    else if (strcmp(name, "--rating-max") == 0)
        return cli_parse_rating(name, val, &o->load.rating_max, err, size);
    return 0;
}

/* 0 ok, 1 --help shown, -1 usage error (message in err). */
static int train_parse(int argc, char **argv, train_opts *o, char *err, size_t size) {
    static const char *const names[] = {"--data", "--out",        "--k",          "--epochs",
                                        "--lr",   "--reg",        "--seed",       "--threads",
                                        "--dups", "--rating-min", "--rating-max", NULL};
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
            return 1;
        const char *val = NULL;
        const char *name = cli_opt_next(argc, argv, &a, names, &val, err, size);
        if (name == NULL || opt_value(name, val, o, err, size) != 0)
            return -1;
    }
    if (o->data == NULL || o->out == NULL) {
        ul_set_err(err, size, "%s is required", o->data == NULL ? "--data PATH" : "--out MODEL");
        return -1;
    }
    return 0;
}

static int train_progress(void *ctx, int epoch, int epochs, double train_rmse) {
    const double *t0 = ctx;
    fprintf(stderr, "unlearnd train: epoch %*d/%d  train RMSE %.4f  %.1f s\n",
            epochs >= 100 ? 3 : 2, epoch, epochs, train_rmse, ul_clock_mono_s() - *t0);
    return 0;
}

/* Fail before a long training rather than at the save: the directory of
 * --out must exist and be writable, and --out must not be a directory. */
static int out_check(const char *out, char *err, size_t size) {
    char dir[4096];
    const char *slash = strrchr(out, '/');
    struct stat st;
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == out ? 1 : (int)(slash - out), out);
    if (access(dir, W_OK) != 0) {
        ul_set_err(err, size, "cannot write the model %s: directory %s: %s", out, dir,
                   strerror(errno));
        return -1;
    }
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        ul_set_err(err, size, "--out %s is a directory; give a file name", out);
        return -1;
    }
    return 0;
}

static int train_run(const train_opts *o) {
    char err[UL_ERRSTR_SIZE];
    if (out_check(o->out, err, sizeof(err)) != 0)
        return cli_fail(CMD, err);
    double t0 = ul_clock_mono_s();
    dataset *ds = ds_load(o->data, &o->load, err, sizeof(err));
    if (ds == NULL)
        return cli_fail(CMD, err);
    if (cli_check_scale(o->data, ds->rating_min, ds->rating_max, err, sizeof(err)) != 0) {
        ds_destroy(ds);
        return cli_fail(CMD, err);
    }
    int detected = isnan(o->load.rating_min) || isnan(o->load.rating_max);
    fprintf(stderr,
            "unlearnd train: loaded %s (%s): %zu ratings, %d users, %d items, scale %g..%g%s",
            ds->name, ds->format, ds->n_ratings, (int)ds->n_users, (int)ds->n_items,
            (double)ds->rating_min, (double)ds->rating_max, detected ? " (detected)" : "");
    if (ds->n_duplicates > 0)
        fprintf(stderr, ", %zu duplicate lines dropped (kept the last)", ds->n_duplicates);
    fprintf(stderr, " in %.2f s\n", ul_clock_mono_s() - t0);

    t0 = ul_clock_mono_s();
    mf_model *m = mf_train(ds->ratings, ds->n_ratings, ds->n_users, ds->n_items, ds->rating_min,
                           ds->rating_max, &o->params, train_progress, &t0, err, sizeof(err));
    if (m == NULL) {
        ds_destroy(ds);
        return cli_fail(CMD, err);
    }
    int rc = mf_model_set_ids(m, ds->user_ids, ds->item_ids);
    double rmse = mf_rmse(m, ds->ratings, ds->n_ratings);
    ds_destroy(ds);
    if (rc != UL_OK) {
        mf_model_destroy(m);
        return cli_fail(CMD, "out of memory copying raw ids into the model");
    }
    rc = mf_save(m, o->out, err, sizeof(err));
    if (rc == UL_OK)
        fprintf(stderr,
                "unlearnd train: saved %s (k=%d, %d users, %d items, scale %g..%g, train RMSE "
                "%.4f) after %.1f s\n",
                o->out, m->k, (int)m->n_users, (int)m->n_items, (double)m->rating_min,
                (double)m->rating_max, rmse, ul_clock_mono_s() - t0);
    mf_model_destroy(m);
    return rc == UL_OK ? CLI_EXIT_OK : cli_fail(CMD, err);
}

int cmd_train(int argc, char **argv) {
    train_opts o = {0};
    char err[UL_ERRSTR_SIZE];
    mf_params_init(&o.params);
    ds_load_opts_init(&o.load);
    o.load.range_hint = CLI_SCALE_HINT;
    int rc = train_parse(argc, argv, &o, err, sizeof(err));
    if (rc == 1) {
        train_help();
        return CLI_EXIT_OK;
    }
    if (rc != 0)
        return cli_usage_error(CMD, err);
    if (mf_params_check(&o.params, err, sizeof(err)) != UL_OK)
        return cli_usage_error(CMD, err);
    return train_run(&o);
}
