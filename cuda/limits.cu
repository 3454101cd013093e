// limits.cu - the device's own ceilings, measured in the same run as the
// benchmarks they judge: copy bandwidth, read bandwidth and bf16 GEMM rate.
#include <cublas_v2.h>
#include <cstdio>
#include <vector>
#include <algorithm>

#include "common.cuh"
#include "dequant.cuh"

// The median device time (ms, between events a and b on the default stream)
// of `runs` calls of f after `warm` untimed ones.
template <typename F> static float timed_median(cudaEvent_t a, cudaEvent_t b, int warm, int runs, F f)
{
    std::vector<float> t;
    for (int i = 0; i < warm + runs; i++) {
        cudaEventRecord(a);
        f();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        if (i >= warm)
            t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// The read-only probe: every thread reads 16-byte words, four in flight,
// over a grid-stride loop, and folds them into one word that it writes only
// where the fold equals a value the random data never gives (so that the
// loads cannot be dropped, and nothing is written).
static __global__ void read_probe(const uint4 *__restrict__ x, size_t n, uint32_t never, uint32_t *sink)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    uint32_t acc = 0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        uint4 a = x[i], b = x[i + stride], c = x[i + 2 * stride], d = x[i + 3 * stride];
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        uint4 a = x[i];
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == never)
        *sink = acc;
}

// Bandwidth: a 2 GiB device-to-device copy, bytes read plus bytes written,
// and a read of the same 2 GiB (read_probe, 4 blocks of 512 threads per SM: one full wave),
// each the median of 10 after a warm-up.  GEMM: 8192^3 bf16 in, fp32
// accumulate, random inputs, median of 10.  Any result is 0 on failure.
extern "C" void cuda_measure_limits(double *bw_gbs, double *read_gbs, double *tflops, char *desc, size_t desclen)
{
    *bw_gbs = 0;
    *read_gbs = 0;
    *tflops = 0;
    cudaDeviceProp p;
    int drv = 0, rt = 0, dev = 0;
    cudaGetDevice(&dev);   // the backend's device (gpu-device)
    cudaGetDeviceProperties(&p, dev);
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    snprintf(desc, desclen, "%s, %d SMs, %.0f GiB, driver API %d.%d, runtime %d.%d", p.name, p.multiProcessorCount,
             p.totalGlobalMem / 1073741824.0, drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    const size_t bytes = 2ull << 30;
    void *x = nullptr, *y = nullptr;
    if (cudaMalloc(&x, bytes) == cudaSuccess && cudaMalloc(&y, bytes) == cudaSuccess) {
        cuda_fill_random(x, CUDA_R_16BF, bytes / 2, 1, 1.0f, 0.0f, 0);
        float ms = timed_median(a, b, 1, 10, [&] { cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice); });
        *bw_gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
        ms = timed_median(a, b, 1, 10, [&] {
            read_probe<<<p.multiProcessorCount * 4, 512>>>((const uint4 *)x, bytes / 16, 0x9e3779b9u, (uint32_t *)y);
        });
        if (cudaGetLastError() == cudaSuccess)
            *read_gbs = bytes / (ms * 1e-3) / 1e9;
    }
    cudaFree(x);
    cudaFree(y);

    const int n = 8192;
    void *A = nullptr, *B = nullptr, *C = nullptr;
    cublasHandle_t h;
    if (cudaMalloc(&A, (size_t)n * n * 2) == cudaSuccess && cudaMalloc(&B, (size_t)n * n * 2) == cudaSuccess &&
        cudaMalloc(&C, (size_t)n * n * 4) == cudaSuccess && cublasCreate(&h) == CUBLAS_STATUS_SUCCESS) {
        cuda_fill_random(A, CUDA_R_16BF, (uint64_t)n * n, 2, 1.0f, 0.0f, 0);
        cuda_fill_random(B, CUDA_R_16BF, (uint64_t)n * n, 3, 1.0f, 0.0f, 0);
        const float one = 1.0f, zero = 0.0f;
        float ms = timed_median(a, b, 3, 10, [&] {
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n, &zero,
                         C, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        });
        *tflops = 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
        cublasDestroy(h);
    }
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaGetLastError();
}

// Wall-clock of the device: synchronise, for host timers around a step.
extern "C" void cuda_sync(void)
{
    cudaDeviceSynchronize();
}
