"""Jobs that combine the layers below: the dense-vs-pruned comparison (the app's engine), releases.

May import: everything below it (``core`` .. ``compress``); never ``cli`` or ``app``.
"""
