/* cli.h: the `unlearnd` command-line front end. Each subcommand lives in
 * cli/cmd_<name>.c and is listed once in the table in cli/main.c. Commands
 * return an exit code: 0 success, 1 runtime failure, 2 usage error. They
 * print their own errors as "unlearnd <cmd>: <message>" on stderr. */
#ifndef UL_CLI_H
#define UL_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

typedef int (*cli_cmd_fn)(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_cmd_fn run;
    const char *summary; /* one line for `unlearnd help` */
} cli_command;

/* Strict number parsing for option values: the whole string must be a
 * number within [min, max]. On failure writes "--opt: ..." into errstr and
 * returns -1; 0 on success. */
int cli_parse_long(const char *opt, const char *s, long min, long max, long *out, char *errstr,
                   size_t errstr_size);
int cli_parse_double(const char *opt, const char *s, double min, double max, double *out,
                     char *errstr, size_t errstr_size);
int cli_parse_u64(const char *opt, const char *s, uint64_t *out, char *errstr, size_t errstr_size);

/* The rating scale of the offline commands: --rating-min X / --rating-max X,
 * named after the stream's rating.min / rating.max. Without them a command
 * that reads a ratings file takes the file's lowest and highest rating
 * (train, eval) or the model's scale (score, import). CLI_SCALE_HELP is their
 * --help text (19-column option column), CLI_SCALE_HINT ends the message
 * of an out-of-scale rating. */
#define CLI_SCALE_HELP                                                                             \
    "  --rating-min X   lowest rating of the scale (the stream's rating.min)\n"                    \
    "  --rating-max X   highest rating of the scale (the stream's rating.max)\n"
#define CLI_SCALE_HINT "--rating-min/--rating-max set the scale"
/* The same for the stream commands (produce, demo), whose scale is the
 * worker's configuration. */
#define CLI_STREAM_SCALE_HINT "--rating.min/--rating.max set the scale"

/* A scale bound: a finite number within +-1e6 (as rating.min/max). */
int cli_parse_rating(const char *opt, const char *s, float *out, char *errstr, size_t errstr_size);

/* 0 when lo < hi (a loaded file's scale); otherwise -1 with "PATH: every
 * rating is 4, so the scale cannot be detected: give it with --rating-min
 * and --rating-max". */
int cli_check_scale(const char *path, float lo, float hi, char *errstr, size_t errstr_size);

/* The valued option at argv[*a], one of the NULL-terminated `names`, given
 * as "--name value" or "--name=value". Returns the matching name with its
 * value in *val (and *a moved past a separate value), or NULL with
 * "unknown option '<arg>'" or "<name> needs a value" in errstr. */
const char *cli_opt_next(int argc, char **argv, int *a, const char *const *names, const char **val,
                         char *errstr, size_t errstr_size);

/* The stop signals of a long-running command: SIGINT and SIGTERM set
 * *flag (borrowed for the life of the process), a second SIGINT exits at
 * once with status 130, and SIGPIPE is ignored (a closed socket becomes an
 * error return, not a death). */
void cli_signals_install(volatile sig_atomic_t *flag);

/* Print "unlearnd <cmd>: <msg>" (and, for usage errors, a pointer to
 * --help) on stderr; returns the exit code to use. */
int cli_fail(const char *cmd, const char *msg);
int cli_usage_error(const char *cmd, const char *msg);

/* The default MovieLens-100K file of `eval` and `demo`: CLI_ML100K_REL under
 * $UNLEARND_DATA_DIR, under ../shared/data, or under the shared data next to
 * the repository holding this executable (<repo>/build/unlearnd). Returns 1
 * with the path, or 0 with `where` listing what was tried. */
#define CLI_ML100K_REL "ml-100k/u.data"
int cli_find_ml100k(char *path, size_t size, char *where, size_t where_size);

/* The subcommands (defined in cli/cmd_*.c). */
int cmd_help(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_state(int argc, char **argv);
int cmd_erasure(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_recommend(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_broker(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_consume(int argc, char **argv);

#endif
