"""`facemend study`: build a blind user study from evaluate runs, and report its results.

  facemend study create --runs RUN_DIR RUN_DIR [...] --out study.sqlite [--trials N] [--seed S]
                        [--mode choice|pairwise] [--tasks sr8] [--labels A B ...]
  facemend study report study.sqlite [--out DIR]
Runs come from `facemend evaluate ... --save-outputs`. Serve the study with
`facemend serve --study study.sqlite` (raters open /study). The report prints the preference %
per method with Wilson 95% intervals in the layout of the paper's Table 2, and the agreement
between raters (Fleiss' kappa, pairwise percent agreement); --out also writes report.md/.json.
"""

from __future__ import annotations

import argparse

HELP = "create a blind user study from evaluate runs, or report its votes (Table 2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="build study.sqlite from evaluate --save-outputs runs")
    c.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR",
                   help="two or more `facemend evaluate --save-outputs` run folders")
    c.add_argument("--out", required=True, help="study file to write (SQLite)")
    c.add_argument("--trials", type=int, default=None,
                   help="number of trials (default: every possible one)")
    c.add_argument("--seed", type=int, default=0, help="draws trials and orders (default 0)")
    c.add_argument("--mode", choices=["choice", "pairwise"], default="choice",
                   help="choice: pick the best of all methods (Table 2); pairwise: of two")
    c.add_argument("--tasks", default=None,
                   help="comma list of tasks to use (default: every task all runs have)")
    c.add_argument("--labels", nargs="+", default=None, help="method names, one per run")
    c.add_argument("--no-reference", action="store_true",
                   help="do not show the degraded input next to the options")
    c.add_argument("--force", action="store_true", help="replace an existing study file")
    r = sub.add_parser("report", help="preference % per method (Table 2) and agreement")
    r.add_argument("study", help="study file")
    r.add_argument("--out", default=None, help="folder for report.md and report.json")


def run(args: argparse.Namespace) -> int:
    import sys

    from facemend.web.study import StudyError, create_study

    try:
        if args.action == "create":
            tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
            info = create_study(args.runs, args.out, trials=args.trials, seed=args.seed,
                                mode=args.mode, tasks=tasks, labels=args.labels,
                                reference=not args.no_reference, force=args.force)
            print(f"{info['file']}: {info['trials']} {info['mode']} trials (of "
                  f"{info['possible']} possible) over {', '.join(info['methods'])} on "
                  f"{', '.join(info['tasks'])}")
            if info["without_reference"]:
                print(f"note: {info['without_reference']} trials show no degraded input "
                      "(test-set cache not found or --no-reference)")
            print(f"serve it with: facemend serve --study {info['file']}")
            return 0
        from facemend.web.study_report import write_report

        print(write_report(args.study, args.out), end="")
        return 0
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
