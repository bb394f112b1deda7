/* unlearn_method.h: the contract between unlearn.c (dispatch, validation,
 * the report) and the files that implement a method (foldin.c, cff.c). Not
 * part of the public API: the worker and eval include unlearn.h only.
 *
 * unlearn.c validates the request, computes the affected rows (the sorted,
 * distinct users and items of F) and calls the method. A method must leave
 * the model unchanged when it fails (compute into buffers, commit last). */
#ifndef UL_UNLEARN_METHOD_H
#define UL_UNLEARN_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include "unlearn.h"

typedef struct unlearn_rows {
    int32_t *users; /* sorted distinct users of F */
    size_t n_users;
    int32_t *items; /* sorted distinct items of F */
    size_t n_items;
    /* Dense id -> position in users / items, or -1 (model's n_users /
     * n_items entries): O(1) lookups where a binary search per rating cost
     * 15% of fold-in's time. */
    int32_t *user_pos, *item_pos;
} unlearn_rows;

/* Position of a user (is_item = 0) or item among the affected rows, or -1. */
static inline ptrdiff_t unlearn_pos(const unlearn_rows *rows, int is_item, int32_t id) {
    return (is_item ? rows->item_pos : rows->user_pos)[id];
}

/* Ratings grouped by row: the ratings of row r (a position in an
 * unlearn_rows list) are idx[start[r] .. start[r+1]) (indices into the
 * source array). Free with unlearn_groups_free(). */
typedef struct unlearn_groups {
    size_t *start; /* n_rows + 1 */
    size_t *idx;
} unlearn_groups;

/* A method: changes m in place. On return, `*users_changed` and
 * `*items_changed` say whether the affected user / item rows were written. */
typedef int (*unlearn_method_fn)(mf_model *m, const unlearn_request *req,
                                 const unlearn_params *params, const unlearn_rows *rows,
                                 int *users_changed, int *items_changed, char *errstr,
                                 size_t errstr_size);

int foldin_apply(mf_model *m, const unlearn_request *req, const unlearn_params *params,
                 const unlearn_rows *rows, int *users_changed, int *items_changed, char *errstr,
                 size_t errstr_size);
int cff_apply(mf_model *m, const unlearn_request *req, const unlearn_params *params,
              const unlearn_rows *rows, int *users_changed, int *items_changed, char *errstr,
              size_t errstr_size);
int cff_paper_apply(mf_model *m, const unlearn_request *req, const unlearn_params *params,
                    const unlearn_rows *rows, int *users_changed, int *items_changed, char *errstr,
                    size_t errstr_size);

/* Fold-in's item step on its own (foldin.c), for methods that update the
 * users their own way: given the new rows of the affected users (P1:
 * rows->n_users x k, bu1; both NULL: fold-in's own ridge re-solve of them),
 * one m1-anchored Newton step per item of F (params' foldin_reg,
 * foldin_reg_bias, foldin_item_prior) into Q1 (rows->n_items x k) and
 * bi1. `m` is m1, unchanged. Needs
 * req->item_count (UL_ERR_ARG without). UL_OK, UL_ERR_NOMEM or
 * UL_ERR_STATE (a non-finite model). */
int foldin_item_step(const mf_model *m, const unlearn_request *req, const unlearn_params *params,
                     const unlearn_rows *rows, const float *P1, const float *bu1, float *Q1,
                     float *bi1);

/* Group `n` ratings by their user (by_item = 0) or item (1) over the
 * affected rows; ratings whose row is not affected are skipped. */
int unlearn_groups_build(const ul_rating *r, size_t n, int by_item, const unlearn_rows *rows,
                         unlearn_groups *g);
void unlearn_groups_free(unlearn_groups *g);

/* The corrected value of item i for D_fl1: req->item_mean[i], or
 * mu + b_i from the model when item_mean is NULL. */
float unlearn_corrected_value(const mf_model *m, const unlearn_request *req, int32_t item);

#endif
