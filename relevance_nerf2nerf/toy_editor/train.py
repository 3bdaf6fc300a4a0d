"""Train the toy instruction editor bundled in ``relevance_nerf2nerf/assets/toy-editor`` (CPU, ~40 min).

    python -m relevance_nerf2nerf.toy_editor.train            # phase 1 of the bundled weights
    python -m relevance_nerf2nerf.toy_editor.train --help

Recipe (chosen to converge within an hour on a two-core CPU, where a pixel-space epsilon model does not):
1. Data: random synthetic scenes from random cameras at 64x64; each view edited by recolouring one named
   object ("make the cone blue" / "turn the cone blue"), see ``data.py``.
2. The architecture is ``build.build_instruct_pix2pix`` (IP2P's exact diffusers layout) with a VAE
   of latent factor 4, first trained alone as an autoencoder (tiny KL weight) and then frozen; its
   ``scaling_factor`` is set so scaled latents have unit variance. Latents are computed once.
3. The UNet (8 input channels on 16x16x4 latents) and the text encoder learn v-prediction (well conditioned at
   every noise level: ~x0 at high noise, ~epsilon at low noise), large learning rate with warm-up and cosine
   decay, timesteps uniform plus extra weight around t_rel = 0.8 where relevance maps are computed.
4. IP2P-style conditioning dropout: empty text, zero image latents, or both. Half of the empty-text samples
   target the unedited source ("no change"), so the empty-text branch stays close to the input and
   |eps_text - eps_img| (paper eq. 2) lights up on the named object; the other half target the edit as in
   IP2P, so at low noise the branches agree and sampling does not compound guidance.
5. The pipeline is saved with ``save_pretrained`` (DDIM scheduler, SD-1.x betas, ``prediction_type``
   v_prediction) and evaluated through the public ``load_editor`` on held-out scenes (``evaluate.py``).

The bundled weights are this recipe (phase 1, seed 0) continued with ``--init-from`` on new scenes at a
lower learning rate (phase 2, seed 1) and fine-tuned for specificity (phases 3-4); the model card is
``docs/toy-editor.md``, the exact commands, logs and measured quality are in the repository's
``toy_editor_training/`` folder.
"""

from __future__ import annotations

import json
import math
import platform
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR, TOY_EDITOR_IQR_RATIO
from relevance_nerf2nerf.diffusion.images import psnr
from relevance_nerf2nerf.toy_editor.data import VOCABULARY, Triplets, make_triplets


@dataclass
class TrainConfig:
    """Toy editor training; the defaults are phase 1 of the bundled weights' recipe."""

    output_dir: Path = TOY_EDITOR_DIR
    """Folder the editor (diffusers format), its training log and ``training_summary.json`` are written to."""
    seed: int = 0
    """Seed of the data, the weights' initialisation and every random draw of training."""
    relevance_iqr_ratio: float = TOY_EDITOR_IQR_RATIO
    """IQR ratio the saved editor recommends (``relevance_settings.json`` beside ``model_index.json``, read by
    ``load_editor`` wherever the folder is given): chosen for this architecture and data on validation scenes
    with ``python -m relevance_nerf2nerf.toy_editor.evaluate``; measure it again after changing the recipe."""
    init_from: Path | None = None
    """Continue from a saved editor directory: its VAE stays frozen and the autoencoder phase is skipped."""
    threads: int = 1
    """CPU threads (on a small CPU shared with other jobs, one thread is the fastest)."""
    num_scenes: int = 1500
    """Random training scenes."""
    views_per_scene: int = 4
    """Random camera views rendered per scene."""
    edits_per_view: int = 2
    """Recolouring edits (triplets) per view."""
    size: int = 64
    """Image side in pixels."""
    confusable_fraction: float = 0.0
    """Share of views repainted so another object has the requested colour and another the named object's
    colour (``data.confusable_colours``): only the shape word then says which object to edit."""
    vae_channels: tuple[int, ...] = (32, 64, 64)
    """VAE block widths (latent factor ``2 ** (len - 1)``)."""
    unet_channels: tuple[int, ...] = (32, 64, 128)
    """UNet block widths."""
    text_dim: int = 64
    """Text encoder width."""
    text_layers: int = 2
    """Text encoder layers."""
    prediction_type: Literal["v_prediction", "sample", "epsilon"] = "v_prediction"
    """What the UNet learns to predict."""
    vae_steps: int = 400
    """Autoencoder phase: optimisation steps."""
    vae_batch_size: int = 16
    """Autoencoder phase: images per step."""
    vae_lr: float = 2e-3
    """Autoencoder phase: peak learning rate (warm-up, then cosine decay to a tenth)."""
    kl_weight: float = 1e-6
    """Autoencoder phase: weight of the KL term."""
    unet_steps: int = 0
    """Diffusion phase: optimisation steps; 0: as many as fit in ``unet_minutes`` (measured on the first
    steps, then fixed and logged)."""
    unet_minutes: float = 50.0
    """Diffusion phase: training time in minutes when ``unet_steps`` is 0."""
    checkpoint_every: int = 500
    """Save the pipeline every N steps (a run cut short still leaves weights)."""
    batch_size: int = 32
    """Diffusion phase: triplets per step."""
    lr: float = 1e-3
    """Diffusion phase: peak learning rate."""
    min_lr: float = 5e-5
    """Diffusion phase: learning rate at the end of the cosine decay."""
    warmup_steps: int = 150
    """Diffusion phase: linear warm-up steps."""
    drop_text: float = 0.1
    """Share of samples trained with an empty instruction (IP2P's conditioning dropout)."""
    drop_image: float = 0.05
    """Share of samples trained with zero image latents."""
    drop_both: float = 0.05
    """Share of samples trained with neither instruction nor image."""
    identity_fraction: float = 0.5
    """Of the empty-text samples, the share whose target is the unedited source."""
    t_rel_fraction: float = 0.15
    """Share of timesteps drawn within +-50 of t_rel = 0.8, where relevance maps are computed."""
    ema_decay: float = 0.0
    """0: save the trained weights; > 0: save diffusers' ``EMAModel`` average of the UNet and text encoder
    weights with this decay (its warm-up (1 + n) / (10 + n) caps the decay early on), at checkpoints too."""
    eval_samples: int = 24
    """Held-out renders evaluated through the public loader at the end (0: skip the evaluation)."""
    log_name: str = "training_log.txt"
    """File name of the training log inside ``output_dir``."""
    extra: dict = field(default_factory=dict)
    """Free-form notes recorded with the configuration in the log and summary."""


class Logger:
    """Prints through rich and appends the same lines to the training log."""

    def __init__(self, path: Path) -> None:
        from rich.console import Console

        self.console = Console()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.start:7.1f}s] {message}"
        self.console.print(line, highlight=False, markup=False)
        with self.path.open("a") as f:
            f.write(line + "\n")


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )  # fmt: skip


def _to_model(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1] (diffusers' VAE convention)."""
    return images_uint8.float() / 127.5 - 1.0


def train_autoencoder(vae, data: Triplets, cfg: TrainConfig, log: Logger, gen: torch.Generator) -> None:
    """Phase 1: the VAE alone, reconstruction (L1 + MSE) with a tiny KL term.

    Args:
        vae (AutoencoderKL): the VAE to train in place (frozen afterwards).
        data (Triplets): the training triplets (sources and targets are both used).
        cfg (TrainConfig): the recipe (steps, batch size, learning rate, KL weight).
        log (Logger): writes progress lines to the console and the training log.
        gen (torch.Generator): the random generator of the run.
    """
    images = torch.cat([data.sources, data.targets])
    optimiser = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    vae.train()
    with _progress() as progress:
        task = progress.add_task("autoencoder", total=cfg.vae_steps, info="")
        for step in range(cfg.vae_steps):
            lr = (
                cfg.vae_lr
                * min(1.0, (step + 1) / 50)
                * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps)))
            )
            for group in optimiser.param_groups:
                group["lr"] = lr
            x = _to_model(images[torch.randint(len(images), (cfg.vae_batch_size,), generator=gen)])
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
            recon = vae.decode(z).sample
            loss = F.l1_loss(recon, x) + F.mse_loss(recon, x) + cfg.kl_weight * posterior.kl().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            progress.update(task, advance=1, info=f"loss {loss.item():.4f}")
            if step % 100 == 0 or step == cfg.vae_steps - 1:
                log(f"autoencoder step {step}: loss {loss.item():.4f} lr {lr:.2e}")
    vae.eval()
    vae.requires_grad_(False)


@torch.no_grad()
def encode_all(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Unscaled latents (``latent_dist.mode()``, IP2P's conditioning convention) of uint8 images.

    Args:
        vae (AutoencoderKL): the frozen VAE.
        images (torch.Tensor): (N, 3, H, W) uint8 images.
        batch (int, default 256): images encoded per call.
    """
    return torch.cat(
        [
            vae.encode(_to_model(images[i : i + batch])).latent_dist.mode()
            for i in range(0, len(images), batch)
        ]
    )


@torch.no_grad()
def autoencoder_psnr(vae, images: torch.Tensor) -> float:
    """Reconstruction PSNR (dB) of uint8 images through the VAE (posterior mode, decoded).

    Args:
        vae (AutoencoderKL): the VAE.
        images (torch.Tensor): (N, 3, H, W) uint8 images.
    """
    x = _to_model(images)
    recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    return psnr((recon + 1) / 2, (x + 1) / 2)


def sample_timesteps(n: int, cfg: TrainConfig, num_train: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform over the schedule, plus ``t_rel_fraction`` drawn within +-50 of t_rel = 0.8.

    Args:
        n (int): number of timesteps.
        cfg (TrainConfig): the recipe (``t_rel_fraction``).
        num_train (int): number of training timesteps of the scheduler.
        gen (torch.Generator): the random generator of the run.
    """
    uniform = torch.randint(num_train, (n,), generator=gen)
    around = (0.8 * num_train + torch.randint(-50, 51, (n,), generator=gen)).clamp(0, num_train - 1)
    pick = torch.rand(n, generator=gen) < cfg.t_rel_fraction
    return torch.where(pick, around, uniform).long()


def train(cfg: TrainConfig) -> dict:
    """Train the editor: the autoencoder, then the UNet and text encoder; save, evaluate, return the summary.

    Writes the pipeline, ``cfg.log_name`` and ``training_summary.json`` into ``cfg.output_dir``.

    Args:
        cfg (TrainConfig): the recipe (seeds, data, architecture, both phases, evaluation).
    """
    gen = _seed_everything(cfg)
    output_dir = Path(cfg.output_dir)
    log = Logger(output_dir / cfg.log_name)
    log(f"config: {json.dumps(asdict(cfg), default=str)}")
    log(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {cfg.threads} threads")
    data = _training_triplets(cfg, log)
    components = _load_components(cfg)
    counts = {name: sum(p.numel() for p in components[name].parameters()) for name in _TRAINED_MODULES}
    log(f"parameters: {counts}")
    latents = _autoencoder_phase(components["vae"], data, cfg, log, gen)
    training = _EditorTraining(components, latents, data, cfg, gen)
    steps, losses = _editor_phase(training, cfg, log, output_dir)
    training.save(output_dir, cfg.relevance_iqr_ratio)
    size_mb = sum(p.stat().st_size for p in output_dir.rglob("*") if p.is_file()) / 2**20
    log(f"saved to {output_dir} ({size_mb:.1f} MiB)")
    summary = {
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
        "steps": steps,
        "autoencoder_psnr_db": latents.psnr,
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "parameters": counts,
    }
    (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    if cfg.eval_samples > 0:
        from relevance_nerf2nerf.toy_editor.evaluate import evaluate_editor

        metrics = evaluate_editor(output_dir, num_samples=cfg.eval_samples, seed=cfg.seed, log=log)
        summary["evaluation"] = metrics
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


_TRAINED_MODULES = ("unet", "vae", "text_encoder")
"""The pipeline components with parameters (counted in the log and summary)."""


def _seed_everything(cfg: TrainConfig) -> torch.Generator:
    """Set the thread count and the global seeds; the returned generator drives every random draw."""
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    return torch.Generator().manual_seed(cfg.seed)


def _training_triplets(cfg: TrainConfig, log: Logger) -> Triplets:
    """The (source, instruction, target) training set of ``cfg``'s scenes."""
    t0 = time.perf_counter()
    data = make_triplets(
        cfg.num_scenes,
        views_per_scene=cfg.views_per_scene,
        edits_per_view=cfg.edits_per_view,
        size=cfg.size,
        seed=cfg.seed,
        confusable_fraction=cfg.confusable_fraction,
    )
    seconds = time.perf_counter() - t0
    log(f"data: {len(data.sources)} views, {len(data)} edits from {cfg.num_scenes} scenes ({seconds:.0f}s)")
    return data


def _load_components(cfg: TrainConfig) -> dict:
    """The pipeline's components: from ``cfg.init_from``, or a freshly built IP2P of ``cfg``'s sizes."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from relevance_nerf2nerf.toy_editor.build import DEFAULT_WORDS, build_instruct_pix2pix

    with tempfile.TemporaryDirectory() as tmp:
        source = cfg.init_from or tmp
        if cfg.init_from is None:
            build_instruct_pix2pix(
                tmp,
                seed=cfg.seed,
                unet_channels=cfg.unet_channels,
                vae_channels=cfg.vae_channels,
                text_dim=cfg.text_dim,
                text_layers=cfg.text_layers,
                vocabulary=tuple(dict.fromkeys(DEFAULT_WORDS + VOCABULARY)),
                prediction_type=cfg.prediction_type,
                scheduler="ddim",
            )
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae")
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler")
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


@dataclass
class _Latents:
    """The autoencoder phase's result: unscaled training latents and the scale that whitens them."""

    cond: torch.Tensor
    """Latents of the source views (the image conditioning)."""
    targets: torch.Tensor
    """Latents of the edited targets, one per edit."""
    scaling: float
    """The VAE's ``scaling_factor``."""
    psnr: float
    """Reconstruction PSNR (dB) on held-out scenes."""


def _autoencoder_phase(vae, data: Triplets, cfg: TrainConfig, log: Logger, gen: torch.Generator) -> _Latents:
    """Phase 1: train the VAE (or keep the loaded one), freeze it, encode the training set once."""
    t0 = time.perf_counter()
    if cfg.init_from is None:
        train_autoencoder(vae, data, cfg, log, gen)
    else:
        vae.eval()
        vae.requires_grad_(False)
        log(f"continuing from {cfg.init_from}: autoencoder kept frozen")
    held = make_triplets(
        8, views_per_scene=2, edits_per_view=1, size=cfg.size, seed=cfg.seed, seed_offset=10**6
    )
    psnr = autoencoder_psnr(vae, held.sources)
    cond = encode_all(vae, data.sources)
    target_raw = encode_all(vae, data.targets)
    scaling = float(1.0 / cond.std()) if cfg.init_from is None else float(vae.config.scaling_factor)
    vae.register_to_config(scaling_factor=scaling)
    seconds = time.perf_counter() - t0
    log(f"autoencoder: {seconds:.0f}s, held-out PSNR {psnr:.2f} dB, scaling_factor {scaling:.4f}")
    return _Latents(cond=cond, targets=target_raw, scaling=scaling, psnr=psnr)


class _EditorTraining:
    """Phase 2's state and one optimisation step: the UNet and text encoder on the precomputed latents."""

    def __init__(
        self, components: dict, latents: _Latents, data: Triplets, cfg: TrainConfig, gen: torch.Generator
    ) -> None:
        from diffusers.training_utils import EMAModel

        self.components, self.data, self.cfg, self.gen = components, data, cfg, gen
        self.unet, self.text_encoder = components["unet"], components["text_encoder"]
        self.alphas = components["scheduler"].alphas_cumprod.float()
        self.params = list(self.unet.parameters()) + list(self.text_encoder.parameters())
        self.optimiser = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=1e-4)
        self.ema = EMAModel(self.params, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.unet.train()
        self.text_encoder.train()
        self.cond = latents.cond
        self.source_z = latents.cond * latents.scaling
        self.target_z = latents.targets * latents.scaling

    def save(self, output_dir: Path, iqr_ratio: float) -> None:
        """Save the pipeline, with the EMA weights in place of the trained ones when ``ema_decay`` > 0, and
        the relevance settings it recommends.

        Args:
            output_dir (Path): the editor's folder.
            iqr_ratio (float): the IQR ratio written to its ``relevance_settings.json``.
        """
        from relevance_nerf2nerf.diffusion.settings import RELEVANCE_SETTINGS_FILE
        from relevance_nerf2nerf.outputs import atomic_write
        from relevance_nerf2nerf.toy_editor.build import save_pipeline

        if self.ema is None:
            save_pipeline(output_dir, self.components)
        else:
            self.ema.store(self.params)
            self.ema.copy_to(self.params)
            save_pipeline(output_dir, self.components)
            self.ema.restore(self.params)
        settings = json.dumps({"iqr_ratio": iqr_ratio}) + "\n"
        atomic_write(Path(output_dir) / RELEVANCE_SETTINGS_FILE, lambda path: path.write_text(settings))

    def set_learning_rate(self, step: int, total: int) -> None:
        """Linear warm-up, then cosine decay from ``lr`` to ``min_lr`` over ``total`` steps."""
        cfg = self.cfg
        warm = min(1.0, (step + 1) / cfg.warmup_steps)
        progress_frac = min(1.0, step / max(1, total))
        lr = warm * (cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress_frac)))
        for group in self.optimiser.param_groups:
            group["lr"] = lr

    def conditioned_batch(self) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """A random batch of (clean target latents, image conditioning, instructions) with IP2P's dropout.

        Dropped text is empty; for ``identity_fraction`` of those (with the image kept) the target is the
        unedited source. Dropped images are zero latents.
        """
        cfg, gen, data = self.cfg, self.gen, self.data
        k = torch.randint(len(data), (cfg.batch_size,), generator=gen)
        src = data.source_index[k]
        z0 = self.target_z[k].clone()
        c = self.cond[src].clone()
        texts = [data.instructions[i] for i in k.tolist()]
        u = torch.rand(cfg.batch_size, generator=gen)
        identity = torch.rand(cfg.batch_size, generator=gen) < cfg.identity_fraction
        no_text = u < cfg.drop_text + cfg.drop_both
        no_image = (u >= cfg.drop_text) & (u < cfg.drop_text + cfg.drop_both + cfg.drop_image)
        for i in range(cfg.batch_size):
            if no_text[i]:
                texts[i] = ""
                if identity[i] and not no_image[i]:
                    z0[i] = self.source_z[src[i]]
        c[no_image] = 0.0
        return z0, c, texts

    def embed(self, texts: list[str]) -> torch.Tensor:
        """Text encoder states of ``texts`` (padded to the tokenizer's maximum length)."""
        tokenizer = self.components["tokenizer"]
        ids = tokenizer(
            texts,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids)[0]

    def step(self, step: int, total: int) -> float:
        """One optimisation step (learning rate of ``step`` of ``total``); returns the loss."""
        cfg = self.cfg
        self.set_learning_rate(step, total)
        z0, c, texts = self.conditioned_batch()
        t = sample_timesteps(cfg.batch_size, cfg, len(self.alphas), self.gen)
        a = self.alphas[t].view(-1, 1, 1, 1)
        noise = torch.randn(z0.shape, generator=self.gen)
        z_t = a.sqrt() * z0 + (1 - a).sqrt() * noise
        if cfg.prediction_type == "v_prediction":
            target = a.sqrt() * noise - (1 - a).sqrt() * z0
        elif cfg.prediction_type == "sample":
            target = z0
        else:
            target = noise
        pred = self.unet(torch.cat([z_t, c], dim=1), t, encoder_hidden_states=self.embed(texts)).sample
        loss = F.mse_loss(pred, target)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimiser.step()
        if self.ema is not None:
            self.ema.step(self.params)
        return loss.item()


def _editor_phase(
    training: _EditorTraining, cfg: TrainConfig, log: Logger, output_dir: Path
) -> tuple[int, list[float]]:
    """Phase 2's loop: ``unet_steps`` steps (or as many as fit ``unet_minutes``), with periodic checkpoints.

    Returns the number of steps taken and the loss of each.
    """
    total = cfg.unet_steps
    t0 = time.perf_counter()
    losses: list[float] = []
    with _progress() as progress:
        task = progress.add_task("editor", total=total or None, info="")
        step = 0
        while total == 0 or step < total:
            losses.append(training.step(step, total or 10**9))
            step += 1
            if total == 0 and step == 30:
                per_step = (time.perf_counter() - t0) / step
                total = max(step + 1, int(cfg.unet_minutes * 60 / per_step))
                log(f"{per_step:.3f} s/step on {step} steps: {total} steps fit {cfg.unet_minutes} min")
                progress.update(task, total=total)
            window = losses[-50:]
            progress.update(task, advance=1, info=f"loss {sum(window) / len(window):.4f}")
            if step % cfg.checkpoint_every == 0 and step != total:
                training.save(output_dir, cfg.relevance_iqr_ratio)
                log(f"checkpoint saved at step {step}")
            if step % 200 == 0 or step == total:
                average, seconds = sum(window) / len(window), time.perf_counter() - t0
                log(f"editor step {step}/{total}: loss(avg50) {average:.4f} ({seconds:.0f}s)")
    log(f"editor training: {step} steps in {time.perf_counter() - t0:.0f}s")
    return step, losses


def main() -> None:
    """Command line: parse :class:`TrainConfig` with tyro and train."""
    import tyro

    train(tyro.cli(TrainConfig))


if __name__ == "__main__":
    main()
