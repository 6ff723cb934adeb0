"""The package layout's rules (../shared/DESIGN.md, "Inside the package"), checked as they stand.

import-linter holds the import rules written in pyproject.toml ([tool.importlinter]): `app` →
components → `setup` → `core`, components never importing each other, no cycles, no pydantic
in the web server, hardware and model runtimes only in their backend modules. What it cannot
say is checked here: no module takes another's `_private` name, and each systemd unit runs one
component folder.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "device" / "pendant"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
COMPONENTS = ("ears", "eyes", "body", "link", "pairing", "web")


def lint_imports(device: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the package in `device`, with the repository's contracts."""
    if not LINT_IMPORTS.exists():
        pytest.skip(f"import-linter is not installed next to {sys.executable}: run `make setup`")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(REPO / "pyproject.toml")],
        cwd=device.parent,
        env={**os.environ, "PYTHONPATH": str(device)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_rules_hold() -> None:
    done = lint_imports(REPO / "device")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_component_importing_another_breaks_the_rules(tmp_path: Path) -> None:
    """The check can fail: the ears reaching into the eyes is caught, and named."""
    copy = tmp_path / "device" / "pendant"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "data", "static"))
    vad = copy / "ears" / "vad.py"
    vad.write_text(vad.read_text() + "\nfrom pendant.eyes import look  # noqa: E402\n")
    done = lint_imports(copy.parent)
    assert done.returncode != 0
    assert "pendant.ears is not allowed to import pendant.eyes" in done.stdout
    assert "pendant.ears.vad -> pendant.eyes.look" in done.stdout


def _private_imports(path: Path) -> list[str]:
    """`from pendant.x import _name` and `module._name` on a pendant module, in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    modules: set[str] = set()  # local names bound to pendant modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("pendant")
        ):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pendant"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and re.match(r"_[^_]", node.attr)
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_takes_another_modules_private_name() -> None:
    found = {
        str(p.relative_to(REPO)): hits
        for p in sorted(PACKAGE.rglob("*.py"))
        if (hits := _private_imports(p))
    }
    assert found == {}


def test_each_unit_runs_one_component_folder() -> None:
    ran: dict[str, str] = {}
    for unit in sorted((REPO / "services").glob("pendant-*.service")):
        text = unit.read_text()
        line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
        if re.search(r"(?m)^Type=oneshot$", text):
            # A component's step before it starts (pendant-<component>-<step>.service), run by
            # that component's own code: `pendant prepare` is the eyes' (`def prepare`).
            component, step = unit.stem.removeprefix("pendant-").split("-", 1)
            assert component in COMPONENTS and line.endswith(f" {step}"), unit.name
            code = (f.read_text() for f in (PACKAGE / component).rglob("*.py"))
            assert any(f"\ndef {step}(" in text for text in code), unit.name
            continue
        m = re.search(r" service (\w+)$", line) or re.search(r" -m pendant\.(\w+) ", line)
        assert m, f"{unit.name}: ExecStart runs no component: {line}"
        ran[unit.name] = m.group(1)
    assert sorted(ran.values()) == sorted(COMPONENTS)
    for unit, component in ran.items():
        folder = PACKAGE / component
        assert (folder / "__init__.py").is_file(), f"{unit}: no package {folder}"
        runs = folder / ("__main__.py" if component == "web" else "service.py")
        assert runs.is_file(), f"{unit}: {component} has no {runs.name}"


@pytest.mark.parametrize("name", ["ears", "eyes", "body", "link", "pairing"])
def test_a_service_process_imports_its_own_component_alone(name: str) -> None:
    """`pendant service NAME` loads its factory from the registry: the CLI, the registry and
    that component's code, and no other component's (the body must not carry the ears' speech
    stack)."""
    code = (
        "import sys\n"
        "import pendant.app.cli\n"
        "from pendant.app.services import SERVICES, load\n"
        f"load({name!r})\n"
        "print(' '.join(sorted({m.split('.')[1] for m in sys.modules"
        " if m.startswith('pendant.') and m.count('.') >= 1})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(done.stdout.split()) & set(COMPONENTS)
    assert loaded == {name}, done.stdout
