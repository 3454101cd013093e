// kernels.cu - the small fused kernels of the CUDA backend: embedding
// gather, residual add + RMSNorm, RoPE + KV-cache write, SwiGLU, the
// logit rows' final norm, the greedy argmax of logit rows.  Each kernel
// states its grid.
#include <cfloat>

#include "common.cuh"
#include "kernels.cuh"

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

// ---------------------------------------------------------------- rope + kv write

// grid: n_tokens, block: 128.
// qkv:   [n_tokens, (n_head + 2 n_kv) * hd] f32, the fused projection
// q:     [n_tokens, n_head * hd] f32, rotated
// kc, vc: this layer's cache [n_blocks, n_kv, B, hd] bf16
__global__ void rope_kv_kernel(const float *__restrict__ qkv, float *__restrict__ q,
                               bf16 *__restrict__ kc, bf16 *__restrict__ vc,
                               const int32_t *__restrict__ pos, const int32_t *__restrict__ tok_seq,
                               const int32_t *__restrict__ seq_table_off,
                               const int32_t *__restrict__ tables, const double *__restrict__ inv_freq,
                               rope_dims_t dm)
{
    extern __shared__ float cs[]; // [rope_dim / 2] cos, then [rope_dim / 2] sin
    uint32_t t = blockIdx.x, half = dm.rope_dim / 2;
    int32_t p = pos[t];
    for (uint32_t i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos((double)p * inv_freq[i], &s, &c);
        cs[i] = (float)c;
        cs[half + i] = (float)s;
    }
    __syncthreads();

    uint32_t hd = dm.head_dim, nq = dm.n_head, nkv = dm.n_kv;
    uint64_t row = (uint64_t)(nq + 2 * nkv) * hd;
    const float *src = qkv + t * row;
    int32_t blk = tables[seq_table_off[tok_seq[t]] + p / (int32_t)dm.block_tokens];
    uint32_t slot = (uint32_t)p % dm.block_tokens;

    // Rotated pairs of q heads then k heads; (a, b) per the layout.
    uint32_t n_pairs = (nq + nkv) * (hd / 2);
    for (uint32_t w = threadIdx.x; w < n_pairs; w += blockDim.x) {
        uint32_t h = w / (hd / 2), i = w % (hd / 2);
        uint32_t a, b;
        float c = 1.0f, s = 0.0f;
        if (i < half) {
            a = dm.interleaved ? 2 * i : i;
            b = dm.interleaved ? 2 * i + 1 : i + half;
            c = cs[i];
            s = cs[half + i];
        } else {
            // dimensions past rope_dim are not rotated: pair them up in place
            uint32_t k = i - half;
            a = dm.rope_dim + 2 * k;
            b = a + 1;
        }
        float x0 = src[(uint64_t)h * hd + a], x1 = src[(uint64_t)h * hd + b];
        float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
        if (h < nq) {
            q[t * (uint64_t)nq * hd + (uint64_t)h * hd + a] = y0;
            q[t * (uint64_t)nq * hd + (uint64_t)h * hd + b] = y1;
        } else {
            uint64_t base = (((uint64_t)blk * nkv + (h - nq)) * dm.block_tokens + slot) * hd;
            kc[base + a] = __float2bfloat16(y0);
            kc[base + b] = __float2bfloat16(y1);
        }
    }
    for (uint32_t w = threadIdx.x; w < nkv * hd; w += blockDim.x) {
        uint32_t h = w / hd, i = w % hd;
        uint64_t base = (((uint64_t)blk * nkv + h) * dm.block_tokens + slot) * hd;
        vc[base + i] = __float2bfloat16(src[(uint64_t)(nq + nkv + h) * hd + i]);
    }
}

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
// grid: cdiv(n, 256), block: 256
__global__ void poison_kernel(uint32_t *p, uint64_t n_words)
{
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n_words)
        p[i] = 0x7fc07fc0u; // a float NaN, and two bf16 NaNs or two fp16 NaNs
}

// ---------------------------------------------------------------- greedy argmax

// A running greedy choice over some of a row's logits: the largest value m
// (+inf taken as FLT_MAX), its lowest id i (-1 while every value seen is
// -inf), s = sum of e^(x - m) over the values seen, and whether a NaN was.
struct am_acc_t {
    float m, s;
    int32_t i, nan;
};

__device__ static inline void am_push(am_acc_t &a, float x, int32_t id)
{
    if (x != x) {
        a.nan = 1;
        return;
    }
    x = fminf(x, FLT_MAX);
    if (x > a.m) {          // strictly greater: a thread sees its ids in increasing order
        a.s = a.s * expf(a.m - x) + 1.0f;   // 0 * e^-inf = 0 while nothing was seen
        a.m = x;
        a.i = id;
    } else if (x > -INFINITY) {
        a.s += expf(x - a.m);
    }
}

// Merge b into a: the larger value, the lower id among equals (any order of merging gives the same id).
__device__ static inline void am_merge(am_acc_t &a, const am_acc_t &b)
{
    float M = fmaxf(a.m, b.m);
    float sa = a.m == -INFINITY ? 0.0f : a.s * expf(a.m - M);
    float sb = b.m == -INFINITY ? 0.0f : b.s * expf(b.m - M);
    if (b.m > a.m || (b.m == a.m && b.i < a.i))
        a.i = b.i;
    a.m = M;
    a.s = sa + sb;
    a.nan |= b.nan;
}

__device__ static inline void am_warp(am_acc_t &a)
{
    for (int o = 16; o > 0; o >>= 1) {
        am_acc_t b;
        b.m = __shfl_xor_sync(0xffffffffu, a.m, o);
        b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
        b.i = __shfl_xor_sync(0xffffffffu, a.i, o);
        b.nan = __shfl_xor_sync(0xffffffffu, a.nan, o);
        am_merge(a, b);
    }
}

#define AM_THREADS 512
#define AM_UNROLL 4

// grid: n_rows, block: AM_THREADS.  logits: [n_rows, V] f32; out: [n_rows].
// Each thread walks its 16-byte pieces (or, when V is not a multiple of 4,
// single values) in increasing id order, AM_UNROLL loads in flight, then
// the block reduces: warp shuffles, then warp 0 over the warps' results.
// logprob = x[i] - log(sum e^x) = -log(s), the sampler's step-4 value.
__global__ void __launch_bounds__(AM_THREADS)
argmax_kernel(const float *__restrict__ logits, uint32_t V, argmax_out_t *__restrict__ out)
{
    __shared__ am_acc_t part[AM_THREADS / 32];
    const float *row = logits + (uint64_t)blockIdx.x * V;
    const uint32_t nt = blockDim.x;
    am_acc_t a = { -INFINITY, 0.0f, -1, 0 };
    if (V % 4 == 0) {
        const float4 *row4 = (const float4 *)row;
        const uint32_t n4 = V / 4;
        for (uint32_t c = threadIdx.x; c < n4; c += AM_UNROLL * nt) {
            float4 v[AM_UNROLL];
#pragma unroll
            for (int u = 0; u < AM_UNROLL; u++)
                if (c + u * nt < n4)
                    v[u] = row4[c + u * nt];
#pragma unroll
            for (int u = 0; u < AM_UNROLL; u++) {
                if (c + u * nt >= n4)
                    break;
                int32_t id = (int32_t)(4 * (c + u * nt));
                am_push(a, v[u].x, id);
                am_push(a, v[u].y, id + 1);
                am_push(a, v[u].z, id + 2);
                am_push(a, v[u].w, id + 3);
            }
        }
    } else {
        for (uint32_t j = threadIdx.x; j < V; j += nt)
            am_push(a, row[j], (int32_t)j);
    }
    am_warp(a);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0)
        part[warp] = a;
    __syncthreads();
    if (warp == 0) {
        const int nw = (int)(nt >> 5);
        a = lane < nw ? part[lane] : am_acc_t{ -INFINITY, 0.0f, -1, 0 };
        am_warp(a);
        if (lane == 0) {
            argmax_out_t r;
            r.token = a.nan ? -1 : a.i;
            r.logprob = r.token >= 0 ? -logf(a.s) : 0.0f;
            out[blockIdx.x] = r;
        }
    }
}

// ---------------------------------------------------------------- launchers

void launch_embed(cudaStream_t s, cudaDataType t, const int32_t *tokens, const w16_t *emb, float *x, uint32_t n,
                  uint32_t d)
{
    if (t == CUDA_R_16F)
        embed_kernel<f16><<<n, 256, 0, s>>>(tokens, (const f16 *)emb, x, d);
    else
        embed_kernel<bf16><<<n, 256, 0, s>>>(tokens, (const bf16 *)emb, x, d);
}

void launch_add_rmsnorm(cudaStream_t s, cudaDataType t, float *x, const float *add, const int32_t *rows,
                        const float *g, w16_t *y, uint32_t n_rows, uint32_t d, float eps)
{
    if (t == CUDA_R_16F)
        add_rmsnorm_kernel<f16><<<n_rows, 256, 0, s>>>(x, add, rows, g, (f16 *)y, d, eps);
    else
        add_rmsnorm_kernel<bf16><<<n_rows, 256, 0, s>>>(x, add, rows, g, (bf16 *)y, d, eps);
}

void launch_rope_kv(cudaStream_t s, const float *qkv, float *q, bf16 *kc, bf16 *vc, const int32_t *pos,
                    const int32_t *tok_seq, const int32_t *seq_table_off, const int32_t *tables,
                    const double *inv_freq, uint32_t n_tokens, rope_dims_t dm)
{
    rope_kv_kernel<<<n_tokens, 128, dm.rope_dim * sizeof(float), s>>>(qkv, q, kc, vc, pos, tok_seq,
                                                                      seq_table_off, tables, inv_freq, dm);
}

void launch_swiglu(cudaStream_t s, cudaDataType t, const float *gu, w16_t *out, uint32_t n_tokens, uint32_t ff)
{
    uint64_t n = (uint64_t)n_tokens * ff;
    if (t == CUDA_R_16F)
        swiglu_kernel<f16><<<cdiv(n, 256), 256, 0, s>>>(gu, (f16 *)out, ff, n);
    else
        swiglu_kernel<bf16><<<cdiv(n, 256), 256, 0, s>>>(gu, (bf16 *)out, ff, n);
}

void launch_poison(cudaStream_t s, void *p, uint64_t bytes)
{
    uint64_t n = bytes / 4;
    if (n > 0)
        poison_kernel<<<cdiv(n, 256), 256, 0, s>>>((uint32_t *)p, n);
}

void launch_argmax(cudaStream_t s, const float *logits, uint32_t n_rows, uint32_t V, argmax_out_t *out)
{
    if (n_rows > 0)
        argmax_kernel<<<n_rows, AM_THREADS, 0, s>>>(logits, V, out);
}

// For tests (tests/gpu/test_cuda_decode.c): the argmax kernel over host logits
// [n_rows, V]; out: [n_rows] {token, logprob} (engine/backend.h's
// bk_argmax_t).  Synchronous, allocates; 0 or -11 (ERR_BACKEND).
extern "C" int cuda_argmax_rows(const float *logits, uint32_t n_rows, uint32_t V, void *out)
{
    float *dl = nullptr;
    argmax_out_t *dout = nullptr;
    uint64_t bytes = (uint64_t)n_rows * V * sizeof(float);
    int ok = cudaMalloc(&dl, bytes) == cudaSuccess && cudaMalloc(&dout, n_rows * sizeof *dout) == cudaSuccess &&
             cudaMemcpy(dl, logits, bytes, cudaMemcpyHostToDevice) == cudaSuccess;
    if (ok) {
        launch_argmax(0, dl, n_rows, V, dout);
        ok = cudaGetLastError() == cudaSuccess &&
             cudaMemcpy(out, dout, n_rows * sizeof *dout, cudaMemcpyDeviceToHost) == cudaSuccess;
    }
    cudaFree(dl);
    cudaFree(dout);
    return ok ? 0 : -11;
}
