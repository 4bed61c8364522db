"""Write the CLIP tokenizer fixtures under tests/fixtures/tokenizer/ and their expected ids from transformers.

    python3 tools/make_tokenizer_fixtures.py [OUT_DIR]     (default: tests/fixtures/tokenizer)

Writes:
  clip-vit-l/     full CLIP vocabulary (49,408 ids), pad `<|endoftext|>`, special tokens as plain strings.
  tiny-500/       the same with only the first 500 merges (1,014 ids), as the tiny fixture models use.
  sd15-config/    tokenizer_config.json + special_tokens_map.json shaped like runwayml/stable-diffusion-v1-5's
                  (special tokens as AddedToken dicts with normalized=true, pad a plain string); the vocabulary
                  is clip-vit-l's.
  sd2-config/     the same shaped like stabilityai/stable-diffusion-2-1's: pad token `!` (id 0).
  corpus.json     prompts and, per variant, `tokenizer(text, padding="max_length", max_length=
                  tokenizer.model_max_length, truncation=True).input_ids`.

The reference runs in a subprocess with ftfy hidden (`sys.modules["ftfy"] = None`), as in a default
`pip install diffusers transformers`. It is run a second time with ftfy importable, and the prompts whose ids
differ are recorded in corpus.json under "differs_with_ftfy" (transformers 5's CLIPTokenizer is backed by the
`tokenizers` library and never calls ftfy, so this is expected to be empty).
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

VARIANTS = {
    # name: (directory holding the configs, directory holding vocab.json + merges.txt)
    "clip-vit-l": ("clip-vit-l", "clip-vit-l"),
    "sd15-config": ("sd15-config", "clip-vit-l"),
    "sd2-config": ("sd2-config", "clip-vit-l"),
    "tiny-500": ("tiny-500", "tiny-500"),
}


def added_token(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write_repo_style_configs(out_dir, pad_token):
    """Configs as the SD 1.5 / 2.1 hub repos ship them (bos/eos/unk as AddedToken dicts, pad as a string)."""
    os.makedirs(out_dir, exist_ok=True)
    special = {
        "bos_token": added_token("<|startoftext|>"),
        "eos_token": added_token("<|endoftext|>"),
        "pad_token": pad_token,
        "unk_token": added_token("<|endoftext|>"),
    }
    config = {"add_prefix_space": False, "do_lower_case": True, "errors": "replace", "model_max_length": 77}
    for key, value in special.items():
        config[key] = dict(value, __type="AddedToken") if isinstance(value, dict) else value
    config["tokenizer_class"] = "CLIPTokenizer"
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(dict(sorted(config.items())), f, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)


def write_vocab_dirs(out):
    from clip_vocab import write_clip_tokenizer

    write_clip_tokenizer(os.path.join(out, "clip-vit-l"))
    write_clip_tokenizer(os.path.join(out, "tiny-500"), 500)
    write_repo_style_configs(os.path.join(out, "sd15-config"), "<|endoftext|>")
    write_repo_style_configs(os.path.join(out, "sd2-config"), "!")


SD_PROMPTS = [
    "a photo of a cat",
    "a photograph of an astronaut riding a horse",
    "A painting of a squirrel eating a burger",
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile, outdoors",
    "(masterpiece:1.2), (best quality:1.3), ultra-detailed, 8k wallpaper",
    "((masterpiece)), (((best quality))), [[bad hands]], {{{cute}}}",
    "portrait of a woman, (freckles:0.8), [red hair:blonde hair:0.5], studio lighting",
    "landscape, mountains, lake, sunset, golden hour, highly detailed, trending on artstation",
    "cyberpunk city at night, neon lights, rain, reflections, blade runner style",
    "an oil painting of a lighthouse by the sea, by Ivan Aivazovsky",
    "a cute corgi wearing a wizard hat, digital art",
    "isometric view of a tiny house, low poly, blender render, octane render",
    "photo of a red sports car, 35mm, f/1.8, bokeh, DSLR",
    "a bowl of ramen, food photography, steam rising, close-up",
    "epic fantasy castle on a floating island, clouds, waterfall, matte painting",
    "concept art of a robot, sci-fi, by Syd Mead and Moebius",
    "watercolor illustration of a fox in the snow",
    "ugly, blurry, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit",
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username",
    "(worst quality:1.4), (low quality:1.4), (monochrome:1.1)",
    "a (red:1.5) apple on a (blue:0.7) table",
    "score_9, score_8_up, score_7_up, source_anime, rating_safe",
    "<lora:detail_tweaker:0.5>, a knight in shining armor",
    "embedding:EasyNegative, (bad-hands-5:1.0)",
    "a [cat|dog] sitting on a sofa",
    "a photo of sks dog in a bucket",
    "BREAK a castle BREAK a dragon",
    "anime girl with blue hair and red eyes, school uniform, cherry blossoms",
    "hyperrealistic portrait of an old fisherman, wrinkles, 85mm lens",
    "still life with flowers, Dutch golden age painting",
    "a futuristic spaceship interior, volumetric lighting, unreal engine 5",
    "the starry night by vincent van gogh",
    "Mona Lisa in the style of Picasso",
    "pixel art of a forest, 16-bit, SNES style",
    "a logo for a coffee shop named 'Bean There'",
    "macro shot of a dew drop on a leaf, ultra sharp",
    "a steampunk airship over victorian london",
    "minimalist poster, flat design, pastel colors",
    "a dog, a cat, a bird, a fish, a horse, a cow, a pig, a sheep",
    "photorealistic, 4k, uhd, hdr, sharp focus, intricate details, award winning photograph",
    "a tree",
    "cat",
    "a",
    "text that says \"hello world\"",
    "a sign reading 'OPEN 24/7'",
    "an astronaut lounging in a tropical resort in space, vaporwave",
    "a bear playing guitar at a campfire, children's book illustration",
    "stained glass window depicting a phoenix",
    "interior design, scandinavian living room, natural light, plants",
    "close up of a human eye with galaxy inside the iris",
    "(((ultra detailed))) (((intricate))) cinematic shot of a samurai, rim light, depth of field",
    "1boy, solo, male focus, armor, sword, holding weapon, night sky, full moon",
    "positive:(a happy dog:1.2) negative:(sad:0.5)",
    "(extremely detailed CG unity 8k wallpaper), (masterpiece), (best quality), (ultra-detailed)",
    "a woman wearing a dress made of flowers, fashion photography, vogue cover",
    "underwater scene, coral reef, sea turtle, sun rays",
    "architectural photo of a brutalist building, overcast",
    "a cozy cabin in the woods, winter, smoke from chimney, warm light in windows",
    "retro 80s synthwave sunset with palm trees",
    "dragon, scales, wings, fire breathing, epic, by greg rutkowski",
]

UNICODE_PROMPTS = [
    "café crème brûlée",
    "Café Crème Brûlée",
    "cafe\u0301 cre\u0300me",
    "CAFE\u0301",
    "naïve façade jalapeño über",
    "Ünïcödé",
    "Straße Strasse STRASSE ß ẞ",
    "São Paulo, Ḿéxico, Kraków, Zürich, Reykjavík",
    "ñandú año España",
    "ΟΔΟΣ οδός Σίσυφος",
    "İstanbul ıi IÌ",
    "Ǆemal ǅ ǆ",
    "ﬁsh ﬂower ﬀ",
    "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ １２３",
    "x² + y³ = z½ ⅓ ¼",
    "Ⅻ ⅻ Ⅳ",
    "①②③ ⑩",
    "٠١٢٣ ४५६ ๑๒๓",
    "Привет, мир! Москва",
    "ПРИВЕТ МИР",
    "Ελληνικά γράμματα",
    "שלום עולם",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "ქართული ენა",
    "Հայաստան",
    "a\u0308o\u0308u\u0308",
    "e\u0301\u0301\u0301",
    "\u0301leading combining mark",
    "zalgo t\u0336\u0317\u0353e\u0334\u0350x\u0335t",
    "Å Å Å",
    "ﬃ ǈ ᾈ",
    "𝐛𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 𝔣𝔯𝔞𝔨𝔱𝔲𝔯",
    "𐌰𐌱𐌲 gothic",
    "Ⓐⓑⓒ",
    "¿Qué? ¡Sí!",
    "«guillemets» „Anführungszeichen“ “smart quotes” ‘single’",
    "em—dash en–dash … ellipsis",
    "€100 £50 ¥1000 ₹500 ₿",
    "©2024 ® ™ ° ± × ÷",
    "a\u00a0non\u00a0breaking\u00a0space",
    "zero\u200bwidth\u200cjoiner\u200dtest",
    "\ufeffbom at start",
    "soft\u00adhyphen",
    "replacement \ufffd char",
    "control \x07 bell \x1b escape \x00 nul",
    "\x1c\x1d\x1e\x1f separators",
    "line\u2028separator\u2029paragraph",
    "ideographic\u3000space",
    "tab\tand\u000bvertical\u000cform feed",
    "mongolian\u180evowel separator",
]

CJK_PROMPTS = [
    "日本語",
    "猫の写真",
    "一只可爱的猫",
    "水墨画，山水，高清",
    "美少女, 和服, 桜",
    "東京タワー tokyo tower",
    "ひらがな カタカナ 漢字",
    "ｶﾀｶﾅ 半角",
    "한국어 텍스트",
    "고양이 사진, 고화질",
    "中文English混合text",
    "「引用」『二重』【括弧】",
    "１２３４５ 全角数字",
    "〜ー・、。",
    "𠀀𠀁 extension b",
    "龍 龘 靐",
]

EMOJI_PROMPTS = [
    "😀",
    "a cat 🐱 and a dog 🐶",
    "🔥🔥🔥 fire",
    "👍🏽 thumbs up medium skin",
    "👋🏻👋🏼👋🏽👋🏾👋🏿",
    "👨‍👩‍👧‍👦 family",
    "👩🏽‍💻 woman technologist",
    "🏳️‍🌈 rainbow flag",
    "🇯🇵🇺🇸🇫🇷 flags",
    "❤️ heart with variation selector",
    "❤ heart without",
    "1️⃣ 2️⃣ #️⃣ keycaps",
    "✨ sparkles ✨ (magic:1.2) ✨",
    "🧑‍🚀 astronaut in space 🌌",
    "🤷‍♂️🤦‍♀️",
    "☕️ coffee ☀ sun ☁ cloud",
    "emoji😀glued😀together",
    "🫠🫶🪿 newer emoji",
]

PUNCT_PROMPTS = [
    "!!!",
    "???",
    "...",
    "!?!?",
    "wow!",
    "wow!!",
    "hello, world!",
    "a,b,c,d",
    ",,,,,,",
    "a.b.c",
    "(((",
    ")))",
    "((a))",
    "[[[b]]]",
    "{c}",
    "<>",
    "--",
    "->",
    "=>",
    "~~~",
    "***bold***",
    "__underline__",
    "snake_case_words",
    "#hashtag @mention",
    "http://example.com/path?query=1&x=2",
    "user@example.com",
    "C:\\Users\\name\\file.txt",
    "/usr/local/bin",
    "a/b\\c|d",
    "\"quoted\" 'single' `backtick`",
    "!@#$%^&*()_+-=[]{};':\",./<>?",
    "a:1.2",
    "::",
    "(:1.2)",
    "%%%",
    "$$$ money $$$",
    "^_^ :) :-( ;P XD <3",
    "¯\\_(ツ)_/¯",
    "! ! !",
    "a ! b",
    "!a!",
    "hi! there!! friend!!!",
]

NUMBER_PROMPTS = [
    "1024x768",
    "3.5",
    "2nd 3rd 4th 21st",
    "1girl 2boys",
    "8k",
    "4K UHD",
    "100%",
    "-1.5",
    "+42",
    "1,000,000",
    "0.0001",
    "1e10",
    "0x1F",
    "2024-01-15",
    "12:30pm",
    "v1.5",
    "SD2.1",
    "512 x 512",
    "1920×1080",
    "007",
    "3d render",
    "2d anime",
    "x4 upscale",
    "123456789012345678901234567890",
]

CONTRACTION_PROMPTS = [
    "it's a cat's toy",
    "IT'S A CAT'S TOY",
    "don't won't can't",
    "DON'T",
    "they're we're you're",
    "I've we've",
    "I'm",
    "we'll you'll",
    "I'd you'd",
    "'s",
    "'S",
    "''s",
    "cat's'",
    "o'clock",
    "rock 'n' roll",
    "it’s curly apostrophe",
    "'twas",
    "the '90s",
    "don''t",
    "'re're're",
    "dog'S",
    "'LL 'Ve 'D 'M 'T",
]

WHITESPACE_PROMPTS = [
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "\r\n",
    "  leading spaces",
    "trailing spaces   ",
    "  both  ",
    "many     spaces     between",
    "tabs\tbetween\twords",
    "new\nlines\nhere",
    "mixed \t\n\r whitespace",
    "\n\n\nblank lines\n\n\n",
    "a , b , c",
    "a ,b ,c",
]

HTML_PROMPTS = [
    "&amp;",
    "salt &amp; pepper",
    "&lt;tag&gt;",
    "&quot;quoted&quot;",
    "&#39;apos&#39;",
    "&#x27;hex&#x27;",
    "&nbsp;space",
    "&amp;amp; double",
    "tom & jerry",
    "a&b",
    "<b>bold</b>",
    "<br/>",
]

CAPS_PROMPTS = [
    "A PHOTO OF A CAT",
    "MASTERPIECE, BEST QUALITY",
    "ULTRA DETAILED 8K",
    "CamelCaseWords",
    "mIxEd CaSe TeXt",
    "NASA SpaceX ESA",
    "HDR DSLR RAW",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "ÉCOLE ÜBER NIÑO",
    "iPhone eBay McDonald's",
]

SPECIAL_TOKEN_PROMPTS = [
    "<|startoftext|>",
    "<|endoftext|>",
    "<|startoftext|>a photo<|endoftext|>",
    "a<|endoftext|>b",
    "!<|endoftext|>",
    "<|endoftext|>!",
    "<|ENDOFTEXT|>",
    "<|StartOfText|> hi",
    "< |endoftext| >",
    "<|endoftext",
    "endoftext|>",
    "<|endoftext|><|endoftext|>",
    "<|startoftext|><|startoftext|>x",
    "foo <|endoftext|> bar",
    "<|endoftext|>" * 40,
    "<|notaspecial|>",
    "Ｅ<|endoftext|>Ｅ",
]


def long_prompts():
    base = (
        "masterpiece, best quality, ultra-detailed, illustration, 1girl, solo, long hair, blue eyes, "
        "white dress, flower field, sunlight, wind, petals, looking at viewer, smile, depth of field, "
        "bokeh, cinematic lighting, (highly detailed face:1.2), intricate, elegant, sharp focus"
    )
    words = "the quick brown fox jumps over the lazy dog".split()
    out = [
        base,
        base + ", " + base,
        " ".join(["cat"] * 74),
        " ".join(["cat"] * 75),
        " ".join(["cat"] * 76),
        " ".join(["cat"] * 200),
        ", ".join(words * 10),
        "a " * 100,
        "!" * 300,
        "1234567890" * 10,
        "日本語のテキスト" * 10,
        "😀" * 30,
        "supercalifragilisticexpialidocious " * 20,
        "(" * 80 + "cat" + ")" * 80,
        " ".join(f"word{i}" for i in range(60)),
        "a" * 500,
        "ab" * 250,
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
        "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip "
        "ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore.",
    ]
    return out


# Blocks sampled by the random sweep: long-established scripts and symbols, so the Unicode property tables of
# Oniguruma (used by `tokenizers`) and of Rust's regex/std agree on them.
SWEEP_RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
    (0x530, 0x58F), (0x5D0, 0x5EA), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE5B), (0x10A0, 0x10FF),
    (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x209C), (0x20A0, 0x20BF), (0x2100, 0x218B),
    (0x2190, 0x23FF), (0x2460, 0x24FF), (0x2500, 0x27BF), (0x2C00, 0x2C5F), (0x3000, 0x30FF), (0x3130, 0x318E),
    (0x4E00, 0x9FA5), (0xAC00, 0xD7A3), (0xFB00, 0xFB06), (0xFE30, 0xFE4F), (0xFF01, 0xFFEE),
    (0x1D400, 0x1D7FF), (0x1F300, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF), (0x20000, 0x2A6D6),
]


def sweep_prompts(count=90, seed=20240601):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        pieces = []
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.3:
                pieces.append(rng.choice(["cat", "Dog", "OK", "it's", "x2", " ", "  ", ",", "(", ":1.2)", "\n"]))
                continue
            lo, hi = rng.choice(SWEEP_RANGES)
            pieces.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 5))))
        out.append(rng.choice(["", " "]).join(pieces))
    return out


def all_prompts():
    groups = [
        SD_PROMPTS, UNICODE_PROMPTS, CJK_PROMPTS, EMOJI_PROMPTS, PUNCT_PROMPTS, NUMBER_PROMPTS,
        CONTRACTION_PROMPTS, WHITESPACE_PROMPTS, HTML_PROMPTS, CAPS_PROMPTS, SPECIAL_TOKEN_PROMPTS,
        long_prompts(), sweep_prompts(),
    ]
    seen, out = set(), []
    for group in groups:
        for prompt in group:
            if prompt not in seen:
                seen.add(prompt)
                out.append(prompt)
    return out


def reference_ids(variant_dirs, prompts, hide_ftfy):
    """Runs transformers in a fresh interpreter; returns ({variant: [ids per prompt]}, versions)."""
    request = json.dumps({"dirs": variant_dirs, "prompts": prompts, "hide_ftfy": hide_ftfy})
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--reference"],
        input=request, capture_output=True, text=True, encoding="utf-8", check=True,
    )
    answer = json.loads(result.stdout)
    return answer["ids"], answer["versions"]


def run_reference():
    request = json.loads(sys.stdin.read())
    if request["hide_ftfy"]:
        sys.modules["ftfy"] = None  # as if ftfy were not installed
    import tokenizers
    import transformers
    from transformers import CLIPTokenizer

    try:
        import ftfy  # noqa: F401

        ftfy_present = True
    except ImportError:
        ftfy_present = False
    assert ftfy_present != request["hide_ftfy"], "ftfy hiding did not take effect"
    ids = {}
    for name, directory in request["dirs"].items():
        tok = CLIPTokenizer.from_pretrained(directory)
        assert tok.model_max_length == 77, (name, tok.model_max_length)
        ids[name] = [
            tok(p, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
            for p in request["prompts"]
        ]
    versions = {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "tokenizer_class": f"{type(tok).__module__}.{type(tok).__name__}",
        "ftfy_importable": ftfy_present,
    }
    json.dump({"ids": ids, "versions": versions}, sys.stdout)


def main(out):
    write_vocab_dirs(out)
    with tempfile.TemporaryDirectory() as tmp:
        # transformers wants one folder per tokenizer: join each config folder with its vocabulary.
        variant_dirs = {}
        for name, (config_dir, vocab_dir) in VARIANTS.items():
            d = os.path.join(tmp, name)
            shutil.copytree(os.path.join(out, config_dir), d)
            for f in ("vocab.json", "merges.txt"):
                shutil.copy(os.path.join(out, vocab_dir, f), os.path.join(d, f))
            variant_dirs[name] = d
        prompts = all_prompts()
        ids, versions = reference_ids(variant_dirs, prompts, hide_ftfy=True)
        ids_ftfy, versions_ftfy = reference_ids(variant_dirs, prompts, hide_ftfy=False)

    full = ids["clip-vit-l"]
    assert full[prompts.index("a photo of a cat")][:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
    differs_with_ftfy = [
        {"variant": name, "text": p}
        for name in VARIANTS
        for p, a, b in zip(prompts, ids[name], ids_ftfy[name])
        if a != b
    ]
    corpus = {
        "about": "expected CLIPTokenizer input_ids (padding=max_length, truncation) per variant; "
        "written by tools/make_tokenizer_fixtures.py",
        "reference": versions,
        "reference_with_ftfy": versions_ftfy,
        "variants": {name: {"config_dir": c, "vocab_dir": v} for name, (c, v) in VARIANTS.items()},
        "differs_with_ftfy": differs_with_ftfy,
        "cases": [{"text": p, "ids": {name: ids[name][i] for name in VARIANTS}} for i, p in enumerate(prompts)],
    }
    path = os.path.join(out, "corpus.json")
    with open(path, "w", encoding="utf-8") as f:
        # One case per line keeps the file reviewable in diffs.
        head = {k: v for k, v in corpus.items() if k != "cases"}
        text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]
        f.write(text + ',\n "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in corpus["cases"]))
        f.write("\n ]\n}\n")
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == corpus
    print(f"{len(prompts)} prompts, {len(differs_with_ftfy)} differ with ftfy; wrote {out}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--reference"]:
        run_reference()
    else:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "tokenizer"))
