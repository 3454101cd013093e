/*
 * forward_dump - run the engine's forward pass on given token ids and
 * write what the reference comparisons need:
 *
 *   forward-dump MODEL --tokens 1,2,3 [--all] [--greedy N] [--chunk N]
 *                [--threads N] [--portable] [--isa LEVEL] [--precision exact|fast]
 *                [--no-repack]
 *                [--backend cpu|cuda] --out LOGITS.f32
 *                [--tokens-out FILE]
 *
 * LOGITS.f32 is raw little-endian float32 [rows, n_vocab]: the last
 * prompt position's logits, or every position's with --all.  --greedy N
 * continues N tokens by argmax (one token per step, through the KV cache)
 * and writes their ids to --tokens-out.  --chunk N prefills the prompt in
 * steps of at most N tokens.  --no-repack: the CPU backend packs no
 * matrix (cpu-repack = no).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "base/err.h"
#include "engine/forward.h"
#include "engine/model/model.h"
#include "engine/registry.h"
#include "engine/cpu/matmul.h"

static int parse_ids(const char *s, int32_t **out, size_t *n)
{
    size_t cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    if (ids == NULL)
        return -1;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) {
            free(ids);
            return -1;
        }
        if (*n == cap) {
            int32_t *more = realloc(ids, (cap *= 2) * sizeof *ids);
            if (more == NULL) {
                free(ids);
                return -1;
            }
            ids = more;
        }
        ids[(*n)++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
    }
    *out = ids;
    return 0;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *out_path = NULL, *tokens_out = NULL, *tokens = NULL;
    const char *backend = "cpu", *cpu_isa = NULL, *cpu_precision = NULL;
    int all = 0, greedy = 0, chunk = 512, threads = 0, no_repack = 0;
    char err[ERR_MSG_MAX];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokens") && i + 1 < argc) tokens = argv[++i];
        else if (!strcmp(a, "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(a, "--tokens-out") && i + 1 < argc) tokens_out = argv[++i];
        else if (!strcmp(a, "--greedy") && i + 1 < argc) greedy = atoi(argv[++i]);
        else if (!strcmp(a, "--chunk") && i + 1 < argc) chunk = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(a, "--all")) all = 1;
        else if (!strcmp(a, "--portable")) cpu_isa = "portable";
        else if (!strcmp(a, "--isa") && i + 1 < argc) cpu_isa = argv[++i];
        else if (!strcmp(a, "--precision") && i + 1 < argc) cpu_precision = argv[++i];
        else if (!strcmp(a, "--no-repack")) no_repack = 1;
        else if (a[0] != '-' && model_path == NULL) model_path = a;
        else {
            fprintf(stderr, "forward-dump: bad argument %s\n", a);
            return 2;
        }
    }
    int32_t *ids;
    size_t n;
    if (!model_path || !tokens || !out_path || parse_ids(tokens, &ids, &n) != 0 || n == 0 || chunk < 1) {
        fprintf(stderr, "usage: forward-dump MODEL --tokens 1,2,3 [--all] [--greedy N] [--chunk N] "
                        "[--threads N] [--portable] [--isa LEVEL] [--precision exact|fast] [--backend cpu|cuda] "
                        "--out FILE [--tokens-out FILE]\n");
        return 2;
    }

    model_t *m;
    backend_t *b;
    forward_t *f;
    if (model_create(&m, model_path, "auto", err, sizeof err) != 0) {
        fprintf(stderr, "forward-dump: %s\n", err);
        return 1;
    }
    uint32_t V = m->hp.n_vocab;
    uint64_t ctx = n + (size_t)greedy + 16;
    backend_opts_t bo = { .n_threads = threads, .cpu_isa = cpu_isa, .cpu_precision = cpu_precision,
                          .cpu_no_repack = no_repack, .kv_bytes = ctx * model_kv_bytes_per_token(m) + (64u << 20),
                          .block_tokens = 16, .max_tokens = (uint32_t)chunk };
    if (registry_create_backend(backend, &b, m, &bo, err, sizeof err) != 0 ||
        forward_create(&f, m, b, (uint32_t)chunk, err, sizeof err) != 0) {
        fprintf(stderr, "forward-dump: %s\n", err);
        return 1;
    }
    int32_t *table = malloc(b->n_kv_blocks * sizeof *table);
    for (uint32_t i = 0; i < b->n_kv_blocks; i++)
        table[i] = (int32_t)i;
    size_t total = n + (size_t)greedy;
    int32_t *seq = malloc(total * sizeof *seq);
    memcpy(seq, ids, n * sizeof *seq);
    float *logits = malloc((size_t)chunk * V * sizeof(float));
    int32_t *pos = malloc((size_t)chunk * sizeof *pos);
    int32_t *rows = malloc((size_t)chunk * sizeof *rows);
    FILE *out = fopen(out_path, "wb");
    if (!table || !seq || !logits || !pos || !rows || !out) {
        fprintf(stderr, "forward-dump: cannot allocate or open %s\n", out_path);
        return 1;
    }

    size_t done = 0;
    int32_t next = -1;
    while (done < total) {
        size_t c = done < n ? (n - done < (size_t)chunk ? n - done : (size_t)chunk) : 1;
        if (done >= n)
            seq[done] = next;
        for (size_t i = 0; i < c; i++)
            pos[i] = (int32_t)(done + i);
        uint32_t n_rows = 0;
        if (all && done < n)
            for (size_t i = 0; i < c; i++)
                rows[n_rows++] = (int32_t)i;
        else
            rows[n_rows++] = (int32_t)c - 1;
        batch_seq_t s = { table, (uint32_t)((done + c - 1) / b->block_tokens + 1), 0, (uint32_t)c };
        batch_t bt = { (uint32_t)c, seq + done, pos, 1, &s, n_rows, rows };
        if (batch_check(&bt, V, (uint32_t)chunk, b->n_kv_blocks, b->block_tokens, err, sizeof err) != 0 ||
            forward_step(f, &bt, logits) != 0) {
            fprintf(stderr, "forward-dump: step failed: %s\n", err);
            return 1;
        }
        done += c;
        if (done <= n && (all || done == n))
            fwrite(all ? logits : logits + (size_t)(n_rows - 1) * V, sizeof(float),
                   (all ? n_rows : 1) * (size_t)V, out);
        const float *last = logits + (size_t)(n_rows - 1) * V;
        next = 0;
        for (uint32_t v = 1; v < V; v++)
            if (last[v] > last[next])
                next = (int32_t)v;
    }
    fclose(out);
    if (tokens_out != NULL) {
        FILE *t = fopen(tokens_out, "w");
        for (size_t i = n; i < total; i++)
            fprintf(t, "%d%s", seq[i], i + 1 < total ? "," : "\n");
        fclose(t);
    }
    forward_destroy(f);
    backend_destroy(b);
    model_destroy(m);
    free(table); free(seq); free(logits); free(pos); free(rows); free(ids);
    return 0;
}
