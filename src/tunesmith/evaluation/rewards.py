"""Reward functions for ``train.trainer=grpo``: a completion in, a number out.

A reward function scores a batch of sampled completions::

    fn(completions: list[str], references: list[str | None], prompts: list[str], **reward_args) -> list[float]

one number per completion; ``references`` are the rows' reference answers (None where a row has
none) and ``prompts`` the prompts as text, both lined up with ``completions``.
``train.grpo.rewards`` names them (registered names or ``package.module:function``),
``train.grpo.reward_weights`` weighs them and ``train.grpo.reward_args.<name>`` passes keyword
arguments.

| name | reward |
|---|---|
| ``exact_match`` | 1.0 when the completion's final number equals the reference's, else 0.0 |
| ``number_format`` | 1.0 when the completion ends with a ``#### <number>`` line (the arith answers' last line), else 0.0 |
| ``answer_length`` | 0.0 up to ``max_chars`` characters, then ``-per_char`` per character beyond (at most ``-cap``) |

Add one with ``register_reward``::

    from tunesmith.evaluation.rewards import register_reward

    @register_reward("short")
    def short(completions, references, prompts, limit=200):
        return [1.0 if len(c) <= limit else 0.0 for c in completions]

Every call goes through `RewardFunction`, which turns an exception inside the function, a value
that is not a finite number or a list of the wrong length into a ``TrainingError`` naming the
function, the value and what is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from tunesmith.data.builtin.arith import extract_final_number
from tunesmith.errors import ConfigError, DataError, TrainingError
from tunesmith.registry import Registry

RewardFn = Callable[..., Sequence[float]]
# tunesmith passes these three itself; train.grpo.reward_args.<name> may not set them.
REWARD_INPUTS = ("completions", "references", "prompts")
REWARDS: Registry[RewardFn] = Registry("reward function", key="train.grpo.rewards", provided=REWARD_INPUTS)
_ANSWER_LINE = re.compile(r"####\s*-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*$")


def register_reward(name: str, *, overwrite: bool = False) -> Callable[[RewardFn], RewardFn]:
    """Decorator: register a reward function as a ``train.grpo.rewards`` name.

    Args:
        name: the registered name.
        overwrite: replace a reward already registered under ``name``.

    Raises:
        ConfigError: ``name`` is taken (and ``overwrite`` is False).
    """
    def add(fn: RewardFn) -> RewardFn:
        REWARDS.register(name, fn, overwrite=overwrite)
        return fn

    return add


@register_reward("exact_match")
def exact_match_reward(completions: list[str], references: list[Optional[str]], prompts: list[str]) -> list[float]:
    """1.0 where the completion's final number equals the reference's (``#### 7`` or the last number).

    Example:
        >>> exact_match_reward(["3 + 4 = 7\\n#### 7", "#### 8"], ["7", "7"], ["", ""])
        [1.0, 0.0]

    Raises:
        DataError: a row has no reference answer.
    """
    scores = []
    for i, (completion, reference) in enumerate(zip(completions, references)):
        if reference is None:
            raise DataError(f"train.grpo.rewards: exact_match needs a reference answer, but the data's row of "
                            f"completion {i} has reference None; use data with a 'reference' (e.g. "
                            "data=arith-prompts) or another reward function")
        got = extract_final_number(completion)
        scores.append(1.0 if got is not None and got == extract_final_number(str(reference)) else 0.0)
    return scores


@register_reward("number_format")
def number_format_reward(completions: list[str], references: list[Optional[str]], prompts: list[str]) -> list[float]:
    """1.0 where the completion's last line is ``#### <number>`` (the arith answer format), else 0.0.

    Example:
        >>> number_format_reward(["2 + 2 = 4.\\n#### 4", "It is 4."], [None, None], ["", ""])
        [1.0, 0.0]
    """
    return [1.0 if _ANSWER_LINE.search(c.strip()) else 0.0 for c in completions]


@register_reward("answer_length")
def answer_length_reward(completions: list[str], references: list[Optional[str]], prompts: list[str],
                         max_chars: int = 400, per_char: float = 0.005, cap: float = 1.0) -> list[float]:
    """0.0 up to ``max_chars`` characters, then ``-per_char`` per extra character, at most ``-cap``.

    Example:
        ``answer_length_reward(["x" * 10, "x" * 20], [None, None], ["", ""], max_chars=10, per_char=0.1)``
        -> ``[0.0, -1.0]``
    """
    return [-min(cap, per_char * max(0, len(c.strip()) - max_chars)) for c in completions]


@dataclass(frozen=True)
class RewardFunction:
    """A reward function with its name, weight and arguments; calling it checks what it returns.

    Attributes:
        name: as ``train.grpo.rewards`` gives it (a registered name or a dotted path).
        fn: the function, with ``train.grpo.reward_args.<name>`` bound.
        weight: its weight in the summed reward.
    """

    name: str
    fn: RewardFn
    weight: float = 1.0

    def __call__(self, completions: list[str], references: list[Optional[str]], prompts: list[str]) -> list[float]:
        """The function's rewards, checked: one finite number per completion.

        Raises:
            TrainingError: the function raised (naming the first prompt it fails on), returned
                something that is not a list of numbers, a NaN / inf, or the wrong number of values.
        """
        try:
            values = self.fn(completions, references, prompts)
        except TrainingError:
            raise
        except Exception as err:  # a user's function: any failure stops the run with its name
            raise TrainingError(f"train.grpo.rewards: reward function {self.name!r} raised "
                                f"{type(err).__name__}: {err} {self._culprit(completions, references, prompts)}"
                                ) from err
        return self._checked(values, len(completions))

    def _culprit(self, completions: list[str], references: list[Optional[str]], prompts: list[str]) -> str:
        """Which completion the function fails on, found by calling it on one completion at a time."""
        for i, (c, r, p) in enumerate(zip(completions, references, prompts)):
            try:
                self.fn([c], [r], [p])
            except Exception:
                return f"(on completion {i} of the batch, prompt {_short(p)}, completion {_short(c)})"
        return f"(on a batch of {len(completions)} completions; each one alone passes)"

    def _checked(self, values: Any, expected: int) -> list[float]:
        allowed = f"a list of {expected} finite numbers, one per completion"
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise TrainingError(f"train.grpo.rewards: reward function {self.name!r} returned {_short(values)}; "
                                f"expected {allowed}")
        if hasattr(values, "tolist"):  # a numpy array or a tensor
            values = values.tolist()
        if len(values) != expected:
            raise TrainingError(f"train.grpo.rewards: reward function {self.name!r} returned {len(values)} values "
                                f"for {expected} completions; expected {allowed}")
        out = []
        for i, value in enumerate(values):
            number = _as_number(value)
            if number is None or not math.isfinite(number):
                raise TrainingError(f"train.grpo.rewards: reward function {self.name!r} returned {value!r} for "
                                    f"completion {i}; expected {allowed}")
            out.append(number)
        return out


def _as_number(value: Any) -> Optional[float]:
    """``3`` -> 3.0, ``True`` -> 1.0, ``numpy.float32(0.5)`` -> 0.5; ``"1"`` or ``None`` -> None."""
    if isinstance(value, (str, bytes)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_rewards(grpo: Any) -> None:
    """Resolve every name in ``train.grpo.rewards`` and check its ``reward_args``, loading nothing heavy.

    Raises:
        ConfigError: an unknown name (with the known ones), a module that cannot be imported, a
            reward listed twice, or an argument the function does not take.
    """
    for i, name in enumerate(grpo.rewards):
        if name in grpo.rewards[:i]:
            raise ConfigError(f"train.grpo.rewards[{i}]: {name!r} is listed twice; list each reward once "
                              "and weigh it with train.grpo.reward_weights")
        fn = REWARDS.get(name)
        if not callable(fn):
            raise ConfigError(f"train.grpo.rewards: {name!r} is a {type(fn).__name__}, not a function; expected "
                              "fn(completions, references, prompts, **reward_args) -> list of numbers")
        REWARDS.check(name, grpo.reward_args.get(name), args_key=f"train.grpo.reward_args.{name}")


def build_rewards(grpo: Any) -> list[RewardFunction]:
    """The reward functions of ``train.grpo`` with their weights and arguments bound, checked first.

    Example:
        >>> from tunesmith.config.schema import GrpoConfig
        >>> [r.name for r in build_rewards(GrpoConfig(rewards=["exact_match", "number_format"]))]
        ['exact_match', 'number_format']
    """
    check_rewards(grpo)
    weights = list(grpo.reward_weights) or [1.0] * len(grpo.rewards)
    return [RewardFunction(name, REWARDS.build(name, grpo.reward_args.get(name),
                                               args_key=f"train.grpo.reward_args.{name}"), float(weight))
            for name, weight in zip(grpo.rewards, weights)]
