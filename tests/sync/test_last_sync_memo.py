"""The everyday sync's memo of what a vault holds as its last sync belongs to one open store, never to a
later store that happens to get a closed one's id()."""

# ruff: noqa: F811 - pytest fixtures imported from the harness are redefined as parameters

from __future__ import annotations

import weakref

from sqlmodel import Session

from sprx_tui.core.store import CaseStore
from sprx_tui.core.sync import run
from sprx_tui.core.sync.state import K_LAST_AT, K_LAST_STATUS, read_state
from tests.sync.client_harness import Net, net, vault_template  # noqa: F401 - fixtures


def stored(store: CaseStore) -> dict[str, str]:
    with Session(store.engine) as s:
        return read_state(s, (K_LAST_STATUS, K_LAST_AT))


def test_a_memo_left_by_another_store_under_the_same_id_is_not_trusted(net: Net) -> None:
    lap = net.laptop("memo")
    store = lap.store
    values = {K_LAST_STATUS: "ok", K_LAST_AT: "2026-11-23T10:30:00+00:00"}
    run._record_last_sync(store, values, moved=False)
    assert stored(store) == values

    # Another store once had this id() and believed the vault already held these values; this store's
    # vault holds something else (another process wrote it). The memo must not stop the write.
    with Session(store.engine) as s, s.begin():
        s.connection().exec_driver_sql("DELETE FROM sync_state WHERE key IN (?, ?)", (K_LAST_STATUS, K_LAST_AT))
    gone = type("Gone", (), {})()
    key = run._vault_key(store)
    run._STORED_LAST[(key, id(store))] = (weakref.ref(gone), "ok", values[K_LAST_AT])
    run._record_last_sync(store, values, moved=False)
    assert stored(store) == values, "the memo of another store stopped the last sync being written"
    assert run._stored_last(store, key) == ("ok", values[K_LAST_AT])  # now this store's own

    # This store's own memo still saves the read when nothing is due.
    run._record_last_sync(store, values, moved=False)
    assert stored(store) == values
