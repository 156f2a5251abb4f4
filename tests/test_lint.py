"""The code stays lint-clean (ruff) and typed (mypy --strict, as pyproject.toml sets it)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_lint_ruff_is_clean() -> None:
    result = run("ruff", "check", "relay", "tests", "scripts", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_mypy_strict_is_clean() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
