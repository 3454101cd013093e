/*
 * api_extras.c - the request fields of OpenAI's, vLLM's and llama.cpp's
 * completion APIs beyond the core ones api_request.c reads: none is ever
 * ignored in silence.  Each is either served (it fills api_request_t), or
 * accepted at its neutral value (the value with which serving it would
 * change nothing: use_beam_search false, typical_p 1, mirostat 0 ...), or
 * refused with a 400 whose param names it.  docs/API.md has the table.
 *
 * Fields of other work are not read here: tools and tool_choice, n,
 * best_of, echo and suffix on /v1/completions, list prompts, and the
 * structured-output fields (response_format, guided_*, grammar ...).
 * Truly unknown fields stay ignored, as api.h says.
 * Loop thread; no state outside the call.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "json_get.h"

#define BAD(e, code, param, ...) api_error_set((e), (code), 400, NULL, (param), NULL, __VA_ARGS__)

enum { R_COMPL = 1, R_CHAT = 2, R_BOTH = 3 };

/* ================================================================== */
/* Accepted at their neutral value, else refused                       */
/* ================================================================== */

typedef enum {
    N_FALSE,        /* a boolean: false accepted */
    N_TRUE,         /* a boolean: true accepted */
    N_NUM,          /* a number: .num accepted */
    N_EMPTY,        /* an array or object: empty accepted */
    N_STRS,         /* a string: one of .strs ("a|b") accepted */
    N_NULL,         /* only null (absent) accepted */
    N_TEXT_LIST,    /* an array of strings: only "text" accepted (modalities) */
    A_STRING,       /* any string: a name or a hint that changes no output */
    A_OBJECT,       /* any object: likewise */
    A_NUMBER,       /* any number: a parameter of a sampler that is off unless its
                       switch (refused when on) is given */
    A_ARRAY,        /* any array: likewise */
} rule_t;

typedef struct {
    const char *name;
    unsigned routes;
    rule_t rule;
    double num;
    const char *strs;
    const char *why;    /* why any other value is refused */
} extra_t;

static const extra_t EXTRAS[] = {
    /* OpenAI */
    { "audio", R_CHAT, N_NULL, 0, NULL, "audio output is not served" },
    { "modalities", R_CHAT, N_TEXT_LIST, 0, NULL, "only text output is served" },
    { "prediction", R_CHAT, N_NULL, 0, NULL, "predicted outputs are not served" },
    { "web_search_options", R_CHAT, N_NULL, 0, NULL, "web search is not served" },
    { "store", R_BOTH, N_FALSE, 0, NULL, "llamad stores no completions" },
    { "metadata", R_BOTH, A_OBJECT, 0, NULL, NULL },
    { "service_tier", R_BOTH, N_STRS, 0, "auto|default", "llamad has one service tier" },
    { "reasoning_effort", R_CHAT, N_STRS, 0, "none", "the model is not a reasoning model" },
    { "verbosity", R_CHAT, N_STRS, 0, "medium", "the model's verbosity is not adjustable" },
    { "prompt_cache_key", R_BOTH, A_STRING, 0, NULL, NULL },
    { "safety_identifier", R_BOTH, A_STRING, 0, NULL, NULL },
    { "prompt_cache_retention", R_BOTH, A_STRING, 0, NULL, NULL },
    /* vLLM */
    { "use_beam_search", R_BOTH, N_FALSE, 0, NULL, "beam search is not served" },
    { "length_penalty", R_BOTH, N_NUM, 1, NULL, "only beam search uses it" },
    { "truncate_prompt_tokens", R_BOTH, N_NULL, 0, NULL, "prompts are never truncated" },
    { "allowed_token_ids", R_BOTH, N_NULL, 0, NULL, "not served" },
    { "bad_words", R_BOTH, N_EMPTY, 0, NULL, "not served" },
    { "logits_processors", R_BOTH, N_EMPTY, 0, NULL, "llamad runs no client code" },
    { "return_tokens_as_token_ids", R_BOTH, N_FALSE, 0, NULL, "not served" },
    { "return_token_ids", R_BOTH, N_FALSE, 0, NULL, "not served" },
    { "vllm_xargs", R_BOTH, N_EMPTY, 0, NULL, "no extra arguments are read" },
    { "kv_transfer_params", R_BOTH, N_NULL, 0, NULL, "KV transfer is not served" },
    { "request_id", R_BOTH, A_STRING, 0, NULL, NULL },
    { "add_generation_prompt", R_CHAT, N_TRUE, 0, NULL, "the prompt always ends with the "
      "assistant's turn opened" },
    { "continue_final_message", R_CHAT, N_FALSE, 0, NULL, "not served" },
    { "add_special_tokens", R_CHAT, N_FALSE, 0, NULL, "the chat template places the special "
      "tokens" },
    { "add_special_tokens", R_COMPL, N_TRUE, 0, NULL, "a prompt text is encoded as the model "
      "file says (BOS included when it asks)" },
    { "documents", R_CHAT, N_EMPTY, 0, NULL, "the chat templates take no documents" },
    { "chat_template", R_CHAT, N_NULL, 0, NULL, "the template is the server's (chat-template)" },
    { "chat_template_kwargs", R_CHAT, N_EMPTY, 0, NULL, "the built-in templates take no "
      "arguments" },
    { "mm_processor_kwargs", R_BOTH, N_EMPTY, 0, NULL, "the model takes text only" },
    { "media_io_kwargs", R_BOTH, N_EMPTY, 0, NULL, "the model takes text only" },
    { "prompt_embeds", R_COMPL, N_NULL, 0, NULL, "prompts are text or token ids" },
    { "echo", R_CHAT, N_FALSE, 0, NULL, "not served on chat" },
    /* llama.cpp's server */
    { "n_probs", R_BOTH, N_NUM, 0, NULL, "use logprobs / top_logprobs" },
    { "cache_prompt", R_BOTH, N_TRUE, 0, NULL, "the prefix cache is the server's "
      "(no-prefix-cache)" },
    { "id_slot", R_BOTH, N_NUM, -1, NULL, "llamad has no slots" },
    { "samplers", R_BOTH, N_NULL, 0, NULL, "the order of samplers is fixed" },
    { "n_keep", R_BOTH, N_NUM, 0, NULL, "the context is never shifted" },
    { "n_indent", R_BOTH, N_NUM, 0, NULL, "not served" },
    { "n_cmpl", R_BOTH, N_NUM, 1, NULL, "one choice per request" },
    { "n_cache_reuse", R_BOTH, N_NUM, 0, NULL, "the KV cache is never shifted" },
    { "sse_ping_interval", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "tfs_z", R_BOTH, N_NUM, 1, NULL, "tail-free sampling is not served" },
    { "typical_p", R_BOTH, N_NUM, 1, NULL, "typical sampling is not served" },
    { "dynatemp_range", R_BOTH, N_NUM, 0, NULL, "dynamic temperature is not served" },
    { "dynatemp_exponent", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "mirostat", R_BOTH, N_NUM, 0, NULL, "mirostat is not served" },
    { "mirostat_tau", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "mirostat_eta", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "dry_multiplier", R_BOTH, N_NUM, 0, NULL, "DRY is not served" },
    { "dry_base", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "dry_allowed_length", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "dry_penalty_last_n", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "dry_sequence_breakers", R_BOTH, A_ARRAY, 0, NULL, NULL },
    { "xtc_probability", R_BOTH, N_NUM, 0, NULL, "XTC is not served" },
    { "xtc_threshold", R_BOTH, A_NUMBER, 0, NULL, NULL },
    { "top_n_sigma", R_BOTH, N_NUM, -1, NULL, "top-n-sigma is not served" },
    { "min_keep", R_BOTH, N_NUM, 0, NULL, "every filter keeps one token" },
    { "t_max_predict_ms", R_BOTH, N_NUM, 0, NULL, "use max_tokens" },
    { "image_data", R_BOTH, N_EMPTY, 0, NULL, "the model takes text only" },
    { "multimodal_data", R_BOTH, N_EMPTY, 0, NULL, "the model takes text only" },
    { "return_tokens", R_BOTH, N_FALSE, 0, NULL, "not served" },
    { "timings_per_token", R_BOTH, N_FALSE, 0, NULL, "not served" },
    { "post_sampling_probs", R_BOTH, N_FALSE, 0, NULL, "log-probabilities are reported "
      "before sampling" },
    { "response_fields", R_BOTH, N_EMPTY, 0, NULL, "the response is OpenAI's" },
    { "lora", R_BOTH, N_EMPTY, 0, NULL, "no adapters are loaded" },
    { "return_progress", R_BOTH, N_FALSE, 0, NULL, "not served" },
};

/* Whether s is one of the '|'-separated names in list. */
static int in_list(const char *s, const char *list)
{
    size_t n = strlen(s);
    for (const char *p = list; *p != '\0';) {
        size_t k = strcspn(p, "|");
        if (k == n && memcmp(p, s, n) == 0)
            return 1;
        p += k + (p[k] == '|');
    }
    return 0;
}

static int check_extra(const extra_t *x, const cJSON *v, api_error_t *e)
{
    const char *n = x->name;
    const char *want = NULL;    /* the type expected, when v has another */
    int neutral = 0;
    switch (x->rule) {
    case N_FALSE:
    case N_TRUE:
        want = cJSON_IsBool(v) ? NULL : "a boolean";
        neutral = cJSON_IsTrue(v) == (x->rule == N_TRUE);
        break;
    case N_NUM:
        want = cJSON_IsNumber(v) ? NULL : "a number";
        neutral = cJSON_IsNumber(v) && v->valuedouble == x->num;
        break;
    case N_EMPTY:
        want = cJSON_IsArray(v) || cJSON_IsObject(v) ? NULL : "an array or an object";
        neutral = v->child == NULL;
        break;
    case N_STRS:
        want = cJSON_IsString(v) ? NULL : "a string";
        neutral = want == NULL && in_list(v->valuestring, x->strs);
        break;
    case N_NULL:
        break;
    case N_TEXT_LIST:
        want = cJSON_IsArray(v) ? NULL : "an array of strings";
        neutral = 1;
        for (const cJSON *m = want ? NULL : v->child; m != NULL; m = m->next)
            neutral &= cJSON_IsString(m) && strcmp(m->valuestring, "text") == 0;
        break;
    case A_STRING:
        want = cJSON_IsString(v) ? NULL : "a string";
        neutral = 1;
        break;
    case A_OBJECT:
        want = cJSON_IsObject(v) ? NULL : "an object";
        neutral = 1;
        break;
    case A_NUMBER:
        want = cJSON_IsNumber(v) ? NULL : "a number";
        neutral = 1;
        break;
    case A_ARRAY:
        want = cJSON_IsArray(v) ? NULL : "an array";
        neutral = 1;
        break;
    }
    if (want != NULL)
        return BAD(e, ERR_INVALID, n, "%s: expected %s, got %s", n, want, jget_type_name(v));
    if (neutral)
        return 0;
    if (x->rule == N_NUM)
        return BAD(e, ERR_UNSUPPORTED, n, "%s: only %g is supported (%s)", n, x->num, x->why);
    if (x->rule == N_STRS)
        return BAD(e, ERR_UNSUPPORTED, n, "%s: \"%.40s\" is not supported (%s)", n,
                   v->valuestring, x->why);
    return BAD(e, ERR_UNSUPPORTED, n, "%s: not supported (%s)", n, x->why);
}

/* ================================================================== */
/* Served                                                              */
/* ================================================================== */

static int parse_stop_token_ids(const cJSON *root, const api_limits_t *lim, api_request_t *req,
                                api_error_t *e)
{
    const char *n = "stop_token_ids";
    const cJSON *v = jget_field(root, n);
    if (v == NULL)
        return 0;
    if (!cJSON_IsArray(v))
        return BAD(e, ERR_INVALID, n, "%s: expected an array of token ids, got %s", n,
                   jget_type_name(v));
    size_t count = (size_t)cJSON_GetArraySize(v);
    if (count > ENGINE_MAX_STOP_TOKENS)
        return BAD(e, ERR_RANGE, n, "%s: %zu ids, at most %d", n, count, ENGINE_MAX_STOP_TOKENS);
    double hi = lim->n_vocab > 0 ? (double)lim->n_vocab - 1 : (double)INT32_MAX;
    size_t i = 0;
    for (const cJSON *t = v->child; t != NULL; t = t->next, i++) {
        int64_t id;
        int rc = jget_int(t, n, 0, hi, &id, e);
        if (rc != 0)
            return rc;
        req->stop_token_ids[i] = (int32_t)id;
    }
    req->n_stop_token_ids = count;
    return 0;
}

/* llama.cpp's names for what api_request.c read under OpenAI's or vLLM's. */
static int parse_aliases(const cJSON *root, const api_limits_t *lim, api_request_t *req,
                         api_error_t *e)
{
    int rc;
    double max_gen = lim->n_ctx > 0 ? lim->n_ctx : INT32_MAX;
    const cJSON *np = jget_field(root, "n_predict");
    if (np != NULL) {
        /* -1 (forever) and -2 (until the context is full) are both llamad's default */
        int64_t n;
        if ((rc = jget_int(np, "n_predict", -2, max_gen, &n, e)) != 0)
            return rc;
        if (n == 0)
            return BAD(e, ERR_RANGE, "n_predict", "n_predict: 0 is not supported (at least 1, "
                       "or -1 for no limit)");
        int given = jget_field(root, "max_tokens") || jget_field(root, "max_completion_tokens");
        if (given && (n < 0 || (uint32_t)n != req->max_tokens))
            return BAD(e, ERR_INVALID, "n_predict", "n_predict: %lld differs from max_tokens %u",
                       (long long)n, req->max_tokens);
        if (n > 0)
            req->max_tokens = (uint32_t)n;
    }
    const cJSON *rp = jget_field(root, "repeat_penalty");
    if (rp != NULL) {
        if (!cJSON_IsNumber(rp))
            return BAD(e, ERR_INVALID, "repeat_penalty", "repeat_penalty: expected a number, "
                       "got %s", jget_type_name(rp));
        double d = rp->valuedouble;
        if (!(d > 0 && d <= 10) || (float)d <= 0.0f)
            return BAD(e, ERR_RANGE, "repeat_penalty", "repeat_penalty: %.17g is out of range "
                       "(0, 10]", d);
        if (jget_field(root, "repetition_penalty") && (float)d != req->sampling.repetition_penalty)
            return BAD(e, ERR_INVALID, "repeat_penalty", "repeat_penalty: %.17g differs from "
                       "repetition_penalty", d);
        req->sampling.repetition_penalty = (float)d;
    }
    /* llamad's repetition penalty looks at the whole request: llama.cpp's -1 */
    const cJSON *rl = jget_field(root, "repeat_last_n");
    if (rl != NULL) {
        int64_t n;
        if ((rc = jget_int(rl, "repeat_last_n", -1, INT32_MAX, &n, e)) != 0)
            return rc;
        if (n != -1 && req->sampling.repetition_penalty != 1.0f)
            return BAD(e, ERR_UNSUPPORTED, "repeat_last_n", "repeat_last_n: only -1 (the whole "
                       "request) is supported with a repetition penalty");
    }
    return 0;
}

static int parse_served(const cJSON *root, const api_limits_t *lim, api_request_t *req,
                        api_error_t *e)
{
    int rc;
    if ((rc = parse_aliases(root, lim, req, e)) != 0 ||
        (rc = jget_opt_bool(root, "ignore_eos", &req->ignore_eos, e)) != 0 ||
        (rc = jget_opt_bool(root, "include_stop_str_in_output", &req->include_stop_str, e)) != 0 ||
        (rc = parse_stop_token_ids(root, lim, req, e)) != 0)
        return rc;
    int skip = 1, spaces = 0;
    if ((rc = jget_opt_bool(root, "skip_special_tokens", &skip, e)) != 0 ||
        (rc = jget_opt_bool(root, "spaces_between_special_tokens", &spaces, e)) != 0)
        return rc;
    req->keep_special = !skip;
    /* llamad's decoder joins control tokens as they are, like vLLM's fast tokenizers;
       with special tokens skipped there are none to space */
    if (spaces && req->keep_special)
        return BAD(e, ERR_UNSUPPORTED, "spaces_between_special_tokens",
                   "spaces_between_special_tokens: true is not supported with "
                   "skip_special_tokens false (control tokens are joined as they are)");

    double max_gen = lim->n_ctx > 0 ? lim->n_ctx : INT32_MAX;
    const cJSON *v = jget_field(root, "min_tokens");
    if (v != NULL) {
        int64_t n;
        if ((rc = jget_int(v, "min_tokens", 0, max_gen, &n, e)) != 0)
            return rc;
        if (req->max_tokens > 0 && (uint64_t)n > req->max_tokens)
            return BAD(e, ERR_RANGE, "min_tokens", "min_tokens: %lld is more than max_tokens %u",
                       (long long)n, req->max_tokens);
        req->min_tokens = (uint32_t)n;
    }
    /* vLLM's prompt_logprobs: capped as the route's logprobs are */
    if ((v = jget_field(root, "prompt_logprobs")) != NULL) {
        int64_t k;
        double cap = req->kind == API_CHAT ? SAMPLER_MAX_LOGPROBS : 5;
        if ((rc = jget_int(v, "prompt_logprobs", 0, cap, &k, e)) != 0)
            return rc;
        if (req->stream)
            return BAD(e, ERR_UNSUPPORTED, "prompt_logprobs", "prompt_logprobs: not "
                       "supported when streamed");
        req->prompt_logprobs = 1;
        req->prompt_top = (uint32_t)k;
    }
    /* llamad's: speculative decoding on or off for this request (the server's setting) */
    int spec = -2;
    if ((rc = jget_opt_bool(root, "speculative", &spec, e)) != 0)
        return rc;
    if (spec != -2)
        req->speculative = spec ? 1 : -1;
    if ((v = jget_field(root, "priority")) != NULL) {
        int64_t p;
        if ((rc = jget_int(v, "priority", INT32_MIN, INT32_MAX, &p, e)) != 0)
            return rc;
        req->priority = (int32_t)p;
    }
    return 0;
}

/* ================================================================== */
/* Entry point                                                         */
/* ================================================================== */

int api_parse_extras(const cJSON *root, api_kind_t kind, const api_limits_t *lim,
                     api_request_t *req, api_error_t *e)
{
    unsigned route = kind == API_CHAT ? R_CHAT : R_COMPL;
    for (size_t i = 0; i < sizeof EXTRAS / sizeof EXTRAS[0]; i++) {
        if (!(EXTRAS[i].routes & route))
            continue;
        const cJSON *v = jget_field(root, EXTRAS[i].name);
        int rc = v != NULL ? check_extra(&EXTRAS[i], v, e) : 0;
        if (rc != 0)
            return rc;
    }
    int rc = parse_served(root, lim, req, e);
    if (rc != 0)
        return rc;
    /* repeat_penalty may have changed the sampling: check it as a whole again */
    char err[ERR_MSG_MAX];
    if (sampler_params_validate(&req->sampling, lim->n_vocab > 0 ? lim->n_vocab
                                : SAMPLER_MAX_VOCAB, err, sizeof err) != 0)
        return BAD(e, ERR_RANGE, "repeat_penalty", "%s", err);
    return 0;
}
