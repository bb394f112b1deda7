/* mia.c: the AUC of a membership score (see mia.h).
 *
 * DESIGN: one sort of both sets' scores by (group, score), then per group
 * the rank sum of the members with midranks over each run of equal scores
 * (the Mann-Whitney U statistic): exact, ties counted one half, O(n log n)
 * for n scores. Sums are doubles so that a million candidates lose no
 * precision. */
#include "mia.h"

#include <math.h>
#include <stdlib.h>

#include "ul_err.h"

typedef struct mia_entry {
    int32_t group;
    uint8_t member;
    float score;
} mia_entry;

static int cmp_entry(const void *a, const void *b) {
    const mia_entry *x = a, *y = b;
    if (x->group != y->group)
        return (x->group > y->group) - (x->group < y->group);
    return (x->score > y->score) - (x->score < y->score);
}

/* U and the number of compared pairs of one group, entries e[0..n). */
static void group_u(const mia_entry *e, size_t n, double *u, double *pairs) {
    double rank_sum = 0, members = 0; /* members' ranks, 1-based, midranks within ties */
    for (size_t lo = 0; lo < n;) {
        size_t hi = lo, tied = 0;
        while (hi < n && e[hi].score == e[lo].score)
            tied += e[hi++].member;
        rank_sum += (double)tied * ((double)(lo + 1) + (double)hi) / 2.0;
        members += (double)tied;
        lo = hi;
    }
    *u = rank_sum - members * (members + 1) / 2.0;
    *pairs = members * ((double)n - members);
}

int mia_auc(const float *member, const int32_t *member_group, size_t n_member, const float *non,
            const int32_t *non_group, size_t n_non, double *auc) {
    *auc = NAN;
    if ((member_group == NULL) != (non_group == NULL))
        return UL_ERR_ARG;
    size_t n = n_member + n_non;
    mia_entry *e = malloc((n ? n : 1) * sizeof(*e));
    if (e == NULL)
        return UL_ERR_NOMEM;
    for (size_t j = 0; j < n; j++) {
        int m = j < n_member;
        size_t k = m ? j : j - n_member;
        e[j].member = (uint8_t)m;
        e[j].score = m ? member[k] : non[k];
        e[j].group = member_group == NULL ? 0 : m ? member_group[k] : non_group[k];
        if (!isfinite(e[j].score)) {
            free(e);
            return UL_ERR_ARG;
        }
    }
    qsort(e, n, sizeof(*e), cmp_entry);
    double u = 0, pairs = 0;
    for (size_t lo = 0; lo < n;) {
        size_t hi = lo;
        while (hi < n && e[hi].group == e[lo].group)
            hi++;
        double gu, gp;
        group_u(e + lo, hi - lo, &gu, &gp);
        u += gu;
        pairs += gp;
        lo = hi;
    }
    free(e);
    if (pairs > 0)
        *auc = u / pairs;
    return UL_OK;
}
