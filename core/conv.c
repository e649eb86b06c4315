/* conv.c: the convolutions of the U-Net, and the padded planes that the
 * 3x3 ones read.
 *
 * A 3x3 convolution is
 *
 *     y[o, i, j] = sum_{ky, kx, c} W[o, ky, kx, c] x[c, i + ky - 1, j + kx - 1]
 *
 * computed in one of five ways, all reading x from a padded buffer
 * (ops.h):
 *
 *   Winograd F(2x2, 3x3) or F(4x4, 3x3) (layers of 16 channels or more in
 *     and out): (m+2)^2 GEMMs with 4 or 2.25 instead of 9 multiplies per
 *     output pixel and channel pair; the weights are transformed once, at
 *     load (winograd.c).  On CPUs with AVX-512 these GEMMs run on the
 *     project's own packed kernels (gemm.c), elsewhere on OpenBLAS.
 *
 *   direct (the widest Winograd layers, cin cout >= 256 x 256, on images
 *     of 64 pixels or fewer, with the packed kernels): the column matrix
 *     of the whole image, then one GEMM with K = 9 cin on weights kept for
 *     it at load.  There Winograd's GEMMs have a handful of columns each
 *     and its 16 floats of U per channel pair stream in from memory for
 *     little work; the direct GEMM reads 9.
 *
 *   rows (narrower Winograd layers on images of 16 x 16 or less, with the
 *     packed kernels): no GEMM and no transform, a kernel (gemm.c) that
 *     makes 16 output channels by 16 pixels of a row at a time from the
 *     padded input and the same weights as the direct scheme.
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
 *
 * The last two call OpenBLAS's SGEMM (gemm.c); the Winograd scheme is in
 * winograd.c.  The stride-2 convolutions (im2col) and the 1x1 convolutions
 * (at the end) are one GEMM each, on the packed kernels where the CPU has
 * them, else on OpenBLAS.
 */
#include "ops_internal.h"

#include <string.h>

#include <cblas.h>

/* ------------------------------------------------------------------------ */
/* Padded planes                                                             */
/* ------------------------------------------------------------------------ */

/* The interior rounded up to whole 4 x 4 Winograd tiles, plus the border. */
int padded_stride(int W)
{
    return (W + 3) / 4 * 4 + 2;
}

size_t padded_plane(int H, int W)
{
    return (size_t)((H + 3) / 4 * 4 + 2) * (size_t)padded_stride(W);
}

float *padded_interior(float *xp, int W)
{
    return xp + padded_stride(W) + 1;
}

/* Circular: the border repeats the opposite edge (rows first, then whole
 * columns, which also fills the corners); zero: the border is 0.  The slack
 * rows and columns past it (sizes not a multiple of 4) are always 0. */
typedef struct {
    float *xp;
    const float *x;
    int H, W, flag;       /* circular (pad_borders) or center (pad_copy) */
} pad_args;

static void pad_borders_task(void *ctx, int c, int slot)
{
    const pad_args *a = ctx;
    const int H = a->H, W = a->W, Wp = padded_stride(W), circular = a->flag;
    float *p = a->xp + (size_t)c * padded_plane(H, W);
    (void)slot;
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
    const int Hp = (int)(padded_plane(H, W) / (size_t)Wp);
    if (Wp > W + 2)
        for (int i = 0; i < H + 2; i++)
            memset(p + (size_t)i * Wp + W + 2, 0, (size_t)(Wp - W - 2) * sizeof *p);
    if (Hp > H + 2)
        memset(p + (size_t)(H + 2) * Wp, 0, (size_t)(Hp - H - 2) * Wp * sizeof *p);

}

void pad_borders(float *xp, int C, int H, int W, int circular, int threads)
{
    pad_args a = {xp, NULL, H, W, circular};
    elementwise_for("pad_borders", C, H, W, (size_t)C * padded_plane(H, W), threads, C, pad_borders_task, &a);
}

static void pad_copy_task(void *ctx, int c, int slot)
{
    const pad_args *a = ctx;
    const int H = a->H, W = a->W;
    float *dst = padded_interior(a->xp + (size_t)c * padded_plane(H, W), W);
    const float *src = a->x + (size_t)c * H * W;
    (void)slot;
    for (int i = 0; i < H; i++, dst += padded_stride(W), src += W) {
        if (a->flag)
            for (int j = 0; j < W; j++)
                dst[j] = 2.0f * src[j] - 1.0f;
        else
            memcpy(dst, src, (size_t)W * sizeof *dst);
    }
}

void pad_copy(const float *x, int C, int H, int W, int center, float *xp, int threads)
{
    pad_args a = {xp, x, H, W, center};
    elementwise_for("pad_copy", C, H, W, (size_t)C * padded_plane(H, W), threads, C, pad_copy_task, &a);
}

/* Nearest x2: output pixel (i, j) of 2H x 2W is input pixel (i/2, j/2). */
static void pad_upsample2_task(void *ctx, int c, int slot)
{
    const pad_args *a = ctx;
    const int H = a->H, W = a->W, H2 = 2 * H, W2 = 2 * W;
    float *dst = padded_interior(a->xp + (size_t)c * padded_plane(H2, W2), W2);
    (void)slot;
    for (int i = 0; i < H2; i++, dst += padded_stride(W2)) {
        const float *src = a->x + ((size_t)c * H + i / 2) * W;
        for (int j = 0; j < W2; j++)
            dst[j] = src[j / 2];
    }
}

void pad_upsample2(const float *x, int C, int H, int W, float *xp, int threads)
{
    pad_args a = {xp, x, H, W, 0};
    elementwise_for("pad_upsample2", C, H, W, (size_t)C * padded_plane(2 * H, 2 * W), threads, C, pad_upsample2_task,
                    &a);
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

/* Shifted GEMMs need a wide image (the dropped border positions) and
 * enough input channels (each tap's GEMM has K = cin; with 3 channels, as
 * in conv_in, one im2col GEMM with K = 27 is far better). */
static int use_shift(int cin, int W)
{
    return W >= blocks->shift_min_width && cin >= 8;
}

/* Positions of the flat padded grid per strip of the shifted scheme: the
 * strip's output should stay in cache across the nine taps.  (A function
 * of the shape only, like every cut here.) */
static size_t shift_strip(int cout, size_t n)
{
    size_t s = round_up(blocks->shift_budget / (size_t)cout, 16);
    if (s < blocks->shift_min_strip)
        s = blocks->shift_min_strip;
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

/* The direct scheme's column matrix, in the kernel's panels of BLOCK_N
 * pixels, then cout x H W sums (for accumulate) and cout biases. */
static size_t direct_scratch_floats(int cin, int cout, int H, int W)
{
    return (size_t)9 * cin * round_up((size_t)H * W, BLOCK_N) + (size_t)cout * H * W + (size_t)cout;
}

size_t conv3x3_scratch_floats(int cin, int cout, int H, int W, int threads)
{
    if (conv3x3_uses_direct(cin, cout, H, W))
        return direct_scratch_floats(cin, cout, H, W);
    if (conv3x3_uses_winograd(cin, cout))
        return winograd_scratch_floats(cin, cout, H, W, threads);
    if (use_shift(cin, W)) {
        size_t n = (size_t)(H - 1) * padded_stride(W) + W;
        return (size_t)threads * (size_t)cout * shift_strip(cout, n);
    }
    size_t K = (size_t)9 * cin;
    return K * (size_t)im2col_rows(K, H, W) * (size_t)W;
}

/* ------------------------------------------------------------------------ */
/* Shifted GEMMs and im2col                                                  */
/* ------------------------------------------------------------------------ */

/* Shared by the shifted scheme's tasks. */
typedef struct {
    const conv2d_w *c;
    const float *xp, *extra;
    float *y, *scratch;
    int H, W, accumulate;
    size_t n, S;           /* positions, positions a strip */
} shifted_args;

static void shifted_task(void *ctx, int s, int slot)
{
    const shifted_args *a = ctx;
    const conv2d_w *c = a->c;
    const int cin = c->cin, cout = c->cout, H = a->H, W = a->W, Wp = padded_stride(W), accumulate = a->accumulate;
    const size_t P = padded_plane(H, W), n = a->n, S = a->S;
    const float *xp = a->xp, *extra = a->extra;
    float *y = a->y;
    float *yp = a->scratch + (size_t)slot * cout * S;
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

static void conv3x3_shifted(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra,
                            int accumulate, float *scratch, int threads)
{
    const size_t n = (size_t)(H - 1) * padded_stride(W) + W;    /* last interior position + 1 */
    const size_t S = shift_strip(c->cout, n);
    shifted_args a = {.c = c, .xp = xp, .extra = extra, .y = y, .scratch = scratch, .H = H, .W = W,
                      .accumulate = accumulate, .n = n, .S = S};
    parallel_for(threads, (int)((n + S - 1) / S), shifted_task, &a);
}

/* A strip of the column matrix: rows r0 .. r0 + rows - 1 of the output. */
typedef struct {
    const float *x;
    float *col;
    int cin, H, W, r0, rows;
    int pad_lt, circular;          /* Downsample2D */
} im2col_args;

/* col[(t, c), (i - r0) W + j] = xp[c, i + ky, j + kx], for row k = (t, c). */
static void im2col_task(void *ctx, int k, int slot)
{
    const im2col_args *a = ctx;
    const int t = k / a->cin, ch = k % a->cin, ky = t / 3, kx = t % 3, W = a->W, Wp = padded_stride(W);
    const float *src = a->x + (size_t)ch * padded_plane(a->H, W) + (size_t)(a->r0 + ky) * Wp + kx;
    float *dst = a->col + (size_t)k * a->rows * W;
    (void)slot;
    for (int i = 0; i < a->rows; i++)
        memcpy(dst + (size_t)i * W, src + (size_t)i * Wp, (size_t)W * sizeof *dst);
}

static void conv3x3_im2col(const conv2d_w *c, const float *xp, int H, int W, float *y, float *col, int threads)
{
    const int K = 9 * c->cin, R = im2col_rows((size_t)K, H, W);
    for (int r0 = 0; r0 < H; r0 += R) {
        int rows = H - r0 < R ? H - r0 : R;
        size_t n = (size_t)rows * W;
        im2col_args a = {xp, col, c->cin, H, W, r0, rows, 0, 0};
        parallel_for(team_for((size_t)K * n, threads), K, im2col_task, &a);
        gemm(0, 0, c->cout, (int)n, K, 1.0f, c->w, K, col, (int)n, 1.0f, y + (size_t)r0 * W, H * W, threads);
    }
}

/* ------------------------------------------------------------------------ */
/* Direct GEMM on the packed kernel (small images of the widest layers)       */
/* ------------------------------------------------------------------------ */

/* Shared by the direct scheme's tasks. */
typedef struct {
    const conv2d_w *c;
    const float *xp, *extra;
    float *y, *col, *sums, *bias;
    int H, W, accumulate;
} direct_args;

/* Rows (ch, t) of the column matrix for input channel ch, t = 3 ky + kx:
 * col[(ch, t), i W + j] = xp[ch, i + ky, j + kx], into the kernel's panels
 * of BLOCK_N pixels, the last one's unused columns zero. */
static void direct_im2col_task(void *ctx, int ch, int slot)
{
    const direct_args *a = ctx;
    const int cin = a->c->cin, H = a->H, W = a->W, Wp = padded_stride(W);
    const size_t K = (size_t)9 * cin, panels = round_up((size_t)H * W, BLOCK_N) / BLOCK_N;
    const float *x = a->xp + (size_t)ch * padded_plane(H, W);
    (void)slot;
    for (int t = 0; t < 9; t++) {
        const float *src = x + (size_t)(t / 3) * Wp + t % 3;
        float *dst = a->col + ((size_t)ch * 9 + (size_t)t) * BLOCK_N;         /* row k = (ch, t) */
        size_t p = 0;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++, p++)
                dst[p / BLOCK_N * K * BLOCK_N + p % BLOCK_N] = src[(size_t)i * Wp + j];
        for (; p < panels * BLOCK_N; p++)
            dst[p / BLOCK_N * K * BLOCK_N + p % BLOCK_N] = 0.0f;
    }
}

/* Output channels o0 .. o0 + 63 (or fewer): y = A col + bias + extra, or
 * y += A col through `sums`. */
#define DIRECT_ROWS (4 * PANEL)

static void direct_gemm_task(void *ctx, int task, int slot)
{
    const direct_args *a = ctx;
    const conv2d_w *c = a->c;
    const int n = a->H * a->W, o0 = task * DIRECT_ROWS, o1 = o0 + DIRECT_ROWS < c->cout ? o0 + DIRECT_ROWS : c->cout;
    const float *A = conv3x3_direct_weights(c);
    (void)slot;
    if (!a->accumulate) {
        for (int o = o0; o < o1; o++)
            a->bias[o] = c->b[o] + (a->extra ? a->extra[o] : 0.0f);
        gemm_packed_bias(o0, o1, 9 * c->cin, A, a->col, a->bias, a->y, (size_t)n, n);
        return;
    }
    gemm_packed(o0, o1, 9 * c->cin, A, a->col, a->sums, n);
    for (size_t i = (size_t)o0 * n; i < (size_t)o1 * n; i++)
        a->y[i] += a->sums[i];
}

static void conv3x3_direct(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra,
                           int accumulate, float *scratch, int threads)
{
    direct_args a = {.c = c, .xp = xp, .extra = extra, .y = y, .col = scratch, .H = H, .W = W,
                     .accumulate = accumulate};
    a.sums = scratch + (size_t)9 * c->cin * round_up((size_t)H * W, BLOCK_N);
    a.bias = a.sums + (size_t)c->cout * H * W;
    parallel_for(team_for((size_t)9 * c->cin * H * W, threads), c->cin, direct_im2col_task, &a);
    parallel_for(threads, (c->cout + DIRECT_ROWS - 1) / DIRECT_ROWS, direct_gemm_task, &a);
}

/* ------------------------------------------------------------------------ */
/* Direct rows on the packed kernel                                          */
/* ------------------------------------------------------------------------ */

/* Shared by the row scheme's tasks: a task is a panel of 16 output
 * channels by a group of ROW_GROUP image rows. */
#define ROW_GROUP 4

typedef struct {
    const conv2d_w *c;
    const float *xp, *extra;
    float *y;
    int H, W, accumulate, row_groups;
} rows_args;

static void rows_task(void *ctx, int task, int slot)
{
    const rows_args *a = ctx;
    const conv2d_w *c = a->c;
    const int H = a->H, W = a->W, Wp = padded_stride(W), o0 = task / a->row_groups * PANEL;
    const int i0 = task % a->row_groups * ROW_GROUP, i1 = i0 + ROW_GROUP < H ? i0 + ROW_GROUP : H;
    const float *A = conv3x3_direct_weights(c) + (size_t)o0 * 9 * c->cin;
    float bias[PANEL];
    (void)slot;
    for (int q = 0; q < PANEL; q++)
        bias[q] = c->b[o0 + q] + (a->extra ? a->extra[o0 + q] : 0.0f);
    for (int i = i0; i < i1; i++)
        for (int j = 0; j < W; j += 16)
            conv_row(c->cin, A, a->xp + (size_t)i * Wp + j, padded_plane(H, W), Wp, a->accumulate ? NULL : bias,
                     a->y + (size_t)o0 * H * W + (size_t)i * W + j, (size_t)H * W, W - j < 16 ? W - j : 16);
}

static void conv3x3_rows(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra,
                         int accumulate, int threads)
{
    rows_args a = {.c = c, .xp = xp, .extra = extra, .y = y, .H = H, .W = W, .accumulate = accumulate,
                   .row_groups = (H + ROW_GROUP - 1) / ROW_GROUP};
    parallel_for(threads, c->cout / PANEL * a.row_groups, rows_task, &a);
}

void conv3x3(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra, int accumulate,
             float *scratch, int threads)
{
    double t0 = profile_start();
    const char *scheme;
    if (c->u && conv3x3_uses_rows(c->cin, c->cout, H, W)) {
        scheme = "conv3x3 rows";
        conv3x3_rows(c, xp, H, W, y, extra, accumulate, threads);
    } else if (c->u && conv3x3_uses_direct(c->cin, c->cout, H, W)) {
        scheme = "conv3x3 direct";
        conv3x3_direct(c, xp, H, W, y, extra, accumulate, scratch, threads);
    } else if (c->u) {
        scheme = wino_tile(c->cin, c->cout, H, W) == 4 ? "conv3x3 wino F4" : "conv3x3 wino F2";
        conv3x3_winograd(c, xp, H, W, y, extra, accumulate, scratch, threads);
    } else if (use_shift(c->cin, W)) {
        scheme = "conv3x3 shifted";
        conv3x3_shifted(c, xp, H, W, y, extra, accumulate, scratch, threads);
    } else {
        scheme = "conv3x3 im2col";
        if (!accumulate)
            fill_bias(y, c->b, extra, c->cout, (size_t)H * W, threads);
        conv3x3_im2col(c, xp, H, W, y, scratch, threads);
    }
    profile_stop(t0, scheme, c->cin, c->cout, H, W, 18.0 * c->cin * c->cout * H * W);
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

/* col[(t, c), (i - r0) Wo + j] = x[c, 2i + ky - pad, 2j + kx - pad]; only
 * the first and last output column can read outside the image. */
static void down_im2col_task(void *ctx, int k, int slot)
{
    const im2col_args *a = ctx;
    const int t = k / a->cin, ch = k % a->cin, ky = t / 3, kx = t % 3;
    const int H = a->H, W = a->W, Wo = W / 2, pad = a->pad_lt;
    const float *xc = a->x + (size_t)ch * H * W;
    float *dst = a->col + (size_t)k * a->rows * Wo;
    (void)slot;
    for (int i = a->r0; i < a->r0 + a->rows; i++, dst += Wo) {
        int sy = wrap(2 * i + ky - pad, H, a->circular);
        if (sy < 0) {
            memset(dst, 0, (size_t)Wo * sizeof *dst);
            continue;
        }
        const float *src = xc + (size_t)sy * W;
        for (int j = 1; j < Wo - 1; j++)
            dst[j] = src[2 * j + kx - pad];
        for (int j = 0; j < Wo; j += Wo - 1 > 0 ? Wo - 1 : 1) {
            int sx = wrap(2 * j + kx - pad, W, a->circular);
            dst[j] = sx < 0 ? 0.0f : src[sx];
        }
    }
}

/* The packed kernel's version: col[(t, c), p] for the pixels p = (i - r0)
 * Wo + j of a strip, in panels of BLOCK_N pixels (the last one's unused
 * columns zero), rows (t, c) for input channel c, t = 3 ky + kx. */
static void down_pack_task(void *ctx, int ch, int slot)
{
    const im2col_args *a = ctx;
    const int H = a->H, W = a->W, Wo = W / 2, pad = a->pad_lt, n = a->rows * Wo;
    const size_t K = (size_t)9 * a->cin, panels = round_up((size_t)n, BLOCK_N) / BLOCK_N;
    const float *xc = a->x + (size_t)ch * H * W;
    (void)slot;
    for (int t = 0; t < 9; t++) {
        const int ky = t / 3, kx = t % 3;
        float *dst = a->col + ((size_t)t * a->cin + (size_t)ch) * BLOCK_N;        /* row k = (t, ch) */
        size_t p = 0;
        for (int i = a->r0; i < a->r0 + a->rows; i++, p += Wo) {
            const int sy = wrap(2 * i + ky - pad, H, a->circular);
            const float *src = xc + (size_t)(sy < 0 ? 0 : sy) * W;
            for (int j = 0; j < Wo; j++) {
                /* only the first and last output column can read outside the image */
                int sx = 2 * j + kx - pad;
                if (j == 0 || j == Wo - 1)
                    sx = wrap(sx, W, a->circular);
                const size_t q = p + (size_t)j;
                dst[q / BLOCK_N * K * BLOCK_N + q % BLOCK_N] = sy < 0 || sx < 0 ? 0.0f : src[sx];
            }
        }
        for (; p < panels * BLOCK_N; p++)
            dst[p / BLOCK_N * K * BLOCK_N + p % BLOCK_N] = 0.0f;
    }
}

int conv_down_packed(int cout)
{
    return use_packed_kernel() && cout % PANEL == 0;
}

void conv_down_pack(float *w, int cout, int cin, float *tmp)
{
    gemm_pack_a(w, cout, 9 * cin, tmp);
}

size_t conv_down_scratch_floats(int cin, int H, int W)
{
    int Ho = H / 2, Wo = W / 2;
    size_t K = (size_t)9 * cin;
    return K * round_up((size_t)im2col_rows(K, Ho, Wo) * (size_t)Wo, BLOCK_N);
}

/* A strip's GEMM on the packed kernel, shared as blocks of DOWN_COLUMNS
 * pixels by a group of output channels: y = W col + bias. */
#define DOWN_COLUMNS (4 * BLOCK_N)
#define DOWN_ROWS (4 * PANEL)

typedef struct {
    const conv2d_w *c;
    const float *col;
    float *y;
    size_t ldc;
    int n, row_groups;
} down_gemm_args;

static void down_gemm_task(void *ctx, int task, int slot)
{
    const down_gemm_args *a = ctx;
    const int cout = a->c->cout, K = 9 * a->c->cin;
    const int i0 = task % a->row_groups * DOWN_ROWS, i1 = i0 + DOWN_ROWS < cout ? i0 + DOWN_ROWS : cout;
    const int j0 = task / a->row_groups * DOWN_COLUMNS, w = a->n - j0 < DOWN_COLUMNS ? a->n - j0 : DOWN_COLUMNS;
    (void)slot;
    gemm_packed_bias(i0, i1, K, a->c->w, a->col + (size_t)j0 * K, a->c->b, a->y + j0, a->ldc, w);
}

/* y = conv(x) + bias, Downsample2D's stride-2 convolution, one strip of
 * output rows at a time: the column matrix, then one GEMM. */
void conv_down(const conv2d_w *c, const float *x, int H, int W, int pad_lt, int circular, float *y, float *col,
               int threads)
{
    const int cin = c->cin, cout = c->cout, K = 9 * cin;
    const int Ho = H / 2, Wo = W / 2;          /* (H + pad_lt + 1 - 3) / 2 + 1 for even H */
    const int R = im2col_rows((size_t)K, Ho, Wo), packed = conv_down_packed(cout);
    double t0 = profile_start();
    if (!packed)
        fill_bias(y, c->b, NULL, cout, (size_t)Ho * Wo, threads);
    for (int r0 = 0; r0 < Ho; r0 += R) {
        int rows = Ho - r0 < R ? Ho - r0 : R;
        size_t n = (size_t)rows * Wo;
        im2col_args a = {x, col, cin, H, W, r0, rows, pad_lt, circular};
        if (packed) {
            parallel_for(team_for((size_t)K * n, threads), cin, down_pack_task, &a);
            down_gemm_args g = {c, col, y + (size_t)r0 * Wo, (size_t)Ho * Wo, (int)n,
                                (cout + DOWN_ROWS - 1) / DOWN_ROWS};
            parallel_for(threads, g.row_groups * (int)((n + DOWN_COLUMNS - 1) / DOWN_COLUMNS), down_gemm_task, &g);
            continue;
        }
        parallel_for(team_for((size_t)K * n, threads), K, down_im2col_task, &a);
        gemm(0, 0, cout, (int)n, K, 1.0f, c->w, K, col, (int)n, 1.0f, y + (size_t)r0 * Wo, Ho * Wo, threads);
    }
    profile_stop(t0, "conv down", cin, cout, H, W, 2.0 * K * cout * Ho * Wo);
}

/* ------------------------------------------------------------------------ */
/* 1x1 convolution                                                           */
/* ------------------------------------------------------------------------ */

/* A 1x1 convolution of [xa ; xb] is one GEMM,
 *
 *     y (cout x HW) = W (cout x cin) . [xa ; xb] (cin x HW) + bias + extra,
 *
 * on OpenBLAS (y filled with the bias first, then one GEMM per part of the
 * concat, each adding onto y), or, when the weights were packed at load
 * (conv1x1_packed), on the packed kernels (gemm.c) in one pass that adds
 * the bias as it stores y: y is written once and never read, which is
 * what counts on large images, where so few multiplies per pixel leave
 * this layer waiting on memory.  The kernels' B is x itself, written per
 * call into panels of BLOCK_N pixels, [HW / 32][cin][32]: rows 0 .. Ca - 1
 * from xa, the other Cb = cin - Ca from xb.
 *
 * The team shares y as blocks of a strip of pixels by a group of output
 * channels.  A task packs its strip's cin x S inputs into its own part of
 * the scratch and multiplies its rows of W by them: nothing packed by one
 * core is read by another, and one parallel_for does it all.  Strips are
 * as wide as keeps them in cache (S cin about conv1x1_budget floats) but
 * narrow enough for two a thread; when that leaves too few (small images),
 * the output channels are split into groups too, whose tasks each pack the
 * same strip (a copy of cin S floats against 2 cin S rows flops).
 *
 * Each element of y is the same FMA chain over the cin inputs whatever the
 * cut (gemm.c): the result depends neither on the cut nor on the team. */
int conv1x1_packed(int cout)
{
    return use_packed_kernel() && cout % PANEL == 0;
}

void conv1x1_pack(float *w, int cout, int cin, float *tmp)
{
    gemm_pack_a(w, cout, cin, tmp);
}

/* The cut for a team of `threads`: strips of S pixels (a multiple of
 * BLOCK_N) and groups of `rows` output channels (a multiple of PANEL, of
 * two panels when cout allows, for the narrow kernel), aiming at two tasks
 * a thread. */
typedef struct {
    size_t S;
    int strips, rows, groups;
} conv1x1_cut;

static conv1x1_cut conv1x1_plan(int cin, int cout, size_t HW, int threads)
{
    conv1x1_cut c;
    const size_t want = 2 * (size_t)threads;
    const size_t cached = blocks->conv1x1_budget / (size_t)cin / BLOCK_N * BLOCK_N;
    const size_t share = round_up((HW + want - 1) / want, BLOCK_N);        /* HW / want, whole panels */
    c.S = cached < share ? cached : share;
    if (c.S < BLOCK_N)
        c.S = BLOCK_N;
    c.strips = (int)((HW + c.S - 1) / c.S);
    const int unit = cout % (2 * PANEL) == 0 ? 2 * PANEL : PANEL;
    const int groups = (int)((want + (size_t)c.strips - 1) / (size_t)c.strips);
    c.rows = (int)round_up((size_t)(cout + groups - 1) / (size_t)groups, (size_t)unit);
    c.groups = (cout + c.rows - 1) / c.rows;
    return c;
}

/* bias + extra (cout floats), then a strip of cin x S per thread, for
 * every team up to `threads` (a forward's team may be smaller than the
 * one its plan was made for). */
size_t conv1x1_scratch_floats(int cin, int cout, size_t HW, int threads)
{
    size_t most = 0;
    if (!conv1x1_packed(cout))
        return 0;
    for (int t = 1; t <= threads; t++) {
        size_t need = (size_t)t * conv1x1_plan(cin, cout, HW, t).S;
        most = need > most ? need : most;
    }
    return round_up((size_t)cout, 16) + (size_t)cin * most;
}

/* Shared by the tasks of the packed 1x1 convolution. */
typedef struct {
    const conv2d_w *c;
    const float *xa, *xb;
    int Ca;
    size_t HW;
    float *y;
    const float *bias;         /* bias + extra  */
    float *strips;             /* a strip a slot */
    conv1x1_cut cut;
} conv1x1_args;

/* Pixels j0 .. j0 + n - 1 of output channels i0 .. i1 - 1, the strip's B in
 * this thread's part of the scratch. */
static void conv1x1_task(void *ctx, int task, int slot)
{
    const conv1x1_args *a = ctx;
    const conv1x1_cut *cut = &a->cut;
    const int cin = a->c->cin, cout = a->c->cout, i0 = task % cut->groups * cut->rows;
    const int i1 = i0 + cut->rows < cout ? i0 + cut->rows : cout;
    const size_t j0 = (size_t)(task / cut->groups) * cut->S, n = a->HW - j0 < cut->S ? a->HW - j0 : cut->S;
    float *B = a->strips + (size_t)slot * cin * cut->S;
    gemm_pack_b(a->xa + j0, a->HW, 0, a->Ca, cin, (int)n, B);
    if (a->Ca < cin)
        gemm_pack_b(a->xb + j0, a->HW, a->Ca, cin, cin, (int)n, B);
    gemm_packed_bias(i0, i1, cin, a->c->w, B, a->bias, a->y + j0, a->HW, (int)n);
}

void conv1x1(const conv2d_w *c, const float *xa, int Ca, const float *xb, int Cb, size_t HW, float *y,
             const float *extra, float *scratch, int threads)
{
    double t0 = profile_start();
    if (conv1x1_packed(c->cout)) {
        float *bias = scratch;
        for (int o = 0; o < c->cout; o++)
            bias[o] = c->b[o] + (extra ? extra[o] : 0.0f);
        conv1x1_args a = {.c = c, .xa = xa, .xb = xb, .Ca = Ca, .HW = HW, .y = y, .bias = bias,
                          .strips = scratch + round_up((size_t)c->cout, 16),
                          .cut = conv1x1_plan(c->cin, c->cout, HW, threads)};
        parallel_for(threads, a.cut.strips * a.cut.groups, conv1x1_task, &a);
    } else {
        /* W[:, k0 : k0 + K] (the inputs of one part) is W + k0 with row stride cin */
        fill_bias(y, c->b, extra, c->cout, HW, threads);
        gemm(0, 0, c->cout, (int)HW, Ca, 1.0f, c->w, c->cin, xa, (int)HW, 1.0f, y, (int)HW, threads);
        if (Cb)
            gemm(0, 0, c->cout, (int)HW, Cb, 1.0f, c->w + Ca, c->cin, xb, (int)HW, 1.0f, y, (int)HW, threads);
    }
    profile_stop(t0, "conv1x1", c->cin, c->cout, (int)HW, 1, 2.0 * c->cin * c->cout * HW);
}
