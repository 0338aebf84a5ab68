"""The code archive the instance installs: the `experiment` and `config` packages plus pyproject.toml,
and the on-instance script that runs the experiment (it needs the package, so it ships and updates with it,
which also keeps it out of the 8 KB user_data budget).

Built deterministically (sorted entries, fixed mtimes and owners, no caches), so its sha256 changes
only when the code does; the S3 key carries that hash, which makes a code change replace the object
and lets the instance tell whether it must refresh.
"""

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("experiment", "config")
TOP_FILES = ("pyproject.toml",)
# repo path -> path inside the archive, for files that are not part of a package
SCRIPTS = {"infra/bootstrap/templates/run-experiment.sh": "bin/run-experiment"}
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class CodeArchive:
    path: Path
    sha256: str

    @property
    def key(self) -> str:
        """S3 object key under code/, named by content so a change is a new object."""
        return f"code/gpulab-{self.sha256[:16]}.tar.gz"


def _files(root: Path) -> list[tuple[Path, str]]:
    """(file, path inside the archive) for everything the archive holds, in a fixed order."""
    files = [(root / name, name) for name in TOP_FILES]
    files += [(root / source, target) for source, target in SCRIPTS.items()]
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not SKIP_PARTS & set(rel.parts) and path.suffix not in SKIP_SUFFIXES:
                files.append((path, rel.as_posix()))
    return files


def build_code_archive(out_dir: Path, root: Path = ROOT) -> CodeArchive:
    """Write gpulab-code.tar.gz into out_dir (atomically) and return it with its sha256."""
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too, or the archive's hash would change on every build.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path, name in _files(root):
            info = tarfile.TarInfo(f"gpulab/{name}")
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if path.stat().st_mode & 0o100 or name in SCRIPTS.values() else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    payload = buffer.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "gpulab-code.tar.gz"
    partial = target.with_suffix(".partial")
    partial.write_bytes(payload)
    partial.replace(target)
    return CodeArchive(path=target, sha256=hashlib.sha256(payload).hexdigest())
