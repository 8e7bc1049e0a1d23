"""Imports: a referral from the practice's referral file, as one transaction through the same merge and feed.

The file readers stay beside the command line: ``sync.server.importer`` (referral CSV) and
``sync.server.directory`` (HSDS services directory) call ``import_referral`` and ``server_write``.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from sync.server.log import log_event
from sync.server.store.accounts import AccountsMixin
from sync.server.store.push import PushMixin
from sync.server.store.tables import record

PERSON_NS = uuid.UUID("2b0e6c1e-8f55-4c39-9a59-6f2f4b7d7f11")


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

        Returns "imported" or "exists". Ids are uuid5 of practice + NHS number (+ received
        date + source for the referral), so re-importing a file adds nothing.
        """
        w = self.get_worker(worker_id)
        practice_id = w.practice_id
        ref_id = str(uuid.uuid5(PERSON_NS, f"{practice_id}/{nhs}/{received_on}/{source}"))
        with self._write() as conn:
            found = conn.execute(_person_by_nhs(practice_id, nhs)).first()
            person_id = found.id if found else str(uuid.uuid5(PERSON_NS, f"{practice_id}/{nhs}"))
            if conn.execute(sa.select(record.c.id).where(record.c.tbl == "referral", record.c.id == ref_id)).first():
                return "exists"
            if found is None:
                # A laptop may have corrected these details already; only a new person gets them.
                self.server_write("person", person_id, person_values, practice_id=practice_id, conn=conn)
            self._assign(conn, person_id, practice_id, worker_id, None)
            self.server_write(
                "referral",
                ref_id,
                referral_values,
                practice_id=practice_id,
                person_id=person_id,
                conn=conn,
            )
        log_event("referral_imported", referral_id=ref_id, person_id=person_id)
        return "imported"

    def find_person_by_nhs(self, practice_id: str, nhs: str) -> str | None:
        with self._read() as conn:
            r = conn.execute(_person_by_nhs(practice_id, nhs)).first()
        return r.id if r is not None else None
