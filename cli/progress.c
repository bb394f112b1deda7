/* progress.c: a terminal progress bar or plain progress lines (see
 * progress.h). The bar shows percent, elapsed time and a rough remaining
 * time extrapolated from the share done. */
#include "progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ul_clock.h"

#define BAR_WIDTH 20
#define REDRAW_SECONDS 0.1

struct progress {
    FILE *out;
    int tty;
    char label[32];
    char stage[160];
    double start, last_draw;
    int drawn; /* a bar line is on screen */
    int width; /* terminal columns */
};

/* Columns of the terminal behind `out`: TIOCGWINSZ, else $COLUMNS, else 80. */
static int terminal_width(FILE *out) {
    struct winsize ws;
    int w = 0;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0)
        w = ws.ws_col;
    const char *cols = getenv("COLUMNS");
    if (w <= 0 && cols != NULL)
        w = atoi(cols);
    return w >= 40 && w <= 250 ? w : 80;
}

progress *progress_new(FILE *out, const char *label) {
    progress *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->out = out;
    p->tty = isatty(fileno(out));
    snprintf(p->label, sizeof(p->label), "%s", label);
    p->start = ul_clock_mono_s();
    p->last_draw = -1;
    p->width = terminal_width(out);
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
    double elapsed = ul_clock_mono_s() - p->start;
    char eta[32] = "";
    if (frac > 0.02 && frac < 1)
        snprintf(eta, sizeof(eta), " ~%.0fs left", elapsed * (1 - frac) / frac);
    /* Cut the line before it wraps (a wrapped line cannot be redrawn in
     * place); the detail comes first so the cut loses the least. */
    char line[256];
    snprintf(line, sizeof(line), "%s [%s] %3.0f%% %.0fs%s %s%s%s", p->label, bar, frac * 100,
             elapsed, eta, detail ? detail : "", detail ? " " : "", p->stage);
    fprintf(p->out, "\r\033[K%.*s", p->width - 1, line);
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
    double t = ul_clock_mono_s();
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
