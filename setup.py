"""Install mgnet-tf: `pip install -e .` (add `[test]` for the test suite)."""

from setuptools import find_packages, setup

setup(
    name="mgnet-tf",
    version="0.1.0",
    description="Multi-Glimpse Network (MGNet, BMVC 2021) in Keras 3 / TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(
        include=["mgnet_tf", "mgnet_tf.*", "pipelines", "pipelines.*", "training", "training.*", "reports", "reports.*"]
    ),
    python_requires=">=3.10",
    # Keras 3 comes with TensorFlow 2.16+. CI runs the whole suite on 2.21; 2.20, the
    # newest tensorflow-tpu (TPUStrategy's build), passes the layer, model and attack
    # tests (2026-12-01, with Keras 3.15.1), so that a TPU VM's tensorflow-tpu
    # satisfies this. TensorFlow 2.21 no longer pulls in TensorBoard, which train.py
    # logs to.
    install_requires=[
        "tensorflow>=2.20",
        "keras>=3.10",
        "tensorboard",
        "matplotlib",  # evaluate.py's plots
        "numpy",
        "absl-py",
    ],
    extras_require={
        # pillow: writes CMYK JPEG fixtures, which TensorFlow cannot encode;
        # nbclient, nbformat, ipykernel: run the notebook (a slow test).
        # No torch: the PyTorch reference values (sampler, one-cycle schedule,
        # ResNet-18) are stored in tests/data/*.npz; tests/data/torch_reference.py
        # regenerates them.
        # jax: the layer and model tests also run on Keras' JAX backend.
        # ai-edge-litert: runs the LiteRT export (TensorFlow's own tf.lite.Interpreter
        # is deprecated; mgnet_tf.litert falls back to it).
        "test": ["pytest", "pillow", "nbclient", "nbformat", "ipykernel", "jax", "ai-edge-litert"],
        # Running LiteRT exports (python -m mgnet_tf.export --format=litert).
        "litert": ["ai-edge-litert"],
        # Training on the JAX backend (KERAS_BACKEND=jax python train.py ...; TPUs).
        "jax": ["jax"],
        # Generated ImageNet-C corruptions (evaluate.py --corruptions). The package
        # itself, imagecorruptions-imaug, must be installed with --no-deps: it asks for
        # opencv-python, the GUI build that needs libGL; the headless build serves.
        "corruptions": [
            "opencv-python-headless",
            "scikit-image",
            "scipy",
            "numba",
            "pillow",
        ],
    },
)
