/*
 * hf_config.h - fill hparams_t from a Hugging Face model directory's
 * config.json (model_type "llama"; "mistral" without a sliding window;
 * keys of features llamad does not compute, such as experts, are refused).
 *
 * Owns nothing beyond the call.  config.json is hostile input: every key
 * is checked for type and range, and a bad one gets ERR_FORMAT (or
 * ERR_UNSUPPORTED for a feature llamad does not run, such as a RoPE
 * scaling other than "llama3") with a message naming config.json and the
 * key.  n_ff comes from intermediate_size; the model loader cross-checks
 * it and every other size against the weights' shapes.  RoPE layout is
 * ROPE_LAYOUT_HALF, as in the HF modelling code (rotate_half).
 * Any thread; no shared state.
 */
#ifndef LLAMAD_HF_CONFIG_H
#define LLAMAD_HF_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "hparams.h"

#define HF_CONFIG_MAX_BYTES (1u << 20) /* config.json larger than this is refused */
#define HF_MAX_EOS 8

/* Caps on sizes, far above any released LLaMA-family model. */
#define HF_MAX_VOCAB     (1u << 24)
#define HF_MAX_EMBD      65536u
#define HF_MAX_LAYERS    1024u
#define HF_MAX_HEADS     1024u
#define HF_MAX_HEAD_DIM  1024u
#define HF_MAX_FF        (1u << 20)
#define HF_MAX_CTX       (1u << 26)

/* What config.json says beyond hparams_t. */
typedef struct {
    char model_type[16];          /* "llama" or "mistral" */
    int eos_is_list;              /* eos_token_id was a JSON list */
    uint32_t n_eos;               /* ids kept in eos_ids (at most HF_MAX_EOS) */
    uint32_t n_eos_listed;        /* ids the list held; > n_eos when cut */
    int32_t eos_ids[HF_MAX_EOS];  /* eos_ids[0] == hparams eos_id */
} hf_config_info_t;

/*
 * Parse config.json text (len bytes, need not be NUL-terminated); `name`
 * is the file's path for messages.  On success fills *hp and, when not
 * NULL, *info, and returns 0.  On error returns a negative ERR_* code,
 * leaves *hp and *info unchanged and fills err.
 */
int hf_config_parse(hparams_t *hp, hf_config_info_t *info, const char *json, size_t len,
                    const char *name, char *err, size_t errlen);

/*
 * Read DIR/config.json (not through a symlink, at most
 * HF_CONFIG_MAX_BYTES) and parse it as hf_config_parse does.
 */
int hf_config_load(hparams_t *hp, const char *dir, char *err, size_t errlen);
/* The same, also filling *info (may be NULL). */
int hf_config_load_info(hparams_t *hp, hf_config_info_t *info, const char *dir,
                        char *err, size_t errlen);

#endif
