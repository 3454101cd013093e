// cuda_probe.cu - find CUDA devices without failing when there are none.
#include <cstdio>
#include <cuda_runtime.h>

extern "C" {
#include "cuda_probe.h"
}

extern "C" int cuda_device_count(char *desc, size_t desclen)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(desc, desclen, "no CUDA device (%s)", cudaGetErrorString(e));
        cudaGetLastError(); // clear the sticky-free error so later calls start clean
        return 0;
    }
    if (n == 0) {
        snprintf(desc, desclen, "no CUDA device");
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess)
        snprintf(desc, desclen, "%s, compute capability %d.%d, %.1f GiB", p.name, p.major,
                 p.minor, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    else
        snprintf(desc, desclen, "CUDA device 0");
    return n;
}
