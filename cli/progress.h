/* progress.h: Ctrl-C as a polite request, and progress lines on stderr.
 *
 * The first Ctrl-C only sets a flag; the progress callback hands it to the
 * core, which stops after the current step with DDPM_CANCELLED.  A second
 * Ctrl-C kills the process as usual.
 */
#ifndef DDPM_CLI_PROGRESS_H
#define DDPM_CLI_PROGRESS_H

#include <signal.h>

void cancel_install(void);
int cancel_requested(void);
/* Hold Ctrl-C back while the output file is written, so that a run either
 * writes its whole output or none (the signal is delivered on release). */
void cancel_hold(sigset_t *saved);
void cancel_release(const sigset_t *saved);

/* Seconds on a monotonic clock. */
double now_seconds(void);

typedef struct {
    const char *label;   /* "generate"                                      */
    int interactive;     /* stderr is a terminal: redraw one line in place  */
    double start;        /* now_seconds() at progress_start                 */
    int last_tenth;      /* plain mode: last tenth of the run reported      */
    int drawn;           /* a bar is on screen and needs a newline          */
} progress;

void progress_start(progress *p, const char *label);
/* A ddpm_progress_fn: draws step / total, returns nonzero after Ctrl-C. */
int progress_update(void *p, int step, int total);
/* Ends the bar's line, if one is drawn. */
void progress_finish(progress *p);

#endif /* DDPM_CLI_PROGRESS_H */
