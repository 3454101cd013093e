/*
 * refuse.c - GGUF keys that change the computation and that llamad does
 * not implement (see refuse.h).
 *
 * The table lists keys as the GGUF specification and llama.cpp's
 * architecture key list name them, after "<arch>.".  What llamad does
 * implement is read in model.c and not listed here: grouped-query
 * attention (head_count_kv), key_length other than
 * embedding_length / head_count (every weight shape and the attention
 * use head_dim), partial rotary (rope.dimension_count), the LLaMA-3
 * frequency divisors (the rope_freqs tensor).  Keys that only describe the
 * model (rope.scaling.original_context_length, rope.scaling.finetuned,
 * pooling_type for embedding use) are accepted.
 */
#include "refuse.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"

/* The value that leaves the LLaMA computation unchanged. */
typedef enum {
    NEUTRAL_ZERO,        /* 0 or false: feature off */
    NEUTRAL_ONE,         /* 1: no scaling */
    NEUTRAL_ZERO_OR_ONE, /* llama.cpp reads 0 as 1 (rope scale factors, split.count) */
    NEUTRAL_TRUE,        /* true */
    NEUTRAL_ABSENT,      /* any value means the feature is used */
} neutral_t;

typedef struct {
    const char *key;    /* after "llama.", or the whole key when `global` */
    int global;
    neutral_t neutral;
    const char *what;   /* "llamad does not implement <what>" */
} refused_key_t;

static const refused_key_t refused[] = {
    { "attention.sliding_window", 0, NEUTRAL_ZERO, "sliding-window attention" },
    { "attention.sliding_window_pattern", 0, NEUTRAL_ABSENT, "sliding-window attention" },
    { "expert_count", 0, NEUTRAL_ZERO, "mixture-of-experts layers" },
    { "expert_used_count", 0, NEUTRAL_ZERO, "mixture-of-experts layers" },
    { "expert_shared_count", 0, NEUTRAL_ZERO, "mixture-of-experts layers" },
    { "expert_feed_forward_length", 0, NEUTRAL_ZERO, "mixture-of-experts layers" },
    { "expert_weights_scale", 0, NEUTRAL_ABSENT, "mixture-of-experts layers" },
    { "leading_dense_block_count", 0, NEUTRAL_ZERO, "mixture-of-experts layers" },
    { "interleave_moe_layer_step", 0, NEUTRAL_ZERO, "mixture-of-experts layers" },
    { "attention.max_alibi_bias", 0, NEUTRAL_ZERO, "ALiBi attention biases" },
    { "attention.clamp_kqv", 0, NEUTRAL_ZERO, "clamping of Q, K and V" },
    { "attention.layer_norm_epsilon", 0, NEUTRAL_ABSENT,
      "LayerNorm (it normalises with RMSNorm only)" },
    { "attention.causal", 0, NEUTRAL_TRUE, "non-causal attention" },
    { "attention.scale", 0, NEUTRAL_ZERO, "an attention scale other than 1/sqrt(head_dim)" },
    { "attention.q_lora_rank", 0, NEUTRAL_ZERO, "low-rank (MLA) attention" },
    { "attention.kv_lora_rank", 0, NEUTRAL_ZERO, "low-rank (MLA) attention" },
    { "attn_logit_softcapping", 0, NEUTRAL_ZERO, "attention logit soft-capping" },
    { "final_logit_softcapping", 0, NEUTRAL_ZERO, "final logit soft-capping" },
    { "logit_scale", 0, NEUTRAL_ONE, "logit scaling" },
    { "embedding_scale", 0, NEUTRAL_ONE, "embedding scaling" },
    { "residual_scale", 0, NEUTRAL_ONE, "residual scaling" },
    { "use_parallel_residual", 0, NEUTRAL_ZERO, "parallel residual blocks" },
    { "rope.scale_linear", 0, NEUTRAL_ZERO_OR_ONE, "linear RoPE scaling" },
    { "rope.scaling.factor", 0, NEUTRAL_ZERO_OR_ONE, "RoPE scaling by a factor" },
    { "rope.scaling.attn_factor", 0, NEUTRAL_ONE, "RoPE attention-factor scaling" },
    { "rope.scaling.yarn_log_multiplier", 0, NEUTRAL_ABSENT, "YaRN RoPE scaling" },
    { "rope.dimension_sections", 0, NEUTRAL_ABSENT, "sectioned (multimodal) RoPE" },
    { "ssm.state_size", 0, NEUTRAL_ABSENT, "state-space layers" },
    { "ssm.conv_kernel", 0, NEUTRAL_ABSENT, "state-space layers" },
    { "split.count", 1, NEUTRAL_ZERO_OR_ONE, "models split over several GGUF files" },
};

static int is_integer_type(gguf_vtype_t t)
{
    return t == GGUF_T_UINT8 || t == GGUF_T_INT8 || t == GGUF_T_UINT16 || t == GGUF_T_INT16 ||
           t == GGUF_T_UINT32 || t == GGUF_T_INT32 || t == GGUF_T_UINT64 || t == GGUF_T_INT64;
}

/* A key's value as a number; -1 when it is not a number or a boolean. */
static int number_of(const gguf_t *g, const char *key, gguf_vtype_t type, double *v)
{
    uint64_t u;
    int32_t i;
    float f;
    int b;
    if (type == GGUF_T_BOOL && gguf_get_bool(g, key, &b, NULL, 0) == 0)
        *v = b;
    else if ((type == GGUF_T_FLOAT32 || type == GGUF_T_FLOAT64) &&
             gguf_get_f32(g, key, &f, NULL, 0) == 0)
        *v = f;
    else if (is_integer_type(type) && gguf_get_u64(g, key, &u, NULL, 0) == 0)
        *v = (double)u;
    else if (is_integer_type(type) && gguf_get_i32(g, key, &i, NULL, 0) == 0)
        *v = i;
    else
        return -1;
    return isfinite(*v) ? 0 : -1;
}

static int is_neutral(const gguf_t *g, const char *key, gguf_vtype_t type, neutral_t neutral)
{
    double v;
    if (neutral == NEUTRAL_ABSENT || number_of(g, key, type, &v) != 0)
        return 0;
    switch (neutral) {
    case NEUTRAL_ZERO:        return v == 0.0;
    case NEUTRAL_ONE:         return v == 1.0;
    case NEUTRAL_ZERO_OR_ONE: return v == 0.0 || v == 1.0;
    case NEUTRAL_TRUE:        return type == GGUF_T_BOOL && v == 1.0;
    default:                  return 0;
    }
}

static int refuse(const gguf_t *g, int64_t idx, const char *key, const char *what,
                  char *err, size_t errlen)
{
    char val[96];
    gguf_kv_format(g, (uint64_t)idx, val, sizeof val);
    return err_set(err, errlen, ERR_UNSUPPORTED, "%s: %s = %s: llamad does not implement %s",
                   gguf_path(g), key, val, what);
}

int refuse_gguf_keys(const gguf_t *g, const hparams_t *hp, char *err, size_t errlen)
{
    /* RoPE scalings: only the LLaMA-3 divisors (a tensor, no type key) are implemented. */
    const char *st_key = "llama.rope.scaling.type";
    int64_t idx = gguf_find(g, st_key);
    gguf_str_t s;
    if (idx >= 0 && (gguf_get_str(g, st_key, &s, NULL, 0) != 0 ||
                     !(s.len == 4 && memcmp(s.ptr, "none", 4) == 0)))
        return refuse(g, idx, st_key, "this RoPE scaling (only none, and LLaMA-3's "
                      "rope_freqs tensor)", err, errlen);

    char key[128];
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        const refused_key_t *r = &refused[k];
        snprintf(key, sizeof key, "%s%s", r->global ? "" : "llama.", r->key);
        idx = gguf_find(g, key);
        if (idx < 0)
            continue;
        if (!is_neutral(g, key, gguf_kv_type(g, (uint64_t)idx), r->neutral))
            return refuse(g, idx, key, r->what, err, errlen);
    }

    /* Values must be as wide as keys: the attention output is [n_head * head_dim]. */
    const char *vl_key = "llama.attention.value_length";
    uint32_t vl;
    idx = gguf_find(g, vl_key);
    if (idx >= 0 && (gguf_get_u32(g, vl_key, &vl, NULL, 0) != 0 || vl != hp->head_dim)) {
        char what[96];
        snprintf(what, sizeof what, "value heads of another width than key heads (%u)",
                 hp->head_dim);
        return refuse(g, idx, vl_key, what, err, errlen);
    }
    return 0;
}
