/*
 * main.c - llamad's entry point: command line and configuration, then
 * either a one-shot mode (--check-config) or the daemon: one libuv loop
 * on this thread driving the HTTP server, signals and systemd
 * notifications.
 */
#include "../config.h"

#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../engine/err.h"
#include "../engine/log.h"
#include "../engine/registry.h"
#include "config.h"
#include "http.h"
#include "sdnotify.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

/* ---------------------------------------------------------------- command line */

typedef struct {
    const char *config_path;
    int check_config;
    int show_help;
    int show_version;
} cli_t;

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
            "  --version                      Show the version and exit.\n"
            "\n"
            "Settings (each is also a key of the configuration file, in the section shown):\n");
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
        if (strncmp(a, "--", 2) != 0)
            return err_set(err, errlen, ERR_INVALID, "unexpected argument \"%s\" (see --help)", a);
        char key[128], where[160];
        const char *value = NULL;
        int next = take_flag(argc, argv, i, key, sizeof key, &value);
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

/* ---------------------------------------------------------------- the daemon */

typedef struct {
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    http_server_t *http;
    const config_t *cfg;
    int stopping;
} daemon_t;

static int route_cb(void *ctx, http_request_t *req)
{
    daemon_t *d = ctx;
    if (strcmp(req->url, "/health") == 0 || strcmp(req->url, "/health/live") == 0 ||
        strcmp(req->url, "/health/ready") == 0) {
        if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
            return http_respond_error(req, 405, "invalid_request_error", NULL, "method_not_allowed",
                                      "%s is not allowed on %s", req->method, req->url);
        if (d->stopping) {
            static const char body[] = "{\"status\":\"draining\"}";
            return http_respond(req, 503, "application/json", body, sizeof body - 1);
        }
        static const char body[] = "{\"status\":\"ok\"}";
        return http_respond(req, 200, "application/json", body, sizeof body - 1);
    }
    return http_respond_error(req, 404, "invalid_request_error", NULL, "not_found",
                              "no route for %s %s", req->method, req->url);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_t *d = h->data;
    if (signum == SIGHUP) {
        if (log_open(d->cfg->log_file) != 0)
            log_error("cannot reopen log file %s", d->cfg->log_file);
        else
            log_info("log file reopened");
        return;
    }
    if (d->stopping)
        return;
    d->stopping = 1;
    log_info("received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify_state("STOPPING=1");
    http_destroy(d->http);
    d->http = NULL;
    uv_signal_stop(&d->sig_term);
    uv_signal_stop(&d->sig_int);
    uv_signal_stop(&d->sig_hup);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
}

static int run_daemon(const config_t *cfg)
{
    char err[ERR_MSG_MAX], desc[256];
    const char *backend;
    daemon_t d;
    memset(&d, 0, sizeof d);
    d.cfg = cfg;

    int rc = registry_pick(cfg->backend, &backend, desc, sizeof desc, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        return 1;
    }
    log_info("llamad %s starting: backend %s (%s)", PACKAGE_VERSION, backend, desc);
    log_info("model: %s", cfg->model);

    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&d.loop);
    http_opts_t ho = {
        .host = cfg->host, .port = (int)cfg->port, .max_body = 1 << 20,
        .conn_timeout_s = 60, .max_connections = 1024,
        .route = route_cb, .route_ctx = &d,
    };
    rc = http_create(&d.http, &d.loop, &ho, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        uv_loop_close(&d.loop);
        return 1;
    }
    uv_signal_init(&d.loop, &d.sig_term);
    uv_signal_init(&d.loop, &d.sig_int);
    uv_signal_init(&d.loop, &d.sig_hup);
    d.sig_term.data = d.sig_int.data = d.sig_hup.data = &d;
    uv_signal_start(&d.sig_term, on_signal, SIGTERM);
    uv_signal_start(&d.sig_int, on_signal, SIGINT);
    uv_signal_start(&d.sig_hup, on_signal, SIGHUP);

    log_info("listening on http://%s:%lld", cfg->host, cfg->port);
    sd_notify_state("READY=1");
    uv_run(&d.loop, UV_RUN_DEFAULT);
    uv_loop_close(&d.loop);
    log_info("stopped");
    return 0;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    config_t cfg;
    cli_t cli = { 0 };
    char err[ERR_MSG_MAX];

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
               registry_has_cuda() ? "built" : "not built");
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
    rc = run_daemon(&cfg);
    config_close(&cfg);
    return rc;
}
