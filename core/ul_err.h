/* ul_err.h: the error codes every fallible core/ and worker/ function returns,
 * and the helper that fills a caller's message buffer.
 *
 * Convention (hiredis/librdkafka): a function that can fail returns 0 or one
 * of the negative codes below, and writes a sentence a user can act on into
 * the caller's `char *errstr, size_t errstr_size` (which may be NULL/0).
 * Constructors return NULL on failure and fill errstr the same way. */
#ifndef UL_ERR_H
#define UL_ERR_H

#include <stddef.h>

#define UL_ERRSTR_SIZE 512

enum ul_err {
    UL_OK = 0,
    UL_ERR_ARG = -1,     /* invalid argument or option value */
    UL_ERR_IO = -2,      /* a file or socket operation failed */
    UL_ERR_PARSE = -3,   /* malformed input text */
    UL_ERR_NOMEM = -4,   /* allocation failed */
    UL_ERR_CORRUPT = -5, /* a binary file failed its magic/version/checksum */
    UL_ERR_RANGE = -6,   /* a value outside its allowed range */
    UL_ERR_ABORTED = -7, /* a progress callback asked to stop */
    UL_ERR_STATE = -8,   /* the operation does not fit the object's state */
};

/* printf-style write into errstr (truncating, always NUL-terminated). Returns
 * nothing so it can be used as a statement before `goto fail`. */
void ul_set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short name for a code ("parse error"), for logs. */
const char *ul_err_name(int code);

#endif
