"""The served item catalogue: raw item ids <-> dense ids, titles and attributes, growing as items
are added online.

It is append-only and shared by every index version: a version only knows the first
``n_items`` dense ids, so a reader holding an older version treats an item added after it as
unknown instead of seeing half of an insertion. Raw ids are matched by their string form, so a
JSON client may send ``"12"`` for the catalogue's integer id ``12`` (ids read from CSV are
strings, synthetic ones integers); a catalogue in which two ids share a string form is refused.
"""

from __future__ import annotations

from typing import Hashable, Sequence

from pitrec.data.interactions import Interactions
from pitrec.serve.errors import BadRequest, UnknownItems


class Catalog:
    def __init__(self, item_ids: Sequence[Hashable], item_text: Sequence[str] | None,
                 item_attributes: Sequence[Sequence[int]] | None, attribute_ids: Sequence[Hashable] | None,
                 where: str = "catalogue"):
        self.ids: list[Hashable] = list(item_ids)
        self.texts: list[str] = list(item_text) if item_text is not None else [""] * len(self.ids)
        self.attributes: list[list[int]] = ([list(map(int, a)) for a in item_attributes]
                                            if item_attributes is not None else [[] for _ in self.ids])
        self.attribute_ids: list[Hashable] = list(attribute_ids or [])
        if not (len(self.texts) == len(self.attributes) == len(self.ids)):
            raise ValueError(f"{where}: {len(self.ids)} item ids, {len(self.texts)} texts, "
                             f"{len(self.attributes)} attribute lists")
        self.n_base = len(self.ids)
        self._index: dict[str, int] = {}
        for dense, raw in enumerate(self.ids):
            if self._index.setdefault(str(raw), dense) != dense:
                raise ValueError(f"{where}: item ids {self.ids[self._index[str(raw)]]!r} and {raw!r} (dense "
                                 f"{self._index[str(raw)]} and {dense}) have the same string form")
        self._attr_index = {str(raw): a for a, raw in enumerate(self.attribute_ids)}

    @classmethod
    def from_json(cls, payload: dict, where: str) -> "Catalog":
        if "item_ids" not in payload:
            raise ValueError(f"{where}: field 'item_ids' missing")
        return cls(payload["item_ids"], payload.get("item_text"), payload.get("item_attributes"),
                   payload.get("attribute_ids"), where)

    def __len__(self) -> int:
        return len(self.ids)

    def dense(self, raw: Hashable, limit: int | None = None) -> int | None:
        """Dense id of ``raw`` among the first ``limit`` items, or None."""
        dense = self._index.get(str(raw))
        return dense if dense is not None and (limit is None or dense < limit) else None

    def resolve(self, raws: Sequence[Hashable], limit: int, where: str, ignore_unknown: bool = False
                ) -> tuple[list[int], list[Hashable]]:
        """Dense ids of ``raws`` (order kept) and the unknown ones; unknown ids are an error
        naming them unless ``ignore_unknown``, which drops them and reports them."""
        dense, unknown = [], []
        for raw in raws:
            d = self.dense(raw, limit)
            if d is None:
                unknown.append(raw)
            else:
                dense.append(d)
        if unknown and not ignore_unknown:
            raise UnknownItems(unknown, where)
        return dense, unknown

    def attribute_dense(self, raws: Sequence[Hashable]) -> list[int]:
        """Dense ids of a new item's attributes; an attribute the model never saw has no learned
        embedding, so it is an error naming it, not silently ignored."""
        unknown = [r for r in raws if str(r) not in self._attr_index]
        if unknown:
            raise BadRequest(f"unknown attribute id(s) {unknown[:20]!r}: only the run's {len(self.attribute_ids)} "
                             f"attributes have embeddings")
        return [self._attr_index[str(r)] for r in raws]

    def as_interactions(self, items: Sequence[int] | None = None) -> Interactions:
        """The catalogue (or some dense items) as ``Interactions`` without users, so item texts
        are built by exactly the rule the embedding stage used (``pitrec.embed.text``)."""
        rows = range(len(self.ids)) if items is None else items
        return Interactions(sequences=[], user_ids=[], item_ids=[self.ids[i] for i in rows],
                            item_text=[self.texts[i] for i in rows], item_attributes=[self.attributes[i] for i in rows],
                            attribute_ids=self.attribute_ids or None)

    def append(self, raw: Hashable, title: str, attributes: Sequence[int]) -> int:
        """Add an item (the caller holds the writer lock and has checked for duplicates)."""
        dense = len(self.ids)
        self.ids.append(raw)
        self.texts.append(title)
        self.attributes.append(list(attributes))
        self._index[str(raw)] = dense
        return dense

    def added(self) -> list[dict]:
        """Items added online, as written into a snapshot."""
        return [{"id": self.ids[i], "title": self.texts[i],
                 "attributes": [self.attribute_ids[a] for a in self.attributes[i]]}
                for i in range(self.n_base, len(self.ids))]
