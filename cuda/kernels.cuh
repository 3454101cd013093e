// kernels.cuh - launchers of the CUDA backend's kernels (host side).
// Each takes the stream and enqueues; errors surface at the caller's
// cudaGetLastError check.
#pragma once

#include "common.cuh"

struct rope_dims_t {
    uint32_t n_head, n_kv, head_dim, rope_dim, block_tokens;
    int interleaved;
};

void launch_embed(cudaStream_t s, const int32_t *tokens, const bf16 *emb, float *x, uint32_t n, uint32_t d);
void launch_add_rmsnorm(cudaStream_t s, float *x, const float *add, const int32_t *rows, const float *g,
                        bf16 *y, uint32_t n_rows, uint32_t d, float eps);
void launch_rope_kv(cudaStream_t s, const float *qkv, float *q, bf16 *kc, bf16 *vc, const int32_t *pos,
                    const int32_t *tok_seq, const int32_t *seq_table_off, const int32_t *tables,
                    const double *inv_freq, uint32_t n_tokens, rope_dims_t dm);
void launch_swiglu(cudaStream_t s, const float *gu, bf16 *out, uint32_t n_tokens, uint32_t ff);
void launch_poison(cudaStream_t s, void *p, uint64_t bytes);

struct attn_args_t {
    const float *q;             // [n_tokens, n_head * hd]
    const bf16 *kc, *vc;        // this layer's cache [n_blocks, n_kv, B, hd]
    bf16 *out;                  // [n_tokens, n_head * hd]
    float *work;                // partials [n_tokens, n_head, n_splits, hd + 2]
    const int32_t *pos, *tok_seq, *seq_table_off, *tables;
    const int32_t *tok_list;    // [n_tokens] the batch tokens this launch serves (split kernel)
    uint32_t n_tokens, n_head, n_kv, head_dim, block_tokens;
    uint32_t split_len, n_splits;   // keys per split, splits per token
    float scale;
};

// The flash-decoding kernel over a->tok_list (decodes, short prompts).
// Returns 0, or -4 for an unsupported head_dim / GQA ratio.
int launch_attention(cudaStream_t s, const attn_args_t *a);

// The tensor-core kernel over query tiles of prompt chunks.
// tiles: [n_tiles] {first batch token, count <= 64}, tokens of one sequence.
int launch_attention_prefill(cudaStream_t s, const attn_args_t *a, const int32_t *tiles, uint32_t n_tiles);
