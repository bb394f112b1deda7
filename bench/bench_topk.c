/* bench_topk.c: how personalised a model's recommendations are: the number
 * of distinct items over the top-N lists of a seeded random sample of users
 * (a model whose scores are mu + b_u + b_i gives every user the same list,
 * so N distinct items; a personalised one gives hundreds). Used by
 * bench/bench_train.sh on models from `unlearnd train` and `unlearnd state
 * --export-model`. Users are drawn by raw id (sorted, then shuffled with the
 * seed), so two models of the same users get the same sample. Lists are
 * mf_top_k's (unclipped scores, nothing excluded), like `unlearnd recommend`.
 *
 *   bench_topk MODEL [--users N] [--top K] [--seed S]
 *   -> distinct=D users=N top=K items=I */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf.h"
#include "rng.h"
#include "ul_err.h"

typedef struct user_slot {
    int64_t raw;
    int32_t idx;
} user_slot;

static int by_raw(const void *a, const void *b) {
    int64_t x = ((const user_slot *)a)->raw, y = ((const user_slot *)b)->raw;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long n_users = 500, top = 10;
    uint64_t seed = 1;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--users") == 0 && a + 1 < argc)
            n_users = strtol(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--top") == 0 && a + 1 < argc)
            top = strtol(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "--seed") == 0 && a + 1 < argc)
            seed = strtoull(argv[++a], NULL, 10);
        else if (argv[a][0] != '-' && path == NULL)
            path = argv[a];
        else {
            fprintf(stderr, "usage: bench_topk MODEL [--users N] [--top K] [--seed S]\n");
            return 2;
        }
    }
    if (path == NULL || n_users < 1 || top < 1 || top > 1000) {
        fprintf(stderr, "usage: bench_topk MODEL [--users N] [--top K] [--seed S]\n");
        return 2;
    }
    char err[UL_ERRSTR_SIZE];
    mf_model *m = mf_load(path, err, sizeof(err));
    if (m == NULL) {
        fprintf(stderr, "bench_topk: %s\n", err);
        return 1;
    }
    user_slot *users = malloc((size_t)m->n_users * sizeof(*users));
    uint8_t *seen = calloc((size_t)m->n_items, 1);
    int32_t *items = malloc((size_t)top * sizeof(*items));
    float *scores = malloc((size_t)top * sizeof(*scores));
    if (users == NULL || seen == NULL || items == NULL || scores == NULL) {
        fprintf(stderr, "bench_topk: out of memory\n");
        return 1;
    }
    for (int32_t u = 0; u < m->n_users; u++)
        users[u] = (user_slot){m->user_ids ? m->user_ids[u] : u, u};
    qsort(users, (size_t)m->n_users, sizeof(*users), by_raw);
    rng r;
    rng_seed(&r, seed);
    rng_shuffle(&r, users, (size_t)m->n_users, sizeof(*users));
    if (n_users > m->n_users)
        n_users = m->n_users;
    long distinct = 0;
    for (long i = 0; i < n_users; i++) {
        int n = mf_top_k(m, users[i].idx, NULL, (int)top, items, scores);
        for (int j = 0; j < n; j++)
            if (!seen[items[j]]) {
                seen[items[j]] = 1;
                distinct++;
            }
    }
    printf("distinct=%ld users=%ld top=%ld items=%d\n", distinct, n_users, top, (int)m->n_items);
    free(users);
    free(seen);
    free(items);
    free(scores);
    mf_model_destroy(m);
    return 0;
}
