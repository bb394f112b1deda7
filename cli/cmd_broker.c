/* cmd_broker.c: `unlearnd broker`, the local development Kafka: hosts
 * librdkafka's mock cluster with our topics until SIGINT/SIGTERM, printing
 * its address and writing it to the bootstrap file the other commands read.
 * A second SIGINT exits at once. Limits: docs/broker.md. */
#include "cli.h"
#include "cli_config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "ul_err.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND; /* a second signal takes the default action: exit now */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void print_help(void) {
    char path[512];
    printf("Usage: unlearnd broker [--partitions N] [--bootstrap-file PATH] [options]\n\n"
           "Runs a local Kafka-compatible broker (librdkafka's mock cluster) for development,\n"
           "tests and the demo. Creates the topics named by topic.* with N partitions each,\n"
           "prints its bootstrap address on stdout and writes it to the bootstrap file, which\n"
           "the other commands read when kafka.bootstrap.servers is not set. Runs until\n"
           "SIGINT/SIGTERM and removes the file on exit.\n\n"
           "In memory only: about 5 MiB or 100k batches per partition, older data dropped\n"
           "silently; transactions are not real. For production set kafka.bootstrap.servers\n"
           "to a real Kafka instead (docs/broker.md).\n\n"
           "Options:\n"
           "  --partitions N         partitions per topic, 1..1000 (default %d)\n"
           "  --brokers N            mock brokers, 1..16 (default 1)\n"
           "  --bootstrap-file PATH  where to write the address (default broker.bootstrap.file,\n"
           "                         %s)\n"
           "  --topic.<name> NAME, --broker.bootstrap.file PATH, --log.level LEVEL, --config FILE\n"
           "                         as in the configuration table (listed below)\n",
           BROKER_DEFAULT_PARTITIONS, config_default_bootstrap_file(path, sizeof(path)));
    printf("\n");
    config_print_help(stdout);
}

static int parse_args(cli_config *cc, broker_opts *opts) {
    char err[UL_ERRSTR_SIZE];
    long v;
    for (int i = 0; i < cc->args.n_rest; i++) {
        const char *a = cc->args.rest[i];
        const char *val = i + 1 < cc->args.n_rest ? cc->args.rest[i + 1] : NULL;
        if (strcmp(a, "--partitions") == 0 || strcmp(a, "--brokers") == 0) {
            int parts = strcmp(a, "--partitions") == 0;
            if (cli_parse_long(a, val, 1, parts ? 1000 : 16, &v, err, sizeof(err)) != 0)
                return cli_usage_error("broker", err);
            *(parts ? &opts->partitions : &opts->n_brokers) = (int)v;
            i++;
        } else if (strcmp(a, "--bootstrap-file") == 0) {
            if (val == NULL)
                return cli_usage_error("broker", "--bootstrap-file needs a path");
            if (config_set(cc->cfg, "broker.bootstrap.file", val, a, err, sizeof(err)) != UL_OK)
                return cli_usage_error("broker", err);
            i++;
        } else {
            snprintf(err, sizeof(err), "unknown argument '%s'", a);
            return cli_usage_error("broker", err);
        }
    }
    return CLI_EXIT_OK;
}

static void wait_for_signal(void) {
    struct timespec tick = {0, 100 * 1000 * 1000};
    while (!stop_requested)
        nanosleep(&tick, NULL);
}

int cmd_broker(int argc, char **argv) {
    char err[UL_ERRSTR_SIZE];
    cli_config cc;
    broker_opts opts;
    broker_opts_init(&opts);
    int rc = cli_config_load("broker", argc, argv, &cc);
    if (rc == CLI_EXIT_OK && cc.args.help) {
        print_help();
        goto done;
    }
    if (rc == CLI_EXIT_OK)
        rc = parse_args(&cc, &opts);
    if (rc == CLI_EXIT_OK)
        rc = cli_config_ready("broker", &cc, 0);
    if (rc != CLI_EXIT_OK)
        goto done;
    if (cc.args.dump) {
        config_dump(cc.cfg, stdout);
        goto done;
    }
    broker_opts_from_config(&opts, cc.cfg);
    install_signals();
    broker *b = broker_start(&opts, cc.log, err, sizeof(err));
    if (b == NULL) {
        rc = cli_fail("broker", err);
        goto done;
    }
    printf("%s\n", broker_bootstraps(b));
    fflush(stdout);
    log_info(cc.log, "broker", "address written to %s; Ctrl-C to stop", opts.bootstrap_file);
    wait_for_signal();
    log_info(cc.log, "broker", "stopping (all topic data is discarded)");
    broker_stop(b);
done:
    cli_config_free(&cc);
    return rc;
}
