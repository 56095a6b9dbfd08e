"""Request and response models of the service (and of the Python API's results).

Limits are part of the contract, so a client learns them from the OpenAPI schema and a bad
request is a 422 naming the field instead of a slow answer or a 500: ids are JSON integers or
non-empty strings (booleans and floats are refused, not coerced), histories and batches are
bounded, and unknown fields are rejected (a misspelt ``exclude_histroy`` must not be ignored).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

MAX_K = 200
MAX_HISTORY = 1000
MAX_BATCH = 256
MAX_ATTRIBUTES = 64

RawId = Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)] | Annotated[StrictStr, Field(min_length=1, max_length=256)]
History = Annotated[list[RawId], Field(min_length=1, max_length=MAX_HISTORY)]
K = Annotated[StrictInt, Field(ge=1, le=MAX_K, description=f"number of items to return, 1..{MAX_K}")]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


EXPLAIN = ("PIT: log P(SID | history) of every SID of each returned item (an extra decoder pass over the "
           "items with several SIDs); false: those SIDs carry their weights only, and the answer is faster")


class RecommendRequest(Request):
    history: History = Field(description="the user's items, oldest first (the most recent ones are used)")
    k: K = 10
    exclude_history: StrictBool = False
    ignore_unknown: StrictBool = Field(False, description="drop unknown history ids (reported) instead of a 422")
    explain: StrictBool = Field(True, description=EXPLAIN)


class BatchRecommendRequest(Request):
    histories: Annotated[list[History], Field(min_length=1, max_length=MAX_BATCH)]
    k: K = 10
    exclude_history: StrictBool = False
    ignore_unknown: StrictBool = False
    explain: StrictBool = Field(True, description=EXPLAIN)


class NewItemRequest(Request):
    id: RawId
    title: Annotated[StrictStr, Field(max_length=2000)] = ""
    attributes: Annotated[list[RawId], Field(max_length=MAX_ATTRIBUTES)] = Field(default_factory=list)


class FeedbackRequest(Request):
    history: History = Field(description="what the user had interacted with before `item`")
    item: RawId
    ignore_unknown: StrictBool = False


class SidInfo(BaseModel):
    sid: list[int]
    weight: float | None = Field(None, description="edge weight in PIT's beam index (selections, decayed)")
    log_prob: float | None = Field(None, description="log P(SID | history) under the User-to-Token model")


class ScoredItem(BaseModel):
    id: int | str
    score: float
    sids: list[SidInfo] = Field(default_factory=list,
                                description="generative methods: the item's SIDs the score aggregates")


class RecommendationRow(BaseModel):
    items: list[ScoredItem]
    ignored: list[int | str] = Field(default_factory=list, description="unknown history ids dropped")


class Recommendation(RecommendationRow):
    version: int = Field(description="index version the answer was computed with")
    method: str


class BatchRecommendation(BaseModel):
    version: int
    method: str
    results: list[RecommendationRow]


class ItemInfo(BaseModel):
    id: int | str
    version: int
    title: str
    attributes: list[int | str]
    added_online: bool
    sids: list[SidInfo]


class FeedbackResult(BaseModel):
    version: int
    item: int | str
    chosen_sid: list[int]
    was_primary: bool = Field(description="whether the chosen SID was already the item's strongest")
    sids: list[SidInfo]


class Health(BaseModel):
    status: str
    method: str
    version: int
    items: int


class Stats(BaseModel):
    version: int
    method: str
    items: int
    items_added: int
    feedback_accepted: int
    sids: int
    edges: int
    collisions: dict[str, float]
    index: dict[str, Any] = Field(default_factory=dict)
    persistence: dict[str, Any] = Field(default_factory=dict)
    batching: dict[str, Any] = Field(default_factory=dict)
    decoding: dict[str, Any] = Field(default_factory=dict)  # the decoding settings in effect (tiger, pit)
    # PIT: how many explained SIDs were read off the search (frontier), took one decoder step
    # (one_step), were scored from the level before without one (alone: the only SID on its prefix,
    # renormalised last level) or were decoded from the start (decoded), since the service started
    explanations: dict[str, int] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None
