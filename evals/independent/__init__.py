"""A second, independent incident generator: the project's held-out set (issue 14).

Its own world model (world.py), traffic and faults (traffic.py) and labelled shapes
(shapes.py), written apart from the project's simulator; `generate` makes one stream,
`score` replays held-out seeds through the real graph and reports.
"""

from .generate import HELD_OUT_SEED_BASE, GeneratorError, Stream, generate, held_out_plan, write_stream
from .shapes import SHAPES

__all__ = ["HELD_OUT_SEED_BASE", "SHAPES", "GeneratorError", "Stream", "generate", "held_out_plan", "write_stream"]
