"""Fetch an ecosystem project's source distribution (with its test suite) with pip, at test time.

kanzoo's ecosystem tests run timm's and transformers' OWN tests against kanzoo models. Their code
is never copied into this repository: :func:`sdist_root` downloads the sdist of the installed
version with ``pip download`` into a cache directory and unpacks it there.

Cache: ``$KANZOO_SDIST_CACHE`` (default ``~/.cache/kanzoo/sdists``); one download per version.
A failed download is an error (the suite must not pass silently without running); set
``KANZOO_SKIP_ECOSYSTEM=1`` to skip these tests explicitly on a machine without PyPI access.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

__all__ = ["sdist_root"]


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "kanzoo" / "sdists"
    return Path(os.environ.get("KANZOO_SDIST_CACHE", default)).expanduser()


def sdist_root(package: str, version: str | None = None, *, timeout: float = 600) -> Path:
    """Unpacked sdist of ``package`` (default: the installed version); returns its top directory.

    Raises:
        RuntimeError: pip could not download the sdist (no network, no such version).
    """
    if os.environ.get("KANZOO_SKIP_ECOSYSTEM", "").strip().lower() in ("1", "true", "yes"):
        pytest.skip("KANZOO_SKIP_ECOSYSTEM is set: ecosystem test suites are skipped explicitly")
    version = version or importlib.metadata.version(package)
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{package}-{version}"
    done = target / ".kanzoo-complete"
    with open(cache / f".{package}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one download when tests run in parallel processes
        if done.is_file():
            return Path(done.read_text().strip())
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                "--disable-pip-version-check", "-q", "-d", tmp, f"{package}=={version}",
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            archives = sorted(Path(tmp).glob("*.tar.gz"))
            if proc.returncode != 0 or not archives:
                raise RuntimeError(
                    f"could not fetch the {package}=={version} sdist with pip (needed for its test "
                    f"suite): {proc.stderr.strip()[-500:]}"
                )
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            with tarfile.open(archives[0]) as tar:
                tar.extractall(target, filter="data")
        tops = [p for p in target.iterdir() if p.is_dir()]
        if len(tops) != 1:
            raise RuntimeError(f"unexpected layout of the {package}=={version} sdist in {target}")
        done.write_text(str(tops[0]))
        return tops[0]
