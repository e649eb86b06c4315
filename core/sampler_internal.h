/* sampler_internal.h: internals of the diffusion math (schedule.c, noise.c,
 * sampler.c) that the core tests need to reach; not part of the public API
 * and not installed.  Everything else goes through ddpm.h. */
#ifndef DDPM_SAMPLER_INTERNAL_H
#define DDPM_SAMPLER_INTERNAL_H

#include "ddpm.h"

/* The Philox-4x32-10 bijection (Salmon et al. 2011): 4 x 32-bit counter and
 * 2 x 32-bit key in, 4 x 32-bit random words out (noise.c).  Exposed for the
 * known-answer test. */
void ddpm_philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]);

/* ddpm_schedule_init with the T betas given instead of computed from
 * c->beta_schedule (schedule.c).  Tests use it to load PyTorch's own
 * linspace betas, whose last bit depends on the PyTorch build (spec 5.2). */
ddpm_status ddpm_schedule_init_from_betas(ddpm_schedule *s, const ddpm_scheduler_config *c,
                                          const float *betas, char *err, size_t errlen);

/* The refine chain (sampler.c): min(K, t_start + 1) timesteps from t_start
 * down to 0, evenly spaced and rounded (see the comment in sampler.c).
 * Returns the number written, or -1 if K < 1 or t_start < 0. */
int ddpm_refine_timesteps(int t_start, int K, int *out);

#endif /* DDPM_SAMPLER_INTERNAL_H */
