/*
 * hf_config.c - config.json -> hparams_t (see hf_config.h).
 *
 * Key names and defaults follow the transformers LlamaConfig: a missing
 * num_key_value_heads means one K/V head per query head, a missing
 * head_dim means hidden_size / num_attention_heads, rope_theta defaults to
 * 10000, rms_norm_eps to 1e-6 and tie_word_embeddings to false.  Newer
 * configs may put rope_theta and the scaling under "rope_parameters";
 * both places are read.  JSON null counts as absent.
 */
#include "hf_config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/err.h"
#include "safetensors.h" /* st_json_check_depth */

typedef struct {
    const char *name; /* the file, for messages */
    char *err;
    size_t errlen;
} cfg_t;

/* ============================ typed getters ============================ */

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

/* The value of key in obj, or NULL when absent or null. */
static const cJSON *get(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(v) ? NULL : v;
}

/* An integer in [lo, hi]; `def` when absent and !required. */
static int get_int(const cfg_t *c, const cJSON *obj, const char *key, int required,
                   long long def, long long lo, long long hi, long long *out)
{
    const cJSON *v = get(obj, key);
    if (v == NULL) {
        if (required)
            return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' missing", c->name, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' must be an integer, not %s",
                       c->name, key, type_name(v));
    double d = v->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi))
        return err_set(c->err, c->errlen, ERR_RANGE, "%s: key '%s' = %g out of range [%lld, %lld]",
                       c->name, key, d, lo, hi);
    if ((double)(long long)d != d)
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' = %g is not an integer",
                       c->name, key, d);
    *out = (long long)d;
    return 0;
}

static int get_u32(const cfg_t *c, const cJSON *obj, const char *key, int required,
                   uint32_t def, uint32_t lo, uint32_t hi, uint32_t *out)
{
    long long v = 0;
    int rc = get_int(c, obj, key, required, def, lo, hi, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

/* A finite number in (lo, hi) (exclusive); `def` when absent. */
static int get_float(const cfg_t *c, const cJSON *obj, const char *key, double def,
                     double lo, double hi, float *out)
{
    const cJSON *v = get(obj, key);
    if (v == NULL) {
        *out = (float)def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' must be a number, not %s",
                       c->name, key, type_name(v));
    if (!(v->valuedouble > lo && v->valuedouble < hi))
        return err_set(c->err, c->errlen, ERR_RANGE, "%s: key '%s' = %g out of range (%g, %g)",
                       c->name, key, v->valuedouble, lo, hi);
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool(const cfg_t *c, const cJSON *obj, const char *key, int def, int *out)
{
    const cJSON *v = get(obj, key);
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' must be a boolean, not %s",
                       c->name, key, type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A string or NULL when absent; ERR_FORMAT for another type. */
static int get_str(const cfg_t *c, const cJSON *obj, const char *key, const char **out)
{
    const cJSON *v = get(obj, key);
    *out = NULL;
    if (v == NULL)
        return 0;
    if (!cJSON_IsString(v))
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' must be a string, not %s",
                       c->name, key, type_name(v));
    *out = v->valuestring;
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cJSON keeps repeated keys and finds the first: refuse them instead. */
static int check_unique_keys(const cfg_t *c, const cJSON *obj, const char *what)
{
    size_t n = 0, k = 0;
    for (const cJSON *v = obj->child; v != NULL; v = v->next)
        n++;
    if (n < 2)
        return 0;
    const char **keys = malloc(n * sizeof *keys);
    if (keys == NULL)
        return err_set(c->err, c->errlen, ERR_NOMEM, "%s: out of memory", c->name);
    for (const cJSON *v = obj->child; v != NULL; v = v->next)
        keys[k++] = v->string;
    qsort(keys, n, sizeof *keys, cmp_str_ptr);
    int rc = 0;
    for (k = 1; k < n && rc == 0; k++)
        if (strcmp(keys[k - 1], keys[k]) == 0)
            rc = err_set(c->err, c->errlen, ERR_FORMAT, "%s: duplicate key '%.64s' in %s",
                         c->name, keys[k], what);
    free(keys);
    return rc;
}

/* ============================ sections ============================ */

/*
 * Keys that change the computation and that llamad does not implement
 * (sliding-window attention, as in Mistral 7B v0.1; mixture of experts;
 * soft-capping; Granite's multipliers; partial rotary), refused unless
 * null or the neutral value.  engine/model/refuse.c is the GGUF twin.
 */
static int check_refused(const cfg_t *c, const cJSON *root)
{
    static const struct { const char *key; double neutral; const char *what; } refused[] = {
        { "sliding_window", 0, "sliding-window attention" },
        { "use_sliding_window", 0, "sliding-window attention" },
        { "num_local_experts", 0, "mixture-of-experts layers" },
        { "num_experts", 0, "mixture-of-experts layers" },
        { "num_experts_per_tok", 0, "mixture-of-experts layers" },
        { "n_routed_experts", 0, "mixture-of-experts layers" },
        { "n_shared_experts", 0, "mixture-of-experts layers" },
        { "attn_logit_softcapping", 0, "attention logit soft-capping" },
        { "final_logit_softcapping", 0, "final logit soft-capping" },
        { "partial_rotary_factor", 1, "partial rotary embeddings" },
        { "attention_multiplier", 1, "an attention scale other than 1/sqrt(head_dim)" },
        { "embedding_multiplier", 1, "embedding scaling" },
        { "residual_multiplier", 1, "residual scaling" },
        { "logits_scaling", 1, "logit scaling" },
    };
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        const cJSON *v = get(root, refused[k].key);
        if (v == NULL || (cJSON_IsNumber(v) && v->valuedouble == refused[k].neutral) ||
            (cJSON_IsBool(v) && cJSON_IsTrue(v) == (refused[k].neutral != 0)))
            continue;
        char val[48];
        if (cJSON_IsNumber(v))
            snprintf(val, sizeof val, "%g", v->valuedouble);
        else if (cJSON_IsBool(v))
            snprintf(val, sizeof val, "%s", cJSON_IsTrue(v) ? "true" : "false");
        else
            snprintf(val, sizeof val, "%s", type_name(v));
        return err_set(c->err, c->errlen, ERR_UNSUPPORTED,
                       "%s: key '%s' = %s: llamad does not implement %s", c->name,
                       refused[k].key, val, refused[k].what);
    }
    return 0;
}

static int check_family(const cfg_t *c, const cJSON *root, hf_config_info_t *info)
{
    const char *mt;
    int rc = get_str(c, root, "model_type", &mt);
    if (rc != 0)
        return rc;
    if (mt == NULL)
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key 'model_type' missing", c->name);
    if (strcmp(mt, "llama") != 0 && strcmp(mt, "mistral") != 0)
        return err_set(c->err, c->errlen, ERR_UNSUPPORTED,
                       "%s: key 'model_type' = '%.64s' not supported (llama)", c->name, mt);
    snprintf(info->model_type, sizeof info->model_type, "%s", mt);

    const cJSON *arch = get(root, "architectures");
    if (arch != NULL) {
        int ok = 0;
        if (!cJSON_IsArray(arch))
            return err_set(c->err, c->errlen, ERR_FORMAT,
                           "%s: key 'architectures' must be an array, not %s", c->name,
                           type_name(arch));
        for (const cJSON *a = arch->child; a != NULL; a = a->next)
            if (cJSON_IsString(a) && (strcmp(a->valuestring, "LlamaForCausalLM") == 0 ||
                                      strcmp(a->valuestring, "MistralForCausalLM") == 0))
                ok = 1;
        if (!ok)
            return err_set(c->err, c->errlen, ERR_UNSUPPORTED,
                           "%s: key 'architectures' names no LlamaForCausalLM", c->name);
    }
    if ((rc = check_refused(c, root)) != 0)
        return rc;
    const char *act;
    if ((rc = get_str(c, root, "hidden_act", &act)) != 0)
        return rc;
    if (act != NULL && strcmp(act, "silu") != 0)
        return err_set(c->err, c->errlen, ERR_UNSUPPORTED,
                       "%s: key 'hidden_act' = '%.32s' not supported (silu)", c->name, act);
    int bias;
    if ((rc = get_bool(c, root, "attention_bias", 0, &bias)) != 0)
        return rc;
    if (bias)
        return err_set(c->err, c->errlen, ERR_UNSUPPORTED,
                       "%s: key 'attention_bias' = true not supported", c->name);
    if ((rc = get_bool(c, root, "mlp_bias", 0, &bias)) != 0)
        return rc;
    if (bias)
        return err_set(c->err, c->errlen, ERR_UNSUPPORTED,
                       "%s: key 'mlp_bias' = true not supported", c->name);
    return 0;
}

static int read_sizes(const cfg_t *c, const cJSON *root, hparams_t *hp)
{
    int rc;
    if ((rc = get_u32(c, root, "vocab_size", 1, 0, 1, HF_MAX_VOCAB, &hp->n_vocab)) != 0 ||
        (rc = get_u32(c, root, "hidden_size", 1, 0, 1, HF_MAX_EMBD, &hp->n_embd)) != 0 ||
        (rc = get_u32(c, root, "num_hidden_layers", 1, 0, 1, HF_MAX_LAYERS, &hp->n_layer)) != 0 ||
        (rc = get_u32(c, root, "num_attention_heads", 1, 0, 1, HF_MAX_HEADS, &hp->n_head)) != 0 ||
        (rc = get_u32(c, root, "num_key_value_heads", 0, hp->n_head, 1, HF_MAX_HEADS,
                      &hp->n_head_kv)) != 0 ||
        (rc = get_u32(c, root, "intermediate_size", 1, 0, 1, HF_MAX_FF, &hp->n_ff)) != 0 ||
        (rc = get_u32(c, root, "max_position_embeddings", 1, 0, 1, HF_MAX_CTX,
                      &hp->n_ctx_train)) != 0)
        return rc;
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv != 0)
        return err_set(c->err, c->errlen, ERR_FORMAT,
                       "%s: key 'num_attention_heads' = %u is not a multiple of "
                       "'num_key_value_heads' = %u", c->name, hp->n_head, hp->n_head_kv);
    if (get(root, "head_dim") != NULL) {
        if ((rc = get_u32(c, root, "head_dim", 1, 0, 1, HF_MAX_HEAD_DIM, &hp->head_dim)) != 0)
            return rc;
    } else if (hp->n_embd % hp->n_head != 0) {
        return err_set(c->err, c->errlen, ERR_FORMAT,
                       "%s: key 'hidden_size' = %u is not a multiple of "
                       "'num_attention_heads' = %u", c->name, hp->n_embd, hp->n_head);
    } else {
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->head_dim % 2 != 0 || hp->head_dim > HF_MAX_HEAD_DIM)
        return err_set(c->err, c->errlen, ERR_FORMAT,
                       "%s: key 'head_dim' = %u must be even and at most %u", c->name,
                       hp->head_dim, HF_MAX_HEAD_DIM);
    hp->rope_dim = hp->head_dim;
    return 0;
}

/* rope_theta and "llama3" frequency scaling. */
static int read_rope(const cfg_t *c, const cJSON *root, hparams_t *hp)
{
    const cJSON *params = get(root, "rope_parameters");
    const cJSON *sc = get(root, "rope_scaling");
    int rc;
    if (params != NULL && !cJSON_IsObject(params))
        return err_set(c->err, c->errlen, ERR_FORMAT,
                       "%s: key 'rope_parameters' must be an object, not %s", c->name,
                       type_name(params));
    const cJSON *theta_obj = (get(root, "rope_theta") == NULL && params != NULL) ? params : root;
    if ((rc = get_float(c, theta_obj, "rope_theta", 10000.0, 0.0, 1e30, &hp->rope_theta)) != 0)
        return rc;
    if (sc == NULL)
        sc = params;
    hp->rope_scale_factor = 0.0f;
    if (sc == NULL)
        return 0;
    if (!cJSON_IsObject(sc))
        return err_set(c->err, c->errlen, ERR_FORMAT,
                       "%s: key 'rope_scaling' must be an object, not %s", c->name,
                       type_name(sc));
    if ((rc = check_unique_keys(c, sc, "rope_scaling")) != 0)
        return rc;
    const char *type;
    if ((rc = get_str(c, sc, "rope_type", &type)) != 0)
        return rc;
    if (type == NULL && (rc = get_str(c, sc, "type", &type)) != 0)
        return rc;
    if (type == NULL)
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key 'rope_scaling.rope_type' missing",
                       c->name);
    if (strcmp(type, "default") == 0)
        return 0;
    if (strcmp(type, "llama3") != 0)
        return err_set(c->err, c->errlen, ERR_UNSUPPORTED,
                       "%s: key 'rope_scaling.rope_type' = '%.32s' not supported (llama3)",
                       c->name, type);
    static const char *const need[] = { "factor", "low_freq_factor", "high_freq_factor",
                                        "original_max_position_embeddings" };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (get(sc, need[i]) == NULL)
            return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key 'rope_scaling.%s' missing",
                           c->name, need[i]);
    if ((rc = get_float(c, sc, "factor", 0, 0.0, 1e6, &hp->rope_scale_factor)) != 0 ||
        (rc = get_float(c, sc, "low_freq_factor", 0, 0.0, 1e6, &hp->rope_low_freq_factor)) != 0 ||
        (rc = get_float(c, sc, "high_freq_factor", 0, 0.0, 1e6, &hp->rope_high_freq_factor)) != 0 ||
        (rc = get_u32(c, sc, "original_max_position_embeddings", 1, 0, 1, HF_MAX_CTX,
                      &hp->rope_orig_ctx)) != 0)
        return rc;
    /* the smooth band divides by (high - low) */
    if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor))
        return err_set(c->err, c->errlen, ERR_FORMAT,
                       "%s: key 'rope_scaling.high_freq_factor' = %g must exceed "
                       "low_freq_factor = %g", c->name, hp->rope_high_freq_factor,
                       hp->rope_low_freq_factor);
    return 0;
}

/* One token id in [0, n_vocab), or -1 when absent. */
static int read_token_id(const cfg_t *c, const cJSON *v, const char *key, uint32_t n_vocab,
                         int32_t *out)
{
    if (v == NULL) {
        *out = -1;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' must be an integer, not %s",
                       c->name, key, type_name(v));
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)n_vocab))
        return err_set(c->err, c->errlen, ERR_RANGE,
                       "%s: key '%s' = %g out of range [0, vocab_size %u)", c->name, key, d,
                       n_vocab);
    if ((double)(int32_t)d != d)
        return err_set(c->err, c->errlen, ERR_FORMAT, "%s: key '%s' = %g is not an integer",
                       c->name, key, d);
    *out = (int32_t)d;
    return 0;
}

static int read_tokens(const cfg_t *c, const cJSON *root, hparams_t *hp,
                       hf_config_info_t *info)
{
    int rc;
    if ((rc = read_token_id(c, get(root, "bos_token_id"), "bos_token_id", hp->n_vocab,
                            &hp->bos_id)) != 0 ||
        (rc = read_token_id(c, get(root, "pad_token_id"), "pad_token_id", hp->n_vocab,
                            &hp->pad_id)) != 0)
        return rc;
    const cJSON *eos = get(root, "eos_token_id");
    if (!cJSON_IsArray(eos)) {
        if ((rc = read_token_id(c, eos, "eos_token_id", hp->n_vocab, &hp->eos_id)) != 0)
            return rc;
        if (hp->eos_id >= 0) {
            info->eos_ids[0] = hp->eos_id;
            info->n_eos = info->n_eos_listed = 1;
        }
        return 0;
    }
    info->eos_is_list = 1;
    for (const cJSON *v = eos->child; v != NULL; v = v->next) {
        int32_t id;
        if ((rc = read_token_id(c, v, "eos_token_id[]", hp->n_vocab, &id)) != 0)
            return rc;
        if (info->n_eos < HF_MAX_EOS)
            info->eos_ids[info->n_eos++] = id;
        info->n_eos_listed++;
    }
    hp->eos_id = info->n_eos > 0 ? info->eos_ids[0] : -1;
    return 0;
}

/* ============================ entry points ============================ */

int hf_config_parse(hparams_t *hp, hf_config_info_t *info, const char *json, size_t len,
                    const char *name, char *err, size_t errlen)
{
    cfg_t c = { .name = name != NULL ? name : "config.json", .err = err, .errlen = errlen };
    hparams_t h = { .bos_id = -1, .eos_id = -1, .pad_id = -1,
                    .rope_layout = ROPE_LAYOUT_HALF };
    hf_config_info_t inf = { .model_type = "" };
    cJSON *root = NULL;
    int rc;

    if (len > HF_CONFIG_MAX_BYTES)
        return err_set(err, errlen, ERR_FORMAT, "%s: %zu bytes (cap %u)", c.name, len,
                       HF_CONFIG_MAX_BYTES);
    if (st_json_check_depth(json, len, ST_MAX_JSON_DEPTH) != 0)
        return err_set(err, errlen, ERR_FORMAT, "%s: JSON nests deeper than %d levels", c.name,
                       ST_MAX_JSON_DEPTH);
    root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        rc = err_set(err, errlen, ERR_FORMAT, "%s: not a valid JSON object", c.name);
        goto out;
    }
    if ((rc = check_unique_keys(&c, root, "the top-level object")) != 0 ||
        (rc = check_family(&c, root, &inf)) != 0 ||
        (rc = read_sizes(&c, root, &h)) != 0 ||
        (rc = get_float(&c, root, "rms_norm_eps", 1e-6, 0.0, 1.0, &h.rms_eps)) != 0 ||
        (rc = read_rope(&c, root, &h)) != 0 ||
        (rc = get_bool(&c, root, "tie_word_embeddings", 0, &h.tied_embeddings)) != 0 ||
        (rc = read_tokens(&c, root, &h, &inf)) != 0)
        goto out;
    if (!isfinite(h.rope_theta) || h.rms_eps <= 0.0f) {
        rc = err_set(err, errlen, ERR_RANGE, "%s: key 'rope_theta' or 'rms_norm_eps' does not "
                     "fit a float", c.name);
        goto out;
    }
    *hp = h;
    if (info != NULL)
        *info = inf;
out:
    cJSON_Delete(root);
    return rc;
}

int hf_config_load_info(hparams_t *hp, hf_config_info_t *info, const char *dir,
                        char *err, size_t errlen)
{
    char path[4096];
    struct stat sb;
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return err_set(err, errlen, ERR_TOOLONG, "%s: path too long", dir);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, errlen, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       errno == ELOOP ? "is a symlink (not followed)" : strerror(errno));
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &sb) != 0)
        rc = err_set(err, errlen, ERR_IO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        rc = err_set(err, errlen, ERR_FORMAT, "%s: not a regular file", path);
    else if ((uint64_t)sb.st_size > HF_CONFIG_MAX_BYTES)
        rc = err_set(err, errlen, ERR_FORMAT, "%s: %lld bytes (cap %u)", path,
                     (long long)sb.st_size, HF_CONFIG_MAX_BYTES);
    else if ((buf = malloc((size_t)sb.st_size + 1)) == NULL)
        rc = err_set(err, errlen, ERR_NOMEM, "%s: out of memory", path);
    size_t got = 0;
    while (rc == 0 && got < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = err_set(err, errlen, ERR_IO, "%s: short read", path);
        else
            got += (size_t)r;
    }
    close(fd);
    if (rc == 0)
        rc = hf_config_parse(hp, info, buf, got, path, err, errlen);
    free(buf);
    return rc;
}

int hf_config_load(hparams_t *hp, const char *dir, char *err, size_t errlen)
{
    return hf_config_load_info(hp, NULL, dir, err, errlen);
}
