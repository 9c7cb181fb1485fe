"""Build the prober's C send path; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pktscan.net._fastpath",
            ["pktscan/net/_fastpath.c"],
            extra_compile_args=["-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
        )
    ]
)
