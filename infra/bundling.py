"""Local (Docker-free) bundling of our two code assets, each from an allow-list (infra.allow_list): the
entry points and the ``mlcycle`` modules they import, all of which must lie in the domain layer.

* The Lambda asset: one directory shared by every function, holding ``functions/``, the part of
  ``mlcycle/`` the handlers import, and the resolved settings as ``mlcycle_config.json``.
  Nothing is pip-installed: boto3 comes with the runtime, pydantic and Powertools with the Powertools
  layer, pandas/pyarrow/numpy with the AWS SDK for pandas layer.
* The SageMaker source dir: one ``sourcedir.tar.gz`` holding the scripts of ``pipelines/`` at its top
  level and the part of ``mlcycle/`` they import, the form framework containers download.

Both assets carry a custom hash over exactly the files (and settings) they contain, so the hash is stable
across runs and machines and changes whenever the bundled bytes would.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import aws_cdk as cdk
import jsii

from infra.allow_list import domain_closure
from mlcycle.config import BUNDLED_CONFIG_FILE, Settings

#: The repository root: ``infra/`` sits directly below it.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The name of the single file the SageMaker source dir asset consists of.
SOURCEDIR_ARCHIVE = "sourcedir.tar.gz"
#: Bump when the layout of a bundle changes without any source file changing.
_LAYOUT_VERSION = "2"


def entry_points(directory: Path) -> list[Path]:
    """The Python files directly in ``directory`` (handlers or job scripts), sorted; none if it is absent."""
    return sorted(directory.glob("*.py")) if directory.is_dir() else []


def with_imports(scripts: list[Path], source_root: Path) -> list[tuple[Path, str]]:
    """``(file, path in the bundle)`` for the ``mlcycle`` modules ``scripts`` import (domain only)."""
    closure = domain_closure(scripts, source_root, source_root / "pyproject.toml")
    return sorted((path, path.relative_to(source_root).as_posix()) for path in closure.values())


def _digest(entries: Iterable[tuple[str, bytes]]) -> str:
    sha = hashlib.sha256(_LAYOUT_VERSION.encode())
    for name, data in entries:
        sha.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return sha.hexdigest()


class LambdaBundle:
    """What goes into the shared Lambda asset directory, and its content hash."""

    def __init__(self, *, settings: Settings, source_root: Path = REPO_ROOT) -> None:
        self.settings = settings
        self.source_root = source_root

    def files(self) -> list[tuple[Path, str]]:
        """``(source file, path inside the bundle)`` for every code file of the bundle."""
        handlers = entry_points(self.source_root / "functions")
        out = [(p, f"functions/{p.name}") for p in handlers]
        return out + with_imports(handlers, self.source_root)

    def asset_hash(self) -> str:
        entries = [(name, path.read_bytes()) for path, name in self.files()]
        entries.append((BUNDLED_CONFIG_FILE, self.settings.to_json().encode()))
        return _digest(entries)

    def write(self, out_dir: Path) -> None:
        for path, name in self.files():
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        (out_dir / BUNDLED_CONFIG_FILE).write_text(self.settings.to_json(), encoding="utf-8")


class SourceDirBundle:
    """What goes into ``sourcedir.tar.gz``, and its content hash."""

    def __init__(self, *, source_root: Path = REPO_ROOT) -> None:
        self.source_root = source_root

    def files(self) -> list[tuple[Path, str]]:
        # The container runs the scripts from its code dir, which is no package: skip the marker.
        scripts = [p for p in entry_points(self.source_root / "pipelines") if p.name != "__init__.py"]
        return [(p, p.name) for p in scripts] + with_imports(scripts, self.source_root)

    def asset_hash(self) -> str:
        return _digest((name, path.read_bytes()) for path, name in self.files())

    def write(self, out_dir: Path) -> None:
        """Write one reproducible gzip'd tar: sorted entries, zeroed times and owners."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path, name in sorted(self.files(), key=lambda item: item[1]):
                data = path.read_bytes()
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        with gzip.GzipFile(out_dir / SOURCEDIR_ARCHIVE, mode="wb", mtime=0) as gz:
            gz.write(buffer.getvalue())


@jsii.implements(cdk.ILocalBundling)
class LocalLambdaBundling:
    """Bundles the Lambda asset on this machine; the CDK never needs Docker."""

    def __init__(self, bundle: LambdaBundle) -> None:
        self._bundle = bundle

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        self._bundle.write(Path(output_dir))
        return True


@jsii.implements(cdk.ILocalBundling)
class LocalSourceDirBundling:
    """Bundles the SageMaker source dir archive on this machine."""

    def __init__(self, bundle: SourceDirBundle) -> None:
        self._bundle = bundle

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        self._bundle.write(Path(output_dir))
        return True


def _as_local(bundler: LocalLambdaBundling | LocalSourceDirBundling) -> cdk.ILocalBundling:
    # jsii calls try_bundle(output_dir, options) positionally; the generated Protocol spells the options
    # out as keyword arguments, which no positional implementation can match for mypy.
    return cast(cdk.ILocalBundling, bundler)


#: Docker is never used: the local bundlers always succeed, so this image is never pulled.
_NO_IMAGE = cdk.DockerImage.from_registry("none")


def lambda_code(*, settings: Settings, source_root: Path = REPO_ROOT) -> cdk.aws_lambda.Code:
    """The one code asset all our functions share."""
    bundle = LambdaBundle(settings=settings, source_root=source_root)
    return cdk.aws_lambda.Code.from_asset(
        str(source_root),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        asset_hash=bundle.asset_hash(),
        bundling=cdk.BundlingOptions(image=_NO_IMAGE, local=_as_local(LocalLambdaBundling(bundle))),
    )


def sourcedir_bundling(bundle: SourceDirBundle) -> cdk.BundlingOptions:
    """Bundling options producing the single ``sourcedir.tar.gz`` file the asset uploads as is."""
    return cdk.BundlingOptions(
        image=_NO_IMAGE,
        local=_as_local(LocalSourceDirBundling(bundle)),
        output_type=cdk.BundlingOutput.SINGLE_FILE,
    )
