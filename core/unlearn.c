/* unlearn.c: the one entry point to every unlearning method (see unlearn.h).
 *
 * It owns the method table, the default knobs, validation of a request
 * against the model (so a bad forget set is refused before any row changes),
 * the affected-row lists every method starts from, the wall-time and the
 * report of changed rows. The methods live in foldin.c and cff.c. */
#include "unlearn.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ul_err.h"
#include "unlearn_method.h"

/* The method table, the one list of methods: name, entry point, flags
 * (METHOD_STREAM: offered to the stream worker, which runs it on a cycle's
 * small sub-model; METHOD_DEFAULT: the worker's default), doc line. Expanded
 * into the table below and into the name list unlearn_method_names()
 * returns, so the two cannot drift apart. */
#define METHOD_STREAM 1
#define METHOD_DEFAULT 2
#define UNLEARN_METHODS(X)                                                                         \
    X("cff", cff_apply, METHOD_STREAM,                                                             \
      "rescue model m2 + CFF network fusing the affected users' rows (residual on m2, bias "       \
      "included), trained to forget F and keep their other ratings, ridge-bounded; then "          \
      "fold-in's Newton step on F's items (docs/unlearning.md)")                                   \
    X("cff-paper", cff_paper_apply, 0,                                                             \
      "the paper's Algorithm 1 taken literally: unit-norm fused rows of every user and item "      \
      "of F, trained on D_fl1 only")                                                               \
    X("foldin", foldin_apply, METHOD_STREAM | METHOD_DEFAULT,                                      \
      "ridge re-solve of each affected user on their remaining ratings, then one "                 \
      "m1-anchored Newton step per item of F")

typedef struct unlearn_method {
    const char *name;
    unlearn_method_fn fn;
    int flags;
    const char *doc;
} unlearn_method;

#define METHOD_ROW(name, fn, flags, doc) {name, fn, flags, doc},
#define METHOD_NAME(name, fn, flags, doc) name,

static const unlearn_method methods[] = {UNLEARN_METHODS(METHOD_ROW)};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

static const char *const method_names[N_METHODS + 1] = {UNLEARN_METHODS(METHOD_NAME) NULL};

static const unlearn_method *find_method(const char *name) {
    for (size_t k = 0; name != NULL && k < N_METHODS; k++)
        if (strcmp(methods[k].name, name) == 0)
            return &methods[k];
    return NULL;
}

const char *const *unlearn_method_names(void) {
    return method_names;
}

const char *unlearn_method_doc(const char *name) {
    const unlearn_method *um = find_method(name);
    return um ? um->doc : NULL;
}

const char *unlearn_method_default(void) {
    for (size_t k = 0; k < N_METHODS; k++)
        if (methods[k].flags & METHOD_DEFAULT)
            return methods[k].name;
    return methods[0].name;
}

int unlearn_method_streams(const char *name) {
    const unlearn_method *um = find_method(name);
    return um != NULL && (um->flags & METHOD_STREAM) != 0;
}

char *unlearn_method_list(int stream_only, const char *sep, char *buf, size_t size) {
    size_t len = 0;
    if (size > 0)
        buf[0] = '\0';
    for (size_t k = 0; k < N_METHODS && len < size; k++) {
        if (stream_only && !(methods[k].flags & METHOD_STREAM))
            continue;
        int n = snprintf(buf + len, size - len, "%s%s", len ? sep : "", methods[k].name);
        len += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

void unlearn_params_init(unlearn_params *params) {
    memset(params, 0, sizeof(*params));
    params->seed = 1;
    params->threads = 0;
    params->rescue_epochs = 5;
    params->rescue_lr = 0.02f;
    params->rescue_reg = 0.04f;
    params->cff_steps = 60;
    params->cff_lr = 1e-3f;
    params->cff_channels = 8;
    params->cff_channels2 = 2;
    params->cff_hidden = 512;
    params->cff_batch = 32;
    params->cff_anchor = 0.0f;
    params->cff_forget_weight = 1.0f;
    params->cff_anchor_pairs = 8;
    params->cff_reg = 0.05f;
    params->cff_reg_bias = 0.01f;
    params->cff_item_step = 1;
    params->cff_base_m2 = 1;
    params->rescue_retain = 1;
    params->foldin_sweeps = 1;
    params->foldin_reg = 0.15f;
    params->foldin_reg_bias = 0.01f;
    params->foldin_items = 1;
    params->foldin_item_prior = 5.0f;
    params->foldin_refine = 1;
}

/* The knobs unlearn_params_set() accepts: the one list (bench_unlearn's
 * and `unlearnd eval`'s --set both read it). */
typedef struct knob {
    const char *name;
    int is_int;
    size_t offset;
} knob;

/* is_int from the field's type: a knob of any other type does not compile. */
#define KNOB(f)                                                                                    \
    { #f, _Generic(((unlearn_params *)0)->f, int : 1, float : 0), offsetof(unlearn_params, f) }
static const knob knobs[] = {
    KNOB(rescue_epochs),     KNOB(rescue_retain),   KNOB(rescue_lr),      KNOB(rescue_reg),
    KNOB(cff_steps),         KNOB(cff_lr),          KNOB(cff_channels),   KNOB(cff_channels2),
    KNOB(cff_hidden),        KNOB(cff_batch),       KNOB(cff_anchor),     KNOB(cff_anchor_pairs),
    KNOB(cff_forget_weight), KNOB(cff_fuse_items),  KNOB(cff_reg),        KNOB(cff_reg_bias),
    KNOB(cff_item_step),     KNOB(cff_base_m2),     KNOB(cff_item_users), KNOB(foldin_sweeps),
    KNOB(foldin_reg),        KNOB(foldin_reg_bias), KNOB(foldin_items),   KNOB(foldin_item_prior),
    KNOB(foldin_reg_const),  KNOB(foldin_refine),
};
#define N_KNOBS (sizeof(knobs) / sizeof(knobs[0]))

char *unlearn_params_knobs(const char *sep, char *buf, size_t size) {
    size_t len = 0;
    if (size > 0)
        buf[0] = '\0';
    for (size_t k = 0; k < N_KNOBS && len < size; k++) {
        int n = snprintf(buf + len, size - len, "%s%s", len ? sep : "", knobs[k].name);
        len += n > 0 ? (size_t)n : 0;
    }
    return buf;
}

int unlearn_params_set(unlearn_params *params, const char *assignment, char *errstr,
                       size_t errstr_size) {
    const char *eq = assignment ? strchr(assignment, '=') : NULL;
    const knob *kn = NULL;
    for (size_t k = 0; eq != NULL && k < N_KNOBS && kn == NULL; k++)
        if (strlen(knobs[k].name) == (size_t)(eq - assignment) &&
            strncmp(knobs[k].name, assignment, (size_t)(eq - assignment)) == 0)
            kn = &knobs[k];
    if (kn == NULL) {
        char known[1024];
        ul_set_err(errstr, errstr_size, "'%s' is not KNOB=VALUE with a known knob (%s)",
                   assignment ? assignment : "(null)",
                   unlearn_params_knobs(", ", known, sizeof(known)));
        return UL_ERR_ARG;
    }
    char *end = NULL;
    double v = strtod(eq + 1, &end);
    int bad = end == eq + 1 || *end != '\0' || !isfinite(v) ||
              (kn->is_int && (v != floor(v) || fabs(v) > 1e9));
    if (bad) {
        ul_set_err(errstr, errstr_size, "%s: '%s' is not %s", kn->name, eq + 1,
                   kn->is_int ? "an integer" : "a finite number");
        return UL_ERR_ARG;
    }
    char *field = (char *)params + kn->offset;
    if (kn->is_int) {
        int iv = (int)v;
        memcpy(field, &iv, sizeof(iv));
    } else {
        float fv = (float)v;
        memcpy(field, &fv, sizeof(fv));
    }
    return UL_OK;
}

void unlearn_report_free(unlearn_report *rep) {
    if (rep == NULL)
        return;
    free(rep->users);
    free(rep->items);
    memset(rep, 0, sizeof(*rep));
}

int unlearn_groups_build(const ul_rating *r, size_t n, int by_item, const unlearn_rows *rows,
                         unlearn_groups *g) {
    size_t n_rows = by_item ? rows->n_items : rows->n_users;
    g->start = calloc(n_rows + 1, sizeof(*g->start));
    g->idx = malloc((n ? n : 1) * sizeof(*g->idx));
    size_t *fill = calloc(n_rows + 1, sizeof(*fill));
    ptrdiff_t *pos = malloc((n ? n : 1) * sizeof(*pos));
    if (g->start == NULL || g->idx == NULL || fill == NULL || pos == NULL) {
        free(fill);
        free(pos);
        unlearn_groups_free(g);
        return UL_ERR_NOMEM;
    }
    for (size_t j = 0; j < n; j++) {
        pos[j] = unlearn_pos(rows, by_item, by_item ? r[j].item : r[j].user);
        if (pos[j] >= 0)
            g->start[pos[j] + 1]++;
    }
    for (size_t k = 0; k < n_rows; k++)
        g->start[k + 1] += g->start[k];
    for (size_t j = 0; j < n; j++)
        if (pos[j] >= 0)
            g->idx[g->start[pos[j]] + fill[pos[j]]++] = j;
    free(fill);
    free(pos);
    return UL_OK;
}

void unlearn_groups_free(unlearn_groups *g) {
    if (g == NULL)
        return;
    free(g->start);
    free(g->idx);
    g->start = NULL;
    g->idx = NULL;
}

float unlearn_corrected_value(const mf_model *m, const unlearn_request *req, int32_t item) {
    if (req->item_mean != NULL)
        return req->item_mean[item];
    return m->global_mean + m->item_bias[item];
}

static int check_ratings(const mf_model *m, const char *what, const ul_rating *r, size_t n,
                         char *errstr, size_t errstr_size) {
    if (n > 0 && r == NULL) {
        ul_set_err(errstr, errstr_size, "%s: %zu ratings but no array", what, n);
        return UL_ERR_ARG;
    }
    for (size_t j = 0; j < n; j++) {
        if (r[j].user < 0 || r[j].user >= m->n_users) {
            ul_set_err(errstr, errstr_size, "%s[%zu]: user %d outside the model's 0..%d", what, j,
                       (int)r[j].user, (int)m->n_users - 1);
            return UL_ERR_ARG;
        }
        if (r[j].item < 0 || r[j].item >= m->n_items) {
            ul_set_err(errstr, errstr_size, "%s[%zu]: item %d outside the model's 0..%d", what, j,
                       (int)r[j].item, (int)m->n_items - 1);
            return UL_ERR_ARG;
        }
        if (!isfinite(r[j].value)) {
            ul_set_err(errstr, errstr_size, "%s[%zu]: rating is not a finite number", what, j);
            return UL_ERR_ARG;
        }
    }
    return UL_OK;
}

int unlearn_params_check(const unlearn_params *p, char *errstr, size_t errstr_size) {
    const char *bad = NULL;
    if (p->threads < 0)
        bad = "threads must be >= 0";
    else if (p->rescue_epochs < 0 || p->rescue_epochs > 100000)
        bad = "rescue_epochs must be in 0..100000";
    else if (!(p->rescue_lr > 0 && p->rescue_lr < 10) ||
             !(p->rescue_reg >= 0 && p->rescue_reg < 100))
        bad = "rescue_lr must be in (0,10) and rescue_reg in [0,100)";
    else if (p->cff_steps < 0 || p->cff_steps > 10000000)
        bad = "cff_steps must be in 0..10000000";
    else if (!(p->cff_lr > 0 && p->cff_lr < 10))
        bad = "cff_lr must be in (0,10)";
    else if (p->cff_channels < 1 || p->cff_channels > 256 || p->cff_channels2 < 1 ||
             p->cff_channels2 > 256 || p->cff_hidden < 1 || p->cff_hidden > 65536)
        bad = "cff_channels, cff_channels2 must be in 1..256 and cff_hidden in 1..65536";
    else if (p->cff_batch < 1 || p->cff_batch > 1000000)
        bad = "cff_batch must be in 1..1000000";
    else if (!(p->cff_forget_weight >= 0 && p->cff_forget_weight < 1e6f))
        bad = "cff_forget_weight must be in [0,1e6)";
    else if (!(p->cff_reg >= 0 && p->cff_reg < 1e3f) ||
             !(p->cff_reg_bias >= 0 && p->cff_reg_bias < 1e3f))
        bad = "cff_reg and cff_reg_bias must be in [0,1e3)";
    else if (!(p->cff_anchor >= 0 && p->cff_anchor < 1e6f) || p->cff_anchor_pairs < 0)
        bad = "cff_anchor must be in [0,1e6) and cff_anchor_pairs >= 0";
    else if (p->foldin_sweeps < 1 || p->foldin_sweeps > 100)
        bad = "foldin_sweeps must be in 1..100";
    else if (!(p->foldin_reg > 0 && p->foldin_reg < 1e6f) ||
             !(p->foldin_reg_bias >= 0 && p->foldin_reg_bias < 1e6f))
        bad = "foldin_reg must be in (0,1e6) and foldin_reg_bias in [0,1e6)";
    else if (p->cff_fuse_items != 0 && p->cff_fuse_items != 1)
        bad = "cff_fuse_items must be 0 or 1";
    else if (p->cff_item_step != 0 && p->cff_item_step != 1)
        bad = "cff_item_step must be 0 or 1";
    else if (p->rescue_retain != 0 && p->rescue_retain != 1)
        bad = "rescue_retain must be 0 or 1";
    else if (p->cff_base_m2 != 0 && p->cff_base_m2 != 1)
        bad = "cff_base_m2 must be 0 or 1";
    else if (p->cff_item_users != 0 && p->cff_item_users != 1)
        bad = "cff_item_users must be 0 or 1";
    else if (p->foldin_refine != 0 && p->foldin_refine != 1)
        bad = "foldin_refine must be 0 or 1";
    else if (!(p->foldin_reg_const >= 0 && p->foldin_reg_const < 1e9f))
        bad = "foldin_reg_const must be in [0,1e9)";
    else if (!(p->foldin_item_prior >= 0 && p->foldin_item_prior < 1e9f))
        bad = "foldin_item_prior must be in [0,1e9)";
    else if (p->foldin_items != 0 && p->foldin_items != 1)
        bad = "foldin_items must be 0 or 1";
    if (bad == NULL)
        return UL_OK;
    ul_set_err(errstr, errstr_size, "unlearn parameters: %s", bad);
    return UL_ERR_ARG;
}

static int check_request(const mf_model *m, const unlearn_request *req, char *errstr,
                         size_t errstr_size) {
    if (m->n_users <= 0 || m->n_items <= 0 || m->k <= 0 || m->P == NULL || m->Q == NULL ||
        m->user_bias == NULL || m->item_bias == NULL) {
        ul_set_err(errstr, errstr_size, "unlearn: the model is empty or incomplete");
        return UL_ERR_ARG;
    }
    int rc = check_ratings(m, "forget", req->forget, req->n_forget, errstr, errstr_size);
    if (rc == UL_OK)
        rc = check_ratings(m, "retain", req->retain, req->n_retain, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;
    for (int32_t i = 0; req->item_mean != NULL && i < m->n_items; i++)
        if (!isfinite(req->item_mean[i])) {
            ul_set_err(errstr, errstr_size, "item_mean[%d] is not a finite number", (int)i);
            return UL_ERR_ARG;
        }
    for (int32_t i = 0; req->item_count != NULL && i < m->n_items; i++)
        if (req->item_count[i] < 0) {
            ul_set_err(errstr, errstr_size, "item_count[%d] is negative", (int)i);
            return UL_ERR_ARG;
        }
    return UL_OK;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Sorted distinct values of one field of F. */
static int32_t *distinct(const ul_rating *r, size_t n, int by_item, size_t *out_n) {
    int32_t *v = malloc((n ? n : 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    for (size_t j = 0; j < n; j++)
        v[j] = by_item ? r[j].item : r[j].user;
    qsort(v, n, sizeof(*v), cmp_i32);
    size_t w = 0;
    for (size_t j = 0; j < n; j++)
        if (w == 0 || v[w - 1] != v[j])
            v[w++] = v[j];
    *out_n = w;
    return v;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int unlearn_apply(const char *method, mf_model *m, const unlearn_request *req,
                  const unlearn_params *params, unlearn_report *rep, char *errstr,
                  size_t errstr_size) {
    double t0 = now_seconds();
    if (rep != NULL)
        memset(rep, 0, sizeof(*rep));
    const unlearn_method *um = find_method(method);
    if (um == NULL) {
        char known[256];
        unlearn_method_list(0, ", ", known, sizeof(known));
        ul_set_err(errstr, errstr_size, "unknown unlearning method '%s' (known: %s)",
                   method ? method : "(null)", known);
        return UL_ERR_ARG;
    }
    if (m == NULL || req == NULL) {
        ul_set_err(errstr, errstr_size, "unlearn: no model or no request");
        return UL_ERR_ARG;
    }
    unlearn_params defaults;
    if (params == NULL) {
        unlearn_params_init(&defaults);
        params = &defaults;
    }
    int rc = unlearn_params_check(params, errstr, errstr_size);
    if (rc == UL_OK)
        rc = check_request(m, req, errstr, errstr_size);
    if (rc != UL_OK)
        return rc;

    unlearn_rows rows = {0};
    rows.users = distinct(req->forget, req->n_forget, 0, &rows.n_users);
    rows.items = distinct(req->forget, req->n_forget, 1, &rows.n_items);
    rows.user_pos = malloc((size_t)m->n_users * sizeof(int32_t));
    rows.item_pos = malloc((size_t)m->n_items * sizeof(int32_t));
    if (rows.users == NULL || rows.items == NULL || rows.user_pos == NULL ||
        rows.item_pos == NULL) {
        free(rows.users);
        free(rows.items);
        free(rows.user_pos);
        free(rows.item_pos);
        ul_set_err(errstr, errstr_size, "unlearn: out of memory");
        return UL_ERR_NOMEM;
    }
    memset(rows.user_pos, 0xff, (size_t)m->n_users * sizeof(int32_t)); /* -1 */
    memset(rows.item_pos, 0xff, (size_t)m->n_items * sizeof(int32_t));
    for (size_t a = 0; a < rows.n_users; a++)
        rows.user_pos[rows.users[a]] = (int32_t)a;
    for (size_t c = 0; c < rows.n_items; c++)
        rows.item_pos[rows.items[c]] = (int32_t)c;
    int users_changed = 0, items_changed = 0;
    if (req->n_forget > 0)
        rc = um->fn(m, req, params, &rows, &users_changed, &items_changed, errstr, errstr_size);
    if (rc == UL_OK && rep != NULL) {
        if (users_changed) {
            rep->users = rows.users;
            rep->n_users = rows.n_users;
            rows.users = NULL;
        }
        if (items_changed) {
            rep->items = rows.items;
            rep->n_items = rows.n_items;
            rows.items = NULL;
        }
        rep->seconds = now_seconds() - t0;
    }
    free(rows.users);
    free(rows.items);
    free(rows.user_pos);
    free(rows.item_pos);
    return rc;
}
