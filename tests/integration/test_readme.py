"""The README's examples run as written: its first Python blocks, on Milvus Lite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def use_blocks() -> list[str]:
    """The Python blocks of the README's "Use" section, up to the reader's (visible)."""
    use = README.read_text().split("## Use", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", use, flags=re.S)[:3]


def test_the_use_examples_run_as_written(tmp_path: Path) -> None:
    first, every_database, visible = use_blocks()
    assert "asyncio.run(main())" in first and "flush_all_sync" in every_database
    assert 'until="visible"' in visible
    script = tmp_path / "use.py"
    script.write_text(first + "\n" + every_database + "\n" + visible)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MILVUS_")},
            "PYTHONWARNINGS": "ignore",  # Milvus Lite 2.5 needs the rest (HOME)
        },
    )
    assert result.returncode == 0, result.stderr
    assert "True" in result.stdout and "flushed=True" in result.stdout
    assert "'default': ['a', 'b']" in result.stdout or "'default': ['b', 'a']" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("visible ")
