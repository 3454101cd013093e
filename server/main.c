/*
 * main.c - llamad's entry point: command line and configuration, then
 * either a one-shot mode (--check-config, --dump-model, --prompt) or the
 * daemon (daemon.h).
 */
#include "../config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/engine.h"
#include "base/err.h"
#include "base/log.h"
#include "config.h"
#include "daemon.h"
#include "sigbus.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

/* ---------------------------------------------------------------- command line */

typedef struct {
    const char *config_path;
    int check_config;
    int show_help;
    int show_version;
    int dump_model;
    const char *prompt;       /* one-shot completion */
    long long n_predict;
    sampler_params_t sp;
} cli_t;

/* Flags of the one-shot modes, which are not configuration keys. */
typedef enum { ARG_NONE, ARG_STR, ARG_INT, ARG_FLOAT, ARG_U64 } arg_kind_t;

typedef struct {
    const char *name;
    arg_kind_t kind;
    size_t offset; /* into cli_t */
    double lo, hi;
    const char *help;
} cli_flag_t;

#define CLI_OFF(f) offsetof(cli_t, f)
static const cli_flag_t cli_flags[] = {
    { "dump-model", ARG_NONE, CLI_OFF(dump_model), 0, 0,
      "Print the model's hyper-parameters, tokenizer and tensors, and exit." },
    { "prompt", ARG_STR, CLI_OFF(prompt), 0, 0,
      "Complete this text (raw, BOS added as the model says), print it to stdout, and exit." },
    { "n-predict", ARG_INT, CLI_OFF(n_predict), 0, 1 << 24,
      "With --prompt: most tokens to generate (default 128; -n is short for it)." },
    { "temperature", ARG_FLOAT, CLI_OFF(sp.temperature), 0, 2,
      "With --prompt: sampling temperature, 0 for greedy (default 0)." },
    { "seed", ARG_U64, CLI_OFF(sp.seed), 0, 0, "With --prompt: random seed (default 0)." },
    { "top-k", ARG_INT, CLI_OFF(sp.top_k), 0, 1 << 24, "With --prompt: keep the k most likely tokens (0: off)." },
    { "top-p", ARG_FLOAT, CLI_OFF(sp.top_p), 0, 1, "With --prompt: nucleus sampling mass (1: off)." },
    { "min-p", ARG_FLOAT, CLI_OFF(sp.min_p), 0, 1, "With --prompt: drop tokens below min-p times the top probability (0: off)." },
    { "repetition-penalty", ARG_FLOAT, CLI_OFF(sp.repetition_penalty), 0, 10,
      "With --prompt: divide the logits of tokens already seen (1: off)." },
    { "presence-penalty", ARG_FLOAT, CLI_OFF(sp.presence_penalty), -2, 2,
      "With --prompt: OpenAI presence penalty (0: off)." },
    { "frequency-penalty", ARG_FLOAT, CLI_OFF(sp.frequency_penalty), -2, 2,
      "With --prompt: OpenAI frequency penalty (0: off)." },
};
#define N_CLI_FLAGS (sizeof cli_flags / sizeof cli_flags[0])

static const cli_flag_t *find_cli_flag(const char *name)
{
    for (size_t i = 0; i < N_CLI_FLAGS; i++)
        if (strcmp(cli_flags[i].name, name) == 0)
            return &cli_flags[i];
    return NULL;
}

static int set_cli_flag(cli_t *cli, const cli_flag_t *f, const char *v, char *err, size_t errlen)
{
    void *field = (char *)cli + f->offset;
    char *end;
    errno = 0;
    switch (f->kind) {
    case ARG_NONE:
        *(int *)field = 1;
        return 0;
    case ARG_STR:
        *(const char **)field = v;
        return 0;
    case ARG_INT: {
        long long n = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno || n < f->lo || n > f->hi)
            return err_set(err, errlen, ERR_INVALID, "--%s: \"%s\" is not an integer in [%.0f, %.0f]",
                           f->name, v, f->lo, f->hi);
        if (f->offset == CLI_OFF(n_predict))
            *(long long *)field = n;
        else
            *(int32_t *)field = (int32_t)n;
        return 0;
    }
    case ARG_U64: {
        unsigned long long n = strtoull(v, &end, 10);
        if (*v == '\0' || *v == '-' || *end != '\0' || errno)
            return err_set(err, errlen, ERR_INVALID, "--%s: \"%s\" is not an unsigned integer", f->name, v);
        *(uint64_t *)field = n;
        return 0;
    }
    case ARG_FLOAT: {
        double d = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || errno || !(d >= f->lo && d <= f->hi))
            return err_set(err, errlen, ERR_INVALID, "--%s: \"%s\" is not a number in [%g, %g]",
                           f->name, v, f->lo, f->hi);
        *(float *)field = (float)d;
        return 0;
    }
    }
    return ERR_INVALID;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: llamad [OPTION]...\n"
            "Serve one LLaMA-family model over an OpenAI-compatible HTTP API.\n"
            "\n"
            "  --config FILE                  Read settings from FILE (INI: [section] and key = value).\n"
            "                                 Flags given on the command line win over the file.\n"
            "  --check-config                 Validate the configuration, print it, and exit.\n"
            "  --help                         Show this help and exit.\n"
            "  --version                      Show the version and exit.\n");
    for (size_t i = 0; i < N_CLI_FLAGS; i++) {
        char flag[64];
        const cli_flag_t *f = &cli_flags[i];
        snprintf(flag, sizeof flag, "--%s%s", f->name,
                 f->kind == ARG_NONE ? "" : f->kind == ARG_STR ? " TEXT" : f->kind == ARG_FLOAT ? " NUM" : " N");
        fprintf(out, "  %-30s %s\n", flag, f->help);
    }
    fprintf(out, "\nSettings (each is also a key of the configuration file, in the section shown):\n");
    config_print_help(out);
    fprintf(out,
            "\n"
            "Sizes accept K, M, G suffixes (1024-based). The documented configuration file is\n"
            "%s/llamad.conf. Documentation: docs/ in the source tree.\n",
            SYSCONFDIR);
}

/* Split "--key=value" or "--key value". Returns the index of the next argument, or -1. */
static int take_flag(int argc, char **argv, int i, char *key, size_t keylen, const char **value)
{
    const char *arg = argv[i] + 2;
    const char *eq = strchr(arg, '=');
    if (eq != NULL) {
        snprintf(key, keylen, "%.*s", (int)(eq - arg), arg);
        *value = eq + 1;
        return i + 1;
    }
    snprintf(key, keylen, "%s", arg);
    if (i + 1 >= argc)
        return -1;
    *value = argv[i + 1];
    return i + 2;
}

/*
 * Two passes: the first finds --config and the one-shot flags, the second
 * applies every other flag over the file's values.
 */
static int parse_args(int argc, char **argv, cli_t *cli, config_t *cfg, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            cli->show_help = 1;
        else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0)
            cli->show_version = 1;
        else if (strcmp(a, "--check-config") == 0)
            cli->check_config = 1;
        else if (strcmp(a, "--config") == 0) {
            if (i + 1 >= argc)
                return err_set(err, errlen, ERR_INVALID, "--config: a file name is required");
            cli->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0)
            cli->config_path = a + 9;
        else if (strcmp(a, "--dump-model") == 0)
            cli->dump_model = 1;
    }
    if (cli->show_help || cli->show_version)
        return 0;
    if (cli->config_path != NULL) {
        int rc = config_load_file(cfg, cli->config_path, err, errlen);
        if (rc != 0)
            return rc;
    }
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (strcmp(a, "--check-config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--config") == 0) {
            i += 2;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "-n") == 0) {
            if (i + 1 >= argc)
                return err_set(err, errlen, ERR_INVALID, "-n: a value is required");
            int rc = set_cli_flag(cli, find_cli_flag("n-predict"), argv[i + 1], err, errlen);
            if (rc != 0)
                return rc;
            i += 2;
            continue;
        }
        if (strncmp(a, "--", 2) != 0)
            return err_set(err, errlen, ERR_INVALID, "unexpected argument \"%s\" (see --help)", a);
        char key[128], where[160];
        const char *value = NULL;
        const cli_flag_t *cf = find_cli_flag(a + 2);
        if (cf != NULL && cf->kind == ARG_NONE) {
            i++;
            continue;
        }
        int next = take_flag(argc, argv, i, key, sizeof key, &value);
        if (cf == NULL)
            cf = find_cli_flag(key);
        if (cf != NULL) {
            if (next < 0)
                return err_set(err, errlen, ERR_INVALID, "--%s: a value is required", key);
            int rc = set_cli_flag(cli, cf, value, err, errlen);
            if (rc != 0)
                return rc;
            i = next;
            continue;
        }
        if (!config_has_key(key))
            return err_set(err, errlen, ERR_NOTFOUND, "unknown option --%s (see --help)", key);
        if (next < 0)
            return err_set(err, errlen, ERR_INVALID, "--%s: a value is required", key);
        snprintf(where, sizeof where, "--%s", key);
        int rc = config_set(cfg, key, value, where, err, errlen);
        if (rc != 0)
            return rc;
        i = next;
    }
    return 0;
}

/* ---------------------------------------------------------------- one-shot completion */

static int print_cb(void *ctx, const char *text, size_t len)
{
    (void)ctx;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int run_prompt(const config_t *cfg, const cli_t *cli)
{
    char err[ERR_MSG_MAX], desc[512];
    engine_t *e;
    engine_opts_t eo;
    daemon_engine_opts(cfg, &eo);
    if (engine_create(&e, &eo, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    engine_describe(e, desc, sizeof desc);
    log_info("%s", desc);
    engine_gen_stats_t st;
    int rc = engine_generate(e, cli->prompt, strlen(cli->prompt), &cli->sp, (uint32_t)cli->n_predict,
                             print_cb, NULL, &st, err, sizeof err);
    fputc('\n', stdout);
    fflush(stdout);
    if (rc != 0) {
        log_error("%s", err);
    } else {
        log_info("prompt: %zu tokens in %.3f s (%.1f tokens/s); generated %zu tokens in %.3f s "
                 "(%.1f tokens/s); finish: %s",
                 st.prompt_tokens, st.prefill_seconds,
                 st.prefill_seconds > 0 ? st.prompt_tokens / st.prefill_seconds : 0.0,
                 st.generated_tokens, st.decode_seconds,
                 st.decode_seconds > 0 ? st.generated_tokens / st.decode_seconds : 0.0,
                 st.finish_reason);
    }
    engine_destroy(e);
    return rc == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    config_t cfg;
    cli_t cli = { 0 };
    char err[ERR_MSG_MAX];

    sampler_params_init(&cli.sp);
    cli.sp.temperature = 0.0f;
    cli.n_predict = 128;

    if (config_init(&cfg) != 0) {
        fprintf(stderr, "llamad: out of memory\n");
        return 1;
    }
    int rc = parse_args(argc, argv, &cli, &cfg, err, sizeof err);
    if (cli.show_help) {
        usage(stdout);
        config_close(&cfg);
        return 0;
    }
    if (cli.show_version) {
        printf("llamad %s (CUDA backend: %s)\n", PACKAGE_VERSION,
               engine_has_cuda() ? "built" : "not built");
        config_close(&cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "llamad: %s\n", err);
        config_close(&cfg);
        return 2;
    }
    log_set_level((log_level_t)log_level_parse(cfg.log_level));
    if (log_open(cfg.log_file) != 0) {
        fprintf(stderr, "llamad: log-file: cannot open %s: %s\n", cfg.log_file, strerror(errno));
        config_close(&cfg);
        return 2;
    }
    if (cli.check_config) {
        config_print(&cfg, stdout);
        fprintf(stderr, "llamad: configuration is valid\n");
        config_close(&cfg);
        return 0;
    }
    if (cli.dump_model) {
        rc = engine_dump_model(cfg.model, cfg.chat_template, stdout, err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "llamad: %s\n", err);
        config_close(&cfg);
        return rc == 0 ? 0 : 1;
    }
    /* only where the weights are read from a mapping of the file: any other
       SIGBUS is a bug, and keeps its core dump */
    if (cfg.model_mmap && sigbus_install(cfg.model) != 0)
        log_warn("cannot install the SIGBUS handler: a truncated model file will end the "
                 "daemon without a log line");
    if (cli.prompt != NULL)
        rc = run_prompt(&cfg, &cli);
    else {
        int abandoned;
        rc = daemon_run(&cfg, &abandoned);
        if (abandoned)
            _exit(rc); /* stopped during the model load: the loading thread still reads cfg */
    }
    config_close(&cfg);
    return rc;
}
