#!/usr/bin/env python3
"""llamad against Hugging Face transformers, a reference outside this project.

usage: hf_reference.py FORWARD_DUMP TOKENIZER_JSON WORKDIR

For a few random-weight LlamaForCausalLM configurations (GQA, head sizes 64
and 128, LLaMA-3 RoPE scaling, tied and separate embeddings), the model is
saved with save_pretrained (safetensors), loaded by llamad from the
directory, and its logits for every position of a prompt are compared with
transformers' in float32 on the CPU: llamad's CPU backend within 1e-4
relative L2, its CUDA backend within 2e-2 (bf16 weights, activations and
KV cache: the same bound as tests/gpu/test_cuda.c's whole-model checks).  Prints PASS/FAIL/SKIP
lines; needs torch and transformers, and says SKIP where they are missing.
"""
import json
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import torch
    import transformers
except ImportError as e:  # the CPU-only CI machine has no torch
    print(f"SKIP: hf_reference (skipped: {e.name} is not installed)")
    sys.exit(0)

fwd, tok_json, work = sys.argv[1:4]
torch.manual_seed(0)
os.makedirs(work, exist_ok=True)

CONFIGS = [
    ("gqa2-hd64", dict(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                       intermediate_size=512, tie_word_embeddings=False)),
    ("gqa4-hd128-tied", dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=1, head_dim=128,
                             intermediate_size=1024, tie_word_embeddings=True)),
    ("llama3-rope", dict(hidden_size=256, num_attention_heads=4, num_key_value_heads=4, head_dim=64,
                         intermediate_size=512, tie_word_embeddings=False,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
]

tokens = [int(t) for t in np.random.default_rng(1).integers(3, 49000, size=40)]
failed = 0
for name, kw in CONFIGS:
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    cfg = transformers.LlamaConfig(vocab_size=49152, num_hidden_layers=2, max_position_embeddings=4096,
                                   rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
                                   initializer_range=0.05, **kw)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    shutil.copy(tok_json, os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}, f)
    with torch.no_grad():
        ref = model(torch.tensor([tokens])).logits[0].double().numpy()
    for backend, tol in (("cpu", 1e-4), ("cuda", 2e-2)):
        out = os.path.join(d, f"{backend}.f32")
        r = subprocess.run([fwd, d, "--tokens", ",".join(map(str, tokens)), "--all", "--backend", backend,
                            "--chunk", "16", "--out", out], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: hf_reference {name} {backend} (forward-dump failed)\n{r.stderr[-2000:]}")
            failed += 1
            continue
        ours = np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)[:, :ref.shape[1]].astype(np.float64)
        err = np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)
        ok = np.all(np.isfinite(ours)) and err.max() < tol
        print(f"{'PASS' if ok else 'FAIL'}: hf_reference {name} {backend} (max rel_l2 {err.max():.2e}, "
              f"tol {tol:g}, transformers {transformers.__version__})")
        failed += not ok
sys.exit(1 if failed else 0)
