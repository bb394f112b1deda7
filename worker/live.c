/* live.c: the worker's view of m1 (see live.h).
 *
 * DESIGN: the effective item table `eff` is a cache: it is rebuilt from the
 * base rows and every partition's deltas whenever the set of owned
 * partitions changes or foreign deltas are refreshed, and updated in place
 * by each SGD step (the same change also goes into the owning partition's
 * delta). Unlearning cycles are forget.c's: they change items only through
 * live_correct_item. */
#include "live.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "rows.h"
#include "ul_buf.h"
#include "ul_err.h"

struct live {
    live_opts o;
    store *st;
    int k;
    float mean, rmin, rmax;
    int32_t n_parts;
    rowset *base;     /* ul:items: item rows */
    rowset **foreign; /* per partition, deltas of partitions not owned; NULL when owned */
    shard **shards;   /* per partition, NULL when not owned */
    rowset *eff;      /* effective item rows */
    rowset *owned;    /* contract stub: per item (count, sum) of the owned remembered ratings */
};

void live_opts_init(live_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    mf_params mp;
    mf_params_init(&mp);
    opts->k = mp.k;
    opts->lr = mp.lr;
    opts->reg = mp.reg;
    opts->reg_bias = mp.reg_bias;
    opts->init_std = mp.init_std;
    opts->seed = mp.seed;
    opts->retention = 5000; /* worker/config.c's retention.per.user */
    opts->rating_min = 1.0f;
    opts->rating_max = 5.0f;
}

int live_k(const live *l) {
    return l->k;
}

float live_global_mean(const live *l) {
    return l->mean;
}

void live_rating_scale(const live *l, float *min, float *max) {
    *min = l->rmin;
    *max = l->rmax;
}

int32_t live_partitions(const live *l) {
    return l->n_parts;
}

/* The effective row of `item`, created (initial row, count 0) when absent. */
static int32_t eff_item(live *l, int64_t item) {
    int created = 0;
    int32_t idx = rowset_insert(l->eff, item, &created);
    if (idx >= 0 && created) {
        float *row = rowset_row(l->eff, idx);
        rows_init(row, ROWS_ITEM, l->k, l->o.seed, l->o.init_std, item);
    }
    return idx;
}

static void add_rows(float *dst, const float *src, int dim) {
    for (int f = 0; f < dim; f++)
        dst[f] += src[f];
}

/* Rebuilding keeps the publish marks: the rows still have to go out. */
static int rebuild_eff(live *l) {
    int dim = rows_dim(ROWS_ITEM, l->k);
    size_t n_pub = 0;
    const int32_t *pub = rowset_to_publish(l->eff, &n_pub);
    int64_t *keep = malloc((n_pub ? n_pub : 1) * sizeof(*keep));
    if (keep == NULL)
        return UL_ERR_NOMEM;
    for (size_t i = 0; i < n_pub; i++)
        keep[i] = rowset_key(l->eff, pub[i]);
    int rc = UL_ERR_NOMEM;
    rowset_clear(l->eff);
    for (int32_t i = 0; i < rowset_size(l->base); i++) {
        int32_t e = rowset_insert(l->eff, rowset_key(l->base, i), NULL);
        if (e < 0)
            goto done;
        memcpy(rowset_row(l->eff, e), rowset_row_const(l->base, i), (size_t)dim * sizeof(float));
    }
    for (int32_t p = 0; p < l->n_parts; p++) {
        rowset *d = l->shards[p] ? l->shards[p]->deltas : l->foreign[p];
        for (int32_t i = 0; d && i < rowset_size(d); i++) {
            int32_t e = eff_item(l, rowset_key(d, i));
            if (e < 0)
                goto done;
            add_rows(rowset_row(l->eff, e), rowset_row_const(d, i), dim);
        }
    }
    for (size_t i = 0; i < n_pub; i++) {
        int32_t e = eff_item(l, keep[i]);
        if (e < 0)
            goto done;
        rowset_mark_publish(l->eff, e);
    }
    rc = UL_OK;
done:
    free(keep);
    return rc;
}

static int init_model(live *l, char *errstr, size_t errstr_size) {
    store_model want = {l->o.k, 0.5f * (l->o.rating_min + l->o.rating_max), l->o.rating_min,
                        l->o.rating_max, l->n_parts};
    store_model m;
    int found = 0;
    int rc = store_model_put(l->st, &want, 1, errstr, errstr_size);
    if (rc == UL_OK)
        rc = store_model_get(l->st, &m, &found, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    if (!found) {
        ul_set_err(errstr, errstr_size, "ul:model vanished while starting");
        return UL_ERR_STATE;
    }
    if (m.partitions > 0 && m.partitions != l->n_parts) {
        ul_set_err(errstr, errstr_size,
                   "Redis holds state for %d partitions but the ratings topic has %d: the "
                   "partition of a user would change (use a fresh Redis, or the same partition "
                   "count)",
                   (int)m.partitions, (int)l->n_parts);
        return UL_ERR_STATE;
    }
    l->k = m.k;
    l->mean = m.global_mean;
    l->rmin = m.rating_min;
    l->rmax = m.rating_max;
    return UL_OK;
}

live *live_new(const live_opts *opts, store *st, int32_t n_partitions, char *errstr,
               size_t errstr_size) {
    if (n_partitions <= 0 || opts->k <= 0) {
        ul_set_err(errstr, errstr_size, "live: bad options (partitions %d, k %d)",
                   (int)n_partitions, opts->k);
        return NULL;
    }
    live *l = calloc(1, sizeof(*l));
    if (l == NULL)
        goto oom;
    l->o = *opts;
    l->st = st;
    l->n_parts = n_partitions;
    if (init_model(l, errstr, errstr_size) != UL_OK)
        goto fail;
    l->foreign = calloc((size_t)n_partitions, sizeof(*l->foreign));
    l->shards = calloc((size_t)n_partitions, sizeof(*l->shards));
    l->base = rowset_new(rows_dim(ROWS_ITEM, l->k));
    l->eff = rowset_new(rows_dim(ROWS_ITEM, l->k));
    l->owned = rowset_new(2);
    if (l->foreign == NULL || l->shards == NULL || l->base == NULL || l->eff == NULL ||
        l->owned == NULL)
        goto oom;
    if (store_items_load(st, l->base, errstr, errstr_size) != UL_OK)
        goto fail;
    for (int32_t p = 0; p < n_partitions; p++) {
        l->foreign[p] = rowset_new(rows_dim(ROWS_ITEM, l->k));
        if (l->foreign[p] == NULL)
            goto oom;
        if (store_deltas_load(st, p, l->foreign[p], errstr, errstr_size) != UL_OK)
            goto fail;
    }
    if (rebuild_eff(l) != UL_OK)
        goto oom;
    return l;
oom:
    ul_set_err(errstr, errstr_size, "out of memory loading the live model");
fail:
    live_destroy(l);
    return NULL;
}

void live_destroy(live *l) {
    if (l == NULL)
        return;
    for (int32_t p = 0; p < l->n_parts; p++) {
        if (l->foreign)
            rowset_destroy(l->foreign[p]);
        if (l->shards)
            shard_destroy(l->shards[p]);
    }
    free(l->foreign);
    free(l->shards);
    rowset_destroy(l->base);
    rowset_destroy(l->eff);
    rowset_destroy(l->owned);
    free(l);
}

/* ---- contract: replaced by state2 -----------------------------------------
 * Item statistics on today's design: the ratings count is the effective
 * row's (every partition's ratings); the rating sum is not stored, so it is
 * estimated as count x the mean of the ratings of the item remembered in the
 * owned partitions' histories (`owned`, kept in step with the histories:
 * exact for one worker whose retention holds every rating). state2 replaces
 * this block with exact, persisted per-item statistics. */

static int owned_add(live *l, int64_t item, double dcount, double dsum) {
    int32_t j = rowset_insert(l->owned, item, NULL);
    if (j < 0)
        return UL_ERR_NOMEM;
    float *st = rowset_row(l->owned, j);
    st[0] += (float)dcount;
    st[1] += (float)dsum;
    return UL_OK;
}

/* Add (sign 1) or remove (-1) every remembered rating of shard s. */
static int owned_add_shard(live *l, shard *s, int sign) {
    for (int32_t u = 0; u < rowset_size(s->users) && u < s->hists_cap; u++) {
        const hist *h = &s->hists[u];
        for (uint32_t e = 0; e < h->n; e++) {
            const hist_entry *he = &h->v[h->start + e];
            if (owned_add(l, he->item, sign, sign * (double)he->rating) != UL_OK)
                return UL_ERR_NOMEM;
        }
    }
    return UL_OK;
}

void live_item_stats(const live *l, int64_t item, int64_t *count, double *sum) {
    const float *row = live_item_row(l, item);
    *count = 0;
    *sum = 0.0;
    float c = row ? row[rows_count_index(l->k)] : 0.0f;
    if (c < 0.5f)
        return;
    *count = (int64_t)(c + 0.5f);
    int32_t j = rowset_find(l->owned, item);
    const float *st = j >= 0 ? rowset_row_const(l->owned, j) : NULL;
    double mean = st && st[0] >= 0.5f ? (double)st[1] / st[0] : l->mean + row[ROWS_BIAS];
    *sum = mean * (double)*count;
}

int live_correct_item(live *l, shard *s, int64_t item, const float *delta, int64_t dcount,
                      double dsum) {
    int32_t ei = eff_item(l, item);
    int32_t di = rowset_insert(s->deltas, item, NULL);
    if (ei < 0 || di < 0)
        return UL_ERR_NOMEM;
    float *irow = rowset_row(l->eff, ei), *drow = rowset_row(s->deltas, di);
    int vdim = rows_vector_dim(l->k), count = rows_count_index(l->k);
    for (int f = 0; delta && f < vdim; f++) {
        irow[f] += delta[f];
        drow[f] += delta[f];
    }
    irow[count] += (float)dcount;
    drow[count] += (float)dcount;
    rowset_mark_dirty(s->deltas, di);
    rowset_mark_publish(l->eff, ei);
    return owned_add(l, item, (double)dcount, dsum);
}

/* ---- partitions ---------------------------------------------------------- */

shard *live_shard(live *l, int32_t p) {
    return p >= 0 && p < l->n_parts ? l->shards[p] : NULL;
}

shard *live_assign(live *l, int32_t p, char *errstr, size_t errstr_size) {
    if (p < 0 || p >= l->n_parts) {
        ul_set_err(errstr, errstr_size, "partition %d outside 0..%d", (int)p, (int)l->n_parts - 1);
        return NULL;
    }
    if (l->shards[p])
        return l->shards[p];
    shard *s = shard_new(p, l->k, l->o.seed, l->o.init_std, l->o.retention);
    if (s == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (store_shard_load(l->st, s, errstr, errstr_size) != UL_OK) {
        shard_destroy(s);
        return NULL;
    }
    if (shard_fit_users(s) != 0 || owned_add_shard(l, s, 1) != UL_OK) { /* contract stub */
        shard_destroy(s);
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    l->shards[p] = s;
    rowset_destroy(l->foreign[p]);
    l->foreign[p] = NULL;
    if (rebuild_eff(l) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    return s;
}

int live_revoke(live *l, int32_t p, char *errstr, size_t errstr_size) {
    shard *s = live_shard(l, p);
    if (s == NULL)
        return UL_OK;
    int rc = live_checkpoint(l, s, errstr, errstr_size);
    int dim = rows_dim(ROWS_ITEM, l->k);
    rowset *copy = rowset_new(dim);
    for (int32_t i = 0; copy && i < rowset_size(s->deltas); i++) {
        int32_t j = rowset_insert(copy, rowset_key(s->deltas, i), NULL);
        if (j < 0) {
            rowset_destroy(copy);
            copy = NULL;
            break;
        }
        memcpy(rowset_row(copy, j), rowset_row_const(s->deltas, i), (size_t)dim * sizeof(float));
    }
    if (owned_add_shard(l, s, -1) != UL_OK && rc == UL_OK) { /* contract stub */
        ul_set_err(errstr, errstr_size, "out of memory");
        rc = UL_ERR_NOMEM;
    }
    shard_destroy(s);
    l->shards[p] = NULL;
    if (copy == NULL) { /* keep the table consistent: an empty copy, refreshed later */
        copy = rowset_new(dim);
        if (copy == NULL && rc == UL_OK) {
            ul_set_err(errstr, errstr_size, "out of memory");
            rc = UL_ERR_NOMEM;
        }
    }
    l->foreign[p] = copy;
    return rc;
}

int live_drop(live *l, int32_t p, char *errstr, size_t errstr_size) {
    shard *s = live_shard(l, p);
    if (s == NULL)
        return UL_OK;
    int rc = owned_add_shard(l, s, -1); /* contract stub */
    shard_destroy(s);
    l->shards[p] = NULL;
    l->foreign[p] = rowset_new(rows_dim(ROWS_ITEM, l->k));
    if (rc != UL_OK || l->foreign[p] == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    rc = store_deltas_load(l->st, p, l->foreign[p], errstr, errstr_size);
    if (rc == UL_OK && rebuild_eff(l) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory");
        rc = UL_ERR_NOMEM;
    }
    return rc;
}

int live_buffer_forget(live *l, shard *s, codec_forget *f, int64_t offset, int64_t received_ms,
                       int64_t ratings_hwm) {
    (void)l;
    forget_req fr;
    memset(&fr, 0, sizeof(fr));
    fr.offset = offset;
    fr.user = f->user_id;
    fr.request_id = strdup(f->request_id);
    fr.has_window = f->has_window;
    fr.from = f->window_from;
    fr.to = f->window_to;
    fr.reason = (int32_t)f->reason;
    fr.received_ms = received_ms;
    fr.ratings_hwm = ratings_hwm;
    fr.unsaved = 1;
    if (fr.request_id == NULL)
        return UL_ERR_NOMEM;
    fr.items = f->items; /* moved */
    fr.n_items = (uint32_t)f->n_items;
    f->items = NULL;
    f->n_items = 0;
    if (shard_pending_add(s, &fr) != 0) {
        forget_req_free(&fr);
        return UL_ERR_NOMEM;
    }
    s->meta.forget_received++;
    return UL_OK;
}

int live_checkpoint(live *l, shard *s, char *errstr, size_t errstr_size) {
    return store_shard_checkpoint(l->st, s, errstr, errstr_size);
}

/* Ids of the rows of `fresh` that are new or differ from `old`, and whose
 * home partition is owned here, appended to *ids (grown). */
static int changed_owned(const live *l, const rowset *old, const rowset *fresh, int64_t **ids,
                         size_t *n, size_t *cap) {
    size_t bytes = (size_t)rows_dim(ROWS_ITEM, l->k) * sizeof(float);
    for (int32_t i = 0; i < rowset_size(fresh); i++) {
        int64_t key = rowset_key(fresh, i);
        if (l->shards[rows_item_partition(key, l->n_parts)] == NULL)
            continue;
        int32_t j = old ? rowset_find(old, key) : -1;
        if (j >= 0 && memcmp(rowset_row_const(old, j), rowset_row_const(fresh, i), bytes) == 0)
            continue;
        int64_t *v = ul_grow(*ids, cap, *n + 1, sizeof(*v));
        if (v == NULL)
            return UL_ERR_NOMEM;
        *ids = v;
        (*ids)[(*n)++] = key;
    }
    return UL_OK;
}

/* Items another worker changed are marked for publishing by the owner of
 * their home partition (rows_item_partition), whose effective row then includes
 * every worker's checkpointed deltas: the latest published row of an item
 * converges even when several workers rate it (docs/stream.md). */
int live_refresh(live *l, char *errstr, size_t errstr_size) {
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    for (int32_t p = 0; p < l->n_parts; p++) {
        if (l->shards[p])
            continue;
        rowset *fresh = rowset_new(rows_dim(ROWS_ITEM, l->k));
        if (fresh == NULL)
            goto oom;
        int rc = store_deltas_load(l->st, p, fresh, errstr, errstr_size);
        if (rc == UL_OK && changed_owned(l, l->foreign[p], fresh, &ids, &n, &cap) != UL_OK) {
            rowset_destroy(fresh);
            goto oom;
        }
        if (rc != UL_OK) {
            rowset_destroy(fresh);
            free(ids);
            return rc;
        }
        rowset_destroy(l->foreign[p]);
        l->foreign[p] = fresh;
    }
    if (rebuild_eff(l) != UL_OK)
        goto oom;
    for (size_t i = 0; i < n; i++)
        live_mark_row(l, ROWS_ITEM, ids[i]);
    free(ids);
    return UL_OK;
oom:
    free(ids);
    ul_set_err(errstr, errstr_size, "out of memory refreshing item deltas");
    return UL_ERR_NOMEM;
}

int live_apply_rating(live *l, shard *s, int64_t user, int64_t item, float rating,
                      int64_t time_ms) {
    int k = l->k;
    int32_t ui = shard_user(s, user);
    int32_t ei = eff_item(l, item);
    int32_t di = rowset_insert(s->deltas, item, NULL);
    if (ui < 0 || ei < 0 || di < 0)
        return UL_ERR_NOMEM;
    float *irow = rowset_row(l->eff, ei);
    int vdim = rows_vector_dim(k), count = rows_count_index(k);
    float before[512]; /* the item's vector before the step; on the heap for a large k */
    float *old = vdim <= 512 ? before : malloc((size_t)vdim * sizeof(float));
    if (old == NULL)
        return UL_ERR_NOMEM;
    memcpy(old, irow, (size_t)vdim * sizeof(float));
    mf_model m = rows_pair_model(rowset_row(s->users, ui), irow, k, l->mean, l->rmin, l->rmax);
    mf_sgd_step(&m, 0, 0, rating, l->o.lr, l->o.reg, l->o.reg_bias);
    float *drow = rowset_row(s->deltas, di);
    for (int f = 0; f < vdim; f++)
        drow[f] += irow[f] - old[f];
    drow[count] += 1.0f;
    irow[count] += 1.0f;
    if (old != before)
        free(old);
    shard_mark_user(s, ui, SHARD_EVENT);
    rowset_mark_dirty(s->deltas, di);
    rowset_mark_publish(l->eff, ei);
    hist_entry e = {item, time_ms, rating};
    const hist *h = shard_hist(s, ui);
    if (h == NULL)
        return UL_ERR_NOMEM;
    if (h->n == s->retention) { /* the oldest entry leaves the history (contract stub) */
        const hist_entry *old_e = &h->v[h->start];
        if (owned_add(l, old_e->item, -1.0, -(double)old_e->rating) != UL_OK)
            return UL_ERR_NOMEM;
    }
    if (shard_hist_append(s, ui, &e) != 0 || owned_add(l, item, 1.0, rating) != UL_OK)
        return UL_ERR_NOMEM;
    s->meta.applied++;
    return UL_OK;
}

const rowset *live_items(const live *l) {
    return l->eff;
}

/* ---- publishing --------------------------------------------------------- */

void live_mark_partition(live *l, int32_t p) {
    shard *s = live_shard(l, p);
    if (s == NULL)
        return;
    for (int32_t i = 0; i < rowset_size(s->users); i++)
        rowset_mark_publish(s->users, i);
    for (int32_t i = 0; i < rowset_size(l->eff); i++)
        if (rows_item_partition(rowset_key(l->eff, i), l->n_parts) == p)
            rowset_mark_publish(l->eff, i);
}

void live_mark_row(live *l, rows_kind kind, int64_t id) {
    if (kind == ROWS_ITEM) {
        int32_t e = rowset_find(l->eff, id);
        if (e >= 0)
            rowset_mark_publish(l->eff, e);
        return;
    }
    for (int32_t p = 0; p < l->n_parts; p++) {
        shard *s = l->shards[p];
        int32_t u = s ? rowset_find(s->users, id) : -1;
        if (u >= 0)
            rowset_mark_publish(s->users, u);
    }
}

size_t live_publish_marked(live *l, live_row_fn fn, void *opaque) {
    size_t n_total = 0, n;
    uint64_t top = 0;
    for (int32_t p = 0; p < l->n_parts; p++) {
        shard *s = l->shards[p];
        if (s == NULL)
            continue;
        if (s->meta.version > top)
            top = s->meta.version;
        const int32_t *idx = rowset_to_publish(s->users, &n);
        for (size_t i = 0; i < n; i++)
            fn(opaque, ROWS_USER, rowset_key(s->users, idx[i]), rowset_row_const(s->users, idx[i]),
               s->meta.version);
        n_total += n;
        rowset_clear_publish(s->users);
    }
    const int32_t *idx = rowset_to_publish(l->eff, &n);
    for (size_t i = 0; i < n; i++)
        fn(opaque, ROWS_ITEM, rowset_key(l->eff, idx[i]), rowset_row_const(l->eff, idx[i]), top);
    rowset_clear_publish(l->eff);
    return n_total + n;
}

size_t live_marked(const live *l) {
    size_t total = 0, n;
    for (int32_t p = 0; p < l->n_parts; p++)
        if (l->shards[p]) {
            rowset_to_publish(l->shards[p]->users, &n);
            total += n;
        }
    rowset_to_publish(l->eff, &n);
    return total + n;
}

const float *live_item_row(const live *l, int64_t item) {
    int32_t ei = rowset_find(l->eff, item);
    return ei < 0 ? NULL : rowset_row_const(l->eff, ei);
}

float live_predict(const live *l, const shard *s, int64_t user, int64_t item, int *found) {
    int32_t ui = s ? rowset_find(s->users, user) : -1;
    const float *irow = live_item_row(l, item);
    *found = ui >= 0 && irow != NULL;
    if (!*found)
        return l->mean;
    const float *urow = rowset_row_const(s->users, ui);
    float dot = 0.0f;
    for (int f = 0; f < l->k; f++)
        dot += urow[ROWS_FACTORS + f] * irow[ROWS_FACTORS + f];
    return l->mean + urow[ROWS_BIAS] + irow[ROWS_BIAS] + dot;
}
