"""The Hugging Face Hub: downloads, config.json, the model card, push and pull, the Space, weights hosting.

One module per concept: ``errors`` (the Hub's failures as one line; offline mode), ``download``
(one file of a repo through the cache), ``config`` (config.json: what a loader needs first),
``card`` (the model card from ``hub_cards/model_card.md.j2``), ``pretrained`` (the files behind
``VGGFeatures``' huggingface_hub methods), ``push``, ``pull``, ``space`` and ``convert``.
The network module imports ``download``, ``config``, ``card`` and ``pretrained``; ``pull``,
``push``, ``space`` and ``convert`` import the network, so this ``__init__`` imports none of them.

Everything goes through huggingface_hub's own API (``create_repo``, ``upload_folder``,
``hf_hub_download``), so the token comes from the usual places (the ``HF_TOKEN`` variable or
``hf auth login``) and downloads use the normal cache (``HF_HUB_OFFLINE=1`` works once cached).
No module here reads, prints or writes the token. Every load asks for the repo's config.json
first: the Hub counts a model's downloads by it.
"""
