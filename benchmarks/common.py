"""Shared by the benchmark scripts: paths and appending rows to benchmarks/results.md."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LEGO = ROOT.parent / "shared" / "data" / "nerf_synthetic" / "lego"


def add_rows(path: Path, section: str, header: str, rows: list[str]) -> None:
    """section: '## ...' line; header: the table's header + separator lines; rows: table lines."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    if section not in lines:
        lines += ["", section, "", *header.strip("\n").split("\n"), *rows]
    else:
        i = lines.index(section) + 1
        while i < len(lines) and not lines[i].startswith("|"):
            i += 1
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        lines[i:i] = rows
    path.write_text("\n".join(lines) + "\n")
