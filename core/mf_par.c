/* mf_par.c: the fork-join of mf_par.h. Threads are created per call (tens
 * of microseconds each): callers use it for passes of a millisecond or
 * more, and run small inputs inline. */
#include "mf_par.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define MF_PAR_MAX_THREADS 64

typedef struct par_job {
    mf_par_fn fn;
    void *ctx;
    size_t n_tasks;
    atomic_size_t next;
} par_job;

static void *par_worker(void *arg) {
    par_job *job = arg;
    for (;;) {
        size_t task = atomic_fetch_add(&job->next, 1);
        if (task >= job->n_tasks)
            return NULL;
        job->fn(job->ctx, task);
    }
}

int mf_par_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MF_PAR_MAX_THREADS ? MF_PAR_MAX_THREADS : (int)n;
}

void mf_par_run(size_t n_tasks, int threads, mf_par_fn fn, void *ctx) {
    par_job job = {fn, ctx, n_tasks, 0};
    pthread_t tids[MF_PAR_MAX_THREADS];
    int created = 0;
    if (threads < 1)
        threads = mf_par_cores();
    if ((size_t)threads > n_tasks)
        threads = (int)n_tasks;
    if (threads > MF_PAR_MAX_THREADS)
        threads = MF_PAR_MAX_THREADS;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tids[created], NULL, par_worker, &job) != 0)
            break;
        created++;
    }
    par_worker(&job);
    for (int t = 0; t < created; t++)
        pthread_join(tids[t], NULL);
}
