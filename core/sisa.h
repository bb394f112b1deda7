/* sisa.h: the SISA baseline (Sharded, Isolated, Sliced, Aggregated) for MF.
 * Users are assigned to S shards by a seeded hash of their dense id; one MF
 * is trained per shard on that shard's ratings only; a prediction is the
 * mean of the shard models' clipped predictions. Unlearning removes the
 * forgotten ratings from their shards and retrains only those shards.
 *
 * A `sisa` owns copies of its shards' ratings and its shard models. */
#ifndef UL_SISA_H
#define UL_SISA_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "mf.h"

#define SISA_MAX_SHARDS 64

typedef struct sisa sisa;

/* Called after each epoch of each shard's training; a non-zero return
 * aborts with UL_ERR_ABORTED. `shard` counts from 0; `shards` is how many
 * shards this call (re)trains. */
typedef int (*sisa_progress_fn)(void *ctx, int shard, int shards, int epoch, int epochs);

/* The shard (0..shards-1) of a user: a seeded hash of the dense id. */
int sisa_shard_of(uint64_t shard_seed, int shards, int32_t user);

/* Split `ratings` by user into `shards` shards (1..SISA_MAX_SHARDS) and
 * train one model per shard with `params` (shard s uses the seed
 * rng_derive(params->seed, s)). Every model has the full n_users x n_items
 * shape. An empty shard is an error (use fewer shards). NULL on error. */
sisa *sisa_train(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                 float rating_min, float rating_max, int shards, uint64_t shard_seed,
                 const mf_params *params, sisa_progress_fn progress, void *progress_ctx,
                 char *errstr, size_t errstr_size);

/* Remove the (user, item) pairs of `forget` from their shards and retrain
 * the shards that lost at least one rating, from scratch, with their
 * original seeds. A pair the shards do not hold is ignored (and not
 * counted). On failure the sisa is left unusable (destroy it). */
int sisa_unlearn(sisa *s, const ul_rating *forget, size_t n_forget, sisa_progress_fn progress,
                 void *progress_ctx, char *errstr, size_t errstr_size);

int sisa_shards(const sisa *s);
/* The model of shard `shard`; borrowed until the next sisa_unlearn() or
 * sisa_destroy(). */
const mf_model *sisa_model(const sisa *s, int shard);
size_t sisa_shard_size(const sisa *s, int shard);
/* The shard of each dense user id (n_users entries); borrowed. */
const int32_t *sisa_user_shards(const sisa *s);

/* Facts about the last sisa_unlearn() (0 before any). */
int sisa_touched(const sisa *s);            /* shards retrained */
size_t sisa_removed(const sisa *s);         /* ratings removed */
double sisa_unlearn_seconds(const sisa *s); /* wall time, retraining included */
double sisa_train_seconds(const sisa *s);   /* wall time of sisa_train() */

/* Mean of the shard models' clipped predictions. */
float sisa_predict(const sisa *s, int32_t user, int32_t item);

void sisa_destroy(sisa *s);

#endif
