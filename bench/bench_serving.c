/*
 * bench_serving.c - the serving benchmark: drives the engine (engine.h),
 * as the server's loop thread would, with a closed loop of N concurrent
 * requests of given prompt and output lengths, and reports time to first
 * token, inter-token latency (median and p99) and aggregate output
 * tokens per second.
 *
 *   bench-serving [--model PATH] [--concurrency 1,4,16,64] [--prompt 64]
 *                 [--gen 32] [--requests-per-client 2] [--runs 3]
 *                 [--threads 0] [--kv-memory-mb 256] [--max-batch-tokens 512]
 *                 [--max-seqs 64] [--shared-prefix 0] [--no-prefix-cache]
 *                 [--compare-prefix-cache] [--backend auto|cpu|cuda]
 *                 [--cuda-graphs auto|on|off]
 *
 * Prompts are random token ids (the speed does not depend on their
 * meaning); every request generates exactly --gen tokens (end-of-text
 * is ignored).  With --shared-prefix N every prompt starts with the same
 * N tokens (a system prompt) and one request is run first, unmeasured, to
 * put it in the cache as a server in use would have it.  Each
 * concurrency level runs --runs times on a fresh engine; the medians
 * across runs are printed.  --compare-prefix-cache runs every level with
 * the prefix cache on and off in alternation (so that both see the same
 * machine load) and prints a row for each.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/engine.h"
#include "bench.h"

typedef struct {
    const char *model;
    uint32_t conc[16];
    int n_conc;
    uint32_t prompt, gen, per_client, runs, max_batch, max_seqs, shared;
    int threads, no_prefix, compare;
    const char *backend;    /* auto, cpu, cuda */
    int graphs;             /* CUDA graphs: 1 on, -1 off, 0 the build's default */
    uint64_t kv_mb;
} args_t;

typedef struct {
    uint64_t id;
    uint64_t t_submit, t_last;
    int got_first;
    int done;
} slot_t;

typedef struct {
    double ttft_p50, ttft_p99, itl_p50, itl_p99, tok_s, tokens_per_step;
    uint64_t preemptions, cache_tokens;
} result_t;

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* The q-quantile (nearest rank) of v[0..n), sorted in place. */
static double quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, bench_cmp_double);
    size_t k = (size_t)(q * (double)n + 0.999999);
    if (k == 0)
        k = 1;
    return v[(k > n ? n : k) - 1];
}

/* The shared prefix, then random ids (the speed does not depend on them). */
static void make_prompt(const args_t *a, const int32_t *prefix, int32_t *tok)
{
    for (uint32_t i = 0; i < a->prompt; i++)
        tok[i] = i < a->shared ? prefix[i] : (int32_t)(200 + rnd(40000));
}

static int submit_one(engine_t *e, const args_t *a, const int32_t *prefix, int32_t *tok, uint64_t *id)
{
    char err[ERR_MSG_MAX];
    engine_request_t r;
    make_prompt(a, prefix, tok);
    engine_request_init(&r);
    r.tokens = tok;
    r.n_tokens = a->prompt;
    r.sampling.temperature = 0.0f;
    r.max_tokens = a->gen;
    r.ignore_eos = 1;
    int rc = engine_submit(e, &r, id, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "bench_serving: submit: %s\n", err);
    return rc;
}

/* One run at concurrency c: c clients, each sending per_client requests back to back. */
static int run_level(const args_t *a, uint32_t c, result_t *res)
{
    char err[ERR_MSG_MAX];
    engine_t *e;
    engine_opts_t o = { 0 };
    o.model_path = a->model;
    o.chat_template = "auto";
    o.backend = a->backend;
    o.cuda_graphs = a->graphs;
    o.threads = a->threads;
    o.kv_bytes = a->kv_mb << 20;
    o.max_batch_tokens = a->max_batch;
    o.max_seqs = a->max_seqs;
    o.max_queue = 100000;
    o.no_prefix_cache = a->no_prefix;
    if (engine_create(&e, &o, err, sizeof err) != 0) {
        fprintf(stderr, "bench_serving: %s\n", err);
        return 1;
    }
    uint32_t total = c * a->per_client;
    int32_t *tok = malloc(a->prompt * sizeof *tok), *prefix = malloc((a->shared + 1) * sizeof *prefix);
    slot_t *slots = calloc(c, sizeof *slots);
    double *ttft = malloc(total * sizeof *ttft);
    double *itl = malloc((size_t)total * a->gen * sizeof *itl);
    engine_event_t *ev = malloc(sizeof *ev);
    if (!tok || !prefix || !slots || !ttft || !itl || !ev) {
        fprintf(stderr, "bench_serving: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < a->shared; i++)
        prefix[i] = (int32_t)(200 + rnd(40000));

    if (a->shared > 0) { /* warm the cache with the shared prefix, unmeasured */
        uint64_t id;
        if (submit_one(e, a, prefix, tok, &id) != 0)
            return 1;
        for (;;) {
            if (!engine_poll(e, ev)) {
                engine_wait(e, -1);
                continue;
            }
            if (ev->kind == ENGINE_EV_FINISH)
                break;
        }
    }
    engine_stats_t s0, s1;
    engine_get_stats(e, &s0);

    size_t n_ttft = 0, n_itl = 0;
    uint32_t sent = 0, finished = 0;
    uint64_t generated = 0, t0 = engine_now_ns();
    for (uint32_t i = 0; i < c; i++) {
        slots[i].t_submit = engine_now_ns();
        if (submit_one(e, a, prefix, tok, &slots[i].id) != 0)
            return 1;
        sent++;
    }
    while (finished < total) {
        if (!engine_poll(e, ev)) {
            engine_wait(e, -1);
            continue;
        }
        uint64_t now = engine_now_ns();
        uint32_t i = 0;
        while (i < c && slots[i].id != ev->id)
            i++;
        if (i == c)
            continue;
        slot_t *s = &slots[i];
        if (ev->kind == ENGINE_EV_TOKEN) {
            generated++;
            if (!s->got_first) {
                s->got_first = 1;
                ttft[n_ttft++] = (now - s->t_submit) * 1e-6;
            } else {
                itl[n_itl++] = (now - s->t_last) * 1e-6;
            }
            s->t_last = now;
            continue;
        }
        if (ev->finish != ENGINE_FINISH_LENGTH)
            fprintf(stderr, "bench_serving: a request ended with %s %s\n", engine_finish_name(ev->finish),
                    ev->message);
        finished++;
        if (sent < total) { /* this client sends its next request */
            s->got_first = 0;
            s->t_submit = engine_now_ns();
            if (submit_one(e, a, prefix, tok, &s->id) != 0)
                return 1;
            sent++;
        } else {
            s->id = 0;
        }
    }
    uint64_t t1 = engine_now_ns();
    engine_get_stats(e, &s1);
    res->ttft_p50 = quantile(ttft, n_ttft, 0.5);
    res->ttft_p99 = quantile(ttft, n_ttft, 0.99);
    res->itl_p50 = quantile(itl, n_itl, 0.5);
    res->itl_p99 = quantile(itl, n_itl, 0.99);
    res->tok_s = generated / ((t1 - t0) * 1e-9);
    res->tokens_per_step = s1.steps > s0.steps ? (double)(s1.tokens_computed - s0.tokens_computed) /
                                                 (double)(s1.steps - s0.steps) : 0.0;
    res->preemptions = s1.preemptions - s0.preemptions;
    res->cache_tokens = s1.prefix_cache_tokens - s0.prefix_cache_tokens;
    free(tok);
    free(prefix);
    free(slots);
    free(ttft);
    free(itl);
    free(ev);
    engine_destroy(e);
    return 0;
}

static double median_of(result_t *r, uint32_t n, size_t off)
{
    double v[64];
    for (uint32_t i = 0; i < n; i++)
        v[i] = *(double *)((char *)&r[i] + off);
    return quantile(v, n, 0.5);
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > 1000000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    args_t a = { .model = "models/SmolLM2-135M-Instruct.Q4_1.gguf", .conc = { 1, 4, 16, 64 }, .n_conc = 4,
                 .prompt = 64, .gen = 32, .per_client = 2, .runs = 3, .max_batch = 512, .max_seqs = 64,
                 .kv_mb = 256, .backend = "auto" };
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint32_t n = 0;
        int bad = 0;
        if (strcmp(k, "--no-prefix-cache") == 0) {
            a.no_prefix = 1;
            continue;
        }
        if (strcmp(k, "--compare-prefix-cache") == 0) {
            a.compare = 1;
            continue;
        }
        if (v == NULL) {
            bad = 1;
        } else if (strcmp(k, "--model") == 0) {
            a.model = v;
        } else if (strcmp(k, "--backend") == 0) {
            a.backend = v;
        } else if (strcmp(k, "--cuda-graphs") == 0) {
            a.graphs = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? -1 : 0;
            bad = strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "auto");
        } else if (strcmp(k, "--concurrency") == 0) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            a.n_conc = 0;
            for (char *t = strtok(buf, ","); t && a.n_conc < 16; t = strtok(NULL, ","))
                bad |= parse_u32(t, &a.conc[a.n_conc++]) != 0 || a.conc[a.n_conc - 1] == 0;
        } else if (parse_u32(v, &n) != 0) {
            bad = 1;
        } else if (strcmp(k, "--prompt") == 0) {
            a.prompt = n;
        } else if (strcmp(k, "--gen") == 0) {
            a.gen = n;
        } else if (strcmp(k, "--requests-per-client") == 0) {
            a.per_client = n;
        } else if (strcmp(k, "--runs") == 0) {
            a.runs = n > 0 && n <= 64 ? n : 3;
        } else if (strcmp(k, "--threads") == 0) {
            a.threads = (int)n;
        } else if (strcmp(k, "--kv-memory-mb") == 0) {
            a.kv_mb = n;
        } else if (strcmp(k, "--max-batch-tokens") == 0) {
            a.max_batch = n;
        } else if (strcmp(k, "--max-seqs") == 0) {
            a.max_seqs = n;
        } else if (strcmp(k, "--shared-prefix") == 0) {
            a.shared = n;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "bench_serving: bad option %s (see the comment at the top of bench_serving.c)\n", k);
            return 2;
        }
        i++;
    }
    if (a.prompt == 0 || a.gen == 0 || a.per_client == 0 || a.shared > a.prompt) {
        fprintf(stderr, "bench_serving: --prompt, --gen and --requests-per-client must be > 0, "
                        "--shared-prefix <= --prompt\n");
        return 2;
    }
    printf("model %s; backend %s, CUDA graphs %s; prompt %u tokens (%u shared), %u generated, "
           "%u requests per client, prefix cache %s, budget %u tokens, max-seqs %u; median of %u runs\n",
           a.model, a.backend, a.graphs > 0 ? "on" : a.graphs < 0 ? "off" : "auto", a.prompt, a.shared, a.gen,
           a.per_client, a.compare ? "on and off in turn" : a.no_prefix ? "off" : "on", a.max_batch, a.max_seqs,
           a.runs);
    printf("%6s %6s %10s %10s %9s %9s %10s %8s %8s %10s\n", "conc", "cache", "ttft_p50", "ttft_p99", "itl_p50",
           "itl_p99", "out_tok/s", "tok/step", "preempt", "cached");
    for (int ci = 0; ci < a.n_conc; ci++) {
        static result_t r[2][64];
        int modes = a.compare ? 2 : 1;
        for (uint32_t k = 0; k < a.runs; k++) {
            for (int m = 0; m < modes; m++) {
                args_t b = a;
                if (a.compare)
                    b.no_prefix = m;
                if (run_level(&b, a.conc[ci], &r[m][k]) != 0)
                    return 1;
            }
        }
        for (int m = 0; m < modes; m++) {
            result_t *x = r[m];
            printf("%6u %6s %8.1fms %8.1fms %7.1fms %7.1fms %10.1f %8.1f %8llu %10llu\n", a.conc[ci],
                   (a.compare ? m : a.no_prefix) ? "off" : "on",
                   median_of(x, a.runs, offsetof(result_t, ttft_p50)),
                   median_of(x, a.runs, offsetof(result_t, ttft_p99)),
                   median_of(x, a.runs, offsetof(result_t, itl_p50)),
                   median_of(x, a.runs, offsetof(result_t, itl_p99)),
                   median_of(x, a.runs, offsetof(result_t, tok_s)),
                   median_of(x, a.runs, offsetof(result_t, tokens_per_step)),
                   (unsigned long long)x[0].preemptions, (unsigned long long)x[0].cache_tokens);
        }
        fflush(stdout);
    }
    return 0;
}
