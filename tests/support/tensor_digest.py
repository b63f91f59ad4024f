"""A digest of a network's conv weights, biases and masks: equal digests mean identical tensors.

Its own module so the tests and the client subprocesses they start use one definition.
"""

import hashlib


def weights_digest(model) -> dict[str, str]:
    out = {}
    for name in model.conv_names:
        conv = model.conv(name)
        h = hashlib.sha256(conv.weight.numpy().tobytes() + conv.bias.numpy().tobytes())
        if name in model.masks:
            h.update(model.masks[name].numpy().tobytes())
        out[name] = h.hexdigest()
    return out
