"""Compiling projects: formats, located errors, reproducible and verified binaries (SPEC §2, §4)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REFINER, flow, refiner_step

from flowd.errors import BinaryError, CompileError
from flowd.flows.binary import load_binary
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")


def problems(root: Path, settings: CompileSettings = SINGLE) -> list[str]:
    with pytest.raises(CompileError) as info:
        compile_project(root, settings)
    return [str(p) for p in info.value.problems]


def test_compile_writes_default_path_and_bundles_only_used_files(simple_project: Path) -> None:
    (simple_project / "notes.txt").write_text("not part of the flow")
    result = compile_project(simple_project, SINGLE)
    assert result.path == simple_project / "build" / "bin" / "invoice.ibflowbin"
    with zipfile.ZipFile(result.path) as zf:
        names = sorted(zf.namelist())
    assert names == ["manifest.json", "project/invoice.ibflow", "project/modules/invoice.ibrefiner"]
    manifest = load_binary(result.path).manifest
    assert manifest["binary_type"] == "Single Flow"
    assert manifest["flows"][0]["fields"] == ["invoice_number", "total"]
    assert manifest["contains_udfs"] is False


def test_same_sources_give_byte_identical_binaries(simple_project: Path, tmp_path: Path) -> None:
    a = compile_project(simple_project, SINGLE, tmp_path / "a.ibflowbin")
    b = compile_project(simple_project, SINGLE, tmp_path / "b")
    assert a.path.read_bytes() == b.path.read_bytes()
    again = compile_project(simple_project, SINGLE, tmp_path / "a.ibflowbin")
    assert again.written is False


def test_changed_source_changes_the_binary(simple_project: Path, tmp_path: Path) -> None:
    a = compile_project(simple_project, SINGLE, tmp_path / "a.ibflowbin")
    refiner = json.loads((simple_project / "modules/invoice.ibrefiner").read_text())
    refiner["fields"][0]["formula"] = "echo('x')"
    (simple_project / "modules/invoice.ibrefiner").write_text(json.dumps(refiner))
    b = compile_project(simple_project, SINGLE, tmp_path / "b.ibflowbin")
    assert a.content_sha256 != b.content_sha256


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip_entry", "extra_entry", "drop_entry", "not_zip", "empty"],
)
def test_tampered_binary_is_refused(simple_project: Path, damage: str) -> None:
    path = compile_project(simple_project, SINGLE).path
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not_zip":
        path.write_bytes(b"hello")
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with zipfile.ZipFile(path) as zf:
            entries = {n: zf.read(n) for n in zf.namelist()}
        if damage == "flip_entry":
            entries["project/modules/invoice.ibrefiner"] += b" "
        elif damage == "extra_entry":
            entries["project/evil.py"] = b"print('hi')"
        else:
            del entries["project/invoice.ibflow"]
        with zipfile.ZipFile(path, "w") as zf:
            for name, content in entries.items():
                zf.writestr(name, content)
    with pytest.raises(BinaryError) as info:
        load_binary(path)
    assert str(path) in str(info.value)


def test_unknown_key_is_located(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "apply_refiner", "settings": {"program": "r.ibrefiner", "progam": 1}}
            ),
            "r.ibrefiner": REFINER,
        }
    )
    found = problems(root)
    assert len(found) == 1
    assert found[0].startswith("invoice.ibflow:")
    assert "unknown key 'progam'" in found[0]
    text = (root / "invoice.ibflow").read_text().splitlines()
    line_no = int(found[0].split(":")[1])
    assert '"progam"' in text[line_no - 1]


def test_formula_errors_name_file_field_line_and_column(make_project: Callable[..., Path]) -> None:
    refiner = {
        "version": 1,
        "fields": [
            {"name": "a", "formula": "regex_gett(INPUT_COL, 'x')"},
            {"name": "b", "formula": "upper(nope)"},
            {"name": "c", "formula": "concat('a', "},
        ],
    }
    root = make_project(
        {"invoice.ibflow": flow(refiner_step("r.ibrefiner")), "r.ibrefiner": refiner}
    )
    found = problems(root)
    assert len(found) == 3
    assert all(p.startswith("r.ibrefiner:") for p in found)
    assert "field 'a'" in found[0] and "regex_gett" in found[0]
    assert "field 'b'" in found[1] and "nope" in found[1]
    assert "field 'c'" in found[2]


def test_later_field_may_use_earlier_not_later(make_project: Callable[..., Path]) -> None:
    refiner = {
        "version": 1,
        "fields": [
            {"name": "a", "formula": "upper(b)"},
            {"name": "b", "formula": "echo('x')"},
        ],
    }
    root = make_project(
        {"invoice.ibflow": flow(refiner_step("r.ibrefiner")), "r.ibrefiner": refiner}
    )
    assert any("'b'" in p for p in problems(root))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"invoice.ibflow": "{not json"}, "invalid JSON"),
        (
            {"invoice.ibflow": {"version": 2, "name": "x", "steps": [{"step": "process_files"}]}},
            "version",
        ),
        (
            {"invoice.ibflow": {"version": 1, "name": "x", "steps": [{"step": "apply_magic"}]}},
            "apply_magic",
        ),
        (
            {"invoice.ibflow": flow(refiner_step("missing.ibrefiner"))},
            "invoice.ibflow:19:20: refiner program missing.ibrefiner not found",
        ),
        ({"invoice.ibflow": flow(refiner_step("../outside.ibrefiner"))}, "leaves the project root"),
        (
            {
                "invoice.ibflow": {"version": 1, "name": "x", "steps": [refiner_step()]},
                "modules/invoice.ibrefiner": REFINER,
            },
            "first step must be process_files",
        ),
        (
            {
                "invoice.ibflow": flow(
                    {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
                ),
                "u.py": "import not_a_module_anywhere\n",
            },
            "fails on import",
        ),
        (
            {
                "invoice.ibflow": flow(
                    {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
                ),
                "u.py": "def g(record, context):\n    return record\n",
            },
            "no function 'f'",
        ),
        (
            {
                "invoice.ibflow": flow(
                    {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
                ),
                "u.py": "def f(record, context)\n    return record\n",
            },
            "syntax error",
        ),
        (
            {
                "invoice.ibflow": flow(
                    {"step": "apply_classifier", "settings": {"classifier": "c.ibclassifier"}}
                ),
                "c.ibclassifier": {
                    "version": 1,
                    "default_class": "other",
                    "classes": [{"name": "a", "rules": [{"weight": 1}]}],
                },
            },
            "exactly one of contains, regex, formula, filename",
        ),
        (
            {
                "invoice.ibflow": flow(
                    {"step": "apply_checkpoint", "settings": {"validations": "v.ibvalidations"}}
                ),
                "v.ibvalidations": {
                    "version": 1,
                    "rules": [{"field": "total", "formula": "total > 0", "message": "m"}],
                },
            },
            "total",
        ),
    ],
)
def test_compile_errors(
    make_project: Callable[..., Path], files: dict[str, object], expected: str
) -> None:
    root = make_project(files)
    found = problems(root)
    assert found, "expected problems"
    assert any(expected in p for p in found), found
    for p in found:
        _file, line, col, _ = p.split(":", 3)
        assert int(line) >= 1 and int(col) >= 1


def test_metaflow_route_to_missing_flow_and_impossible_class(
    make_project: Callable[..., Path],
) -> None:
    root = make_project(
        {
            "flows/invoice.ibflow": flow(),
            "doc.ibclassifier": {
                "version": 1,
                "default_class": "other",
                "classes": [{"name": "invoice", "rules": [{"contains": ["invoice"]}]}],
            },
            "meta.ibmetaflow": {
                "version": 1,
                "routes": {"invoice": "invoice.ibflow", "receipt": "receipt.ibflow"},
            },
        }
    )
    settings = CompileSettings(
        BinaryType.METAFLOW, None, "flows", "meta.ibmetaflow", "doc.ibclassifier"
    )
    found = problems(root, settings)
    assert any("receipt" in p and "cannot be produced" in p for p in found)
    assert any("missing flow 'receipt.ibflow'" in p for p in found)


def test_udf_binary_records_udfs(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "apply_udf", "settings": {"script": "modules/u.py", "function": "f"}}
            ),
            "modules/u.py": "def f(record, context):\n    return record\n",
        }
    )
    manifest = load_binary(compile_project(root, SINGLE).path).manifest
    assert manifest["contains_udfs"] is True
    assert manifest["udf_scripts"] == ["modules/u.py"]


def test_flows_binary_takes_every_flow(make_project: Callable[..., Path]) -> None:
    root = make_project({"flows/a.ibflow": flow(name="a"), "flows/b.ibflow": flow(name="b")})
    result = compile_project(root, CompileSettings(BinaryType.FLOWS, flows_dir="flows"))
    assert result.path.name == "flows.ibflowbin"
    assert [f["stem"] for f in load_binary(result.path).manifest["flows"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "content", "settings"),
    [
        ("r.ibrefiner", {"version": 1, "fields": [], "extra": 1}, None),
        (
            "r.ibrefiner",
            {"version": 1, "fields": [{"name": "a", "formula": "echo(1)", "typ": "TEXT"}]},
            None,
        ),
        (
            "v.ibvalidations",
            {
                "version": 1,
                "rules": [{"field": "a", "formula": "true", "message": "m", "level": 1}],
            },
            None,
        ),
        (
            "c.ibclassifier",
            {
                "version": 1,
                "default_class": "x",
                "classes": [{"name": "a", "rules": [{"contains": ["a"], "wieght": 2}]}],
            },
            None,
        ),
        ("m.ibmetaflow", {"version": 1, "routes": {}, "unmatch": "skip"}, "meta"),
    ],
)
def test_unknown_keys_in_every_format(
    make_project: Callable[..., Path], name: str, content: dict[str, object], settings: str | None
) -> None:
    files: dict[str, object] = {
        "invoice.ibflow": flow(
            refiner_step("r.ibrefiner"),
            {"step": "apply_classifier", "settings": {"classifier": "c.ibclassifier"}},
            {"step": "apply_checkpoint", "settings": {"validations": "v.ibvalidations"}},
        ),
        "flows/a.ibflow": flow(),
        "r.ibrefiner": {"version": 1, "fields": [{"name": "a", "formula": "echo(1)"}]},
        "v.ibvalidations": {"version": 1, "rules": []},
        "c.ibclassifier": {
            "version": 1,
            "default_class": "x",
            "classes": [{"name": "a", "rules": [{"contains": ["a"]}]}],
        },
        "m.ibmetaflow": {"version": 1, "routes": {"a": "a.ibflow"}},
    }
    files[name] = content
    root = make_project(files)
    compile_settings = (
        CompileSettings(BinaryType.METAFLOW, None, "flows", "m.ibmetaflow", "c.ibclassifier")
        if settings == "meta"
        else SINGLE
    )
    found = problems(root, compile_settings)
    assert any(p.startswith(f"{name}:") and "unknown key" in p for p in found), found


def test_forged_manifest_claim_is_refused(make_project: Callable[..., Path]) -> None:
    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
            ),
            "u.py": "def f(record, context):\n    return record\n",
        }
    )
    path = compile_project(root, SINGLE).path
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(entries["manifest.json"])
    manifest["contains_udfs"] = False  # hide the UDF from whoever gates on it
    entries["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    with pytest.raises(BinaryError, match="content_sha256"):
        load_binary(path)
