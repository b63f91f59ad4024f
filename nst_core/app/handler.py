"""What the Run and Cancel buttons do: the /compare and /cancel endpoints.

A person's mistake becomes a ``gr.Error`` with its message; a bug is logged with its traceback and
shown as one line. Neither shows the server's path of an upload.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio.processing_utils import save_pil_to_cache

from nst_core.app.api_docs import api_endpoint, endpoint_signature, endpoint_values
from nst_core.app.cancel import CANCELS
from nst_core.app.limits import RunLimits
from nst_core.app.outputs import OUTPUT_DOCS, OutputColumn, status
from nst_core.app.updates import comparison_updates
from nst_core.app.uploads import UPLOADS, read_upload, read_uploads, uploaded_files
from nst_core.core.errors import UserError
from nst_core.workflows import compare
from nst_core.workflows.compare_settings import VALUE_SETTINGS, setting_problems, settings_from_values

log = logging.getLogger("nst.app")
#: What /compare does, for its API page and MCP clients (the Args come from the settings table).
RUN_SUMMARY = (
    "Stylize a content image twice, with the dense VGG (VGG-19 or VGG-16, as the server's weights) and with a"
    " pruned one (same seed, same starting image), and compare the two: time, size, and quality judged by the"
    " dense network (content and style loss) and by SSIM against the dense result. The status and a preview"
    " stream while it runs."
)


@dataclass(frozen=True, eq=False)  # eq=False: hashable by identity (a DenseNetwork is not hashable)
class RunHandler:
    """What the Run button does, bound to the dense network and the outputs it fills."""

    dense: compare.DenseNetwork
    outputs: OutputColumn
    choices: tuple[str, ...] = ()  # the dropdown's specs: nothing else is taken from pruned_choice
    limits: RunLimits = RunLimits()
    defaults: compare.CompareSettings = compare.CompareSettings()  # the page's settings; examples run with them
    default_pruned: str = compare.DEFAULT_PRUNED  # the dropdown's default (a --release checkpoint when given)
    max_size: int = compare.SIZE_RANGE[1]  # the largest size a request may ask for
    max_memory: int | None = None  # each run's memory budget (on a GPU: tiles where a size does not fit whole)

    def example(self, content: dict | None, styles: list[dict] | None) -> dict:
        """A bundled example pair compared at the page's default settings with the default pruned
        network: what Gradio's lazy example cache computes on the pair's first click and keeps. A
        run that did not finish (time limit) is an error, so it is not cached."""
        page = {name: getattr(self.defaults, name) for name in VALUE_SETTINGS}
        final: dict = {}
        for update in self.run(None, content=content, styles=styles, pruned_choice=self.default_pruned, **page):
            final |= update
        if "done" not in str(final.get(self.outputs.status)):
            raise gr.Error(f"the example did not finish: {final.get(self.outputs.status)}", print_exception=False)
        return final

    def checked_spec(self, pruned_choice: str | None, pruned_upload: str | None, hub_repo: str | None) -> str:
        """The pruned spec of the three widgets; a choice the dropdown does not offer is refused (it
        could name any file on the server: the event is not preprocessed, so Gradio does not check it)."""
        if not pruned_upload and not (hub_repo or "").strip() and pruned_choice and pruned_choice not in self.choices:
            raise UserError(
                f"pruned_choice {pruned_choice!r} is not one of the offered networks: {', '.join(self.choices)}"
            )
        return compare.pruned_spec_from_ui(pruned_choice, pruned_upload, hub_repo)

    def validate(self, **values: Any) -> list[dict]:
        """Gradio's ``validator=`` for /compare: it runs when a request arrives, before it takes a
        queue slot, so a bad setting or a missing image is refused at once, each named by its input,
        instead of after waiting for the worker. What needs the files themselves (is it an image, a
        checkpoint that fits) is checked by the run."""
        problems = setting_problems(values, self.max_size)
        paths: dict[str, str | list[str] | None] = {}
        for name in UPLOADS:  # each upload alone, so that every bad one is named
            try:
                paths[name] = read_upload(name, values.get(name))
            except UserError as exc:
                problems[name], paths[name] = str(exc), None
        content, styles = paths["content"], paths["styles"] or []
        hub_repo = values.get("hub_repo")
        hub_repo = None if hub_repo is None else str(hub_repo)  # unpreprocessed: an API caller may send any JSON
        if not content:
            problems.setdefault("content", "upload a content image")
        if not styles or len(styles) > compare.MAX_STYLES:
            problems.setdefault("styles", f"upload one to {compare.MAX_STYLES} style images, not {len(styles)}")
        try:
            self.checked_spec(values.get("pruned_choice"), paths["pruned_upload"], hub_repo)  # type: ignore[arg-type]
        except UserError as exc:
            problems[
                "pruned_upload"
                if paths["pruned_upload"]
                else "hub_repo"
                if (hub_repo or "").strip()
                else "pruned_choice"
            ] = str(exc)
        uploads = uploaded_files(paths)
        names = [name for name in endpoint_signature().parameters if name not in ("self", "request")]
        return [
            gr.validate(name not in problems, compare.public_message(problems.get(name, ""), uploads)) for name in names
        ]

    @api_endpoint(RUN_SUMMARY, OUTPUT_DOCS)
    def run(self, request: gr.Request | None, **values: Any) -> Iterator[dict]:
        """(Replaced by the /compare endpoint's docs, generated from the settings table: see ``api_endpoint``.)"""
        # Each yielded dict holds the outputs to set (OutputColumn.shown says why it is every file output).
        values = endpoint_values(values)
        session = getattr(request, "session_hash", None) or "anonymous"  # no request: a cached example
        cancel, preview, uploads = None, None, []
        try:
            paths = read_uploads(values)
            uploads = uploaded_files(paths)
            # The validator checked these before queueing; checked again for calls that skip it.
            settings = settings_from_values(values | paths, max_size=self.max_size, max_memory=self.max_memory)
            spec = self.checked_spec(values["pruned_choice"], paths["pruned_upload"], values["hub_repo"])  # type: ignore[arg-type]
            cancel = CANCELS.new(session)
            yield self.outputs.cleared(f"preparing {compare.describe_pruned_spec(spec)}...")
            for update in comparison_updates(
                dense=self.dense,
                content=paths["content"],
                styles=paths["styles"],
                settings=settings,
                spec=spec,
                cancel=cancel,
                limits=self.limits,
            ):
                if update[0] in ("progress", "stopped"):
                    _, message, image = update
                    if image is not None:  # saved once; every later update re-sends the same file
                        preview = save_pil_to_cache(image, self.outputs.preview.GRADIO_CACHE, format="png")
                    yield self.outputs.shown(message, preview)
                else:
                    _, headline, *results = update
                    yield self.outputs.shown(headline, preview, tuple(results))
        except compare.Cancelled:
            yield self.outputs.shown("cancelled.", preview)
        except UserError as exc:
            raise gr.Error(compare.public_message(str(exc), uploads), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as exc:  # a bug, not the user's fault: log the traceback, show one line
            log.error("comparison failed:\n%s", traceback.format_exc())
            raise gr.Error(
                compare.public_message(
                    f"internal error ({type(exc).__name__}: {exc}); the server log has the details", uploads
                )
            ) from None
        finally:
            if cancel is not None:
                CANCELS.finish(session, cancel)


def cancel_run(request: gr.Request) -> str:
    """Stop the comparison this session started, if one is running (the Cancel button).

    Returns:
        status: "cancelled." or "nothing is running."
    """
    stopped = CANCELS.cancel(request.session_hash or "anonymous")
    return status("cancelled." if stopped else "nothing is running.")
