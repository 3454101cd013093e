/*
 * test_engine.c - the engine as the server uses it: stop strings (alone),
 * then, on the default model with the CPU backend, requests through the
 * engine thread and its queues.  The reference for every output is the
 * same request run alone (one sequence at a time, no prefix cache):
 * under heavy concurrency, with a KV pool so small that sequences are
 * preempted and recomputed, with a step budget so small that every
 * prompt is chunked, and with the prefix cache, each request's tokens
 * must be identical (greedy ones, and seeded sampled ones too).  Also: prefix caching skips prefill work
 * (counted), cancellation, the intake limit, submit-time checks, events
 * and usage, health.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "engine.h"
#include "base/err.h"
#include "engine/cpu/matmul.h"
#include "engine/registry.h"
#include "engine/text/stop.h"
#include "test.h"

/* ---------------------------------------------------------------- stop strings */

static stop_set_t make_stops(const char *a, const char *b)
{
    stop_set_t s;
    const char *v[2] = { a, b };
    char err[ERR_MSG_MAX];
    ASSERT_MSG(stop_set_init(&s, v, b ? 2 : 1, err, sizeof err) == 0, "%s", err);
    return s;
}

TEST(stop_scan_finds_the_earliest_and_holds_back_prefixes)
{
    stop_set_t s = make_stops("END", "\n\n");
    size_t emit;
    ASSERT_EQ_INT(stop_scan(&s, "hello", 5, &emit), 0);
    ASSERT_EQ_INT(emit, 5);
    ASSERT_EQ_INT(stop_scan(&s, "hello E", 7, &emit), 0);
    ASSERT_EQ_INT(emit, 6); /* "E" may start END */
    ASSERT_EQ_INT(stop_scan(&s, "hello EN", 8, &emit), 0);
    ASSERT_EQ_INT(emit, 6);
    ASSERT_EQ_INT(stop_scan(&s, "hello ENX", 9, &emit), 0);
    ASSERT_EQ_INT(emit, 9);
    ASSERT_EQ_INT(stop_scan(&s, "a\n", 2, &emit), 0);
    ASSERT_EQ_INT(emit, 1);
    ASSERT_EQ_INT(stop_scan(&s, "ab END cd\n\n", 11, &emit), 1);
    ASSERT_EQ_INT(emit, 3);
    ASSERT_EQ_INT(stop_scan(&s, "ab\n\nEND", 7, &emit), 1);
    ASSERT_EQ_INT(emit, 2);
    ASSERT_EQ_INT(stop_scan(&s, "END", 3, &emit), 1);
    ASSERT_EQ_INT(emit, 0);
    stop_set_t none = make_stops("x", NULL);
    none.n = 0;
    ASSERT_EQ_INT(stop_scan(&none, "abc", 3, &emit), 0);
    ASSERT_EQ_INT(emit, 3);
}

/* Feed text in pieces as tokens would come, as engine_req.c does: only released text is shown. */
static void feed(const stop_set_t *s, const char *const *pieces, char *shown, int *stopped)
{
    char held[256] = "";
    size_t n_held = 0, n_shown = 0, emit;
    *stopped = 0;
    shown[0] = '\0';
    for (int i = 0; pieces[i] != NULL && !*stopped; i++) {
        memcpy(held + n_held, pieces[i], strlen(pieces[i]));
        n_held += strlen(pieces[i]);
        *stopped = stop_scan(s, held, n_held, &emit);
        memcpy(shown + n_shown, held, emit);
        n_shown += emit;
        memmove(held, held + emit, n_held - emit);
        n_held -= emit;
    }
    if (!*stopped) { /* the end: what was held comes out */
        memcpy(shown + n_shown, held, n_held);
        n_shown += n_held;
    }
    shown[n_shown] = '\0';
}

TEST(stop_strings_match_across_token_boundaries)
{
    stop_set_t s = make_stops("<|user|>", "Question:");
    char shown[512];
    int stopped;
    const char *a[] = { "The answer", " is 4.", "<|us", "er", "|> next", NULL };
    feed(&s, a, shown, &stopped);
    ASSERT_EQ_INT(stopped, 1);
    ASSERT_EQ_STR(shown, "The answer is 4.");
    const char *b[] = { "Ques", "t", "ionable", " stuff Qu", NULL };
    feed(&s, b, shown, &stopped);
    ASSERT_EQ_INT(stopped, 0);
    ASSERT_EQ_STR(shown, "Questionable stuff Qu");
    const char *c[] = { "x Q", "uestion", ":", NULL };
    feed(&s, c, shown, &stopped);
    ASSERT_EQ_INT(stopped, 1);
    ASSERT_EQ_STR(shown, "x ");
    /* multi-byte: the held tail starts on a character boundary */
    stop_set_t u = make_stops("\xc3\xa9t\xc3\xa9", NULL); /* "été" */
    const char *d[] = { "caf\xc3\xa9", "t", "\xc3\xa9", NULL };
    feed(&u, d, shown, &stopped);
    ASSERT_EQ_INT(stopped, 1);
    ASSERT_EQ_STR(shown, "caf");
}

TEST(stop_set_rejects_bad_strings)
{
    stop_set_t s;
    char err[ERR_MSG_MAX];
    const char *five[5] = { "a", "b", "c", "d", "e" };
    ASSERT_EQ_INT(stop_set_init(&s, five, 5, err, sizeof err), ERR_RANGE);
    const char *empty[1] = { "" };
    ASSERT_EQ_INT(stop_set_init(&s, empty, 1, err, sizeof err), ERR_RANGE);
    static char big[300];
    memset(big, 'x', 257);
    const char *longs[1] = { big };
    ASSERT_EQ_INT(stop_set_init(&s, longs, 1, err, sizeof err), ERR_RANGE);
    const char *bad[1] = { "ab\xff" };
    ASSERT_EQ_INT(stop_set_init(&s, bad, 1, err, sizeof err), ERR_INVALID);
    ASSERT(strstr(err, "stop[0]") != NULL);
    big[256] = '\0';
    ASSERT_EQ_INT(stop_set_init(&s, longs, 1, err, sizeof err), 0);
}

/* ---------------------------------------------------------------- the engine */

#define MAXGEN 64
#define BLOCK_BYTES (30ull * 2 * 3 * 16 * 64 * 4) /* SmolLM2-135M: one 16-token KV block, float32 */

typedef struct {
    int32_t tok[256];
    size_t n_tok;
    uint32_t max_tokens;
    const char *stop;
    int ignore_eos;
    uint32_t min_tokens;
    int include_stop_str;
    int32_t stop_token;         /* 0: none */
    uint32_t n_logprobs;
    float temperature;          /* 0: greedy */
    float repetition_penalty;   /* 0: off */
    uint64_t seed;
    uint32_t choice;            /* of its submission (submit_choices) */
    int speculative;            /* engine_request_t.speculative */
    /* results */
    uint64_t id;
    int32_t out[MAXGEN + 1];
    uint32_t tlen[MAXGEN + 1];  /* text bytes each token event released */
    uint32_t n_out;
    char text[4096];
    size_t text_len;
    int finishes;
    engine_event_t fin;
} job_t;

/* Speculative decoding for the engines open_engine opens next (engine_opts_t.spec_tokens; 0: off). */
static uint32_t open_spec_tokens;
/* Their cpu-precision (the kernels' precision is process-wide: every engine names its own). */
static const char *open_precision = "exact";

static engine_t *open_engine(uint32_t max_seqs, uint32_t budget, uint64_t kv_bytes, int prefix, uint32_t queue)
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
    o.max_queue = queue;
    o.no_prefix_cache = !prefix;
    o.speculative = open_spec_tokens > 0;
    o.spec_tokens = open_spec_tokens;
    o.cpu_precision = open_precision;
    ASSERT_MSG(engine_create(&e, &o, err, sizeof err) == 0, "%s", err);
    return e;
}

static void encode(engine_t *e, const char *text, job_t *j)
{
    engine_prompt_t p = { .text = text, .len = strlen(text) };
    int32_t *ids;
    size_t n;
    char err[ERR_MSG_MAX];
    ASSERT_MSG(engine_encode_prompt(e, &p, &ids, &n, err, sizeof err) == 0, "%s", err);
    ASSERT(n <= 256);
    memcpy(j->tok, ids, n * sizeof(int32_t));
    j->n_tok = n;
    free(ids);
}

static void fill_request(job_t *j, engine_request_t *r);

static int submit(engine_t *e, job_t *j)
{
    char err[ERR_MSG_MAX];
    engine_request_t r;
    fill_request(j, &r);
    j->choice = 0;
    return engine_submit(e, &r, &j->id, err, sizeof err);
}

/* jobs[0 .. n) as the n choices of one submission: jobs[0]'s request, seed + i each. */
static int submit_choices(engine_t *e, job_t *jobs, uint32_t n)
{
    char err[ERR_MSG_MAX];
    engine_request_t r;
    void *cookies[ENGINE_MAX_CHOICES];
    fill_request(&jobs[0], &r);
    for (uint32_t i = 0; i < n; i++) {
        cookies[i] = &jobs[i];
        jobs[i].n_out = 0;
        jobs[i].text_len = 0;
        jobs[i].finishes = 0;
        jobs[i].choice = i;
    }
    r.n_choices = n;
    r.choice_cookies = cookies;
    uint64_t id;
    int rc = engine_submit(e, &r, &id, err, sizeof err);
    for (uint32_t i = 0; rc == 0 && i < n; i++)
        jobs[i].id = id + i;
    return rc;
}

static void fill_request(job_t *j, engine_request_t *r_out)
{
    engine_request_t r;
    engine_request_init(&r);
    r.tokens = j->tok;
    r.n_tokens = j->n_tok;
    r.sampling.temperature = j->temperature;
    r.sampling.seed = j->seed;
    if (j->repetition_penalty > 0.0f)
        r.sampling.repetition_penalty = j->repetition_penalty;
    r.sampling.n_logprobs = j->n_logprobs;
    r.max_tokens = j->max_tokens;
    r.ignore_eos = j->ignore_eos;
    r.min_tokens = j->min_tokens;
    r.include_stop_str = j->include_stop_str;
    r.speculative = j->speculative;
    if (j->stop_token > 0) {
        r.stop_tokens = &j->stop_token;
        r.n_stop_tokens = 1;
    }
    r.cookie = j;   /* route() checks that every event brings it back */
    if (j->stop) {
        r.stop = &j->stop;  /* the job outlives the submission */
        r.n_stop = 1;
    }
    j->n_out = 0;
    j->text_len = 0;
    j->finishes = 0;
    *r_out = r;
}

/* Route one event to its job, checking the order of a request's events and that
 * it carries its request's cookie (the job submit() gave as engine_request_t.cookie). */
static int route(job_t *jobs, size_t n, const engine_event_t *ev)
{
    for (size_t i = 0; i < n; i++) {
        job_t *j = &jobs[i];
        if (j->id != ev->id)
            continue;
        ASSERT_MSG(ev->cookie == (void *)j, "request %llu's event carries cookie %p, not its job %p",
                   (unsigned long long)ev->id, ev->cookie, (void *)j);
        ASSERT_MSG(j->finishes == 0, "an event after the finish of request %llu", (unsigned long long)ev->id);
        ASSERT_EQ_INT(ev->choice, j->choice);
        ASSERT(j->text_len + ev->text_len < sizeof j->text);
        memcpy(j->text + j->text_len, ev->text, ev->text_len);
        j->text_len += ev->text_len;
        j->text[j->text_len] = '\0';
        if (ev->kind == ENGINE_EV_TOKEN) {
            ASSERT_EQ_INT(ev->index, j->n_out);
            ASSERT(j->n_out < MAXGEN);
            j->tlen[j->n_out] = ev->text_len;
            j->out[j->n_out++] = ev->token;
        } else {
            j->finishes++;
            j->fin = *ev;
            return 1;
        }
        return 0;
    }
    TEST_FAIL_AT("an event for unknown request %llu", (unsigned long long)ev->id);
    return 0;
}

static engine_event_t ev_buf;

/* Wait for `pending` finish events. */
static void drain(engine_t *e, job_t *jobs, size_t n, size_t pending)
{
    while (pending > 0) {
        if (!engine_poll(e, &ev_buf)) {
            ASSERT_MSG(engine_wait(e, 30000), "no event for 30 s");
            continue;
        }
        pending -= (size_t)route(jobs, n, &ev_buf);
    }
}

static void run_all(engine_t *e, job_t *jobs, size_t n, int one_at_a_time)
{
    if (one_at_a_time) {
        for (size_t i = 0; i < n; i++) {
            ASSERT_EQ_INT(submit(e, &jobs[i]), 0);
            drain(e, &jobs[i], 1, 1);
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ_INT(submit(e, &jobs[i]), 0);
    drain(e, jobs, n, n);
}

/* Wait until the engine is idle and its stats say so. */
static void settle(engine_t *e, engine_stats_t *st)
{
    for (int i = 0; i < 200; i++) {
        engine_get_stats(e, st);
        engine_health_t h;
        engine_health(e, &h);
        if (!h.busy && st->running == 0 && st->waiting == 0)
            return;
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    TEST_FAIL_AT("the engine did not settle");
}

static const char *questions[] = {
    "What is the capital of France?", "Name three primary colors.", "Why is the sky blue?",
    "Write a haiku about the sea.", "How many legs does a spider have?", "What is 12 times 7?",
    "Tell me a fun fact about owls.", "Translate 'good morning' to Spanish.", "What is photosynthesis?",
    "Give me a synonym for happy.", "Who wrote Hamlet?", "What is the boiling point of water?",
};
#define NQ 12

/* Prompts: half share a long system prompt (so prefix caching has something to find). */
static void make_jobs(engine_t *e, job_t *jobs)
{
    memset(jobs, 0, NQ * sizeof *jobs);
    for (int i = 0; i < NQ; i++) {
        char text[1024];
        if (i % 2 == 0)
            snprintf(text, sizeof text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                     "trained by Hugging Face. Answer briefly and precisely.<|im_end|>\n<|im_start|>user\n"
                     "%s<|im_end|>\n<|im_start|>assistant\n", questions[i]);
        else
            snprintf(text, sizeof text, "Q: %s\nA:", questions[i]);
        encode(e, text, &jobs[i]);
        jobs[i].max_tokens = 6 + (uint32_t)(i % 4) * 3;
        jobs[i].ignore_eos = i % 3 == 0;
        if (i % 4 == 1) { /* sampled: the draws depend on the seed and the token index only */
            jobs[i].temperature = 0.9f;
            jobs[i].seed = 1000 + (uint64_t)i;
            jobs[i].repetition_penalty = i % 8 == 1 ? 1.3f : 0.0f;
        }
    }
}

static void same_outputs(const job_t *ref, const job_t *got, const char *what)
{
    for (int i = 0; i < NQ; i++) {
        ASSERT_EQ_INT(got[i].finishes, 1);
        ASSERT_MSG(got[i].n_out == ref[i].n_out && memcmp(got[i].out, ref[i].out, ref[i].n_out * sizeof(int32_t)) == 0,
                   "%s: request %d differs from its output alone (%u vs %u tokens): \"%s\" vs \"%s\"", what, i,
                   got[i].n_out, ref[i].n_out, got[i].text, ref[i].text);
        ASSERT_EQ_STR(got[i].text, ref[i].text);
        ASSERT_EQ_INT(got[i].fin.finish, ref[i].fin.finish);
        ASSERT_EQ_INT(got[i].fin.completion_tokens, ref[i].fin.completion_tokens);
    }
}

TEST(outputs_under_load_preemption_and_chunking_equal_outputs_alone)
{
    static job_t ref[NQ], got[NQ];
    engine_stats_t st;

    /* alone: one sequence at a time, whole prompts, no prefix cache */
    engine_t *e = open_engine(1, 512, 64ull << 20, 0, 64);
    make_jobs(e, ref);
    run_all(e, ref, NQ, 1);
    for (int i = 0; i < NQ; i++) {
        ASSERT_EQ_INT(ref[i].fin.prompt_tokens, ref[i].n_tok);
        ASSERT_EQ_INT(ref[i].fin.cached_tokens, 0);
        /* usage: every token event, plus a final stop token that has none */
        ASSERT_EQ_INT(ref[i].fin.completion_tokens, ref[i].n_out + (ref[i].fin.finish == ENGINE_FINISH_STOP));
        if (ref[i].ignore_eos)
            ASSERT_EQ_INT(ref[i].fin.finish, ENGINE_FINISH_LENGTH);
    }
    engine_destroy(e);

    /* room for everyone, prefix cache on: the first two alone (filling the cache), then all the rest at once */
    e = open_engine(16, 512, 64ull << 20, 1, 64);
    make_jobs(e, got);
    run_all(e, got, 2, 0);
    run_all(e, got + 2, NQ - 2, 0);
    same_outputs(ref, got, "concurrent");
    settle(e, &st);
    printf("  info: concurrent: %llu prefix-cache hits, %llu prompt tokens skipped\n",
           (unsigned long long)st.prefix_cache_hits, (unsigned long long)st.prefix_cache_tokens);
    ASSERT(st.prefix_cache_hits > 0);
    engine_destroy(e);

    /* a pool of 5 blocks (80 tokens) for 12 requests of up to 70: preemption and recompute,
       without and with the prefix cache (which then serves part of the recompute) */
    for (int prefix = 0; prefix < 2; prefix++) {
        e = open_engine(12, 64, 5 * BLOCK_BYTES, prefix, 64);
        make_jobs(e, got);
        run_all(e, got, NQ, 0);
        same_outputs(ref, got, prefix ? "tiny pool, prefix cache" : "tiny pool");
        settle(e, &st);
        printf("  info: tiny pool%s: %llu preemptions in %llu steps\n", prefix ? ", prefix cache" : "",
               (unsigned long long)st.preemptions, (unsigned long long)st.steps);
        ASSERT_MSG(st.preemptions > 0, "no preemption happened");
        ASSERT_EQ_INT(st.blocks_used, 0);
        ASSERT_EQ_INT(st.blocks_free, st.blocks_total);
        engine_destroy(e);
    }

    /* a budget of 7 tokens a step: every prompt is prefilled in chunks, decodes go first */
    e = open_engine(4, 7, 64ull << 20, 0, 64);
    make_jobs(e, got);
    run_all(e, got, NQ, 0);
    same_outputs(ref, got, "chunked");
    settle(e, &st);
    printf("  info: chunked: %.2f tokens per step over %llu steps\n", st.tokens_per_step,
           (unsigned long long)st.steps);
    ASSERT(st.tokens_per_step <= 7.0);
    engine_destroy(e);
}

TEST(prefix_cache_skips_prefill_and_changes_nothing)
{
    static job_t a[2], b[2];
    engine_stats_t s0, s1;
    char sys[2048] = "<|im_start|>system\n";
    for (int i = 0; i < 12; i++)
        strcat(sys, "You are a careful assistant who checks every fact twice before answering. ");
    strcat(sys, "<|im_end|>\n<|im_start|>user\n");
    char t0[2300], t1[2300];
    snprintf(t0, sizeof t0, "%sWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n", sys);
    snprintf(t1, sizeof t1, "%sHow many days are in a leap year?<|im_end|>\n<|im_start|>assistant\n", sys);

    engine_t *e = open_engine(4, 512, 64ull << 20, 0, 16);
    memset(a, 0, sizeof a);
    encode(e, t0, &a[0]);
    encode(e, t1, &a[1]);
    a[0].max_tokens = a[1].max_tokens = 8;
    run_all(e, a, 2, 1);
    engine_destroy(e);

    e = open_engine(4, 512, 64ull << 20, 1, 16);
    memset(b, 0, sizeof b);
    encode(e, t0, &b[0]);
    encode(e, t1, &b[1]);
    b[0].max_tokens = b[1].max_tokens = 8;
    ASSERT(b[0].n_tok > 150);
    run_all(e, &b[0], 1, 1);
    settle(e, &s0);
    run_all(e, &b[1], 1, 1);
    settle(e, &s1);
    /* the second prompt computed only what follows the cached whole blocks of the first */
    uint32_t common = 0;
    while (common < b[0].n_tok && b[0].tok[common] == b[1].tok[common])
        common++;
    uint32_t cached = common / 16 * 16;
    ASSERT_EQ_INT(b[1].fin.cached_tokens, cached);
    ASSERT_EQ_INT(s1.prompt_tokens_computed - s0.prompt_tokens_computed, b[1].n_tok - cached);
    ASSERT_EQ_INT(s1.prefix_cache_tokens, cached);
    ASSERT_EQ_INT(s1.prefix_cache_hits, 1);
    ASSERT(cached >= 128);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ_INT(b[i].n_out, a[i].n_out);
        ASSERT(memcmp(b[i].out, a[i].out, a[i].n_out * sizeof(int32_t)) == 0);
        ASSERT_EQ_STR(b[i].text, a[i].text);
    }
    ASSERT(s1.blocks_cached > 0);
    engine_destroy(e);
}

TEST(stop_string_cuts_the_text_and_never_leaks)
{
    static job_t j[1];
    engine_t *e = open_engine(2, 512, 32ull << 20, 1, 8);
    memset(j, 0, sizeof j);
    encode(e, "Q: List the days of the week.\nA:", &j[0]);
    j[0].max_tokens = 24;
    j[0].ignore_eos = 1;
    run_all(e, j, 1, 1);
    char full[4096];
    snprintf(full, sizeof full, "%s", j[0].text);
    ASSERT_MSG(strlen(full) > 12, "too little text: \"%s\"", full);
    /* a stop string made of the last byte of one token's text and the next three bytes */
    size_t at = 0, start = 0;
    int found = 0;
    for (uint32_t k = 0; k < j[0].n_out && !found; k++) {
        at += j[0].tlen[k];
        if (j[0].tlen[k] == 0 || at < 4 || at + 3 > strlen(full))
            continue;
        start = at - 1;
        found = 1;
        for (size_t b = start; b < start + 4; b++)
            found &= (unsigned char)full[b] < 0x80;
    }
    ASSERT_MSG(found, "no ASCII token boundary in \"%s\"", full);
    char stop[8];
    snprintf(stop, sizeof stop, "%.4s", full + start);
    ASSERT_EQ_INT(strlen(stop), 4);
    const char *first = strstr(full, stop);
    ASSERT(first != NULL);
    j[0].stop = stop;
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].fin.finish, ENGINE_FINISH_STOP);
    ASSERT_EQ_INT(j[0].fin.stop_string, 0);
    ASSERT_EQ_INT(j[0].text_len, (size_t)(first - full));
    ASSERT(strncmp(j[0].text, full, j[0].text_len) == 0);
    ASSERT(strstr(j[0].text, stop) == NULL);
    engine_destroy(e);
}

/* min_tokens: the answer that ended at its EOG goes on, the same tokens up to there. */
TEST(min_tokens_masks_the_end_and_the_stop_strings)
{
    static job_t j[1];
    engine_t *e = open_engine(2, 512, 32ull << 20, 1, 8);
    memset(j, 0, sizeof j);
    encode(e, "<|im_start|>user\nWhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n", &j[0]);
    j[0].max_tokens = 48;
    run_all(e, j, 1, 1);
    ASSERT_MSG(j[0].fin.finish == ENGINE_FINISH_STOP && j[0].fin.stop_token >= 0,
               "the greedy answer should end at its EOG: \"%s\"", j[0].text);
    uint32_t n0 = j[0].n_out;
    int32_t ref[MAXGEN + 1];
    memcpy(ref, j[0].out, sizeof ref);
    char text0[4096];
    snprintf(text0, sizeof text0, "%s", j[0].text);
    int32_t eog = j[0].fin.stop_token;    /* ends it, with no token event of its own */
    ASSERT_EQ_INT(j[0].fin.completion_tokens, n0 + 1);
    ASSERT(n0 >= 2 && n0 + 4 < 48);
    j[0].min_tokens = n0 + 4;
    run_all(e, j, 1, 1);
    ASSERT_MSG(j[0].n_out >= n0 + 4, "%u tokens, min_tokens %u", j[0].n_out, n0 + 4);
    ASSERT(memcmp(j[0].out, ref, n0 * sizeof(int32_t)) == 0);
    for (uint32_t k = 0; k < j[0].n_out; k++)
        ASSERT_MSG(j[0].out[k] != eog, "token %u is the EOG %d", k, eog);
    ASSERT(j[0].fin.completion_tokens >= n0 + 5 || j[0].fin.finish == ENGINE_FINISH_LENGTH);
    /* a stop string from the first tokens' text does not match before min_tokens */
    size_t k = strlen(text0) < 3 ? strlen(text0) : 3;
    ASSERT(k > 0);
    char stop[8];
    snprintf(stop, sizeof stop, "%.*s", (int)k, text0);
    j[0].stop = stop;
    j[0].min_tokens = 0;
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].fin.stop_string, 0);
    ASSERT_EQ_INT(j[0].text_len, 0);
    j[0].min_tokens = n0 + 4;
    run_all(e, j, 1, 1);
    ASSERT_MSG(j[0].n_out >= n0 + 4, "%u tokens", j[0].n_out);
    ASSERT(strncmp(j[0].text, text0, strlen(text0)) == 0);
    /* min_tokens over max_tokens: max_tokens wins */
    j[0].stop = NULL;
    j[0].max_tokens = 5;
    j[0].min_tokens = 40;
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].n_out, 5);
    ASSERT_EQ_INT(j[0].fin.finish, ENGINE_FINISH_LENGTH);
    engine_destroy(e);
}

/* stop_tokens end at that token; include_stop_str keeps the stop string. */
TEST(stop_tokens_and_include_stop_str)
{
    static job_t j[1];
    engine_t *e = open_engine(2, 512, 32ull << 20, 1, 8);
    memset(j, 0, sizeof j);
    encode(e, "Q: List the days of the week.\nA:", &j[0]);
    j[0].max_tokens = 24;
    j[0].ignore_eos = 1;
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].n_out, 24);
    char full[4096];
    snprintf(full, sizeof full, "%s", j[0].text);
    int32_t ref[MAXGEN + 1];
    memcpy(ref, j[0].out, sizeof ref);
    uint32_t at = 0;    /* the first occurrence of the token at index 5 */
    while (ref[at] != ref[5])
        at++;
    j[0].stop_token = ref[5];
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].n_out, at);     /* the stop token has no token event */
    ASSERT_EQ_INT(j[0].fin.completion_tokens, at + 1);
    ASSERT_EQ_INT(j[0].fin.finish, ENGINE_FINISH_STOP);
    ASSERT_EQ_INT(j[0].fin.stop_token, ref[5]);
    /* with min_tokens past it, the stop token cannot be drawn before then */
    j[0].min_tokens = 10;
    run_all(e, j, 1, 1);
    ASSERT(j[0].n_out >= 10);
    for (uint32_t k = 0; k < j[0].n_out && k < 10; k++)
        ASSERT(j[0].out[k] != ref[5]);
    j[0].stop_token = 0;
    j[0].min_tokens = 0;
    /* a stop string of 3 ASCII bytes from the middle of the text */
    size_t len = strlen(full), start = len / 2;
    while (start + 3 < len && ((unsigned char)full[start] >= 0x80 || (unsigned char)full[start + 1] >= 0x80 ||
                               (unsigned char)full[start + 2] >= 0x80))
        start++;
    ASSERT(start + 3 <= len);
    char stop[8];
    snprintf(stop, sizeof stop, "%.3s", full + start);
    const char *first = strstr(full, stop);
    ASSERT(first != NULL);
    j[0].stop = stop;
    j[0].include_stop_str = 1;
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].fin.finish, ENGINE_FINISH_STOP);
    ASSERT_EQ_INT(j[0].fin.stop_string, 0);
    ASSERT_EQ_INT(j[0].text_len, (size_t)(first - full) + 3);
    ASSERT(strncmp(j[0].text, full, j[0].text_len) == 0);
    j[0].include_stop_str = 0;
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].text_len, (size_t)(first - full));
    engine_destroy(e);
}

TEST(cancel_ends_requests_anywhere_exactly_once)
{
    static job_t j[3];
    engine_t *e = open_engine(1, 512, 32ull << 20, 1, 8);
    memset(j, 0, sizeof j);
    for (int i = 0; i < 3; i++) {
        encode(e, "Once upon a time, in a land far away,", &j[i]);
        j[i].max_tokens = 200;
        j[i].ignore_eos = 1;
        ASSERT_EQ_INT(submit(e, &j[i]), 0);
    }
    ASSERT_EQ_INT(engine_cancel(e, j[2].id), 0); /* still queued behind the others (max_seqs 1) */
    /* cancel j[0] once it is decoding */
    while (j[0].n_out < 3) {
        if (!engine_poll(e, &ev_buf)) {
            ASSERT(engine_wait(e, 30000));
            continue;
        }
        route(j, 3, &ev_buf);
    }
    ASSERT_EQ_INT(engine_cancel(e, j[0].id), 0);
    ASSERT_EQ_INT(engine_cancel(e, j[0].id), 0); /* twice: still one finish */
    ASSERT_EQ_INT(engine_cancel(e, 999999), 0);  /* unknown: ignored */
    while (j[0].finishes == 0 || j[2].finishes == 0 || j[1].n_out < 2) {
        if (!engine_poll(e, &ev_buf)) {
            ASSERT(engine_wait(e, 30000));
            continue;
        }
        route(j, 3, &ev_buf);
    }
    ASSERT_EQ_INT(engine_cancel(e, j[1].id), 0);
    drain(e, j, 3, 1);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ_INT(j[i].finishes, 1);
        ASSERT_EQ_INT(j[i].fin.finish, ENGINE_FINISH_CANCELLED);
    }
    ASSERT_EQ_INT(j[2].fin.completion_tokens, 0);
    ASSERT(j[0].fin.completion_tokens < 200);
    engine_stats_t st;
    settle(e, &st);
    ASSERT_EQ_INT(st.requests_finished[ENGINE_FINISH_CANCELLED - 1], 3);
    ASSERT_EQ_INT(st.blocks_used, 0);
    ASSERT_EQ_INT(st.queued, 0);
    ASSERT(!engine_poll(e, &ev_buf)); /* nothing more */
    engine_destroy(e);
}

TEST(submit_checks_limits_and_the_queue)
{
    char err[ERR_MSG_MAX];
    engine_t *e = open_engine(1, 64, 8 * BLOCK_BYTES, 1, 2);
    engine_info_t info;
    engine_get_info(e, &info);
    ASSERT_EQ_INT(info.n_ctx, 128); /* the pool, smaller than the training context */
    ASSERT_EQ_INT(info.n_vocab, 49152);
    ASSERT_EQ_STR(info.model_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    ASSERT(info.chat_kind != NULL);
    ASSERT_EQ_STR(info.chat_kind, "chatml");
    static int32_t toks[200];
    for (int i = 0; i < 200; i++)
        toks[i] = 100 + i;
    engine_request_t r;
    uint64_t id;
    engine_request_init(&r);
    r.tokens = toks;
    r.n_tokens = 128;
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_TOOLONG);
    ASSERT(strstr(err, "128") != NULL);
    r.n_tokens = 100;
    r.max_tokens = 29;
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_TOOLONG);
    ASSERT(strstr(err, "max_tokens") != NULL);
    r.max_tokens = 4;
    toks[5] = 49152;
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_RANGE);
    toks[5] = 105;
    r.sampling.temperature = 3.0f;
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_RANGE);
    ASSERT(strstr(err, "temperature") != NULL);
    r.sampling.temperature = 0.0f;
    r.n_tokens = 0;
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_INVALID);
    int32_t bad_stop[1] = { -1 };
    r.n_tokens = 10;
    r.stop_tokens = bad_stop;
    r.n_stop_tokens = 1;
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), ERR_RANGE);
    r.n_stop_tokens = 0;

    /* max_queue 2: one runs (max_seqs 1), two wait, the rest are refused at once */
    r.max_tokens = 100;
    r.ignore_eos = 1;
    uint64_t ids[6];
    int accepted = 0, refused = 0;
    for (int i = 0; i < 6; i++) {
        int rc = engine_submit(e, &r, &ids[accepted], err, sizeof err);
        if (rc == 0)
            accepted++;
        else {
            ASSERT_EQ_INT(rc, ERR_FULL);
            ASSERT(strstr(err, "max-queue") != NULL);
            refused++;
        }
    }
    ASSERT(accepted >= 2 && accepted <= 3);
    ASSERT_EQ_INT(accepted + refused, 6);
    for (int i = 0; i < accepted; i++)
        engine_cancel(e, ids[i]);
    int finishes = 0;
    while (finishes < accepted) {
        if (!engine_poll(e, &ev_buf)) {
            ASSERT(engine_wait(e, 30000));
            continue;
        }
        finishes += ev_buf.kind == ENGINE_EV_FINISH;
    }
    engine_stats_t st;
    settle(e, &st);
    ASSERT_EQ_INT(st.queued, 0);
    ASSERT_EQ_INT(engine_submit(e, &r, &id, err, sizeof err), 0); /* room again */
    engine_cancel(e, id);
    engine_destroy(e);
}

static int notified;
static void on_notify(void *ctx)
{
    (void)ctx;
    __atomic_add_fetch(&notified, 1, __ATOMIC_SEQ_CST);
}

TEST(events_carry_logprobs_and_the_engine_beats)
{
    const char *path = test_model_path();
    if (path == NULL)
        TEST_SKIP("default model not fetched (scripts/fetch-model)");
    char err[ERR_MSG_MAX];
    engine_t *e;
    engine_opts_t o = { .model_path = path, .chat_template = "auto", .backend = "cpu", .threads = 2,
                        .kv_bytes = 16ull << 20, .notify = on_notify };
    ASSERT_MSG(engine_create(&e, &o, err, sizeof err) == 0, "%s", err);
    engine_health_t h0, h1;
    engine_health(e, &h0);
    struct timespec ts = { 1, 300 * 1000000L };
    nanosleep(&ts, NULL);
    engine_health(e, &h1);
    ASSERT_MSG(h1.iterations > h0.iterations, "an idle engine must still beat");
    ASSERT(!h1.busy && !h1.failed);
    ASSERT(engine_now_ns() - h1.last_beat_ns < 1500000000ull);

    static job_t j[1];
    memset(j, 0, sizeof j);
    encode(e, "The three primary colors are", &j[0]);
    j[0].max_tokens = 5;
    j[0].n_logprobs = 3;
    ASSERT_EQ_INT(submit(e, &j[0]), 0);
    int tokens = 0;
    for (;;) {
        if (!engine_poll(e, &ev_buf)) {
            ASSERT(engine_wait(e, 30000));
            continue;
        }
        if (ev_buf.kind == ENGINE_EV_FINISH)
            break;
        tokens++;
        ASSERT_EQ_INT(ev_buf.n_top, 3);
        ASSERT_EQ_INT(ev_buf.top[0].id, ev_buf.token); /* greedy takes the most probable */
        ASSERT(ev_buf.top[0].logprob == ev_buf.logprob);
        ASSERT(ev_buf.top[0].logprob >= ev_buf.top[1].logprob && ev_buf.top[1].logprob >= ev_buf.top[2].logprob);
        ASSERT(ev_buf.logprob <= 0.0f);
        ASSERT_EQ_INT(ev_buf.text[ev_buf.text_len], '\0');
    }
    ASSERT(tokens >= 1);
    ASSERT(__atomic_load_n(&notified, __ATOMIC_SEQ_CST) > 0);
    ASSERT_EQ_STR(engine_finish_name(ENGINE_FINISH_LENGTH), "length");
    engine_destroy(e);
}

TEST(a_request_without_max_tokens_runs_to_the_context)
{
    static job_t j[1];
    engine_t *e = open_engine(2, 64, 8 * BLOCK_BYTES, 1, 8); /* n_ctx 128 */
    memset(j, 0, sizeof j);
    encode(e, "Count: one, two, three,", &j[0]);
    j[0].ignore_eos = 1;
    j[0].max_tokens = 0;
    /* collect at most MAXGEN tokens: make the prompt long enough that 128 - prompt <= MAXGEN */
    while (j[0].n_tok < 128 - MAXGEN) {
        j[0].tok[j[0].n_tok] = j[0].tok[j[0].n_tok - 5];
        j[0].n_tok++;
    }
    run_all(e, j, 1, 1);
    ASSERT_EQ_INT(j[0].fin.finish, ENGINE_FINISH_LENGTH);
    ASSERT_EQ_INT(j[0].fin.completion_tokens, 128 - j[0].n_tok);
    engine_destroy(e);
}

/* ---------------------------------------------------------------- the before/after golden */

/*
 * Greedy and seeded sampled outputs on a fixed prompt set, recorded once
 * from the code before a change (tests/ref/goldens/greedy-smollm2.json,
 * made by tests/ref/gen-greedy-goldens.sh, which runs this test with
 * LLAMAD_GOLDEN_WRITE set) and compared exactly after it: the same
 * prompt tokens, the same generated tokens, the same text, the same
 * finish.  The CPU backend's outputs; another backend may differ.
 */
#define GOLDEN_TOKENS 32
#define GOLDEN_SEED   4242
#define GOLDEN_TEMP   0.8f

typedef struct {
    const char *name;
    const char *system;         /* chat prompts: the system message, or NULL */
    const char *user;           /* chat prompts: the user message; NULL: `raw` is the prompt */
    const char *raw;
    int ignore_eos;
} golden_prompt_t;

static const golden_prompt_t golden_prompts[] = {
    { "short-raw", NULL, NULL, "Hello", 1 },
    { "question-raw", NULL, NULL, "Q: What is the capital of France?\nA:", 0 },
    { "long-raw", NULL, NULL,
      "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, a "
      "goldsmith from Mainz, combined movable metal type, an oil-based ink and a wooden screw press into "
      "a system that could produce books far faster than any scribe. Within fifty years presses were at "
      "work in more than two hundred cities across Europe, and millions of volumes had been printed. The "
      "consequences reached far beyond the workshop: scholars could compare identical copies of a text, "
      "errors could be corrected in later editions, and ideas travelled faster than ever before. Historians "
      "still argue about which of these effects mattered most, but almost all of them agree that", 1 },
    { "non-ascii-raw", NULL, NULL,
      "Le caf\xc3\xa9 co\xc3\xbbte 3 \xe2\x82\xac. \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e: "
      "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe4\xb8\x96\xe7\x95\x8c\xe3\x80\x82 "
      "\xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac \xf0\x9f\x98\x80 ->", 1 },
    { "code-raw", NULL, NULL, "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", 1 },
    { "chat-haiku", NULL, "Write a haiku about autumn leaves.", NULL, 0 },
    { "chat-system-non-ascii", "You are a translator. Answer in one line.",
      "Traduis \xc2\xab bonjour, \xc3\xa7" "a va ? \xc2\xbb en espagnol et en japonais.", NULL, 0 },
    { "chat-explain", "You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
      "Explain in two sentences why the sky is blue.", NULL, 1 },
};
#define N_GOLDEN (sizeof golden_prompts / sizeof golden_prompts[0])

/* The prompt's tokens: raw text as engine_generate encodes it, or the model's chat template. */
static void golden_encode(engine_t *e, const golden_prompt_t *g, job_t *j)
{
    if (g->user == NULL) {
        encode(e, g->raw, j);
        return;
    }
    engine_info_t info;
    engine_get_info(e, &info);
    ASSERT_MSG(info.chat_kind != NULL, "the default model has no chat template");
    engine_msg_t msgs[2];
    size_t n = 0;
    if (g->system != NULL)
        msgs[n++] = (engine_msg_t){ .role = "system", .content = g->system };
    msgs[n++] = (engine_msg_t){ .role = "user", .content = g->user };
    engine_prompt_t p = { .messages = msgs, .n_messages = n };
    int32_t *ids;
    size_t n_ids;
    char err[ERR_MSG_MAX];
    ASSERT_MSG(engine_encode_prompt(e, &p, &ids, &n_ids, err, sizeof err) == 0, "%s", err);
    ASSERT(n_ids <= 256);
    memcpy(j->tok, ids, n_ids * sizeof(int32_t));
    j->n_tok = n_ids;
    free(ids);
}

/* jobs[2 * i]: prompt i greedy; jobs[2 * i + 1]: prompt i sampled at GOLDEN_TEMP, seeded. */
static void golden_jobs(engine_t *e, job_t *jobs)
{
    memset(jobs, 0, 2 * N_GOLDEN * sizeof *jobs);
    for (size_t i = 0; i < N_GOLDEN; i++)
        for (int s = 0; s < 2; s++) {
            job_t *j = &jobs[2 * i + (size_t)s];
            golden_encode(e, &golden_prompts[i], j);
            j->max_tokens = GOLDEN_TOKENS;
            j->ignore_eos = golden_prompts[i].ignore_eos;
            if (s == 1) {
                j->temperature = GOLDEN_TEMP;
                j->seed = GOLDEN_SEED + i;
            }
        }
}

static cJSON *ids_json(const int32_t *ids, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

static void golden_write(const char *path, const job_t *jobs)
{
    cJSON *root = cJSON_CreateObject(), *cases = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "about", "llamad's outputs on a fixed prompt set, CPU backend; made by "
                            "tests/ref/gen-greedy-goldens.sh, checked by tests/unit/test_engine");
    cJSON_AddStringToObject(root, "model", "SmolLM2-135M-Instruct.Q4_1.gguf");
    cJSON_AddNumberToObject(root, "max_tokens", GOLDEN_TOKENS);
    for (size_t k = 0; k < 2 * N_GOLDEN; k++) {
        const job_t *j = &jobs[k];
        const golden_prompt_t *g = &golden_prompts[k / 2];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", g->name);
        cJSON_AddStringToObject(c, "mode", k % 2 ? "sampled" : "greedy");
        cJSON_AddNumberToObject(c, "temperature", j->temperature);
        cJSON_AddNumberToObject(c, "seed", (double)j->seed);
        cJSON_AddItemToObject(c, "prompt_tokens", ids_json(j->tok, j->n_tok));
        cJSON_AddItemToObject(c, "tokens", ids_json(j->out, j->n_out));
        cJSON_AddStringToObject(c, "text", j->text);
        cJSON_AddStringToObject(c, "finish", engine_finish_name(j->fin.finish));
        cJSON_AddItemToArray(cases, c);
    }
    cJSON_AddItemToObject(root, "cases", cases);
    char *s = cJSON_Print(root);
    FILE *f = fopen(path, "w");
    ASSERT_MSG(s != NULL && f != NULL, "cannot write %s", path);
    fprintf(f, "%s\n", s);
    ASSERT(fclose(f) == 0);
    free(s);
    cJSON_Delete(root);
    printf("  wrote %zu cases to %s\n", 2 * N_GOLDEN, path);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    ASSERT_MSG(f != NULL, "cannot open %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void same_ids(const cJSON *want, const int32_t *got, size_t n, const char *what, const char *name)
{
    ASSERT_MSG(cJSON_IsArray(want), "%s: %s missing from the golden", name, what);
    size_t nw = (size_t)cJSON_GetArraySize(want);
    for (size_t i = 0; i < nw && i < n; i++) {
        int32_t w = (int32_t)cJSON_GetArrayItem(want, (int)i)->valuedouble;
        ASSERT_MSG(w == got[i], "%s: %s[%zu] is %d, the golden says %d", name, what, i, got[i], w);
    }
    ASSERT_MSG(nw == n, "%s: %zu %s, the golden has %zu", name, n, what, nw);
}

TEST(outputs_equal_the_golden_of_the_code_before)
{
    static job_t jobs[2 * N_GOLDEN];
    engine_t *e = open_engine(2 * N_GOLDEN, 512, 0, 1, 64);
    golden_jobs(e, jobs);
    run_all(e, jobs, 2 * N_GOLDEN, 0);
    engine_destroy(e);
    const char *out = getenv("LLAMAD_GOLDEN_WRITE");
    if (out != NULL && *out != '\0') {
        golden_write(out, jobs);
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/ref/goldens/greedy-smollm2.json", test_srcdir());
    cJSON *root = cJSON_Parse(read_file(path));
    ASSERT_MSG(root != NULL, "%s: not JSON", path);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    ASSERT_EQ_INT(cJSON_GetArraySize(cases), 2 * N_GOLDEN);
    for (size_t k = 0; k < 2 * N_GOLDEN; k++) {
        const cJSON *c = cJSON_GetArrayItem(cases, (int)k);
        const job_t *j = &jobs[k];
        char name[128];
        snprintf(name, sizeof name, "%s (%s)", golden_prompts[k / 2].name, k % 2 ? "sampled" : "greedy");
        ASSERT_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(c, "name")), golden_prompts[k / 2].name);
        ASSERT_EQ_INT(j->finishes, 1);
        same_ids(cJSON_GetObjectItem(c, "prompt_tokens"), j->tok, j->n_tok, "prompt tokens", name);
        same_ids(cJSON_GetObjectItem(c, "tokens"), j->out, j->n_out, "generated tokens", name);
        ASSERT_EQ_STR(j->text, cJSON_GetStringValue(cJSON_GetObjectItem(c, "text")));
        ASSERT_EQ_STR(engine_finish_name(j->fin.finish), cJSON_GetStringValue(cJSON_GetObjectItem(c, "finish")));
    }
    cJSON_Delete(root);
}

/* ---------------------------------------------------------------- events that cannot be allocated */

/*
 * Run the golden's requests with token-event allocations failing
 * (LLAMAD_TEST_EVENT_FAULTS=fail:period) and collect what a client would
 * see: the text of every event, in order, and the finish.  Token events
 * may be missing, but never out of order.
 */
static void run_with_event_faults(const char *faults, job_t *jobs)
{
    if (faults != NULL)
        setenv("LLAMAD_TEST_EVENT_FAULTS", faults, 1);
    else
        unsetenv("LLAMAD_TEST_EVENT_FAULTS");
    engine_t *e = open_engine(2 * N_GOLDEN, 512, 0, 1, 64);
    golden_jobs(e, jobs);
    jobs[2].stop = "Paris"; /* question-raw, greedy: a stop string, and text held back for it */
    uint32_t next_index[2 * N_GOLDEN] = { 0 };
    size_t pending = 2 * N_GOLDEN;
    for (size_t i = 0; i < 2 * N_GOLDEN; i++)
        ASSERT_EQ_INT(submit(e, &jobs[i]), 0);
    while (pending > 0) {
        if (!engine_poll(e, &ev_buf)) {
            ASSERT_MSG(engine_wait(e, 60000), "%s: no event for 60 s; %zu requests have not finished",
                       faults ? faults : "no faults", pending);
            continue;
        }
        size_t k = 0;
        while (k < 2 * N_GOLDEN && jobs[k].id != ev_buf.id)
            k++;
        ASSERT_MSG(k < 2 * N_GOLDEN, "an event for unknown request %llu", (unsigned long long)ev_buf.id);
        job_t *j = &jobs[k];
        ASSERT_MSG(j->finishes == 0, "an event after the finish of request %llu", (unsigned long long)ev_buf.id);
        ASSERT(j->text_len + ev_buf.text_len < sizeof j->text);
        memcpy(j->text + j->text_len, ev_buf.text, ev_buf.text_len);
        j->text_len += ev_buf.text_len;
        j->text[j->text_len] = '\0';
        if (ev_buf.kind == ENGINE_EV_TOKEN) {
            ASSERT(ev_buf.index >= next_index[k]);
            next_index[k] = ev_buf.index + 1;
            j->n_out++;
        } else {
            j->finishes++;
            j->fin = ev_buf;
            pending--;
        }
    }
    engine_destroy(e);
}

TEST(no_text_and_no_finish_is_lost_when_events_cannot_be_allocated)
{
    static job_t ref[2 * N_GOLDEN], got[2 * N_GOLDEN];
    run_with_event_faults(NULL, ref);
    const char *faults[] = { "2:3", "1:1" }; /* two of every three token events fail; all fail */
    for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
        run_with_event_faults(faults[f], got);
        for (size_t k = 0; k < 2 * N_GOLDEN; k++) {
            ASSERT_EQ_INT(got[k].finishes, 1);
            ASSERT_MSG(strcmp(got[k].text, ref[k].text) == 0, "%s, request %zu: \"%s\" vs \"%s\" without faults",
                       faults[f], k, got[k].text, ref[k].text);
            ASSERT_EQ_INT(got[k].fin.finish, ref[k].fin.finish);
            ASSERT_EQ_INT(got[k].fin.completion_tokens, ref[k].fin.completion_tokens);
            ASSERT(got[k].n_out < ref[k].n_out || ref[k].n_out == 0);
        }
    }
}

/*
 * Issue 16's KV test for several choices, as the server serves them (one
 * submission of n choices, seed + i, the prompt computed once and its
 * blocks forked, the partial last one copied on write): 32 requests with n=4 over 8 prompts, a third of them
 * cancelled midway, under a pool small enough to preempt.  Every choice
 * not cancelled equals its run alone with the same seed, a cancelled one
 * is a prefix of it; afterwards no block is in use and none was freed twice.
 */
#define NC_REQ 32
#define NC_N 4
#define NC_PROMPTS 8

static void choices_job(engine_t *e, int prompt, int choice, job_t *j)
{
    char text[1024];
    memset(j, 0, sizeof *j);
    snprintf(text, sizeof text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
             "trained by Hugging Face. Answer briefly and precisely.<|im_end|>\n<|im_start|>user\n"
             "%s<|im_end|>\n<|im_start|>assistant\n", questions[prompt]);
    encode(e, text, j);
    j->max_tokens = 6;
    j->ignore_eos = 1;
    j->temperature = 0.9f;
    j->seed = 500 + (uint64_t)(prompt % 4) + (uint64_t)choice;   /* the request's seed + i */
}

TEST(n_choices_share_prompts_cancel_and_preempt_without_leaks)
{
    static job_t ref[NC_PROMPTS * NC_N], got[NC_REQ * NC_N];
    engine_stats_t st;

    engine_t *e = open_engine(1, 512, 64ull << 20, 0, 64);
    for (int p = 0; p < NC_PROMPTS; p++)
        for (int c = 0; c < NC_N; c++)
            choices_job(e, p, c, &ref[p * NC_N + c]);
    run_all(e, ref, NC_PROMPTS * NC_N, 1);
    engine_destroy(e);

    /* 12 blocks (192 tokens) for 128 sequences of ~45 tokens: preemption */
    e = open_engine(16, 64, 12 * BLOCK_BYTES, 1, 256);
    for (int r = 0; r < NC_REQ; r++)
        for (int c = 0; c < NC_N; c++)
            choices_job(e, r % NC_PROMPTS, c, &got[r * NC_N + c]);
    for (int r = 0; r < NC_REQ; r++)   /* each request's n choices in one submission */
        ASSERT_EQ_INT(submit_choices(e, &got[r * NC_N], NC_N), 0);
    size_t pending = NC_REQ * NC_N, seen = 0;
    int cancelled = 0;
    while (pending > 0) {
        if (!engine_poll(e, &ev_buf)) {
            ASSERT_MSG(engine_wait(e, 30000), "no event for 30 s");
            continue;
        }
        pending -= (size_t)route(got, NC_REQ * NC_N, &ev_buf);
        if (++seen == 60 && !cancelled) {   /* midway: every choice of a third of the requests */
            cancelled = 1;
            for (int r = 2; r < NC_REQ; r += 3)
                for (int c = 0; c < NC_N; c++)
                    ASSERT_EQ_INT(engine_cancel(e, got[r * NC_N + c].id), 0);
        }
    }
    int n_cancelled = 0;
    for (int r = 0; r < NC_REQ; r++) {
        for (int c = 0; c < NC_N; c++) {
            const job_t *g = &got[r * NC_N + c], *w = &ref[(r % NC_PROMPTS) * NC_N + c];
            ASSERT_EQ_INT(g->finishes, 1);
            if (g->fin.finish == ENGINE_FINISH_CANCELLED) {
                ASSERT_MSG(r % 3 == 2, "request %d choice %d cancelled", r, c);
                n_cancelled++;
            } else {
                ASSERT_EQ_INT(g->n_out, w->n_out);
            }
            ASSERT_MSG(g->n_out <= w->n_out && memcmp(g->out, w->out, g->n_out * sizeof(int32_t)) == 0,
                       "request %d choice %d differs from its run alone: \"%s\" vs \"%s\"", r, c,
                       g->text, w->text);
        }
    }
    settle(e, &st);
    printf("  info: %d choices cancelled, %llu preemptions, %llu prefix-cache hits\n", n_cancelled,
           (unsigned long long)st.preemptions, (unsigned long long)st.prefix_cache_hits);
    ASSERT(n_cancelled > 0);
    ASSERT_MSG(st.preemptions > 0, "no preemption happened");
    ASSERT(st.prefix_cache_hits > 0);
    ASSERT_EQ_INT(st.blocks_used, 0);
    ASSERT_EQ_INT(st.blocks_free, st.blocks_total);
    ASSERT_EQ_INT(st.kv_double_frees, 0);
    engine_destroy(e);
}

/* gpu-device: indexes and nvidia-smi UUIDs parse, anything else is refused
 * whatever the backend; without CUDA (this build or this host) auto is the CPU. */
TEST(gpu_device_parses_indexes_and_uuids_and_refuses_the_rest)
{
    int idx;
    const char *uuid;
    static const char good_uuid[] = "GPU-5f3c1a2b-0c4d-4e5f-8a9b-0123456789AB";
    ASSERT_EQ_INT(registry_parse_device(NULL, &idx, &uuid), 0);
    ASSERT(idx == 0 && uuid == NULL);
    ASSERT_EQ_INT(registry_parse_device("", &idx, &uuid), 0);
    ASSERT_EQ_INT(idx, 0);
    ASSERT_EQ_INT(registry_parse_device("3", &idx, &uuid), 0);
    ASSERT(idx == 3 && uuid == NULL);
    ASSERT_EQ_INT(registry_parse_device("4095", &idx, &uuid), 0);
    ASSERT_EQ_INT(idx, 4095);
    ASSERT_EQ_INT(registry_parse_device(good_uuid, &idx, &uuid), 0);
    ASSERT(idx == -1 && uuid == good_uuid);
    static const char *const bad[] = {
        "-1", "4096", "99999", "1x", " 1", "0x1", "gpu-5f3c1a2b-0c4d-4e5f-8a9b-0123456789ab",
        "GPU-5f3c1a2b-0c4d-4e5f-8a9b-0123456789a", "GPU-5f3c1a2b-0c4d-4e5f-8a9b-0123456789abc",
        "GPU-5f3c1a2b0c4d-4e5f-8a9b-0123456789abc", "GPU-5f3c1a2g-0c4d-4e5f-8a9b-0123456789ab",
        "MIG-5f3c1a2b-0c4d-4e5f-8a9b-0123456789ab", "GPU-",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_MSG(registry_parse_device(bad[i], &idx, &uuid) == ERR_INVALID, "accepted \"%s\"", bad[i]);

    const char *chosen = NULL;
    int dev = -5;
    char desc[256], err[256];
    ASSERT_EQ_INT(registry_pick_device("cpu", "nonsense", &chosen, &dev, desc, sizeof desc, err, sizeof err),
                  ERR_INVALID);
    ASSERT(strstr(err, "gpu-device") != NULL);
    ASSERT_EQ_INT(registry_pick_device("cpu", "7", &chosen, &dev, desc, sizeof desc, err, sizeof err), 0);
    ASSERT_EQ_STR(chosen, "cpu");
    ASSERT_EQ_INT(registry_pick_device("bogus", "0", &chosen, &dev, desc, sizeof desc, err, sizeof err),
                  ERR_INVALID);
    if (registry_has_cuda())
        return; /* a host with a device would pick it: the GPU tests cover that */
    ASSERT_EQ_INT(registry_pick_device("auto", good_uuid, &chosen, &dev, desc, sizeof desc, err, sizeof err), 0);
    ASSERT_EQ_STR(chosen, "cpu");
    ASSERT_EQ_INT(dev, 0);
    ASSERT_EQ_INT(registry_pick_device("cuda", "0", &chosen, &dev, desc, sizeof desc, err, sizeof err),
                  ERR_UNSUPPORTED);
}

/*
 * n = 4 choices of one prompt compute it once: the engine's prefill count
 * is the prompt's length, not four times it, with the prefix cache off (so
 * nothing is shared but by the fork) and on.  Each choice equals its run
 * alone; the blocks are all free after.
 */
TEST(n_choices_compute_the_prompt_once)
{
    static job_t ref[NC_N], got[NC_N];
    engine_stats_t st;
    for (int prefix = 0; prefix < 2; prefix++) {
        engine_t *e = open_engine(8, 512, 64ull << 20, prefix, 64);
        for (int c = 0; c < NC_N; c++)
            choices_job(e, 5, c, &ref[c]);
        ASSERT_MSG(ref[0].n_tok % 16 != 0, "the prompt (%zu tokens) ends in a partial block", ref[0].n_tok);
        run_all(e, ref, NC_N, 1);
        engine_destroy(e);

        e = open_engine(8, 512, 64ull << 20, prefix, 64);
        for (int c = 0; c < NC_N; c++)
            choices_job(e, 5, c, &got[c]);
        ASSERT_EQ_INT(submit_choices(e, got, NC_N), 0);
        drain(e, got, NC_N, NC_N);
        settle(e, &st);
        ASSERT_EQ_INT(st.prompt_tokens_computed, got[0].n_tok);
        ASSERT_EQ_INT(st.tokens_computed, got[0].n_tok + NC_N * (got[0].max_tokens - 1));
        for (int c = 0; c < NC_N; c++) {
            ASSERT_EQ_INT(got[c].finishes, 1);
            ASSERT_EQ_INT(got[c].fin.prompt_tokens, got[0].n_tok);
            ASSERT_EQ_INT(got[c].n_out, ref[c].n_out);
            ASSERT_MSG(memcmp(got[c].out, ref[c].out, got[c].n_out * sizeof(int32_t)) == 0,
                       "choice %d differs from its run alone: \"%s\" vs \"%s\"", c, got[c].text, ref[c].text);
        }
        ASSERT_EQ_INT(st.blocks_used, 0);
        ASSERT_EQ_INT(st.kv_double_frees, 0);
        engine_destroy(e);
    }
}

/* ---------------------------------------------------------------- speculative decoding */

/* Extractive prompts: the answer repeats the prompt's text, so prompt lookup proposes well. */
static const char *extracts[] = {
    "<|im_start|>user\nRepeat this sentence exactly: The quick brown fox jumps over the lazy dog "
    "while the farmer watches from the old wooden fence.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nCopy this list: apples, pears, plums, cherries, grapes, lemons, limes, "
    "oranges, peaches, apricots.<|im_end|>\n<|im_start|>assistant\n",
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3,",
};
#define NX 4

static void make_extract_jobs(engine_t *e, job_t *jobs)
{
    memset(jobs, 0, NX * sizeof *jobs);
    for (int i = 0; i < NX; i++) {
        encode(e, extracts[i], &jobs[i]);
        jobs[i].max_tokens = 28;
        jobs[i].ignore_eos = i >= 2;
    }
}

static void same_jobs(const job_t *ref, const job_t *got, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        ASSERT_EQ_INT(got[i].finishes, 1);
        ASSERT_MSG(got[i].n_out == ref[i].n_out && memcmp(got[i].out, ref[i].out, ref[i].n_out * sizeof(int32_t)) == 0,
                   "%s: request %d differs (%u vs %u tokens): \"%s\" vs \"%s\"", what, i, got[i].n_out,
                   ref[i].n_out, got[i].text, ref[i].text);
        ASSERT_EQ_STR(got[i].text, ref[i].text);
        ASSERT_EQ_INT(got[i].fin.finish, ref[i].fin.finish);
        ASSERT_EQ_INT(got[i].fin.completion_tokens, ref[i].fin.completion_tokens);
    }
}

/*
 * Greedy outputs are the same with speculation as without (alone, with the mixed load of
 * make_jobs running beside, in a pool small enough to preempt, and under a 7-token budget),
 * sampled and penalised ones beside them are untouched, and drafts were accepted (on the
 * extractive prompts): the comparison is not vacuous.
 */
TEST(speculative_greedy_outputs_equal_plain_decoding)
{
    static job_t ref[NQ], got[NQ + NX], xref[NX], xgot[NX];
    engine_stats_t st;
    open_spec_tokens = 0;
    engine_t *e = open_engine(16, 512, 64ull << 20, 0, 64);
    make_jobs(e, ref);
    make_extract_jobs(e, xref);
    run_all(e, ref, NQ, 0);
    run_all(e, xref, NX, 0);
    settle(e, &st);
    ASSERT_EQ_U64(st.spec_draft_tokens, 0);
    engine_destroy(e);

    open_spec_tokens = 4;
    e = open_engine(16, 512, 64ull << 20, 1, 64);
    make_extract_jobs(e, xgot);
    run_all(e, xgot, NX, 1);
    same_jobs(xref, xgot, NX, "speculative, alone");
    settle(e, &st);
    printf("  info: extractive, alone: %llu of %llu drafts accepted, %llu tokens in %llu steps\n",
           (unsigned long long)st.spec_accepted_tokens, (unsigned long long)st.spec_draft_tokens,
           (unsigned long long)st.tokens_generated, (unsigned long long)st.steps);
    ASSERT(st.spec_accepted_tokens > 0);
    ASSERT(st.spec_accepted_tokens <= st.spec_draft_tokens);
    ASSERT_EQ_INT(st.blocks_used, 0);
    /* a request may refuse it: nothing drafted */
    uint64_t drafted = st.spec_draft_tokens;
    xgot[0].speculative = -1;
    run_all(e, xgot, 1, 1);
    same_jobs(xref, xgot, 1, "speculative off for the request");
    settle(e, &st);
    ASSERT_EQ_U64(st.spec_draft_tokens, drafted);
    xgot[0].speculative = 0;

    /* the mixed load beside: every output as without speculation */
    make_jobs(e, got);
    make_extract_jobs(e, got + NQ);
    run_all(e, got, NQ + NX, 0);
    same_outputs(ref, got, "speculative beside");
    same_jobs(xref, got + NQ, NX, "speculative, beside the others");
    settle(e, &st);
    ASSERT_EQ_INT(st.blocks_used, 0);
    engine_destroy(e);

    /* preemption (a 10-block pool) and chunking (7 tokens a step) */
    const uint32_t seqs[2] = { 4, 4 }, budget[2] = { 512, 7 };
    const uint64_t kv[2] = { 10 * BLOCK_BYTES, 64ull << 20 };
    for (int c = 0; c < 2; c++) {
        e = open_engine(seqs[c], budget[c], kv[c], 0, 64);
        make_extract_jobs(e, xgot);
        run_all(e, xgot, NX, 0);
        same_jobs(xref, xgot, NX, c == 0 ? "speculative, tiny pool" : "speculative, chunked");
        settle(e, &st);
        printf("  info: %s: %llu of %llu drafts accepted, %llu preemptions\n", c == 0 ? "tiny pool" : "chunked",
               (unsigned long long)st.spec_accepted_tokens, (unsigned long long)st.spec_draft_tokens,
               (unsigned long long)st.preemptions);
        ASSERT_EQ_INT(st.blocks_used, 0);
        ASSERT_EQ_U64(st.kv_double_frees, 0);
        engine_destroy(e);
    }
    open_spec_tokens = 0;
}

/*
 * Sampled requests: every draw is sampler_uniform(seed, index), so verifying a draft by
 * drawing the row's token as a one-token step would and keeping the draft while it is the
 * token drawn gives each seed the very tokens of plain sampling (the standard acceptance
 * rule for a certain proposal: accepted with probability p(x), else a draw from p without
 * x).  So the check is per seed, stronger than a distribution test: 16 seeds, with
 * penalties, logprobs and min_tokens among them, identical with and without, and drafts
 * accepted.
 */
#define NS 16
TEST(speculative_sampled_outputs_equal_plain_sampling)
{
    static job_t ref[NS], got[NS];
    engine_stats_t st;
    job_t *sets[2] = { ref, got };
    for (int on = 0; on < 2; on++) {
        open_spec_tokens = on ? 4 : 0;
        engine_t *e = open_engine(NS, 512, 256ull << 20, 1, 64);
        job_t *j = sets[on];
        memset(j, 0, NS * sizeof *j);
        for (int i = 0; i < NS; i++) {
            encode(e, extracts[i % NX], &j[i]);
            j[i].max_tokens = 16;
            j[i].ignore_eos = 1;
            j[i].temperature = i % 2 ? 0.5f : 1.0f;
            j[i].seed = 7000 + (uint64_t)i;
            j[i].repetition_penalty = i % 5 == 0 ? 1.2f : 0.0f;
            j[i].n_logprobs = i % 7 == 0 ? 3 : 0;
            j[i].min_tokens = i % 6 == 0 ? 10 : 0;
        }
        run_all(e, j, NS, 0);
        settle(e, &st);
        if (on) {
            printf("  info: sampled: %llu of %llu drafts accepted\n", (unsigned long long)st.spec_accepted_tokens,
                   (unsigned long long)st.spec_draft_tokens);
            ASSERT(st.spec_accepted_tokens > 0);
        } else {
            ASSERT_EQ_U64(st.spec_draft_tokens, 0);
        }
        ASSERT_EQ_INT(st.blocks_used, 0);
        engine_destroy(e);
    }
    open_spec_tokens = 0;
    same_jobs(ref, got, NS, "speculative, sampled");
    for (int i = 0; i < NS; i++)
        ASSERT_EQ_INT(got[i].n_out, 16);
}

/*
 * cpu-precision = fast through the whole engine (and so under the sanitizers with it): a
 * request's tokens do not depend on what runs beside it, on the step budget or on
 * speculation.  References: the extractive and sampled requests one at a time, 512-token
 * steps, no speculation; then all at once, 7-token steps (chunked prefill beside decodes),
 * speculating 4 tokens.  Fast really ran: the kernels say so, and drafts were accepted.
 */
TEST(fast_precision_outputs_do_not_depend_on_the_batch_or_speculation)
{
    static job_t ref[NX + 4], got[NX + 4];
    job_t *sets[2] = { ref, got };
    engine_stats_t st;
    open_precision = "fast";
    for (int on = 0; on < 2; on++) {
        open_spec_tokens = on ? 4 : 0;
        engine_t *e = open_engine(8, on ? 7 : 512, 64ull << 20, on, 64);
        ASSERT_EQ_INT(cpu_matmul_precision(), CPU_PREC_FAST);
        job_t *j = sets[on];
        make_extract_jobs(e, j);
        for (int i = NX; i < NX + 4; i++) {
            memset(&j[i], 0, sizeof j[i]);
            encode(e, extracts[i - NX], &j[i]);
            j[i].max_tokens = 12;
            j[i].ignore_eos = 1;
            j[i].temperature = 0.8f;
            j[i].seed = 99 + (uint64_t)i;
        }
        run_all(e, j, NX + 4, !on);
        settle(e, &st);
        if (on) {
            printf("  info: fast, speculative, 7-token steps: %llu of %llu drafts accepted\n",
                   (unsigned long long)st.spec_accepted_tokens, (unsigned long long)st.spec_draft_tokens);
            ASSERT(st.spec_accepted_tokens > 0);
        }
        ASSERT_EQ_INT(st.blocks_used, 0);
        engine_destroy(e);
    }
    open_precision = "exact";
    open_spec_tokens = 0;
    same_jobs(ref, got, NX + 4, "fast precision, batched and speculative");
}

TEST_LIST(T(stop_scan_finds_the_earliest_and_holds_back_prefixes), T(min_tokens_masks_the_end_and_the_stop_strings),
          T(stop_tokens_and_include_stop_str), T(stop_strings_match_across_token_boundaries),
          T(stop_set_rejects_bad_strings), T(outputs_under_load_preemption_and_chunking_equal_outputs_alone),
          T(prefix_cache_skips_prefill_and_changes_nothing), T(stop_string_cuts_the_text_and_never_leaks),
          T(cancel_ends_requests_anywhere_exactly_once), T(submit_checks_limits_and_the_queue),
          T(events_carry_logprobs_and_the_engine_beats), T(a_request_without_max_tokens_runs_to_the_context),
          T(outputs_equal_the_golden_of_the_code_before),
          T(no_text_and_no_finish_is_lost_when_events_cannot_be_allocated),
          T(n_choices_share_prompts_cancel_and_preempt_without_leaks), T(n_choices_compute_the_prompt_once),
          T(speculative_greedy_outputs_equal_plain_decoding),
          T(speculative_sampled_outputs_equal_plain_sampling),
          T(fast_precision_outputs_do_not_depend_on_the_batch_or_speculation),
          T(gpu_device_parses_indexes_and_uuids_and_refuses_the_rest))
