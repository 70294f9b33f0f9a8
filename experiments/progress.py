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
