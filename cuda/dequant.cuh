// dequant.cuh - the weight-format kernels of dequant.cu, for upload.cu (the
// weights at start) and limits.cu (random inputs of the GEMM ceiling).
// Each launches on `stream` and returns 0, or ERR_UNSUPPORTED (an unknown
// type), or ERR_BACKEND when the launch failed.
#pragma once

#include "common.cuh"

extern "C" {

// dst_dev: [n_elems] in dst_type (CUDA_R_16BF or CUDA_R_16F) from src_dev,
// whole blocks of the GGUF type `type` (engine/quant.h) on the device.
int cuda_dequant(int type, const void *src_dev, void *dst_dev, cudaDataType dst_type, uint64_t n_elems,
                 cudaStream_t stream);

// dst_dev: [n] in dst_type, offset + 1.7 scale u, u uniform in [-1, 1) hashed from seed and index.
int cuda_fill_random(void *dst_dev, cudaDataType dst_type, uint64_t n, uint64_t seed, float scale, float offset,
                     cudaStream_t stream);

// Add to *count_dev (device memory) the values of p_dev [n] in `type`
// (CUDA_R_16BF or CUDA_R_16F) that are inf or NaN.
int cuda_count_nonfinite(const void *p_dev, cudaDataType type, uint64_t n, unsigned *count_dev,
                         cudaStream_t stream);
}
