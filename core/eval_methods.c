/* eval_methods.c: the evaluation's method registry (see eval.h): the
 * ensembles a method fills, one builder per method and the `methods` table
 * that names them, and the cell's cost plan.
 *
 * DESIGN: each method is a builder in the `methods` table that fills an
 * eval_ensemble: 1..S borrowed or owned models whose clipped predictions
 * are averaged (or, with `route`, one model answers per user). A new method
 * is one builder and one table row; the metrics (eval_metrics.c) are
 * shared. Every core/unlearn.h method shares one row. */
#include <math.h>
#include <string.h>

#include "eval_int.h"
#include "sisa.h"
#include "ul_err.h"

/* ---- ensembles --------------------------------------------------------- */

void eval_ens_borrow(eval_ensemble *e, const mf_model *m, double train_s, double unlearn_s) {
    e->models[0] = m;
    e->n = 1;
    e->train_seconds = train_s;
    e->unlearn_seconds = unlearn_s;
}

static void free_model(void *m) {
    mf_model_destroy(m);
}

void eval_ens_own(eval_ensemble *e, mf_model *m, double train_s, double unlearn_s) {
    eval_ens_borrow(e, m, train_s, unlearn_s);
    e->owner = m;
    e->owner_free = free_model;
}

void eval_ens_release(eval_ensemble *e) {
    if (e->owner_free != NULL)
        e->owner_free(e->owner);
    memset(e, 0, sizeof(*e));
}

/* ---- the methods ------------------------------------------------------- */

static int build_orig(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                      size_t errstr_size) {
    (void)name;
    int rc = eval_get_orig(c, errstr, errstr_size);
    if (rc == UL_OK)
        eval_ens_borrow(e, c->orig, c->orig_seconds, NAN);
    return rc;
}

static int build_faulty(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                        size_t errstr_size) {
    (void)name;
    int rc = eval_get_m1(c, errstr, errstr_size);
    if (rc == UL_OK)
        eval_ens_borrow(e, c->m1, c->m1_seconds, NAN);
    return rc;
}

/* Retrain is its own unlearning: its training time is the unlearning time. */
static int build_retrain(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                         size_t errstr_size) {
    (void)name;
    int rc = eval_get_retrain(c, errstr, errstr_size);
    if (rc == UL_OK)
        eval_ens_borrow(e, c->retrain, 0, c->retrain_seconds);
    return rc;
}

static int build_retrain2(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                          size_t errstr_size) {
    (void)name;
    int rc = eval_get_retrain2(c, errstr, errstr_size);
    if (rc == UL_OK)
        eval_ens_borrow(e, c->retrain2, 0, c->retrain2_seconds);
    return rc;
}

static void ens_sisa(eval_ctx *c, eval_ensemble *e) {
    e->n = sisa_shards(c->sisa);
    for (int sh = 0; sh < e->n; sh++)
        e->models[sh] = sisa_model(c->sisa, sh);
    e->train_seconds = sisa_train_seconds(c->sisa);
    e->unlearn_seconds = sisa_unlearn_seconds(c->sisa);
    e->shards_touched = sisa_touched(c->sisa);
}

static int build_sisa(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                      size_t errstr_size) {
    (void)name;
    int rc = eval_get_sisa(c, errstr, errstr_size);
    if (rc == UL_OK)
        ens_sisa(c, e);
    return rc;
}

/* SISA where only the user's own shard answers (the other shards never saw
 * the user): measures what plain averaging costs. */
static int build_sisa_owner(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                            size_t errstr_size) {
    int rc = build_sisa(c, name, e, errstr, errstr_size);
    if (rc == UL_OK)
        e->route = sisa_user_shards(c->sisa);
    return rc;
}

/* The knobs every unlearning run of the cell uses. */
void eval_cell_unlearn_params(const eval_ctx *c, unlearn_params *up) {
    if (c->o->unlearn != NULL)
        *up = *c->o->unlearn;
    else
        unlearn_params_init(up);
    up->seed = c->o->seed;
    up->threads = c->o->mf.threads;
}

/* A copy of M1 for `name` to change. */
mf_model *eval_clone_m1(eval_ctx *c, const char *name, int *rc, char *errstr, size_t errstr_size) {
    *rc = eval_get_m1(c, errstr, errstr_size);
    if (*rc != UL_OK)
        return NULL;
    mf_model *m = mf_model_clone(c->m1);
    if (m == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory copying M1 for %s", name);
        *rc = UL_ERR_NOMEM;
    }
    return m;
}

/* Every method of core/unlearn.h (cff, foldin, ...): M1 cloned, then
 * unlearn_apply() with F, the affected users' remaining ratings, the item
 * means outside F (O2's corrected values) and the item counts. */
int eval_build_unlearned(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                         size_t errstr_size) {
    int rc;
    mf_model *m = eval_clone_m1(c, name, &rc, errstr, errstr_size);
    if (m == NULL)
        return rc;
    unlearn_params up;
    eval_cell_unlearn_params(c, &up);
    unlearn_request req = {c->forget.v, c->forget.n,  c->retain.v,
                           c->retain.n, c->item_mean, c->item_count};
    eval_stage_begin(c, name, "unlearning", 0.2);
    double t0 = eval_now_seconds();
    rc = unlearn_apply(name, m, &req, &up, NULL, errstr, errstr_size);
    double seconds = eval_now_seconds() - t0;
    eval_stage_end(c);
    if (rc != UL_OK) {
        mf_model_destroy(m);
        return rc;
    }
    eval_ens_own(e, m, c->m1_seconds, seconds);
    return UL_OK;
}

static const eval_method methods[] = {
    {"orig", build_orig, 1, 1.0, "MF on the clean training set (before O1)"},
    {"faulty", build_faulty, 1, 1.0, "M1: MF on the faulty training set (F overwritten)"},
    {"retrain", build_retrain, 1, 1.0, "MF retrained from scratch without F (the reference)"},
    {"sisa", build_sisa, 1, 2.0, "SISA: S user shards, touched shards retrained, mean of all"},
    {"sisa-owner", build_sisa_owner, 1, 2.0,
     "SISA's shards, but only the user's own shard predicts"},
    {"retrain2", build_retrain2, 1, 1.0,
     "Retrain with MF seed + 1000: its forget gap is the noise floor"},
};

#define N_METHODS (sizeof(methods) / sizeof(methods[0]))
#define MAX_UNLEARN_METHODS 16

/* The row every unlearn.h method shares; only its name differs. */
static const eval_method unlearn_row = {NULL, eval_build_unlearned, 1, 0.2,
                                        "M1 unlearned by the core/unlearn.h method of this name"};

static int is_unlearn_method(const char *name) {
    const char *const *names = unlearn_method_names();
    for (size_t j = 0; names[j] != NULL; j++)
        if (strcmp(names[j], name) == 0)
            return 1;
    return 0;
}

const eval_method *eval_find_method(const char *name) {
    for (size_t j = 0; j < N_METHODS; j++)
        if (strcmp(methods[j].name, name) == 0)
            return &methods[j];
    return is_unlearn_method(name) ? &unlearn_row : NULL;
}

/* The table's names, then unlearn.h's; `only_default` keeps the default
 * ones. The static buffer is rebuilt on each call (same content). */
static const char *const *list_methods(const char **names, int only_default) {
    size_t w = 0;
    for (size_t j = 0; j < N_METHODS; j++)
        if (!only_default || methods[j].in_default)
            names[w++] = methods[j].name;
    const char *const *un = unlearn_method_names();
    for (size_t j = 0; un[j] != NULL && j < MAX_UNLEARN_METHODS; j++)
        names[w++] = un[j];
    names[w] = NULL;
    return names;
}

const char *const *eval_method_names(void) {
    static const char *names[N_METHODS + MAX_UNLEARN_METHODS + 1];
    return list_methods(names, 0);
}

const char *const *eval_default_methods(void) {
    static const char *names[N_METHODS + MAX_UNLEARN_METHODS + 1];
    return list_methods(names, 1);
}

const char *eval_method_doc(const char *name) {
    const eval_method *m = eval_find_method(name);
    if (m == &unlearn_row && unlearn_method_doc(name) != NULL)
        return unlearn_method_doc(name);
    return m ? m->doc : NULL;
}

/* Work units of the cell: orig, M1, Retrain and retrain2 (always built:
 * the distances, the reference, the noise floor) plus each other listed
 * method's own cost, SISA counted once. */
double eval_plan_units(const char *const *names, size_t n_names, int sequential) {
    double units = 4;
    int sisa_counted = 0;
    for (size_t j = 0; j < n_names; j++) {
        const eval_method *m = eval_find_method(names[j]);
        int is_sisa = m->build == build_sisa || m->build == build_sisa_owner;
        int base = m->build == build_orig || m->build == build_faulty ||
                   m->build == build_retrain || m->build == build_retrain2;
        if (base || (is_sisa && sisa_counted))
            continue;
        sisa_counted |= is_sisa;
        units += m->units;
        if (sequential > 0 && m->build == eval_build_unlearned)
            units += 0.2 + 0.01 * sequential;
    }
    return units;
}
