"""Model folders for the GPU benchmark: SmolLM2 shapes with random weights and the packaged tokenizer.

Weights do not change the speed of a training step, and a GPU machine often cannot download a
model or hold the packaged GGUF file, so the benchmark trains models built from the configs in
``shapes.json`` (SmolLM2-135M and a 1.7B-class shape) with random bf16 weights. Two steps:

    # where tunesmith's packaged model is installed: copy its tokenizer (about 3.5 MB)
    python bench/gpu/make_models.py tokenizer .gpu/tokenizer
    # anywhere (on the GPU machine): build the folders from the configs and that tokenizer
    python bench/gpu/make_models.py build --tokenizer .gpu/tokenizer --out .gpu/models

Each folder is ``<out>/<shape name>`` with config.json, model.safetensors and the tokenizer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")


def export_tokenizer(out: Path) -> None:
    """Copy the packaged SmolLM2 tokenizer (converted from its GGUF file once) to ``out``."""
    from tunesmith.models.loading import resolve_model_path

    source = Path(resolve_model_path("smollm2-135m-instruct"))
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    print(f"tokenizer of {source} -> {out}")


def build(tokenizer: Path, out: Path, names: list[str], seed: int = 0) -> None:
    """Write one folder per shape: random weights (bf16, initialised as transformers does) + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    shapes = json.loads((HERE / "shapes.json").read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in names or list(shapes):
        folder = out / name
        if (folder / "model.safetensors").is_file():
            print(f"{folder}: already built")
            continue
        torch.manual_seed(seed)
        config = LlamaConfig(**shapes[name])
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder)
        for file in tokenizer.iterdir():
            shutil.copy2(file, folder / file.name)
        params = sum(p.numel() for p in model.parameters())
        print(f"{folder}: {params / 1e6:,.0f}M parameters")
        del model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("tokenizer", help="copy the packaged tokenizer to a folder")
    tok.add_argument("out", type=Path)
    bld = sub.add_parser("build", help="build the model folders")
    bld.add_argument("--tokenizer", type=Path, required=True)
    bld.add_argument("--out", type=Path, required=True)
    bld.add_argument("--shape", action="append", default=[], help="shape names from shapes.json (default: all)")
    args = parser.parse_args(argv)
    if args.command == "tokenizer":
        export_tokenizer(args.out)
    else:
        build(args.tokenizer, args.out, args.shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
