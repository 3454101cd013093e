/* Unit tests for server/metrics.c: the Prometheus text the daemon exports. */
#include "test.h"

#include "../../server/metrics.h"

/* The value of the sample whose name-and-labels part is exactly `series`, or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

TEST(request_counters)
{
    metrics_t *m;
    ASSERT_EQ_INT(metrics_create(&m), 0);
    metrics_request(m, "/v1/completions", 200);
    metrics_request(m, "/v1/completions", 200);
    metrics_request(m, "/v1/completions", 400);
    metrics_request(m, "/health", 200);
    metrics_cancelled(m, "decode");
    char *t = metrics_render(m, NULL, NULL, NULL, 0);
    ASSERT(t != NULL);
    ASSERT_NEAR(sample(t, "llamad_requests_total{route=\"/v1/completions\",code=\"200\"}"), 2, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_total{route=\"/v1/completions\",code=\"400\"}"), 1, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_total{route=\"/health\",code=\"200\"}"), 1, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_cancelled_total{phase=\"decode\"}"), 1, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_cancelled_total{phase=\"queued\"}"), 0, 0);
    /* no engine yet: no gauges */
    ASSERT(strstr(t, "llamad_requests_running") == NULL);
    free(t);
    metrics_destroy(m);
}

TEST(histogram_is_cumulative)
{
    metrics_t *m;
    ASSERT_EQ_INT(metrics_create(&m), 0);
    const double v[] = { 0.0005, 0.003, 0.003, 0.2, 7.0, 1000.0 };
    double sum = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        metrics_observe(m, METRIC_TTFT, v[i]);
        sum += v[i];
    }
    char *t = metrics_render(m, NULL, NULL, NULL, 0);
    ASSERT(t != NULL);
    /* counted by hand: le is an inclusive upper bound */
    ASSERT_NEAR(sample(t, "llamad_time_to_first_token_seconds_bucket{le=\"0.001\"}"), 1, 0);
    ASSERT_NEAR(sample(t, "llamad_time_to_first_token_seconds_bucket{le=\"0.005\"}"), 3, 0);
    ASSERT_NEAR(sample(t, "llamad_time_to_first_token_seconds_bucket{le=\"0.25\"}"), 4, 0);
    ASSERT_NEAR(sample(t, "llamad_time_to_first_token_seconds_bucket{le=\"10\"}"), 5, 0);
    ASSERT_NEAR(sample(t, "llamad_time_to_first_token_seconds_bucket{le=\"+Inf\"}"), 6, 0);
    ASSERT_NEAR(sample(t, "llamad_time_to_first_token_seconds_count"), 6, 0);
    ASSERT_NEAR(sample(t, "llamad_time_to_first_token_seconds_sum"), sum, 1e-6);
    ASSERT_NEAR(sample(t, "llamad_request_duration_seconds_count"), 0, 0);
    free(t);
    metrics_destroy(m);
}

TEST(engine_series_and_vllm_names)
{
    metrics_t *m;
    ASSERT_EQ_INT(metrics_create(&m), 0);
    engine_stats_t st;
    memset(&st, 0, sizeof st);
    st.running = 3;
    st.waiting = 2;
    st.blocks_used = 25;
    st.blocks_total = 100;
    st.preemptions = 4;
    st.kv_double_frees = 2;
    st.steps = 10;
    st.busy_seconds = 0.5;            /* 10 steps of 50 ms on average */
    metrics_engine_sample(m, &st);
    metrics_usage(m, 30, 7, 16);
    char *t = metrics_render(m, &st, "tiny.gguf", "cpu", 1);
    ASSERT(t != NULL);
    ASSERT_NEAR(sample(t, "llamad_requests_running"), 3, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_waiting"), 2, 0);
    ASSERT_NEAR(sample(t, "llamad_kv_blocks_used"), 25, 0);
    ASSERT_NEAR(sample(t, "llamad_kv_blocks"), 100, 0);
    ASSERT(strstr(t, "llamad_kv_blocks_total") == NULL);   /* a gauge: no counter suffix */
    ASSERT_NEAR(sample(t, "llamad_preemptions_total"), 4, 0);
    ASSERT_NEAR(sample(t, "llamad_kv_double_frees_total"), 2, 0);
    ASSERT_NEAR(sample(t, "llamad_prompt_tokens_total"), 30, 0);
    ASSERT_NEAR(sample(t, "llamad_generation_tokens_total"), 7, 0);
    ASSERT_NEAR(sample(t, "llamad_prefix_cache_hits_total"), 16, 0);
    ASSERT_NEAR(sample(t, "llamad_engine_step_seconds_count"), 10, 0);
    ASSERT_NEAR(sample(t, "llamad_engine_step_seconds_bucket{le=\"0.025\"}"), 0, 0);
    ASSERT_NEAR(sample(t, "llamad_engine_step_seconds_bucket{le=\"0.05\"}"), 10, 0);
    ASSERT_NEAR(sample(t, "vllm:num_requests_running{model_name=\"tiny.gguf\"}"), 3, 0);
    ASSERT_NEAR(sample(t, "vllm:kv_cache_usage_perc{model_name=\"tiny.gguf\"}"), 0.25, 1e-9);
    ASSERT_NEAR(sample(t, "vllm:generation_tokens_total{model_name=\"tiny.gguf\"}"), 7, 0);
    ASSERT(strstr(t, "llamad_info{model=\"tiny.gguf\",backend=\"cpu\"} 1") != NULL);
    free(t);
    t = metrics_render(m, &st, "tiny.gguf", "cpu", 0);
    ASSERT(strstr(t, "vllm:") == NULL);
    free(t);
    metrics_destroy(m);
}

TEST(finished_requests_and_dashboard_names)
{
    metrics_t *m;
    ASSERT_EQ_INT(metrics_create(&m), 0);
    engine_stats_t st;
    memset(&st, 0, sizeof st);
    st.blocks_used = 10;
    st.blocks_total = 40;
    metrics_finished(m, ENGINE_FINISH_STOP, 12, 5, 0.4);      /* 0.1 s per token after the first */
    metrics_finished(m, ENGINE_FINISH_LENGTH, 300, 1, 0.0);   /* one token: no TPOT */
    metrics_finished(m, ENGINE_FINISH_CANCELLED, 7, 3, 1.0);  /* not a success: ignored */
    metrics_finished(m, ENGINE_FINISH_ERROR, 7, 3, 1.0);
    metrics_constrained(m);
    metrics_constrained(m);
    metrics_tool_calls(m);
    char *t = metrics_render(m, &st, "alias", "cpu", 1);
    ASSERT(t != NULL);
    const char *lab = "{model_name=\"alias\",";
    char key[160];
    snprintf(key, sizeof key, "vllm:request_success_total%sfinished_reason=\"stop\"}", lab);
    ASSERT_NEAR(sample(t, key), 1, 0);
    snprintf(key, sizeof key, "vllm:request_success_total%sfinished_reason=\"length\"}", lab);
    ASSERT_NEAR(sample(t, key), 1, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_finished_total{finished_reason=\"stop\"}"), 1, 0);
    snprintf(key, sizeof key, "vllm:request_prompt_tokens_bucket%sle=\"20\"}", lab);
    ASSERT_NEAR(sample(t, key), 1, 0);
    snprintf(key, sizeof key, "vllm:request_prompt_tokens_bucket%sle=\"500\"}", lab);
    ASSERT_NEAR(sample(t, key), 2, 0);
    ASSERT_NEAR(sample(t, "vllm:request_prompt_tokens_sum{model_name=\"alias\"}"), 312, 0);
    ASSERT_NEAR(sample(t, "llamad_request_generation_tokens_bucket{le=\"1\"}"), 1, 0);
    ASSERT_NEAR(sample(t, "llamad_request_generation_tokens_count"), 2, 0);
    ASSERT_NEAR(sample(t, "vllm:time_per_output_token_seconds_count{model_name=\"alias\"}"), 1, 0);
    ASSERT_NEAR(sample(t, "llamad_time_per_output_token_seconds_sum"), 0.1, 1e-9);
    ASSERT_NEAR(sample(t, "vllm:gpu_cache_usage_perc{model_name=\"alias\"}"), 0.25, 1e-9);
    ASSERT_NEAR(sample(t, "vllm:kv_cache_usage_perc{model_name=\"alias\"}"), 0.25, 1e-9);
    ASSERT_NEAR(sample(t, "vllm:num_requests_swapped{model_name=\"alias\"}"), 0, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_constrained_total"), 2, 0);
    ASSERT_NEAR(sample(t, "llamad_requests_tool_calls_total"), 1, 0);
    free(t);
    metrics_destroy(m);
}

TEST_LIST(T(request_counters), T(histogram_is_cumulative), T(engine_series_and_vllm_names),
          T(finished_requests_and_dashboard_names))
