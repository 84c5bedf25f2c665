"""``invertavatar export``: an avatar as a coloured mesh and plain tensors, a driving video as expression curves.

    invertavatar export --avatar AVATAR --out head.glb                      # one mesh file (.ply, .obj, .glb)
    invertavatar export --avatar AVATAR --format ply glb --out exported/    # a folder: meshes + canonical tensors
    invertavatar export --driving DATASET --out curves/                     # ARKit-named expression curves
    invertavatar export --avatar AVATAR --driving DATASET --expression 12 --out exported/

Mesh: the iso-surface of the avatar's density (neutral expression by default, or frame FRAME
of ``--driving``) on an ``N^3`` grid over the prior's box, coloured as the renderer colours
it (:mod:`invertavatar_core.geometry.avatar_mesh`, where the default ``--threshold`` is
explained). Coordinates are canonical units (1 = the box side; about 46.5 cm for the built-in
morphable models' head size); ``--scale`` multiplies them.

A folder ``--out`` (marked as invertavatar output of kind ``export``; replaced only with
``--overwrite``, never a folder a user made) receives ``mesh.<format>`` for each mesh format
in ``--format`` (default ``glb`` with ``--avatar``), alongside them ``canonical.safetensors`` +
``canonical.json`` (the avatar's tri-plane, texture and w+ with their meanings; ``--format
tensors`` alone writes only these), ``expressions.json`` + ``expressions.csv`` for ``curves``
(the default with ``--driving``), and ``export.json`` (settings and counts). A file ``--out``
ending in ``.ply``/``.obj``/``.glb`` receives just that mesh; an existing file is replaced only
with ``--overwrite``.

Curves: one row per frame of the driving sequence (``frame``, ``time`` = frame / ``--fps``, a
column per blendshape). ``--names arkit`` (default) needs a morphable model whose expressions
are ARKit blendshapes (ICT) and refuses any other, naming it; ``--names model`` writes any
model's own expression names instead (:mod:`invertavatar_core.io.expression_curves`).
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

from invertavatar_core.cli.experiment_args import add_device_argument, add_progress_argument
from invertavatar_core.errors import UserError

__all__ = ["EXPORT_KIND", "register"]

EXPORT_KIND = "export"
"""The kind in an export folder's marker file."""
_FORMATS = ("ply", "obj", "glb", "tensors", "curves")
_MESH_FORMATS = ("ply", "obj", "glb")
_SIGNATURE = ("export.json",)


def register(subparsers: argparse._SubParsersAction, groups: dict) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export",
        help="export an avatar as a coloured mesh and tensors, or a driving video as ARKit curves",
        description="Write an avatar's density field as a vertex-coloured mesh (marching cubes; PLY, OBJ or "
        "GLB), its canonical tri-plane/texture/w+ tensors (safetensors + JSON), and per-frame expression "
        "curves (JSON + CSV, ARKit blendshape names for ICT fits) of a fitted driving dataset.",
        epilog="examples:\n"
        "  invertavatar export --avatar avatar/ --out head.glb\n"
        "  invertavatar export --avatar avatar/ --format ply obj glb --resolution 256 --out exported/\n"
        "  invertavatar export --driving fitted-ict/ --out curves/\n"
        "  invertavatar export --avatar avatar/ --driving fitted/ --expression 12 --out exported/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--avatar", help="avatar folder (from 'invertavatar reconstruct')")
    parser.add_argument(
        "--driving", metavar="DATASET", help="fitted dataset (from 'invertavatar preprocess'): expression curves"
    )
    parser.add_argument(
        "--out", required=True, help="a folder, or a .ply/.obj/.glb file for one mesh (new, or ours with --overwrite)"
    )
    parser.add_argument(
        "--format",
        nargs="+",
        choices=_FORMATS,
        help="what to write: mesh formats and 'tensors' (from --avatar), 'curves' (from --driving); default: "
        "the --out suffix, else glb with --avatar and curves with --driving",
    )
    parser.add_argument("--resolution", type=int, default=256, help="grid nodes per side of the box (default 256)")
    parser.add_argument(
        "--threshold",
        type=float,
        help="density of the surface (default: the level whose silhouettes match the rendered ones best)",
    )
    parser.add_argument(
        "--expression",
        default="neutral",
        metavar="neutral|FRAME",
        help="expression of the mesh: 'neutral' (default) or the FRAME-th frame (from 0) of the --driving sequence",
    )
    parser.add_argument(
        "--all-components", action="store_true", help="keep every piece of the surface (default: the largest only)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply mesh coordinates (default 1: canonical units)"
    )
    parser.add_argument("--checkpoint", help="model checkpoint holding the prior (default: the avatar's)")
    parser.add_argument("--sequence", help="the --driving sequence to use (needed when it holds several)")
    parser.add_argument(
        "--fps", type=float, default=25.0, help="frame rate of the driving video, for 'time' (default 25)"
    )
    parser.add_argument(
        "--names",
        choices=("arkit", "model"),
        default="arkit",
        help="curve names: ARKit blendshapes (default; ICT-fitted datasets) or the model's own",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is an earlier export")
    add_device_argument(parser)
    add_progress_argument(parser)
    parser.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------- checks


def _plan(args: argparse.Namespace) -> tuple[Path, bool, list[str]]:
    """``(out, is_file, formats)``, every argument checked before anything is loaded."""
    from invertavatar_core.io.atomic import check_output_dir, check_output_file

    if not args.avatar and not args.driving:
        raise UserError("nothing to export: give --avatar (mesh, tensors) and/or --driving (expression curves)")
    out = Path(args.out)
    suffix = out.suffix.lower().lstrip(".")
    is_file = suffix in _MESH_FORMATS
    default = [suffix] if is_file else ["glb"] * bool(args.avatar) + ["curves"] * bool(args.driving)
    formats = list(dict.fromkeys(args.format or default))
    if args.resolution < 8 or args.resolution > 1024:
        raise UserError(f"--resolution must be between 8 and 1024, got {args.resolution}")
    if args.threshold is not None and not args.threshold > 0:
        raise UserError(f"--threshold is a density and must be positive, got {args.threshold}")
    if not args.scale > 0:
        raise UserError(f"--scale must be positive, got {args.scale}")
    if not args.fps > 0:
        raise UserError(f"--fps must be positive, got {args.fps}")
    if args.expression != "neutral":
        if not args.expression.isdigit():
            raise UserError(f"--expression must be 'neutral' or a frame number, got {args.expression!r}")
        if not args.driving:
            raise UserError(f"--expression {args.expression} takes that frame of --driving; give --driving DATASET")
    if is_file:
        if formats != [suffix]:
            raise UserError(f"--out {out} is a .{suffix} file; it holds one mesh, not --format {' '.join(formats)}")
        if not args.avatar:
            raise UserError(f"--out {out} is a mesh file; the mesh comes from --avatar AVATAR")
        check_output_file(out)
        if out.exists() and not args.overwrite:
            raise UserError(f"--out {out}: file exists; pass --overwrite to replace it")
    else:
        avatar_formats = [f for f in formats if f != "curves"]
        if avatar_formats and not args.avatar:
            raise UserError(f"--format {' '.join(avatar_formats)} exports an avatar; give --avatar AVATAR")
        if "curves" in formats and not args.driving:
            raise UserError("--format curves exports the expressions of a driving video; give --driving DATASET")
        check_output_dir(out, EXPORT_KIND, overwrite=args.overwrite, signature=_SIGNATURE)
    if args.avatar and not Path(args.avatar).is_dir():
        raise UserError(f"--avatar {args.avatar}: folder not found (write one with 'invertavatar reconstruct')")
    if args.driving and not Path(args.driving).is_dir():
        raise UserError(f"--driving {args.driving}: folder not found (write one with 'invertavatar preprocess')")
    return out, is_file, formats


# ---------------------------------------------------------------------------------------------- inputs


def _load_prior(args: argparse.Namespace, avatar, registry, device):
    """``(prior, experiment)`` of the avatar's model checkpoint; the prior must answer point queries."""
    from invertavatar_core.cli.render import avatar_checkpoint
    from invertavatar_core.config.experiment import load_experiment
    from invertavatar_core.inversion.models import EXPERIMENT_FILE, component_dir
    from invertavatar_core.io.checkpoints import CheckpointError, load_component
    from invertavatar_core.plugin.protocols import VolumetricPrior

    checkpoint = avatar_checkpoint(args, avatar)
    if not (checkpoint / EXPERIMENT_FILE).is_file():
        raise CheckpointError(
            f"{checkpoint}: not a model checkpoint (missing {EXPERIMENT_FILE}); see docs/checkpoints.md"
        )
    experiment = load_experiment(checkpoint / EXPERIMENT_FILE, registry)
    prior, config = load_component(component_dir(checkpoint, "prior"), registry, "prior")
    if not isinstance(prior, VolumetricPrior):
        raise UserError(
            f"prior {config.name!r} of {checkpoint} cannot be queried at 3D points (no box_size, sample_spacing, "
            f"animate, query_field); mesh export needs a VolumetricPrior"
        )
    prior = prior.to(device).eval()
    avatar.check_prior(prior)
    return prior, experiment


def _driving_sequence(args: argparse.Namespace):
    """``(dataset, sequence name, dataset indices)`` of the chosen --driving sequence."""
    from invertavatar_core.data.datasets import open_dataset

    dataset = open_dataset(args.driving)
    sequences = dataset.sequences()
    if not sequences:
        raise UserError(f"--driving {args.driving}: holds no fitted frames")
    if args.sequence is None:
        if len(sequences) > 1:
            names = ", ".join(sorted(sequences)[:8]) + (", ..." if len(sequences) > 8 else "")
            raise UserError(
                f"--driving {args.driving} holds {len(sequences)} sequences ({names}); choose one with --sequence"
            )
        name = next(iter(sequences))
    elif args.sequence not in sequences:
        raise UserError(
            f"--sequence {args.sequence}: not in {args.driving}; it holds {', '.join(sorted(sequences)[:8])}"
        )
    else:
        name = args.sequence
    return dataset, name, sequences[name]


def _driving_model(args: argparse.Namespace, dataset):
    """``(model name, model config)`` the driving frames were fitted with (official layout: FaceVerse)."""
    meta = getattr(dataset, "meta", None)
    if meta is None:
        return "faceverse", None  # the official layout holds FaceVerse v3.1 coefficients
    config = meta.get("model")
    if not isinstance(config, dict) or "name" not in config:
        raise UserError(f"{Path(args.driving) / 'dataset.json'}: field 'model' must name the morphable model")
    return str(config["name"]), config


def _curves(args: argparse.Namespace, dataset, sequence: str, indices: list[int], registry):
    """The driving sequence's expression curves (ARKit names unless ``--names model``); refusals come first."""
    import torch

    from invertavatar_core.io.expression_curves import ExpressionCurves, NotArkitNamedError, non_arkit_names, to_arkit

    model_name, config = _driving_model(args, dataset)
    if config is None:
        raise UserError(
            f"--driving {args.driving}: the official layout's FaceVerse expressions are not ARKit-named, and "
            f"their names are not recorded; expression curves need a folder written by 'invertavatar preprocess'"
        )
    try:
        names = tuple(registry.create("morphable_model", config).expression_names)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"--driving {args.driving}: cannot load its morphable model {model_name!r}: {exc}") from None
    if args.names == "arkit" and non_arkit_names(names):
        raise UserError(
            f"--driving {args.driving}: the expressions of morphable model {model_name!r} are not ARKit-named "
            f"(e.g. {', '.join(non_arkit_names(names)[:3])}); fit with --model ict:PATH for ARKit curves, pass "
            f"--names model for the model's own names, or leave curves out of --format"
        )

    def load():
        frames, values = [], []
        for position, index in enumerate(indices):
            expression = dataset[index].expression
            if expression is None or expression.shape[-1] != len(names):
                got = None if expression is None else expression.shape[-1]
                raise UserError(
                    f"--driving {args.driving}: frame {dataset.frame_name(index)} has {got} expression weights, "
                    f"model {model_name!r} has {len(names)}"
                )
            frame = dataset.frame_name(index)[1]
            frames.append(int(frame) if frame.isdigit() else position)
            values.append(expression[0].float())
        curves = ExpressionCurves(
            names=names,
            values=torch.stack(values),
            frames=tuple(frames),
            times=tuple(f / args.fps for f in frames),
            model=model_name,
            source={"dataset": str(Path(args.driving).resolve()), "sequence": sequence, "fps": args.fps},
        )
        if args.names == "model":
            return curves
        try:
            return to_arkit(curves)
        except NotArkitNamedError as exc:  # checked above; kept for models whose names change on load
            raise UserError(str(exc)) from None

    return load


def _expression_uv(args, experiment, prior, avatar, registry, driving, device):
    """``(1, 3, U, U)`` the mesh's expression: neutral (the source identity, zero expression) or a driving frame."""
    import torch

    from invertavatar_core.geometry.uv_maps import render_expression_uv

    uv_resolution = prior.info.uv_resolution
    model = registry.create("morphable_model", experiment.morphable_model)
    rasterizer = registry.create("rasterizer", experiment.rasterizer)
    identity = avatar.identity[:1].cpu() if avatar.identity is not None else torch.zeros(1, model.n_identity)
    if args.expression == "neutral":
        expression = torch.zeros(1, model.n_expression)
        eyes = torch.zeros(1, model.n_eye) if model.n_eye else None
        uv = render_expression_uv(model, rasterizer, identity, expression, eyes, resolution=uv_resolution)
        return uv.to(device), "neutral"
    dataset, sequence, indices = driving
    position = int(args.expression)
    if position >= len(indices):
        raise UserError(f"--expression {position}: sequence {sequence!r} of --driving has {len(indices)} frames")
    frame = dataset[indices[position]]
    label = f"{sequence}/{dataset.frame_name(indices[position])[1]}"
    model_name, _ = _driving_model(args, dataset)
    if avatar.identity is not None and frame.expression is not None:
        if model_name != experiment.morphable_model.name:
            raise UserError(
                f"--driving {args.driving} was fitted with morphable model {model_name!r}, the avatar's model "
                f"checkpoint uses {experiment.morphable_model.name!r}; fit the driving video with that model"
            )
        eyes = frame.eyes.cpu() if frame.eyes is not None else None
        uv = render_expression_uv(model, rasterizer, identity, frame.expression.cpu(), eyes, resolution=uv_resolution)
        return uv.to(device), label
    uv = frame.expression_uv
    if uv.shape[-1] != uv_resolution:
        raise UserError(
            f"--driving {args.driving}: expression UV renders are {uv.shape[-1]} px, the prior expects {uv_resolution}"
        )
    return uv.to(device), label


# ---------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    """Export what was asked."""
    from invertavatar_core.cli import cli_registry, count_noun
    from invertavatar_core.config.compute import resolve_device

    out, is_file, formats = _plan(args)  # where everything goes is settled before anything is loaded
    device = resolve_device(args.device)
    registry = cli_registry()
    summary: dict[str, Any] = {"format": "invertavatar.export", "version": 1}
    driving = _driving_sequence(args) if args.driving else None
    load_curves = _curves(args, *driving, registry) if "curves" in formats else None

    mesh = avatar = prior = None
    mesh_formats = [f for f in formats if f in _MESH_FORMATS]
    if args.avatar:
        from invertavatar_core.inversion.avatar import Avatar

        avatar = Avatar.load(args.avatar, device)
        if avatar.features.batch_size != 1:
            raise UserError(f"--avatar {args.avatar}: holds {avatar.features.batch_size} avatars; export takes one")
        if mesh_formats:  # the tensors alone need no prior
            prior, experiment = _load_prior(args, avatar, registry, device)
            mesh, summary["mesh"] = _mesh(args, prior, experiment, avatar, registry, driving, device)

    if is_file:
        from invertavatar_core.io.mesh_files import write_mesh

        write_mesh(out, mesh.vertices * args.scale, mesh.faces, mesh.colors, mesh.normals, format=formats[0])
        print(f"wrote {_mesh_line(summary['mesh'])} -> {out}")
        return 0

    from invertavatar_core.io.atomic import atomic_directory

    curves = load_curves() if load_curves is not None else None
    with atomic_directory(out, EXPORT_KIND, signature=_SIGNATURE) as tmp:
        written = []
        if mesh is not None:
            from invertavatar_core.io.mesh_files import write_mesh

            for kind in mesh_formats:
                write_mesh(tmp / f"mesh.{kind}", mesh.vertices * args.scale, mesh.faces, mesh.colors, mesh.normals)
                written.append(f"mesh.{kind}")
        if avatar is not None and (mesh_formats or "tensors" in formats):
            from invertavatar_core.io.canonical_tensors import write_canonical_tensors

            tensors = dict(avatar.features.tensors())
            if avatar.identity is not None:
                tensors["meta.identity"] = avatar.identity
            info, box = (prior.info, prior.box_size) if prior is not None else (None, None)
            write_canonical_tensors(tensors, tmp, avatar.prior_config, info=info, box_size=box)
            written += ["canonical.safetensors", "canonical.json"]
            summary["avatar"] = str(Path(args.avatar).resolve())
        if curves is not None:
            from invertavatar_core.io.atomic import atomic_write_text
            from invertavatar_core.io.expression_curves import curves_csv, curves_json

            atomic_write_text(tmp / "expressions.json", curves_json(curves))
            atomic_write_text(tmp / "expressions.csv", curves_csv(curves))
            written += ["expressions.json", "expressions.csv"]
            summary["curves"] = {
                "frames": len(curves.frames),
                "names": curves.naming,
                "model": curves.model,
                "sequence": curves.source.get("sequence"),
                "clipped_values": curves.clipped,
                "not_modelled": list(curves.not_modelled),
            }
        summary["files"] = written
        (tmp / "export.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if "mesh" in summary:
        print(_mesh_line(summary["mesh"]))
    if curves is not None:
        extra = f", {curves.clipped} values clipped into [0, 1]" if curves.clipped else ""
        print(f"{count_noun(len(curves.frames), 'frame')} of {len(curves.names)} {curves.naming} curves{extra}")
    print(f"wrote {', '.join(written)} -> {out}")
    return 0


def _mesh(args, prior, experiment, avatar, registry, driving, device):
    """Extract the mesh; returns it and its summary entry."""
    from invertavatar_core.geometry.avatar_mesh import extract_mesh

    expression_uv, expression = _expression_uv(args, experiment, prior, avatar, registry, driving, device)
    began = time.perf_counter()
    mesh = extract_mesh(
        prior,
        avatar.features,
        expression_uv,
        resolution=args.resolution,
        threshold=args.threshold,
        keep_largest=not args.all_components,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - began
    entry = {
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "resolution": args.resolution,
        "threshold": mesh.threshold,
        "threshold_rule": "matches the rendered silhouettes" if args.threshold is None else "given",
        "expression": expression,
        "largest_component_only": not args.all_components,
        "scale": args.scale,
        "seconds": round(seconds, 3),
    }
    return mesh, entry


def _mesh_line(entry: dict) -> str:
    return (
        f"mesh: {entry['vertices']} vertices, {entry['faces']} faces ({entry['expression']} expression, "
        f"density threshold {entry['threshold']:.3g}, {entry['resolution']}^3 grid) in {entry['seconds']:.1f} s"
    )
