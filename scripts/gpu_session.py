"""Everything a lent GPU is for in this project, in one call under one deadline (issues 20 and 25).

1. the environment (GPU, driver, torch, ONNX Runtime providers);
2. issue 20 part 4: ``gpu_proxy_bench.py`` (MIMO widths 1/2/4 against the plain twins, 1-64 streams);
3. issue 25: ``gpu_preprocess_bench.py`` (numpy path against in-graph preprocessing, on the GPU);
4. issue 20's study scaled up: the ``--arms`` runs trained side by side on the GPU (one process each), all with the
   same number of epochs, as many as the time left allows (capped by ``--max-epochs``), measured from one
   calibration epoch. The speed benches run first, never while training runs.

Everything lands in ``--out`` (``log.txt``, the benches' JSON, ``study-gpu.tar.gz`` with the trained models for
``superposition_study.py evaluate`` on the CPU, and the checkpoints of runs the deadline interrupted). On the lent
machine, with Fashion-MNIST's IDX files carried:

    python scripts/gpu_session.py --data .gpu/fashion-mnist --out $OUT --seconds 530

A budget larger than one lease: ``--epochs 192 --only ours/twin,n2`` trains until the deadline and packs the
checkpoints; a later session carries that archive and runs the same command (the same ``--epochs``: the schedule
spans them) with ``--resume .gpu/study-gpu.tar.gz --no-benches`` added.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "scripts" / "superposition_study.py"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def stage_package(where: Path) -> Path:
    """The checkout laid out as the wheel installs it (calibration/ and targets/ inside the package), at ``where``,
    so that the scripts import it by PYTHONPATH on a machine where nothing can be installed."""
    shutil.rmtree(where, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "edge_mimo", where / "edge_mimo", ignore=ignore)
    for data in ("calibration", "targets"):
        shutil.copytree(ROOT / data, where / "edge_mimo" / data, ignore=ignore)
    return where


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, help="a folder of Fashion-MNIST's IDX files, copied to where datasets.py looks")
    p.add_argument("--seconds", type=float, default=530, help="the whole session's deadline")
    p.add_argument("--arms", default="ours,n2,fixed-keys", help="study arms (each with its twin)")
    p.add_argument("--only", default="ours/twin,ours,n2,fixed-keys", help="the study runs to train")
    p.add_argument("--max-epochs", type=int, default=60, help="the most epochs a calibrated run may take")
    p.add_argument("--epochs", type=int, default=0, help="train this many epochs instead of calibrating: a budget "
                   "larger than one lease, trained until the deadline and resumed in a later session (--resume)")
    p.add_argument("--resume", type=Path, help="a study-gpu.tar.gz an earlier session wrote (its checkpoints)")
    steps = p.add_mutually_exclusive_group()
    steps.add_argument("--benches-only", action="store_true", help="steps 1-3 only")
    steps.add_argument("--no-benches", action="store_true", help="steps 1 and 4 only (a resumed study)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke test of this script")
    p.add_argument("--study-root", type=Path, default=Path("/tmp/study-gpu"))
    args = p.parse_args()
    deadline = time.time() + args.seconds
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.txt", "a", buffering=1)
    env = dict(os.environ, PYTHONPATH=str(stage_package(Path("/tmp/edge-mimo-package"))), PYTHONUNBUFFERED="1")

    def say(text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} +{args.seconds - (deadline - time.time()):5.0f}s] {text}"
        print(line, flush=True)
        log.write(line + "\n")

    def run(cmd: list[str], seconds: float) -> None:
        """One step, its output in the log; a step that fails or times out does not stop the later ones."""
        say("$ " + " ".join(map(str, cmd)) + f"   (at most {seconds:.0f} s)")
        try:
            subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds)
        except subprocess.TimeoutExpired:
            say("   timed out")

    if args.data:
        FASHION_MNIST.mkdir(parents=True, exist_ok=True)
        for f in args.data.iterdir():
            shutil.copy(f, FASHION_MNIST / f.name)
    if shutil.which("nvidia-smi"):
        run(["nvidia-smi"], 20)
    run([sys.executable, "-c", "import torch, onnxruntime as o, numpy, cv2; print('torch', torch.__version__, "
         "torch.version.cuda, torch.cuda.is_available(), 'ort', o.__version__, o.get_available_providers(), "
         "'numpy', numpy.__version__, 'cv2', cv2.__version__)"], 60)
    small = args.device == "cpu"
    if not args.no_benches:
        run([sys.executable, "scripts/gpu_proxy_bench.py", "--device", args.device, "--dtype", "fp16",
             *(["--streams", "1,8", "--repeats", "3"] if small else []), "-o", str(args.out / "gpu_proxy.json")], 110)
        run([sys.executable, "scripts/gpu_preprocess_bench.py", "--device", args.device,
             *(["--repeats", "5"] if small else []), "-o", str(args.out / "gpu_preprocess.json")], 45)

    if args.benches_only:
        say("done")
        return
    only = [r for r in args.only.split(",") if r]

    def train_side_by_side(root: Path, epochs: int, seconds: float) -> None:
        """One process per run; at the deadline each is interrupted (it writes its checkpoint), then killed."""
        say(f"training {', '.join(only)} side by side, {epochs} epochs each, at most {seconds:.0f} s")
        procs = [subprocess.Popen([sys.executable, str(STUDY), "train", "--arms", args.arms, "--only", run_name,
                                   "--epochs", str(epochs), "--threads", "1", "--root", str(root)],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT) for run_name in only]
        end = time.time() + seconds
        for proc in procs:
            try:
                proc.wait(timeout=max(1.0, end - time.time()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                say(f"   interrupted a run at the deadline (pid {proc.pid}): it saves its checkpoint")
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def calibrated_epochs() -> int:
        """As many epochs as fit before the deadline, from one epoch of every run timed side by side."""
        calibration = Path("/tmp/study-calibration")
        started = time.time()
        train_side_by_side(calibration, 1, 150)
        wall = time.time() - started
        records = [calibration / run_name / "model" / "training.json" for run_name in only]
        if not all(r.exists() for r in records):
            say("calibration did not finish every run: no study training")
            return 0
        per_epoch = [json.loads(r.read_text())["history"]["seconds"] for r in records]
        overhead = wall - max(per_epoch)  # start-up, BN statistics, FP32 test accuracy, saving
        left = deadline - time.time() - overhead - 25.0
        step = 1 if small else 6  # whole multiples of 6 epochs on the GPU
        epochs = min(args.max_epochs, int(left / max(per_epoch)) // step * step)
        say(f"one epoch side by side: {', '.join(f'{s:.1f} s' for s in per_epoch)} (and {overhead:.0f} s around it); "
            f"{left:.0f} s left -> {epochs} epochs")
        return epochs if epochs >= 12 or (small and epochs >= 1) else 0

    if args.resume:
        with tarfile.open(args.resume) as tar:
            tar.extractall(args.study_root, filter="data")
        say(f"resumed {args.study_root} from {args.resume}")
    epochs = args.epochs or calibrated_epochs()
    if epochs:
        train_side_by_side(args.study_root, epochs, deadline - time.time() - 30.0)
    with tarfile.open(args.out / "study-gpu.tar.gz", "w:gz") as tar:  # finished models; unfinished: checkpoints
        for run_name in only:
            run_dir = args.study_root / run_name
            for item in ("model", "train.ckpt"):
                if (run_dir / item).exists():
                    tar.add(run_dir / item, arcname=f"{run_name}/{item}")
                    break
    say("wrote study-gpu.tar.gz")
    say("done")


if __name__ == "__main__":
    main()
