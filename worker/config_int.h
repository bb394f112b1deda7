/* config_int.h: what the config files share and nothing else (not API; the
 * API is config.h): the option row type, the options table defined in
 * config_options.c, and the kafka.* passthrough list entry. */
#ifndef UL_CONFIG_INT_H
#define UL_CONFIG_INT_H

#include <stddef.h>

typedef enum opt_type {
    OPT_STR,   /* free text */
    OPT_TOPIC, /* a Kafka topic name */
    OPT_INT,   /* long within [min, max] */
    OPT_DOUBLE,
    OPT_ENUM,   /* one of `choices` ('|'-separated), stored as text */
    OPT_METHOD, /* an unlearning method the stream worker offers (core's table), as text */
} opt_type;

typedef struct opt_def {
    const char *key;
    opt_type type;
    const char *def; /* default as text; NULL = computed (default_text) */
    double min, max;
    const char *choices;
    size_t offset;
    const char *doc;
} opt_def;

/* The table in config_options.c, the one source of every option; the
 * position of a row is its index in ul_config.origins. */
extern const opt_def config_options[];
extern const size_t config_n_options;

struct config_kv {
    char *key; /* without the kafka. prefix */
    char *value;
    char *origin;
    struct config_kv *next;
};

#endif
