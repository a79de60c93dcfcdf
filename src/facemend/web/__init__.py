"""`facemend serve`: a local web app (restore photos in the browser) and a blind user study.

- `app.py`: `create_app(...)` -> FastAPI app: the restore page and API, `/healthz`, `/docs`.
- `results.py`: upload decoding (Pillow, size/type checks) and the temp store of results.
- `study.py`: the study file (SQLite): trials built from `facemend evaluate --save-outputs` runs,
  rater votes, resume.
- `study_routes.py`: the study page's API.
- `study_report.py`: preference % with Wilson 95% intervals (paper Table 2) and rater agreement.
- `static/`: the plain HTML/JS/CSS pages (no external resources).

FastAPI and uvicorn are imported only by `app.py` / `study_routes.py`, so the study file and its
report work without them.
"""
