/* progress.c: a terminal progress bar or plain progress lines (see
 * progress.h). The bar shows percent, elapsed time and a rough remaining
 * time extrapolated from the share done. */
#include "progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 24
#define REDRAW_SECONDS 0.1

struct progress {
    FILE *out;
    int tty;
    char label[32];
    char stage[160];
    double start, last_draw;
    int drawn; /* a bar line is on screen */
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

progress *progress_new(FILE *out, const char *label) {
    progress *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->out = out;
    p->tty = isatty(fileno(out));
    snprintf(p->label, sizeof(p->label), "%s", label);
    p->start = now_seconds();
    p->last_draw = -1;
    return p;
}

int progress_is_tty(const progress *p) {
    return p != NULL && p->tty;
}

static void clear_bar(progress *p) {
    if (p->drawn) {
        fprintf(p->out, "\r\033[K");
        p->drawn = 0;
    }
}

static void draw_bar(progress *p, double frac, const char *detail) {
    char bar[BAR_WIDTH + 1];
    int fill = (int)(frac * BAR_WIDTH + 0.5);
    for (int j = 0; j < BAR_WIDTH; j++)
        bar[j] = j < fill ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    double elapsed = now_seconds() - p->start;
    char eta[32] = "";
    if (frac > 0.02 && frac < 1)
        snprintf(eta, sizeof(eta), " ~%.0fs left", elapsed * (1 - frac) / frac);
    /* Keep the line short enough not to wrap on an 80-column terminal. */
    char line[256];
    snprintf(line, sizeof(line), "%s [%s] %3.0f%% %.0fs%s %s%s%s", p->label, bar, frac * 100,
             elapsed, eta, p->stage, detail ? " " : "", detail ? detail : "");
    fprintf(p->out, "\r\033[K%.120s", line);
    fflush(p->out);
    p->drawn = 1;
}

void progress_update(progress *p, double frac, const char *stage, const char *detail) {
    if (p == NULL)
        return;
    if (frac < 0)
        frac = 0;
    if (frac > 1)
        frac = 1;
    int changed = strcmp(p->stage, stage) != 0;
    if (changed)
        snprintf(p->stage, sizeof(p->stage), "%s", stage);
    if (!p->tty) {
        if (changed) {
            fprintf(p->out, "%s: %3.0f%% %s\n", p->label, frac * 100, stage);
            fflush(p->out);
        }
        return;
    }
    double t = now_seconds();
    if (!changed && t - p->last_draw < REDRAW_SECONDS)
        return;
    p->last_draw = t;
    draw_bar(p, frac, detail);
}

void progress_message(progress *p, const char *fmt, ...) {
    if (p == NULL)
        return;
    clear_bar(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fputc('\n', p->out);
    fflush(p->out);
    p->last_draw = -1;
}

void progress_destroy(progress *p) {
    if (p == NULL)
        return;
    clear_bar(p);
    fflush(p->out);
    free(p);
}
