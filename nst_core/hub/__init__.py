"""Publishing on the Hugging Face Hub: push and pull checkpoints, model cards, the Space.

May import: ``core``, ``model``, ``image``, ``nst`` (and ``compress``, its neighbour, without a cycle).
"""
