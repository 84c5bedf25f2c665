"""Held-out likeness of a prior: fit one w to 1 / 4 frames of each unseen head, score its other frames.

    OMP_NUM_THREADS=1 python recipes/eval_prior_heldout.py --prior runs/prior-supervised/prior \
        --data runs/data/synth-heldout --out recipes/results/prior-heldout [--identities 4] [--steps 100]

For each held-out identity: sources are frames 0 .. k-1 (k in --sources), targets the last
--targets frames of the sequence (other cameras, other expressions). Prints and writes
``heldout.csv`` (head PSNR per identity and k, plus the copy-the-source baseline: the first source
frame itself scored against each target over the target's head mask) and ``grid.png`` (rows:
identities; columns: source, fits from each k at the first target's pose, the target).
"""

import argparse
import csv
import sys
from pathlib import Path

import torch

from invertavatar_core.config.compute import apply_threads, prepare_threads
from invertavatar_core.config.experiment import default_registry
from invertavatar_core.data.datasets import open_dataset
from invertavatar_core.io.checkpoints import load_component
from invertavatar_core.io.media import save_grid
from invertavatar_prior_next3d.latent_fitting import fit_w, head_psnr


def main(argv: list[str] | None = None) -> int:
    """Fit, score, write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--identities", type=int, default=4)
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args(argv)
    apply_threads(prepare_threads())  # the CLI's policy: INVERTAVATAR_THREADS, else 1, workers sleep
    prior, _ = load_component(args.prior, default_registry(), "prior")
    prior.eval()
    info = prior.info
    dataset = open_dataset(args.data, image_resolution=info.image_resolution)
    rows, grid = [], []
    for name in list(dataset.sequences())[: args.identities]:
        frames = dataset.sequence(name)
        if frames.head_mask is None:
            print(f"{args.data}: no head_mask in {name}; write the data with synth-heads", file=sys.stderr)
            return 2
        targets = frames[len(frames) - args.targets :]
        with torch.no_grad():
            copy = head_psnr(frames.image[:1].expand_as(targets.image), targets.image, targets.head_mask)
        row = {"identity": name, "copy_source_psnr": round(float(copy.mean()), 3)}
        pictures = [frames.image[0]]
        for k in args.sources:
            src = frames[:k]
            ws = fit_w(prior, src.image, src.head_mask, src.camera, src.expression_uv, steps=args.steps)
            with torch.no_grad():
                features = prior.canonical(ws)
                render = prior.render(features, targets.expression_uv, targets.camera).image
            row[f"psnr_{k}"] = round(float(head_psnr(render, targets.image, targets.head_mask).mean()), 3)
            pictures.append(render[0])
        pictures.append(targets.image[0])
        grid += pictures
        rows.append(row)
        print(row, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "heldout.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    mean = {k: round(sum(r[k] for r in rows) / len(rows), 3) for k in rows[0] if k != "identity"}
    print("mean", mean)
    save_grid(torch.stack(grid).clamp(-1, 1), args.out / "grid.png", nrow=len(args.sources) + 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
