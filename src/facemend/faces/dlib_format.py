"""Reader for dlib's binary `.dat` network serialization (as written by `dlib::serialize(net)`).

The format is not self-describing in general (dlib deserializes by C++ type), but a DNN file is
close to it, which is what this reader relies on:

- integers: a control byte (low 4 bits = number of bytes that follow, bit 7 = negative), then the
  magnitude little-endian; strings: an integer length then the bytes; bools: ASCII '0' / '1';
  floats/doubles: two integers, mantissa then exponent (value = mantissa * 2**exponent);
  tensors: version 2, four integer dims (n, k, nr, nc), then raw little-endian float32 values;
  alias tensors (views into a layer's params): version 1 and four dims, no data.
- `add_loss_layer`: version 1, the loss details, then the network. Every `add_layer` writes its
  version (2; 2-3 for the layer right above the input) and recurses into its sub-network *before*
  writing its own details, so a file starts with the stack of versions from the output down to
  the input; tag and skip layers write version 1 and nothing else. Then come the input layer and,
  from the input upward, each layer's details (which start with a type string such as "con_4")
  followed by 3 bools and 3 tensors of training state (plus one int in add_layer version 3).

Every problem with a file is a `FaceModelError` whose message is one line: '<path>: <problem>'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Version-1 wrappers (tag/skip layers) carry no data; their kind is recorded as this.
WRAPPER = "tag_or_skip"


class FaceModelError(ValueError):
    """A dlib model file that cannot be used; str() is '<path>: <problem>'."""


@dataclass
class DlibLayer:
    """One layer of a dlib network: its kind ('con', 'affine', ...) and its stored values."""

    kind: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed dlib network: loss details and layers in input -> output order."""

    loss: DlibLayer
    input: DlibLayer
    layers: list[DlibLayer]


class _Reader:
    """A cursor over the bytes of one file that raises FaceModelError naming the file."""

    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.path, self.pos = data, path, 0

    def fail(self, problem: str) -> FaceModelError:
        return FaceModelError(f"{self.path}: {problem} (at byte {self.pos} of {len(self.data)})")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated file: needed {n} bytes for {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self, what: str = "an integer") -> int:
        ctrl = self.take(1, what)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise self.fail(f"corrupted file: bad integer control byte 0x{ctrl:02x} in {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if ctrl & 0x80 else value

    def float(self, what: str = "a number") -> float:
        mantissa = self.int(what)
        exponent = self.int(what)
        if abs(exponent) > 2000:
            raise self.fail(f"corrupted file: float exponent {exponent} in {what}")
        return float(np.ldexp(float(mantissa), exponent))

    def bool(self, what: str = "a flag") -> bool:
        ch = self.take(1, what)
        if ch not in (b"0", b"1"):
            raise self.fail(f"corrupted file: expected '0' or '1' for {what}, found {ch!r}")
        return ch == b"1"

    def str(self, what: str = "a type name", max_len: int = 256) -> str:
        n = self.int(what)
        if not 0 <= n <= max_len:
            raise self.fail(f"corrupted file: string length {n} for {what}")
        raw = self.take(n, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"corrupted file: non-text bytes in {what}") from None

    def expect(self, choices: tuple[str, ...], what: str) -> str:
        start = self.pos
        try:
            s = self.str(what)
        except FaceModelError:
            s = None
        if s not in choices:
            self.pos = start
            found = repr(s) if s is not None else "no type name"
            raise self.fail(f"corrupted or unsupported file: expected {' or '.join(choices)} "
                            f"for {what}, found {found}")
        return s

    def dims(self, what: str) -> tuple[int, int, int, int]:
        d = tuple(self.int(what) for _ in range(4))
        if any(v < 0 or v > 1 << 31 for v in d):
            raise self.fail(f"corrupted file: impossible tensor shape {d} for {what}")
        return d  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        version = self.int(what)
        if version != 2:
            raise self.fail(f"corrupted file: tensor version {version} for {what} (expected 2)")
        shape = self.dims(what)
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.take(4 * count, f"{count} float32 values of {what}")
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        if not np.isfinite(arr).all():
            raise self.fail(f"corrupted file: non-finite values in {what}")
        return arr

    def alias(self, what: str) -> tuple[int, int, int, int]:
        version = self.int(what)
        if version != 1:
            raise self.fail(f"corrupted file: alias tensor version {version} for {what}")
        return self.dims(what)


def _split(params: np.ndarray, shapes: list[tuple[int, ...]], r: _Reader, what: str) -> list:
    """Cut a layer's flat `params` tensor into its alias views (dlib stores them back to back)."""
    flat = params.reshape(-1)
    sizes = [int(np.prod(s)) for s in shapes]
    if sum(sizes) != flat.size:
        raise r.fail(f"corrupted file: {what} holds {flat.size} values, "
                     f"its parts need {sum(sizes)}")
    out, start = [], 0
    for s, n in zip(shapes, sizes, strict=True):
        out.append(flat[start : start + n].reshape(s))
        start += n
    return out


def _read_details(r: _Reader, index: int) -> DlibLayer:
    """Read one layer's details, dispatching on the type string it starts with."""
    where = f"layer {index}"
    name = r.expect(("con_4", "con_5", "con_6", "affine_", "affine_2", "relu_", "relu_2",
                     "max_pool_2", "avg_pool_2", "add_prev_", "fc_2", "fc_3"), where)
    v: dict[str, Any] = {}
    if name.startswith("con_"):
        params = r.tensor(f"{where} conv params")
        v["num_filters"] = r.int(where)
        v["kernel"] = (r.int(where), r.int(where))
        v["stride"] = (r.int(where), r.int(where))
        v["padding"] = (r.int(where), r.int(where))
        fshape, bshape = r.alias(f"{where} filters"), r.alias(f"{where} biases")
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float(where)
        has_bias = r.bool(where) if name in ("con_5", "con_6") else True
        if name == "con_6":
            r.bool(where)  # use_relu (fused relu, unused by the face model)
        parts = [fshape, bshape] if has_bias and int(np.prod(bshape)) else [fshape]
        split = _split(params, parts, r, f"{where} conv params")
        v["weight"] = split[0]  # (out, in, kh, kw)
        v["bias"] = split[1].reshape(-1) if len(split) > 1 else None
        return DlibLayer("con", v)
    if name.startswith("affine_"):
        params = r.tensor(f"{where} affine params")
        gshape, bshape = r.alias(f"{where} gamma"), r.alias(f"{where} beta")
        v["mode"] = "fc" if r.int(where) == 1 else "conv"
        if name == "affine_2":
            v["disabled"] = r.bool(where)
        gamma, beta = _split(params, [gshape, bshape], r, f"{where} affine params")
        v["gamma"], v["beta"] = gamma.reshape(-1), beta.reshape(-1)
        return DlibLayer("affine", v)
    if name.startswith("relu_"):
        if name == "relu_2":
            v["disabled"] = r.bool(where)
        return DlibLayer("relu", v)
    if name in ("max_pool_2", "avg_pool_2"):
        v["kernel"] = (r.int(where), r.int(where))
        v["stride"] = (r.int(where), r.int(where))
        v["padding"] = (r.int(where), r.int(where))
        return DlibLayer(name[:-2], v)
    if name == "add_prev_":
        return DlibLayer("add_prev", v)
    # fc_2 / fc_3
    v["num_outputs"], v["num_inputs"] = r.int(where), r.int(where)
    params = r.tensor(f"{where} fc params")
    wshape, bshape = r.alias(f"{where} weights"), r.alias(f"{where} biases")
    v["has_bias"] = r.int(where) == 0  # fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        r.float(where)
    if name == "fc_3":
        v["has_bias"] = r.bool(where) and v["has_bias"]
    parts = [wshape, bshape] if v["has_bias"] else [wshape]
    split = _split(params, parts, r, f"{where} fc params")
    v["weight"] = split[0].reshape(v["num_inputs"], v["num_outputs"])  # x @ weight
    v["bias"] = split[1].reshape(-1) if v["has_bias"] else None
    return DlibLayer("fc", v)


def _read_state(r: _Reader, version: int, index: int) -> None:
    """Skip the training state every add_layer stores after its details (empty in clean nets)."""
    for _ in range(3):
        r.bool(f"layer {index} state")
    for _ in range(3 if version >= 2 else 2):
        r.tensor(f"layer {index} state")
    if version >= 3:
        r.int(f"layer {index} state")


def _read_input(r: _Reader) -> DlibLayer:
    name = r.expect(("input_rgb_image_sized", "input_rgb_image"), "the input layer")
    means = [r.float("input means") for _ in range(3)]
    v: dict[str, Any] = {"mean_rgb": tuple(means)}
    if name == "input_rgb_image_sized":
        v["size"] = (r.int("input size"), r.int("input size"))
    return DlibLayer(name, v)


def parse_dlib_net(data: bytes, path: str = "<bytes>") -> DlibNet:
    """Parse the bytes of a dlib DNN `.dat` (loss layer on top) into layers, input first."""
    r = _Reader(data, path)
    if r.int("the loss layer version") != 1:
        raise r.fail("not a dlib network file: bad loss layer version")
    loss_name = r.expect(("loss_metric_2", "loss_metric_"), "the loss layer")
    loss = DlibLayer("loss_metric", {})
    if loss_name == "loss_metric_2":
        loss.values = {"margin": r.float("loss margin"), "dist_thresh": r.float("loss threshold")}
    versions: list[int] = []  # output -> input
    while True:
        start = r.pos
        v = r.int("a layer version")
        if v not in (1, 2, 3):  # not a version: the input layer's type-name length
            r.pos = start
            break
        versions.append(v)
        if len(versions) > 10_000:
            raise r.fail("corrupted file: no input layer found")
    if not versions or versions[-1] == 1:
        raise r.fail("corrupted file: the layer stack does not end in a layer")
    inp = _read_input(r)
    layers: list[DlibLayer] = []
    for i, v in enumerate(reversed(versions)):
        if v == 1:
            layers.append(DlibLayer(WRAPPER))
            continue
        layers.append(_read_details(r, i))
        _read_state(r, v, i)
    if r.pos != len(data):
        raise r.fail(f"corrupted file: {len(data) - r.pos} unexpected bytes after the network")
    return DlibNet(loss=loss, input=inp, layers=layers)


def read_dlib_net(path: str | Path) -> DlibNet:
    """Read and parse a dlib DNN `.dat` file; any problem is a one-line FaceModelError."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FaceModelError(f"{p}: file not found") from None
    except OSError as e:
        raise FaceModelError(f"{p}: cannot read ({e.strerror})") from None
    if not data:
        raise FaceModelError(f"{p}: empty file (0 bytes)")
    return parse_dlib_net(data, str(p))
