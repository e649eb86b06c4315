/* ops.c: convolution, group norm + SiLU, attention and linear layers on one
 * image (C x H x W, float32).
 *
 * A 3x3 convolution is
 *
 *     y[o, i, j] = sum_{ky, kx, c} W[o, ky, kx, c] x[c, i + ky - 1, j + kx - 1]
 *
 * computed on OpenBLAS's SGEMM in one of three ways, all reading x from a
 * padded buffer (ops.h):
 *
 *   Winograd F(2x2, 3x3) (layers of 16 channels or more in and out): 16 GEMMs
 *     with 4 instead of 9 multiplies per output pixel and channel pair;
 *     the weights are transformed once, at load.
 *
 *   shifted GEMMs (other wide layers): the nine taps are nine GEMMs
 *     Y += W_tap (cout x cin) . X_shifted (cin x pixels), where X_shifted is
 *     the padded buffer itself read from offset ky Wp + kx (Wp its row
 *     stride).  Output pixel (i, j) sits at position i Wp + j of that flat
 *     grid; positions that fall on the border are computed and dropped.
 *
 *   im2col (narrow layers, where those dropped positions would cost too
 *     much): the column matrix col[(ky, kx, c), pixel] is gathered a strip of
 *     rows at a time and one GEMM with K = 9 cin does the rest.
 */
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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
    int gemm_min_columns;      /* narrowest block of columns                   */
    size_t wino_budget;        /* floats of V and M of one band of tile rows   */
    int wino_min_tiles;        /* but at least this many tiles in a band       */
} block_sizes;

static const block_sizes normal_blocks = {512 * 1024, 128 * 1024, 512, 16, 256 * 1024, 2e6, 64, 256 * 1024, 256};
static const block_sizes tiny_blocks = {1024, 512, 16, 16, 512, 0.0, 16, 256, 1};
static const block_sizes *blocks = &normal_blocks;

void ops_use_tiny_blocks(int on)
{
    blocks = on ? &tiny_blocks : &normal_blocks;
}

/* The hot element-wise loops are also compiled for AVX2 and AVX-512 and the
 * best version is picked at run time (function multi-versioning; the
 * portable build targets plain x86-64).  The arithmetic is the same in every
 * version, and so are the results. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* ------------------------------------------------------------------------ */
/* Element-wise helpers                                                      */
/* ------------------------------------------------------------------------ */

/* exp(x) within 2 ulp for |x| <= 87 (beyond, x is clamped to +-87: e^-87
 * is as good as 0 and e^87 as infinity for SiLU and softmax), written so
 * that loops calling it vectorize: no libm call, no branch, and the clamp
 * done on the bits as integers (a float comparison would keep GCC from
 * vectorizing under its default -ftrapping-math).  x = n ln2 + r with
 * |r| <= ln2/2, e^r by Cephes' degree-7 polynomial, 2^n built from its
 * exponent bits.  The rounding trick needs round-to-nearest (the default). */
static inline float exp_approx(float x)
{
    union {
        float f;
        uint32_t u;
    } v = {x};
    const uint32_t lim = 0x42ae0000u;                               /* 87.0f */
    uint32_t over = 0u - (uint32_t)((v.u & 0x7fffffffu) > lim);     /* all ones if |x| > 87 */
    v.u = (v.u & ~over) | (((v.u & 0x80000000u) | lim) & over);
    x = v.f;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(x / ln 2) */
    float r = x - n * 0.693359375f;                                      /* ln 2 = hi + lo (Cody-Waite) */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } two_n = {(uint32_t)((int32_t)n + 127) << 23};
    return p * two_n.f;
}

static inline float silu(float v)
{
    return v / (1.0f + exp_approx(-v));
}

void silu_inplace(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = silu(v[i]);
}

void fill_bias(float *y, const float *bias, const float *extra, int C, size_t HW, int threads)
{
    (void)threads;   /* unused without OpenMP */
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)C * HW > 65536)
    for (int c = 0; c < C; c++) {
        float v = bias[c] + (extra ? extra[c] : 0.0f);
        float *row = y + (size_t)c * HW;
        for (size_t p = 0; p < HW; p++)
            row[p] = v;
    }
}

void fill_residual(float *y, const float *x, const float *bias, int C, size_t HW, int threads)
{
    (void)threads;   /* unused without OpenMP */
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)C * HW > 65536)
    for (int c = 0; c < C; c++) {
        float b = bias[c];
        const float *xr = x + (size_t)c * HW;
        float *row = y + (size_t)c * HW;
        for (size_t p = 0; p < HW; p++)
            row[p] = xr[p] + b;
    }
}

/* ------------------------------------------------------------------------ */
/* GEMM shared by a team                                                     */
/* ------------------------------------------------------------------------ */

/* C (M x N) = alpha op(A) op(B) + beta C, row-major.  With a team of
 * threads the product is cut into blocks of columns (or of rows when N is
 * small), two per thread so that a slow thread can be helped.  Every
 * element is one dot product over K in OpenBLAS's order whatever the cut,
 * so the thread count changes nothing but, at most, GEMM's own rounding. */
static void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, int threads)
{
    const enum CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans;
    int by_columns = N >= blocks->gemm_min_columns * 2 || N >= M;
    int len = by_columns ? N : M, unit = by_columns ? blocks->gemm_min_columns : 16;
    int nblocks = threads > 1 ? 2 * threads : 1;
    if (nblocks > len / unit)
        nblocks = len / unit;
    if (threads > 1 && blocks->gemm_split_flops == 0.0)
        nblocks = nblocks < 2 ? 2 : nblocks;      /* tiny blocks: always exercise the split */
    if (nblocks < 2 || (2.0 * M * N * K < blocks->gemm_split_flops)) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int block = (int)round_up((size_t)(len + nblocks - 1) / nblocks, 16);
    nblocks = (len + block - 1) / block;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int b = 0; b < nblocks; b++) {
        int s = b * block, n = len - s < block ? len - s : block;
        if (by_columns)
            cblas_sgemm(CblasRowMajor, ta, tb, M, n, K, alpha, A, lda, transB ? B + (size_t)s * ldb : B + s, ldb,
                        beta, C + s, ldc);
        else
            cblas_sgemm(CblasRowMajor, ta, tb, n, N, K, alpha, transA ? A + s : A + (size_t)s * lda, lda, B, ldb,
                        beta, C + (size_t)s * ldc, ldc);
    }
}

/* ------------------------------------------------------------------------ */
/* Padded planes                                                             */
/* ------------------------------------------------------------------------ */

int padded_stride(int W)
{
    return W + 2 + (W & 1);
}

size_t padded_plane(int H, int W)
{
    return (size_t)(H + 2 + (H & 1)) * (size_t)padded_stride(W);
}

float *padded_interior(float *xp, int W)
{
    return xp + padded_stride(W) + 1;
}

/* Circular: the border repeats the opposite edge (rows first, then whole
 * columns, which also fills the corners); zero: the border is 0.  The slack
 * row and column of odd sizes are always 0. */
void pad_borders(float *xp, int C, int H, int W, int circular, int threads)
{
    (void)threads;   /* unused without OpenMP */
    const int Wp = padded_stride(W);
    const size_t P = padded_plane(H, W);
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)C * P > 65536)
    for (int c = 0; c < C; c++) {
        float *p = xp + (size_t)c * P;
        if (circular) {
            memcpy(p + 1, p + (size_t)H * Wp + 1, (size_t)W * sizeof *p);
            memcpy(p + (size_t)(H + 1) * Wp + 1, p + Wp + 1, (size_t)W * sizeof *p);
            for (int i = 0; i < H + 2; i++) {
                p[(size_t)i * Wp] = p[(size_t)i * Wp + W];
                p[(size_t)i * Wp + W + 1] = p[(size_t)i * Wp + 1];
            }
        } else {
            memset(p, 0, (size_t)Wp * sizeof *p);
            memset(p + (size_t)(H + 1) * Wp, 0, (size_t)Wp * sizeof *p);
            for (int i = 1; i <= H; i++)
                p[(size_t)i * Wp] = p[(size_t)i * Wp + W + 1] = 0.0f;
        }
        if (W & 1)
            for (int i = 0; i < H + 2; i++)
                p[(size_t)i * Wp + W + 2] = 0.0f;
        if (H & 1)
            memset(p + (size_t)(H + 2) * Wp, 0, (size_t)Wp * sizeof *p);
    }
}

void pad_copy(const float *x, int C, int H, int W, int center, float *xp, int threads)
{
    (void)threads;   /* unused without OpenMP */
    const size_t P = padded_plane(H, W);
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)C * P > 65536)
    for (int c = 0; c < C; c++) {
        float *dst = padded_interior(xp + (size_t)c * P, W);
        const float *src = x + (size_t)c * H * W;
        for (int i = 0; i < H; i++, dst += padded_stride(W), src += W) {
            if (center)
                for (int j = 0; j < W; j++)
                    dst[j] = 2.0f * src[j] - 1.0f;
            else
                memcpy(dst, src, (size_t)W * sizeof *dst);
        }
    }
}

/* Nearest x2: output pixel (i, j) of 2H x 2W is input pixel (i/2, j/2). */
void pad_upsample2(const float *x, int C, int H, int W, float *xp, int threads)
{
    (void)threads;   /* unused without OpenMP */
    const int H2 = 2 * H, W2 = 2 * W;
    const size_t P = padded_plane(H2, W2);
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)C * P > 65536)
    for (int c = 0; c < C; c++) {
        float *dst = padded_interior(xp + (size_t)c * P, W2);
        for (int i = 0; i < H2; i++, dst += padded_stride(W2)) {
            const float *src = x + ((size_t)c * H + i / 2) * W;
            for (int j = 0; j < W2; j++)
                dst[j] = src[j / 2];
        }
    }
}

/* ------------------------------------------------------------------------ */
/* 3x3 convolution, stride 1                                                 */
/* ------------------------------------------------------------------------ */

/* [cout][cin][9] -> [cout][9][cin], one output channel (row) at a time
 * through `tmp` (9 cin floats). */
void conv3x3_repack(float *w, int cout, int cin, float *tmp)
{
    for (int o = 0; o < cout; o++) {
        float *row = w + (size_t)o * cin * 9;
        memcpy(tmp, row, (size_t)cin * 9 * sizeof *row);
        for (int c = 0; c < cin; c++)
            for (int t = 0; t < 9; t++)
                row[(size_t)t * cin + c] = tmp[(size_t)c * 9 + t];
    }
}

int conv3x3_uses_winograd(int cin, int cout)
{
    return cin >= 16 && cout >= 16;
}

/* Shifted GEMMs need a wide image (the dropped border positions) and
 * enough input channels (each tap's GEMM has K = cin; with 3 channels, as
 * in conv_in, one im2col GEMM with K = 27 is far better). */
static int use_shift(int cin, int W)
{
    return W >= blocks->shift_min_width && cin >= 8;
}

/* Positions of the flat padded grid per strip of the shifted scheme: the
 * strip's output should stay in cache across the nine taps, and a team
 * needs at least one strip per thread. */
static size_t shift_strip(int cout, size_t n, int threads)
{
    size_t s = round_up(blocks->shift_budget / (size_t)cout, 16);
    if (s < blocks->shift_min_strip)
        s = blocks->shift_min_strip;
    size_t share = round_up((n + (size_t)threads - 1) / (size_t)threads, 16);
    if (s > share)
        s = share;
    return s < n ? s : n;
}

/* Column-strip rows of the im2col scheme. */
static int im2col_rows(size_t K, int H, int W)
{
    size_t r = blocks->im2col_budget / (K * (size_t)W);
    if (r < 1)
        r = 1;
    return r < (size_t)H ? (int)r : H;
}

/* Tile rows per band of the Winograd scheme: V and M of a band should stay
 * in cache; but every band reads (and OpenBLAS packs) all of U again, so
 * when U is larger than the cache a band gets wino_min_tiles tiles at least.
 * And a team needs a band per thread. */
static int wino_rows(int cin, int cout, int W, int H, int threads)
{
    const int tw = (W + 1) / 2, th = (H + 1) / 2;
    size_t r = blocks->wino_budget / ((size_t)16 * (cin + cout) * tw);
    size_t least = (size_t)(blocks->wino_min_tiles + tw - 1) / tw;
    if (r < least && (size_t)16 * cin * cout > 2 * blocks->wino_budget)
        r = least;
    int share = (th + threads - 1) / threads;
    if (r > (size_t)share)
        r = (size_t)share;
    return r < 1 ? 1 : (int)r;
}

size_t conv3x3_scratch_floats(int cin, int cout, int H, int W, int threads)
{
    if (conv3x3_uses_winograd(cin, cout)) {
        const size_t tw = (size_t)(W + 1) / 2, rows = (size_t)wino_rows(cin, cout, W, H, threads);
        /* per thread: V, M and a row of transform temporaries */
        return (size_t)threads * (16 * (size_t)(cin + cout) * rows * tw + 16 * tw);
    }
    if (use_shift(cin, W)) {
        size_t n = (size_t)(H - 1) * padded_stride(W) + W;
        return (size_t)threads * (size_t)cout * shift_strip(cout, n, threads);
    }
    size_t K = (size_t)9 * cin;
    return K * (size_t)im2col_rows(K, H, W) * (size_t)W;
}

/* ------------------------------------------------------------------------ */
/* Winograd F(2x2, 3x3) (Lavin & Gray 2016)                                  */
/* ------------------------------------------------------------------------ */

/* Each 2x2 block ("tile") of outputs comes from the 4x4 patch d of padded
 * input that covers it:
 *
 *     Y = A^T [ sum_c (G g_c G^T) . (B^T d_c B) ] A          (. elementwise)
 *
 *     B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
 *           | 0  1  1  0 |        | 1/2  1/2  1/2|          | 0  1 -1 -1 |
 *           | 0 -1  1  0 |        | 1/2 -1/2  1/2|
 *           | 0  1  0 -1 |        | 0    0    1  |
 *
 * Summing the 16 elementwise products over the input channels is 16 GEMMs
 *     M_xi (cout x tiles) = U_xi (cout x cin) . V_xi (cin x tiles),
 * U = G g G^T precomputed at load, V = B^T d B computed per band of tile
 * rows.  Both transforms are separable: a pass along the rows of the patch,
 * then one down its columns, each vectorized across the tiles of a row. */

/* U[xi][o][c] from PyTorch's [o][c][3][3], one output channel at a time
 * through `tmp` (16 cin floats) so that U is written in contiguous rows. */
void winograd_weights(const float *w, int cout, int cin, float *U, float *tmp)
{
    const size_t plane = (size_t)cout * cin;
    for (int o = 0; o < cout; o++) {
        for (int c = 0; c < cin; c++) {
            const float *g = w + ((size_t)o * cin + c) * 9;
            float t[4][3];
            for (int j = 0; j < 3; j++) {               /* t = G g */
                t[0][j] = g[j];
                t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) {               /* U = t G^T */
                tmp[(size_t)(4 * i + 0) * cin + c] = t[i][0];
                tmp[(size_t)(4 * i + 1) * cin + c] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                tmp[(size_t)(4 * i + 2) * cin + c] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                tmp[(size_t)(4 * i + 3) * cin + c] = t[i][2];
            }
        }
        for (int xi = 0; xi < 16; xi++)
            memcpy(U + (size_t)xi * plane + (size_t)o * cin, tmp + (size_t)xi * cin, (size_t)cin * sizeof *U);
    }
}

/* V[c][xi][r tw + tx] = (B^T d B)[xi] for the tiles of tile rows ty0 ..
 * ty0 + nr - 1; `tmp` holds 16 tw floats. */
VECTOR_CLONES static void wino_input(const float *xp, int cin, int H, int W, int ty0, int nr, float *V, float *tmp)
{
    const int Wp = padded_stride(W), tw = (W + 1) / 2, n = nr * tw;
    const size_t P = padded_plane(H, W);
    for (int ch = 0; ch < cin; ch++) {
        const float *x = xp + (size_t)ch * P;
        float *v = V + (size_t)ch * 16 * n;
        for (int r = 0; r < nr; r++) {
            /* d B: each of the patch's 4 rows, along its columns */
            for (int i = 0; i < 4; i++) {
                const float *row = x + (size_t)(2 * (ty0 + r) + i) * Wp;
                float *t0 = tmp + (size_t)4 * i * tw, *t1 = t0 + tw, *t2 = t1 + tw, *t3 = t2 + tw;
                for (int tx = 0; tx < tw; tx++) {
                    float a = row[2 * tx], b = row[2 * tx + 1], c = row[2 * tx + 2], d = row[2 * tx + 3];
                    t0[tx] = a - c;
                    t1[tx] = b + c;
                    t2[tx] = c - b;
                    t3[tx] = b - d;
                }
            }
            /* B^T (d B): down the patch's columns */
            for (int k = 0; k < 4; k++) {
                const float *d0 = tmp + (size_t)k * tw, *d1 = d0 + 4 * tw, *d2 = d1 + 4 * tw, *d3 = d2 + 4 * tw;
                float *o0 = v + (size_t)k * n + (size_t)r * tw, *o1 = o0 + 4 * (size_t)n, *o2 = o1 + 4 * (size_t)n,
                      *o3 = o2 + 4 * (size_t)n;
                for (int tx = 0; tx < tw; tx++) {
                    o0[tx] = d0[tx] - d2[tx];
                    o1[tx] = d1[tx] + d2[tx];
                    o2[tx] = d2[tx] - d1[tx];
                    o3[tx] = d1[tx] - d3[tx];
                }
            }
        }
    }
}

/* y (+)= A^T M A for the tiles of tile rows ty0 .. ty0 + nr - 1, pixels
 * inside the image only; `tmp` holds 8 tw floats. */
VECTOR_CLONES static void wino_output(const float *M, const conv2d_w *c, const float *extra, int accumulate, int H, int W,
                        int ty0, int nr, float *y, float *tmp)
{
    const int tw = (W + 1) / 2, n = nr * tw, full = W / 2;
    for (int o = 0; o < c->cout; o++) {
        const float *m = M + (size_t)o * 16 * n;
        const float bias = c->b[o] + (extra ? extra[o] : 0.0f);
        for (int r = 0; r < nr; r++) {
            /* A^T M: down the columns, two rows of results */
            float *a0 = tmp, *a1 = tmp + 4 * tw;
            for (int k = 0; k < 4; k++) {
                const float *e0 = m + (size_t)k * n + (size_t)r * tw, *e1 = e0 + 4 * (size_t)n,
                            *e2 = e1 + 4 * (size_t)n, *e3 = e2 + 4 * (size_t)n;
                for (int tx = 0; tx < tw; tx++) {
                    a0[k * tw + tx] = e0[tx] + e1[tx] + e2[tx];
                    a1[k * tw + tx] = e1[tx] - e2[tx] - e3[tx];
                }
            }
            /* (A^T M) A: along the rows, two pixels per tile */
            for (int i = 0; i < 2; i++) {
                int yi = 2 * (ty0 + r) + i;
                if (yi >= H)
                    break;
                const float *a = i ? a1 : a0;
                float *yr = y + ((size_t)o * H + yi) * W;
                if (accumulate)
                    for (int tx = 0; tx < full; tx++) {
                        yr[2 * tx] += a[tx] + a[tw + tx] + a[2 * tw + tx];
                        yr[2 * tx + 1] += a[tw + tx] - a[2 * tw + tx] - a[3 * tw + tx];
                    }
                else
                    for (int tx = 0; tx < full; tx++) {
                        yr[2 * tx] = a[tx] + a[tw + tx] + a[2 * tw + tx] + bias;
                        yr[2 * tx + 1] = a[tw + tx] - a[2 * tw + tx] - a[3 * tw + tx] + bias;
                    }
                if (full < tw) {                     /* odd width: the last tile's left pixel */
                    float v = a[full] + a[tw + full] + a[2 * tw + full];
                    yr[2 * full] = accumulate ? yr[2 * full] + v : v + bias;
                }
            }
        }
    }
}

static void conv3x3_winograd(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra,
                             int accumulate, float *scratch, int threads)
{
    const int cin = c->cin, cout = c->cout, tw = (W + 1) / 2, th = (H + 1) / 2;
    const int rows = wino_rows(cin, cout, W, H, threads), nbands = (th + rows - 1) / rows;
    const size_t per_thread = 16 * (size_t)(cin + cout) * rows * tw + 16 * (size_t)tw;

#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int b = 0; b < nbands; b++) {
        int ty0 = b * rows, nr = th - ty0 < rows ? th - ty0 : rows, n = nr * tw;
        float *V = scratch + (size_t)thread_id() * per_thread;
        float *M = V + (size_t)16 * cin * n;
        float *tmp = M + (size_t)16 * cout * n;
        wino_input(xp, cin, H, W, ty0, nr, V, tmp);
        /* M_xi = U_xi V_xi; the 16 xi of a channel are consecutive rows */
        for (int xi = 0; xi < 16; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, n, cin, 1.0f,
                        c->u + (size_t)xi * cout * cin, cin, V + (size_t)xi * n, 16 * n, 0.0f, M + (size_t)xi * n,
                        16 * n);
        wino_output(M, c, extra, accumulate, H, W, ty0, nr, y, tmp);
    }
}

/* ------------------------------------------------------------------------ */
/* Shifted GEMMs and im2col                                                  */
/* ------------------------------------------------------------------------ */

static void conv3x3_shifted(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra,
                            int accumulate, float *scratch, int threads)
{
    const int cin = c->cin, cout = c->cout, Wp = padded_stride(W);
    const size_t P = padded_plane(H, W);
    const size_t n = (size_t)(H - 1) * Wp + W;           /* last interior position + 1 */
    const size_t S = shift_strip(cout, n, threads);
    const int nstrips = (int)((n + S - 1) / S);

#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int s = 0; s < nstrips; s++) {
        float *yp = scratch + (size_t)thread_id() * cout * S;
        size_t p0 = (size_t)s * S, m = n - p0 < S ? n - p0 : S;
        /* yp (cout x m) = sum over taps of W_tap . xp shifted by the tap */
        for (int t = 0; t < 9; t++) {
            int ky = t / 3, kx = t % 3;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)m, cin, 1.0f, c->w + (size_t)t * cin,
                        9 * cin, xp + (size_t)ky * Wp + kx + p0, (int)P, t ? 1.0f : 0.0f, yp, (int)m);
        }
        /* y (+)= the positions that are pixels: p = i Wp + j with j < W */
        size_t i0 = p0 / Wp, i1 = (p0 + m - 1) / Wp;
        for (int o = 0; o < cout; o++) {
            const float *src = yp + (size_t)o * m;
            float *dst = y + (size_t)o * H * W;
            const float b = c->b[o] + (extra ? extra[o] : 0.0f);
            for (size_t i = i0; i <= i1; i++) {
                size_t row = i * Wp;
                size_t j0 = p0 > row ? p0 - row : 0, j1 = p0 + m - row < (size_t)W ? p0 + m - row : (size_t)W;
                float *d = dst + i * W;
                const float *v = src + row - p0;
                if (accumulate)
                    for (size_t j = j0; j < j1; j++)
                        d[j] += v[j];
                else
                    for (size_t j = j0; j < j1; j++)
                        d[j] = v[j] + b;
            }
        }
    }
}

static void conv3x3_im2col(const conv2d_w *c, const float *xp, int H, int W, float *y, float *col, int threads)
{
    const int cin = c->cin, cout = c->cout, Wp = padded_stride(W), K = 9 * cin;
    const size_t P = padded_plane(H, W);
    const int R = im2col_rows((size_t)K, H, W);
    for (int r0 = 0; r0 < H; r0 += R) {
        int rows = H - r0 < R ? H - r0 : R;
        size_t n = (size_t)rows * W;
        /* col[(t, c), (i - r0) W + j] = xp[c, i + ky, j + kx] */
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)K * n > 65536)
        for (int k = 0; k < K; k++) {
            int t = k / cin, ch = k % cin, ky = t / 3, kx = t % 3;
            const float *src = xp + (size_t)ch * P + (size_t)(r0 + ky) * Wp + kx;
            float *dst = col + (size_t)k * n;
            for (int i = 0; i < rows; i++)
                memcpy(dst + (size_t)i * W, src + (size_t)i * Wp, (size_t)W * sizeof *dst);
        }
        gemm(0, 0, cout, (int)n, K, 1.0f, c->w, K, col, (int)n, 1.0f, y + (size_t)r0 * W, H * W, threads);
    }
}

void conv3x3(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra, int accumulate,
             float *scratch, int threads)
{
    if (c->u) {
        conv3x3_winograd(c, xp, H, W, y, extra, accumulate, scratch, threads);
        return;
    }
    if (use_shift(c->cin, W)) {
        conv3x3_shifted(c, xp, H, W, y, extra, accumulate, scratch, threads);
        return;
    }
    if (!accumulate)
        fill_bias(y, c->b, extra, c->cout, (size_t)H * W, threads);
    conv3x3_im2col(c, xp, H, W, y, scratch, threads);
}

/* ------------------------------------------------------------------------ */
/* Stride-2 convolution (Downsample2D)                                       */
/* ------------------------------------------------------------------------ */

/* A coordinate of the padded grid read back in the image: circular padding
 * wraps, zero padding gives -1. */
static int wrap(int v, int n, int circular)
{
    if (v >= 0 && v < n)
        return v;
    if (!circular)
        return -1;
    v %= n;
    return v < 0 ? v + n : v;
}

size_t conv_down_scratch_floats(int cin, int H, int W)
{
    int Ho = H / 2, Wo = W / 2;
    size_t K = (size_t)9 * cin;
    return K * (size_t)im2col_rows(K, Ho, Wo) * (size_t)Wo;
}

void conv_down_accumulate(const conv2d_w *c, const float *x, int H, int W, int pad_lt, int circular, float *y,
                          float *col, int threads)
{
    const int cin = c->cin, cout = c->cout, K = 9 * cin;
    const int Ho = H / 2, Wo = W / 2;          /* (H + pad_lt + 1 - 3) / 2 + 1 for even H */
    const int R = im2col_rows((size_t)K, Ho, Wo);
    for (int r0 = 0; r0 < Ho; r0 += R) {
        int rows = Ho - r0 < R ? Ho - r0 : R;
        size_t n = (size_t)rows * Wo;
        /* col[(t, c), (i - r0) Wo + j] = x[c, 2i + ky - pad, 2j + kx - pad] */
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)K * n > 65536)
        for (int k = 0; k < K; k++) {
            int t = k / cin, ch = k % cin, ky = t / 3, kx = t % 3;
            const float *xc = x + (size_t)ch * H * W;
            float *dst = col + (size_t)k * n;
            for (int i = r0; i < r0 + rows; i++, dst += Wo) {
                int sy = wrap(2 * i + ky - pad_lt, H, circular);
                if (sy < 0) {
                    memset(dst, 0, (size_t)Wo * sizeof *dst);
                    continue;
                }
                const float *src = xc + (size_t)sy * W;
                for (int j = 0; j < Wo; j++) {
                    int sx = wrap(2 * j + kx - pad_lt, W, circular);
                    dst[j] = sx < 0 ? 0.0f : src[sx];
                }
            }
        }
        gemm(0, 0, cout, (int)n, K, 1.0f, c->w, K, col, (int)n, 1.0f, y + (size_t)r0 * Wo, Ho * Wo, threads);
    }
}

/* ------------------------------------------------------------------------ */
/* 1x1 convolution                                                           */
/* ------------------------------------------------------------------------ */

void conv1x1_accumulate(const conv2d_w *c, int k0, int K, const float *x, size_t HW, float *y, int threads)
{
    /* y (cout x HW) += W[:, k0 : k0+K] (cout x K, row stride cin) . x (K x HW) */
    gemm(0, 0, c->cout, (int)HW, K, 1.0f, c->w + k0, c->cin, x, (int)HW, 1.0f, y, (int)HW, threads);
}

/* ------------------------------------------------------------------------ */
/* GroupNorm (+ SiLU)                                                        */
/* ------------------------------------------------------------------------ */

/* Sums of (v - shift) and (v - shift)^2 over v[0 .. n-1]: 16 float lanes
 * (a GCC/Clang vector, which compiles to whatever SIMD width the target
 * has) over blocks of 1024 values, 64 terms a lane; the blocks are added in
 * double. */
typedef float float16v __attribute__((vector_size(64)));

VECTOR_CLONES static void shifted_sums(const float *v, size_t n, float shift, double *s1, double *s2)
{
    double a1 = 0.0, a2 = 0.0;
    float16v k = {0};
    k += shift;
    for (size_t b = 0; b < n; b += 1024) {
        size_t m = n - b < 1024 ? n - b : 1024, p = 0;
        float16v l1 = {0}, l2 = {0};
        for (; p + 16 <= m; p += 16) {
            float16v x;
            memcpy(&x, v + b + p, sizeof x);
            float16v d = x - k;
            l1 += d;
            l2 += d * d;
        }
        double b1 = 0.0, b2 = 0.0;
        for (; p < m; p++) {
            double d = (double)v[b + p] - shift;
            b1 += d;
            b2 += d * d;
        }
        for (int lane = 0; lane < 16; lane++) {
            b1 += l1[lane];
            b2 += l2[lane];
        }
        a1 += b1;
        a2 += b2;
    }
    *s1 = a1;
    *s2 = a2;
}

/* y = x a + b [then SiLU] over H rows of W pixels (rows of y out_row apart). */
VECTOR_CLONES static void norm_rows(const float *x, float *y, int H, int W, int out_row, float a, float b,
                                    int silu_after)
{
    for (int i = 0; i < H; i++, x += W, y += out_row) {
        if (silu_after)
            for (int j = 0; j < W; j++)
                y[j] = silu(x[j] * a + b);
        else
            for (int j = 0; j < W; j++)
                y[j] = x[j] * a + b;
    }
}

/*   mu_g = mean over the group's channels and pixels
 *   var_g = mean of (x - mu_g)^2                       (biased, as PyTorch)
 *   y = (x - mu_g) / sqrt(var_g + eps) * gamma_c + beta_c       [then SiLU]
 * One pass of sums about a shift K near the mean (the mean of the group's
 * first values):  mu = K + E[x - K],  var = E[(x - K)^2] - (mu - K)^2,
 * which does not cancel as long as K is within a few deviations of mu. */
void group_norm(const groupnorm_w *g, int groups, double eps, int silu_after, const float *xa, int Ca,
                const float *xb, int Cb, int H, int W, float *y, int padded, int threads)
{
    (void)threads;   /* unused without OpenMP */
    const int C = Ca + Cb, cpg = C / groups;
    const size_t HW = (size_t)H * W;
    const size_t out_plane = padded ? padded_plane(H, W) : HW;
    const int out_row = padded ? padded_stride(W) : W;

#pragma omp parallel for schedule(dynamic) num_threads(threads) if ((size_t)C * HW > 32768)
    for (int gi = 0; gi < groups; gi++) {
        const int c0 = gi * cpg, c1 = c0 + cpg;
        const double count = (double)cpg * (double)HW;
        const float *first = c0 < Ca ? xa + (size_t)c0 * HW : xb + (size_t)(c0 - Ca) * HW;
        size_t nk = HW < 64 ? HW : 64;
        double k = 0.0;
        for (size_t p = 0; p < nk; p++)
            k += first[p];
        const float shift = (float)(k / (double)nk);
        double d1 = 0.0, d2 = 0.0;
        for (int c = c0; c < c1; c++) {
            const float *xc = c < Ca ? xa + (size_t)c * HW : xb + (size_t)(c - Ca) * HW;
            double s1, s2;
            shifted_sums(xc, HW, shift, &s1, &s2);
            d1 += s1;
            d2 += s2;
        }
        const double dm = d1 / count, mu = shift + dm;
        const double var = d2 / count - dm * dm;
        const double rstd = 1.0 / sqrt((var > 0 ? var : 0) + eps);

        for (int c = c0; c < c1; c++) {
            const float *xc = c < Ca ? xa + (size_t)c * HW : xb + (size_t)(c - Ca) * HW;
            float *yc = y + (size_t)c * out_plane + (padded ? (size_t)out_row + 1 : 0);
            const float a = (float)(rstd * g->gamma[c]);
            const float b = (float)(g->beta[c] - mu * rstd * g->gamma[c]);
            norm_rows(xc, yc, H, W, out_row, a, b, silu_after);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

/* Query rows per block of scores: a fixed function of HW. */
static size_t score_rows(size_t HW)
{
    size_t r = round_up((HW + 7) / 8, 16);
    size_t cap = blocks->score_budget / HW;
    if (r > cap)
        r = cap;
    if (r < 16)
        r = 16;
    return r < HW ? r : HW;
}

size_t attention_scratch_floats(const attention_w *a, size_t HW, int threads)
{
    /* normalized input, q k v, head outputs, a block of scores per thread */
    return (size_t)a->C * HW * 5 + (size_t)threads * score_rows(HW) * HW;
}

/* Row-wise softmax of an m x n block, in place; sums in double. */
VECTOR_CLONES static void softmax_rows(float *s, size_t m, size_t n)
{
    for (size_t i = 0; i < m; i++) {
        float *r = s + i * n;
        float mx = r[0];
        for (size_t j = 1; j < n; j++)
            mx = r[j] > mx ? r[j] : mx;
        for (size_t j = 0; j < n; j++)
            r[j] = exp_approx(r[j] - mx);
        double sum = 0.0;
        for (size_t j = 0; j < n; j++)
            sum += r[j];
        float inv = (float)(1.0 / sum);
        for (size_t j = 0; j < n; j++)
            r[j] *= inv;
    }
}

/* Tokens are the HW pixels; each is a C-vector (a column of x).  With the
 * channels of q, k, v split into heads of d = C / heads:
 *
 *   h = GroupNorm(x);  [q; k; v] = W_qkv h + b_qkv          (3C x HW)
 *   S = q_h^T k_h / sqrt(d)       (HW x HW, a block of query rows at a time)
 *   P = softmax over keys;  o_h = v_h P^T                    (d x HW)
 *   y = x + W_out o + b_out
 */
void attention(const attention_w *a, int groups, double eps, const float *x, int H, int W, float *y, float *scratch,
               int threads)
{
    const int C = a->C, heads = a->heads, d = C / heads;
    const size_t HW = (size_t)H * W;
    const int n = (int)HW;
    float *hn = scratch;
    float *qkv = hn + (size_t)C * HW;
    float *o = qkv + (size_t)3 * C * HW;
    float *scores = o + (size_t)C * HW;
    const size_t rows = score_rows(HW);
    const int nblocks = (int)((HW + rows - 1) / rows);
    const float scale = (float)(1.0 / sqrt((double)d));

    group_norm(&a->norm, groups, eps, 0, x, C, NULL, 0, H, W, hn, 0, threads);
    fill_bias(qkv, a->qkv_b, NULL, 3 * C, HW, threads);
    gemm(0, 0, 3 * C, n, C, 1.0f, a->qkv_w, C, hn, n, 1.0f, qkv, n, threads);

    for (int h = 0; h < heads; h++) {
        const float *q = qkv + (size_t)h * d * HW;
        const float *k = qkv + (size_t)(C + h * d) * HW;
        const float *v = qkv + (size_t)(2 * C + h * d) * HW;
        float *oh = o + (size_t)h * d * HW;
#pragma omp parallel for schedule(dynamic) num_threads(threads)
        for (int b = 0; b < nblocks; b++) {
            size_t i0 = (size_t)b * rows;
            int m = (int)(HW - i0 < rows ? HW - i0 : rows);
            float *s = scores + (size_t)thread_id() * rows * HW;
            /* S (m x HW) = scale q[:, i0 : i0+m]^T k */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, d, scale, q + i0, n, k, n, 0.0f, s, n);
            softmax_rows(s, (size_t)m, HW);
            /* o_h[:, i0 : i0+m] (d x m) = v (d x HW) . S^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, m, n, 1.0f, v, n, s, n, 0.0f, oh + i0, n);
        }
    }

    fill_residual(y, x, a->out.b, C, HW, threads);
    gemm(0, 0, C, n, C, 1.0f, a->out.w, C, o, n, 1.0f, y, n, threads);
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                    */
/* ------------------------------------------------------------------------ */

void linear(const linear_w *l, const float *x, float *y)
{
    memcpy(y, l->b, (size_t)l->out * sizeof *y);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, l->out, l->in, 1.0f, l->w, l->in, x, 1, 1.0f, y, 1);
}
