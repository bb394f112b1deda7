/* eval_int.h: what core/eval.c, eval_methods.c and eval_metrics.c share
 * (the cell's context, the ensemble a method fills, the method table's row
 * type). Not API: core/eval.h is. */
#ifndef UL_EVAL_INT_H
#define UL_EVAL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "eval.h"
#include "sisa.h"

#define EVAL_MAX_MODELS SISA_MAX_SHARDS

typedef struct eval_ensemble {
    const mf_model *models[EVAL_MAX_MODELS];
    int n;
    const int32_t *route; /* NULL, or per user the one model that answers */
    void *owner;          /* freed with owner_free after the metrics */
    void (*owner_free)(void *);
    double train_seconds, unlearn_seconds;
    int shards_touched;
} eval_ensemble;

typedef struct eval_ctx {
    const eval_data *d;
    const eval_opts *o;
    eval_progress_fn progress;
    void *progress_ctx;
    int aborted;
    ul_ratings train, test, faulty;
    proto_forget fs;
    ul_ratings forget;            /* F with the faulty values (as M1 learned them) */
    ul_ratings retain;            /* the affected users' remaining ratings */
    ul_ratings without_f;         /* the training set without F, in training order */
    float *item_mean;             /* per item, over the training ratings outside F */
    int32_t *item_count;          /* per item, ratings in M1's training set (F included) */
    float *ref_pred;              /* retrain's clipped prediction on each entry of F */
    ul_ratings nonmember;         /* the affected users' test ratings: the audit's non-members */
    float *ref_raw_f, *ref_raw_n; /* retrain2's raw predictions on F and on the non-members */
    float *score_f, *score_n;     /* scratch: one model's attack scores */
    int32_t *user_f, *user_n;     /* the user of each member / non-member: the attack's groups */
    mf_model *orig, *m1, *retrain, *retrain2;
    int orig_cached; /* orig belongs to the eval_cache */
    double orig_seconds, m1_seconds, retrain_seconds, retrain2_seconds;
    sisa *sisa;
    /* progress accounting, in units of one training on the whole train set */
    double units_done, units_total, unit_weight;
    const char *method;
    const char *stage;
} eval_ctx;

typedef int (*eval_build_fn)(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                             size_t errstr_size);

typedef struct eval_method {
    const char *name;
    eval_build_fn build;
    int in_default; /* run by `unlearnd eval` without --methods */
    double units;   /* rough cost in trainings, for progress */
    const char *doc;
} eval_method;

/* core/eval.c: the clock, progress and the cached models of the cell. */
double eval_now_seconds(void);
int eval_report(eval_ctx *c, int epoch, int epochs);
void eval_stage_begin(eval_ctx *c, const char *method, const char *stage, double weight);
void eval_stage_end(eval_ctx *c);
int eval_fail_model(eval_ctx *c, char *errstr, size_t errstr_size);
int eval_get_orig(eval_ctx *c, char *errstr, size_t errstr_size);
int eval_get_m1(eval_ctx *c, char *errstr, size_t errstr_size);
int eval_get_retrain(eval_ctx *c, char *errstr, size_t errstr_size);
int eval_get_retrain2(eval_ctx *c, char *errstr, size_t errstr_size);
int eval_get_sisa(eval_ctx *c, char *errstr, size_t errstr_size);

/* core/eval_methods.c: ensembles, the builders and the method table. */
void eval_ens_borrow(eval_ensemble *e, const mf_model *m, double train_s, double unlearn_s);
void eval_ens_own(eval_ensemble *e, mf_model *m, double train_s, double unlearn_s);
void eval_ens_release(eval_ensemble *e);
void eval_cell_unlearn_params(const eval_ctx *c, unlearn_params *up);
mf_model *eval_clone_m1(eval_ctx *c, const char *name, int *rc, char *errstr, size_t errstr_size);
int eval_build_unlearned(eval_ctx *c, const char *name, eval_ensemble *e, char *errstr,
                         size_t errstr_size);
const eval_method *eval_find_method(const char *name);
double eval_plan_units(const char *const *names, size_t n_names, int sequential);

/* core/eval_metrics.c: the metrics of one ensemble and the sequential runs. */
void eval_forget_metrics(const eval_ctx *c, const eval_ensemble *e, eval_result *r);
int eval_measure(eval_ctx *c, const char *name, const eval_ensemble *e, eval_result *r,
                 char *errstr, size_t errstr_size);
int eval_run_sequential(eval_ctx *c, const char *name, eval_result *r, char *errstr,
                        size_t errstr_size);

#endif
