"""Safe extraction of uploaded code archives."""

from __future__ import annotations

import io
import tarfile

import pytest

from workers.code import ArchiveError, cached_code_dir, check_archive, model_root, pack_directory

LIMIT = 1024 * 1024


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"print(1)\n") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, symbolic: bool = True) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE if symbolic else tarfile.LNKTYPE
    info.linkname = target
    return info, None


def _device(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    return info, None


@pytest.mark.parametrize("members, message", [
    ([_file("/etc/evil.py")], "absolute path"),
    ([_file("model/../../evil.py")], "climbs out"),
    ([_link("model/link", "/etc/passwd")], "points outside"),
    ([_link("model/link", "../../etc/passwd")], "points outside"),
    ([_link("model/hard", "../x", symbolic=False)], "points outside"),
    ([_device("model/dev")], "device"),
])
def test_check_archive_rejects_unsafe_members(members, message):
    with pytest.raises(ArchiveError, match=message):
        check_archive(_tar(*members), LIMIT, 100)


def test_check_archive_enforces_limits():
    data = _tar(*[_file(f"model/f{i}.py") for i in range(20)])
    with pytest.raises(ArchiveError, match="over the limit of 10"):
        check_archive(data, LIMIT, 10)
    with pytest.raises(ArchiveError, match="bytes, over the limit"):
        check_archive(data, 100, 100)
    with pytest.raises(ArchiveError, match="not a readable tar"):
        check_archive(b"not a tar", LIMIT, 100)


def test_check_archive_accepts_inside_link():
    members = check_archive(_tar(_file("model/a.py"), _link("model/b.py", "a.py")), LIMIT, 100)

    assert [m.name for m in members] == ["model/a.py", "model/b.py"]


def test_pack_and_extract_round_trip(tmp_path):
    source = tmp_path / "mnist"
    (source / "pkg").mkdir(parents=True)
    (source / "train.py").write_text("print('hi')\n")
    (source / "pkg" / "util.py").write_text("X = 1\n")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "junk.pyc").write_bytes(b"x")
    data = pack_directory(source)

    code_dir = cached_code_dir(tmp_path / "work", "ab" * 32, lambda: data, LIMIT, 100)
    root = model_root(code_dir, None)

    assert root.name == "mnist"
    assert (root / "train.py").read_text() == "print('hi')\n"
    assert (root / "pkg" / "util.py").exists()
    assert not (root / "__pycache__").exists()
    assert model_root(code_dir, "mnist") == root.resolve()
    with pytest.raises(ArchiveError, match="not a directory in the uploaded archive"):
        model_root(code_dir, "other")
    # The second call uses the cache and never fetches.
    assert cached_code_dir(tmp_path / "work", "ab" * 32, lambda: None, LIMIT, 100) == code_dir


def test_cached_code_dir_rejects_bad_digest(tmp_path):
    with pytest.raises(ArchiveError, match="not a SHA-256"):
        cached_code_dir(tmp_path, "../../etc", lambda: b"", LIMIT, 100)
    with pytest.raises(ArchiveError, match="not in the store"):
        cached_code_dir(tmp_path, "cd" * 32, lambda: None, LIMIT, 100)


def test_pack_directory_is_deterministic(tmp_path):
    source = tmp_path / "model"
    source.mkdir()
    (source / "train.py").write_text("print(1)\n")
    first = pack_directory(source)
    (source / "train.py").touch()  # a newer mtime must not change the archive

    assert pack_directory(source) == first
    (source / "train.py").write_text("print(2)\n")
    assert pack_directory(source) != first
