/* cli_util.c: option matching, option-value parsing, stop signals, error
 * printing and the default data file search shared by the subcommands. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redact.h"

int cli_parse_long(const char *opt, const char *s, long min, long max, long *out, char *errstr,
                   size_t errstr_size) {
    char *end = NULL;
    errno = 0;
    long v = (s && *s) ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end != '\0' || errno == ERANGE) {
        snprintf(errstr, errstr_size, "%s: '%s' is not a whole number", opt, s ? s : "");
        return -1;
    }
    if (v < min || v > max) {
        snprintf(errstr, errstr_size, "%s: %ld is outside %ld..%ld", opt, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *opt, const char *s, double min, double max, double *out,
                     char *errstr, size_t errstr_size) {
    char *end = NULL;
    errno = 0;
    double v = (s && *s) ? strtod(s, &end) : 0.0;
    if (!s || !*s || *end != '\0' || errno == ERANGE || !isfinite(v)) {
        snprintf(errstr, errstr_size, "%s: '%s' is not a number", opt, s ? s : "");
        return -1;
    }
    if (v < min || v > max) {
        snprintf(errstr, errstr_size, "%s: %g is outside %g..%g", opt, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_u64(const char *opt, const char *s, uint64_t *out, char *errstr, size_t errstr_size) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = (s && *s && *s != '-') ? strtoull(s, &end, 10) : 0;
    if (!s || !*s || *s == '-' || *end != '\0' || errno == ERANGE) {
        snprintf(errstr, errstr_size, "%s: '%s' is not a non-negative whole number", opt,
                 s ? s : "");
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_rating(const char *opt, const char *s, float *out, char *errstr, size_t errstr_size) {
    double v;
    if (cli_parse_double(opt, s, -1e6, 1e6, &v, errstr, errstr_size) != 0)
        return -1;
    *out = (float)v;
    return 0;
}

int cli_check_scale(const char *path, float lo, float hi, char *errstr, size_t errstr_size) {
    if (lo < hi)
        return 0;
    snprintf(errstr, errstr_size,
             "%s: every rating is %g, so the scale cannot be detected: give it with "
             "--rating-min and --rating-max",
             path, (double)lo);
    return -1;
}

/* 1 when arg is option `name`, alone or as "name=...". */
static int opt_is(const char *arg, const char *name) {
    size_t len = strlen(name);
    return strncmp(arg, name, len) == 0 && (arg[len] == '\0' || arg[len] == '=');
}

const char *cli_opt_next(int argc, char **argv, int *a, const char *const *names, const char **val,
                         char *errstr, size_t errstr_size) {
    const char *arg = argv[*a];
    const char *name = NULL;
    for (size_t j = 0; names[j] != NULL && name == NULL; j++)
        if (opt_is(arg, names[j]))
            name = names[j];
    if (name == NULL) {
        snprintf(errstr, errstr_size, "unknown option '%s'", arg);
        return NULL;
    }
    size_t len = strlen(name);
    if (arg[len] == '=') {
        *val = arg + len + 1;
        return name;
    }
    if (*a + 1 >= argc) {
        snprintf(errstr, errstr_size, "%s needs a value", name);
        return NULL;
    }
    *val = argv[++*a];
    return name;
}

/* The flag of cli_signals_install: a signal handler can reach only statics. */
static volatile sig_atomic_t *stop_flag;

static void on_stop_signal(int sig) {
    if (*stop_flag && sig == SIGINT)
        _exit(130);
    *stop_flag = 1;
}

void cli_signals_install(volatile sig_atomic_t *flag) {
    struct sigaction sa;
    stop_flag = flag;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Error messages may quote endpoints: credentials in them are masked. */
static void print_error(const char *cmd, const char *msg, int usage) {
    char *shown = redact_dup(msg, NULL, 0);
    fprintf(stderr, "unlearnd %s: %s\n", cmd, shown ? shown : "(message withheld: out of memory)");
    if (usage)
        fprintf(stderr, "(see 'unlearnd %s --help')\n", cmd);
    free(shown);
}

int cli_fail(const char *cmd, const char *msg) {
    print_error(cmd, msg, 0);
    return CLI_EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *msg) {
    print_error(cmd, msg, 1);
    return CLI_EXIT_USAGE;
}

int cli_find_ml100k(char *path, size_t size, char *where, size_t where_size) {
    const char *env = getenv("UNLEARND_DATA_DIR");
    where[0] = '\0';
    if (env != NULL && *env) {
        snprintf(path, size, "%s/%s", env, CLI_ML100K_REL);
        if (access(path, R_OK) == 0)
            return 1;
        snprintf(where, where_size, "%s, ", path);
    }
    snprintf(path, size, "../shared/data/%s", CLI_ML100K_REL);
    if (access(path, R_OK) == 0)
        return 1;
    snprintf(where + strlen(where), where_size - strlen(where), "%s", path);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    /* <repo>/build/unlearnd -> <repo>/../shared/data/... */
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (slash == NULL)
            return 0;
        *slash = '\0';
    }
    snprintf(path, size, "%s/../shared/data/%s", exe, CLI_ML100K_REL);
    if (access(path, R_OK) == 0)
        return 1;
    snprintf(where + strlen(where), where_size - strlen(where), ", %s", path);
    return 0;
}
