/* winograd.c: 3x3 stride-1 convolutions by Winograd's minimal filtering,
 * F(2x2, 3x3) or F(4x4, 3x3) (Lavin & Gray 2016), for the layers of 16
 * channels or more in and out.
 *
 * The weights are transformed once, at load (U, ops.h); per call the input
 * is transformed a band of tile rows at a time (V), multiplied by U in
 * (m+2)^2 GEMMs (M), and transformed back into the output: 4 or 2.25
 * instead of 9 multiplies per output pixel and channel pair.  On CPUs with
 * AVX-512 these GEMMs run on the project's own packed kernels (gemm.c),
 * elsewhere on OpenBLAS.  With the packed kernels the weights are also
 * kept as they are, after U, and small images use those instead (this file
 * decides which; conv.c computes them).
 */
#include "ops_internal.h"

#include <string.h>

#include <cblas.h>

#if defined(__GNUC__)
#define INLINE_HELPER __attribute__((always_inline))
#else
#define INLINE_HELPER
#endif

/* ------------------------------------------------------------------------ */
/* Sizes: tile, band, scratch                                                */
/* ------------------------------------------------------------------------ */

/* Winograd for layers of 16 channels or more in and out, in one of two
 * sizes: F(2x2, 3x3), 4 multiplies per output instead of 9 and 16 floats
 * of U per channel pair; F(4x4, 3x3), 2.25 multiplies and 36 floats, and
 * fewer transformed values per pixel, which wins on large images only (on
 * small ones its bigger tiles are mostly border, and it has fewer of them
 * to share out).  Layers small enough keep both U's (the F(4x4) one after
 * the F(2x2) one) and choose by image size; the widest layers keep F(2x2)
 * alone, whose U is read from memory at every call. */
#define WINO_F4_MAX_PAIRS (256 * 128)      /* cin cout */

int conv3x3_uses_winograd(int cin, int cout)
{
    return cin >= 16 && cout >= 16;
}

static int winograd_has_f4(int cin, int cout)
{
    return (size_t)cin * cout <= WINO_F4_MAX_PAIRS;
}

/* On the packed kernels, the layers also keep their weights as they are
 * (the "direct form", repacked into the kernel's panels) after the U's,
 * for small images, where Winograd's GEMMs have a handful of tiles as
 * columns and its transforms cost as much as they save:
 *
 *   direct (conv.c): the widest layers (cin cout >= 256 x 256) on images of
 *     64 pixels or fewer, as one GEMM with K = 9 cin.  U (4 MB and more,
 *     past the L2 cache) streams in from memory for little work; the
 *     direct form reads 9 floats per channel pair instead of 16.  (cifar10's
 *     U-Net at 32 x 32: its 4 x 4 layers ran at 60 GFLOP/s as Winograd, 95
 *     direct.)
 *   rows (conv.c): narrower layers on images of 16 x 16 or less (32 x 32
 *     for the narrowest), straight from the padded input, no transform.
 *     Measured per layer on the texture U-Net at 64 x 64 (ms, Winograd ->
 *     rows): 128 -> 128 at 16 x 16 0.31 -> 0.28, 256 -> 128 at 16 x 16
 *     0.84 -> 0.56, 64 -> 64 at 32 x 32 0.40 -> 0.28; but 192 -> 64 at 32 x
 *     32 0.58 -> 1.00, and cifar10's 256 -> 256 at 16 x 16 0.93 -> 1.12. */
#define WINO_DIRECT_MIN_PAIRS (256 * 256)       /* cin cout */
#define WINO_DIRECT_MAX_PIXELS 64
#define ROWS_MAX_PAIRS (256 * 128)
#define ROWS_MAX_PIXELS 256
#define ROWS_MAX_PAIRS_NARROW (128 * 64)
#define ROWS_MAX_PIXELS_NARROW 1024

static int winograd_has_direct(int cout)
{
    return winograd_packed(cout);
}

int conv3x3_uses_direct(int cin, int cout, int H, int W)
{
    return conv3x3_uses_winograd(cin, cout) && winograd_has_direct(cout) &&
           (size_t)cin * cout >= WINO_DIRECT_MIN_PAIRS && (size_t)H * W <= WINO_DIRECT_MAX_PIXELS;
}

int conv3x3_uses_rows(int cin, int cout, int H, int W)
{
    const size_t pairs = (size_t)cin * cout, pixels = (size_t)H * W;
    if (!conv3x3_uses_winograd(cin, cout) || !winograd_has_direct(cout) || conv3x3_uses_direct(cin, cout, H, W))
        return 0;
    return (pixels <= ROWS_MAX_PIXELS && pairs <= ROWS_MAX_PAIRS) ||
           (pixels <= ROWS_MAX_PIXELS_NARROW && pairs <= ROWS_MAX_PAIRS_NARROW);
}

/* Floats of the U's alone. */
static size_t winograd_u_floats(int cin, int cout)
{
    return (size_t)(16 + (winograd_has_f4(cin, cout) ? 36 : 0)) * cin * cout;
}

int wino_tile(int cin, int cout, int H, int W)
{
    return winograd_has_f4(cin, cout) && (size_t)H * W >= blocks->wino_f4_pixels ? 4 : 2;
}

size_t winograd_floats(int cin, int cout)
{
    return winograd_u_floats(cin, cout) + (winograd_has_direct(cout) ? (size_t)9 * cin * cout : 0);
}

const float *conv3x3_direct_weights(const conv2d_w *c)
{
    return c->u + winograd_u_floats(c->cin, c->cout);
}

/* The U of tile size m. */
static const float *wino_u(const conv2d_w *c, int m)
{
    return c->u + (m == 4 ? (size_t)16 * c->cin * c->cout : 0);
}

/* Tile rows per band of the Winograd scheme: V and M of a band should stay
 * in cache; but every band reads (and OpenBLAS packs) all of U again, so
 * when U is larger than the cache a band gets wino_min_tiles tiles at least. */
static int wino_rows(int cin, int cout, int W, int H)
{
    const int m = wino_tile(cin, cout, H, W), xis = (m + 2) * (m + 2);
    const int tw = (W + m - 1) / m, th = (H + m - 1) / m;
    size_t r = blocks->wino_budget / ((size_t)xis * (cin + cout) * tw);
    size_t least = (size_t)(blocks->wino_min_tiles + tw - 1) / tw;
    if (r < least && (size_t)xis * cin * cout > 2 * blocks->wino_budget)
        r = least;
    if (r > (size_t)th)
        r = (size_t)th;
    return r < 1 ? 1 : (int)r;
}

/* Layouts of a band of n tiles (gemm.c's packed kernel or OpenBLAS):
 *   V: packed:  [xi][n / BLOCK_N][cin][BLOCK_N] (panels of BLOCK_N tiles,
 *               the last one padded), each the B of one kernel call;
 *      else     [xi][cin][n];
 *   M: [xi][cout][n]. */
static size_t wino_v_stride(int cin, size_t n)          /* floats of one xi of V */
{
    return (size_t)cin * (use_packed_kernel() ? round_up(n, BLOCK_N) : n);
}

/* Per thread, the temporaries of the transforms of a tile row. */
static size_t wino_tmp_floats(int m, size_t tw)
{
    return (size_t)(m + 2) * (m + 2) * tw;
}

static size_t wino_band_floats(int m, int cin, int cout, size_t n)
{
    const int side = m + 2;
    return (size_t)side * side * (wino_v_stride(cin, n) + (size_t)cout * n);
}

/* Many bands (large images; two a thread at least): the team shares out
 * whole bands, one parallel_for per convolution.  Few bands (the deep, small layers): the
 * team shares each step of each band, three parallel_fors a band. */
static int wino_bands_in_parallel(int th, int rows, int threads)
{
    return threads > 1 && (th + rows - 1) / rows >= 2 * threads;
}

size_t winograd_scratch_floats(int cin, int cout, int H, int W, int threads)
{
    const int m = wino_tile(cin, cout, H, W);
    const size_t tw = (size_t)(W + m - 1) / m, rows = (size_t)wino_rows(cin, cout, W, H);
    /* V and M of a band, and per thread a row of transform temporaries;
     * or, bands in parallel, all of that per thread */
    const size_t band = wino_band_floats(m, cin, cout, rows * tw), tmp = wino_tmp_floats(m, tw);
    if (wino_bands_in_parallel((H + m - 1) / m, (int)rows, threads))
        return (size_t)threads * (band + tmp);
    return band + (size_t)threads * tmp;
}

/* ------------------------------------------------------------------------ */
/* Winograd F(m x m, 3 x 3), m = 2 or 4 (Lavin & Gray 2016)                  */
/* ------------------------------------------------------------------------ */

/* Each m x m block ("tile") of outputs comes from the (m+2) x (m+2) patch d
 * of padded input that covers it:
 *
 *     Y = A^T [ sum_c (G g_c G^T) . (B^T d_c B) ] A          (. elementwise)
 *
 * F(2x2, 3x3), interpolation points 0, 1, -1, infinity:
 *
 *     B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
 *           | 0  1  1  0 |        | 1/2  1/2  1/2|          | 0  1 -1 -1 |
 *           | 0 -1  1  0 |        | 1/2 -1/2  1/2|
 *           | 0  1  0 -1 |        | 0    0    1  |
 *
 * F(4x4, 3x3), points 0, 1, -1, 2, -2, infinity:
 *
 *     B^T = | 4  0 -5  0  1  0 |   G = |  1/4     0     0 |   A^T = | 1  1  1  1  1  0 |
 *           | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6 |         | 0  1 -1  2 -2  0 |
 *           | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6 |         | 0  1  1  4  4  0 |
 *           | 0 -2 -1  2  1  0 |       | 1/24  1/12   1/6 |         | 0  1 -1  8 -8  1 |
 *           | 0  2 -1 -2  1  0 |       | 1/24 -1/12   1/6 |
 *           | 0  4  0 -5  0  1 |       |    0     0     1 |
 *
 * Summing the (m+2)^2 elementwise products over the input channels is
 * (m+2)^2 GEMMs
 *     M_xi (cout x tiles) = U_xi (cout x cin) . V_xi (cin x tiles),
 * U = G g G^T precomputed at load, V = B^T d B computed per band of tile
 * rows; xi = (m+2) i + k for row i, column k of the transformed patch.
 * Both transforms are separable: a pass along the rows of the patch, then
 * one down its columns, each vectorized across the tiles of a row. */

static const double winograd_G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double winograd_G4[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                         {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                         {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};

/* U[xi][o][c] = (G g G^T)[xi] for tile size m from PyTorch's [o][c][3][3]
 * (in double, rounded once), one output channel at a time through `tmp`
 * ((m+2)^2 cin floats) so that U is written in contiguous rows. */
static void winograd_u(const float *w, int cout, int cin, int m, float *U, float *tmp)
{
    const int side = m + 2, xis = side * side;
    const double(*G)[3] = m == 4 ? winograd_G4 : winograd_G2;
    const size_t plane = (size_t)cout * cin;
    for (int o = 0; o < cout; o++) {
        for (int c = 0; c < cin; c++) {
            const float *g = w + ((size_t)o * cin + c) * 9;
            double t[6][3];
            for (int i = 0; i < side; i++)              /* t = G g */
                for (int j = 0; j < 3; j++)
                    t[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
            for (int i = 0; i < side; i++)              /* U = t G^T */
                for (int k = 0; k < side; k++)
                    tmp[(size_t)(side * i + k) * cin + c] =
                        (float)(t[i][0] * G[k][0] + t[i][1] * G[k][1] + t[i][2] * G[k][2]);
        }
        for (int xi = 0; xi < xis; xi++)
            memcpy(U + (size_t)xi * plane + (size_t)o * cin, tmp + (size_t)xi * cin, (size_t)cin * sizeof *U);
    }
}

/* The direct form: A[o][(c, t)] = w[o][c][t] for tap t = 3 ky + kx (K =
 * 9 cin columns in PyTorch's order, as conv.c's column matrix has its
 * rows), written straight into the kernel's panels (ops_internal.h). */
static void direct_weights(const float *w, int cout, int cin, float *A)
{
    const size_t K = (size_t)9 * cin;
    for (int o = 0; o < cout; o++)
        for (size_t k = 0; k < K; k++)
            A[(size_t)(o / PANEL) * PANEL * K + k * PANEL + o % PANEL] = w[(size_t)o * K + k];
}

void winograd_weights(const float *w, int cout, int cin, float *U, float *tmp)
{
    winograd_u(w, cout, cin, 2, U, tmp);
    if (winograd_has_f4(cin, cout))
        winograd_u(w, cout, cin, 4, U + (size_t)16 * cout * cin, tmp);
    if (winograd_has_direct(cout))
        direct_weights(w, cout, cin, U + winograd_u_floats(cin, cout));
}

/* Whether a layer's U is packed for gemm.c's kernel, and the packing: in
 * panels of PANEL output channels (ops.h). */
int winograd_packed(int cout)
{
    return use_packed_kernel() && cout % PANEL == 0;
}

void winograd_pack(float *U, int cout, int cin, float *tmp)
{
    const size_t plane = (size_t)cout * cin, planes = winograd_u_floats(cin, cout) / plane;
    for (size_t xi = 0; xi < planes; xi++)
        gemm_pack_a(U + xi * plane, cout, cin, tmp);
}

/* The 1-D transforms, o = B^T d (input) and a = A^T e (output), applied
 * to `n` vectors side by side: element j of vector i is di[j].  Inlined
 * into each version of their (VECTOR_CLONES) callers; the outputs never
 * overlap the inputs, and ivdep says so, so that the compiler vectorizes
 * across j without checking every pair of the 12 pointers at run time. */
INLINE_HELPER static inline void wino_bt2(const float *restrict d0, const float *restrict d1, const float *restrict d2,
                                   const float *restrict d3, float *restrict o0, float *restrict o1,
                                   float *restrict o2, float *restrict o3, int n)
{
#pragma GCC ivdep
    for (int j = 0; j < n; j++) {
        o0[j] = d0[j] - d2[j];
        o1[j] = d1[j] + d2[j];
        o2[j] = d2[j] - d1[j];
        o3[j] = d1[j] - d3[j];
    }
}

INLINE_HELPER static inline void wino_bt4(const float *restrict d0, const float *restrict d1, const float *restrict d2,
                                   const float *restrict d3, const float *restrict d4, const float *restrict d5,
                                   float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                                   float *restrict o4, float *restrict o5, int n)
{
#pragma GCC ivdep
    for (int j = 0; j < n; j++) {
        o0[j] = 4.0f * d0[j] - 5.0f * d2[j] + d4[j];
        o1[j] = -4.0f * (d1[j] + d2[j]) + d3[j] + d4[j];
        o2[j] = 4.0f * (d1[j] - d2[j]) - d3[j] + d4[j];
        o3[j] = 2.0f * (d3[j] - d1[j]) - d2[j] + d4[j];
        o4[j] = 2.0f * (d1[j] - d3[j]) - d2[j] + d4[j];
        o5[j] = 4.0f * d1[j] - 5.0f * d3[j] + d5[j];
    }
}

INLINE_HELPER static inline void wino_at2(const float *restrict e0, const float *restrict e1, const float *restrict e2,
                                   const float *restrict e3, float *restrict a0, float *restrict a1, int n)
{
#pragma GCC ivdep
    for (int j = 0; j < n; j++) {
        a0[j] = e0[j] + e1[j] + e2[j];
        a1[j] = e1[j] - e2[j] - e3[j];
    }
}

INLINE_HELPER static inline void wino_at4(const float *restrict e0, const float *restrict e1, const float *restrict e2,
                                   const float *restrict e3, const float *restrict e4, const float *restrict e5,
                                   float *restrict a0, float *restrict a1, float *restrict a2, float *restrict a3,
                                   int n)
{
#pragma GCC ivdep
    for (int j = 0; j < n; j++) {
        float p = e1[j] + e2[j], q = e1[j] - e2[j], s = e3[j] + e4[j], d = e3[j] - e4[j];
        a0[j] = e0[j] + p + s;
        a1[j] = q + 2.0f * d;
        a2[j] = p + 4.0f * s;
        a3[j] = q + 8.0f * d + e5[j];
    }
}

/* The row pass: B^T applied to the (m+2)-pixel windows of one padded row
 * that start every m pixels, o_k[tx] = (B^T row[m tx .. m tx + m + 1])_k. */
INLINE_HELPER static inline void wino_bt2_row(const float *restrict row, float *restrict o0, float *restrict o1,
                                       float *restrict o2, float *restrict o3, int n)
{
#pragma GCC ivdep
    for (int tx = 0; tx < n; tx++) {
        float d0 = row[2 * tx], d1 = row[2 * tx + 1], d2 = row[2 * tx + 2], d3 = row[2 * tx + 3];
        o0[tx] = d0 - d2;
        o1[tx] = d1 + d2;
        o2[tx] = d2 - d1;
        o3[tx] = d1 - d3;
    }
}

INLINE_HELPER static inline void wino_bt4_row(const float *restrict row, float *restrict o0, float *restrict o1,
                                       float *restrict o2, float *restrict o3, float *restrict o4,
                                       float *restrict o5, int n)
{
#pragma GCC ivdep
    for (int tx = 0; tx < n; tx++) {
        const float *d = row + 4 * tx;
        float d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3], d4 = d[4], d5 = d[5];
        o0[tx] = 4.0f * d0 - 5.0f * d2 + d4;
        o1[tx] = -4.0f * (d1 + d2) + d3 + d4;
        o2[tx] = 4.0f * (d1 - d2) - d3 + d4;
        o3[tx] = 2.0f * (d3 - d1) - d2 + d4;
        o4[tx] = 2.0f * (d1 - d3) - d2 + d4;
        o5[tx] = 4.0f * d1 - 5.0f * d3 + d5;
    }
}

/* Apply B^T to `n` vectors whose i-th elements are d[i ds + j] into o_k =
 * o + k os, or A^T likewise (the pointer bookkeeping of the two passes). */
INLINE_HELPER static inline void wino_bt(int m, const float *d, size_t ds, float *o, size_t os, int n)
{
    if (m == 2)
        wino_bt2(d, d + ds, d + 2 * ds, d + 3 * ds, o, o + os, o + 2 * os, o + 3 * os, n);
    else
        wino_bt4(d, d + ds, d + 2 * ds, d + 3 * ds, d + 4 * ds, d + 5 * ds, o, o + os, o + 2 * os, o + 3 * os,
                 o + 4 * os, o + 5 * os, n);
}

INLINE_HELPER static inline void wino_at(int m, const float *e, size_t es, float *a, size_t as, int n)
{
    if (m == 2)
        wino_at2(e, e + es, e + 2 * es, e + 3 * es, a, a + as, n);
    else
        wino_at4(e, e + es, e + 2 * es, e + 3 * es, e + 4 * es, e + 5 * es, a, a + as, a + 2 * as, a + 3 * as, n);
}

/* V[xi][c][t] = (B^T d B)[xi] for input channel c and the tiles t = r tw +
 * tx of tile rows ty0 .. ty0 + nr - 1, in the layout above (packed: the
 * last panel's unused columns set to zero); `tmp` holds wino_tmp_floats. */
VECTOR_CLONES static void wino_input(const float *xp, int ch, int cin, int m, int H, int W, int ty0, int nr,
                                     float *V, int packed, float *tmp)
{
    const int side = m + 2, Wp = padded_stride(W), tw = (W + m - 1) / m, n = nr * tw;
    const size_t P = padded_plane(H, W), xi_stride = wino_v_stride(cin, (size_t)n);
    const float *x = xp + (size_t)ch * P;
    for (int r = 0; r < nr; r++) {
        /* d B: each patch row i, along its columns, into tmp[(side i + k) tw + tx] */
        for (int i = 0; i < side; i++) {
            const float *row = x + (size_t)(m * (ty0 + r) + i) * Wp;
            float *t = tmp + (size_t)side * i * tw;
            if (m == 2)
                wino_bt2_row(row, t, t + tw, t + 2 * tw, t + 3 * tw, tw);
            else
                wino_bt4_row(row, t, t + tw, t + 2 * tw, t + 3 * tw, t + 4 * tw, t + 5 * tw, tw);
        }
        /* B^T (d B): down the patch's columns k, xi = side i + k, straight
         * into V, a run of tiles that share a panel at a time */
        for (int tx0 = 0; tx0 < tw;) {
            const int t = r * tw + tx0;
            int run = tw - tx0;
            size_t at = (size_t)ch * n + (size_t)t;
            if (packed) {
                if (run > BLOCK_N - t % BLOCK_N)
                    run = BLOCK_N - t % BLOCK_N;
                at = (size_t)(t / BLOCK_N) * cin * BLOCK_N + (size_t)ch * BLOCK_N + (size_t)(t % BLOCK_N);
            }
            for (int k = 0; k < side; k++)
                wino_bt(m, tmp + (size_t)k * tw + tx0, (size_t)side * tw, V + (size_t)k * xi_stride + at,
                        (size_t)side * xi_stride, run);
            tx0 += run;
        }
    }
    if (packed && n % BLOCK_N) {
        const size_t tail = (size_t)(n / BLOCK_N) * cin * BLOCK_N + (size_t)ch * BLOCK_N + (size_t)(n % BLOCK_N);
        for (int xi = 0; xi < side * side; xi++)
            memset(V + (size_t)xi * xi_stride + tail, 0, (size_t)(BLOCK_N - n % BLOCK_N) * sizeof *V);
    }
}

/* y (+)= A^T M A for output channel o and the tiles of tile rows ty0 ..
 * ty0 + nr - 1, pixels inside the image only; `tmp` holds wino_tmp_floats. */
VECTOR_CLONES static void wino_output(const float *M, const conv2d_w *c, int o, int m, const float *extra,
                                      int accumulate, int H, int W, int ty0, int nr, float *y, float *tmp)
{
    const int side = m + 2, tw = (W + m - 1) / m, n = nr * tw;
    const size_t xi_stride = (size_t)c->cout * n;
    const float *mo = M + (size_t)o * n;
    const float bias = c->b[o] + (extra ? extra[o] : 0.0f);
    float *a = tmp, *px = tmp + (size_t)side * m * tw;     /* A^T M, then m pixels of a row */
    for (int r = 0; r < nr; r++) {
        /* A^T M: down the columns k, rows i of results at a[(side i + k) tw + tx] */
        for (int k = 0; k < side; k++)
            wino_at(m, mo + (size_t)k * xi_stride + (size_t)r * tw, (size_t)side * xi_stride, a + (size_t)k * tw,
                    (size_t)side * tw, tw);
        /* (A^T M) A: along the rows, m pixels per tile, px[p tw + tx] */
        for (int i = 0; i < m; i++) {
            int yi = m * (ty0 + r) + i;
            if (yi >= H)
                break;
            wino_at(m, a + (size_t)side * i * tw, (size_t)tw, px, (size_t)tw, tw);
            float *yr = y + ((size_t)o * H + yi) * W;
            for (int p = 0; p < m; p++) {
                const float *v = px + (size_t)p * tw;
                int count = (W - p + m - 1) / m;          /* pixels m tx + p < W */
                if (accumulate)
                    for (int tx = 0; tx < count; tx++)
                        yr[m * tx + p] += v[tx];
                else
                    for (int tx = 0; tx < count; tx++)
                        yr[m * tx + p] = v[tx] + bias;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The steps of a convolution                                                */
/* ------------------------------------------------------------------------ */

/* Shared by the steps' tasks. */
typedef struct {
    const conv2d_w *c;
    const float *xp, *extra;
    float *y, *scratch;
    int H, W, accumulate;
    int m, tw;             /* Winograd: tile side, tiles across              */
    int ty0, nr;           /* Winograd: the band's tile rows                 */
    size_t per_thread;     /* Winograd: floats of V and M (then temporaries) */
} wino_args;

static float *wino_tmp(const wino_args *a, int slot)
{
    return a->scratch + a->per_thread + (size_t)slot * wino_tmp_floats(a->m, (size_t)a->tw);
}

/* The steps of a band (tile rows ty0 .. ty0 + nr - 1), each shared by the
 * team: input transform by input channel, the GEMMs, output transform by
 * output channel. */
static void wino_input_task(void *ctx, int ch, int slot)
{
    const wino_args *a = ctx;
    wino_input(a->xp, ch, a->c->cin, a->m, a->H, a->W, a->ty0, a->nr, a->scratch, winograd_packed(a->c->cout),
               wino_tmp(a, slot));
}

/* M_xi = U_xi V_xi, task xi. */
static void wino_gemm_task(void *ctx, int xi, int slot)
{
    const wino_args *a = ctx;
    const int cin = a->c->cin, cout = a->c->cout, n = a->nr * a->tw, xis = (a->m + 2) * (a->m + 2);
    const size_t v_stride = wino_v_stride(cin, (size_t)n);
    const float *V = a->scratch + (size_t)xi * v_stride, *U = wino_u(a->c, a->m) + (size_t)xi * cout * cin;
    float *M = a->scratch + xis * v_stride + (size_t)xi * cout * n;
    (void)slot;
    if (winograd_packed(cout)) {
        gemm_packed(0, cout, cin, U, V, M, n);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, n, cin, 1.0f, U, cin, V, n, 0.0f, M, n);
}

static void wino_output_task(void *ctx, int o, int slot)
{
    const wino_args *a = ctx;
    const int n = a->nr * a->tw, xis = (a->m + 2) * (a->m + 2);
    const float *M = a->scratch + xis * wino_v_stride(a->c->cin, (size_t)n);
    wino_output(M, a->c, o, a->m, a->extra, a->accumulate, a->H, a->W, a->ty0, a->nr, a->y, wino_tmp(a, slot));
}

/* With the packed kernel: the rows of M of a group of output channels
 * (PANEL, or two panels when there are enough for everyone, so that the
 * narrow kernel can run) for every xi, then their output transform, while
 * they are still in cache (one step instead of two, and one wait less). */
static int wino_rows_per_task(int cout)
{
    return cout >= 8 * PANEL ? 2 * PANEL : PANEL;
}

static void wino_gemm_output_task(void *ctx, int task, int slot)
{
    const wino_args *a = ctx;
    const int cin = a->c->cin, cout = a->c->cout, n = a->nr * a->tw, xis = (a->m + 2) * (a->m + 2);
    const int rows = wino_rows_per_task(cout), i0 = task * rows, i1 = i0 + rows < cout ? i0 + rows : cout;
    const size_t v_stride = wino_v_stride(cin, (size_t)n);
    for (int xi = 0; xi < xis; xi++)
        gemm_packed(i0, i1, cin, wino_u(a->c, a->m) + (size_t)xi * cout * cin, a->scratch + (size_t)xi * v_stride,
                    a->scratch + xis * v_stride + (size_t)xi * cout * n, n);
    for (int o = i0; o < i1; o++)
        wino_output_task(ctx, o, slot);
}

/* The steps after the input transform, shared by the team: fused when
 * there are output channels enough for everyone, else by xi, then by
 * output channel.  Fused, every group of rows reads all of the band's V
 * again: when V is far larger than the cache (a band that had to be wide
 * because U is large, as in the cifar10 U-Net's 384 -> 128 layer at 32 x
 * 32: 3.3 ms fused, 2.9 ms by xi), the GEMMs go by xi, which read it once. */
static void wino_gemm_output(wino_args *a, int threads)
{
    const int cout = a->c->cout, rows = wino_rows_per_task(cout), xis = (a->m + 2) * (a->m + 2);
    const size_t v_floats = (size_t)xis * wino_v_stride(a->c->cin, (size_t)a->nr * a->tw);
    if (winograd_packed(cout) && (threads == 1 || cout / rows >= 2 * threads) &&
        v_floats <= 4 * blocks->wino_budget) {
        parallel_for(threads, (cout + rows - 1) / rows, wino_gemm_output_task, a);
        return;
    }
    parallel_for(threads, xis, wino_gemm_task, a);
    parallel_for(team_for((size_t)cout * a->nr * a->tw * xis, threads), cout, wino_output_task, a);
}

/* A whole band, its steps one after the other, on one thread (the band's
 * V and M and temporaries in that thread's part of the scratch). */
static void wino_band_task(void *ctx, int band, int slot)
{
    wino_args b = *(const wino_args *)ctx;
    const int th = (b.H + b.m - 1) / b.m, rows = b.nr;
    b.scratch += (size_t)slot * (b.per_thread + wino_tmp_floats(b.m, (size_t)b.tw));
    b.ty0 = band * rows;
    b.nr = th - b.ty0 < rows ? th - b.ty0 : rows;
    for (int ch = 0; ch < b.c->cin; ch++)
        wino_input_task(&b, ch, 0);
    wino_gemm_output(&b, 1);
}

void conv3x3_winograd(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra, int accumulate,
                      float *scratch, int threads)
{
    const int m = wino_tile(c->cin, c->cout, H, W), tw = (W + m - 1) / m, th = (H + m - 1) / m;
    const int rows = wino_rows(c->cin, c->cout, W, H), xis = (m + 2) * (m + 2);
    wino_args a = {.c = c, .xp = xp, .extra = extra, .y = y, .scratch = scratch, .H = H, .W = W,
                   .accumulate = accumulate, .m = m, .tw = tw,
                   .per_thread = wino_band_floats(m, c->cin, c->cout, (size_t)rows * tw)};
    if (wino_bands_in_parallel(th, rows, threads)) {
        a.nr = rows;
        parallel_for(threads, (th + rows - 1) / rows, wino_band_task, &a);
        return;
    }
    for (a.ty0 = 0; a.ty0 < th; a.ty0 += rows) {
        a.nr = th - a.ty0 < rows ? th - a.ty0 : rows;
        parallel_for(team_for((size_t)c->cin * a.nr * tw * xis, threads), c->cin, wino_input_task, &a);
        wino_gemm_output(&a, threads);
    }
}
