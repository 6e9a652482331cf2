"""README.rst renders, and CI runs exactly the test command it gives."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_COMMAND = "python3 -m pip install nox && python3 -m nox"
DEMO_COMMAND = "python3 -m pip install nox && python3 -m nox -s demo"


def test_readme_gives_exactly_the_two_setup_commands() -> None:
    readme = (ROOT / "README.rst").read_text()
    commands = [line.strip() for line in readme.splitlines() if line.strip().startswith("python3 -m pip install")]
    assert commands == [DEMO_COMMAND, TEST_COMMAND]


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[-1] == TEST_COMMAND


def test_readme_renders_without_warnings() -> None:
    import docutils.core
    import docutils.utils

    try:
        docutils.core.publish_doctree(
            (ROOT / "README.rst").read_text(), settings_overrides={"halt_level": 2, "report_level": 2}
        )
    except docutils.utils.SystemMessage as problem:  # pragma: no cover - the failure message
        raise AssertionError(f"README.rst does not render cleanly: {problem}") from None
