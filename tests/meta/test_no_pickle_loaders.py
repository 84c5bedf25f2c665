"""No pickle-capable loader in the packages outside the converters' restricted unpickler (docs/security.md)."""

import re
from pathlib import Path

PACKAGES = Path(__file__).resolve().parents[2] / "packages"
PATTERN = re.compile(r"allow_pickle=True|pickle\.load|torch\.load\(")
ALLOWED_FILES = {"restricted_unpickle.py"}


def test_no_pickle_capable_loader_outside_the_restricted_unpickler():
    offending = []
    for path in sorted(PACKAGES.rglob("*.py")):
        if path.name in ALLOWED_FILES:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not PATTERN.search(line):
                continue
            unsafe = re.search(r"allow_pickle=True|pickle\.load", line)
            if "torch.load(" in line and "weights_only=True" in line and not unsafe:
                continue  # PyTorch's tensor-only unpickler
            offending.append(f"{path.relative_to(PACKAGES)}:{number}: {line.strip()}")
    assert PATTERN.search("np.load(p, allow_pickle=True)")  # the pattern itself works
    assert not offending, "\n".join(offending)
