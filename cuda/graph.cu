// graph.cu - decode-only steps as CUDA graphs.
//
// A decode step of a 7B model is about 330 kernel launches (10 per layer);
// issued one by one from the host they take longer than the work at small
// batches.  A step in which every sequence contributes exactly one token
// is padded up to the next of a few fixed sizes (1, 2, 4, 8, 16, 24, ...),
// and each size's step is recorded once as a CUDA graph and replayed:
//
//   first step of a size     GM_DIRECT   the padded step, launched one by one
//                                        (loads every kernel and lets cuBLAS
//                                        choose its algorithms outside a capture)
//   second step of the size  GM_CAPTURE  the same operations captured, the graph
//                                        instantiated and launched
//   every later step         GM_REPLAY   the operations do nothing; `logits`
//                                        launches the graph
//
// For that, nothing a kernel reads may change between steps except device
// memory: the step's metadata (tokens, positions, block tables, sequence
// of each token) goes into the packed batch buffer at offsets fixed by the
// size alone; every grid is the size's; the attention kernels split the
// keys on a fixed grid (at most g_splits splits, as many as the size calls
// for: att_split.h) whose blocks past a token's context exit at once
// (attention.cu, split_len 0); the logits are
// computed for every padded row, their greedy choice too, and the rows the
// caller wants are copied out after the graph.
//
// Padding tokens (token 0 at position 0) belong to one extra sequence whose
// block table is the one KV block kept for them (pad_block, never any
// sequence's): what they write there and their logits are never read.
//
// Anything that goes wrong while capturing (a launch refused, cuBLAS
// wanting memory, instantiation) ends the capture, turns graphs off for
// good with one log line, and the step runs again eagerly (BK_STEP_AGAIN):
// graphs change the speed of a step, never its result.
//
// c->gstats counts what happened (backend_ops_t.graph_stats): a graph
// captured and instantiated, a step served by an earlier step's graph
// (replayed; not the launch right after the capture), and each turn to
// eager after a failure (failed), so that a test or a benchmark can tell
// graphs used from graphs silently off.
#include <cstring>

#include "backend_cuda.cuh"

extern "C" {
#include "base/err.h"
#include "base/log.h"
}

// Padded sizes: every small size that matters, then steps of 8, 16 and 32;
// at most CG_MAX_BATCH.  Above that a step's launches are a few percent of
// its time and it runs eagerly.
#define CG_MAX_BATCH 256
static const uint32_t cg_sizes[] = { 1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128,
                                     160, 192, 224, 256 };

// The attention grid of a graph: at most this many splits of the keys.
#define CG_MAX_SPLITS 32

// Device memory the instantiated graphs may take, all sizes together, as
// measured at instantiation (cudaMemGetInfo before and after): once
// reached, sizes not yet captured run eagerly.  Inside the 256 MiB the
// KV pool leaves for workspaces (backend_cuda.cu, create).
#define CG_MAX_BYTES (128ull << 20)

#define SIG_SEED 0xcbf29ce484222325ull

void graph_init(cuda_ctx_t *c)
{
    // A padded step computes the logits of every row: at most max_logits.
    uint32_t cap = c->max_logits < CG_MAX_BATCH ? c->max_logits : CG_MAX_BATCH;
    c->n_gslots = 0;
    for (uint32_t i = 0; i < sizeof cg_sizes / sizeof cg_sizes[0] && cg_sizes[i] <= cap; i++)
        c->gslots[c->n_gslots++].size = cg_sizes[i];
    if (cap > 0 && (c->n_gslots == 0 || c->gslots[c->n_gslots - 1].size < cap))
        c->gslots[c->n_gslots++].size = cap;    // the step budget itself, when it falls between sizes
    uint32_t splits = cdiv(c->max_ctx, ATT_SPLIT_MIN);
    c->g_splits = splits < CG_MAX_SPLITS ? splits : CG_MAX_SPLITS;
    if (c->g_splits == 0)
        c->g_splits = 1;
    log_info("cuda: decode steps of up to %u sequences run as CUDA graphs (%u sizes, captured on first "
             "use, at most %llu MiB of graphs; %.0f MiB cuBLAS workspace, one KV block for padding)",
             c->n_gslots ? c->gslots[c->n_gslots - 1].size : 0, c->n_gslots,
             (unsigned long long)(CG_MAX_BYTES >> 20), c->blas_ws_bytes / 1048576.0);
}

void graph_destroy(cuda_ctx_t *c)
{
    for (uint32_t i = 0; i < c->n_gslots; i++) {
        if (c->gslots[i].exec != nullptr)
            cudaGraphExecDestroy(c->gslots[i].exec);
        c->gslots[i].exec = nullptr;
        c->gslots[i].state = 0;
    }
}

// Turn graphs off for good: one log line; the failure is not the step's,
// so the recorded message and the last error are cleared.
static void graphs_off(cuda_ctx_t *c, const char *why)
{
    log_warn("cuda: %s%s%s; decode steps run without CUDA graphs from now on", why,
             c->err.msg[0] ? ": " : "", c->err.msg);
    c->err.msg[0] = '\0';
    cudaGetLastError();
    c->gstats.failed++;
    c->graphs = 0;
    graph_destroy(c);
}

int graph_abort(cuda_ctx_t *c)
{
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(c->stream, &g);   // invalidated captures give no graph
    if (g != nullptr)
        cudaGraphDestroy(g);
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    cudaError_t e = cudaStreamIsCapturing(c->stream, &st);
    graphs_off(c, "capturing a decode step as a CUDA graph failed");
    c->gmode = GM_ABORTED;
    if (e != cudaSuccess || st != cudaStreamCaptureStatusNone)
        return cuda_fail(&c->err, "cudaStreamEndCapture", "the stream is still capturing", __FILE__, __LINE__);
    return 0;
}

// Every sequence contributes exactly one token (so sequence s is token s).
static int decode_only(const batch_t *b)
{
    if (b->n_tokens == 0 || b->n_seqs != b->n_tokens || b->n_logits > b->n_tokens)
        return 0;
    for (uint32_t s = 0; s < b->n_seqs; s++)
        if (b->seqs[s].n_new != 1 || b->seqs[s].first != s)
            return 0;
    return 1;
}

int graph_set_batch(cuda_ctx_t *c, const batch_t *b)
{
    if (!decode_only(b))
        return 0;
    int slot = -1;
    for (uint32_t i = 0; i < c->n_gslots; i++)
        if (c->gslots[i].size >= b->n_tokens) {
            slot = (int)i;
            break;
        }
    if (slot < 0 || (c->gslots[slot].state != 2 && c->graph_bytes >= CG_MAX_BYTES))
        return 0;
    const uint32_t n = b->n_tokens, P = c->gslots[slot].size;
    uint64_t n_tab = 1;
    for (uint32_t s = 0; s < n; s++)
        n_tab += b->seqs[s].n_blocks;
    if (5ull * P + n_tab > c->meta_cap)
        return 0;

    // The fixed layout of size P, in int32s:
    //   [0, P) tokens   [P, 2P) positions   [2P, 3P) sequence of each token
    //   [3P, 4P) the token list attention walks (0..P-1)
    //   [4P, 5P) each sequence's offset into the tables   [5P, ...) block tables
    // Padding tokens are token 0 at position 0 of sequence n, whose table is {pad_block}.
    int32_t *h = c->meta_host;
    int32_t *tab = h + 5 * P;
    uint32_t o = 0;
    for (uint32_t t = 0; t < P; t++) {
        bool real = t < n;
        h[t] = real ? b->tokens[t] : 0;
        h[P + t] = real ? b->pos[t] : 0;
        h[2 * P + t] = (int32_t)(real ? t : n);
        h[3 * P + t] = (int32_t)t;
        h[4 * P + t] = 0;
    }
    for (uint32_t s = 0; s < n; s++) {
        h[4 * P + s] = (int32_t)o;
        memcpy(tab + o, b->seqs[s].block_table, b->seqs[s].n_blocks * 4);
        o += b->seqs[s].n_blocks;
    }
    if (n < P) {
        h[4 * P + n] = (int32_t)o;
        tab[o++] = (int32_t)c->pad_block;
    }
    CU_TRY(&c->err, cudaMemcpyAsync(c->meta_dev, h, (5ull * P + o) * 4, cudaMemcpyHostToDevice, c->stream));
    CU_TRY(&c->err, meta_uploaded(c));
    c->d_tokens = c->meta_dev;
    c->d_pos = c->meta_dev + P;
    c->d_tok_seq = c->meta_dev + 2 * P;
    c->d_rest = c->meta_dev + 3 * P;
    c->d_seq_off = c->meta_dev + 4 * P;
    c->d_tables = c->meta_dev + 5 * P;
    c->d_rows = nullptr;                // the logits of every padded row
    c->d_tiles = c->meta_dev;           // no prompt tiles
    c->n_tiles = 0;
    c->n_rest = P;
    c->batch_max_keys = 0;              // unused: the grid is fixed per size (split_len 0)
    // The operations read only the counts of the padded step; its arrays are in meta_dev.
    c->gbatch = batch_t{};
    c->gbatch.n_tokens = c->gbatch.n_seqs = c->gbatch.n_logits = P;
    c->batch = &c->gbatch;
    c->ubatch = b;
    c->gslot = slot;
    c->gsig = SIG_SEED ^ P;

    cgraph_slot_t *g = &c->gslots[slot];
    if (g->state == 0) {
        c->gmode = GM_DIRECT;
    } else if (g->state == 2) {
        c->gmode = GM_REPLAY;
    } else {
        cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess) {
            cuda_fail(&c->err, "cudaStreamBeginCapture", cudaGetErrorString(e), __FILE__, __LINE__);
            graphs_off(c, "a CUDA graph capture could not begin");
            // the eager path repacks meta_host: the upload above must be done with it
            CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
            c->gmode = GM_EAGER;
            return 0;
        }
        c->gmode = GM_CAPTURE;
    }
    return 1;
}

// End the capture, instantiate it into the slot and record its size.
// Returns 0, or -1 after graphs_off (the stream no longer captures).
static int capture_finish(cuda_ctx_t *c, cgraph_slot_t *g)
{
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    if (e != cudaSuccess || graph == nullptr) {
        cuda_fail(&c->err, "cudaStreamEndCapture", cudaGetErrorString(e), __FILE__, __LINE__);
        if (graph != nullptr)
            cudaGraphDestroy(graph);
        graphs_off(c, "capturing a decode step as a CUDA graph failed");
        return -1;
    }
    size_t n_nodes = 0, free0 = 0, free1 = 0, total = 0;
    cudaGraphGetNodes(graph, nullptr, &n_nodes);
    cudaMemGetInfo(&free0, &total);
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e == cudaSuccess)
        e = cudaGraphUpload(exec, c->stream);   // its device memory now, not at the first launch
    if (e != cudaSuccess) {
        cuda_fail(&c->err, "cudaGraphInstantiate", cudaGetErrorString(e), __FILE__, __LINE__);
        if (exec != nullptr)
            cudaGraphExecDestroy(exec);
        graphs_off(c, "instantiating a decode step's CUDA graph failed");
        return -1;
    }
    cudaStreamSynchronize(c->stream);
    cudaMemGetInfo(&free1, &total);
    uint64_t took = free0 > free1 ? free0 - free1 : 0;
    c->graph_bytes += took;
    g->exec = exec;
    g->sig = c->gsig;
    g->state = 2;
    c->gstats.captured++;
    log_info("cuda: decode steps of %u tokens captured as a CUDA graph (%zu nodes, %.1f MiB; %.1f MiB for all graphs)",
             g->size, n_nodes, took / 1048576.0, c->graph_bytes / 1048576.0);
    return 0;
}

int graph_logits(cuda_ctx_t *c, cbuf_t *x, cbuf_t *add, float *out, bk_argmax_t *am)
{
    cgraph_slot_t *g = &c->gslots[c->gslot];
    const batch_t *ub = c->ubatch;
    const uint32_t P = g->size, V = c->m->hp.n_vocab;
    gmode_t mode = c->gmode;
    c->gmode = GM_EAGER;    // whatever happens, the next operation is a new step's
    c->batch = ub;

    if (mode == GM_ABORTED) {
        // the aborted attempt's upload must be done before set_batch repacks
        CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
        return BK_STEP_AGAIN;
    }
    graph_sig(c, BK_OP_LOGITS, 0, W_COUNT, x, add, nullptr);
    if (mode == GM_DIRECT) {
        int rc = logits_launch(c, x, add, nullptr, P, 1);
        if (rc != 0)
            return rc;
        g->state = 1;
    } else if (mode == GM_CAPTURE) {
        c->gmode = GM_CAPTURE;
        int rc = logits_launch(c, x, add, nullptr, P, 1);
        c->gmode = GM_EAGER;
        if (rc != 0) {
            if ((rc = graph_abort(c)) != 0)
                return rc;
            c->gmode = GM_EAGER;
            CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
            return BK_STEP_AGAIN;
        }
        if (capture_finish(c, g) != 0) {
            CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
            return BK_STEP_AGAIN;
        }
    } else if (c->gsig != g->sig) {
        // Not the operations the graph holds (another forward pass, other buffers):
        // nothing was launched, so the step can run eagerly.
        graphs_off(c, "a decode step's operations differ from its captured CUDA graph");
        CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
        return BK_STEP_AGAIN;
    }
    if (mode != GM_DIRECT) {
        cudaError_t e = cudaGraphLaunch(g->exec, c->stream);
        if (e != cudaSuccess) {
            cuda_fail(&c->err, "cudaGraphLaunch", cudaGetErrorString(e), __FILE__, __LINE__);
            graphs_off(c, "launching a decode step's CUDA graph failed");
            CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
            return BK_STEP_AGAIN;
        }
        if (mode == GM_REPLAY)
            c->gstats.replayed++;
    }

    // The rows the caller wants: row i of the output is padded row logit_rows[i].
    const uint32_t nl = ub->n_logits;
    if (out != nullptr) {
        bool in_order = true;
        for (uint32_t i = 0; i < nl && in_order; i++)
            in_order = ub->logit_rows[i] == (int32_t)i;
        if (in_order && nl > 0) {
            CU_TRY(&c->err, cudaMemcpyAsync(out, c->logits_dev, (uint64_t)nl * V * 4, cudaMemcpyDeviceToHost,
                                            c->stream));
        } else {
            for (uint32_t i = 0; i < nl; i++)
                CU_TRY(&c->err, cudaMemcpyAsync(out + (uint64_t)i * V, c->logits_dev + (uint64_t)ub->logit_rows[i] * V,
                                                (uint64_t)V * 4, cudaMemcpyDeviceToHost, c->stream));
        }
    } else if (nl > 0) {
        CU_TRY(&c->err, cudaMemcpyAsync(c->am_host, c->am_dev, (uint64_t)P * sizeof *c->am_dev,
                                        cudaMemcpyDeviceToHost, c->stream));
    }
    CU_TRY(&c->err, cudaStreamSynchronize(c->stream));
    if (am != nullptr)
        for (uint32_t i = 0; i < nl; i++)
            memcpy(&am[i], &c->am_host[ub->logit_rows[i]], sizeof am[i]);
    return 0;
}
