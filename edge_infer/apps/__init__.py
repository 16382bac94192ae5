"""The programs built on the library: the ``edge-infer`` CLI, the camera demo, the HTTP service.

Apps import the library; the library never imports an app.
"""
