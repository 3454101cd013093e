// embed.cu - the token embedding gather: x[t] = tok_embd[tokens[t]], from
// the 16-bit table into the fp32 residual stream.  Kernel, launcher, and
// the backend's eager operation.
#include "backend_cuda.cuh"

// ---------------------------------------------------------------- embed

// grid: n_tokens, block: 256.  emb: [n_vocab, d] T; x: [n_tokens, d]
template <typename T>
__global__ void embed_kernel(const int32_t *__restrict__ tokens, const T *__restrict__ emb,
                             float *__restrict__ x, uint32_t d)
{
    uint64_t row = (uint64_t)tokens[blockIdx.x];
    for (uint32_t i = threadIdx.x; i < d; i += blockDim.x)
        x[(uint64_t)blockIdx.x * d + i] = from16(emb[row * d + i]);
}

void launch_embed(cudaStream_t s, cudaDataType t, const int32_t *tokens, const w16_t *emb, float *x, uint32_t n,
                  uint32_t d)
{
    if (t == CUDA_R_16F)
        embed_kernel<f16><<<n, 256, 0, s>>>(tokens, (const f16 *)emb, x, d);
    else
        embed_kernel<bf16><<<n, 256, 0, s>>>(tokens, (const bf16 *)emb, x, d);
}

// ---------------------------------------------------------------- operation

int eager_embed(void *vctx, bk_buf_t vx)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    cbuf_t *x = (cbuf_t *)vx;
    uint32_t T = c->batch->n_tokens;
    if (do_poison(c, x->f, (uint64_t)T * x->cols * 4))
        return ERR_BACKEND;
    launch_embed(c->stream, c->wtype, c->d_tokens, c->tok_embd, x->f, T, c->m->hp.n_embd);
    CU_LAUNCHED(&c->err);
    return 0;
}
