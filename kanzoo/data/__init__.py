"""kanzoo.data: datasets for language modelling, image classification and segmentation.

``build_data(name, **kwargs)`` returns a :class:`DataModule`; ``list_datasets()`` lists the names.
Embedded defaults (offline): ``shakespeare``, ``pydoc`` (lm), ``digits`` (classification),
``shapes``, ``nuclei`` (segmentation). Builders for your data: ``text``, ``image_folder``,
``hf_image``, ``segmentation_folder``, ``hf_segmentation``. This package imports no model code.

Names are imported on first use (PEP 562). The first use of ``build_data`` or ``list_datasets``
imports every module listed in ``BUILDER_MODULES``, which registers its datasets.
"""

from kanzoo._lazy import lazy_package as _lazy_package

# Modules whose import registers datasets, one line each. Add a builder module here.
BUILDER_MODULES = (
    "kanzoo.data.hf_segmentation",
    "kanzoo.data.image",
    "kanzoo.data.nuclei",
    "kanzoo.data.science",  # feynman, poisson, heat
    "kanzoo.data.shapes",
    "kanzoo.data.text",
    "kanzoo.data.timeseries",  # elnino, sunspots, co2, nile, macrodata, timeseries files
    "kanzoo.data.benchmarks",  # busi, glas, ... (U-KAN layout): `train.py data=busi` works too
)


def _register_builders() -> None:
    from kanzoo._lazy import import_module

    for name in BUILDER_MODULES:
        import_module(name)


# Public name -> module that defines it. One line per name.
_EXPORTS = {
    "DataModule": ".base",
    "build_data": ".base",
    "list_datasets": ".base",
    "register_dataset": ".base",
    "HFSegmentation": ".hf_segmentation",
    "to_label_map": ".masks",
    "SegmentationFolder": ".segmentation",
    "find_pairs": ".segmentation",
    "load_or_create_split": ".segmentation",
    "ShapesDataset": ".shapes",
    "render_shapes": ".shapes",
    "PackedBlocks": ".text",
    "load_text_documents": ".text",
    "BPETokenizer": ".tokenizers",
    "ByteTokenizer": ".tokenizers",
    "CharTokenizer": ".tokenizers",
    "HFTokenizer": ".tokenizers",
    "build_tokenizer": ".tokenizers",
    "load_tokenizer": ".tokenizers",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy_package(
    __name__, _EXPORTS, before={"build_data": _register_builders, "list_datasets": _register_builders}
)
