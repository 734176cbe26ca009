"""setuptools shim: the cffi extension is declared here (cffi_modules)."""

from setuptools import setup

setup(cffi_modules=["ringred_build.py:ffibuilder"])
