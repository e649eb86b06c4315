/* ops.c: convolution, group norm + SiLU, attention and linear layers on one
 * image (C x H x W, float32).
 *
 * A 3x3 convolution is
 *
 *     y[o, i, j] = sum_{ky, kx, c} W[o, ky, kx, c] x[c, i + ky - 1, j + kx - 1]
 *
 * computed as GEMMs in one of three ways, all reading x from a padded
 * buffer (ops.h):
 *
 *   Winograd F(2x2, 3x3) or F(4x4, 3x3) (layers of 16 channels or more in
 *     and out): (m+2)^2 GEMMs with 4 or 2.25 instead of 9 multiplies per
 *     output pixel and channel pair; the weights are transformed once, at
 *     load.  On CPUs with AVX-512 these GEMMs run on the file's own packed
 *     kernels, elsewhere on OpenBLAS.
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
 * The last two, and the 1x1 and stride-2 convolutions and attention, call
 * OpenBLAS's SGEMM.  DDPM_PROFILE=1 in the environment prints the time of
 * every layer kind and shape at exit.
 */
#include "ops.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

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
} block_sizes;

static const block_sizes normal_blocks = {512 * 1024, 128 * 1024, 512, 16, 256 * 1024, 2e6, 256, 256 * 1024, 256,
                                          128 * 128};
static const block_sizes tiny_blocks = {1024, 512, 16, 16, 512, 0.0, 16, 256, 1, 16};
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

#if defined(__GNUC__)
#define INLINE_HELPER __attribute__((always_inline))
#else
#define INLINE_HELPER
#endif

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* ------------------------------------------------------------------------ */
/* Profile (DDPM_PROFILE=1 in the environment)                               */
/* ------------------------------------------------------------------------ */

/* Wall time per layer kind and shape, printed to stderr at exit: where a
 * forward pass spends its time.  Off unless the variable is set; then each
 * public op reads the clock twice. */
typedef struct {
    const char *op;
    int cin, cout, H, W;
    long calls;
    double seconds, flops;
} profile_row;

static profile_row profile_rows[512];
static int profile_count;
static int profile_on = -1;
static int profile_depth;          /* ops called by ops count in their caller */

/* A debugging switch in the environment: set and not empty. */
static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0';
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int profile_by_time(const void *a, const void *b)
{
    double x = ((const profile_row *)a)->seconds, y = ((const profile_row *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void profile_print(void)
{
    double total = 0.0;
    for (int i = 0; i < profile_count; i++)
        total += profile_rows[i].seconds;
    qsort(profile_rows, (size_t)profile_count, sizeof *profile_rows, profile_by_time);
    fprintf(stderr, "%-16s %5s %5s %11s %7s %9s %6s %8s\n", "op", "cin", "cout", "HxW", "calls", "ms/call", "share",
            "GFLOP/s");
    for (int i = 0; i < profile_count; i++) {
        const profile_row *r = &profile_rows[i];
        char hw[32];
        snprintf(hw, sizeof hw, "%dx%d", r->H, r->W);
        fprintf(stderr, "%-16s %5d %5d %11s %7ld %9.3f %5.1f%% %8.1f\n", r->op, r->cin, r->cout, hw, r->calls,
                1e3 * r->seconds / r->calls, 100.0 * r->seconds / total, r->flops / r->seconds * 1e-9);
    }
}

static double profile_start(void)
{
    if (profile_on < 0) {
        profile_on = env_flag("DDPM_PROFILE");
        if (profile_on)
            atexit(profile_print);
    }
    if (!profile_on)
        return 0.0;
    profile_depth++;
    return wall_now();
}

/* flops: the direct method's count (2 per multiply-add), whatever the scheme. */
static void profile_add(const char *op, int cin, int cout, int H, int W, double dt, double flops);

static void profile_stop(double t0, const char *op, int cin, int cout, int H, int W, double flops)
{
    if (!profile_on || --profile_depth > 0)
        return;
    profile_add(op, cin, cout, H, W, wall_now() - t0, flops);
}

static void profile_add(const char *op, int cin, int cout, int H, int W, double dt, double flops)
{
    for (int i = 0; i < profile_count; i++) {
        profile_row *r = &profile_rows[i];
        if (r->op == op && r->cin == cin && r->cout == cout && r->H == H && r->W == W) {
            r->calls++;
            r->seconds += dt;
            r->flops += flops;
            return;
        }
    }
    if (profile_count < (int)(sizeof profile_rows / sizeof *profile_rows))
        profile_rows[profile_count++] = (profile_row){op, cin, cout, H, W, 1, dt, flops};
}

/* ------------------------------------------------------------------------ */
/* A team of threads                                                         */
/* ------------------------------------------------------------------------ */

/* parallel_for(threads, n, fn, ctx) runs fn(ctx, i, slot) for i = 0 .. n-1:
 * the caller (slot 0) and up to threads - 1 pooled workers (slots 1, 2, ..)
 * claim the tasks one at a time, and it returns as soon as every task is
 * done.  It never waits for a worker that has not taken part: on a busy
 * machine a worker may not get a core for milliseconds, and the caller then
 * does the tasks itself.  (An OpenMP team waits for every member at every
 * barrier; with other programs running that made two threads fifty times
 * slower than one.)  Which thread runs a task never changes its result.
 *
 * A job is published by bumping `gen`; a task is claimed by a compare-and-
 * swap on `claim` = gen << 32 | next task, so a worker that wakes late can
 * never claim a task of a job that is over.  The descriptors of two jobs
 * alternate: job g's can only be overwritten by job g + 2, which starts
 * after job g has finished.  Idle workers spin a little, then sleep. */

typedef void (*task_fn)(void *ctx, int task, int slot);

#define POOL_MAX_THREADS 64
#define POOL_SPIN 20000

typedef struct {
    _Atomic(task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int ntasks, team;
} pool_job;

static struct {
    pthread_mutex_t busy;               /* one job at a time in the process */
    pthread_mutex_t mu;                 /* sleeping workers                 */
    pthread_cond_t wake;
    int workers;                        /* started: slots 1 .. workers      */
    atomic_uint gen;
    pool_job jobs[2];
    atomic_uint_least64_t claim;
    atomic_int done;
    atomic_int sleepers;
} pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* The next task of job g, or -1 when it has none left (or is over). */
static int pool_claim(unsigned g, int n)
{
    uint_least64_t c = atomic_load(&pool.claim);
    while ((unsigned)(c >> 32) == g && (int)(uint32_t)c < n)
        if (atomic_compare_exchange_weak(&pool.claim, &c, c + 1))
            return (int)(uint32_t)c;
    return -1;
}

static void pool_work(unsigned g, const pool_job *j, int slot)
{
    task_fn fn = atomic_load(&j->fn);
    void *ctx = atomic_load(&j->ctx);
    int n = atomic_load(&j->ntasks), task;
    while ((task = pool_claim(g, n)) >= 0) {
        fn(ctx, task, slot);
        atomic_fetch_add(&pool.done, 1);
    }
}

/* Wait for a job other than `seen`: spin, then sleep.  (Sleeping: the
 * worker counts itself in `sleepers` before its last look at gen, the
 * publisher looks at `sleepers` after bumping gen, so one of them sees the
 * other and no wake-up is lost.) */
static unsigned pool_wait(unsigned seen)
{
    for (int i = 0; i < POOL_SPIN; i++) {
        unsigned g = atomic_load(&pool.gen);
        if (g != seen)
            return g;
    }
    pthread_mutex_lock(&pool.mu);
    atomic_fetch_add(&pool.sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&pool.gen)) == seen)
        pthread_cond_wait(&pool.wake, &pool.mu);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.mu);
    return g;
}

static void *pool_worker(void *arg)
{
    const int slot = (int)(intptr_t)arg;
    unsigned seen = atomic_load(&pool.gen);
    for (;;) {
        seen = pool_wait(seen);
        const pool_job *j = &pool.jobs[seen & 1];
        if (slot < atomic_load(&j->team))
            pool_work(seen, j, slot);
    }
    return NULL;
}

/* Start workers up to slot threads - 1 (as many as the system allows). */
static int pool_grow(int threads)
{
    while (pool.workers < threads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int ok = pthread_create(&t, &attr, pool_worker, (void *)(intptr_t)(pool.workers + 1)) == 0;
        pthread_attr_destroy(&attr);
        if (!ok)
            break;
        pool.workers++;
    }
    return pool.workers + 1;
}

static void parallel_for(int threads, int n, task_fn fn, void *ctx)
{
    if (threads > POOL_MAX_THREADS)
        threads = POOL_MAX_THREADS;
    if (threads > n)
        threads = n;
    if (threads <= 1) {
        for (int i = 0; i < n; i++)
            fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&pool.busy);
    int available = pool_grow(threads);
    if (threads > available)
        threads = available;
    unsigned g = atomic_load(&pool.gen) + 1;
    pool_job *j = &pool.jobs[g & 1];
    atomic_store(&j->fn, fn);
    atomic_store(&j->ctx, ctx);
    atomic_store(&j->ntasks, n);
    atomic_store(&j->team, threads);
    atomic_store(&pool.done, 0);
    atomic_store(&pool.claim, (uint_least64_t)g << 32);
    atomic_store(&pool.gen, g);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.mu);
    }
    pool_work(g, j, 0);
    /* tasks claimed by workers may still be running */
    while (atomic_load(&pool.done) < n)
        sched_yield();
    pthread_mutex_unlock(&pool.busy);
}

void ops_start_threads(int threads)
{
    if (threads > POOL_MAX_THREADS)
        threads = POOL_MAX_THREADS;
    pthread_mutex_lock(&pool.busy);
    pool_grow(threads);
    pthread_mutex_unlock(&pool.busy);
}

/* Team size for work of `size` elements: small work is not worth waking
 * anybody for. */
static int team_for(size_t size, int threads)
{
    return size > 65536 ? threads : 1;
}

/* parallel_for for a memory-bound op over `size` elements (a team only if
 * worth it), timed under the op's name for DDPM_PROFILE. */
static void elementwise_for(const char *op, int C, int H, int W, size_t size, int threads, int n, task_fn fn,
                            void *ctx)
{
    double t0 = profile_start();
    parallel_for(team_for(size, threads), n, fn, ctx);
    profile_stop(t0, op, C, C, H, W, 0.0);
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
static void gemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, int threads)
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
#define PANEL 16
#define BLOCK_N 32
#define NARROW_N 8

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

static int use_packed_kernel(void)
{
    static int on = -1;
    if (on < 0)
        on = cpu_has_kernel() && !env_flag("DDPM_NO_PACKED");
    return on;
}

/* Rows i0 .. i1 - 1 (multiples of PANEL) of C = U V, C having n columns
 * (V: all its panels).  Narrow blocks of 8 columns when a panel has few
 * columns in use and the rows come in pairs of panels. */
static void gemm_packed(int i0, int i1, int K, const float *U, const float *V, float *C, int n)
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

int winograd_packed(int cout)
{
    return use_packed_kernel() && cout % PANEL == 0;
}

void winograd_pack(float *U, int cout, int cin, float *tmp)
{
    const size_t plane = (size_t)cout * cin, planes = winograd_floats(cin, cout) / plane;
    for (size_t xi = 0; xi < planes; xi++) {
        float *u = U + (size_t)xi * plane;
        memcpy(tmp, u, plane * sizeof *u);
        for (int o = 0; o < cout; o++)
            for (int c = 0; c < cin; c++)
                u[(size_t)(o / PANEL) * PANEL * cin + (size_t)c * PANEL + o % PANEL] = tmp[(size_t)o * cin + c];
    }
}

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

static int wino_tile(int cin, int cout, int H, int W)
{
    return winograd_has_f4(cin, cout) && (size_t)H * W >= blocks->wino_f4_pixels ? 4 : 2;
}

size_t winograd_floats(int cin, int cout)
{
    return (size_t)(16 + (winograd_has_f4(cin, cout) ? 36 : 0)) * cin * cout;
}

/* The U of tile size m. */
static const float *wino_u(const conv2d_w *c, int m)
{
    return c->u + (m == 4 ? (size_t)16 * c->cin * c->cout : 0);
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

/* Layouts of a band of n tiles (ops.c's packed kernel or OpenBLAS):
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

size_t conv3x3_scratch_floats(int cin, int cout, int H, int W, int threads)
{
    if (conv3x3_uses_winograd(cin, cout)) {
        const int m = wino_tile(cin, cout, H, W);
        const size_t tw = (size_t)(W + m - 1) / m, rows = (size_t)wino_rows(cin, cout, W, H);
        /* V and M of a band, and per thread a row of transform temporaries;
         * or, bands in parallel, all of that per thread */
        const size_t band = wino_band_floats(m, cin, cout, rows * tw), tmp = wino_tmp_floats(m, tw);
        if (wino_bands_in_parallel((H + m - 1) / m, (int)rows, threads))
            return (size_t)threads * (band + tmp);
        return band + (size_t)threads * tmp;
    }
    if (use_shift(cin, W)) {
        size_t n = (size_t)(H - 1) * padded_stride(W) + W;
        return (size_t)threads * (size_t)cout * shift_strip(cout, n);
    }
    size_t K = (size_t)9 * cin;
    return K * (size_t)im2col_rows(K, H, W) * (size_t)W;
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

void winograd_weights(const float *w, int cout, int cin, float *U, float *tmp)
{
    winograd_u(w, cout, cin, 2, U, tmp);
    if (winograd_has_f4(cin, cout))
        winograd_u(w, cout, cin, 4, U + (size_t)16 * cout * cin, tmp);
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

/* Shared by the convolution schemes' tasks. */
typedef struct {
    const conv2d_w *c;
    const float *xp, *extra;
    float *y, *scratch;
    int H, W, accumulate;
    int m, tw;             /* Winograd: tile side, tiles across              */
    int ty0, nr;           /* Winograd: the band's tile rows                 */
    size_t per_thread;     /* Winograd: floats of V and M (then temporaries) */
    size_t n, S;           /* shifted: positions, positions a strip          */
} conv_args;

static float *wino_tmp(const conv_args *a, int slot)
{
    return a->scratch + a->per_thread + (size_t)slot * wino_tmp_floats(a->m, (size_t)a->tw);
}

/* The steps of a band (tile rows ty0 .. ty0 + nr - 1), each shared by the
 * team: input transform by input channel, the GEMMs, output transform by
 * output channel. */
static void wino_input_task(void *ctx, int ch, int slot)
{
    const conv_args *a = ctx;
    wino_input(a->xp, ch, a->c->cin, a->m, a->H, a->W, a->ty0, a->nr, a->scratch, winograd_packed(a->c->cout),
               wino_tmp(a, slot));
}

/* M_xi = U_xi V_xi, task xi. */
static void wino_gemm_task(void *ctx, int xi, int slot)
{
    const conv_args *a = ctx;
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
    const conv_args *a = ctx;
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
    const conv_args *a = ctx;
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
 * output channel. */
static void wino_gemm_output(conv_args *a, int threads)
{
    const int cout = a->c->cout, rows = wino_rows_per_task(cout), xis = (a->m + 2) * (a->m + 2);
    if (winograd_packed(cout) && (threads == 1 || cout / rows >= 2 * threads)) {
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
    conv_args b = *(const conv_args *)ctx;
    const int th = (b.H + b.m - 1) / b.m, rows = b.nr;
    b.scratch += (size_t)slot * (b.per_thread + wino_tmp_floats(b.m, (size_t)b.tw));
    b.ty0 = band * rows;
    b.nr = th - b.ty0 < rows ? th - b.ty0 : rows;
    for (int ch = 0; ch < b.c->cin; ch++)
        wino_input_task(&b, ch, 0);
    wino_gemm_output(&b, 1);
}

static void conv3x3_winograd(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra,
                             int accumulate, float *scratch, int threads)
{
    const int m = wino_tile(c->cin, c->cout, H, W), tw = (W + m - 1) / m, th = (H + m - 1) / m;
    const int rows = wino_rows(c->cin, c->cout, W, H), xis = (m + 2) * (m + 2);
    conv_args a = {.c = c, .xp = xp, .extra = extra, .y = y, .scratch = scratch, .H = H, .W = W,
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

/* ------------------------------------------------------------------------ */
/* Shifted GEMMs and im2col                                                  */
/* ------------------------------------------------------------------------ */

static void shifted_task(void *ctx, int s, int slot)
{
    const conv_args *a = ctx;
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
    conv_args a = {.c = c, .xp = xp, .extra = extra, .y = y, .scratch = scratch, .H = H, .W = W,
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

void conv3x3(const conv2d_w *c, const float *xp, int H, int W, float *y, const float *extra, int accumulate,
             float *scratch, int threads)
{
    double t0 = profile_start();
    const char *scheme;
    if (c->u) {
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
    double t0 = profile_start();
    for (int r0 = 0; r0 < Ho; r0 += R) {
        int rows = Ho - r0 < R ? Ho - r0 : R;
        size_t n = (size_t)rows * Wo;
        im2col_args a = {x, col, cin, H, W, r0, rows, pad_lt, circular};
        parallel_for(team_for((size_t)K * n, threads), K, down_im2col_task, &a);
        gemm(0, 0, cout, (int)n, K, 1.0f, c->w, K, col, (int)n, 1.0f, y + (size_t)r0 * Wo, Ho * Wo, threads);
    }
    profile_stop(t0, "conv down", cin, cout, H, W, 2.0 * K * cout * Ho * Wo);
}

/* ------------------------------------------------------------------------ */
/* 1x1 convolution                                                           */
/* ------------------------------------------------------------------------ */

void conv1x1_accumulate(const conv2d_w *c, int k0, int K, const float *x, size_t HW, float *y, int threads)
{
    /* y (cout x HW) += W[:, k0 : k0+K] (cout x K, row stride cin) . x (K x HW) */
    double t0 = profile_start();
    gemm(0, 0, c->cout, (int)HW, K, 1.0f, c->w + k0, c->cin, x, (int)HW, 1.0f, y, (int)HW, threads);
    profile_stop(t0, "conv1x1", K, c->cout, (int)HW, 1, 2.0 * K * c->cout * HW);
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

    attention_args aa = {C, d, nblocks, HW, rows, scale, qkv, o, scores};
    parallel_for(threads, heads * nblocks, attention_task, &aa);

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
