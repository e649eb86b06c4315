/* ops.h: the layers of the U-Net on one image, float32, channel-major
 * (C x H x W) (private to core/).
 *
 * Nothing here allocates: every scratch buffer comes from the caller (the
 * forward plan in unet.c), sized with the *_scratch_floats functions.
 *
 * Threads: every function shares its work among a team of `threads` (1 =
 * serial; threads.c keeps a small pool of worker threads) and calls
 * OpenBLAS from the team, one GEMM per thread, so OpenBLAS itself must be
 * single-threaded meanwhile (see unet.c).  Which thread computes a block
 * never changes its numbers; only the cut of a GEMM into blocks depends on
 * the team size, and that changes at most GEMM's own rounding.
 *
 * Padded planes: a 3x3 convolution reads its input from a "padded" buffer
 * of C planes of (H + 2) x (W + 2) whose one-pixel border holds the padding
 * (zeros, or the opposite edge for circular padding), plus a zero slack row
 * (column) when H (W) is odd, for Winograd's 2x2 tiles.  Producers (group
 * norm, upsampling, input copy) write the interior directly and pad_borders
 * fills the border, so no separate padding pass is ever made.
 */
#ifndef DDPM_OPS_H
#define DDPM_OPS_H

#include <stddef.h>

#include "model_internal.h"

/* 3x3 stride-1 convolution weights are prepared once, at load:
 *   - Winograd layers (conv3x3_uses_winograd): U = G g G^T, (m + 2)^2
 *     matrices [(m + 2)^2][cout][cin] for F(2x2) and, if not too wide, F(4x4)
 *     as well (winograd.c), into conv2d_w.u (conv2d_w.w is then unused),
 *     followed on the packed kernel by the weights in its panels (the
 *     direct form, for small images: conv3x3_uses_direct and _rows, below);
 *   - the others: repacked from PyTorch's [cout][cin][3][3] to
 *     [cout][3][3][cin] in place (tmp: 9 cin floats), which the shifted-GEMM
 *     and im2col schemes read directly.  Stride-2 convolutions are repacked
 *     too. */
int conv3x3_uses_winograd(int cin, int cout);
/* floats of U: F(2x2)'s, then F(4x4)'s if it has one, then the direct
 * form's if it has one (conv3x3_uses_direct) */
size_t winograd_floats(int cin, int cout);
void winograd_weights(const float *w, int cout, int cin, float *U, float *tmp);   /* tmp: 36 cin floats */

/* On CPUs with AVX-512 the Winograd GEMMs run on the project's own kernel,
 * which reads U in panels of 16 output channels, [xi][cout / 16][cin][16]:
 * winograd_packed(cout) says whether a layer's U is so packed, and
 * winograd_pack rearranges it in place (tmp: cout cin floats).  Setting
 * DDPM_NO_PACKED in the environment turns the kernel off (OpenBLAS for
 * every GEMM), so that tests can check both paths on one machine. */
int winograd_packed(int cout);
void winograd_pack(float *U, int cout, int cin, float *tmp);

/* On the packed kernel the Winograd layers keep their weights a second
 * time, as they are (winograd_weights writes them after the U's, already
 * in the kernel's panels: the "direct form"), and run small images from
 * it instead of Winograd (winograd.c says which): the widest layers as one
 * direct GEMM, the others as rows straight from the padded input (conv.c). */
int conv3x3_uses_direct(int cin, int cout, int H, int W);
int conv3x3_uses_rows(int cin, int cout, int H, int W);
const float *conv3x3_direct_weights(const conv2d_w *c);
void conv3x3_repack(float *w, int cout, int cin, float *tmp);

/* Layout of a padded buffer: row stride, plane size, pixel (0, 0). */
int padded_stride(int W);
size_t padded_plane(int H, int W);
float *padded_interior(float *xp, int W);
void pad_borders(float *xp, int C, int H, int W, int circular, int threads);

/* Copy C compact planes into a padded buffer's interior, optionally mapped
 * v -> 2v - 1 (center_input_sample); or nearest-upsampled x2 (Upsample2D). */
void pad_copy(const float *x, int C, int H, int W, int center, float *xp, int threads);
void pad_upsample2(const float *x, int C, int H, int W, float *xp, int threads);

/* 3x3 convolution with stride 1, x in a padded buffer, y compact cout x H x
 * W:  accumulate: y += conv(x) (no bias);  else y = conv(x) + bias + extra
 * (extra: per output channel, may be NULL). */
size_t conv3x3_scratch_floats(int cin, int cout, int H, int W, int threads);
void conv3x3(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra, int accumulate,
             float *scratch, int threads);

/* Downsample2D's 3x3 stride-2 convolution, y = conv(x) + bias, x compact
 * H x W.  Padding top/left `pad_lt`, bottom/right 1 (downsample_padding 1:
 * 1, 1; 0: TF's 'SAME', 0, 1), zero or circular.  Its weights, repacked to
 * [cout][3][3][cin] at load, are then packed into the kernel's panels
 * where it runs (conv_down_packed(cout), same conditions as
 * winograd_packed; tmp: 9 cout cin floats). */
int conv_down_packed(int cout);
void conv_down_pack(float *w, int cout, int cin, float *tmp);
size_t conv_down_scratch_floats(int cin, int H, int W);
void conv_down(const conv2d_w *c, const float *x, int H, int W, int pad_lt, int circular, float *y, float *scratch,
               int threads);

/* 1x1 convolution weights [cout][cin] are prepared at load too: on CPUs
 * with the packed kernel (conv1x1_packed(cout), same conditions as
 * winograd_packed), conv1x1_pack rearranges them in place into panels of
 * 16 output channels, [cout / 16][cin][16] (tmp: cout cin floats);
 * elsewhere they stay as they are. */
int conv1x1_packed(int cout);
void conv1x1_pack(float *w, int cout, int cin, float *tmp);

/* 1x1 convolution of the channel concatenation [xa (Ca planes) ; xb (Cb
 * planes)] (Ca + Cb = cin; Cb = 0: just xa) of HW pixels, y compact cout x
 * HW:  y = conv(x) + bias + extra (extra: per output channel, may be NULL). */
size_t conv1x1_scratch_floats(int cin, int cout, size_t HW, int threads);
void conv1x1(const conv2d_w *c, const float *xa, int Ca, const float *xb, int Cb, size_t HW, float *y,
             const float *extra, float *scratch, int threads);

/* y[o] = bias[o] + extra[o] over all HW pixels (extra may be NULL), or
 * y[o] = x[o] + bias[o]: starting values that convolutions accumulate onto. */
void fill_bias(float *y, const float *bias, const float *extra, int C, size_t HW, int threads);
void fill_residual(float *y, const float *x, const float *bias, int C, size_t HW, int threads);

/* GroupNorm (then SiLU if `silu`) of the channel concatenation [xa (Ca
 * planes) ; xb (Cb planes)] of H x W pixels.  Output into a padded buffer
 * (padded = 1, interior only) or compact planes.  Moments in double. */
void group_norm(const groupnorm_w *g, int groups, double eps, int silu, const float *xa, int Ca, const float *xb,
                int Cb, int H, int W, float *y, int padded, int threads);

/* Attention over the HW tokens of x (C x HW), plus x (spec 3.7). */
size_t attention_scratch_floats(const attention_w *a, size_t HW, int threads);
void attention(const attention_w *a, int groups, double eps, const float *x, int H, int W, float *y, float *scratch,
               int threads);

/* y[o] = b[o] + sum_i W[o, i] x[i]: one vector (the time embedding MLP). */
void linear(const linear_w *l, const float *x, float *y);

/* v / (1 + exp(-v)) in place. */
void silu_inplace(float *v, size_t n);

/* Start the pool's worker threads for a team of `threads` now (plan
 * creation), so that no forward pass ever has to. */
void ops_start_threads(int threads);

/* Tests only: shrink every block size so that small layers take the
 * multi-strip, multi-block paths too (the numbers must not change beyond
 * rounding).  Not thread-safe; call before making plans. */
void ops_use_tiny_blocks(int on);

#endif
