/*
 * prompt.c - prompts and text as the server sees them: a completion's
 * text or a chat's messages become a request's tokens (the chat template,
 * the control-token spans, the BOS rule), and /tokenize, /detokenize and
 * the logprobs' token spelling go through here.  Knowledge of the model's
 * tokenizer and chat template stays in the engine.
 *
 * Any thread: the tokenizer and the chat template are immutable once the
 * engine is created; nothing here touches the engine thread's state.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"
#include "base/err.h"

_Static_assert(ENGINE_MAX_PROMPT_BYTES == TOK_MAX_INPUT_BYTES,
               "engine.h states the tokenizer's input limit");
_Static_assert(sizeof(engine_msg_t) == sizeof(chat_msg_t), "a chat message is the same in both");
_Static_assert(sizeof(engine_tool_call_t) == sizeof(chat_call_t), "so is a tool call");

/* Hand a token buffer's ids to the caller (or free them on error). */
static int give_ids(int rc, tok_buf_t *b, int32_t **ids, size_t *n)
{
    if (rc != 0) {
        tok_buf_close(b);
        return rc;
    }
    if (b->ids == NULL && (b->ids = malloc(sizeof *b->ids)) == NULL)
        return ERR_NOMEM;   /* an empty result still gets an array the caller can free */
    *ids = b->ids;
    *n = b->n;
    return 0;
}

/* Render the chat with the template in force and encode it, markers as control tokens. */
static int encode_chat(const engine_t *e, const engine_prompt_t *p, tok_buf_t *out, char *err,
                       size_t errlen)
{
    const tokenizer_t *tok = e->model->tok;
    if (!e->have_chat)
        return err_set(err, errlen, ERR_UNSUPPORTED,
                       "this model's chat template is not one llamad knows; start llamad with "
                       "--chat-template chatml, llama2, llama3 or a template file, or use "
                       "/v1/completions");
    chat_msg_t *msgs = calloc(p->n_messages ? p->n_messages : 1, sizeof *msgs);
    if (msgs == NULL)
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < p->n_messages; i++)
        msgs[i] = (chat_msg_t){ p->messages[i].role, p->messages[i].content,
                                (const chat_call_t *)p->messages[i].tool_calls,
                                p->messages[i].n_tool_calls };
    tok_text_t text;
    tok_spans_t content;
    tok_text_init(&text);
    tok_spans_init(&content);
    int rc = chat_render_tools(&e->chat, msgs, p->n_messages, p->tools, p->n_tools, 1, &text,
                               &content, err, errlen);
    free(msgs);
    if (rc == 0) {
        /* the template's markers are control tokens; what clients wrote stays text */
        int bos = !chat_template_has_bos(&e->chat) && tok_add_bos_default(tok);
        rc = tok_encode_plain(tok, text.data ? text.data : "", text.len, bos, &content, out, err,
                              errlen);
    }
    tok_text_close(&text);
    tok_spans_close(&content);
    return rc;
}

int engine_encode_prompt(const engine_t *e, const engine_prompt_t *p, int32_t **ids, size_t *n,
                         char *err, size_t errlen)
{
    const tokenizer_t *tok = e->model->tok;
    tok_buf_t b;
    tok_buf_init(&b);
    *ids = NULL;
    *n = 0;
    int rc;
    if (p->messages != NULL)
        rc = encode_chat(e, p, &b, err, errlen);
    else
        rc = tok_encode(tok, p->text ? p->text : "", p->len, tok_add_bos_default(tok), 1, &b, err,
                        errlen);
    return give_ids(rc, &b, ids, n);
}

int engine_tokenize(const engine_t *e, const char *text, size_t len, int add_bos,
                    int parse_special, int32_t **ids, size_t *n, char *err, size_t errlen)
{
    tok_buf_t b;
    tok_buf_init(&b);
    *ids = NULL;
    *n = 0;
    int rc = tok_encode(e->model->tok, text ? text : "", len, add_bos, parse_special, &b, err, errlen);
    return give_ids(rc, &b, ids, n);
}

int engine_detokenize(const engine_t *e, const int32_t *ids, size_t n, char **text, size_t *len)
{
    tok_text_t t;
    tok_text_init(&t);
    *text = NULL;
    *len = 0;
    int rc = tok_decode(e->model->tok, ids, n, 0, &t);
    if (rc == 0 && t.data == NULL && (t.data = calloc(1, 1)) == NULL)
        rc = ERR_NOMEM;     /* nothing decoded: still a string the caller can free */
    if (rc != 0) {
        tok_text_close(&t);
        return rc;
    }
    *text = t.data;
    *len = t.len;
    return 0;
}

const char *engine_token_piece(const tokenizer_t *tok, int32_t id, size_t *len)
{
    return tok_piece(tok, id, len);
}
