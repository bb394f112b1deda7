/* cmd_worker.c: `unlearnd worker`, the stream worker daemon (worker/worker.h).
 * Owns the process-level parts: configuration (file < environment < flags,
 * cli_config.h), the logger, and the signals: SIGINT/SIGTERM only set a flag (the loop then
 * checkpoints and leaves the group); a second SIGINT exits at once. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli_config.h"
#include "config.h"
#include "log.h"
#include "ul_err.h"
#include "worker.h"

#define CMD "worker"

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
    char err[3 * UL_ERRSTR_SIZE]; /* a fatal message names topics and ranges */
    cli_config cc;
    worker *w = NULL;
    int rc = cli_config_load(CMD, argc, argv, &cc);
    if (rc != CLI_EXIT_OK)
        goto done;
    if (cc.args.help) {
        worker_help();
        goto done;
    }
    if (cc.args.n_rest > 0) {
        snprintf(err, sizeof(err), "unknown argument '%s'", cc.args.rest[0]);
        rc = cli_usage_error(CMD, err);
        goto done;
    }
    if (cc.args.dump) {
        config_dump(cc.cfg, stdout);
        goto done;
    }
    if ((rc = cli_config_ready(CMD, &cc, 1)) != CLI_EXIT_OK)
        goto done;
    cli_signals_install(&stop_flag);
    w = worker_new(cc.cfg, cc.log, err, sizeof(err));
    if (w == NULL) {
        rc = cli_fail(CMD, err);
        goto done;
    }
    if (worker_run(w, &stop_flag, err, sizeof(err)) != UL_OK) {
        rc = cli_fail(CMD, err);
        goto done;
    }
    log_info(cc.log, "worker", "stopped cleanly");
done:
    worker_destroy(w);
    cli_config_free(&cc);
    return rc;
}
