"""End-to-end check of sd-worker's compatibility APIs with the real client libraries.

Usage: e2e.py BASE_URL API_KEY MODEL_NAME

Drives a running `sd-worker serve` (tests/clients/run.sh starts one on the tiny fixture model) with the
`openai` and `webuiapi` packages exactly as applications use them. Every check raises on failure; the
script exits non-zero on the first one.
"""

import base64
import io
import sys
import urllib.request
from urllib.parse import urlparse

import openai
import webuiapi
from PIL import Image

BASE, KEY, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]
SIZE = "64x64"
CHECKS = []


def check(name):
    def register(function):
        CHECKS.append((name, function))
        return function

    return register


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def png_parameters(data: bytes) -> str:
    image = Image.open(io.BytesIO(data))
    expect(image.format == "PNG", f"expected a PNG, got {image.format}")
    text = image.info.get("parameters")
    expect(text, "the PNG has no A1111 parameters chunk")
    return text


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=300)


@check("openai: models.list")
def models():
    listed = client.models.list()
    ids = [model.id for model in listed.data]
    expect(ids == [MODEL], f"models: {ids}")


@check("openai: images.generate b64_json with extras")
def generate_b64():
    result = client.images.generate(
        model="dall-e-2",
        prompt="a red apple on a table",
        n=2,
        size=SIZE,
        response_format="b64_json",
        quality="standard",
        style="natural",
        user="e2e",
        extra_body={"steps": 2, "seed": 42, "negative_prompt": "blurry", "guidance_scale": 6.0},
    )
    expect(len(result.data) == 2, f"{len(result.data)} images")
    expect(result.size == SIZE, f"size {result.size}")
    expect(result.output_format == "png", f"output_format {result.output_format}")
    for index, item in enumerate(result.data):
        data = base64.b64decode(item.b64_json)
        expect(Image.open(io.BytesIO(data)).size == (64, 64), "image size")
        parameters = png_parameters(data)
        expect(f"Seed: {42 + index}," in parameters, parameters)
        expect("Negative prompt: blurry" in parameters, parameters)
        expect("CFG scale: 6.0" in parameters, parameters)
        expect(item.revised_prompt == "a red apple on a table", item.revised_prompt)


@check("openai: images.generate url (signed, fetched without the key)")
def generate_url():
    result = client.images.generate(
        prompt="a green pear", size=SIZE, response_format="url", extra_body={"steps": 2}
    )
    url = result.data[0].url
    expect(url and urlparse(url).path.startswith("/v1/images/files/"), f"url {url}")
    with urllib.request.urlopen(url) as reply:
        expect(reply.status == 200, f"GET url: {reply.status}")
        png_parameters(reply.read())


@check("openai: images.generate jpeg and webp")
def generate_formats():
    for output_format, magic in (("jpeg", b"\xff\xd8"), ("webp", b"RIFF")):
        result = client.images.generate(
            prompt="a blue cup",
            size=SIZE,
            output_format=output_format,
            output_compression=80,
            extra_body={"steps": 2},
        )
        data = base64.b64decode(result.data[0].b64_json)
        expect(data.startswith(magic), f"{output_format}: starts with {data[:4]!r}")
        image = Image.open(io.BytesIO(data))
        exif = image.getexif().get_ifd(0x8769)
        comment = exif.get(0x9286)
        expect(comment and comment.startswith(b"UNICODE\0"), f"{output_format}: EXIF UserComment {comment!r}")
        expect(b"S\0t\0e\0p\0s" in comment, f"{output_format}: infotext in UserComment")


@check("openai: images.generate stream with partial images")
def generate_stream():
    stream = client.images.generate(
        prompt="a yellow star", size=SIZE, stream=True, partial_images=2, extra_body={"steps": 6}
    )
    events = list(stream)
    kinds = [event.type for event in events]
    expect(kinds and kinds[-1] == "image_generation.completed", f"events: {kinds}")
    for event in events:
        expect(base64.b64decode(event.b64_json)[:4] == b"\x89PNG", f"{event.type}: not a PNG")
        if event.type == "image_generation.partial_image":
            expect(event.partial_image_index in (0, 1), f"partial index {event.partial_image_index}")
    completed = events[-1]
    expect(completed.size == SIZE and completed.output_format == "png", str(completed))
    expect(completed.usage is not None, "usage missing")


@check("openai: images.edit with and without a mask")
def edit():
    picture = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    for x in range(16, 48):
        for y in range(16, 48):
            mask.putpixel((x, y), (0, 0, 0, 0))
    result = client.images.edit(
        image=("input.png", png_bytes(picture), "image/png"),
        mask=("mask.png", png_bytes(mask), "image/png"),
        prompt="a window",
        n=1,
        size=SIZE,
        extra_body={"steps": 2, "seed": 5},
    )
    parameters = png_parameters(base64.b64decode(result.data[0].b64_json))
    expect("Seed: 5," in parameters and "Denoising strength" in parameters, parameters)
    edited = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).convert("RGB")
    expect(edited.getpixel((2, 2)) == (200, 30, 30), f"unmasked pixel changed: {edited.getpixel((2, 2))}")
    result = client.images.edit(
        image=[("input.png", png_bytes(picture), "image/png")],
        prompt="a door",
        extra_body={"steps": 2, "strength": 0.5},
    )
    parameters = png_parameters(base64.b64decode(result.data[0].b64_json))
    expect("Denoising strength: 0.5" in parameters, parameters)


@check("openai: errors are OpenAI errors")
def errors():
    try:
        client.images.generate(prompt="x", n=11, size=SIZE)
    except openai.BadRequestError as error:
        expect(error.status_code == 400, f"status {error.status_code}")
        expect(error.body and error.body.get("param") == "n", f"body {error.body}")
    else:
        raise AssertionError("n=11 was accepted")
    wrong = openai.OpenAI(base_url=f"{BASE}/v1", api_key="wrong-key", max_retries=0)
    try:
        wrong.images.generate(prompt="x", size=SIZE)
    except openai.AuthenticationError as error:
        expect(error.code == "invalid_api_key", f"code {error.code}")
    else:
        raise AssertionError("a wrong key was accepted")


parsed = urlparse(BASE)
api = webuiapi.WebUIApi(host=parsed.hostname, port=parsed.port, sampler="Euler a", steps=2)
api.set_auth("webui", KEY)


@check("webuiapi: probes")
def probes():
    names = api.util_get_model_names()
    expect(len(names) == 1 and names[0].startswith(MODEL), f"models {names}")
    expect(api.util_get_current_model() == names[0], "current model")
    api.util_set_model(names[0])
    samplers = api.util_get_sampler_names()
    expect("Euler a" in samplers and "DPM++ 2M" in samplers, f"samplers {samplers}")
    expect("karras" in api.util_get_scheduler_names(), "schedulers")
    expect("ram" in api.get_memory(), "memory")
    expect(api.get_loras() == [] and api.get_sd_vae() == [], "empty lists")
    expect(api.get_cmd_flags().get("api") is True, "cmd-flags")
    progress = api.get_progress()
    expect(progress["state"]["job_count"] == 0, f"idle progress {progress}")
    api.util_wait_for_ready(check_interval=0.1)


@check("webuiapi: txt2img")
def txt2img():
    result = api.txt2img(
        prompt="a small house, watercolor",
        negative_prompt="people",
        seed=7,
        width=64,
        height=64,
        batch_size=2,
        n_iter=2,
        sampler_name="DPM++ 2M",
        scheduler="Karras",
        cfg_scale=6.5,
        override_settings={"CLIP_stop_at_last_layers": 2},
    )
    expect(len(result.images) == 4, f"{len(result.images)} images")
    expect(result.info["all_seeds"] == [7, 8, 9, 10], f"seeds {result.info['all_seeds']}")
    expect(result.info["sampler_name"] == "DPM++ 2M", result.info["sampler_name"])
    expect(result.info["clip_skip"] == 2, "clip skip")
    for index, image in enumerate(result.images):
        text = image.info.get("parameters")
        expect(text == result.info["infotexts"][index], f"image {index}: {text!r}")
        expect("Schedule type: Karras" in text and "Clip skip: 2" in text, text)
    expect(result.parameters["prompt"] == "a small house, watercolor", "parameters echo")


@check("webuiapi: img2img and inpainting (only masked, fill)")
def img2img():
    picture = Image.new("RGB", (96, 80), (20, 120, 220))
    result = api.img2img(
        images=[picture], prompt="a boat", denoising_strength=0.6, width=64, height=64, seed=3
    )
    expect(len(result.images) == 1 and result.images[0].size == (64, 64), "img2img size")
    expect("Denoising strength: 0.6" in result.images[0].info["parameters"], "denoising in infotext")
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (40, 30, 60, 50))
    result = api.img2img(
        images=[picture], mask_image=mask, prompt="a sun", width=64, height=64, seed=3, mask_blur=2
    )
    image = result.images[0]
    expect(image.size == (96, 80), f"only masked keeps the input size, got {image.size}")
    expect(image.convert("RGB").getpixel((2, 2)) == (20, 120, 220), "outside the mask is untouched")
    expect("Inpaint area: Only masked" in image.info["parameters"], image.info["parameters"])


@check("webuiapi: png_info")
def png_info():
    result = api.txt2img(prompt="a, b: c", seed=9, width=64, height=64)
    info = api.png_info(result.image)
    expect(info.info == result.info["infotexts"][0], f"{info.info!r}")
    expect(info.json["parameters"]["Seed"] == "9", str(info.json["parameters"]))


@check("webuiapi: errors")
def webui_errors():
    try:
        api.txt2img(prompt="x", width=64, height=64, restore_faces=True)
    except RuntimeError as error:
        expect(error.args[0] == 422 and "restore_faces" in error.args[1], str(error))
    else:
        raise AssertionError("restore_faces was accepted")
    unauthorised = webuiapi.WebUIApi(host=parsed.hostname, port=parsed.port)
    unauthorised.set_auth("webui", "wrong")
    try:
        unauthorised.txt2img(prompt="x", width=64, height=64)
    except RuntimeError as error:
        expect(error.args[0] == 401, str(error))
    else:
        raise AssertionError("a wrong password was accepted")


def main():
    failures = 0
    for name, function in CHECKS:
        try:
            function()
            print(f"ok    {name}", flush=True)
        except Exception as error:  # report every check, then fail
            failures += 1
            print(f"FAIL  {name}: {type(error).__name__}: {error}", flush=True)
    print(f"{len(CHECKS) - failures}/{len(CHECKS)} client checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
