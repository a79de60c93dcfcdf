"""A blind user study (paper §5.4, Table 2) kept in one self-contained SQLite file.

`create_study` reads run folders of `facemend evaluate --save-outputs` (RUN/results.json names
the method, RUN/outputs/TASK/NAME.png are its restorations, RUN/testset/TASK/NAME.png or the
cache named in results.json the degraded inputs) and builds trials from inputs that every run
restored:
- mode "choice" (default, as Table 2 whose preferences sum to 100%): one trial per input shows
  every method's result; the rater picks the best;
- mode "pairwise": one trial per input and pair of methods; the rater picks the better one.
Which inputs (and pairs) become trials, the trial order and each trial's option order are drawn
from `random.Random(seed)`; each rater then sees the trials in an order of their own (seeded by
study seed + rater id, so it is the same after a restart: a rater resumes where they stopped).
Image bytes are copied into the file (deduplicated by sha256), so a study can be moved to another
machine and the server never opens paths derived from a request. Method names never reach the
page: options are served by (trial, position).

Raters: only the raters the study file lists can vote. `create_study(raters=...)` (and later
`add_raters`) gives each one a name and an unguessable token (`secrets.token_urlsafe`, 128 bits);
the rater's personal link carries the token, and the server knows the rater only by it
(`rater_for_token`), never by a name a client sends. Votes: (rater, trial, position, method, UTC
time), one per rater and trial: a second vote is rejected (`DuplicateVoteError`), the first answer
counts, as a rater cannot change a blind answer after seeing the next trial.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import itertools
import json
import os
import random
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

SCHEMA_VERSION = 2
MODES = ("choice", "pairwise")
RATER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")  # used with fullmatch
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22,64}\Z")  # secrets.token_urlsafe(16) is 22 chars
MAX_TRIAL = 2**31 - 1  # trial ids are 1..number of trials; larger ones are refused up front
MAX_RATERS = 10_000

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE methods(id INTEGER PRIMARY KEY, label TEXT UNIQUE NOT NULL, run_dir TEXT NOT NULL,
                     results TEXT NOT NULL);
CREATE TABLE images(id INTEGER PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL, data BLOB NOT NULL);
CREATE TABLE trials(id INTEGER PRIMARY KEY, task TEXT NOT NULL, name TEXT NOT NULL,
                    reference INTEGER REFERENCES images(id));
CREATE TABLE options(trial INTEGER NOT NULL REFERENCES trials(id), position INTEGER NOT NULL,
                     method INTEGER NOT NULL REFERENCES methods(id),
                     image INTEGER NOT NULL REFERENCES images(id), PRIMARY KEY(trial, position));
CREATE TABLE votes(rater TEXT NOT NULL, trial INTEGER NOT NULL REFERENCES trials(id),
                   position INTEGER NOT NULL, method INTEGER NOT NULL REFERENCES methods(id),
                   time TEXT NOT NULL, PRIMARY KEY(rater, trial));
CREATE TABLE raters(name TEXT PRIMARY KEY, token TEXT UNIQUE NOT NULL, created TEXT NOT NULL);
"""


class StudyError(ValueError):
    """A run folder, study file, rater id or vote that cannot be used; str() is one line."""


class DuplicateVoteError(StudyError):
    """The rater already voted on this trial (the first vote counts)."""


class UnknownRaterError(StudyError):
    """A token or rater name that the study file does not list."""


@dataclass(frozen=True)
class RunOutputs:
    """One evaluate run: its label, folder, results.json and the images per task."""

    label: str
    root: Path
    results: dict[str, Any]
    outputs: dict[str, dict[str, Path]]  # task -> name -> restored image
    testset: Path | None  # folder with TASK/NAME.png degraded inputs, if found


def read_run(run_dir: str | Path, label: str | None = None) -> RunOutputs:
    """Read a `facemend evaluate --save-outputs` folder."""
    root = Path(run_dir)
    try:
        results = json.loads((root / "results.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"{root}: no results.json (not a `facemend evaluate` run)") from None
    except (OSError, ValueError) as e:
        raise StudyError(f"{root}/results.json: unreadable ({e})") from None
    info = results.get("outputs") or {}
    out_dir = root / str(info.get("dir", "outputs"))
    if not out_dir.is_dir():
        raise StudyError(f"{root}: no outputs/ folder; rerun `facemend evaluate` with "
                         "--save-outputs")
    outputs = {t.name: {p.name: p for p in sorted(t.glob("*.png"))}
               for t in sorted(out_dir.iterdir()) if t.is_dir()}
    testset = None
    for cand in (info.get("testset"), root / "testset"):
        if cand is not None:
            c = Path(cand)
            c = c if c.is_absolute() or c.is_dir() else root / c
            if c.is_dir():
                testset = c
                break
    name = label or str(results.get("method") or root.name)
    return RunOutputs(name, root, results, outputs, testset)


def _image_bytes(path: Path) -> bytes:
    """The file's bytes after checking that Pillow can decode it."""
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (OSError, ValueError, SyntaxError) as e:
        raise StudyError(f"{path}: not a readable image ({e})") from None
    return data


def _put_image(conn: sqlite3.Connection, path: Path) -> int:
    """Insert an image once (by sha256); returns its id."""
    data = _image_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    row = conn.execute("SELECT id FROM images WHERE sha256 = ?", (digest,)).fetchone()
    if row:
        return int(row[0])
    cur = conn.execute("INSERT INTO images(sha256, data) VALUES (?, ?)", (digest, data))
    return int(cur.lastrowid or 0)


def _labels(runs: list[RunOutputs]) -> list[str]:
    """Unique labels: the method name, with the run folder's name added where names repeat."""
    names = [r.label for r in runs]
    out = [n if names.count(n) == 1 else f"{n} ({r.root.name})" for n, r in zip(names, runs)]
    if len(set(out)) != len(out):
        raise StudyError("two runs have the same method and folder name; pass --labels")
    return out


def create_study(
    run_dirs: list[str | Path],
    out: str | Path,
    *,
    trials: int | None = None,
    seed: int = 0,
    mode: str = "choice",
    tasks: list[str] | None = None,
    labels: list[str] | None = None,
    reference: bool = True,
    force: bool = False,
    raters: int | list[str] = 10,
) -> dict[str, Any]:
    """Build the study file from >= 2 runs (see the module docstring); returns a summary whose
    "raters" is [(name, token)] of the raters issued (a count names them rater01, ...)."""
    if mode not in MODES:
        raise StudyError(f"unknown mode {mode!r}; modes are {', '.join(MODES)}")
    if len(run_dirs) < 2:
        raise StudyError("a study needs at least 2 runs (methods)")
    if labels is not None and len(labels) != len(run_dirs):
        raise StudyError(f"{len(labels)} labels for {len(run_dirs)} runs")
    runs = [read_run(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    names = _labels(runs)
    common = sorted(set.intersection(*(set(r.outputs) for r in runs)))
    chosen_tasks = tasks or common
    missing = [t for t in chosen_tasks if t not in common]
    if missing:
        raise StudyError(f"task {missing[0]!r} is not in every run (common tasks: {common})")
    items = [(t, n) for t in chosen_tasks
             for n in sorted(set.intersection(*(set(r.outputs[t]) for r in runs)))]
    if not items:
        raise StudyError("the runs have no restored image in common (same task and file name)")
    groups = ([tuple(range(len(runs)))] if mode == "choice"
              else list(itertools.combinations(range(len(runs)), 2)))
    candidates = [(t, n, g) for t, n in items for g in groups]
    rng = random.Random(seed)
    n_trials = len(candidates) if trials is None else trials
    if not 1 <= n_trials <= len(candidates):
        raise StudyError(f"--trials {trials}: between 1 and {len(candidates)} possible here")
    picked = rng.sample(candidates, n_trials)  # random subset in random order
    rater_names = _rater_names(raters, [])
    out = Path(out)
    if out.exists() and not force:
        raise StudyError(f"{out}: already exists (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.executescript(SCHEMA)
        meta = {"schema_version": SCHEMA_VERSION, "mode": mode, "seed": seed,
                "tasks": chosen_tasks, "reference": reference,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        conn.executemany("INSERT INTO meta VALUES (?, ?)",
                         [(k, json.dumps(v)) for k, v in meta.items()])
        for i, (r, label) in enumerate(zip(runs, names, strict=True)):
            conn.execute("INSERT INTO methods VALUES (?, ?, ?, ?)",
                         (i, label, str(r.root.resolve()), json.dumps(r.results)))
        no_ref = 0
        for tid, (task, name, group) in enumerate(picked, start=1):
            ref_path = next((r.testset / task / name for r in runs if r.testset is not None
                             and (r.testset / task / name).is_file()), None)
            no_ref += ref_path is None
            ref = _put_image(conn, ref_path) if reference and ref_path is not None else None
            conn.execute("INSERT INTO trials VALUES (?, ?, ?, ?)", (tid, task, name, ref))
            order = list(group)
            rng.shuffle(order)  # option order hidden and random per trial
            for pos, m in enumerate(order):
                conn.execute("INSERT INTO options VALUES (?, ?, ?, ?)",
                             (tid, pos, m, _put_image(conn, runs[m].outputs[task][name])))
        issued = _insert_raters(conn, rater_names)
        conn.commit()
    finally:
        conn.close()
    os.replace(tmp, out)
    return {"file": str(out), "mode": mode, "trials": n_trials, "methods": names,
            "tasks": chosen_tasks, "possible": len(candidates),
            "without_reference": no_ref if reference else n_trials, "raters": issued}


def _rater_names(raters: int | list[str], existing: list[str]) -> list[str]:
    """New rater names: `raters` as given (checked), or that many numbered names."""
    if isinstance(raters, int):
        if not 0 <= raters + len(existing) <= MAX_RATERS:
            raise StudyError(f"--raters {raters}: a study holds 0 to {MAX_RATERS} raters")
        names, k = [], len(existing)
        while len(names) < raters:
            k += 1
            name = f"rater{k:02d}"
            if name not in existing:
                names.append(name)
        return names
    for n in raters:
        check_rater(n)
    dup = sorted({n for n in raters if raters.count(n) > 1 or n in existing})
    if dup:
        raise StudyError(f"rater {dup[0]} is listed twice")
    if len(raters) + len(existing) > MAX_RATERS:
        raise StudyError(f"a study holds at most {MAX_RATERS} raters")
    return list(raters)


def _insert_raters(conn: sqlite3.Connection, names: list[str]) -> list[tuple[str, str]]:
    """A fresh token for each name; returns [(name, token)]."""
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    issued = [(n, secrets.token_urlsafe(16)) for n in names]
    conn.executemany("INSERT INTO raters VALUES (?, ?, ?)", [(n, t, now) for n, t in issued])
    return issued


def add_raters(path: str | Path, raters: int | list[str]) -> list[tuple[str, str]]:
    """Add raters (a count or names) to an existing study; returns [(name, token)]."""
    conn = connect(path)
    try:
        existing = [str(r[0]) for r in conn.execute("SELECT name FROM raters")]
        with conn:
            return _insert_raters(conn, _rater_names(raters, existing))
    finally:
        conn.close()


def list_raters(path: str | Path) -> list[dict[str, Any]]:
    """Every rater: name, token, votes so far."""
    conn = connect(path)
    try:
        rows = conn.execute("SELECT r.name, r.token, COUNT(v.trial) FROM raters r LEFT JOIN "
                            "votes v ON v.rater = r.name GROUP BY r.name ORDER BY r.created, "
                            "r.name").fetchall()
        return [{"name": n, "token": t, "votes": int(c)} for n, t, c in rows]
    finally:
        conn.close()


def rater_for_token(path: str | Path, token: str) -> str:
    """The rater a token was issued to; UnknownRaterError for any other string."""
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise UnknownRaterError("not a valid study link: open the personal link you were given")
    conn = connect(path)
    try:
        rows = conn.execute("SELECT name, token FROM raters").fetchall()
    finally:
        conn.close()
    name = None
    for n, t in rows:  # compare every token in constant time (no early exit on a prefix)
        if secrets.compare_digest(str(t), token):
            name = str(n)
    if name is None:
        raise UnknownRaterError("this study link is not (or no longer) valid; ask the study's "
                                "organiser for yours")
    return name


def connect(path: str | Path) -> sqlite3.Connection:
    """Open an existing study file (checks the schema version)."""
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"{p}: study file not found (make one with `facemend study create`)")
    conn = sqlite3.connect(f"file:{p}?mode=rw", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StudyError(f"{p}: not a facemend study file ({e})") from None
    if row is None or json.loads(row[0]) != SCHEMA_VERSION:
        conn.close()
        old = row is not None and json.loads(row[0]) == 1
        raise StudyError(f"{p}: made by an older facemend without per-rater links; recreate it "
                         "with `facemend study create`" if old else
                         f"{p}: unsupported study schema {row and row[0]}")
    return conn


def meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """The study's settings (mode, seed, tasks, ...)."""
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def check_rater(rater: str) -> str:
    """A rater name: 1-64 letters, digits, '_', '.', '@', '-' (no spaces, no newline)."""
    if not isinstance(rater, str) or not RATER_RE.fullmatch(rater):
        raise StudyError("rater id: use 1-64 letters, digits, '_', '.', '@' or '-'")
    return rater


def _known_rater(conn: sqlite3.Connection, rater: str) -> str:
    """`rater` if the study lists it, else UnknownRaterError."""
    check_rater(rater)
    if conn.execute("SELECT 1 FROM raters WHERE name = ?", (rater,)).fetchone() is None:
        raise UnknownRaterError(f"rater {rater} is not in this study")
    return rater


def _check_trial(trial: int) -> int:
    if isinstance(trial, bool) or not isinstance(trial, int) or not 1 <= trial <= MAX_TRIAL:
        raise StudyError(f"no such trial {str(trial)[:20]}")
    return trial


def rater_order(conn: sqlite3.Connection, rater: str) -> list[int]:
    """Every trial id in this rater's own order (deterministic: same after a restart)."""
    ids = [int(r[0]) for r in conn.execute("SELECT id FROM trials ORDER BY id")]
    random.Random(f"{meta(conn)['seed']}/{check_rater(rater)}").shuffle(ids)
    return ids


def next_trial(path: str | Path, rater: str) -> dict[str, Any]:
    """The rater's next unvoted trial (or done) and progress: {done, total, trial, options}."""
    conn = connect(path)
    try:
        order = rater_order(conn, _known_rater(conn, rater))
        voted = {int(r[0]) for r in conn.execute("SELECT trial FROM votes WHERE rater = ?",
                                                 (rater,))}
        todo = [t for t in order if t not in voted]
        out: dict[str, Any] = {"rater": rater, "done": len(voted), "total": len(order),
                               "trial": None, "options": 0, "reference": False}
        if todo:
            tid = todo[0]
            ref = conn.execute("SELECT reference FROM trials WHERE id = ?", (tid,)).fetchone()[0]
            n = conn.execute("SELECT COUNT(*) FROM options WHERE trial = ?", (tid,)).fetchone()[0]
            out.update(trial=tid, options=int(n), reference=ref is not None)
        return out
    finally:
        conn.close()


def record_vote(
    path: str | Path, rater: str, trial: int, position: int, now: str | None = None
) -> dict[str, Any]:
    """Store one vote; raises DuplicateVoteError for a second vote on the same trial."""
    check_rater(rater)
    _check_trial(trial)
    conn = connect(path)
    try:
        _known_rater(conn, rater)
        if isinstance(position, bool) or not isinstance(position, int) or \
                not 0 <= position <= 63:
            raise StudyError(f"trial {trial} has no option {str(position)[:20]}")
        row = conn.execute("SELECT method FROM options WHERE trial = ? AND position = ?",
                           (trial, position)).fetchone()
        if row is None:
            raise StudyError(f"trial {trial} has no option {position}")
        when = now or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        try:
            with conn:
                conn.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?)",
                             (rater, trial, position, int(row[0]), when))
        except sqlite3.IntegrityError:
            raise DuplicateVoteError(f"rater {rater} already voted on trial {trial}") from None
        return {"rater": rater, "trial": trial, "position": position, "time": when}
    finally:
        conn.close()


def trial_image(path: str | Path, trial: int, position: int | None) -> bytes:
    """Bytes of option `position` of a trial, or of its reference input when position is None."""
    _check_trial(trial)
    conn = connect(path)
    try:
        if position is None:
            sql = ("SELECT data FROM images JOIN trials ON trials.reference = images.id "
                   "WHERE trials.id = ?")
            row = conn.execute(sql, (trial,)).fetchone()
        else:
            sql = ("SELECT data FROM images JOIN options ON options.image = images.id "
                   "WHERE options.trial = ? AND options.position = ?")
            row = conn.execute(sql, (trial, position)).fetchone()
        if row is None:
            raise StudyError(f"trial {trial}: no such image")
        return bytes(row[0])
    finally:
        conn.close()
