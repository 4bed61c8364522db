"""Goldens for tiled VAE decoding and encoding: diffusers' AutoencoderKL tiled_decode / tiled_encode on the
tiny SD 1.x VAE.

    python3 tools/make_vae_tiling_golden.py   # -> tests/fixtures/golden/tiny-sd1/vae_tiled_decode.safetensors

The tiny VAE's sample_size 64 over 4 blocks gives 8-latent tiles with a 6-latent stride and 16-pixel blends, so a
16x20 latent exercises full, partial, vertical and horizontal blends; the untiled decode is stored too. The
encoder side tiles a 128x160 image in 64-pixel tiles every 48 pixels, blending 2 latent rows/columns.
"""

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent


def main():
    torch.set_num_threads(2)
    vae = AutoencoderKL.from_pretrained(str(ROOT / "tests/fixtures/models/tiny-sd1/vae")).eval()
    z = torch.randn((1, 4, 16, 20), generator=torch.Generator().manual_seed(11))
    image = torch.rand((1, 3, 128, 160), generator=torch.Generator().manual_seed(12)) * 2 - 1
    with torch.no_grad():
        plain = vae.decode(z).sample
        plain_enc = vae.encode(image).latent_dist
        vae.enable_tiling()
        assert vae.tile_latent_min_size == 8 and vae.tile_sample_min_size == 64
        tiled = vae.decode(z).sample
        tiled_enc = vae.encode(image).latent_dist
    print("tiled vs plain max diff", (tiled - plain).abs().max().item(),
          "encode mean", (tiled_enc.mean - plain_enc.mean).abs().max().item())
    out = ROOT / "tests/fixtures/golden/tiny-sd1/vae_tiled_decode.safetensors"
    save_file({"latents": z.contiguous(), "tiled": tiled.contiguous(), "plain": plain.contiguous(),
               "image": image.contiguous(), "tiled_mean": tiled_enc.mean.contiguous(),
               "tiled_std": tiled_enc.std.contiguous(), "plain_mean": plain_enc.mean.contiguous()}, str(out))
    print("wrote", out)


if __name__ == "__main__":
    main()
