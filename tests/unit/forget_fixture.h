/* forget_fixture.h: a buffered forget request built by hand, for the tests
 * that run unlearning cycles on a live model (test_live.c, test_train.c;
 * static: each test program includes it once). */
#ifndef UL_FORGET_FIXTURE_H
#define UL_FORGET_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard.h"

/* Request `req-<offset>` of `user`: the n items, or with n = 0 the time
 * window from..to (inclusive); no wait for ratings. */
static forget_req request(int64_t offset, int64_t user, const int64_t *items, uint32_t n,
                          int64_t from, int64_t to) {
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
    fr.ratings_hwm = -1;
    fr.unsaved = 1;
    return fr;
}

#endif
