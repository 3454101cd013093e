/*
 * engine.h - what the server sees of the engine: load a model on a
 * backend, then serve many completions at once from one engine thread.
 *
 * The server includes this header and nothing deeper, and this header
 * includes only base/ headers: the sampling parameters are plain structs
 * declared here, prompts (raw text or chat messages) are rendered and
 * tokenized by engine_encode_prompt, and /tokenize and /detokenize go
 * through engine_tokenize and engine_detokenize.
 *
 * Threads.  engine_create starts the engine thread, which owns the model's
 * backend, the KV cache, the scheduler and every request it has accepted.
 * Requests cross in through the intake queue (engine_submit,
 * engine_cancel) and results come out through the event queue
 * (engine_poll); each queue is guarded by its own mutex, and nothing else
 * is shared but a few atomic counters (engine_health) and a statistics
 * snapshot under a third mutex.  Every function here except
 * engine_create and engine_destroy may be called from any thread; the
 * server calls them from its loop thread.  When the engine thread queues
 * events it calls opts.notify once per step (the server passes a function
 * that calls uv_async_send, which coalesces: a woken loop must drain the
 * whole queue with engine_poll).
 *
 * A request is identified by the id engine_submit returns, and its
 * events also carry back the cookie the caller gave it.  Its events,
 * in order: with prompt_logprobs, one ENGINE_EV_PROMPT per prompt token
 * after the first (its log-probability given the tokens before it); zero
 * or more ENGINE_EV_TOKEN (one per generated token, with the text that
 * token releases and its log-probabilities); then exactly one
 * ENGINE_EV_FINISH (stop, length, cancelled or error).  Events carry
 * copies; nothing in them points into the engine.
 */
#ifndef LLAMAD_ENGINE_H
#define LLAMAD_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

typedef struct engine engine_t;

/* ---------------------------------------------------------------- sampling parameters */

/* Implemented by engine/sampler.c; see engine/sampler.h for what each does, in order. */

#define SAMPLER_MAX_LOGPROBS   20        /* OpenAI's top_logprobs range */
#define SAMPLER_MAX_LOGIT_BIAS 300       /* entries per request */
#define SAMPLER_MAX_VOCAB      (1u << 24)

/* ------------------------------------------------------------------ */
/* Parameters                                                          */
/* ------------------------------------------------------------------ */

typedef struct {
    int32_t id;     /* token id, [0, n_vocab) */
    float bias;     /* [-100, 100], added to the logit */
} sampler_bias_t;

typedef struct {
    float temperature;          /* [0, 2]; 0 = greedy */
    int32_t top_k;              /* >= 0; 0 = off; larger than n_vocab = off */
    float top_p;                /* (0, 1]; 1 = off */
    float min_p;                /* [0, 1]; 0 = off */
    float repetition_penalty;   /* (0, 10]; 1 = off; prompt + generated */
    float presence_penalty;     /* [-2, 2]; 0 = off; generated only */
    float frequency_penalty;    /* [-2, 2]; 0 = off; generated only */
    const sampler_bias_t *logit_bias; /* [n_logit_bias], borrowed from the
                                         request for as long as it lives */
    uint32_t n_logit_bias;      /* <= SAMPLER_MAX_LOGIT_BIAS */
    uint64_t seed;              /* the caller picks one when the client did not */
    uint32_t n_logprobs;        /* top alternatives to report, [0, 20] */
} sampler_params_t;

/* Fill *p with the defaults: temperature 1, every filter and penalty off,
 * no bias, seed 0, no alternatives. */
void sampler_params_init(sampler_params_t *p);

/*
 * Check every field against its range (NaN is out of every range).
 * Returns 0, ERR_RANGE with a message naming the request field and the
 * value, e.g. "temperature: 3.5 is out of range [0, 2]", or ERR_INVALID
 * for a NULL p or a NULL logit_bias with a non-zero count.  The field
 * names are the API's: temperature, top_k, top_p, min_p,
 * repetition_penalty, presence_penalty, frequency_penalty, logit_bias,
 * top_logprobs (for n_logprobs).  err may be NULL.  Any thread.
 */
int sampler_params_validate(const sampler_params_t *p, uint32_t n_vocab,
                            char *err, size_t errlen);


typedef struct {
    int32_t id;
    float logprob;
} sampler_logprob_t;

/* The tokenizer, opaque here: engine_token_piece spells its tokens. */
typedef struct tokenizer tokenizer_t;

/* Called on the engine thread after it has queued events; must not block. */
typedef void (*engine_notify_cb)(void *ctx);

typedef struct {
    const char *model_path;     /* required */
    const char *chat_template;  /* "auto" (or NULL): the model's own if it is a known
                                   format; a built-in name; or a template file */
    int model_private;          /* 1: read the model file into private memory instead of
                                   mapping it (model-mmap = no; GGUF only) */
    const char *backend;        /* "auto", "cpu" or "cuda" */
    int threads;                /* CPU workers; 0 = one per usable CPU (cpus_usable) */
    const char *cpu_isa;        /* CPU kernels: auto, avx512, avxvnni, avx2, portable; NULL = auto */
    const char *cpu_precision;  /* CPU products: exact or fast; NULL = exact */
    int cpu_no_repack;          /* 1: the CPU backend packs no matrix (cpu-repack = no) */
    uint64_t kv_bytes;          /* KV cache memory; 0 = 256 MiB */
    const char *gpu_device;     /* CUDA: device index or "GPU-<uuid>"; NULL or "" = 0 */
    const char *backend_dir;    /* backend modules' directory (registry_set_backend_dir); NULL or "": the default */
    double gpu_memory_fraction; /* CUDA: share of the device's memory llamad may use; the KV
                                   pool gets what the weights and buffers leave of it;
                                   0 = kv_bytes there too */
    uint32_t max_batch_tokens;  /* token budget of one step; 0 = 512 */
    uint32_t max_step_ms;       /* target time of one step: prefill chunks shrink to keep
                                   each step's estimated time under it; 0 = no bound */
    uint32_t max_seqs;          /* most sequences running at once; 0 = 64 */
    uint32_t max_queue;         /* most requests waiting for admission; 0 = 256 */
    int no_prefix_cache;        /* 1: never share KV blocks between requests */
    int cuda_graphs;            /* CUDA: decode steps as graphs: 1 on, -1 off, 0 the build's
                                   default (cuda/backend_cuda.cuh, CUDA_GRAPHS_DEFAULT) */
    int fp16_weights;           /* CUDA: weights and GEMM inputs as fp16 (1) or bf16 (0) */
    int native_weights;         /* CUDA: quantised layer weights kept in their GGUF blocks
                                   (gpu-weight-type = native; GEMM inputs bf16) */
    int speculative;            /* 1: decodes verify prompt-lookup drafts by default
                                   (speculative = prompt-lookup; docs/ENGINE.md) */
    uint32_t spec_tokens;       /* most draft tokens per decode, <= ENGINE_SPEC_MAX_TOKENS;
                                   0 = 4 */
    uint32_t spec_ngram;        /* longest run of last tokens looked up; 0 = 3 */
    engine_notify_cb notify;    /* may be NULL (then use engine_wait) */
    void *notify_ctx;
} engine_opts_t;

/*
 * Load the model, start the backend, size the KV pool once and start the
 * engine thread.  On error *out is NULL and err says why.  Start-up only.
 */
int engine_create(engine_t **out, const engine_opts_t *o, char *err, size_t errlen);

/*
 * Stop the engine thread and free everything.  Requests still queued or
 * running get no further events.  The caller must not use e again, nor
 * call this while another thread may be in an engine function.
 */
void engine_destroy(engine_t *e);

/* One line describing the model, backend and KV cache, for the start-up log. */
void engine_describe(const engine_t *e, char *buf, size_t len);

/* Whether this binary was built with the CUDA backend. */
int engine_has_cuda(void);

/* Open the model at `path` only, print model_dump's report to `out`. */
int engine_dump_model(const char *path, const char *chat_template, FILE *out,
                      char *err, size_t errlen);

/* ---------------------------------------------------------------- model facts */

typedef struct {
    const char *model_path;     /* as given; borrowed until engine_destroy */
    const char *model_name;     /* its last path component, for /v1/models */
    const char *backend;        /* "cpu" or "cuda" */
    uint32_t n_vocab;
    uint32_t n_ctx;             /* most tokens (prompt + generated) one request may hold:
                                   the smaller of the training context and the KV pool */
    uint32_t n_ctx_train;
    const tokenizer_t *tok;     /* immutable and opaque: for engine_token_piece, any thread */
    const char *chat_template;  /* the model's own (Jinja) template text, or NULL; data only */
    const char *chat_kind;      /* the template in force for chat prompts ("chatml", "llama2",
                                   "llama3" ...), or NULL when the model's is not a known
                                   format and none was set: chat prompts are refused */
    uint32_t kv_blocks;         /* the KV pool */
    uint32_t block_tokens;
    uint32_t max_batch_tokens;  /* limits in force */
    uint32_t max_seqs;
    uint32_t max_queue;
} engine_info_t;

/* Fill *info; the strings and the tokenizer are borrowed until engine_destroy. */
void engine_get_info(const engine_t *e, engine_info_t *info);

/* ---------------------------------------------------------------- prompts and text */

/*
 * Longest prompt text, in bytes, the tokenizer accepts at all (callers cap
 * prompts far lower, e.g. 16 x n_ctx).
 */
#define ENGINE_MAX_PROMPT_BYTES ((size_t)64 << 20)

/* A tool call an assistant message made (chat history). */
typedef struct {
    const char *name;           /* the function's name */
    const char *arguments;      /* its arguments, JSON text (an object) */
} engine_tool_call_t;

/* One chat message: strings NUL-terminated UTF-8, all borrowed for the call. */
typedef struct {
    const char *role;           /* "system", "user", "assistant", "tool" (a tool's result) */
    const char *content;        /* "" when an assistant message has only tool calls */
    const engine_tool_call_t *tool_calls; /* assistant: [n_tool_calls] the calls it made */
    size_t n_tool_calls;
} engine_msg_t;

/* What engine_encode_prompt renders: a raw text, or (messages != NULL) a chat. */
typedef struct {
    const char *text;           /* completions: the prompt text (may be NULL when len is 0) */
    size_t len;
    const engine_msg_t *messages; /* [n_messages] a chat, rendered with the chat template */
    size_t n_messages;
    const char *const *tools;   /* [n_tools] the tools offered, each the JSON text of an
                                   OpenAI tool ({"type": "function", "function": {...}}),
                                   rendered as the template's tool format (docs/API.md); a
                                   template without one refuses them (ERR_UNSUPPORTED) */
    size_t n_tools;
} engine_prompt_t;

/*
 * The prompt's token ids, as a request's tokens.  A text is encoded with
 * control-token strings parsed and a BOS as the model file says.  A chat
 * is rendered with the template in force (generation prompt added); the
 * template's markers become control tokens while what the messages say
 * stays text (a user who types "<|im_start|>" gets the text), with a BOS
 * unless the template writes its own.  *ids (malloc'd, [*n]; free() it)
 * is NULL on error.  Returns 0 or:
 *   ERR_UNSUPPORTED  a chat, and the model has no chat template llamad knows;
 *   ERR_INVALID, ERR_RANGE  messages the template cannot render, or text that
 *                    is not valid UTF-8;
 *   ERR_TOOLONG      text over ENGINE_MAX_PROMPT_BYTES;
 *   ERR_NOMEM, ERR_BACKEND (the tokenizer's regular expressions failed).
 * The message says why (without naming the request field).  Any thread.
 */
int engine_encode_prompt(const engine_t *e, const engine_prompt_t *p, int32_t **ids, size_t *n,
                         char *err, size_t errlen);

/*
 * Encode text[0..len) alone (/tokenize): add_bos puts the BOS id first
 * (when the vocabulary has one); parse_special matches control-token
 * strings.  Same result and errors as engine_encode_prompt for a text.
 * Any thread.
 */
int engine_tokenize(const engine_t *e, const char *text, size_t len, int add_bos,
                    int parse_special, int32_t **ids, size_t *n, char *err, size_t errlen);

/*
 * The text of ids[0..n) (/detokenize), control tokens included, ill-formed
 * bytes as U+FFFD: *text is malloc'd and NUL-terminated ([*len] bytes; free()
 * it), NULL on error.  Returns 0, ERR_RANGE (an id outside the vocabulary)
 * or ERR_NOMEM.  Any thread.
 */
int engine_detokenize(const engine_t *e, const int32_t *ids, size_t n, char **text, size_t *len);

/*
 * The raw bytes one token stands for (for logprobs), *len set; NULL (and
 * *len 0) for an id outside the vocabulary.  tok is engine_info_t.tok,
 * borrowed until engine_destroy.  Any thread.
 */
const char *engine_token_piece(const tokenizer_t *tok, int32_t id, size_t *len);

/* ---------------------------------------------------------------- output constraints */

/*
 * A constraint keeps a request's generated text inside a formal language:
 * at each step only the tokens that extend the text so far towards a
 * string of the language may be sampled, the end-of-generation tokens
 * only where the text is a whole string of it, and a request whose text
 * can go no further ends with "stop".  Compiled once per distinct source
 * (a bounded cache keyed by a hash of kind and source), immutable, shared
 * by reference between requests; engine/grammar/README.md has the
 * languages, the caps and the cost model.
 */
typedef enum {
    ENGINE_CONSTRAINT_JSON_OBJECT = 1, /* any JSON object (src unused) */
    ENGINE_CONSTRAINT_JSON_SCHEMA,     /* src: a JSON Schema (JSON text) */
    ENGINE_CONSTRAINT_REGEX,           /* src: a regular expression the whole output matches */
    ENGINE_CONSTRAINT_CHOICE,          /* src: a JSON array of strings */
    ENGINE_CONSTRAINT_GBNF,            /* src: a GBNF grammar, root rule "root" */
    ENGINE_CONSTRAINT_TOOL_CALLS,      /* src: a tool-call spec (grammar_from_tool_calls in
                                          engine/grammar/grammar.h): one or more calls, each
                                          naming a tool, its arguments valid for its schema */
} engine_constraint_kind_t;

typedef struct grammar engine_constraint_t;

/*
 * Compile (or find in the cache) the constraint of kind `kind` from
 * src[0..len) for this engine's vocabulary.  On success *out holds a
 * reference for the caller (engine_constraint_release).  Fails with a
 * message fit for an HTTP 400: ERR_INVALID (malformed, or nothing the
 * model can generate satisfies it), ERR_UNSUPPORTED (a feature llamad does
 * not serve, named), ERR_FULL (a documented cap, named), ERR_NOMEM.
 * Bounded time and memory (the caps).  Any thread.
 */
int engine_constraint_compile(engine_t *e, engine_constraint_kind_t kind, const char *src,
                              size_t len, engine_constraint_t **out, char *err, size_t errlen);
void engine_constraint_release(engine_constraint_t *c);   /* NULL is fine */

/* ---------------------------------------------------------------- requests */

#define ENGINE_MAX_STOP         4      /* stop strings per request */
#define ENGINE_MAX_STOP_LEN     256    /* bytes per stop string */
#define ENGINE_MAX_STOP_TOKENS  16     /* extra stop token ids per request */
#define ENGINE_MAX_SALT         256    /* bytes of cache salt */
#define ENGINE_MAX_TRIGGER      64     /* bytes of a constraint's trigger */
/* The most draft tokens one decode verifies (engine_opts_t.spec_tokens). */
#define ENGINE_SPEC_MAX_TOKENS 16
#define ENGINE_MAX_CHOICES      128    /* sequences of one submission (n_choices) */

typedef struct {
    const int32_t *tokens;      /* [n_tokens] the prompt, already tokenized (BOS included
                                   if wanted); copied */
    size_t n_tokens;
    sampler_params_t sampling;  /* validated and copied, logit_bias included */
    uint32_t max_tokens;        /* most tokens to generate; 0 = until the context is full */
    const char *const *stop;    /* [n_stop] NUL-terminated UTF-8 stop strings; copied */
    size_t n_stop;
    const int32_t *stop_tokens; /* [n_stop_tokens] ids that end generation like EOS; copied */
    size_t n_stop_tokens;
    int ignore_eos;             /* 1: the model's end-of-generation tokens do not stop it */
    int keep_special;           /* 1: control tokens appear in the text (default: skipped) */
    uint32_t min_tokens;        /* until this many tokens are generated, end-of-generation and
                                   stop tokens cannot be drawn (logit -inf) and stop strings
                                   do not match; at most max_tokens (clamped) */
    int include_stop_str;       /* 1: a matched stop string ends the text instead of being cut */
    int32_t priority;           /* queue order: a waiting request goes before those of higher
                                   priority; equal ones first come, first served */
    const void *cache_salt;     /* requests share cached prefixes only with the same salt */
    size_t cache_salt_len;      /* (e.g. a hash of the API key); 0 = the common cache */
    void *cookie;               /* the caller's: every event of the request carries it back
                                   (engine_event_t.cookie), never dereferenced by the engine */
    engine_constraint_t *constraint; /* NULL, or the output's language; the request takes
                                   its own reference */
    const char *constraint_trigger; /* NULL: the constraint holds from the first token.  Else
                                   (NUL-terminated, 1..ENGINE_MAX_TRIGGER bytes; copied) a lazy
                                   constraint: the model writes freely until its generated
                                   bytes contain the trigger; from the trigger's first byte on
                                   the text must be in the constraint's language (the trigger
                                   is where the grammar's text starts, so the grammar begins
                                   with it).  Bytes that follow the trigger in the same token
                                   and that the language refuses end the request with an error */
    int prompt_logprobs;        /* 1: an ENGINE_EV_PROMPT event for each prompt token but the
                                   first.  The prefill then computes a logit row for every
                                   prompt position, in chunks of at most SCHED_SCORE_ROWS
                                   positions, and the prompt is computed whole: the prefix
                                   cache is not read for it (its blocks are still published) */
    uint32_t prompt_top;        /* with prompt_logprobs: the alternatives reported per prompt
                                   token, [0, SAMPLER_MAX_LOGPROBS] */
    uint32_t n_choices;         /* 0 or 1: one sequence.  More (at most ENGINE_MAX_CHOICES):
                                   that many sequences of this prompt, its KV computed once and
                                   shared (docs/ENGINE.md, "Several choices"); choice i samples
                                   with sampling.seed + i, so it equals its run alone */
    void *const *choice_cookies; /* [n_choices] each choice's cookie, or NULL: all carry cookie */
    int speculative;            /* 0: the engine's default (engine_opts_t.speculative); 1: on,
                                   -1: off.  Requests under a constraint are not
                                   speculated; the output is the same either way */
} engine_request_t;

/* Defaults: no tokens, sampler_params_init's sampling, max_tokens 0, no stops. */
void engine_request_init(engine_request_t *r);

/*
 * Queue a request; its id comes back in *id.  With n_choices > 1 each
 * choice is a request of its own for events and engine_cancel, with ids
 * *id, *id + 1, ... in choice order; all are queued or none.  Everything
 * is checked and copied before this returns, so r may be freed at once.
 * The engine thread may run the request, post its events and finish it
 * before this returns (a poller on another thread routes them by cookie).
 * Returns 0 or:
 *   ERR_INVALID, ERR_RANGE  a bad field (message names it): answer 400;
 *   ERR_TOOLONG             prompt + max_tokens exceed n_ctx (message has
 *                           the numbers): 400 context_length_exceeded;
 *   ERR_FULL                max_queue requests already wait (each choice
 *                           counts): 429 with
 *                           Retry-After;
 *   ERR_STATE               the engine has failed or is stopping: 503;
 *   ERR_NOMEM.
 * Any thread.
 */
int engine_submit(engine_t *e, const engine_request_t *r, uint64_t *id, char *err, size_t errlen);

/*
 * Ask for request `id` to stop, wherever it is (queued, prefilling,
 * decoding).  The engine frees its KV blocks at its next step and sends
 * its finish event (ENGINE_FINISH_CANCELLED) unless it has finished
 * already; an unknown id is ignored.  Returns 0 or ERR_NOMEM.  Any thread.
 */
int engine_cancel(engine_t *e, uint64_t id);

/* ---------------------------------------------------------------- events */

typedef enum { ENGINE_EV_TOKEN = 1, ENGINE_EV_FINISH = 2, ENGINE_EV_PROMPT = 3 } engine_ev_kind_t;

typedef enum {
    ENGINE_FINISH_STOP = 1,     /* an end-of-generation token, stop token or stop string */
    ENGINE_FINISH_LENGTH,       /* max_tokens, or the context is full */
    ENGINE_FINISH_CANCELLED,
    ENGINE_FINISH_ERROR,        /* message says why */
} engine_finish_t;

/* How many finish kinds there are (engine_stats_t.requests_finished). */
enum { ENGINE_N_FINISH = ENGINE_FINISH_ERROR };

/* "stop", "length", "cancelled", "error". */
const char *engine_finish_name(engine_finish_t f);

/*
 * Bytes of text one event can carry.  A token releases at most the text
 * held back for a stop string (< ENGINE_MAX_STOP_LEN) plus one token's
 * decoded piece (<= 3 * (TOK_MAX_TOKEN_BYTES + 3) after UTF-8 repair).
 */
#define ENGINE_TEXT_MAX 2048

typedef struct {
    uint64_t id;
    void *cookie;               /* engine_request_t.cookie of the request, as given: the
                                   caller finds its own state in O(1).  The caller must keep
                                   what it points at until the FINISH event (or ignore events
                                   after engine_destroy, which sends none) */
    engine_ev_kind_t kind;
    uint64_t posted_ns;         /* engine_now_ns() when the engine queued it for engine_poll */
    uint32_t choice;            /* the choice of its submission (engine_request_t.n_choices) */
    /*
     * UTF-8 text released by this event, whole characters only, never any
     * part of a stop string; NUL-terminated.  TOKEN: the text this token
     * completes (may be empty: an incomplete character, a special token,
     * or text that may still turn into a stop string).  FINISH: text held
     * back until the end, if any.
     */
    uint32_t text_len;
    char text[ENGINE_TEXT_MAX + 1];

    /* ENGINE_EV_TOKEN, and ENGINE_EV_PROMPT (text empty; index is the token's position in
       the prompt, >= 1; logprob and top are the log_softmax of the model's raw logits,
       no bias or penalty: sampler_score) */
    int32_t token;
    uint32_t index;             /* 0 for the request's first generated token */
    float logprob;              /* of the token (sampler.h step 4) */
    uint32_t rank;              /* ENGINE_EV_PROMPT: 1 + the tokens more probable than it */
    uint32_t n_top;             /* top[] entries: min(sampling.n_logprobs, candidates) */
    sampler_logprob_t top[SAMPLER_MAX_LOGPROBS];

    /* ENGINE_EV_FINISH */
    engine_finish_t finish;
    int32_t stop_token;         /* the token that stopped it, or -1 */
    int32_t stop_string;        /* index of the stop string matched, or -1 */
    uint32_t prompt_tokens;     /* usage */
    uint32_t completion_tokens; /* tokens generated, a final stop token included */
    uint32_t cached_tokens;     /* prompt tokens served from the prefix cache */
    uint32_t preemptions;       /* times the request was preempted and recomputed */
    char message[ERR_MSG_MAX];  /* ENGINE_FINISH_ERROR: why */
} engine_event_t;

/*
 * Take the oldest queued event into *ev.  Returns 1, or 0 when the queue
 * is empty.  Never blocks on the engine's work.  Any thread (the server's
 * loop thread drains the queue on each notify).
 */
int engine_poll(engine_t *e, engine_event_t *ev);

/*
 * Block until an event is queued or timeout_ms passes (< 0: no limit).
 * Returns 1 when the queue is not empty, else 0.  For callers without an
 * event loop (the one-shot mode, benchmarks, tests).
 */
int engine_wait(engine_t *e, int timeout_ms);

/* ---------------------------------------------------------------- health and statistics */

typedef struct {
    uint64_t iterations;    /* engine loop iterations completed (monotonic) */
    uint64_t last_beat_ns;  /* CLOCK_MONOTONIC time the last one completed; an idle
                               engine still completes one a second */
    int busy;               /* requests are queued or running */
    int failed;             /* the backend failed: every request was failed, submit
                               returns ERR_STATE */
} engine_health_t;

/* Any thread, lock-free.  Stuck: busy and last_beat_ns long ago. */
void engine_health(const engine_t *e, engine_health_t *h);

/* CLOCK_MONOTONIC in nanoseconds, the clock of last_beat_ns. */
uint64_t engine_now_ns(void);

typedef struct {
    uint32_t running;           /* sequences in the running set */
    uint32_t waiting;           /* queued in the scheduler (first time or preempted) */
    uint32_t queued;            /* submitted and never yet admitted (what max_queue bounds) */
    uint32_t blocks_total;      /* the KV pool: used + free */
    uint32_t blocks_used;       /* held by running sequences */
    uint32_t blocks_free;       /* allocatable, cached ones included */
    uint32_t blocks_cached;     /* of the free ones, holding a reusable prefix */
    uint64_t requests_submitted;
    uint64_t requests_finished[ENGINE_N_FINISH]; /* by engine_finish_t - 1: stop, length,
                                                    cancelled, error */
    uint64_t prefix_cache_hits;    /* requests that found part of their prompt cached */
    uint64_t prefix_cache_tokens;  /* prompt tokens not computed thanks to it */
    uint64_t prompt_tokens_computed; /* prefill work done, recomputation included */
    uint64_t tokens_computed;   /* all tokens through the forward pass */
    uint64_t tokens_generated;
    uint64_t preemptions;
    uint64_t evictions;         /* cached blocks reclaimed */
    uint64_t kv_double_frees;   /* releases of a KV block nobody held: a bug if not 0 */
    uint64_t steps;             /* forward steps */
    double tokens_per_step;     /* tokens_computed / steps */
    uint32_t last_step_tokens;
    uint32_t last_step_seqs;
    double busy_seconds;        /* time spent in steps */
    uint64_t spec_draft_tokens;    /* speculative decoding: draft tokens verified */
    uint64_t spec_accepted_tokens; /* of those, accepted */
} engine_stats_t;

/* A snapshot as of the end of the engine's last iteration.  Any thread. */
void engine_get_stats(engine_t *e, engine_stats_t *st);

/* ---------------------------------------------------------------- one-shot completion */

/* Receives each new piece of text (whole UTF-8 characters); non-zero cancels. */
typedef int (*engine_text_cb)(void *ctx, const char *text, size_t len);

typedef struct {
    size_t prompt_tokens;
    size_t generated_tokens;
    double prefill_seconds;     /* submit to first token */
    double decode_seconds;      /* first token to finish */
    const char *finish_reason;  /* engine_finish_name() */
} engine_gen_stats_t;

/*
 * Complete `prompt` (raw text; BOS added as the model file says) with up
 * to n_predict tokens sampled with `sp`, through the engine thread like
 * any request, passing text to `cb` on the calling thread.  Consumes the
 * event queue: not for use while another thread polls it.  Returns 0
 * (stats->finish_reason says how it ended) or an error with a message.
 */
int engine_generate(engine_t *e, const char *prompt, size_t len, const sampler_params_t *sp,
                    uint32_t n_predict, engine_text_cb cb, void *ctx, engine_gen_stats_t *stats,
                    char *err, size_t errlen);

#endif
