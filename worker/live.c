/* live.c: the worker's view of m1 (see live.h).
 *
 * DESIGN: the effective item table `eff` is a cache: it is rebuilt from the
 * base rows and every partition's deltas whenever the set of owned
 * partitions changes or foreign deltas are refreshed, and updated in place
 * by each SGD step (the same change also goes into the owning partition's
 * delta). An unlearning cycle works on a small sub-model holding only the
 * requesting users and the items they remember, so its cost does not grow
 * with the catalogue; the changed rows are written back the same way as a
 * rating's. */
#include "live.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "rows.h"
#include "ul_buf.h"
#include "ul_err.h"

struct live {
    live_opts o;
    char method[32];
    store *st;
    int k;
    float mean, rmin, rmax;
    int32_t n_parts;
    rowset *base;        /* ul:items: item rows */
    rowset **foreign;    /* per partition, deltas of partitions not owned; NULL when owned */
    shard **shards;      /* per partition, NULL when not owned */
    rowset *eff;         /* effective item rows */
    rowset *item_passes; /* contract: replaced by state2. Item id -> passes (1 float) */
    mf_params sched;     /* contract: replaced by state2. Training's per-row schedule */
};

void live_opts_init(live_opts *opts) {
    memset(opts, 0, sizeof(*opts));
    mf_params mp;
    mf_params_init(&mp);
    opts->k = mp.k;
    opts->lr = mp.lr;
    opts->train_lr = mp.lr; /* core's trainer schedule */
    opts->train_lr_decay = mp.lr_decay;
    opts->train_lr_min = 0.0f;
    opts->rewarm = 1;
    opts->reg = mp.reg;
    opts->reg_bias = mp.reg_bias;
    opts->init_std = mp.init_std;
    opts->seed = mp.seed;
    opts->retention = 1000;
    opts->rating_min = 1.0f;
    opts->rating_max = 5.0f;
    opts->method = unlearn_method_default();
    unlearn_params_init(&opts->uparams);
}

int live_k(const live *l) {
    return l->k;
}

float live_global_mean(const live *l) {
    return l->mean;
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
    if (n_partitions <= 0 || opts->k <= 0 || opts->method == NULL) {
        ul_set_err(errstr, errstr_size, "live: bad options (partitions %d, k %d)",
                   (int)n_partitions, opts->k);
        return NULL;
    }
    live *l = calloc(1, sizeof(*l));
    if (l == NULL)
        goto oom;
    l->o = *opts;
    snprintf(l->method, sizeof(l->method), "%s", opts->method);
    l->o.method = l->method;
    mf_params_init(&l->sched); /* core's trainer schedule, rates and reg from the options */
    l->sched.lr = opts->train_lr;
    l->sched.lr_decay = opts->train_lr_decay;
    l->sched.reg = opts->reg;
    l->sched.reg_bias = opts->reg_bias;
    l->st = st;
    l->n_parts = n_partitions;
    if (init_model(l, errstr, errstr_size) != UL_OK)
        goto fail;
    l->foreign = calloc((size_t)n_partitions, sizeof(*l->foreign));
    l->shards = calloc((size_t)n_partitions, sizeof(*l->shards));
    l->base = rowset_new(rows_dim(ROWS_ITEM, l->k));
    l->eff = rowset_new(rows_dim(ROWS_ITEM, l->k));
    l->item_passes = rowset_new(1);
    if (l->foreign == NULL || l->shards == NULL || l->base == NULL || l->eff == NULL ||
        l->item_passes == NULL)
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
    rowset_destroy(l->item_passes);
    free(l);
}

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
    shard_destroy(s);
    l->shards[p] = NULL;
    l->foreign[p] = rowset_new(rows_dim(ROWS_ITEM, l->k));
    if (l->foreign[p] == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    int rc = store_deltas_load(l->st, p, l->foreign[p], errstr, errstr_size);
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

/* contract: replaced by state2 (from here to live_apply_rating). */

/* The shard whose delta takes an item change of class cls made in s. */
static shard *delta_owner(live *l, shard *s, int64_t item, shard_class cls) {
    shard *home = l->shards[rows_item_partition(item, l->n_parts)];
    return cls == SHARD_TRAINING && home ? home : s;
}

/* A new rating enters a row of n ratings (counting it) with 0 passes; the
 * row's training rate stays the mean of its ratings' rates:
 * decay^passes' = ((n-1) decay^passes + 1) / n. */
static void rewarm(const live *l, float *passes, float n) {
    float d = l->o.train_lr_decay;
    if (n < 1.0f || *passes <= 0.0f || l->o.rewarm == 0 || d >= 1.0f)
        return;
    if (l->o.rewarm == 2) /* measurement only: the mean of the passes instead */
        *passes *= (n - 1.0f) / n;
    else
        *passes = logf(((n - 1.0f) * powf(d, *passes) + 1.0f) / n) / logf(d);
}

float live_sgd(live *l, shard *s, int32_t uidx, int64_t item, float rating, shard_class cls) {
    int vdim = rows_vector_dim(l->k), count = rows_count_index(l->k);
    hist *h = shard_hist(s, uidx);
    int32_t ei = eff_item(l, item), pi = rowset_insert(l->item_passes, item, NULL);
    shard *ds = delta_owner(l, s, item, cls);
    int32_t di = rowset_insert(ds->deltas, item, NULL);
    if (h == NULL || ei < 0 || pi < 0 || di < 0)
        return NAN;
    float *irow = rowset_row(l->eff, ei), *urow = rowset_row(s->users, uidx);
    float *pu = &s->user_passes[uidx], *pv = rowset_row(l->item_passes, pi);
    float before[512]; /* the item's vector before the step, for the delta */
    float *old = vdim <= 512 ? before : malloc((size_t)vdim * sizeof(float));
    if (old == NULL)
        return NAN;
    memcpy(old, irow, (size_t)vdim * sizeof(float));
    mf_model m = rows_pair_model(urow, irow, l->k, l->mean, l->rmin, l->rmax);
    float err, nu = (float)h->n, ni = irow[count];
    if (cls == SHARD_EVENT) { /* today's online step; the new rating re-warms its rows */
        err = mf_sgd_step(&m, 0, 0, rating, l->o.lr, l->o.reg, l->o.reg_bias);
        rewarm(l, pu, nu + (float)(h->n < s->retention));
        rewarm(l, pv, ni + 1.0f);
    } else {
        mf_row_state us = {*pu, nu}, is = {*pv, ni};
        err = mf_sgd_step_rows(&m, 0, 0, rating, &l->sched, l->o.train_lr_min, &us, &is);
        *pu = us.passes;
        *pv = is.passes;
    }
    float *drow = rowset_row(ds->deltas, di);
    for (int f = 0; f < vdim; f++)
        drow[f] += irow[f] - old[f];
    if (old != before)
        free(old);
    shard_mark_user(s, uidx, cls);
    rowset_mark_dirty(ds->deltas, di);
    rowset_mark_publish(l->eff, ei);
    return err;
}

int live_apply_rating(live *l, shard *s, int64_t user, int64_t item, float rating,
                      int64_t time_ms) {
    int32_t ui = shard_user(s, user);
    if (ui < 0 || isnan(live_sgd(l, s, ui, item, rating, SHARD_EVENT)))
        return UL_ERR_NOMEM;
    int count = rows_count_index(l->k);
    int32_t ei = rowset_find(l->eff, item), di = rowset_find(s->deltas, item);
    rowset_row(l->eff, ei)[count] += 1.0f;
    rowset_row(s->deltas, di)[count] += 1.0f;
    hist_entry e = {item, time_ms, rating};
    if (shard_hist_append(s, ui, &e) != 0)
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

void live_cycle_free(live_cycle *c) {
    if (c == NULL)
        return;
    free(c->receipts);
    free(c->user_ids);
    free(c->user_rows);
    free(c->item_ids);
    free(c->item_rows);
    memset(c, 0, sizeof(*c));
}

/* ---- unlearning cycle --------------------------------------------------- */

/* One user of the batch: its history and which entries are forgotten. */
typedef struct batch_user {
    int32_t uidx;
    uint8_t *mask; /* per history entry: 1 = in F */
    int32_t local; /* sub-model row, -1 when nothing is forgotten */
} batch_user;

typedef struct cycle_ctx {
    batch_user *bu;
    size_t n_bu;
    size_t *eligible; /* indices into s->pending */
    size_t n_eligible;
    int32_t *forgotten; /* per eligible request */
    rowset *items;      /* raw item id -> sub-model index (dim 1, unused row) */
    ul_rating *F, *R;
    size_t nF, nR;
    mf_model *m;
    int32_t *item_count;
    unlearn_report rep;
} cycle_ctx;

static void cycle_ctx_free(cycle_ctx *c) {
    for (size_t i = 0; i < c->n_bu; i++)
        free(c->bu[i].mask);
    free(c->bu);
    free(c->eligible);
    free(c->forgotten);
    rowset_destroy(c->items);
    free(c->F);
    free(c->R);
    mf_model_destroy(c->m);
    free(c->item_count);
    unlearn_report_free(&c->rep);
}

static int matches(const forget_req *fr, const hist_entry *e) {
    if (fr->has_window)
        return e->time >= fr->from && e->time <= fr->to;
    for (uint32_t i = 0; i < fr->n_items; i++)
        if (fr->items[i] == e->item)
            return 1;
    return 0;
}

static batch_user *batch_user_get(cycle_ctx *c, shard *s, int32_t uidx) {
    for (size_t i = 0; i < c->n_bu; i++)
        if (c->bu[i].uidx == uidx)
            return &c->bu[i];
    hist *h = shard_hist(s, uidx);
    if (h == NULL)
        return NULL;
    batch_user *b = &c->bu[c->n_bu];
    b->uidx = uidx;
    b->local = -1;
    b->mask = calloc(h->n ? h->n : 1, 1);
    if (b->mask == NULL)
        return NULL;
    c->n_bu++;
    return b;
}

/* Pick the eligible requests and mark the history entries they forget. */
static int resolve(shard *s, size_t max_batch, cycle_ctx *c) {
    c->eligible = malloc((s->n_pending ? s->n_pending : 1) * sizeof(*c->eligible));
    c->forgotten = calloc(s->n_pending ? s->n_pending : 1, sizeof(*c->forgotten));
    c->bu = calloc(s->n_pending ? s->n_pending : 1, sizeof(*c->bu));
    if (c->eligible == NULL || c->forgotten == NULL || c->bu == NULL)
        return UL_ERR_NOMEM;
    int64_t applied_to = s->meta.next_offset[SHARD_RATINGS];
    for (size_t i = 0; i < s->n_pending && c->n_eligible < max_batch; i++) {
        const forget_req *fr = &s->pending[i];
        if (fr->ratings_hwm >= 0 && applied_to < fr->ratings_hwm)
            continue; /* ratings produced before it are not all applied yet */
        size_t j = c->n_eligible++;
        c->eligible[j] = i;
        int32_t uidx = rowset_find(s->users, fr->user);
        if (uidx < 0)
            continue; /* a user never seen: 0 forgotten */
        batch_user *b = batch_user_get(c, s, uidx);
        if (b == NULL)
            return UL_ERR_NOMEM;
        const hist *h = shard_hist(s, uidx);
        for (uint32_t e = 0; e < h->n; e++)
            if (!b->mask[e] && matches(fr, &h->v[h->start + e])) {
                b->mask[e] = 1;
                c->forgotten[j]++;
            }
    }
    return UL_OK;
}

/* Build the sub-model (forgetting users x the items they remember), F and
 * the retained ratings in its dense ids. */
static int build_submodel(live *l, shard *s, cycle_ctx *c, char *errstr, size_t errstr_size) {
    int k = l->k;
    int32_t nu = 0;
    size_t total = 0;
    c->items = rowset_new(1);
    if (c->items == NULL)
        return UL_ERR_NOMEM;
    for (size_t i = 0; i < c->n_bu; i++) {
        batch_user *b = &c->bu[i];
        const hist *h = shard_hist(s, b->uidx);
        int any = 0;
        for (uint32_t e = 0; e < h->n; e++)
            any |= b->mask[e];
        if (!any)
            continue;
        b->local = nu++;
        total += h->n;
        for (uint32_t e = 0; e < h->n; e++)
            if (rowset_insert(c->items, h->v[h->start + e].item, NULL) < 0)
                return UL_ERR_NOMEM;
    }
    int32_t ni = rowset_size(c->items);
    c->F = malloc((total ? total : 1) * sizeof(*c->F));
    c->R = malloc((total ? total : 1) * sizeof(*c->R));
    c->item_count = malloc((size_t)(ni ? ni : 1) * sizeof(*c->item_count));
    c->m = mf_model_new(nu, ni, k, errstr, errstr_size);
    if (c->F == NULL || c->R == NULL || c->item_count == NULL || c->m == NULL)
        return c->m == NULL ? UL_ERR_ARG : UL_ERR_NOMEM;
    c->m->global_mean = l->mean;
    c->m->rating_min = l->rmin;
    c->m->rating_max = l->rmax;
    for (size_t i = 0; i < c->n_bu; i++) {
        batch_user *b = &c->bu[i];
        if (b->local < 0)
            continue;
        rows_to_model(rowset_row_const(s->users, b->uidx), ROWS_USER, c->m, b->local);
        const hist *h = shard_hist(s, b->uidx);
        for (uint32_t e = 0; e < h->n; e++) {
            const hist_entry *he = &h->v[h->start + e];
            ul_rating r = {b->local, rowset_find(c->items, he->item), he->rating, he->time};
            if (b->mask[e])
                c->F[c->nF++] = r;
            else
                c->R[c->nR++] = r;
        }
    }
    for (int32_t j = 0; j < ni; j++) {
        const float *irow = live_item_row(l, rowset_key(c->items, j));
        rows_to_model(irow, ROWS_ITEM, c->m, j);
        float cnt = irow[rows_count_index(k)];
        c->item_count[j] = cnt < 1.0f ? 1 : (int32_t)(cnt + 0.5f);
    }
    return UL_OK;
}

/* The batch user whose sub-model row is `local`. */
static int32_t user_of_local(const cycle_ctx *c, int32_t local) {
    for (size_t i = 0; i < c->n_bu; i++)
        if (c->bu[i].local == local)
            return c->bu[i].uidx;
    return -1;
}

/* Make the sub-model's changed rows live and collect them for publishing. */
static int write_back(live *l, shard *s, cycle_ctx *c, live_cycle *out) {
    int k = l->k, vdim = rows_vector_dim(k);
    size_t nu = c->rep.n_users, ni = c->rep.n_items, bytes = (size_t)vdim * sizeof(float);
    out->user_ids = malloc((nu ? nu : 1) * sizeof(int64_t));
    out->user_rows = malloc((nu ? nu : 1) * bytes);
    out->item_ids = malloc((ni ? ni : 1) * sizeof(int64_t));
    out->item_rows = malloc((ni ? ni : 1) * bytes);
    float *fresh = malloc(bytes);
    int rc = UL_ERR_NOMEM;
    if (!out->user_ids || !out->user_rows || !out->item_ids || !out->item_rows || !fresh)
        goto done;
    for (size_t r = 0; r < nu; r++) {
        int32_t uidx = user_of_local(c, c->rep.users[r]);
        float *urow = rowset_row(s->users, uidx);
        rows_from_model(urow, ROWS_USER, c->m, c->rep.users[r]);
        rowset_mark_dirty(s->users, uidx);
        out->user_ids[out->n_users] = rowset_key(s->users, uidx);
        memcpy(out->user_rows + out->n_users++ * (size_t)vdim, urow, bytes);
    }
    for (size_t r = 0; r < ni; r++) {
        int32_t local = c->rep.items[r];
        int64_t item = rowset_key(c->items, local);
        int32_t ei = rowset_find(l->eff, item);
        int32_t di = rowset_insert(s->deltas, item, NULL);
        if (di < 0)
            goto done;
        float *irow = rowset_row(l->eff, ei), *drow = rowset_row(s->deltas, di);
        rows_from_model(fresh, ROWS_ITEM, c->m, local);
        for (int f = 0; f < vdim; f++) {
            drow[f] += fresh[f] - irow[f];
            irow[f] = fresh[f];
        }
        rowset_mark_dirty(s->deltas, di);
        out->item_ids[out->n_items] = item;
        memcpy(out->item_rows + out->n_items++ * (size_t)vdim, irow, bytes);
    }
    rc = UL_OK;
done:
    free(fresh);
    return rc;
}

/* Drop F from the histories and from the item counts. */
static int drop_forgotten(live *l, shard *s, cycle_ctx *c) {
    int count = rows_count_index(l->k);
    for (size_t i = 0; i < c->n_bu; i++) {
        batch_user *b = &c->bu[i];
        hist *h = shard_hist(s, b->uidx);
        uint32_t w = 0;
        int changed = 0;
        for (uint32_t e = 0; e < h->n; e++) {
            hist_entry he = h->v[h->start + e];
            if (!b->mask[e]) {
                h->v[h->start + w++] = he;
                continue;
            }
            changed = 1;
            int32_t ei = rowset_find(l->eff, he.item);
            int32_t di = rowset_insert(s->deltas, he.item, NULL);
            if (di < 0)
                return UL_ERR_NOMEM;
            rowset_row(l->eff, ei)[count] -= 1.0f;
            rowset_row(s->deltas, di)[count] -= 1.0f;
            rowset_mark_dirty(s->deltas, di);
        }
        h->n = w;
        if (changed)
            shard_hist_touch(s, b->uidx);
    }
    return UL_OK;
}

static int finish_requests(shard *s, cycle_ctx *c, int64_t now_ms, live_cycle *out) {
    out->receipts = calloc(c->n_eligible ? c->n_eligible : 1, sizeof(*out->receipts));
    if (out->receipts == NULL)
        return UL_ERR_NOMEM;
    for (size_t j = 0; j < c->n_eligible; j++) {
        const forget_req *fr = &s->pending[c->eligible[j]];
        codec_receipt *r = &out->receipts[out->n_receipts++];
        snprintf(r->request_id, sizeof(r->request_id), "%s", fr->request_id);
        r->user_id = fr->user;
        r->forgotten = c->forgotten[j];
        r->model_version = (int64_t)out->version;
        r->received_at = fr->received_ms;
        r->completed_at = now_ms;
    }
    for (size_t j = c->n_eligible; j-- > 0;)
        if (shard_pending_remove(s, c->eligible[j]) != 0)
            return UL_ERR_NOMEM;
    s->meta.forget_completed += c->n_eligible;
    return UL_OK;
}

int live_forget_cycle(live *l, shard *s, size_t max_batch, int64_t now_ms, live_cycle *out,
                      char *errstr, size_t errstr_size) {
    cycle_ctx c;
    memset(&c, 0, sizeof(c));
    memset(out, 0, sizeof(*out));
    out->partition = s->partition;
    int rc = resolve(s, max_batch ? max_batch : 1, &c);
    if (rc == UL_OK && c.n_eligible == 0)
        goto done;
    size_t n_marked = 0;
    for (size_t j = 0; j < c.n_eligible; j++)
        n_marked += (size_t)c.forgotten[j];
    if (rc == UL_OK && n_marked > 0)
        rc = build_submodel(l, s, &c, errstr, errstr_size);
    if (rc == UL_OK && c.nF > 0) {
        unlearn_request req = {c.F, c.nF, c.R, c.nR, NULL, c.item_count};
        /* Everything up to here only read the live state: a failure leaves
         * the requests buffered for the next cycle. */
        rc = unlearn_apply(l->method, c.m, &req, &l->o.uparams, &c.rep, errstr, errstr_size);
        if (rc == UL_OK)
            rc = write_back(l, s, &c, out);
        if (rc == UL_OK)
            rc = drop_forgotten(l, s, &c);
        out->unlearn_seconds = c.rep.seconds;
    }
    if (rc == UL_OK) {
        out->n_forgotten = c.nF;
        s->meta.forgotten += c.nF;
        s->meta.version++;
        out->version = s->meta.version;
        rc = finish_requests(s, &c, now_ms, out);
    }
done:
    if (rc == UL_ERR_NOMEM)
        ul_set_err(errstr, errstr_size, "out of memory in the unlearning cycle");
    if (rc != UL_OK)
        live_cycle_free(out);
    cycle_ctx_free(&c);
    return rc;
}
