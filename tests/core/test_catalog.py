from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from webhook_mcp.core.builtin_events import _Order
from webhook_mcp.core.catalog import (
    TEST_EVENT,
    Catalog,
    EventType,
    builtin_event_types,
    load_catalog,
)
from webhook_mcp.core.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidPayloadError,
    UnknownEventTypeError,
)

REQUIRED = {
    "order.created",
    "order.updated",
    "order.paid",
    "order.shipped",
    "order.cancelled",
    "order.refunded",
    "payment.completed",
    "payment.failed",
    "payment.refunded",
    "customer.created",
    "customer.updated",
    "product.created",
    "product.updated",
    "product.deleted",
    "inventory.low_stock",
    "webhook.test",
}


def _order_data() -> dict[str, Any]:
    return copy.deepcopy(load_catalog().get("order.created").example)


def _strict_orders() -> Catalog:
    """order.created as an operator would enforce it in full: the documented model's own schema."""
    example = _order_data()
    return Catalog([EventType("order.created", "order", "Strict orders.", _Order.model_json_schema(), example)])


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _config_error(tmp_path: Path, name: str, text: str) -> str:
    path = _write(tmp_path, name, text)
    with pytest.raises(ConfigurationError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message
    return message


# --- built-ins -------------------------------------------------------------------------------------


def test_every_required_event_type_is_present() -> None:
    catalog = load_catalog()
    assert set(catalog.names()) == REQUIRED
    assert all(name in catalog for name in REQUIRED)
    assert "order.teleported" not in catalog
    assert 42 not in catalog


@pytest.mark.parametrize("event_type", builtin_event_types(), ids=lambda t: t.name)
def test_builtin_example_validates_against_its_own_schema(event_type: EventType) -> None:
    assert event_type.schema is not None
    Draft202012Validator.check_schema(event_type.schema)
    errors = list(Draft202012Validator(event_type.schema).iter_errors(event_type.example))
    assert errors == []
    load_catalog().validate(event_type.name, event_type.example)
    json.dumps(event_type.schema)
    json.dumps(event_type.example)


@pytest.mark.parametrize("event_type", builtin_event_types(), ids=lambda t: t.name)
def test_builtin_metadata_is_filled_in(event_type: EventType) -> None:
    assert event_type.group == event_type.name.split(".")[0]
    assert event_type.description.strip().endswith(".")
    assert len(event_type.description) > 30
    assert event_type.example
    assert event_type.subscribable is (event_type.name != TEST_EVENT)


def test_builtin_examples_are_realistic() -> None:
    catalog = load_catalog()
    order = catalog.get("order.created").example
    assert order["id"] == "ord_1001"
    assert order["status"] == "pending"
    items_total = sum(item["quantity"] * item["unit_price"] for item in order["line_items"])
    assert items_total == order["subtotal"]
    assert order["total"] == order["subtotal"] + order["shipping"] + order["tax"]
    assert order["created_at"].startswith("2024-")
    shipped = catalog.get("order.shipped").example
    assert shipped["shipment"]["tracking_number"]
    failed = catalog.get("payment.failed").example
    assert failed["status"] == "failed"
    assert failed["failure_code"] and failed["failure_message"]
    assert catalog.get("order.refunded").example["refund"]["id"].startswith("re_")
    assert set(catalog.get("product.deleted").example) == {"id", "sku", "deleted_at"}
    low = catalog.get("inventory.low_stock").example
    assert low["quantity_available"] <= low["threshold"]
    assert catalog.get(TEST_EVENT).example == {
        "message": "This is a test event from webhook-mcp.",
        "webhook_id": 1,
    }


def test_builtin_event_types_returns_fresh_objects() -> None:
    first = builtin_event_types()
    assert first[0].schema is not None
    first[0].schema["type"] = "string"
    first[0].example.clear()
    second = builtin_event_types()
    assert second[0].schema is not None
    assert second[0].schema["type"] == "object"
    assert second[0].example


@pytest.mark.parametrize("event_type", [t for t in builtin_event_types() if t.subscribable], ids=lambda t: t.name)
def test_builtin_types_take_a_shops_own_minimal_payload(event_type: EventType) -> None:
    catalog = load_catalog()
    for data in (
        {"id": "ord_1", "total": 1999, "currency": "EUR"},
        {"id": 42},
        {"id": "x", "total": "19.99", "line_items": None, "customer": {"anything": [1, {"goes": True}]}},
    ):
        catalog.validate(event_type.name, data)
    assert catalog.problems(event_type.name, {"total": 1999}) == ["data: 'id' is a required property"]
    for bad_id in (1.5, None, ["ord_1"], {"id": 1}, True):
        problems = catalog.problems(event_type.name, {"id": bad_id})
        assert len(problems) == 1 and problems[0].startswith("data.id: "), (bad_id, problems)


def test_builtin_schemas_document_fields_without_gating() -> None:
    schema = load_catalog().get("order.created").schema
    assert schema is not None
    assert schema["required"] == ["id"]
    assert schema["properties"]["id"]["type"] == ["string", "integer"]
    assert "ord_1001" in schema["properties"]["id"]["description"]
    items = schema["properties"]["line_items"]
    assert set(items) == {"description"} and "array of LineItem" in items["description"]
    assert "minor units" in schema["properties"]["total"]["description"]
    assert "additionalProperties" not in schema


# --- catalog behaviour -----------------------------------------------------------------------------


def test_iteration_is_sorted_by_group_then_name() -> None:
    catalog = Catalog(
        [
            EventType("b.two", "b", "B two.", None, {}),
            EventType("z.one", "a", "Z one in group a.", None, {}),
            EventType("b.one", "b", "B one.", None, {}),
        ]
    )
    assert [t.name for t in catalog] == ["z.one", "b.one", "b.two"]
    assert catalog.names() == ["z.one", "b.one", "b.two"]


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match=r"'a\.b' is defined more than once"):
        Catalog([EventType("a.b", "a", "One.", None, {}), EventType("a.b", "a", "Two.", None, {})])


def test_unknown_name_suggests_close_matches() -> None:
    catalog = load_catalog()
    with pytest.raises(UnknownEventTypeError) as info:
        catalog.get("order.create")
    assert info.value.suggestions[0] == "order.created"
    assert "order.created" in str(info.value)
    assert catalog.suggestions("payment.complete")[0] == "payment.completed"
    assert catalog.suggestions("Order.Paid")[0] == "order.paid"


def test_suggestions_fall_back_to_same_group_and_respect_limit() -> None:
    catalog = load_catalog()
    fallback = catalog.suggestions("inventory.restocked_everywhere_today")
    assert fallback == ["inventory.low_stock"]
    assert len(catalog.suggestions("order.xyzzy_plugh_frobnicate", limit=2)) == 2
    assert all(s.startswith("order.") for s in catalog.suggestions("order.xyzzy_plugh_frobnicate"))
    assert catalog.suggestions("zzzz.qqqq") == []
    with pytest.raises(UnknownEventTypeError) as info:
        catalog.get("zzzz.qqqq")
    assert info.value.suggestions == []


def test_subscribable_excludes_the_test_event() -> None:
    catalog = load_catalog()
    names = [t.name for t in catalog.subscribable()]
    assert TEST_EVENT not in names
    assert len(names) == len(REQUIRED) - 1
    assert catalog.get(TEST_EVENT).group == "webhook"
    assert catalog.get(TEST_EVENT).subscribable is False


def test_require_subscribable() -> None:
    catalog = load_catalog()
    assert catalog.require_subscribable("order.paid").name == "order.paid"
    with pytest.raises(InvalidArgumentError) as info:
        catalog.require_subscribable(TEST_EVENT)
    message = str(info.value)
    assert "cannot be subscribed to" in message
    assert "test_webhook" in message
    with pytest.raises(UnknownEventTypeError):
        catalog.require_subscribable("order.payed")


# --- validate --------------------------------------------------------------------------------------


def test_validate_accepts_a_valid_payload_and_extra_fields() -> None:
    data = _order_data()
    data["note_from_customer"] = "Leave at the door."
    load_catalog().validate("order.created", data)


def test_validate_collects_all_errors_sorted_by_path() -> None:
    data = _order_data()
    data["line_items"][1]["quantity"] = -1
    data["line_items"][0]["quantity"] = 0
    data["currency"] = "usd"
    del data["total"]
    data["status"] = "lost"
    with pytest.raises(InvalidPayloadError) as info:
        _strict_orders().validate("order.created", data)
    problems = info.value.problems
    assert problems == [
        "data: 'total' is a required property",
        "data.currency: 'usd' does not match '^[A-Z]{3}$'",
        "data.line_items[0].quantity: 0 is less than the minimum of 1",
        "data.line_items[1].quantity: -1 is less than the minimum of 1",
        "data.status: 'lost' is not one of ['pending', 'paid', 'fulfilled', 'shipped', 'cancelled', "
        "'refunded', 'partially_refunded']",
    ]
    assert info.value.event_type == "order.created"
    assert "data.line_items[1].quantity: -1 is less than the minimum of 1" in str(info.value)


def test_validate_sorts_numeric_indexes_numerically() -> None:
    data = _order_data()
    item = data["line_items"][0]
    data["line_items"] = [dict(item) for _ in range(11)]
    data["line_items"][10]["quantity"] = 0
    data["line_items"][2]["quantity"] = 0
    with pytest.raises(InvalidPayloadError) as info:
        _strict_orders().validate("order.created", data)
    assert [p.split(":")[0] for p in info.value.problems] == [
        "data.line_items[2].quantity",
        "data.line_items[10].quantity",
    ]


def test_validate_checks_date_time_format() -> None:
    data = _order_data()
    data["created_at"] = "yesterday"
    with pytest.raises(InvalidPayloadError) as info:
        _strict_orders().validate("order.created", data)
    assert info.value.problems == ["data.created_at: 'yesterday' is not a 'date-time'"]


@pytest.mark.parametrize("data", [[1, 2], "order", None, 3])
def test_validate_rejects_non_object_data(data: Any) -> None:
    with pytest.raises(InvalidPayloadError) as info:
        load_catalog().validate("order.created", data)
    assert info.value.problems == ["data must be a JSON object"]


def test_validate_unknown_type_and_schemaless_type() -> None:
    catalog = Catalog([EventType("free.form", "free", "Anything goes.", None, {})])
    catalog.validate("free.form", {"whatever": [1, 2, 3]})
    with pytest.raises(InvalidPayloadError):
        catalog.validate("free.form", ["not", "an", "object"])
    with pytest.raises(UnknownEventTypeError):
        catalog.validate("free.forms", {})


# --- operator's file -------------------------------------------------------------------------------

GOOD_YAML = """\
event_types:
  - name: subscription.renewed
    description: Sent when a subscription renews and the customer is charged again.
    schema:
      type: object
      required: [subscription_id, renewed_at]
      properties:
        subscription_id: {type: string}
        renewed_at: {type: string, format: date-time}
        amount: {type: integer, minimum: 0}
    example:
      subscription_id: sub_77
      renewed_at: 2024-06-01T00:00:00Z
      amount: 1500
  - name: loyalty.points_earned
    description: Sent when a customer earns loyalty points.
    group: marketing
"""


def test_custom_yaml_file_is_merged_with_builtins(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, "types.yaml", GOOD_YAML))
    assert set(catalog.names()) == REQUIRED | {"subscription.renewed", "loyalty.points_earned"}
    renewed = catalog.get("subscription.renewed")
    assert renewed.group == "subscription"
    assert renewed.subscribable is True
    assert renewed.example["renewed_at"] == "2024-06-01T00:00:00Z"
    points = catalog.get("loyalty.points_earned")
    assert points.group == "marketing"
    assert points.schema is None
    assert points.example == {}
    catalog.validate("loyalty.points_earned", {"points": 5})
    with pytest.raises(InvalidPayloadError) as info:
        catalog.validate("subscription.renewed", {"amount": -5})
    assert info.value.problems == [
        "data: 'renewed_at' is a required property",
        "data: 'subscription_id' is a required property",
        "data.amount: -5 is less than the minimum of 0",
    ]
    groups = [t.group for t in catalog]
    assert groups == sorted(groups)


def test_custom_json_file_and_yml_suffix(tmp_path: Path) -> None:
    document = {
        "event_types": [
            {
                "name": "gift_card.issued",
                "description": "Sent when a gift card is issued.",
                "schema": {"type": "object", "properties": {"code": {"type": "string"}}},
                "example": {"code": "GIFT-1234"},
            }
        ]
    }
    catalog = load_catalog(_write(tmp_path, "types.json", json.dumps(document)))
    assert catalog.get("gift_card.issued").example == {"code": "GIFT-1234"}
    assert "order.created" in catalog
    yml = load_catalog(_write(tmp_path, "types.yml", "event_types: []\n"))
    assert set(yml.names()) == REQUIRED


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError) as info:
        load_catalog(path)
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


def test_unsupported_suffix(tmp_path: Path) -> None:
    message = _config_error(tmp_path, "types.toml", "x = 1\n")
    assert "'.toml'" in message
    assert ".json, .yaml or .yml" in message


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "types.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigurationError, match="cannot be read as UTF-8"):
        load_catalog(path)


def test_bad_yaml(tmp_path: Path) -> None:
    message = _config_error(tmp_path, "types.yaml", "event_types:\n  - name: [unclosed\n")
    assert "not valid YAML" in message
    assert "line" in message


def test_bad_json(tmp_path: Path) -> None:
    message = _config_error(tmp_path, "types.json", '{"event_types": [}')
    assert "not valid JSON" in message
    assert "line 1, column 18" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "must be a mapping with an 'event_types' list"),
        ("- name: a.b\n", "must be a mapping with an 'event_types' list"),
        ("event_types: {name: a.b}\n", "'event_types' must be a list"),
        ("event_types: []\nextras: 1\n", "unknown top-level key(s) extras"),
        ("event_types: [just-a-string]\n", "event_types[0] must be a mapping"),
    ],
)
def test_wrong_document_shape(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _config_error(tmp_path, "types.yaml", text)


def _entry_error(tmp_path: Path, entry: dict[str, Any], index: int = 0) -> str:
    entries = [{"name": f"fine.entry_{i}", "description": "Fine."} for i in range(index)] + [entry]
    return _config_error(tmp_path, "types.json", json.dumps({"event_types": entries}))


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"description": "No name."}, ["event_types[0] (no name)", "'name' is required"]),
        (
            {"name": "Subscription.Renewed", "description": "x"},
            ["event_types[0] ('Subscription.Renewed')", "lower-case dotted group.action"],
        ),
        ({"name": "renewed", "description": "x"}, ["('renewed')", "e.g. subscription.renewed"]),
        ({"name": "sub.renewed"}, ["('sub.renewed')", "'description' is required"]),
        ({"name": "sub.renewed", "description": "  "}, ["'description' is required"]),
        (
            {"name": "sub.renewed", "description": "x", "descripton": "typo"},
            ["unknown key(s) descripton", "allowed keys are"],
        ),
        ({"name": "sub.renewed", "description": "x", "group": "Bad Group"}, ["'group' must be"]),
        ({"name": "sub.renewed", "description": "x", "schema": "object"}, ["'schema' must be a JSON Schema"]),
        (
            {"name": "sub.renewed", "description": "x", "schema": {"type": "objekt"}},
            ["not a valid JSON Schema", "'objekt'"],
        ),
        (
            {"name": "sub.renewed", "description": "x", "schema": {"type": "string"}},
            ["must describe an object"],
        ),
        ({"name": "sub.renewed", "description": "x", "example": [1]}, ["'example' must be an object"]),
        (
            {
                "name": "sub.renewed",
                "description": "x",
                "schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}},
                "example": {"n": 0},
            },
            [
                "('sub.renewed')",
                "'example' does not match 'schema'",
                "example.n: 0 is less than the minimum of 1",
            ],
        ),
        (
            {"name": "webhook.test", "description": "Clash."},
            ["('webhook.test')", "already defined"],
        ),
    ],
)
def test_bad_entries(tmp_path: Path, entry: dict[str, Any], expected: list[str]) -> None:
    message = _entry_error(tmp_path, entry)
    for part in expected:
        assert part in message


def test_the_operator_redefines_a_builtin_type(tmp_path: Path) -> None:
    text = """\
event_types:
  - name: order.created
    description: Sent when a till rings up a sale.
    schema: {type: object, required: [ref, total], properties: {ref: {type: string}, total: {type: integer}}}
    example: {ref: S-1, total: 1999}
"""
    catalog = load_catalog(_write(tmp_path, "types.yaml", text))
    redefined = catalog.get("order.created")
    assert redefined.description == "Sent when a till rings up a sale."
    assert redefined.example == {"ref": "S-1", "total": 1999} and redefined.builtin is False
    catalog.validate("order.created", {"ref": "S-2", "total": 5})
    assert catalog.problems("order.created", {"id": "ord_1"}) == [
        "data: 'ref' is a required property",
        "data: 'total' is a required property",
    ]
    assert set(catalog.names()) == REQUIRED


def test_the_operator_switches_the_builtins_off(tmp_path: Path) -> None:
    text = "builtin_event_types: false\nevent_types:\n  - {name: lesson.booked, description: A lesson is booked.}\n"
    catalog = load_catalog(_write(tmp_path, "types.yaml", text))
    assert catalog.names() == ["lesson.booked", TEST_EVENT]
    with pytest.raises(UnknownEventTypeError):
        catalog.get("order.created")
    message = _config_error(tmp_path, "bad.yaml", "builtin_event_types: nope\nevent_types: []\n")
    assert "'builtin_event_types' must be true or false" in message


def test_bad_entry_reports_its_index(tmp_path: Path) -> None:
    message = _entry_error(tmp_path, {"name": "a.second"}, index=2)
    assert "event_types[2] ('a.second')" in message


def test_duplicate_within_file(tmp_path: Path) -> None:
    text = "event_types:\n  - {name: sub.renewed, description: One.}\n  - {name: sub.renewed, description: Two.}\n"
    message = _config_error(tmp_path, "types.yaml", text)
    assert "event_types[1] ('sub.renewed')" in message
    assert "already defined" in message


def test_yaml_values_json_cannot_hold(tmp_path: Path) -> None:
    text = "event_types:\n  - name: sub.renewed\n    description: x\n    example: {1: one}\n"
    message = _config_error(tmp_path, "types.yaml", text)
    assert "example has the non-string key 1" in message


def test_loading_caches_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, "types.yaml", GOOD_YAML)
    assert "subscription.renewed" in load_catalog(path)
    path.write_text("event_types: []\n", encoding="utf-8")
    assert "subscription.renewed" not in load_catalog(path)
    assert "subscription.renewed" not in load_catalog()
