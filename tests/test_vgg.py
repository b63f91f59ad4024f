"""The truncated VGG-19: in-place ReLUs change nothing a caller can see."""

import torch

from nst_core.model.layers import layer_index


def reference_activations(model, image, layers):
    """Every module applied as registered (not in place), the way torchvision's VGG runs."""
    out, x = {}, model.preprocess(image)
    for index, module in enumerate(model.features):
        x = module(x)
        out[index] = x.clone()
    return {name: out[layer_index(name)] for name in layers}


def test_in_place_relu_keeps_requested_conv_outputs_and_gradients(random_model):
    image = torch.rand(1, 3, 32, 32) * 255
    layers = ["conv1_2", "relu1_2", "conv3_1", "relu4_2", "relu5_3"]  # conv outputs requested too
    expected = reference_activations(random_model, image, layers)
    got = random_model(image, layers)
    for name in layers:
        assert torch.equal(got[name], expected[name]), name
    assert (got["conv1_2"] < 0).any()  # a requested conv output was not rectified in place

    x = image.clone().requires_grad_(True)
    sum(v.square().mean() for v in random_model(x, layers).values()).backward()
    y = image.clone().requires_grad_(True)
    feats, h = {}, random_model.preprocess(y)
    for index, module in enumerate(random_model.features):
        h = module(h)
        feats[index] = h
    sum(feats[layer_index(n)].square().mean() for n in layers).backward()
    assert torch.allclose(x.grad, y.grad, rtol=1e-4, atol=1e-6 * float(y.grad.abs().max()))
