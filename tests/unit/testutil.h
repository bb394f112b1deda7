/* testutil.h: helpers shared by the cmocka test programs: temporary files,
 * the optional shared MovieLens data (tests that need it skip) and small
 * random models built by hand. */
#ifndef UL_TESTUTIL_H
#define UL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "mf.h"

/* A fresh temporary directory for this process (created once, removed with
 * its files at exit). */
const char *tu_tmpdir(void);

/* Write `content` to <tmpdir>/<name>; returns the path (static buffer per
 * call slot: copy it if you need two at once) or aborts the test. */
const char *tu_write_file(const char *name, const char *content);

/* Path of a file under the shared MovieLens data (env UNLEARND_SHARED_DATA,
 * default ../shared/data), or NULL when it is absent: the caller skips. */
const char *tu_shared_data(const char *relpath);

/* A random nu x ni model with k factors, global mean 3.5, ratings 1..5,
 * built by hand so a test need not train one. From one generator seeded
 * with `seed`, in this order: P and Q ~ N(0, factor_sd), then the user
 * biases ~ N(0, user_bias_sd) (left at 0 and no draws when user_bias_sd is
 * 0), then the item biases ~ N(0, item_bias_sd). Free with
 * mf_model_destroy. */
mf_model *tu_model_random(int32_t nu, int32_t ni, int k, uint64_t seed, double factor_sd,
                          double user_bias_sd, double item_bias_sd);

#endif
