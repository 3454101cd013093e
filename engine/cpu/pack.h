/*
 * pack.h - the CPU backend's packed copies of the weight matrices
 * (cpu-repack): the matrices the `fast` kernels of the AVX2, AVX-VNNI
 * and AVX512 levels read in tiles of sixteen rows (cpu_matmul_pack),
 * copied at start on the backend's threads, and the huge-page advice the
 * copy and the KV pool share.
 */
#ifndef LLAMAD_ENGINE_CPU_PACK_H
#define LLAMAD_ENGINE_CPU_PACK_H

#include <stdint.h>

#include "../backend.h"
#include "pool.h"

typedef struct {
    /* [n_layer * W_COUNT + 1]: each layer matrix's packed copy (index
     * layer * W_COUNT + role) and last the output's, or NULL; NULL where
     * none is packed */
    const void **slot;
    void *buf;              /* the copies, one allocation */
    uint32_t n;             /* how many */
} cpu_packed_t;

/*
 * Pack every matrix that the kernels of this level and precision read
 * packed into pk (zeroed by the caller), on pool's threads, and drop the
 * packed matrices' pages of the file mapping.  Returns 0 (pk->n may be 0:
 * nothing packs), ERR_NOMEM, or ERR_STATE where a matrix that
 * cpu_matmul_packed_bytes sized would not pack (a fault in the kernels'
 * tables, logged); pk is freed by cpu_packed_free either way.
 */
int cpu_pack_weights(cpu_packed_t *pk, const model_t *m, pool_t *pool);
void cpu_packed_free(cpu_packed_t *pk);

/* Layer l's matrix or norm of role r. */
const weight_t *cpu_layer_weight(const model_t *m, uint32_t l, w_role_t r);

/* Advise transparent huge pages over [p, p + bytes) (pack.c). */
void cpu_huge_pages(void *p, uint64_t bytes);

#endif
