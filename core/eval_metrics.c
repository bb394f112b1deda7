/* eval_metrics.c: the metrics of one method's ensemble (RMSE, forget gap,
 * top-K exposure, item bias and score, the membership audit, the latent
 * distances) and the sequential runs (F in batches, measured after each).
 *
 * DESIGN: every metric is computed right after its model is built, so at
 * most the cached models and one method's models are alive at a time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_int.h"
#include "mia.h"
#include "rng.h"
#include "ul_err.h"

#define EVAL_SCORE_BATCH 256         /* affected users scored per sgemm batch, at most */
#define EVAL_SCORE_FLOATS (4u << 20) /* and at most this many scores per buffer (16 MiB) */

typedef float (*predict_fn)(const mf_model *m, int32_t user, int32_t item);

/* The routed model's prediction, or the mean of the models'. */
static float ens_mean(const eval_ensemble *e, predict_fn predict, int32_t user, int32_t item) {
    if (e->route != NULL)
        return predict(e->models[e->route[user]], user, item);
    double sum = 0;
    for (int j = 0; j < e->n; j++)
        sum += predict(e->models[j], user, item);
    return (float)(sum / e->n);
}

static float ens_predict(const eval_ensemble *e, int32_t user, int32_t item) {
    return ens_mean(e, mf_predict, user, item);
}

/* ---- metrics ----------------------------------------------------------- */

static void rmse_split(const eval_ctx *c, const eval_ensemble *e, eval_result *r) {
    double se[2] = {0, 0};
    size_t cnt[2] = {0, 0};
    for (size_t j = 0; j < c->test.n; j++) {
        const ul_rating *t = &c->test.v[j];
        double err = t->value - ens_predict(e, t->user, t->item);
        int a = c->fs.affected[t->user] ? 1 : 0;
        se[a] += err * err;
        cnt[a]++;
    }
    size_t n = cnt[0] + cnt[1];
    r->rmse_test = n ? sqrt((se[0] + se[1]) / (double)n) : NAN;
    r->rmse_affected = cnt[1] ? sqrt(se[1] / (double)cnt[1]) : NAN;
    r->rmse_unaffected = cnt[0] ? sqrt(se[0] / (double)cnt[0]) : NAN;
}

void eval_forget_metrics(const eval_ctx *c, const eval_ensemble *e, eval_result *r) {
    double gap = 0, sum = 0;
    for (size_t j = 0; j < c->forget.n; j++) {
        const ul_rating *f = &c->forget.v[j];
        float p = ens_predict(e, f->user, f->item);
        gap += fabs((double)p - c->ref_pred[j]);
        sum += p;
    }
    double n = (double)c->forget.n;
    r->forget_gap = c->forget.n ? gap / n : NAN;
    r->mean_pred_forget = c->forget.n ? sum / n : NAN;
}

/* The raw (unclipped) score of the ensemble, as exposure ranks by: the
 * attacker's view of a pair. */
static float ens_raw(const eval_ensemble *e, int32_t user, int32_t item) {
    return ens_mean(e, mf_predict_raw, user, item);
}

static double ens_item_bias(const eval_ensemble *e, int32_t user, int32_t item) {
    if (e->route != NULL)
        return e->models[e->route[user]]->item_bias[item];
    double sum = 0;
    for (int j = 0; j < e->n; j++)
        sum += e->models[j]->item_bias[item];
    return sum / e->n;
}

/* The F-weighted mean over F's items of each item's mean raw score over the
 * unaffected users, mu + mean(b_u) + b_i + mean(p_u).q_i: what F left in
 * the items for the users who asked for nothing, free of the bias gauge
 * (b_i + c, b_u - c predict the same). */
static double model_item_score(const eval_ctx *c, const mf_model *m, double *pmean) {
    size_t k = (size_t)m->k, n = 0;
    double bu = 0;
    memset(pmean, 0, k * sizeof(double));
    for (int32_t u = 0; u < m->n_users; u++) {
        if (c->fs.affected[u])
            continue;
        n++;
        bu += m->user_bias[u];
        for (size_t d = 0; d < k; d++)
            pmean[d] += m->P[(size_t)u * k + d];
    }
    if (n == 0)
        return NAN;
    for (size_t d = 0; d < k; d++)
        pmean[d] /= (double)n;
    double base = m->global_mean + bu / (double)n, sum = 0;
    for (size_t j = 0; j < c->forget.n; j++) {
        int32_t i = c->forget.v[j].item;
        double s = base + m->item_bias[i];
        for (size_t d = 0; d < k; d++)
            s += pmean[d] * m->Q[(size_t)i * k + d];
        sum += s;
    }
    return c->forget.n ? sum / (double)c->forget.n : NAN;
}

static int item_score(const eval_ctx *c, const eval_ensemble *e, double *out) {
    double *pmean = malloc(sizeof(double) * (size_t)e->models[0]->k), sum = 0;
    if (pmean == NULL)
        return UL_ERR_NOMEM;
    for (int j = 0; j < e->n; j++) /* routed or averaged: every shard serves its users */
        sum += model_item_score(c, e->models[j], pmean);
    free(pmean);
    *out = sum / e->n;
    return UL_OK;
}

/* The membership-inference audit (docs/eval.md): members are F's pairs,
 * non-members the affected users' test pairs, compared within each user
 * (one threshold per user); the loss-threshold attack scores a pair by the
 * raw prediction, the calibrated one by that minus retrain2's. Also the
 * F-weighted mean item bias. */
static int audit_metrics(const eval_ctx *c, const eval_ensemble *e, eval_result *r) {
    double bias = 0;
    for (size_t j = 0; j < c->forget.n; j++) {
        const ul_rating *f = &c->forget.v[j];
        c->score_f[j] = ens_raw(e, f->user, f->item);
        bias += ens_item_bias(e, f->user, f->item);
    }
    for (size_t j = 0; j < c->nonmember.n; j++)
        c->score_n[j] = ens_raw(e, c->nonmember.v[j].user, c->nonmember.v[j].item);
    r->item_bias_forget = c->forget.n ? bias / (double)c->forget.n : NAN;
    int rc = item_score(c, e, &r->item_score_forget);
    if (rc == UL_OK)
        rc = mia_auc(c->score_f, c->user_f, c->forget.n, c->score_n, c->user_n, c->nonmember.n,
                     &r->mia_auc);
    for (size_t j = 0; j < c->forget.n; j++)
        c->score_f[j] -= c->ref_raw_f[j];
    for (size_t j = 0; j < c->nonmember.n; j++)
        c->score_n[j] -= c->ref_raw_n[j];
    if (rc == UL_OK)
        rc = mia_auc(c->score_f, c->user_f, c->forget.n, c->score_n, c->user_n, c->nonmember.n,
                     &r->mia_auc_ref);
    return rc;
}

/* Per affected user (index a into fs.users), a CSR list of items. */
typedef struct user_items {
    size_t *start; /* n_users_affected + 1 */
    int32_t *items;
} user_items;

static void user_items_free(user_items *ui) {
    free(ui->start);
    free(ui->items);
}

static int user_items_build(const ul_ratings *rs, const int32_t *slot, size_t n_slots,
                            user_items *ui) {
    ui->start = calloc(n_slots + 1, sizeof(size_t));
    ui->items = malloc(sizeof(int32_t) * (rs->n ? rs->n : 1));
    size_t *fill = malloc(sizeof(size_t) * (n_slots + 1));
    if (ui->start == NULL || ui->items == NULL || fill == NULL) {
        free(fill);
        return UL_ERR_NOMEM;
    }
    for (size_t j = 0; j < rs->n; j++)
        ui->start[slot[rs->v[j].user] + 1]++;
    for (size_t a = 0; a < n_slots; a++)
        ui->start[a + 1] += ui->start[a];
    memcpy(fill, ui->start, sizeof(size_t) * (n_slots + 1));
    for (size_t j = 0; j < rs->n; j++)
        ui->items[fill[slot[rs->v[j].user]]++] = rs->v[j].item;
    free(fill);
    return UL_OK;
}

/* Scores of the ensemble for users[0..nb) into out (nb x n_items): the
 * mean of the models' unclipped scores (or the routed model's). */
static int ens_scores(const eval_ensemble *e, const int32_t *users, size_t nb, int32_t n_items,
                      float *tmp, float *out) {
    size_t row = (size_t)n_items;
    memset(out, 0, sizeof(float) * nb * row);
    for (int m = 0; m < e->n; m++) {
        if (mf_score_users(e->models[m], users, nb, tmp) != 0)
            return UL_ERR_ARG;
        for (size_t a = 0; a < nb; a++) {
            if (e->route != NULL && e->route[users[a]] != m)
                continue;
            float w = e->route != NULL ? 1.0f : 1.0f / (float)e->n;
            for (size_t i = 0; i < row; i++)
                out[a * row + i] += w * tmp[a * row + i];
        }
    }
    return UL_OK;
}

/* Mark in `in_top` the top_k items of `scores`, skipping excluded items;
 * ties go to the lower item id. `best` has room for top_k ids. Returns how
 * many were marked (fewer than top_k when few items are left). */
static int mark_top(const float *scores, int32_t n_items, const uint8_t *exclude, int top_k,
                    int32_t *best, uint8_t *in_top) {
    int n = 0;
    for (int32_t i = 0; i < n_items; i++) {
        if (exclude[i])
            continue;
        if (n == top_k && scores[i] <= scores[best[n - 1]])
            continue;
        int pos = n < top_k ? n++ : top_k - 1;
        while (pos > 0 && scores[best[pos - 1]] < scores[i]) {
            best[pos] = best[pos - 1];
            pos--;
        }
        best[pos] = i;
    }
    for (int j = 0; j < n; j++)
        in_top[best[j]] = 1;
    return n;
}

typedef struct exposure_buf {
    size_t batch;  /* users per sgemm batch */
    int32_t *slot; /* dense user -> index into fs.users, or -1 */
    user_items keep, gone;
    float *tmp, *scores;
    uint8_t *exclude, *in_top;
    int32_t *best;
} exposure_buf;

static void exposure_buf_free(exposure_buf *b) {
    free(b->slot);
    user_items_free(&b->keep);
    user_items_free(&b->gone);
    free(b->tmp);
    free(b->scores);
    free(b->exclude);
    free(b->in_top);
    free(b->best);
}

static int exposure_buf_init(const eval_ctx *c, exposure_buf *b) {
    size_t n_items = (size_t)c->d->n_items, batch = EVAL_SCORE_FLOATS / n_items;
    if (batch > EVAL_SCORE_BATCH)
        batch = EVAL_SCORE_BATCH;
    if (batch < 1)
        batch = 1;
    memset(b, 0, sizeof(*b));
    b->batch = batch;
    b->slot = malloc(sizeof(int32_t) * (size_t)c->d->n_users);
    b->tmp = malloc(sizeof(float) * batch * n_items);
    b->scores = malloc(sizeof(float) * batch * n_items);
    b->exclude = calloc(n_items, 1);
    b->in_top = calloc(n_items, 1);
    b->best = malloc(sizeof(int32_t) * (size_t)c->o->top_k);
    if (!b->slot || !b->tmp || !b->scores || !b->exclude || !b->in_top || !b->best)
        return UL_ERR_NOMEM;
    for (int32_t u = 0; u < c->d->n_users; u++)
        b->slot[u] = -1;
    for (size_t a = 0; a < c->fs.n_users; a++)
        b->slot[c->fs.users[a]] = (int32_t)a;
    if (user_items_build(&c->retain, b->slot, c->fs.n_users, &b->keep) != UL_OK ||
        user_items_build(&c->forget, b->slot, c->fs.n_users, &b->gone) != UL_OK)
        return UL_ERR_NOMEM;
    return UL_OK;
}

/* Hits of user slot `a` (scores in `row`): F's items in its top-K. */
static size_t user_hits(const eval_ctx *c, exposure_buf *b, size_t a, const float *row) {
    const user_items *keep = &b->keep, *gone = &b->gone;
    for (size_t j = keep->start[a]; j < keep->start[a + 1]; j++)
        b->exclude[keep->items[j]] = 1;
    int n_top = mark_top(row, c->d->n_items, b->exclude, c->o->top_k, b->best, b->in_top);
    size_t hits = 0;
    for (size_t j = gone->start[a]; j < gone->start[a + 1]; j++)
        hits += b->in_top[gone->items[j]];
    for (size_t j = keep->start[a]; j < keep->start[a + 1]; j++)
        b->exclude[keep->items[j]] = 0;
    for (int j = 0; j < n_top; j++)
        b->in_top[b->best[j]] = 0;
    return hits;
}

static int topk_exposure(const eval_ctx *c, const eval_ensemble *e, double *out) {
    exposure_buf b;
    int rc = exposure_buf_init(c, &b);
    size_t hits = 0, row = (size_t)c->d->n_items;
    for (size_t a0 = 0; rc == UL_OK && a0 < c->fs.n_users; a0 += b.batch) {
        size_t nb = c->fs.n_users - a0;
        if (nb > b.batch)
            nb = b.batch;
        rc = ens_scores(e, c->fs.users + a0, nb, c->d->n_items, b.tmp, b.scores);
        for (size_t a = 0; rc == UL_OK && a < nb; a++)
            hits += user_hits(c, &b, a0 + a, b.scores + a * row);
    }
    exposure_buf_free(&b);
    *out = c->forget.n ? (double)hits / (double)c->forget.n : NAN;
    return rc;
}

static double frob_diff(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t j = 0; j < n; j++) {
        double d = (double)a[j] - b[j];
        s += d * d;
    }
    return sqrt(s);
}

static int latent_distances(eval_ctx *c, const eval_ensemble *e, eval_result *r, char *errstr,
                            size_t errstr_size) {
    r->l1_P = r->l2_P = r->l1_Q = r->l2_Q = NAN;
    if (e->n != 1 || e->route != NULL)
        return UL_OK;
    int rc = eval_get_m1(c, errstr, errstr_size);
    if (rc == UL_OK)
        rc = eval_get_orig(c, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    const mf_model *m = e->models[0];
    size_t np = (size_t)m->n_users * (size_t)m->k, nq = (size_t)m->n_items * (size_t)m->k;
    r->l1_P = frob_diff(c->m1->P, m->P, np);
    r->l2_P = frob_diff(c->orig->P, m->P, np);
    r->l1_Q = frob_diff(c->m1->Q, m->Q, nq);
    r->l2_Q = frob_diff(c->orig->Q, m->Q, nq);
    return UL_OK;
}

/* The message for a failed audit: a non-finite score means the model did. */
static int audit_failed(int rc, const char *name, char *errstr, size_t errstr_size) {
    if (rc == UL_ERR_ARG)
        ul_set_err(errstr, errstr_size, "%s: the model predicts non-finite scores (it diverged)",
                   name);
    else if (rc != UL_OK)
        ul_set_err(errstr, errstr_size, "out of memory in the membership audit");
    return rc;
}

int eval_measure(eval_ctx *c, const char *name, const eval_ensemble *e, eval_result *r,
                 char *errstr, size_t errstr_size) {
    eval_stage_begin(c, name, "scoring", 0);
    snprintf(r->method, sizeof(r->method), "%s", name);
    r->n_models = e->n;
    r->train_seconds = e->train_seconds;
    r->unlearn_seconds = e->unlearn_seconds;
    r->seconds = e->train_seconds + (isnan(e->unlearn_seconds) ? 0 : e->unlearn_seconds);
    r->shards_touched = e->shards_touched;
    rmse_split(c, e, r);
    eval_forget_metrics(c, e, r);
    if (topk_exposure(c, e, &r->topk_exposure) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory scoring the affected users");
        return UL_ERR_NOMEM;
    }
    int rc = audit_failed(audit_metrics(c, e, r), name, errstr, errstr_size);
    return rc == UL_OK ? latent_distances(c, e, r, errstr, errstr_size) : rc;
}

/* ---- sequential unlearning -------------------------------------------- */

typedef struct seq_run {
    eval_ctx *c;
    const char *name;
    eval_seq_point *trace;
    int failed; /* a batch's audit failed: its code */
} seq_run;

static int on_seq_batch(void *ctx, int batch, int batches, const mf_model *m) {
    seq_run *sr = ctx;
    eval_ensemble e;
    eval_result r;
    memset(&e, 0, sizeof(e));
    eval_ens_borrow(&e, m, 0, 0);
    rmse_split(sr->c, &e, &r);
    eval_forget_metrics(sr->c, &e, &r);
    int rc = audit_metrics(sr->c, &e, &r);
    if (rc != UL_OK) {
        sr->failed = rc;
        return 1;
    }
    sr->trace[batch] = (eval_seq_point){r.rmse_test, r.forget_gap, r.mia_auc, r.item_bias_forget,
                                        r.item_score_forget};
    return eval_report(sr->c, batch + 1, batches);
}

/* `name` (a core/unlearn.h method) over F in opts.sequential batches, one
 * after another from M1; the final model measured like any other, with the
 * per-batch trace. */
int eval_run_sequential(eval_ctx *c, const char *name, eval_result *r, char *errstr,
                        size_t errstr_size) {
    int rc, n = c->o->sequential;
    seq_run sr = {c, name, calloc((size_t)n, sizeof(eval_seq_point)), 0};
    mf_model *m = eval_clone_m1(c, name, &rc, errstr, errstr_size);
    if (m == NULL || sr.trace == NULL) {
        mf_model_destroy(m);
        free(sr.trace);
        if (m == NULL)
            return rc;
        ul_set_err(errstr, errstr_size, "out of memory for the sequential trace");
        return UL_ERR_NOMEM;
    }
    unlearn_params up;
    eval_cell_unlearn_params(c, &up);
    seq_opts so = {n, c->o->sequential_by, rng_derive(c->o->seed, 4)};
    double seconds = 0;
    eval_stage_begin(c, name, "sequential unlearning", 0.2 + 0.01 * n);
    rc = seq_unlearn(name, m, c->faulty.v, c->faulty.n, c->d->n_items, &c->fs, &so, &up,
                     on_seq_batch, &sr, &seconds, errstr, errstr_size);
    eval_stage_end(c);
    if (sr.failed) {
        rc = audit_failed(sr.failed, name, errstr, errstr_size);
    } else if (rc == UL_ERR_ABORTED) {
        rc = eval_fail_model(c, errstr, errstr_size);
    }
    eval_ensemble e;
    memset(&e, 0, sizeof(e));
    eval_ens_own(&e, m, c->m1_seconds, seconds);
    if (rc == UL_OK)
        rc = eval_measure(c, name, &e, r, errstr, errstr_size);
    eval_ens_release(&e);
    if (rc != UL_OK) {
        free(sr.trace);
        return rc;
    }
    r->sequential = n;
    r->trace = sr.trace;
    r->n_trace = (size_t)n;
    return UL_OK;
}
