"""The ``ft package`` command tree, with wsk's flags."""

from __future__ import annotations

import argparse

from cli import commands_packages as packages
from cli.parser_parts import add_annotation_flags, add_list_flags, add_param_flags, group


def add_package_commands(subparsers: argparse._SubParsersAction, common: list) -> None:
    _, commands = group(subparsers, "package", "work with packages")

    for verb, handler, help_text in (
        ("create", packages.package_create, "create a new package"),
        ("update", packages.package_update,
         "update an existing package, or create a package if it does not exist"),
    ):
        parser = commands.add_parser(verb, parents=common, help=help_text, description=help_text)
        parser.add_argument("name", metavar="PACKAGE_NAME")
        add_param_flags(parser)
        add_annotation_flags(parser)
        parser.add_argument("--shared", choices=("yes", "no"),
                            help="package visibility SCOPE; yes = shared, no = private")
        parser.set_defaults(handler=handler)

    bind = commands.add_parser("bind", parents=common, help="bind parameters to a package")
    bind.add_argument("package", metavar="PACKAGE_NAME")
    bind.add_argument("binding", metavar="BINDING_NAME")
    add_param_flags(bind)
    add_annotation_flags(bind)
    bind.add_argument("-o", "--overwrite", action="store_true",
                      help="update the binding if it already exists")
    bind.set_defaults(handler=packages.package_bind)

    get = commands.add_parser("get", parents=common, help="get package")
    get.add_argument("name", metavar="PACKAGE_NAME")
    get.add_argument("field", metavar="FIELD_FILTER", nargs="?",
                     help=f"show one field: {', '.join(packages.PACKAGE_FIELDS)}")
    get.add_argument("-s", "--summary", action="store_true", help="summarize package details")
    get.set_defaults(handler=packages.package_get)

    delete = commands.add_parser("delete", parents=common, help="delete package")
    delete.add_argument("name", metavar="PACKAGE_NAME")
    delete.set_defaults(handler=packages.package_delete)

    listing = commands.add_parser("list", parents=common, help="list all packages")
    listing.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    add_list_flags(listing, "packages")
    listing.add_argument("-n", "--name-sort", action="store_true", help="sort results by name")
    listing.set_defaults(handler=packages.package_list)
