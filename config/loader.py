"""Turn a stack's raw key/value settings into a StackConfig, or into every error at once.

Two sources feed it: the stack YAML read offline (`python -m config validate`) and Pulumi's own
config at deploy time (`__main__.py`). Both give `namespace:key` names; Pulumi gives every value as a
string, the YAML gives typed values, so lists and objects may arrive as JSON text.
"""

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from config.stack import StackConfig

NAMESPACE = "gpulab"
# Keys other tools own: the AWS provider's settings and Pulumi's own.
FOREIGN_NAMESPACES = ("aws", "pulumi")
STACK_FILE_KEYS = {"config", "encryptionsalt", "secretsprovider", "encryptedkey", "environment"}
ENCRYPTED = "(encrypted)"


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(Exception):
    """Every problem found in a stack's settings, each naming its key, its value and the fix."""

    def __init__(self, problems: list[Problem], source: str = "stack config"):
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {source}:\n{lines}")


def _known_keys(model: type[BaseModel], prefix: str) -> dict[str, str]:
    """alias path -> field name, nested models included, e.g. 'experiment.batchSize'."""
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.alias or name
        keys[prefix + alias] = name
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                keys.update(_known_keys(candidate, f"{prefix}{alias}."))
    return keys


KNOWN = _known_keys(StackConfig, "")


def display_key(loc: tuple[Any, ...]) -> str:
    """('sshAllowedCidrs', 1) -> 'gpulab:sshAllowedCidrs[1]', ('region',) -> 'aws:region'."""
    if not loc:
        return f"{NAMESPACE} (stack)"
    head, *rest = loc
    text = "aws:region" if head == "region" else f"{NAMESPACE}:{head}"
    for part in rest:
        if part == "[key]":  # pydantic's marker for a bad mapping key: the key itself is already named
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _suggest(key_path: str) -> str:
    """'experiment.batchsize' -> "did you mean gpulab:experiment.batchSize? ...", among its siblings only."""
    parent, _, leaf = key_path.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in KNOWN if k.rpartition(".")[0] == parent}
    lowered = {name.lower(): name for name in siblings}
    close = [lowered[leaf.lower()]] if leaf.lower() in lowered else []
    close = close or difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.75)
    if close:
        return f"did you mean {display_key(tuple(siblings[close[0]].split('.')))}? Fix: rename it"
    known = ", ".join(sorted(siblings))
    return f"Fix: remove it or use a known key ({known})"


def _hint(error: dict[str, Any]) -> str:
    """A fix for pydantic's built-in errors; our own validators write theirs into the message."""
    kind = error["type"]
    ctx = error.get("ctx", {})
    hints = {
        "missing": "Fix: add it to the stack file",
        "int_parsing": "Fix: write a whole number",
        "int_from_float": "Fix: write a whole number",
        "int_type": "Fix: write a whole number",
        "float_parsing": "Fix: write a number",
        "float_type": "Fix: write a number",
        "bool_parsing": "Fix: write true or false",
        "bool_type": "Fix: write true or false",
        "string_type": "Fix: write it as text",
        "list_type": 'Fix: write a YAML list, e.g. ["203.0.113.7/32"]',
        "dict_type": "Fix: write a YAML mapping (key: value lines)",
        "model_type": "Fix: write a YAML mapping (key: value lines)",
        "literal_error": f"Fix: use one of {ctx.get('expected', '')}",
        "greater_than": f"Fix: use a value above {ctx.get('gt')}",
        "greater_than_equal": f"Fix: use {ctx.get('ge')} or more",
        "less_than": f"Fix: use a value below {ctx.get('lt')}",
        "less_than_equal": f"Fix: use {ctx.get('le')} or less",
        "too_short": f"Fix: give at least {ctx.get('min_length')} item(s)",
        "too_long": f"Fix: give at most {ctx.get('max_length')} item(s)",
        "string_too_short": f"Fix: give at least {ctx.get('min_length')} character(s)",
        "string_too_long": f"Fix: give at most {ctx.get('max_length')} character(s)",
        "string_pattern_mismatch": "Fix: use printable ASCII characters only",
    }
    return hints.get(kind, "Fix: see this key's description in Pulumi.yaml")


def _problem(error: dict[str, Any]) -> Problem:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        path = ".".join(str(p) for p in loc)
        return Problem(display_key(loc), f"unknown key; {_suggest(path)}")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] != "value_error":
        message = f"{message}. {_hint(error)}"
    if "input" in error and loc and not isinstance(error["input"], dict):
        value = error["input"]
        shown = "***" if loc[0] == "jupyterToken" else repr(value)
        message = f"{shown} {message}" if error["type"] == "value_error" else f"got {shown}: {message}"
    return Problem(display_key(loc), message)


def _decode(value: Any) -> Any:
    """Pulumi hands every value over as text; lists and objects come as JSON."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_settings(
    settings: dict[str, Any], *, source: str = "stack config", require_token: bool = False
) -> StackConfig:
    """Validate `namespace:key` settings; raise ConfigError listing every problem."""
    problems: list[Problem] = []
    data: dict[str, Any] = {}
    for full_key, value in settings.items():
        namespace, _, key = full_key.partition(":")
        if full_key == "aws:region":
            data["region"] = value
        elif namespace == NAMESPACE and key:
            data[key] = _decode(value)
        elif namespace in FOREIGN_NAMESPACES and key:
            continue
        else:
            problems.append(Problem(full_key, f"unknown key; {_suggest(key or full_key)}"))  # e.g. gpulb:spot
    if data.get("jupyterToken") == ENCRYPTED:
        data.pop("jupyterToken")  # set, but only Pulumi can decrypt it: nothing to check offline
        require_token = False
    if "region" not in data:
        problems.append(Problem("aws:region", "is not set. Fix: add `aws:region: ap-northeast-1` (or your region)"))
        data["region"] = "us-east-1"  # a stand-in, so the other keys are still checked
    try:
        stack = StackConfig.model_validate(data)
    except ValidationError as err:
        problems.extend(_problem(e) for e in err.errors(include_url=False))
        stack = None
    if stack is not None and require_token and stack.jupyter_token is None:
        problems.append(
            Problem(
                "gpulab:jupyterToken",
                "is not set. Fix: run `make up`, which generates one, or "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))' | "
                "pulumi config set --secret gpulab:jupyterToken`",
            )
        )
    if problems:
        raise ConfigError(problems, source)
    assert stack is not None
    return stack


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `config:` block of a Pulumi.<stack>.yaml, with secure values replaced by a marker."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(str(path), "no such file. Fix: pass a stack file such as Pulumi.dev.yaml")], str(path)
        ) from None
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise ConfigError(
            [Problem(str(path), f"cannot be read as text ({err}). Fix: pass a Pulumi.<stack>.yaml file")], str(path)
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(
            [Problem(str(path), f"is not valid YAML: {err}. Fix: correct the line shown")], str(path)
        ) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            [Problem(str(path), "is not a YAML mapping. Fix: start it with `config:` and indented keys")], str(path)
        )
    problems = [
        Problem(
            str(key), f"unknown top-level key; {'Fix: move it under config:' if ':' in str(key) else 'Fix: remove it'}"
        )
        for key in document
        if key not in STACK_FILE_KEYS
    ]
    if problems:
        raise ConfigError(problems, str(path))
    settings = document.get("config") or {}
    if not isinstance(settings, dict):
        raise ConfigError(
            [Problem("config", "is not a mapping. Fix: indent one `namespace:key: value` per line")], str(path)
        )
    return {str(k): ENCRYPTED if isinstance(v, dict) and set(v) == {"secure"} else v for k, v in settings.items()}


def load_stack_file(path: Path) -> StackConfig:
    return parse_settings(read_stack_file(path), source=str(path))
