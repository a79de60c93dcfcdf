"""Which files a command works on, and collision-free output names that never hit an input."""

from __future__ import annotations

import glob
from collections import Counter
from pathlib import Path

from facemend.io import IMAGE_EXTENSIONS, list_images

OUTPUT_SUBDIRS = ("cropped_faces", "restored_faces", "cmp", "restored_imgs")


def expand_inputs(inputs: list[str], recursive: bool = False) -> tuple[list[Path], list[str]]:
    """Files, folders and globs -> (image files in a stable order, inputs that matched nothing).

    Explicit files are kept whatever their extension (so a bad one is reported, not ignored);
    folders and globs contribute image files only. Duplicates are dropped.
    """
    files: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p, recursive=recursive)
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(m) for m in glob.glob(item, recursive=recursive)
                           if Path(m).is_file() and Path(m).suffix.lower() in IMAGE_EXTENSIONS)
        if not found and not p.is_dir():
            missing.append(item)
        files.extend(found)
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, missing


def output_names(files: list[Path], out: Path) -> dict[Path, str]:
    """A unique output stem per input: the file stem, or stem_ext when two inputs share a stem,
    with `_restored` added where an output would land on an input file."""
    stems = Counter(f.stem for f in files)
    taken: set[str] = set()
    inputs = {f.resolve() for f in files}
    names: dict[Path, str] = {}
    for f in files:
        stem = f.stem if stems[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        while stem in taken or _hits_input(out, stem, inputs):
            stem = f"{stem}_restored"
        taken.add(stem)
        names[f] = stem
    return names


def _hits_input(out: Path, stem: str, inputs: set[Path]) -> bool:
    for sub in OUTPUT_SUBDIRS:
        for ext in ("png", "jpg"):
            if (out / sub / f"{stem}.{ext}").resolve() in inputs:
                return True
            if (out / sub / f"{stem}_00.{ext}").resolve() in inputs:
                return True
    return False
