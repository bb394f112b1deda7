/* ul_err.c: the shared error-message helper (see ul_err.h). */
#include "ul_err.h"

#include <stdarg.h>
#include <stdio.h>

void ul_set_err(char *errstr, size_t errstr_size, const char *fmt, ...) {
    if (errstr == NULL || errstr_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

const char *ul_err_name(int code) {
    switch (code) {
    case UL_OK:
        return "ok";
    case UL_ERR_ARG:
        return "invalid argument";
    case UL_ERR_IO:
        return "I/O error";
    case UL_ERR_PARSE:
        return "parse error";
    case UL_ERR_NOMEM:
        return "out of memory";
    case UL_ERR_CORRUPT:
        return "corrupt file";
    case UL_ERR_RANGE:
        return "value out of range";
    case UL_ERR_ABORTED:
        return "aborted";
    case UL_ERR_STATE:
        return "invalid state";
    default:
        return "unknown error";
    }
}
