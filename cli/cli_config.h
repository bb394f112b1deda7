/* cli_config.h: configuration and logger set-up shared by the commands that
 * talk to Kafka or Redis (broker, produce, consume, worker, ...): defaults <
 * --config file < UNLEARND_* environment < flags, then validation. */
#ifndef UL_CLI_CONFIG_H
#define UL_CLI_CONFIG_H

#include "config.h"
#include "live.h"
#include "store.h"
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

/* The worker's state for a read-only tool (state, erasure-report): connect
 * to cc's Redis (redis.* must name one) and read ul:model. CLI_EXIT_OK with
 * *st (the caller destroys it) and *m; otherwise the error is printed
 * ("redis.host is not set", the connection's error, "no worker state") and
 * its exit code returned, *st NULL. */
int cli_state_open(const char *cmd, const cli_config *cc, store **st, store_model *m);

/* The whole of a read-only state command: load the configuration, --help,
 * parse the command's own arguments into `opts`, validate (Kafka too when
 * need_kafka), cli_state_open, run, free. Returns the exit code. */
typedef struct cli_state_cmd {
    const char *name;
    void (*help)(void);
    /* 0, or -1 with a usage error in err */
    int (*parse)(int n, char **rest, void *opts, char *err, size_t size);
    int need_kafka;
    int (*run)(cli_config *cc, store *st, const store_model *m, void *opts); /* exit code */
} cli_state_cmd;
int cli_state_main(const cli_state_cmd *c, void *opts, int argc, char **argv);

/* A read-only live model over st (nothing claimed or written): assign
 * partitions to read them. NULL with errstr. */
live *cli_state_live(store *st, const store_model *m, char *errstr, size_t errstr_size);

#endif
