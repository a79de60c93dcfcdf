"""ONNX export: parity with torch (zero and explicit noise), dynamic batch, seeded reproduction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from facemend.cli import main  # noqa: E402
from facemend.config import RunConfig, load_config  # noqa: E402
from facemend.export import export_onnx  # noqa: E402
from facemend.inference.onnx_backend import (  # noqa: E402
    OnnxBackendError,
    OnnxRestorer,
    onnx_restorer,
)
from facemend.inference.restore import model_restorer  # noqa: E402
from facemend.models.generator import Generator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-3


# the paper's layout, and the shipped default's (full-resolution skip, residual output)
VARIANTS = {"paper": [], "default-like": ["model.full_res_skip=true", "model.residual=true"]}


@pytest.fixture(scope="module", params=list(VARIANTS))
def G(request) -> Generator:  # noqa: N802 - the paper's name for the generator
    """Tiny G whose noise strengths are non-zero, so that the noise inputs matter."""
    torch.manual_seed(0)
    cfg = load_config(RunConfig, REPO / "configs" / "tiny-32.yaml", VARIANTS[request.param])
    g = Generator(cfg.model).eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("strength"):
                p.normal_(0.0, 0.5)
    return g


@pytest.fixture(scope="module")
def exports(G: Generator, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("onnx")
    return {mode: export_onnx(G, tmp / f"{mode}.onnx", noise=mode) for mode in ("zero", "input")}


def _x(B: int) -> torch.Tensor:
    return torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(B)) * 2 - 1


@pytest.mark.parametrize("B", [1, 3])
def test_zero_noise_parity_dynamic_batch(G: Generator, exports, B: int) -> None:
    with torch.no_grad():
        ref = G(_x(B), noise_scale=0.0)
    out = OnnxRestorer(exports["zero"], noise_scale=0.0).run(_x(B))
    assert out.shape == (B, 3, 32, 32)
    assert (out - ref).abs().max() < TOL


@pytest.mark.parametrize("B", [1, 3])
def test_explicit_noise_inputs_parity(G: Generator, exports, B: int) -> None:
    eps = G.make_noise(B, torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = G(_x(B), noise=eps)
        ref0 = G(_x(B), noise_scale=0.0)
    assert (ref - ref0).abs().max() > 1e-2  # the noise really changes the output
    out = OnnxRestorer(exports["input"], noise_scale=1.0).run(_x(B), eps)
    assert (out - ref).abs().max() < TOL


def test_seeded_restorer_reproduces_torch_run(G: Generator, exports) -> None:
    torch_restore = model_restorer(G, noise_scale=0.7, seed=5)
    onnx_restore, size = onnx_restorer(exports["input"], noise_scale=0.7, seed=5)
    assert size == 32
    for B in (3, 1):  # successive calls draw successive noise from one generator
        ref, out = torch_restore(_x(B)), onnx_restore(_x(B))
        assert (out - ref).abs().max() < TOL
    zero = onnx_restorer(exports["input"], noise_scale=0.0)[0](_x(2))
    with torch.no_grad():
        assert (zero - G(_x(2), noise_scale=0.0)).abs().max() < TOL


def test_zero_graph_rejects_noise_and_bad_files(exports, tmp_path: Path) -> None:
    with pytest.raises(OnnxBackendError, match="--noise zero"):
        OnnxRestorer(exports["zero"], noise_scale=1.0)
    with pytest.raises(OnnxBackendError, match="no such ONNX file"):
        OnnxRestorer(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(OnnxBackendError, match="not a loadable"):
        OnnxRestorer(bad)


def test_export_command(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.onnx"
    code = main(["export", "--onnx", str(out), "--config", str(REPO / "configs" / "tiny-32.yaml"),
                 "--noise", "input", "--check"])
    assert code == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "9 noise inputs" in text and "max abs diff" in text
    assert main(["export", "--onnx", str(out), "--weights", str(tmp_path / "nope")]) == 2
