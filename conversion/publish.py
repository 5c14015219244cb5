"""Check a converted folder against its manifest, then pack it as a release archive with a .sha256 beside it.

    python conversion/publish.py out/densenet161_bts            # -> out/densenet161_bts.tar.gz(.sha256)

Checks: every file listed in manifest.json is there with its size and sha256, nothing unlisted is;
the weights load strictly into paddle_bts and reproduce the recorded figures: the full comparison with
torch_ref when the source checkpoint is still at its recorded path with its recorded sha256, else
Paddle's outputs at the recorded golden positions. The archive is reproducible: same folder, same bytes.
Exit codes: 0 published, 1 a check failed, 2 bad input/output.
"""
import argparse
import gzip
import sys
import tarfile
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

import torch_ref
from bts_core.cli import InputError, VerificationFailed, run_command, staged_outputs
from conversion.manifest import MANIFEST, file_entry, read_manifest, sha256_file
from conversion.verify import recheck_golden, verify

GZIP_LEVEL = 6   # float weights barely compress (~9 %); level 9 costs time for nothing


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, metavar="DIR", help="a folder written by conversion/torch2paddle.py")
    parser.add_argument("--output", type=Path, metavar="ARCHIVE",
                        help="archive to create (default: DIR.tar.gz beside it)")
    parser.add_argument("--force", action="store_true", help="replace ARCHIVE (only after success)")
    return parser.parse_args(argv)


def check_files(folder, manifest):
    listed = manifest["files"]
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    if present - set(listed):
        raise VerificationFailed(f"{folder}: {sorted(present - set(listed))[0]} is not in {MANIFEST}")
    for name, recorded in listed.items():
        path = folder / name
        if not path.is_file():
            raise VerificationFailed(f"{path}: listed in {MANIFEST} but missing")
        if file_entry(path) != {"bytes": recorded["bytes"], "sha256": recorded["sha256"]}:
            raise VerificationFailed(f"{path}: size or sha256 differs from {MANIFEST}")


def source_if_unchanged(manifest):
    source = Path(manifest["source"]["path"])
    if source.is_file() and sha256_file(source) == manifest["source"]["sha256"]:
        return source
    return None


def reverify(folder, manifest):
    """Re-runs the recorded verification; returns a line saying how. Raises VerificationFailed."""
    args = (folder, manifest["encoder"], manifest["max_depth"], manifest["dataset"])
    source, recorded = source_if_unchanged(manifest), manifest["verification"].get("checks")
    if source is not None:
        checks = verify(torch_ref.read_state_dict(str(source)), *args)
        rows = [(c.input, c.output, c.worst) for c in checks]
        how = f"full comparison with torch_ref from the source {source}"
    elif recorded:
        rows = [(i, o, diff / tolerance) for i, o, diff, tolerance in recheck_golden(*args, recorded)]
        how = f"Paddle outputs at {len(recorded[0]['golden'])} recorded positions per output (source not available)"
    else:
        raise VerificationFailed(f"{folder} was converted with --no-verify and its source "
                                 f"{manifest['source']['path']} is gone: nothing to verify it against")
    failed = [r for r in rows if not r[2] <= 1.0]
    if failed:
        inp, out, ratio = failed[0]
        raise VerificationFailed(f"{folder}: {len(failed)} output(s) no longer reproduce, e.g. {out} on the "
                                 f"{inp} input: {ratio:.3g} x its tolerance ({how})")
    return f"{len(rows)} outputs within tolerance ({how})"


def _normalised(info, mtime):
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    info.mode = 0o644
    return info


def pack(folder, names, archive, mtime):
    """A tar.gz of `names` under `folder.name/`, byte-reproducible (fixed order, owners, times, gzip header)."""
    with open(archive, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL,
                                                   filename="", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            path = folder / name
            info = _normalised(tar.gettarinfo(str(path), arcname=f"{folder.name}/{name}"), mtime)
            with open(path, "rb") as f, tqdm.wrapattr(f, "read", total=info.size, desc=name, disable=None,
                                                      leave=False) as reader:
                tar.addfile(info, reader)


def publish(args):
    folder = args.folder.absolute()
    manifest = read_manifest(folder)
    archive = (args.output or folder.parent / f"{folder.name}.tar.gz").absolute()
    if folder in archive.parents:
        raise InputError(f"{archive}: the archive cannot go inside the folder it packs")
    checksum = archive.with_name(archive.name + ".sha256")
    with staged_outputs([archive, checksum], args.force) as (staged_archive, staged_checksum):
        check_files(folder, manifest)
        how = reverify(folder, manifest)
        created = int(datetime.fromisoformat(manifest["created"]).timestamp())   # files' time: the conversion's
        pack(folder, [MANIFEST, *manifest["files"]], staged_archive, created)
        digest = sha256_file(staged_archive)
        staged_checksum.write_text(f"{digest}  {archive.name}\n", encoding="ascii")
    print(f"checked {folder}: {len(manifest['files'])} files match {MANIFEST}; {how}")
    print(f"wrote {archive} ({archive.stat().st_size:,} bytes, sha256 {digest}) and {checksum.name}")


def main(argv=None) -> int:
    return run_command(publish, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
