"""The settings that change how a trained generative model decodes, and nothing it learned.

They are the ones a finished run may change without retraining: ``pitrec eval`` measures a run
again under them, ``pitrec bench`` re-decodes a finished run when only they changed, and
``pitrec serve|recommend --decoding`` serves with them. Kept apart from the training stack so the
service can check them without importing it.
"""

from __future__ import annotations

from typing import Any, Iterable

from pitrec.config import ConfigError, parse_overrides

DECODING_KEYS: dict[str, tuple[str, ...]] = {"tiger": ("beam_width", "constrained", "last_level"),
                                              "pit": ("beam_width", "aggregation", "last_level", "one_to_many",
                                                      "added_item_weight", "new_item_sids", "new_item_neighbours",
                                                      "neighbour_item_weight", "new_item_text_affinity",
                                                      "new_item_text_affinity_history")}


def decoding_settings(cfg: Any, method: str) -> dict[str, Any]:
    """The decoding settings of ``method`` in ``cfg``; {} for a method that does not decode SIDs."""
    if method not in DECODING_KEYS:
        return {}
    section = getattr(cfg, method)
    return {key: getattr(section, key) for key in DECODING_KEYS[method]}


def checked_decoding(method: str, decoding: dict | Iterable[str]) -> dict:
    """``decoding`` (``["pit.one_to_many=false"]`` or a nested dict) as a nested override, refused
    unless every key is a decoding setting of ``method``: what is served must stay the model that
    was trained and measured."""
    overrides = decoding if isinstance(decoding, dict) else parse_overrides(decoding)
    offered = ", ".join(f"{method}.{key}" for key in DECODING_KEYS.get(method, ())) or "none"
    for section, fields in overrides.items():
        for key in (fields if isinstance(fields, dict) else [""]):
            if section != method or key not in DECODING_KEYS.get(method, ()):
                raise ConfigError(f"decoding setting {section}.{key} does not apply to this {method} run "
                                  f"(decoding settings of {method}: {offered})")
    return overrides
