/* args.c: option tables -> strings, help text, and strict number parsing. */
#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

/* ------------------------------------------------------------------------ */
/* The command line                                                          */
/* ------------------------------------------------------------------------ */

static cli_option *find_option(const cli_command *cmd, const char *name, size_t len)
{
    for (int i = 0; i < cmd->noptions; i++) {
        cli_option *o = &cmd->options[i];
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    }
    return NULL;
}

args_result args_parse(const cli_command *cmd, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
            return ARGS_HELP;
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            cli_error("%s: unexpected argument '%s' (see ddpm %s --help)", cmd->name, arg, cmd->name);
            return ARGS_ERROR;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_option *o = find_option(cmd, name, len);
        if (!o) {
            cli_error("%s: unknown option '--%.*s' (see ddpm %s --help)", cmd->name, (int)len, name, cmd->name);
            return ARGS_ERROR;
        }
        if (o->value) {
            cli_error("%s: --%s is given twice", cmd->name, o->name);
            return ARGS_ERROR;
        }
        if (!o->metavar) {
            if (eq) {
                cli_error("%s: --%s takes no value", cmd->name, o->name);
                return ARGS_ERROR;
            }
            o->value = "";
        } else if (eq) {
            o->value = eq + 1;
        } else if (i + 1 < argc) {
            o->value = argv[++i];
        } else {
            cli_error("%s: --%s needs a value (%s)", cmd->name, o->name, o->metavar);
            return ARGS_ERROR;
        }
    }
    return ARGS_OK;
}

void args_print_help(const cli_command *cmd, FILE *out)
{
    fprintf(out, "usage: ddpm %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->usage, cmd->description);
    /* Align the help column after the longest "--name METAVAR". */
    int column = (int)strlen("-h, --help");
    for (int i = 0; i < cmd->noptions; i++) {
        const cli_option *o = &cmd->options[i];
        int w = 2 + (int)strlen(o->name) + (o->metavar ? 1 + (int)strlen(o->metavar) : 0);
        if (w > column)
            column = w;
    }
    for (int i = 0; i < cmd->noptions; i++) {
        const cli_option *o = &cmd->options[i];
        int w = fprintf(out, "  --%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        fprintf(out, "%*s%s\n", column + 4 - w, "", o->help);
    }
    fprintf(out, "  %-*s%s\n", column + 2, "-h, --help", "show this help");
}

/* ------------------------------------------------------------------------ */
/* Numbers                                                                   */
/* ------------------------------------------------------------------------ */

/* A decimal integer and nothing else: no blanks, no "+", no trailing text. */
static int text_to_long(const char *text, long *out)
{
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (!isdigit((unsigned char)digits[0]))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int parse_int(const char *opt, const char *text, long min, long max, int *out)
{
    long v;
    if (text_to_long(text, &v) != 0) {
        cli_error("--%s: '%s' is not a whole number", opt, text);
        return -1;
    }
    if (v < min || v > max) {
        cli_error("--%s: %ld is outside %ld .. %ld", opt, v, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int parse_u64(const char *opt, const char *text, uint64_t *out)
{
    if (!isdigit((unsigned char)text[0])) {
        cli_error("--%s: '%s' is not a number from 0 to 18446744073709551615", opt, text);
        return -1;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0') {
        cli_error("--%s: '%s' is not a number from 0 to 18446744073709551615", opt, text);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static int parse_side(const char *opt, const char *what, const char *text, int max_side, int *out)
{
    long v;
    if (text_to_long(text, &v) != 0 || v < 1 || v > max_side) {
        cli_error("--%s: %s '%s' is not a whole number in 1 .. %d", opt, what, text, max_side);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int parse_size(const char *opt, const char *text, int max_side, int *width, int *height)
{
    const char *x = strpbrk(text, "xX");
    if (!x) {
        if (parse_side(opt, "size", text, max_side, width) != 0)
            return -1;
        *height = *width;
        return 0;
    }
    char w_text[32];
    size_t w_len = (size_t)(x - text);
    if (w_len == 0 || w_len >= sizeof w_text || x[1] == '\0') {
        cli_error("--%s: '%s' is not WxH (for example 256x256)", opt, text);
        return -1;
    }
    memcpy(w_text, text, w_len);
    w_text[w_len] = '\0';
    if (parse_side(opt, "width", w_text, max_side, width) != 0 ||
        parse_side(opt, "height", x + 1, max_side, height) != 0)
        return -1;
    return 0;
}

int parse_double(const char *opt, const char *text, double min, double max, double *out)
{
    /* strtod alone would take blanks, "inf", "nan" and hexadecimal. */
    const char *p = text[0] == '-' ? text + 1 : text;
    if (!isdigit((unsigned char)p[0]) && !(p[0] == '.' && isdigit((unsigned char)p[1]))) {
        cli_error("--%s: '%s' is not a number", opt, text);
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || strpbrk(text, "xX") != NULL) {
        cli_error("--%s: '%s' is not a number", opt, text);
        return -1;
    }
    if (!(v >= min && v <= max)) {
        cli_error("--%s: %s is outside %g .. %g", opt, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int parse_variance(const char *opt, const char *text, ddpm_variance *out)
{
    if (strcmp(text, "beta") == 0 || strcmp(text, "fixed_large") == 0) {
        *out = DDPM_VARIANCE_BETA;
    } else if (strcmp(text, "posterior") == 0 || strcmp(text, "fixed_small") == 0) {
        *out = DDPM_VARIANCE_POSTERIOR;
    } else {
        cli_error("--%s: '%s' is neither 'beta' nor 'posterior'", opt, text);
        return -1;
    }
    return 0;
}

const char *variance_name(ddpm_variance v)
{
    return v == DDPM_VARIANCE_BETA ? "beta" : "posterior";
}

int parse_sampler(const char *opt, const char *text, ddpm_sampler *out)
{
    if (ddpm_sampler_parse(text, out) != DDPM_OK) {
        cli_error("--%s: '%s' is not one of ddpm, ddim, dpm-solver++", opt, text);
        return -1;
    }
    return 0;
}

int has_extension(const char *path, const char *ext)
{
    size_t n = strlen(path), e = strlen(ext);
    return n > e && strcasecmp(path + n - e, ext) == 0;
}
