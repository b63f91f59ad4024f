"""VGG weights from other frameworks' files: ONNX graphs and Keras HDF5, read without trusting them.

``architectures`` holds the VGG-16 and VGG-19 conv tables and matches a file's sequence of conv
shapes against them (naming the first conv that does not fit); ``onnx_reader`` takes the conv
weights of an ONNX graph in node order, whatever their names; ``keras_reader`` takes the
``blockB_convC`` kernels of a Keras ``.h5`` file. Both check the file's size, and every tensor's
declared shape, data type and byte length, before they build any array, so a file claiming a huge
tensor fails with one line instead of allocating it. ``vgg16_file`` writes the features-only
VGG-16 safetensors in torchvision's layout (``nst_core.model.weights`` loads it as a VGG-16).

``onnx`` and ``h5py`` are optional (``pip install nst-core[import]``); a missing one is a one-line
error when its format is read, never an import error here.

May import: ``core``, ``model.*`` (the ``model`` layer's own modules); nothing above.
"""
