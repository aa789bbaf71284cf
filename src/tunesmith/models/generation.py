"""Batched text generation from already-rendered prompts (left padding, stop at EOS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class GenerationSettings:
    """Greedy by default; ``do_sample`` turns on temperature / top-p sampling.

    ``cancel`` is an optional ``threading.Event``: once it is set, generation stops after the
    current token (a client hung up, a stop signal arrived), and batched generation starts no
    further batch.
    """

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    cancel: Optional[Any] = field(default=None, compare=False, repr=False)


def cancel_criteria(cancel: Optional[Any]) -> Optional[Any]:
    """A ``StoppingCriteriaList`` that ends ``model.generate`` once ``cancel`` (an Event) is set; None without one."""
    if cancel is None:
        return None
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


def is_cancelled(settings: GenerationSettings) -> bool:
    """True once ``settings.cancel`` is set."""
    return settings.cancel is not None and settings.cancel.is_set()


def new_token_budget(model: Any, prompt_tokens: int, wanted: int) -> int:
    """New tokens a decoder may write after a prompt: ``wanted``, but never past the model's
    context window (GPT-2: 1024 positions), so a long ``max_new_tokens`` stops at the window
    instead of failing.

    Example:
        ``new_token_budget(gpt2, prompt_tokens=30, wanted=1000)`` -> ``994``
    """
    from tunesmith.errors import ModelError

    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return wanted
    window = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if not window:
        return wanted
    if prompt_tokens >= window:
        raise ModelError(f"the prompt has {prompt_tokens} tokens, which fills the model's context window of "
                         f"{window} tokens; shorten it")
    return min(wanted, window - prompt_tokens)


def generate_texts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    settings: GenerationSettings = GenerationSettings(),
    batch_size: int = 16,
    progress: Optional[str] = None,
) -> list[str]:
    """Continue each prompt and return only the new text (special tokens removed).

    Prompts are sorted by length so each batch pads little, then returned in the input order.
    """
    import torch
    from tqdm.auto import tqdm

    from tunesmith.config.logs import show_progress

    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[str] = [""] * len(prompts)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # new tokens must follow each prompt directly
    was_training = model.training
    model.eval()
    kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if settings.cancel is not None:
        kwargs["stopping_criteria"] = cancel_criteria(settings.cancel)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
    try:
        for batch in tqdm(batches, desc=progress, disable=progress is None or not show_progress(), unit="batch",
                          leave=False):
            if is_cancelled(settings):  # the prompts not answered yet keep ""
                break
            # Chat prompts already hold their special tokens; plain seq2seq sources get the
            # tokenizer's (e.g. T5's closing </s>), as in training.
            enc = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                            add_special_tokens=encoder_decoder).to(device)
            budget = new_token_budget(model, int(enc["input_ids"].shape[1]), settings.max_new_tokens)
            with torch.inference_mode():
                out = model.generate(**enc, **{**kwargs, "max_new_tokens": budget})
            # Decoder-only models return prompt + continuation; encoder-decoders only the decoder side.
            new = out if encoder_decoder else out[:, enc["input_ids"].shape[1] :]
            for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
                results[i] = text.strip()
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return results
