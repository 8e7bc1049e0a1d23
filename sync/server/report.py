"""Minimal practice report (counts only, no personal data); extension point for commissioners."""

from __future__ import annotations

import json
from collections import Counter

import sqlalchemy as sa

from sync.server.store import Store, conflict, quarantine, record


def practice_report(store: Store, practice_id: str) -> list[str]:
    """Plain lines of counts. TODO(report owner): wellbeing change, GP/A&E use, provision gaps."""
    by_tbl: Counter[str] = Counter()
    status: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(record.c.tbl, record.c.values).where(
                record.c.practice_id == practice_id, record.c.deleted.is_(False)
            )
        )
        for tbl, values in rows:
            by_tbl[tbl] += 1
            v = json.loads(values)
            if tbl == "person":
                status[str(v.get("status") or "unknown")] += 1
            elif tbl == "referral":
                sources[str(v.get("source") or "unknown")] += 1
        open_conflicts = conn.execute(
            sa.select(sa.func.count()).where(conflict.c.practice_id == practice_id, conflict.c.status == "open")
        ).scalar_one()
        rejected = conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar_one()
    out = [f"Practice {practice_id}"]
    out.append(f"People: {by_tbl['person']} ({', '.join(f'{k} {n}' for k, n in sorted(status.items())) or 'none'})")
    out.append(
        f"Referrals: {by_tbl['referral']} ({', '.join(f'{k} {n}' for k, n in sorted(sources.items())) or 'none'})"
    )
    out.append(f"Contacts: {by_tbl['contact']}; onward referrals: {by_tbl['onward_referral']}")
    out.append(f"Open conflicts: {open_conflicts}; rejected changes (all practices): {rejected}")
    return out
