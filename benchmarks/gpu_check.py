"""The GPU check: one command, a few minutes on one GPU, then a table for the issue's note.

    python benchmarks/gpu_check.py [--steps 200] [--images 50000] [--json gpu_check.json] [--device cpu]

Needs only torch, torchvision, numpy, pandas, pyarrow, pillow, scipy, scikit-learn, pydantic, pyyaml and tqdm
(no pytest, DVC or Prefect): run it from a checkout with ``PYTHONPATH=.``. It

1. runs the generator contract on CUDA for every registered generator (shapes and range, one image per seed
   whatever the batching, checkpoint round trip, networks/optimizers partition, a training step with each
   fast-path switch), printing PASS/FAIL per check;
2. checks that the latent noise a generator uses on the GPU is bit-identical to the CPU's (it is drawn on the
   CPU by design) and reports whether computing it on the GPU would be, and how far CPU and GPU images differ;
3. trains the MNIST cGAN profile for ``--steps`` steps with each fast-path switch off and on (fp32,
   channels_last, bf16, compile, all three): train images/s and peak GPU memory;
4. samples ``--images`` images to uint8 in memory and through the sample stage's shard writer to disk;
5. extracts domain features of ``--images`` images and computes a Fréchet distance.

Exit status 1 if any contract check failed. MNIST from ``../shared/datasets/mnist`` when present, else random
28x28 images (speed does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthdata import checkpoint, generators  # noqa: E402
from synthdata.classifier import SmallCNN  # noqa: E402
from synthdata.generators.noise import noise  # noqa: E402
from synthdata.metrics.fid import FeatureStats, frechet_distance  # noqa: E402
from synthdata.params import load_params  # noqa: E402
from synthdata.shards import ShardJob, make_shard  # noqa: E402
from synthdata.trainer import Trainer  # noqa: E402

CUDA = torch.device("cuda")  # --device cpu: a smoke run of this script where no GPU is (numbers meaningless)
SWITCHES = {
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"bf16": True},
    "compile": {"compile": True},
    "all three": {"channels_last": True, "bf16": True, "compile": True},
}
RESULTS: dict[str, object] = {"checks": {}}


def check(name: str, fn) -> None:
    try:
        fn()
        RESULTS["checks"][name] = "PASS"
    except Exception as exc:  # report every failure, keep going
        RESULTS["checks"][name] = f"FAIL: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        traceback.print_exc(limit=3)
    print(f"{RESULTS['checks'][name][:4]}  {name}", flush=True)


def tiny(name: str, shape=(1, 8, 8)) -> generators.Generator:
    cls = generators.get(name)
    torch.manual_seed(0)
    sizes = {"width": 8, "latent_dim": 8, "batch_size": 16, "ema_start": 1}
    return cls(cls.Config(**{k: v for k, v in sizes.items() if k in cls.Config.model_fields}), shape, 3)


def trainer(model, images, labels, name, **switches) -> Trainer:
    if switches.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    t = Trainer(
        model, model.make_optimizers(), images, labels, 0, name, channels_last=bool(switches.get("channels_last"))
    )
    t.bf16, t.compile = bool(switches.get("bf16")), bool(switches.get("compile"))
    return t


def contract(name: str) -> None:
    def shapes():
        for shape in ((1, 8, 8), (3, 12, 10), (1, 28, 28)):
            out = tiny(name, shape).to(CUDA).generate([0, 1, 2, 1], seed=3)
            assert out.shape == (4, *shape) and out.dtype == torch.uint8, out.shape

    def batching():
        model = tiny(name).to(CUDA)
        labels = torch.arange(150) % 3
        whole = model.generate(labels, seed=11)
        parts = torch.cat([model.generate(labels[i : i + 7], seed=11 + i) for i in range(0, 150, 7)])
        assert torch.equal(whole, parts), "an image depends on how the call was batched"

    def round_trip():
        model = tiny(name).to(CUDA)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint.save(Path(tmp), model, model.make_optimizers(), 0, {"class_names": ["a", "b", "c"]})
            again = checkpoint.load_generator(tmp, device=CUDA)
        assert torch.equal(model.generate([0, 1, 2], 5), again.generate([0, 1, 2], 5))

    def partition():
        model = tiny(name)
        nets, opts = model.networks(), model.make_optimizers()
        seen = [id(p) for net in nets.values() for p in net.parameters()]
        assert len(seen) == len(set(seen)) and set(nets) == set(opts)

    def steps(switches):
        def run():
            model = tiny(name).to(CUDA)
            images = torch.randint(0, 256, (48, 1, 8, 8), dtype=torch.uint8, device=CUDA)
            t = trainer(model, images, torch.arange(48, device=CUDA) % 3, name, **switches)
            before = copy.deepcopy(model.state_dict())
            t.fit(0, 3)
            after = model.state_dict()
            assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
            assert any(not torch.equal(after[k], before[k]) for k in after), "no weight changed"

        return run

    check(f"{name}: shapes, dtype", shapes)
    check(f"{name}: one image per seed, whatever the batching", batching)
    check(f"{name}: checkpoint round trip on CUDA", round_trip)
    check(f"{name}: networks/optimizers partition", partition)
    for label, switches in SWITCHES.items():
        check(f"{name}: training steps, {label}", steps(switches))


def noise_check() -> None:
    seeds = torch.arange(4096, dtype=torch.int64) * 7919
    cpu = noise((64,), seeds)
    RESULTS["noise_on_gpu_bit_identical"] = bool(torch.equal(noise((64,), seeds.to(CUDA)).cpu(), cpu))
    model = tiny("cgan", (1, 28, 28))
    a = model.generate(torch.arange(256) % 3, 0)
    b = model.to(CUDA).generate(torch.arange(256) % 3, 0)
    RESULTS["cpu_vs_gpu_max_pixel_diff"] = int((a.int() - b.int()).abs().max())

    def used_noise_is_the_cpu_noise():
        # the generators draw their latent noise on the CPU from the recorded seeds, then move it
        from synthdata.generators.noise import latent_noise

        assert torch.equal(latent_noise(seeds, 32).to(CUDA).cpu(), latent_noise(seeds, 32))

    check("latent noise used on the GPU is the CPU's, bit for bit", used_noise_is_the_cpu_noise)


def mnist(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    folder = REPO.parent / "shared" / "datasets" / "mnist"
    if folder.is_dir():
        from synthdata.sources.mnist import FILES, _find, read_idx

        x = torch.from_numpy(read_idx(_find(folder, FILES[("train", "images")])).copy())[:, None]
        y = torch.from_numpy(read_idx(_find(folder, FILES[("train", "labels")])).astype("int64"))
        return x, y
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10


def train_speed(steps: int) -> None:
    params = load_params(REPO / "params-mnist.yaml")
    cfg = params.generator_config("cgan")
    x, y = mnist(60_000)
    x, y = x.to(CUDA), y.to(CUDA)
    rows = {}
    for label, switches in SWITCHES.items():
        torch.manual_seed(0)
        model = generators.get("cgan")(cfg, (1, 28, 28), 10).to(CUDA)
        t = trainer(model, x, y, "cgan", **switches)
        t.fit(0, 20)  # warm-up (and compilation)
        sync(reset=True)
        start = time.perf_counter()
        t.fit(20, 20 + steps)
        sync()
        seconds = time.perf_counter() - start
        rows[label] = {
            "train_img_per_s": round(steps * cfg.batch_size / seconds),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if CUDA.type == "cuda" else None,
        }
        print(f"train {label}: {rows[label]}", flush=True)
    RESULTS["train"] = rows


def sample_speed(images: int) -> None:
    params = load_params(REPO / "params-mnist.yaml")
    torch.manual_seed(0)
    model = generators.get("cgan")(params.generator_config("cgan"), (1, 28, 28), 10).to(CUDA)
    labels, seeds = torch.arange(images) % 10, torch.arange(images, dtype=torch.int64)
    model.generate_from_seeds(labels[:1024], seeds[:1024])
    sync()
    start = time.perf_counter()
    model.generate_from_seeds(labels, seeds)
    RESULTS["sample_uint8_in_memory_img_per_s"] = round(images / (time.perf_counter() - start))
    with tempfile.TemporaryDirectory() as tmp:
        sha = checkpoint.save(Path(tmp), model.cpu(), model.make_optimizers(), 0, {"class_names": list("0123456789")})
        job = ShardJob(
            checkpoint=str(Path(tmp) / checkpoint.FILE),
            root=str(Path(tmp) / "out"),
            checkpoint_sha256=sha,
            name="cgan",
            class_names=tuple("0123456789"),
            counts=(images // 10,) * 10,
            seed=0,
            shard_size=10_000,
            device=CUDA.type,
        )
        make_shard(job, 0)  # warm: loads the model onto the GPU once
        start = time.perf_counter()
        for k in range(job.shards):
            make_shard(job, k)
        RESULTS["sample_to_disk_png_img_per_s"] = round(job.total / (time.perf_counter() - start))


def feature_speed(images: int) -> None:
    net = SmallCNN(1, 10, (28, 28), 16, 64).to(CUDA).eval()
    x, _ = mnist(images)
    x = x[:images]
    with torch.no_grad():
        sync()
        start = time.perf_counter()
        feats = torch.cat(
            [net.features(SmallCNN.normalize(x[i : i + 500].to(CUDA))).double().cpu() for i in range(0, len(x), 500)]
        ).numpy()
        extract = time.perf_counter() - start
    start = time.perf_counter()
    half = len(feats) // 2
    frechet_distance(FeatureStats.of(feats[:half]), FeatureStats.of(feats[half:]))
    RESULTS["features"] = {
        "images": len(feats),
        "extract_s": round(extract, 2),
        "frechet_s": round(time.perf_counter() - start, 3),
    }


def sync(reset: bool = False) -> None:
    if CUDA.type == "cuda":
        torch.cuda.synchronize()
        if reset:
            torch.cuda.reset_peak_memory_stats()


def table() -> str:
    lines = ["| switches | train img/s | peak GPU memory (GiB) |", "| --- | --- | --- |"]
    for label, row in RESULTS.get("train", {}).items():
        lines.append(f"| {label} | {row['train_img_per_s']:,} | {row['peak_gib']} |")
    lines += [
        "",
        f"- sampling to uint8 in memory: {RESULTS.get('sample_uint8_in_memory_img_per_s', 'n/a')} img/s; "
        f"to disk (PNG shards): {RESULTS.get('sample_to_disk_png_img_per_s', 'n/a')} img/s",
        f"- features + Fréchet: {RESULTS.get('features', 'n/a')}",
        f"- noise computed on the GPU bit-identical to the CPU's: {RESULTS.get('noise_on_gpu_bit_identical')}; "
        f"CPU vs GPU images: max pixel difference {RESULTS.get('cpu_vs_gpu_max_pixel_diff')}",
        f"- contract checks: {sum(v == 'PASS' for v in RESULTS['checks'].values())} of {len(RESULTS['checks'])} pass",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--json", default="gpu_check.json")
    p.add_argument("--device", default="cuda", help="cpu: a smoke run of the script itself")
    args = p.parse_args()
    global CUDA
    CUDA = torch.device(args.device)
    if CUDA.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; run it on a GPU machine", file=sys.stderr)
        return 2
    RESULTS["device"] = torch.cuda.get_device_name(0) if CUDA.type == "cuda" else "cpu (smoke run)"
    RESULTS["torch"] = torch.__version__
    t0 = time.perf_counter()
    for name in generators.generator_names():
        contract(name)
    noise_check()
    for part, fn in (("train", lambda: train_speed(args.steps)), ("sample", lambda: sample_speed(args.images))):
        check(f"benchmark: {part}", fn)
    check("benchmark: features", lambda: feature_speed(args.images))
    RESULTS["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.json).write_text(json.dumps(RESULTS, indent=2))
    print(f"\n{RESULTS['device']}, torch {RESULTS['torch']}, {RESULTS['seconds']} s\n\n{table()}")
    return 1 if any(v != "PASS" for v in RESULTS["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
