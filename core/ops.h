/* ops.h: the layers of the U-Net on one image, float32, channel-major
 * (C x H x W) (private to core/).
 *
 * Nothing here allocates: every scratch buffer comes from the caller (the
 * forward plan in unet.c), sized with the *_scratch functions below.
 */
#ifndef DDPM_OPS_H
#define DDPM_OPS_H

#include <stddef.h>

#include "model_internal.h"

/* How a 3x3 (or 1x1) convolution reads its input. */
typedef struct {
    int H, W;              /* input size                                      */
    int upsample;          /* read the input nearest-upsampled x2 (Upsample2D)*/
    int stride;            /* 1, or 2 for Downsample2D                        */
    int pad_top, pad_bottom, pad_left, pad_right;
    int circular;          /* padding wraps around instead of reading zeros  */
} conv_geom;

/* Output size of a convolution with kernel k. */
int conv_out_h(const conv_geom *g, int k);
int conv_out_w(const conv_geom *g, int k);

/* Floats of scratch conv2d_accumulate needs for this layer. */
size_t conv_scratch_floats(int cin, int k, int Ho, int Wo);

/* y[o] = bias[o] + extra[o] over all HW pixels (extra may be NULL): the
 * starting value that convolutions then accumulate onto. */
void fill_bias(float *y, const float *bias, const float *extra, int C, size_t HW);
/* y[o] = x[o] + bias[o]: a residual plus a bias. */
void fill_residual(float *y, const float *x, const float *bias, int C, size_t HW);

/* y += conv(x) (no bias): x is cin x H x W, y is cout x Ho x Wo. */
void conv2d_accumulate(const conv2d_w *c, const float *x, const conv_geom *g, float *y, float *scratch);

/* y += W[:, k0 : k0 + K] x for a 1x1 convolution whose input channels k0 ..
 * k0+K-1 are the K planes of x (lets a concat be two calls). */
void conv1x1_accumulate(const conv2d_w *c, int k0, int K, const float *x, size_t HW, float *y);

/* GroupNorm (optionally followed by SiLU) of the channel concatenation
 * [xa (Ca planes) ; xb (Cb planes)] of HW pixels each, into y.  Moments in
 * double. */
void group_norm(const groupnorm_w *g, int groups, double eps, int silu, const float *xa, int Ca, const float *xb,
                int Cb, size_t HW, float *y);

/* Attention over the HW tokens of x (C x HW), plus x (spec 3.7).  Scratch:
 * attention_scratch_floats. */
size_t attention_scratch_floats(const attention_w *a, size_t HW);
void attention(const attention_w *a, int groups, double eps, const float *x, size_t HW, float *y, float *scratch);

/* y[n, o] = b[o] + sum_i W[o, i] x[n, i] for N rows. */
void linear(const linear_w *l, const float *x, int N, float *y);

/* v / (1 + exp(-v)) in place. */
void silu_inplace(float *v, size_t n);

#endif
