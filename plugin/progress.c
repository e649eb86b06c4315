/* progress.c: GIMP's progress bar during the reverse chain.
 *
 * The core calls ddpm_progress_step after every reverse step.  Steps of one
 * run cost the same (one U-Net evaluation each), so the time left is the
 * mean time per step so far times the steps still to go.
 *
 * Cancelling is not polled: GIMP cancels a plug-in by killing it, and
 * nothing reaches the image before the chain has finished (run.c).
 */

#include <libgimp/gimp.h>
#include <glib/gi18n.h>

#include "ddpm-plugin.h"

void
ddpm_progress_start (DdpmProgress *p,
                     const gchar  *what)
{
  p->what     = what;
  p->start_us = g_get_monotonic_time ();
  gimp_progress_init (what);
  gimp_progress_update (0.0);
}

/* "42 s" or "3 min 05 s". */
static gchar *
format_duration (gint64 seconds)
{
  if (seconds < 60)
    return g_strdup_printf (_("%d s"), (gint) seconds);
  return g_strdup_printf (_("%d min %02d s"), (gint) (seconds / 60), (gint) (seconds % 60));
}

int
ddpm_progress_step (void *ctx,
                    int   step,
                    int   total)
{
  DdpmProgress *p       = ctx;
  gint64        elapsed = g_get_monotonic_time () - p->start_us;
  gint64        left_s;
  gchar        *left;

  if (step <= 0 || total <= 0)
    return 0;
  left_s = (gint64) ((gdouble) elapsed / step * (total - step) / G_USEC_PER_SEC + 0.5);
  left   = format_duration (left_s);
  /* TRANSLATORS: "Generating: step 3 of 50, about 1 min 05 s left" */
  gimp_progress_set_text_printf (_("%s: step %d of %d, about %s left"),
                                 p->what, step, total, left);
  gimp_progress_update ((gdouble) step / total);
  g_free (left);
  return 0;  /* never ask the core to stop */
}
