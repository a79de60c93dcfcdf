"""`facemend serve`: the local web app (restore photos in a browser; optional blind user study).

  facemend serve [--host 127.0.0.1] [--port 7860] [--weights DIR] [--study study.sqlite]
Pages: / (restore), /study (with --study), /docs (API). Needs the `web` extra:
pip install 'facemend[web]'. Binds to localhost by default; there is no authentication, so put
it behind a proxy that adds some before binding it to another interface.
"""

from __future__ import annotations

import argparse

HELP = "serve the restore web page and API (and a user study with --study)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--weights", default=None, help="weights folder (default: bundled default)")
    p.add_argument("--study", default=None, metavar="FILE",
                   help="study file from `facemend study create`: serve it at /study")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--workers", type=int, default=1, help="restorations at once (default 1)")
    p.add_argument("--max-queue", type=int, default=4,
                   help="requests waiting beyond the workers before 503 (default 4)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="upload limit (default 20)")
    p.add_argument("--max-megapixels", type=float, default=40.0,
                   help="largest photo accepted, in megapixels (default 40)")
    p.add_argument("--max-samples", type=int, default=4, help="samples per request (default 4)")
    p.add_argument("--max-results", type=int, default=100,
                   help="results kept in the temp store (default 100)")
    p.add_argument("--max-store-mb", type=float, default=1024.0,
                   help="bytes of results kept in the temp store, in MB (default 1024)")
    p.add_argument("--result-ttl", type=float, default=3600.0,
                   help="seconds a result stays downloadable (default 3600)")
    p.add_argument("--no-identity", action="store_true", help="skip identity similarity")
    p.add_argument("--detector", choices=["hog", "cnn", "haar"], default="hog")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    try:
        import uvicorn

        from facemend.web.app import ServerSettings, create_app
    except ImportError as e:
        print(f"error: {e.name} is not installed; pip install 'facemend[web]'", file=sys.stderr)
        return 2
    from facemend.inference.api import MAX_SAMPLES
    from facemend.models.pretrained import WeightsError
    from facemend.web.study import StudyError, connect

    if min(args.workers, args.max_samples, args.max_results) < 1 or args.max_queue < 0:
        print("error: --workers, --max-samples, --max-results must be >= 1, --max-queue >= 0",
              file=sys.stderr)
        return 2
    if args.max_samples > MAX_SAMPLES:
        print(f"error: --max-samples {args.max_samples}: at most {MAX_SAMPLES} (what restore "
              "allows)", file=sys.stderr)
        return 2
    if not (args.max_upload_mb > 0 and args.max_store_mb > 0 and args.max_megapixels > 0):
        print("error: --max-upload-mb, --max-store-mb, --max-megapixels must be > 0",
              file=sys.stderr)
        return 2
    if args.study:
        try:
            connect(args.study).close()
        except StudyError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    settings = ServerSettings(
        weights=args.weights, study=str(Path(args.study)) if args.study else None,
        device=args.device, workers=args.workers, max_queue=args.max_queue,
        max_upload_mb=args.max_upload_mb, max_pixels=int(args.max_megapixels * 1e6),
        max_samples=args.max_samples, max_results=args.max_results,
        max_store_mb=args.max_store_mb, result_ttl_s=args.result_ttl,
        identity=not args.no_identity, detector=args.detector)
    try:
        app = create_app(settings)
    except (WeightsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"facemend: http://{args.host}:{args.port}/ (API docs at /docs"
          + (", study at /study)" if args.study else ")"), file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
