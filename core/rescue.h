/* rescue.h: the rescue model m2 of the paper: a small MF over the users and
 * items of the forget set only, trained on D_fl1 (F with every rating
 * replaced by its item's corrected value) and, with rescue_retain (the
 * "cff" default), on the affected users' remaining ratings too. */
#ifndef UL_RESCUE_H
#define UL_RESCUE_H

#include <stddef.h>

#include "unlearn_method.h"

/* m2's rows, in the order of an unlearn_rows list (users[a], items[c]). */
typedef struct rescue_model {
    size_t n_users, n_items;
    int k;
    float *P, *user_bias; /* n_users x k, n_users */
    float *Q, *item_bias; /* n_items x k, n_items */
} rescue_model;

/* Initialise m2's rows from m1's rows of the same users and items, then run
 * params->rescue_epochs SGD passes (params->rescue_lr, rescue_reg, seeded
 * shuffles) over D_fl1. Fills `out` (owned by the caller: rescue_free()). */
int rescue_train(const mf_model *m1, const unlearn_request *req, const unlearn_rows *rows,
                 const unlearn_params *params, rescue_model *out, char *errstr, size_t errstr_size);
void rescue_free(rescue_model *m2);

#endif
