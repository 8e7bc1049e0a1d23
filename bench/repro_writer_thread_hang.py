"""Reproduce Textual's shutdown hang when the terminal goes away while the app draws (sprx issue 15).

    .venv/bin/python bench/repro_writer_thread_hang.py [--rounds 10] [--sighup exit|ignore]

Each round runs a bare Textual app (no sprx code) in a fresh pseudo-terminal. The app redraws a
full screen of text 200 times a second. The parent reads the terminal for a random 0.3-1.5 s, then
closes the pty master, the way a terminal window or a killed tmux session goes away. Then it waits
10 s for the child to end. A child still alive after that is a hang: the parent sends SIGUSR1 (the
child's faulthandler writes every thread's stack to a file next to this script's output), prints
those stacks and kills the child with SIGKILL.

`--sighup exit` (the default) does what sprx did: `loop.add_signal_handler(SIGHUP, app.exit)`.
`--sighup ignore` leaves Textual alone with the dead terminal: its input thread's read() fails
(EIO) and it panics, which shuts the app down the same way.

Upstream report, a draft to file at https://github.com/Textualize/textual/issues (we cannot reach
GitHub from here; file it by hand, then name the issue in sprx_tui/_textual_hacks.py):

------------------------------------------------------------------------------------------------
Title: App never exits when the terminal goes away: WriterThread.stop() blocks forever on a full
queue once the writer thread has died (EIO)

Textual 8.2.8, Python 3.11, Linux. When the terminal an app draws to disappears (terminal window
closed, tmux session killed, ssh connection lost), the app sometimes never exits. Its main thread
waits forever in:

    Condition.wait <- Queue.put <- WriterThread.stop (textual/drivers/_writer_thread.py)
        <- LinuxDriver.close <- App._shutdown <- ... <- App.run

and no `textual-output` thread is alive. What happens:

1. The terminal goes away. The next `self._file.write()` in `WriterThread.run` raises
   `OSError: [Errno 5] Input/output error` (or EPIPE) and the writer thread ends with it.
2. The app keeps drawing. `WriterThread.write()` is `Queue.put` on a queue bounded to
   `MAX_QUEUED_WRITES` (30) that nobody reads any more, so it fills up and the 31st put blocks.
   If that put is on the event loop's thread, the loop is stuck from then on (signal handlers
   registered with `loop.add_signal_handler` never run).
3. If the app was already shutting down (SIGHUP handler calling `app.exit()`, or the input
   thread's own EIO calling `app.panic()`), `stop_application_mode()` writes a few escape codes
   and `LinuxDriver.close()` calls `WriterThread.stop()`, which `put`s `None` on the full queue:
   it blocks forever, and `join()` would not return either.

The process then lives on without a terminal, ignoring SIGTERM and SIGHUP, until SIGKILL. For
an app holding secrets (ours holds a database key) that is a security problem, not only a leak.

How the second writer comes about: on a hangup the kernel sends the terminal's session leader
SIGHUP *and SIGCONT*. LinuxDriver's SIGCONT handler (`_sigcont_application`, installed with
`signal.signal` in `__init__`) calls `resume_application_mode()` although the app was never
suspended: `start_application_mode()` starts a *second* WriterThread on the dead terminal and
replaces `self._writer_thread` with it. The new one dies of EIO on its first write; the old one is
orphaned, alive and idle in `Queue.get`. The stacks of a hung round of this script show exactly
that (main thread in `stop()`'s `put`, the one writer left in `get`). With the SIGCONT handler put
back to SIG_DFL (`--sigcont default`) we saw no hang.

Reproduction: this script (bare Textual, no other dependency). Here (2 shared cores, Textual 8.2.8,
Python 3.11.7), `--rounds 30 --seed 1 --wait 6`: 5 of 30 rounds hung with Textual's SIGCONT handler,
0 of 30 with `--sigcont default`.

Suggested fixes (any one avoids the hang; the first two are the real ones):
- `WriterThread.run` catches `OSError` from write/flush and keeps draining the queue (discarding),
  or marks itself dead so that `write()` drops text and `stop()` does not block
  (`put(None, timeout=...)`, or no put and no join when the thread is not alive).
- `_sigcont_application` resumes only after a suspend it did itself (`_must_signal_resume`), and
  `start_application_mode` does not start a second writer while one is running.
------------------------------------------------------------------------------------------------
"""

from __future__ import annotations

import argparse
import os
import pty
import random
import select
import signal
import sys
import tempfile
import time
from pathlib import Path

APP = r"""
import asyncio, faulthandler, signal, sys
from textual.app import App
from textual.widgets import Static

faulthandler.register(signal.SIGUSR1, file=open(sys.argv[1], "w"), all_threads=True)
MODE = sys.argv[2]
SIGCONT = sys.argv[3]

class Busy(App):
    def compose(self):
        yield Static(id="s")

    def on_mount(self):
        if MODE == "exit":
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.exit)
        else:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if SIGCONT == "default":
            signal.signal(signal.SIGCONT, signal.SIG_DFL)
        self.n = 0
        self.set_interval(1 / 200, self.tick)

    def tick(self):
        self.n += 1
        line = f"{self.n:>8} " + "0123456789abcdef" * 8
        self.query_one("#s", Static).update("\n".join(f"{i:>3} {line}" for i in range(40)))

Busy().run()
"""


def one_round(mode: str, sigcont: str, stacks: Path, rng: random.Random, wait: float) -> tuple[bool, float]:
    """(hung, seconds to exit or `wait`) for one app whose terminal closes at a random moment."""
    pid, master = pty.fork()
    if pid == 0:  # the child: a session leader with the pty as its controlling terminal
        os.environ["TERM"] = "xterm-256color"
        os.execv(sys.executable, [sys.executable, "-c", APP, str(stacks), mode, sigcont])
    deadline = time.monotonic() + rng.uniform(0.3, 1.5)
    while time.monotonic() < deadline:  # a terminal reading what the app draws
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                os.read(master, 65536)
            except OSError:
                break
    os.close(master)
    closed = time.monotonic()
    while time.monotonic() - closed < wait:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return False, time.monotonic() - closed
        time.sleep(0.05)
    os.kill(pid, signal.SIGUSR1)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True, wait


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sighup", choices=("exit", "ignore"), default="exit")
    parser.add_argument(
        "--sigcont",
        choices=("textual", "default"),
        default="textual",
        help="keep Textual's SIGCONT handler (resumes application mode) or restore the default",
    )
    parser.add_argument("--wait", type=float, default=10.0, help="seconds a child may take to exit")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    hangs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            stacks = Path(tmp) / f"stacks-{n}.txt"
            hung, took = one_round(args.sighup, args.sigcont, stacks, rng, args.wait)
            hangs += hung
            print(f"round {n + 1}: {'HUNG' if hung else 'exited'} after {took:.2f} s", flush=True)
            if hung:
                text = stacks.read_text() if stacks.exists() else "(no stacks written)"
                print("  " + "\n  ".join(text.strip().splitlines()), flush=True)
    print(f"{hangs} of {args.rounds} rounds hung (SIGHUP: {args.sighup}, SIGCONT: {args.sigcont})")
    return 1 if hangs else 0


if __name__ == "__main__":
    raise SystemExit(main())
