/* redact.h: masking secrets in text that leaves the process (log lines,
 * error messages, --dump-config). Two kinds of secret are replaced by
 * REDACT_MASK:
 *
 *   - given strings (the values of sensitive options: config.c's table
 *     decides which, config_log_secrets hands them to the logger), wherever
 *     they occur;
 *   - credentials embedded in an endpoint, found by their shape: the part
 *     after the first ':' of a `user:password@host` token (it becomes
 *     `user:********@host`, also inside a redis or https URL), and the whole
 *     userinfo of a URL without a password (a bearer token before the '@'
 *     of `https:` `//token@host`).
 *     "alice@example.com" and "kafka/host@REALM" are left alone.
 *
 * DESIGN: what to mask is decided on the whole input (a byte mask over it)
 * before anything is copied, so a result cut to the caller's buffer can end
 * early but never in the middle of a secret that was not yet recognised. */
#ifndef UL_REDACT_H
#define UL_REDACT_H

#include <stddef.h>

#define REDACT_MASK "********"

/* Copy `in` to `out` with every occurrence of secrets[0..n_secrets-1] (NULL
 * and empty entries ignored; `secrets` may be NULL) and every embedded
 * credential replaced by REDACT_MASK; consecutive masked bytes become one
 * mask. snprintf-like: `out` is always NUL-terminated when size > 0, and the
 * return value is the length of the whole result. When no memory is left for
 * the byte mask of a long input, `out` gets a fixed notice instead (nothing
 * of the input). */
size_t redact_text(const char *in, const char *const *secrets, size_t n_secrets, char *out,
                   size_t size);

/* redact_text into a new string the caller frees; NULL when out of memory. */
char *redact_dup(const char *in, const char *const *secrets, size_t n_secrets);

/* 1 when `text` holds an embedded credential that redact_text would mask. */
int redact_has_credentials(const char *text);

#endif
