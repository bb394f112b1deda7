/* mia.h: the membership-inference audit's statistic. An attack gives every
 * candidate (user, item) pair a score, higher meaning "more likely trained
 * on"; the attack's AUC is the probability that a random member outscores a
 * random non-member of the same group (ties count one half): 0.5 when the
 * scores do not tell the two sets apart, 1 (or 0) when they separate them
 * completely. Groups let an attacker set one threshold per group (per
 * user): only pairs within a group are compared. The attack itself (what is
 * scored, which pairs are members) is the caller's: docs/eval.md describes
 * the one `unlearnd eval` runs. */
#ifndef UL_MIA_H
#define UL_MIA_H

#include <stddef.h>
#include <stdint.h>

/* AUC of n_member member scores against n_non non-member scores: the
 * Mann-Whitney U statistic summed over groups (midranks for ties), divided
 * by the number of (member, non-member) pairs sharing a group. Groups are
 * any int32 labels; member_group and non_group may both be NULL (one
 * group). O((n_member + n_non) log(n_member + n_non)). Writes NaN when no
 * group holds both a member and a non-member. Returns UL_OK, UL_ERR_ARG (a
 * non-finite score, or only one of the group arrays given) or
 * UL_ERR_NOMEM. */
int mia_auc(const float *member, const int32_t *member_group, size_t n_member, const float *non,
            const int32_t *non_group, size_t n_non, double *auc);

#endif
