"""Where the HSDS 1.1 sample directory is: the vendored copy in tests/data.

The copy is Open Referral's public, fictional sample (CC BY-SA 4.0; attribution in its datapackage.json
and README.md). Tests read only what is inside the clone.
"""

from __future__ import annotations

from pathlib import Path

_SAMPLE = Path(__file__).resolve().parent / "data" / "hsds-sample-simple"


def hsds_sample() -> Path:
    if not (_SAMPLE / "datapackage.json").is_file():
        raise FileNotFoundError(f"The HSDS sample directory is missing ({_SAMPLE}).")
    return _SAMPLE
