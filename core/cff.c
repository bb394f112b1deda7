/* cff.c: the "cff" and "cff-paper" unlearning methods: rescue model m2,
 * then the CFF network fuses [m1 row; m2 row] into the unlearned rows; for
 * "cff", then fold-in's item step on the items of F.
 *
 * DESIGN (docs/unlearning.md has the measurements behind each choice)
 * - "cff-paper" follows Algorithm 1 literally where the paper is explicit:
 *   rows of d = K floats, output y = o / |o| (unit rows), every user and
 *   every item of F fused by its own network, trained on D_fl1 only (fused
 *   predictions on F close to the corrected values), biases kept from m1.
 * - "cff" is ours. Rows carry the bias as one more coordinate (d = K + 1,
 *   [p_u; b_u]), the output is residual (y = base row + o, last layer
 *   zero-initialised, so training starts at the base and keeps its scale;
 *   the base is m2's row with cff_base_m2, the default, else m1's: m2 is
 *   trained on the affected users' corrected data (rescue_retain), and the
 *   network, which at this budget learns about one correction for all
 *   users, then refines m2 rather than having to rediscover it), and
 *   the loss has three parts per fused row: F pairs pulled to their
 *   corrected value, the affected users' remaining ratings held at the
 *   observed rating, and a few random pairs held at m1's prediction
 *   (weight cff_anchor), plus a ridge term W_a (cff_reg |p|^2 +
 *   cff_reg_bias b^2) for a row whose pairs weigh W_a, the penalty m1's SGD
 *   is a fixed point of. The ridge is what bounds a row when the network
 *   sees only one or two users (a stream cycle); offline, hundreds of users
 *   share the network and it changes the figures by well under a point.
 *   By default only the affected users are fused (cff_fuse_items = 1 adds
 *   the items of F, anchored on random users). The items of F then take
 *   fold-in's m1-anchored Newton step (cff_item_step, default on; the
 *   users' change it needs comes from fold-in's exact re-solve, see
 *   item_step): without it the forgotten ratings' pull stays in every item
 *   bias, for every user.
 * - Training: Adam on mini-batches of rows (cff_batch) of one side at a
 *   time, alternating sides when both are fused; a row's loss sums over its
 *   pairs, so the network runs once per row and a step costs
 *   O(batch (C2 d H) + pairs K). The other side's rows are read from the
 *   latest fused outputs (block-coordinate training).
 * - Cost: m2 is O(epochs |F| K); the CFF is O(steps batch C2 d H): both
 *   grow with the forget requests, not the dataset. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cff.h"
#include "rescue.h"
#include "rng.h"
#include "ul_err.h"
#include "unlearn_method.h"

typedef struct cff_pair {
    int32_t other;       /* dense id on the other side */
    ptrdiff_t other_pos; /* its position among the other side's fused rows, or -1 */
    float target, weight;
} cff_pair;

typedef struct cff_side {
    int fused, is_item;
    size_t n;           /* rows */
    const int32_t *ids; /* dense ids, sorted */
    float *X;           /* n x 2d: m1 row, m2 row */
    float *Y;           /* n x d: current fused rows */
    size_t *start;      /* n + 1 */
    cff_pair *pairs;
    size_t n_pairs, cap;
    cff_net *net;
} cff_side;

typedef struct cff_run {
    mf_model *m;
    const unlearn_request *req;
    const unlearn_params *params;
    const unlearn_rows *rows;
    int k, d, bias_in_row, paper;
    cff_side side[2]; /* 0 users, 1 items */
    rescue_model m2;
    float *Xb, *Yb, *dY; /* batch scratch */
    float *Q1, *bi1;     /* cff_item_step: the new rows of F's items, or NULL */
} cff_run;

static const float *m1_row(const mf_model *m, int is_item, int32_t id) {
    return (is_item ? m->Q : m->P) + (size_t)id * (size_t)m->k;
}

static float m1_bias(const mf_model *m, int is_item, int32_t id) {
    return is_item ? m->item_bias[id] : m->user_bias[id];
}

static float m1_predict(const mf_model *m, int32_t u, int32_t i) {
    float s = m->global_mean + m->user_bias[u] + m->item_bias[i];
    const float *p = m1_row(m, 0, u), *q = m1_row(m, 1, i);
    for (int d = 0; d < m->k; d++)
        s += p[d] * q[d];
    return s;
}

static int side_add_pair(cff_side *s, int32_t other, float target, float weight) {
    if (s->n_pairs == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        cff_pair *p = realloc(s->pairs, cap * sizeof(*p));
        if (p == NULL)
            return UL_ERR_NOMEM;
        s->pairs = p;
        s->cap = cap;
    }
    s->pairs[s->n_pairs++] = (cff_pair){other, -1, target, weight};
    return UL_OK;
}

/* Pairs of one side, row by row (grouping F and R once beforehand). */
static int side_build_pairs(cff_run *run, cff_side *s) {
    const unlearn_request *req = run->req;
    const mf_model *m = run->m;
    unlearn_groups gf = {0}, gr = {0};
    int rc = UL_ERR_NOMEM;
    s->start = calloc(s->n + 1, sizeof(size_t));
    if (s->start == NULL ||
        unlearn_groups_build(req->forget, req->n_forget, s->is_item, run->rows, &gf) ||
        unlearn_groups_build(req->retain, req->n_retain, s->is_item, run->rows, &gr))
        goto done;
    rng g;
    rng_seed(&g, rng_derive(run->params->seed, 0xcff0 + (uint64_t)s->is_item));
    int32_t n_other = s->is_item ? m->n_users : m->n_items;
    for (size_t a = 0; a < s->n; a++) {
        s->start[a] = s->n_pairs;
        for (size_t j = gf.start[a]; j < gf.start[a + 1]; j++) {
            const ul_rating *r = &req->forget[gf.idx[j]];
            if (side_add_pair(s, s->is_item ? r->user : r->item,
                              unlearn_corrected_value(m, req, r->item),
                              run->paper ? 1.0f : run->params->cff_forget_weight))
                goto done;
        }
        if (run->paper)
            continue; /* the paper's literal objective: D_fl1 only */
        for (size_t j = gr.start[a]; j < gr.start[a + 1]; j++) {
            const ul_rating *r = &req->retain[gr.idx[j]];
            if (side_add_pair(s, s->is_item ? r->user : r->item, r->value, 1.0f))
                goto done;
        }
        for (int j = 0; j < run->params->cff_anchor_pairs && run->params->cff_anchor > 0; j++) {
            int32_t o = (int32_t)rng_below(&g, (uint64_t)n_other);
            int32_t u = s->is_item ? o : s->ids[a], i = s->is_item ? s->ids[a] : o;
            if (side_add_pair(s, o, m1_predict(m, u, i), run->params->cff_anchor))
                goto done;
        }
    }
    s->start[s->n] = s->n_pairs;
    rc = UL_OK;
done:
    unlearn_groups_free(&gf);
    unlearn_groups_free(&gr);
    return rc;
}

/* Inputs [m1 row; m2 row] and the starting fused rows (= m1's rows). */
static int side_setup(cff_run *run, cff_side *s, int is_item, int fused) {
    const unlearn_params *p = run->params;
    size_t d = (size_t)run->d, k = (size_t)run->k;
    s->is_item = is_item;
    s->fused = fused;
    s->ids = is_item ? run->rows->items : run->rows->users;
    s->n = is_item ? run->rows->n_items : run->rows->n_users;
    if (!fused)
        return UL_OK;
    s->X = malloc((s->n * 2 * d + 1) * sizeof(float));
    s->Y = malloc((s->n * d + 1) * sizeof(float));
    s->net = cff_net_new(run->d, p->cff_channels, p->cff_channels2, p->cff_hidden,
                         run->paper ? CFF_OUT_NORMALISE : CFF_OUT_RESIDUAL, p->cff_batch,
                         rng_derive(p->seed, 0xcf5 + (uint64_t)is_item));
    if (!s->X || !s->Y || !s->net)
        return UL_ERR_NOMEM;
    const float *m2rows = is_item ? run->m2.Q : run->m2.P;
    const float *m2bias = is_item ? run->m2.item_bias : run->m2.user_bias;
    for (size_t a = 0; a < s->n; a++) {
        float *x = s->X + a * 2 * d;
        size_t h1 = p->cff_base_m2 && !run->paper ? d : 0, h2 = d - h1; /* m1's half, m2's */
        memcpy(x + h1, m1_row(run->m, is_item, s->ids[a]), k * sizeof(float));
        memcpy(x + h2, m2rows + a * k, k * sizeof(float));
        if (run->bias_in_row) {
            x[h1 + k] = m1_bias(run->m, is_item, s->ids[a]);
            x[h2 + k] = m2bias[a];
        }
        memcpy(s->Y + a * d, x, d * sizeof(float));
    }
    return side_build_pairs(run, s);
}

static void link_pairs(const unlearn_rows *rows, cff_side *s, const cff_side *other) {
    for (size_t j = 0; j < s->n_pairs; j++)
        s->pairs[j].other_pos =
            other->fused ? unlearn_pos(rows, other->is_item, s->pairs[j].other) : -1;
}

/* Loss of one fused row y over its pairs; adds dL/dy * scale into g. */
static double row_loss(const cff_run *run, const cff_side *s, size_t a, const float *y, float scale,
                       float *g) {
    const mf_model *m = run->m;
    const cff_side *o = &run->side[!s->is_item];
    int k = run->k, d = run->d;
    double loss = 0;
    for (size_t j = s->start[a]; j < s->start[a + 1]; j++) {
        const cff_pair *pr = &s->pairs[j];
        const float *z = pr->other_pos >= 0 ? o->Y + (size_t)pr->other_pos * (size_t)d
                                            : m1_row(m, !s->is_item, pr->other);
        float pred = m->global_mean;
        if (run->bias_in_row)
            pred += y[k] + (pr->other_pos >= 0 ? z[k] : m1_bias(m, !s->is_item, pr->other));
        else
            pred += m1_bias(m, s->is_item, s->ids[a]) + m1_bias(m, !s->is_item, pr->other);
        for (int t = 0; t < k; t++)
            pred += y[t] * z[t];
        float e = pred - pr->target;
        loss += (double)pr->weight * e * e;
        float ge = 2.0f * pr->weight * e * scale;
        for (int t = 0; t < k; t++)
            g[t] += ge * z[t];
        if (run->bias_in_row)
            g[k] += ge;
    }
    return loss;
}

static float rows_weight(const cff_side *s, const size_t *batch, int n) {
    float w = 0;
    for (int b = 0; b < n; b++)
        for (size_t j = s->start[batch[b]]; j < s->start[batch[b] + 1]; j++)
            w += s->pairs[j].weight;
    return w;
}

/* The ridge term of "cff": W_a (reg |p|^2 + reg_bias b^2) for a row whose
 * pairs weigh W_a in total, the penalty m1's SGD is a fixed point of (as in
 * fold-in). Without it nothing bounds a row: a network trained on one or two
 * users (a stream cycle) fits their remaining ratings with rows many times
 * m1's norm. Adds its gradient times scale into g. */
static void row_ridge(const cff_run *run, const cff_side *s, size_t a, const float *y, float scale,
                      float *g) {
    if (run->paper)
        return;
    float w = 0;
    for (size_t j = s->start[a]; j < s->start[a + 1]; j++)
        w += s->pairs[j].weight;
    float gp = 2.0f * w * run->params->cff_reg * scale;
    for (int t = 0; t < run->k; t++)
        g[t] += gp * y[t];
    if (run->bias_in_row)
        g[run->k] += 2.0f * w * run->params->cff_reg_bias * scale * y[run->k];
}

static void train_step(cff_run *run, cff_side *s, const size_t *batch, int n) {
    size_t d = (size_t)run->d;
    for (int b = 0; b < n; b++)
        memcpy(run->Xb + (size_t)b * 2 * d, s->X + batch[b] * 2 * d, 2 * d * sizeof(float));
    cff_net_forward(s->net, run->Xb, n, run->Yb);
    float w = rows_weight(s, batch, n);
    float scale = w > 0 ? 1.0f / w : 0.0f;
    memset(run->dY, 0, (size_t)n * d * sizeof(float));
    for (int b = 0; b < n; b++) {
        row_loss(run, s, batch[b], run->Yb + (size_t)b * d, scale, run->dY + (size_t)b * d);
        row_ridge(run, s, batch[b], run->Yb + (size_t)b * d, scale, run->dY + (size_t)b * d);
    }
    cff_net_backward(s->net, run->Xb, n, run->dY);
    cff_net_adam_step(s->net, run->params->cff_lr);
    for (int b = 0; b < n; b++)
        memcpy(s->Y + batch[b] * d, run->Yb + (size_t)b * d, d * sizeof(float));
}

/* Forward every row of a side into s->Y. */
static void side_refresh(cff_run *run, cff_side *s) {
    size_t d = (size_t)run->d, B = (size_t)run->params->cff_batch;
    for (size_t a0 = 0; a0 < s->n; a0 += B) {
        size_t n = s->n - a0 < B ? s->n - a0 : B;
        cff_net_forward(s->net, s->X + a0 * 2 * d, (int)n, s->Y + a0 * d);
    }
}

static int train(cff_run *run) {
    const unlearn_params *p = run->params;
    size_t *order[2] = {malloc((run->side[0].n + 1) * sizeof(size_t)),
                        malloc((run->side[1].n + 1) * sizeof(size_t))};
    size_t next[2] = {0, 0};
    if (!order[0] || !order[1]) {
        free(order[0]);
        free(order[1]);
        return UL_ERR_NOMEM;
    }
    rng g;
    rng_seed(&g, rng_derive(p->seed, 0xba7c));
    for (int t = 0; t < 2; t++) {
        for (size_t a = 0; a < run->side[t].n; a++)
            order[t][a] = a;
        next[t] = run->side[t].n; /* shuffle on first use */
        if (run->side[t].fused)
            side_refresh(run, &run->side[t]);
    }
    int turn = run->side[0].fused ? 0 : 1;
    for (int step = 0; step < p->cff_steps; step++) {
        cff_side *s = &run->side[turn];
        if (s->n > 0) {
            if (next[turn] >= s->n) {
                rng_shuffle(&g, order[turn], s->n, sizeof(size_t));
                next[turn] = 0;
            }
            size_t n =
                s->n - next[turn] < (size_t)p->cff_batch ? s->n - next[turn] : (size_t)p->cff_batch;
            train_step(run, s, order[turn] + next[turn], (int)n);
            next[turn] += n;
        }
        if (run->side[0].fused && run->side[1].fused)
            turn = !turn;
    }
    for (int t = 0; t < 2; t++)
        if (run->side[t].fused)
            side_refresh(run, &run->side[t]);
    free(order[0]);
    free(order[1]);
    return UL_OK;
}

/* The items of F: fold-in's m1-anchored Newton step (cff_item_step), into
 * run->Q1 / run->bi1. The step needs how the affected users' rows changed:
 * by default (cff_item_users = 0) the fused rows, which the model will
 * hold; with 1, fold-in's exact re-solve of the users, which makes the item
 * rows fold-in's exactly. The fused rows underfit the users' remaining
 * ratings (the D_fl1 term pulls them below) and the items absorb part of
 * that, so with 0 F's item scores fall less one-shot (on ML-1M at 20% users
 * they even rose a little above M1's); but with 1 the next request's step
 * is anchored at items fitted to users the model does not hold, and over
 * 100 sequential requests RMSE drifted by +0.018 (ML-1M 20/50) against
 * +0.0002 with 0. docs/unlearning.md has the figures. */
static int item_step(cff_run *run) {
    const unlearn_rows *rows = run->rows;
    size_t k = (size_t)run->k, d = (size_t)run->d;
    run->Q1 = malloc((rows->n_items * k + 1) * sizeof(float));
    run->bi1 = malloc((rows->n_items + 1) * sizeof(float));
    if (run->Q1 == NULL || run->bi1 == NULL)
        return UL_ERR_NOMEM;
    if (run->params->cff_item_users == 1)
        return foldin_item_step(run->m, run->req, run->params, rows, NULL, NULL, run->Q1, run->bi1);
    float *P1 = malloc((rows->n_users * k + 1) * sizeof(float));
    float *bu1 = malloc((rows->n_users + 1) * sizeof(float));
    int rc = UL_ERR_NOMEM;
    if (P1 != NULL && bu1 != NULL) {
        const cff_side *s = &run->side[0];
        for (size_t a = 0; a < rows->n_users; a++) {
            memcpy(P1 + a * k, s->Y + a * d, k * sizeof(float));
            bu1[a] = s->Y[a * d + k];
        }
        rc = foldin_item_step(run->m, run->req, run->params, rows, P1, bu1, run->Q1, run->bi1);
    }
    free(P1);
    free(bu1);
    return rc;
}

static void commit(cff_run *run) {
    mf_model *m = run->m;
    size_t k = (size_t)run->k, d = (size_t)run->d;
    for (int t = 0; t < 2; t++) {
        const cff_side *s = &run->side[t];
        for (size_t a = 0; s->fused && a < s->n; a++) {
            const float *y = s->Y + a * d;
            memcpy((t ? m->Q : m->P) + (size_t)s->ids[a] * k, y, k * sizeof(float));
            if (run->bias_in_row)
                (t ? m->item_bias : m->user_bias)[s->ids[a]] = y[k];
        }
    }
    for (size_t c = 0; run->Q1 != NULL && c < run->rows->n_items; c++) {
        int32_t i = run->rows->items[c];
        memcpy(m->Q + (size_t)i * k, run->Q1 + c * k, k * sizeof(float));
        m->item_bias[i] = run->bi1[c];
    }
}

static void run_free(cff_run *run) {
    for (int t = 0; t < 2; t++) {
        cff_side *s = &run->side[t];
        free(s->X);
        free(s->Y);
        free(s->start);
        free(s->pairs);
        cff_net_destroy(s->net);
    }
    rescue_free(&run->m2);
    free(run->Q1);
    free(run->bi1);
    free(run->Xb);
    free(run->Yb);
    free(run->dY);
}

static int cff_run_method(mf_model *m, const unlearn_request *req, const unlearn_params *params,
                          const unlearn_rows *rows, int paper, int *users_changed,
                          int *items_changed, char *errstr, size_t errstr_size) {
    cff_run run = {.m = m, .req = req, .params = params, .rows = rows, .k = m->k, .paper = paper};
    run.bias_in_row = !paper;
    run.d = m->k + run.bias_in_row;
    int fuse_items = paper || params->cff_fuse_items;
    unlearn_params m2_params = *params;
    if (paper)
        m2_params.rescue_retain = 0; /* the paper's m2 learns D_fl1 only */
    int rc = rescue_train(m, req, rows, &m2_params, &run.m2, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    size_t B = (size_t)params->cff_batch, d = (size_t)run.d;
    run.Xb = malloc(B * 2 * d * sizeof(float));
    run.Yb = malloc(B * d * sizeof(float));
    run.dY = malloc(B * d * sizeof(float));
    rc = UL_ERR_NOMEM;
    if (!run.Xb || !run.Yb || !run.dY || side_setup(&run, &run.side[0], 0, 1) ||
        side_setup(&run, &run.side[1], 1, fuse_items))
        goto fail;
    link_pairs(rows, &run.side[0], &run.side[1]);
    if (run.side[1].fused)
        link_pairs(rows, &run.side[1], &run.side[0]);
    if (train(&run) != UL_OK)
        goto fail;
    int step_items = !paper && !fuse_items && params->cff_item_step && req->item_count != NULL;
    if (step_items && (rc = item_step(&run)) != UL_OK) {
        if (rc != UL_ERR_NOMEM) {
            ul_set_err(errstr, errstr_size, "cff: the item step failed (non-finite model rows?)");
            run_free(&run);
            return rc;
        }
        goto fail;
    }
    commit(&run);
    *users_changed = 1;
    *items_changed = fuse_items || step_items;
    run_free(&run);
    return UL_OK;
fail:
    ul_set_err(errstr, errstr_size, "%s: out of memory", paper ? "cff-paper" : "cff");
    run_free(&run);
    return rc;
}

int cff_apply(mf_model *m, const unlearn_request *req, const unlearn_params *params,
              const unlearn_rows *rows, int *users_changed, int *items_changed, char *errstr,
              size_t errstr_size) {
    return cff_run_method(m, req, params, rows, 0, users_changed, items_changed, errstr,
                          errstr_size);
}

int cff_paper_apply(mf_model *m, const unlearn_request *req, const unlearn_params *params,
                    const unlearn_rows *rows, int *users_changed, int *items_changed, char *errstr,
                    size_t errstr_size) {
    return cff_run_method(m, req, params, rows, 1, users_changed, items_changed, errstr,
                          errstr_size);
}
