"""Builds thinkc and its torch extension `thinkc._C`.

The extension is optional: C++ ops on a CPU torch, C++ + CUDA ops on a CUDA torch with nvcc.
If torch is absent at build time or the compile fails, the package still installs and every op
runs through its pure-torch fallback (`thinkc doctor` says which backend is active).
Install with `pip install --no-build-isolation -e .` so the build sees the torch you installed
(an isolated build would pull a multi-GB CUDA torch).
"""
import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

ext_modules, cmdclass = [], {}


def _torch_extension():
    try:
        import torch
        from torch.utils import cpp_extension as ce
    except ImportError:
        print("thinkc: torch not importable at build time; skipping the C++/CUDA extension", file=sys.stderr)
        return None, None
    if os.environ.get("THINKC_NO_EXT") == "1":
        return None, None
    sources = sorted(glob.glob("csrc/cpu/*.cpp") + glob.glob("csrc/torch/*.cpp")) + ["csrc/module.cpp"]
    cxx = ["-O3", "-std=c++17"]
    # at::parallel_for is inlined from ATen's OpenMP header: without -fopenmp here the ops' loops run on
    # one thread whatever torch.get_num_threads() says. The soname is torch's own libgomp.so.1, which
    # the process has already loaded, so no second OpenMP runtime comes in.
    link = []
    if torch.backends.openmp.is_available() and sys.platform.startswith("linux"):
        cxx, link = cxx + ["-fopenmp"], ["-fopenmp"]
    use_cuda = torch.version.cuda is not None and ce.CUDA_HOME is not None and os.environ.get("THINKC_NO_CUDA") != "1"
    if use_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        archs = os.environ.get("THINKC_CUDA_ARCHS", "80;90")
        nvcc = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo"]
        nvcc += [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs.split(";")]
        ext = ce.CUDAExtension("thinkc._C", sources, include_dirs=[os.path.abspath("csrc")],
                               define_macros=[("THINKC_WITH_CUDA", "1")],
                               extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=link)
    else:
        ext = ce.CppExtension("thinkc._C", sources, include_dirs=[os.path.abspath("csrc")],
                              extra_compile_args={"cxx": cxx}, extra_link_args=link)

    class OptionalBuildExt(ce.BuildExtension):
        """Never fail the install because the extension failed: fall back to pure torch."""

        def run(self):
            try:
                super().run()
            except Exception as e:  # noqa: BLE001 - any compiler failure
                print(f"thinkc: extension build failed ({e}); using pure-torch fallbacks", file=sys.stderr)

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # noqa: BLE001
                print(f"thinkc: extension build failed ({e}); using pure-torch fallbacks", file=sys.stderr)

    return ext, OptionalBuildExt.with_options(use_ninja=True)


_ext, _cmd = _torch_extension()
if _ext is not None:
    ext_modules, cmdclass = [_ext], {"build_ext": _cmd}

setup(
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
