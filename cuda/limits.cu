// limits.cu - the device's own ceilings, measured in the same run as the
// benchmarks they judge: copy bandwidth and bf16 GEMM rate.
#include <cublas_v2.h>
#include <cstdio>
#include <vector>
#include <algorithm>

#include "common.cuh"
#include "dequant.cuh"

static float median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Bandwidth: a 2 GiB device-to-device copy, bytes read plus bytes written,
// median of 10 after a warm-up.  GEMM: 8192^3 bf16 in, fp32 accumulate,
// random inputs, median of 10.  Either result is 0 on failure.
extern "C" void cuda_measure_limits(double *bw_gbs, double *tflops, char *desc, size_t desclen)
{
    *bw_gbs = 0;
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
        std::vector<float> t;
        for (int i = 0; i < 11; i++) {
            cudaEventRecord(a);
            cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice);
            cudaEventRecord(b);
            cudaEventSynchronize(b);
            float ms;
            cudaEventElapsedTime(&ms, a, b);
            if (i > 0)
                t.push_back(ms);
        }
        *bw_gbs = 2.0 * bytes / (median(t) * 1e-3) / 1e9;
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
        std::vector<float> t;
        for (int i = 0; i < 13; i++) {
            cudaEventRecord(a);
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n, &zero,
                         C, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            cudaEventRecord(b);
            cudaEventSynchronize(b);
            float ms;
            cudaEventElapsedTime(&ms, a, b);
            if (i > 2)
                t.push_back(ms);
        }
        *tflops = 2.0 * n * (double)n * n / (median(t) * 1e-3) / 1e12;
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
