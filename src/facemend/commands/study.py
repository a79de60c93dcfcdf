"""`facemend study`: build a blind user study from evaluate runs, and report its results.

  facemend study create --runs RUN_DIR RUN_DIR [...] --out study.sqlite [--trials N] [--seed S]
                        [--mode choice|pairwise] [--tasks sr8] [--labels A B ...]
                        [--raters N | --raters NAME ...] [--url http://host:port]
  facemend study raters study.sqlite [--add N | --add NAME ...] [--url ...]
  facemend study report study.sqlite [--out DIR]
Runs come from `facemend evaluate ... --save-outputs`. Serve the study with
`facemend serve --study study.sqlite`; each rater opens their own link (printed by `create` and
`raters`), whose unguessable token is the only way to vote as that rater. The report prints the
preference %
per method with Wilson 95% intervals in the layout of the paper's Table 2, and the agreement
between raters (Fleiss' kappa, pairwise percent agreement); --out also writes report.md/.json.
"""

from __future__ import annotations

import argparse

HELP = "create a blind user study from evaluate runs, or report its votes (Table 2)"
DEFAULT_URL = "http://127.0.0.1:7860"


def _raters_arg(values: list[str]) -> int | list[str]:
    """`--raters 5` -> 5; `--raters alice bob` -> the names."""
    return int(values[0]) if len(values) == 1 and values[0].isdigit() else list(values)


def _print_links(url: str, issued: list[tuple[str, str]]) -> None:
    for name, token in issued:
        print(f"  {name}: {url.rstrip('/')}/study#token={token}")


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
    c.add_argument("--raters", nargs="+", default=["10"], metavar="N_OR_NAME",
                   help="raters to create links for: a count (named rater01, ...) or names "
                   "(default 10)")
    c.add_argument("--url", default=DEFAULT_URL,
                   help=f"server address the printed links start with (default {DEFAULT_URL})")
    a = sub.add_parser("raters", help="list the raters' personal links, or add more")
    a.add_argument("study", help="study file")
    a.add_argument("--add", nargs="+", default=None, metavar="N_OR_NAME",
                   help="links for more raters: a count or names")
    a.add_argument("--url", default=DEFAULT_URL,
                   help=f"server address the printed links start with (default {DEFAULT_URL})")
    r = sub.add_parser("report", help="preference %% per method (Table 2) and agreement")
    r.add_argument("study", help="study file")
    r.add_argument("--out", default=None, help="folder for report.md and report.json")


def run(args: argparse.Namespace) -> int:
    import sys

    from facemend.web.study import StudyError, add_raters, create_study, list_raters

    try:
        if args.action == "raters":
            if args.add:
                issued = add_raters(args.study, _raters_arg(args.add))
                print(f"{args.study}: {len(issued)} raters added; their personal links:")
                _print_links(args.url, issued)
                return 0
            raters = list_raters(args.study)
            print(f"{args.study}: {len(raters)} raters (name: link, votes so far)")
            for r in raters:
                print(f"  {r['name']}: {args.url.rstrip('/')}/study#token={r['token']} "
                      f"({r['votes']} votes)")
            return 0
        if args.action == "create":
            tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
            info = create_study(args.runs, args.out, trials=args.trials, seed=args.seed,
                                mode=args.mode, tasks=tasks, labels=args.labels,
                                reference=not args.no_reference, force=args.force,
                                raters=_raters_arg(args.raters))
            print(f"{info['file']}: {info['trials']} {info['mode']} trials (of "
                  f"{info['possible']} possible) over {', '.join(info['methods'])} on "
                  f"{', '.join(info['tasks'])}")
            if info["without_reference"]:
                print(f"note: {info['without_reference']} trials show no degraded input "
                      "(test-set cache not found or --no-reference)")
            print(f"serve it with: facemend serve --study {info['file']}")
            print(f"{len(info['raters'])} personal links (send each rater only their own; "
                  "`facemend study raters` lists them again):")
            _print_links(args.url, info["raters"])
            return 0
        from facemend.web.study_report import write_report

        print(write_report(args.study, args.out), end="")
        return 0
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
