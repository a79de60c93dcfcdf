"""Frozen dataclass configs, strict YAML loading and overlays, `--set a.b=value`, JSON round trip.

Every hyperparameter lives here with its default and meaning. YAML files are read strictly: an
unknown key is an error that names the key and the allowed keys, before any work starts; so are
an empty file, a key given twice in one mapping, and YAML anchors/aliases (`&a` / `*a`, refused:
they let a few lines expand to gigabytes). Sizes are bounded (`ModelConfig.__post_init__`,
`TrainConfig.__post_init__`), so no config can ask for an absurd model or a zero batch.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")
MAX_WIDTH = 8192  # channels / latent size: 16x the paper's 512
MAX_CHANNEL_BASE = 1 << 24  # 512x the paper's 32768


class ConfigError(ValueError):
    """A user-facing configuration problem (bad key, bad value, bad file)."""


FusionKind = Literal["lgf", "add", "concat", "none"]
UpsampleKind = Literal["bilinear", "transposed"]


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator shape (DESIGN §1); paper size: H=512, channel_base=32768."""

    resolution: int = 512  # H: input/output side, a power of two in [32, 1024]
    channel_base: int = 32768  # StyleGAN2 rule: width(res) = min(channel_base // res, max_channels)
    max_channels: int = 512
    latent_dim: int = 512  # z = Enc(x)
    mapping_layers: int = 2  # MLP z -> w; one w is shared by every modulated conv (as StyleGAN2)
    num_skips: int = 3  # skip connections counted from 8x8 upward (§3.1.1); 0 = none
    fusion: FusionKind = "lgf"  # eq. 4, or the ablation baselines
    quantize: bool = True  # per-skip EMA codebooks (eq. 2-3)
    codebook_size: int = 1024  # K
    vq_decay: float = 0.99  # EMA decay of codebook statistics
    vq_dead_threshold: float = 1e-3  # codes whose EMA cluster size falls below this are restarted
    noise: bool = True  # adaptive conditional noise (eq. 5-6) in decoder blocks
    skip_noise: bool = True  # ... and in every used skip feature
    d_channel_base: int = 32768  # discriminator widths follow the same rule
    d_max_channels: int = 512
    mbstd_group: int = 4  # minibatch-stddev group size
    # facemend's addition (not in the paper): a PatchGAN head beside D's global logit, one 1x1
    # conv logit per position of D's block output at this resolution, so that D judges each
    # region's texture as well as the whole face; 0 = the global logit only (StyleGAN2's D).
    d_patch_res: int = 0
    # facemend's addition (not in the paper): output x + G(x), so that a new or briefly trained
    # model starts from its input instead of from grey; for small CPU training budgets.
    residual: bool = False
    # facemend's addition (not in the paper): one more skip at H itself, from the encoder's
    # from_rgb features, so that the last decoder block sees the input at full resolution (the
    # paper's skips stop at H/2). +0.22 dB in the 64 px ablation (docs/results.md).
    full_res_skip: bool = False
    # Decoder upsampling: "bilinear" resize then 3x3 modulated conv (GFPGANv1Clean's choice), or
    # "transposed": StyleGAN2's own stride-2 transposed 3x3 modulated conv + [1,3,3,1] blur, which
    # runs its conv at the low resolution (a quarter of the multiply-adds).
    upsample: UpsampleKind = "bilinear"

    def __post_init__(self) -> None:
        h = self.resolution
        if h < 32 or h > 1024 or h & (h - 1):
            raise ConfigError(f"model.resolution={h}: must be a power of two in [32, 1024]")
        if not 0 <= self.num_skips <= self.max_skips:
            raise ConfigError(
                f"model.num_skips={self.num_skips}: must be in [0, {self.max_skips}] at H={h}"
            )
        if self.d_patch_res and (self.d_patch_res & (self.d_patch_res - 1)
                                 or not 4 <= self.d_patch_res <= h // 2):
            raise ConfigError(f"model.d_patch_res={self.d_patch_res}: must be 0 or a power of "
                              f"two in [4, {h // 2}] at H={h}")
        if self.codebook_size < 1:
            raise ConfigError("model.codebook_size must be >= 1")
        if not 0.0 < self.vq_decay < 1.0:
            raise ConfigError("model.vq_decay must be in (0, 1)")
        for name, lo, hi in (("channel_base", 1, MAX_CHANNEL_BASE),
                             ("d_channel_base", 1, MAX_CHANNEL_BASE),
                             ("max_channels", 1, MAX_WIDTH), ("d_max_channels", 1, MAX_WIDTH),
                             ("latent_dim", 1, MAX_WIDTH), ("mapping_layers", 0, 64),
                             ("codebook_size", 1, 1 << 16), ("mbstd_group", 1, 1024)):
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ConfigError(f"model.{name}={value}: must be in [{lo}, {hi}]")

    @property
    def log2_res(self) -> int:
        return self.resolution.bit_length() - 1

    @property
    def max_skips(self) -> int:
        """Skips are possible at 8, 16, ..., H/2 (§3.1.1): log2(H) - 3 of them."""
        return self.log2_res - 3

    @property
    def skip_resolutions(self) -> tuple[int, ...]:
        """Resolutions that carry a skip connection, from 8x8 upward (then H if full_res_skip)."""
        low = tuple(2 ** (3 + i) for i in range(self.num_skips))
        return low + (self.resolution,) if self.full_res_skip else low

    def channels(self, res: int) -> int:
        """Generator feature width at a resolution (StyleGAN2's rule)."""
        return max(1, min(self.channel_base // res, self.max_channels))

    def d_channels(self, res: int) -> int:
        """Discriminator feature width at a resolution."""
        return max(1, min(self.d_channel_base // res, self.d_max_channels))


@dataclass(frozen=True)
class DegradationConfig:
    """Eq. 13 ranges, defined at 512 px (sigma and kernel size scale with H/512)."""

    sigma: tuple[float, float] = (0.2, 10.0)  # Gaussian blur std
    kernel_size: int = 41  # blur kernel side at 512 px
    scale: tuple[float, float] = (1.0, 8.0)  # downsampling factor r
    noise: tuple[float, float] = (0.0, 15.0)  # Gaussian noise std delta, 0-255 scale
    jpeg: tuple[int, int] = (60, 100)  # JPEG quality q
    min_side: int = 8  # clamp r so that the downsampled side stays >= this


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, losses (eq. 7-10), schedule and logging."""

    batch_size: int = 8  # per process
    steps: int = 10000
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    betas: tuple[float, float] = (0.0, 0.99)
    alpha: float = 0.1  # adversarial weight (eq. 7)
    lr_decay_from: int = 0  # step where a half-cosine decay of both lrs starts; 0 = constant lr
    lr_final_fraction: float = 0.1  # ... down to this fraction of lr_g / lr_d at the last step
    adv_start_step: int = 0  # steps of reconstruction-only warm-up before the adversarial terms
    l1_weight: float = 1.0
    lambda_p: float = 1.0  # perceptual loss weight (VGG19 when weights are given)
    vgg19_weights: str | None = None  # local torchvision-format vgg19-dcbb9e9d.pth
    face_perceptual_weight: float = 0.1  # offline dlib-ResNet feature loss (used without VGG19)
    identity_weight: float = 0.1  # 1 - cos(emb(G(x)), emb(y)) with the dlib ResNet
    feature_matching_weight: float = 0.0  # L1 between D's block features of G(x) and y
    gradient_variance_weight: float = 0.0  # per-tile Sobel-gradient variance vs y (detail)
    vq_beta: float = 0.25  # commitment weight (eq. 3, second term)
    r1_gamma: float = 0.0  # lazy R1 on real images; 0 = off
    r1_interval: int = 16
    grad_clip: float = 0.0  # max grad norm for G and D; 0 = off
    ema_half_life_images: float = 10000.0  # EMA of G, half-life in images seen
    ema_rampup: float = 0.05  # half-life <= rampup * images seen (early steps)
    diffaug: str = "color,translation"  # DiffAugment policy for D's inputs
    flip: bool = True  # random horizontal flip of training faces
    val_fraction: float = 0.02  # files whose hash puts them in the validation split
    val_batch: int = 8  # fixed validation batch for PSNR and grids
    seed: int = 0
    num_workers: int = 0
    amp: Literal["auto", "bf16", "none"] = "auto"  # auto: bf16 where native (CUDA, AMX), else fp32
    # a weights folder (facemend restore --weights format) to start G and its EMA from; the model
    # may add modules to it (they start fresh) or double its resolution 1+ times
    # (facemend.models.grow); ignored on --resume. D starts fresh unless init_d_from names one.
    init_from: str | None = None
    # a weights folder holding discriminator.safetensors (written by --export-ema) to start D
    # from, so that an adversarial run continues on another machine; ignored on --resume
    init_d_from: str | None = None
    compile: bool = False  # torch.compile G and D for training (minutes to compile; long runs)
    log_every: int = 10
    sample_every: int = 500
    ckpt_every: int = 500
    max_bad_steps: int = 10  # consecutive non-finite losses before the run stops

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "max_bad_steps", "log_every", "sample_every",
                     "ckpt_every", "r1_interval"):
            value = getattr(self, name, 1)
            if isinstance(value, int) and value < 1:
                raise ConfigError(f"train.{name}={value}: must be >= 1")
        if self.batch_size > 1 << 16:
            raise ConfigError(f"train.batch_size={self.batch_size}: must be <= {1 << 16}")


@dataclass(frozen=True)
class EvalConfig:
    """The locked benchmark (DESIGN §3)."""

    tasks: tuple[str, ...] = ("bfr", "sr8", "sr16")
    resolution: int = 512  # HQ test images are resized to this (Lanczos)
    seed: int = 0  # BFR degradations use seed + image index
    k: int = 4  # neighbourhood size for iPrecision / iRecall
    feature_extractor: Literal["dlib", "facenet", "inception"] = "dlib"
    batch_size: int = 8
    grid_images: int = 6
    noise_scale: float = 1.0  # --method model: the trained noise, as `facemend restore`; 0 = none


@dataclass(frozen=True)
class RunConfig:
    """What a training run needs: model + degradation + training."""

    model: ModelConfig = field(default_factory=ModelConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------
# Strict conversion between plain data (YAML/JSON) and dataclasses.


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert) one value against a type annotation."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r}: must be one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            if isinstance(value, str) and args[-1] is Ellipsis:  # "a,b" for tuple[str, ...]
                value = [v for v in value.split(",") if v]
            else:
                raise ConfigError(f"{where}={value!r}: expected a list")
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}={value!r}: expected {len(args)} values")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}={value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}={value!r}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r}: expected a string")
        return value
    raise ConfigError(f"{where}: unsupported type {tp!r}")  # pragma: no cover


def _known_fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    """Type hints of `cls`'s fields after checking that `data` is a mapping of known keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key '{key}'; allowed: {', '.join(names)}")
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from a mapping; unknown keys are an error naming the allowed ones."""
    hints = _known_fields(cls, data, where)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def check_layer(cls: type, data: Any, where: str = "") -> None:
    """Check a partial mapping (one overlay file): known keys, values of the right types.

    Checks between fields (e.g. num_skips against resolution) wait for the merged whole.
    """
    hints = _known_fields(cls, data, where)
    for k, v in data.items():
        w = f"{where}.{k}" if where else k
        if dataclasses.is_dataclass(hints[k]):
            check_layer(hints[k], v, w)
        else:
            _coerce(v, hints[k], w)


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` laid over `base`: sections merge key by key, any other value replaces the old one."""
    out = dict(base)
    for k, v in top.items():
        both = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = merge(out[k], v) if both else v
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain (JSON/YAML-safe) dict of a config dataclass; tuples become lists."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (value parsed as YAML) to a nested plain dict, returning a copy."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.steps=100")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{p}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (no alias bombs) and duplicate keys."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed "
                                 "in facemend configs; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: key {key!r} is "
                                     "given twice in the same section")
            if isinstance(key, typing.Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, empty or malformed file is a one-line ConfigError."""
    p = Path(path)
    try:
        loader = _StrictLoader(p.read_text(encoding="utf-8"))  # a SafeLoader: no python tags
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (not UTF-8)") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        raise ConfigError(f"{p}: empty config file (nothing to configure; delete the --config "
                          "option to use the defaults)")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data


def load_config(
    cls: type[T],
    path: str | Path | Sequence[str | Path] | None = None,
    overrides: list[str] | None = None,
) -> T:
    """Defaults <- YAML file(s) <- `--set` overrides, strictly validated into `cls`.

    Several files are overlays: each is laid over the ones before it (`merge`), so a later file
    overrides an earlier one key by key. Each file is checked on its own (`check_layer`), so an
    unknown key or a bad value names its file; the merged whole is then built and checked.
    """
    paths = [] if path is None else [path] if isinstance(path, str | Path) else list(path)
    data: dict[str, Any] = {}
    for p in paths:
        layer = load_yaml(p)
        try:
            check_layer(cls, layer)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
        data = merge(data, layer)
    data = apply_overrides(data, overrides or [])
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{' + '.join(map(str, paths))}: {e}" if paths else str(e)) from None
    except TypeError as e:  # pragma: no cover - dataclass construction problem
        raise ConfigError(str(e)) from None


def to_json(cfg: Any) -> str:
    """Stable JSON text of a config."""
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def from_json(cls: type[T], text: str) -> T:
    """Inverse of `to_json`."""
    return from_dict(cls, json.loads(text))
