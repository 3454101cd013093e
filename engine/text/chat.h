/*
 * chat.h - chat messages -> prompt text, by built-in templates.
 *
 * Owns: the three built-in prompt formats (ChatML, LLaMA-2, LLaMA-3) and
 * templates read from a small file format of our own.  A model's Jinja
 * template is data: it is only searched for markers that pick a built-in
 * format and, for ChatML, a default system prompt (shared/THREATS.md A7:
 * model-supplied templates are never executed).  Pure functions over
 * caller-owned storage; any thread.
 *
 * The formats, as their published Jinja templates render them:
 *   ChatML   <|im_start|>{role}\n{content}<|im_end|>\n ...
 *            generation prompt <|im_start|>assistant\n.  When the template
 *            inserts a fixed system message before a first message that is
 *            not a system message (SmolLM2, Qwen2), so do we.
 *   LLaMA-2  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s>
 *            <s>[INST] {user} [/INST] ...  (a BOS per turn; contents
 *            stripped of surrounding whitespace; after an optional first
 *            system message, roles must alternate user/assistant).
 *   LLaMA-3  <|begin_of_text|> then per message
 *            <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>
 *            (contents stripped); generation prompt
 *            <|start_header_id|>assistant<|end_header_id|>\n\n.
 *
 * Template file (chat_template_from_file): UTF-8 text, one `key = value`
 * per line; blank lines, lines starting with '#' or ';', and [section]
 * lines are ignored.  Spaces around '=' and at the ends of a value are
 * dropped; a value in double quotes keeps its spaces.  Escapes: \n \t \r
 * \\ \".  Keys (all optional, each at most once):
 *   bos                   emitted once, before everything
 *   system_prefix, system_suffix, user_prefix, user_suffix,
 *   assistant_prefix, assistant_suffix
 *                         written around each message's content
 *   generation_prompt     appended when add_generation_prompt is set
 *   default_system        content of a system message inserted before a
 *                         first message that is not a system message
 * Example (ChatML):
 *   user_prefix = <|im_start|>user\n
 *   user_suffix = <|im_end|>\n
 *   generation_prompt = <|im_start|>assistant\n
 */
#ifndef LLAMAD_CHAT_H
#define LLAMAD_CHAT_H

#include <stddef.h>

#include "tokenizer.h"   /* tok_text_t, the growable output */

typedef enum {
    CHAT_UNKNOWN = 0,
    CHAT_CHATML = 1,
    CHAT_LLAMA2 = 2,
    CHAT_LLAMA3 = 3,
    CHAT_CUSTOM = 4,     /* read from a template file */
} chat_kind_t;

enum { CHAT_SYSTEM = 0, CHAT_USER = 1, CHAT_ASSISTANT = 2, CHAT_N_ROLES = 3 };

#define CHAT_MAX_FILE  (64 * 1024)   /* bytes of a template file */
#define CHAT_MAX_VALUE 4096          /* bytes of one file value or default system prompt */

/* A tool call of an assistant message: the name and the arguments' JSON text. */
typedef struct {
    const char *name;
    const char *arguments;
} chat_call_t;

/* One message: role "system", "user", "assistant" or "tool"; NUL-terminated UTF-8. */
typedef struct {
    const char *role;
    const char *content;
    const chat_call_t *calls;         /* assistant: [n_calls] the tool calls it made */
    size_t n_calls;
} chat_msg_t;

/* A template: a built-in kind plus its data (caller-owned: init, close). */
typedef struct {
    chat_kind_t kind;
    char *default_system;             /* NULL: none */
    char *bos;                        /* CUSTOM only */
    char *prefix[CHAT_N_ROLES];       /* CUSTOM only; NULL = "" */
    char *suffix[CHAT_N_ROLES];
    char *generation_prompt;
} chat_template_t;

/* The built-in format a Jinja template's text belongs to (NULL -> UNKNOWN). */
chat_kind_t chat_template_detect(const char *jinja_text);
/* "chatml", "llama2", "llama3" -> the kind; anything else -> CHAT_UNKNOWN. */
chat_kind_t chat_template_by_name(const char *name);
const char *chat_kind_name(chat_kind_t kind);

/*
 * A built-in template.  jinja_text (may be NULL) is the model's template:
 * for ChatML, a fixed default system message found in it is kept.
 * Returns 0, ERR_INVALID for CHAT_UNKNOWN/CUSTOM, or ERR_NOMEM.
 */
int chat_template_init(chat_template_t *tp, chat_kind_t kind, const char *jinja_text);
/* Read a template file (format above).  Errors name the file and line. */
int chat_template_from_file(chat_template_t *tp, const char *path, char *err, size_t errlen);
void chat_template_close(chat_template_t *tp);

/* Whether rendered text already starts with BOS (then do not add another). */
int chat_template_has_bos(const chat_template_t *tp);

/*
 * Append the prompt for msgs[0..n) to out.  add_generation_prompt: end
 * with the assistant's header so the model answers next.  Returns 0,
 * ERR_INVALID (an unknown role, a NULL content, LLaMA-2 roles that do not
 * alternate; err names messages[i]) or ERR_NOMEM.  On error out->len is
 * restored.
 */
int chat_render(const chat_template_t *tp, const chat_msg_t *msgs, size_t n,
                int add_generation_prompt, tok_text_t *out, char *err, size_t errlen);

/*
 * chat_render, also appending to `content` the byte range of out that each
 * message's content occupies (ascending, not overlapping; the operator's
 * default system prompt is template, not content).  Encode the result
 * with tok_encode_plain(..., content, ...) so that control-token strings
 * typed by a client stay text.  On error content->n is restored too.
 */
int chat_render_spans(const chat_template_t *tp, const chat_msg_t *msgs, size_t n,
                      int add_generation_prompt, tok_text_t *out, tok_spans_t *content,
                      char *err, size_t errlen);

/*
 * chat_render_spans with tools: tools[0..n_tools) are the JSON texts of
 * the tools offered (OpenAI's {"type":"function","function":{...}}),
 * rendered as the format's tool section; messages may carry tool calls
 * (assistant) and have role "tool".  The formats:
 *   ChatML (Hermes / Qwen2.5 style)  the system message gains a "# Tools"
 *            section listing each tool as JSON in <tools></tools> and asking
 *            for calls as <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>;
 *            an assistant's calls are written back that way after its content;
 *            a tool message is a "tool" turn with its content in
 *            <tool_response>\n...\n</tool_response>.
 *   LLaMA-3  (Meta's 3.1 JSON tool calling) the system message starts with
 *            "Environment: ipython"; the first user message is preceded by the
 *            instruction and the tools' JSON; a call is
 *            {"name": ..., "parameters": ...}; a tool result is an "ipython" turn.
 *   LLaMA-2, file templates: no tool format: tools, tool calls or a tool
 *            message are ERR_UNSUPPORTED naming the template.
 * The tools' text and the calls' names and arguments are client content
 * (recorded in `content`).  n_tools 0 with no tool message or call is
 * chat_render_spans.
 */
int chat_render_tools(const chat_template_t *tp, const chat_msg_t *msgs, size_t n,
                      const char *const *tools, size_t n_tools, int add_generation_prompt,
                      tok_text_t *out, tok_spans_t *content, char *err, size_t errlen);

#endif
