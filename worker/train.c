/* train.c: continuous training of m1 on the loop thread (see train.h).
 *
 * DESIGN
 * - Budget: a credit of milliseconds accrues at the current share of the
 *   wall time that passes (training time included) and training spends it,
 *   so over any long stretch training takes `share` of the loop's time. The
 *   credit is capped at a few slices (so a long checkpoint is made up for
 *   in the next slices, while an idle hour is not a burst) and a slice
 *   starts only when the credit covers a whole one: fewer, full slices cost
 *   less set-up than many short ones, and the loop learns how long it may
 *   block in its poll (train_wait_ms) or when to break out of a long batch
 *   of records (train_due).
 * - An epoch's plan is a snapshot taken when it starts: one slot per owned
 *   user with ratings (partition, user index, prefix sum of history
 *   lengths), and its order a train_perm of the total. Visit i trains the
 *   rating at position perm(i) - start of the slot that holds perm(i)
 *   (binary search). No per-rating array is built or shuffled, so starting
 *   an epoch costs O(users), not O(ratings), and nothing is held across
 *   slices but the plan.
 * - The plan can go stale while the epoch runs (slices interleave with
 *   events): every visit re-checks that the partition is still owned by the
 *   same shard object, that the user index is inside the shard, that no
 *   unlearning cycle holds the user, and that the position is inside the
 *   user's history as it is now. A history that shrank (a forget) or slid
 *   (eviction past the retention) is never read out of bounds; a slid one
 *   trains a neighbouring rating of the same user instead, which is still
 *   one of the ratings training is meant to visit. Ratings that arrived
 *   since the epoch started wait for the next epoch.
 * - Pause: at an epoch's end, if no new data arrived during it (fewer new
 *   ratings than the resume threshold, no forget, same partitions) and its
 *   RMSE improved on the previous epoch's by less than min_improvement
 *   (relative), training pauses. It resumes on new ratings (resume_fraction
 *   of the ratings the last plan held, at least one), a forget (the owned
 *   partitions' `forgotten` counters moved) or a change of the owned
 *   partitions. The per-row schedule (live_sgd) decides how far each row
 *   still moves; the pause only stops spending CPU when nothing improves.
 */
#include "train.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "shard.h"
#include "ul_buf.h"
#include "ul_clock.h"
#include "ul_err.h"

#define STEPS_PER_CLOCK 256    /* visits between clock reads inside a slice */
#define SHARE_WINDOW_MS 5000.0 /* the measured share is over this much wall time */
#define GAUGES_EVERY_MS 250.0  /* gauges refreshed at most this often */
#define CREDIT_SLICES 4        /* the credit is capped at this many slices */
#define STEP_CREDIT_MAX 1e6    /* steps the events may bank ahead (steps_per_event) */
#define LOOKAHEAD 16           /* visits planned this far ahead (two stages of it) */

/* One user of the plan: ratings [end - n, end) of the epoch's index space. */
typedef struct plan_slot {
    uint64_t end;
    int32_t part, uidx;
} plan_slot;

/* A visit planned ahead: the slot and the position in its user's history. */
typedef struct visit_ahead {
    uint32_t slot;
    uint32_t at;
} visit_ahead;

/* What the owned partitions hold now, to tell new data from none. */
typedef struct data_mark {
    uint64_t applied, forgotten;
} data_mark;

struct train {
    train_opts o;
    live *lv;
    metrics *m;
    ul_log *log;
    int32_t n_parts;
    /* budget */
    double credit, last_ms, last_event_ms;
    double step_credit; /* steps allowed by the events that arrived (steps_per_event) */
    double win_start_ms, win_train_ms;
    /* the epoch in progress */
    int in_epoch;
    plan_slot *slots;
    size_t n_slots, cap_slots;
    const shard **plan_shard; /* per partition: the shard the plan was taken from */
    train_perm perm;
    uint64_t pos;
    visit_ahead ahead[2 * LOOKAHEAD]; /* visit i is ahead[i % (2 * LOOKAHEAD)] */
    double sse;
    uint64_t steps, epoch_no;
    data_mark at_start;
    double prev_rmse; /* the previous epoch's, -1 = none to compare with */
    /* pause */
    const shard **pause_shard; /* per partition, when training paused */
    data_mark at_pause;
    uint64_t pause_total; /* ratings the last plan held */
    /* reporting */
    train_stats st;
    double trained_ms; /* all time spent in slices */
    double next_log_ms, next_gauges_ms, log_ms, log_ratings;
};

void train_opts_init(train_opts *o) {
    memset(o, 0, sizeof(*o));
    o->enabled = 1;
    o->share = 0.15;
    o->idle_share = 0.5;
    o->slice_ms = 5.0;
    o->min_improvement = 0.001;
    o->resume_fraction = 0.01;
    o->steps_per_event = 0.25;
    o->seed = 42;
    o->log_every_ms = 10000.0;
}

/* ---- the permutation --------------------------------------------------- */

void train_perm_init(train_perm *p, uint64_t n, uint64_t seed) {
    int bits = 0;
    while (bits < 63 && (UINT64_C(1) << bits) < n)
        bits++;
    p->n = n;
    p->half_bits = bits < 2 ? 1 : (bits + 1) / 2;
    for (int r = 0; r < 4; r++)
        p->keys[r] = rng_derive(seed, (uint64_t)r + 1);
}

static uint64_t feistel(const train_perm *p, uint64_t x) {
    uint64_t mask = (UINT64_C(1) << p->half_bits) - 1;
    uint64_t left = x >> p->half_bits, right = x & mask;
    for (int r = 0; r < 4; r++) {
        uint64_t next = left ^ (rng_derive(p->keys[r], right) & mask);
        left = right;
        right = next;
    }
    return (left << p->half_bits) | right;
}

uint64_t train_perm_at(const train_perm *p, uint64_t i) {
    uint64_t x = i;
    do /* cycle walking: the domain is < 4n, so this ends after few rounds */
        x = feistel(p, x);
    while (x >= p->n);
    return x;
}

/* ---- clock and budget ---------------------------------------------------- */

static double now_ms(const train *t) {
    return t->o.clock ? t->o.clock(t->o.clock_opaque) : ul_clock_mono_s() * 1000.0;
}

static int is_idle(const train *t, double now) {
    return now - t->last_event_ms >= TRAIN_IDLE_AFTER_MS;
}

static double share_at(const train *t, double now) {
    return is_idle(t, now) ? t->o.idle_share : t->o.share;
}

/* The credit at `now`, without spending or capping it. */
static double credit_at(const train *t, double now) {
    return t->credit + share_at(t, now) * (now - t->last_ms);
}

static void accrue(train *t, double now) {
    t->credit = credit_at(t, now);
    if (t->credit > CREDIT_SLICES * t->o.slice_ms)
        t->credit = CREDIT_SLICES * t->o.slice_ms;
    t->last_ms = now;
}

/* Credit a whole slice needs: it accrues share * slice_ms while it runs. */
static double slice_need(const train *t, double now) {
    return (1.0 - share_at(t, now)) * t->o.slice_ms;
}

/* Steps a slice may take: while events flow, what the arrived events
 * allow (steps_per_event each); unlimited while idle or without a limit. */
static double steps_allowed(const train *t, double now) {
    return t->o.steps_per_event > 0 && !is_idle(t, now) ? t->step_credit : 1e300;
}

/* Time and steps for a whole slice (or at least a clock check's worth of
 * steps) are there. */
static int slice_ready(const train *t, double now) {
    return credit_at(t, now) >= slice_need(t, now) && steps_allowed(t, now) >= STEPS_PER_CLOCK;
}

/* ---- what the owned partitions hold --------------------------------------- */

static data_mark data_now(const train *t) {
    data_mark d = {0, 0};
    for (int32_t p = 0; p < t->n_parts; p++) {
        const shard *s = live_shard(t->lv, p);
        if (s) {
            d.applied += s->meta.applied;
            d.forgotten += s->meta.forgotten;
        }
    }
    return d;
}

static void owned_now(const train *t, const shard **into) {
    for (int32_t p = 0; p < t->n_parts; p++)
        into[p] = live_shard(t->lv, p);
}

static int owned_changed(const train *t, const shard **ref) {
    for (int32_t p = 0; p < t->n_parts; p++)
        if (live_shard(t->lv, p) != ref[p])
            return 1;
    return 0;
}

/* New ratings enough to train again: a share of what the last plan held. */
static uint64_t resume_threshold(const train *t, uint64_t total) {
    double n = t->o.resume_fraction * (double)total;
    return n < 1.0 ? 1 : (uint64_t)n;
}

/* Why the data moved since `mark` was taken with the owned set `ref`; NULL
 * when it did not (enough). */
static const char *data_moved(const train *t, const data_mark *mark, const shard **ref,
                              uint64_t total) {
    if (owned_changed(t, ref))
        return "the owned partitions changed";
    data_mark d = data_now(t);
    if (d.forgotten != mark->forgotten)
        return "ratings were forgotten";
    if (d.applied >= mark->applied + resume_threshold(t, total))
        return "new ratings arrived";
    return NULL;
}

/* ---- reporting ------------------------------------------------------------ */

static double rmse_of(double sse, uint64_t n) {
    return n ? sqrt(sse / (double)n) : -1.0;
}

static void set_gauges(train *t, double now) {
    t->next_gauges_ms = now + GAUGES_EVERY_MS;
    if (t->m == NULL)
        return;
    double loss = t->st.last_rmse >= 0 ? t->st.last_rmse : rmse_of(t->sse, t->steps);
    metrics_set_gauge(t->m, METRICS_TRAINING_LOSS, loss);
    metrics_set_gauge(t->m, METRICS_TRAINING_SHARE, t->st.share);
    metrics_set_gauge(t->m, METRICS_TRAINING_PAUSED, t->o.enabled ? t->st.paused : 1);
}

/* The measured share over the last window, the gauges and the progress line. */
static void report(train *t, double now) {
    if (now - t->win_start_ms >= SHARE_WINDOW_MS) {
        t->st.share = t->win_train_ms / (now - t->win_start_ms);
        t->win_start_ms = now;
        t->win_train_ms = 0.0;
    }
    if (now >= t->next_gauges_ms)
        set_gauges(t, now);
    if (t->log == NULL || t->o.log_every_ms <= 0 || now < t->next_log_ms)
        return;
    double rate = now > t->log_ms
                      ? ((double)t->st.ratings - t->log_ratings) * 1000.0 / (now - t->log_ms)
                      : 0.0;
    t->next_log_ms = now + t->o.log_every_ms;
    t->log_ms = now;
    t->log_ratings = (double)t->st.ratings;
    if (!t->o.enabled || t->st.paused)
        return;
    log_info(t->log, "train",
             "epoch %" PRIu64 " %.0f%% done, %" PRIu64 " ratings trained (%.0f/s), epoch RMSE "
             "%.4f (last epoch %.4f), %.2f of the loop's time (%s)",
             t->epoch_no + 1, t->perm.n ? 100.0 * (double)t->pos / (double)t->perm.n : 0.0,
             t->st.ratings, rate, rmse_of(t->sse, t->steps), t->st.last_rmse, t->st.share,
             t->st.idle ? "input idle" : "events flowing");
}

/* ---- visits ---------------------------------------------------------------- */

/* The slot whose ratings hold index g of the plan. */
static uint32_t slot_of(const train *t, uint64_t g) {
    size_t lo = 0, hi = t->n_slots - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->slots[mid].end > g)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint32_t)lo;
}

/* The shard of a slot if the plan still holds for it, else NULL. */
static shard *slot_shard(const train *t, const plan_slot *sl) {
    shard *s = live_shard(t->lv, sl->part);
    if (s == NULL || s != t->plan_shard[sl->part] || sl->uidx >= rowset_size(s->users) ||
        sl->uidx >= s->users_cap)
        return NULL;
    return s;
}

/* Visits are planned ahead in two stages, each prefetching what the next
 * reads: in a random order every history entry (and the history header
 * before it) is a cache miss, and the misses were most of a visit's time.
 * Stage 1, 2 * LOOKAHEAD visits ahead: the permutation, the slot, the
 * position; prefetch the user's history header. */
static void plan_ahead(train *t, uint64_t i) {
    uint64_t g = train_perm_at(&t->perm, i);
    uint32_t k = slot_of(t, g);
    visit_ahead *v = &t->ahead[i % (2 * LOOKAHEAD)];
    v->slot = k;
    v->at = (uint32_t)(g - (k ? t->slots[k - 1].end : 0));
    shard *s = slot_shard(t, &t->slots[k]);
    if (s)
        __builtin_prefetch(&s->hists[t->slots[k].uidx]);
}

/* Stage 2, LOOKAHEAD visits ahead: prefetch the rating and the user row. */
static void fetch_ahead(train *t, uint64_t i) {
    const visit_ahead *v = &t->ahead[i % (2 * LOOKAHEAD)];
    const plan_slot *sl = &t->slots[v->slot];
    shard *s = slot_shard(t, sl);
    if (s == NULL)
        return;
    const hist *h = &s->hists[sl->uidx];
    if (v->at < h->n)
        __builtin_prefetch(&h->v[h->start + v->at]);
    __builtin_prefetch(rowset_row(s->users, sl->uidx));
}

/* Visit i of the epoch: 1 trained, 0 skipped, -1 out of memory. */
static int visit(train *t, uint64_t i) {
    visit_ahead v = t->ahead[i % (2 * LOOKAHEAD)];
    if (i + 2 * LOOKAHEAD < t->perm.n)
        plan_ahead(t, i + 2 * LOOKAHEAD);
    if (i + LOOKAHEAD < t->perm.n)
        fetch_ahead(t, i + LOOKAHEAD);
    const plan_slot *sl = &t->slots[v.slot];
    shard *s = slot_shard(t, sl);
    if (s == NULL) {
        t->st.skipped_gone++;
        return 0;
    }
    const hist *h = shard_hist(s, sl->uidx);
    if (h == NULL)
        return -1;
    if (s->user_flags[sl->uidx] & SHARD_USER_BUSY) {
        t->st.skipped_busy++;
        return 0;
    }
    if (v.at >= h->n) {
        t->st.skipped_gone++;
        return 0;
    }
    hist_entry e = h->v[h->start + v.at];
    float err = live_sgd(t->lv, s, sl->uidx, e.item, e.rating, SHARD_TRAINING);
    if (isnan(err))
        return -1;
    t->sse += (double)err * (double)err;
    t->steps++;
    return 1;
}

/* ---- epochs --------------------------------------------------------------- */

static void pause_training(train *t, const char *why) {
    t->st.paused = 1;
    t->in_epoch = 0;
    owned_now(t, t->pause_shard);
    t->at_pause = data_now(t);
    t->pause_total = t->perm.n;
    set_gauges(t, now_ms(t));
    if (t->log)
        log_info(t->log, "train",
                 "paused after %" PRIu64 " epochs (%s); resumes on %" PRIu64
                 " new ratings, a forget or a partition change",
                 t->st.epochs, why, resume_threshold(t, t->pause_total));
}

static void resume_training(train *t, const char *why) {
    t->st.paused = 0;
    t->prev_rmse = -1.0; /* the data changed: the next epoch has nothing to compare with */
    if (t->log)
        log_info(t->log, "train", "resumed: %s", why);
}

/* Plan the next epoch from what the owned partitions hold now. */
static int start_epoch(train *t) {
    uint64_t total = 0;
    t->n_slots = 0;
    owned_now(t, t->plan_shard);
    for (int32_t p = 0; p < t->n_parts; p++) {
        shard *s = live_shard(t->lv, p);
        for (int32_t u = 0; s && u < rowset_size(s->users); u++) {
            const hist *h = shard_hist(s, u);
            if (h == NULL)
                return UL_ERR_NOMEM;
            if (h->n == 0)
                continue;
            plan_slot *v = ul_grow(t->slots, &t->cap_slots, t->n_slots + 1, sizeof(*v));
            if (v == NULL)
                return UL_ERR_NOMEM;
            t->slots = v;
            total += h->n;
            t->slots[t->n_slots++] = (plan_slot){total, p, u};
        }
    }
    train_perm_init(&t->perm, total, rng_derive(t->o.seed, t->epoch_no));
    t->pos = 0;
    t->sse = 0.0;
    t->steps = 0;
    t->at_start = data_now(t);
    t->in_epoch = total > 0;
    for (uint64_t i = 0; i < 2 * LOOKAHEAD && i < total; i++)
        plan_ahead(t, i);
    for (uint64_t i = 0; i < LOOKAHEAD && i < total; i++)
        fetch_ahead(t, i);
    t->st.epoch_size = total;
    t->st.epoch_pos = 0;
    return UL_OK;
}

static void finish_epoch(train *t) {
    double rmse = rmse_of(t->sse, t->steps);
    const char *moved = data_moved(t, &t->at_start, t->plan_shard, t->perm.n);
    t->in_epoch = 0;
    t->epoch_no++;
    t->st.epochs++;
    if (t->m)
        metrics_add(t->m, METRICS_TRAINING_EPOCHS, 1);
    if (rmse >= 0)
        t->st.last_rmse = rmse;
    if (t->log)
        log_debug(t->log, "train",
                  "epoch %" PRIu64 ": %" PRIu64 " ratings, RMSE %.5f (previous %.5f)%s%s",
                  t->epoch_no, t->steps, rmse, t->prev_rmse, moved ? "; " : "", moved ? moved : "");
    int flat = moved == NULL && rmse >= 0 && t->prev_rmse > 0 &&
               t->prev_rmse - rmse < t->o.min_improvement * t->prev_rmse;
    /* An epoch during which the data moved is no baseline for the next one
     * (its RMSE is over other ratings, at other rates). */
    t->prev_rmse = moved == NULL ? rmse : -1.0;
    if (flat) {
        char why[128];
        snprintf(why, sizeof(why), "epoch RMSE %.5f improved by less than %g of the previous", rmse,
                 t->o.min_improvement);
        pause_training(t, why);
    }
}

/* Train until `deadline` or `limit` steps, the epoch's end when it pauses,
 * or no data. */
static long run(train *t, double deadline, double limit) {
    long trained = 0;
    while ((double)trained < limit) {
        if (!t->in_epoch) {
            if (start_epoch(t) != UL_OK)
                return -1;
            if (!t->in_epoch) {
                pause_training(t, "no ratings to train on");
                return trained;
            }
        }
        for (int j = 0; j < STEPS_PER_CLOCK && t->pos < t->perm.n && (double)trained < limit; j++) {
            int r = visit(t, t->pos++);
            if (r < 0)
                return -1;
            trained += r;
        }
        t->st.epoch_pos = t->pos;
        if (t->pos == t->perm.n) {
            finish_epoch(t);
            if (t->st.paused)
                return trained;
        }
        if (now_ms(t) >= deadline)
            return trained;
    }
    return trained;
}

long train_slice(train *t, size_t events) {
    double now = now_ms(t);
    if (events > 0) {
        t->last_event_ms = now;
        t->step_credit += t->o.steps_per_event * (double)events;
        if (t->step_credit > STEP_CREDIT_MAX)
            t->step_credit = STEP_CREDIT_MAX;
    }
    accrue(t, now);
    t->st.idle = is_idle(t, now);
    report(t, now);
    if (!t->o.enabled)
        return 0;
    if (t->st.paused) {
        const char *why = data_moved(t, &t->at_pause, t->pause_shard, t->pause_total);
        if (why == NULL)
            return 0;
        resume_training(t, why);
    }
    if (!slice_ready(t, now))
        return 0;
    int flowing = !is_idle(t, now);
    long trained = run(t, now + t->o.slice_ms, steps_allowed(t, now));
    double end = now_ms(t);
    accrue(t, end);
    t->credit -= end - now;
    t->win_train_ms += end - now;
    t->trained_ms += end - now;
    if (trained > 0 && flowing && t->o.steps_per_event > 0)
        t->step_credit -= (double)trained;
    if (trained > 0) {
        t->st.ratings += (uint64_t)trained;
        if (t->m)
            metrics_add(t->m, METRICS_TRAINING_RATINGS, (uint64_t)trained);
    }
    return trained;
}

int train_due(train *t) {
    if (!t->o.enabled || t->st.paused)
        return 0;
    return slice_ready(t, now_ms(t));
}

int train_wait_ms(train *t, int max_ms) {
    if (!t->o.enabled || t->st.paused)
        return max_ms;
    double now = now_ms(t), share = share_at(t, now);
    if (steps_allowed(t, now) < STEPS_PER_CLOCK)
        return max_ms; /* waits for events, which end the poll anyway */
    double missing = slice_need(t, now) - credit_at(t, now);
    if (missing <= 0)
        return 0;
    if (share <= 0)
        return max_ms;
    double wait = ceil(missing / share);
    return wait < (double)max_ms ? (int)wait : max_ms;
}

void train_get_stats(const train *t, train_stats *st) {
    *st = t->st;
    st->epoch_rmse = rmse_of(t->sse, t->steps);
    st->trained_ms = t->trained_ms;
}

train *train_new(const train_opts *o, live *lv, metrics *m, ul_log *log) {
    train *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->o = *o;
    t->lv = lv;
    t->m = m;
    t->log = log;
    t->n_parts = live_partitions(lv);
    t->plan_shard = calloc((size_t)t->n_parts, sizeof(*t->plan_shard));
    t->pause_shard = calloc((size_t)t->n_parts, sizeof(*t->pause_shard));
    if (t->plan_shard == NULL || t->pause_shard == NULL) {
        train_destroy(t);
        return NULL;
    }
    double now = now_ms(t);
    t->last_ms = t->win_start_ms = t->log_ms = now;
    t->last_event_ms = now - TRAIN_IDLE_AFTER_MS;
    t->next_log_ms = now + o->log_every_ms;
    t->prev_rmse = -1.0;
    t->st.last_rmse = -1.0;
    set_gauges(t, now);
    return t;
}

void train_destroy(train *t) {
    if (t == NULL)
        return;
    free(t->slots);
    free(t->plan_shard);
    free(t->pause_shard);
    free(t);
}
