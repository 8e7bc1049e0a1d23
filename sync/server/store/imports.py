"""Imports: a referral from the practice's referral file, as one transaction through the same merge and feed.

The file readers stay beside the command line: ``sync.server.importer`` (referral CSV) and
``sync.server.directory`` (HSDS services directory) call ``import_referral`` and ``server_write``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync.server.log import log_event
from sync.server.store.accounts import AccountsMixin
from sync.server.store.base import StoreError
from sync.server.store.push import PushMixin
from sync.server.store.tables import record

PERSON_NS = uuid.UUID("2b0e6c1e-8f55-4c39-9a59-6f2f4b7d7f11")
IMPORT_BATCH = 200
"""Referrals written per transaction by ``import_referrals`` (each row in its own savepoint)."""


def _person_by_nhs(practice_id: str, nhs: str) -> sa.Select[Any]:
    """The practice's live person with this NHS number (the first by id, should there be two)."""
    return (
        sa.select(record.c.id)
        .where(
            record.c.practice_id == practice_id,
            record.c.tbl == "person",
            record.c.lookup == nhs,
            record.c.deleted.is_(False),
        )
        .order_by(record.c.id)
    )


# Built once: building the statement per row cost more than running it (bench/bench_import.py).
_b = sa.bindparam
_SEL_PERSON_BY_NHS = (
    sa.select(record.c.id)
    .where(
        record.c.practice_id == _b("b_practice"),
        record.c.tbl == "person",
        record.c.lookup == _b("b_nhs"),
        record.c.deleted.is_(False),
    )
    .order_by(record.c.id)
    .limit(1)
)
_SEL_REFERRAL = sa.select(record.c.id).where(record.c.tbl == "referral", record.c.id == _b("b_id"))


@dataclass(frozen=True)
class ReferralIn:
    """One checked row of the practice's referral file."""

    worker_id: str
    nhs: str
    person_values: dict[str, Any]
    received_on: str
    source: str
    referral_values: dict[str, Any]


class ImportsMixin(PushMixin, AccountsMixin):
    """Admin writes from files: people and referrals, found again by NHS number so a re-import adds nothing."""

    def import_referral(
        self,
        worker_id: str,
        nhs: str,
        person_values: dict[str, Any],
        received_on: str,
        source: str,
        referral_values: dict[str, Any],
    ) -> str:
        """Create or find the person, add the referral, assign to the worker: one transaction.

        Returns "imported" or "exists"; StoreError when the worker is unknown or a value is refused.
        """
        out = self.import_referrals([ReferralIn(worker_id, nhs, person_values, received_on, source, referral_values)])
        if isinstance(out[0], StoreError):
            raise out[0]
        return out[0]

    def import_referrals(self, rows: Sequence[ReferralIn]) -> list[str | StoreError]:
        """Import each row as ``import_referral`` does, ``IMPORT_BATCH`` rows to a transaction.

        Each row is "imported", "exists" or the StoreError that refused it (its savepoint rolled back,
        the other rows kept). Ids are uuid5 of practice + NHS number (+ received date + source for the
        referral), so re-importing a file adds nothing.
        """
        out: list[str | StoreError] = []
        practices: dict[str, str | StoreError] = {}
        for start in range(0, len(rows), IMPORT_BATCH):
            with self._write() as conn:
                for row in rows[start : start + IMPORT_BATCH]:
                    if row.worker_id not in practices:
                        try:
                            practices[row.worker_id] = self.get_worker(row.worker_id).practice_id
                        except StoreError as e:
                            practices[row.worker_id] = e
                    practice_id = practices[row.worker_id]
                    if isinstance(practice_id, StoreError):
                        out.append(practice_id)
                        continue
                    out.append(self._import_one(conn, practice_id, row))
        return out

    def _import_one(self, conn: Connection, practice_id: str, row: ReferralIn) -> str | StoreError:
        """One referral inside ``conn``, in a savepoint: a refusal undoes this row only."""
        ref_id = str(uuid.uuid5(PERSON_NS, f"{practice_id}/{row.nhs}/{row.received_on}/{row.source}"))
        if conn.execute(_SEL_REFERRAL, {"b_id": ref_id}).first():
            return "exists"
        seq = conn.info["sprx_seq"]
        try:
            with conn.begin_nested():
                found = conn.execute(_SEL_PERSON_BY_NHS, {"b_practice": practice_id, "b_nhs": row.nhs}).first()
                person_id = found.id if found else str(uuid.uuid5(PERSON_NS, f"{practice_id}/{row.nhs}"))
                if found is None:
                    # A laptop may have corrected these details already; only a new person gets them.
                    self.server_write("person", person_id, row.person_values, practice_id=practice_id, conn=conn)
                # A new person's rows are fresh in the feed already: only someone moved from another
                # owner needs their rows re-sent (the backfill).
                self._assign(conn, person_id, practice_id, row.worker_id, None, backfill=found is not None)
                self.server_write(
                    "referral",
                    ref_id,
                    row.referral_values,
                    practice_id=practice_id,
                    person_id=person_id,
                    conn=conn,
                )
        except StoreError as e:
            conn.info["sprx_seq"] = seq  # the rolled-back row's seqs are handed out again
            conn.info["sprx_scope"] = {}
            return e
        log_event("referral_imported", referral_id=ref_id, person_id=person_id)
        return "imported"

    def find_person_by_nhs(self, practice_id: str, nhs: str) -> str | None:
        with self._read() as conn:
            r = conn.execute(_person_by_nhs(practice_id, nhs)).first()
        return r.id if r is not None else None
