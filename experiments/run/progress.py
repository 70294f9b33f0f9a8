"""Progress bars that suit where they are shown: redrawn on a terminal, a line every ~5 % in a log or CI."""

from __future__ import annotations

import sys

from tqdm import tqdm


class _Bar(tqdm):
    """tqdm whose postfix updates wait for the next scheduled print when stderr is not a terminal
    (tqdm's default redraws on every ``set_postfix``, a line per round in a log)."""

    interactive = True

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=refresh and self.interactive, **kwargs)


def progress_bar(total: int, description: str, unit: str, enabled: bool = True, initial: int = 0) -> tqdm:
    interactive = sys.stderr.isatty()
    bar = _Bar(total=total, initial=initial, desc=description, unit=unit, disable=not enabled, file=sys.stderr,
               mininterval=0.1 if interactive else 30.0, miniters=None if interactive else max(1, total // 20),
               ascii=not interactive, dynamic_ncols=interactive)
    bar.interactive = interactive
    return bar


class TraceProgress:
    """The ns-3 worker's progress while it simulates a trace: a bar with an ETA on a terminal, else a log line
    at every further 5 % (slots done, simulated seconds, ns-3 events per wall second, time left)."""

    def __init__(self, description: str, log, enabled: bool = True):
        self._description, self._log, self._enabled = description, log, enabled
        self._interactive = sys.stderr.isatty()
        self._bar = None
        self._started = None
        self._logged_step = -1

    def __call__(self, report: dict) -> None:
        if not self._enabled:
            return
        import time

        done, total, events = int(report["slots_done"]), int(report["slots"]), int(report["events"])
        if self._started is None:
            self._started = time.monotonic()
        elapsed = time.monotonic() - self._started
        rate = events / elapsed if elapsed > 0 else 0.0
        if self._interactive:
            if self._bar is None:
                self._bar = progress_bar(total, self._description, "slot")
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix_str(f"{report['sim_s']:.0f} sim s, {rate / 1e6:.2f} M events/s")
            if done >= total:
                self._bar.close()
            return
        step = 20 * done // max(total, 1)  # 5 % steps
        if step > self._logged_step and (done or not total):
            self._logged_step = step
            left = elapsed * (total - done) / done if done else float("nan")
            self._log(f"[nsdml] {self._description}: {done} of {total} slots ({100 * done / max(total, 1):.0f} %), "
                      f"{report['sim_s']:.0f} simulated s, {rate / 1e6:.2f} M events/s, about {left:.0f} s left")
