// argmax.cu - the greedy choice of each logit row on the device (the
// decode fast path's logits_argmax): sampler.c's greedy rule and the
// chosen token's log-softmax, so that only 8 bytes a row cross back.
#include <cfloat>

#include "common.cuh"
#include "kernels.cuh"

extern "C" {
#include "base/err.h"
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

void launch_argmax(cudaStream_t s, const float *logits, uint32_t n_rows, uint32_t V, argmax_out_t *out)
{
    if (n_rows > 0)
        argmax_kernel<<<n_rows, AM_THREADS, 0, s>>>(logits, V, out);
}

// For tests (tests/gpu/test_cuda_decode.c): the argmax kernel over host logits
// [n_rows, V]; out: [n_rows] {token, logprob} (engine/backend.h's
// bk_argmax_t).  Synchronous, allocates; 0 or ERR_BACKEND.
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
    return ok ? 0 : ERR_BACKEND;
}
