/* rng.c: xoshiro256** with splitmix64 seeding (public-domain algorithms by
 * Blackman and Vigna, written from their description). */
#include "rng.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void rng_seed(rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(rng *r) {
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double rng_normal(rng *r) {
    double u1 = rng_uniform(r);
    double u2 = rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_normal_fill(rng *r, float *out, size_t n, double std) {
    for (size_t x = 0; x < n; x += 2) {
        double a, b, s;
        do {
            a = 2.0 * rng_uniform(r) - 1.0;
            b = 2.0 * rng_uniform(r) - 1.0;
            s = a * a + b * b;
        } while (s >= 1.0 || s == 0.0);
        double f = std * sqrt(-2.0 * log(s) / s);
        out[x] = (float)(a * f);
        if (x + 1 < n)
            out[x + 1] = (float)(b * f);
    }
}

uint64_t rng_below(rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t x;
    do {
        x = rng_next(r);
    } while (x >= limit);
    return x % n;
}

void rng_shuffle(rng *r, void *base, size_t n, size_t size) {
    unsigned char *a = base;
    unsigned char tmp[64];
    assert(size <= sizeof(tmp));
    if (n < 2)
        return;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rng_below(r, (uint64_t)i + 1);
        if (j == i)
            continue;
        memcpy(tmp, a + i * size, size);
        memcpy(a + i * size, a + j * size, size);
        memcpy(a + j * size, tmp, size);
    }
}

uint64_t rng_derive(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    splitmix64(&x);
    return splitmix64(&x);
}
