"""Write tests/fixtures/rng/goldens.json: what torch's CPU generator draws, for sd-core's TorchRng tests.

Run from the repository root: `python3 tools/make_rng_goldens.py`. Needs torch and diffusers (for
`randn_tensor`). Values are stored as the u32 bit patterns of the f32 results so the Rust side can compare
bit for bit. Large draws store the first 64 values plus an FNV-1a-64 hash of all little-endian f32 bytes,
which keeps the fixture small while still pinning every bit.

The torch build matters: on x86-64 (AVX2 or AVX-512) torch runs its AVX2 normal kernel, which is what
TorchRng reproduces. Regenerate on such a machine.
"""

import json
import os
import platform

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

SEEDS = [0, 1, 42, 2**32 + 5, 2**63 + 7, 2**64 - 1]
SHAPES = [(1,), (2,), (3,), (15,), (16,), (17,), (31,), (100,), (4, 8, 8), (4, 64, 64)]
FULL_LIMIT = 256
HEAD = 64

# Draw sequences on one generator: the state (and torch's cached scalar normal) carries over between calls.
SEQUENCES = [
    (42, [("randn", (16,)), ("randn", (7,)), ("randn", (4, 8, 8))]),
    (0, [("randn", (1,)), ("randn", (1,)), ("randn", (1,)), ("randn", (3,))]),
    # An odd scalar draw leaves a cached value, a large draw does not touch it, the next scalar draw uses it.
    (7, [("randn", (5,)), ("randn", (100,)), ("randn", (1,)), ("randn", (2,))]),
    (2**63 + 7, [("randn", (3,)), ("randn", (20,)), ("randn", (5,)), ("randn", (16,)), ("randn", (1,))]),
    (123, [("rand", (5,)), ("randn", (3,)), ("rand", (17,)), ("randn", (17,)), ("randn", (4, 64, 64))]),
    # Crosses several mt19937 blocks (624 words each) with ragged tails.
    (2**64 - 1, [("randn", (1000,)), ("randn", (1001,)), ("randn", (15,)), ("randn", (4, 128, 128))]),
]

# diffusers' randn_tensor with a list of CPU generators, one per batch item.
BATCHES = [
    ([42, 43], (2, 4, 8, 8)),
    ([0, 2**63 + 7, 5], (3, 3, 5)),
]


def bits_of(tensor):
    return tensor.detach().to(torch.float32).contiguous().numpy().view(np.uint32).ravel()


def fnv1a64(bits):
    h = 0xCBF29CE484222325
    for byte in bits.astype("<u4").tobytes():
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def record(bits):
    if len(bits) <= FULL_LIMIT:
        return {"len": len(bits), "bits": [int(b) for b in bits]}
    return {"len": len(bits), "head": [int(b) for b in bits[:HEAD]], "fnv1a64": str(fnv1a64(bits))}


def draw(op, shape, generator):
    fn = torch.randn if op == "randn" else torch.rand
    return fn(shape, generator=generator, dtype=torch.float32)


def main():
    singles = []
    for seed in SEEDS:
        for shape in SHAPES:
            g = torch.Generator("cpu").manual_seed(seed)
            singles.append({"seed": str(seed), "shape": list(shape), **record(bits_of(draw("randn", shape, g)))})

    sequences = []
    for seed, steps in SEQUENCES:
        g = torch.Generator("cpu").manual_seed(seed)
        out = []
        for op, shape in steps:
            out.append({"op": op, "shape": list(shape), **record(bits_of(draw(op, shape, g)))})
        sequences.append({"seed": str(seed), "draws": out})

    batches = []
    for seeds, shape in BATCHES:
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        noise = randn_tensor(shape, generator=generators, device=torch.device("cpu"), dtype=torch.float32)
        batches.append({"seeds": [str(s) for s in seeds], "shape": list(shape), **record(bits_of(noise))})

    fixture = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "singles": singles,
        "sequences": sequences,
        "batches": batches,
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "rng", "goldens.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
