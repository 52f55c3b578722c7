"""One held-out stream: a world, a shape, its events (CONTRACT §1 lines) and its case labels.

    stream = generate("route_outage", seed=5_000_101, ppm=850.0)
    stream.case            # evals.cases.Case: onset, end, expected (category, actions, forbidden)
    stream.lines           # JSON lines in collector order (a few seconds out of order)
    write_stream(stream, root)   # root/<id>/case.yaml + events.jsonl.gz, like the corpus

Deterministic: the same (shape, seed, ppm) gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from payops.errors import BadInput
from payops.evals.cases import Case, write_case

from .shapes import INCIDENT_SECONDS, SHAPES, Fault
from .traffic import simulate, to_lines
from .world import World, build_world

# Event time of the first second (2026-11-18): unrelated to the project simulator's start.
START_TS = 1_795_000_000.0
LEAD_IN = 300.0  # five healthy windows before anything happens: references settle
ONSET_JITTER = 59.0  # the onset falls anywhere inside a window, never on a tick boundary by design
TAIL = 180.0  # after the incident: recovery (and a check that nothing is done while healthy)
# The held-out range: seeds never used while developing anything (the simulator's sets are < 1,000,000).
HELD_OUT_SEED_BASE = 5_000_000
MIN_PPM, MAX_PPM = 30.0, 7_000.0


class GeneratorError(BadInput, ValueError):
    """An unknown shape or unusable generator arguments."""


@dataclass
class Stream:
    shape: str
    seed: int
    ppm: float
    world: World
    case: Case
    fault: Fault  # in epoch seconds
    lines: list[bytes]
    description: str


def generate(shape: str, seed: int, ppm: float) -> Stream:
    if shape not in SHAPES:
        raise GeneratorError(f"unknown shape '{shape}' (known: {', '.join(SHAPES)})")
    if not MIN_PPM <= ppm <= MAX_PPM:
        raise GeneratorError(f"volume must be {MIN_PPM:g}..{MAX_PPM:g} payments/min")
    spec = SHAPES[shape]
    world = build_world(seed, ppm, **spec.world)
    rng = np.random.default_rng([seed, 1])
    onset = LEAD_IN + float(rng.uniform(0.0, ONSET_JITTER))
    built = spec.build(world, rng, onset)
    # Whole minutes: the last window is as full as any other (a short last minute would read as a volume drop).
    duration = math.ceil((onset + INCIDENT_SECONDS + TAIL) / 60.0) * 60.0
    attempts = simulate(world, built.plan, duration, rng)
    lines = list(to_lines(attempts, built.plan, START_TS, duration, rng))
    fault = Fault(built.fault.kind, built.fault.where, START_TS + built.fault.start, START_TS + built.fault.end)
    control = spec.control
    case = Case(
        id=f"{shape}-{seed}", description=built.description, origin="generated",
        tags=("independent", shape), difficulty="medium", palm=shape == "palm_spoof", control=control,
        onset=None if control else fault.start, end=None if control else fault.end, expected=built.expected,
    )
    return Stream(shape, seed, ppm, world, case, fault, lines, built.description)


def held_out_plan(seeds_per_shape: int = 2, seed_base: int = HELD_OUT_SEED_BASE,
                  shapes: list[str] | None = None) -> list[tuple[str, int, float]]:
    """(shape, seed, ppm) for every shape: seed i of a shape draws its volume log-uniformly from the i-th
    slice of 30..7,000/min, so two seeds cover a low and a high volume."""
    names = shapes or list(SHAPES)
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise GeneratorError(f"unknown shape(s) {', '.join(unknown)} (known: {', '.join(SHAPES)})")
    if seeds_per_shape < 1:
        raise GeneratorError("need at least one seed per shape")
    out = []
    lo_all, hi_all = math.log(MIN_PPM), math.log(MAX_PPM)
    for name in names:
        index = list(SHAPES).index(name)
        for v in range(seeds_per_shape):
            seed = seed_base + 100 * index + v
            rng = np.random.default_rng([seed, 0])
            lo = lo_all + (hi_all - lo_all) * v / seeds_per_shape
            hi = lo_all + (hi_all - lo_all) * (v + 1) / seeds_per_shape
            out.append((name, seed, round(math.exp(float(rng.uniform(lo, hi))), 1)))
    return out


def write_stream(stream: Stream, root: Path) -> Path:
    return write_case(stream.case, stream.lines, root, overwrite=True)
