/* forget.c: an unlearning cycle's computation on a snapshot (see forget.h).
 *
 * DESIGN
 * - The job is self-contained: forget_prepare copies the requesting users'
 *   rows and histories and their items' rows into a small sub-model (users x
 *   the items they remember), with F, the retained ratings, the item counts
 *   and the item means outside F, so forget_compute needs nothing else and
 *   the loop keeps changing the live rows meanwhile. Its cost does not grow
 *   with the catalogue.
 * - Merging adds the method's change (new - snapshot) to the current rows,
 *   so the online steps of ratings applied meanwhile survive; a user's
 *   current history is its snapshot with possibly some oldest entries
 *   evicted and newer ones appended, and F is removed by position after
 *   aligning the two (by value if they cannot be aligned).
 * - One method call spans several partitions, but an item's correction
 *   belongs to the partitions whose users forgot it: each gets the share of
 *   the item's change that its F ratings of the item are of the item's F
 *   (and exactly its own count and sum), so a partition dropped while the
 *   job was out takes exactly its share with it, and the next owner's rerun
 *   of its requests restores (approximately) that share.
 * - Busy marks are set last in forget_prepare and cleared in forget_merge or
 *   forget_job_free, on shards still held only. */
#include "forget.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "rows.h"
#include "ul_buf.h"
#include "ul_err.h"

/* A partition the job took requests from. */
typedef struct job_part {
    int32_t partition;
    shard *s; /* NULL once dropped */
    size_t n_forgotten;
} job_part;

/* A user with at least one request. */
typedef struct job_user {
    size_t part;
    int32_t uidx;
    int32_t local; /* sub-model row; -1 when nothing is forgotten */
    hist_entry *h; /* the history at the snapshot (owned) */
    uint32_t n;
    uint8_t *mask; /* per entry of h: 1 = in F */
    float *snap;   /* the user row at the snapshot (rows_vector_dim floats) */
} job_user;

/* A request taken. */
typedef struct job_req {
    size_t part;
    int64_t offset;
    int64_t user;
    int32_t reason;
    int64_t received_ms;
    char request_id[CODEC_REQUEST_ID_MAX + 1];
    int32_t requested, forgotten, not_found, beyond;
} job_req;

struct forget_job {
    char method[32];
    unlearn_params up;
    int k, vdim;
    float mean, rmin, rmax;
    job_part *parts;
    size_t n_parts, cap_parts;
    job_user *users;
    size_t n_users, cap_users;
    job_req *reqs;
    size_t n_reqs, cap_reqs;
    rowset *items;    /* raw item id -> sub-model index (rows of 1 unused float) */
    float *item_snap; /* per sub-model item: its row at the snapshot (vdim floats) */
    int32_t *item_count;
    float *item_mean;
    ul_rating *F, *R;
    size_t nF, nR;
    int32_t *f_user; /* per F rating: its job_user */
    mf_model *m;
    int rc; /* forget_compute's */
    char err[UL_ERRSTR_SIZE];
    unlearn_report rep;
};

void forget_cycle_free(forget_cycle *c) {
    if (c == NULL)
        return;
    free(c->receipts);
    free(c->reasons);
    free(c->user_ids);
    free(c->user_rows);
    free(c->item_ids);
    free(c->item_rows);
    memset(c, 0, sizeof(*c));
}

/* ---- the busy marks ------------------------------------------------------ */

static void set_busy(forget_job *j, int on) {
    for (size_t u = 0; u < j->n_users; u++) {
        const job_user *ju = &j->users[u];
        shard *s = j->parts[ju->part].s;
        if (s == NULL || ju->local < 0)
            continue;
        if (on)
            s->user_flags[ju->uidx] |= SHARD_USER_BUSY;
        else
            s->user_flags[ju->uidx] &= (uint8_t)~SHARD_USER_BUSY;
    }
}

void forget_job_free(live *l, forget_job *j) {
    if (j == NULL)
        return;
    for (size_t p = 0; p < j->n_parts; p++) /* a shard not held any more is not ours to touch */
        if (j->parts[p].s != NULL && live_shard(l, j->parts[p].partition) != j->parts[p].s)
            j->parts[p].s = NULL;
    set_busy(j, 0);
    for (size_t u = 0; u < j->n_users; u++) {
        free(j->users[u].h);
        free(j->users[u].mask);
        free(j->users[u].snap);
    }
    free(j->users);
    free(j->parts);
    free(j->reqs);
    rowset_destroy(j->items);
    free(j->item_snap);
    free(j->item_count);
    free(j->item_mean);
    free(j->F);
    free(j->R);
    free(j->f_user);
    mf_model_destroy(j->m);
    unlearn_report_free(&j->rep);
    free(j);
}

/* ---- prepare: resolving the requests ------------------------------------ */

/* The job_user of (part, uidx), copying its history on first use; -1 when
 * out of memory. Users are few per job; a request's user is looked up among
 * those of its own partition, newest first (a user's requests arrive
 * together). */
static int32_t job_user_get(forget_job *j, size_t part, shard *s, int32_t uidx) {
    for (size_t u = j->n_users; u-- > 0 && j->users[u].part == part;)
        if (j->users[u].uidx == uidx)
            return (int32_t)u;
    job_user *v = ul_grow(j->users, &j->cap_users, j->n_users + 1, sizeof(*v));
    const hist *h = shard_hist(s, uidx);
    if (v == NULL || h == NULL)
        return -1;
    j->users = v;
    job_user *ju = &j->users[j->n_users];
    memset(ju, 0, sizeof(*ju));
    ju->part = part;
    ju->uidx = uidx;
    ju->local = -1;
    ju->n = h->n;
    ju->h = malloc((h->n ? h->n : 1) * sizeof(*ju->h));
    ju->mask = calloc(h->n ? h->n : 1, 1);
    ju->snap = malloc((size_t)j->vdim * sizeof(float));
    j->n_users++; /* freed with the job even when an allocation failed */
    if (ju->h == NULL || ju->mask == NULL || ju->snap == NULL)
        return -1;
    memcpy(ju->h, h->v + h->start, h->n * sizeof(*ju->h));
    memcpy(ju->snap, rowset_row_const(s->users, uidx), (size_t)j->vdim * sizeof(float));
    return (int32_t)(j->n_users - 1);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Position of `item` in the sorted distinct items[0..n), or -1. */
static ptrdiff_t find_item(const int64_t *items, size_t n, int64_t item) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (items[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && items[lo] == item ? (ptrdiff_t)lo : -1;
}

/* An item-list request: mask the entries of its items not masked yet by an
 * earlier request of the job, and count (forget.h) what it listed. */
static int resolve_items(const forget_req *fr, job_user *ju, const shard_evict *ev, job_req *r) {
    size_t n = 0;
    int64_t *items = malloc((fr->n_items ? fr->n_items : 1) * sizeof(*items));
    uint8_t *hit = calloc(fr->n_items ? fr->n_items : 1, 1);
    if (items == NULL || hit == NULL) {
        free(items);
        free(hit);
        return UL_ERR_NOMEM;
    }
    memcpy(items, fr->items, fr->n_items * sizeof(*items));
    qsort(items, fr->n_items, sizeof(*items), cmp_i64);
    for (uint32_t i = 0; i < fr->n_items; i++)
        if (n == 0 || items[n - 1] != items[i])
            items[n++] = items[i];
    for (uint32_t e = 0; ju && e < ju->n; e++) {
        ptrdiff_t x = ju->mask[e] ? -1 : find_item(items, n, ju->h[e].item);
        if (x < 0)
            continue;
        ju->mask[e] = 1;
        hit[x] = 1;
        r->forgotten++;
    }
    r->requested = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        if (hit[i])
            continue;
        if (shard_evict_may_contain(ev, items[i]))
            r->beyond++;
        else
            r->not_found++;
    }
    free(items);
    free(hit);
    return UL_OK;
}

/* The counts of a window request: dropped ratings whose time range the
 * window meets. */
static void count_window(const forget_req *fr, const shard_evict *ev, job_req *r) {
    if (ev != NULL && ev->count > 0 && fr->from <= ev->tmax && fr->to >= ev->tmin)
        r->beyond = (int32_t)ev->count;
}

/* Resolve one request of partition `part` against its user's history. */
static int take_request(forget_job *j, size_t part, shard *s, const forget_req *fr) {
    job_req *v = ul_grow(j->reqs, &j->cap_reqs, j->n_reqs + 1, sizeof(*v));
    if (v == NULL)
        return UL_ERR_NOMEM;
    j->reqs = v;
    job_req *r = &j->reqs[j->n_reqs++];
    memset(r, 0, sizeof(*r));
    r->part = part;
    r->offset = fr->offset;
    r->user = fr->user;
    r->reason = fr->reason;
    r->received_ms = fr->received_ms;
    snprintf(r->request_id, sizeof(r->request_id), "%s", fr->request_id);
    int32_t uidx = rowset_find(s->users, fr->user);
    job_user *ju = NULL;
    if (uidx >= 0) {
        int32_t u = job_user_get(j, part, s, uidx);
        if (u < 0)
            return UL_ERR_NOMEM;
        ju = &j->users[u];
    }
    const shard_evict *ev = uidx >= 0 ? shard_evicted(s, uidx) : NULL;
    int rc = UL_OK;
    if (fr->has_window) {
        for (uint32_t e = 0; ju && e < ju->n; e++)
            if (!ju->mask[e] && ju->h[e].time >= fr->from && ju->h[e].time <= fr->to) {
                ju->mask[e] = 1;
                r->forgotten++;
            }
        count_window(fr, ev, r);
    } else {
        rc = resolve_items(fr, ju, ev, r);
    }
    j->parts[part].n_forgotten += (size_t)r->forgotten;
    return rc;
}

static int eligible(const shard *s, const forget_req *fr) {
    int64_t applied_to = s->meta.next_offset[SHARD_RATINGS];
    return fr->ratings_hwm == 0 || (fr->ratings_hwm > 0 && applied_to >= fr->ratings_hwm);
}

/* Take the eligible requests of every owned partition, from `first` on. */
static int resolve_all(live *l, forget_job *j, size_t max_batch, int32_t first) {
    int32_t n = live_partitions(l);
    for (int32_t i = 0; i < n && j->n_reqs < max_batch; i++) {
        int32_t p = (first + i) % n;
        shard *s = live_shard(l, p);
        if (s == NULL || s->n_pending == 0)
            continue;
        size_t part = j->n_parts;
        for (size_t q = 0; q < s->n_pending && j->n_reqs < max_batch; q++) {
            if (!eligible(s, &s->pending[q]))
                continue;
            if (part == j->n_parts) {
                job_part *v = ul_grow(j->parts, &j->cap_parts, j->n_parts + 1, sizeof(*v));
                if (v == NULL)
                    return UL_ERR_NOMEM;
                j->parts = v;
                j->parts[j->n_parts++] = (job_part){p, s, 0};
            }
            if (take_request(j, part, s, &s->pending[q]) != UL_OK)
                return UL_ERR_NOMEM;
        }
    }
    return UL_OK;
}

/* ---- prepare: the sub-model ---------------------------------------------- */

/* The items of the forgetting users' histories, their snapshot rows and
 * counts, and F's count and sum per item (for the means outside F). */
static int snapshot_items(live *l, forget_job *j, size_t *n_hist) {
    if ((j->items = rowset_new(1)) == NULL)
        return UL_ERR_NOMEM;
    int32_t nu = 0;
    for (size_t u = 0; u < j->n_users; u++) {
        job_user *ju = &j->users[u];
        int any = 0;
        for (uint32_t e = 0; e < ju->n; e++)
            any |= ju->mask[e];
        if (!any)
            continue;
        ju->local = nu++;
        *n_hist += ju->n;
        for (uint32_t e = 0; e < ju->n; e++)
            if (rowset_insert(j->items, ju->h[e].item, NULL) < 0)
                return UL_ERR_NOMEM;
    }
    size_t ni = (size_t)rowset_size(j->items);
    j->item_snap = malloc((ni ? ni : 1) * (size_t)j->vdim * sizeof(float));
    j->item_count = malloc((ni ? ni : 1) * sizeof(int32_t));
    j->item_mean = malloc((ni ? ni : 1) * sizeof(float));
    if (j->item_snap == NULL || j->item_count == NULL || j->item_mean == NULL)
        return UL_ERR_NOMEM;
    for (size_t i = 0; i < ni; i++) {
        int64_t item = rowset_key(j->items, (int32_t)i);
        const float *row = live_item_row(l, item); /* every remembered item has a row */
        memcpy(j->item_snap + i * (size_t)j->vdim, row, (size_t)j->vdim * sizeof(float));
    }
    return UL_OK;
}

/* The corrected value of each item for D_fl1: its mean outside F, or
 * mu + b_i when F holds all of its ratings (or nothing is known). */
static int item_means(live *l, forget_job *j) {
    size_t ni = (size_t)rowset_size(j->items);
    int64_t *nf = calloc(ni ? ni : 1, sizeof(*nf));
    double *sf = calloc(ni ? ni : 1, sizeof(*sf));
    if (nf == NULL || sf == NULL) {
        free(nf);
        free(sf);
        return UL_ERR_NOMEM;
    }
    for (size_t f = 0; f < j->nF; f++) {
        nf[j->F[f].item]++;
        sf[j->F[f].item] += j->F[f].value;
    }
    for (size_t i = 0; i < ni; i++) {
        int64_t count;
        double sum;
        live_item_stats(l, rowset_key(j->items, (int32_t)i), &count, &sum);
        j->item_count[i] = count < 1 ? 1 : count > INT32_MAX ? INT32_MAX : (int32_t)count;
        double mean = j->mean + j->item_snap[i * (size_t)j->vdim + ROWS_BIAS];
        if (count - nf[i] >= 1) {
            double m = (sum - sf[i]) / (double)(count - nf[i]);
            if (isfinite(m))
                mean = m < j->rmin ? j->rmin : m > j->rmax ? j->rmax : m;
        }
        j->item_mean[i] = (float)mean;
    }
    free(nf);
    free(sf);
    return UL_OK;
}

static int build_submodel(live *l, forget_job *j, char *errstr, size_t errstr_size) {
    size_t total = 0;
    int rc = snapshot_items(l, j, &total);
    if (rc != UL_OK)
        return rc;
    int32_t nu = 0, ni = rowset_size(j->items);
    for (size_t u = 0; u < j->n_users; u++)
        nu += j->users[u].local >= 0;
    if (nu == 0) /* nothing to forget: receipts only */
        return UL_OK;
    j->F = malloc((total ? total : 1) * sizeof(*j->F));
    j->R = malloc((total ? total : 1) * sizeof(*j->R));
    j->f_user = malloc((total ? total : 1) * sizeof(*j->f_user));
    if (j->F == NULL || j->R == NULL || j->f_user == NULL)
        return UL_ERR_NOMEM;
    if ((j->m = mf_model_new(nu, ni, j->k, errstr, errstr_size)) == NULL)
        return UL_ERR_ARG;
    j->m->global_mean = j->mean;
    j->m->rating_min = j->rmin;
    j->m->rating_max = j->rmax;
    for (size_t u = 0; u < j->n_users; u++) {
        const job_user *ju = &j->users[u];
        if (ju->local < 0)
            continue;
        rows_to_model(ju->snap, ROWS_USER, j->m, ju->local);
        for (uint32_t e = 0; e < ju->n; e++) {
            const hist_entry *he = &ju->h[e];
            ul_rating r = {ju->local, rowset_find(j->items, he->item), he->rating, he->time};
            if (ju->mask[e]) {
                j->f_user[j->nF] = (int32_t)u;
                j->F[j->nF++] = r;
            } else {
                j->R[j->nR++] = r;
            }
        }
    }
    for (int32_t i = 0; i < ni; i++)
        rows_to_model(j->item_snap + (size_t)i * (size_t)j->vdim, ROWS_ITEM, j->m, i);
    return item_means(l, j);
}

int forget_prepare(live *l, const forget_opts *o, int32_t first, forget_job **out, char *errstr,
                   size_t errstr_size) {
    *out = NULL;
    forget_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        goto oom;
    snprintf(j->method, sizeof(j->method), "%s", o->method);
    j->up = o->uparams;
    j->k = live_k(l);
    j->vdim = rows_vector_dim(j->k);
    j->mean = live_global_mean(l);
    live_rating_scale(l, &j->rmin, &j->rmax);
    int rc = resolve_all(l, j, o->max_batch ? o->max_batch : 1, first);
    if (rc == UL_OK && j->n_reqs == 0) {
        forget_job_free(l, j);
        return UL_OK;
    }
    if (rc == UL_OK)
        rc = build_submodel(l, j, errstr, errstr_size);
    if (rc == UL_ERR_NOMEM)
        goto oom;
    if (rc != UL_OK) {
        forget_job_free(l, j);
        return rc;
    }
    set_busy(j, 1);
    *out = j;
    return UL_OK;
oom:
    forget_job_free(l, j);
    ul_set_err(errstr, errstr_size, "out of memory preparing an unlearning cycle");
    return UL_ERR_NOMEM;
}

/* ---- compute --------------------------------------------------------------- */

void forget_compute(forget_job *j) {
    j->rc = UL_OK;
    if (j->nF == 0)
        return;
    unlearn_request req = {j->F, j->nF, j->R, j->nR, j->item_mean, j->item_count};
    j->rc = unlearn_apply(j->method, j->m, &req, &j->up, &j->rep, j->err, sizeof(j->err));
}

void forget_drop_partition(forget_job *j, int32_t p) {
    for (size_t i = 0; j && i < j->n_parts; i++) {
        if (j->parts[i].partition != p || j->parts[i].s == NULL)
            continue;
        for (size_t u = 0; u < j->n_users; u++) /* the shard is still there: unmark it */
            if (j->users[u].part == i && j->users[u].local >= 0)
                j->parts[i].s->user_flags[j->users[u].uidx] &= (uint8_t)~SHARD_USER_BUSY;
        j->parts[i].s = NULL;
    }
}

size_t forget_job_requests(const forget_job *j) {
    return j->n_reqs;
}

size_t forget_job_ratings(const forget_job *j) {
    return j->nF;
}

double forget_job_seconds(const forget_job *j) {
    return j->rep.seconds;
}

/* ---- merge: rows ------------------------------------------------------------ */

/* row += new - snap over the first vdim floats. */
static void add_change(float *row, const float *fresh, const float *snap, int vdim) {
    for (int f = 0; f < vdim; f++)
        row[f] += fresh[f] - snap[f];
}

static int merge_users(forget_job *j, const int32_t *local_user) {
    float *fresh = malloc((size_t)j->vdim * sizeof(float));
    if (fresh == NULL)
        return UL_ERR_NOMEM;
    for (size_t r = 0; r < j->rep.n_users; r++) {
        const job_user *ju = &j->users[local_user[j->rep.users[r]]];
        shard *s = j->parts[ju->part].s;
        if (s == NULL)
            continue;
        rows_from_model(fresh, ROWS_USER, j->m, j->rep.users[r]);
        add_change(rowset_row(s->users, ju->uidx), fresh, ju->snap, j->vdim);
        shard_mark_user(s, ju->uidx, SHARD_EVENT);
    }
    free(fresh);
    return UL_OK;
}

/* Every item F touched, per partition: its share of the item's change (when
 * the method changed the item), minus its own F count and sum. `delta` holds
 * new - snapshot per sub-model item, or NULL rows (has_delta 0). */
static int merge_items(live *l, forget_job *j, const float *delta, const uint8_t *has_delta) {
    size_t ni = (size_t)rowset_size(j->items);
    int64_t *n_all = calloc(ni ? ni : 1, sizeof(*n_all)), *n_part = calloc(ni ? ni : 1, 8);
    double *s_part = calloc(ni ? ni : 1, sizeof(*s_part));
    float *share = malloc((size_t)j->vdim * sizeof(float));
    int rc = n_all && n_part && s_part && share ? UL_OK : UL_ERR_NOMEM;
    for (size_t f = 0; rc == UL_OK && f < j->nF; f++)
        n_all[j->F[f].item]++;
    for (size_t p = 0; rc == UL_OK && p < j->n_parts; p++) {
        shard *s = j->parts[p].s;
        if (s == NULL)
            continue;
        memset(n_part, 0, ni * sizeof(*n_part));
        memset(s_part, 0, ni * sizeof(*s_part));
        for (size_t f = 0; f < j->nF; f++)
            if (j->users[j->f_user[f]].part == p) {
                n_part[j->F[f].item]++;
                s_part[j->F[f].item] += j->F[f].value;
            }
        for (size_t i = 0; rc == UL_OK && i < ni; i++) {
            if (n_part[i] == 0)
                continue;
            const float *d = NULL;
            if (has_delta[i]) {
                float w = (float)n_part[i] / (float)n_all[i];
                for (int x = 0; x < j->vdim; x++)
                    share[x] = w * delta[i * (size_t)j->vdim + (size_t)x];
                d = share;
            }
            rc = live_correct_item(l, s, rowset_key(j->items, (int32_t)i), d, -n_part[i],
                                   -s_part[i]);
        }
    }
    free(n_all);
    free(n_part);
    free(s_part);
    free(share);
    return rc;
}

/* The method's change of each item it reports (new - snapshot). */
static int item_deltas(forget_job *j, float **delta, uint8_t **has_delta) {
    size_t ni = (size_t)rowset_size(j->items);
    *delta = calloc((ni ? ni : 1) * (size_t)j->vdim, sizeof(float));
    *has_delta = calloc(ni ? ni : 1, 1);
    float *fresh = malloc((size_t)j->vdim * sizeof(float));
    if (*delta == NULL || *has_delta == NULL || fresh == NULL) {
        free(fresh);
        return UL_ERR_NOMEM;
    }
    for (size_t r = 0; r < j->rep.n_items; r++) {
        size_t i = (size_t)j->rep.items[r];
        rows_from_model(fresh, ROWS_ITEM, j->m, (int32_t)i);
        for (int x = 0; x < j->vdim; x++)
            (*delta)[i * (size_t)j->vdim + (size_t)x] =
                fresh[x] - j->item_snap[i * (size_t)j->vdim + (size_t)x];
        (*has_delta)[i] = 1;
    }
    free(fresh);
    return UL_OK;
}

/* ---- merge: histories and requests ------------------------------------------ */

static int same_entry(const hist_entry *a, const hist_entry *b) {
    return a->item == b->item && a->time == b->time && a->rating == b->rating;
}

/* How many of the snapshot's oldest entries the current history has dropped
 * since (it is the snapshot's tail plus newer entries); -1 when it is not. */
static int64_t evicted_since(const job_user *ju, const hist *h) {
    for (uint32_t e0 = 0; e0 <= ju->n; e0++) {
        uint32_t keep = ju->n - e0;
        if (keep > h->n)
            continue;
        uint32_t x = 0;
        while (x < keep && same_entry(&h->v[h->start + x], &ju->h[e0 + x]))
            x++;
        if (x == keep)
            return e0;
    }
    return -1;
}

/* Remove the user's F entries from its current history. */
static void drop_forgotten(shard *s, const job_user *ju) {
    hist *h = &s->hists[ju->uidx];
    int64_t e0 = evicted_since(ju, h);
    uint8_t *left = NULL; /* value matching when the histories do not align */
    uint32_t w = 0;
    for (uint32_t x = 0; x < h->n; x++) {
        const hist_entry *he = &h->v[h->start + x];
        int drop = 0;
        if (e0 >= 0) {
            drop = (uint64_t)x + (uint64_t)e0 < ju->n && ju->mask[x + e0];
        } else {
            if (left == NULL && (left = malloc(ju->n ? ju->n : 1)) != NULL)
                memcpy(left, ju->mask, ju->n);
            for (uint32_t e = 0; left && e < ju->n && !drop; e++)
                if (left[e] && same_entry(he, &ju->h[e]))
                    drop = 1, left[e] = 0;
        }
        if (!drop)
            h->v[h->start + w++] = *he;
    }
    free(left);
    h->n = w;
    shard_hist_touch(s, ju->uidx);
}

static int find_pending(const shard *s, int64_t offset, size_t *idx) {
    for (size_t i = 0; i < s->n_pending; i++)
        if (s->pending[i].offset == offset) {
            *idx = i;
            return 1;
        }
    return 0;
}

/* Receipts of partition p's requests, which leave the buffer; counters. */
static int finish_part(forget_job *j, size_t p, int64_t now_ms, forget_cycle *c) {
    shard *s = j->parts[p].s;
    size_t n = 0;
    for (size_t r = 0; r < j->n_reqs; r++)
        n += j->reqs[r].part == p;
    c->receipts = calloc(n ? n : 1, sizeof(*c->receipts));
    c->reasons = calloc(n ? n : 1, sizeof(*c->reasons));
    if (c->receipts == NULL || c->reasons == NULL)
        return UL_ERR_NOMEM;
    s->meta.version++;
    s->meta.forgotten += j->parts[p].n_forgotten;
    c->partition = s->partition;
    c->version = s->meta.version;
    c->n_forgotten = j->parts[p].n_forgotten;
    for (size_t r = 0; r < j->n_reqs; r++) {
        const job_req *q = &j->reqs[r];
        size_t idx;
        if (q->part != p)
            continue;
        c->reasons[c->n_receipts] = q->reason;
        codec_receipt *rc = &c->receipts[c->n_receipts++];
        snprintf(rc->request_id, sizeof(rc->request_id), "%s", q->request_id);
        rc->user_id = q->user;
        rc->forgotten = q->forgotten;
        rc->requested = q->requested;
        rc->not_found = q->not_found;
        rc->beyond_retention = q->beyond;
        rc->model_version = (int64_t)c->version;
        rc->received_at = q->received_ms;
        rc->completed_at = now_ms;
        if (find_pending(s, q->offset, &idx) && shard_pending_remove(s, idx) != 0)
            return UL_ERR_NOMEM;
        s->meta.forget_completed++;
    }
    return UL_OK;
}

/* Which held partition publishes each changed item (its outbox carries the
 * item's row once per job): the one with the most of the item's F ratings
 * (the first on a tie); -1 for an item unchanged or of dropped partitions
 * only. The row is also marked for the periodic publish (live_correct_item). */
static int32_t *item_publishers(const forget_job *j, const uint8_t *has_delta) {
    size_t ni = (size_t)rowset_size(j->items), np = j->n_parts;
    int32_t *owner = malloc((ni ? ni : 1) * sizeof(*owner));
    uint32_t *n = calloc((ni ? ni : 1) * (np ? np : 1), sizeof(*n));
    if (owner == NULL || n == NULL) {
        free(owner);
        free(n);
        return NULL;
    }
    for (size_t f = 0; f < j->nF; f++)
        n[(size_t)j->F[f].item * np + j->users[j->f_user[f]].part]++;
    for (size_t i = 0; i < ni; i++) {
        owner[i] = -1;
        for (size_t p = 0; has_delta[i] && p < np; p++)
            if (j->parts[p].s != NULL && n[i * np + p] > 0 &&
                (owner[i] < 0 || n[i * np + p] > n[i * np + (size_t)owner[i]]))
                owner[i] = (int32_t)p;
    }
    free(n);
    return owner;
}

/* The rows partition p publishes: its changed users, and the changed items
 * it publishes (current values). */
static int collect_rows(live *l, forget_job *j, size_t p, const int32_t *owner, forget_cycle *c) {
    shard *s = j->parts[p].s;
    size_t bytes = (size_t)j->vdim * sizeof(float), nu = 0, ni = 0;
    size_t n_items = (size_t)rowset_size(j->items);
    for (size_t i = 0; i < n_items; i++)
        ni += owner[i] == (int32_t)p;
    for (size_t u = 0; u < j->n_users; u++)
        nu += j->users[u].part == p && j->users[u].local >= 0 && j->rep.n_users > 0;
    c->user_ids = malloc((nu ? nu : 1) * sizeof(int64_t));
    c->user_rows = malloc((nu ? nu : 1) * bytes);
    c->item_ids = malloc((ni ? ni : 1) * sizeof(int64_t));
    c->item_rows = malloc((ni ? ni : 1) * bytes);
    if (!c->user_ids || !c->user_rows || !c->item_ids || !c->item_rows)
        return UL_ERR_NOMEM;
    for (size_t u = 0; nu > 0 && u < j->n_users; u++) {
        const job_user *ju = &j->users[u];
        if (ju->part != p || ju->local < 0)
            continue;
        c->user_ids[c->n_users] = rowset_key(s->users, ju->uidx);
        memcpy(c->user_rows + c->n_users++ * (size_t)j->vdim, rowset_row_const(s->users, ju->uidx),
               bytes);
    }
    for (size_t i = 0; i < n_items; i++) {
        if (owner[i] != (int32_t)p)
            continue;
        int64_t item = rowset_key(j->items, (int32_t)i);
        c->item_ids[c->n_items] = item;
        memcpy(c->item_rows + c->n_items++ * (size_t)j->vdim, live_item_row(l, item), bytes);
    }
    return UL_OK;
}

static int merge_parts(live *l, forget_job *j, int64_t now_ms, const uint8_t *has_delta,
                       forget_cycle *out, size_t *n_out) {
    for (size_t u = 0; u < j->n_users; u++) {
        shard *s = j->parts[j->users[u].part].s;
        if (s != NULL && j->users[u].local >= 0)
            drop_forgotten(s, &j->users[u]);
    }
    int32_t *owner = item_publishers(j, has_delta);
    int rc = owner ? UL_OK : UL_ERR_NOMEM;
    for (size_t p = 0; rc == UL_OK && p < j->n_parts; p++) {
        if (j->parts[p].s == NULL)
            continue;
        forget_cycle *c = &out[(*n_out)++];
        rc = finish_part(j, p, now_ms, c);
        if (rc == UL_OK)
            rc = collect_rows(l, j, p, owner, c);
    }
    free(owner);
    return rc;
}

int forget_merge(live *l, forget_job *j, int64_t now_ms, forget_cycle **out, size_t *n_out,
                 char *errstr, size_t errstr_size) {
    *out = NULL;
    *n_out = 0;
    for (size_t p = 0; p < j->n_parts; p++) /* given up without being told: not ours */
        if (j->parts[p].s != NULL && live_shard(l, j->parts[p].partition) != j->parts[p].s)
            j->parts[p].s = NULL;
    if (j->rc != UL_OK) {
        ul_set_err(errstr, errstr_size, "%s", j->err);
        set_busy(j, 0);
        return UL_ERR_ABORTED; /* the live model is untouched */
    }
    int32_t nu = j->m ? j->m->n_users : 0;
    int32_t *local_user = malloc((size_t)(nu ? nu : 1) * sizeof(*local_user));
    float *delta = NULL;
    uint8_t *has_delta = NULL;
    forget_cycle *cycles = calloc(j->n_parts ? j->n_parts : 1, sizeof(*cycles));
    int rc = local_user && cycles ? UL_OK : UL_ERR_NOMEM;
    for (size_t u = 0; rc == UL_OK && u < j->n_users; u++)
        if (j->users[u].local >= 0)
            local_user[j->users[u].local] = (int32_t)u;
    if (rc == UL_OK)
        rc = item_deltas(j, &delta, &has_delta);
    if (rc == UL_OK)
        rc = merge_users(j, local_user);
    if (rc == UL_OK && j->nF > 0)
        rc = merge_items(l, j, delta, has_delta);
    if (rc == UL_OK)
        rc = merge_parts(l, j, now_ms, has_delta, cycles, n_out);
    set_busy(j, 0);
    free(local_user);
    free(delta);
    free(has_delta);
    if (rc != UL_OK) {
        for (size_t c = 0; c < *n_out; c++)
            forget_cycle_free(&cycles[c]);
        free(cycles);
        *n_out = 0;
        ul_set_err(errstr, errstr_size, "out of memory merging an unlearning cycle");
        return rc;
    }
    *out = cycles;
    return UL_OK;
}
