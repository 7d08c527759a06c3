"""The daemon's configuration (SPEC §8): the shipped example, defaults, every validation, the
environment over the file, path resolution, and the messages a user reads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from flowd.config import (
    AfterAction,
    ConfigError,
    Executor,
    FlowdConfig,
    LogFormat,
    LogLevel,
    load_config,
)
from flowd.config.locate import KeyLines
from flowd.errors import FlowdError
from flowd.flows.compiler import compile_project
from flowd.flows.specs import BinaryType

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "flowd.toml"

PROJECT = """
[[projects]]
name = "invoices"
root = "proj"
flow_file = "invoice.ibflow"
"""
WATCH = """
[[watches]]
name = "inbox"
input_dir = "in"
project = "invoices"
"""


def write(tmp_path: Path, text: str) -> Path:
    """``text`` (dedented) as ``tmp_path/etc/flowd.toml``: a config file in a folder of its own."""
    path = tmp_path / "etc" / "flowd.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> FlowdConfig:
    return load_config(write(tmp_path, text), env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    """The problem lines of the ConfigError that loading ``text`` must raise."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return list(caught.value.problems)


def one_problem(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    found = problems(tmp_path, text, env)
    assert len(found) == 1, found
    return found[0]


# --- the shipped example -------------------------------------------------------------------------


def test_example_loads_with_paths_resolved_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the current directory must not matter for the file's paths
    config = load_config(EXAMPLE, {})
    assert config.state_dir == REPO / "var" / "state"
    assert config.data_root == REPO / "var"
    invoices, documents = config.projects
    assert invoices.name == "invoices" and invoices.binary_type is BinaryType.SINGLE_FLOW
    assert invoices.root == REPO / "examples" / "invoices"
    assert invoices.binary_file == REPO / "examples/invoices/build/bin/invoice.ibflowbin"
    assert documents.binary_type is BinaryType.METAFLOW
    assert (documents.flows_dir, documents.metaflow_file, documents.classifier_file) == (
        "flows",
        "documents.ibmetaflow",
        "modules/documents.ibclassifier",
    )
    assert documents.binary_file == REPO / "examples/invoices/build/bin/documents.ibflowbin"
    for watch, project in zip(config.watches, config.projects, strict=True):
        assert watch.input_dir == REPO / "var" / "inbox" / watch.name
        assert watch.output_dir == REPO / "var" / "out" / watch.name
        assert config.binary_for(watch) == project.binary_file
        assert watch.settings.output_has_run_id and watch.settings.priority == 5
        assert watch.settings.runtime_config == {"log_prefix": "org=demo "}


def test_example_projects_compile(tmp_path: Path) -> None:
    """The example serves the repo's examples: each project's settings compile as they stand."""
    config = load_config(EXAMPLE, {})
    for project in config.projects:
        result = compile_project(project.root, project.compile_settings(), tmp_path)
        assert result.path == tmp_path / project.binary_file.name


def test_example_has_every_key_of_spec_section_8() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for key in FlowdConfig.model_fields:
        assert f"{key} = " in text or f"[{key}]" in text, key  # dask_scheduler: in a comment


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_are_spec_section_8s(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    etc = tmp_path / "etc"
    assert config.state_dir == etc / "var" / "state"  # as if written in the file
    assert config.data_root == etc / "var"
    assert config.allowed_roots == () and config.udf_roots == ()
    assert config.workers == 0 and config.executor is Executor.LOCAL
    assert config.default_step_timeout_s == 300 and config.max_attempts == 3
    assert (config.api.host, config.api.port, config.api.tokens_file) == ("127.0.0.1", 8765, None)
    assert config.api.max_request_mb == 50
    assert config.log.format is LogFormat.AUTO and config.log.level is LogLevel.INFO
    assert config.smtp.host == "" and not config.smtp.enabled and config.smtp.port == 25
    assert config.smtp.sender == "flowd@localhost" and config.smtp.password_file is None
    assert config.webhooks.max_retries == 7 and config.webhooks.timeout_s == 10
    assert config.webhooks.backoff_s == (1, 5, 30, 120, 600, 1800, 3600)
    assert config.webhooks.secret_file is None and config.webhooks.allows("http://any.host/x")
    assert config.projects == () and config.watches == ()


def test_watch_and_project_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, PROJECT + WATCH)
    project, watch = config.projects[0], config.watches[0]
    assert project.auto_compile and project.binary_path is None
    assert watch.output_dir == tmp_path / "etc" / "out"  # input_dir/../out (SPEC §5.1)
    assert watch.patterns == ("*",) and watch.ignore == ()
    assert not watch.recursive and not watch.polling
    assert (watch.settle_s, watch.batch_window_s, watch.max_batch) == (2.0, 1.0, 500)
    assert watch.after is AfterAction.ARCHIVE
    settings = watch.settings
    assert settings.output_has_run_id and settings.save_binary_to_output
    assert not settings.delete_out_dir and not settings.log_to_timeline
    assert settings.priority == 5 and settings.step_timeout == 0
    assert (
        settings.tags == () and settings.notification_emails == () and settings.pipeline_ids == ()
    )
    assert settings.webhook_config is None and settings.runtime_config == {}


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, PROJECT + WATCH)
    with pytest.raises(ValidationError):
        config.workers = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.watches[0].settings.priority = 1  # type: ignore[misc]


def test_a_full_watch_and_webhook_settings(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        PROJECT
        + """
        [[watches]]
        name = "scans"
        input_dir = "in"
        binary_path = "bin/x.ibflowbin"
        after = "keep"
        settings = { priority = 9, step_timeout = -1, pipeline_ids = [3, "p-1"], notification_emails = ["ops@example.com"], webhook_config = { url = "https://hooks.example.com/x", headers = '{"X-Key": "1"}' }, runtime_config = { modify_output_schema = '{"remove_fields": ["a"]}' } }
        """,
    )
    settings = config.watches[0].settings
    assert config.binary_for(config.watches[0]) == tmp_path / "etc" / "bin" / "x.ibflowbin"
    assert settings.pipeline_ids == ("3", "p-1") and settings.step_timeout == -1
    assert settings.webhook_config is not None
    assert settings.webhook_config.headers == {"X-Key": "1"}
    assert config.watches[0].after is AfterAction.KEEP


# --- paths ---------------------------------------------------------------------------------------


def test_every_relative_path_resolves_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load(
        tmp_path,
        """
        state_dir = "state"
        data_root = "../data"
        allowed_roots = ["roots/a", "/abs/b"]
        udf_roots = ["udfs"]
        [api]
        tokens_file = "secrets/tokens"
        [smtp]
        username = "u"
        password_file = "secrets/smtp"
        [webhooks]
        secret_file = "secrets/hook"
        [[projects]]
        name = "p"
        root = "projects/p"
        flow_file = "flows/main.ibflow"
        binary_path = "bins"
        [[watches]]
        name = "w"
        input_dir = "inbox/w"
        output_dir = "../out/w"
        project = "p"
        [[watches]]
        name = "v"
        input_dir = "inbox/v"
        binary_path = "fixed.ibflowbin"
        """,
    )
    etc = tmp_path / "etc"
    assert config.state_dir == etc / "state"
    assert config.data_root == tmp_path / "data"
    assert config.allowed_roots == (etc / "roots" / "a", Path("/abs/b"))
    assert config.udf_roots == (etc / "udfs",)
    assert config.api.tokens_file == etc / "secrets" / "tokens"
    assert config.smtp.password_file == etc / "secrets" / "smtp"
    assert config.webhooks.secret_file == etc / "secrets" / "hook"
    project = config.projects[0]
    assert project.root == etc / "projects" / "p"
    assert project.flow_file == "flows/main.ibflow"  # the seed's setting: relative to root
    assert project.binary_file == etc / "bins" / "main.ibflowbin"
    w, v = config.watches
    assert (w.input_dir, w.output_dir) == (etc / "inbox" / "w", tmp_path / "out" / "w")
    assert v.binary_path == etc / "fixed.ibflowbin"
    assert v.output_dir == etc / "inbox" / "out"


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load(tmp_path, 'state_dir = "~/flowd/state"')
    assert config.state_dir == tmp_path / "home" / "flowd" / "state"


def test_relative_config_path_is_taken_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, 'state_dir = "state"')
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc/flowd.toml"), {}).state_dir == tmp_path / "etc" / "state"


def test_empty_string_means_unset_only_where_spec_says_so(tmp_path: Path) -> None:
    config = load(tmp_path, '[api]\ntokens_file = ""\n[webhooks]\nsecret_file = ""')
    assert config.api.tokens_file is None and config.webhooks.secret_file is None
    line = one_problem(tmp_path, 'state_dir = ""')
    assert line.endswith('flowd.toml:1: state_dir = "": must not be empty')


# --- unknown keys, with their location -----------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    line = one_problem(tmp_path, "workers = 2\nworkerz = 2\n")
    assert line == f"{tmp_path}/etc/flowd.toml:2: workerz: unknown key (did you mean 'workers'?)"


def test_unknown_key_in_api(tmp_path: Path) -> None:
    line = one_problem(tmp_path, '[api]\nhost = "127.0.0.1"\nprot = 1\n')
    assert line.endswith("flowd.toml:3: [api].prot: unknown key (did you mean 'port'?)")


def test_unknown_key_without_a_near_miss_lists_the_allowed_ones(tmp_path: Path) -> None:
    line = one_problem(tmp_path, "[log]\ncolour = true\n")
    assert line.endswith("[log].colour: unknown key (allowed: format, level)")


def test_unknown_key_in_a_watch_names_its_index(tmp_path: Path) -> None:
    text = PROJECT + WATCH + WATCH.replace('"inbox"', '"second"').replace('"in"', '"in2"')
    text += "setings = { priority = 1 }\n"
    line = one_problem(tmp_path, text)
    lines = textwrap.dedent(text).splitlines()
    number = lines.index("setings = { priority = 1 }") + 1
    assert line.endswith(
        f"flowd.toml:{number}: [watches][1].setings: unknown key (did you mean 'settings'?)"
    )


def test_unknown_key_inside_inline_settings_and_sub_tables(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + WATCH + "settings = { priorty = 3 }\n")
    assert "[watches][0].settings.priorty: unknown key (did you mean 'priority'?)" in line
    text = PROJECT + WATCH + "[watches.settings]\ntags = ['a']\noutput_has_runid = false\n"
    line = one_problem(tmp_path, text)
    number = textwrap.dedent(text).splitlines().index("output_has_runid = false") + 1
    assert line.endswith(
        f"flowd.toml:{number}: [watches][0].settings.output_has_runid: unknown key"
        " (did you mean 'output_has_run_id'?)"
    )


def test_unknown_key_in_a_project_and_in_webhook_config(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + "flowfile = 'x'\n")
    assert "[projects][0].flowfile: unknown key (did you mean 'flow_file'?)" in line
    text = PROJECT + WATCH + 'settings = { webhook_config = { url = "http://h/x", token = "t" } }'
    assert "[watches][0].settings.webhook_config.token: unknown key" in one_problem(tmp_path, text)


def test_every_problem_is_listed_one_per_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        workers = -1
        colour = 1
        [api]
        port = 70000
        [log]
        format = "xml"
        """,
    )
    assert len(found) == 4
    assert [line.split(": ", 1)[0].rsplit(":", 1)[1] for line in found] == ["2", "3", "5", "7"]


# --- bad values ----------------------------------------------------------------------------------

BAD_VALUES = [
    ('executor = "thread"', "executor = \"thread\": Input should be 'local' or 'dask'"),
    (
        '[log]\nformat = "xml"',
        "[log].format = \"xml\": Input should be 'json', 'console' or 'auto'",
    ),
    ('[log]\nlevel = "loud"', '[log].level = "loud": Input should be'),
    ("workers = -1", "workers = -1: Input should be greater than or equal to 0"),
    ("workers = 1.5", "workers = 1.5: Input should be a valid integer"),
    ("max_attempts = 0", "max_attempts = 0: Input should be greater than or equal to 1"),
    ("default_step_timeout_s = 0", "default_step_timeout_s = 0: Input should be greater than 0"),
    ("[api]\nport = 70000", "[api].port = 70000: Input should be less than or equal to 65535"),
    ('[api]\nport = "http"', '[api].port = "http": Input should be a valid integer'),
    ("[api]\nmax_request_mb = -5", "[api].max_request_mb = -5: Input should be greater than 0"),
    ("[webhooks]\ntimeout_s = 0", "[webhooks].timeout_s = 0: Input should be greater than 0"),
    ("[webhooks]\nmax_retries = -1", "[webhooks].max_retries = -1: Input should be greater than"),
    (
        '[webhooks]\nallowed_hosts = ["https://x.org"]',
        '[webhooks].allowed_hosts[0] = "https://x.org": must be a bare host name',
    ),
    ('[smtp]\nsender = "nobody"', '[smtp].sender = "nobody": is not an e-mail address'),
    ('[smtp]\nusername = "me"', "[smtp].password_file: username and password_file go together"),
    ("allowed_roots = '/srv'", 'allowed_roots = "/srv": must be an array'),
    ("api = 5", "api = 5: must be a table"),
    ('executor = "dask"', 'dask_scheduler = "": executor = "dask" needs dask_scheduler'),
]


@pytest.mark.parametrize(("text", "expected"), BAD_VALUES)
def test_bad_values_name_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, expected: str
) -> None:
    line = one_problem(tmp_path, text)
    assert expected in line


WATCH_VALUES = [
    ("settle_s = -1", "[watches][0].settle_s = -1: Input should be greater than or equal to 0"),
    ("batch_window_s = -0.5", "[watches][0].batch_window_s = -0.5: Input should be greater than"),
    ("max_batch = 0", "[watches][0].max_batch = 0: Input should be greater than or equal to 1"),
    (
        'after = "move"',
        "[watches][0].after = \"move\": Input should be 'archive', 'delete' or 'keep'",
    ),
    (
        "patterns = []",
        '[watches][0].patterns = []: needs at least one pattern ("*" takes every file)',
    ),
    ("patterns = ['']", '[watches][0].patterns[0] = "": String should have at least 1 character'),
    (
        "recursive = 'sometimes'",
        '[watches][0].recursive = "sometimes": Input should be a valid boolean',
    ),
    (
        "settings = { priority = 10 }",
        "[watches][0].settings.priority = 10: Input should be less than or equal to 9",
    ),
    (
        "settings = { priority = -1 }",
        "[watches][0].settings.priority = -1: Input should be greater than",
    ),
    (
        "settings = { step_timeout = -2 }",
        "[watches][0].settings.step_timeout = -2: Input should be greater than or equal to -1",
    ),
    (
        "settings = { tags = ['" + "x" * 501 + "'] }",
        "[watches][0].settings.tags: are 501 characters together; at most 500",
    ),
    (
        "settings = { notification_emails = ['ops'] }",
        '[watches][0].settings.notification_emails[0] = "ops": is not an e-mail address',
    ),
    ("settings = { job_id = 'fixed' }", "[watches][0].settings.job_id: cannot be set for a watch"),
    (
        "settings = { webhook_config = { url = 'ftp://h/x' } }",
        "[watches][0].settings.webhook_config.url: 'ftp://h/x' is not an http:// or https:// URL",
    ),
    (
        "settings = { webhook_config = { url = 'http://h', headers = '[1' } }",
        "[watches][0].settings.webhook_config.headers: is not a JSON object",
    ),
    (
        "settings = { runtime_config = { log_prefix = 5 } }",
        "[watches][0].settings.runtime_config.log_prefix: must be a string",
    ),
    (
        "settings = { runtime_config = { modify_output_schema = '{bad' } }",
        "[watches][0].settings.runtime_config.modify_output_schema: is not valid JSON",
    ),
    (
        "settings = { runtime_config = { modify_output_schema = 5 } }",
        "[watches][0].settings.runtime_config.modify_output_schema: must be a JSON object",
    ),
    ("output_dir = 'in/results'", "[watches][0].output_dir: must not be input_dir or inside it"),
    ("output_dir = 'in'", "[watches][0].output_dir: must not be input_dir or inside it"),
]


@pytest.mark.parametrize(("line", "expected"), WATCH_VALUES)
def test_bad_watch_values(tmp_path: Path, line: str, expected: str) -> None:
    assert expected in one_problem(tmp_path, PROJECT + WATCH + line + "\n")


def test_names_are_short_and_plain(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT.replace('"invoices"', '"my invoices"'))
    assert '[projects][0].name = "my invoices": use 1-50 characters of A-Z a-z 0-9 . _ -' in line


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    assert load(tmp_path, '[log]\nlevel = "DEBUG"').log.level is LogLevel.DEBUG


# --- webhooks backoff ----------------------------------------------------------------------------


def test_backoff_needs_one_wait_per_retry(tmp_path: Path) -> None:
    line = one_problem(tmp_path, "[webhooks]\nmax_retries = 3\nbackoff_s = [1, 2]\n")
    assert line.endswith(
        "flowd.toml:3: [webhooks].backoff_s: has 2 waits but max_retries = 3 needs one per retry"
        " (backoff_s[i] is the wait before retry i+1)"
    )


def test_backoff_waits_are_positive(tmp_path: Path) -> None:
    line = one_problem(tmp_path, "[webhooks]\nbackoff_s = [1, 0, 3, 4, 5, 6, 7]\n")
    assert line.endswith("[webhooks].backoff_s[1] = 0: Input should be greater than 0")


def test_extra_waits_are_fine_and_no_retries_needs_none(tmp_path: Path) -> None:
    assert load(tmp_path, "[webhooks]\nmax_retries = 2").webhooks.backoff_s[:2] == (1, 5)
    config = load(tmp_path, "[webhooks]\nmax_retries = 0\nbackoff_s = []")
    assert config.webhooks.backoff_s == ()


def test_webhook_host_must_be_allowed(tmp_path: Path) -> None:
    text = "[webhooks]\nallowed_hosts = ['Hooks.Example.com']\n" + PROJECT + WATCH
    ok = load(
        tmp_path, text + "settings = { webhook_config = { url = 'https://hooks.example.com/a' } }"
    )
    assert ok.webhooks.allowed_hosts == ("hooks.example.com",)
    line = one_problem(
        tmp_path, text + "settings = { webhook_config = { url = 'https://evil.org/a' } }"
    )
    assert (
        "[watches][0].settings.webhook_config.url: the host of 'https://evil.org/a' is not in"
        in line
    )


# --- projects and watches that refer to each other -----------------------------------------------


def test_duplicate_project_names(tmp_path: Path) -> None:
    text = PROJECT + PROJECT.replace('"proj"', '"other"')
    line = one_problem(tmp_path, text)
    number = textwrap.dedent(text).splitlines().index('name = "invoices"', 3) + 1
    assert line.endswith(
        f"flowd.toml:{number}: [projects][1].name: duplicate name 'invoices' (first used at index 0)"
    )


def test_duplicate_watch_names(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + WATCH + WATCH.replace('"in"', '"in2"'))
    assert "[watches][1].name: duplicate name 'inbox' (first used at index 0)" in line


def test_two_watches_on_one_folder(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + WATCH + WATCH.replace('"inbox"', '"again"'))
    assert f"[watches][1].input_dir: {tmp_path}/etc/in is already watched by 'inbox'" in line


def test_two_projects_writing_one_binary(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + PROJECT.replace('"invoices"', '"copy"'))
    assert "[projects][1].binary_path: 'copy' and 'invoices' would both write" in line


def test_a_watch_naming_an_unknown_project(tmp_path: Path) -> None:
    line = one_problem(
        tmp_path, PROJECT + WATCH.replace('project = "invoices"', 'project = "nope"')
    )
    assert line.endswith(
        "flowd.toml:10: [watches][0].project: 'nope' is not a [[projects]] name (invoices)"
    )


def test_a_watch_with_both_project_and_binary_path(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + WATCH + 'binary_path = "x.ibflowbin"\n')
    assert "[watches][0].project: set exactly one of project and binary_path, not both" in line


def test_a_watch_with_neither_project_nor_binary_path(tmp_path: Path) -> None:
    line = one_problem(tmp_path, '[[watches]]\nname = "w"\ninput_dir = "in"\n')
    assert line.endswith(
        'flowd.toml:1: [watches][0]: needs project = "<a [[projects]] name>"'
        ' or binary_path = "<file>.ibflowbin"'
    )


def test_a_watch_binary_path_must_be_a_binary(tmp_path: Path) -> None:
    line = one_problem(tmp_path, '[[watches]]\nname = "w"\ninput_dir = "in"\nbinary_path = "b"\n')
    assert f"[watches][0].binary_path: '{tmp_path}/etc/b' is not a .ibflowbin file" in line


def test_a_watch_needs_its_input_dir(tmp_path: Path) -> None:
    line = one_problem(tmp_path, '[[watches]]\nname = "w"\nbinary_path = "b.ibflowbin"\n')
    assert line.endswith("flowd.toml:1: [watches][0].input_dir: missing (required)")


def test_metaflow_project_missing_its_settings(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        [[projects]]
        name = "docs"
        root = "p"
        binary_type = "Metaflow"
        flows_dir = "flows"
        """,
    )
    needs = 'binary_type = "Metaflow" needs flows_dir, metaflow_file, classifier_file'
    assert [line.split(": ", 1)[1] for line in found] == [
        f"[projects][0].metaflow_file: missing: {needs}",
        f"[projects][0].classifier_file: missing: {needs}",
    ]


def test_project_settings_of_another_type_are_refused(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + 'flows_dir = "flows"\n')
    assert (
        '[projects][0].flows_dir: not used by binary_type = "Single Flow" (it takes flow_file)'
        in line
    )
    text = '[[projects]]\nname = "f"\nroot = "p"\nbinary_type = "Flows"\n'
    assert '[projects][0].flows_dir: missing: binary_type = "Flows"' in one_problem(tmp_path, text)
    config = load(tmp_path, text + 'flows_dir = "flows"\n')
    assert config.projects[0].binary_file == tmp_path / "etc/p/build/bin/flows.ibflowbin"


def test_project_bad_binary_type_and_absolute_settings(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT + 'binary_type = "Multi"\n')
    assert (
        "[projects][0].binary_type = \"Multi\": Input should be 'Single Flow', 'Metaflow' or 'Flows'"
        in line
    )
    line = one_problem(tmp_path, PROJECT.replace('"invoice.ibflow"', '"/etc/x.ibflow"'))
    assert (
        '[projects][0].flow_file = "/etc/x.ibflow": must be relative to the project\'s root' in line
    )


# --- the environment -----------------------------------------------------------------------------


def test_env_sets_a_scalar(tmp_path: Path) -> None:
    assert load(tmp_path, "workers = 2", {"FLOWD_WORKERS": "4"}).workers == 4


def test_env_sets_a_nested_key_and_keeps_the_rest_of_the_table(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[api]\nhost = "0.0.0.0"\nport = 8000\n[log]\nformat = "json"',
        {"FLOWD_API__PORT": "9000", "FLOWD_LOG__LEVEL": "warning", "FLOWD_SMTP__STARTTLS": "yes"},
    )
    assert (config.api.host, config.api.port) == ("0.0.0.0", 9000)  # environment wins
    assert config.log.format is LogFormat.JSON and config.log.level is LogLevel.WARNING
    assert config.smtp.starttls is True


def test_env_names_are_case_insensitive(tmp_path: Path) -> None:
    assert load(tmp_path, "", {"flowd_api__port": "9001"}).api.port == 9001


def test_env_sets_arrays_as_json_with_paths_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load(
        tmp_path,
        'state_dir = "state"',
        {"FLOWD_ALLOWED_ROOTS": '["shared", "/abs"]', "FLOWD_DATA_ROOT": "data"},
    )
    assert config.allowed_roots == (tmp_path / "shared", Path("/abs"))
    assert config.data_root == tmp_path / "data"  # the environment's: the current directory
    assert config.state_dir == tmp_path / "etc" / "state"  # the file's: the file's folder


def test_env_replaces_an_array_of_tables_whole(tmp_path: Path) -> None:
    watches = '[{"name": "x", "input_dir": "in", "binary_path": "/b/x.ibflowbin"}]'
    config = load(tmp_path, PROJECT + WATCH, {"FLOWD_WATCHES": watches})
    assert [w.name for w in config.watches] == ["x"]


def test_env_malformed_value_names_the_variable(tmp_path: Path) -> None:
    line = one_problem(tmp_path, "[api]\nport = 8000", {"FLOWD_API__PORT": "eighty"})
    assert line == (
        'FLOWD_API__PORT="eighty": [api].port: '
        "Input should be a valid integer, unable to parse string as an integer"
    )
    line = one_problem(tmp_path, "", {"FLOWD_MAX_ATTEMPTS": "0"})
    assert (
        line == 'FLOWD_MAX_ATTEMPTS="0": max_attempts: Input should be greater than or equal to 1'
    )


def test_env_malformed_json_names_the_variable(tmp_path: Path) -> None:
    line = one_problem(tmp_path, "", {"FLOWD_ALLOWED_ROOTS": "/srv/a"})
    assert line == (
        'FLOWD_ALLOWED_ROOTS="/srv/a": allowed_roots: must be an array, '
        """written as JSON: FLOWD_ALLOWED_ROOTS='[…]'"""
    )


def test_env_cannot_address_one_entry_of_an_array(tmp_path: Path) -> None:
    line = one_problem(tmp_path, PROJECT, {"FLOWD_PROJECTS__0__ROOT": "x"})
    assert line == (
        'FLOWD_PROJECTS__0__ROOT="x": projects: must be an array, '
        "written as JSON: FLOWD_PROJECTS='[…]'"
    )


def test_env_unknown_variables(tmp_path: Path) -> None:
    """Other tools share the prefix: unknown top-level names are ignored; an unknown key of a
    known table is a typo and is reported with the variable's name."""
    config = load(tmp_path, "", {"FLOWD_CONFIG": "/etc/flowd.toml", "FLOWD_URL": "x", "PATH": "/"})
    assert config == load(tmp_path, "")
    line = one_problem(tmp_path, "", {"FLOWD_API__PROT": "1"})
    assert line == "FLOWD_API__PROT=\"1\": [api].prot: unknown key (did you mean 'port'?)"


def test_env_problems_come_with_the_files(tmp_path: Path) -> None:
    found = problems(tmp_path, "workers = -1", {"FLOWD_API__PORT": "x"})
    assert found[0].startswith("FLOWD_API__PORT=") and "flowd.toml:1: workers = -1" in found[1]


def test_env_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWD_WORKERS", "6")
    assert load_config(write(tmp_path, ""), None).workers == 6
    assert load_config(write(tmp_path, ""), {}).workers == 0  # an explicit mapping replaces it


def test_constructing_the_model_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWD_WORKERS", "6")
    assert FlowdConfig().workers == 0
    assert FlowdConfig(workers=3).workers == 3


# --- the file itself -----------------------------------------------------------------------------


def test_toml_syntax_error_gives_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "workers = 2\n[api]\nport = = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}:3:8: Invalid value (TOML syntax)"


def test_toml_error_at_end_of_document(tmp_path: Path) -> None:
    line = one_problem(tmp_path, 'state_dir = "unterminated')
    assert line.endswith("flowd.toml: Unterminated string (at end of document) (TOML syntax)")


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"nope\.toml: cannot read the configuration: No such file"
    ):
        load_config(tmp_path / "nope.toml", {})
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('sender = "caf\xe9"'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad, {})


def test_config_error_is_a_flowd_error(tmp_path: Path) -> None:
    with pytest.raises(FlowdError):
        load(tmp_path, "workers = -1")


# --- line numbers --------------------------------------------------------------------------------


def test_key_lines_follow_tables_arrays_and_sub_tables() -> None:
    lines = KeyLines.scan(
        textwrap.dedent(
            '''\
            workers = 1
            note = """
            port = 3
            """
            [api]
            port = 1
            [[watches]]
            name = "a"
            [[watches]]
            name = "b"
            [watches.settings]
            priority = 3
            dotted.key = 1
            '''
        )
    )
    assert lines.line_of(("workers",)) == 1
    assert lines.line_of(("port",)) is None  # inside a multi-line string: text, not a key
    assert lines.line_of(("api", "port")) == 6
    assert lines.line_of(("watches", 0, "name")) == 8
    assert lines.line_of(("watches", 1, "name")) == 10
    assert lines.line_of(("watches", 1, "settings", "priority")) == 12
    assert lines.line_of(("watches", 1, "settings", "dotted", "key")) == 13
    assert lines.line_of(("watches", 1, "missing")) == 9  # the table's header
    assert lines.line_of(("watches",)) == 7
    assert lines.line_of(("smtp", "host")) is None
