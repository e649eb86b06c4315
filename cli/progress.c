/* progress.c: SIGINT -> cancel flag, and the progress bar / progress lines. */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Ctrl-C                                                                    */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t g_cancel = 0;

static void on_sigint(int sig)
{
    (void)sig;
    g_cancel = 1;
}

void cancel_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    /* One polite request; the next Ctrl-C gets the default action (exit). */
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
}

int cancel_requested(void)
{
    return g_cancel != 0;
}

void cancel_hold(sigset_t *saved)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, saved);
}

void cancel_release(const sigset_t *saved)
{
    sigprocmask(SIG_SETMASK, saved, NULL);
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Progress                                                                  */
/* ------------------------------------------------------------------------ */

#define BAR_WIDTH 30

/* "m:ss", or "h:mm:ss" from an hour on (shown up to 999:59:59). */
static void format_duration(double seconds, char *buf, size_t len)
{
    int s = seconds <= 0 ? 0 : seconds >= 3599999.0 ? 3599999 : (int)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, len, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, len, "%d:%02d", s / 60, s % 60);
}

void progress_start(progress *p, const char *label)
{
    p->label = label;
    p->interactive = isatty(STDERR_FILENO);
    p->start = now_seconds();
    p->last_tenth = 0;
    p->drawn = 0;
}

/* On a terminal: "generate [#########.....]  12/50  0:07 elapsed  ETA 0:22",
 * redrawn in place after every step. */
static void draw_bar(progress *p, int step, int total, double elapsed, double eta)
{
    char bar[BAR_WIDTH + 1];
    int filled = (int)((long long)BAR_WIDTH * step / total);
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    char el[32], left[32];
    format_duration(elapsed, el, sizeof el);
    format_duration(eta, left, sizeof left);
    /* \033[K clears what a longer previous line left behind. */
    fprintf(stderr, "\r%s [%s] %d/%d  %s elapsed  ETA %s\033[K", p->label, bar, step, total, el, left);
    fflush(stderr);
    p->drawn = 1;
}

/* Elsewhere (a log, a pipe): one plain line per tenth of the run. */
static void print_line(progress *p, int step, int total, double elapsed, double eta)
{
    int tenth = (int)(10LL * step / total);
    if (step != 1 && tenth == p->last_tenth)
        return;
    p->last_tenth = tenth;
    char el[32], left[32];
    format_duration(elapsed, el, sizeof el);
    format_duration(eta, left, sizeof left);
    fprintf(stderr, "ddpm: %s: step %d/%d, %s elapsed, about %s left\n", p->label, step, total, el, left);
}

int progress_update(void *ctx, int step, int total)
{
    progress *p = ctx;
    if (total > 0 && step > 0) {
        double elapsed = now_seconds() - p->start;
        double eta = elapsed / step * (total - step);
        if (p->interactive)
            draw_bar(p, step, total, elapsed, eta);
        else
            print_line(p, step, total, elapsed, eta);
    }
    return cancel_requested();
}

void progress_finish(progress *p)
{
    if (p->drawn)
        fputc('\n', stderr);
    p->drawn = 0;
}
