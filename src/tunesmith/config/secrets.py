"""Keeping secrets out of everything a run writes: saved configs, logs, metrics, trackers, reports.

Two kinds of secret are known:

* **config values under a secret-looking key**: any key, at any depth (sections and free-form
  dicts such as ``train.callback_args``), whose name ends in ``_token``, ``_key``, ``_secret``,
  ``_password`` or is one of those words (``token``, ``api_key``, ...);
* **environment variables** whose name has a ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``,
  ``KEY``, ``APIKEY`` or ``CREDENTIALS`` part (``HF_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``,
  ``WANDB_API_KEY``); values shorter than 8 characters are ignored (flags such as ``1``).

``mask_config`` replaces the former with ``MASK``; ``mask_text`` replaces every known secret value
wherever it occurs in a string, and also, without knowing the value:

* the password of a ``scheme://user:password@host`` URL;
* the value of a credential-looking query parameter (``?token=``, ``&api_key=``, ``&sig=``, ...);
* strings shaped like well-known tokens: Hugging Face ``hf_...``, OpenAI / Anthropic ``sk-...``,
  GitHub ``ghp_...`` / ``github_pat_...``, GitLab ``glpat-...``, Slack ``xox?-...``, AWS access
  key ids ``AKIA...``, Google ``AIza...``, JWTs and ``Bearer`` / ``Basic`` authorization values.

Example:
    >>> mask_config({"train": {"callback_args": {"notify": {"api_token": "s3cr3t-value"}}}})
    {'train': {'callback_args': {'notify': {'api_token': '<masked>'}}}}
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable, Mapping, Optional

MASK = "<masked>"
SECRET_SUFFIXES = ("_token", "_key", "_secret", "_password")
SECRET_NAMES = {"token", "key", "secret", "password", "apikey", "api_key"}
# Parts of an environment variable's name (split at "_") that mark it as holding a secret.
SECRET_ENV_PARTS = {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "APIKEY", "CREDENTIALS"}
MIN_SECRET_LENGTH = 8  # shorter values are flags, ids or placeholders; masking them in free text would garble it
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)(?P<password>[^/\s@]+)(?=@)")
# ?token=..., &api_key=..., &X-Amz-Signature=...: query parameters whose value is a credential.
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:[A-Za-z0-9_.-]*(?:token|key|secret|password|passwd|pwd|signature|sig|auth|credential)"
    r"[A-Za-z0-9_.-]*)=)(?P<value>[^&#\s'\"]+)", re.IGNORECASE)
# Shapes of widely used credentials; long enough that ordinary words and ids do not match.
_TOKEN_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"hf_[A-Za-z0-9]{20,}"  # Hugging Face
    # OpenAI, Anthropic: long, with digits and capitals (dataset names such as sk-some-name do not match)
    r"|sk-(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{24,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key id
    r"|AIza[A-Za-z0-9_-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"  # JWT
    r")(?![A-Za-z0-9])")
_AUTH_HEADER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<value>[A-Za-z0-9._~+/=-]{16,})")

_registered: set[str] = set()  # secret values seen in configs this process has masked


def is_secret_key(name: Any) -> bool:
    """True for a config key that holds a secret: ``hub_token``, ``api_key``, ``client_secret``, ``token``.

    Example:
        >>> is_secret_key("mlflow_token"), is_secret_key("tokenizer"), is_secret_key("train")
        (True, False, False)
    """
    if not isinstance(name, str):
        return False
    lower = name.lower()
    return lower in SECRET_NAMES or lower.endswith(SECRET_SUFFIXES)


def is_secret_env(name: str) -> bool:
    """True for ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, ``WANDB_API_KEY``; False for ``TOKENIZERS_PARALLELISM``."""
    return any(part in SECRET_ENV_PARTS for part in name.upper().split("_"))


def env_secrets(environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The values of secret-looking environment variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_secret_env(k) and len(v.strip()) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def config_secrets(tree: Any) -> list[str]:
    """The string values held under secret keys anywhere in a nested dict / list, longest first."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if is_secret_key(key) and value not in (None, ""):
                    found.update(_leaf_strings(value))
                else:
                    walk(value)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)

    walk(tree)
    return sorted((s for s in found if s), key=len, reverse=True)


def remember_secrets(values: Iterable[str]) -> None:
    """Add secret values (from a config) to those ``mask_text`` removes for the rest of this process."""
    _registered.update(v for v in values if len(v.strip()) >= MIN_SECRET_LENGTH)  # "none", "test": not worth garbling logs


def known_secrets() -> list[str]:
    """Every value ``mask_text`` removes now: environment secrets and remembered config secrets."""
    return sorted(set(env_secrets()) | _registered, key=len, reverse=True)


def mask_text(text: str, secrets: Optional[Iterable[str]] = None) -> str:
    """``text`` with every secret value replaced by ``MASK`` and URL passwords hidden.

    Example:
        >>> mask_text("uri https://me:hunter22@example.org/x, key abcdefgh123", ["abcdefgh123"])
        'uri https://me:<masked>@example.org/x, key <masked>'
    """
    if not isinstance(text, str) or not text:
        return text
    for secret in known_secrets() if secrets is None else sorted(set(secrets), key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return mask_patterns(text)


def mask_patterns(text: str) -> str:
    """``text`` with URL passwords, credential query parameters and token-shaped strings masked.

    Example:
        >>> mask_patterns("GET https://h/x?id=3&access_token=abc123 with hf_abcdefghijklmnopqrstuv")
        'GET https://h/x?id=3&access_token=<masked> with <masked>'
    """
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group("head") + (m.group("value") if m.group("value") == MASK else MASK),
                                 text)
    text = _AUTH_HEADER.sub(lambda m: m.group("head") + MASK, text)
    return _TOKEN_SHAPES.sub(MASK, text)


def mask_config(tree: Any, secrets: Optional[Iterable[str]] = None) -> Any:
    """A copy of a nested config dict with secret keys' values replaced and secret values masked in
    every other string. Values under secret keys are remembered for later ``mask_text`` calls."""
    values = config_secrets(tree)
    remember_secrets(values)
    # Short values ("none", "test") are masked under their own key only: found elsewhere they are
    # ordinary words (data.packing: none), not a leak.
    every = {v for v in values if len(v.strip()) >= MIN_SECRET_LENGTH} | set(
        known_secrets() if secrets is None else secrets)

    def walk(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: (MASK if is_secret_key(k) and v not in (None, "") else walk(v)) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(item) for item in node]
        if isinstance(node, str):
            return mask_text(node, every)
        return node

    return walk(tree)


def _leaf_strings(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _leaf_strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _leaf_strings(v)]
    return [] if value is None or isinstance(value, bool) else [str(value)]


def _masking_factory(make: Any) -> Any:
    """A log-record factory that builds records with ``make`` and masks their message."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: logging reports it itself when the record is emitted
            return record
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            # Formatters use a pre-set exc_text as it is, so the traceback is masked too.
            import traceback

            record.exc_text = mask_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    factory.tunesmith_masking = True  # type: ignore[attr-defined]
    return factory


def install_log_masking() -> None:
    """Mask secrets in every log record this process creates, whichever logger or handler gets it
    (idempotent). Records are rewritten when they are made, so no handler ever sees the secret."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "tunesmith_masking", False):
        logging.setLogRecordFactory(_masking_factory(current))
