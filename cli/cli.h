/* cli.h: what the ddpm subcommands share: exit codes, errors, model loading. */
#ifndef DDPM_CLI_H
#define DDPM_CLI_H

#include "ddpm.h"

/* Exit codes, one per kind of failure, so scripts can tell them apart. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,   /* anything else: memory, numerics, ...     */
    CLI_EXIT_USAGE = 2,     /* bad command line or out-of-range value   */
    CLI_EXIT_MODEL = 3,     /* the model folder could not be loaded     */
    CLI_EXIT_IO = 4,        /* an input could not be read, or an output written */
    CLI_EXIT_CANCELLED = 130 /* Ctrl-C (128 + SIGINT, as shells report it) */
};

#define CLI_ERRLEN 1024

/* "ddpm: <message>\n" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The exit code for a failed core call (DDPM_ERR_ARGUMENT -> usage, ...). */
int cli_exit_code(ddpm_status s);

/* Load the model in `dir`, or the shipped one when dir is NULL.  Returns an
 * exit code (CLI_EXIT_OK on success) after printing what went wrong; *used
 * receives the folder that was loaded. */
int cli_load_model(const char *dir, ddpm_model **m, const char **used);

/* The model's scheduler settings (T, default variance). */
const ddpm_scheduler_config *cli_scheduler(const ddpm_model *m);

/* --threads N (0 = all cores); no option leaves the core's default. */
int cli_apply_threads(const char *text);

/* Is the directory `path` will be written to there and writable?  Checked
 * before a long run so it does not fail at the very end. */
int cli_check_output_dir(const char *path);

int cmd_generate(int argc, char **argv);
int cmd_refine(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif /* DDPM_CLI_H */
