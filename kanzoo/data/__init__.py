"""kanzoo.data: datasets for language modelling, image classification and segmentation.

``build_data(name, **kwargs)`` returns a :class:`DataModule`; ``list_datasets()`` lists the names.
Embedded defaults (offline): ``shakespeare``, ``pydoc`` (lm), ``digits`` (classification),
``shapes``, ``nuclei`` (segmentation). Builders for your data: ``text``, ``image_folder``,
``hf_image``, ``segmentation_folder``, ``hf_segmentation``. This package imports no model code.
"""

# Importing the builder modules registers their datasets.
from . import hf_segmentation as _hf_segmentation  # noqa: F401
from . import image as _image  # noqa: F401
from . import nuclei as _nuclei  # noqa: F401
from . import science as _science  # noqa: F401  (feynman, poisson, heat)
from . import text as _text  # noqa: F401
from . import timeseries as _timeseries  # noqa: F401  (elnino, sunspots, co2, nile, macrodata, files)
from .base import DataModule, build_data, list_datasets, register_dataset
from .hf_segmentation import HFSegmentation
from .masks import to_label_map
from .segmentation import SegmentationFolder, find_pairs, load_or_create_split
from .shapes import ShapesDataset, render_shapes
from .text import PackedBlocks, load_text_documents
from .tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    HFTokenizer,
    build_tokenizer,
    load_tokenizer,
)

__all__ = [
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "DataModule",
    "HFSegmentation",
    "HFTokenizer",
    "PackedBlocks",
    "SegmentationFolder",
    "ShapesDataset",
    "build_data",
    "build_tokenizer",
    "find_pairs",
    "list_datasets",
    "load_or_create_split",
    "load_text_documents",
    "load_tokenizer",
    "register_dataset",
    "render_shapes",
    "to_label_map",
]
