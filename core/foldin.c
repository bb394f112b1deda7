/* foldin.c: the "foldin" unlearning method, exact-style unlearning for
 * biased MF without the historical training data.
 *
 * DESIGN
 * - Users. Each affected user's [p_u; b_u] is re-solved jointly by ridge
 *   regression on that user's remaining ratings with the item rows fixed:
 *   min sum (r - mu - b_i - b_u - p_u.q_i)^2 + n_u (reg |p_u|^2 + reg_bias b_u^2).
 *   The penalty grows with n_u because SGD with a per-update L2 term (how m1
 *   is trained) has that fixed point. A user with no remaining rating gets
 *   p_u = 0, b_u = 0, which is the ridge solution with no data.
 * - Items. An item's full rating list is not available (only the affected
 *   users' ratings are), so re-solving it on those would be wrong. Instead we
 *   take one Newton step on the item's retrain objective, anchored at m1:
 *   m1's [q_i; b_i] is assumed stationary for its own objective over all
 *   n_i ratings, so the gradient of the objective without F (and with the
 *   affected users' new rows) is known exactly from F, the affected users'
 *   ratings and n_i:  g = sum_F e0 x0 + sum_R (e0 x0 - e' x') - |F_i| L z0.
 *   The Hessian needs the item's unknown raters; it is approximated by
 *   n'_i (S + L), S the second moment of [p_u; 1] over (a sample of) the
 *   model's users, shrunk towards an isotropic moment (see item_hessian), L = diag(reg..,
 * reg_bias), n'_i = n_i - |F_i|. One Cholesky factorisation then serves every item. The step is
 * damped by adding foldin_item_prior ratings to n'_i: items with few ratings left would otherwise
 * jump far on an approximate Hessian (measured: without it the item rows move 1.3-2.6x further from
 * m1 than Retrain's do, at no gain in RMSE). Needs req->item_count (n_i); with NULL or foldin_items
 * = 0, item rows stay as in m1. Where the shared Hessian is wrong the step
 * is not anchored alone: an item whose remaining ratings are all known (the
 * affected users') is solved exactly on them, and one whose known raters
 * carry a real share of its curvature gets their exact curvature added
 * (Woodbury). Both are rare in one request and change no reported digit
 * offline; in a stream of requests (sequential unlearning) the same rare
 * items are stepped again and again, and without them their rows diverged.
 * - Sweeps: users, then items; a second sweep re-solves users against the
 *   updated items and redoes the item step (always anchored at m1).
 * - Solves: the per-user (K+1) systems are accumulated and factorised by
 *   hand (gram_add, chol_solve: faster than OpenBLAS at this size); the
 *   items' shared system is built with cblas_ssyrk and solved for every
 *   item at once with LAPACK spotrf_/spotrs_ from OpenBLAS.
 * - Cost: O(|R| K^2 + |A| K^3 + |F| K + |I_F| K^2) for R the affected users'
 *   remaining ratings, A the affected users, I_F the items of F: it grows
 *   with the forget requests, not with the dataset. The user solves run on
 *   params->threads threads (0 = all cores); the result does not depend on
 *   the thread count. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "rng.h"
#include "ul_err.h"
#include "unlearn_method.h"

/* LAPACK from OpenBLAS (no lapacke.h dependency). Column-major. */
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
void spotrs_(const char *uplo, const int *n, const int *nrhs, const float *a, const int *lda,
             float *b, const int *ldb, int *info);

#define FOLDIN_SAMPLE_USERS 4096
#define FOLDIN_MAX_THREADS 16
#define FOLDIN_SHRINK 32.0f
#define FOLDIN_KNOWN_MAX 64      /* known raters added exactly to an item's Hessian, at most */
#define FOLDIN_KNOWN_SHARE 0.1f  /* ... when they carry this share of its curvature trace */
#define FOLDIN_REFINE_PASSES 3   /* refinement passes of a later sweep's user solve */
#define FOLDIN_REFINE_SLOW 1e-2f /* last pass's squared correction above this x the first's */
#define FOLDIN_FACTOR_BYTES ((size_t)1 << 28) /* the users' stored factors, at most */

typedef struct foldin {
    const mf_model *m;
    const unlearn_request *req;
    const unlearn_params *params;
    const unlearn_rows *rows;
    int k, k1;
    unlearn_groups ru;     /* retained ratings by affected user */
    unlearn_groups fi;     /* forget ratings by item of F */
    unlearn_groups ri;     /* retained ratings by item of F */
    ptrdiff_t *r_item_pos; /* per retained rating: its item's position in rows->items, or -1 */
    ptrdiff_t *r_user_pos; /* per retained rating: its user's position in rows->users, or -1 */
    float *P1, *bu1;       /* new user rows, n_users(A) x k */
    float *Q1, *bi1;       /* new item rows, n_items(I_F) x k */
    float *X, *y, *A;      /* work buffers */
    float *U; /* with several sweeps: each affected user's first-sweep factor, k1 x k1 */
} foldin;

static const float *item_row(const foldin *f, int32_t item, ptrdiff_t pos, float *bias) {
    if (pos >= 0) {
        *bias = f->bi1[pos];
        return f->Q1 + (size_t)pos * (size_t)f->k;
    }
    *bias = f->m->item_bias[item];
    return f->m->Q + (size_t)item * (size_t)f->k;
}

/* Solve A x = b in place for a small SPD matrix (row-major, upper triangle
 * filled): right-looking Cholesky A = U'U and two triangular solves, written
 * so that every O(n^3) and O(n^2) inner loop is an axpy over a contiguous row
 * (vectorisable without reassociating sums). OpenBLAS's ssyrk/sposv_ spend
 * more time packing panels than computing at K+1 = 65 (measured with perf),
 * hence this direct version for the per-user systems. Returns 0, or -1 when
 * A is not positive definite. */
static int chol_factor(int n, float *A) {
    for (int j = 0; j < n; j++) {
        float *uj = A + (size_t)j * (size_t)n;
        if (!(uj[j] > 0))
            return -1;
        float ujj = sqrtf(uj[j]), inv = 1.0f / ujj;
        for (int c = j; c < n; c++)
            uj[c] *= inv;
        for (int r = j + 1; r < n; r++) {
            float *ar = A + (size_t)r * (size_t)n, ur = uj[r];
            for (int c = r; c < n; c++)
                ar[c] -= ur * uj[c];
        }
    }
    return 0;
}

/* b = (U'U)^-1 b for the factor U chol_factor() left in A. */
static void chol_apply(int n, const float *A, float *b) {
    for (int j = 0; j < n; j++) { /* U' y = b, column by column */
        const float *uj = A + (size_t)j * (size_t)n;
        float yj = b[j] / uj[j];
        b[j] = yj;
        for (int c = j + 1; c < n; c++)
            b[c] -= uj[c] * yj;
    }
    for (int j = n - 1; j >= 0; j--) { /* U x = y */
        const float *uj = A + (size_t)j * (size_t)n;
        float acc = b[j];
        for (int c = j + 1; c < n; c++)
            acc -= uj[c] * b[c];
        b[j] = acc / uj[j];
    }
}

static int chol_solve(int n, float *A, float *b) {
    if (chol_factor(n, A) != 0)
        return -1;
    chol_apply(n, A, b);
    return 0;
}

/* A += x x' (upper triangle), rhs += y x, for x of n floats. */
static void gram_add(int n, float *A, float *rhs, const float *x, float y) {
    for (int r = 0; r < n; r++) {
        float *ar = A + (size_t)r * (size_t)n, xr = x[r];
        for (int c = r; c < n; c++)
            ar[c] += xr * x[c];
        rhs[r] += y * xr;
    }
}

/* m1's error on a rating, with user row (p, bu) and item row (q, bi). */
static float err_of(const mf_model *m, float value, const float *p, float bu, const float *q,
                    float bi) {
    float dot = 0;
    for (int d = 0; d < m->k; d++)
        dot += p[d] * q[d];
    return value - m->global_mean - bu - bi - dot;
}

/* Accumulate s * e * [p; 1] into g. */
static void axpy_x(int k, float s, const float *p, float *g) {
    for (int d = 0; d < k; d++)
        g[d] += s * p[d];
    g[k] += s;
}

/* Ridge solve of [p_u; b_u] for affected user at position a. */
static int solve_user(const foldin *f, size_t a, float *A, float *x) {
    const mf_model *m = f->m;
    int k = f->k, k1 = f->k1;
    size_t b0 = f->ru.start[a], n = f->ru.start[a + 1] - b0;
    float *p = f->P1 + a * (size_t)k;
    if (n == 0) {
        memset(p, 0, (size_t)k * sizeof(*p));
        f->bu1[a] = 0;
        return UL_OK;
    }
    float *rhs = A + (size_t)k1 * (size_t)k1;
    memset(A, 0, (size_t)(k1 + 1) * (size_t)k1 * sizeof(float));
    for (size_t j = 0; j < n; j++) {
        size_t r = f->ru.idx[b0 + j];
        const ul_rating *rt = &f->req->retain[r];
        float bi;
        const float *q = item_row(f, rt->item, f->r_item_pos[r], &bi);
        memcpy(x, q, (size_t)k * sizeof(float));
        x[k] = 1.0f;
        gram_add(k1, A, rhs, x, rt->value - m->global_mean - bi);
    }
    for (int d = 0; d < k; d++)
        A[(size_t)d * (size_t)k1 + (size_t)d] +=
            f->params->foldin_reg * (float)n + f->params->foldin_reg_const;
    A[(size_t)k * (size_t)k1 + (size_t)k] += f->params->foldin_reg_bias * (float)n + 1e-6f;
    if (chol_factor(k1, A) != 0)
        return UL_ERR_STATE;
    chol_apply(k1, A, rhs);
    if (f->U != NULL)
        memcpy(f->U + a * (size_t)k1 * (size_t)k1, A, (size_t)k1 * (size_t)k1 * sizeof(float));
    memcpy(p, rhs, (size_t)k * sizeof(*p));
    f->bu1[a] = rhs[k];
    return UL_OK;
}

/* A later sweep's user solve, against item rows the item step moved: the
 * same system with those rows, solved by iterative refinement from the
 * previous solution with the factor of the first sweep's system as the
 * preconditioner, z += (U'U)^-1 (rhs' - H' z), H' z computed rating by
 * rating. Each pass is O(n K + K^2) instead of the O(n K^2 + K^3) of a
 * fresh solve; the error shrinks by |I - H^-1 H'| a pass, small as long
 * as the step moves the item rows by a fraction of their size. */
static int refine_user(const foldin *f, size_t a, float *A, float *r) {
    const mf_model *m = f->m;
    int k = f->k, k1 = f->k1;
    size_t b0 = f->ru.start[a], n = f->ru.start[a + 1] - b0;
    if (n == 0)
        return UL_OK; /* the ridge solution with no data: still 0 */
    float *p = f->P1 + a * (size_t)k;
    const float *U = f->U + a * (size_t)k1 * (size_t)k1;
    float pen = f->params->foldin_reg * (float)n + f->params->foldin_reg_const;
    float pen_b = f->params->foldin_reg_bias * (float)n + 1e-6f;
    double first = 0, last = 0;
    for (int it = 0; it < FOLDIN_REFINE_PASSES; it++) {
        for (int d = 0; d < k; d++)
            r[d] = -pen * p[d];
        r[k] = -pen_b * f->bu1[a];
        for (size_t j = 0; j < n; j++) {
            size_t ri = f->ru.idx[b0 + j];
            const ul_rating *rt = &f->req->retain[ri];
            float bi;
            const float *q = item_row(f, rt->item, f->r_item_pos[ri], &bi);
            axpy_x(k, err_of(m, rt->value, p, f->bu1[a], q, bi), q, r);
        }
        chol_apply(k1, U, r);
        last = 0;
        for (int d = 0; d < k; d++) {
            p[d] += r[d];
            last += (double)r[d] * r[d];
        }
        f->bu1[a] += r[k];
        last += (double)r[k] * r[k];
        if (it == 0)
            first = last;
    }
    /* Not contracting fast enough (the items moved too far for the old
     * factor): solve afresh. */
    if (last > FOLDIN_REFINE_SLOW * first)
        return solve_user(f, a, A, r);
    return UL_OK;
}

/* The user sweep, split over threads: each user's solve reads shared rows
 * and writes only its own output row, so results do not depend on the
 * thread count. */
typedef struct user_job {
    const foldin *f;
    size_t from, to;
    float *scratch;
    int refine; /* 1: refine_user (a later sweep), 0: solve_user */
    int rc;
} user_job;

static void *user_job_run(void *arg) {
    user_job *j = arg;
    int k1 = j->f->k1;
    float *A = j->scratch, *x = j->scratch + (size_t)(k1 + 1) * (size_t)k1;
    for (size_t a = j->from; a < j->to && j->rc == UL_OK; a++) {
        if (j->refine)
            j->rc = refine_user(j->f, a, A, x);
        else
            j->rc = solve_user(j->f, a, A, x);
    }
    return NULL;
}

static int solve_users(foldin *f, int refine) {
    size_t n = f->rows->n_users, k1 = (size_t)f->k1;
    int nt = f->params->threads > 0 ? f->params->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nt > FOLDIN_MAX_THREADS)
        nt = FOLDIN_MAX_THREADS;
    if ((size_t)nt > n / 64)
        nt = n / 64 > 1 ? (int)(n / 64) : 1; /* small sweeps: not worth a thread */
    user_job jobs[FOLDIN_MAX_THREADS];
    pthread_t tid[FOLDIN_MAX_THREADS];
    float *scratch = malloc((size_t)nt * ((k1 + 1) * k1 + k1) * sizeof(float));
    if (scratch == NULL)
        return UL_ERR_NOMEM;
    int started = 0, rc = UL_OK;
    for (int t = 0; t < nt; t++) {
        jobs[t] = (user_job){f,
                             n * (size_t)t / (size_t)nt,
                             n * (size_t)(t + 1) / (size_t)nt,
                             scratch + (size_t)t * ((k1 + 1) * k1 + k1),
                             refine,
                             UL_OK};
        if (t > 0 && pthread_create(&tid[t], NULL, user_job_run, &jobs[t]) == 0)
            started |= 1 << t;
        else if (t > 0)
            user_job_run(&jobs[t]); /* no thread: do it here */
    }
    user_job_run(&jobs[0]);
    for (int t = 1; t < nt; t++)
        if (started & (1 << t))
            pthread_join(tid[t], NULL);
    for (int t = 0; t < nt; t++)
        if (jobs[t].rc != UL_OK)
            rc = jobs[t].rc;
    free(scratch);
    return rc;
}

/* S + L over a seeded sample of users' [p_u; 1] (row-major upper in f->A). */
static void item_hessian(foldin *f) {
    const mf_model *m = f->m;
    int k = f->k, k1 = f->k1;
    size_t ns = (size_t)m->n_users < FOLDIN_SAMPLE_USERS ? (size_t)m->n_users : FOLDIN_SAMPLE_USERS;
    rng r;
    rng_seed(&r, rng_derive(f->params->seed, 0xf01d));
    for (size_t j = 0; j < ns; j++) {
        size_t u = ns == (size_t)m->n_users ? j : (size_t)rng_below(&r, (uint64_t)m->n_users);
        memcpy(f->X + j * (size_t)k1, m->P + u * (size_t)k, (size_t)k * sizeof(float));
        f->X[j * (size_t)k1 + (size_t)k] = 1.0f;
    }
    /* Shrink towards an isotropic moment with the same mean square, weight
     * FOLDIN_SHRINK users: negligible on a full model (4,096 sampled), but
     * the worker hands us a sub-model holding only the affected users, and
     * the moment of one or two users is nearly singular. */
    double sq = 0;
    for (size_t j = 0; j < ns; j++)
        for (int d = 0; d < k; d++)
            sq += (double)f->X[j * (size_t)k1 + (size_t)d] * f->X[j * (size_t)k1 + (size_t)d];
    float iso = (float)(sq / ((double)ns * (double)k)), wt = (float)ns + FOLDIN_SHRINK;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, k1, (int)ns, 1.0f / wt, f->X, k1, 0.0f, f->A,
                k1);
    for (int d = 0; d < k; d++)
        f->A[(size_t)d * (size_t)k1 + (size_t)d] +=
            FOLDIN_SHRINK / wt * iso + f->params->foldin_reg;
    f->A[(size_t)k * (size_t)k1 + (size_t)k] += FOLDIN_SHRINK / wt;
    f->A[(size_t)k * (size_t)k1 + (size_t)k] += f->params->foldin_reg_bias + 1e-6f;
}

/* Gradient (halved) of the item's objective without F at m1's row. */
static void item_gradient(foldin *f, size_t c, float *g) {
    const mf_model *m = f->m;
    int k = f->k;
    int32_t item = f->rows->items[c];
    const float *q0 = m->Q + (size_t)item * (size_t)k;
    float bi0 = m->item_bias[item];
    memset(g, 0, (size_t)f->k1 * sizeof(*g));
    for (size_t j = f->fi.start[c]; j < f->fi.start[c + 1]; j++) {
        const ul_rating *rt = &f->req->forget[f->fi.idx[j]];
        const float *p0 = m->P + (size_t)rt->user * (size_t)k;
        float bu0 = m->user_bias[rt->user];
        axpy_x(k, err_of(m, rt->value, p0, bu0, q0, bi0), p0, g);
    }
    for (size_t j = f->ri.start[c]; j < f->ri.start[c + 1]; j++) {
        size_t r = f->ri.idx[j];
        const ul_rating *rt = &f->req->retain[r];
        ptrdiff_t a = f->r_user_pos[r];
        if (a < 0)
            continue; /* an unaffected user's rating: its row did not move */
        const float *p0 = m->P + (size_t)rt->user * (size_t)k;
        float bu0 = m->user_bias[rt->user];
        const float *p1 = f->P1 + (size_t)a * (size_t)k;
        float bu1 = f->bu1[a];
        axpy_x(k, err_of(m, rt->value, p0, bu0, q0, bi0), p0, g);
        axpy_x(k, -err_of(m, rt->value, p1, bu1, q0, bi0), p1, g);
    }
    float nf = (float)(f->fi.start[c + 1] - f->fi.start[c]);
    cblas_saxpy(k, -nf * f->params->foldin_reg, q0, 1, g, 1);
    g[k] -= nf * f->params->foldin_reg_bias * bi0;
}

/* The known raters of item c (the affected users' remaining ratings on
 * it, with their new rows): their count, and the trace of the curvature
 * they give, sum (|p'|^2 + 1). */
static size_t known_raters(const foldin *f, size_t c, double *trace) {
    size_t r = 0;
    *trace = 0;
    for (size_t j = f->ri.start[c]; j < f->ri.start[c + 1]; j++) {
        ptrdiff_t a = f->r_user_pos[f->ri.idx[j]];
        if (a < 0)
            continue;
        const float *p1 = f->P1 + (size_t)a * (size_t)f->k;
        *trace += (double)cblas_sdot(f->k, p1, 1, p1, 1) + 1.0;
        r++;
    }
    return r;
}

/* v = (h A)^-1 g on entry (A = S + L, factored in f->A); on return H^-1 g
 * for H = h A + U U', U the known raters' new rows [p'; 1] (r of them):
 * their exact curvature on top of the average one, by Woodbury,
 * H^-1 g = v - W (I + U' W)^-1 U' v with W = (h A)^-1 U. W is k1 x r and
 * M r x r scratch. */
static int add_known_curvature(const foldin *f, size_t c, size_t r, float h, float *v, float *W,
                               float *M) {
    int k = f->k, k1 = f->k1, nr = (int)r, info = 0;
    size_t w = 0;
    for (size_t j = f->ri.start[c]; j < f->ri.start[c + 1]; j++) {
        ptrdiff_t a = f->r_user_pos[f->ri.idx[j]];
        if (a < 0)
            continue;
        memcpy(W + w * (size_t)k1, f->P1 + (size_t)a * (size_t)k, (size_t)k * sizeof(float));
        W[w * (size_t)k1 + (size_t)k] = 1.0f;
        w++;
    }
    float *U = W + r * (size_t)k1; /* a copy of U before W is solved in place */
    memcpy(U, W, r * (size_t)k1 * sizeof(float));
    spotrs_("L", &k1, &nr, f->A, &k1, W, &k1, &info);
    if (info != 0)
        return UL_ERR_STATE;
    cblas_sscal(k1 * nr, 1.0f / h, W, 1);
    float *t = M + r * r;
    for (size_t x = 0; x < r; x++) {
        for (size_t y = 0; y < r; y++)
            M[x * r + y] = cblas_sdot(k1, U + x * (size_t)k1, 1, W + y * (size_t)k1, 1) +
                           (x == y ? 1.0f : 0.0f);
        t[x] = cblas_sdot(k1, U + x * (size_t)k1, 1, v, 1);
    }
    if (chol_solve(nr, M, t) != 0)
        return UL_ERR_STATE;
    cblas_sgemv(CblasColMajor, CblasNoTrans, k1, nr, -1.0f, W, k1, t, 1, 1.0f, v, 1);
    return UL_OK;
}

/* Item c when every rating it has left is a known rater's (r = n'_i):
 * the exact ridge solve on them, min sum (r - mu - b_u' - x'.z)^2 +
 * n'_i z'Lz. The anchored step would assume the item stationary, which a
 * stream of requests moving its only raters makes false; the exact solve
 * needs no such assumption. A is k1 x (k1 + 1) scratch; into z. */
static int solve_known_item(const foldin *f, size_t c, size_t r, float *A, float *x, float *z) {
    const mf_model *m = f->m;
    int k = f->k, k1 = f->k1;
    float *rhs = A + (size_t)k1 * (size_t)k1;
    memset(A, 0, (size_t)(k1 + 1) * (size_t)k1 * sizeof(float));
    for (size_t j = f->ri.start[c]; j < f->ri.start[c + 1]; j++) {
        size_t ri = f->ri.idx[j];
        ptrdiff_t a = f->r_user_pos[ri];
        if (a < 0)
            continue;
        memcpy(x, f->P1 + (size_t)a * (size_t)k, (size_t)k * sizeof(float));
        x[k] = 1.0f;
        gram_add(k1, A, rhs, x, f->req->retain[ri].value - m->global_mean - f->bu1[a]);
    }
    for (int d = 0; d < k; d++)
        A[(size_t)d * (size_t)k1 + (size_t)d] += f->params->foldin_reg * (float)r;
    A[(size_t)k * (size_t)k1 + (size_t)k] += f->params->foldin_reg_bias * (float)r + 1e-6f;
    if (chol_solve(k1, A, rhs) != 0)
        return UL_ERR_STATE;
    memcpy(z, rhs, (size_t)k1 * sizeof(float));
    return UL_OK;
}

/* One Newton step per item from m1's row, z = z0 - H^-1 g, with the shared
 * Hessian H = h (S + L), h = n'_i + prior. Where the item's known raters
 * carry a real share of its curvature (few ratings left, or raters with
 * rows far above the average user's), their exact curvature is added
 * (add_known_curvature): the average moment alone then under-estimates H
 * along their rows many times over, and the step overshoots (in a stream
 * of requests, where the same item is stepped again and again, it
 * diverged). Popular items are left to the shared Hessian. */
static int update_items(foldin *f) {
    const mf_model *m = f->m;
    int k = f->k, k1 = f->k1;
    size_t ni = f->rows->n_items;
    item_hessian(f);
    double tr_s = 0;
    for (int d = 0; d < k1; d++)
        tr_s += f->A[(size_t)d * (size_t)k1 + (size_t)d];
    int info = 0;
    spotrf_("L", &k1, f->A, &k1, &info);
    if (info != 0)
        return UL_ERR_STATE;
    float *G = f->X; /* ni x k1, column-major: one right-hand side per item */
    for (size_t c = 0; c < ni; c++)
        item_gradient(f, c, G + c * (size_t)k1);
    int nrhs = (int)ni;
    spotrs_("L", &k1, &nrhs, f->A, &k1, G, &k1, &info);
    if (info != 0)
        return UL_ERR_STATE;
    float *W = malloc((2 * FOLDIN_KNOWN_MAX * (size_t)k1) * sizeof(float));
    float *M = malloc((FOLDIN_KNOWN_MAX + 1) * FOLDIN_KNOWN_MAX * sizeof(float));
    float *S = malloc(((size_t)k1 + 2) * (size_t)k1 * sizeof(float)); /* solve_known_item */
    int rc = W && M && S ? UL_OK : UL_ERR_NOMEM;
    for (size_t c = 0; c < ni && rc == UL_OK; c++) {
        int32_t item = f->rows->items[c];
        int64_t n_all = f->req->item_count[item];
        int64_t n_left = n_all - (int64_t)(f->fi.start[c + 1] - f->fi.start[c]);
        float *q1 = f->Q1 + c * (size_t)k;
        float *step = G + c * (size_t)k1;
        if (n_left <= 0) {
            memset(q1, 0, (size_t)k * sizeof(*q1)); /* no rating left: the ridge solution */
            f->bi1[c] = 0;
            continue;
        }
        const float *q0 = m->Q + (size_t)item * (size_t)k;
        float h = (float)n_left + f->params->foldin_item_prior;
        cblas_sscal(k1, 1.0f / h, step, 1);
        double known;
        size_t r = known_raters(f, c, &known);
        if (r >= (size_t)n_left) { /* every rating left is known: solve it */
            float *z = S + (size_t)(k1 + 1) * (size_t)k1;
            rc = solve_known_item(f, c, r, S, M, z);
            memcpy(q1, z, (size_t)k * sizeof(float));
            f->bi1[c] = z[k];
            continue;
        }
        if (r > 0 && r <= FOLDIN_KNOWN_MAX && known > FOLDIN_KNOWN_SHARE * h * tr_s)
            rc = add_known_curvature(f, c, r, h, step, W, M);
        for (int d = 0; d < k; d++)
            q1[d] = q0[d] - step[d];
        f->bi1[c] = m->item_bias[item] - step[k];
    }
    free(W);
    free(M);
    free(S);
    return rc;
}

static void foldin_free(foldin *f) {
    unlearn_groups_free(&f->ru);
    unlearn_groups_free(&f->fi);
    unlearn_groups_free(&f->ri);
    free(f->r_item_pos);
    free(f->r_user_pos);
    free(f->P1);
    free(f->bu1);
    free(f->Q1);
    free(f->bi1);
    free(f->X);
    free(f->y);
    free(f->A);
    free(f->U);
}

static size_t max_group(const unlearn_groups *g, size_t n_rows) {
    size_t mx = 0;
    for (size_t r = 0; r < n_rows; r++)
        if (g->start[r + 1] - g->start[r] > mx)
            mx = g->start[r + 1] - g->start[r];
    return mx;
}

static int foldin_setup(foldin *f) {
    const unlearn_request *req = f->req;
    const unlearn_rows *rows = f->rows;
    size_t k = (size_t)f->k, k1 = (size_t)f->k1;
    if (unlearn_groups_build(req->retain, req->n_retain, 0, rows, &f->ru) ||
        unlearn_groups_build(req->forget, req->n_forget, 1, rows, &f->fi) ||
        unlearn_groups_build(req->retain, req->n_retain, 1, rows, &f->ri))
        return UL_ERR_NOMEM;
    size_t nr = req->n_retain ? req->n_retain : 1;
    f->r_item_pos = malloc(nr * sizeof(ptrdiff_t));
    f->r_user_pos = malloc(nr * sizeof(ptrdiff_t));
    f->P1 = calloc(rows->n_users * k + 1, sizeof(float));
    f->bu1 = calloc(rows->n_users + 1, sizeof(float));
    f->Q1 = calloc(rows->n_items * k + 1, sizeof(float));
    f->bi1 = calloc(rows->n_items + 1, sizeof(float));
    size_t xr = max_group(&f->ru, rows->n_users);
    if (xr < rows->n_items)
        xr = rows->n_items;
    if (xr < FOLDIN_SAMPLE_USERS)
        xr = FOLDIN_SAMPLE_USERS;
    f->X = malloc(xr * k1 * sizeof(float));
    f->y = malloc(xr * sizeof(float));
    f->A = malloc((k1 + 1) * k1 * sizeof(float));
    if (!f->r_item_pos || !f->r_user_pos || !f->P1 || !f->bu1 || !f->Q1 || !f->bi1 || !f->X ||
        !f->y || !f->A)
        return UL_ERR_NOMEM;
    for (size_t r = 0; r < req->n_retain; r++) {
        f->r_item_pos[r] = unlearn_pos(rows, 1, req->retain[r].item);
        f->r_user_pos[r] = unlearn_pos(rows, 0, req->retain[r].user);
    }
    /* Item rows start as m1's, so the first user sweep sees m1's items. */
    for (size_t c = 0; c < rows->n_items; c++) {
        memcpy(f->Q1 + c * k, f->m->Q + (size_t)rows->items[c] * k, k * sizeof(float));
        f->bi1[c] = f->m->item_bias[rows->items[c]];
    }
    return UL_OK;
}

static void foldin_commit(const foldin *f, mf_model *m, int items) {
    size_t k = (size_t)f->k;
    for (size_t a = 0; a < f->rows->n_users; a++) {
        int32_t u = f->rows->users[a];
        memcpy(m->P + (size_t)u * k, f->P1 + a * k, k * sizeof(float));
        m->user_bias[u] = f->bu1[a];
    }
    for (size_t c = 0; items && c < f->rows->n_items; c++) {
        int32_t i = f->rows->items[c];
        memcpy(m->Q + (size_t)i * k, f->Q1 + c * k, k * sizeof(float));
        m->item_bias[i] = f->bi1[c];
    }
}

int foldin_item_step(const mf_model *m, const unlearn_request *req, const unlearn_params *params,
                     const unlearn_rows *rows, const float *P1, const float *bu1, float *Q1,
                     float *bi1) {
    foldin f = {.m = m, .req = req, .params = params, .rows = rows, .k = m->k, .k1 = m->k + 1};
    size_t k = (size_t)m->k;
    int rc = req->item_count == NULL ? UL_ERR_ARG : foldin_setup(&f);
    if (rc == UL_OK && P1 == NULL) {
        rc = solve_users(&f, 0);
    } else if (rc == UL_OK) {
        memcpy(f.P1, P1, rows->n_users * k * sizeof(float));
        memcpy(f.bu1, bu1, rows->n_users * sizeof(float));
    }
    if (rc == UL_OK)
        rc = update_items(&f);
    if (rc == UL_OK) {
        memcpy(Q1, f.Q1, rows->n_items * k * sizeof(float));
        memcpy(bi1, f.bi1, rows->n_items * sizeof(float));
    }
    foldin_free(&f);
    return rc;
}

int foldin_apply(mf_model *m, const unlearn_request *req, const unlearn_params *params,
                 const unlearn_rows *rows, int *users_changed, int *items_changed, char *errstr,
                 size_t errstr_size) {
    foldin f = {.m = m, .req = req, .params = params, .rows = rows, .k = m->k, .k1 = m->k + 1};
    int items = params->foldin_items && req->item_count != NULL;
    int rc = foldin_setup(&f);
    if (rc != UL_OK) {
        ul_set_err(errstr, errstr_size, "foldin: out of memory");
        goto done;
    }
    /* Later sweeps refine the users from the first sweep's factors when
     * they fit in memory (FOLDIN_FACTOR_BYTES), else solve afresh. */
    size_t fbytes = f.rows->n_users * (size_t)f.k1 * (size_t)f.k1 * sizeof(float);
    if (params->foldin_sweeps > 1 && params->foldin_refine && fbytes <= FOLDIN_FACTOR_BYTES)
        f.U = malloc(fbytes ? fbytes : 1); /* NULL: fresh solves */
    for (int s = 0; s < params->foldin_sweeps; s++) {
        rc = solve_users(&f, s > 0 && f.U != NULL);
        if (rc == UL_OK && items)
            rc = update_items(&f);
        if (rc == UL_ERR_NOMEM) {
            ul_set_err(errstr, errstr_size, "foldin: out of memory");
            goto done;
        }
        if (rc != UL_OK) {
            ul_set_err(errstr, errstr_size,
                       "foldin: a normal-equation system is not positive definite "
                       "(non-finite model rows?)");
            goto done;
        }
    }
    foldin_commit(&f, m, items);
    *users_changed = 1;
    *items_changed = items;
done:
    foldin_free(&f);
    return rc;
}
