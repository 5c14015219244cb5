"""Running the project's commands as a user does, for several test files (no tests here): a fresh
process from the repository root whose stdin, stdout and stderr are not terminals."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=300):
    """`python ARGS` (a script path or `-m module`, then its arguments); the CompletedProcess, text captured."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def usual_mode(folder=False):
    """The permissions a new file (0666) or folder (0777) gets under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def mode_of(path):
    return os.stat(path).st_mode & 0o777


def leftovers(path):
    """Anything at `path`, or a staging entry (.NAME.tmp-*) beside it."""
    path = Path(path)
    staged = [p.name for p in path.parent.glob(f".{path.name}.*")] if path.parent.is_dir() else []
    return ([path.name] if os.path.lexists(path) else []) + staged


def one_error_line(capsys, *fragments):
    """The one stderr line a command gave (pytest's capsys), checked to be an error holding `fragments`."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
