"""The Hugging Face hub: fetch a folder by hub id, upload a saved folder (model folders and reference folders alike).

``huggingface_hub`` is an optional dependency, imported only when a hub id is used; every failure becomes one
message that names the repository and the local-folder alternative.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

#: What a hub id looks like: ``owner/name``.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_folder_arg(value, what: str = "model") -> None:
    """TypeError unless ``value`` is a path (str or os.PathLike): a folder or a hub id."""
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"expected a {what} folder path (str or os.PathLike), got {type(value).__name__}")


def hub_module(repo_id: str):
    """The ``huggingface_hub`` module, or an ImportError naming ``repo_id`` and how to install the client."""
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            # fastembed-sc is installed from a clone, not the package index: name what pip can find.
            f"'{repo_id}' needs the Hugging Face hub client, an optional dependency: pip install huggingface_hub "
            "(or pip install '.[hub]' in a fastembed clone); "
            "or use a local model folder (config.yaml, universe.bed and weights) instead"
        ) from None
    return huggingface_hub


def fetch_folder(repo_id: str, revision: str | None, *, what: str = "model", contents: str = "") -> Path:
    """Download the hub repository ``repo_id`` (a path that does not exist locally) and return its local folder.

    Parameters
    ----------
    repo_id : str
        ``"owner/name"``; anything else is a FileNotFoundError (a local folder that does not exist).
    revision : str, optional
        Branch, tag or commit.
    what : str
        What the folder is, for the messages (``"model"``, ``"reference"``).
    contents : str
        What such a folder holds, for the offline advice (e.g. ``" (config.yaml, universe.bed, ...)"``).

    Returns
    -------
    pathlib.Path
        The downloaded snapshot (in the hub's cache).
    """
    if Path(repo_id).is_file():
        raise NotADirectoryError(f"{what} folder '{repo_id}' is a file; expected a {what} folder{contents}")
    if not HUB_ID.match(repo_id):
        raise FileNotFoundError(
            f"{what} folder '{repo_id}' does not exist (and it is not a hub id like 'owner/name')"
        )
    hub = hub_module(repo_id)
    try:
        return Path(hub.snapshot_download(repo_id, revision=revision))
    except Exception as err:
        raise OSError(
            f"{what} '{repo_id}' is not a local folder and could not be fetched from the Hugging Face hub "
            f"({type(err).__name__}: {err}); without network access, download the {what} folder{contents} on "
            "another machine and pass its local path"
        ) from None


def upload_folder(
    save: Callable[[Path], Path],
    repo_id: str,
    *,
    private: bool,
    token: str | None,
    commit_message: str,
    advice: str,
) -> str:
    """Save a folder with ``save(tmp_path)`` into a temporary place and upload it to the hub repository ``repo_id``.

    ``advice`` ends the error message when the upload fails (how to save locally instead). Returns the URL of the
    commit (str).
    """
    hub = hub_module(repo_id)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(Path(tmp))
        try:
            api = hub.HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
        except Exception as err:
            raise OSError(
                f"could not upload to the Hugging Face hub repository '{repo_id}' ({type(err).__name__}: {err}); "
                f"{advice}"
            ) from None
    return str(getattr(info, "commit_url", info))
