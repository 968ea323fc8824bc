# setuptools has no pyproject.toml key for cffi_modules: this file only wires the
# native build (native/build.py) into the package; all metadata is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build.py:ffibuilder"])
