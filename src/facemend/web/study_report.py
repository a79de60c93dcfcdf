"""Study results: preference % per method with Wilson 95% intervals (paper Table 2) + agreement.

Preference of a method = votes for it / votes on trials that showed it. In "choice" mode every
trial shows every method, so the preferences of one task sum to 100% as in Table 2; in
"pairwise" mode it is the win rate against the other methods. Interval: Wilson score interval
(z = 1.959964) on that proportion (votes treated as independent, as the paper's percentages do).
Agreement between raters, over trials voted on by >= 2 raters, with the chosen method as the
category: Fleiss' kappa (variable number of raters per trial, Fleiss 1971 with per-item n_i) and
pairwise percent agreement (share of rater pairs on the same trial that chose the same option).
The PSNR / LPIPS / iPrecision columns come from each run's results.json for that task.
Every vote counted comes from a rater the study issued a personal link to (one vote per rater
and trial); the report says how many votes and raters it counts, of how many raters issued.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from facemend.io import atomic_write_bytes
from facemend.web.study import connect, meta

Z95 = 1.959963984540054
TASK_LABELS = {"bfr": "BFR", "sr8": "SR x8", "sr16": "SR x16"}


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def fleiss_kappa(counts: list[list[int]]) -> float | None:
    """Fleiss' kappa of items x categories vote counts (items with < 2 raters are ignored)."""
    rows = [r for r in counts if sum(r) >= 2]
    if not rows:
        return None
    p_items = [(sum(c * c for c in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in rows]
    total = sum(sum(r) for r in rows)
    p_cat = [sum(r[j] for r in rows) / total for j in range(len(rows[0]))]
    p_bar, p_e = sum(p_items) / len(rows), sum(p * p for p in p_cat)
    if p_e >= 1.0:
        return None  # every vote in one category: kappa undefined
    return (p_bar - p_e) / (1.0 - p_e)


def percent_agreement(counts: list[list[int]]) -> float | None:
    """Share of rater pairs (same item) that agree; None without an item rated twice."""
    pairs = sum(sum(r) * (sum(r) - 1) // 2 for r in counts)
    if pairs == 0:
        return None
    return sum(c * (c - 1) // 2 for r in counts for c in r) / pairs


def study_stats(path: str | Path) -> dict[str, Any]:
    """Per task: votes, shown, preference and CI per method; agreement; rater and vote counts."""
    conn = connect(path)
    try:
        info = meta(conn)
        methods = {int(i): (label, json.loads(res)) for i, label, res in
                   conn.execute("SELECT id, label, results FROM methods ORDER BY id")}
        votes = conn.execute("SELECT v.rater, v.trial, v.method, t.task FROM votes v "
                             "JOIN trials t ON t.id = v.trial").fetchall()
        shown = conn.execute("SELECT t.task, o.method, COUNT(v.rater) FROM options o "
                             "JOIN trials t ON t.id = o.trial JOIN votes v ON v.trial = o.trial "
                             "GROUP BY t.task, o.method").fetchall()
        trials_per_task = dict(conn.execute("SELECT task, COUNT(*) FROM trials GROUP BY task"))
        issued = int(conn.execute("SELECT COUNT(*) FROM raters").fetchone()[0])
    finally:
        conn.close()
    n_shown = {(t, int(m)): int(n) for t, m, n in shown}
    tasks: dict[str, Any] = {}
    for task in info["tasks"]:
        task_votes = [v for v in votes if v[3] == task]
        wins = Counter(int(v[2]) for v in task_votes)
        rows = []
        for mid, (label, res) in methods.items():
            k, n = wins.get(mid, 0), n_shown.get((task, mid), 0)
            lo, hi = wilson_interval(k, n)
            metrics = res.get("tasks", {}).get(task, {})
            rows.append({"method": label, "votes": k, "shown": n,
                         "preference": k / n if n else None, "ci95": [lo, hi] if n else None,
                         "psnr": metrics.get("psnr"), "lpips": metrics.get("lpips"),
                         "iprecision": metrics.get("iprecision")})
        per_trial: dict[int, Counter] = defaultdict(Counter)
        for _, trial, m, _ in task_votes:
            per_trial[int(trial)][int(m)] += 1
        counts = [[c.get(m, 0) for m in methods] for c in per_trial.values()]
        tasks[task] = {
            "trials": int(trials_per_task.get(task, 0)),
            "votes": len(task_votes),
            "raters": len({v[0] for v in task_votes}),
            "methods": rows,
            "fleiss_kappa": fleiss_kappa(counts),
            "percent_agreement": percent_agreement(counts),
            "trials_with_2plus_raters": sum(1 for r in counts if sum(r) >= 2),
        }
    return {"mode": info["mode"], "seed": info["seed"], "votes": len(votes),
            "raters": len({v[0] for v in votes}), "raters_issued": issued,
            "votes_per_rater": dict(sorted(Counter(str(v[0]) for v in votes).items())),
            "tasks": tasks}


def _num(v: Any, digits: int) -> str:
    return "-" if v is None else f"{float(v):.{digits}f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def report_markdown(stats: dict[str, Any]) -> str:
    """Markdown in the layout of the paper's Table 2, one table per task, plus agreement."""
    mode = stats["mode"]
    pref_note = ("share of votes (choice of the best of all methods)" if mode == "choice"
                 else "win rate in pairwise trials")
    lines = [f"# User study ({mode} mode): {stats['votes']} votes from {stats['raters']} raters",
             "", f"Counted: {stats['votes']} votes (at most one per rater and trial) from "
             f"{stats['raters']} of the {stats['raters_issued']} raters issued a personal link.",
             ""]
    for task, t in stats["tasks"].items():
        lines += [f"## Table 2 layout: {TASK_LABELS.get(task, task)}", "",
                  "| Methods | PSNR↑ | LPIPS↓ | iPrecision↑ | Preference (%)↑ | 95% CI (Wilson) "
                  "| votes / shown |", "|---|---|---|---|---|---|---|"]
        for r in t["methods"]:
            pref = "-" if r["preference"] is None else f"{100 * r['preference']:.1f}"
            ci = ("-" if r["ci95"] is None
                  else f"{100 * r['ci95'][0]:.1f} – {100 * r['ci95'][1]:.1f}")
            lines.append(f"| {r['method']} | {_num(r['psnr'], 2)} | {_num(r['lpips'], 3)} | "
                         f"{_num(r['iprecision'], 3)} | {pref} | {ci} | {r['votes']} / "
                         f"{r['shown']} |")
        lines += ["", f"{t['trials']} trials, {t['votes']} votes, {t['raters']} raters. "
                  f"Agreement over {t['trials_with_2plus_raters']} trials with >= 2 raters: "
                  f"Fleiss' kappa {_num(t['fleiss_kappa'], 3)}, pairwise agreement "
                  f"{_pct(t['percent_agreement'])}.",
                  ""]
    lines.append(f"Preference: {pref_note}; 95% CI: Wilson score interval.")
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, out: str | Path | None = None) -> str:
    """The report as markdown; with `out`, also writes out/report.md and out/report.json."""
    stats = study_stats(path)
    text = report_markdown(stats)
    if out is not None:
        folder = Path(out)
        atomic_write_bytes(folder / "report.md", text.encode("utf-8"))
        body = json.dumps(stats, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(folder / "report.json", body.encode("utf-8"))
    return text
