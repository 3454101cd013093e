/*
 * metrics.c - counters and histograms kept on the loop thread, rendered
 * in the Prometheus text format (version 0.0.4).
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Upper bounds (seconds) shared by every time histogram; +Inf is implied. */
static const double bucket_le[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1, 2.5, 5, 10, 20, 40, 80, 160, 320 };
#define N_BUCKETS (sizeof bucket_le / sizeof bucket_le[0])

/* Upper bounds (tokens) of the token-count histograms (vLLM's 1-2-5 steps). */
static const double token_le[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                   10000, 20000, 50000, 100000, 200000, 500000 };
_Static_assert(sizeof token_le == sizeof bucket_le, "hist_t holds N_BUCKETS + 1 counts");

typedef struct {
    uint64_t counts[N_BUCKETS + 1]; /* per bucket, not cumulative; last is +Inf */
    uint64_t n;
    double sum;
} hist_t;

typedef struct {
    const char *route;
    unsigned code;
    uint64_t n;
} req_count_t;

#define MAX_REQ_SERIES 128

struct metrics {
    req_count_t req[MAX_REQ_SERIES];
    size_t n_req;
    uint64_t cancelled[3];          /* queued, prefill, decode */
    hist_t hist[METRIC_N_HIST];
    uint64_t prompt_tokens, generation_tokens, cache_queries, cache_hits;
    hist_t prompt_len, gen_len;     /* tokens per finished request: token_le */
    uint64_t success[2];            /* finished requests: stop, length */
    uint64_t constrained, tool_calls;
    uint64_t last_steps;            /* engine snapshot of the previous sample */
    double last_busy;
};

static const char *const phase_names[3] = { "queued", "prefill", "decode" };

int metrics_create(metrics_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : ERR_NOMEM;
}

void metrics_destroy(metrics_t *m)
{
    free(m);
}

void metrics_request(metrics_t *m, const char *route, unsigned code)
{
    for (size_t i = 0; i < m->n_req; i++) {
        if (m->req[i].code == code && strcmp(m->req[i].route, route) == 0) {
            m->req[i].n++;
            return;
        }
    }
    if (m->n_req < MAX_REQ_SERIES)
        m->req[m->n_req++] = (req_count_t){ route, code, 1 };
}

void metrics_cancelled(metrics_t *m, const char *phase)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(phase, phase_names[i]) == 0)
            m->cancelled[i]++;
}

static void hist_add_le(hist_t *h, const double *le, double v, uint64_t times)
{
    size_t b = 0;
    while (b < N_BUCKETS && v > le[b])
        b++;
    h->counts[b] += times;
    h->n += times;
    h->sum += v * (double)times;
}

static void hist_add(hist_t *h, double v, uint64_t times)
{
    hist_add_le(h, bucket_le, v, times);
}

void metrics_observe(metrics_t *m, metric_hist_t h, double seconds)
{
    if (h >= 0 && h < METRIC_N_HIST && seconds >= 0)
        hist_add(&m->hist[h], seconds, 1);
}

void metrics_usage(metrics_t *m, uint32_t prompt_tokens, uint32_t completion_tokens,
                   uint32_t cached_tokens)
{
    m->prompt_tokens += prompt_tokens;
    m->generation_tokens += completion_tokens;
    m->cache_queries += prompt_tokens;
    m->cache_hits += cached_tokens;
}

void metrics_finished(metrics_t *m, engine_finish_t finish, uint32_t prompt_tokens,
                      uint32_t completion_tokens, double decode_seconds)
{
    if (finish != ENGINE_FINISH_STOP && finish != ENGINE_FINISH_LENGTH)
        return;
    m->success[finish == ENGINE_FINISH_LENGTH]++;
    hist_add_le(&m->prompt_len, token_le, prompt_tokens, 1);
    hist_add_le(&m->gen_len, token_le, completion_tokens, 1);
    if (completion_tokens >= 2 && decode_seconds >= 0)
        hist_add(&m->hist[METRIC_TPOT], decode_seconds / (completion_tokens - 1), 1);
}

void metrics_constrained(metrics_t *m)
{
    m->constrained++;
}

void metrics_tool_calls(metrics_t *m)
{
    m->tool_calls++;
}

void metrics_engine_sample(metrics_t *m, const engine_stats_t *st)
{
    if (st->steps > m->last_steps) {
        uint64_t dn = st->steps - m->last_steps;
        double dt = st->busy_seconds - m->last_busy;
        if (dt >= 0)
            hist_add(&m->hist[METRIC_STEP], dt / (double)dn, dn);
    }
    m->last_steps = st->steps;
    m->last_busy = st->busy_seconds;
}

/* ---------------------------------------------------------------- rendering */

/* A label value with \\, " and newlines escaped, as the text format requires. */
static void put_label_value(FILE *f, const char *v)
{
    for (; v != NULL && *v; v++) {
        if (*v == '\\' || *v == '"') {
            fputc('\\', f);
            fputc(*v, f);
        } else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

static void put_hist_le(FILE *f, const char *name, const char *help, const hist_t *h,
                        const double *le, const char *labels)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        cum += h->counts[b];
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "",
                le[b], (unsigned long long)cum);
    }
    cum += h->counts[N_BUCKETS];
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "",
            (unsigned long long)cum);
    const char *open = *labels ? "{" : "", *close = *labels ? "}" : "";
    fprintf(f, "%s_sum%s%s%s %.9g\n%s_count%s%s%s %llu\n", name, open, labels, close, h->sum,
            name, open, labels, close, (unsigned long long)h->n);
}

static void put_hist(FILE *f, const char *name, const char *help, const hist_t *h,
                     const char *labels)
{
    put_hist_le(f, name, help, h, bucket_le, labels);
}

static void put_scalar(FILE *f, const char *name, const char *type, const char *help,
                       const char *labels, double v)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    if (*labels)
        fprintf(f, "%s{%s} %.17g\n", name, labels, v);
    else
        fprintf(f, "%s %.17g\n", name, v);
}

static const char *const hist_names[METRIC_N_HIST][3] = {
    { "llamad_request_duration_seconds", "vllm:e2e_request_latency_seconds",
      "Time from a request's arrival to its last byte." },
    { "llamad_time_to_first_token_seconds", "vllm:time_to_first_token_seconds",
      "Time from a request's arrival to its first generated token." },
    { "llamad_inter_token_latency_seconds", "vllm:inter_token_latency_seconds",
      "Time between consecutive generated tokens of one request." },
    { "llamad_request_queue_seconds", "vllm:request_queue_time_seconds",
      "Time from a request's arrival to its hand-over to the engine." },
    { "llamad_engine_step_seconds", NULL,
      "Mean duration of the engine's forward steps, one observation per step." },
    { "llamad_time_per_output_token_seconds", "vllm:time_per_output_token_seconds",
      "Mean time per generated token after the first, one observation per finished request." },
};

static const char *const prompt_len_help = "Prompt tokens of each finished request.";
static const char *const gen_len_help = "Generated tokens of each finished request.";

char *metrics_render(metrics_t *m, const engine_stats_t *st, const char *model_name,
                     const char *backend, int vllm_names)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return NULL;

    fputs("# HELP llamad_info The model and backend being served.\n# TYPE llamad_info gauge\n"
          "llamad_info{model=\"", f);
    put_label_value(f, model_name);
    fputs("\",backend=\"", f);
    put_label_value(f, backend);
    fputs("\"} 1\n", f);
    fprintf(f, "# HELP llamad_requests_total HTTP requests answered, by route and status.\n"
               "# TYPE llamad_requests_total counter\n");
    for (size_t i = 0; i < m->n_req; i++)
        fprintf(f, "llamad_requests_total{route=\"%s\",code=\"%u\"} %llu\n", m->req[i].route,
                m->req[i].code, (unsigned long long)m->req[i].n);
    fprintf(f, "# HELP llamad_requests_cancelled_total Requests whose client went away, by phase.\n"
               "# TYPE llamad_requests_cancelled_total counter\n");
    for (int i = 0; i < 3; i++)
        fprintf(f, "llamad_requests_cancelled_total{phase=\"%s\"} %llu\n", phase_names[i],
                (unsigned long long)m->cancelled[i]);
    for (int h = 0; h < METRIC_N_HIST; h++)
        put_hist(f, hist_names[h][0], hist_names[h][2], &m->hist[h], "");

    put_scalar(f, "llamad_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
               "", (double)m->prompt_tokens);
    put_scalar(f, "llamad_generation_tokens_total", "counter", "Tokens generated for finished requests.",
               "", (double)m->generation_tokens);
    put_scalar(f, "llamad_prefix_cache_queries_total", "counter",
               "Prompt tokens looked up in the prefix cache.", "", (double)m->cache_queries);
    put_scalar(f, "llamad_prefix_cache_hits_total", "counter",
               "Prompt tokens found in the prefix cache.", "", (double)m->cache_hits);
    put_hist_le(f, "llamad_request_prompt_tokens", prompt_len_help, &m->prompt_len, token_le, "");
    put_hist_le(f, "llamad_request_generation_tokens", gen_len_help, &m->gen_len, token_le, "");
    fprintf(f, "# HELP llamad_requests_finished_total Requests that ran to their end, by finish reason.\n"
               "# TYPE llamad_requests_finished_total counter\n"
               "llamad_requests_finished_total{finished_reason=\"stop\"} %llu\n"
               "llamad_requests_finished_total{finished_reason=\"length\"} %llu\n",
            (unsigned long long)m->success[0], (unsigned long long)m->success[1]);
    put_scalar(f, "llamad_requests_constrained_total", "counter",
               "Requests decoded under a constraint (schema, grammar, regex).", "",
               (double)m->constrained);
    put_scalar(f, "llamad_requests_tool_calls_total", "counter",
               "Requests answered with tool calls.", "", (double)m->tool_calls);
    if (st != NULL) {
        put_scalar(f, "llamad_preemptions_total", "counter",
                   "Sequences preempted (KV blocks freed, recomputed later).", "",
                   (double)st->preemptions);
        put_scalar(f, "llamad_prompt_tokens_computed_total", "counter",
                   "Prompt tokens run through the forward pass (a prompt of several choices "
                   "once; recomputation after preemption included).", "",
                   (double)st->prompt_tokens_computed);
        put_scalar(f, "llamad_spec_draft_tokens_total", "counter",
                   "Speculative decoding: proposed tokens verified.", "", (double)st->spec_draft_tokens);
        put_scalar(f, "llamad_spec_accepted_tokens_total", "counter",
                   "Speculative decoding: proposed tokens accepted.", "",
                   (double)st->spec_accepted_tokens);
        put_scalar(f, "llamad_kv_double_frees_total", "counter",
                   "Releases of a KV block nobody held: a bug if not 0.", "", (double)st->kv_double_frees);
        put_scalar(f, "llamad_requests_running", "gauge", "Sequences generating.", "", st->running);
        put_scalar(f, "llamad_requests_waiting", "gauge", "Requests waiting to be scheduled.", "",
                   st->waiting);
        put_scalar(f, "llamad_kv_blocks_used", "gauge", "KV cache blocks held by sequences.", "",
                   st->blocks_used);
        put_scalar(f, "llamad_kv_blocks", "gauge", "KV cache blocks in the pool.", "",
                   st->blocks_total);
    }

    if (vllm_names) {
        char *lab = NULL;
        size_t lab_len = 0;
        FILE *lf = open_memstream(&lab, &lab_len);
        if (lf == NULL) {
            fclose(f);
            free(text);
            return NULL;
        }
        fputs("model_name=\"", lf);
        put_label_value(lf, model_name);
        fputc('"', lf);
        fclose(lf);
        for (int h = 0; h < METRIC_N_HIST; h++)
            if (hist_names[h][1] != NULL)
                put_hist(f, hist_names[h][1], hist_names[h][2], &m->hist[h], lab);
        put_scalar(f, "vllm:prompt_tokens_total", "counter", "Prompt tokens.", lab,
                   (double)m->prompt_tokens);
        put_scalar(f, "vllm:generation_tokens_total", "counter", "Generated tokens.", lab,
                   (double)m->generation_tokens);
        put_scalar(f, "vllm:prefix_cache_queries_total", "counter", "Prefix cache queries (tokens).",
                   lab, (double)m->cache_queries);
        put_scalar(f, "vllm:prefix_cache_hits_total", "counter", "Prefix cache hits (tokens).",
                   lab, (double)m->cache_hits);
        put_hist_le(f, "vllm:request_prompt_tokens", prompt_len_help, &m->prompt_len, token_le, lab);
        put_hist_le(f, "vllm:request_generation_tokens", gen_len_help, &m->gen_len, token_le, lab);
        fprintf(f, "# HELP vllm:request_success_total Finished requests, by finish reason.\n"
                   "# TYPE vllm:request_success_total counter\n");
        for (int r = 0; r < 2; r++) {
            fprintf(f, "vllm:request_success_total{%s,finished_reason=\"%s\"} %llu\n", lab,
                    r ? "length" : "stop", (unsigned long long)m->success[r]);
        }
        if (st != NULL) {
            put_scalar(f, "vllm:num_requests_running", "gauge", "Requests running.", lab, st->running);
            put_scalar(f, "vllm:num_requests_waiting", "gauge", "Requests waiting.", lab, st->waiting);
            double usage = st->blocks_total ? (double)st->blocks_used / st->blocks_total : 0.0;
            put_scalar(f, "vllm:kv_cache_usage_perc", "gauge", "KV cache usage (1 = full).", lab,
                       usage);
            put_scalar(f, "vllm:gpu_cache_usage_perc", "gauge",
                       "KV cache usage (1 = full), the older name of kv_cache_usage_perc.", lab, usage);
            put_scalar(f, "vllm:cpu_cache_usage_perc", "gauge",
                       "CPU swap space usage: always 0 (llamad recomputes, never swaps).", lab, 0.0);
            put_scalar(f, "vllm:num_requests_swapped", "gauge",
                       "Requests swapped to CPU memory: always 0 (llamad recomputes).", lab, 0.0);
            put_scalar(f, "vllm:num_preemptions_total", "counter", "Preemptions.", lab,
                       (double)st->preemptions);
            put_scalar(f, "vllm:spec_decode_num_draft_tokens_total", "counter",
                       "Speculative decoding: draft tokens.", lab, (double)st->spec_draft_tokens);
            put_scalar(f, "vllm:spec_decode_num_accepted_tokens_total", "counter",
                       "Speculative decoding: accepted tokens.", lab, (double)st->spec_accepted_tokens);
        }
        free(lab);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
