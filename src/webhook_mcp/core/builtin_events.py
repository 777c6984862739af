"""The built-in event types' source: pydantic models, so their documentation and examples cannot
drift apart. What the catalog loads is the JSON made from them (``builtin_events.json``, written
by ``scripts/build_event_catalog.py``; a test checks it is up to date): building the schemas from
the models is a tenth of a cold start, and a server only reads them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


def builtin_entries() -> list[dict[str, Any]]:
    """Each built-in (subscribable) type as the catalog file holds it."""
    return [
        {
            "name": name,
            "description": description,
            "schema": describing_schema(type(instance)),
            "example": instance.model_dump(mode="json", exclude_none=True),
        }
        for name, description, instance in _BUILTINS
    ]


def catalog_text() -> str:
    """What ``builtin_events.json`` must hold."""
    return json.dumps(builtin_entries(), indent=1, ensure_ascii=False) + "\n"
