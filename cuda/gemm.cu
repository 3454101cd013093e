// gemm.cu - the weight GEMMs on cuBLAS: 16-bit inputs (wtype), fp32
// accumulate and output.  Q, K and V run as one GEMM over the concatenated
// weights into `qkv`, gate and up as one into `gu`; W_O and W_DOWN alone.
#include <cublas_v2.h>

#include "backend_cuda.cuh"

extern "C" {
#include "base/err.h"
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
    const float one = 1.0f, zero = 0.0f;
    if (do_poison(c, y, (uint64_t)T * n_out * 4))
        return ERR_BACKEND;
    // Column-major view: Y^T [n_out, T] = W [n_out, n_in] (stored as its transpose) x X^T [n_in, T].
    CUBLAS_TRY(&c->err, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)T, (int)n_in, &one,
                                     w, c->wtype, (int)n_in, x, c->wtype, (int)n_in, &zero,
                                     y, CUDA_R_32F, (int)n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

int eager_matmul(void *vctx, uint32_t layer, w_role_t role, bk_buf_t vx, bk_buf_t vy)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    cbuf_t *x = (cbuf_t *)vx, *y = (cbuf_t *)vy;
    const layer_dev_t &L = c->layers[layer];
    uint32_t T = c->batch->n_tokens, d = hp->n_embd, qd = hp->n_head * hp->head_dim;
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
    return gemm(c, c->layers[layer].wqkv, rows, hp->n_embd, ((cbuf_t *)vx)->h, c->batch->n_tokens, c->qkv);
}

int eager_matmul_gate_up(void *vctx, uint32_t layer, bk_buf_t vx, bk_buf_t gate, bk_buf_t up)
{
    (void)gate; (void)up;
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    const hparams_t *hp = &c->m->hp;
    return gemm(c, c->layers[layer].wgu, 2 * hp->n_ff, hp->n_embd, ((cbuf_t *)vx)->h, c->batch->n_tokens, c->gu);
}
