"""The HTTP layer: every endpoint, and every kind of bad input answered with a 4xx that says
what was wrong (never a 500)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pitrec.serve import Recommender
from pitrec.serve.app import create_app
from pitrec.serve.schemas import MAX_BATCH, MAX_HISTORY, MAX_K

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def client(trained_runs, tmp_path_factory):
    rec = Recommender.load(trained_runs("pit"), state_dir=tmp_path_factory.mktemp("http_state"))
    with TestClient(create_app(rec, max_body_bytes=LIMIT), raise_server_exceptions=False) as c:
        yield c


def test_recommend_and_batch(client):
    out = client.post("/recommend", json={"history": [1, 2, 3], "k": 4})
    assert out.status_code == 200
    body = out.json()
    assert body["method"] == "pit" and isinstance(body["version"], int) and len(body["items"]) == 4
    assert all(item["sids"] and isinstance(item["score"], float) for item in body["items"])
    batch = client.post("/recommend/batch", json={"histories": [[1, 2, 3], [4]], "k": 4}).json()
    assert batch["version"] == body["version"] and len(batch["results"]) == 2
    assert [i["id"] for i in batch["results"][0]["items"]] == [i["id"] for i in body["items"]]
    dropped = client.post("/recommend", json={"history": [1, "nope"], "k": 2, "ignore_unknown": True}).json()
    assert dropped["ignored"] == ["nope"]
    quick = client.post("/recommend", json={"history": [1, 2, 3], "k": 4, "explain": False}).json()
    assert [(i["id"], i["score"]) for i in quick["items"]] == [(i["id"], i["score"]) for i in body["items"]]
    assert client.post("/recommend", json={"history": [1], "explain": "no"}).status_code == 422


def test_items_feedback_health_stats(client):
    before = client.get("/stats").json()
    added = client.post("/items", json={"id": "http-new", "title": "an item from http", "attributes": [0]})
    assert added.status_code == 201 and added.json()["version"] == before["version"] + 1
    got = client.get("/items/http-new").json()
    assert got["added_online"] and got["sids"] == added.json()["sids"]
    assert client.get("/items/1").json()["id"] == 1  # integer ids match their string form
    fb = client.post("/feedback", json={"history": [1, 2], "item": "http-new"})
    assert fb.status_code == 200 and fb.json()["version"] == before["version"] + 2
    health = client.get("/health").json()
    assert health == {"status": "ok", "method": "pit", "version": before["version"] + 2, "items": before["items"] + 1}
    answer = client.post("/recommend", json={"history": ["http-new"], "k": 2})
    assert answer.status_code == 200
    stats = client.get("/stats").json()
    # explained SIDs are counted by source across index versions (two updates since `before`)
    explained = sum(len(item["sids"]) for item in answer.json()["items"])
    assert set(stats["explanations"]) == {"frontier", "one_step", "alone", "decoded"}
    assert sum(stats["explanations"].values()) == sum(before["explanations"].values()) + explained
    assert stats["batching"]["requests"] >= 1 and stats["batching"]["max_batch"] == 64
    assert stats["items_added"] == before["items_added"] + 1
    assert stats["feedback_accepted"] == before["feedback_accepted"] + 1 and stats["persistence"]["log_records"] >= 2


BAD = [
    ("post", "/recommend", {"history": [1, "no-such-item"]}, 422, "unknown item id"),
    ("post", "/recommend", {"history": []}, 422, "at least 1 item"),
    ("post", "/recommend", {"history": [1], "k": 0}, 422, "body.k"),
    ("post", "/recommend", {"history": [1], "k": MAX_K + 1}, 422, "body.k"),
    ("post", "/recommend", {"history": [1], "k": "5"}, 422, "body.k"),
    ("post", "/recommend", {"history": [1.5]}, 422, "body.history.0"),
    ("post", "/recommend", {"history": [True]}, 422, "body.history.0"),
    ("post", "/recommend", {"history": "1,2"}, 422, "body.history"),
    ("post", "/recommend", {"history": [1] * (MAX_HISTORY + 1)}, 422, "body.history"),
    ("post", "/recommend", {"history": [1], "exclude_histroy": True}, 422, "exclude_histroy"),
    ("post", "/recommend", {"k": 3}, 422, "body.history"),
    ("post", "/recommend", ["not", "an", "object"], 422, "body"),
    ("post", "/recommend", {"history": ["nope"], "ignore_unknown": True}, 422, "none of its"),
    ("post", "/recommend/batch", {"histories": []}, 422, "body.histories"),
    ("post", "/recommend/batch", {"histories": [[1], []]}, 422, "body.histories.1"),
    ("post", "/recommend/batch", {"histories": [[1]] * (MAX_BATCH + 1)}, 422, "body.histories"),
    ("post", "/recommend/batch", {"histories": [[1], [2, "zz"]]}, 422, "histories[1]"),
    ("post", "/items", {"id": 1, "title": "duplicate"}, 409, "already exists"),
    ("post", "/items", {"id": "1", "title": "duplicate as a string"}, 409, "already exists"),
    ("post", "/items", {"id": "x", "attributes": ["no-such-attribute"]}, 422, "unknown attribute"),
    ("post", "/items", {"id": "", "title": "empty id"}, 422, "body.id"),
    ("post", "/items", {"id": None}, 422, "body.id"),
    ("post", "/items", {"title": "no id"}, 422, "body.id"),
    ("post", "/items", {"id": "y", "title": 12}, 422, "body.title"),
    ("post", "/feedback", {"history": [1], "item": "never-added"}, 422, "unknown item id"),
    ("post", "/feedback", {"history": [], "item": 1}, 422, "body.history"),
    ("post", "/feedback", {"history": [1]}, 422, "body.item"),
    ("get", "/items/no-such-item", None, 404, "not in the catalogue"),
    ("get", "/nowhere", None, 404, "Not Found"),
    ("put", "/recommend", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method,path,body,status,message", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_4xx_naming_the_problem(client, method, path, body, status, message):
    response = client.request(method, path, json=body) if body is not None else client.request(method, path)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_malformed_json_and_wrong_content(client):
    for content in (b"{not json", b"", b'{"history": [1,'):
        response = client.post("/recommend", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["detail"].startswith("invalid request")
    response = client.post("/recommend", content=b"history=1", headers={"content-type": "text/plain"})
    assert response.status_code == 422


def test_oversized_payloads_are_refused(client):
    big = b'{"history": [' + b"1," * LIMIT + b"1]}"
    response = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "exceeds the limit" in response.json()["detail"]

    def chunks():  # no Content-Length: counted while streaming
        yield b'{"history": ['
        for _ in range(LIMIT // 1000 + 2):
            yield b"1," * 500
        yield b"1]}"

    response = client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    response = client.post("/recommend", content=b"{}", headers={"content-type": "application/json",
                                                                 "content-length": "abc"})
    assert response.status_code == 400


def test_tiger_cannot_add_items_and_says_why(trained_runs):
    rec = Recommender.load(trained_runs("tiger"), persist=False)
    with TestClient(create_app(rec, max_batch=0), raise_server_exceptions=False) as c:  # unbatched path
        response = c.post("/items", json={"id": "new", "title": "t"})
        assert response.status_code == 501 and "TIGER cannot tokenise a new item" in response.json()["detail"]
        assert c.post("/feedback", json={"history": [1], "item": 2}).status_code == 501
        assert c.post("/recommend", json={"history": [1, 2], "k": 3}).json()["method"] == "tiger"
        assert c.post("/recommend", json={"history": ["nope"], "k": 3}).status_code == 422
        assert c.get("/stats").json()["batching"] == {}
