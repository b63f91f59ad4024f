"""Helpers for the tests, not tests: stand-in servers, subprocess drivers, generators, fixtures' data.

Tests import them as ``from support.hub_server import HubServer``: pytest puts ``tests/`` on
``sys.path`` (rootdir-based ``prepend`` import mode: ``tests/`` has no ``__init__.py``).
Subprocesses started from the project root reach them as ``tests.support.<module>``.

- ``hub_server``: a Hugging Face Hub stand-in on 127.0.0.1 that the real client talks to.
- ``app_server``, ``app_browser``: start `python app.py` on a free port; drive it in headless Chromium.
- ``spaces_standin/``: a stand-in ``spaces`` package (ZeroGPU) put on the app server's path.
- ``formats``: hypothesis strategies for every file format nst reads (the fuzz suite's generators).
- ``peak_rss``: run `nst` in a fresh interpreter and read its peak RSS.
- ``interrupt``: SIGKILL a run once its state file shows progress.
- ``import_graph``: nst_core's import graph, read from the source.
- ``pictures``: synthetic test pictures and calibration folders.
- ``tensor_digest``: a digest of a network's weights, shared with client subprocesses.
- ``tiny_scan``: the arguments of the tiny end-to-end scan.
"""
