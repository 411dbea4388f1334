"""The command line: lazy imports, argparse only in cli.py, side effects in main()."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _py(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                          env=env).stdout


def test_build_parser_imports_nothing_heavy_and_sets_nothing():
    out = _py("import sys, os, json; from rivergraph.cli import build_parser; p = build_parser(); "
              "p.format_help(); print(json.dumps({'mods': [m for m in ('torch', 'numpy', 'pandas', 'xarray', "
              "'pydantic') if m in sys.modules], 'thp': os.environ.get('THP_MEM_ALLOC_ENABLE')}))")
    res = json.loads(out)
    assert res == {"mods": [], "thp": None}


def test_help_lists_every_command(capsys):
    from rivergraph.cli import build_parser

    text = build_parser().format_help()
    for cmd in ("train", "route", "temperature", "plot", "config-docs", "ddp-demo"):
        assert cmd in text


def test_argparse_only_in_cli():
    users = [p.relative_to(ROOT).as_posix() for p in (ROOT / "rivergraph").rglob("*.py")
             if "import argparse" in p.read_text() or "from argparse" in p.read_text()]
    assert users == ["rivergraph/cli.py"]


def test_main_sets_thp_and_reports_one_line_errors(tmp_path, capsys, monkeypatch):
    from rivergraph.cli import main

    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE", raising=False)
    assert main(["route", str(tmp_path / "missing.yaml")]) == 2
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
    err = capsys.readouterr().err
    assert err.startswith("rivergraph: error:") and "missing.yaml" in err and err.count("\n") == 1
    (tmp_path / "bad.yaml").write_text("network: x.csv\nrunoff: {kind: magic}\n")
    assert main(["route", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown runoff kind 'magic'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])


def test_config_docs_command(tmp_path):
    from rivergraph.cli import main

    assert main(["config-docs", str(tmp_path / "c.md")]) == 0
    assert main(["config-docs", "--check", str(tmp_path / "c.md")]) == 0
    (tmp_path / "c.md").write_text("stale")
    assert main(["config-docs", "--check", str(tmp_path / "c.md")]) == 1
