"""The edit settings: their defaults, their ranges and the one validator every entry point calls.

:class:`EditSettings` states each default once (s_T 7.5, s_I 1.5, tau 0.5, t_rel 0.8, ...); the
:class:`~relevance_nerf2nerf.diffusion.editor.RelevanceEditor`, ``relevance-edit``, the scene pipeline's
config (at ``ns-train`` set-up, before anything is written), ``relevance-eval``, the demo and the benchmarks
read their defaults from it and check their values with :meth:`EditSettings.validate`, which names the flag
the user typed in its one-line error (``flags``). The flags and ``config.yml`` keys of each command stay
its own, flat.

An editor folder may carry the relevance settings recommended for it in ``relevance_settings.json``
beside ``model_index.json`` (e.g. ``{"iqr_ratio": 3.5}`` for the bundled toy editor);
:func:`editor_relevance_settings` reads them, whatever spelling of the folder's path is given.

Never imports nerfstudio or diffusers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL, _looks_like_path
from relevance_nerf2nerf.errors import InvalidInputError

RELEVANCE_SETTINGS_FILE = "relevance_settings.json"
"""File beside an editor's ``model_index.json`` holding its recommended relevance settings."""

RECOMMENDED_KEYS = ("iqr_ratio",)
"""Settings an editor folder may recommend (keys of :data:`RELEVANCE_SETTINGS_FILE`)."""

TEXT_ENCODER_TOKENS = 77
"""Length of InstructPix2Pix's CLIP text encoder input, start and end tokens included."""

ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"
"""Characters that print as nothing: an instruction made of them (and spaces) is empty."""


@dataclass(frozen=True)
class EditSettings:
    """The settings of a relevance map and a relevance-guided edit (paper eq. 1-5), with their defaults."""

    instruction: str = ""
    """The editing instruction (required: an empty one is refused)."""
    mask_threshold: float = 0.5
    """tau: pixels with relevance >= tau are edited (0: plain InstructPix2Pix everywhere)."""
    text_guidance: float = 7.5
    """s_T, classifier-free guidance scale of the instruction (eq. 1)."""
    image_guidance: float = 1.5
    """s_I, classifier-free guidance scale of the conditioning image (eq. 1)."""
    num_steps: int = 100
    """DDIM steps of a 2D edit."""
    start_noise: float = 1.0
    """Start noise level of an edit in (0, 1] (1: from pure noise)."""
    t_rel: float = 0.8
    """Noise level in (0, 1] at which relevance maps are computed (eq. 2)."""
    iqr_ratio: float = 1.5
    """Outlier fence r of eq. 3 (the paper's 2D maps use 1.5)."""
    num_draws: int = 1
    """Noise draws averaged per relevance map."""
    noise_range: tuple[float, float] | None = None
    """Scene edits: the range each update's start noise level is drawn from (0 <= low <= high <= 1)."""

    def validate(self, flags: Mapping[str, str] | None = None) -> None:
        """Raise :class:`InvalidInputError` (one line naming the setting) for the first unusable setting.

        Callable before any model loads.

        Args:
            flags (Mapping[str, str] | None, default None): how the user named each setting, by field name
                (e.g. ``{"t_rel": "--pipeline.t-rel"}``); settings not named there use their description.
                For ``noise_range`` the keys ``noise_range_low`` / ``noise_range_high`` name its two ends
                when the user set them apart.
        """
        names = {**_DESCRIPTIONS, **(flags or {})}
        check_instruction(self.instruction, names["instruction"])
        _check_range(names["mask_threshold"], self.mask_threshold, 0.0, 1.0)
        _check_range(names["text_guidance"], self.text_guidance, 0.0, 100.0)
        _check_range(names["image_guidance"], self.image_guidance, 0.0, 100.0)
        _check_range(names["start_noise"], self.start_noise, 0.0, 1.0, low_open=True)
        _check_range(names["t_rel"], self.t_rel, 0.0, 1.0, low_open=True)
        check_iqr_ratio(self.iqr_ratio, names["iqr_ratio"])
        if not 1 <= self.num_steps <= 1000:
            raise InvalidInputError(f"{names['num_steps']} must be in [1, 1000], got {self.num_steps}")
        if self.num_draws < 1:
            raise InvalidInputError(f"{names['num_draws']} must be at least 1, got {self.num_draws}")
        if self.noise_range is not None:
            low_name = names.get("noise_range_low", names["noise_range"])
            high_name = names.get("noise_range_high", names["noise_range"])
            check_noise_range(self.noise_range, low_name, high_name)


_DESCRIPTIONS = {
    "instruction": "instruction",
    "mask_threshold": "mask threshold (tau)",
    "text_guidance": "text guidance (s_T)",
    "image_guidance": "image guidance (s_I)",
    "num_steps": "number of denoising steps",
    "start_noise": "start noise level",
    "t_rel": "t_rel",
    "iqr_ratio": "IQR ratio",
    "num_draws": "number of relevance noise draws",
    "noise_range": "start noise range",
}

DEFAULTS = EditSettings()
"""The defaults, for signatures and config fields (``DEFAULTS.text_guidance`` ...)."""

SETTING_NAMES = tuple(f.name for f in fields(EditSettings))
"""The field names of :class:`EditSettings`."""


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise InvalidInputError(f"{name} must be a number in {bracket}{low:g}, {high:g}], got {value}")


def check_noise_range(noise_range: tuple[float, float], low_name: str, high_name: str) -> None:
    """Refuse a start-noise range unless 0 <= low <= high <= 1, in one line naming the flags that set it.

    Args:
        noise_range (tuple[float, float]): (low, high).
        low_name (str): what set the low end, e.g. ``--pipeline.lower-bound``.
        high_name (str): what set the high end (may equal ``low_name``).
    """
    low, high = noise_range
    for name, value in ((low_name, low), (high_name, high)):
        _check_range(name, value, 0.0, 1.0)
    if low > high:
        both = low_name if low_name == high_name else f"{low_name} ({low}) and {high_name}"
        raise InvalidInputError(f"{both} must satisfy low <= high, got {low} > {high}")


def check_iqr_ratio(ratio: float, name: str = "IQR ratio") -> None:
    """Refuse a relevance IQR ratio that is not a positive finite number, in one line naming ``name``: the
    one rule for 2D edits and scenes (at 0 every value above the upper quartile would saturate to 1).

    Args:
        ratio (float): the outlier fence r of eq. 3.
        name (str, default "IQR ratio"): what set it, e.g. the flag ``--pipeline.relevance-iqr-ratio``.
    """
    if not (isinstance(ratio, int | float) and 0.0 < ratio < float("inf")):
        raise InvalidInputError(f"{name} must be a positive number, got {ratio}")


def check_instruction(instruction: Any, name: str = "instruction") -> None:
    """Refuse an instruction that is not text, is empty or holds only spaces and zero-width characters, and
    one longer than the text encoder reads (it would be cut without a word): one line naming ``name``.

    Args:
        instruction (Any): what the user gave.
        name (str, default "instruction"): what set it, e.g. ``--pipeline.instruction``.
    """
    if not isinstance(instruction, str):
        raise InvalidInputError(
            f"{name} must be one text, got {type(instruction).__name__}: "
            'quote it, e.g. "make the ball blue"'
        )
    if not instruction.strip(ZERO_WIDTH + " \t\r\n\f\v"):
        raise InvalidInputError(f"{name} is empty: say what to change, e.g. \"make the ball blue\"")
    tokens = estimate_tokens(instruction)
    if tokens > TEXT_ENCODER_TOKENS:
        raise InvalidInputError(
            f"{name} is about {tokens} tokens long, but the text encoder reads {TEXT_ENCODER_TOKENS}: "
            "shorten it (the rest would be ignored)"
        )


def estimate_tokens(instruction: str) -> int:
    """A lower bound of the CLIP token count of ``instruction``, start and end tokens included: CLIP's
    tokenizer gives every word and every punctuation mark at least one token. An instruction refused on it
    is certainly cut by the text encoder; one just under may still be cut by a few tokens.

    Args:
        instruction (str): the instruction.
    """
    import re

    pieces = re.findall(r"[^\W_]+|[^\w\s]", instruction.lower())
    return len(pieces) + 2


# --- editor models ---------------------------------------------------------------------------------------
def looks_like_path(model: str) -> bool:
    """Whether an editor reference is meant as a folder: one that exists, or anything a hub id ('name' or
    'owner/name') cannot be.

    Args:
        model (str): ``--editor-model`` as given.
    """
    return Path(model).expanduser().exists() or _looks_like_path(model)


def check_editor_model(model: str | Path, flag: str = "--editor-model") -> None:
    """Refuse an editor reference that cannot load, before any model loads or anything is written: a folder
    must exist and hold ``model_index.json``; a hub id must be in the local Hugging Face cache when the hub is
    offline (``HF_HUB_OFFLINE``).

    Args:
        model (str | Path): a hub id or a local diffusers folder.
        flag (str, default "--editor-model"): the flag that set it, for the message.
    """
    text = str(model)
    if not text.strip():
        raise InvalidInputError(f"{flag} is empty: pass a local InstructPix2Pix folder or a hub id")
    if looks_like_path(text):
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise InvalidInputError(
                f"{flag} {text}: no such folder; pass a folder written by save_pretrained or a hub id "
                f"such as {DEFAULT_MODEL}"
            )
        if not (folder / "model_index.json").is_file():
            raise InvalidInputError(
                f"{flag} {text} holds no model_index.json: it is not a diffusers InstructPix2Pix folder; "
                "pass one written by save_pretrained"
            )
        return
    if _hub_offline() and _cached_file(text, "model_index.json") is None:
        raise InvalidInputError(
            f"{flag} {text} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE): "
            "download it once online, or pass a local folder"
        )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cached_file(repo_id: str, filename: str) -> str | None:
    """The path of ``filename`` of hub repository ``repo_id`` in the local cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return None
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # an id the hub client cannot even parse is not in the cache
        return None
    return found if isinstance(found, str) else None


def editor_relevance_settings(model: str | Path) -> dict[str, float]:
    """The relevance settings an editor recommends (``relevance_settings.json`` beside its
    ``model_index.json``), e.g. ``{"iqr_ratio": 3.5}``; empty when it recommends none. Any spelling of a
    folder's path works (relative, trailing slash, ``~``); a hub id is read from the local cache.

    Args:
        model (str | Path): a local editor folder or a hub id.

    Raises :class:`InvalidInputError` for a settings file that is not a JSON object of known, valid keys.
    """
    text = str(model)
    if looks_like_path(text):
        path: Path | None = Path(text).expanduser() / RELEVANCE_SETTINGS_FILE
        path = path if path.is_file() else None
    else:
        cached = _cached_file(text, RELEVANCE_SETTINGS_FILE)
        path = None if cached is None else Path(cached)
    if path is None:
        return {}
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{path} is not readable JSON ({error}): fix or delete it") from error
    if not isinstance(values, dict) or set(values) - set(RECOMMENDED_KEYS):
        raise InvalidInputError(f"{path} must be a JSON object with keys among {list(RECOMMENDED_KEYS)}")
    if "iqr_ratio" in values:
        check_iqr_ratio(values["iqr_ratio"], f"iqr_ratio in {path}")
    return {key: float(value) for key, value in values.items()}
