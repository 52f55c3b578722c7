"""Where every event of a replay went: in a window, late, discarded as ahead of the clock, or lost.

    python scripts/event_time_report.py EVENTS.jsonl [...] [--window 60] [--lateness 10]

For each file, replays it (as `payops replay` does, ticks as long as the window) and
prints: valid events, events counted in a decided window, late arrivals (and how many
of them no window holds), events discarded as implausibly far ahead of the clock, and
what is left unaccounted (the silent loss; 0 is the bar). Also writes nothing but a
temporary decisions file. Used for issue 14's figures (±5 s jitter, a shuffled file,
ts=1e12 on line 1 and mid-file).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def account(path: str, window: float, lateness: float | None) -> dict[str, float]:
    if lateness is not None:
        os.environ["PAYOPS_ALLOWED_LATENESS_SECONDS"] = str(lateness)
    from payops import wiring

    stats: dict = {}
    totals = {"decisions": 0, "in_windows": 0, "late": 0, "late_in_no_window": 0, "ahead_of_clock": 0}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for state in wiring.replay(path, os.path.join(folder, "d.jsonl"), window, window, stats):
            digest = state["snapshot"]
            totals["decisions"] += 1
            totals["in_windows"] += int(digest["attempts"])
            totals["late"] += int(digest.get("late_events") or 0)
            totals["late_in_no_window"] += int(digest.get("late_dropped") or 0)
            totals["ahead_of_clock"] += int(digest.get("ahead_of_clock") or 0)
    accepted = stats["report"].accepted
    totals["valid"] = accepted
    totals["unaccounted"] = accepted - totals["in_windows"] - totals["late_in_no_window"] - totals["ahead_of_clock"]
    totals["seconds"] = round(time.perf_counter() - started, 2)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument(
        "--lateness", type=float, default=None, help="PAYOPS_ALLOWED_LATENESS_SECONDS (default: the setting)"
    )
    args = parser.parse_args()
    for path in args.files:
        t = account(path, args.window, args.lateness)
        print(
            f"{os.path.basename(path)}: {t['valid']} valid events, {t['in_windows']} in windows, {t['late']} late "
            f"({t['late_in_no_window']} in no window), {t['ahead_of_clock']} ahead of the clock, "
            f"{t['unaccounted']} unaccounted; {t['decisions']} decisions in {t['seconds']} s"
        )


if __name__ == "__main__":
    main()
