/* noise.c: counter-based standard normal noise, addressed by
 * (seed, stream, channel, y, x).
 *
 * Every deviate of a run has an address, and the deviate is a pure function
 * of it, so an image gets the same noise whether it is computed whole or in
 * tiles, by one thread or many, in any order.  The mapping is a contract
 * (a saved seed must give the same picture in the CLI and the plug-in, today
 * and in later versions):
 *
 *   key     (k0, k1)         = (seed & 0xffffffff, seed >> 32)
 *   counter (c0, c1, c2, c3) = (x, y, channel, stream)
 *   (r0, r1, r2, r3)         = Philox-4x32-10(counter, key)
 *   u1 = (r0 + 0.5) / 2^32,   u2 = (r1 + 0.5) / 2^32      both in (0, 1): never 0
 *   z  = float( sqrt(-2 ln u1) * cos(2 pi u2) )           Box-Muller, in double
 *
 * r2 and r3 are not used: one address gives one deviate.  Streams (ddpm.h)
 * separate the draws of one run: DDPM_STREAM_START for x_T (or the eps of
 * q_sample at t0), DDPM_STREAM_REVERSE(t) for the z of the step leaving
 * timestep t, DDPM_STREAM_KNOWN(t) for re-noising the kept region in refine.
 *
 * Philox-4x32-10 (J. Salmon, M. Moraes, R. Dror, D. Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011): ten rounds (philox_round below)
 * with multipliers M0 = 0xD2511F53, M1 = 0xCD9E8D57, the key bumped by the
 * Weyl constants 0x9E3779B9, 0xBB67AE85 between rounds.  The paper reports it
 * passes BigCrush for any counter/key sequence, so neighbouring pixels
 * (counters differing in one word) give independent deviates. */
#include "ddpm.h"
#include "sampler_internal.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u /* golden ratio */
#define PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1 */

/* One round: two 32 x 32 -> 64-bit products; their high halves are mixed
 * with the other two counter words and the key, their low halves pass on:
 *   (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0,  lo(M1 c2),  hi(M0 c0) ^ c3 ^ k1,  lo(M0 c0)) */
static void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t c1 = c[1], c3 = c[3];
    c[0] = hi1 ^ c1 ^ k[0];
    c[1] = lo1;
    c[2] = hi0 ^ c3 ^ k[1];
    c[3] = lo0;
}

void ddpm_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int round = 0; round < 10; round++) {
        if (round > 0) { /* the key schedule: a Weyl sequence */
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

/* A 32-bit word -> uniform in the open interval (0, 1): the centre of one of
 * 2^32 equal cells, so ln(u) is always finite (|z| <= 6.7). */
static double open_uniform(uint32_t r)
{
    return ((double)r + 0.5) * (1.0 / 4294967296.0);
}

float ddpm_noise(uint64_t seed, uint32_t stream, uint32_t channel, uint32_t y, uint32_t x)
{
    const double two_pi = 6.283185307179586476925286766559;
    uint32_t counter[4] = {x, y, channel, stream};
    uint32_t key[2] = {(uint32_t)(seed & 0xffffffffu), (uint32_t)(seed >> 32)};
    uint32_t r[4];
    ddpm_philox4x32_10(counter, key, r);
    double u1 = open_uniform(r[0]);
    double u2 = open_uniform(r[1]);
    /* Box-Muller: (sqrt(-2 ln u1) cos 2 pi u2) is N(0, 1) for independent
     * uniforms u1, u2; the sine partner is not used. */
    return (float)(sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
}

void ddpm_noise_fill(uint64_t seed, uint32_t stream, int C, int h, int w, int y0, int x0, float *out)
{
    if (out == NULL || C <= 0 || h <= 0 || w <= 0)
        return;
    /* Rows are independent (each value depends only on its address), so the
     * split between threads cannot change a single bit.  Offsets wrap modulo
     * 2^32, exactly as the uint32_t coordinates of ddpm_noise do. */
    long rows = (long)C * h;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (rows * w >= 4096)
#endif
    for (long r = 0; r < rows; r++) {
        uint32_t c = (uint32_t)(r / h);
        uint32_t y = (uint32_t)y0 + (uint32_t)(r % h);
        float *row = out + (size_t)r * (size_t)w;
        for (int i = 0; i < w; i++)
            row[i] = ddpm_noise(seed, stream, c, y, (uint32_t)x0 + (uint32_t)i);
    }
}
