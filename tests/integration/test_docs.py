"""The guide's and the README's code blocks run as written: the guide's Python blocks
as one script on Milvus Lite, then its shell blocks; the README's own (``test_readme``
runs its Python, ``.ci/run`` its commands)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide.md"


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the venv's pymilvus-flushsync
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MILVUS_")},
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONWARNINGS": "ignore",
    }


def test_the_guide_runs_as_written(tmp_path: Path) -> None:
    python, shell = blocks(GUIDE, "python"), blocks(GUIDE, "bash")
    assert len(python) >= 8 and len(shell) >= 1
    script = tmp_path / "guide.py"
    script.write_text("\n".join(python))
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env=_env(),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "True persisted True"
    assert "code 100" in lines and "ParamError, before any RPC" in lines
    assert "1/1 flushed, 1 polls" in lines
    assert "['default'] True" in lines and "loaded True" in lines
    assert "visible 10" in lines  # a reader's Session read sees the writer's 10 rows
    assert lines[-1] == "True" and lines.count("True") >= 5
    for block in shell:  # once the script's process (and its Lite lock) is gone
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env=_env(),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert '"flushed": true' in (tmp_path / "flushed.json").read_text()


def test_the_readmes_commands_are_those_ci_runs() -> None:
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    commands = [
        line for block in blocks(ROOT / "README.md", "bash")
        for line in block.splitlines() if line and not line.startswith("#")
    ]  # fmt: skip
    assert commands == [
        "pip install . && pymilvus-flushsync demo",
        'python -m pip install -e ".[test]" && python -m pytest',
        "python -m pytest tests/unit",
    ]
    assert 'pip install -e ".[test]"' in ci and "demo" in ci and "## Use" in readme
