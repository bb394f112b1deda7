/* protocol.c: the paper's operation O1 (faulty data, forget set F) and the
 * splits and item means the unlearning methods and the evaluation need.
 *
 * DESIGN: F is kept as positions in the training array, so the same F
 * addresses the clean and the faulty array alike. Users are drawn among
 * those with training ratings (a user with none has nothing to forget) by a
 * seeded shuffle; each picked user's ratings are drawn by a second shuffle
 * of that user's positions, users taken in ascending id order, so the result
 * depends only on the seed and the data. */
#include "protocol.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "ul_err.h"

void proto_forget_free(proto_forget *fs) {
    if (fs == NULL)
        return;
    free(fs->pos);
    free(fs->clean);
    free(fs->users);
    free(fs->affected);
    memset(fs, 0, sizeof(*fs));
}

/* round(pct% of total), clamped to [1, total]; total > 0. */
static size_t share_of(double pct, size_t total) {
    double want = llround(pct / 100.0 * (double)total);
    if (want < 1)
        return 1;
    return want > (double)total ? total : (size_t)want;
}

static int check_opts(const proto_opts *opts, char *errstr, size_t errstr_size) {
    if (!(opts->users_pct > 0 && opts->users_pct <= 100)) {
        ul_set_err(errstr, errstr_size, "users share %g%% is outside (0, 100]", opts->users_pct);
        return UL_ERR_ARG;
    }
    if (!(opts->forget_pct > 0 && opts->forget_pct <= 100)) {
        ul_set_err(errstr, errstr_size, "forget share %g%% is outside (0, 100]", opts->forget_pct);
        return UL_ERR_ARG;
    }
    if (!isfinite(opts->noise_value)) {
        ul_set_err(errstr, errstr_size, "noise value is not a finite number");
        return UL_ERR_ARG;
    }
    return UL_OK;
}

/* Ratings per user, checking every user id. start has n_users + 1 entries. */
static int count_users(const ul_rating *train, size_t n, int32_t n_users, size_t *start,
                       char *errstr, size_t errstr_size) {
    memset(start, 0, sizeof(size_t) * ((size_t)n_users + 1));
    for (size_t j = 0; j < n; j++) {
        int32_t u = train[j].user;
        if (u < 0 || u >= n_users) {
            ul_set_err(errstr, errstr_size, "training rating %zu has user %d outside 0..%d", j,
                       (int)u, (int)n_users - 1);
            return UL_ERR_ARG;
        }
        start[u + 1]++;
    }
    for (int32_t u = 0; u < n_users; u++)
        start[u + 1] += start[u];
    return UL_OK;
}

/* Pick the affected users: a seeded shuffle of the users with ratings. */
static int pick_users(const size_t *start, int32_t n_users, double pct, rng *r, proto_forget *fs,
                      char *errstr, size_t errstr_size) {
    int32_t *active = malloc(sizeof(int32_t) * ((size_t)n_users + 1));
    if (active == NULL)
        goto nomem;
    size_t n_active = 0;
    for (int32_t u = 0; u < n_users; u++)
        if (start[u + 1] > start[u])
            active[n_active++] = u;
    if (n_active == 0) {
        free(active);
        ul_set_err(errstr, errstr_size, "the training set has no ratings to forget");
        return UL_ERR_ARG;
    }
    rng_shuffle(r, active, n_active, sizeof(int32_t));
    fs->n_users = share_of(pct, n_active);
    fs->users = malloc(sizeof(int32_t) * fs->n_users);
    fs->affected = calloc((size_t)n_users, 1);
    if (fs->users == NULL || fs->affected == NULL) {
        free(active);
        goto nomem;
    }
    for (size_t j = 0; j < fs->n_users; j++)
        fs->affected[active[j]] = 1;
    size_t w = 0;
    for (int32_t u = 0; u < n_users; u++)
        if (fs->affected[u])
            fs->users[w++] = u;
    free(active);
    return UL_OK;
nomem:
    ul_set_err(errstr, errstr_size, "out of memory picking the affected users");
    return UL_ERR_NOMEM;
}

/* Mark y% of each affected user's positions in `mark` (n bytes). */
static int pick_ratings(const ul_rating *train, size_t n, const size_t *start, int32_t n_users,
                        double pct, rng *r, const proto_forget *fs, uint8_t *mark) {
    size_t *fill = malloc(sizeof(size_t) * ((size_t)n_users + 1));
    size_t *by_user = malloc(sizeof(size_t) * (n ? n : 1));
    if (fill == NULL || by_user == NULL) {
        free(fill);
        free(by_user);
        return UL_ERR_NOMEM;
    }
    memcpy(fill, start, sizeof(size_t) * ((size_t)n_users + 1));
    for (size_t j = 0; j < n; j++)
        by_user[fill[train[j].user]++] = j;
    for (size_t a = 0; a < fs->n_users; a++) {
        int32_t u = fs->users[a];
        size_t cnt = start[u + 1] - start[u];
        size_t *mine = by_user + start[u];
        rng_shuffle(r, mine, cnt, sizeof(size_t));
        size_t take = share_of(pct, cnt);
        for (size_t j = 0; j < take; j++)
            mark[mine[j]] = 1;
    }
    free(fill);
    free(by_user);
    return UL_OK;
}

static int collect_forget(const ul_rating *train, size_t n, const uint8_t *mark, proto_forget *fs) {
    size_t cnt = 0;
    for (size_t j = 0; j < n; j++)
        cnt += mark[j];
    fs->pos = malloc(sizeof(size_t) * (cnt ? cnt : 1));
    fs->clean = malloc(sizeof(float) * (cnt ? cnt : 1));
    if (fs->pos == NULL || fs->clean == NULL)
        return UL_ERR_NOMEM;
    for (size_t j = 0; j < n; j++) {
        if (!mark[j])
            continue;
        fs->pos[fs->n] = j;
        fs->clean[fs->n] = train[j].value;
        fs->n++;
    }
    return UL_OK;
}

int proto_make_faulty(const ul_rating *train, size_t n, int32_t n_users, const proto_opts *opts,
                      ul_ratings *faulty, proto_forget *fs, char *errstr, size_t errstr_size) {
    memset(fs, 0, sizeof(*fs));
    faulty->v = NULL;
    faulty->n = 0;
    int rc = check_opts(opts, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    if (n_users <= 0) {
        ul_set_err(errstr, errstr_size, "no users (n_users = %d)", (int)n_users);
        return UL_ERR_ARG;
    }
    fs->n_users_total = n_users;
    fs->noise_value = opts->noise_value;
    size_t *start = malloc(sizeof(size_t) * ((size_t)n_users + 1));
    uint8_t *mark = calloc(n ? n : 1, 1);
    if (start == NULL || mark == NULL) {
        rc = UL_ERR_NOMEM;
        goto fail;
    }
    rc = count_users(train, n, n_users, start, errstr, errstr_size);
    if (rc != UL_OK)
        goto fail;
    rng r;
    rng_seed(&r, opts->seed);
    rc = pick_users(start, n_users, opts->users_pct, &r, fs, errstr, errstr_size);
    if (rc != UL_OK)
        goto fail;
    rc = pick_ratings(train, n, start, n_users, opts->forget_pct, &r, fs, mark);
    if (rc == UL_OK)
        rc = collect_forget(train, n, mark, fs);
    if (rc != UL_OK)
        goto fail;
    faulty->v = malloc(sizeof(ul_rating) * (n ? n : 1));
    if (faulty->v == NULL) {
        rc = UL_ERR_NOMEM;
        goto fail;
    }
    memcpy(faulty->v, train, sizeof(ul_rating) * n);
    faulty->n = n;
    for (size_t j = 0; j < fs->n; j++)
        faulty->v[fs->pos[j]].value = opts->noise_value;
    free(start);
    free(mark);
    return UL_OK;
fail:
    if (rc == UL_ERR_NOMEM)
        ul_set_err(errstr, errstr_size, "out of memory building the forget set");
    free(start);
    free(mark);
    proto_forget_free(fs);
    return rc;
}

static int alloc_out(ul_ratings *out, size_t n) {
    if (out == NULL)
        return UL_OK;
    out->n = 0;
    out->v = malloc(sizeof(ul_rating) * (n ? n : 1));
    return out->v ? UL_OK : UL_ERR_NOMEM;
}

static void push(ul_ratings *out, const ul_rating *r) {
    if (out != NULL)
        out->v[out->n++] = *r;
}

/* 1 for the positions of F; NULL on allocation failure or a bad position. */
static uint8_t *forget_mask(size_t n, const proto_forget *fs) {
    uint8_t *in_f = calloc(n ? n : 1, 1);
    if (in_f == NULL)
        return NULL;
    for (size_t j = 0; j < fs->n; j++) {
        if (fs->pos[j] >= n) {
            free(in_f);
            return NULL;
        }
        in_f[fs->pos[j]] = 1;
    }
    return in_f;
}

int proto_split(const ul_rating *train, size_t n, const proto_forget *fs, ul_ratings *forget,
                ul_ratings *retain, ul_ratings *rest, char *errstr, size_t errstr_size) {
    if (fs->n > 0 && fs->pos[fs->n - 1] >= n) {
        ul_set_err(errstr, errstr_size, "forget set position %zu is outside the %zu ratings",
                   fs->pos[fs->n - 1], n);
        return UL_ERR_ARG;
    }
    uint8_t *in_f = forget_mask(n, fs);
    if (in_f == NULL || alloc_out(forget, fs->n) || alloc_out(retain, n) || alloc_out(rest, n)) {
        free(in_f);
        ul_ratings_free(forget);
        ul_ratings_free(retain);
        ul_ratings_free(rest);
        ul_set_err(errstr, errstr_size, "out of memory splitting the training set");
        return UL_ERR_NOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        const ul_rating *r = &train[j];
        int32_t u = r->user;
        int affected = u >= 0 && u < fs->n_users_total && fs->affected[u];
        if (in_f[j])
            push(forget, r);
        else if (affected)
            push(retain, r);
        else
            push(rest, r);
    }
    free(in_f);
    return UL_OK;
}

int proto_item_means(const ul_rating *train, size_t n, const proto_forget *fs, int32_t n_items,
                     float fallback, float *item_mean, char *errstr, size_t errstr_size) {
    if (n_items <= 0) {
        ul_set_err(errstr, errstr_size, "no items (n_items = %d)", (int)n_items);
        return UL_ERR_ARG;
    }
    if (fs->n > 0 && fs->pos[fs->n - 1] >= n) {
        ul_set_err(errstr, errstr_size, "forget set position %zu is outside the %zu ratings",
                   fs->pos[fs->n - 1], n);
        return UL_ERR_ARG;
    }
    uint8_t *in_f = forget_mask(n, fs);
    double *sum = calloc((size_t)n_items, sizeof(double));
    size_t *cnt = calloc((size_t)n_items, sizeof(size_t));
    if (in_f == NULL || sum == NULL || cnt == NULL) {
        free(in_f);
        free(sum);
        free(cnt);
        ul_set_err(errstr, errstr_size, "out of memory computing item means");
        return UL_ERR_NOMEM;
    }
    double total = 0;
    size_t n_out = 0;
    int rc = UL_OK;
    for (size_t j = 0; j < n && rc == UL_OK; j++) {
        int32_t i = train[j].item;
        if (i < 0 || i >= n_items) {
            ul_set_err(errstr, errstr_size, "training rating %zu has item %d outside 0..%d", j,
                       (int)i, (int)n_items - 1);
            rc = UL_ERR_ARG;
        } else if (!in_f[j]) {
            sum[i] += train[j].value;
            cnt[i]++;
            total += train[j].value;
            n_out++;
        }
    }
    float global = n_out ? (float)(total / (double)n_out) : fallback;
    for (int32_t i = 0; i < n_items && rc == UL_OK; i++)
        item_mean[i] = cnt[i] ? (float)(sum[i] / (double)cnt[i]) : global;
    free(in_f);
    free(sum);
    free(cnt);
    return rc;
}
