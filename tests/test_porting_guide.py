"""docs/porting.md: every Python block in the porting guide runs offline as it is written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "porting.md"
BLOCKS = re.findall(
    r"^```python\n(.*?)^```$", GUIDE.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL
)


def test_the_guide_has_code_to_check() -> None:
    """The porting guide keeps its runnable examples (the checks below are not vacuous)."""
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_porting_guide_block_runs(index: int) -> None:
    """Each fenced python block of docs/porting.md runs on its own, its asserts holding."""
    code = compile(BLOCKS[index], f"{GUIDE.name}[block {index + 1}]", "exec")
    exec(code, {"__name__": f"porting_block_{index + 1}"})


def test_the_readme_links_the_porting_guide() -> None:
    """README points porting users to docs/porting.md."""
    readme = (GUIDE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "(docs/porting.md)" in readme
