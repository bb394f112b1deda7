/* cli_config.c: shared configuration loading for the stream commands (see
 * cli_config.h). */
#include "cli_config.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ul_err.h"
#include "worker.h"

extern char **environ;

int cli_config_load(const char *cmd, int argc, char **argv, cli_config *cc) {
    char err[UL_ERRSTR_SIZE];
    memset(cc, 0, sizeof(*cc));
    cc->cfg = config_new();
    if (cc->cfg == NULL)
        return cli_fail(cmd, "out of memory");
    if (config_load(cc->cfg, argc, argv, environ, &cc->args, err, sizeof(err)) != UL_OK)
        return cli_usage_error(cmd, err);
    return CLI_EXIT_OK;
}

int cli_config_ready(const char *cmd, cli_config *cc, int need_kafka) {
    char err[UL_ERRSTR_SIZE];
    log_level level = LOG_LEVEL_INFO;
    if (config_validate(cc->cfg, need_kafka, err, sizeof(err)) != UL_OK)
        return cli_usage_error(cmd, err);
    log_parse_level(cc->cfg->log_level, &level);
    cc->log = log_new(stderr, level);
    if (cc->log == NULL || config_log_secrets(cc->cfg, cc->log) != UL_OK)
        return cli_fail(cmd, "out of memory");
    return CLI_EXIT_OK;
}

void cli_config_free(cli_config *cc) {
    if (cc == NULL)
        return;
    config_cli_free(&cc->args);
    config_destroy(cc->cfg);
    log_destroy(cc->log);
    memset(cc, 0, sizeof(*cc));
}

int cli_state_open(const char *cmd, const cli_config *cc, store **st, store_model *m) {
    char err[UL_ERRSTR_SIZE];
    int found = 0;
    *st = NULL;
    if (!config_has_redis(cc->cfg))
        return cli_usage_error(cmd, "redis.host is not set: say which Redis holds the state");
    store_opts so;
    worker_store_opts(cc->cfg, &so);
    if ((*st = store_connect(&so, err, sizeof(err))) == NULL ||
        store_model_get(*st, m, &found, err, sizeof(err)) != UL_OK)
        goto fail;
    if (!found || m->partitions <= 0) {
        snprintf(err, sizeof(err), "no worker state in this Redis yet (start 'unlearnd worker')");
        goto fail;
    }
    return CLI_EXIT_OK;
fail:
    store_destroy(*st);
    *st = NULL;
    return cli_fail(cmd, err);
}

live *cli_state_live(store *st, const store_model *m, char *errstr, size_t errstr_size) {
    live_opts lo;
    live_opts_init(&lo);
    lo.k = m->k;
    lo.rating_min = m->rating_min;
    lo.rating_max = m->rating_max;
    lo.read_only = 1;
    return live_new(&lo, st, m->partitions, errstr, errstr_size);
}

int cli_state_main(const cli_state_cmd *c, void *opts, int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    cli_config cc;
    store *st = NULL;
    store_model m;
    int rc = cli_config_load(c->name, argc, argv, &cc);
    if (rc == CLI_EXIT_OK && cc.args.help)
        c->help();
    else if (rc == CLI_EXIT_OK && c->parse(cc.args.n_rest, cc.args.rest, opts, err, sizeof(err)))
        rc = cli_usage_error(c->name, err);
    else if (rc == CLI_EXIT_OK &&
             (rc = cli_config_ready(c->name, &cc, c->need_kafka)) == CLI_EXIT_OK &&
             (rc = cli_state_open(c->name, &cc, &st, &m)) == CLI_EXIT_OK)
        rc = c->run(&cc, st, &m, opts);
    store_destroy(st);
    cli_config_free(&cc);
    return rc;
}
