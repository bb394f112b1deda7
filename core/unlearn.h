/* unlearn.h: the one interface to every unlearning method, so the offline
 * evaluation and the stream worker pick a method by name ("cff", "foldin").
 *
 * A method turns the live model m1 into the unlearned model mf in place,
 * given the forget set F (the ratings as m1 learned them) and, for methods
 * that need them, the affected users' remaining ratings. It never needs the
 * rest of the historical training data. */
#ifndef UL_UNLEARN_H
#define UL_UNLEARN_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "mf.h"

typedef struct unlearn_request {
    const ul_rating *forget; /* F in dense ids, values as m1 learned them; borrowed */
    size_t n_forget;
    const ul_rating *retain; /* the affected users' remaining ratings; borrowed; may be NULL */
    size_t n_retain;
    /* Corrected value per item (n_items floats) used to build D_fl1 (the
     * paper's O2); NULL: the method derives it from m1 (mu + b_i). */
    const float *item_mean;
    /* Number of ratings per item in m1's training data, F included (n_items
     * int32); fold-in uses it to weigh the item rows' update. NULL: fold-in
     * leaves item rows unchanged. */
    const int32_t *item_count;
} unlearn_request;

typedef struct unlearn_params {
    uint64_t seed;
    int threads; /* 0 = number of cores */
    /* Method-specific knobs are added here by the methods, each with a
     * default set in unlearn_params_init(). */
    int rescue_epochs; /* m2 training epochs */
    int rescue_retain; /* "cff": 1 also trains m2's users on their remaining ratings, items fixed */
    int cff_steps;     /* CFF optimisation steps */
    float cff_lr;      /* Adam learning rate */
    int foldin_sweeps; /* user then item ridge sweeps */
    float foldin_reg;  /* ridge regularisation (per rating, like the SGD's reg) */
    float foldin_reg_bias;   /* ridge regularisation of the biases (per rating) */
    int foldin_items;        /* 1: Newton update of the items in F; 0: items fixed */
    float foldin_item_prior; /* ratings added to n'_i in the item Hessian (damping) */
    int foldin_refine;       /* 1: sweeps after the first refine the users (cheap); 0: re-solve */
    float foldin_reg_const;  /* ridge on a user's factors on top of foldin_reg per rating */
    float rescue_lr;         /* m2 SGD learning rate */
    float rescue_reg;        /* m2 SGD regularisation */
    int cff_channels;        /* C: channels of the (2,1) convolution */
    int cff_channels2;       /* C2: channels of the 1x1 convolution */
    int cff_hidden;          /* width of the hidden linear layer (512) */
    int cff_batch;           /* rows per Adam mini-batch */
    float cff_anchor;        /* weight of the "stay close to m1" pairs in the CFF loss */
    int cff_anchor_pairs;    /* random pairs per fused row held at m1's prediction */
    float cff_forget_weight; /* weight of the D_fl1 pairs in the "cff" loss */
    int cff_fuse_items;      /* "cff": 1 also fuses the items of F (users only by default) */
    float cff_reg;           /* "cff": ridge on a fused row's factors, per unit of pair weight */
    float cff_reg_bias;      /* "cff": the same on its bias */
    int cff_item_step;       /* "cff": 1 steps the items of F as fold-in does, after the users */
    int cff_base_m2;         /* "cff": 1 makes m2's row the residual's base (0: m1's) */
    int cff_item_users; /* "cff": the item step's users: 0 the fused rows, 1 fold-in's re-solve */
} unlearn_params;

void unlearn_params_init(unlearn_params *params);

/* Set one knob from "name=value" (a field name above, e.g.
 * "foldin_sweeps=2"; seed and threads are not knobs). Integer knobs take
 * integers. Only parses: ranges are checked by unlearn_apply(). Returns
 * UL_OK, or UL_ERR_ARG with a message naming the known knobs. */
int unlearn_params_set(unlearn_params *params, const char *assignment, char *errstr,
                       size_t errstr_size);

/* UL_OK when every knob is in range, else UL_ERR_ARG with a message (what
 * unlearn_apply() checks first). */
int unlearn_params_check(const unlearn_params *params, char *errstr, size_t errstr_size);

/* The knob names unlearn_params_set() accepts, joined by `sep` into buf
 * (truncated, NUL-terminated); returns buf. */
char *unlearn_params_knobs(const char *sep, char *buf, size_t size);

/* What a run changed, so the worker publishes only those rows. Arrays are
 * owned by the report: free with unlearn_report_free(). */
typedef struct unlearn_report {
    double seconds; /* wall time of the unlearning step */
    int32_t *users; /* dense ids of user rows changed */
    size_t n_users;
    int32_t *items; /* dense ids of item rows changed */
    size_t n_items;
} unlearn_report;

void unlearn_report_free(unlearn_report *rep);

/* The method names this build knows, NULL-terminated. */
const char *const *unlearn_method_names(void);

/* A one-line description of a method (for --help), or NULL if unknown. */
const char *unlearn_method_doc(const char *name);

/* The method the stream worker runs unless configured otherwise ("cff"). */
const char *unlearn_method_default(void);

/* 1 when the stream worker offers `name` (its cycles run a method on a small
 * sub-model of the requesting users), else 0. */
int unlearn_method_streams(const char *name);

/* The method names (stream_only: those the stream worker offers), in table
 * order, joined by `sep` into buf (truncated, NUL-terminated); returns buf. */
char *unlearn_method_list(int stream_only, const char *sep, char *buf, size_t size);

/* Apply `method` to `m` in place (m1 -> mf). `rep` may be NULL. Returns
 * UL_OK, or UL_ERR_ARG for an unknown method or a forget set that does not
 * fit the model (the model is then unchanged). */
int unlearn_apply(const char *method, mf_model *m, const unlearn_request *req,
                  const unlearn_params *params, unlearn_report *rep, char *errstr,
                  size_t errstr_size);

#endif
