/* demo_stack.c: broker, Redis and worker in one process (see demo_stack.h).
 *
 * DESIGN: the worker runs in-process on a thread rather than as a child
 * `unlearnd worker`. One process has one signal handler and one cleanup
 * path, so nothing can outlive the demo: the broker's threads die with it,
 * and redis-server is started from the main thread, whose exit it follows
 * (PR_SET_PDEATHSIG). A fatal worker error is seen directly instead of
 * through a log file. The worker's loop only reads its stop flag and its own
 * state, so the main thread talks to it through Redis and Kafka, like any
 * other client. */
#include "demo_stack.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "redis_local.h"
#include "shard.h"
#include "ul_clock.h"
#include "ul_err.h"
#include "worker.h"

struct demo_stack {
    ul_config *cfg;
    broker *b;
    redis_local *rl;
    store *st;
    worker *w;
    int32_t n_parts;
    pthread_t thread;
    int thread_started;
    volatile sig_atomic_t stop; /* the worker loop's stop flag */
    pthread_mutex_t mu;         /* guards done, rc, err */
    int done, rc;
    char err[UL_ERRSTR_SIZE];
};

static void *worker_main(void *arg) {
    demo_stack *s = arg;
    char err[UL_ERRSTR_SIZE] = "";
    int rc = worker_run(s->w, &s->stop, err, sizeof(err));
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->done = 1;
    snprintf(s->err, sizeof(s->err), "%s", err);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int set_cfg(ul_config *cfg, const char *key, const char *value, char *errstr,
                   size_t errstr_size) {
    return config_set(cfg, key, value, "demo", errstr, errstr_size);
}

static int start_services(demo_stack *s, ul_log *lg, int partitions, char *errstr,
                          size_t errstr_size) {
    broker_opts bo;
    broker_opts_init(&bo);
    broker_opts_from_config(&bo, s->cfg);
    bo.partitions = partitions;
    bo.bootstrap_file = NULL;
    s->b = broker_start(&bo, lg, errstr, errstr_size);
    if (s->b == NULL)
        return UL_ERR_IO;
    s->n_parts = partitions;
    s->rl = redis_local_start(s->cfg->redis_server_path, 10000, errstr, errstr_size);
    if (s->rl == NULL)
        return UL_ERR_IO;
    if (log_add_secret(lg, redis_local_password(s->rl)) != UL_OK) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return UL_ERR_NOMEM;
    }
    char port[16];
    snprintf(port, sizeof(port), "%d", redis_local_port(s->rl));
    if (set_cfg(s->cfg, "kafka.bootstrap.servers", broker_bootstraps(s->b), errstr, errstr_size) !=
            UL_OK ||
        set_cfg(s->cfg, "redis.host", redis_local_host(s->rl), errstr, errstr_size) != UL_OK ||
        set_cfg(s->cfg, "redis.port", port, errstr, errstr_size) != UL_OK ||
        set_cfg(s->cfg, "redis.password", redis_local_password(s->rl), errstr, errstr_size) !=
            UL_OK ||
        set_cfg(s->cfg, "redis.user", "", errstr, errstr_size) != UL_OK ||
        set_cfg(s->cfg, "redis.cluster", "", errstr, errstr_size) != UL_OK)
        return UL_ERR_ARG;
    return config_validate(s->cfg, 1, errstr, errstr_size);
}

static int connect_store(demo_stack *s, char *errstr, size_t errstr_size) {
    store_opts so;
    worker_store_opts(s->cfg, &so); /* set_cfg pointed redis.* at the local server */
    s->st = store_connect(&so, errstr, errstr_size);
    return s->st ? UL_OK : UL_ERR_IO;
}

demo_stack *demo_stack_start(ul_config *cfg, ul_log *lg, int partitions, char *errstr,
                             size_t errstr_size) {
    demo_stack *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    pthread_mutex_init(&s->mu, NULL);
    if (start_services(s, lg, partitions, errstr, errstr_size) != UL_OK ||
        connect_store(s, errstr, errstr_size) != UL_OK)
        goto fail;
    s->w = worker_new(cfg, lg, errstr, errstr_size);
    if (s->w == NULL)
        goto fail;
    if (pthread_create(&s->thread, NULL, worker_main, s) != 0) {
        ul_set_err(errstr, errstr_size, "cannot start the worker thread");
        goto fail;
    }
    s->thread_started = 1;
    return s;
fail:
    demo_stack_stop(s);
    return NULL;
}

store *demo_stack_store(demo_stack *s) {
    return s->st;
}

int32_t demo_stack_partitions(const demo_stack *s) {
    return s->n_parts;
}

int demo_stack_worker_alive(demo_stack *s, char *errstr, size_t errstr_size) {
    pthread_mutex_lock(&s->mu);
    int done = s->done;
    if (done)
        ul_set_err(errstr, errstr_size, "the worker stopped: %s",
                   s->err[0] ? s->err : "(no message)");
    pthread_mutex_unlock(&s->mu);
    return done ? UL_ERR_STATE : UL_OK;
}

/* 1 when every partition's durable offset reached its target. */
static int all_applied(demo_stack *s, const int64_t *hwm, uint64_t *applied, char *errstr,
                       size_t errstr_size, int *rc) {
    int done = 1;
    *applied = 0;
    for (int32_t p = 0; p < s->n_parts; p++) {
        shard_meta meta;
        int found = 0;
        *rc = store_meta_get(s->st, p, &meta, &found, errstr, errstr_size);
        if (*rc != UL_OK)
            return 0;
        if (!found) {
            done &= hwm[p] <= 0;
            continue;
        }
        *applied += meta.applied;
        /* A partition taken but never checkpointed has a meta without offsets. */
        done &= hwm[p] <= 0 || meta.next_offset[SHARD_RATINGS] >= hwm[p];
    }
    return done;
}

/* Between two looks of a wait: UL_OK after sleeping 20 ms, or why to stop
 * (the worker failed, interrupted, or the deadline passed: UL_ERR_IO, the
 * caller says what it waited for). */
static int wait_tick(demo_stack *s, int64_t deadline, volatile sig_atomic_t *interrupted,
                     char *errstr, size_t errstr_size) {
    struct timespec tick = {0, 20 * 1000 * 1000};
    if (demo_stack_worker_alive(s, errstr, errstr_size) != UL_OK)
        return UL_ERR_STATE;
    if (*interrupted) {
        ul_set_err(errstr, errstr_size, "interrupted");
        return UL_ERR_ABORTED;
    }
    if (ul_clock_mono_ms() >= deadline)
        return UL_ERR_IO;
    nanosleep(&tick, NULL);
    return UL_OK;
}

int demo_stack_wait_applied(demo_stack *s, const int64_t *hwm, int timeout_ms,
                            volatile sig_atomic_t *interrupted, uint64_t *applied, char *errstr,
                            size_t errstr_size) {
    int64_t deadline = ul_clock_mono_ms() + timeout_ms;
    for (;;) {
        int rc = UL_OK;
        if (all_applied(s, hwm, applied, errstr, errstr_size, &rc))
            return UL_OK;
        if (rc != UL_OK)
            return rc;
        rc = wait_tick(s, deadline, interrupted, errstr, errstr_size);
        if (rc == UL_ERR_IO)
            ul_set_err(errstr, errstr_size,
                       "the worker applied only %" PRIu64 " ratings within %d ms (is the machine "
                       "overloaded? raise --timeout)",
                       *applied, timeout_ms);
        if (rc != UL_OK)
            return rc;
    }
}

int demo_stack_wait_quiet(demo_stack *s, int timeout_ms, volatile sig_atomic_t *interrupted,
                          char *errstr, size_t errstr_size) {
    int64_t deadline = ul_clock_mono_ms() + timeout_ms, quiet_since = -1;
    int64_t hold =
        2 * s->cfg->checkpoint_interval_ms > 500 ? 2 * s->cfg->checkpoint_interval_ms : 500;
    metrics *m = worker_metrics(s->w);
    for (;;) {
        int64_t now = ul_clock_mono_ms();
        if (metrics_gauge_value(m, METRICS_TRAINING_PAUSED) < 1.0)
            quiet_since = -1;
        else if (quiet_since < 0)
            quiet_since = now;
        if (quiet_since >= 0 && now - quiet_since >= hold)
            return UL_OK;
        int rc = wait_tick(s, deadline, interrupted, errstr, errstr_size);
        if (rc == UL_ERR_IO)
            ul_set_err(errstr, errstr_size,
                       "continuous training did not pause within %d ms (is the machine "
                       "overloaded? raise --timeout)",
                       timeout_ms);
        if (rc != UL_OK)
            return rc;
    }
}

void demo_stack_stop(demo_stack *s) {
    if (s == NULL)
        return;
    s->stop = 1;
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    worker_destroy(s->w);
    store_destroy(s->st);
    broker_stop(s->b);
    redis_local_stop(s->rl);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
