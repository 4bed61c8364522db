"""Golden for tiled VAE decoding: diffusers' AutoencoderKL.tiled_decode on the tiny SD 1.x VAE.

    python3 tools/make_vae_tiling_golden.py   # -> tests/fixtures/golden/tiny-sd1/vae_tiled_decode.safetensors

The tiny VAE's sample_size 64 over 4 blocks gives 8-latent tiles with a 6-latent stride and 16-pixel blends, so a
16x20 latent exercises full, partial, vertical and horizontal blends; the untiled decode is stored too.
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
    with torch.no_grad():
        plain = vae.decode(z).sample
        vae.enable_tiling()
        assert vae.tile_latent_min_size == 8 and vae.tile_sample_min_size == 64
        tiled = vae.decode(z).sample
    print("tiled vs plain max diff", (tiled - plain).abs().max().item())
    out = ROOT / "tests/fixtures/golden/tiny-sd1/vae_tiled_decode.safetensors"
    save_file({"latents": z.contiguous(), "tiled": tiled.contiguous(), "plain": plain.contiguous()}, str(out))
    print("wrote", out)


if __name__ == "__main__":
    main()
