/*
 * test_constraint.c - output constraints through the engine, on the
 * default model with the CPU backend: every output is checked by code
 * independent of engine/grammar (string comparison, a hand-written
 * checker, cJSON), greedy and sampled, alone and under preemption and
 * chunked prefill (where it must equal the output alone); a cut request
 * ends with "length"; compiled constraints are cached; bad sources are
 * refused with a message.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine.h"
#include "base/err.h"
#include "test.h"

#define MAXTEXT 4096
#define BLOCK_BYTES (30ull * 2 * 3 * 16 * 64 * 4) /* SmolLM2-135M: one 16-token KV block, float32 */

typedef struct {
    const char *prompt;
    engine_constraint_t *c;
    float temperature;
    uint64_t seed;
    uint32_t max_tokens;
    int32_t bias_token;         /* >= 0: logit_bias +100 on it */
    const char *trigger;        /* a lazy constraint's trigger, or NULL */
    uint64_t id;
    char text[MAXTEXT];
    size_t text_len;
    uint32_t n_tokens;
    engine_event_t fin;
    int done;
} cjob_t;

static engine_t *open_engine(uint32_t max_seqs, uint32_t budget, uint64_t kv_bytes)
{
    const char *path = test_model_path();
    if (path == NULL)
        TEST_SKIP("default model not fetched (scripts/fetch-model)");
    char err[ERR_MSG_MAX];
    engine_t *e;
    engine_opts_t o = { 0 };
    o.model_path = path;
    o.chat_template = "auto";
    o.backend = "cpu";
    o.threads = 2;
    o.kv_bytes = kv_bytes;
    o.max_batch_tokens = budget;
    o.max_seqs = max_seqs;
    o.no_prefix_cache = 1;
    ASSERT_MSG(engine_create(&e, &o, err, sizeof err) == 0, "%s", err);
    return e;
}

static engine_constraint_t *compile(engine_t *e, engine_constraint_kind_t kind, const char *src)
{
    char err[ERR_MSG_MAX];
    engine_constraint_t *c;
    int rc = engine_constraint_compile(e, kind, src, src ? strlen(src) : 0, &c, err, sizeof err);
    ASSERT_MSG(rc == 0, "compile %s: %s", src ? src : "(json_object)", err);
    return c;
}

static void submit(engine_t *e, cjob_t *j)
{
    engine_prompt_t p = { .text = j->prompt, .len = strlen(j->prompt) };
    int32_t *ids;
    size_t n;
    char err[ERR_MSG_MAX];
    ASSERT_MSG(engine_encode_prompt(e, &p, &ids, &n, err, sizeof err) == 0, "%s", err);
    engine_request_t r;
    engine_request_init(&r);
    r.tokens = ids;
    r.n_tokens = n;
    r.sampling.temperature = j->temperature;
    r.sampling.seed = j->seed;
    sampler_bias_t b = { j->bias_token, 100.0f };
    if (j->bias_token >= 0) {
        r.sampling.logit_bias = &b;
        r.sampling.n_logit_bias = 1;
    }
    r.max_tokens = j->max_tokens;
    r.constraint = j->c;
    r.constraint_trigger = j->trigger;
    r.cookie = j;
    j->text_len = 0;
    j->n_tokens = 0;
    j->done = 0;
    ASSERT_MSG(engine_submit(e, &r, &j->id, err, sizeof err) == 0, "%s", err);
    free(ids);
}

static void drain(engine_t *e, size_t pending)
{
    static engine_event_t ev;
    while (pending > 0) {
        if (!engine_poll(e, &ev)) {
            ASSERT_MSG(engine_wait(e, 60000), "no event for 60 s");
            continue;
        }
        cjob_t *j = ev.cookie;
        ASSERT(j != NULL && !j->done);
        ASSERT(j->text_len + ev.text_len < MAXTEXT);
        memcpy(j->text + j->text_len, ev.text, ev.text_len);
        j->text_len += ev.text_len;
        j->text[j->text_len] = '\0';
        if (ev.kind == ENGINE_EV_TOKEN) {
            j->n_tokens++;
        } else {
            j->fin = ev;
            j->done = 1;
            pending--;
        }
    }
}

static void run(engine_t *e, cjob_t *jobs, size_t n, int one_at_a_time)
{
    if (one_at_a_time) {
        for (size_t i = 0; i < n; i++) {
            submit(e, &jobs[i]);
            drain(e, 1);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        submit(e, &jobs[i]);
    drain(e, n);
}

/* ---------------------------------------------------------------- independent checkers */

static const char *const choices[] = { "yes", "no", "maybe so", "日本" };
#define CHOICES "[\"yes\", \"no\", \"maybe so\", \"日本\"]"

static int is_choice(const char *s)
{
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++)
        if (strcmp(s, choices[i]) == 0)
            return 1;
    return 0;
}

/* [0-9]{3}-[a-z]{2,4}: whole (prefix 0) or a prefix of one (prefix 1). */
#define PHONE_RE "[0-9]{3}-[a-z]{2,4}"
static int is_phone(const char *s, int prefix)
{
    size_t n = strlen(s), i = 0;
    for (; i < 3; i++)
        if (i >= n)
            return prefix;
        else if (!isdigit((unsigned char)s[i]))
            return 0;
    if (i >= n)
        return prefix;
    if (s[i++] != '-')
        return 0;
    size_t k = 0;
    for (; i < n; i++, k++)
        if (!islower((unsigned char)s[i]) || k >= 4)
            return 0;
    return prefix || k >= 2;
}

static int is_json_object(const char *s)
{
    cJSON *v = cJSON_ParseWithOpts(s, NULL, 1);
    int ok = cJSON_IsObject(v);
    cJSON_Delete(v);
    return ok;
}

/* ---------------------------------------------------------------- tests */

static const char *prompts[] = {
    "Answer the question. Is the sky blue?", "Give me a code:", "Write JSON describing a cat:",
    "Tell me about Paris.",
};
#define NP (sizeof prompts / sizeof prompts[0])

TEST(outputs_stay_in_the_language_greedy_and_sampled)
{
    engine_t *e = open_engine(8, 256, 64ull << 20);
    engine_constraint_t *cc = compile(e, ENGINE_CONSTRAINT_CHOICE, CHOICES);
    engine_constraint_t *rc = compile(e, ENGINE_CONSTRAINT_REGEX, PHONE_RE);
    engine_constraint_t *jc = compile(e, ENGINE_CONSTRAINT_JSON_OBJECT, NULL);
    static cjob_t j[3 * NP * 2];
    size_t n = 0;
    for (size_t p = 0; p < NP; p++)
        for (int s = 0; s < 2; s++) {
            float t = s ? 1.0f : 0.0f;
            j[n++] = (cjob_t){ .prompt = prompts[p], .c = cc, .temperature = t, .seed = 7 + p,
                               .max_tokens = 16, .bias_token = -1 };
            j[n++] = (cjob_t){ .prompt = prompts[p], .c = rc, .temperature = t, .seed = 9 + p,
                               .max_tokens = 16, .bias_token = -1 };
            j[n++] = (cjob_t){ .prompt = prompts[p], .c = jc, .temperature = t, .seed = 11 + p,
                               .max_tokens = 200, .bias_token = -1 };
        }
    run(e, j, n, 0);
    int stopped = 0;
    for (size_t i = 0; i < n; i++) {
        ASSERT_MSG(j[i].fin.finish == ENGINE_FINISH_STOP || j[i].fin.finish == ENGINE_FINISH_LENGTH,
                   "job %zu finished %d: %s", i, j[i].fin.finish, j[i].fin.message);
        int whole = j[i].fin.finish == ENGINE_FINISH_STOP;
        stopped += whole;
        if (j[i].c == cc)
            ASSERT_MSG(whole && is_choice(j[i].text), "choice output '%s'", j[i].text);
        else if (j[i].c == rc)
            ASSERT_MSG(is_phone(j[i].text, !whole), "regex output '%s' (%s)", j[i].text,
                       whole ? "stop" : "length");
        else if (whole)
            ASSERT_MSG(is_json_object(j[i].text), "json_object output '%s'", j[i].text);
    }
    printf("  info: %d of %zu outputs complete\n", stopped, n);
    ASSERT(stopped >= (int)n * 3 / 4);
    engine_constraint_release(cc);
    engine_constraint_release(rc);
    engine_constraint_release(jc);
    engine_destroy(e);
}

TEST(a_forced_token_outside_the_language_cannot_break_it)
{
    /* logit_bias +100 on a token the language forbids: the mask comes first */
    engine_t *e = open_engine(2, 256, 64ull << 20);
    engine_constraint_t *c = compile(e, ENGINE_CONSTRAINT_CHOICE, CHOICES);
    int32_t *ids;
    size_t n;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(engine_tokenize(e, "!", 1, 0, 0, &ids, &n, err, sizeof err), 0);
    ASSERT(n == 1);
    cjob_t j = { .prompt = prompts[0], .c = c, .temperature = 0.0f, .max_tokens = 16, .bias_token = ids[0] };
    free(ids);
    run(e, &j, 1, 1);
    ASSERT_EQ_INT(j.fin.finish, ENGINE_FINISH_STOP);
    ASSERT_MSG(is_choice(j.text), "output '%s'", j.text);
    engine_constraint_release(c);
    engine_destroy(e);
}

TEST(preemption_and_chunking_change_nothing)
{
    static cjob_t ref[2 * NP], got[2 * NP];
    engine_t *e = open_engine(1, 512, 64ull << 20);
    engine_constraint_t *c = compile(e, ENGINE_CONSTRAINT_JSON_OBJECT, NULL);
    for (size_t i = 0; i < 2 * NP; i++)
        ref[i] = (cjob_t){ .prompt = prompts[i % NP], .c = c, .temperature = i < NP ? 0.0f : 1.0f,
                           .seed = 100 + i, .max_tokens = 60, .bias_token = -1 };
    run(e, ref, 2 * NP, 1);
    engine_constraint_release(c);
    engine_destroy(e);

    /* 5 blocks of 16 tokens for 8 requests of up to ~75: preemption; 7 tokens a step: chunks */
    const struct { uint32_t seqs, budget; uint64_t kv; const char *what; } cfg[] = {
        { 8, 64, 6 * BLOCK_BYTES, "tiny pool" }, { 4, 7, 64ull << 20, "chunked" },
    };
    for (size_t k = 0; k < 2; k++) {
        e = open_engine(cfg[k].seqs, cfg[k].budget, cfg[k].kv);
        c = compile(e, ENGINE_CONSTRAINT_JSON_OBJECT, NULL);
        for (size_t i = 0; i < 2 * NP; i++) {
            got[i] = ref[i];
            got[i].c = c;
        }
        run(e, got, 2 * NP, 0);
        engine_stats_t st;
        engine_get_stats(e, &st);
        printf("  info: %s: %llu preemptions\n", cfg[k].what, (unsigned long long)st.preemptions);
        for (size_t i = 0; i < 2 * NP; i++) {
            ASSERT_MSG(strcmp(got[i].text, ref[i].text) == 0, "%s, job %zu: '%s' vs alone '%s'",
                       cfg[k].what, i, got[i].text, ref[i].text);
            ASSERT_EQ_INT(got[i].fin.finish, ref[i].fin.finish);
        }
        engine_constraint_release(c);
        engine_destroy(e);
    }
}

TEST(a_cut_request_ends_with_length_and_a_prefix)
{
    engine_t *e = open_engine(2, 256, 64ull << 20);
    engine_constraint_t *c = compile(e, ENGINE_CONSTRAINT_REGEX, "[a-z]{200}");
    cjob_t j = { .prompt = prompts[3], .c = c, .temperature = 1.0f, .seed = 3, .max_tokens = 5,
                 .bias_token = -1 };
    run(e, &j, 1, 1);
    ASSERT_EQ_INT(j.fin.finish, ENGINE_FINISH_LENGTH);
    ASSERT(j.text_len > 0 && j.text_len < 200);
    for (size_t i = 0; i < j.text_len; i++)
        ASSERT_MSG(islower((unsigned char)j.text[i]), "output '%s'", j.text);
    engine_constraint_release(c);
    engine_destroy(e);
}

TEST(compiled_constraints_are_cached_and_bad_ones_refused)
{
    engine_t *e = open_engine(2, 256, 64ull << 20);
    engine_constraint_t *a = compile(e, ENGINE_CONSTRAINT_REGEX, "[0-9]+");
    engine_constraint_t *b = compile(e, ENGINE_CONSTRAINT_REGEX, "[0-9]+");
    engine_constraint_t *g = compile(e, ENGINE_CONSTRAINT_GBNF, "root ::= [0-9]+");
    ASSERT(a == b);
    ASSERT(a != g);
    engine_constraint_release(a);
    engine_constraint_release(b);
    engine_constraint_release(g);
    static const struct { engine_constraint_kind_t k; const char *src; } bad[] = {
        { ENGINE_CONSTRAINT_REGEX, "(" }, { ENGINE_CONSTRAINT_REGEX, "a(?=b)" },
        { ENGINE_CONSTRAINT_GBNF, "root ::= root \"a\"" }, { ENGINE_CONSTRAINT_GBNF, "root ::= x" },
        { ENGINE_CONSTRAINT_CHOICE, "[]" }, { ENGINE_CONSTRAINT_JSON_SCHEMA, "{\"not\": {}}" },
        { ENGINE_CONSTRAINT_JSON_SCHEMA, "{\"$ref\": \"#/$defs/missing\"}" },
        { ENGINE_CONSTRAINT_JSON_SCHEMA, "{" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[ERR_MSG_MAX] = "";
        engine_constraint_t *c = (engine_constraint_t *)1;
        int rc = engine_constraint_compile(e, bad[i].k, bad[i].src, strlen(bad[i].src), &c, err, sizeof err);
        ASSERT_MSG(rc < 0 && c == NULL && err[0] != '\0', "'%s': rc %d", bad[i].src, rc);
        printf("  info: '%s': %s\n", bad[i].src, err);
    }
    engine_destroy(e);
}

TEST(a_lazy_constraint_holds_from_its_trigger_on)
{
    engine_t *e = open_engine(2, 256, 64ull << 20);
    /* the free greedy output; its last bytes, ending at a token boundary, are the trigger */
    cjob_t free_run = { .prompt = prompts[3], .temperature = 0.0f, .max_tokens = 6, .bias_token = -1 };
    run(e, &free_run, 1, 1);
    ASSERT(free_run.text_len >= 4);
    char trig[8];
    snprintf(trig, sizeof trig, "%s", free_run.text + free_run.text_len - 4);
    if (strpbrk(trig, "\"\\\n") != NULL || strstr(free_run.text, trig) != free_run.text + free_run.text_len - 4)
        TEST_SKIP("the free output's last bytes do not make a usable trigger");
    char gbnf[128];
    snprintf(gbnf, sizeof gbnf, "root ::= \"%s\" [0-9] [0-9] [0-9]", trig);
    engine_constraint_t *c = compile(e, ENGINE_CONSTRAINT_GBNF, gbnf);

    /* free text up to the trigger, then exactly the language, then done */
    cjob_t lazy = { .prompt = prompts[3], .c = c, .temperature = 0.0f, .max_tokens = 30,
                    .bias_token = -1, .trigger = trig };
    run(e, &lazy, 1, 1);
    ASSERT_EQ_INT(lazy.fin.finish, ENGINE_FINISH_STOP);
    ASSERT_MSG(lazy.text_len == free_run.text_len + 3, "lazy '%s', free '%s'", lazy.text, free_run.text);
    ASSERT(memcmp(lazy.text, free_run.text, free_run.text_len) == 0);
    for (size_t i = free_run.text_len; i < lazy.text_len; i++)
        ASSERT_MSG(isdigit((unsigned char)lazy.text[i]), "lazy '%s'", lazy.text);

    /* sampled, a batch of them: the same shape */
    cjob_t many[3];
    for (int i = 0; i < 3; i++)
        many[i] = (cjob_t){ .prompt = prompts[3], .c = c, .temperature = 0.7f, .seed = 7 + (uint64_t)i,
                            .max_tokens = 40, .bias_token = -1, .trigger = trig };
    run(e, many, 3, 0);
    for (int i = 0; i < 3; i++) {
        char *at = strstr(many[i].text, trig);
        if (at == NULL) {
            ASSERT_EQ_INT(many[i].fin.finish, ENGINE_FINISH_LENGTH);   /* never triggered: free */
            continue;
        }
        ASSERT_EQ_INT(many[i].fin.finish, ENGINE_FINISH_STOP);
        at += strlen(trig);
        ASSERT_MSG(strlen(at) == 3 && isdigit((unsigned char)at[0]) && isdigit((unsigned char)at[1]) &&
                   isdigit((unsigned char)at[2]), "sampled '%s'", many[i].text);
    }

    /* a trigger that never appears: the constraint never holds, the output is the free one */
    cjob_t never = { .prompt = prompts[3], .c = c, .temperature = 0.0f, .max_tokens = 6,
                     .bias_token = -1, .trigger = "\x01\x02never" };
    run(e, &never, 1, 1);
    ASSERT_EQ_INT(never.fin.finish, ENGINE_FINISH_LENGTH);
    ASSERT_EQ_STR(never.text, free_run.text);

    /* a trigger without a constraint, or too long: refused */
    engine_request_t r;
    engine_request_init(&r);
    int32_t tok = 1;
    r.tokens = &tok;
    r.n_tokens = 1;
    r.constraint_trigger = "x";
    uint64_t id;
    char err[ERR_MSG_MAX];
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_INVALID);
    char big[ENGINE_MAX_TRIGGER + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    r.constraint = c;
    r.constraint_trigger = big;
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_RANGE);
    engine_constraint_release(c);
    engine_destroy(e);
}

TEST_LIST(T(a_lazy_constraint_holds_from_its_trigger_on), T(outputs_stay_in_the_language_greedy_and_sampled), T(a_forced_token_outside_the_language_cannot_break_it),
          T(preemption_and_chunking_change_nothing), T(a_cut_request_ends_with_length_and_a_prefix),
          T(compiled_constraints_are_cached_and_bad_ones_refused));
