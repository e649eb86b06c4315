/* ops_internal.h: what the files of the layers share among themselves
 * (private to ops.c, threads.c, gemm.c, winograd.c and conv.c; the rest of
 * core/ sees ops.h only).
 *
 *   ops.c       block sizes, group norm + SiLU, attention, linear
 *   threads.c   the pool of worker threads, the DDPM_PROFILE table
 *   gemm.c      GEMM over OpenBLAS, packed AVX-512 kernels
 *   winograd.c  3x3 convolution by Winograd F(2x2) / F(4x4)
 *   conv.c      padded planes, 3x3 / stride-2 / 1x1 convolutions
 */
#ifndef DDPM_OPS_INTERNAL_H
#define DDPM_OPS_INTERNAL_H

#include <stddef.h>

#include "ops.h"

/* Block sizes.  Results do not depend on them beyond rounding, and tests
 * shrink them (ops_use_tiny_blocks) to run every multi-block path on small
 * models. */
typedef struct {
    size_t im2col_budget;      /* floats of a column strip                     */
    size_t shift_budget;       /* floats of one output strip (shifted GEMMs)   */
    size_t shift_min_strip;    /* positions                                    */
    int shift_min_width;       /* narrower images use im2col                   */
    size_t score_budget;       /* floats of one block of attention scores      */
    double gemm_split_flops;   /* smaller GEMMs are one call                   */
    int gemm_block;            /* columns of a GEMM block (rows: a quarter)    */
    size_t wino_budget;        /* floats of V and M of one band of tile rows   */
    int wino_min_tiles;        /* but at least this many tiles in a band       */
    size_t wino_f4_pixels;     /* images this large use F(4x4) where it can    */
    size_t conv1x1_budget;     /* floats of a strip of packed 1x1 input        */
} block_sizes;

/* The block sizes in force (ops.c): the normal ones, or the tiny ones of
 * ops_use_tiny_blocks. */
extern const block_sizes *blocks;

/* The hot element-wise loops are also compiled for AVX2 and AVX-512 and the
 * best version is picked at run time (function multi-versioning; the
 * portable build targets plain x86-64).  The arithmetic is the same in every
 * version, and so are the results. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* n rounded up to a multiple of m. */
static inline size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* threads.c ------------------------------------------------------------- */

/* A task of parallel_for: task number, and the slot (0 .. team - 1) of the
 * thread that runs it. */
typedef void (*task_fn)(void *ctx, int task, int slot);

/* fn(ctx, i, slot) for i = 0 .. n-1, shared by the caller and up to
 * threads - 1 pooled workers; returns when every task is done. */
void parallel_for(int threads, int n, task_fn fn, void *ctx);

/* Team size for work of `size` elements: 1 if too small to share. */
int team_for(size_t size, int threads);

/* parallel_for for a memory-bound op over `size` elements, timed under
 * the op's name for DDPM_PROFILE. */
void elementwise_for(const char *op, int C, int H, int W, size_t size, int threads, int n, task_fn fn, void *ctx);

/* DDPM_PROFILE: t0 = profile_start() before an op, profile_stop(t0, ...)
 * after it (flops: the direct method's count, 2 per multiply-add). */
double profile_start(void);
void profile_stop(double t0, const char *op, int cin, int cout, int H, int W, double flops);

/* A debugging switch in the environment: set and not empty. */
int env_flag(const char *name);

/* gemm.c ---------------------------------------------------------------- */

/* The packed layouts of the kernels: A (weights) in panels of PANEL rows,
 * B (V, or the input of a 1x1 convolution) in panels of BLOCK_N columns,
 * both K-major:  A[i][k] at (i / PANEL) PANEL K + PANEL k + i % PANEL,
 * B[k][j] at (j / BLOCK_N) K BLOCK_N + BLOCK_N k + j % BLOCK_N. */
#define PANEL 16
#define BLOCK_N 32

/* C (M x N) = alpha op(A) op(B) + beta C, row-major, as OpenBLAS calls on
 * blocks that the team shares (the cut depends on the shape only). */
void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc, int threads);

/* Whether the Winograd GEMMs and the 1x1 convolutions run on the packed
 * kernels (AVX-512 and not DDPM_NO_PACKED). */
int use_packed_kernel(void);

/* Rows i0 .. i1 - 1 (multiples of PANEL) of C = U V, C having n columns;
 * U and V packed. */
void gemm_packed(int i0, int i1, int K, const float *U, const float *V, float *C, int n);

/* Rows i0 .. i1 - 1 (multiples of PANEL) of C = A B + bias (bias[i] on
 * row i), C having rows ldc apart and n columns; A and B packed. */
void gemm_packed_bias(int i0, int i1, int K, const float *A, const float *B, const float *bias, float *C,
                      size_t ldc, int n);

/* Packing: A (M x K, row-major) into panels in place (tmp: M K floats);
 * rows k0 .. k1 - 1 of B (K rows, n columns, zeros past n) into its panels
 * P from src (row k at src + (k - k0) ld). */
void gemm_pack_a(float *A, int M, int K, float *tmp);

/* 16 output channels (one panel of the direct weights A, K = 9 cin) by w
 * <= 16 pixels of one row of a 3x3 convolution, from the padded input x at
 * the segment's top-left neighbour: y (+)= conv + bias (bias NULL: y +=
 * conv).  The packed kernels only. */
void conv_row(int cin, const float *A, const float *x, size_t plane, int Wp, const float *bias, float *y, size_t ldy,
              int w);
void gemm_pack_b(const float *src, size_t ld, int k0, int k1, int K, int n, float *P);

/* winograd.c ------------------------------------------------------------ */

/* The Winograd tile side m (2 or 4) of a layer on an H x W image. */
int wino_tile(int cin, int cout, int H, int W);

/* conv3x3_scratch_floats and conv3x3 for a layer whose U is prepared. */
size_t winograd_scratch_floats(int cin, int cout, int H, int W, int threads);
void conv3x3_winograd(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra, int accumulate,
                      float *scratch, int threads);

#endif
