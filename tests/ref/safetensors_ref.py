#!/usr/bin/python3
"""Independent safetensors reference for tests/unit/test_safetensors.c.

Written with struct + json + numpy only (the `safetensors` package is not used,
so the test does not trust the format knowledge of any one implementation).
Run with /usr/bin/python3 (Debian's numpy; torch is optional).

  safetensors_ref.py write-half DIR
      Writes DIR/half.safetensors holding every one of the 65536 F16 bit
      patterns ("f16"), every BF16 bit pattern ("bf16"), a set of F64 values
      ("f64"), and for each the float32 values numpy/torch convert them to
      ("f16_expect", "bf16_expect", "f64_expect", all F32). The header is
      deliberately not padded, so the data section starts at an odd offset and
      the C reader must cope with unaligned data. Prints which library made the
      BF16 expectations.

  safetensors_ref.py describe FILE
      Reads FILE and prints JSON: header_len, metadata, and for each tensor its
      dtype, shape, data_offsets and values (flattened, as Python floats).
"""
import json
import struct
import sys

import numpy as np

NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
             "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
             "U8": np.uint8, "BOOL": np.bool_}


def bf16_bits_to_f32(bits):
    """float32 values of bfloat16 bit patterns, through torch when available."""
    try:
        import torch
        t = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16)
        return t.to(torch.float32).numpy(), "torch " + torch.__version__
    except ImportError:
        return (bits.astype(np.uint32) << 16).view(np.float32), "numpy bit shift"


def write_file(path, tensors, pad=False):
    """tensors: list of (name, dtype string, numpy array)."""
    header, blobs, offset = {}, [], 0
    for name, dtype, arr in tensors:
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    elif (8 + len(text)) % 2 == 0:
        text += b" "  # make the data section start at an odd offset
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def write_half(outdir):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    f16 = bits.view(np.float16)
    f16_expect = f16.astype(np.float32)
    bf16_expect, bf16_source = bf16_bits_to_f32(bits)
    f64 = np.array([0.0, -0.0, 1.0, -2.5, 1.0 / 3.0, np.pi, 1e-30, 1e-40, 1e-46, 3.4028235e38,
                    3.5e38, -1e300, 1e300, np.inf, -np.inf, np.nan, 2.0 ** -149,
                    2.0 ** -150, 1.0 + 2.0 ** -24, 1.0 + 3 * 2.0 ** -25], dtype=np.float64)
    with np.errstate(over="ignore"):
        f64_expect = f64.astype(np.float32)
    # The bf16 payload: bit patterns stored as 2-byte little-endian words.
    bf16_raw = bits.view(np.int16)
    write_file(outdir + "/half.safetensors", [
        ("f16", "F16", f16.reshape(256, 256)),
        ("f16_expect", "F32", f16_expect.reshape(256, 256)),
        ("bf16", "BF16", bf16_raw.reshape(256, 256)),
        ("bf16_expect", "F32", bf16_expect.reshape(256, 256)),
        ("f64", "F64", f64),
        ("f64_expect", "F32", f64_expect),
    ])
    print("bf16 expectations from " + bf16_source)


def describe(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    out = {"header_len": n, "metadata": header.pop("__metadata__", {}), "tensors": {},
           "order": list(header.keys())}
    for name, info in header.items():
        b, e = info["data_offsets"]
        if info["dtype"] == "BF16":
            words = np.frombuffer(data[b:e], dtype="<u2").astype(np.uint32)
            arr = (words << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[b:e],
                                dtype=np.dtype(NP_DTYPES[info["dtype"]]).newbyteorder("<"))
        out["tensors"][name] = {"dtype": info["dtype"], "shape": info["shape"],
                                "data_offsets": [b, e],
                                "values": [float(v) for v in arr]}
    print(json.dumps(out))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "write-half":
        write_half(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "describe":
        describe(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
