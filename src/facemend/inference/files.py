"""Which files a command works on, and collision-free output names that never hit an input."""

from __future__ import annotations

import glob
import re
from collections import Counter
from pathlib import Path

from facemend.inference.video import VIDEO_EXTENSIONS
from facemend.io import IMAGE_EXTENSIONS, list_images

OUTPUT_SUBDIRS = ("cropped_faces", "restored_faces", "cmp", "restored_imgs", "restored_videos")


def list_inputs(folder: Path, recursive: bool) -> list[Path]:
    """The photos and clips in a folder, sorted by path."""
    it = folder.rglob("*") if recursive else folder.glob("*")
    clips = [p for p in it if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
    return sorted(list_images(folder, recursive=recursive) + clips)


def expand_inputs(
    inputs: list[str], recursive: bool = False, skip_outputs_of: Path | None = None
) -> tuple[list[Path], list[str]]:
    """Files, folders and globs -> (image files in a stable order, inputs that matched nothing).

    Explicit files are kept whatever their extension (so a bad one is reported, not ignored);
    folders and globs contribute image files only; a folder never contributes files from the
    output subfolders of `skip_outputs_of` below it (so that `--recursive -o` = the input folder
    does not restore its own results), unless that subfolder is named itself. Duplicates are
    dropped.
    """
    skip = ([(skip_outputs_of / s).resolve() for s in OUTPUT_SUBDIRS]
            if skip_outputs_of is not None else [])
    files: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            below = [d for d in skip if p.resolve() in d.parents]  # output dirs inside p
            found = [f for f in list_inputs(p, recursive)
                     if not any(d in f.resolve().parents for d in below)]
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(m) for m in glob.glob(item, recursive=recursive)
                           if Path(m).is_file()
                           and Path(m).suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
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


def empty_folders(
    inputs: list[str], recursive: bool = False, skip_outputs_of: Path | None = None
) -> dict[str, str]:
    """{folder: why} for each folder among `inputs` that contributes no image file.

    The reason says how many images its sub-folders hold (and to add --recursive) when that is
    why, or that the folder holds no image at all.
    """
    out: dict[str, str] = {}
    for item in inputs:
        p = Path(item)
        if not p.is_dir() or expand_inputs([item], recursive, skip_outputs_of)[0]:
            continue
        below = [] if recursive else expand_inputs([item], True, skip_outputs_of)[0]
        if below:
            out[item] = (f"no image directly in this folder; its sub-folders hold {len(below)} "
                         "(add --recursive)")
        else:
            out[item] = "no image file in this folder" + (" or below" if recursive else "")
    return out


def output_names(files: list[Path], out: Path) -> dict[Path, str]:
    """A unique output stem per input: the file stem, or stem_ext when two inputs share a stem,
    with `_restored` added where an output would land on an input file."""
    stems = Counter(f.stem for f in files)
    taken: set[str] = set()
    subdirs = {(out / sub).resolve() for sub in OUTPUT_SUBDIRS}
    inside = [f.resolve() for f in files if f.resolve().parent in subdirs]  # usually none
    names: dict[Path, str] = {}
    for f in files:
        stem = f.stem if stems[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}"
        while stem in taken or _hits_input(stem, inside):
            stem = f"{stem}_restored"
        taken.add(stem)
        names[f] = stem
    return names


def _hits_input(stem: str, inside: list[Path]) -> bool:
    """Whether a name this stem may produce (stem[_NN][_sK].ext) is one of the inputs found in
    the output subfolders."""
    pattern = re.compile(re.escape(stem) + r"(_\d{2,})?(_s\d+)?\.[A-Za-z0-9]+")
    return any(pattern.fullmatch(f.name) for f in inside)


def check_not_input(path: Path, protected: set[Path]) -> None:
    """Refuse (OSError) to write `path` when it is a (resolved) input: the last line of defence."""
    if Path(path).resolve() in protected:
        raise OSError(f"{path}: refusing to overwrite an input file")


def protected_path(path: Path, inputs: list[Path]) -> Path:
    """`path`, or path with `_restored` added to its stem while that would hit an input."""
    taken = {f.resolve() for f in inputs}
    while path.resolve() in taken:
        path = path.with_name(f"{path.stem}_restored{path.suffix}")
    return path
