/* status.c: status names and the thread count shared by all core work. */
#include "ddpm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS's own thread count; declared here so that any cblas.h will do. */
void openblas_set_num_threads(int num_threads);

const char *ddpm_status_name(ddpm_status s)
{
    switch (s) {
    case DDPM_OK:              return "ok";
    case DDPM_ERR_IO:          return "input/output error";
    case DDPM_ERR_FORMAT:      return "malformed file";
    case DDPM_ERR_UNSUPPORTED: return "unsupported";
    case DDPM_ERR_MISMATCH:    return "config and weights disagree";
    case DDPM_ERR_ARGUMENT:    return "invalid argument";
    case DDPM_ERR_MEMORY:      return "out of memory";
    case DDPM_ERR_NUMERIC:     return "numeric error (NaN or Inf)";
    case DDPM_CANCELLED:       return "cancelled";
    }
    return "unknown status";
}

static int g_threads = 0;

void ddpm_set_threads(int n)
{
#ifdef _OPENMP
    if (n <= 0)
        n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0)
        n = 1;
#endif
    openblas_set_num_threads(n);
    g_threads = n;
}

int ddpm_get_threads(void)
{
    if (g_threads > 0)
        return g_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
