/* ddpm-plugin.h: what the files of the GIMP plug-in share.
 *
 * The plug-in is thin: it turns GIMP arguments, pixels and progress into the
 * core's ddpm_job_generate / ddpm_job_refine calls and back.  Every file has
 * one job:
 *
 *   main.c      the GimpPlugIn class: registers the two PDB procedures
 *   run.c       what a call does: model, checks, job, undo, new layer / merge
 *   models.c    where model folders are found (shipped, user, path)
 *   pixels.c    drawable pixels <-> the core's 3 x H x W planes in [-1, 1]
 *   progress.c  the progress bar and its time estimate
 *   dialog.c    the GimpProcedureDialog of both procedures
 */
#ifndef DDPM_PLUGIN_H
#define DDPM_PLUGIN_H

#include <libgimp/gimp.h>
#include "ddpm.h"

/* The executable, its install folder and the gettext domain. */
#define PLUG_IN_BINARY  "ddpm"
#define PROC_GENERATE   "plug-in-ddpm-generate"
#define PROC_REFINE     "plug-in-ddpm-refine"

/* The shipped model's folder name. */
#define DDPM_SHIPPED_MODEL "ddpm-texture"

/* Ids of the `variance` choice.  VARIANCE_DEFAULT takes the model's own
 * scheduler_config.json variance_type, as the CLI does without --variance. */
enum { VARIANCE_DEFAULT = 0, VARIANCE_BETA = 1, VARIANCE_POSTERIOR = 2 };

/* ---- run.c ---------------------------------------------------------------- */

GimpValueArray *ddpm_generate_run (GimpProcedure *procedure, GimpRunMode run_mode,
                                   GimpImage *image, GimpDrawable **drawables,
                                   GimpProcedureConfig *config, gpointer run_data);
GimpValueArray *ddpm_refine_run   (GimpProcedure *procedure, GimpRunMode run_mode,
                                   GimpImage *image, GimpDrawable **drawables,
                                   GimpProcedureConfig *config, gpointer run_data);

/* ---- models.c ------------------------------------------------------------- */

/* <GIMP profile>/ddpm-models: where users put their own model folders. */
gchar   *ddpm_user_models_dir     (void);
/* TRUE if dir holds config.json and diffusion_pytorch_model.safetensors. */
gboolean ddpm_is_model_folder     (const gchar *dir);
/* The folder of the shipped model, or NULL if it is nowhere. */
gchar   *ddpm_shipped_model_dir   (void);
/* The folder a `model` argument names: "" = the shipped model, a folder name
 * in the user models folder, or an absolute path.  NULL + error if none. */
gchar   *ddpm_resolve_model       (const gchar *model, GError **error);
/* Names for the model chooser: "" (the shipped model, if found) first, then
 * the user's model folders, sorted.  Free with g_list_free_full (l, g_free). */
GList   *ddpm_list_models         (void);
/* T of the model named by `model` from its scheduler_config.json (1000 if
 * the file is missing, 0 if the model is not found or the file is bad). */
gint     ddpm_model_timesteps     (const gchar *model);

/* ---- pixels.c ------------------------------------------------------------- */

/* A rectangle of pixels, interleaved R'G'B'A, as 8-bit or float samples. */
typedef struct {
  gboolean    u8;       /* 8-bit image: exchanged as u8 so results match the CLI */
  const Babl *format;   /* "R'G'B'A u8" or "R'G'B'A float" in the drawable's space */
  gint        width, height;
  gpointer    rgba;     /* width * height * 4 samples of `format` */
} DdpmPixels;

gboolean ddpm_pixels_init        (DdpmPixels *px, GimpDrawable *drawable,
                                  gint width, gint height);
void     ddpm_pixels_clear       (DdpmPixels *px);
void     ddpm_pixels_read        (DdpmPixels *px, GeglBuffer *buffer, gint x, gint y);
void     ddpm_pixels_write       (const DdpmPixels *px, GeglBuffer *buffer, gint x, gint y);
/* RGB <-> 3 x H x W planes in [-1, 1]; to_planes keeps alpha untouched. */
void     ddpm_pixels_to_planes   (const DdpmPixels *px, gfloat *planes);
void     ddpm_pixels_from_planes (DdpmPixels *px, const gfloat *planes, gboolean opaque);
/* The selection's values in [0, 1] over an image-space rectangle. */
gfloat  *ddpm_selection_mask     (GimpImage *image, gint x, gint y, gint width, gint height);

/* ---- progress.c ----------------------------------------------------------- */

typedef struct {
  const gchar *what;     /* "Generating" / "Refining", already translated */
  gint64       start_us; /* g_get_monotonic_time () when the chain started */
} DdpmProgress;

void ddpm_progress_start (DdpmProgress *p, const gchar *what);
/* A ddpm_progress_fn: updates the bar and the text with a time estimate. */
int  ddpm_progress_step  (void *ctx, int step, int total);

/* ---- dialog.c ------------------------------------------------------------- */

/* Shows the dialog of `procedure`; TRUE on OK (values are then in config). */
gboolean ddpm_dialog_run (GimpProcedure *procedure, GimpProcedureConfig *config);

#endif /* DDPM_PLUGIN_H */
