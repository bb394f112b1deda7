/* mf_train.c: the parallel SGD trainer for biased MF (mf_train()).
 *
 * DESIGN. Users and items are each permuted with the seed and cut into Gu
 * and Gi equal groups, which tiles the rating matrix into Gu x Gi blocks.
 * Training runs on a working copy whose rows are in that permuted order, so
 * a group's rows and biases are contiguous: threads never write the same
 * cache line (the biases of interleaved groups did, and cost the second
 * core its speed-up), and a block's rows are dense in cache. Each block
 * keeps a compact array of {u, i, r} (12 bytes), shuffled once with the
 * seed.
 *
 * The schedule: MF_LANES (16) lanes run in lock-step. An epoch is Gu / 16
 * rounds; in round r lane l owns user group u = 16 r + l and, over Gi
 * steps, meets every item group: at step s it runs block (u, (u + d_s) mod
 * Gi), where d_0..d_{Gi-1} is a permutation of the diagonals re-drawn from
 * the seed every epoch. The 16 blocks of a step share no user and no item
 * (Gi >= 16), so their SGD updates touch disjoint rows of P, Q and the
 * biases; threads (created once per training) take them in any order and
 * wait at a barrier before the next step. Each block's result depends only
 * on the state at the start of its step, never on which thread ran it or
 * when, so the model is bit-identical for a seed and a kernel variant
 * whatever the thread count; the lanes cap the useful threads at 16. With
 * Gu = Gi = 16 (ML-1M) this is LibMF's diagonal scheme (Chin et al.) made
 * deterministic by the barrier.
 *
 * Gu and Gi come from the size of the model, never from the thread count
 * (groups_for): an item group takes at most half of MF_BLOCK_ROW_BYTES, a
 * user group the rest, so one block's rows (factors and biases) stay in a
 * core's L2 cache while it runs; Gu is a multiple of 16, both at least 16.
 * ML-1M at K=64 gets 16 x 16, a 20M-rating set of ML-20M's shape 272 x 54.
 * Two things keep large models cheap. Rounds: a round works on 16 user
 * groups only, so P is read from memory about once an epoch, where one
 * diagonal sweep over all user groups per step reread all of P G times
 * (Q, the smaller side, is what each step sweeps). And blocks as tall as
 * the cache allows: few item groups leave each user row several ratings
 * per block, so most of a row's reads hit the cache.
 *
 * Epoch e uses the learning rate lr * lr_decay^e. Biases and factors share
 * it. The global mean mu is the training mean and is not learned. */
#include "mf.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mf_kernel.h"
#include "mf_par.h"
#include "rng.h"
#include "ul_err.h"

#define MF_LANES 16 /* blocks per step; the least Gu and Gi; the most threads */
#define MF_MAX_GROUPS 512
#define MF_BLOCK_ROW_BYTES (256 * 1024)
#define MF_SERIAL_BELOW 4096 /* fewer ratings than this: one thread is faster */
#define MF_INIT_ROWS 1024    /* rows initialised per task (and per seed stream) */
#define MF_STREAM_INIT_P 1   /* rng_derive streams, fixed forever for */
#define MF_STREAM_INIT_Q 2   /* reproducibility of saved experiments */
#define MF_STREAM_GROUPS 3
#define MF_STREAM_DIAGONALS 4
#define MF_STREAM_BLOCK 1000

typedef struct trainer {
    const mf_kernel *kern;
    mf_model *m; /* the result, in the caller's index order */
    mf_model *w; /* the working copy, rows in permuted order */
    int32_t *user_perm, *user_rank, *item_perm, *item_rank;
    uint16_t *user_group, *item_group; /* by permuted position */
    const mf_params *params;
    size_t n;
    int Gu, Gi;          /* user and item groups */
    mf_entry *entries;   /* all blocks, concatenated, block-major, + padding */
    size_t *block_start; /* Gu*Gi + 1 offsets into entries */
    double *block_sse;   /* Gu*Gi squared-error sums of the current epoch */
    int *diag_order;     /* epochs x Gi: which diagonal comes at step s */
    atomic_int *next;    /* epochs x rounds x Gi: next lane to take in that step */
    int nthreads;
    pthread_barrier_t barrier;
    pthread_mutex_t gate_lock; /* start gate: threads wait until all exist */
    pthread_cond_t gate_cond;
    int gate; /* 0 wait, 1 run, -1 go home */
    int stop; /* set by thread 0 between barriers */
    int rc;
    int epochs_done;
    mf_progress_fn progress; /* at most one of progress and watch */
    mf_watch_fn watch;
    void *progress_ctx;
    char *errstr;
    size_t errstr_size;
} trainer;

/* Checks every rating and returns their mean in *mean. */
static int check_input(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                       float rating_min, float rating_max, double *mean, char *errstr,
                       size_t errstr_size) {
    if (n == 0 || ratings == NULL) {
        ul_set_err(errstr, errstr_size, "no ratings to train on");
        return UL_ERR_ARG;
    }
    if (!isfinite(rating_min) || !isfinite(rating_max) || rating_min >= rating_max) {
        ul_set_err(errstr, errstr_size, "rating scale %g..%g is not a finite range",
                   (double)rating_min, (double)rating_max);
        return UL_ERR_ARG;
    }
    double sum = 0.0;
    for (size_t x = 0; x < n; x++) {
        const ul_rating *r = &ratings[x];
        if (r->user < 0 || r->user >= n_users || r->item < 0 || r->item >= n_items) {
            ul_set_err(errstr, errstr_size,
                       "rating %zu: (user %d, item %d) outside the %d x %d model", x, (int)r->user,
                       (int)r->item, (int)n_users, (int)n_items);
            return UL_ERR_ARG;
        }
        if (!isfinite(r->value)) {
            ul_set_err(errstr, errstr_size, "rating %zu: value is not a finite number", x);
            return UL_ERR_ARG;
        }
        sum += r->value;
    }
    *mean = sum / (double)n;
    return UL_OK;
}

/* Uniform integer in [0, n) for n < 2^32 by a multiply and a shift
 * (Lemire), with the rare rejection that keeps it unbiased: rng_below's two
 * 64-bit divisions cost more than the shuffle's swaps. */
static uint32_t draw_below(rng *r, uint32_t n) {
    uint64_t m = (rng_next(r) >> 32) * (uint64_t)n;
    if ((uint32_t)m < n) {
        uint32_t floor = (uint32_t)(-n) % n;
        while ((uint32_t)m < floor)
            m = (rng_next(r) >> 32) * (uint64_t)n;
    }
    return (uint32_t)(m >> 32);
}

/* Fisher-Yates on mf_entry values swapped directly. */
static void shuffle_entries(rng *r, mf_entry *e, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = i <= UINT32_MAX ? draw_below(r, (uint32_t)i) : (size_t)rng_below(r, i);
        mf_entry tmp = e[i - 1];
        e[i - 1] = e[j];
        e[j] = tmp;
    }
}

/* Initialisation in tasks of MF_INIT_ROWS rows, each with its own stream:
 * P's tasks first, then Q's. */
typedef struct init_job {
    mf_model *m;
    const mf_params *params;
    size_t p_tasks;
} init_job;

static void init_task(void *ctx, size_t task) {
    init_job *job = ctx;
    mf_model *m = job->m;
    int is_p = task < job->p_tasks;
    size_t chunk = is_p ? task : task - job->p_tasks;
    size_t rows = (size_t)(is_p ? m->n_users : m->n_items), k = (size_t)m->k;
    size_t lo = chunk * MF_INIT_ROWS, hi = lo + MF_INIT_ROWS < rows ? lo + MF_INIT_ROWS : rows;
    rng r;
    uint64_t stream = rng_derive(job->params->seed, is_p ? MF_STREAM_INIT_P : MF_STREAM_INIT_Q);
    rng_seed(&r, rng_derive(stream, chunk));
    rng_normal_fill(&r, (is_p ? m->P : m->Q) + lo * k, (hi - lo) * k, job->params->init_std);
}

static void init_factors(mf_model *m, const mf_params *params, int threads) {
    init_job job = {m, params, ((size_t)m->n_users + MF_INIT_ROWS - 1) / MF_INIT_ROWS};
    size_t q_tasks = ((size_t)m->n_items + MF_INIT_ROWS - 1) / MF_INIT_ROWS;
    mf_par_run(job.p_tasks + q_tasks, threads, init_task, &job);
}

static int clamp_groups(double g) {
    return g < MF_LANES ? MF_LANES : g > MF_MAX_GROUPS ? MF_MAX_GROUPS : (int)g;
}

/* Gu and Gi for a model: see DESIGN. */
static void groups_for(int32_t n_users, int32_t n_items, int k, int *Gu, int *Gi) {
    double row = ((double)k + 1) * sizeof(float);
    double budget = MF_BLOCK_ROW_BYTES;
    *Gi = clamp_groups(ceil((double)n_items * row / (budget / 2)));
    double room = budget - (double)n_items * row / *Gi;
    *Gu = clamp_groups(ceil((double)n_users * row / room / MF_LANES) * MF_LANES);
}

/* A seeded permutation: perm[pos] = original index, rank[orig] = pos; and
 * group[pos], the G equal contiguous runs of positions. */
static void make_perm(int32_t n, int G, rng *r, int32_t *perm, int32_t *rank, uint16_t *group) {
    for (int32_t x = 0; x < n; x++)
        perm[x] = x;
    rng_shuffle(r, perm, (size_t)n, sizeof(int32_t));
    for (int32_t pos = 0; pos < n; pos++) {
        rank[perm[pos]] = pos;
        group[pos] = (uint16_t)((int64_t)pos * G / n);
    }
}

static uint32_t block_of(const trainer *t, const ul_rating *r) {
    return (uint32_t)t->user_group[t->user_rank[r->user]] * (uint32_t)t->Gi +
           t->item_group[t->item_rank[r->item]];
}

static int alloc_blocks(trainer *t) {
    const int32_t nu = t->m->n_users, ni = t->m->n_items;
    const size_t nb = (size_t)t->Gu * (size_t)t->Gi;
    t->user_perm = malloc((size_t)nu * sizeof(int32_t));
    t->user_rank = malloc((size_t)nu * sizeof(int32_t));
    t->item_perm = malloc((size_t)ni * sizeof(int32_t));
    t->item_rank = malloc((size_t)ni * sizeof(int32_t));
    t->user_group = malloc((size_t)nu * sizeof(uint16_t));
    t->item_group = malloc((size_t)ni * sizeof(uint16_t));
    /* Zeroed padding after the last block for the kernel's prefetch. */
    t->entries = calloc(t->n + MF_PREFETCH, sizeof(mf_entry));
    t->block_start = calloc(nb + 1, sizeof(size_t));
    t->block_sse = calloc(nb, sizeof(double));
    return t->user_perm && t->user_rank && t->item_perm && t->item_rank && t->user_group &&
                   t->item_group && t->entries && t->block_start && t->block_sse
               ? UL_OK
               : UL_ERR_NOMEM;
}

/* Shuffle block b with its own stream (so blocks can go in parallel). */
static void shuffle_task(void *ctx, size_t b) {
    trainer *t = ctx;
    rng r;
    rng_seed(&r, rng_derive(t->params->seed, MF_STREAM_BLOCK + (uint64_t)b));
    shuffle_entries(&r, t->entries + t->block_start[b], t->block_start[b + 1] - t->block_start[b]);
}

/* Bucket the ratings, in permuted indices, into the Gu x Gi blocks
 * (stable), then shuffle each block. */
static int build_blocks(trainer *t, const ul_rating *ratings) {
    const size_t nb = (size_t)t->Gu * (size_t)t->Gi;
    size_t *fill = malloc(nb * sizeof(size_t));
    if (fill == NULL || alloc_blocks(t) != UL_OK) {
        free(fill);
        return UL_ERR_NOMEM;
    }
    rng r;
    rng_seed(&r, rng_derive(t->params->seed, MF_STREAM_GROUPS));
    make_perm(t->m->n_users, t->Gu, &r, t->user_perm, t->user_rank, t->user_group);
    make_perm(t->m->n_items, t->Gi, &r, t->item_perm, t->item_rank, t->item_group);
    for (size_t x = 0; x < t->n; x++)
        t->block_start[block_of(t, &ratings[x]) + 1]++;
    for (size_t b = 0; b < nb; b++)
        t->block_start[b + 1] += t->block_start[b];
    memcpy(fill, t->block_start, nb * sizeof(size_t));
    for (size_t x = 0; x < t->n; x++) {
        mf_entry *e = &t->entries[fill[block_of(t, &ratings[x])]++];
        e->u = t->user_rank[ratings[x].user];
        e->i = t->item_rank[ratings[x].item];
        e->r = ratings[x].value;
    }
    mf_par_run(nb, t->nthreads, shuffle_task, t);
    free(fill);
    return UL_OK;
}

/* Copy rows between the model (original order) and the working copy
 * (permuted order): to_work = 1 gathers, 0 scatters back. */
static void permute_rows(mf_model *m, mf_model *w, const int32_t *user_perm,
                         const int32_t *item_perm, int to_work) {
    size_t k = (size_t)m->k;
    for (int32_t pos = 0; pos < m->n_users; pos++) {
        float *a = m->P + (size_t)user_perm[pos] * k, *b = w->P + (size_t)pos * k;
        float *ab = &m->user_bias[user_perm[pos]], *bb = &w->user_bias[pos];
        memcpy(to_work ? b : a, to_work ? a : b, k * sizeof(float));
        *(to_work ? bb : ab) = *(to_work ? ab : bb);
    }
    for (int32_t pos = 0; pos < m->n_items; pos++) {
        float *a = m->Q + (size_t)item_perm[pos] * k, *b = w->Q + (size_t)pos * k;
        float *ab = &m->item_bias[item_perm[pos]], *bb = &w->item_bias[pos];
        memcpy(to_work ? b : a, to_work ? a : b, k * sizeof(float));
        *(to_work ? bb : ab) = *(to_work ? ab : bb);
    }
}

static int plan_epochs(trainer *t) {
    const int G = t->Gi;
    size_t slots = (size_t)t->params->epochs * (size_t)(t->Gu / MF_LANES) * (size_t)G;
    t->diag_order = malloc(((size_t)t->params->epochs * (size_t)G + 1) * sizeof(int));
    t->next = malloc((slots + 1) * sizeof(atomic_int));
    if (t->diag_order == NULL || t->next == NULL)
        return UL_ERR_NOMEM;
    rng r;
    rng_seed(&r, rng_derive(t->params->seed, MF_STREAM_DIAGONALS));
    for (int e = 0; e < t->params->epochs; e++) {
        int *order = t->diag_order + (size_t)e * (size_t)G;
        for (int d = 0; d < G; d++)
            order[d] = d;
        rng_shuffle(&r, order, (size_t)G, sizeof(int));
    }
    for (size_t s = 0; s < slots + 1; s++)
        atomic_init(&t->next[s], 0);
    return UL_OK;
}

static void run_block(trainer *t, size_t b, float lr) {
    mf_model *m = t->w;
    const mf_params *pr = t->params;
    mf_block_job job = {t->entries + t->block_start[b],
                        t->block_start[b + 1] - t->block_start[b],
                        m->P,
                        m->Q,
                        m->user_bias,
                        m->item_bias,
                        m->k,
                        m->global_mean,
                        lr,
                        pr->reg,
                        pr->reg_bias};
    t->block_sse[b] = t->kern->sgd_block(&job);
}

/* Thread 0 only, between barriers: RMSE, divergence check, progress. */
static void end_epoch(trainer *t, int e) {
    double sse = 0.0;
    for (size_t b = 0; b < (size_t)t->Gu * (size_t)t->Gi; b++)
        sse += t->block_sse[b];
    double rmse = sqrt(sse / (double)t->n);
    t->epochs_done = e + 1;
    if (!isfinite(rmse)) {
        ul_set_err(t->errstr, t->errstr_size,
                   "MF training diverged at epoch %d (train RMSE not finite): lower lr (%g)", e + 1,
                   (double)t->params->lr);
        t->rc = UL_ERR_RANGE;
        t->stop = 1;
        return;
    }
    int stop = 0;
    if (t->progress != NULL)
        stop = t->progress(t->progress_ctx, e + 1, t->params->epochs, rmse);
    if (t->watch != NULL) {
        permute_rows(t->m, t->w, t->user_perm, t->item_perm, 0);
        stop = t->watch(t->progress_ctx, e + 1, t->params->epochs, rmse, t->m);
    }
    if (stop != 0) {
        ul_set_err(t->errstr, t->errstr_size, "MF training aborted by the caller after epoch %d",
                   e + 1);
        t->rc = UL_ERR_ABORTED;
        t->stop = 1;
    }
}

/* One step: the 16 lanes' blocks of round `round`, diagonal `diag`. */
static void run_step(trainer *t, atomic_int *next, int round, int diag, float lr) {
    const int G = t->Gi;
    for (;;) {
        int lane = atomic_fetch_add(next, 1);
        if (lane >= MF_LANES)
            return;
        int u = round * MF_LANES + lane;
        run_block(t, (size_t)u * (size_t)G + (size_t)((u + diag) % G), lr);
    }
}

static void train_loop(trainer *t, int tid) {
    const int G = t->Gi, rounds = t->Gu / MF_LANES;
    for (int e = 0; e < t->params->epochs; e++) {
        float lr = (float)(t->params->lr * pow(t->params->lr_decay, e));
        for (int r = 0; r < rounds; r++)
            for (int s = 0; s < G; s++) {
                size_t slot = ((size_t)e * (size_t)rounds + (size_t)r) * (size_t)G + (size_t)s;
                run_step(t, &t->next[slot], r, t->diag_order[(size_t)e * (size_t)G + (size_t)s],
                         lr);
                pthread_barrier_wait(&t->barrier);
            }
        if (tid == 0)
            end_epoch(t, e);
        pthread_barrier_wait(&t->barrier);
        if (t->stop)
            return;
    }
}

typedef struct worker {
    trainer *t;
    int tid;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    trainer *t = w->t;
    pthread_mutex_lock(&t->gate_lock);
    while (t->gate == 0)
        pthread_cond_wait(&t->gate_cond, &t->gate_lock);
    int go = t->gate;
    pthread_mutex_unlock(&t->gate_lock);
    if (go > 0)
        train_loop(t, w->tid);
    return NULL;
}

static void open_gate(trainer *t, int value) {
    pthread_mutex_lock(&t->gate_lock);
    t->gate = value;
    pthread_cond_broadcast(&t->gate_cond);
    pthread_mutex_unlock(&t->gate_lock);
}

/* Run the epochs on t->nthreads threads (the caller is thread 0). If a
 * thread cannot be created, fall back to one thread: the result is the same. */
static void run_threads(trainer *t) {
    pthread_t tids[MF_LANES];
    worker workers[MF_LANES];
    int created = 0;
    pthread_mutex_init(&t->gate_lock, NULL);
    pthread_cond_init(&t->gate_cond, NULL);
    t->gate = 0;
    for (int w = 1; w < t->nthreads; w++) {
        workers[w].t = t;
        workers[w].tid = w;
        if (pthread_create(&tids[w], NULL, worker_main, &workers[w]) != 0)
            break;
        created++;
    }
    if (created != t->nthreads - 1)
        t->nthreads = 1;
    pthread_barrier_init(&t->barrier, NULL, (unsigned)t->nthreads);
    open_gate(t, t->nthreads > 1 ? 1 : -1);
    train_loop(t, 0);
    for (int w = 1; w <= created; w++)
        pthread_join(tids[w], NULL);
    pthread_barrier_destroy(&t->barrier);
    pthread_cond_destroy(&t->gate_cond);
    pthread_mutex_destroy(&t->gate_lock);
}

/* Threads asked for (0: all cores), at most MF_LANES. */
static int thread_count(const mf_params *params, size_t n) {
    int want = params->threads == 0 ? mf_par_cores() : params->threads;
    if (want < 1 || n < MF_SERIAL_BELOW)
        want = 1;
    if (want > MF_LANES)
        want = MF_LANES;
    return want;
}

static void trainer_free(trainer *t) {
    mf_model_destroy(t->w);
    free(t->user_perm);
    free(t->user_rank);
    free(t->item_perm);
    free(t->item_rank);
    free(t->user_group);
    free(t->item_group);
    free(t->entries);
    free(t->block_start);
    free(t->block_sse);
    free(t->diag_order);
    free(t->next);
}

/* The two entry points: at most one of progress and watch is set. */
static mf_model *train(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                       float rating_min, float rating_max, const mf_params *params,
                       mf_progress_fn progress, mf_watch_fn watch, void *ctx, char *errstr,
                       size_t errstr_size) {
    trainer tr, *t = &tr;
    memset(t, 0, sizeof(*t));
    t->progress = progress;
    t->watch = watch;
    t->progress_ctx = ctx;
    double mean = 0.0;
    if (mf_params_check(params, errstr, errstr_size) != UL_OK ||
        check_input(ratings, n, n_users, n_items, rating_min, rating_max, &mean, errstr,
                    errstr_size) != UL_OK)
        return NULL;
    mf_model *m = mf_model_new(n_users, n_items, params->k, errstr, errstr_size);
    if (m == NULL)
        return NULL;
    m->rating_min = rating_min;
    m->rating_max = rating_max;
    m->global_mean = (float)mean;
    t->kern = mf_kernel_get(params->kernel);
    t->m = m;
    t->params = params;
    t->n = n;
    groups_for(n_users, n_items, params->k, &t->Gu, &t->Gi);
    t->errstr = errstr;
    t->errstr_size = errstr_size;
    t->nthreads = thread_count(params, n);
    init_factors(m, params, t->nthreads);
    t->w = mf_model_new(n_users, n_items, params->k, NULL, 0);
    if (t->w == NULL || build_blocks(t, ratings) != UL_OK || plan_epochs(t) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory preparing MF training on %zu ratings", n);
        t->rc = UL_ERR_NOMEM;
    } else {
        t->w->global_mean = m->global_mean;
        permute_rows(m, t->w, t->user_perm, t->item_perm, 1);
        run_threads(t);
        permute_rows(m, t->w, t->user_perm, t->item_perm, 0);
    }
    trainer_free(t);
    if (t->rc != UL_OK) {
        mf_model_destroy(m);
        return NULL;
    }
    return m;
}

mf_model *mf_train(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                   float rating_min, float rating_max, const mf_params *params,
                   mf_progress_fn progress, void *progress_ctx, char *errstr, size_t errstr_size) {
    return train(ratings, n, n_users, n_items, rating_min, rating_max, params, progress, NULL,
                 progress_ctx, errstr, errstr_size);
}

mf_model *mf_train_watch(const ul_rating *ratings, size_t n, int32_t n_users, int32_t n_items,
                         float rating_min, float rating_max, const mf_params *params,
                         mf_watch_fn watch, void *watch_ctx, char *errstr, size_t errstr_size) {
    return train(ratings, n, n_users, n_items, rating_min, rating_max, params, NULL, watch,
                 watch_ctx, errstr, errstr_size);
}
