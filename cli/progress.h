/* progress.h: progress reporting for long CLI commands, on a stream
 * (stderr). On a terminal it redraws one bar line in place (at most ~10
 * times a second); otherwise it prints one plain line each time the stage
 * text changes, so logs stay short and readable. */
#ifndef UL_PROGRESS_H
#define UL_PROGRESS_H

#include <stdio.h>

typedef struct progress progress;

/* `label` prefixes every line (e.g. "eval"); copied. `out` is borrowed until
 * progress_destroy(). NULL on allocation failure (callers then go without). */
progress *progress_new(FILE *out, const char *label);

/* 1 when drawing a bar on a terminal, 0 for plain lines. */
int progress_is_tty(const progress *p);

/* `frac` in [0, 1] of the whole job; `stage` names what runs (a new value
 * prints a plain line); `detail` (may be NULL) only shows on the bar. */
void progress_update(progress *p, double frac, const char *stage, const char *detail);

/* Print a full message line (the bar is cleared first and redrawn later). */
void progress_message(progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clear the bar (terminal) and free. NULL is a no-op. */
void progress_destroy(progress *p);

#endif
