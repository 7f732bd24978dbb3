"""The OpenAPI document is valid, lists every route with its errors, and agrees with API.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from tests.web.conftest import ALICE
from web.openapi import DOOR_ERRORS

API_MD = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SHARED_API_MD = Path(__file__).resolve().parents[2].parent / "shared" / "API.md"
METHODS = {"get", "post", "put", "patch", "delete"}
KEYED = ("/v1/", *DOOR_ERRORS)  # our API and the compatible doors: a key on every route


def error_schema_of(path: str) -> str:
    """Name the error schema of a path: its door's own, else MES's one shape."""
    return next((name for prefix, (name, _) in DOOR_ERRORS.items() if path.startswith(prefix)),
                "Error")


@pytest.fixture
def doc(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


@pytest.fixture
def api_md() -> str:
    return API_MD.read_text()


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def resolve(doc, node):
    while "$ref" in node:
        name = node["$ref"].split("/")
        node = doc[name[1]][name[2]][name[3]]
    return node


def test_the_document_is_valid_openapi(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.0")


def test_every_route_of_the_app_is_documented_and_nothing_else(app, doc):
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        served |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert {(path, method) for path, method, _ in operations(doc)} == served


def test_every_v1_operation_needs_a_key_and_lists_its_errors(doc):
    for path, method, op in operations(doc):
        statuses = set(op["responses"])
        if path.startswith(KEYED):
            assert op["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}], path
            assert {"401", "429"} <= statuses, (method, path)
        else:
            assert "401" not in statuses or path == "/metrics"
        for status in statuses:
            response = resolve(doc, op["responses"][status])
            if int(status) >= 400 and path != "/ready":
                [schema] = [c["schema"] for c in response["content"].values()]
                shape = schema["allOf"][0] if "allOf" in schema else schema
                assert shape == {"$ref": f"#/components/schemas/{error_schema_of(path)}"}, path
        if method == "post" and path in ("/v1/jobs", "/v1/inference"):
            assert {"400", "403", "413", "422", "503"} <= statuses


def test_the_error_shape_is_one_component(doc):
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = resolve(doc, error["properties"]["error"])
    assert set(detail["required"]) == {"code", "message", "details"}
    assert "Retry-After" in doc["components"]["responses"]["Error429"]["headers"]


def api_md_operations(text: str) -> set[tuple[str, str]]:
    found = set()
    for method, path in re.findall(r"`(GET|POST|DELETE|PUT|PATCH) (/[^`?\s]*)", text):
        found.add((re.sub(r"\{[a-z_]+\}", "{}", path), method.lower()))
    return found


def test_paths_and_methods_agree_with_api_md(doc, api_md):
    documented = {(re.sub(r"\{[a-z_]+\}", "{}", path), method)
                  for path, method, _ in operations(doc)}
    assert api_md_operations(api_md) == documented


def test_error_codes_and_statuses_agree_with_api_md(doc, api_md):
    table = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", api_md, re.M)
    assert len(table) >= 12
    for status, code in table:
        response = doc["components"]["responses"][f"Error{status}"]
        codes = response["content"]["application/json"]["schema"]["allOf"][1]
        assert code in codes["properties"]["error"]["properties"]["code"]["enum"], code


@pytest.mark.parametrize("path,method,statuses", [
    ("/v1/jobs", "post", {"202", "200", "422"}),
    ("/v1/jobs/{job_id}", "get", {"200"}),
    ("/v1/jobs/{job_id}", "delete", {"200", "409"}),
    ("/v1/inference", "post", {"200", "202"}),
    ("/v1/models/{model_id}/load", "post", {"202"}),
    ("/v1/models/{model_id}/unload", "post", {"202"}),
    ("/ready", "get", {"200", "503"}),
])
def test_statuses_that_api_md_names_are_documented(doc, path, method, statuses):
    assert statuses <= set(doc["paths"][path][method]["responses"])


def md_json_keys(text: str, heading: str) -> set[str]:
    block = text.split(heading, 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return set(json.loads(block))


def test_fields_agree_with_api_md(doc, api_md):
    schemas = doc["components"]["schemas"]
    assert md_json_keys(api_md, "## The job") <= set(schemas["Job"]["properties"])
    assert md_json_keys(api_md, "## Jobs") <= set(schemas["JobRequest"]["properties"])
    assert "wait_s" in schemas["InferenceRequest"]["properties"]
    listed = re.search(r'\{"models": \[\{(.*?)\}\]\}', api_md).group(1)
    assert set(re.findall(r'"([a-z_]+)"', listed)) <= set(schemas["Model"]["properties"])
    assert {"redis", "backend", "workers"} <= set(schemas["Ready"]["properties"])
    query = {p["name"] for p in doc["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert query == {"status", "model", "limit", "cursor", "batch"}
    wait = doc["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"]
    assert {"name": "wait", "in": "query"}.items() <= [p for p in wait if p["in"] == "query"][0].items()


def test_responses_match_their_schemas(client, doc):
    """Spot-check real answers against the document (the live fuzzer checks many more)."""
    from openapi_schema_validator import OAS30Validator
    job = client.post("/v1/jobs", json={"model": "smollm2:135m", "prompt": "hi"}, headers=ALICE)
    answers = [("Job", job.get_json()),
               ("JobList", client.get("/v1/jobs", headers=ALICE).get_json()),
               ("ModelList", client.get("/v1/models", headers=ALICE).get_json()),
               ("Ready", client.get("/ready").get_json()),
               ("Error", client.get("/v1/jobs/none", headers=ALICE).get_json())]
    for name, body in answers:
        schema = {**doc["components"]["schemas"][name], "components": doc["components"]}
        OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER).validate(body)


def test_docs_page_renders_from_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html and "http://" not in html and "https://" not in html
    for asset in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert client.get(asset).status_code == 200, asset


def test_the_project_contract_keeps_all_of_the_shared_baseline(api_md):
    if not SHARED_API_MD.is_file():
        pytest.skip(f"{SHARED_API_MD} is not here (a clone without shared/ beside it)")
    shared = SHARED_API_MD.read_text()
    assert api_md_operations(shared) <= api_md_operations(api_md)
    # Every row of the error table and every rule of the baseline stands unchanged.
    kept = [line for line in shared.splitlines() if line.startswith(("| ", "- "))]
    missing = [line for line in kept if line not in api_md.splitlines()]
    assert not missing, missing
