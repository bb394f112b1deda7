/* rng.h: a small seeded pseudo-random generator (xoshiro256**, seeded by
 * splitmix64). Every random choice in core/ goes through an explicit `rng`
 * value so that runs are reproducible from their seed; there is no global
 * generator. */
#ifndef UL_RNG_H
#define UL_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng;

void rng_seed(rng *r, uint64_t seed);
uint64_t rng_next(rng *r);
/* Uniform in [0, 1). */
double rng_uniform(rng *r);
/* Standard normal (Box-Muller). */
double rng_normal(rng *r);
/* n normals of standard deviation `std` into out (Marsaglia's polar
 * method, both values of each pair used: a log and a sqrt per pair, no
 * trigonometry; several times cheaper per value than rng_normal). Model
 * initialisation draws its rows with it, offline (mf_train.c) and in the
 * worker, where every new user's row costs one. */
void rng_normal_fill(rng *r, float *out, size_t n, double std);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(rng *r, uint64_t n);
/* Fisher-Yates shuffle of n elements of `size` bytes each. */
void rng_shuffle(rng *r, void *base, size_t n, size_t size);
/* Derive an independent seed from (seed, stream): for per-thread/per-shard
 * generators that do not depend on scheduling. */
uint64_t rng_derive(uint64_t seed, uint64_t stream);

#endif
