/* fuzz_model.c: libFuzzer harness for model folders (config.json +
 * scheduler_config.json + diffusion_pytorch_model.safetensors), through the
 * public ddpm_model_load.
 *
 * One input is one folder, packed with length prefixes:
 *
 *   byte 0      flags: bit 0 = write scheduler_config.json,
 *                      bit 1 = circular padding for the forward pass
 *   bytes 1-2   Lc, little-endian: length of config.json
 *   bytes 3-4   Ls, little-endian: length of scheduler_config.json
 *   Lc bytes    config.json
 *   Ls bytes    scheduler_config.json
 *   the rest    diffusion_pytorch_model.safetensors
 *
 * (lengths beyond the end of the input are cut to what is there).  The
 * harness writes the folder into a private temporary directory and loads
 * it.  A refusal must come with a message.  A model that loads must describe
 * itself and run: one forward pass at its smallest size, and a two-step
 * generate job when it has 3 channels in and out, without any sanitizer
 * report; NaN/Inf weights may only come back as DDPM_ERR_NUMERIC.
 *
 * Seeds: tests/fuzz/fuzz_seeds.c packs the test models and small models made
 * from their configs (tools/fuzz.sh). */
#include "ddpm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];

static void remove_dir(void)
{
    static const char *const files[3] = {"config.json", "scheduler_config.json",
                                         "diffusion_pytorch_model.safetensors"};
    char path[512];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ddpm-fuzz-model-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(remove_dir);
    ddpm_set_threads(1);  /* fuzzing runs one input at a time; no thread pool noise */
    return 0;
}

static void write_part(const char *name, const uint8_t *data, size_t len, int present)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!present) {
        unlink(path);
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (len && fwrite(data, 1, len, f) != len)
        abort();
    fclose(f);
}

static size_t take(size_t want, size_t *left)
{
    size_t n = want < *left ? want : *left;
    *left -= n;
    return n;
}

/* A loaded model must be usable at its smallest size. */
static void exercise(const ddpm_model *m, int circular)
{
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    char text[4096];
    ddpm_model_describe(m, text, sizeof text);
    if (memchr(text, 0, sizeof text) == NULL)
        abort();
    int S = info.stride;
    if (ddpm_model_flops(m, 1, S, S) < 0.0)
        abort();
    size_t bytes = ddpm_unet_plan_bytes_estimate(m, 1, S, S);
    if (bytes == 0)
        abort();
    if (bytes > ((size_t)256 << 20))
        return;  /* a valid but huge network: not this harness's business */

    char err[256] = "";
    ddpm_unet_plan *plan = NULL;
    ddpm_status st = ddpm_unet_plan_create(m, 1, S, S, circular, &plan, err, sizeof err);
    if (st != DDPM_OK) {
        if (err[0] == 0)
            abort();
        return;
    }
    size_t n_in = (size_t)info.in_channels * S * S, n_out = (size_t)info.out_channels * S * S;
    float *x = malloc(n_in * sizeof *x), *eps = malloc(n_out * sizeof *eps);
    if (x && eps) {
        for (size_t i = 0; i < n_in; i++)
            x[i] = (float)((int)(i % 17) - 8) / 8.0f;
        float t = 10.0f;
        st = ddpm_unet_forward(plan, x, &t, eps, err, sizeof err);
        if (st != DDPM_OK && st != DDPM_ERR_NUMERIC)
            abort();
        if (st == DDPM_OK)
            for (size_t i = 0; i < n_out; i++)
                if (!(eps[i] == eps[i]) || eps[i] - eps[i] != 0.0f)
                    abort();  /* DDPM_OK with NaN/Inf in the output */
    }
    free(x);
    free(eps);
    ddpm_unet_plan_free(plan);

    if (info.in_channels == 3 && info.out_channels == 3) {
        ddpm_job_params p;
        memset(&p, 0, sizeof p);
        p.steps = 2;
        p.variance = info.scheduler->variance_type;
        p.seed = 1;
        p.tileable = circular;
        p.memory_budget = (size_t)512 << 20;
        float *out = malloc((size_t)3 * S * S * sizeof *out);
        if (out) {
            st = ddpm_job_generate(m, &p, S, S, NULL, NULL, out, err, sizeof err);
            if (st != DDPM_OK && err[0] == 0)
                abort();
        }
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    int flags = data[0];
    size_t left = size - 5;
    size_t lc = take((size_t)data[1] | (size_t)data[2] << 8, &left);
    size_t ls = take((size_t)data[3] | (size_t)data[4] << 8, &left);
    const uint8_t *config = data + 5, *sched = config + lc, *weights = sched + ls;
    write_part("config.json", config, lc, 1);
    write_part("scheduler_config.json", sched, ls, flags & 1);
    write_part("diffusion_pytorch_model.safetensors", weights, left, 1);

    ddpm_model *m = NULL;
    char err[512] = "";
    ddpm_status st = ddpm_model_load(dir, &m, err, sizeof err);
    if (st != DDPM_OK) {
        if (m != NULL || err[0] == 0)
            abort();  /* a refusal leaves no model and says why */
        return 0;
    }
    exercise(m, (flags >> 1) & 1);
    ddpm_model_free(m);
    return 0;
}
