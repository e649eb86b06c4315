/* cmd_forward.c: `ddpm forward`: one U-Net evaluation, tensors in and out.
 *
 * This is the stable way to check the engine against diffusers:
 *   IN.safetensors   sample [N,C,H,W], timestep [N] (or a scalar / [1] for all)
 *   OUT.safetensors  sample [N,C_out,H,W] F32 = UNet2DModel(sample, timestep).sample
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "progress.h"

/* The input tensors, with the timesteps broadcast to one per sample. */
typedef struct {
    int N, C, H, W;
    float *sample;    /* N x C x H x W */
    float *timestep;  /* N             */
} forward_input;

static void forward_input_free(forward_input *in)
{
    free(in->sample);
    free(in->timestep);
    memset(in, 0, sizeof *in);
}

static int read_sample(const char *path, forward_input *in)
{
    char err[CLI_ERRLEN] = "";
    int64_t shape[DDPM_MAX_DIMS];
    int ndim = 0;
    ddpm_status s = ddpm_tensor_read(path, "sample", &in->sample, shape, &ndim, err, sizeof err);
    if (s != DDPM_OK) {
        cli_error("reading input '%s': %s", path, err[0] ? err : ddpm_status_name(s));
        return CLI_EXIT_IO;
    }
    int ok = ndim == 4;
    for (int i = 0; ok && i < 4; i++)
        ok = shape[i] >= 1 && shape[i] <= 65536;
    if (!ok) {
        cli_error("reading input '%s': tensor 'sample' must be [N,C,H,W] with every size in 1 .. 65536", path);
        return CLI_EXIT_IO;
    }
    in->N = (int)shape[0];
    in->C = (int)shape[1];
    in->H = (int)shape[2];
    in->W = (int)shape[3];
    return CLI_EXIT_OK;
}

/* timestep: [N], or a scalar / [1] that holds for every sample. */
static int read_timestep(const char *path, forward_input *in)
{
    char err[CLI_ERRLEN] = "";
    int64_t shape[DDPM_MAX_DIMS];
    int ndim = 0;
    float *t = NULL;
    ddpm_status s = ddpm_tensor_read(path, "timestep", &t, shape, &ndim, err, sizeof err);
    if (s != DDPM_OK) {
        cli_error("reading input '%s': %s", path, err[0] ? err : ddpm_status_name(s));
        return CLI_EXIT_IO;
    }
    int64_t count = ndim == 0 ? 1 : ndim == 1 ? shape[0] : -1;
    if (count != 1 && count != in->N) {
        cli_error("reading input '%s': tensor 'timestep' must be [%d], [1] or a scalar", path, in->N);
        free(t);
        return CLI_EXIT_IO;
    }
    in->timestep = malloc((size_t)in->N * sizeof *in->timestep);
    if (!in->timestep) {
        cli_error("out of memory");
        free(t);
        return CLI_EXIT_FAILURE;
    }
    for (int i = 0; i < in->N; i++)
        in->timestep[i] = count == 1 ? t[0] : t[i];
    free(t);
    return CLI_EXIT_OK;
}

/* eps = UNet2DModel(sample, timestep) through a plan made for this shape. */
static int evaluate(const ddpm_model *m, const forward_input *in, int circular, float *eps)
{
    char err[CLI_ERRLEN] = "";
    ddpm_unet_plan *plan = NULL;
    ddpm_status s = ddpm_unet_plan_create(m, in->N, in->H, in->W, circular, &plan, err, sizeof err);
    if (s == DDPM_OK)
        s = ddpm_unet_forward(plan, in->sample, in->timestep, eps, err, sizeof err);
    ddpm_unet_plan_free(plan);
    if (s != DDPM_OK) {
        cli_error("forward: %s", err[0] ? err : ddpm_status_name(s));
        return cli_exit_code(s);
    }
    return CLI_EXIT_OK;
}

static int write_eps(const char *path, const float *eps, const forward_input *in, int out_channels)
{
    if (cancel_requested()) {
        cli_error("cancelled");
        return CLI_EXIT_CANCELLED;
    }
    char err[CLI_ERRLEN] = "";
    const char *names[1] = { "sample" };
    const float *data[1] = { eps };
    const int64_t shape[4] = { in->N, out_channels, in->H, in->W };
    const int64_t *shapes[1] = { shape };
    const int ndims[1] = { 4 };
    sigset_t saved;
    cancel_hold(&saved);
    ddpm_status s = ddpm_tensor_write(path, 1, names, data, shapes, ndims, err, sizeof err);
    cancel_release(&saved);
    if (s != DDPM_OK) {
        cli_error("writing output '%s': %s", path, err[0] ? err : ddpm_status_name(s));
        return CLI_EXIT_IO;
    }
    return CLI_EXIT_OK;
}

static int forward(const char *model_dir, const char *input, const char *output, int circular)
{
    forward_input in = { 0 };
    int rc = read_sample(input, &in);
    if (rc == CLI_EXIT_OK)
        rc = read_timestep(input, &in);
    ddpm_model *m = NULL;
    const char *used = NULL;
    if (rc == CLI_EXIT_OK)
        rc = cli_load_model(model_dir, &m, &used);

    ddpm_model_info info;
    float *eps = NULL;
    if (rc == CLI_EXIT_OK) {
        ddpm_model_get_info(m, &info);
        if (in.C != info.in_channels) {
            cli_error("forward: 'sample' has %d channels but the model takes %d", in.C, info.in_channels);
            rc = CLI_EXIT_USAGE;
        }
    }
    if (rc == CLI_EXIT_OK) {
        eps = malloc((size_t)in.N * (size_t)info.out_channels * (size_t)in.H * (size_t)in.W * sizeof *eps);
        if (!eps) {
            cli_error("out of memory for the output [%d,%d,%d,%d]", in.N, info.out_channels, in.H, in.W);
            rc = CLI_EXIT_FAILURE;
        }
    }
    if (rc == CLI_EXIT_OK)
        rc = evaluate(m, &in, circular, eps);
    if (rc == CLI_EXIT_OK)
        rc = write_eps(output, eps, &in, info.out_channels);
    free(eps);
    ddpm_model_free(m);
    forward_input_free(&in);
    return rc;
}

int cmd_forward(int argc, char **argv)
{
    enum { F_MODEL, F_INPUT, F_OUTPUT, F_CIRCULAR, F_THREADS, F_COUNT };
    cli_option options[F_COUNT] = {
        [F_MODEL]    = { "model", "DIR", "model folder (default: the shipped model)", NULL },
        [F_INPUT]    = { "input", "IN.safetensors", "tensors 'sample' [N,C,H,W] and 'timestep' [N] (required)", NULL },
        [F_OUTPUT]   = { "output", "OUT.safetensors", "receives 'sample' [N,C,H,W] float32 (required)", NULL },
        [F_CIRCULAR] = { "circular", NULL, "circular padding in every convolution (as --tileable)", NULL },
        [F_THREADS]  = { "threads", "N", "worker threads, 0 = all cores (default)", NULL },
    };
    cli_command cmd = {
        "forward", "--input IN.safetensors --output OUT.safetensors [options]",
        "One evaluation of the network: OUT 'sample' = UNet2DModel(sample, timestep).sample,\n"
        "as diffusers computes it.  'sample' is float; 'timestep' may be integer or float,\n"
        "[N], [1] or a scalar (then it holds for every sample).  This interface is kept\n"
        "stable: it is how the engine is checked against diffusers (tools/unet_ref.py).",
        options, F_COUNT
    };
    args_result parsed = args_parse(&cmd, argc, argv);
    if (parsed == ARGS_HELP) {
        args_print_help(&cmd, stdout);
        return CLI_EXIT_OK;
    }
    if (parsed == ARGS_ERROR)
        return CLI_EXIT_USAGE;
    if (!options[F_INPUT].value || !options[F_OUTPUT].value) {
        cli_error("forward: %s is required", options[F_INPUT].value ? "--output FILE" : "--input FILE");
        return CLI_EXIT_USAGE;
    }
    if (!has_extension(options[F_OUTPUT].value, ".safetensors")) {
        cli_error("forward: --output '%s' must end in .safetensors", options[F_OUTPUT].value);
        return CLI_EXIT_USAGE;
    }
    int rc = cli_apply_threads(options[F_THREADS].value);
    if (rc == CLI_EXIT_OK)
        rc = cli_check_output_dir(options[F_OUTPUT].value);
    if (rc != CLI_EXIT_OK)
        return rc;
    cancel_install();
    return forward(options[F_MODEL].value, options[F_INPUT].value, options[F_OUTPUT].value,
                   options[F_CIRCULAR].value != NULL);
}
