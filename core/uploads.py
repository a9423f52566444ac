"""What a server lets a user's request touch on disk: paths confined to configured roots, and
zips of `class/video` folders unpacked safely.

- `resolve_data_path(user_path, data_root)`: a user-typed path, only if it lies under the root
  (`..`, absolute paths elsewhere and symlinks out of the root are refused).
- `extract_zip(zip_path, dest_root)`: refuses zip-slip member names, links and archives over
  the size, file-count and compression-ratio limits.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import secrets
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

DEFAULT_ZIP_MAX_BYTES = 2 * 1024**3  # total uncompressed size
DEFAULT_ZIP_MAX_FILES = 20_000
DEFAULT_ZIP_MAX_RATIO = 200  # uncompressed / compressed, per member: a zip bomb otherwise


class PathNotAllowedError(ValueError):
    """A user path that lies outside the configured roots, or does not exist."""


class ZipRejectedError(ValueError):
    """An uploaded archive that is unsafe or unusable."""


# ---------------------------------------------------------------------------------------------
# Path confinement


def is_within(path: Path, root: Path) -> bool:
    try:
        return path.is_relative_to(root)
    except AttributeError:  # pragma: no cover - Python < 3.9
        return str(path).startswith(str(root) + os.sep) or path == root


def resolve_data_path(
    user_path: str | os.PathLike,
    data_root: str | os.PathLike | list | tuple,
    *,
    must_exist: bool = True,
    kind: str | None = None,
) -> Path:
    """The real path of `user_path` if it lies under `data_root` (or one of several roots).

    A relative path is taken relative to the (first) root. The path is resolved (symlinks followed,
    `..` collapsed) before the check, so `../x`, `/etc/passwd` and a symlink pointing out of the
    root are all refused with `PathNotAllowedError`. `kind` is "dir" or "file" to require one.
    """
    roots = [data_root] if isinstance(data_root, (str, os.PathLike)) else list(data_root)
    if not roots:
        raise PathNotAllowedError("no data root is configured on this server")
    text = str(user_path).strip() if user_path is not None else ""
    if not text:
        raise PathNotAllowedError("no path was given")
    if "\x00" in text:
        raise PathNotAllowedError("the path contains a NUL character")
    real_roots = [Path(r).expanduser().resolve() for r in roots]
    raw = Path(text).expanduser()
    candidates = [raw] if raw.is_absolute() else [r / raw for r in real_roots]
    shown = ", ".join(str(r) for r in real_roots)
    for cand in candidates:
        real = cand.resolve()
        inside = any(is_within(real, r) for r in real_roots)
        if not inside:
            continue
        if must_exist and not real.exists():
            continue
        if kind == "dir" and real.exists() and not real.is_dir():
            raise PathNotAllowedError(f"'{text}' is not a folder")
        if kind == "file" and real.exists() and not real.is_file():
            raise PathNotAllowedError(f"'{text}' is not a file")
        return real
    # Tell apart "outside" from "missing" for a clear message.
    for cand in candidates:
        real = cand.resolve()
        if any(is_within(real, r) for r in real_roots):
            raise PathNotAllowedError(f"'{text}' does not exist under the data root ({shown})")
    raise PathNotAllowedError(
        f"'{text}' is outside the data root ({shown}); only paths under it can be used"
    )


# ---------------------------------------------------------------------------------------------
# Zip upload


def _safe_member_parts(name: str) -> tuple[str, ...] | None:
    """The path parts of a zip member if it is a plain relative name, else None."""
    if not name or "\x00" in name:
        return None
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return None
    parts = tuple(p for p in PurePosixPath(norm).parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def extract_zip(
    zip_path: str | os.PathLike,
    dest_root: str | os.PathLike,
    *,
    max_bytes: int = DEFAULT_ZIP_MAX_BYTES,
    max_files: int = DEFAULT_ZIP_MAX_FILES,
    max_ratio: float = DEFAULT_ZIP_MAX_RATIO,
) -> Path:
    """Unpack a zip of `class/video` folders into a new folder under `dest_root`; return the
    folder that holds the class folders (a single top-level wrapper folder is stepped into).

    Refused with `ZipRejectedError`, before anything is written: not a zip, member names that
    are absolute or climb out with `..` (zip slip), symlink members, more than `max_files`
    members, a declared total over `max_bytes`, a member compressed more than `max_ratio` times.
    The written size is counted again while extracting, in case the headers lie.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise ZipRejectedError(f"'{zip_path.name}' was not found")
    if not zipfile.is_zipfile(zip_path):
        raise ZipRejectedError(f"'{zip_path.name}' is not a zip archive")
    dest_root = Path(dest_root)
    dest_root.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ZipRejectedError(f"'{zip_path.name}' cannot be read as a zip: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_files:
            raise ZipRejectedError(
                f"the zip has {len(infos)} entries; at most {max_files} are accepted"
            )
        total = 0
        plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        for info in infos:
            parts = _safe_member_parts(info.filename)
            if parts is None:
                raise ZipRejectedError(
                    f"the zip has an unsafe entry name '{info.filename}' (absolute or with '..'); "
                    "it was not unpacked"
                )
            mode = (info.external_attr >> 16) & 0xFFFF
            if stat.S_ISLNK(mode):
                raise ZipRejectedError(f"the zip has a symbolic link '{info.filename}'; refused")
            if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
                continue
            if info.is_dir():
                continue
            total += info.file_size
            if total > max_bytes:
                raise ZipRejectedError(
                    f"the zip unpacks to more than {max_bytes / 1e6:.0f} MB; make it smaller"
                )
            if info.compress_size and info.file_size / max(info.compress_size, 1) > max_ratio:
                raise ZipRejectedError(
                    f"'{info.filename}' is compressed {info.file_size / info.compress_size:.0f}x; "
                    "this looks like a zip bomb and was refused"
                )
            plan.append((info, parts))
        if not plan:
            raise ZipRejectedError("the zip holds no files")

        out = dest_root / f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        out.mkdir(parents=True)
        real_out = out.resolve()
        written = 0
        try:
            for info, parts in plan:
                target = (real_out.joinpath(*parts)).resolve()
                if not is_within(target, real_out):  # belt and braces
                    raise ZipRejectedError(f"unsafe entry '{info.filename}' refused")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > max_bytes:
                            raise ZipRejectedError(
                                f"the zip unpacks to more than {max_bytes / 1e6:.0f} MB; make it smaller"
                            )
                        dst.write(chunk)
        except ZipRejectedError:
            shutil.rmtree(out, ignore_errors=True)
            raise
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(out, ignore_errors=True)
            raise ZipRejectedError(f"the zip is damaged and could not be unpacked: {exc}") from None

    # Step into a single wrapper folder ("mydata/<class>/<video>").
    root = out
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            inner = [p for p in entries[0].iterdir() if not p.name.startswith(".")]
            if inner and all(p.is_dir() for p in inner):
                root = entries[0]
                continue
        break
    classes = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(classes) < 2:
        shutil.rmtree(out, ignore_errors=True)
        raise ZipRejectedError(
            "the zip must hold one folder per class (at least two), each with its videos: "
            "class_a/video1.mp4, class_b/video2.mp4, ..."
        )
    return root


def tree_bytes(root: Path) -> int:
    """Bytes of the files under `root` (0 when it does not exist); links are not followed."""
    if not root.is_dir():
        return 0
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
