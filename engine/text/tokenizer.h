/*
 * tokenizer.h - text <-> token ids for the served model.
 *
 * Owns: one immutable vocabulary (token strings, types, scores, merges),
 * the compiled pre-tokenizer regular expressions and the special-token
 * matcher.  Two algorithms sit behind one interface:
 *
 *   TOK_KIND_BPE  byte-level BPE (GPT-2 style; LLaMA-3, SmolLM2):
 *                 text -> special tokens -> regex pre-tokenizer -> bytes
 *                 mapped to printable characters -> merges by rank.
 *   TOK_KIND_SPM  SentencePiece-style BPE with byte fallback (LLaMA-1/2):
 *                 text -> special tokens -> spaces as U+2581 (plus one
 *                 leading U+2581) -> merges of the best-scoring pair (GGUF)
 *                 or of the lowest-ranked merge (tokenizer.json) ->
 *                 unknown characters as <0xHH> byte tokens.
 *
 * Threads: a tokenizer_t is immutable after creation; any thread may
 * encode and decode with it at the same time (each call allocates its own
 * scratch).  A tok_decoder_t belongs to the caller and to one thread.
 *
 * Byte-level vocabularies may lack the character of a byte (SmolLM2 lacks
 * a few control bytes and 0xF1/0xF2): such a byte is dropped, as HF
 * tokenizers does for a vocabulary without an unk token.  From a GGUF file
 * the unknown_token_id is never used for it: it is often a control token,
 * and text must never turn into control tokens unless parse_special asks.
 *
 * Input text that is not valid UTF-8 is encoded as if each ill-formed
 * subsequence had been replaced by U+FFFD, one per maximal subpart (the
 * Unicode Standard's practice, and what Python's errors="replace" does).
 */
#ifndef LLAMAD_TOKENIZER_H
#define LLAMAD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "engine/model/gguf.h"

typedef struct tokenizer tokenizer_t;

typedef enum {
    TOK_KIND_BPE = 1,   /* byte-level BPE, tokenizer.ggml.model = "gpt2" */
    TOK_KIND_SPM = 2,   /* SentencePiece BPE, tokenizer.ggml.model = "llama" */
} tok_kind_t;

/* Token types, numbered as in GGUF's tokenizer.ggml.token_type. */
typedef enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type_t;

/* Longest token string accepted from a file, in bytes. */
#define TOK_MAX_TOKEN_BYTES 512
/*
 * Longest text tok_encode accepts, in bytes.  Callers cap prompts far
 * lower (for example 16 x n_ctx); this bounds the scratch memory.
 */
#define TOK_MAX_INPUT_BYTES ((size_t)64 << 20)

/* ---- growable buffers (caller-owned: init, use, close) ---- */

/* Token ids; n and cap are size_t end to end. */
typedef struct {
    int32_t *ids;   /* [cap], the first n are set */
    size_t n;
    size_t cap;
} tok_buf_t;

void tok_buf_init(tok_buf_t *b);
void tok_buf_close(tok_buf_t *b);
/* Append one id; 0 or ERR_NOMEM (the buffer is unchanged then). */
int tok_buf_push(tok_buf_t *b, int32_t id);

/* Bytes: base/buf.h's buffer (NUL-terminated once allocated) under the tokenizer's name. */
typedef buf_t tok_text_t;

static inline void tok_text_init(tok_text_t *s) { buf_init(s); }
static inline void tok_text_close(tok_text_t *s) { buf_close(s); }
/* Append n bytes; 0 or ERR_NOMEM (the text is unchanged then). */
static inline int tok_text_append(tok_text_t *s, const void *p, size_t n) { return buf_append(s, p, n); }

/* ---- construction ---- */

/*
 * Build from a GGUF file's tokenizer.ggml.* metadata (the gguf_t is only
 * borrowed during the call).  Every array's element type and length, every
 * special id, every token string and every merge is checked; a bad file
 * gets ERR_FORMAT or ERR_UNSUPPORTED and a message naming the file and the
 * key.  On error *out is NULL.  An unknown tokenizer.ggml.pre falls back
 * to the GPT-2 pattern and records a warning (tok_warning).
 */
int tok_create_from_gguf(tokenizer_t **out, const gguf_t *g, char *err, size_t errlen);

/*
 * Build from a Hugging Face model directory: DIR/tokenizer.json (a BPE
 * model; byte-level families and the LLaMA-1/2 SentencePiece-style family)
 * and, when present, DIR/tokenizer_config.json (add_bos_token,
 * add_eos_token, bos_token, eos_token, chat_template).  Same checks and
 * error contract as tok_create_from_gguf.
 */
int tok_create_from_hf(tokenizer_t **out, const char *dir, char *err, size_t errlen);

/* NULL is a no-op. */
void tok_destroy(tokenizer_t *t);

/* ---- encoding ---- */

/*
 * Append the ids of text[0..len) to out.  add_bos: put the BOS id first
 * (when the vocabulary has one).  parse_special: match the strings of
 * control, user-defined and unknown-type tokens in the text (leftmost,
 * then longest) and emit their ids; when 0 such strings are ordinary text.
 * Returns 0, ERR_TOOLONG (len > TOK_MAX_INPUT_BYTES), ERR_NOMEM, or
 * ERR_BACKEND when the regex engine fails; on error out->n is restored.
 */
int tok_encode(const tokenizer_t *t, const char *text, size_t len, int add_bos,
               int parse_special, tok_buf_t *out, char *err, size_t errlen);

/* A byte range [start, end) of a text. */
typedef struct {
    size_t start, end;
} tok_span_t;

/* Byte ranges (caller-owned: init, use, close). */
typedef struct {
    tok_span_t *v;   /* [cap], the first n are set */
    size_t n, cap;
} tok_spans_t;

void tok_spans_init(tok_spans_t *s);
void tok_spans_close(tok_spans_t *s);
/* Append [start, end); 0 or ERR_NOMEM. */
int tok_spans_push(tok_spans_t *s, size_t start, size_t end);

/*
 * tok_encode with special-token parsing on everywhere except inside
 * plain->v[0..n) (ascending, not overlapping): there, and in any match
 * that would reach into them, special-token strings are ordinary text.
 * This is how chat prompts are encoded: the template's markers become
 * control tokens, while a user who types "<|im_start|>" gets the text.
 * The text must be valid UTF-8 (ERR_INVALID otherwise: the offsets would
 * not survive the repair that tok_encode applies).
 */
int tok_encode_plain(const tokenizer_t *t, const char *text, size_t len, int add_bos,
                     const tok_spans_t *plain, tok_buf_t *out, char *err, size_t errlen);

/* ---- decoding ---- */

/*
 * The raw bytes one token stands for: byte-level tokens mapped back to
 * bytes, U+2581 as a space, <0xHH> as the byte HH; control and
 * user-defined tokens as their text.  *len gets the length.  NULL (and
 * *len = 0) when id is out of range.  Borrowed until tok_destroy.
 */
const char *tok_piece(const tokenizer_t *t, int32_t id, size_t *len);

/* Decoder flags. */
#define TOK_DECODE_SKIP_SPECIAL 1u  /* control and unknown-type tokens emit nothing */
#define TOK_DECODE_TEXT_START   2u  /* the ids begin a text: for SPM drop the one
                                       space the encoder's prefix added */

/*
 * Incremental decoder: push ids one at a time and get only whole UTF-8
 * characters; an incomplete tail is held back until later bytes complete
 * it, and ill-formed bytes come out as U+FFFD.  The tokenizer is borrowed
 * until tok_decoder_close.
 */
typedef struct {
    const tokenizer_t *t;
    unsigned flags;
    int strip_pending;      /* TEXT_START: the next non-empty piece loses one leading space */
    unsigned char tail[4];  /* incomplete UTF-8 sequence carried to the next push */
    size_t n_tail;
} tok_decoder_t;

void tok_decoder_init(tok_decoder_t *d, const tokenizer_t *t, unsigned flags);
/*
 * Decode one id, appending valid UTF-8 to out.  Returns 0, ERR_RANGE for
 * an id outside the vocabulary (nothing is appended), or ERR_NOMEM.
 */
int tok_decoder_push(tok_decoder_t *d, int32_t id, tok_text_t *out);
/* End of sequence: a held incomplete tail becomes one U+FFFD. */
int tok_decoder_flush(tok_decoder_t *d, tok_text_t *out);
void tok_decoder_close(tok_decoder_t *d);

/* Decode a whole sequence (init, push each, flush) and append to out. */
int tok_decode(const tokenizer_t *t, const int32_t *ids, size_t n, unsigned flags,
               tok_text_t *out);

/* ---- queries (plain reads of the immutable vocabulary; any thread) ---- */

size_t tok_n_vocab(const tokenizer_t *t);
tok_kind_t tok_kind(const tokenizer_t *t);
/* The pre-tokenizer's name ("gpt2", "llama3", "smollm", "spm", "custom", "none"). */
const char *tok_pre_name(const tokenizer_t *t);
/* Special ids, or -1 where the vocabulary has none. */
int32_t tok_bos(const tokenizer_t *t);
int32_t tok_eos(const tokenizer_t *t);
/* Whether prompts get BOS (and EOS) by default, as the model's files say. */
int tok_add_bos_default(const tokenizer_t *t);
int tok_add_eos_default(const tokenizer_t *t);
/* Type of a token, or -1 when id is out of range. */
int tok_type(const tokenizer_t *t, int32_t id);
/*
 * End-of-generation ids: EOS, EOT/EOM from the file, and <|im_end|>,
 * <|eot_id|>, <|end_of_text|>, <|endoftext|> where they are control
 * tokens.  *ids is borrowed until tok_destroy; returns the count.
 */
size_t tok_eog_ids(const tokenizer_t *t, const int32_t **ids);
int tok_is_eog(const tokenizer_t *t, int32_t id);
/* Id of the token whose stored string is exactly `text`, or -1. */
int32_t tok_find(const tokenizer_t *t, const char *text);
/* The model's chat template text (never executed), or NULL. */
const char *tok_chat_template(const tokenizer_t *t);
/* A warning recorded while loading (for the caller to log), or NULL. */
const char *tok_warning(const tokenizer_t *t);

#endif
