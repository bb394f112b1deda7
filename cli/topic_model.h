/* topic_model.h: rebuild a model from the factors topic, as a downstream
 * server would: read every partition from its beginning to the high
 * watermark taken when reading starts, keep the latest row of each
 * (kind, id), and turn them into an mf_model with raw ids.
 *
 * Scores: the worker publishes each item's bias with the model's global
 * mean folded in (docs/stream.md, "Factor"), so the rebuilt model has
 * global_mean 0 and predicts b_u + b_i' + p_u . q_i on the rating scale. */
#ifndef UL_TOPIC_MODEL_H
#define UL_TOPIC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "mf.h"

typedef struct topic_model_info {
    int32_t partitions;
    int64_t messages;    /* records read */
    int64_t undecodable; /* skipped (logged as warnings) */
    int64_t max_version; /* highest model_version seen */
} topic_model_info;

/* Read `topic` (cfg's Kafka settings and factor schema id) and build the
 * model; `timeout_ms` bounds the whole read. `lg` is borrowed (may be NULL).
 * NULL with a message a user can act on: Kafka unreachable, topic missing or
 * empty, rows of mixed dimensions, timeout. The caller owns the model. */
mf_model *topic_model_load(const ul_config *cfg, ul_log *lg, const char *topic, int timeout_ms,
                           topic_model_info *info, char *errstr, size_t errstr_size);

#endif
