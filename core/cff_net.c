/* cff_net.c: the CFF network (see cff.h): parameters, forward, backward and
 * Adam. The two linear layers run as cblas_sgemm over the mini-batch; the
 * two convolutions are small loops (C*d and C2*C*d multiply-adds a row).
 *
 * Parameter layout (one flat array, so Adam and the gradient check see one
 * vector): w1 C x 2, b1 C, w2 C2 x C, b2 C2, W3 H x (C2 d), b3 H, W4 d x H,
 * b4 d. */
#include "cff.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "rng.h"

struct cff_net {
    int d, c, c2, h, max_batch;
    cff_output out;
    size_t n_params;
    float *theta, *grad, *adam_m, *adam_v;
    long adam_t;
    /* views into theta / grad */
    size_t o_w1, o_b1, o_w2, o_b2, o_w3, o_b3, o_w4, o_b4;
    /* activations of the last forward (max_batch rows) */
    float *a1, *a2, *f, *a3, *h3, *o, *norm;
    /* backward scratch */
    float *dO, *dA3, *dF, *dA2, *dA1;
};

static float *alloc_f(size_t n) {
    return calloc(n ? n : 1, sizeof(float));
}

static void init_uniform(rng *r, float *w, size_t n, size_t fan_in) {
    float bound = 1.0f / sqrtf((float)fan_in);
    for (size_t j = 0; j < n; j++)
        w[j] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
}

cff_net *cff_net_new(int d, int channels, int channels2, int hidden, cff_output out, int max_batch,
                     uint64_t seed) {
    if (d < 1 || channels < 1 || channels2 < 1 || hidden < 1 || max_batch < 1)
        return NULL;
    cff_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return NULL;
    size_t D = (size_t)d, C = (size_t)channels, C2 = (size_t)channels2, H = (size_t)hidden;
    size_t B = (size_t)max_batch;
    net->d = d;
    net->c = channels;
    net->c2 = channels2;
    net->h = hidden;
    net->max_batch = max_batch;
    net->out = out;
    net->o_w1 = 0;
    net->o_b1 = net->o_w1 + C * 2;
    net->o_w2 = net->o_b1 + C;
    net->o_b2 = net->o_w2 + C2 * C;
    net->o_w3 = net->o_b2 + C2;
    net->o_b3 = net->o_w3 + H * C2 * D;
    net->o_w4 = net->o_b3 + H;
    net->o_b4 = net->o_w4 + D * H;
    net->n_params = net->o_b4 + D;
    net->theta = alloc_f(net->n_params);
    net->grad = alloc_f(net->n_params);
    net->adam_m = alloc_f(net->n_params);
    net->adam_v = alloc_f(net->n_params);
    net->a1 = alloc_f(B * C * D);
    net->a2 = alloc_f(B * C2 * D);
    net->f = alloc_f(B * C2 * D);
    net->a3 = alloc_f(B * H);
    net->h3 = alloc_f(B * H);
    net->o = alloc_f(B * D);
    net->norm = alloc_f(B);
    net->dO = alloc_f(B * D);
    net->dA3 = alloc_f(B * H);
    net->dF = alloc_f(B * C2 * D);
    net->dA2 = alloc_f(B * C2 * D);
    net->dA1 = alloc_f(B * C * D);
    if (!net->theta || !net->grad || !net->adam_m || !net->adam_v || !net->a1 || !net->a2 ||
        !net->f || !net->a3 || !net->h3 || !net->o || !net->norm || !net->dO || !net->dA3 ||
        !net->dF || !net->dA2 || !net->dA1) {
        cff_net_destroy(net);
        return NULL;
    }
    rng r;
    rng_seed(&r, seed);
    float *t = net->theta;
    init_uniform(&r, t + net->o_w1, C * 2, 2);
    init_uniform(&r, t + net->o_b1, C, 2);
    init_uniform(&r, t + net->o_w2, C2 * C, C);
    init_uniform(&r, t + net->o_b2, C2, C);
    init_uniform(&r, t + net->o_w3, H * C2 * D, C2 * D);
    init_uniform(&r, t + net->o_b3, H, C2 * D);
    if (out == CFF_OUT_NORMALISE) {
        init_uniform(&r, t + net->o_w4, D * H, H);
        init_uniform(&r, t + net->o_b4, D, H);
    } /* residual: W4 = 0, b4 = 0, the identity on m1 at start */
    return net;
}

void cff_net_destroy(cff_net *net) {
    if (net == NULL)
        return;
    free(net->theta);
    free(net->grad);
    free(net->adam_m);
    free(net->adam_v);
    free(net->a1);
    free(net->a2);
    free(net->f);
    free(net->a3);
    free(net->h3);
    free(net->o);
    free(net->norm);
    free(net->dO);
    free(net->dA3);
    free(net->dF);
    free(net->dA2);
    free(net->dA1);
    free(net);
}

size_t cff_net_n_params(const cff_net *net) {
    return net->n_params;
}

float *cff_net_params(cff_net *net) {
    return net->theta;
}

float *cff_net_grads(cff_net *net) {
    return net->grad;
}

static float relu(float v) {
    return v > 0 ? v : 0;
}

/* The two convolutions of one row: x (2d) -> a1 (C x d), a2 (C2 x d), f. */
static void conv_forward(const cff_net *net, const float *x, float *a1, float *a2, float *f) {
    int d = net->d, C = net->c, C2 = net->c2;
    const float *w1 = net->theta + net->o_w1, *b1 = net->theta + net->o_b1;
    const float *w2 = net->theta + net->o_w2, *b2 = net->theta + net->o_b2;
    for (int c = 0; c < C; c++)
        for (int j = 0; j < d; j++)
            a1[c * d + j] = w1[2 * c] * x[j] + w1[2 * c + 1] * x[d + j] + b1[c];
    for (int c2 = 0; c2 < C2; c2++) {
        float *row = a2 + c2 * d;
        for (int j = 0; j < d; j++)
            row[j] = b2[c2];
        for (int c = 0; c < C; c++) {
            float w = w2[c2 * C + c];
            for (int j = 0; j < d; j++)
                row[j] += w * relu(a1[c * d + j]);
        }
        for (int j = 0; j < d; j++)
            f[c2 * d + j] = relu(row[j]);
    }
}

void cff_net_forward(cff_net *net, const float *x, int n, float *y) {
    int d = net->d, H = net->h, F = net->c2 * net->d;
    for (int r = 0; r < n; r++)
        conv_forward(net, x + (size_t)r * 2 * (size_t)d, net->a1 + (size_t)r * net->c * d,
                     net->a2 + (size_t)r * F, net->f + (size_t)r * F);
    const float *b3 = net->theta + net->o_b3, *b4 = net->theta + net->o_b4;
    for (int r = 0; r < n; r++)
        memcpy(net->a3 + (size_t)r * H, b3, (size_t)H * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, F, 1.0f, net->f, F,
                net->theta + net->o_w3, F, 1.0f, net->a3, H);
    for (size_t j = 0; j < (size_t)n * (size_t)H; j++)
        net->h3[j] = relu(net->a3[j]);
    for (int r = 0; r < n; r++)
        memcpy(net->o + (size_t)r * d, b4, (size_t)d * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, H, 1.0f, net->h3, H,
                net->theta + net->o_w4, H, 1.0f, net->o, d);
    for (int r = 0; r < n; r++) {
        const float *o = net->o + (size_t)r * d;
        float *yr = y + (size_t)r * d;
        if (net->out == CFF_OUT_RESIDUAL) {
            const float *x1 = x + (size_t)r * 2 * (size_t)d;
            for (int j = 0; j < d; j++)
                yr[j] = x1[j] + o[j];
            continue;
        }
        float s = cblas_snrm2(d, o, 1);
        if (s < 1e-12f)
            s = 1e-12f;
        net->norm[r] = s;
        for (int j = 0; j < d; j++)
            yr[j] = o[j] / s;
    }
}

/* dL/do from dL/dy for the output mapping. */
static void output_backward(cff_net *net, int n, const float *dy) {
    int d = net->d;
    for (int r = 0; r < n; r++) {
        const float *g = dy + (size_t)r * d;
        float *dO = net->dO + (size_t)r * d;
        if (net->out == CFF_OUT_RESIDUAL) {
            memcpy(dO, g, (size_t)d * sizeof(float));
            continue;
        }
        /* y = o/|o|: do = (dy - y (y.dy)) / |o| */
        const float *o = net->o + (size_t)r * d;
        float s = net->norm[r], ydy = 0;
        for (int j = 0; j < d; j++)
            ydy += o[j] / s * g[j];
        for (int j = 0; j < d; j++)
            dO[j] = (g[j] - o[j] / s * ydy) / s;
    }
}

/* Backward through the convolutions of one row, accumulating into grads. */
static void conv_backward(cff_net *net, const float *x, const float *a1, const float *a2, float *dF,
                          float *dA1) {
    int d = net->d, C = net->c, C2 = net->c2;
    const float *w2 = net->theta + net->o_w2;
    float *gw1 = net->grad + net->o_w1, *gb1 = net->grad + net->o_b1;
    float *gw2 = net->grad + net->o_w2, *gb2 = net->grad + net->o_b2;
    for (size_t j = 0; j < (size_t)C2 * (size_t)d; j++)
        if (a2[j] <= 0)
            dF[j] = 0; /* now dA2 */
    memset(dA1, 0, (size_t)C * (size_t)d * sizeof(float));
    for (int c2 = 0; c2 < C2; c2++) {
        const float *g = dF + c2 * d;
        for (int j = 0; j < d; j++)
            gb2[c2] += g[j];
        for (int c = 0; c < C; c++) {
            float acc = 0, w = w2[c2 * C + c];
            for (int j = 0; j < d; j++) {
                acc += g[j] * relu(a1[c * d + j]);
                dA1[c * d + j] += w * g[j];
            }
            gw2[c2 * C + c] += acc;
        }
    }
    for (int c = 0; c < C; c++) {
        float s0 = 0, s1 = 0, sb = 0;
        for (int j = 0; j < d; j++) {
            float g = a1[c * d + j] > 0 ? dA1[c * d + j] : 0;
            s0 += g * x[j];
            s1 += g * x[d + j];
            sb += g;
        }
        gw1[2 * c] += s0;
        gw1[2 * c + 1] += s1;
        gb1[c] += sb;
    }
}

void cff_net_backward(cff_net *net, const float *x, int n, const float *dy) {
    int d = net->d, H = net->h, F = net->c2 * net->d;
    memset(net->grad, 0, net->n_params * sizeof(float));
    output_backward(net, n, dy);
    float *gb4 = net->grad + net->o_b4, *gb3 = net->grad + net->o_b3;
    /* W4: d x H, dW4 = dO^T h3 */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, H, n, 1.0f, net->dO, d, net->h3, H,
                0.0f, net->grad + net->o_w4, H);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < d; j++)
            gb4[j] += net->dO[(size_t)r * d + j];
    /* dH3 = dO W4 (n x H), then through ReLU */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, H, d, 1.0f, net->dO, d,
                net->theta + net->o_w4, H, 0.0f, net->dA3, H);
    for (size_t j = 0; j < (size_t)n * (size_t)H; j++)
        if (net->a3[j] <= 0)
            net->dA3[j] = 0;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < H; j++)
            gb3[j] += net->dA3[(size_t)r * H + j];
    /* W3: H x F, dW3 = dA3^T f; dF = dA3 W3 */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, F, n, 1.0f, net->dA3, H, net->f, F,
                0.0f, net->grad + net->o_w3, F);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, F, H, 1.0f, net->dA3, H,
                net->theta + net->o_w3, F, 0.0f, net->dF, F);
    for (int r = 0; r < n; r++)
        conv_backward(net, x + (size_t)r * 2 * (size_t)d, net->a1 + (size_t)r * net->c * d,
                      net->a2 + (size_t)r * F, net->dF + (size_t)r * F,
                      net->dA1 + (size_t)r * net->c * d);
}

void cff_net_adam_step(cff_net *net, float lr) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    net->adam_t++;
    float c1 = 1.0f - powf(b1, (float)net->adam_t), c2 = 1.0f - powf(b2, (float)net->adam_t);
    for (size_t j = 0; j < net->n_params; j++) {
        float g = net->grad[j];
        net->adam_m[j] = b1 * net->adam_m[j] + (1 - b1) * g;
        net->adam_v[j] = b2 * net->adam_v[j] + (1 - b2) * g * g;
        net->theta[j] -= lr * (net->adam_m[j] / c1) / (sqrtf(net->adam_v[j] / c2) + eps);
    }
}
