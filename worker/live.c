/* live.c: the worker's view of m1 (see live.h).
 *
 * DESIGN
 * - The replica `items` holds every item's row followed by its live
 *   statistics (rows_stats, memcpy'd: ITEM_DIM floats a row). For the items
 *   of owned home partitions the replica row *is* the durable row: the
 *   shard marks which of them changed (SHARD_HOME_*) and its checkpoint
 *   writes them from here. Live statistics are separate from the home's
 *   durable ones (shard->home): they also hold this process's changes that
 *   are not delivered yet.
 * - An exact change is applied locally when the event happens (replica
 *   stats and rows) and queued in the event's shard (shard_pend); the
 *   checkpoint turns the queue into sequenced records in the outbox. A
 *   shard dropped without checkpointing takes its queue back out of the
 *   replica, since the next owner replays those events.
 * - Deduplication: seen[h * N + q] is the last sequence from source q
 *   whose statistics the replica applied for home h, seen_rows[] the last
 *   whose row corrections it applied (at start: h's stored `seen`, which
 *   is as of h's last checkpoint, and its `r<q>` fields, as of h's last row
 *   flush); the home's durable side uses its shard's own `seen`.
 * - Positions: upd_pos[h] is the next item-updates offset of partition h
 *   the replica needs (at start the lower of rows_off and h's stored
 *   offset); best-effort records below rows_from[h] (rows_off) are in the
 *   stored rows already. A shard's next_offset[SHARD_ITEM_UPDATES] is the
 *   next one its durable side needs. At assignment the worker seeks
 *   partition h back to the shard's offset when it is lower: records below
 *   upd_pos are then applied to the durable side only (catch-up).
 * - Item rows in Redis are written at row flushes only, as of rows_off:
 *   the replica row minus this process's own changes that have not come
 *   back through the topic yet (own_out), so that a restart that replays
 *   the topic from rows_off applies every change exactly once (a change
 *   never sent is lost with the process: best effort).
 * - Unlearning cycles are forget.c's (on a thread, on a snapshot): they
 *   change items only through live_correct_item.
 * - Files: live.c holds the replica, the model and the start-up load,
 *   ownership, events, predictions and publishing; live_updates.c the
 *   records of item updates (pushes, deliveries, the checkpoint) and
 *   applying item-updates records; live_int.h what both share. */
#include "live.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "live_int.h"
#include "mf.h"
#include "rows.h"
#include "ul_clock.h"
#include "ul_err.h"

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

uint64_t live_instance(const live *l) {
    return l->instance;
}

uint64_t live_nonce(const live *l) {
    return l->nonce;
}

/* ---- the replica -------------------------------------------------------- */

/* (replica_item, replica_stats, home_of, item_changed, add_vec: live_int.h) */

/* This process changed item's row by sign * delta: until the change comes
 * back through the topic, a row flush leaves it out. UL_ERR_NOMEM only. */
static int own_change(live *l, int64_t item, const float *delta, float sign) {
    int32_t i = rowset_insert(l->own_out, item, NULL);
    if (i < 0)
        return UL_ERR_NOMEM;
    add_vec(rowset_row(l->own_out, i), delta, rows_vector_dim(l->k), sign);
    return UL_OK;
}

void live_item_stats(const live *l, int64_t item, int64_t *count, double *sum) {
    int32_t ei = rowset_find(l->items, item);
    rows_stats st = {0, 0.0};
    if (ei >= 0)
        st = replica_stats(l, ei);
    *count = st.count;
    *sum = st.sum;
}

const rowset *live_items(const live *l) {
    return l->items;
}

const float *live_item_row(const live *l, int64_t item) {
    int32_t ei = rowset_find(l->items, item);
    return ei < 0 ? NULL : rowset_row_const(l->items, ei);
}

/* ---- the model and the start-up load ----------------------------------- */

static int model_mismatch(live *l, const store_model *m, char *errstr, size_t errstr_size) {
    if (m->format != STORE_FORMAT) {
        ul_set_err(errstr, errstr_size,
                   "Redis holds worker state of format %d (per-partition item deltas); this "
                   "version reads format %d only: replay the topics into an empty Redis, or "
                   "'unlearnd import --replace' a model",
                   m->format, STORE_FORMAT);
        return UL_ERR_STATE;
    }
    if (m->partitions > 0 && m->partitions != l->n_parts) {
        ul_set_err(errstr, errstr_size,
                   "Redis holds state for %d partitions but the ratings topic has %d: the "
                   "partition of a user would change (use a fresh Redis, or the same partition "
                   "count)",
                   (int)m->partitions, (int)l->n_parts);
        return UL_ERR_STATE;
    }
    if (m->rating_min != l->o.rating_min || m->rating_max != l->o.rating_max) {
        ul_set_err(errstr, errstr_size,
                   "Redis holds a model on the rating scale %g..%g but rating.min/rating.max "
                   "are %g..%g: start with --rating.min %g --rating.max %g, or use a fresh Redis",
                   (double)m->rating_min, (double)m->rating_max, (double)l->o.rating_min,
                   (double)l->o.rating_max, (double)m->rating_min, (double)m->rating_max);
        return UL_ERR_STATE;
    }
    if (l->o.k_explicit && m->k != l->o.k) {
        ul_set_err(errstr, errstr_size,
                   "Redis holds a model with k=%d but model.k is %d: start with --model.k %d "
                   "(or without model.k), or use a fresh Redis",
                   m->k, l->o.k, m->k);
        return UL_ERR_STATE;
    }
    return UL_OK;
}

static int init_model(live *l, char *errstr, size_t errstr_size) {
    store_model want = {l->o.k,
                        0.5f * (l->o.rating_min + l->o.rating_max),
                        l->o.rating_min,
                        l->o.rating_max,
                        l->n_parts,
                        STORE_FORMAT,
                        0};
    store_model m;
    int found = 0;
    /* Look before writing: HSETNX would add format=2 to an older state. */
    int rc = store_model_get(l->st, &m, &found, errstr, errstr_size);
    if (rc == UL_OK && found && (rc = model_mismatch(l, &m, errstr, errstr_size)) != UL_OK)
        return rc;
    if (rc == UL_OK)
        rc = store_model_put(l->st, &want, 1, errstr, errstr_size);
    if (rc == UL_OK)
        rc = store_model_get(l->st, &m, &found, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    if (!found) {
        ul_set_err(errstr, errstr_size, "ul:model vanished while starting");
        return UL_ERR_STATE;
    }
    if ((rc = model_mismatch(l, &m, errstr, errstr_size)) != UL_OK)
        return rc;
    l->k = m.k;
    l->mean = m.global_mean;
    l->rmin = m.rating_min;
    l->rmax = m.rating_max;
    l->nonce = m.nonce;
    return UL_OK;
}

typedef struct load_ctx {
    live *l;
    int32_t p;
} load_ctx;

static int load_row(void *vctx, int64_t id, const float *row, int dim, char *errstr,
                    size_t errstr_size) {
    load_ctx *c = vctx;
    int32_t ei = rowset_insert(c->l->items, id, NULL);
    if (ei < 0) {
        ul_set_err(errstr, errstr_size, "out of memory loading the item replica");
        return UL_ERR_NOMEM;
    }
    memcpy(rowset_row(c->l->items, ei), row, (size_t)dim * sizeof(float));
    return UL_OK;
}

static int load_stats(void *vctx, int64_t id, const rows_stats *sv, char *errstr,
                      size_t errstr_size) {
    load_ctx *c = vctx;
    int32_t ei = replica_item(c->l, id); /* statistics without a row: an item never flushed */
    if (ei < 0) {
        ul_set_err(errstr, errstr_size, "out of memory loading the item replica");
        return UL_ERR_NOMEM;
    }
    memcpy(rowset_row(c->l->items, ei) + c->l->row_dim, sv, sizeof(*sv));
    return UL_OK;
}

static int load_seen(void *vctx, int32_t q, int rows, int64_t seq, char *errstr,
                     size_t errstr_size) {
    load_ctx *c = vctx;
    if (q >= c->l->n_parts) {
        ul_set_err(errstr, errstr_size,
                   "ul:{p%d}:seen names source partition %d, but there are %d partitions",
                   (int)c->p, (int)q, (int)c->l->n_parts);
        return UL_ERR_CORRUPT;
    }
    (rows ? c->l->seen_rows : c->l->seen)[(size_t)c->p * (size_t)c->l->n_parts + (size_t)q] = seq;
    return UL_OK;
}

/* Every partition's home items, statistics, seen and rows_off. */
static int load_replica(live *l, char *errstr, size_t errstr_size) {
    for (int32_t p = 0; p < l->n_parts; p++) {
        shard_meta meta;
        int found = 0;
        load_ctx c = {l, p};
        int rc = store_meta_get(l->st, p, &meta, &found, errstr, errstr_size);
        if (rc == UL_OK)
            rc = store_home_load(l->st, p, l->row_dim, load_row, load_stats, load_seen, &c, errstr,
                                 errstr_size);
        if (rc != UL_OK)
            return rc;
        /* From the lower of the two positions: the statistics (as of the
         * checkpoint's offset) and the rows (as of rows_off) both catch up. */
        int64_t stats_off = meta.next_offset[SHARD_ITEM_UPDATES];
        l->rows_from[p] = meta.rows_off;
        l->upd_pos[p] = meta.rows_off < 0 || stats_off < 0 ? -1
                        : stats_off < meta.rows_off        ? stats_off
                                                           : meta.rows_off;
    }
    return UL_OK;
}

static uint64_t random_instance(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = (uint64_t)ul_clock_wall_ms() ^ ((uint64_t)ul_clock_mono_ms() << 20);
    return v & 0x7fffffffffffffffULL; /* an Avro long */
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
    mf_params_init(&l->sched);
    l->sched.lr = opts->train_lr;
    l->sched.lr_decay = opts->train_lr_decay;
    l->sched.reg = opts->reg;
    l->sched.reg_bias = opts->reg_bias;
    l->ln_decay = opts->train_lr_decay > 0.0f && opts->train_lr_decay < 1.0f
                      ? logf(opts->train_lr_decay)
                      : 0.0f;
    l->st = st;
    l->n_parts = n_partitions;
    l->instance = random_instance();
    if (init_model(l, errstr, errstr_size) != UL_OK)
        goto fail;
    l->row_dim = rows_dim(ROWS_ITEM, l->k);
    l->item_dim = l->row_dim + STATS_FLOATS;
    size_t n = (size_t)n_partitions;
    l->shards = calloc(n, sizeof(*l->shards));
    l->upd_pos = malloc(n * sizeof(*l->upd_pos));
    l->rows_from = malloc(n * sizeof(*l->rows_from));
    l->seen = malloc(n * n * sizeof(*l->seen));
    l->seen_rows = malloc(n * n * sizeof(*l->seen_rows));
    l->items = rowset_new(l->item_dim);
    l->acc[SHARD_EVENT] = rowset_new(rows_vector_dim(l->k));
    l->acc[SHARD_TRAINING] = rowset_new(rows_vector_dim(l->k));
    l->own_out = rowset_new(rows_vector_dim(l->k));
    if (!l->shards || !l->upd_pos || !l->rows_from || !l->seen || !l->seen_rows || !l->items ||
        !l->acc[0] || !l->acc[1] || !l->own_out)
        goto oom;
    for (size_t i = 0; i < n * n; i++)
        l->seen[i] = l->seen_rows[i] = -1;
    if (load_replica(l, errstr, errstr_size) != UL_OK)
        goto fail;
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
    for (int32_t p = 0; l->shards && p < l->n_parts; p++)
        shard_destroy(l->shards[p]);
    free(l->shards);
    free(l->upd_pos);
    free(l->rows_from);
    free(l->seen);
    free(l->seen_rows);
    rowset_destroy(l->items);
    rowset_destroy(l->acc[0]);
    rowset_destroy(l->acc[1]);
    rowset_destroy(l->own_out);
    free(l->scratch.items);
    free(l);
}

/* ---- ownership ---------------------------------------------------------- */

shard *live_shard(live *l, int32_t p) {
    return p >= 0 && p < l->n_parts ? l->shards[p] : NULL;
}

shard *live_assign(live *l, int32_t p, int *rc_out, char *errstr, size_t errstr_size) {
    int rc = UL_ERR_ARG;
    shard *s = NULL;
    if (p < 0 || p >= l->n_parts) {
        ul_set_err(errstr, errstr_size, "partition %d outside 0..%d", (int)p, (int)l->n_parts - 1);
        goto done;
    }
    if (l->shards[p]) {
        rc = UL_OK;
        s = l->shards[p];
        goto done;
    }
    rc = UL_ERR_NOMEM;
    if ((s = shard_new(p, l->k, l->o.seed, l->o.init_std, l->o.retention)) == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        goto done;
    }
    rc = l->o.read_only ? store_shard_read(l->st, s, errstr, errstr_size)
                        : store_shard_load(l->st, s, errstr, errstr_size);
    if (rc != UL_OK) {
        shard_destroy(s);
        s = NULL;
        goto done;
    }
    l->shards[p] = s;
    l->n_owned++;
    /* Every home row as the replica holds it goes out at the first flush:
     * Redis has them as of rows_off, the replica replayed what followed. */
    for (int32_t i = 0; i < rowset_size(l->items); i++) {
        int64_t item = rowset_key(l->items, i);
        int32_t hi = home_of(l, item) == p ? shard_home_item(s, item) : 0;
        if (hi < 0) {
            ul_set_err(errstr, errstr_size, "out of memory");
            live_drop(l, p, NULL, 0);
            rc = UL_ERR_NOMEM;
            s = NULL;
            goto done;
        }
        if (home_of(l, item) == p)
            rowset_mark(s->home, SHARD_HOME_FLUSH, hi);
    }
done:
    if (rc_out)
        *rc_out = rc;
    return s;
}

/* Take s's undelivered exact changes back out of the replica. */
static void unapply_pending(live *l, shard *s) {
    int vdim = rows_vector_dim(l->k);
    for (int32_t i = 0; i < rowset_size(s->pend_stats); i++) {
        int32_t ei = rowset_find(l->items, rowset_key(s->pend_stats, i));
        rows_stats d;
        memcpy(&d, rowset_row_const(s->pend_stats, i), sizeof(d));
        if (ei >= 0)
            replica_stats_add(l, ei, -d.count, -d.sum);
    }
    for (int32_t i = 0; i < rowset_size(s->pend_rows); i++) {
        int64_t item = rowset_key(s->pend_rows, i);
        int32_t ei = rowset_find(l->items, item);
        if (ei >= 0)
            add_vec(rowset_row(l->items, ei), rowset_row_const(s->pend_rows, i), vdim, -1.0f);
        own_change(l, item, rowset_row_const(s->pend_rows, i), -1.0f); /* never sent */
    }
}

int live_drop(live *l, int32_t p, char *errstr, size_t errstr_size) {
    (void)errstr;
    (void)errstr_size;
    shard *s = live_shard(l, p);
    if (s == NULL)
        return UL_OK;
    unapply_pending(l, s);
    shard_destroy(s);
    l->shards[p] = NULL;
    l->n_owned--;
    return UL_OK;
}

int live_revoke(live *l, int32_t p, char *errstr, size_t errstr_size) {
    shard *s = live_shard(l, p);
    if (s == NULL)
        return UL_OK;
    s->flush_rows = 1;
    int rc = live_checkpoint(l, s, errstr, errstr_size);
    live_drop(l, p, NULL, 0);
    return rc;
}

void live_flush_due(live *l, int32_t p) {
    shard *s = live_shard(l, p);
    if (s)
        s->flush_rows = 1;
}

/* ---- events ------------------------------------------------------------- */

/* A new rating enters a row of n ratings (counting it) with 0 passes; the
 * row's training rate stays the mean of its ratings' rates:
 * decay^passes' = ((n-1) decay^passes + 1) / n. */
static void rewarm(const live *l, float *passes, float n) {
    float ln_d = l->ln_decay; /* decay^p = exp(p ln decay), ln decay computed once */
    if (n < 1.0f || *passes <= 0.0f || l->o.rewarm == 0 || ln_d == 0.0f)
        return;
    if (l->o.rewarm == 2) /* measurement only: the mean of the passes instead */
        *passes *= (n - 1.0f) / n;
    else
        *passes = logf(((n - 1.0f) * expf(*passes * ln_d) + 1.0f) / n) / ln_d;
}

/* The item's rating count as this worker's schedule sees it: the share of
 * its ratings in the owned partitions' histories (users are spread evenly
 * over partitions), so that with several workers each replica's passes
 * still grow by about one per epoch of every worker, not by its own share
 * of one. */
static float item_sched_n(const live *l, int64_t count) {
    return (float)count * (float)l->n_owned / (float)l->n_parts;
}

/* The step itself on urow/irow (rows of rows.h: their row state is the
 * schedule's), nu/ni the rows' rating counts (ni: item_sched_n) without the
 * event's. */
static float sgd_rows(live *l, float *urow, float *irow, float nu, float ni, float rating,
                      shard_class cls, int user_grows) {
    mf_model m = rows_pair_model(urow, irow, l->k, l->mean, l->rmin, l->rmax);
    float *su = urow + rows_state_index(l->k), *si = irow + rows_state_index(l->k);
    if (cls == SHARD_EVENT) { /* the online step; the new rating re-warms its rows */
        float err = mf_sgd_step(&m, 0, 0, rating, l->o.lr, l->o.reg, l->o.reg_bias);
        rewarm(l, &su[0], nu + (float)user_grows);
        rewarm(l, &si[0], ni + 1.0f);
        su[1] = nu + (float)user_grows;
        si[1] = ni + 1.0f;
        return err;
    }
    mf_row_state us = {su[0], nu}, is = {si[0], ni};
    float err = mf_sgd_step_rows(&m, 0, 0, rating, &l->sched, l->o.train_lr_min, &us, &is);
    su[0] = us.passes;
    si[0] = is.passes;
    su[1] = nu;
    si[1] = ni;
    return err;
}

/* live_sgd, also giving the item's replica index (*ei_out) to the caller. */
static float sgd_step(live *l, shard *s, int32_t uidx, int64_t item, float rating, shard_class cls,
                      int32_t *ei_out) {
    int vdim = rows_vector_dim(l->k);
    hist *h = shard_hist(s, uidx);
    int32_t ai = rowset_insert(l->acc[cls], item, NULL);
    int32_t oi = rowset_insert(l->own_out, item, NULL);
    int32_t ei = replica_item(l, item); /* after: an insertion may move rows */
    if (h == NULL || ai < 0 || oi < 0 || ei < 0)
        return NAN;
    float *irow = rowset_row(l->items, ei), *acc = rowset_row(l->acc[cls], ai);
    float *own = rowset_row(l->own_out, oi);
    float before[512]; /* the item's vector before the step; on the heap for a large k */
    float *old = vdim <= 512 ? before : malloc((size_t)vdim * sizeof(float));
    if (old == NULL)
        return NAN;
    memcpy(old, irow, (size_t)vdim * sizeof(float));
    float err =
        sgd_rows(l, rowset_row(s->users, uidx), irow, (float)h->n,
                 item_sched_n(l, replica_stats(l, ei).count), rating, cls, h->n < s->retention);
    for (int f = 0; f < vdim; f++) {
        acc[f] += irow[f] - old[f];
        own[f] += irow[f] - old[f];
    }
    if (old != before)
        free(old);
    shard_mark_user(s, uidx, cls);
    item_changed(l, ei, item, cls);
    *ei_out = ei;
    return err;
}

float live_sgd(live *l, shard *s, int32_t uidx, int64_t item, float rating, shard_class cls) {
    int32_t ei;
    return sgd_step(l, s, uidx, item, rating, cls, &ei);
}

/* live_correct_item on the item's replica index ei (ei < 0: out of memory
 * finding it). */
static int correct_at(live *l, shard *s, int32_t ei, int64_t item, const float *delta,
                      int64_t dcount, double dsum) {
    if (ei < 0 || (delta && own_change(l, item, delta, 0.0f) != UL_OK) ||
        shard_pend(s, item, dcount, dsum, delta) != 0)
        return UL_ERR_NOMEM;
    replica_stats_add(l, ei, dcount, dsum);
    if (delta) {
        own_change(l, item, delta, 1.0f); /* its row exists: cannot fail */
        add_vec(rowset_row(l->items, ei), delta, rows_vector_dim(l->k), 1.0f);
        item_changed(l, ei, item, SHARD_EVENT);
    }
    return UL_OK;
}

int live_correct_item(live *l, shard *s, int64_t item, const float *delta, int64_t dcount,
                      double dsum) {
    return correct_at(l, s, replica_item(l, item), item, delta, dcount, dsum);
}

int live_apply_rating(live *l, shard *s, int64_t user, int64_t item, float rating,
                      int64_t time_ms) {
    int32_t ui = shard_user(s, user), ei = -1;
    if (ui < 0 || isnan(sgd_step(l, s, ui, item, rating, SHARD_EVENT, &ei)) ||
        correct_at(l, s, ei, item, NULL, 1, (double)rating) != UL_OK)
        return UL_ERR_NOMEM;
    hist_entry e = {item, time_ms, rating};
    if (shard_hist_append(s, ui, &e) != 0)
        return UL_ERR_NOMEM;
    s->meta.applied++;
    return UL_OK;
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

/* ---- predictions -------------------------------------------------------- */

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

/* ---- publishing --------------------------------------------------------- */

void live_mark_partition(live *l, int32_t p) {
    shard *s = live_shard(l, p);
    if (s == NULL)
        return;
    for (int32_t i = 0; i < rowset_size(s->users); i++)
        rowset_mark(s->users, SHARD_USER_PUBLISH, i);
    for (int32_t i = 0; i < rowset_size(l->items); i++)
        if (home_of(l, rowset_key(l->items, i)) == p)
            rowset_mark_publish(l->items, i);
}

void live_mark_row(live *l, rows_kind kind, int64_t id) {
    if (kind == ROWS_ITEM) {
        int32_t e = rowset_find(l->items, id);
        if (e >= 0)
            rowset_mark_publish(l->items, e);
        return;
    }
    for (int32_t p = 0; p < l->n_parts; p++) {
        shard *s = l->shards[p];
        int32_t u = s ? rowset_find(s->users, id) : -1;
        if (u >= 0)
            rowset_mark(s->users, SHARD_USER_PUBLISH, u);
    }
}

size_t live_publish_marked(live *l, shard_class cls, live_row_fn fn, void *opaque) {
    int uset = cls == SHARD_TRAINING ? SHARD_USER_TRAIN_PUBLISH : SHARD_USER_PUBLISH;
    int iset = cls == SHARD_TRAINING ? ITEM_TRAIN_PUBLISH : ROWSET_PUBLISH;
    size_t n_total = 0, n;
    uint64_t top = 0;
    for (int32_t p = 0; p < l->n_parts; p++) {
        shard *s = l->shards[p];
        if (s == NULL)
            continue;
        if (s->meta.version > top)
            top = s->meta.version;
        const int32_t *idx = rowset_marked(s->users, uset, &n);
        for (size_t i = 0; i < n; i++)
            fn(opaque, ROWS_USER, rowset_key(s->users, idx[i]), rowset_row_const(s->users, idx[i]),
               s->meta.version);
        n_total += n;
        rowset_clear_marks(s->users, uset);
    }
    const int32_t *idx = rowset_marked(l->items, iset, &n);
    for (size_t i = 0; i < n; i++) {
        int64_t item = rowset_key(l->items, idx[i]);
        if (l->shards[home_of(l, item)] == NULL)
            continue; /* published by its home's owner */
        fn(opaque, ROWS_ITEM, item, rowset_row_const(l->items, idx[i]), top);
        n_total++;
    }
    rowset_clear_marks(l->items, iset);
    return n_total;
}

size_t live_marked(const live *l) {
    size_t total = 0, n;
    for (int32_t p = 0; p < l->n_parts; p++)
        if (l->shards[p]) {
            rowset_marked(l->shards[p]->users, SHARD_USER_PUBLISH, &n);
            total += n;
            rowset_marked(l->shards[p]->users, SHARD_USER_TRAIN_PUBLISH, &n);
            total += n;
        }
    rowset_marked(l->items, ROWSET_PUBLISH, &n);
    total += n;
    rowset_marked(l->items, ITEM_TRAIN_PUBLISH, &n);
    return total + n;
}
