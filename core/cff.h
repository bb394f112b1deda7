/* cff.h: the convolution fusion function (CFF) network of the paper's
 * Algorithm 1, forward and backward in C, trained with Adam. The unlearning
 * methods built on it ("cff", "cff-paper") are reached through unlearn.h;
 * this header exposes the network for tests (gradient check) and tools.
 *
 * Per row: input [m1 row; m2 row] as a 2 x d image; Conv2d(1 -> C, kernel
 * (2,1)) + ReLU; Conv2d(C -> C2, 1x1) + ReLU; flatten (C2*d); Linear(C2*d ->
 * H) + ReLU; Linear(H -> d) = o. Output y: CFF_OUT_NORMALISE, y = o / |o|
 * (the paper); CFF_OUT_RESIDUAL, y = m1 row + o with the last layer
 * zero-initialised, so the untrained network is the identity on m1. */
#ifndef UL_CFF_H
#define UL_CFF_H

#include <stddef.h>
#include <stdint.h>

typedef struct cff_net cff_net;

typedef enum cff_output {
    CFF_OUT_NORMALISE = 0,
    CFF_OUT_RESIDUAL = 1,
} cff_output;

/* A network for rows of d floats, batches of at most max_batch rows,
 * parameters initialised from `seed` (uniform +-1/sqrt(fan_in), as
 * PyTorch's defaults). NULL on allocation failure or bad sizes. */
cff_net *cff_net_new(int d, int channels, int channels2, int hidden, cff_output out, int max_batch,
                     uint64_t seed);
void cff_net_destroy(cff_net *net);

/* All parameters and their gradients as flat arrays of cff_net_n_params()
 * floats (borrowed from the net). */
size_t cff_net_n_params(const cff_net *net);
float *cff_net_params(cff_net *net);
float *cff_net_grads(cff_net *net);

/* Forward n <= max_batch rows: x is n x 2d (each row: m1 row then m2 row),
 * y is n x d. Keeps the activations for cff_net_backward(). */
void cff_net_forward(cff_net *net, const float *x, int n, float *y);
/* Gradients of a loss with dL/dy = dy (n x d) for the rows of the last
 * forward; overwrites the gradient array. */
void cff_net_backward(cff_net *net, const float *x, int n, const float *dy);
/* One Adam step (beta 0.9/0.999) with learning rate lr on the gradients. */
void cff_net_adam_step(cff_net *net, float lr);

#endif
