/*
 * test_api.c - request parsing: every field's good and bad values, and
 * hostile bodies (invalid UTF-8, NUL, deep nesting, duplicate keys).
 * The response side is tests/unit/test_api_response.c.
 *
 * Field tables: each row is one request; a bad value must give the status
 * and the `param` the row names, a good one must parse.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "test.h"
#include "../../server/api.h"

static const api_limits_t LIM = {
    .n_vocab = 640, .n_ctx = 2048, .max_prompt_bytes = 16 * 2048, .max_json_depth = 64,
    .model_name = "test-model",
};

typedef struct {
    api_kind_t kind;
    const char *fields;   /* JSON members appended to a valid base request */
    unsigned status;      /* 0: must parse */
    const char *param;    /* expected param of the error, NULL: not checked */
} row_t;

#define C API_COMPLETIONS
#define H API_CHAT

static char *with_base(api_kind_t kind, const char *fields)
{
    const char *base = kind == API_CHAT ? "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
                                        : "{\"prompt\":\"hi\"";
    size_t n = strlen(base) + strlen(fields) + 8;
    char *s = malloc(n);
    ASSERT(s != NULL);
    snprintf(s, n, "%s%s%s}", base, fields[0] ? "," : "", fields);
    return s;
}

static int parse_str(api_kind_t kind, const char *body, api_request_t *req, api_error_t *e)
{
    memset(e, 0, sizeof *e);
    return api_parse_request(kind, body, strlen(body), &LIM, req, e);
}

static void run_rows(const row_t *rows, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char *body = with_base(rows[i].kind, rows[i].fields);
        api_request_t req;
        api_error_t e;
        int rc = parse_str(rows[i].kind, body, &req, &e);
        if (rows[i].status == 0 && rc != 0) {
            fprintf(stderr, "  row %zu %s: want ok, got %d %s (param %s)\n", i, body, rc,
                    e.message, e.param);
            bad++;
        } else if (rows[i].status != 0 && rc == 0) {
            fprintf(stderr, "  row %zu %s: want %u, parsed\n", i, body, rows[i].status);
            bad++;
        } else if (rows[i].status != 0 &&
                   (e.status != rows[i].status ||
                    (rows[i].param != NULL && strcmp(e.param, rows[i].param) != 0) ||
                    e.message[0] == '\0')) {
            fprintf(stderr, "  row %zu %s: want %u param \"%s\", got %u param \"%s\" (%s)\n", i,
                    body, rows[i].status, rows[i].param ? rows[i].param : "?", e.status,
                    e.param, e.message);
            bad++;
        }
        api_request_free(&req);
        free(body);
    }
    ASSERT_EQ_INT(bad, 0);
}

#define RUN(rows) run_rows(rows, sizeof rows / sizeof rows[0])

/* ================================================================== */
/* Numeric fields: -1, 0, max, max + 1, a string, null, ...            */
/* ================================================================== */

TEST(temperature)
{
    static const row_t r[] = {
        { C, "\"temperature\":-1", 400, "temperature" }, { C, "\"temperature\":0", 0, NULL },
        { C, "\"temperature\":2", 0, NULL }, { C, "\"temperature\":2.001", 400, "temperature" },
        { C, "\"temperature\":\"1\"", 400, "temperature" }, { C, "\"temperature\":null", 0, NULL },
        { C, "\"temperature\":true", 400, "temperature" },
        { H, "\"temperature\":1e309", 400, "temperature" },
        { H, "\"temperature\":[1]", 400, "temperature" },
    };
    RUN(r);
}

TEST(top_p_min_p)
{
    static const row_t r[] = {
        { C, "\"top_p\":-1", 400, "top_p" }, { C, "\"top_p\":0", 400, "top_p" },
        { C, "\"top_p\":1e-50", 400, "top_p" }, { C, "\"top_p\":1", 0, NULL },
        { C, "\"top_p\":1.5", 400, "top_p" }, { C, "\"top_p\":\"0.9\"", 400, "top_p" },
        { C, "\"top_p\":null", 0, NULL },
        { H, "\"min_p\":-1", 400, "min_p" }, { H, "\"min_p\":0", 0, NULL },
        { H, "\"min_p\":1", 0, NULL }, { H, "\"min_p\":1.01", 400, "min_p" },
        { H, "\"min_p\":\"0\"", 400, "min_p" }, { H, "\"min_p\":null", 0, NULL },
    };
    RUN(r);
}

TEST(penalties)
{
    static const row_t r[] = {
        { C, "\"presence_penalty\":-2.01", 400, "presence_penalty" },
        { C, "\"presence_penalty\":-2", 0, NULL }, { C, "\"presence_penalty\":-1", 0, NULL },
        { C, "\"presence_penalty\":0", 0, NULL }, { C, "\"presence_penalty\":2", 0, NULL },
        { C, "\"presence_penalty\":3", 400, "presence_penalty" },
        { C, "\"presence_penalty\":\"1\"", 400, "presence_penalty" },
        { C, "\"presence_penalty\":null", 0, NULL },
        { H, "\"frequency_penalty\":-3", 400, "frequency_penalty" },
        { H, "\"frequency_penalty\":2", 0, NULL },
        { H, "\"frequency_penalty\":2.5", 400, "frequency_penalty" },
        { H, "\"frequency_penalty\":false", 400, "frequency_penalty" },
        { H, "\"repetition_penalty\":-1", 400, "repetition_penalty" },
        { H, "\"repetition_penalty\":0", 400, "repetition_penalty" },
        { H, "\"repetition_penalty\":10", 0, NULL },
        { H, "\"repetition_penalty\":10.5", 400, "repetition_penalty" },
        { H, "\"repetition_penalty\":\"1.1\"", 400, "repetition_penalty" },
        { H, "\"repetition_penalty\":null", 0, NULL },
    };
    RUN(r);
}

TEST(top_k)
{
    static const row_t r[] = {
        { C, "\"top_k\":-2", 400, "top_k" }, { C, "\"top_k\":-1", 0, NULL },
        { C, "\"top_k\":0", 0, NULL }, { C, "\"top_k\":2147483647", 0, NULL },
        { C, "\"top_k\":2147483648", 400, "top_k" }, { C, "\"top_k\":1.5", 400, "top_k" },
        { C, "\"top_k\":\"40\"", 400, "top_k" }, { C, "\"top_k\":null", 0, NULL },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"top_k\":-1}", &req, &e), 0);
    ASSERT_EQ_INT(req.sampling.top_k, 0);   /* -1 is off */
    api_request_free(&req);
}

TEST(max_tokens)
{
    static const row_t r[] = {
        { C, "\"max_tokens\":-1", 400, "max_tokens" }, { C, "\"max_tokens\":0", 400, "max_tokens" },
        { C, "\"max_tokens\":0,\"echo\":true", 0, NULL },
        { C, "\"max_tokens\":0,\"echo\":true,\"stream\":true", 400, "max_tokens" },
        { H, "\"max_tokens\":0", 400, "max_tokens" },
        { C, "\"max_tokens\":1", 0, NULL }, { C, "\"max_tokens\":2048", 0, NULL },
        { C, "\"max_tokens\":2049", 400, "max_tokens" },
        { C, "\"max_tokens\":4294967296", 400, "max_tokens" },
        { C, "\"max_tokens\":1e309", 400, "max_tokens" },
        { C, "\"max_tokens\":16.5", 400, "max_tokens" },
        { C, "\"max_tokens\":\"16\"", 400, "max_tokens" }, { C, "\"max_tokens\":null", 0, NULL },
        { H, "\"max_completion_tokens\":0", 400, "max_completion_tokens" },
        { H, "\"max_completion_tokens\":2048", 0, NULL },
        { H, "\"max_completion_tokens\":2049", 400, "max_completion_tokens" },
        { H, "\"max_completion_tokens\":\"1\"", 400, "max_completion_tokens" },
        { H, "\"max_completion_tokens\":null", 0, NULL },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                               "\"max_tokens\":7,\"max_completion_tokens\":9}", &req, &e), 0);
    ASSERT_EQ_INT(req.max_tokens, 9);
    api_request_free(&req);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\"}", &req, &e), 0);
    ASSERT_EQ_INT(req.max_tokens, 0);
    api_request_free(&req);
}

TEST(n_and_best_of)
{
    static const row_t r[] = {
        { C, "\"n\":1", 0, NULL }, { C, "\"n\":null", 0, NULL }, { C, "\"n\":-1", 400, "n" },
        { C, "\"n\":0", 400, "n" }, { C, "\"n\":2", 0, NULL }, { C, "\"n\":16", 0, NULL },
        { C, "\"n\":17", 400, "n" }, { H, "\"n\":16", 0, NULL }, { H, "\"n\":17", 400, "n" },
        { H, "\"n\":1000000000", 400, "n" },
        { H, "\"n\":1e309", 400, "n" }, { H, "\"n\":\"1\"", 400, "n" }, { H, "\"n\":1.5", 400, "n" },
        { C, "\"best_of\":1", 0, NULL }, { C, "\"best_of\":0", 400, "best_of" },
        { C, "\"best_of\":2", 0, NULL }, { C, "\"best_of\":\"1\"", 400, "best_of" },
        { C, "\"best_of\":16", 0, NULL }, { C, "\"best_of\":17", 400, "best_of" },
        { H, "\"best_of\":3", 0, NULL }, { C, "\"n\":3,\"best_of\":2", 400, "best_of" },
        { C, "\"n\":2,\"best_of\":4", 0, NULL },
        { C, "\"stream\":true,\"best_of\":2", 400, "best_of" },
        { H, "\"stream\":true,\"n\":2,\"best_of\":3", 400, "best_of" },
        { C, "\"stream\":true,\"n\":3", 0, NULL },
        { C, "\"stream\":true,\"n\":2,\"best_of\":2", 0, NULL },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT(parse_str(C, "{\"prompt\":\"a\",\"n\":1000000000}", &req, &e) != 0);
    ASSERT_MSG(strstr(e.message, "cap of 16") != NULL, "message: %s", e.message);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"n\":3,\"best_of\":5}", &req, &e), 0);
    ASSERT_EQ_INT(req.n, 3);
    ASSERT_EQ_INT(req.best_of, 5);
    api_request_free(&req);
    ASSERT_EQ_INT(parse_str(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &req,
                            &e), 0);
    ASSERT_EQ_INT(req.n, 1);
    ASSERT_EQ_INT(req.best_of, 1);
    api_request_free(&req);
}

TEST(seed)
{
    static const row_t r[] = {
        { C, "\"seed\":-1", 0, NULL }, { C, "\"seed\":0", 0, NULL },
        { C, "\"seed\":9223372036854775807", 0, NULL }, { C, "\"seed\":1e30", 400, "seed" },
        { C, "\"seed\":1.5", 400, "seed" }, { C, "\"seed\":\"1\"", 400, "seed" },
        { C, "\"seed\":null", 0, NULL },
    };
    RUN(r);
    api_request_t a, b;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"seed\":42}", &a, &e), 0);
    ASSERT_EQ_U64(a.sampling.seed, 42);
    ASSERT_EQ_INT(a.seed_given, 1);
    api_request_free(&a);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"seed\":-1}", &a, &e), 0);
    ASSERT_EQ_U64(a.sampling.seed, UINT64_MAX);
    api_request_free(&a);
    /* exact 64-bit values, past a double's 2^53 (the documented range is [-2^63, 2^64)) */
    static const struct { const char *body; uint64_t want; } exact[] = {
        { "{\"prompt\":\"a\",\"seed\":18446744073709551615}", UINT64_MAX },
        { "{\"prompt\":\"a\",\"seed\":18446744073709551614}", UINT64_MAX - 1 },
        { "{\"prompt\":\"a\",\"seed\":9007199254740993}", 9007199254740993ull },
        { "{\"prompt\":\"a\",\"seed\":-9223372036854775808}", 1ull << 63 },
        { "{\"seed\" : 12345678901234567891 ,\"prompt\":\"a\"}", 12345678901234567891ull },
        { "{\"prompt\":\"seed\",\"x\":{\"seed\":1},\"s\\u0065ed\":18446744073709551613}",
          UINT64_MAX - 2 },
        { "{\"prompt\":\"a\",\"seed\":1e3}", 1000 },
    };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        ASSERT_MSG(parse_str(C, exact[i].body, &a, &e) == 0, "%s: %s", exact[i].body, e.message);
        ASSERT_EQ_U64(a.sampling.seed, exact[i].want);
        api_request_free(&a);
    }
    static const char *const out_of_range[] = {
        "{\"prompt\":\"a\",\"seed\":18446744073709551616}",
        "{\"prompt\":\"a\",\"seed\":-9223372036854775809}",
        "{\"prompt\":\"a\",\"seed\":1.8446744073709552e19}",
        "{\"prompt\":\"a\",\"seed\":99999999999999999999999}",
    };
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
        ASSERT_MSG(parse_str(C, out_of_range[i], &a, &e) != 0 && e.status == 400 &&
                   strcmp(e.param, "seed") == 0, "%s accepted", out_of_range[i]);
    }
    /* cJSON skips any byte up to 0x20 between tokens, RFC 8259 only four: such a
       body is refused, never read with its seed rounded (2^64 - 1 became 0) */
    static const char *const ws[] = { "{\x01\"prompt\":\"a\",\"seed\":18446744073709551615}",
                                      "{\"prompt\":\"a\",\"seed\":\f123}" };
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        ASSERT_MSG(parse_str(C, ws[i], &a, &e) != 0 && e.status == 400, "%s accepted", ws[i]);
    /* no seed: a fresh one per request */
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\"}", &a, &e), 0);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\"}", &b, &e), 0);
    ASSERT_EQ_INT(a.seed_given, 0);
    ASSERT(a.sampling.seed != b.sampling.seed);
    api_request_free(&a);
    api_request_free(&b);
}

TEST(logprobs)
{
    static const row_t r[] = {
        { H, "\"logprobs\":true", 0, NULL }, { H, "\"logprobs\":false", 0, NULL },
        { H, "\"logprobs\":1", 400, "logprobs" }, { H, "\"logprobs\":\"true\"", 400, "logprobs" },
        { H, "\"logprobs\":null", 0, NULL },
        { H, "\"logprobs\":true,\"top_logprobs\":-1", 400, "top_logprobs" },
        { H, "\"logprobs\":true,\"top_logprobs\":0", 0, NULL },
        { H, "\"logprobs\":true,\"top_logprobs\":20", 0, NULL },
        { H, "\"logprobs\":true,\"top_logprobs\":21", 400, "top_logprobs" },
        { H, "\"logprobs\":true,\"top_logprobs\":1000000", 400, "top_logprobs" },
        { H, "\"logprobs\":true,\"top_logprobs\":\"5\"", 400, "top_logprobs" },
        { H, "\"logprobs\":true,\"top_logprobs\":null", 0, NULL },
        { H, "\"top_logprobs\":5", 400, "top_logprobs" },
        { C, "\"logprobs\":-1", 400, "logprobs" }, { C, "\"logprobs\":0", 0, NULL },
        { C, "\"logprobs\":5", 0, NULL }, { C, "\"logprobs\":6", 400, "logprobs" },
        { C, "\"logprobs\":\"1\"", 400, "logprobs" }, { C, "\"logprobs\":true", 400, "logprobs" },
        { C, "\"logprobs\":null", 0, NULL },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                               "\"logprobs\":true,\"top_logprobs\":7}", &req, &e), 0);
    ASSERT_EQ_INT(req.logprobs, 1);
    ASSERT_EQ_INT(req.top_logprobs, 7);
    ASSERT_EQ_INT(req.sampling.n_logprobs, 7);
    api_request_free(&req);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"logprobs\":3}", &req, &e), 0);
    ASSERT_EQ_INT(req.logprobs, 1);
    ASSERT_EQ_INT(req.sampling.n_logprobs, 3);
    api_request_free(&req);
}

/* ================================================================== */
/* Other fields                                                        */
/* ================================================================== */

TEST(stream)
{
    static const row_t r[] = {
        { C, "\"stream\":true", 0, NULL }, { C, "\"stream\":1", 400, "stream" },
        { C, "\"stream\":\"true\"", 400, "stream" }, { C, "\"stream\":null", 0, NULL },
        { H, "\"stream\":true,\"stream_options\":{\"include_usage\":true}", 0, NULL },
        { H, "\"stream_options\":[]", 400, "stream_options" },
        { H, "\"stream_options\":{\"include_usage\":1}", 400, "stream_options.include_usage" },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"stream\":true,"
                               "\"stream_options\":{\"include_usage\":true}}", &req, &e), 0);
    ASSERT_EQ_INT(req.stream, 1);
    ASSERT_EQ_INT(req.include_usage, 1);
    api_request_free(&req);
}

TEST(stop)
{
    static const row_t r[] = {
        { C, "\"stop\":\"x\"", 0, NULL }, { C, "\"stop\":[]", 0, NULL },
        { C, "\"stop\":[\"a\",\"b\",\"c\",\"d\"]", 0, NULL },
        { C, "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", 400, "stop" },
        { C, "\"stop\":[1]", 400, "stop[0]" }, { C, "\"stop\":1", 400, "stop" },
        { C, "\"stop\":{}", 400, "stop" }, { C, "\"stop\":null", 0, NULL },
    };
    RUN(r);
    /* 256 bytes is the limit; 257 and 1 MiB are not */
    size_t sizes[] = { 256, 257, 1u << 20 };
    for (size_t k = 0; k < 3; k++) {
        size_t n = sizes[k];
        char *f = malloc(n + 16);
        ASSERT(f != NULL);
        memcpy(f, "\"stop\":[\"", 9);
        memset(f + 9, 'z', n);
        memcpy(f + 9 + n, "\"]", 3);
        char *body = with_base(C, f);
        api_request_t req;
        api_error_t e;
        int rc = parse_str(C, body, &req, &e);
        if (k == 0) {
            ASSERT_EQ_INT(rc, 0);
            ASSERT_EQ_INT(req.n_stop, 1);
            ASSERT_EQ_INT(strlen(req.stop[0]), 256);
        } else {
            ASSERT(rc != 0);
            ASSERT_EQ_STR(e.param, "stop[0]");
        }
        api_request_free(&req);
        free(body);
        free(f);
    }
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"stop\":[\"\\n\",\"\",\"END\"]}", &req, &e), 0);
    ASSERT_EQ_INT(req.n_stop, 2);   /* the empty one stops nothing and is dropped */
    ASSERT_EQ_STR(req.stop[0], "\n");
    ASSERT_EQ_STR(req.stop[1], "END");
    api_request_free(&req);
}

TEST(logit_bias)
{
    static const row_t r[] = {
        { C, "\"logit_bias\":{}", 0, NULL }, { C, "\"logit_bias\":null", 0, NULL },
        { C, "\"logit_bias\":{\"0\":-100,\"639\":100}", 0, NULL },
        { C, "\"logit_bias\":{\"640\":1}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"-1\":1}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"abc\":1}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"\":1}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"99999999999999999999999\":1}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"1\":100.5}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"1\":-101}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"1\":\"5\"}", 400, "logit_bias" },
        { C, "\"logit_bias\":{\"1\":1e309}", 400, "logit_bias" },
        { H, "\"logit_bias\":[]", 400, "logit_bias" },
        { H, "\"logit_bias\":{\"5\":null}", 400, "logit_bias" },
    };
    RUN(r);
    /* 300 entries pass, 301 do not */
    for (int n = 300; n <= 301; n++) {
        char *f = malloc(16 * 302 + 32);
        ASSERT(f != NULL);
        size_t at = (size_t)sprintf(f, "\"logit_bias\":{");
        for (int i = 0; i < n; i++)
            at += (size_t)sprintf(f + at, "%s\"%d\":-1", i ? "," : "", i);
        sprintf(f + at, "}");
        char *body = with_base(C, f);
        api_request_t req;
        api_error_t e;
        int rc = parse_str(C, body, &req, &e);
        if (n == 300) {
            ASSERT_EQ_INT(rc, 0);
            ASSERT_EQ_INT(req.sampling.n_logit_bias, 300);
            ASSERT(req.sampling.logit_bias == req.logit_bias);
            ASSERT_EQ_INT(req.logit_bias[299].id, 299);
            ASSERT_NEAR(req.logit_bias[299].bias, -1.0, 0);
        } else {
            ASSERT(rc != 0);
            ASSERT_EQ_STR(e.param, "logit_bias");
        }
        api_request_free(&req);
        free(body);
        free(f);
    }
}

TEST(model_user_unsupported)
{
    static const row_t r[] = {
        { C, "\"model\":\"test-model\"", 0, NULL }, { C, "\"model\":null", 0, NULL },
        { C, "\"model\":\"gpt-4\"", 404, "model" }, { C, "\"model\":1", 400, "model" },
        { H, "\"user\":\"u1\"", 0, NULL }, { H, "\"user\":1", 400, "user" },
        { H, "\"tools\":[{\"type\":\"function\"}]", 400, "tools[0].function" }, { H, "\"tools\":[]", 0, NULL },
        { H, "\"tool_choice\":\"auto\"", 0, NULL },
        { H, "\"tool_choice\":\"none\"", 0, NULL },
        { H, "\"functions\":[{}]", 400, "functions[0].name" },
        { H, "\"function_call\":{\"name\":\"f\"}", 400, "function_call" },
        { H, "\"response_format\":{\"type\":\"json_object\"}", 0, NULL },
        { H, "\"response_format\":{\"type\":\"text\"}", 0, NULL },
        { H, "\"response_format\":\"json\"", 400, "response_format" },
        { H, "\"response_format\":{\"type\":\"yaml\"}", 400, "response_format" },
        { C, "\"echo\":true", 0, NULL }, { C, "\"echo\":false", 0, NULL },
        { C, "\"echo\":true,\"logprobs\":1", 0, NULL },
        { C, "\"echo\":true,\"logprobs\":0", 0, NULL },
        { C, "\"echo\":true,\"logprobs\":1,\"stream\":true", 0, NULL },
        { C, "\"echo\":1", 400, "echo" }, { C, "\"suffix\":\"x\"", 400, "suffix" },
        { C, "\"suffix\":\"\"", 0, NULL },
        { C, "\"suffix\":null", 0, NULL },
        { C, "\"unknown_field\":{\"a\":[1,2,3]},\"Temperature\":\"x\"", 0, NULL },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT(parse_str(C, "{\"prompt\":\"a\",\"model\":\"gpt-4\"}", &req, &e) == ERR_NOTFOUND);
    ASSERT_EQ_STR(e.code, "model_not_found");
    ASSERT_EQ_STR(e.type, "invalid_request_error");
    ASSERT_EQ_INT(parse_str(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                               "\"user\":\"bob\",\"model\":\"test-model\"}", &req, &e), 0);
    ASSERT_EQ_STR(req.user, "bob");
    ASSERT_EQ_STR(req.model, "test-model");
    api_request_free(&req);
}

/* The output constraint fields: which kind and source each one gives, and the refusals. */
TEST(constraint_fields)
{
    static const struct {
        const char *fields;
        int kind;               /* 0: none; -1: a 400 naming param */
        const char *param;
        const char *src;        /* expected source text, or NULL */
    } r[] = {
        { "\"response_format\":{\"type\":\"text\"}", 0, NULL, NULL },
        { "\"response_format\":null", 0, NULL, NULL },
        { "\"response_format\":{\"type\":\"json_object\"}", ENGINE_CONSTRAINT_JSON_OBJECT,
          "response_format", NULL },
        { "\"response_format\":{\"type\":\"json_object\",\"schema\":{\"type\":\"string\"}}",
          ENGINE_CONSTRAINT_JSON_SCHEMA, "response_format", "{\"type\":\"string\"}" },
        { "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
          "\"strict\":true,\"schema\":{\"type\":\"integer\"}}}", ENGINE_CONSTRAINT_JSON_SCHEMA,
          "response_format", "{\"type\":\"integer\"}" },
        { "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"strict\":1,"
          "\"schema\":{}}}", -1, "response_format", NULL },
        { "\"response_format\":{\"type\":\"json_schema\"}", -1, "response_format", NULL },
        { "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}", -1,
          "response_format", NULL },
        { "\"structured_outputs\":{}", -1, "structured_outputs", NULL },
        { "\"guided_json\":{\"type\":\"null\"}", ENGINE_CONSTRAINT_JSON_SCHEMA, "guided_json",
          "{\"type\":\"null\"}" },
        { "\"guided_json\":\"{\\\"type\\\": \\\"null\\\"}\"", ENGINE_CONSTRAINT_JSON_SCHEMA,
          "guided_json", "{\"type\": \"null\"}" },
        { "\"guided_json\":\"not json\"", -1, "guided_json", NULL },
        { "\"guided_json\":5", -1, "guided_json", NULL },
        { "\"guided_regex\":\"[a-z]+\"", ENGINE_CONSTRAINT_REGEX, "guided_regex", "[a-z]+" },
        { "\"guided_regex\":[1]", -1, "guided_regex", NULL },
        { "\"guided_choice\":[\"yes\",\"no\"]", ENGINE_CONSTRAINT_CHOICE, "guided_choice",
          "[\"yes\",\"no\"]" },
        { "\"guided_choice\":[]", -1, "guided_choice", NULL },
        { "\"guided_choice\":[\"a\",1]", -1, "guided_choice", NULL },
        { "\"guided_grammar\":\"root ::= \\\"a\\\"\"", ENGINE_CONSTRAINT_GBNF, "guided_grammar",
          "root ::= \"a\"" },
        { "\"structured_outputs\":{\"regex\":\"a+\"}", ENGINE_CONSTRAINT_REGEX,
          "structured_outputs.regex", "a+" },
        { "\"structured_outputs\":{\"json_object\":true}", ENGINE_CONSTRAINT_JSON_OBJECT,
          "structured_outputs.json_object", NULL },
        { "\"structured_outputs\":{\"choice\":[\"a\"],\"regex\":\"b\"}", -1,
          "structured_outputs.regex", NULL },
        { "\"structured_outputs\":{\"whitespace_pattern\":\" \"}", -1,
          "structured_outputs.whitespace_pattern", NULL },
        { "\"grammar\":\"root ::= [0-9]+\"", ENGINE_CONSTRAINT_GBNF, "grammar", "root ::= [0-9]+" },
        { "\"json_schema\":{\"type\":\"boolean\"}", ENGINE_CONSTRAINT_JSON_SCHEMA, "json_schema",
          "{\"type\":\"boolean\"}" },
        { "\"json_schema\":\"x\"", -1, "json_schema", NULL },
        { "\"guided_regex\":\"a\",\"grammar\":\"root ::= \\\"a\\\"\"", -1, "grammar", NULL },
        { "\"response_format\":{\"type\":\"json_object\"},\"guided_json\":{}", -1,
          "guided_json", NULL },
        { "\"guided_decoding_backend\":\"xgrammar\"", 0, NULL, NULL },
        { "\"guided_whitespace_pattern\":\" \"", -1, "guided_whitespace_pattern", NULL },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        for (int route = 0; route < 2; route++) {
            char *body = with_base(route ? H : C, r[i].fields);
            api_request_t req;
            api_error_t e;
            int rc = parse_str(route ? H : C, body, &req, &e);
            if (r[i].kind < 0) {
                ASSERT_MSG(rc != 0 && e.status == 400 && strcmp(e.param, r[i].param) == 0,
                           "%s: rc %d param '%s' (%s)", body, rc, e.param, e.message);
            } else {
                ASSERT_MSG(rc == 0, "%s: rc %d (%s)", body, rc, e.message);
                ASSERT_MSG(req.constraint_kind == r[i].kind, "%s: kind %d", body, req.constraint_kind);
                if (r[i].kind != 0)
                    ASSERT_EQ_STR(req.constraint_param, r[i].param);
                if (r[i].src != NULL)
                    ASSERT_MSG(req.constraint_src != NULL && strcmp(req.constraint_src, r[i].src) == 0,
                               "%s: src '%s'", body, req.constraint_src ? req.constraint_src : "(null)");
                else
                    ASSERT(req.constraint_src == NULL || r[i].kind == 0);
            }
            api_request_free(&req);
            free(body);
        }
    }
}

/* ================================================================== */
/* Prompts and messages                                                */
/* ================================================================== */

TEST(prompt)
{
    static const row_t r[] = {
        { C, "\"prompt\":\"\"", 400, "prompt" }, { C, "\"prompt\":[]", 400, "prompt" },
        { C, "\"prompt\":[\"a\",\"b\"]", 0, NULL }, { C, "\"prompt\":[[1,2]]", 0, NULL },
        { C, "\"prompt\":[[1,2],[639]]", 0, NULL }, { C, "\"prompt\":[\"a\"]", 0, NULL },
        { C, "\"prompt\":[\"a\",[1]]", 400, "prompt[1]" },
        { C, "\"prompt\":[[1],\"a\"]", 400, "prompt[1]" },
        { C, "\"prompt\":[\"a\",\"\"]", 400, "prompt[1]" },
        { C, "\"prompt\":[[1],[]]", 400, "prompt[1]" },
        { C, "\"prompt\":[[1,640]]", 400, "prompt[0][1]" },
        { C, "\"prompt\":[[-1]]", 400, "prompt[0][0]" },
        { C, "\"prompt\":[[\"x\"]]", 400, "prompt[0][0]" },
        { C, "\"prompt\":[[1.5]]", 400, "prompt[0][0]" },
        { C, "\"prompt\":[null]", 400, "prompt[0]" }, { C, "\"prompt\":[{}]", 400, "prompt[0]" },
        { C, "\"prompt\":[\"a\",null]", 400, "prompt[1]" },
        { C, "\"prompt\":[1,2,639]", 0, NULL }, { C, "\"prompt\":[-1]", 400, "prompt[0]" },
        { C, "\"prompt\":[1,640]", 400, "prompt[1]" }, { C, "\"prompt\":[1.5]", 400, "prompt[0]" },
        { C, "\"prompt\":[1,\"a\"]", 400, "prompt[1]" }, { C, "\"prompt\":5", 400, "prompt" },
        { C, "\"prompt\":null", 400, "prompt" }, { C, "\"prompt\":[1e309]", 400, "prompt[0]" },
    };
    /* the base already has a prompt: these rows replace it (the later key is a duplicate) */
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{%s}", r[i].fields);
        api_request_t req;
        api_error_t e;
        int rc = parse_str(C, body, &req, &e);
        ASSERT_MSG((rc == 0) == (r[i].status == 0), "%s: rc %d (%s)", body, rc, e.message);
        if (rc != 0)
            ASSERT_MSG(strcmp(e.param, r[i].param) == 0 && e.status == r[i].status,
                       "%s: param %s status %u", body, e.param, e.status);
        api_request_free(&req);
    }
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{}", &req, &e), ERR_INVALID);
    ASSERT_EQ_STR(e.param, "prompt");
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":[5,6,7]}", &req, &e), 0);
    ASSERT_EQ_INT(req.n_prompt_tokens, 3);
    ASSERT_EQ_INT(req.prompt_tokens[2], 7);
    ASSERT(req.prompt == NULL);
    api_request_free(&req);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"h\\u00e9\"}", &req, &e), 0);
    ASSERT_EQ_STR(req.prompt, "h\xc3\xa9");
    ASSERT_EQ_INT(req.prompt_len, 3);
    api_request_free(&req);
}

/* A body {"prompt":[...count strings "p"...]<extra>}, malloc'd. */
static char *prompt_list_body(size_t count, const char *extra)
{
    size_t cap = count * 4 + strlen(extra) + 32;
    char *s = malloc(cap);
    ASSERT(s != NULL);
    size_t at = (size_t)snprintf(s, cap, "{\"prompt\":[");
    for (size_t i = 0; i < count; i++)
        at += (size_t)snprintf(s + at, cap - at, "%s\"p\"", i ? "," : "");
    snprintf(s + at, cap - at, "]%s}", extra);
    return s;
}

TEST(prompt_list)
{
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":[\"ab\",\"c\"],\"n\":2}", &req, &e), 0);
    ASSERT_EQ_INT(req.n_prompts, 2);
    ASSERT_EQ_STR(req.prompts[0].text, "ab");
    ASSERT_EQ_INT(req.prompts[1].len, 1);
    ASSERT(req.prompt == NULL && req.prompt_tokens == NULL && req.prompts[0].tokens == NULL);
    api_request_free(&req);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":[[1,2],[3]]}", &req, &e), 0);
    ASSERT_EQ_INT(req.n_prompts, 2);
    ASSERT_EQ_INT(req.prompts[0].n_tokens, 2);
    ASSERT_EQ_INT(req.prompts[1].tokens[0], 3);
    ASSERT(req.prompts[1].text == NULL);
    api_request_free(&req);

    /* caps: 64 prompts; prompts x best_of at most 128 */
    static const struct { size_t count; const char *extra; int ok; const char *param; } caps[] = {
        { 64, "", 1, NULL }, { 65, "", 0, "prompt" }, { 10000, "", 0, "prompt" },
        { 64, ",\"n\":2", 1, NULL }, { 64, ",\"n\":3", 0, "n" },
        { 32, ",\"n\":2,\"best_of\":4", 1, NULL }, { 33, ",\"n\":2,\"best_of\":4", 0, "best_of" },
    };
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        char *body = prompt_list_body(caps[i].count, caps[i].extra);
        int rc = parse_str(C, body, &req, &e);
        ASSERT_MSG((rc == 0) == caps[i].ok, "%zu prompts%s: rc %d (%s)", caps[i].count,
                   caps[i].extra, rc, e.message);
        if (rc != 0) {
            ASSERT_EQ_STR(e.param, caps[i].param);
            ASSERT_EQ_INT(e.status, 400);
            ASSERT_MSG(strstr(e.message, "cap") != NULL, "message: %s", e.message);
        } else {
            ASSERT_EQ_INT(req.n_prompts, caps[i].count);
        }
        api_request_free(&req);
        free(body);
    }
}

TEST(prompt_limits)
{
    /* bytes over max_prompt_bytes, and token lists over n_ctx */
    size_t n = LIM.max_prompt_bytes + 1;
    char *body = malloc(n + 32);
    ASSERT(body != NULL);
    memcpy(body, "{\"prompt\":\"", 11);
    memset(body + 11, 'a', n);
    strcpy(body + 11 + n, "\"}");
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, body, &req, &e), ERR_TOOLONG);
    ASSERT_EQ_STR(e.param, "prompt");
    ASSERT_EQ_INT(e.status, 400);
    body[11 + n - 1] = '"';
    body[11 + n] = '}';
    body[11 + n + 1] = '\0';
    ASSERT_EQ_INT(parse_str(C, body, &req, &e), 0);   /* exactly the limit */
    api_request_free(&req);
    free(body);

    body = malloc(3 * 2049 + 32);
    ASSERT(body != NULL);
    size_t at = (size_t)sprintf(body, "{\"prompt\":[");
    for (int i = 0; i < 2049; i++)
        at += (size_t)sprintf(body + at, "%s1", i ? "," : "");
    strcpy(body + at, "]}");
    ASSERT_EQ_INT(parse_str(C, body, &req, &e), ERR_TOOLONG);
    ASSERT_EQ_STR(e.code, "context_length_exceeded");
    free(body);
}

TEST(messages)
{
    static const struct { const char *body; unsigned status; const char *param; } r[] = {
        { "{\"messages\":[]}", 400, "messages" },
        { "{}", 400, "messages" },
        { "{\"messages\":{}}", 400, "messages" },
        { "{\"messages\":[1]}", 400, "messages[0]" },
        { "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0].role" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":5,\"content\":\"x\"}]}",
          400, "messages[1].role" },
        { "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages[0].tool_call_id" },
        { "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 400, "messages[0].role" },
        { "{\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":null}]}", 400, "messages[0].content" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
          "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
          400, "messages[0].content[1].type" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
          400, "messages[0].content[0].text" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[\"a\"]}]}", 400,
          "messages[0].content[0]" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}", 400,
          "messages[0].content[0].type" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", 0, NULL },
        { "{\"messages\":[{\"role\":\"user\",\"content\":[]}]}", 0, NULL },
        { "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\",\"name\":\"x\"}]}", 0, NULL },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        api_request_t req;
        api_error_t e;
        int rc = parse_str(H, r[i].body, &req, &e);
        ASSERT_MSG((rc == 0) == (r[i].status == 0), "%s: rc %d (%s)", r[i].body, rc, e.message);
        if (rc != 0)
            ASSERT_MSG(strcmp(e.param, r[i].param) == 0 && e.status == r[i].status,
                       "%s: param %s status %u (%s)", r[i].body, e.param, e.status, e.message);
        api_request_free(&req);
    }
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(H, "{\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                               "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                               "{\"type\":\"text\",\"text\":\"b\"}]}]}", &req, &e), 0);
    ASSERT_EQ_INT(req.n_messages, 2);
    ASSERT_EQ_STR(req.messages[0].role, "system");
    ASSERT_EQ_STR(req.messages[0].content, "be brief");
    ASSERT_EQ_STR(req.messages[1].role, "user");
    ASSERT_EQ_STR(req.messages[1].content, "a\nb");
    api_request_free(&req);
    ASSERT(parse_str(H, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", &req, &e) != 0);
    ASSERT_MSG(strstr(e.message, "wizard") != NULL, "message: %s", e.message);
}

/* ================================================================== */
/* Hostile bodies                                                      */
/* ================================================================== */

static int parse_raw(const char *body, size_t len, api_error_t *e)
{
    api_request_t req;
    memset(e, 0, sizeof *e);
    int rc = api_parse_request(API_COMPLETIONS, body, len, &LIM, &req, e);
    api_request_free(&req);
    return rc;
}

TEST(bad_utf8_and_nul)
{
    static const char *const bad[] = {
        "{\"prompt\":\"a\xff\"}",                   /* never valid */
        "{\"prompt\":\"\xc0\xaf\"}",                /* overlong */
        "{\"prompt\":\"\xed\xa0\x80\"}",            /* a surrogate */
        "{\"prompt\":\"\xf4\x90\x80\x80\"}",        /* past U+10FFFF */
        "{\"prompt\":\"\xe2\x82\"}",                /* cut short */
        "{\"prompt\":\"a\",\"user\":\"\x80\"}",
        "{\"prompt\":\"a\\u0000b\"}",
        "{\"prompt\":\"a\",\"stop\":[\"\\u0000\"]}",
        "{\"prompt\":\"a\\ud800\"}",                 /* a lone surrogate escape */
    };
    api_error_t e;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse_raw(bad[i], strlen(bad[i]), &e);
        ASSERT_MSG(rc != 0 && e.status == 400, "case %zu parsed (rc %d)", i, rc);
    }
    /* a raw NUL byte, and an escaped backslash before u0000 (which is text) */
    const char nul[] = "{\"prompt\":\"a\0b\"}";
    ASSERT(parse_raw(nul, sizeof nul - 1, &e) != 0);
    const char ok[] = "{\"prompt\":\"a\\\\u0000\"}";
    ASSERT_EQ_INT(parse_raw(ok, strlen(ok), &e), 0);
    const char good[] = "{\"prompt\":\"\xf0\x9f\x98\x80 \\ud83d\\ude00\"}";
    ASSERT_EQ_INT(parse_raw(good, strlen(good), &e), 0);
}

TEST(deep_nesting)
{
    size_t depth = 10000;
    char *b = malloc(2 * depth + 64);
    ASSERT(b != NULL);
    size_t at = (size_t)sprintf(b, "{\"prompt\":\"a\",\"x\":");
    for (size_t i = 0; i < depth; i++)
        b[at++] = '[';
    for (size_t i = 0; i < depth; i++)
        b[at++] = ']';
    b[at++] = '}';
    api_error_t e;
    ASSERT(parse_raw(b, at, &e) != 0);
    ASSERT_MSG(strstr(e.message, "deeper") != NULL, "message: %s", e.message);
    /* unbalanced, deeper than the limit: still rejected before cJSON sees it */
    ASSERT(parse_raw(b + 19, depth, &e) != 0);
    /* 64 levels (the object itself is one) are allowed */
    at = (size_t)sprintf(b, "{\"prompt\":\"a\",\"x\":");
    for (size_t i = 0; i < 63; i++)
        b[at++] = '[';
    for (size_t i = 0; i < 63; i++)
        b[at++] = ']';
    b[at++] = '}';
    ASSERT_EQ_INT(parse_raw(b, at, &e), 0);
    /* brackets inside strings do not count */
    at = (size_t)sprintf(b, "{\"prompt\":\"");
    for (size_t i = 0; i < 200; i++)
        b[at++] = '[';
    at += (size_t)sprintf(b + at, "\\\"\"}");
    ASSERT_EQ_INT(parse_raw(b, at, &e), 0);
    free(b);
}

TEST(duplicate_keys)
{
    api_error_t e;
    const char *b1 = "{\"prompt\":\"a\",\"temperature\":0,\"temperature\":1}";
    ASSERT(parse_raw(b1, strlen(b1), &e) != 0);
    ASSERT_EQ_STR(e.param, "temperature");
    ASSERT_MSG(strstr(e.message, "temperature") != NULL, "message: %s", e.message);
    const char *b2 = "{\"prompt\":\"a\",\"logit_bias\":{\"5\":1,\"5\":2}}";
    ASSERT(parse_raw(b2, strlen(b2), &e) != 0);
    ASSERT_EQ_STR(e.param, "5");
    api_request_t req;
    ASSERT(parse_str(H, "{\"messages\":[{\"role\":\"user\",\"role\":\"system\",\"content\":\"x\"}]}",
                     &req, &e) != 0);
    ASSERT_EQ_STR(e.param, "role");
}

TEST(not_an_object)
{
    static const char *const bodies[] = {
        "", " ", "[]", "[{\"prompt\":\"a\"}]", "\"prompt\"", "1", "null", "true", "{",
        "{\"prompt\":\"a\"} x", "{\"prompt\":\"a\",}", "{'prompt':'a'}", "{\"prompt\":\"a\"}}",
    };
    api_error_t e;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        int rc = parse_raw(bodies[i], strlen(bodies[i]), &e);
        ASSERT_MSG(rc != 0 && e.status == 400 && e.message[0] != '\0', "body %zu <%s>: rc %d",
                   i, bodies[i], rc);
    }
    ASSERT(parse_raw(NULL, 0, &e) != 0);
    /* not NUL-terminated: the length is what counts */
    const char buf[] = "{\"prompt\":\"a\"}garbage";
    ASSERT_EQ_INT(parse_raw(buf, 14, &e), 0);
}

TEST(model_aliases)
{
    api_limits_t lim = LIM;
    lim.model_aliases = "gpt-4o-mini, my model ,x";
    const char *ok[] = { "test-model", "gpt-4o-mini", "my model", "x" };
    const char *bad[] = { "gpt-4o", "GPT-4O-MINI", "my", "gpt-4o-mini, my model", "", " x",
                          "test-model2" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        ASSERT_MSG(api_model_matches(&lim, ok[i]), "%s refused", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_MSG(!api_model_matches(&lim, bad[i]), "\"%s\" accepted", bad[i]);
    ASSERT(api_model_matches(&LIM, "test-model"));
    ASSERT(!api_model_matches(&LIM, "gpt-4o-mini"));      /* no aliases: the file name only */
    lim.model_name = NULL;
    ASSERT(api_model_matches(&lim, "anything"));
    api_request_t req;
    api_error_t e;
    lim = LIM;
    lim.model_aliases = "alias-a,alias-b";
    const char *b = "{\"prompt\":\"a\",\"model\":\"alias-b\"}";
    const char *c = "{\"prompt\":\"a\",\"model\":\"alias-c\"}";
    ASSERT_EQ_INT(api_parse_request(API_COMPLETIONS, b, strlen(b), &lim, &req, &e), 0);
    ASSERT_EQ_STR(req.model, "alias-b");
    api_request_free(&req);
    ASSERT_EQ_INT(api_parse_request(API_COMPLETIONS, c, strlen(c), &lim, &req, &e), ERR_NOTFOUND);
    ASSERT_EQ_STR(e.code, "model_not_found");
}

/* ================================================================== */
/* vLLM's and llama.cpp's fields (api_extras.c)                        */
/* ================================================================== */

TEST(vllm_extras_served)
{
    static const row_t r[] = {
        { C, "\"ignore_eos\":true", 0, NULL }, { H, "\"ignore_eos\":false", 0, NULL },
        { C, "\"ignore_eos\":1", 400, "ignore_eos" }, { H, "\"ignore_eos\":\"yes\"", 400, "ignore_eos" },
        { C, "\"min_tokens\":0", 0, NULL }, { C, "\"min_tokens\":5,\"max_tokens\":5", 0, NULL },
        { C, "\"min_tokens\":6,\"max_tokens\":5", 400, "min_tokens" },
        { H, "\"min_tokens\":-1", 400, "min_tokens" }, { H, "\"min_tokens\":1.5", 400, "min_tokens" },
        { H, "\"min_tokens\":2049", 400, "min_tokens" }, { H, "\"min_tokens\":\"3\"", 400, "min_tokens" },
        { C, "\"stop_token_ids\":[]", 0, NULL }, { C, "\"stop_token_ids\":[0,639]", 0, NULL },
        { C, "\"stop_token_ids\":[640]", 400, "stop_token_ids" },
        { C, "\"stop_token_ids\":[-1]", 400, "stop_token_ids" },
        { H, "\"stop_token_ids\":7", 400, "stop_token_ids" },
        { H, "\"stop_token_ids\":[\"7\"]", 400, "stop_token_ids" },
        { H, "\"stop_token_ids\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]", 0, NULL },
        { H, "\"stop_token_ids\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]", 400, "stop_token_ids" },
        { C, "\"include_stop_str_in_output\":true", 0, NULL },
        { C, "\"include_stop_str_in_output\":0", 400, "include_stop_str_in_output" },
        { H, "\"skip_special_tokens\":false", 0, NULL },
        { H, "\"skip_special_tokens\":null", 0, NULL },
        { H, "\"skip_special_tokens\":\"no\"", 400, "skip_special_tokens" },
        { H, "\"spaces_between_special_tokens\":true", 0, NULL },
        { H, "\"spaces_between_special_tokens\":false,\"skip_special_tokens\":false", 0, NULL },
        { H, "\"spaces_between_special_tokens\":true,\"skip_special_tokens\":false", 400,
          "spaces_between_special_tokens" },
        { C, "\"priority\":-5", 0, NULL }, { C, "\"priority\":2147483647", 0, NULL },
        { C, "\"priority\":2147483648", 400, "priority" }, { C, "\"priority\":0.5", 400, "priority" },
        { H, "\"priority\":\"high\"", 400, "priority" },
        { C, "\"speculative\":false", 0, NULL }, { H, "\"speculative\":1", 400, "speculative" },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"ignore_eos\":true,\"min_tokens\":3,"
                               "\"stop_token_ids\":[5,9],\"include_stop_str_in_output\":true,"
                               "\"skip_special_tokens\":false,\"priority\":-7,"
                               "\"speculative\":true}", &req, &e), 0);
    ASSERT_EQ_INT(req.ignore_eos, 1);
    ASSERT_EQ_INT(req.min_tokens, 3);
    ASSERT_EQ_INT(req.n_stop_token_ids, 2);
    ASSERT_EQ_INT(req.stop_token_ids[0], 5);
    ASSERT_EQ_INT(req.stop_token_ids[1], 9);
    ASSERT_EQ_INT(req.include_stop_str, 1);
    ASSERT_EQ_INT(req.keep_special, 1);
    ASSERT_EQ_INT(req.priority, -7);
    ASSERT_EQ_INT(req.speculative, 1);
    api_request_free(&req);
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"speculative\":false}", &req, &e), 0);
    ASSERT_EQ_INT(req.speculative, -1);
    api_request_free(&req);
    ASSERT_EQ_INT(parse_str(H, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", &req, &e), 0);
    ASSERT_EQ_INT(req.keep_special, 0);
    ASSERT_EQ_INT(req.ignore_eos, 0);
    ASSERT_EQ_INT(req.priority, 0);
    ASSERT_EQ_INT(req.speculative, 0);
    api_request_free(&req);
}

TEST(llama_cpp_aliases)
{
    static const row_t r[] = {
        { C, "\"n_predict\":7", 0, NULL }, { C, "\"n_predict\":-1", 0, NULL },
        { C, "\"n_predict\":-2", 0, NULL }, { C, "\"n_predict\":0", 400, "n_predict" },
        { C, "\"n_predict\":-3", 400, "n_predict" }, { C, "\"n_predict\":2049", 400, "n_predict" },
        { C, "\"n_predict\":7,\"max_tokens\":7", 0, NULL },
        { C, "\"n_predict\":7,\"max_tokens\":8", 400, "n_predict" },
        { H, "\"repeat_penalty\":1.1", 0, NULL }, { H, "\"repeat_penalty\":0", 400, "repeat_penalty" },
        { H, "\"repeat_penalty\":11", 400, "repeat_penalty" },
        { H, "\"repeat_penalty\":\"1\"", 400, "repeat_penalty" },
        { H, "\"repeat_penalty\":1.2,\"repetition_penalty\":1.2", 0, NULL },
        { H, "\"repeat_penalty\":1.2,\"repetition_penalty\":1.3", 400, "repeat_penalty" },
        { C, "\"repeat_last_n\":64", 0, NULL },
        { C, "\"repeat_last_n\":-1,\"repeat_penalty\":1.1", 0, NULL },
        { C, "\"repeat_last_n\":64,\"repeat_penalty\":1.1", 400, "repeat_last_n" },
        { C, "\"repeat_last_n\":-2", 400, "repeat_last_n" },
    };
    RUN(r);
    api_request_t req;
    api_error_t e;
    ASSERT_EQ_INT(parse_str(C, "{\"prompt\":\"a\",\"n_predict\":9,\"repeat_penalty\":1.25}", &req, &e), 0);
    ASSERT_EQ_INT(req.max_tokens, 9);
    ASSERT_NEAR(req.sampling.repetition_penalty, 1.25, 1e-6);
    api_request_free(&req);
}

/* Each field: its neutral value parses, another value is a 400 naming it. */
TEST(neutral_or_refused)
{
    static const row_t r[] = {
        { H, "\"audio\":null", 0, NULL }, { H, "\"audio\":{\"voice\":\"alloy\"}", 400, "audio" },
        { H, "\"modalities\":[\"text\"]", 0, NULL },
        { H, "\"modalities\":[\"text\",\"audio\"]", 400, "modalities" },
        { H, "\"modalities\":\"text\"", 400, "modalities" },
        { H, "\"prediction\":{\"type\":\"content\",\"content\":\"x\"}", 400, "prediction" },
        { H, "\"web_search_options\":{}", 400, "web_search_options" },
        { H, "\"store\":false", 0, NULL }, { H, "\"store\":true", 400, "store" },
        { H, "\"metadata\":{\"a\":\"b\"}", 0, NULL }, { H, "\"metadata\":[]", 400, "metadata" },
        { C, "\"service_tier\":\"auto\"", 0, NULL }, { H, "\"service_tier\":\"default\"", 0, NULL },
        { H, "\"service_tier\":\"flex\"", 400, "service_tier" },
        { H, "\"reasoning_effort\":\"none\"", 0, NULL },
        { H, "\"reasoning_effort\":\"high\"", 400, "reasoning_effort" },
        { H, "\"verbosity\":\"medium\"", 0, NULL }, { H, "\"verbosity\":\"low\"", 400, "verbosity" },
        { H, "\"prompt_cache_key\":\"k\"", 0, NULL }, { H, "\"prompt_cache_key\":1", 400, "prompt_cache_key" },
        { H, "\"safety_identifier\":\"u\"", 0, NULL },
        { C, "\"use_beam_search\":false", 0, NULL }, { C, "\"use_beam_search\":true", 400, "use_beam_search" },
        { C, "\"length_penalty\":1", 0, NULL }, { C, "\"length_penalty\":0.5", 400, "length_penalty" },
        { C, "\"truncate_prompt_tokens\":10", 400, "truncate_prompt_tokens" },
        { C, "\"prompt_logprobs\":1", 0, NULL }, { C, "\"prompt_logprobs\":0", 0, NULL },
        { C, "\"prompt_logprobs\":6", 400, "prompt_logprobs" },
        { H, "\"prompt_logprobs\":20", 0, NULL }, { H, "\"prompt_logprobs\":21", 400, "prompt_logprobs" },
        { C, "\"prompt_logprobs\":1,\"stream\":true", 400, "prompt_logprobs" },
        { H, "\"allowed_token_ids\":[1,2]", 400, "allowed_token_ids" },
        { H, "\"bad_words\":[]", 0, NULL }, { H, "\"bad_words\":[\"x\"]", 400, "bad_words" },
        { H, "\"logits_processors\":[\"m.f\"]", 400, "logits_processors" },
        { H, "\"return_tokens_as_token_ids\":true", 400, "return_tokens_as_token_ids" },
        { H, "\"return_token_ids\":false", 0, NULL },
        { H, "\"vllm_xargs\":{}", 0, NULL }, { H, "\"vllm_xargs\":{\"a\":1}", 400, "vllm_xargs" },
        { H, "\"kv_transfer_params\":{}", 400, "kv_transfer_params" },
        { H, "\"request_id\":\"r1\"", 0, NULL }, { H, "\"request_id\":5", 400, "request_id" },
        { H, "\"add_generation_prompt\":true", 0, NULL },
        { H, "\"add_generation_prompt\":false", 400, "add_generation_prompt" },
        { H, "\"continue_final_message\":true", 400, "continue_final_message" },
        { H, "\"add_special_tokens\":false", 0, NULL },
        { H, "\"add_special_tokens\":true", 400, "add_special_tokens" },
        { C, "\"add_special_tokens\":true", 0, NULL },
        { C, "\"add_special_tokens\":false", 400, "add_special_tokens" },
        { H, "\"documents\":[{\"t\":\"x\"}]", 400, "documents" },
        { H, "\"chat_template\":\"{{x}}\"", 400, "chat_template" },
        { H, "\"chat_template_kwargs\":{}", 0, NULL },
        { H, "\"chat_template_kwargs\":{\"enable_thinking\":false}", 400, "chat_template_kwargs" },
        { C, "\"prompt_embeds\":\"AAAA\"", 400, "prompt_embeds" },
        { H, "\"echo\":false", 0, NULL }, { H, "\"echo\":true", 400, "echo" },
        { C, "\"n_probs\":0", 0, NULL }, { C, "\"n_probs\":3", 400, "n_probs" },
        { C, "\"cache_prompt\":true", 0, NULL }, { C, "\"cache_prompt\":false", 400, "cache_prompt" },
        { C, "\"id_slot\":-1", 0, NULL }, { C, "\"id_slot\":0", 400, "id_slot" },
        { C, "\"samplers\":[\"top_k\"]", 400, "samplers" },
        { C, "\"n_keep\":0", 0, NULL }, { C, "\"n_keep\":-1", 400, "n_keep" },
        { C, "\"typical_p\":1", 0, NULL }, { C, "\"typical_p\":0.9", 400, "typical_p" },
        { C, "\"typical_p\":\"1\"", 400, "typical_p" },
        { C, "\"dynatemp_range\":0,\"dynatemp_exponent\":1", 0, NULL },
        { C, "\"dynatemp_range\":0.5", 400, "dynatemp_range" },
        { C, "\"mirostat\":0,\"mirostat_tau\":5,\"mirostat_eta\":0.1", 0, NULL },
        { C, "\"mirostat\":2", 400, "mirostat" },
        { C, "\"mirostat_tau\":\"5\"", 400, "mirostat_tau" },
        { C, "\"dry_multiplier\":0,\"dry_base\":1.75,\"dry_allowed_length\":2,"
             "\"dry_penalty_last_n\":-1,\"dry_sequence_breakers\":[\"\\n\"]", 0, NULL },
        { C, "\"dry_multiplier\":0.8", 400, "dry_multiplier" },
        { C, "\"xtc_probability\":0,\"xtc_threshold\":0.1", 0, NULL },
        { C, "\"xtc_probability\":0.5", 400, "xtc_probability" },
        { C, "\"top_n_sigma\":-1", 0, NULL }, { C, "\"top_n_sigma\":2", 400, "top_n_sigma" },
        { C, "\"min_keep\":0", 0, NULL }, { C, "\"min_keep\":5", 400, "min_keep" },
        { C, "\"t_max_predict_ms\":100", 400, "t_max_predict_ms" },
        { C, "\"image_data\":[]", 0, NULL }, { C, "\"image_data\":[{\"data\":\"x\"}]", 400, "image_data" },
        { C, "\"return_tokens\":true", 400, "return_tokens" },
        { C, "\"timings_per_token\":true", 400, "timings_per_token" },
        { C, "\"post_sampling_probs\":true", 400, "post_sampling_probs" },
        { C, "\"response_fields\":[\"content\"]", 400, "response_fields" },
        { C, "\"lora\":[{\"id\":0,\"scale\":1}]", 400, "lora" },
        { C, "\"return_progress\":true", 400, "return_progress" },
        { C, "\"n_cmpl\":1", 0, NULL }, { C, "\"n_cmpl\":2", 400, "n_cmpl" },
        { C, "\"n_cache_reuse\":0", 0, NULL }, { C, "\"n_cache_reuse\":256", 400, "n_cache_reuse" },
        { C, "\"sse_ping_interval\":5", 0, NULL },
        { C, "\"sse_ping_interval\":\"5\"", 400, "sse_ping_interval" },
        { C, "\"tfs_z\":1", 0, NULL }, { C, "\"tfs_z\":0.9", 400, "tfs_z" },
        { H, "\"prompt_cache_retention\":\"24h\"", 0, NULL },
        { H, "\"media_io_kwargs\":{\"video\":{}}", 400, "media_io_kwargs" },
        /* route-specific: completions' fields on chat and back stay unknown */
        { C, "\"audio\":{\"voice\":\"alloy\"}", 0, NULL },
        { H, "\"prompt_embeds\":\"AAAA\"", 0, NULL },
    };
    RUN(r);
}

/* Tool calling: what is served, and each hostile shape a 400 naming its field. */
TEST(tools)
{
#define TOOL(n) "{\"type\":\"function\",\"function\":{\"name\":\"" n "\",\"parameters\":{\"type\":\"object\"}}}"
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
    static const struct { const char *body; unsigned status; const char *param; } r[] = {
        { "{" MSGS ",\"tools\":[" TOOL("a") "," TOOL("b-2") "],\"tool_choice\":\"required\"}", 0, NULL },
        { "{" MSGS ",\"tools\":[" TOOL("a") "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
          "\"parallel_tool_calls\":false}", 0, NULL },
        { "{" MSGS ",\"functions\":[{\"name\":\"f\"}],\"function_call\":{\"name\":\"f\"}}", 0, NULL },
        { "{" MSGS ",\"tools\":[" TOOL("a") "," TOOL("a") "]}", 400, "tools[1].function.name" },
        { "{" MSGS ",\"tools\":[" TOOL("a b") "]}", 400, "tools[0].function.name" },
        { "{" MSGS ",\"tools\":[" TOOL("a") "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"z\"}}}",
          400, "tool_choice" },
        { "{" MSGS ",\"tool_choice\":\"required\"}", 400, "tool_choice" },
        { "{" MSGS ",\"tools\":[" TOOL("a") "],\"parallel_tool_calls\":1}", 400, "parallel_tool_calls" },
        { "{" MSGS ",\"tools\":[{\"type\":\"retrieval\"}]}", 400, "tools[0]" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\",\"content\":null,"
          "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}}]},"
          "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"ok\"}]}", 0, NULL },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\",\"content\":null,"
          "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"{}\"}}]},"
          "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"ok\"}]}", 400, "messages[2].tool_call_id" },
        { "{\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"function\":"
          "{\"name\":\"a\",\"arguments\":\"[1]\"}}]}]}", 400, "messages[0].tool_calls[0]" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", 400, "messages[0].tool_calls" },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        api_request_t req;
        api_error_t e;
        int rc = parse_str(API_CHAT, r[i].body, &req, &e);
        ASSERT_MSG((rc == 0) == (r[i].status == 0), "%s: rc %d (%s)", r[i].body, rc, e.message);
        if (rc != 0)
            ASSERT_MSG(strcmp(e.param, r[i].param) == 0 && e.status == r[i].status,
                       "%s: param %s status %u (%s)", r[i].body, e.param, e.status, e.message);
        api_request_free(&req);
    }
    /* /v1/completions has no tools: a 400, not a field ignored */
    static const struct { const char *body, *param; } c[] = {
        { "{\"prompt\":\"x\",\"tools\":[" TOOL("a") "]}", "tools" },
        { "{\"prompt\":\"x\",\"functions\":[{\"name\":\"f\"}]}", "functions" },
        { "{\"prompt\":\"x\",\"tool_choice\":\"auto\"}", "tool_choice" },
        { "{\"prompt\":\"x\",\"function_call\":\"auto\"}", "function_call" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        api_request_t req;
        api_error_t e;
        ASSERT_MSG(parse_str(API_COMPLETIONS, c[i].body, &req, &e) != 0, "%s", c[i].body);
        ASSERT_MSG(strcmp(e.param, c[i].param) == 0 && e.status == 400, "%s: param %s status %u",
                   c[i].body, e.param, e.status);
    }
    /* 1,000 functions: over the cap of 128 */
    size_t cap = 1000 * 64 + 256;
    char *big = malloc(cap);
    size_t n = (size_t)snprintf(big, cap, "{" MSGS ",\"tools\":[");
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(big + n, cap - n, "%s{\"type\":\"function\",\"function\":{\"name\":\"f%d\"}}",
                              i ? "," : "", i);
    snprintf(big + n, cap - n, "]}");
    api_request_t req;
    api_error_t e;
    ASSERT(parse_str(API_CHAT, big, &req, &e) != 0);
    ASSERT_MSG(strcmp(e.param, "tools") == 0 && e.status == 400, "%s %u", e.param, e.status);
    free(big);
#undef TOOL
#undef MSGS
}

TEST_LIST(T(tools), T(temperature), T(top_p_min_p), T(penalties), T(top_k), T(max_tokens),
          T(n_and_best_of), T(prompt_list), T(seed), T(logprobs), T(stream), T(stop), T(logit_bias),
          T(model_user_unsupported), T(model_aliases), T(constraint_fields), T(prompt), T(prompt_limits),
          T(messages), T(bad_utf8_and_nul), T(deep_nesting), T(duplicate_keys), T(not_an_object),
          T(vllm_extras_served), T(llama_cpp_aliases), T(neutral_or_refused))
