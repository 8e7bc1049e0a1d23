"""Every reliance on Textual's internals, in one place, each with the upstream issue it works around.

Keep this module small: prefer Textual's public API, and when something here is no longer needed (the
upstream issue fixed in the version we require), delete it. `TEXTUAL_TESTED` names the releases these
were checked against; `textual_is_tested()` says whether the running Textual is one of them, so a
caller can fall back to public behaviour on an untested version.
"""

from __future__ import annotations

import threading

import textual

TEXTUAL_TESTED = ("8.",)
"""Textual release prefixes these workarounds were checked against (textual.__version__)."""


def textual_is_tested() -> bool:
    return str(getattr(textual, "__version__", "")).startswith(TEXTUAL_TESTED)


# -- the terminal's writer thread (sprx issue 15) --------------------------------------------------
#
# Upstream: "App never exits when the terminal goes away: WriterThread.stop() blocks forever on a full
# queue once the writer thread has died (EIO)" - a DRAFT, not yet filed (no GitHub access from where it
# was written): the text and a bare-Textual reproduction are in bench/repro_writer_thread_hang.py.
# Once filed, put its URL here.
#
# Textual's LinuxDriver writes to the terminal from a thread named "textual-output"
# (textual/drivers/_writer_thread.py). When the terminal goes away its write raises OSError (EIO, EPIPE)
# and the thread ends; the loop then blocks on the thread's full queue, forever. We do not patch the
# driver: sprx_tui.terminal_guard only *notices* that thread dying of a write error (through the public
# threading.excepthook) and locks and exits. The thread's name is the one internal detail used.

OUTPUT_THREAD_NAME = "textual-output"


def is_terminal_writer(thread: threading.Thread | None) -> bool:
    """Whether `thread` is Textual's terminal writer (by its name; any thread on an untested Textual
    whose name says output, so that a renamed thread is still noticed)."""
    if thread is None:
        return False
    if textual_is_tested():
        return thread.name == OUTPUT_THREAD_NAME
    return "output" in thread.name
