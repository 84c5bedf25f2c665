"""``invertavatar convert release-encoders PKL --prior DIR --out DIR`` (docs/release-weights.md).

Reads the released few-shot snapshot (``FSInvertAvatar.pkl``) with the restricted release
unpickler (nothing embedded in it runs), converts ``G``'s encoders with the release settings and
writes a model checkpoint: ``config.json`` (the experiment), ``prior/`` (the converted prior given
by ``--prior``), ``encoders/{latent,texture,static}/`` and ``conversion.json`` (what was left out
and why).
"""

import argparse
import json
from pathlib import Path

__all__ = ["CONVERSION_REPORT", "register", "run"]

CONVERSION_REPORT = "conversion.json"
"""The report written beside the checkpoint: source, settings and every tensor left out, with the reason."""


def register(subparsers: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add ``release-encoders`` to the ``convert`` group."""
    parser = groups["convert"].add_parser(
        "release-encoders",
        help="the authors' FSInvertAvatar.pkl -> a model checkpoint (needs a converted prior)",
        description=(
            "Convert the released few-shot encoders. Nothing in the pickle is executed; the output is "
            "a model checkpoint for 'invertavatar reconstruct --checkpoint'. See docs/release-weights.md."
        ),
        epilog="example:\n  invertavatar convert release-encoders FSInvertAvatar.pkl --prior release/prior "
        "--out release/model",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pkl", type=Path, help="FSInvertAvatar.pkl (downloaded by you; non-commercial licence)")
    parser.add_argument(
        "--prior", type=Path, required=True, help="the converted prior: output of 'convert release-prior'"
    )
    parser.add_argument("--out", type=Path, required=True, help="new folder for the model checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it is a checkpoint written earlier")
    parser.set_defaults(func=run)


def _prior_folder(path: Path) -> Path:
    """A prior component folder, or the ``prior/`` of a model checkpoint."""
    from invertavatar_core.inversion.models import component_dir

    for candidate in (path, component_dir(path, "prior")):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise FileNotFoundError(
        f"--prior {path}: expected a converted prior (config.json + model.safetensors, or a checkpoint's prior/)"
    )


def run(args: argparse.Namespace) -> int:
    """Convert ``args.pkl`` with the prior ``args.prior`` into ``args.out``; prints the report."""
    import torch

    from invertavatar_core.config.experiment import ExperimentConfig, default_registry
    from invertavatar_core.inversion.models import EXPERIMENT_FILE, InversionModels
    from invertavatar_core.io.atomic import atomic_directory, check_output_dir
    from invertavatar_core.io.checkpoints import RUN_KIND, load_component
    from invertavatar_core.io.release_pickle import load_release_pickle, record_state_dict
    from invertavatar_encoders.release.mapping import RELEASE_INVERTER, convert_encoders

    pkl, out = Path(args.pkl), Path(args.out)
    if not pkl.is_file():
        raise FileNotFoundError(f"{pkl}: no such file (the released FSInvertAvatar.pkl)")
    prior_dir = _prior_folder(Path(args.prior))
    out = check_output_dir(out, RUN_KIND, overwrite=args.overwrite, signature=(EXPERIMENT_FILE,))
    registry = default_registry()
    prior, prior_config = load_component(prior_dir, registry, "prior")
    data = load_release_pickle(pkl)
    if not isinstance(data, dict) or "G" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{pkl}: field 'G' missing (found {keys}); expected a few-shot snapshot")
    record = data["G"]
    converted = convert_encoders(record, record_state_dict(record), prior.info, registry, source=f"{pkl}:G")
    w_avg_gap = float((converted.latent_avg.reshape(-1) - prior.w_avg.detach().reshape(-1)).abs().max())
    experiment = ExperimentConfig.model_validate(
        {
            "name": f"release-{pkl.stem}",
            "prior": prior_config.model_dump(mode="json"),
            "encoders": {
                "latent": converted.latent.config.model_dump(mode="json"),
                "texture": converted.texture.config.model_dump(mode="json"),
                "static": converted.static.config.model_dump(mode="json"),
            },
            "aggregator": converted.aggregator or None,
            "inverter": {"name": "incremental", **RELEASE_INVERTER},
        },
        context={"registry": registry},
    )
    models = InversionModels(experiment, prior, converted.latent, converted.texture, converted.static)
    report = {
        "source": str(pkl),
        "prior": str(prior_dir),
        "settings": {
            "inverter": RELEASE_INVERTER,
            "aggregator": converted.aggregator,
            "latent": converted.latent.config.model_dump(mode="json"),
            "texture": converted.texture.config.model_dump(mode="json"),
            "static": converted.static.config.model_dump(mode="json"),
        },
        "latent_avg_minus_prior_w_avg_max_abs": w_avg_gap,
        "unused": [{"tensor": u.name, "reason": u.reason} for u in converted.unused],
    }
    with torch.no_grad(), atomic_directory(out, RUN_KIND, signature=(EXPERIMENT_FILE,)) as tmp:
        models.save(tmp)
        (tmp / CONVERSION_REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} (E_latent, E_tex, E_tri with the release settings; prior from {prior_dir})")
    for item in converted.unused:
        print(f"  not used: {item.name}: {item.reason}")
    if w_avg_gap > 1e-6:
        print(
            f"  note: the pickle's latent_avg differs from the prior's w_avg by up to {w_avg_gap:.3g}; "
            "our pipeline adds the prior's (was --prior converted from this pickle's generator?)"
        )
    return 0
