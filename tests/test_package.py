"""The package foundation: the console script, the version, the engine's build layout."""
import subprocess
import sys

import pyroute


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pyroute", *args],
                          capture_output=True, text=True, timeout=60)


def test_version_command_prints_version():
    out = run_cli("version")
    assert out.returncode == 0
    assert out.stdout.strip() == "pyroute " + pyroute.__version__


def test_help_lists_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    assert "version" in out.stdout
    assert "IngressRoute" in out.stdout


def test_unknown_command_is_an_error():
    out = run_cli("frobnicate")
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_console_script_is_installed():
    import shutil
    exe = shutil.which("pyroute", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe is not None
    out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("pyroute ")
