// swiglu.cu - the SwiGLU gate: out = silu(gate) * up, from the fused
// gate|up GEMM output into the down projection's 16-bit input.  Kernel,
// launcher, and the backend's eager operation.
#include "backend_cuda.cuh"

// ---------------------------------------------------------------- swiglu

// grid: cdiv(n_tokens * ff, 256), block: 256.  gu: [n_tokens, 2 ff] f32 (gate | up); out: [n_tokens, ff] T
template <typename T>
__global__ void swiglu_kernel(const float *__restrict__ gu, T *__restrict__ out, uint32_t ff, uint64_t n)
{
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    uint64_t t = i / ff, j = i % ff;
    float g = gu[t * 2 * ff + j], u = gu[t * 2 * ff + ff + j];
    out[i] = to16<T>(g / (1.0f + __expf(-g)) * u);
}

// NaN everywhere: outputs are poisoned before each operation in tests.
void launch_swiglu(cudaStream_t s, cudaDataType t, const float *gu, w16_t *out, uint32_t n_tokens, uint32_t ff)
{
    uint64_t n = (uint64_t)n_tokens * ff;
    if (t == CUDA_R_16F)
        swiglu_kernel<f16><<<cdiv(n, 256), 256, 0, s>>>(gu, (f16 *)out, ff, n);
    else
        swiglu_kernel<bf16><<<cdiv(n, 256), 256, 0, s>>>(gu, (bf16 *)out, ff, n);
}

// ---------------------------------------------------------------- operation

int eager_swiglu(void *vctx, bk_buf_t vgate, bk_buf_t vup)
{
    (void)vup;
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    cbuf_t *g = (cbuf_t *)vgate;
    uint32_t T = c->batch->n_tokens;
    if (do_poison(c, g->h, (uint64_t)T * g->cols * 2))
        return ERR_BACKEND;
    launch_swiglu(c->stream, c->wtype, c->gu, g->h, T, c->m->hp.n_ff);
    CU_LAUNCHED(&c->err);
    return 0;
}
