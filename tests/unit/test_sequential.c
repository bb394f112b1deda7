/* test_sequential.c: sequential unlearning on a small synthetic set. The
 * batch assignment covers F with non-empty batches (by ratings: near-equal
 * sizes; by users: each user's entries together) and refuses N that does
 * not fit; one batch is bit-identical to one-shot unlearning; each batch's
 * request holds what the platform knows then (checked with fold-in on fixed
 * items, whose user rows are exact functions of the retain set); the
 * callback runs once per batch and can stop the run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "mf.h"
#include "protocol.h"
#include "sequential.h"
#include "ul_err.h"
#include "unlearn.h"

typedef struct fixture {
    dataset *ds;
    ul_ratings train, faulty, forget, retain;
    proto_forget fs;
    float *item_mean;
    int32_t *item_count;
    mf_model *m1;
} fixture;

static fixture fx;

static int setup(void **state) {
    (void)state;
    char err[256];
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 200;
    so.n_items = 120;
    so.n_ratings = 8000;
    so.seed = 11;
    fx.ds = ds_synthetic(&so, err, sizeof(err));
    if (fx.ds == NULL)
        return 1;
    ul_ratings test;
    if (ds_split(fx.ds->ratings, fx.ds->n_ratings, 0.2, 1, &fx.train, &test, err, sizeof(err)))
        return 1;
    ul_ratings_free(&test);
    proto_opts po = {20, 50, 5, 2};
    if (proto_make_faulty(fx.train.v, fx.train.n, fx.ds->n_users, &po, &fx.faulty, &fx.fs, err,
                          sizeof(err)) ||
        proto_split(fx.faulty.v, fx.faulty.n, &fx.fs, &fx.forget, &fx.retain, NULL, err,
                    sizeof(err)))
        return 1;
    fx.item_mean = malloc(sizeof(float) * (size_t)fx.ds->n_items);
    fx.item_count = calloc((size_t)fx.ds->n_items, sizeof(int32_t));
    if (proto_item_means(fx.train.v, fx.train.n, &fx.fs, fx.ds->n_items, 3, fx.item_mean, err,
                         sizeof(err)))
        return 1;
    for (size_t j = 0; j < fx.faulty.n; j++)
        fx.item_count[fx.faulty.v[j].item]++;
    mf_params p;
    mf_params_init(&p);
    p.k = 8;
    p.epochs = 15;
    p.threads = 1;
    fx.m1 = mf_train(fx.faulty.v, fx.faulty.n, fx.ds->n_users, fx.ds->n_items, 1, 5, &p, NULL, NULL,
                     err, sizeof(err));
    return fx.m1 == NULL;
}

static int teardown(void **state) {
    (void)state;
    mf_model_destroy(fx.m1);
    free(fx.item_mean);
    free(fx.item_count);
    ul_ratings_free(&fx.train);
    ul_ratings_free(&fx.faulty);
    ul_ratings_free(&fx.forget);
    ul_ratings_free(&fx.retain);
    proto_forget_free(&fx.fs);
    ds_destroy(fx.ds);
    return 0;
}

static unlearn_params params(void) {
    unlearn_params up;
    unlearn_params_init(&up);
    up.seed = 9;
    up.threads = 1;
    up.cff_steps = 20;
    return up;
}

static int models_equal(const mf_model *a, const mf_model *b) {
    size_t np = (size_t)a->n_users * (size_t)a->k, nq = (size_t)a->n_items * (size_t)a->k;
    return memcmp(a->P, b->P, np * sizeof(float)) == 0 &&
           memcmp(a->Q, b->Q, nq * sizeof(float)) == 0 &&
           memcmp(a->user_bias, b->user_bias, (size_t)a->n_users * sizeof(float)) == 0 &&
           memcmp(a->item_bias, b->item_bias, (size_t)a->n_items * sizeof(float)) == 0;
}

static void test_assign(void **state) {
    (void)state;
    int32_t *batch = malloc(sizeof(int32_t) * fx.fs.n), *again = malloc(sizeof(int32_t) * fx.fs.n);
    char err[256] = "";
    seq_opts o = {7, SEQ_BY_RATINGS, 3};
    assert_int_equal(seq_assign(&fx.fs, fx.faulty.v, &o, batch, err, sizeof(err)), UL_OK);
    size_t count[7] = {0};
    for (size_t j = 0; j < fx.fs.n; j++) {
        assert_true(batch[j] >= 0 && batch[j] < 7);
        count[batch[j]]++;
    }
    for (int b = 0; b < 7; b++)
        assert_true(count[b] + 1 >= fx.fs.n / 7 && count[b] <= fx.fs.n / 7 + 1);
    assert_int_equal(seq_assign(&fx.fs, fx.faulty.v, &o, again, err, sizeof(err)), UL_OK);
    assert_memory_equal(batch, again, sizeof(int32_t) * fx.fs.n); /* seeded */
    /* By users: all of a user's entries in one batch, every batch used. */
    o.split = SEQ_BY_USERS;
    o.batches = 6;
    assert_int_equal(seq_assign(&fx.fs, fx.faulty.v, &o, batch, err, sizeof(err)), UL_OK);
    int used[6] = {0};
    for (size_t j = 0; j < fx.fs.n; j++) {
        used[batch[j]] = 1;
        for (size_t k = 0; k < j; k++)
            if (fx.faulty.v[fx.fs.pos[k]].user == fx.faulty.v[fx.fs.pos[j]].user)
                assert_int_equal(batch[k], batch[j]);
    }
    for (int b = 0; b < 6; b++)
        assert_true(used[b]);
    /* N that does not fit is refused, naming what it must fit. */
    o.batches = (int)fx.fs.n_users + 1;
    assert_int_equal(seq_assign(&fx.fs, fx.faulty.v, &o, batch, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "affected users"));
    o = (seq_opts){(int)fx.fs.n + 1, SEQ_BY_RATINGS, 3};
    assert_int_equal(seq_assign(&fx.fs, fx.faulty.v, &o, batch, err, sizeof(err)), UL_ERR_ARG);
    o.batches = 0;
    assert_int_equal(seq_assign(&fx.fs, fx.faulty.v, &o, batch, err, sizeof(err)), UL_ERR_ARG);
    free(batch);
    free(again);
}

/* One batch is the one-shot request: bit-identical models, every method. */
static void test_one_batch_is_one_shot(void **state) {
    (void)state;
    unlearn_params up = params();
    for (const char *const *name = unlearn_method_names(); *name != NULL; name++) {
        mf_model *a = mf_model_clone(fx.m1), *b = mf_model_clone(fx.m1);
        unlearn_request req = {fx.forget.v, fx.forget.n,  fx.retain.v,
                               fx.retain.n, fx.item_mean, fx.item_count};
        char err[256] = "";
        assert_int_equal(unlearn_apply(*name, a, &req, &up, NULL, err, sizeof(err)), UL_OK);
        seq_opts o = {1, SEQ_BY_RATINGS, 3};
        double seconds = -1;
        assert_int_equal(seq_unlearn(*name, b, fx.faulty.v, fx.faulty.n, fx.ds->n_items, &fx.fs, &o,
                                     &up, NULL, NULL, &seconds, err, sizeof(err)),
                         UL_OK);
        assert_true(seconds >= 0);
        if (!models_equal(a, b))
            fail_msg("%s: one sequential batch differs from one-shot", *name);
        mf_model_destroy(a);
        mf_model_destroy(b);
    }
}

typedef struct probe {
    int calls, stop_after;
    mf_model *after_first; /* the model after batch 0 */
} probe;

static int on_batch(void *ctx, int batch, int batches, const mf_model *m) {
    probe *p = ctx;
    assert_int_equal(batch, p->calls);
    assert_true(batches > batch);
    if (p->calls++ == 0 && p->after_first == NULL)
        p->after_first = mf_model_clone(m);
    return p->stop_after > 0 && p->calls >= p->stop_after;
}

/* Fold-in with items fixed re-solves each user of a batch on exactly the
 * retain set it is given. After batch 0 of 3, the model must equal one-shot
 * fold-in on batch 0's entries with the platform's view at that moment (the
 * later batches' 5s still held); after all 3, every user's row equals the
 * one-shot row (their last batch saw all of F gone). */
static void test_requests_are_the_platform_view(void **state) {
    (void)state;
    unlearn_params up = params();
    up.foldin_items = 0;
    seq_opts o = {3, SEQ_BY_RATINGS, 4};
    int32_t *batch = malloc(sizeof(int32_t) * fx.fs.n);
    char err[256] = "";
    assert_int_equal(seq_assign(&fx.fs, fx.faulty.v, &o, batch, err, sizeof(err)), UL_OK);
    /* Batch 0's request, built by hand from the faulty array. */
    uint8_t *gone = calloc(fx.faulty.n, 1), *user_in = calloc((size_t)fx.ds->n_users, 1);
    ul_rating *f0 = malloc(sizeof(ul_rating) * fx.fs.n),
              *r0 = malloc(sizeof(ul_rating) * fx.faulty.n);
    size_t nf0 = 0, nr0 = 0;
    for (size_t j = 0; j < fx.fs.n; j++)
        if (batch[j] == 0) {
            gone[fx.fs.pos[j]] = 1;
            f0[nf0++] = fx.faulty.v[fx.fs.pos[j]];
            user_in[fx.faulty.v[fx.fs.pos[j]].user] = 1;
        }
    for (size_t j = 0; j < fx.faulty.n; j++)
        if (!gone[j] && user_in[fx.faulty.v[j].user])
            r0[nr0++] = fx.faulty.v[j];
    mf_model *want0 = mf_model_clone(fx.m1), *want_end = mf_model_clone(fx.m1);
    unlearn_request q0 = {f0, nf0, r0, nr0, NULL, NULL};
    assert_int_equal(unlearn_apply("foldin", want0, &q0, &up, NULL, err, sizeof(err)), UL_OK);
    unlearn_request qa = {fx.forget.v, fx.forget.n, fx.retain.v, fx.retain.n, NULL, NULL};
    assert_int_equal(unlearn_apply("foldin", want_end, &qa, &up, NULL, err, sizeof(err)), UL_OK);

    mf_model *m = mf_model_clone(fx.m1);
    probe pr = {0, 0, NULL};
    assert_int_equal(seq_unlearn("foldin", m, fx.faulty.v, fx.faulty.n, fx.ds->n_items, &fx.fs, &o,
                                 &up, on_batch, &pr, NULL, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(pr.calls, 3);
    assert_true(models_equal(pr.after_first, want0));
    assert_true(models_equal(m, want_end));
    /* A callback that says stop ends the run after that batch. */
    mf_model *s = mf_model_clone(fx.m1);
    probe stop = {0, 2, NULL};
    assert_int_equal(seq_unlearn("foldin", s, fx.faulty.v, fx.faulty.n, fx.ds->n_items, &fx.fs, &o,
                                 &up, on_batch, &stop, NULL, err, sizeof(err)),
                     UL_ERR_ABORTED);
    assert_int_equal(stop.calls, 2);
    /* An unknown method is refused before any batch. */
    assert_int_equal(seq_unlearn("nope", s, fx.faulty.v, fx.faulty.n, fx.ds->n_items, &fx.fs, &o,
                                 &up, NULL, NULL, NULL, err, sizeof(err)),
                     UL_ERR_ARG);
    mf_model_destroy(stop.after_first);
    mf_model_destroy(s);
    mf_model_destroy(pr.after_first);
    mf_model_destroy(m);
    mf_model_destroy(want0);
    mf_model_destroy(want_end);
    free(batch);
    free(gone);
    free(user_in);
    free(f0);
    free(r0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assign),
        cmocka_unit_test(test_one_batch_is_one_shot),
        cmocka_unit_test(test_requests_are_the_platform_view),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
