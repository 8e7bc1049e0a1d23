"""Where the HSDS 1.1 sample directory is: beside the checkout (../shared/data), else the copy in tests/data.

The copy is Open Referral's public, fictional sample (CC BY-SA 4.0; attribution in its datapackage.json
and README.md), kept so the tests also run from a clone that has no ../shared folder beside it.
"""

from __future__ import annotations

from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def hsds_sample() -> Path:
    for candidate in (
        _REPO.parent / "shared" / "data" / "hsds-sample-simple",
        Path("/work/shared/data/hsds-sample-simple"),
        _REPO / "tests" / "data" / "hsds-sample-simple",
    ):
        if (candidate / "datapackage.json").is_file():
            return candidate
    raise FileNotFoundError("The HSDS sample directory is missing (looked in ../shared/data and tests/data).")
