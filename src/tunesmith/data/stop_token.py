"""The end of an answer that training teaches must be a token the model stops generating at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from tunesmith.errors import DataError


def generation_stop_ids(tokenizer: Any) -> tuple[Optional[list[int]], str]:
    """The token ids the model stops generating at (``eos_token_id`` of the
    ``generation_config.json`` in the tokenizer's folder) and that file's path; ``(None, "")``
    when the tokenizer does not come from a local folder holding one."""
    path = Path(str(getattr(tokenizer, "name_or_path", "") or "")) / "generation_config.json"
    if not path.is_file():
        return None, ""
    try:
        eos = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return None, ""
    if eos is None:
        return None, str(path)
    return ([eos] if isinstance(eos, int) else [int(i) for i in eos]), str(path)


def check_stop_token(tokenizer: Any) -> None:
    """Fail when training would end answers with a token the model does not stop at.

    Every template here trains each answer through the tokenizer's EOS (appended when the template
    writes none), so that is the token a tuned model learns to emit when it is done. A server that
    stops on ``generation_config.eos_token_id`` alone (vLLM, ``pipeline``, ``generate`` without
    arguments) would run past it when that id is not in the list.
    """
    eos_id = getattr(tokenizer, "eos_token_id", None)
    stops, path = generation_stop_ids(tokenizer)
    if eos_id is None or stops is None or eos_id in stops:
        return
    names = ", ".join(f"{tokenizer.convert_ids_to_tokens(i)!r} ({i})" for i in stops)
    raise DataError(
        f"{path}: eos_token_id is {names}, but training ends every answer with the tokenizer's EOS "
        f"{tokenizer.eos_token!r} ({eos_id}), so the tuned model would not stop where it learned to stop when "
        f"served with its generation config. Fix: set eos_token_id to {sorted(set(stops) | {eos_id})} in {path}, "
        f"or use a tokenizer whose eos_token is one of {names}"
    )
