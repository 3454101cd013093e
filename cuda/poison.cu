// poison.cu - NaN over an operation's output before it runs
// (backend_opts_t.poison, tests): an operation that leaves part of its
// output unwritten shows as NaN in the comparison with the CPU backend.
#include "backend_cuda.cuh"

// grid: cdiv(n, 256), block: 256
__global__ void poison_kernel(uint32_t *p, uint64_t n_words)
{
    uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n_words)
        p[i] = 0x7fc07fc0u; // a float NaN, and two bf16 NaNs or two fp16 NaNs
}

void launch_poison(cudaStream_t s, void *p, uint64_t bytes)
{
    uint64_t n = bytes / 4;
    if (n > 0)
        poison_kernel<<<cdiv(n, 256), 256, 0, s>>>((uint32_t *)p, n);
}

int do_poison(cuda_ctx_t *c, void *p, uint64_t bytes)
{
    if (!c->poison)
        return 0;
    launch_poison(c->stream, p, bytes);
    CU_LAUNCHED(&c->err);
    return 0;
}
