"""One reply streamed piece by piece, which afterwards knows how many tokens it took and why it ended.

``ReplyStream`` runs ``model.generate`` in a thread with a ``TextIteratorStreamer`` that also counts
the new tokens, so a caller (``tunesmith serve``) can report exact usage and ``finish_reason``::

    reply = ReplyStream(model, tokenizer, prompt, GenerationSettings(max_new_tokens=64))
    text = "".join(reply)            # pieces arrive as they are generated
    reply.new_tokens, reply.hit_eos  # (17, True): 17 tokens, the last one an end-of-sequence token
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

from tunesmith.models.generation import GenerationSettings, cancel_criteria, new_token_budget


def _counting_streamer(tokenizer: Any, skip_prompt: bool, eos_ids: set[int]) -> Any:
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):
        """A ``TextIteratorStreamer`` that counts new tokens and remembers whether the last was EOS."""

        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=skip_prompt, skip_special_tokens=True)
            self.new_tokens = 0
            self.last_token: Optional[int] = None
            self._first = True

        def put(self, value: Any) -> None:
            ids = value[0] if len(value.shape) > 1 else value
            # The first call carries the prompt (decoder-only) or the decoder start token
            # (encoder-decoder): neither is generated text.
            if self._first:
                self._first = False
            else:
                self.new_tokens += int(ids.numel())
                if ids.numel():
                    self.last_token = int(ids[-1])
            super().put(value)

        @property
        def hit_eos(self) -> bool:
            return self.last_token is not None and self.last_token in eos_ids

    return CountingStreamer()


class ReplyStream:
    """Iterate to receive the reply's text pieces; then read ``new_tokens`` and ``hit_eos``.

    Args:
        model: a causal LM or encoder-decoder (plain or PEFT-wrapped).
        tokenizer: its tokenizer.
        prompt: the rendered prompt (``model_prompt``), special tokens included.
        settings: token budget and greedy / sampling settings.
    """

    def __init__(self, model: Any, tokenizer: Any, prompt: str, settings: GenerationSettings) -> None:
        import torch

        encoder_decoder = getattr(model.config, "is_encoder_decoder", False)
        eos = tokenizer.eos_token_id
        eos_ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}
        self.streamer = _counting_streamer(tokenizer, not encoder_decoder, eos_ids)
        device = next(model.parameters()).device
        enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=encoder_decoder).to(device)
        self.prompt_tokens = int(enc["input_ids"].shape[1])
        budget = new_token_budget(model, self.prompt_tokens, settings.max_new_tokens)  # within the model's window
        kwargs = dict(**enc, streamer=self.streamer, max_new_tokens=budget,
                      do_sample=settings.do_sample, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        else:  # unset the model's own sampling defaults so that greedy decoding warns about nothing
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if settings.cancel is not None:  # a client that hangs up stops generation at the next token
            kwargs["stopping_criteria"] = cancel_criteria(settings.cancel)
        self._error: Optional[BaseException] = None

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(**kwargs)
            except BaseException as err:  # re-raised in the reading thread, where the caller is
                self._error = err
                self.streamer.end()

        model.eval()
        self._pieces = self._read()
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[str]:
        # One pass only: iterating again (e.g. to drain a stream a client abandoned) resumes where
        # the last pass stopped and ends at once when the reply is complete.
        return self._pieces

    def _read(self) -> Iterator[str]:
        yield from self.streamer
        self._thread.join()
        if self._error is not None:
            raise self._error

    @property
    def new_tokens(self) -> int:
        """Tokens generated so far (the end-of-sequence token included)."""
        return self.streamer.new_tokens

    @property
    def hit_eos(self) -> bool:
        """Whether generation ended with an end-of-sequence token (rather than the token budget)."""
        return self.streamer.hit_eos
