"""The command line: ``python -m supervisor serve|run|journal|health``, and its settings.

The top layer: it may import every other package; nothing imports it. ``config_docs``
(a script) writes ``docs/configuration.md`` from these parsers.
"""

from ._c0 import c0_main as c0_main
from ._c0 import c0_settings as c0_settings
from ._collector import freeze_survivors as freeze_survivors
from ._health import split_address as split_address
from ._journal import meta_candidates as meta_candidates
from ._journal_json import parse_age as parse_age
from ._journal_json import parse_phase as parse_phase
from ._main import build_parser as build_parser
from ._main import main as main
from ._run import InvalidRunInput as InvalidRunInput
from ._run import read_inputs as read_inputs
from ._run import read_template as read_template
from ._settings import ENVIRONMENT as ENVIRONMENT
from ._settings import Settings as Settings
from ._settings import parse_serve as parse_serve
from ._verify_evidence import add_lost_evidence as add_lost_evidence

__all__ = [
    "ENVIRONMENT",
    "InvalidRunInput",
    "Settings",
    "add_lost_evidence",
    "build_parser",
    "c0_main",
    "c0_settings",
    "freeze_survivors",
    "main",
    "meta_candidates",
    "parse_age",
    "parse_phase",
    "parse_serve",
    "read_inputs",
    "read_template",
    "split_address",
]
