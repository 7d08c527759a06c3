"""A map UDF: receives one record (a dict) and the run context, returns the record.

Change ``record["fields"]`` to add or replace fields. Lines logged with ``context.logger`` go to
the run's log, and to ``logs/timeline.jsonl`` when the run has ``log_to_timeline``.
"""

from typing import Any


def tidy(record: dict[str, Any], context: Any) -> dict[str, Any]:
    fields = record["fields"]
    if isinstance(fields.get("vendor"), str):
        fields["vendor"] = " ".join(fields["vendor"].split()).title()
    context.logger.info("tidied", file=record["file_name"])
    return record
