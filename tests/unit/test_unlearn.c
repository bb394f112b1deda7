/* test_unlearn.c: the unlearning interface: method names, dispatch,
 * validation of requests and parameters (the model must stay unchanged on
 * every error), and the report of changed rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "ul_err.h"
#include "unlearn.h"

/* A small random model built by hand, so this test depends on unlearn only:
 * P, Q ~ N(0, 0.3), biases ~ N(0, 0.2). */
static mf_model *model_new(int32_t nu, int32_t ni, int k, uint64_t seed) {
    return tu_model_random(nu, ni, k, seed, 0.3, 0.2, 0.2);
}

static int model_equal(const mf_model *a, const mf_model *b) {
    size_t k = (size_t)a->k;
    return memcmp(a->P, b->P, (size_t)a->n_users * k * sizeof(float)) == 0 &&
           memcmp(a->Q, b->Q, (size_t)a->n_items * k * sizeof(float)) == 0 &&
           memcmp(a->user_bias, b->user_bias, (size_t)a->n_users * sizeof(float)) == 0 &&
           memcmp(a->item_bias, b->item_bias, (size_t)a->n_items * sizeof(float)) == 0;
}

/* A fixture: 20 users x 30 items, every user rates 12 items; F = 3 ratings
 * of users 2 and 7 set to 5, retain = the rest of those users' ratings. */
typedef struct fixture {
    mf_model *m, *copy;
    ul_rating forget[6], retain[24];
    int32_t count[30];
    unlearn_request req;
} fixture;

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof(*fx));
    fx->m = model_new(20, 30, 4, 1);
    fx->copy = model_new(20, 30, 4, 1);
    size_t nf = 0, nr = 0;
    const int32_t users[2] = {2, 7};
    for (int a = 0; a < 2; a++)
        for (int j = 0; j < 12; j++) {
            ul_rating r = {users[a], (int32_t)((users[a] + 2 * j) % 30), (float)(1 + j % 5), j};
            if (j < 3) {
                r.value = 5;
                fx->forget[nf++] = r;
            } else {
                fx->retain[nr++] = r;
            }
        }
    for (int i = 0; i < 30; i++)
        fx->count[i] = 8;
    fx->req = (unlearn_request){fx->forget, nf, fx->retain, nr, NULL, fx->count};
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    mf_model_destroy(fx->m);
    mf_model_destroy(fx->copy);
    free(fx);
    return 0;
}

static void test_method_names(void **state) {
    (void)state;
    const char *const *names = unlearn_method_names();
    int found = 0, n = 0;
    for (; names[n] != NULL; n++)
        found |= strcmp(names[n], "foldin") == 0;
    assert_true(found);
    assert_true(n >= 1);
    for (int j = 0; j < n; j++)
        assert_non_null(unlearn_method_doc(names[j]));
    assert_null(unlearn_method_doc("nope"));
    assert_null(unlearn_method_doc(NULL));
}

/* The worker's choices and default come from the same table. */
static void test_stream_methods(void **state) {
    (void)state;
    char buf[128];
    assert_string_equal(unlearn_method_default(), "foldin");
    assert_true(unlearn_method_streams(unlearn_method_default()));
    assert_true(unlearn_method_streams("foldin"));
    assert_false(unlearn_method_streams("cff-paper"));
    assert_false(unlearn_method_streams("nope"));
    assert_false(unlearn_method_streams(NULL));
    assert_string_equal(unlearn_method_list(1, "|", buf, sizeof(buf)), "cff|foldin");
    assert_string_equal(unlearn_method_list(0, ", ", buf, sizeof(buf)), "cff, cff-paper, foldin");
    assert_string_equal(unlearn_method_list(0, ", ", buf, 6), "cff, "); /* truncated */
    const char *const *names = unlearn_method_names();
    size_t n = 0;
    while (names[n])
        n++;
    assert_int_equal(n, 3); /* the name list is the table's */
}

static void test_params_init(void **state) {
    (void)state;
    unlearn_params p;
    unlearn_params_init(&p);
    assert_true(p.foldin_sweeps >= 1);
    assert_true(p.foldin_reg > 0);
    assert_true(p.rescue_epochs > 0 && p.cff_steps > 0 && p.cff_lr > 0);
    assert_int_equal(p.cff_hidden, 512);
}

/* KNOB=VALUE sets exactly that field; bad names and values are refused
 * with the model's defaults untouched. */
static void test_params_set(void **state) {
    (void)state;
    unlearn_params p, d;
    unlearn_params_init(&p);
    unlearn_params_init(&d);
    char err[UL_ERRSTR_SIZE] = "";
    assert_int_equal(unlearn_params_set(&p, "foldin_sweeps=3", err, sizeof(err)), UL_OK);
    assert_int_equal(p.foldin_sweeps, 3);
    assert_int_equal(unlearn_params_set(&p, "foldin_reg=0.25", err, sizeof(err)), UL_OK);
    assert_float_equal(p.foldin_reg, 0.25f, 0);
    assert_int_equal(unlearn_params_set(&p, "cff_lr=2e-3", err, sizeof(err)), UL_OK);
    assert_float_equal(p.cff_lr, 2e-3f, 0);
    p.foldin_sweeps = d.foldin_sweeps;
    p.foldin_reg = d.foldin_reg;
    p.cff_lr = d.cff_lr;
    assert_memory_equal(&p, &d, sizeof(p)); /* nothing else was written */
    const char *bad[] = {"nope=1",
                         "foldin_sweeps",
                         "foldin_sweeps=1.5",
                         "foldin_reg=abc",
                         "foldin_reg=1x",
                         "foldin_reg=",
                         "=1",
                         "seed=3",
                         "foldin_reg=nan"};
    for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
        err[0] = '\0';
        assert_int_equal(unlearn_params_set(&p, bad[j], err, sizeof(err)), UL_ERR_ARG);
        assert_true(strlen(err) > 0);
    }
    assert_memory_equal(&p, &d, sizeof(p));
    char knobs[1024];
    unlearn_params_knobs(",", knobs, sizeof(knobs));
    assert_non_null(strstr(knobs, "foldin_sweeps"));
    assert_non_null(strstr(knobs, "cff_item_users"));
    assert_non_null(strstr(knobs, "rescue_retain"));
}

static void test_unknown_method(void **state) {
    fixture *fx = *state;
    char err[UL_ERRSTR_SIZE] = "";
    assert_int_equal(unlearn_apply("nope", fx->m, &fx->req, NULL, NULL, err, sizeof(err)),
                     UL_ERR_ARG);
    assert_non_null(strstr(err, "nope"));
    assert_non_null(strstr(err, "foldin"));
    assert_int_equal(unlearn_apply(NULL, fx->m, &fx->req, NULL, NULL, err, sizeof(err)),
                     UL_ERR_ARG);
    assert_true(model_equal(fx->m, fx->copy));
}

static void expect_refused(fixture *fx, const unlearn_request *req, const unlearn_params *p,
                           const char *needle) {
    char err[UL_ERRSTR_SIZE] = "";
    unlearn_report rep;
    memset(&rep, 0xab, sizeof(rep));
    assert_int_equal(unlearn_apply("foldin", fx->m, req, p, &rep, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, needle));
    assert_null(rep.users);
    assert_null(rep.items);
    assert_true(model_equal(fx->m, fx->copy));
}

static void test_bad_requests(void **state) {
    fixture *fx = *state;
    unlearn_request req = fx->req;
    fx->forget[1].user = 20;
    expect_refused(fx, &req, NULL, "forget[1]: user 20");
    fx->forget[1].user = -1;
    expect_refused(fx, &req, NULL, "user -1");
    fx->forget[1].user = 2;
    fx->retain[5].item = 30;
    expect_refused(fx, &req, NULL, "retain[5]: item 30");
    fx->retain[5].item = 3;
    fx->forget[0].value = NAN;
    expect_refused(fx, &req, NULL, "finite");
    fx->forget[0].value = 5;
    fx->retain[0].value = INFINITY;
    expect_refused(fx, &req, NULL, "retain[0]");
    fx->retain[0].value = 4;
    float means[30];
    for (int i = 0; i < 30; i++)
        means[i] = 3;
    means[9] = NAN;
    req.item_mean = means;
    expect_refused(fx, &req, NULL, "item_mean[9]");
    req.item_mean = NULL;
    fx->count[4] = -1;
    expect_refused(fx, &req, NULL, "item_count[4]");
    fx->count[4] = 8;
    req.forget = NULL;
    expect_refused(fx, &req, NULL, "no array");
    req.forget = fx->forget;
    fx->m->k = 0;
    expect_refused(fx, &req, NULL, "model");
    fx->m->k = 4;
}

static void test_bad_params(void **state) {
    fixture *fx = *state;
    unlearn_params p;
    unlearn_params_init(&p);
    p.foldin_sweeps = 0;
    expect_refused(fx, &fx->req, &p, "foldin_sweeps");
    unlearn_params_init(&p);
    p.foldin_reg = -1;
    expect_refused(fx, &fx->req, &p, "foldin_reg");
    unlearn_params_init(&p);
    p.cff_lr = NAN;
    expect_refused(fx, &fx->req, &p, "cff_lr");
    unlearn_params_init(&p);
    p.cff_reg = -0.1f;
    expect_refused(fx, &fx->req, &p, "cff_reg");
    unlearn_params_init(&p);
    p.cff_reg_bias = NAN;
    expect_refused(fx, &fx->req, &p, "cff_reg");
    unlearn_params_init(&p);
    p.threads = -2;
    expect_refused(fx, &fx->req, &p, "threads");
}

static void test_report_lists(void **state) {
    fixture *fx = *state;
    char err[UL_ERRSTR_SIZE] = "";
    unlearn_report rep;
    assert_int_equal(unlearn_apply("foldin", fx->m, &fx->req, NULL, &rep, err, sizeof(err)), UL_OK);
    assert_int_equal(rep.n_users, 2);
    assert_int_equal(rep.users[0], 2);
    assert_int_equal(rep.users[1], 7);
    /* F's items: users 2 and 7 with j = 0..2 -> 2,4,6 and 7,9,11. */
    const int32_t items[6] = {2, 4, 6, 7, 9, 11};
    assert_int_equal(rep.n_items, 6);
    for (int j = 0; j < 6; j++)
        assert_int_equal(rep.items[j], items[j]);
    assert_true(rep.seconds >= 0);
    assert_false(model_equal(fx->m, fx->copy));
    /* Rows outside the report did not move. */
    for (int32_t u = 0; u < 20; u++)
        if (u != 2 && u != 7)
            assert_memory_equal(fx->m->P + u * 4, fx->copy->P + u * 4, 4 * sizeof(float));
    for (int32_t i = 0; i < 30; i++) {
        int in_f = 0;
        for (int j = 0; j < 6; j++)
            in_f |= items[j] == i;
        if (!in_f)
            assert_memory_equal(fx->m->Q + i * 4, fx->copy->Q + i * 4, 4 * sizeof(float));
    }
    unlearn_report_free(&rep);
    assert_null(rep.users);
    unlearn_report_free(NULL);
}

static void test_no_item_counts_keeps_items(void **state) {
    fixture *fx = *state;
    unlearn_request req = fx->req;
    req.item_count = NULL;
    unlearn_report rep;
    assert_int_equal(unlearn_apply("foldin", fx->m, &req, NULL, &rep, NULL, 0), UL_OK);
    assert_int_equal(rep.n_users, 2);
    assert_int_equal(rep.n_items, 0);
    assert_null(rep.items);
    assert_memory_equal(fx->m->Q, fx->copy->Q, 30 * 4 * sizeof(float));
    unlearn_report_free(&rep);
}

static void test_empty_forget_set(void **state) {
    fixture *fx = *state;
    unlearn_request req = fx->req;
    req.n_forget = 0;
    unlearn_report rep;
    assert_int_equal(unlearn_apply("foldin", fx->m, &req, NULL, &rep, NULL, 0), UL_OK);
    assert_int_equal(rep.n_users, 0);
    assert_int_equal(rep.n_items, 0);
    assert_true(model_equal(fx->m, fx->copy));
    unlearn_report_free(&rep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_names),
        cmocka_unit_test(test_stream_methods),
        cmocka_unit_test(test_params_init),
        cmocka_unit_test(test_params_set),
        cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_item_counts_keeps_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_forget_set, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
