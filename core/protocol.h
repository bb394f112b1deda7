/* protocol.h: the paper's offline protocol on a training array. Operation
 * O1 (simulated faulty data): pick x% of the users that have training
 * ratings and y% of each picked user's training ratings, and overwrite them
 * with the scale's maximum; those entries are the forget set F. Helpers split
 * a training array into F, the affected users' remaining ratings and the
 * rest, and compute the per-item mean rating outside F (the corrected value
 * of the paper's operation O2).
 *
 * Everything is reproducible from the seed. */
#ifndef UL_PROTOCOL_H
#define UL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/* The forget set F, as positions in the training array. Owned arrays: free
 * with proto_forget_free(). */
typedef struct proto_forget {
    size_t *pos;       /* positions in the training array, ascending; n entries */
    float *clean;      /* the value each entry had before O1; n entries */
    size_t n;          /* |F| */
    int32_t *users;    /* the affected users, ascending; n_users entries */
    size_t n_users;    /* number of affected users */
    uint8_t *affected; /* per dense user id (n_users_total): 1 when affected */
    int32_t n_users_total;
    float noise_value; /* the value written over F's entries (the scale maximum) */
} proto_forget;

typedef struct proto_opts {
    double users_pct;  /* x: share of users with training ratings to pick, in (0, 100] */
    double forget_pct; /* y: share of each picked user's training ratings, in (0, 100] */
    float noise_value; /* value written over F's entries: the scale maximum (5) */
    uint64_t seed;
} proto_opts;

/* Operation O1. `train` has `n` ratings with dense user ids < n_users.
 * Picks round(x% of the users with >= 1 rating), at least 1, uniformly at
 * random; for each, round(y% of its ratings), at least 1 and at most all,
 * uniformly at random. Fills `faulty` (a copy of train with F overwritten,
 * owned by the caller) and `fs`. Returns UL_OK or UL_ERR_ARG/UL_ERR_NOMEM. */
int proto_make_faulty(const ul_rating *train, size_t n, int32_t n_users, const proto_opts *opts,
                      ul_ratings *faulty, proto_forget *fs, char *errstr, size_t errstr_size);

void proto_forget_free(proto_forget *fs);

/* Split `train` (the array F's positions refer to, clean or faulty) into
 * F's entries (`forget`, in position order, with the values `train` holds),
 * the affected users' other ratings (`retain`) and the unaffected users'
 * ratings (`rest`). Each output may be NULL when not wanted; filled outputs
 * are owned by the caller. */
int proto_split(const ul_rating *train, size_t n, const proto_forget *fs, ul_ratings *forget,
                ul_ratings *retain, ul_ratings *rest, char *errstr, size_t errstr_size);

/* Per-item mean rating over the entries of `train` outside F, into
 * item_mean[n_items]. An item with no rating outside F gets the global mean
 * of the ratings outside F (or `fallback` when there are none). */
int proto_item_means(const ul_rating *train, size_t n, const proto_forget *fs, int32_t n_items,
                     float fallback, float *item_mean, char *errstr, size_t errstr_size);

#endif
