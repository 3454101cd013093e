/*
 * chat.c - the built-in chat formats, template-file parsing, and the
 * markers that recognise a model's Jinja template without running it.
 */
#include "chat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

static const char *const ROLE_NAMES[CHAT_N_ROLES] = { "system", "user", "assistant" };

/* ================================================================
 * Recognising a template
 * ================================================================ */

chat_kind_t chat_template_detect(const char *t)
{
    if (t == NULL)
        return CHAT_UNKNOWN;
    if (strstr(t, "<|start_header_id|>") && strstr(t, "<|eot_id|>"))
        return CHAT_LLAMA3;
    if (strstr(t, "<|im_start|>"))
        return CHAT_CHATML;
    if (strstr(t, "[INST]"))
        return CHAT_LLAMA2;
    return CHAT_UNKNOWN;
}

chat_kind_t chat_template_by_name(const char *name)
{
    if (name == NULL)
        return CHAT_UNKNOWN;
    if (strcmp(name, "chatml") == 0)
        return CHAT_CHATML;
    if (strcmp(name, "llama2") == 0)
        return CHAT_LLAMA2;
    if (strcmp(name, "llama3") == 0)
        return CHAT_LLAMA3;
    return CHAT_UNKNOWN;
}

const char *chat_kind_name(chat_kind_t kind)
{
    switch (kind) {
    case CHAT_CHATML: return "chatml";
    case CHAT_LLAMA2: return "llama2";
    case CHAT_LLAMA3: return "llama3";
    case CHAT_CUSTOM: return "custom";
    default: return "unknown";
    }
}

/*
 * ChatML templates that add a system message when the first message is not
 * one (`messages[0]['role'] != 'system'`) spell it as one string literal:
 *     '<|im_start|>system\nYou are ...<|im_end|>\n'
 * Find such a literal (the newline written as an escape or as itself) and
 * return its content, unescaped; NULL when the template has no such shape.
 */
static char *find_default_system(const char *t)
{
    if (!strstr(t, "!= 'system'") && !strstr(t, "!= \"system\""))
        return NULL;
    static const char marker[] = "<|im_start|>system";
    for (const char *p = strstr(t, marker); p != NULL; p = strstr(p + 1, marker)) {
        if (p == t || (p[-1] != '\'' && p[-1] != '"'))
            continue;
        char quote = p[-1];
        const char *s = p + sizeof marker - 1;
        if (s[0] == '\n')
            s += 1;
        else if (s[0] == '\\' && s[1] == 'n')
            s += 2;
        else
            continue;
        const char *e = strstr(s, "<|im_end|>");
        if (e == NULL || e - s > CHAT_MAX_VALUE)
            continue;
        char *out = malloc((size_t)(e - s) + 1);
        if (out == NULL)
            return NULL;
        size_t n = 0;
        int ok = 1;
        for (const char *c = s; c < e && ok; c++) {
            if (*c == quote || (*c == '{' && (c[1] == '{' || c[1] == '%'))) {
                ok = 0;   /* the literal ended: not a fixed message */
            } else if (*c == '\\' && c + 1 < e) {
                c++;
                out[n++] = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c;
            } else {
                out[n++] = *c;
            }
        }
        out[n] = '\0';
        if (ok)
            return out;
        free(out);
    }
    return NULL;
}

int chat_template_init(chat_template_t *tp, chat_kind_t kind, const char *jinja_text)
{
    memset(tp, 0, sizeof *tp);
    if (kind != CHAT_CHATML && kind != CHAT_LLAMA2 && kind != CHAT_LLAMA3)
        return ERR_INVALID;
    tp->kind = kind;
    if (kind == CHAT_CHATML && jinja_text != NULL)
        tp->default_system = find_default_system(jinja_text);
    return 0;
}

void chat_template_close(chat_template_t *tp)
{
    free(tp->default_system);
    free(tp->bos);
    for (int r = 0; r < CHAT_N_ROLES; r++) {
        free(tp->prefix[r]);
        free(tp->suffix[r]);
    }
    free(tp->generation_prompt);
    memset(tp, 0, sizeof *tp);
}

int chat_template_has_bos(const chat_template_t *tp)
{
    switch (tp->kind) {
    case CHAT_LLAMA2:
    case CHAT_LLAMA3: return 1;
    case CHAT_CUSTOM: return tp->bos != NULL && tp->bos[0] != '\0';
    default: return 0;
    }
}

/* ================================================================
 * Template files
 * ================================================================ */

static char *trim_ascii(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

/* Unescape in place; -1 on an unknown escape. */
static int unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }
        r++;
        switch (*r) {
        case 'n': *w++ = '\n'; break;
        case 't': *w++ = '\t'; break;
        case 'r': *w++ = '\r'; break;
        case '\\': *w++ = '\\'; break;
        case '"': *w++ = '"'; break;
        default: return -1;
        }
    }
    *w = '\0';
    return 0;
}

static char **file_slot(chat_template_t *tp, const char *key)
{
    if (strcmp(key, "bos") == 0) return &tp->bos;
    if (strcmp(key, "generation_prompt") == 0) return &tp->generation_prompt;
    if (strcmp(key, "default_system") == 0) return &tp->default_system;
    for (int r = 0; r < CHAT_N_ROLES; r++) {
        size_t n = strlen(ROLE_NAMES[r]);
        if (strncmp(key, ROLE_NAMES[r], n) == 0 && strcmp(key + n, "_prefix") == 0)
            return &tp->prefix[r];
        if (strncmp(key, ROLE_NAMES[r], n) == 0 && strcmp(key + n, "_suffix") == 0)
            return &tp->suffix[r];
    }
    return NULL;
}

static int parse_line(chat_template_t *tp, char *line, const char *path, int lineno,
                      char *err, size_t errlen)
{
    line = trim_ascii(line);
    if (*line == '\0' || *line == '#' || *line == ';' || *line == '[')
        return 0;
    char *eq = strchr(line, '=');
    if (eq == NULL)
        return err_set(err, errlen, ERR_FORMAT, "%s:%d: expected key = value", path, lineno);
    *eq = '\0';
    char *key = trim_ascii(line), *val = trim_ascii(eq + 1);
    char **slot = file_slot(tp, key);
    if (slot == NULL)
        return err_set(err, errlen, ERR_FORMAT, "%s:%d: unknown key \"%.40s\"", path, lineno, key);
    if (*slot != NULL)
        return err_set(err, errlen, ERR_FORMAT, "%s:%d: %s given twice", path, lineno, key);
    size_t n = strlen(val);
    if (n >= 2 && val[0] == '"' && val[n - 1] == '"' && val[n - 2] != '\\') {
        val[n - 1] = '\0';
        val++;
    }
    if (unescape(val) != 0)
        return err_set(err, errlen, ERR_FORMAT, "%s:%d: %s: unknown escape (use \\n \\t \\r \\\\ \\\")",
                       path, lineno, key);
    if (strlen(val) > CHAT_MAX_VALUE)
        return err_set(err, errlen, ERR_FORMAT, "%s:%d: %s longer than %d bytes", path, lineno,
                       key, CHAT_MAX_VALUE);
    *slot = strdup(val);
    return *slot ? 0 : ERR_NOMEM;
}

int chat_template_from_file(chat_template_t *tp, const char *path, char *err, size_t errlen)
{
    memset(tp, 0, sizeof *tp);
    tp->kind = CHAT_CUSTOM;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(err, errlen, ERR_IO, "%s: cannot open", path);
    char *buf = malloc(CHAT_MAX_FILE + 2);
    if (buf == NULL) {
        fclose(f);
        return ERR_NOMEM;
    }
    size_t n = fread(buf, 1, CHAT_MAX_FILE + 1, f);
    int rc = ferror(f) ? err_set(err, errlen, ERR_IO, "%s: read error", path) : 0;
    fclose(f);
    if (rc == 0 && n > CHAT_MAX_FILE)
        rc = err_set(err, errlen, ERR_FORMAT, "%s: larger than %d bytes", path, CHAT_MAX_FILE);
    if (rc == 0 && memchr(buf, '\0', n) != NULL)
        rc = err_set(err, errlen, ERR_FORMAT, "%s: contains a NUL byte", path);
    buf[n] = '\0';
    char *line = buf;
    for (int lineno = 1; rc == 0 && line != NULL; lineno++) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        rc = parse_line(tp, line, path, lineno, err, errlen);
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    if (rc != 0) {
        if (rc == ERR_NOMEM)
            err_set(err, errlen, rc, "%s: out of memory", path);
        chat_template_close(tp);
    }
    return rc;
}

/* ================================================================
 * Rendering
 * ================================================================ */

/* Python's str.isspace() for one code point (what Jinja's trim and
   str.strip() remove). */
static int py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The code point at s[0..n) (lenient: a bad byte decodes as itself). */
static uint32_t decode_at(const unsigned char *s, size_t n, size_t *len)
{
    unsigned b = s[0];
    size_t k = b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (k > n)
        k = 1;
    uint32_t c = k == 1 ? b : b & (0x3F >> (k - 1));
    for (size_t i = 1; i < k; i++)
        c = c << 6 | (s[i] & 0x3F);
    *len = k;
    return c;
}

/* str.strip(): [*start, *end) of s without surrounding whitespace. */
static void strip(const char *s, size_t n, size_t *start, size_t *end)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, b = n, k;
    while (a < b && py_space(decode_at(u + a, b - a, &k)))
        a += k;
    while (b > a) {
        size_t c = b - 1;
        while (c > a && (u[c] & 0xC0) == 0x80 && b - c < 4)
            c--;
        if (!py_space(decode_at(u + c, b - c, &k)) || c + k != b)
            break;
        b = c;
    }
    *start = a;
    *end = b;
}

static int put(tok_text_t *o, const char *s)
{
    return s ? tok_text_append(o, s, strlen(s)) : 0;
}

/* Append a message's content (stripped if asked), recording its bytes in sp. */
static int put_content(tok_text_t *o, tok_spans_t *sp, const char *s, size_t n, int stripped)
{
    size_t a = 0, b = n, at = o->len;
    if (stripped)
        strip(s, n, &a, &b);
    if (tok_text_append(o, s + a, b - a) != 0)
        return ERR_NOMEM;
    return sp != NULL && o->len > at ? tok_spans_push(sp, at, o->len) : 0;
}

static int role_of(const chat_msg_t *m)
{
    for (int r = 0; r < CHAT_N_ROLES; r++)
        if (m->role != NULL && strcmp(m->role, ROLE_NAMES[r]) == 0)
            return r;
    return -1;
}

static int put_client(tok_text_t *o, tok_spans_t *sp, const char *s)
{
    return put_content(o, sp, s, strlen(s), 0);
}

/* A call as the JSON the model writes: {"name": "<name>", "<args_key>": <arguments>}. */
static int put_call(tok_text_t *o, tok_spans_t *sp, const chat_call_t *c, const char *args_key)
{
    return put(o, "{\"name\": \"") || put_client(o, sp, c->name) || put(o, "\", \"") ||
           put(o, args_key) || put(o, "\": ") || put_client(o, sp, c->arguments) || put(o, "}");
}

static const char CHATML_TOOLS_HEAD[] =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
static const char CHATML_TOOLS_TAIL[] =
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

static int render_chatml(const chat_template_t *tp, const chat_msg_t *m, size_t n,
                         const char *const *tools, size_t n_tools, int gen, tok_text_t *o,
                         tok_spans_t *sp)
{
    int rc = 0;
    size_t first = 0;
    if (n_tools > 0) {
        /* the system message, the operator's default or the client's, then the tools */
        const char *sys = tp->default_system;
        if (n > 0 && role_of(&m[0]) == CHAT_SYSTEM)
            first = 1;
        rc = put(o, "<|im_start|>system\n") ||
             (first ? put_client(o, sp, m[0].content) : put(o, sys)) ||
             ((first ? m[0].content[0] : sys && sys[0]) ? put(o, "\n\n") : 0) ||
             put(o, CHATML_TOOLS_HEAD);
        for (size_t t = 0; t < n_tools && rc == 0; t++)
            rc = put(o, "\n") || put_client(o, sp, tools[t]);
        rc = rc || put(o, CHATML_TOOLS_TAIL) || put(o, "<|im_end|>\n");
    } else if (n > 0 && tp->default_system != NULL && role_of(&m[0]) != CHAT_SYSTEM) {
        rc = put(o, "<|im_start|>system\n") || put(o, tp->default_system) ||
             put(o, "<|im_end|>\n");
    }
    for (size_t i = first; i < n && rc == 0; i++) {
        int tool = strcmp(m[i].role, "tool") == 0;
        rc = put(o, "<|im_start|>") || put(o, m[i].role) || put(o, "\n") ||
             (tool && put(o, "<tool_response>\n")) || put_client(o, sp, m[i].content) ||
             (tool && put(o, "\n</tool_response>"));
        for (size_t c = 0; c < m[i].n_calls && rc == 0; c++)
            rc = ((c > 0 || m[i].content[0]) && put(o, "\n")) || put(o, "<tool_call>\n") ||
                 put_call(o, sp, &m[i].calls[c], "arguments") || put(o, "\n</tool_call>");
        rc = rc || put(o, "<|im_end|>\n");
    }
    if (rc == 0 && gen)
        rc = put(o, "<|im_start|>assistant\n");
    return rc ? ERR_NOMEM : 0;
}

static int render_llama2(const chat_msg_t *m, size_t n, tok_text_t *o, tok_spans_t *sp,
                         char *err, size_t errlen)
{
    const char *sys = NULL;
    size_t first = 0;
    if (n > 0 && role_of(&m[0]) == CHAT_SYSTEM) {
        sys = m[0].content;
        first = 1;
    }
    tok_text_t c;
    tok_text_init(&c);
    int rc = 0;
    for (size_t i = first; i < n && rc == 0; i++) {
        int role = role_of(&m[i]);
        if ((role == CHAT_USER) != ((i - first) % 2 == 0)) {
            rc = err_set(err, errlen, ERR_INVALID, "messages[%zu]: llama2 conversation roles "
                         "must alternate user/assistant/user/assistant/...", i);
            break;
        }
        c.len = 0;
        if (i == first && sys != NULL)
            rc = put(&c, "<<SYS>>\n") || put(&c, sys) || put(&c, "\n<</SYS>>\n\n");
        rc = rc || put(&c, m[i].content) || put(&c, "");   /* c.data exists from here */
        if (rc == 0 && role == CHAT_USER)
            rc = put(o, "<s>[INST] ") || put_content(o, sp, c.data, c.len, 1) ||
                 put(o, " [/INST]");
        else if (rc == 0 && role == CHAT_ASSISTANT)
            rc = put(o, " ") || put_content(o, sp, c.data, c.len, 1) || put(o, " </s>");
        if (rc != 0 && rc != ERR_INVALID)
            rc = ERR_NOMEM;
    }
    tok_text_close(&c);
    return rc;
}

static const char LLAMA3_TOOLS_HEAD[] =
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n\nRespond in the format "
    "{\"name\": function name, \"parameters\": dictionary of argument name and its value}."
    "Do not use variables.\n\n";

/*
 * Meta's LLaMA 3.1 template with tools (tools_in_user_message): the system
 * message opens with the ipython environment, the first user message is
 * preceded by the instruction and the tools; calls are JSON objects, tool
 * results "ipython" turns.
 */
static int render_llama3(const chat_msg_t *m, size_t n, const char *const *tools, size_t n_tools,
                         int gen, tok_text_t *o, tok_spans_t *sp)
{
    int rc = put(o, "<|begin_of_text|>");
    size_t first = 0;
    if (n_tools > 0) {
        first = n > 0 && role_of(&m[0]) == CHAT_SYSTEM;
        rc = rc || put(o, "<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
                       "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n") ||
             (first && put_content(o, sp, m[0].content, strlen(m[0].content), 1)) ||
             put(o, "<|eot_id|>");
    }
    int tools_done = n_tools == 0;
    for (size_t i = first; i < n && rc == 0; i++) {
        int tool = strcmp(m[i].role, "tool") == 0;
        rc = put(o, "<|start_header_id|>") || put(o, tool ? "ipython" : m[i].role) ||
             put(o, "<|end_header_id|>\n\n");
        if (!tools_done && role_of(&m[i]) == CHAT_USER) {
            tools_done = 1;
            rc = rc || put(o, LLAMA3_TOOLS_HEAD);
            for (size_t t = 0; t < n_tools && rc == 0; t++)
                rc = put_client(o, sp, tools[t]) || put(o, "\n\n");
        }
        rc = rc || put_content(o, sp, m[i].content, strlen(m[i].content), 1);
        for (size_t c = 0; c < m[i].n_calls && rc == 0; c++)
            rc = (c > 0 && put(o, "\n")) || put_call(o, sp, &m[i].calls[c], "parameters");
        rc = rc || put(o, "<|eot_id|>");
    }
    if (rc == 0 && gen)
        rc = put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return rc ? ERR_NOMEM : 0;
}

static int render_custom(const chat_template_t *tp, const chat_msg_t *m, size_t n, int gen,
                         tok_text_t *o, tok_spans_t *sp)
{
    int rc = put(o, tp->bos);
    if (rc == 0 && n > 0 && tp->default_system != NULL && role_of(&m[0]) != CHAT_SYSTEM)
        rc = put(o, tp->prefix[CHAT_SYSTEM]) || put(o, tp->default_system) ||
             put(o, tp->suffix[CHAT_SYSTEM]);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int r = role_of(&m[i]);
        rc = put(o, tp->prefix[r]) || put_content(o, sp, m[i].content, strlen(m[i].content), 0) ||
             put(o, tp->suffix[r]);
    }
    if (rc == 0 && gen)
        rc = put(o, tp->generation_prompt);
    return rc ? ERR_NOMEM : 0;
}

int chat_render(const chat_template_t *tp, const chat_msg_t *msgs, size_t n,
                int add_generation_prompt, tok_text_t *out, char *err, size_t errlen)
{
    return chat_render_spans(tp, msgs, n, add_generation_prompt, out, NULL, err, errlen);
}

int chat_render_spans(const chat_template_t *tp, const chat_msg_t *msgs, size_t n,
                      int add_generation_prompt, tok_text_t *out, tok_spans_t *content,
                      char *err, size_t errlen)
{
    return chat_render_tools(tp, msgs, n, NULL, 0, add_generation_prompt, out, content, err,
                             errlen);
}

int chat_render_tools(const chat_template_t *tp, const chat_msg_t *msgs, size_t n,
                      const char *const *tools, size_t n_tools, int add_generation_prompt,
                      tok_text_t *out, tok_spans_t *content, char *err, size_t errlen)
{
    int has_tools = tp->kind == CHAT_CHATML || tp->kind == CHAT_LLAMA3;
    if (n_tools > 0 && !has_tools)
        return err_set(err, errlen, ERR_UNSUPPORTED, "tools: the %s chat template has no tool "
                       "format", chat_kind_name(tp->kind));
    for (size_t i = 0; i < n_tools; i++)
        if (tools == NULL || tools[i] == NULL)
            return err_set(err, errlen, ERR_INVALID, "tools[%zu] missing", i);
    for (size_t i = 0; i < n; i++) {
        int tool = msgs[i].role != NULL && strcmp(msgs[i].role, "tool") == 0;
        if (role_of(&msgs[i]) < 0 && !tool)
            return err_set(err, errlen, ERR_INVALID,
                           "messages[%zu].role \"%.32s\": want system, user, assistant or tool",
                           i, msgs[i].role ? msgs[i].role : "(none)");
        if (msgs[i].content == NULL)
            return err_set(err, errlen, ERR_INVALID, "messages[%zu].content missing", i);
        if ((tool || msgs[i].n_calls > 0) && !has_tools)
            return err_set(err, errlen, ERR_UNSUPPORTED, "messages[%zu]: the %s chat template "
                           "has no tool format", i, chat_kind_name(tp->kind));
        if (msgs[i].n_calls > 0 && role_of(&msgs[i]) != CHAT_ASSISTANT)
            return err_set(err, errlen, ERR_INVALID, "messages[%zu].tool_calls: only an "
                           "assistant message makes tool calls", i);
        for (size_t c = 0; c < msgs[i].n_calls; c++)
            if (msgs[i].calls == NULL || msgs[i].calls[c].name == NULL ||
                msgs[i].calls[c].arguments == NULL)
                return err_set(err, errlen, ERR_INVALID, "messages[%zu].tool_calls[%zu] "
                               "incomplete", i, c);
    }
    size_t len0 = out->len, n_spans0 = content ? content->n : 0;
    int rc;
    switch (tp->kind) {
    case CHAT_CHATML:
        rc = render_chatml(tp, msgs, n, tools, n_tools, add_generation_prompt, out, content);
        break;
    case CHAT_LLAMA2: rc = render_llama2(msgs, n, out, content, err, errlen); break;
    case CHAT_LLAMA3:
        rc = render_llama3(msgs, n, tools, n_tools, add_generation_prompt, out, content);
        break;
    case CHAT_CUSTOM: rc = render_custom(tp, msgs, n, add_generation_prompt, out, content); break;
    default: return err_set(err, errlen, ERR_INVALID, "no chat template");
    }
    if (rc == ERR_NOMEM)
        err_set(err, errlen, rc, "out of memory rendering %zu messages", n);
    if (rc != 0) {
        out->len = len0;
        if (content != NULL)
            content->n = n_spans0;
        if (out->data != NULL)
            out->data[len0] = '\0';
    }
    return rc;
}
