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
 *   narrow (the small n of deep, low-resolution layers):  32 rows x up to
 *     8 columns, vectors along the rows:
 *       for k:  c[0..31][t] += A[0..31][k] * B[k][t]          (t < 8)
 *     so that few columns still fill the vector lanes.
 *
 * Both start from zero and make one FMA per k in the order k = 0 .. K - 1,
 * then store the sum (plus the row's bias): every element of C comes out
 * the same whichever kernel computes it and however the rows and columns
 * are cut among the tasks. */
#define NARROW_N 8      /* PANEL and BLOCK_N: ops_internal.h */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

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

/* Rows of two panels (a0, a1: 16 each), columns 0 .. w - 1 of a B panel
 * (w <= 8; it computes 8, and the panel's unused columns hold zeros):
 * c = a b, plus bias[r] on row r (r = 0 .. 31) if bias is not NULL. */
__attribute__((target("avx512f"))) static void kernel_narrow(int K, const float *a0, const float *a1,
                                                              const float *b, float *c, size_t ldc, int w,
                                                              const float *bias)
{
    __m512 acc[NARROW_N][2];
#pragma GCC unroll 8
    for (int t = 0; t < NARROW_N; t++)
        acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++, a0 += PANEL, a1 += PANEL, b += BLOCK_N) {
        __m512 r0 = _mm512_loadu_ps(a0), r1 = _mm512_loadu_ps(a1);
#pragma GCC unroll 8
        for (int t = 0; t < NARROW_N; t++) {         /* columns past w: zeros (see gemm_pack_b) */
            __m512 bt = _mm512_set1_ps(b[t]);
            acc[t][0] = _mm512_fmadd_ps(r0, bt, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(r1, bt, acc[t][1]);
        }
    }
    /* the columns are vectors down the rows of c, as is the bias: added
     * in registers, then out through memory */
    float col[NARROW_N][32];
#pragma GCC unroll 8
    for (int t = 0; t < NARROW_N; t++) {
        if (bias) {
            acc[t][0] = _mm512_add_ps(acc[t][0], _mm512_loadu_ps(bias));
            acc[t][1] = _mm512_add_ps(acc[t][1], _mm512_loadu_ps(bias + 16));
        }
        _mm512_storeu_ps(col[t], acc[t][0]);
        _mm512_storeu_ps(col[t] + 16, acc[t][1]);
    }
    for (int r = 0; r < 32; r++)
        for (int t = 0; t < w; t++)
            c[(size_t)r * ldc + t] = col[t][r];
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

static void kernel_narrow(int K, const float *a0, const float *a1, const float *b, float *c, size_t ldc, int w,
                          const float *bias)
{
    (void)K, (void)a0, (void)a1, (void)b, (void)c, (void)ldc, (void)w, (void)bias;
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

/* Rows i0 .. i1 - 1 (multiples of PANEL) of C = A B (+ bias[i] on row i
 * when bias is not NULL), over columns 0 .. n - 1 of C (rows ldc apart)
 * and of B (all its panels).  Narrow blocks of 8 columns when a panel has
 * few columns in use and the rows come in pairs of panels. */
static void gemm_panels(int i0, int i1, int K, const float *A, const float *B, const float *bias, float *C,
                        size_t ldc, int n)
{
    for (int j = 0; j < n; j += BLOCK_N) {
        const float *panel = B + (size_t)(j / BLOCK_N) * K * BLOCK_N;
        const int w = n - j < BLOCK_N ? n - j : BLOCK_N;
        int i = i0;
        if (w <= 2 * NARROW_N)
            for (; i + 2 * PANEL <= i1; i += 2 * PANEL)
                for (int t = 0; t < w; t += NARROW_N)
                    kernel_narrow(K, A + (size_t)i * K, A + (size_t)(i + PANEL) * K, panel + t,
                                  C + (size_t)i * ldc + j + t, ldc, w - t < NARROW_N ? w - t : NARROW_N,
                                  bias ? bias + i : NULL);
        for (; i < i1; i += 8)
            kernel_wide(K, A + (size_t)(i / PANEL) * PANEL * K + i % PANEL, panel, C + (size_t)i * ldc + j, ldc, w,
                        bias ? bias + i : NULL);
    }
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
