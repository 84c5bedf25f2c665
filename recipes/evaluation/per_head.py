"""Where the gain from more source frames comes from: head PSNR per held-out head for an evaluation config.

    python recipes/evaluation/per_head.py recipes/evaluation/longer-prior.yaml [--models a,b] [--frames 1,4]

Runs the config's ``few_shot`` protocol one head at a time (``invertavatar evaluate`` reports the mean
over heads) and prints one row per head: the camera yaw of its first source frame and of its scored
frames (``invertavatar_faceverse.fit_report.head_angles``), and each model's head PSNR at each K.
The models are loaded once; seconds per model on 8 heads.
"""

import argparse
import sys

import torch

from invertavatar_core.config.compute import apply_threads, prepare_threads
from invertavatar_core.config.experiment import default_registry, load_experiment
from invertavatar_core.data.datasets import open_dataset
from invertavatar_core.evaluation.runner import build_models_under_test, evaluate
from invertavatar_faceverse.fit_report import head_angles


class OneSequence:
    """A dataset view exposing one of its sequences (frames keep their dataset indices)."""

    def __init__(self, dataset, name: str) -> None:
        self.dataset, self.name = dataset, name

    def sequences(self) -> dict[str, list[int]]:
        return {self.name: self.dataset.sequences()[self.name]}

    def __getitem__(self, index: int):
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="an evaluation config with a few_shot protocol (recipes/evaluation/*.yaml)")
    parser.add_argument("--models", help="comma-separated model labels (default: all but copy_source)")
    parser.add_argument("--frames", default="1,4", help="comma-separated K (default: 1,4)")
    args = parser.parse_args(argv)
    apply_threads(prepare_threads())  # the CLI's policy: INVERTAVATAR_THREADS, else 1, workers sleep
    registry = default_registry()
    experiment = load_experiment(args.config, registry)
    ks = [int(k) for k in args.frames.split(",")]
    protocols = [p for p in experiment.evaluation.protocols if p.name == "few_shot"]
    if not protocols:
        print(f"{args.config}: evaluation.protocols has no few_shot protocol", file=sys.stderr)
        return 2
    protocol = protocols[0].model_copy(update={"source_frames": tuple(ks)})
    wanted = args.models.split(",") if args.models else None
    models = [m for m in experiment.evaluation.models if (m.label in wanted if wanted else m.label != "copy_source")]
    if not models:
        labels = ", ".join(m.label for m in experiment.evaluation.models) or "none"
        print(f"{args.config}: no model to run (--models {args.models}); its models: {labels}", file=sys.stderr)
        return 2
    metrics = [m for m in experiment.evaluation.metrics if m.name == "head_psnr"]
    if not metrics:
        print(f"{args.config}: evaluation.metrics has no head_psnr", file=sys.stderr)
        return 2
    evaluation = experiment.evaluation.model_copy(
        update={"protocols": (protocol,), "models": tuple(models), "metrics": tuple(metrics), "qualitative_examples": 0}
    )
    experiment = experiment.model_copy(update={"evaluation": evaluation})
    dataset = open_dataset(experiment.data.root, image_resolution=experiment.data.image_resolution)
    built = list(build_models_under_test(experiment, registry))  # once, not once per head
    columns = [f"{m.label} K={k}" for m in models for k in ks]
    print("| head | yaw of frame 0 | yaw of scored frames | " + " | ".join(columns) + " |")
    print("|---" * (3 + len(columns)) + "|")
    for name, indices in dataset.sequences().items():
        cameras = torch.cat([dataset[i].camera for i in (indices[0], *indices[-protocol.eval_frames :])])
        yaw = head_angles(cameras)[:, 0]  # first source frame, then the scored frames
        report = evaluate(experiment, registry, OneSequence(dataset, name), models=built, progress=False)
        value = {(r["model"], r["source_frames"]): r["head_psnr"] for r in report.rows}
        cells = [f"{value[(m.label, k)]:.2f}" for m in models for k in ks]
        yaws = f"{yaw[0]:.0f} | {yaw[1:].min():.0f} .. {yaw[1:].max():.0f}"
        print(f"| {name} | {yaws} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
