"""Build the pylsm._pylsm extension from csrc/*.c and the binding, linked against ISA-L (CRC32C), zstd
and lz4 (block compression).

PYLSM_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer (the Python process
must then be run with the ASan runtime preloaded; see the Makefile's asan-test target).
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup

ISAL_HELP = (
    "pylsm needs ISA-L (Intel Intelligent Storage Acceleration Library) for CRC32C.\n"
    "Install its development package first:  apt-get install -y libisal-dev   (Debian/Ubuntu)\n"
    "or  dnf install isa-l-devel  (Fedora),  brew install isa-l  (macOS)."
)


def isal_flags():
    """Compiler and linker flags for ISA-L, from pkg-config when present."""
    cflags, libs = [], ["-lisal"]
    if shutil.which("pkg-config"):
        try:
            cflags = subprocess.check_output(["pkg-config", "--cflags", "libisal"], text=True).split()
            libs = subprocess.check_output(["pkg-config", "--libs", "libisal"], text=True).split()
        except subprocess.CalledProcessError:
            pass
    return cflags, libs


def check_isal(cflags, libs):
    """Compile and link a tiny program against ISA-L; stop the build with a clear message if it fails."""
    import tempfile
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CompileError, LinkError
    from setuptools._distutils.sysconfig import customize_compiler

    cc = new_compiler()
    customize_compiler(cc)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "isal_check.c")
        with open(src, "w") as f:
            f.write("#include <isa-l/crc.h>\nint main(void){return (int)crc32_iscsi((unsigned char*)\"a\",1,0)&0;}\n")
        try:
            objs = cc.compile([src], output_dir=tmp, extra_preargs=cflags)
            cc.link_executable(objs, os.path.join(tmp, "isal_check"), extra_postargs=libs)
        except (CompileError, LinkError):
            sys.exit("error: ISA-L was not found.\n" + ISAL_HELP)


CODEC_HELP = (
    "pylsm needs zstd and lz4 for block compression.\n"
    "Install their development packages first:  apt-get install -y libzstd-dev liblz4-dev   (Debian/Ubuntu)\n"
    "or  dnf install libzstd-devel lz4-devel  (Fedora),  brew install zstd lz4  (macOS)."
)


def check_codecs(libs):
    """Compile and link a tiny program against zstd and lz4; stop with a clear message if it fails."""
    import tempfile
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CompileError, LinkError
    from setuptools._distutils.sysconfig import customize_compiler

    cc = new_compiler()
    customize_compiler(cc)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "codec_check.c")
        with open(src, "w") as f:
            f.write("#include <zstd.h>\n#include <lz4.h>\n"
                    "int main(void){return (int)(ZSTD_compressBound(1) == 0) + (LZ4_compressBound(1) == 0);}\n")
        try:
            objs = cc.compile([src], output_dir=tmp)
            cc.link_executable(objs, os.path.join(tmp, "codec_check"), extra_postargs=libs)
        except (CompileError, LinkError):
            sys.exit("error: zstd or lz4 was not found.\n" + CODEC_HELP)


def check_compiler():
    """Stop the build with the real cause when there is no C compiler (not as a missing ISA-L)."""
    import shlex
    import sysconfig

    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or not shutil.which(cc[0]):
        sys.exit(f"error: no C compiler: {cc[0] if cc else 'cc'!r} was not found.\n"
                 "pylsm compiles its C core when it is installed from source. Install a compiler first:\n"
                 "  apt-get install -y gcc   (Debian/Ubuntu),  dnf install gcc  (Fedora),  "
                 "xcode-select --install  (macOS)\n"
                 "or set CC to one.")


cflags, libs = isal_flags()
building = any(a in sys.argv for a in ("build_ext", "build", "bdist_wheel", "install", "develop", "editable_wheel"))
if building:
    check_compiler()
    check_isal(cflags, libs)
    check_codecs(["-lzstd", "-llz4"])

extra_compile = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE",
                 "-fvisibility=hidden"] + cflags
extra_link = list(libs) + ["-lzstd", "-llz4", "-lpthread"]
if os.environ.get("PYLSM_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    extra_compile = [f for f in extra_compile if f != "-O2"] + ["-O1"] + san
    extra_link += san

sources = sorted(glob.glob("csrc/*.c")) + ["pylsm/_pylsm.c"]
setup(
    ext_modules=[
        Extension(
            "pylsm._pylsm",
            sources=sources,
            include_dirs=["csrc"],
            depends=sorted(glob.glob("csrc/*.h")),
            extra_compile_args=extra_compile,
            extra_link_args=extra_link,
        )
    ]
)
