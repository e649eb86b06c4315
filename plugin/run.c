/* run.c: what a call of plug-in-ddpm-generate or plug-in-ddpm-refine does.
 *
 * Both follow the same order, so that a failed or cancelled run leaves the
 * image exactly as it was:
 *
 *   1. arguments (dialog when interactive), model folder, checks
 *   2. the core's job on private buffers, with progress
 *   3. only then the image: one undo group holding the new layer (generate)
 *      or the shadow buffer merged through the selection (refine)
 *
 * GIMP cancels a plug-in by killing it; at any moment before step 3 that
 * loses nothing but the computation.
 */

#include <libgimp/gimp.h>
#include <glib/gi18n.h>

#include "ddpm-plugin.h"

/* Refine shows the model this many pixels around the selection's bounding
 * box: the mask is 0 there, so they stay as they are, but the denoiser sees
 * the surroundings the new content has to agree with. */
#define REFINE_CONTEXT 16

/* The arguments both procedures share. */
typedef struct {
  gchar   *model;
  gint     steps;
  gint     variance;   /* VARIANCE_*     */
  gint     seed;
  gboolean tileable;
  gint     sampler;    /* ddpm_sampler   */
  gdouble  eta;
  gint     eta_t_max;
} CommonArgs;

static void
common_args_get (GimpProcedureConfig *config,
                 CommonArgs          *a)
{
  g_object_get (config,
                "model",    &a->model,
                "steps",    &a->steps,
                "seed",     &a->seed,
                "tileable", &a->tileable,
                "eta",       &a->eta,
                "eta-t-max", &a->eta_t_max,
                NULL);
  a->variance = gimp_procedure_config_get_choice_id (config, "variance");
  a->sampler  = gimp_procedure_config_get_choice_id (config, "sampler");
}

static GimpValueArray *
failure (GimpProcedure     *procedure,
         GimpPDBStatusType  status,
         GError            *error)
{
  return gimp_procedure_new_return_values (procedure, status, error);
}

/* The core's error class decides whose fault it was. */
static GimpPDBStatusType
pdb_status (ddpm_status s)
{
  return s == DDPM_ERR_ARGUMENT ? GIMP_PDB_CALLING_ERROR : GIMP_PDB_EXECUTION_ERROR;
}

/* Resolve and load the model.  An unknown name is the caller's error; a
 * folder the core cannot read (corrupt weights, ...) an execution error. */
static ddpm_model *
load_model (const gchar        *model,
            gchar             **name,
            GimpPDBStatusType  *status,
            GError            **error)
{
  gchar       *dir = ddpm_resolve_model (model, error);
  ddpm_model  *m   = NULL;
  ddpm_status  s;
  char         err[512] = "";

  if (! dir)
    {
      *status = GIMP_PDB_CALLING_ERROR;
      return NULL;
    }
  s = ddpm_model_load (dir, &m, err, sizeof err);
  if (s != DDPM_OK)
    {
      g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                   _("Cannot load the model in %s: %s"), dir, err);
      *status = GIMP_PDB_EXECUTION_ERROR;
      g_free (dir);
      return NULL;
    }
  *name = g_path_get_basename (dir);
  g_free (dir);
  return m;
}

/* The job's parameters, checked against the model: steps in 1 .. T and,
 * for refine, the timestep t0 in 1 .. T. */
static gboolean
job_params (const ddpm_model *m,
            const CommonArgs *a,
            gint              timestep,
            ddpm_job_params  *p,
            GError          **error)
{
  ddpm_model_info info;
  gint            T;

  ddpm_model_get_info (m, &info);
  T = info.scheduler->num_train_timesteps;
  if (a->steps < 1 || a->steps > T)
    {
      g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                   _("steps = %d is out of range: this model has T = %d "
                     "timesteps, so steps must be 1 to %d"), a->steps, T, T);
      return FALSE;
    }
  if (timestep != 0 && (timestep < 1 || timestep > T))
    {
      g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                   _("timestep = %d is out of range: this model has T = %d "
                     "timesteps, so timestep must be 1 to %d"), timestep, T, T);
      return FALSE;
    }

  p->steps         = a->steps;
  p->variance      = a->variance == VARIANCE_BETA      ? DDPM_VARIANCE_BETA :
                     a->variance == VARIANCE_POSTERIOR ? DDPM_VARIANCE_POSTERIOR :
                     info.scheduler->variance_type;
  p->seed          = (uint64_t) a->seed;
  p->tileable      = a->tileable ? 1 : 0;
  p->timestep      = timestep;
  p->sampler       = (ddpm_sampler) a->sampler;
  p->eta           = (float) a->eta;
  p->eta_t_max     = a->eta_t_max;
  p->memory_budget = 0;  /* the core's default: half the physical memory */
  return TRUE;
}

/* A period-first layer's own timestep and step count must fit the model's
 * T, as steps must (job_params); a layer generated whole does not use them. */
static gboolean
period_counts_fit (const ddpm_model      *m,
                   const ddpm_job_params *p,
                   gint                   width,
                   gint                   height,
                   GError               **error)
{
  ddpm_model_info info;
  gint            T, py, px;
  const gchar    *name  = NULL;
  gint            value = 0;

  if (! ddpm_job_period_shape (m, p, width, height, &py, &px))
    return TRUE;
  ddpm_model_get_info (m, &info);
  T = info.scheduler->num_train_timesteps;
  if (p->period_t < 1 || p->period_t > T)
    {
      name  = "period-t";
      value = p->period_t;
    }
  else if (p->period_steps < 1 || p->period_steps > T)
    {
      name  = "period-steps";
      value = p->period_steps;
    }
  if (! name)
    return TRUE;
  g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
               /* TRANSLATORS: both %s are an argument's name: "period-t" or "period-steps" */
               _("%s = %d is out of range: this model has T = %d timesteps, "
                 "so %s must be 1 to %d"), name, value, T, name, T);
  return FALSE;
}

/* Planes for a width x height image, or NULL (and an error) if too big. */
static gfloat *
alloc_planes (gint     width,
              gint     height,
              GError **error)
{
  gfloat *planes = g_try_new (gfloat, (gsize) 3 * width * height);

  if (! planes)
    g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                 _("Not enough memory for a %d x %d image"), width, height);
  return planes;
}

/* ------------------------------------------------------------------------ */
/* plug-in-ddpm-generate                                                     */
/* ------------------------------------------------------------------------ */

/* Step 3 of generate: a new layer above the active one, filled with the
 * texture, in one undo group.  The layer is created only now, so a run
 * killed before this point leaves no trace. */
static GimpLayer *
insert_texture_layer (GimpImage    *image,
                      const gchar  *name,
                      gint          width,
                      gint          height,
                      const gfloat *planes,
                      GError      **error)
{
  GimpImageType  type  = gimp_image_get_base_type (image) == GIMP_GRAY ?
                         GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE;
  GimpLayer     *layer = gimp_layer_new (image, name, width, height, type, 100.0,
                                         gimp_image_get_default_new_layer_mode (image));
  DdpmPixels     px    = { 0 };
  GeglBuffer    *buffer;

  if (! layer || ! ddpm_pixels_init (&px, GIMP_DRAWABLE (layer), width, height))
    {
      if (layer)
        gimp_item_delete (GIMP_ITEM (layer));
      g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                   _("Not enough memory for a %d x %d image"), width, height);
      return NULL;
    }
  ddpm_pixels_from_planes (&px, planes, TRUE);

  gimp_image_undo_group_start (image);
  /* parent NULL, position -1: above the active layer (inside it if a group) */
  gimp_image_insert_layer (image, layer, NULL, -1);
  /* Straight into the layer, not the shadow: a selection must not cut the
   * new texture, and the layer's creation is already the undo step. */
  buffer = gimp_drawable_get_buffer (GIMP_DRAWABLE (layer));
  ddpm_pixels_write (&px, buffer, 0, 0);
  g_object_unref (buffer);  /* flushes the tiles to GIMP */
  gimp_drawable_update (GIMP_DRAWABLE (layer), 0, 0, width, height);
  gimp_image_undo_group_end (image);

  ddpm_pixels_clear (&px);
  return layer;
}

GimpValueArray *
ddpm_generate_run (GimpProcedure        *procedure,
                   GimpRunMode           run_mode,
                   GimpImage            *image,
                   GimpDrawable        **drawables G_GNUC_UNUSED,
                   GimpProcedureConfig  *config,
                   gpointer              run_data  G_GNUC_UNUSED)
{
  CommonArgs         a         = { 0 };
  GimpPDBStatusType  status    = GIMP_PDB_EXECUTION_ERROR;
  GError            *error     = NULL;
  ddpm_model        *m         = NULL;
  gchar             *name      = NULL;
  gchar             *layer_name;
  gfloat            *planes    = NULL;
  GimpLayer         *layer     = NULL;
  ddpm_job_params    p         = { 0 };
  DdpmProgress       progress;
  ddpm_status        s;
  char               err[512]  = "";
  gint               width, height;
  gdouble            period_eta;
  GimpValueArray    *ret;

  gegl_init (NULL, NULL);

  if (run_mode == GIMP_RUN_INTERACTIVE)
    {
      /* 0 means "the image's size"; the dialog shows the number. */
      g_object_get (config, "width", &width, "height", &height, NULL);
      if (width == 0)
        g_object_set (config, "width", gimp_image_get_width (image), NULL);
      if (height == 0)
        g_object_set (config, "height", gimp_image_get_height (image), NULL);
      if (! ddpm_dialog_run (procedure, config))
        return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);
    }

  common_args_get (config, &a);
  g_object_get (config, "width", &width, "height", &height, NULL);
  if (width == 0)
    width = gimp_image_get_width (image);
  if (height == 0)
    height = gimp_image_get_height (image);

  m = load_model (a.model, &name, &status, &error);
  if (! m)
    goto fail;
  if (! job_params (m, &a, 0, &p, &error))
    {
      status = GIMP_PDB_CALLING_ERROR;
      goto fail;
    }
  g_object_get (config, "period", &p.period, "period-t", &p.period_t,
                "period-eta", &period_eta, "period-steps", &p.period_steps, NULL);
  p.period_eta = (float) period_eta;
  if (! period_counts_fit (m, &p, width, height, &error))
    {
      status = GIMP_PDB_CALLING_ERROR;
      goto fail;
    }
  planes = alloc_planes (width, height, &error);
  if (! planes)
    goto fail;

  ddpm_set_threads (gimp_get_num_processors ());
  ddpm_progress_start (&progress, _("Generating"));
  s = ddpm_job_generate (m, &p, width, height, ddpm_progress_step, &progress,
                         planes, err, sizeof err);
  gimp_progress_end ();
  if (s != DDPM_OK)
    {
      g_set_error (&error, GIMP_PLUG_IN_ERROR, 0, "%s", err);
      status = pdb_status (s);
      goto fail;
    }

  /* "ddpm-texture #1234": model and seed, enough to make it again. */
  layer_name = g_strdup_printf ("%s #%d", name, a.seed);
  layer = insert_texture_layer (image, layer_name, width, height, planes, &error);
  g_free (layer_name);
  if (! layer)
    goto fail;

  ret = gimp_procedure_new_return_values (procedure, GIMP_PDB_SUCCESS, NULL);
  GIMP_VALUES_SET_LAYER (ret, 1, layer);
  g_free (planes);
  ddpm_model_free (m);
  g_free (name);
  g_free (a.model);
  return ret;

fail:
  g_free (planes);
  if (m)
    ddpm_model_free (m);
  g_free (name);
  g_free (a.model);
  return failure (procedure, status, error);
}

/* ------------------------------------------------------------------------ */
/* plug-in-ddpm-refine                                                       */
/* ------------------------------------------------------------------------ */

/* The rectangle (drawable coordinates) the model works on and its mask:
 * the selection's bounds in the drawable plus REFINE_CONTEXT pixels of
 * surroundings, mask = the selection's values there.  No selection: the
 * whole drawable, mask NULL (= everywhere).  FALSE if there is nothing to
 * do (the selection misses the drawable). */
static gboolean
refine_region (GimpImage     *image,
               GimpDrawable  *drawable,
               GeglRectangle *rect,
               gfloat       **mask,
               GError       **error)
{
  gint x, y, w, h, x1, y1, off_x, off_y;
  gint dw = gimp_drawable_get_width (drawable);
  gint dh = gimp_drawable_get_height (drawable);

  *mask = NULL;
  if (! gimp_drawable_mask_intersect (drawable, &x, &y, &w, &h))
    return FALSE;

  if (! gimp_selection_is_empty (image))
    {
      x1 = MIN (x + w + REFINE_CONTEXT, dw);
      y1 = MIN (y + h + REFINE_CONTEXT, dh);
      x  = MAX (x - REFINE_CONTEXT, 0);
      y  = MAX (y - REFINE_CONTEXT, 0);
      w  = x1 - x;
      h  = y1 - y;
      gimp_drawable_get_offsets (drawable, &off_x, &off_y);
      *mask = ddpm_selection_mask (image, off_x + x, off_y + y, w, h);
      if (! *mask)
        {
          g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                       _("Not enough memory for a %d x %d image"), w, h);
          return FALSE;
        }
    }
  *rect = (GeglRectangle) { x, y, w, h };
  return TRUE;
}

/* The core returns out = m x_gen + (1 - m) x_0 (its last compositing step,
 * with x_0 exact).  Recover x_gen = x_0 + (out - x_0) / m where the selection
 * is partial, so that merge_shadow's own blend by m is the only one.  Below
 * m = 1/1024 the pixel is x_0 to within rounding, so it is left alone. */
static void
unblend (gfloat       *planes,
         const gfloat *x0,
         const gfloat *mask,
         gsize         n)
{
  for (gsize i = 0; i < n; i++)
    {
      gfloat m = mask[i];

      if (m <= 1.0f / 1024.0f || m >= 1.0f)
        continue;
      for (gint c = 0; c < 3; c++)
        planes[c * n + i] = x0[c * n + i] + (planes[c * n + i] - x0[c * n + i]) / m;
    }
}

/* Step 3 of refine: through the shadow buffer, merged with the selection
 * as its mask; one undo step. */
static void
merge_refined (GimpImage        *image,
               GimpDrawable     *drawable,
               const DdpmPixels *px,
               gint              x,
               gint              y)
{
  GeglBuffer *shadow;

  gimp_image_undo_group_start (image);
  shadow = gimp_drawable_get_shadow_buffer (drawable);
  ddpm_pixels_write (px, shadow, x, y);
  g_object_unref (shadow);  /* flushes the tiles to GIMP */
  gimp_drawable_merge_shadow (drawable, TRUE);
  gimp_drawable_update (drawable, x, y, px->width, px->height);
  gimp_image_undo_group_end (image);
}

GimpValueArray *
ddpm_refine_run (GimpProcedure        *procedure,
                 GimpRunMode           run_mode,
                 GimpImage            *image,
                 GimpDrawable        **drawables,
                 GimpProcedureConfig  *config,
                 gpointer              run_data G_GNUC_UNUSED)
{
  CommonArgs         a        = { 0 };
  GimpPDBStatusType  status   = GIMP_PDB_EXECUTION_ERROR;
  GError            *error    = NULL;
  GimpDrawable      *drawable;
  ddpm_model        *m        = NULL;
  gchar             *name     = NULL;
  gfloat            *planes   = NULL;
  gfloat            *mask     = NULL;
  gfloat            *original = NULL;
  DdpmPixels         px       = { 0 };
  GeglRectangle      rect;
  GeglBuffer        *buffer;
  ddpm_job_params    p        = { 0 };
  DdpmProgress       progress;
  ddpm_status        s;
  char               err[512] = "";
  gint               timestep;

  gegl_init (NULL, NULL);

  if (drawables == NULL ||
      gimp_core_object_array_get_length ((GObject **) drawables) != 1)
    {
      g_set_error (&error, GIMP_PLUG_IN_ERROR, 0,
                   _("DDPM Refine works on exactly one selected layer or channel"));
      return failure (procedure, GIMP_PDB_CALLING_ERROR, error);
    }
  drawable = drawables[0];
  if (gimp_item_is_group (GIMP_ITEM (drawable)))
    {
      g_set_error (&error, GIMP_PLUG_IN_ERROR, 0,
                   _("DDPM Refine cannot work on a layer group"));
      return failure (procedure, GIMP_PDB_CALLING_ERROR, error);
    }

  if (run_mode == GIMP_RUN_INTERACTIVE &&
      ! ddpm_dialog_run (procedure, config))
    return gimp_procedure_new_return_values (procedure, GIMP_PDB_CANCEL, NULL);

  common_args_get (config, &a);
  g_object_get (config, "timestep", &timestep, NULL);

  m = load_model (a.model, &name, &status, &error);
  if (! m)
    goto out;
  if (! job_params (m, &a, timestep, &p, &error))
    {
      status = GIMP_PDB_CALLING_ERROR;
      goto out;
    }
  if (! refine_region (image, drawable, &rect, &mask, &error))
    {
      if (! error)
        status = GIMP_PDB_SUCCESS;  /* the selection misses the drawable */
      goto out;
    }

  planes = alloc_planes (rect.width, rect.height, &error);
  if (! planes || ! ddpm_pixels_init (&px, drawable, rect.width, rect.height))
    {
      if (! error)
        g_set_error (&error, GIMP_PLUG_IN_ERROR, 0,
                     _("Not enough memory for a %d x %d image"), rect.width, rect.height);
      goto out;
    }
  buffer = gimp_drawable_get_buffer (drawable);
  ddpm_pixels_read (&px, buffer, rect.x, rect.y);
  g_object_unref (buffer);
  ddpm_pixels_to_planes (&px, planes);

  if (mask)
    original = g_memdup2 (planes, (gsize) 3 * rect.width * rect.height * sizeof (gfloat));

  ddpm_set_threads (gimp_get_num_processors ());
  ddpm_progress_start (&progress, _("Refining"));
  s = ddpm_job_refine (m, &p, rect.width, rect.height, planes, mask,
                       ddpm_progress_step, &progress, planes, err, sizeof err);
  gimp_progress_end ();
  if (s != DDPM_OK)
    {
      g_set_error (&error, GIMP_PLUG_IN_ERROR, 0, "%s", err);
      status = pdb_status (s);
      goto out;
    }

  /* RGB from the job, alpha as it was.  merge_shadow blends by the
   * selection, as for every GIMP filter, and the core has blended by the
   * same mask already: undo the core's blend first so feathered edges are
   * weighted by m, not m^2. */
  if (original)
    unblend (planes, original, mask, rect.width * rect.height);
  ddpm_pixels_from_planes (&px, planes, FALSE);
  merge_refined (image, drawable, &px, rect.x, rect.y);
  status = GIMP_PDB_SUCCESS;

out:
  ddpm_pixels_clear (&px);
  g_free (planes);
  g_free (original);
  g_free (mask);
  if (m)
    ddpm_model_free (m);
  g_free (name);
  g_free (a.model);
  return failure (procedure, status, error);
}
