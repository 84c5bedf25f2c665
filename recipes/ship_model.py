"""Put a trained model into the package as the built-in model ``invertavatar demo`` uses by default.

    python recipes/ship_model.py runs/stage3 [--name synth-heads-tiny]

Loads the run's model checkpoint strictly (``InversionModels.load``), writes only the model parts
(``config.json``, ``prior/``, ``encoders/...``: no training state, logs or samples) into
``packages/core/src/invertavatar_core/pretrained/<name>/`` (replacing an earlier model there),
checks the 25 MB limit, reloads the copy and compares every tensor with the run's. Commit the folder
to ship it: the core wheel carries every file under its package (tests/packaging/test_wheels.py).
"""

import argparse
import shutil
import sys
from pathlib import Path

import torch

from invertavatar_core.config.experiment import default_registry
from invertavatar_core.inversion.models import InversionModels, is_model_checkpoint
from invertavatar_core.pretrained import BUILTIN_MODELS, DEFAULT_MODEL, MAX_SHIPPED_BYTES, pretrained_root, shipped_size

SLOTS = Path(__file__).resolve().parents[1] / "packages/core/src/invertavatar_core/pretrained"
"""The slot directory in this checkout (what the wheel is built from)."""


def main(argv: list[str] | None = None) -> int:
    """Copy, check, verify, report the size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="model checkpoint folder (a training run, e.g. runs/stage3)")
    parser.add_argument("--name", default=DEFAULT_MODEL, choices=sorted(BUILTIN_MODELS), help="slot name")
    args = parser.parse_args(argv)
    if not is_model_checkpoint(args.run):
        print(f"{args.run}: not a model checkpoint (config.json, prior/, encoders/latent/)", file=sys.stderr)
        return 2
    registry = default_registry()
    models = InversionModels.load(args.run, registry).eval()
    slot = SLOTS / args.name
    if slot.exists():
        if not is_model_checkpoint(slot):
            print(f"{slot}: exists and is no model checkpoint; nothing was changed", file=sys.stderr)
            return 2
        shutil.rmtree(slot)  # an earlier shipped model: parts it had and this one lacks must go too
    models.save(slot)
    size = shipped_size(slot)
    for part in sorted(p for p in slot.rglob("model.safetensors")):
        print(f"{part.stat().st_size / 1e6:8.2f} MB  {part.parent.relative_to(slot)}")
    print(f"{size / 1e6:8.2f} MB  in all ({MAX_SHIPPED_BYTES / 1e6:.1f} MB allowed)")
    if size > MAX_SHIPPED_BYTES:
        shutil.rmtree(slot)
        print(f"{args.run}: {size / 1e6:.1f} MB is over the limit; the slot was left empty", file=sys.stderr)
        return 1
    copy = InversionModels.load(slot, registry)
    mismatched = [
        name
        for (name, a), b in zip(models.state_dict().items(), copy.state_dict().values(), strict=True)
        if not torch.equal(a, b)
    ]
    if mismatched:
        print(f"{slot}: reloaded tensors differ from {args.run}: {', '.join(mismatched[:5])}", file=sys.stderr)
        return 1
    installed = pretrained_root() / args.name
    where = "" if installed.resolve() == slot.resolve() else f" (the installed package reads {installed})"
    print(f"shipped {args.run} as built-in model {args.name!r}: {slot}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
