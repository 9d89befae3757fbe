"""Between flyteidl2 messages and connectors: conversions, registry look-ups, job identity.

Sits on ``connectors`` and the generated ``flyteproto`` code only.
"""

from ._convert import connection_kwargs as connection_kwargs
from ._convert import connector_for_category as connector_for_category
from ._convert import connector_for_type as connector_for_type
from ._convert import decode_meta as decode_meta
from ._convert import native_inputs as native_inputs
from ._convert import resource_to_proto as resource_to_proto
from ._identity import adopted_job_id as adopted_job_id
from ._identity import job_id_for as job_id_for
from ._identity import retry_attempt as retry_attempt
from ._seal import MetaSeal as MetaSeal
from ._seal import payload_of as payload_of
