"""Build script: cythonize ``src_cy/*.pyx`` into private ``fastconv._*`` modules.

OpenMP is probed by test-compiling a tiny ``#pragma omp`` program; when that fails (or when
``FASTCONV_OPENMP=0``) the extensions are built without it and run single-threaded.
``FASTCONV_NATIVE=0`` drops ``-march=native`` (use it when building a wheel for other machines).
"""
import os
import shutil
import tempfile
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Reductions held to a derived tolerance, not bit-identity: fused multiply-add allowed there.
FMA_MODULES = {"fastconv._conv"}

OPENMP_TEST = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _flag_enabled(name, default="1"):
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


def _compiles(compiler, source, extra_compile, extra_link):
    """Return True when ``source`` compiles and links with the given flags."""
    tmpdir = tempfile.mkdtemp(prefix="fastconv-probe-")
    try:
        path = os.path.join(tmpdir, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        objects = compiler.compile([path], output_dir=tmpdir, extra_postargs=extra_compile)
        compiler.link_executable(objects, os.path.join(tmpdir, "probe"), extra_postargs=extra_link)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


class BuildExt(build_ext):
    """build_ext that probes OpenMP and -march=native before compiling."""

    def build_extensions(self):
        compiler_type = self.compiler.compiler_type
        compile_args, link_args = [], []
        if compiler_type == "msvc":
            compile_args += ["/O2", "/fp:precise"]
            if _flag_enabled("FASTCONV_OPENMP"):
                compile_args.append("/openmp")
        else:
            # -ffp-contract=off: no fused multiply-add contraction, so elementwise kernels stay
            # bit-identical to their NumPy references.
            compile_args += ["-O3", "-ffp-contract=off", "-fno-math-errno"]
            if _flag_enabled("FASTCONV_NATIVE") and _compiles(
                self.compiler, "int main(void){return 0;}", ["-march=native"], []
            ):
                compile_args.append("-march=native")
            if not _flag_enabled("FASTCONV_OPENMP"):
                print("fastconv: FASTCONV_OPENMP=0, building without OpenMP (single-threaded kernels)")
            elif _compiles(self.compiler, OPENMP_TEST, ["-fopenmp"], ["-fopenmp"]):
                compile_args.append("-fopenmp")
                link_args.append("-fopenmp")
            else:
                print("fastconv: the compiler does not support OpenMP; building single-threaded kernels")
        for ext in self.extensions:
            extra = list(compile_args)
            if ext.name in FMA_MODULES and compiler_type != "msvc":
                extra.append("-ffp-contract=fast")
            ext.extra_compile_args = extra + list(ext.extra_compile_args or [])
            ext.extra_link_args = link_args + list(ext.extra_link_args or [])
        super().build_extensions()


def extensions():
    exts = []
    for pyx in sorted(glob(os.path.join("src_cy", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                f"fastconv.{name}",
                [pyx],
                include_dirs=[numpy.get_include(), "src_cy"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return cythonize(
        exts,
        compiler_directives={"language_level": "3"},
        include_path=["src_cy"],
        annotate=False,
        quiet=True,
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
