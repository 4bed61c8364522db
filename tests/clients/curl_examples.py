"""Runs every ```sh example of crates/sd-server/COMPAT.md against a running worker, so the docs stay true.

Usage: curl_examples.py BASE_URL API_KEY. Each block runs in one scratch folder (later blocks use the files
earlier ones wrote, plus a mask.png made here) under `bash -euo pipefail` with SD and KEY set; any failing
command fails the run. Sizes (512) and step counts (20) are scaled down for the tiny test model.
"""

import os
import re
import subprocess
import sys
import tempfile

from PIL import Image

BASE, KEY = sys.argv[1], sys.argv[2]
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "sd-server", "COMPAT.md")

blocks = re.findall(r"```sh\n(.*?)```", open(DOC, encoding="utf-8").read(), flags=re.S)
blocks = [block for block in blocks if "export SD=" not in block]
blocks = [re.sub(r"(?<!\d)512(?!\d)", "64", block).replace('"steps": 20', '"steps": 2').replace("steps: 20", "steps: 2") for block in blocks]
failures = 0
with tempfile.TemporaryDirectory() as scratch:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (24, 16, 40, 48))
    mask.save(os.path.join(scratch, "mask.png"))
    environment = dict(os.environ, SD=BASE, KEY=KEY)
    for block in blocks:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=scratch, env=environment, capture_output=True, text=True, timeout=600,
        )
        first_line = block.strip().splitlines()[0]
        if result.returncode == 0:
            print(f"ok    {first_line}", flush=True)
        else:
            failures += 1
            print(f"FAIL  {first_line}\n{result.stdout[-2000:]}{result.stderr[-2000:]}", flush=True)
print(f"{len(blocks) - failures}/{len(blocks)} COMPAT.md examples passed")
sys.exit(1 if failures else 0)
