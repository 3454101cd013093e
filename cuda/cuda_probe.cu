// cuda_probe.cu - find CUDA devices without failing when there are none.
#include <cstdio>
#include <cstdlib>
#include <strings.h>
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

// The UUID as nvidia-smi -L prints it: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
static void format_uuid(const cudaUUID_t *u, char out[41])
{
    static const int dash_after[] = {4, 6, 8, 10};
    const unsigned char *b = (const unsigned char *)u->bytes;
    int o = snprintf(out, 41, "GPU-");
    for (int i = 0, d = 0; i < 16 && o < 39; i++) {
        if (d < 4 && i == dash_after[d]) {
            out[o++] = '-';
            d++;
        }
        o += snprintf(out + o, (size_t)(41 - o), "%02x", b[i]);
    }
    out[40] = '\0';
}

extern "C" int cuda_device_find(int index, const char *uuid, int *found, char *desc, size_t desclen)
{
    *found = -1;
    int n = cuda_device_count(desc, desclen);
    if (n <= 0)
        return 0;
    if (uuid == nullptr) {
        if (index < 0 || index >= n) {
            const char *vis = getenv("CUDA_VISIBLE_DEVICES");
            snprintf(desc, desclen, "device %d does not exist: %d device%s visible%s%.60s%s", index, n,
                     n == 1 ? " is" : "s are", vis ? " (CUDA_VISIBLE_DEVICES=" : "", vis ? vis : "",
                     vis ? ")" : "");
            return n;
        }
        *found = index;
    } else {
        for (int i = 0; i < n && *found < 0; i++) {
            cudaDeviceProp p;
            char s[41];
            if (cudaGetDeviceProperties(&p, i) != cudaSuccess)
                continue;
            format_uuid(&p.uuid, s);
            if (strcasecmp(s, uuid) == 0)
                *found = i;
        }
        if (*found < 0) {
            snprintf(desc, desclen, "no visible device has the UUID %.40s (%d visible; nvidia-smi -L lists them)",
                     uuid, n);
            return n;
        }
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, *found) == cudaSuccess)
        snprintf(desc, desclen, "%s, compute capability %d.%d, %.1f GiB", p.name, p.major, p.minor,
                 (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    else
        snprintf(desc, desclen, "CUDA device %d", *found);
    return n;
}

/* ---------------------------------------------------------------- module entry point */

#include "config.h"
extern "C" {
#include "engine/backend_module.h"
}
#ifndef LLAMAD_BUILD_ID
#define LLAMAD_BUILD_ID PACKAGE_VERSION
#endif

/* The table llamad's registry opens llamad-cuda.so for (engine/backend_module.h). */
extern "C" __attribute__((visibility("default"))) const bk_module_t *llamad_backend_module(void)
{
    static const bk_module_t mod = {
        BK_MODULE_ABI, BK_MODULE_SIZES, "cuda", LLAMAD_BUILD_ID, cuda_device_find, cuda_backend_create,
    };
    return &mod;
}
