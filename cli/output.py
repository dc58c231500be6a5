"""Text renderings wsk users know: 4-space JSON, the action and activation tables, log lines."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from typing import Any, TextIO

# wsk's statusCode → word table (ActivationFilteredRow); out-of-range codes print as success.
STATUS_WORDS = ["success", "application error", "developer error", "internal error"]

# A log line is "<ISO timestamp>Z <padding> stdout: <text>"; wsk strips up to the text.
_LOG_PREFIX = re.compile(
    r"\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-6]\d:[0-6]\d.\d+Z( *(stdout|stderr):)?\s(.*)"
)


def format_json(value: Any) -> str:
    return json.dumps(value, indent=4, ensure_ascii=False)


def print_json(value: Any, out: TextIO | None = None) -> None:
    print(format_json(value), file=out or sys.stdout)


def annotation(entity: dict[str, Any], key: str) -> Any:
    for item in entity.get("annotations") or []:
        if isinstance(item, dict) and item.get("key") == key:
            return item.get("value")
    return None


def action_row(action: dict[str, Any]) -> str:
    kind = annotation(action, "exec") or ""
    visibility = "shared" if action.get("publish") else "private"
    full_name = f"/{action.get('namespace', '')}/{action.get('name', '')}"
    return f"{full_name:<70} {visibility} {kind}"


def sort_actions_by_name(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """wsk's --name-sort: actions outside packages first by name, then packaged ones by
    ``namespace/package`` + name, case-insensitively."""

    def sort_key(action: dict[str, Any]) -> tuple[bool, str]:
        namespace, name = action.get("namespace", ""), action.get("name", "")
        packaged = "/" in namespace
        return (packaged, (namespace + name).lower() if packaged else name)

    return sorted(actions, key=sort_key)


def format_action_list(actions: list[dict[str, Any]]) -> str:
    return "\n".join(["actions", *(action_row(a) for a in actions)])


def full_name(entity: dict[str, Any]) -> str:
    return f"/{entity.get('namespace', '')}/{entity.get('name', '')}"


def _visibility(entity: dict[str, Any]) -> str:
    return "shared" if entity.get("publish") else "private"


def sort_by_name(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """wsk's --name-sort for triggers and rules."""
    return sorted(entities, key=lambda entity: str(entity.get("name", "")).lower())


def format_trigger_list(triggers: list[dict[str, Any]]) -> str:
    rows = [f"{full_name(t):<70} {_visibility(t)}" for t in triggers]
    return "\n".join(["triggers", *rows])


def format_rule_list(rules: list[dict[str, Any]]) -> str:
    """Rows carry each rule's status, which list items lack: callers fill it in first."""
    rows = [f"{full_name(r):<70} {_visibility(r):<20} {r.get('status', '')}" for r in rules]
    return "\n".join(["rules", *rows])


def format_summary(entity: dict[str, Any], kind: str) -> str:
    """wsk's ``--summary``: the full name, its description and the parameter names, bound ones
    marked ``*`` (``**`` when the entity is ``final``)."""
    bound = sorted(p.get("key", "") for p in entity.get("parameters") or [])
    described = annotation(entity, "parameters") or []
    names = sorted(set(bound) | {p.get("name") for p in described if isinstance(p, dict)} - {None})
    mark = "**" if annotation(entity, "final") is True else "*"
    shown = [f"{mark}{n}" if n in bound else n for n in names]
    description = annotation(entity, "description")
    params = ", ".join(shown) if shown else "none defined"
    head = f"{kind} {full_name(entity)}"
    if isinstance(description, str) and description:
        head += f": {description}"
    elif shown:
        head += ": Returns a result based on parameter" + (
            f"s {', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else f" {names[0]}"
        )
    return f"{head}\n   (parameters: {params})"


def go_duration(milliseconds: int) -> str:
    """A millisecond count the way Go's ``time.Duration.String`` prints it (wsk's Duration
    column): ``0s``, ``7ms``, ``1.5s``, ``2m3.04s``, ``1h0m0s``."""
    if milliseconds == 0:
        return "0s"
    sign = "-" if milliseconds < 0 else ""
    ms = abs(milliseconds)
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    seconds_text = str(seconds) + (f".{millis:03d}".rstrip("0") if millis else "") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds_text}"
    if minutes:
        return f"{sign}{minutes}m{seconds_text}"
    return sign + seconds_text


def _truncate_middle(text: str, limit: int) -> str:
    """wsk's TruncateStr: long names keep their head and tail around ``...``."""
    if len(text) <= limit:
        return text
    mid = limit // 2
    tail_start = len(text) - mid + 3
    if limit % 2:
        mid += 1
    return text[:mid] + "..." + text[tail_start:]


def status_word(status_code: Any) -> str:
    if isinstance(status_code, int) and 0 < status_code < len(STATUS_WORDS):
        return STATUS_WORDS[status_code]
    return STATUS_WORDS[0]


def _kind_of(activation: dict[str, Any]) -> str:
    kind = annotation(activation, "kind")
    return kind if isinstance(kind, str) else "unknown"


def _status_code_of(activation: dict[str, Any]) -> Any:
    """List summaries carry a top-level ``statusCode``; full records (``--full`` output or a
    blocking answer) only have ``response.status``."""
    if "statusCode" in activation:
        return activation["statusCode"]
    status = (activation.get("response") or {}).get("status")
    return {"application error": 1, "action developer error": 2, "whisk internal error": 3}.get(
        status, 0
    )


def activation_row(activation: dict[str, Any], kind_width: int, status_width: int) -> str:
    start_ms = int(activation.get("start") or 0)
    end_ms = int(activation.get("end") or 0)
    duration = end_ms - start_ms if activation.get("duration") else 0
    started = datetime.fromtimestamp(start_ms / 1000)  # local time, as wsk prints it
    start_kind = "cold" if annotation(activation, "initTime") is not None else "warm"
    entity = (
        _truncate_middle(str(activation.get("namespace", "")), 20)
        + "/"
        + _truncate_middle(str(activation.get("name", "")), 30)
        + ":"
        + _truncate_middle(str(activation.get("version", "")), 20)
    )
    return (
        f"{started:%Y-%m-%d %H:%M:%S} {activation.get('activationId', ''):<32} "
        f"{_kind_of(activation):<{kind_width}} {start_kind:<5} {go_duration(duration):<10} "
        f"{status_word(_status_code_of(activation)):<{status_width}} {entity}"
    )


def format_activation_table(activations: list[dict[str, Any]]) -> str:
    kind_width = max([len("Kind"), *(len(_kind_of(a)) for a in activations)])
    status_width = max(
        [len(STATUS_WORDS[0]), *(len(status_word(_status_code_of(a))) for a in activations)]
    )
    header = (
        f"{'Datetime':<19} {'Activation ID':<32} {'Kind':<{kind_width}} {'Start':<6}"
        f"{'Duration':<10} {'Status':<{status_width}} {'Entity':<6}"
    )
    rows = [activation_row(a, kind_width, status_width) for a in activations]
    return "\n".join([header.rstrip(), *rows])


def strip_log_line(line: str) -> str:
    match = _LOG_PREFIX.search(line)
    return match.group(3) if match and match.group(3) else line


def format_logs(lines: list[Any], strip: bool) -> str:
    texts = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    return "\n".join(strip_log_line(t) if strip else t for t in texts)


def print_got(kind: str, name: str, entity: dict[str, Any], field: str | None) -> None:
    """What wsk prints for ``<kind> get``: the whole entity, or one field of it."""
    if field:
        print(f"ok: got {kind} {name}, displaying field {field}")
        print_json(entity.get(field))
    else:
        print(f"ok: got {kind} {name}")
        print_json(entity)
