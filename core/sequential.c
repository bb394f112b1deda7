/* sequential.c: sequential unlearning, F applied in N batches (see
 * sequential.h).
 *
 * DESIGN
 * - The batches are fixed up front (seq_assign), so every method of a cell
 *   sees the same deletion stream.
 * - Each batch's request is rebuilt from the training array and a
 *   "forgotten so far" mask, never patched incrementally: the item means are
 *   summed afresh over the ratings still held (in position order, as
 *   proto_item_means does), which is what makes N = 1 bit-identical to the
 *   one-shot request, and costs O(n + n_items) per batch.
 * - The retain set of a batch is built from a per-user list of training
 *   positions for the affected users only, re-sorted into position order. */
#include "sequential.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"
#include "ul_err.h"

typedef struct seq_state {
    const ul_rating *train;
    size_t n;
    int32_t n_items;
    const proto_forget *fs;
    int n_batches;
    size_t *bstart, *order; /* F's indices grouped by batch, ascending within a batch */
    int32_t *slot;          /* dense user -> index into fs->users, or -1 */
    size_t *ustart, *upos;  /* per affected user: their training positions, ascending */
    uint8_t *gone;          /* per position: forgotten in a batch so far */
    uint8_t *in_batch;      /* per affected user: has entries in the current batch */
    int32_t *batch_users;
    double *isum;
    int32_t *icnt;
    float *item_mean;
    int32_t *item_count;
    ul_rating *forget, *retain;
    size_t *rpos;
} seq_state;

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

int seq_assign(const proto_forget *fs, const ul_rating *train, const seq_opts *opts,
               int32_t *batch_of, char *errstr, size_t errstr_size) {
    size_t units = opts->split == SEQ_BY_USERS ? fs->n_users : fs->n;
    const char *what = opts->split == SEQ_BY_USERS ? "affected users" : "forgotten ratings";
    if (opts->batches < 1 || opts->batches > SEQ_MAX_BATCHES || (size_t)opts->batches > units) {
        ul_set_err(errstr, errstr_size,
                   "%d sequential batches do not fit F: need 1..%d and at most the %zu %s",
                   opts->batches, SEQ_MAX_BATCHES, units, what);
        return UL_ERR_ARG;
    }
    size_t *perm = malloc((units ? units : 1) * sizeof(*perm));
    int32_t *user_batch = NULL;
    if (perm == NULL)
        goto nomem;
    for (size_t j = 0; j < units; j++)
        perm[j] = j;
    rng g;
    rng_seed(&g, opts->seed);
    rng_shuffle(&g, perm, units, sizeof(*perm));
    size_t nb = (size_t)opts->batches;
    if (opts->split == SEQ_BY_RATINGS) {
        for (size_t j = 0; j < units; j++)
            batch_of[perm[j]] = (int32_t)(j * nb / units);
        free(perm);
        return UL_OK;
    }
    user_batch = malloc(sizeof(int32_t) * ((size_t)fs->n_users_total + 1));
    if (user_batch == NULL)
        goto nomem;
    for (size_t j = 0; j < units; j++)
        user_batch[fs->users[perm[j]]] = (int32_t)(j * nb / units);
    for (size_t j = 0; j < fs->n; j++)
        batch_of[j] = user_batch[train[fs->pos[j]].user];
    free(perm);
    free(user_batch);
    return UL_OK;
nomem:
    free(perm);
    ul_set_err(errstr, errstr_size, "out of memory assigning sequential batches");
    return UL_ERR_NOMEM;
}

static void state_free(seq_state *s) {
    free(s->bstart);
    free(s->order);
    free(s->slot);
    free(s->ustart);
    free(s->upos);
    free(s->gone);
    free(s->in_batch);
    free(s->batch_users);
    free(s->isum);
    free(s->icnt);
    free(s->item_mean);
    free(s->item_count);
    free(s->forget);
    free(s->retain);
    free(s->rpos);
}

/* F's indices grouped by batch (a counting sort keeps them ascending). */
static void group_batches(seq_state *s, const int32_t *batch_of) {
    for (size_t j = 0; j < s->fs->n; j++)
        s->bstart[batch_of[j] + 1]++;
    for (int b = 0; b < s->n_batches; b++)
        s->bstart[b + 1] += s->bstart[b];
    size_t *fill = s->rpos; /* scratch of >= n_batches + 1 entries */
    memcpy(fill, s->bstart, sizeof(size_t) * ((size_t)s->n_batches + 1));
    for (size_t j = 0; j < s->fs->n; j++)
        s->order[fill[batch_of[j]]++] = j;
}

/* Per affected user, their training positions in ascending order. */
static void index_users(seq_state *s) {
    const proto_forget *fs = s->fs;
    for (int32_t u = 0; u < fs->n_users_total; u++)
        s->slot[u] = -1;
    for (size_t a = 0; a < fs->n_users; a++)
        s->slot[fs->users[a]] = (int32_t)a;
    for (size_t j = 0; j < s->n; j++) {
        int32_t a = s->slot[s->train[j].user];
        if (a >= 0)
            s->ustart[a + 1]++;
    }
    for (size_t a = 0; a < fs->n_users; a++)
        s->ustart[a + 1] += s->ustart[a];
    size_t *fill = s->rpos;
    memcpy(fill, s->ustart, sizeof(size_t) * (fs->n_users + 1));
    for (size_t j = 0; j < s->n; j++) {
        int32_t a = s->slot[s->train[j].user];
        if (a >= 0)
            s->upos[fill[a]++] = j;
    }
}

static int state_init(seq_state *s, const ul_rating *train, size_t n, int32_t n_items,
                      const proto_forget *fs, const seq_opts *opts, char *errstr,
                      size_t errstr_size) {
    memset(s, 0, sizeof(*s));
    s->train = train;
    s->n = n;
    s->n_items = n_items;
    s->fs = fs;
    s->n_batches = opts->batches;
    size_t nf = fs->n ? fs->n : 1, nu = fs->n_users;
    size_t scratch = n > (size_t)opts->batches ? n : (size_t)opts->batches;
    if (scratch < nu)
        scratch = nu;
    int32_t *batch_of = malloc(nf * sizeof(int32_t));
    s->bstart = calloc((size_t)opts->batches + 1, sizeof(size_t));
    s->order = malloc(nf * sizeof(size_t));
    s->slot = malloc(((size_t)fs->n_users_total + 1) * sizeof(int32_t));
    s->ustart = calloc(nu + 1, sizeof(size_t));
    s->upos = malloc((n ? n : 1) * sizeof(size_t));
    s->gone = calloc(n ? n : 1, 1);
    s->in_batch = calloc(nu + 1, 1);
    s->batch_users = malloc((nu + 1) * sizeof(int32_t));
    s->isum = malloc((size_t)n_items * sizeof(double));
    s->icnt = malloc((size_t)n_items * sizeof(int32_t));
    s->item_mean = malloc((size_t)n_items * sizeof(float));
    s->item_count = malloc((size_t)n_items * sizeof(int32_t));
    s->forget = malloc(nf * sizeof(ul_rating));
    s->retain = malloc((n ? n : 1) * sizeof(ul_rating));
    s->rpos = malloc((scratch + 1) * sizeof(size_t));
    if (!batch_of || !s->bstart || !s->order || !s->slot || !s->ustart || !s->upos || !s->gone ||
        !s->in_batch || !s->batch_users || !s->isum || !s->icnt || !s->item_mean ||
        !s->item_count || !s->forget || !s->retain || !s->rpos) {
        free(batch_of);
        ul_set_err(errstr, errstr_size, "out of memory preparing sequential unlearning");
        return UL_ERR_NOMEM;
    }
    int rc = seq_assign(fs, train, opts, batch_of, errstr, errstr_size);
    if (rc == UL_OK) {
        group_batches(s, batch_of);
        index_users(s);
    }
    free(batch_of);
    return rc;
}

/* item_count (before the batch) and item_mean (after it) over the ratings
 * still held; `gone` already marks the batch. */
static void item_stats(seq_state *s, size_t b, float fallback) {
    const ul_rating *t = s->train;
    memset(s->isum, 0, (size_t)s->n_items * sizeof(double));
    memset(s->icnt, 0, (size_t)s->n_items * sizeof(int32_t));
    double total = 0;
    size_t held = 0;
    for (size_t j = 0; j < s->n; j++) {
        if (s->gone[j])
            continue;
        s->isum[t[j].item] += t[j].value;
        s->icnt[t[j].item]++;
        total += t[j].value;
        held++;
    }
    memcpy(s->item_count, s->icnt, (size_t)s->n_items * sizeof(int32_t));
    for (size_t e = s->bstart[b]; e < s->bstart[b + 1]; e++)
        s->item_count[t[s->fs->pos[s->order[e]]].item]++;
    float global = held ? (float)(total / (double)held) : fallback;
    for (int32_t i = 0; i < s->n_items; i++)
        s->item_mean[i] = s->icnt[i] ? (float)(s->isum[i] / (double)s->icnt[i]) : global;
}

/* Batch b's request; marks its entries forgotten. */
static void build_request(seq_state *s, size_t b, float fallback, unlearn_request *req) {
    const ul_rating *t = s->train;
    size_t nf = 0, nbu = 0, nr = 0;
    for (size_t e = s->bstart[b]; e < s->bstart[b + 1]; e++) {
        size_t pos = s->fs->pos[s->order[e]];
        s->gone[pos] = 1;
        s->forget[nf++] = t[pos];
        int32_t a = s->slot[t[pos].user];
        if (!s->in_batch[a]) {
            s->in_batch[a] = 1;
            s->batch_users[nbu++] = a;
        }
    }
    for (size_t k = 0; k < nbu; k++) {
        int32_t a = s->batch_users[k];
        s->in_batch[a] = 0;
        for (size_t j = s->ustart[a]; j < s->ustart[a + 1]; j++)
            if (!s->gone[s->upos[j]])
                s->rpos[nr++] = s->upos[j];
    }
    qsort(s->rpos, nr, sizeof(size_t), cmp_size);
    for (size_t j = 0; j < nr; j++)
        s->retain[j] = t[s->rpos[j]];
    item_stats(s, b, fallback);
    *req = (unlearn_request){s->forget, nf, s->retain, nr, s->item_mean, s->item_count};
}

static double seq_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int seq_unlearn(const char *method, mf_model *m, const ul_rating *train, size_t n, int32_t n_items,
                const proto_forget *fs, const seq_opts *opts, const unlearn_params *up,
                seq_batch_fn fn, void *ctx, double *seconds, char *errstr, size_t errstr_size) {
    if (seconds != NULL)
        *seconds = 0;
    if (n_items != m->n_items || fs->n_users_total > m->n_users ||
        (fs->n > 0 && fs->pos[fs->n - 1] >= n)) {
        ul_set_err(errstr, errstr_size,
                   "sequential unlearning: F or the items do not fit the model");
        return UL_ERR_ARG;
    }
    seq_state s;
    int rc = state_init(&s, train, n, n_items, fs, opts, errstr, errstr_size);
    float fallback = (m->rating_min + m->rating_max) / 2;
    unlearn_params p = *up;
    for (int b = 0; rc == UL_OK && b < opts->batches; b++) {
        unlearn_request req;
        build_request(&s, (size_t)b, fallback, &req);
        p.seed = b == 0 ? up->seed : rng_derive(up->seed, (uint64_t)b);
        double t0 = seq_now();
        rc = unlearn_apply(method, m, &req, &p, NULL, errstr, errstr_size);
        if (seconds != NULL)
            *seconds += seq_now() - t0;
        if (rc == UL_OK && fn != NULL && fn(ctx, b, opts->batches, m) != 0) {
            ul_set_err(errstr, errstr_size, "sequential unlearning aborted after batch %d", b + 1);
            rc = UL_ERR_ABORTED;
        }
    }
    state_free(&s);
    return rc;
}
