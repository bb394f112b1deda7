/* test_dataset.c: loading every supported format, every kind of bad input
 * (the message must name file:line and the reason), both duplicate
 * policies, the raw-id mapping, the synthetic generator and the split.
 * MovieLens checks run only when the shared data is present. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "testutil.h"
#include "ul_err.h"

static char err[UL_ERRSTR_SIZE];

static dataset *load_text(const char *name, const char *text, const ds_load_opts *opts) {
    ds_load_opts defaults;
    if (opts == NULL) {
        ds_load_opts_init(&defaults);
        opts = &defaults;
    }
    err[0] = '\0';
    return ds_load(tu_write_file(name, text), opts, err, sizeof(err));
}

/* Loading must fail and the message must contain every given piece. */
static void expect_error(const char *name, const char *text, const ds_load_opts *opts,
                         const char *piece1, const char *piece2) {
    dataset *ds = load_text(name, text, opts);
    if (ds != NULL) {
        ds_destroy(ds);
        fail_msg("%s loaded but should have failed", name);
    }
    if (strstr(err, piece1) == NULL || (piece2 && strstr(err, piece2) == NULL))
        fail_msg("message '%s' lacks '%s' / '%s'", err, piece1, piece2 ? piece2 : "");
    assert_null(strchr(err, '\n')); /* one line */
}

static void test_udata(void **state) {
    (void)state;
    dataset *ds = load_text("u.data",
                            "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                            "196\t377\t1\t878887116\n",
                            NULL);
    assert_non_null(ds);
    assert_string_equal(ds->format, "u.data");
    assert_int_equal(ds->n_ratings, 3);
    assert_int_equal(ds->n_users, 2);
    assert_int_equal(ds->n_items, 3);
    assert_true(ds->has_time);
    assert_int_equal(ds->ratings[1].time, 891717742);
    assert_int_equal(ds->ratings[2].user, 0); /* 196 was seen first */
    assert_int_equal(ds->ratings[2].item, 2);
    assert_true(ds->ratings[2].value == 1.0f);
    assert_int_equal(ds->user_ids[1], 186);
    assert_int_equal(ds->n_duplicates, 0);
    ds_destroy(ds);
}

static void test_ratings_dat(void **state) {
    (void)state;
    dataset *ds = load_text("ratings.dat",
                            "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::1\n", NULL);
    assert_non_null(ds);
    assert_string_equal(ds->format, "ratings.dat");
    assert_int_equal(ds->n_ratings, 3);
    assert_int_equal(ds->n_users, 2);
    assert_int_equal(ds->n_items, 2);
    assert_int_equal(ds->ratings[2].item, 0);
    assert_int_equal(ds->ratings[0].time, 978300760);
    ds_destroy(ds);
}

static void test_csv_headers(void **state) {
    (void)state;
    dataset *ds = load_text("a.csv", "user,item,rating\n5,50,4\n6,60,2.5\n", NULL);
    assert_non_null(ds);
    assert_string_equal(ds->format, "csv");
    assert_false(ds->has_time);
    assert_int_equal(ds->ratings[1].time, 1); /* line order without timestamps */
    assert_true(ds->ratings[1].value == 2.5f);
    ds_destroy(ds);

    ds = load_text("b.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n", NULL);
    assert_non_null(ds);
    assert_true(ds->has_time);
    assert_int_equal(ds->item_ids[0], 31);
    assert_int_equal(ds->ratings[0].time, 1260759144);
    ds_destroy(ds);

    /* Any column order, any case, quoted names, unknown columns ignored. */
    ds = load_text("c.csv", "\"Timestamp\",tag,RATING,ItemId,USER_ID\n7,x,3,70,8\n", NULL);
    assert_non_null(ds);
    assert_int_equal(ds->user_ids[0], 8);
    assert_int_equal(ds->item_ids[0], 70);
    assert_true(ds->ratings[0].value == 3.0f);
    assert_int_equal(ds->ratings[0].time, 7);
    ds_destroy(ds);

    /* No header: user,item,rating[,timestamp]. */
    ds = load_text("d.csv", "3,4,5,99\n", NULL);
    assert_non_null(ds);
    assert_int_equal(ds->ratings[0].time, 99);
    ds_destroy(ds);
}

static void test_crlf_bom_blank_lines(void **state) {
    (void)state;
    dataset *ds =
        load_text("crlf.csv", "\xEF\xBB\xBFuser,item,rating\r\n1,2,3\r\n2,2,4\r\n\r\n", NULL);
    assert_non_null(ds);
    assert_int_equal(ds->n_ratings, 2);
    assert_true(ds->ratings[1].value == 4.0f);
    ds_destroy(ds);
    ds = load_text("nofinalnl.data", "1\t2\t3\t4", NULL);
    assert_non_null(ds);
    assert_int_equal(ds->n_ratings, 1);
    ds_destroy(ds);
}

static void test_errors_file(void **state) {
    (void)state;
    ds_load_opts opts;
    ds_load_opts_init(&opts);
    dataset *ds = ds_load("/nonexistent/ratings.csv", &opts, err, sizeof(err));
    assert_null(ds);
    assert_non_null(strstr(err, "/nonexistent/ratings.csv"));
    assert_non_null(strstr(err, "cannot open"));
    ds = ds_load(tu_tmpdir(), &opts, err, sizeof(err));
    assert_null(ds);
    assert_non_null(strstr(err, "directory"));
    expect_error("empty.csv", "", NULL, "empty.csv", "empty");
    expect_error("blank.csv", "\n  \r\n\n", NULL, "blank.csv", "empty");
    expect_error("hdr.csv", "user,item,rating\n", NULL, "hdr.csv", "only a header");
    expect_error("fmt.txt", "1 2 3\n", NULL, "fmt.txt:1:", "unknown format");
    expect_error("nohdr.csv", "user,movie,stars\n1,2,3\n", NULL, "nohdr.csv:1:", "no rating");
}

static void test_errors_fields(void **state) {
    (void)state;
    expect_error("r1.csv", "user,item,rating\n1,2,3\nabc,2,3\n", NULL,
                 "r1.csv:3:", "user id 'abc' is not a whole number");
    expect_error("r2.csv", "user,item,rating\n1,2.5,3\n", NULL,
                 "r2.csv:2:", "item id '2.5' is not a whole number");
    expect_error("r3.csv", "user,item,rating\n1,2,good\n", NULL,
                 "r3.csv:2:", "rating 'good' is not a number");
    expect_error("r4.csv", "user,item,rating\n1,2\n", NULL, "r4.csv:2:", "expected 3 fields");
    expect_error("r5.csv", "user,item,rating\n1,2,3,4\n", NULL, "r5.csv:2:", "found 4");
    expect_error("r6.csv", "user,item,rating\n1,,3\n", NULL, "r6.csv:2:", "missing item id");
    expect_error("r7.csv", "user,item,rating\n-4,2,3\n", NULL, "r7.csv:2:", "negative user id -4");
    expect_error("r8.data", "1\t2\t3\t5\n1\t-2\t3\t5\n", NULL, "r8.data:2:", "negative item id -2");
    ds_load_opts five;
    ds_load_opts_init(&five);
    five.rating_min = 1.0f;
    five.rating_max = 5.0f;
    expect_error("r9.csv", "user,item,rating\n1,2,3\n1,3,3\n1,4,7\n", &five,
                 "r9.csv:4:", "rating 7 outside 1..5");
    expect_error("r10.csv", "user,item,rating\n1,2,0.5\n", &five,
                 "r10.csv:2:", "rating 0.5 outside 1..5");
    expect_error("r11.csv", "user,item,rating\n1,2,nan\n", NULL, "r11.csv:2:", "NaN");
    expect_error("r12.csv", "user,item,rating\n1,2,inf\n", NULL, "r12.csv:2:", "not finite");
    expect_error("r13.csv", "user,item,rating\n1,2,1e999\n", NULL, "r13.csv:2:", "not finite");
    expect_error("r14.csv", "user,item,rating\n99999999999999999999,2,3\n", NULL,
                 "r14.csv:2:", "too large");
    expect_error("r15.dat", "1::2::3::x\n", NULL,
                 "r15.dat:1:", "timestamp 'x' is not a whole number");
    expect_error("r16.csv", "user,item,rating\n1,2,\n", NULL, "r16.csv:2:", "missing rating");
}

static void test_errors_long_line(void **state) {
    (void)state;
    ds_load_opts opts;
    ds_load_opts_init(&opts);
    opts.max_line = 16;
    expect_error("long.csv", "user,item,rating\n1,2,3\n1,3,3                    \n", &opts,
                 "long.csv:3:", "longer than 16 bytes");
    /* The default limit (4096) applies too. */
    char *text = malloc(6000);
    snprintf(text, 6000, "user,item,rating\n1,2,%05000d\n", 3);
    expect_error("long2.csv", text, NULL, "long2.csv:2:", "longer than 4096 bytes");
    free(text);
}

static void test_scale_option(void **state) {
    (void)state;
    ds_load_opts opts;
    ds_load_opts_init(&opts);
    opts.rating_min = 0.5f;
    opts.rating_max = 10.0f;
    dataset *ds = load_text("scale.csv", "user,item,rating\n1,2,0.5\n1,3,10\n", &opts);
    assert_non_null(ds);
    assert_true(ds->rating_max == 10.0f);
    ds_destroy(ds);
    expect_error("scale2.csv", "user,item,rating\n1,2,10.5\n", &opts,
                 "scale2.csv:2:", "outside 0.5..10");
    /* The hint says what changes the scale. */
    opts.range_hint = "--rating-min/--rating-max set the scale";
    expect_error("scale3.csv", "user,item,rating\n1,2,0.25\n", &opts, "scale3.csv:2:",
                 "rating 0.25 outside 0.5..10 (--rating-min/--rating-max set the scale)");
    /* One bound given, the other detected. */
    ds_load_opts_init(&opts);
    opts.rating_min = 0.0f;
    ds = load_text("scale4.csv", "user,item,rating\n1,2,0\n1,3,7.5\n", &opts);
    assert_non_null(ds);
    assert_true(ds->rating_min == 0.0f && ds->rating_max == 7.5f);
    ds_destroy(ds);
    expect_error("scale5.csv", "user,item,rating\n1,2,-1\n", &opts,
                 "scale5.csv:2:", "rating -1 below the minimum 0");
    ds_load_opts_init(&opts);
    opts.rating_max = 5.0f;
    expect_error("scale6.csv", "user,item,rating\n1,2,6\n", &opts,
                 "scale6.csv:2:", "rating 6 above the maximum 5");
    /* An empty or inverted scale is refused before reading. */
    ds_load_opts_init(&opts);
    opts.rating_min = opts.rating_max = 3.0f;
    expect_error("scale7.csv", "user,item,rating\n1,2,3\n", &opts, "invalid rating scale 3..3",
                 NULL);
}

/* Without bounds the scale is the file's: half stars give 0.5..5, whole
 * stars 1..5, any other scale its lowest and highest value. */
static void test_scale_detected(void **state) {
    (void)state;
    dataset *ds = load_text("half.csv", "userId,movieId,rating\n1,2,0.5\n1,3,3.5\n2,2,5.0\n", NULL);
    assert_non_null(ds);
    assert_true(ds->rating_min == 0.5f && ds->rating_max == 5.0f);
    ds_destroy(ds);
    ds = load_text("whole.data", "1\t2\t1\t5\n1\t3\t5\t6\n2\t2\t3\t7\n", NULL);
    assert_non_null(ds);
    assert_true(ds->rating_min == 1.0f && ds->rating_max == 5.0f);
    ds_destroy(ds);
    ds = load_text("ten.csv", "user,item,rating\n1,2,-10\n1,3,10\n", NULL);
    assert_non_null(ds);
    assert_true(ds->rating_min == -10.0f && ds->rating_max == 10.0f);
    ds_destroy(ds);
    /* All equal: the scale is empty and the caller decides. */
    ds = load_text("same.csv", "user,item,rating\n1,2,4\n1,3,4\n", NULL);
    assert_non_null(ds);
    assert_true(ds->rating_min == 4.0f && ds->rating_max == 4.0f);
    ds_destroy(ds);
}

static const char dup_text[] = "user,item,rating\n1,10,3\n2,10,4\n\n1,11,2\n1,10,5\n2,10,1\n";

static void test_duplicates_error(void **state) {
    (void)state;
    /* Lines 2 and 6 (user 1, item 10) come first; 3 and 7 follow. */
    expect_error("dup.csv", dup_text, NULL, "dup.csv:6:", "(first at line 2)");
    expect_error("dup.csv", dup_text, NULL, "user 1 for item 10", "policy");
}

static void test_duplicates_last(void **state) {
    (void)state;
    ds_load_opts opts;
    ds_load_opts_init(&opts);
    opts.dups = DS_DUP_LAST;
    dataset *ds = load_text("dup.csv", dup_text, &opts);
    assert_non_null(ds);
    assert_int_equal(ds->n_duplicates, 2);
    assert_int_equal(ds->n_ratings, 3);
    /* The survivors keep file order: (1,11,2), (1,10,5), (2,10,1). */
    assert_int_equal(ds->user_ids[ds->ratings[0].user], 1);
    assert_int_equal(ds->item_ids[ds->ratings[0].item], 11);
    assert_true(ds->ratings[1].value == 5.0f);
    assert_int_equal(ds->item_ids[ds->ratings[1].item], 10);
    assert_true(ds->ratings[2].value == 1.0f);
    assert_int_equal(ds->user_ids[ds->ratings[2].user], 2);
    assert_int_equal(ds->ratings[2].time, 4); /* original record order */
    ds_destroy(ds);
}

static void test_id_mapping(void **state) {
    (void)state;
    char *text = malloc(1 << 20);
    size_t off = (size_t)snprintf(text, 64, "user,item,rating\n");
    for (int j = 0; j < 5000; j++) /* big, sparse, unordered raw ids */
        off += (size_t)snprintf(text + off, 64, "%lld,%lld,%d\n",
                                9000000000LL + (long long)((j * 7919) % 3001) * 1000003LL,
                                (long long)(j % 211) * 65537LL, 1 + j % 5);
    dataset *ds = load_text("ids.csv", text, NULL);
    free(text);
    assert_non_null(ds);
    assert_int_equal(ds->n_users, 3001);
    assert_int_equal(ds->n_items, 211);
    for (int32_t u = 0; u < ds->n_users; u++)
        assert_int_equal(ds_user_index(ds, ds->user_ids[u]), u);
    for (int32_t i = 0; i < ds->n_items; i++)
        assert_int_equal(ds_item_index(ds, ds->item_ids[i]), i);
    assert_int_equal(ds->user_ids[0], 9000000000LL); /* first seen first */
    assert_int_equal(ds_user_index(ds, 42), -1);
    assert_int_equal(ds_item_index(ds, -1), -1);
    assert_int_equal(ds_user_index(NULL, 1), -1);
    ds_destroy(ds);
}

static int pair_cmp(const void *a, const void *b) {
    const ul_rating *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    return x->item < y->item ? -1 : x->item > y->item;
}

static void test_synthetic(void **state) {
    (void)state;
    ds_synth_opts opts;
    ds_synth_opts_init(&opts);
    opts.n_users = 300;
    opts.n_items = 200;
    opts.n_ratings = 30001;
    dataset *a = ds_synthetic(&opts, err, sizeof(err));
    dataset *b = ds_synthetic(&opts, err, sizeof(err));
    opts.seed = 2;
    dataset *c = ds_synthetic(&opts, err, sizeof(err));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(a->n_ratings, 30001);
    assert_int_equal(a->n_users, 300);
    assert_int_equal(a->n_items, 200);
    assert_string_equal(a->format, "synthetic");
    assert_memory_equal(a->ratings, b->ratings, a->n_ratings * sizeof(ul_rating));
    assert_true(memcmp(a->ratings, c->ratings, a->n_ratings * sizeof(ul_rating)) != 0);
    int hist[6] = {0};
    for (size_t j = 0; j < a->n_ratings; j++) {
        float v = a->ratings[j].value;
        assert_true(v >= 1.0f && v <= 5.0f && v == (float)(int)v);
        hist[(int)v]++;
        assert_int_equal(a->ratings[j].time, (int64_t)j);
    }
    for (int v = 1; v <= 5; v++) /* every level used, none dominant */
        assert_true(hist[v] > 300 && hist[v] < 15000);
    assert_int_equal(ds_user_index(a, 1), 0);
    assert_int_equal(a->item_ids[199], 200);
    qsort(a->ratings, a->n_ratings, sizeof(ul_rating), pair_cmp);
    for (size_t j = 1; j < a->n_ratings; j++)
        assert_true(pair_cmp(&a->ratings[j - 1], &a->ratings[j]) < 0); /* distinct pairs */
    ds_destroy(a);
    ds_destroy(b);
    ds_destroy(c);
}

/* Half stars: every one of the ten levels 0.5..5 is used, and the set is the
 * whole-star set's planted model on another scale (same pairs, same order). */
static void test_synthetic_half_stars(void **state) {
    (void)state;
    ds_synth_opts opts;
    ds_synth_opts_init(&opts);
    opts.n_users = 300;
    opts.n_items = 200;
    opts.n_ratings = 30000;
    dataset *whole = ds_synthetic(&opts, err, sizeof(err));
    opts.rating_min = 0.5f;
    opts.rating_step = 0.5f;
    dataset *half = ds_synthetic(&opts, err, sizeof(err));
    assert_non_null(whole);
    assert_non_null(half);
    assert_true(half->rating_min == 0.5f && half->rating_max == 5.0f);
    int hist[11] = {0};
    for (size_t j = 0; j < half->n_ratings; j++) {
        float v = half->ratings[j].value;
        assert_true(v >= 0.5f && v <= 5.0f && v * 2 == (float)(int)(v * 2));
        hist[(int)(v * 2)]++;
        assert_int_equal(half->ratings[j].user, whole->ratings[j].user);
        assert_int_equal(half->ratings[j].item, whole->ratings[j].item);
    }
    for (int v = 1; v <= 10; v++)
        assert_true(hist[v] > 100);
    opts.rating_step = 0.0f;
    assert_null(ds_synthetic(&opts, err, sizeof(err)));
    assert_non_null(strstr(err, "step"));
    ds_destroy(whole);
    ds_destroy(half);
}

static void test_synthetic_full_and_bad(void **state) {
    (void)state;
    ds_synth_opts opts;
    ds_synth_opts_init(&opts);
    opts.n_users = 10;
    opts.n_items = 7;
    opts.n_ratings = 70; /* every pair */
    dataset *ds = ds_synthetic(&opts, err, sizeof(err));
    assert_non_null(ds);
    ds_destroy(ds);
    opts.n_ratings = 71;
    assert_null(ds_synthetic(&opts, err, sizeof(err)));
    assert_non_null(strstr(err, "do not fit"));
    opts.n_ratings = 10;
    opts.rank = 0;
    assert_null(ds_synthetic(&opts, err, sizeof(err)));
    assert_non_null(strstr(err, "rank"));
    ds = ds_synthetic(NULL, err, sizeof(err)); /* defaults */
    assert_non_null(ds);
    assert_int_equal(ds->n_ratings, 100000);
    ds_destroy(ds);
}

static void test_split(void **state) {
    (void)state;
    ds_synth_opts opts;
    ds_synth_opts_init(&opts);
    opts.n_ratings = 10001;
    dataset *ds = ds_synthetic(&opts, err, sizeof(err));
    assert_non_null(ds);
    ul_ratings tr, te, tr2, te2;
    assert_int_equal(ds_split(ds->ratings, ds->n_ratings, 0.2, 7, &tr, &te, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(te.n, 2000); /* round(10001 * 0.2) */
    assert_int_equal(tr.n, 8001);
    assert_int_equal(ds_split(ds->ratings, ds->n_ratings, 0.2, 7, &tr2, &te2, err, sizeof(err)),
                     UL_OK);
    assert_memory_equal(te.v, te2.v, te.n * sizeof(ul_rating));
    ul_ratings_free(&tr2);
    ul_ratings_free(&te2);
    assert_int_equal(ds_split(ds->ratings, ds->n_ratings, 0.2, 8, &tr2, &te2, err, sizeof(err)),
                     UL_OK);
    assert_true(memcmp(te.v, te2.v, te.n * sizeof(ul_rating)) != 0);
    /* A partition of the input (times are unique positions), order kept. */
    char *seen = calloc(ds->n_ratings, 1);
    for (size_t j = 0; j < tr.n; j++)
        seen[tr.v[j].time]++;
    for (size_t j = 0; j < te.n; j++) {
        seen[te.v[j].time]++;
        assert_true(j == 0 || te.v[j].time > te.v[j - 1].time);
    }
    for (size_t j = 0; j < ds->n_ratings; j++)
        assert_int_equal(seen[j], 1);
    free(seen);
    ul_ratings_free(&tr);
    ul_ratings_free(&te);
    ul_ratings_free(&tr2);
    ul_ratings_free(&te2);
    assert_null(tr.v);

    assert_int_equal(ds_split(ds->ratings, 10, 0.0, 1, &tr, &te, err, sizeof(err)), UL_OK);
    assert_int_equal(te.n, 0);
    assert_int_equal(tr.n, 10);
    ul_ratings_free(&tr);
    ul_ratings_free(&te);
    assert_int_equal(ds_split(ds->ratings, 10, 1.0, 1, &tr, &te, err, sizeof(err)), UL_OK);
    assert_int_equal(te.n, 10);
    ul_ratings_free(&tr);
    ul_ratings_free(&te);
    assert_int_equal(ds_split(ds->ratings, 10, 1.5, 1, &tr, &te, err, sizeof(err)), UL_ERR_ARG);
    assert_non_null(strstr(err, "outside 0..1"));
    ds_destroy(ds);
}

/* Never crash, never accept silently-broken text: seeded random mutations
 * of a valid file either load or fail with a file-named message. */
static void test_mutations_never_crash(void **state) {
    (void)state;
    static const char base[] = "userId,movieId,rating,timestamp\r\n1,10,4.5,100\r\n"
                               "2,10,3,101\r\n2,11,1,102\r\n\r\n";
    static const char alphabet[] = "0123456789,:\t\r\n.-+e\"x \xEF\xBB\xBF";
    uint64_t x = 12345;
    char text[sizeof(base) + 16];
    int loaded = 0;
    ds_load_opts five;
    ds_load_opts_init(&five);
    five.rating_min = 1.0f;
    five.rating_max = 5.0f;
    for (int trial = 0; trial < 2000; trial++) {
        memcpy(text, base, sizeof(base));
        size_t len = sizeof(base) - 1;
        for (int m = 0; m < 1 + trial % 4 && len > 0; m++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(x >> 33) % len;
            char ch = alphabet[(x >> 20) % (sizeof(alphabet) - 1)];
            if ((x >> 60) % 4 == 0) /* truncate */
                len = at;
            else
                text[at] = ch;
        }
        text[len] = '\0';
        dataset *ds = load_text("mut.csv", text, &five);
        if (ds != NULL) {
            loaded++;
            assert_true(ds->n_ratings >= 1 && ds->n_ratings <= 4);
            for (size_t j = 0; j < ds->n_ratings; j++)
                assert_true(ds->ratings[j].value >= 1.0f && ds->ratings[j].value <= 5.0f);
            ds_destroy(ds);
        } else
            assert_non_null(strstr(err, "mut.csv"));
    }
    assert_true(loaded > 50 && loaded < 1950); /* both outcomes exercised */
}

static void test_movielens_100k(void **state) {
    (void)state;
    const char *path = tu_shared_data("ml-100k/u.data");
    if (path == NULL)
        skip();
    ds_load_opts opts;
    ds_load_opts_init(&opts);
    dataset *ds = ds_load(path, &opts, err, sizeof(err));
    if (ds == NULL)
        fail_msg("%s", err);
    assert_int_equal(ds->n_ratings, 100000);
    assert_int_equal(ds->n_users, 943);
    assert_int_equal(ds->n_items, 1682);
    assert_true(ds->has_time);
    assert_string_equal(ds->name, "ml-100k");
    assert_int_equal(ds->user_ids[0], 196);
    ds_destroy(ds);
}

static void test_movielens_1m(void **state) {
    (void)state;
    const char *path = tu_shared_data("ml-1m/ratings.csv");
    if (path == NULL)
        skip();
    ds_load_opts opts;
    ds_load_opts_init(&opts);
    dataset *ds = ds_load(path, &opts, err, sizeof(err));
    if (ds == NULL)
        fail_msg("%s", err);
    assert_int_equal(ds->n_ratings, 1000209);
    assert_int_equal(ds->n_users, 6040);
    assert_int_equal(ds->n_items, 3706);
    assert_string_equal(ds->name, "ml-1m");
    assert_int_equal(ds->item_ids[0], 1193);
    ds_destroy(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udata),
        cmocka_unit_test(test_ratings_dat),
        cmocka_unit_test(test_csv_headers),
        cmocka_unit_test(test_crlf_bom_blank_lines),
        cmocka_unit_test(test_errors_file),
        cmocka_unit_test(test_errors_fields),
        cmocka_unit_test(test_errors_long_line),
        cmocka_unit_test(test_scale_option),
        cmocka_unit_test(test_scale_detected),
        cmocka_unit_test(test_duplicates_error),
        cmocka_unit_test(test_duplicates_last),
        cmocka_unit_test(test_id_mapping),
        cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_synthetic_half_stars),
        cmocka_unit_test(test_synthetic_full_and_bad),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_mutations_never_crash),
        cmocka_unit_test(test_movielens_100k),
        cmocka_unit_test(test_movielens_1m),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
