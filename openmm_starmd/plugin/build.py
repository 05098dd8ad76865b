"""Build, install and find the C++ plugin (``plugin_src/``); ``starmd build-plugin`` is :func:`run`.

The plugin builds against the pip ``openmm`` wheel (headers and libraries in
``site-packages/OpenMM.libs``, passed as ``OPENMM_DIR``) and the pip ``torch`` (libtorch through
``torch.utils.cmake_prefix_path``). It needs ``cmake``, a C++17 compiler and ``swig``
(``pip install cmake swig`` provides the first and last).

Where it goes: ``--prefix`` if given, else ``$OPENMM_STARMD_PLUGIN_DIR``, else
``~/.cache/openmm-starmd/plugin/<key>`` where the key hashes the plugin sources and the torch,
OpenMM and Python versions, so a build is reused exactly while nothing it depends on changed.
:func:`find_plugin` looks in the same places; ``openmm_starmd.plugin`` imports from there.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Optional

PLUGIN_ENV = "OPENMM_STARMD_PLUGIN_DIR"
SOURCE_ENV = "OPENMM_STARMD_PLUGIN_SRC"
KERNEL_LIBRARY = "libStarMDPluginReference.so"
PYTHON_MODULE = "starmdplugin"
_SOURCE_SUFFIXES = (".h", ".cpp", ".i", ".txt")


def source_dir() -> Path:
    """``plugin_src/`` of the source checkout (or ``$OPENMM_STARMD_PLUGIN_SRC``)."""
    return Path(os.environ.get(SOURCE_ENV) or Path(__file__).resolve().parents[2] / "plugin_src")


def openmm_dir() -> Path:
    """``site-packages/OpenMM.libs`` of the installed openmm wheel."""
    import openmm

    path = Path(openmm.version.openmm_library_path).parent
    if not (path / "include" / "OpenMM.h").is_file():
        raise FileNotFoundError(f"no OpenMM headers under {path}/include; the plugin needs the pip openmm wheel (or pass OPENMM_DIR to cmake yourself)")
    return path


def _source_files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in _SOURCE_SUFFIXES)


def build_key(src: Optional[Path] = None) -> str:
    """12 hex digits identifying the sources and the torch/OpenMM/Python the build links against."""
    import openmm
    import torch

    src = src or source_dir()
    h = hashlib.sha256()
    for path in _source_files(src):
        h.update(str(path.relative_to(src)).encode())
        h.update(path.read_bytes())
    h.update(f"{torch.__version__}|{openmm.version.full_version}|{sys.version_info[:2]}|{sys.executable}".encode())
    return h.hexdigest()[:12]


def default_prefix() -> Path:
    if os.environ.get(PLUGIN_ENV):
        return Path(os.environ[PLUGIN_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "openmm-starmd" / "plugin" / build_key()


def _tool(name: str) -> Optional[str]:
    """A tool on PATH or next to the running Python (pip installs cmake/swig there)."""
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def missing_tools() -> list[str]:
    """Build tools that cannot be found (empty when the plugin can be built)."""
    missing = [name for name in ("cmake", "swig") if _tool(name) is None]
    if _tool(os.environ.get("CXX", "c++")) is None and _tool("g++") is None and _tool("clang++") is None:
        missing.append("a C++ compiler (g++ or clang++)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        missing.append(f"the Python headers (Python.h in {sysconfig.get_paths()['include']}; e.g. apt install python3-dev)")
    if not source_dir().is_dir():
        missing.append(f"the plugin sources ({source_dir()}; build from a source checkout or set {SOURCE_ENV})")
    return missing


def find_plugin(prefix: Optional[os.PathLike] = None) -> Optional[Path]:
    """The install prefix holding a built plugin, or None."""
    prefix = Path(prefix) if prefix is not None else default_prefix()
    ok = (prefix / "lib" / "plugins" / KERNEL_LIBRARY).is_file() and (prefix / "python" / f"{PYTHON_MODULE}.py").is_file()
    return prefix if ok else None


def _run(cmd: list, log, cwd: Optional[Path] = None) -> None:
    log.write(f"$ {' '.join(map(str, cmd))}\n")
    log.flush()
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"plugin build step failed ({' '.join(map(str, cmd[:3]))} ...); see the log {log.name}")


def build_plugin(prefix: Optional[os.PathLike] = None, build_dir: Optional[os.PathLike] = None, jobs: int = 1,
                 test_data: Optional[os.PathLike] = None, force: bool = False, quiet: bool = True) -> Path:
    """Configure, compile and install the plugin; returns the install prefix.

    Args:
        prefix: install folder (default :func:`default_prefix`); an existing complete build there
            is reused unless ``force``.
        build_dir: CMake build folder (default ``<prefix>/build``; it also holds the ctest).
        jobs: parallel compile jobs.
        test_data: folder the ctest ``jump`` test reads (default ``<build_dir>/testdata``).
        quiet: send the compiler output to ``<build_dir>/build.log`` only.
    """
    missing = missing_tools()
    if missing:
        raise RuntimeError("cannot build the STAR-MD plugin, missing: " + ", ".join(missing)
                           + " (pip install cmake swig; a C++ compiler comes from the system)")
    import torch.utils

    prefix = Path(prefix) if prefix is not None else default_prefix()
    if not force and find_plugin(prefix) is not None and (prefix / "build-info.json").is_file():
        return prefix
    build = Path(build_dir) if build_dir is not None else prefix / "build"
    build.mkdir(parents=True, exist_ok=True)
    data = Path(test_data) if test_data is not None else build / "testdata"
    python_include = sysconfig.get_paths()["include"]
    configure = [_tool("cmake"), "-S", source_dir(), "-B", build, f"-DOPENMM_DIR={openmm_dir()}",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DPython3_EXECUTABLE={sys.executable}",
                 f"-DPython3_INCLUDE_DIR={python_include}", f"-DSWIG_EXECUTABLE={_tool('swig')}",
                 f"-DSTARMD_TEST_DATA={data}", f"-DCMAKE_INSTALL_PREFIX={prefix}"]
    t0 = time.perf_counter()
    with open(build / "build.log", "w") as log:
        out = log if quiet else sys.stdout
        _run(configure, out)
        _run([_tool("cmake"), "--build", build, "--parallel", str(max(1, int(jobs)))], out)
        _run([_tool("cmake"), "--install", build], out)
    info = {"key": build_key(), "build_dir": str(build), "test_data": str(data), "seconds": round(time.perf_counter() - t0, 1)}
    (prefix / "build-info.json").write_text(json.dumps(info, indent=1))
    return prefix


def add_arguments(parser) -> None:
    parser.add_argument("--prefix", default=None, help=f"install folder (default ${PLUGIN_ENV} or ~/.cache/openmm-starmd/plugin/<key>)")
    parser.add_argument("--build-dir", default=None, help="CMake build folder (default PREFIX/build)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="parallel compile jobs (default 1)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete build is installed")
    parser.add_argument("--test", action="store_true", help="run the C++ tests (ctest) after building")
    parser.add_argument("--verbose", action="store_true", help="show the compiler output")
    parser.add_argument("--export", nargs=2, metavar=("PDB", "OUT"), default=None,
                        help="also write the propagator file for the system in PDB (its exact atoms: what a C++ "
                             "program's System holds) to OUT, for GeneratorIntegrator")
    parser.add_argument("--model", default="default",
                        help="with --export: 'default', a checkpoint, or a file written by 'starmd export'")


def run(args) -> int:
    t0 = time.perf_counter()
    prefix = build_plugin(args.prefix, args.build_dir, args.jobs, force=args.force, quiet=not args.verbose)
    print(f"STAR-MD plugin installed in {prefix} ({time.perf_counter() - t0:.0f} s)")
    if args.prefix is not None and os.path.abspath(args.prefix) != os.path.abspath(default_prefix()):
        print(f"set {PLUGIN_ENV}={prefix} so that 'from openmm_starmd.plugin import GeneratorIntegrator' finds it")
    if args.export is not None:
        from openmm import app

        from openmm_starmd.plugin.propagator import export_propagator

        pdb_path, out = args.export
        if not os.path.isfile(pdb_path):
            raise FileNotFoundError(f"--export: PDB file not found: {pdb_path}")
        pdb = app.PDBFile(pdb_path)
        export_propagator(pdb.topology, pdb.positions, out, model=args.model)
        print(f"wrote {out} (propagator for {pdb.topology.getNumAtoms()} atoms of {pdb_path}, model {args.model})")
    if args.test:
        build = json.loads((prefix / "build-info.json").read_text())["build_dir"]
        return subprocess.run([_tool("ctest"), "--output-on-failure"], cwd=build).returncode
    return 0
