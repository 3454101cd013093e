// common.cuh - what every CUDA file of the backend shares: error checks
// that record the failing call, and bf16 helpers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cstdint>
#include <cstdio>

typedef __nv_bfloat16 bf16;

// Where the first failure is recorded (one per backend context).
struct cuda_err_t {
    char msg[512];
};

// Record `what` failed with `e` at file:line; returns -11 (ERR_BACKEND).
int cuda_fail(cuda_err_t *st, const char *what, const char *detail, const char *file, int line);

#define CU_TRY(st, call)                                                              \
    do {                                                                              \
        cudaError_t e_ = (call);                                                      \
        if (e_ != cudaSuccess)                                                        \
            return cuda_fail((st), #call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

// After every launch: a launch error is reported where it happened.
#define CU_LAUNCHED(st) CU_TRY(st, cudaGetLastError())

static inline unsigned cdiv(uint64_t a, uint64_t b) { return (unsigned)((a + b - 1) / b); }
