/* cmd_recommend.c: `unlearnd recommend`, the top-K items of one user from a
 * saved model, in raw ids.
 *
 * Structure: recommend_parse() fills recommend_opts, recommend_run() gets
 * an mf_model from its source and hands it to recommend_print(), which
 * knows nothing about where the model came from. A second model source
 * (e.g. factors consumed from a topic) adds an option, a field in
 * recommend_opts and a branch in recommend_run(); the printing is shared. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "ul_err.h"

#define CMD "recommend"
#define TOP_MAX 100000

typedef struct recommend_opts {
    const char *model; /* --model: a file written by `unlearnd train` */
    int64_t user;      /* raw user id */
    int have_user;
    int top;
} recommend_opts;

static void recommend_help(void) {
    printf("Usage: unlearnd recommend --model MODEL --user RAW_ID [--top N]\n\n"
           "Print the N items with the highest predicted rating for one user, best first,\n"
           "as tab-separated lines: rank, raw item id, predicted score (unclipped, on the\n"
           "model's rating scale). Ids are the raw ids of the training file. The model\n"
           "file holds no ratings, so items the user already rated are not excluded.\n\n"
           "Options:\n"
           "  --model MODEL    model file written by 'unlearnd train' (required)\n"
           "  --user RAW_ID    the user, as a raw id from the training data (required)\n"
           "  --top N          how many items, 1..%d (default 10)\n"
           "  --help           show this help\n\n"
           "Exit status: 0 success, 1 unknown user or unreadable/corrupt model, 2 bad usage.\n",
           TOP_MAX);
}

static int opt_match(int argc, char **argv, int *a, const char *name, const char **val) {
    size_t len = strlen(name);
    if (strncmp(argv[*a], name, len) != 0)
        return 0;
    if (argv[*a][len] == '=') {
        *val = argv[*a] + len + 1;
        return 1;
    }
    if (argv[*a][len] != '\0')
        return 0;
    *val = *a + 1 < argc ? argv[++*a] : NULL;
    return 1;
}

static int opt_value(const char *name, const char *val, recommend_opts *o, char *err, size_t size) {
    long l;
    uint64_t u;
    if (strcmp(name, "--model") == 0)
        o->model = val;
    else if (strcmp(name, "--user") == 0) {
        if (cli_parse_u64(name, val, &u, err, size) != 0)
            return -1;
        if (u > (uint64_t)INT64_MAX) {
            ul_set_err(err, size, "--user: %s is too large for a raw id", val);
            return -1;
        }
        o->user = (int64_t)u;
        o->have_user = 1;
    } else if (strcmp(name, "--top") == 0) {
        if (cli_parse_long(name, val, 1, TOP_MAX, &l, err, size) != 0)
            return -1;
        o->top = (int)l;
    }
    return 0;
}

/* 0 ok, 1 --help shown, -1 usage error (message in err). */
static int recommend_parse(int argc, char **argv, recommend_opts *o, char *err, size_t size) {
    static const char *const names[] = {"--model", "--user", "--top", NULL};
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
            return 1;
        const char *val = NULL;
        int n = 0;
        while (names[n] && !opt_match(argc, argv, &a, names[n], &val))
            n++;
        if (names[n] == NULL) {
            ul_set_err(err, size, "unknown option '%s'", argv[a]);
            return -1;
        }
        if (val == NULL) {
            ul_set_err(err, size, "%s needs a value", names[n]);
            return -1;
        }
        if (opt_value(names[n], val, o, err, size) != 0)
            return -1;
    }
    if (o->model == NULL || !o->have_user) {
        ul_set_err(err, size, "%s is required",
                   o->model == NULL ? "--model MODEL" : "--user RAW_ID");
        return -1;
    }
    return 0;
}

/* Dense index of a raw user id, or -1. A model without raw ids (not one
 * written by `unlearnd train`) is addressed by dense index. */
static int32_t model_user_index(const mf_model *m, int64_t raw) {
    if (m->user_ids == NULL)
        return raw < m->n_users ? (int32_t)raw : -1;
    for (int32_t u = 0; u < m->n_users; u++)
        if (m->user_ids[u] == raw)
            return u;
    return -1;
}

static int64_t model_item_id(const mf_model *m, int32_t item) {
    return m->item_ids ? m->item_ids[item] : (int64_t)item;
}

/* Print the top `top` items of raw user `raw_user` to `out`. Returns UL_OK,
 * UL_ERR_ARG for an unknown user, or another code; message in errstr. */
static int recommend_print(const mf_model *m, int64_t raw_user, int top, FILE *out, char *errstr,
                           size_t errstr_size) {
    int32_t u = model_user_index(m, raw_user);
    if (u < 0) {
        ul_set_err(errstr, errstr_size, "user %" PRId64 " is not in the model (%d users known)",
                   raw_user, (int)m->n_users);
        return UL_ERR_ARG;
    }
    int32_t *items = malloc((size_t)top * sizeof(*items));
    float *scores = malloc((size_t)top * sizeof(*scores));
    int n = (items && scores) ? mf_top_k(m, u, NULL, top, items, scores) : UL_ERR_NOMEM;
    if (n < 0)
        ul_set_err(errstr, errstr_size, "cannot rank items: %s", ul_err_name(n));
    else {
        fprintf(out, "rank\titem\tscore\n");
        for (int r = 0; r < n; r++)
            fprintf(out, "%d\t%" PRId64 "\t%.4f\n", r + 1, model_item_id(m, items[r]),
                    (double)scores[r]);
    }
    free(items);
    free(scores);
    return n < 0 ? n : UL_OK;
}

static int recommend_run(const recommend_opts *o) {
    char err[UL_ERRSTR_SIZE];
    mf_model *m = mf_load(o->model, err, sizeof(err));
    if (m == NULL)
        return cli_fail(CMD, err);
    int rc = recommend_print(m, o->user, o->top, stdout, err, sizeof(err));
    mf_model_destroy(m);
    if (rc != UL_OK)
        return cli_fail(CMD, err);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : cli_fail(CMD, "cannot write to stdout");
}

int cmd_recommend(int argc, char **argv) {
    recommend_opts o = {.top = 10};
    char err[UL_ERRSTR_SIZE];
    int rc = recommend_parse(argc, argv, &o, err, sizeof(err));
    if (rc == 1) {
        recommend_help();
        return CLI_EXIT_OK;
    }
    if (rc != 0)
        return cli_usage_error(CMD, err);
    return recommend_run(&o);
}
