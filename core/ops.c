/* ops.c: group norm + SiLU, attention and linear layers on one image
 * (C x H x W, float32), and the block sizes of every layer.
 *
 * The other layers and their machinery are in
 *   conv.c      padded planes; 3x3, stride-2 and 1x1 convolutions
 *   winograd.c  the Winograd scheme of the wide 3x3 convolutions
 *   gemm.c      GEMM shared by a team; the packed AVX-512 kernels
 *   threads.c   the team of threads; DDPM_PROFILE timing
 * and share what they need through ops_internal.h.
 */
#include "ops_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

/* Block sizes (block_sizes: ops_internal.h).  The score budget (32 MB a
 * thread) is large because every block of query rows reads all of k and v
 * again: with 16,384 tokens (cifar10's U-Net at 256 x 256) blocks of 16 rows
 * took 13.7 s per evaluation, blocks of 512 rows 8.0 s. */
static const block_sizes normal_blocks = {512 * 1024, 128 * 1024, 512, 16, 8192 * 1024, 2e6, 256, 256 * 1024, 256,
                                          128 * 128, 128 * 1024};
static const block_sizes tiny_blocks = {1024, 512, 16, 16, 512, 0.0, 16, 256, 1, 16, 1};
const block_sizes *blocks = &normal_blocks;

void ops_use_tiny_blocks(int on)
{
    blocks = on ? &tiny_blocks : &normal_blocks;
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

typedef struct {
    float *y;
    const float *x, *bias, *extra;
    size_t HW;
} fill_args;

static void fill_bias_task(void *ctx, int c, int slot)
{
    const fill_args *a = ctx;
    float v = a->bias[c] + (a->extra ? a->extra[c] : 0.0f);
    float *row = a->y + (size_t)c * a->HW;
    (void)slot;
    for (size_t p = 0; p < a->HW; p++)
        row[p] = v;
}

void fill_bias(float *y, const float *bias, const float *extra, int C, size_t HW, int threads)
{
    fill_args a = {y, NULL, bias, extra, HW};
    elementwise_for("fill_bias", C, (int)HW, 1, (size_t)C * HW, threads, C, fill_bias_task, &a);
}

static void fill_residual_task(void *ctx, int c, int slot)
{
    const fill_args *a = ctx;
    float b = a->bias[c];
    const float *xr = a->x + (size_t)c * a->HW;
    float *row = a->y + (size_t)c * a->HW;
    (void)slot;
    for (size_t p = 0; p < a->HW; p++)
        row[p] = xr[p] + b;
}

void fill_residual(float *y, const float *x, const float *bias, int C, size_t HW, int threads)
{
    fill_args a = {y, x, bias, NULL, HW};
    elementwise_for("fill_residual", C, (int)HW, 1, (size_t)C * HW, threads, C, fill_residual_task, &a);
}

/* y += x over C planes of HW pixels (a residual added after the fact). */
static void add_residual_task(void *ctx, int c, int slot)
{
    const fill_args *a = ctx;
    const float *xr = a->x + (size_t)c * a->HW;
    float *row = a->y + (size_t)c * a->HW;
    (void)slot;
    for (size_t p = 0; p < a->HW; p++)
        row[p] += xr[p];
}

static void add_residual(float *y, const float *x, int C, size_t HW, int threads)
{
    fill_args a = {y, x, NULL, NULL, HW};
    elementwise_for("add_residual", C, (int)HW, 1, (size_t)C * HW, threads, C, add_residual_task, &a);
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
typedef struct {
    const groupnorm_w *g;
    double eps;
    int silu_after, Ca, cpg, H, W, padded;
    const float *xa, *xb;
    float *y;
} norm_args;

static void group_norm_task(void *ctx, int gi, int slot)
{
    const norm_args *na = ctx;
    const groupnorm_w *g = na->g;
    const int Ca = na->Ca, cpg = na->cpg, H = na->H, W = na->W, padded = na->padded, silu_after = na->silu_after;
    const float *xa = na->xa, *xb = na->xb;
    float *y = na->y;
    const double eps = na->eps;
    const size_t HW = (size_t)H * W;
    const size_t out_plane = padded ? padded_plane(H, W) : HW;
    const int out_row = padded ? padded_stride(W) : W;
    (void)slot;
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

void group_norm(const groupnorm_w *g, int groups, double eps, int silu_after, const float *xa, int Ca,
                const float *xb, int Cb, int H, int W, float *y, int padded, int threads)
{
    const int C = Ca + Cb;
    norm_args a = {g, eps, silu_after, Ca, C / groups, H, W, padded, xa, xb, y};
    elementwise_for(silu_after ? "group_norm+silu" : "group_norm", C, H, W, (size_t)C * H * W / 2, threads, groups,
                    group_norm_task, &a);
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
    /* normalized input, q k v, head outputs, a block of scores per thread
     * (or the projections' scratch, used before and after them) */
    size_t scores = (size_t)threads * score_rows(HW) * HW;
    size_t project = conv1x1_scratch_floats(a->C, 3 * a->C, HW, threads);
    return (size_t)a->C * HW * 5 + (scores > project ? scores : project);
}

/* Row-wise softmax of an m x n block, in place.  The max and the sum run
 * on 16-float vectors (float16v, above; the sum in float over blocks of
 * 1024, then in double, as shifted_sums): written as one running value
 * they were chains of dependent operations that the compiler kept scalar,
 * and with 16,384 tokens took a sixth of the evaluation. */
typedef int int16v __attribute__((vector_size(64)));

VECTOR_CLONES static void softmax_rows(float *s, size_t m, size_t n)
{
    for (size_t i = 0; i < m; i++) {
        float *r = s + i * n;
        size_t j = 0;
        float16v best = {0};
        best += r[0];
        for (; j + 16 <= n; j += 16) {
            float16v x;
            memcpy(&x, r + j, sizeof x);
            int16v greater = x > best;
            best = (float16v)(((int16v)x & greater) | ((int16v)best & ~greater));
        }
        float mx = r[0];
        for (int lane = 0; lane < 16; lane++)
            mx = best[lane] > mx ? best[lane] : mx;
        for (; j < n; j++)
            mx = r[j] > mx ? r[j] : mx;

        for (j = 0; j < n; j++)
            r[j] = exp_approx(r[j] - mx);

        double sum = 0.0;
        for (size_t b = 0; b < n; b += 1024) {
            size_t end = n - b < 1024 ? n : b + 1024;
            float16v part = {0};
            for (j = b; j + 16 <= end; j += 16) {
                float16v x;
                memcpy(&x, r + j, sizeof x);
                part += x;
            }
            for (int lane = 0; lane < 16; lane++)
                sum += part[lane];
            for (; j < end; j++)
                sum += r[j];
        }

        float inv = (float)(1.0 / sum);
        for (j = 0; j < n; j++)
            r[j] *= inv;
    }
}

typedef struct {
    int C, d, nblocks;
    size_t HW, rows;
    float scale;
    const float *qkv;
    float *o, *scores;
} attention_args;

/* One block of query rows of one head. */
static void attention_task(void *ctx, int task, int slot)
{
    const attention_args *a = ctx;
    const int h = task / a->nblocks, b = task % a->nblocks, d = a->d, n = (int)a->HW;
    const size_t HW = a->HW, i0 = (size_t)b * a->rows;
    const int m = (int)(HW - i0 < a->rows ? HW - i0 : a->rows);
    const float *q = a->qkv + (size_t)h * d * HW;
    const float *k = a->qkv + (size_t)(a->C + h * d) * HW;
    const float *v = a->qkv + (size_t)(2 * a->C + h * d) * HW;
    float *s = a->scores + (size_t)slot * a->rows * HW;
    /* S (m x HW) = scale q[:, i0 : i0+m]^T k */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, d, a->scale, q + i0, n, k, n, 0.0f, s, n);
    softmax_rows(s, (size_t)m, HW);
    /* o_h[:, i0 : i0+m] (d x m) = v (d x HW) . S^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, m, n, 1.0f, v, n, s, n, 0.0f,
                a->o + (size_t)h * d * HW + i0, n);
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
    float *hn = scratch;
    float *qkv = hn + (size_t)C * HW;
    float *o = qkv + (size_t)3 * C * HW;
    float *scores = o + (size_t)C * HW;
    const size_t rows = score_rows(HW);
    const int nblocks = (int)((HW + rows - 1) / rows);
    const float scale = (float)(1.0 / sqrt((double)d));
    double t0 = profile_start();

    group_norm(&a->norm, groups, eps, 0, x, C, NULL, 0, H, W, hn, 0, threads);
    conv1x1(&a->qkv, hn, C, NULL, 0, HW, qkv, NULL, scores, threads);

    attention_args aa = {C, d, nblocks, HW, rows, scale, qkv, o, scores};
    parallel_for(threads, heads * nblocks, attention_task, &aa);

    conv1x1(&a->out, o, C, NULL, 0, HW, y, NULL, scores, threads);
    add_residual(y, x, C, HW, threads);
    /* 2 (4 C^2 HW) for the projections, 2 (2 C HW^2) for scores and outputs */
    profile_stop(t0, "attention", C, C, H, W, 8.0 * C * C * (double)HW + 4.0 * C * (double)HW * (double)HW);
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                    */
/* ------------------------------------------------------------------------ */

void linear(const linear_w *l, const float *x, float *y)
{
    memcpy(y, l->b, (size_t)l->out * sizeof *y);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, l->out, l->in, 1.0f, l->w, l->in, x, 1, 1.0f, y, 1);
}
