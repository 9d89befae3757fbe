"""Between flyteidl2 messages and connectors: conversions, registry look-ups, job identity.

Sits on ``connectors`` and the generated ``flyteproto`` code only.
"""

from ._convert import connection_kwargs as connection_kwargs
from ._convert import decode_meta as decode_meta
from ._convert import native_inputs as native_inputs
from ._convert import require_connection as require_connection
from ._convert import resource_to_proto as resource_to_proto
from ._identity import adopted_job_id as adopted_job_id
from ._identity import job_id_for as job_id_for
from ._identity import retry_attempt as retry_attempt
from ._lookup import connector_for_category as connector_for_category
from ._lookup import connector_for_type as connector_for_type
from ._seal import MetaSeal as MetaSeal
from ._seal import payload_of as payload_of

__all__ = [
    "MetaSeal",
    "adopted_job_id",
    "connection_kwargs",
    "connector_for_category",
    "connector_for_type",
    "decode_meta",
    "job_id_for",
    "native_inputs",
    "payload_of",
    "require_connection",
    "resource_to_proto",
    "retry_attempt",
]
