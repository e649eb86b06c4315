/* args.h: options of the ddpm subcommands, their help text, strict numbers.
 *
 * Each subcommand describes its options in a table; the same table parses the
 * command line and prints `ddpm CMD --help`, so the help never misses one.
 * Parsing only collects strings; the command converts them with the parse_*
 * helpers, which print "ddpm: --opt: ..." and return -1 on bad input.
 */
#ifndef DDPM_CLI_ARGS_H
#define DDPM_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

#include "ddpm.h"

typedef struct {
    const char *name;    /* long name without dashes: "size"                   */
    const char *metavar; /* what the value looks like: "WxH"; NULL for a flag  */
    const char *help;    /* one line                                           */
    const char *value;   /* set by args_parse: the text, "" for a flag given,
                            NULL when the option was not given                 */
} cli_option;

typedef struct {
    const char *name;        /* "generate"                                     */
    const char *usage;       /* what follows "ddpm generate" in the usage line */
    const char *description; /* paragraphs for `ddpm CMD --help`               */
    cli_option *options;
    int noptions;
} cli_command;

typedef enum { ARGS_OK, ARGS_HELP, ARGS_ERROR } args_result;

/* Parse argv[1 .. argc-1] (argv[0] is the subcommand) into cmd->options.
 * Accepts "--name value", "--name=value" and "-h"/"--help".  An unknown
 * option, a missing value, an option given twice or a stray word is an error
 * (printed, with a hint to --help). */
args_result args_parse(const cli_command *cmd, int argc, char **argv);
void args_print_help(const cli_command *cmd, FILE *out);

/* Strict conversions: the whole text must be the number, in min .. max. */
int parse_int(const char *opt, const char *text, long min, long max, int *out);
int parse_u64(const char *opt, const char *text, uint64_t *out);
/* "WxH" (or "N" for N x N), each side in 1 .. max_side. */
int parse_size(const char *opt, const char *text, int max_side, int *width, int *height);
/* A decimal number ("0", "0.5", "1e-1") and nothing else, in min .. max. */
int parse_double(const char *opt, const char *text, double min, double max, double *out);
/* "beta" / "fixed_large" or "posterior" / "fixed_small". */
int parse_variance(const char *opt, const char *text, ddpm_variance *out);
const char *variance_name(ddpm_variance v);
/* "ddpm", "ddim" or "dpm-solver++" (ddpm_sampler_name's names). */
int parse_sampler(const char *opt, const char *text, ddpm_sampler *out);

/* Does `path` end in `ext` (".png"), ignoring case? */
int has_extension(const char *path, const char *ext);

#endif /* DDPM_CLI_ARGS_H */
