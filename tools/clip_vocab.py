"""Derive CLIP's vocab.json / merges.txt from open_clip's bpe_simple_vocab_16e6.txt.gz, as CLIP itself does.

CLIP's vocabulary is: the 256 byte-to-unicode characters, the same with `</w>`, then one token per BPE merge,
then `<|startoftext|>` and `<|endoftext|>`. Taking only the first `num_merges` merges yields a smaller but
structurally identical tokenizer, which the tiny fixture models use (the full one has 48,894 merges, 49,408 ids).
"""

import gzip
import json
import os

FULL_MERGES = 49152 - 256 - 2


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def open_clip_bpe_path():
    import open_clip  # noqa: F401  (pip install open_clip_torch)

    return os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")


def clip_merges_and_vocab(num_merges=None):
    lines = gzip.open(open_clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : FULL_MERGES + 1]]
    if num_merges is not None:
        merges = merges[:num_merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return merges, vocab


def write_clip_tokenizer(out_dir, num_merges=None, pad_token="<|endoftext|>", model_max_length=77):
    """Writes vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json like a real SD repo."""
    os.makedirs(out_dir, exist_ok=True)
    merges, vocab = clip_merges_and_vocab(num_merges)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.write("\n".join(" ".join(m) for m in merges) + "\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    config = dict(special)
    config.update(
        {
            "add_prefix_space": False,
            "do_lower_case": True,
            "errors": "replace",
            "model_max_length": model_max_length,
            "tokenizer_class": "CLIPTokenizer",
        }
    )
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2, ensure_ascii=False)
    return len(vocab)


if __name__ == "__main__":
    import sys

    n = write_clip_tokenizer(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(f"wrote {n} tokens to {sys.argv[1]}")
