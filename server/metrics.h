/*
 * metrics.h - the daemon's Prometheus metrics: request counters by route
 * and status, cancellations by phase, latency histograms, and the
 * engine's gauges and counters rendered in the text exposition format
 * (optionally also under vLLM's metric names).  Loop thread only.
 */
#ifndef LLAMAD_METRICS_H
#define LLAMAD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

typedef struct metrics metrics_t;

typedef enum {
    METRIC_DURATION = 0,    /* llamad_request_duration_seconds: arrival to last byte queued */
    METRIC_TTFT,            /* llamad_time_to_first_token_seconds */
    METRIC_ITL,             /* llamad_inter_token_latency_seconds */
    METRIC_QUEUE,           /* llamad_request_queue_seconds */
    METRIC_STEP,            /* llamad_engine_step_seconds */
    METRIC_TPOT,            /* llamad_time_per_output_token_seconds (metrics_finished feeds it) */
    METRIC_N_HIST
} metric_hist_t;

/* Returns 0 or ERR_NOMEM; *out is NULL on error. */
int metrics_create(metrics_t **out);
void metrics_destroy(metrics_t *m);

/* Count one answered request.  `route` must be a string that lives as long as m. */
void metrics_request(metrics_t *m, const char *route, unsigned code);
/* Count one request cancelled by its client: phase "queued", "prefill" or "decode". */
void metrics_cancelled(metrics_t *m, const char *phase);
void metrics_observe(metrics_t *m, metric_hist_t h, double seconds);
/* Usage of one finished request. */
void metrics_usage(metrics_t *m, uint32_t prompt_tokens, uint32_t completion_tokens,
                   uint32_t cached_tokens);

/*
 * One request that ran to its end (finish ENGINE_FINISH_STOP or _LENGTH;
 * others are ignored): counts it by finish reason (vLLM's
 * request_success_total), records its prompt and generated token counts
 * (the request_prompt_tokens / request_generation_tokens histograms) and,
 * with two tokens or more, its mean time per output token: decode_seconds
 * (first token to last) over completion_tokens - 1.
 */
void metrics_finished(metrics_t *m, engine_finish_t finish, uint32_t prompt_tokens,
                      uint32_t completion_tokens, double decode_seconds);

/*
 * Count one request decoded under a constraint (response_format with a
 * schema, a grammar, a regex: llamad_requests_constrained_total, counted
 * when the request is accepted), and one answered with tool calls
 * (finish_reason "tool_calls": llamad_requests_tool_calls_total, counted
 * when its answer is complete).  Loop thread, as the rest.
 */
void metrics_constrained(metrics_t *m);
void metrics_tool_calls(metrics_t *m);

/*
 * Feed the engine-step histogram from a statistics snapshot: the busy time
 * and step count since the previous snapshot give the mean step time,
 * recorded once per step.
 */
void metrics_engine_sample(metrics_t *m, const engine_stats_t *st);

/*
 * The exposition text (malloc'd, NUL-terminated; NULL when out of memory).
 * st may be NULL while the model loads (the engine series are omitted).
 */
char *metrics_render(metrics_t *m, const engine_stats_t *st, const char *model_name,
                     const char *backend, int vllm_names);

#endif
