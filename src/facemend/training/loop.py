"""The training loop (eq. 7-10): one G phase and one D phase per step, on 1 CPU or N GPUs.

Per step, on the batch (x = Deg(y), y):
  Codebooks: EMA update from the encoder features of y (eq. 3, first term), synced over ranks.
  Gmain:     L_G = alpha * softplus(-D(Aug(G(x)))) + L1 + lambda_p * L_percep + beta * L_commit
             (+ face-feature perceptual and identity terms from the dlib ResNet when enabled).
  Dmain:     L_D = softplus(D(Aug(sg(G(x))))) + softplus(-D(Aug(y)))            (eq. 8)
  Dreg:      every r1_interval steps, gamma/2 * ||grad D(y)||^2 * r1_interval    (lazy R1, optional)
  EMA:       G_ema <- G with a half-life in images.
Every random choice is seeded from (seed, step, rank), so a resumed run repeats a straight one.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from facemend.config import ModelConfig, RunConfig, to_dict, to_json
from facemend.data import FaceFolder, worker_context
from facemend.losses import (
    generator_loss,
)
from facemend.models.discriminator import Discriminator
from facemend.models.generator import Generator
from facemend.models.pretrained import init_from_weights, save_pretrained
from facemend.training import distributed as ddp
from facemend.training.checkpoint import (
    TrainingState,
    load_checkpoint,
    load_discriminator,
    read_header,
    save_checkpoint,
)
from facemend.training.ema import ema_beta, update_ema
from facemend.training.phases import (
    adversarial_phase,
    generator_phase,
    native_bf16,
    r1_phase,
)
from facemend.training.report import JsonlLog, plot_loss_curves, psnr_batch, save_grid
from facemend.training.schedule import EpochIndexed, StepBatches, lr_factor, step_seed

CKPT = "checkpoints/latest.safetensors"


class TrainingDivergedError(RuntimeError):
    """Too many consecutive non-finite losses; the last good checkpoint is kept."""


def say(dist: ddp.Dist, msg: str) -> None:
    """Print a line from rank 0 only."""
    if dist.main:
        print(msg, file=sys.stderr, flush=True)


def build_perceptual(cfg: RunConfig, device: torch.device, dist: ddp.Dist):
    """VGG19 perceptual loss (eq. 10) when weights are given; else None, said once."""
    path = cfg.train.vgg19_weights or os.environ.get("FACEMEND_VGG19")
    if cfg.train.lambda_p <= 0:
        return None
    if not path:
        instead = ("the offline dlib face-feature loss stands in (train.face_perceptual_weight)"
                   if cfg.train.face_perceptual_weight > 0 else
                   "train.face_perceptual_weight is 0 too, so no perceptual loss is used")
        say(dist, "note: no VGG19 weights (train.vgg19_weights or FACEMEND_VGG19 -> "
                  f"vgg19-dcbb9e9d.pth): the VGG perceptual term is off; {instead}")
        return None
    from facemend.losses import PerceptualLoss
    from facemend.vgg19 import load_vgg19

    return PerceptualLoss(load_vgg19(path)).to(device)


def build_face_loss(cfg: RunConfig, device: torch.device):
    """dlib-ResNet face perceptual + identity loss, when either weight is positive."""
    if cfg.train.face_perceptual_weight <= 0 and cfg.train.identity_weight <= 0:
        return None
    from facemend.faces.dlib_resnet import load_face_net
    from facemend.faces.losses import FaceFeatureLoss

    return FaceFeatureLoss(load_face_net(device=device))


def clip(module: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the gradient norm to max_norm (when > 0); returns the norm before clipping."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def all_finite(values: list[torch.Tensor], reduce=None) -> bool:
    """Whether every tensor is finite, on every rank (so that all ranks skip together)."""
    ok = all(bool(torch.isfinite(v).all()) for v in values)
    if reduce is None or not values:
        return ok
    bad = torch.tensor([0.0 if ok else 1.0], device=values[0].device)
    return bool(reduce(bad).item() == 0)


def finite_weights(modules: list[torch.nn.Module]) -> bool:
    """Whether every floating-point parameter and buffer is finite."""
    return all(torch.isfinite(t).all() for m in modules for t in m.state_dict().values()
               if t.is_floating_point())


def build_data(cfg: RunConfig, data: list[str], dev: torch.device
               ) -> tuple[FaceFolder, torch.Tensor, torch.Tensor]:
    """The training faces, and the fixed validation batch (lq, hq), each (V, 3, H, H) on dev."""
    tc, H = cfg.train, cfg.model.resolution
    train_set = FaceFolder(data, H, degradation=cfg.degradation, seed=tc.seed, flip=tc.flip,
                           split="train", val_fraction=tc.val_fraction)
    try:
        val_set = FaceFolder(data, H, degradation=cfg.degradation, seed=tc.seed + 1, flip=False,
                             split="val", val_fraction=tc.val_fraction)
    except ValueError:  # no file fell in the validation split: use the first training files
        val_set = FaceFolder(data, H, degradation=cfg.degradation, seed=tc.seed + 1, flip=False)
    val = [val_set[i] for i in range(min(tc.val_batch, len(val_set)))]
    val_lq = torch.stack([v["lq"] for v in val]).to(dev)  # (V, 3, H, H)
    val_hq = torch.stack([v["hq"] for v in val]).to(dev)
    return train_set, val_lq, val_hq


def model_differs(saved: dict[str, Any], model: ModelConfig) -> list[str]:
    """The model options in which a checkpoint's saved config and this run's differ.

    An option the checkpoint does not name (it was written before the option existed) counts
    as the default it had then, so such a run resumes unless this run sets another value.
    """
    current, default = to_dict(model), to_dict(ModelConfig())
    return sorted(k for k in set(saved) | set(current)
                  if saved.get(k, default.get(k)) != current.get(k))


def start_state(state: TrainingState, cfg: RunConfig, ckpt: Path, resume: bool,
                dist: ddp.Dist) -> None:
    """Fill `state` from the checkpoint (--resume), or start G from train.init_from and D from
    train.init_d_from; a run folder that already holds a run is refused without --resume."""
    tc = cfg.train
    G, D, G_ema = (state.modules[k] for k in ("G", "D", "G_ema"))
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: nothing to resume (run without --resume first)")
        saved = read_header(ckpt).get("extra", {}).get("config", {}).get("model")
        differs = [] if saved is None else model_differs(saved, cfg.model)
        if differs:  # checked before any tensor is loaded
            raise ValueError(f"{ckpt}: the checkpoint's model config differs from this run's "
                             f"({', '.join(differs)}); resume with the same --config and model "
                             "--set values")
        load_checkpoint(ckpt, state, map_location=str(dist.device))
        say(dist, f"resumed from {ckpt} at step {state.step}")
        return
    if ckpt.exists():
        raise FileExistsError(f"{ckpt.parents[1]}: already holds a run; use --resume or a new "
                              "--out")
    if tc.init_from:
        fresh = init_from_weights(G, tc.init_from)
        G_ema.load_state_dict(G.state_dict())
        say(dist, f"G and G_ema start from {tc.init_from}; {len(fresh)} new tensor(s) start fresh"
            + (f" ({', '.join(fresh[:4])}{', ...' if len(fresh) > 4 else ''})" if fresh else ""))
    if tc.init_d_from:
        say(dist, f"D starts from {load_discriminator(D, tc.init_d_from)}")


def wrap_modules(G: Generator, D: Discriminator, tc, dist: ddp.Dist) -> tuple[torch.nn.Module, ...]:
    """(G_train, D_train, D_reg): G and D as each phase calls them.

    G_train / D_train carry DDP's gradient sync (and torch.compile with train.compile); R1
    (D_reg) stays eager, since compiled graphs have no double backward. D's weights are put in
    channels_last, the layout its inputs come in (`adversarial_phase`).
    """
    D.to(memory_format=torch.channels_last)
    G_train: torch.nn.Module = G
    D_train: torch.nn.Module = D
    if dist.enabled:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        G_train = DDP(G, device_ids=ids, broadcast_buffers=False)
        D_train = DDP(D, device_ids=ids, broadcast_buffers=False)
    D_reg: torch.nn.Module = D_train
    if tc.compile:  # the same modules, traced and fused by inductor (DESIGN §6: 1.3-2.3x on CPU)
        # D's graph is backpropagated twice (L_G, then L_D: the loop's retain_graph), which
        # compiled backward functions allow only without donated buffers
        torch._functorch.config.donated_buffer = False
        G_train, D_train = torch.compile(G_train), torch.compile(D_train)
    return G_train, D_train, D_reg


def skip_step(state: TrainingState, buffers: dict[str, torch.Tensor], problem: str,
              losses: dict[str, torch.Tensor], bad: int, tc, ckpt: Path, log: JsonlLog | None,
              dist: ddp.Dist) -> None:
    """Roll back a step whose loss or gradient is not finite: no optimiser step, the codebook
    buffers restored; after train.max_bad_steps in a row, stop with TrainingDivergedError."""
    for opt in state.optimizers.values():
        opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, b in state.modules["G"].named_buffers():
            b.copy_(buffers[k])
    step = state.step
    say(dist, f"step {step}: non-finite {problem} "
              f"({ {k: float(v.detach()) for k, v in losses.items()} }), step skipped "
              f"({bad} in a row, limit train.max_bad_steps={tc.max_bad_steps})")
    if log is not None:
        log.write({"step": step, "skipped": f"non-finite {problem}"})
    if bad >= tc.max_bad_steps:
        kept = (f"the checkpoint {ckpt} is from before them" if ckpt.is_file()
                else "no checkpoint was written")
        raise TrainingDivergedError(f"{bad} non-finite losses in a row at step {step}; {kept}")
    state.step += 1


def out_of_time(deadline: float, dev: torch.device, reduce=None) -> bool:
    """True once time.monotonic() passes `deadline` (on any rank, when `reduce` sums ranks)."""
    if reduce is None:
        return time.monotonic() >= deadline
    return bool(reduce(torch.tensor([float(time.monotonic() >= deadline)], device=dev)) > 0)


def train(
    cfg: RunConfig, data: list[str], out: str | Path, resume: bool = False, device: str = "auto",
    stop_at: int | None = None, progress: bool = True, max_minutes: float | None = None,
) -> Path:
    """Train G and D on folders of aligned faces; returns the folder of the final EMA weights.

    `stop_at` ends the run after that step (checkpoint written), as if it had been interrupted;
    `max_minutes` likewise after the first step that ends past that many minutes of the loop.
    """
    dist = ddp.setup(device)
    dev = dist.device
    out = Path(out)
    tc, H = cfg.train, cfg.model.resolution
    torch.manual_seed(tc.seed)  # identical initial weights on every rank

    train_set, val_lq, val_hq = build_data(cfg, data, dev)

    G = Generator(cfg.model).to(dev).train()
    D = Discriminator(cfg.model).to(dev).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=tc.lr_g, betas=tuple(map(float, tc.betas)))
    # lazy R1 (stylegan2): adjust D's lr and betas for the reg interval
    r1_ratio = tc.r1_interval / (tc.r1_interval + 1) if tc.r1_gamma > 0 else 1.0
    d_betas = tuple(float(b) ** r1_ratio for b in tc.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=tc.lr_d * r1_ratio, betas=d_betas)
    state = TrainingState(step=0, images_seen=0, modules={"G": G, "D": D, "G_ema": G_ema},
                          optimizers={"G": opt_g, "D": opt_d}, extra={})
    ckpt = out / CKPT
    start_state(state, cfg, ckpt, resume, dist)
    G_train, D_train, D_reg = wrap_modules(G, D, tc, dist)
    g_params = [p for p in G.parameters() if p.requires_grad]
    d_params = [p for p in D.parameters() if p.requires_grad]
    reduce = ddp.all_reduce_sum if dist.enabled else None
    if tc.amp == "bf16" and not native_bf16(dev):
        say(dist, f"note: train.amp=bf16 on {dev}, which has no native bf16: expect it to be many "
                  "times slower than fp32 (train.amp=auto picks bf16 only where it is native)")
    percep = build_perceptual(cfg, dev, dist)
    face_loss = build_face_loss(cfg, dev)

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(to_json(cfg) + "\n")
    log = JsonlLog(out / "log.jsonl", truncate_after_step=state.step) if dist.main else None
    last = min(tc.steps, stop_at) if stop_at is not None else tc.steps
    sampler = StepBatches(len(train_set), tc.batch_size, tc.seed, state.step, last,
                          dist.rank, dist.world)
    loader = DataLoader(EpochIndexed(train_set), batch_sampler=sampler,
                        num_workers=tc.num_workers, pin_memory=dev.type == "cuda",
                        multiprocessing_context=worker_context(tc.num_workers))
    say(dist, f"training {sum(p.numel() for p in G.parameters()) / 1e6:.2f}M-parameter G at "
              f"{H}px on {len(train_set)} faces ({dist.world} process(es), {dev}), "
              f"steps {state.step}->{last}")

    bar = None
    if progress and dist.main:
        from tqdm import tqdm

        bar = tqdm(total=last, initial=state.step, unit="step", dynamic_ncols=True)
    bad = int(state.extra.get("bad_steps", 0))
    t_last, n_last = time.perf_counter(), 0
    deadline = None if max_minutes is None else time.monotonic() + 60.0 * max_minutes
    for batch in loader:
        step = state.step
        x = batch["lq"].to(dev, non_blocking=True)  # (B, 3, H, H) degraded
        y = batch["hq"].to(dev, non_blocking=True)  # (B, 3, H, H) ground truth
        gen = torch.Generator(device=dev).manual_seed(step_seed(tc.seed, step, dist.rank, 0))
        aug_gen = torch.Generator(device=dev).manual_seed(step_seed(tc.seed, step, dist.rank, 1))
        vq_gen = torch.Generator(device=dev).manual_seed(step_seed(tc.seed, step, 0, 2))
        adv = tc.alpha > 0 and step >= tc.adv_start_step  # G and D phases of eq. 7-8
        lr_scale = lr_factor(step, tc.steps, tc.lr_decay_from, tc.lr_final_fraction)
        for opt, lr in ((opt_g, tc.lr_g), (opt_d, tc.lr_d * r1_ratio)):
            for group in opt.param_groups:
                group["lr"] = lr * lr_scale

        # Codebooks: EMA from ground-truth features only (eq. 3, first term). The buffers are
        # saved first so that a skipped (non-finite) step leaves no trace in them.
        buffers = {k: b.clone() for k, b in G.named_buffers()}
        G.update_codebooks(y, vq_gen, reduce)

        fake, g_terms = generator_phase(G_train, x, y, gen, percep, face_loss, cfg, dev)  # Gmain
        d_terms: dict[str, torch.Tensor] = {}
        if adv:  # Gmain's adversarial terms and Dmain from one D pass
            adv_terms, d_terms = adversarial_phase(D_train, fake, y, aug_gen, cfg, dev)
            g_terms.update(adv_terms)
        loss_g = generator_loss(g_terms, tc)
        losses = {**g_terms, **d_terms}
        problem = None if all_finite(list(losses.values()), reduce) else "loss"
        if problem is None:  # backward both phases, then step only if every gradient is finite
            opt_g.zero_grad(set_to_none=True)
            # L_G into G only (D frozen for Gmain), L_D into D only (G(x) detached for Dmain)
            torch.autograd.backward(loss_g, inputs=g_params, retain_graph=adv)
            norms = [clip(G, tc.grad_clip)]
            if adv:
                opt_d.zero_grad(set_to_none=True)
                torch.autograd.backward(d_terms["loss_d"], inputs=d_params)
                if tc.r1_gamma > 0 and step % tc.r1_interval == 0:  # Dreg
                    losses["loss_r1"] = r1_phase(D_reg, y, tc)
                norms.append(clip(D, tc.grad_clip))
            problem = None if all_finite(norms) else "gradient"
        if problem is not None:
            bad += 1
            skip_step(state, buffers, problem, losses, bad, tc, ckpt, log, dist)
            continue
        bad = 0
        opt_g.step()
        if adv:
            opt_d.step()

        batch_images = tc.batch_size * dist.world
        state.images_seen += batch_images
        state.step += 1
        update_ema(G_ema, G, ema_beta(batch_images, state.images_seen, tc.ema_half_life_images,
                                      tc.ema_rampup))
        n_last += batch_images
        if deadline is not None and out_of_time(deadline, dev, reduce):
            last = state.step  # log, validate and checkpoint this step as the run's last
            say(dist, f"{max_minutes:g} minute(s) up at step {last}: checkpoint, then stop")

        if log is not None and (state.step % tc.log_every == 0 or state.step == last):
            now = time.perf_counter()
            rec = {"step": state.step, "images": state.images_seen,
                   "images_per_s": round(n_last / max(now - t_last, 1e-9), 3),
                   "lr_g": opt_g.param_groups[0]["lr"]}
            rec.update({k: round(float(v.detach()), 6) for k, v in losses.items()})
            log.write(rec)
            t_last, n_last = now, 0
            if bar is not None:
                bar.set_postfix(l1=f"{rec['loss_l1']:.3f}", img_s=f"{rec['images_per_s']:.1f}")
        if bar is not None:
            bar.update(1)
        if state.step % tc.sample_every == 0 or state.step == last:
            validate(G_ema, val_lq, val_hq, state.step, out, log, dist)
        if state.step % tc.ckpt_every == 0 or state.step == last:
            state.extra = {"config": to_dict(cfg), "bad_steps": bad}
            if not finite_weights([G, D, G_ema]):
                say(dist, f"step {state.step}: non-finite weights: checkpoint not written, "
                          f"{ckpt} keeps the last good state")
            elif dist.main:
                save_checkpoint(ckpt, state)
            ddp.barrier(dist)
        if state.step >= last:
            break
    if bar is not None:
        bar.close()

    if dist.enabled:  # DDP keeps ranks identical; prove it (weights, EMA and codebooks)
        synced = ddp.in_sync(dist, [G, D, G_ema])
        if log is not None:
            log.write({"step": state.step, "ranks_in_sync": synced, "world": dist.world})
        say(dist, f"{dist.world} ranks in sync: {synced}")
    final = out / "final"
    if dist.main and state.step >= tc.steps:
        save_pretrained(G_ema, final, meta={"steps": state.step, "images_seen": state.images_seen,
                                            "data": [str(d) for d in data]})
        plot_loss_curves(out / "log.jsonl", out / "loss_curves.png")
    ddp.barrier(dist)
    ddp.teardown(dist)
    return final


@torch.no_grad()
def validate(G_ema: Generator, lq: torch.Tensor, hq: torch.Tensor, step: int, out: Path,
             log: JsonlLog | None, dist: ddp.Dist) -> None:
    """Validation PSNR of the EMA generator on the fixed batch, and a grid (LQ | restored | GT)."""
    if not dist.main:
        return
    restored = G_ema(lq, generator=torch.Generator(device=lq.device).manual_seed(0))
    psnr = psnr_batch(restored, hq)
    save_grid(out / "samples" / f"step_{step:07d}.png", [lq, restored.clamp(-1, 1), hq])
    if log is not None and math.isfinite(psnr):
        log.write({"step": step, "val_psnr": round(psnr, 4), "val_psnr_input": round(
            psnr_batch(lq, hq), 4)})
