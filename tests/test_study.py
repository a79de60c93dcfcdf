"""Blind user study: create from real `evaluate --save-outputs` runs, vote, resume, report."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facemend.cli import main
from facemend.config import EvalConfig
from facemend.evaluation import evaluate
from facemend.web.study import (
    DuplicateVoteError,
    StudyError,
    UnknownRaterError,
    create_study,
    next_trial,
    rater_for_token,
    record_vote,
    trial_image,
)
from facemend.web.study_report import (
    fleiss_kappa,
    percent_agreement,
    study_stats,
    wilson_interval,
    write_report,
)

N_IMAGES = 6
RATERS = ["alice", "bob", "carol", "dave", "erin"]


def _embed(images: list[np.ndarray]) -> np.ndarray:
    """A fake face embedder (the study needs evaluate's outputs, not its metrics)."""
    return np.stack([im.reshape(-1, 3).mean(0) for im in images]).astype(np.float64)  # (B, 3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Three real evaluate runs (identity, lanczos, oracle) on 6 random 32 px faces, bfr + sr8."""
    root = tmp_path_factory.mktemp("study_runs")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / f"f{i}.png")
    labels = root / "labels.csv"
    labels.write_text("file,identity\n" + "".join(f"f{i}.png,{i // 2}\n" for i in range(N_IMAGES)))
    cache = root / "cache"
    cfg = EvalConfig(resolution=32, tasks=("bfr", "sr8"))

    def oracle(task, inputs, smalls, names):
        return [np.asarray(Image.open(cache / "hq" / n)) for n in names]

    out = []
    for method in ("identity", "lanczos", oracle):
        run = root / (method if isinstance(method, str) else "oracle")
        evaluate(data, run, method, identities=labels, cfg=cfg, cache=cache, embedder=_embed,
                 embedder_name="fake", method_name=None if isinstance(method, str) else "oracle",
                 progress=False, save_outputs=True)
        out.append(run)
    return out


def _options(study: Path) -> dict[int, dict[int, str]]:
    """trial -> position -> method label (what the page never shows)."""
    with sqlite3.connect(study) as conn:
        rows = conn.execute("SELECT o.trial, o.position, m.label FROM options o "
                            "JOIN methods m ON m.id = o.method").fetchall()
    out: dict[int, dict[int, str]] = {}
    for t, p, label in rows:
        out.setdefault(t, {})[p] = label
    return out


def test_evaluate_saves_outputs_and_study_uses_them(runs, tmp_path):
    res = json.loads((runs[0] / "results.json").read_text())
    assert res["outputs"]["dir"] == "outputs"
    assert sorted(p.name for p in (runs[0] / "outputs" / "sr8").glob("*.png")) == \
        [f"f{i}.png" for i in range(N_IMAGES)]
    study = tmp_path / "s.sqlite"
    info = create_study(runs, study, seed=1, tasks=["sr8"])
    assert info["trials"] == N_IMAGES and info["methods"] == ["identity", "lanczos", "oracle"]
    assert info["without_reference"] == 0
    opts = _options(study)
    assert all(sorted(o.values()) == ["identity", "lanczos", "oracle"] for o in opts.values())
    assert len({tuple(o.values()) for o in opts.values()}) > 1  # order randomised per trial
    with sqlite3.connect(study) as conn:
        t, name = conn.execute("SELECT id, name FROM trials LIMIT 1").fetchone()
    label_pos = {v: k for k, v in opts[t].items()}
    assert trial_image(study, t, label_pos["oracle"]) == \
        (runs[2] / "outputs" / "sr8" / name).read_bytes()
    ref = json.loads((runs[0] / "results.json").read_text())["outputs"]["testset"]
    assert trial_image(study, t, None) == (Path(ref) / "sr8" / name).read_bytes()
    # same seed, same study; a file is never overwritten silently
    create_study(runs, tmp_path / "again.sqlite", seed=1, tasks=["sr8"])
    assert _options(tmp_path / "again.sqlite") == opts
    with pytest.raises(StudyError, match="already exists"):
        create_study(runs, study, seed=1)


def test_pairwise_mode_and_trial_count(runs, tmp_path):
    info = create_study(runs, tmp_path / "p.sqlite", mode="pairwise", trials=10, seed=0)
    assert info["possible"] == 2 * N_IMAGES * 3 and info["trials"] == 10
    opts = _options(tmp_path / "p.sqlite")
    assert len(opts) == 10 and all(len(o) == 2 for o in opts.values())
    with pytest.raises(StudyError, match="between 1 and 36"):
        create_study(runs, tmp_path / "q.sqlite", mode="pairwise", trials=37)


def test_create_errors(runs, tmp_path):
    with pytest.raises(StudyError, match="at least 2 runs"):
        create_study(runs[:1], tmp_path / "x.sqlite")
    with pytest.raises(StudyError, match="no results.json"):
        create_study([runs[0], tmp_path], tmp_path / "x.sqlite")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "results.json").write_text('{"method": "m"}')
    with pytest.raises(StudyError, match="--save-outputs"):
        create_study([runs[0], bare], tmp_path / "x.sqlite")
    with pytest.raises(StudyError, match="not in every run"):
        create_study(runs, tmp_path / "x.sqlite", tasks=["sr16"])


def test_vote_duplicate_and_resume(runs, tmp_path):
    study = tmp_path / "s.sqlite"
    create_study(runs, study, trials=5, seed=2, raters=RATERS)
    first = next_trial(study, "alice")
    assert first["done"] == 0 and first["total"] == 5 and first["options"] == 3
    assert first["reference"] is True
    record_vote(study, "alice", first["trial"], 2, now="2025-01-01T00:00:00+00:00")
    with pytest.raises(DuplicateVoteError):
        record_vote(study, "alice", first["trial"], 0)
    second = next_trial(study, "alice")  # a fresh connection: as after a server restart
    assert second["done"] == 1 and second["trial"] != first["trial"]
    assert next_trial(study, "alice") == second  # resumes at the same trial
    seen = {first["trial"]}
    while (t := next_trial(study, "alice"))["trial"] is not None:
        seen.add(t["trial"])
        record_vote(study, "alice", t["trial"], 0)
    assert t["done"] == 5 and len(seen) == 5
    orders = {tuple(next_trial(study, r)["trial"] for _ in range(1)) for r in
              ("bob", "carol", "dave", "erin")}
    assert len(orders) > 1  # raters see their own order
    with sqlite3.connect(study) as conn:
        rows = conn.execute("SELECT rater, trial, position, time FROM votes "
                            "WHERE trial = ?", (first["trial"],)).fetchall()
    assert rows == [("alice", first["trial"], 2, "2025-01-01T00:00:00+00:00")]  # first counts
    for bad in ("", "a b", "x" * 65, "../etc", "alice\n", "eve\n"):
        with pytest.raises(StudyError, match="rater id"):
            next_trial(study, bad)
        with pytest.raises(StudyError, match="rater id"):
            record_vote(study, bad, first["trial"], 0)
    with pytest.raises(UnknownRaterError, match="not in this study"):  # invented raters
        record_vote(study, "mallory", first["trial"], 0)
    for trial in (0, -1, 2**70):
        with pytest.raises(StudyError, match="no such trial"):
            record_vote(study, "bob", trial, 0)
        with pytest.raises(StudyError, match="no such trial"):
            trial_image(study, trial, 0)
    with pytest.raises(StudyError, match="no option 7"):
        record_vote(study, "bob", first["trial"], 7)
    with pytest.raises(StudyError, match="not found"):
        next_trial(tmp_path / "missing.sqlite", "alice")


def test_wilson_and_agreement_hand_checked():
    # p = 7/8, z = 1.96: centre (p + z^2/16) / (1 + z^2/8), half-width as Wilson (1927)
    lo, hi = wilson_interval(7, 8)
    assert lo == pytest.approx(0.529112, abs=1e-6) and hi == pytest.approx(0.977583, abs=1e-6)
    assert wilson_interval(0, 8) == pytest.approx((0.0, 0.324408), abs=1e-6)  # z^2 / (n + z^2)
    assert wilson_interval(50, 100) == pytest.approx((0.403832, 0.596168), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # Fleiss (1971) example as on Wikipedia: 10 items, 14 raters, 5 categories -> 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)
    assert fleiss_kappa([[2, 0], [2, 0]]) is None  # one category only: undefined
    assert percent_agreement([[2, 0, 0], [1, 1, 0], [0, 3, 0]]) == pytest.approx(4 / 5)
    assert percent_agreement([[1, 0], [0, 1]]) is None


def test_report_numbers(runs, tmp_path, capsys):
    study = tmp_path / "s.sqlite"
    create_study(runs, study, trials=4, seed=3, tasks=["sr8"], raters=RATERS)
    opts = _options(study)
    pos = {t: {label: p for p, label in o.items()} for t, o in opts.items()}
    # alice picks the oracle 4 times; bob 3 times, and lanczos once (on the last trial)
    trials = sorted(pos)
    for t in trials:
        record_vote(study, "alice", t, pos[t]["oracle"])
        record_vote(study, "bob", t, pos[t]["lanczos" if t == trials[-1] else "oracle"])
    stats = study_stats(study)["tasks"]["sr8"]
    rows = {r["method"]: r for r in stats["methods"]}
    assert (rows["oracle"]["votes"], rows["oracle"]["shown"]) == (7, 8)
    assert rows["oracle"]["preference"] == 7 / 8 and rows["lanczos"]["preference"] == 1 / 8
    assert rows["identity"]["preference"] == 0.0
    assert rows["oracle"]["ci95"] == pytest.approx([0.529112, 0.977583], abs=1e-6)
    assert sum(r["preference"] for r in rows.values()) == pytest.approx(1.0)
    # 3 trials [2, 0, 0], one [1, 1, 0]: P = 0.75, Pe = (7/8)^2 + (1/8)^2 -> kappa = -1/7
    assert stats["fleiss_kappa"] == pytest.approx(-1 / 7)
    assert stats["percent_agreement"] == pytest.approx(0.75) and stats["raters"] == 2
    res = json.loads((runs[2] / "results.json").read_text())["tasks"]["sr8"]
    assert rows["oracle"]["psnr"] == res["psnr"] and rows["oracle"]["iprecision"] == 1.0
    assert main(["study", "report", str(study), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "| Methods | PSNR↑ | LPIPS↓ | iPrecision↑ | Preference (%)↑ |" in out
    assert "| oracle | inf | - | 1.000 | 87.5 | 52.9 – 97.8 | 7 / 8 |" in out
    assert "| identity |" in out and "| 0.0 | 0.0 – 32.4 | 0 / 8 |" in out
    assert "Fleiss' kappa -0.143" in out and "pairwise agreement 75.0%" in out
    assert "Counted: 8 votes (at most one per rater and trial) from 2 of the 5 raters" in out
    assert (tmp_path / "rep" / "report.md").read_text() == out
    saved = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert saved["tasks"]["sr8"]["votes"] == 8 and saved["raters_issued"] == 5
    assert saved["votes_per_rater"] == {"alice": 4, "bob": 4}
    assert write_report(study) == out


def test_cli_create_and_errors(runs, tmp_path, capsys):
    study = tmp_path / "cli.sqlite"
    argv = ["study", "create", "--runs", *map(str, runs), "--out", str(study), "--trials", "3",
            "--seed", "5", "--tasks", "bfr"]
    assert main(argv + ["--raters", "3", "--url", "http://study.example:8000"]) == 0
    out = capsys.readouterr().out
    assert "3 choice trials" in out and len(_options(study)) == 3
    links = re.findall(r"  (rater\d\d): http://study\.example:8000/study#token=([\w-]+)", out)
    assert [n for n, _ in links] == ["rater01", "rater02", "rater03"]
    assert len({t for _, t in links}) == 3 and all(len(t) >= 22 for _, t in links)
    assert rater_for_token(study, links[1][1]) == "rater02"
    assert main(["study", "raters", str(study), "--add", "zoe"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"zoe: http://127\.0\.0\.1:7860/study#token=[\w-]{22}", out)
    assert main(["study", "raters", str(study)]) == 0
    assert capsys.readouterr().out.count("#token=") == 4
    assert main(["study", "raters", str(study), "--add", "zoe"]) == 1
    assert "listed twice" in capsys.readouterr().err
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "\n" not in err
    assert main(["study", "report", str(tmp_path / "none.sqlite")]) == 1
    assert "study file not found" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["study", "--help"], ["study", "report", "--help"],
                                  ["study", "create", "--help"], ["study", "raters", "--help"]])
def test_study_help_works(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "usage: facemend study" in capsys.readouterr().out


def _client(runs, tmp_path, **kwargs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facemend.config import ModelConfig
    from facemend.models.generator import Generator
    from facemend.web.app import ServerSettings, create_app

    study = tmp_path / "s.sqlite"
    info = create_study(runs, study, trials=3, seed=4, raters=RATERS, **kwargs)
    G = Generator(ModelConfig(resolution=32, channel_base=256, max_channels=16, latent_dim=16,
                              num_skips=1, codebook_size=8)).eval()
    app = create_app(ServerSettings(study=str(study), identity=False), model=G)
    return TestClient(app), study, dict(info["raters"])


def test_study_pages_and_api(runs, tmp_path):
    client, study, tokens = _client(runs, tmp_path)
    with client as c:
        assert c.get("/healthz").json()["study"] is True
        page = c.get("/study")
        assert page.status_code == 200 and "#token=" in page.text
        r = c.post("/api/study/signin", json={"token": tokens["alice"]})
        assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
        t = r.json()
        assert t["rater"] == "alice" and t["done"] == 0 and t["total"] == 3
        assert len(t["images"]) == 3
        assert "oracle" not in json.dumps(t) and "lanczos" not in json.dumps(t)  # blind
        for url in t["images"] + [t["reference_url"]]:
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert c.cookies.get("facemend_rater") == tokens["alice"]
        vote = {"trial": t["trial"], "position": 1}
        r = c.post("/api/study/votes", json=vote)  # rater from the cookie
        assert r.status_code == 201 and r.json()["rater"] == "alice"
        r = c.post("/api/study/votes", json=vote)
        assert r.status_code == 409 and "already voted" in r.json()["detail"]
        t2 = c.get("/api/study/next").json()  # resumes from the cookie
        assert t2["done"] == 1 and t2["trial"] != t["trial"]
        r = c.post("/api/study/votes", json={"trial": 999, "position": 0})
        assert r.status_code == 404
        assert c.post("/api/study/votes", json={"trial": "x"}).status_code == 422
        assert c.get(f"/api/study/trials/{t['trial']}/options/9").status_code == 404
        assert c.get("/api/study/trials/0/options/0").status_code == 422
        c.cookies.clear()
        r = c.get("/api/study/next")
        assert r.status_code == 401 and "personal study link" in r.json()["detail"]


def test_study_cannot_be_tampered_with(runs, tmp_path):
    """Raters are who their link says: no voting as another, no invented raters, no peeking."""
    client, study, tokens = _client(runs, tmp_path)
    with client as c:
        t = c.post("/api/study/signin", json={"token": tokens["bob"]}).json()
        trial = t["trial"]
        # a body naming another rater is refused, and alice's trial stays open for her
        r = c.post("/api/study/votes", json={"trial": trial, "position": 0, "rater": "alice"})
        assert r.status_code == 422 and r.json()["detail"].startswith("rater")
        alice_trials = next_trial(study, "alice")
        assert alice_trials["done"] == 0
        # someone else's progress is not shown by naming them
        r = c.get("/api/study/next", params={"rater": "alice"})
        assert r.status_code == 200 and r.json()["rater"] == "bob"
        c.cookies.clear()
        assert c.get("/api/study/next", params={"rater": "alice"}).status_code == 401
        # invented raters and tokens get nowhere: 50 of them add no vote
        for k in range(50):
            c.cookies.set("facemend_rater", f"invented-token-{k:04d}-xxxxxxxx")
            assert c.post("/api/study/votes", json={"trial": trial, "position": 0}
                          ).status_code == 403
        c.cookies.clear()
        for bad in ("eve\n", "alice", "x" * 200, tokens["alice"] + "\n"):
            r = c.post("/api/study/signin", json={"token": bad})
            assert r.status_code in (403, 422), bad
        with sqlite3.connect(study) as conn:
            assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0
        # one vote per rater and trial; huge trial ids are 4xx, never 500
        c.post("/api/study/signin", json={"token": tokens["carol"]})
        assert c.post("/api/study/votes", json={"trial": trial, "position": 0}).status_code == 201
        assert c.post("/api/study/votes", json={"trial": trial, "position": 1}).status_code == 409
        for big in (2**31, 2**70):
            assert c.post("/api/study/votes", json={"trial": big, "position": 0}
                          ).status_code == 422
            assert c.get(f"/api/study/trials/{big}/options/0").status_code == 422
            assert c.get(f"/api/study/trials/{big}/reference").status_code == 422
        stats = study_stats(study)
        assert (stats["votes"], stats["raters"], stats["raters_issued"]) == (1, 1, 5)
