/* threads.c: the team of threads that runs every layer's tasks, and the
 * clock that times the layers.
 *
 * Every op (ops.h) cuts its work into tasks that parallel_for shares among
 * the caller and a small pool of worker threads; which thread runs a task
 * never changes its numbers.  DDPM_PROFILE=1 in the environment prints the
 * time of every layer kind and shape at exit.
 */
#include "ops_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

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
int env_flag(const char *name)
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

double profile_start(void)
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

void profile_stop(double t0, const char *op, int cin, int cout, int H, int W, double flops)
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
 * after job g has finished.
 *
 * Idle workers spin for a millisecond, then sleep.  A forward pass is
 * hundreds of jobs with gaps of serial work between them; a worker that
 * fell asleep in a gap misses most of the next job (waking it takes tens
 * of microseconds, and the caller starts without it).  Against a
 * 20,000-iteration spin (about 10 us), 64x64 on the texture model went
 * from 17.2 to 16.7 ms per evaluation, cifar10's 32x32 from 61.8 to 60. */

#define POOL_MAX_THREADS 64
#define POOL_SPIN_SECONDS 1e-3

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
    const double until = wall_now() + POOL_SPIN_SECONDS;
    for (unsigned i = 1;; i++) {
        unsigned g = atomic_load(&pool.gen);
        if (g != seen)
            return g;
        if (i % 1024 == 0 && wall_now() > until)
            break;
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

void parallel_for(int threads, int n, task_fn fn, void *ctx)
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
int team_for(size_t size, int threads)
{
    return size > 65536 ? threads : 1;
}

/* parallel_for for a memory-bound op over `size` elements (a team only if
 * worth it), timed under the op's name for DDPM_PROFILE. */
void elementwise_for(const char *op, int C, int H, int W, size_t size, int threads, int n, task_fn fn,
                     void *ctx)
{
    double t0 = profile_start();
    parallel_for(team_for(size, threads), n, fn, ctx);
    profile_stop(t0, op, C, C, H, W, 0.0);
}
