/* test_noise.c: the counter-based noise.
 *   - Philox-4x32-10 against Random123's published known answers;
 *   - ddpm_noise follows the documented mapping (noise.c's header);
 *   - the same bits for 1 and 2 threads and for whole vs tiled fills;
 *   - a million draws have the moments of N(0, 1), and neighbouring pixels,
 *     channels, streams and seeds are uncorrelated, within a few standard
 *     errors (each bound below is 5 standard errors of its statistic). */
#include "ddpm.h"
#include "sampler_internal.h"
#include "check.h"

#include <stdlib.h>

/* Random123 kat_vectors, philox4x32_10 (counter, key -> output). */
static void test_known_answers(void)
{
    struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
         {0xffffffffu, 0xffffffffu},
         {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
         {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        ddpm_philox4x32_10(kat[i].ctr, kat[i].key, out);
        CHECK(memcmp(out, kat[i].out, sizeof out) == 0, "KAT %zu: %08x %08x %08x %08x", i, out[0], out[1], out[2],
              out[3]);
    }
}

/* The mapping, re-derived from its documentation. */
static float documented_noise(uint64_t seed, uint32_t stream, uint32_t channel, uint32_t y, uint32_t x)
{
    uint32_t ctr[4] = {x, y, channel, stream};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t r[4];
    ddpm_philox4x32_10(ctr, key, r);
    double u1 = ((double)r[0] + 0.5) / 4294967296.0;
    double u2 = ((double)r[1] + 0.5) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

static void test_mapping(void)
{
    uint64_t seeds[] = {0, 1, 42, 0xffffffffu, 0x100000000ull, 0xdeadbeefcafef00dull};
    int mismatches = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++)
        for (uint32_t stream = 0; stream < 3; stream++)
            for (uint32_t c = 0; c < 3; c++)
                for (uint32_t y = 0; y < 5; y++)
                    for (uint32_t x = 0; x < 7; x++) {
                        uint32_t st = stream == 2 ? DDPM_STREAM_KNOWN(5) : stream == 1 ? DDPM_STREAM_START : 999;
                        mismatches += float_bits(ddpm_noise(seeds[s], st, c, y, x)) !=
                                      float_bits(documented_noise(seeds[s], st, c, y, x));
                    }
    CHECK(mismatches == 0, "%d deviates differ from the documented mapping", mismatches);

    /* The extremes of the uniform map stay finite: r0 = 0 gives
     * u1 = 2^-33, |z| <= sqrt(2 ln 2^33) = 6.76. */
    CHECK(isfinite(sqrt(-2.0 * log(0.5 / 4294967296.0))), "finite extreme");
}

/* Same bits with 1 and 2 threads, whole and tiled, and per element. */
static void test_layout_independence(void)
{
    enum { C = 3, H = 64, W = 96 };
    size_t n = (size_t)C * H * W;
    float *one = malloc(n * sizeof(float)), *two = malloc(n * sizeof(float)), *tiled = malloc(n * sizeof(float));
    if (one == NULL || two == NULL || tiled == NULL) {
        CHECK(0, "out of memory");
        free(one), free(two), free(tiled);
        return;
    }
    uint64_t seed = 0x123456789abcdefull;
    uint32_t stream = DDPM_STREAM_REVERSE(500);

    ddpm_set_threads(1);
    ddpm_noise_fill(seed, stream, C, H, W, 0, 0, one);
    ddpm_set_threads(2);
    ddpm_noise_fill(seed, stream, C, H, W, 0, 0, two);
    CHECK(memcmp(one, two, n * sizeof(float)) == 0, "1 vs 2 threads differ");

    /* Four tiles of different sizes: rows 0..23 / 24..63, columns 0..39 / 40..95. */
    int ys[2][2] = {{0, 24}, {24, 40}}, xs[2][2] = {{0, 40}, {40, 56}};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            int y0 = ys[a][0], h = ys[a][1], x0 = xs[b][0], w = xs[b][1];
            float *tile = malloc((size_t)C * h * w * sizeof(float));
            if (tile == NULL)
                continue;
            ddpm_noise_fill(seed, stream, C, h, w, y0, x0, tile);
            for (int c = 0; c < C; c++)
                for (int y = 0; y < h; y++)
                    memcpy(tiled + ((size_t)c * H + y0 + y) * W + x0, tile + ((size_t)c * h + y) * w,
                           (size_t)w * sizeof(float));
            free(tile);
        }
    CHECK(memcmp(one, tiled, n * sizeof(float)) == 0, "whole vs tiled fills differ");

    int mismatches = 0;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                mismatches += float_bits(one[((size_t)c * H + y) * W + x]) !=
                              float_bits(ddpm_noise(seed, stream, (uint32_t)c, (uint32_t)y, (uint32_t)x));
    CHECK(mismatches == 0, "fill vs ddpm_noise: %d differ", mismatches);

    /* Empty or NULL fills do nothing. */
    ddpm_noise_fill(seed, stream, 0, H, W, 0, 0, one);
    ddpm_noise_fill(seed, stream, C, H, W, 0, 0, NULL);
    ddpm_set_threads(0);
    free(one), free(two), free(tiled);
}

/* Pearson correlation of a[i] and b[i]. */
static double correlation(const float *a, const float *b, size_t n)
{
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    for (size_t i = 0; i < n; i++) {
        sa += a[i], sb += b[i];
        saa += (double)a[i] * a[i], sbb += (double)b[i] * b[i], sab += (double)a[i] * b[i];
    }
    double ma = sa / n, mb = sb / n;
    return (sab / n - ma * mb) / sqrt((saa / n - ma * ma) * (sbb / n - mb * mb));
}

static void test_statistics(void)
{
    enum { C = 4, H = 512, W = 512 }; /* 2^20 draws */
    size_t n = (size_t)C * H * W;
    float *z = malloc(n * sizeof(float)), *other = malloc(n * sizeof(float));
    if (z == NULL || other == NULL) {
        CHECK(0, "out of memory");
        free(z), free(other);
        return;
    }
    uint64_t seed = 20240611;
    ddpm_noise_fill(seed, DDPM_STREAM_START, C, H, W, 0, 0, z);

    double s1 = 0, s2 = 0, s3 = 0, s4 = 0, zmax = 0;
    size_t below0 = 0, beyond3 = 0;
    for (size_t i = 0; i < n; i++) {
        double v = z[i];
        s1 += v, s2 += v * v, s3 += v * v * v, s4 += v * v * v * v;
        zmax = fmax(zmax, fabs(v));
        below0 += v < 0;
        beyond3 += fabs(v) > 3;
    }
    double N = (double)n, mean = s1 / N, var = s2 / N - mean * mean;
    double skew = (s3 / N) / pow(var, 1.5), kurt = (s4 / N) / (var * var);
    double p3 = 0.0026997960632601866; /* P(|Z| > 3) */
    printf("N = %zu: mean %.5f var %.5f skew %.5f kurtosis %.5f P(<0) %.5f P(|z|>3) %.6f max |z| %.3f\n", n, mean,
           var, skew, kurt, below0 / N, beyond3 / N, zmax);
    /* Standard errors for N(0,1): mean 1/sqrt(N), variance sqrt(2/N),
     * skewness sqrt(6/N), kurtosis sqrt(24/N), a proportion sqrt(p(1-p)/N). */
    CHECK(fabs(mean) < 5 / sqrt(N), "mean %.5f", mean);
    CHECK(fabs(var - 1) < 5 * sqrt(2 / N), "variance %.5f", var);
    CHECK(fabs(skew) < 5 * sqrt(6 / N), "skewness %.5f", skew);
    CHECK(fabs(kurt - 3) < 5 * sqrt(24 / N), "kurtosis %.5f", kurt);
    CHECK(fabs(below0 / N - 0.5) < 5 * sqrt(0.25 / N), "P(z < 0) %.5f", below0 / N);
    CHECK(fabs(beyond3 / N - p3) < 5 * sqrt(p3 * (1 - p3) / N), "P(|z| > 3) %.6f", beyond3 / N);
    CHECK(zmax < 6.77 && zmax > 4.0, "max |z| %.3f", zmax);

    /* Lag-1 autocorrelation along x (consecutive counters c0), along y,
     * and between channels: each ~N(0, 1/N) when independent. */
    double lag_x = correlation(z, z + 1, n - 1);
    double lag_y = correlation(z, z + W, n - W);
    double lag_c = correlation(z, z + (size_t)H * W, n - (size_t)H * W);
    printf("lag-1 correlation: x %.5f y %.5f channel %.5f\n", lag_x, lag_y, lag_c);
    CHECK(fabs(lag_x) < 5 / sqrt(N), "lag-1 x correlation %.5f", lag_x);
    CHECK(fabs(lag_y) < 5 / sqrt(N), "lag-1 y correlation %.5f", lag_y);
    CHECK(fabs(lag_c) < 5 / sqrt(N), "channel correlation %.5f", lag_c);

    /* Other streams and seeds (low and high key word) at the same pixels. */
    struct {
        uint64_t seed;
        uint32_t stream;
        const char *what;
    } others[] = {
        {seed, DDPM_STREAM_REVERSE(0), "stream START vs REVERSE(0)"},
        {seed, DDPM_STREAM_KNOWN(0), "stream START vs KNOWN(0)"},
        {seed + 1, DDPM_STREAM_START, "seed vs seed + 1"},
        {seed + (1ull << 32), DDPM_STREAM_START, "seed vs seed + 2^32"},
    };
    for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
        ddpm_noise_fill(others[k].seed, others[k].stream, C, H, W, 0, 0, other);
        double r = correlation(z, other, n);
        printf("%s: correlation %.5f\n", others[k].what, r);
        CHECK(fabs(r) < 5 / sqrt(N), "%s: correlation %.5f", others[k].what, r);
    }
    free(z), free(other);
}

int main(void)
{
    test_known_answers();
    test_mapping();
    test_layout_independence();
    test_statistics();
    return check_report("test_noise");
}
