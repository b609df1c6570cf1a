"""Declares the Cython extensions built from engine/ (everything else is in pyproject.toml).

engine/ is installed as the package ``pyroute._engine``. Cython finds ``.pxd`` files by the
module's qualified name, so with that package-dir mapping it would silently ignore
``engine/x.pxd`` (cdef attributes declared there would become slow Python attributes) and
could not resolve ``cimport pyroute._engine.x``. We therefore copy engine/*.pxd into
build/cython-include/pyroute/_engine/ and point cythonize's include_path at it; generated C
goes to build/cython, never into the source tree.

Build knobs (environment):
  PYROUTE_DEBUG=1     bounds checks, line tracing, -O0 -g
  PYROUTE_ANNOTATE=1  Cython's HTML annotation next to the generated C (build/cython)
"""
import glob
import os
import shutil

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
DEBUG = os.environ.get("PYROUTE_DEBUG") == "1"
ANNOTATE = os.environ.get("PYROUTE_ANNOTATE") == "1"
INCLUDE = os.path.join("build", "cython-include")


def _stage_pxd():
    """Mirror engine/*.pxd as pyroute/_engine/*.pxd so Cython resolves them by qualified name."""
    target = os.path.join(HERE, INCLUDE, "pyroute", "_engine")
    shutil.rmtree(os.path.join(HERE, INCLUDE), ignore_errors=True)
    os.makedirs(target)
    for pkg in (os.path.dirname(target), target):
        open(os.path.join(pkg, "__init__.pxd"), "w").close()
    for pxd in glob.glob(os.path.join(HERE, "engine", "*.pxd")):
        shutil.copy2(pxd, target)


# engine/tlsio.pyx runs TLS on the system OpenSSL, the libssl.so.3 Python's own ssl module is
# linked against (the cryptography wheel's copy is static and exports nothing): building needs
# its headers (Debian: libssl-dev).
LIBRARIES = {"tlsio": ["ssl", "crypto"]}
# engine/accesslog.pyx builds a line from ~30 short appends through small inline helpers
# (_key, _put, _reserve): gcc stops inlining them into the long Formatter._append once that
# function has grown past its limits, and each one becomes a call with a memcpy of unknown
# length. Raised for that module only (bench/results/observability-20261203b.txt, callgrind).
EXTRA_ARGS = {"accesslog": ["--param", "large-function-growth=2000",
                            "--param", "max-inline-insns-single=800",
                            "--param", "inline-unit-growth=400"]}


def _extensions():
    args = ["-O0", "-g"] if DEBUG else ["-O3"]
    exts = []
    for pyx in sorted(glob.glob(os.path.join("engine", "*.pyx"))):
        mod = os.path.splitext(os.path.basename(pyx))[0]
        extra = [] if DEBUG else EXTRA_ARGS.get(mod, [])
        exts.append(Extension("pyroute._engine." + mod, [pyx], extra_compile_args=args + extra,
                              libraries=LIBRARIES.get(mod, []),
                              define_macros=[("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []))
    return exts


_stage_pxd()
setup(
    # pyroute._engine lives in engine/ (package-dir in pyproject.toml): find_packages looks for
    # a pyroute/_engine folder and would leave it out, so it is named here.
    packages=find_packages(include=["pyroute", "pyroute.*"]) + ["pyroute._engine"],
    ext_modules=cythonize(
        _extensions(),
        include_path=[INCLUDE],
        build_dir=os.path.join("build", "cython"),
        annotate=ANNOTATE,
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "cdivision": True,
            "linetrace": DEBUG,
            "embedsignature": True,
        },
    ),
)
