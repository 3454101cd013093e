/*
 * config.c - the settings table: defaults, parsing of values, the INI file
 * (through inih) and the --help text.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/err.h"

typedef struct {
    const char *section;
    const char *key;
    cfg_kind_t kind;
    size_t offset;
    const char *def;
    double lo, hi;
    const char *choices;
    const char *help;
} key_def_t;

static const key_def_t keys[] = {
#define KEY_DEF(sec, key, kind, field, def, lo, hi, choices, help) \
    { sec, key, kind, offsetof(config_t, field), def, lo, hi, choices, help },
    CONFIG_KEYS(KEY_DEF)
#undef KEY_DEF
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const key_def_t *find_key(const char *key)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

int config_has_key(const char *key) { return find_key(key) != NULL; }

int config_key_is_bool(const char *key)
{
    const key_def_t *k = find_key(key);
    return k != NULL && k->kind == CFG_BOOL;
}

/* ---------------------------------------------------------------- values */

static int in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p != '\0') {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return 1;
        if (bar == NULL)
            break;
        p = bar + 1;
    }
    return 0;
}

/* "64M", "2G", "512k", "1048576": bytes, 1024-based suffixes. */
static int parse_size(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*v))
        return -1;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0)
        return -1;
    uint64_t mul = 1;
    switch (tolower((unsigned char)*end)) {
    case '\0': break;
    case 'k': mul = 1ull << 10; end++; break;
    case 'm': mul = 1ull << 20; end++; break;
    case 'g': mul = 1ull << 30; end++; break;
    case 't': mul = 1ull << 40; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end != '\0' || __builtin_mul_overflow((uint64_t)n, mul, out))
        return -1;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
        *out = 1;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off"))
        *out = 0;
    else
        return -1;
    return 0;
}

/* The listening address is a literal: llamad never resolves names at start. */
static int is_ip_address(const char *v)
{
    unsigned char a[16];
    return inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1;
}

static int set_value(config_t *c, const key_def_t *k, const char *v, const char *where,
                     char *err, size_t errlen)
{
    void *field = (char *)c + k->offset;

    switch (k->kind) {
    case CFG_STR: {
        if (k->choices != NULL && !in_choices(k->choices, v))
            return err_set(err, errlen, ERR_INVALID, "%s: %s: \"%s\" is not one of %s",
                           where, k->key, v, k->choices);
        if (k->offset == offsetof(config_t, host) && !is_ip_address(v))
            return err_set(err, errlen, ERR_INVALID,
                           "%s: host: \"%s\" is not a numeric IPv4 or IPv6 address (for example "
                           "127.0.0.1, ::1 or 0.0.0.0)", where, v);
        char *dup = strdup(v);
        if (dup == NULL)
            return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", where);
        free(*(char **)field);
        *(char **)field = dup;
        return 0;
    }
    case CFG_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno != 0)
            return err_set(err, errlen, ERR_INVALID, "%s: %s: \"%s\" is not an integer", where, k->key, v);
        if ((double)n < k->lo || (double)n > k->hi)
            return err_set(err, errlen, ERR_RANGE, "%s: %s: %lld is out of range [%.0f, %.0f]",
                           where, k->key, n, k->lo, k->hi);
        *(long long *)field = n;
        return 0;
    }
    case CFG_SIZE: {
        uint64_t n;
        if (parse_size(v, &n) != 0)
            return err_set(err, errlen, ERR_INVALID,
                           "%s: %s: \"%s\" is not a size (bytes, or a number with K, M, G or T)",
                           where, k->key, v);
        if ((double)n < k->lo || (k->hi > 0 && (double)n > k->hi))
            return err_set(err, errlen, ERR_RANGE, "%s: %s: %s is out of range [%.0f, %.0f]",
                           where, k->key, v, k->lo, k->hi);
        *(uint64_t *)field = n;
        return 0;
    }
    case CFG_FLOAT: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || errno != 0 || !isfinite(d))
            return err_set(err, errlen, ERR_INVALID, "%s: %s: \"%s\" is not a number", where, k->key, v);
        if (d < k->lo || d > k->hi)
            return err_set(err, errlen, ERR_RANGE, "%s: %s: %g is out of range [%g, %g]",
                           where, k->key, d, k->lo, k->hi);
        *(double *)field = d;
        return 0;
    }
    case CFG_BOOL:
        if (parse_bool(v, (int *)field) != 0)
            return err_set(err, errlen, ERR_INVALID, "%s: %s: \"%s\" is not yes or no", where, k->key, v);
        return 0;
    }
    return ERR_INVALID;
}

int config_set(config_t *c, const char *key, const char *value, const char *where,
               char *err, size_t errlen)
{
    const key_def_t *k = find_key(key);
    if (k == NULL)
        return err_set(err, errlen, ERR_NOTFOUND, "%s: unknown key \"%s\"", where, key);
    return set_value(c, k, value, where, err, errlen);
}

int config_init(config_t *c)
{
    char err[ERR_MSG_MAX];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        int rc = set_value(c, &keys[i], keys[i].def, "default", err, sizeof err);
        if (rc != 0) {
            config_close(c);
            return rc;
        }
    }
    return 0;
}

void config_close(config_t *c)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].kind == CFG_STR) {
            char **p = (char **)((char *)c + keys[i].offset);
            free(*p);
            *p = NULL;
        }
    }
}

/* ---------------------------------------------------------------- file */

#define CONFIG_FILE_MAX (1u << 20)

/*
 * inih as Debian builds it does not pass line numbers to the handler, so
 * the reader counts lines: inih calls the handler right after reading the
 * line that holds the key.  The file is read whole first (it is small), so
 * that a NUL byte, which would silently cut a value short, is an error.
 */
typedef struct {
    config_t *c;
    const char *path;
    const char *pos, *end;          /* the rest of the file */
    int line;
    int first_line[N_KEYS];         /* the line that set each key; 0: not yet */
    char *err;
    size_t errlen;
    int rc;
    int rc_line; /* line of the error in rc */
} load_ctx_t;

static char *read_line_cb(char *buf, int size, void *stream)
{
    load_ctx_t *ctx = stream;
    if (ctx->pos >= ctx->end || size < 2)
        return NULL;
    const char *nl = memchr(ctx->pos, '\n', (size_t)(ctx->end - ctx->pos));
    size_t n = nl != NULL ? (size_t)(nl - ctx->pos) + 1 : (size_t)(ctx->end - ctx->pos);
    ctx->line++;
    if (n - (nl != NULL) > (size_t)size - 2) {
        /* inih would read the rest as a line of its own: a value cut short */
        if (ctx->rc == 0) {
            ctx->rc = err_set(ctx->err, ctx->errlen, ERR_TOOLONG, "%s:%d: the line is longer "
                              "than %d bytes", ctx->path, ctx->line, size - 2);
            ctx->rc_line = ctx->line;
        }
        return NULL;
    }
    memcpy(buf, ctx->pos, n);
    buf[n] = '\0';
    ctx->pos += n;
    return buf;
}

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    load_ctx_t *ctx = user;
    char where[600];

    if (ctx->rc != 0)
        return 0;
    snprintf(where, sizeof where, "%s:%d", ctx->path, ctx->line);
    const key_def_t *k = find_key(name);
    if (k == NULL) {
        ctx->rc = err_set(ctx->err, ctx->errlen, ERR_NOTFOUND, "%s: unknown key \"%s\"", where, name);
        ctx->rc_line = ctx->line;
        return 0;
    }
    if (strcmp(section, k->section) != 0) {
        ctx->rc = err_set(ctx->err, ctx->errlen, ERR_INVALID,
                          "%s: key \"%s\" belongs in section [%s], not [%s]",
                          where, name, k->section, section);
        ctx->rc_line = ctx->line;
        return 0;
    }
    int *first = &ctx->first_line[k - keys];
    if (*first != 0) {
        ctx->rc = err_set(ctx->err, ctx->errlen, ERR_INVALID,
                          "%s: key \"%s\" is set a second time (first on line %d)", where, name,
                          *first);
        ctx->rc_line = ctx->line;
        return 0;
    }
    *first = ctx->line;
    ctx->rc = set_value(ctx->c, k, value, where, ctx->err, ctx->errlen);
    ctx->rc_line = ctx->line;
    return ctx->rc == 0;
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return err_set(err, errlen, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(err, errlen, ERR_INVALID, "%s: not a regular file", path);
    }
    char *text = malloc(CONFIG_FILE_MAX + 1);
    if (text == NULL) {
        fclose(f);
        return err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(text, 1, CONFIG_FILE_MAX + 1, f);
    int bad_read = ferror(f);
    fclose(f);
    if (bad_read || n > CONFIG_FILE_MAX) {
        free(text);
        return err_set(err, errlen, bad_read ? ERR_IO : ERR_TOOLONG, bad_read ?
                       "%s: cannot read the file" : "%s: larger than %u bytes", path, CONFIG_FILE_MAX);
    }
    const char *nul = memchr(text, '\0', n);
    if (nul != NULL) {
        int line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        free(text);
        return err_set(err, errlen, ERR_FORMAT, "%s:%d: the line holds a NUL byte", path, line);
    }
    load_ctx_t ctx = { .c = c, .path = path, .pos = text, .end = text + n,
                       .err = err, .errlen = errlen };
    int line = ini_parse_stream(read_line_cb, &ctx, ini_cb, &ctx);
    free(text);
    /* inih goes on past a syntax error: report whichever error came first */
    if (ctx.rc != 0 && (line <= 0 || ctx.rc_line <= line || ctx.rc == ERR_TOOLONG))
        return ctx.rc;
    if (line != 0)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s:%d: syntax error (expected \"key = value\" or \"[section]\")", path, line);
    return 0;
}

/* ---------------------------------------------------------------- printing */

void config_print_help(FILE *out)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def_t *k = &keys[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", k->key,
                 k->kind == CFG_BOOL ? "yes|no" : k->choices ? k->choices :
                 k->kind == CFG_STR ? "STR" : k->kind == CFG_SIZE ? "SIZE" :
                 k->kind == CFG_FLOAT ? "NUM" : "N");
        fprintf(out, "  %-30s %s\n  %-30s [%s] default: %s\n", flag, k->help, "",
                k->section, *k->def ? k->def : "(empty)");
    }
}

void config_print(const config_t *c, FILE *out)
{
    const char *section = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def_t *k = &keys[i];
        const void *field = (const char *)c + k->offset;
        if (strcmp(section, k->section) != 0) {
            fprintf(out, "%s[%s]\n", *section ? "\n" : "", k->section);
            section = k->section;
        }
        switch (k->kind) {
        case CFG_STR:
            /* a secret is never printed, only whether it is set */
            if (strcmp(k->key, "api-key") == 0 && **(char *const *)field != '\0')
                fprintf(out, "%s = (set, not shown)\n", k->key);
            else
                fprintf(out, "%s = %s\n", k->key, *(char *const *)field);
            break;
        case CFG_INT:   fprintf(out, "%s = %lld\n", k->key, *(const long long *)field); break;
        case CFG_SIZE:  fprintf(out, "%s = %llu\n", k->key, (unsigned long long)*(const uint64_t *)field); break;
        case CFG_FLOAT: fprintf(out, "%s = %g\n", k->key, *(const double *)field); break;
        case CFG_BOOL:  fprintf(out, "%s = %s\n", k->key, *(const int *)field ? "yes" : "no"); break;
        }
    }
}
