/* cmd_model.c: `ddpm info` (what a model is and costs) and `ddpm bench`
 * (how fast one U-Net evaluation runs here). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "args.h"
#include "cli.h"
#include "image_io.h"
#include "progress.h"

#define MIB (1024.0 * 1024.0)

/* --size WxH, checked before the model is loaded; 0 x 0 when not given. */
static int read_size(const char *text, int *width, int *height)
{
    *width = *height = 0;
    if (text && parse_size("size", text, IMAGE_MAX_SIDE, width, height) != 0)
        return CLI_EXIT_USAGE;
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------ */
/* ddpm info                                                                 */
/* ------------------------------------------------------------------------ */

/* What one evaluation at width x height costs: GFLOP and plan memory. */
static void print_cost(const ddpm_model *m, int width, int height)
{
    double gflop = ddpm_model_flops(m, 1, height, width) / 1e9;
    double plan_mib = (double)ddpm_unet_plan_bytes_estimate(m, 1, height, width) / MIB;
    printf("cost         %.3f GFLOP per evaluation at %dx%d, plan scratch %.1f MiB (batch 1)\n", gflop, width,
           height, plan_mib);
}

static int info(const char *model_dir, int width, int height)
{
    ddpm_model *m = NULL;
    const char *used = NULL;
    int rc = cli_load_model(model_dir, &m, &used);
    if (rc != CLI_EXIT_OK)
        return rc;
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    if (width == 0) /* no --size: the training size, if the config has one */
        width = height = mi.sample_size;

    char description[16384] = "";
    ddpm_model_describe(m, description, sizeof description);
    size_t n = strlen(description);
    printf("%s%s", description, n > 0 && description[n - 1] != '\n' ? "\n" : "");
    printf("folder       %s\n", used);
    printf("parameters   %lld (%.1f MiB as float32)\n", mi.parameters, (double)mi.parameters * 4.0 / MIB);
    if (width > 0 && height > 0)
        print_cost(m, width, height);
    else
        printf("(pass --size WxH for the cost of one evaluation)\n");
    ddpm_model_free(m);
    return CLI_EXIT_OK;
}

int cmd_info(int argc, char **argv)
{
    enum { I_MODEL, I_SIZE, I_COUNT };
    cli_option options[I_COUNT] = {
        [I_MODEL] = { "model", "DIR", "model folder (default: the shipped model)", NULL },
        [I_SIZE]  = { "size", "WxH", "image size for the cost figures (default: the training size)", NULL },
    };
    cli_command cmd = {
        "info", "[--model DIR] [--size WxH]",
        "Describe a model folder: architecture, parameters, scheduler settings, and\n"
        "the cost of one U-Net evaluation at a size (GFLOP and scratch memory).",
        options, I_COUNT
    };
    args_result parsed = args_parse(&cmd, argc, argv);
    if (parsed == ARGS_HELP) {
        args_print_help(&cmd, stdout);
        return CLI_EXIT_OK;
    }
    if (parsed == ARGS_ERROR)
        return CLI_EXIT_USAGE;
    int width, height;
    if (read_size(options[I_SIZE].value, &width, &height) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    return info(options[I_MODEL].value, width, height);
}

/* ------------------------------------------------------------------------ */
/* ddpm bench                                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    int batch, width, height, iters, circular;
} bench_shape;

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of_sorted(const double *v, int n)
{
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

static void print_bench(const ddpm_model *m, const char *model_dir, const bench_shape *b, const double *ms)
{
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    double median = median_of_sorted(ms, b->iters);
    double gflop = ddpm_model_flops(m, b->batch, b->height, b->width) / 1e9;
    printf("model        %s (%lld parameters)\n", model_dir, mi.parameters);
    printf("shape        %d x %d x %d x %d, %s padding, threads %d\n", b->batch, mi.in_channels, b->height,
           b->width, b->circular ? "circular" : "zero", ddpm_get_threads());
    printf("iterations   %d after 1 warm-up\n", b->iters);
    printf("median       %.2f ms per evaluation (%.2f ms per image)\n", median, median / b->batch);
    printf("min          %.2f ms per evaluation\n", ms[0]);
    printf("throughput   %.2f GFLOP/s at the median (%.3f GFLOP per evaluation)\n", gflop / (median / 1e3), gflop);
    printf("peak RSS     %.1f MiB\n", peak_rss_mib());
}

/* Time b->iters evaluations (after one warm-up) into ms[], sorted. */
static int time_forward(const ddpm_model *m, const bench_shape *b, double *ms)
{
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    size_t in_size = (size_t)mi.in_channels * (size_t)b->height * (size_t)b->width;
    size_t out_size = (size_t)mi.out_channels * (size_t)b->height * (size_t)b->width;
    float *x = malloc((size_t)b->batch * in_size * sizeof *x);
    float *eps = malloc((size_t)b->batch * out_size * sizeof *eps);
    float *t = malloc((size_t)b->batch * sizeof *t);
    char err[CLI_ERRLEN] = "";
    ddpm_unet_plan *plan = NULL;
    ddpm_status s = DDPM_ERR_MEMORY;
    if (x && eps && t)
        s = ddpm_unet_plan_create(m, b->batch, b->height, b->width, b->circular, &plan, err, sizeof err);
    if (s == DDPM_OK) {
        /* Noise at mid-chain: the cost does not depend on the values. */
        float mid_chain = (float)(cli_scheduler(m)->num_train_timesteps / 2);
        for (int n = 0; n < b->batch; n++) {
            ddpm_noise_fill(0, DDPM_STREAM_START, mi.in_channels, b->height, b->width, 0, 0, x + n * in_size);
            t[n] = mid_chain;
        }
        s = ddpm_unet_forward(plan, x, t, eps, err, sizeof err);
    }
    for (int i = 0; s == DDPM_OK && i < b->iters; i++) {
        if (cancel_requested()) {
            s = DDPM_CANCELLED;
            break;
        }
        double start = now_seconds();
        s = ddpm_unet_forward(plan, x, t, eps, err, sizeof err);
        ms[i] = (now_seconds() - start) * 1e3;
    }
    ddpm_unet_plan_free(plan);
    free(x);
    free(eps);
    free(t);
    if (s == DDPM_CANCELLED) {
        cli_error("cancelled");
        return CLI_EXIT_CANCELLED;
    }
    if (s != DDPM_OK) {
        cli_error("bench: %s", err[0] ? err : ddpm_status_name(s));
        return cli_exit_code(s);
    }
    qsort(ms, (size_t)b->iters, sizeof *ms, compare_double);
    return CLI_EXIT_OK;
}

static int bench(const char *model_dir, bench_shape *b)
{
    ddpm_model *m = NULL;
    const char *used = NULL;
    int rc = cli_load_model(model_dir, &m, &used);
    if (rc != CLI_EXIT_OK)
        return rc;
    ddpm_model_info mi;
    ddpm_model_get_info(m, &mi);
    if (b->width == 0) /* no --size: the training size */
        b->width = b->height = mi.sample_size;
    if (b->width == 0) {
        cli_error("bench: the model has no training size; pass --size WxH");
        rc = CLI_EXIT_USAGE;
    }
    double *ms = rc == CLI_EXIT_OK ? calloc((size_t)b->iters, sizeof *ms) : NULL;
    if (rc == CLI_EXIT_OK && !ms) {
        cli_error("out of memory");
        rc = CLI_EXIT_FAILURE;
    }
    if (rc == CLI_EXIT_OK)
        rc = time_forward(m, b, ms);
    if (rc == CLI_EXIT_OK)
        print_bench(m, used, b, ms);
    free(ms);
    ddpm_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    enum { B_MODEL, B_SIZE, B_BATCH, B_ITERS, B_CIRCULAR, B_THREADS, B_COUNT };
    cli_option options[B_COUNT] = {
        [B_MODEL]    = { "model", "DIR", "model folder (default: the shipped model)", NULL },
        [B_SIZE]     = { "size", "WxH", "image size (default: the training size)", NULL },
        [B_BATCH]    = { "batch", "N", "images per evaluation (default 1)", NULL },
        [B_ITERS]    = { "iters", "N", "timed evaluations after one warm-up (default 5)", NULL },
        [B_CIRCULAR] = { "circular", NULL, "circular padding in every convolution", NULL },
        [B_THREADS]  = { "threads", "N", "worker threads, 0 = all cores (default)", NULL },
    };
    cli_command cmd = {
        "bench", "[--model DIR] [--size WxH] [options]",
        "Time U-Net evaluations: one warm-up, then --iters timed runs.  Prints the\n"
        "median and minimum milliseconds per evaluation, GFLOP/s at the median (FLOPs\n"
        "counted by the model: 2 x multiply-adds) and the peak resident memory.",
        options, B_COUNT
    };
    args_result parsed = args_parse(&cmd, argc, argv);
    if (parsed == ARGS_HELP) {
        args_print_help(&cmd, stdout);
        return CLI_EXIT_OK;
    }
    if (parsed == ARGS_ERROR)
        return CLI_EXIT_USAGE;

    bench_shape b = { .batch = 1, .iters = 5, .circular = options[B_CIRCULAR].value != NULL };
    if ((options[B_BATCH].value && parse_int("batch", options[B_BATCH].value, 1, 1024, &b.batch) != 0) ||
        (options[B_ITERS].value && parse_int("iters", options[B_ITERS].value, 1, 100000, &b.iters) != 0))
        return CLI_EXIT_USAGE;
    if (read_size(options[B_SIZE].value, &b.width, &b.height) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    int rc = cli_apply_threads(options[B_THREADS].value);
    if (rc != CLI_EXIT_OK)
        return rc;
    cancel_install();
    return bench(options[B_MODEL].value, &b);
}
