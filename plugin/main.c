/* main.c: the GimpPlugIn class of gimp-ddpm and its two PDB procedures.
 *
 *   plug-in-ddpm-generate   Filters > Render > DDPM Texture...
 *   plug-in-ddpm-refine     Filters > Enhance > DDPM Refine...
 *
 * The procedure and argument names are the plug-in's scripting API (batch
 * scripts call them with named arguments), so they never change and are
 * never translated.  What a call does is in run.c.
 */

#include <libgimp/gimp.h>
#include <glib/gi18n.h>

#include "ddpm-plugin.h"

typedef struct { GimpPlugIn      parent_instance; } Ddpm;
typedef struct { GimpPlugInClass parent_class;    } DdpmClass;

GType ddpm_get_type (void);
G_DEFINE_TYPE (Ddpm, ddpm, GIMP_TYPE_PLUG_IN)

/* Catalogs are installed in <plug-in folder>/locale; libgimp binds the
 * domain to that folder before any _() below runs. */
static gboolean
ddpm_set_i18n (GimpPlugIn   *plug_in        G_GNUC_UNUSED,
               const gchar  *procedure_name G_GNUC_UNUSED,
               gchar       **gettext_domain,
               gchar       **catalog_dir)
{
  *gettext_domain = g_strdup (GETTEXT_PACKAGE);
  *catalog_dir    = g_strdup ("locale");
  return TRUE;
}

static GList *
ddpm_query_procedures (GimpPlugIn *plug_in G_GNUC_UNUSED)
{
  GList *names = NULL;

  names = g_list_append (names, g_strdup (PROC_GENERATE));
  names = g_list_append (names, g_strdup (PROC_REFINE));
  return names;
}

/* The arguments both procedures share, in dialog order after their own.
 * Only Eta's default and help differ: a refine starts from the layer, not
 * from noise, and is sharpest deterministic (core/ddpm.h). */
static void
add_common_arguments (GimpProcedure *procedure,
                      gboolean       refine)
{
  gimp_procedure_add_int_argument (procedure, "steps", _("Ste_ps"),
      _("Number of denoising steps K, 1 to the model's T: the T training "
        "timesteps are respaced to K (more steps: slower, finer detail)"),
      1, 100000, DDPM_DEFAULT_STEPS, G_PARAM_READWRITE);

  gimp_procedure_add_choice_argument (procedure, "variance", _("_Variance"),
      _("Variance σ²_t of the noise added back at each reverse step "
        "(Ho et al. 2020, section 3.2).  \"beta\": σ²_t = β_t, the larger one "
        "(diffusers fixed_large): more fresh noise per step, grainier "
        "texture, often better with few steps.  \"posterior\": σ²_t = β̃_t, "
        "the variance of the posterior q(x_{t-1} | x_t, x_0) (diffusers "
        "fixed_small): smaller, smoother and cleaner.  The paper found both "
        "alike with the full chain.  \"default\": the model's own choice "
        "(variance_type in its scheduler_config.json)."),
      gimp_choice_new_with_values (
          "default",   VARIANCE_DEFAULT,   _("Model default"),
                       _("The variance_type of the model's scheduler_config.json"),
          "beta",      VARIANCE_BETA,      _("β_t (larger: more texture)"),
                       _("σ²_t = β_t (diffusers fixed_large)"),
          "posterior", VARIANCE_POSTERIOR, _("β̃_t (posterior: smoother)"),
                       _("σ²_t = β̃_t (diffusers fixed_small)"),
          NULL),
      "default", G_PARAM_READWRITE);

  gimp_procedure_add_int_argument (procedure, "seed", _("See_d"),
      _("Random seed: the same seed and settings give the same pixels"),
      0, G_MAXINT, 0, G_PARAM_READWRITE);

  gimp_procedure_add_boolean_argument (procedure, "tileable", _("T_ileable"),
      _("Circular padding in every convolution, so the result tiles "
        "seamlessly"),
      FALSE, G_PARAM_READWRITE);

  /* Added with the core's few-step samplers; after the original arguments
   * so that older (positional) calls keep their meaning. */
  gimp_procedure_add_choice_argument (procedure, "sampler", _("S_ampler"),
      _("The reverse process, on the same K timesteps and noise: \"ddpm\" "
        "(Ho et al. 2020, Algorithm 2; σ²_t from Variance), \"ddim\" (Song "
        "et al. 2021; eta 0 is deterministic) or \"dpm-solver++\" "
        "(DPM-Solver++(2M), Lu et al. 2022: deterministic, second order, "
        "meant for few steps)"),
      gimp_choice_new_with_values (
          "ddpm",         DDPM_SAMPLER_DDPM,          _("DDPM"),
                          _("Ancestral sampling, Ho et al. 2020"),
          "ddim",         DDPM_SAMPLER_DDIM,          _("DDIM"),
                          _("Song et al. 2021"),
          "dpm-solver++", DDPM_SAMPLER_DPM_SOLVER_PP, _("DPM-Solver++(2M)"),
                          _("Lu et al. 2022, for few steps"),
          NULL),
      ddpm_sampler_name (DDPM_DEFAULT_SAMPLER), G_PARAM_READWRITE);

  gimp_procedure_add_double_argument (procedure, "eta", _("E_ta"),
      refine ?
      _("DDIM only: the noise of each step, from 0 (deterministic) to 1 "
        "(DDPM's posterior variance β̃_t).  Noise smooths away the "
        "layer's own grain, so a refine is sharpest at 0") :
      _("DDIM only: the noise of each step, from 0 (deterministic) to 1 "
        "(DDPM's posterior variance β̃_t).  Some noise keeps the texture "
        "from the coloured grain of a fully deterministic run"),
      0.0, 1.0, refine ? DDPM_DEFAULT_REFINE_ETA : DDPM_DEFAULT_ETA,
      G_PARAM_READWRITE);

  gimp_procedure_add_int_argument (procedure, "eta-t-max", _("Eta _below timestep"),
      _("DDIM only: Eta noises the steps from this timestep down; the "
        "steps above it run deterministic, which keeps more of the "
        "texture's fine grain.  0: every step (DDIM as Song et al. "
        "2021 wrote it)"),
      0, 100000, DDPM_DEFAULT_ETA_T_MAX, G_PARAM_READWRITE);
}

static void
add_model_argument (GimpProcedure *procedure)
{
  gimp_procedure_add_string_argument (procedure, "model", _("_Model"),
      _("Model folder: empty for the shipped \"ddpm-texture\", the "
        "name of a folder in the ddpm-models folder of your GIMP profile, or "
        "an absolute path.  A model folder is a diffusers UNet2DModel: "
        "config.json, diffusion_pytorch_model.safetensors and "
        "scheduler_config.json"),
      "", G_PARAM_READWRITE);
}

static GimpProcedure *
create_generate (GimpPlugIn *plug_in)
{
  GimpProcedure *procedure;

  procedure = gimp_image_procedure_new (plug_in, PROC_GENERATE,
                                        GIMP_PDB_PROC_TYPE_PLUGIN,
                                        ddpm_generate_run, NULL, NULL);
  gimp_procedure_set_image_types (procedure, "RGB*, GRAY*");
  /* A generator needs no selected layer. */
  gimp_procedure_set_sensitivity_mask (procedure,
                                       GIMP_PROCEDURE_SENSITIVE_DRAWABLE |
                                       GIMP_PROCEDURE_SENSITIVE_DRAWABLES |
                                       GIMP_PROCEDURE_SENSITIVE_NO_DRAWABLES);
  gimp_procedure_set_menu_label (procedure, _("DDPM _Texture..."));
  gimp_procedure_add_menu_path (procedure, "<Image>/Filters/Render");
  gimp_procedure_set_documentation (procedure,
      _("Generate a texture with a diffusion model"),
      _("Samples a new texture with a denoising diffusion probabilistic "
        "model (Ho et al. 2020) on the CPU and puts it in a new layer above "
        "the active one, named after the model and the seed.  Besides the "
        "shipped model, every diffusers model folder (config.json + "
        "diffusion_pytorch_model.safetensors) in the ddpm-models folder of "
        "your GIMP profile can be chosen."),
      PROC_GENERATE);
  gimp_procedure_set_attribution (procedure, "gimp-ddpm authors",
                                  "gimp-ddpm authors, GPL-3.0-or-later", "2025");

  add_model_argument (procedure);
  gimp_procedure_add_int_argument (procedure, "width", _("_Width"),
      _("Width of the new layer in pixels (0: the image's width)"),
      0, GIMP_MAX_IMAGE_SIZE, 0, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (procedure, "height", _("Hei_ght"),
      _("Height of the new layer in pixels (0: the image's height)"),
      0, GIMP_MAX_IMAGE_SIZE, 0, G_PARAM_READWRITE);
  add_common_arguments (procedure, FALSE);

  /* Added with period-first generation, after the common arguments so that
   * older positional calls keep their meaning. */
  gimp_procedure_add_int_argument (procedure, "period", _("Period si_ze (-1: the model's)"),
      _("Period-first generation: a layer larger than the period starts as "
        "a small tileable texture of this many pixels a side (a multiple "
        "of 8), repeated over the layer and refined as a whole, so that it "
        "shows one coherent texture instead of a blend of several.  "
        "-1: the size the model was trained at (64 for the shipped model); "
        "0: generate the whole layer at once"),
      DDPM_PERIOD_MODEL, GIMP_MAX_IMAGE_SIZE, DDPM_DEFAULT_PERIOD, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (procedure, "period-t", _("Period _noise level"),
      _("With a period: the timestep the repeated period is noised to "
        "before the whole layer is denoised.  Higher hides the repetition "
        "better but keeps less of the period"),
      1, 100000, DDPM_DEFAULT_PERIOD_T, G_PARAM_READWRITE);
  gimp_procedure_add_double_argument (procedure, "period-eta", _("Eta for period-_first"),
      _("DDIM only, with a period: Eta for both of its runs (the period's "
        "and the whole layer's) in place of Eta, which is for layers "
        "generated at once.  0 (deterministic) gives the sharpest "
        "textures: the refine of the whole layer already removes the "
        "coloured grain that Eta prevents"),
      0.0, 1.0, DDPM_DEFAULT_PERIOD_ETA, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument (procedure, "period-steps", _("Period step co_unt"),
      _("With a period: the number of reverse steps of the period's own "
        "run (at most the model's timesteps T).  The period is a small "
        "image, so more steps cost little and give it finer detail; Steps "
        "is for the run over the whole layer"),
      1, 100000, DDPM_DEFAULT_PERIOD_STEPS, G_PARAM_READWRITE);

  gimp_procedure_add_layer_return_value (procedure, "layer", _("Layer"),
      _("The new layer"), FALSE, G_PARAM_READWRITE);
  return procedure;
}

static GimpProcedure *
create_refine (GimpPlugIn *plug_in)
{
  GimpProcedure *procedure;

  procedure = gimp_image_procedure_new (plug_in, PROC_REFINE,
                                        GIMP_PDB_PROC_TYPE_PLUGIN,
                                        ddpm_refine_run, NULL, NULL);
  gimp_procedure_set_image_types (procedure, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask (procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  gimp_procedure_set_menu_label (procedure, _("DDPM _Refine..."));
  gimp_procedure_add_menu_path (procedure, "<Image>/Filters/Enhance");
  gimp_procedure_set_documentation (procedure,
      _("Re-noise and denoise the selection with a diffusion model"),
      _("Adds noise to the selected layer up to a timestep of the diffusion "
        "process and denoises it back with the model: low timesteps touch up "
        "fine detail, high ones re-invent the content.  Only the selection "
        "changes, with a smooth transition at feathered edges.  Models are "
        "found as for DDPM Texture."),
      PROC_REFINE);
  gimp_procedure_set_attribution (procedure, "gimp-ddpm authors",
                                  "gimp-ddpm authors, GPL-3.0-or-later", "2025");

  add_model_argument (procedure);
  gimp_procedure_add_int_argument (procedure, "timestep", _("_Noise level"),
      _("Timestep t0 in 1 .. T the layer is noised to before it is denoised "
        "back: the fraction t0/T is the strength of the change"),
      1, 100000, 300, G_PARAM_READWRITE);
  add_common_arguments (procedure, TRUE);
  return procedure;
}

static GimpProcedure *
ddpm_create_procedure (GimpPlugIn  *plug_in,
                       const gchar *name)
{
  if (g_strcmp0 (name, PROC_GENERATE) == 0)
    return create_generate (plug_in);
  if (g_strcmp0 (name, PROC_REFINE) == 0)
    return create_refine (plug_in);
  return NULL;
}

static void
ddpm_class_init (DdpmClass *klass)
{
  GimpPlugInClass *plug_in_class = GIMP_PLUG_IN_CLASS (klass);

  plug_in_class->query_procedures = ddpm_query_procedures;
  plug_in_class->create_procedure = ddpm_create_procedure;
  plug_in_class->set_i18n         = ddpm_set_i18n;
}

static void
ddpm_init (Ddpm *self G_GNUC_UNUSED)
{
}

GIMP_MAIN (ddpm_get_type ())
