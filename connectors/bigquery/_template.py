"""What a BigQuery task template asks for, read as Flyte's BigQuery plugins write it.

``flyteplugins-bigquery`` (Flyte 2) and ``flytekitplugins-bigquery`` (Flyte 1) put the SQL in
``template.sql.statement`` and this in ``template.custom``::

    {"ProjectID": "my-project", "Location": "US", "Domain": "development",
     "secrets": {"google_application_credentials": "<secret name>"},
     ...QueryJobConfig.to_api_repr()["query"]}   # destinationTable, writeDisposition, ...

Everything but the four Flyte keys is BigQuery's ``JobConfigurationQuery`` in its REST form,
and is sent as it is. Flyte's Go plugin reads the same keys case-insensitively
(``projectId``, ``location``), so we do too.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from flyteproto.flyteidl2.connector import TaskExecutionMetadata
from flyteproto.flyteidl2.core import TaskTemplate

from .._errors import PermanentError
from ._parameters import QueryParameter

if TYPE_CHECKING:  # imported on first use (see _client)
    from google.cloud import bigquery

__all__ = ["QuerySpec", "job_labels"]

# Lower-cased keys of ``custom`` that are Flyte's, not BigQuery's.
_PROJECT, _LOCATION, _DOMAIN, _SECRETS = "projectid", "location", "domain", "secrets"
_FLYTE_KEYS = frozenset({_PROJECT, _LOCATION, _DOMAIN, _SECRETS})
# https://cloud.google.com/bigquery/docs/labels-intro#requirements (lower-case ASCII here).
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_MAX_LABELS = 64


@dataclass(frozen=True)
class QuerySpec:
    """The query of one task template: its SQL, where it runs, and its query job config."""

    statement: str
    project: str | None = None
    location: str | None = None
    domain: str | None = None
    #: BigQuery's JobConfigurationQuery in REST form (camelCase keys), without the SQL.
    query_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_template(cls, template: TaskTemplate) -> QuerySpec:
        """Errors: PermanentError when the template has no SQL statement."""
        custom: dict[str, Any] = template.custom.to_dict() if template.custom is not None else {}
        flyte = {key.lower(): value for key, value in custom.items() if key.lower() in _FLYTE_KEYS}
        config = {
            key: _integral_floats_as_ints(value)
            for key, value in custom.items()
            if key.lower() not in _FLYTE_KEYS and value is not None
        }
        # Go's plugin also accepts the SQL as custom["query"]; the template's sql wins.
        fallback = config.pop("query", "")
        statement = template.sql.statement if template.sql is not None else ""
        statement = statement or (fallback if isinstance(fallback, str) else "")
        if not statement.strip():
            raise PermanentError("the task template has no SQL statement (template.sql)")
        return cls(
            statement=statement,
            project=_optional_str(flyte.get(_PROJECT)),
            location=_optional_str(flyte.get(_LOCATION)),
            domain=_optional_str(flyte.get(_DOMAIN)),
            query_config=config,
        )

    def job_config(
        self, parameters: Sequence[QueryParameter] = (), *, labels: Mapping[str, str] = {}
    ) -> bigquery.QueryJobConfig:
        """The template's query job config, plus ``parameters`` and ``labels``.

        Parameters replace the config's own of the same name. (Labels are not part of a
        query's config: Flyte's plugins never send any.)
        """
        from google.cloud import bigquery

        resource = {"query": copy.deepcopy(dict(self.query_config))}
        # from_api_repr is typed as the base class's, but builds a QueryJobConfig.
        config = cast(bigquery.QueryJobConfig, bigquery.QueryJobConfig.from_api_repr(resource))
        if parameters:
            names = {parameter.name for parameter in parameters}
            kept = [p for p in config.query_parameters if p.name is None or p.name not in names]
            config.query_parameters = [*kept, *parameters]
        if labels:
            config.labels = dict(labels)
        return config


def job_labels(metadata: TaskExecutionMetadata | None) -> dict[str, str]:
    """The execution's labels that BigQuery takes as job labels, as Flyte's Go plugin sends."""
    if metadata is None:
        return {}
    valid = {
        key: value
        for key, value in sorted(metadata.labels.items())
        if _LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(value)
    }
    return dict(list(valid.items())[:_MAX_LABELS])


def _optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _integral_floats_as_ints(value: Any) -> Any:
    """Undo what a protobuf Struct does to numbers: 1 comes back as 1.0.

    BigQuery's integer fields (``maximumBillingTier``) want integers; its int64 fields are
    strings in JSON and are left alone.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    return value
