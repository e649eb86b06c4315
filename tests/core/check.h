/* check.h: the core tests' one assertion helper and a few float utilities.
 * CHECK(cond, fmt, ...) reports a failure with the file, line and a message
 * and lets the test go on; main returns check_report(). */
#ifndef DDPM_TEST_CHECK_H
#define DDPM_TEST_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        check_count++;                                                                    \
        if (!(cond)) {                                                                    \
            check_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

static int check_report(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

/* The bits of a float, and the distance between two floats in units in the
 * last place (0 = identical, 1 = neighbours; +0 and -0 are 0 apart). */
static inline uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline int64_t float_ordinal(float f)
{
    uint32_t u = float_bits(f);
    return (u & 0x80000000u) ? -(int64_t)(u & 0x7fffffffu) : (int64_t)u;
}

static inline int64_t ulp_distance(float a, float b)
{
    int64_t d = float_ordinal(a) - float_ordinal(b);
    return d < 0 ? -d : d;
}

#endif
