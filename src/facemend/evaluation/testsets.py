"""The three test sets of §5 (BFR with eq. 13, SR x8, SR x16), built once and cached as PNG.

Layout of a cache folder: `hq/NAME.png` (ground truth, Pillow Lanczos to the eval resolution),
`bfr/NAME.png` (eq. 13 with `np.random.default_rng([seed, index])`, index = position of the source
in the sorted folder listing, so `--limit` never changes an image's degradation),
`sr8/NAME.png` + `sr8_small/NAME.png` (bicubic down by 8 then back up; the small input),
`sr16/...` likewise, and `manifest.json`: the build key (resolution, seed, tasks, degradation
ranges, source files and their sha256) plus every written file with its sha256 and, for BFR, the
sampled degradation parameters. A cache is reused only when the key matches and every file's
hash checks; otherwise it is rebuilt.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facemend.config import DegradationConfig, to_dict
from facemend.io import atomic_write_bytes, list_images, load_rgb, save_rgb

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SR_FACTORS: dict[str, int] = {"sr8": 8, "sr16": 16}
KNOWN_TASKS = ("bfr", "sr8", "sr16")


class TestSetError(ValueError):
    """A data folder or label file that cannot make a test set; str() is one line."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class TestSet:
    """A built test set: names (N,), optional identities (N,), files under `root`."""

    __test__ = False  # not a pytest test class

    root: Path
    names: list[str]
    tasks: tuple[str, ...]
    resolution: int
    identities: list[str] | None = None

    def path(self, kind: str, i: int) -> Path:
        """File of image i; kind is 'hq', a task, or '<sr task>_small'."""
        return self.root / kind / self.names[i]

    def load(self, kind: str, idx: list[int]) -> list[np.ndarray]:
        """(H, W, 3) uint8 images of `kind` for indices idx."""
        return [load_rgb(self.path(kind, i)) for i in idx]

    def input_kinds(self, task: str) -> tuple[str, str]:
        """(full-size input kind, small input kind) of a task; BFR has no small input."""
        return (task, f"{task}_small") if task in SR_FACTORS else (task, task)


def cache_name(rel: Path) -> str:
    """Cache file name of a source path relative to the data folder (flattened, .png)."""
    return "__".join(rel.with_suffix("").parts) + ".png"


def resize_lanczos(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) with Pillow LANCZOS (the paper's §5.1 resize)."""
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.LANCZOS))


def _build_key(
    sources: list[Path], data: Path, resolution: int, seed: int, tasks: tuple[str, ...],
    deg: DegradationConfig,
) -> dict:
    return {
        "version": MANIFEST_VERSION,
        "resolution": resolution,
        "seed": seed,
        "tasks": list(tasks),
        "degradation": to_dict(deg),
        "sources": [[p.relative_to(data).as_posix(), sha256_file(p)] for p in sources],
    }


def _cache_valid(root: Path, key: dict) -> bool:
    """True when root/manifest.json has this key and every listed file hashes as recorded."""
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("key") != key:
        return False
    for rel, entry in manifest.get("files", {}).items():
        p = root / rel
        if not p.is_file() or sha256_file(p) != entry["sha256"]:
            return False
    return True


def build_testset(
    data: str | Path,
    cache: str | Path,
    resolution: int = 512,
    tasks: tuple[str, ...] = KNOWN_TASKS,
    seed: int = 0,
    limit: int | None = None,
    deg: DegradationConfig = DegradationConfig(),
    progress: bool = False,
) -> TestSet:
    """Build (or reuse) the cached test sets from a folder of aligned HQ faces (§5, eq. 13)."""
    from facemend.degradations import degrade, sr_downsample, sr_input

    data, root = Path(data), Path(cache)
    unknown = [t for t in tasks if t not in KNOWN_TASKS]
    if unknown:
        raise TestSetError(f"unknown task {unknown[0]!r}; tasks are {', '.join(KNOWN_TASKS)}")
    if not data.is_dir():
        raise TestSetError(f"{data}: data folder not found")
    sources = list_images(data)[: limit if limit else None]
    if len(sources) < 2:
        raise TestSetError(f"{data}: need at least 2 images, found {len(sources)}")
    names = [cache_name(p.relative_to(data)) for p in sources]
    if len(set(names)) != len(names):
        raise TestSetError(f"{data}: two images map to the same cache name (same stem)")
    key = _build_key(sources, data, resolution, seed, tasks, deg)
    ts = TestSet(root, names, tuple(tasks), resolution)
    if _cache_valid(root, key):
        return ts
    files: dict[str, dict] = {}

    def put(kind: str, name: str, img: np.ndarray, params: dict | None = None) -> None:
        save_rgb(root / kind / name, img)
        entry: dict = {"sha256": sha256_file(root / kind / name)}
        if params is not None:
            entry["params"] = params
        files[f"{kind}/{name}"] = entry

    from tqdm import tqdm

    bar = tqdm(sources, desc="test sets", unit="img", disable=not progress)
    for i, (src, name) in enumerate(zip(bar, names, strict=True)):
        hq = resize_lanczos(load_rgb(src), resolution)  # (R, R, 3)
        put("hq", name, hq)
        for task in tasks:
            if task == "bfr":
                x, params = degrade(hq, np.random.default_rng([seed, i]), deg)
                put("bfr", name, x, params.as_dict())
            else:
                put(task, name, sr_input(hq, SR_FACTORS[task]))
                put(f"{task}_small", name, sr_downsample(hq, SR_FACTORS[task]))
    manifest = {"key": key, "files": files, "images": names}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    atomic_write_bytes(root / MANIFEST, text.encode("utf-8"))
    return ts


def load_identities(csv_path: str | Path, data: str | Path, ts: TestSet) -> list[str]:
    """Identity of each test image from a `file,identity` CSV (extra columns ignored)."""
    p = Path(csv_path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise TestSetError(f"{p}: identity CSV not found") from None
    if not rows or "file" not in rows[0] or "identity" not in rows[0]:
        raise TestSetError(f"{p}: expected a header with columns 'file' and 'identity'")
    by_name: dict[str, str] = {}
    for r in rows:
        by_name[cache_name(Path(r["file"]))] = str(r["identity"]).strip()
        by_name.setdefault(cache_name(Path(Path(r["file"]).name)), str(r["identity"]).strip())
    missing = [n for n in ts.names if n not in by_name]
    if missing:
        raise TestSetError(
            f"{p}: {len(missing)} test images have no identity (first: {missing[0]})"
        )
    return [by_name[n] for n in ts.names]
