"""The segmentation benchmarks moved to :mod:`kanzoo.data.benchmarks` (dataset builders live in data/)."""

from kanzoo.data.benchmarks import *  # noqa: F401,F403
from kanzoo.data.benchmarks import __all__  # noqa: F401
