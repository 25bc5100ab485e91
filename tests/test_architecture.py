"""Architecture rules that hold for the whole tree."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "auth", "delivery", "mailserver")
#: what each package may import from the others: storage <- auth <- delivery <- mailserver
ALLOWED = {
    "storage": {"storage"},
    "auth": {"storage", "auth"},
    "delivery": {"storage", "auth", "delivery"},
    "mailserver": set(PACKAGES),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_imports_go_one_way() -> None:
    """storage imports none of the others, auth only storage, delivery storage and auth."""
    problems = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            bad = (_imports(path) & set(PACKAGES)) - ALLOWED[pkg]
            if bad:
                problems.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not problems, "\n".join(problems)


def test_no_sql_outside_storage() -> None:
    """No module outside storage/ imports a database driver."""
    drivers = {"sqlite3", "aiosqlite", "asyncpg", "psycopg", "psycopg2"}
    problems = []
    for pkg in ("auth", "delivery", "mailserver"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if _imports(path) & drivers:
                problems.append(str(path.relative_to(ROOT)))
    assert not problems, problems


def test_packages_are_in_the_build_config() -> None:
    """pyproject.toml ships all four packages and the console script."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    for pkg in PACKAGES:
        assert f"{pkg}*" in include
    assert meta["project"]["scripts"]["mailserver"] == "mailserver.cli:main"
