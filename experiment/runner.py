"""A whole training run: device, optional DDP, data, checkpoints and resume, and the run folder.

The run folder (OUT) ends up holding checkpoint.pt (after every epoch), mnist_cnn.pt (the final
state_dict), the three figures, report.md and, written last, metrics.json: its presence means the
run finished (the instance's boot script relies on that to decide whether to resume).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Subset
from tqdm.auto import tqdm

from config.experiment import ExperimentConfig
from experiment import data as mnist
from experiment.train import Net, evaluate, train_one_epoch

CHECKPOINT, MODEL, METRICS = "checkpoint.pt", "mnist_cnn.pt", "metrics.json"
# --quick: a smoke run of one short epoch, enough to exercise every code path in seconds.
QUICK_TRAIN_IMAGES, QUICK_TEST_IMAGES = 1280, 1000
# Settings a checkpoint must share with the run that resumes it, or the result would silently differ.
RESUME_MUST_MATCH = ("batch_size", "lr", "momentum", "seed", "loader")


class RunError(Exception):
    """A run cannot start as asked (bad device, incompatible checkpoint); the message says what to change."""


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_env() -> Dist:
    """torchrun's RANK/WORLD_SIZE/LOCAL_RANK, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda, then mps, then cpu. A forced device that is not there is an error, not a silent CPU run."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RunError("--device cuda was asked for but torch sees no CUDA GPU; use --device auto or cpu.")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps" and not has_mps:
        raise RunError("--device mps was asked for but this torch has no MPS backend; use --device auto or cpu.")
    return torch.device(name)


def amp_dtype_for(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if device.type != "cuda":
        raise RunError(f"--amp {amp} needs a CUDA GPU but the run is on {device}; use --amp off.")
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise RunError(f"--amp bf16 is not supported by {torch.cuda.get_device_name(device)}; use --amp fp16.")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def make_scaler(amp: str):
    if amp != "fp16":
        return None
    scaler_cls = getattr(torch.amp, "GradScaler", None)
    return scaler_cls("cuda") if scaler_cls is not None else torch.cuda.amp.GradScaler()


def atomic_write_bytes(path: Path, write) -> None:
    """write(tmp_path) then rename over path: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(obj, path: Path) -> None:
    atomic_write_bytes(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def machine_facts(device: torch.device) -> dict:
    facts = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda"] = torch.version.cuda
    return facts


class Pipeline:
    """Train and test batches for one loader choice, sharded for this rank."""

    def __init__(
        self, cfg: ExperimentConfig, data_dir: Path, device: torch.device, ddp: Dist, *, quick: bool, download: bool
    ):
        self.cfg, self.device, self.ddp = cfg, device, ddp
        n_train = QUICK_TRAIN_IMAGES if quick else None
        n_test = QUICK_TEST_IMAGES if quick else None
        transform = mnist.tutorial_transform() if cfg.loader == "torchvision" else None
        # Rank 0 downloads (if it must); the others read what it wrote.
        if ddp.main:
            train_ds = mnist.load_mnist(data_dir, True, download=download, transform=transform)
            test_ds = mnist.load_mnist(data_dir, False, download=download, transform=transform)
        if ddp.world_size > 1:
            dist.barrier()
        if not ddp.main:
            train_ds = mnist.load_mnist(data_dir, True, download=False, transform=transform)
            test_ds = mnist.load_mnist(data_dir, False, download=False, transform=transform)
        self.test_dataset = test_ds
        if cfg.loader == "tensor":
            self.x_train, self.y_train = mnist.normalized_tensor(train_ds, device, n_train)
            self.x_test, self.y_test = mnist.normalized_tensor(test_ds, device, n_test)
            self.n_train = len(self.x_train)
        else:
            self.train_ds = Subset(train_ds, range(min(n_train, len(train_ds)))) if n_train else train_ds
            self.test_ds = Subset(test_ds, range(min(n_test, len(test_ds)))) if n_test else test_ds
            self.n_train = len(self.train_ds)

    def train_batches(self, epoch: int, generator: torch.Generator):
        cfg, ddp = self.cfg, self.ddp
        if cfg.loader == "tensor":
            return mnist.tensor_batches(
                self.x_train,
                self.y_train,
                cfg.batch_size,
                generator=generator,
                rank=ddp.rank,
                world_size=ddp.world_size,
            )
        loader = mnist.torchvision_loader(
            self.train_ds,
            cfg.batch_size,
            shuffle=True,
            generator=generator,
            rank=ddp.rank,
            world_size=ddp.world_size,
            seed=cfg.seed,
        )
        if ddp.world_size > 1:
            loader.sampler.set_epoch(epoch)
        return loader

    def test_batches(self):
        cfg, ddp = self.cfg, self.ddp
        if cfg.loader == "tensor":
            return mnist.tensor_batches(
                self.x_test, self.y_test, cfg.test_batch_size, rank=ddp.rank, world_size=ddp.world_size
            )
        return mnist.torchvision_loader(
            self.test_ds, cfg.test_batch_size, shuffle=False, rank=ddp.rank, world_size=ddp.world_size
        )

    def steps_per_epoch(self) -> int:
        return mnist.num_batches(self.n_train, self.cfg.batch_size, self.ddp.world_size)


def _reduce_eval(result: dict, device: torch.device, ddp: Dist) -> dict:
    """Sum loss, hits and images over ranks (each evaluated its own shard of the test set)."""
    if ddp.world_size == 1:
        return result
    t = torch.tensor([result["loss_sum"], result["correct"], result["images"]], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    loss_sum, correct, images = t.tolist()
    seconds = result["seconds"]
    return {
        **result,
        "loss": loss_sum / images,
        "accuracy": 100.0 * correct / images,
        "loss_sum": loss_sum,
        "correct": int(correct),
        "images": int(images),
        "images_per_s": images / seconds if seconds else 0.0,
    }


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load_checkpoint(path: Path, cfg: ExperimentConfig, world_size: int, quick: bool) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file: say which, and what to do
        raise RunError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); delete it to start "
            f"fresh, or point --output-dir elsewhere."
        ) from err
    saved = ExperimentConfig.model_validate(ckpt["config"])
    diffs = [
        f"{k}: checkpoint {getattr(saved, k)!r}, now {getattr(cfg, k)!r}"
        for k in RESUME_MUST_MATCH
        if getattr(saved, k) != getattr(cfg, k)
    ]
    if ckpt.get("world_size", 1) != world_size:
        diffs.append(f"world_size: checkpoint {ckpt.get('world_size', 1)}, now {world_size}")
    if ckpt.get("quick", False) != quick:
        diffs.append(f"quick: checkpoint {ckpt.get('quick', False)}, now {quick}")
    if diffs:
        raise RunError(
            f"cannot resume from {path}: it was made with other settings ({'; '.join(diffs)}). Use the "
            f"same settings, or drop --resume / choose another --output-dir to start fresh."
        )
    return ckpt


def fit(
    cfg: ExperimentConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    resume: bool = False,
    quick: bool = False,
    download: bool = True,
    progress: bool = True,
    log=print,
) -> dict:
    """Train cfg.epochs epochs (or the rest of them with resume), evaluate after each, write the run folder.

    Returns the metrics written to OUT/metrics.json (on every rank; only rank 0 writes files)."""
    started = time.perf_counter()
    ddp = distributed_env()
    device = resolve_device(cfg.device, ddp.local_rank)
    if ddp.world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    amp_dtype = amp_dtype_for(cfg.amp, device)
    out_dir = Path(out_dir)
    say = log if ddp.main else (lambda *a, **k: None)
    if ddp.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / METRICS).unlink(missing_ok=True)  # its presence means "finished"; this run has not yet
    try:
        # Same seed on every rank: identical initial weights (DDP checks) and one shared shuffle order to shard.
        torch.manual_seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        pipeline = Pipeline(cfg, data_dir, device, ddp, quick=quick, download=download)
        model = Net().to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        scaler = make_scaler(cfg.amp)
        history, curve, first_epoch = [], [], 1

        ckpt_path = out_dir / CHECKPOINT
        if resume and ckpt_path.exists():
            ckpt = _load_checkpoint(ckpt_path, cfg, ddp.world_size, quick)
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            _set_rng_state(ckpt["rng"], generator)
            history, curve, first_epoch = ckpt["history"], ckpt["train_losses"], ckpt["epoch"] + 1
            say(f"Resuming from {ckpt_path}: epoch {ckpt['epoch']} of {cfg.epochs} done.")
        elif resume:
            say(f"--resume: no checkpoint at {ckpt_path}; starting fresh.")

        net = model
        if ddp.world_size > 1:
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

        steps = pipeline.steps_per_epoch()
        per_rank_images = -(-pipeline.n_train // ddp.world_size)
        for epoch in range(first_epoch, cfg.epochs + 1):
            bar = tqdm(
                total=per_rank_images,
                unit="img",
                unit_scale=True,
                desc=f"epoch {epoch}/{cfg.epochs}",
                disable=not (progress and ddp.main),
                leave=False,
                dynamic_ncols=True,
            )

            def on_log(i: int, loss: float, epoch: int = epoch, bar=bar) -> None:
                bar.set_postfix(loss=f"{loss:.4f}")
                if ddp.main:
                    seen = i * cfg.batch_size
                    msg = (
                        f"Train Epoch: {epoch} [{seen}/{pipeline.n_train // ddp.world_size} "
                        f"({100.0 * i / steps:.0f}%)]\tLoss: {loss:.6f}"
                    )
                    if progress:
                        bar.write(msg)  # above the bar, which keeps its place
                    else:
                        say(msg)

            batches = _counted(pipeline.train_batches(epoch, generator), bar)
            train = train_one_epoch(
                net,
                batches,
                optimizer,
                device,
                amp_dtype=amp_dtype,
                scaler=scaler,
                log_interval=cfg.log_interval,
                on_log=on_log,
            )
            bar.close()
            test = _reduce_eval(evaluate(net, pipeline.test_batches(), device, amp_dtype=amp_dtype), device, ddp)
            row = {
                "epoch": epoch,
                "train_loss": train["loss"],
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "train_images_per_s": train["images_per_s"] * ddp.world_size,
                "eval_images_per_s": test["images_per_s"],
                "train_seconds": train["seconds"],
                "eval_seconds": test["seconds"],
            }
            history.append(row)
            curve.extend(train["losses"])
            say(
                f"Epoch {epoch}: train loss {row['train_loss']:.4f}, test loss {test['loss']:.4f}, accuracy "
                f"{test['correct']}/{test['images']} ({test['accuracy']:.2f}%), {row['train_images_per_s']:.0f} img/s"
            )
            if ddp.main:
                atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "epoch": epoch,
                        "rng": _rng_state(generator),
                        "history": history,
                        "train_losses": curve,
                        "config": cfg.model_dump(),
                        "world_size": ddp.world_size,
                        "quick": quick,
                    },
                    ckpt_path,
                )

        metrics = None
        if ddp.main:
            metrics = _finish(
                cfg,
                model,
                pipeline,
                device,
                ddp,
                out_dir,
                history,
                curve,
                started,
                quick,
                resumed_from=first_epoch - 1 if first_epoch > 1 else None,
                amp_dtype=amp_dtype,
            )
            say(
                f"Done: test accuracy {metrics['test_accuracy']:.2f}%, {metrics['train_images_per_s']:.0f} train "
                f"img/s on {metrics['device']} x{ddp.world_size}. Results in {out_dir}"
            )
        if ddp.world_size > 1:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        return metrics
    finally:
        if ddp.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _counted(batches, bar):
    """Advance the bar by each batch's images as it is consumed (images/s in the bar, no per-step sync)."""
    for data, target in batches:
        bar.update(len(target))
        yield data, target


def _finish(
    cfg, model, pipeline, device, ddp, out_dir, history, curve, started, quick, *, resumed_from, amp_dtype
) -> dict:
    from experiment import report  # matplotlib only when there is something to draw

    atomic_save(model.state_dict(), out_dir / MODEL)
    images, labels = report.first_test_images(pipeline.test_dataset, 10)
    with torch.no_grad():
        model.eval()
        predicted = model(images.to(device)).argmax(dim=1).cpu()
    figures = report.draw_figures(out_dir, curve, images, labels, predicted)
    train_seconds = sum(r["train_seconds"] for r in history)
    train_images = sum(r["train_images_per_s"] * r["train_seconds"] for r in history)
    eval_seconds = sum(r["eval_seconds"] for r in history)
    eval_images = sum(r["eval_images_per_s"] * r["eval_seconds"] for r in history)
    last = history[-1]
    metrics = {
        "test_accuracy": last["test_accuracy"],
        "test_loss": last["test_loss"],
        "train_loss": last["train_loss"],
        "train_images_per_s": train_images / train_seconds if train_seconds else 0.0,
        "eval_images_per_s": eval_images / eval_seconds if eval_seconds else 0.0,
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "epochs": cfg.epochs,
        "device": device.type,
        "world_size": ddp.world_size,
        "loader": cfg.loader,
        "amp": cfg.amp,
        "quick": quick,
        "resumed_from_epoch": resumed_from,
        "torch_version": torch.__version__,
        "machine": machine_facts(device),
        "command": " ".join(sys.argv),
        "config": cfg.model_dump(by_alias=True),
        "per_epoch": history,
        "train_losses": curve,
        "files": {"model": MODEL, "checkpoint": CHECKPOINT, **figures, "report": "report.md"},
    }
    report.write_report(out_dir / "report.md", metrics, figures)
    atomic_write_json(out_dir / METRICS, metrics)  # last: its presence means the run finished
    return metrics
