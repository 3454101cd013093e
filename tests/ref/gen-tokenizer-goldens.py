#!/usr/bin/env python3
"""Regenerate the tokenizer goldens under tests/ref/goldens/.

usage: tests/ref/gen-tokenizer-goldens.py [--model MODEL.gguf | --no-model] [--out DIR]

The two vocabulary-only GGUF files (tokenizer-llama3.gguf, tokenizer-spm.gguf)
are not committed: tests/run-suite.sh runs this script with --no-model into
the build tree before the tests, and checks that everything else it writes
equals the committed goldens (the references are pinned in
scripts/requirements-test.txt, and the generation is deterministic).

References: HF `tokenizers` and `sentencepiece` (their versions are written
into the goldens).  Two parts:

1. The default model (skipped with a message when MODEL is absent):
   gguf-to-tokenizer-json.py turns its GGUF vocabulary into a tokenizer.json,
   and HF tokenizers encodes every corpus case twice: added tokens matched
   (ids) and not matched (ids_nospecial, encode_special_tokens = True).
   It also decodes seeded random id sequences (text_hex; text_skip_hex with
   skip_special_tokens).  -> tokenizer-smollm2.json

2. A LLaMA-3-style byte-level BPE (always): HF tokenizers' BpeTrainer on
   the generated corpus with LLaMA-3's pre-tokenizer (Split with its regex,
   then ByteLevel without regex), ignore_merges, and its special tokens
   added after the vocabulary (ids past model.vocab, as in LLaMA-3).
   Written as tokenizer-llama3/ (tokenizer.json, merges as [a, b] pairs,
   tokenizer_config.json) and tokenizer-llama3.gguf (tokenizer.ggml.pre =
   "llama-bpe").  HF's ids and decodes -> tokenizer-llama3.json

3. SentencePiece (always): trains a small BPE model with byte_fallback on a
   generated corpus (fixed seed, one thread), writes it as a GGUF
   (tokenizer-spm.gguf: tokenizer.ggml.model = "llama", tokens, scores,
   token_type, bos/eos/unk ids, add_space_prefix) and as an HF directory
   (tokenizer-spm/: tokenizer.json in the legacy LLaMA layout, made by
   gguf-to-tokenizer-json.py from that GGUF, plus tokenizer_config.json).
   Per case: sp_ids (sentencepiece, which never matches special tokens),
   hf_ids (HF, added tokens matched), hf_ids_nospecial, and meta_ids /
   meta_ids_nospecial from the same tokenizer.json rewritten the newer way
   (no normalizer; pre_tokenizer Metaspace, prepend_scheme "first", no
   split), which test_tokenizer.c rewrites the same way at run time.  Random id
   sequences decode to text_hex: the pieces' bytes joined, one leading space
   dropped (the dummy prefix), then decoded as Python's
   bytes.decode("utf-8", "replace") does; sentencepiece itself replaces an
   ill-formed sequence byte by byte, so it is not the reference there.
   -> tokenizer-spm.json

Input text is stored as hex of its UTF-8 bytes.  Cases with ill-formed
UTF-8 are given to the references as bytes.decode("utf-8", "replace")
(one U+FFFD per maximal subpart), which is what llamad's encoder does with
such bytes, so their golden ids apply to the raw bytes.
"""
import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile

import sentencepiece as spm
import tokenizers
from tokenizers import Tokenizer
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def corpus():
    """(name, bytes) pairs."""
    c = [
        ("empty", ""), ("space", " "), ("two_spaces", "  "), ("word", "Hello"),
        ("lead_space", " Hello"), ("hello_world", "Hello world"),
        ("prose", "The quick brown fox jumps over the lazy dog. It wasn't the dog's fault; "
                  "they'd said they'll come back, and we've waited. I'm sure you're right!"),
        ("caps_contractions", "DON'T YOU'VE I'LL WE'RE SHE'S It'S"),
        ("code", "def foo(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n    else:\n"
                 "        return -x\n\nprint(foo(3))\n"),
        ("c_code", "int main(void) {\n    for (int i = 0; i < 10; i++) {\n\t\tprintf(\"%d\\n\", i);\n    }\n}"),
        ("numbers", "1234567 and 3.14159, 1,000,000 -42 0x1F 2024-01-05 007"),
        ("other_digits", "٣٤٥ ² ½ Ⅻ ①"),
        ("spaces_run", "a" + " " * 40 + "b"),
        ("newlines", "\n\n\n"), ("crlf", "line one\r\nline two\r\n\r\n"),
        ("trailing", "trailing   "), ("leading", "   leading"),
        ("mixed_ws", "x \n \n  y\t\t z \t\n"),
        ("unicode_ws", "a\u00a0b\u2003c\u3000d\u0085e\u2028f\u2009g"),
        ("emoji", "I love 🍕 and 🎉! 👍🏽"),
        ("zwj", "family 👨‍👩‍👧‍👦 flag 🏳️‍🌈 ok"),
        ("cjk", "你好，世界！日本語のテキスト 한국어 텍스트"),
        ("accents", "café naïve résumé façade Ångström"),
        ("combining", "e\u0301 a\u0308 n\u0303o Z\u0351\u0322"),
        ("arabic", "مرحبا بالعالم"), ("hindi", "नमस्ते दुनिया"),
        ("chat", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        ("special_inline", "x<|endoftext|>y <|im_end|><|im_end|>"),
        ("special_partial", "<|im_start <|im_end| |im_end|>"),
        ("spm_special", "<s>hello</s> <unk> there"),
        ("metaspace_literal", "\u2581already\u2581marked \u2581"),
        ("nul", "a\x00b"),
        ("punct", "!!! ??? ... --- (parens) [brackets] {braces} @#$%^&*"),
        ("url", "https://example.com/path?q=1&r=two#frag"),
        ("whole_word", "a qwertyuiop"),   # kept out of training; see llama3_part
    ]
    out = [(n, s.encode("utf-8")) for n, s in c]
    out += [
        ("bad_ff", b"abc\xff\xfedef"), ("bad_cut", b"\xe2\x82"),
        ("bad_surrogate", b"\xed\xa0\x80x"), ("bad_emoji_cut", b"\xf0\x9f\x98 ok"),
        ("bad_overlong", b"\xc0\xaf/"), ("bad_tail", b"caf\xc3"),
    ]
    rng = random.Random(1234)
    pool = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            "      \n\n\t.,;:!?'\"-_()[]{}<>/\\|@#$%^&*+=~`"
            "éèàüöñçßÅøÆœ" "你好世界日本語한국" "🍕🎉👍🏽" "\u0301\u0308" "مرحبا" "नमस्ते"
            "\u00a0\u3000\u2009" "٣²½Ⅻ" "▁")
    for i in range(24):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(20, 200)))
        if i % 3 == 0:
            s = s.replace("x", "'s").replace("y", "'ll").replace("z", "'T")
        out.append((f"random{i}", s.encode("utf-8")))
    return out


def as_text(b):
    return b.decode("utf-8", "replace")


def hf_ids(tok, text, special):
    tok.encode_special_tokens = not special
    return tok.encode(text, add_special_tokens=False).ids


def smollm2(model, out_dir):
    if not os.path.exists(model):
        print(f"skipping the SmolLM2 goldens: {model} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        subprocess.run([sys.executable, os.path.join(HERE, "gguf-to-tokenizer-json.py"),
                        model, path], check=True)
        tok = Tokenizer.from_file(path)
    cases = [{"name": n, "hex": b.hex(), "ids": hf_ids(tok, as_text(b), True),
              "ids_nospecial": hf_ids(tok, as_text(b), False)} for n, b in corpus()]
    decode = decode_goldens(tok, 99, tok.get_vocab_size())
    write_json(os.path.join(out_dir, "tokenizer-smollm2.json"), {
        "reference": f"tokenizers {tokenizers.__version__}", "model": os.path.basename(model),
        "cases": cases, "decode": decode})


def training_corpus():
    rng = random.Random(7)
    words = ("the of and to in is was for on that with as by at from it his an were are which "
             "this be or has had not but their first one new after also who they two been her "
             "she other its time all can more would people into over only years some most there "
             "such may when these than up so any used out many Hello World café naïve über "
             "return def int void printf if else while 0 1 2 3 4 5 6 7 8 9 ( ) { } ; : , . ! ? "
             "'s 't -- == != 你好 世界").split()
    sents = []
    for _ in range(3000):
        s = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14)))
        if rng.random() < 0.1:
            s = "    " + s
        sents.append(s)
    return sents


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def decode_goldens(tok, seed, n_vocab):
    rng = random.Random(seed)
    byte_ids = sorted({i for i in range(n_vocab) if len(tok.id_to_token(i)) == 1})
    out = []
    for _ in range(40):
        ids = [rng.choice(byte_ids) if rng.random() < 0.5 else rng.randrange(n_vocab)
               for _ in range(rng.randint(1, 16))]
        out.append({"ids": ids,
                    "text_hex": tok.decode(ids, skip_special_tokens=False).encode().hex(),
                    "text_skip_hex": tok.decode(ids, skip_special_tokens=True).encode().hex()})
    return out


def llama3_part(out_dir):
    from tokenizers import Regex, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = training_corpus() + [as_text(b) for n, b in corpus() if n != "whole_word"] * 3
    tok.train_from_iterator(text, trainer)
    # A word in the vocabulary that no merge reaches: only ignore_merges finds it.
    j = json.loads(tok.to_str())
    j["model"]["vocab"]["\u0120qwertyuiop"] = len(j["model"]["vocab"])
    tok = Tokenizer.from_str(json.dumps(j))
    tok.add_special_tokens(LLAMA3_SPECIALS)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    hf_dir = os.path.join(out_dir, "tokenizer-llama3")
    os.makedirs(hf_dir, exist_ok=True)
    tok.save(os.path.join(hf_dir, "tokenizer.json"))
    write_json(os.path.join(hf_dir, "tokenizer_config.json"),
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    n = tok.get_vocab_size()
    model = json.loads(tok.to_str())["model"]
    w = gguf.GGUFWriter(os.path.join(out_dir, "tokenizer-llama3.gguf"), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list([tok.id_to_token(i) for i in range(n)])
    w.add_token_types([3 if tok.id_to_token(i) in LLAMA3_SPECIALS else 1 for i in range(n)])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in model["merges"]])
    w.add_bos_token_id(bos)
    w.add_eos_token_id(tok.token_to_id("<|end_of_text|>"))
    w.add_eot_token_id(tok.token_to_id("<|eot_id|>"))
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cases = [{"name": nm, "hex": b.hex(), "ids": hf_ids(tok, as_text(b), True),
              "ids_nospecial": hf_ids(tok, as_text(b), False)} for nm, b in corpus()]
    write_json(os.path.join(out_dir, "tokenizer-llama3.json"), {
        "reference": f"tokenizers {tokenizers.__version__}", "n_vocab": n, "cases": cases,
        "decode": decode_goldens(tok, 17, n)})


def spm_part(out_dir):
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_corpus()), model_writer=proto, model_type="bpe",
        vocab_size=640, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, character_coverage=1.0, num_threads=1,
        input_sentence_size=0, shuffle_input_sentence=False, bos_id=1, eos_id=2, unk_id=0,
        pad_id=-1, control_symbols=["<|im_start|>", "<|im_end|>"], minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i)
             else 6 if sp.is_byte(i) else 1 for i in range(n)]

    gguf_path = os.path.join(out_dir, "tokenizer-spm.gguf")
    w = gguf.GGUFWriter(gguf_path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_space_prefix(True)
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    hf_dir = os.path.join(out_dir, "tokenizer-spm")
    os.makedirs(hf_dir, exist_ok=True)
    subprocess.run([sys.executable, os.path.join(HERE, "gguf-to-tokenizer-json.py"), gguf_path,
                    os.path.join(hf_dir, "tokenizer.json")], check=True)
    write_json(os.path.join(hf_dir, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False},
        "eos_token": "</s>", "unk_token": "<unk>"})
    tok = Tokenizer.from_file(os.path.join(hf_dir, "tokenizer.json"))
    with open(os.path.join(hf_dir, "tokenizer.json"), encoding="utf-8") as f:
        meta = json.load(f)
    meta["normalizer"] = None
    meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                             "prepend_scheme": "first", "split": False}
    meta_tok = Tokenizer.from_str(json.dumps(meta))

    cases = []
    for name, b in corpus():
        text = as_text(b)
        cases.append({"name": name, "hex": b.hex(), "sp_ids": sp.encode(text),
                      "hf_ids": hf_ids(tok, text, True),
                      "hf_ids_nospecial": hf_ids(tok, text, False),
                      "meta_ids": hf_ids(meta_tok, text, True),
                      "meta_ids_nospecial": hf_ids(meta_tok, text, False)})
    disagree = [c["name"] for c in cases if c["sp_ids"] != c["hf_ids_nospecial"]]
    if disagree:
        print("note: sentencepiece and HF (ranked merges) differ on:", ", ".join(disagree))

    def piece_bytes(i):
        if types[i] == 6:
            return bytes([int(pieces[i][3:5], 16)])
        return pieces[i].replace("\u2581", " ").encode("utf-8")

    rng = random.Random(5)
    byte_ids = [i for i in range(n) if types[i] == 6]
    decode = []
    for _ in range(40):
        ids = [rng.choice(byte_ids) if rng.random() < 0.6 else rng.randrange(n)
               for _ in range(rng.randint(1, 12))]
        raw = b"".join(piece_bytes(i) for i in ids)
        if raw.startswith(b" "):
            raw = raw[1:]
        decode.append({"ids": ids, "text_hex": raw.decode("utf-8", "replace").encode().hex()})
    write_json(os.path.join(out_dir, "tokenizer-spm.json"), {
        "reference": f"sentencepiece {spm.__version__}, tokenizers {tokenizers.__version__}",
        "n_vocab": n, "cases": cases, "decode": decode})


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models",
                                                    "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(HERE, "goldens"))
    ap.add_argument("--no-model", action="store_true",
                    help="only the generated vocabularies (parts 2 and 3)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    llama3_part(args.out)
    spm_part(args.out)
    if not args.no_model:
        smollm2(args.model, args.out)


if __name__ == "__main__":
    main()
