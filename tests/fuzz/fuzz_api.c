/*
 * fuzz_api.c - libFuzzer target for request parsing and JSON output.
 *
 * Input: byte 0 picks the kind (bit 0: completions or chat) and whether
 * the limits name a model (bit 1); the rest is the request body.  A body
 * that parses must satisfy every promise of api.h (prompt non-empty and
 * within its byte cap, ids in the vocabulary, at most 4 stop strings of
 * 1..256 bytes, sampling parameters that sampler_params_validate accepts,
 * roles from the three known ones, strings well-formed UTF-8); a body that
 * does not must give a 4xx status and an error whose JSON parses back.
 * The same bytes, as response text and as an event's text, must come out
 * of the response builders as JSON that cJSON parses.
 *
 * Build:  clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iengine \
 *             server/api_request.c server/api_response.c server/api_common.c server/json.c \
 *             base/err.c base/utf8.c engine/sampler.c engine/sampler_logits.c tests/fuzz/fuzz_api.c \
 *             -lcjson -lm -o fuzz_api
 *         (engine_token_piece is only reached with a tokenizer; a stub below
 *         stands in, so no tokenizer sources are needed.)
 * Run:    ./fuzz_api -rss_limit_mb=2048 -timeout=2 -max_len=65536 CORPUS_DIR
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/api.h"

/* The response builders spell tokens only with a tokenizer; none is passed here. */
const char *engine_token_piece(const tokenizer_t *t, int32_t id, size_t *len)
{
    (void)t;
    (void)id;
    *len = 0;
    return NULL;
}

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); __builtin_trap(); } } while (0)

static void check_json(char *s)
{
    CHECK(s != NULL);
    CHECK(utf8_valid(s, strlen(s)));
    cJSON *j = cJSON_Parse(s);
    CHECK(j != NULL);
    cJSON_Delete(j);
    free(s);
}

static void check_request(const api_request_t *r, const api_limits_t *lim)
{
    if (r->kind == API_COMPLETIONS) {
        CHECK((r->prompt != NULL) != (r->prompt_tokens != NULL));
        if (r->prompt != NULL) {
            CHECK(r->prompt_len > 0 && r->prompt_len <= lim->max_prompt_bytes);
            CHECK(strlen(r->prompt) == r->prompt_len);
            CHECK(utf8_valid(r->prompt, r->prompt_len));
        } else {
            CHECK(r->n_prompt_tokens > 0 && r->n_prompt_tokens <= lim->n_ctx);
            for (size_t i = 0; i < r->n_prompt_tokens; i++)
                CHECK(r->prompt_tokens[i] >= 0 && (uint32_t)r->prompt_tokens[i] < lim->n_vocab);
        }
    } else {
        CHECK(r->n_messages > 0 && r->messages != NULL);
        size_t total = 0;
        for (size_t i = 0; i < r->n_messages; i++) {
            const char *role = r->messages[i].role;
            CHECK(strcmp(role, "system") == 0 || strcmp(role, "user") == 0 ||
                  strcmp(role, "assistant") == 0);
            CHECK(r->messages[i].content != NULL);
            size_t n = strlen(r->messages[i].content);
            CHECK(utf8_valid(r->messages[i].content, n));
            total += n;
        }
        CHECK(total <= lim->max_prompt_bytes);
    }
    CHECK(r->max_tokens <= lim->n_ctx);
    CHECK(r->n_stop <= ENGINE_MAX_STOP);
    for (size_t i = 0; i < r->n_stop; i++) {
        size_t n = strlen(r->stop[i]);
        CHECK(n >= 1 && n <= ENGINE_MAX_STOP_LEN && utf8_valid(r->stop[i], n));
    }
    CHECK(sampler_params_validate(&r->sampling, lim->n_vocab, NULL, 0) == 0);
    CHECK(r->sampling.n_logprobs == r->top_logprobs);
    CHECK(r->top_logprobs <= (r->kind == API_CHAT ? 20u : 5u));
    CHECK(r->echo == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    api_kind_t kind = (data[0] & 1) ? API_CHAT : API_COMPLETIONS;
    const api_limits_t lim = {
        .n_vocab = 1000, .n_ctx = 512, .max_prompt_bytes = 4096, .max_json_depth = 32,
        .model_name = (data[0] & 2) ? "m" : NULL,
    };
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    api_request_t req;
    api_error_t e;
    memset(&e, 0, sizeof e);
    int rc = api_parse_request(kind, body, len, &lim, &req, &e);
    if (rc == 0) {
        check_request(&req, &lim);
    } else {
        CHECK(rc < 0);
        CHECK(e.status == 400 || e.status == 404 || e.status == 413 || e.status == 503);
        CHECK(e.message[0] != '\0');
        check_json(api_error_json(&e));
    }
    api_request_free(&req);

    /* the bytes as generated text: the output must still be valid JSON */
    engine_event_t *ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return 0;
    ev->kind = ENGINE_EV_TOKEN;
    ev->text_len = (uint32_t)(len < ENGINE_TEXT_MAX ? len : ENGINE_TEXT_MAX);
    memcpy(ev->text, body, ev->text_len);
    ev->token = (int32_t)len;
    ev->logprob = -(float)len;
    ev->n_top = 1;
    const engine_event_t *evs[] = { ev };
    api_resp_meta_t m = { .id = "x", .model = len > 0 && body[0] == 'a' ? "m" : NULL, .created = 1,
                          .kind = kind };
    api_result_t r = { .text = body, .text_len = len, .finish_reason = "stop",
                       .token_events = evs, .n_tokens = 1, .want_logprobs = 1 };
    check_json(api_response_json(&m, &r));
    check_json(api_chunk_json(&m, ev, 1, NULL, 1, NULL));
    check_json(api_chunk_json(&m, NULL, 0, "length", 0, NULL));
    free(ev);
    return 0;
}
