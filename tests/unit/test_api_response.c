/*
 * test_api_response.c - the response, chunk and error JSON of server/api.h,
 * parsed back with cJSON and checked field by field.
 *
 * Token spellings in logprobs are checked against the generated
 * SentencePiece golden (tokenizer-spm.gguf, made at test set-up): id 70 is
 * <0x41> ("A"), 231 is <0xE2> (one byte of a character), 267 is
 * "\u2581the" (" the"), as the gguf Python package reads the file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "test.h"
#include "utf8_cases.h"
#include "../../server/api.h"
#include "engine/model/gguf.h"
#include "engine/text/tokenizer.h"

/* ================================================================== */
/* Responses                                                           */
/* ================================================================== */

static tokenizer_t *spm(void)
{
    char err[ERR_MSG_MAX] = "";
    const char *path = test_tokenizer_gguf("tokenizer-spm.gguf");
    if (path == NULL)
        TEST_SKIP("tokenizer-spm.gguf not generated (LLAMAD_TOKENIZER_GGUFS; tests/run-suite.sh makes it)");
    gguf_t *g = NULL;
    int rc = gguf_create(&g, path, err, sizeof err);
    ASSERT_MSG(rc == 0, "gguf_create(%s): %s", path, err);
    tokenizer_t *t = NULL;
    rc = tok_create_from_gguf(&t, g, err, sizeof err);
    gguf_destroy(g);
    ASSERT_MSG(rc == 0, "tok_create_from_gguf: %s", err);
    return t;
}

static cJSON *parsed(char *s)
{
    ASSERT(s != NULL);
    cJSON *j = cJSON_Parse(s);
    ASSERT_MSG(j != NULL, "not JSON: %s", s);
    free(s);
    return j;
}

static const cJSON *at(const cJSON *o, const char *path)
{
    /* "a.b.0.c": object keys and array indexes */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k != NULL;
         k = strtok_r(NULL, ".", &save)) {
        cur = (*k >= '0' && *k <= '9') ? cJSON_GetArrayItem(cur, atoi(k))
                                       : cJSON_GetObjectItemCaseSensitive(cur, k);
        ASSERT_MSG(cur != NULL, "missing %s (at %s)", path, k);
    }
    return cur;
}

#define STR_AT(o, p) (cJSON_IsString(at(o, p)) ? at(o, p)->valuestring : "(not a string)")
#define NUM_AT(o, p) (cJSON_IsNumber(at(o, p)) ? at(o, p)->valuedouble : -12345.0)

static engine_event_t token_ev(int32_t id, const char *text, float lp)
{
    engine_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = ENGINE_EV_TOKEN;
    ev.token = id;
    ev.text_len = (uint32_t)strlen(text);
    memcpy(ev.text, text, ev.text_len);
    ev.logprob = lp;
    ev.n_top = 2;
    ev.top[0] = (sampler_logprob_t){ id, lp };
    ev.top[1] = (sampler_logprob_t){ 70, -3.5f };
    return ev;
}

TEST(error_json)
{
    api_error_t e;
    api_error_set(&e, ERR_RANGE, 400, NULL, "temperature", NULL, "temperature: %g bad", 3.5);
    cJSON *j = parsed(api_error_json(&e));
    ASSERT_EQ_STR(STR_AT(j, "error.message"), "temperature: 3.5 bad");
    ASSERT_EQ_STR(STR_AT(j, "error.type"), "invalid_request_error");
    ASSERT_EQ_STR(STR_AT(j, "error.param"), "temperature");
    ASSERT(cJSON_IsNull(at(j, "error.code")));
    cJSON_Delete(j);
    api_error_set(&e, ERR_FULL, 429, "rate_limit_error", NULL, "queue_full", "bad \xff byte");
    j = parsed(api_error_json(&e));
    ASSERT(cJSON_IsNull(at(j, "error.param")));
    ASSERT_EQ_STR(STR_AT(j, "error.code"), "queue_full");
    ASSERT_EQ_STR(STR_AT(j, "error.message"), "bad \xef\xbf\xbd byte");
    cJSON_Delete(j);
}

TEST(completion_response)
{
    tokenizer_t *tok = spm();
    engine_event_t e0 = token_ev(267, " the", -0.25f), e1 = token_ev(231, "", -1.5f),
                   e2 = token_ev(70, "\xc3\xa9" "A", -0.5f);
    const engine_event_t *evs[] = { &e0, &e1, &e2 };
    api_resp_meta_t m = { .id = "cmpl-1", .model = "test-model", .created = 1700000000,
                          .kind = API_COMPLETIONS };
    api_result_t r = { .text = " the\xc3\xa9" "A", .text_len = 7, .finish_reason = "length",
                       .prompt_tokens = 5, .completion_tokens = 3, .cached_tokens = 2,
                       .token_events = evs, .n_tokens = 3, .want_logprobs = 1, .tok = tok };
    cJSON *j = parsed(api_response_json(&m, &r));
    ASSERT_EQ_STR(STR_AT(j, "id"), "cmpl-1");
    ASSERT_EQ_STR(STR_AT(j, "object"), "text_completion");
    ASSERT_EQ_INT(NUM_AT(j, "created"), 1700000000);
    ASSERT_EQ_STR(STR_AT(j, "model"), "test-model");
    ASSERT_EQ_INT(cJSON_GetArraySize(at(j, "choices")), 1);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.index"), 0);
    ASSERT_EQ_STR(STR_AT(j, "choices.0.text"), " the\xc3\xa9" "A");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.finish_reason"), "length");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.logprobs.tokens.0"), " the");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.logprobs.tokens.1"), "\xef\xbf\xbd");   /* one byte */
    ASSERT_EQ_STR(STR_AT(j, "choices.0.logprobs.tokens.2"), "A");
    ASSERT_NEAR(NUM_AT(j, "choices.0.logprobs.token_logprobs.0"), -0.25, 1e-7);
    ASSERT_NEAR(NUM_AT(j, "choices.0.logprobs.token_logprobs.1"), -1.5, 1e-7);
    ASSERT_NEAR(NUM_AT(j, "choices.0.logprobs.top_logprobs.0. the"), -0.25, 1e-7);
    ASSERT_NEAR(NUM_AT(j, "choices.0.logprobs.top_logprobs.0.A"), -3.5, 1e-7);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.text_offset.0"), 0);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.text_offset.1"), 4);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.text_offset.2"), 4);
    ASSERT_EQ_INT(NUM_AT(j, "usage.prompt_tokens"), 5);
    ASSERT_EQ_INT(NUM_AT(j, "usage.completion_tokens"), 3);
    ASSERT_EQ_INT(NUM_AT(j, "usage.total_tokens"), 8);
    ASSERT_EQ_INT(NUM_AT(j, "usage.prompt_tokens_details.cached_tokens"), 2);
    cJSON_Delete(j);
    /* no logprobs asked: null; invalid UTF-8 and NUL in the text are replaced */
    r.want_logprobs = 0;
    r.text = "a\xff" "b\0c";
    r.text_len = 5;
    j = parsed(api_response_json(&m, &r));
    ASSERT(cJSON_IsNull(at(j, "choices.0.logprobs")));
    ASSERT_EQ_STR(STR_AT(j, "choices.0.text"), "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c");
    cJSON_Delete(j);
    tok_destroy(tok);
}

TEST(chat_response)
{
    tokenizer_t *tok = spm();
    engine_event_t e0 = token_ev(267, " the", -0.125f), e1 = token_ev(231, "", -2.0f);
    e1.n_top = 0;
    const engine_event_t *evs[] = { &e0, &e1 };
    api_resp_meta_t m = { .id = "chatcmpl-9", .model = "test-model", .created = 5,
                          .kind = API_CHAT };
    api_result_t r = { .text = "Hi \"there\"\n", .text_len = 11, .finish_reason = "stop",
                       .prompt_tokens = 10, .completion_tokens = 2, .cached_tokens = 0,
                       .token_events = evs, .n_tokens = 2, .want_logprobs = 1, .tok = tok };
    cJSON *j = parsed(api_response_json(&m, &r));
    ASSERT_EQ_STR(STR_AT(j, "object"), "chat.completion");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.message.role"), "assistant");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.message.content"), "Hi \"there\"\n");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.finish_reason"), "stop");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.logprobs.content.0.token"), " the");
    ASSERT_NEAR(NUM_AT(j, "choices.0.logprobs.content.0.logprob"), -0.125, 1e-9);
    ASSERT_EQ_INT(cJSON_GetArraySize(at(j, "choices.0.logprobs.content.0.bytes")), 4);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.content.0.bytes.0"), 32);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.content.0.bytes.3"), 'e');
    ASSERT_EQ_STR(STR_AT(j, "choices.0.logprobs.content.0.top_logprobs.1.token"), "A");
    ASSERT_NEAR(NUM_AT(j, "choices.0.logprobs.content.0.top_logprobs.1.logprob"), -3.5, 1e-9);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.content.0.top_logprobs.1.bytes.0"), 65);
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.content.1.bytes.0"), 0xE2);
    ASSERT_EQ_INT(cJSON_GetArraySize(at(j, "choices.0.logprobs.content.1.top_logprobs")), 0);
    ASSERT_EQ_INT(NUM_AT(j, "usage.total_tokens"), 12);
    ASSERT_EQ_INT(NUM_AT(j, "usage.prompt_tokens_details.cached_tokens"), 0);
    cJSON_Delete(j);
    tok_destroy(tok);
}

TEST(chunks)
{
    tokenizer_t *tok = spm();
    api_resp_meta_t m = { .id = "chatcmpl-2", .model = "mm", .created = 7, .kind = API_CHAT };
    engine_event_t ev = token_ev(267, " the", -0.5f);
    /* chat: role first, then content with logprobs, then the finish */
    cJSON *j = parsed(api_chunk_json(&m, NULL, 1, NULL, 0, tok));
    ASSERT_EQ_STR(STR_AT(j, "object"), "chat.completion.chunk");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.delta.role"), "assistant");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.delta.content"), "");
    ASSERT(cJSON_IsNull(at(j, "choices.0.finish_reason")));
    ASSERT(cJSON_IsNull(at(j, "choices.0.logprobs")));
    cJSON_Delete(j);
    j = parsed(api_chunk_json(&m, &ev, 0, NULL, 1, tok));
    ASSERT(cJSON_GetObjectItemCaseSensitive(at(j, "choices.0.delta"), "role") == NULL);
    ASSERT_EQ_STR(STR_AT(j, "choices.0.delta.content"), " the");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.logprobs.content.0.token"), " the");
    ASSERT_EQ_INT(cJSON_GetArraySize(at(j, "choices.0.logprobs.content.0.top_logprobs")), 2);
    cJSON_Delete(j);
    j = parsed(api_chunk_json(&m, NULL, 0, "length", 1, tok));
    ASSERT_EQ_STR(STR_AT(j, "choices.0.finish_reason"), "length");
    ASSERT_EQ_INT(cJSON_GetArraySize(at(j, "choices.0.delta")), 0);
    cJSON_Delete(j);
    j = parsed(api_usage_chunk_json(&m, 3, 4, 1));
    ASSERT_EQ_INT(cJSON_GetArraySize(at(j, "choices")), 0);
    ASSERT(cJSON_IsArray(at(j, "choices")));
    ASSERT_EQ_INT(NUM_AT(j, "usage.total_tokens"), 7);
    ASSERT_EQ_INT(NUM_AT(j, "usage.prompt_tokens_details.cached_tokens"), 1);
    cJSON_Delete(j);

    /* completions: text, logprobs with the running offset, then the finish */
    m.kind = API_COMPLETIONS;
    m.text_offset = 11;
    j = parsed(api_chunk_json(&m, &ev, 1, NULL, 1, tok));
    ASSERT_EQ_STR(STR_AT(j, "object"), "text_completion");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.text"), " the");
    ASSERT(cJSON_IsNull(at(j, "choices.0.finish_reason")));
    ASSERT_EQ_STR(STR_AT(j, "choices.0.logprobs.tokens.0"), " the");
    ASSERT_EQ_INT(NUM_AT(j, "choices.0.logprobs.text_offset.0"), 11);
    cJSON_Delete(j);
    engine_event_t fin;
    memset(&fin, 0, sizeof fin);
    fin.kind = ENGINE_EV_FINISH;
    strcpy(fin.text, "tail");
    fin.text_len = 4;
    j = parsed(api_chunk_json(&m, &fin, 0, "stop", 1, tok));
    ASSERT_EQ_STR(STR_AT(j, "choices.0.text"), "tail");
    ASSERT_EQ_STR(STR_AT(j, "choices.0.finish_reason"), "stop");
    ASSERT(cJSON_IsNull(at(j, "choices.0.logprobs")));
    cJSON_Delete(j);
    j = parsed(api_usage_chunk_json(&m, 1, 2, 0));
    ASSERT_EQ_STR(STR_AT(j, "object"), "text_completion");
    cJSON_Delete(j);
    tok_destroy(tok);
}

TEST(utf8_helpers)
{
    ASSERT_EQ_INT(utf8_valid("", 0), 1);
    ASSERT_EQ_INT(utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10), 1);
    ASSERT_EQ_INT(utf8_valid("\xc3", 1), 0);
    ASSERT_EQ_INT(utf8_valid("\xe0\x80\x80", 3), 0);
    ASSERT_EQ_INT(utf8_valid("\xf5\x80\x80\x80", 4), 0);
    ASSERT_EQ_INT(utf8_chars("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10), 4);
    ASSERT_EQ_INT(utf8_chars("\xff\xff", 2), 2);
}

/* The repair the responses use agrees with Python's decode(..., 'replace'):
 * one U+FFFD per maximal ill-formed subpart, not one per byte. */
TEST(utf8_repair_maximal_subparts)
{
    for (size_t i = 0; i < sizeof UTF8_CASES / sizeof UTF8_CASES[0]; i++) {
        const utf8_case_t *c = &UTF8_CASES[i];
        char *got = api_utf8_repair(c->in, c->in_len);
        ASSERT(got != NULL);
        ASSERT_MSG(strcmp(got, c->want) == 0, "%s: repaired text differs (%zu bytes, want %zu)", c->name,
                   strlen(got), strlen(c->want));
        free(got);
        ASSERT_MSG(utf8_chars(c->in, c->in_len) == c->chars, "%s: %zu characters, want %zu", c->name,
                   utf8_chars(c->in, c->in_len), c->chars);
    }
    char *got = api_utf8_repair("a\0b", 3);   /* NUL is replaced too: safe for JSON */
    ASSERT(got != NULL);
    ASSERT_EQ_STR(got, "a\xef\xbf\xbd" "b");
    free(got);
}

TEST_LIST(T(error_json), T(completion_response), T(chat_response), T(chunks),
          T(utf8_helpers), T(utf8_repair_maximal_subparts))
