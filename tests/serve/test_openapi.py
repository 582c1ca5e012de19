"""The OpenAPI document is generated from the route table: every route, method and V2 datatype is in
it, with its security, so the fuzzing (test_fuzz) reaches every route."""

from loopml.serve.app import create_app
from loopml.serve.openapi import spec
from loopml.serve.protocols import DATATYPES
from loopml.serve.settings import ServeSettings
from loopml.uri import ModelRef


def test_every_route_and_datatype_is_documented():
    app = create_app(ServeSettings(primary=ModelRef("demo", path="/nowhere")))
    document = spec(app.router.routes, None, keys_required=True)
    for route in app.router.routes:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["summary"] and set(operation["responses"]) == {str(c) for c in route.answers}
        assert [p["name"] for p in operation.get("parameters", [])] == route.parameters
    assert "/v2/models/{model_name}/versions/{version}/ready" in document["paths"]
    tensor = document["paths"]["/v2/models/{model_name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert tensor["schema"]["properties"]["inputs"]["items"]["properties"]["datatype"]["enum"] == list(DATATYPES)
    assert len(DATATYPES) == 13 and "BYTES" in DATATYPES
    assert document["paths"]["/admin/traffic"]["post"]["security"] == [{"bearer": []}]
    assert document["paths"]["/v2/health/ready"]["get"]["security"] == []
    assert document["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert {"bearer", "apiKey"} == set(document["components"]["securitySchemes"])
