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


def test_pyproject_lists_every_package_folder():
    """pyproject.toml lists its packages (search_spaces/ installs as aae_tune.search_spaces): none may be missing."""
    import tomllib

    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO_ROOT).parts) for p in (REPO_ROOT / "aae_tune").rglob("__init__.py")}
    assert set(setuptools["packages"]) == on_disk | {"aae_tune.search_spaces"}
    assert setuptools["package-dir"] == {"aae_tune.search_spaces": "search_spaces"}
    assert (REPO_ROOT / "search_spaces" / "__init__.py").is_file() and (REPO_ROOT / "aae_tune" / "py.typed").is_file()


DOCS = ["README.md", "RESULTS.md", "BENCHMARKS.md", *(f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md"))]
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users|scratch|check)/|file:/")


def test_docs_carry_no_path_of_the_machine_that_ran_them():
    found = [f"{name}:{n}: {line.strip()}" for name in DOCS
             for n, line in enumerate((REPO_ROOT / name).read_text().splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not found, "\n".join(found)


def test_readme_is_short_and_every_relative_link_resolves():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200  # the rest lives in docs/, read in order
    for name in DOCS:
        text = (REPO_ROOT / name).read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://", "mailto:")):
                assert ((REPO_ROOT / name).parent / target).exists(), f"{name}: broken link {target}"
