/* dataset.c: loading rating files (see dataset.h); ds_synth.c is the
 * synthetic generator, ds_split.c the split, ds_index.c the raw-id hash.
 *
 * DESIGN
 * - The whole file is read into memory and parsed by hand (no sscanf, no
 *   per-field allocation): ML-1M's million lines load in tens of
 *   milliseconds. The ratings array is sized from a count of newlines.
 * - The format is decided once, from the first non-blank line: `::` means
 *   ratings.dat, a tab means u.data, a comma means CSV. If that line's first
 *   field is a number the file has no header and the columns are user, item,
 *   rating[, timestamp]; otherwise it is a header naming the columns (any
 *   order, case-insensitive, unknown columns ignored). Every later line must
 *   have the same number of fields.
 * - Raw ids become dense indices in first-seen order (users and items
 *   separately); both directions are kept.
 * - Duplicates are found after parsing with a counting sort by user and a
 *   per-item stamp array: O(n + users + items), no pair hash.
 * - Errors stop at the first bad line and name it: "path:line: reason". */
#include "dataset.h"

#include "ds_index.h"
#include "ul_err.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_COLS 64
#define SHOW 40 /* longest piece of a bad field quoted in a message */

void ul_ratings_free(ul_ratings *rs) {
    if (rs == NULL)
        return;
    free(rs->v);
    rs->v = NULL;
    rs->n = 0;
}

void ds_load_opts_init(ds_load_opts *opts) {
    opts->rating_min = NAN; /* detect */
    opts->rating_max = NAN;
    opts->range_hint = NULL;
    opts->dups = DS_DUP_ERROR;
    opts->max_line = 4096;
}

void ds_destroy(dataset *ds) {
    if (ds == NULL)
        return;
    free(ds->ratings);
    free(ds->user_ids);
    free(ds->item_ids);
    ds_index_destroy(ds->user_index);
    ds_index_destroy(ds->item_index);
    free(ds);
}

int32_t ds_user_index(const dataset *ds, int64_t raw_id) {
    return ds ? ds_index_get(ds->user_index, raw_id) : -1;
}

int32_t ds_item_index(const dataset *ds, int64_t raw_id) {
    return ds ? ds_index_get(ds->item_index, raw_id) : -1;
}

/* ---- reading the file ---- */

static char *file_read_all(const char *path, size_t *len, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        ul_set_err(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    size_t cap = 1 << 16;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            ul_set_err(errstr, errstr_size, "%s: is a directory, not a ratings file", path);
            fclose(f);
            return NULL;
        }
        if (S_ISREG(st.st_mode) && st.st_size > 0)
            cap = (size_t)st.st_size + 1;
    }
    char *buf = malloc(cap);
    size_t n = 0;
    while (buf != NULL) {
        if (cap - n < 2) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL)
                break;
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (buf == NULL || cap - n < 1) {
        ul_set_err(errstr, errstr_size, "%s: out of memory reading the file", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    if (ferror(f)) {
        ul_set_err(errstr, errstr_size, "%s: read error: %s", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The file's bytes: mapped when it is a regular, non-empty file (no copy,
 * no page of a 20M-rating file cleared and filled twice: about 0.3 s of
 * its 2.5 s load), else read into memory by file_read_all. */
typedef struct file_bytes {
    char *buf;
    size_t len;
    int mapped;
} file_bytes;

static int file_open_bytes(const char *path, file_bytes *fb, char *errstr, size_t errstr_size) {
    struct stat st;
    fb->mapped = 0;
    int fd = open(path, O_RDONLY);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            posix_madvise(p, (size_t)st.st_size, POSIX_MADV_SEQUENTIAL);
            fb->buf = p;
            fb->len = (size_t)st.st_size;
            fb->mapped = 1;
        }
    }
    if (fd >= 0)
        close(fd);
    if (fb->mapped)
        return UL_OK;
    fb->buf = file_read_all(path, &fb->len, errstr, errstr_size);
    return fb->buf != NULL ? UL_OK : UL_ERR_IO;
}

static void file_close_bytes(file_bytes *fb) {
    if (fb->mapped)
        munmap(fb->buf, fb->len);
    else
        free(fb->buf);
    fb->buf = NULL;
}

/* ---- fields and numbers ---- */

static int is_blank(const char *s, const char *e) {
    for (; s < e; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r')
            return 0;
    return 1;
}

/* Trim spaces, then one pair of surrounding double quotes. */
static void field_trim(const char **s, const char **e) {
    while (*s < *e && **s == ' ')
        (*s)++;
    while (*e > *s && (*e)[-1] == ' ')
        (*e)--;
    if (*e - *s >= 2 && **s == '"' && (*e)[-1] == '"') {
        (*s)++;
        (*e)--;
    }
}

/* The first `sep` (1 or 2 bytes) in [s, e), or NULL. A byte loop: fields
 * are a few bytes long, too short for memchr's set-up to pay. */
static const char *sep_find(const char *s, const char *e, const char *sep, size_t sep_len) {
    for (; s < e; s++)
        if (*s == sep[0] && (sep_len == 1 || (s + 1 < e && s[1] == sep[1])))
            return s;
    return NULL;
}

/* Split [s, e) on `sep`; stores up to MAX_COLS trimmed fields and returns
 * the number of fields found (which may be larger). */
static int fields_split(const char *s, const char *e, const char *sep, size_t sep_len,
                        const char **fs, const char **fe) {
    int n = 0;
    for (;;) {
        const char *hit = sep_find(s, e, sep, sep_len);
        const char *end = hit ? hit : e;
        if (n < MAX_COLS) {
            fs[n] = s;
            fe[n] = end;
            field_trim(&fs[n], &fe[n]);
        }
        n++;
        if (hit == NULL)
            return n;
        s = hit + sep_len;
    }
}

enum { NUM_OK = 0, NUM_EMPTY, NUM_BAD, NUM_NEGATIVE, NUM_TOO_BIG, NUM_NAN, NUM_INF };

static int parse_i64(const char *s, const char *e, int64_t *out) {
    if (s == e)
        return NUM_EMPTY;
    int neg = 0;
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        if (++s == e)
            return NUM_BAD;
    }
    uint64_t v = 0;
    for (; s < e; s++) {
        unsigned d = (unsigned)(unsigned char)*s - '0';
        if (d > 9)
            return NUM_BAD;
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return NUM_TOO_BIG;
        v = v * 10 + d;
    }
    if (neg && v != 0)
        return NUM_NEGATIVE;
    *out = (int64_t)v;
    return NUM_OK;
}

/* Anything the fast path does not take ("4e0", "nan", "inf", "0x1p2"). */
static int parse_double_slow(const char *s, const char *e, double *out) {
    char buf[64];
    size_t len = (size_t)(e - s);
    if (len >= sizeof(buf))
        return NUM_BAD;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + len || buf[0] == ' ')
        return NUM_BAD;
    if (isnan(v))
        return NUM_NAN;
    if (isinf(v))
        return NUM_INF;
    *out = v;
    return NUM_OK;
}

static int parse_double(const char *s, const char *e, double *out) {
    if (s == e)
        return NUM_EMPTY;
    const char *p = s;
    int neg = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    double v = 0.0, scale = 1.0;
    int digits = 0;
    for (; p < e && (unsigned)(unsigned char)*p - '0' <= 9; p++, digits++)
        v = v * 10.0 + (*p - '0');
    if (p < e && *p == '.')
        for (p++; p < e && (unsigned)(unsigned char)*p - '0' <= 9; p++, digits++) {
            v = v * 10.0 + (*p - '0');
            scale *= 10.0;
        }
    if (p != e || digits == 0 || digits > 15)
        return parse_double_slow(s, e, out);
    *out = (neg ? -v : v) / scale;
    return NUM_OK;
}

/* ---- the loader ---- */

typedef struct loader {
    const char *path;
    const ds_load_opts *opts;
    char *errstr;
    size_t errstr_size;
    const char *sep;
    size_t sep_len;
    int n_cols; /* fields every data line must have */
    int col_user, col_item, col_rating, col_time;
    size_t header_line; /* 0 when the file has no header */
    ul_rating *ratings;
    size_t n, cap;
    ds_index *users, *items;
    int64_t *user_ids, *item_ids;
    size_t user_cap, item_cap;
    int64_t last_user_raw; /* files are often grouped by user: skip the hash */
    int32_t last_user;
} loader;

static int fail_line(loader *ld, size_t line, const char *fmt, const char *what, const char *s,
                     const char *e) {
    char msg[256];
    int len = (int)(e - s) > SHOW ? SHOW : (int)(e - s);
    snprintf(msg, sizeof(msg), fmt, what, len, s);
    ul_set_err(ld->errstr, ld->errstr_size, "%s:%zu: %s", ld->path, line, msg);
    return UL_ERR_PARSE;
}

static int id_error(loader *ld, size_t line, int rc, const char *what, const char *s,
                    const char *e) {
    switch (rc) {
    case NUM_EMPTY:
        return fail_line(ld, line, "missing %s%.*s", what, s, e);
    case NUM_NEGATIVE:
        return fail_line(ld, line, "negative %s %.*s (ids must be >= 0)", what, s, e);
    case NUM_TOO_BIG:
        return fail_line(ld, line, "%s '%.*s' is too large for a 64-bit id", what, s, e);
    default:
        return fail_line(ld, line, "%s '%.*s' is not a whole number", what, s, e);
    }
}

static int rating_error(loader *ld, size_t line, int rc, const char *s, const char *e) {
    switch (rc) {
    case NUM_EMPTY:
        return fail_line(ld, line, "missing %s%.*s", "rating", s, e);
    case NUM_NAN:
        return fail_line(ld, line, "%s '%.*s' is NaN", "rating", s, e);
    case NUM_INF:
        return fail_line(ld, line, "%s '%.*s' is not finite", "rating", s, e);
    default:
        return fail_line(ld, line, "%s '%.*s' is not a number", "rating", s, e);
    }
}

/* "rating 7 outside 1..5", or "below the minimum 1" / "above the maximum 5"
 * when only one bound is given, then the caller's hint. */
static int range_error(loader *ld, size_t line, const char *s, const char *e) {
    int len = (int)(e - s) > SHOW ? SHOW : (int)(e - s);
    double lo = ld->opts->rating_min, hi = ld->opts->rating_max;
    const char *hint = ld->opts->range_hint;
    char where[64];
    if (!isnan(lo) && !isnan(hi))
        snprintf(where, sizeof(where), "outside %g..%g", lo, hi);
    else if (!isnan(lo))
        snprintf(where, sizeof(where), "below the minimum %g", lo);
    else
        snprintf(where, sizeof(where), "above the maximum %g", hi);
    ul_set_err(ld->errstr, ld->errstr_size, "%s:%zu: rating %.*s %s%s%s%s", ld->path, line, len, s,
               where, hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
    return UL_ERR_RANGE;
}

/* Bounds left NAN become the lowest / highest rating loaded. */
static void scale_detect(const ul_rating *r, size_t n, const ds_load_opts *o, float *lo,
                         float *hi) {
    float mn = INFINITY, mx = -INFINITY;
    if (isnan(o->rating_min) || isnan(o->rating_max)) {
        for (size_t j = 0; j < n; j++) {
            mn = r[j].value < mn ? r[j].value : mn;
            mx = r[j].value > mx ? r[j].value : mx;
        }
    }
    *lo = isnan(o->rating_min) ? mn : o->rating_min;
    *hi = isnan(o->rating_max) ? mx : o->rating_max;
}

static int ids_push(int64_t **ids, size_t *cap, int32_t idx, int64_t raw) {
    if ((size_t)idx >= *cap) {
        size_t ncap = *cap ? *cap * 2 : 1024;
        int64_t *bigger = realloc(*ids, ncap * sizeof(**ids));
        if (bigger == NULL)
            return -1;
        *ids = bigger;
        *cap = ncap;
    }
    (*ids)[idx] = raw;
    return 0;
}

static int32_t id_intern(loader *ld, ds_index *ix, int64_t **ids, size_t *cap, int64_t raw) {
    int is_new = 0;
    int32_t idx = ds_index_intern(ix, raw, &is_new);
    if (idx < 0 || (is_new && ids_push(ids, cap, idx, raw) != 0)) {
        ul_set_err(ld->errstr, ld->errstr_size, "%s: out of memory mapping ids", ld->path);
        return -1;
    }
    return idx;
}

static int line_parse(loader *ld, const char *s, const char *e, size_t line) {
    const char *fs[MAX_COLS], *fe[MAX_COLS];
    int nf = fields_split(s, e, ld->sep, ld->sep_len, fs, fe);
    if (nf != ld->n_cols) {
        ul_set_err(ld->errstr, ld->errstr_size, "%s:%zu: expected %d fields, found %d (%s)",
                   ld->path, line, ld->n_cols, nf,
                   nf < ld->n_cols ? "missing fields" : "extra fields");
        return UL_ERR_PARSE;
    }
    int64_t uraw = 0, iraw = 0, t = (int64_t)ld->n;
    double v = 0.0;
    int c = ld->col_user, rc;
    if ((rc = parse_i64(fs[c], fe[c], &uraw)) != NUM_OK)
        return id_error(ld, line, rc, "user id", fs[c], fe[c]);
    c = ld->col_item;
    if ((rc = parse_i64(fs[c], fe[c], &iraw)) != NUM_OK)
        return id_error(ld, line, rc, "item id", fs[c], fe[c]);
    c = ld->col_rating;
    if ((rc = parse_double(fs[c], fe[c], &v)) != NUM_OK)
        return rating_error(ld, line, rc, fs[c], fe[c]);
    if (v < ld->opts->rating_min || v > ld->opts->rating_max)
        return range_error(ld, line, fs[c], fe[c]);
    if ((c = ld->col_time) >= 0 && (rc = parse_i64(fs[c], fe[c], &t)) != NUM_OK)
        return id_error(ld, line, rc, "timestamp", fs[c], fe[c]);

    int32_t u = ld->last_user;
    if (ld->n == 0 || uraw != ld->last_user_raw) {
        if ((u = id_intern(ld, ld->users, &ld->user_ids, &ld->user_cap, uraw)) < 0)
            return UL_ERR_NOMEM;
        ld->last_user_raw = uraw;
        ld->last_user = u;
    }
    int32_t i = id_intern(ld, ld->items, &ld->item_ids, &ld->item_cap, iraw);
    if (i < 0)
        return UL_ERR_NOMEM;
    ul_rating *r = &ld->ratings[ld->n++];
    r->user = u;
    r->item = i;
    r->value = (float)v;
    r->time = t;
    return UL_OK;
}

/* Lower-case a header name and drop '_' so "movie_id" == "movieId". */
static void header_name(const char *s, const char *e, char *out, size_t size) {
    size_t n = 0;
    for (; s < e && n + 1 < size; s++) {
        char ch = *s;
        if (ch == '_')
            continue;
        out[n++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    out[n] = '\0';
}

static int name_in(const char *name, const char *const *names) {
    for (; *names; names++)
        if (strcmp(name, *names) == 0)
            return 1;
    return 0;
}

static int header_set(loader *ld, int *col, int c, const char *what, size_t line) {
    if (*col >= 0) {
        ul_set_err(ld->errstr, ld->errstr_size, "%s:%zu: header names two %s columns (%d and %d)",
                   ld->path, line, what, *col + 1, c + 1);
        return UL_ERR_PARSE;
    }
    *col = c;
    return UL_OK;
}

static int header_parse(loader *ld, const char **fs, const char **fe, int nf, size_t line) {
    static const char *const users[] = {"user", "userid", "uid", NULL};
    static const char *const items[] = {"item", "itemid", "movie", "movieid", "iid", NULL};
    static const char *const ratings[] = {"rating", "ratings", "score", NULL};
    static const char *const times[] = {"timestamp", "time", "ts", NULL};
    if (nf > MAX_COLS) {
        ul_set_err(ld->errstr, ld->errstr_size,
                   "%s:%zu: header has %d columns; at most %d supported", ld->path, line, nf,
                   MAX_COLS);
        return UL_ERR_PARSE;
    }
    int rc = UL_OK;
    for (int c = 0; c < nf && rc == UL_OK; c++) {
        char name[32];
        header_name(fs[c], fe[c], name, sizeof(name));
        if (name_in(name, users))
            rc = header_set(ld, &ld->col_user, c, "user", line);
        else if (name_in(name, items))
            rc = header_set(ld, &ld->col_item, c, "item", line);
        else if (name_in(name, ratings))
            rc = header_set(ld, &ld->col_rating, c, "rating", line);
        else if (name_in(name, times))
            rc = header_set(ld, &ld->col_time, c, "timestamp", line);
    }
    if (rc != UL_OK)
        return rc;
    const char *missing = ld->col_user < 0     ? "user"
                          : ld->col_item < 0   ? "item"
                          : ld->col_rating < 0 ? "rating"
                                               : NULL;
    if (missing != NULL) {
        ul_set_err(ld->errstr, ld->errstr_size,
                   "%s:%zu: the header names no %s column (expected e.g. "
                   "user,item,rating[,timestamp] or userId,movieId,rating,timestamp)",
                   ld->path, line, missing);
        return UL_ERR_PARSE;
    }
    ld->n_cols = nf;
    ld->header_line = line;
    return UL_OK;
}

/* Decide separator and columns from the first non-blank line. */
static int format_detect(loader *ld, const char *s, const char *e, size_t line, char *format,
                         size_t format_size) {
    const char *p = s;
    while (p + 1 < e && !(p[0] == ':' && p[1] == ':'))
        p++;
    if (p + 1 < e) {
        ld->sep = "::";
        snprintf(format, format_size, "ratings.dat");
    } else if (memchr(s, '\t', (size_t)(e - s)) != NULL) {
        ld->sep = "\t";
        snprintf(format, format_size, "u.data");
    } else if (memchr(s, ',', (size_t)(e - s)) != NULL) {
        ld->sep = ",";
        snprintf(format, format_size, "csv");
    } else {
        ul_set_err(ld->errstr, ld->errstr_size,
                   "%s:%zu: unknown format: expected tab-separated fields (u.data), "
                   "'::'-separated (ratings.dat) or a CSV header such as user,item,rating",
                   ld->path, line);
        return UL_ERR_PARSE;
    }
    ld->sep_len = strlen(ld->sep);
    const char *fs[MAX_COLS], *fe[MAX_COLS];
    int nf = fields_split(s, e, ld->sep, ld->sep_len, fs, fe);
    int64_t first;
    int rc = parse_i64(fs[0], fe[0], &first);
    if (rc == NUM_BAD || rc == NUM_EMPTY)
        return header_parse(ld, fs, fe, nf, line);
    if (nf != 3 && nf != 4) {
        ul_set_err(ld->errstr, ld->errstr_size,
                   "%s:%zu: expected 3 or 4 fields (user, item, rating[, timestamp]) or a "
                   "header line, found %d",
                   ld->path, line, nf);
        return UL_ERR_PARSE;
    }
    ld->n_cols = nf;
    ld->col_user = 0;
    ld->col_item = 1;
    ld->col_rating = 2;
    ld->col_time = nf == 4 ? 3 : -1;
    return UL_OK;
}

/* The line number of data record `rec` (0-based), by rescanning: only
 * needed for the duplicate message, so the loader keeps no line table. */
static size_t record_line(const char *buf, size_t len, size_t header_line, size_t rec) {
    const char *p = buf, *end = buf + len;
    size_t line = 0, seen = 0;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        if (line > header_line && !is_blank(p, e) && seen++ == rec)
            return line;
        p = nl ? nl + 1 : end;
    }
    return line;
}

/* Find duplicate (user,item) pairs. Under DS_DUP_LAST the earlier ratings
 * are marked with user = -1 and counted; under DS_DUP_ERROR the pair whose
 * second line comes first in the file is reported in *dup_a < *dup_b.
 * A counting sort by user scatters (item, record) pairs, so the per-user
 * pass reads them in order instead of jumping back into the ratings (a
 * cache miss per rating on 20M). */
typedef struct dup_rec {
    int32_t item;
    uint32_t j; /* the record; dups_find refuses 2^32 ratings or more */
} dup_rec;

static int dups_find(ul_rating *r, size_t n, int32_t n_users, int32_t n_items, ds_dup_policy pol,
                     size_t *n_dups, size_t *dup_a, size_t *dup_b) {
    if (n > UINT32_MAX)
        return UL_ERR_NOMEM; /* 96 GB of ratings: not a file this loader holds */
    size_t *start = calloc((size_t)n_users + 1, sizeof(*start));
    dup_rec *order = malloc((n ? n : 1) * sizeof(*order));
    int32_t *stamp = malloc((size_t)n_items * sizeof(*stamp));
    size_t *where = malloc((size_t)n_items * sizeof(*where));
    if (!start || !order || !stamp || !where) {
        free(start);
        free(order);
        free(stamp);
        free(where);
        return UL_ERR_NOMEM;
    }
    for (size_t j = 0; j < n; j++)
        start[r[j].user + 1]++;
    for (int32_t u = 0; u < n_users; u++)
        start[u + 1] += start[u];
    for (size_t j = 0; j < n; j++) /* stable: file order within a user */
        order[start[r[j].user]++] = (dup_rec){r[j].item, (uint32_t)j};
    for (int32_t i = 0; i < n_items; i++)
        stamp[i] = -1;
    *n_dups = 0;
    *dup_b = SIZE_MAX;
    size_t lo = 0;
    for (int32_t u = 0; u < n_users; u++) {
        size_t hi = start[u]; /* start[u] now holds the end of user u */
        for (size_t k = lo; k < hi; k++) {
            size_t j = order[k].j;
            int32_t it = order[k].item;
            if (stamp[it] == u) {
                if (pol == DS_DUP_LAST)
                    r[where[it]].user = -1;
                else if (j < *dup_b) {
                    *dup_a = where[it];
                    *dup_b = j;
                }
                (*n_dups)++;
            }
            stamp[it] = u;
            where[it] = j;
        }
        lo = hi;
    }
    free(start);
    free(order);
    free(stamp);
    free(where);
    return UL_OK;
}

static size_t ratings_compact(ul_rating *r, size_t n) {
    size_t w = 0;
    for (size_t j = 0; j < n; j++)
        if (r[j].user >= 0)
            r[w++] = r[j];
    return w;
}

/* "…/ml-100k/u.data" -> "ml-100k"; "…/my_ratings.csv" -> "my_ratings". */
static void name_from_path(const char *path, char *name, size_t size) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int generic = strncmp(base, "u.", 2) == 0 || strncmp(base, "ratings.", 8) == 0;
    if (generic && base != path) {
        const char *dir_end = base - 1, *dir = dir_end;
        while (dir > path && dir[-1] != '/')
            dir--;
        if (dir_end > dir) {
            snprintf(name, size, "%.*s", (int)(dir_end - dir), dir);
            return;
        }
    }
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    snprintf(name, size, "%.*s", len, base);
}

static size_t lines_count(const char *buf, size_t len) {
    size_t n = 1;
    for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))) != NULL; p++)
        n++;
    return n;
}

/* Parse every line of buf; fills ld->ratings. */
static int lines_parse(loader *ld, const char *buf, size_t len, char *format, size_t format_size) {
    const char *p = buf, *end = buf + len;
    size_t line = 0;
    int have_format = 0;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3; /* UTF-8 byte order mark */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        line++;
        if (e > p && e[-1] == '\r')
            e--;
        if ((size_t)(e - p) > ld->opts->max_line) {
            ul_set_err(ld->errstr, ld->errstr_size, "%s:%zu: line longer than %zu bytes", ld->path,
                       line, ld->opts->max_line);
            return UL_ERR_PARSE;
        }
        int rc = UL_OK;
        if (is_blank(p, e))
            ;
        else if (!have_format) {
            rc = format_detect(ld, p, e, line, format, format_size);
            have_format = 1;
            if (rc == UL_OK && ld->header_line == 0)
                rc = line_parse(ld, p, e, line);
        } else
            rc = line_parse(ld, p, e, line);
        if (rc != UL_OK)
            return rc;
        p = next;
    }
    if (ld->n == 0) {
        ul_set_err(ld->errstr, ld->errstr_size, "%s: no ratings in the file (%s)", ld->path,
                   have_format ? "only a header" : "it is empty");
        return UL_ERR_PARSE;
    }
    return UL_OK;
}

static void loader_free(loader *ld) {
    free(ld->ratings);
    free(ld->user_ids);
    free(ld->item_ids);
    ds_index_destroy(ld->users);
    ds_index_destroy(ld->items);
}

static int dups_resolve(loader *ld, const char *buf, size_t len, size_t *n_dups) {
    size_t a = 0, b = 0;
    int32_t nu = ds_index_count(ld->users), ni = ds_index_count(ld->items);
    if (dups_find(ld->ratings, ld->n, nu, ni, ld->opts->dups, n_dups, &a, &b) != UL_OK) {
        ul_set_err(ld->errstr, ld->errstr_size, "%s: out of memory checking duplicates", ld->path);
        return UL_ERR_NOMEM;
    }
    if (*n_dups == 0)
        return UL_OK;
    if (ld->opts->dups == DS_DUP_LAST) {
        ld->n = ratings_compact(ld->ratings, ld->n);
        return UL_OK;
    }
    ul_set_err(ld->errstr, ld->errstr_size,
               "%s:%zu: duplicate rating of user %lld for item %lld (first at line %zu); "
               "policy 'error' rejects duplicates, policy 'last' keeps the later rating",
               ld->path, record_line(buf, len, ld->header_line, b),
               (long long)ld->user_ids[ld->ratings[b].user],
               (long long)ld->item_ids[ld->ratings[b].item],
               record_line(buf, len, ld->header_line, a));
    return UL_ERR_PARSE;
}

static int opts_check(const char *path, const ds_load_opts *o, char *errstr, size_t errstr_size) {
    if (path == NULL) {
        ul_set_err(errstr, errstr_size, "no dataset path given");
        return UL_ERR_ARG;
    }
    if (isinf(o->rating_min) || isinf(o->rating_max) || o->rating_min >= o->rating_max) {
        ul_set_err(errstr, errstr_size, "invalid rating scale %g..%g (min must be below max)",
                   (double)o->rating_min, (double)o->rating_max);
        return UL_ERR_ARG;
    }
    if (o->dups != DS_DUP_ERROR && o->dups != DS_DUP_LAST) {
        ul_set_err(errstr, errstr_size, "unknown duplicate policy %d", (int)o->dups);
        return UL_ERR_ARG;
    }
    if (o->max_line == 0) {
        ul_set_err(errstr, errstr_size, "max_line must be positive");
        return UL_ERR_ARG;
    }
    return UL_OK;
}

dataset *ds_load(const char *path, const ds_load_opts *opts, char *errstr, size_t errstr_size) {
    ds_load_opts defaults;
    if (opts == NULL) {
        ds_load_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts_check(path, opts, errstr, errstr_size) != UL_OK)
        return NULL;
    file_bytes fb;
    if (file_open_bytes(path, &fb, errstr, errstr_size) != UL_OK)
        return NULL;
    const char *buf = fb.buf;
    size_t len = fb.len;
    loader ld = {.path = path,
                 .opts = opts,
                 .errstr = errstr,
                 .errstr_size = errstr_size,
                 .col_user = -1,
                 .col_item = -1,
                 .col_rating = -1,
                 .col_time = -1};
    dataset *ds = calloc(1, sizeof(*ds));
    ld.cap = lines_count(buf, len);
    ld.ratings = malloc(ld.cap * sizeof(*ld.ratings));
    ld.users = ds_index_new(1024);
    ld.items = ds_index_new(1024);
    size_t n_dups = 0;
    if (!ds || !ld.ratings || !ld.users || !ld.items) {
        ul_set_err(errstr, errstr_size, "%s: out of memory (%zu lines)", path, ld.cap);
        goto fail;
    }
    if (lines_parse(&ld, buf, len, ds->format, sizeof(ds->format)) != UL_OK)
        goto fail;
    if (dups_resolve(&ld, buf, len, &n_dups) != UL_OK)
        goto fail;
    file_close_bytes(&fb);
    ul_rating *fit = realloc(ld.ratings, ld.n * sizeof(*fit));
    ds->ratings = fit ? fit : ld.ratings;
    ds->n_ratings = ld.n;
    ds->n_users = ds_index_count(ld.users);
    ds->n_items = ds_index_count(ld.items);
    ds->user_ids = ld.user_ids;
    ds->item_ids = ld.item_ids;
    ds->user_index = ld.users;
    ds->item_index = ld.items;
    scale_detect(ds->ratings, ds->n_ratings, opts, &ds->rating_min, &ds->rating_max);
    ds->has_time = ld.col_time >= 0;
    ds->n_duplicates = n_dups;
    name_from_path(path, ds->name, sizeof(ds->name));
    return ds;
fail:
    file_close_bytes(&fb);
    free(ds);
    loader_free(&ld);
    return NULL;
}
