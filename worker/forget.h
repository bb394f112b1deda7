/* forget.h: an unlearning cycle's computation, in three steps so that the
 * method never runs on the loop thread:
 *
 *   forget_prepare  (loop)    take the eligible requests of every owned
 *                             partition, resolve them against the users'
 *                             histories and snapshot what the method needs
 *                             (the users' rows and histories, their items'
 *                             rows and statistics) into a job; the users are
 *                             marked SHARD_USER_BUSY;
 *   forget_compute  (any)     run the method on the job's own copies: it
 *                             reads and writes nothing else, so the loop goes
 *                             on applying ratings meanwhile;
 *   forget_merge    (loop)    make the result live on top of what happened
 *                             meanwhile (row += new - snapshot), drop F from
 *                             the histories, correct the items
 *                             (live_correct_item), finish the requests and
 *                             hand back one forget_cycle per partition for
 *                             its outbox entry (cycle.h checkpoints and
 *                             publishes them).
 *
 * One job per cycle covers every owned partition (one unlearn_apply call).
 * A partition revoked or lost while its job is out is dropped from it
 * (forget_drop_partition): its part of the result is never merged, and its
 * requests, still buffered in Redis, are run by its next owner.
 *
 * What a receipt says (codec_receipt), per request:
 *   requested        distinct items listed (0 for a time window);
 *   forgotten        remembered ratings removed (a re-rated item counts each
 *                    of its ratings);
 *   not_found        listed items with no remembered rating of the user that
 *                    the history never dropped either: never seen (or
 *                    already forgotten);
 *   beyond_retention for a list: listed items not remembered that the
 *                    history may have dropped (its Bloom filter says so: at
 *                    most this many, false positives possible); for a window:
 *                    the number of dropped ratings if the window overlaps
 *                    their time range (at most; exact when the window covers
 *                    it), else 0. The model may still carry those ratings.
 * For a list, requested = (items with a rating forgotten) + not_found +
 * beyond_retention. See docs/stream.md. */
#ifndef UL_FORGET_H
#define UL_FORGET_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "live.h"
#include "unlearn.h"

typedef struct forget_opts {
    size_t max_batch;   /* cycle.max.batch: requests per cycle, all partitions together */
    const char *method; /* borrowed for the opts' lifetime */
    unlearn_params uparams;
} forget_opts;

/* What a cycle did in one partition, for its outbox entry (publish.h). */
typedef struct forget_cycle {
    int32_t partition;
    uint64_t version;        /* the partition's model version after the cycle */
    codec_receipt *receipts; /* one per request, model_version = version */
    size_t n_receipts;
    int64_t *user_ids; /* changed user rows: ids and bias + factors (rows_vector_dim) */
    float *user_rows;
    size_t n_users;
    int64_t *item_ids; /* changed item rows this partition publishes (each changed item
                        * goes out in one partition's entry): effective bias + factors */
    float *item_rows;
    size_t n_items;
    int32_t *reasons; /* per receipt, the request's codec_reason */
    size_t n_forgotten;
} forget_cycle;

void forget_cycle_free(forget_cycle *c);

typedef struct forget_job forget_job;

/* Take up to o->max_batch eligible requests (a request is eligible once its
 * ratings_hwm is known and the ratings up to it are applied), visiting the
 * owned partitions from `first` on. *out = NULL when none is eligible.
 * Changes nothing but the busy marks of the users it snapshots. On failure
 * (UL_ERR_NOMEM, or UL_ERR_ARG when the sub-model cannot be built) nothing is
 * marked and the requests stay buffered. */
int forget_prepare(live *l, const forget_opts *o, int32_t first, forget_job **out, char *errstr,
                   size_t errstr_size);

/* Run the method on the job (any thread; touches nothing but the job). */
void forget_compute(forget_job *j);

/* Partition p is being given up: its part of the job is never merged. */
void forget_drop_partition(forget_job *j, int32_t p);

/* Merge a computed job into l. On success *out holds one cycle per
 * partition still held (*n_out of them, owned by the caller: free each with
 * forget_cycle_free, then the array), with its outbox entry still to add.
 * UL_ERR_ABORTED when the method failed: nothing changed, the requests stay
 * buffered and errstr says why. UL_ERR_NOMEM: part of the result may be
 * applied (the worker must stop). */
int forget_merge(live *l, forget_job *j, int64_t now_ms, forget_cycle **out, size_t *n_out,
                 char *errstr, size_t errstr_size);

/* Requests and forgotten ratings in the job; seconds the method took. */
size_t forget_job_requests(const forget_job *j);
size_t forget_job_ratings(const forget_job *j);
double forget_job_seconds(const forget_job *j);

/* Free a job; the busy marks of users of partitions still held are cleared
 * (a no-op after forget_merge). NULL is a no-op. */
void forget_job_free(live *l, forget_job *j);

#endif
