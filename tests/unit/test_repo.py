"""House rules that keep the repository honest: CI runs what the README tells users to run."""

import re

from tests.helpers import REPO_ROOT


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]


def test_ci_runs_the_readme_test_command():
    test_commands = [c for c in readme_commands() if "pytest" in c]
    assert len(test_commands) == 1, test_commands
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_commands[0] in ci_lines


def test_ci_installs_cpu_torch_before_the_project():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert ci.index("torch==2.13.0") < ci.index("pip install -e")
