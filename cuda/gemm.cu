// gemm.cu - the weight GEMMs on cuBLAS: 16-bit inputs (wtype), fp32
// accumulate and output.  Q, K and V run as one GEMM over the concatenated
// weights into `qkv`, gate and up as one into `gu`; W_O and W_DOWN alone.
// With gpu-weight-type = native, a fused group that holds a packed weight
// runs weight by weight instead (native_matmul): packed weights through
// cuda/qmatvec.cu for steps of up to QMV_MAX_T tokens, through a bf16
// scratch and cuBLAS above that.
#include <cublas_v2.h>

#include "backend_cuda.cuh"

extern "C" {
#include "base/err.h"
#include "base/quant.h"
}

const char *cublas_str(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
    }
}

// y[T, n_out] (fp32) = x[T, n_in] W^T, W [n_out, n_in] row-major; x and W in wtype.
int gemm(cuda_ctx_t *c, const w16_t *w, uint32_t n_out, uint32_t n_in, const w16_t *x, uint32_t T, float *y)
{
    if (do_poison(c, y, (uint64_t)T * n_out * 4))
        return ERR_BACKEND;
    return gemm_ld(c, w, n_out, n_in, x, T, y, n_out);
}

int gemm_ld(cuda_ctx_t *c, const w16_t *w, uint32_t n_out, uint32_t n_in, const w16_t *x, uint32_t T, float *y,
            uint32_t ldy)
{
    const float one = 1.0f, zero = 0.0f;
    // Column-major view: Y^T [n_out, T] = W [n_out, n_in] (stored as its transpose) x X^T [n_in, T].
    CUBLAS_TRY(&c->err, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)T, (int)n_in, &one,
                                     w, c->wtype, (int)n_in, x, c->wtype, (int)n_in, &zero,
                                     y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

// ---------------------------------------------------------------- native weights (gpu-weight-type = native)

// x [T, n_in] (wtype) as int8 blocks for the matrix-vector kernel, once per
// input: the callers below quantise before their first packed weight.
static int quantize_input(cuda_ctx_t *c, const w16_t *x, uint32_t T, uint32_t n_in)
{
    if (qmv_quantize(c->stream, x, T, n_in, c->qx, c->qx_ds) != 0)
        return cuda_fail(&c->err, "quantize_x_kernel", "launch failed", __FILE__, __LINE__);
    return 0;
}

// Columns [0, n_out) of y[T, ldy] = x W^T for one role's weight: packed
// with T <= QMV_MAX_T, the matrix-vector kernel over the input quantised
// by quantize_input; packed with larger T, the weight dequantised into
// the bf16 scratch, then cuBLAS (the simplest correct path: it reads the
// packed weight, writes and reads it again as bf16, so a step moves about
// 2.5x the bf16 path's weight bytes (Q4): small next to a prefill's
// FLOPs, but a batch-32 decode step pays it whole (docs/PERFORMANCE.md);
// a tensor-core kernel over packed tiles is the next step);
// not packed, cuBLAS over the wtype copy.
static int role_matmul(cuda_ctx_t *c, const layer_dev_t &L, w_role_t role, const w16_t *x, uint32_t T,
                       uint32_t n_out, uint32_t n_in, float *y, uint32_t ldy)
{
    const qmat_t *q = &L.qm[role];
    if (q->p == nullptr)
        return gemm_ld(c, L.w[role], n_out, n_in, x, T, y, ldy);
    if (T <= QMV_MAX_T) {
        int rc = qmv_launch(c->stream, q, c->qx, c->qx_ds, T, y, ldy);
        return rc == 0 ? 0 : cuda_fail(&c->err, "qmv_kernel", qtype_info(q->L.type)->name, __FILE__, __LINE__);
    }
    if (qmat_dequant(c->stream, q, c->qscratch) != 0)
        return cuda_fail(&c->err, "qdequant_kernel", "launch failed", __FILE__, __LINE__);
    return gemm_ld(c, c->qscratch, n_out, n_in, x, T, y, ldy);
}

// The roles in `roles` (their outputs side by side in y[T, ldy], in that
// order) from one input: native mode's matmul, matmul_qkv and matmul_gate_up.
static int native_matmul(cuda_ctx_t *c, uint32_t layer, const w_role_t *roles, const uint32_t *n_outs, int n_roles,
                         uint32_t n_in, const w16_t *x, float *y, uint32_t ldy)
{
    const layer_dev_t &L = c->layers[layer];
    uint32_t T = c->batch->n_tokens;
    if (do_poison(c, y, (uint64_t)T * ldy * 4))
        return ERR_BACKEND;
    bool any_packed = false;
    for (int i = 0; i < n_roles; i++)
        any_packed |= L.qm[roles[i]].p != nullptr;
    int rc = any_packed && T <= QMV_MAX_T ? quantize_input(c, x, T, n_in) : 0;
    for (int i = 0, col = 0; rc == 0 && i < n_roles; col += (int)n_outs[i], i++)
        rc = role_matmul(c, L, roles[i], x, T, n_outs[i], n_in, y + col, ldy);
    return rc;
}

int eager_matmul(void *vctx, uint32_t layer, w_role_t role, bk_buf_t vx, bk_buf_t vy)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    cbuf_t *x = (cbuf_t *)vx, *y = (cbuf_t *)vy;
    const layer_dev_t &L = c->layers[layer];
    uint32_t T = c->batch->n_tokens, d = hp->n_embd, qd = hp->n_head * hp->head_dim;
    if (c->native && L.wo == nullptr && role == W_O)
        return native_matmul(c, layer, &role, &d, 1, qd, x->h, y->f, d);
    if (c->native && L.wdown == nullptr && role == W_DOWN)
        return native_matmul(c, layer, &role, &d, 1, hp->n_ff, x->h, y->f, d);
    switch (role) {
    case W_O: return gemm(c, L.wo, d, qd, x->h, T, y->f);
    case W_DOWN: return gemm(c, L.wdown, d, hp->n_ff, x->h, T, y->f);
    default: return ERR_INVALID;
    }
}

int eager_matmul_qkv(void *vctx, uint32_t layer, bk_buf_t vx, bk_buf_t q, bk_buf_t k, bk_buf_t v)
{
    (void)q; (void)k; (void)v;
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    uint32_t rows = (hp->n_head + 2 * hp->n_head_kv) * hp->head_dim;
    if (c->layers[layer].wqkv == nullptr) {
        static const w_role_t roles[3] = { W_Q, W_K, W_V };
        uint32_t n[3] = { hp->n_head * hp->head_dim, hp->n_head_kv * hp->head_dim, hp->n_head_kv * hp->head_dim };
        return native_matmul(c, layer, roles, n, 3, hp->n_embd, ((cbuf_t *)vx)->h, c->qkv, rows);
    }
    return gemm(c, c->layers[layer].wqkv, rows, hp->n_embd, ((cbuf_t *)vx)->h, c->batch->n_tokens, c->qkv);
}

int eager_matmul_gate_up(void *vctx, uint32_t layer, bk_buf_t vx, bk_buf_t gate, bk_buf_t up)
{
    (void)gate; (void)up;
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    if (c->layers[layer].wgu == nullptr) {
        static const w_role_t roles[2] = { W_GATE, W_UP };
        uint32_t n[2] = { hp->n_ff, hp->n_ff };
        return native_matmul(c, layer, roles, n, 2, hp->n_embd, ((cbuf_t *)vx)->h, c->gu, 2 * hp->n_ff);
    }
    return gemm(c, c->layers[layer].wgu, 2 * hp->n_ff, hp->n_embd, ((cbuf_t *)vx)->h, c->batch->n_tokens, c->gu);
}
