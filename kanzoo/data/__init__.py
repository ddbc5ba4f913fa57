"""kanzoo.data: datasets for language modelling, image classification and segmentation.

``build_data(name, **kwargs)`` returns a :class:`DataModule`; ``list_datasets()`` lists the names.
This package imports no model code.
"""

from . import image as _image  # noqa: F401  (registers "image_folder", "hf_image", "digits")
from . import shapes as _shapes  # noqa: F401  (registers "shapes")
from . import text as _text  # noqa: F401  (registers "text", "shakespeare", "pydoc")
from .base import DataModule, build_data, list_datasets, register_dataset
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
    "HFTokenizer",
    "PackedBlocks",
    "build_data",
    "build_tokenizer",
    "list_datasets",
    "load_text_documents",
    "load_tokenizer",
    "register_dataset",
]
