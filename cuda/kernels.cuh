// kernels.cuh - launchers of the CUDA backend's kernels (host side), each
// defined in its operation's file beside its kernel (embed.cu, rmsnorm.cu,
// rope_kv.cu, swiglu.cu, poison.cu, argmax.cu, attention.cu,
// attention_prefill.cu).  Each takes the stream and enqueues; errors
// surface at the caller's cudaGetLastError check.
#pragma once

#include "common.cuh"
#include "att_split.h"

struct rope_dims_t {
    uint32_t n_head, n_kv, head_dim, rope_dim, block_tokens;
    int interleaved;
};

// `t` (CUDA_R_16BF or CUDA_R_16F) is the format of the w16_t arrays:
// what embed reads, what add_rmsnorm and swiglu write.
void launch_embed(cudaStream_t s, cudaDataType t, const int32_t *tokens, const w16_t *emb, float *x, uint32_t n,
                  uint32_t d);
void launch_add_rmsnorm(cudaStream_t s, cudaDataType t, float *x, const float *add, const int32_t *rows,
                        const float *g, w16_t *y, uint32_t n_rows, uint32_t d, float eps);
void launch_rope_kv(cudaStream_t s, const float *qkv, float *q, bf16 *kc, bf16 *vc, const int32_t *pos,
                    const int32_t *tok_seq, const int32_t *seq_table_off, const int32_t *tables,
                    const double *inv_freq, uint32_t n_tokens, rope_dims_t dm);
void launch_swiglu(cudaStream_t s, cudaDataType t, const float *gu, w16_t *out, uint32_t n_tokens, uint32_t ff);
void launch_poison(cudaStream_t s, void *p, uint64_t bytes);

// One logit row's greedy choice (the layout of engine/backend.h's bk_argmax_t).
struct argmax_out_t {
    int32_t token;      // the largest logit's lowest id (+inf as FLT_MAX); -1: a NaN, or only -inf
    float logprob;      // its log-softmax at temperature 1
};

// out[r] for each row r < n_rows of logits [n_rows, V] f32 (sampler.c's greedy rule).
void launch_argmax(cudaStream_t s, const float *logits, uint32_t n_rows, uint32_t V, argmax_out_t *out);

struct attn_args_t {
    const float *q;             // [n_tokens, n_head * hd]
    const bf16 *kc, *vc;        // this layer's cache [n_blocks, n_kv, B, hd]
    w16_t *out;                 // [n_tokens, n_head * hd] in out_type
    float *work;                // partials [n_tokens, n_head, n_splits, hd + 2]
    const int32_t *pos, *tok_seq, *seq_table_off, *tables;
    const int32_t *tok_list;    // [n_tokens] the batch tokens this launch serves (split kernel)
    uint32_t n_tokens, n_head, n_kv, head_dim, block_tokens;
    uint32_t split_len, n_splits;   // keys per split (0: per token), splits per token: att_split.h
    float scale;
    cudaDataType out_type;      // CUDA_R_16BF or CUDA_R_16F (the GEMMs' input format)
};


// The flash-decoding kernel over a->tok_list (decodes, short prompts).
// Returns 0, or ERR_UNSUPPORTED for a head_dim / GQA ratio not served.
int launch_attention(cudaStream_t s, const attn_args_t *a);

// The tensor-core kernel over query tiles of prompt chunks.
// tiles: [n_tiles] {first batch token, count <= 64}, tokens of one sequence.
int launch_attention_prefill(cudaStream_t s, const attn_args_t *a, const int32_t *tiles, uint32_t n_tiles);
