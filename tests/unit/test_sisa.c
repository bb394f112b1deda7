/* test_sisa.c: SISA shards by user, averages its shard models, and unlearns
 * by retraining exactly the shards that held forgotten ratings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "mf.h"
#include "sisa.h"
#include "ul_err.h"

static dataset *small_data(void) {
    ds_synth_opts so;
    ds_synth_opts_init(&so);
    so.n_users = 200;
    so.n_items = 100;
    so.n_ratings = 6000;
    so.seed = 5;
    char err[256];
    dataset *ds = ds_synthetic(&so, err, sizeof(err));
    assert_non_null(ds);
    return ds;
}

static mf_params small_params(void) {
    mf_params p;
    mf_params_init(&p);
    p.k = 8;
    p.epochs = 5;
    p.threads = 1;
    return p;
}

static sisa *train(const dataset *ds, int shards) {
    mf_params p = small_params();
    char err[256];
    sisa *s = sisa_train(ds->ratings, ds->n_ratings, ds->n_users, ds->n_items, ds->rating_min,
                         ds->rating_max, shards, 99, &p, NULL, NULL, err, sizeof(err));
    assert_non_null(s);
    return s;
}

static void test_shards_partition_users(void **state) {
    (void)state;
    dataset *ds = small_data();
    sisa *s = train(ds, 5);
    assert_int_equal(sisa_shards(s), 5);
    size_t total = 0;
    for (int sh = 0; sh < 5; sh++) {
        assert_true(sisa_shard_size(s, sh) > 0);
        total += sisa_shard_size(s, sh);
    }
    assert_int_equal(total, ds->n_ratings);
    const int32_t *owner = sisa_user_shards(s);
    for (int32_t u = 0; u < ds->n_users; u++)
        assert_int_equal(owner[u], sisa_shard_of(99, 5, u));
    /* The prediction is the mean of the shard models' predictions. */
    double sum = 0;
    for (int sh = 0; sh < 5; sh++)
        sum += mf_predict(sisa_model(s, sh), 3, 7);
    assert_float_equal(sisa_predict(s, 3, 7), sum / 5, 1e-5);
    sisa_destroy(s);
    ds_destroy(ds);
}

static void test_unlearn_touches_only_owner_shards(void **state) {
    (void)state;
    dataset *ds = small_data();
    sisa *s = train(ds, 5);
    /* Forget every rating of one user: exactly its shard is retrained. */
    int32_t victim = ds->ratings[0].user;
    int vs = sisa_shard_of(99, 5, victim);
    ul_rating *forget = malloc(sizeof(ul_rating) * ds->n_ratings);
    size_t nf = 0;
    for (size_t j = 0; j < ds->n_ratings; j++)
        if (ds->ratings[j].user == victim)
            forget[nf++] = ds->ratings[j];
    size_t before = sisa_shard_size(s, vs);
    const mf_model *other = sisa_model(s, (vs + 1) % 5);
    float p_other = mf_predict(other, 1, 1);
    char err[256];
    assert_int_equal(sisa_unlearn(s, forget, nf, NULL, NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(sisa_touched(s), 1);
    assert_int_equal(sisa_removed(s), nf);
    assert_int_equal(sisa_shard_size(s, vs), before - nf);
    assert_true(sisa_model(s, (vs + 1) % 5) == other); /* untouched shard: same model */
    assert_float_equal(mf_predict(other, 1, 1), p_other, 0);
    assert_true(sisa_unlearn_seconds(s) > 0);
    /* Pairs the shards do not hold are ignored. */
    assert_int_equal(sisa_unlearn(s, forget, nf, NULL, NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(sisa_touched(s), 0);
    assert_int_equal(sisa_removed(s), 0);
    /* Users of two different shards: two shards retrained. */
    int32_t u2 = -1;
    for (int32_t u = 0; u < ds->n_users && u2 < 0; u++)
        if (sisa_shard_of(99, 5, u) != vs)
            u2 = u;
    nf = 0;
    for (size_t j = 0; j < ds->n_ratings && nf < 3; j++)
        if (ds->ratings[j].user == u2)
            forget[nf++] = ds->ratings[j];
    int32_t u3 = -1;
    for (int32_t u = 0; u < ds->n_users && u3 < 0; u++)
        if (sisa_shard_of(99, 5, u) == vs && u != victim)
            u3 = u;
    for (size_t j = 0; j < ds->n_ratings && nf < 6; j++)
        if (ds->ratings[j].user == u3)
            forget[nf++] = ds->ratings[j];
    assert_int_equal(sisa_unlearn(s, forget, nf, NULL, NULL, err, sizeof(err)), UL_OK);
    assert_int_equal(sisa_touched(s), 2);
    free(forget);
    sisa_destroy(s);
    ds_destroy(ds);
}

static void test_bad_arguments(void **state) {
    (void)state;
    dataset *ds = small_data();
    mf_params p = small_params();
    char err[256] = "";
    assert_null(sisa_train(ds->ratings, ds->n_ratings, ds->n_users, ds->n_items, 1, 5, 0, 1, &p,
                           NULL, NULL, err, sizeof(err)));
    assert_null(sisa_train(ds->ratings, ds->n_ratings, ds->n_users, ds->n_items, 1, 5,
                           SISA_MAX_SHARDS + 1, 1, &p, NULL, NULL, err, sizeof(err)));
    /* Three ratings cannot fill 64 shards. */
    assert_null(sisa_train(ds->ratings, 3, ds->n_users, ds->n_items, 1, 5, 64, 1, &p, NULL, NULL,
                           err, sizeof(err)));
    assert_non_null(strstr(err, "fewer shards"));
    /* A rating outside the matrix. */
    assert_null(sisa_train(ds->ratings, ds->n_ratings, ds->n_users, 3, 1, 5, 2, 1, &p, NULL, NULL,
                           err, sizeof(err)));
    sisa_destroy(NULL);
    ds_destroy(ds);
}

static int stop_at_two(void *ctx, int shard, int shards, int epoch, int epochs) {
    (void)shards;
    (void)epochs;
    int *calls = ctx;
    (*calls)++;
    return shard == 1 && epoch == 2;
}

static void test_abort(void **state) {
    (void)state;
    dataset *ds = small_data();
    mf_params p = small_params();
    char err[256];
    int calls = 0;
    assert_null(sisa_train(ds->ratings, ds->n_ratings, ds->n_users, ds->n_items, 1, 5, 3, 1, &p,
                           stop_at_two, &calls, err, sizeof(err)));
    assert_int_equal(calls, p.epochs + 2);
    ds_destroy(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards_partition_users),
        cmocka_unit_test(test_unlearn_touches_only_owner_shards),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_abort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
