#!/usr/bin/env python3
"""A Python reference of A1111 1.10's prompt handling, and the golden outputs the Rust tests compare with.

Written from A1111's behaviour (not its code): `modules/prompt_parser.py` (`parse_prompt_attention`, and
`get_learned_conditioning_prompt_schedules` with A1111's lark grammar), `modules/sd_hijack_clip.py` (chunks of 75
tokens with the comma back-off of up to 20 tokens, BOS + 75 + EOS per chunk, textual-inversion vectors spliced in
at the token embeddings, "Original" emphasis: multipliers on the hidden states, then the batch's original mean
restored; the pooled SDXL embedding from the first chunk) and `modules/sd_samplers_cfg_denoiser.py` (sampler
call `i`, from 0, uses the first schedule entry whose end step is >= i; a negative and a positive of different
lengths run as two UNet calls, `pad_cond_uncond` being off by default).

The conditioning it computes is fed to diffusers' pipelines on the tiny fixture models: the UNet's `forward` is
wrapped so that call `i` sees step `i`'s conditioning (diffusers' scheduler, guidance, latents and VAE are
untouched). Textual inversion is also checked against diffusers' own `load_textual_inversion`.

Needs: torch, diffusers 0.42, transformers, safetensors, lark (`pip install lark`).
Run from the repository root: `python3 tools/a1111_prompt_reference.py` (writes tests/fixtures/golden/a1111/
and tests/fixtures/embeddings/).
"""

import json
import re
from pathlib import Path

import lark
import numpy as np
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests/fixtures/models"
OUT = ROOT / "tests/fixtures/golden/a1111"
EMB_DIR = ROOT / "tests/fixtures/embeddings"
CHUNK = 75
COMMA_BACKTRACK = 20

# ---------------------------------------------------------------------------------------------------------------
# Parsing (prompt_parser.py behaviour)
# ---------------------------------------------------------------------------------------------------------------

RE_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_prompt_attention(text):
    res, round_b, square_b = [], [], []

    def mul(start, m):
        for p in range(start, len(res)):
            res[p][1] *= m

    for m in RE_ATTENTION.finditer(text):
        s, weight = m.group(0), m.group(1)
        if s.startswith("\\"):
            res.append([s[1:], 1.0])
        elif s == "(":
            round_b.append(len(res))
        elif s == "[":
            square_b.append(len(res))
        elif weight is not None and round_b:
            mul(round_b.pop(), float(weight))
        elif s == ")" and round_b:
            mul(round_b.pop(), 1.1)
        elif s == "]" and square_b:
            mul(square_b.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(RE_BREAK.split(s)):
                if i > 0:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for pos in round_b:
        mul(pos, 1.1)
    for pos in square_b:
        mul(pos, 1 / 1.1)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


SCHEDULE_PARSER = lark.Lark(r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
""")


def prompt_schedule(prompt, steps):
    """[[end_at_step, text]] (no hires pass)."""

    def collect_steps(tree):
        res = [steps]

        class CollectSteps(lark.Visitor):
            def scheduled(self, tree):
                s = tree.children[-2]
                v = float(s)
                v = v * steps if "." in s else v
                tree.children[-2] = min(steps, int(v))
                if tree.children[-2] >= 1:
                    res.append(tree.children[-2])

            def alternate(self, tree):
                res.extend(range(1, steps + 1))

        CollectSteps().visit(tree)
        return sorted(set(res))

    def at_step(step, tree):
        class AtStep(lark.Transformer):
            def scheduled(self, args):
                before, after, _, when, _ = args
                yield before or () if step <= when else after

            def alternate(self, args):
                args = ["" if not arg else arg for arg in args]
                yield args[(step - 1) % len(args)]

            def start(self, args):
                def flatten(x):
                    if isinstance(x, str):
                        yield x
                    else:
                        for gen in x:
                            yield from flatten(gen)
                return "".join(flatten(args))

            def plain(self, args):
                yield args[0].value

            def __default__(self, data, children, meta):
                for child in children:
                    yield child

        return AtStep().transform(tree)

    try:
        tree = SCHEDULE_PARSER.parse(prompt)
    except lark.exceptions.LarkError:
        return [[steps, prompt]]
    return [[t, at_step(t, tree)] for t in collect_steps(tree)]


# ---------------------------------------------------------------------------------------------------------------
# Chunks and encoding (sd_hijack_clip.py behaviour)
# ---------------------------------------------------------------------------------------------------------------


class Encoder:
    """One CLIP text encoder as A1111 drives it. `mode`: 'sd' (layer -clip_skip, final norm) or 'sdxl'
    (hidden_states[-(clip_skip + 1)], no norm; pooled from the projection when the model has one)."""

    def __init__(self, tokenizer, model, mode, embeddings, which):
        self.tok, self.model, self.mode = tokenizer, model, mode
        self.id_start, self.id_end = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.id_pad = tokenizer.pad_token_id
        self.comma = tokenizer.get_vocab().get(",</w>")
        self.embeddings = []  # (ids, vectors tensor)
        for name, vecs in embeddings.items():
            ids = tokenizer([name], truncation=False, add_special_tokens=False)["input_ids"][0]
            self.embeddings.append((ids, vecs[which]))
        self.embeddings.sort(key=lambda e: -len(e[0]))

    def final_norm(self):
        inner = getattr(self.model, "text_model", self.model)
        return inner.final_layer_norm

    def find_embedding(self, tokens, offset):
        for ids, vecs in self.embeddings:
            if tokens[offset:offset + len(ids)] == ids:
                return vecs, len(ids)
        return None, None

    def tokenize_line(self, line):
        parsed = parse_prompt_attention(line)
        tokenized = self.tok([t for t, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
        chunks = []
        chunk = {"tokens": [], "mults": [], "fixes": []}
        last_comma = -1

        def next_chunk():
            nonlocal chunk, last_comma
            to_add = CHUNK - len(chunk["tokens"])
            chunk["tokens"] += [self.id_end] * to_add
            chunk["mults"] += [1.0] * to_add
            chunk["tokens"] = [self.id_start] + chunk["tokens"] + [self.id_end]
            chunk["mults"] = [1.0] + chunk["mults"] + [1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = {"tokens": [], "mults": [], "fixes": []}

        for tokens, (text, weight) in zip(tokenized, parsed):
            if text == "BREAK" and weight == -1:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma:
                    last_comma = len(chunk["tokens"])
                elif (len(chunk["tokens"]) == CHUNK and last_comma != -1
                      and len(chunk["tokens"]) - last_comma <= COMMA_BACKTRACK):
                    at = last_comma + 1
                    moved = (chunk["tokens"][at:], chunk["mults"][at:])
                    chunk["tokens"], chunk["mults"] = chunk["tokens"][:at], chunk["mults"][:at]
                    next_chunk()
                    chunk["tokens"], chunk["mults"] = list(moved[0]), list(moved[1])
                if len(chunk["tokens"]) == CHUNK:
                    next_chunk()
                vecs, name_len = self.find_embedding(tokens, position)
                if vecs is None:
                    chunk["tokens"].append(token)
                    chunk["mults"].append(weight)
                    position += 1
                    continue
                n = vecs.shape[0]
                if len(chunk["tokens"]) + n > CHUNK:
                    next_chunk()
                chunk["fixes"].append((len(chunk["tokens"]), vecs))
                chunk["tokens"] += [0] * n
                chunk["mults"] += [weight] * n
                position += name_len
        if chunk["tokens"] or not chunks:
            next_chunk()
        return chunks

    def empty_chunk(self):
        return {"tokens": [self.id_start] + [self.id_end] * (CHUNK + 1), "mults": [1.0] * (CHUNK + 2), "fixes": []}

    def process(self, batch, clip_skip):
        tokens = torch.tensor([c["tokens"] for c in batch])
        if self.id_end != self.id_pad:
            for row in range(tokens.shape[0]):
                index = batch[row]["tokens"].index(self.id_end)
                tokens[row, index + 1:] = self.id_pad
        emb_layer = self.model.get_input_embeddings()

        def splice(_module, _inputs, output):
            output = output.clone()
            for row, chunk in enumerate(batch):
                for offset, vecs in chunk["fixes"]:
                    output[row, offset + 1:offset + 1 + vecs.shape[0]] = vecs.to(output.dtype)
            return output

        handle = emb_layer.register_forward_hook(splice)
        try:
            out = self.model(tokens, output_hidden_states=True)
        finally:
            handle.remove()
        if self.mode == "sd":
            z = out.last_hidden_state if clip_skip <= 1 else \
                self.final_norm()(out.hidden_states[-clip_skip])
        else:
            z = out.hidden_states[-(clip_skip + 1)]
        pooled = getattr(out, "text_embeds", None)
        mults = torch.tensor([c["mults"] for c in batch], dtype=z.dtype)
        original_mean = z.mean()
        z = z * mults.reshape(mults.shape + (1,)).expand(z.shape)
        z = z * (original_mean / z.mean())
        return z, pooled

    def encode(self, texts, clip_skip):
        """A1111's forward on a batch of texts: [B, 77 * chunks, D], pooled [B, P] of chunk 0 (or None)."""
        batch_chunks = [self.tokenize_line(t) for t in texts]
        count = max(len(c) for c in batch_chunks)
        zs, pooled = [], None
        for i in range(count):
            batch = [c[i] if i < len(c) else self.empty_chunk() for c in batch_chunks]
            z, p = self.process(batch, clip_skip)
            zs.append(z)
            if i == 0:
                pooled = p
        return torch.hstack(zs), pooled


def encode_schedule(encoders, prompt, steps, clip_skip, zero=False):
    """[(end_at_step, context [1, T, D], pooled [1, P] or None)] for one prompt."""
    schedule = prompt_schedule(prompt, steps)
    texts = [t for _, t in schedule]
    outs = [e.encode(texts, clip_skip) for e in encoders]
    context = torch.cat([o[0] for o in outs], dim=-1)
    pooled = outs[-1][1] if len(outs) > 1 else None
    if zero:
        context = torch.zeros_like(context)
        pooled = torch.zeros_like(pooled) if pooled is not None else None
    return [(end, context[i:i + 1], None if pooled is None else pooled[i:i + 1])
            for i, (end, _) in enumerate(schedule)]


def at(schedule, step):
    for entry in schedule:
        if step <= entry[0]:
            return entry
    return schedule[0]


# ---------------------------------------------------------------------------------------------------------------
# Driving diffusers with the reference conditioning
# ---------------------------------------------------------------------------------------------------------------


def wrap_unet(unet, pos, neg, sdxl):
    """Call `i` of the UNet uses step i's conditioning; contexts of different lengths run as two calls."""
    original = unet.forward
    state = {"call": 0}

    def forward(sample, timestep, encoder_hidden_states=None, **kwargs):
        step = state["call"]
        state["call"] += 1
        p = at(pos, step)
        batch = sample.shape[0]
        added = kwargs.pop("added_cond_kwargs", None)

        def run(x, ctx, pooled, time_ids):
            extra = dict(kwargs)
            if sdxl:
                extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
            return original(x, timestep, encoder_hidden_states=ctx, **extra)[0]

        if neg is None:
            ctx = p[1].repeat(batch, 1, 1)
            out = run(sample, ctx, None if not sdxl else p[2].repeat(batch, 1), added and added["time_ids"])
            return (out,)
        n = at(neg, step)
        half = batch // 2
        tid = added["time_ids"] if sdxl else None
        u = run(sample[:half], n[1].repeat(half, 1, 1), None if not sdxl else n[2].repeat(half, 1),
                None if tid is None else tid[:half])
        c = run(sample[half:], p[1].repeat(half, 1, 1), None if not sdxl else p[2].repeat(half, 1),
                None if tid is None else tid[half:])
        return (torch.cat([u, c]),)

    unet.forward = forward
    return lambda: setattr(unet, "forward", original)


def run_reference(pipe, encoders, c, sdxl):
    steps = c["steps"]
    calls = steps * (2 if c["sampler"] == "heun" else 1)
    with torch.no_grad():
        pos = encode_schedule(encoders, c["prompt"], calls, c["clip_skip"])
        guided = c["guidance_scale"] > 1
        neg = None
        if guided:
            neg = encode_schedule(encoders, c["negative_prompt"], calls, c["clip_skip"],
                                  zero=sdxl and c["negative_prompt"] == "")
        restore = wrap_unet(pipe.unet, pos, neg, sdxl)
        try:
            kwargs = dict(num_inference_steps=steps, guidance_scale=c["guidance_scale"],
                          width=c["width"], height=c["height"], output_type="np",
                          generator=torch.Generator("cpu").manual_seed(c["seed"]))
            # Shapes only: the wrapped UNet supplies the real conditioning every call.
            dummy = pos[0][1]
            kwargs.update(prompt_embeds=dummy, negative_prompt_embeds=torch.zeros_like(dummy))
            if sdxl:
                kwargs.update(pooled_prompt_embeds=pos[0][2], negative_pooled_prompt_embeds=torch.zeros_like(pos[0][2]))
            images = pipe(**kwargs).images
        finally:
            restore()
    return images, pos, neg


def to_u8(images):
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def plain_image(pipe, c):
    with torch.no_grad():
        return pipe(prompt=c["prompt"], negative_prompt=c["negative_prompt"], num_inference_steps=c["steps"],
                    guidance_scale=c["guidance_scale"], width=c["width"], height=c["height"], output_type="np",
                    clip_skip=None if c["clip_skip"] == 1 else c["clip_skip"] - 1,
                    generator=torch.Generator("cpu").manual_seed(c["seed"])).images


LONG = ", ".join(["a red house", "green trees", "a river", "mountains far away", "a small boat", "sunset",
                  "clouds", "birds in the sky", "a wooden bridge", "flowers", "a dog", "a cat"])


def case(name, prompt, negative="blurry, low quality", steps=6, clip_skip=1, guidance=7.5, sampler="euler"):
    return {"name": name, "prompt": prompt, "negative_prompt": negative, "steps": steps, "clip_skip": clip_skip,
            "guidance_scale": guidance, "width": 64, "height": 64, "seed": 42, "sampler": sampler}


SD1_CASES = [
    case("weights", "a photo of an (astronaut:1.6) riding a [horse] on ((mars))"),
    case("nesting", "a ((photo of (an astronaut:1.3)) riding) [[a horse]] on mars"),
    case("escapes", "a photo \\(astronaut\\) riding a horse on mars \\[red planet\\]"),
    case("two_chunks", LONG + ", " + LONG),
    case("break", "a photo of an astronaut BREAK riding a horse on mars"),
    case("editing", "a photo of a [cat:dog:0.5] on mars"),
    case("editing_int", "a photo of a [cat:dog:2] on [mars::4]"),
    case("alternation", "a photo of a [cat|dog|horse] on mars"),
    case("clip_skip", "a photo of an (astronaut:1.4) riding a horse", clip_skip=2),
    case("neg_longer", "a photo of an astronaut", negative=LONG + ", " + LONG),
    case("embedding", "a photo of tinyemb riding a (horse:1.2)"),
    case("heun_editing", "a photo of a [cat:dog:0.5] on mars", sampler="heun", steps=4),
]

SDXL_CASES = [
    case("sdxl_weights", "a photo of an (astronaut:1.6) riding a [horse] on ((mars))"),
    case("sdxl_two_chunks", LONG + ", " + LONG, negative=""),
    case("sdxl_break_editing", "a photo of a [cat:dog:0.5] BREAK on mars"),
    case("sdxl_embedding", "a photo of tinyxl riding a horse"),
]

PARSE_CASES = [
    "normal text", "an (important) word", "(unbalanced", "\\(literal\\]", "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", "a BREAK b", "BREAKfast", "(a:1.2) x:y", "",
    "[[a]] ((b:0.5)) c\\\\d \\e", "(a:-1) [b:.5] (c:+2.)", "a [b:c:3] (d:1.1) [e|f]",
]

SCHEDULE_CASES = [
    ("a [b:3]", 10), ("a [b: 3]", 10), ("a [[[b]]:2]", 10), ("[(a:2):3]", 10), ("a [b : c : 1] d", 10),
    ("a[b:[c:d:2]:1]e", 10), ("a [unbalanced", 10), ("a [b:.5] c", 10), ("a [{b|d{:.5] c", 10),
    ("((a][:b:c [d:3]", 10), ("[a|(b:1.1)]", 3), ("[fe|]male", 3), ("[fe|||]male", 5),
    ("a [cat:dog:0.5] on [mars::4]", 6), ("x [a|b|c] y", 6), ("[a:b:1e1]", 20), ("(a:1.2) [b:c:-1]", 8),
    ("a | b", 5), ("[a:b:c:3]", 5), ("trailing \\", 5), ("[a:(b:1.1):0.25] and [c|[d:e:2]]", 8),
]


def make_embeddings(sd1_te, xl_te1, xl_te2):
    """Fixture embeddings: random vectors at the token-embedding scale, strong enough to change the image."""
    EMB_DIR.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    def vecs(te, n):
        w = te.get_input_embeddings().weight
        return (torch.randn(n, w.shape[1], generator=g) * w.std() * 3).contiguous()

    sd1 = vecs(sd1_te, 2)
    (EMB_DIR / "sd1").mkdir(exist_ok=True)
    save_file({"emb_params": sd1}, EMB_DIR / "sd1" / "tinyemb.safetensors")
    xl = {"clip_l": vecs(xl_te1, 3), "clip_g": vecs(xl_te2, 3)}
    (EMB_DIR / "sdxl").mkdir(exist_ok=True)
    save_file(xl, EMB_DIR / "sdxl" / "tinyxl.safetensors")
    # One file of the wrong width for SD 1 (listed as skipped).
    save_file({"emb_params": torch.zeros(1, 7)}, EMB_DIR / "sd1" / "wrongwidth.safetensors")
    return {"tinyemb": {0: sd1}}, {"tinyxl": {0: xl["clip_l"], 1: xl["clip_g"]}}


def set_scheduler(pipe, sampler):
    if sampler == "heun":
        from diffusers import HeunDiscreteScheduler
        pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)
    else:
        pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)


def make_prompt_model():
    """tiny-sd1-prompt: tiny-sd1 (linked) with a text encoder whose layer norms have non-trivial weights and
    biases, as trained models do. tiny-sd1's are 1 and 0, so its hidden states after the final norm average to
    0 and "Original" emphasis (which rescales to restore that mean) is ill-conditioned there."""
    import os
    import shutil
    from transformers import CLIPTextModel
    dst = MODELS / "tiny-sd1-prompt"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir()
    for part in ("unet", "vae", "scheduler", "tokenizer"):
        os.symlink(f"../tiny-sd1/{part}", dst / part)
    shutil.copy(MODELS / "tiny-sd1" / "model_index.json", dst / "model_index.json")
    te = CLIPTextModel.from_pretrained(str(MODELS / "tiny-sd1" / "text_encoder"))
    g = torch.Generator().manual_seed(99)
    for name, param in te.named_parameters():
        if "layer_norm" in name:
            if name.endswith("weight"):
                param.data = 1 + 0.2 * torch.randn(param.shape, generator=g)
            else:
                param.data = 0.5 * torch.randn(param.shape, generator=g)
    te.save_pretrained(str(dst / "text_encoder"))
    # Published checkpoints carry the `text_model.` prefix that transformers 5 drops when saving.
    from safetensors.torch import load_file
    path = dst / "text_encoder" / "model.safetensors"
    state = load_file(str(path))
    save_file({k if k.startswith("text_model.") else f"text_model.{k}": v.contiguous() for k, v in state.items()},
              str(path))


def main():
    torch.set_grad_enabled(False)
    OUT.mkdir(parents=True, exist_ok=True)
    make_prompt_model()
    sd1 = StableDiffusionPipeline.from_pretrained(str(MODELS / "tiny-sd1-prompt"), safety_checker=None)
    sd1.set_progress_bar_config(disable=True)
    xl = StableDiffusionXLPipeline.from_pretrained(str(MODELS / "tiny-sdxl"))
    xl.set_progress_bar_config(disable=True)
    sd1_emb, xl_emb = make_embeddings(sd1.text_encoder, xl.text_encoder, xl.text_encoder_2)

    sd1_enc = [Encoder(sd1.tokenizer, sd1.text_encoder, "sd", sd1_emb, 0)]
    xl_enc = [Encoder(xl.tokenizer, xl.text_encoder, "sdxl", xl_emb, 0),
              Encoder(xl.tokenizer_2, xl.text_encoder_2, "sdxl", xl_emb, 1)]
    cases_out = []
    tensors = {}
    for model, pipe, encoders, cases, sdxl in (("tiny-sd1-prompt", sd1, sd1_enc, SD1_CASES, False),
                                                ("tiny-sdxl", xl, xl_enc, SDXL_CASES, True)):
        for c in cases:
            c = dict(c, model=model, sdxl=sdxl)
            set_scheduler(pipe, c["sampler"])
            images, pos, neg = run_reference(pipe, encoders, c, sdxl)
            u8 = to_u8(images)
            tensors[f"{c['name']}.image"] = torch.from_numpy(np.ascontiguousarray(u8))
            for k, (end, ctx, pooled) in enumerate(pos):
                tensors[f"{c['name']}.positive.{k}"] = ctx.contiguous()
                if pooled is not None:
                    tensors[f"{c['name']}.positive_pooled.{k}"] = pooled.contiguous()
            c["positive_ends"] = [e for e, _, _ in pos]
            c["negative_ends"] = [e for e, _, _ in neg] if neg else []
            c["positive_tokens"] = int(pos[0][1].shape[1])
            c["negative_tokens"] = int(neg[0][1].shape[1]) if neg else 0
            # How far the A1111 image is from diffusers' reading of the literal text (tests assert it is far).
            if "embedding" not in c["name"] and c["clip_skip"] == 1:
                set_scheduler(pipe, c["sampler"])
                plain = to_u8(plain_image(pipe, c))
                c["plain_max_diff"] = int(np.abs(plain.astype(int) - u8.astype(int)).max())
            cases_out.append(c)
            print(f"{model}/{c['name']}: chunks {c['positive_tokens'] // 77}/{c['negative_tokens'] // 77}, "
                  f"schedule {c['positive_ends']}, vs plain {c.get('plain_max_diff')}")

    # Textual inversion through diffusers' own loader, on the prompt without A1111 syntax.
    ti = []
    sd1.load_textual_inversion(str(EMB_DIR / "sd1" / "tinyemb.safetensors"), token="tinyemb")
    set_scheduler(sd1, "euler")
    c = case("diffusers_ti_sd1", "a photo of tinyemb riding a horse")
    with torch.no_grad():
        img = to_u8(sd1(prompt=c["prompt"], negative_prompt=c["negative_prompt"], num_inference_steps=c["steps"],
                        guidance_scale=c["guidance_scale"], width=64, height=64, output_type="np",
                        generator=torch.Generator("cpu").manual_seed(42)).images)
    tensors[f"{c['name']}.image"] = torch.from_numpy(np.ascontiguousarray(img))
    ti.append(dict(c, model="tiny-sd1-prompt"))
    path = EMB_DIR / "sdxl" / "tinyxl.safetensors"
    from safetensors.torch import load_file
    state = load_file(str(path))
    xl.load_textual_inversion(state["clip_l"], token="tinyxl", text_encoder=xl.text_encoder, tokenizer=xl.tokenizer)
    xl.load_textual_inversion(state["clip_g"], token="tinyxl", text_encoder=xl.text_encoder_2,
                              tokenizer=xl.tokenizer_2)
    set_scheduler(xl, "euler")
    c = case("diffusers_ti_sdxl", "a photo of tinyxl riding a horse")
    with torch.no_grad():
        img = to_u8(xl(prompt=c["prompt"], negative_prompt=c["negative_prompt"], num_inference_steps=c["steps"],
                       guidance_scale=c["guidance_scale"], width=64, height=64, output_type="np",
                       generator=torch.Generator("cpu").manual_seed(42)).images)
    tensors[f"{c['name']}.image"] = torch.from_numpy(np.ascontiguousarray(img))
    ti.append(dict(c, model="tiny-sdxl"))

    parse = [{"prompt": p, "parsed": parse_prompt_attention(p)} for p in PARSE_CASES]
    schedules = [{"prompt": p, "steps": s, "schedule": prompt_schedule(p, s)} for p, s in SCHEDULE_CASES]
    save_file(tensors, OUT / "goldens.safetensors")
    (OUT / "cases.json").write_text(json.dumps({"cases": cases_out, "textual_inversion": ti, "parse": parse,
                                                "schedules": schedules}, indent=1) + "\n")


if __name__ == "__main__":
    main()
