#!/usr/bin/env python3
"""Writes single-file checkpoints in the original LDM / CompVis layout (what A1111, ComfyUI and Civitai use)
from the repo's tiny diffusers fixtures, and the full-size key/shape lists of SD 1.5, SD 2.1 and SDXL.

Outputs (under tests/fixtures/single_file/):
  tiny-sd1.safetensors           SD 1.x: model.diffusion_model.*, first_stage_model.*, cond_stage_model.transformer.*
  tiny-sd1-f16-novae.safetensors the same in float16 without the VAE (needs --vae)
  tiny-sd1-vae.safetensors       the VAE alone, LDM names without prefix (like vae-ft-mse-840000-ema-pruned)
  tiny-sd2.safetensors           SD 2.x v-prediction: OpenCLIP under cond_stage_model.model.* (fused in_proj,
                                 one extra final block, as SD 2.x files hold all 24 OpenCLIP blocks)
  tiny-sd1-inpaint.safetensors   9-channel conv_in
  tiny-sdxl.safetensors          conditioner.embedders.0.transformer.* and conditioner.embedders.1.model.*
  tiny-sdxl-inpaint-f16.safetensors  SDXL inpainting in float16
  keys-sd15.json, keys-sd21.json, keys-sdxl.json
                                 full-size architectures: every LDM tensor name and shape, and the diffusers
                                 names and shapes each network needs (built on torch's meta device: no weights)

Every tiny file is cross-checked: diffusers' own single-file converters (`convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`) turn it back into
exactly the diffusers folder's tensors. Run from the repository root: python3 tools/make_single_file_fixtures.py
"""

import json
import os
import re

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "single_file")

RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
          ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]


def resnet(rest):
    for a, b in RESNET:
        if rest.startswith(a):
            return b + rest[len(a):]
    raise KeyError(rest)


def unet_to_ldm(name, config):
    per = config["layers_per_block"] + 1
    simple = [("conv_in.", "input_blocks.0.0."), ("time_embedding.linear_1.", "time_embed.0."),
              ("time_embedding.linear_2.", "time_embed.2."), ("add_embedding.linear_1.", "label_emb.0.0."),
              ("add_embedding.linear_2.", "label_emb.0.2."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2.")]
    for a, b in simple:
        if name.startswith(a):
            return b + name[len(a):]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)", name)
    if m:
        b, kind, l, rest = int(m[1]), m[2], int(m[3]), m[4]
        if kind == "downsamplers":
            return f"input_blocks.{(b + 1) * per}.0.op." + rest[len("conv."):]
        i = 1 + b * per + l
        return f"input_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{i}.1.{rest}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", name)
    if m:
        if m[1] == "attentions":
            return f"middle_block.1.{m[3]}"
        return f"middle_block.{0 if m[2] == '0' else 2}.{resnet(m[3])}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*)", name)
    if m:
        u, kind, l, rest = int(m[1]), m[2], int(m[3]), m[4]
        if kind == "upsamplers":
            has_attn = config["up_block_types"][u].startswith("CrossAttn")
            return f"output_blocks.{u * per + per - 1}.{2 if has_attn else 1}.{rest}"
        i = u * per + l
        return f"output_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{i}.1.{rest}"
    raise KeyError(name)


def vae_to_ldm(name, tensor, levels):
    """Returns (ldm name, tensor) for one diffusers VAE tensor."""
    def vres(rest):
        return rest.replace("conv_shortcut.", "nin_shortcut.")
    for side in ("encoder", "decoder"):
        if not name.startswith(side + "."):
            continue
        rest = name[len(side) + 1:]
        if rest.startswith("conv_norm_out."):
            return f"{side}.norm_out.{rest[len('conv_norm_out.'):]}", tensor
        if rest.startswith(("conv_in.", "conv_out.")):
            return name, tensor
        m = re.match(r"mid_block\.resnets\.(\d)\.(.*)", rest)
        if m:
            return f"{side}.mid.block_{int(m[1]) + 1}.{vres(m[2])}", tensor
        m = re.match(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)", rest)
        if m:
            layer = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}[m[1]]
            if layer != "norm" and m[2] == "weight":
                tensor = tensor.reshape(*tensor.shape, 1, 1)  # LDM keeps these as 1x1 convolutions
            return f"{side}.mid.attn_1.{layer}.{m[2]}", tensor
        m = re.match(r"down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.*)", rest)
        if m:
            if m[2] == "downsamplers":
                return f"encoder.down.{m[1]}.downsample.{m[4]}", tensor
            return f"encoder.down.{m[1]}.block.{m[3]}.{vres(m[4])}", tensor
        m = re.match(r"up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.*)", rest)
        if m:
            b = levels - 1 - int(m[1])
            if m[2] == "upsamplers":
                return f"decoder.up.{b}.upsample.{m[4]}", tensor
            return f"decoder.up.{b}.block.{m[3]}.{vres(m[4])}", tensor
    if name.startswith(("quant_conv.", "post_quant_conv.")):
        return name, tensor
    raise KeyError(name)


def clip_to_ldm(sd, prefix):
    out = {}
    for k, v in sd.items():
        k = k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k
        out[prefix + k] = v
    pos = prefix + "text_model.embeddings.position_ids"
    if pos not in out:  # real SD 1.x files carry this buffer
        n = sd_get(sd, "embeddings.position_embedding.weight").shape[0]
        out[pos] = torch.arange(n, dtype=torch.int64).unsqueeze(0)
    return out


def sd_get(sd, suffix):
    return next(v for k, v in sd.items() if k.endswith(suffix))


def open_clip_to_ldm(sd, prefix, extra_layer):
    out = {}
    sd = {(k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k): v for k, v in sd.items()}
    layers = 1 + max(int(m[1]) for k in sd if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k)))
    out[prefix + "token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    out[prefix + "positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    out[prefix + "ln_final.weight"] = sd["text_model.final_layer_norm.weight"]
    out[prefix + "ln_final.bias"] = sd["text_model.final_layer_norm.bias"]
    if "text_projection.weight" in sd:
        out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    else:  # SD 2.x: OpenCLIP's projection is unused but present
        h = out[prefix + "token_embedding.weight"].shape[1]
        out[prefix + "text_projection"] = torch.zeros(h, h, dtype=out[prefix + "ln_final.weight"].dtype)
    out[prefix + "logit_scale"] = torch.tensor(4.6052, dtype=out[prefix + "ln_final.weight"].dtype)
    rename = [("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("self_attn.out_proj.", "attn.out_proj."),
              ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj.")]
    for i in range(layers + (1 if extra_layer else 0)):
        src = min(i, layers - 1)
        base = f"text_model.encoder.layers.{src}."
        dst = f"{prefix}transformer.resblocks.{i}."
        for p in ("weight", "bias"):
            out[dst + f"attn.in_proj_{p}"] = torch.cat(
                [sd[base + f"self_attn.{x}_proj.{p}"] for x in "qkv"], 0)
        for a, b in rename:
            for p in ("weight", "bias"):
                t = sd[base + a + p]
                out[dst + b + p] = t.clone() * (1.01 if i >= layers else 1.0)
    return out


def read(model, component, base):
    return load_file(os.path.join(MODELS, model, component, base + ".safetensors"))


def config(model, component):
    with open(os.path.join(MODELS, model, component, "config.json")) as f:
        return json.load(f)


def to_ldm(model, kind):
    unet_cfg, vae_cfg = config(model, "unet"), config(model, "vae")
    out = {}
    for k, v in read(model, "unet", "diffusion_pytorch_model").items():
        out["model.diffusion_model." + unet_to_ldm(k, unet_cfg)] = v
    levels = len(vae_cfg["block_out_channels"])
    for k, v in read(model, "vae", "diffusion_pytorch_model").items():
        name, t = vae_to_ldm(k, v, levels)
        out["first_stage_model." + name] = t
    te = read(model, "text_encoder", "model")
    if kind == "sd1":
        out.update(clip_to_ldm(te, "cond_stage_model.transformer."))
    elif kind == "sd2":
        out.update(open_clip_to_ldm(te, "cond_stage_model.model.", extra_layer=True))
    else:
        out.update(clip_to_ldm(te, "conditioner.embedders.0.transformer."))
        out.update(open_clip_to_ldm(read(model, "text_encoder_2", "model"), "conditioner.embedders.1.model.",
                                    extra_layer=False))
    return out


def same(a, b, what):
    a = {k: v for k, v in a.items() if not k.endswith("position_ids")}
    b = {k: v for k, v in b.items() if not k.endswith("position_ids")}
    assert set(a) == set(b), (what, sorted(set(a) ^ set(b))[:10])
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k].float(), b[k].float()), (what, k)


def cross_check(model, kind, ckpt):
    """diffusers' converters must give back the folder's tensors."""
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    unet = sfu.convert_ldm_unet_checkpoint(ckpt, config(model, "unet"))
    same(unet, read(model, "unet", "diffusion_pytorch_model"), model + " unet")
    vae_ckpt = {k: v for k, v in ckpt.items() if k.startswith("first_stage_model.")}
    vae = sfu.convert_ldm_vae_checkpoint(vae_ckpt, config(model, "vae"))
    same(vae, read(model, "vae", "diffusion_pytorch_model"), model + " vae")
    te = read(model, "text_encoder", "model")
    if kind == "sd2":
        cfg = CLIPTextConfig(**config(model, "text_encoder"))
        conv = sfu.convert_open_clip_checkpoint(CLIPTextModel(cfg), ckpt, "cond_stage_model.model.")
        conv.pop("text_projection.weight", None)
        # the extra final block (unused by SD 2.x pipelines) stays in the file only
        n = cfg.num_hidden_layers
        conv = {k: v for k, v in conv.items() if not k.startswith(f"text_model.encoder.layers.{n}.")}
        same(conv, te, model + " text_encoder")
    else:
        prefix = "cond_stage_model.transformer." if kind == "sd1" else "conditioner.embedders.0.transformer."
        conv = sfu.convert_ldm_clip_checkpoint({k: v for k, v in ckpt.items() if k.startswith(prefix)}, prefix)
        same(conv, te, model + " text_encoder")
    if kind == "sdxl":
        cfg = CLIPTextConfig(**config(model, "text_encoder_2"))
        conv = sfu.convert_open_clip_checkpoint(CLIPTextModelWithProjection(cfg), ckpt,
                                                "conditioner.embedders.1.model.")
        same(conv, read(model, "text_encoder_2", "model"), model + " text_encoder_2")


def write(name, tensors):
    path = os.path.join(OUT, name)
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, path)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def half(tensors):
    return {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}


def tiny():
    os.makedirs(OUT, exist_ok=True)
    for model, kind, name in [("tiny-sd1", "sd1", "tiny-sd1"), ("tiny-sd2", "sd2", "tiny-sd2"),
                              ("tiny-sd1-inpaint", "sd1", "tiny-sd1-inpaint"), ("tiny-sdxl", "sdxl", "tiny-sdxl"),
                              ("tiny-sdxl-inpaint", "sdxl", None)]:
        ckpt = to_ldm(model, kind)
        cross_check(model, kind, ckpt)
        if name:
            write(name + ".safetensors", ckpt)
        if model == "tiny-sd1":
            write("tiny-sd1-f16-novae.safetensors",
                  half({k: v for k, v in ckpt.items() if not k.startswith("first_stage_model.")}))
            write("tiny-sd1-vae.safetensors", {k[len("first_stage_model."):]: v for k, v in ckpt.items()
                                                if k.startswith("first_stage_model.")})
        if model == "tiny-sdxl-inpaint":
            write("tiny-sdxl-inpaint-f16.safetensors", half(ckpt))


# --- full-size key lists -------------------------------------------------------------------------------------

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=[320, 640, 1280, 1280], attention_head_dim=8, cross_attention_dim=768,
                 down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                 up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
SD21_UNET = dict(SD15_UNET, sample_size=96, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024,
                 use_linear_projection=True, upcast_attention=True)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=[320, 640, 1280], attention_head_dim=[5, 10, 20], cross_attention_dim=2048,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                 transformer_layers_per_block=[1, 2, 10], use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
VAE = dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
           down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768)
CLIP_H = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
              num_attention_heads=16, hidden_act="gelu", projection_dim=512)
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
              num_attention_heads=20, hidden_act="gelu", projection_dim=1280)


def shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def full(name, unet_cfg, encoders):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**VAE)
        nets = {"unet": shapes(unet), "vae": shapes(vae)}
        ldm = {}
        for k, v in unet.state_dict().items():
            ldm["model.diffusion_model." + unet_to_ldm(k, unet.config)] = v
        for k, v in vae.state_dict().items():
            n, t = vae_to_ldm(k, v, 4)
            ldm["first_stage_model." + n] = t
        for comp, (cfg, kind, prefix) in encoders.items():
            cls = CLIPTextModelWithProjection if comp == "text_encoder_2" else CLIPTextModel
            model = cls(CLIPTextConfig(**cfg))
            sd = model.state_dict()
            nets[comp] = {k: list(v.shape) for k, v in sd.items() if not k.endswith("position_ids")}
            if kind == "clip":
                ldm.update(clip_to_ldm(sd, prefix))
            else:
                ldm.update(open_clip_to_ldm(sd, prefix, extra_layer=comp == "text_encoder" and name == "sd21"))
    data = {"ldm": {k: list(v.shape) for k, v in sorted(ldm.items())}, "diffusers": nets,
            "unet_config": {k: v for k, v in unet_cfg.items()}}
    path = os.path.join(OUT, f"keys-{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"), sort_keys=True)
    print(f"{path}: {len(ldm)} LDM tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    tiny()
    full("sd15", SD15_UNET, {"text_encoder": (CLIP_L, "clip", "cond_stage_model.transformer.")})
    full("sd21", SD21_UNET, {"text_encoder": (CLIP_H, "open_clip", "cond_stage_model.model.")})
    full("sdxl", SDXL_UNET, {"text_encoder": (CLIP_L, "clip", "conditioner.embedders.0.transformer."),
                             "text_encoder_2": (CLIP_G, "open_clip", "conditioner.embedders.1.model.")})
