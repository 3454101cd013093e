// backend_cuda.cu - the CUDA backend: the operations of engine/backend.h
// on one stream, GEMMs on cuBLAS (16-bit in, fp32 accumulate) and fused
// kernels, one file per operation (backend_cuda.cuh lists them), over the
// weights upload.cu put on the device once as bf16, or as fp16 when
// backend_opts_t.fp16_weights asks (wtype), or (native_weights) the layer
// weights of Q4_0, Q4_1, Q8_0 and Q4_K packed as their GGUF blocks
// (cuda/qmatvec.cuh).  This file keeps the table,
// creation and destruction, the step's batch, and the dispatch of each
// operation to its eager entry, to a graph, or to the profile.
//
// Activation buffers hold each matrix twice: fp32 (what GEMMs and the
// residual stream write) and 16-bit in wtype (what GEMMs read).  fp16 has
// 3 more mantissa bits than bf16 but a range only up to 65504: a larger
// attention or SwiGLU output becomes inf, the GEMM that reads it gives inf
// or NaN, and the next RMSNorm of the residual stream gives NaN (its sum of
// squares is inf, its scale 0, inf * 0 NaN); so the logits hold NaN and the
// sampler fails the request rather than choose a token.  (An RMSNorm output
// is at most sqrt(d) times its weight: far inside.)  Q, K and V come
// from one GEMM over the concatenated weights into `qkv`; gate and up from
// one GEMM into `gu`.
//
// Decode-only steps may run as CUDA graphs (graph.cu): each operation
// below is a thin wrapper that, in a graph mode, skips the work a graph
// already holds (graph_skip) and turns a failure inside a capture into a
// step run again without graphs (graph_check); the eager bodies are the
// same either way.
#include <cublas_v2.h>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend_cuda.cuh"

extern "C" {
#include "base/err.h"
#include "base/log.h"
}

int cuda_fail(cuda_err_t *st, const char *what, const char *detail, const char *file, int line)
{
    if (st->msg[0] == '\0')
        snprintf(st->msg, sizeof st->msg, "%s failed: %s (%s:%d)", what, detail, file, line);
    return ERR_BACKEND;
}

// Prompt chunks at least this long run on the tensor-core prefill kernel.
#define PREFILL_MIN 16

int dev_alloc(cuda_ctx_t *c, void **p, uint64_t bytes)
{
    CU_TRY(&c->err, cudaMalloc(p, bytes ? bytes : 16));
    c->allocs.push_back(*p);
    return 0;
}

void dev_free(cuda_ctx_t *c, void *p)
{
    for (size_t i = 0; p != nullptr && i < c->allocs.size(); i++) {
        if (c->allocs[i] == p) {
            cudaFree(p);
            c->allocs.erase(c->allocs.begin() + (long)i);
            return;
        }
    }
}

// ---------------------------------------------------------------- operations

// Each role gets only what its operations touch: fp32 what a kernel or
// GEMM writes in fp32 and reads back (the residual stream, GEMM outputs,
// rotated q), 16-bit what a GEMM reads (norm, attention and SwiGLU
// outputs), nothing for k, v and up (matmul_qkv and matmul_gate_up write
// the workspaces qkv and gu instead), both for tests.
static bk_buf_t op_buf_alloc(void *vctx, uint32_t rows, uint32_t cols, bk_buf_role_t role)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    bool f32 = role == BK_BUF_RESIDUAL || role == BK_BUF_PROJ || role == BK_BUF_Q || role == BK_BUF_ANY;
    bool h16 = role == BK_BUF_NORMED || role == BK_BUF_ATT || role == BK_BUF_GATE || role == BK_BUF_ANY;
    uint64_t n = (uint64_t)rows * cols;
    cbuf_t *b = new cbuf_t{ nullptr, nullptr, rows, cols };
    if ((f32 && dev_alloc(c, (void **)&b->f, n * 4) != 0) || (h16 && dev_alloc(c, (void **)&b->h, n * 2) != 0)) {
        dev_free(c, b->f);
        delete b;
        return nullptr;
    }
    c->act_bytes += (f32 ? n * 4 : 0) + (h16 ? n * 2 : 0);
    c->bufs.push_back(b);
    return b;
}

cudaError_t meta_uploaded(cuda_ctx_t *c)
{
    cudaError_t e = cudaEventRecord(c->meta_done, c->stream);
    c->meta_pending = e == cudaSuccess;
    return e;
}

static int set_batch_eager(cuda_ctx_t *c, const batch_t *b)
{
    uint64_t n_tab = 0;
    for (uint32_t s = 0; s < b->n_seqs; s++)
        n_tab += b->seqs[s].n_blocks;
    uint64_t need = 6ull * b->n_tokens + b->n_seqs + b->n_logits + n_tab;
    if (b->n_tokens > c->max_tokens || b->n_logits > c->max_logits || need > c->meta_cap)
        return ERR_INVALID;
    int32_t *h = c->meta_host;
    uint64_t o = 0;
    memcpy(h + o, b->tokens, b->n_tokens * 4); o += b->n_tokens;
    memcpy(h + o, b->pos, b->n_tokens * 4); o += b->n_tokens;
    for (uint32_t s = 0; s < b->n_seqs; s++)
        for (uint32_t i = 0; i < b->seqs[s].n_new; i++)
            h[o + b->seqs[s].first + i] = (int32_t)s;
    o += b->n_tokens;
    // Prompt chunks of PREFILL_MIN tokens or more go to the tensor-core
    // kernel in tiles of 64 queries; every other token to flash-decoding.
    uint64_t off_tiles = o;
    uint32_t n_tiles = 0;
    for (uint32_t s = 0; s < b->n_seqs; s++) {
        if (b->seqs[s].n_new < PREFILL_MIN)
            continue;
        for (uint32_t i = 0; i < b->seqs[s].n_new; i += 64) {
            h[o++] = (int32_t)(b->seqs[s].first + i);
            h[o++] = (int32_t)(b->seqs[s].n_new - i < 64 ? b->seqs[s].n_new - i : 64);
            n_tiles++;
        }
    }
    uint64_t off_rest = o;
    uint32_t n_rest = 0, max_keys = 0;
    for (uint32_t s = 0; s < b->n_seqs; s++) {
        if (b->seqs[s].n_new >= PREFILL_MIN)
            continue;
        for (uint32_t i = 0; i < b->seqs[s].n_new; i++) {
            uint32_t t = b->seqs[s].first + i;
            h[o++] = (int32_t)t;
            n_rest++;
            if ((uint32_t)b->pos[t] + 1 > max_keys)
                max_keys = (uint32_t)b->pos[t] + 1;
        }
    }
    uint64_t off_seq = o;
    o += b->n_seqs;
    memcpy(h + o, b->logit_rows, b->n_logits * 4);
    uint64_t off_rows = o;
    o += b->n_logits;
    uint64_t off_tab = o;
    for (uint32_t s = 0; s < b->n_seqs; s++) {
        h[off_seq + s] = (int32_t)(o - off_tab);
        memcpy(h + o, b->seqs[s].block_table, b->seqs[s].n_blocks * 4);
        o += b->seqs[s].n_blocks;
    }
    CU_TRY(&c->err, cudaMemcpyAsync(c->meta_dev, h, o * 4, cudaMemcpyHostToDevice, c->stream));
    CU_TRY(&c->err, meta_uploaded(c));
    c->d_tokens = c->meta_dev;
    c->d_pos = c->meta_dev + b->n_tokens;
    c->d_tok_seq = c->meta_dev + 2 * b->n_tokens;
    c->d_seq_off = c->meta_dev + off_seq;
    c->d_rows = c->meta_dev + off_rows;
    c->d_tables = c->meta_dev + off_tab;
    c->d_tiles = c->meta_dev + off_tiles;
    c->d_rest = c->meta_dev + off_rest;
    c->n_tiles = n_tiles;
    c->n_rest = n_rest;
    c->batch = b;
    c->batch_max_keys = max_keys;
    return 0;
}

// ---------------------------------------------------------------- the operations, as the table has them

static int op_set_batch(void *vctx, const batch_t *b)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    int rc = prof_flush(c);     // the previous step, when it had no logit rows
    if (rc != 0)
        return rc;
    // A step without logit rows (a prompt chunk that is not the last) returns
    // without waiting for the device, so the previous step's upload from
    // meta_host may still be queued: wait for it before rewriting the buffer.
    if (c->meta_pending) {
        CU_TRY(&c->err, cudaEventSynchronize(c->meta_done));
        c->meta_pending = false;
    }
    c->gmode = GM_EAGER;
    if (c->graphs) {
        rc = graph_set_batch(c, b);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    if ((rc = prof_mark(c, BK_OP_UPLOAD)) != 0)
        return rc;
    return set_batch_eager(c, b);
}

static int op_embed(void *vctx, bk_buf_t x)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (graph_skip(c, BK_OP_EMBED, 0, W_COUNT, x, nullptr, nullptr))
        return 0;
    int rc = prof_mark(c, BK_OP_EMBED);
    return rc != 0 ? rc : graph_check(c, eager_embed(vctx, x));
}

static int op_add_rmsnorm(void *vctx, bk_buf_t x, bk_buf_t add, uint32_t layer, w_role_t norm, bk_buf_t y)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (graph_skip(c, BK_OP_NORM, layer, norm, x, add, y))
        return 0;
    int rc = prof_mark(c, BK_OP_NORM);
    return rc != 0 ? rc : graph_check(c, eager_add_rmsnorm(vctx, x, add, layer, norm, y));
}

// matmul serves W_O and W_DOWN: the roles forward.c multiplies alone (Q, K
// and V run as matmul_qkv, gate and up as matmul_gate_up).
static int op_matmul(void *vctx, uint32_t layer, w_role_t role, bk_buf_t x, bk_buf_t y)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (role != W_O && role != W_DOWN)
        return ERR_INVALID;
    bk_op_t op = role == W_O ? BK_OP_O : BK_OP_DOWN;
    if (graph_skip(c, op, layer, W_COUNT, x, y, nullptr))
        return 0;
    int rc = prof_mark(c, op);
    return rc != 0 ? rc : graph_check(c, eager_matmul(vctx, layer, role, x, y));
}

static int op_matmul_qkv(void *vctx, uint32_t layer, bk_buf_t x, bk_buf_t q, bk_buf_t k, bk_buf_t v)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (c->gmode != GM_EAGER)
        graph_sig(c, BK_OP_QKV, layer, W_COUNT, v, nullptr, nullptr);
    if (graph_skip(c, BK_OP_QKV, layer, W_COUNT, x, q, k))
        return 0;
    int rc = prof_mark(c, BK_OP_QKV);
    return rc != 0 ? rc : graph_check(c, eager_matmul_qkv(vctx, layer, x, q, k, v));
}

static int op_matmul_gate_up(void *vctx, uint32_t layer, bk_buf_t x, bk_buf_t gate, bk_buf_t up)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (graph_skip(c, BK_OP_GATE_UP, layer, W_COUNT, x, gate, up))
        return 0;
    int rc = prof_mark(c, BK_OP_GATE_UP);
    return rc != 0 ? rc : graph_check(c, eager_matmul_gate_up(vctx, layer, x, gate, up));
}

static int op_rope_kv_write(void *vctx, uint32_t layer, bk_buf_t q, bk_buf_t k, bk_buf_t v)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (graph_skip(c, BK_OP_ROPE_KV, layer, W_COUNT, q, k, v))
        return 0;
    int rc = prof_mark(c, BK_OP_ROPE_KV);
    return rc != 0 ? rc : graph_check(c, eager_rope_kv_write(vctx, layer, q, k, v));
}

static int op_attention(void *vctx, uint32_t layer, bk_buf_t q, bk_buf_t out)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (graph_skip(c, BK_OP_ATTENTION, layer, W_COUNT, q, out, nullptr))
        return 0;
    int rc = prof_mark(c, BK_OP_ATTENTION);
    return rc != 0 ? rc : graph_check(c, eager_attention(vctx, layer, q, out));
}

static int op_swiglu(void *vctx, bk_buf_t gate, bk_buf_t up)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (graph_skip(c, BK_OP_SWIGLU, 0, W_COUNT, gate, up, nullptr))
        return 0;
    int rc = prof_mark(c, BK_OP_SWIGLU);
    return rc != 0 ? rc : graph_check(c, eager_swiglu(vctx, gate, up));
}

static int op_logits(void *vctx, bk_buf_t vx, bk_buf_t vadd, float *out)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (c->gmode != GM_EAGER)
        return graph_logits(c, (cbuf_t *)vx, (cbuf_t *)vadd, out, nullptr);
    return eager_logits(c, (cbuf_t *)vx, (cbuf_t *)vadd, out);
}

static int op_logits_argmax(void *vctx, bk_buf_t vx, bk_buf_t vadd, bk_argmax_t *out)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (c->gmode != GM_EAGER)
        return graph_logits(c, (cbuf_t *)vx, (cbuf_t *)vadd, nullptr, out);
    return eager_logits_argmax(c, (cbuf_t *)vx, (cbuf_t *)vadd, out);
}

static int op_buf_write(void *vctx, bk_buf_t vb, const float *host, uint32_t rows, uint32_t cols)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    cbuf_t *b = (cbuf_t *)vb;
    if (b->f == nullptr || b->h == nullptr)
        return ERR_INVALID;     // only BK_BUF_ANY buffers hold both copies
    std::vector<w16_t> h((size_t)rows * cols);
    for (size_t i = 0; i < h.size(); i++) {
        // the device's rounding (to nearest even; beyond fp16's range, inf)
        if (c->wtype == CUDA_R_16F) {
            f16 v = __float2half_rn(host[i]);
            memcpy(&h[i], &v, 2);
        } else {
            bf16 v = __float2bfloat16(host[i]);
            memcpy(&h[i], &v, 2);
        }
    }
    CU_TRY(&c->err, cudaMemcpyAsync(b->f, host, (uint64_t)rows * cols * 4, cudaMemcpyHostToDevice, c->stream));
    CU_TRY(&c->err, cudaMemcpyAsync(b->h, h.data(), h.size() * 2, cudaMemcpyHostToDevice, c->stream));
    CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
    return 0;
}

static int op_buf_read(void *vctx, bk_buf_t vb, float *host, uint32_t rows, uint32_t cols)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    cbuf_t *b = (cbuf_t *)vb;
    if (b->f == nullptr)
        return ERR_INVALID;
    CU_TRY(&c->err, cudaMemcpyAsync(host, b->f, (uint64_t)rows * cols * 4, cudaMemcpyDeviceToHost, c->stream));
    CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
    return 0;
}

static const char *op_last_error(void *vctx)
{
    return ((cuda_ctx_t *)vctx)->err.msg;
}

static uint64_t op_activation_bytes(void *vctx)
{
    return ((cuda_ctx_t *)vctx)->act_bytes;
}

static void op_graph_stats(void *vctx, bk_graph_stats_t *out)
{
    *out = ((cuda_ctx_t *)vctx)->gstats;
}

static void op_destroy(void *vctx)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    if (c == nullptr)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    // Users before what they use: the graphs and the cuBLAS handle (its
    // workspace is one of the allocations) before the memory.
    graph_destroy(c);
    prof_destroy(c);
    if (c->blas)
        cublasDestroy(c->blas);
    c->blas = nullptr;
    for (void *p : c->allocs)
        cudaFree(p);
    for (cbuf_t *b : c->bufs)
        delete b;
    if (c->meta_host)
        cudaFreeHost(c->meta_host);
    if (c->meta_done)
        cudaEventDestroy(c->meta_done);
    if (c->am_host)
        cudaFreeHost(c->am_host);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    delete c;
}

// Copy-on-write of KV blocks (backend.h): for each pair, every layer's K and
// V block, n_kv * B * hd bf16 each, on the stream ahead of the step.  Called
// before set_batch, so never inside a graph capture.
static int op_kv_copy(void *vctx, const int32_t *src, const int32_t *dst, uint32_t n)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    uint64_t block_elems = (uint64_t)hp->n_head_kv * c->B * hp->head_dim;
    for (uint32_t i = 0; i < n; i++) {
        if (src[i] < 0 || (uint32_t)src[i] >= c->n_blocks || dst[i] < 0 || (uint32_t)dst[i] >= c->n_blocks)
            return ERR_INVALID;
        for (uint32_t l = 0; l < hp->n_layer; l++) {
            for (uint32_t which = 0; which < 2; which++) {
                // kv: [n_layer, 2, n_blocks (+1), n_kv, B, hd]
                bf16 *base = c->kv + ((uint64_t)l * 2 + which) * c->kv_layer_elems;
                CU_TRY(&c->err, cudaMemcpyAsync(base + (uint64_t)dst[i] * block_elems,
                                                base + (uint64_t)src[i] * block_elems,
                                                block_elems * sizeof(bf16), cudaMemcpyDeviceToDevice,
                                                c->stream));
            }
        }
    }
    return 0;
}

static const backend_ops_t cuda_ops = {
    "cuda",
    op_destroy,
    op_buf_alloc,
    op_set_batch,
    op_embed,
    op_add_rmsnorm,
    op_matmul,
    op_matmul_qkv,
    op_matmul_gate_up,
    op_rope_kv_write,
    op_attention,
    op_swiglu,
    op_logits,
    op_logits_argmax,
    op_buf_write,
    op_buf_read,
    op_last_error,
    prof_report,
    op_activation_bytes,
    op_graph_stats,
    op_kv_copy,
};

// The same table without logits_argmax: greedy tokens are then chosen by the
// host sampler from the logits (backend_opts_t.device_argmax).
static backend_ops_t without_argmax(backend_ops_t o)
{
    o.logits_argmax = nullptr;
    return o;
}
static const backend_ops_t cuda_ops_host_argmax = without_argmax(cuda_ops);

// ---------------------------------------------------------------- create

static int create(cuda_ctx_t *c, const backend_opts_t *o)
{
    const model_t *m = c->m;
    const hparams_t *hp = &m->hp;
    int dev = o->gpu_device;   // registry_pick_device checked it exists
    CU_TRY(&c->err, cudaSetDevice(dev));
    cudaDeviceProp prop;
    CU_TRY(&c->err, cudaGetDeviceProperties(&prop, dev));
    c->n_sms = (uint32_t)prop.multiProcessorCount;
    CU_TRY(&c->err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(&c->err, cublasCreate(&c->blas));
    CUBLAS_TRY(&c->err, cublasSetStream(c->blas, c->stream));
    CUBLAS_TRY(&c->err, cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    int rc;
    if (c->graphs) {
        // A capture may not allocate: cuBLAS gets its workspace now, of the
        // size its documentation recommends (32 MiB on Hopper, 4 MiB before),
        // after cublasSetStream, which resets it.  Only with graphs on, so
        // that the eager path's GEMMs stay as they were.
        c->blas_ws_bytes = (prop.major >= 9 ? 32ull : 4ull) << 20;
        if ((rc = dev_alloc(c, &c->blas_ws, c->blas_ws_bytes)) != 0)
            return rc;
        CUBLAS_TRY(&c->err, cublasSetWorkspace(c->blas, c->blas_ws, c->blas_ws_bytes));
    }

    rc = upload_weights(c);
    if (rc != 0)
        return rc;

    uint32_t half = hp->rope_dim / 2;
    std::vector<double> inv(half);
    for (uint32_t i = 0; i < half; i++) {
        inv[i] = pow((double)hp->rope_theta, -2.0 * i / hp->rope_dim);
        if (m->rope_freq_factors != nullptr)
            inv[i] /= m->rope_freq_factors[i];
    }
    if ((rc = dev_alloc(c, (void **)&c->inv_freq, half * 8)) != 0)
        return rc;
    // On the stream, like every setup copy: the legacy default stream is not
    // ordered with a non-blocking one.  Pageable: inv is staged before return.
    CU_TRY(&c->err, cudaMemcpyAsync(c->inv_freq, inv.data(), half * 8, cudaMemcpyHostToDevice, c->stream));

    // Workspaces: the fused GEMMs' outputs for the step's token budget, the
    // logit rows for the most a step may have (one per sequence).
    uint64_t T = c->max_tokens, L = c->max_logits;
    uint64_t qkvd = (uint64_t)(hp->n_head + 2 * hp->n_head_kv) * hp->head_dim;
    uint64_t ws[5] = { T * qkvd * 4, T * 2 * hp->n_ff * 4, L * hp->n_embd * 2, L * hp->n_vocab * 4,
                       L * sizeof *c->am_dev };
    if ((rc = dev_alloc(c, (void **)&c->qkv, ws[0])) || (rc = dev_alloc(c, (void **)&c->gu, ws[1])) ||
        (rc = dev_alloc(c, (void **)&c->logit_x, ws[2])) || (rc = dev_alloc(c, (void **)&c->logits_dev, ws[3])) ||
        (rc = dev_alloc(c, (void **)&c->am_dev, ws[4])))
        return rc;
    for (uint64_t w : ws)
        c->act_bytes += w;
    CU_TRY(&c->err, cudaMallocHost(&c->am_host, L * sizeof *c->am_host));

    // The KV pool: a share of the device memory, or an explicit size.
    size_t free_b = 0, total_b = 0;
    CU_TRY(&c->err, cudaMemGetInfo(&free_b, &total_b));
    uint64_t block_bytes = (uint64_t)hp->n_layer * 2 * hp->n_head_kv * c->B * hp->head_dim * 2;
    uint64_t kv_bytes = o->kv_bytes;
    uint64_t reserve = 256ull << 20; // attention workspace, cuBLAS, the batch, decode graphs
    if (o->gpu_memory_fraction > 0.0) {
        double keep = (1.0 - o->gpu_memory_fraction) * (double)total_b;
        kv_bytes = (double)free_b > keep + reserve ? (uint64_t)((double)free_b - keep - reserve) : 0;
    }
    // With graphs one more block, inside the same budget, takes the padding tokens' keys.
    uint64_t nb = kv_bytes / block_bytes, nb_alloc = nb;
    if (c->graphs && nb > 0)
        nb--;
    if (nb == 0 || nb > INT32_MAX - 1) {
        snprintf(c->err.msg, sizeof c->err.msg,
                 "no device memory is left for the KV cache (%.0f MiB free of %.0f MiB)",
                 free_b / 1048576.0, total_b / 1048576.0);
        return ERR_NOMEM;
    }
    c->n_blocks = (uint32_t)nb;
    c->pad_block = (uint32_t)nb;
    nb_alloc = nb + (c->graphs ? 1 : 0);
    c->kv_layer_elems = nb_alloc * hp->n_head_kv * c->B * hp->head_dim;
    if ((rc = dev_alloc(c, (void **)&c->kv, nb_alloc * block_bytes)) != 0)
        return rc;
    CU_TRY(&c->err, cudaMemsetAsync(c->kv, 0, nb_alloc * block_bytes, c->stream));
    uint64_t pool_tokens = (uint64_t)nb * c->B;
    c->max_ctx = (uint32_t)(pool_tokens < hp->n_ctx_train ? pool_tokens : hp->n_ctx_train);

    // Attention partials: room for every split att_choose_splits makes.
    c->attn_work_floats = att_work_floats(c->n_sms, hp->n_head_kv, hp->n_head, hp->head_dim, T, c->max_ctx);
    if ((rc = dev_alloc(c, (void **)&c->attn_work, c->attn_work_floats * 4)) != 0)
        return rc;

    // The packed batch: 3 ints per token, a table offset per sequence, logit rows, block tables.
    uint64_t max_tab = T * (uint64_t)cdiv(c->max_ctx, c->B);
    c->meta_cap = 8 * T + max_tab;
    CU_TRY(&c->err, cudaMallocHost(&c->meta_host, c->meta_cap * 4));
    CU_TRY(&c->err, cudaEventCreateWithFlags(&c->meta_done, cudaEventDisableTiming));
    if ((rc = dev_alloc(c, (void **)&c->meta_dev, c->meta_cap * 4)) != 0)
        return rc;
    CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
    log_info("cuda: %s, %u SMs; weights %.0f MiB as %s; KV cache %u blocks of %u tokens (%.0f MiB)",
             prop.name, c->n_sms, (double)m->weight_bytes / 1048576.0,
             c->native ? "native (packed where a kernel serves the type, else bf16)"
                       : c->wtype == CUDA_R_16F ? "fp16" : "bf16",
             c->n_blocks, c->B, nb * block_bytes / 1048576.0);
    if (c->graphs)
        graph_init(c);
    if (c->profile && (rc = prof_init(c, hp->n_layer)) != 0)
        return rc;
    return 0;
}

extern "C" int cuda_backend_create(backend_t **out, const model_t *m, const backend_opts_t *o,
                                   char *err, size_t errlen)
{
    const hparams_t *hp = &m->hp;
    *out = nullptr;
    if ((hp->head_dim != 64 && hp->head_dim != 128) || hp->n_head % hp->n_head_kv != 0 ||
        hp->n_head / hp->n_head_kv > 8)
        return err_set(err, errlen, ERR_UNSUPPORTED,
                       "cuda backend: head_dim %u with %u heads per KV head is not supported "
                       "(head_dim 64 or 128, at most 8 heads per KV head)",
                       hp->head_dim, hp->n_head_kv ? hp->n_head / hp->n_head_kv : 0);
    cuda_ctx_t *c = new cuda_ctx_t();
    c->m = m;
    c->poison = o->poison;
    c->max_tokens = o->max_tokens;
    c->max_logits = o->max_seqs > 0 && o->max_seqs < o->max_tokens ? o->max_seqs : o->max_tokens;
    c->B = o->block_tokens ? o->block_tokens : BK_DEFAULT_BLOCK_TOKENS;
    c->graphs = o->cuda_graphs > 0 || (o->cuda_graphs == 0 && CUDA_GRAPHS_DEFAULT);
    c->profile = o->profile != 0;
    if (c->profile)
        c->graphs = 0;      // a replayed graph has no operations to time
    c->native = o->native_weights != 0;
    c->wtype = o->fp16_weights && !c->native ? CUDA_R_16F : CUDA_R_16BF;
    int rc = create(c, o);
    if (rc != 0) {
        err_set(err, errlen, rc, "cuda backend: %s", c->err.msg[0] ? c->err.msg : "out of memory");
        op_destroy(c);
        return rc;
    }
    backend_t *b = (backend_t *)calloc(1, sizeof *b);
    if (b == nullptr) {
        op_destroy(c);
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    }
    bool argmax = o->device_argmax > 0 || (o->device_argmax == 0 && c->graphs);
    b->ops = argmax ? &cuda_ops : &cuda_ops_host_argmax;
    b->ctx = c;
    b->n_kv_blocks = c->n_blocks;
    b->block_tokens = c->B;
    *out = b;
    return 0;
}
