/* mf_par.h: a small fork-join for core/mf*.c: run tasks 0..n-1 on up to a
 * given number of threads. Internal to core/, not part of the API.
 *
 * Tasks are handed out from an atomic counter in any order; a caller that
 * needs a result independent of the thread count has each task write its
 * own slot and combines the slots in task order afterwards. */
#ifndef UL_MF_PAR_H
#define UL_MF_PAR_H

#include <stddef.h>

typedef void (*mf_par_fn)(void *ctx, size_t task);

/* The number of cores online (at least 1). */
int mf_par_cores(void);

/* Run fn(ctx, 0..n_tasks-1) on min(threads, n_tasks) threads, the caller's
 * among them; threads < 1 means all cores. If a thread cannot be created
 * the remaining tasks run on the threads that exist (the caller's at
 * least), so every task runs exactly once. Returns when all have run. */
void mf_par_run(size_t n_tasks, int threads, mf_par_fn fn, void *ctx);

#endif
