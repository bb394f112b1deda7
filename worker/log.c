/* log.c: the one-line logger (see log.h).
 *
 * DESIGN: a line is formatted into a stack buffer and written with a single
 * fwrite, which stdio locks, so concurrent writers (librdkafka's threads)
 * never interleave within a line. The level is read without a lock: it is an
 * int changed only by the owner between runs. Over-long lines are truncated
 * with "..." rather than split, and only after masking: the message is
 * formatted whole (on the heap when it does not fit the stack buffer) and
 * masked (redact_text) before it is cut, so a cut can never leave the start of
 * a secret that its end would have identified. The secrets list is guarded by
 * a mutex (lines are rare: a few per second at most outside debug). */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "redact.h"
#include "ul_clock.h"
#include "ul_err.h"

#define LOG_LINE_MAX 2048

struct ul_log {
    FILE *out;
    log_level level;
    pthread_mutex_t mu; /* guards secrets */
    char **secrets;     /* owned copies, masked in every line */
    size_t n_secrets;
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

ul_log *log_new(FILE *out, log_level level) {
    ul_log *lg = calloc(1, sizeof(*lg));
    if (lg == NULL)
        return NULL;
    lg->out = out ? out : stderr;
    lg->level = level;
    pthread_mutex_init(&lg->mu, NULL);
    return lg;
}

void log_destroy(ul_log *lg) {
    if (lg == NULL)
        return;
    for (size_t i = 0; i < lg->n_secrets; i++)
        free(lg->secrets[i]);
    free(lg->secrets);
    pthread_mutex_destroy(&lg->mu);
    free(lg);
}

int log_add_secret(ul_log *lg, const char *secret) {
    if (lg == NULL || secret == NULL || *secret == '\0')
        return UL_OK;
    size_t n = strlen(secret) + 1;
    char *copy = malloc(n);
    if (copy == NULL)
        return UL_ERR_NOMEM;
    memcpy(copy, secret, n);
    pthread_mutex_lock(&lg->mu);
    char **grown = realloc(lg->secrets, (lg->n_secrets + 1) * sizeof(*grown));
    if (grown != NULL) {
        grown[lg->n_secrets++] = copy;
        lg->secrets = grown;
    }
    pthread_mutex_unlock(&lg->mu);
    if (grown == NULL) {
        free(copy);
        return UL_ERR_NOMEM;
    }
    return UL_OK;
}

void log_set_level(ul_log *lg, log_level level) {
    if (lg)
        lg->level = level;
}

log_level log_get_level(const ul_log *lg) {
    return lg ? lg->level : LOG_LEVEL_ERROR;
}

int log_parse_level(const char *name, log_level *level) {
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++) {
        if (name && strcasecmp(name, level_names[i]) == 0) {
            *level = (log_level)i;
            return UL_OK;
        }
    }
    if (name && strcasecmp(name, "warning") == 0) {
        *level = LOG_LEVEL_WARN;
        return UL_OK;
    }
    return UL_ERR_ARG;
}

const char *log_level_name(log_level level) {
    if ((int)level < 0 || level > LOG_LEVEL_DEBUG)
        return "?";
    return level_names[level];
}

int log_enabled(const ul_log *lg, log_level level) {
    return lg != NULL && level <= lg->level;
}

/* "2026-11-27T16:58:03.412Z" into buf (at least 32 bytes); returns length. */
static size_t format_time(char *buf, size_t size) {
    int64_t ms = ul_clock_wall_ms();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
    return n + (m > 0 ? (size_t)m : 0);
}

/* The message formatted whole, masked, into out (truncated after masking).
 * Returns 1 when it had to be cut. */
static int format_masked(ul_log *lg, char *out, size_t size, const char *fmt, va_list ap) {
    char stack[LOG_LINE_MAX];
    va_list again;
    va_copy(again, ap);
    int m = vsnprintf(stack, sizeof(stack), fmt, ap);
    char *msg = stack;
    if (m < 0)
        stack[0] = '\0';
    else if ((size_t)m >= sizeof(stack) && (msg = malloc((size_t)m + 1)) != NULL)
        vsnprintf(msg, (size_t)m + 1, fmt, again);
    va_end(again);
    if (msg == NULL) /* a part could not be masked: show none of it */
        return snprintf(out, size, "(line withheld: out of memory)") >= (int)size;
    pthread_mutex_lock(&lg->mu);
    size_t n = redact_text(msg, (const char *const *)lg->secrets, lg->n_secrets, out, size);
    pthread_mutex_unlock(&lg->mu);
    if (msg != stack)
        free(msg);
    return n >= size;
}

static void log_vwrite(ul_log *lg, log_level level, const char *component, const char *fmt,
                       va_list ap) {
    char line[LOG_LINE_MAX];
    size_t n = format_time(line, sizeof(line));
    int m = snprintf(line + n, sizeof(line) - n, " %s %s: ", level_tags[level],
                     component ? component : "-");
    n += m > 0 ? (size_t)m : 0;
    if (format_masked(lg, line + n, sizeof(line) - n, fmt, ap)) {
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += strlen(line + n);
    }
    while (n > 0 && line[n - 1] == '\n')
        n--;
    line[n++] = '\n';
    fwrite(line, 1, n, lg->out);
    fflush(lg->out);
}

void log_write(ul_log *lg, log_level level, const char *component, const char *fmt, ...) {
    if (!log_enabled(lg, level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lg, level, component, fmt, ap);
    va_end(ap);
}

static log_level level_from_syslog(int level) {
    if (level <= 3)
        return LOG_LEVEL_ERROR;
    if (level == 4)
        return LOG_LEVEL_WARN;
    if (level <= 6)
        return LOG_LEVEL_INFO;
    return LOG_LEVEL_DEBUG;
}

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    ul_log **owner = rd_kafka_opaque(rk);
    if (owner == NULL)
        return;
    log_write(*owner, level_from_syslog(level), "rdkafka", "%s [%s]: %s", rd_kafka_name(rk),
              fac ? fac : "-", buf ? buf : "");
}

void log_kafka_conf(rd_kafka_conf_t *conf, ul_log **owner) {
    rd_kafka_conf_set_opaque(conf, owner);
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
}
