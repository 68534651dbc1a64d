#!/usr/bin/python3
"""make_seeds.py: regenerate the small seed corpora under tests/fuzz/corpus/.

Run from the repository root with /usr/bin/python3 (numpy and h5py). Seeds are
small valid inputs of each format, plus a few near-misses, so the fuzzer starts
from inside each reader instead of at its first check. HDF5 seeds come from the
project's own writer (`autointerp tokenize`) when bin/autointerp exists, and
from h5py in the same layout otherwise.
"""
import json, os, struct, subprocess, sys, tempfile
import numpy as np

OUT = "tests/fuzz/corpus"


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def config_seeds():
    for fn in sorted(os.listdir("configs")):
        if fn.endswith(".json"):
            put("config", fn, open(os.path.join("configs", fn), "rb").read())
    put("config", "minimal.json", '{"experiment": "x"}')
    put("config", "sae.json", '{"sae": {"ratio": 4, "types": ["local", "e2e"]}, "seed": 3}')
    put("config", "bad_range.json", '{"sae": {"ratio": -3}}')


def safetensors(tensors, meta=None, pad=True):
    hdr, blobs, off = {}, [], 0
    if meta:
        hdr["__metadata__"] = meta
    for name, dtype, arr in tensors:
        b = arr.tobytes()
        hdr[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def safetensors_seeds():
    r = np.arange(6, dtype=np.float32).reshape(2, 3)
    put("safetensors", "f32.st", safetensors([("w", "F32", r)], {"format": "pt"}))
    put("safetensors", "mixed.st", safetensors([
        ("a", "F16", r.astype(np.float16)),
        ("b", "BF16", (r.view(np.uint32) >> 16).astype(np.uint16)),
        ("c", "F64", r.astype(np.float64)),
        ("d", "I64", np.arange(3, dtype=np.int64)),
        ("e", "U8", np.arange(4, dtype=np.uint8)),
        ("empty", "F32", np.zeros((0, 4), np.float32)),
        ("scalar", "F32", np.array(1.5, np.float32))]))
    put("safetensors", "empty_header.st", safetensors([]))


def llama_bin(dim, hidden, layers, heads, kv, vocab, seq, shared=True, seed=0):
    rng = np.random.default_rng(seed)
    hs = dim // heads
    n = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv * hs * dim +
         layers * dim * dim + layers * dim + 3 * layers * hidden * dim + dim + seq * hs)
    if not shared:
        n += vocab * dim
    w = (rng.standard_normal(n) * 0.1).astype(np.float32)
    v = vocab if shared else -vocab
    return struct.pack("<7i", dim, hidden, layers, heads, kv, v, seq) + w.tobytes()


def llama_model_seeds():
    put("llama_model", "tiny_shared.bin", llama_bin(8, 16, 1, 2, 1, 12, 4))
    put("llama_model", "tiny_classifier.bin", llama_bin(8, 12, 2, 2, 2, 10, 3, shared=False))
    put("llama_model", "header_only.bin", struct.pack("<7i", 8, 16, 1, 2, 1, 12, 4))


GPT2M_MARK = b"\n===model.safetensors===\n"


def gpt2_model(C=8, L=1, H=2, V=11, T=5, drop=None, extra=None):
    rng = np.random.default_rng(1)
    cfg = {"model_type": "gpt2", "activation_function": "gelu_new", "n_layer": L, "n_head": H,
           "n_embd": C, "n_positions": T, "vocab_size": V, "layer_norm_epsilon": 1e-5,
           "n_inner": None}
    shapes = {"wte.weight": [V, C], "wpe.weight": [T, C], "ln_f.weight": [C], "ln_f.bias": [C]}
    for l in range(L):
        p = "h.%d." % l
        shapes.update({p + "ln_1.weight": [C], p + "ln_1.bias": [C],
                       p + "attn.c_attn.weight": [C, 3 * C], p + "attn.c_attn.bias": [3 * C],
                       p + "attn.c_proj.weight": [C, C], p + "attn.c_proj.bias": [C],
                       p + "ln_2.weight": [C], p + "ln_2.bias": [C],
                       p + "mlp.c_fc.weight": [C, 4 * C], p + "mlp.c_fc.bias": [4 * C],
                       p + "mlp.c_proj.weight": [4 * C, C], p + "mlp.c_proj.bias": [C]})
    if extra:
        shapes.update(extra)
    ts = [(k, "F32", (rng.standard_normal(v) * 0.1).astype(np.float32))
          for k, v in shapes.items() if k != drop]
    return json.dumps(cfg).encode() + GPT2M_MARK + safetensors(ts)


def gpt2_model_seeds():
    put("gpt2_model", "tiny.txt", gpt2_model())
    put("gpt2_model", "two_layers.txt", gpt2_model(C=4, L=2, H=1, V=7, T=3))
    put("gpt2_model", "missing_tensor.txt", gpt2_model(drop="h.0.ln_2.bias"))


SAELENS_MARK = b"\n===sae_weights.safetensors===\n"


def saelens(d_in=4, d_sae=6, apply_b_dec=False, hook="blocks.1.hook_resid_pre", unit=True):
    rng = np.random.default_rng(2)
    cfg = {"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "activation_fn_str": "relu",
           "apply_b_dec_to_input": apply_b_dec, "normalize_activations": "none",
           "dtype": "float32", "model_name": "tiny", "hook_name": hook, "context_size": 16,
           "prepend_bos": True}
    dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    if unit:
        dec /= np.linalg.norm(dec, axis=1, keepdims=True)
    ts = [("W_enc", "F32", rng.standard_normal((d_in, d_sae)).astype(np.float32)),
          ("b_enc", "F32", rng.standard_normal(d_sae).astype(np.float32)),
          ("W_dec", "F32", dec),
          ("b_dec", "F32", rng.standard_normal(d_in).astype(np.float32))]
    return json.dumps(cfg).encode() + SAELENS_MARK + safetensors(ts)


def saelens_seeds():
    put("saelens", "unit.txt", saelens())
    put("saelens", "fold_and_rescale.txt", saelens(apply_b_dec=True, unit=False))
    put("saelens", "resid_post.txt", saelens(d_in=3, d_sae=5, hook="blocks.0.hook_resid_post"))


def llama2c_tok(extra):
    toks = [(0.0, b"<unk>"), (0.0, b"\n<s>\n"), (0.0, b"\n</s>\n")]
    toks += [(0.0, b"<0x%02X>" % b) for b in range(256)]
    toks += extra
    out = struct.pack("<i", max(len(t) for _, t in toks))
    for s, t in toks:
        out += struct.pack("<fi", s, len(t)) + t
    return out


def llama2c_tok_seeds():
    put("llama2c_tok", "bytes_only.bin", llama2c_tok([]))
    put("llama2c_tok", "merges.bin", llama2c_tok([
        (-1.0, b" "), (-2.0, b"e"), (-3.0, b"t"), (-4.0, b"on"), (-5.0, b"o"), (-6.0, b"n"),
        (-7.0, b" t"), (-8.0, b"ime"), (-9.0, b"im"), (-10.0, b"i"), (-11.0, b"m"),
        (-12.0, b"\xc3\xa9"), (-13.0, b"t\xc3\xa9"), (-1e10, b"never")]))
    put("llama2c_tok", "truncated.bin", llama2c_tok([(-1.0, b" ")])[:-3])


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


MARK = b"\n===vocab.bpe===\n"


def gpt2_seed(merges, eot=True, version=True):
    bu = bytes_to_unicode()
    enc = {bu[b]: b for b in range(256)}

    def bl(s):
        return "".join(bu[b] for b in s.encode())
    lines = []
    for a, b in merges:
        enc[bl(a + b)] = len(enc)
        lines.append(bl(a) + " " + bl(b))
    if eot:
        enc["<|endoftext|>"] = len(enc)
    text = ("#version: 0.2\n" if version else "") + "\n".join(lines) + "\n"
    return json.dumps(enc, ensure_ascii=False).encode() + MARK + text.encode()


def gpt2_bpe_seeds():
    m = [("H", "e"), ("l", "l"), ("He", "ll"), ("Hell", "o"), (" ", "w"), ("o", "r"),
         (" w", "or"), ("l", "d"), (" wor", "ld"), ("'", "s"), ("\u00e9", "t")]
    put("gpt2_bpe", "small.txt", gpt2_seed(m))
    put("gpt2_bpe", "no_eot.txt", gpt2_seed(m[:3], eot=False, version=False))
    put("gpt2_bpe", "comma_alias.txt", gpt2_seed([("\"", ","), ("\",", "\""), (",", "\"")]))


def tok_encode_seeds():
    texts = ["Hello world, it's 2024!", "  multiple   spaces\n\n\ttabs",
             "<|endoftext|>doc two<|endoftext|>", "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600",
             "Once upon a time there was a little girl named Lily."]
    for i, t in enumerate(texts):
        for sel in (0, 1):
            put("tok_encode", "t%d_%s" % (i, "llama" if sel else "gpt2"), bytes([sel]) + t.encode())
    put("tok_encode", "invalid_utf8", b"\x00\xff\xfe\xc3(\xe2\x82 \xf0\x9f\x98")
    put("tok_encode", "invalid_utf8_llama", b"\x01\xff\xfe\xc3(\xe2\x82 \xf0\x9f\x98\x00x")


def llm_parse_seeds():
    d = "tests/fixtures/llm"
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".json"):
            continue
        body = open(os.path.join(d, fn), "rb").read()
        mode = 0
        if "completions" in fn:
            mode |= 1
        if "logprobs" in fn or "echo" in fn:
            mode |= 2
        if "structured" in fn or "schema" in fn or "json" in fn:
            mode |= 8
        put("llm_parse", fn, bytes([mode]) + body)
    d = "tests/fixtures/interp"
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".json"):
            continue
        body = open(os.path.join(d, fn), "rb").read()
        mode = 4  # json_object
        if "completions" in fn:
            mode |= 1
        if "logprobs" in fn or "echo" in fn:
            mode |= 2
        try:
            ch = json.loads(body)["choices"][0]
            content = ch.get("message", {}).get("content") or ch.get("text") or ""
            acts = json.loads(content)
            acts = acts["activations"] if isinstance(acts, dict) else acts
            if len(acts) in (1, 4, 7, 10):
                mode |= ((len(acts) - 1) // 3) << 6
        except (ValueError, KeyError, TypeError, IndexError):
            pass
        put("llm_parse", "interp_" + fn, bytes([mode]) + body)
    put("llm_parse", "sim_json_four", bytes([4 | (1 << 6)]) + json.dumps({
        "choices": [{"message": {"content": "{\"activations\": [0, 3, 10, 1.0]}"},
                     "finish_reason": "stop"}]}).encode())
    put("llm_parse", "json_object_ok", bytes([4]) + json.dumps({
        "choices": [{"message": {"role": "assistant", "content": "{\"a\": [1, 2]}"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 60, "completion_tokens": 5}}).encode())
    put("llm_parse", "cut_prompt", bytes([0x20]) + json.dumps({
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1}}).encode())


def jsonl_seeds():
    put("jsonl", "two.jsonl", '{"a":1}\n{"b":[1,2,{"c":"d"}]}\n')
    put("jsonl", "torn.jsonl", '{"a":1}\n{"b":2')
    put("jsonl", "blank_lines.jsonl", '\n{"a":1}\n\n  \n{"x":null}\n\n')
    put("jsonl", "bad_last.jsonl", '{"a":1}\n[1,2]\n\n')
    put("jsonl", "bad_middle.jsonl", '{"a":1}\nnot json\n{"b":2}\n')


def h5_seeds(tmp):
    cli = "bin/autointerp"
    texts = {"a.txt": "Once upon a time.<|endoftext|>The end.",
             "b.txt": "Lily saw a dog<|endoftext|><|endoftext|>x"}
    for k, v in texts.items():
        open(os.path.join(tmp, k), "w").write(v)
    made = 0
    if os.access(cli, os.X_OK):
        toks = [("llama", "../shared/models/stories260K/tok512.bin"),
                ("gpt2", "../shared/tokenizers/gpt2")]
        for name, tok in toks:
            if not os.path.exists(tok):
                continue
            for k in texts:
                out = os.path.join(tmp, "%s_%s.h5" % (name, k[0]))
                subprocess.run([cli, "tokenize", "-q", "-t", tok, "-o", out, os.path.join(tmp, k)],
                               check=True, stdout=subprocess.DEVNULL)
                put("h5", os.path.basename(out), open(out, "rb").read())
                made += 1
    if made == 0:
        import h5py
        out = os.path.join(tmp, "h5py.h5")
        with h5py.File(out, "w") as f:
            f.create_dataset("tokens", data=np.array([1, 5, 9, 2, 1, 7], np.uint16))
            f.create_dataset("doc_offsets", data=np.array([0, 4, 6], np.int64))
            for k, v in [("format", "autointerp-tokens"), ("tokenizer", "llama2c"), ("sources", "a")]:
                f.attrs[k] = v
            for k, v in [("format_version", 1), ("vocab_size", 512), ("eot_id", 2), ("bos_id", 1),
                         ("n_tokens", 6), ("n_documents", 2)]:
                f.attrs[k] = np.int64(v)
        put("h5", "h5py.h5", open(out, "rb").read())


def stage_file_seeds(tmp):
    """A tiny examples file and a tiny SAE file (with metrics), written from the
    contracts in src/extract/examples.h and src/sae/sae_io.h."""
    import h5py
    rng = np.random.default_rng(0)
    out = os.path.join(tmp, "examples_tiny.h5")
    d_sae, W = 6, 4
    with h5py.File(out, "w") as f:
        for k, v in [("format", "autointerp-examples"), ("sae", "s"), ("sae_path", "s.h5"),
                     ("model_path", "m"), ("tokens_path", "t.h5"), ("tokenizer", "gpt2"),
                     ("alive_from", "pass")]:
            f.attrs[k] = np.bytes_(v)
        for k, v in [("format_version", 1), ("window", W), ("offset", 2), ("top_k", 2),
                     ("n_random", 1), ("n_quantile", 0), ("n_explain", 1), ("n_score_top", 1),
                     ("seed", 0), ("n_tokens_scanned", 40), ("d_sae", d_sae), ("n_alive", 4)]:
            f.attrs[k] = np.int64(v)
        f["density"] = np.array([0.1, 0, 0.2, 0.05, 0, 0.3])
        f["max_activation"] = np.array([1, 0, 2, 0.5, 0, 3], np.float32)
        f["features"] = np.array([2, 5], np.int32)
        f["windows/feature"] = np.array([0, 0, 1], np.int32)
        f["windows/split"] = np.array([0, 1, 2], np.uint8)
        f["windows/rank"] = np.array([0, 1, -1], np.int32)
        f["windows/source"] = np.array([0, 8, 20], np.int64)
        f["windows/tokens"] = rng.integers(0, 100, (3, W)).astype(np.int32)
        f["windows/acts"] = rng.random((3, W)).astype(np.float32)
        f.attrs["complete"] = np.int64(1)
    put("h5", "examples_tiny.h5", open(out, "rb").read())
    out = os.path.join(tmp, "sae_tiny.h5")
    d_in = 4
    with h5py.File(out, "w") as f:
        for k, v in [("format", "autointerp-sae"), ("name", "L1-local-lam1-s0"), ("type", "local"),
                     ("hook_name", "blocks.1.hook_resid_pre"), ("model_path", "m"),
                     ("config", "{}"), ("spec_hash", "0")]:
            f.attrs[k] = np.bytes_(v)
        for k, v in [("format_version", 1), ("layer", 1), ("ratio", 1), ("d_in", d_in),
                     ("d_sae", d_sae), ("seed", 0), ("train_tokens", 64), ("steps", 2)]:
            f.attrs[k] = np.int64(v)
        for k in ("lambda", "kl_coeff", "ds_coeff", "final_loss"):
            f.attrs[k] = np.float64(1.0)
        dec = rng.standard_normal((d_in, d_sae)).astype(np.float32)
        f["weights/W_enc"] = rng.standard_normal((d_sae, d_in)).astype(np.float32)
        f["weights/b_enc"] = np.zeros(d_sae, np.float32)
        f["weights/W_dec"] = dec
        f["weights/W_dec_normalised"] = dec / np.linalg.norm(dec, axis=0)
        f["weights/b_dec"] = np.zeros(d_in, np.float32)
        g = f.create_group("metrics")
        for k, v in [("l0", 1.5), ("alive_fraction", 0.5), ("ce_orig", 3.0), ("ce_sae", 3.1),
                     ("ce_increase", 0.1), ("kl", 0.1), ("mse", 0.2), ("explained_variance", 0.8)]:
            g.attrs[k] = np.float64(v)
        for k, v in [("alive", 3), ("dead", 3), ("n_tokens", 64), ("d_sae", d_sae)]:
            g.attrs[k] = np.int64(v)
        g["mse_downstream"] = np.array([0.1])
        g["downstream_layers"] = np.array([2], np.int64)
        g["feature_density"] = np.array([0.1, 0, 0.2, 0, 0.5, 0])
        g["density_hist"] = np.zeros(20, np.int64)  # SAE_DENSITY_BINS
        g["density_bin_edges"] = np.linspace(-10, 0, 21)
    put("h5", "sae_tiny.h5", open(out, "rb").read())


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    config_seeds()
    safetensors_seeds()
    llama_model_seeds()
    gpt2_model_seeds()
    saelens_seeds()
    llama2c_tok_seeds()
    gpt2_bpe_seeds()
    tok_encode_seeds()
    llm_parse_seeds()
    jsonl_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        h5_seeds(tmp)
        stage_file_seeds(tmp)


if __name__ == "__main__":
    sys.exit(main())
