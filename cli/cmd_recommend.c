/* cmd_recommend.c: `unlearnd recommend`, the top-K items of one user from a
 * saved model or from the factors topic (a minimal downstream consumer), in
 * raw ids.
 *
 * Structure: recommend_parse() fills recommend_opts, recommend_run() gets
 * an mf_model from its source and hands it to recommend_print(), which
 * knows nothing about where the model came from. A second model source
 * (e.g. factors consumed from a topic) adds an option, a field in
 * recommend_opts and a branch in recommend_run(); the printing is shared. */
#include "cli.h"
#include "cli_config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "topic_model.h"
#include "ul_err.h"

#define CMD "recommend"
#define TOP_MAX 100000

typedef struct recommend_opts {
    const char *model; /* --model: a file written by `unlearnd train` */
    const char *topic; /* --from-topic: the factors topic */
    long timeout_ms;   /* --timeout-ms: bound on reading the topic */
    int64_t user;      /* raw user id */
    int have_user;
    int top;
} recommend_opts;

static void recommend_help(void) {
    printf("Usage: unlearnd recommend --model MODEL --user RAW_ID [--top N]\n"
           "       unlearnd recommend --from-topic TOPIC --user RAW_ID [--top N] [options]\n\n"
           "Print the N items with the highest predicted rating for one user, best first,\n"
           "as tab-separated lines: rank, raw item id, predicted score (unclipped, on the\n"
           "model's rating scale). Ids are raw ids. Neither source holds the ratings, so\n"
           "items the user already rated are not excluded. The scale is the model's: the\n"
           "model file carries the one 'unlearnd train' took from its data or from its\n"
           "--rating-min/--rating-max (e.g. 0.5..5 for half stars); the factors topic is on\n"
           "the worker's rating.min..rating.max.\n\n"
           "With --from-topic it acts as a minimal downstream server: it reads the factors\n"
           "topic written by 'unlearnd worker' from the beginning of every partition to its\n"
           "end when the command starts (no consumer group, nothing committed), keeps the\n"
           "latest row of every user and item, and ranks with those rows. The worker folds\n"
           "the global mean into each item's bias, so score = user bias + item bias +\n"
           "user factors . item factors (docs/stream.md). The summary line on stderr gives\n"
           "the rows read and the highest model version seen.\n\n"
           "Options:\n"
           "  --model MODEL       model file written by 'unlearnd train'\n"
           "  --from-topic TOPIC  read the model from this factors topic instead (e.g. factors)\n"
           "  --user RAW_ID       the user, as a raw id (required)\n"
           "  --top N             how many items, 1..%d (default 10)\n"
           "  --timeout-ms MS     with --from-topic: give up reading after MS ms (default 10000)\n"
           "  --help              show this help\n\n"
           "With --from-topic, Kafka settings come from the configuration (kafka.*, e.g.\n"
           "--kafka.bootstrap.servers; default: the local broker's address file), and the\n"
           "factor schema id from schema.id.factor; see 'unlearnd worker --help'.\n\n"
           "Exit status: 0 success; 1 unknown user, unreadable/corrupt model, Kafka not\n"
           "answering, topic missing or empty; 2 bad usage or configuration.\n",
           TOP_MAX);
}

static int opt_value(const char *name, const char *val, recommend_opts *o, char *err, size_t size) {
    long l;
    uint64_t u;
    if (strcmp(name, "--model") == 0)
        o->model = val;
    else if (strcmp(name, "--from-topic") == 0)
        o->topic = val;
    else if (strcmp(name, "--timeout-ms") == 0) {
        if (cli_parse_long(name, val, 1, 3600000, &o->timeout_ms, err, size) != 0)
            return -1;
    } else if (strcmp(name, "--user") == 0) {
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

/* Parse args[start..argc) (argv, or the arguments the config loader left).
 * 0 ok, 1 --help shown, -1 usage error (message in err). */
static int recommend_parse(int argc, char **argv, int start, recommend_opts *o, char *err,
                           size_t size) {
    static const char *const names[] = {"--model", "--from-topic", "--user",
                                        "--top",   "--timeout-ms", NULL};
    for (int a = start; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
            return 1;
        const char *val = NULL;
        const char *name = cli_opt_next(argc, argv, &a, names, &val, err, size);
        if (name == NULL || opt_value(name, val, o, err, size) != 0)
            return -1;
    }
    if (o->model != NULL && o->topic != NULL) {
        ul_set_err(err, size, "give either --model or --from-topic, not both");
        return -1;
    }
    if ((o->model == NULL && o->topic == NULL) || !o->have_user) {
        ul_set_err(err, size, "%s is required",
                   o->have_user ? "--model MODEL or --from-topic TOPIC" : "--user RAW_ID");
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

/* The model from --model or from the topic (cfg is NULL for --model). */
static mf_model *recommend_load(const recommend_opts *o, cli_config *cc, char *err, size_t size) {
    if (o->model != NULL)
        return mf_load(o->model, err, size);
    topic_model_info info;
    mf_model *m =
        topic_model_load(cc->cfg, cc->log, o->topic, (int)o->timeout_ms, &info, err, size);
    if (m != NULL)
        fprintf(stderr,
                "unlearnd recommend: %s: %" PRId64 " records in %d partitions, %d users and %d "
                "items, model version %" PRId64 "\n",
                o->topic, info.messages, (int)info.partitions, (int)m->n_users, (int)m->n_items,
                info.max_version);
    return m;
}

static int recommend_run(const recommend_opts *o, cli_config *cc) {
    char err[UL_ERRSTR_SIZE];
    mf_model *m = recommend_load(o, cc, err, sizeof(err));
    if (m == NULL)
        return cli_fail(CMD, err);
    int rc = recommend_print(m, o->user, o->top, stdout, err, sizeof(err));
    mf_model_destroy(m);
    if (rc != UL_OK)
        return cli_fail(CMD, err);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : cli_fail(CMD, "cannot write to stdout");
}

static int wants_topic(int argc, char **argv) {
    for (int a = 1; a < argc; a++)
        if (strncmp(argv[a], "--from-topic", 12) == 0 &&
            (argv[a][12] == '\0' || argv[a][12] == '='))
            return 1;
    return 0;
}

/* --from-topic: the stream configuration (file < env < flags) first; the
 * arguments it does not know are ours. */
static int recommend_topic(int argc, char **argv, recommend_opts *o) {
    char err[UL_ERRSTR_SIZE];
    cli_config cc;
    int rc = cli_config_load(CMD, argc, argv, &cc);
    if (rc == CLI_EXIT_OK && cc.args.help) {
        recommend_help();
        goto done;
    }
    if (rc != CLI_EXIT_OK)
        goto done;
    int prc = recommend_parse(cc.args.n_rest, cc.args.rest, 0, o, err, sizeof(err));
    if (prc == 1)
        recommend_help();
    else if (prc != 0)
        rc = cli_usage_error(CMD, err);
    else if ((rc = cli_config_ready(CMD, &cc, 1)) == CLI_EXIT_OK)
        rc = recommend_run(o, &cc);
done:
    cli_config_free(&cc);
    return rc;
}

int cmd_recommend(int argc, char **argv) {
    recommend_opts o = {.top = 10, .timeout_ms = 10000};
    char err[UL_ERRSTR_SIZE];
    if (wants_topic(argc, argv))
        return recommend_topic(argc, argv, &o);
    int rc = recommend_parse(argc, argv, 1, &o, err, sizeof(err));
    if (rc == 1) {
        recommend_help();
        return CLI_EXIT_OK;
    }
    if (rc != 0)
        return cli_usage_error(CMD, err);
    return recommend_run(&o, NULL);
}
