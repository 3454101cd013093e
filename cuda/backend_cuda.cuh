// backend_cuda.cuh - the CUDA backend's context, shared by its parts:
// backend_cuda.cu (the table, creation, the step's batch and the dispatch),
// one file per operation (embed.cu, rmsnorm.cu, gemm.cu, rope_kv.cu,
// attention.cu, swiglu.cu, logits.cu with argmax.cu; poison.cu for tests),
// upload.cu (the weights), graph.cu (decode steps as CUDA graphs) and
// profile.cu (per-operation device time).  Not for anything outside cuda/.
// Engine thread only, like the backend itself.
#pragma once

#include <cublas_v2.h>
#include <vector>

#include "common.cuh"
#include "kernels.cuh"
#include "qmatvec.cuh"

extern "C" {
#include "../engine/backend.h"
#include "base/err.h"
}

// An activation buffer: [rows, cols] in fp32, in the 16-bit format the
// GEMMs read (cuda_ctx_t.wtype), or both, as its bk_buf_role_t needs
// (backend_cuda.cu, op_buf_alloc); the other pointer is NULL.
struct cbuf_t {
    float *f;       // [rows, cols], or NULL
    w16_t *h;       // [rows, cols] in wtype, or NULL
    uint32_t rows, cols;
};

// A layer's GEMM weights, in wtype; with gpu-weight-type = native, those
// of a type with a native kernel as packed GGUF blocks instead (qm).
struct layer_dev_t {
    w16_t *wqkv;    // [(n_head + 2 n_kv) * hd, d], or NULL when one of Q, K, V is native
    w16_t *wo;      // [d, n_head * hd], or NULL when native
    w16_t *wgu;     // [2 ff, d], or NULL when gate or up is native
    w16_t *wdown;   // [d, ff], or NULL when native
    float *attn_norm, *ffn_norm; // [d]
    // Native mode: each role's weight, packed (qm[r].p) or in wtype (w[r],
    // pointing into wqkv / wgu where those are fused); W_Q .. W_DOWN only.
    qmat_t qm[W_COUNT];
    w16_t *w[W_COUNT];
};

// How the operations of the current step run (graph.cu).
enum gmode_t {
    GM_EAGER,       // launched one by one, as the batch is (every step without graphs)
    GM_DIRECT,      // padded to a graph size and launched one by one: the first step of that size
    GM_CAPTURE,     // padded, captured into a CUDA graph (the second step of that size), then launched
    GM_REPLAY,      // padded; the operations do nothing and `logits` launches the size's graph
    GM_ABORTED,     // a capture failed: the operations do nothing, `logits` says BK_STEP_AGAIN
};

// Whether CUDA graphs are on when backend_opts_t.cuda_graphs is 0: on
// since an H200 run passed every graph test (tests/gpu/test_cuda_decode,
// graphs_*, counters asserted) and bench-cuda measured them no slower
// beyond noise at any batch (docs/PERFORMANCE.md, 2026-12-04).  backend_opts_t
// .device_argmax 0 follows the graphs as resolved: the two make the decode
// fast path and are verified together.
#define CUDA_GRAPHS_DEFAULT 1

#define CG_MAX_SIZES 24     // graph sizes at most (graph.cu chooses them)

// One padded decode size and its graph.
struct cgraph_slot_t {
    uint32_t size;          // tokens of the padded step
    int state;              // 0 never run, 1 run once (GM_DIRECT), 2 captured
    cudaGraphExec_t exec;   // when captured
    uint64_t sig;           // the operations and buffers it was captured with
};

struct cuda_ctx_t {
    cuda_err_t err;
    const model_t *m;
    cudaStream_t stream;
    cublasHandle_t blas;
    int poison;
    uint32_t max_tokens, B, n_blocks, max_ctx;
    uint32_t max_logits;    // logit rows a step may have (backend_opts_t.max_seqs, at most max_tokens)
    uint64_t act_bytes;     // activation buffers and workspaces (backend_ops_t.activation_bytes)
    uint32_t n_sms;
    // The format of the weights and of every activation a GEMM reads:
    // CUDA_R_16BF, or CUDA_R_16F with backend_opts_t.fp16_weights.  Fixed
    // at creation; the KV cache is bf16 either way.
    cudaDataType wtype;
    // gpu-weight-type = native (backend_opts_t.native_weights; wtype is then
    // bf16): layer weights of Q4_0, Q4_1, Q8_0, Q4_K stay packed (qmatvec.cuh).
    int native;
    int8_t *qx;             // [QMV_MAX_T, max n_in] the step's activations as int8
    float2 *qx_ds;          // [QMV_MAX_T, max n_in / 32] their block scales
    w16_t *qscratch;        // [largest packed weight] bf16, for steps of more than QMV_MAX_T tokens

    std::vector<layer_dev_t> layers;
    w16_t *tok_embd;        // [V, d] in wtype
    w16_t *output;          // [V, d] in wtype (== tok_embd when tied)
    float *output_norm;     // [d]
    double *inv_freq;       // [rope_dim / 2]
    bf16 *kv;               // [n_layer, 2, n_blocks (+1 with graphs: the padding block), n_kv, B, hd]
    uint64_t kv_layer_elems;

    float *qkv;             // [max_tokens, (n_head + 2 n_kv) * hd]
    float *gu;              // [max_tokens, 2 ff]
    float *attn_work;       // attention partials
    uint64_t attn_work_floats;
    w16_t *logit_x;         // [max_logits, d] in wtype
    float *logits_dev;      // [max_logits, V]
    argmax_out_t *am_dev;   // [max_logits] greedy choices of the logit rows
    argmax_out_t *am_host;  // [max_logits] pinned

    // The batch, packed: tokens, pos, tok_seq [T each], seq_table_off [n_seqs], rows [n_logits], tables
    int32_t *meta_host;     // pinned; rewritten only after meta_done (the last upload from it)
    cudaEvent_t meta_done;
    bool meta_pending;      // meta_done is recorded and may not have completed
    int32_t *meta_dev;
    uint64_t meta_cap;
    const int32_t *d_tokens, *d_pos, *d_tok_seq, *d_seq_off, *d_rows, *d_tables;
    const int32_t *d_tiles, *d_rest;   // prefill query tiles {first, count}; the other tokens
    uint32_t n_tiles, n_rest;
    const batch_t *batch;
    uint32_t batch_max_keys;           // over the tokens of d_rest

    // Decode steps as CUDA graphs (graph.cu).  In a graph mode `batch`
    // points at gbatch, the padded step the operations launch for.
    int graphs;                        // on (turned off for good by a failed capture)
    gmode_t gmode;
    int gslot;                         // the step's slot in a graph mode
    uint64_t gsig;                     // the step's operations so far
    cgraph_slot_t gslots[CG_MAX_SIZES];
    uint32_t n_gslots;
    uint32_t g_splits;                 // the most attention splits of a fixed grid (split_len 0)
    uint32_t pad_block;                // the KV block padding tokens write (never a sequence's)
    batch_t gbatch;                    // the padded step: n_tokens = n_seqs = the slot's size
    const batch_t *ubatch;             // the caller's batch (its logit rows)
    void *blas_ws;                     // cuBLAS workspace (no allocation inside a capture)
    uint64_t blas_ws_bytes;
    uint64_t graph_bytes;              // device memory the instantiated graphs took (measured)
    bk_graph_stats_t gstats;           // captured, replayed, failed (backend_ops_t.graph_stats)

    // Per-operation device time (profile.cu; backend_opts_t.profile).
    int profile;
    std::vector<cudaEvent_t> prof_ev;  // one recorded at each operation's start, one at the step's end
    std::vector<uint8_t> prof_op;      // the bk_op_t of each recorded start
    uint32_t prof_n;                   // starts recorded in this step
    bk_profile_t prof;                 // the totals since the last report

    std::vector<void *> allocs;
    std::vector<cbuf_t *> bufs;
};

// ---- backend_cuda.cu and upload.cu

// cudaMalloc, remembered for op_destroy; records the failure in c->err.
int dev_alloc(cuda_ctx_t *c, void **p, uint64_t bytes);

// Free early what dev_alloc gave (NULL or unknown p: nothing).
void dev_free(cuda_ctx_t *c, void *p);

// Upload every weight (creation): 0 or ERR_BACKEND with c->err set.
int upload_weights(cuda_ctx_t *c);

// ---- the operations, one file each: the eager entries, which launch the
// operation for c->batch on c->stream (backend_cuda.cu wraps them for
// graphs and the profile).  Each returns 0 or an ERR_* code.

int eager_embed(void *vctx, bk_buf_t x);                                           // embed.cu
int eager_add_rmsnorm(void *vctx, bk_buf_t x, bk_buf_t add, uint32_t layer, w_role_t norm, bk_buf_t y); // rmsnorm.cu
int eager_matmul(void *vctx, uint32_t layer, w_role_t role, bk_buf_t x, bk_buf_t y);  // gemm.cu
int eager_matmul_qkv(void *vctx, uint32_t layer, bk_buf_t x, bk_buf_t q, bk_buf_t k, bk_buf_t v);
int eager_matmul_gate_up(void *vctx, uint32_t layer, bk_buf_t x, bk_buf_t gate, bk_buf_t up);
int eager_rope_kv_write(void *vctx, uint32_t layer, bk_buf_t q, bk_buf_t k, bk_buf_t v); // rope_kv.cu
int eager_attention(void *vctx, uint32_t layer, bk_buf_t q, bk_buf_t out);           // attention.cu
int eager_swiglu(void *vctx, bk_buf_t gate, bk_buf_t up);                            // swiglu.cu
int eager_logits(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, float *out);                 // logits.cu
int eager_logits_argmax(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, bk_argmax_t *out);

// y[T, n_out] (fp32) = x[T, n_in] W^T on cuBLAS (gemm.cu).
int gemm(cuda_ctx_t *c, const w16_t *w, uint32_t n_out, uint32_t n_in, const w16_t *x, uint32_t T, float *y);

// The same into columns [0, n_out) of y[T, ldy], without poisoning y (gemm.cu).
int gemm_ld(cuda_ctx_t *c, const w16_t *w, uint32_t n_out, uint32_t n_in, const w16_t *x, uint32_t T, float *y,
            uint32_t ldy);

// The name of a cuBLAS status, for messages (gemm.cu).
const char *cublas_str(cublasStatus_t s);

#define CUBLAS_TRY(st, call)                                                            \
    do {                                                                                \
        cublasStatus_t s_ = (call);                                                     \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                \
            return cuda_fail((st), #call, cublas_str(s_), __FILE__, __LINE__);         \
    } while (0)

// With backend_opts_t.poison, fill `bytes` at p with NaN on the stream (poison.cu).
int do_poison(cuda_ctx_t *c, void *p, uint64_t bytes);

// ---- profile.cu

// Create the events for a step of n_layer layers (creation, with opts profile).
int prof_init(cuda_ctx_t *c, uint32_t n_layer);

// Operation `op` starts (eager steps only; nothing without profile).
int prof_mark(cuda_ctx_t *c, bk_op_t op);

// The step has ended: wait for it and add each operation's time to c->prof.
int prof_flush(cuda_ctx_t *c);

// backend_ops_t.profile: flush, copy the totals out, reset them.
int prof_report(void *vctx, bk_profile_t *out);

void prof_destroy(cuda_ctx_t *c);

// ---- graph.cu

// Set up the graph sizes and the padding (creation, after the KV pool).
void graph_init(cuda_ctx_t *c);

// set_batch's graph half: 1 when b is a decode-only step of a graph size,
// now packed, uploaded and in a graph mode; 0 when it is to run eagerly;
// or an error.
// Record meta_done after an upload from meta_host (op_set_batch waits on it).
cudaError_t meta_uploaded(cuda_ctx_t *c);

int graph_set_batch(cuda_ctx_t *c, const batch_t *b);

// The step's final operation in a graph mode: the logit rows' norm, the
// output GEMM and the argmax over the padded rows; end and launch the
// capture, or launch the graph; then copy the wanted rows out to `out`
// (logits) or `am` (greedy choices), one of which is NULL.  Returns 0,
// BK_STEP_AGAIN or an error.
int graph_logits(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, float *out, bk_argmax_t *am);

// A capture in progress failed with rc: end it, turn graphs off (one log
// line), and let the rest of the step do nothing (`logits` then says
// BK_STEP_AGAIN).  Returns 0, or ERR_BACKEND when the stream could not
// leave capture.
int graph_abort(cuda_ctx_t *c);

// Destroy the instantiated graphs (op_destroy).
void graph_destroy(cuda_ctx_t *c);

// The norm, GEMM and argmax of the logit rows, launched (logits.cu):
// rows NULL means rows 0..n_rows-1.
int logits_launch(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, const int32_t *rows, uint32_t n_rows, int argmax);

// Fold an operation (its code, layer, weight role and buffers) into the
// step's signature.  role: the norm's W_ATTN_NORM or W_FFN_NORM, W_COUNT
// for an operation whose code names its weights.
static inline void graph_sig(cuda_ctx_t *c, bk_op_t op, uint32_t layer, w_role_t role, const void *p0,
                             const void *p1, const void *p2)
{
    uint64_t v[4] = { ((uint64_t)op << 40) | ((uint64_t)role << 32) | layer, (uint64_t)(uintptr_t)p0,
                      (uint64_t)(uintptr_t)p1, (uint64_t)(uintptr_t)p2 };
    for (int i = 0; i < 4; i++) {   // FNV-1a over 64-bit words, with a shift to mix the high bits down
        c->gsig = (c->gsig ^ v[i]) * 0x100000001b3ull;
        c->gsig ^= c->gsig >> 29;
    }
}

// Before each operation: in a graph mode, fold the operation into the
// step's signature; 1 when it is to be skipped (the graph holds it, or
// the step will run again).
static inline int graph_skip(cuda_ctx_t *c, bk_op_t op, uint32_t layer, w_role_t role, const void *p0,
                             const void *p1, const void *p2)
{
    if (c->gmode == GM_EAGER)
        return 0;
    graph_sig(c, op, layer, role, p0, p1, p2);
    return c->gmode == GM_REPLAY || c->gmode == GM_ABORTED;
}

// After each operation: a failure while capturing is a failed capture
// (the step runs again without graphs), anything else is the operation's.
static inline int graph_check(cuda_ctx_t *c, int rc)
{
    if (rc != 0 && c->gmode == GM_CAPTURE)
        return graph_abort(c);
    return rc;
}
