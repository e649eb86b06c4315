/* dialog.c: the dialog of both procedures.
 *
 * A GimpProcedureDialog builds a widget for every argument and keeps it
 * bound to the config, so OK leaves the values in the config and libgimp
 * remembers them for the next run.  What is added here by hand:
 *
 *   - the model chooser: a combo of the shipped model and every model folder
 *     in <GIMP profile>/ddpm-models, bound to the string argument "model"
 *   - a "New Seed" button next to the seed
 *   - steps, timestep and the period's step count and noise level follow
 *     the chosen model's T (their ranges, and values above it come down to it)
 *   - refine: a line saying how strong the chosen timestep is (t0 / T)
 *   - variance is only for the DDPM sampler, eta and eta-t-max only for DDIM
 *   - generate: the period's step count, noise level and eta only with a
 *     period
 *
 * Mnemonics avoid the letters of the dialog's own buttons (_Reset, _Cancel,
 * _OK, _Load/_Save Settings, _Help): r c o l s h.
 */

#include <string.h>

#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>
#include <glib/gi18n.h>

#include "ddpm-plugin.h"

typedef struct {
  GimpProcedureConfig *config;
  GtkWidget           *steps;          /* GimpLabelSpin of "steps"              */
  GtkWidget           *timestep;       /* GimpSpinScale of "timestep", or NULL  */
  GtkWidget           *period_t;       /* GimpLabelSpin of "period-t", or NULL  */
  GtkWidget           *period_steps;   /* GimpLabelSpin of "period-steps", or NULL */
  GtkWidget           *timestep_hint;  /* GtkLabel, or NULL                     */
  gint                 T;              /* of the chosen model, 0 if unknown     */
} DialogState;

static void
new_seed (GtkButton           *button G_GNUC_UNUSED,
          GimpProcedureConfig *config)
{
  g_object_set (config, "seed", g_random_int_range (0, G_MAXINT), NULL);
}

/* Bound a spin widget to 1 .. upper: a GimpLabelSpin keeps its range in
 * "lower"/"upper", a GimpSpinScale is a GtkSpinButton. */
static void
set_upper (GtkWidget *spin,
           gint       upper)
{
  if (GIMP_IS_SPIN_SCALE (spin))
    gimp_spin_scale_set_scale_limits (GIMP_SPIN_SCALE (spin), 1.0, (gdouble) upper);
  if (GTK_IS_SPIN_BUTTON (spin))
    gtk_spin_button_set_range (GTK_SPIN_BUTTON (spin), 1.0, (gdouble) upper);
  else if (spin && g_object_class_find_property (G_OBJECT_GET_CLASS (spin), "upper"))
    g_object_set (spin, "lower", 1.0, "upper", (gdouble) upper, NULL);
}

static void
update_timestep_hint (DialogState *st)
{
  gint   t0;
  gchar *text;

  if (! st->timestep_hint)
    return;
  g_object_get (st->config, "timestep", &t0, NULL);
  if (st->T > 0)
    /* TRANSLATORS: "noise to t0 = 300 of T = 1000 timesteps (30 % strength)" */
    text = g_strdup_printf (_("noise to t0 = %d of T = %d timesteps (%.0f %% strength)"),
                            t0, st->T, 100.0 * t0 / st->T);
  else
    text = g_strdup (_("(the model's number of timesteps T is unknown)"));
  gtk_label_set_text (GTK_LABEL (st->timestep_hint), text);
  g_free (text);
}

/* An int argument of the config (if the procedure has it) above T comes
 * down to T: a spin's new range does not clamp the value it shows. */
static void
clamp_to_T (GimpProcedureConfig *config,
            const gchar         *property,
            gint                 T)
{
  gint value;

  if (! g_object_class_find_property (G_OBJECT_GET_CLASS (config), property))
    return;
  g_object_get (config, property, &value, NULL);
  if (value > T)
    g_object_set (config, property, T, NULL);
}

/* The model changed: steps, timestep and the period's step count and noise
 * level are bounded by its T (so a model with fewer than 400 timesteps gets
 * a period noise level it can run). */
static void
update_model (DialogState *st)
{
  gchar *model;

  g_object_get (st->config, "model", &model, NULL);
  st->T = ddpm_model_timesteps (model);
  g_free (model);
  if (st->T > 0)
    {
      set_upper (st->steps, st->T);
      set_upper (st->timestep, st->T);
      set_upper (st->period_t, st->T);
      set_upper (st->period_steps, st->T);
      clamp_to_T (st->config, "steps", st->T);
      clamp_to_T (st->config, "timestep", st->T);
      clamp_to_T (st->config, "period-t", st->T);
      clamp_to_T (st->config, "period-steps", st->T);
    }
  update_timestep_hint (st);
}

static void
config_notify (GObject     *config G_GNUC_UNUSED,
               GParamSpec  *pspec,
               DialogState *st)
{
  if (strcmp (pspec->name, "model") == 0)
    update_model (st);
  else if (strcmp (pspec->name, "timestep") == 0)
    update_timestep_hint (st);
}

/* The combo and the "model" argument follow each other.  (Bound by hand:
 * in 3.0.4 the refine dialog lost the initial choice of a combo made with
 * gimp_prop_string_combo_box_new.) */
static void
model_combo_changed (GtkComboBox         *combo,
                     GimpProcedureConfig *config)
{
  gchar *id = gimp_string_combo_box_get_active (GIMP_STRING_COMBO_BOX (combo));
  gchar *model;

  g_object_get (config, "model", &model, NULL);
  if (id && g_strcmp0 (id, model) != 0)
    g_object_set (config, "model", id, NULL);
  g_free (model);
  g_free (id);
}

static void
model_notify (GimpProcedureConfig *config,
              GParamSpec          *pspec G_GNUC_UNUSED,
              GtkWidget           *combo)
{
  gchar *model;

  g_object_get (config, "model", &model, NULL);
  gimp_string_combo_box_set_active (GIMP_STRING_COMBO_BOX (combo), model ? model : "");
  g_free (model);
}

/* The model combo: id column 0 is the "model" argument, label column 1. */
static GtkWidget *
model_combo (GimpProcedureConfig *config)
{
  GtkListStore *store   = gtk_list_store_new (2, G_TYPE_STRING, G_TYPE_STRING);
  GList        *names   = ddpm_list_models ();
  gchar        *current = NULL;
  gboolean      listed  = FALSE;
  GtkWidget    *combo;

  g_object_get (config, "model", &current, NULL);
  if (! current)
    current = g_strdup ("");

  for (GList *l = names; l; l = l->next)
    {
      const gchar *name = l->data;

      gtk_list_store_insert_with_values (store, NULL, -1,
          0, name,
          1, name[0] ? name : _("ddpm-texture (shipped with the plug-in)"),
          -1);
      listed = listed || strcmp (name, current) == 0;
    }

  /* A remembered model that is not in the list: keep it if it still is a
   * model folder (an absolute path), else fall back to the first one. */
  if (! listed)
    {
      gchar *dir = current[0] ? ddpm_resolve_model (current, NULL) : NULL;

      if (dir)
        gtk_list_store_insert_with_values (store, NULL, -1, 0, current, 1, current, -1);
      else if (names)
        {
          g_free (current);
          current = g_strdup (names->data);
          g_object_set (config, "model", current, NULL);
        }
      g_free (dir);
    }

  combo = gimp_string_combo_box_new (GTK_TREE_MODEL (store), 0, 1);
  gimp_string_combo_box_set_active (GIMP_STRING_COMBO_BOX (combo), current);
  g_signal_connect (combo, "changed", G_CALLBACK (model_combo_changed), config);
  g_signal_connect_object (config, "notify::model", G_CALLBACK (model_notify),
                           combo, 0);

  g_object_unref (store);
  g_list_free_full (names, g_free);
  g_free (current);
  return combo;
}

/* /home/me/.config/GIMP/3.0/ddpm-models -> ~/.config/GIMP/3.0/ddpm-models */
static gchar *
display_path (const gchar *path)
{
  const gchar *home = g_get_home_dir ();
  gsize        n    = home ? strlen (home) : 0;

  if (n > 1 && strncmp (path, home, n) == 0 && G_IS_DIR_SEPARATOR (path[n]))
    return g_strconcat ("~", path + n, NULL);
  return g_strdup (path);
}

/* The widget of `property` is sensitive only while "sampler" is `nick`:
 * variance is DDPM's, eta and eta-t-max DDIM's. */
static void
only_for_sampler (GimpProcedureDialog *dlg,
                  const gchar         *property,
                  const gchar         *nick)
{
  GimpValueArray *values = gimp_value_array_new (1);
  GValue          value  = G_VALUE_INIT;

  g_value_init (&value, G_TYPE_STRING);
  g_value_set_string (&value, nick);
  gimp_value_array_append (values, &value);
  g_value_unset (&value);
  /* The dialog takes the array. */
  gimp_procedure_dialog_set_sensitive_if_in (dlg, property, NULL, "sampler", values, TRUE);
}

/* The widget of `property` (the period's step count, noise level, eta)
 * means something only when "period" is not 0. */
static void
only_with_period (GimpProcedureDialog *dlg,
                  const gchar         *property)
{
  GimpValueArray *values = gimp_value_array_new (1);
  GValue          value  = G_VALUE_INIT;

  g_value_init (&value, G_TYPE_INT);
  g_value_set_int (&value, 0);
  gimp_value_array_append (values, &value);
  g_value_unset (&value);
  gimp_procedure_dialog_set_sensitive_if_in (dlg, property, NULL, "period", values, FALSE);
}

static void
make_horizontal (GtkWidget *box)
{
  gtk_orientable_set_orientation (GTK_ORIENTABLE (box), GTK_ORIENTATION_HORIZONTAL);
  gtk_box_set_spacing (GTK_BOX (box), 6);
}

gboolean
ddpm_dialog_run (GimpProcedure       *procedure,
                 GimpProcedureConfig *config)
{
  GimpProcedureDialog *dlg;
  GtkWidget           *dialog, *box, *label, *combo, *button, *help;
  DialogState          st = { .config = config };
  gboolean             refine = gimp_procedure_find_argument (procedure, "timestep") != NULL;
  gchar               *user_dir, *shown_dir, *help_text;
  gboolean             run;

  gimp_ui_init (PLUG_IN_BINARY);
  dialog = gimp_procedure_dialog_new (procedure, config, NULL);
  dlg    = GIMP_PROCEDURE_DIALOG (dialog);

  /* Model: a label and the combo in one row. */
  label = gimp_procedure_dialog_get_label (dlg, "model-label", _("_Model"), FALSE, TRUE);
  box   = gimp_procedure_dialog_fill_box (dlg, "model-box", "model-label", NULL);
  make_horizontal (box);
  combo = model_combo (config);
  gtk_box_pack_start (GTK_BOX (box), combo, TRUE, TRUE, 0);
  gtk_widget_show (combo);
  if (GTK_IS_LABEL (label))
    gtk_label_set_mnemonic_widget (GTK_LABEL (label), combo);

  user_dir  = ddpm_user_models_dir ();
  shown_dir = display_path (user_dir);
  help_text = g_strdup_printf (_("Models: the shipped ddpm-texture and every "
                                 "diffusers model folder (config.json + "
                                 "diffusion_pytorch_model.safetensors) in %s"),
                               shown_dir);
  help = gimp_procedure_dialog_get_label (dlg, "model-help", help_text, FALSE, FALSE);
  if (GTK_IS_LABEL (help))
    {
      gtk_label_set_line_wrap (GTK_LABEL (help), TRUE);
      gtk_label_set_max_width_chars (GTK_LABEL (help), 50);
      gtk_label_set_xalign (GTK_LABEL (help), 0.0);
      gtk_label_set_selectable (GTK_LABEL (help), TRUE);
    }
  g_free (help_text);
  g_free (shown_dir);
  g_free (user_dir);

  /* Seed: the spin and a button for a fresh one. */
  box = gimp_procedure_dialog_fill_box (dlg, "seed-box", "seed", NULL);
  make_horizontal (box);
  button = gtk_button_new_with_mnemonic (_("N_ew Seed"));
  g_signal_connect (button, "clicked", G_CALLBACK (new_seed), config);
  gtk_box_pack_start (GTK_BOX (box), button, FALSE, FALSE, 0);
  gtk_widget_show (button);

  st.steps = gimp_procedure_dialog_get_widget (dlg, "steps", G_TYPE_NONE);
  if (refine)
    {
      st.timestep      = gimp_procedure_dialog_get_spin_scale (dlg, "timestep", 1.0);
      st.timestep_hint = gimp_procedure_dialog_get_label (dlg, "timestep-hint", "",
                                                          FALSE, FALSE);
      if (! GTK_IS_LABEL (st.timestep_hint))
        st.timestep_hint = NULL;
      gimp_procedure_dialog_fill (dlg, "model-box", "timestep", "timestep-hint",
                                  "steps", "sampler", "eta", "eta-t-max",
                                  "variance", "seed-box", "tileable", "model-help", NULL);
    }
  else
    {
      st.period_t     = gimp_procedure_dialog_get_widget (dlg, "period-t", G_TYPE_NONE);
      st.period_steps = gimp_procedure_dialog_get_widget (dlg, "period-steps", G_TYPE_NONE);
      gimp_procedure_dialog_fill (dlg, "model-box", "width", "height", "steps",
                                  "sampler", "eta", "eta-t-max", "variance",
                                  "seed-box", "tileable", "period", "period-steps",
                                  "period-t", "period-eta", "model-help", NULL);
      only_with_period (dlg, "period-steps");
      only_with_period (dlg, "period-t");
      only_with_period (dlg, "period-eta");
    }
  only_for_sampler (dlg, "variance", "ddpm");
  only_for_sampler (dlg, "eta", "ddim");
  only_for_sampler (dlg, "eta-t-max", "ddim");

  update_model (&st);
  g_signal_connect (config, "notify", G_CALLBACK (config_notify), &st);

  run = gimp_procedure_dialog_run (dlg);

  g_signal_handlers_disconnect_by_data (config, &st);
  gtk_widget_destroy (dialog);
  return run;
}
