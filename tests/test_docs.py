"""The README stays true: quick start, CI command, configuration reference."""

from __future__ import annotations

import re

from mailserver.config import reference_markdown
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_quick_start_is_two_command_lines() -> None:
    """The quick start has exactly two command lines."""
    blocks = _quick_start_commands()
    assert len(blocks) == 2 and all("\n" not in b for b in blocks), blocks


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the second quick-start line verbatim."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _quick_start_commands()[1] in ci.splitlines()


def test_config_reference_is_generated_from_the_schema() -> None:
    """The README's configuration reference equals the schema's table."""
    between = README.split("<!-- config-reference:start -->\n", 1)[1].split("\n<!-- config-reference:end -->", 1)[0]
    assert between == reference_markdown()
