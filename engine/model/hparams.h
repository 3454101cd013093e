/*
 * hparams.h - the hyper-parameters of one LLaMA-family model, filled from
 * a GGUF file's metadata or a Hugging Face config.json; nothing here is
 * hard-coded per model.  Plain data; any thread.
 */
#ifndef LLAMAD_HPARAMS_H
#define LLAMAD_HPARAMS_H

#include <stdint.h>

typedef enum {
    ROPE_LAYOUT_INTERLEAVED = 0, /* pairs (2i, 2i+1): GGUF files converted from HF (Q/K rows permuted) */
    ROPE_LAYOUT_HALF = 1,        /* pairs (i, i + d/2): HF "rotate_half" */
} rope_layout_t;

typedef struct {
    uint32_t n_vocab;
    uint32_t n_embd;        /* model width d */
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;     /* < n_head for grouped-query attention */
    uint32_t head_dim;      /* usually n_embd / n_head */
    uint32_t n_ff;          /* SwiGLU hidden width, read from the weights' shapes */
    uint32_t n_ctx_train;   /* context length the model was trained for */
    float rms_eps;
    float rope_theta;
    uint32_t rope_dim;      /* dimensions rotated (== head_dim for LLaMA) */
    rope_layout_t rope_layout;
    /* LLaMA-3 RoPE frequency scaling ("rope_type": "llama3"); factor 0 = off */
    float rope_scale_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    uint32_t rope_orig_ctx;
    int tied_embeddings;    /* output projection reuses the token embedding */
    int32_t bos_id, eos_id, pad_id; /* -1 when absent */
} hparams_t;

#endif
