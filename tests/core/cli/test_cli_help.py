"""The command line a new user meets: help, descriptions, options, device errors, threads, doctor."""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from invertavatar_core.cli import HELP_ORDER, build_parser, count_noun, main
from invertavatar_core.cli.experiment_args import DEVICE_HELP
from invertavatar_core.config.compute import (
    ENV_THREADS,
    MAX_DEFAULT_THREADS,
    default_threads,
    prepare_threads,
    resolve_device,
)


@pytest.fixture
def restore_threads(monkeypatch):
    """Commands set torch's thread count and the OpenMP variables; give the session back its own."""
    for name in (ENV_THREADS, "OMP_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def test_help_lists_every_command_in_workflow_order_with_a_description_and_an_example():
    parser = build_parser()
    rows = _subparsers(parser)._choices_actions
    names = [row.dest for row in rows]
    assert set(HELP_ORDER) <= set(names), f"missing: {set(HELP_ORDER) - set(names)}"
    assert names == sorted(names, key=lambda n: HELP_ORDER.index(n) if n in HELP_ORDER else len(HELP_ORDER) - 1.5)
    assert names[0] == "demo" and names[-1] == "doctor"
    for row in rows:
        assert row.help, f"{row.dest}: no one-line help"
    hidden = set(_subparsers(parser).choices) - set(names)  # deprecated aliases: no help row, no example
    assert hidden == {"convert-faceverse", "convert-ict", "fit"}
    for path, sub in _walk(parser):
        if path[:1] and path[0] in hidden:
            assert sub.description.startswith("Deprecated: use 'invertavatar "), path
        elif len(path) == 1 or path[:1] in (("train",), ("convert",)):
            assert sub.description, f"{' '.join(path)}: no description"
            assert "invertavatar " + " ".join(path) in (sub.epilog or ""), f"{' '.join(path)}: no example"
    listed = re.findall(r"^    (\S+)", parser.format_help(), re.M)
    assert listed == names


def test_help_text_has_no_markup_or_outside_citations():
    for path, parser in _walk(build_parser()):
        texts = [parser.description or "", parser.epilog or ""]
        texts += [a.help or "" for a in parser._actions]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                texts += [row.help or "" for row in action._choices_actions]
        for text in texts:
            assert "`" not in text and ":mod:" not in text, f"{' '.join(path)}: markup in {text!r}"
            assert not re.search(r"\breference \d", text.lower()), f"{' '.join(path)}: outside citation in {text!r}"


def test_shared_options_read_the_same_in_every_command():
    with_device = 0
    for path, parser in _walk(build_parser()):
        options = {o: a for a in parser._actions for o in a.option_strings}
        if "--device" in options:
            with_device += 1
            assert options["--device"].help == DEVICE_HELP and options["--device"].default is None, path
            assert "--no-progress" in options, f"{' '.join(path)}: --device without --no-progress"
        if "--set" in options:
            assert options["--set"].dest == "sets" and options["--set"].default == [], path
        if "--steps" in options:
            assert options["--steps"].default is None, path
    assert with_device >= 9  # demo, fit, 4 train stages, reconstruct, render, evaluate, sweep


def test_building_the_parser_imports_no_torch_model():
    code = (
        "import sys; from invertavatar_core.cli import build_parser; build_parser(); "
        "heavy = ['torch', 'invertavatar_core.inversion.models', 'invertavatar_prior_next3d.next3d', "
        "'invertavatar_encoders.e4e', 'invertavatar_faceverse.procedural']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine where CUDA cannot be used")
def test_device_cuda_without_cuda_is_one_line_before_any_work(tmp_path, capsys, restore_threads):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("invertavatar demo: error: --device cuda: ") and "\n" not in err
    assert "--device cpu" in err
    assert not out.exists()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda:1: "):
            resolve_device("cuda:1")


def test_thread_policy_precedence(monkeypatch, restore_threads):
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_threads() == min(usable, MAX_DEFAULT_THREADS)
    assert prepare_threads().threads == default_threads() and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv(ENV_THREADS, "3")
    assert (prepare_threads().threads, prepare_threads().source) == (3, ENV_THREADS)
    assert (prepare_threads(2).threads, prepare_threads(2).source) == (2, "--threads")
    monkeypatch.setenv(ENV_THREADS, "many")
    with pytest.raises(ValueError, match=ENV_THREADS):
        prepare_threads()


def test_threads_option_sets_torch_threads_and_bad_counts_are_one_line(tmp_path, capsys, restore_threads):
    torch.set_num_threads(1)
    assert main(["--threads", "2", "plugins", "--kind", "aggregator"]) == 0
    assert torch.get_num_threads() == 2
    assert main(["--threads", "0", "plugins"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "invertavatar plugins: error: --threads: expected a whole number of threads >= 1, got 0"


def test_doctor_reports_versions_device_threads_and_extras(capsys, restore_threads):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out
    assert "invertavatar-aggregators" in out and "invertavatar-faceverse" in out
    assert f"torch threads    {default_threads()} (policy: {default_threads()} from default)" in out
    assert "OMP_WAIT_POLICY  PASSIVE" in out
    assert "mediapipe" in out and "INVERTAVATAR_WEIGHTS_DIR" in out
    # An extra whose import name is not its distribution's name still shows its version.
    if importlib.util.find_spec("skimage") is not None:
        assert f"skimage      {importlib.metadata.version('scikit-image')} - " in out


def test_version_names_torch_cuda_and_plugins(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    out = capsys.readouterr().out.splitlines()
    assert info.value.code == 0 and out[0] == "invertavatar 0.1.0"
    assert out[1].startswith(f"torch {torch.__version__} (")
    assert out[2].startswith("plugins: ") and "invertavatar-prior-next3d 0.1.0" in out[2]


def test_count_noun():
    assert [count_noun(n, "frame") for n in (0, 1, 2)] == ["0 frames", "1 frame", "2 frames"]


def test_component_schemas_cite_no_outside_documents(full_registry):
    """``invertavatar config schema`` shows config docstrings: they cite the paper, not notes outside the repo."""
    for entry in full_registry.entries():
        schema = json.dumps(full_registry.config_cls(entry.kind, entry.name).model_json_schema())
        assert not re.search(r"reference \d", schema), f"{entry.kind} {entry.name}"
        assert not re.search(r"reference \d", entry.description or ""), f"{entry.kind} {entry.name}"


def test_train_steps_and_set_override_the_config(tmp_path):
    from invertavatar_core.cli.experiment_args import experiment_from_args

    path = tmp_path / "exp.yaml"
    path.write_text("training:\n  steps: 100\n")
    argv = ["train", "latent", "--config", str(path), "--steps", "7", "--set", "training.batch_size=3"]
    args = build_parser().parse_args([*argv, "--out", str(tmp_path / "run")])
    experiment = experiment_from_args(args, "training.out_dir")
    assert (experiment.training.steps, experiment.training.batch_size) == (7, 3)
    assert experiment.training.out_dir == tmp_path / "run"
    with pytest.raises(ValueError, match="one value expected"):
        experiment_from_args(build_parser().parse_args([*argv[:4], "--set", "training.steps=1,2"]), "training.out_dir")
