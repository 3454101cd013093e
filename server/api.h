/*
 * api.h - the OpenAI-compatible request and response formats, with no
 * I/O: JSON text in, a checked request out; engine results in, JSON text
 * out.  Loop thread (pure functions; no shared state of ours, but cJSON
 * records its last parse error in a global, so parse on one thread).
 *
 * Parsing is strict about what it understands and lenient about the
 * rest: unknown fields are ignored (OpenAI clients send extras), a known
 * field of the wrong type or out of range is an error that names the
 * field.  Everything here is hostile input (shared/THREATS.md part B).
 */
#ifndef LLAMAD_API_H
#define LLAMAD_API_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "base/utf8.h"

typedef enum { API_COMPLETIONS, API_CHAT } api_kind_t;

/* A parse failure: the HTTP status, the OpenAI error type/param/code and a message. */
typedef struct {
    unsigned status;            /* 400, 404 (unknown model), 503 (out of memory) */
    const char *type;           /* "invalid_request_error" ("server_error" for 503) */
    char param[64];             /* the offending field ("messages[2].content"), or "" */
    const char *code;           /* e.g. "context_length_exceeded", or NULL */
    char message[ERR_MSG_MAX];
} api_error_t;

/* A tool call: of an assistant message in the history, or parsed from a reply. */
typedef struct {
    char *id;                   /* "call_..." */
    char *name;
    char *arguments;            /* JSON text of an object */
} api_tool_call_t;

typedef struct {
    char *role;                 /* "system", "user", "assistant", "tool" ("developer" is read
                                   as "system"); NUL-terminated */
    char *content;              /* a string, or the text parts joined with "\n"; valid UTF-8
                                   with no NUL byte; "" for an assistant message with only
                                   tool calls */
    api_tool_call_t *tool_calls; /* assistant: [n_tool_calls] (api_tools.c) */
    size_t n_tool_calls;
    char *tool_call_id;         /* tool: the call it answers (one made earlier) */
} api_message_t;

/* One prompt of a list (completions): a text (tokens NULL) or token ids (text NULL). */
typedef struct {
    char *text;                 /* NUL-terminated UTF-8, [len] bytes */
    size_t len;
    int32_t *tokens;            /* [n_tokens] */
    size_t n_tokens;
} api_prompt_t;

/* Caps on the choices of one request (api_choices.c; documented in docs/API.md). */
#define API_MAX_N         16    /* n and best_of */
#define API_MAX_PROMPTS   64    /* prompts in a list */
#define API_MAX_SEQUENCES 128   /* prompts x best_of: the engine requests of one request */

/* tool_choice */
enum { API_TOOLS_NONE = 0, API_TOOLS_AUTO, API_TOOLS_REQUIRED, API_TOOLS_NAMED };
#define API_MAX_TOOLS 128       /* = GRAMMAR_MAX_TOOLS */
#define API_MAX_TOOL_CALLS 64   /* calls of one history message */

/* One parsed, validated request; owns everything it points to (api_request_free). */
typedef struct {
    api_kind_t kind;
    char *model;                /* as sent, or NULL */
    /* completions: the prompt as text, or as token ids */
    char *prompt;
    size_t prompt_len;
    int32_t *prompt_tokens;
    size_t n_prompt_tokens;
    /* completions with a list of prompts (api_choices.c): [n_prompts], each a text or token
       ids; prompt and prompt_tokens are then NULL */
    api_prompt_t *prompts;
    size_t n_prompts;
    /* chat */
    api_message_t *messages;
    size_t n_messages;
    /* generation */
    uint32_t max_tokens;        /* 0 = not given (until the context is full); else
                                   [1, n_ctx]; max_completion_tokens wins over max_tokens */
    sampler_params_t sampling;  /* complete and validated: logit_bias points into this
                                   request, n_logprobs = top_logprobs, seed is the client's
                                   or a fresh random one (seed_given says which) */
    sampler_bias_t *logit_bias;
    char *stop[ENGINE_MAX_STOP];
    size_t n_stop;
    int stream;
    int include_usage;          /* stream_options.include_usage */
    int logprobs;               /* chat: logprobs true; completions: logprobs given as an
                                   integer 0..5 (0 = the chosen token's logprob only) */
    uint32_t top_logprobs;      /* alternatives per token: chat top_logprobs (0..20, needs
                                   logprobs true), completions logprobs N */
    int seed_given;             /* 1: the client sent seed */
    int echo;                   /* completions: the prompt text opens each choice's text (with
                                   logprobs, the prompt tokens open the logprobs too) */
    int echo_only;              /* completions: max_tokens 0 with echo: the prompt (and its
                                   logprobs) alone, no token generated; not streamed */
    int prompt_logprobs;        /* vLLM's prompt_logprobs given: per prompt token its logprob
                                   and prompt_top alternatives (not streamed) */
    uint32_t prompt_top;        /* [0, 5] on completions, [0, 20] on chat, as logprobs */
    int speculative;            /* llamad's "speculative": 1 true, -1 false, 0 absent (the
                                   server's speculative setting) */
    uint32_t n;                 /* choices returned per prompt, [1, API_MAX_N] */
    uint32_t best_of;           /* sequences generated per prompt, [n, API_MAX_N]; the n of
                                   highest cumulative log-probability are returned */
    char *user;
    char *cache_salt;           /* vLLM's extension: requests share cached prefixes only with
                                   the same salt; 1..API_MAX_CACHE_SALT bytes, or NULL */
    size_t cache_salt_len;
    /* the output constraint (api_constraint.c): kind 0 = none, else an
       engine_constraint_kind_t with its source text (NULL for json_object) */
    int constraint_kind;
    char *constraint_src;
    size_t constraint_len;
    char constraint_param[64];  /* the field it came from, for errors */
    /* vLLM's sampling extras and llama.cpp's aliases (api_extras.c) */
    int ignore_eos;             /* end-of-generation tokens do not stop it */
    uint32_t min_tokens;        /* no stop token or stop string before this many tokens */
    int32_t stop_token_ids[ENGINE_MAX_STOP_TOKENS];
    size_t n_stop_token_ids;
    int include_stop_str;       /* include_stop_str_in_output */
    int keep_special;           /* skip_special_tokens false */
    int32_t priority;           /* lower runs first; 0 by default */
    /* tool calling (api_tools.c) */
    char **tools;               /* [n_tools] each tool as compact JSON text
                                   {"type":"function","function":{...}} */
    char **tool_names;          /* [n_tools] their names */
    char **tool_params;         /* [n_tools] their parameters schemas as JSON text, or NULL */
    size_t n_tools;
    int tool_choice;            /* API_TOOLS_*; auto when tools are given, else none */
    size_t tool_named;          /* API_TOOLS_NAMED: the index of the tool */
    int parallel_tool_calls;    /* 1 (the default): several calls; 0: at most one */
} api_request_t;

#define API_MAX_CACHE_SALT 256

/* Limits applied while parsing (the daemon fills them from its config). */
typedef struct {
    uint32_t n_vocab;
    uint32_t n_ctx;
    size_t max_prompt_bytes;    /* prompt or all messages' text; e.g. 16 * n_ctx */
    unsigned max_json_depth;    /* e.g. 64 */
    const char *model_name;     /* requests naming another model get 404 */
    const char *model_aliases;  /* served-model-name: more names it answers to, comma-separated;
                                   NULL: none */
} api_limits_t;

/*
 * Parse a request body for `kind`.  Returns 0 and fills *req, or a
 * negative ERR_* code and fills *e (then *req holds nothing to free, and
 * api_request_free on it is harmless).  The body need not be
 * NUL-terminated.  Errors: ERR_INVALID/ERR_RANGE/ERR_FORMAT (400),
 * ERR_UNSUPPORTED (400, a feature we do not serve: tools, suffix ...),
 * ERR_TOOLONG (400: prompt over max_prompt_bytes or n_ctx tokens),
 * ERR_NOTFOUND (404 model_not_found), ERR_NOMEM (503).  Limits of 0 mean:
 * max_json_depth 64, max_prompt_bytes 16 * n_ctx, n_vocab/n_ctx unchecked
 * (tests only); model_name NULL accepts any model.
 */
/*
 * Whether a request's "model" value names the served model: model_name,
 * or one of model_aliases; always true when model_name is NULL (tests).
 */
int api_model_matches(const api_limits_t *lim, const char *name);

int api_parse_request(api_kind_t kind, const char *body, size_t len, const api_limits_t *lim,
                      api_request_t *req, api_error_t *e);
void api_request_free(api_request_t *req);

struct cJSON;

/*
 * A completions prompt given as a list (v, a cJSON array whose first
 * element is not a number): strings, or arrays of token ids, at most
 * API_MAX_PROMPTS, each non-empty, each text at most max_bytes and all
 * of them at most 4 * max_bytes, each token list at most n_ctx ids in
 * [0, n_vocab).  Fills req->prompts; 0 or an error naming the field
 * ("prompt[3][7]").
 */
int api_parse_prompt_list(const struct cJSON *v, const api_limits_t *lim, size_t max_bytes,
                          api_request_t *req, api_error_t *e);

/*
 * n, best_of, echo and suffix (api_choices.c), read after the prompt, the
 * stream flag and the logprobs: n and best_of within API_MAX_N, best_of >=
 * n, streaming only with best_of == n (as OpenAI), prompts x best_of within
 * API_MAX_SEQUENCES; max_tokens 0 only with echo, not streamed; suffix
 * is refused (no fill-in-the-middle template).
 * 0, or an error naming the field.
 */
int api_parse_choices(const struct cJSON *root, api_request_t *req, api_error_t *e);

/*
 * The output constraint fields of a parsed request object (root is a
 * cJSON object): response_format, vLLM's guided_* and structured_outputs,
 * llama.cpp's grammar and json_schema.  Fills req->constraint_*; 0 or an
 * error naming the field (two constraints, wrong types, unsupported
 * options).  The source is compiled later (engine_constraint_compile).
 */
struct cJSON;
int api_parse_constraint(const struct cJSON *root, api_request_t *req, api_error_t *e);

/*
 * The fields of OpenAI's, vLLM's and llama.cpp's completion APIs that
 * api_request.c does not read itself (api_extras.c): the served ones
 * (ignore_eos, min_tokens, stop_token_ids, include_stop_str_in_output,
 * skip_special_tokens, spaces_between_special_tokens, priority, n_predict,
 * repeat_penalty ...) fill *req; the others are accepted at their neutral
 * value and otherwise refused, a 400 whose param names them (the table is
 * in docs/API.md).  Called by api_parse_request after every other field,
 * so that max_tokens and the sampling are known.  0, or ERR_INVALID /
 * ERR_RANGE / ERR_UNSUPPORTED with *e filled.
 */
int api_parse_extras(const struct cJSON *root, api_kind_t kind, const api_limits_t *lim,
                     api_request_t *req, api_error_t *e);

/*
 * Tool calling (api_tools.c): tools, tool_choice, parallel_tool_calls and
 * the legacy functions / function_call (served as tools and tool_choice).
 * Fills req->tools..; 0 or a 400 naming the field (a bad name, a
 * duplicate name, more than API_MAX_TOOLS, an unknown named tool).
 */
int api_parse_tools(const struct cJSON *root, api_request_t *req, api_error_t *e);
/*
 * The tool fields of messages[i] (m): an assistant's tool_calls (then a
 * null content is ""), a tool message's tool_call_id, which must name a
 * call of an earlier message of req.  Called with am's role set.
 */
int api_parse_message_tools(const struct cJSON *m, size_t i, api_request_t *req,
                            api_message_t *am, api_error_t *e);
void api_tool_calls_free(api_tool_call_t *c, size_t n);

/* The OpenAI error object as JSON text (malloc'd, NUL-terminated; NULL when out of
 * memory).  An empty param and a NULL code come out as null; invalid UTF-8 in the
 * message is replaced, so the text is always valid JSON. */
char *api_error_json(const api_error_t *e);

/*
 * Fill *e (for the daemon's own errors: 401, 404 route, 429, 503 ...) and
 * return `code`.  type NULL means "invalid_request_error"; param NULL means
 * none; ecode (the OpenAI "code") may be NULL.  type and ecode must be
 * string literals or otherwise outlive *e.
 */
int api_error_set(api_error_t *e, int code, unsigned status, const char *type,
                  const char *param, const char *ecode, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/*
 * A malloc'd, NUL-terminated copy of s[0..len) (s may be NULL when len is 0)
 * in which every ill-formed subpart (base/utf8.h), and every NUL byte, is
 * U+FFFD: safe to put into JSON.  NULL when out of memory.
 */
char *api_utf8_repair(const char *s, size_t len);

/* ---- hostile JSON (json.c): the checks every route makes before reading a field ---- */

struct cJSON;

#define JSON_SMALL_DEPTH 64     /* nesting allowed in a small body (/tokenize, /detokenize) */

/*
 * The raw bytes: valid UTF-8, no NUL byte, no \u0000 escape, nesting no
 * deeper than max_depth (checked before cJSON recurses).  0, or
 * ERR_FORMAT/ERR_INVALID with *e filled (400).
 */
int json_scan_raw(const char *body, size_t len, unsigned max_depth, api_error_t *e);

/* No object anywhere in the tree names a member twice.  0, ERR_INVALID (400,
 * param the key) or ERR_NOMEM (503); the depth must have been bounded. */
int json_check_dups(const struct cJSON *node, api_error_t *e);

/*
 * A small body (/tokenize, /detokenize): json_scan_raw, then an object of
 * at most max_members members, json_check_dups.  The tree (cJSON_Delete
 * it), or NULL with *e filled.
 */
struct cJSON *json_parse_small_object(const char *body, size_t len, int max_members,
                                      api_error_t *e);

/* ---- responses (malloc'd JSON text; NULL when out of memory) ---- */

/* What a finished (or streaming) completion has produced so far. */
typedef struct {
    const char *id;             /* "cmpl-..." or "chatcmpl-..." */
    const char *model;
    int64_t created;            /* unix seconds */
    api_kind_t kind;
    /* streaming completions with logprobs: code points of text sent in earlier chunks
       (text_offset of this chunk's token); add api_utf8_chars() of each chunk's text,
       or leave 0 */
    uint64_t text_offset;
    uint32_t index;             /* chunks: the choice this chunk belongs to */
    /* chat chunks of api_text_chunk_json and api_tool_call_chunk_json: the TOKEN events
       whose logprobs ride on this chunk ([n_lp_events]; NULL: logprobs null), spelled
       with lp_tok */
    const engine_event_t *const *lp_events;
    size_t n_lp_events;
    const tokenizer_t *lp_tok;
} api_resp_meta_t;

/* One prompt token's log-probability (an ENGINE_EV_PROMPT event, kept compact). */
typedef struct {
    int32_t token;
    float logprob;
    uint32_t rank;              /* 1 + the tokens more probable */
    uint32_t n_top;
    sampler_logprob_t top[SAMPLER_MAX_LOGPROBS];
} api_prompt_lp_t;

typedef struct {
    const char *text;           /* the whole generated text */
    size_t text_len;
    const char *finish_reason;  /* "stop", "length", or NULL while streaming */
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
    /* logprobs, when asked: one entry per generated token */
    const engine_event_t *const *token_events; /* [n_tokens] the TOKEN events, in order */
    size_t n_tokens;
    int want_logprobs;
    const tokenizer_t *tok;     /* to spell tokens in logprobs (engine_token_piece) */
    const api_tool_call_t *tool_calls; /* chat: [n_tool_calls] the reply's calls; then text is
                                   the text besides them (content null when empty) */
    size_t n_tool_calls;
    /* the prompt's log-probabilities, when echo with logprobs or prompt_logprobs asked
       for them: prompt_lps[i] is prompt token i + 1; token 0 (prompt_first) has none */
    const api_prompt_lp_t *prompt_lps;
    size_t n_prompt_lps;
    int32_t prompt_first;
    size_t echo_len;            /* completions echo: text opens with these bytes of prompt,
                                   and with want_logprobs the prompt tokens open logprobs */
    int prompt_logprobs;        /* vLLM's prompt_logprobs: the choice's (completions) or the
                                   response's (chat: the first result's) prompt_logprobs */
    uint32_t prompt_top;        /* its alternatives per token */
    uint32_t echo_top;          /* echo: the alternatives per prompt token in logprobs */
} api_result_t;

/* The non-streaming response body of one choice (index 0, r's usage). */
char *api_response_json(const api_resp_meta_t *m, const api_result_t *r);

/*
 * The non-streaming response body of several choices: r[i] is the choice
 * of index indices[i] (NULL: index i); usage is the given totals (prompt
 * tokens once per prompt, completion tokens summed over choices).
 */
char *api_responses_json(const api_resp_meta_t *m, const api_result_t *r, size_t n,
                         const uint32_t *indices, uint32_t prompt_tokens,
                         uint32_t completion_tokens, uint32_t cached_tokens);

/* A chunk of plain text for choice m->index (echo's prompt text; with tools, the
 * content besides the calls): completions' text or chat's delta.content;
 * logprobs those of m->lp_events (chat) or null; finish_reason null. */
char *api_text_chunk_json(const api_resp_meta_t *m, const char *text, size_t len);

/* Completions, streamed echo with logprobs: the chunk of r's echo (text[0..echo_len))
 * with the prompt tokens' logprobs (r->prompt_lps, prompt_first, echo_top, tok). */
char *api_echo_chunk_json(const api_resp_meta_t *m, const api_result_t *r);

/*
 * A chat chunk with call i of choice m->index, as OpenAI streams tool calls:
 * head 1 opens the call (index, id, type, function.name, arguments ""),
 * head 0 carries its arguments (index, function.arguments).  logprobs:
 * those of m->lp_events, or null.  NULL when out of memory.
 */
char *api_tool_call_chunk_json(const api_resp_meta_t *m, size_t i, const api_tool_call_t *call,
                               int head);

/*
 * One SSE chunk for a streaming response, without the "data: " prefix and
 * the blank line.  `ev` is a TOKEN event (its text delta and logprobs), a
 * FINISH event (its held-back text, no logprobs) or NULL; finish_reason is
 * NULL until the final chunk.  Chat's first chunk carries the role
 * (first != 0; with ev NULL its content is "").  api_usage_chunk_json is the
 * stream_options.include_usage chunk (choices: []).
 */
char *api_chunk_json(const api_resp_meta_t *m, const engine_event_t *ev, int first,
                     const char *finish_reason, int want_logprobs, const tokenizer_t *tok);
char *api_usage_chunk_json(const api_resp_meta_t *m, uint32_t prompt_tokens,
                           uint32_t completion_tokens, uint32_t cached_tokens);

#endif
