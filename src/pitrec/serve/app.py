"""The HTTP service: a FastAPI app over one ``Recommender``.

Every failure a client can cause is a 4xx with ``{"detail": "..."}`` saying what was wrong:
schema violations and malformed JSON (422, with the offending fields), unknown ids (422, or 404
for ``GET /items/{id}``), duplicate ids (409), bodies over the size limit (413), operations the
served method cannot do (501). Handlers are plain functions, run in the worker thread pool, so
a slow model call never blocks the event loop; concurrent POST /recommend requests are batched
into one model pass (``pitrec.serve.batching``).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Path
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pitrec.serve.batching import MicroBatcher
from pitrec.serve.errors import ServeError
from pitrec.serve.recommender import Recommender
from pitrec.serve.schemas import (BatchRecommendation, BatchRecommendRequest, ErrorBody, FeedbackRequest,
                                  FeedbackResult, Health, ItemInfo, NewItemRequest, Recommendation, RecommendRequest,
                                  Stats)

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: a 256-user batch of 1000-item histories fits with room to spare


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "unreadable body (not UTF-8, bad Content-Length)", 404: "unknown item", 409: "duplicate item id",
            413: "request body too large", 422: "invalid request (fields, types, unknown ids)",
            501: "not supported by the served method"}
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


def create_app(recommender: Recommender, max_body_bytes: int = DEFAULT_MAX_BODY, max_batch: int = 64) -> FastAPI:
    """``max_batch``: concurrent POST /recommend requests answered in one model pass (0: one
    pass per request, each in its own worker thread)."""
    batcher = MicroBatcher(recommender.recommend_each, max_batch, "recommend-batcher") if max_batch else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if batcher is not None:
            batcher.close()
        recommender.close()  # snapshot the logged updates on a clean shutdown

    app = FastAPI(title="pitrec", summary="Generative recommendation with a personalized item tokenizer (PIT)",
                  lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(ServeError)
    async def serve_error(_, exc: ServeError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:10])
        return JSONResponse({"detail": f"invalid request: {summary}", "errors": errors[:50]}, status_code=422)

    @app.post("/recommend", response_model=Recommendation, responses=_errors(400, 413, 422))
    def recommend(req: RecommendRequest) -> Recommendation:
        """Top-k items after one user's history, with scores and the SIDs behind them."""
        if batcher is None:
            return recommender.recommend(req.history, req.k, req.exclude_history, req.ignore_unknown, req.explain)
        answer = batcher.submit(req)
        if isinstance(answer, ServeError):
            raise answer
        return answer

    @app.post("/recommend/batch", response_model=BatchRecommendation, responses=_errors(400, 413, 422))
    def recommend_batch(req: BatchRecommendRequest) -> BatchRecommendation:
        """Many users in one batched model pass, all from the same index version."""
        return recommender.recommend_many(req.histories, req.k, req.exclude_history, req.ignore_unknown, req.explain)

    @app.post("/items", response_model=ItemInfo, status_code=201, responses=_errors(400, 409, 413, 422, 501))
    def add_item(req: NewItemRequest) -> ItemInfo:
        """Add an item (PIT: content embedding -> CSA without an id -> I2T SIDs); recommendable at once."""
        return recommender.add_item(req.id, req.title, req.attributes)

    @app.post("/feedback", response_model=FeedbackResult, responses=_errors(400, 413, 422, 501))
    def feedback(req: FeedbackRequest) -> FeedbackResult:
        """Record the user-guided choice among the item's SIDs as an edge weight (PIT)."""
        return recommender.feedback(req.history, req.item, req.ignore_unknown)

    @app.get("/items/{item_id}", response_model=ItemInfo, responses=_errors(404, 422))
    def get_item(item_id: str = Path(min_length=1, max_length=256)) -> ItemInfo:
        """An item's SIDs and their weights."""
        return recommender.item(item_id)

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return recommender.health()

    @app.get("/stats", response_model=Stats)
    def stats() -> Stats:
        """Index version, items, SIDs, collisions, update counts, persistence, batching, decoding settings."""
        stats = recommender.stats()
        if batcher is not None:
            stats.batching = {"max_batch": max_batch, "batches": batcher.batches, "requests": batcher.queries,
                              "mean_batch": batcher.queries / max(batcher.batches, 1)}
        return stats

    return app


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a 413 before anything parses them: a
    declared Content-Length is checked first, and a streamed body is counted as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(scope, send, 400, f"invalid Content-Length header {declared[:32].decode('latin-1')!r}")
                return
            if int(declared) > self.max_bytes:
                await _reply(scope, send, 413,
                             f"request body of {int(declared)} bytes exceeds the limit of {self.max_bytes}")
                return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _reply(scope, send, 413, f"request body exceeds the limit of {self.max_bytes} bytes")
                return
        body, delivered = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reply(scope: Scope, send: Send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, _never_called, send)


async def _never_called() -> Message:
    raise RuntimeError("a direct reply does not read the request")
