"""Generates the protobuf/gRPC code (moderation_api/) from proto/ while building, as `make proto`
does, so `pip install .` from a clean clone (no generated code) gives working stubs. Everything
else about the project is in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "proto"
# loadtest/ (benchmark tooling) and tests/ are not shipped.
SHIPPED = ("server", "model", "review", "training")
PROTOS = sorted(PROTO_ROOT.rglob("*.proto"))


def generated_packages() -> list[str]:
    """One package per folder under proto/: namespace packages, as protoc writes no __init__.py."""
    names = set()
    for proto in PROTOS:
        parts = proto.relative_to(PROTO_ROOT).parent.parts
        names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(names)


GENERATED_PACKAGES = generated_packages()


def protoc(out: Path) -> None:
    from grpc_tools import protoc as grpc_protoc  # grpcio-tools: [build-system].requires

    # grpc_tools' own include dir provides google/protobuf/*.proto (well-known types).
    include = Path(grpc_protoc.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}"]
    args += [f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
    if grpc_protoc.main(args + [str(p) for p in PROTOS]) != 0:
        raise SystemExit(f"protoc failed on {', '.join(map(str, PROTOS))}")


class BuildPyWithProtos(build_py):
    def check_package(self, package: str, package_dir: str):
        # Before run() (egg_info lists sources first) a clean clone has no generated folders yet.
        if package in GENERATED_PACKAGES and not Path(package_dir).is_dir():
            return None
        return super().check_package(package, package_dir)

    def run(self) -> None:
        if self.editable_mode:
            # An editable install imports from the source tree: generate there, as `make proto`.
            protoc(ROOT)
        else:
            # Into the build tree, never the checkout; build_py copies it into the wheel from there.
            out = Path(self.get_finalized_command("build").build_temp) / "proto-python"
            protoc(out)
            for package in GENERATED_PACKAGES:
                self.package_dir[package] = str(out.joinpath(*package.split(".")))
        # data_files (here the .pyi stubs) is computed once, lazily: drop a listing made earlier.
        self.__dict__.pop("data_files", None)
        super().run()


setup(
    # Exact names: "model*" would also take a models/ folder, where model versions live.
    packages=find_packages(include=[f"{top}{sub}" for top in SHIPPED for sub in ("", ".*")]) + GENERATED_PACKAGES,
    # Exactly these data files; the default (include_package_data) also reads SOURCES.txt and warns
    # that review/static looks like a package.
    include_package_data=False,
    package_data={"review": ["static/*"], **{p: ["*.pyi"] for p in GENERATED_PACKAGES}},
    cmdclass={"build_py": BuildPyWithProtos},
)
