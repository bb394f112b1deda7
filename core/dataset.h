/* dataset.h: rating datasets. Loading the common MovieLens formats (format
 * detected from the content), mapping raw ids to dense indices (and back),
 * a seeded synthetic generator with a planted low-rank model, and the seeded
 * train/test split.
 *
 * A `dataset` owns its arrays; `ul_ratings` is a plain owned array of
 * ratings in dense indices (a split, a forget set, a shard). */
#ifndef UL_DATASET_H
#define UL_DATASET_H

#include <stddef.h>
#include <stdint.h>

/* One rating in dense indices. `time` is seconds since the epoch, or the
 * 0-based line order when the source has no timestamps. */
typedef struct ul_rating {
    int32_t user;
    int32_t item;
    float value;
    int64_t time;
} ul_rating;

/* An owned array of ratings. Free with ul_ratings_free(). */
typedef struct ul_ratings {
    ul_rating *v;
    size_t n;
} ul_ratings;

void ul_ratings_free(ul_ratings *rs);

typedef struct ds_index ds_index; /* raw id -> dense index hash, opaque */

typedef struct dataset {
    ul_rating *ratings; /* n_ratings entries, in file order */
    size_t n_ratings;
    int32_t n_users, n_items;
    int64_t *user_ids; /* dense -> raw, n_users entries */
    int64_t *item_ids; /* dense -> raw, n_items entries */
    float rating_min, rating_max;
    int has_time;        /* 1 when the source carried timestamps */
    size_t n_duplicates; /* duplicate (user,item) lines resolved by policy */
    char format[16];     /* "u.data", "ratings.dat", "csv", "synthetic" */
    char name[64];       /* short name for reports, e.g. "ml-100k" */
    ds_index *user_index;
    ds_index *item_index;
} dataset;

typedef enum ds_dup_policy {
    DS_DUP_ERROR = 0, /* a duplicate (user,item) is an error naming both lines */
    DS_DUP_LAST = 1,  /* keep the last rating of the pair (a re-rating) */
} ds_dup_policy;

/* The rating scale: each bound is either given (a rating beyond it is an
 * error naming the line) or NAN, "detect": the lowest / highest rating in the
 * file (half-star data gives 0.5..5). dataset.rating_min/max hold the result;
 * a file whose ratings are all equal detects an empty scale (min == max),
 * which the caller must refuse or replace. `range_hint`, when set, ends the
 * out-of-scale message and tells the user what changes the scale, e.g.
 * "--rating-min/--rating-max set the scale" (borrowed, may be NULL). */
typedef struct ds_load_opts {
    float rating_min, rating_max; /* accepted scale; default NAN..NAN = detect */
    const char *range_hint;       /* appended to out-of-scale errors; default NULL */
    ds_dup_policy dups;           /* default DS_DUP_ERROR */
    size_t max_line;              /* longest accepted line in bytes, default 4096 */
} ds_load_opts;

void ds_load_opts_init(ds_load_opts *opts);

/* Load `path`, detecting the format from its first line: u.data (tab
 * separated user item rating time), ratings.dat (`::`), or CSV with a header
 * naming user/item/rating columns (`user,item,rating[,timestamp]`,
 * `userId,movieId,rating,timestamp`). Errors name the file and line:
 * "ratings.csv:1042: rating 7 outside 1..5" (then opts->range_hint). Returns
 * NULL on error. */
dataset *ds_load(const char *path, const ds_load_opts *opts, char *errstr, size_t errstr_size);

typedef struct ds_synth_opts {
    int32_t n_users, n_items;
    size_t n_ratings; /* distinct (user,item) pairs to draw */
    int rank;         /* rank of the planted model */
    float noise;      /* std of the Gaussian noise before rounding */
    uint64_t seed;
    /* The scale: the planted 1..5 value is mapped linearly onto
     * rating_min..rating_max, rounded to a multiple of rating_step above
     * rating_min and clipped. Defaults 1, 5, 1 (whole stars); 0.5, 5, 0.5
     * gives half stars. */
    float rating_min, rating_max, rating_step;
} ds_synth_opts;

void ds_synth_opts_init(ds_synth_opts *opts);

/* A seeded synthetic dataset: ratings = round(clip(mu + b_u + b_i + p_u.q_i +
 * noise)) on the 1..5 scale (or its image on opts' scale), raw ids 1..n,
 * times increasing. */
dataset *ds_synthetic(const ds_synth_opts *opts, char *errstr, size_t errstr_size);

void ds_destroy(dataset *ds);

/* Raw id -> dense index, or -1 when the id is unknown. */
int32_t ds_user_index(const dataset *ds, int64_t raw_id);
int32_t ds_item_index(const dataset *ds, int64_t raw_id);

/* Seeded random split: each rating goes to test with probability close to
 * test_frac (exactly round(n*test_frac) ratings go to test). Both outputs are
 * owned by the caller. */
int ds_split(const ul_rating *ratings, size_t n, double test_frac, uint64_t seed, ul_ratings *train,
             ul_ratings *test, char *errstr, size_t errstr_size);

#endif
