/* cmd_sample.c: `ddpm generate` and `ddpm refine`: read the inputs, run a
 * core job with a progress bar, write the result as PNG or raw tensor. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "image_io.h"
#include "progress.h"

/* Options both commands take, after each command's own. */
enum { SH_MODEL, SH_STEPS, SH_SAMPLER, SH_ETA, SH_ETA_T_MAX, SH_VARIANCE, SH_SEED, SH_TILEABLE, SH_THREADS,
       SH_BUDGET, SH_COUNT };

/* The defaults of core/ddpm.h as text, so the help cannot drift from them. */
#define TEXT(x) TEXT_(x)
#define TEXT_(x) #x

static const cli_option shared_options[SH_COUNT] = {
    [SH_MODEL]    = { "model", "DIR", "model folder (default: the shipped model)", NULL },
    [SH_STEPS]    = { "steps", "K", "reverse steps, 1 .. T (default 20; refine: at most t)", NULL },
    [SH_SAMPLER]  = { "sampler", "NAME", "ddpm, ddim (default) or dpm-solver++ (see above)", NULL },
    [SH_ETA]      = { "eta", "E", "ddim only: 0 = deterministic .. 1 = ddpm's noise (default "
                      TEXT(DDPM_DEFAULT_ETA) ")", NULL },
    [SH_ETA_T_MAX] = { "eta-t-max", "T", "ddim only: noise only the steps from t <= T, 0 = all (default "
                       TEXT(DDPM_DEFAULT_ETA_T_MAX) ")", NULL },
    [SH_VARIANCE] = { "variance", "beta|posterior",
                      "ddpm only: sigma_t^2 = beta_t or beta~_t (default: the model's variance_type)", NULL },
    [SH_SEED]     = { "seed", "S", "noise seed, 0 .. 2^64-1 (default 0)", NULL },
    [SH_TILEABLE] = { "tileable", NULL, "seamless result: circular padding in every convolution", NULL },
    [SH_THREADS]  = { "threads", "N", "worker threads, 0 = all cores (default)", NULL },
    [SH_BUDGET]   = { "memory-budget", "MiB", "refuse runs needing more memory (default: half the RAM)", NULL },
};

static const char sampler_help[] =
    "Samplers, all on the same K timesteps and noise streams:\n"
    "  ddpm          ancestral sampling (Ho et al. 2020, Algorithm 2), sigma_t^2\n"
    "                from --variance.\n"
    "  ddim          DDIM (Song et al. 2021); --eta 0 is deterministic, --eta 1\n"
    "                has ddpm's posterior noise; by default only the steps\n"
    "                from t <= --eta-t-max are noised.\n"
    "  dpm-solver++  DPM-Solver++(2M) (Lu et al. 2022): deterministic, second\n"
    "                order, meant for few steps.";

static const char output_help[] =
    "FILE.png: 8-bit RGB(A).  FILE.safetensors: the float tensor 'sample'\n"
    "[1,3,H,W] in model space [-1, 1], not clipped.  The output is written to a\n"
    "temporary file and renamed, so it is never half-written; on an error or\n"
    "Ctrl-C it is not created or changed.  Ctrl-C stops after the current step\n"
    "(exit 130).  The same options and seed give the same image with any\n"
    "number of threads.";

/* The image to refine, in model space, and what the output keeps of it. */
typedef struct {
    int width, height;
    float *x0;       /* 3 x height x width                                 */
    uint8_t *alpha;  /* height x width from an RGBA PNG, written back; or NULL */
    float *mask;     /* height x width in [0, 1], 1 = refine; NULL = everywhere */
} refine_input;

/* The settings of one run: first from the command line, then from the model. */
typedef struct {
    const char *label;      /* "generate" or "refine"                  */
    const char *model_dir;  /* --model, NULL = the shipped model        */
    const char *output;     /* .png or .safetensors                     */
    int variance_given;
    int eta_given;
    int period_t_given;
    int period_steps_given;
    ddpm_job_params job;    /* steps = 0 until the model gives a default */
} sample_run;

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

/* DDIM's own options are refused with any other sampler. */
static int only_for_ddim(const sample_run *run, const char *option)
{
    if (run->job.sampler == DDPM_SAMPLER_DDIM)
        return CLI_EXIT_OK;
    cli_error("%s: --%s is only for --sampler ddim (the sampler is %s)", run->label, option,
              ddpm_sampler_name(run->job.sampler));
    return CLI_EXIT_USAGE;
}

static int read_shared_options(const cli_option *o, sample_run *run)
{
    run->model_dir = o[SH_MODEL].value;
    run->job.sampler = DDPM_DEFAULT_SAMPLER;
    /* read by DDIM only; a refine has its --t by now */
    run->job.eta = (float)(run->job.timestep > 0 ? DDPM_DEFAULT_REFINE_ETA : DDPM_DEFAULT_ETA);
    run->job.eta_t_max = DDPM_DEFAULT_ETA_T_MAX;
    if (o[SH_STEPS].value && parse_int("steps", o[SH_STEPS].value, 1, 1000000, &run->job.steps) != 0)
        return CLI_EXIT_USAGE;
    if (o[SH_SAMPLER].value && parse_sampler("sampler", o[SH_SAMPLER].value, &run->job.sampler) != 0)
        return CLI_EXIT_USAGE;
    if (o[SH_ETA].value) {
        double eta;
        if (parse_double("eta", o[SH_ETA].value, 0.0, 1.0, &eta) != 0 || only_for_ddim(run, "eta") != CLI_EXIT_OK)
            return CLI_EXIT_USAGE;
        run->job.eta = (float)eta;
        run->eta_given = 1;
    }
    if (o[SH_ETA_T_MAX].value &&
        (parse_int("eta-t-max", o[SH_ETA_T_MAX].value, 0, 1000000, &run->job.eta_t_max) != 0 ||
         only_for_ddim(run, "eta-t-max") != CLI_EXIT_OK))
        return CLI_EXIT_USAGE;
    if (o[SH_VARIANCE].value) {
        if (parse_variance("variance", o[SH_VARIANCE].value, &run->job.variance) != 0)
            return CLI_EXIT_USAGE;
        run->variance_given = 1;
        if (run->job.sampler != DDPM_SAMPLER_DDPM)
            fprintf(stderr, "ddpm: note: --variance only changes --sampler ddpm; %s ignores it\n",
                    ddpm_sampler_name(run->job.sampler));
    }
    if (o[SH_SEED].value && parse_u64("seed", o[SH_SEED].value, &run->job.seed) != 0)
        return CLI_EXIT_USAGE;
    run->job.tileable = o[SH_TILEABLE].value != NULL;
    if (o[SH_BUDGET].value) {
        int mib;
        long max_mib = SIZE_MAX >> 20 > 1048576 ? 1048576 : (long)(SIZE_MAX >> 20); /* 1 TiB, or size_t's limit */
        if (parse_int("memory-budget", o[SH_BUDGET].value, 0, max_mib, &mib) != 0)
            return CLI_EXIT_USAGE;
        run->job.memory_budget = (size_t)mib << 20;
    }
    return cli_apply_threads(o[SH_THREADS].value);
}

/* --output must be given, end in .png or .safetensors, and be writable. */
static int check_output(const char *label, const char *path)
{
    if (!path) {
        cli_error("%s: --output FILE is required (.png or .safetensors)", label);
        return CLI_EXIT_USAGE;
    }
    if (!has_extension(path, ".png") && !has_extension(path, ".safetensors")) {
        cli_error("%s: --output '%s' must end in .png or .safetensors", label, path);
        return CLI_EXIT_USAGE;
    }
    return cli_check_output_dir(path);
}

/* The default --steps, and the check that the chain has room for them.  Past
 * --t, refine uses every timestep once (as the core does), and says so. */
static int settle_steps(sample_run *run, int T, int refine)
{
    int longest = refine ? run->job.timestep : T;
    if (run->job.steps == 0)
        run->job.steps = longest < DDPM_DEFAULT_STEPS ? longest : DDPM_DEFAULT_STEPS;
    if (run->job.steps > T) {
        cli_error("%s: --steps %d is more than T = %d, the model's timesteps", run->label, run->job.steps, T);
        return CLI_EXIT_USAGE;
    }
    if (run->job.steps > longest) {
        fprintf(stderr, "ddpm: refine: --steps %d is more than --t %d; taking %d steps\n", run->job.steps,
                longest, longest);
        run->job.steps = longest;
    }
    return CLI_EXIT_OK;
}

/* The default --period-steps (at most T), and the check of a given one. */
static int settle_period_steps(sample_run *run, int T)
{
    if (!run->period_steps_given)
        run->job.period_steps = T < DDPM_DEFAULT_PERIOD_STEPS ? T : DDPM_DEFAULT_PERIOD_STEPS;
    if (run->job.period_steps > T) {
        cli_error("generate: --period-steps %d is more than T = %d, the model's timesteps", run->job.period_steps, T);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* px x py: the period of a period-first generate, 0 x 0 for none (its
 * chains take period_eta for eta). */
static void print_settings(const sample_run *run, int px, int py, const char *what, const char *model_dir)
{
    char sampler[64];
    if (run->job.sampler == DDPM_SAMPLER_DDPM)
        snprintf(sampler, sizeof sampler, "ddpm, variance %s", variance_name(run->job.variance));
    else if (run->job.sampler == DDPM_SAMPLER_DDIM) {
        double eta = px > 0 ? run->job.period_eta : run->job.eta;
        snprintf(sampler, sizeof sampler,
                 run->job.eta_t_max && eta > 0 ? "ddim, eta %g from t <= %d" : "ddim, eta %g", eta,
                 run->job.eta_t_max);
    }
    else
        snprintf(sampler, sizeof sampler, "%s", ddpm_sampler_name(run->job.sampler));
    char period[64] = "";
    if (px > 0)
        snprintf(period, sizeof period, ", period %dx%d in %d steps refined from t = %d", px, py,
                 run->job.period_steps, run->job.period_t);
    fprintf(stderr, "ddpm: %s %s: %d steps, sampler %s, seed %llu%s%s, model %s\n", run->label, what,
            run->job.steps, sampler, (unsigned long long)run->job.seed, run->job.tileable ? ", tileable" : "",
            period, model_dir);
}

/* ------------------------------------------------------------------------ */
/* Running and writing                                                       */
/* ------------------------------------------------------------------------ */

/* Report a failed job; returns its exit code. */
static int job_failed(const sample_run *run, ddpm_status s, const char *err)
{
    if (s == DDPM_CANCELLED)
        cli_error("cancelled");
    else
        cli_error("%s: %s", run->label, err[0] ? err : ddpm_status_name(s));
    return cli_exit_code(s);
}

/* Planar model-space floats (3 x H x W) -> interleaved 8-bit RGB(A), only
 * through ddpm_to_u8, the mapping the plug-in uses too. */
static int write_png(const char *path, const float *x, int width, int height, const uint8_t *alpha)
{
    char err[CLI_ERRLEN] = "";
    image_u8 img;
    int channels = alpha ? 4 : 3;
    if (image_alloc(&img, width, height, channels, err, sizeof err) != 0) {
        cli_error("writing output: %s", err);
        return CLI_EXIT_FAILURE;
    }
    size_t plane = (size_t)width * (size_t)height;
    for (size_t i = 0; i < plane; i++) {
        for (int c = 0; c < 3; c++)
            img.pixels[i * channels + c] = ddpm_to_u8(x[c * plane + i]);
        if (alpha)
            img.pixels[i * channels + 3] = alpha[i];
    }
    int rc = CLI_EXIT_OK;
    if (image_write_png(path, &img, err, sizeof err) != 0) {
        cli_error("writing output: %s", err);
        rc = CLI_EXIT_IO;
    }
    image_free(&img);
    return rc;
}

static int write_tensor(const char *path, const float *x, int width, int height)
{
    char err[CLI_ERRLEN] = "";
    const char *names[1] = { "sample" };
    const float *data[1] = { x };
    const int64_t shape[4] = { 1, 3, height, width };
    const int64_t *shapes[1] = { shape };
    const int ndims[1] = { 4 };
    ddpm_status s = ddpm_tensor_write(path, 1, names, data, shapes, ndims, err, sizeof err);
    if (s != DDPM_OK) {
        cli_error("writing output '%s': %s", path, err[0] ? err : ddpm_status_name(s));
        return CLI_EXIT_IO;
    }
    return CLI_EXIT_OK;
}

/* Write the result unless Ctrl-C came first; Ctrl-C during the write itself
 * waits until the file is complete. */
static int write_result(const sample_run *run, const float *x, int width, int height, const uint8_t *alpha)
{
    if (cancel_requested()) {
        cli_error("cancelled");
        return CLI_EXIT_CANCELLED;
    }
    sigset_t saved;
    cancel_hold(&saved);
    int rc = has_extension(run->output, ".png") ? write_png(run->output, x, width, height, alpha)
                                                : write_tensor(run->output, x, width, height);
    cancel_release(&saved);
    if (rc == CLI_EXIT_OK)
        fprintf(stderr, "ddpm: wrote %s (%dx%d)\n", run->output, width, height);
    return rc;
}

static float *alloc_rgb(int width, int height)
{
    float *x = malloc(3 * (size_t)width * (size_t)height * sizeof *x);
    if (!x)
        cli_error("out of memory for a %dx%d image", width, height);
    return x;
}

/* Load the model, settle the defaults it decides, run the job (refine when
 * `in` is given, else generate) and write the result. */
static int run_job(sample_run *run, int width, int height, const refine_input *in, const char *what)
{
    ddpm_model *m = NULL;
    const char *model_dir = NULL;
    int rc = cli_load_model(run->model_dir, &m, &model_dir);
    if (rc != CLI_EXIT_OK)
        return rc;
    const ddpm_scheduler_config *sc = cli_scheduler(m);
    if (!run->variance_given)
        run->job.variance = sc->variance_type;
    int py = 0, px = 0;
    int periodic = !in && ddpm_job_period_shape(m, &run->job, width, height, &py, &px);
    if (!periodic)
        py = px = 0;
    if (periodic && run->eta_given)
        fprintf(stderr, "ddpm: note: --eta is for images generated whole; this period-first run takes "
                        "--period-eta (%g)\n", (double)run->job.period_eta);
    if (periodic && !run->period_t_given && run->job.period_t > sc->num_train_timesteps)
        run->job.period_t = sc->num_train_timesteps;   /* the default, on a model with a shorter chain */
    if (periodic && run->job.period_t > sc->num_train_timesteps) {
        cli_error("generate: --period-t %d is more than T = %d", run->job.period_t, sc->num_train_timesteps);
        rc = CLI_EXIT_USAGE;
    } else if (in && run->job.timestep > sc->num_train_timesteps) {
        cli_error("refine: --t %d is more than T = %d", run->job.timestep, sc->num_train_timesteps);
        rc = CLI_EXIT_USAGE;
    }
    if (rc == CLI_EXIT_OK)
        rc = settle_steps(run, sc->num_train_timesteps, in != NULL);
    if (rc == CLI_EXIT_OK && periodic)
        rc = settle_period_steps(run, sc->num_train_timesteps);
    if (rc == CLI_EXIT_OK && cancel_requested()) {
        cli_error("cancelled");
        rc = CLI_EXIT_CANCELLED;
    }

    float *x = rc == CLI_EXIT_OK ? alloc_rgb(width, height) : NULL;
    if (rc == CLI_EXIT_OK && !x)
        rc = CLI_EXIT_FAILURE;
    if (rc == CLI_EXIT_OK) {
        char err[CLI_ERRLEN] = "";
        print_settings(run, px, py, what, model_dir);
        progress bar;
        progress_start(&bar, run->label);
        ddpm_status s = in ? ddpm_job_refine(m, &run->job, width, height, in->x0, in->mask, progress_update, &bar,
                                             x, err, sizeof err)
                           : ddpm_job_generate(m, &run->job, width, height, progress_update, &bar, x, err, sizeof err);
        progress_finish(&bar);
        rc = s == DDPM_OK ? write_result(run, x, width, height, in ? in->alpha : NULL) : job_failed(run, s, err);
    }
    free(x);
    ddpm_model_free(m);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* ddpm generate                                                             */
/* ------------------------------------------------------------------------ */

/* The period's own options mean nothing with --period 0: refused. */
static int only_with_period(const cli_option *o, int period)
{
    if (period)
        return CLI_EXIT_OK;
    cli_error("generate: --%s is not for --period 0", o->name);
    return CLI_EXIT_USAGE;
}

/* --period-t or --period-steps: a count from 1 up (the model's T bounds it later). */
static int read_period_int(const cli_option *o, int period, int *value, int *given)
{
    *given = 1;
    if (parse_int(o->name, o->value, 1, 1000000, value) != 0)
        return CLI_EXIT_USAGE;
    return only_with_period(o, period);
}

int cmd_generate(int argc, char **argv)
{
    enum { G_SIZE, G_OUTPUT, G_PERIOD, G_PERIOD_T, G_PERIOD_ETA, G_PERIOD_STEPS, G_SHARED,
           G_COUNT = G_SHARED + SH_COUNT };
    cli_option options[G_COUNT] = {
        [G_SIZE]   = { "size", "WxH", "image width x height in pixels (required)", NULL },
        [G_OUTPUT] = { "output", "FILE", "where to write: .png or .safetensors (required)", NULL },
        [G_PERIOD] = { "period", "P", "period-first: a PxP texture, repeated and refined (see above; "
                       "0 = off; default: the model's training size)", NULL },
        [G_PERIOD_T] = { "period-t", "T", "timestep the repeated period is refined from (default "
                         TEXT(DDPM_DEFAULT_PERIOD_T) ")", NULL },
        [G_PERIOD_ETA] = { "period-eta", "E", "ddim only: --eta of a period-first image's chains (default "
                           TEXT(DDPM_DEFAULT_PERIOD_ETA) ")", NULL },
        [G_PERIOD_STEPS] = { "period-steps", "K", "reverse steps of the period's own chain, 1 .. T (default "
                             TEXT(DDPM_DEFAULT_PERIOD_STEPS) ")", NULL },
    };
    memcpy(options + G_SHARED, shared_options, sizeof shared_options);
    char description[2048];
    snprintf(description, sizeof description,
             "Sample a new image: x_T ~ N(0, I), then K reverse steps of the respaced chain.\n"
             "Sizes that are not a multiple of the model's stride are computed at the next\n"
             "multiple and cropped, or with --tileable resampled, so that they still wrap.\n\n"
             "Period-first, the default for images larger than the model's training size\n"
             "(64 for the shipped model): generated whole, a larger image drifts from one\n"
             "texture to another and every seed gives much the same pattern.  So it first\n"
             "generates a PxP tileable texture (P a multiple of 8; --period 0: none),\n"
             "repeats it over the image and refines the whole from --period-t (larger:\n"
             "less repetition, less of the period kept).  With --tileable each axis takes\n"
             "the size nearest to P that divides it.  The period takes --period-steps (a\n"
             "small image: more steps cost little), the refine --steps, at most --period-t.\n"
             "Both chains take --period-eta for --eta: deterministic by default, as the\n"
             "refine removes the speckle that --eta keeps out of whole images.\n\n"
             "%s\n\n%s", sampler_help, output_help);
    cli_command cmd = { "generate", "--size WxH --output FILE [options]", description, options, G_COUNT };

    args_result parsed = args_parse(&cmd, argc, argv);
    if (parsed == ARGS_HELP) {
        args_print_help(&cmd, stdout);
        return CLI_EXIT_OK;
    }
    if (parsed == ARGS_ERROR)
        return CLI_EXIT_USAGE;

    sample_run run = { .label = "generate", .output = options[G_OUTPUT].value };
    int width, height;
    if (!options[G_SIZE].value) {
        cli_error("generate: --size WxH is required");
        return CLI_EXIT_USAGE;
    }
    if (parse_size("size", options[G_SIZE].value, IMAGE_MAX_SIDE, &width, &height) != 0)
        return CLI_EXIT_USAGE;
    int rc = read_shared_options(options + G_SHARED, &run);
    run.job.period = DDPM_DEFAULT_PERIOD;
    run.job.period_t = DDPM_DEFAULT_PERIOD_T;
    run.job.period_eta = (float)DDPM_DEFAULT_PERIOD_ETA;
    if (rc == CLI_EXIT_OK && options[G_PERIOD].value &&
        parse_int("period", options[G_PERIOD].value, 0, IMAGE_MAX_SIDE, &run.job.period) != 0)
        rc = CLI_EXIT_USAGE;
    if (rc == CLI_EXIT_OK && options[G_PERIOD_T].value)
        rc = read_period_int(&options[G_PERIOD_T], run.job.period, &run.job.period_t, &run.period_t_given);
    if (rc == CLI_EXIT_OK && options[G_PERIOD_STEPS].value)
        rc = read_period_int(&options[G_PERIOD_STEPS], run.job.period, &run.job.period_steps,
                             &run.period_steps_given);
    if (rc == CLI_EXIT_OK && options[G_PERIOD_ETA].value) {
        double eta = 0.0;
        if (parse_double("period-eta", options[G_PERIOD_ETA].value, 0.0, 1.0, &eta) != 0 ||
            only_for_ddim(&run, "period-eta") != CLI_EXIT_OK)
            rc = CLI_EXIT_USAGE;
        else
            rc = only_with_period(&options[G_PERIOD_ETA], run.job.period);
        run.job.period_eta = (float)eta;
    }
    if (rc == CLI_EXIT_OK)
        rc = check_output("generate", run.output);
    if (rc != CLI_EXIT_OK)
        return rc;
    cancel_install();
    char what[64];
    snprintf(what, sizeof what, "%dx%d", width, height);
    return run_job(&run, width, height, NULL, what);
}

/* ------------------------------------------------------------------------ */
/* ddpm refine                                                               */
/* ------------------------------------------------------------------------ */

static void refine_input_free(refine_input *in)
{
    free(in->x0);
    free(in->alpha);
    free(in->mask);
    memset(in, 0, sizeof *in);
}

/* 8-bit RGB(A) -> planar model space through ddpm_from_u8; alpha kept aside. */
static int read_png_input(const char *path, refine_input *in)
{
    char err[CLI_ERRLEN] = "";
    image_u8 img;
    if (image_read_png(path, IMAGE_READ_COLOR, &img, err, sizeof err) != 0) {
        cli_error("reading input: %s", err);
        return CLI_EXIT_IO;
    }
    size_t plane = (size_t)img.width * (size_t)img.height;
    int channels = img.channels;
    in->width = img.width;
    in->height = img.height;
    in->x0 = alloc_rgb(img.width, img.height);
    in->alpha = channels == 4 ? malloc(plane) : NULL;
    int rc = CLI_EXIT_OK;
    if (!in->x0 || (channels == 4 && !in->alpha)) {
        cli_error("out of memory reading '%s'", path);
        rc = CLI_EXIT_FAILURE;
    } else {
        for (size_t i = 0; i < plane; i++) {
            for (int c = 0; c < 3; c++)
                in->x0[c * plane + i] = ddpm_from_u8(img.pixels[i * channels + c]);
            if (in->alpha)
                in->alpha[i] = img.pixels[i * channels + 3];
        }
    }
    image_free(&img);
    return rc;
}

/* The raw tensor 'sample', [1,3,H,W] or [3,H,W], taken as it is. */
static int read_tensor_input(const char *path, refine_input *in)
{
    char err[CLI_ERRLEN] = "";
    int64_t shape[DDPM_MAX_DIMS];
    int ndim = 0;
    float *data = NULL;
    ddpm_status s = ddpm_tensor_read(path, "sample", &data, shape, &ndim, err, sizeof err);
    if (s != DDPM_OK) {
        cli_error("reading input '%s': %s", path, err[0] ? err : ddpm_status_name(s));
        return CLI_EXIT_IO;
    }
    const int64_t *chw = ndim == 4 ? shape + 1 : shape;
    int shape_ok = (ndim == 4 && shape[0] == 1) || ndim == 3;
    if (!shape_ok || chw[0] != 3 || chw[1] < 1 || chw[1] > IMAGE_MAX_SIDE || chw[2] < 1 || chw[2] > IMAGE_MAX_SIDE) {
        cli_error("reading input '%s': tensor 'sample' must be [1,3,H,W] or [3,H,W] with H, W in 1 .. %d",
                  path, IMAGE_MAX_SIDE);
        free(data);
        return CLI_EXIT_IO;
    }
    in->height = (int)chw[1];
    in->width = (int)chw[2];
    in->x0 = data;
    return CLI_EXIT_OK;
}

/* Gray PNG (color is converted to gray, alpha ignored): white = refine. */
static int read_mask(const char *path, refine_input *in)
{
    char err[CLI_ERRLEN] = "";
    image_u8 img;
    if (image_read_png(path, IMAGE_READ_GRAY, &img, err, sizeof err) != 0) {
        cli_error("reading mask: %s", err);
        return CLI_EXIT_IO;
    }
    int rc = CLI_EXIT_OK;
    size_t plane = (size_t)img.width * (size_t)img.height;
    if (img.width != in->width || img.height != in->height) {
        cli_error("refine: the mask is %dx%d but the input is %dx%d", img.width, img.height, in->width,
                  in->height);
        rc = CLI_EXIT_USAGE;
    } else if (!(in->mask = malloc(plane * sizeof *in->mask))) {
        cli_error("out of memory reading '%s'", path);
        rc = CLI_EXIT_FAILURE;
    } else {
        for (size_t i = 0; i < plane; i++)
            in->mask[i] = (float)img.pixels[i] / 255.0f;
    }
    image_free(&img);
    return rc;
}

static int read_refine_input(const char *input, const char *mask, refine_input *in)
{
    int rc;
    if (has_extension(input, ".png"))
        rc = read_png_input(input, in);
    else if (has_extension(input, ".safetensors"))
        rc = read_tensor_input(input, in);
    else {
        cli_error("refine: --input '%s' must end in .png or .safetensors", input);
        rc = CLI_EXIT_USAGE;
    }
    if (rc == CLI_EXIT_OK && mask)
        rc = read_mask(mask, in);
    return rc;
}

int cmd_refine(int argc, char **argv)
{
    enum { R_INPUT, R_T, R_MASK, R_OUTPUT, R_SHARED, R_COUNT = R_SHARED + SH_COUNT };
    cli_option options[R_COUNT] = {
        [R_INPUT]  = { "input", "FILE", "image to refine: .png or .safetensors (required)", NULL },
        [R_T]      = { "t", "T", "timestep to re-noise to, 1 .. T: larger changes more (required)", NULL },
        [R_MASK]   = { "mask", "FILE", "gray PNG of the input's size: white = refine, black = keep", NULL },
        [R_OUTPUT] = { "output", "FILE", "where to write: .png or .safetensors (required)", NULL },
    };
    memcpy(options + R_SHARED, shared_options, sizeof shared_options);
    options[R_SHARED + SH_ETA].help = "ddim only: 0 = deterministic .. 1 = ddpm's noise (default "
                                      TEXT(DDPM_DEFAULT_REFINE_ETA) ")";
    char description[2048];
    snprintf(description, sizeof description,
             "Refine an image: x_t = q_sample(x_0) at timestep t (eq. 4), then K reverse\n"
             "steps from t down to 0.  With --mask only the white part changes; the rest\n"
             "is re-noised from the input at every step so both parts agree.  The alpha\n"
             "of an RGBA input is written back unchanged to a PNG output.  DDIM is\n"
             "deterministic here by default (--eta 0): noise would only smooth away the\n"
             "image's own grain.\n\n%s\n\n%s", sampler_help,
             output_help);
    cli_command cmd = { "refine", "--input FILE --t T --output FILE [options]", description, options, R_COUNT };

    args_result parsed = args_parse(&cmd, argc, argv);
    if (parsed == ARGS_HELP) {
        args_print_help(&cmd, stdout);
        return CLI_EXIT_OK;
    }
    if (parsed == ARGS_ERROR)
        return CLI_EXIT_USAGE;

    sample_run run = { .label = "refine", .output = options[R_OUTPUT].value };
    if (!options[R_INPUT].value || !options[R_T].value) {
        cli_error("refine: %s is required", options[R_INPUT].value ? "--t T" : "--input FILE");
        return CLI_EXIT_USAGE;
    }
    if (parse_int("t", options[R_T].value, 1, 1000000, &run.job.timestep) != 0)
        return CLI_EXIT_USAGE;
    int rc = read_shared_options(options + R_SHARED, &run);
    if (rc == CLI_EXIT_OK)
        rc = check_output("refine", run.output);
    if (rc != CLI_EXIT_OK)
        return rc;
    cancel_install();

    refine_input in = { 0 };
    rc = read_refine_input(options[R_INPUT].value, options[R_MASK].value, &in);
    if (rc == CLI_EXIT_OK) {
        char what[CLI_ERRLEN];
        snprintf(what, sizeof what, "%s (%dx%d) from t = %d%s", options[R_INPUT].value, in.width, in.height,
                 run.job.timestep, in.mask ? ", masked" : "");
        rc = run_job(&run, in.width, in.height, &in, what);
    }
    refine_input_free(&in);
    return rc;
}
