/* ddpm.c: the `ddpm` command: picks the subcommand, and holds what the
 * subcommands share (errors -> exit codes, finding and loading the model). */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"

#ifndef DDPM_VERSION
#define DDPM_VERSION "unknown"
#endif

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} subcommand;

static const subcommand subcommands[] = {
    { "generate", "sample a new image (texture) from noise",                        cmd_generate },
    { "refine",   "re-noise an image to timestep t and denoise it again",           cmd_refine },
    { "forward",  "one U-Net evaluation on tensors from a .safetensors file",       cmd_forward },
    { "info",     "describe a model: architecture, parameters, GFLOP, memory",      cmd_info },
    { "bench",    "time U-Net evaluations: median and min ms, GFLOP/s, peak memory", cmd_bench },
};
#define NSUBCOMMANDS ((int)(sizeof subcommands / sizeof subcommands[0]))

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: ddpm COMMAND [options]\n"
            "\n"
            "Denoising diffusion (Ho et al. 2020) on the CPU with a diffusers UNet2DModel.\n"
            "\n"
            "commands:\n");
    for (int i = 0; i < NSUBCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out,
            "\n"
            "`ddpm COMMAND --help` lists the options of a command.  Without --model the\n"
            "shipped model is used:\n"
            "  %s, or\n"
            "  %s\n"
            "\n"
            "exit codes: 0 done, 1 other failure, 2 bad arguments, 3 model could not be\n"
            "loaded, 4 file could not be read or written, 130 cancelled (Ctrl-C).\n",
            DDPM_DEFAULT_MODEL_INSTALLED, DDPM_DEFAULT_MODEL_SOURCE);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "help") == 0) {
        if (strcmp(name, "help") == 0 && argc > 2) {
            /* "ddpm help generate" = "ddpm generate --help" */
            char *help_argv[] = { argv[2], "--help", NULL };
            for (int i = 0; i < NSUBCOMMANDS; i++)
                if (strcmp(argv[2], subcommands[i].name) == 0)
                    return subcommands[i].run(2, help_argv);
        }
        print_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("ddpm (gimp-ddpm) %s\n", DDPM_VERSION);
        return CLI_EXIT_OK;
    }
    for (int i = 0; i < NSUBCOMMANDS; i++)
        if (strcmp(name, subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    cli_error("unknown command '%s' (see ddpm --help)", name);
    return CLI_EXIT_USAGE;
}

/* ------------------------------------------------------------------------ */
/* Shared by the subcommands                                                 */
/* ------------------------------------------------------------------------ */

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ddpm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_exit_code(ddpm_status s)
{
    switch (s) {
    case DDPM_OK:           return CLI_EXIT_OK;
    case DDPM_CANCELLED:    return CLI_EXIT_CANCELLED;
    case DDPM_ERR_ARGUMENT: return CLI_EXIT_USAGE;
    case DDPM_ERR_IO:       return CLI_EXIT_IO;
    default:                return CLI_EXIT_FAILURE;
    }
}

static int has_config(const char *dir)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/config.json", dir);
    return n > 0 && (size_t)n < sizeof path && access(path, R_OK) == 0;
}

int cli_load_model(const char *dir, ddpm_model **m, const char **used)
{
    *m = NULL;
    if (!dir) {
        if (has_config(DDPM_DEFAULT_MODEL_INSTALLED))
            dir = DDPM_DEFAULT_MODEL_INSTALLED;
        else if (has_config(DDPM_DEFAULT_MODEL_SOURCE))
            dir = DDPM_DEFAULT_MODEL_SOURCE;
        else {
            cli_error("no model installed (looked in %s and %s); pass --model DIR",
                      DDPM_DEFAULT_MODEL_INSTALLED, DDPM_DEFAULT_MODEL_SOURCE);
            return CLI_EXIT_USAGE;
        }
    }
    char err[CLI_ERRLEN] = "";
    ddpm_status s = ddpm_model_load(dir, m, err, sizeof err);
    if (s != DDPM_OK) {
        cli_error("loading model '%s': %s", dir, err[0] ? err : ddpm_status_name(s));
        *m = NULL;
        return CLI_EXIT_MODEL;
    }
    *used = dir;
    return CLI_EXIT_OK;
}

const ddpm_scheduler_config *cli_scheduler(const ddpm_model *m)
{
    static ddpm_scheduler_config fallback;
    ddpm_model_info info;
    ddpm_model_get_info(m, &info);
    if (info.scheduler)
        return info.scheduler;
    ddpm_scheduler_config_default(&fallback);
    return &fallback;
}

int cli_apply_threads(const char *text)
{
    int n;
    if (!text)
        return CLI_EXIT_OK;
    if (parse_int("threads", text, 0, 1024, &n) != 0)
        return CLI_EXIT_USAGE;
    ddpm_set_threads(n);
    return CLI_EXIT_OK;
}

int cli_check_output_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy) {
        cli_error("out of memory");
        return CLI_EXIT_FAILURE;
    }
    const char *dir = dirname(copy);
    int rc = CLI_EXIT_OK;
    if (access(dir, W_OK | X_OK) != 0) {
        cli_error("cannot write '%s': directory '%s': %s", path, dir, strerror(errno));
        rc = CLI_EXIT_IO;
    }
    free(copy);
    return rc;
}
