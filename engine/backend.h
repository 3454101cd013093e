/*
 * backend.h - the operations a compute backend provides to the forward pass.
 *
 * A backend is a small table of function pointers plus an opaque context.
 * It owns the weights as it needs them (the CPU backend reads the mapped
 * file in place; the CUDA backend uploads them), the paged KV cache and
 * every activation buffer.  Activation buffers are opaque handles
 * (bk_buf_t): forward.c never reads them; each holds a [rows, cols]
 * matrix of the backend's activation type.  Weights are named by layer
 * and role.  All operations run on the engine thread, in order; a
 * backend may queue them (CUDA's stream) and finishes them by the time
 * `logits` returns.  Operations return 0 or a negative ERR_* code
 * (ERR_BACKEND for a device failure, which also leaves a message for
 * bk_last_error).
 *
 * KV cache layout, per layer, for K and for V alike:
 *     [n_blocks, n_head_kv, block_tokens, head_dim]
 * Position p of a sequence lives in block block_table[p / block_tokens],
 * slot p % block_tokens.
 */
#ifndef LLAMAD_BACKEND_H
#define LLAMAD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/sched/batch.h"
#include "engine/model/model.h"

typedef void *bk_buf_t;

/* One logit row's greedy choice (logits_argmax). */
typedef struct {
    int32_t token;          /* -1: the row has a NaN or no finite logit */
    float logprob;          /* log-softmax of the token at temperature 1 */
} bk_argmax_t;

/*
 * `logits` and `logits_argmax` may return BK_STEP_AGAIN (positive, not an
 * error): the step was not computed, because capturing it as a CUDA graph
 * failed and the backend has turned graphs off.  The caller runs the
 * whole step again, from set_batch; forward_step does.
 */
#define BK_STEP_AGAIN 1

/*
 * The operations of a step, one code each: what a backend dispatches, what
 * the CUDA backend folds into a decode graph's signature, and the kinds
 * bk_profile_t times (backend_ops_t.profile).
 */
typedef enum {
    BK_OP_UPLOAD,       /* set_batch: the step's metadata to the device */
    BK_OP_EMBED,
    BK_OP_NORM,         /* add_rmsnorm */
    BK_OP_QKV,          /* matmul_qkv */
    BK_OP_ROPE_KV,      /* rope_kv_write */
    BK_OP_ATTENTION,
    BK_OP_O,            /* matmul of W_O */
    BK_OP_GATE_UP,      /* matmul_gate_up */
    BK_OP_SWIGLU,
    BK_OP_DOWN,         /* matmul of W_DOWN */
    BK_OP_LOGITS,       /* logits / logits_argmax: norm, output GEMM, copy back */
    BK_OP_COUNT
} bk_op_t;

/*
 * Device milliseconds per operation and the number of calls: the time from
 * the operation's start on the device to the next one's, so the gaps in
 * which the device waits for the host count to the operation before them.
 */
typedef struct {
    double ms[BK_OP_COUNT];
    uint64_t calls[BK_OP_COUNT];
} bk_profile_t;

/* The short name of a bk_op_t ("qkv", "attention", ...). */
static inline const char *bk_op_name(int op)
{
    static const char *const names[BK_OP_COUNT] = {
        "upload", "embed", "norm", "qkv", "rope_kv", "attention", "o", "gate_up", "swiglu", "down", "logits",
    };
    return op >= 0 && op < BK_OP_COUNT ? names[op] : "?";
}

/*
 * How a backend's decode-step graphs were used since its creation
 * (backend_ops_t.graph_stats): a graph test or a benchmark row that claims
 * graphs checks that they were captured and replayed, not silently eager.
 */
typedef struct {
    uint64_t captured;      /* graphs captured and instantiated (one per padded size) */
    uint64_t replayed;      /* steps served by launching a graph captured at an earlier step */
    uint64_t failed;        /* failures that turned graphs off (a capture, an instantiation, a
                               launch, a step unlike its graph): that step ran again eagerly */
} bk_graph_stats_t;

/*
 * What an activation buffer holds, so that a backend gives it only the
 * storage its operations touch (the CUDA backend keeps fp32, a 16-bit
 * copy, both, or nothing where a fused operation has its own workspace).
 */
typedef enum {
    BK_BUF_RESIDUAL,    /* the residual stream: embed, add_rmsnorm's x, logits' x */
    BK_BUF_NORMED,      /* add_rmsnorm's y: a GEMM's input */
    BK_BUF_PROJ,        /* matmul's y (W_O, W_DOWN): add_rmsnorm's add */
    BK_BUF_Q,           /* matmul_qkv's q: rope_kv_write, attention */
    BK_BUF_K,           /* matmul_qkv's k and v: rope_kv_write */
    BK_BUF_V,
    BK_BUF_ATT,         /* attention's out: matmul's x */
    BK_BUF_GATE,        /* matmul_gate_up's gate: swiglu, then matmul's x */
    BK_BUF_UP,          /* matmul_gate_up's up: swiglu */
    BK_BUF_ANY,         /* tests: any operation's input or output, and buf_read/buf_write */
} bk_buf_role_t;

/* The roles of a layer's weights. */
typedef enum {
    W_ATTN_NORM, W_Q, W_K, W_V, W_O, W_FFN_NORM, W_GATE, W_UP, W_DOWN, W_COUNT
} w_role_t;

typedef struct {
    const char *name;
    void (*destroy)(void *ctx);

    /*
     * Start-up only: an activation buffer of [rows, cols] used only as
     * `role` says; NULL when memory is short.
     */
    bk_buf_t (*buf_alloc)(void *ctx, uint32_t rows, uint32_t cols, bk_buf_role_t role);

    /* Take the step's batch (borrowed until `logits` returns). */
    int (*set_batch)(void *ctx, const batch_t *b);

    /* x[t] = token embedding of batch token t.   x: [n_tokens, n_embd] */
    int (*embed)(void *ctx, bk_buf_t x);

    /*
     * If `add` is not NULL, first x += add (the residual).  Then
     * y = rmsnorm(x) * g, g the layer's W_ATTN_NORM or W_FFN_NORM weight.
     * x, add, y: [n_tokens, n_embd]
     */
    int (*add_rmsnorm)(void *ctx, bk_buf_t x, bk_buf_t add, uint32_t layer, w_role_t norm, bk_buf_t y);

    /*
     * y = x W^T for the layer's weight of role `w`, W_O or W_DOWN (the
     * other roles run through matmul_qkv and matmul_gate_up; the CUDA
     * backend refuses them with ERR_INVALID).
     * x: [n_tokens, n_in], y: [n_tokens, n_out]
     */
    int (*matmul)(void *ctx, uint32_t layer, w_role_t w, bk_buf_t x, bk_buf_t y);

    /*
     * q, k, v = x Wq^T, x Wk^T, x Wv^T (a backend may run one GEMM over the
     * concatenated weights).  q: [n_tokens, n_head * head_dim]; k, v:
     * [n_tokens, n_head_kv * head_dim].  Only rope_kv_write reads them.
     */
    int (*matmul_qkv)(void *ctx, uint32_t layer, bk_buf_t x, bk_buf_t q, bk_buf_t k, bk_buf_t v);

    /* gate, up = x Wgate^T, x Wup^T (one GEMM where the backend can).  Only swiglu reads them. */
    int (*matmul_gate_up)(void *ctx, uint32_t layer, bk_buf_t x, bk_buf_t gate, bk_buf_t up);

    /*
     * Rotate q and k at each token's position (the model's RoPE layout and
     * frequencies), then write k and v into the KV cache of `layer`.
     * q: [n_tokens, n_head * head_dim] (rotated in place)
     * k, v: [n_tokens, n_head_kv * head_dim]
     */
    int (*rope_kv_write)(void *ctx, uint32_t layer, bk_buf_t q, bk_buf_t k, bk_buf_t v);

    /*
     * Causal attention of each token over its sequence's positions 0..pos
     * in the KV cache of `layer` (grouped-query: query head h reads KV head
     * h / (n_head / n_head_kv)), scaled by 1/sqrt(head_dim).
     * q, out: [n_tokens, n_head * head_dim]
     */
    int (*attention)(void *ctx, uint32_t layer, bk_buf_t q, bk_buf_t out);

    /* gate = silu(gate) * up, elementwise.  gate, up: [n_tokens, n_ff] */
    int (*swiglu)(void *ctx, bk_buf_t gate, bk_buf_t up);

    /*
     * For each of the batch's logit rows r: x[r] += add[r], then
     * out[i] = output(rmsnorm(x[r]) * output_norm).
     * out: host memory [n_logits, n_vocab] float32.  Returns 0, an
     * ERR_* code, or BK_STEP_AGAIN (above).
     */
    int (*logits)(void *ctx, bk_buf_t x, bk_buf_t add, float *out);

    /*
     * Optional (NULL where a backend has no such path; the CPU backend has
     * none): as `logits`, but only each logit row's greedy choice comes
     * back.  For logit row r, out[r].token is the id of the row's largest
     * logit, the lowest such id among equals, +inf counting as FLT_MAX
     * (sampler.c's greedy rule), and out[r].logprob its log-softmax at
     * temperature 1; token -1 when the row holds a NaN or only -inf (the
     * sampler's ERR_RANGE).  out: host memory [n_logits].
     */
    int (*logits_argmax)(void *ctx, bk_buf_t x, bk_buf_t add, bk_argmax_t *out);

    /*
     * Copy rows [0, rows) of a buffer of `cols` columns from or to host
     * float32 memory (tests and debugging; synchronous).  Buffers of role
     * BK_BUF_ANY always allow both; a backend may refuse others
     * (ERR_INVALID) where it keeps no float32 copy.
     */
    int (*buf_write)(void *ctx, bk_buf_t buf, const float *host, uint32_t rows, uint32_t cols);
    int (*buf_read)(void *ctx, bk_buf_t buf, float *host, uint32_t rows, uint32_t cols);

    /* The last device error's message, or "" (for logs and requests). */
    const char *(*last_error)(void *ctx);

    /*
     * Optional (NULL where a backend has none; the CUDA backend counts
     * only with backend_opts_t.profile): the device time each kind of
     * operation took since the previous call, which it resets.  Benchmarks.
     */
    int (*profile)(void *ctx, bk_profile_t *out);

    /*
     * Optional (NULL where a backend does not count): the device bytes held
     * for activations: the buffers buf_alloc gave and the backend's own
     * per-step workspaces sized by max_tokens and max_seqs (for CUDA: the
     * fused QKV and gate|up outputs and the logit rows; not the attention
     * partials, the KV cache or the weights).  Tests and start-up logs.
     */
    uint64_t (*activation_bytes)(void *ctx);

    /*
     * Optional (NULL where a backend has no graphs; the CPU backend has
     * none): the graph counters since creation (bk_graph_stats_t); all 0
     * with graphs off.  Tests and benchmarks.
     */
    void (*graph_stats)(void *ctx, bk_graph_stats_t *out);

    /*
     * Copy-on-write of KV blocks (kvcache.h, kv_seq_cow): for each i in
     * [0, n), every layer's keys and values of block src[i] are copied
     * into block dst[i], all slots.  Ids below n_kv_blocks, each dst
     * distinct and no dst also a src (the caller's promise).  The forward
     * pass calls it before the step's first write, outside any graph; a
     * backend may queue it on its stream, ahead of the step.  Optional
     * (NULL: the forward pass refuses a batch with copies).
     */
    int (*kv_copy)(void *ctx, const int32_t *src, const int32_t *dst, uint32_t n);
} backend_ops_t;

typedef struct {
    const backend_ops_t *ops;
    void *ctx;
    uint32_t n_kv_blocks;
    uint32_t block_tokens;
    char detail[96];  /* the instance in words for the start-up line ("cpu-isa amx,
                         cpu-precision fast, 2 threads"); "" where there is nothing to add */
} backend_t;

/*
 * Options of backend creation.  The first group every backend reads; the
 * second only a device backend (the CPU backend ignores them): the config
 * sets some of them, tests and benchmarks the rest.  A 0 always means the
 * backend's own default; the defaults and the policy behind them live in
 * the backend (cuda/backend_cuda.cuh), not here.
 */
typedef struct {
    int n_threads;          /* CPU worker threads: 0 = one per usable CPU (cpus.h) */
    const char *cpu_isa;    /* CPU kernels' level (cpu-isa): NULL = auto */
    const char *cpu_precision; /* CPU products (cpu-precision): NULL = exact; both NULL:
                               as the process has them (cpu_matmul_setup) */
    int cpu_no_repack;      /* 1: the CPU backend reads every matrix from the model's
                               mapping, packing none (cpu-repack = no) */
    uint64_t kv_bytes;      /* KV cache size (a device backend: when gpu_memory_fraction is 0) */
    uint32_t block_tokens;  /* tokens per KV block (0: BK_DEFAULT_BLOCK_TOKENS) */
    uint32_t max_tokens;    /* most tokens in one step */
    uint32_t max_seqs;      /* most logit rows in one step (one per sequence): 0 = max_tokens;
                               a step with more is refused with ERR_INVALID */
    int poison;             /* tests: fill every output with NaN before each operation */
    int profile;            /* benchmarks: time every operation on the device
                               (backend_ops_t.profile); turns graphs off */

    int gpu_device;         /* CUDA: the device's index among the visible ones (registry_pick_device) */
    double gpu_memory_fraction; /* KV pool = this share of the device's memory, less what is in use */
    int cuda_graphs;        /* decode steps as device graphs: 1 on, -1 off, 0 the backend's default */
    int device_argmax;      /* offer logits_argmax: 1 on, -1 off, 0 the backend's default */
    int fp16_weights;       /* weights and the activations GEMMs read as fp16 (1) or bf16 (0) */
    int native_weights;     /* layer weights of a type with a native kernel (Q4_0, Q4_1, Q8_0,
                               Q4_K) kept as their GGUF blocks, repacked (base/qpack.h); the
                               activations bf16; fp16_weights is then ignored */
} backend_opts_t;

#define BK_DEFAULT_BLOCK_TOKENS 16

/* A backend's graph counters (backend_ops_t.graph_stats); all 0 where it has none. */
static inline bk_graph_stats_t bk_graph_stats(const backend_t *b)
{
    bk_graph_stats_t st = { 0, 0, 0 };
    if (b->ops->graph_stats != NULL)
        b->ops->graph_stats(b->ctx, &st);
    return st;
}

/* The CPU backend (engine/cpu/).  On error *out is NULL and err says why. */
int cpu_backend_create(backend_t **out, const model_t *m, const backend_opts_t *o,
                       char *err, size_t errlen);

/* Destroy any backend (engine/registry.c); NULL is a no-op. */
void backend_destroy(backend_t *b);

/*
 * The CUDA backend (cuda/), where built: linked into tests and benchmarks,
 * and built as the module llamad-cuda.so that llamad opens at run time
 * (backend_module.h, registry.c).  Weights are uploaded as bf16, or
 * fp16 with opts fp16_weights (quantised types are dequantised on the
 * device), GEMMs run on cuBLAS over inputs of that format, the KV cache is
 * bf16.  With fp16 an activation beyond 65504 becomes inf, and its
 * sequence's logits NaN, which the sampler refuses.  Decode-only steps may
 * run as CUDA graphs (opts cuda_graphs; docs/ENGINE.md).  On error *out is
 * NULL and err names the failing CUDA or cuBLAS call.
 */
int cuda_backend_create(backend_t **out, const model_t *m, const backend_opts_t *o,
                        char *err, size_t errlen);

#endif
