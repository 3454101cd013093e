#!/usr/bin/env python3
"""Write a Hugging Face tokenizer.json for a GGUF file's vocabulary.

usage: tests/ref/gguf-to-tokenizer-json.py MODEL.gguf OUT.json

The JSON is what the HF `tokenizers` library loads as the reference for
llamad's tokenizer tests.  It is built from the GGUF metadata alone, read
with the gguf package:

  tokenizer.ggml.model = "gpt2" (byte-level BPE)
    model: BPE over tokenizer.ggml.tokens, merges = tokenizer.ggml.merges in
    order (rank = position), no unk, no byte fallback; added_tokens: every
    CONTROL (special) and USER_DEFINED (not special) token; decoder and
    post-processor ByteLevel; pre_tokenizer from tokenizer.ggml.pre:
      smollm           Sequence[Digits(individual_digits), ByteLevel(use_regex)]
                       (HuggingFaceTB/SmolLM2-*'s own tokenizer.json)
      default, gpt2    ByteLevel(use_regex)
      llama-bpe        Sequence[Split(LLaMA-3 regex, Isolated), ByteLevel(no regex)]
                       with ignore_merges, as Meta's LLaMA-3 tokenizer.json
  tokenizer.ggml.model = "llama" (SentencePiece BPE with byte fallback)
    the legacy LLaMA layout: normalizer Prepend("▁") + Replace(" " -> "▁"),
    no pre_tokenizer, BPE with byte_fallback and unk "<unk>", merges derived
    from the scores (every split of a piece into two pieces, ranked by the
    merged piece's score, best first), decoder Replace/ByteFallback/Fuse/Strip.
"""
import json
import sys

from gguf import GGUFReader

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CONTROL, USER_DEFINED, UNKNOWN = 3, 4, 2


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def added_token(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": special}


def bytelevel(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
            "use_regex": use_regex}


def gpt2_json(tokens, types, merges, pre):
    added = [added_token(i, t, ty == CONTROL) for i, (t, ty) in enumerate(zip(tokens, types))
             if ty in (CONTROL, USER_DEFINED)]
    ignore_merges = False
    if pre == "smollm":
        pre_tok = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, bytelevel(True)]}
    elif pre in ("llama-bpe", "llama3"):
        pre_tok = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated",
             "invert": False}, bytelevel(False)]}
        ignore_merges = True
    elif pre in (None, "default", "gpt2"):
        pre_tok = bytelevel(True)
    else:
        sys.exit(f"unsupported tokenizer.ggml.pre {pre!r}")
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
                  "vocab": {t: i for i, t in reversed(list(enumerate(tokens)))},
                  "merges": list(merges)},
    }


def spm_merges(tokens, scores, types):
    """Merges implied by a SentencePiece BPE vocabulary: a piece p = l + r with
    l and r in the vocabulary, ranked by p's score (higher first); among the
    splits of one piece, by (id of l, id of r)."""
    vocab = {t: i for i, t in reversed(list(enumerate(tokens)))}
    out = []
    for i, (piece, score, ty) in enumerate(zip(tokens, scores, types)):
        if ty != 1 or len(piece) < 2:
            continue
        local = [(piece[:k], piece[k:]) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        out.extend((l, r, score, i) for l, r in local)
    out.sort(key=lambda m: (-m[2], m[3]))
    return [[l, r] for l, r, _, _ in out]


def llama_json(tokens, scores, types):
    added = [added_token(i, t, True) for i, (t, ty) in enumerate(zip(tokens, types))
             if ty in (CONTROL, UNKNOWN)]
    added += [added_token(i, t, False) for i, (t, ty) in enumerate(zip(tokens, types))
              if ty == USER_DEFINED]
    unk = next((t for t, ty in zip(tokens, types) if ty == UNKNOWN), None)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": sorted(added, key=lambda a: a["id"]),
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": unk,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {t: i for i, t in reversed(list(enumerate(tokens)))},
                  "merges": spm_merges(tokens, scores, types)},
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    reader = GGUFReader(sys.argv[1])
    model = field(reader, "tokenizer.ggml.model")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    if model == "gpt2":
        out = gpt2_json(tokens, types, field(reader, "tokenizer.ggml.merges"),
                        field(reader, "tokenizer.ggml.pre"))
    elif model == "llama":
        scores = field(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens)
        out = llama_json(tokens, scores, types)
    else:
        sys.exit(f"unsupported tokenizer.ggml.model {model!r}")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
