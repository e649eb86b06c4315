/* gemm.c: the matrix products of the layers.
 *
 * gemm shares one OpenBLAS SGEMM among a team, as blocks whose cut depends
 * on the shape only; the shifted-GEMM and im2col convolutions, the
 * stride-2 convolutions and attention call it (or OpenBLAS directly, one
 * call per task).  On CPUs with AVX-512 the Winograd GEMMs and the 1x1
 * convolutions run instead on the project's own packed kernels, below
 * (and on OpenBLAS when DDPM_NO_PACKED is set or cout is not a multiple
 * of PANEL).
 */
#include "ops_internal.h"

#include <string.h>

#include <cblas.h>

/* ------------------------------------------------------------------------ */
/* GEMM shared by a team                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    enum CBLAS_TRANSPOSE ta, tb;
    int M, N, K;
    float alpha;
    const float *A;
    int lda;
    const float *B;
    int ldb;
    float beta;
    float *C;
    int ldc;
    int by_columns, len, block;
} gemm_args;

static void gemm_task(void *ctx, int b, int slot)
{
    const gemm_args *g = ctx;
    int s = b * g->block, n = g->len - s < g->block ? g->len - s : g->block;
    (void)slot;
    if (g->by_columns)
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, n, g->K, g->alpha, g->A, g->lda,
                    g->tb == CblasTrans ? g->B + (size_t)s * g->ldb : g->B + s, g->ldb, g->beta, g->C + s, g->ldc);
    else
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, n, g->N, g->K, g->alpha,
                    g->ta == CblasTrans ? g->A + s : g->A + (size_t)s * g->lda, g->lda, g->B, g->ldb, g->beta,
                    g->C + (size_t)s * g->ldc, g->ldc);
}

/* C (M x N) = alpha op(A) op(B) + beta C, row-major, as blocks of columns
 * (or of rows when N is small) that the team shares.  The cut depends on
 * the shape only, never on the team, so every element comes out of the same
 * OpenBLAS call whatever the thread count: bit for bit the same result. */
void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
          float beta, float *C, int ldc, int threads)
{
    const enum CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans;
    const int unit = blocks->gemm_block;
    int by_columns = N >= 2 * unit, len = by_columns ? N : M;
    int nblocks = len / (by_columns ? unit : unit / 4);
    if (nblocks < 2 || 2.0 * M * N * K < blocks->gemm_split_flops) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_args g = {ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, by_columns, len, 0};
    g.block = (int)round_up((size_t)(len + nblocks - 1) / nblocks, 16);
    parallel_for(threads, (len + g.block - 1) / g.block, gemm_task, &g);
}

/* ------------------------------------------------------------------------ */
/* Packed GEMM kernels (AVX-512)                                             */
/* ------------------------------------------------------------------------ */

/* C (M x n) = A (M x K) . B (K x n) for the Winograd GEMMs (A = U_xi, B =
 * V_xi), or C = A B + bias (one value per row) for the 1x1 convolutions
 * (A = the weights, B = the input planes), with A packed at load time in
 * panels of 16 rows, K-major (row i + r, column k at panel i / 16, offset
 * 16 k + r), and B written per call in panels of 32 columns, K-major too
 * (ops_internal.h).  A is never repacked per call, unlike OpenBLAS, whose
 * packing took much of the time of these small GEMMs (K = cin, n = a
 * band's tiles or a strip of pixels).  Two micro-kernels, each keeping a
 * block of A B in registers over the whole of K:
 *
 *   wide (n >= 32):  8 rows x 32 columns, 16 registers:
 *       for k:  c[r][0..31] += A[r][k] * B[k][0..31]        (r = 0 .. 7)
 *     two vector loads of B and eight broadcasts of A per 16 FMAs;
 *   narrow (n <= 16, the deep, low-resolution layers):  vectors along
 *     the rows, 64 rows x 4 columns, 32 x 8 or 16 x 16:
 *       for k:  c[0..R-1][t] += A[0..R-1][k] * B[k][t]        (t < nt)
 *     so that few columns still fill the vector lanes, and A is read once
 *     per panel of B, not once per 8 columns.
 *
 * Both start from zero and make one FMA per k in the order k = 0 .. K - 1,
 * then store the sum (plus the row's bias): every element of C comes out
 * the same whichever kernel computes it and however the rows and columns
 * are cut among the tasks. */
/* PANEL and BLOCK_N: ops_internal.h */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* A is read once, straight through, and is mostly larger than the caches
 * (the weights of a wide layer): the kernels ask for it PREFETCH_K steps
 * of k ahead, which the hardware prefetcher alone did not (a cold 256 x
 * 2304 A: 300 us at 7.8 GB/s without, 190 us with, one thread).  Past the
 * end of A the hint is harmless: a prefetch never faults. */
#define PREFETCH_K 32

/* Rows r0 .. r0 + 7 of a panel (r0 = 0 or 8), columns 0 .. w - 1 (w <= 32):
 * c = a b, plus bias[r] on row r if bias is not NULL.  (Every loop over
 * `acc` is unrolled in full: indexed by a variable, the accumulators would
 * live in memory.) */
__attribute__((target("avx512f"))) static void kernel_wide(int K, const float *a, const float *b, float *c,
                                                            size_t ldc, int w, const float *bias)
{
    const __mmask16 m0 = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
    const __mmask16 m1 = w >= 32 ? 0xffff : w > 16 ? (__mmask16)((1u << (w - 16)) - 1) : 0;
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++, a += PANEL, b += BLOCK_N) {
        _mm_prefetch((const char *)(a + PREFETCH_K * PANEL), _MM_HINT_T0);
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512 ar = _mm512_set1_ps(a[r]);
            acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
        float *cr = c + (size_t)r * ldc;
        if (bias) {
            __m512 br = _mm512_set1_ps(bias[r]);
            acc[r][0] = _mm512_add_ps(acc[r][0], br);
            acc[r][1] = _mm512_add_ps(acc[r][1], br);
        }
        _mm512_mask_storeu_ps(cr, m0, acc[r][0]);
        _mm512_mask_storeu_ps(cr + 16, m1, acc[r][1]);
    }
}

/* np panels of 16 rows (a, a + 16 K, ...) x nt columns of a B panel
 * (columns past w computed and dropped; the panel holds zeros there):
 * c = a b, plus bias[r] on row r if bias is not NULL.  Vectors run down
 * the rows, so that few columns still fill the lanes, and every column is
 * a broadcast.  Called with constant np and nt (the kernel_narrow_RxC
 * below), so that the np nt accumulators live in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
kernel_narrow(int np, int nt, int K, const float *a, const float *b, float *c, size_t ldc, int w, const float *bias)
{
    __m512 acc[4][16];
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 16
        for (int t = 0; t < nt; t++)
            acc[p][t] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++, b += BLOCK_N) {
        __m512 rows[4];
#pragma GCC unroll 4
        for (int p = 0; p < np; p++) {
            _mm_prefetch((const char *)(a + (size_t)p * PANEL * K + (size_t)(k + PREFETCH_K) * PANEL), _MM_HINT_T0);
            rows[p] = _mm512_loadu_ps(a + (size_t)p * PANEL * K + (size_t)k * PANEL);
        }
#pragma GCC unroll 16
        for (int t = 0; t < nt; t++) {
            __m512 bt = _mm512_set1_ps(b[t]);
#pragma GCC unroll 4
            for (int p = 0; p < np; p++)
                acc[p][t] = _mm512_fmadd_ps(rows[p], bt, acc[p][t]);
        }
    }
    /* the columns are vectors down the rows of c, as is the bias: added
     * in registers, then out through memory */
    float col[16][4 * PANEL];
#pragma GCC unroll 4
    for (int p = 0; p < np; p++)
#pragma GCC unroll 16
        for (int t = 0; t < nt; t++) {
            if (bias)
                acc[p][t] = _mm512_add_ps(acc[p][t], _mm512_loadu_ps(bias + p * PANEL));
            _mm512_storeu_ps(col[t] + p * PANEL, acc[p][t]);
        }
    for (int r = 0; r < np * PANEL; r++)
        for (int t = 0; t < w && t < nt; t++)
            c[(size_t)r * ldc + t] = col[t][r];
}

/* The narrow shapes, each a fixed block of rows x columns sized to the
 * registers (16 accumulators each): few columns get more rows, so that
 * every element of A loaded serves several FMAs and A is read once per
 * call, whatever w (up to 16). */
__attribute__((target("avx512f"))) static void kernel_narrow_64x4(int K, const float *a, const float *b, float *c,
                                                                   size_t ldc, int w, const float *bias)
{
    kernel_narrow(4, 4, K, a, b, c, ldc, w, bias);
}

__attribute__((target("avx512f"))) static void kernel_narrow_32x8(int K, const float *a, const float *b, float *c,
                                                                   size_t ldc, int w, const float *bias)
{
    kernel_narrow(2, 8, K, a, b, c, ldc, w, bias);
}

__attribute__((target("avx512f"))) static void kernel_narrow_16x16(int K, const float *a, const float *b, float *c,
                                                                    size_t ldc, int w, const float *bias)
{
    kernel_narrow(1, 16, K, a, b, c, ldc, w, bias);
}

/* One row segment of a 3x3 convolution, straight from the padded input:
 *
 *   y[q][j] (+)= sum_{c, ky, kx} A[(c, ky, kx)][q] x[c][ky][j + kx]
 *
 * for the 16 output channels q of one panel of the direct weights A
 * (K = 9 cin, k = 9 c + 3 ky + kx) and the pixels j < w <= 16 of the
 * segment: x is the padded input at the segment's top-left neighbour
 * (planes `plane` floats apart, rows Wp apart), y the output at its first
 * pixel (channels ldy apart).  A vector holds 16 neighbouring pixels of
 * one output channel, so y is stored as it lies; each step loads one
 * vector of input and broadcasts the 16 weights.  Then + bias[q], or +
 * y[q] when accumulating (bias NULL).  (A variant making two rows with
 * each broadcast weight, 10 loads per 16 FMAs instead of 17, ran slower.) */
__attribute__((target("avx512f"))) static void kernel_conv_row(int cin, const float *A, const float *x,
                                                                size_t plane, int Wp, const float *bias, float *y,
                                                                size_t ldy, int w)
{
    const __mmask16 m = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
    __m512 acc[16];
#pragma GCC unroll 16
    for (int q = 0; q < 16; q++)
        acc[q] = _mm512_setzero_ps();
    for (int c = 0; c < cin; c++, x += plane, A += 9 * PANEL)
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + (t / 3) * Wp + t % 3);
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++)
                acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(A[t * PANEL + q]), xv, acc[q]);
        }
#pragma GCC unroll 16
    for (int q = 0; q < 16; q++) {
        __m512 add = bias ? _mm512_set1_ps(bias[q]) : _mm512_maskz_loadu_ps(m, y + (size_t)q * ldy);
        _mm512_mask_storeu_ps(y + (size_t)q * ldy, m, _mm512_add_ps(acc[q], add));
    }
}

static int cpu_has_kernel(void)
{
    return __builtin_cpu_supports("avx512f");
}
#else
static void kernel_wide(int K, const float *a, const float *b, float *c, size_t ldc, int w, const float *bias)
{
    (void)K, (void)a, (void)b, (void)c, (void)ldc, (void)w, (void)bias;
}

static void kernel_narrow_64x4(int K, const float *a, const float *b, float *c, size_t ldc, int w,
                               const float *bias)
{
    (void)K, (void)a, (void)b, (void)c, (void)ldc, (void)w, (void)bias;
}

static void kernel_narrow_32x8(int K, const float *a, const float *b, float *c, size_t ldc, int w,
                               const float *bias)
{
    (void)K, (void)a, (void)b, (void)c, (void)ldc, (void)w, (void)bias;
}

static void kernel_narrow_16x16(int K, const float *a, const float *b, float *c, size_t ldc, int w,
                                const float *bias)
{
    (void)K, (void)a, (void)b, (void)c, (void)ldc, (void)w, (void)bias;
}

static void kernel_conv_row(int cin, const float *A, const float *x, size_t plane, int Wp, const float *bias,
                            float *y, size_t ldy, int w)
{
    (void)cin, (void)A, (void)x, (void)plane, (void)Wp, (void)bias, (void)y, (void)ldy, (void)w;
}

static int cpu_has_kernel(void)
{
    return 0;
}
#endif

int use_packed_kernel(void)
{
    static int on = -1;
    if (on < 0)
        on = cpu_has_kernel() && !env_flag("DDPM_NO_PACKED");
    return on;
}

/* Rows i .. i + rows - 1 (a multiple of PANEL) of C, columns j .. j + w
 * - 1 (w <= BLOCK_N) from one panel of B: a panel with 16 columns or fewer
 * in use goes to the narrow kernels, the tallest block that fits its width
 * and the rows first, a fuller one to the wide kernel. */
static void gemm_block(int i, int rows, int j, int w, int K, const float *A, const float *panel, const float *bias,
                       float *C, size_t ldc)
{
    const int i1 = i + rows;
    if (w <= 4)
        for (; i + 4 * PANEL <= i1; i += 4 * PANEL)
            kernel_narrow_64x4(K, A + (size_t)i * K, panel, C + (size_t)i * ldc + j, ldc, w, bias ? bias + i : NULL);
    if (w <= 8)
        for (; i + 2 * PANEL <= i1; i += 2 * PANEL)
            kernel_narrow_32x8(K, A + (size_t)i * K, panel, C + (size_t)i * ldc + j, ldc, w, bias ? bias + i : NULL);
    if (w <= 16)
        for (; i < i1; i += PANEL)
            kernel_narrow_16x16(K, A + (size_t)i * K, panel, C + (size_t)i * ldc + j, ldc, w,
                                bias ? bias + i : NULL);
    for (; i < i1; i += 8)
        kernel_wide(K, A + (size_t)(i / PANEL) * PANEL * K + i % PANEL, panel, C + (size_t)i * ldc + j, ldc, w,
                    bias ? bias + i : NULL);
}

/* Rows i0 .. i1 - 1 (multiples of PANEL) of C = A B (+ bias[i] on row i
 * when bias is not NULL), over columns 0 .. n - 1 of C (rows ldc apart)
 * and of B (all its panels).  With several panels of B, one panel of A at
 * a time goes through all of them while it is in the L1 cache: A (the
 * weights, often larger than the L2 cache) is read from memory once, not
 * once per panel of B. */
static void gemm_panels(int i0, int i1, int K, const float *A, const float *B, const float *bias, float *C,
                        size_t ldc, int n)
{
    if (n <= BLOCK_N) {
        gemm_block(i0, i1 - i0, 0, n, K, A, B, bias, C, ldc);
        return;
    }
    for (int i = i0; i < i1; i += PANEL)
        for (int j = 0; j < n; j += BLOCK_N)
            gemm_block(i, PANEL, j, n - j < BLOCK_N ? n - j : BLOCK_N, K, A, B + (size_t)(j / BLOCK_N) * K * BLOCK_N,
                       bias, C, ldc);
}

void gemm_packed(int i0, int i1, int K, const float *U, const float *V, float *C, int n)
{
    gemm_panels(i0, i1, K, U, V, NULL, C, (size_t)n, n);
}

void gemm_packed_bias(int i0, int i1, int K, const float *A, const float *B, const float *bias, float *C,
                      size_t ldc, int n)
{
    gemm_panels(i0, i1, K, A, B, bias, C, ldc, n);
}

/* A (M x K, row-major) -> panels in place: A[i][k] moves to (i / PANEL)
 * PANEL K + PANEL k + i % PANEL, through `tmp` (M K floats). */
void gemm_pack_a(float *A, int M, int K, float *tmp)
{
    memcpy(tmp, A, (size_t)M * K * sizeof *A);
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            A[(size_t)(i / PANEL) * PANEL * K + (size_t)k * PANEL + i % PANEL] = tmp[(size_t)i * K + k];
}

/* Rows k0 .. k1 - 1 of B (K rows, n columns) into its panels P, row k
 * read from src + (k - k0) ld: column j at (j / BLOCK_N) K BLOCK_N +
 * BLOCK_N k + j % BLOCK_N, and the last panel's columns past n set to zero
 * (the narrow kernel reads them).  Panel by panel, so that the writes are
 * contiguous (row by row, they fell BLOCK_N K floats apart, often on the
 * same cache set). */
void gemm_pack_b(const float *src, size_t ld, int k0, int k1, int K, int n, float *P)
{
    for (int j = 0; j < n; j += BLOCK_N) {
        const int w = n - j < BLOCK_N ? n - j : BLOCK_N;
        float *dst = P + (size_t)(j / BLOCK_N) * K * BLOCK_N + (size_t)k0 * BLOCK_N;
        for (int k = k0; k < k1; k++, dst += BLOCK_N) {
            memcpy(dst, src + (size_t)(k - k0) * ld + j, (size_t)w * sizeof *dst);
            if (w < BLOCK_N)
                memset(dst + w, 0, (size_t)(BLOCK_N - w) * sizeof *dst);
        }
    }
}

void conv_row(int cin, const float *A, const float *x, size_t plane, int Wp, const float *bias, float *y, size_t ldy,
              int w)
{
    kernel_conv_row(cin, A, x, plane, Wp, bias, y, ldy, w);
}
