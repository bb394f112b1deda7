/* cli_config.c: shared configuration loading for the stream commands (see
 * cli_config.h). */
#include "cli_config.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ul_err.h"

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
