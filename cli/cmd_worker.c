/* cmd_worker.c: `unlearnd worker`, the stream worker daemon (worker/worker.h).
 * Owns the process-level parts: configuration (file < environment < flags),
 * the logger, and the signals: SIGINT/SIGTERM only set a flag (the loop then
 * checkpoints and leaves the group); a second SIGINT exits at once. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "ul_err.h"
#include "worker.h"

#define CMD "worker"

extern char **environ;

/* Set by SIGINT/SIGTERM (cli_signals_install); a second Ctrl-C exits at once:
 * no checkpoint, a restart replays from the last one. */
static volatile sig_atomic_t stop_flag;

static void worker_help(void) {
    printf("Usage: unlearnd worker [--config FILE] [--KEY VALUE ...] [--dump-config]\n\n"
           "Run the stream worker: consume ratings and forget requests, keep the live model\n"
           "m1 in Redis (sharded by partition), unlearn buffered forget requests every cycle,\n"
           "and publish changed factor rows and receipts. Stops cleanly on SIGTERM or Ctrl-C\n"
           "(final checkpoint, exit 0); a second Ctrl-C exits at once.\n\n"
           "With no kafka.bootstrap.servers it uses the address written by 'unlearnd broker';\n"
           "with no redis.host it starts a private redis-server on loopback with a random\n"
           "password (state lost on exit).\n\n"
           "  --config FILE    key=value file (also UNLEARND_CONFIG)\n"
           "  --dump-config    print the effective configuration and exit\n"
           "  --help           show this help\n\n");
    config_print_help(stdout);
    printf("\nExit status: 0 clean stop, 1 runtime failure, 2 bad configuration.\n");
}

int cmd_worker(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    config_cli cli;
    memset(&cli, 0, sizeof(cli));
    ul_config *cfg = config_new();
    int rc = CLI_EXIT_FAIL;
    ul_log *lg = NULL;
    worker *w = NULL;
    if (cfg == NULL)
        return cli_fail(CMD, "out of memory");
    if (config_load(cfg, argc, argv, environ, &cli, err, sizeof(err)) != UL_OK) {
        rc = cli_usage_error(CMD, err);
        goto done;
    }
    if (cli.help) {
        worker_help();
        rc = CLI_EXIT_OK;
        goto done;
    }
    if (cli.n_rest > 0) {
        snprintf(err, sizeof(err), "unknown argument '%s'", cli.rest[0]);
        rc = cli_usage_error(CMD, err);
        goto done;
    }
    if (cli.dump) {
        config_dump(cfg, stdout);
        rc = CLI_EXIT_OK;
        goto done;
    }
    if (config_validate(cfg, 1, err, sizeof(err)) != UL_OK) {
        rc = cli_usage_error(CMD, err);
        goto done;
    }
    log_level level = LOG_LEVEL_INFO;
    log_parse_level(cfg->log_level, &level);
    lg = log_new(stderr, level);
    if (lg == NULL || config_log_secrets(cfg, lg) != UL_OK) {
        rc = cli_fail(CMD, "out of memory");
        goto done;
    }
    cli_signals_install(&stop_flag);
    w = worker_new(cfg, lg, err, sizeof(err));
    if (w == NULL) {
        rc = cli_fail(CMD, err);
        goto done;
    }
    if (worker_run(w, &stop_flag, err, sizeof(err)) != UL_OK) {
        rc = cli_fail(CMD, err);
        goto done;
    }
    log_info(lg, "worker", "stopped cleanly");
    rc = CLI_EXIT_OK;
done:
    worker_destroy(w);
    log_destroy(lg);
    config_cli_free(&cli);
    config_destroy(cfg);
    return rc;
}
