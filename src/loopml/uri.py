"""Model references: the one place `models:/NAME@ALIAS` and `models:/NAME/VERSION` are built and read.

ModelRef.parse("digits@challenger")      # also models:/digits@challenger, models:/digits/3,
ModelRef.parse(None, default="digits")   # the project's champion; or a package folder
ref.uri, ref.pinned("4").uri             # "models:/digits@challenger", "models:/digits/4"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import ConfigError

CHAMPION, CHALLENGER = "champion", "challenger"
ALIAS = re.compile(r"^[A-Za-z_][\w-]*$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PACKAGE_MARKER = "loopml-model.json"


@dataclass(frozen=True)
class ModelRef:
    """A served or loaded model: a registry alias (re-resolved on reload), a fixed version, or a
    package folder on disk."""

    name: str
    alias: str | None = None
    version: str | None = None
    path: str | None = None

    @property
    def uri(self) -> str:
        if self.path is not None:
            return self.path
        if self.alias is not None:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version}"

    @property
    def in_registry(self) -> bool:
        return self.path is None

    def pinned(self, version: str) -> ModelRef:
        """The same model at one version: what an alias pointed at when it was resolved."""
        return ModelRef(self.name, version=version) if self.in_registry else self

    def with_alias(self, alias: str) -> ModelRef:
        return ModelRef(self.name, alias=check_alias(alias))

    @classmethod
    def champion(cls, name: str) -> ModelRef:
        return cls(name, alias=CHAMPION)

    @classmethod
    def parse(cls, text: str | None, default: str | None = None) -> ModelRef:
        """NAME@ALIAS, models:/NAME@ALIAS, models:/NAME/VERSION, a package folder, or (None) the
        champion of `default`."""
        if text is None:
            if not default:
                raise ConfigError("no model given: pass NAME@ALIAS, models:/NAME/VERSION or a package folder, "
                                  "or run inside a project (its champion is used)")  # fmt: skip
            return cls.champion(default)
        path = Path(text)
        if path.is_dir():
            if not (path / PACKAGE_MARKER).is_file():
                raise ConfigError(f"{text} is a folder but not a loopml model package (no {PACKAGE_MARKER})")
            return cls(default or path.resolve().parent.name, path=str(path.resolve()))
        spec = text.removeprefix("models:/")
        if "@" in spec:
            name, alias = spec.split("@", 1)
            if NAME.match(name) and ALIAS.match(alias):
                return cls(name, alias=alias)
        elif text.startswith("models:/") and spec.count("/") == 1:
            name, version = spec.split("/")
            if NAME.match(name) and version.isdigit():
                return cls(name, version=version)
        raise ConfigError(f'a model must be NAME@ALIAS, models:/NAME/VERSION, models:/NAME@ALIAS or a package '
                          f'folder; got "{text}"')  # fmt: skip


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise ConfigError(f'an alias is a word such as "challenger" (letters, digits, _ and -); got {alias!r}')
    return alias
