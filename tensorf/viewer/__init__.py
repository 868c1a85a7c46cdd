"""The live viewer: a trained or training run in the browser (viser), rendered from any camera.

    cameras.py   viser's camera (OpenCV axes, quaternion, vertical field of view) <-> Cameras
    renderer.py  one view of a parameter snapshot: fixed-size chunks, cancellable between them
    server.py    the viser server: scene, controls, one progressive render thread per browser tab
    __main__.py  python -m tensorf.viewer --run-dir RUN
"""
