"""Uploaded files as the /compare handlers receive them: Gradio's file data -> the files' paths, unopened.

The events that take uploads are not preprocessed (``preprocess=False``): stock ``gr.Image``
preprocessing opens uploads with PIL before the handler runs, so a file that is not an image fails
inside Gradio with an internal message; stock ``gr.File`` leaves an empty temporary file in Gradio's
cache for every file, which ``delete_cache`` never removes (Gradio 6.31). Unpreprocessed, ``nst_core``
checks each file and the person reads an error that names it.

>>> upload_path({"path": "/tmp/gradio/abc/content.png"})
'/tmp/gradio/abc/content.png'
>>> read_uploads({"content": {"path": "c.png"}, "styles": [{"path": "s.png"}]})["styles"]
['s.png']
"""

from __future__ import annotations

from collections.abc import Mapping

from nst_core.core.errors import UserError
from nst_core.workflows.settings import APP_PARAMETERS

#: The /compare parameters that carry uploaded files, by name: whether each holds several files.
UPLOADS = {
    s.parameter: s.app.props.get("file_count") == "multiple"
    for s in APP_PARAMETERS
    if s.app and s.app.widget in ("image", "file")
}


def upload_path(payload: dict | None) -> str | None:
    """An upload as the run event receives it (Gradio's file data, already moved into its cache and
    checked to come from its upload folder) -> the file's path."""
    if not payload:
        return None
    path = payload.get("path") if isinstance(payload, dict) else None
    if not path:
        raise UserError("an upload arrived without a file; upload it as a file")
    return str(path)


def upload_paths(payload: list[dict] | None) -> list[str] | None:
    """Several uploads (``file_count="multiple"``) -> their paths (see :func:`upload_path`)."""
    if payload is None:
        return None
    return [path for path in map(upload_path, payload) if path]


def read_upload(name: str, payload: object) -> str | list[str] | None:
    """The path (or paths) of the upload parameter ``name``; a UserError when it holds no file."""
    return upload_paths(payload) if UPLOADS[name] else upload_path(payload)  # type: ignore[arg-type]


def read_uploads(values: Mapping[str, object]) -> dict[str, str | list[str] | None]:
    """Every upload parameter of an endpoint call -> its path(s), in the endpoint's order (None: none sent)."""
    return {name: read_upload(name, values.get(name)) for name in UPLOADS}


def uploaded_files(paths: Mapping[str, str | list[str] | None]) -> list[str]:
    """Every file of :func:`read_uploads`' answer, one list (what error messages must not show the path of)."""
    files: list[str] = []
    for value in paths.values():
        files += value if isinstance(value, list) else [value] if value else []
    return files
