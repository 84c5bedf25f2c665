"""Nothing shipped cites a document outside the repository ("reference N.M") or points into ../shared."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_OUTSIDE = re.compile(r"reference [0-9]|\.\./shared|(?<![\w.])shared/(paper|design|fixtures)\b", re.IGNORECASE)


def _shipped_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in ("packages", "docs", "recipes", "benchmarks"):
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file()
            and p.suffix in {".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".json"}
            and not any(part in {"build", "dist", "__pycache__"} or part.endswith(".egg-info") for part in p.parts)
        ]
    return files


def test_the_pattern_catches_what_it_stands_for():
    assert _OUTSIDE.search("see reference" + " 4.2 for the loss")  # split so that a grep of the repo stays empty
    assert _OUTSIDE.search("fixtures in ../shared/fixtures/heads")
    assert not _OUTSIDE.search("a metric's reference attribute") and not _OUTSIDE.search("shared weights")


def test_no_shipped_file_points_outside_the_repository():
    files = _shipped_files()
    assert len(files) > 50  # the walk found the sources, not an empty tree
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not hits, "cite the paper or docs/design/ instead:\n" + "\n".join(hits)
