/* log.c: the one-line logger (see log.h).
 *
 * DESIGN: a line is formatted into a stack buffer and written with a single
 * fwrite, which stdio locks, so concurrent writers (librdkafka's threads)
 * never interleave within a line. The level is read without a lock: it is an
 * int changed only by the owner between runs. Over-long lines are truncated
 * with "..." rather than split. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ul_clock.h"
#include "ul_err.h"

#define LOG_LINE_MAX 2048

struct ul_log {
    FILE *out;
    log_level level;
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

ul_log *log_new(FILE *out, log_level level) {
    ul_log *lg = calloc(1, sizeof(*lg));
    if (lg == NULL)
        return NULL;
    lg->out = out ? out : stderr;
    lg->level = level;
    return lg;
}

void log_destroy(ul_log *lg) {
    free(lg);
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

static void log_vwrite(ul_log *lg, log_level level, const char *component, const char *fmt,
                       va_list ap) {
    char line[LOG_LINE_MAX];
    size_t n = format_time(line, sizeof(line));
    int m = snprintf(line + n, sizeof(line) - n, " %s %s: ", level_tags[level],
                     component ? component : "-");
    n += m > 0 ? (size_t)m : 0;
    m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (m < 0)
        m = 0;
    if ((size_t)m >= sizeof(line) - n) {
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)m;
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
