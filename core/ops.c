/* ops.c: convolution, group norm + SiLU, attention and linear layers on one
 * image (C x H x W, float32).
 *
 * A 3x3 convolution is
 *
 *     y[o, i, j] = sum_{ky, kx, c} W[o, ky, kx, c] x[c, i + ky - 1, j + kx - 1]
 *
 * computed by GEMMs on OpenBLAS in one of two ways:
 *
 *   shifted GEMMs (wide images): with x in a padded buffer, the nine taps are
 *     nine GEMMs  Y += W_tap (cout x cin) . X_shifted (cin x pixels), where
 *     X_shifted is the padded buffer itself read from offset ky (W+2) + kx.
 *     Output pixel (i, j) sits at position i (W+2) + j of that flat grid; the
 *     two positions per row that fall on the border are computed and dropped.
 *     No copy of the input is made, and a strip of positions is done at a
 *     time so its output stays in cache across the nine taps.
 *
 *   im2col (narrow images, where the dropped border columns would cost too
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

#define IM2COL_BUDGET (512 * 1024)        /* floats of a column strip (2 MB)  */
#define SHIFT_STRIP_BUDGET (256 * 1024)   /* floats of one output strip       */
#define SHIFT_MIN_WIDTH 16                /* narrower: im2col                 */
#define ATTN_SCORE_BUDGET (256 * 1024)    /* floats of one block of scores    */
#define GEMM_SPLIT_FLOPS 4e6              /* smaller GEMMs are one call       */

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

/* exp(x) for x in float range, within 2 ulp, written so that loops calling
 * it vectorize (no libm call, no branch): x = n ln2 + r with |r| <= ln2/2,
 * e^r by Cephes' degree-7 polynomial, 2^n from the exponent bits.  The
 * rounding trick needs round-to-nearest and no -ffast-math. */
static inline float exp_approx(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round(x / ln 2) */
    float r = x - n * 0.693359375f;                                      /* Cody-Waite: ln2 = hi + lo */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } two_n;
    two_n.i = ((int32_t)n + 127) << 23;
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
/* GEMM in deterministic blocks                                              */
/* ------------------------------------------------------------------------ */

/* C (M x N) = alpha op(A) op(B) + beta C, row-major, cut into at most eight
 * blocks of columns (or of rows when N is small) that the team shares.  The
 * cut depends on M, N, K only, so every element is computed by the same
 * OpenBLAS call whatever the thread count. */
static void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, int threads)
{
    const enum CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans;
    if (2.0 * M * N * K < GEMM_SPLIT_FLOPS || (N < 128 && M < 64)) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int by_columns = N >= 128;
    int len = by_columns ? N : M;
    int block = (int)round_up((size_t)(len + 7) / 8, 16);
    int nblocks = (len + block - 1) / block;
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

size_t padded_plane(int H, int W)
{
    return (size_t)(H + 2) * (size_t)(W + 2);
}

float *padded_interior(float *xp, int W)
{
    return xp + (W + 2) + 1;
}

/* Circular: the border repeats the opposite edge (rows first, then whole
 * columns, which also fills the corners); zero: the border is 0. */
void pad_borders(float *xp, int C, int H, int W, int circular, int threads)
{
    const int Wp = W + 2;
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
    }
}

void pad_copy(const float *x, int C, int H, int W, int center, float *xp, int threads)
{
    const size_t P = padded_plane(H, W);
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)C * P > 65536)
    for (int c = 0; c < C; c++) {
        float *dst = padded_interior(xp + (size_t)c * P, W);
        const float *src = x + (size_t)c * H * W;
        for (int i = 0; i < H; i++, dst += W + 2, src += W) {
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
    const int H2 = 2 * H, W2 = 2 * W;
    const size_t P = padded_plane(H2, W2);
#pragma omp parallel for schedule(static) num_threads(threads) if ((size_t)C * P > 65536)
    for (int c = 0; c < C; c++) {
        float *dst = padded_interior(xp + (size_t)c * P, W2);
        for (int i = 0; i < H2; i++, dst += W2 + 2) {
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

static int use_shift(int W)
{
    return W >= SHIFT_MIN_WIDTH;
}

/* Positions of the flat padded grid per strip of the shifted scheme. */
static size_t shift_strip(int cout, size_t n)
{
    size_t s = round_up(SHIFT_STRIP_BUDGET / (size_t)cout, 16);
    if (s < 256)
        s = 256;
    return s < n ? s : n;
}

/* Column-strip rows of the im2col scheme. */
static int im2col_rows(size_t K, int H, int W)
{
    size_t r = IM2COL_BUDGET / (K * (size_t)W);
    if (r < 1)
        r = 1;
    return r < (size_t)H ? (int)r : H;
}

size_t conv3x3_scratch_floats(int cin, int cout, int H, int W, int threads)
{
    if (use_shift(W)) {
        size_t n = (size_t)(H - 1) * (W + 2) + W;
        return (size_t)threads * (size_t)cout * shift_strip(cout, n);
    }
    size_t K = (size_t)9 * cin;
    return K * (size_t)im2col_rows(K, H, W) * (size_t)W;
}

static void conv3x3_shifted(const conv2d_w *c, const float *xp, int H, int W, float *y, float *scratch,
                            int threads)
{
    const int cin = c->cin, cout = c->cout, Wp = W + 2;
    const size_t P = padded_plane(H, W);
    const size_t n = (size_t)(H - 1) * Wp + W;           /* last interior position + 1 */
    const size_t S = shift_strip(cout, n);
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
        /* y += the positions that are pixels: p = i (W+2) + j with j < W */
        size_t i0 = p0 / Wp, i1 = (p0 + m - 1) / Wp;
        for (int o = 0; o < cout; o++) {
            const float *src = yp + (size_t)o * m;
            float *dst = y + (size_t)o * H * W;
            for (size_t i = i0; i <= i1; i++) {
                size_t row = i * Wp;
                size_t j0 = p0 > row ? p0 - row : 0, j1 = p0 + m - row < (size_t)W ? p0 + m - row : (size_t)W;
                for (size_t j = j0; j < j1; j++)
                    dst[i * W + j] += src[row + j - p0];
            }
        }
    }
}

static void conv3x3_im2col(const conv2d_w *c, const float *xp, int H, int W, float *y, float *col, int threads)
{
    const int cin = c->cin, cout = c->cout, Wp = W + 2, K = 9 * cin;
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

void conv3x3_accumulate(const conv2d_w *c, const float *xp, int H, int W, float *y, float *scratch, int threads)
{
    if (use_shift(W))
        conv3x3_shifted(c, xp, H, W, y, scratch, threads);
    else
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

/* Sum of v[0 .. n-1] and sum of (v - shift)^2: float lanes over blocks of
 * 256 values (vectorizable), the blocks added in double. */
static void sums(const float *v, size_t n, float shift, double *s1, double *s2)
{
    double a1 = 0.0, a2 = 0.0;
    for (size_t b = 0; b < n; b += 256) {
        size_t m = n - b < 256 ? n - b : 256;
        float l1[16] = {0}, l2[16] = {0};
        size_t p = 0;
        for (; p + 16 <= m; p += 16)
            for (int k = 0; k < 16; k++) {
                float x = v[b + p + k], d = x - shift;
                l1[k] += x;
                l2[k] += d * d;
            }
        double b1 = 0.0, b2 = 0.0;
        for (; p < m; p++) {
            double d = (double)v[b + p] - shift;
            b1 += v[b + p];
            b2 += d * d;
        }
        for (int k = 0; k < 16; k++) {
            b1 += l1[k];
            b2 += l2[k];
        }
        a1 += b1;
        a2 += b2;
    }
    *s1 = a1;
    *s2 = a2;
}

/*   mu_g = mean over the group's channels and pixels
 *   var_g = mean of (x - mu_g)^2                       (biased, as PyTorch)
 *   y = (x - mu_g) / sqrt(var_g + eps) * gamma_c + beta_c       [then SiLU]
 * Two passes: the mean, then the squares about a first estimate of it (an
 * exact correction removes the estimate's error), so no cancellation. */
void group_norm(const groupnorm_w *g, int groups, double eps, int silu_after, const float *xa, int Ca,
                const float *xb, int Cb, int H, int W, float *y, int padded, int threads)
{
    const int C = Ca + Cb, cpg = C / groups;
    const size_t HW = (size_t)H * W;
    const size_t out_plane = padded ? padded_plane(H, W) : HW;
    const int out_row = padded ? W + 2 : W;

#pragma omp parallel for schedule(dynamic) num_threads(threads) if ((size_t)C * HW > 32768)
    for (int gi = 0; gi < groups; gi++) {
        const int c0 = gi * cpg, c1 = c0 + cpg;
        const double count = (double)cpg * (double)HW;
        double s1, s2, total = 0.0;
        for (int c = c0; c < c1; c++) {
            const float *xc = c < Ca ? xa + (size_t)c * HW : xb + (size_t)(c - Ca) * HW;
            sums(xc, HW, 0.0f, &s1, &s2);
            total += s1;
        }
        const float shift = (float)(total / count);
        double d1 = 0.0, d2 = 0.0;
        for (int c = c0; c < c1; c++) {
            const float *xc = c < Ca ? xa + (size_t)c * HW : xb + (size_t)(c - Ca) * HW;
            sums(xc, HW, shift, &s1, &s2);
            d1 += s1;
            d2 += s2;
        }
        /* var = E[(x - shift)^2] - (mu - shift)^2, with mu - shift tiny */
        const double mu = d1 / count, dm = mu - shift;
        double var = d2 / count - dm * dm;
        const double rstd = 1.0 / sqrt((var > 0 ? var : 0) + eps);

        for (int c = c0; c < c1; c++) {
            const float *xc = c < Ca ? xa + (size_t)c * HW : xb + (size_t)(c - Ca) * HW;
            float *yc = y + (size_t)c * out_plane + (padded ? (size_t)out_row + 1 : 0);
            const float a = (float)(rstd * g->gamma[c]);
            const float b = (float)(g->beta[c] - mu * rstd * g->gamma[c]);
            for (int i = 0; i < H; i++, xc += W, yc += out_row) {
                if (silu_after)
                    for (int j = 0; j < W; j++)
                        yc[j] = silu(xc[j] * a + b);
                else
                    for (int j = 0; j < W; j++)
                        yc[j] = xc[j] * a + b;
            }
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
    size_t cap = ATTN_SCORE_BUDGET / HW;
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
static void softmax_rows(float *s, size_t m, size_t n)
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
