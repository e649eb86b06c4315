/* models.c: where the plug-in finds model folders.
 *
 * A model folder is what diffusers' save_pretrained writes for a UNet2DModel
 * and its DDPMScheduler: config.json, diffusion_pytorch_model.safetensors and
 * scheduler_config.json.  The `model` argument names one:
 *
 *   ""                the shipped model, searched in this order:
 *                       <plug-in folder>/models/ddpm-texture   (copied into a profile)
 *                       DDPM_DEFAULT_MODEL_INSTALLED           (meson install)
 *                       DDPM_DEFAULT_MODEL_SOURCE              (the source tree)
 *   "name"            <GIMP profile>/ddpm-models/name, else
 *                     <plug-in folder>/models/name, else the shipped model if
 *                     name is "ddpm-texture"
 *   "/absolute/path"  that folder
 */

#include <string.h>

#include <libgimp/gimp.h>
#include <glib/gi18n.h>

#include "ddpm-plugin.h"

gchar *
ddpm_user_models_dir (void)
{
  return g_build_filename (gimp_directory (), "ddpm-models", NULL);
}

gboolean
ddpm_is_model_folder (const gchar *dir)
{
  gchar   *config  = g_build_filename (dir, "config.json", NULL);
  gchar   *weights = g_build_filename (dir, "diffusion_pytorch_model.safetensors", NULL);
  gboolean ok      = g_file_test (config, G_FILE_TEST_IS_REGULAR) &&
                     g_file_test (weights, G_FILE_TEST_IS_REGULAR);

  g_free (config);
  g_free (weights);
  return ok;
}

/* <folder of the plug-in executable>/models: GIMP starts a plug-in with its
 * absolute path, so this is where a copied-in profile install keeps models. */
static gchar *
plug_in_models_dir (void)
{
  gchar *exe_dir = g_path_get_dirname (gimp_get_progname ());
  gchar *dir     = g_build_filename (exe_dir, "models", NULL);

  g_free (exe_dir);
  return dir;
}

gchar *
ddpm_shipped_model_dir (void)
{
  gchar       *next_to_exe = plug_in_models_dir ();
  gchar       *candidates[3];
  gchar       *found = NULL;

  candidates[0] = g_build_filename (next_to_exe, DDPM_SHIPPED_MODEL, NULL);
  candidates[1] = g_strdup (DDPM_DEFAULT_MODEL_INSTALLED);
  candidates[2] = g_strdup (DDPM_DEFAULT_MODEL_SOURCE);

  for (gint i = 0; i < 3; i++)
    {
      if (! found && ddpm_is_model_folder (candidates[i]))
        found = g_strdup (candidates[i]);
      g_free (candidates[i]);
    }
  g_free (next_to_exe);
  return found;
}

gchar *
ddpm_resolve_model (const gchar  *model,
                    GError      **error)
{
  gchar *user_dir;
  gchar *dir;

  if (model == NULL || model[0] == '\0')
    {
      dir = ddpm_shipped_model_dir ();
      if (! dir)
        g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                     _("The shipped model \"%s\" is not installed (looked in "
                       "the plug-in's models folder, %s and %s)"),
                     DDPM_SHIPPED_MODEL, DDPM_DEFAULT_MODEL_INSTALLED,
                     DDPM_DEFAULT_MODEL_SOURCE);
      return dir;
    }

  if (g_path_is_absolute (model))
    {
      if (ddpm_is_model_folder (model))
        return g_strdup (model);
      g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                   _("Unknown model \"%s\": not a model folder (it needs "
                     "config.json and diffusion_pytorch_model.safetensors)"),
                   model);
      return NULL;
    }

  /* A bare name: no separators, so it cannot climb out of the folders. */
  if (strchr (model, '/') == NULL && strchr (model, '\\') == NULL &&
      strcmp (model, ".") != 0 && strcmp (model, "..") != 0)
    {
      gchar *exe_models = plug_in_models_dir ();

      user_dir = ddpm_user_models_dir ();
      dir = g_build_filename (user_dir, model, NULL);
      if (! ddpm_is_model_folder (dir))
        {
          g_free (dir);
          dir = g_build_filename (exe_models, model, NULL);
        }
      if (! ddpm_is_model_folder (dir))
        {
          g_free (dir);
          dir = strcmp (model, DDPM_SHIPPED_MODEL) == 0 ? ddpm_shipped_model_dir () : NULL;
        }
      g_free (exe_models);
      if (dir)
        {
          g_free (user_dir);
          return dir;
        }
      g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
                   _("Unknown model \"%s\": there is no model folder of that "
                     "name in %s (a model folder has config.json and "
                     "diffusion_pytorch_model.safetensors)"),
                   model, user_dir);
      g_free (user_dir);
      return NULL;
    }

  g_set_error (error, GIMP_PLUG_IN_ERROR, 0,
               _("Unknown model \"%s\": give a folder name from the "
                 "ddpm-models folder or an absolute path"), model);
  return NULL;
}

static gint
compare_names (gconstpointer a,
               gconstpointer b)
{
  return g_utf8_collate (a, b);
}

GList *
ddpm_list_models (void)
{
  gchar       *user_dir = ddpm_user_models_dir ();
  GDir        *gdir     = g_dir_open (user_dir, 0, NULL);
  GList       *names    = NULL;
  gchar       *shipped  = ddpm_shipped_model_dir ();
  const gchar *entry;

  while (gdir && (entry = g_dir_read_name (gdir)))
    {
      gchar *dir = g_build_filename (user_dir, entry, NULL);

      if (ddpm_is_model_folder (dir))
        names = g_list_prepend (names, g_strdup (entry));
      g_free (dir);
    }
  names = g_list_sort (names, compare_names);
  if (shipped)
    names = g_list_prepend (names, g_strdup (""));

  if (gdir)
    g_dir_close (gdir);
  g_free (shipped);
  g_free (user_dir);
  return names;
}

gint
ddpm_model_timesteps (const gchar *model)
{
  ddpm_scheduler_config sc;
  gchar                *dir  = ddpm_resolve_model (model, NULL);
  gchar                *path;
  gint                  T    = 0;

  if (! dir)
    return 0;
  ddpm_scheduler_config_default (&sc);
  path = g_build_filename (dir, "scheduler_config.json", NULL);
  if (! g_file_test (path, G_FILE_TEST_EXISTS) ||
      ddpm_scheduler_config_load (path, &sc, NULL, 0) == DDPM_OK)
    T = sc.num_train_timesteps;
  g_free (path);
  g_free (dir);
  return T;
}
