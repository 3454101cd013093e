/*
 * model.c - fill one model description from a GGUF file or a Hugging Face
 * directory, check every tensor against it, and open the tokenizer.
 */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "gguf.h"
#include "hf_config.h"
#include "refuse.h"
#include "base/log.h"
#include "safetensors.h"

#define MAX_NAME 128

/* A tensor as either reader describes it. */
typedef struct {
    const char *name;
    qtype_t type;
    uint32_t n_dims;
    uint64_t ne[4];
    uint64_t nbytes;
    const void *data;
} tinfo_t;

typedef struct {
    model_t *m;
    uint64_t n_tensors;
    uint8_t *used;      /* [n_tensors] */
    char *err;
    size_t errlen;
} loader_t;

/* ---------------------------------------------------------------- tensor access */

static int64_t find_tensor(const loader_t *L, const char *name, tinfo_t *t)
{
    if (L->m->src == MODEL_SRC_GGUF) {
        gguf_t *g = L->m->file;
        for (uint64_t i = 0; i < L->n_tensors; i++) {
            const gguf_tensor_t *gt = gguf_tensor(g, i);
            if (gt->name.len == strlen(name) && memcmp(gt->name.ptr, name, gt->name.len) == 0) {
                t->name = name;
                t->type = gt->type;
                t->n_dims = gt->n_dims;
                memcpy(t->ne, gt->ne, sizeof t->ne);
                t->nbytes = gt->nbytes;
                t->data = gt->data;
                return (int64_t)i;
            }
        }
        return -1;
    }
    st_model_t *st = L->m->file;
    for (uint64_t i = 0; i < L->n_tensors; i++) {
        const st_tensor_t *s = st_tensor(st, i);
        if (strcmp(s->name, name) == 0) {
            t->name = s->name;
            t->type = s->type;
            t->n_dims = s->n_dims;
            memcpy(t->ne, s->ne, sizeof t->ne);
            t->nbytes = s->nbytes;
            t->data = s->data;
            return (int64_t)i;
        }
    }
    return -1;
}

/*
 * Bind weight `name` with shape [n_out, n_in] (a vector when n_out == 1).
 * `optional` lets a missing tensor leave w->data NULL.
 */
static int bind(loader_t *L, weight_t *w, const char *name, uint64_t n_in, uint64_t n_out,
                int optional)
{
    tinfo_t t;
    int64_t i = find_tensor(L, name, &t);
    if (i < 0) {
        if (optional) {
            memset(w, 0, sizeof *w);
            return 0;
        }
        return err_set(L->err, L->errlen, ERR_FORMAT, "%s: tensor '%s' is missing",
                       L->m->path, name);
    }
    uint64_t want_dims = n_out == 1 ? 1 : 2;
    int ok = t.ne[0] == n_in && t.ne[1] == n_out && t.ne[2] == 1 && t.ne[3] == 1 &&
             (t.n_dims == want_dims || (want_dims == 1 && t.n_dims == 2 && t.ne[1] == 1));
    if (!ok)
        return err_set(L->err, L->errlen, ERR_FORMAT,
                       "%s: tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]",
                       L->m->path, name, (unsigned long long)t.ne[0], (unsigned long long)t.ne[1],
                       (unsigned long long)t.ne[2], (unsigned long long)t.ne[3],
                       (unsigned long long)n_in, (unsigned long long)n_out);
    if (want_dims == 1 && t.type != QT_F32 && t.type != QT_F16 && t.type != QT_BF16)
        return err_set(L->err, L->errlen, ERR_UNSUPPORTED,
                       "%s: tensor '%s' is a norm vector stored as %s; expected F32, F16 or BF16",
                       L->m->path, name, qtype_info(t.type)->name);
    L->used[i] = 1;
    snprintf(w->name, sizeof w->name, "%s", name);
    w->type = t.type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->nbytes = t.nbytes;
    w->data = t.data;
    L->m->weight_bytes += t.nbytes;
    return 0;
}

/* ---------------------------------------------------------------- GGUF metadata */

static int gguf_hparams(loader_t *L)
{
    model_t *m = L->m;
    gguf_t *g = m->file;
    hparams_t *hp = &m->hp;
    char key[MAX_NAME];
    int rc;
    gguf_str_t arch;

    rc = gguf_get_str(g, "general.architecture", &arch, L->err, L->errlen);
    if (rc == ERR_NOTFOUND)
        return err_set(L->err, L->errlen, ERR_FORMAT, "%s: general.architecture is missing", m->path);
    if (rc != 0)
        return rc;
    if (arch.len != 5 || memcmp(arch.ptr, "llama", 5) != 0)
        return err_set(L->err, L->errlen, ERR_UNSUPPORTED,
                       "%s: general.architecture is \"%.*s\"; llamad serves \"llama\"",
                       m->path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);

#define REQ_U32(field, name)                                                        \
    do {                                                                            \
        snprintf(key, sizeof key, "llama.%s", name);                                \
        rc = gguf_get_u32(g, key, &hp->field, L->err, L->errlen);                   \
        if (rc == ERR_NOTFOUND)                                                     \
            return err_set(L->err, L->errlen, ERR_FORMAT, "%s: %s is missing", m->path, key); \
        if (rc != 0)                                                                \
            return rc;                                                              \
    } while (0)
#define OPT(getter, field, name, def)                                               \
    do {                                                                            \
        snprintf(key, sizeof key, "llama.%s", name);                                \
        rc = getter(g, key, &hp->field, L->err, L->errlen);                         \
        if (rc == ERR_NOTFOUND)                                                     \
            hp->field = def;                                                        \
        else if (rc != 0)                                                           \
            return rc;                                                              \
    } while (0)

    REQ_U32(n_layer, "block_count");
    REQ_U32(n_embd, "embedding_length");
    REQ_U32(n_head, "attention.head_count");
    REQ_U32(n_ff, "feed_forward_length");
    OPT(gguf_get_u32, n_head_kv, "attention.head_count_kv", hp->n_head);
    OPT(gguf_get_u32, n_ctx_train, "context_length", 2048);
    OPT(gguf_get_f32, rms_eps, "attention.layer_norm_rms_epsilon", 1e-5f);
    OPT(gguf_get_f32, rope_theta, "rope.freq_base", 10000.0f);
    if (hp->n_head == 0 || hp->n_embd % hp->n_head != 0)
        return err_set(L->err, L->errlen, ERR_FORMAT,
                       "%s: llama.attention.head_count %u does not divide embedding_length %u",
                       m->path, hp->n_head, hp->n_embd);
    OPT(gguf_get_u32, head_dim, "attention.key_length", hp->n_embd / hp->n_head);
    OPT(gguf_get_u32, rope_dim, "rope.dimension_count", hp->head_dim);
    OPT(gguf_get_u32, n_vocab, "vocab_size", 0);

    if ((rc = refuse_gguf_keys(g, hp, L->err, L->errlen)) != 0)
        return rc;
    hp->rope_layout = ROPE_LAYOUT_INTERLEAVED;
    hp->bos_id = hp->eos_id = hp->pad_id = -1;
#undef REQ_U32
#undef OPT
    return 0;
}

/* ---------------------------------------------------------------- checks shared by both sources */

static int check_hparams(const model_t *m, char *err, size_t errlen)
{
    const hparams_t *hp = &m->hp;
    if (hp->n_layer == 0 || hp->n_layer > 1024 || hp->n_embd == 0 || hp->n_embd > 65536 ||
        hp->n_head == 0 || hp->n_head > 1024 || hp->n_ff == 0 || hp->n_ff > (1u << 20) ||
        hp->head_dim == 0 || hp->head_dim > 1024)
        return err_set(err, errlen, ERR_FORMAT,
                       "%s: implausible sizes (layers %u, width %u, heads %u, head_dim %u, ff %u)",
                       m->path, hp->n_layer, hp->n_embd, hp->n_head, hp->head_dim, hp->n_ff);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0)
        return err_set(err, errlen, ERR_FORMAT, "%s: %u key/value heads do not divide %u heads",
                       m->path, hp->n_head_kv, hp->n_head);
    if (hp->head_dim % 2 != 0 || hp->rope_dim == 0 || hp->rope_dim > hp->head_dim ||
        hp->rope_dim % 2 != 0)
        return err_set(err, errlen, ERR_FORMAT, "%s: head_dim %u / rope dimension %u are not usable",
                       m->path, hp->head_dim, hp->rope_dim);
    if (!(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f) || !(hp->rope_theta > 0.0f) ||
        !isfinite(hp->rope_theta))
        return err_set(err, errlen, ERR_FORMAT, "%s: rms epsilon %g or rope base %g out of range",
                       m->path, (double)hp->rms_eps, (double)hp->rope_theta);
    if (hp->n_ctx_train == 0)
        return err_set(err, errlen, ERR_FORMAT, "%s: context length is 0", m->path);
    return 0;
}

/* LLaMA-3 frequency scaling as per-pair divisors of the RoPE frequencies. */
static int llama3_freq_factors(model_t *m)
{
    const hparams_t *hp = &m->hp;
    uint32_t n = hp->rope_dim / 2;
    m->rope_freq_factors = malloc(n * sizeof(float));
    if (m->rope_freq_factors == NULL)
        return ERR_NOMEM;
    double low_wavelen = hp->rope_orig_ctx / (double)hp->rope_low_freq_factor;
    double high_wavelen = hp->rope_orig_ctx / (double)hp->rope_high_freq_factor;
    for (uint32_t i = 0; i < n; i++) {
        double freq = pow(hp->rope_theta, -2.0 * i / hp->rope_dim);
        double wavelen = 2.0 * M_PI / freq;
        double scaled;
        if (wavelen < high_wavelen)
            scaled = freq;
        else if (wavelen > low_wavelen)
            scaled = freq / hp->rope_scale_factor;
        else {
            double smooth = (hp->rope_orig_ctx / wavelen - hp->rope_low_freq_factor) /
                            (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
            scaled = (1.0 - smooth) * freq / hp->rope_scale_factor + smooth * freq;
        }
        m->rope_freq_factors[i] = (float)(freq / scaled);
    }
    return 0;
}

/* ---------------------------------------------------------------- the weight table */

static int bind_all(loader_t *L)
{
    model_t *m = L->m;
    hparams_t *hp = &m->hp;
    int gguf = m->src == MODEL_SRC_GGUF;
    uint64_t d = hp->n_embd, q = (uint64_t)hp->n_head * hp->head_dim;
    uint64_t kv = (uint64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff, V = hp->n_vocab;
    char name[MAX_NAME];
    int rc;

    /* The vocabulary size comes from the embedding when the metadata lacks it. */
    tinfo_t t;
    if (find_tensor(L, gguf ? "token_embd.weight" : "model.embed_tokens.weight", &t) < 0)
        return err_set(L->err, L->errlen, ERR_FORMAT, "%s: the token embedding tensor is missing",
                       m->path);
    if (V == 0) {
        if (t.ne[1] == 0 || t.ne[1] > (1u << 24))
            return err_set(L->err, L->errlen, ERR_FORMAT, "%s: token embedding has %llu rows",
                           m->path, (unsigned long long)t.ne[1]);
        V = hp->n_vocab = (uint32_t)t.ne[1];
    }

    if ((rc = bind(L, &m->tok_embd, gguf ? "token_embd.weight" : "model.embed_tokens.weight", d, V, 0)) ||
        (rc = bind(L, &m->output_norm, gguf ? "output_norm.weight" : "model.norm.weight", d, 1, 0)) ||
        (rc = bind(L, &m->output, gguf ? "output.weight" : "lm_head.weight", d, V, 1)))
        return rc;
    if (m->output.data == NULL) {
        if (!gguf && !hp->tied_embeddings)
            return err_set(L->err, L->errlen, ERR_FORMAT,
                           "%s: lm_head.weight is missing and tie_word_embeddings is false", m->path);
        m->output = m->tok_embd;
        hp->tied_embeddings = 1;
    } else {
        hp->tied_embeddings = 0;
    }

    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (m->layers == NULL)
        return ERR_NOMEM;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        layer_weights_t *w = &m->layers[l];
        static const struct { size_t off; const char *gguf, *hf; int kind; } names[] = {
            { offsetof(layer_weights_t, attn_norm), "attn_norm", "input_layernorm", 0 },
            { offsetof(layer_weights_t, wq), "attn_q", "self_attn.q_proj", 1 },
            { offsetof(layer_weights_t, wk), "attn_k", "self_attn.k_proj", 2 },
            { offsetof(layer_weights_t, wv), "attn_v", "self_attn.v_proj", 2 },
            { offsetof(layer_weights_t, wo), "attn_output", "self_attn.o_proj", 3 },
            { offsetof(layer_weights_t, ffn_norm), "ffn_norm", "post_attention_layernorm", 0 },
            { offsetof(layer_weights_t, w_gate), "ffn_gate", "mlp.gate_proj", 4 },
            { offsetof(layer_weights_t, w_up), "ffn_up", "mlp.up_proj", 4 },
            { offsetof(layer_weights_t, w_down), "ffn_down", "mlp.down_proj", 5 },
        };
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            uint64_t n_in = d, n_out = 1;
            switch (names[k].kind) {
            case 1: n_out = q; break;
            case 2: n_out = kv; break;
            case 3: n_in = q; n_out = d; break;
            case 4: n_out = ff; break;
            case 5: n_in = ff; n_out = d; break;
            }
            if (gguf)
                snprintf(name, sizeof name, "blk.%u.%s.weight", l, names[k].gguf);
            else
                snprintf(name, sizeof name, "model.layers.%u.%s.weight", l, names[k].hf);
            weight_t *dst = (weight_t *)((char *)w + names[k].off);
            if ((rc = bind(L, dst, name, n_in, n_out, 0)) != 0)
                return rc;
        }
    }

    /* LLaMA-3 scaling: GGUF carries the divisors as a tensor, HF as config. */
    if (gguf) {
        int64_t i = find_tensor(L, "rope_freqs.weight", &t);
        if (i >= 0) {
            if (t.type != QT_F32 || t.ne[0] != hp->rope_dim / 2 || t.n_dims != 1)
                return err_set(L->err, L->errlen, ERR_FORMAT,
                               "%s: rope_freqs.weight must be F32 [%u]", m->path, hp->rope_dim / 2);
            m->rope_freq_factors = malloc(t.nbytes);
            if (m->rope_freq_factors == NULL)
                return ERR_NOMEM;
            memcpy(m->rope_freq_factors, t.data, t.nbytes);
            for (uint32_t k = 0; k < hp->rope_dim / 2; k++)
                if (!(m->rope_freq_factors[k] > 0.0f) || !isfinite(m->rope_freq_factors[k]))
                    return err_set(L->err, L->errlen, ERR_FORMAT,
                                   "%s: rope_freqs.weight[%u] is not a positive number", m->path, k);
            L->used[i] = 1;
        }
    } else if (hp->rope_scale_factor > 0.0f) {
        if ((rc = llama3_freq_factors(m)) != 0)
            return rc;
    }

    /* Every tensor must be used: a stray one means we misread the model. */
    for (uint64_t i = 0; i < L->n_tensors; i++) {
        if (L->used[i])
            continue;
        const char *nm;
        int len;
        if (gguf) {
            const gguf_tensor_t *gt = gguf_tensor(m->file, i);
            nm = gt->name.ptr;
            len = (int)(gt->name.len > 200 ? 200 : gt->name.len);
        } else {
            nm = st_tensor(m->file, i)->name;
            len = (int)strlen(nm);
            if (strstr(nm, "rotary_emb.inv_freq") != NULL)
                continue; /* a derived buffer some checkpoints carry */
        }
        return err_set(L->err, L->errlen, ERR_FORMAT, "%s: tensor '%.*s' is not part of a LLaMA model",
                       m->path, len, nm);
    }
    return 0;
}

/* ---------------------------------------------------------------- create / destroy */

int model_create(model_t **out, const char *path, const char *chat_template,
                 char *err, size_t errlen)
{
    return model_create_flags(out, path, chat_template, 0, err, errlen);
}

int model_create_flags(model_t **out, const char *path, const char *chat_template, int flags,
                       char *err, size_t errlen)
{
    (void)chat_template;
    *out = NULL;
    double t0 = (clock_now_ns() * 1e-9);
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(err, errlen, ERR_IO, "%s: %s", path, strerror(errno));

    model_t *m = calloc(1, sizeof *m);
    if (m == NULL || (m->path = strdup(path)) == NULL) {
        free(m);
        return err_set(err, errlen, ERR_NOMEM, "out of memory");
    }
    loader_t L = { .m = m, .err = err, .errlen = errlen };
    int rc;
    size_t plen = strlen(path);
    int is_hf = S_ISDIR(st.st_mode) || (plen > 12 && strcmp(path + plen - 12, ".safetensors") == 0);

    if (!is_hf) {
        m->src = MODEL_SRC_GGUF;
        gguf_t *g;
        if ((rc = gguf_open(&g, path, (flags & MODEL_LOAD_PRIVATE) != 0, err, errlen)) != 0)
            goto fail;
        m->file = g;
        m->weights_file_mapped = (flags & MODEL_LOAD_PRIVATE) == 0;
        L.n_tensors = gguf_tensor_count(g);
        if ((rc = gguf_hparams(&L)) != 0)
            goto fail;
        if ((rc = tok_create_from_gguf(&m->tok, g, err, errlen)) != 0)
            goto fail;
    } else {
        m->src = MODEL_SRC_HF;
        if (flags & MODEL_LOAD_PRIVATE) {
            rc = err_set(err, errlen, ERR_UNSUPPORTED, "%s: model-mmap = no reads GGUF files "
                         "only; a Hugging Face model is always mapped", path);
            goto fail;
        }
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        if (!S_ISDIR(st.st_mode)) {
            char *slash = strrchr(dir, '/');
            if (slash != NULL)
                *slash = '\0';
            else
                snprintf(dir, sizeof dir, ".");
        }
        if ((rc = hf_config_load(&m->hp, dir, err, errlen)) != 0)
            goto fail;
        st_model_t *sm;
        if ((rc = st_create(&sm, path, err, errlen)) != 0)
            goto fail;
        m->file = sm;
        L.n_tensors = st_tensor_count(sm);
        if ((rc = tok_create_from_hf(&m->tok, dir, err, errlen)) != 0)
            goto fail;
    }
    if ((rc = check_hparams(m, err, errlen)) != 0)
        goto fail;
    L.used = calloc(L.n_tensors ? L.n_tensors : 1, 1);
    if (L.used == NULL) {
        rc = err_set(err, errlen, ERR_NOMEM, "out of memory");
        goto fail;
    }
    rc = bind_all(&L);
    free(L.used);
    if (rc != 0)
        goto fail;

    /* The tokenizer's vocabulary must fit the embedding (HF may pad the embedding). */
    if (tok_n_vocab(m->tok) > m->hp.n_vocab) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: the tokenizer has %zu tokens but the embedding %u rows",
                     path, tok_n_vocab(m->tok), m->hp.n_vocab);
        goto fail;
    }
    m->hp.bos_id = tok_bos(m->tok);
    m->hp.eos_id = tok_eos(m->tok);
    if (m->hp.pad_id >= (int32_t)m->hp.n_vocab)
        m->hp.pad_id = -1;
    if (tok_warning(m->tok) != NULL)
        log_warn("%s: %s", path, tok_warning(m->tok));
    m->load_seconds = (clock_now_ns() * 1e-9) - t0;
    *out = m;
    return 0;

fail:
    model_destroy(m);
    return rc;
}

void model_destroy(model_t *m)
{
    if (m == NULL)
        return;
    tok_destroy(m->tok);
    if (m->file != NULL) {
        if (m->src == MODEL_SRC_GGUF)
            gguf_destroy(m->file);
        else if (m->src == MODEL_SRC_HF)
            st_destroy(m->file);
        else
            free(m->file);
    }
    free(m->layers);
    free(m->rope_freq_factors);
    free(m->path);
    free(m);
}

uint64_t model_kv_bytes_per_token(const model_t *m)
{
    return (uint64_t)m->hp.n_layer * 2 * m->hp.n_head_kv * m->hp.head_dim * sizeof(float);
}

/* ---------------------------------------------------------------- dump */

static void dump_weight(FILE *out, const weight_t *w)
{
    if (w->data == NULL)
        return;
    fprintf(out, "  %-40s %-5s [%6llu, %6llu] %12llu\n", w->name, qtype_info(w->type)->name,
            (unsigned long long)w->n_in, (unsigned long long)w->n_out,
            (unsigned long long)w->nbytes);
}

void model_dump(const model_t *m, FILE *out)
{
    const hparams_t *hp = &m->hp;
    fprintf(out, "model:            %s (%s)\n", m->path, m->src == MODEL_SRC_GGUF ? "GGUF" : "Hugging Face");
    fprintf(out, "architecture:     llama\n");
    fprintf(out, "vocab size:       %u\n", hp->n_vocab);
    fprintf(out, "width (n_embd):   %u\n", hp->n_embd);
    fprintf(out, "layers:           %u\n", hp->n_layer);
    fprintf(out, "heads:            %u (key/value heads %u, head_dim %u)\n", hp->n_head, hp->n_head_kv, hp->head_dim);
    fprintf(out, "ffn width:        %u\n", hp->n_ff);
    fprintf(out, "context length:   %u\n", hp->n_ctx_train);
    fprintf(out, "rms epsilon:      %g\n", (double)hp->rms_eps);
    fprintf(out, "rope:             base %g, %u dims, %s layout%s\n", (double)hp->rope_theta, hp->rope_dim,
            hp->rope_layout == ROPE_LAYOUT_INTERLEAVED ? "interleaved-pair" : "half-split",
            m->rope_freq_factors ? ", LLaMA-3 frequency scaling" : "");
    fprintf(out, "output embedding: %s\n", hp->tied_embeddings ? "tied to the token embedding" : "separate");
    fprintf(out, "tokenizer:        %s (%s), %zu tokens, bos %d, eos %d\n",
            tok_kind(m->tok) == TOK_KIND_BPE ? "byte-level BPE" : "SentencePiece BPE",
            tok_pre_name(m->tok) ? tok_pre_name(m->tok) : "-", tok_n_vocab(m->tok),
            hp->bos_id, hp->eos_id);
    fprintf(out, "weights:          %.1f MiB\n", m->weight_bytes / 1048576.0);
    fprintf(out, "opened in:        %.1f ms\n", m->load_seconds * 1e3);
    fprintf(out, "\ntensors:\n  %-40s %-5s %-16s %12s\n", "name", "type", "shape [in, out]", "bytes");
    dump_weight(out, &m->tok_embd);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const layer_weights_t *w = &m->layers[l];
        const weight_t *all[] = { &w->attn_norm, &w->wq, &w->wk, &w->wv, &w->wo,
                                  &w->ffn_norm, &w->w_gate, &w->w_up, &w->w_down };
        for (size_t k = 0; k < 9; k++)
            dump_weight(out, all[k]);
    }
    dump_weight(out, &m->output_norm);
    if (!hp->tied_embeddings)
        dump_weight(out, &m->output);
}
