/* cli_config.h: configuration and logger set-up shared by the commands that
 * talk to Kafka or Redis (broker, produce, consume, worker, ...): defaults <
 * --config file < UNLEARND_* environment < flags, then validation. */
#ifndef UL_CLI_CONFIG_H
#define UL_CLI_CONFIG_H

#include "config.h"
#include "log.h"

typedef struct cli_config {
    ul_config *cfg;  /* owned */
    config_cli args; /* --help/--dump-config/--config and the command's own arguments */
    ul_log *log;     /* owned; created by cli_config_ready at cfg->log_level, on stderr */
} cli_config;

/* Load the layers from argv and environ. Returns CLI_EXIT_OK, or prints
 * "unlearnd <cmd>: <message>" and returns CLI_EXIT_USAGE. `cc` must be freed
 * with cli_config_free either way. */
int cli_config_load(const char *cmd, int argc, char **argv, cli_config *cc);

/* Validate (need_kafka: resolve kafka.bootstrap.servers, see config_validate)
 * and create the logger. Returns CLI_EXIT_OK or prints the error and returns
 * CLI_EXIT_USAGE. */
int cli_config_ready(const char *cmd, cli_config *cc, int need_kafka);

void cli_config_free(cli_config *cc);

#endif
