"""The Gradio app: dense vs pruned VGG-19 style transfer, side by side (``python app.py`` serves it).

The top layer, beside ``cli``: the only package that imports Gradio. It may import everything below
it (the comparison itself is ``nst_core.workflows.compare``; the input widgets and the /compare
endpoint's parameters come from ``nst_core.workflows.settings``); nothing imports it.

- ``page``: the page (``build_app``); ``inputs``, ``outputs``: its two columns;
- ``handler``: what Run and Cancel do; ``api_docs``: the /compare endpoint's signature and docs;
- ``uploads``, ``cancel``, ``limits``: uploaded files, per-session cancel flags, per-run limits;
- ``updates``, ``zero_gpu``, ``refusal``: one comparison as plain data (in ``spaces.GPU`` on ZeroGPU),
  ZeroGPU's glue, and the page a Space shows instead of random weights;
- ``server``: start-up and launch, from the options ``app.py`` parses.
"""
