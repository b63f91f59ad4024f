"""Gradio app: dense vs pruned VGG-19 style transfer, side by side.

Thin on purpose: it builds the interface and turns events from ``nst_core.compare`` into
widget updates; every computation lives in ``nst_core``.

    python app.py                                   # http://127.0.0.1:7860, Caffe VGG-19 weights
    python app.py --weights random --port 7861      # no weights needed (results not meaningful)
    python app.py --pruned runs/seed.safetensors    # offer a local checkpoint in the dropdown

Flags fall back to NST_HOST / NST_PORT / NST_WEIGHTS, then GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT (what a Hugging Face Space sets), then the defaults above.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import traceback
from pathlib import Path

import gradio as gr

from nst_core import compare
from nst_core.errors import UserError
from nst_core.images import find_images

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
log = logging.getLogger("nst.app")

CSS = """
#weights-banner { border: 2px solid #d97706; background: #fef3c7; color: #78350f; border-radius: 8px; padding: 4px 12px; }
#weights-banner * { color: #78350f; }
"""


def pass_upload_path_unopened(image: gr.Image) -> gr.Image:
    """Make a ``gr.Image`` input hand over the uploaded file's path without opening it.

    Stock ``gr.Image`` opens uploads with PIL before the handler runs, so a file that is not
    an image fails inside Gradio with an internal message; this way ``nst_core.images``
    validates it and the person reads an error that names the file. (Patched on the
    instance: a subclass would make Gradio write an ``app.pyi`` stub beside this file.)
    """
    stock = image.preprocess

    def preprocess(payload):
        if payload is not None and payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        return stock(payload)

    image.preprocess = preprocess
    return image


def zero_gpu(duration: int):
    """``spaces.GPU`` on a ZeroGPU Space; a no-op decorator everywhere else (package absent)."""
    try:
        import spaces  # only installed on Hugging Face Spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


class CancelRegistry:
    """One cancel flag per browser session, so the cancel button stops that session's run.

    Gradio's own ``cancels=`` stops delivering updates, but a sync generator it stops is
    not always closed promptly; the flag makes the optimisation loop itself stop.
    """

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, session: str) -> threading.Event:
        with self._lock:
            self._events[session] = event = threading.Event()
            return event

    def finish(self, session: str, event: threading.Event) -> None:
        """Forget a finished run's flag (unless a newer run of the session replaced it)."""
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]

    def cancel(self, session: str) -> bool:
        with self._lock:
            event = self._events.pop(session, None)
        if event is not None:
            event.set()
        return event is not None


CANCELS = CancelRegistry()


def example_rows() -> list[list]:
    """[content, [style]] pairs from examples/content and examples/style (whatever is bundled)."""
    def images(folder: Path) -> list[str]:
        return [str(p) for p in find_images(folder, recursive=False)]

    contents, styles = images(EXAMPLES / "content"), images(EXAMPLES / "style")
    if not contents or not styles:
        return []
    count = max(len(contents), len(styles))
    return [[contents[i % len(contents)], [styles[i % len(styles)]]] for i in range(count)]


def _status(text: str) -> str:
    return f"**Status:** {text}"


def build_app(dense: compare.DenseNetwork, pruned_files: list[str] | None = None) -> gr.Blocks:
    """The interface, bound to an already loaded dense network."""
    defaults = compare.default_settings()
    choices = compare.named_choices(pruned_files)
    device = compare.device()

    with gr.Blocks(title="Pruned VGG-19 style transfer") as demo:
        gr.Markdown(
            "# Dense vs pruned VGG-19 style transfer\n"
            "Gatys-style neural style transfer run twice with the same seed and starting image: once with the dense "
            "VGG-19 and once with a pruned one. Both outputs are judged by the dense network (content and style loss) "
            f"and by SSIM against the dense output. Running on **{device}** with weights `{dense.model.weight_source}`."
        )
        banner = dense.banner()
        gr.Markdown(banner or "", visible=bool(banner), elem_id="weights-banner")

        with gr.Row():
            with gr.Column(scale=1):
                content = pass_upload_path_unopened(
                    gr.Image(label="Content image", type="filepath", sources=["upload", "clipboard"], height=240, elem_id="content")
                )
                styles = gr.File(
                    label=f"Style images (up to {compare.MAX_STYLES}, blended equally)",
                    file_count="multiple",
                    file_types=["image"],
                    type="filepath",
                    elem_id="style-files",
                )
                style_gallery = gr.Gallery(label="Styles", columns=4, height=110, interactive=False, show_label=False)
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        size = gr.Slider(*compare.SIZE_RANGE, value=defaults.size, step=16, label="Size (longer side, px)", elem_id="size")
                        iterations = gr.Slider(*compare.ITERATIONS_RANGE, value=defaults.iterations, step=1, label="Iterations", elem_id="iterations")
                    with gr.Row():
                        optimizer = gr.Radio(list(compare.OPTIMIZERS), value=defaults.optimizer, label="Optimizer")
                        preserve_color = gr.Checkbox(value=defaults.preserve_color, label="Keep the content's colours")
                    with gr.Row():
                        strength = gr.Slider(
                            *compare.STYLE_STRENGTH_RANGE, value=defaults.style_strength, step=0.1, label="Style strength (x preset)"
                        )
                        # No minimum/maximum here: compare.validate_settings checks them with a message naming the setting.
                        tv_weight = gr.Number(value=defaults.tv_weight, label="TV weight (smoothness, 0 to 1)")
                        seed = gr.Number(value=defaults.seed, precision=0, label="Seed")
                with gr.Accordion("Pruned network", open=True):
                    pruned_choice = gr.Dropdown(choices, value=compare.DEFAULT_PRUNED, label="Compare the dense network with")
                    with gr.Row():
                        pruned_upload = gr.File(
                            label="...or upload a profile (.json) or checkpoint (.safetensors)",
                            file_types=[".json", ".safetensors"],
                            type="filepath",
                        )
                        hub_repo = gr.Textbox(label="...or a Hub repo id", placeholder="OWNER/NAME[:FILE][@REVISION]")
                with gr.Row():
                    run = gr.Button("Run dense and pruned", variant="primary", elem_id="run")
                    stop = gr.Button("Cancel", variant="stop", elem_id="cancel")

            with gr.Column(scale=2):
                status = gr.Markdown(_status("ready."), elem_id="status")
                preview = gr.Image(label="Live preview", format="png", interactive=False, height=200, elem_id="preview")
                slider = gr.ImageSlider(label="Dense (left) vs pruned (right)", format="png", interactive=False, elem_id="slider")
                with gr.Row():
                    dense_out = gr.Image(label="Dense result", format="png", interactive=False, buttons=["download", "fullscreen"])
                    pruned_out = gr.Image(label="Pruned result", format="png", interactive=False, buttons=["download", "fullscreen"])
                summary = gr.Dataframe(
                    headers=["", "dense", "pruned"], label="Timing, size and judged quality", interactive=False, elem_id="summary",
                    wrap=True, column_widths=["36%", "32%", "32%"],
                )
                layers = gr.Dataframe(
                    headers=["layer", "channels (pruned / dense)", "weights", "nonzeros", "fraction of dense weights removed"],
                    label="Per-layer sparsity of the pruned network",
                    interactive=False,
                )

        rows = example_rows()
        if rows:
            # cache_examples must be explicit: on Spaces Gradio otherwise runs every example at start-up.
            gr.Examples(rows, inputs=[content, styles], cache_examples=False, label="Examples (click, then Run)")

        styles.change(lambda files: files or [], inputs=styles, outputs=style_gallery, api_visibility="private")

        outputs = [status, preview, slider, dense_out, pruned_out, summary, layers]

        @zero_gpu(duration=240)
        def comparison_updates(content_path, style_paths, settings, spec, cancel):
            # Everything yielded is plain data (images, text, rows) so it can cross ZeroGPU's process boundary.
            net = compare.resolve_pruned(spec, dense.model)
            for event in compare.run_comparison(dense.model, net, content_path, style_paths, settings, cancel=cancel):
                if isinstance(event, compare.Comparison):
                    headline = (
                        f"done: dense {event.dense_seconds:.1f} s, pruned {event.pruned_seconds:.1f} s "
                        f"({event.speedup:.2f}x), SSIM {event.judged['ssim']:.3f}."
                        + "".join(f"<br>Note: {n}" for n in net.notes)
                    )
                    yield ("done", event.dense.image, event.pruned.image, event.summary_rows(), event.sparsity_rows(), headline)
                else:
                    yield ("progress", event.message, event.progress.preview if event.progress else None)

        def on_run(content_path, style_paths, size_v, iters_v, opt_v, strength_v, tv_v, seed_v, keep_v, choice, upload, repo,
                   request: gr.Request):
            session = request.session_hash or "anonymous"
            cancel = None
            try:
                settings = compare.CompareSettings(
                    size=_int(size_v, "size"), iterations=_int(iters_v, "iterations"), optimizer=opt_v,
                    style_strength=_float(strength_v, "style strength"), tv_weight=_float(tv_v, "TV weight"),
                    seed=_int(seed_v, "seed"), preserve_color=bool(keep_v),
                )
                compare.validate_settings(settings)
                spec = compare.pruned_spec_from_ui(choice, upload, repo)
                cancel = CANCELS.new(session)
                yield {status: _status(f"preparing {compare.describe_pruned_spec(spec)}..."), preview: None, slider: None,
                       dense_out: None, pruned_out: None, summary: None, layers: None}
                for update in comparison_updates(content_path, style_paths, settings, spec, cancel):
                    if update[0] == "progress":
                        _, message, image = update
                        changes = {status: _status(message)}
                        if image is not None:
                            changes[preview] = image
                        yield changes
                    else:
                        _, d_img, p_img, summary_rows, layer_rows, headline = update
                        yield {
                            status: _status(headline),
                            slider: (d_img, p_img),
                            dense_out: d_img,
                            pruned_out: p_img,
                            summary: summary_rows,
                            layers: layer_rows,
                        }
            except compare.Cancelled:
                yield {status: _status("cancelled.")}
            except UserError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            except gr.Error:
                raise
            except Exception as exc:  # a bug, not the user's fault: log the traceback, show one line
                log.error("comparison failed:\n%s", traceback.format_exc())
                raise gr.Error(f"internal error ({type(exc).__name__}: {exc}); the server log has the details") from None
            finally:
                if cancel is not None:
                    CANCELS.finish(session, cancel)

        def on_cancel(request: gr.Request):
            stopped = CANCELS.cancel(request.session_hash or "anonymous")
            return _status("cancelled." if stopped else "nothing is running.")

        inputs = [content, styles, size, iterations, optimizer, strength, tv_weight, seed, preserve_color,
                  pruned_choice, pruned_upload, hub_repo]
        run_event = run.click(on_run, inputs=inputs, outputs=outputs, api_name="compare", concurrency_limit="default")
        stop.click(on_cancel, inputs=None, outputs=status, cancels=[run_event], api_name="cancel", queue=False)
    return demo


def _int(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number, not {value!r}") from None


def _float(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, not {value!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Serve the dense vs pruned style transfer app.")
    parser.add_argument("--host", default=env("NST_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                        help="interface to listen on (env NST_HOST, GRADIO_SERVER_NAME; default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(env("NST_PORT") or env("GRADIO_SERVER_PORT") or 7860),
                        help="port (env NST_PORT, GRADIO_SERVER_PORT; default 7860)")
    parser.add_argument("--weights", default=env("NST_WEIGHTS") or compare.DEFAULT_WEIGHTS,
                        help="VGG-19 weights: caffe | torchvision | hf:REPO[:FILE][@REV] | PATH.pth/.safetensors | random[:SEED] "
                             "(env NST_WEIGHTS; default caffe; falls back to random weights, with a warning banner, if they cannot be loaded)")
    parser.add_argument("--pruned", action="append", default=[], metavar="PATH",
                        help="a pruned checkpoint (.safetensors) or profile (.json) on this machine to offer in the dropdown (repeatable)")
    parser.add_argument("--queue-size", type=int, default=int(env("NST_QUEUE_SIZE") or 16),
                        help="requests that may wait; more are told the queue is full (env NST_QUEUE_SIZE; default 16)")
    parser.add_argument("--concurrency", type=int, default=int(env("NST_CONCURRENCY") or 1),
                        help="comparisons run at once (env NST_CONCURRENCY; default 1: each one uses every core)")
    parser.add_argument("--max-file-size", default=env("NST_MAX_FILE_SIZE") or "10mb",
                        help="largest upload accepted (env NST_MAX_FILE_SIZE; default 10mb)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    if args.queue_size < 1 or args.concurrency < 1:
        raise SystemExit("app.py: error: --queue-size and --concurrency must be at least 1")
    dense = compare.load_dense(args.weights)
    if dense.fallback_reason:
        log.warning("using random weights: %s", dense.fallback_reason)
    for path in args.pruned:
        try:
            compare.resolve_pruned(path, dense.model)  # fail now, not on someone's first click; also caches it
        except UserError as exc:
            raise SystemExit(f"app.py: error: --pruned {path}: {exc}") from None
    compare.resolve_pruned(compare.DEFAULT_PRUNED, dense.model)  # prune the default once, before the first click
    compare.warm_up(dense.model)
    demo = build_app(dense, args.pruned)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=args.max_file_size,
        show_error=True,  # errors raised before our handler runs (e.g. an unreadable upload) still show their message
        theme=gr.themes.Soft(),
        css=CSS,
    )


if __name__ == "__main__":
    main()
