/*
 * model.h - one loaded LLaMA-family model: hyper-parameters, the weight
 * table, the tokenizer and the chat template, from a GGUF file or a
 * Hugging Face directory.
 *
 * Owns: the file mappings (through gguf_t or st_model_t), the tokenizer.
 * Weights are not copied: each weight_t points into the mapping (or, under
 * MODEL_LOAD_PRIVATE, into a private copy of the file), so a
 * backend that can use them in place (the CPU backend) does; the CPU
 * backend's packed matrices (cpu-repack) are its own copies, and it drops
 * their pages of a file mapping (weights_file_mapped), which changes no
 * byte a reader sees.  Every tensor's type and shape is checked against
 * the hyper-parameters, and every tensor in the file must be used.  A
 * model is immutable after model_create and may be read from any thread.
 */
#ifndef LLAMAD_MODEL_H
#define LLAMAD_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hparams.h"
#include "base/quant.h"
#include "engine/text/tokenizer.h"

/* A 2-D weight: n_out rows of n_in elements (ne[0] = n_in), row-major, in `type`. */
typedef struct {
    char name[96];      /* the file's tensor name */
    qtype_t type;
    uint64_t n_in;      /* ne[0] */
    uint64_t n_out;     /* ne[1]; 1 for vectors */
    uint64_t nbytes;
    const void *data;   /* into the mapping */
} weight_t;

typedef struct {
    weight_t attn_norm; /* [n_embd] */
    weight_t wq;        /* [n_head * head_dim, n_embd] */
    weight_t wk;        /* [n_head_kv * head_dim, n_embd] */
    weight_t wv;        /* [n_head_kv * head_dim, n_embd] */
    weight_t wo;        /* [n_embd, n_head * head_dim] */
    weight_t ffn_norm;  /* [n_embd] */
    weight_t w_gate;    /* [n_ff, n_embd]   (W1) */
    weight_t w_up;      /* [n_ff, n_embd]   (W3) */
    weight_t w_down;    /* [n_embd, n_ff]   (W2) */
} layer_weights_t;

typedef enum { MODEL_SRC_GGUF, MODEL_SRC_HF, MODEL_SRC_SYNTH } model_src_t;

typedef struct model model_t;

struct model {
    hparams_t hp;
    model_src_t src;
    weight_t tok_embd;      /* [n_vocab, n_embd] */
    weight_t output_norm;   /* [n_embd] */
    weight_t output;        /* [n_vocab, n_embd]; == tok_embd when tied */
    layer_weights_t *layers;/* [n_layer] */
    /*
     * Per-pair RoPE frequency divisors [rope_dim / 2] (LLaMA-3 scaling),
     * or NULL for plain RoPE.  theta_i = base^(-2i/rope_dim) / freq_factors[i].
     */
    float *rope_freq_factors;
    tokenizer_t *tok;
    /* 1: the weights lie in a read-only mapping of the GGUF file, whose
     * pages are clean (one dropped with madvise is read from the file
     * again when next touched); 0: private memory or a synthetic buffer */
    int weights_file_mapped;
    uint64_t weight_bytes;  /* sum of all weights' sizes */
    double load_seconds;
    char *path;
    void *file;             /* gguf_t *, st_model_t *, or a synthetic model's weight buffer */
};

/*
 * Open the model at `path` (a GGUF file, or a directory / safetensors file
 * of a Hugging Face model).  `chat_template` is "auto", a built-in name, or
 * a template file path.  On error *out is NULL and err names the file and
 * the field.  Start-up only.
 */
int model_create(model_t **out, const char *path, const char *chat_template,
                 char *err, size_t errlen);

/* model_create's flags. */
enum {
    /* Read a GGUF file's bytes into private memory instead of mapping the
     * file (gguf_open): immune to later changes of the file, at the cost
     * of the file's size in resident memory.  Hugging Face directories are
     * refused with ERR_UNSUPPORTED under this flag. */
    MODEL_LOAD_PRIVATE = 1,
};
/* model_create with flags (0 is model_create). */
int model_create_flags(model_t **out, const char *path, const char *chat_template, int flags,
                       char *err, size_t errlen);
void model_destroy(model_t *m);

/* Print hyper-parameters, tokenizer, chat template and the tensor table. */
void model_dump(const model_t *m, FILE *out);

/* Bytes of one token's K and V for all layers in float32. */
uint64_t model_kv_bytes_per_token(const model_t *m);

#endif

