"""The exact text each item is encoded from.

``title`` alone is what the Amazon benchmarks publish; their anonymous brand/category ids carry
extra signal that a plain title misses (two "hydrating face cream" items of different brands), so
by default they are appended as opaque word tokens ``attr_<raw attribute id>``::

    "moisturizing face cream spf 30 | attr_12 attr_407"

The ``" | "`` separator is only cosmetic (both encoders split on it). Items without attributes get
the title alone, items without a title the attribute tokens alone, and an item with neither an
empty string (the encoders map it to a valid, uninformative vector). Models that want attributes
as learned categorical features read ``Interactions.item_attributes`` themselves.
"""

from __future__ import annotations

from pitrec.data.interactions import Interactions


def attribute_tokens(data: Interactions, item: int) -> list[str]:
    if data.item_attributes is None:
        return []
    raw = data.attribute_ids
    return [f"attr_{raw[a] if raw is not None else a}" for a in data.item_attributes[item]]


def item_texts(data: Interactions, include_attributes: bool = True) -> list[str]:
    """One string per dense item id, as documented in this module."""
    out = []
    for i in range(data.n_items):
        title = (data.item_text[i] if data.item_text is not None else "").strip()
        attrs = " ".join(attribute_tokens(data, i)) if include_attributes else ""
        out.append(f"{title} | {attrs}" if title and attrs else (title or attrs))
    return out
