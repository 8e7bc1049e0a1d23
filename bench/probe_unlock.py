"""Where the time from Enter on the passphrase to Today on screen goes (the app, headless, 10k vault).

    .venv/bin/python bench/probe_unlock.py [--vault bench/out/vault-10k] [--unlocks 3]

Unlocks the real SprxApp under Textual's Pilot (120x40) several times (Ctrl+L between them) and
prints, per unlock: the KDF, KDF end -> `VaultUnlocked` handled (key unwrap, store open, audit),
-> `TodayLoaded` handled (Today's queries, each timed with its start relative to `VaultUnlocked`;
they run before the switch to Today), -> the first drawing of Today after it (the lists filled,
the switch, the drawing). The first unlock of the process is the one bench_app.py measures. The same marks as
bench_app.py (`Marks`); run it on a copy if you mind the vault's audit trail growing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_app import SIZE, Marks, _now  # noqa: E402
from common import DEMO_PASSPHRASE, VAULT_10K  # noqa: E402

QUERIES = ("due_today", "overdue", "new_referrals", "no_recent_contact")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vault", default=str(VAULT_10K))
    parser.add_argument("--unlocks", type=int, default=3)
    parser.add_argument("--settle", type=float, default=0.5, help="seconds between typing and Enter")
    args = parser.parse_args()

    from sprx_tui.app import SprxApp
    from sprx_tui.config import Config
    from sprx_tui.core import vault as vault_module
    from sprx_tui.core.queries import CaseQueries
    from sprx_tui.messages import TodayLoaded, VaultUnlocked

    kdf: list[tuple[float, float]] = []
    derive = vault_module._derive_kek

    def timed_derive(*a: Any, **k: Any) -> Any:
        t = _now()
        try:
            return derive(*a, **k)
        finally:
            kdf.append((t, _now()))

    vault_module._derive_kek = timed_derive
    calls: list[tuple[str, float, float]] = []
    for name in QUERIES:
        original = getattr(CaseQueries, name)

        def timed(*a: Any, _f: Any = original, _n: str = name, **k: Any) -> Any:
            t = _now()
            try:
                return _f(*a, **k)
            finally:
                calls.append((_n, t, _now()))

        setattr(CaseQueries, name, timed)
    marks = Marks(keep=(TodayLoaded, VaultUnlocked))

    async def run() -> None:
        app = SprxApp(Path(args.vault), config=Config())
        app.animation_level = "none"
        marks.hook_display(app)
        async with app.run_test(size=SIZE, message_hook=marks.on_message) as pilot:
            for _ in range(args.unlocks):
                while not app.screen.query("#passphrase"):
                    await asyncio.sleep(0.01)
                await pilot.press(*DEMO_PASSPHRASE)
                await pilot.pause(args.settle)  # the unlock screen's own preparation is done
                t = _now()
                await pilot.press("enter")
                t_unlocked = await marks.wait_message(t, lambda m: m.kind is VaultUnlocked)
                t_lists = await marks.wait_message(t, lambda m: m.kind is TodayLoaded)
                t_shown = await marks.display_after(t_lists, screen="TodayScreen")
                k0, k1 = kdf[-1]
                queries = ", ".join(
                    f"{n} at +{1000 * (a - t_unlocked):.0f} for {1000 * (b - a):.0f}" for n, a, b in calls if a > t
                )
                print(
                    f"KDF {1000 * (k1 - k0):.0f} ms | KDF end -> unlocked {1000 * (t_unlocked - k1):.0f} | "
                    f"-> lists read {1000 * (t_lists - t_unlocked):.0f} | -> drawn {1000 * (t_shown - t_lists):.0f} | "
                    f"Enter -> Today without the KDF {1000 * (t_shown - t - (k1 - k0)):.0f} ms"
                )
                print(f"    queries (ms after unlocked): {queries}")
                await pilot.press("ctrl+l")
                await pilot.pause(0.3)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
