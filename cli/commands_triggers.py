"""``ft trigger create|update|get|delete|list|fire`` with wsk's flags, requests and output.

A feed trigger is made the way wsk makes it: create the trigger (annotated ``feed``), then
invoke the feed action blocking with ``lifecycleEvent`` CREATE, ``triggerName`` and
``authKey``; if the feed refuses, the trigger is deleted again. Delete tells the feed first.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cli.context import Context
from cli.errors import EXIT_API, EXIT_OK, CliError
from cli.output import (
    annotation,
    format_summary,
    format_trigger_list,
    print_got,
    print_json,
    sort_by_name,
)
from cli.params import as_key_value_list, collect_values
from funtainer import ApiError, Unreachable
from funtainer.names import QualifiedName
from funtainer.plans import Answer

FEED_ANNOTATION = "feed"
# Fields `ft trigger get NAME FIELD` accepts (wsk checks against its Trigger struct).
TRIGGER_FIELDS = (
    "namespace", "name", "version", "publish", "parameters", "limits", "annotations", "updated",
    "rules",
)


def triggers_path(name: QualifiedName) -> str:
    return f"namespaces/{name.namespace_path}/triggers/{name.entity_path}"


# -- feeds ----------------------------------------------------------------------------------


def _full_name(name: QualifiedName) -> str:
    return f"/{name.namespace}/{name.entity}"


def _trigger_for_feed(context: Context, name: QualifiedName) -> str:
    """``/ns/name`` as the feed needs it: a feed acts later, on its own, so ``_`` is resolved
    to the caller's namespace (``GET /namespaces``) rather than sent as is."""
    namespace = name.namespace
    if namespace == "_":
        listed = context.call("Unable to obtain the namespace", "GET", "namespaces").body
        if isinstance(listed, list) and listed:
            namespace = str(listed[0])
    return f"/{namespace}/{name.name}"


def invoke_feed(
    context: Context, feed: QualifiedName, event: str, trigger: str, params: dict[str, Any]
) -> Answer:
    """Invoke the feed action blocking; a failure raises ``ApiError``."""
    body = {**params, "lifecycleEvent": event, "triggerName": trigger,
            "authKey": context.config.auth}
    path = f"namespaces/{feed.namespace_path}/actions/{feed.entity_path}"
    return context.client.request(
        "POST", path, query={"blocking": True, "result": False}, body=body
    )


def print_feed_invocation(feed: QualifiedName, response: Answer) -> None:
    body = response.body
    activation_id = (body.get("activationId") if isinstance(body, dict) else None) or (
        response.header("x-openwhisk-activation-id") or ""
    )
    print(f"ok: invoked {_full_name(feed)} with id {activation_id}")
    print_json(body)


def feed_failure(err: ApiError) -> str:
    """What the feed said: its activation's ``error`` result, or the API's error."""
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("response"), dict):
        result = body["response"].get("result")
        error = result.get("error") if isinstance(result, dict) else None
        if error is not None:
            return error if isinstance(error, str) else json.dumps(error)
    return str(err)


def _feed_error(verb: str, name: QualifiedName, feed: QualifiedName, err: ApiError) -> str:
    return (
        f"Unable to {verb} trigger '{name.entity}': Unable to configure feed "
        f"'{_full_name(feed)}': {feed_failure(err)}"
    )


# -- create and update ----------------------------------------------------------------------


@dataclass(frozen=True)
class SplitParams:
    """``-p`` goes to the feed when there is one, else to the trigger; ``-F``/``-T`` say it
    explicitly. ``trigger`` None means "not given" (an update keeps the old parameters)."""

    trigger: dict[str, Any] | None
    feed: dict[str, Any]


def split_params(args: argparse.Namespace, has_feed: bool) -> SplitParams:
    if args.param or args.param_file:
        if args.feed_param or args.trigger_param:
            raise CliError(
                "Incorrect usage. Cannot combine --feed-param or --trigger-param flag with "
                "--param flag"
            )
        values = collect_values(args.param, args.param_file)
        return SplitParams(None, values) if has_feed else SplitParams(values, {})
    if args.feed_param and not has_feed:
        raise CliError("Incorrect usage. trigger without a feed cannot have feed parameters.")
    trigger = collect_values(args.trigger_param, None) if args.trigger_param else None
    return SplitParams(trigger, collect_values(args.feed_param, None))


def _trigger_body(
    name: QualifiedName, params: dict[str, Any] | None, annotations: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"namespace": name.namespace, "name": name.name}
    if params:
        body["parameters"] = as_key_value_list(params)
    if annotations:
        body["annotations"] = as_key_value_list(annotations)
    return body


def _delete_quietly(context: Context, name: QualifiedName) -> None:
    try:
        context.client.request("DELETE", triggers_path(name))
    except (ApiError, Unreachable):
        pass  # the feed's failure is what the user needs to see


def _create(context: Context, args: argparse.Namespace, name: QualifiedName) -> int:
    feed = context.name(args.feed) if args.feed else None
    params = split_params(args, has_feed=feed is not None)
    annotations = collect_values(args.annotation, args.annotation_file, "annotation")
    if feed is not None:
        annotations[FEED_ANNOTATION] = _full_name(feed)  # wins over a user's -a feed
    context.call(
        f"Unable to create trigger '{name.entity}'", "PUT", triggers_path(name),
        query={"overwrite": False}, body=_trigger_body(name, params.trigger, annotations),
    )
    if feed is not None:
        try:
            response = invoke_feed(
                context, feed, "CREATE", _trigger_for_feed(context, name), params.feed
            )
        except ApiError as err:
            _delete_quietly(context, name)
            raise CliError(_feed_error("create", name, feed, err), EXIT_API) from err
        print_feed_invocation(feed, response)
    print(f"ok: created trigger {name.entity}")
    return EXIT_OK


def trigger_create(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    return _create(context, args, context.name(args.name))


def trigger_update(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    context.require_auth()
    name = context.name(args.name)
    try:
        existing = context.client.request("GET", triggers_path(name)).body
    except ApiError as err:
        if err.status == 404:
            return _create(context, args, name)  # wsk's update creates what is missing
        raise CliError(f"Unable to get trigger '{name.entity}': {err}", EXIT_API) from err
    feed_text = annotation(existing, FEED_ANNOTATION)
    feed = context.name(feed_text) if isinstance(feed_text, str) and feed_text else None
    if args.feed and (feed is None or context.name(args.feed) != feed):
        raise CliError("A trigger feed is only permitted when the trigger is created")
    params = split_params(args, has_feed=feed is not None)
    annotations = collect_values(args.annotation, args.annotation_file, "annotation")
    if annotations and feed is not None:
        # Given annotations replace the old ones wholesale: keep the trigger's feed.
        annotations[FEED_ANNOTATION] = feed_text

    # A feed trigger updated with feed parameters only is reconfigured, not rewritten.
    if feed is None or annotations or params.trigger is not None or not params.feed:
        context.call(
            f"Unable to update trigger '{name.entity}'", "PUT", triggers_path(name),
            query={"overwrite": True}, body=_trigger_body(name, params.trigger, annotations),
        )
    if feed is not None and params.feed:
        try:
            response = invoke_feed(
                context, feed, "UPDATE", _trigger_for_feed(context, name), params.feed
            )
        except ApiError as err:
            raise CliError(_feed_error("update", name, feed, err), EXIT_API) from err
        print_feed_invocation(feed, response)
    print(f"ok: updated trigger {name.entity}")
    return EXIT_OK


# -- get, delete, list, fire ----------------------------------------------------------------


def trigger_get(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    if args.field and not args.summary and args.field not in TRIGGER_FIELDS:
        raise CliError(f"Invalid field filter '{args.field}'.")
    trigger = context.call(
        f"Unable to get trigger '{name.entity}'", "GET", triggers_path(name)
    ).body
    if args.summary:
        print(format_summary(trigger, "trigger"))
    else:
        print_got("trigger", name.entity, trigger, args.field)
    return EXIT_OK


def trigger_delete(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    trigger = context.call(
        f"Unable to get trigger '{name.entity}'", "GET", triggers_path(name)
    ).body
    feed_text = annotation(trigger, FEED_ANNOTATION)
    if isinstance(feed_text, str) and feed_text:
        feed = context.name(feed_text)
        try:
            response = invoke_feed(context, feed, "DELETE", _trigger_for_feed(context, name), {})
        except ApiError as err:
            # As wsk does: the trigger goes either way, the feed's complaint is shown.
            print(f"warning: Unable to configure feed '{_full_name(feed)}': "
                  f"{feed_failure(err)}", file=sys.stderr)
        else:
            print_feed_invocation(feed, response)
    context.call(f"Unable to delete trigger '{name.entity}'", "DELETE", triggers_path(name))
    print(f"ok: deleted trigger {name.entity}")
    return EXIT_OK


def list_namespace(context: Context, given: str | None) -> str:
    """wsk's optional ``[NAMESPACE]`` of list commands (``/ns`` or ``ns``)."""
    if not given:
        return context.config.namespace
    namespace = given.strip("/")
    if not namespace or "/" in namespace:
        raise CliError(f"An entity name, '{given}', was provided instead of a namespace. "
                       "Valid namespaces are of the following format: /NAMESPACE.")
    return namespace


def trigger_list(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    namespace = list_namespace(context, args.namespace)
    shown = "default" if namespace == "_" else namespace
    triggers = context.call(
        f"Unable to obtain the list of triggers for namespace '{shown}'",
        "GET", f"namespaces/{quote(namespace, safe='')}/triggers",
        query={"limit": args.limit, "skip": args.skip},
    ).body or []
    print(format_trigger_list(sort_by_name(triggers) if args.name_sort else triggers))
    return EXIT_OK


def _fire_payload(args: argparse.Namespace) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if args.payload:
        try:
            payload = json.loads(args.payload)
        except ValueError as err:
            raise CliError(f"Invalid payload '{args.payload}': {err}") from err
        if not isinstance(payload, dict):
            raise CliError(f"Invalid payload '{args.payload}': it must be a JSON object.")
    payload.update(collect_values(args.param, args.param_file))
    return payload


def trigger_fire(args: argparse.Namespace) -> int:
    context = Context.from_args(args)
    name = context.name(args.name)
    response = context.call(
        f"Unable to fire trigger '{name.entity}'", "POST", triggers_path(name),
        body=_fire_payload(args),
    )
    body = response.body
    activation_id = body.get("activationId") if isinstance(body, dict) else None
    shown = _full_name(name)
    # 204: no active rule, so nothing ran and there is no activation to name.
    print(f"ok: triggered {shown} with id {activation_id}" if activation_id
          else f"ok: triggered {shown}")
    return EXIT_OK
