// rmsnorm.cu - the residual add and RMSNorm (pre-normalisation):
// x += add, then y = x / sqrt(mean(x^2) + eps) * g, written in the
// GEMMs' 16-bit format.  Kernel, launcher, and the backend's eager
// operation; logits.cu runs the same launcher over the logit rows.
#include "backend_cuda.cuh"

// ---------------------------------------------------------------- reductions

__device__ static inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024).
__device__ static float block_sum(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // part[] may still be read by a previous call
    if (lane == 0)
        part[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = threadIdx.x < nw ? part[threadIdx.x] : 0.0f;
    if (warp == 0)
        v = warp_sum(v);
    if (threadIdx.x == 0)
        part[0] = v;
    __syncthreads();
    return part[0];
}

// ---------------------------------------------------------------- add + rmsnorm

// grid: n_rows, block: 256.  Row r of the output uses row rows[r] (or r when
// rows is NULL) of x and add.  x, add: [*, d] f32; g: [d] f32; y: [n_rows, d] T
template <typename T>
__global__ void add_rmsnorm_kernel(float *__restrict__ x, const float *__restrict__ add,
                                   const int32_t *__restrict__ rows, const float *__restrict__ g,
                                   T *__restrict__ y, uint32_t d, float eps)
{
    uint64_t src = rows ? (uint64_t)rows[blockIdx.x] : blockIdx.x;
    float *xr = x + src * d;
    float ss = 0.0f;
    for (uint32_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = xr[i];
        if (add != nullptr) {
            v += add[src * d + i];
            xr[i] = v;
        }
        ss += v * v;
    }
    ss = block_sum(ss);
    float scale = rsqrtf(ss / d + eps);
    for (uint32_t i = threadIdx.x; i < d; i += blockDim.x)
        y[(uint64_t)blockIdx.x * d + i] = to16<T>(xr[i] * scale * g[i]);
}

void launch_add_rmsnorm(cudaStream_t s, cudaDataType t, float *x, const float *add, const int32_t *rows,
                        const float *g, w16_t *y, uint32_t n_rows, uint32_t d, float eps)
{
    if (t == CUDA_R_16F)
        add_rmsnorm_kernel<f16><<<n_rows, 256, 0, s>>>(x, add, rows, g, (f16 *)y, d, eps);
    else
        add_rmsnorm_kernel<bf16><<<n_rows, 256, 0, s>>>(x, add, rows, g, (bf16 *)y, d, eps);
}

// ---------------------------------------------------------------- operation

int eager_add_rmsnorm(void *vctx, bk_buf_t vx, bk_buf_t vadd, uint32_t layer, w_role_t norm, bk_buf_t vy)
{
    cuda_ctx_t *c = (cuda_ctx_t *)vctx;
    cbuf_t *x = (cbuf_t *)vx, *add = (cbuf_t *)vadd, *y = (cbuf_t *)vy;
    uint32_t T = c->batch->n_tokens, d = c->m->hp.n_embd;
    const float *g = norm == W_FFN_NORM ? c->layers[layer].ffn_norm : c->layers[layer].attn_norm;
    if (do_poison(c, y->h, (uint64_t)T * d * 2))
        return ERR_BACKEND;
    launch_add_rmsnorm(c->stream, c->wtype, x->f, add ? add->f : nullptr, nullptr, g, y->h, T, d,
                       c->m->hp.rms_eps);
    CU_LAUNCHED(&c->err);
    return 0;
}
