/* ops.c: convolution, group norm + SiLU, attention and linear layers on one
 * image (C x H x W, float32).
 *
 * Convolutions are GEMMs on OpenBLAS.  A k x k convolution of cin channels is
 *
 *     y[o, p] += sum_{c, ky, kx} W[o, c, ky, kx] x[c, p + (ky, kx)]
 *
 * i.e. the product of W seen as a cout x (cin k k) matrix (PyTorch's layout,
 * used as is) with the "column" matrix col[(c, ky, kx), p] of shifted input
 * pixels.  The column matrix is built a strip of output rows at a time, so its
 * scratch stays small whatever the image size; padding (zero or circular),
 * stride 2 and the nearest x2 upsampling of Upsample2D are all handled while
 * gathering, so no padded or upsampled copy of the input is ever made.
 */
#include "ops.h"

#include <math.h>
#include <string.h>

#include <cblas.h>

#define COL_BUDGET_FLOATS (512 * 1024)   /* 2 MB column strip: about L2 */
#define ATTN_SCORE_BUDGET (1024 * 1024)  /* query rows x tokens of scores */

/* ------------------------------------------------------------------------ */
/* Convolution                                                               */
/* ------------------------------------------------------------------------ */

int conv_out_h(const conv_geom *g, int k)
{
    int h = g->upsample ? 2 * g->H : g->H;
    return (h + g->pad_top + g->pad_bottom - k) / g->stride + 1;
}

int conv_out_w(const conv_geom *g, int k)
{
    int w = g->upsample ? 2 * g->W : g->W;
    return (w + g->pad_left + g->pad_right - k) / g->stride + 1;
}

/* Output rows per column strip: as many as fit the budget, at least one. */
static int strip_rows(int K, int Ho, int Wo)
{
    size_t per_row = (size_t)K * (size_t)Wo;
    size_t r = per_row ? COL_BUDGET_FLOATS / per_row : (size_t)Ho;
    if (r < 1)
        r = 1;
    if (r > (size_t)Ho)
        r = (size_t)Ho;
    return (int)r;
}

size_t conv_scratch_floats(int cin, int k, int Ho, int Wo)
{
    if (k == 1)
        return 0;
    int K = cin * k * k;
    return (size_t)K * (size_t)strip_rows(K, Ho, Wo) * (size_t)Wo;
}

void fill_bias(float *y, const float *bias, const float *extra, int C, size_t HW)
{
#pragma omp parallel for schedule(static) if ((size_t)C * HW > 32768)
    for (int c = 0; c < C; c++) {
        float v = bias[c] + (extra ? extra[c] : 0.0f);
        float *row = y + (size_t)c * HW;
        for (size_t p = 0; p < HW; p++)
            row[p] = v;
    }
}

void fill_residual(float *y, const float *x, const float *bias, int C, size_t HW)
{
#pragma omp parallel for schedule(static) if ((size_t)C * HW > 32768)
    for (int c = 0; c < C; c++) {
        float b = bias[c];
        const float *xr = x + (size_t)c * HW;
        float *row = y + (size_t)c * HW;
        for (size_t p = 0; p < HW; p++)
            row[p] = xr[p] + b;
    }
}

/* Map a coordinate of the (padded) grid of size n back into it: circular
 * padding wraps, zero padding reports -1. */
static int wrap(int v, int n, int circular)
{
    if (v >= 0 && v < n)
        return v;
    if (!circular)
        return -1;
    v %= n;
    return v < 0 ? v + n : v;
}

/* col[(c, ky, kx), (i - r0) * Wo + j] = x at the grid position read by output
 * pixel (i, j) through tap (ky, kx), for output rows r0 .. r0 + R - 1. */
static void im2col_strip(const float *x, int cin, int k, const conv_geom *g, int Wo, int r0, int R, float *col)
{
    const int up = g->upsample, s = g->stride;
    const int GH = up ? 2 * g->H : g->H, GW = up ? 2 * g->W : g->W;   /* grid the kernel slides over */
    const size_t plane = (size_t)g->H * g->W, n = (size_t)R * Wo;
    const int rows = cin * k * k;

#pragma omp parallel for schedule(static) if ((size_t)rows * n > 65536)
    for (int row = 0; row < rows; row++) {
        int c = row / (k * k), ky = (row / k) % k, kx = row % k;
        const float *xc = x + (size_t)c * plane;
        float *out = col + (size_t)row * n;
        for (int i = r0; i < r0 + R; i++, out += Wo) {
            int gy = wrap(i * s + ky - g->pad_top, GH, g->circular);
            if (gy < 0) {
                memset(out, 0, (size_t)Wo * sizeof *out);
                continue;
            }
            const float *src = xc + (size_t)(up ? gy >> 1 : gy) * g->W;
            int x0 = kx - g->pad_left;                 /* grid column of output column 0 */
            if (s == 1 && !up) {
                /* the common case: a contiguous run plus at most a pixel on each side */
                int j0 = x0 < 0 ? -x0 : 0;                    /* first j inside the grid */
                int j1 = GW - x0 < Wo ? GW - x0 : Wo;          /* one past the last       */
                for (int j = 0; j < j0; j++) {
                    int gx = wrap(x0 + j, GW, g->circular);
                    out[j] = gx < 0 ? 0.0f : src[gx];
                }
                if (j1 > j0)
                    memcpy(out + j0, src + x0 + j0, (size_t)(j1 - j0) * sizeof *out);
                for (int j = j1 > j0 ? j1 : j0; j < Wo; j++) {
                    int gx = wrap(x0 + j, GW, g->circular);
                    out[j] = gx < 0 ? 0.0f : src[gx];
                }
            } else {
                for (int j = 0; j < Wo; j++) {
                    int gx = wrap(x0 + j * s, GW, g->circular);
                    out[j] = gx < 0 ? 0.0f : src[up ? gx >> 1 : gx];
                }
            }
        }
    }
}

void conv1x1_accumulate(const conv2d_w *c, int k0, int K, const float *x, size_t HW, float *y)
{
    /* y (cout x HW) += W[:, k0 : k0+K] (cout x K, row stride cin) . x (K x HW) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, (int)HW, K, 1.0f, c->w + k0, c->cin, x,
                (int)HW, 1.0f, y, (int)HW);
}

void conv2d_accumulate(const conv2d_w *c, const float *x, const conv_geom *g, float *y, float *scratch)
{
    const int k = c->k, Ho = conv_out_h(g, k), Wo = conv_out_w(g, k);
    if (k == 1 && g->stride == 1 && !g->upsample && !g->pad_top && !g->pad_left && !g->pad_bottom &&
        !g->pad_right) {
        conv1x1_accumulate(c, 0, c->cin, x, (size_t)g->H * g->W, y);
        return;
    }
    const int K = c->cin * k * k, R = strip_rows(K, Ho, Wo);
    for (int r0 = 0; r0 < Ho; r0 += R) {
        int rows = Ho - r0 < R ? Ho - r0 : R;
        int n = rows * Wo;
        im2col_strip(x, c->cin, k, g, Wo, r0, rows, scratch);
        /* y[:, strip] (cout x n, row stride Ho*Wo) += W (cout x K) . col (K x n) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, n, K, 1.0f, c->w, K, scratch, n, 1.0f,
                    y + (size_t)r0 * Wo, Ho * Wo);
    }
}

/* ------------------------------------------------------------------------ */
/* GroupNorm (+ SiLU)                                                        */
/* ------------------------------------------------------------------------ */

static float silu(float v)
{
    return v / (1.0f + expf(-v));
}

void silu_inplace(float *v, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++)
        v[i] = silu(v[i]);
}

/* The moments of one group's channels, sums in double so that one pass is
 * accurate: returns mu and 1 / sqrt(var + eps). */
static void group_moments(const float *xa, int Ca, const float *xb, int c0, int c1, size_t HW, double eps,
                          double *mu, double *rstd)
{
    double sum = 0.0, sumsq = 0.0;
    for (int c = c0; c < c1; c++) {
        const float *xc = c < Ca ? xa + (size_t)c * HW : xb + (size_t)(c - Ca) * HW;
        for (size_t p = 0; p < HW; p++) {
            double v = xc[p];
            sum += v;
            sumsq += v * v;
        }
    }
    double count = (double)(c1 - c0) * (double)HW;
    double m = sum / count;
    double var = sumsq / count - m * m;          /* biased, as PyTorch */
    *mu = m;
    *rstd = 1.0 / sqrt((var > 0 ? var : 0) + eps);
}

/*   y = (x - mu_g) / sqrt(var_g + eps) * gamma_c + beta_c      [then SiLU]
 * applied as y = x * scale_c + shift_c, one group per task. */
void group_norm(const groupnorm_w *g, int groups, double eps, int silu_after, const float *xa, int Ca,
                const float *xb, int Cb, size_t HW, float *y)
{
    const int C = Ca + Cb, cpg = C / groups;

#pragma omp parallel for schedule(static) if ((size_t)C * HW > 32768)
    for (int gi = 0; gi < groups; gi++) {
        double mu, rstd;
        group_moments(xa, Ca, xb, gi * cpg, (gi + 1) * cpg, HW, eps, &mu, &rstd);
        for (int c = gi * cpg; c < (gi + 1) * cpg; c++) {
            const float *xc = c < Ca ? xa + (size_t)c * HW : xb + (size_t)(c - Ca) * HW;
            float *yc = y + (size_t)c * HW;
            float a = (float)(rstd * g->gamma[c]);
            float b = (float)(g->beta[c] - mu * rstd * g->gamma[c]);
            if (silu_after)
                for (size_t p = 0; p < HW; p++)
                    yc[p] = silu(xc[p] * a + b);
            else
                for (size_t p = 0; p < HW; p++)
                    yc[p] = xc[p] * a + b;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

/* Query rows per block of scores. */
static size_t score_rows(size_t HW)
{
    size_t r = ATTN_SCORE_BUDGET / (HW ? HW : 1);
    if (r < 1)
        r = 1;
    return r > HW ? HW : r;
}

size_t attention_scratch_floats(const attention_w *a, size_t HW)
{
    /* normalized input, q k v, head outputs, one block of scores */
    return (size_t)a->C * HW * 5 + score_rows(HW) * HW;
}

/* Row-wise softmax of an m x n block, in place. */
static void softmax_rows(float *s, size_t m, size_t n)
{
#pragma omp parallel for schedule(static) if (m * n > 32768)
    for (size_t i = 0; i < m; i++) {
        float *r = s + i * n;
        float mx = r[0];
        for (size_t j = 1; j < n; j++)
            mx = r[j] > mx ? r[j] : mx;
        double sum = 0.0;
        for (size_t j = 0; j < n; j++) {
            r[j] = expf(r[j] - mx);
            sum += r[j];
        }
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
void attention(const attention_w *a, int groups, double eps, const float *x, size_t HW, float *y, float *scratch)
{
    const int C = a->C, heads = a->heads, d = C / heads;
    const int n = (int)HW;
    float *hn = scratch;
    float *qkv = hn + (size_t)C * HW;
    float *o = qkv + (size_t)3 * C * HW;
    float *s = o + (size_t)C * HW;
    const size_t rows = score_rows(HW);
    const float scale = (float)(1.0 / sqrt((double)d));

    group_norm(&a->norm, groups, eps, 0, x, C, NULL, 0, HW, hn);
    fill_bias(qkv, a->qkv_b, NULL, 3 * C, HW);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 3 * C, n, C, 1.0f, a->qkv_w, C, hn, n, 1.0f, qkv, n);

    for (int h = 0; h < heads; h++) {
        const float *q = qkv + (size_t)h * d * HW;
        const float *k = qkv + (size_t)(C + h * d) * HW;
        const float *v = qkv + (size_t)(2 * C + h * d) * HW;
        float *oh = o + (size_t)h * d * HW;
        for (size_t i0 = 0; i0 < HW; i0 += rows) {
            int m = (int)(HW - i0 < rows ? HW - i0 : rows);
            /* S (m x HW) = scale * q[:, i0 : i0+m]^T k */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, d, scale, q + i0, n, k, n, 0.0f, s, n);
            softmax_rows(s, (size_t)m, HW);
            /* o_h[:, i0 : i0+m] (d x m) = v (d x HW) . S^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, m, n, 1.0f, v, n, s, n, 0.0f, oh + i0, n);
        }
    }

    fill_residual(y, x, a->out.b, C, HW);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, n, C, 1.0f, a->out.w, C, o, n, 1.0f, y, n);
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                    */
/* ------------------------------------------------------------------------ */

void linear(const linear_w *l, const float *x, int N, float *y)
{
    for (int i = 0; i < N; i++)
        memcpy(y + (size_t)i * l->out, l->b, (size_t)l->out * sizeof *y);
    /* y (N x out) += x (N x in) . W^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, l->out, l->in, 1.0f, x, l->in, l->w, l->in, 1.0f, y,
                l->out);
}
