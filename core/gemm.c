/* gemm.c: the matrix products of the layers.
 *
 * gemm shares one OpenBLAS SGEMM among a team, as blocks whose cut depends
 * on the shape only; the shifted-GEMM and im2col convolutions, the 1x1 and
 * stride-2 convolutions and attention call it (or OpenBLAS directly, one
 * call per task).  On CPUs with AVX-512 the Winograd GEMMs run instead on
 * the project's own packed kernels, below.
 */
#include "ops_internal.h"

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

/* C (M x n) = A (M x K) . B (K x n) for the Winograd GEMMs, with A (U_xi)
 * packed at load time in panels of 16 rows, K-major (row i + r, column k at
 * panel i / 16, offset 16 k + r), and B (V_xi) written by the input
 * transform in panels of 32 columns, K-major too (ops.h).  Nothing is
 * repacked per call, unlike OpenBLAS, whose packing took much of the time
 * of these small GEMMs (K = cin, n = a band's tiles).  Two micro-kernels,
 * each keeping a block of C in registers over the whole of K:
 *
 *   wide (n >= 32):  8 rows x 32 columns, 16 registers:
 *       for k:  c[r][0..31] += A[r][k] * B[k][0..31]        (r = 0 .. 7)
 *     two vector loads of B and eight broadcasts of A per 16 FMAs;
 *   narrow (the small n of deep, low-resolution layers):  32 rows x up to
 *     8 columns, vectors along the rows:
 *       for k:  c[0..31][t] += A[0..31][k] * B[k][t]          (t < 8)
 *     so that few columns still fill the vector lanes. */
#define NARROW_N 8      /* PANEL and BLOCK_N: ops_internal.h */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Rows r0 .. r0 + 7 of a panel (r0 = 0 or 8), columns 0 .. w - 1 (w <= 32). */
__attribute__((target("avx512f"))) static void kernel_wide(int K, const float *a, const float *b, float *c,
                                                            size_t ldc, int w)
{
    const __mmask16 m0 = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
    const __mmask16 m1 = w >= 32 ? 0xffff : w > 16 ? (__mmask16)((1u << (w - 16)) - 1) : 0;
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++, a += PANEL, b += BLOCK_N) {
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
        _mm512_mask_storeu_ps(c + (size_t)r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + (size_t)r * ldc + 16, m1, acc[r][1]);
    }
}

/* Rows of two panels (a0, a1: 16 each), columns 0 .. w - 1 of a B panel
 * (w <= 8; it computes 8, and the panel's unused columns hold zeros). */
__attribute__((target("avx512f"))) static void kernel_narrow(int K, const float *a0, const float *a1,
                                                              const float *b, float *c, size_t ldc, int w)
{
    __m512 acc[NARROW_N][2];
#pragma GCC unroll 8
    for (int t = 0; t < NARROW_N; t++)
        acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++, a0 += PANEL, a1 += PANEL, b += BLOCK_N) {
        __m512 r0 = _mm512_loadu_ps(a0), r1 = _mm512_loadu_ps(a1);
#pragma GCC unroll 8
        for (int t = 0; t < NARROW_N; t++) {         /* columns past w: zeros (wino_input) */
            __m512 bt = _mm512_set1_ps(b[t]);
            acc[t][0] = _mm512_fmadd_ps(r0, bt, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(r1, bt, acc[t][1]);
        }
    }
    for (int t = 0; t < w; t++) {
        float col[32];
        _mm512_storeu_ps(col, acc[t][0]);
        _mm512_storeu_ps(col + 16, acc[t][1]);
        for (int r = 0; r < 32; r++)
            c[(size_t)r * ldc + t] = col[r];
    }
}

static int cpu_has_kernel(void)
{
    return __builtin_cpu_supports("avx512f");
}
#else
static void kernel_wide(int K, const float *a, const float *b, float *c, size_t ldc, int w)
{
    (void)K, (void)a, (void)b, (void)c, (void)ldc, (void)w;
}

static void kernel_narrow(int K, const float *a0, const float *a1, const float *b, float *c, size_t ldc, int w)
{
    (void)K, (void)a0, (void)a1, (void)b, (void)c, (void)ldc, (void)w;
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

/* Rows i0 .. i1 - 1 (multiples of PANEL) of C = U V, C having n columns
 * (V: all its panels).  Narrow blocks of 8 columns when a panel has few
 * columns in use and the rows come in pairs of panels. */
void gemm_packed(int i0, int i1, int K, const float *U, const float *V, float *C, int n)
{
    for (int j = 0; j < n; j += BLOCK_N) {
        const float *panel = V + (size_t)(j / BLOCK_N) * K * BLOCK_N;
        const int w = n - j < BLOCK_N ? n - j : BLOCK_N;
        int i = i0;
        if (w <= 2 * NARROW_N)
            for (; i + 2 * PANEL <= i1; i += 2 * PANEL)
                for (int t = 0; t < w; t += NARROW_N)
                    kernel_narrow(K, U + (size_t)i * K, U + (size_t)(i + PANEL) * K, panel + t,
                                  C + (size_t)i * n + j + t, (size_t)n, w - t < NARROW_N ? w - t : NARROW_N);
        for (; i < i1; i += 8)
            kernel_wide(K, U + (size_t)(i / PANEL) * PANEL * K + i % PANEL, panel, C + (size_t)i * n + j, (size_t)n,
                        w);
    }
}
