/* forget_run.h: what the tests of unlearning cycles share (test_forget.c,
 * test_live.c; static functions: each test program includes it once): a
 * forget request as the worker buffers it, and a whole cycle on the calling
 * thread (forget.h: prepare, compute, merge). */
#ifndef UL_FORGET_RUN_H
#define UL_FORGET_RUN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forget.h"
#include "ul_err.h"

/* A cycle's options: at most 100 requests, one thread. */
static forget_opts forget_test_opts(const char *method) {
    forget_opts o;
    memset(&o, 0, sizeof(o));
    o.max_batch = 100;
    o.method = method;
    unlearn_params_init(&o.uparams);
    o.uparams.threads = 1;
    return o;
}

/* A request with offset `offset` (its id "req-<offset>"), by items (n > 0)
 * or by the window from..to, no wait for ratings (watermark 0), unsaved. */
static forget_req forget_test_request(int64_t offset, int64_t user, const int64_t *items,
                                      uint32_t n, int64_t from, int64_t to) {
    forget_req fr;
    memset(&fr, 0, sizeof(fr));
    fr.offset = offset;
    fr.user = user;
    char id[32];
    snprintf(id, sizeof(id), "req-%lld", (long long)offset);
    fr.request_id = strdup(id);
    if (n > 0) {
        fr.items = malloc(n * sizeof(int64_t));
        memcpy(fr.items, items, n * sizeof(int64_t));
        fr.n_items = n;
    } else {
        fr.has_window = 1;
        fr.from = from;
        fr.to = to;
    }
    fr.ratings_hwm = 0;
    fr.unsaved = 1;
    return fr;
}

/* A whole cycle with `method`, completed at 12345 ms: the cycles of the
 * partitions involved (*n of them; forget_test_free), NULL when nothing was
 * eligible. */
static forget_cycle *forget_test_run(live *l, const char *method, size_t *n) {
    char err[UL_ERRSTR_SIZE];
    forget_opts o = forget_test_opts(method);
    forget_job *j = NULL;
    forget_cycle *c = NULL;
    *n = 0;
    if (forget_prepare(l, &o, 0, &j, err, sizeof(err)) != UL_OK)
        fail_msg("prepare: %s", err);
    if (j == NULL)
        return NULL;
    forget_compute(j);
    if (forget_merge(l, j, 12345, &c, n, err, sizeof(err)) != UL_OK)
        fail_msg("merge: %s", err);
    forget_job_free(l, j);
    return c;
}

static void forget_test_free(forget_cycle *c, size_t n) {
    for (size_t i = 0; i < n; i++)
        forget_cycle_free(&c[i]);
    free(c);
}

#endif
