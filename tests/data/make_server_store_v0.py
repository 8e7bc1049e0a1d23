"""Write tests/data/server-store-v0.{sqlite,postgresql}.sql: a server store as made before migrations.

Run against the code of git commit cebbe3a (the last store without Alembic), never the current code:

    mkdir /tmp/v0 && git archive cebbe3a sync sprx_rules | tar -x -C /tmp/v0
    PYTHONPATH=/tmp/v0 .venv/bin/python tests/data/make_server_store_v0.py tests/data

It fills a store through that code's own API (workers, teams, enrolled and revoked laptops, pushed
people, goals and contacts, a conflict, a quarantined change, an assignment, a referral import, a
garbage collection), then writes the schema as that code made it (``create_all`` of its tables) and
every row as INSERT statements, once for each dialect. The people are synthetic.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from sync.server.store import ServerStore, md

T0 = 1_765_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        self.ms += 1000
        return self.ms


def mutation(mid: int, tbl: str, row_id: str, op: str, fields: dict, hlc: int, person_id: str | None = None) -> dict:
    return {
        "mutation_id": mid,
        "tbl": tbl,
        "row_id": row_id,
        "person_id": person_id,
        "op": op,
        "fields": {f: {"v": v, "hlc": hlc} for f, v in fields.items()},
        "hlc": hlc,
        "conflict_id": None,
    }


def fill(store: ServerStore, clock: Clock) -> None:
    store.add_worker("asmith", "P1", "T1")
    store.add_worker("bjones", "P1", "T1")
    store.add_worker("cgreen", "P2")
    devs = {}
    for w in ("asmith", "bjones", "cgreen"):
        code, _ = store.issue_enrol_code(w)
        devs[w] = store.authenticate(store.enrol(code, f"{w}-laptop")["token"])
    store.issue_enrol_code("asmith")  # an unused code
    h = (clock.ms + 5000) << 16
    a, b = devs["asmith"], devs["bjones"]
    store.push(a, [
        mutation(1, "person", "p-1", "insert", {"given_name": "Ada", "family_name": "Example",
                                                "nhs_number": "9434765919", "status": "active"}, h),
        mutation(2, "goal", "g-1", "insert", {"text": "Join the walking group", "status": "active"}, h + 1, "p-1"),
        mutation(3, "contact", "c-1", "insert", {"mode": "phone", "notes": "First call."}, h + 2, "p-1"),
    ], pending=0)  # fmt: skip
    store.assign("p-1", team_id="T1")
    # Two laptops edit the goal's text from the same base: a conflict.
    base = store.get_record("goal", "g-1")["seq"]  # type: ignore[index]
    for dev, mid, text, dh in ((a, 4, "Walk on Tuesdays", 10), (b, 1, "Walk on Thursdays", 11)):
        m = mutation(mid, "goal", "g-1", "patch", {"text": text}, h + dh, "p-1")
        m["fields"]["text"]["base_seq"] = base
        store.push(dev, [m])
    # A change the inbound gate refuses goes to quarantine.
    store.push(b, [mutation(2, "person", "p-2", "insert", {"given_name": "\x1b[31mX"}, h + 20)])
    store.push(b, [mutation(3, "person", "p-3", "insert", {"given_name": "Bo", "family_name": "Sample"}, h + 21)])
    store.import_referral(
        "asmith", "4010232137", {"given_name": "Cy", "family_name": "Test", "date_of_birth": "1960-01-01"},
        "2025-03-01", "gp", {"reasons": ["loneliness"], "urgency": "routine"},
    )  # fmt: skip
    store.push(a, [mutation(5, "contact", "c-1", "delete", {}, h + 30, "p-1")])
    store.revoke_device(devs["cgreen"].id)
    store.pull(a, 0, 100)
    store.pull(b, 0, 100)
    store.gc()


def dump(engine: sa.Engine, dialect: sa.Dialect, name: str) -> str:
    out = [f"-- A sprx server store as made by git commit cebbe3a ({name}); see make_server_store_v0.py.\n"]
    for t in md.sorted_tables:
        out.append(str(CreateTable(t).compile(dialect=dialect)).strip() + ";\n")
        for ix in sorted(t.indexes, key=lambda i: i.name or ""):
            out.append(str(CreateIndex(ix).compile(dialect=dialect)).strip() + ";\n")
    with engine.connect() as conn:
        for t in md.sorted_tables:
            key = [c for c in t.primary_key.columns]
            for row in conn.execute(sa.select(t).order_by(*key)).mappings():
                stmt = t.insert().values(**dict(row))
                out.append(str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})) + ";\n")
    return "".join(out)


def main(folder: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = Clock()
        store = ServerStore(f"sqlite:///{tmp}/server.db", now_ms=clock)
        fill(store, clock)
        for name, dialect in (("sqlite", sqlite.dialect()), ("postgresql", postgresql.dialect())):
            Path(folder, f"server-store-v0.{name}.sql").write_text(dump(store.engine, dialect, name))
        store.close()


if __name__ == "__main__":
    main(sys.argv[1])
