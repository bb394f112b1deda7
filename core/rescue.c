/* rescue.c: training the rescue model m2 (see rescue.h).
 *
 * DESIGN
 * - m2 covers only the rows F touches, so its cost is O(epochs |F| K), never
 *   the dataset's size.
 * - Initialised from m1's rows (not at random): m2 then starts from what the
 *   user and item were and moves only as far as D_fl1 asks, which keeps
 *   m1's and m2's rows in the same latent basis. That is what lets a fusion
 *   network that sees [m1 row; m2 row] read the difference as "the
 *   forgotten pull". A random init would put m2 in an unrelated basis.
 * - Targets: req->item_mean[i] (the worker/eval pass the item's mean rating
 *   outside F), or mu + b_i of m1 when that is NULL.
 * - rescue_retain: the affected users' remaining ratings join D_fl1, and
 *   every item row is held at m1's (only the users learn). m2's user rows
 *   are then fitted to the same item rows the unlearned model predicts
 *   with; letting F's items move too (towards a few hundred users) made the
 *   users fit items the model never uses (measured: 28.6% vs 27.6% of M1's
 *   forget gap, ML-1M validation). */
#include "rescue.h"

#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "ul_err.h"

void rescue_free(rescue_model *m2) {
    if (m2 == NULL)
        return;
    free(m2->P);
    free(m2->user_bias);
    free(m2->Q);
    free(m2->item_bias);
    memset(m2, 0, sizeof(*m2));
}

typedef struct rescue_pair {
    size_t a;    /* position of the user */
    ptrdiff_t c; /* position of the item, or -1: an item outside F, m1's row held fixed */
    int32_t item;
    float target;
} rescue_pair;

static void rescue_copy_rows(const mf_model *m1, const unlearn_rows *rows, rescue_model *m2) {
    size_t k = (size_t)m1->k;
    for (size_t a = 0; a < rows->n_users; a++) {
        memcpy(m2->P + a * k, m1->P + (size_t)rows->users[a] * k, k * sizeof(float));
        m2->user_bias[a] = m1->user_bias[rows->users[a]];
    }
    for (size_t c = 0; c < rows->n_items; c++) {
        memcpy(m2->Q + c * k, m1->Q + (size_t)rows->items[c] * k, k * sizeof(float));
        m2->item_bias[c] = m1->item_bias[rows->items[c]];
    }
}

static void rescue_sgd(const mf_model *m1, rescue_model *m2, const rescue_pair *pr, float lr,
                       float reg) {
    int k = m2->k, fixed = pr->c < 0;
    float *p = m2->P + pr->a * (size_t)k;
    float *q = fixed ? NULL : m2->Q + (size_t)pr->c * (size_t)k;
    const float *qr = fixed ? m1->Q + (size_t)pr->item * (size_t)k : q;
    float bi = fixed ? m1->item_bias[pr->item] : m2->item_bias[pr->c];
    float pred = m1->global_mean + m2->user_bias[pr->a] + bi;
    for (int d = 0; d < k; d++)
        pred += p[d] * qr[d];
    float e = pr->target - pred;
    m2->user_bias[pr->a] += lr * (e - reg * m2->user_bias[pr->a]);
    if (!fixed)
        m2->item_bias[pr->c] += lr * (e - reg * m2->item_bias[pr->c]);
    for (int d = 0; d < k; d++) {
        float pd = p[d], qd = qr[d];
        p[d] += lr * (e * qd - reg * pd);
        if (!fixed)
            q[d] += lr * (e * pd - reg * qd);
    }
}

int rescue_train(const mf_model *m1, const unlearn_request *req, const unlearn_rows *rows,
                 const unlearn_params *params, rescue_model *out, char *errstr,
                 size_t errstr_size) {
    size_t k = (size_t)m1->k, nf = req->n_forget;
    size_t n = nf + (params->rescue_retain ? req->n_retain : 0);
    memset(out, 0, sizeof(*out));
    out->k = m1->k;
    out->n_users = rows->n_users;
    out->n_items = rows->n_items;
    out->P = malloc((rows->n_users * k + 1) * sizeof(float));
    out->user_bias = malloc((rows->n_users + 1) * sizeof(float));
    out->Q = malloc((rows->n_items * k + 1) * sizeof(float));
    out->item_bias = malloc((rows->n_items + 1) * sizeof(float));
    rescue_pair *pairs = malloc((n ? n : 1) * sizeof(*pairs));
    if (!out->P || !out->user_bias || !out->Q || !out->item_bias || !pairs) {
        free(pairs);
        rescue_free(out);
        ul_set_err(errstr, errstr_size, "rescue model: out of memory");
        return UL_ERR_NOMEM;
    }
    rescue_copy_rows(m1, rows, out);
    size_t w = 0;
    for (size_t j = 0; j < n; j++) {
        const ul_rating *r = j < nf ? &req->forget[j] : &req->retain[j - nf];
        ptrdiff_t a = unlearn_pos(rows, 0, r->user);
        if (a < 0)
            continue; /* a retained rating of a user with nothing in F */
        pairs[w].a = (size_t)a;
        pairs[w].c = params->rescue_retain ? -1 : unlearn_pos(rows, 1, r->item);
        pairs[w].item = r->item;
        pairs[w].target = j < nf ? unlearn_corrected_value(m1, req, r->item) : r->value;
        w++;
    }
    n = w;
    rng g;
    rng_seed(&g, rng_derive(params->seed, 0x7e5c));
    for (int e = 0; e < params->rescue_epochs; e++) {
        rng_shuffle(&g, pairs, n, sizeof(*pairs));
        for (size_t j = 0; j < n; j++)
            rescue_sgd(m1, out, &pairs[j], params->rescue_lr, params->rescue_reg);
    }
    free(pairs);
    return UL_OK;
}
