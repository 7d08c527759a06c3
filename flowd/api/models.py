"""Request bodies of the HTTP API, as in the seed (``flow-binary-api.txt``), strictly checked.

Unknown keys are refused (a misspelt ``output_has_runid`` would otherwise be silently ignored),
types are not coerced (``"true"`` is not a boolean), and text must be text: JSON lets a string
hold a lone surrogate (``"\\ud800"``), which no file name, log line or job store column can take.
The models are the OpenAPI schema's request bodies too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

MAX_SYNC_FILES = 5

_SURROGATE = re.compile("[\ud800-\udfff]")


def _shown(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _lone_surrogate_at(value: Any, where: str = "") -> str | None:
    """Where in a parsed JSON value a string (or key) holds a lone surrogate, else ``None``."""
    if isinstance(value, str):
        return None if value.isascii() or not _SURROGATE.search(value) else where or "body"
    if isinstance(value, dict):
        for key, item in value.items():
            at = f"{where}.{_shown(str(key))}" if where else _shown(str(key))
            found = _lone_surrogate_at(key, at) or _lone_surrogate_at(item, at)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate_at(item, f"{where}[{i}]")
            if found:
                return found
    return None


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _text_is_text(cls, data: Any) -> Any:
        where = _lone_surrogate_at(data) if isinstance(data, dict) else None
        if where is not None:
            raise PydanticCustomError(
                "string_unicode",
                "{where} is not valid text: it holds a lone surrogate (\\ud800-\\udfff unpaired)",
                {"where": where},
            )
        return data


class CompileSettingsBody(Body):
    flow_file: str | None = Field(
        default=None, description="[Single Flow] path of the flow, relative to flow_project_root"
    )
    flows_dir: str | None = Field(default=None, description="[Metaflow, Flows] folder of the flows")
    metaflow_file: str | None = Field(default=None, description="[Metaflow] the .ibmetaflow file")
    classifier_file: str | None = Field(
        default=None, description="[Metaflow] the .ibclassifier file"
    )


class CompileBody(Body):
    flow_project_root: str
    binary_type: Literal["Single Flow", "Metaflow", "Flows"]
    predefined_binary_path: str | None = None
    settings: CompileSettingsBody = Field(default_factory=CompileSettingsBody)
    job_id: str | None = Field(
        default=None, description="flowd: the compile job's id (default: a uuid)"
    )


class WebhookConfigBody(Body):
    url: str
    headers: dict[str, str] | str | None = Field(
        default=None, description="extra request headers: an object, or a JSON object as a string"
    )


class RunSettingsBody(Body):
    output_has_run_id: bool = False
    delete_out_dir: bool = False
    log_to_timeline: bool = False
    notification_emails: list[str] = []
    tags: list[str] = []
    step_timeout: int = Field(
        0, description="seconds per step; 0 = the daemon's default, -1 = none"
    )
    pipeline_ids: list[str] = []
    save_binary_to_output: bool = True
    webhook_config: WebhookConfigBody | None = None
    runtime_config: dict[str, Any] = {}
    priority: Annotated[int, Field(ge=0, le=9)] = 0


class RunAsyncBody(Body):
    binary_path: str
    input_dir: str
    output_dir: str | None = None
    job_id: str | None = None
    settings: RunSettingsBody = Field(default_factory=RunSettingsBody)


class SyncFileBody(Body):
    file_name: str
    file_content: str = Field(description="the file's bytes, base64-encoded")


class SyncOptionsBody(Body):
    result_format: Literal["json", "csv"] = "json"
    runtime_config: dict[str, Any] = Field(
        default_factory=dict, description="flowd: the run's runtime_config"
    )


class RunSyncBody(Body):
    binary_path: str
    options: SyncOptionsBody = Field(default_factory=SyncOptionsBody)
    files: Annotated[list[SyncFileBody], Field(min_length=1, max_length=MAX_SYNC_FILES)]


class JobIdBody(Body):
    job_id: str


class RetryBody(Body):
    job_id: str
    retry_type: Literal["checkpoint_failure"] | None = None


class PipelineBody(Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]


class JobPipelinesBody(Body):
    job_id: str
    pipeline_ids: list[str]
