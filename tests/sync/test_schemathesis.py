"""Schema-driven fuzzing of the sync server's OpenAPI spec, plus hand-made hostile requests."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sync import protocol, schema
from tests.sync.server_harness import Laptop, TestServer, version_headers

# Property-based fuzzing of every endpoint: a large hypothesis run.
pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25
"""Per operation, on top of the coverage phase's fixed cases: keeps the module near 30 s on 2 cores."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
REFUSED = {400, 401, 403, 422, 426}
"""What a request without a valid token may get: 401/403 from the token check; 400/422 when
FastAPI refuses an unreadable body or bad parameters before the token is looked at; 426 from the
version headers, checked before the token on GET. None of them carries data, only the error body."""

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases every run: a CI failure reproduces locally
    database=None,
    suppress_health_check=list(HealthCheck),
)
FUZZ_NO_TOKEN = settings(FUZZ, max_examples=15)  # every case is refused early; fewer suffice


@dataclass
class Api:
    server: TestServer
    laptop: Laptop
    schema: schemathesis.BaseSchema


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One SQLite-backed app and one enrolled laptop for the whole module."""
    server = TestServer(f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/server.db")
    server.worker("w-fuzz")
    laptop = server.laptop("w-fuzz")
    # The people the fuzzed mutations point at, so person-scoped rows pass the scope check.
    people = [laptop.mutation("person", f"fz-person-{n}", "insert", {"given_name": f"Fuzz{n}"}) for n in range(3)]
    assert laptop.push(people).status_code == 200
    spec = schemathesis.openapi.from_asgi("/openapi.json", server.app)
    yield Api(server, laptop, spec)
    server.close()


@pytest.fixture(scope="module")
def api_schema(api: Api) -> schemathesis.BaseSchema:
    return api.schema


fuzzed = schemathesis.pytest.from_fixture("api_schema")


def _auth_value(case: schemathesis.Case) -> str | None:
    for k, v in (case.headers or {}).items():
        if k.lower() == "authorization":
            return str(v)
    return None


def _without_auth(case: schemathesis.Case) -> None:
    if case.headers:
        for k in [k for k in case.headers if k.lower() == "authorization"]:
            del case.headers[k]


TABLE_NAMES = sorted(schema.TABLES)


def _pick(options: list[str], key: str) -> str:
    return options[sum(map(ord, key)) % len(options)]


def _aim(case: schemathesis.Case, api: Api) -> None:
    """Steer generated requests past the cheap refusals so the merge and store code get fuzzed.

    Only parts that already have the right type are rewritten, so type-level negative cases survive:
    own device id, current versions, the next mutation ids, real table and field names, and a small
    pool of row and person ids (so later cases patch, delete and conflict with earlier ones).
    """
    if case.path != "/v1/sync/push":
        for name, value in list((case.headers or {}).items()):
            current = protocol.CURRENT_VERSIONS.get(name.removeprefix("X-Sprx-").lower())
            if current is not None and isinstance(value, str) and value.lstrip("-").isdigit():
                case.headers[name] = str(current)
        return
    body = case.body
    if not isinstance(body, dict):
        return
    body["device_id"] = api.laptop.device_id
    for key, current in (("protocol_version", protocol.PROTOCOL_VERSION), ("schema_version", schema.SCHEMA_VERSION)):
        if type(body.get(key)) is int:
            body[key] = current
    muts = body.get("mutations")
    if not isinstance(muts, list):
        return
    last = api.server.store.authenticate(api.laptop.token).last_acked_mutation_id
    for i, m in enumerate(muts):
        if not isinstance(m, dict):
            continue
        m["mutation_id"] = last + 1 + i
        if not isinstance(m.get("tbl"), str) or not m["tbl"]:
            continue
        tbl = m["tbl"] = _pick(TABLE_NAMES, m["tbl"])
        if isinstance(m.get("row_id"), str) and m["row_id"]:
            n = len(m["row_id"]) % 3
            m["row_id"] = f"fz-person-{n}" if tbl == "person" else f"fz-{tbl}-{n}"
        if isinstance(m.get("person_id"), str):
            m["person_id"] = f"fz-person-{len(m['person_id']) % 3}"
        if isinstance(m.get("fields"), dict):
            names = sorted(schema.TABLES[tbl].fields)
            m["fields"] = {_pick(names, f): fc for f, fc in m["fields"].items()}


@fuzzed.parametrize()
@FUZZ
def test_fuzz_with_token(case: schemathesis.Case, api: Api) -> None:
    """Any generated request, sent with a real token: never a 5xx, and every answer matches the spec."""
    _aim(case, api)
    case.call_and_validate(headers={"Authorization": f"Bearer {api.laptop.token}"}, checks=CHECKS)


@fuzzed.include(path_regex="^/v1/sync/").parametrize()
@FUZZ_NO_TOKEN
def test_fuzz_without_token(case: schemathesis.Case, api: Api) -> None:
    """No token, or a made-up one: every sync operation refuses, with the error body."""
    assert _auth_value(case) != f"Bearer {api.laptop.token}"
    for strip in (False, True):
        if strip:
            _without_auth(case)
        r = case.call()
        # The coverage phase also tries methods the path does not have: 405 says nothing either.
        allowed = REFUSED | ({405} if case.method.upper() != case.operation.method.upper() else set())
        assert r.status_code in allowed, (case.method, case.path, r.status_code, r.text[:200])
        body = r.json()
        assert set(body) >= {"error", "message"}, body
        assert "changes" not in body and "acks" not in body


# ------------------------------------------------------------------ hand-made hostile requests


def _push_body(laptop: Laptop, mutations: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "device_id": laptop.device_id,
        "protocol_version": protocol.PROTOCOL_VERSION,
        "schema_version": schema.SCHEMA_VERSION,
        "mutations": mutations,
    }


def _assert_plain_error(r: Any, status: int | set[int]) -> dict[str, Any]:
    allowed = {status} if isinstance(status, int) else status
    assert r.status_code in allowed, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) <= {"error", "message", "expected"}, body
    assert body["error"] and isinstance(body["error"], str)
    msg = body["message"]
    # One plain sentence: capital letter, full stop, no traceback, short enough to read.
    assert msg[:1].isupper() and msg.rstrip().endswith("."), msg
    assert "Traceback" not in msg and 'File "' not in msg and len(msg) < 300, msg
    return body


def _assert_still_working(api: Api) -> None:
    client = api.server.client
    assert client.get("/healthz").status_code == 200
    laptop = api.laptop
    last = api.server.store.authenticate(laptop.token).last_acked_mutation_id
    laptop.next_mid = last + 1
    pid = f"p-{laptop.next_mid}-{time.monotonic_ns()}"
    r = laptop.push([laptop.mutation("person", pid, "insert", {"given_name": "Test", "family_name": "Person"})])
    assert r.status_code == 200, r.text
    assert r.json()["acks"][0]["status"] == "applied", r.json()
    assert api.server.store.get_record("person", pid) is not None


def _post_raw(api: Api, content: bytes, headers: dict[str, str] | None = None) -> Any:
    h = {"Authorization": f"Bearer {api.laptop.token}", "Content-Type": "application/json", **(headers or {})}
    return api.server.client.post("/v1/sync/push", content=content, headers=h)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="broken"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"device_id": "x", "mutations": [', id="truncated"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
    ],
)
def test_malformed_json_body(api: Api, raw: bytes) -> None:
    _assert_plain_error(_post_raw(api, raw), {400, 422})
    _assert_still_working(api)


def test_too_many_mutations(api: Api) -> None:
    laptop = api.laptop
    last = api.server.store.authenticate(laptop.token).last_acked_mutation_id
    muts = [
        {"mutation_id": last + 1 + i, "tbl": "person", "row_id": f"cap-{i}", "op": "insert", "fields": {}, "hlc": 1}
        for i in range(protocol.MAX_MUTATIONS_PER_PUSH + 1)
    ]
    r = api.server.client.post("/v1/sync/push", json=_push_body(laptop, muts), headers=laptop.headers)
    body = _assert_plain_error(r, 422)
    assert "mutations" in body["message"]
    # Nothing from the refused batch was applied.
    assert api.server.store.get_record("person", "cap-0") is None
    assert api.server.store.authenticate(laptop.token).last_acked_mutation_id == last
    _assert_still_working(api)


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param({"device_id": 12345}, id="device_id-int"),
        pytest.param({"protocol_version": "one"}, id="protocol-str"),
        pytest.param({"mutations": {"a": 1}}, id="mutations-object"),
        pytest.param({"mutations": "lots"}, id="mutations-str"),
        pytest.param({"mutations": [1, 2, 3]}, id="mutation-int"),
        pytest.param(
            {"mutations": [{"mutation_id": "x", "tbl": "person", "row_id": "r", "op": "insert", "hlc": 1}]},
            id="mutation_id-str",
        ),
        pytest.param(
            {"mutations": [{"mutation_id": 1, "tbl": "person", "row_id": "r", "op": "explode", "hlc": 1}]},
            id="op-unknown",
        ),
        pytest.param(
            {"mutations": [{"mutation_id": 1, "tbl": "person", "row_id": "r", "op": "insert", "hlc": -5}]},
            id="hlc-negative",
        ),
        pytest.param(
            {"mutations": [{"mutation_id": 1, "tbl": "person", "row_id": "r", "op": "insert", "hlc": 1.5}]},
            id="hlc-float",
        ),
        pytest.param(
            {"mutations": [{"mutation_id": 1, "tbl": ["person"], "row_id": "r", "op": "insert", "hlc": 1}]},
            id="tbl-list",
        ),
        pytest.param(
            {
                "mutations": [
                    {
                        "mutation_id": 1,
                        "tbl": "person",
                        "row_id": "r",
                        "op": "insert",
                        "hlc": 1,
                        "fields": {"given_name": "plain"},
                    }
                ]
            },
            id="field-not-object",
        ),
        pytest.param({"surprise": True}, id="extra-key"),
    ],
)
def test_wrong_types(api: Api, patch: dict[str, Any]) -> None:
    body = {**_push_body(api.laptop, []), **patch}
    r = api.server.client.post("/v1/sync/push", json=body, headers=api.laptop.headers)
    _assert_plain_error(r, 422)
    _assert_still_working(api)


@pytest.mark.parametrize("where", ["device_id", "tbl", "row_id", "field_value", "field_name", "person_id"])
def test_huge_string_field(api: Api, where: str) -> None:
    huge = "x" * 2_000_000
    laptop = api.laptop
    last = api.server.store.authenticate(laptop.token).last_acked_mutation_id
    m: dict[str, Any] = {"mutation_id": last + 1, "tbl": "person", "row_id": f"huge-{where}", "op": "insert"}
    m.update(hlc=laptop.hlc(), fields={"given_name": {"v": "A"}})
    body = _push_body(laptop, [m])
    if where == "device_id":
        body["device_id"] = huge
    elif where == "field_value":
        m["fields"] = {"given_name": {"v": huge}}
    elif where == "field_name":
        m["fields"] = {huge: {"v": "A"}}
    else:
        m[where] = huge
    r = api.server.client.post("/v1/sync/push", json=body, headers=laptop.headers)
    if where in ("field_name", "field_value"):
        # Field names and values are bounded by the inbound gate: the mutation is refused on its own
        # (never stored, never echoed), with a sentence naming the field; the queue is not held up.
        assert r.status_code == 200, r.text[:300]
        ack = r.json()["acks"][0]
        assert (ack["status"], ack["reason"]) == ("rejected", "invalid_value"), ack
        assert "is too long" in ack["detail"] and len(r.text) < 2_000 and huge not in r.text
        assert api.server.store.get_record("person", f"huge-{where}") is None
    else:
        _assert_plain_error(r, 422)
        assert huge not in r.text  # never echoed back
    _assert_still_working(api)


def test_huge_query_and_header_values(api: Api) -> None:
    client, headers = api.server.client, api.laptop.headers
    _assert_plain_error(client.get("/v1/sync/pull", params={"epoch": "e" * 5_000}, headers=headers), 422)
    _assert_plain_error(client.get("/v1/sync/snapshot", params={"after": "a" * 5_000}, headers=headers), 422)
    _assert_plain_error(
        client.get("/v1/sync/pull", headers={**headers, "Authorization": "Bearer " + "t" * 50_000}), 401
    )
    _assert_still_working(api)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        pytest.param({"cursor": -1}, 422, id="negative"),
        pytest.param({"cursor": -(2**70)}, 422, id="very-negative"),
        pytest.param({"cursor": 2**62}, 410, id="far-future"),
        pytest.param({"cursor": 2**63}, 410, id="past-int64"),
        pytest.param({"cursor": 10**40}, 410, id="absurd"),
        pytest.param({"cursor": "1e9"}, 422, id="float-text"),
        pytest.param({"cursor": "abc"}, 422, id="text"),
        pytest.param({"cursor": "NaN"}, 422, id="nan"),
        pytest.param({"limit": 0}, 422, id="limit-zero"),
        pytest.param({"limit": -1}, 422, id="limit-negative"),
        pytest.param({"limit": 10**30}, 422, id="limit-absurd"),
        pytest.param({"cursor": 0, "epoch": "not-this-server"}, 410, id="wrong-epoch"),
    ],
)
def test_bad_cursor(api: Api, params: dict[str, Any], status: int) -> None:
    r = api.server.client.get("/v1/sync/pull", params=params, headers=api.laptop.headers)
    _assert_plain_error(r, status)
    _assert_still_working(api)


@pytest.mark.parametrize(
    "after",
    [
        "not-base64!!",
        "",
        "e30",  # {}
        "bnVsbA",  # null
        "W10",  # []
    ],
)
def test_bad_snapshot_token(api: Api, after: str) -> None:
    r = api.server.client.get("/v1/sync/snapshot", params={"after": after}, headers=api.laptop.headers)
    _assert_plain_error(r, {400, 410})
    _assert_still_working(api)


def _token(pos: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(pos).encode()).decode().rstrip("=")


def test_forged_snapshot_token_with_real_epoch(api: Api) -> None:
    """A token with the right epoch but nonsense inside is refused, not a crash (it used to be a 500)."""
    epoch = api.server.store.server_info()["epoch"]
    get = api.server.client.get
    for pos in (
        {"s": "x", "t": 0, "i": "", "e": epoch},
        {"s": 0, "t": "x", "i": "", "e": epoch},
        {"s": 0, "t": -1, "i": "", "e": epoch},
        {"s": 0, "t": 0, "i": [], "e": epoch},
        {"s": 0.5, "t": 0, "i": "", "e": epoch},
        {"s": 0, "t": 0, "i": "", "e": None},
    ):
        r = get("/v1/sync/snapshot", params={"after": _token(pos)}, headers=api.laptop.headers)
        assert _assert_plain_error(r, 400)["error"] == "invalid_request", pos
    # Well-typed but out of range: an empty last page, never a crash.
    r = get("/v1/sync/snapshot", params={"after": _token({"s": 0, "t": 10**9, "i": "", "e": epoch})},
            headers=api.laptop.headers)  # fmt: skip
    assert r.status_code == 200 and r.json()["changes"] == [] and not r.json()["has_more"], r.text[:200]
    _assert_still_working(api)


def test_unknown_path_and_method(api: Api) -> None:
    """Framework errors use the same error body as ours, not FastAPI's {"detail": ...}."""
    client = api.server.client
    assert _assert_plain_error(client.get("/v1/nothing-here"), 404)["error"] == "not_found"
    r = client.delete("/v1/sync/push", headers=api.laptop.headers)
    assert _assert_plain_error(r, 405)["error"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]
    _assert_still_working(api)


def test_version_headers_garbage(api: Api) -> None:
    auth = {"Authorization": f"Bearer {api.laptop.token}"}
    client = api.server.client
    _assert_plain_error(client.get("/v1/sync/pull", headers=auth), 422)
    bad = {**auth, protocol.PROTOCOL_HEADER: "v1", protocol.SCHEMA_HEADER: "x"}
    _assert_plain_error(client.get("/v1/sync/pull", headers=bad), 422)
    old = {**auth, **version_headers(protocol_version=-(2**40))}
    _assert_plain_error(client.get("/v1/sync/pull", headers=old), 426)
    _assert_still_working(api)
