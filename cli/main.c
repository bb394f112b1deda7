/* main.c: the `unlearnd` entry point. Dispatches to the subcommand named by
 * argv[1] through the one table below; `unlearnd help` lists it. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    {"help", cmd_help, "list the commands, or show one command's help"},
    {"demo", cmd_demo,
     "the stream end to end: local broker, Redis and worker; forget; before/after"},
    {"train", cmd_train, "train an MF model on every rating of a file and save it"},
    {"score", cmd_score, "RMSE and MAE of a model file on a ratings file (e.g. a test split)"},
    {"recommend", cmd_recommend,
     "top-K items for one user from a saved model or the factors topic"},
    {"eval", cmd_eval, "run the paper's evaluation protocol (forget sets, RMSE, forget gap)"},
    {"broker", cmd_broker, "run the local development Kafka (mock cluster) with our topics"},
    {"produce", cmd_produce, "send ratings from a file, or a forget request, to Kafka"},
    {"consume", cmd_consume, "print the decoded records of a topic (debugging)"},
    {"worker", cmd_worker, "run the stream worker: ratings and forget requests in, factors out"},
    {"import", cmd_import, "load a trained model into Redis as the worker's live model"},
    {"state", cmd_state, "print the worker's per-partition counters or one user's state"},
    {"erasure-report", cmd_erasure,
     "where a user's forgotten ratings no longer exist, and where they still may"},
};

static const size_t n_commands = sizeof(commands) / sizeof(commands[0]);

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < n_commands; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_overview(FILE *out) {
    fprintf(out, "unlearnd: a matrix-factorisation recommender that can forget.\n\n"
                 "Usage: unlearnd <command> [options]\n"
                 "       unlearnd <command> --help\n\nCommands:\n");
    for (size_t i = 0; i < n_commands; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
}

int cmd_help(int argc, char **argv) {
    if (argc < 2) {
        print_overview(stdout);
        return CLI_EXIT_OK;
    }
    const cli_command *c = find_command(argv[1]);
    if (c == NULL || c->run == cmd_help) {
        if (c == NULL)
            fprintf(stderr, "unlearnd help: no command '%s'\n", argv[1]);
        print_overview(c ? stdout : stderr);
        return c ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }
    char *help_argv[] = {argv[1], "--help", NULL};
    return c->run(2, help_argv);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_overview(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const cli_command *c = find_command(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "unlearnd: no command '%s'\n\n", argv[1]);
        print_overview(stderr);
        return CLI_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
}
