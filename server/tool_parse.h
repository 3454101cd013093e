/*
 * tool_parse.h - tool calls as a chat format writes them: the constraint
 * spec that keeps a model's calls well-formed (grammar_from_tool_calls's
 * input) and the parser that turns a reply's text into OpenAI tool_calls.
 * Formats: "chatml" (Hermes: <tool_call>\n{"name", "arguments"}\n</tool_call>,
 * one or more) and "llama3" (one JSON object {"name", "parameters"}).
 * Pure functions; any thread.
 */
#ifndef LLAMAD_TOOL_PARSE_H
#define LLAMAD_TOOL_PARSE_H

#include <stddef.h>

#include "api.h"

/*
 * The spec of req's tool calls for chat format `kind` (the tools, or the
 * named one; one call unless parallel_tool_calls), malloc'd JSON text, and
 * in *trigger the text that opens a call (for tool_choice auto).  NULL
 * when the format has no tool calls (*trigger NULL) or out of memory.
 */
char *tool_spec_json(const api_request_t *req, const char *kind, const char **trigger);

/* A reply split into its text and its calls. */
typedef struct {
    char *content;              /* the text outside the calls, NUL-terminated (maybe "") */
    api_tool_call_t *calls;     /* [n_calls]; id "call_" + 24 random hex digits */
    size_t n_calls;
} tool_reply_t;

/*
 * Split text[0..len) as format `kind` writes tool calls.  A reply whose
 * markup is not a well-formed call is all content (no calls).  0 or
 * ERR_NOMEM; free with tool_reply_free.
 */
int tool_parse_reply(const char *text, size_t len, const char *kind, tool_reply_t *out);
void tool_reply_free(tool_reply_t *r);

#endif
