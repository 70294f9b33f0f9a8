"""Progress bars that suit where they are shown: redrawn on a terminal, a line every ~5 % in a log or CI."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, description: str, unit: str, enabled: bool = True, initial: int = 0) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=description, unit=unit, disable=not enabled, file=sys.stderr,
                mininterval=0.1 if interactive else 30.0, miniters=None if interactive else max(1, total // 20),
                ascii=not interactive, dynamic_ncols=interactive)
