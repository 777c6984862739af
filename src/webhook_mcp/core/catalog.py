"""The shop's event types: what merchants can subscribe to and what each event's ``data`` looks like.

Built-in payloads are pydantic models so their documentation and examples cannot drift apart.
Their published schemas describe rather than gate: a shop's own order (``{"id": "ord_1", "total":
1999}``) is accepted, only ``id`` is required. Operators add types, or redefine or drop the built-in
ones, in a JSON or YAML file (``WEBHOOK_MCP_EVENT_TYPES_FILE``); the schemas they write are enforced.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError
from pydantic import BaseModel, ConfigDict, Field

from webhook_mcp.core.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidPayloadError,
    UnknownEventTypeError,
)

TEST_EVENT = "webhook.test"

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class EventType:
    name: str
    group: str
    description: str
    schema: dict[str, Any] | None
    example: dict[str, Any]
    subscribable: bool = True
    builtin: bool = False


# --- format checking -------------------------------------------------------------------------------


def _is_datetime(value: object) -> bool:
    """jsonschema only checks date-time with an optional package; an assistant writing "yesterday"
    for ``created_at`` should still be told."""
    if not isinstance(value, str):
        return True
    if "T" not in value.upper() and " " not in value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_FORMAT_CHECKER = FormatChecker()
_FORMAT_CHECKER.checks("date-time")(_is_datetime)


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)


def _fast_validator(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """The publish path checks validity with the Rust validator (~100x faster); the Python one
    only words the errors, so both share the same format checks and messages stay the same."""
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, formats={"date-time": _is_datetime})


def _path_key(part: object) -> tuple[int, int, str]:
    return (0, part, "") if isinstance(part, int) else (1, 0, str(part))


def _format_path(parts: Iterable[object]) -> str:
    text = "data"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _problems(validator: Draft202012Validator, data: Any) -> list[str]:
    errors: list[ValidationError] = list(validator.iter_errors(data))
    errors.sort(key=lambda e: ([_path_key(p) for p in e.absolute_path], e.message))
    return [f"{_format_path(e.absolute_path)}: {e.message}" for e in errors]


# --- built-in payload models -----------------------------------------------------------------------


def _currency() -> Any:
    return Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code, e.g. USD.")


def _timestamp() -> Any:
    return Field(description="ISO 8601 date-time with timezone.")


def _minor(description: str) -> Any:
    return Field(ge=0, description=f"{description}, in minor units of the currency (cents).")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Address(_Payload):
    model_config = ConfigDict(title="Address")
    name: str
    line1: str
    line2: str | None = None
    city: str
    region: str | None = Field(None, description="State, province or county.")
    postal_code: str
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 country code, e.g. US.")


class _LineItem(_Payload):
    model_config = ConfigDict(title="LineItem")
    sku: str = Field(min_length=1)
    name: str
    quantity: int = Field(ge=1)
    unit_price: int = _minor("Price of one unit")


class _Shipment(_Payload):
    model_config = ConfigDict(title="Shipment")
    carrier: str = Field(description="Carrier name, e.g. UPS, FedEx, DHL.")
    tracking_number: str
    tracking_url: str | None = Field(None, json_schema_extra={"format": "uri"})
    shipped_at: datetime = _timestamp()


class _Refund(_Payload):
    model_config = ConfigDict(title="Refund")
    id: str = Field(pattern=r"^re_", description='Refund id, e.g. "re_3001".')
    amount: int = _minor("Amount refunded")
    currency: str = _currency()
    reason: Literal["requested_by_customer", "duplicate", "fraudulent", "damaged", "other"]
    note: str | None = None
    created_at: datetime = _timestamp()


OrderStatus = Literal["pending", "paid", "fulfilled", "shipped", "cancelled", "refunded", "partially_refunded"]


class _Order(_Payload):
    model_config = ConfigDict(title="Order")
    id: str = Field(pattern=r"^ord_", description='Order id, e.g. "ord_1001".')
    number: int = Field(ge=1, description="Order number shown to the customer, e.g. 1001.")
    status: OrderStatus
    customer_id: str = Field(pattern=r"^cus_")
    customer_email: str = Field(json_schema_extra={"format": "email"})
    line_items: list[_LineItem] = Field(min_length=1)
    subtotal: int = _minor("Sum of line items")
    shipping: int = _minor("Shipping cost")
    tax: int = _minor("Tax")
    total: int = _minor("Amount charged: subtotal + shipping + tax")
    currency: str = _currency()
    shipping_address: _Address
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class _OrderUpdated(_Order):
    model_config = ConfigDict(title="OrderUpdated")
    changed_fields: list[str] = Field(
        default_factory=list, description="Top-level order fields that changed, e.g. shipping_address."
    )


class _OrderPaid(_Order):
    model_config = ConfigDict(title="OrderPaid")
    payment_id: str = Field(pattern=r"^pay_")


class _OrderShipped(_Order):
    model_config = ConfigDict(title="OrderShipped")
    shipment: _Shipment


class _OrderCancelled(_Order):
    model_config = ConfigDict(title="OrderCancelled")
    cancel_reason: Literal["customer", "fraud", "inventory", "declined", "other"]
    cancelled_at: datetime = _timestamp()


class _OrderRefunded(_Order):
    model_config = ConfigDict(title="OrderRefunded")
    refund: _Refund


class _Payment(_Payload):
    model_config = ConfigDict(title="Payment")
    id: str = Field(pattern=r"^pay_", description='Payment id, e.g. "pay_2001".')
    order_id: str = Field(pattern=r"^ord_")
    amount: int = _minor("Amount of the payment")
    currency: str = _currency()
    method: Literal["card", "paypal", "apple_pay", "google_pay", "bank_transfer", "gift_card"]
    status: Literal["completed", "failed", "refunded", "partially_refunded"]
    failure_code: str | None = Field(None, description="Machine-readable reason when status is failed.")
    failure_message: str | None = Field(None, description="Human-readable reason when status is failed.")
    created_at: datetime = _timestamp()


class _PaymentRefunded(_Payment):
    model_config = ConfigDict(title="PaymentRefunded")
    refund: _Refund


class _Customer(_Payload):
    model_config = ConfigDict(title="Customer")
    id: str = Field(pattern=r"^cus_", description='Customer id, e.g. "cus_501".')
    email: str = Field(json_schema_extra={"format": "email"})
    first_name: str
    last_name: str
    phone: str | None = None
    accepts_marketing: bool = False
    default_address: _Address | None = None
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class _Product(_Payload):
    model_config = ConfigDict(title="Product")
    id: str = Field(pattern=r"^prod_", description='Product id, e.g. "prod_42".')
    sku: str = Field(min_length=1)
    name: str
    description: str | None = None
    price: int = _minor("Unit price")
    currency: str = _currency()
    stock: int = Field(ge=0, description="Units available to sell across all warehouses.")
    active: bool = True
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class _ProductDeleted(_Payload):
    model_config = ConfigDict(title="ProductDeleted")
    id: str = Field(pattern=r"^prod_")
    sku: str = Field(min_length=1)
    deleted_at: datetime = _timestamp()


class _LowStock(_Payload):
    model_config = ConfigDict(title="LowStock")
    id: str = Field(description='Alert id, e.g. "lsa_77".')
    product_id: str = Field(pattern=r"^prod_")
    sku: str = Field(min_length=1)
    quantity_available: int = Field(ge=0)
    threshold: int = Field(ge=0, description="Level at or below which this alert fires.")
    warehouse: str


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=UTC)


_ADDRESS = _Address(
    name="Jane Doe",
    line1="742 Evergreen Terrace",
    city="Springfield",
    region="OR",
    postal_code="97403",
    country="US",
)

_ORDER: dict[str, Any] = {
    "id": "ord_1001",
    "number": 1001,
    "status": "pending",
    "customer_id": "cus_501",
    "customer_email": "jane.doe@example.com",
    "line_items": [
        _LineItem(sku="TSHIRT-BLK-M", name="Black T-shirt (M)", quantity=2, unit_price=1999),
        _LineItem(sku="MUG-LOGO", name="Logo mug", quantity=1, unit_price=1250),
    ],
    "subtotal": 5248,
    "shipping": 499,
    "tax": 420,
    "total": 6167,
    "currency": "USD",
    "shipping_address": _ADDRESS,
    "created_at": _at(1, 9, 30),
    "updated_at": _at(1, 9, 30),
}

_PAYMENT: dict[str, Any] = {
    "id": "pay_2001",
    "order_id": "ord_1001",
    "amount": 6167,
    "currency": "USD",
    "method": "card",
    "status": "completed",
    "created_at": _at(1, 9, 31),
}

_REFUND = _Refund(
    id="re_3001",
    amount=6167,
    currency="USD",
    reason="damaged",
    note="Mug arrived broken.",
    created_at=_at(8, 14),
)

_PRODUCT: dict[str, Any] = {
    "id": "prod_42",
    "sku": "MUG-LOGO",
    "name": "Logo mug",
    "description": "12 oz ceramic mug with the shop logo.",
    "price": 1250,
    "currency": "USD",
    "stock": 120,
    "created_at": _at(1, 8),
    "updated_at": _at(1, 8),
}

_CUSTOMER: dict[str, Any] = {
    "id": "cus_501",
    "email": "jane.doe@example.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "phone": "+1-541-555-0100",
    "accepts_marketing": True,
    "default_address": _ADDRESS,
    "created_at": _at(1, 9, 25),
    "updated_at": _at(1, 9, 25),
}

_ORDER_UPDATE = {"updated_at": _at(1, 11)}

# (name, description, model instance)
_BUILTINS: list[tuple[str, str, BaseModel]] = [
    (
        "order.created",
        "Sent when a customer places a new order (status pending). Use it to start fulfilment or notify staff.",
        _Order(**_ORDER),
    ),
    (
        "order.updated",
        "Sent when an order's details change (address, items, status); changed_fields says what. "
        "Use it to keep an external copy of the order in sync.",
        _OrderUpdated(
            **{**_ORDER, **_ORDER_UPDATE, "shipping_address": _ADDRESS.model_copy(update={"line2": "Apt 4"})},
            changed_fields=["shipping_address"],
        ),
    ),
    (
        "order.paid",
        "Sent when an order's payment succeeds and the order becomes paid. Use it to release the order "
        "for shipping or send a receipt.",
        _OrderPaid(**{**_ORDER, **_ORDER_UPDATE, "status": "paid"}, payment_id="pay_2001"),
    ),
    (
        "order.shipped",
        "Sent when an order leaves the warehouse, with carrier and tracking details. Use it to email "
        "the customer tracking information.",
        _OrderShipped(
            **{**_ORDER, "status": "shipped", "updated_at": _at(2, 16)},
            shipment=_Shipment(
                carrier="UPS",
                tracking_number="1Z999AA10123456784",
                tracking_url="https://www.ups.com/track?tracknum=1Z999AA10123456784",
                shipped_at=_at(2, 16),
            ),
        ),
    ),
    (
        "order.cancelled",
        "Sent when an order is cancelled before shipping, by the customer or the shop. Use it to stop "
        "fulfilment and restock items.",
        _OrderCancelled(
            **{**_ORDER, "status": "cancelled", "updated_at": _at(1, 12)},
            cancel_reason="customer",
            cancelled_at=_at(1, 12),
        ),
    ),
    (
        "order.refunded",
        "Sent when all or part of an order's payment is refunded to the customer. Use it to update "
        "accounting or trigger a return workflow.",
        _OrderRefunded(**{**_ORDER, "status": "refunded", "updated_at": _at(8, 14)}, refund=_REFUND),
    ),
    (
        "payment.completed",
        "Sent when a payment for an order is captured successfully. Use it for bookkeeping or to "
        "reconcile with the payment provider.",
        _Payment(**_PAYMENT),
    ),
    (
        "payment.failed",
        "Sent when a payment attempt is declined or errors; failure_code and failure_message say why. "
        "Use it to ask the customer for another payment method.",
        _Payment(
            **{
                **_PAYMENT,
                "status": "failed",
                "failure_code": "card_declined",
                "failure_message": "The card was declined by the issuing bank.",
            }
        ),
    ),
    (
        "payment.refunded",
        "Sent when money from a completed payment is returned to the customer. Use it to reconcile "
        "refunds with the payment provider.",
        _PaymentRefunded(**{**_PAYMENT, "status": "refunded"}, refund=_REFUND),
    ),
    (
        "customer.created",
        "Sent when a new customer account is created at sign-up or checkout. Use it to add the "
        "customer to a CRM or mailing list.",
        _Customer(**_CUSTOMER),
    ),
    (
        "customer.updated",
        "Sent when a customer's profile, address or marketing consent changes. Use it to keep a CRM in sync.",
        _Customer(**{**_CUSTOMER, "accepts_marketing": False, "updated_at": _at(3, 10)}),
    ),
    (
        "product.created",
        "Sent when a new product is added to the catalogue. Use it to publish the product to other sales channels.",
        _Product(**_PRODUCT),
    ),
    (
        "product.updated",
        "Sent when a product's name, price, description or stock changes. Use it to keep listings on "
        "other channels up to date.",
        _Product(**{**_PRODUCT, "price": 1450, "updated_at": _at(6, 9)}),
    ),
    (
        "product.deleted",
        "Sent when a product is removed from the catalogue. Use it to delist the product elsewhere.",
        _ProductDeleted(id="prod_42", sku="MUG-LOGO", deleted_at=_at(20, 17)),
    ),
    (
        "inventory.low_stock",
        "Sent when a product's available quantity in a warehouse falls to or below its threshold. "
        "Use it to reorder stock or alert purchasing.",
        _LowStock(
            id="lsa_77", product_id="prod_42", sku="MUG-LOGO", quantity_available=4, threshold=5, warehouse="main"
        ),
    ),
]

_TEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"message": {"type": "string"}, "webhook_id": {"type": "integer"}},
}


def _kind(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's documented shape in words ("integer", "array of LineItem", "Address or null")."""
    if "$ref" in prop:
        name = str(prop["$ref"]).rsplit("/", 1)[-1]
        return str(defs.get(name, {}).get("title", name))
    if "anyOf" in prop:
        return " or ".join(_kind(option, defs) for option in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(value) for value in prop["enum"])
    kind = str(prop.get("type", "any"))
    if kind == "array" and isinstance(prop.get("items"), dict):
        return f"array of {_kind(prop['items'], defs)}"
    if prop.get("format") in ("date-time", "email", "uri"):
        return f"{kind} ({prop['format']})"
    return kind


def describing_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A built-in type's published schema: every documented field stays as a description of its
    usual shape, nothing but ``id`` (a string or an integer) is required, and any field may have
    any shape, so a shop's own payloads are accepted as they are."""
    full = model.model_json_schema()
    properties: dict[str, Any] = {}
    for name, prop in full["properties"].items():
        text = str(prop.get("description", "")).rstrip(".")
        usual = f"Usually {_kind(prop, full.get('$defs', {}))}."
        properties[name] = {"description": f"{text}. {usual}" if text else usual}
    id_text = str(full["properties"]["id"].get("description", "Identifier")).rstrip(".")
    properties["id"] = {
        "type": ["string", "integer"],
        "description": f"{id_text}. A string or an integer; the only field every event must carry.",
    }
    return {
        "title": full.get("title", model.__name__),
        "description": "Documents the usual fields; only id is required and other fields may have any shape.",
        "type": "object",
        "required": ["id"],
        "properties": properties,
    }


def builtin_event_types() -> list[EventType]:
    """Fresh objects every call, so callers may not mutate a shared schema by accident."""
    types = [
        EventType(
            name=name,
            group=name.split(".", 1)[0],
            description=description,
            schema=describing_schema(type(instance)),
            example=instance.model_dump(mode="json", exclude_none=True),
            builtin=True,
        )
        for name, description, instance in _BUILTINS
    ]
    types.append(
        EventType(
            name=TEST_EVENT,
            group="webhook",
            description="Sent only on demand by test_webhook to check that an endpoint receives and "
            "verifies deliveries; it carries no shop data and cannot be subscribed to.",
            schema=dict(_TEST_SCHEMA, properties=dict(_TEST_SCHEMA["properties"])),
            example={"message": "This is a test event from webhook-mcp.", "webhook_id": 1},
            subscribable=False,
            builtin=True,
        )
    )
    return types


# --- the catalog -----------------------------------------------------------------------------------


class Catalog:
    """Event types by name; validators are built lazily and kept per catalog, not per process."""

    def __init__(self, types: Iterable[EventType]) -> None:
        self._types: dict[str, EventType] = {}
        for event_type in types:
            if event_type.name in self._types:
                raise ConfigurationError(f"event type {event_type.name!r} is defined more than once")
            self._types[event_type.name] = event_type
        self._ordered = sorted(self._types.values(), key=lambda t: (t.group, t.name))
        self._validators: dict[str, Draft202012Validator] = {}
        self._fast_validators: dict[str, jsonschema_rs.Draft202012Validator] = {}

    def get(self, name: str) -> EventType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventTypeError(name, self.suggestions(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return [t.name for t in self._ordered]

    def subscribable(self) -> list[EventType]:
        return [t for t in self._ordered if t.subscribable]

    def suggestions(self, name: str, limit: int = 3) -> list[str]:
        """Close spellings first; failing that, siblings in the same group ("order.foo" → order.*)."""
        names = self.names()
        wanted = name.strip().lower()
        close = difflib.get_close_matches(wanted, names, n=limit, cutoff=0.6)
        if close:
            return close
        prefix = wanted.split(".", 1)[0]
        return [n for n in names if n.split(".", 1)[0] == prefix][:limit]

    def require_subscribable(self, name: str) -> EventType:
        event_type = self.get(name)
        if not event_type.subscribable:
            raise InvalidArgumentError(
                f"event type {name!r} cannot be subscribed to: it is not emitted by the shop, "
                "test_webhook sends it on demand to one webhook. Subscribe to real event types "
                "(see get_webhook_events) and call test_webhook to try an endpoint."
            )
        return event_type

    def problems(self, name: str, data: Any) -> list[str]:
        """What in ``data`` its type's schema does not accept, each as "data.path: message"
        (empty when it conforms); an unknown type raises, with suggestions."""
        event_type = self.get(name)
        if not isinstance(data, dict):
            return ["data must be a JSON object"]
        if event_type.schema is None:
            return []
        fast = self._fast_validators.get(name)
        if fast is None:
            fast = self._fast_validators[name] = _fast_validator(event_type.schema)
        try:
            if fast.is_valid(data):
                return []
        except UnicodeEncodeError:
            return ["data contains an unpaired surrogate (e.g. '\\ud800'), which is not valid Unicode text"]
        validator = self._validators.get(name)
        if validator is None:
            validator = self._validators[name] = _validator(event_type.schema)
        return _problems(validator, data)

    def validate(self, name: str, data: Any) -> None:
        problems = self.problems(name, data)
        if problems:
            raise InvalidPayloadError(name, problems)


# --- the operator's file ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Keeps unquoted dates as strings: JSON has no date type, and schemas say ``type: string``."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_TOP_KEYS = {"event_types", "builtin_event_types"}
_ENTRY_KEYS = {"name", "description", "group", "schema", "example"}
_GROUP_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def _not_json(value: Any, where: str) -> str | None:
    """Where a YAML-only value (non-string key, set, binary…) hides; it could never be sent as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value}, which is not JSON; write a number or null"
    if value is None or isinstance(value, str | bool | int | float):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the non-string key {key!r} (quote it)"
            found = _not_json(item, f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _not_json(item, f"{where}[{index}]")
            if found:
                return found
        return None
    return f"{where} is a {type(value).__name__}, which JSON cannot represent (quote it)"


def _read_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in {".json", ".yaml", ".yml"}:
        raise ConfigurationError(
            f"event types file {path}: unsupported suffix {path.suffix or '(none)'!r}; use a .json, .yaml or .yml file"
        )
    if not path.is_file():
        raise ConfigurationError(
            f"event types file {path} does not exist or is not a file; "
            "fix WEBHOOK_MCP_EVENT_TYPES_FILE or create the file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"event types file {path} cannot be read as UTF-8 text: {exc}") from None
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(
                f"event types file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigurationError(f"event types file {path} is not valid YAML: {detail}") from None


def _schema_problem(schema: Any) -> str | None:
    """What is wrong with an operator's schema for an event type's data, if anything."""
    if not isinstance(schema, dict):
        return "'schema' must be a JSON Schema object (a mapping) describing data"
    problem = _not_json(schema, "schema")
    if problem:
        return problem
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
        return f"'schema' is not a valid JSON Schema (draft 2020-12): schema{where}: {exc.message}"
    if schema.get("type", "object") != "object":
        return "'schema' must describe an object (type: object), because data is always a JSON object"
    return None


def _parse_entry(path: Path, index: int, entry: Any, taken: set[str]) -> EventType:
    label = f"event_types[{index}]"
    if not isinstance(entry, dict):
        raise ConfigurationError(
            f"event types file {path}: {label} must be a mapping with name and description, not {type(entry).__name__}"
        )
    raw_name = entry.get("name")
    label += f" ({raw_name!r})" if isinstance(raw_name, str) else " (no name)"

    def fail(problem: str) -> ConfigurationError:
        return ConfigurationError(f"event types file {path}: {label}: {problem}")

    unknown = sorted(str(key) for key in entry if key not in _ENTRY_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(sorted(_ENTRY_KEYS))}")
    if not isinstance(raw_name, str) or not raw_name:
        raise fail("'name' is required: a lower-case dotted name such as subscription.renewed")
    name = raw_name
    if not NAME_PATTERN.match(name):
        raise fail(
            "'name' must be lower-case dotted group.action (letters, digits, underscores), e.g. subscription.renewed"
        )
    if name in taken:
        raise fail(f"{name!r} is already defined earlier in the file; rename or remove one of them")
    if name == TEST_EVENT:
        raise fail(f"{name!r} is already defined: it is the built-in test event, which cannot be redefined")
    description = entry.get("description")
    if not isinstance(description, str) or not description.strip():
        raise fail("'description' is required: one sentence saying when the shop sends this event")
    group = entry.get("group", name.split(".", 1)[0])
    if not isinstance(group, str) or not _GROUP_PATTERN.match(group):
        raise fail("'group' must be a lower-case word such as subscription (or leave it out)")
    schema = entry.get("schema")
    if schema is not None:
        problem = _schema_problem(schema)
        if problem:
            raise fail(problem)
    example = entry.get("example", {})
    if not isinstance(example, dict):
        raise fail("'example' must be an object (a mapping), the data of a typical event")
    problem = _not_json(example, "example")
    if problem:
        raise fail(problem)
    if schema is not None and "example" in entry:
        problems = _problems(_validator(schema), example)
        if problems:
            listed = "; ".join(p.replace("data", "example", 1) for p in problems[:5])
            raise fail(f"'example' does not match 'schema': {listed}")
    return EventType(
        name=name,
        group=group,
        description=description.strip(),
        schema=schema,
        example=example,
    )


def _load_file(path: Path) -> tuple[list[EventType], bool]:
    """The operator's types, and whether the built-in ones stay (``builtin_event_types: false``
    drops them, for shops that are not e-commerce shops)."""
    document = _read_file(path)
    if not isinstance(document, dict) or "event_types" not in document:
        raise ConfigurationError(
            f"event types file {path} must be a mapping with an 'event_types' list, "
            "e.g. event_types: [{name: subscription.renewed, description: ...}]"
        )
    unknown = sorted(str(key) for key in document if key not in _TOP_KEYS)
    if unknown:
        raise ConfigurationError(
            f"event types file {path}: unknown top-level key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    keep_builtins = document.get("builtin_event_types", True)
    if not isinstance(keep_builtins, bool):
        raise ConfigurationError(
            f"event types file {path}: 'builtin_event_types' must be true or false (false drops the shop types)"
        )
    entries = document["event_types"]
    if entries is None:
        return [], keep_builtins
    if not isinstance(entries, list):
        raise ConfigurationError(
            f"event types file {path}: 'event_types' must be a list of entries, not {type(entries).__name__}"
        )
    taken: set[str] = set()
    types: list[EventType] = []
    for index, entry in enumerate(entries):
        event_type = _parse_entry(path, index, entry, taken)
        taken.add(event_type.name)
        types.append(event_type)
    return types, keep_builtins


def load_catalog(extra_file: Path | None = None) -> Catalog:
    """Built-ins plus the operator's types, read afresh so edits apply on the next load. An
    operator's type named like a built-in one replaces it (schema, example, description)."""
    types = builtin_event_types()
    if extra_file is None:
        return Catalog(types)
    extra, keep_builtins = _load_file(Path(extra_file))
    redefined = {t.name for t in extra}
    kept = [t for t in types if t.name not in redefined and (keep_builtins or not t.subscribable)]
    return Catalog([*kept, *extra])
