/* log.h: one-line logs for the worker and the CLI tools:
 *
 *   2026-11-27T16:58:03.412Z INFO  kafka: assigned ratings [0] at offset 1042
 *
 * A `ul_log` is a small, explicitly created logger (output stream, level). No
 * global state: every component gets the handle it should write to. Each line
 * is formatted into a local buffer and written with one fwrite, so lines from
 * librdkafka's threads and ours never interleave. librdkafka's own logs are
 * routed through the same handle with log_kafka_conf().
 *
 * No line shows a secret: the message part of every line goes through
 * redact_text (worker/redact.h), which masks the strings given with
 * log_add_secret (config_log_secrets gives it the configured ones) and any
 * credentials embedded in endpoints (user:password@host). */
#ifndef UL_LOG_H
#define UL_LOG_H

#include <stdio.h>

#include <librdkafka/rdkafka.h>

typedef enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
} log_level;

typedef struct ul_log ul_log;

/* A logger writing lines at or above `level` to `out` (borrowed; stderr when
 * NULL). Returns NULL only when out of memory. Free with log_destroy(). */
ul_log *log_new(FILE *out, log_level level);
void log_destroy(ul_log *lg);

/* Mask `secret` (copied; empty strings ignored) in every later line, as
 * "********". Thread-safe. Returns 0 or UL_ERR_NOMEM. */
int log_add_secret(ul_log *lg, const char *secret);

void log_set_level(ul_log *lg, log_level level);
log_level log_get_level(const ul_log *lg);

/* "error", "warn", "info", "debug" (case-insensitive) -> level. Returns 0, or
 * UL_ERR_ARG for an unknown name. */
int log_parse_level(const char *name, log_level *level);
const char *log_level_name(log_level level);

/* Write one line: time (UTC, ms), level, component, message. A NULL `lg` is
 * allowed and writes nothing (so library-ish code can take an optional log).
 * The message should not end with a newline (one is added). Thread-safe. */
void log_write(ul_log *lg, log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_error(lg, comp, ...) log_write((lg), LOG_LEVEL_ERROR, (comp), __VA_ARGS__)
#define log_warn(lg, comp, ...) log_write((lg), LOG_LEVEL_WARN, (comp), __VA_ARGS__)
#define log_info(lg, comp, ...) log_write((lg), LOG_LEVEL_INFO, (comp), __VA_ARGS__)
#define log_debug(lg, comp, ...) log_write((lg), LOG_LEVEL_DEBUG, (comp), __VA_ARGS__)

/* 1 when a line at `level` would be written (to skip costly formatting). */
int log_enabled(const ul_log *lg, log_level level);

/* Route librdkafka's logs for clients made from `conf` through a logger.
 *
 * librdkafka's log callback only sees the rd_kafka_t, so the logger is found
 * through the conf's opaque. This sets the opaque to `owner`, which must point
 * to a `ul_log *` - typically the first member of the owner's struct:
 *
 *     struct worker { ul_log *log; ... } *w;
 *     log_kafka_conf(conf, &w->log);   // opaque == w, usable by other callbacks
 *
 * `*owner` must stay valid until the rd_kafka_t is destroyed. Lines are tagged
 * with component "rdkafka" and librdkafka's facility; syslog levels 0-3 map to
 * error, 4 to warn, 5-6 to info, 7 to debug. */
void log_kafka_conf(rd_kafka_conf_t *conf, ul_log **owner);

#endif
