"""Walking folders for DICOM files: one walker for imports, series folders, checks and neighbour lookups."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator


def _inside(path: str, real_root: str) -> bool:
    return os.path.commonpath([real_root, path]) == real_root


def walkFiles(root: str | os.PathLike, *, recursive: bool = True, seen_folders: set[str] | None = None,
              on_problem: Callable[[str, str], object] | None = None, follow_links: bool = False,
              follow_file_links: bool = False) -> Iterator[str]:
    """The files under ``root``: sorted by name, a folder's files before its subfolders.

    The walk stays inside ``root``: a symbolic link met on the way is followed
    only when it resolves inside ``root`` (as DICOMDIR references are), unless
    ``follow_links``; a link to ``/etc`` in a folder of images is reported, not
    read.  Each real folder is walked once (so link loops end, and folders
    reached twice, also across calls sharing ``seen_folders``, give their files
    once).

    Parameters
    ----------
    root:
        The folder to walk (itself may be a link: the walk stays inside what it resolves to).
    recursive:
        Walk subfolders too (else only the files directly in ``root``).
    seen_folders:
        Real paths of folders already walked; updated.
    on_problem:
        Called as ``on_problem(path, reason)`` for a folder that cannot be
        listed, an entry that cannot be accessed, a link that leads out of
        ``root`` and anything that is neither a file nor a folder (a broken
        link, a special file); without it these are passed over.
    follow_links:
        Follow symbolic links wherever they lead.
    follow_file_links:
        Follow links to files wherever they lead, links to folders only inside ``root``: for a folder
        the user names as one series or one set of outputs, which is often a folder of links to files
        kept elsewhere (git-annex and DataLad datasets, a series picked from an archive by links).
        Each file is one file read; the walk still never leaves ``root``.
    """
    seen = set() if seen_folders is None else seen_folders
    report = on_problem or (lambda path, reason: None)
    real_root = os.path.realpath(root)
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as iterator:
                entries = sorted(iterator, key=lambda entry: entry.name)
        except OSError as error:
            report(folder, f"cannot list folder: {error.strerror or error}")
            continue
        subfolders = []
        for entry in entries:
            try:
                if entry.is_symlink() and not follow_links:
                    target = os.path.realpath(entry.path)
                    if not _inside(target, real_root) and not (follow_file_links and os.path.isfile(target)):
                        report(entry.path, f"a symbolic link to {target}, outside the folder: not followed "
                                           "(--follow-links follows it)")
                        continue
                if entry.is_dir():
                    subfolders.append(entry.path)
                elif entry.is_file():
                    yield entry.path
                else:
                    report(entry.path, "not a regular file (broken link or special file)")
            except OSError as error:
                report(entry.path, f"cannot access: {error.strerror or error}")
        if recursive:
            stack.extend(reversed(subfolders))
