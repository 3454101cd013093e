/*
 * config.h - llamad's settings: one table of keys, read from an INI file
 * (conf/llamad.conf) and from command-line flags of the same names.
 *
 * Every key lives in one section of the file and has a flag `--key`;
 * flags win over the file.  Unknown keys and bad values are errors that
 * name the file, line and key.  Loop thread (start-up) only.
 */
#ifndef LLAMAD_CONFIG_H
#define LLAMAD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CFG_STR, CFG_INT, CFG_SIZE, CFG_FLOAT, CFG_BOOL } cfg_kind_t;

/*
 * X(section, key, kind, field, default, min, max, help)
 * min/max bound CFG_INT, CFG_SIZE and CFG_FLOAT values; for CFG_STR,
 * `max` names a choice list (NULL: any string).
 */
#define CONFIG_KEYS(X)                                                                  \
    X("model",  "model",            CFG_STR,   model,            "models/SmolLM2-135M-Instruct.Q4_1.gguf", 0, 0, NULL, \
      "Path of the model: a GGUF file or a Hugging Face model directory.")             \
    X("model",  "chat-template",    CFG_STR,   chat_template,    "auto", 0, 0, NULL,   \
      "Chat template: auto (recognise the model's own), chatml, llama2, llama3, or a template file path.") \
    X("model",  "served-model-name", CFG_STR,  served_model_name, "", 0, 0, NULL,      \
      "Names the model is served as, comma-separated: the first is the id in /v1/models and in responses; a request's model may be any of them or the file name (empty: the file name).") \
    X("model",  "model-mmap",       CFG_BOOL,  model_mmap,       "yes", 0, 0, NULL,    \
      "Map the GGUF file (yes) or read it into private memory (no: immune to later changes of the file, costs its size in RAM).") \
    X("server", "host",             CFG_STR,   host,             "127.0.0.1", 0, 0, NULL, \
      "Address to listen on. Listening beyond loopback without an API key is warned about.") \
    X("server", "port",             CFG_INT,   port,             "8080", 1, 65535, NULL, \
      "TCP port to listen on.")                                                        \
    X("server", "max-connections",  CFG_INT,   max_connections,  "1024", 1, 1000000, NULL, \
      "Most open client connections; more wait in the listen queue until one closes.")                     \
    X("server", "max-connections-per-ip", CFG_INT, max_connections_per_ip, "256", 0, 1000000, NULL, \
      "Most open connections from one client address; 0 means no per-address limit.")  \
    X("server", "idle-timeout",     CFG_INT,   idle_timeout,     "30", 1, 86400, NULL, \
      "Seconds a connection may stay silent (slow or idle clients) before it is closed.") \
    X("server", "request-timeout",  CFG_INT,   request_timeout,  "60", 0, 86400, NULL, \
      "Seconds a client may take to send a whole request (headers and body), from connecting or from its previous response; slower connections are closed (0: no limit).") \
    X("server", "max-body",         CFG_SIZE,  max_body,         "1M", 1024, 1ull << 30, NULL, \
      "Largest request body (bytes; K, M suffixes); larger bodies get 413.")           \
    X("server", "drain-timeout",    CFG_INT,   drain_timeout,    "30", 0, 86400, NULL, \
      "On SIGTERM, seconds running requests may take to finish before they are cancelled.") \
    X("server", "api-key",          CFG_STR,   api_key,          "", 0, 0, NULL,       \
      "An API key clients must send as \"Authorization: Bearer KEY\" (empty: none).")  \
    X("server", "api-key-file",     CFG_STR,   api_key_file,     "", 0, 0, NULL,       \
      "A file of API keys, one a line, re-read on SIGHUP; it must hold at least one key (empty: $CREDENTIALS_DIRECTORY/apikeys if set).") \
    X("server", "insecure-no-auth", CFG_BOOL,  insecure_no_auth, "no", 0, 0, NULL,     \
      "Allow listening beyond loopback without an API key (anyone who reaches the port can use the model).") \
    X("server", "allowed-hosts",    CFG_STR,   allowed_hosts,    "", 0, 0, NULL,       \
      "Without API keys: Host names accepted besides IP addresses and localhost, comma-separated (* for any); guards against DNS rebinding.") \
    X("server", "allowed-origins",  CFG_STR,   allowed_origins,  "", 0, 0, NULL,       \
      "Browser origins (scheme://host[:port]) allowed to call the API cross-origin, comma-separated (* for any, without credentials); empty: CORS off, no Access-Control-* headers.") \
    X("server", "web-ui",           CFG_STR,   web_ui,           "auto", 0, 0, "auto|yes|no", \
      "Serve the chat page on GET / (yes, no; auto: yes when host is loopback). Turn it off behind a proxy in production.") \
    X("server", "public-health",    CFG_BOOL,  public_health,    "yes", 0, 0, NULL,    \
      "Whether /health, /health/live and /health/ready answer without an API key.")    \
    X("server", "public-metrics",   CFG_BOOL,  public_metrics,   "no", 0, 0, NULL,     \
      "Whether /metrics answers without an API key.")                                  \
    X("server", "metrics-vllm-names", CFG_BOOL, metrics_vllm_names, "no", 0, 0, NULL,  \
      "Also export the metrics under vLLM's names (vllm:num_requests_running, ...): every series vLLM's stock Grafana dashboard queries.")  \
    X("engine", "backend",          CFG_STR,   backend,          "auto", 0, 0, "auto|cpu|cuda", \
      "Compute backend: auto picks CUDA when a device is present, else the CPU.")      \
    X("engine", "threads",          CFG_INT,   threads,          "0", 0, 1024, NULL,   \
      "CPU backend worker threads; 0 means one per CPU this process may use (its affinity mask, lowered to its cgroup's CPU quota rounded up).") \
    X("engine", "cpu-isa",          CFG_STR,   cpu_isa,          "auto", 0, 0, "auto|amx|avx512|avxvnni|avx2|portable", \
      "CPU backend: instruction set of the matrix kernels; auto picks the best this CPU has (chosen at run time), a lower one is for comparison; one this CPU lacks is an error.") \
    X("engine", "cpu-precision",    CFG_STR,   cpu_precision,    "exact", 0, 0, "exact|fast", \
      "CPU backend: exact keeps activations in float (logits within 1e-3 of the float64 reference); fast quantises them per block of 32 to int8 for Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K weights and keeps K/V as IEEE halves (faster, twice the tokens in kv-memory; see docs/PERFORMANCE.md for its divergence). Both are batch-invariant.") \
    X("engine", "cpu-repack",       CFG_BOOL,  cpu_repack,       "yes", 0, 0, NULL,    \
      "CPU backend, cpu-precision fast on the avx2, avxvnni or avx512 level: copy the Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K matrices at start into tiles of sixteen rows, the order those kernels read (prefill and decode up to 1.5x faster, Q6_K decode up to 1.8x, the same results), and drop their pages of the file mapping (nothing at the portable and amx levels or with model-mmap = no); no reads every matrix from the mapping, whose pages daemons serving the same file share.") \
    X("engine", "kv-memory",        CFG_SIZE,  kv_memory,        "256M", 1 << 20, 0, NULL, \
      "Memory for the paged KV cache (bytes; K, M, G suffixes).")                      \
    X("engine", "max-batch-tokens", CFG_INT,   max_batch_tokens, "512", 1, 65536, NULL, \
      "Most tokens in one forward step; longer prompts are prefilled in chunks.")      \
    X("engine", "max-step-time",    CFG_INT,   max_step_time,    "500", 0, 600000, NULL, \
      "Target time of one engine step (ms): long prompts are prefilled in chunks small enough to keep each step under it; 0: no bound.") \
    X("engine", "gpu-device",       CFG_STR,   gpu_device,       "0", 0, 0, NULL,      \
      "CUDA: the GPU to use: an index among the visible devices (CUDA_VISIBLE_DEVICES applies, as for any CUDA program) or a UUID as nvidia-smi -L prints it (GPU-...). A missing device is a startup error.") \
    X("engine", "backend-dir",      CFG_STR,   backend_dir,      "", 0, 0, NULL,       \
      "Directory of the backend modules (llamad-cuda.so), opened when backend is auto or cuda; empty: $LLAMAD_BACKEND_DIR, else beside the binary, else the installed library directory.") \
    X("engine", "gpu-memory-fraction", CFG_FLOAT, gpu_memory_fraction, "0.9", 0, 0.99, NULL, \
      "CUDA: share of the GPU's memory llamad may use; the KV cache gets what the weights leave (0: kv-memory).") \
    X("engine", "cuda-graphs",      CFG_STR,   cuda_graphs,      "auto", 0, 0, "auto|on|off", \
      "CUDA: replay decode steps as CUDA graphs and pick greedy tokens on the GPU (auto: the build's default, off until verified on a GPU).") \
    X("engine", "gpu-weight-type",  CFG_STR,   gpu_weight_type,  "bf16", 0, 0, "native|bf16|fp16", \
      "CUDA: format of the weights on the GPU. bf16 or fp16: every weight dequantised to that 16-bit format at load, which the GEMMs' inputs share; fp16 has 3 more mantissa bits than bf16 but a range only up to 65504: an activation beyond it becomes inf and its request fails, never a silently wrong answer. native: Q4_0, Q4_1, Q8_0 and Q4_K layer weights stay in their GGUF blocks (a quarter to half the memory and bytes per step), other types as bf16; not yet verified on a GPU, so bf16 stays the default.") \
    X("engine", "max-seqs",         CFG_INT,   max_seqs,         "64", 1, 4096, NULL,  \
      "Most requests generating at once (one token each per step).")                   \
    X("engine", "max-queue",        CFG_INT,   max_queue,        "256", 1, 1000000, NULL, \
      "Most requests waiting to start; past it new requests get 429 with Retry-After.") \
    X("engine", "prefix-cache",     CFG_BOOL,  prefix_cache,     "yes", 0, 0, NULL,    \
      "Reuse the KV cache of prompt prefixes that earlier requests computed.")         \
    X("engine", "prefix-cache-per-key", CFG_BOOL, prefix_cache_per_key, "no", 0, 0, NULL, \
      "Share cached prompt prefixes only between requests made with the same API key.") \
    X("engine", "speculative",      CFG_STR,   speculative,      "off", 0, 0, "off|prompt-lookup", \
      "Speculative decoding: prompt-lookup proposes the tokens that followed the last occurrence of the latest ones in the prompt and output, and one step verifies them (the same output, greedy or seeded; not under a constraint; faster when the answer repeats its input, see docs/PERFORMANCE.md). A request may override it (\"speculative\": true or false).") \
    X("engine", "spec-tokens",      CFG_INT,   spec_tokens,      "4", 1, 16, NULL,     \
      "Speculative decoding: most proposed tokens verified per step of one request.")  \
    X("engine", "spec-ngram",       CFG_INT,   spec_ngram,       "3", 1, 16, NULL,     \
      "Speculative decoding: longest run of latest tokens looked up (shorter ones down to 1 when it is not found).") \
    X("log",    "log-level",        CFG_STR,   log_level,        "info", 0, 0, "error|warn|info|debug", \
      "Least severe message that is logged.")                                          \
    X("log",    "log-file",         CFG_STR,   log_file,         "", 0, 0, NULL,       \
      "Append logs to this file instead of standard error; reopened on SIGHUP.")

/* The C type that holds each kind of value. */
#define CFG_CTYPE_CFG_STR   char *
#define CFG_CTYPE_CFG_INT   long long
#define CFG_CTYPE_CFG_SIZE  uint64_t
#define CFG_CTYPE_CFG_FLOAT double
#define CFG_CTYPE_CFG_BOOL  int

typedef struct {
#define CFG_FIELD(sec, key, kind, field, def, lo, hi, choices, help) CFG_CTYPE_##kind field;
    CONFIG_KEYS(CFG_FIELD)
#undef CFG_FIELD
} config_t;

/* Fill every key with its default.  Returns 0 or ERR_NOMEM. */
int config_init(config_t *c);
/* Free the strings a config owns. */
void config_close(config_t *c);

/*
 * Set one key from its text form.  `where` names the origin for messages
 * ("llamad.conf:12" or "--port").  Returns 0, ERR_NOTFOUND for an unknown
 * key, or ERR_INVALID / ERR_RANGE with a message in err.
 */
int config_set(config_t *c, const char *key, const char *value, const char *where,
               char *err, size_t errlen);

/*
 * Read an INI file.  Keys must sit in their own section.  Returns 0 or an
 * error naming file, line and key.
 */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);

/* True if `key` is a configuration key (so that `--key` is its flag). */
int config_has_key(const char *key);
/* Whether the key takes a value (every key does except booleans used as bare flags). */
int config_key_is_bool(const char *key);

/* Print the keys as --help lines, with their defaults. */
void config_print_help(FILE *out);
/* Print the effective configuration as an INI file. */
void config_print(const config_t *c, FILE *out);

#endif
