"""What every command shares: one-line errors with fixed exit codes, outputs that appear only complete.

Exit codes: 0 done; 1 the converted weights failed verification; 2 bad input or output location.
Every output is first written under a temporary name next to its final place and renamed at the end,
so a failure (or Ctrl-C) never leaves a half-written file or folder behind.
"""
import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from tqdm import tqdm


EXIT_OK, EXIT_VERIFICATION_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class InputError(ValueError):
    """Bad arguments, input files or output location; the message is one line meant for the user. Every
    error a user can cause derives from it (DataError, ConfigError, CheckpointError, WeightsError,
    ConversionError), so `run_command` maps them all to exit 2 without knowing the packages above."""


class VerificationFailed(RuntimeError):
    """A check failed: outputs beyond tolerance, or files that differ from their manifest."""


def quiet_paddle_import():
    """Hides the one warning `import paddle` prints on every command (paddle/utils/cpp_extension: ccache,
    a compiler cache for custom C++ ops, is missing): irrelevant here, and it would break the commands'
    promise of a single `error: ...` line on stderr. Call before the first `import paddle`; every entry point
    that imports paddle does (the paddle_bts, conversion and bench packages, and the scripts run as files)."""
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)


def positive(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def say_error(message):
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(message))   # torch bolds parts of its messages
    print("error: " + " ".join(plain.split()), file=sys.stderr)   # always exactly one line


def run_command(command, args, more_bad_input=()):
    """Runs `command(args)` and turns the errors a user can cause into one stderr line and an exit code."""
    try:
        command(args)
    except VerificationFailed as e:
        say_error(e)
        return EXIT_VERIFICATION_FAILED
    except (InputError, *more_bad_input) as e:
        say_error(e)
        return EXIT_BAD_INPUT
    except OSError as e:   # unreadable input, unwritable output, full disk
        say_error(f"{e.filename}: {e.strerror}" if e.filename else e)
        return EXIT_BAD_INPUT
    return EXIT_OK


def progress(iterable=None, **kwargs):
    """A tqdm bar on stderr, drawn only on a terminal (tests and logs stay clean)."""
    return tqdm(iterable, disable=None, leave=False, dynamic_ncols=True, **kwargs)


def refuse_existing(target, force):
    if os.path.lexists(target) and not force:
        raise InputError(f"{target} exists; pass --force to replace it")


def refuse_replacing_source(output, source, force, what="source checkpoint"):
    """--force replaces the output folder: refused where that folder holds the file being read."""
    if force and Path(output).absolute() in Path(source).absolute().parents:
        raise InputError(f"{output} holds the {what}; --force would delete it")


def _make_parents(folder):
    """Creates missing parent folders; returns those it created, deepest first (to undo on failure)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        for path in reversed(missing):
            path.mkdir()
    except OSError as e:
        _remove_empty(missing)
        raise InputError(f"cannot create {path}: {e.strerror}") from None
    return missing


def _remove_empty(folders):
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _readable_by_all(path):
    """mkdtemp/mkstemp make private (0700/0600) entries; give the result the user's usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _replace(staged, target):
    """Moves `staged` onto `target`; an existing `target` is set aside first and deleted only after."""
    aside = None
    if os.path.lexists(target):
        aside = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, aside)
    try:
        os.rename(staged, target)
    except OSError:
        if aside is not None:
            os.rename(aside, target)
        raise
    if aside is not None and aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    elif aside is not None:
        aside.unlink()


def _empty_file(folder, prefix):
    fd, path = tempfile.mkstemp(dir=folder, prefix=prefix)
    os.close(fd)
    return path


@contextlib.contextmanager
def staged_outputs(targets, force, folder=False):
    """Yields temporary paths next to `targets`; renamed onto them only if the block succeeds.

    With `folder=True` each temporary path is an empty folder, else an empty file.
    An existing target is an error unless `force`, and is replaced only after success.
    """
    targets = [Path(t).absolute() for t in targets]
    for target in targets:
        refuse_existing(target, force)
    created, staged = [], []
    try:
        for target in targets:
            created += _make_parents(target.parent)
            prefix = f".{target.name}.tmp-"
            try:
                path = tempfile.mkdtemp(dir=target.parent, prefix=prefix) if folder else \
                    _empty_file(target.parent, prefix)
            except OSError as e:
                raise InputError(f"cannot write {target}: {e.strerror}") from None
            staged.append(Path(path))
        yield staged
        for path, target in zip(staged, targets):
            refuse_existing(target, force)   # it may have appeared while we worked
            _readable_by_all(path)
            _replace(path, target)
    finally:
        for path in staged:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                path.unlink()
        _remove_empty(created)
